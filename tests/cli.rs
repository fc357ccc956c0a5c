//! The `trailstop` binary end to end: `backtest` outputs, determinism and overrides, scenario
//! and data errors (named, with nothing left behind), `trace` on real data and on hand-made
//! ticks whose stops are worked out below, the planned commands, and `--help`.
//!
//! Fixtures: `tests/fixtures/cli/` (see its README.md).

mod cli_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use cli_support::{QUICKSTART, root, run_err, trailstop};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

const TRADES_HEADER: &str = "position_id,side,entry_time,entry_price,exit_time,exit_price,exit_reason,pnl_pct,fees,mfe_pct,mae_pct,stop_updates,updates_held,emergency_updates,unprotected_ms,ambiguous_bars";
const BTC_1M: &str = "data/BTCBUSD-1m-20221213.csv";

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/cli").join(name)
}

struct Output {
    stdout: String,
    stderr: String,
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.assert().success().get_output().clone();
    Output {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn backtest(scenario: &str, out: &Path, sets: &[&str]) -> Command {
    let mut cmd = trailstop();
    cmd.arg("backtest").arg(scenario).arg("--out").arg(out);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd
}

/// The three outputs of a backtest, read and checked for shape.
struct Outputs {
    rows: Vec<Vec<String>>,
    summary: Value,
    events: Vec<Value>,
    bytes: [Vec<u8>; 3],
}

fn read_outputs(dir: &Path) -> Outputs {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
    };
    let bytes = [
        read("trades.csv"),
        read("summary.json"),
        read("events.jsonl"),
    ];
    let csv = std::str::from_utf8(&bytes[0]).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(TRADES_HEADER), "trades.csv header");
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            let f: Vec<String> = l.split(',').map(str::to_string).collect();
            assert_eq!(f.len(), 16, "16 fields: {l}");
            f
        })
        .collect();
    let summary: Value = serde_json::from_slice(&bytes[1]).expect("summary.json is JSON");
    let events: Vec<Value> = std::str::from_utf8(&bytes[2])
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("events.jsonl line {}: {e}: {l}", i + 1))
        })
        .collect();
    Outputs {
        rows,
        summary,
        events,
        bytes,
    }
}

/// Asserts that a failed run left no output behind in `out`.
fn assert_no_output(out: &Path) {
    assert!(
        !out.join("trades.csv").exists(),
        "{} holds a trades.csv after a failed run",
        out.display()
    );
    if out.exists() {
        let left: Vec<_> = std::fs::read_dir(out).unwrap().flatten().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "stderr should name {n:?}:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// backtest

#[test]
fn quickstart_backtest_writes_consistent_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("quickstart");
    let o = run_ok(&mut backtest(QUICKSTART, &out, &[]));
    let Outputs {
        rows,
        summary,
        events,
        ..
    } = read_outputs(&out);

    assert!(!rows.is_empty(), "the quickstart makes trades");
    let n = rows.len();
    assert_eq!(summary["trades"].as_u64(), Some(n as u64), "summary.trades");
    assert_eq!(summary["scenario"], "quickstart");
    assert_eq!(summary["policy"], "pessimistic");
    assert_eq!(summary["venue"], "binance");
    let reasons: u64 = summary["exit_reasons"]
        .as_object()
        .expect("exit_reasons is an object")
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(reasons, n as u64, "exit reasons add up to the trades");
    for key in ["optimistic", "pessimistic"] {
        assert_eq!(summary["band"][key]["trades"].as_u64(), Some(n as u64));
    }

    // The printed summary names the scenario, the trade count and where it wrote.
    assert!(
        o.stdout.contains(&format!("quickstart: {n} trades")),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("trades.csv"), "{}", o.stdout);

    // Rows: numbered 1..n, known sides and reasons.
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (k + 1).to_string());
        assert!(["long", "short"].contains(&r[1].as_str()), "{r:?}");
        assert!(
            [
                "trailing_stop",
                "initial_stop",
                "breakeven_stop",
                "exit_now",
                "end_of_data"
            ]
            .contains(&r[6].as_str()),
            "{r:?}"
        );
        assert!(r[2] <= r[4], "entry before exit: {r:?}");
    }

    // Events: every line has a position id of a trade and a type; each position is created
    // and closed.
    assert!(!events.is_empty());
    let mut created = BTreeSet::new();
    let mut closed = BTreeSet::new();
    for e in &events {
        let id = e["position_id"].as_u64().expect("position_id");
        assert!((1..=n as u64).contains(&id), "{e}");
        match e["type"].as_str().expect("type") {
            "Created" => created.insert(id),
            "Triggered" => closed.insert(id),
            _ => false,
        };
    }
    let all: BTreeSet<u64> = (1..=n as u64).collect();
    assert_eq!(created, all, "every position has a Created event");
    assert_eq!(closed, all, "every position has a Triggered event");
}

