//! What a trader looks for first (issue 9): the backtest's results table and its `summary.json`
//! metrics (the sweep's own, so a sweep cell of the same parameters has the same values), its
//! `--report`, and a run of zero trades that says why.

mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;

use cli_support::{QUICKSTART, root, run_code, trailstop};
use serde_json::Value;

/// The metric columns of `sweep.csv`, each also a key of `summary.json`.
const METRICS: [&str; 15] = [
    "trades",
    "total_return_pct",
    "mean_return_pct",
    "win_rate",
    "profit_factor",
    "max_drawdown_pct",
    "sharpe",
    "mean_giveback_pct",
    "capture_ratio",
    "stop_updates",
    "updates_held",
    "emergency_updates",
    "unprotected_ms",
    "ambiguous_bars",
    "ambiguous_share",
];

fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `sweep.csv`'s single row, column → cell.
fn one_sweep_row(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "one cell: {text}");
    header
        .iter()
        .map(|h| h.to_string())
        .zip(rows[0].split(',').map(str::to_string))
        .collect()
}

/// Each metric of `summary.json` equals the sweep cell's (an empty cell is `null`).
fn assert_same_metrics(summary: &Value, row: &BTreeMap<String, String>) {
    for k in METRICS {
        let cell = &row[k];
        let v = &summary[k];
        if cell.is_empty() {
            assert!(v.is_null(), "{k}: sweep.csv empty, summary.json {v}");
        } else {
            let a: f64 = cell.parse().unwrap();
            let b = v
                .as_f64()
                .unwrap_or_else(|| panic!("{k}: sweep.csv {cell}, summary.json {v}"));
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "{k}: sweep.csv {a}, summary.json {b}"
            );
        }
    }
}

/// The value the table shows right after `label` on its line.
fn shown(stdout: &str, label: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.strip_prefix("  ").is_some_and(|r| r.starts_with(label)))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"));
    line[2 + label.len()..]
        .trim_start()
        .split("  ")
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn backtest_prints_the_metrics_of_its_summary_json_and_a_sweep_cell_has_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let bt = tmp.path().join("bt");
    let (stdout, _) = run_code(
        trailstop().args(["backtest", QUICKSTART, "--out"]).arg(&bt),
        0,
    );
    let s = summary(&bt);
    let num = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k}: {}", s[k]));
    assert_eq!(s["trades"], 12);
    assert_eq!(shown(&stdout, "trades"), "12");
    assert_eq!(
        shown(&stdout, "total return"),
        format!("{:+.4} %", num("total_return_pct"))
    );
    assert_eq!(
        shown(&stdout, "mean return"),
        format!("{:+.4} %", num("mean_return_pct"))
    );
    assert_eq!(
        shown(&stdout, "win rate"),
        format!("{:.1} %", num("win_rate") * 100.0)
    );
    assert_eq!(
        shown(&stdout, "profit factor"),
        format!("{:.4}", num("profit_factor"))
    );
    assert_eq!(
        shown(&stdout, "max drawdown"),
        format!("{:.4} pp", num("max_drawdown_pct"))
    );
    assert_eq!(shown(&stdout, "Sharpe"), format!("{:+.4}", num("sharpe")));
    assert_eq!(
        shown(&stdout, "giveback"),
        format!("{:.4} pp", num("mean_giveback_pct"))
    );
    assert_eq!(
        shown(&stdout, "capture"),
        format!("{:.4}", num("capture_ratio"))
    );
    assert_eq!(
        shown(&stdout, "exits"),
        "breakeven_stop 6, end_of_data 1, trailing_stop 5"
    );
    assert_eq!(
        shown(&stdout, "band"),
        format!(
            "{:+.4} % pessimistic, {:+.4} % optimistic",
            s["band"]["pessimistic"]["total_return_pct"]
                .as_f64()
                .unwrap(),
            s["band"]["optimistic"]["total_return_pct"]
                .as_f64()
                .unwrap()
        )
    );
    // The band's meaning is said, with the ambiguous bars behind it.
    assert!(
        stdout.contains("adverse extreme first") && stdout.contains("5 ambiguous bars"),
        "{stdout}"
    );
    // The keys summary.json had before stay beside the added ones.
    for k in [
        "policy",
        "wins",
        "exit_reasons",
        "band",
        "gaps",
        "price_decimals",
    ] {
        assert!(s.get(k).is_some(), "summary.json keeps {k}");
    }

    // One sweep cell at the scenario's own parameters: the same numbers, one implementation.
    let sw = tmp.path().join("sweep");
    trailstop()
        .args(["sweep", QUICKSTART, "--quiet", "--no-report", "--out"])
        .arg(&sw)
        .args(["--grid", "distance_percent=0.25"])
        .assert()
        .success();
    assert_same_metrics(&s, &one_sweep_row(&sw));
}

