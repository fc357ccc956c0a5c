//! Issue 9, "Wrong results that must become a clear error": inputs that used to run and give
//! wrong numbers (or crash) are refused with an error that says what and where, or run with a
//! warning. Tests over the shared data collection skip with a note when it is absent.

mod cli_support;

use std::path::PathBuf;

use cli_support::{run_code, run_err, trailstop};
use rust_decimal_macros::dec;
use trailstop::backtest::market::Series;
use trailstop::backtest::{self, BacktestError, Loaded, Report};
use trailstop::data::format_ms;
use trailstop::engine::{Event, ExitReason};
use trailstop::scenario::Scenario;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

/// The shared real-data collection, if present.
fn shared() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TRAILSTOP_SHARED_DATA").map(PathBuf::from),
        Some(cli_support::root().join("../shared/data")),
        Some(PathBuf::from("/work/shared/data")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("MANIFEST.csv").is_file());
    if found.is_none() {
        eprintln!("skipped: the shared data collection (shared/data/MANIFEST.csv) is absent");
    }
    found
}

/// A scenario folder: `scenario.toml` with `files` beside it.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(scenario: &str, files: &[(&str, &str)]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scenario.toml"), scenario).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Case { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("scenario.toml")
    }

    fn scenario(&self) -> Result<Scenario, trailstop::scenario::ScenarioError> {
        Scenario::load(&self.path(), &[])
    }

    fn load(&self) -> Result<(Scenario, Loaded), BacktestError> {
        let s = self.scenario()?;
        let l = backtest::load(&s)?;
        Ok((s, l))
    }

    fn run(&self) -> (Loaded, Report) {
        let (s, l) = self.load().unwrap();
        let r = backtest::run_scenario(&s, &l, |_, _| {}).unwrap();
        (l, r)
    }
}

/// A candle CSV from `(ms, "o,h,l,c")` rows.
fn candles(rows: &[(i64, &str)]) -> String {
    let mut s = String::from("timestamp,open,high,low,close\n");
    for (t, ohlc) in rows {
        s.push_str(&format!("{t},{ohlc}\n"));
    }
    s
}

const RATE_OFF: &str = "[trailing.rate_limit]\nmin_interval_seconds = 0\nmin_improvement_percent = 0\nemergency_percent = 1\n";

