//! Binance USD-M stream messages (`EXCHANGES.md` §1.6; `LIVE.md` §2, §5).
//!
//! - Market (`/market` host): `markPriceUpdate` (`<symbol>@markPrice@1s`) and `aggTrade`, each
//!   a [`PricePoint`] stamped with the message's event time `E` (the engine's time), even when
//!   the price did not change. [`PriceClock`] drops a point stamped before the last one of its
//!   symbol, and counts it, and the last one again (the same time and price).
//! - User data (`/private` host): `ALGO_UPDATE` (the stop's life: `NEW → TRIGGERING →
//!   TRIGGERED → FINISHED`, or `CANCELED`/`REJECTED`/`EXPIRED`; once triggered the fill belongs
//!   to a *new* order, `ai`), `ORDER_TRADE_UPDATE` (that order and its fills, and our close at
//!   market), `ACCOUNT_UPDATE` (positions), `listenKeyExpired`.
//!
//! Combined streams wrap each message as `{"stream":"…","data":{…}}`; both forms are read.
//! Events trailstop has no use for (`TRADE_LITE`, `MARGIN_CALL`, …) are [`StreamMessage::Other`],
//! not errors: Binance adds events.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::Value;

use super::request::PositionSide;
use super::snapshot::{
    self, AlgoStatus, OrderSide, PositionInfo, algo_status, average_units, order_side,
    position_side, to_units,
};
use crate::engine::Instrument;
use crate::live::bybit::json::{self, Obj, ParseError, each};
use crate::venue::{OrderRef, VenueEvent};

/// One stream message.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    /// A trigger-price point (`markPriceUpdate` or `aggTrade`).
    Price(PricePoint),
    Algo(AlgoUpdate),
    Order(OrderUpdate),
    Account(AccountUpdate),
    /// The user stream's key expired: new key, reconnect, re-check by REST.
    ListenKeyExpired {
        ts: i64,
    },
    /// The answer to a `SUBSCRIBE` (`{"result":null,"id":1}`) or its error.
    Reply {
        id: Option<i64>,
        error: Option<(i64, String)>,
    },
    /// An event trailstop does not use.
    Other {
        event: String,
    },
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<StreamMessage, ParseError> {
    let v = json::parse_text(text)?;
    let outer = json::object(&v, "")?;
    // A combined stream's envelope.
    let o = match (outer.opt_str("stream")?, outer.get("data")) {
        (Some(_), Some(data)) => json::object(data, "data")?,
        _ => outer,
    };
    let Some(event) = o.opt_str("e")? else {
        return reply(&o);
    };
    match event {
        "markPriceUpdate" | "aggTrade" => price(&o).map(StreamMessage::Price),
        "ALGO_UPDATE" => algo_update(&o).map(StreamMessage::Algo),
        "ORDER_TRADE_UPDATE" => order_update(&o).map(StreamMessage::Order),
        "ACCOUNT_UPDATE" => account_update(&o).map(StreamMessage::Account),
        "listenKeyExpired" => Ok(StreamMessage::ListenKeyExpired { ts: o.int("E")? }),
        other => Ok(StreamMessage::Other {
            event: other.to_string(),
        }),
    }
}

fn reply(o: &Obj<'_>) -> Result<StreamMessage, ParseError> {
    if !o.has("id") && !o.has("result") && !o.has("error") {
        return Err(ParseError::new(
            "e",
            "missing (neither an event nor a reply)",
        ));
    }
    let error = match o.get("error") {
        Some(_) => {
            let e = o.obj("error")?;
            Some((
                e.int("code")?,
                e.opt_str("msg")?.unwrap_or_default().to_string(),
            ))
        }
        None => None,
    };
    Ok(StreamMessage::Reply {
        id: o.opt_int("id")?,
        error,
    })
}

/// A price point for the engine: the trigger price of `symbol` at the exchange's `ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricePoint {
    pub symbol: String,
    pub price: Decimal,
    pub ts: i64,
}

impl PricePoint {
    /// The price in `instrument` units (the engine's), or an error if it is finer.
    pub fn units(&self, instrument: &Instrument) -> Result<i64, ParseError> {
        to_units(self.price, instrument, &format!("{}.p", self.symbol))
    }
}

