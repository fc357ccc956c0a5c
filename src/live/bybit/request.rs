//! Seam commands → Bybit v5 REST requests, exactly as they are sent and signed
//! (`EXCHANGES.md` §2.3–§2.5).
//!
//! The stop is the position's Full-mode stop loss, set and moved in place by
//! `POST /v5/position/trading-stop` (atomic: no cancel, no unprotected window). Bybit reads
//! `stopLoss = "0"` as "remove the stop loss", so a stop price is a [`StopLoss`], which cannot
//! be zero, and the one body that carries `"0"` is [`remove_stop`], built only from a
//! [`Command::Cancel`].

use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::CATEGORY;
use crate::engine::{Instrument, Side};
use crate::live::config::TriggerPrice;
use crate::venue::Command;

pub const PATH_TRADING_STOP: &str = "/v5/position/trading-stop";
pub const PATH_ORDER_CREATE: &str = "/v5/order/create";
pub const PATH_POSITION_LIST: &str = "/v5/position/list";
pub const PATH_INSTRUMENTS_INFO: &str = "/v5/market/instruments-info";
pub const PATH_SERVER_TIME: &str = "/v5/market/time";
pub const PATH_EXECUTION_LIST: &str = "/v5/execution/list";

/// The longest `orderLinkId` Bybit accepts.
pub const MAX_LINK_ID_LEN: usize = 36;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One REST request. `query` (GET) or `body` (POST) is the exact text sent, and the exact
/// text signed: the signature covers these bytes, so nothing may re-encode them later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: &'static str,
    /// GET: the query string after `?` (may be empty). POST: empty.
    pub query: String,
    /// POST: the JSON body. GET: empty.
    pub body: String,
    /// Whether the endpoint needs the signature headers.
    pub signed: bool,
}

impl Request {
    /// What the signature covers after `timestamp + api_key + recv_window`.
    pub fn sign_payload(&self) -> &str {
        match self.method {
            Method::Get => &self.query,
            Method::Post => &self.body,
        }
    }

    /// The path with its query, as on the request line.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.to_string()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    fn get(path: &'static str, query: String, signed: bool) -> Request {
        Request {
            method: Method::Get,
            path,
            query,
            body: String::new(),
            signed,
        }
    }

    fn post(path: &'static str, body: &impl Serialize) -> Request {
        Request {
            method: Method::Post,
            path,
            query: String::new(),
            // Serialising plain structs of strings, integers and booleans cannot fail.
            body: serde_json::to_string(body).expect("a request body serialises"),
            signed: true,
        }
    }
}

/// Why a command cannot become a request. Each names what was wrong; nothing is sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error(
        "{symbol}: stop {units} units is not a positive price (Bybit reads 0 as \"remove the stop\")"
    )]
    NotPositive { symbol: String, units: i64 },
    #[error("{symbol}: stop {price} is not on the tick grid ({tick})")]
    OffTick {
        symbol: String,
        price: Decimal,
        tick: Decimal,
    },
    #[error(
        "{symbol}: the tick size {tick} is finer than the instrument's {decimals} price decimals"
    )]
    BadInstrument {
        symbol: String,
        tick: Decimal,
        decimals: u32,
    },
    #[error("{symbol}: position size {size} cannot be closed (must be > 0)")]
    NoSize { symbol: String, size: Decimal },
    #[error("{symbol}: positionIdx {idx} is the other side of a hedge-mode {side} position")]
    SideMismatch {
        symbol: String,
        idx: u8,
        side: &'static str,
    },
    #[error("orderLinkId \"{0}\" is longer than 36 characters or has characters Bybit refuses")]
    BadLinkId(String),
    #[error("\"{0}\" is not a Bybit symbol")]
    BadSymbol(String),
}

/// Bybit's `positionIdx`: which position of a symbol (`EXCHANGES.md` §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionIdx {
    /// `0`: one-way mode, one position per symbol.
    OneWay,
    /// `1`: hedge mode, the Buy (long) side.
    HedgeBuy,
    /// `2`: hedge mode, the Sell (short) side.
    HedgeSell,
}

impl PositionIdx {
    pub fn as_u8(self) -> u8 {
        match self {
            PositionIdx::OneWay => 0,
            PositionIdx::HedgeBuy => 1,
            PositionIdx::HedgeSell => 2,
        }
    }

