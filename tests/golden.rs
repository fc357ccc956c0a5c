//! Golden scenarios (`scenarios/golden/<name>/`): tiny hand-made candle files whose expected
//! trades were worked out by hand from DESIGN §2.1, §3 and §4 (each folder's `NOTES.md` holds
//! the derivation). Every folder is run through the library and its `trades.csv` text must
//! equal `expected_trades.csv` exactly. Optional files:
//!
//! - `expected_events.jsonl`: one JSON pattern per line; the patterns must match events of
//!   `events.jsonl` in this order (other events may come between). A pattern matches an event
//!   when every key it names has the same value (decimal strings compare as numbers). A pattern
//!   with `"_absent": true` must match no event at all.
//! - `expected_summary.json`: a subset of `summary.json` (numbers compare within 1e-9).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use trailstop::backtest::{self, output};
use trailstop::scenario::Scenario;

const HEADER: &str = "position_id,side,entry_time,entry_price,exit_time,exit_price,exit_reason,pnl_pct,fees,mfe_pct,mae_pct,stop_updates,updates_held,emergency_updates,unprotected_ms,ambiguous_bars";

/// The scenarios issue 3 asks for; the test fails if one goes missing.
const REQUIRED: &[&str] = &[
    "activation_gap",
    "ratchet_trigger",
    "short_side",
    "breakeven",
    "time_activation",
    "momentum",
    "rate_limit_held",
    "emergency_override",
    "venue_bybit",
    "venue_binance",
    "gap_through",
    "intrabar_pessimistic",
    "intrabar_optimistic",
    "intrabar_ohlc",
    "intrabar_olhc",
    "intrabar_adaptive",
    "initial_stop",
    "end_of_data",
    "fees_slippage",
    "priced_entry",
];

const POLICIES: [&str; 5] = ["pessimistic", "optimistic", "ohlc", "olhc", "adaptive"];

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/golden")
}

/// Every folder under `scenarios/golden` with a `scenario.toml`, by name.
fn scenario_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_root())
        .expect("scenarios/golden exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("scenario.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string()
}

/// What one backtest produced, in the shape of its output files.
struct Outcome {
    trades: String,
    events: Vec<Value>,
    summary: Value,
}

fn run(dir: &Path) -> Result<Outcome, String> {
    let scenario = Scenario::load(&dir.join("scenario.toml"), &[]).map_err(|e| e.to_string())?;
    let loaded = backtest::load(&scenario).map_err(|e| e.to_string())?;
    let report =
        backtest::run_scenario(&scenario, &loaded, |_, _| {}).map_err(|e| e.to_string())?;
    let events = output::events_jsonl(&report)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("events.jsonl line {l}: {e}")))
        .collect::<Result<Vec<Value>, String>>()?;
    let summary = serde_json::to_value(&report.summary).map_err(|e| e.to_string())?;
    Ok(Outcome {
        trades: output::trades_csv(&report),
        events,
        summary,
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines without trailing whitespace or blank lines, for a text comparison that ignores a
/// missing final newline or CRLF in a hand-written file.
fn normalized(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect()
}

/// A readable, per-field diff of two `trades.csv` texts; empty when they are equal.
fn diff_trades(expected: &str, actual: &str) -> String {
    let (e, a) = (normalized(expected), normalized(actual));
    if e == a {
        return String::new();
    }
    let mut out = String::new();
    let columns: Vec<&str> = HEADER.split(',').collect();
    if e.first() != a.first() {
        let _ = writeln!(
            out,
            "  header differs:\n    expected {:?}\n    actual   {:?}",
            e.first(),
            a.first()
        );
    }
    for i in 1..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                let (xs, ys): (Vec<&str>, Vec<&str>) =
                    (x.split(',').collect(), y.split(',').collect());
                let _ = writeln!(out, "  row {i}:");
                for k in 0..xs.len().max(ys.len()) {
                    let (xv, yv) = (xs.get(k).copied(), ys.get(k).copied());
                    if xv != yv {
                        let col = columns.get(k).copied().unwrap_or("(extra column)");
                        let _ = writeln!(
                            out,
                            "    {col:<18} expected {:<28} actual {}",
                            xv.unwrap_or("(none)"),
                            yv.unwrap_or("(none)")
                        );
                    }
                }
            }
            (Some(x), None) => {
                let _ = writeln!(out, "  row {i} missing:    {x}");
            }
            (None, Some(y)) => {
                let _ = writeln!(out, "  row {i} unexpected: {y}");
            }
            (None, None) => {}
        }
    }
    let _ = writeln!(out, "  expected:\n    {}", e.join("\n    "));
    let _ = writeln!(out, "  actual:\n    {}", a.join("\n    "));
    out
}

