//! Persistence on SQLite (DESIGN §6, issue 4): the trailing-stop state of every position
//! survives restarts and crashes.
//!
//! - `trailing_stop_state`: one row per position with everything needed to rebuild its runner
//!   (engine, stop order lifecycle, excursions, close) and its driver's own state as an opaque
//!   blob (see `record.rs` for the columns).
//! - `trailing_stop_events`: the append-only journal, one row per runner input (an opening, a
//!   price point, a venue event, a close, a config change) and per engine event, numbered per
//!   position; replaying it rebuilds the state row's runner ([`journal::rebuild`]).
//! - `trailstop_meta`: what a driver needs to resume (for `paper`: its scenario, config and
//!   clock).
//!
//! The store knows the engine, the runner and the venue vocabulary only: never a market, a
//! bar or the simulator. A version-1 database (whose journal held the simulator's bars) is
//! converted on open by the driver that wrote it ([`OpenOptions::upgrade_v1`]).
//!
//! Each [`Store::commit`] writes the steps' journal rows and the resulting state rows in one
//! transaction, so after a crash the database holds every committed step and nothing of a
//! half-done one. WAL mode; `synchronous=NORMAL` by default (a committed step survives a killed
//! process; after a power loss the last few may be gone, never half of one), `FULL` on request.
//!
//! Opening checks before it writes anything: a missing, locked, read-only, corrupt, foreign or
//! newer-schema database is an error that names the file, and the file is left as it was.

pub mod journal;
mod record;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use thiserror::Error;

use crate::runner::Entry;

pub use journal::{
    JournalRow, PositionRecord, RebuildError, RebuildProblem, Rebuilt, RowKind, rebuild,
};
pub use record::{Cols, config_hash, config_json, engine_from_row, fnv1a, nonneg};
pub use schema::SCHEMA_VERSION;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: no database there; nothing was created")]
    Missing { path: PathBuf },
    #[error("{path}: the database is locked by another process ({detail}); nothing was changed")]
    Locked { path: PathBuf, detail: String },
    #[error("{path}: the database is read-only ({detail}); nothing was changed")]
    ReadOnly { path: PathBuf, detail: String },
    #[error("{path}: not a trailstop database, or corrupt ({detail}); nothing was changed")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path}: schema version {found} is newer than this trailstop knows ({known}); \
         use a newer trailstop; nothing was changed"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "{path}: another trailstop process is running on this database (it holds the \
         database's lock); stop it first, or use another --db; nothing was changed"
    )]
    InUse { path: PathBuf },
    #[error("{path}: cannot open ({detail}); nothing was changed")]
    CannotOpen { path: PathBuf, detail: String },
    #[error("{path}: trailing_stop_state, position {position}: {problem}")]
    BadRow {
        path: PathBuf,
        position: i64,
        problem: String,
    },
    #[error(
        "{path}: position {position} was changed by another writer (expected version {expected}); \
         this step was not written"
    )]
    Conflict {
        path: PathBuf,
        position: u64,
        expected: u64,
    },
    #[error(
        "{path}: position {position}: the journal does not rebuild the stored state: {problem}"
    )]
    Diverged {
        path: PathBuf,
        position: u64,
        problem: String,
    },
    #[error(
        "{path}: position {position}: the stored row does not match its journal: `{field}` is \
         {stored} in trailing_stop_state but {journal} rebuilt from trailing_stop_events (was \
         the row edited?); nothing was changed"
    )]
    RowMismatch {
        path: PathBuf,
        position: u64,
        field: &'static str,
        stored: String,
        journal: String,
    },
    #[error("{path}: cannot upgrade schema version {from} to {to}: {problem}; nothing was changed")]
    Upgrade {
        path: PathBuf,
        from: i64,
        to: i64,
        problem: String,
    },
    #[error("{path}: {what}: {source}")]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Sorts an SQLite error into the kinds a user can act on.
    fn from_sqlite(path: &Path, what: &'static str, e: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        let detail = format!("{what}: {e}");
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path, detail }
            }
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, detail },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path, detail }
            }
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                StoreError::CannotOpen { path, detail }
            }
            _ => StoreError::Sqlite {
                path,
                what,
                source: e,
            },
        }
    }
}

