//! Replays the market through one engine per position against the simulated exchange.

use rust_decimal::Decimal;

use crate::engine::{EngineError, NoEvents, Position, TrailingConfig};
use crate::runner::Tap;
use crate::sim::entries::EntrySpec;
use crate::sim::exchange::VenueModel;
use crate::sim::path::{Point, bar_span};

use super::market::{Market, Series};
pub use super::record::PositionRun;
pub use super::replay::{After, RunOptions};
use super::replay::{BarRules, Cursor, Replay};

/// Everything a run needs besides the market and the entries.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub symbol: String,
    pub trailing: TrailingConfig,
    pub model: VenueModel,
    pub taker_fee: Decimal,
    pub slippage_bps: Decimal,
}

/// The entry point (time, price in units) and where the replay continues; `None` when no price
/// point follows the entry (the entry is skipped and gets no number).
fn resolve(
    entry: &EntrySpec,
    entry_units: Option<i64>,
    market: &Market,
) -> Option<(i64, i64, Cursor)> {
    match &market.series {
        Series::Candles { bars, delta_ms } => match entry_units {
            None => {
                let b = super::market::first_bar_at_or_after(bars, *delta_ms, entry.time);
                let bar = bars.get(b)?;
                Some((
                    bar.ts,
                    bar.open,
                    Cursor {
                        next: b,
                        after: After {
                            ts: i64::MIN,
                            skip_first: true,
                        },
                    },
                ))
            }
            Some(price) => {
                // The first bar with a point after the entry: `ts + Δ - 1 > time`. Bars before
                // the one found from the interval close earlier; a bar shorter than the
                // interval (the next one opens sooner) may close before `time` too.
                let mut b = super::market::first_bar_at_or_after(
                    bars,
                    *delta_ms,
                    entry.time - delta_ms + 2,
                );
                while b < bars.len() && bars[b].ts + bar_span(bars, b, *delta_ms) - 1 <= entry.time
                {
                    b += 1;
                }
                bars.get(b)?;
                Some((
                    entry.time,
                    price,
                    Cursor {
                        next: b,
                        after: After {
                            ts: entry.time,
                            skip_first: false,
                        },
                    },
                ))
            }
        },
        Series::Ticks { ts, price } => match entry_units {
            None => {
                let i = ts.partition_point(|&t| t < entry.time);
                if i + 1 >= ts.len() {
                    return None;
                }
                Some((
                    ts[i],
                    price[i],
                    Cursor {
                        next: i + 1,
                        after: After::ALL,
                    },
                ))
            }
            Some(p) => {
                let i = ts.partition_point(|&t| t <= entry.time);
                if i >= ts.len() {
                    return None;
                }
                Some((
                    entry.time,
                    p,
                    Cursor {
                        next: i,
                        after: After::ALL,
                    },
                ))
            }
        },
    }
}

/// Runs every entry; `progress` is told how many entries are done.
pub fn run_positions(
    market: &Market,
    entries: &[EntrySpec],
    settings: &RunSettings,
    opts: RunOptions,
    mut progress: impl FnMut(usize),
) -> Result<Vec<PositionRun>, EngineError> {
    let mut out = Vec::with_capacity(entries.len());
    let mut next_id = 1u64;
    for (k, entry) in entries.iter().enumerate() {
        progress(k);
        let Some(planned) = plan_position(market, entry, &settings.symbol, next_id)? else {
            continue;
        };
        let run = if opts.events {
            let mut sink = Vec::new();
            let mut r = simulate(market, settings, opts, &planned, &mut sink)?;
            r.events = sink;
            r
        } else {
            simulate(market, settings, opts, &planned, &mut NoEvents)?
        };
        out.push(run);
        next_id += 1;
    }
    Ok(out)
}

/// A numbered position ready to replay: where it opens and where its replay continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPosition {
    pub position: Position,
    /// Entry price in instrument units.
    pub entry: i64,
    pub cursor: Cursor,
}

/// Resolves `entry` against the market as position `id`; `None` when no price point follows
/// the entry (it is skipped and gets no number).
pub fn plan_position(
    market: &Market,
    entry: &EntrySpec,
    symbol: &str,
    id: u64,
) -> Result<Option<PlannedPosition>, EngineError> {
    let entry_units = match entry.price {
        Some(p) => Some(
            market
                .instrument
                .units(p)
                .ok_or(EngineError::NotRepresentable {
                    what: "entry price",
                    value: p,
                    decimals: market.instrument.price_decimals,
                })?,
        ),
        None => None,
    };
    let Some((opened_at, entry_price, cursor)) = resolve(entry, entry_units, market) else {
        return Ok(None);
    };
    let mut position = Position::new(
        id,
        symbol,
        entry.side,
        market.instrument.decimal(entry_price),
        opened_at,
    );
    if let Some(q) = entry.quantity {
        position.quantity = q;
    }
    Ok(Some(PlannedPosition {
        position,
        entry: entry_price,
        cursor,
    }))
}

/// Every entry as a numbered position, in entry order (DESIGN §3 "Entries").
pub fn plan_positions(
    market: &Market,
    entries: &[EntrySpec],
    symbol: &str,
) -> Result<Vec<PlannedPosition>, EngineError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(p) = plan_position(market, entry, symbol, out.len() as u64 + 1)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Replays one position over the whole series, bar by bar (or tick by tick) through
/// [`Replay`], the same step the paper runner commits one at a time.
fn simulate<O: Tap>(
    market: &Market,
    settings: &RunSettings,
    opts: RunOptions,
    planned: &PlannedPosition,
    out: &mut O,
) -> Result<PositionRun, EngineError> {
    let position = &planned.position;
    let (side, policy) = (position.side, opts.policy);
    let mut r = Replay::open(
        position,
        &market.instrument,
        &settings.trailing,
        settings.model,
        BarRules::of(opts, market.detail.is_some()),
        planned.cursor,
        out,
    )?;
    if !r.is_closed() {
        match &market.series {
            Series::Candles { bars, delta_ms } => {
                let delta_ms = *delta_ms;
                let index = market.bar_index();
                loop {
                    let checked = r.skip_quiet(bars, index, delta_ms, out);
                    let Some(candle) = bars.get(r.cursor.next) else {
                        break;
                    };
                    let span = bar_span(bars, r.cursor.next, delta_ms);
                    r.step_bar_as(
                        candle,
                        span,
                        |bar, after, buf| {
                            if let Some(d) = &market.detail {
                                d.points_in(
                                    bar.ts,
                                    bar.ts + span,
                                    after,
                                    |fine| policy.low_first(side, fine),
                                    buf,
                                );
                            }
                        },
                        !checked,
                        out,
                    )?;
                    if r.is_closed() {
                        break;
                    }
                }
                if !r.is_closed() {
                    let last = bars.last().expect("a start bar exists");
                    r.end_of_data(last.close, last.ts + delta_ms - 1, out);
                }
            }
            Series::Ticks { ts, price } => {
                for i in r.cursor.next..ts.len() {
                    let pt = Point {
                        ts: ts[i],
                        price: price[i],
                        gap: true,
                    };
                    r.step_tick(pt, out)?;
                    if r.is_closed() {
                        break;
                    }
                }
                if !r.is_closed() {
                    let n = ts.len() - 1;
                    r.end_of_data(price[n], ts[n], out);
                }
            }
        }
    }
    Ok(r.run().expect("every position closes"))
}