fn price(o: &Obj<'_>) -> Result<PricePoint, ParseError> {
    let p = o.dec("p")?;
    if p <= Decimal::ZERO {
        return Err(ParseError::new(o.field("p"), "must be > 0"));
    }
    Ok(PricePoint {
        symbol: o.str("s")?.to_string(),
        price: p,
        ts: o.int("E")?,
    })
}

/// The last point applied per symbol: a point stamped before it is dropped and counted; the
/// same point again (its time and price: a reconnected stream's first message re-sends the
/// current mark, a message delivered twice) is the same message, not news.
#[derive(Debug, Clone, Default)]
pub struct PriceClock {
    last: BTreeMap<String, (i64, Decimal)>,
    /// Points dropped as older than the last one applied (a metric).
    pub dropped_stale: u64,
}

impl PriceClock {
    /// Whether `point` is news (not stamped before the last one of its symbol, nor that
    /// one again).
    pub fn admit(&mut self, point: &PricePoint) -> bool {
        let last = self
            .last
            .entry(point.symbol.clone())
            .or_insert((i64::MIN, Decimal::ZERO));
        if point.ts < last.0 {
            self.dropped_stale += 1;
            return false;
        }
        if *last == (point.ts, point.price) {
            return false;
        }
        *last = (point.ts, point.price);
        true
    }
}

/// An `ALGO_UPDATE`: the stop's status and, once triggered, the order it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgoUpdate {
    /// The transaction time `T`.
    pub ts: i64,
    pub client_algo_id: String,
    pub algo_id: i64,
    pub symbol: String,
    pub side: OrderSide,
    pub position_side: PositionSide,
    pub order_type: String,
    pub status: AlgoStatus,
    pub trigger_price: Decimal,
    pub close_position: bool,
    /// `ai`: the matching engine's order once triggered.
    pub actual_order_id: Option<String>,
    /// `ap`, `aq`: that order's average price and filled quantity.
    pub avg_price: Option<Decimal>,
    pub executed_qty: Option<Decimal>,
    /// `tt`: when it triggered (0 before).
    pub trigger_time: Option<i64>,
    /// `rm`: a rejection's reason.
    pub reject_message: String,
}

fn algo_update(o: &Obj<'_>) -> Result<AlgoUpdate, ParseError> {
    let d = o.obj("o")?;
    let ai = match d.get("ai") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(ParseError::new(d.field("ai"), "expected an order id")),
        None => None,
    };
    Ok(AlgoUpdate {
        ts: o.int("T")?,
        client_algo_id: d.str("caid")?.to_string(),
        algo_id: d.int("aid")?,
        symbol: d.str("s")?.to_string(),
        side: order_side(&d, "S")?,
        position_side: match d.opt_str("ps")? {
            Some(_) => position_side(&d, "ps")?,
            None => PositionSide::Both,
        },
        order_type: d.str("o")?.to_string(),
        status: algo_status(&d, "X")?,
        trigger_price: d.dec("tp")?,
        close_position: d.has("cp") && d.bool("cp")?,
        actual_order_id: ai.filter(|s| !s.is_empty() && s != "0"),
        avg_price: d.opt_dec("ap")?,
        executed_qty: d.opt_dec("aq")?,
        trigger_time: d.opt_int("tt")?.filter(|t| *t > 0),
        reject_message: d.opt_str("rm")?.unwrap_or_default().to_string(),
    })
}

/// What an `ALGO_UPDATE` of a managed stop means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlgoNews {
    /// For the lifecycle.
    Event(VenueEvent),
    /// The trigger was hit; the order is on its way (nothing rests meanwhile).
    Triggering,
    /// It became the order `actual_order_id`: its fill arrives as an `ORDER_TRADE_UPDATE`
    /// of that id (the algo id never fills: freqtrade #12680).
    Triggered { actual_order_id: Option<String> },
    /// It fired but did not close the position (`REJECTED`/`EXPIRED` after triggering, e.g.
    /// `-4131` at market; or finished without a fill): the position is unprotected. Close it
    /// at market and alert.
    Unprotected { reason: String },
}

impl AlgoUpdate {
    /// Whether it had reached the matching engine (a trigger time, an actual order).
    pub fn was_triggered(&self) -> bool {
        self.trigger_time.is_some() || self.actual_order_id.is_some()
    }

