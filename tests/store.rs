//! The SQLite store on its own: schema and migrations, WAL and `synchronous`, one transaction
//! per commit, optimistic concurrency, the append-only journal, event-sourced rebuilds, and
//! rows that do not parse.

mod store_support;

use std::path::Path;

use rust_decimal::Decimal;
use store_support::{Case, commit, open, run_all, step};
use trailstop::engine::Side;
use trailstop::store::{
    OpenOptions, SCHEMA_VERSION, Store, StoreError, Synchronous, journal::rebuild,
};

fn pragma(store: &Store, name: &str) -> String {
    store
        .conn()
        .query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(s) => s,
            other => format!("{other:?}"),
        })
        .unwrap()
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .conn()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn existing() -> OpenOptions {
    OpenOptions {
        create: false,
        ..OpenOptions::create()
    }
}

/// A long that rises, trails and is stopped out.
fn rising() -> Case {
    Case::simple(
        Side::Long,
        &[
            10_050, 10_120, 10_200, 10_260, 10_310, 10_250, 10_150, 10_100, 10_300,
        ],
    )
}

#[test]
fn a_new_database_is_migrated_to_the_schema_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite");
    let store = Store::open(&path, OpenOptions::create()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(pragma(&store, "journal_mode"), "wal");
    assert_eq!(pragma(&store, "synchronous"), "1", "NORMAL by default");
    for t in [
        "trailing_stop_state",
        "trailing_stop_events",
        "trailstop_meta",
    ] {
        assert_eq!(count(&store, t), 0, "{t} exists and is empty");
    }
    drop(store);
    // Opening again migrates nothing twice; FULL is per connection.
    let mut opts = existing();
    opts.synchronous = Synchronous::Full;
    let store = Store::open(&path, opts).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(pragma(&store, "synchronous"), "2", "FULL");
    assert_eq!(store.integrity_check().unwrap(), ["ok"]);
}

#[test]
fn an_empty_file_at_schema_version_zero_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sqlite");
    std::fs::write(&path, b"").unwrap();
    let store = Store::open(&path, existing()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_read_only_open_of_an_unmigrated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sqlite");
    std::fs::write(&path, b"").unwrap();
    let e = Store::open(&path, OpenOptions::read_only()).err().unwrap();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"", "left as it was");
}

#[test]
fn a_committed_run_reads_back_and_rebuilds_from_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), OpenOptions::create()).unwrap();
    let case = rising();
    let (r, steps) = run_all(&case, 7);
    assert!(r.is_closed() && steps.len() > 3);
    for s in &steps {
        commit(&mut store, std::slice::from_ref(s));
    }
    let stored = store.record(7).unwrap().unwrap();
    assert_eq!(stored, steps.last().unwrap().1);
    assert_eq!(stored.runner, r.sim.snapshot());
    assert_eq!(stored, {
        let mut again = steps.last().unwrap().1.clone();
        again.driver = serde_json::to_string(&r.driver()).unwrap();
        again
    });
    assert_eq!(stored.version, steps.len() as u64);
    let rows = store.journal(7).unwrap();
    let entries: usize = steps.iter().map(|s| s.0.len()).sum();
    assert_eq!(rows.len(), entries, "one row per input and per event");
    assert_eq!(stored.last_seq, rows.len() as u64);
    assert_eq!(
        rebuild(&rows).unwrap().with_driver(stored.driver.clone()),
        stored
    );
    assert_eq!(store.verify().unwrap(), 1);
    // The data time of the last step's last input, not the clock.
    let expected = steps
        .last()
        .unwrap()
        .0
        .iter()
        .filter_map(|e| match e {
            trailstop::runner::Entry::Input(i) => Some(i.ts()),
            trailstop::runner::Entry::Event(_) => None,
        })
        .max()
        .unwrap();
    assert_eq!(stored.updated_at, expected);
    assert!(expected < case.bars.last().unwrap().ts + store_support::DELTA);
}

#[test]
fn several_steps_commit_in_one_transaction_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), OpenOptions::create()).unwrap();
    let (a, b) = (rising(), Case::simple(Side::Short, &[9_990, 9_950, 9_900]));
    let (mut ra, sa) = open(&a, 1);
    let (_, sb) = open(&b, 2);
    commit(&mut store, &[sa.clone(), sb.clone()]);
    let a2 = step(&a, &mut ra, &sa.1);
    // Position 2's opening again is a conflict: the whole commit, a2 included, is rolled back.
    let writes = [a2.clone(), sb.clone()];
    let w: Vec<_> = writes
        .iter()
        .map(|(entries, record)| trailstop::store::StepWrite { entries, record })
        .collect();
    let e = store.commit(&w, &[("k", "v")]).err().unwrap();
    assert!(matches!(e, StoreError::Conflict { position: 2, .. }), "{e}");
    assert_eq!(
        store.record(1).unwrap().unwrap(),
        sa.1,
        "a2 was not written"
    );
    assert_eq!(store.journal(1).unwrap().len() as u64, sa.1.last_seq);
    assert_eq!(store.meta("k").unwrap(), None);
    commit(&mut store, std::slice::from_ref(&a2));
    assert_eq!(store.record(1).unwrap().unwrap(), a2.1);
    assert_eq!(store.verify().unwrap(), 2);
}

