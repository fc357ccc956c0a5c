//! REST results (`EXCHANGES.md` §1.3–§1.5): server time, `exchangeInfo` (the tick size from
//! `PRICE_FILTER`, never `pricePrecision`; the `rateLimits`), `positionRisk`, the position
//! mode, algo orders (a create's answer, a query's, `openAlgoOrders`), a cancel's answer, a
//! listenKey — and how a read-back resolves a command whose outcome was unknown.

use rust_decimal::Decimal;
use serde_json::Value;

use super::request::PositionSide;
use crate::engine::{Instrument, Side};
use crate::live::bybit::json::{self, Obj, ParseError, each};
use crate::venue::{OrderRef, RejectReason, VenueEvent};

/// `price` in `instrument` units, or an error naming `field`.
pub fn to_units(price: Decimal, instrument: &Instrument, field: &str) -> Result<i64, ParseError> {
    instrument.units(price).ok_or_else(|| {
        ParseError::new(
            field,
            format!(
                "{price} is not exact at {} decimals (or too large)",
                instrument.price_decimals
            ),
        )
    })
}

/// An average fill price in `instrument` units. The volume-weighted average of several
/// executions is exact in `Decimal` but can have more decimals than the engine's units (a
/// third, say): then it is put on them half to even, as the runner puts an averaged entry.
pub fn average_units(
    price: Decimal,
    instrument: &Instrument,
    field: &str,
) -> Result<i64, ParseError> {
    let on_grid = price
        .round_dp_with_strategy(
            instrument.price_decimals,
            rust_decimal::RoundingStrategy::MidpointNearestEven,
        )
        .normalize();
    to_units(on_grid, instrument, field)
}

/// `GET /fapi/v1/time` → `serverTime` (epoch ms).
pub fn server_time(body: &str) -> Result<i64, ParseError> {
    let v = json::parse_text(body)?;
    json::object(&v, "")?.int("serverTime")
}

/// One of `exchangeInfo`'s `rateLimits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// `REQUEST_WEIGHT` or `ORDERS`.
    pub kind: String,
    /// The window in milliseconds (`intervalNum` × `interval`).
    pub window_ms: i64,
    pub limit: i64,
}

/// A symbol, as far as stops need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolInfo {
    pub symbol: String,
    /// `TRADING`, `SETTLING`, `PENDING_TRADING`, …
    pub status: String,
    pub tick_size: Decimal,
    pub step_size: Decimal,
    pub min_qty: Decimal,
    /// The mark/last gap over which a `priceProtect` stop does not fire.
    pub trigger_protect: Option<Decimal>,
}

