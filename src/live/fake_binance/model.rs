//! The fake Binance USD-M exchange, sans I/O: one account's positions and their Algo Order
//! stops, the mark price per symbol, the HMAC and timestamp checks, the REST endpoints, the
//! rate counters (429, then 418 for a client that keeps going), the listenKey, and the
//! user-stream messages each change produces. A server only moves bytes and time; everything
//! a test asserts about Binance's behaviour is decided here.
//!
//! It reads requests on its own terms (the query, with `wire::HttpRequest::param`) and
//! writes Binance's JSON itself: independent of the client's builders and parsers in
//! `live::binance`, so a test of one against the other checks two readings of the protocol.
//!
//! One replayed price is both the mark and the last price of its symbol, so a stop judged by
//! either `workingType` triggers on the same point.

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::faults::{Fault, FaultKind, StreamFaults};
use crate::engine::Side;
use crate::live::bybit::sign::hmac_sha256_hex;
use crate::live::fake_bybit::replay::ReplayVenue;
use crate::live::fake_bybit::wire::{HttpReply, HttpRequest};

/// Binance's error codes as the fake answers them (the fake keeps its own list: it is the
/// venue).
pub mod code {
    pub const UNKNOWN: i64 = -1006;
    pub const TIMEOUT: i64 = -1007;
    pub const TOO_MANY_REQUESTS: i64 = -1003;
    pub const TOO_MANY_ORDERS: i64 = -1015;
    pub const INVALID_TIMESTAMP: i64 = -1021;
    pub const INVALID_SIGNATURE: i64 = -1022;
    pub const MANDATORY_PARAM: i64 = -1102;
    pub const PARAM_NOT_REQUIRED: i64 = -1106;
    pub const BAD_SYMBOL: i64 = -1121;
    pub const INVALID_LISTEN_KEY: i64 = -1125;
    pub const INVALID_PARAM: i64 = -1130;
    pub const CANCEL_REJECTED: i64 = -2011;
    pub const NO_SUCH_ORDER: i64 = -2013;
    pub const REJECTED_MBX_KEY: i64 = -2015;
    pub const WOULD_TRIGGER: i64 = -2021;
    pub const REDUCE_ONLY_REJECT: i64 = -2022;
    pub const PRICE_NOT_BY_TICK: i64 = -4014;
    pub const CLIENT_ID_TOO_LONG: i64 = -4015;
    pub const MAX_STOP_ORDERS: i64 = -4045;
    pub const POSITION_SIDE_NOT_MATCH: i64 = -4061;
    pub const STOP_ORDER_SWITCH_ALGO: i64 = -4120;
    pub const CLOSE_POSITION_EXISTS: i64 = -4130;
    pub const MARKET_ORDER_REJECT: i64 = -4131;
}

/// What the fake trades: a perpetual and its filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentSpec {
    pub symbol: String,
    pub tick_size: Decimal,
    pub step_size: Decimal,
    pub min_qty: Decimal,
}

impl InstrumentSpec {
    pub fn new(symbol: &str, tick_size: Decimal) -> InstrumentSpec {
        InstrumentSpec {
            symbol: symbol.to_string(),
            tick_size,
            step_size: Decimal::new(1, 3),
            min_qty: Decimal::new(1, 3),
        }
    }
}

/// The account the fake serves and its rules.
#[derive(Debug, Clone)]
pub struct Setup {
    pub api_key: String,
    pub api_secret: String,
    pub instruments: Vec<InstrumentSpec>,
    /// Hedge mode (`positionSide` LONG/SHORT) instead of one-way (`BOTH`).
    pub hedge: bool,
    /// The account's `ORDERS` limit per 10 s (Binance: 300).
    pub orders_per_10s: usize,
    /// The IP's `REQUEST_WEIGHT` limit per window (Binance: 2400 per minute).
    pub request_weight_per_min: u32,
    /// The weight's window (Binance: one minute; shorter for tests).
    pub weight_window_ms: i64,
    /// From the first replayed point at or after this data time, another client on the IP
    /// has used up the request weight (see [`Model::exhaust_weight`]).
    pub exhaust_weight_at: Option<i64>,
    /// How long a client that sends during a 429's `Retry-After` is banned (418).
    pub ban_ms: i64,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after_s: i64,
    /// A listenKey lives this long without a keepalive (Binance: 60 minutes).
    pub listen_key_ttl_ms: i64,
    /// One `closePosition` stop per direction (`-4130`; unverified on Binance, so a switch).
    pub one_close_position_per_direction: bool,
    /// The conditional-order limit across symbols (Binance: 200).
    pub max_algo_orders: usize,
    /// A created stop can trigger only from this long after the create, in data time (the
    /// backtester's `update_latency_ms` of its `binance` venue).
    pub update_latency_ms: i64,
    /// A triggered stop's order and a close at market fill in this many executions
    /// (`PARTIALLY_FILLED` … `FILLED`), the size split on the step (1: one execution).
    pub fill_parts: usize,
    /// Each execution after the first fills this many ticks further from the first
    /// (a market order walking the book; 0: all at one price).
    pub fill_slip_ticks: i64,
}

impl Setup {
    pub fn new(api_key: &str, api_secret: &str, instruments: Vec<InstrumentSpec>) -> Setup {
        Setup {
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
            instruments,
            hedge: false,
            orders_per_10s: 300,
            request_weight_per_min: 2400,
            weight_window_ms: 60_000,
            exhaust_weight_at: None,
            ban_ms: 120_000,
            retry_after_s: 1,
            listen_key_ttl_ms: 3_600_000,
            one_close_position_per_direction: true,
            max_algo_orders: 200,
            update_latency_ms: 0,
            fill_parts: 1,
            fill_slip_ticks: 0,
        }
    }
}

/// A message for the streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// On the `/market` host, for the subscribers of `symbol`'s `stream` (`markPrice`,
    /// `aggTrade`).
    Market {
        symbol: String,
        stream: &'static str,
        text: String,
    },
    /// On the `/private` host (the user data stream).
    Private { text: String },
}

#[derive(Debug, Clone)]
struct Position {
    side: Side,
    size: Decimal,
    entry: Decimal,
    /// The data time of its last change (`positionRisk`'s `updateTime`).
    updated_ms: i64,
}

#[derive(Debug, Clone)]
struct AlgoStop {
    algo_id: i64,
    client_algo_id: String,
    symbol: String,
    /// `BUY` or `SELL`.
    side: &'static str,
    position_side: &'static str,
    trigger: Decimal,
    working_type: String,
    status: &'static str,
    created_ms: i64,
    updated_ms: i64,
    trigger_ms: i64,
    /// It cannot trigger on a price stamped before this (data time).
    active_from: i64,
    actual_order_id: Option<i64>,
    avg_price: Option<Decimal>,
    executed_qty: Decimal,
}

/// An order being filled, as its `ORDER_TRADE_UPDATE`s say it.
struct OrderView<'a> {
    symbol: &'a str,
    client_id: &'a str,
    order_id: i64,
    side: &'a str,
    position_side: &'a str,
    original_type: &'a str,
    qty: Decimal,
    reduce_only: bool,
}

/// One execution: `qty` at `price`, `cum` filled with it, at `avg` on average.
#[derive(Debug, Clone)]
struct Execution {
    seq: i64,
    qty: Decimal,
    price: Decimal,
    cum: Decimal,
    avg: Decimal,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    price: Decimal,
    ts: i64,
}

/// The exchange.
#[derive(Debug)]
pub struct Model {
    setup: Setup,
    /// Server clock = the given local time + this (a skewed server for `-1021`).
    pub clock_offset_ms: i64,
    /// Key: symbol and `positionSide` (`BOTH` one-way; `LONG`/`SHORT` hedge).
    positions: BTreeMap<(String, &'static str), Position>,
    marks: BTreeMap<String, Mark>,
    stops: BTreeMap<i64, AlgoStop>,
    next_algo_id: i64,
    next_order_id: i64,
    order_calls: VecDeque<i64>,
    /// Each counted request's server time and weight in the window
    /// (`X-MBX-USED-WEIGHT-1M`).
    weight_calls: VecDeque<(i64, u32)>,
    /// After a 429: until when a further request earns a ban.
    penalty_until: Option<i64>,
    pub banned_until: Option<i64>,
    listen_key: Option<(String, i64)>,
    listen_key_seq: u64,
    trade_seq: u64,
    faults: Vec<Fault>,
    /// The next stop to trigger is rejected at market (`-4131`, PERCENT_PRICE).
    pub reject_next_trigger: bool,
    /// Repeats and reorders of user-stream messages (applied as they are published).
    pub stream_faults: StreamFaults,
    /// Stops accepted with no open position for them to close (Binance may refuse those;
    /// the fake accepts and counts them: a client must never place one).
    pub stops_without_position: usize,
    /// Another client on the IP uses up the weight before the next request.
    exhaust_pending: bool,
    /// The 429s for the request weight, and the bans (418) given, so far.
    pub weight_refusals: usize,
    pub bans: usize,
    /// Every request as received, for request-shape tests.
    pub requests: Vec<HttpRequest>,
}

fn err(status: u16, code_: i64, msg: &str) -> HttpReply {
    HttpReply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"code": code_, "msg": msg}).to_string(),
    }
}

fn ok(body: Value) -> HttpReply {
    HttpReply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

fn dec_text(d: Decimal) -> String {
    d.normalize().to_string()
}

fn closing(side: Side) -> &'static str {
    match side {
        Side::Long => "SELL",
        Side::Short => "BUY",
    }
}

/// A request's weight on the IP's `REQUEST_WEIGHT` limit (Binance's USD-M endpoint pages;
/// orders weigh 0 there, they count on the account's `ORDERS` counters instead).
pub fn request_weight(req: &HttpRequest) -> u32 {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/fapi/v1/algoOrder" | "/fapi/v1/order") => 0,
        ("GET", "/fapi/v2/positionRisk") => 5,
        ("GET", "/fapi/v1/positionSide/dual") => 30,
        ("GET", "/fapi/v1/openAlgoOrders") if req.param("symbol").is_none() => 40,
        _ => 1,
    }
}

