//! Replays the market through one engine per position against the simulated exchange.

use rust_decimal::Decimal;

use crate::engine::{
    Counters, EngineError, Event, EventSink, NoEvents, Position, Side, TrailingConfig,
};
use crate::sim::entries::EntrySpec;
use crate::sim::exchange::{Close, SimPosition, VenueModel};
use crate::sim::path::{Bar, Point, Policy, bar_points};

use super::market::{Market, Series};
use crate::scenario::DetailBars;

/// Everything a run needs besides the market and the entries.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub symbol: String,
    pub trailing: TrailingConfig,
    pub model: VenueModel,
    pub taker_fee: Decimal,
    pub slippage_bps: Decimal,
}

/// One simulated position, before its numbers are turned into a `trades.csv` row.
#[derive(Debug, Clone)]
pub struct PositionRun {
    pub id: u64,
    pub side: Side,
    pub opened_at: i64,
    /// Entry price in instrument units.
    pub entry: i64,
    pub close: Close,
    pub counters: Counters,
    pub unprotected_ms: i64,
    pub favourable_units: i64,
    pub adverse_units: i64,
    pub ambiguous_bars: u32,
    pub events: Vec<Event>,
}

/// Where a position's replay starts after its entry point.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// From bar `bar`: its points strictly after `after_ts`, without its first point when
    /// `skip_open` (an unpriced entry took the bar's open, or in detail data its first trade).
    Candle {
        bar: usize,
        after_ts: i64,
        skip_open: bool,
    },
    /// From tick `idx` on.
    Tick { idx: usize },
}

