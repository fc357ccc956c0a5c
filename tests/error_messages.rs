//! Issue 9, "Errors that say what and where, once": each error names the file, line, field or
//! key it is about, shows every cause once, and never echoes an input whole.

mod cli_support;

use std::path::PathBuf;

use cli_support::{QUICKSTART, root, run_err, trailstop};

/// A folder with `scenario.toml` (the quickstart reading `candles`, entries as `entries` says)
/// and `files` beside it.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(candles: &str, entries: &str, files: &[(&str, &[u8])]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let quickstart = std::fs::read_to_string(root().join(QUICKSTART)).unwrap();
        let text = quickstart
            .replace("../data/BTCBUSD-1m-20221213.csv", candles)
            .replace("every = \"2h\"", entries);
        std::fs::write(dir.path().join("scenario.toml"), text).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        Case { dir }
    }

    /// The quickstart's own candles.
    fn real(entries: &str, files: &[(&str, &[u8])]) -> Case {
        let candles = root().join("data/BTCBUSD-1m-20221213.csv");
        Case::new(candles.to_str().unwrap(), entries, files)
    }

    fn scenario(&self) -> PathBuf {
        self.dir.path().join("scenario.toml")
    }

    fn backtest(&self, set: &[&str]) -> String {
        let mut cmd = trailstop();
        cmd.arg("backtest").arg(self.scenario()).arg("--quiet");
        cmd.arg("--out").arg(self.dir.path().join("out"));
        for s in set {
            cmd.args(["--set", s]);
        }
        run_err(&mut cmd)
    }
}

/// No text of the error appears twice (a cause shown by its parent and again in the chain).
fn assert_once(stderr: &str, part: &str) {
    assert_eq!(
        stderr.matches(part).count(),
        1,
        "{part:?} once in:\n{stderr}"
    );
}

#[test]
fn a_missing_file_is_said_once() {
    let err = run_err(trailstop().args(["backtest", "no/such/scenario.toml"]));
    assert!(err.starts_with("error: no/such/scenario.toml: "), "{err}");
    assert_once(&err, "No such file or directory");
    let err = run_err(trailstop().args(["sweep", "no/such/scenario.toml"]));
    assert_once(&err, "No such file or directory");
    let err = run_err(trailstop().args(["paper", "no/such/scenario.toml", "--db", "x.db"]));
    assert_once(&err, "No such file or directory");
    // Any cause the error shows itself (as root, a folder stands in for an unreadable file).
    let err = run_err(trailstop().args(["backtest", "tests"]));
    assert!(err.starts_with("error: tests: "), "{err}");
    assert_once(&err, "Is a directory");
}

#[test]
fn an_entries_price_with_too_many_decimals_names_the_entries_file() {
    let entries = b"time,side,price\n2022-12-13T01:00:00Z,long,17100.1234567890123\n";
    let case = Case::real("file = \"entries.csv\"", &[("entries.csv", entries)]);
    let err = case.backtest(&[]);
    assert!(
        err.contains(
            "entries.csv: line 2, field `price`: 17100.1234567890123 has 13 decimals; at most 12 \
             are supported"
        ),
        "{err}"
    );
    assert!(!err.contains("BTCBUSD-1m"), "not the candle file: {err}");
}

#[test]
fn a_tick_with_too_many_decimals_names_the_tick() {
    let case = Case::real("every = \"2h\"", &[]);
    let err = case.backtest(&["data.tick_size=1e-20"]);
    assert!(
        err.contains("data.tick_size: 0.00000000000000000001 has 20 decimals"),
        "{err}"
    );
    assert!(!err.contains("BTCBUSD-1m"), "not the candle file: {err}");
    // Trace takes the tick on the command line.
    let err = run_err(trailstop().args([
        "trace",
        "tests/fixtures/cli/trace_long.csv",
        "--tick-size",
        "0.0000000000001",
        "--set",
        "distance_percent=0.5",
    ]));
    assert!(
        err.contains("tick_size 0.0000000000001: 13 decimals"),
        "{err}"
    );
    assert!(!err.contains("trace_long.csv"), "not the price file: {err}");
}

#[test]
fn a_candle_price_with_too_many_decimals_names_row_and_field() {
    let candles = b"timestamp,open,high,low,close\n\
                    1704067200000,1,2,1,1\n\
                    1704067260000,1,2,1,1.0000000000001\n";
    let case = Case::new("c.csv", "every = \"2h\"", &[("c.csv", candles)]);
    let err = case.backtest(&[]);
    assert!(
        err.contains("c.csv: row 2, field `close`: 1.0000000000001 has 13 decimals"),
        "{err}"
    );
}