/// SQLite's `synchronous` setting for the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Commits are not fsynced, checkpoints are: durable against a crashed process, not
    /// against a power loss (the last commits may be lost, never half of one).
    Normal,
    /// Every commit is fsynced.
    Full,
}

/// A version-1 position converted to version 2: its journal as steps of entries, and its
/// record.
#[derive(Debug, Clone)]
pub struct Converted {
    pub steps: Vec<Vec<Entry>>,
    pub record: PositionRecord,
}

/// Converts every position of a version-1 database (read from `db`, inside the migration's
/// transaction). Only the driver that wrote them knows their inputs: `paper` supplies it.
pub type UpgradeV1 = fn(db: &Connection) -> Result<Vec<Converted>, String>;

/// How to open a database.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Create the database when the file does not exist.
    pub create: bool,
    /// Read only: no schema migration, no writes.
    pub read_only: bool,
    pub synchronous: Synchronous,
    /// How long to wait for another process's lock before giving up.
    pub busy_timeout: Duration,
    /// Hold the database for this process alone while it is open (a runner: `paper`, `live`):
    /// a second such open is refused at once, before anything is read or written.
    pub exclusive: bool,
    /// Converts a version-1 database's positions on a writable open (without one, a
    /// version-1 database with positions is refused).
    pub upgrade_v1: Option<UpgradeV1>,
}

impl OpenOptions {
    /// Read and write; create the file when missing.
    pub fn create() -> OpenOptions {
        OpenOptions {
            create: true,
            read_only: false,
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(2),
            exclusive: false,
            upgrade_v1: None,
        }
    }

    /// Read and write, create when missing, and hold the database alone (a runner).
    pub fn runner() -> OpenOptions {
        OpenOptions {
            exclusive: true,
            ..OpenOptions::create()
        }
    }

    /// With a converter for version-1 databases.
    pub fn upgrading(self, upgrade: UpgradeV1) -> OpenOptions {
        OpenOptions {
            upgrade_v1: Some(upgrade),
            ..self
        }
    }

    /// Read an existing database.
    pub fn read_only() -> OpenOptions {
        OpenOptions {
            create: false,
            read_only: true,
            ..OpenOptions::create()
        }
    }
}

/// One step to write: its entries (the inputs and the events they produced) and the
/// position's resulting record (whose `version` and `last_seq` already count this step). A
/// step without entries writes the record alone (only the driver's state moved).
#[derive(Debug, Clone, Copy)]
pub struct StepWrite<'a> {
    pub entries: &'a [Entry],
    pub record: &'a PositionRecord,
}

impl<'a> StepWrite<'a> {
    /// The writes of steps kept as `(entries, record)`.
    pub fn all(steps: &'a [(Vec<Entry>, PositionRecord)]) -> Vec<StepWrite<'a>> {
        steps
            .iter()
            .map(|(entries, record)| StepWrite { entries, record })
            .collect()
    }
}

/// An open trailstop database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    configs: record::ConfigCache,
    /// The runner's lock on the database file (released when the store is dropped).
    _lock: Option<std::fs::File>,
}

/// Pages of WAL between automatic checkpoints.
pub const WAL_AUTOCHECKPOINT: i64 = 10_000;

const INSERT_EVENT: &str = "INSERT INTO trailing_stop_events (position_id, seq, step, kind, payload) \
     VALUES (?1, ?2, ?3, ?4, ?5)";
const UPSERT_META: &str = "INSERT INTO trailstop_meta (key, value) VALUES (?1, ?2) \
     ON CONFLICT(key) DO UPDATE SET value = excluded.value";