impl Model {
    pub fn new(setup: Setup) -> Model {
        Model {
            setup,
            clock_offset_ms: 0,
            positions: BTreeMap::new(),
            marks: BTreeMap::new(),
            stops: BTreeMap::new(),
            next_algo_id: 3_000_001,
            next_order_id: 8_000_001,
            order_calls: VecDeque::new(),
            weight_calls: VecDeque::new(),
            penalty_until: None,
            banned_until: None,
            listen_key: None,
            listen_key_seq: 0,
            trade_seq: 0,
            faults: Vec::new(),
            reject_next_trigger: false,
            stream_faults: StreamFaults::default(),
            stops_without_position: 0,
            exhaust_pending: false,
            weight_refusals: 0,
            bans: 0,
            requests: Vec::new(),
        }
    }

    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    pub fn server_time(&self, local_ms: i64) -> i64 {
        local_ms + self.clock_offset_ms
    }

    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// The first queued fault for `method path`, removed.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| f.matches(method, path))?;
        Some(self.faults.remove(i).kind)
    }

    /// Changes a symbol's tick (`-4014` for prices on the old grid).
    pub fn set_tick(&mut self, symbol: &str, tick: Decimal) {
        if let Some(i) = self
            .setup
            .instruments
            .iter_mut()
            .find(|i| i.symbol == symbol)
        {
            i.tick_size = tick;
        }
    }

    fn position_side(&self, side: Side) -> &'static str {
        match (self.setup.hedge, side) {
            (false, _) => "BOTH",
            (true, Side::Long) => "LONG",
            (true, Side::Short) => "SHORT",
        }
    }

    /// Opens (or adds to) a position at `price`, as another client's order would; the
    /// `ACCOUNT_UPDATE` it sends. In one-way mode the other side open is refused (it would
    /// reduce, not open).
    pub fn open_position(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        ts: i64,
    ) -> Result<Vec<Outgoing>, String> {
        if !self.setup.instruments.iter().any(|i| i.symbol == symbol) {
            return Err(format!("{symbol}: not an instrument of the fake"));
        }
        if qty <= Decimal::ZERO || price <= Decimal::ZERO {
            return Err(format!(
                "{symbol}: quantity {qty} and price {price} must be > 0"
            ));
        }
        let ps = self.position_side(side);
        let key = (symbol.to_string(), ps);
        if let Some(p) = self.positions.get(&key)
            && p.size > Decimal::ZERO
            && p.side != side
        {
            return Err(format!(
                "{symbol}: a {} position is open (one-way mode)",
                p.side.as_str()
            ));
        }
        let p = self.positions.entry(key.clone()).or_insert(Position {
            side,
            size: Decimal::ZERO,
            entry: price,
            updated_ms: ts,
        });
        let total = p.size + qty;
        p.entry = (p.entry * p.size + price * qty) / total;
        p.size = total;
        p.updated_ms = ts;
        Ok(vec![self.account_update(&key, ts)])
    }

    /// The open positions: symbol, `positionSide`, side, size, entry.
    pub fn open_positions(&self) -> Vec<(String, &'static str, Side, Decimal, Decimal)> {
        self.positions
            .iter()
            .filter(|(_, p)| p.size > Decimal::ZERO)
            .map(|((s, ps), p)| (s.clone(), *ps, p.side, p.size, p.entry))
            .collect()
    }

    /// The resting (`NEW`) stops: client id, symbol, trigger.
    pub fn resting_stops(&self) -> Vec<(String, String, Decimal)> {
        self.stops
            .values()
            .filter(|s| s.status == "NEW")
            .map(|s| (s.client_algo_id.clone(), s.symbol.clone(), s.trigger))
            .collect()
    }

    /// The last mark of every symbol, as `markPriceUpdate`s: what a new market stream hears
    /// first (`markPrice@1s` pushes the current mark every second, moved or not).
    pub fn current_marks(&self) -> Vec<Outgoing> {
        self.marks
            .iter()
            .map(|(symbol, m)| Outgoing::Market {
                symbol: symbol.clone(),
                stream: "markPrice",
                text: json!({
                    "e": "markPriceUpdate", "E": m.ts, "s": symbol, "p": dec_text(m.price),
                    "i": dec_text(m.price), "P": dec_text(m.price), "r": "0.00010000", "T": m.ts
                })
                .to_string(),
            })
            .collect()
    }

    pub fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.marks.get(symbol).map(|m| m.price)
    }

    /// The current listenKey, if one is alive at `local_ms`.
    pub fn listen_key(&self, local_ms: i64) -> Option<&str> {
        let now = self.server_time(local_ms);
        self.listen_key
            .as_ref()
            .filter(|(_, exp)| now < *exp)
            .map(|(k, _)| k.as_str())
    }

    /// Expires the listenKey (as 60 minutes without a keepalive would).
    pub fn expire_listen_key(&mut self, local_ms: i64) -> Vec<Outgoing> {
        if self.listen_key.take().is_none() {
            return Vec::new();
        }
        vec![Outgoing::Private {
            text: json!({"e": "listenKeyExpired", "E": self.server_time(local_ms)}).to_string(),
        }]
    }

    /// Time passes on the server: a key past its life expires (`listenKeyExpired`).
    pub fn tick(&mut self, local_ms: i64) -> Vec<Outgoing> {
        let now = self.server_time(local_ms);
        match &self.listen_key {
            Some((_, exp)) if now >= *exp => self.expire_listen_key(local_ms),
            _ => Vec::new(),
        }
    }

    fn account_update(&self, key: &(String, &'static str), ts: i64) -> Outgoing {
        let (pa, ep) = match self.positions.get(key) {
            Some(p) if p.size > Decimal::ZERO => (
                match p.side {
                    Side::Long => p.size,
                    Side::Short => -p.size,
                },
                p.entry,
            ),
            _ => (Decimal::ZERO, Decimal::ZERO),
        };
        Outgoing::Private {
            text: json!({
                "e": "ACCOUNT_UPDATE", "E": ts, "T": ts,
                "a": {"m": "ORDER", "B": [], "P": [{
                    "s": key.0, "pa": dec_text(pa), "ep": dec_text(ep), "bep": dec_text(ep),
                    "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": key.1
                }]}
            })
            .to_string(),
        }
    }

    /// The data time of `symbol`'s last price, if it has one.
    fn data_time(&self, symbol: &str) -> Option<i64> {
        self.marks.get(symbol).map(|m| m.ts)
    }

    fn algo_json(s: &AlgoStop) -> Value {
        json!({
            "algoId": s.algo_id, "clientAlgoId": s.client_algo_id, "algoType": "CONDITIONAL",
            "orderType": "STOP_MARKET", "symbol": s.symbol, "side": s.side,
            "positionSide": s.position_side, "timeInForce": "GTC", "quantity": "0",
            "algoStatus": s.status, "triggerPrice": dec_text(s.trigger), "price": "0",
            "workingType": s.working_type, "priceMatch": "NONE", "closePosition": true,
            "priceProtect": false, "reduceOnly": false, "createTime": s.created_ms,
            "updateTime": s.updated_ms, "triggerTime": s.trigger_ms, "goodTillDate": 0,
            "actualOrderId": s.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
            "executedQty": dec_text(s.executed_qty),
            "avgPrice": s.avg_price.map(dec_text).unwrap_or_else(|| "0".into()),
        })
    }

    fn algo_update(s: &AlgoStop, ts: i64, rm: &str) -> Outgoing {
        Outgoing::Private {
            text: json!({
                "e": "ALGO_UPDATE", "T": ts, "E": ts,
                "o": {
                    "caid": s.client_algo_id, "aid": s.algo_id, "at": "CONDITIONAL",
                    "o": "STOP_MARKET", "s": s.symbol, "S": s.side, "ps": s.position_side,
                    "f": "GTC", "q": "0", "X": s.status,
                    "ai": s.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
                    "ap": s.avg_price.map(dec_text).unwrap_or_else(|| "0".into()),
                    "aq": dec_text(s.executed_qty), "act": "MARKET",
                    "tp": dec_text(s.trigger), "p": "0", "V": "NONE",
                    "wt": s.working_type, "pm": "NONE", "cp": true, "pP": false, "R": false,
                    "tt": s.trigger_ms, "gtd": 0, "rm": rm
                }
            })
            .to_string(),
        }
    }

    /// One execution of an order: `fill` of the order's `qty` filled so far
    /// (`PARTIALLY_FILLED` until the last, then `FILLED`).
    fn order_update(order: &OrderView<'_>, fill: &Execution, ts: i64) -> Outgoing {
        let status = if fill.cum == order.qty {
            "FILLED"
        } else {
            "PARTIALLY_FILLED"
        };
        Outgoing::Private {
            text: json!({
                "e": "ORDER_TRADE_UPDATE", "T": ts, "E": ts,
                "o": {
                    "s": order.symbol, "c": order.client_id, "S": order.side, "o": "MARKET",
                    "f": "GTC", "q": dec_text(order.qty), "p": "0", "ap": dec_text(fill.avg),
                    "sp": "0", "x": "TRADE", "X": status, "i": order.order_id,
                    "l": dec_text(fill.qty), "z": dec_text(fill.cum), "L": dec_text(fill.price),
                    "N": "USDT", "n": "0", "T": ts, "t": order.order_id * 100 + fill.seq,
                    "b": "0", "a": "0", "m": false, "R": order.reduce_only,
                    "wt": "CONTRACT_PRICE", "ot": order.original_type, "ps": order.position_side,
                    "cp": order.original_type == "STOP_MARKET", "rp": "0", "pP": false,
                    "si": 0, "ss": 0, "V": "NONE"
                }
            })
            .to_string(),
        }
    }

    /// The executions that fill `qty` at `price`: [`Setup::fill_parts`] of them, the size
    /// split on the step (the last takes the rest), each [`Setup::fill_slip_ticks`] further
    /// from `price` against the order's side; the average so far is exact (`Decimal`).
    fn executions(&self, symbol: &str, side: &str, qty: Decimal, price: Decimal) -> Vec<Execution> {
        let spec = self.setup.instruments.iter().find(|i| i.symbol == symbol);
        let (step, tick) = spec.map_or((qty, Decimal::ZERO), |i| (i.step_size, i.tick_size));
        let parts = self.setup.fill_parts.max(1);
        let base = (qty / Decimal::from(parts) / step).floor() * step;
        let parts = if base.is_zero() { 1 } else { parts };
        let away = match side {
            "SELL" => -Decimal::ONE,
            _ => Decimal::ONE,
        };
        let mut out = Vec::with_capacity(parts);
        let (mut cum, mut notional) = (Decimal::ZERO, Decimal::ZERO);
        for i in 0..parts {
            let q = if i + 1 == parts { qty - cum } else { base };
            let p =
                price + away * tick * Decimal::from(self.setup.fill_slip_ticks) * Decimal::from(i);
            cum += q;
            notional += q * p;
            out.push(Execution {
                seq: i as i64,
                qty: q,
                price: p,
                cum,
                avg: (notional / cum).normalize(),
            });
        }
        out
    }

    /// The messages of `order` filling as `executions`: each execution's
    /// `ORDER_TRADE_UPDATE`, and after each but the last the smaller position's
    /// `ACCOUNT_UPDATE` (the last one's is the caller's, once the position is gone).
    fn fill_messages(
        &mut self,
        key: &(String, &'static str),
        order: &OrderView<'_>,
        executions: &[Execution],
        ts: i64,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for (i, x) in executions.iter().enumerate() {
            out.push(Self::order_update(order, x, ts));
            if i + 1 < executions.len() {
                if let Some(p) = self.positions.get_mut(key) {
                    p.size -= x.qty;
                }
                out.push(self.account_update(key, ts));
            }
        }
        out
    }

    /// A price point: the mark (and last) price of `symbol` from data time `ts`. Stops it
    /// crosses trigger: `TRIGGERING`, then `TRIGGERED` with a new order id, its fill
    /// (`ORDER_TRADE_UPDATE`), `FINISHED`, and the flat position (`ACCOUNT_UPDATE`) — or,
    /// with [`Model::reject_next_trigger`], `REJECTED` (`-4131`) and the position left open.
    /// `gap`: the point was not reached continuously (the fill is then the point's price,
    /// not the trigger: the backtester's rule).
    pub fn on_price(&mut self, symbol: &str, price: Decimal, gap: bool, ts: i64) -> Vec<Outgoing> {
        self.marks.insert(symbol.to_string(), Mark { price, ts });
        if self.setup.exhaust_weight_at.is_some_and(|at| ts >= at) {
            self.setup.exhaust_weight_at = None;
            self.exhaust_weight();
        }
        self.trade_seq += 1;
        let mut out = vec![
            Outgoing::Market {
                symbol: symbol.to_string(),
                stream: "markPrice",
                text: json!({
                    "e": "markPriceUpdate", "E": ts, "s": symbol, "p": dec_text(price),
                    "i": dec_text(price), "P": dec_text(price), "r": "0.00010000", "T": ts
                })
                .to_string(),
            },
            Outgoing::Market {
                symbol: symbol.to_string(),
                stream: "aggTrade",
                text: json!({
                    "e": "aggTrade", "E": ts, "s": symbol, "a": self.trade_seq,
                    "p": dec_text(price), "q": "1", "f": self.trade_seq, "l": self.trade_seq,
                    "T": ts, "m": false
                })
                .to_string(),
            },
        ];
        let crossed: Vec<i64> = self
            .stops
            .values()
            .filter(|s| {
                s.symbol == symbol
                    && s.status == "NEW"
                    && ts >= s.active_from
                    && match s.side {
                        "SELL" => price <= s.trigger,
                        _ => price >= s.trigger,
                    }
            })
            .map(|s| s.algo_id)
            .collect();
        for id in crossed {
            out.extend(self.trigger(id, price, gap, ts));
        }
        out
    }

    fn trigger(&mut self, id: i64, price: Decimal, gap: bool, ts: i64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let reject = std::mem::take(&mut self.reject_next_trigger);
        let s = self.stops.get_mut(&id).expect("a crossed stop exists");
        s.status = "TRIGGERING";
        s.trigger_ms = ts;
        s.updated_ms = ts;
        out.push(Self::algo_update(s, ts, ""));
        let key = (s.symbol.clone(), s.position_side);
        let open = self
            .positions
            .get(&key)
            .filter(|p| p.size > Decimal::ZERO && closing(p.side) == s.side)
            .cloned();
        let Some(p) = open.filter(|_| !reject) else {
            let rm = if reject {
                format!(
                    "{}: Market order rejected: PERCENT_PRICE",
                    code::MARKET_ORDER_REJECT
                )
            } else {
                "no position to close".into()
            };
            let s = self.stops.get_mut(&id).expect("the stop exists");
            s.status = if reject { "REJECTED" } else { "EXPIRED" };
            out.push(Self::algo_update(s, ts, &rm));
            return out;
        };
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let s = self.stops.get_mut(&id).expect("the stop exists");
        let fill = if gap { price } else { s.trigger };
        s.status = "TRIGGERED";
        s.actual_order_id = Some(order_id);
        out.push(Self::algo_update(s, ts, ""));
        let s = s.clone();
        let executions = self.executions(&s.symbol, s.side, p.size, fill);
        let order = OrderView {
            symbol: &s.symbol,
            client_id: &s.client_algo_id,
            order_id,
            side: s.side,
            position_side: s.position_side,
            original_type: "STOP_MARKET",
            qty: p.size,
            reduce_only: false,
        };
        out.extend(self.fill_messages(&key, &order, &executions, ts));
        let s = self.stops.get_mut(&id).expect("the stop exists");
        s.status = "FINISHED";
        s.avg_price = executions.last().map(|x| x.avg);
        s.executed_qty = p.size;
        out.push(Self::algo_update(s, ts, ""));
        self.positions.remove(&key);
        out.push(self.account_update(&key, ts));
        out
    }

    /// Checks the key header, the signature over the exact query (and body) and the
    /// timestamp window of a signed request.
    fn check_signed(&self, req: &HttpRequest, now: i64) -> Result<(), HttpReply> {
        self.check_key(req)?;
        let Some((plain, sig)) = req.query.rsplit_once("&signature=") else {
            return Err(err(
                400,
                code::MANDATORY_PARAM,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            ));
        };
        let signed = format!("{plain}{}", req.body);
        let want = hmac_sha256_hex(self.setup.api_secret.as_bytes(), signed.as_bytes());
        if sig != want {
            return Err(err(
                400,
                code::INVALID_SIGNATURE,
                "Signature for this request is not valid.",
            ));
        }
        let Some(ts) = req.param("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
            return Err(err(
                400,
                code::MANDATORY_PARAM,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            ));
        };
        let window = req
            .param("recvWindow")
            .and_then(|w| w.parse::<i64>().ok())
            .unwrap_or(5000);
        if ts > now + 1000 {
            return Err(err(
                400,
                code::INVALID_TIMESTAMP,
                "Timestamp for this request was 1000ms ahead of the server's time.",
            ));
        }
        if now - ts > window {
            return Err(err(
                400,
                code::INVALID_TIMESTAMP,
                "Timestamp for this request is outside of the recvWindow.",
            ));
        }
        Ok(())
    }

    fn check_key(&self, req: &HttpRequest) -> Result<(), HttpReply> {
        if req.header("x-mbx-apikey") != Some(self.setup.api_key.as_str()) {
            return Err(err(
                401,
                code::REJECTED_MBX_KEY,
                "Invalid API-key, IP, or permissions for action.",
            ));
        }
        Ok(())
    }

    /// The usage headers and whether an order call is allowed (the 10 s `ORDERS` window).
    fn order_gate(&mut self, now: i64) -> (bool, Vec<(String, String)>) {
        while self.order_calls.front().is_some_and(|t| now - t >= 10_000) {
            self.order_calls.pop_front();
        }
        let allowed = self.order_calls.len() < self.setup.orders_per_10s;
        if allowed {
            self.order_calls.push_back(now);
        }
        let n = self.order_calls.len();
        (
            allowed,
            vec![
                ("X-MBX-ORDER-COUNT-10S".into(), n.to_string()),
                ("X-MBX-ORDER-COUNT-1M".into(), n.to_string()),
            ],
        )
    }

    fn too_many(&mut self, now: i64, code_: i64, msg: &str) -> HttpReply {
        self.penalty_until = Some(now + self.setup.retry_after_s * 1000);
        let mut r = err(429, code_, msg);
        r.headers
            .push(("Retry-After".into(), self.setup.retry_after_s.to_string()));
        r
    }

    fn ban(&mut self, now: i64, for_ms: i64) -> HttpReply {
        self.bans += 1;
        let until = now + for_ms;
        self.banned_until = Some(until);
        self.banned_reply(now)
    }

    fn banned_reply(&self, now: i64) -> HttpReply {
        let until = self.banned_until.unwrap_or(now);
        let mut r = err(
            418,
            code::TOO_MANY_REQUESTS,
            &format!(
                "Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live updates to avoid bans."
            ),
        );
        let secs = ((until - now).max(0) + 999) / 1000;
        r.headers.push(("Retry-After".into(), secs.to_string()));
        r
    }

    /// Answers one request at local time `local_ms`; the stream messages it causes. A fault
    /// the server acts on (timeouts, drops, 503s) is taken by the server first and the
    /// request handed here only when it is to be applied.
    pub fn handle(&mut self, req: &HttpRequest, local_ms: i64) -> (HttpReply, Vec<Outgoing>) {
        self.requests.push(req.clone());
        let now = self.server_time(local_ms);
        let (mut reply, out) = self.answer(req, now);
        // Every answer says the IP's weight used in the last minute.
        reply.headers.push((
            "X-MBX-USED-WEIGHT-1M".into(),
            self.used_weight(now).to_string(),
        ));
        (reply, out)
    }

    /// The request weight used in the minute before `now` (server time).
    fn used_weight(&mut self, now: i64) -> u32 {
        let window = self.setup.weight_window_ms;
        while self
            .weight_calls
            .front()
            .is_some_and(|(t, _)| now - t >= window)
        {
            self.weight_calls.pop_front();
        }
        self.weight_calls.iter().map(|(_, w)| w).sum()
    }

    /// Another client on the IP has used up the request weight: just before the next
    /// request, the window is filled to the limit (that request, if it weighs, is the 429;
    /// the filled weight leaves the window a window later).
    pub fn exhaust_weight(&mut self) {
        self.exhaust_pending = true;
    }

    /// Counts `weight` against the IP's limit; over it, HTTP 429 `-1003` with a
    /// `Retry-After` until enough weight has aged out of the window (the request is not
    /// counted).
    fn weigh(&mut self, weight: u32, now: i64) -> Result<(), HttpReply> {
        let limit = self.setup.request_weight_per_min;
        let mut used = self.used_weight(now);
        if std::mem::take(&mut self.exhaust_pending) && used < limit {
            self.weight_calls.push_back((now, limit - used));
            used = limit;
        }
        if used + weight <= limit {
            if weight > 0 {
                self.weight_calls.push_back((now, weight));
            }
            return Ok(());
        }
        // When the oldest calls leave the window, until enough is free.
        let mut freed = 0;
        let mut free_at = now;
        for (t, w) in &self.weight_calls {
            freed += w;
            free_at = t + self.setup.weight_window_ms;
            if used - freed + weight <= limit {
                break;
            }
        }
        let secs = ((free_at - now).max(1) + 999) / 1000;
        self.penalty_until = Some(now + secs * 1000);
        self.weight_refusals += 1;
        let mut r = err(
            429,
            code::TOO_MANY_REQUESTS,
            &format!("Too many requests; current limit is {limit} requests per minute."),
        );
        r.headers.push(("Retry-After".into(), secs.to_string()));
        Err(r)
    }

    fn answer(&mut self, req: &HttpRequest, now: i64) -> (HttpReply, Vec<Outgoing>) {
        // A ban covers every request to the host until it ends.
        if let Some(until) = self.banned_until {
            if now < until {
                return (self.banned_reply(now), Vec::new());
            }
            self.banned_until = None;
        }
        // Going on during a 429's Retry-After earns the ban.
        if self.penalty_until.is_some_and(|t| now < t) {
            self.penalty_until = None;
            let ban_ms = self.setup.ban_ms;
            return (self.ban(now, ban_ms), Vec::new());
        }
        if let Err(r) = self.weigh(request_weight(req), now) {
            return (r, Vec::new());
        }
        let public = matches!(req.path.as_str(), "/fapi/v1/time" | "/fapi/v1/exchangeInfo");
        let user_stream = req.path == "/fapi/v1/listenKey";
        if user_stream {
            if let Err(r) = self.check_key(req) {
                return (r, Vec::new());
            }
        } else if !public && let Err(r) = self.check_signed(req, now) {
            return (r, Vec::new());
        }
        let is_order = req.method == "POST"
            && matches!(req.path.as_str(), "/fapi/v1/algoOrder" | "/fapi/v1/order");
        let mut headers = Vec::new();
        if is_order {
            let (allowed, h) = self.order_gate(now);
            headers.extend(h);
            if !allowed {
                let mut r = self.too_many(
                    now,
                    code::TOO_MANY_ORDERS,
                    "Too many new orders; current limit is 300 orders per TEN_SECONDS.",
                );
                r.headers.extend(headers);
                return (r, Vec::new());
            }
        }
        let (mut reply, out) = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/fapi/v1/time") => (ok(json!({"serverTime": now})), Vec::new()),
            ("GET", "/fapi/v1/exchangeInfo") => (self.exchange_info(now), Vec::new()),
            ("GET", "/fapi/v2/positionRisk") => (self.position_risk(req, now), Vec::new()),
            ("GET", "/fapi/v1/positionSide/dual") => (
                ok(json!({"dualSidePosition": self.setup.hedge})),
                Vec::new(),
            ),
            ("POST", "/fapi/v1/algoOrder") => self.create_stop(req, now),
            ("DELETE", "/fapi/v1/algoOrder") => self.cancel_stop(req, now),
            ("GET", "/fapi/v1/algoOrder") => (self.query_stop(req), Vec::new()),
            ("GET", "/fapi/v1/openAlgoOrders") => (self.open_stops(req), Vec::new()),
            ("POST", "/fapi/v1/order") => self.new_order(req, now),
            ("POST", "/fapi/v1/listenKey") => (self.listen_key_create(now), Vec::new()),
            ("PUT", "/fapi/v1/listenKey") => (self.listen_key_keepalive(now), Vec::new()),
            ("DELETE", "/fapi/v1/listenKey") => {
                self.listen_key = None;
                (ok(json!({})), Vec::new())
            }
            _ => (HttpReply::status(404, "Not Found"), Vec::new()),
        };
        reply.headers.extend(headers);
        (reply, out)
    }

    /// A fault's answer without applying (the model's part of the fault catalogue); `None`
    /// when the fault is the server's to act on (timeouts, drops, 503s).
    pub fn fault_reply(&mut self, kind: &FaultKind, local_ms: i64) -> Option<HttpReply> {
        let now = self.server_time(local_ms);
        Some(match kind {
            FaultKind::WouldTrigger => {
                err(400, code::WOULD_TRIGGER, "Order would immediately trigger.")
            }
            FaultKind::UnknownOrder => err(400, code::CANCEL_REJECTED, "Unknown order sent."),
            FaultKind::ClockSkew => err(
                400,
                code::INVALID_TIMESTAMP,
                "Timestamp for this request is outside of the recvWindow.",
            ),
            FaultKind::RateLimited { retry_after_s } => {
                self.penalty_until = Some(now + retry_after_s * 1000);
                let mut r = err(
                    429,
                    code::TOO_MANY_REQUESTS,
                    "Too many requests; current limit is 2400 requests per minute.",
                );
                r.headers
                    .push(("Retry-After".into(), retry_after_s.to_string()));
                r
            }
            FaultKind::Banned { for_ms } => self.ban(now, *for_ms),
            FaultKind::BadListenKey => err(
                400,
                code::INVALID_LISTEN_KEY,
                "This listenKey does not exist.",
            ),
            FaultKind::ServerErrorBeforeApply => err(
                503,
                code::TIMEOUT,
                "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
            ),
            FaultKind::TimeoutAfterApply { .. }
            | FaultKind::TimeoutBeforeApply { .. }
            | FaultKind::ServerErrorAfterApply
            | FaultKind::DropAfterApply => return None,
        })
    }

    /// The 503 of a fault applied before answering (`-1006`: execution status unknown).
    pub fn server_error_after_apply() -> HttpReply {
        err(
            503,
            code::UNKNOWN,
            "An unknown error occurred while processing the request.",
        )
    }

    fn exchange_info(&self, now: i64) -> HttpReply {
        let symbols: Vec<Value> = self
            .setup
            .instruments
            .iter()
            .map(|i| {
                json!({
                    "symbol": i.symbol, "pair": i.symbol, "contractType": "PERPETUAL",
                    "status": "TRADING", "pricePrecision": i.tick_size.normalize().scale(),
                    "quantityPrecision": i.step_size.normalize().scale(),
                    "triggerProtect": "0.0500",
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": dec_text(i.tick_size),
                         "maxPrice": "1000000", "tickSize": dec_text(i.tick_size)},
                        {"filterType": "LOT_SIZE", "minQty": dec_text(i.min_qty),
                         "maxQty": "1000", "stepSize": dec_text(i.step_size)},
                    ]
                })
            })
            .collect();
        ok(json!({
            "timezone": "UTC", "serverTime": now,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.setup.request_weight_per_min},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                 "limit": self.setup.orders_per_10s},
            ],
            "symbols": symbols,
        }))
    }

    fn position_risk(&self, req: &HttpRequest, now: i64) -> HttpReply {
        let only = req.param("symbol");
        let sides: &[&'static str] = if self.setup.hedge {
            &["LONG", "SHORT"]
        } else {
            &["BOTH"]
        };
        let mut list = Vec::new();
        for i in &self.setup.instruments {
            if only.as_deref().is_some_and(|s| s != i.symbol) {
                continue;
            }
            for ps in sides {
                let p = self.positions.get(&(i.symbol.clone(), *ps));
                let (amt, entry, updated) = match p {
                    Some(p) if p.size > Decimal::ZERO => (
                        match p.side {
                            Side::Long => p.size,
                            Side::Short => -p.size,
                        },
                        p.entry,
                        p.updated_ms,
                    ),
                    _ => (Decimal::ZERO, Decimal::ZERO, now),
                };
                let mark = self.mark(&i.symbol).unwrap_or_default();
                list.push(json!({
                    "symbol": i.symbol, "positionAmt": dec_text(amt),
                    "entryPrice": dec_text(entry), "markPrice": dec_text(mark),
                    "unRealizedProfit": "0", "liquidationPrice": "0", "leverage": "10",
                    "marginType": "cross", "positionSide": ps, "updateTime": updated
                }));
            }
        }
        ok(Value::Array(list))
    }

    /// A create: the answer and the `ALGO_UPDATE` `NEW` carry the time the stop takes effect
    /// (`updateTime`, the event time: the data time `update_latency_ms` after the create, as
    /// a real exchange stamps its acknowledgement), so the client measures the window the
    /// backtester counts.
    fn create_stop(&mut self, req: &HttpRequest, now: i64) -> (HttpReply, Vec<Outgoing>) {
        match self.validate_stop(req) {
            Ok(stop) => {
                let key = (stop.symbol.clone(), stop.position_side);
                let covers = self
                    .positions
                    .get(&key)
                    .is_some_and(|p| p.size > Decimal::ZERO && closing(p.side) == stop.side);
                if !covers {
                    self.stops_without_position += 1;
                }
                let reply = ok(Self::algo_json(&stop));
                let at = self
                    .data_time(&stop.symbol)
                    .map_or(now, |_| stop.updated_ms);
                let out = vec![Self::algo_update(&stop, at, "")];
                self.stops.insert(stop.algo_id, stop);
                (reply, out)
            }
            Err(r) => (r, Vec::new()),
        }
    }

    fn validate_stop(&mut self, req: &HttpRequest) -> Result<AlgoStop, HttpReply> {
        let p = |k: &str| req.param(k);
        let mandatory = |k: &str| {
            err(
                400,
                code::MANDATORY_PARAM,
                &format!("Mandatory parameter '{k}' was not sent, was empty/null, or malformed."),
            )
        };
        if p("algoType").as_deref() != Some("CONDITIONAL") {
            return Err(mandatory("algoType"));
        }
        let symbol = p("symbol").ok_or_else(|| mandatory("symbol"))?;
        let Some(spec) = self
            .setup
            .instruments
            .iter()
            .find(|i| i.symbol == symbol)
            .cloned()
        else {
            return Err(err(400, code::BAD_SYMBOL, "Invalid symbol."));
        };
        let side: &'static str = match p("side").as_deref() {
            Some("SELL") => "SELL",
            Some("BUY") => "BUY",
            _ => return Err(mandatory("side")),
        };
        if p("type").as_deref() != Some("STOP_MARKET") {
            return Err(err(400, code::INVALID_PARAM, "Invalid orderType."));
        }
        if p("closePosition").as_deref() != Some("true") {
            return Err(mandatory("closePosition"));
        }
        if p("quantity").is_some() || p("reduceOnly").is_some() {
            return Err(err(
                400,
                code::PARAM_NOT_REQUIRED,
                "Parameter 'quantity' or 'reduceOnly' sent when not required.",
            ));
        }
        let position_side: &'static str = match (self.setup.hedge, p("positionSide").as_deref()) {
            (false, None | Some("BOTH")) => "BOTH",
            (true, Some("LONG")) if side == "SELL" => "LONG",
            (true, Some("SHORT")) if side == "BUY" => "SHORT",
            _ => {
                return Err(err(
                    400,
                    code::POSITION_SIDE_NOT_MATCH,
                    "Order's position side does not match user's setting.",
                ));
            }
        };
        let trigger = p("triggerPrice")
            .and_then(|t| Decimal::from_str(&t).ok())
            .filter(|t| *t > Decimal::ZERO)
            .ok_or_else(|| mandatory("triggerPrice"))?;
        if !(trigger % spec.tick_size).is_zero() {
            return Err(err(
                400,
                code::PRICE_NOT_BY_TICK,
                "Price not increased by tick size.",
            ));
        }
        let client_algo_id = match p("clientAlgoId") {
            Some(id) if id.len() > 36 => {
                return Err(err(
                    400,
                    code::CLIENT_ID_TOO_LONG,
                    "Client order id length should not be more than 36 chars",
                ));
            }
            Some(id) => id,
            None => format!("fake-{}", self.next_algo_id),
        };
        let working_type = p("workingType").unwrap_or_else(|| "CONTRACT_PRICE".into());
        if let Some(m) = self.marks.get(&symbol) {
            let would = match side {
                "SELL" => m.price <= trigger,
                _ => m.price >= trigger,
            };
            if would {
                return Err(err(
                    400,
                    code::WOULD_TRIGGER,
                    "Order would immediately trigger.",
                ));
            }
        }
        let resting = || self.stops.values().filter(|s| s.status == "NEW");
        if self.setup.one_close_position_per_direction
            && resting()
                .any(|s| s.symbol == symbol && s.side == side && s.position_side == position_side)
        {
            return Err(err(
                400,
                code::CLOSE_POSITION_EXISTS,
                "An open stop or take profit order with closePosition in the direction is existing.",
            ));
        }
        if resting().count() >= self.setup.max_algo_orders {
            return Err(err(
                400,
                code::MAX_STOP_ORDERS,
                "Reach max stop order limit.",
            ));
        }
        let data_now = self.marks.get(&symbol).map_or(i64::MIN, |m| m.ts);
        let algo_id = self.next_algo_id;
        self.next_algo_id += 1;
        Ok(AlgoStop {
            algo_id,
            client_algo_id,
            symbol,
            side,
            position_side,
            trigger,
            working_type,
            status: "NEW",
            created_ms: data_now.max(0),
            updated_ms: data_now.saturating_add(self.setup.update_latency_ms).max(0),
            trigger_ms: 0,
            active_from: data_now.saturating_add(self.setup.update_latency_ms),
            actual_order_id: None,
            avg_price: None,
            executed_qty: Decimal::ZERO,
        })
    }

    /// The newest stop a request names (`algoId` or `clientAlgoId`).
    fn find(&self, req: &HttpRequest) -> Result<Option<i64>, HttpReply> {
        if let Some(id) = req.param("algoId") {
            let id = id.parse::<i64>().ok();
            return Ok(id.filter(|i| self.stops.contains_key(i)));
        }
        if let Some(cid) = req.param("clientAlgoId") {
            return Ok(self
                .stops
                .values()
                .rev()
                .find(|s| s.client_algo_id == cid)
                .map(|s| s.algo_id));
        }
        Err(err(
            400,
            code::MANDATORY_PARAM,
            "Either algoId or clientAlgoId must be sent.",
        ))
    }

    fn cancel_stop(&mut self, req: &HttpRequest, now: i64) -> (HttpReply, Vec<Outgoing>) {
        let id = match self.find(req) {
            Ok(id) => id,
            Err(r) => return (r, Vec::new()),
        };
        let Some(s) = id
            .and_then(|i| self.stops.get_mut(&i))
            .filter(|s| s.status == "NEW")
        else {
            return (
                err(400, code::CANCEL_REJECTED, "Unknown order sent."),
                Vec::new(),
            );
        };
        // In data time when the symbol has a price (a replay's time), as every other message.
        let now = self.marks.get(&s.symbol).map_or(now, |m| m.ts);
        s.status = "CANCELED";
        s.updated_ms = now;
        let reply = ok(json!({
            "algoId": s.algo_id, "clientAlgoId": s.client_algo_id, "code": "200", "msg": "success"
        }));
        (reply, vec![Self::algo_update(s, now, "")])
    }

    fn query_stop(&self, req: &HttpRequest) -> HttpReply {
        match self.find(req) {
            Ok(Some(id)) => ok(Self::algo_json(&self.stops[&id])),
            Ok(None) => err(400, code::NO_SUCH_ORDER, "Order does not exist."),
            Err(r) => r,
        }
    }

    fn open_stops(&self, req: &HttpRequest) -> HttpReply {
        let only = req.param("symbol");
        ok(Value::Array(
            self.stops
                .values()
                .filter(|s| s.status == "NEW" && only.as_deref().is_none_or(|o| o == s.symbol))
                .map(Self::algo_json)
                .collect(),
        ))
    }

    fn new_order(&mut self, req: &HttpRequest, now: i64) -> (HttpReply, Vec<Outgoing>) {
        let p = |k: &str| req.param(k);
        let kind = p("type").unwrap_or_default();
        if matches!(
            kind.as_str(),
            "STOP" | "STOP_MARKET" | "TAKE_PROFIT" | "TAKE_PROFIT_MARKET" | "TRAILING_STOP_MARKET"
        ) {
            return (
                err(
                    400,
                    code::STOP_ORDER_SWITCH_ALGO,
                    "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
                ),
                Vec::new(),
            );
        }
        if kind != "MARKET" {
            return (
                err(400, code::INVALID_PARAM, "Invalid orderType."),
                Vec::new(),
            );
        }
        let symbol = p("symbol").unwrap_or_default();
        let side = p("side").unwrap_or_default();
        let reduce_only = p("reduceOnly").as_deref() == Some("true");
        if self.setup.hedge && reduce_only {
            return (
                err(
                    400,
                    code::PARAM_NOT_REQUIRED,
                    "Parameter 'reduceOnly' sent when not required.",
                ),
                Vec::new(),
            );
        }
        let ps: &'static str = match p("positionSide").as_deref() {
            None | Some("BOTH") if !self.setup.hedge => "BOTH",
            Some("LONG") if self.setup.hedge => "LONG",
            Some("SHORT") if self.setup.hedge => "SHORT",
            _ => {
                return (
                    err(
                        400,
                        code::POSITION_SIDE_NOT_MATCH,
                        "Order's position side does not match user's setting.",
                    ),
                    Vec::new(),
                );
            }
        };
        let Some(qty) = p("quantity")
            .and_then(|q| Decimal::from_str(&q).ok())
            .filter(|q| *q > Decimal::ZERO)
        else {
            return (
                err(
                    400,
                    code::MANDATORY_PARAM,
                    "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
                ),
                Vec::new(),
            );
        };
        let key = (symbol.clone(), ps);
        // Only closes are supported: it must reduce an open position (hedge mode closes by
        // side; one-way by reduceOnly).
        let closes = self
            .positions
            .get(&key)
            .is_some_and(|pos| pos.size > Decimal::ZERO && closing(pos.side) == side);
        if !closes {
            return (
                err(
                    400,
                    code::REDUCE_ONLY_REJECT,
                    "ReduceOnly Order is rejected.",
                ),
                Vec::new(),
            );
        }
        let Some(fill) = self.mark(&symbol) else {
            return (
                err(
                    400,
                    code::MARKET_ORDER_REJECT,
                    "Market order rejected: no price.",
                ),
                Vec::new(),
            );
        };
        let client_id = p("newClientOrderId").unwrap_or_default();
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let size = self.positions.get(&key).map_or(Decimal::ZERO, |p| p.size);
        let done = qty.min(size);
        let ts = self.marks.get(&symbol).map_or(now, |m| m.ts);
        let executions = self.executions(&symbol, &side, done, fill);
        let order = OrderView {
            symbol: &symbol,
            client_id: &client_id,
            order_id,
            side: &side,
            position_side: ps,
            original_type: "MARKET",
            qty: done,
            reduce_only,
        };
        let mut out = self.fill_messages(&key, &order, &executions, ts);
        let pos = self.positions.get_mut(&key).expect("checked above");
        pos.size = size - done;
        if pos.size.is_zero() {
            self.positions.remove(&key);
        }
        out.push(self.account_update(&key, ts));
        let reply = ok(json!({
            "orderId": order_id, "symbol": symbol, "status": "NEW", "clientOrderId": client_id,
            "price": "0", "avgPrice": "0.00", "origQty": dec_text(qty), "executedQty": "0",
            "cumQuote": "0", "timeInForce": "GTC", "type": "MARKET", "reduceOnly": reduce_only,
            "closePosition": false, "side": side, "positionSide": ps, "stopPrice": "0",
            "workingType": "CONTRACT_PRICE", "priceProtect": false, "origType": "MARKET",
            "updateTime": now
        }));
        (reply, out)
    }

    fn listen_key_create(&mut self, now: i64) -> HttpReply {
        let ttl = self.setup.listen_key_ttl_ms;
        let key = match &self.listen_key {
            // An active key is returned again, extended.
            Some((k, exp)) if now < *exp => k.clone(),
            _ => {
                self.listen_key_seq += 1;
                format!("fakeListenKey{:051}", self.listen_key_seq)
            }
        };
        self.listen_key = Some((key.clone(), now + ttl));
        ok(json!({"listenKey": key}))
    }

    fn listen_key_keepalive(&mut self, now: i64) -> HttpReply {
        let ttl = self.setup.listen_key_ttl_ms;
        match &mut self.listen_key {
            Some((k, exp)) if now < *exp => {
                *exp = now + ttl;
                ok(json!({"listenKey": k.clone()}))
            }
            _ => {
                self.listen_key = None;
                err(
                    400,
                    code::INVALID_LISTEN_KEY,
                    "This listenKey does not exist.",
                )
            }
        }
    }
}

