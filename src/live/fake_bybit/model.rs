//! The fake Bybit's exchange, sans I/O: one account's positions and their Full-mode stop
//! losses, the mark price per symbol, the v5 signature and time checks, the REST endpoints and
//! the private messages each change produces. The server (`server.rs`) only moves bytes and
//! time; everything a test asserts about Bybit's behaviour is decided here.
//!
//! One replayed price is both the mark and the last price of its symbol, so a stop judged by
//! either (`slTriggerBy` `MarkPrice` or `LastPrice`) triggers on the same point.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::faults::{Fault, FaultKind, StreamFaults};
use super::wire::{
    self, ExecutionView, HttpReply, HttpRequest, OrderView, PositionView, closing_side,
    execution_json, order_json, position_json, private_message, side_text, text,
};
use crate::engine::Side;
use crate::live::bybit::sign::hmac_sha256_hex;

/// Bybit's `retCode`s as the fake answers them (the fake keeps its own list: it is the venue).
pub mod ret {
    pub const PARAMS: i64 = 10001;
    pub const TIMESTAMP: i64 = 10002;
    pub const API_KEY: i64 = 10003;
    pub const SIGN: i64 = 10004;
    pub const RATE_LIMIT: i64 = 10006;
    pub const NOT_MODIFIED: i64 = 34040;
    pub const REDUCE_ONLY_ZERO: i64 = 110017;
    pub const DUPLICATE_LINK_ID: i64 = 110072;
}

/// What the fake trades: a linear perpetual and its filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentSpec {
    pub symbol: String,
    pub tick_size: Decimal,
    pub qty_step: Decimal,
    pub min_order_qty: Decimal,
}

impl InstrumentSpec {
    pub fn new(symbol: &str, tick_size: Decimal) -> InstrumentSpec {
        InstrumentSpec {
            symbol: symbol.to_string(),
            tick_size,
            qty_step: Decimal::new(1, 3),
            min_order_qty: Decimal::new(1, 3),
        }
    }
}

/// The account the fake serves.
#[derive(Debug, Clone)]
pub struct Setup {
    pub api_key: String,
    pub api_secret: String,
    pub instruments: Vec<InstrumentSpec>,
    /// Hedge mode (`positionIdx` 1 Buy / 2 Sell) instead of one-way (`0`).
    pub hedge: bool,
    /// Bybit's per-UID limit of `trading-stop` calls, and apart of `order/create` calls, per
    /// rolling second (each endpoint counts on its own, `EXCHANGES.md` §2.7).
    pub orders_per_second: usize,
}

impl Setup {
    pub fn new(api_key: &str, api_secret: &str, instruments: Vec<InstrumentSpec>) -> Setup {
        Setup {
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
            instruments,
            hedge: false,
            orders_per_second: 10,
        }
    }
}

#[derive(Debug, Clone)]
struct Position {
    side: Side,
    size: Decimal,
    avg_price: Decimal,
    stop: Option<Stop>,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Debug, Clone)]
struct Stop {
    price: Decimal,
    trigger_by: String,
    order_id: String,
    created_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    price: Decimal,
    ts: i64,
}

/// A message for the streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// On `tickers.<symbol>` of the public stream.
    Public { symbol: String, text: String },
    /// On a private topic (`position`, `order`, `execution`).
    Private { topic: &'static str, text: String },
}

/// A request as received, for request-shape tests.
pub type Recorded = HttpRequest;

/// A position as a test reads it from the fake.
pub type PositionState = PositionView;

/// The exchange.
#[derive(Debug)]
pub struct Model {
    setup: Setup,
    /// Server clock = the given local time + this (a skewed server for `10002`).
    pub clock_offset_ms: i64,
    positions: BTreeMap<(String, u8), Position>,
    marks: BTreeMap<String, Mark>,
    ticker_seq: u64,
    message_seq: u64,
    order_seq: u64,
    position_seq: u64,
    link_ids: Vec<String>,
    /// Per endpoint, the server times of the calls of the last second.
    order_calls: BTreeMap<String, VecDeque<i64>>,
    /// Calls refused with `10006`.
    pub rate_limited: usize,
    faults: Vec<Fault>,
    /// Every fill, oldest first (`execution/list` reads it).
    executions: Vec<ExecutionView>,
    pub stream_faults: StreamFaults,
    pub requests: Vec<Recorded>,
    /// When each of `requests` arrived (local ms).
    pub arrivals: Vec<i64>,
}

/// The "base price" text of a wrong-side refusal: Bybit writes prices as integers scaled by
/// 10^4 there (`sl:257970000 … base_price:259477000` for 25797 and 25947.7).
fn scaled(d: Decimal) -> String {
    (d * Decimal::from(10_000)).trunc().normalize().to_string()
}

impl Model {
    pub fn new(setup: Setup) -> Model {
        Model {
            setup,
            clock_offset_ms: 0,
            positions: BTreeMap::new(),
            marks: BTreeMap::new(),
            ticker_seq: 0,
            message_seq: 0,
            order_seq: 0,
            position_seq: 0,
            link_ids: Vec::new(),
            order_calls: BTreeMap::new(),
            rate_limited: 0,
            faults: Vec::new(),
            executions: Vec::new(),
            stream_faults: StreamFaults::default(),
            requests: Vec::new(),
            arrivals: Vec::new(),
        }
    }

    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    pub fn server_time(&self, local_ms: i64) -> i64 {
        local_ms + self.clock_offset_ms
    }

    /// The time stamped on messages: the market's (the last replayed point), so a replay
    /// stamps its fills with data times; the server clock before any point.
    fn market_ts(&self, server_ms: i64) -> i64 {
        self.marks.values().map(|m| m.ts).max().unwrap_or(server_ms)
    }

    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Takes the first injected fault for `path`, if any.
    pub fn take_fault(&mut self, path: &str) -> Option<FaultKind> {
        let i = self
            .faults
            .iter()
            .position(|f| f.path.as_deref().is_none_or(|p| p == path))?;
        Some(self.faults.remove(i).kind)
    }

    fn instrument(&self, symbol: &str) -> Option<&InstrumentSpec> {
        self.setup.instruments.iter().find(|i| i.symbol == symbol)
    }

    fn idx_of(&self, side: Side) -> u8 {
        match (self.setup.hedge, side) {
            (false, _) => 0,
            (true, Side::Long) => 1,
            (true, Side::Short) => 2,
        }
    }

    fn next_message_id(&mut self) -> u64 {
        self.message_seq += 1;
        self.message_seq
    }

    fn view(&self, symbol: &str, idx: u8, p: Option<&Position>, now: i64) -> PositionView {
        self.position_view(symbol, idx, p, now, self.position_seq)
    }

