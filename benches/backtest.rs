//! One backtest over a long 1m series (issue 3's speed target: >= 20 M candles/s of simulated
//! position-time on one core, a candle counted once per open position it is replayed for).
//!
//! run with: cargo bench --bench backtest
//!
//! The series is a seeded geometric random walk (no real 500k-candle set is available here,
//! see ../shared/data/README.md): 525,600 one-minute candles (a year), BTC-like prices on a 0.1
//! tick, an entry every 4 h alternating long/short, all trailing modes and rate limits on.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::str::FromStr;

use trailstop::backtest::market::{Market, Series};
use trailstop::backtest::run::{RunOptions, RunSettings, run_positions};
use trailstop::engine::{Breakeven, Instrument, Momentum, TimeActivation, TrailingConfig};
use trailstop::scenario::{SideRule, Venue};
use trailstop::sim::entries;
use trailstop::sim::exchange::VenueModel;
use trailstop::sim::path::{Bar, Policy};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// xorshift64* uniform in (0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next(), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Seeded GBM candles in units of 0.1 (f64 only generates the data; the run is exact).
pub fn gbm_market(n: usize, seed: u64) -> Market {
    let mut rng = Rng(seed);
    let mut price = 30_000.0f64;
    let sigma = 0.0008; // per-minute volatility, BTC-like
    let mut bars = Vec::with_capacity(n);
    let t0 = 1_640_995_200_000i64;
    for i in 0..n {
        let open = price;
        let mut hi = open;
        let mut lo = open;
        for _ in 0..4 {
            price *= (sigma / 2.0 * rng.normal()).exp();
            hi = hi.max(price);
            lo = lo.min(price);
        }
        let u = |x: f64| (x * 10.0).round() as i64;
        bars.push(Bar {
            ts: t0 + i as i64 * 60_000,
            open: u(open),
            high: u(hi),
            low: u(lo),
            close: u(price),
        });
    }
    Market {
        instrument: Instrument::with_price_decimals(d("0.1"), 1),
        series: Series::Candles {
            bars,
            delta_ms: 60_000,
        },
        detail: None,
    }
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
