//! Random trailing configs for property tests: every mode on or off, random rate limits.

use proptest::prelude::*;
use rust_decimal::Decimal;
use trailstop::engine::{Breakeven, Momentum, RateLimit, TimeActivation, TrailingConfig};

fn pct(hundredths: i64) -> Decimal {
    Decimal::new(hundredths, 2)
}

pub fn config() -> impl Strategy<Value = TrailingConfig> {
    (
        (0i64..200, 5i64..200, proptest::option::of(20i64..400)),
        (0u64..180, 0i64..50, 10i64..300),
        proptest::option::of((0i64..100, -20i64..20)),
        proptest::option::of((60u64..7200, 0i64..100)),
        proptest::option::of((60u64..900, 10i64..150, 20i64..100)),
    )
        .prop_map(|((act, dist, init), (iv, imp, em), be, time, mom)| {
            let mut c = TrailingConfig::with_distance(pct(dist));
            c.activation_percent = pct(act);
            c.initial_stop_percent = init.map(pct);
            c.rate_limit = RateLimit {
                min_interval_seconds: iv,
                min_improvement_percent: pct(imp),
                emergency_percent: pct(em),
            };
            c.breakeven = be.map(|(t, o)| Breakeven {
                trigger_percent: pct(t),
                offset_percent: pct(o),
            });
            c.time_activation = time.map(|(s, m)| TimeActivation {
                after_seconds: s,
                min_profit_percent: pct(m),
            });
            c.momentum = mom.map(|(w, t, f)| Momentum {
                window_seconds: w,
                threshold_percent: pct(t),
                distance_factor: pct(f),
            });
            c
        })
}