#[test]
fn a_number_too_large_is_out_of_range() {
    let candles = b"timestamp,open,high,low,close\n1704067200000,1e30,2,1,1\n";
    let case = Case::new("c.csv", "every = \"2h\"", &[("c.csv", candles)]);
    let err = case.backtest(&[]);
    assert!(
        err.contains("c.csv: line 2, field `open`: `1e30` is out of range"),
        "{err}"
    );
    assert!(!err.contains("not a decimal number"), "{err}");
    let err = Case::real("every = \"2h\"", &[]).backtest(&["data.tick_size=1e30"]);
    assert!(err.contains("data.tick_size"), "{err}");
    assert!(err.contains("is out of range"), "{err}");
}

#[test]
fn a_set_type_error_names_the_key_and_the_set() {
    let case = Case::real("every = \"2h\"", &[]);
    let err = case.backtest(&["exchange.update_latency_ms=abc"]);
    assert!(
        err.contains(
            "exchange.update_latency_ms: invalid type: string \"abc\", expected u64 (from --set \
             exchange.update_latency_ms=abc)"
        ),
        "{err}"
    );
    let err = case.backtest(&["distance_percent=true"]);
    assert!(
        err.contains("trailing.distance_percent: invalid type: boolean `true`"),
        "{err}"
    );
    assert!(err.contains("(from --set distance_percent=true)"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn an_invisible_bom_is_shown() {
    // A second byte-order mark (the first one is read as the file's).
    let candles = b"\xef\xbb\xbf\xef\xbb\xbftimestamp,open,high,low,close\n1704067200000,1,2,1,1\n";
    let case = Case::new("c.csv", "every = \"2h\"", &[("c.csv", candles)]);
    let err = case.backtest(&[]);
    assert!(err.contains("found: `U+FEFFtimestamp`"), "{err}");
    let candles = b"timestamp,open,high,low,close\n1704067200000,\xef\xbb\xbf1,2,1,1\n";
    let case = Case::new("c.csv", "every = \"2h\"", &[("c.csv", candles)]);
    let err = case.backtest(&[]);
    assert!(
        err.contains("field `open`: `U+FEFF1` is not a decimal number"),
        "{err}"
    );
}

#[test]
fn a_huge_field_is_cut_in_the_message() {
    let mut candles = b"timestamp,open,high,low,close\n1704067200000,".to_vec();
    candles.extend(std::iter::repeat_n(b'x', 5_000_000));
    candles.extend(b",2,1,1\n");
    let case = Case::new("c.csv", "every = \"2h\"", &[("c.csv", &candles)]);
    let err = case.backtest(&[]);
    assert!(err.len() < 400, "{} bytes of stderr", err.len());
    assert!(
        err.contains(&format!("`{}… (5000000 characters)`", "x".repeat(80))),
        "{err}"
    );
}

#[test]
fn input_errors_the_engine_finds_are_not_labelled_engine() {
    use trailstop::backtest::BacktestError;
    use trailstop::engine::EngineError;
    let e = BacktestError::from(EngineError::NotPositive {
        what: "entry price",
        value: rust_decimal::Decimal::ZERO,
    });
    assert_eq!(e.to_string(), "entry price must be positive, got 0");
}

/// Writes into a read-only or full place name the file and say the cause once.
#[test]
fn an_unwritable_out_names_the_file() {
    let case = Case::real("every = \"2h\"", &[]);
    let mut cmd = trailstop();
    cmd.arg("backtest")
        .arg(case.scenario())
        .args(["--quiet", "--out", "/dev/full/x"]);
    let err = run_err(&mut cmd);
    assert!(err.contains("/dev/full/x"), "{err}");
    assert!(!err.contains("BackendError"), "{err}");
}

/// A sweep of `grid` (each `key=range`) from the quickstart into `out`, with `extra` arguments.
fn sweep(out: &std::path::Path, grid: &[&str], extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = trailstop();
    cmd.args(["sweep", QUICKSTART, "--quiet", "--out"]).arg(out);
    for g in grid {
        cmd.args(["--grid", g]);
    }
    cmd.args(extra);
    cmd
}

#[test]
fn an_unusable_out_fails_before_the_work_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    // 20,000 combinations: minutes of work, refused in the time it takes to read the scenario.
    let started = std::time::Instant::now();
    let err = run_err(&mut sweep(
        &file,
        &["activation_percent=0:2:0.001", "distance_percent=0.1:1:0.1"],
        &[],
    ));
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(
        err.contains(&format!(
            "{}: not a folder (it, or a folder above it, is a file); give --out a folder",
            file.display()
        )),
        "{err}"
    );
    assert!(!err.contains("File exists"), "{err}");
    // A folder below a file, for backtest and paper too; nothing is written.
    let below = file.join("out");
    let mut cmd = trailstop();
    cmd.args(["backtest", QUICKSTART, "-q", "--out"])
        .arg(&below);
    assert!(run_err(&mut cmd).contains("not a folder"));
    let db = dir.path().join("paper.db");
    let mut cmd = trailstop();
    cmd.args(["paper", QUICKSTART, "-q", "--db"])
        .arg(&db)
        .arg("--out")
        .arg(&below);
    assert!(run_err(&mut cmd).contains("not a folder"));
    assert!(!db.exists(), "the database is not created");
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_new_sweep_leaves_no_stale_report_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let three = [
        "distance_percent=0.2,0.3",
        "activation_percent=0.3,0.5",
        "initial_stop_percent=1,2",
    ];
    sweep(&out, &three, &[]).assert().success();
    let first = names(&out);
    assert!(
        first.iter().any(|n| n.starts_with("heatmap-")),
        "a 3-axis grid draws more than one heatmap: {first:?}"
    );
    let charts = names(&out.join("trades"));
    assert!(!charts.is_empty());
    // A user's own file in the folder is left alone.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    sweep(&out, &three[..2], &[]).assert().success();
    let second = names(&out);
    assert!(
        !second.iter().any(|n| n.starts_with("heatmap-")),
        "the old panels are gone: {second:?}"
    );
    assert!(second.contains(&"heatmap.png".to_string()), "{second:?}");
    // Tables only: no picture or page of the earlier report stays beside them.
    sweep(&out, &three[..1], &["--no-report"])
        .assert()
        .success();
    assert_eq!(
        names(&out),
        [
            "notes.txt",
            "report.json",
            "sweep.csv",
            "sweep.json",
            "sweep.parquet"
        ]
    );
}

#[test]
fn report_refuses_a_table_of_another_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    sweep(&a, &["distance_percent=0.2,0.3"], &["--no-report"])
        .assert()
        .success();
    sweep(&b, &["distance_percent=0.2,0.4"], &["--no-report"])
        .assert()
        .success();
    trailstop()
        .arg("report")
        .arg(&a)
        .arg("-q")
        .assert()
        .success();
    std::fs::copy(b.join("sweep.parquet"), a.join("sweep.parquet")).unwrap();
    let err = run_err(trailstop().arg("report").arg(&a));
    assert!(
        err.contains(&format!(
            "{}: does not belong to {} beside it (its digest is fnv1a64:",
            a.join("sweep.parquet").display(),
            a.join("sweep.json").display()
        )),
        "{err}"
    );
}

#[test]
fn a_grid_that_would_not_fit_in_memory_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    // 2,001 cells against a 128 MiB allowance: the fixed part (the process, one chunk of
    // rows) is 128 MiB, the cells need a little more.
    let mut cmd = sweep(&out, &["activation_percent=0:2:0.001"], &["--no-report"]);
    cmd.env("TRAILSTOP_MEMORY_LIMIT", "128M");
    let err = run_err(&mut cmd);
    assert!(
        err.contains("2001 combinations need about ") && err.contains("more than the 128 MiB"),
        "{err}"
    );
    assert!(!out.exists(), "nothing ran, nothing was written");
    // The same grid with room runs.
    let mut cmd = sweep(&out, &["activation_percent=0:2:0.001"], &["--no-report"]);
    cmd.env("TRAILSTOP_MEMORY_LIMIT", "1G");
    cmd.assert().success();
}

