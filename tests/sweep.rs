//! `trailstop sweep`, `merge` and `report` end to end on the shipped quickstart data (one day of
//! 1m candles, 12 positions), with tiny grids so CI stays fast.
//!
//! The metrics are checked against `trailstop backtest` runs of the same parameters: the test
//! reads their `trades.csv` and `summary.json` and computes every metric itself.

mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use cli_support::{QUICKSTART, root, run_err, trailstop};
use serde_json::Value;

fn sweep(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = trailstop();
    cmd.args(["sweep", QUICKSTART, "--quiet", "--out"])
        .arg(out)
        .args(extra);
    cmd
}

/// A CSV as header → column of strings.
fn csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

fn f(row: &BTreeMap<String, String>, k: &str) -> Option<f64> {
    let v = row.get(k).unwrap_or_else(|| panic!("no column {k}"));
    if v.is_empty() {
        None
    } else {
        Some(v.parse().unwrap_or_else(|_| panic!("{k}: {v}")))
    }
}

fn close(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 2e-8 * (1.0 + b.abs()),
            "{what}: sweep {a}, expected {b}"
        ),
        (None, None) => {}
        _ => panic!("{what}: sweep {a:?}, expected {b:?}"),
    }
}

/// Milliseconds of the day from `2022-12-13T08:00:00.000Z` (the data is one day).
fn ms_of_day(iso: &str) -> i64 {
    let t = &iso[11..23];
    let h: i64 = t[0..2].parse().unwrap();
    let m: i64 = t[3..5].parse().unwrap();
    let s: i64 = t[6..8].parse().unwrap();
    let ms: i64 = t[9..12].parse().unwrap();
    ((h * 60 + m) * 60 + s) * 1000 + ms
}

/// Every metric from a backtest's trades, computed here from the definitions in the README.
fn expected_metrics(trades: &[BTreeMap<String, String>]) -> BTreeMap<&'static str, Option<f64>> {
    let pnl: Vec<f64> = trades.iter().map(|t| f(t, "pnl_pct").unwrap()).collect();
    let mfe: Vec<f64> = trades.iter().map(|t| f(t, "mfe_pct").unwrap()).collect();
    let n = pnl.len() as f64;
    let total: f64 = pnl.iter().sum();
    let mean = total / n;
    let wins = pnl.iter().filter(|p| **p > 0.0).count() as f64;
    let gp: f64 = pnl.iter().filter(|p| **p > 0.0).sum();
    let gl: f64 = -pnl.iter().filter(|p| **p < 0.0).sum::<f64>();
    let sd = (pnl.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    // Equity in exit order, ties by position id.
    let mut order: Vec<(i64, u64, f64)> = trades
        .iter()
        .map(|t| {
            (
                ms_of_day(&t["exit_time"]),
                t["position_id"].parse().unwrap(),
                f(t, "pnl_pct").unwrap(),
            )
        })
        .collect();
    order.sort_by_key(|o| (o.0, o.1));
    let (mut cum, mut peak, mut dd) = (0.0f64, 0.0f64, 0.0f64);
    for (_, _, p) in order {
        cum += p;
        peak = peak.max(cum);
        dd = dd.max(peak - cum);
    }
    // Bars replayed: one-minute candles without gaps, entry and exit bars included.
    let bars: i64 = trades
        .iter()
        .map(|t| ms_of_day(&t["exit_time"]) / 60_000 - ms_of_day(&t["entry_time"]) / 60_000 + 1)
        .sum();
    let amb: f64 = trades.iter().map(|t| f(t, "ambiguous_bars").unwrap()).sum();
    let sum = |k: &str| Some(trades.iter().map(|t| f(t, k).unwrap()).sum::<f64>());
    BTreeMap::from([
        ("trades", Some(n)),
        ("total_return_pct", Some(total)),
        ("mean_return_pct", Some(mean)),
        ("win_rate", Some(wins / n)),
        ("profit_factor", (gl > 0.0).then(|| gp / gl)),
        ("max_drawdown_pct", Some(dd)),
        ("sharpe", (sd > 0.0).then(|| mean / sd)),
        (
            "mean_giveback_pct",
            Some(mfe.iter().zip(&pnl).map(|(m, p)| m - p).sum::<f64>() / n),
        ),
        ("capture_ratio", Some(total / mfe.iter().sum::<f64>())),
        ("stop_updates", sum("stop_updates")),
        ("updates_held", sum("updates_held")),
        ("emergency_updates", sum("emergency_updates")),
        ("unprotected_ms", sum("unprotected_ms")),
        ("ambiguous_bars", Some(amb)),
        ("ambiguous_share", Some(amb / bars as f64)),
    ])
}

