//! Golden scenarios (`scenarios/golden/<name>/`): tiny hand-made candle files whose expected
//! trades were worked out by hand from DESIGN §2.1, §3 and §4 (each folder's `NOTES.md` holds
//! the derivation). They are `trailstop check` cases (`scenarios/golden/README.md`): every folder
//! runs through the command, with its `check.toml` (`tolerance = 0`, hand-written event
//! patterns), and must pass. The comparison itself is `trailstop::check`, tested in
//! `tests/check.rs` and here on planted wrong expectations.

mod cli_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cli_support::{copy_dir, root, run_code, trailstop};
use serde_json::Value;
use trailstop::check::case::{Case, Outputs};

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
    root().join("scenarios/golden")
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

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The outputs of a golden folder's run, as `trailstop check` produces them.
fn run(dir: &Path) -> Outputs {
    Case::at(dir)
        .expect("a case folder")
        .and_then(|c| c.produce())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn events(o: &Outputs) -> Vec<Value> {
    o.events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn golden_scenarios_pass_trailstop_check() {
    let dirs = scenario_dirs();
    let names: BTreeSet<String> = dirs.iter().map(|d| name_of(d)).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !names.contains(*r))
        .collect();
    assert!(missing.is_empty(), "golden scenarios missing: {missing:?}");
    for dir in &dirs {
        for required in [
            "candles.csv",
            "expected/trades.csv",
            "NOTES.md",
            "check.toml",
        ] {
            assert!(
                dir.join(required).is_file(),
                "[{}] {required} is missing",
                name_of(dir)
            );
        }
        let settings = read(&dir.join("check.toml"));
        assert!(
            settings.contains("bless = false") && settings.contains("tolerance = 0"),
            "[{}] check.toml: hand-written, exact",
            name_of(dir)
        );
    }
    let (stdout, _) = run_code(trailstop().args(["check", "scenarios/golden"]), 0);
    for dir in &dirs {
        let line = format!("ok      scenarios/golden/{}\n", name_of(dir));
        assert!(stdout.contains(&line), "{line:?} not in:\n{stdout}");
    }
    assert!(
        stdout.ends_with(&format!(
            "\n{} cases: {} passed, 0 failed, 0 could not run\n",
            dirs.len(),
            dirs.len()
        )),
        "{stdout}"
    );
}

/// A copy of a golden folder in a temporary folder, with `edit` applied to one of its files.
fn planted(name: &str, file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&golden_root().join(name), &dir);
    let path = dir.join(file);
    let text = read(&path);
    let wrong = edit(&text);
    assert_ne!(wrong, text, "the edit plants something");
    std::fs::write(&path, wrong).unwrap();
    tmp
}

/// The comparison can fail: a wrong trade field (by one in the 8th decimal: half-up rounding
/// instead of half-even), a wrong event pattern and a wrong summary value are each reported
/// with the table a person acts on, and the run exits 1.
#[test]
fn a_planted_wrong_expectation_fails_with_the_table() {
    let tmp = planted("fees_slippage", "expected/trades.csv", |t| {
        t.replace(",0.10143456,", ",0.10143457,")
    });
    let (stdout, _) = run_code(trailstop().arg("check").arg(tmp.path()), 1);
    assert!(
        stdout.contains(
            "trades.csv: 1 difference in 1 of 1 position (expected 1 trade, got 1 trade)\n\
             \x20       position  field  expected    got\n\
             \x20       1         fees   0.10143457  0.10143456\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL    "), "{stdout}");

    // A pattern whose stop is wrong: shown against the nearest UpdateSent, with neighbours.
    let tmp = planted("emergency_override", "expected/events.jsonl", |t| {
        t.replace(r#""stop":"100.9""#, r#""stop":"100.8""#)
    });
    let (stdout, _) = run_code(trailstop().arg("check").arg(tmp.path()), 1);
    assert!(
        stdout.contains(
            "events.jsonl: 1 of 4 patterns fail; the pattern on line 2 matches no event after \
             event 4 (line 1's); the nearest of its type is event "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("pattern  field  expected  got\n")
            && stdout.contains("line 2   stop   100.8     100.9\n"),
        "{stdout}"
    );
    assert!(stdout.contains("        got:\n"), "{stdout}");
    assert!(
        stdout.contains(r#""type":"UpdateSent","ts":1704067260000,"price":"102","stop":"100.9""#),
        "the differing event is among the neighbours:\n{stdout}"
    );

    // An event that must be absent but occurs.
    let tmp = planted("emergency_override", "expected/events.jsonl", |t| {
        t.replace(
            r#"{"type":"UpdateHeld","_absent":true}"#,
            r#"{"type":"UpdateSent","reason":"emergency","_absent":true}"#,
        )
    });
    let (stdout, _) = run_code(trailstop().arg("check").arg(tmp.path()), 1);
    assert!(
        stdout.contains("line 4   _absent  no such event  event "),
        "{stdout}"
    );

    // A summary value.
    let tmp = planted("venue_binance", "expected/summary.json", |t| {
        t.replace(r#""unprotected_ms": 600"#, r#""unprotected_ms": 601"#)
    });
    let (stdout, _) = run_code(trailstop().arg("check").arg(tmp.path()), 1);
    assert!(
        stdout.contains(
            "summary.json: 1 field differs\n\
             \x20       field           expected  got\n\
             \x20       unprotected_ms  601       600\n"
        ),
        "{stdout}"
    );
}

/// `--bless` leaves golden folders alone (`bless = false`): the hand values stay.
#[test]
fn bless_leaves_hand_written_expectations_alone() {
    let tmp = planted("fees_slippage", "expected/trades.csv", |t| {
        t.replace(",0.10143456,", ",0.10143457,")
    });
    let file = tmp.path().join("fees_slippage/expected/trades.csv");
    let before = read(&file);
    let (stdout, _) = run_code(trailstop().arg("check").arg(tmp.path()).arg("--bless"), 1);
    assert!(
        stdout.contains("note: check.toml has bless = false"),
        "{stdout}"
    );
    assert_eq!(read(&file), before);
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
    let (ob, oi) = (run(&by), run(&bi));
    assert_ne!(ob.trades, oi.trades);
    assert_eq!(ob.summary["unprotected_ms"], 0);
    assert_eq!(oi.summary["unprotected_ms"], 600);
    assert!(
        events(&oi)
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
    let outcomes: Vec<Outputs> = dirs.iter().map(|d| run(d)).collect();
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