#[test]
fn backtest_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_ok(backtest(QUICKSTART, &a, &[]).arg("--quiet"));
    run_ok(backtest(QUICKSTART, &b, &[]).arg("--quiet"));
    let (a, b) = (read_outputs(&a), read_outputs(&b));
    for (i, name) in ["trades.csv", "summary.json", "events.jsonl"]
        .iter()
        .enumerate()
    {
        assert!(a.bytes[i] == b.bytes[i], "{name} differs between two runs");
    }
}

#[test]
fn set_overrides_change_the_results() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let wide = tmp.path().join("wide");
    let opt = tmp.path().join("optimistic");
    run_ok(backtest(QUICKSTART, &base, &[]).arg("-q"));
    run_ok(backtest(QUICKSTART, &wide, &["trailing.distance_percent=1.0"]).arg("-q"));
    run_ok(backtest(QUICKSTART, &opt, &["intrabar.policy=optimistic"]).arg("-q"));
    let (base, wide, opt) = (read_outputs(&base), read_outputs(&wide), read_outputs(&opt));

    assert!(
        base.bytes[0] != wide.bytes[0],
        "distance 1.0 changes trades.csv"
    );
    assert_ne!(
        base.summary["total_return_pct"], wide.summary["total_return_pct"],
        "distance 1.0 changes the total return"
    );

    assert_eq!(base.summary["policy"], "pessimistic");
    assert_eq!(opt.summary["policy"], "optimistic");
    // The run's own totals are the optimistic side of the band now.
    assert_eq!(
        opt.summary["total_return_pct"],
        opt.summary["band"]["optimistic"]["total_return_pct"]
    );
    assert_eq!(
        base.summary["band"]["optimistic"], opt.summary["band"]["optimistic"],
        "the band does not depend on the run's own policy"
    );
}

#[test]
fn set_unknown_key_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = run_err(&mut backtest(QUICKSTART, &out, &["trailing.distanse=1"]));
    assert_mentions(&err, &["quickstart.toml", "distanse"]);
    assert_no_output(&out);
}

#[test]
fn set_invalid_value_fails_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = run_err(&mut backtest(
        QUICKSTART,
        &out,
        &["trailing.distance_percent=0"],
    ));
    assert_mentions(&err, &["quickstart.toml", "trailing.distance_percent"]);
    assert_no_output(&out);

    let err = run_err(&mut backtest(QUICKSTART, &out, &["no-equals-sign"]));
    assert_mentions(&err, &["--set no-equals-sign", "key=value"]);
}