impl SymbolInfo {
    /// The engine's instrument: prices on this tick grid, in units of at least 8 decimals.
    pub fn instrument(&self) -> Instrument {
        Instrument::new(self.tick_size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeInfo {
    pub rate_limits: Vec<RateLimit>,
    pub symbols: Vec<SymbolInfo>,
}

impl ExchangeInfo {
    pub fn symbol(&self, symbol: &str) -> Option<&SymbolInfo> {
        self.symbols.iter().find(|s| s.symbol == symbol)
    }
}

fn interval_ms(o: &Obj<'_>) -> Result<i64, ParseError> {
    let unit = match o.str("interval")? {
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        other => {
            return Err(ParseError::new(
                o.field("interval"),
                format!("\"{other}\" is not SECOND, MINUTE, HOUR or DAY"),
            ));
        }
    };
    let n = o.int("intervalNum")?;
    if n <= 0 {
        return Err(ParseError::new(o.field("intervalNum"), "must be > 0"));
    }
    Ok(n * unit)
}

/// `GET /fapi/v1/exchangeInfo`.
pub fn exchange_info(body: &str) -> Result<ExchangeInfo, ParseError> {
    let v = json::parse_text(body)?;
    let o = json::object(&v, "")?;
    let rate_limits = each(&o, "rateLimits", |r| {
        Ok(RateLimit {
            kind: r.str("rateLimitType")?.to_string(),
            window_ms: interval_ms(&r)?,
            limit: r.int("limit")?,
        })
    })?;
    let symbols = each(&o, "symbols", |s| {
        let filters = s.array("filters")?;
        let filter = |kind: &str| -> Result<Option<Obj<'_>>, ParseError> {
            for (i, f) in filters.iter().enumerate() {
                let f = json::object(f, format!("{}[{i}]", s.field("filters")))?;
                if f.str("filterType")? == kind {
                    return Ok(Some(f));
                }
            }
            Ok(None)
        };
        let missing = |kind: &str| ParseError::new(s.field("filters"), format!("no {kind} filter"));
        let price = filter("PRICE_FILTER")?.ok_or_else(|| missing("PRICE_FILTER"))?;
        let lot = filter("LOT_SIZE")?.ok_or_else(|| missing("LOT_SIZE"))?;
        let tick_size = price.dec("tickSize")?;
        if tick_size <= Decimal::ZERO {
            return Err(ParseError::new(
                price.field("tickSize"),
                format!("{tick_size} must be > 0"),
            ));
        }
        Ok(SymbolInfo {
            symbol: s.str("symbol")?.to_string(),
            status: s.opt_str("status")?.unwrap_or_default().to_string(),
            tick_size,
            step_size: lot.dec("stepSize")?,
            min_qty: lot.dec("minQty")?,
            trigger_protect: s.opt_dec("triggerProtect")?,
        })
    })?;
    Ok(ExchangeInfo {
        rate_limits,
        symbols,
    })
}

/// `GET /fapi/v1/positionSide/dual` → whether the account is in hedge mode.
pub fn position_mode(body: &str) -> Result<bool, ParseError> {
    let v = json::parse_text(body)?;
    json::object(&v, "")?.bool("dualSidePosition")
}

/// One position of `positionRisk` (and of an `ACCOUNT_UPDATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionInfo {
    pub symbol: String,
    pub position_side: PositionSide,
    /// Signed in one-way mode (`BOTH`: negative = short); Binance lists flat symbols too.
    pub amount: Decimal,
    pub entry_price: Decimal,
    pub mark_price: Option<Decimal>,
    pub updated_ms: Option<i64>,
}

impl PositionInfo {
    /// The side of an open position: from the sign in one-way mode, from `positionSide` in
    /// hedge mode; `None` when flat.
    pub fn side(&self) -> Option<Side> {
        if self.amount.is_zero() {
            return None;
        }
        Some(match self.position_side {
            PositionSide::Long => Side::Long,
            PositionSide::Short => Side::Short,
            PositionSide::Both if self.amount > Decimal::ZERO => Side::Long,
            PositionSide::Both => Side::Short,
        })
    }

    pub fn size(&self) -> Decimal {
        self.amount.abs()
    }

    pub fn is_open(&self) -> bool {
        self.side().is_some()
    }

    /// Same side, size and entry: what matters to the trailing stop.
    pub fn same_exposure(&self, other: &PositionInfo) -> bool {
        self.side() == other.side()
            && self.size() == other.size()
            && self.entry_price == other.entry_price
    }

    /// The seam's news of this position for the driver's `position` id: opened (new to the
    /// driver), changed (size or entry moved since `previous`), or nothing (flat, or no
    /// change: a close comes from the fill, which carries the price).
    pub fn event(
        &self,
        position: u64,
        previous: Option<&PositionInfo>,
        ts: i64,
        instrument: &Instrument,
    ) -> Result<Option<VenueEvent>, ParseError> {
        if !self.is_open() || previous.is_some_and(|p| p.same_exposure(self)) {
            return Ok(None);
        }
        let entry = to_units(
            self.entry_price,
            instrument,
            &format!("{}.entryPrice", self.symbol),
        )?;
        let quantity = self.size();
        Ok(Some(match previous {
            Some(p) if p.is_open() => VenueEvent::PositionChanged {
                position,
                ts,
                entry,
                quantity,
            },
            _ => VenueEvent::PositionOpened {
                position,
                ts,
                entry,
                quantity,
            },
        }))
    }
}

pub(crate) fn position_side(o: &Obj<'_>, key: &str) -> Result<PositionSide, ParseError> {
    let text = o.str(key)?;
    PositionSide::parse(text).ok_or_else(|| {
        ParseError::new(
            o.field(key),
            format!("\"{text}\" is not BOTH, LONG or SHORT"),
        )
    })
}

/// Checks what a position must satisfy, wherever it was read.
pub(crate) fn checked_position(p: PositionInfo, o: &Obj<'_>) -> Result<PositionInfo, ParseError> {
    if p.entry_price < Decimal::ZERO {
        return Err(ParseError::new(o.field("entryPrice"), "negative"));
    }
    if p.is_open() && p.entry_price.is_zero() {
        return Err(ParseError::new(
            o.field("entryPrice"),
            "an open position needs an entry price > 0",
        ));
    }
    Ok(p)
}

fn position(o: Obj<'_>) -> Result<PositionInfo, ParseError> {
    let p = PositionInfo {
        symbol: o.str("symbol")?.to_string(),
        position_side: position_side(&o, "positionSide")?,
        amount: o.dec("positionAmt")?,
        entry_price: o.dec("entryPrice")?,
        mark_price: o.opt_dec("markPrice")?.filter(|p| !p.is_zero()),
        updated_ms: o.opt_int("updateTime")?,
    };
    checked_position(p, &o)
}

/// `GET /fapi/v2/positionRisk`: a top-level array.
pub fn positions(body: &str) -> Result<Vec<PositionInfo>, ParseError> {
    let v = json::parse_text(body)?;
    array(&v, "", position)
}

fn array<T>(
    v: &Value,
    path: &str,
    read: impl Fn(Obj<'_>) -> Result<T, ParseError>,
) -> Result<Vec<T>, ParseError> {
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, e)| read(json::object(e, format!("{path}[{i}]"))?))
            .collect(),
        _ => Err(ParseError::new(
            if path.is_empty() { "json" } else { path },
            "expected an array",
        )),
    }
}