/// Two JSON values are the same for a pattern: equal, or decimal strings equal as numbers, or
/// numbers equal within 1e-9.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!(
                    (Decimal::from_str(x), Decimal::from_str(y)),
                    (Ok(a), Ok(b)) if a == b
                )
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9,
                _ => false,
            },
        },
        _ => expected == actual,
    }
}

/// Every key of `pattern` (but `_absent`) is in `event` with the same value.
fn matches_pattern(pattern: &Value, event: &Value) -> bool {
    let Some(p) = pattern.as_object() else {
        return false;
    };
    p.iter()
        .filter(|(k, _)| k.as_str() != "_absent")
        .all(|(k, v)| event.get(k).is_some_and(|a| same(v, a)))
}

fn check_events(patterns_text: &str, events: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut next = 0usize;
    for (n, line) in patterns_text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let pattern: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("expected_events.jsonl line {}: {e}", n + 1));
                continue;
            }
        };
        if pattern.get("_absent") == Some(&Value::Bool(true)) {
            if let Some(hit) = events.iter().find(|e| matches_pattern(&pattern, e)) {
                problems.push(format!(
                    "event expected absent: {pattern}\n    found: {hit}"
                ));
            }
            continue;
        }
        match events[next..]
            .iter()
            .position(|e| matches_pattern(&pattern, e))
        {
            Some(k) => next += k + 1,
            None => {
                let earlier = events[..next].iter().any(|e| matches_pattern(&pattern, e));
                problems.push(format!(
                    "event not found{}: {pattern}",
                    if earlier {
                        " in order (it occurs before the previous expected event)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    if !problems.is_empty() {
        let all: Vec<String> = events.iter().map(Value::to_string).collect();
        problems.push(format!("events were:\n    {}", all.join("\n    ")));
    }
    problems
}

/// `expected` is a subset of `actual` (objects recursively, leaves by `same`).
fn subset(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(av) => subset(v, av, &p, problems),
                    None => problems.push(format!("summary.{p}: missing (expected {v})")),
                }
            }
        }
        _ if same(expected, actual) => {}
        _ => problems.push(format!(
            "summary.{path}: expected {expected}, actual {actual}"
        )),
    }
}

/// All the differences between a folder's expectations and the program's output.
fn check(dir: &Path) -> Vec<String> {
    let outcome = match run(dir) {
        Ok(o) => o,
        Err(e) => return vec![format!("the backtest failed: {e}")],
    };
    let mut problems = Vec::new();
    let expected = read(&dir.join("expected_trades.csv"));
    let diff = diff_trades(&expected, &outcome.trades);
    if !diff.is_empty() {
        problems.push(format!(
            "trades.csv differs from expected_trades.csv:\n{diff}"
        ));
    }
    let events_file = dir.join("expected_events.jsonl");
    if events_file.is_file() {
        problems.extend(check_events(&read(&events_file), &outcome.events));
    }
    let summary_file = dir.join("expected_summary.json");
    if summary_file.is_file() {
        let expected: Value = serde_json::from_str(&read(&summary_file))
            .unwrap_or_else(|e| panic!("{}: {e}", summary_file.display()));
        subset(&expected, &outcome.summary, "", &mut problems);
    }
    problems
}

#[test]
fn golden_scenarios_match_their_hand_computed_trades() {
    let dirs = scenario_dirs();
    let names: BTreeSet<String> = dirs.iter().map(|d| name_of(d)).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !names.contains(*r))
        .collect();
    assert!(missing.is_empty(), "golden scenarios missing: {missing:?}");
    let mut report = String::new();
    for dir in &dirs {
        for required in ["candles.csv", "expected_trades.csv", "NOTES.md"] {
            if !dir.join(required).is_file() {
                let _ = writeln!(report, "[{}] {required} is missing", name_of(dir));
            }
        }
        let problems = check(dir);
        if !problems.is_empty() {
            let _ = writeln!(report, "[{}]", name_of(dir));
            for p in problems {
                let _ = writeln!(report, "  {}", p.replace('\n', "\n  "));
            }
        }
    }
    assert!(
        report.is_empty(),
        "golden scenarios disagree with the hand computation:\n{report}"
    );
}