#[test]
fn every_row_matches_a_backtest_of_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    sweep(
        &out,
        &[
            "--grid",
            "activation_percent=0.1,0.4",
            "--grid",
            "trailing.distance_percent=0.15:0.35:0.2",
            "--no-report",
        ],
    )
    .assert()
    .success();
    let (header, rows) = csv(&out.join("sweep.csv"));
    assert_eq!(
        &header[..3],
        [
            "combo",
            "trailing.activation_percent",
            "trailing.distance_percent"
        ]
    );
    // Sorted by the parameters, the last axis fastest.
    let params: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["trailing.activation_percent"].clone(),
                r["trailing.distance_percent"].clone(),
            )
        })
        .collect();
    let want = [
        ("0.1", "0.15"),
        ("0.1", "0.35"),
        ("0.4", "0.15"),
        ("0.4", "0.35"),
    ];
    assert_eq!(
        params,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    for (row, (a, d)) in rows.iter().zip(want) {
        let bt = dir.path().join(format!("bt-{a}-{d}"));
        trailstop()
            .args(["backtest", QUICKSTART, "--quiet", "--out"])
            .arg(&bt)
            .args(["--set", &format!("trailing.activation_percent={a}")])
            .args(["--set", &format!("trailing.distance_percent={d}")])
            .assert()
            .success();
        let (_, trades) = csv(&bt.join("trades.csv"));
        for (k, v) in expected_metrics(&trades) {
            close(f(row, k), v, &format!("{a}/{d} {k}"));
        }
        close(f(row, "objective"), f(row, "total_return_pct"), "objective");
        let summary: Value =
            serde_json::from_slice(&std::fs::read(bt.join("summary.json")).unwrap()).unwrap();
        for (col, policy) in [
            ("objective_optimistic", "optimistic"),
            ("objective_pessimistic", "pessimistic"),
        ] {
            close(
                f(row, col),
                summary["band"][policy]["total_return_pct"].as_f64(),
                &format!("{a}/{d} {col}"),
            );
        }
    }
}

#[test]
fn output_is_identical_for_any_thread_count_and_shards_merge_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let grid = [
        "--grid",
        "activation_percent=0:0.4:0.2",
        "--grid",
        "distance_percent=0.15,0.3,0.45",
        "--walk-forward",
        "2",
    ];
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    sweep(&one, &grid)
        .env("RAYON_NUM_THREADS", "1")
        .assert()
        .success();
    sweep(&two, &grid)
        .env("RAYON_NUM_THREADS", "2")
        .assert()
        .success();
    let files = [
        "sweep.csv",
        "sweep.parquet",
        "report.json",
        "heatmap.png",
        "heatmap.svg",
        "equity.png",
        "equity.svg",
    ];
    for name in files {
        let a = std::fs::read(one.join(name)).unwrap();
        assert!(!a.is_empty(), "{name} is empty");
        assert!(
            a == std::fs::read(two.join(name)).unwrap(),
            "{name} differs"
        );
    }
    // sweep.json records the command, which names the output folder: the rest must agree.
    let meta = |d: &Path| -> Value {
        let mut v: Value =
            serde_json::from_slice(&std::fs::read(d.join("sweep.json")).unwrap()).unwrap();
        v["command"] = Value::Null;
        v
    };
    assert_eq!(meta(&one), meta(&two));
    let (_, rows) = csv(&one.join("sweep.csv"));
    assert_eq!(rows.len(), 9);

    // Three shards into two folders (shards may share one), merged.
    let s1 = dir.path().join("s1");
    let s2 = dir.path().join("s2");
    for (k, d) in [("0/3", &s1), ("1/3", &s2), ("2/3", &s1)] {
        sweep(d, &grid).args(["--shard", k]).assert().success();
    }
    assert!(
        !s1.join("sweep.csv").exists(),
        "a shard writes only its part"
    );
    // A missing shard is named.
    let err = run_err(
        trailstop()
            .args(["merge", "--quiet", "--out"])
            .arg(dir.path().join("bad"))
            .arg(&s1),
    );
    assert!(err.contains("shard 1/3 is missing"), "{err}");
    let merged = dir.path().join("merged");
    trailstop()
        .args(["merge", "--quiet", "--out"])
        .arg(&merged)
        .args([&s1, &s2])
        .assert()
        .success();
    for name in files {
        assert!(
            std::fs::read(one.join(name)).unwrap() == std::fs::read(merged.join(name)).unwrap(),
            "merged {name} differs from the unsharded run"
        );
    }
    // The merged report's "reproduce with" is the unsharded sweep (into the merged folder),
    // then how it was made here: the shards and the merge.
    let merged_meta: Value =
        serde_json::from_slice(&std::fs::read(merged.join("sweep.json")).unwrap()).unwrap();
    let sweep_line = format!(
        "trailstop sweep {QUICKSTART} --quiet {} --out {}",
        grid.join(" "),
        merged.display()
    );
    let merge_line = format!(
        "# here as 3 shards (--shard K/3), merged by: trailstop merge {} {} --out {}",
        s1.display(),
        s2.display(),
        merged.display()
    );
    assert_eq!(
        merged_meta["command"].as_str().unwrap(),
        format!("{sweep_line}\n{merge_line}")
    );
    let page = std::fs::read_to_string(merged.join("index.html")).unwrap();
    assert!(
        page.contains(&format!("<pre>{sweep_line}\n")),
        "index.html does not show the sweep command"
    );

    // `report` re-renders the same pictures and page from the saved results.
    let page = std::fs::read(one.join("index.html")).unwrap();
    std::fs::remove_file(one.join("heatmap.png")).unwrap();
    std::fs::remove_file(one.join("index.html")).unwrap();
    trailstop()
        .args(["report", "--quiet"])
        .arg(&one)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(one.join("heatmap.png")).unwrap(),
        std::fs::read(two.join("heatmap.png")).unwrap()
    );
    assert!(std::fs::read(one.join("index.html")).unwrap() == page);
}

