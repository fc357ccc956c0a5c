//! A time range (issue 9): `[data] start` (included) / `end` (excluded), or `--from` / `--to`,
//! on backtest, sweep and paper. A range replays exactly what a data file cut to it replays;
//! entries outside it are not replayed; errors name the key.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::{QUICKSTART, root, run_code, run_err, trailstop};
use serde_json::Value;

const FILES: [&str; 3] = ["trades.csv", "summary.json", "events.jsonl"];

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
}

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&read(dir, "summary.json")).unwrap()
}

/// The quickstart scenario with `extra` lines added to `[data]` and its data path made
/// absolute, written into `dir`.
fn quickstart_with(dir: &Path, name: &str, data: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join(QUICKSTART)).unwrap();
    let text = text.replace(
        "candles = \"../data/BTCBUSD-1m-20221213.csv\"",
        &format!("candles = \"{}\"\n{extra}", data.display()),
    );
    assert!(text.contains(extra));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn quickstart_data() -> PathBuf {
    root().join("data/BTCBUSD-1m-20221213.csv")
}

/// 06:00 and 18:00 on the quickstart's day, epoch ms.
const SIX: i64 = 1_670_911_200_000;
const EIGHTEEN: i64 = 1_670_954_400_000;

#[test]
fn a_range_replays_what_the_data_cut_to_it_replays() {
    let tmp = tempfile::tempdir().unwrap();
    // The candles of [06:00, 18:00) in a file of their own.
    let text = std::fs::read_to_string(quickstart_data()).unwrap();
    let mut lines = text.lines();
    let mut cut = format!("{}\n", lines.next().unwrap());
    for l in lines {
        let ts: i64 = l.split(',').next().unwrap().parse().unwrap();
        if (SIX..EIGHTEEN).contains(&ts) {
            cut.push_str(l);
            cut.push('\n');
        }
    }
    let cut_path = tmp.path().join("cut.csv");
    std::fs::write(&cut_path, cut).unwrap();
    let cut_scenario = quickstart_with(tmp.path(), "cut.toml", &cut_path, "");
    let ranged = quickstart_with(
        tmp.path(),
        "ranged.toml",
        &quickstart_data(),
        "start = \"2022-12-13T06:00:00Z\"\nend = 2022-12-13T18:00:00Z",
    );
    let run = |scenario: &Path, out: &str, args: &[&str]| {
        let dir = tmp.path().join(out);
        run_code(
            trailstop()
                .arg("backtest")
                .arg(scenario)
                .arg("-q")
                .arg("--out")
                .arg(&dir)
                .args(args),
            0,
        );
        dir
    };
    let a = run(&cut_scenario, "cut", &[]);
    let b = run(&ranged, "ranged", &[]);
    // The same with --from / --to on the whole data (a date-time with an offset, a bare one).
    let c = run(
        &quickstart_with(tmp.path(), "whole.toml", &quickstart_data(), ""),
        "flags",
        &[
            "--from",
            "2022-12-13T07:00:00+01:00",
            "--to",
            "2022-12-13 18:00",
        ],
    );
    for f in ["trades.csv", "events.jsonl"] {
        assert_eq!(
            read(&a, f),
            read(&b, f),
            "{f}: [data] start/end = the cut data"
        );
        assert_eq!(
            read(&b, f),
            read(&c, f),
            "{f}: --from/--to = [data] start/end"
        );
    }
    let s = summary(&b);
    assert_eq!(s["data_rows"], 720);
    assert_eq!(s["trades"], summary(&a)["trades"]);
    assert_eq!(s["trades"], 6);
    assert_eq!(read(&b, "summary.json"), read(&c, "summary.json"));
    // A date alone is its midnight; the end is excluded.
    let d = run(
        &ranged,
        "day",
        &["--from", "2022-12-13", "--to", "2022-12-14"],
    );
    assert_eq!(summary(&d)["data_rows"], 1440);
}