/// Each bad scenario fails, naming the scenario file and the key, and writes nothing.
#[test]
fn bad_scenarios_fail_naming_file_and_key() {
    let cases: [(&str, &[&str]); 4] = [
        ("unknown_key.toml", &["activaton_percent"]),
        ("bad_venue.toml", &["venue", "kraken"]),
        ("candles_and_trades.toml", &["data.candles", "data.trades"]),
        ("no_entries.toml", &["entries"]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (file, keys) in cases {
        let out = tmp.path().join(file);
        let scenario = fixture(file);
        let err = run_err(&mut backtest(scenario.to_str().unwrap(), &out, &[]));
        assert_mentions(&err, &[file]);
        assert_mentions(&err, keys);
        assert_no_output(&out);
    }
}

/// A missing data file fails and names it; nothing is written.
#[test]
fn missing_data_file_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = run_err(&mut backtest(
        fixture("missing_data.toml").to_str().unwrap(),
        &out,
        &[],
    ));
    assert_mentions(&err, &["no_such_candles.csv"]);
    assert_no_output(&out);
}

/// The error for a missing data file should also say which scenario and key pointed at it, and
/// where it was looked for (beside the scenario, then the working directory).
#[test]
fn missing_data_file_error_names_scenario_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = run_err(&mut backtest(
        fixture("missing_data.toml").to_str().unwrap(),
        &out,
        &[],
    ));
    assert_mentions(
        &err,
        &["missing_data.toml", "data.candles", "tests/fixtures/cli"],
    );
}

/// Real candles with one defect each, through a scenario: the error names the data file, the
/// line and the field, and nothing is written (the output folder exists beforehand for one
/// of them, to see that it is left empty).
#[test]
fn bad_data_fails_naming_file_line_and_field() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "high_below_close",
            &["high_below_close.csv", "line 6", "`high`"],
        ),
        ("unsorted", &["unsorted.csv", "line 8", "`timestamp`"]),
        (
            "non_numeric",
            &["non_numeric.csv", "line 4", "`low`", "12k"],
        ),
        ("truncated", &["truncated.csv", "line 9", "truncated"]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (k, (name, needles)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(name);
        if k == 0 {
            std::fs::create_dir(&out).unwrap();
        }
        let scenario = fixture(&format!("data_{name}.toml"));
        let err = run_err(&mut backtest(scenario.to_str().unwrap(), &out, &[]));
        assert_mentions(&err, needles);
        assert_no_output(&out);
    }
}

/// When writing the outputs fails half-way (here `summary.json` cannot be written because a
/// folder has that name), no `trades.csv` should be left without its summary and events.
#[test]
fn failed_write_leaves_no_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("summary.json")).unwrap();
    let err = run_err(backtest(QUICKSTART, &out, &[]).arg("-q"));
    assert_mentions(&err, &["summary.json"]);
    assert!(
        !out.join("trades.csv").exists(),
        "trades.csv written without summary.json"
    );
}

// ---------------------------------------------------------------------------------------------
// trace

fn trace(input: &str, side: &str, tick: &str, sets: &[&str]) -> Command {
    let mut cmd = trailstop();
    cmd.arg("trace")
        .arg(input)
        .args(["--side", side, "--tick-size", tick]);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd
}

/// The event kinds of a trace table, in order (the second column of each row).
fn table_kinds(stdout: &str) -> Vec<String> {
    let mut lines = stdout.lines();
    let header = lines.next().expect("a header");
    assert!(
        header.starts_with("time") && header.contains("event") && header.contains("price"),
        "{header}"
    );
    lines
        .filter(|l| !l.starts_with("closed:"))
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .expect("an event column")
                .to_string()
        })
        .collect()
}

fn jsonl(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is a decimal string"))
        .parse()
        .unwrap()
}

#[test]
fn trace_real_candles_prints_the_events() {
    let sets = ["distance_percent=0.5", "activation_percent=0.3"];
    let o = run_ok(&mut trace(BTC_1M, "long", "0.01", &sets));
    let kinds = table_kinds(&o.stdout);
    for k in [
        "Created",
        "Activated",
        "StopRaised",
        "UpdateSent",
        "Triggered",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} row in:\n{}", o.stdout);
    }
    assert_eq!(kinds[0], "Created");
    assert!(
        o.stdout.lines().last().unwrap().starts_with("closed: "),
        "{}",
        o.stdout
    );

    // --jsonl: the same events, one JSON object a line.
    let o = run_ok(trace(BTC_1M, "long", "0.01", &sets).arg("--jsonl"));
    let events = jsonl(&o.stdout);
    let types: Vec<String> = events
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_string())
        .collect();
    assert_eq!(types, kinds, "--jsonl lists the table's events");
    for e in &events {
        assert!(e["ts"].as_i64().is_some(), "{e}");
    }
}

