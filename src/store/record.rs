//! A [`PositionRecord`] as a `trailing_stop_state` row and back.
//!
//! Engine fields have columns of their own (decimals as exact text, readable with any SQLite
//! client), as do the trade's excursions and its close; the stop order's lifecycle is JSON
//! (integer units at `price_decimals`), and the driver's state an opaque JSON blob.

use std::str::FromStr;

use rusqlite::Row;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use crate::engine::{
    Counters, EngineSnapshot, ExitReason, Instrument, Position, Side, State, StopOrigin,
    TrailingConfig, fixed,
};
use crate::runner::{Close, RunnerSnapshot};
use crate::venue::StopOrderSnapshot;

use super::journal::PositionRecord;

/// The column list, in the order [`params`] binds them.
pub const COLUMNS: &str = "position_id, symbol, side, entry_price, quantity, opened_at, \
    tick_size, price_decimals, config_json, config_hash, state, extreme, desired_stop, \
    desired_origin, sent_stop, sent_at, confirmed_stop, exchange_order_id, activated_at, \
    breakeven_armed, momentum_fast, momentum_window, last_price_at, exit_reason, stop_updates, \
    updates_held, emergency_updates, order_json, best_price, worst_price, exit_price, exit_at, \
    driver_json, last_seq, version, updated_at";

pub const N_COLUMNS: usize = 36;

/// FNV-1a (64 bit) of the canonical config JSON: a stable fingerprint to notice a changed
/// config (not a security measure).
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub fn config_json(config: &TrailingConfig) -> String {
    serde_json::to_string(config).expect("a config serialises")
}

pub fn config_hash(config: &TrailingConfig) -> String {
    fnv1a(config_json(config).as_bytes())
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Inactive => "inactive",
        State::Active => "active",
        State::Triggered => "triggered",
    }
}

fn origin_name(o: StopOrigin) -> &'static str {
    match o {
        StopOrigin::Initial => "initial",
        StopOrigin::Breakeven => "breakeven",
        StopOrigin::Trailing => "trailing",
    }
}

fn dec(d: Decimal) -> String {
    d.to_string()
}

/// A config's JSON and hash, computed once per distinct config (every step writes them, and
/// a run's positions share one config).
#[derive(Default)]
pub struct ConfigCache(Option<(TrailingConfig, String, String)>);

impl ConfigCache {
    fn get(&mut self, config: &TrailingConfig) -> (String, String) {
        match &self.0 {
            Some((c, json, hash)) if c == config => (json.clone(), hash.clone()),
            _ => {
                let json = config_json(config);
                let hash = fnv1a(json.as_bytes());
                self.0 = Some((config.clone(), json.clone(), hash.clone()));
                (json, hash)
            }
        }
    }
}

/// The row's values, in [`COLUMNS`] order.
pub fn params(r: &PositionRecord, cache: &mut ConfigCache) -> [rusqlite::types::Value; N_COLUMNS] {
    use rusqlite::types::Value as V;
    let e = &r.runner.engine;
    let text = V::Text;
    let opt_text = |o: Option<String>| o.map_or(V::Null, V::Text);
    let int = |i: i64| V::Integer(i);
    let opt_int = |o: Option<i64>| o.map_or(V::Null, V::Integer);
    let inst = e.instrument;
    let sign = e.position.side.sign();
    let price = |mirrored: i64| dec(inst.decimal(sign * mirrored));
    let window: Vec<(i64, String)> = e.window.iter().map(|&(t, p)| (t, dec(p))).collect();
    let (config, hash) = cache.get(&e.config);
    [
        int(e.position.id as i64),
        text(e.position.symbol.clone()),
        text(e.position.side.as_str().to_string()),
        text(dec(e.position.entry_price)),
        text(dec(e.position.quantity)),
        int(e.position.opened_at),
        text(dec(e.instrument.tick_size)),
        int(i64::from(e.instrument.price_decimals)),
        text(config),
        text(hash),
        text(state_name(e.state).to_string()),
        text(dec(e.extreme)),
        opt_text(e.desired.map(|(d, _)| dec(d))),
        opt_text(e.desired.map(|(_, o)| origin_name(o).to_string())),
        opt_text(e.sent.map(|(d, _)| dec(d))),
        opt_int(e.sent.map(|(_, at)| at)),
        opt_text(e.confirmed.map(dec)),
        opt_text(r.exchange_order_id()),
        opt_int(e.activated_at),
        int(i64::from(e.breakeven_armed)),
        int(i64::from(e.momentum_fast)),
        text(serde_json::to_string(&window).expect("serialises")),
        int(e.last_ts),
        opt_text(e.exit.map(|x| x.as_str().to_string())),
        int(i64::from(e.counters.stop_updates)),
        int(i64::from(e.counters.updates_held)),
        int(i64::from(e.counters.emergency_updates)),
        text(serde_json::to_string(&r.runner.order).expect("serialises")),
        text(price(r.runner.best)),
        text(price(r.runner.worst)),
        opt_text(r.runner.closed.map(|c| dec(inst.decimal(c.fill)))),
        opt_int(r.runner.closed.map(|c| c.ts)),
        text(r.driver.clone()),
        int(r.last_seq as i64),
        int(r.version as i64),
        int(r.updated_at),
    ]
}

