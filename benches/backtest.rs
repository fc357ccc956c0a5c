//! One backtest over a long 1m series (issue 3's speed target: >= 20 M candles/s of simulated
//! position-time on one core, a candle counted once per open position it is replayed for).
//!
//! run with: cargo bench --bench backtest
//!
//! The series is a seeded geometric random walk (no real 500k-candle set is available here,
//! see ../shared/data/README.md): 525,600 one-minute candles (a year), BTC-like prices on a 0.1
//! tick, an entry every 4 h alternating long/short, all trailing modes and rate limits on.

#[path = "common/gbm.rs"]
mod gbm;
use gbm::gbm_market;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::str::FromStr;

use trailstop::backtest::run::{RunOptions, RunSettings, run_positions};
use trailstop::engine::{Breakeven, Momentum, TimeActivation, TrailingConfig};
use trailstop::scenario::{SideRule, Venue};
use trailstop::sim::entries;
use trailstop::sim::exchange::VenueModel;
use trailstop::sim::path::Policy;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn all_modes() -> TrailingConfig {
    let mut c = TrailingConfig::with_distance(d("0.5"));
    c.activation_percent = d("0.3");
    c.initial_stop_percent = Some(d("2"));
    c.breakeven = Some(Breakeven {
        trigger_percent: d("0.2"),
        offset_percent: d("0.05"),
    });
    c.time_activation = Some(TimeActivation {
        after_seconds: 3600,
        min_profit_percent: d("0.1"),
    });
    c.momentum = Some(Momentum {
        window_seconds: 300,
        threshold_percent: d("0.5"),
        distance_factor: d("0.5"),
    });
    c
}

fn bench(c: &mut Criterion) {
    let market = gbm_market(525_600, 42);
    let entries = entries::every(&market.entry_times(), 4 * 3_600_000, SideRule::Alternate);
    let settings = RunSettings {
        symbol: "SYNTH".into(),
        trailing: all_modes(),
        model: VenueModel {
            venue: Venue::Binance,
            update_latency_ms: 300,
        },
        taker_fee: d("0.0005"),
        slippage_bps: d("1"),
    };
    let opts = |ambiguity| RunOptions {
        policy: Policy::Pessimistic,
        events: false,
        ambiguity,
        detail: None,
    };
    // Candle-position steps: each position's bars from entry to exit, both included.
    let runs = run_positions(&market, &entries, &settings, opts(false), |_| {}).unwrap();
    let steps: u64 = runs
        .iter()
        .map(|r| ((r.close.ts - r.opened_at) / 60_000 + 1) as u64)
        .sum();
    eprintln!(
        "{} candles, {} positions, {} candle-position steps",
        market.len(),
        runs.len(),
        steps
    );
    let mut g = c.benchmark_group("backtest");
    g.throughput(Throughput::Elements(steps));
    g.sample_size(20);
    g.bench_function("pessimistic", |b| {
        b.iter(|| {
            black_box(run_positions(&market, &entries, &settings, opts(false), |_| {}).unwrap())
        })
    });
    g.bench_function("pessimistic+ambiguity", |b| {
        b.iter(|| {
            black_box(run_positions(&market, &entries, &settings, opts(true), |_| {}).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