/// Long, entry 100 (the first tick), distance 1 %, tick 0.1, activation 0: active at entry
/// with stop 100 × 0.99 = 99 (sent at once). 102 → 102 × 0.99 = 100.98, rounded down to
/// 100.9 (sent: a minute has passed, +1.9 %). 101.5 → 100.485 → 100.4, not higher. 100.9
/// touches the stop: a trade tick fills at its own price, 100.9, `trailing_stop`.
#[test]
fn trace_hand_made_long_ticks() {
    let input = fixture("trace_long.csv");
    let o = run_ok(
        trace(
            input.to_str().unwrap(),
            "long",
            "0.1",
            &["distance_percent=1"],
        )
        .arg("--jsonl"),
    );
    let ev = jsonl(&o.stdout);
    let sent: Vec<Decimal> = ev
        .iter()
        .filter(|e| e["type"] == "UpdateSent")
        .map(|e| dec_of(&e["stop"]))
        .collect();
    assert_eq!(sent, [dec!(99), dec!(100.9)]);
    let raised: Vec<(i64, Decimal)> = ev
        .iter()
        .filter(|e| e["type"] == "StopRaised")
        .map(|e| (e["ts"].as_i64().unwrap(), dec_of(&e["to"])))
        .collect();
    assert_eq!(
        raised,
        [
            (1_700_000_000_000, dec!(99)),
            (1_700_000_060_000, dec!(100.9))
        ]
    );
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "Triggered");
    assert_eq!(last["ts"], 1_700_000_180_000_i64);
    assert_eq!(dec_of(&last["fill_price"]), dec!(100.9));
    assert_eq!(last["reason"], "trailing_stop");

    let o = run_ok(&mut trace(
        input.to_str().unwrap(),
        "long",
        "0.1",
        &["distance_percent=1"],
    ));
    assert!(
        o.stdout
            .contains("closed: trailing_stop at 100.9 (2023-11-14T22:16:20.000Z)"),
        "{}",
        o.stdout
    );
}

/// Short, entry 100, distance 1 %, tick 0.1: stop 101 at entry. 98 → 98 × 1.01 = 98.98,
/// rounded up to 99. 98.5 → 99.485 → 99.5, not lower. 99.2 jumps over the stop: the tick
/// fills at its own price 99.2, not at 99.
#[test]
fn trace_hand_made_short_ticks_fill_at_the_tick() {
    let input = fixture("trace_short.csv");
    let o = run_ok(
        trace(
            input.to_str().unwrap(),
            "short",
            "0.1",
            &["distance_percent=1"],
        )
        .arg("--jsonl"),
    );
    let ev = jsonl(&o.stdout);
    let sent: Vec<Decimal> = ev
        .iter()
        .filter(|e| e["type"] == "UpdateSent")
        .map(|e| dec_of(&e["stop"]))
        .collect();
    assert_eq!(sent, [dec!(101), dec!(99)]);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "Triggered");
    assert_eq!(last["ts"], 1_700_000_180_000_i64);
    assert_eq!(dec_of(&last["fill_price"]), dec!(99.2));
    assert_eq!(last["reason"], "trailing_stop");
}

