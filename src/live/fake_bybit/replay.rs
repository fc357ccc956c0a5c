//! The market the fake Bybit replays: a candle file as the DESIGN §3 price points (O, X, Y, C
//! at their data times, through the same `sim::path` the backtester uses) or a trade file as
//! its ticks, and positions opened at given times.

use std::path::Path;

use rust_decimal::Decimal;

use super::model::{Model, Outgoing};
use crate::backtest::market::decimals_for;
use crate::data::{self, Candles, Trades};
use crate::engine::fixed::to_units;
use crate::engine::{Instrument, Side};
use crate::sim::path::{Bar, Policy, bar_points, bar_span};

/// One replayed price: the mark (and last) price from data time `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub ts: i64,
    pub price: Decimal,
    /// Not reached continuously from the previous point (a candle's open, a trade).
    pub gap: bool,
}

/// A position the replay opens: at the first gap point (a candle's open, a trade) at or after
/// `at`, at that point's price — as the backtester opens an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub at: i64,
    pub side: Side,
    pub qty: Decimal,
}

/// The fewest decimals that write every candle price exactly: the tick a file's prices imply.
pub fn implied_tick(values: &[Decimal]) -> Result<Decimal, String> {
    let dp = decimals_for(Decimal::ONE, values)?;
    Ok(Decimal::new(1, dp))
}

/// Candles → points in the order `policy` gives a long (one path serves every position, so
/// a side-dependent policy is read as for a long; `ohlc`/`olhc` do not depend on the side).
pub fn from_candles(c: &Candles, policy: Policy) -> Result<Vec<Tick>, String> {
    let all: Vec<Decimal> = [&c.open, &c.high, &c.low, &c.close]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let dp = decimals_for(Decimal::ONE, &all)?;
    let instrument = Instrument::with_price_decimals(Decimal::new(1, dp), dp);
    let units = |v: Decimal, row: usize, col: &str| {
        to_units(v, dp).ok_or_else(|| format!("row {}: {col} {v} does not fit", row + 1))
    };
    let mut bars = Vec::with_capacity(c.len());
    for i in 0..c.len() {
        bars.push(Bar {
            ts: c.ts[i],
            open: units(c.open[i], i, "open")?,
            high: units(c.high[i], i, "high")?,
            low: units(c.low[i], i, "low")?,
            close: units(c.close[i], i, "close")?,
        });
    }
    let delta = c.interval_ms();
    let mut ticks = Vec::with_capacity(bars.len() * 4);
    for (i, bar) in bars.iter().enumerate() {
        let low_first = policy.low_first(Side::Long, bar);
        for p in bar_points(bar, bar_span(&bars, i, delta), low_first) {
            ticks.push(Tick {
                ts: p.ts,
                price: instrument.decimal(p.price),
                gap: p.gap,
            });
        }
    }
    Ok(ticks)
}

/// Trade ticks as points, each a gap.
pub fn from_trades(t: &Trades) -> Vec<Tick> {
    t.ts.iter()
        .zip(&t.price)
        .map(|(&ts, &price)| Tick {
            ts,
            price,
            gap: true,
        })
        .collect()
}

/// A data file's points: trades when the file looks like ticks, else candles.
pub fn load(path: &Path, policy: Policy) -> Result<Vec<Tick>, String> {
    if data::looks_like_ticks(path) {
        Ok(from_trades(
            &data::load_trades(path).map_err(|e| e.to_string())?,
        ))
    } else {
        from_candles(
            &data::load_candles(path).map_err(|e| e.to_string())?,
            policy,
        )
    }
}

/// A replay in progress over one symbol.
#[derive(Debug, Clone)]
pub struct Replay {
    pub symbol: String,
    pub ticks: Vec<Tick>,
    pub openings: Vec<Opening>,
    next: usize,
    opened: Vec<bool>,
    /// Openings the venue refused (one-way mode with the other side open…), with why.
    pub refused: Vec<String>,
}

impl Replay {
    pub fn new(symbol: &str, ticks: Vec<Tick>, openings: Vec<Opening>) -> Replay {
        let opened = vec![false; openings.len()];
        Replay {
            symbol: symbol.to_string(),
            ticks,
            openings,
            next: 0,
            opened,
            refused: Vec::new(),
        }
    }

