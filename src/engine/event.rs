//! Every engine decision as a typed, serialisable event.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Side;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationReason {
    Price,
    Time,
}

/// Where a stop price came from; the origin of the filled stop is the trade's exit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOrigin {
    Initial,
    Breakeven,
    Trailing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendReason {
    /// The position's first stop.
    Initial,
    /// Allowed by the interval and the minimum improvement.
    Normal,
    /// Held by the normal rule, sent because the improvement reached `emergency_percent`.
    Emergency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// `min_interval_seconds` has not passed since the last send.
    Interval,
    /// The improvement is below `min_improvement_percent`.
    Improvement,
}

/// Why a position closed (`exit_reason` in `trades.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    InitialStop,
    BreakevenStop,
    TrailingStop,
    ExitNow,
    EndOfData,
}

impl ExitReason {
    pub fn of_stop(origin: StopOrigin) -> Self {
        match origin {
            StopOrigin::Initial => ExitReason::InitialStop,
            StopOrigin::Breakeven => ExitReason::BreakevenStop,
            StopOrigin::Trailing => ExitReason::TrailingStop,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::InitialStop => "initial_stop",
            ExitReason::BreakevenStop => "breakeven_stop",
            ExitReason::TrailingStop => "trailing_stop",
            ExitReason::ExitNow => "exit_now",
            ExitReason::EndOfData => "end_of_data",
        }
    }
}

/// One engine decision. `ts` is epoch milliseconds; `price` is the price point that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    Created {
        ts: i64,
        side: Side,
        entry_price: Decimal,
        activation_price: Decimal,
    },
    Activated {
        ts: i64,
        price: Decimal,
        reason: ActivationReason,
    },
    BreakevenArmed {
        ts: i64,
        price: Decimal,
        stop: Decimal,
    },
    /// The desired stop moved in the position's favour (for a short it moved down).
    StopRaised {
        ts: i64,
        price: Decimal,
        from: Option<Decimal>,
        to: Decimal,
        origin: StopOrigin,
    },
    UpdateSent {
        ts: i64,
        price: Decimal,
        stop: Decimal,
        previous: Option<Decimal>,
        reason: SendReason,
    },
    UpdateHeld {
        ts: i64,
        price: Decimal,
        desired: Decimal,
        sent: Decimal,
        reason: HoldReason,
    },
    /// The stop due to be sent is at or through the market: close at market instead.
    ExitNow {
        ts: i64,
        price: Decimal,
        stop: Decimal,
    },
    /// The exchange accepted a stop; it now rests there.
    StopConfirmed { ts: i64, stop: Decimal },
    /// The exchange refused a stop ("would immediately trigger").
    StopRejected {
        ts: i64,
        price: Decimal,
        stop: Decimal,
    },
    /// The position is closed.
    Triggered {
        ts: i64,
        fill_price: Decimal,
        reason: ExitReason,
    },
}

impl Event {
    pub fn ts(&self) -> i64 {
        match self {
            Event::Created { ts, .. }
            | Event::Activated { ts, .. }
            | Event::BreakevenArmed { ts, .. }
            | Event::StopRaised { ts, .. }
            | Event::UpdateSent { ts, .. }
            | Event::UpdateHeld { ts, .. }
            | Event::ExitNow { ts, .. }
            | Event::StopConfirmed { ts, .. }
            | Event::StopRejected { ts, .. }
            | Event::Triggered { ts, .. } => *ts,
        }
    }

    /// The event's type name as written in `events.jsonl`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Created { .. } => "Created",
            Event::Activated { .. } => "Activated",
            Event::BreakevenArmed { .. } => "BreakevenArmed",
            Event::StopRaised { .. } => "StopRaised",
            Event::UpdateSent { .. } => "UpdateSent",
            Event::UpdateHeld { .. } => "UpdateHeld",
            Event::ExitNow { .. } => "ExitNow",
            Event::StopConfirmed { .. } => "StopConfirmed",
            Event::StopRejected { .. } => "StopRejected",
            Event::Triggered { .. } => "Triggered",
        }
    }
}