    pub fn from_u8(n: i64) -> Option<PositionIdx> {
        match n {
            0 => Some(PositionIdx::OneWay),
            1 => Some(PositionIdx::HedgeBuy),
            2 => Some(PositionIdx::HedgeSell),
            _ => None,
        }
    }

    /// The index of a `side` position in one-way or hedge mode.
    pub fn of(hedge: bool, side: Side) -> PositionIdx {
        match (hedge, side) {
            (false, _) => PositionIdx::OneWay,
            (true, Side::Long) => PositionIdx::HedgeBuy,
            (true, Side::Short) => PositionIdx::HedgeSell,
        }
    }
}

/// Bybit's `slTriggerBy`: the price the stop is judged against.
pub fn trigger_by(t: TriggerPrice) -> &'static str {
    match t {
        TriggerPrice::Mark => "MarkPrice",
        TriggerPrice::Last => "LastPrice",
    }
}

/// The position a command is for, as Bybit keys it (symbol + `positionIdx`), with what the
/// requests need: the side (a close goes the other way), the size and the instrument (prices
/// in the seam are integer units of it).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub symbol: &'a str,
    pub position_idx: PositionIdx,
    pub side: Side,
    pub size: Decimal,
    pub instrument: &'a Instrument,
}

impl Target<'_> {
    fn check(&self) -> Result<(), RequestError> {
        check_symbol(self.symbol)?;
        let mismatch = matches!(
            (self.position_idx, self.side),
            (PositionIdx::HedgeBuy, Side::Short) | (PositionIdx::HedgeSell, Side::Long)
        );
        if mismatch {
            return Err(RequestError::SideMismatch {
                symbol: self.symbol.to_string(),
                idx: self.position_idx.as_u8(),
                side: self.side.as_str(),
            });
        }
        Ok(())
    }
}

fn check_symbol(symbol: &str) -> Result<(), RequestError> {
    let ok = !symbol.is_empty()
        && symbol
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadSymbol(symbol.to_string()))
    }
}

/// A stop-loss price that Bybit will read as a price: positive and on the tick grid.
/// There is no way to build a zero one, so a set request can never remove the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopLoss(Decimal);

impl StopLoss {
    /// `units` of `instrument` as a stop-loss price.
    pub fn from_units(
        symbol: &str,
        units: i64,
        instrument: &Instrument,
    ) -> Result<StopLoss, RequestError> {
        if units <= 0 {
            return Err(RequestError::NotPositive {
                symbol: symbol.to_string(),
                units,
            });
        }
        let tick = instrument
            .units(instrument.tick_size)
            .filter(|t| *t > 0)
            .ok_or_else(|| RequestError::BadInstrument {
                symbol: symbol.to_string(),
                tick: instrument.tick_size,
                decimals: instrument.price_decimals,
            })?;
        let price = instrument.decimal(units);
        if units % tick != 0 {
            return Err(RequestError::OffTick {
                symbol: symbol.to_string(),
                price,
                tick: instrument.tick_size,
            });
        }
        Ok(StopLoss(price))
    }

    pub fn price(&self) -> Decimal {
        self.0
    }