    /// Points not yet replayed.
    pub fn remaining(&self) -> usize {
        self.ticks.len() - self.next
    }

    /// The data time of the next point.
    pub fn next_ts(&self) -> Option<i64> {
        self.ticks.get(self.next).map(|t| t.ts)
    }

    /// Replays the next point on `model`: the price first (stops trigger on it), then the
    /// positions due at it. `None` when the series is over.
    pub fn step(&mut self, model: &mut Model) -> Option<Vec<Outgoing>> {
        let tick = *self.ticks.get(self.next)?;
        self.next += 1;
        let mut out = model.on_price(&self.symbol, tick.price, tick.gap, tick.ts);
        if tick.gap {
            for (i, o) in self.openings.iter().enumerate() {
                if self.opened[i] || o.at > tick.ts {
                    continue;
                }
                self.opened[i] = true;
                match model.open_position(&self.symbol, o.side, o.qty, tick.ts) {
                    Ok(more) => out.extend(more),
                    Err(e) => self.refused.push(format!("opening at {}: {e}", o.at)),
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::fake_bybit::model::{InstrumentSpec, Setup};
    use rust_decimal_macros::dec;

    const T0: i64 = 1_670_889_600_000;

    fn candles() -> Candles {
        Candles::new(
            vec![T0, T0 + 60_000],
            vec![dec!(100), dec!(103)],
            vec![dec!(105), dec!(104.5)],
            vec![dec!(99), dec!(90)],
            vec![dec!(104), dec!(91)],
        )
        .unwrap()
    }

    #[test]
    fn candles_become_the_backtests_points() {
        let t = from_candles(&candles(), Policy::Olhc).unwrap();
        let got: Vec<(i64, Decimal, bool)> = t.iter().map(|t| (t.ts, t.price, t.gap)).collect();
        assert_eq!(
            got,
            [
                (T0, dec!(100), true),
                (T0 + 20_000, dec!(99), false),
                (T0 + 40_000, dec!(105), false),
                (T0 + 59_999, dec!(104), false),
                (T0 + 60_000, dec!(103), true),
                (T0 + 80_000, dec!(90), false),
                (T0 + 100_000, dec!(104.5), false),
                (T0 + 119_999, dec!(91), false),
            ]
        );
        let ohlc = from_candles(&candles(), Policy::Ohlc).unwrap();
        assert_eq!(ohlc[1].price, dec!(105));
        assert_eq!(implied_tick(&[dec!(1.25), dec!(3)]).unwrap(), dec!(0.01));
    }

    #[test]
    fn openings_wait_for_a_gap_point_and_stops_trigger_first() {
        let mut m = Model::new(Setup::new(
            "k",
            "s",
            vec![InstrumentSpec::new("BTCUSDT", dec!(0.5))],
        ));
        let ticks = from_candles(&candles(), Policy::Olhc).unwrap();
        let mut r = Replay::new(
            "BTCUSDT",
            ticks,
            vec![
                Opening {
                    at: T0 + 1,
                    side: Side::Long,
                    qty: dec!(1),
                },
                Opening {
                    at: T0 + 60_000,
                    side: Side::Short,
                    qty: dec!(1),
                },
            ],
        );
        for _ in 0..4 {
            r.step(&mut m).unwrap();
        }
        // At 1 ms there is no gap point until the second candle's open.
        assert_eq!(m.position("BTCUSDT", 0).side, None);
        r.step(&mut m).unwrap();
        assert_eq!(m.position("BTCUSDT", 0).side, Some(Side::Long));
        assert_eq!(m.position("BTCUSDT", 0).avg_price, dec!(103));
        // The short at the same point is refused in one-way mode, and said why.
        assert_eq!(r.refused.len(), 1, "{:?}", r.refused);
        assert!(r.refused[0].contains("one-way"), "{:?}", r.refused);
        assert_eq!(r.remaining(), 3);
        while r.step(&mut m).is_some() {}
        assert_eq!(r.remaining(), 0);
    }
}
