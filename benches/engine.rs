//! The engine's hot path: one trailing stop at a time fed a realistic price series with every
//! mode on (initial stop, breakeven, time activation, momentum, rate limit). A position that
//! closes (its resting stop is crossed, or the engine asks to exit now) is followed by a new one
//! opened at the next price, alternating long and short, so the whole series is processed.
//!
//! Series: `data/BTCBUSD-1m-20221213.csv` (4 points per candle: O, L, H, C at t, t+⌊Δ/3⌋,
//! t+⌊2Δ/3⌋, t+Δ-1ms), or a seeded random walk when the file is absent. Prices are converted to
//! instrument units before timing; the timed loop is `on_price_units` (plus the reopenings).
//! Criterion reports the time per price update (`Throughput::Elements`).
//!
//! run with: cargo bench --bench engine
//! (quicker: cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3)

use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use trailstop::engine::{
    Breakeven, Event, EventSink, ExitReason, Instrument, Intent, Momentum, Position, RateLimit,
    Side, TimeActivation, TrailingConfig, TrailingStop,
};

const CANDLES: &str = "data/BTCBUSD-1m-20221213.csv";

/// Price points in instrument units, with their times (epoch ms).
struct Series {
    prices: Vec<i64>,
    ts: Vec<i64>,
    source: String,
}

/// Reads `timestamp,open,high,low,close[,volume]` candles; `None` if the file is missing.
fn load_candles(path: &Path, inst: &Instrument) -> Option<Series> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()?
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (t, o, h, l, c) = (
        col("timestamp")?,
        col("open")?,
        col("high")?,
        col("low")?,
        col("close")?,
    );
    let mut candles = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let units = |i: usize| {
            let d = Decimal::from_str(f[i].trim()).expect("price");
            inst.units(d)
                .expect("price exact at the instrument's decimals")
        };
        let mut ts: i64 = f[t].trim().parse().expect("timestamp");
        if ts < 100_000_000_000 {
            ts *= 1000; // seconds
        }
        candles.push((ts, [units(o), units(l), units(h), units(c)]));
    }
    let delta = candles
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .min()
        .unwrap_or(60_000);
    let offsets = [0, delta / 3, 2 * delta / 3, delta - 1];
    let mut series = Series {
        prices: Vec::with_capacity(candles.len() * 4),
        ts: Vec::with_capacity(candles.len() * 4),
        source: format!("{} ({} candles)", path.display(), candles.len()),
    };
    for (t0, prices) in candles {
        for (p, off) in prices.into_iter().zip(offsets) {
            series.prices.push(p);
            series.ts.push(t0 + off);
        }
    }
    Some(series)
}

/// A seeded random walk around 17 000 on the 0.01 grid, one point every 15 s.
fn random_walk(inst: &Instrument, points: usize) -> Series {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let tick = inst.units(Decimal::new(1, 2)).unwrap();
    let mut ticks: i64 = 1_700_000;
    let mut series = Series {
        prices: Vec::with_capacity(points),
        ts: Vec::with_capacity(points),
        source: format!("seeded random walk ({points} points)"),
    };
    for i in 0..points {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ticks = (ticks + (x % 801) as i64 - 400).max(1);
        series.prices.push(ticks * tick);
        series.ts.push(1_670_889_600_000 + i as i64 * 15_000);
    }
    series
}

fn all_modes() -> TrailingConfig {
    let d = |m: i64, s: u32| Decimal::new(m, s);
    TrailingConfig {
        activation_percent: d(5, 1),
        distance_percent: d(3, 1),
        initial_stop_percent: Some(d(1, 0)),
        rate_limit: RateLimit {
            min_interval_seconds: 60,
            min_improvement_percent: d(5, 2),
            emergency_percent: d(5, 1),
        },
        breakeven: Some(Breakeven {
            trigger_percent: d(2, 1),
            offset_percent: d(5, 2),
        }),
        time_activation: Some(TimeActivation {
            after_seconds: 1800,
            min_profit_percent: d(1, 1),
        }),
        momentum: Some(Momentum {
            window_seconds: 300,
            threshold_percent: d(3, 1),
            distance_factor: d(5, 1),
        }),
    }
}

#[derive(Default, Debug)]
struct Tally {
    positions: u64,
    exits: u64,
}

fn open<O: EventSink>(
    inst: &Instrument,
    config: &TrailingConfig,
    side: Side,
    price: i64,
    ts: i64,
    out: &mut O,
) -> (TrailingStop, Option<i64>) {
    let position = Position::new(1, "BTCBUSD", side, inst.decimal(price), ts);
    let (stop, intent) = TrailingStop::open(&position, inst, config, out).expect("open");
    let resting = match intent {
        Some(Intent::PlaceStop { price, .. }) => Some(price),
        _ => None,
    };
    (stop, resting)
}

/// Feeds the whole series, reopening after every close. A resting stop that the price crosses
/// fills (DESIGN §2.1 step 1, reduced to what keeps the loop realistic).
fn run<O: EventSink>(s: &Series, inst: &Instrument, config: &TrailingConfig, out: &mut O) -> Tally {
    let mut tally = Tally::default();
    let n = s.prices.len();
    let mut side = Side::Long;
    let (mut stop, mut resting) = open(inst, config, side, s.prices[0], s.ts[0], out);
    tally.positions += 1;
    let mut i = 1;
    while i < n {
        let (p, ts) = (s.prices[i], s.ts[i]);
        let filled = match (resting, side) {
            (Some(r), Side::Long) => p <= r,
            (Some(r), Side::Short) => p >= r,
            (None, _) => false,
        };
        let exit = if filled {
            stop.on_closed(ExitReason::TrailingStop, resting.unwrap(), ts, out);
            true
        } else {
            match stop.on_price_units(p, ts, out) {
                Ok(Some(Intent::PlaceStop { price, .. })) => {
                    resting = Some(price);
                    false
                }
                Ok(Some(Intent::ExitNow)) => true,
                Ok(None) => false,
                Err(e) => panic!("{e}"),
            }
        };
        i += 1;
        if exit {
            tally.exits += 1;
            if i >= n {
                break;
            }
            side = match side {
                Side::Long => Side::Short,
                Side::Short => Side::Long,
            };
            (stop, resting) = open(inst, config, side, s.prices[i], s.ts[i], out);
            tally.positions += 1;
            i += 1;
        }
    }
    tally
}

fn bench_engine(c: &mut Criterion) {
    let inst = Instrument::new(Decimal::new(1, 2));
    let config = all_modes();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CANDLES);
    let series = load_candles(&path, &inst).unwrap_or_else(|| random_walk(&inst, 20_000));
    let points = series.prices.len() as u64;
    let mut events: Vec<Event> = Vec::new();
    let tally = run(&series, &inst, &config, &mut events);
    eprintln!(
        "engine bench: {}, {points} price points, {} positions, {} closes, {} events",
        series.source,
        tally.positions,
        tally.exits,
        events.len()
    );

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(points));
    group.bench_function("all_modes/no_events", |b| {
        b.iter(|| {
            run(
                black_box(&series),
                &inst,
                &config,
                &mut trailstop::engine::NoEvents,
            )
        })
    });
    group.bench_function("all_modes/vec_events", |b| {
        b.iter(|| {
            events.clear();
            run(black_box(&series), &inst, &config, &mut events);
            black_box(events.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
