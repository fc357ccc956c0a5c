//! Block maxima and minima over a candle series, so a position can pass a long run of bars in
//! which nothing can happen to it without looking at each one.
//!
//! A position is quiet while every price stays inside an envelope (below the next threshold,
//! above the resting stop: [`crate::sim::exchange::SimPosition::quiet_envelope`]). Most of a
//! position's life is such runs. Blocks of 16, 256 and 4096 bars keep their highest high and
//! lowest low; a run is found by taking whole blocks while they fit and single bars at the
//! edges, and the bars are then absorbed at once with the same result as bar by bar.

use crate::sim::path::Bar;

/// Block sizes (log2), finest first.
const SHIFTS: [u32; 3] = [4, 8, 12];

#[derive(Debug, Clone)]
struct Level {
    shift: u32,
    /// Per full block: the highest high and the lowest low.
    high: Vec<i64>,
    low: Vec<i64>,
}

/// Block extremes of one candle series (bars are OHLC-consistent: the loaders check it, so a
/// bar's high and low bound its four points).
#[derive(Debug, Clone)]
pub struct BarIndex {
    levels: Vec<Level>,
}

/// A run of bars inside an envelope: bars `[from, end)`, their highest high and lowest low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietRun {
    pub end: usize,
    pub high: i64,
    pub low: i64,
}

impl BarIndex {
    pub fn new(bars: &[Bar]) -> BarIndex {
        let mut levels: Vec<Level> = Vec::with_capacity(SHIFTS.len());
        for shift in SHIFTS {
            let n = bars.len() >> shift;
            let (high, low) = match levels.last() {
                // Built from the finer level: each block is 2^(shift - finer) finer blocks.
                Some(f) => {
                    let k = 1 << (shift - f.shift);
                    (0..n)
                        .map(|b| {
                            let r = b * k..(b + 1) * k;
                            (
                                f.high[r.clone()].iter().copied().max().unwrap_or(i64::MIN),
                                f.low[r].iter().copied().min().unwrap_or(i64::MAX),
                            )
                        })
                        .unzip()
                }
                None => (0..n)
                    .map(|b| {
                        let blk = &bars[b << shift..(b + 1) << shift];
                        (
                            blk.iter().map(|x| x.high).max().unwrap_or(i64::MIN),
                            blk.iter().map(|x| x.low).min().unwrap_or(i64::MAX),
                        )
                    })
                    .unzip(),
            };
            levels.push(Level { shift, high, low });
        }
        BarIndex { levels }
    }

    /// The longest run of bars from `from` (up to `end`) whose highs are at most `high_max`
    /// and whose lows are at least `low_min`.
    #[inline]
    pub fn quiet_run(
        &self,
        bars: &[Bar],
        from: usize,
        end: usize,
        high_max: i64,
        low_min: i64,
    ) -> QuietRun {
        let end = end.min(bars.len());
        let (mut j, mut high, mut low) = (from, i64::MIN, i64::MAX);
        'bars: while j < end {
            for lvl in self.levels.iter().rev() {
                let size = 1usize << lvl.shift;
                if j & (size - 1) == 0 && j + size <= end {
                    let k = j >> lvl.shift;
                    let (h, l) = (lvl.high[k], lvl.low[k]);
                    if h <= high_max && l >= low_min {
                        high = high.max(h);
                        low = low.min(l);
                        j += size;
                        continue 'bars;
                    }
                }
            }
            let b = &bars[j];
            if b.high > high_max || b.low < low_min {
                break;
            }
            high = high.max(b.high);
            low = low.min(b.low);
            j += 1;
        }
        QuietRun { end: j, high, low }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(n: usize, seed: u64) -> Vec<Bar> {
        let mut x = seed;
        let mut p = 10_000i64;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let open = p;
                p += ((x >> 33) % 21) as i64 - 10;
                let wick = ((x >> 50) % 7) as i64;
                Bar {
                    ts: i as i64 * 60_000,
                    open,
                    high: open.max(p) + wick,
                    low: open.min(p) - wick,
                    close: p,
                }
            })
            .collect()
    }

    /// Against a bar-by-bar scan, for many starts, ends and envelopes (block edges included).
    #[test]
    fn runs_match_a_plain_scan() {
        let bars = bars(10_000, 3);
        let index = BarIndex::new(&bars);
        let mut x = 99u64;
        let mut long_runs = 0;
        for _ in 0..3_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let from = (x >> 40) as usize % bars.len();
            let end = from + (x >> 20) as usize % 6_000;
            let b = &bars[from];
            let high_max = b.high + ((x >> 8) % 300) as i64;
            let low_min = b.low - ((x >> 16) % 300) as i64;
            let got = index.quiet_run(&bars, from, end, high_max, low_min);
            let (mut j, mut high, mut low) = (from, i64::MIN, i64::MAX);
            while j < end.min(bars.len()) && bars[j].high <= high_max && bars[j].low >= low_min {
                high = high.max(bars[j].high);
                low = low.min(bars[j].low);
                j += 1;
            }
            assert_eq!(got, QuietRun { end: j, high, low }, "from {from} end {end}");
            long_runs += usize::from(j - from > 300);
        }
        assert!(
            long_runs > 50,
            "too few long runs to exercise the blocks: {long_runs}"
        );
        // Empty and tiny series.
        let none = BarIndex::new(&[]);
        assert_eq!(none.quiet_run(&[], 0, 5, 0, 0).end, 0);
        let few = &bars[..5];
        let idx = BarIndex::new(few);
        assert_eq!(idx.quiet_run(few, 0, 10, i64::MAX, i64::MIN).end, 5);
    }
}
