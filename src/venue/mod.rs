//! The venue seam (`LIVE.md` §1): the sans-I/O vocabulary between a driver and an exchange.
//!
//! A driver turns the engine's [`Intent`](crate::engine::Intent)s into [`Command`]s through a
//! position's [`StopOrder`] lifecycle and hands them to a venue; the venue answers with
//! [`VenueEvent`]s, which go back through the lifecycle to the engine. The simulated exchange
//! (`sim::venue`) is one venue; live exchange adapters are others. No venue holds a copy of the
//! trailing or the update rules: those live in the engine alone.
//!
//! Prices are integer units of the instrument (`10^-price_decimals`, real sign), exactly as
//! the engine holds them; an adapter converts them to the exchange's decimal text.

mod lifecycle;

pub use lifecycle::{EngineNews, Phase, Reaction, Rest, StopOrder, StopOrderSnapshot};

use serde::{Deserialize, Serialize};

/// One of a position's stop orders: the position and the number of the send that created it
/// (the engine's `stop_updates` count at that send, so it is derivable and never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderRef {
    pub position: u64,
    pub seq: u32,
}

impl OrderRef {
    /// The client order id a live venue is given (`ts-<position>-<seq>`, ≤ 36 characters):
    /// deterministic, so a retry reuses it and a restart can look it up.
    pub fn client_id(&self) -> String {
        format!("ts-{}-{}", self.position, self.seq)
    }
}

/// What a driver asks a venue to do for a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Place a new stop-market order at `stop` (no stop of ours rests for the position).
    Place { order: OrderRef, stop: i64 },
    /// Move the resting stop `replaces` to `stop` in one step (an atomic venue: Bybit's
    /// `trading-stop`). The old stop rests until the venue accepts the new one.
    Amend {
        order: OrderRef,
        replaces: OrderRef,
        stop: i64,
    },
    /// Cancel the stop `order` (resting, or a create still in flight).
    Cancel { order: OrderRef },
    /// Close the whole position at market, reduce-only.
    CloseAtMarket { position: u64 },
    /// Ask the venue what became of `order` after an ambiguous outcome.
    Query { order: OrderRef },
}

/// Why a venue refused a command: the classes a driver reacts to differently (`LIVE.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum RejectReason {
    /// The stop is at or through `market` (the price the venue judged it against): it would
    /// trigger at once. The position must close at market.
    WouldTrigger { market: i64 },
    /// The venue proved it did not act for another reason (a bad price, an unknown order…).
    Invalid { code: i64 },
    /// Too many requests: retry later with the newest stop.
    RateLimited { retry_after_ms: i64 },
    /// The position no longer exists on the venue.
    NoPosition,
}

/// What a venue tells a driver about a position's orders and the position itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VenueEvent {
    /// `order` rests at `stop` from `ts` (for an amend, in place of the stop it replaced).
    Accepted {
        order: OrderRef,
        stop: i64,
        ts: i64,
        /// The venue's own id for the order, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        venue_id: Option<String>,
    },
    /// `order` was refused; whatever rested before still rests (for an amend) or nothing does.
    Rejected {
        order: OrderRef,
        ts: i64,
        reason: RejectReason,
    },
    /// `order` is gone without a fill.
    Cancelled { order: OrderRef, ts: i64 },
    /// The outcome of the command on `order` is unknown (a timeout, a 5xx, a reset after
    /// sending): it must be looked up before anything else is sent.
    Ambiguous { order: OrderRef, ts: i64 },
    /// The stop `order` triggered and the position closed at `fill` (before slippage).
    Triggered { order: OrderRef, ts: i64, fill: i64 },
    /// A position appeared on the venue.
    PositionOpened {
        position: u64,
        ts: i64,
        entry: i64,
        quantity: rust_decimal::Decimal,
    },
    /// The position's size or entry changed (the stop follows on the venue; it never loosens).
    PositionChanged {
        position: u64,
        ts: i64,
        entry: i64,
        quantity: rust_decimal::Decimal,
    },
    /// The position closed at `fill`: by our close at market, or by someone else.
    PositionClosed { position: u64, ts: i64, fill: i64 },
}

impl VenueEvent {
    pub fn ts(&self) -> i64 {
        match self {
            VenueEvent::Accepted { ts, .. }
            | VenueEvent::Rejected { ts, .. }
            | VenueEvent::Cancelled { ts, .. }
            | VenueEvent::Ambiguous { ts, .. }
            | VenueEvent::Triggered { ts, .. }
            | VenueEvent::PositionOpened { ts, .. }
            | VenueEvent::PositionChanged { ts, .. }
            | VenueEvent::PositionClosed { ts, .. } => *ts,
        }
    }
}

/// An exchange, as a driver sees it: it takes commands at a time and may answer some at once
/// (the simulated exchange answers every one at once; a live venue answers later, through
/// its streams, and returns `None` here).
pub trait Venue {
    /// Whether a stop is moved in one step ([`Command::Amend`]) or by cancel, then create.
    fn atomic_amend(&self) -> bool;
    /// Takes `command` at `ts`; the answer, when the venue knows it at once.
    fn execute(&mut self, command: Command, ts: i64) -> Option<VenueEvent>;
}
