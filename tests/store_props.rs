//! Property: a position saved to the database after any step, dropped, restored from the
//! database and continued, emits exactly the events of an uninterrupted run and ends in the same
//! state; and its journal alone rebuilds that state. Random markets (with and without finer
//! detail ticks), configs (every mode), venues, policies and sides.

mod random_config;
mod random_market;
mod store_support;

use proptest::prelude::*;
use store_support::{Case, DELTA, commit, open, restore, run_all, step};
use trailstop::backtest::market::Series;
use trailstop::engine::Side;
use trailstop::scenario::{DetailBars, Venue};
use trailstop::sim::exchange::VenueModel;
use trailstop::sim::path::{Bar, Policy};
use trailstop::store::{OpenOptions, Store, journal::rebuild};

/// Trade ticks `(ts, price)` per bar.
type Ticks = Vec<Vec<(i64, i64)>>;

/// A random walk of 1-minute bars around 1000.0 (units of 0.1), and maybe trade ticks inside
/// each bar as detail.
fn market() -> impl Strategy<Value = (Vec<Bar>, Option<Ticks>)> {
    (
        prop::collection::vec((-40i64..40, 0i64..30, 0i64..30), 2..60),
        prop::option::of(prop::collection::vec(
            prop::collection::vec((0i64..DELTA, 0i64..100), 0..6),
            60,
        )),
    )
        .prop_map(|(steps, ticks)| {
            let bars: Vec<Bar> = random_market::walk(&steps, 0, DELTA);
            // Ticks at sorted offsets inside their bar, priced inside its range.
            let ticks = ticks.map(|per_bar| {
                bars.iter()
                    .zip(per_bar)
                    .map(|(b, mut t)| {
                        t.sort();
                        t.into_iter()
                            .map(|(off, f)| (b.ts + off, b.low + (b.high - b.low) * f / 99))
                            .collect()
                    })
                    .collect()
            });
            (bars, ticks)
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        random_config::config(),
        (any::<bool>(), 0i64..3000),
        0usize..5,
        market(),
        any::<bool>(),
    )
        .prop_map(
            |(long, config, (binance, latency), policy, (bars, ticks), all)| {
                let detail = ticks.map(|per_bar: Ticks| {
                    let (ts, price) = per_bar.into_iter().flatten().unzip();
                    let bars = if all {
                        DetailBars::All
                    } else {
                        DetailBars::Ambiguous
                    };
                    (Series::Ticks { ts, price }, bars)
                });
                Case {
                    side: if long { Side::Long } else { Side::Short },
                    config,
                    model: VenueModel {
                        venue: if binance {
                            Venue::Binance
                        } else {
                            Venue::Bybit
                        },
                        update_latency_ms: latency,
                    },
                    policy: Policy::ALL[policy],
                    bars,
                    detail,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn saved_restored_and_continued_equals_uninterrupted(case in case(), cut in 0.0f64..1.0) {
        let (whole, steps) = run_all(&case, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let k = 1 + ((steps.len() - 1) as f64 * cut) as usize; // steps before the restart

        // Run, committing each step, up to the cut; then everything in memory is dropped.
        {
            let mut store = Store::open(&path, OpenOptions::create()).unwrap();
            let (mut r, first) = open(&case, 1);
            commit(&mut store, std::slice::from_ref(&first));
            let mut prev = first.1;
            for _ in 1..k {
                let s = step(&case, &mut r, &prev);
                commit(&mut store, std::slice::from_ref(&s));
                prev = s.1;
            }
        }
        // Restore from the database alone and continue to the end.
        let mut store = Store::open(&path, OpenOptions { create: false, ..OpenOptions::create() }).unwrap();
        let mut prev = store.record(1).unwrap().unwrap();
        prop_assert_eq!(&prev, &steps[k - 1].1, "the stored state is the state after step {}", k);
        let mut r = restore(&prev);
        while !r.is_closed() {
            let s = step(&case, &mut r, &prev);
            commit(&mut store, std::slice::from_ref(&s));
            prev = s.1;
        }
        let events: Vec<_> = store
            .journal(1)
            .unwrap()
            .into_iter()
            .filter(|row| row.kind == trailstop::store::RowKind::Event)
            .map(|row| serde_json::from_str::<trailstop::engine::Event>(&row.payload).unwrap())
            .collect();
        let uninterrupted: Vec<_> = steps.iter().flat_map(store_support::events).collect();
        prop_assert_eq!(events, uninterrupted);
        prop_assert_eq!(r.snapshot(), whole.snapshot());
        prop_assert_eq!(format!("{:?}", r.run()), format!("{:?}", whole.run()));
        let stored = store.record(1).unwrap().unwrap();
        prop_assert_eq!(&stored, &steps.last().unwrap().1);
        prop_assert_eq!(
            rebuild(&store.journal(1).unwrap()).unwrap().with_driver(stored.driver.clone()),
            stored
        );
    }
}