/// An algo order's status (`EXCHANGES.md` §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgoStatus {
    /// Resting in the Algo Service.
    New,
    /// The trigger was hit; the order is being sent to the matching engine.
    Triggering,
    /// Placed in the matching engine as a new order (`actualOrderId`).
    Triggered,
    /// Filled or cancelled in the matching engine.
    Finished,
    Canceled,
    /// Denied by the matching engine (a margin check, `-4131` at trigger).
    Rejected,
    /// Cancelled by the system (e.g. GTE_GTC after the position closed).
    Expired,
}

impl AlgoStatus {
    pub fn parse(text: &str) -> Option<AlgoStatus> {
        Some(match text {
            "NEW" => AlgoStatus::New,
            "TRIGGERING" => AlgoStatus::Triggering,
            "TRIGGERED" => AlgoStatus::Triggered,
            "FINISHED" => AlgoStatus::Finished,
            "CANCELED" | "CANCELLED" => AlgoStatus::Canceled,
            "REJECTED" => AlgoStatus::Rejected,
            "EXPIRED" => AlgoStatus::Expired,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlgoStatus::New => "NEW",
            AlgoStatus::Triggering => "TRIGGERING",
            AlgoStatus::Triggered => "TRIGGERED",
            AlgoStatus::Finished => "FINISHED",
            AlgoStatus::Canceled => "CANCELED",
            AlgoStatus::Rejected => "REJECTED",
            AlgoStatus::Expired => "EXPIRED",
        }
    }

    /// Whether the stop still rests (nothing has happened to it yet).
    pub fn is_resting(self) -> bool {
        self == AlgoStatus::New
    }
}

pub(crate) fn algo_status(o: &Obj<'_>, key: &str) -> Result<AlgoStatus, ParseError> {
    let text = o.str(key)?;
    AlgoStatus::parse(text)
        .ok_or_else(|| ParseError::new(o.field(key), format!("\"{text}\" is not an algo status")))
}

/// `BUY` or `SELL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    /// The order side that closes `side` (a long's stop sells).
    pub fn closing(side: Side) -> OrderSide {
        match side {
            Side::Long => OrderSide::Sell,
            Side::Short => OrderSide::Buy,
        }
    }
}

pub(crate) fn order_side(o: &Obj<'_>, key: &str) -> Result<OrderSide, ParseError> {
    match o.str(key)? {
        "BUY" => Ok(OrderSide::Buy),
        "SELL" => Ok(OrderSide::Sell),
        other => Err(ParseError::new(
            o.field(key),
            format!("\"{other}\" is not BUY or SELL"),
        )),
    }
}

/// An algo order as REST shows it (create, query, `openAlgoOrders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgoOrderInfo {
    pub algo_id: i64,
    pub client_algo_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub position_side: PositionSide,
    /// `STOP_MARKET`, `TAKE_PROFIT`, … (`orderType` in one answer, `type` in another).
    pub order_type: String,
    pub status: AlgoStatus,
    pub trigger_price: Decimal,
    pub working_type: String,
    pub close_position: bool,
    /// The matching engine's order once triggered (`actualOrderId`).
    pub actual_order_id: Option<String>,
    /// That order's average fill price and filled quantity.
    pub avg_price: Option<Decimal>,
    pub executed_qty: Option<Decimal>,
    pub updated_ms: Option<i64>,
}

impl AlgoOrderInfo {
    /// When the stop took effect, as an acknowledgement's time: the exchange's `updateTime`,
    /// never before `ts`, the event time the command answers to (the unprotected window of a
    /// replace ends there, `LIVE.md` §5).
    pub fn acknowledged_at(&self, ts: i64) -> i64 {
        self.updated_ms.map_or(ts, |u| u.max(ts))
    }