    fn position_view(
        &self,
        symbol: &str,
        idx: u8,
        p: Option<&Position>,
        now: i64,
        seq: u64,
    ) -> PositionView {
        PositionView {
            symbol: symbol.to_string(),
            position_idx: idx,
            side: p.map(|p| p.side),
            size: p.map_or(Decimal::ZERO, |p| p.size),
            avg_price: p.map_or(Decimal::ZERO, |p| p.avg_price),
            mark_price: self.marks.get(symbol).map(|m| m.price),
            stop_loss: p.and_then(|p| p.stop.as_ref()).map(|s| s.price),
            sl_trigger_by: p
                .and_then(|p| p.stop.as_ref())
                .map_or(String::new(), |s| s.trigger_by.clone()),
            created_ms: p.map_or(now, |p| p.created_ms),
            updated_ms: p.map_or(now, |p| p.updated_ms),
            seq,
        }
    }

    /// The position at `symbol` / `idx` as the venue holds it (flat: `side` `None`).
    pub fn position(&self, symbol: &str, idx: u8) -> PositionView {
        let key = (symbol.to_string(), idx);
        self.view(symbol, idx, self.positions.get(&key), 0)
    }

    /// The open positions.
    pub fn open_positions(&self) -> Vec<PositionView> {
        self.positions
            .iter()
            .map(|((s, i), p)| self.view(s, *i, Some(p), 0))
            .collect()
    }

