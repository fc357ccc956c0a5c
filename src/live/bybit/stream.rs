//! Bybit v5 stream messages (`EXCHANGES.md` §2.6; `LIVE.md` §2, §5).
//!
//! - Public `tickers.<SYMBOL>`: a snapshot, then deltas that carry only what changed
//!   ("if a response param is not found in the message, then its value has not changed").
//!   [`TickerBook`] merges them per symbol and yields a [`PricePoint`] for every message that
//!   carries the trigger price (`markPrice` or `lastPrice`), even when the price did not
//!   change, stamped with the message's `ts`: the exchange's event time is the engine's time.
//! - Private `position`, `order`, `execution`: typed, exact, with helpers that make the seam's
//!   [`VenueEvent`]s once the driver has said which of its positions and orders they are.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::json::{self, Obj, ParseError, each};
use super::request::PositionIdx;
use super::snapshot::{self, PositionInfo, to_units};
use crate::engine::Instrument;
use crate::live::config::TriggerPrice;
use crate::venue::{OrderRef, VenueEvent};

/// One stream message.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    Ticker(TickerUpdate),
    /// `ts` is the message's `creationTime`.
    Positions {
        ts: i64,
        list: Vec<PositionInfo>,
    },
    Orders {
        ts: i64,
        list: Vec<OrderInfo>,
    },
    Executions {
        ts: i64,
        list: Vec<ExecutionInfo>,
    },
    /// The answer to a ping.
    Pong,
    /// The answer to a `subscribe` or an `auth`.
    Reply {
        op: String,
        success: bool,
        /// `retCode` where given (auth replies).
        code: Option<i64>,
        message: String,
    },
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<StreamMessage, ParseError> {
    let v = json::parse_text(text)?;
    let o = json::object(&v, "")?;
    let Some(topic) = o.opt_str("topic")? else {
        return reply(&o);
    };
    if let Some(symbol) = topic.strip_prefix("tickers.") {
        return ticker(&o, symbol).map(StreamMessage::Ticker);
    }
    let ts = || o.int("creationTime");
    match topic {
        "position" | "position.linear" => Ok(StreamMessage::Positions {
            ts: ts()?,
            list: each(&o, "data", snapshot::position)?,
        }),
        "order" | "order.linear" => Ok(StreamMessage::Orders {
            ts: ts()?,
            list: each(&o, "data", order)?,
        }),
        "execution" | "execution.linear" => Ok(StreamMessage::Executions {
            ts: ts()?,
            list: each(&o, "data", execution)?,
        }),
        other => Err(ParseError::new(
            "topic",
            format!("\"{other}\" is not a topic this adapter subscribes to"),
        )),
    }
}