impl ReplayVenue for Model {
    type Out = Outgoing;

    fn on_price(&mut self, symbol: &str, price: Decimal, gap: bool, ts: i64) -> Vec<Outgoing> {
        Model::on_price(self, symbol, price, gap, ts)
    }

    fn open_position(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        ts: i64,
    ) -> Result<Vec<Outgoing>, String> {
        let price = self
            .mark(symbol)
            .ok_or_else(|| format!("{symbol}: no price yet to open a position at"))?;
        Model::open_position(self, symbol, side, qty, price, ts)
    }

    fn open_position_at(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        at: i64,
    ) -> Result<Vec<Outgoing>, String> {
        Model::open_position(self, symbol, side, qty, price, at)
    }
}

#[cfg(test)]
mod tests {
    //! The client's builders, signer and parsers (`live::binance`) against the fake's own
    //! reading of the protocol.
    use super::*;
    use crate::engine::Instrument;
    use crate::live::binance::request::{
        self as req, AlgoRef, PositionSide, Request, StopOptions, StopPrice, Target,
    };
    use crate::live::binance::response::{self, Outcome, RateHeaders, Transport};
    use crate::live::binance::sign;
    use crate::live::binance::snapshot::{self, AlgoStatus};
    use crate::live::binance::stream::{self, AlgoNews, StreamMessage};
    use crate::live::credentials::{Credentials, Secret};
    use crate::venue::{OrderRef, VenueEvent};
    use rust_decimal_macros::dec;

