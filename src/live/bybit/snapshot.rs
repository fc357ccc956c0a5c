//! REST snapshots (`EXCHANGES.md` §2.5): `instruments-info` (the tick size, from
//! `priceFilter.tickSize` and never a precision field) and `position/list` (the open
//! positions and their stop loss: the truth for reconciliation and for resolving an
//! ambiguous stop command).

use rust_decimal::Decimal;
use serde_json::Value;

use super::json::{self, Obj, ParseError, each};
use super::request::PositionIdx;
use crate::engine::{Instrument, Side};
use crate::venue::{OrderRef, RejectReason, VenueEvent};

/// One page of a list and the cursor of the next (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub list: Vec<T>,
    pub next_cursor: Option<String>,
}

fn page<T>(
    result: &Value,
    read: impl Fn(Obj<'_>) -> Result<T, ParseError>,
) -> Result<Page<T>, ParseError> {
    let o = json::object(result, "result")?;
    Ok(Page {
        list: each(&o, "list", read)?,
        next_cursor: o
            .opt_str("nextPageCursor")?
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    })
}

/// A linear instrument, as far as stops need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentInfo {
    pub symbol: String,
    /// `Trading`, `PreLaunch`, `Delivering`, `Closed`.
    pub status: String,
    pub tick_size: Decimal,
    pub qty_step: Decimal,
    pub min_order_qty: Decimal,
}

impl InstrumentInfo {
    /// The engine's instrument: prices on this tick grid, in units of at least 8 decimals.
    pub fn instrument(&self) -> Instrument {
        Instrument::new(self.tick_size)
    }
}

/// The `result` of `GET /v5/market/instruments-info?category=linear`.
pub fn instruments(result: &Value) -> Result<Page<InstrumentInfo>, ParseError> {
    page(result, |o| {
        let price = o.obj("priceFilter")?;
        let lot = o.obj("lotSizeFilter")?;
        let tick_size = price.dec("tickSize")?;
        if tick_size <= Decimal::ZERO {
            return Err(ParseError::new(
                price.field("tickSize"),
                format!("{tick_size} must be > 0"),
            ));
        }
        Ok(InstrumentInfo {
            symbol: o.str("symbol")?.to_string(),
            status: o.opt_str("status")?.unwrap_or_default().to_string(),
            tick_size,
            qty_step: lot.dec("qtyStep")?,
            min_order_qty: lot.dec("minOrderQty")?,
        })
    })
}

/// One position (REST `position/list`, and the private `position` topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionInfo {
    pub symbol: String,
    pub position_idx: PositionIdx,
    /// `None` for an empty slot (`side = ""`, size 0): Bybit lists flat positions too.
    pub side: Option<Side>,
    pub size: Decimal,
    /// The entry (average) price; 0 when flat.
    pub avg_price: Decimal,
    /// The Full-mode stop loss; `None` when there is none (`"0"`, `"0.00"` or `""`).
    pub stop_loss: Option<Decimal>,
    pub mark_price: Option<Decimal>,
    pub updated_ms: Option<i64>,
}

impl PositionInfo {
    /// Whether a position is open (a side and a size).
    pub fn is_open(&self) -> bool {
        self.side.is_some() && self.size > Decimal::ZERO
    }

    /// Same side, size and entry: what matters to the trailing stop (Bybit also sends a
    /// position message on every order change, "regardless if there's any actual change").
    pub fn same_exposure(&self, other: &PositionInfo) -> bool {
        self.side == other.side && self.size == other.size && self.avg_price == other.avg_price
    }

    /// The stop loss in `instrument` units.
    pub fn stop_units(&self, instrument: &Instrument) -> Result<Option<i64>, ParseError> {
        self.stop_loss
            .map(|p| to_units(p, instrument, &format!("{}.stopLoss", self.symbol)))
            .transpose()
    }