/// The comparison itself can fail: a wrong expectation, a wrong event and a wrong summary
/// value are all reported.
#[test]
fn a_wrong_expectation_is_reported() {
    let dir = golden_root().join("fees_slippage");
    let outcome = run(&dir).expect("fees_slippage runs");
    let expected = read(&dir.join("expected_trades.csv"));
    // Half-up rounding instead of half-even.
    let wrong = expected.replace(",0.10143456,", ",0.10143457,");
    assert_ne!(wrong, expected);
    let diff = diff_trades(&wrong, &outcome.trades);
    assert!(diff.contains("fees"), "{diff}");
    assert!(diff.contains("0.10143457"), "{diff}");

    let events = run(&golden_root().join("emergency_override"))
        .expect("emergency_override runs")
        .events;
    let problems = check_events(
        r#"{"type":"UpdateSent","reason":"normal","stop":"100.9"}"#,
        &events,
    );
    assert!(!problems.is_empty());
    let problems = check_events(r#"{"type":"UpdateSent","_absent":true}"#, &events);
    assert!(!problems.is_empty());

    let mut problems = Vec::new();
    subset(
        &serde_json::json!({"unprotected_ms": 1}),
        &outcome.summary,
        "",
        &mut problems,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
}

fn scenario_table(dir: &Path) -> toml::Table {
    toml::from_str(&read(&dir.join("scenario.toml"))).expect("scenario.toml is TOML")
}

/// The venue pair replays the same data with the same settings but the venue, and the
/// outcome differs: bybit fills the gap at the open, binance's create is rejected.
#[test]
fn venue_pair_shares_data_and_differs_in_outcome() {
    let (by, bi) = (
        golden_root().join("venue_bybit"),
        golden_root().join("venue_binance"),
    );
    assert_eq!(
        read(&by.join("candles.csv")),
        read(&bi.join("candles.csv")),
        "the venue pair must replay identical candles"
    );
    let (mut tb, mut ti) = (scenario_table(&by), scenario_table(&bi));
    for t in [&mut tb, &mut ti] {
        t.remove("name");
        t.get_mut("exchange")
            .and_then(|x| x.as_table_mut())
            .expect("[exchange]")
            .remove("venue");
    }
    assert_eq!(tb, ti, "the venue pair differs only in name and venue");
    let (ob, oi) = (run(&by).unwrap(), run(&bi).unwrap());
    assert_ne!(ob.trades, oi.trades);
    assert_eq!(ob.summary["unprotected_ms"], 0);
    assert_eq!(oi.summary["unprotected_ms"], 600);
    assert!(
        oi.events
            .iter()
            .any(|e| e["type"] == "StopRejected" && e["ts"] == 1_704_067_260_299_i64)
    );
}

/// The five intrabar folders replay the same candles and entries; each policy yields its own
/// set of exits, and the ambiguity band is the same for all.
#[test]
fn intrabar_policies_share_data_and_give_different_exits() {
    let dirs: Vec<PathBuf> = POLICIES
        .iter()
        .map(|p| golden_root().join(format!("intrabar_{p}")))
        .collect();
    let first = &dirs[0];
    let mut first_table = scenario_table(first);
    first_table.remove("name");
    first_table.remove("intrabar");
    for (dir, policy) in dirs.iter().zip(POLICIES) {
        for f in ["candles.csv", "entries.csv"] {
            assert_eq!(read(&first.join(f)), read(&dir.join(f)), "{policy}: {f}");
        }
        let mut t = scenario_table(dir);
        assert_eq!(
            t.get("intrabar")
                .and_then(|i| i.get("policy"))
                .and_then(|p| p.as_str()),
            Some(policy)
        );
        t.remove("name");
        t.remove("intrabar");
        assert_eq!(t, first_table, "{policy}: only the policy differs");
    }
    let outcomes: Vec<Outcome> = dirs.iter().map(|d| run(d).unwrap()).collect();
    let distinct: BTreeSet<&str> = outcomes.iter().map(|o| o.trades.as_str()).collect();
    assert_eq!(
        distinct.len(),
        POLICIES.len(),
        "each policy exits differently"
    );
    for (o, policy) in outcomes.iter().zip(POLICIES) {
        assert_eq!(o.summary["band"], outcomes[0].summary["band"], "{policy}");
        assert_eq!(o.summary["ambiguous_bars"], 4, "{policy}");
    }
}