/// A scenario on the quickstart's data whose two entries lie after the data's end.
fn no_trade_scenario(dir: &Path) -> std::path::PathBuf {
    let data = root().join("data/BTCBUSD-1m-20221213.csv");
    std::fs::write(
        dir.join("e.csv"),
        "time,side\n2023-01-01T00:00:00Z,long\n2023-01-02T00:00:00Z,short\n",
    )
    .unwrap();
    let path = dir.join("none.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"none\"\n[data]\ncandles = \"{}\"\ntick_size = \"0.01\"\n\
             [entries]\nfile = \"e.csv\"\n[trailing]\ndistance_percent = \"0.25\"\n",
            data.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn zero_trades_give_the_same_empty_metrics_as_the_sweep_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = no_trade_scenario(tmp.path());
    let bt = tmp.path().join("bt");
    let (stdout, stderr) = run_code(
        trailstop()
            .arg("backtest")
            .arg(&scenario)
            .arg("--out")
            .arg(&bt),
        0,
    );
    assert!(
        stdout.starts_with("none: no trades on ")
            && stdout.contains(
                ": none of the 2 entries (2023-01-01T00:00:00Z to 2023-01-02T00:00:00Z) has a \
                 price point after it in the data (2022-12-13T00:00:00Z to 2022-12-13T23:59:00Z)"
            ),
        "{stdout}"
    );
    // Said once: not again as a warning beside the table.
    assert!(!stderr.contains("none of the 2 entries"), "{stderr}");
    let s = summary(&bt);
    assert_eq!(s["trades"], 0);
    for k in [
        "mean_return_pct",
        "win_rate",
        "profit_factor",
        "sharpe",
        "mean_giveback_pct",
        "capture_ratio",
        "ambiguous_share",
    ] {
        assert!(s[k].is_null(), "{k} of no trades is empty: {}", s[k]);
    }
    assert_eq!(s["total_return_pct"], 0.0);
    assert!(s["band"]["optimistic"]["win_rate"].is_null());

    let sw = tmp.path().join("sweep");
    let (_, stderr) = run_code(
        trailstop()
            .arg("sweep")
            .arg(&scenario)
            .args(["--quiet", "--no-report", "--out"])
            .arg(&sw)
            .args(["--grid", "distance_percent=0.25"]),
        0,
    );
    assert!(stderr.contains("no position opens, 0 trades"), "{stderr}");
    assert_same_metrics(&s, &one_sweep_row(&sw));
}

#[test]
fn backtest_report_draws_the_equity_curve_trade_charts_and_a_page() {
    let tmp = tempfile::tempdir().unwrap();
    let bt = tmp.path().join("bt");
    let (stdout, _) = run_code(
        trailstop()
            .args(["backtest", QUICKSTART, "--report", "--out"])
            .arg(&bt),
        0,
    );
    for f in ["equity.png", "equity.svg", "index.html"] {
        let bytes = std::fs::read(bt.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(bytes.len() > 1000, "{f} has a picture or page");
    }
    assert!(
        std::fs::read(bt.join("equity.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    // Three top and three worst of the 12 trades, each a PNG.
    let mut charts: Vec<String> = std::fs::read_dir(bt.join("trades"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    charts.sort();
    assert_eq!(charts.len(), 6, "{charts:?}");
    assert!(
        charts
            .iter()
            .any(|c| c.starts_with("backtest-top1-position-"))
    );
    assert!(
        charts
            .iter()
            .any(|c| c.starts_with("backtest-worst1-position-"))
    );
    let page = std::fs::read_to_string(bt.join("index.html")).unwrap();
    let s = summary(&bt);
    assert!(page.contains("quickstart — backtest report"));
    assert!(page.contains(&format!(
        "<td>{:.4}</td>",
        s["max_drawdown_pct"].as_f64().unwrap()
    )));
    for c in &charts {
        assert!(page.contains(&format!("trades/{c}")), "the page shows {c}");
    }
    assert!(stdout.contains("report: 9 files; open "), "{stdout}");
    // The tables are those of a run without --report.
    let plain = tmp.path().join("plain");
    trailstop()
        .args(["backtest", QUICKSTART, "-q", "--out"])
        .arg(&plain)
        .assert()
        .success();
    for f in ["trades.csv", "summary.json", "events.jsonl"] {
        assert_eq!(
            std::fs::read(bt.join(f)).unwrap(),
            std::fs::read(plain.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// The rows of `sweep.csv`, column → cell.
fn sweep_rows(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn sweep_prints_its_best_cells_and_warns_when_the_best_is_on_the_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("edge");
    let (stdout, stderr) = run_code(
        trailstop()
            .args(["sweep", QUICKSTART, "--no-report", "--no-band", "--out"])
            .arg(&out)
            .args(["--grid", "activation_percent=0.1:0.5:0.2"])
            .args(["--grid", "distance_percent=0.15:0.35:0.1"]),
        0,
    );
    // The table: the cells of sweep.csv by total return, best first.
    let mut rows = sweep_rows(&out);
    rows.sort_by(|a, b| {
        let v = |r: &BTreeMap<String, String>| r["total_return_pct"].parse::<f64>().unwrap();
        v(b).total_cmp(&v(a))
    });
    let lines: Vec<&str> = stdout.lines().collect();
    let head = lines
        .iter()
        .position(|l| {
            l.trim_start()
                .starts_with("#  activation_percent  distance_percent")
        })
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    assert!(
        lines[head - 1].contains("the 9 best of 9 combinations by total_return_pct"),
        "{stdout}"
    );
    for (k, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = lines[head + 1 + k].split_whitespace().collect();
        assert_eq!(cells[0], (k + 1).to_string());
        assert_eq!(cells[1], row["trailing.activation_percent"]);
        assert_eq!(cells[2], row["trailing.distance_percent"]);
        assert_eq!(cells[3], row["trades"]);
        let total: f64 = row["total_return_pct"].parse().unwrap();
        assert_eq!(cells[4], format!("{total:+.4}"));
    }
    // The best (activation 0.3, distance 0.15) is the smallest distance swept.
    assert!(
        stderr.contains(
            "warning: the best cell (trailing.activation_percent=0.3 trailing.distance_percent=0.15) \
             lies on the edge of the grid: trailing.distance_percent = 0.15 is its smallest value"
        ),
        "{stderr}"
    );

    // The same best inside the grid: no warning (a one-value axis has no edge).
    let inside = tmp.path().join("inside");
    let (stdout, stderr) = run_code(
        trailstop()
            .args(["sweep", QUICKSTART, "--no-report", "--no-band", "--out"])
            .arg(&inside)
            .args(["--grid", "activation_percent=0.1:0.5:0.2"])
            .args(["--grid", "distance_percent=0.15"]),
        0,
    );
    assert!(stdout.contains("the 3 best of 3 combinations"), "{stdout}");
    assert!(!stderr.contains("edge of the grid"), "{stderr}");
}

#[test]
fn merge_prints_the_same_best_cells_and_warning_as_the_unsharded_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = [
        "--grid",
        "activation_percent=0.1:0.5:0.2",
        "--grid",
        "distance_percent=0.15:0.35:0.1",
    ];
    let run = |out: &Path, extra: &[&str]| {
        run_code(
            trailstop()
                .args(["sweep", QUICKSTART, "--no-report", "--no-band", "--out"])
                .arg(out)
                .args(grid)
                .args(extra),
            0,
        )
    };
    let (whole, whole_err) = run(&tmp.path().join("whole"), &[]);
    let shards = tmp.path().join("shards");
    run(&shards, &["--shard", "0/2"]);
    run(&shards, &["--shard", "1/2"]);
    let (merged, merged_err) = run_code(
        trailstop()
            .args(["merge", "--no-report", "--out"])
            .arg(tmp.path().join("merged"))
            .arg(&shards),
        0,
    );
    let table = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| !l.contains(" best of "))
            .take(11)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(table(&whole).len(), 11, "{whole}");
    assert_eq!(table(&merged), table(&whole), "{merged}");
    assert!(
        whole_err.contains("lies on the edge of the grid"),
        "{whole_err}"
    );
    assert_eq!(merged_err, whole_err);
}
