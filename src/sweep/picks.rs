//! The report's inputs: full backtests (with events) of the best, the most robust and the
//! scenario's own parameters, their equity curves, and charts of the best's top and worst
//! trades.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::report_data::{Candle, Curve, ReportData, TradeChart};
use crate::backtest::market::{Market, Series};
use crate::backtest::record::TradeRow;
use crate::backtest::{self, Loaded};
use crate::engine::Event;
use crate::scenario::Scenario;
use crate::sim::path::{bar_points, bar_span};

use super::SweepError;
use super::exec::Job;
use super::metrics;

/// How many of the best's top and of its worst trades get a chart.
pub const CHARTS_EACH: usize = 3;
/// Longer trades get their candles merged down to about this many.
const MAX_CANDLES: usize = 240;
/// Candles shown before the entry and after the exit.
const MARGIN: usize = 10;

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// A price on the tick grid (the nearest tick; a slipped exit price falls between ticks), for
/// titles: the exact price is in `trades.csv`.
pub fn on_tick(price: Decimal, tick: Decimal) -> Decimal {
    if tick <= Decimal::ZERO {
        return price;
    }
    ((price / tick).round() * tick).normalize()
}

/// A labelled parameter set to draw.
pub struct Pick {
    pub label: &'static str,
    pub params: String,
    pub scenario: Scenario,
}

pub fn build(job: &Job, picks: &[Pick]) -> Result<ReportData, SweepError> {
    let mut curves = Vec::new();
    let mut charts = Vec::new();
    for (k, pick) in picks.iter().enumerate() {
        let loaded = job.loaded_for(&pick.scenario)?;
        let report = backtest::run_scenario(&pick.scenario, &loaded, |_, _| {})?;
        let market = &loaded.market;
        let trades = metrics::trades_of(market, &report.rows);
        curves.push(Curve {
            label: pick.label.to_string(),
            params: pick.params.clone(),
            metrics: metrics::compute(&trades),
            points: equity(&report.rows),
        });
        if k == 0 {
            charts = trade_charts(pick, &loaded, &report.rows, &report.events);
        }
    }
    Ok(ReportData {
        scenario: job.scenario.name.clone(),
        objective: job.objective,
        curves,
        charts,
    })
}

/// A backtest's report inputs: its equity curve (label `backtest`) and the charts of its top
/// and worst trades, from the run already made (nothing is run again).
pub fn backtest_data(
    scenario: &Scenario,
    loaded: &Loaded,
    report: &backtest::Report,
) -> ReportData {
    let pick = Pick {
        label: "backtest",
        params: String::new(),
        scenario: scenario.clone(),
    };
    ReportData {
        scenario: scenario.name.clone(),
        objective: metrics::Objective::TotalReturnPct,
        curves: vec![Curve {
            label: pick.label.to_string(),
            params: String::new(),
            metrics: report.summary.metrics.clone(),
            points: equity(&report.rows),
        }],
        charts: trade_charts(&pick, loaded, &report.rows, &report.events),
    }
}

/// Cumulative `pnl_pct` after each exit (exit order, ties by position id), exact until drawn.
pub fn equity(rows: &[TradeRow]) -> Vec<(i64, f64)> {
    let mut order: Vec<&TradeRow> = rows.iter().collect();
    order.sort_by_key(|r| (r.exit_time, r.position_id));
    let mut cum = Decimal::ZERO;
    order
        .into_iter()
        .map(|r| {
            cum += r.pnl_pct;
            (r.exit_time, metrics::to_f64(cum))
        })
        .collect()
}

fn trade_charts(
    pick: &Pick,
    loaded: &Loaded,
    rows: &[TradeRow],
    events: &[(u64, Vec<Event>)],
) -> Vec<TradeChart> {
    let mut by_pnl: Vec<&TradeRow> = rows.iter().collect();
    by_pnl.sort_by(|a, b| {
        b.pnl_pct
            .cmp(&a.pnl_pct)
            .then(a.position_id.cmp(&b.position_id))
    });
    let top = by_pnl.iter().take(CHARTS_EACH);
    let worst = by_pnl
        .iter()
        .rev()
        .take(CHARTS_EACH.min(by_pnl.len().saturating_sub(CHARTS_EACH)));
    let mut out = Vec::new();
    for (kind, list) in [("top", top.collect::<Vec<_>>()), ("worst", worst.collect())] {
        for (i, row) in list.into_iter().enumerate() {
            let ev = events
                .iter()
                .find(|(id, _)| *id == row.position_id)
                .map(|(_, e)| e.as_slice())
                .unwrap_or(&[]);
            out.push(chart(pick, loaded, row, ev, &format!("{kind}{}", i + 1)));
        }
    }
    out
}

