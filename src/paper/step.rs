//! One market step of the paper runner for one position: its opening, one bar or one trade
//! tick of the market, the end of the data, or a config change on restart — applied through the
//! same [`Replay`] the backtester uses.
//!
//! This is also the journal format of schema version 1, which recorded these steps (with the
//! finer detail points a bar consumed, so no market data is needed to replay them); converting
//! such a database replays them ([`super::legacy`]). Version 2 journals the runner's own inputs
//! instead (`store::journal`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::backtest::market::Series;
use crate::backtest::replay::{BarRules, Cursor, Replay};
use crate::engine::{EngineError, Instrument, Position, TrailingConfig};
use crate::runner::Tap;
use crate::sim::exchange::VenueModel;
use crate::sim::path::{Bar, Point, Policy};

/// A finer price point a bar was replayed from: `(ts, price, gap)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailPoint(pub i64, pub Decimal, pub bool);

/// What a market step applies to a position. Prices are exact decimals (stored as text in a
/// version-1 journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MarketStep {
    /// The position opens (its entry is its first price point); the replay continues at `cursor`.
    Open {
        position: Position,
        instrument: Instrument,
        config: TrailingConfig,
        model: VenueModel,
        rules: BarRules,
        cursor: Cursor,
    },
    /// Bar `index` of the market's candles.
    Bar {
        index: usize,
        ts: i64,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        delta_ms: i64,
        /// The detail points the bar was replayed from, when it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Vec<DetailPoint>>,
    },
    /// Trade tick `index` of the market.
    Tick {
        index: usize,
        ts: i64,
        price: Decimal,
    },
    /// The data ended with the position open: it closes at `price`.
    EndOfData { ts: i64, price: Decimal },
    /// The trailing config changed on a restart; the stop never loosens (see
    /// [`crate::engine::TrailingStop::restore_with`]).
    ConfigChanged { ts: i64, config: TrailingConfig },
}

impl MarketStep {
    /// A bar of the market, in exact decimals.
    pub fn bar(index: usize, bar: &Bar, delta_ms: i64, inst: &Instrument) -> MarketStep {
        MarketStep::Bar {
            index,
            ts: bar.ts,
            open: inst.decimal(bar.open),
            high: inst.decimal(bar.high),
            low: inst.decimal(bar.low),
            close: inst.decimal(bar.close),
            delta_ms,
            detail: None,
        }
    }

    /// The market index this input replays, if it is one.
    pub fn index(&self) -> Option<usize> {
        match self {
            MarketStep::Bar { index, .. } | MarketStep::Tick { index, .. } => Some(*index),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            MarketStep::Open { .. } => "open",
            MarketStep::Bar { .. } => "bar",
            MarketStep::Tick { .. } => "tick",
            MarketStep::EndOfData { .. } => "end_of_data",
            MarketStep::ConfigChanged { .. } => "config_changed",
        }
    }
}

/// Where a bar's detail points come from when a step asks for them.
pub enum DetailSource<'a> {
    /// The market's finer series, walked with the run's policy (the paper runner); the points
    /// used are recorded into the input.
    Market {
        series: Option<&'a Series>,
        policy: Policy,
    },
    /// The points recorded in the input (a rebuild).
    Journal,
}

/// Why a step could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("{what} {value} is not exact at {decimals} decimals")]
    NotExact {
        what: &'static str,
        value: Decimal,
        decimals: u32,
    },
    #[error("the first step is {kind}, not open")]
    FirstNotOpen { kind: &'static str },
    #[error("the position opens twice")]
    OpensTwice,
    #[error("step at market index {index}, but the position is at {at}")]
    WrongIndex { index: usize, at: usize },
    #[error(
        "bar {index}: the replay {} detail points but the journal {} them",
        if *asked { "asks for" } else { "does not use" },
        if *recorded { "has" } else { "lacks" }
    )]
    Detail {
        index: usize,
        asked: bool,
        recorded: bool,
    },
}

fn units(inst: &Instrument, what: &'static str, d: Decimal) -> Result<i64, ApplyError> {
    inst.units(d).ok_or(ApplyError::NotExact {
        what,
        value: d,
        decimals: inst.price_decimals,
    })
}