    /// Whether trailstop made it (`ts-<position>-<seq>`): foreign stops are left alone.
    pub fn is_ours(&self) -> bool {
        parse_client_id(&self.client_algo_id).is_some()
    }

    /// The fill of the order it became, if it filled.
    pub fn fill(&self) -> Option<Decimal> {
        let filled = self.executed_qty.is_some_and(|q| q > Decimal::ZERO);
        self.avg_price.filter(|p| filled && *p > Decimal::ZERO)
    }

    /// The trigger price in `instrument` units.
    pub fn trigger_units(&self, instrument: &Instrument) -> Result<i64, ParseError> {
        to_units(
            self.trigger_price,
            instrument,
            &format!("{}.triggerPrice", self.client_algo_id),
        )
    }
}

/// The order a deterministic client id names (`ts-<position>-<seq>`), if it is one.
pub fn parse_client_id(id: &str) -> Option<OrderRef> {
    let rest = id.strip_prefix("ts-")?;
    let (position, seq) = rest.split_once('-')?;
    let position = position.parse().ok()?;
    let seq = seq.parse().ok()?;
    let r = OrderRef { position, seq };
    // Only the canonical spelling (no leading zeros, no sign): it must round-trip.
    (r.client_id() == id).then_some(r)
}

fn algo_order_obj(o: Obj<'_>) -> Result<AlgoOrderInfo, ParseError> {
    let order_type = match o.opt_str("orderType")? {
        Some(t) => t,
        None => o.str("type")?,
    };
    let trigger_price = o.dec("triggerPrice")?;
    if trigger_price <= Decimal::ZERO {
        return Err(ParseError::new(o.field("triggerPrice"), "must be > 0"));
    }
    Ok(AlgoOrderInfo {
        algo_id: o.int("algoId")?,
        client_algo_id: o.str("clientAlgoId")?.to_string(),
        symbol: o.str("symbol")?.to_string(),
        side: order_side(&o, "side")?,
        position_side: match o.opt_str("positionSide")? {
            Some(_) => position_side(&o, "positionSide")?,
            None => PositionSide::Both,
        },
        order_type: order_type.to_string(),
        status: algo_status(&o, "algoStatus")?,
        trigger_price,
        working_type: o.opt_str("workingType")?.unwrap_or_default().to_string(),
        close_position: o.has("closePosition") && o.bool("closePosition")?,
        actual_order_id: o
            .get("actualOrderId")
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .filter(|s| !s.is_empty() && s != "0"),
        avg_price: o.opt_dec("avgPrice")?,
        executed_qty: o.opt_dec("executedQty")?,
        updated_ms: o.opt_int("updateTime")?,
    })
}

/// A create's or a query's answer: one algo order.
pub fn algo_order(body: &str) -> Result<AlgoOrderInfo, ParseError> {
    let v = json::parse_text(body)?;
    algo_order_obj(json::object(&v, "")?)
}

/// `GET /fapi/v1/openAlgoOrders`: a top-level array.
pub fn open_algo_orders(body: &str) -> Result<Vec<AlgoOrderInfo>, ParseError> {
    let v = json::parse_text(body)?;
    array(&v, "", algo_order_obj)
}

/// A cancel's answer: `{"algoId":…,"clientAlgoId":"…","code":"200","msg":"success"}`.
pub fn cancel_ack(body: &str) -> Result<(i64, String), ParseError> {
    let v = json::parse_text(body)?;
    let o = json::object(&v, "")?;
    Ok((o.int("algoId")?, o.str("clientAlgoId")?.to_string()))
}

/// `POST /fapi/v1/listenKey` → the key.
pub fn listen_key(body: &str) -> Result<String, ParseError> {
    let v = json::parse_text(body)?;
    let key = json::object(&v, "")?.str("listenKey")?;
    if key.is_empty() {
        return Err(ParseError::new("listenKey", "empty"));
    }
    Ok(key.to_string())
}

/// A regular order's answer (the close at market): its id, client id and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAck {
    pub order_id: i64,
    pub client_order_id: String,
    pub status: String,
}

pub fn order_ack(body: &str) -> Result<OrderAck, ParseError> {
    let v = json::parse_text(body)?;
    let o = json::object(&v, "")?;
    Ok(OrderAck {
        order_id: o.int("orderId")?,
        client_order_id: o.str("clientOrderId")?.to_string(),
        status: o.str("status")?.to_string(),
    })
}

/// trailstop's own code in [`RejectReason::Invalid`]: a read-back showed that a command
/// whose outcome was unknown did not take effect (Binance's codes are all negative).
pub const NOT_APPLIED: i64 = 1;

