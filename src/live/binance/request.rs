//! Seam commands → Binance USD-M REST requests, exactly as they are sent and signed
//! (`EXCHANGES.md` §0, §1.2–§1.6).
//!
//! Since 2025-12-09 every stop is an Algo Order (`/fapi/v1/algoOrder`, `algoType=CONDITIONAL`,
//! `type=STOP_MARKET`, `triggerPrice`, `closePosition=true`); a stop sent to `/fapi/v1/order`
//! gets `-4120`, so that endpoint carries only the reduce-only market close. There is no
//! amend: a [`Command::Amend`] has no request ([`RequestError::NoAmend`]); the lifecycle moves
//! a Binance stop by cancel, then create.
//!
//! Everything goes in the query string, the body stays empty (what nautilus does): the
//! signature then covers exactly the query sent. [`Request::params`] is the query without
//! `recvWindow`, `timestamp` and `signature`, which the signer appends
//! ([`Request::to_sign`]).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::{Instrument, Side};
use crate::live::bybit::request::Query;
use crate::live::config::TriggerPrice;
use crate::venue::Command;

pub const PATH_TIME: &str = "/fapi/v1/time";
pub const PATH_EXCHANGE_INFO: &str = "/fapi/v1/exchangeInfo";
pub const PATH_POSITION_RISK: &str = "/fapi/v2/positionRisk";
pub const PATH_POSITION_MODE: &str = "/fapi/v1/positionSide/dual";
pub const PATH_ALGO_ORDER: &str = "/fapi/v1/algoOrder";
pub const PATH_OPEN_ALGO_ORDERS: &str = "/fapi/v1/openAlgoOrders";
pub const PATH_ORDER: &str = "/fapi/v1/order";
pub const PATH_LISTEN_KEY: &str = "/fapi/v1/listenKey";

/// The header carrying the API key (signed and `USER_STREAM` endpoints).
pub const HEADER_API_KEY: &str = "X-MBX-APIKEY";

/// The longest `clientAlgoId` / `newClientOrderId` Binance accepts (`-4015`).
pub const MAX_CLIENT_ID_LEN: usize = 36;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// What an endpoint needs besides its parameters (Binance's security types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `NONE`: market data, server time.
    Public,
    /// `USER_STREAM`: the API-key header, no signature (listenKey).
    ApiKey,
    /// `TRADE` / `USER_DATA`: the header and `timestamp`, `recvWindow`, `signature`.
    Signed,
}

/// One REST request. `params` is the exact query text of the endpoint's own parameters, in
/// the order sent; nothing may re-encode it later, since the signature covers these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: &'static str,
    pub params: String,
    pub security: Security,
}

impl Request {
    fn new(method: Method, path: &'static str, params: Query, security: Security) -> Request {
        Request {
            method,
            path,
            params: params.0,
            security,
        }
    }

    /// The query a signed request sends before `&signature=`: the parameters, then
    /// `recvWindow` and `timestamp` (the order of `EXCHANGES.md` §1.3's example). The HMAC
    /// covers exactly this text.
    pub fn to_sign(&self, timestamp_ms: i64, recv_window_ms: u64) -> String {
        let tail = format!("recvWindow={recv_window_ms}&timestamp={timestamp_ms}");
        if self.params.is_empty() {
            tail
        } else {
            format!("{}&{tail}", self.params)
        }
    }

    /// The path with the parameters, as on the request line of an unsigned request.
    pub fn path_and_query(&self) -> String {
        if self.params.is_empty() {
            self.path.to_string()
        } else {
            format!("{}?{}", self.path, self.params)
        }
    }

    /// A label for metrics and logs: `POST /fapi/v1/algoOrder`.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method.as_str(), self.path)
    }
}

/// Why a command cannot become a request. Each names what was wrong; nothing is sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("{symbol}: stop {units} units is not a positive price")]
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
    #[error("{symbol}: positionSide {position_side} is the other side of a {side} position")]
    SideMismatch {
        symbol: String,
        position_side: &'static str,
        side: &'static str,
    },
    #[error("client id \"{0}\" is longer than 36 characters or has characters Binance refuses")]
    BadClientId(String),
    #[error("\"{0}\" is not a Binance symbol")]
    BadSymbol(String),
    #[error("Binance has no amend for stops: move one by cancel, then create")]
    NoAmend,
}

