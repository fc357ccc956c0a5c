//! The database schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Migration `k` (1-based) takes a database from version `k - 1` to `k`. They run in order, on
//! open, inside one `BEGIN IMMEDIATE` transaction together with the new `user_version`, so a
//! crash mid-migration leaves the old version intact. A database whose version is higher than
//! [`SCHEMA_VERSION`] was written by a newer trailstop and is refused, untouched.

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// Tables every trailstop database of version ≥ 1 has; a file without them is not ours.
pub const TABLES: [&str; 3] = [
    "trailing_stop_state",
    "trailing_stop_events",
    "trailstop_meta",
];

/// Migration 1: state, journal, run metadata (the simulator's replay in the state table).
pub const V1: &str = r#"
CREATE TABLE trailing_stop_state (
    position_id       INTEGER PRIMARY KEY,
    symbol            TEXT    NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('long', 'short')),
    entry_price       TEXT    NOT NULL,
    quantity          TEXT    NOT NULL,
    opened_at         INTEGER NOT NULL,
    tick_size         TEXT    NOT NULL,
    price_decimals    INTEGER NOT NULL,
    config_json       TEXT    NOT NULL,
    config_hash       TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('inactive', 'active', 'triggered')),
    extreme           TEXT    NOT NULL,
    desired_stop      TEXT,
    desired_origin    TEXT,
    sent_stop         TEXT,
    sent_at           INTEGER,
    confirmed_stop    TEXT,
    exchange_order_id TEXT,
    activated_at      INTEGER,
    breakeven_armed   INTEGER NOT NULL,
    momentum_fast     INTEGER NOT NULL,
    momentum_window   TEXT    NOT NULL,
    last_price_at     INTEGER NOT NULL,
    exit_reason       TEXT,
    stop_updates      INTEGER NOT NULL,
    updates_held      INTEGER NOT NULL,
    emergency_updates INTEGER NOT NULL,
    ambiguous_bars    INTEGER NOT NULL,
    next_index        INTEGER NOT NULL,
    exchange_json     TEXT    NOT NULL,
    replay_json       TEXT    NOT NULL,
    last_seq          INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE trailing_stop_events (
    position_id INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('input', 'event')),
    payload     TEXT    NOT NULL,
    PRIMARY KEY (position_id, seq)
) WITHOUT ROWID;

-- The journal is append-only: history is never rewritten.
CREATE TRIGGER trailing_stop_events_no_update BEFORE UPDATE ON trailing_stop_events
BEGIN SELECT RAISE(ABORT, 'trailing_stop_events is append-only'); END;
CREATE TRIGGER trailing_stop_events_no_delete BEFORE DELETE ON trailing_stop_events
BEGIN SELECT RAISE(ABORT, 'trailing_stop_events is append-only'); END;

CREATE TABLE trailstop_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Migration 2, first half: the version-2 tables beside the old ones. The state row holds the
/// runner (engine columns, the stop order's lifecycle, the excursions, the close) and the
/// driver's opaque state; the journal holds runner inputs instead of market bars. (SQLite
/// cannot change a `CHECK` or drop columns in place, hence new tables.)
pub const V2_CREATE: &str = r#"
CREATE TABLE trailing_stop_state_v2 (
    position_id       INTEGER PRIMARY KEY,
    symbol            TEXT    NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('long', 'short')),
    entry_price       TEXT    NOT NULL,
    quantity          TEXT    NOT NULL,
    opened_at         INTEGER NOT NULL,
    tick_size         TEXT    NOT NULL,
    price_decimals    INTEGER NOT NULL,
    config_json       TEXT    NOT NULL,
    config_hash       TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('inactive', 'active', 'triggered')),
    extreme           TEXT    NOT NULL,
    desired_stop      TEXT,
    desired_origin    TEXT,
    sent_stop         TEXT,
    sent_at           INTEGER,
    confirmed_stop    TEXT,
    exchange_order_id TEXT,
    activated_at      INTEGER,
    breakeven_armed   INTEGER NOT NULL,
    momentum_fast     INTEGER NOT NULL,
    momentum_window   TEXT    NOT NULL,
    last_price_at     INTEGER NOT NULL,
    exit_reason       TEXT,
    stop_updates      INTEGER NOT NULL,
    updates_held      INTEGER NOT NULL,
    emergency_updates INTEGER NOT NULL,
    order_json        TEXT    NOT NULL,
    best_price        TEXT    NOT NULL,
    worst_price       TEXT    NOT NULL,
    exit_price        TEXT,
    exit_at           INTEGER,
    driver_json       TEXT    NOT NULL,
    last_seq          INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE trailing_stop_events_v2 (
    position_id INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('input', 'event')),
    payload     TEXT    NOT NULL,
    PRIMARY KEY (position_id, seq)
) WITHOUT ROWID;
"#;

/// Migration 2, second half (after the old rows were converted into the new tables): the new
/// tables take the old names.
pub const V2_SWAP: &str = r#"
DROP TABLE trailing_stop_state;
DROP TABLE trailing_stop_events;
ALTER TABLE trailing_stop_state_v2 RENAME TO trailing_stop_state;
ALTER TABLE trailing_stop_events_v2 RENAME TO trailing_stop_events;

-- The journal is append-only: history is never rewritten.
CREATE TRIGGER trailing_stop_events_no_update BEFORE UPDATE ON trailing_stop_events
BEGIN SELECT RAISE(ABORT, 'trailing_stop_events is append-only'); END;
CREATE TRIGGER trailing_stop_events_no_delete BEFORE DELETE ON trailing_stop_events
BEGIN SELECT RAISE(ABORT, 'trailing_stop_events is append-only'); END;
"#;