fn chart(pick: &Pick, loaded: &Loaded, row: &TradeRow, events: &[Event], tag: &str) -> TradeChart {
    let market = &loaded.market;
    let (candles, candle_ms) = candles_around(market, row.entry_time, row.exit_time);
    let mut desired = Vec::new();
    let mut exchange = Vec::new();
    let mut activation = None;
    for e in events {
        match e {
            Event::StopRaised { ts, to, .. } => desired.push((*ts, f(*to))),
            Event::UpdateSent { ts, stop, .. } => {
                // The initial stop is sent without a StopRaised: it is desired from then on.
                if desired.is_empty() {
                    desired.push((*ts, f(*stop)));
                }
                exchange.push((*ts, None))
            }
            Event::StopRejected { ts, .. } => exchange.push((*ts, None)),
            Event::StopConfirmed { ts, stop } => exchange.push((*ts, Some(f(*stop)))),
            Event::Activated { ts, price, .. } => activation = Some((*ts, f(*price))),
            _ => {}
        }
    }
    exchange.push((row.exit_time, None));
    TradeChart {
        file: format!("{}-{tag}-position-{}", pick.label, row.position_id),
        title: format!(
            "{} {} #{}: {} {} to {}, {}, opened {}, pnl {:+.2} %",
            pick.label,
            tag,
            row.position_id,
            row.side.as_str(),
            on_tick(row.entry_price, market.instrument.tick_size),
            on_tick(row.exit_price, market.instrument.tick_size),
            row.exit_reason.as_str(),
            crate::report::figure::minute(row.entry_time),
            metrics::to_f64(row.pnl_pct)
        ),
        side: row.side.as_str().to_string(),
        entry_time: row.entry_time,
        entry_price: f(row.entry_price),
        exit_time: row.exit_time,
        exit_price: f(row.exit_price),
        exit_reason: row.exit_reason.as_str().to_string(),
        candle_ms,
        candles,
        peak: peak(market, &pick.scenario, row),
        desired,
        exchange,
        activation,
    }
}

/// The candles from `MARGIN` before the entry to `MARGIN` after the exit, merged `k` at a time
/// when there are too many; ticks are binned into candles.
fn candles_around(market: &Market, from: i64, to: i64) -> (Vec<Candle>, i64) {
    let dp = market.instrument;
    let px = |u: i64| f(dp.decimal(u));
    match &market.series {
        Series::Candles { bars, delta_ms } => {
            let a = bars
                .partition_point(|b| b.ts <= from)
                .saturating_sub(1 + MARGIN);
            let z = (bars.partition_point(|b| b.ts <= to) + MARGIN).min(bars.len());
            let k = (z - a).div_ceil(MAX_CANDLES).max(1);
            let out = bars[a..z]
                .chunks(k)
                .map(|c| Candle {
                    ts: c[0].ts,
                    open: px(c[0].open),
                    high: px(c.iter().map(|b| b.high).max().unwrap_or(c[0].high)),
                    low: px(c.iter().map(|b| b.low).min().unwrap_or(c[0].low)),
                    close: px(c[c.len() - 1].close),
                })
                .collect();
            (out, delta_ms * k as i64)
        }
        Series::Ticks { ts, price } => {
            let span = (to - from).max(1);
            let width = (span / 120).max(1);
            let (a, z) = (
                ts.partition_point(|&t| t < from - 10 * width),
                ts.partition_point(|&t| t <= to + 10 * width),
            );
            let mut out: Vec<Candle> = Vec::new();
            for i in a..z {
                let bin = ts[i] - (ts[i] - from).rem_euclid(width);
                let p = px(price[i]);
                match out.last_mut() {
                    Some(c) if c.ts == bin => {
                        c.high = c.high.max(p);
                        c.low = c.low.min(p);
                        c.close = p;
                    }
                    _ => out.push(Candle {
                        ts: bin,
                        open: p,
                        high: p,
                        low: p,
                        close: p,
                    }),
                }
            }
            (out, width)
        }
    }
}

/// The best price seen from the entry to the exit, from the points the run replayed (candles in
/// the scenario's intrabar order), as steps.
fn peak(market: &Market, s: &Scenario, row: &TradeRow) -> Vec<(i64, f64)> {
    let dp = market.instrument;
    let Some(entry) = dp.units(row.entry_price) else {
        return Vec::new();
    };
    let sign = row.side.sign();
    let mut best = entry;
    let mut out = vec![(row.entry_time, f(row.entry_price))];
    let mut see = |ts: i64, p: i64, out: &mut Vec<(i64, f64)>| {
        if sign * p > sign * best {
            best = p;
            out.push((ts, f(dp.decimal(p))));
        }
    };
    match &market.series {
        Series::Candles { bars, delta_ms } => {
            let a = bars
                .partition_point(|b| b.ts <= row.entry_time)
                .saturating_sub(1);
            for (i, bar) in bars.iter().enumerate().skip(a) {
                if bar.ts > row.exit_time {
                    break;
                }
                let low_first = s.intrabar.policy.low_first(row.side, bar);
                for pt in bar_points(bar, bar_span(bars, i, *delta_ms), low_first) {
                    if pt.ts > row.entry_time && pt.ts <= row.exit_time {
                        see(pt.ts, pt.price, &mut out);
                    }
                }
            }
        }
        Series::Ticks { ts, price } => {
            let a = ts.partition_point(|&t| t <= row.entry_time);
            for i in a..ts.len() {
                if ts[i] > row.exit_time {
                    break;
                }
                see(ts[i], price[i], &mut out);
            }
        }
    }
    out.push((row.exit_time, f(dp.decimal(best))));
    out
}