#[test]
fn sweep_and_paper_take_the_range_too() {
    let tmp = tempfile::tempdir().unwrap();
    let range = [
        "--from",
        "2022-12-13T06:00:00Z",
        "--to",
        "2022-12-13T18:00:00Z",
    ];
    let bt = tmp.path().join("bt");
    run_code(
        trailstop()
            .args(["backtest", QUICKSTART, "-q", "--out"])
            .arg(&bt)
            .args(range),
        0,
    );
    let paper = tmp.path().join("paper");
    run_code(
        trailstop()
            .args(["paper", QUICKSTART, "-q", "--db"])
            .arg(tmp.path().join("p.db"))
            .arg("--out")
            .arg(&paper)
            .args(range),
        0,
    );
    for f in FILES {
        assert_eq!(read(&bt, f), read(&paper, f), "paper = backtest: {f}");
    }
    let sw = tmp.path().join("sweep");
    run_code(
        trailstop()
            .args(["sweep", QUICKSTART, "-q", "--no-report", "--out"])
            .arg(&sw)
            .args(["--grid", "distance_percent=0.25"])
            .args(range),
        0,
    );
    let csv = String::from_utf8(read(&sw, "sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cell = |k: &str| row[header.iter().position(|h| *h == k).unwrap()];
    let s = summary(&bt);
    assert_eq!(cell("trades"), "6");
    let total: f64 = cell("total_return_pct").parse().unwrap();
    assert_eq!(Some(total), s["total_return_pct"].as_f64());
}

#[test]
fn entries_outside_the_range_are_not_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("e.csv"),
        "time,side\n2022-12-13T01:00:00Z,long\n2022-12-13T07:00:00Z,short\n2022-12-13T20:00:00Z,long\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(root().join(QUICKSTART))
        .unwrap()
        .replace(
            "candles = \"../data/BTCBUSD-1m-20221213.csv\"",
            &format!("candles = \"{}\"", quickstart_data().display()),
        )
        .replace("every = \"2h\"", "file = \"e.csv\"");
    let scenario = tmp.path().join("e.toml");
    std::fs::write(&scenario, text).unwrap();
    let out = tmp.path().join("out");
    run_code(
        trailstop()
            .arg("backtest")
            .arg(&scenario)
            .args([
                "-q",
                "--from",
                "2022-12-13T06:00:00Z",
                "--to",
                "2022-12-13T18:00:00Z",
            ])
            .arg("--out")
            .arg(&out),
        0,
    );
    let trades = String::from_utf8(read(&out, "trades.csv")).unwrap();
    let rows: Vec<&str> = trades.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{trades}");
    assert!(
        rows[0].starts_with("1,short,2022-12-13T07:00:00.000Z,"),
        "{trades}"
    );
    // None inside: no trades, and the run says why.
    let (stdout, _) = run_code(
        trailstop()
            .arg("backtest")
            .arg(&scenario)
            .args([
                "--from",
                "2022-12-13T08:00:00Z",
                "--to",
                "2022-12-13T12:00:00Z",
            ])
            .arg("--out")
            .arg(&out),
        0,
    );
    assert!(
        stdout.contains(
            "no trades on BTCBUSD",
        ) && stdout.contains("none of the 3 entries of ")
            && stdout.contains(
                "lies inside the time range (data.start / data.end: 2022-12-13T08:00:00Z to 2022-12-13T11:59:00Z)"
            ),
        "{stdout}"
    );
}

#[test]
fn bad_ranges_are_errors_that_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = |args: &[&str]| {
        run_err(
            trailstop()
                .args(["backtest", QUICKSTART, "-q", "--out"])
                .arg(&out)
                .args(args),
        )
    };
    let e = err(&["--from", "2022-13-01"]);
    assert!(
        e.starts_with("error: --from (data.start): `2022-13-01` is not an ISO date or date-time (no such date)"),
        "{e}"
    );
    let e = err(&["--to", "1670911200"]);
    assert!(
        e.contains(
            "--to (data.end): `1670911200` is a number; write an ISO date or date-time (UTC)"
        ),
        "{e}"
    );
    let e = err(&[
        "--from",
        "2022-12-13T12:00:00Z",
        "--to",
        "2022-12-13T06:00:00Z",
    ]);
    assert!(
        e.contains("data.end: 2022-12-13T06:00:00Z is not after data.start 2022-12-13T12:00:00Z"),
        "{e}"
    );
    let e = err(&["--from", "2023-01-01"]);
    assert!(
        e.contains(
            "data.start / data.end: the time range [2023-01-01T00:00:00Z, …) holds none of the \
             data (2022-12-13T00:00:00Z to 2022-12-13T23:59:00Z)"
        ),
        "{e}"
    );
    // In the scenario file, the error names the file and the key.
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(root().join(QUICKSTART))
        .unwrap()
        .replace(
            "symbol = \"BTCBUSD\"",
            "symbol = \"BTCBUSD\"\nstart = \"13/12/2022\"",
        );
    std::fs::write(&bad, text).unwrap();
    let e = run_err(trailstop().arg("backtest").arg(&bad).arg("-q"));
    assert!(
        e.contains("bad.toml: data.start: `13/12/2022` is not an ISO date or date-time"),
        "{e}"
    );
    assert!(!out.join("trades.csv").exists());
}
