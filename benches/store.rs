//! The per-step write of the store (issue 4's target: ≥ 20k committed steps/s with
//! `synchronous=NORMAL` in WAL on this machine; the figure for `FULL` beside it).
//!
//! One step = one transaction: the step's journal rows (the runner's inputs and the engine
//! events they produced) appended to `trailing_stop_events` and the position's `trailing_stop_state` row
//! written with its version check — exactly what the paper runner commits per position step,
//! the runner batching a market step's positions into one transaction on top of this. The steps
//! are real: the quickstart scenario's day of 1m candles replayed for a position opened every
//! 30 minutes (quickstart config), step by step through the paper driver's `apply` with a recording tap; they are
//! computed before timing, and only `Store::commit` is timed. The database is a file on disk
//! (`CARGO_TARGET_TMPDIR`), not in memory, so `FULL` pays its fsyncs.
//!
//! run with: cargo bench --bench store
//! (quicker: cargo bench --bench store -- --warm-up-time 1 --measurement-time 3)

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trailstop::backtest::market::Series;
use trailstop::backtest::replay::BarRules;
use trailstop::backtest::run::plan_positions;
use trailstop::backtest::{self};
use trailstop::paper::step::{DetailSource, MarketStep, apply, apply_open};
use trailstop::runner::{Entry, Recorder};
use trailstop::scenario::Scenario;
use trailstop::store::{OpenOptions, PositionRecord, StepWrite, Store, Synchronous};

type Step = (Vec<Entry>, PositionRecord);

fn driver(r: &trailstop::backtest::replay::Replay) -> String {
    serde_json::to_string(&r.driver()).unwrap()
}

/// Every position step of the quickstart day with an entry every 30 minutes, in commit order
/// per position.
fn steps() -> Vec<Step> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario = Scenario::load(
        &root.join("scenarios/quickstart.toml"),
        &["entries.every=30m".to_string()],
    )
    .unwrap();
    let loaded = backtest::load(&scenario).unwrap();
    let market = &loaded.market;
    let settings = backtest::run_settings(&scenario);
    let opts = backtest::main_options(&scenario, market);
    let Series::Candles { bars, delta_ms } = &market.series else {
        unreachable!("quickstart is candles")
    };
    let mut out = Vec::new();
    for p in plan_positions(market, &loaded.entries, &settings.symbol).unwrap() {
        let input = MarketStep::Open {
            position: p.position.clone(),
            instrument: market.instrument,
            config: settings.trailing.clone(),
            model: settings.model,
            rules: BarRules::of(opts, false),
            cursor: p.cursor,
        };
        let mut tap = Recorder::default();
        let (mut r, _) = apply_open(&input, &mut tap).unwrap();
        let mut rec =
            PositionRecord::after_step(None, r.sim.snapshot(), driver(&r), &tap.journal());
        out.push((tap.journal(), rec.clone()));
        while !r.is_closed() {
            let g = r.cursor.next;
            let mut input = match bars.get(g) {
                Some(bar) => {
                    let span = trailstop::sim::path::bar_span(bars, g, *delta_ms);
                    MarketStep::bar(g, bar, span, &market.instrument)
                }
                None => break,
            };
            let mut tap = Recorder::default();
            let source = DetailSource::Market {
                series: None,
                policy: opts.policy,
            };
            apply(&mut r, &mut input, source, &mut tap).unwrap();
            rec = PositionRecord::after_step(
                Some(&rec),
                r.sim.snapshot(),
                driver(&r),
                &tap.journal(),
            );
            out.push((tap.journal(), rec.clone()));
        }
    }
    out
}

fn db_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn bench(c: &mut Criterion) {
    let pool = steps();
    let events: usize = pool.iter().map(|s| s.0.len()).sum();
    eprintln!(
        "{} steps in the pool ({:.2} journal rows per step)",
        pool.len(),
        events as f64 / pool.len() as f64
    );
    let mut group = c.benchmark_group("store_commit");
    group.throughput(Throughput::Elements(1));
    for (name, sync) in [
        ("wal_normal", Synchronous::Normal),
        ("wal_full", Synchronous::Full),
    ] {
        if sync == Synchronous::Full {
            group.sample_size(10);
        }
        let mut opts = OpenOptions::create();
        opts.synchronous = sync;
        let mut store = Store::open(&db_path(&format!("{name}.sqlite")), opts).unwrap();
        // Each pass over the pool writes its positions under fresh ids.
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let (round, k) = (next / pool.len(), next % pool.len());
                    next += 1;
                    let (entries, record) = &pool[k];
                    let mut record = record.clone();
                    record.runner.engine.position.id += (round * 1000) as u64;
                    let w = [StepWrite {
                        entries,
                        record: &record,
                    }];
                    let t = Instant::now();
                    store.commit(black_box(&w), &[]).unwrap();
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
