//! One position against the simulated exchange (DESIGN §2.1 step 1 and §3): the runner
//! ([`PositionRunner`]) with the simulated venue ([`SimVenue`]), point by point.
//!
//! Each point first reaches the venue (a create in flight settles, the resting stop may
//! fill), then the engine; the engine's intents go back to the venue through the position's
//! stop order lifecycle. Here, too, are the backtest's quiet-run bounds and the serialisable
//! snapshot of a simulated position.

use crate::engine::{
    EngineError, EngineSnapshot, ExitReason, Instrument, Position, StopOrigin, TrailingConfig,
    TrailingStop, fixed,
};
use crate::runner::{PositionRunner, Tap};
use crate::venue::{OrderRef, Phase, Rest, StopOrder, StopOrderSnapshot};
use serde::{Deserialize, Serialize};

use super::path::Point;
pub use super::venue::{SimVenue, VenueModel};
pub use crate::runner::Close;

/// A position, its trailing stop and its resting order on the simulated exchange.
pub type SimPosition = PositionRunner<SimVenue>;

/// Where a run of points is quiet for a position (see [`SimPosition::quiet_envelope`]):
/// every price within `[low_min, high_max]` (real units) and every time in
/// `[after_ts, until_ts)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietEnvelope {
    pub high_max: i64,
    pub low_min: i64,
    pub until_ts: i64,
    pub after_ts: i64,
    /// Each point holds back a pending update (an `UpdateHeld` event when events are kept).
    pub held: bool,
}

impl QuietEnvelope {
    /// Whether points with these extremes and first/last times lie inside; with `events` a
    /// point that holds an update back is not quiet (it has an event to emit).
    #[inline]
    pub fn admits(&self, high: i64, low: i64, first_ts: i64, last_ts: i64, events: bool) -> bool {
        !(events && self.held)
            && high <= self.high_max
            && low >= self.low_min
            && first_ts >= self.after_ts
            && last_ts < self.until_ts
    }
}

/// A create in flight, as stored (the stop, where it came from, when it rests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    stop: i64,
    origin: StopOrigin,
    at: i64,
}

/// What the ambiguity count compares after a bar run both ways (DESIGN §4): where the
/// position exited, else its desired and sent stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarOutcome {
    /// It exited at this fill (before slippage): the trade's result, whatever the reason.
    Exited(i64),
    Open {
        desired: Option<i64>,
        sent: Option<i64>,
    },
}

impl PositionRunner<SimVenue> {
    /// Opens the position on the simulated venue: the entry is its first price point (no
    /// exchange check, no slippage).
    pub fn open_sim<O: Tap>(
        position: &Position,
        instrument: &Instrument,
        config: &TrailingConfig,
        model: VenueModel,
        out: &mut O,
    ) -> Result<SimPosition, EngineError> {
        let entry =
            instrument
                .units(position.entry_price)
                .ok_or(EngineError::NotRepresentable {
                    what: "entry_price",
                    value: position.entry_price,
                    decimals: instrument.price_decimals,
                })?;
        let venue = SimVenue::new(model, position.side.sign(), entry);
        PositionRunner::open(position, instrument, config, venue, out)
    }