    /// The fill of the order it became, if it filled.
    pub fn fill(&self) -> Option<Decimal> {
        let filled = self.executed_qty.is_some_and(|q| q > Decimal::ZERO);
        self.avg_price.filter(|p| filled && *p > Decimal::ZERO)
    }

    /// The news of this update for the stop `order` (the driver matched `caid`).
    /// `triggering_seen`: an earlier `TRIGGERING` or `TRIGGERED` of the same stop.
    pub fn news(
        &self,
        order: OrderRef,
        instrument: &Instrument,
        triggering_seen: bool,
    ) -> Result<AlgoNews, ParseError> {
        let ts = self.ts;
        let field = |k: &str| format!("{}.{k}", self.client_algo_id);
        Ok(match self.status {
            AlgoStatus::New => AlgoNews::Event(VenueEvent::Accepted {
                order,
                stop: to_units(self.trigger_price, instrument, &field("tp"))?,
                ts,
                venue_id: Some(self.algo_id.to_string()),
            }),
            AlgoStatus::Triggering => AlgoNews::Triggering,
            AlgoStatus::Triggered => AlgoNews::Triggered {
                actual_order_id: self.actual_order_id.clone(),
            },
            AlgoStatus::Finished => match self.fill() {
                Some(ap) => AlgoNews::Event(VenueEvent::Triggered {
                    order,
                    ts,
                    fill: average_units(ap, instrument, &field("ap"))?,
                }),
                None => AlgoNews::Unprotected {
                    reason: "the triggered order finished without a fill".into(),
                },
            },
            AlgoStatus::Canceled => AlgoNews::Event(VenueEvent::Cancelled { order, ts }),
            AlgoStatus::Rejected | AlgoStatus::Expired
                if triggering_seen || self.was_triggered() =>
            {
                AlgoNews::Unprotected {
                    reason: format!(
                        "{} after triggering: {}",
                        self.status.as_str(),
                        if self.reject_message.is_empty() {
                            "no reason given"
                        } else {
                            &self.reject_message
                        }
                    ),
                }
            }
            // Refused or expired before it fired: gone without a fill (the driver replaces
            // it, or sees the position flat).
            AlgoStatus::Rejected | AlgoStatus::Expired => {
                AlgoNews::Event(VenueEvent::Cancelled { order, ts })
            }
        })
    }
}

/// An `ORDER_TRADE_UPDATE`: a regular order (a triggered stop's, our close's, anyone's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUpdate {
    /// The transaction time `T`.
    pub ts: i64,
    pub symbol: String,
    pub client_order_id: String,
    pub order_id: i64,
    pub side: OrderSide,
    pub order_type: String,
    pub original_type: String,
    /// `X`: `NEW`, `PARTIALLY_FILLED`, `FILLED`, `CANCELED`, `EXPIRED`, …
    pub status: String,
    /// `x`: `NEW`, `TRADE`, `CANCELED`, `EXPIRED`, `CALCULATED` (liquidation), …
    pub execution_type: String,
    pub avg_price: Option<Decimal>,
    pub last_price: Option<Decimal>,
    pub last_qty: Decimal,
    pub cum_qty: Decimal,
    pub reduce_only: bool,
    pub close_position: bool,
    pub position_side: PositionSide,
}

fn order_update(o: &Obj<'_>) -> Result<OrderUpdate, ParseError> {
    let d = o.obj("o")?;
    let nonzero = |k: &str| -> Result<Option<Decimal>, ParseError> {
        Ok(d.opt_dec(k)?.filter(|p| !p.is_zero()))
    };
    Ok(OrderUpdate {
        ts: o.int("T")?,
        symbol: d.str("s")?.to_string(),
        client_order_id: d.opt_str("c")?.unwrap_or_default().to_string(),
        order_id: d.int("i")?,
        side: order_side(&d, "S")?,
        order_type: d.str("o")?.to_string(),
        original_type: d.opt_str("ot")?.unwrap_or_default().to_string(),
        status: d.str("X")?.to_string(),
        execution_type: d.str("x")?.to_string(),
        avg_price: nonzero("ap")?,
        last_price: nonzero("L")?,
        last_qty: d.opt_dec("l")?.unwrap_or_default(),
        cum_qty: d.opt_dec("z")?.unwrap_or_default(),
        reduce_only: d.has("R") && d.bool("R")?,
        close_position: d.has("cp") && d.bool("cp")?,
        position_side: match d.opt_str("ps")? {
            Some(_) => position_side(&d, "ps")?,
            None => PositionSide::Both,
        },
    })
}

