//! What the charts' axes show, computed apart from the drawing so tests can read it: time ticks
//! on round times (UTC) with labels to match, and a trade's price frame that holds its own
//! levels whatever one candle's wick does.

use crate::timefmt::{civil_from_days, days_from_civil, iso_ms};

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Round steps, each a whole number of the one before's unit; days count from the epoch, so
/// every day step falls on midnights UTC.
const STEPS: [i64; 20] = [
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
];

/// Calendar steps for long spans, in months.
const MONTHS: [i64; 6] = [1, 2, 3, 6, 12, 24];

/// The distance between two ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Ms(i64),
    Months(i64),
}

/// A time axis over `[t0, t1]`: labelled ticks and the lighter grid between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeAxis {
    pub ticks: Vec<i64>,
    pub light: Vec<i64>,
    pub step: Step,
}

fn multiples(t0: i64, t1: i64, step: i64) -> Vec<i64> {
    let first = t0.div_euclid(step) * step + if t0.rem_euclid(step) == 0 { 0 } else { step };
    (0..)
        .map(|k| first + k * step)
        .take_while(|t| *t <= t1)
        .collect()
}

/// Months since year 0 of epoch ms, and back (the first of that month, 00:00 UTC).
fn month_index(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY));
    y * 12 + (m as i64 - 1)
}

fn month_start(index: i64) -> i64 {
    let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    days_from_civil(y, m as u32, 1) * DAY
}

/// Ticks on the round times inside `[t0, t1]`: the smallest round step that gives at most
/// `max` ticks (calendar months beyond a week's step).
pub fn time_axis(t0: i64, t1: i64, max: usize) -> TimeAxis {
    let (t0, t1) = (t0.min(t1), t0.max(t1));
    let max = max.max(2);
    let span = t1 - t0;
    let fits = |step: i64| span / step < max as i64;
    if let Some(i) = STEPS.iter().position(|&s| fits(s)) {
        let step = STEPS[i];
        // The lighter grid: the largest smaller round step that divides it, about 2–6 a tick.
        let light = STEPS[..i]
            .iter()
            .rev()
            .find(|&&s| step % s == 0 && step / s <= 6)
            .map_or_else(Vec::new, |&s| multiples(t0, t1, s));
        return TimeAxis {
            ticks: multiples(t0, t1, step),
            light,
            step: Step::Ms(step),
        };
    }
    let (m0, m1) = (month_index(t0), month_index(t1));
    let months = MONTHS
        .iter()
        .copied()
        .find(|&n| (m1 - m0) / n < max as i64)
        .unwrap_or_else(|| 12 * ((m1 - m0) / (12 * max as i64) + 1));
    let ticks = (m0..=m1 + 1)
        .filter(|i| i.rem_euclid(months) == 0)
        .map(month_start)
        .filter(|t| (t0..=t1).contains(t))
        .collect();
    TimeAxis {
        ticks,
        light: Vec::new(),
        step: Step::Months(months),
    }
}

/// A tick's label: `HH:MM:SS` below a minute's step, `MM-DD HH:MM` below a day's, `YYYY-MM-DD`
/// for days and weeks, `YYYY-MM` for months.
pub fn time_label(ms: i64, step: Step) -> String {
    let iso = iso_ms(ms);
    let part = |a: usize, z: usize| iso.get(a..z).unwrap_or(&iso).replace('T', " ");
    match step {
        Step::Ms(s) if s < MINUTE => part(11, 19),
        Step::Ms(s) if s < DAY => part(5, 16),
        Step::Ms(_) => part(0, 10),
        Step::Months(_) => part(0, 7),
    }
}

/// A chart's price range `(lo, hi)` and the price above which the legend sits (nothing of the
/// trade is drawn there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceFrame {
    pub lo: f64,
    pub hi: f64,
    pub legend_floor: f64,
}

