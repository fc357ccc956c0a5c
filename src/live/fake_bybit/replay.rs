//! The market the fake Bybit replays: a candle file as the DESIGN §3 price points (O, X, Y, C
//! at their data times, through the same `sim::path` the backtester uses) or a trade file as
//! its ticks, and positions opened at given times.

use std::path::Path;

use rust_decimal::Decimal;

use super::model::{Model, Outgoing};
use crate::backtest::market::{Market, Series, decimals_for};
use crate::backtest::{self, DataKind};
use crate::data;
use crate::engine::Side;
use crate::scenario::Scenario;
use crate::sim::path::{Policy, bar_points, bar_span};

/// One replayed price: the mark (and last) price from data time `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub ts: i64,
    pub price: Decimal,
    /// Not reached continuously from the previous point (a candle's open, a trade).
    pub gap: bool,
}

/// A position the replay opens, as the backtester opens an entry: without a price at the
/// first gap point (a candle's open, a trade) at or after `at`, at that point's price; with
/// one at that price, before the first point after `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub at: i64,
    pub side: Side,
    pub qty: Decimal,
    pub price: Option<Decimal>,
}

/// The fewest decimals that write every price exactly: the tick a file's prices imply.
pub fn implied_tick<'a>(values: impl IntoIterator<Item = &'a Decimal>) -> Result<Decimal, String> {
    let dp = decimals_for(values).map_err(|e| e.to_string())?;
    Ok(Decimal::new(1, dp))
}

/// The points of a loaded market, in the order `policy` gives a long: one path serves every
/// position, so a side-dependent policy is read as for a long (`ohlc` and `olhc` do not
/// depend on the side). Candles become their four DESIGN §3 points; ticks stay ticks.
pub fn from_market(market: &Market, policy: Policy) -> Vec<Tick> {
    let i = &market.instrument;
    match &market.series {
        Series::Candles { bars, delta_ms } => bars
            .iter()
            .enumerate()
            .flat_map(|(k, bar)| {
                bar_points(
                    bar,
                    bar_span(bars, k, *delta_ms),
                    policy.low_first(Side::Long, bar),
                )
            })
            .map(|p| Tick {
                ts: p.ts,
                price: i.decimal(p.price),
                gap: p.gap,
            })
            .collect(),
        Series::Ticks { ts, price } => ts
            .iter()
            .zip(price)
            .map(|(&ts, &p)| Tick {
                ts,
                price: i.decimal(p),
                gap: true,
            })
            .collect(),
    }
}

/// A data file's points (trades when the file looks like ticks, else candles), loaded as the
/// backtester loads it, and the tick size used: `tick`, or the one its prices imply.
pub fn load(
    path: &Path,
    tick: Option<Decimal>,
    policy: Policy,
) -> Result<(Vec<Tick>, Decimal), String> {
    let kind = if data::looks_like_ticks(path) {
        DataKind::Trades
    } else {
        DataKind::Candles
    };
    let tick = match tick {
        Some(t) => t,
        None => match kind {
            DataKind::Trades => {
                implied_tick(&data::load_trades(path).map_err(|e| e.to_string())?.price)?
            }
            DataKind::Candles => {
                let c = data::load_candles(path).map_err(|e| e.to_string())?;
                implied_tick([&c.open, &c.high, &c.low, &c.close].into_iter().flatten())?
            }
        },
    };
    let (market, _, _) = backtest::load_market(kind, path, None, tick, std::iter::empty())
        .map_err(|e| e.to_string())?;
    Ok((from_market(&market, policy), tick))
}

/// A scenario's market (its data, tick size and intrabar policy) and its entries as the
/// positions to open (quantity 1 unless the entry gives one), loaded as `backtest` loads them.
pub fn from_scenario(scenario: &Scenario) -> Result<(Vec<Tick>, Vec<Opening>), String> {
    let loaded = backtest::load(scenario).map_err(|e| e.to_string())?;
    let ticks = from_market(&loaded.market, scenario.intrabar.policy);
    let openings = loaded
        .entries
        .iter()
        .map(|e| Opening {
            at: e.time,
            side: e.side,
            qty: e.quantity.unwrap_or(Decimal::ONE),
            price: e.price,
        })
        .collect();
    Ok((ticks, openings))
}