static INSERT_STATE: LazyLock<String> = LazyLock::new(|| {
    let n = (1..=record::N_COLUMNS)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO trailing_stop_state ({}) VALUES ({n})",
        record::COLUMNS
    )
});

/// Updates every column but the key, only if the stored version is the one before this step.
static UPDATE_STATE: LazyLock<String> = LazyLock::new(|| {
    let set = record::COLUMNS
        .split(',')
        .map(str::trim)
        .enumerate()
        .skip(1)
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE trailing_stop_state SET {set} WHERE position_id = ?1 AND version = ?{}",
        record::N_COLUMNS + 1
    )
});

impl Store {
    /// Opens (or with `create`, creates) the database at `path`, checks it, and on a writable
    /// open migrates it to [`SCHEMA_VERSION`]. Nothing is written before the checks pass.
    pub fn open(path: &Path, opts: OpenOptions) -> Result<Store, StoreError> {
        let err = |what, e| StoreError::from_sqlite(path, what, e);
        let exists = path.exists();
        if path.is_dir() {
            return Err(StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: "it is a folder".into(),
            });
        }
        if !exists {
            if !opts.create {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                });
            }
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir
                && !dir.is_dir()
            {
                return Err(StoreError::CannotOpen {
                    path: path.to_path_buf(),
                    detail: format!("folder {} does not exist", dir.display()),
                });
            }
        }
        if exists && !opts.read_only {
            // Checked here as well as by SQLite: a superuser's writes would pass SQLite's own
            // check, and a file marked read-only is meant to stay as it is.
            let meta = std::fs::metadata(path).map_err(|e| StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
            if meta.permissions().readonly() {
                return Err(StoreError::ReadOnly {
                    path: path.to_path_buf(),
                    detail: "the file's permissions deny writing".into(),
                });
            }
        }
        // A read-only open of a writable file in a writable folder still opens it read-write,
        // with `query_only` on: SQL can change nothing, and SQLite's own close then removes the
        // WAL and shared-memory files instead of leaving them behind (a read-only connection
        // cannot). A file or folder that denies writing is read without creating anything.
        let writable = exists && std::fs::metadata(path).is_ok_and(|m| !m.permissions().readonly());
        let folder_writable = folder_writable(path);
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut target = path.to_path_buf();
        if opts.read_only && !(writable && folder_writable) {
            flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
            if read_only_immutable(path, folder_writable)? {
                // No WAL content to read: an immutable open reads the file alone and creates no
                // shared-memory or WAL file beside it.
                flags |= OpenFlags::SQLITE_OPEN_URI;
                target = immutable_uri(path);
            }
        } else if exists {
            flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
        } else {
            flags |= OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&target, flags).map_err(|e| err("opening", e))?;
        let lock = if opts.exclusive && !opts.read_only {
            Some(lock_exclusive(path)?)
        } else {
            None
        };
        conn.busy_timeout(opts.busy_timeout)
            .map_err(|e| err("setting the busy timeout", e))?;
        if opts.read_only {
            conn.pragma_update(None, "query_only", true)
                .map_err(|e| err("setting query_only", e))?;
        }
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            configs: record::ConfigCache::default(),
            _lock: lock,
        };
        let version = store.check(exists)?;
        if opts.read_only {
            if version == 0 {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "schema version 0: no trailstop tables (a paper run creates them)"
                        .into(),
                });
            }
            if version < SCHEMA_VERSION {
                return Err(StoreError::Upgrade {
                    path: path.to_path_buf(),
                    from: version,
                    to: SCHEMA_VERSION,
                    problem: "a read-only open does not upgrade; run `trailstop paper` on it \
                              once (with its scenario) and it is upgraded in place"
                        .into(),
                });
            }
            return Ok(store);
        }
        // The first writes: WAL (persistent in the file) and the migrations.
        let mode: String = store
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| err("switching to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: format!("the journal mode stays {mode}, WAL is needed"),
            });
        }
        let sync = match opts.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        store
            .conn
            .pragma_update(None, "synchronous", sync)
            .map_err(|e| err("setting synchronous", e))?;
        // Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: a step rewrites the same few
        // pages, so a rarer checkpoint copies far fewer distinct pages per step and pays its two
        // fsyncs less often (the per-step write is the hot path). Recovery after a crash reads
        // the WAL once, in well under a second at that size.
        store
            .conn
            .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            .map_err(|e| err("setting wal_autocheckpoint", e))?;
        store.migrate(opts.upgrade_v1)?;
        Ok(store)
    }

    /// The read-only checks of an open: readable, ours, not from a newer trailstop, intact.
    /// Returns the schema version.
    fn check(&self, existed: bool) -> Result<i64, StoreError> {
        let err = |what, e| StoreError::from_sqlite(&self.path, what, e);
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| err("reading the schema version", e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let tables: Vec<String> = {
            let mut st = self
                .conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .map_err(|e| err("listing tables", e))?;
            st.query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| err("listing tables", e))?
        };
        let ours = |t: &String| schema::TABLES.contains(&t.as_str());
        if version == 0 && existed && !tables.is_empty() {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("schema version 0 with other tables: {}", tables.join(", ")),
            });
        }
        if version >= 1
            && schema::TABLES
                .iter()
                .any(|t| !tables.iter().any(|x| x == t))
        {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "schema version {version} but tables {} (expected {})",
                    tables.iter().filter(|t| ours(t)).count(),
                    schema::TABLES.join(", ")
                ),
            });
        }
        let problems = self.quick_check()?;
        if problems != ["ok"] {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("quick_check: {}", problems.join("; ")),
            });
        }
        Ok(version)
    }

    fn quick_check(&self) -> Result<Vec<String>, StoreError> {
        self.pragma_rows("quick_check")
    }

    /// `PRAGMA integrity_check`: `["ok"]` when the file is sound.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.pragma_rows("integrity_check")
    }

    fn pragma_rows(&self, pragma: &'static str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.conn
            .pragma_query(None, pragma, |r| {
                out.push(r.get::<_, String>(0)?);
                Ok(())
            })
            .map_err(|e| StoreError::from_sqlite(&self.path, pragma, e))?;
        Ok(out)
    }

    fn migrate(&mut self, upgrade_v1: Option<UpgradeV1>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |what, e| StoreError::from_sqlite(&path, what, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err("starting the migration", e))?;
        // Read again inside the write lock: another process may have migrated meanwhile.
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| err("reading the schema version", e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if version < 1 {
            tx.execute_batch(schema::V1)
                .map_err(|e| err("migrating to version 1", e))?;
        }
        // 2: the journal of runner inputs; version-1 positions are converted by their driver
        // and checked against the new journal before the old tables go.
        tx.execute_batch(schema::V2_CREATE)
            .map_err(|e| err("migrating to version 2", e))?;
        let upgrade = |problem: String| StoreError::Upgrade {
            path: path.clone(),
            from: version.max(1),
            to: 2,
            problem,
        };
        let old_rows: i64 = tx
            .query_row(
                "SELECT (SELECT count(*) FROM trailing_stop_state) + \
                 (SELECT count(*) FROM trailing_stop_events)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| err("counting version-1 rows", e))?;
        if old_rows > 0 {
            let convert = upgrade_v1.ok_or_else(|| {
                upgrade(
                    "its positions were written by an older trailstop's paper runner; \
                     `trailstop paper` upgrades it"
                        .into(),
                )
            })?;
            let converted = convert(&tx).map_err(upgrade)?;
            for c in &converted {
                write_converted(&tx, c, &mut self.configs, &path)?;
                let rows = read_journal(&tx, &path, c.record.id(), "trailing_stop_events_v2")?;
                let rebuilt = rebuild(&rows)
                    .map_err(|e| upgrade(format!("position {}: {e}", c.record.id())))?;
                let again = rebuilt.with_driver(c.record.driver.clone());
                if let Some((field, a, b)) = record::first_difference(&c.record, &again) {
                    return Err(upgrade(format!(
                        "position {}: `{field}` converts to {a} but the new journal rebuilds \
                         {b}",
                        c.record.id()
                    )));
                }
            }
        }
        tx.execute_batch(schema::V2_SWAP)
            .map_err(|e| err("migrating to version 2", e))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| err("setting the schema version", e))?;
        tx.commit().map_err(|e| err("committing the migration", e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite connection, for diagnostics and tests (pragmas, ad-hoc queries).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| StoreError::from_sqlite(&self.path, "reading the schema version", e))
    }

    /// Writes the steps (journal rows and state rows) and the `meta` pairs in one transaction.
    /// A position's state is written only if the stored version is the one before its step
    /// (none for an opening step); otherwise nothing is written and the error says so.
    pub fn commit(
        &mut self,
        steps: &[StepWrite<'_>],
        meta: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |what, e| StoreError::from_sqlite(&path, what, e);
        let conflict = |r: &PositionRecord| StoreError::Conflict {
            path: path.clone(),
            position: r.id(),
            expected: r.version - 1,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err("starting a step", e))?;
        {
            let mut ev = tx
                .prepare_cached(INSERT_EVENT)
                .map_err(|e| err("preparing", e))?;
            let mut insert = tx
                .prepare_cached(&INSERT_STATE)
                .map_err(|e| err("preparing", e))?;
            let mut update = tx
                .prepare_cached(&UPDATE_STATE)
                .map_err(|e| err("preparing", e))?;
            for s in steps {
                let r = s.record;
                let id = r.id() as i64;
                let rows = s.entries.len() as u64;
                assert!(
                    r.version >= 1 && r.last_seq >= rows,
                    "a step record counts its own step and rows"
                );
                let first = r.last_seq + 1 - rows;
                for (k, entry) in s.entries.iter().enumerate() {
                    let (kind, payload) = entry_row(entry);
                    let seq = (first + k as u64) as i64;
                    ev.execute(params![id, seq, r.version as i64, kind.as_str(), payload])
                        .map_err(|e| match e.sqlite_error_code() {
                            Some(ErrorCode::ConstraintViolation) => conflict(r),
                            _ => err("appending to trailing_stop_events", e),
                        })?;
                }
                let values = record::params(r, &mut self.configs);
                let changed = if r.version == 1 && rows > 0 {
                    insert
                        .execute(rusqlite::params_from_iter(values.iter()))
                        .map_err(|e| match e.sqlite_error_code() {
                            Some(ErrorCode::ConstraintViolation) => conflict(r),
                            _ => err("inserting into trailing_stop_state", e),
                        })?
                } else {
                    // A step without entries keeps the version it found.
                    let before = r.version - u64::from(rows > 0);
                    let expected = rusqlite::types::Value::Integer(before as i64);
                    update
                        .execute(rusqlite::params_from_iter(
                            values.iter().chain(std::iter::once(&expected)),
                        ))
                        .map_err(|e| err("updating trailing_stop_state", e))?
                };
                if changed != 1 {
                    return Err(conflict(r));
                }
            }
            let mut m = tx
                .prepare_cached(UPSERT_META)
                .map_err(|e| err("preparing", e))?;
            for (k, v) in meta {
                m.execute(params![k, v])
                    .map_err(|e| err("writing trailstop_meta", e))?;
            }
        }
        tx.commit().map_err(|e| err("committing a step", e))
    }

    /// Every position's record, by id.
    pub fn records(&self) -> Result<Vec<PositionRecord>, StoreError> {
        self.select_records("", [])
    }

    /// One position's record.
    pub fn record(&self, id: u64) -> Result<Option<PositionRecord>, StoreError> {
        Ok(self
            .select_records(" WHERE position_id = ?1", [id as i64])?
            .pop())
    }

    fn select_records<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<PositionRecord>, StoreError> {
        let err = |e| StoreError::from_sqlite(&self.path, "reading trailing_stop_state", e);
        let sql = format!(
            "SELECT {} FROM trailing_stop_state{filter} ORDER BY position_id",
            record::COLUMNS
        );
        let mut st = self.conn.prepare(&sql).map_err(err)?;
        let mut rows = st.query(p).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let id: i64 = row.get(0).map_err(err)?;
            out.push(record::from_row(row).map_err(|problem| StoreError::BadRow {
                path: self.path.clone(),
                position: id,
                problem,
            })?);
        }
        Ok(out)
    }

    /// A position's journal, in sequence order.
    pub fn journal(&self, id: u64) -> Result<Vec<JournalRow>, StoreError> {
        read_journal(&self.conn, &self.path, id, "trailing_stop_events")
    }

    /// The ids of the positions with a journal.
    pub fn journal_ids(&self) -> Result<Vec<u64>, StoreError> {
        let err = |e| StoreError::from_sqlite(&self.path, "reading trailing_stop_events", e);
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT position_id FROM trailing_stop_events ORDER BY position_id")
            .map_err(err)?;
        st.query_map([], |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.map(|r| r.map(|v| v as u64)).collect())
            .map_err(err)
    }

    /// Runs `f` inside one read transaction, so that everything it reads is one committed
    /// state of the database even while a writer (a running `paper`) commits steps meanwhile.
    pub fn read_snapshot<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let err = |what, e| StoreError::from_sqlite(&self.path, what, e);
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| err("starting a read", e))?;
        let result = f(self);
        // Ending a read-only transaction cannot lose anything: its result stands either way.
        let end = self.conn.execute_batch("COMMIT");
        let value = result?;
        end.map_err(|e| err("ending a read", e))?;
        Ok(value)
    }

    /// Rebuilds every position from its journal alone ([`rebuild`]) and checks that the result
    /// equals its stored row, all in one read snapshot; returns how many positions were checked.
    pub fn verify(&self) -> Result<usize, StoreError> {
        self.read_snapshot(Store::verify_now)
    }

    fn verify_now(&self) -> Result<usize, StoreError> {
        let diverged = |position, problem| StoreError::Diverged {
            path: self.path.clone(),
            position,
            problem,
        };
        let ids = self.journal_ids()?;
        let stored = self.records()?;
        if let Some(r) = stored.iter().find(|r| !ids.contains(&r.id())) {
            return Err(diverged(r.id(), "a state row without a journal".into()));
        }
        for &id in &ids {
            let rebuilt = rebuild(&self.journal(id)?).map_err(|e| diverged(id, e.to_string()))?;
            let Some(row) = stored.iter().find(|r| r.id() == id) else {
                return Err(diverged(id, "a journal without a state row".into()));
            };
            let rebuilt = rebuilt.with_driver(row.driver.clone());
            if rebuilt != *row {
                return Err(diverged(
                    id,
                    format!(
                        "rebuilt at version {} (journal row {}), stored at version {} (row {})",
                        rebuilt.version, rebuilt.last_seq, row.version, row.last_seq
                    ),
                ));
            }
        }
        Ok(ids.len())
    }

    /// Checks a stored row against its position's journal: the journal rebuilt must give
    /// exactly the row (the first differing column is named).
    pub fn check_row(&self, row: &PositionRecord) -> Result<(), StoreError> {
        let id = row.id();
        let rebuilt = rebuild(&self.journal(id)?)
            .map_err(|e| StoreError::Diverged {
                path: self.path.clone(),
                position: id,
                problem: e.to_string(),
            })?
            .with_driver(row.driver.clone());
        match record::first_difference(row, &rebuilt) {
            None => Ok(()),
            Some((field, stored, journal)) => Err(StoreError::RowMismatch {
                path: self.path.clone(),
                position: id,
                field,
                stored,
                journal,
            }),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT value FROM trailstop_meta WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StoreError::from_sqlite(&self.path, "reading trailstop_meta", e))
    }
}