/// Resolves a [`Command::Query`](crate::venue::Command::Query) for `order` from the algo
/// order read back by its `clientAlgoId` (`None`: `-2013`, no such order):
///
/// - absent, or gone before it triggered (`CANCELED`, `EXPIRED`, `REJECTED`) → rejected with
///   [`NOT_APPLIED`]: nothing rests (the create did not act, or its stop is gone);
/// - `NEW` → accepted at the trigger read back, with the `algoId`;
/// - `FINISHED` with a fill → triggered at the average fill;
/// - `TRIGGERING`, `TRIGGERED`, or finished without a fill → `None`: the stream (or a later
///   read) tells the rest.
pub fn resolve_query(
    order: OrderRef,
    info: Option<&AlgoOrderInfo>,
    instrument: &Instrument,
    ts: i64,
) -> Result<Option<VenueEvent>, ParseError> {
    let not_applied = VenueEvent::Rejected {
        order,
        ts,
        reason: RejectReason::Invalid { code: NOT_APPLIED },
    };
    let Some(info) = info else {
        return Ok(Some(not_applied));
    };
    Ok(match info.status {
        AlgoStatus::New => Some(VenueEvent::Accepted {
            order,
            stop: info.trigger_units(instrument)?,
            ts: info.acknowledged_at(ts),
            venue_id: Some(info.algo_id.to_string()),
        }),
        AlgoStatus::Canceled | AlgoStatus::Expired | AlgoStatus::Rejected
            if info.actual_order_id.is_none() =>
        {
            Some(not_applied)
        }
        AlgoStatus::Finished => match info.fill() {
            Some(fill) => Some(VenueEvent::Triggered {
                order,
                ts,
                fill: average_units(
                    fill,
                    instrument,
                    &format!("{}.avgPrice", info.client_algo_id),
                )?,
            }),
            None => None,
        },
        _ => None,
    })
}

/// What a cancel answered with `-2011` (no such stop) turned out to be, from the stop read
/// back (`None`: `-2013`) and the position read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingStop {
    /// It triggered and filled: the position closed at its fill (tell the lifecycle).
    Triggered(VenueEvent),
    /// It triggered and the fill is on its way (the stream's `ORDER_TRADE_UPDATE`).
    AwaitFill,
    /// It still rests (the cancel raced something): cancel it again.
    StillResting,
    /// It is gone and the position is open: the cancel's effect holds (tell the lifecycle,
    /// which creates the new stop).
    Gone(VenueEvent),
    /// The position is flat and the stop did not fill: someone closed it. Place nothing;
    /// close the trailing stop once the fill is known.
    PositionClosed,
}

