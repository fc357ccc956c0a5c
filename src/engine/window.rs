//! The lowest (mirrored) price point inside a sliding time window, for momentum.

use smallvec::SmallVec;

/// A monotonic queue (front = `head`): amortised O(1) per point. Inline up to 16 points, so
/// cloning an engine (the simulator's what-if copies) does not allocate for candle data.
#[derive(Debug, Clone, Default)]
pub(crate) struct MinWindow {
    points: SmallVec<[(i64, i64); 16]>,
    head: usize,
}

impl MinWindow {
    /// Adds `(ts, price)` and drops points older than `ts - window_ms`; returns the minimum of
    /// the points in `[ts - window_ms, ts]`, the new one included.
    #[inline]
    pub fn push(&mut self, ts: i64, price: i64, window_ms: i64) -> i64 {
        while self.points.len() > self.head && self.points[self.points.len() - 1].1 >= price {
            self.points.pop();
        }
        self.points.push((ts, price));
        let from = ts - window_ms;
        // The point just pushed is never older than `from`, so this stops inside the queue.
        while self.points[self.head].0 < from {
            self.head += 1;
        }
        if self.head >= 8 && self.head * 2 >= self.points.len() {
            self.points.drain(..self.head);
            self.head = 0;
        }
        self.points[self.head].1
    }

    /// The minimum of the points kept (those of the window at the last push).
    pub fn min(&self) -> Option<i64> {
        self.points.get(self.head).map(|p| p.1)
    }

    pub fn points(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.points[self.head..].iter().copied()
    }

    pub fn from_points(points: impl IntoIterator<Item = (i64, i64)>) -> Self {
        MinWindow {
            points: points.into_iter().collect(),
            head: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_window_inclusive() {
        let mut w = MinWindow::default();
        assert_eq!(w.push(0, 10, 100), 10);
        assert_eq!(w.push(50, 12, 100), 10);
        assert_eq!(w.push(100, 15, 100), 10); // ts 0 is exactly at the window's start: kept
        assert_eq!(w.push(101, 14, 100), 12); // ts 0 drops out
        assert_eq!(w.push(160, 20, 100), 14);
        assert_eq!(w.push(161, 9, 100), 9);
    }

    /// Against a brute-force minimum over a long pseudo-random series (exercises compaction).
    #[test]
    fn matches_brute_force() {
        let mut w = MinWindow::default();
        let mut all = Vec::new();
        let mut x = 12345u64;
        let mut ts = 0;
        for _ in 0..5000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            ts += (x >> 60) as i64; // steps of 0..15, ties included
            let p = ((x >> 33) % 1000) as i64;
            all.push((ts, p));
            let want = all
                .iter()
                .filter(|&&(t, _)| t >= ts - 40)
                .map(|&(_, p)| p)
                .min();
            assert_eq!(Some(w.push(ts, p, 40)), want);
            let kept: Vec<_> = w.points().collect();
            assert!(kept.windows(2).all(|k| k[0].1 < k[1].1));
        }
    }
}