fn reply(o: &Obj<'_>) -> Result<StreamMessage, ParseError> {
    let op = o.str("op")?;
    let message = match o.opt_str("ret_msg")? {
        Some(m) => m,
        None => o.opt_str("retMsg")?.unwrap_or_default(),
    };
    // Public streams answer a ping with op "ping" and ret_msg "pong"; private ones with
    // op "pong".
    if op == "pong" || (op == "ping" && message == "pong") {
        return Ok(StreamMessage::Pong);
    }
    Ok(StreamMessage::Reply {
        op: op.to_string(),
        success: o.bool("success")?,
        code: o.opt_int("retCode")?,
        message: message.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickerKind {
    Snapshot,
    Delta,
}

/// One ticker message: the fields trailstop reads, `None` where the message lacks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickerUpdate {
    pub symbol: String,
    pub kind: TickerKind,
    /// The message's `ts`: when the exchange generated the data.
    pub ts: i64,
    /// Cross sequence.
    pub cs: Option<i64>,
    pub last_price: Option<Decimal>,
    pub mark_price: Option<Decimal>,
}

fn ticker(o: &Obj<'_>, topic_symbol: &str) -> Result<TickerUpdate, ParseError> {
    let kind = match o.str("type")? {
        "snapshot" => TickerKind::Snapshot,
        "delta" => TickerKind::Delta,
        other => {
            return Err(ParseError::new(
                "type",
                format!("\"{other}\" is not snapshot or delta"),
            ));
        }
    };
    // The docs' example has an object; their table says array: take one of either.
    let data = match o.value("data")? {
        serde_json::Value::Array(a) if a.len() == 1 => json::object(&a[0], "data[0]")?,
        serde_json::Value::Array(a) => {
            return Err(ParseError::new(
                "data",
                format!("{} tickers in one message (expected one)", a.len()),
            ));
        }
        other => json::object(other, "data")?,
    };
    let symbol = data.str("symbol")?;
    if symbol != topic_symbol {
        return Err(ParseError::new(
            data.field("symbol"),
            format!("{symbol} in a message of tickers.{topic_symbol}"),
        ));
    }
    let price = |key: &str| -> Result<Option<Decimal>, ParseError> {
        let p = data.opt_dec(key)?;
        if p.is_some_and(|p| p <= Decimal::ZERO) {
            return Err(ParseError::new(data.field(key), "must be > 0"));
        }
        Ok(p)
    };
    Ok(TickerUpdate {
        symbol: symbol.to_string(),
        kind,
        ts: o.int("ts")?,
        cs: o.opt_int("cs")?,
        last_price: price("lastPrice")?,
        mark_price: price("markPrice")?,
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
        to_units(
            self.price,
            instrument,
            &format!("tickers.{}.price", self.symbol),
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TickerState {
    last_price: Option<Decimal>,
    mark_price: Option<Decimal>,
    ts: i64,
}

/// The merged tickers of the subscribed symbols.
#[derive(Debug, Clone)]
pub struct TickerBook {
    trigger: TriggerPrice,
    symbols: BTreeMap<String, TickerState>,
    /// Messages dropped because they were stamped before the last one applied (a metric).
    pub dropped_stale: u64,
}

impl TickerBook {
    pub fn new(trigger: TriggerPrice) -> TickerBook {
        TickerBook {
            trigger,
            symbols: BTreeMap::new(),
            dropped_stale: 0,
        }
    }

    /// Applies `update`; the price point, if it carries the trigger price.
    ///
    /// A snapshot replaces the symbol's state; a delta changes the fields it carries (a delta
    /// before any snapshot is taken as far as it goes). A message stamped before the last one
    /// applied for its symbol is dropped whole and counted: its fields are older news. A
    /// snapshot that repeats the point last given (same time, same trigger price: the one a
    /// resubscription after a reconnect sends) gives no point: the engine has seen it.
    pub fn apply(&mut self, update: &TickerUpdate) -> Option<PricePoint> {
        let trigger = self.trigger;
        let state = self.symbols.entry(update.symbol.clone()).or_default();
        if update.ts < state.ts {
            self.dropped_stale += 1;
            return None;
        }
        let carried = |last: Option<Decimal>, mark: Option<Decimal>| match trigger {
            TriggerPrice::Mark => mark,
            TriggerPrice::Last => last,
        };
        let repeat = update.kind == TickerKind::Snapshot
            && update.ts == state.ts
            && carried(state.last_price, state.mark_price).is_some()
            && carried(state.last_price, state.mark_price)
                == carried(update.last_price, update.mark_price);
        match update.kind {
            TickerKind::Snapshot => {
                *state = TickerState {
                    last_price: update.last_price,
                    mark_price: update.mark_price,
                    ts: update.ts,
                }
            }
            TickerKind::Delta => {
                state.last_price = update.last_price.or(state.last_price);
                state.mark_price = update.mark_price.or(state.mark_price);
                state.ts = update.ts;
            }
        }
        if repeat {
            return None;
        }
        carried(update.last_price, update.mark_price).map(|price| PricePoint {
            symbol: update.symbol.clone(),
            price,
            ts: update.ts,
        })
    }

    /// The merged last and mark prices of `symbol`.
    pub fn prices(&self, symbol: &str) -> (Option<Decimal>, Option<Decimal>) {
        self.symbols
            .get(symbol)
            .map_or((None, None), |s| (s.last_price, s.mark_price))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSide {
    Buy,
    Sell,
}

fn order_side(o: &Obj<'_>) -> Result<OrderSide, ParseError> {
    match o.str("side")? {
        "Buy" => Ok(OrderSide::Buy),
        "Sell" => Ok(OrderSide::Sell),
        other => Err(ParseError::new(
            o.field("side"),
            format!("\"{other}\" is not Buy or Sell"),
        )),
    }
}

/// Bybit's `orderStatus` (v5 enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Created,
    New,
    Rejected,
    PartiallyFilled,
    PartiallyFilledCanceled,
    Filled,
    Cancelled,
    /// A conditional order (our stop) resting until its trigger.
    Untriggered,
    /// Triggered: becoming a market order.
    Triggered,
    /// A conditional order cancelled before it triggered (also when its position closed).
    Deactivated,
    Active,
}

fn order_status(o: &Obj<'_>) -> Result<OrderStatus, ParseError> {
    use OrderStatus::*;
    Ok(match o.str("orderStatus")? {
        "Created" => Created,
        "New" => New,
        "Rejected" => Rejected,
        "PartiallyFilled" => PartiallyFilled,
        "PartiallyFilledCanceled" => PartiallyFilledCanceled,
        "Filled" => Filled,
        "Cancelled" => Cancelled,
        "Untriggered" => Untriggered,
        "Triggered" => Triggered,
        "Deactivated" => Deactivated,
        "Active" => Active,
        other => {
            return Err(ParseError::new(
                o.field("orderStatus"),
                format!("\"{other}\" is not a v5 order status"),
            ));
        }
    })
}

/// `stopOrderType`, with Bybit's "none" spellings (`""`, `"UNKNOWN"`) as `None`.
fn stop_order_type(o: &Obj<'_>) -> Result<Option<String>, ParseError> {
    Ok(o.opt_str("stopOrderType")?
        .filter(|s| !s.is_empty() && *s != "UNKNOWN")
        .map(str::to_string))
}

/// The `stopOrderType` of a Full-mode position stop loss.
pub const STOP_LOSS: &str = "StopLoss";

/// One `order` topic entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInfo {
    pub symbol: String,
    pub order_id: String,
    pub order_link_id: String,
    pub side: OrderSide,
    pub status: OrderStatus,
    pub stop_order_type: Option<String>,
    pub trigger_price: Option<Decimal>,
    pub avg_price: Option<Decimal>,
    pub cum_exec_qty: Decimal,
    pub position_idx: PositionIdx,
    pub reduce_only: bool,
    pub reject_reason: String,
    pub updated_ms: i64,
}

fn order(o: Obj<'_>) -> Result<OrderInfo, ParseError> {
    let idx = o.int("positionIdx")?;
    Ok(OrderInfo {
        symbol: o.str("symbol")?.to_string(),
        order_id: o.str("orderId")?.to_string(),
        order_link_id: o.opt_str("orderLinkId")?.unwrap_or_default().to_string(),
        side: order_side(&o)?,
        status: order_status(&o)?,
        stop_order_type: stop_order_type(&o)?,
        trigger_price: o.opt_dec("triggerPrice")?.filter(|p| !p.is_zero()),
        avg_price: o.opt_dec("avgPrice")?.filter(|p| !p.is_zero()),
        cum_exec_qty: o.opt_dec("cumExecQty")?.unwrap_or_default(),
        position_idx: PositionIdx::from_u8(idx).ok_or_else(|| {
            ParseError::new(o.field("positionIdx"), format!("{idx} is not 0, 1 or 2"))
        })?,
        reduce_only: o.has("reduceOnly") && o.bool("reduceOnly")?,
        reject_reason: o.opt_str("rejectReason")?.unwrap_or_default().to_string(),
        updated_ms: o.int("updatedTime")?,
    })
}

impl OrderInfo {
    /// Whether this is a position's Full-mode stop loss (the stop trailstop moves).
    pub fn is_stop_loss(&self) -> bool {
        self.stop_order_type.as_deref() == Some(STOP_LOSS)
    }

    /// The seam's news of the position stop `order` from this update (only for a stop-loss
    /// order of that position; the driver matches symbol and index):
    ///
    /// - `Filled` → triggered, at `avgPrice` (the average of the market order's fills);
    /// - `Deactivated`, `Cancelled`, `Rejected` → the stop is gone without a fill;
    /// - resting or in between (`Untriggered`, `Triggered`, …) → nothing yet.
    pub fn stop_event(
        &self,
        order: OrderRef,
        instrument: &Instrument,
    ) -> Result<Option<VenueEvent>, ParseError> {
        let ts = self.updated_ms;
        Ok(match self.status {
            OrderStatus::Filled => {
                let avg = self.avg_price.ok_or_else(|| {
                    ParseError::new(
                        format!("{}.avgPrice", self.symbol),
                        "a fill without a price",
                    )
                })?;
                Some(VenueEvent::Triggered {
                    order,
                    ts,
                    fill: to_units(avg, instrument, &format!("{}.avgPrice", self.symbol))?,
                })
            }
            OrderStatus::Deactivated | OrderStatus::Cancelled | OrderStatus::Rejected => {
                Some(VenueEvent::Cancelled { order, ts })
            }
            _ => None,
        })
    }
}

/// One `execution` topic entry (a fill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionInfo {
    pub symbol: String,
    pub order_id: String,
    pub order_link_id: String,
    pub side: OrderSide,
    /// `Trade` for a fill; also `Funding`, `AdlTrade`, `BustTrade`, `Settle`, …
    pub exec_type: String,
    pub exec_price: Decimal,
    pub exec_qty: Decimal,
    pub closed_size: Option<Decimal>,
    /// What is left of the order after this fill.
    pub leaves_qty: Decimal,
    pub stop_order_type: Option<String>,
    pub exec_time_ms: i64,
}

/// One fill, as the `execution` topic and `GET /v5/execution/list` show it.
pub fn execution(o: Obj<'_>) -> Result<ExecutionInfo, ParseError> {
    Ok(ExecutionInfo {
        symbol: o.str("symbol")?.to_string(),
        order_id: o.str("orderId")?.to_string(),
        order_link_id: o.opt_str("orderLinkId")?.unwrap_or_default().to_string(),
        side: order_side(&o)?,
        exec_type: o.str("execType")?.to_string(),
        exec_price: o.dec("execPrice")?,
        exec_qty: o.dec("execQty")?,
        closed_size: o.opt_dec("closedSize")?,
        leaves_qty: o.opt_dec("leavesQty")?.unwrap_or_default(),
        stop_order_type: stop_order_type(&o)?,
        exec_time_ms: o.int("execTime")?,
    })
}

impl ExecutionInfo {
    /// A trade fill of a position's stop loss.
    pub fn is_stop_loss_fill(&self) -> bool {
        self.exec_type == "Trade" && self.stop_order_type.as_deref() == Some(STOP_LOSS)
    }

    /// The fill price in `instrument` units.
    pub fn fill_units(&self, instrument: &Instrument) -> Result<i64, ParseError> {
        to_units(
            self.exec_price,
            instrument,
            &format!("{}.execPrice", self.symbol),
        )
    }

    /// `order` (the position's stop) triggered and filled here, at `execTime`. For a stop
    /// filled in several pieces the order's `Filled` update ([`OrderInfo::stop_event`])
    /// carries the average; this is for the last piece (`leavesQty` 0) or a single fill.
    pub fn triggered(
        &self,
        order: OrderRef,
        instrument: &Instrument,
    ) -> Result<VenueEvent, ParseError> {
        Ok(VenueEvent::Triggered {
            order,
            ts: self.exec_time_ms,
            fill: self.fill_units(instrument)?,
        })
    }

    /// The driver's `position` closed by this fill (our close at market, or someone else's).
    pub fn closed(&self, position: u64, instrument: &Instrument) -> Result<VenueEvent, ParseError> {
        Ok(VenueEvent::PositionClosed {
            position,
            ts: self.exec_time_ms,
            fill: self.fill_units(instrument)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Side;
    use rust_decimal_macros::dec;

    const TICKER: &str = include_str!("../../../tests/fixtures/bybit/ws_ticker_linear.json");
    const POSITION: &str = include_str!("../../../tests/fixtures/bybit/ws_account_position.json");
    const ORDER_SL: &str =
        include_str!("../../../tests/fixtures/bybit/ws_account_order_stop_loss.json");
    const EXECUTION: &str = include_str!("../../../tests/fixtures/bybit/ws_account_execution.json");
    const AUTH_OK: &str = include_str!("../../../tests/fixtures/bybit/ws_auth_success.json");
    const AUTH_FAIL: &str = include_str!("../../../tests/fixtures/bybit/ws_auth_failure.json");
    const SUB_ACK: &str = include_str!("../../../tests/fixtures/bybit/ws_subscription_ack.json");

    /// Written for these tests (no docs example of a linear delta): fields left out did not
    /// change.
    fn delta(ts: i64, fields: &str) -> String {
        format!(
            r#"{{"topic":"tickers.BTCUSDT","type":"delta","data":{{"symbol":"BTCUSDT"{fields}}},"cs":24987956060,"ts":{ts}}}"#
        )
    }

    fn ticker(text: &str) -> TickerUpdate {
        match parse(text).unwrap() {
            StreamMessage::Ticker(t) => t,
            other => panic!("not a ticker: {other:?}"),
        }
    }

    #[test]
    fn the_docs_ticker_snapshot() {
        let t = ticker(TICKER);
        assert_eq!(t.symbol, "BTCUSDT");
        assert_eq!(t.kind, TickerKind::Snapshot);
        assert_eq!(t.ts, 1673272861686);
        assert_eq!(t.cs, Some(24987956059));
        assert_eq!(t.last_price, Some(dec!(17216.00)));
        assert_eq!(t.mark_price, Some(dec!(17217.33)));
    }

    #[test]
    fn snapshot_then_deltas_merge_and_points_follow_the_trigger_price() {
        let mut mark = TickerBook::new(TriggerPrice::Mark);
        let mut last = TickerBook::new(TriggerPrice::Last);
        let snap = ticker(TICKER);
        let p = mark.apply(&snap).unwrap();
        assert_eq!(
            p,
            PricePoint {
                symbol: "BTCUSDT".into(),
                price: dec!(17217.33),
                ts: 1673272861686
            }
        );
        assert_eq!(last.apply(&snap).unwrap().price, dec!(17216.00));

        // A delta with only the last price: a point for "last", none for "mark"; the mark
        // price stays what the snapshot said.
        let d1 = ticker(&delta(1673272861786, r#","lastPrice":"17220.50""#));
        assert_eq!(mark.apply(&d1), None);
        assert_eq!(
            mark.prices("BTCUSDT"),
            (Some(dec!(17220.50)), Some(dec!(17217.33)))
        );
        let p = last.apply(&d1).unwrap();
        assert_eq!((p.price, p.ts), (dec!(17220.50), 1673272861786));

        // The same mark price again is still a point: the message carries it.
        let d2 = ticker(&delta(
            1673272861886,
            r#","markPrice":"17217.33","fundingRate":"-0.0002""#,
        ));
        let p = mark.apply(&d2).unwrap();
        assert_eq!((p.price, p.ts), (dec!(17217.33), 1673272861886));
        assert_eq!(last.apply(&d2), None);
        assert_eq!(last.prices("BTCUSDT").0, Some(dec!(17220.50)));

        // Stamped before the last one applied: dropped whole, counted.
        let old = ticker(&delta(1673272861800, r#","markPrice":"17000""#));
        assert_eq!(mark.apply(&old), None);
        assert_eq!(mark.dropped_stale, 1);
        assert_eq!(mark.prices("BTCUSDT").1, Some(dec!(17217.33)));

        // A new snapshot replaces everything, missing fields included.
        let snap2 = ticker(
            r#"{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","markPrice":"17300"},"ts":1673272862000}"#,
        );
        assert_eq!(mark.apply(&snap2).unwrap().price, dec!(17300));
        assert_eq!(mark.prices("BTCUSDT"), (None, Some(dec!(17300))));
        // The same snapshot again (a resubscription's) is no new point; a snapshot of the
        // same time at another price is.
        assert_eq!(mark.apply(&snap2), None);
        let moved = ticker(
            r#"{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","markPrice":"17301"},"ts":1673272862000}"#,
        );
        assert_eq!(mark.apply(&moved).unwrap().price, dec!(17301));
        assert_eq!(mark.prices("ETHUSDT"), (None, None));

        let i = Instrument::new(dec!(0.1));
        assert_eq!(
            mark.apply(&ticker(&delta(1673272862100, r#","markPrice":"17300.55""#)))
                .unwrap()
                .units(&i)
                .unwrap(),
            i.units(dec!(17300.55)).unwrap()
        );
    }

    #[test]
    fn bad_tickers_name_the_field() {
        for (text, field) in [
            (delta(1, r#","markPrice":"abc""#), "data.markPrice"),
            (delta(1, r#","markPrice":"0""#), "data.markPrice"),
            (delta(1, r#","lastPrice":17000.5"#), "data.lastPrice"),
            (
                TICKER.replace("\"ts\": 1673272861686", "\"ts\": \"soon\""),
                "ts",
            ),
            (TICKER.replace("\"snapshot\"", "\"full\""), "type"),
            (
                TICKER.replace("\"symbol\": \"BTCUSDT\"", "\"symbol\": \"ETHUSDT\""),
                "data.symbol",
            ),
            (
                TICKER.replace("\"tickers.BTCUSDT\"", "\"kline.1.BTCUSDT\""),
                "topic",
            ),
            ("{\"topic\":".to_string(), "json"),
        ] {
            assert_eq!(parse(&text).unwrap_err().field, field, "{text}");
        }
        // An empty field means "none" (kept as before), not zero.
        let t = ticker(&delta(1, r#","markPrice":"""#));
        assert_eq!(t.mark_price, None);
    }

    #[test]
    fn private_position_message() {
        let StreamMessage::Positions { ts, list } = parse(POSITION).unwrap() else {
            panic!("not positions");
        };
        assert_eq!(ts, 1697682317044);
        let p = &list[0];
        assert_eq!(p.symbol, "BTCUSDT");
        assert_eq!(p.position_idx, PositionIdx::HedgeSell);
        assert_eq!(p.side, Some(Side::Long));
        assert_eq!(p.size, dec!(0.15));
        assert_eq!(p.avg_price, dec!(28500.50));
        assert_eq!(p.stop_loss, Some(dec!(27000)));
        let bad = POSITION.replace("\"size\": \"0.15\"", "\"size\": \"x\"");
        assert_eq!(parse(&bad).unwrap_err().field, "data[0].size");
        let bad = POSITION.replace("\"creationTime\": 1697682317044,", "");
        assert_eq!(parse(&bad).unwrap_err().field, "creationTime");
    }

    #[test]
    fn private_order_message_and_stop_events() {
        let StreamMessage::Orders { ts, list } = parse(ORDER_SL).unwrap() else {
            panic!("not orders");
        };
        assert_eq!(ts, 1672364262474);
        let o = &list[0];
        assert!(o.is_stop_loss());
        assert_eq!(o.status, OrderStatus::Untriggered);
        assert_eq!(o.side, OrderSide::Sell);
        assert_eq!(o.trigger_price, Some(dec!(48000)));
        assert_eq!(o.avg_price, None);
        assert_eq!(o.position_idx, PositionIdx::OneWay);
        assert!(o.reduce_only);
        assert_eq!(o.updated_ms, 1672364262457);

        let i = Instrument::new(dec!(0.5));
        let ours = OrderRef {
            position: 3,
            seq: 2,
        };
        assert_eq!(o.stop_event(ours, &i).unwrap(), None);
        // Written for this test: the same order later, filled, then a deactivated one.
        let filled = ORDER_SL
            .replace("\"Untriggered\"", "\"Filled\"")
            .replace("\"avgPrice\": \"\"", "\"avgPrice\": \"47990.5\"");
        let StreamMessage::Orders { list, .. } = parse(&filled).unwrap() else {
            panic!()
        };
        assert_eq!(
            list[0].stop_event(ours, &i).unwrap(),
            Some(VenueEvent::Triggered {
                order: ours,
                ts: 1672364262457,
                fill: i.units(dec!(47990.5)).unwrap()
            })
        );
        let gone = ORDER_SL.replace("\"Untriggered\"", "\"Deactivated\"");
        let StreamMessage::Orders { list, .. } = parse(&gone).unwrap() else {
            panic!()
        };
        assert_eq!(
            list[0].stop_event(ours, &i).unwrap(),
            Some(VenueEvent::Cancelled {
                order: ours,
                ts: 1672364262457
            })
        );
        let no_price = ORDER_SL.replace("\"Untriggered\"", "\"Filled\"");
        let StreamMessage::Orders { list, .. } = parse(&no_price).unwrap() else {
            panic!()
        };
        assert_eq!(
            list[0].stop_event(ours, &i).unwrap_err().field,
            "BTCUSDT.avgPrice"
        );
        let bad = ORDER_SL.replace("\"Untriggered\"", "\"Sleeping\"");
        assert_eq!(parse(&bad).unwrap_err().field, "data[0].orderStatus");
    }

    #[test]
    fn private_execution_message() {
        let StreamMessage::Executions { ts, list } = parse(EXECUTION).unwrap() else {
            panic!("not executions");
        };
        assert_eq!(ts, 1746270400355);
        let e = &list[0];
        assert_eq!(e.exec_price, dec!(95900.1));
        assert_eq!(e.exec_qty, dec!(0.5));
        assert_eq!(e.leaves_qty, dec!(0));
        assert_eq!(e.exec_time_ms, 1746270400353);
        assert_eq!(e.stop_order_type, None, "UNKNOWN is none");
        assert!(!e.is_stop_loss_fill());
        let i = Instrument::new(dec!(0.1));
        assert_eq!(
            e.closed(3, &i).unwrap(),
            VenueEvent::PositionClosed {
                position: 3,
                ts: 1746270400353,
                fill: i.units(dec!(95900.1)).unwrap()
            }
        );
        let sl = EXECUTION.replace(
            "\"stopOrderType\": \"UNKNOWN\"",
            "\"stopOrderType\": \"StopLoss\"",
        );
        let StreamMessage::Executions { list, .. } = parse(&sl).unwrap() else {
            panic!()
        };
        assert!(list[0].is_stop_loss_fill());
        let ours = OrderRef {
            position: 3,
            seq: 4,
        };
        assert!(matches!(
            list[0].triggered(ours, &i).unwrap(),
            VenueEvent::Triggered { order, .. } if order == ours
        ));
        let bad = EXECUTION.replace("\"execPrice\": \"95900.1\"", "\"execPrice\": \"\"");
        assert_eq!(parse(&bad).unwrap_err().field, "data[0].execPrice");
    }

    #[test]
    fn replies_and_pongs() {
        assert_eq!(
            parse(AUTH_OK).unwrap(),
            StreamMessage::Reply {
                op: "auth".into(),
                success: true,
                code: Some(0),
                message: String::new()
            }
        );
        assert_eq!(
            parse(AUTH_FAIL).unwrap(),
            StreamMessage::Reply {
                op: "auth".into(),
                success: false,
                code: Some(10003),
                message: "Invalid apikey".into()
            }
        );
        assert!(matches!(
            parse(SUB_ACK).unwrap(),
            StreamMessage::Reply { ref op, success: true, code: None, .. } if op == "subscribe"
        ));
        // Bybit's documented pong replies, public and private.
        assert_eq!(
            parse(r#"{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}"#).unwrap(),
            StreamMessage::Pong
        );
        assert_eq!(
            parse(r#"{"req_id":"test","op":"pong","args":["1675418560633"],"conn_id":"cfcb4ocsvfriu23r3er0-1b"}"#)
                .unwrap(),
            StreamMessage::Pong
        );
        assert_eq!(parse(r#"{"hello":1}"#).unwrap_err().field, "op");
    }
}
