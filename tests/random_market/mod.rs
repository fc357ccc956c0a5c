//! Random candle walks for property tests, shared by the store and paper properties.

use trailstop::sim::path::Bar;

/// Bars from `(close change, upper wick, lower wick)` steps, starting at 1000.0 (units of 0.1),
/// one every `delta` ms from `t0`; prices stay positive.
pub fn walk(steps: &[(i64, i64, i64)], t0: i64, delta: i64) -> Vec<Bar> {
    let mut open = 10_000i64;
    steps
        .iter()
        .enumerate()
        .map(|(i, &(d, up, down))| {
            let close = (open + d).max(100);
            let b = Bar {
                ts: t0 + i as i64 * delta,
                open,
                high: open.max(close) + up,
                low: (open.min(close) - down).max(1),
                close,
            };
            open = close;
            b
        })
        .collect()
}