/// Binance's `positionSide`: `BOTH` in one-way mode, `LONG`/`SHORT` in hedge mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionSide {
    Both,
    Long,
    Short,
}

impl PositionSide {
    pub fn as_str(self) -> &'static str {
        match self {
            PositionSide::Both => "BOTH",
            PositionSide::Long => "LONG",
            PositionSide::Short => "SHORT",
        }
    }

    pub fn parse(text: &str) -> Option<PositionSide> {
        match text {
            "BOTH" => Some(PositionSide::Both),
            "LONG" => Some(PositionSide::Long),
            "SHORT" => Some(PositionSide::Short),
            _ => None,
        }
    }

    /// The side of a `side` position in one-way (`hedge = false`) or hedge mode.
    pub fn of(hedge: bool, side: Side) -> PositionSide {
        match (hedge, side) {
            (false, _) => PositionSide::Both,
            (true, Side::Long) => PositionSide::Long,
            (true, Side::Short) => PositionSide::Short,
        }
    }
}

/// Binance's `workingType`: the price a stop is judged against.
pub fn working_type(t: TriggerPrice) -> &'static str {
    match t {
        TriggerPrice::Mark => "MARK_PRICE",
        TriggerPrice::Last => "CONTRACT_PRICE",
    }
}

/// The order side that closes a `side` position.
pub fn closing_side(side: Side) -> &'static str {
    match side {
        Side::Long => "SELL",
        Side::Short => "BUY",
    }
}

/// The position a command is for (symbol + `positionSide`), with what the requests need: the
/// side (a stop or a close goes the other way), the size (a close's quantity) and the
/// instrument (prices in the seam are integer units of it).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub symbol: &'a str,
    pub position_side: PositionSide,
    pub side: Side,
    pub size: Decimal,
    pub instrument: &'a Instrument,
}

impl Target<'_> {
    fn check(&self) -> Result<(), RequestError> {
        check_symbol(self.symbol)?;
        let mismatch = matches!(
            (self.position_side, self.side),
            (PositionSide::Long, Side::Short) | (PositionSide::Short, Side::Long)
        );
        if mismatch {
            return Err(RequestError::SideMismatch {
                symbol: self.symbol.to_string(),
                position_side: self.position_side.as_str(),
                side: self.side.as_str(),
            });
        }
        Ok(())
    }

    /// `positionSide` is sent in hedge mode only ("must be sent in Hedge Mode").
    fn with_position_side(&self, q: Query) -> Query {
        match self.position_side {
            PositionSide::Both => q,
            ps => q.pair("positionSide", ps.as_str()),
        }
    }
}

fn check_symbol(symbol: &str) -> Result<(), RequestError> {
    let ok = !symbol.is_empty()
        && symbol
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadSymbol(symbol.to_string()))
    }
}

/// A client id Binance takes (`clientAlgoId`, `newClientOrderId`): ASCII
/// `[A-Za-z0-9._:/-]`, 1 to 36 characters (`EXCHANGES.md` §1.2).
pub fn check_client_id(id: &str) -> Result<(), RequestError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'));
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadClientId(id.to_string()))
    }
}

/// A trigger price Binance will take: positive and on the `PRICE_FILTER` tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPrice(Decimal);

impl StopPrice {
    /// `units` of `instrument` as a trigger price.
    pub fn from_units(
        symbol: &str,
        units: i64,
        instrument: &Instrument,
    ) -> Result<StopPrice, RequestError> {
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
        Ok(StopPrice(price))
    }

    /// `units` of a `side` position's stop moved onto `instrument`'s tick grid without
    /// loosening it (`EXCHANGES.md` §1.5): a long's (a sell stop) up to the next tick, a
    /// short's down. The engine's stops are on its own grid; they leave it only when the
    /// exchange changed the tick since (a `-4014` and a refreshed `exchangeInfo`).
    pub fn onto_grid(
        symbol: &str,
        units: i64,
        side: Side,
        instrument: &Instrument,
    ) -> Result<i64, RequestError> {
        let tick = instrument
            .units(instrument.tick_size)
            .filter(|t| *t > 0)
            .ok_or_else(|| RequestError::BadInstrument {
                symbol: symbol.to_string(),
                tick: instrument.tick_size,
                decimals: instrument.price_decimals,
            })?;
        let below = units - units.rem_euclid(tick);
        Ok(match side {
            _ if below == units => units,
            Side::Long => below.saturating_add(tick),
            Side::Short => below,
        })
    }

