//! The lowest (mirrored) price point inside a sliding time window, for momentum.

use std::collections::VecDeque;

/// A monotonic queue: amortised O(1) per point, no allocation once its capacity is reached.
#[derive(Debug, Clone, Default)]
pub(crate) struct MinWindow {
    points: VecDeque<(i64, i64)>,
}

impl MinWindow {
    /// Adds `(ts, price)` and drops points older than `ts - window_ms`; returns the minimum of
    /// the points in `[ts - window_ms, ts]`, the new one included.
    #[inline]
    pub fn push(&mut self, ts: i64, price: i64, window_ms: i64) -> i64 {
        while let Some(&(_, p)) = self.points.back() {
            if p >= price {
                self.points.pop_back();
            } else {
                break;
            }
        }
        self.points.push_back((ts, price));
        let from = ts - window_ms;
        while let Some(&(t, _)) = self.points.front() {
            if t < from {
                self.points.pop_front();
            } else {
                break;
            }
        }
        // The point just pushed is never older than `from`, so the queue is not empty.
        self.points.front().map_or(price, |&(_, p)| p)
    }

    pub fn points(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.points.iter().copied()
    }

    pub fn from_points(points: impl IntoIterator<Item = (i64, i64)>) -> Self {
        MinWindow {
            points: points.into_iter().collect(),
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
}
