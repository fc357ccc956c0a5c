//! Property: the paper runner (engine → stop order lifecycle → simulated venue → SQLite, one
//! market step at a time, every step committed) gives exactly the backtest's outputs — the
//! same `trades.csv`, `events.jsonl` and `summary.json` bytes — although the backtest passes
//! runs of quiet bars at once. Random markets (candles, trade ticks, candles with finer tick or
//! candle detail, `detail_bars` both ways), random configs (every mode on or off), both venues
//! with random latency, all five policies, both sides, bar-open and priced entries.

mod random_config;
mod random_market;

use std::path::PathBuf;

use proptest::prelude::*;
use rust_decimal::Decimal;
use trailstop::backtest::market::{Market, Series};
use trailstop::backtest::{self, Loaded, output};
use trailstop::engine::{Instrument, Side, TrailingConfig};
use trailstop::paper::{self, PaperOptions};
use trailstop::scenario::{DetailBars, Scenario, Venue};
use trailstop::sim::entries::EntrySpec;
use trailstop::sim::path::{Bar, Policy};
use trailstop::store::{OpenOptions, Store};

const DELTA: i64 = 60_000;

const MINIMAL: &str = r#"
name = "paper-props"
[data]
candles = "unused.csv"
symbol = "TESTUSDT"
tick_size = "0.1"
[entries]
file = "unused-entries.csv"
[trailing]
distance_percent = "1"
"#;

/// What the market is made of.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Candles,
    Ticks,
    TickDetail(DetailBars),
    CandleDetail(DetailBars),
}

#[derive(Debug, Clone)]
struct Case {
    kind: Kind,
    config: TrailingConfig,
    venue: Venue,
    latency: u64,
    fee_bps: i64,
    slippage_bps: i64,
    policy: Policy,
    /// (bar index, long, priced inside the bar at this fraction of its range)
    entries: Vec<(usize, bool, Option<i64>)>,
    bars: Vec<Bar>,
    /// Per bar: (offset in the bar, fraction 0..=99 of its range).
    inside: Vec<Vec<(i64, i64)>>,
}

fn case() -> impl Strategy<Value = Case> {
    let steps = prop::collection::vec((-40i64..40, 0i64..30, 0i64..30), 3..50);
    let inside = prop::collection::vec(prop::collection::vec((0i64..DELTA, 0i64..100), 0..6), 50);
    let kind = (0usize..6).prop_map(|k| match k {
        0 => Kind::Candles,
        1 => Kind::Ticks,
        2 => Kind::TickDetail(DetailBars::All),
        3 => Kind::TickDetail(DetailBars::Ambiguous),
        4 => Kind::CandleDetail(DetailBars::All),
        _ => Kind::CandleDetail(DetailBars::Ambiguous),
    });
    let entries = prop::collection::vec(
        (0usize..50, any::<bool>(), prop::option::of(1i64..99)),
        1..5,
    );
    (
        kind,
        random_config::config(),
        (any::<bool>(), 0u64..3000, 0i64..8, 0i64..5),
        0usize..5,
        entries,
        steps,
        inside,
    )
        .prop_map(
            |(
                kind,
                config,
                (binance, latency, fee_bps, slippage_bps),
                policy,
                entries,
                steps,
                inside,
            )| {
                let bars: Vec<Bar> = random_market::walk(&steps, 1_704_067_200_000, DELTA);
                let n = bars.len();
                Case {
                    kind,
                    config,
                    venue: if binance {
                        Venue::Binance
                    } else {
                        Venue::Bybit
                    },
                    latency,
                    fee_bps,
                    slippage_bps,
                    policy: Policy::ALL[policy],
                    entries: entries.into_iter().map(|(i, l, f)| (i % n, l, f)).collect(),
                    bars,
                    inside,
                }
            },
        )
}

/// Trade ticks inside each bar, sorted, priced inside its range.
fn ticks(case: &Case) -> Series {
    let (mut ts, mut price) = (Vec::new(), Vec::new());
    for (b, per_bar) in case.bars.iter().zip(&case.inside) {
        let mut t = per_bar.clone();
        t.sort();
        // A bar's open as its first tick keeps every bar represented.
        ts.push(b.ts);
        price.push(b.open);
        for (off, f) in t {
            ts.push(b.ts + off.max(1));
            price.push(b.low + (b.high - b.low) * f / 99);
        }
    }
    Series::Ticks { ts, price }
}