    /// The seam's news of this position for the driver's `position` id: opened (new to the
    /// driver), changed (size or entry moved since `previous`), or nothing (flat, or no
    /// change: a flat position's close comes from the fill, which carries the price).
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
            self.avg_price,
            instrument,
            &format!("{}.avgPrice", self.symbol),
        )?;
        Ok(Some(match previous {
            Some(p) if p.is_open() => VenueEvent::PositionChanged {
                position,
                ts,
                entry,
                quantity: self.size,
            },
            _ => VenueEvent::PositionOpened {
                position,
                ts,
                entry,
                quantity: self.size,
            },
        }))
    }
}

/// `price` in `instrument` units, or an error naming `field` (finer than the units, or too
/// large).
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

/// Reads one position object (the REST list's and the stream's are the same shape).
pub fn position(o: Obj<'_>) -> Result<PositionInfo, ParseError> {
    let idx = o.int("positionIdx")?;
    let position_idx = PositionIdx::from_u8(idx).ok_or_else(|| {
        ParseError::new(o.field("positionIdx"), format!("{idx} is not 0, 1 or 2"))
    })?;
    let side = match o.opt_str("side")?.unwrap_or_default() {
        "Buy" => Some(Side::Long),
        "Sell" => Some(Side::Short),
        // Flat: "" in v5, "None" in older messages.
        "" | "None" => None,
        other => {
            return Err(ParseError::new(
                o.field("side"),
                format!("\"{other}\" is not Buy, Sell or empty"),
            ));
        }
    };
    let size = o.dec("size")?;
    let avg_price = o.opt_dec("avgPrice")?.unwrap_or_default();
    let stop_loss = o.opt_dec("stopLoss")?.filter(|p| !p.is_zero());
    for (key, v) in [
        ("size", Some(size)),
        ("avgPrice", Some(avg_price)),
        ("stopLoss", stop_loss),
    ] {
        if v.is_some_and(|v| v < Decimal::ZERO) {
            return Err(ParseError::new(o.field(key), "negative"));
        }
    }
    if side.is_some() && size > Decimal::ZERO && avg_price <= Decimal::ZERO {
        return Err(ParseError::new(
            o.field("avgPrice"),
            "an open position needs an entry price > 0",
        ));
    }
    Ok(PositionInfo {
        symbol: o.str("symbol")?.to_string(),
        position_idx,
        side,
        size,
        avg_price,
        stop_loss,
        mark_price: o.opt_dec("markPrice")?.filter(|p| !p.is_zero()),
        updated_ms: o.opt_int("updatedTime")?,
    })
}

/// The `result` of `GET /v5/position/list?category=linear`.
pub fn positions(result: &Value) -> Result<Page<PositionInfo>, ParseError> {
    page(result, position)
}

/// The `result` of `GET /v5/execution/list?category=linear` (newest first, as Bybit lists).
pub fn executions(result: &Value) -> Result<Page<super::stream::ExecutionInfo>, ParseError> {
    page(result, super::stream::execution)
}

/// Resolves a [`Command::Query`](crate::venue::Command::Query) for `order` (sent to rest at
/// `sent_stop` units) from the position read back (`position`, matched by symbol and index,
/// `None` if absent): the stop loss there says whether the command took effect.
///
/// - the position is gone or flat → rejected, no position;
/// - its stop loss is `sent_stop` → accepted (the set or amend did act);
/// - anything else → rejected with [`NOT_APPLIED`] (what rests before, rests still: the
///   lifecycle falls back to the prior stop of an amend; the driver reconciles a stop it
///   does not know).
pub fn resolve_query(
    order: OrderRef,
    sent_stop: i64,
    position: Option<&PositionInfo>,
    instrument: &Instrument,
    ts: i64,
) -> Result<VenueEvent, ParseError> {
    let Some(p) = position.filter(|p| p.is_open()) else {
        return Ok(VenueEvent::Rejected {
            order,
            ts,
            reason: RejectReason::NoPosition,
        });
    };
    Ok(match p.stop_units(instrument)? {
        Some(stop) if stop == sent_stop => VenueEvent::Accepted {
            order,
            stop,
            ts,
            venue_id: None,
        },
        _ => VenueEvent::Rejected {
            order,
            ts,
            reason: RejectReason::Invalid { code: NOT_APPLIED },
        },
    })
}