    /// The exact decimal text sent (`61250.5`; no exponent, no trailing zeros).
    pub fn text(&self) -> String {
        self.0.normalize().to_string()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TradingStopBody<'a> {
    category: &'static str,
    symbol: &'a str,
    tpsl_mode: &'static str,
    position_idx: u8,
    stop_loss: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sl_trigger_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sl_order_type: Option<&'static str>,
}

/// `POST /v5/position/trading-stop`: set the position's Full-mode stop loss at `stop`, or move
/// it there (Bybit modifies the existing Full TP/SL in place).
pub fn set_stop(
    target: &Target<'_>,
    stop: StopLoss,
    trigger: TriggerPrice,
) -> Result<Request, RequestError> {
    target.check()?;
    Ok(Request::post(
        PATH_TRADING_STOP,
        &TradingStopBody {
            category: CATEGORY,
            symbol: target.symbol,
            tpsl_mode: "Full",
            position_idx: target.position_idx.as_u8(),
            stop_loss: stop.text(),
            sl_trigger_by: Some(trigger_by(trigger)),
            // Full mode supports only Market.
            sl_order_type: Some("Market"),
        },
    ))
}

/// `POST /v5/position/trading-stop` with `stopLoss = "0"`: the docs' way to remove a Full
/// stop loss ("0 means cancel SL"). Built only from a [`Command::Cancel`].
pub fn remove_stop(target: &Target<'_>) -> Result<Request, RequestError> {
    target.check()?;
    Ok(Request::post(
        PATH_TRADING_STOP,
        &TradingStopBody {
            category: CATEGORY,
            symbol: target.symbol,
            tpsl_mode: "Full",
            position_idx: target.position_idx.as_u8(),
            stop_loss: "0".to_string(),
            sl_trigger_by: None,
            sl_order_type: None,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderCreateBody<'a> {
    category: &'static str,
    symbol: &'a str,
    side: &'static str,
    order_type: &'static str,
    qty: String,
    position_idx: u8,
    reduce_only: bool,
    order_link_id: &'a str,
}

/// The `orderLinkId` of the `attempt`-th close at market of `position` (`ts-<pos>-c<n>`,
/// ≤ 36 characters). The caller persists `attempt` before sending, so a retry after an
/// ambiguous outcome reuses the id (Bybit refuses a duplicate) and a new close after a
/// definitive refusal gets a new one.
pub fn close_link_id(position: u64, attempt: u32) -> String {
    format!("ts-{position}-c{attempt}")
}

fn check_link_id(id: &str) -> Result<(), RequestError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LINK_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadLinkId(id.to_string()))
    }
}

/// `POST /v5/order/create`: close the whole position at market, reduce-only (so it can never
/// open the other way), the side opposite the position's.
pub fn close_at_market(target: &Target<'_>, link_id: &str) -> Result<Request, RequestError> {
    target.check()?;
    check_link_id(link_id)?;
    if target.size <= Decimal::ZERO {
        return Err(RequestError::NoSize {
            symbol: target.symbol.to_string(),
            size: target.size,
        });
    }
    Ok(Request::post(
        PATH_ORDER_CREATE,
        &OrderCreateBody {
            category: CATEGORY,
            symbol: target.symbol,
            side: match target.side {
                Side::Long => "Sell",
                Side::Short => "Buy",
            },
            order_type: "Market",
            qty: target.size.normalize().to_string(),
            position_idx: target.position_idx.as_u8(),
            reduce_only: true,
            order_link_id: link_id,
        },
    ))
}

/// The request for a seam command on `target`. `close_attempt` numbers a close at market
/// (see [`close_link_id`]). A `Query` reads the position back: on Bybit the stop is the
/// position's `stopLoss`, so that is where an ambiguous outcome is resolved.
pub fn for_command(
    command: &Command,
    target: &Target<'_>,
    trigger: TriggerPrice,
    close_attempt: u32,
) -> Result<Request, RequestError> {
    // The target first: a wrong position is the bigger mistake than a wrong price.
    target.check()?;
    match *command {
        Command::Place { stop, .. } | Command::Amend { stop, .. } => {
            let stop = StopLoss::from_units(target.symbol, stop, target.instrument)?;
            set_stop(target, stop, trigger)
        }
        Command::Cancel { .. } => remove_stop(target),
        Command::CloseAtMarket { position } => {
            close_at_market(target, &close_link_id(position, close_attempt))
        }
        Command::Query { .. } => position_list(PositionFilter::Symbol(target.symbol), None),
    }
}

/// Which positions `position/list` returns (linear needs a symbol or a settle coin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionFilter<'a> {
    Symbol(&'a str),
    /// Every position settled in this coin (`USDT`): for `symbols = ["*"]`.
    SettleCoin(&'a str),
}

/// The query string, in the order given: signed exactly as sent (Bybit asks for no sorting,
/// only that the signed string is the one sent; Binance's `/fapi` the same).
pub(crate) struct Query(pub(crate) String);

impl Query {
    pub(crate) fn new() -> Query {
        Query(String::new())
    }

    pub(crate) fn pair(mut self, key: &str, value: &str) -> Query {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(key);
        self.0.push('=');
        encode_into(&mut self.0, value);
        self
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (a cursor may hold `%`, `,`, `=`).
fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `GET /v5/position/list?category=linear&symbol=…|settleCoin=…[&limit=200][&cursor=…]`.
pub fn position_list(
    filter: PositionFilter<'_>,
    cursor: Option<&str>,
) -> Result<Request, RequestError> {
    let q = Query::new().pair("category", CATEGORY);
    let q = match filter {
        PositionFilter::Symbol(s) => {
            check_symbol(s)?;
            q.pair("symbol", s)
        }
        PositionFilter::SettleCoin(c) => {
            check_symbol(c)?;
            // The most a page holds, so "*" needs few pages.
            q.pair("settleCoin", c).pair("limit", "200")
        }
    };
    let q = match cursor {
        Some(c) if !c.is_empty() => q.pair("cursor", c),
        _ => q,
    };
    Ok(Request::get(PATH_POSITION_LIST, q.0, true))
}

/// `GET /v5/market/instruments-info?category=linear[&symbol=…][&limit=1000][&cursor=…]`
/// (public: not signed).
pub fn instruments_info(
    symbol: Option<&str>,
    cursor: Option<&str>,
) -> Result<Request, RequestError> {
    let q = Query::new().pair("category", CATEGORY);
    let q = match symbol {
        Some(s) => {
            check_symbol(s)?;
            q.pair("symbol", s)
        }
        None => q.pair("limit", "1000"),
    };
    let q = match cursor {
        Some(c) if !c.is_empty() => q.pair("cursor", c),
        _ => q,
    };
    Ok(Request::get(PATH_INSTRUMENTS_INFO, q.0, false))
}

/// `GET /v5/execution/list?category=linear&symbol=…[&startTime=…]&limit=100[&cursor=…]`: the
/// fills of `symbol` since `start_ms`, for the re-check after a stream gap (what closed a
/// position while the stream was away, and at what price).
pub fn execution_list(
    symbol: &str,
    start_ms: Option<i64>,
    cursor: Option<&str>,
) -> Result<Request, RequestError> {
    check_symbol(symbol)?;
    let q = Query::new()
        .pair("category", CATEGORY)
        .pair("symbol", symbol);
    let q = match start_ms {
        Some(ms) => q.pair("startTime", &ms.to_string()),
        None => q,
    };
    let q = q.pair("limit", "100");
    let q = match cursor {
        Some(c) if !c.is_empty() => q.pair("cursor", c),
        _ => q,
    };
    Ok(Request::get(PATH_EXECUTION_LIST, q.0, true))
}

/// `GET /v5/market/time` (public): the server clock, for the offset and `10002`.
pub fn server_time() -> Request {
    Request::get(PATH_SERVER_TIME, String::new(), false)
}

/// The stream message subscribing to `topics` (`tickers.BTCUSDT`, `position`, …).
pub fn ws_subscribe(topics: &[String]) -> String {
    #[derive(Serialize)]
    struct Op<'a> {
        op: &'static str,
        args: &'a [String],
    }
    serde_json::to_string(&Op {
        op: "subscribe",
        args: topics,
    })
    .expect("strings serialise")
}

/// The heartbeat Bybit asks for every 20 s.
pub const WS_PING: &str = r#"{"op":"ping"}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::OrderRef;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;
    use serde_json::Value;

    fn btc() -> Instrument {
        Instrument::new(dec!(0.1))
    }

    fn target(instrument: &Instrument) -> Target<'_> {
        Target {
            symbol: "BTCUSDT",
            position_idx: PositionIdx::OneWay,
            side: Side::Long,
            size: dec!(0.500),
            instrument,
        }
    }

    fn oref(seq: u32) -> OrderRef {
        OrderRef { position: 42, seq }
    }

    fn units(i: &Instrument, d: Decimal) -> i64 {
        i.units(d).unwrap()
    }

    fn body(r: &Request) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn place_is_a_full_mode_trading_stop_as_documented() {
        let i = btc();
        let place = Command::Place {
            order: oref(1),
            stop: units(&i, dec!(61250.0)),
        };
        let r = for_command(&place, &target(&i), TriggerPrice::Mark, 0).unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/v5/position/trading-stop");
        assert!(r.signed);
        assert_eq!(r.sign_payload(), r.body);
        // EXCHANGES.md §2.3's example body, byte for byte (our decimal text drops ".0").
        assert_eq!(
            r.body,
            r#"{"category":"linear","symbol":"BTCUSDT","tpslMode":"Full","positionIdx":0,"stopLoss":"61250","slTriggerBy":"MarkPrice","slOrderType":"Market"}"#
        );
        let amend = Command::Amend {
            order: oref(2),
            replaces: oref(1),
            stop: units(&i, dec!(61300.5)),
        };
        let hedge_short = Target {
            position_idx: PositionIdx::HedgeSell,
            side: Side::Short,
            ..target(&i)
        };
        let r = for_command(&amend, &hedge_short, TriggerPrice::Last, 0).unwrap();
        let b = body(&r);
        assert_eq!(b["stopLoss"], "61300.5");
        assert_eq!(b["positionIdx"], 2);
        assert_eq!(b["slTriggerBy"], "LastPrice");
        assert_eq!(b["tpslMode"], "Full");
    }

    #[test]
    fn a_zero_negative_or_off_grid_stop_is_an_error_never_a_body() {
        let i = btc();
        for stop in [0, -1, -units(&i, dec!(100))] {
            for cmd in [
                Command::Place {
                    order: oref(1),
                    stop,
                },
                Command::Amend {
                    order: oref(2),
                    replaces: oref(1),
                    stop,
                },
            ] {
                let e = for_command(&cmd, &target(&i), TriggerPrice::Mark, 0).unwrap_err();
                assert!(matches!(e, RequestError::NotPositive { .. }), "{e}");
                assert!(e.to_string().contains("BTCUSDT"), "{e}");
            }
        }
        let e = for_command(
            &Command::Place {
                order: oref(1),
                stop: units(&i, dec!(61250.05)),
            },
            &target(&i),
            TriggerPrice::Mark,
            0,
        )
        .unwrap_err();
        assert!(matches!(e, RequestError::OffTick { .. }), "{e}");
        assert!(e.to_string().contains("61250.05"), "{e}");
        // An instrument whose tick is finer than its units cannot price anything.
        let bad = Instrument::with_price_decimals(dec!(0.001), 2);
        let e = StopLoss::from_units("BTCUSDT", 100, &bad).unwrap_err();
        assert!(matches!(e, RequestError::BadInstrument { .. }), "{e}");
    }

    #[test]
    fn cancel_removes_the_stop_with_the_documented_zero() {
        let i = btc();
        let r = for_command(
            &Command::Cancel { order: oref(1) },
            &target(&i),
            TriggerPrice::Mark,
            0,
        )
        .unwrap();
        assert_eq!(r.path, PATH_TRADING_STOP);
        assert_eq!(
            r.body,
            r#"{"category":"linear","symbol":"BTCUSDT","tpslMode":"Full","positionIdx":0,"stopLoss":"0"}"#
        );
        assert_eq!(r, remove_stop(&target(&i)).unwrap());
    }

    #[test]
    fn close_at_market_is_reduce_only_the_other_way() {
        let i = btc();
        let r = for_command(
            &Command::CloseAtMarket { position: 42 },
            &target(&i),
            TriggerPrice::Mark,
            0,
        )
        .unwrap();
        assert_eq!(r.path, "/v5/order/create");
        assert_eq!(
            r.body,
            r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0.5","positionIdx":0,"reduceOnly":true,"orderLinkId":"ts-42-c0"}"#
        );
        let short = Target {
            side: Side::Short,
            position_idx: PositionIdx::HedgeSell,
            size: dec!(12),
            ..target(&i)
        };
        let b = body(&close_at_market(&short, "ts-42-c3").unwrap());
        assert_eq!(b["side"], "Buy");
        assert_eq!(b["qty"], "12");
        assert_eq!(b["positionIdx"], 2);
        assert_eq!(b["orderLinkId"], "ts-42-c3");

        let flat = Target {
            size: dec!(0),
            ..target(&i)
        };
        assert!(matches!(
            close_at_market(&flat, "ts-42-c0"),
            Err(RequestError::NoSize { .. })
        ));
        let long_id = "x".repeat(37);
        assert!(matches!(
            close_at_market(&target(&i), &long_id),
            Err(RequestError::BadLinkId(_))
        ));
        assert!(close_at_market(&target(&i), "ts 1").is_err());
        // The longest ids we make fit Bybit's limit.
        assert!(check_link_id(&close_link_id(u64::MAX, u32::MAX)).is_ok());
        let seq_id = OrderRef {
            position: u64::MAX,
            seq: u32::MAX,
        }
        .client_id();
        assert!(check_link_id(&seq_id).is_ok());
    }

    #[test]
    fn hedge_index_must_match_the_side() {
        let i = btc();
        let wrong = Target {
            position_idx: PositionIdx::HedgeBuy,
            side: Side::Short,
            ..target(&i)
        };
        for cmd in [
            Command::Place {
                order: oref(1),
                stop: 1000,
            },
            Command::Cancel { order: oref(1) },
            Command::CloseAtMarket { position: 42 },
        ] {
            let e = for_command(&cmd, &wrong, TriggerPrice::Mark, 0).unwrap_err();
            assert!(matches!(e, RequestError::SideMismatch { .. }), "{e}");
        }
        assert_eq!(PositionIdx::of(false, Side::Short), PositionIdx::OneWay);
        assert_eq!(PositionIdx::of(true, Side::Long), PositionIdx::HedgeBuy);
        assert_eq!(PositionIdx::of(true, Side::Short), PositionIdx::HedgeSell);
        for n in 0..3 {
            assert_eq!(PositionIdx::from_u8(n).unwrap().as_u8() as i64, n);
        }
        assert_eq!(PositionIdx::from_u8(3), None);
    }

    #[test]
    fn queries_are_built_in_a_fixed_order_and_encoded() {
        let i = btc();
        let r = for_command(
            &Command::Query { order: oref(1) },
            &target(&i),
            TriggerPrice::Mark,
            0,
        )
        .unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.path_and_query(),
            "/v5/position/list?category=linear&symbol=BTCUSDT"
        );
        assert_eq!(r.sign_payload(), "category=linear&symbol=BTCUSDT");
        assert!(r.body.is_empty() && r.signed);

        let r = position_list(PositionFilter::SettleCoin("USDT"), Some("a%3D1,b")).unwrap();
        assert_eq!(
            r.query,
            "category=linear&settleCoin=USDT&limit=200&cursor=a%253D1%2Cb"
        );
        let r = instruments_info(Some("ETHUSDT"), None).unwrap();
        assert_eq!(
            r.path_and_query(),
            "/v5/market/instruments-info?category=linear&symbol=ETHUSDT"
        );
        assert!(!r.signed);
        let r = instruments_info(None, Some("next")).unwrap();
        assert_eq!(r.query, "category=linear&limit=1000&cursor=next");
        assert!(position_list(PositionFilter::Symbol("BTC&x=1"), None).is_err());
        assert_eq!(server_time().path_and_query(), "/v5/market/time");
        let r = execution_list("BTCUSDT", Some(1670889600000), None).unwrap();
        assert_eq!(
            r.path_and_query(),
            "/v5/execution/list?category=linear&symbol=BTCUSDT&startTime=1670889600000&limit=100"
        );
        assert!(r.signed);
        assert_eq!(
            execution_list("ETHUSDT", None, Some("p2")).unwrap().query,
            "category=linear&symbol=ETHUSDT&limit=100&cursor=p2"
        );
        assert!(execution_list("eth", None, None).is_err());
    }

