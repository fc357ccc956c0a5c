//! Engine events and venue answers → metric updates, from what a runner journals.
//!
//! Every step a runner commits (live or paper) is a list of journal [`Entry`]s and the record
//! after it; the updates are derived from those alone, so the metrics say what the journal
//! says. Pure: no recorder here ([`super::Metrics::apply`] applies the updates), which keeps
//! each event → metric rule testable on its own.

use std::collections::BTreeMap;

use crate::engine::{ActivationReason, Event, HoldReason, SendReason};
use crate::runner::{Entry, Input};
use crate::store::PositionRecord;
use crate::venue::{RejectReason, VenueEvent};

use super::names;

/// One change to a counter or a histogram.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Count {
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    },
    Observe {
        name: &'static str,
        value: f64,
    },
}

fn count(name: &'static str, labels: &[(&'static str, &str)]) -> Update {
    Update::Count {
        name,
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
    }
}

/// What the observer remembers of a position between its steps.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// Why the newest stop was sent (`UpdateSent`), until the venue answers it.
    pending: Option<SendReason>,
    /// The lifecycle's unprotected window at the last step (`since`, total ms).
    since: Option<i64>,
    total_ms: i64,
}

/// Turns committed steps into updates; one per run (live or paper).
#[derive(Debug, Default)]
pub struct Observer {
    seen: BTreeMap<u64, Seen>,
}

fn send_reason(r: Option<SendReason>) -> &'static str {
    match r {
        Some(SendReason::Initial) => "initial",
        Some(SendReason::Normal) => "normal",
        Some(SendReason::Emergency) => "emergency",
        // A stop sent again without a new engine decision (a replace after someone else
        // cancelled ours, a look-up after an ambiguous answer, a restart).
        None => "resend",
    }
}

impl Observer {
    /// The updates of one committed step of the position `record` is the state after.
    pub fn step(&mut self, entries: &[Entry], record: &PositionRecord) -> Vec<Update> {
        let id = record.id();
        let symbol = record.engine().position.symbol.as_str();
        let order = &record.runner.order;
        let opened = entries
            .iter()
            .any(|e| matches!(e, Entry::Input(Input::Open { .. })));
        // A position first seen mid-life (restored after a restart) starts from its stored
        // window: only what happens from now on is observed.
        let seen = self.seen.entry(id).or_insert_with(|| {
            if opened {
                Seen::default()
            } else {
                Seen {
                    pending: None,
                    since: order.unprotected_since,
                    total_ms: order.unprotected_ms,
                }
            }
        });
        let mut out = Vec::new();
        for e in entries {
            match e {
                Entry::Event(ev) => event(ev, seen, &mut out),
                Entry::Input(Input::Venue { event }) => answer(event, symbol, seen, &mut out),
                Entry::Input(_) => {}
            }
        }
        // A window that closed in this step (a stop rests again): its length, once. (Windows
        // that open and close in one step at one data time, as a simulated venue's instant
        // answers do, last 0 ms and are not seen; a live answer is always a step of its own.)
        let grew = order.unprotected_ms > seen.total_ms;
        if grew || (seen.since.is_some() && order.unprotected_since != seen.since) {
            let ms = (order.unprotected_ms - seen.total_ms).max(0);
            out.push(Update::Observe {
                name: names::UNPROTECTED_SECONDS,
                value: ms as f64 / 1000.0,
            });
        }
        seen.since = order.unprotected_since;
        seen.total_ms = order.unprotected_ms;
        if record.closed().is_some() {
            self.seen.remove(&id);
        }
        out
    }
}

fn event(ev: &Event, seen: &mut Seen, out: &mut Vec<Update>) {
    match ev {
        Event::UpdateSent { reason, .. } => seen.pending = Some(*reason),
        Event::UpdateHeld { reason, .. } => {
            let r = match reason {
                HoldReason::Interval => "interval",
                HoldReason::Improvement => "improvement",
            };
            out.push(count(names::UPDATES_HELD, &[("reason", r)]));
        }
        Event::Activated { reason, .. } => {
            let r = match reason {
                ActivationReason::Price => "price",
                ActivationReason::Time => "time",
            };
            out.push(count(names::ACTIVATIONS, &[("reason", r)]));
        }
        Event::Triggered { reason, .. } => {
            out.push(count(names::TRIGGERS, &[("reason", reason.as_str())]));
        }
        _ => {}
    }
}