#[test]
fn walk_forward_splits_each_rows_trades_and_chooses_on_training_folds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wf");
    sweep(
        &out,
        &[
            "--grid",
            "activation_percent=0,0.3",
            "--grid",
            "distance_percent=0.2,0.4",
            "--walk-forward",
            "3",
            "--no-report",
        ],
    )
    .assert()
    .success();
    let (_, rows) = csv(&out.join("sweep.csv"));
    // Every trade opens in exactly one fold: the folds' test returns add up to the total.
    for r in &rows {
        let folds: f64 = (0..4)
            .map(|k| f(r, &format!("wf{k}_test_return_pct")).unwrap())
            .sum();
        close(Some(folds), f(r, "total_return_pct"), "folds sum");
    }
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    let wf = &meta["results"]["walk_forward"];
    let steps = wf["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let mut oos = 0.0;
    for (k, s) in steps.iter().enumerate() {
        // The chosen row has the best training objective of fold k (the first of equals).
        let train = |r: &BTreeMap<String, String>| f(r, &format!("wf{k}_train")).unwrap();
        let best = rows
            .iter()
            .fold(None::<&BTreeMap<String, String>>, |b, r| match b {
                Some(b) if train(b) >= train(r) => Some(b),
                _ => Some(r),
            })
            .unwrap();
        assert_eq!(
            s["chosen_combo"].as_u64().unwrap().to_string(),
            best["combo"]
        );
        let ret = f(best, &format!("wf{}_test_return_pct", k + 1)).unwrap();
        close(s["test_return_pct"].as_f64(), Some(ret), "step return");
        oos += ret;
    }
    close(
        wf["oos_total_return_pct"].as_f64(),
        Some(oos),
        "out-of-sample total",
    );
}

#[test]
fn samples_are_a_seeded_subset_of_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let grid = [
        "--grid",
        "activation_percent=0:1:0.1",
        "--grid",
        "distance_percent=0.1:1:0.1",
        "--samples",
        "5",
        "--seed",
        "3",
        "--no-report",
        "--no-band",
    ];
    let a = dir.path().join("a");
    sweep(&a, &grid).assert().success();
    let (_, rows) = csv(&a.join("sweep.csv"));
    assert_eq!(rows.len(), 5);
    let combos: Vec<u64> = rows.iter().map(|r| r["combo"].parse().unwrap()).collect();
    assert!(combos.windows(2).all(|w| w[0] < w[1]) && combos[4] < 110);
    // Without the band, its columns are empty.
    assert_eq!(f(&rows[0], "objective_optimistic"), None);
    let b = dir.path().join("b");
    sweep(&b, &grid).assert().success();
    assert_eq!(
        std::fs::read(a.join("sweep.csv")).unwrap(),
        std::fs::read(b.join("sweep.csv")).unwrap()
    );
}