/// The frame of a trade chart: every one of the trade's own levels (entry, exit, stops, peak:
/// `levels`) and every candle body inside; the wicks (`extremes`) widen it by at most half the
/// span of the rest, so one spike cannot flatten the chart (it is cut at the frame). The top
/// `legend_share` of the frame is kept free for the legend.
pub fn price_frame(
    levels: impl IntoIterator<Item = f64>,
    extremes: impl IntoIterator<Item = f64>,
    legend_share: f64,
) -> PriceFrame {
    let span_of = |it: &mut dyn Iterator<Item = f64>| {
        it.filter(|p| p.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p), b.max(p))
            })
    };
    let (mut lo, mut hi) = span_of(&mut levels.into_iter());
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    let core = (hi - lo).max(hi.abs() * 1e-4);
    let (wlo, whi) = span_of(&mut extremes.into_iter());
    if wlo <= whi {
        lo = lo.min(wlo.max(lo - core / 2.0));
        hi = hi.max(whi.min(hi + core / 2.0));
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-9);
    let (lo, top) = (lo - pad, hi + pad);
    // The legend takes `legend_share` of the whole height, above `top`.
    let share = legend_share.clamp(0.0, 0.9);
    let hi = top + (top - lo) * share / (1.0 - share);
    PriceFrame {
        lo,
        hi,
        legend_floor: top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_670_889_600_000; // 2022-12-13T00:00:00Z

    #[test]
    fn ticks_fall_on_round_times() {
        // 18:00 to 23:59:59.999 (the quickstart's last trade): every hour on the hour.
        let a = time_axis(DAY0 + 17 * HOUR + 50 * MINUTE, DAY0 + DAY - 1, 8);
        assert_eq!(a.step, Step::Ms(HOUR));
        assert_eq!(a.ticks.first(), Some(&(DAY0 + 18 * HOUR)));
        assert_eq!(a.ticks.len(), 6);
        assert!(a.ticks.iter().all(|t| t % HOUR == 0));
        assert_eq!(time_label(a.ticks[0], a.step), "12-13 18:00");
        // The light grid: half-hours, 15 minutes or the like between them.
        assert!(!a.light.is_empty() && a.light.iter().all(|t| t % (10 * MINUTE) == 0));
        // Seven minutes: every minute; half a minute: every 5 seconds, labels with seconds.
        let a = time_axis(DAY0 + 30 * SECOND, DAY0 + 7 * MINUTE + 30 * SECOND, 8);
        assert_eq!(a.step, Step::Ms(MINUTE));
        assert_eq!(time_label(a.ticks[0], a.step), "12-13 00:01");
        let a = time_axis(DAY0 + 1, DAY0 + 30 * SECOND, 8);
        assert_eq!(a.step, Step::Ms(5 * SECOND));
        assert_eq!(time_label(a.ticks[0], a.step), "00:00:05");
        // A whole day in at most 8 ticks: every 3 hours would be 9, so every 6 (00 to 24).
        let a = time_axis(DAY0, DAY0 + DAY, 8);
        assert_eq!(a.step, Step::Ms(6 * HOUR));
        assert_eq!(a.ticks.len(), 5);
        // Ten days: every 2 days at midnight UTC.
        let a = time_axis(DAY0 + 5 * HOUR, DAY0 + 10 * DAY, 8);
        assert_eq!(a.step, Step::Ms(2 * DAY));
        assert!(a.ticks.iter().all(|t| t % DAY == 0));
        assert_eq!(time_label(a.ticks[0], a.step).len(), 10);
    }

    #[test]
    fn long_spans_tick_on_month_starts() {
        // 2022-12-13 to about 2024-06: quarters or half-years, each the 1st at 00:00.
        let a = time_axis(DAY0, DAY0 + 550 * DAY, 8);
        let Step::Months(n) = a.step else {
            panic!("{:?}", a.step)
        };
        assert!(n >= 3, "{n}");
        assert!(a.ticks.len() <= 8 && !a.ticks.is_empty());
        for t in &a.ticks {
            let label = time_label(*t, a.step);
            assert_eq!(iso_ms(*t), format!("{label}-01T00:00:00.000Z"));
        }
        assert_eq!(time_label(a.ticks[0], a.step), "2023-01");
    }

    #[test]
    fn a_spike_does_not_flatten_the_frame_and_the_levels_stay_inside() {
        // A short at 100 with its initial stop at 101, candles 99.5–100.5, one wick to 1000.
        let levels = [100.0, 101.0, 99.8, 100.2, 99.6];
        let wicks = [99.5, 100.5, 1000.0, 99.4];
        let f = price_frame(levels, wicks, 0.25);
        // The spike is cut: the frame is a few points tall, not 900.
        assert!(f.hi - f.lo < 5.0, "{f:?}");
        for p in levels {
            assert!(
                p > f.lo && p < f.legend_floor,
                "{p} inside, below the legend: {f:?}"
            );
        }
        // The stop is not under the legend: the legend takes the top quarter.
        assert!(((f.hi - f.legend_floor) / (f.hi - f.lo) - 0.25).abs() < 1e-9);
        // Ordinary wicks are kept whole.
        let f = price_frame([100.0, 101.0], [99.7, 101.2], 0.0);
        assert!(f.lo < 99.7 && f.hi > 101.2, "{f:?}");
    }
}
