//! Row-by-row validation shared by every format: cells in, checked candles/trades out.

use rust_decimal::Decimal;

use super::error::{Loc, RowError};
use super::parse::{Cell, TsParser, cell_decimal, format_ms};
use super::{Candles, GapReport, Trades};

/// A checked price: parsed exactly and strictly positive.
fn price(field: &str, cell: Cell<'_>) -> Result<Decimal, RowError> {
    let value = cell_decimal(cell).map_err(|m| RowError::new(field, m))?;
    if value <= Decimal::ZERO {
        return Err(RowError::new(
            field,
            format!("{field} {value} is not positive"),
        ));
    }
    Ok(value)
}

/// Column names of a candle file as the file spells them (for messages).
#[derive(Debug, Clone)]
pub(crate) struct CandleNames {
    pub time: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
}

impl Default for CandleNames {
    fn default() -> Self {
        CandleNames {
            time: "timestamp".into(),
            open: "open".into(),
            high: "high".into(),
            low: "low".into(),
            close: "close".into(),
        }
    }
}

/// Validates candles row by row: exact positive prices, `low <= min(open, close)`,
/// `high >= max(open, close)`, strictly increasing timestamps.
pub(crate) struct CandleBuilder {
    names: CandleNames,
    ts_parser: TsParser,
    prev: Option<(i64, Loc)>,
    ts: Vec<i64>,
    open: Vec<Decimal>,
    high: Vec<Decimal>,
    low: Vec<Decimal>,
    close: Vec<Decimal>,
}

impl CandleBuilder {
    pub(crate) fn new(names: CandleNames) -> Self {
        CandleBuilder {
            names,
            ts_parser: TsParser::default(),
            prev: None,
            ts: Vec::new(),
            open: Vec::new(),
            high: Vec::new(),
            low: Vec::new(),
            close: Vec::new(),
        }
    }

    /// One row: `[time, open, high, low, close]`.
    pub(crate) fn push(&mut self, loc: Loc, cells: [Cell<'_>; 5]) -> Result<(), RowError> {
        let n = &self.names;
        let [t, o, h, l, c] = cells;
        let ts = self
            .ts_parser
            .parse_market(t)
            .map_err(|m| RowError::new(&n.time, m))?;
        let open = price(&n.open, o)?;
        let high = price(&n.high, h)?;
        let low = price(&n.low, l)?;
        let close = price(&n.close, c)?;
        let top = open.max(close);
        if high < top {
            return Err(RowError::new(
                &n.high,
                format!("high {high} is below max(open, close) {top}"),
            ));
        }
        let bottom = open.min(close);
        if low > bottom {
            return Err(RowError::new(
                &n.low,
                format!("low {low} is above min(open, close) {bottom}"),
            ));
        }
        if let Some((prev, prev_loc)) = self.prev {
            if ts == prev {
                return Err(RowError::new(
                    &n.time,
                    format!(
                        "duplicate timestamp {} ({ts}): {prev_loc} has the same time",
                        format_ms(ts)
                    ),
                ));
            }
            if ts < prev {
                return Err(RowError::new(
                    &n.time,
                    format!(
                        "timestamp {} ({ts}) is before {prev_loc}'s {} ({prev}): candles must be in increasing time order",
                        format_ms(ts),
                        format_ms(prev)
                    ),
                ));
            }
        }
        self.prev = Some((ts, loc));
        self.ts.push(ts);
        self.open.push(open);
        self.high.push(high);
        self.low.push(low);
        self.close.push(close);
        Ok(())
    }

    /// The candles, or `None` when no row was pushed.
    pub(crate) fn finish(self) -> Option<Candles> {
        if self.ts.is_empty() {
            return None;
        }
        let gaps = GapReport::from_timestamps(&self.ts);
        Some(Candles {
            ts: self.ts,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            gaps,
        })
    }
}

/// Validates trade ticks row by row: exact positive prices, timestamps never decreasing.
pub(crate) struct TradeBuilder {
    time_name: String,
    price_name: String,
    ts_parser: TsParser,
    prev: Option<(i64, Loc)>,
    ts: Vec<i64>,
    price: Vec<Decimal>,
}

impl TradeBuilder {
    pub(crate) fn new(time_name: &str, price_name: &str) -> Self {
        TradeBuilder {
            time_name: time_name.to_owned(),
            price_name: price_name.to_owned(),
            ts_parser: TsParser::default(),
            prev: None,
            ts: Vec::new(),
            price: Vec::new(),
        }
    }