/// Whether files can be created in `path`'s folder (SQLite's WAL and shared-memory files),
/// asked of the system without creating anything (`access(2)`).
fn folder_writable(path: &Path) -> bool {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// For a read-only open that must create nothing: true when the database has no WAL content
/// (no `-wal` file, or an empty one), so the file alone is the whole database. A WAL with
/// frames (a writer killed, or running) needs its shared-memory index: readable when that
/// exists or can be created.
fn read_only_immutable(path: &Path, folder_writable: bool) -> Result<bool, StoreError> {
    let side = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let wal_frames = std::fs::metadata(side("-wal")).is_ok_and(|m| m.len() > 0);
    if !wal_frames {
        return Ok(true);
    }
    if folder_writable || side("-shm").exists() {
        return Ok(false);
    }
    Err(StoreError::ReadOnly {
        path: path.to_path_buf(),
        detail: "its WAL holds changes not yet in the file, and without write access to the \
                 folder SQLite cannot create the index it needs to read them; open it once \
                 where it can be written (any `trailstop state` there checkpoints it)"
            .into(),
    })
}

/// An SQLite URI for `path` opened immutable (percent-encoding what a URI path cannot hold).
fn immutable_uri(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for b in abs.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(b as char)
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    PathBuf::from(uri)
}

/// Takes the runner's lock on the database file: refused at once when another process holds it.
fn lock_exclusive(path: &Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("opening for its lock: {e}"),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("taking its lock: {e}"),
        }),
    }
}