    const T0: i64 = 1_767_000_000_000;

    fn creds() -> Credentials {
        Credentials {
            api_key: Secret::new("fake-key"),
            api_secret: Secret::new("fake-secret"),
        }
    }

    fn model() -> Model {
        Model::new(Setup::new(
            "fake-key",
            "fake-secret",
            vec![InstrumentSpec::new("BTCUSDT", dec!(0.1))],
        ))
    }

    fn btc() -> Instrument {
        Instrument::new(dec!(0.1))
    }

    fn wire(r: &Request, c: &Credentials, ts: i64) -> HttpRequest {
        let s = sign::sign(c, r, ts, 5000);
        HttpRequest {
            method: r.method.as_str().to_string(),
            path: r.path.to_string(),
            query: s.query.clone(),
            headers: s
                .header()
                .map(|(n, v)| vec![(n.to_ascii_lowercase(), v)])
                .unwrap_or_default(),
            body: String::new(),
        }
    }

    fn send(m: &mut Model, r: &Request, local: i64) -> (HttpReply, Vec<Outgoing>) {
        m.handle(&wire(r, &creds(), local), local)
    }

    fn outcome(reply: &HttpReply) -> Outcome {
        let pairs = reply.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        response::outcome(&Transport::Answered {
            status: reply.status,
            rate: RateHeaders::from_pairs(pairs),
            body: &reply.body,
        })
    }