    pub fn price(&self) -> Decimal {
        self.0
    }

    /// The exact decimal text sent (`61250.5`; no exponent, no trailing zeros).
    pub fn text(&self) -> String {
        self.0.normalize().to_string()
    }
}

/// How a stop is sent besides its price: the trigger price source and `priceProtect`
/// (default off: a protective stop that refuses to fire in a dislocation is worse than
/// slippage, `EXCHANGES.md` §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StopOptions {
    pub trigger: TriggerPrice,
    pub price_protect: bool,
}

/// `POST /fapi/v1/algoOrder`: a `STOP_MARKET` conditional order closing the whole position
/// (`closePosition=true`, so size changes need no update) at `stop`, judged on the
/// `workingType` price, identified by `client_algo_id`.
pub fn new_stop(
    target: &Target<'_>,
    stop: StopPrice,
    options: StopOptions,
    client_algo_id: &str,
) -> Result<Request, RequestError> {
    target.check()?;
    check_client_id(client_algo_id)?;
    let q = Query::new()
        .pair("algoType", "CONDITIONAL")
        .pair("symbol", target.symbol)
        .pair("side", closing_side(target.side));
    let q = target
        .with_position_side(q)
        .pair("type", "STOP_MARKET")
        .pair("triggerPrice", &stop.text())
        .pair("workingType", working_type(options.trigger))
        .pair("closePosition", "true")
        .pair(
            "priceProtect",
            if options.price_protect {
                "TRUE"
            } else {
                "FALSE"
            },
        )
        .pair("clientAlgoId", client_algo_id);
    Ok(Request::new(
        Method::Post,
        PATH_ALGO_ORDER,
        q,
        Security::Signed,
    ))
}

/// Which algo order a cancel or query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgoRef<'a> {
    /// Our deterministic id: what a restart and an ambiguous outcome look up.
    Client(&'a str),
    /// Binance's id.
    Algo(i64),
}

impl AlgoRef<'_> {
    fn pair(&self, q: Query) -> Result<Query, RequestError> {
        Ok(match *self {
            AlgoRef::Client(id) => {
                check_client_id(id)?;
                q.pair("clientAlgoId", id)
            }
            AlgoRef::Algo(id) => q.pair("algoId", &id.to_string()),
        })
    }
}

/// `DELETE /fapi/v1/algoOrder?clientAlgoId=…|algoId=…`.
pub fn cancel_stop(id: AlgoRef<'_>) -> Result<Request, RequestError> {
    Ok(Request::new(
        Method::Delete,
        PATH_ALGO_ORDER,
        id.pair(Query::new())?,
        Security::Signed,
    ))
}

/// `GET /fapi/v1/algoOrder?clientAlgoId=…|algoId=…`.
pub fn query_stop(id: AlgoRef<'_>) -> Result<Request, RequestError> {
    Ok(Request::new(
        Method::Get,
        PATH_ALGO_ORDER,
        id.pair(Query::new())?,
        Security::Signed,
    ))
}

/// `GET /fapi/v1/openAlgoOrders[?symbol=…]` (weight 1 with a symbol, 40 without).
pub fn open_stops(symbol: Option<&str>) -> Result<Request, RequestError> {
    let q = match symbol {
        Some(s) => {
            check_symbol(s)?;
            Query::new().pair("symbol", s)
        }
        None => Query::new(),
    };
    Ok(Request::new(
        Method::Get,
        PATH_OPEN_ALGO_ORDERS,
        q,
        Security::Signed,
    ))
}

/// The `newClientOrderId` of the `attempt`-th close at market of `position` (`ts-<pos>-c<n>`,
/// ≤ 36 characters). The caller persists `attempt` before sending, so a retry after an
/// ambiguous outcome reuses the id and a new close after a definitive refusal gets a new one.
pub fn close_client_id(position: u64, attempt: u32) -> String {
    format!("ts-{position}-c{attempt}")
}

