//! Candles → price points (DESIGN §3): four points O, X, Y, C per candle, ordered by policy.

use serde::{Deserialize, Serialize};

use crate::engine::Side;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The adverse extreme first: long O-L-H-C, short O-H-L-C.
    #[default]
    Pessimistic,
    /// The favourable extreme first.
    Optimistic,
    Ohlc,
    Olhc,
    /// The extreme nearer to the open first; a tie goes pessimistic.
    Adaptive,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Pessimistic => "pessimistic",
            Policy::Optimistic => "optimistic",
            Policy::Ohlc => "ohlc",
            Policy::Olhc => "olhc",
            Policy::Adaptive => "adaptive",
        }
    }

    pub const ALL: [Policy; 5] = [
        Policy::Pessimistic,
        Policy::Optimistic,
        Policy::Ohlc,
        Policy::Olhc,
        Policy::Adaptive,
    ];

    /// Whether this bar is walked low before high.
    #[inline]
    pub fn low_first(self, side: Side, bar: &Bar) -> bool {
        match self {
            Policy::Pessimistic => side == Side::Long,
            Policy::Optimistic => side == Side::Short,
            Policy::Ohlc => false,
            Policy::Olhc => true,
            Policy::Adaptive => {
                let to_low = bar.open - bar.low;
                let to_high = bar.high - bar.open;
                if to_low == to_high {
                    side == Side::Long
                } else {
                    to_low < to_high
                }
            }
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("\"{s}\" is not a policy (pessimistic, optimistic, ohlc, olhc, adaptive)")
            })
    }
}

/// One candle in instrument price units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub ts: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
}

/// A price the position sees. `gap` marks a point not reached continuously from the previous
/// one — a candle's open or a trade tick — so a stop crossed there fills at this price, not at
/// the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub ts: i64,
    pub price: i64,
    pub gap: bool,
}

/// Candle `i`'s span Δ (DESIGN §3): the interval, but never reaching into the next candle
/// (`min(interval, next.ts - ts)`); the last candle spans the interval. Sparse 1s candles and
/// calendar months have steps shorter than the interval.
#[inline]
pub fn bar_span(bars: &[Bar], i: usize, interval_ms: i64) -> i64 {
    match bars.get(i + 1) {
        Some(next) => interval_ms.min(next.ts - bars[i].ts),
        None => interval_ms,
    }
}

/// The four points of `bar` with span `delta_ms` (see [`bar_span`]): O at `t`, X at
/// `t+⌊Δ/3⌋`, Y at `t+⌊2Δ/3⌋`, C at `t+Δ-1`; X/Y are the low and the high in the order
/// `low_first` says.
#[inline]
pub fn bar_points(bar: &Bar, delta_ms: i64, low_first: bool) -> [Point; 4] {
    let (x, y) = if low_first {
        (bar.low, bar.high)
    } else {
        (bar.high, bar.low)
    };
    [
        Point {
            ts: bar.ts,
            price: bar.open,
            gap: true,
        },
        Point {
            ts: bar.ts + delta_ms / 3,
            price: x,
            gap: false,
        },
        Point {
            ts: bar.ts + 2 * delta_ms / 3,
            price: y,
            gap: false,
        },
        Point {
            ts: bar.ts + delta_ms - 1,
            price: bar.close,
            gap: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAR: Bar = Bar {
        ts: 60_000,
        open: 100,
        high: 110,
        low: 95,
        close: 105,
    };

    #[test]
    fn point_times_are_integer_thirds() {
        let p = bar_points(&BAR, 60_000, true);
        assert_eq!(p.map(|p| p.ts), [60_000, 80_000, 100_000, 119_999]);
        assert_eq!(p.map(|p| p.price), [100, 95, 110, 105]);
        assert_eq!(p.map(|p| p.gap), [true, false, false, false]);
        // Δ not divisible by 3: floor.
        let p = bar_points(&BAR, 100, false);
        assert_eq!(p.map(|p| p.ts), [60_000, 60_033, 60_066, 60_099]);
        assert_eq!(p.map(|p| p.price), [100, 110, 95, 105]);
    }

    #[test]
    fn a_candle_spans_at_most_up_to_the_next_open() {
        let bar = |ts| Bar { ts, ..BAR };
        // 1m interval; the second candle follows after 1 s, the third after 30 s.
        let bars = [bar(0), bar(1_000), bar(31_000), bar(91_000), bar(200_000)];
        let spans: Vec<i64> = (0..bars.len())
            .map(|i| bar_span(&bars, i, 60_000))
            .collect();
        // A gap longer than the interval keeps the interval; the last candle spans it.
        assert_eq!(spans, [1_000, 30_000, 60_000, 60_000, 60_000]);
        let p = bar_points(&bars[0], spans[0], true);
        assert_eq!(p.map(|p| p.ts), [0, 333, 666, 999]);
        // Consecutive candles 1 ms apart: all four points at the open, still in order.
        let tight = [bar(0), bar(1)];
        assert_eq!(bar_span(&tight, 0, 60_000), 1);
        assert_eq!(bar_points(&tight[0], 1, true).map(|p| p.ts), [0; 4]);
    }

    #[test]
    fn policies_order_the_extremes() {
        use Side::*;
        assert!(Policy::Pessimistic.low_first(Long, &BAR));
        assert!(!Policy::Pessimistic.low_first(Short, &BAR));
        assert!(!Policy::Optimistic.low_first(Long, &BAR));
        assert!(Policy::Optimistic.low_first(Short, &BAR));
        assert!(!Policy::Ohlc.low_first(Long, &BAR));
        assert!(Policy::Olhc.low_first(Short, &BAR));
        // Open 100: the low (95) is nearer than the high (110).
        assert!(Policy::Adaptive.low_first(Short, &BAR));
        let near_high = Bar { high: 103, ..BAR };
        assert!(!Policy::Adaptive.low_first(Long, &near_high));
        let tie = Bar { high: 105, ..BAR };
        assert!(Policy::Adaptive.low_first(Long, &tie));
        assert!(!Policy::Adaptive.low_first(Short, &tie));
    }
}
