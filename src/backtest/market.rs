//! Market data in the engine's integer price units, ready to replay.

use rust_decimal::Decimal;

use crate::engine::Instrument;
use crate::engine::fixed::MAX_PRICE_DECIMALS;
use std::sync::OnceLock;

use crate::sim::path::{Bar, Point, bar_points, bar_span};

use super::skip::BarIndex;

/// What is replayed: candles (4 points each) or trade ticks (1 point each).
#[derive(Debug, Clone)]
pub enum Series {
    Candles { bars: Vec<Bar>, delta_ms: i64 },
    Ticks { ts: Vec<i64>, price: Vec<i64> },
}

#[derive(Debug, Clone)]
pub struct Market {
    pub instrument: Instrument,
    pub series: Series,
    /// Finer data (candles or ticks) that resolves ambiguous bars of `series`.
    pub detail: Option<Series>,
    /// Block extremes of the candles, built on first use (shared by every run on this market).
    index: OnceLock<BarIndex>,
}

impl Market {
    pub fn new(instrument: Instrument, series: Series, detail: Option<Series>) -> Market {
        Market {
            instrument,
            series,
            detail,
            index: OnceLock::new(),
        }
    }

    /// The block index of the candle series (empty for ticks).
    pub fn bar_index(&self) -> &BarIndex {
        self.index.get_or_init(|| match &self.series {
            Series::Candles { bars, .. } => BarIndex::new(bars),
            Series::Ticks { .. } => BarIndex::new(&[]),
        })
    }

    /// The times at which entries may open: candle opens or ticks.
    pub fn entry_times(&self) -> Vec<i64> {
        match &self.series {
            Series::Candles { bars, .. } => bars.iter().map(|b| b.ts).collect(),
            Series::Ticks { ts, .. } => ts.clone(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.series {
            Series::Candles { bars, .. } => bars.len(),
            Series::Ticks { ts, .. } => ts.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index of the first bar opening at or after `t` (`bars.len()` if none). Guesses the
/// index from the interval first: on gap-free data that avoids a binary search's cache misses.
#[inline]
pub fn first_bar_at_or_after(bars: &[Bar], delta_ms: i64, t: i64) -> usize {
    if let Some(first) = bars.first()
        && delta_ms > 0
        && t > first.ts
    {
        let guess = (((t - first.ts) + delta_ms - 1) / delta_ms) as usize;
        if guess < bars.len() && bars[guess].ts >= t && bars[guess - 1].ts < t {
            return guess;
        }
    }
    bars.partition_point(|b| b.ts < t)
}

impl Series {
    /// The points of this (finer) series inside `[from, to)` that `after` leaves: candles as
    /// O, X, Y, C in the given order, ticks as they are.
    pub fn points_in(
        &self,
        from: i64,
        to: i64,
        after: crate::backtest::run::After,
        low_first: impl Fn(&Bar) -> bool,
        out: &mut Vec<Point>,
    ) {
        out.clear();
        let (after, skip_first) = (after.ts, after.skip_first);
        match self {
            Series::Candles { bars, delta_ms } => {
                let a = bars.partition_point(|b| b.ts < from);
                let z = bars.partition_point(|b| b.ts < to);
                for (i, bar) in bars.iter().enumerate().take(z).skip(a) {
                    out.extend(
                        bar_points(bar, bar_span(bars, i, *delta_ms), low_first(bar))
                            .into_iter()
                            .filter(|p| p.ts > after && p.ts < to),
                    );
                }
            }
            Series::Ticks { ts, price } => {
                let a = ts.partition_point(|&t| t < from.max(after.saturating_add(1)));
                let z = ts.partition_point(|&t| t < to);
                out.extend((a..z).map(|i| Point {
                    ts: ts[i],
                    price: price[i],
                    gap: true,
                }));
            }
        }
        if skip_first && !out.is_empty() {
            out.remove(0);
        }
    }
}

/// A value with more decimals than the engine's integer units hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} has {decimals} decimals; at most {MAX_PRICE_DECIMALS} are supported")]
pub struct TooManyDecimals {
    /// Its index among the values given.
    pub index: usize,
    pub value: Decimal,
    pub decimals: u32,
}

/// The fewest decimals that represent every value exactly (0 for none), or the first value
/// that needs more than [`MAX_PRICE_DECIMALS`].
pub fn decimals_for<'a>(
    values: impl IntoIterator<Item = &'a Decimal>,
) -> Result<u32, TooManyDecimals> {
    let mut dp = 0;
    for (index, v) in values.into_iter().enumerate() {
        if v.scale() > dp {
            let decimals = v.normalize().scale();
            if decimals > MAX_PRICE_DECIMALS {
                return Err(TooManyDecimals {
                    index,
                    value: *v,
                    decimals,
                });
            }
            dp = dp.max(decimals);
        }
    }
    Ok(dp)
}

/// Converts exact decimals to units at `decimals`; the error is the index of a value that
/// does not fit.
pub fn to_units(values: &[Decimal], decimals: u32) -> Result<Vec<i64>, usize> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| crate::engine::fixed::to_units(*v, decimals).ok_or(i))
        .collect()
}