/// Issue 10: the errors are typed, their variants carry the file, line, field and value.
#[test]
fn entries_errors_are_typed() {
    use trailstop::backtest::{self, BacktestError};
    use trailstop::sim::entries::EntriesError;
    let entries = b"time,side\n2022-12-13T01:00:00Z,sideways\n";
    let case = Case::real("file = \"entries.csv\"", &[("entries.csv", entries)]);
    let scenario = trailstop::scenario::Scenario::load(&case.scenario(), &[]).unwrap();
    match backtest::load(&scenario) {
        Err(BacktestError::Entries(EntriesError::Field {
            path,
            line,
            field,
            problem,
        })) => {
            assert!(path.ends_with("entries.csv"), "{path:?}");
            assert_eq!((line, field), (2, "side"));
            assert!(problem.contains("\"sideways\" is not a side"), "{problem}");
        }
        other => panic!("{:?}", other.err()),
    }
    let far = b"time,side,price\n2022-12-13T01:00:00Z,long,1\n";
    let case = Case::real("file = \"entries.csv\"", &[("entries.csv", far)]);
    let scenario = trailstop::scenario::Scenario::load(&case.scenario(), &[]).unwrap();
    match backtest::load(&scenario) {
        Err(BacktestError::Entries(EntriesError::FarFromMarket(far))) => {
            assert!(far.place.ends_with("entries.csv: line 2"), "{}", far.place);
            assert_eq!(far.price, rust_decimal::Decimal::ONE);
            assert_eq!(far.far_percent, 10);
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn sweep_refusals_are_typed() {
    use trailstop::sweep::{SweepError, memory};
    match memory::check(40_000_000, 0, Some(1 << 30)) {
        Err(SweepError::TooBig {
            cells, available, ..
        }) => assert_eq!((cells, available), (40_000_000, 1 << 30)),
        other => panic!("{other:?}"),
    }
}