#[test]
fn bad_sweeps_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    for (args, words) in [
        (
            &["--grid", "distanse_percent=0.1,0.2"][..],
            &["distanse_percent"][..],
        ),
        (
            &["--grid", "distance_percent=0.5:0.1:0.1"],
            &["distance_percent", "below"],
        ),
        (&["--grid", "distance_percent=0,0.1"], &["distance_percent"]),
        (&["--grid", "exchange.venue=binance,kraken"], &["kraken"]),
        (
            &[
                "--grid",
                "distance_percent=0.1,0.2",
                "--objective",
                "profit",
            ],
            &["objective", "total_return_pct"],
        ),
        (
            &["--grid", "distance_percent=0.1", "--shard", "3/3"],
            &["--shard"],
        ),
        (&[], &["nothing to sweep"]),
    ] {
        let err = run_err(sweep(&out, args).arg("--no-report"));
        for w in words {
            assert!(err.contains(w), "{args:?}: {err}");
        }
    }
    let err = run_err(trailstop().args(["report"]).arg(dir.path().join("none")));
    assert!(err.contains("sweep.json"), "{err}");
}

/// Ctrl-C: the running combinations finish, the finished rows are written, the exit is 130
/// with an error that says so.
#[test]
fn an_interrupted_sweep_keeps_its_finished_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int");
    let bin = assert_cmd::cargo::cargo_bin("trailstop");
    let child = std::process::Command::new(bin)
        .current_dir(root())
        .args(["sweep", QUICKSTART, "--quiet", "--no-report", "--out"])
        .arg(&out)
        .args([
            "--grid",
            "activation_percent=0:2:0.0001",
            "--grid",
            "distance_percent=0.1:1:0.1",
        ])
        .env("RAYON_NUM_THREADS", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Well after the handler is installed (a few ms), well before the minutes the grid takes.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(meta["interrupted"], Value::Bool(true));
    let finished = meta["finished"].as_u64().unwrap();
    assert!(finished < 200_010, "stopped early: {finished}");
    let (_, rows) = csv(&out.join("sweep.csv"));
    assert_eq!(rows.len() as u64, finished);
}

/// Issue 9: a grid larger than one chunk of rows (65,536) streams through disk: the tables hold
/// every row in order, nothing temporary is left, and three shards merge to the same bytes.
#[test]
fn a_grid_larger_than_a_chunk_streams_and_its_shards_merge_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Half an hour of candles and one position: the cells cost, not the data.
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"tiny\"\n[data]\ncandles = \"{}\"\nsymbol = \"BTCBUSD\"\ntick_size = \"0.01\"\n\
             end = \"2022-12-13T00:30:00Z\"\n[entries]\nevery = \"1h\"\nside = \"long\"\n\
             [exchange]\nvenue = \"bybit\"\n[trailing]\nactivation_percent = \"0.3\"\n\
             distance_percent = \"0.25\"\n",
            root().join("data/BTCBUSD-1m-20221213.csv").display()
        ),
    )
    .unwrap();
    // 700 x 100 = 70,000 cells.
    let grid = [
        "--grid",
        "activation_percent=0:6.99:0.01",
        "--grid",
        "distance_percent=0.1:10:0.1",
        "--no-report",
        "--quiet",
    ];
    let run = |out: &Path, extra: &[&str]| {
        trailstop()
            .arg("sweep")
            .arg(&scenario)
            .arg("--out")
            .arg(out)
            .args(grid)
            .args(extra)
            .assert()
            .success();
    };
    let one = dir.path().join("one");
    run(&one, &[]);
    let (_, rows) = csv(&one.join("sweep.csv"));
    assert_eq!(rows.len(), 70_000);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["combo"], i.to_string(), "rows in combination order");
    }
    let table = trailstop::sweep::table::read_parquet(&one.join("sweep.parquet")).unwrap();
    assert_eq!(table.height(), 70_000);
    let mut names: Vec<String> = std::fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["report.json", "sweep.csv", "sweep.json", "sweep.parquet"],
        "no temporary file is left"
    );
    let shards = dir.path().join("shards");
    for k in ["0/3", "1/3", "2/3"] {
        run(&shards, &["--shard", k]);
    }
    let merged = dir.path().join("merged");
    trailstop()
        .args(["merge", "--quiet", "--no-report", "--out"])
        .arg(&merged)
        .arg(&shards)
        .assert()
        .success();
    for name in ["sweep.parquet", "sweep.csv", "report.json"] {
        assert!(
            std::fs::read(one.join(name)).unwrap() == std::fs::read(merged.join(name)).unwrap(),
            "merged {name} differs from the unsharded run"
        );
    }
}