/// What a replay drives: a fake venue's prices and the positions opened on it (the fake
/// Bybit's and the fake Binance's models: one replay for both).
pub trait ReplayVenue {
    /// What the venue sends on its streams.
    type Out;
    /// A price point: the mark (and last) price from data time `ts`.
    fn on_price(&mut self, symbol: &str, price: Decimal, gap: bool, ts: i64) -> Vec<Self::Out>;
    /// Opens (or adds to) a position at the symbol's price.
    fn open_position(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        ts: i64,
    ) -> Result<Vec<Self::Out>, String>;
    /// Opens (or adds to) a position at `price` at `at`.
    fn open_position_at(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        at: i64,
    ) -> Result<Vec<Self::Out>, String>;
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
        Model::open_position(self, symbol, side, qty, ts)
    }

    fn open_position_at(
        &mut self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        at: i64,
    ) -> Result<Vec<Outgoing>, String> {
        Model::open_position_at(self, symbol, side, qty, price, at)
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
    pub fn step<V: ReplayVenue>(&mut self, model: &mut V) -> Option<Vec<V::Out>> {
        let tick = *self.ticks.get(self.next)?;
        self.next += 1;
        let mut out = self.open_due(model, tick, true);
        out.extend(model.on_price(&self.symbol, tick.price, tick.gap, tick.ts));
        if tick.gap {
            out.extend(self.open_due(model, tick, false));
        }
        Some(out)
    }

    /// Opens what is due at `tick`: the priced openings before it (`before`), the others at it.
    fn open_due<V: ReplayVenue>(&mut self, model: &mut V, tick: Tick, before: bool) -> Vec<V::Out> {
        let mut out = Vec::new();
        for (i, o) in self.openings.iter().enumerate() {
            let due = match (before, o.price) {
                (true, Some(_)) => o.at < tick.ts,
                (false, None) => o.at <= tick.ts,
                _ => false,
            };
            if self.opened[i] || !due {
                continue;
            }
            self.opened[i] = true;
            let opened = match o.price {
                Some(p) => model.open_position_at(&self.symbol, o.side, o.qty, p, o.at),
                None => model.open_position(&self.symbol, o.side, o.qty, tick.ts),
            };
            match opened {
                Ok(more) => out.extend(more),
                Err(e) => self.refused.push(format!("opening at {}: {e}", o.at)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Instrument;
    use crate::live::fake_bybit::model::{InstrumentSpec, Setup};
    use crate::sim::path::Bar;
    use rust_decimal_macros::dec;

    const T0: i64 = 1_670_889_600_000;

    /// Two 1m candles in units of 0.5 (price × 2).
    fn market() -> Market {
        let bar = |ts, o, h, l, c| Bar {
            ts,
            open: o,
            high: h,
            low: l,
            close: c,
        };
        Market::new(
            Instrument::with_price_decimals(dec!(0.5), 1),
            Series::Candles {
                bars: vec![
                    bar(T0, 1000, 1050, 990, 1040),
                    bar(T0 + 60_000, 1030, 1045, 900, 910),
                ],
                delta_ms: 60_000,
            },
            None,
        )
    }

    #[test]
    fn candles_become_the_backtests_points() {
        let t = from_market(&market(), Policy::Olhc);
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
        let ohlc = from_market(&market(), Policy::Ohlc);
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
        let open = |at, side, price| Opening {
            at,
            side,
            qty: dec!(1),
            price,
        };
        let mut r = Replay::new(
            "BTCUSDT",
            from_market(&market(), Policy::Olhc),
            vec![
                open(T0 + 1, Side::Long, None),
                open(T0 + 60_000, Side::Short, None),
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

    #[test]
    fn a_trade_file_replays_tick_by_tick_and_a_candle_file_by_its_points() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let (ticks, tick) = load(
            &root.join("ETHUSDT-usdm-trades-20240808.csv"),
            None,
            Policy::Olhc,
        )
        .unwrap();
        assert_eq!(ticks.len(), 14076, "one point per trade");
        assert_eq!(tick, dec!(0.01));
        assert_eq!(
            ticks[0],
            Tick {
                ts: 1723161256560,
                price: dec!(2681.62),
                gap: true
            }
        );
        assert!(ticks.iter().all(|t| t.gap));
        assert!(ticks.windows(2).all(|w| w[0].ts <= w[1].ts));
        let (points, tick) = load(
            &root.join("BTCUSDT-bybit-1m-20221213.csv"),
            Some(dec!(0.01)),
            Policy::Ohlc,
        )
        .unwrap();
        assert_eq!((points.len(), tick), (1440 * 4, dec!(0.01)));
        // The first candle: 17208.86, 17212.99, 17205, 17205 (O, H, L, C under ohlc).
        let first: Vec<(i64, Decimal, bool)> =
            points[..4].iter().map(|t| (t.ts, t.price, t.gap)).collect();
        assert_eq!(
            first,
            [
                (T0, dec!(17208.86), true),
                (T0 + 20_000, dec!(17212.99), false),
                (T0 + 40_000, dec!(17205), false),
                (T0 + 59_999, dec!(17205), false),
            ]
        );
    }

    #[test]
    fn a_priced_opening_opens_at_its_price_before_the_next_point() {
        let mut m = Model::new(Setup::new(
            "k",
            "s",
            vec![InstrumentSpec::new("BTCUSDT", dec!(0.5))],
        ));
        let mut r = Replay::new(
            "BTCUSDT",
            from_market(&market(), Policy::Olhc),
            vec![Opening {
                at: T0 + 30_000,
                side: Side::Short,
                qty: dec!(2),
                price: Some(dec!(101)),
            }],
        );
        r.step(&mut m).unwrap();
        r.step(&mut m).unwrap();
        assert_eq!(m.position("BTCUSDT", 0).side, None);
        r.step(&mut m).unwrap();
        let p = m.position("BTCUSDT", 0);
        assert_eq!(
            (p.side, p.avg_price, p.size),
            (Some(Side::Short), dec!(101), dec!(2))
        );
        assert_eq!(p.created_ms, T0 + 30_000);
    }
}
