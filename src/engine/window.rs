//! The lowest (mirrored) price point inside a sliding time window, for momentum.

use std::collections::VecDeque;

/// Points held inline before the queue moves to the heap (a power of two).
const RING: usize = 16;
const MASK: usize = RING - 1;

/// A monotonic queue: amortised O(1) per point. Inline in a ring of 16 points (enough for
/// candle data), so cloning an engine (the simulator's what-if copies) does not allocate; a
/// longer queue (dense ticks over a long window) moves to a heap deque for good.
#[derive(Debug, Clone, Default)]
pub(crate) struct MinWindow {
    ring: [(i64, i64); RING],
    head: usize,
    len: usize,
    heap: Option<VecDeque<(i64, i64)>>,
}

impl MinWindow {
    /// Adds `(ts, price)` and drops points older than `ts - window_ms`; returns the minimum of
    /// the points in `[ts - window_ms, ts]`, the new one included.
    #[inline]
    pub fn push(&mut self, ts: i64, price: i64, window_ms: i64) -> i64 {
        let from = ts - window_ms;
        if let Some(q) = &mut self.heap {
            while q.back().is_some_and(|b| b.1 >= price) {
                q.pop_back();
            }
            q.push_back((ts, price));
            // The point just pushed is never older than `from`, so this stops inside.
            while q[0].0 < from {
                q.pop_front();
            }
            return q[0].1;
        }
        while self.len > 0 && self.ring[(self.head + self.len - 1) & MASK].1 >= price {
            self.len -= 1;
        }
        if self.len == RING {
            let mut q: VecDeque<(i64, i64)> = self.points().collect();
            q.reserve(RING);
            self.heap = Some(q);
            self.len = 0;
            return self.push(ts, price, window_ms);
        }
        self.ring[(self.head + self.len) & MASK] = (ts, price);
        self.len += 1;
        while self.ring[self.head].0 < from {
            self.head = (self.head + 1) & MASK;
            self.len -= 1;
        }
        self.ring[self.head].1
    }

    /// The minimum of the points kept (those of the window at the last push).
    pub fn min(&self) -> Option<i64> {
        match &self.heap {
            Some(q) => q.front().map(|p| p.1),
            None => (self.len > 0).then(|| self.ring[self.head].1),
        }
    }

    pub fn points(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let ring = (0..self.len).map(|i| self.ring[(self.head + i) & MASK]);
        let heap = self.heap.iter().flat_map(|q| q.iter().copied());
        ring.chain(heap)
    }

    /// A window holding `points` (a queue as [`MinWindow::points`] gave it).
    pub fn from_points(points: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let points: Vec<(i64, i64)> = points.into_iter().collect();
        let mut w = MinWindow::default();
        if points.len() > RING {
            w.heap = Some(points.into());
        } else {
            w.ring[..points.len()].copy_from_slice(&points);
            w.len = points.len();
        }
        w
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

    /// Against a brute-force minimum over long pseudo-random series: a flat one (short
    /// queues, the ring wrapping around) and a rising one with a long window (queues past the
    /// ring: the heap deque). A copy rebuilt from `points` continues identically.
    #[test]
    fn matches_brute_force() {
        for (trend, window) in [(0i64, 40i64), (100, 400)] {
            let mut w = MinWindow::default();
            let mut all = Vec::new();
            let mut x = 12345u64;
            let (mut ts, mut spilled) = (0, false);
            for i in 0..5000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                ts += (x >> 60) as i64; // steps of 0..15, ties included
                let p = ((x >> 33) % 1000) as i64 + trend * i;
                all.push((ts, p));
                let want = all
                    .iter()
                    .filter(|&&(t, _)| t >= ts - window)
                    .map(|&(_, p)| p)
                    .min();
                assert_eq!(Some(w.push(ts, p, window)), want);
                assert_eq!(w.min(), want);
                let kept: Vec<_> = w.points().collect();
                assert!(kept.windows(2).all(|k| k[0].1 < k[1].1));
                spilled |= w.heap.is_some();
                if i % 97 == 0 {
                    w = MinWindow::from_points(kept);
                }
            }
            assert_eq!(spilled, trend > 0, "trend {trend}");
        }
    }
}