/// Long, entry 100, activation 1 % (at 101), distance 1 %, ticks 10 s apart, default rate
/// limit (60 s / 0.1 % / emergency 1 %). 100.5: inactive. 102: active, stop 100.98 → 100.9,
/// sent at once (initial). 103: 101.97 → 101.9, +0.99 % after 10 s: held (interval; below the
/// 1 % emergency). 102.5 at 70 s after the send: the held 101.9 goes out (normal). 101.9
/// touches it: filled at 101.9.
#[test]
fn trace_hand_made_rate_limit() {
    let input = fixture("trace_rate_limit.csv");
    let sets = ["distance_percent=1", "activation_percent=1"];
    let o = run_ok(trace(input.to_str().unwrap(), "long", "0.1", &sets).arg("--jsonl"));
    let ev = jsonl(&o.stdout);
    let summary: Vec<String> = ev
        .iter()
        .filter(|e| e["type"] != "StopConfirmed")
        .map(|e| {
            let t = (e["ts"].as_i64().unwrap() - 1_700_000_000_000) / 1000;
            match e["type"].as_str().unwrap() {
                "Activated" => format!("{t}s Activated {}", dec_of(&e["price"])),
                "StopRaised" => format!("{t}s StopRaised {}", dec_of(&e["to"])),
                "UpdateSent" => format!("{t}s UpdateSent {} {}", dec_of(&e["stop"]), e["reason"]),
                "UpdateHeld" => format!("{t}s UpdateHeld {}", e["reason"]),
                "Triggered" => format!(
                    "{t}s Triggered {} {}",
                    dec_of(&e["fill_price"]),
                    e["reason"]
                ),
                k => format!("{t}s {k}"),
            }
        })
        .collect();
    assert_eq!(
        summary,
        [
            "0s Created",
            "20s Activated 102",
            "20s StopRaised 100.9",
            "20s UpdateSent 100.9 \"initial\"",
            "30s StopRaised 101.9",
            "30s UpdateHeld \"interval\"",
            "90s UpdateSent 101.9 \"normal\"",
            "100s Triggered 101.9 \"trailing_stop\"",
        ]
    );
}

#[test]
fn trace_without_distance_fails_clearly() {
    let err = run_err(&mut trace(
        BTC_1M,
        "long",
        "0.01",
        &["activation_percent=0.3"],
    ));
    assert_mentions(&err, &["distance_percent"]);
    let err = run_err(&mut trace(BTC_1M, "long", "0.01", &["distance_percent=0"]));
    assert_mentions(&err, &["distance_percent"]);
}

// ---------------------------------------------------------------------------------------------
// planned commands and help

/// Every subcommand run without its required arguments fails with a usage message, not a
/// panic and not a silent success.
#[test]
fn subcommands_without_arguments_explain_usage() {
    for cmd in [
        "trace", "backtest", "sweep", "paper", "state", "report", "merge",
    ] {
        let out = trailstop().arg(cmd).assert().failure().get_output().clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("Usage") || stderr.contains("usage") || stderr.contains("required"),
            "trailstop {cmd}: {stderr}"
        );
    }
}

#[test]
fn help_lists_commands_and_options() {
    let o = run_ok(trailstop().arg("--help"));
    for word in [
        "trace", "backtest", "sweep", "paper", "state", "report", "merge",
    ] {
        assert!(
            o.stdout.contains(word),
            "--help lacks {word}:\n{}",
            o.stdout
        );
    }
    let o = run_ok(trailstop().args(["backtest", "--help"]));
    for word in ["SCENARIO", "--out", "--set", "--quiet"] {
        assert!(
            o.stdout.contains(word),
            "backtest --help lacks {word}:\n{}",
            o.stdout
        );
    }
    let o = run_ok(trailstop().args(["trace", "--help"]));
    for word in [
        "--side",
        "--tick-size",
        "--set",
        "--entry",
        "--jsonl",
        "--policy",
    ] {
        assert!(
            o.stdout.contains(word),
            "trace --help lacks {word}:\n{}",
            o.stdout
        );
    }
    assert!(o.stderr.is_empty());
}

/// A closed stdout ends the command quietly (no panic, no error text), as it does any filter.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_trailstop");
    let out = std::process::Command::new("sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-c")
        .arg(format!(
            // `true` exits at once: every line the backtest prints meets a closed pipe.
            "'{bin}' backtest scenarios/quickstart.toml --out '{}' | true",
            dir.path().display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}