/// Resolves a `-2011` on the cancel of `order` (freqtrade #12681, #2799: never a second
/// stop, never a stop on a closed position).
pub fn resolve_missing_cancel(
    order: OrderRef,
    info: Option<&AlgoOrderInfo>,
    position_open: bool,
    instrument: &Instrument,
    ts: i64,
) -> Result<MissingStop, ParseError> {
    if let Some(i) = info {
        match i.status {
            AlgoStatus::New => return Ok(MissingStop::StillResting),
            AlgoStatus::Triggering | AlgoStatus::Triggered => return Ok(MissingStop::AwaitFill),
            AlgoStatus::Finished => {
                if let Some(VenueEvent::Triggered { fill, .. }) =
                    resolve_query(order, Some(i), instrument, ts)?
                {
                    // The exit is when the exchange filled it, not when we found out (a
                    // trigger the user stream missed during a reconnect, found by a re-check).
                    let ts = i.updated_ms.filter(|t| *t > 0).unwrap_or(ts);
                    return Ok(MissingStop::Triggered(VenueEvent::Triggered {
                        order,
                        ts,
                        fill,
                    }));
                }
            }
            _ => {}
        }
    }
    Ok(if position_open {
        MissingStop::Gone(VenueEvent::Cancelled { order, ts })
    } else {
        MissingStop::PositionClosed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const EXCHANGE_INFO: &str = include_str!("../../../tests/fixtures/binance/exchange_info.json");
    const POSITION_RISK: &str = include_str!("../../../tests/fixtures/binance/position_risk.json");
    const OPEN_ALGO: &str = include_str!("../../../tests/fixtures/binance/open_algo_orders.json");
    /// The create's answer of EXCHANGES.md §1.3 (the official SDK's fixture).
    const CREATED: &str = r#"{"algoId":2146760,"clientAlgoId":"6B2I9XVcJpCjqPAJ4YoFX7","algoType":"CONDITIONAL",
 "orderType":"TAKE_PROFIT","symbol":"BNBUSDT","side":"SELL","positionSide":"BOTH",
 "timeInForce":"GTC","quantity":"0.01","algoStatus":"NEW","triggerPrice":"750.000",
 "price":"750.000","workingType":"CONTRACT_PRICE","priceMatch":"NONE","closePosition":false,
 "priceProtect":false,"reduceOnly":false,"createTime":1750485492076,"updateTime":1750485492076,
 "triggerTime":0,"goodTillDate":0}"#;
    /// nautilus' `test_parse_algo_order_triggered` sample.
    const TRIGGERED: &str = r#"{"algoId":123456789,"clientAlgoId":"ts-5-3","algoType":"CONDITIONAL",
 "type":"STOP_MARKET","symbol":"ETHUSDT","side":"SELL","algoStatus":"FINISHED","triggerPrice":"2500.00",
 "actualOrderId":"987654321","executedQty":"0.5","avgPrice":"2499.50"}"#;

    #[test]
    fn exchange_info_takes_the_tick_from_the_price_filter() {
        let info = exchange_info(EXCHANGE_INFO).unwrap();
        assert_eq!(
            info.rate_limits,
            vec![
                RateLimit {
                    kind: "REQUEST_WEIGHT".into(),
                    window_ms: 60_000,
                    limit: 2400
                },
                RateLimit {
                    kind: "ORDERS".into(),
                    window_ms: 60_000,
                    limit: 1200
                },
                RateLimit {
                    kind: "ORDERS".into(),
                    window_ms: 10_000,
                    limit: 300
                },
            ]
        );
        let blz = info.symbol("BLZUSDT").unwrap();
        assert_eq!(blz.status, "TRADING");
        assert_eq!(blz.tick_size, dec!(0.0001));
        assert_eq!(blz.step_size, dec!(1));
        assert_eq!(blz.min_qty, dec!(1));
        assert_eq!(blz.trigger_protect, Some(dec!(0.15)));
        // pricePrecision says 3; the tick (1) is what counts.
        let yfi = info.symbol("YFIUSDT").unwrap();
        assert_eq!(yfi.tick_size, dec!(1));
        assert_eq!(yfi.instrument().tick_size, dec!(1));
        assert!(info.symbol("BTCUSDT").is_none());
    }

    #[test]
    fn exchange_info_errors_name_the_field() {
        let bad = EXCHANGE_INFO.replacen("\"tickSize\": \"0.0001\"", "\"tickSize\": \"0\"", 1);
        assert_eq!(
            exchange_info(&bad).unwrap_err().field,
            "symbols[0].filters[0].tickSize"
        );
        let bad = EXCHANGE_INFO.replacen("\"PRICE_FILTER\"", "\"PRICE_FILTR\"", 1);
        let e = exchange_info(&bad).unwrap_err();
        assert_eq!(e.to_string(), "symbols[0].filters: no PRICE_FILTER filter");
        let bad = EXCHANGE_INFO.replacen("\"MINUTE\"", "\"WEEK\"", 1);
        assert_eq!(
            exchange_info(&bad).unwrap_err().field,
            "rateLimits[0].interval"
        );
        let bad = EXCHANGE_INFO.replacen("\"tickSize\": \"0.0001\"", "\"tickSize\": 0.0001", 1);
        assert!(
            exchange_info(&bad)
                .unwrap_err()
                .problem
                .contains("decimal string")
        );
    }

    #[test]
    fn server_time_mode_listen_key_and_acks() {
        assert_eq!(
            server_time(r#"{"serverTime":1499827319559}"#).unwrap(),
            1499827319559
        );
        assert_eq!(server_time("{}").unwrap_err().field, "serverTime");
        assert!(!position_mode(r#"{"dualSidePosition":false}"#).unwrap());
        assert!(position_mode(r#"{"dualSidePosition":true}"#).unwrap());
        assert_eq!(
            listen_key(
                r#"{"listenKey":"pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"}"#
            )
            .unwrap()
            .len(),
            64
        );
        assert!(listen_key(r#"{"listenKey":""}"#).is_err());
        assert_eq!(
            cancel_ack(
                r#"{"algoId":2146760,"clientAlgoId":"6B2I9XVcJpCjqPAJ4YoFX7","code":"200","msg":"success"}"#
            )
            .unwrap(),
            (2146760, "6B2I9XVcJpCjqPAJ4YoFX7".to_string())
        );
        let ack = order_ack(include_str!(
            "../../../tests/fixtures/binance/order_response.json"
        ))
        .unwrap();
        assert_eq!(ack.order_id, 12345678);
        assert_eq!(ack.client_order_id, "testOrder123");
        assert_eq!(ack.status, "NEW");
    }

    #[test]
    fn positions_are_signed_in_one_way_mode() {
        let list = positions(POSITION_RISK).unwrap();
        assert_eq!(list.len(), 1);
        let p = &list[0];
        assert_eq!(p.symbol, "BTCUSDT");
        assert_eq!(p.position_side, PositionSide::Both);
        assert_eq!(p.side(), Some(Side::Long));
        assert_eq!(p.size(), dec!(0.001));
        assert_eq!(p.entry_price, dec!(50000.0));
        assert_eq!(p.mark_price, Some(dec!(51000.0)));
        assert_eq!(p.updated_ms, Some(1625474304765));
        let short = PositionInfo {
            amount: dec!(-2),
            ..p.clone()
        };
        assert_eq!(short.side(), Some(Side::Short));
        assert_eq!(short.size(), dec!(2));
        let flat = PositionInfo {
            amount: dec!(0),
            ..p.clone()
        };
        assert!(!flat.is_open());
        let hedge_short = PositionInfo {
            position_side: PositionSide::Short,
            amount: dec!(-3),
            ..p.clone()
        };
        assert_eq!(hedge_short.side(), Some(Side::Short));

        let i = Instrument::new(dec!(0.1));
        let ev = p.event(7, None, 100, &i).unwrap().unwrap();
        assert_eq!(
            ev,
            VenueEvent::PositionOpened {
                position: 7,
                ts: 100,
                entry: i.units(dec!(50000)).unwrap(),
                quantity: dec!(0.001)
            }
        );
        assert_eq!(p.event(7, Some(p), 101, &i).unwrap(), None);
        let bigger = PositionInfo {
            amount: dec!(0.002),
            ..p.clone()
        };
        assert!(matches!(
            bigger.event(7, Some(p), 102, &i).unwrap(),
            Some(VenueEvent::PositionChanged { quantity, .. }) if quantity == dec!(0.002)
        ));
        assert_eq!(flat.event(7, Some(p), 103, &i).unwrap(), None);

        let bad = POSITION_RISK.replace("\"positionSide\": \"BOTH\"", "\"positionSide\": \"UP\"");
        assert_eq!(positions(&bad).unwrap_err().field, "[0].positionSide");
        let bad = POSITION_RISK.replace("\"entryPrice\": \"50000.0\"", "\"entryPrice\": \"0\"");
        assert_eq!(positions(&bad).unwrap_err().field, "[0].entryPrice");
        assert_eq!(positions("{}").unwrap_err().field, "json");
    }

    #[test]
    fn algo_orders_parse_both_spellings_of_the_type() {
        let open = open_algo_orders(OPEN_ALGO).unwrap();
        assert_eq!(open.len(), 1);
        let o = &open[0];
        assert_eq!(o.algo_id, 123456789);
        assert_eq!(o.client_algo_id, "test-algo-order-1");
        assert_eq!(o.order_type, "STOP_MARKET");
        assert_eq!(o.side, OrderSide::Buy);
        assert_eq!(o.status, AlgoStatus::New);
        assert_eq!(o.trigger_price, dec!(45000.00));
        assert_eq!(o.working_type, "MARK_PRICE");
        assert!(!o.close_position && !o.is_ours());

        let c = algo_order(CREATED).unwrap();
        assert_eq!(c.order_type, "TAKE_PROFIT");
        assert_eq!(c.algo_id, 2146760);
        assert_eq!(c.actual_order_id, None);
        assert_eq!(c.updated_ms, Some(1750485492076));
        // The acknowledgement is the exchange's time, never before the command's.
        assert_eq!(c.acknowledged_at(1750485492000), 1750485492076);
        assert_eq!(c.acknowledged_at(1750485493000), 1750485493000);
        let untimed = CREATED.replace("\"updateTime\":1750485492076,", "");
        assert_ne!(untimed, CREATED);
        assert_eq!(algo_order(&untimed).unwrap().acknowledged_at(7), 7);

        let t = algo_order(TRIGGERED).unwrap();
        assert_eq!(t.status, AlgoStatus::Finished);
        assert_eq!(t.actual_order_id.as_deref(), Some("987654321"));
        assert_eq!(t.fill(), Some(dec!(2499.50)));
        assert!(t.is_ours());

        let bad = OPEN_ALGO.replace("\"NEW\"", "\"RESTING\"");
        let e = open_algo_orders(&bad).unwrap_err();
        assert_eq!(e.field, "[0].algoStatus");
        assert!(e.problem.contains("RESTING"));
        let bad = OPEN_ALGO.replace("\"type\": \"STOP_MARKET\",", "");
        assert_eq!(open_algo_orders(&bad).unwrap_err().field, "[0].type");
    }

    #[test]
    fn client_ids_round_trip() {
        let r = OrderRef {
            position: 42,
            seq: 7,
        };
        assert_eq!(parse_client_id(&r.client_id()), Some(r));
        for foreign in [
            "ts-42",
            "ts-x-1",
            "ts-042-7",
            "ts-42-c0",
            "Q5xaq5EGK",
            "ts--1-2",
        ] {
            assert_eq!(parse_client_id(foreign), None, "{foreign}");
        }
    }

    fn info(status: AlgoStatus) -> AlgoOrderInfo {
        let mut i = algo_order(TRIGGERED).unwrap();
        i.status = status;
        if matches!(status, AlgoStatus::New | AlgoStatus::Canceled) {
            i.actual_order_id = None;
            i.avg_price = None;
            i.executed_qty = None;
        }
        i
    }

    #[test]
    fn a_query_resolves_an_ambiguous_command() {
        let i = Instrument::new(dec!(0.01));
        let order = OrderRef {
            position: 5,
            seq: 3,
        };
        let not_applied = VenueEvent::Rejected {
            order,
            ts: 9,
            reason: RejectReason::Invalid { code: NOT_APPLIED },
        };
        assert_eq!(
            resolve_query(order, None, &i, 9).unwrap(),
            Some(not_applied.clone())
        );
        assert_eq!(
            resolve_query(order, Some(&info(AlgoStatus::New)), &i, 9).unwrap(),
            Some(VenueEvent::Accepted {
                order,
                stop: i.units(dec!(2500)).unwrap(),
                ts: 9,
                venue_id: Some("123456789".into())
            })
        );
        assert_eq!(
            resolve_query(order, Some(&info(AlgoStatus::Canceled)), &i, 9).unwrap(),
            Some(not_applied)
        );
        assert_eq!(
            resolve_query(order, Some(&info(AlgoStatus::Finished)), &i, 9).unwrap(),
            Some(VenueEvent::Triggered {
                order,
                ts: 9,
                fill: i.units(dec!(2499.50)).unwrap()
            })
        );
        for s in [AlgoStatus::Triggering, AlgoStatus::Triggered] {
            assert_eq!(resolve_query(order, Some(&info(s)), &i, 9).unwrap(), None);
        }
        // Rejected after it became an order: unprotected, for the stream's reaction.
        assert_eq!(
            resolve_query(order, Some(&info(AlgoStatus::Rejected)), &i, 9).unwrap(),
            None
        );
    }

    #[test]
    fn a_cancel_that_found_nothing_never_places_on_a_closed_position() {
        let i = Instrument::new(dec!(0.01));
        let order = OrderRef {
            position: 5,
            seq: 3,
        };
        let r = |s: Option<AlgoStatus>, open| {
            let x = s.map(info);
            resolve_missing_cancel(order, x.as_ref(), open, &i, 9).unwrap()
        };
        // Just triggered and filled: the position closed at the fill.
        assert_eq!(
            r(Some(AlgoStatus::Finished), false),
            MissingStop::Triggered(VenueEvent::Triggered {
                order,
                ts: 9,
                fill: i.units(dec!(2499.50)).unwrap()
            })
        );
        // Found late (a re-check after a reconnect): stamped when the exchange filled it.
        let finished = AlgoOrderInfo {
            updated_ms: Some(7),
            ..info(AlgoStatus::Finished)
        };
        assert_eq!(
            resolve_missing_cancel(order, Some(&finished), false, &i, 9).unwrap(),
            MissingStop::Triggered(VenueEvent::Triggered {
                order,
                ts: 7,
                fill: i.units(dec!(2499.50)).unwrap()
            })
        );
        assert_eq!(
            r(Some(AlgoStatus::Triggering), true),
            MissingStop::AwaitFill
        );
        assert_eq!(
            r(Some(AlgoStatus::Triggered), false),
            MissingStop::AwaitFill
        );
        assert_eq!(r(Some(AlgoStatus::New), true), MissingStop::StillResting);
        assert_eq!(
            r(Some(AlgoStatus::Canceled), true),
            MissingStop::Gone(VenueEvent::Cancelled { order, ts: 9 })
        );
        assert_eq!(
            r(None, true),
            MissingStop::Gone(VenueEvent::Cancelled { order, ts: 9 })
        );
        // Flat: nothing is placed.
        assert_eq!(r(None, false), MissingStop::PositionClosed);
        assert_eq!(
            r(Some(AlgoStatus::Canceled), false),
            MissingStop::PositionClosed
        );
    }
}