/// Every trade's exit lies inside the candle it happened in: before the next candle's open.
fn exits_inside_their_candle(loaded: &Loaded, report: &Report) {
    let Series::Candles { bars, .. } = &loaded.market.series else {
        panic!("candles")
    };
    for row in &report.rows {
        let i = bars.partition_point(|b| b.ts <= row.exit_time) - 1;
        if let Some(next) = bars.get(i + 1) {
            assert!(
                row.exit_time < next.ts,
                "trade {} exits at {} inside the next candle {}",
                row.position_id,
                format_ms(row.exit_time),
                format_ms(next.ts)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A candle that reaches into the next one (DESIGN §3)

/// A 1m interval with a candle that the next one follows after 1 s: its four points are at
/// +0, +333, +666 and +999 ms, and the next candle's open fills the stop at +1 s.
#[test]
fn a_candle_spans_only_up_to_the_next_open() {
    let case = Case::new(
        &format!(
            "name = \"span\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\ninterval = \"1m\"\n\
             [entries]\nevery = \"1d\"\n[trailing]\ndistance_percent = \"1\"\n{RATE_OFF}"
        ),
        &[(
            "c.csv",
            &candles(&[
                (T0, "100,101,99.5,100.5"),
                (T0 + 1_000, "99.8,100,99.7,99.9"),
                (T0 + 61_000, "99.9,100,99.8,99.9"),
            ]),
        )],
    );
    let (loaded, report) = case.run();
    let row = &report.rows[0];
    // O 100 (entry, stop 99), L 99.5 at +333, H 101 at +666 (stop 99.99 → 99.9), C at +999;
    // the next candle opens at 99.8 through the stop: a gap fill at the open.
    assert_eq!(row.exit_reason, ExitReason::TrailingStop);
    assert_eq!(row.exit_time, T0 + 1_000);
    assert_eq!(row.exit_price, dec!(99.8));
    let raised: Vec<i64> = report.events[0]
        .1
        .iter()
        .filter_map(|e| match e {
            Event::StopRaised { ts, .. } => Some(*ts),
            _ => None,
        })
        .collect();
    assert_eq!(raised, [T0, T0 + 666]);
    // The interval is the one given; no step is below it but the first.
    assert_eq!(report.summary.interval_ms, Some(60_000));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("the shortest step between candles, 1s")
            && loaded.warnings[0]
                .contains("below the candle interval 1m (given by [data] interval)"),
        "{:?}",
        loaded.warnings
    );
    let gaps = report.summary.gaps.unwrap();
    assert_eq!((gaps.interval_ms, gaps.count), (60_000, 0));
    // The summary keeps the warning; the CLI prints it to stderr.
    let json = trailstop::backtest::output::summary_json(&report.summary);
    assert!(json.contains("\"warnings\": ["), "{json}");
    let out = case.dir.path().join("out");
    let (_, stderr) = run_code(
        trailstop()
            .arg("backtest")
            .arg(case.path())
            .arg("--out")
            .arg(&out)
            .arg("-q"),
        0,
    );
    assert!(
        stderr.starts_with("warning: ") && stderr.contains("the shortest step between candles, 1s"),
        "{stderr}"
    );
}

/// The last candle spans the whole interval; end of data closes at `t_last + Δ - 1`.
#[test]
fn the_last_candle_spans_the_interval() {
    let case = Case::new(
        "name = \"last\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\ninterval = \"1h\"\n\
         [entries]\nevery = \"1d\"\n[trailing]\ndistance_percent = \"5\"\n",
        &[(
            "c.csv",
            &candles(&[
                (T0, "100,101,99.5,100.5"),
                (T0 + 60_000, "100,101,99.5,100.5"),
            ]),
        )],
    );
    let (_, report) = case.run();
    assert_eq!(report.rows[0].exit_reason, ExitReason::EndOfData);
    assert_eq!(report.rows[0].exit_time, T0 + 60_000 + 3_600_000 - 1);
}

#[test]
fn a_bad_interval_is_named() {
    let case = Case::new(
        "name = \"x\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\ninterval = \"1x\"\n\
         [entries]\nevery = \"1d\"\n[trailing]\ndistance_percent = \"5\"\n",
        &[("c.csv", &candles(&[(T0, "100,101,99.5,100.5")]))],
    );
    let e = case.scenario().unwrap_err().to_string();
    assert!(e.contains("data.interval: \"1x\": unknown unit"), "{e}");
    let case = Case::new(
        "name = \"x\"\n[data]\ntrades = \"t.csv\"\ntick_size = \"0.1\"\ninterval = \"1s\"\n\
         [entries]\nevery = \"1d\"\n[trailing]\ndistance_percent = \"5\"\n",
        &[],
    );
    let e = case.scenario().unwrap_err().to_string();
    assert!(
        e.contains("data.interval: only used with data.candles"),
        "{e}"
    );
}

/// Lean's Coinbase `second` file: the most common step is 30 s, many are 1 s. It used to stop
/// with `engine: price point … before the previous one`.
#[test]
fn sparse_one_second_candles_run_and_exit_inside_their_candle() {
    let Some(data) = shared() else { return };
    let file = data.join("lean/candles/crypto_coinbase_btcusd_second_20161007.csv");
    let scenario = |interval: &str| {
        format!(
            "name = \"sec\"\n[data]\ncandles = \"{}\"\ntick_size = \"0.01\"\n{interval}\
             [entries]\nevery = \"30m\"\nside = \"alternate\"\n[trailing]\ndistance_percent = \"0.05\"\n{RATE_OFF}",
            file.display()
        )
    };
    let case = Case::new(&scenario(""), &[]);
    let (loaded, report) = case.run();
    assert!(report.rows.len() > 20, "{}", report.rows.len());
    exits_inside_their_candle(&loaded, &report);
    assert_eq!(report.summary.interval_ms, Some(30_000));
    assert!(
        loaded.warnings.iter().any(|w| w.contains(
            "the shortest step between candles, 1s (from 2016-10-07T00:16:36Z to 2016-10-07T00:16:37Z), is below the candle interval 30s (the most common step"
        )),
        "{:?}",
        loaded.warnings
    );
    // Told the interval, the run says nothing: no step is shorter than a second.
    let case = Case::new(&scenario("interval = \"1s\"\n"), &[]);
    let (loaded, report) = case.run();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(report.summary.interval_ms, Some(1_000));
    assert_eq!(report.summary.gaps.unwrap().interval_ms, 1_000);
    exits_inside_their_candle(&loaded, &report);
}

/// The paper runner steps the same short candles bar by bar: the same outputs as the backtest.
#[test]
fn paper_equals_backtest_on_sparse_candles() {
    let Some(data) = shared() else { return };
    let file = data.join("lean/candles/crypto_coinbase_btcusd_second_20161007.csv");
    let case = Case::new(
        &format!(
            "name = \"sec\"\n[data]\ncandles = \"{}\"\ntick_size = \"0.01\"\n\
             [entries]\nevery = \"2h\"\nside = \"alternate\"\n[exchange]\nvenue = \"binance\"\n\
             update_latency_ms = 300\n[trailing]\ndistance_percent = \"0.05\"\n\
             [trailing.momentum]\nwindow_seconds = 60\nthreshold_percent = \"0.02\"\n\
             distance_factor = \"0.5\"\n",
            file.display()
        ),
        &[],
    );
    let dir = case.dir.path();
    let (bt, paper) = (dir.join("bt"), dir.join("paper"));
    run_code(
        trailstop()
            .arg("backtest")
            .arg(case.path())
            .arg("-q")
            .arg("--out")
            .arg(&bt),
        0,
    );
    run_code(
        trailstop()
            .arg("paper")
            .arg(case.path())
            .arg("-q")
            .arg("--db")
            .arg(dir.join("db.sqlite"))
            .arg("--out")
            .arg(&paper),
        0,
    );
    for f in ["trades.csv", "summary.json", "events.jsonl"] {
        let (x, y) = (
            std::fs::read_to_string(bt.join(f)).unwrap(),
            std::fs::read_to_string(paper.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between paper and backtest");
    }
    let trades = std::fs::read_to_string(bt.join("trades.csv")).unwrap();
    assert!(trades.lines().count() > 5, "{trades}");
}

/// Calendar-month candles: February is shorter than the most common step (31 days).
#[test]
fn calendar_month_candles_end_at_the_next_month() {
    let Some(data) = shared() else { return };
    let file = data.join("backtesting_py/candles/BTCUSD_1M.csv");
    let case = Case::new(
        &format!(
            "name = \"month\"\n[data]\ncandles = \"{}\"\ntick_size = \"0.01\"\n\
             [entries]\nevery = \"30d\"\n[trailing]\ndistance_percent = \"10\"\n{RATE_OFF}",
            file.display()
        ),
        &[],
    );
    let (loaded, report) = case.run();
    assert_eq!(report.summary.interval_ms, Some(31 * 86_400_000));
    exits_inside_their_candle(&loaded, &report);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("is below the candle interval 31d")
                && w.contains("the shortest step between candles, 28d")),
        "{:?}",
        loaded.warnings
    );
    // 2012-01-31 → 2012-02-29: the first candle's low is 29 days / 3 in.
    let Series::Candles { bars, delta_ms } = &loaded.market.series else {
        panic!()
    };
    let span = trailstop::sim::path::bar_span(bars, 0, *delta_ms);
    assert_eq!(span, 29 * 86_400_000);
}

// ---------------------------------------------------------------------------------------------
// Timestamps that cannot be right

/// A day of candles timed in milliseconds since midnight used to run as 1970 (1,440 trades,
/// −296 %); a year-9999 epoch in seconds was read as milliseconds; `1e23` as nanoseconds.
#[test]
fn impossible_timestamps_name_the_line_the_value_and_the_unit() {
    let scenario = "name = \"ts\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\n\
                    [entries]\nevery = \"1m\"\n[trailing]\ndistance_percent = \"1\"\n";
    for (first, second, message) in [
        (
            "0",
            "60000",
            "c.csv: line 2, field `timestamp`: epoch `0` read as seconds is \
             1970-01-01T00:00:00Z, before 2009-01-03 (the first Bitcoin block): no crypto market \
             is that old (a time of day such as milliseconds since midnight?",
        ),
        (
            "253402300740",
            "253402300799",
            "c.csv: line 2, field `timestamp`: epoch `253402300740` read as milliseconds is \
             1978-01-11T21:31:40.740Z, before 2009-01-03 (the first Bitcoin block): no crypto \
             market is that old (as seconds it would be 9999-12-31T23:59:00Z;",
        ),
        (
            "1e23",
            "1.1e23",
            "c.csv: line 2, field `timestamp`: epoch `1e23` read as nanoseconds is \
             +3170843-11-07T09:46:40Z, after 9999-12-31",
        ),
        (
            "2008-12-31T23:59:00Z",
            "2009-01-01T00:00:00Z",
            "c.csv: line 2, field `timestamp`: ISO-8601 time `2008-12-31T23:59:00Z` is \
             2008-12-31T23:59:00Z, before 2009-01-03",
        ),
    ] {
        let csv = format!(
            "timestamp,open,high,low,close\n{first},100,101,99,100\n{second},100,101,99,100\n"
        );
        let case = Case::new(scenario, &[("c.csv", &csv)]);
        let err = run_err(trailstop().arg("backtest").arg(case.path()).arg("-q"));
        assert!(err.contains(message), "{first}:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fees that look like percent, rate limits that contradict each other

/// `taker_fee = 0.04` meant 0.04 % and ran as 4 % a side (total −92 %).
#[test]
fn a_percent_looking_fee_fails_the_run_and_says_the_units() {
    let err = run_err(trailstop().args([
        "backtest",
        cli_support::QUICKSTART,
        "--set",
        "exchange.taker_fee=0.04",
        "-q",
    ]));
    assert!(
        err.contains("quickstart.toml: exchange.taker_fee: 0.04 is 4 % of the notional per side")
            && err.contains("taker_fee_bps = 4")
            && err.contains("trailing.*_percent keys are percent"),
        "{err}"
    );
    // The quickstart's fee (taker_fee = 0.0004) in basis points runs the same.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_code(
        trailstop()
            .args(["backtest", cli_support::QUICKSTART, "-q", "--out"])
            .arg(&a),
        0,
    );
    run_code(
        trailstop()
            .args(["backtest", cli_support::QUICKSTART, "-q"])
            .args([
                "--set",
                "exchange.taker_fee=0",
                "--set",
                "exchange.taker_fee_bps=4",
            ])
            .arg("--out")
            .arg(&b),
        0,
    );
    let trades = |d: &PathBuf| std::fs::read_to_string(d.join("trades.csv")).unwrap();
    assert_eq!(trades(&a), trades(&b));
    // `fees` (column 9) is charged.
    let row = trades(&b).lines().nth(1).unwrap().to_owned();
    assert!(row.split(',').nth(8).unwrap().starts_with("0.08"), "{row}");
}

#[test]
fn contradicting_rate_limits_fail_the_run() {
    let err = run_err(trailstop().args([
        "backtest",
        cli_support::QUICKSTART,
        "--set",
        "trailing.rate_limit.emergency_percent=0.05",
        "-q",
    ]));
    assert!(
        err.contains(
            "trailing.rate_limit.emergency_percent: 0.05 % is below min_improvement_percent 0.1 %"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// A tick too coarse for the prices

/// `tick_size = "100000"` on BTC (17k) and `"0.01"` on XRP/ETH (0.0014) sent stops at 0 and
/// every trade ended `end_of_data`.
#[test]
fn a_tick_above_one_percent_of_the_first_price_is_refused() {
    let err = run_err(trailstop().args([
        "backtest",
        cli_support::QUICKSTART,
        "--set",
        "data.tick_size=\"100000\"",
        "-q",
    ]));
    assert!(
        err.contains(
            "BTCBUSD-1m-20221213.csv: data.tick_size 100000 is 580.99 % of the first price \
             17212.12 (at 2022-12-13T00:00:00Z): a tick above 1 % of the price rounds stops to \
             zero or far from the market; use the instrument's tick (the data's prices step by 0.01)"
        ),
        "{err}"
    );
    // 1 % exactly is allowed.
    let case = Case::new(
        "name = \"t\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"1\"\n\
         [entries]\nevery = \"1d\"\n[trailing]\ndistance_percent = \"2\"\n",
        &[("c.csv", &candles(&[(T0, "100,101,99,100")]))],
    );
    case.run();
    let Some(data) = shared() else { return };
    let file = data.join("freqtrade/candles/XRP_ETH-1m.csv");
    let case = Case::new(
        &format!(
            "name = \"xrp\"\n[data]\ncandles = \"{}\"\ntick_size = \"0.01\"\n\
             [entries]\nevery = \"1h\"\n[trailing]\ndistance_percent = \"0.5\"\n",
            file.display()
        ),
        &[],
    );
    let e = case.load().unwrap_err().to_string();
    assert!(
        e.contains("XRP_ETH-1m.csv: data.tick_size 0.01 is ")
            && e.contains("% of the first price 0.0014")
            && e.contains("the data's prices step by 0.0000000"),
        "{e}"
    );
}

/// A tick allowed at the first price, but a short's market falls below it: the stop that
/// follows would round up to one tick; the run stops naming the position, the tick and the price.
#[test]
fn a_stop_that_rounds_away_during_the_run_is_an_error() {
    let case = Case::new(
        "name = \"fall\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.01\"\n\
         [entries]\nevery = \"1d\"\nside = \"short\"\n[trailing]\ndistance_percent = \"1\"\n",
        &[(
            "c.csv",
            &candles(&[
                (T0, "1,1,1,1"),
                (T0 + 60_000, "1,1,0.5,0.5"),
                (T0 + 120_000, "0.5,0.5,0.004,0.004"),
            ]),
        )],
    );
    let err = run_err(trailstop().arg("backtest").arg(case.path()).arg("-q"));
    assert!(
        err.contains(
            "error: position 1 (short, entry 1): the trailing stop 0.00404 (1 % from 0.004) \
             rounds up to 0.01 at tick_size 0.01: the tick is too coarse for the price"
        ),
        "{err}"
    );
    // A data problem, not the engine's (issue 9, "Errors that say what and where").
    assert!(!err.contains("engine:"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Never silence: entries off the market or outside the data, detail data that covers nothing,
// more random entries than candles, a column named twice

fn btc_scenario(entries: &str, extra: &str) -> String {
    format!(
        "name = \"btc\"\n[data]\ncandles = \"{}\"\ntick_size = \"0.01\"\n{extra}\
         [entries]\n{entries}\n[trailing]\ndistance_percent = \"0.5\"\n",
        cli_support::root()
            .join("data/BTCBUSD-1m-20221213.csv")
            .display()
    )
}

/// An entry price of 1 on a 17k market gave +1,717,457 %.
#[test]
fn entry_prices_far_from_the_market_are_refused_and_near_ones_warned() {
    let case = Case::new(
        &btc_scenario("file = \"e.csv\"", ""),
        &[(
            "e.csv",
            "time,side,price\n2022-12-13T01:00:00Z,long,17165\n2022-12-13T01:00:30Z,long,1\n",
        )],
    );
    let e = case.load().unwrap_err().to_string();
    assert!(
        e.contains("e.csv: line 3: entry price 1 at 2022-12-13T01:00:30Z is 99.99 % outside the candle at 2022-12-13T01:00:00Z (")
            && e.contains("more than 10 % away, it cannot be a fill on this market"),
        "{e}"
    );
    // Slightly outside the candle's range: a warning, and the run goes on.
    let case = Case::new(
        &btc_scenario("file = \"e.csv\"", ""),
        &[(
            "e.csv",
            "time,side,price\n2022-12-13T01:00:30Z,long,17500\n",
        )],
    );
    let (loaded, report) = case.run();
    assert_eq!(report.rows.len(), 1);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("e.csv: line 2: entry price 17500 at 2022-12-13T01:00:30Z is ")
            && loaded.warnings[0].contains("% outside the candle at 2022-12-13T01:00:00Z"),
        "{:?}",
        loaded.warnings
    );
    assert_eq!(report.summary.warnings, loaded.warnings);
}

#[test]
fn entries_that_open_no_position_are_warned() {
    let case = Case::new(
        &btc_scenario("file = \"e.csv\"", ""),
        &[(
            "e.csv",
            "time,side\n2023-01-01T00:00:00Z,long\n2023-01-02T00:00:00Z,short\n",
        )],
    );
    let (loaded, report) = case.run();
    assert!(report.rows.is_empty());
    assert_eq!(
        loaded.warnings,
        [
            "none of the 2 entries (2023-01-01T00:00:00Z to 2023-01-02T00:00:00Z) has a price \
          point after it in the data (2022-12-13T00:00:00Z to 2022-12-13T23:59:00Z): no \
          position opens, 0 trades"
        ]
    );
    let (_, stderr) = run_code(
        trailstop()
            .arg("backtest")
            .arg(case.path())
            .arg("-q")
            .arg("--out")
            .arg(case.dir.path().join("out")),
        0,
    );
    assert!(
        stderr.contains("warning: none of the 2 entries"),
        "{stderr}"
    );
}

#[test]
fn more_random_entries_than_candles_are_warned() {
    let case = Case::new(
        "name = \"r\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\n\
         [entries]\nrandom = 5\n[trailing]\ndistance_percent = \"1\"\n",
        &[(
            "c.csv",
            &candles(&[(T0, "100,101,99,100"), (T0 + 60_000, "100,101,99,100")]),
        )],
    );
    let (loaded, report) = case.run();
    assert_eq!(report.rows.len(), 2);
    assert_eq!(
        loaded.warnings,
        ["entries.random = 5 is more than the 2 candles of the data: 2 entries, one at each"]
    );
}

#[test]
fn detail_data_that_covers_no_candle_is_refused() {
    let case = Case::new(
        &btc_scenario("every = \"1h\"", "detail = \"d.csv\"\n"),
        &[(
            "d.csv",
            &candles(&[(T0, "100,101,99,100"), (T0 + 1_000, "100,101,99,100")]),
        )],
    );
    let e = case.load().unwrap_err().to_string();
    assert!(
        e.contains(
            "d.csv: data.detail covers none of the candles: it runs from 2024-01-01T00:00:00Z to \
             2024-01-01T00:00:01Z, the candles ("
        ) && e.contains(
            "from 2022-12-13T00:00:00Z to 2022-12-13T23:59:00Z; no bar could be resolved"
        ),
        "{e}"
    );
}

#[test]
fn a_column_named_twice_fails_the_run() {
    let case = Case::new(
        "name = \"d\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\n\
         [entries]\nevery = \"1d\"\n[trailing]\ndistance_percent = \"1\"\n",
        &[(
            "c.csv",
            "timestamp,open,high,low,close,close\n1704067200000,100,101,99,100,101\n",
        )],
    );
    let err = run_err(trailstop().arg("backtest").arg(case.path()).arg("-q"));
    assert!(
        err.contains(
            "c.csv: line 1, field `close`: the header names column `close` twice (columns 5 and 6)"
        ),
        "{err}"
    );
}