/// A journal entry as its row's kind and payload.
fn entry_row(entry: &Entry) -> (RowKind, String) {
    match entry {
        Entry::Input(i) => (RowKind::Input, to_json(i)),
        Entry::Event(e) => (RowKind::Event, to_json(e)),
    }
}

/// A position's journal rows from `table`, in sequence order.
fn read_journal(
    conn: &Connection,
    path: &Path,
    id: u64,
    table: &str,
) -> Result<Vec<JournalRow>, StoreError> {
    let err = |e| StoreError::from_sqlite(path, "reading trailing_stop_events", e);
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT seq, step, kind, payload FROM {table} WHERE position_id = ?1 ORDER BY seq"
        ))
        .map_err(err)?;
    let rows = st
        .query_map([id as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, step, kind, payload) = row.map_err(err)?;
        let kind = match kind.as_str() {
            "input" => RowKind::Input,
            _ => RowKind::Event,
        };
        out.push(JournalRow {
            position_id: id,
            seq: seq.max(0) as u64,
            step: step.max(0) as u64,
            kind,
            payload,
        });
    }
    Ok(out)
}

/// Writes a converted version-1 position into the version-2 tables.
fn write_converted(
    tx: &Connection,
    c: &Converted,
    configs: &mut record::ConfigCache,
    path: &Path,
) -> Result<(), StoreError> {
    let err = |what, e| StoreError::from_sqlite(path, what, e);
    let id = c.record.id() as i64;
    let mut seq = 0i64;
    let mut ev = tx
        .prepare_cached(&INSERT_EVENT.replace("trailing_stop_events", "trailing_stop_events_v2"))
        .map_err(|e| err("preparing", e))?;
    for (step, entries) in c.steps.iter().enumerate() {
        for entry in entries {
            seq += 1;
            let (kind, payload) = entry_row(entry);
            ev.execute(params![id, seq, step as i64 + 1, kind.as_str(), payload])
                .map_err(|e| err("converting trailing_stop_events", e))?;
        }
    }
    let values = record::params(&c.record, configs);
    tx.prepare_cached(&INSERT_STATE.replace("trailing_stop_state", "trailing_stop_state_v2"))
        .and_then(|mut st| st.execute(rusqlite::params_from_iter(values.iter())))
        .map_err(|e| err("converting trailing_stop_state", e))?;
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("inputs and events serialise")
}