/// trailstop's own code in [`RejectReason::Invalid`]: a read-back showed that a command whose
/// outcome was unknown did not take effect. Bybit's codes are all positive.
pub const NOT_APPLIED: i64 = -1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::bybit::response::parse_envelope;
    use rust_decimal_macros::dec;

    /// NautilusTrader's `test_data/http_get_instruments_linear.json` (from the Bybit docs).
    const INSTRUMENTS: &str =
        include_str!("../../../tests/fixtures/bybit/http_get_instruments_linear.json");
    /// NautilusTrader's `test_data/http_get_positions.json`.
    const POSITIONS: &str = include_str!("../../../tests/fixtures/bybit/http_get_positions.json");

    fn result(body: &str) -> Value {
        parse_envelope(body).unwrap().result
    }

    #[test]
    fn instruments_take_the_tick_from_the_price_filter() {
        let page = instruments(&result(INSTRUMENTS)).unwrap();
        assert_eq!(page.next_cursor, None);
        assert_eq!(page.list.len(), 2);
        let btc = &page.list[0];
        assert_eq!(btc.symbol, "BTCUSDT");
        assert_eq!(btc.status, "Trading");
        // priceScale is "2" in the fixture; the tick is 0.5, and the tick is what counts.
        assert_eq!(btc.tick_size, dec!(0.5));
        assert_eq!(btc.qty_step, dec!(0.001));
        assert_eq!(btc.min_order_qty, dec!(0.001));
        assert_eq!(btc.instrument().tick_size, dec!(0.5));
        assert_eq!(page.list[1].tick_size, dec!(0.05));
    }

    #[test]
    fn instrument_errors_name_the_field() {
        let bad = INSTRUMENTS.replacen("\"tickSize\": \"0.5\"", "\"tickSize\": \"\"", 1);
        let e = instruments(&result(&bad)).unwrap_err();
        assert_eq!(e.field, "result.list[0].priceFilter.tickSize");
        let bad = INSTRUMENTS.replacen("\"tickSize\": \"0.5\"", "\"tickSize\": \"0\"", 1);
        assert!(instruments(&result(&bad)).is_err());
        let bad = INSTRUMENTS.replacen("\"priceFilter\"", "\"priceFilterX\"", 1);
        assert_eq!(
            instruments(&result(&bad)).unwrap_err().field,
            "result.list[0].priceFilter"
        );
        assert_eq!(
            instruments(&serde_json::json!({"list": 1}))
                .unwrap_err()
                .field,
            "result.list"
        );
    }

    #[test]
    fn positions_from_the_list() {
        let page = positions(&result(POSITIONS)).unwrap();
        assert_eq!(page.list.len(), 3);
        let btc = &page.list[0];
        assert_eq!(btc.symbol, "BTCUSDT");
        assert_eq!(btc.position_idx, PositionIdx::OneWay);
        assert_eq!(btc.side, Some(Side::Long));
        assert_eq!(btc.size, dec!(0.5));
        assert_eq!(btc.avg_price, dec!(50000.00));
        assert_eq!(btc.stop_loss, Some(dec!(48000)));
        assert_eq!(btc.mark_price, Some(dec!(50500)));
        assert_eq!(btc.updated_ms, Some(1697673600012));
        assert!(btc.is_open());
        let eth = &page.list[1];
        assert_eq!(eth.side, Some(Side::Short));
        assert_eq!(eth.stop_loss, Some(dec!(3100)));
        // The flat slot: no side, no stop ("0.00").
        let sol = &page.list[2];
        assert_eq!(sol.side, None);
        assert_eq!(sol.stop_loss, None);
        assert!(!sol.is_open());
    }

    #[test]
    fn position_errors_name_the_field() {
        for (from, to, field) in [
            (
                "\"positionIdx\": 0",
                "\"positionIdx\": 3",
                "result.list[0].positionIdx",
            ),
            (
                "\"side\": \"Buy\"",
                "\"side\": \"Long\"",
                "result.list[0].side",
            ),
            (
                "\"size\": \"0.5\"",
                "\"size\": \"half\"",
                "result.list[0].size",
            ),
            (
                "\"size\": \"0.5\"",
                "\"size\": \"-0.5\"",
                "result.list[0].size",
            ),
            (
                "\"stopLoss\": \"48000.00\"",
                "\"stopLoss\": true",
                "result.list[0].stopLoss",
            ),
            (
                "\"avgPrice\": \"50000.00\"",
                "\"avgPrice\": \"0\"",
                "result.list[0].avgPrice",
            ),
            (
                "\"symbol\": \"BTCUSDT\"",
                "\"symbol\": 1",
                "result.list[0].symbol",
            ),
        ] {
            let bad = POSITIONS.replacen(from, to, 1);
            assert_ne!(bad, POSITIONS, "{from}");
            assert_eq!(positions(&result(&bad)).unwrap_err().field, field, "{from}");
        }
        // A price as a bare JSON number went through f64: refused, not rounded.
        let num = POSITIONS.replacen("\"stopLoss\": \"48000.00\"", "\"stopLoss\": 48000.5", 1);
        let e = positions(&result(&num)).unwrap_err();
        assert_eq!(e.field, "result.list[0].stopLoss");
    }

    #[test]
    fn position_events() {
        let page = positions(&result(POSITIONS)).unwrap();
        let i = Instrument::new(dec!(0.5));
        let btc = &page.list[0];
        let opened = btc.event(3, None, 100, &i).unwrap().unwrap();
        assert_eq!(
            opened,
            VenueEvent::PositionOpened {
                position: 3,
                ts: 100,
                entry: i.units(dec!(50000)).unwrap(),
                quantity: dec!(0.5)
            }
        );
        // The same exposure again (Bybit's spurious messages): nothing.
        assert_eq!(btc.event(3, Some(btc), 101, &i).unwrap(), None);
        let mut bigger = btc.clone();
        bigger.size = dec!(0.8);
        bigger.avg_price = dec!(50100);
        assert!(matches!(
            bigger.event(3, Some(btc), 102, &i).unwrap(),
            Some(VenueEvent::PositionChanged { quantity, .. }) if quantity == dec!(0.8)
        ));
        assert_eq!(page.list[2].event(4, None, 103, &i).unwrap(), None);
        // An entry finer than the units is an error, not a rounding.
        let mut odd = btc.clone();
        odd.avg_price = dec!(50000.123456789);
        let e = odd.event(3, None, 104, &i).unwrap_err();
        assert_eq!(e.field, "BTCUSDT.avgPrice");
    }

    #[test]
    fn queries_resolve_from_the_stop_read_back() {
        let page = positions(&result(POSITIONS)).unwrap();
        let i = Instrument::new(dec!(0.5));
        let order = OrderRef {
            position: 3,
            seq: 5,
        };
        let at = |p: &str| i.units(p.parse().unwrap()).unwrap();
        let btc = &page.list[0];
        assert_eq!(
            resolve_query(order, at("48000"), Some(btc), &i, 7).unwrap(),
            VenueEvent::Accepted {
                order,
                stop: at("48000"),
                ts: 7,
                venue_id: None
            }
        );
        assert_eq!(
            resolve_query(order, at("48500"), Some(btc), &i, 7).unwrap(),
            VenueEvent::Rejected {
                order,
                ts: 7,
                reason: RejectReason::Invalid { code: NOT_APPLIED }
            }
        );
        for gone in [None, Some(&page.list[2])] {
            assert_eq!(
                resolve_query(order, at("48000"), gone, &i, 7).unwrap(),
                VenueEvent::Rejected {
                    order,
                    ts: 7,
                    reason: RejectReason::NoPosition
                }
            );
        }
    }
}