    #[test]
    fn stream_control_messages() {
        assert_eq!(
            ws_subscribe(&["tickers.BTCUSDT".into(), "tickers.ETHUSDT".into()]),
            r#"{"op":"subscribe","args":["tickers.BTCUSDT","tickers.ETHUSDT"]}"#
        );
        let v: Value = serde_json::from_str(WS_PING).unwrap();
        assert_eq!(v["op"], "ping");
    }

    proptest! {
        /// Any stop the engine can hold (positive units on the tick grid) reaches the body as
        /// decimal text that reads back to exactly those units, and is never Bybit's "0".
        #[test]
        fn stop_text_round_trips_exactly(
            tick_mantissa in 1i64..1000,
            tick_scale in 0u32..8,
            extra_decimals in 0u32..4,
            ticks in 1i64..1_000_000_000,
            amend in any::<bool>(),
        ) {
            let tick = Decimal::new(tick_mantissa, tick_scale);
            let i = Instrument::with_price_decimals(tick, tick.normalize().scale() + extra_decimals);
            let stop = ticks * i.units(tick).unwrap();
            let cmd = if amend {
                Command::Amend { order: oref(2), replaces: oref(1), stop }
            } else {
                Command::Place { order: oref(1), stop }
            };
            let r = for_command(&cmd, &target(&i), TriggerPrice::Mark, 0).unwrap();
            let b: Value = serde_json::from_str(&r.body).unwrap();
            let text = b["stopLoss"].as_str().unwrap();
            prop_assert!(!text.contains('e') && !text.contains('E'), "{}", text);
            let back: Decimal = text.parse().unwrap();
            prop_assert!(back > Decimal::ZERO);
            prop_assert_ne!(text, "0");
            prop_assert_eq!(i.units(back), Some(stop));
        }
    }
}
