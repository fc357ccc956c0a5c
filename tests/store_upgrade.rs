//! Schema version 1 → 2 (issue 10): databases written by `paper` of schema version 1 (kept in
//! `tests/fixtures/store_v1`, made by `make.py` with the binary of commit 60f0a95, each killed
//! part way so positions are open mid-trade) are upgraded on open in one transaction, resume,
//! and finish byte-identical to `trailstop backtest`; what cannot be carried over exactly is
//! refused and the file is left as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use trailstop::store::{OpenOptions, Store, StoreError};

const BIN: &str = env!("CARGO_BIN_EXE_trailstop");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/store_v1")
}

/// A fixture's scenario (run from the folder it was made in: its paths are relative) and the
/// `--set` it was made with.
struct Fixture {
    db: &'static str,
    scenario: &'static str,
    sets: &'static [&'static str],
}

const FIXTURES: [Fixture; 2] = [
    Fixture {
        db: "detail-v1.sqlite",
        scenario: "detail.toml",
        sets: &[],
    },
    Fixture {
        db: "quickstart-v1.sqlite",
        scenario: "../../../scenarios/quickstart.toml",
        sets: &["entries.every=30m"],
    },
];

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(fixtures())
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn with_sets<'a>(mut args: Vec<&'a str>, sets: &[&'a str]) -> Vec<&'a str> {
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

fn copy(f: &Fixture, dir: &Path) -> PathBuf {
    let db = dir.join(f.db);
    std::fs::copy(fixtures().join(f.db), &db).unwrap();
    db
}

fn version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn open_positions(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM trailing_stop_state WHERE exit_reason IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_version_1_database_upgrades_resumes_and_finishes_as_the_backtest() {
    for f in &FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let db = copy(f, dir.path());
        assert_eq!(version(&db), 1, "{}: the fixture is version 1", f.db);
        assert!(open_positions(&db) > 0, "{}: killed mid-trade", f.db);
        let (bt, out) = (dir.path().join("bt"), dir.path().join("out"));
        let (bt_s, out_s, db_s) = (
            bt.to_str().unwrap(),
            out.to_str().unwrap(),
            db.to_str().unwrap(),
        );
        ok(&with_sets(
            vec!["backtest", f.scenario, "--out", bt_s],
            f.sets,
        ));
        let said = ok(&with_sets(
            vec!["paper", f.scenario, "--db", db_s, "--out", out_s],
            f.sets,
        ));
        assert!(said.contains("resuming"), "{}: {said}", f.db);
        assert_eq!(version(&db), 2, "{}", f.db);
        for name in ["trades.csv", "events.jsonl", "summary.json"] {
            assert_eq!(
                std::fs::read(bt.join(name)).unwrap(),
                std::fs::read(out.join(name)).unwrap(),
                "{}: {name} differs from the backtest's",
                f.db
            );
        }
        let verified = ok(&["state", "--db", db_s, "--verify"]);
        assert!(
            verified.contains("each equal to its stored state"),
            "{verified}"
        );
        // The upgraded journal is the runner's: no bar is left in it.
        let bars: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM trailing_stop_events WHERE payload LIKE '%\"type\":\"bar\"%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bars, 0, "{}", f.db);
    }
}

#[test]
fn the_upgrade_is_one_transaction_and_keeps_the_journal_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy(&FIXTURES[0], dir.path());
    let before = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM trailing_stop_state", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    let store = Store::open(
        &db,
        OpenOptions::create().upgrading(trailstop::paper::upgrade_v1),
    )
    .unwrap();
    assert_eq!(store.schema_version().unwrap(), 2);
    assert_eq!(store.records().unwrap().len() as i64, before);
    assert_eq!(store.verify().unwrap() as i64, before);
    let e = store
        .conn()
        .execute("DELETE FROM trailing_stop_events WHERE seq = 1", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

fn bytes(db: &Path) -> Vec<u8> {
    std::fs::read(db).unwrap()
}

#[test]
fn a_version_1_row_that_does_not_match_its_journal_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let f = &FIXTURES[0];
    let db = copy(f, dir.path());
    // An edited extreme on an open position: well-formed, but not what its journal replays.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE trailing_stop_state SET extreme = '9999.99' WHERE exit_reason IS NULL",
            [],
        )
        .unwrap();
    let before = bytes(&db);
    let out = dir.path().join("out");
    let e = err(&with_sets(
        vec![
            "paper",
            f.scenario,
            "--db",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        f.sets,
    ));
    assert!(
        e.contains("cannot upgrade schema version 1 to 2") && e.contains("position"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(bytes(&db) == before, "the file is left as it was");
    assert_eq!(version(&db), 1);
    assert!(!out.exists(), "no outputs");
}

#[test]
fn a_read_only_open_or_one_without_the_paper_converter_does_not_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let db = copy(&FIXTURES[1], dir.path());
    let before = bytes(&db);
    let e = err(&["state", "--db", db.to_str().unwrap()]);
    assert!(e.contains("read-only open does not upgrade"), "{e}");
    assert!(e.contains("trailstop paper"), "{e}");
    match Store::open(&db, OpenOptions::create()) {
        Err(StoreError::Upgrade { from: 1, to: 2, .. }) => {}
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("upgraded without the paper converter"),
    }
    assert!(bytes(&db) == before, "the file is left as it was");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "no WAL or shared-memory files left: {names:?}"
    );
}