#[test]
fn a_stale_writer_gets_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let case = rising();
    let (mut r, s1) = open(&case, 1);
    let mut first = Store::open(&path, OpenOptions::create()).unwrap();
    commit(&mut first, std::slice::from_ref(&s1));
    let mut second = Store::open(&path, existing()).unwrap();
    // Both load version 1 and step it; the first commits version 2.
    let mut r2 = store_support::restore(&second.record(1).unwrap().unwrap());
    let s2 = step(&case, &mut r, &s1.1);
    commit(&mut first, std::slice::from_ref(&s2));
    let s2_again = step(&case, &mut r2, &s1.1);
    assert_eq!(s2_again.1.version, 2);
    let before = second.journal(1).unwrap();
    let w = [trailstop::store::StepWrite {
        entries: &s2_again.0,
        record: &s2_again.1,
    }];
    let e = second.commit(&w, &[]).err().unwrap();
    assert!(
        matches!(
            e,
            StoreError::Conflict {
                position: 1,
                expected: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("another writer"), "{e}");
    assert_eq!(second.journal(1).unwrap(), before);
    assert_eq!(second.record(1).unwrap().unwrap(), s2.1);
}

#[test]
fn the_journal_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), OpenOptions::create()).unwrap();
    let (_, steps) = run_all(&rising(), 1);
    commit(&mut store, &steps);
    for sql in [
        "UPDATE trailing_stop_events SET payload = '{}' WHERE seq = 2",
        "DELETE FROM trailing_stop_events WHERE seq = 2",
    ] {
        let e = store.conn().execute(sql, []).err().unwrap();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(store.verify().unwrap(), 1);
}

fn tamper(path: &Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute(sql, [])
        .unwrap();
}

#[test]
fn a_tampered_state_row_is_caught_by_the_journal_or_by_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut store = Store::open(&path, OpenOptions::create()).unwrap();
    let (_, steps) = run_all(&rising(), 1);
    commit(&mut store, &steps);
    drop(store);

    // A well-formed but wrong extreme: only the journal can tell.
    tamper(&path, "UPDATE trailing_stop_state SET extreme = '10999.9'");
    let store = Store::open(&path, existing()).unwrap();
    let e = store.verify().err().unwrap();
    assert!(matches!(e, StoreError::Diverged { position: 1, .. }), "{e}");
    drop(store);

    tamper(&path, "UPDATE trailing_stop_state SET extreme = 'ten'");
    let e = Store::open(&path, existing())
        .unwrap()
        .records()
        .err()
        .unwrap();
    assert!(e.to_string().contains("column extreme"), "{e}");
    assert!(e.to_string().contains("position 1"), "{e}");

    tamper(
        &path,
        "UPDATE trailing_stop_state SET extreme = '10999.9', \
         config_json = replace(config_json, '\"1\"', '\"2\"')",
    );
    let e = Store::open(&path, existing())
        .unwrap()
        .records()
        .err()
        .unwrap();
    assert!(e.to_string().contains("config_hash"), "{e}");
}

#[test]
fn a_journal_that_does_not_replay_is_reported_with_its_step() {
    let (_, steps) = run_all(&rising(), 1);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), OpenOptions::create()).unwrap();
    commit(&mut store, &steps);
    let mut rows = store.journal(1).unwrap();
    // Drop one event of the opening step: the replay emits it, the journal lacks it.
    let dropped = rows.remove(2);
    assert_eq!(dropped.step, 1);
    let e = rebuild(&rows).err().unwrap();
    assert_eq!(e.step, 1);
    assert!(
        matches!(e.problem, trailstop::store::RebuildProblem::Events { .. }),
        "{e}"
    );
    // A price point with another price than was journalled.
    let mut rows = store.journal(1).unwrap();
    let point = rows
        .iter_mut()
        .rev()
        .find(|r| r.payload.contains("\"type\":\"price\""))
        .unwrap();
    point.payload = point.payload.replace("\"price\":", "\"price\":1");
    assert!(rebuild(&rows).is_err());
}

#[test]
fn a_read_only_store_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let (_, steps) = run_all(&rising(), 1);
    commit(
        &mut Store::open(&path, OpenOptions::create()).unwrap(),
        &steps[..2],
    );
    let mut ro = Store::open(&path, OpenOptions::read_only()).unwrap();
    let w = [trailstop::store::StepWrite {
        entries: &steps[2].0,
        record: &steps[2].1,
    }];
    let e = ro.commit(&w, &[]).err().unwrap();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
    assert_eq!(ro.record(1).unwrap().unwrap(), steps[1].1);
}

#[test]
fn decimals_are_stored_as_exact_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), OpenOptions::create()).unwrap();
    let (_, steps) = run_all(&rising(), 1);
    commit(&mut store, &steps);
    let (entry, extreme, kind): (String, String, String) = store
        .conn()
        .query_row(
            "SELECT entry_price, extreme, typeof(sent_stop) FROM trailing_stop_state",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(entry.parse::<Decimal>().unwrap(), Decimal::from(1000));
    assert!(!entry.contains('e') && !entry.contains('E'), "{entry}");
    // The highest close was 10_310 units (1031.0), the highs 5 units above it.
    assert_eq!(extreme.parse::<Decimal>().unwrap(), Decimal::new(10315, 1));
    assert_eq!(kind, "text");
}
