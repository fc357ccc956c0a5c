//! A schema-version-1 `trailing_stop_state` row, read for the upgrade to version 2: the
//! engine's columns, the simulated exchange's side (`exchange_json`) and the replay's rules and
//! cursor (`replay_json`, `next_index`), as trailstop up to version 1 wrote them.

use std::str::FromStr;

use rusqlite::Row;
use rust_decimal::Decimal;
use serde::{Deserialize, de::DeserializeOwned};

use crate::backtest::replay::{After, BarRules, Cursor, ReplaySnapshot};
use crate::engine::{
    Counters, EngineSnapshot, ExitReason, Instrument, Position, Side, State, StopOrigin,
    TrailingConfig,
};
use crate::sim::exchange::{Close, Pending, SimSnapshot, VenueModel};

use crate::store::fnv1a;

/// A version-1 position's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Record {
    pub replay: ReplaySnapshot,
    pub exchange_order_id: Option<String>,
    pub last_seq: u64,
    pub version: u64,
    pub updated_at: i64,
}

/// The column list, in the order [`params`] binds them.
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

/// Reads a row selected with [`COLUMNS`]; the error names the column and the problem.
pub fn from_row(row: &Row<'_>) -> Result<V1Record, String> {
    let mut col = Cols { row };
    let id: i64 = col.get(0, "position_id")?;
    let symbol: String = col.get(1, "symbol")?;
    let side: Side = col.parse_name(2, "side")?;
    let entry_price = col.decimal(3, "entry_price")?;
    let quantity = col.decimal(4, "quantity")?;
    let opened_at: i64 = col.get(5, "opened_at")?;
    let tick_size = col.decimal(6, "tick_size")?;
    let price_decimals: u32 = col.get(7, "price_decimals")?;
    let config_text: String = col.get(8, "config_json")?;
    let hash: String = col.get(9, "config_hash")?;
    if fnv1a(config_text.as_bytes()) != hash {
        return Err(format!(
            "config_hash {hash} does not match config_json (hash {})",
            fnv1a(config_text.as_bytes())
        ));
    }
    let config: TrailingConfig =
        serde_json::from_str(&config_text).map_err(|e| format!("config_json: {e}"))?;
    let state: State = col.parse_name(10, "state")?;
    let extreme = col.decimal(11, "extreme")?;
    let desired = match (
        col.opt_decimal(12, "desired_stop")?,
        col.opt_name::<StopOrigin>(13, "desired_origin")?,
    ) {
        (Some(d), Some(o)) => Some((d, o)),
        (None, None) => None,
        _ => return Err("desired_stop and desired_origin must be set together".into()),
    };
    let sent = match (
        col.opt_decimal(14, "sent_stop")?,
        col.get::<Option<i64>>(15, "sent_at")?,
    ) {
        (Some(d), Some(at)) => Some((d, at)),
        (None, None) => None,
        _ => return Err("sent_stop and sent_at must be set together".into()),
    };
    let confirmed = col.opt_decimal(16, "confirmed_stop")?;
    let exchange_order_id: Option<String> = col.get(17, "exchange_order_id")?;
    let activated_at: Option<i64> = col.get(18, "activated_at")?;
    let breakeven_armed: bool = col.get(19, "breakeven_armed")?;
    let momentum_fast: bool = col.get(20, "momentum_fast")?;
    let window: Vec<(i64, String)> = col.json(21, "momentum_window")?;
    let window = window
        .into_iter()
        .map(|(t, p)| parse_dec(&p).map(|d| (t, d)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("momentum_window: {e}"))?;
    let last_ts: i64 = col.get(22, "last_price_at")?;
    let exit: Option<ExitReason> = col.opt_name(23, "exit_reason")?;
    let counters = Counters {
        stop_updates: col.get(24, "stop_updates")?,
        updates_held: col.get(25, "updates_held")?,
        emergency_updates: col.get(26, "emergency_updates")?,
    };
    let ambiguous_bars: u32 = col.get(27, "ambiguous_bars")?;
    let next: i64 = col.get(28, "next_index")?;
    let exchange: ExchangeSide = col.json(29, "exchange_json")?;
    let replay: ReplaySide = col.json(30, "replay_json")?;
    let last_seq: i64 = col.get(31, "last_seq")?;
    let version: i64 = col.get(32, "version")?;
    let updated_at: i64 = col.get(33, "updated_at")?;
    let nonneg =
        |v: i64, what: &str| u64::try_from(v).map_err(|_| format!("{what} {v} is negative"));
    let engine = EngineSnapshot {
        position: Position {
            id: nonneg(id, "position_id")?,
            symbol,
            side,
            entry_price,
            quantity,
            opened_at,
        },
        instrument: Instrument::with_price_decimals(tick_size, price_decimals),
        config,
        state,
        extreme,
        desired,
        sent,
        confirmed,
        activated_at,
        breakeven_armed,
        momentum_fast,
        last_ts,
        exit,
        counters,
        window,
    };
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
        exchange_order_id,
        last_seq: nonneg(last_seq, "last_seq")?,
        version: nonneg(version, "version")?,
        updated_at,
    })
}

fn parse_dec(s: &str) -> Result<Decimal, String> {
    Decimal::from_str(s).map_err(|_| format!("\"{s}\" is not a decimal"))
}

/// Typed column access whose errors name the column.
struct Cols<'a, 'b> {
    row: &'a Row<'b>,
}

impl Cols<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&mut self, i: usize, name: &str) -> Result<T, String> {
        self.row.get(i).map_err(|e| format!("column {name}: {e}"))
    }
    fn decimal(&mut self, i: usize, name: &str) -> Result<Decimal, String> {
        let s: String = self.get(i, name)?;
        parse_dec(&s).map_err(|e| format!("column {name}: {e}"))
    }
    fn opt_decimal(&mut self, i: usize, name: &str) -> Result<Option<Decimal>, String> {
        let s: Option<String> = self.get(i, name)?;
        s.map(|s| parse_dec(&s).map_err(|e| format!("column {name}: {e}")))
            .transpose()
    }
    fn parse_name<T: DeserializeOwned>(&mut self, i: usize, name: &str) -> Result<T, String> {
        let s: String = self.get(i, name)?;
        serde_json::from_value(serde_json::Value::String(s.clone()))
            .map_err(|_| format!("column {name}: \"{s}\" is not a valid value"))
    }
    fn opt_name<T: DeserializeOwned>(&mut self, i: usize, name: &str) -> Result<Option<T>, String> {
        let s: Option<String> = self.get(i, name)?;
        s.map(|s| {
            serde_json::from_value(serde_json::Value::String(s.clone()))
                .map_err(|_| format!("column {name}: \"{s}\" is not a valid value"))
        })
        .transpose()
    }
    fn json<T: DeserializeOwned>(&mut self, i: usize, name: &str) -> Result<T, String> {
        let s: String = self.get(i, name)?;
        serde_json::from_str(&s).map_err(|e| format!("column {name}: {e}"))
    }
}