/// 15-second candles inside each bar: its open, then prices inside its range, its close.
fn fine_candles(case: &Case) -> Series {
    let mut bars = Vec::new();
    for (b, per_bar) in case.bars.iter().zip(&case.inside) {
        let at = |k: usize| {
            per_bar
                .get(k)
                .map_or(b.close, |&(_, f)| b.low + (b.high - b.low) * f / 99)
        };
        let mut open = b.open;
        for k in 0..4 {
            let close = if k == 3 { b.close } else { at(k) };
            let wick = at(k + 3);
            bars.push(Bar {
                ts: b.ts + k as i64 * DELTA / 4,
                open,
                high: open.max(close).max(wick),
                low: open.min(close).min(wick),
                close,
            });
            open = close;
        }
    }
    Series::Candles {
        bars,
        delta_ms: DELTA / 4,
    }
}

fn scenario_and_data(case: &Case) -> (Scenario, Loaded) {
    let mut s = Scenario::from_text(MINIMAL, std::path::Path::new("props/scenario.toml"), &[])
        .expect("the minimal scenario parses");
    s.trailing = case.config.clone();
    s.exchange.venue = case.venue;
    s.exchange.update_latency_ms = case.latency;
    s.exchange.taker_fee = Decimal::new(case.fee_bps, 4);
    s.exchange.slippage_bps = Decimal::from(case.slippage_bps);
    s.intrabar.policy = case.policy;
    let candles = Series::Candles {
        bars: case.bars.clone(),
        delta_ms: DELTA,
    };
    let (series, detail) = match case.kind {
        Kind::Candles => (candles, None),
        Kind::Ticks => (ticks(case), None),
        Kind::TickDetail(d) => {
            s.data.detail_bars = Some(d);
            (candles, Some(ticks(case)))
        }
        Kind::CandleDetail(d) => {
            s.data.detail_bars = Some(d);
            (candles, Some(fine_candles(case)))
        }
    };
    let instrument = Instrument::with_price_decimals(Decimal::new(1, 1), 1);
    let entries = case
        .entries
        .iter()
        .map(|&(i, long, priced)| {
            let b = &case.bars[i];
            EntrySpec {
                time: b.ts + priced.map_or(0, |f| f * DELTA / 100),
                side: if long { Side::Long } else { Side::Short },
                price: priced.map(|f| instrument.decimal(b.low + (b.high - b.low) * f / 99)),
                quantity: None,
            }
        })
        .collect();
    let rows = match &series {
        Series::Candles { bars, .. } => bars.len(),
        Series::Ticks { ts, .. } => ts.len(),
    };
    let loaded = Loaded {
        market: Market::new(instrument, series, detail),
        entries,
        source: PathBuf::from("props/data.csv"),
        rows,
        gaps: None,
        warnings: Vec::new(),
        no_positions: None,
    };
    (s, loaded)
}

fn files(report: &backtest::Report) -> [String; 3] {
    [
        output::trades_csv(report),
        output::events_jsonl(report),
        serde_json::to_string_pretty(&report.summary).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn paper_runner_equals_backtest(case in case()) {
        let (scenario, loaded) = scenario_and_data(&case);
        let bt = backtest::run_scenario(&scenario, &loaded, |_, _| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite"), OpenOptions::runner()).unwrap();
        let pp = paper::run(&scenario, &loaded, &mut store, PaperOptions::default(), |_| {}).unwrap();
        let [bt_trades, bt_events, bt_summary] = files(&bt);
        let [pp_trades, pp_events, pp_summary] = files(&pp);
        prop_assert_eq!(pp_trades, bt_trades);
        prop_assert_eq!(pp_events, bt_events);
        prop_assert_eq!(pp_summary, bt_summary);
        // The database verifies: every position's journal rebuilds its stored row.
        prop_assert_eq!(store.verify().unwrap(), bt.rows.len());
    }
}