    pub fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.marks.get(symbol).map(|m| m.price)
    }

    fn position_message(&mut self, symbol: &str, idx: u8, now: i64) -> Outgoing {
        self.position_seq += 1;
        let key = (symbol.to_string(), idx);
        let v = self.position_view(
            symbol,
            idx,
            self.positions.get(&key),
            now,
            self.position_seq,
        );
        let id = self.next_message_id();
        Outgoing::Private {
            topic: "position",
            text: private_message(id, "position", now, vec![position_json(&v)]),
        }
    }

    fn order_message(&mut self, o: &OrderView, now: i64) -> Outgoing {
        let id = self.next_message_id();
        Outgoing::Private {
            topic: "order",
            text: private_message(id, "order", now, vec![order_json(o)]),
        }
    }

    fn execution_message(&mut self, e: &ExecutionView, now: i64) -> Outgoing {
        self.executions.push(e.clone());
        let id = self.next_message_id();
        Outgoing::Private {
            topic: "execution",
            text: private_message(id, "execution", now, vec![execution_json(e)]),
        }
    }

    /// The position's stop as the `order` topic shows it; `at` is its symbol and index.
    fn stop_order_view(
        (symbol, idx): (&str, u8),
        p: &Position,
        s: &Stop,
        status: &'static str,
        fill: Option<Decimal>,
        now: i64,
    ) -> OrderView {
        OrderView {
            symbol: symbol.to_string(),
            order_id: s.order_id.clone(),
            order_link_id: String::new(),
            side: closing_side(p.side),
            status,
            stop_order_type: "StopLoss",
            trigger_price: Some(s.price),
            trigger_by: s.trigger_by.clone(),
            qty: p.size,
            avg_price: fill,
            cum_exec_qty: if fill.is_some() {
                p.size
            } else {
                Decimal::ZERO
            },
            position_idx: idx,
            reduce_only: true,
            created_ms: s.created_ms,
            updated_ms: now,
        }
    }

    /// A spurious `position` message: the position as it is, unchanged (Bybit sends one on
    /// every create/amend/cancel, "regardless if there's any actual change").
    pub fn spurious_position(&mut self, symbol: &str, idx: u8, local_ms: i64) -> Vec<Outgoing> {
        let now = self.market_ts(self.server_time(local_ms));
        let m = self.position_message(symbol, idx, now);
        self.stream_faults.publish(vec![m])
    }

    /// Opens (or adds to) a `side` position of `qty` at the symbol's mark price, at `ts`.
    pub fn open_position(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        ts: i64,
    ) -> Result<Vec<Outgoing>, String> {
        let price = self
            .mark(symbol)
            .ok_or_else(|| format!("{symbol}: no price yet to open a position at"))?;
        self.fill_open(symbol, side, qty, price, ts, "")
    }

    /// Closes the whole position at `symbol` + `idx` at the mark price, at `ts`: a reduce-only
    /// market order of another client (a close by hand). Its stop goes with it.
    pub fn close_position(
        &mut self,
        symbol: &str,
        idx: u8,
        ts: i64,
    ) -> Result<Vec<Outgoing>, String> {
        let key = (symbol.to_string(), idx);
        let p = self
            .positions
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("{symbol} positionIdx {idx}: no open position"))?;
        let price = self
            .mark(symbol)
            .ok_or_else(|| format!("{symbol}: no price yet to close at"))?;
        self.order_seq += 1;
        let order = OrderView {
            symbol: symbol.to_string(),
            order_id: format!("fake-order-{}", self.order_seq),
            order_link_id: String::new(),
            side: closing_side(p.side),
            status: "Filled",
            stop_order_type: "",
            trigger_price: None,
            trigger_by: String::new(),
            qty: p.size,
            avg_price: Some(price),
            cum_exec_qty: p.size,
            position_idx: idx,
            reduce_only: true,
            created_ms: ts,
            updated_ms: ts,
        };
        let out = self.fill_close(&key, p.size, price, ts, order, "");
        Ok(self.stream_faults.publish(out))
    }

    /// Opens (or adds to) a position at a given price and time (an entry with its own price).
    pub fn open_position_at(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        ts: i64,
    ) -> Result<Vec<Outgoing>, String> {
        if price <= Decimal::ZERO {
            return Err(format!("{symbol}: price {price} must be > 0"));
        }
        self.fill_open(symbol, side, qty, price, ts, "")
    }

    fn fill_open(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        ts: i64,
        link_id: &str,
    ) -> Result<Vec<Outgoing>, String> {
        if self.instrument(symbol).is_none() {
            return Err(format!("{symbol}: not an instrument of this venue"));
        }
        if qty <= Decimal::ZERO {
            return Err(format!("{symbol}: quantity {qty} must be > 0"));
        }
        let idx = self.idx_of(side);
        let key = (symbol.to_string(), idx);
        match self.positions.get_mut(&key) {
            Some(p) if p.side != side => {
                return Err(format!(
                    "{symbol}: one-way mode holds one position per symbol, and a {} is open",
                    p.side.as_str()
                ));
            }
            Some(p) => {
                let total = p.size + qty;
                p.avg_price = (p.avg_price * p.size + price * qty) / total;
                p.size = total;
                p.updated_ms = ts;
            }
            None => {
                self.positions.insert(
                    key,
                    Position {
                        side,
                        size: qty,
                        avg_price: price,
                        stop: None,
                        created_ms: ts,
                        updated_ms: ts,
                    },
                );
            }
        }
        self.order_seq += 1;
        let order_id = format!("fake-order-{}", self.order_seq);
        let order = OrderView {
            symbol: symbol.to_string(),
            order_id: order_id.clone(),
            order_link_id: link_id.to_string(),
            side: side_text(side),
            status: "Filled",
            stop_order_type: "",
            trigger_price: None,
            trigger_by: String::new(),
            qty,
            avg_price: Some(price),
            cum_exec_qty: qty,
            position_idx: idx,
            reduce_only: false,
            created_ms: ts,
            updated_ms: ts,
        };
        let exec = ExecutionView {
            symbol: symbol.to_string(),
            exec_id: format!("fake-exec-{}", self.order_seq),
            order_id,
            order_link_id: link_id.to_string(),
            side: side_text(side),
            price,
            qty,
            closed_size: Decimal::ZERO,
            stop_order_type: "",
            mark_price: price,
            time_ms: ts,
            seq: self.order_seq,
        };
        let out = vec![
            self.order_message(&order, ts),
            self.execution_message(&exec, ts),
            self.position_message(symbol, idx, ts),
        ];
        Ok(self.stream_faults.publish(out))
    }

    /// Closes `qty` (at most the size) of the position at `price`, by `order_id`: the stop's
    /// fill or a reduce-only market order. A closed position's stop goes with it.
    fn fill_close(
        &mut self,
        key: &(String, u8),
        qty: Decimal,
        price: Decimal,
        ts: i64,
        order: OrderView,
        stop_order_type: &'static str,
    ) -> Vec<Outgoing> {
        let (symbol, idx) = (key.0.clone(), key.1);
        let Some(p) = self.positions.get_mut(key) else {
            return Vec::new();
        };
        let closed = qty.min(p.size);
        p.size -= closed;
        p.updated_ms = ts;
        let side = p.side;
        let emptied = p.size.is_zero();
        let leftover_stop = if emptied {
            let p = self.positions.remove(key).expect("the position is there");
            // The stop that triggered is the fill itself; any other stop is cancelled with
            // the position ("The system will cancel these orders if the position is closed").
            p.stop
                .clone()
                .filter(|s| s.order_id != order.order_id)
                .map(|s| (p, s))
        } else {
            None
        };
        self.order_seq += 1;
        let exec = ExecutionView {
            symbol: symbol.clone(),
            exec_id: format!("fake-exec-{}", self.order_seq),
            order_id: order.order_id.clone(),
            order_link_id: order.order_link_id.clone(),
            side: closing_side(side),
            price,
            qty: closed,
            closed_size: closed,
            stop_order_type,
            mark_price: self.mark(&symbol).unwrap_or(price),
            time_ms: ts,
            seq: self.order_seq,
        };
        let mut out = vec![
            self.order_message(&order, ts),
            self.execution_message(&exec, ts),
        ];
        if let Some((p, s)) = leftover_stop {
            let v = Self::stop_order_view((&symbol, idx), &p, &s, "Deactivated", None, ts);
            out.push(self.order_message(&v, ts));
        }
        out.push(self.position_message(&symbol, idx, ts));
        out
    }

    /// A replayed price point of `symbol` at data time `ts`: the new mark (and last) price,
    /// a ticker message, and every stop it crosses triggers. `gap`: the point was not
    /// reached continuously (a candle's open, a trade tick), so a crossed stop fills at the
    /// point's price instead of at the stop.
    pub fn on_price(&mut self, symbol: &str, price: Decimal, gap: bool, ts: i64) -> Vec<Outgoing> {
        let first = !self.marks.contains_key(symbol);
        self.marks.insert(symbol.to_string(), Mark { price, ts });
        self.ticker_seq += 1;
        let mut out = vec![Outgoing::Public {
            symbol: symbol.to_string(),
            text: wire::ticker_message(symbol, first, price, self.ticker_seq, ts),
        }];
        let crossed: Vec<(String, u8)> = self
            .positions
            .iter()
            .filter(|((s, _), p)| {
                s == symbol
                    && p.stop.as_ref().is_some_and(|st| match p.side {
                        Side::Long => price <= st.price,
                        Side::Short => price >= st.price,
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut private = Vec::new();
        for key in crossed {
            let p = self.positions[&key].clone();
            let stop = p.stop.clone().expect("a crossed position has a stop");
            let fill = if gap { price } else { stop.price };
            let order = Self::stop_order_view((&key.0, key.1), &p, &stop, "Filled", Some(fill), ts);
            private.extend(self.fill_close(&key, p.size, fill, ts, order, "StopLoss"));
        }
        out.extend(self.stream_faults.publish(private));
        out
    }

    /// The snapshot a new `tickers.<symbol>` subscriber gets first.
    pub fn ticker_snapshot(&self, symbol: &str) -> Option<String> {
        let m = self.marks.get(symbol)?;
        Some(wire::ticker_message(
            symbol,
            true,
            m.price,
            self.ticker_seq,
            m.ts,
        ))
    }

    /// Checks a private stream's `auth` op: `[api_key, expires, hex(HMAC(secret,
    /// "GET/realtime" + expires))]`, `expires` in the future.
    pub fn check_ws_auth(&self, args: &[Value], local_ms: i64) -> Result<(), (i64, String)> {
        let (Some(key), Some(expires), Some(sig)) = (
            args.first().and_then(Value::as_str),
            args.get(1).and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
            args.get(2).and_then(Value::as_str),
        ) else {
            return Err((
                ret::PARAMS,
                "auth args: [api_key, expires, signature]".into(),
            ));
        };
        if key != self.setup.api_key {
            return Err((ret::API_KEY, "Invalid apikey".into()));
        }
        if expires <= self.server_time(local_ms) {
            return Err((
                ret::TIMESTAMP,
                "Params Error: expires is in the past".into(),
            ));
        }
        let want = hmac_sha256_hex(
            self.setup.api_secret.as_bytes(),
            format!("GET/realtime{expires}").as_bytes(),
        );
        if sig != want {
            return Err((ret::SIGN, "Invalid sign".into()));
        }
        Ok(())
    }

    /// Checks a signed REST request's headers (`EXCHANGES.md` §2.2): the key, the time window
    /// `server - recv_window <= timestamp < server + 1000`, and the HMAC over
    /// `timestamp + key + recv_window + (query | body)`.
    fn check_signature(&self, req: &HttpRequest, server_ms: i64) -> Result<(), HttpReply> {
        let err = |code, msg: String| HttpReply::error(code, &msg, server_ms);
        let key = req.header("x-bapi-api-key").unwrap_or_default();
        if key.is_empty() || key != self.setup.api_key {
            return Err(err(ret::API_KEY, "API key is invalid.".into()));
        }
        let ts_text = req.header("x-bapi-timestamp").unwrap_or_default();
        let recv_text = req.header("x-bapi-recv-window").unwrap_or("5000");
        let (Ok(ts), Ok(recv)) = (ts_text.parse::<i64>(), recv_text.parse::<i64>()) else {
            return Err(err(
                ret::PARAMS,
                format!(
                    "invalid X-BAPI-TIMESTAMP \"{ts_text}\" or X-BAPI-RECV-WINDOW \"{recv_text}\""
                ),
            ));
        };
        if !(server_ms - recv <= ts && ts < server_ms + 1000) {
            return Err(err(
                ret::TIMESTAMP,
                format!(
                    "invalid request, please check your server timestamp or recv_window param. req_timestamp[{ts}],server_timestamp[{server_ms}],recv_window[{recv}]"
                ),
            ));
        }
        let payload = if req.method == "GET" {
            &req.query
        } else {
            &req.body
        };
        let want = hmac_sha256_hex(
            self.setup.api_secret.as_bytes(),
            format!("{ts_text}{key}{recv_text}{payload}").as_bytes(),
        );
        // Bybit echoes the string it signed; the fake does not (it would hold the key).
        if req.header("x-bapi-sign") != Some(want.as_str()) {
            return Err(err(ret::SIGN, "error sign!".into()));
        }
        Ok(())
    }

    /// Bybit's per-UID, per-endpoint, rolling-second limit on order calls, with its
    /// `X-Bapi-*` headers.
    fn rate_gate(&mut self, path: &str, server_ms: i64) -> (bool, [(String, String); 3]) {
        let calls = self.order_calls.entry(path.to_string()).or_default();
        while calls.front().is_some_and(|t| *t <= server_ms - 1000) {
            calls.pop_front();
        }
        let limit = self.setup.orders_per_second;
        let allowed = calls.len() < limit;
        if allowed {
            calls.push_back(server_ms);
        } else {
            self.rate_limited += 1;
        }
        let reset = calls.front().map_or(server_ms, |t| t + 1000);
        let headers = [
            ("X-Bapi-Limit".to_string(), limit.to_string()),
            (
                "X-Bapi-Limit-Status".to_string(),
                limit.saturating_sub(calls.len()).to_string(),
            ),
            (
                "X-Bapi-Limit-Reset-Timestamp".to_string(),
                reset.to_string(),
            ),
        ];
        (allowed, headers)
    }

    /// Answers one REST request at local time `local_ms` (faults are the server's business:
    /// it calls this to apply a request, or not).
    pub fn handle(&mut self, req: &HttpRequest, local_ms: i64) -> (HttpReply, Vec<Outgoing>) {
        let now = self.server_time(local_ms);
        let signed = !matches!(
            req.path.as_str(),
            "/v5/market/time" | "/v5/market/instruments-info"
        );
        if signed && let Err(reply) = self.check_signature(req, now) {
            return (reply, Vec::new());
        }
        let method_ok = match req.path.as_str() {
            "/v5/position/trading-stop" | "/v5/order/create" => req.method == "POST",
            _ => req.method == "GET",
        };
        if !method_ok {
            return (HttpReply::status(404, "Not Found"), Vec::new());
        }
        let is_order = matches!(
            req.path.as_str(),
            "/v5/position/trading-stop" | "/v5/order/create"
        );
        let rate_headers = if is_order {
            let (allowed, headers) = self.rate_gate(&req.path, now);
            if !allowed {
                let mut reply = HttpReply::error(ret::RATE_LIMIT, "Too many visits!", now);
                reply.headers.extend(headers);
                return (reply, Vec::new());
            }
            Some(headers)
        } else {
            None
        };
        let (mut reply, out) = match req.path.as_str() {
            "/v5/market/time" => (self.server_time_reply(now), Vec::new()),
            "/v5/market/instruments-info" => (self.instruments_reply(req, now), Vec::new()),
            "/v5/position/list" => (self.position_list(req, now), Vec::new()),
            "/v5/position/trading-stop" => self.trading_stop(req, now),
            "/v5/order/create" => self.order_create(req, now),
            "/v5/execution/list" => (self.execution_list(req, now), Vec::new()),
            _ => (HttpReply::status(404, "Not Found"), Vec::new()),
        };
        if let Some(headers) = rate_headers {
            reply.headers.extend(headers);
        }
        (reply, out)
    }

    fn server_time_reply(&self, now: i64) -> HttpReply {
        HttpReply::ok(
            json!({
                "timeSecond": (now.div_euclid(1000)).to_string(),
                "timeNano": (now as i128 * 1_000_000).to_string(),
            }),
            now,
        )
    }

    fn instruments_reply(&self, req: &HttpRequest, now: i64) -> HttpReply {
        if req.param("category").as_deref() != Some("linear") {
            return HttpReply::error(ret::PARAMS, "category only support linear", now);
        }
        let symbol = req.param("symbol");
        let list: Vec<Value> = self
            .setup
            .instruments
            .iter()
            .filter(|i| symbol.as_ref().is_none_or(|s| *s == i.symbol))
            .map(|i| {
                json!({
                    "symbol": i.symbol,
                    "contractType": "LinearPerpetual",
                    "status": "Trading",
                    "settleCoin": "USDT",
                    "priceScale": i.tick_size.normalize().scale().to_string(),
                    "priceFilter": {"minPrice": text(i.tick_size), "maxPrice": "1000000", "tickSize": text(i.tick_size)},
                    "lotSizeFilter": {"maxOrderQty": "1000", "minOrderQty": text(i.min_order_qty), "qtyStep": text(i.qty_step)},
                })
            })
            .collect();
        HttpReply::ok(
            json!({"category": "linear", "list": list, "nextPageCursor": ""}),
            now,
        )
    }

    fn position_list(&self, req: &HttpRequest, now: i64) -> HttpReply {
        if req.param("category").as_deref() != Some("linear") {
            return HttpReply::error(ret::PARAMS, "category only support linear", now);
        }
        let list: Vec<Value> = match (req.param("symbol"), req.param("settleCoin")) {
            (Some(symbol), _) => {
                if self.instrument(&symbol).is_none() {
                    return HttpReply::error(ret::PARAMS, "symbol invalid", now);
                }
                let idxs: &[u8] = if self.setup.hedge { &[1, 2] } else { &[0] };
                idxs.iter()
                    .map(|&i| {
                        let p = self.positions.get(&(symbol.clone(), i));
                        position_json(&self.view(&symbol, i, p, now))
                    })
                    .collect()
            }
            (None, Some(_)) => self
                .positions
                .iter()
                .map(|((s, i), p)| position_json(&self.view(s, *i, Some(p), now)))
                .collect(),
            (None, None) => {
                return HttpReply::error(
                    ret::PARAMS,
                    "Missing some parameters that must be filled in, symbol or settleCoin",
                    now,
                );
            }
        };
        HttpReply::ok(
            json!({"category": "linear", "list": list, "nextPageCursor": ""}),
            now,
        )
    }

    /// `GET /v5/execution/list`: a symbol's fills from `startTime` on, newest first, at most
    /// `limit` (one page: the fake keeps few).
    fn execution_list(&self, req: &HttpRequest, now: i64) -> HttpReply {
        if req.param("category").as_deref() != Some("linear") {
            return HttpReply::error(ret::PARAMS, "category only support linear", now);
        }
        let symbol = req.param("symbol");
        let start = req.param("startTime").and_then(|s| s.parse::<i64>().ok());
        let limit = req
            .param("limit")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(50)
            .clamp(1, 100);
        let list: Vec<Value> = self
            .executions
            .iter()
            .rev()
            .filter(|e| symbol.as_ref().is_none_or(|s| *s == e.symbol))
            .filter(|e| start.is_none_or(|t| e.time_ms >= t))
            .take(limit)
            .map(execution_json)
            .collect();
        HttpReply::ok(
            json!({"category": "linear", "list": list, "nextPageCursor": ""}),
            now,
        )
    }

    /// `POST /v5/position/trading-stop` in Full mode: sets, moves or (`"0"`) removes the
    /// position's stop loss.
    fn trading_stop(&mut self, req: &HttpRequest, now: i64) -> (HttpReply, Vec<Outgoing>) {
        let err = |code, msg: &str| (HttpReply::error(code, msg, now), Vec::new());
        let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
            return err(ret::PARAMS, "request body is not JSON");
        };
        let field = |k: &str| body.get(k).and_then(Value::as_str);
        if field("category") != Some("linear") {
            return err(ret::PARAMS, "category only support linear");
        }
        match field("tpslMode") {
            Some("Full") => {}
            Some("Partial") => {
                return err(ret::PARAMS, "the fake venue supports tpslMode Full only");
            }
            _ => {
                return err(
                    ret::PARAMS,
                    "slOrderType can not have a value when tpSlMode is empty",
                );
            }
        }
        let Some(symbol) = field("symbol").map(str::to_string) else {
            return err(ret::PARAMS, "symbol invalid");
        };
        let Some(tick) = self.instrument(&symbol).map(|i| i.tick_size) else {
            return err(ret::PARAMS, "symbol invalid");
        };
        let Some(idx) = body.get("positionIdx").and_then(Value::as_u64) else {
            return err(ret::PARAMS, "position idx not match position mode");
        };
        let idx_ok = if self.setup.hedge {
            idx == 1 || idx == 2
        } else {
            idx == 0
        };
        if !idx_ok {
            return err(ret::PARAMS, "position idx not match position mode");
        }
        let idx = idx as u8;
        if field("slOrderType").is_some_and(|t| t != "Market") {
            return err(ret::PARAMS, "Full mode supports slOrderType Market only");
        }
        let trigger_by = field("slTriggerBy").unwrap_or("LastPrice").to_string();
        if !matches!(
            trigger_by.as_str(),
            "MarkPrice" | "LastPrice" | "IndexPrice"
        ) {
            return err(ret::PARAMS, "slTriggerBy invalid");
        }
        let Some(stop_text) = field("stopLoss") else {
            return err(
                ret::NOT_MODIFIED,
                "Not modified. Indicates you already set this TP/SL value or you didn't pass a required parameter",
            );
        };
        let Ok(stop) = Decimal::from_str(stop_text) else {
            return err(ret::PARAMS, "stopLoss invalid");
        };
        let key = (symbol.clone(), idx);
        let Some(p) = self.positions.get(&key).cloned() else {
            return err(ret::PARAMS, "can not set tp/sl/ts for zero position");
        };
        let current = p.stop.as_ref().map(|s| s.price);
        if stop.is_zero() {
            // "0 means cancel SL".
            let Some(s) = p.stop.clone() else {
                return err(
                    ret::NOT_MODIFIED,
                    "Not modified. Indicates you already set this TP/SL value or you didn't pass a required parameter",
                );
            };
            self.positions.get_mut(&key).expect("present").stop = None;
            let ts = self.market_ts(now);
            let v = Self::stop_order_view((&symbol, idx), &p, &s, "Deactivated", None, ts);
            let out = vec![
                self.order_message(&v, ts),
                self.position_message(&symbol, idx, ts),
            ];
            return (
                HttpReply::ok(json!({}), now),
                self.stream_faults.publish(out),
            );
        }
        if stop < Decimal::ZERO || !(stop / tick).fract().is_zero() {
            return err(
                ret::PARAMS,
                &format!("stopLoss {stop_text} is not a multiple of the tick size {tick}"),
            );
        }
        if current == Some(stop) && p.stop.as_ref().is_some_and(|s| s.trigger_by == trigger_by) {
            return err(
                ret::NOT_MODIFIED,
                "Not modified. Indicates you already set this TP/SL value or you didn't pass a required parameter",
            );
        }
        if let Some(base) = self.mark(&symbol) {
            let wrong = match p.side {
                Side::Long => stop >= base,
                Side::Short => stop <= base,
            };
            if wrong {
                return err(
                    ret::PARAMS,
                    &self.base_price_message(p.side, stop, base, &trigger_by),
                );
            }
        }
        let ts = self.market_ts(now);
        let order_id = match &p.stop {
            Some(s) => s.order_id.clone(),
            None => {
                self.order_seq += 1;
                format!("fake-sl-{}", self.order_seq)
            }
        };
        let created_ms = p.stop.as_ref().map_or(ts, |s| s.created_ms);
        let new_stop = Stop {
            price: stop,
            trigger_by,
            order_id,
            created_ms,
        };
        let pos = self.positions.get_mut(&key).expect("present");
        pos.stop = Some(new_stop.clone());
        pos.updated_ms = ts;
        let pos = pos.clone();
        let v = Self::stop_order_view((&symbol, idx), &pos, &new_stop, "Untriggered", None, ts);
        let out = vec![
            self.order_message(&v, ts),
            self.position_message(&symbol, idx, ts),
        ];
        (
            HttpReply::ok(json!({}), now),
            self.stream_faults.publish(out),
        )
    }

    /// The `10001` text of a stop on the wrong side of the trigger price (ccxt #19089).
    pub fn base_price_message(&self, side: Side, stop: Decimal, base: Decimal, by: &str) -> String {
        let (pos, rel) = match side {
            Side::Long => ("Buy", "lower"),
            Side::Short => ("Sell", "greater"),
        };
        format!(
            "sl:{} set for {pos} position should {rel} base_price:{}??{by}",
            scaled(stop),
            scaled(base)
        )
    }

    /// `POST /v5/order/create`, market orders only: reduce-only closes (part of) a position;
    /// otherwise the order opens or adds to one.
    fn order_create(&mut self, req: &HttpRequest, now: i64) -> (HttpReply, Vec<Outgoing>) {
        let err = |code, msg: &str| (HttpReply::error(code, msg, now), Vec::new());
        let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
            return err(ret::PARAMS, "request body is not JSON");
        };
        let field = |k: &str| body.get(k).and_then(Value::as_str);
        if field("category") != Some("linear") {
            return err(ret::PARAMS, "category only support linear");
        }
        let Some(symbol) = field("symbol").map(str::to_string) else {
            return err(ret::PARAMS, "symbol invalid");
        };
        if self.instrument(&symbol).is_none() {
            return err(ret::PARAMS, "symbol invalid");
        }
        if field("orderType") != Some("Market") {
            return err(ret::PARAMS, "the fake venue takes market orders only");
        }
        let order_side = match field("side") {
            Some("Buy") => Side::Long,
            Some("Sell") => Side::Short,
            _ => return err(ret::PARAMS, "side invalid"),
        };
        let Some(qty) = field("qty").and_then(|q| Decimal::from_str(q).ok()) else {
            return err(ret::PARAMS, "qty invalid");
        };
        if qty <= Decimal::ZERO {
            return err(ret::PARAMS, "qty invalid");
        }
        let link_id = field("orderLinkId").unwrap_or_default().to_string();
        if !link_id.is_empty() && self.link_ids.contains(&link_id) {
            return err(ret::DUPLICATE_LINK_ID, "OrderLinkedID is duplicate");
        }
        let Some(price) = self.mark(&symbol) else {
            return err(ret::PARAMS, "no market price yet");
        };
        let reduce_only = body.get("reduceOnly").and_then(Value::as_bool) == Some(true);
        let idx = body.get("positionIdx").and_then(Value::as_u64).unwrap_or(0) as u8;
        let ts = self.market_ts(now);
        if !link_id.is_empty() {
            self.link_ids.push(link_id.clone());
        }
        if !reduce_only {
            return match self.fill_open(&symbol, order_side, qty, price, ts, &link_id) {
                Ok(out) => {
                    let id = format!("fake-order-{}", self.order_seq);
                    (
                        HttpReply::ok(json!({"orderId": id, "orderLinkId": link_id}), now),
                        out,
                    )
                }
                Err(e) => err(ret::PARAMS, &e),
            };
        }
        // Reduce-only: the position on the other side of the order.
        let key = (symbol.clone(), idx);
        let closable = self
            .positions
            .get(&key)
            .filter(|p| p.side != order_side)
            .cloned();
        let Some(p) = closable else {
            self.link_ids.retain(|l| *l != link_id);
            return err(
                ret::REDUCE_ONLY_ZERO,
                "current position is zero, cannot fix reduce-only order qty",
            );
        };
        self.order_seq += 1;
        let order_id = format!("fake-order-{}", self.order_seq);
        let closed = qty.min(p.size);
        let order = OrderView {
            symbol: symbol.clone(),
            order_id: order_id.clone(),
            order_link_id: link_id.clone(),
            side: side_text(order_side),
            status: "Filled",
            stop_order_type: "",
            trigger_price: None,
            trigger_by: String::new(),
            qty: closed,
            avg_price: Some(price),
            cum_exec_qty: closed,
            position_idx: idx,
            reduce_only: true,
            created_ms: ts,
            updated_ms: ts,
        };
        let out = self.fill_close(&key, closed, price, ts, order, "");
        (
            HttpReply::ok(json!({"orderId": order_id, "orderLinkId": link_id}), now),
            self.stream_faults.publish(out),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn model() -> Model {
        Model::new(Setup::new(
            "key",
            "secret",
            vec![InstrumentSpec::new("BTCUSDT", dec!(0.5))],
        ))
    }

    fn signed(method: &str, path: &str, payload: &str, ts: i64) -> HttpRequest {
        let sign = hmac_sha256_hex(b"secret", format!("{ts}key5000{payload}").as_bytes());
        let (query, body) = if method == "GET" {
            (payload.to_string(), String::new())
        } else {
            (String::new(), payload.to_string())
        };
        HttpRequest {
            method: method.into(),
            path: path.into(),
            query,
            headers: vec![
                ("x-bapi-api-key".into(), "key".into()),
                ("x-bapi-timestamp".into(), ts.to_string()),
                ("x-bapi-recv-window".into(), "5000".into()),
                ("x-bapi-sign".into(), sign),
            ],
            body,
        }
    }

    fn code(reply: &HttpReply) -> (i64, String) {
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        (
            v["retCode"].as_i64().unwrap(),
            v["retMsg"].as_str().unwrap().to_string(),
        )
    }

    fn stop_body(stop: &str) -> String {
        format!(
            r#"{{"category":"linear","symbol":"BTCUSDT","tpslMode":"Full","positionIdx":0,"stopLoss":"{stop}","slTriggerBy":"MarkPrice","slOrderType":"Market"}}"#
        )
    }

    #[test]
    fn signature_and_time_window() {
        let mut m = model();
        let now = 1_000_000;
        let ok = signed(
            "GET",
            "/v5/position/list",
            "category=linear&symbol=BTCUSDT",
            now,
        );
        assert_eq!(code(&m.handle(&ok, now).0).0, 0);
        let mut bad = ok.clone();
        bad.query.push_str("&x=1");
        assert_eq!(code(&m.handle(&bad, now).0), (10004, "error sign!".into()));
        let mut no_key = ok.clone();
        no_key.headers.retain(|(n, _)| n != "x-bapi-api-key");
        assert_eq!(code(&m.handle(&no_key, now).0).0, 10003);
        // The window: [server - recv, server + 1000).
        let early = signed(
            "GET",
            "/v5/position/list",
            "category=linear&symbol=BTCUSDT",
            now - 5000,
        );
        assert_eq!(code(&m.handle(&early, now).0).0, 0);
        let late = signed(
            "GET",
            "/v5/position/list",
            "category=linear&symbol=BTCUSDT",
            now - 5001,
        );
        let (c, msg) = code(&m.handle(&late, now).0);
        assert_eq!(c, 10002);
        assert!(msg.contains("server_timestamp[1000000]"), "{msg}");
        let ahead = signed(
            "GET",
            "/v5/position/list",
            "category=linear&symbol=BTCUSDT",
            now + 1000,
        );
        assert_eq!(code(&m.handle(&ahead, now).0).0, 10002);
        // A server 2 s behind sees the request from its future; 2 s ahead is inside the window.
        m.clock_offset_ms = -2000;
        assert_eq!(code(&m.handle(&ok, now).0).0, 10002);
        m.clock_offset_ms = 2000;
        assert_eq!(code(&m.handle(&ok, now).0).0, 0);
        // Public endpoints need no signature.
        let time = HttpRequest {
            method: "GET".into(),
            path: "/v5/market/time".into(),
            query: String::new(),
            headers: vec![],
            body: String::new(),
        };
        let v: Value = serde_json::from_str(&m.handle(&time, now).0.body).unwrap();
        assert_eq!(v["result"]["timeNano"], "1002000000000");
        assert_eq!(v["time"], 1_002_000);
    }

    #[test]
    fn trading_stop_sets_moves_refuses_and_triggers() {
        let mut m = model();
        let now = 5_000_000;
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), 100)
            .unwrap();
        let set = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("16900"),
            now,
        );
        let (r, out) = m.handle(&set, now);
        assert_eq!(code(&r).0, 0);
        assert_eq!(out.len(), 2, "order + position messages");
        assert_eq!(m.position("BTCUSDT", 0).stop_loss, Some(dec!(16900)));
        // The same value again: 34040.
        assert_eq!(code(&m.handle(&set, now).0).0, 34040);
        // Off the tick grid.
        let off = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("16900.2"),
            now,
        );
        assert_eq!(code(&m.handle(&off, now).0).0, 10001);
        // At or above the mark for a long: the base_price refusal.
        let wrong = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("17000"),
            now,
        );
        let (c, msg) = code(&m.handle(&wrong, now).0);
        assert_eq!(c, 10001);
        assert_eq!(
            msg,
            "sl:170000000 set for Buy position should lower base_price:170000000??MarkPrice"
        );
        assert_eq!(m.position("BTCUSDT", 0).stop_loss, Some(dec!(16900)));
        // Moved in place: the same stop order.
        let amend = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("16950"),
            now,
        );
        assert_eq!(code(&m.handle(&amend, now).0).0, 0);
        assert_eq!(m.position("BTCUSDT", 0).stop_loss, Some(dec!(16950)));
        // A continuous point through the stop fills at the stop; the position is gone.
        let out = m.on_price("BTCUSDT", dec!(16940), false, 200);
        let topics: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Outgoing::Public { .. } => "ticker",
                Outgoing::Private { topic, .. } => topic,
            })
            .collect();
        assert_eq!(topics, ["ticker", "order", "execution", "position"]);
        let Outgoing::Private { text, .. } = &out[2] else {
            panic!()
        };
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["data"][0]["execPrice"], "16950");
        assert_eq!(v["data"][0]["stopOrderType"], "StopLoss");
        assert_eq!(v["creationTime"], 200);
        assert_eq!(m.position("BTCUSDT", 0).side, None);
        assert_eq!(code(&m.handle(&amend, now).0).0, 10001, "zero position");
    }

    #[test]
    fn a_gap_through_the_stop_fills_at_the_point_and_reduce_only_closes() {
        let mut m = model();
        let now = 5_000_000;
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Short, dec!(2), 100)
            .unwrap();
        let set = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("17100"),
            now,
        );
        assert_eq!(code(&m.handle(&set, now).0).0, 0);
        let out = m.on_price("BTCUSDT", dec!(17200), true, 300);
        let Outgoing::Private { text, .. } = &out[2] else {
            panic!()
        };
        assert!(text.contains(r#""execPrice":"17200""#), "{text}");

        m.open_position("BTCUSDT", Side::Long, dec!(1), 400)
            .unwrap();
        let close = r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"1","positionIdx":0,"reduceOnly":true,"orderLinkId":"ts-1-c0"}"#;
        let req = signed("POST", "/v5/order/create", close, now);
        let (r, out) = m.handle(&req, now);
        assert_eq!(code(&r).0, 0);
        assert_eq!(out.len(), 3);
        assert_eq!(m.position("BTCUSDT", 0).side, None);
        // The same link id again is refused; nothing left to reduce is 110017.
        assert_eq!(code(&m.handle(&req, now).0).0, 110072);
        let again = close.replace("ts-1-c0", "ts-1-c1");
        let req = signed("POST", "/v5/order/create", &again, now);
        assert_eq!(code(&m.handle(&req, now).0).0, 110017);
    }

    /// A close by hand takes the whole position at the mark, and its stop with it: the order,
    /// its execution, the stop deactivated and the flat position are on the stream; a second
    /// close finds nothing.
    #[test]
    fn a_close_by_hand_flattens_the_position_and_its_stop() {
        let mut m = model();
        let now = 5_000_000;
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Long, dec!(2), 100)
            .unwrap();
        let set = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("16900"),
            now,
        );
        assert_eq!(code(&m.handle(&set, now).0).0, 0);
        m.on_price("BTCUSDT", dec!(17050), false, 200);
        let out = m.close_position("BTCUSDT", 0, 300).unwrap();
        assert_eq!(out.len(), 4);
        let texts: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Outgoing::Private { text, .. } | Outgoing::Public { text, .. } => text.as_str(),
            })
            .collect();
        assert!(texts[1].contains(r#""execPrice":"17050""#), "{}", texts[1]);
        assert!(texts[2].contains("Deactivated"), "{}", texts[2]);
        assert!(texts[3].contains(r#""size":"0""#), "{}", texts[3]);
        assert_eq!(m.position("BTCUSDT", 0).side, None);
        assert_eq!(m.position("BTCUSDT", 0).stop_loss, None);
        assert!(m.close_position("BTCUSDT", 0, 400).is_err());
    }

    #[test]
    fn hedge_mode_keys_positions_by_side_and_market_orders_open_them() {
        let mut setup = Setup::new(
            "key",
            "secret",
            vec![InstrumentSpec::new("BTCUSDT", dec!(0.5))],
        );
        setup.hedge = true;
        let mut m = Model::new(setup);
        let now = 5_000_000;
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        // A plain market buy opens the Buy side (positionIdx 1) at the mark.
        let buy = r#"{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"0.2","positionIdx":1}"#;
        let (r, out) = m.handle(&signed("POST", "/v5/order/create", buy, now), now);
        assert_eq!(code(&r).0, 0);
        assert_eq!(out.len(), 3);
        let p = m.position("BTCUSDT", 1);
        assert_eq!(
            (p.side, p.size, p.avg_price),
            (Some(Side::Long), dec!(0.2), dec!(17000))
        );
        m.open_position("BTCUSDT", Side::Short, dec!(1), 100)
            .unwrap();
        assert_eq!(m.position("BTCUSDT", 2).side, Some(Side::Short));
        // One-way's index is the wrong mode here.
        let one_way = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("16900"),
            now,
        );
        let (c, msg) = code(&m.handle(&one_way, now).0);
        assert_eq!(
            (c, msg.as_str()),
            (10001, "position idx not match position mode")
        );
        let short_stop = stop_body("17100").replace(r#""positionIdx":0"#, r#""positionIdx":2"#);
        let req = signed("POST", "/v5/position/trading-stop", &short_stop, now);
        assert_eq!(code(&m.handle(&req, now).0).0, 0);
        assert_eq!(m.position("BTCUSDT", 2).stop_loss, Some(dec!(17100)));
        assert_eq!(m.position("BTCUSDT", 1).stop_loss, None);
        // The list shows both sides.
        let list = signed(
            "GET",
            "/v5/position/list",
            "category=linear&symbol=BTCUSDT",
            now,
        );
        let v: Value = serde_json::from_str(&m.handle(&list, now).0.body).unwrap();
        assert_eq!(v["result"]["list"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn trading_stop_refuses_what_bybit_refuses() {
        let mut m = model();
        let now = 5_000_000;
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), 100)
            .unwrap();
        for (body, want) in [
            (
                stop_body("16900").replace(r#""tpslMode":"Full","#, ""),
                "slOrderType can not have a value when tpSlMode is empty",
            ),
            (
                stop_body("16900").replace("Full", "Partial"),
                "the fake venue supports tpslMode Full only",
            ),
            (
                stop_body("16900").replace(r#""positionIdx":0,"#, ""),
                "position idx not match position mode",
            ),
            (
                stop_body("16900").replace("MarkPrice", "Mid"),
                "slTriggerBy invalid",
            ),
            (
                stop_body("16900").replace("BTCUSDT", "DOGEUSDT"),
                "symbol invalid",
            ),
            ("{".to_string(), "request body is not JSON"),
        ] {
            let req = signed("POST", "/v5/position/trading-stop", &body, now);
            assert_eq!(
                code(&m.handle(&req, now).0),
                (10001, want.to_string()),
                "{body}"
            );
        }
        assert_eq!(m.position("BTCUSDT", 0).stop_loss, None);
        // A GET to a POST endpoint is not found.
        let get = signed("GET", "/v5/position/trading-stop", "", now);
        assert_eq!(m.handle(&get, now).0.status, 404);
    }

    #[test]
    fn the_full_mode_stop_closes_the_whole_position_after_it_grew() {
        let mut m = model();
        let now = 5_000_000;
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), 100)
            .unwrap();
        let set = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("16900"),
            now,
        );
        assert_eq!(code(&m.handle(&set, now).0).0, 0);
        m.on_price("BTCUSDT", dec!(17100), false, 200);
        m.open_position("BTCUSDT", Side::Long, dec!(1.5), 200)
            .unwrap();
        let out = m.on_price("BTCUSDT", dec!(16800), true, 300);
        let Outgoing::Private { text, .. } = &out[2] else {
            panic!("{out:?}")
        };
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["data"][0]["execQty"], "2");
        // A gap through the stop fills at the point.
        assert_eq!(v["data"][0]["execPrice"], "16800");
        assert_eq!(m.position("BTCUSDT", 0).side, None);
    }

    proptest::proptest! {
        /// Whatever arrives — any method, path, query, headers and body — the venue answers
        /// and never panics.
        #[test]
        fn any_request_gets_an_answer(
            method in proptest::sample::select(vec!["GET", "POST", "PUT"]),
            path in proptest::sample::select(vec![
                "/v5/market/time", "/v5/market/instruments-info", "/v5/position/list",
                "/v5/position/trading-stop", "/v5/order/create", "/v5/nothing",
            ]),
            query in ".{0,40}",
            body in ".{0,120}",
            ts in proptest::option::of(".{0,16}"),
            sign in proptest::bool::ANY,
        ) {
            let mut m = model();
            m.on_price("BTCUSDT", dec!(17000), true, 100);
            m.open_position("BTCUSDT", Side::Long, dec!(0.5), 100).unwrap();
            let now = 5_000_000;
            let mut req = if sign {
                let payload = if method == "GET" { query.clone() } else { body.clone() };
                signed(method, path, &payload, now)
            } else {
                HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    query: query.clone(),
                    headers: vec![],
                    body: body.clone(),
                }
            };
            if let Some(ts) = ts {
                req.headers.push(("x-bapi-timestamp".into(), ts));
            }
            let (reply, _) = m.handle(&req, now);
            proptest::prop_assert!(reply.status == 200 || reply.status == 404);
        }
    }

    #[test]
    fn order_calls_are_rate_limited_per_second() {
        let mut m = model();
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), 100)
            .unwrap();
        let now = 9_000_000;
        for i in 0..10 {
            let req = signed(
                "POST",
                "/v5/position/trading-stop",
                &stop_body(&format!("{}", 16000 + i)),
                now,
            );
            let (r, _) = m.handle(&req, now);
            assert_eq!(code(&r).0, 0, "call {i}");
        }
        let req = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("15000"),
            now + 10,
        );
        let (r, _) = m.handle(&req, now + 10);
        assert_eq!(code(&r).0, 10006);
        let reset = r
            .headers
            .iter()
            .find(|(n, _)| n == "X-Bapi-Limit-Reset-Timestamp")
            .unwrap();
        assert_eq!(reset.1, (now + 1000).to_string());
        let req = signed(
            "POST",
            "/v5/position/trading-stop",
            &stop_body("15000"),
            now + 1000,
        );
        assert_eq!(code(&m.handle(&req, now + 1000).0).0, 0);
        assert_eq!(m.rate_limited, 1);
    }

    /// Each endpoint has its own per-second count: a full `trading-stop` second leaves
    /// `order/create` its own ten.
    #[test]
    fn each_order_endpoint_counts_on_its_own() {
        let mut m = model();
        m.on_price("BTCUSDT", dec!(17000), true, 100);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), 100)
            .unwrap();
        let now = 9_000_000;
        for i in 0..11 {
            let req = signed(
                "POST",
                "/v5/position/trading-stop",
                &stop_body(&format!("{}", 16000 + i)),
                now,
            );
            let want = if i < 10 { 0 } else { 10006 };
            assert_eq!(code(&m.handle(&req, now).0).0, want, "call {i}");
        }
        let req = signed("POST", "/v5/order/create", "{}", now);
        assert_ne!(code(&m.handle(&req, now).0).0, 10006);
    }
}