/// A venue's answer to a stop send: counted once per answer, with the reason of the send.
fn answer(ev: &VenueEvent, symbol: &str, seen: &mut Seen, out: &mut Vec<Update>) {
    let result = match ev {
        VenueEvent::Accepted { .. } => "ok",
        VenueEvent::Rejected {
            reason: RejectReason::RateLimited { .. },
            ..
        } => "rate_limited",
        VenueEvent::Rejected { .. } => "rejected",
        // Looked up next: the look-up's answer counts too (with the same reason).
        VenueEvent::Ambiguous { .. } => "ambiguous",
        _ => return,
    };
    let reason = send_reason(seen.pending);
    if result != "ambiguous" {
        seen.pending = None;
    }
    out.push(count(
        names::STOP_UPDATES,
        &[("symbol", symbol), ("reason", reason), ("result", result)],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ExitReason, Instrument, Position, Side, TrailingConfig};
    use crate::runner::{PositionRunner, Recorder, Silent};
    use crate::venue::{OrderRef, Venue};
    use rust_decimal_macros::dec;

    /// How the scripted venue answers the next command.
    enum Say {
        Accept,
        Unknown,
        Nothing,
    }

    /// A venue that answers each command as the test says (at the command's time; an
    /// acceptance at the command's stop).
    struct Scripted(Vec<Say>);
    impl Venue for Scripted {
        fn atomic_amend(&self) -> bool {
            true
        }
        fn execute(&mut self, c: crate::venue::Command, ts: i64) -> Option<VenueEvent> {
            use crate::venue::Command;
            let (order, stop) = match c {
                Command::Place { order, stop } | Command::Amend { order, stop, .. } => {
                    (order, stop)
                }
                _ => return None,
            };
            match self.0.remove(0) {
                Say::Accept => Some(VenueEvent::Accepted {
                    order,
                    stop,
                    ts,
                    venue_id: None,
                }),
                Say::Unknown => Some(VenueEvent::Ambiguous { order, ts }),
                Say::Nothing => None,
            }
        }
    }

    fn config() -> TrailingConfig {
        toml::from_str(
            "activation_percent = \"1\"\ndistance_percent = \"1\"\ninitial_stop_percent = \"2\"\n\
             [rate_limit]\nmin_interval_seconds = 60\nmin_improvement_percent = \"0.5\"\n\
             emergency_percent = \"3\"",
        )
        .unwrap()
    }

    fn position() -> Position {
        Position {
            id: 7,
            symbol: "BTCUSDT".into(),
            side: Side::Long,
            entry_price: dec!(100),
            quantity: dec!(1),
            opened_at: 0,
        }
    }

    fn record<V: Venue>(r: &PositionRunner<V>, entries: &[Entry]) -> PositionRecord {
        PositionRecord::after_step(None, r.snapshot(), "{}".into(), entries)
    }

    fn accepted(seq: u32, stop: i64, ts: i64) -> Option<VenueEvent> {
        Some(VenueEvent::Accepted {
            order: OrderRef { position: 7, seq },
            stop,
            ts,
            venue_id: None,
        })
    }

    fn counts(u: &[Update]) -> Vec<String> {
        u.iter()
            .filter_map(|u| match u {
                Update::Count { name, labels } => Some(format!(
                    "{name}{{{}}}",
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )),
                Update::Observe { .. } => None,
            })
            .collect()
    }

    /// Opening with an initial stop (accepted), activation, a held update, an emergency send,
    /// a trigger: each moves its counter once, with its labels.
    #[test]
    fn each_engine_decision_moves_its_counter() {
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let venue = Scripted(vec![Say::Accept, Say::Accept, Say::Accept]);
        let mut obs = Observer::default();
        let mut tap = Recorder::default();
        let mut r = PositionRunner::open(&position(), &inst, &config(), venue, &mut tap).unwrap();
        let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
        assert_eq!(
            counts(&u),
            ["trailstop_stop_updates_total{symbol=BTCUSDT,reason=initial,result=ok}"]
        );
        // The initial stop's window opened and closed at once (0 ms, in the same step).
        assert!(!u.iter().any(|u| matches!(u, Update::Observe { .. })));

        // 102 at 60 s: activation and a normal send (interval passed).
        let mut tap = Recorder::default();
        r.on_price(10200, 60_000, &mut tap).unwrap();
        let rec = record(&r, &tap.journal());
        assert_eq!(
            counts(&obs.step(&tap.journal(), &rec)),
            [
                "trailstop_activations_total{reason=price}",
                "trailstop_stop_updates_total{symbol=BTCUSDT,reason=normal,result=ok}"
            ]
        );
        // 102.3 at 65 s: held by the interval.
        let mut tap = Recorder::default();
        r.on_price(10230, 65_000, &mut tap).unwrap();
        assert_eq!(
            counts(&obs.step(&tap.journal(), &record(&r, &tap.journal()))),
            ["trailstop_updates_held_total{reason=interval}"]
        );
        // 105.5 at 70 s: over 3 % better than the sent stop: an emergency send.
        let mut tap = Recorder::default();
        r.on_price(10550, 70_000, &mut tap).unwrap();
        assert_eq!(
            counts(&obs.step(&tap.journal(), &record(&r, &tap.journal()))),
            ["trailstop_stop_updates_total{symbol=BTCUSDT,reason=emergency,result=ok}"]
        );
        // The stop fills: a trigger with the exit reason; the position is forgotten.
        let mut tap = Recorder::default();
        r.on_venue_event(
            &VenueEvent::Triggered {
                order: OrderRef {
                    position: 7,
                    seq: 3,
                },
                ts: 80_000,
                fill: 10444,
            },
            &mut tap,
        );
        let rec = record(&r, &tap.journal());
        assert_eq!(
            counts(&obs.step(&tap.journal(), &rec)),
            [format!(
                "trailstop_triggers_total{{reason={}}}",
                ExitReason::TrailingStop.as_str()
            )]
        );
        assert!(obs.seen.is_empty());
    }

    /// A refused send counts as rejected, an ambiguous one as ambiguous and then its look-up;
    /// a rate-limited one as rate_limited.
    #[test]
    fn refused_and_unknown_answers_count_by_result() {
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let mut obs = Observer::default();
        let mut tap = Recorder::default();
        let mut r = PositionRunner::open(
            &position(),
            &inst,
            &config(),
            Scripted(vec![Say::Unknown, Say::Nothing]),
            &mut tap,
        )
        .unwrap();
        let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
        assert_eq!(
            counts(&u),
            ["trailstop_stop_updates_total{symbol=BTCUSDT,reason=initial,result=ambiguous}"]
        );
        assert!(!u.iter().any(|u| matches!(u, Update::Observe { .. })));
        // The look-up finds it resting 2.5 s later (data time): ok, and a 2.5 s window.
        let mut tap = Recorder::default();
        r.on_venue_event(&accepted(1, 9800, 2_500).unwrap(), &mut tap);
        let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
        assert_eq!(
            counts(&u),
            ["trailstop_stop_updates_total{symbol=BTCUSDT,reason=initial,result=ok}"]
        );
        assert!(u.contains(&Update::Observe {
            name: names::UNPROTECTED_SECONDS,
            value: 2.5
        }));
        // Later answers without a pending send: a rate limit, a refusal.
        for (reason, result) in [
            (
                RejectReason::RateLimited { retry_after_ms: 1 },
                "rate_limited",
            ),
            (RejectReason::Invalid { code: 10001 }, "rejected"),
        ] {
            let mut tap = Recorder::default();
            r.on_venue_event(
                &VenueEvent::Rejected {
                    order: OrderRef {
                        position: 7,
                        seq: 2,
                    },
                    ts: 3_000,
                    reason,
                },
                &mut tap,
            );
            assert_eq!(
                counts(&obs.step(&tap.journal(), &record(&r, &tap.journal()))),
                [format!(
                    "trailstop_stop_updates_total{{symbol=BTCUSDT,reason=resend,result={result}}}"
                )]
            );
        }
    }

    /// A cancel + create replace (Binance): the window from the cancel's acknowledgement to the
    /// create's is observed once, in seconds.
    #[test]
    fn a_replace_window_is_observed_once() {
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let mut obs = Observer::default();
        let mut tap = Recorder::default();
        let mut r = PositionRunner::open(
            &position(),
            &inst,
            &config(),
            Silent { atomic: false },
            &mut tap,
        )
        .unwrap();
        obs.step(&tap.journal(), &record(&r, &tap.journal()));
        let o1 = OrderRef {
            position: 7,
            seq: 1,
        };
        let o2 = OrderRef {
            position: 7,
            seq: 2,
        };
        let mut steps: Vec<Vec<Update>> = Vec::new();
        for (ev, price) in [
            (Some(accepted(1, 9800, 100).unwrap()), None),
            (None, Some((10200, 60_000))),
            (
                Some(VenueEvent::Cancelled {
                    order: o1,
                    ts: 60_040,
                }),
                None,
            ),
            (
                Some(VenueEvent::Accepted {
                    order: o2,
                    stop: 10098,
                    ts: 60_340,
                    venue_id: None,
                }),
                None,
            ),
        ] {
            let mut tap = Recorder::default();
            if let Some(ev) = ev {
                r.on_venue_event(&ev, &mut tap);
            }
            if let Some((p, ts)) = price {
                r.on_price(p, ts, &mut tap).unwrap();
            }
            steps.push(obs.step(&tap.journal(), &record(&r, &tap.journal())));
        }
        let observed = |u: &Vec<Update>| -> Vec<f64> {
            u.iter()
                .filter_map(|u| match u {
                    Update::Observe { value, .. } => Some(*value),
                    _ => None,
                })
                .collect()
        };
        let all: Vec<Vec<f64>> = steps.iter().map(observed).collect();
        assert_eq!(all, vec![vec![0.1], vec![], vec![], vec![0.3]]);
    }
}