/// `POST /fapi/v1/order`: close the whole position at market. One-way mode sends
/// `reduceOnly=true` (it can never open the other way); hedge mode may not send it
/// ("cannot be sent in Hedge Mode") and closes by `positionSide` with the closing side.
pub fn close_at_market(target: &Target<'_>, client_id: &str) -> Result<Request, RequestError> {
    target.check()?;
    check_client_id(client_id)?;
    if target.size <= Decimal::ZERO {
        return Err(RequestError::NoSize {
            symbol: target.symbol.to_string(),
            size: target.size,
        });
    }
    let q = Query::new()
        .pair("symbol", target.symbol)
        .pair("side", closing_side(target.side));
    let q = target
        .with_position_side(q)
        .pair("type", "MARKET")
        .pair("quantity", &target.size.normalize().to_string());
    let q = match target.position_side {
        PositionSide::Both => q.pair("reduceOnly", "true"),
        _ => q,
    };
    let q = q.pair("newClientOrderId", client_id);
    Ok(Request::new(Method::Post, PATH_ORDER, q, Security::Signed))
}

/// The request for a seam command on `target`. `close_attempt` numbers a close at market
/// (see [`close_client_id`]). A `Query` reads the algo order back by its `clientAlgoId`.
pub fn for_command(
    command: &Command,
    target: &Target<'_>,
    options: StopOptions,
    close_attempt: u32,
) -> Result<Request, RequestError> {
    // The target first: a wrong position is the bigger mistake than a wrong price.
    target.check()?;
    match *command {
        Command::Place { order, stop } => {
            let stop = StopPrice::from_units(target.symbol, stop, target.instrument)?;
            new_stop(target, stop, options, &order.client_id())
        }
        Command::Amend { .. } => Err(RequestError::NoAmend),
        Command::Cancel { order } => cancel_stop(AlgoRef::Client(&order.client_id())),
        Command::CloseAtMarket { position } => {
            close_at_market(target, &close_client_id(position, close_attempt))
        }
        Command::Query { order } => query_stop(AlgoRef::Client(&order.client_id())),
    }
}

/// `GET /fapi/v1/positionRisk` (v2, signed), all symbols or one.
pub fn position_risk(symbol: Option<&str>) -> Result<Request, RequestError> {
    let q = match symbol {
        Some(s) => {
            check_symbol(s)?;
            Query::new().pair("symbol", s)
        }
        None => Query::new(),
    };
    Ok(Request::new(
        Method::Get,
        PATH_POSITION_RISK,
        q,
        Security::Signed,
    ))
}

/// `GET /fapi/v1/positionSide/dual` (signed): one-way or hedge mode.
pub fn position_mode() -> Request {
    Request::new(
        Method::Get,
        PATH_POSITION_MODE,
        Query::new(),
        Security::Signed,
    )
}

/// `GET /fapi/v1/time` (public): the server clock, for the offset and `-1021`.
pub fn server_time() -> Request {
    Request::new(Method::Get, PATH_TIME, Query::new(), Security::Public)
}

/// `GET /fapi/v1/exchangeInfo` (public): tick sizes (`PRICE_FILTER`) and `rateLimits`.
pub fn exchange_info() -> Request {
    Request::new(
        Method::Get,
        PATH_EXCHANGE_INFO,
        Query::new(),
        Security::Public,
    )
}

/// `POST /fapi/v1/listenKey`: a user-stream key (the same one, extended, while one is active).
pub fn listen_key_create() -> Request {
    Request::new(
        Method::Post,
        PATH_LISTEN_KEY,
        Query::new(),
        Security::ApiKey,
    )
}

/// `PUT /fapi/v1/listenKey`: keep the key alive another 60 minutes (sent every 30).
pub fn listen_key_keepalive() -> Request {
    Request::new(Method::Put, PATH_LISTEN_KEY, Query::new(), Security::ApiKey)
}

/// `DELETE /fapi/v1/listenKey`: close the user stream.
pub fn listen_key_close() -> Request {
    Request::new(
        Method::Delete,
        PATH_LISTEN_KEY,
        Query::new(),
        Security::ApiKey,
    )
}

/// The market stream a stop's trigger price comes from (`EXCHANGES.md` §1.6, `LIVE.md` §5):
/// `markPrice@1s` for a mark-price stop, `aggTrade` for a last-price one.
pub fn price_stream_name(symbol: &str, trigger: TriggerPrice) -> String {
    let s = symbol.to_ascii_lowercase();
    match trigger {
        TriggerPrice::Mark => format!("{s}@markPrice@1s"),
        TriggerPrice::Last => format!("{s}@aggTrade"),
    }
}