/// The entry point (time, price in units) and where the replay continues; `None` when no price
/// point follows the entry (the entry is skipped and gets no number).
fn resolve(
    entry: &EntrySpec,
    entry_units: Option<i64>,
    market: &Market,
) -> Option<(i64, i64, Start)> {
    match &market.series {
        Series::Candles { bars, delta_ms } => match entry_units {
            None => {
                let b = bars.partition_point(|bar| bar.ts < entry.time);
                let bar = bars.get(b)?;
                Some((
                    bar.ts,
                    bar.open,
                    Start::Candle {
                        bar: b,
                        after_ts: i64::MIN,
                        skip_open: true,
                    },
                ))
            }
            Some(price) => {
                let b = bars.partition_point(|bar| bar.ts + delta_ms - 1 <= entry.time);
                bars.get(b)?;
                Some((
                    entry.time,
                    price,
                    Start::Candle {
                        bar: b,
                        after_ts: entry.time,
                        skip_open: false,
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
                Some((ts[i], price[i], Start::Tick { idx: i + 1 }))
            }
            Some(p) => {
                let i = ts.partition_point(|&t| t <= entry.time);
                if i >= ts.len() {
                    return None;
                }
                Some((entry.time, p, Start::Tick { idx: i }))
            }
        },
    }
}

/// How to run the positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub policy: Policy,
    /// Keep each position's events.
    pub events: bool,
    /// Count the bars where the optimistic and the pessimistic order end differently.
    pub ambiguity: bool,
    /// Which bars to replay from the market's finer detail data, when it has some.
    pub detail: Option<DetailBars>,
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
        let entry_units =
            match entry.price {
                Some(p) => Some(market.instrument.units(p).ok_or(
                    EngineError::NotRepresentable {
                        what: "entry price",
                        value: p,
                        decimals: market.instrument.price_decimals,
                    },
                )?),
                None => None,
            };
        let Some((opened_at, entry_price, start)) = resolve(entry, entry_units, market) else {
            continue;
        };
        let mut position = Position::new(
            next_id,
            &settings.symbol,
            entry.side,
            market.instrument.decimal(entry_price),
            opened_at,
        );
        if let Some(q) = entry.quantity {
            position.quantity = q;
        }
        let run = if opts.events {
            let mut sink = Vec::new();
            let mut r = simulate(
                market,
                settings,
                opts,
                &position,
                entry_price,
                start,
                &mut sink,
            )?;
            r.events = sink;
            r
        } else {
            simulate(
                market,
                settings,
                opts,
                &position,
                entry_price,
                start,
                &mut NoEvents,
            )?
        };
        out.push(run);
        next_id += 1;
    }
    Ok(out)
}

fn simulate<O: EventSink>(
    market: &Market,
    settings: &RunSettings,
    opts: RunOptions,
    position: &Position,
    entry: i64,
    start: Start,
    out: &mut O,
) -> Result<PositionRun, EngineError> {
    let side = position.side;
    let policy = opts.policy;
    let detail = opts
        .detail
        .and_then(|use_| market.detail.as_ref().map(|d| (d, use_)));
    let mut sim = SimPosition::open(
        position,
        &market.instrument,
        &settings.trailing,
        settings.model,
        out,
    )?;
    let mut ambiguous_bars = 0u32;
    let mut detail_points = Vec::new();
    if sim.closed().is_none() {
        match (&market.series, start) {
            (
                Series::Candles { bars, delta_ms },
                Start::Candle {
                    bar,
                    after_ts,
                    skip_open,
                },
            ) => {
                for (b, candle) in bars.iter().enumerate().skip(bar) {
                    let (after, skip) = if b == bar {
                        (after_ts, skip_open)
                    } else {
                        (i64::MIN, false)
                    };
                    let after = After {
                        ts: after,
                        skip_first: skip,
                    };
                    let low_first = policy.low_first(side, candle);
                    let mut resolve = matches!(detail, Some((_, DetailBars::All)));
                    if (opts.ambiguity || detail.is_some())
                        && candle.high != candle.low
                        && !sim.is_quiet_within(candle.low, candle.high)
                    {
                        let mark = out.mark();
                        let mut alt = sim.clone();
                        // With detail the pre-bar state is kept to replay the bar from it.
                        let before = detail.map(|_| sim.clone());
                        run_bar(
                            &mut alt,
                            candle,
                            *delta_ms,
                            !low_first,
                            after,
                            &mut NoEvents,
                        )?;
                        run_bar(&mut sim, candle, *delta_ms, low_first, after, out)?;
                        if alt.outcome() != sim.outcome() {
                            ambiguous_bars += 1;
                            resolve = detail.is_some();
                        }
                        if let (true, Some(before)) = (resolve, before) {
                            out.rollback(mark);
                            sim = before;
                        }
                    } else if !resolve {
                        run_bar(&mut sim, candle, *delta_ms, low_first, after, out)?;
                    }
                    if let (true, Some((d, _))) = (resolve, detail) {
                        // Replay the bar from the finer data instead of guessing.
                        d.points_in(
                            candle.ts,
                            candle.ts + delta_ms,
                            after,
                            |fine| policy.low_first(side, fine),
                            &mut detail_points,
                        );
                        if detail_points.is_empty() {
                            run_bar(&mut sim, candle, *delta_ms, low_first, after, out)?;
                        }
                        for &pt in &detail_points {
                            if sim.on_point(pt, out)?.is_some() {
                                break;
                            }
                        }
                    }
                    if sim.closed().is_some() {
                        break;
                    }
                }
                if sim.closed().is_none() {
                    let last = bars.last().expect("a start bar exists");
                    sim.end_of_data(last.close, last.ts + delta_ms - 1, out);
                }
            }
            (Series::Ticks { ts, price }, Start::Tick { idx }) => {
                for i in idx..ts.len() {
                    let pt = Point {
                        ts: ts[i],
                        price: price[i],
                        gap: true,
                    };
                    if sim.on_point(pt, out)?.is_some() {
                        break;
                    }
                }
                if sim.closed().is_none() {
                    let n = ts.len() - 1;
                    sim.end_of_data(price[n], ts[n], out);
                }
            }
            _ => unreachable!("start matches the series"),
        }
    }
    let close = sim.closed().expect("every position closes");
    Ok(PositionRun {
        id: position.id,
        side,
        opened_at: position.opened_at,
        entry,
        close,
        counters: sim.engine.counters(),
        unprotected_ms: sim.unprotected_ms(),
        favourable_units: sim.favourable_units(),
        adverse_units: sim.adverse_units(),
        ambiguous_bars,
        events: Vec::new(),
    })
}

/// Which of a bar's points a position still sees: those strictly after `ts`, without the first
/// one when `skip_first`.
#[derive(Debug, Clone, Copy)]
pub struct After {
    pub ts: i64,
    pub skip_first: bool,
}

#[inline(always)]
fn run_bar<O: EventSink>(
    sim: &mut SimPosition,
    bar: &Bar,
    delta_ms: i64,
    low_first: bool,
    after: After,
    out: &mut O,
) -> Result<Option<Close>, EngineError> {
    let points = bar_points(bar, delta_ms, low_first);
    let first = usize::from(after.skip_first);
    for &pt in &points[first..] {
        if pt.ts > after.ts
            && let Some(c) = sim.on_point(pt, out)?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}
