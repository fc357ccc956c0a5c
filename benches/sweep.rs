//! A parameter sweep over a long 1m series: combinations in parallel with rayon, each a full
//! backtest (all four price points per candle, the simulated exchange, rate limits, metrics).
//!
//! run with: cargo bench --bench sweep
//! (RAYON_NUM_THREADS=1 for the per-core figure; the default uses every core.)
//!
//! The series is the seeded geometric random walk of benches/backtest.rs (no real 500k-candle
//! set is available, see ../shared/data/README.md): 525,600 one-minute candles, an entry every
//! 4 h alternating long/short, Binance cancel+create with 300 ms latency, rate limits on,
//! pessimistic order. Throughput counts candle-position steps: each position's bars from entry
//! to exit, both included, summed over the combinations.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[path = "common/gbm.rs"]
mod gbm;
use gbm::gbm_market;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use trailstop::backtest::Loaded;
use trailstop::backtest::run::{RunOptions, run_positions};
use trailstop::backtest::run_settings as settings;
use trailstop::scenario::{Scenario, SideRule};
use trailstop::sim::entries;
use trailstop::sim::path::Policy;
use trailstop::sweep::exec::Job;
use trailstop::sweep::grid::{Grid, parse_cli};
use trailstop::sweep::metrics::Objective;

const SCENARIO: &str = r#"
name = "bench"
[data]
candles = "synthetic.csv"
symbol = "SYNTH"
tick_size = "0.1"
[entries]
every = "4h"
side = "alternate"
[exchange]
venue = "binance"
taker_fee = "0.0005"
slippage_bps = "1"
update_latency_ms = 300
[trailing]
activation_percent = "0.5"
distance_percent = "0.5"
initial_stop_percent = "2.0"
[intrabar]
policy = "pessimistic"
"#;

fn bench(c: &mut Criterion) {
    let market = gbm_market(525_600, 42);
    let entries = entries::every(&market.entry_times(), 4 * 3_600_000, SideRule::Alternate);
    let loaded = Arc::new(Loaded {
        market,
        entries,
        source: "synthetic".into(),
        rows: 525_600,
        gaps: None,
        warnings: Vec::new(),
        no_positions: None,
    });
    let path = std::path::Path::new("bench.toml");
    let scenario = Scenario::from_text(SCENARIO, path, &[]).unwrap();
    let base: toml::Table = toml::from_str(SCENARIO).unwrap();
    // 4 × 4 of the 50 × 50 grid scripts/bench-peers runs.
    let grid = Grid::new(vec![
        parse_cli("activation_percent=0.1:2.5:0.8").unwrap(),
        parse_cli("distance_percent=0.1:2.5:0.8").unwrap(),
    ])
    .unwrap();
    let combos: Vec<u64> = (0..grid.size().unwrap()).collect();
    let job = |band| {
        Job::with_loaded(
            base.clone(),
            scenario.clone(),
            loaded.clone(),
            grid.clone(),
            Objective::TotalReturnPct,
            None,
            band,
        )
        .unwrap()
    };
    let plain = job(false);
    let opts = RunOptions {
        policy: Policy::Pessimistic,
        events: false,
        ambiguity: false,
        detail: None,
    };
    let steps: u64 = combos
        .iter()
        .map(|&k| {
            let s = plain.scenario_for(k).unwrap();
            let runs = run_positions(&loaded.market, &loaded.entries, &settings(&s), opts, |_| {})
                .unwrap();
            runs.iter()
                .map(|r| ((r.close.ts - r.opened_at) / 60_000 + 1) as u64)
                .sum::<u64>()
        })
        .sum();
    eprintln!(
        "{} combinations, {} positions each, {steps} candle-position steps per sweep, {} threads",
        combos.len(),
        loaded.entries.len(),
        rayon::current_num_threads()
    );
    let stop = AtomicBool::new(false);
    let mut g = c.benchmark_group("sweep");
    g.throughput(Throughput::Elements(steps));
    g.sample_size(10);
    g.bench_function("pessimistic", |b| {
        b.iter(|| plain.run_many(&combos, &stop, &|| {}).unwrap())
    });
    let band = job(true);
    g.bench_function("pessimistic+band+ambiguity", |b| {
        b.iter(|| band.run_many(&combos, &stop, &|| {}).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