/// Opens a position from its first step's input; returns the replay and the entry time.
pub fn apply_open<O: Tap>(input: &MarketStep, out: &mut O) -> Result<(Replay, i64), ApplyError> {
    match input {
        MarketStep::Open {
            position,
            instrument,
            config,
            model,
            rules,
            cursor,
        } => Ok((
            Replay::open(position, instrument, config, *model, *rules, *cursor, out)?,
            position.opened_at,
        )),
        other => Err(ApplyError::FirstNotOpen { kind: other.kind() }),
    }
}

/// Applies one later step's input to an open position's replay and returns the step's data
/// time: a bar's last point time (`ts + Δ - 1`), a tick's time, the end-of-data time or the
/// time a config change was applied at.
pub fn apply<O: Tap>(
    r: &mut Replay,
    input: &mut MarketStep,
    source: DetailSource<'_>,
    out: &mut O,
) -> Result<i64, ApplyError> {
    match input {
        MarketStep::Open { .. } => Err(ApplyError::OpensTwice),
        MarketStep::Bar {
            index,
            ts,
            open,
            high,
            low,
            close,
            delta_ms,
            detail,
        } => {
            check_index(r, *index)?;
            let inst = *r.sim.engine.instrument();
            let bar = Bar {
                ts: *ts,
                open: units(&inst, "open", *open)?,
                high: units(&inst, "high", *high)?,
                low: units(&inst, "low", *low)?,
                close: units(&inst, "close", *close)?,
            };
            let delta = *delta_ms;
            match source {
                DetailSource::Market { series, policy } => {
                    let side = r.sim.engine.side();
                    let mut used = None;
                    r.step_bar(
                        &bar,
                        delta,
                        |b, after, buf| {
                            let Some(series) = series else { return };
                            series.points_in(
                                b.ts,
                                b.ts + delta,
                                after,
                                |fine| policy.low_first(side, fine),
                                buf,
                            );
                            used = Some(
                                buf.iter()
                                    .map(|p| DetailPoint(p.ts, inst.decimal(p.price), p.gap))
                                    .collect(),
                            );
                        },
                        out,
                    )?;
                    *detail = used;
                }
                DetailSource::Journal => {
                    let recorded = match detail {
                        Some(points) => Some(
                            points
                                .iter()
                                .map(|p| {
                                    Ok(Point {
                                        ts: p.0,
                                        price: units(&inst, "detail price", p.1)?,
                                        gap: p.2,
                                    })
                                })
                                .collect::<Result<Vec<_>, ApplyError>>()?,
                        ),
                        None => None,
                    };
                    let mut asked = false;
                    r.step_bar(
                        &bar,
                        delta,
                        |_, _, buf| {
                            asked = true;
                            buf.extend(recorded.iter().flatten());
                        },
                        out,
                    )?;
                    if asked != recorded.is_some() {
                        return Err(ApplyError::Detail {
                            index: *index,
                            asked,
                            recorded: recorded.is_some(),
                        });
                    }
                }
            }
            Ok(*ts + delta - 1)
        }
        MarketStep::Tick { index, ts, price } => {
            check_index(r, *index)?;
            let p = units(r.sim.engine.instrument(), "price", *price)?;
            r.step_tick(
                Point {
                    ts: *ts,
                    price: p,
                    gap: true,
                },
                out,
            )?;
            Ok(*ts)
        }
        MarketStep::EndOfData { ts, price } => {
            if r.is_closed() {
                return Err(ApplyError::Engine(EngineError::Closed));
            }
            let p = units(r.sim.engine.instrument(), "price", *price)?;
            r.end_of_data(p, *ts, out);
            Ok(*ts)
        }
        MarketStep::ConfigChanged { ts, config } => {
            r.sim.change_config(config, *ts, out)?;
            Ok(*ts)
        }
    }
}

fn check_index(r: &Replay, index: usize) -> Result<(), ApplyError> {
    if r.cursor.next != index {
        return Err(ApplyError::WrongIndex {
            index,
            at: r.cursor.next,
        });
    }
    Ok(())
}
