//! Inputs that would run but give wrong results (issue 9): refused with an error that says what
//! and where, or let through with a warning the run reports. Each check runs once per load,
//! never on the replay's hot path.

use std::path::Path;

use rust_decimal::Decimal;

use crate::data::format_ms;
use crate::sim::entries::{EntriesError, EntrySpec, FarEntry};
use crate::sim::path::{Bar, bar_span};

use super::market::{Market, Series};
use super::run::plan_position;

/// A duration in the largest unit that holds it exactly (`30s`, `28d`, `1500ms`).
pub fn duration(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// DESIGN §3–§4: a step between candles shorter than the interval makes that candle span only
/// up to the next open; the run says so (sparse 1s candles, calendar months).
pub fn short_steps(path: &Path, ts: &[i64], interval: i64, given: bool) -> Option<String> {
    let mut shortest: Option<(i64, usize)> = None;
    let mut count = 0usize;
    for (i, w) in ts.windows(2).enumerate() {
        let step = w[1] - w[0];
        if step < interval {
            count += 1;
            if shortest.is_none_or(|(s, _)| step < s) {
                shortest = Some((step, i));
            }
        }
    }
    let (step, i) = shortest?;
    let source = if given {
        "given by [data] interval"
    } else {
        "the most common step; set [data] interval to give it"
    };
    Some(format!(
        "{}: the shortest step between candles, {} (from {} to {}), is below the candle interval {} ({source}); {count} of {} candles are followed by the next one within the interval and span only up to its open",
        path.display(),
        duration(step),
        format_ms(ts[i]),
        format_ms(ts[i + 1]),
        duration(interval),
        ts.len(),
    ))
}

/// A tick above 1 % of the first price makes stops round to zero or far from the price.
pub fn coarse_tick(tick: Decimal, first: Decimal, first_ts: i64) -> Option<String> {
    if tick * Decimal::ONE_HUNDRED <= first {
        return None;
    }
    let share = (tick / first * Decimal::ONE_HUNDRED)
        .round_dp(2)
        .normalize();
    let unit = Decimal::new(1, first.normalize().scale());
    Some(format!(
        "data.tick_size {} is {share} % of the first price {} (at {}): a tick above 1 % of the price rounds stops to zero or far from the market; use the instrument's tick (the data's prices step by {unit})",
        tick.normalize(),
        first.normalize(),
        format_ms(first_ts),
    ))
}

/// How many candles have at least one point of the finer `detail` series inside them.
pub fn covered_bars(bars: &[Bar], interval: i64, detail: &Series) -> usize {
    let times: Vec<i64> = match detail {
        Series::Candles { bars, .. } => bars.iter().map(|b| b.ts).collect(),
        Series::Ticks { ts, .. } => ts.clone(),
    };
    let mut j = 0;
    let mut covered = 0;
    for (i, bar) in bars.iter().enumerate() {
        let end = bar.ts + bar_span(bars, i, interval);
        while j < times.len() && times[j] < bar.ts {
            j += 1;
        }
        if j < times.len() && times[j] < end {
            covered += 1;
        }
    }
    covered
}

/// The first and last times of a series, as text.
pub fn span_text(s: &Series) -> String {
    let (a, z) = match s {
        Series::Candles { bars, .. } => (bars.first().map(|b| b.ts), bars.last().map(|b| b.ts)),
        Series::Ticks { ts, .. } => (ts.first().copied(), ts.last().copied()),
    };
    match (a, z) {
        (Some(a), Some(z)) => format!("{} to {}", format_ms(a), format_ms(z)),
        _ => "nothing".into(),
    }
}

/// How far a priced entry may lie outside the market's range at its time before it is refused
/// (inside that, a warning).
const FAR_PERCENT: i64 = 10;

/// Priced entries against the market where they open: outside the candle's range (or between
/// the ticks around it) is a warning, more than `FAR_PERCENT` % outside an error. `where_of(k)`
/// names entry `k` (file and line).
pub fn entry_prices(
    market: &Market,
    entries: &[EntrySpec],
    where_of: impl Fn(usize) -> String,
    warnings: &mut Vec<String>,
) -> Result<(), EntriesError> {
    let inst = &market.instrument;
    for (k, e) in entries.iter().enumerate() {
        let Some(price) = e.price else { continue };
        let Ok(Some(planned)) = plan_position(market, e, "", 0) else {
            continue;
        };
        let (low, high, what) = match &market.series {
            Series::Candles { bars, .. } => {
                let b = &bars[planned.cursor.next];
                (b.low, b.high, format!("the candle at {}", format_ms(b.ts)))
            }
            Series::Ticks { ts, price } => {
                let n = planned.cursor.next;
                let before = n.saturating_sub(1);
                (
                    price[before].min(price[n]),
                    price[before].max(price[n]),
                    format!(
                        "the ticks at {} and {}",
                        format_ms(ts[before]),
                        format_ms(ts[n])
                    ),
                )
            }
        };
        let (low, high) = (inst.decimal(low), inst.decimal(high));
        let off = if price < low {
            (low - price) / low
        } else if price > high {
            (price - high) / high
        } else {
            continue;
        } * Decimal::ONE_HUNDRED;
        let (place, price, time, off) = (
            where_of(k),
            price.normalize(),
            format_ms(e.time),
            off.round_dp(2).normalize(),
        );
        let (low, high) = (low.normalize(), high.normalize());
        if off > Decimal::from(FAR_PERCENT) {
            return Err(EntriesError::FarFromMarket(Box::new(FarEntry {
                place,
                price,
                time,
                off_percent: off,
                market: what,
                low,
                high,
                far_percent: FAR_PERCENT,
            })));
        }
        warnings.push(format!(
            "{place}: entry price {price} at {time} is {off} % outside {what} ({low}–{high})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn durations_in_their_largest_exact_unit() {
        assert_eq!(duration(1_000), "1s");
        assert_eq!(duration(30_000), "30s");
        assert_eq!(duration(60_000), "1m");
        assert_eq!(duration(28 * 86_400_000), "28d");
        assert_eq!(duration(29 * 86_400_000), "29d");
        assert_eq!(duration(1_500), "1500ms");
        assert_eq!(duration(0), "0ms");
    }

    #[test]
    fn steps_below_the_interval_are_reported() {
        let p = Path::new("x.csv");
        assert_eq!(
            short_steps(p, &[0, 60_000, 120_000, 300_000], 60_000, false),
            None
        );
        let w = short_steps(
            p,
            &[1_475_798_404_000, 1_475_798_430_000, 1_475_798_431_000],
            30_000,
            false,
        )
        .unwrap();
        assert_eq!(
            w,
            "x.csv: the shortest step between candles, 1s (from 2016-10-07T00:00:30Z to \
             2016-10-07T00:00:31Z), is below the candle interval 30s (the most common step; set \
             [data] interval to give it); 2 of 3 candles are followed by the next one within the \
             interval and span only up to its open"
        );
    }

    #[test]
    fn a_tick_above_one_percent_of_the_first_price_is_named() {
        assert_eq!(coarse_tick(dec!(0.01), dec!(1), 0), None);
        let e = coarse_tick(dec!(0.01), dec!(0.00141342), 0).unwrap();
        assert!(
            e.starts_with(
                "data.tick_size 0.01 is 707.5 % of the first price 0.00141342 (at 1970-01-01T00:00:00Z)"
            ),
            "{e}"
        );
        assert!(e.contains("step by 0.00000001"), "{e}");
    }
}
