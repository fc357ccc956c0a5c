//! A schema-version-1 `trailing_stop_state` row, read for the upgrade to version 2: the
//! engine's columns, the simulated exchange's side (`exchange_json`) and the replay's rules and
//! cursor (`replay_json`, `next_index`), as trailstop up to version 1 wrote them.

use rusqlite::Row;
use serde::Deserialize;

use crate::backtest::replay::{After, BarRules, Cursor, ReplaySnapshot};
use crate::engine::StopOrigin;
use crate::sim::exchange::{Close, Pending, SimSnapshot, VenueModel};
use crate::store::{Cols, engine_from_row, nonneg};

/// A version-1 position's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Record {
    pub replay: ReplaySnapshot,
    pub last_seq: u64,
    pub version: u64,
    pub updated_at: i64,
}

/// The version-1 column list.
pub const COLUMNS: &str = "position_id, symbol, side, entry_price, quantity, opened_at, \
    tick_size, price_decimals, config_json, config_hash, state, extreme, desired_stop, \
    desired_origin, sent_stop, sent_at, confirmed_stop, exchange_order_id, activated_at, \
    breakeven_armed, momentum_fast, momentum_window, last_price_at, exit_reason, stop_updates, \
    updates_held, emergency_updates, ambiguous_bars, next_index, exchange_json, replay_json, \
    last_seq, version, updated_at";

/// The simulated exchange's side of a position (`exchange_json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ExchangeSide {
    model: VenueModel,
    resting: Option<(i64, StopOrigin)>,
    pending: Option<Pending>,
    unprotected_since: Option<i64>,
    unprotected_ms: i64,
    last_price: i64,
    best: i64,
    worst: i64,
    closed: Option<Close>,
}

/// The replay's rules and where in its entry bar it stands (`replay_json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ReplaySide {
    rules: BarRules,
    after: After,
}

/// Reads a version-1 row selected with [`COLUMNS`]; the error names the column and the problem.
pub fn from_row(row: &Row<'_>) -> Result<V1Record, String> {
    let engine = engine_from_row(row)?;
    let mut col = Cols { row };
    let ambiguous_bars: u32 = col.get(27, "ambiguous_bars")?;
    let next: i64 = col.get(28, "next_index")?;
    let exchange: ExchangeSide = col.json(29, "exchange_json")?;
    let replay: ReplaySide = col.json(30, "replay_json")?;
    let last_seq: i64 = col.get(31, "last_seq")?;
    let version: i64 = col.get(32, "version")?;
    let updated_at: i64 = col.get(33, "updated_at")?;
    let price_decimals = engine.instrument.price_decimals;
    Ok(V1Record {
        replay: ReplaySnapshot {
            sim: SimSnapshot {
                engine,
                model: exchange.model,
                price_decimals,
                resting: exchange.resting,
                pending: exchange.pending,
                unprotected_since: exchange.unprotected_since,
                unprotected_ms: exchange.unprotected_ms,
                last_price: exchange.last_price,
                best: exchange.best,
                worst: exchange.worst,
                closed: exchange.closed,
            },
            rules: replay.rules,
            cursor: Cursor {
                next: nonneg(next, "next_index")? as usize,
                after: replay.after,
            },
            ambiguous_bars,
        },
        last_seq: nonneg(last_seq, "last_seq")?,
        version: nonneg(version, "version")?,
        updated_at,
    })
}