    /// One row: `[time, price]`.
    pub(crate) fn push(&mut self, loc: Loc, cells: [Cell<'_>; 2]) -> Result<(), RowError> {
        let [t, p] = cells;
        let ts = self
            .ts_parser
            .parse_market(t)
            .map_err(|m| RowError::new(&self.time_name, m))?;
        let value = price(&self.price_name, p)?;
        if let Some((prev, prev_loc)) = self.prev
            && ts < prev
        {
            return Err(RowError::new(
                &self.time_name,
                format!(
                    "timestamp {} ({ts}) is before {prev_loc}'s {} ({prev}): trade ticks must not go back in time",
                    format_ms(ts),
                    format_ms(prev)
                ),
            ));
        }
        self.prev = Some((ts, loc));
        self.ts.push(ts);
        self.price.push(value);
        Ok(())
    }

    /// The trades, or `None` when no row was pushed.
    pub(crate) fn finish(self) -> Option<Trades> {
        if self.ts.is_empty() {
            return None;
        }
        Some(Trades {
            ts: self.ts,
            price: self.price,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn row(o: Decimal, h: Decimal, l: Decimal, c: Decimal) -> Result<(), RowError> {
        let mut b = CandleBuilder::new(CandleNames::default());
        b.push(
            Loc::Row(1),
            [
                Cell::Ms(1_704_067_200_000),
                Cell::Dec(o),
                Cell::Dec(h),
                Cell::Dec(l),
                Cell::Dec(c),
            ],
        )
    }

    #[test]
    fn high_and_low_bound_both_open_and_close() {
        assert_eq!(row(dec!(10), dec!(12), dec!(10), dec!(12)), Ok(()));
        assert_eq!(row(dec!(12), dec!(12), dec!(10), dec!(10)), Ok(()));
        // high above open but below close
        assert_eq!(
            row(dec!(10), dec!(11), dec!(9), dec!(12)),
            Err(RowError::new(
                "high",
                "high 11 is below max(open, close) 12"
            ))
        );
        // high above close but below open
        assert_eq!(
            row(dec!(12), dec!(11.5), dec!(9), dec!(10)),
            Err(RowError::new(
                "high",
                "high 11.5 is below max(open, close) 12"
            ))
        );
        // low below close but above open
        assert_eq!(
            row(dec!(10), dec!(13), dec!(10.5), dec!(12)),
            Err(RowError::new(
                "low",
                "low 10.5 is above min(open, close) 10"
            ))
        );
        // low below open but above close
        assert_eq!(
            row(dec!(12), dec!(13), dec!(11), dec!(10)),
            Err(RowError::new("low", "low 11 is above min(open, close) 10"))
        );
        assert_eq!(
            row(dec!(-1), dec!(13), dec!(11), dec!(10)),
            Err(RowError::new("open", "open -1 is not positive"))
        );
    }

    #[test]
    fn trade_ties_are_kept_and_steps_back_rejected() {
        let mut b = TradeBuilder::new("time", "price");
        b.push(Loc::Line(2), [Cell::Str("1704067200000"), Cell::Str("5")])
            .unwrap();
        b.push(Loc::Line(3), [Cell::Str("1704067200000"), Cell::Str("4")])
            .unwrap();
        let e = b
            .push(Loc::Line(4), [Cell::Str("1704067199999"), Cell::Str("4")])
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("time"));
        assert!(e.message.contains("before line 3's"), "{}", e.message);
        let t = b.finish().unwrap();
        assert_eq!(t.price, vec![dec!(5), dec!(4)]);
    }
}
