//! The unprotected window by the wall clock, for a live run's histogram.
//!
//! The journal measures a window in data time (the answers' event times, so that a replay
//! equals its backtest), and a live answer carries the time of the point that caused it: a
//! Binance replace whose create took 2 s is 0 ms there. An operator asks how long the
//! position was really bare, so a live run times each window from the commit that opened it
//! to the one that closed it. Paper keeps data time (its wall clock runs at `--speed`).

use std::collections::BTreeMap;
use std::time::Instant;

use super::names;
use super::observe::Update;
use crate::store::PositionRecord;

/// When each position's open window opened (local clock).
#[derive(Debug, Default)]
pub struct WallWindows {
    open: BTreeMap<u64, Instant>,
}

impl WallWindows {
    /// A stored position taken up again: its open window counts from now.
    pub fn restore(&mut self, record: &PositionRecord, now: Instant) {
        if record.closed().is_none() && record.runner.order.unprotected_since.is_some() {
            self.open.insert(record.id(), now);
        }
    }

    /// Rewrites the windows a committed step observed: the one open before the step lasted
    /// until `now`; any other opened and closed inside the step (0 s).
    pub fn time(&mut self, record: &PositionRecord, updates: &mut [Update], now: Instant) {
        let id = record.id();
        let mut before = self.open.remove(&id);
        for u in updates.iter_mut() {
            if let Update::Observe { name, value } = u
                && *name == names::UNPROTECTED_SECONDS
            {
                *value = before
                    .take()
                    .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
            }
        }
        if record.closed().is_some() || record.runner.order.unprotected_since.is_none() {
            return;
        }
        // Still open (not observed yet): it keeps its start; else it opened in this step.
        self.open.insert(id, before.unwrap_or(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Instrument, Position, Side, TrailingConfig};
    use crate::live::metrics::Observer;
    use crate::runner::{PositionRunner, Recorder, Silent};
    use crate::venue::{OrderRef, VenueEvent};
    use rust_decimal_macros::dec;
    use std::time::Duration;

    fn observed(u: &[Update]) -> Vec<f64> {
        u.iter()
            .filter_map(|u| match u {
                Update::Observe { value, .. } => Some(*value),
                _ => None,
            })
            .collect()
    }

    /// A first create answered 1.5 s (wall) after its commit, at the same data time: 1.5 s,
    /// not the journal's 0; a window still open keeps its start across steps.
    #[test]
    fn a_window_lasts_from_the_commit_that_opened_it_to_the_one_that_closed_it() {
        let config: TrailingConfig = toml::from_str(
            "activation_percent = \"1\"\ndistance_percent = \"1\"\ninitial_stop_percent = \"2\"",
        )
        .unwrap();
        let position = Position {
            id: 3,
            symbol: "BTCUSDT".into(),
            side: Side::Long,
            entry_price: dec!(100),
            quantity: dec!(1),
            opened_at: 0,
        };
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let mut tap = Recorder::default();
        let mut r = PositionRunner::open(
            &position,
            &inst,
            &config,
            Silent { atomic: false },
            &mut tap,
        )
        .unwrap();
        let record = |r: &PositionRunner<Silent>, tap: &Recorder| {
            PositionRecord::after_step(None, r.snapshot(), "{}".into(), &tap.journal())
        };
        let (mut obs, mut wall) = (Observer::default(), WallWindows::default());
        let t0 = Instant::now();
        let rec = record(&r, &tap);
        let mut u = obs.step(&tap.journal(), &rec);
        wall.time(&rec, &mut u, t0);
        assert_eq!(observed(&u), [] as [f64; 0]);
        // A price step in between: still open, nothing observed, the start kept.
        let mut tap = Recorder::default();
        r.on_price(10010, 0, &mut tap).unwrap();
        let rec = record(&r, &tap);
        let mut u = obs.step(&tap.journal(), &rec);
        wall.time(&rec, &mut u, t0 + Duration::from_millis(700));
        assert_eq!(observed(&u), [] as [f64; 0]);
        let mut tap = Recorder::default();
        r.on_venue_event(
            &VenueEvent::Accepted {
                order: OrderRef {
                    position: 3,
                    seq: 1,
                },
                stop: 9800,
                ts: 0,
                venue_id: None,
            },
            &mut tap,
        );
        let rec = record(&r, &tap);
        let mut u = obs.step(&tap.journal(), &rec);
        assert_eq!(observed(&u), [0.0], "the journal's data time");
        wall.time(&rec, &mut u, t0 + Duration::from_millis(1500));
        assert_eq!(observed(&u), [1.5]);
        assert!(wall.open.is_empty());
    }
}
