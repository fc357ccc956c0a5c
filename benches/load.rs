//! Loading market data from CSV (issue 9: the reader moved to the `csv` crate must be no slower).
//!
//! run with: cargo bench --bench load -- --quick
//!
//! Files: a year of synthetic 1m candles (525,600 rows, Binance-style header and volume column)
//! and 1,000,000 synthetic trade ticks (Binance `trades` with a header), both written to a
//! temporary folder first, and the repository's day of real BTC/BUSD candles.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A seeded walk of candle rows in exact two-decimal text (integers in cents, no float).
fn candles_csv(rows: usize) -> String {
    let mut s = String::with_capacity(rows * 64);
    s.push_str("timestamp,open,high,low,close,volume\n");
    let (mut price, mut state) = (1_700_000i64, 42u64);
    for i in 0..rows {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let step = (state >> 33) as i64 % 2_001 - 1_000;
        let open = price;
        let close = (price + step).max(100);
        let high = open.max(close) + (state >> 50) as i64 % 500;
        let low = (open.min(close) - (state >> 40) as i64 % 500).max(1);
        let ts = 1_670_889_600_000i64 + i as i64 * 60_000;
        let c = |v: i64| format!("{}.{:02}", v / 100, v % 100);
        writeln!(
            s,
            "{ts},{},{},{},{},{}.{:05}",
            c(open),
            c(high),
            c(low),
            c(close),
            (state >> 20) % 500,
            (state >> 8) % 100_000
        )
        .unwrap();
        price = close;
    }
    s
}

fn trades_csv(rows: usize) -> String {
    let mut s = String::with_capacity(rows * 48);
    s.push_str("id,price,qty,quote_qty,time,is_buyer_maker\n");
    let mut price = 268_162i64;
    for i in 0..rows {
        price += (i as i64 * 7_919) % 11 - 5;
        let ts = 1_723_161_256_560i64 + (i as i64) * 37;
        writeln!(
            s,
            "{i},{}.{:02},0.061,163.58,{ts},{}",
            price / 100,
            price % 100,
            if i % 3 == 0 { "true" } else { "false" }
        )
        .unwrap();
    }
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let candles = dir.path().join("candles.csv");
    std::fs::write(&candles, candles_csv(525_600)).unwrap();
    let trades = dir.path().join("trades.csv");
    std::fs::write(&trades, trades_csv(1_000_000)).unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BTCBUSD-1m-20221213.csv");

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.throughput(Throughput::Elements(525_600));
    g.bench_function("candles_csv_525600", |b| {
        b.iter(|| black_box(trailstop::data::load_candles(&candles).unwrap()))
    });
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("trades_csv_1000000", |b| {
        b.iter(|| black_box(trailstop::data::load_trades(&trades).unwrap()))
    });
    g.throughput(Throughput::Elements(1_440));
    g.bench_function("candles_csv_real_1440", |b| {
        b.iter(|| black_box(trailstop::data::load_candles(&real).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