impl OrderUpdate {
    /// Whether this is the order a stop became (`ai` of its `ALGO_UPDATE`).
    pub fn is_order(&self, actual_order_id: &str) -> bool {
        self.order_id.to_string() == actual_order_id
    }

    /// The average price of a completely filled order, as the exchange says it (`ap`).
    pub fn filled_at(&self) -> Option<Decimal> {
        (self.status == "FILLED")
            .then_some(self.avg_price)
            .flatten()
    }

    /// The average price of a completely filled order: the volume-weighted price of its
    /// executions when `seen` holds all of them (exact, `Decimal`), else the exchange's `ap`.
    pub fn filled_at_after(&self, seen: &Executions) -> Option<Decimal> {
        let filled = self.filled_at()?;
        Some(seen.average(self.cum_qty).unwrap_or(filled))
    }

    fn fill_units(
        &self,
        instrument: &Instrument,
        seen: &Executions,
    ) -> Result<Option<i64>, ParseError> {
        self.filled_at_after(seen)
            .map(|p| average_units(p, instrument, &format!("{}.ap", self.symbol)))
            .transpose()
    }

    /// The stop `order` filled here (this is the order it became, `seen` its executions so
    /// far, this one included): triggered at their average.
    pub fn triggered_after(
        &self,
        order: OrderRef,
        instrument: &Instrument,
        seen: &Executions,
    ) -> Result<Option<VenueEvent>, ParseError> {
        Ok(self
            .fill_units(instrument, seen)?
            .map(|fill| VenueEvent::Triggered {
                order,
                ts: self.ts,
                fill,
            }))
    }

    /// [`OrderUpdate::triggered_after`] with this execution alone.
    pub fn triggered(
        &self,
        order: OrderRef,
        instrument: &Instrument,
    ) -> Result<Option<VenueEvent>, ParseError> {
        self.triggered_after(order, instrument, &Executions::of(self))
    }

    /// The driver's `position` closed by this order (our close, or someone else's; `seen`
    /// its executions so far).
    pub fn closed_after(
        &self,
        position: u64,
        instrument: &Instrument,
        seen: &Executions,
    ) -> Result<Option<VenueEvent>, ParseError> {
        Ok(self
            .fill_units(instrument, seen)?
            .map(|fill| VenueEvent::PositionClosed {
                position,
                ts: self.ts,
                fill,
            }))
    }

    /// [`OrderUpdate::closed_after`] with this execution alone.
    pub fn closed(
        &self,
        position: u64,
        instrument: &Instrument,
    ) -> Result<Option<VenueEvent>, ParseError> {
        self.closed_after(position, instrument, &Executions::of(self))
    }
}

/// The executions of one order seen so far: their quantity and notional (Σ `l` × `L`),
/// exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Executions {
    pub qty: Decimal,
    pub notional: Decimal,
}

impl Executions {
    /// `u`'s execution alone.
    pub fn of(u: &OrderUpdate) -> Executions {
        let mut e = Executions::default();
        e.add(u);
        e
    }

    /// Adds `u`'s execution, if it is one (`x` = `TRADE`, `l` at `L`).
    pub fn add(&mut self, u: &OrderUpdate) {
        if let (true, Some(price)) = (u.execution_type == "TRADE", u.last_price) {
            self.qty += u.last_qty;
            self.notional += u.last_qty * price;
        }
    }

    /// The volume-weighted price of what was seen, when that is all of `cum` filled.
    pub fn average(&self, cum: Decimal) -> Option<Decimal> {
        (!self.qty.is_zero() && self.qty == cum).then(|| self.notional / self.qty)
    }
}

/// An `ACCOUNT_UPDATE`: the positions that changed (`a.P`) and why (`a.m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUpdate {
    /// The transaction time `T`.
    pub ts: i64,
    /// `ORDER`, `FUNDING_FEE`, `ADL`, `MARGIN_TYPE_CHANGE`, …
    pub reason: String,
    pub positions: Vec<PositionInfo>,
}