/// The path of the combined market stream of `symbols` on the `/market` host:
/// `/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s`.
pub fn market_stream_path(symbols: &[&str], trigger: TriggerPrice) -> String {
    let names: Vec<String> = symbols
        .iter()
        .map(|s| price_stream_name(s, trigger))
        .collect();
    format!("/market/stream?streams={}", names.join("/"))
}

/// A live request on a market stream connection adding `names` to what it carries:
/// `{"method":"SUBSCRIBE","params":["ethusdt@markPrice@1s"],"id":7}` (answered
/// `{"result":null,"id":7}`).
pub fn market_subscribe(names: &[String], id: u64) -> String {
    serde_json::json!({"method": "SUBSCRIBE", "params": names, "id": id}).to_string()
}

/// The path of the user data stream on the `/private` host.
pub fn private_stream_path(listen_key: &str) -> String {
    format!("/private/ws?listenKey={listen_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::OrderRef;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn btc() -> Instrument {
        Instrument::new(dec!(0.1))
    }

    fn target(instrument: &Instrument) -> Target<'_> {
        Target {
            symbol: "BTCUSDT",
            position_side: PositionSide::Both,
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

    #[test]
    fn place_is_an_algo_stop_market_closing_the_position() {
        let i = btc();
        let place = Command::Place {
            order: oref(7),
            stop: units(&i, dec!(61250.0)),
        };
        let r = for_command(&place, &target(&i), StopOptions::default(), 0).unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/fapi/v1/algoOrder");
        assert_eq!(r.security, Security::Signed);
        // EXCHANGES.md §1.3's example, in its order (our decimal text drops ".0").
        assert_eq!(
            r.to_sign(1767000000000, 5000),
            "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET\
             &triggerPrice=61250&workingType=MARK_PRICE&closePosition=true&priceProtect=FALSE\
             &clientAlgoId=ts-42-7&recvWindow=5000&timestamp=1767000000000"
        );
        assert_eq!(r.endpoint(), "POST /fapi/v1/algoOrder");

        // A hedge-mode short on the last price, price protection asked for.
        let short = Target {
            position_side: PositionSide::Short,
            side: Side::Short,
            ..target(&i)
        };
        let opts = StopOptions {
            trigger: TriggerPrice::Last,
            price_protect: true,
        };
        let stop = StopPrice::from_units("BTCUSDT", units(&i, dec!(61300.5)), &i).unwrap();
        let r = new_stop(&short, stop, opts, "ts-42-8").unwrap();
        assert_eq!(
            r.params,
            "algoType=CONDITIONAL&symbol=BTCUSDT&side=BUY&positionSide=SHORT&type=STOP_MARKET\
             &triggerPrice=61300.5&workingType=CONTRACT_PRICE&closePosition=true\
             &priceProtect=TRUE&clientAlgoId=ts-42-8"
        );
        // closePosition excludes quantity and reduceOnly (-4136/-4137/-4138).
        assert!(!r.params.contains("quantity") && !r.params.contains("reduceOnly"));
    }

    #[test]
    fn there_is_no_amend() {
        let i = btc();
        let amend = Command::Amend {
            order: oref(2),
            replaces: oref(1),
            stop: units(&i, dec!(61300)),
        };
        assert_eq!(
            for_command(&amend, &target(&i), StopOptions::default(), 0),
            Err(RequestError::NoAmend)
        );
    }

    #[test]
    fn cancel_and_query_go_by_client_algo_id() {
        let i = btc();
        let r = for_command(
            &Command::Cancel { order: oref(3) },
            &target(&i),
            StopOptions::default(),
            0,
        )
        .unwrap();
        assert_eq!(r.method, Method::Delete);
        assert_eq!(
            r.path_and_query(),
            "/fapi/v1/algoOrder?clientAlgoId=ts-42-3"
        );
        assert_eq!(
            r.to_sign(1, 5000),
            "clientAlgoId=ts-42-3&recvWindow=5000&timestamp=1"
        );
        let q = for_command(
            &Command::Query { order: oref(3) },
            &target(&i),
            StopOptions::default(),
            0,
        )
        .unwrap();
        assert_eq!(q.method, Method::Get);
        assert_eq!(
            q.path_and_query(),
            "/fapi/v1/algoOrder?clientAlgoId=ts-42-3"
        );
        assert_eq!(q.security, Security::Signed);
        assert_eq!(
            cancel_stop(AlgoRef::Algo(2146760))
                .unwrap()
                .path_and_query(),
            "/fapi/v1/algoOrder?algoId=2146760"
        );
        assert_eq!(
            query_stop(AlgoRef::Client("x y")),
            Err(RequestError::BadClientId("x y".into()))
        );
        let open = open_stops(Some("BTCUSDT")).unwrap();
        assert_eq!(
            open.path_and_query(),
            "/fapi/v1/openAlgoOrders?symbol=BTCUSDT"
        );
        assert_eq!(open.security, Security::Signed);
        assert_eq!(
            open_stops(None).unwrap().to_sign(5, 6000),
            "recvWindow=6000&timestamp=5"
        );
    }

    #[test]
    fn close_at_market_is_reduce_only_one_way_and_by_side_in_hedge_mode() {
        let i = btc();
        let r = for_command(
            &Command::CloseAtMarket { position: 42 },
            &target(&i),
            StopOptions::default(),
            0,
        )
        .unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/fapi/v1/order");
        assert_eq!(
            r.params,
            "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.5&reduceOnly=true\
             &newClientOrderId=ts-42-c0"
        );
        let hedge_short = Target {
            position_side: PositionSide::Short,
            side: Side::Short,
            size: dec!(12),
            ..target(&i)
        };
        assert_eq!(
            close_at_market(&hedge_short, "ts-42-c3").unwrap().params,
            "symbol=BTCUSDT&side=BUY&positionSide=SHORT&type=MARKET&quantity=12\
             &newClientOrderId=ts-42-c3"
        );
        let flat = Target {
            size: dec!(0),
            ..target(&i)
        };
        assert!(matches!(
            close_at_market(&flat, "ts-42-c0"),
            Err(RequestError::NoSize { .. })
        ));
        assert!(matches!(
            close_at_market(&target(&i), &"x".repeat(37)),
            Err(RequestError::BadClientId(_))
        ));
        // The longest ids we make fit Binance's limit.
        assert!(check_client_id(&close_client_id(u64::MAX, u32::MAX)).is_ok());
        let seq_id = OrderRef {
            position: u64::MAX,
            seq: u32::MAX,
        }
        .client_id();
        assert!(seq_id.len() <= 36, "{seq_id}");
        assert!(check_client_id(&seq_id).is_ok());
    }

    #[test]
    fn a_zero_negative_or_off_grid_stop_is_an_error_never_a_request() {
        let i = btc();
        for stop in [0, -1] {
            let e = for_command(
                &Command::Place {
                    order: oref(1),
                    stop,
                },
                &target(&i),
                StopOptions::default(),
                0,
            )
            .unwrap_err();
            assert!(matches!(e, RequestError::NotPositive { .. }), "{e}");
        }
        let e = StopPrice::from_units("BTCUSDT", units(&i, dec!(61250.05)), &i).unwrap_err();
        assert!(matches!(e, RequestError::OffTick { .. }), "{e}");
        assert!(e.to_string().contains("61250.05"), "{e}");
        let bad = Instrument::with_price_decimals(dec!(0.001), 2);
        assert!(matches!(
            StopPrice::from_units("BTCUSDT", 100, &bad),
            Err(RequestError::BadInstrument { .. })
        ));
    }

    /// After the tick grew (0.1 → 0.5), a stop of the old grid moves onto the new one
    /// without loosening: a long's up, a short's down; one on both grids stays.
    #[test]
    fn an_off_grid_stop_moves_onto_the_grid_never_looser() {
        let new = Instrument::with_price_decimals(dec!(0.5), 8);
        let u = |p: Decimal| units(&new, p);
        let on = |p: Decimal, side: Side| {
            new.decimal(StopPrice::onto_grid("BTCUSDT", u(p), side, &new).unwrap())
        };
        assert_eq!(on(dec!(97.3), Side::Long), dec!(97.5));
        assert_eq!(on(dec!(97.3), Side::Short), dec!(97.0));
        assert_eq!(on(dec!(97.5), Side::Long), dec!(97.5));
        assert_eq!(on(dec!(97.5), Side::Short), dec!(97.5));
        assert_eq!(on(dec!(97.01), Side::Long), dec!(97.5));
        assert_eq!(on(dec!(97.49), Side::Short), dec!(97.0));
        let bad = Instrument::with_price_decimals(dec!(0.001), 2);
        assert!(matches!(
            StopPrice::onto_grid("BTCUSDT", 100, Side::Long, &bad),
            Err(RequestError::BadInstrument { .. })
        ));
    }

    #[test]
    fn hedge_side_must_match_and_symbols_are_checked() {
        let i = btc();
        let wrong = Target {
            position_side: PositionSide::Long,
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
            let e = for_command(&cmd, &wrong, StopOptions::default(), 0).unwrap_err();
            assert!(matches!(e, RequestError::SideMismatch { .. }), "{e}");
        }
        assert!(position_risk(Some("BTC&x=1")).is_err());
        assert!(open_stops(Some("btcusdt")).is_err());
        assert_eq!(PositionSide::of(false, Side::Short), PositionSide::Both);
        assert_eq!(PositionSide::of(true, Side::Long), PositionSide::Long);
        for ps in [PositionSide::Both, PositionSide::Long, PositionSide::Short] {
            assert_eq!(PositionSide::parse(ps.as_str()), Some(ps));
        }
        assert_eq!(PositionSide::parse("both"), None);
    }

    #[test]
    fn reads_time_instruments_and_listen_keys() {
        let r = server_time();
        assert_eq!((r.method, r.security), (Method::Get, Security::Public));
        assert_eq!(r.path_and_query(), "/fapi/v1/time");
        let r = exchange_info();
        assert_eq!((r.method, r.security), (Method::Get, Security::Public));
        assert_eq!(r.path_and_query(), "/fapi/v1/exchangeInfo");
        let r = position_risk(Some("BTCUSDT")).unwrap();
        assert_eq!(r.path_and_query(), "/fapi/v2/positionRisk?symbol=BTCUSDT");
        assert_eq!(r.security, Security::Signed);
        assert_eq!(
            position_risk(None).unwrap().to_sign(1767000000000, 5000),
            "recvWindow=5000&timestamp=1767000000000"
        );
        let r = position_mode();
        assert_eq!(r.path_and_query(), "/fapi/v1/positionSide/dual");
        assert_eq!((r.method, r.security), (Method::Get, Security::Signed));
        for (r, m) in [
            (listen_key_create(), Method::Post),
            (listen_key_keepalive(), Method::Put),
            (listen_key_close(), Method::Delete),
        ] {
            assert_eq!(r.method, m);
            assert_eq!(r.path_and_query(), "/fapi/v1/listenKey");
            // USER_STREAM: the key header, no signature.
            assert_eq!(r.security, Security::ApiKey);
        }
    }

    #[test]
    fn stream_paths() {
        assert_eq!(
            market_stream_path(&["BTCUSDT", "ETHUSDT"], TriggerPrice::Mark),
            "/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s"
        );
        assert_eq!(
            market_stream_path(&["BTCUSDT"], TriggerPrice::Last),
            "/market/stream?streams=btcusdt@aggTrade"
        );
        assert_eq!(private_stream_path("abc"), "/private/ws?listenKey=abc");
    }

    proptest! {
        /// Any stop the engine can hold (positive units on the tick grid) reaches the query
        /// as decimal text that reads back to exactly those units.
        #[test]
        fn trigger_text_round_trips_exactly(
            tick_mantissa in 1i64..1000,
            tick_scale in 0u32..8,
            extra_decimals in 0u32..4,
            ticks in 1i64..1_000_000_000,
        ) {
            let tick = Decimal::new(tick_mantissa, tick_scale);
            let i = Instrument::with_price_decimals(tick, tick.normalize().scale() + extra_decimals);
            let stop = ticks * i.units(tick).unwrap();
            let cmd = Command::Place { order: oref(1), stop };
            let r = for_command(&cmd, &target(&i), StopOptions::default(), 0).unwrap();
            let text = r.params.split('&')
                .find_map(|kv| kv.strip_prefix("triggerPrice="))
                .unwrap();
            prop_assert!(!text.contains('e') && !text.contains('E'), "{}", text);
            let back: Decimal = text.parse().unwrap();
            prop_assert!(back > Decimal::ZERO);
            prop_assert_eq!(i.units(back), Some(stop));
        }
    }
}