    fn private(out: &[Outgoing]) -> Vec<StreamMessage> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Private { text } => Some(stream::parse(text).unwrap()),
                Outgoing::Market { .. } => None,
            })
            .collect()
    }

    fn long(i: &Instrument) -> Target<'_> {
        Target {
            symbol: "BTCUSDT",
            position_side: PositionSide::Both,
            side: Side::Long,
            size: dec!(0.5),
            instrument: i,
        }
    }

    fn place(seq: u32, stop: Decimal) -> Request {
        let i = btc();
        let s = StopPrice::from_units("BTCUSDT", i.units(stop).unwrap(), &i).unwrap();
        req::new_stop(
            &long(&i),
            s,
            StopOptions::default(),
            &OrderRef { position: 1, seq }.client_id(),
        )
        .unwrap()
    }

    /// A long of 0.5 at 100, the mark at 100.
    fn with_long() -> Model {
        let mut m = model();
        m.on_price("BTCUSDT", dec!(100), true, T0);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), dec!(100), T0)
            .unwrap();
        m
    }

    #[test]
    fn signature_key_and_timestamp_are_checked() {
        let mut m = model();
        let r = req::position_risk(None).unwrap();
        let (ok, _) = send(&mut m, &r, T0);
        assert_eq!(ok.status, 200, "{}", ok.body);
        let list = snapshot::positions(&ok.body).unwrap();
        assert_eq!(list.len(), 1);
        assert!(!list[0].is_open());

        // One byte changed after signing: -1022.
        let mut bad = wire(&r, &creds(), T0);
        bad.query = bad.query.replacen("recvWindow=5000", "recvWindow=5001", 1);
        let (reply, _) = m.handle(&bad, T0);
        assert_eq!(
            outcome(&reply),
            Outcome::Fatal {
                code: -1022,
                message: "Signature for this request is not valid.".into()
            }
        );
        // Another secret: -1022; another key: -2015.
        let other = Credentials {
            api_key: Secret::new("fake-key"),
            api_secret: Secret::new("wrong"),
        };
        let (reply, _) = m.handle(&wire(&r, &other, T0), T0);
        assert!(matches!(
            outcome(&reply),
            Outcome::Fatal { code: -1022, .. }
        ));
        let other = Credentials {
            api_key: Secret::new("someone"),
            api_secret: Secret::new("fake-secret"),
        };
        let (reply, _) = m.handle(&wire(&r, &other, T0), T0);
        assert_eq!(reply.status, 401);
        assert!(matches!(
            outcome(&reply),
            Outcome::Fatal { code: -2015, .. }
        ));

        // Timestamps: more than 1000 ms ahead, or older than the recvWindow: -1021.
        let (reply, _) = m.handle(&wire(&r, &creds(), T0 + 1001), T0);
        assert_eq!(outcome(&reply), Outcome::ClockSkew);
        assert!(reply.body.contains("1000ms ahead"), "{}", reply.body);
        let (reply, _) = m.handle(&wire(&r, &creds(), T0 - 5001), T0);
        assert_eq!(outcome(&reply), Outcome::ClockSkew);
        let (reply, _) = m.handle(&wire(&r, &creds(), T0 + 1000), T0);
        assert_eq!(reply.status, 200);
        // A skewed server clock (EXCHANGES §4.3 "clock skew").
        m.clock_offset_ms = 6000;
        let (reply, _) = send(&mut m, &r, T0);
        assert_eq!(outcome(&reply), Outcome::ClockSkew);
        // Public endpoints need nothing.
        let (reply, _) = send(&mut m, &req::server_time(), T0);
        assert_eq!(snapshot::server_time(&reply.body).unwrap(), T0 + 6000);
    }

    #[test]
    fn exchange_info_and_position_mode_read_back() {
        let mut m = model();
        let (reply, _) = send(&mut m, &req::exchange_info(), T0);
        let info = snapshot::exchange_info(&reply.body).unwrap();
        assert_eq!(info.symbol("BTCUSDT").unwrap().tick_size, dec!(0.1));
        assert_eq!(info.rate_limits.len(), 3);
        let (reply, _) = send(&mut m, &req::position_mode(), T0);
        assert!(!snapshot::position_mode(&reply.body).unwrap());
    }

    #[test]
    fn a_stop_is_created_cancelled_and_queried_by_client_algo_id() {
        let mut m = with_long();
        let i = btc();
        let (reply, out) = send(&mut m, &place(1, dec!(95)), T0);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let created = snapshot::algo_order(&reply.body).unwrap();
        assert_eq!(created.client_algo_id, "ts-1-1");
        assert_eq!(created.status, AlgoStatus::New);
        assert!(created.close_position);
        assert_eq!(created.working_type, "MARK_PRICE");
        let StreamMessage::Algo(a) = &private(&out)[0] else {
            panic!()
        };
        assert_eq!(
            a.news(
                OrderRef {
                    position: 1,
                    seq: 1
                },
                &i,
                false
            )
            .unwrap(),
            AlgoNews::Event(VenueEvent::Accepted {
                order: OrderRef {
                    position: 1,
                    seq: 1
                },
                stop: i.units(dec!(95)).unwrap(),
                ts: T0,
                venue_id: Some(created.algo_id.to_string())
            })
        );
        // One closePosition stop per direction: -4130, adopted by the client.
        let (reply, _) = send(&mut m, &place(2, dec!(96)), T0);
        assert_eq!(outcome(&reply), Outcome::AlreadyExists);
        let (reply, _) = send(&mut m, &req::open_stops(Some("BTCUSDT")).unwrap(), T0);
        let open = snapshot::open_algo_orders(&reply.body).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].trigger_price, dec!(95));

        let cancel = req::cancel_stop(AlgoRef::Client("ts-1-1")).unwrap();
        let (reply, out) = send(&mut m, &cancel, T0);
        assert_eq!(
            snapshot::cancel_ack(&reply.body).unwrap(),
            (created.algo_id, "ts-1-1".into())
        );
        let StreamMessage::Algo(a) = &private(&out)[0] else {
            panic!()
        };
        assert_eq!(a.status, AlgoStatus::Canceled);
        // Cancelling again: -2011; the query still finds it, cancelled.
        let (reply, _) = send(&mut m, &cancel, T0);
        assert_eq!(outcome(&reply), Outcome::NotFound);
        let (reply, _) = send(
            &mut m,
            &req::query_stop(AlgoRef::Client("ts-1-1")).unwrap(),
            T0,
        );
        assert_eq!(
            snapshot::algo_order(&reply.body).unwrap().status,
            AlgoStatus::Canceled
        );
        // An id never used: -2013.
        let (reply, _) = send(
            &mut m,
            &req::query_stop(AlgoRef::Client("ts-1-9")).unwrap(),
            T0,
        );
        assert_eq!(outcome(&reply), Outcome::NotFound);
        assert!(reply.body.contains("-2013"), "{}", reply.body);
    }

    #[test]
    fn the_algo_rules_refuse_what_binance_refuses() {
        let mut m = with_long();
        // At or through the mark: -2021 (a long's stop at 100 with the mark at 100).
        let (reply, _) = send(&mut m, &place(1, dec!(100)), T0);
        assert_eq!(outcome(&reply), Outcome::WouldTrigger);
        // Off the tick grid: the client cannot build it, a coarser fake refuses -4014.
        m.set_tick("BTCUSDT", dec!(1));
        let (reply, _) = send(&mut m, &place(1, dec!(95.5)), T0);
        assert_eq!(outcome(&reply), Outcome::Precision { code: -4014 });
        m.set_tick("BTCUSDT", dec!(0.1));
        // A stop on /fapi/v1/order: -4120 (the old endpoint).
        let mut old = wire(&req::position_mode(), &creds(), T0);
        old.method = "POST".into();
        old.path = "/fapi/v1/order".into();
        let plain = format!(
            "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&stopPrice=95&closePosition=true&recvWindow=5000&timestamp={T0}"
        );
        old.query = format!(
            "{plain}&signature={}",
            sign::signature(&creds().api_secret, &plain)
        );
        let (reply, _) = m.handle(&old, T0);
        assert!(matches!(
            outcome(&reply),
            Outcome::Fatal { code: -4120, .. }
        ));
        // No positionSide in hedge mode: -4061.
        let mut h = Model::new(Setup {
            hedge: true,
            ..model().setup().clone()
        });
        let (reply, _) = send(&mut h, &place(1, dec!(95)), T0);
        assert!(matches!(
            outcome(&reply),
            Outcome::Fatal { code: -4061, .. }
        ));
        let (reply, _) = send(&mut h, &req::position_risk(Some("BTCUSDT")).unwrap(), T0);
        let sides: Vec<_> = snapshot::positions(&reply.body)
            .unwrap()
            .iter()
            .map(|p| p.position_side)
            .collect();
        assert_eq!(sides, vec![PositionSide::Long, PositionSide::Short]);
    }

    #[test]
    fn a_trigger_runs_the_algo_lifecycle_and_the_fill_is_a_new_order() {
        let mut m = with_long();
        let i = btc();
        let order = OrderRef {
            position: 1,
            seq: 1,
        };
        send(&mut m, &place(1, dec!(95)), T0);
        // Above the stop: nothing but the price.
        let out = m.on_price("BTCUSDT", dec!(96), false, T0 + 1000);
        assert_eq!(out.len(), 2);
        let StreamMessage::Price(p) = stream::parse(match &out[0] {
            Outgoing::Market { text, .. } => text,
            _ => panic!(),
        })
        .unwrap() else {
            panic!()
        };
        assert_eq!((p.price, p.ts), (dec!(96), T0 + 1000));
        // Crossed continuously: filled at the stop.
        let msgs = private(&m.on_price("BTCUSDT", dec!(94), false, T0 + 2000));
        let statuses: Vec<_> = msgs
            .iter()
            .filter_map(|x| match x {
                StreamMessage::Algo(a) => Some(a.status),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                AlgoStatus::Triggering,
                AlgoStatus::Triggered,
                AlgoStatus::Finished
            ]
        );
        let StreamMessage::Algo(triggered) = &msgs[1] else {
            panic!()
        };
        let ai = triggered.actual_order_id.clone().unwrap();
        assert_ne!(ai, triggered.algo_id.to_string());
        let StreamMessage::Order(fill) = &msgs[2] else {
            panic!()
        };
        assert!(fill.is_order(&ai));
        assert_eq!(
            fill.triggered(order, &i).unwrap(),
            Some(VenueEvent::Triggered {
                order,
                ts: T0 + 2000,
                fill: i.units(dec!(95)).unwrap()
            })
        );
        let StreamMessage::Algo(finished) = &msgs[3] else {
            panic!()
        };
        assert_eq!(
            finished.news(order, &i, true).unwrap(),
            AlgoNews::Event(VenueEvent::Triggered {
                order,
                ts: T0 + 2000,
                fill: i.units(dec!(95)).unwrap()
            })
        );
        let StreamMessage::Account(acct) = &msgs[4] else {
            panic!()
        };
        assert!(!acct.positions[0].is_open());
        assert!(m.open_positions().is_empty());
        assert!(m.resting_stops().is_empty());
        // The query by client id finds the fill too (freqtrade #12680: not by algo id alone).
        let (reply, _) = send(
            &mut m,
            &req::query_stop(AlgoRef::Client("ts-1-1")).unwrap(),
            T0,
        );
        let info = snapshot::algo_order(&reply.body).unwrap();
        assert_eq!(info.actual_order_id, Some(ai));
        assert_eq!(info.fill(), Some(dec!(95)));
    }

    #[test]
    fn a_gap_fills_at_the_price_and_a_rejected_trigger_leaves_the_position_bare() {
        let mut m = with_long();
        let i = btc();
        send(&mut m, &place(1, dec!(95)), T0);
        let msgs = private(&m.on_price("BTCUSDT", dec!(90), true, T0 + 1000));
        let StreamMessage::Order(fill) = &msgs[2] else {
            panic!()
        };
        assert_eq!(fill.filled_at(), Some(dec!(90)));

        let mut m = with_long();
        send(&mut m, &place(1, dec!(95)), T0);
        m.reject_next_trigger = true;
        let msgs = private(&m.on_price("BTCUSDT", dec!(94), false, T0 + 1000));
        assert_eq!(msgs.len(), 2);
        let StreamMessage::Algo(rejected) = &msgs[1] else {
            panic!()
        };
        assert_eq!(rejected.status, AlgoStatus::Rejected);
        assert!(matches!(
            rejected.news(OrderRef { position: 1, seq: 1 }, &i, true).unwrap(),
            AlgoNews::Unprotected { reason } if reason.contains("-4131")
        ));
        assert_eq!(m.open_positions().len(), 1);
        assert!(m.resting_stops().is_empty());
    }

    #[test]
    fn a_new_stop_waits_out_the_update_latency_in_data_time() {
        let mut m = Model::new(Setup {
            update_latency_ms: 500,
            ..model().setup().clone()
        });
        m.on_price("BTCUSDT", dec!(100), true, T0);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), dec!(100), T0)
            .unwrap();
        send(&mut m, &place(1, dec!(95)), T0);
        // Crossed 100 ms later: not active yet.
        assert_eq!(m.on_price("BTCUSDT", dec!(94), false, T0 + 100).len(), 2);
        assert_eq!(m.resting_stops().len(), 1);
        let msgs = private(&m.on_price("BTCUSDT", dec!(94), false, T0 + 500));
        assert_eq!(msgs.len(), 5);
    }

    #[test]
    fn the_shared_replay_drives_the_fake_binance() {
        use crate::live::fake_bybit::replay::{Opening, Replay, Tick};
        let tick = |ts, price, gap| Tick { ts, price, gap };
        let mut m = model();
        let mut r = Replay::new(
            "BTCUSDT",
            vec![tick(T0, dec!(100), true), tick(T0 + 1000, dec!(94), false)],
            vec![Opening {
                at: T0,
                side: Side::Long,
                qty: dec!(0.5),
                price: None,
            }],
        );
        let first = r.step(&mut m).unwrap();
        // The price, then the position opened at it.
        assert!(matches!(first[0], Outgoing::Market { .. }));
        assert_eq!(m.open_positions()[0].4, dec!(100));
        send(&mut m, &place(1, dec!(95)), T0);
        let second = private(&r.step(&mut m).unwrap());
        assert_eq!(second.len(), 5);
        assert!(r.step(&mut m).is_none());
        // One-way mode: the other side is refused while one is open.
        let mut m = with_long();
        assert!(
            m.open_position("BTCUSDT", Side::Short, dec!(1), dec!(100), T0)
                .unwrap_err()
                .contains("one-way")
        );
    }

    #[test]
    fn too_many_orders_is_429_then_418_for_a_client_that_keeps_going() {
        let mut m = Model::new(Setup {
            orders_per_10s: 1,
            retry_after_s: 2,
            ban_ms: 60_000,
            ..model().setup().clone()
        });
        m.on_price("BTCUSDT", dec!(100), true, T0);
        m.open_position("BTCUSDT", Side::Long, dec!(0.5), dec!(100), T0)
            .unwrap();
        let (reply, _) = send(&mut m, &place(1, dec!(95)), T0);
        let h =
            RateHeaders::from_pairs(reply.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert_eq!(h.order_count_10s, Some(1));
        // An order weighs nothing on the IP's weight (it counts as an order).
        assert_eq!(h.used_weight_1m, Some(0));
        let (reply, _) = send(&mut m, &place(2, dec!(96)), T0 + 10);
        assert_eq!(reply.status, 429);
        assert_eq!(
            outcome(&reply),
            Outcome::RateLimited {
                retry_after_ms: 2000
            }
        );
        // Going on before Retry-After: banned.
        let (reply, _) = send(&mut m, &req::server_time(), T0 + 20);
        assert_eq!(reply.status, 418);
        assert_eq!(
            outcome(&reply),
            Outcome::Banned {
                until_ms: Some(T0 + 20 + 60_000),
                retry_after_ms: Some(60_000)
            }
        );
        // Every request until the ban ends.
        let (reply, _) = send(&mut m, &req::position_mode(), T0 + 30_000);
        assert_eq!(reply.status, 418);
        let (reply, _) = send(&mut m, &req::position_mode(), T0 + 60_020);
        assert_eq!(reply.status, 200);
        // The stop on the exchange kept working through the ban.
        assert_eq!(m.resting_stops().len(), 1);
    }

    #[test]
    fn request_weight_is_counted_per_endpoint_and_enforced_429_then_418() {
        let mut m = Model::new(Setup {
            request_weight_per_min: 40,
            weight_window_ms: 10_000,
            ban_ms: 30_000,
            ..model().setup().clone()
        });
        let used = |reply: &HttpReply| {
            RateHeaders::from_pairs(reply.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .used_weight_1m
        };
        // positionSide/dual 30, positionRisk 5, the time 1, openAlgoOrders with a symbol 1.
        let (r, _) = send(&mut m, &req::position_mode(), T0);
        assert_eq!((r.status, used(&r)), (200, Some(30)));
        let (r, _) = send(
            &mut m,
            &req::position_risk(Some("BTCUSDT")).unwrap(),
            T0 + 1000,
        );
        assert_eq!(used(&r), Some(35));
        let (r, _) = send(&mut m, &req::server_time(), T0 + 2000);
        assert_eq!(used(&r), Some(36));
        let (r, _) = send(
            &mut m,
            &req::open_stops(Some("BTCUSDT")).unwrap(),
            T0 + 3000,
        );
        assert_eq!(used(&r), Some(37));
        // Another 30: over the limit. 429 -1003, not counted, and Retry-After until the 30
        // of the first call leave the window (T0 + 10 s: 6 s from T0 + 4 s).
        let (r, _) = send(&mut m, &req::position_mode(), T0 + 4000);
        assert_eq!(r.status, 429);
        assert_eq!(used(&r), Some(37));
        assert_eq!(
            outcome(&r),
            Outcome::RateLimited {
                retry_after_ms: 6000
            }
        );
        assert!(r.body.contains("-1003"), "{}", r.body);
        // Hammered during the Retry-After: 418 for ban_ms, the header still there.
        let (r, _) = send(&mut m, &req::server_time(), T0 + 5000);
        assert_eq!((r.status, used(&r)), (418, Some(37)));
        let (r, _) = send(&mut m, &req::server_time(), T0 + 34_999);
        assert_eq!(r.status, 418);
        let (r, _) = send(&mut m, &req::server_time(), T0 + 35_000);
        assert_eq!((r.status, used(&r)), (200, Some(1)));
        // Waited out instead: served.
        let mut m = Model::new(Setup {
            request_weight_per_min: 40,
            weight_window_ms: 10_000,
            ..model().setup().clone()
        });
        send(&mut m, &req::position_mode(), T0);
        let (r, _) = send(&mut m, &req::position_mode(), T0 + 1000);
        assert_eq!(r.status, 429);
        let (r, _) = send(&mut m, &req::position_mode(), T0 + 10_000);
        assert_eq!((r.status, used(&r)), (200, Some(30)));
        // Another client used it up: the next request is the 429, until a window later.
        m.exhaust_weight();
        let (r, _) = send(&mut m, &req::server_time(), T0 + 20_000);
        assert_eq!((r.status, used(&r)), (429, Some(40)));
        assert_eq!(
            outcome(&r),
            Outcome::RateLimited {
                retry_after_ms: 10_000
            }
        );
        assert_eq!((m.weight_refusals, m.bans), (2, 0));
        // An order weighs nothing, a cancel 1, the open stops of every symbol 40.
        let order = wire(&place(1, dec!(95)), &creds(), T0);
        assert_eq!(request_weight(&order), 0);
        let all = wire(&req::open_stops(None).unwrap(), &creds(), T0);
        assert_eq!(request_weight(&all), 40);
        let cancel = wire(
            &req::cancel_stop(AlgoRef::Client("ts-1-1")).unwrap(),
            &creds(),
            T0,
        );
        assert_eq!(request_weight(&cancel), 1);
    }

    #[test]
    fn the_listen_key_lives_expires_and_is_refused() {
        let mut m = model();
        let (reply, _) = send(&mut m, &req::listen_key_create(), T0);
        let key = snapshot::listen_key(&reply.body).unwrap();
        assert_eq!(m.listen_key(T0), Some(key.as_str()));
        // Another create while alive: the same key.
        let (reply, _) = send(&mut m, &req::listen_key_create(), T0 + 1);
        assert_eq!(snapshot::listen_key(&reply.body).unwrap(), key);
        let (reply, _) = send(&mut m, &req::listen_key_keepalive(), T0 + 1_800_000);
        assert_eq!(reply.status, 200);
        // 60 minutes after the last keepalive: expired, announced.
        assert!(m.tick(T0 + 1_800_000 + 3_599_999).is_empty());
        let out = m.tick(T0 + 1_800_000 + 3_600_000);
        assert_eq!(
            private(&out),
            vec![StreamMessage::ListenKeyExpired { ts: T0 + 5_400_000 }]
        );
        let (reply, _) = send(&mut m, &req::listen_key_keepalive(), T0 + 5_400_001);
        assert_eq!(outcome(&reply), Outcome::BadListenKey);
        // Without the key header: -2015.
        let mut no_key = wire(&req::listen_key_create(), &creds(), T0);
        no_key.headers.clear();
        let (reply, _) = m.handle(&no_key, T0);
        assert!(matches!(
            outcome(&reply),
            Outcome::Fatal { code: -2015, .. }
        ));
    }

    #[test]
    fn the_close_at_market_is_reduce_only() {
        let mut m = with_long();
        let i = btc();
        let close = req::close_at_market(&long(&i), "ts-1-c0").unwrap();
        let (reply, out) = send(&mut m, &close, T0);
        let ack = snapshot::order_ack(&reply.body).unwrap();
        assert_eq!(ack.client_order_id, "ts-1-c0");
        let msgs = private(&out);
        let StreamMessage::Order(fill) = &msgs[0] else {
            panic!()
        };
        assert_eq!(
            fill.closed(1, &i).unwrap(),
            Some(VenueEvent::PositionClosed {
                position: 1,
                ts: T0,
                fill: i.units(dec!(100)).unwrap()
            })
        );
        assert!(fill.reduce_only);
        assert!(m.open_positions().is_empty());
        // Nothing left to reduce: -2022, the client reads the position back.
        let (reply, _) = send(&mut m, &close, T0);
        assert_eq!(outcome(&reply), Outcome::NoPosition);
    }

    #[test]
    fn injected_faults_answer_as_binance_would() {
        let mut m = with_long();
        m.inject(Fault::on(
            "POST",
            "/fapi/v1/algoOrder",
            FaultKind::WouldTrigger,
        ));
        assert_eq!(m.take_fault("DELETE", "/fapi/v1/algoOrder"), None);
        let kind = m.take_fault("POST", "/fapi/v1/algoOrder").unwrap();
        let reply = m.fault_reply(&kind, T0).unwrap();
        assert_eq!(outcome(&reply), Outcome::WouldTrigger);
        assert_eq!(m.take_fault("POST", "/fapi/v1/algoOrder"), None);
        let reply = m.fault_reply(&FaultKind::UnknownOrder, T0).unwrap();
        assert_eq!(outcome(&reply), Outcome::NotFound);
        let reply = m
            .fault_reply(&FaultKind::ServerErrorBeforeApply, T0)
            .unwrap();
        assert!(matches!(outcome(&reply), Outcome::Ambiguous { .. }));
        assert!(matches!(
            outcome(&Model::server_error_after_apply()),
            Outcome::Ambiguous { .. }
        ));
        let reply = m
            .fault_reply(&FaultKind::RateLimited { retry_after_s: 3 }, T0)
            .unwrap();
        assert_eq!(
            outcome(&reply),
            Outcome::RateLimited {
                retry_after_ms: 3000
            }
        );
        assert_eq!(m.fault_reply(&FaultKind::DropAfterApply, T0), None);
        let reply = m
            .fault_reply(&FaultKind::Banned { for_ms: 5000 }, T0)
            .unwrap();
        assert!(
            matches!(outcome(&reply), Outcome::Banned { until_ms: Some(u), .. } if u == T0 + 5000)
        );
    }
}