fn account_update(o: &Obj<'_>) -> Result<AccountUpdate, ParseError> {
    let a = o.obj("a")?;
    let positions = if a.has("P") {
        each(&a, "P", |p| {
            let info = PositionInfo {
                symbol: p.str("s")?.to_string(),
                position_side: position_side(&p, "ps")?,
                amount: p.dec("pa")?,
                entry_price: p.dec("ep")?,
                mark_price: None,
                updated_ms: None,
            };
            snapshot::checked_position(info, &p)
        })?
    } else {
        Vec::new()
    };
    Ok(AccountUpdate {
        ts: o.int("T")?,
        reason: a.opt_str("m")?.unwrap_or_default().to_string(),
        positions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Side;
    use rust_decimal_macros::dec;

    const MARK: &str = include_str!("../../../tests/fixtures/binance/mark_price_stream.json");
    const AGG: &str = include_str!("../../../tests/fixtures/binance/agg_trade_stream.json");
    const ALGO_NEW: &str = include_str!("../../../tests/fixtures/binance/algo_update_new.json");
    const ALGO_CANCELED: &str =
        include_str!("../../../tests/fixtures/binance/algo_update_canceled.json");
    const ORDER_TRADE: &str =
        include_str!("../../../tests/fixtures/binance/order_update_trade.json");
    const ACCOUNT: &str = include_str!("../../../tests/fixtures/binance/account_update.json");

    fn order() -> OrderRef {
        OrderRef {
            position: 5,
            seq: 3,
        }
    }

    /// A stop's ALGO_UPDATE at `status`, written from the docs' field table: `ai`, `ap`, `aq`
    /// and `tt` as the docs describe them once triggered.
    fn algo(status: &str, ai: &str, ap: &str, aq: &str, tt: i64, rm: &str) -> String {
        format!(
            r#"{{"e":"ALGO_UPDATE","T":1767000001000,"E":1767000001005,"o":{{"caid":"ts-5-3","aid":3000001,
            "at":"CONDITIONAL","o":"STOP_MARKET","s":"BTCUSDT","S":"SELL","ps":"BOTH","f":"GTC","q":"0",
            "X":"{status}","ai":"{ai}","ap":"{ap}","aq":"{aq}","act":"MARKET","tp":"61250.0","p":"0",
            "wt":"MARK_PRICE","pm":"NONE","cp":true,"pP":false,"R":false,"tt":{tt},"gtd":0,"rm":"{rm}"}}}}"#
        )
    }

    fn algo_update(text: &str) -> AlgoUpdate {
        match parse(text).unwrap() {
            StreamMessage::Algo(a) => a,
            other => panic!("not an algo update: {other:?}"),
        }
    }

    #[test]
    fn mark_price_and_agg_trade_points_carry_the_event_time() {
        let StreamMessage::Price(p) = parse(MARK).unwrap() else {
            panic!()
        };
        assert_eq!(
            p,
            PricePoint {
                symbol: "BTCUSDT".into(),
                price: dec!(11794.15000000),
                ts: 1562305380000
            }
        );
        let i = Instrument::new(dec!(0.01));
        assert_eq!(p.units(&i).unwrap(), i.units(dec!(11794.15)).unwrap());
        let StreamMessage::Price(t) = parse(AGG).unwrap() else {
            panic!()
        };
        assert_eq!((t.price, t.ts), (dec!(0.001), 123456789));
        // The combined stream's envelope.
        let wrapped = format!(r#"{{"stream":"btcusdt@markPrice@1s","data":{MARK}}}"#);
        assert_eq!(parse(&wrapped).unwrap(), StreamMessage::Price(p.clone()));
        // Errors name the field.
        let bad = MARK.replace("\"11794.15000000\"", "\"-1\"");
        assert_eq!(parse(&bad).unwrap_err().field, "p");
        let bad = MARK.replace("\"11794.15000000\"", "11794.15");
        assert!(parse(&bad).unwrap_err().problem.contains("decimal string"));
        let bad = wrapped.replace("\"E\": 1562305380000,", "");
        assert_eq!(parse(&bad).unwrap_err().field, "data.E");
    }

    #[test]
    fn a_point_older_than_the_last_is_dropped_and_counted() {
        let mut c = PriceClock::default();
        let at = |s: &str, ts, price| PricePoint {
            symbol: s.into(),
            price,
            ts,
        };
        assert!(c.admit(&at("BTCUSDT", 10, dec!(1))));
        // Another price at the same time is news (two trades in one millisecond); the same
        // price at a later time too (LIVE.md §5: a point even when the price did not change).
        assert!(c.admit(&at("BTCUSDT", 10, dec!(2))));
        assert!(c.admit(&at("BTCUSDT", 11, dec!(2))));
        // The same point again is not (a reconnect's re-sent mark), nor is it stale.
        assert!(!c.admit(&at("BTCUSDT", 11, dec!(2))));
        assert!(!c.admit(&at("BTCUSDT", 9, dec!(2))));
        assert!(c.admit(&at("ETHUSDT", 1, dec!(2))));
        assert_eq!(c.dropped_stale, 1);
    }

    #[test]
    fn the_docs_algo_updates() {
        let a = algo_update(ALGO_NEW);
        assert_eq!(a.client_algo_id, "Q5xaq5EGKgXXa0fD7fs0Ip");
        assert_eq!(a.algo_id, 2148719);
        assert_eq!(a.status, AlgoStatus::New);
        assert_eq!(a.order_type, "TAKE_PROFIT");
        assert_eq!(a.side, OrderSide::Sell);
        assert_eq!(a.trigger_price, dec!(750));
        assert_eq!(a.actual_order_id, None);
        assert_eq!(a.trigger_time, None);
        assert_eq!(a.ts, 1750515742297);
        let i = Instrument::new(dec!(0.01));
        assert_eq!(
            a.news(order(), &i, false).unwrap(),
            AlgoNews::Event(VenueEvent::Accepted {
                order: order(),
                stop: i.units(dec!(750)).unwrap(),
                ts: 1750515742297,
                venue_id: Some("2148719".into())
            })
        );
        let c = algo_update(ALGO_CANCELED);
        assert_eq!(c.status, AlgoStatus::Canceled);
        assert_eq!(
            c.news(order(), &i, false).unwrap(),
            AlgoNews::Event(VenueEvent::Cancelled {
                order: order(),
                ts: 1750515742297
            })
        );
    }

    #[test]
    fn the_trigger_sequence_and_the_new_order_id() {
        let i = Instrument::new(dec!(0.1));
        let n = |text: &str, seen| algo_update(text).news(order(), &i, seen).unwrap();
        assert_eq!(
            n(&algo("TRIGGERING", "", "0", "0", 1767000001000, ""), false),
            AlgoNews::Triggering
        );
        let triggered = algo("TRIGGERED", "8886774", "0", "0", 1767000001000, "");
        assert_eq!(
            n(&triggered, true),
            AlgoNews::Triggered {
                actual_order_id: Some("8886774".into())
            }
        );
        assert_eq!(
            n(
                &algo("FINISHED", "8886774", "61240.5", "0.5", 1767000001000, ""),
                true
            ),
            AlgoNews::Event(VenueEvent::Triggered {
                order: order(),
                ts: 1767000001000,
                fill: i.units(dec!(61240.5)).unwrap()
            })
        );
        // The fill is looked up by the new order's id, not the algo id (freqtrade #12680).
        let fill = ORDER_TRADE.replace("\"X\": \"PARTIALLY_FILLED\"", "\"X\": \"FILLED\"");
        let StreamMessage::Order(u) = parse(&fill).unwrap() else {
            panic!()
        };
        assert!(u.is_order("8886774"));
        assert!(!u.is_order("3000001"));
        assert_eq!(
            u.triggered(order(), &i).unwrap(),
            Some(VenueEvent::Triggered {
                order: order(),
                ts: 1568879465651,
                fill: i.units(dec!(7100.5)).unwrap()
            })
        );
    }

    #[test]
    fn rejected_after_triggering_is_unprotected() {
        let i = Instrument::new(dec!(0.1));
        let n = |text: &str, seen| algo_update(text).news(order(), &i, seen).unwrap();
        let msg = "Market order rejected: PERCENT_PRICE";
        // Seen triggering, or carrying a trigger time or an order: the stop fired and failed.
        for (text, seen) in [
            (algo("REJECTED", "", "0", "0", 0, msg), true),
            (algo("REJECTED", "", "0", "0", 1767000001000, msg), false),
            (algo("EXPIRED", "8886774", "0", "0", 0, ""), false),
        ] {
            assert!(
                matches!(n(&text, seen), AlgoNews::Unprotected { ref reason } if reason.contains("after triggering")),
                "{text}"
            );
        }
        assert_eq!(
            n(&algo("REJECTED", "", "0", "0", 0, msg), true),
            AlgoNews::Unprotected {
                reason: format!("REJECTED after triggering: {msg}")
            }
        );
        assert!(matches!(
            n(
                &algo("FINISHED", "8886774", "0", "0", 1767000001000, ""),
                true
            ),
            AlgoNews::Unprotected { .. }
        ));
        // Before it fired: gone, without a fill.
        assert_eq!(
            n(&algo("EXPIRED", "", "0", "0", 0, ""), false),
            AlgoNews::Event(VenueEvent::Cancelled {
                order: order(),
                ts: 1767000001000
            })
        );
    }

    #[test]
    fn order_updates() {
        let StreamMessage::Order(u) = parse(ORDER_TRADE).unwrap() else {
            panic!()
        };
        assert_eq!(u.symbol, "BTCUSDT");
        assert_eq!(u.client_order_id, "TEST");
        assert_eq!(u.order_id, 8886774);
        assert_eq!(u.side, OrderSide::Buy);
        assert_eq!(u.status, "PARTIALLY_FILLED");
        assert_eq!(u.execution_type, "TRADE");
        assert_eq!(u.avg_price, Some(dec!(7100.50)));
        assert_eq!(u.last_qty, dec!(0.001));
        assert_eq!(u.position_side, PositionSide::Long);
        // Not filled completely: no close yet.
        let i = Instrument::new(dec!(0.1));
        assert_eq!(u.filled_at(), None);
        assert_eq!(u.closed(5, &i).unwrap(), None);
        let filled = ORDER_TRADE.replace("\"PARTIALLY_FILLED\"", "\"FILLED\"");
        let StreamMessage::Order(f) = parse(&filled).unwrap() else {
            panic!()
        };
        assert_eq!(
            f.closed(5, &i).unwrap(),
            Some(VenueEvent::PositionClosed {
                position: 5,
                ts: 1568879465651,
                fill: i.units(dec!(7100.5)).unwrap()
            })
        );
        let bad = ORDER_TRADE.replace("\"i\": 8886774", "\"i\": \"x\"");
        assert_eq!(parse(&bad).unwrap_err().field, "o.i");
    }

    #[test]
    fn account_updates_list_the_positions() {
        let StreamMessage::Account(a) = parse(ACCOUNT).unwrap() else {
            panic!()
        };
        assert_eq!(a.ts, 1564745798939);
        assert_eq!(a.reason, "ORDER");
        assert_eq!(a.positions.len(), 3);
        assert!(!a.positions[0].is_open());
        assert_eq!(a.positions[1].side(), Some(Side::Long));
        assert_eq!(a.positions[1].size(), dec!(20));
        assert_eq!(a.positions[1].entry_price, dec!(6563.6));
        assert_eq!(a.positions[2].side(), Some(Side::Short));
        assert_eq!(a.positions[2].size(), dec!(10));
        let bad = ACCOUNT.replace("\"ps\": \"LONG\"", "\"ps\": \"UP\"");
        assert_eq!(parse(&bad).unwrap_err().field, "a.P[1].ps");
    }

    #[test]
    fn listen_key_expiry_replies_and_other_events() {
        assert_eq!(
            parse(r#"{"e":"listenKeyExpired","E":1576653824250,"listenKey":"WsCMN0a4KHUPTQuX6IUnqEZfB1inxmv1qR4kbf1LuEjur5VdbzqvyxqG9TSjVVxv"}"#).unwrap(),
            StreamMessage::ListenKeyExpired { ts: 1576653824250 }
        );
        assert_eq!(
            parse(r#"{"result":null,"id":1}"#).unwrap(),
            StreamMessage::Reply {
                id: Some(1),
                error: None
            }
        );
        assert_eq!(
            parse(r#"{"error":{"code":2,"msg":"Invalid request"},"id":2}"#).unwrap(),
            StreamMessage::Reply {
                id: Some(2),
                error: Some((2, "Invalid request".into()))
            }
        );
        assert_eq!(
            parse(r#"{"e":"TRADE_LITE","E":1}"#).unwrap(),
            StreamMessage::Other {
                event: "TRADE_LITE".into()
            }
        );
        assert_eq!(parse(r#"{"x":1}"#).unwrap_err().field, "e");
        assert_eq!(parse("[]").unwrap_err().field, "json");
    }
}