    /// Feeds one price point (§2.1): the venue first (a create settles, the resting stop may
    /// fill: then nothing else happens at this point), then the engine. Returns the close if
    /// the position closed at it.
    #[inline(always)]
    pub fn on_point<O: Tap>(
        &mut self,
        pt: Point,
        out: &mut O,
    ) -> Result<Option<Close>, EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        if let Some(ev) = self.venue.settle(pt)
            && let Some(c) = self.on_venue_event(&ev, out)
        {
            return Ok(Some(c));
        }
        if let Some(ev) = self.venue.check(pt) {
            return Ok(self.on_venue_event(&ev, out));
        }
        self.venue.see(pt.price);
        self.on_price(pt.price, pt.ts, out)
    }

    /// Closes at the end of the data at `price` and `ts` (no slippage).
    pub fn end_of_data<O: Tap>(&mut self, price: i64, ts: i64, out: &mut O) -> Close {
        self.venue.pending = None;
        self.venue.resting = None;
        self.close(ExitReason::EndOfData, price, ts, out)
    }

    /// Everything needed to rebuild this position exactly (engine and exchange side).
    pub fn sim_snapshot(&self) -> SimSnapshot {
        let (resting, pending) = match self.order.phase() {
            Phase::Resting { order } => (Some((order.stop, order.origin)), None),
            Phase::Placing { order, next: None } => (
                None,
                Some(Pending {
                    stop: order.stop,
                    origin: order.origin,
                    at: self.venue.pending.map_or(i64::MIN, |p| p.at),
                }),
            ),
            Phase::NoStop | Phase::Closed => (None, None),
            other => unreachable!("the simulated venue answers at once: {other:?}"),
        };
        SimSnapshot {
            engine: self.engine.snapshot(),
            model: self.venue.model,
            price_decimals: self.engine.instrument().price_decimals,
            resting,
            pending,
            unprotected_since: self.order.unprotected_since(),
            unprotected_ms: self.order.unprotected_ms(),
            last_price: self.venue.last_price,
            best: self.best,
            worst: self.worst,
            closed: self.closed,
        }
    }

    /// Rebuilds a position from [`SimPosition::sim_snapshot`].
    pub fn restore_sim(snap: &SimSnapshot) -> Result<SimPosition, EngineError> {
        let engine = TrailingStop::restore(&snap.engine)?;
        let inst = engine.instrument();
        let position = &snap.engine.position;
        let entry = fixed::to_units(position.entry_price, inst.price_decimals).ok_or(
            EngineError::NotRepresentable {
                what: "entry_price",
                value: position.entry_price,
                decimals: inst.price_decimals,
            },
        )?;
        let sign = position.side.sign();
        // The latest order is always the latest send's (one order per send).
        let seq = snap.engine.counters.stop_updates;
        let order = OrderRef {
            position: position.id,
            seq,
        };
        let rest = |stop, origin| Rest { seq, stop, origin };
        let phase = match (snap.closed, snap.resting, snap.pending) {
            (Some(_), _, _) => Phase::Closed,
            (None, _, Some(p)) => Phase::Placing {
                order: rest(p.stop, p.origin),
                next: None,
            },
            (None, Some((stop, origin)), None) => Phase::Resting {
                order: rest(stop, origin),
            },
            (None, None, None) => Phase::NoStop,
        };
        let venue = SimVenue::with_state(
            snap.model,
            sign,
            snap.resting.map(|(stop, _)| (order, stop)),
            snap.pending.map(|p| super::venue::InFlight {
                order,
                stop: p.stop,
                at: p.at,
            }),
            snap.last_price,
        );
        let lifecycle = StopOrder::restore(&StopOrderSnapshot {
            position: position.id,
            atomic: crate::venue::Venue::atomic_amend(&venue),
            phase,
            unprotected_since: snap.unprotected_since,
            unprotected_ms: snap.unprotected_ms,
            // The simulated venue's windows never overlap one counted (each acknowledgement
            // comes at its own point), so the end of the last one is not needed here.
            counted_until: None,
        });
        Ok(PositionRunner {
            engine,
            order: lifecycle,
            venue,
            sign,
            entry,
            best: snap.best,
            worst: snap.worst,
            closed: snap.closed,
        })
    }

    /// The stop resting on the exchange now, in units.
    pub fn resting_stop(&self) -> Option<i64> {
        self.venue.resting_stop()
    }

    /// Real-unit bounds within which a run of points can neither fill the resting stop nor
    /// change the engine's state, desired or sent stop, whatever their order
    /// ([`TrailingStop::quiet_bounds`]): `None` when a create is in flight or the engine says
    /// every point matters.
    #[inline]
    pub fn quiet_envelope(&self) -> Option<QuietEnvelope> {
        if self.closed.is_some() || self.venue.has_pending() {
            return None;
        }
        // Mirrored: the worst price must stay above the resting stop.
        let floor = self
            .venue
            .resting_stop()
            .map_or(i64::MIN, |r| self.sign * r + 1);
        let b = self.engine.quiet_bounds(floor)?;
        // `-i64::MIN` overflows; no price is that low anyway.
        let worst_min = b.worst_min.max(i64::MIN + 1);
        let (high_max, low_min) = if self.sign > 0 {
            (b.best_max, worst_min)
        } else {
            (-worst_min, -b.best_max)
        };
        Some(QuietEnvelope {
            high_max,
            low_min,
            until_ts: b.until_ts,
            after_ts: self.engine.last_ts(),
            held: b.held,
        })
    }

    /// Takes a run of points inside [`SimPosition::quiet_envelope`] at once: `high`/`low` are
    /// their extremes, `last` the last point, `tail` and `points` as in
    /// [`TrailingStop::absorb_within`].
    #[inline]
    pub fn absorb_run(
        &mut self,
        high: i64,
        low: i64,
        last: Point,
        tail: impl Iterator<Item = (i64, i64)>,
        points: u32,
    ) {
        let (best, worst) = if self.sign > 0 {
            (high, low)
        } else {
            (-low, -high)
        };
        self.best = self.best.max(best);
        self.worst = self.worst.min(worst);
        self.venue.see(last.price);
        self.engine.absorb_within(best, last.ts, tail, points);
    }

    /// Takes a bar's points at once when none of them can fill the resting stop or change the
    /// engine's stops; false (nothing changed) otherwise. `events`: whether the caller keeps
    /// events (then points that would emit one are not taken at once).
    #[inline]
    pub fn absorb_quiet(&mut self, points: &[Point], events: bool) -> bool {
        let (Some(first), Some(&last)) = (points.first(), points.last()) else {
            return true;
        };
        let Some(env) = self.quiet_envelope() else {
            return false;
        };
        let (mut high, mut low) = (i64::MIN, i64::MAX);
        for pt in points {
            high = high.max(pt.price);
            low = low.min(pt.price);
        }
        if !env.admits(high, low, first.ts, last.ts, events) {
            return false;
        }
        self.absorb_run(
            high,
            low,
            last,
            points.iter().map(|p| (p.ts, p.price)),
            points.len() as u32,
        );
        true
    }

    /// True when prices within `[low, high]` can neither fill the resting stop nor change the
    /// engine's stops, whatever their order (see [`TrailingStop::is_quiet_within`]).
    #[inline]
    pub fn is_quiet_within(&self, low: i64, high: i64) -> bool {
        let worst = if self.sign > 0 { low } else { -high };
        !self.venue.has_pending()
            && self.closed.is_none()
            && self
                .venue
                .resting_stop()
                .is_some_and(|r| worst > self.sign * r)
            && self.engine.is_quiet_within(low, high)
    }

    /// What distinguishes two runs of the same bar for the ambiguity count (DESIGN §4): the
    /// exit's fill price, or the desired and the sent stop while open.
    pub fn outcome(&self) -> BarOutcome {
        match self.closed {
            Some(c) => BarOutcome::Exited(c.fill),
            None => BarOutcome::Open {
                desired: self.engine.desired_stop_units(),
                sent: self.engine.sent_stop_units(),
            },
        }
    }
}