/// The first column in which two records differ: its name and both values as stored text.
pub fn first_difference(
    a: &PositionRecord,
    b: &PositionRecord,
) -> Option<(&'static str, String, String)> {
    let mut cache = ConfigCache::default();
    let (va, vb) = (params(a, &mut cache), params(b, &mut cache));
    let show = |v: &rusqlite::types::Value| match v {
        rusqlite::types::Value::Null => "NULL".to_string(),
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Real(f) => f.to_string(),
        rusqlite::types::Value::Text(t) => t.clone(),
        rusqlite::types::Value::Blob(b) => format!("{} bytes", b.len()),
    };
    COLUMNS
        .split(',')
        .map(str::trim)
        .zip(va.iter().zip(vb.iter()))
        .find(|(_, (x, y))| x != y)
        .map(|(name, (x, y))| (name, show(x), show(y)))
}

/// The engine's columns of a state row (the first 27, the same in every schema version); the
/// error names the column and the problem.
pub fn engine_from_row(row: &Row<'_>) -> Result<EngineSnapshot, String> {
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
    // Column 17, exchange_order_id, is derived (from the send count), so not read back.
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
    Ok(EngineSnapshot {
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
    })
}

pub fn nonneg(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("{what} {v} is negative"))
}

/// Reads a row selected with [`COLUMNS`]; the error names the column and the problem.
pub fn from_row(row: &Row<'_>) -> Result<PositionRecord, String> {
    let engine = engine_from_row(row)?;
    let mut col = Cols { row };
    let price_decimals = engine.instrument.price_decimals;
    let order: StopOrderSnapshot = col.json(27, "order_json")?;
    let sign = engine.position.side.sign();
    let units = |d: Decimal, name: &str| {
        fixed::to_units(d, price_decimals)
            .ok_or_else(|| format!("column {name}: {d} is not exact at {price_decimals} decimals"))
    };
    let best = sign * units(col.decimal(28, "best_price")?, "best_price")?;
    let worst = sign * units(col.decimal(29, "worst_price")?, "worst_price")?;
    let closed = match (
        col.opt_decimal(30, "exit_price")?,
        col.get::<Option<i64>>(31, "exit_at")?,
        engine.exit,
    ) {
        (Some(p), Some(ts), Some(reason)) => Some(Close {
            ts,
            fill: units(p, "exit_price")?,
            reason,
        }),
        (None, None, _) => None,
        _ => return Err("exit_price, exit_at and exit_reason must be set together".into()),
    };
    let driver: String = col.get(32, "driver_json")?;
    let last_seq: i64 = col.get(33, "last_seq")?;
    let version: i64 = col.get(34, "version")?;
    let updated_at: i64 = col.get(35, "updated_at")?;
    Ok(PositionRecord {
        runner: RunnerSnapshot {
            engine,
            order,
            best,
            worst,
            closed,
        },
        driver,
        last_seq: nonneg(last_seq, "last_seq")?,
        version: nonneg(version, "version")?,
        updated_at,
    })
}

fn parse_dec(s: &str) -> Result<Decimal, String> {
    Decimal::from_str(s).map_err(|_| format!("\"{s}\" is not a decimal"))
}

/// Typed column access whose errors name the column.
pub struct Cols<'a, 'b> {
    pub row: &'a Row<'b>,
}

impl Cols<'_, '_> {
    pub fn get<T: rusqlite::types::FromSql>(&mut self, i: usize, name: &str) -> Result<T, String> {
        self.row.get(i).map_err(|e| format!("column {name}: {e}"))
    }
    pub fn decimal(&mut self, i: usize, name: &str) -> Result<Decimal, String> {
        let s: String = self.get(i, name)?;
        parse_dec(&s).map_err(|e| format!("column {name}: {e}"))
    }
    pub fn opt_decimal(&mut self, i: usize, name: &str) -> Result<Option<Decimal>, String> {
        let s: Option<String> = self.get(i, name)?;
        s.map(|s| parse_dec(&s).map_err(|e| format!("column {name}: {e}")))
            .transpose()
    }
    pub fn parse_name<T: DeserializeOwned>(&mut self, i: usize, name: &str) -> Result<T, String> {
        let s: String = self.get(i, name)?;
        serde_json::from_value(serde_json::Value::String(s.clone()))
            .map_err(|_| format!("column {name}: \"{s}\" is not a valid value"))
    }
    pub fn opt_name<T: DeserializeOwned>(
        &mut self,
        i: usize,
        name: &str,
    ) -> Result<Option<T>, String> {
        let s: Option<String> = self.get(i, name)?;
        s.map(|s| {
            serde_json::from_value(serde_json::Value::String(s.clone()))
                .map_err(|_| format!("column {name}: \"{s}\" is not a valid value"))
        })
        .transpose()
    }
    pub fn json<T: DeserializeOwned>(&mut self, i: usize, name: &str) -> Result<T, String> {
        let s: String = self.get(i, name)?;
        serde_json::from_str(&s).map_err(|e| format!("column {name}: {e}"))
    }
}
