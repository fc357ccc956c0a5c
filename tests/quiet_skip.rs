//! The backtest passes runs of quiet bars at once (`Replay::skip_quiet` over the block index
//! of `backtest::skip`). That must change nothing observable: on random candle series (with
//! missing candles and candles shorter than the interval), random configs (every mode on or off), both venues, every policy, with
//! and without the ambiguity count, with and without events, `run_positions` gives exactly the
//! events and numbers (the held-update count included) of a replay that steps every bar.

mod random_config;

use proptest::prelude::*;
use rust_decimal::Decimal;
use trailstop::backtest::market::{Market, Series};
use trailstop::backtest::replay::{BarRules, Replay};
use trailstop::backtest::run::{
    PositionRun, RunOptions, RunSettings, plan_positions, run_positions,
};
use trailstop::engine::{Instrument, Side};
use trailstop::scenario::Venue;
use trailstop::sim::entries::EntrySpec;
use trailstop::sim::exchange::VenueModel;
use trailstop::sim::path::{Bar, Policy, bar_span};

const DELTA: i64 = 60_000;

/// A random walk on a 0.1 tick from `base` units with wicks and, now and then, missing
/// candles or a candle that opens before the interval is over. A low base makes the percentage thresholds land on exact prices often.
fn bars(seed: u64, n: usize, vol: i64, base: i64) -> Vec<Bar> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut p, mut ts) = (base, 0i64);
    (0..n)
        .map(|_| {
            let r = next();
            ts += match r % 50 {
                0 => DELTA * (1 + (r >> 8) as i64 % 30),
                // A step shorter than the interval (sparse 1s candles, calendar months): the
                // candle spans only up to the next open, down to 1 ms.
                1..=3 => 1 + (r >> 8) as i64 % (DELTA - 1),
                _ => DELTA,
            };
            let open = p;
            p = (p + (r >> 16) as i64 % (2 * vol + 1) - vol).max(base / 4);
            let (w1, w2) = (
                (r >> 32) as i64 % (vol / 2 + 1),
                (r >> 48) as i64 % (vol / 2 + 1),
            );
            Bar {
                ts,
                open,
                high: open.max(p) + w1,
                low: (open.min(p) - w2).max(1),
                close: p,
            }
        })
        .collect()
}

/// Every bar stepped one by one, as the paper runner does.
fn stepped(
    market: &Market,
    entries: &[EntrySpec],
    settings: &RunSettings,
    opts: RunOptions,
) -> Vec<PositionRun> {
    let Series::Candles { bars, delta_ms } = &market.series else {
        unreachable!()
    };
    let last = bars.last().unwrap();
    let rules = BarRules::of(opts, false);
    plan_positions(market, entries, &settings.symbol)
        .unwrap()
        .iter()
        .map(|planned| {
            let mut events = Vec::new();
            let mut r = Replay::open(
                &planned.position,
                &market.instrument,
                &settings.trailing,
                settings.model,
                rules,
                planned.cursor,
                &mut events,
            )
            .unwrap();
            while !r.is_closed() && r.cursor.next < bars.len() {
                let bar = bars[r.cursor.next];
                let span = bar_span(bars, r.cursor.next, *delta_ms);
                r.step_bar(&bar, span, |_, _, _| {}, &mut events).unwrap();
            }
            if !r.is_closed() {
                r.end_of_data(last.close, last.ts + delta_ms - 1, &mut events);
            }
            let mut run = r.run().unwrap();
            run.events = events;
            run
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn skipping_quiet_bars_changes_nothing(
        seed in any::<u64>(),
        (vol, base) in prop_oneof![(1i64..40).prop_map(|v| (v, 10_000)), (1i64..4).prop_map(|v| (v, 200))],
        config in random_config::config(),
        binance in any::<bool>(),
        latency in 0i64..3_000,
        policy in 0usize..5,
        ambiguity in any::<bool>(),
        every in 30usize..400,
        priced in any::<bool>(),
        events in any::<bool>(),
    ) {
        let bars = bars(seed, 3_000, vol, base);
        let entries: Vec<EntrySpec> = bars
            .iter()
            .step_by(every)
            .enumerate()
            .map(|(k, b)| EntrySpec {
                // A priced entry opens inside its bar: the replay starts on a partial bar.
                time: b.ts + if priced { DELTA / 2 } else { 0 },
                side: if k % 2 == 0 { Side::Long } else { Side::Short },
                price: priced.then(|| Decimal::new(b.close, 1)),
                quantity: None,
            })
            .collect();
        let market = Market::new(
            Instrument::with_price_decimals(Decimal::new(1, 1), 1),
            Series::Candles { bars, delta_ms: DELTA },
            None,
        );
        let settings = RunSettings {
            symbol: "X".into(),
            trailing: config,
            model: VenueModel {
                venue: if binance { Venue::Binance } else { Venue::Bybit },
                update_latency_ms: latency,
            },
            taker_fee: Decimal::ZERO,
            slippage_bps: Decimal::ZERO,
        };
        let opts = RunOptions {
            policy: Policy::ALL[policy],
            events,
            ambiguity,
            detail: None,
        };
        let fast = run_positions(&market, &entries, &settings, opts, |_| {}).unwrap();
        let mut slow = stepped(&market, &entries, &settings, opts);
        if !events {
            // Without events, runs of held updates are skipped too and only counted.
            slow.iter_mut().for_each(|r| r.events.clear());
        }
        prop_assert!(!fast.is_empty());
        prop_assert_eq!(format!("{fast:#?}"), format!("{slow:#?}"));
    }
}