/// A serialisable copy of a [`SimPosition`]. Exchange-side prices are integer units at
/// `price_decimals` (the engine part holds exact decimals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSnapshot {
    pub engine: EngineSnapshot,
    pub model: VenueModel,
    pub price_decimals: u32,
    pub resting: Option<(i64, StopOrigin)>,
    pub pending: Option<Pending>,
    pub unprotected_since: Option<i64>,
    pub unprotected_ms: i64,
    pub last_price: i64,
    pub best: i64,
    pub worst: i64,
    pub closed: Option<Close>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Side;
    use crate::sim::venue::VenueKind as Venue;
    use rust_decimal_macros::dec;

    /// A run interrupted by snapshot + restore gives the same events and result as one
    /// uninterrupted run.
    #[test]
    fn snapshot_restore_continues_identically() {
        let mut config = TrailingConfig::with_distance(dec!(1));
        config.activation_percent = dec!(0.5);
        config.initial_stop_percent = Some(dec!(2));
        config.rate_limit.min_interval_seconds = 30;
        config.momentum = Some(crate::engine::Momentum {
            window_seconds: 120,
            threshold_percent: dec!(0.5),
            distance_factor: dec!(0.5),
        });
        let inst = Instrument::with_price_decimals(dec!(0.1), 1);
        let model = VenueModel {
            venue: Venue::Binance,
            update_latency_ms: 1500,
        };
        for side in [Side::Long, Side::Short] {
            let pos = Position::new(1, "X", side, dec!(100), 0);
            let s = side.sign();
            let prices: Vec<i64> = [
                1000, 1004, 1010, 1012, 1020, 1031, 1025, 1040, 1038, 1029, 1010, 990,
            ]
            .iter()
            .map(|p| 1000 + s * (p - 1000))
            .collect();
            let point = |i: usize| Point {
                ts: (i as i64 + 1) * 1000,
                price: prices[i],
                gap: i.is_multiple_of(3),
            };
            let mut ev_a = Vec::new();
            let mut a = SimPosition::open_sim(&pos, &inst, &config, model, &mut ev_a).unwrap();
            for i in 0..prices.len() {
                if a.on_point(point(i), &mut ev_a).unwrap().is_some() {
                    break;
                }
            }
            for cut in 1..prices.len() {
                let mut ev_b = Vec::new();
                let mut b = SimPosition::open_sim(&pos, &inst, &config, model, &mut ev_b).unwrap();
                let mut done = false;
                for i in 0..cut {
                    if b.on_point(point(i), &mut ev_b).unwrap().is_some() {
                        done = true;
                        break;
                    }
                }
                let json = serde_json::to_string(&b.sim_snapshot()).unwrap();
                let mut b =
                    SimPosition::restore_sim(&serde_json::from_str(&json).unwrap()).unwrap();
                if !done {
                    for i in cut..prices.len() {
                        if b.on_point(point(i), &mut ev_b).unwrap().is_some() {
                            break;
                        }
                    }
                }
                assert_eq!(ev_a, ev_b, "{side:?} cut at {cut}");
                assert_eq!(a.sim_snapshot(), b.sim_snapshot(), "{side:?} cut at {cut}");
            }
            assert!(a.closed().is_some());
        }
    }

    /// The quiet-bar fast path changes nothing observable: on a long random walk with every
    /// mode on, feeding whole quiet bars through `absorb_quiet` gives the same events and the
    /// same final state as feeding every point.
    #[test]
    fn absorbing_quiet_bars_equals_point_by_point() {
        let mut config = TrailingConfig::with_distance(dec!(0.5));
        config.activation_percent = dec!(0.3);
        config.initial_stop_percent = Some(dec!(2));
        config.breakeven = Some(crate::engine::Breakeven {
            trigger_percent: dec!(0.2),
            offset_percent: dec!(0.05),
        });
        config.time_activation = Some(crate::engine::TimeActivation {
            after_seconds: 1800,
            min_profit_percent: dec!(0.1),
        });
        config.momentum = Some(crate::engine::Momentum {
            window_seconds: 300,
            threshold_percent: dec!(0.4),
            distance_factor: dec!(0.5),
        });
        let inst = Instrument::with_price_decimals(dec!(0.1), 1);
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i64 % 301 - 150
        };
        let mut price = 300_000i64;
        let bars: Vec<crate::sim::path::Bar> = (0..20_000)
            .map(|i| {
                let open = price;
                let (a, b) = (open + rnd(), open + rnd());
                price = open + rnd();
                crate::sim::path::Bar {
                    ts: i * 60_000,
                    open,
                    high: open.max(a).max(b).max(price),
                    low: open.min(a).min(b).min(price),
                    close: price,
                }
            })
            .collect();
        let (mut quiet, mut positions) = (0, 0);
        let mut plain = TrailingConfig::with_distance(dec!(0.5));
        plain.activation_percent = dec!(0.1);
        plain.rate_limit.min_interval_seconds = 30;
        // Without events, points that only hold an update back are taken at once too.
        for (venue, config, events) in [
            (Venue::Bybit, &config, true),
            (Venue::Binance, &config, true),
            (Venue::Bybit, &plain, true),
            (Venue::Binance, &plain, true),
            (Venue::Bybit, &config, false),
            (Venue::Binance, &plain, false),
        ] {
            let model = VenueModel {
                venue,
                update_latency_ms: 300,
            };
            let mut start = 0;
            while start < bars.len() {
                positions += 1;
                let side = if positions % 2 == 0 {
                    Side::Short
                } else {
                    Side::Long
                };
                let b0 = &bars[start];
                let pos = Position::new(1, "X", side, inst.decimal(b0.open), b0.ts);
                let mut ea = Vec::new();
                let mut eb = Vec::new();
                let mut a = SimPosition::open_sim(&pos, &inst, config, model, &mut ea).unwrap();
                let mut b = SimPosition::open_sim(&pos, &inst, config, model, &mut eb).unwrap();
                let mut end = bars.len();
                for (i, bar) in bars.iter().enumerate().skip(start) {
                    let pts = crate::sim::path::bar_points(bar, 60_000, side == Side::Long);
                    let from = usize::from(i == start);
                    let mut closed = false;
                    for p in &pts[from..] {
                        if a.on_point(*p, &mut ea).unwrap().is_some() {
                            closed = true;
                            break;
                        }
                    }
                    if from == 0 && b.absorb_quiet(&pts, events) {
                        quiet += 1;
                    } else {
                        for p in &pts[from..] {
                            if b.on_point(*p, &mut eb).unwrap().is_some() {
                                break;
                            }
                        }
                    }
                    assert_eq!(a.sim_snapshot(), b.sim_snapshot(), "bar {i}");
                    if closed {
                        end = i + 1;
                        break;
                    }
                }
                if events {
                    assert_eq!(ea, eb);
                }
                start = end;
            }
        }
        assert!(positions > 20, "{positions}");
        assert!(quiet > 1000, "the fast path was hardly taken: {quiet}");
    }
}
