//! Engine events and venue answers → metric updates, from what a runner journals.
//!
//! Every step a runner commits (live or paper) is a list of journal [`Entry`]s and the record
//! after it; the updates are derived from those alone, so the metrics say what the journal
//! says. Pure: no recorder here ([`super::Metrics::apply`] applies the updates), which keeps
//! each event → metric rule testable on its own.
//!
//! The unprotected gauge is set here too, at each commit: a step is committed before its
//! command leaves (write-ahead), so a scrape during a slow create already sees the window.

use std::collections::BTreeMap;

use crate::engine::{ActivationReason, Event, HoldReason, SendReason};
use crate::runner::{Entry, Input};
use crate::store::PositionRecord;
use crate::venue::{Phase, RejectReason, StopOrderSnapshot, VenueEvent};

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
    /// A gauge without labels.
    Set {
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
    /// The stop of ours that stood at the last step (resting, or still resting while its
    /// amend or cancel is in flight), by its sequence number.
    standing: Option<u32>,
}

impl Seen {
    /// What a stored lifecycle says (a position first seen mid-life: after a restart).
    fn of(order: &StopOrderSnapshot) -> Seen {
        Seen {
            pending: None,
            since: order.unprotected_since,
            total_ms: order.unprotected_ms,
            standing: standing(&order.phase),
        }
    }
}

/// The stop that rests in `phase`, if one does.
fn standing(phase: &Phase) -> Option<u32> {
    match phase {
        Phase::Resting { order }
        | Phase::Amending { from: order, .. }
        | Phase::Cancelling { from: order, .. }
        | Phase::Unknown {
            prior: Some(order), ..
        } => Some(order.seq),
        _ => None,
    }
}

/// The unprotected windows that closed during one step's entries, a window open when the
/// step began included. The lifecycle's total says how long they lasted, but not how many
/// there were: a window that opens and closes inside one step at one data time (a simulated
/// venue's instant answers) leaves no trace in it. So they are counted from the entries: a
/// window opens when a stop is sent and none stands, or when the standing one is cancelled;
/// it closes when a stop is accepted, when the send is refused with nothing standing, or
/// when the position closes.
fn windows_closed(entries: &[Entry], seen: &Seen) -> usize {
    let mut open = seen.since.is_some();
    let mut standing = seen.standing;
    let mut closed = 0;
    let mut close = |open: &mut bool| {
        if std::mem::take(open) {
            closed += 1;
        }
    };
    for e in entries {
        match e {
            Entry::Event(Event::UpdateSent { .. }) if standing.is_none() => open = true,
            Entry::Input(Input::Venue { event }) => match event {
                VenueEvent::Cancelled { order, .. } if standing == Some(order.seq) => {
                    standing = None;
                    open = true;
                }
                VenueEvent::Accepted { order, .. } => {
                    standing = Some(order.seq);
                    close(&mut open);
                }
                VenueEvent::Rejected { .. } if standing.is_none() => close(&mut open),
                VenueEvent::Triggered { .. } | VenueEvent::PositionClosed { .. } => {
                    standing = None;
                    close(&mut open);
                }
                _ => {}
            },
            Entry::Input(Input::Close { .. }) => close(&mut open),
            _ => {}
        }
    }
    closed
}

/// Turns committed steps into updates; one per run (live or paper).
#[derive(Debug, Default)]
pub struct Observer {
    seen: BTreeMap<u64, Seen>,
}

impl Observer {
    /// A stored open position (a restart): its window, if one is open, counts from now.
    /// Returns the unprotected gauge's new value.
    pub fn restore(&mut self, record: &PositionRecord) -> Update {
        if record.closed().is_none() {
            self.seen
                .insert(record.id(), Seen::of(&record.runner.order));
        }
        self.unprotected()
    }

    /// Open positions with a stop sent and none resting (a replace window, a first create,
    /// a cancelled stop), as the gauge.
    fn unprotected(&self) -> Update {
        let n = self.seen.values().filter(|s| s.since.is_some()).count();
        Update::Set {
            name: names::UNPROTECTED,
            value: n as f64,
        }
    }
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
                Seen::of(order)
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
        // Each window that closed in this step, once: the first with the time the lifecycle
        // added, any other with 0 (they opened and closed at one data time). The lifecycle's
        // total is the length; the entries only count.
        let grew = order.unprotected_ms > seen.total_ms;
        let ended = grew || (seen.since.is_some() && order.unprotected_since != seen.since);
        let windows = windows_closed(entries, seen).max(usize::from(ended));
        let ms = (order.unprotected_ms - seen.total_ms).max(0);
        for i in 0..windows {
            out.push(Update::Observe {
                name: names::UNPROTECTED_SECONDS,
                value: if i == 0 { ms as f64 / 1000.0 } else { 0.0 },
            });
        }
        seen.since = order.unprotected_since;
        seen.total_ms = order.unprotected_ms;
        seen.standing = standing(&order.phase);
        if record.closed().is_some() {
            self.seen.remove(&id);
        }
        out.push(self.unprotected());
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
                _ => None,
            })
            .collect()
    }

    fn observed(u: &[Update]) -> Vec<f64> {
        u.iter()
            .filter_map(|u| match u {
                Update::Observe { value, .. } => Some(*value),
                _ => None,
            })
            .collect()
    }

    fn unprotected(u: &[Update]) -> Option<f64> {
        u.iter().find_map(|u| match u {
            Update::Set { name, value } if *name == names::UNPROTECTED => Some(*value),
            _ => None,
        })
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
        // The initial stop's window opened and closed at once: observed, 0 ms long.
        assert_eq!(observed(&u), [0.0]);
        assert_eq!(unprotected(&u), Some(0.0));

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
        // Still open: not observed yet, and the position counts as unprotected.
        assert_eq!(observed(&u), [] as [f64; 0]);
        assert_eq!(unprotected(&u), Some(1.0));
        // The look-up finds it resting 2.5 s later (data time): ok, and a 2.5 s window.
        let mut tap = Recorder::default();
        r.on_venue_event(&accepted(1, 9800, 2_500).unwrap(), &mut tap);
        let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
        assert_eq!(
            counts(&u),
            ["trailstop_stop_updates_total{symbol=BTCUSDT,reason=initial,result=ok}"]
        );
        assert_eq!(observed(&u), [2.5]);
        assert_eq!(unprotected(&u), Some(0.0));
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
        let all: Vec<Vec<f64>> = steps.iter().map(|u| observed(u)).collect();
        assert_eq!(all, vec![vec![0.1], vec![], vec![], vec![0.3]]);
        // Unprotected from the cancel's acknowledgement to the create's, not before.
        let gauge: Vec<Option<f64>> = steps.iter().map(|u| unprotected(u)).collect();
        assert_eq!(gauge, [Some(0.0), Some(0.0), Some(1.0), Some(0.0)]);
    }

    /// A cancel + create venue that answers at once, as a simulated one does.
    struct AtOnce;
    impl Venue for AtOnce {
        fn atomic_amend(&self) -> bool {
            false
        }
        fn execute(&mut self, c: crate::venue::Command, ts: i64) -> Option<VenueEvent> {
            use crate::venue::Command;
            match c {
                Command::Place { order, stop } => Some(VenueEvent::Accepted {
                    order,
                    stop,
                    ts,
                    venue_id: None,
                }),
                Command::Cancel { order } => Some(VenueEvent::Cancelled { order, ts }),
                _ => None,
            }
        }
    }

    /// Windows that open and close inside one step at one data time (the first create, each
    /// replace) are observed, 0 s each: the count is the windows, the sum their time; a
    /// held update opens none.
    #[test]
    fn windows_of_0_ms_inside_one_step_are_observed() {
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let mut obs = Observer::default();
        let mut tap = Recorder::default();
        let mut r = PositionRunner::open(&position(), &inst, &config(), AtOnce, &mut tap).unwrap();
        let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
        assert_eq!(observed(&u), [0.0]);
        let mut windows = Vec::new();
        for (price, ts) in [(10200, 60_000), (10230, 65_000), (10550, 70_000)] {
            let mut tap = Recorder::default();
            r.on_price(price, ts, &mut tap).unwrap();
            let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
            assert_eq!(unprotected(&u), Some(0.0));
            windows.push(observed(&u));
        }
        // The normal send's replace, nothing for the held one, the emergency send's replace.
        assert_eq!(windows, [vec![0.0], vec![], vec![0.0]]);
        assert_eq!(r.unprotected_ms(), 0);
    }

    /// A stored position restored with its window open counts as unprotected at once, and
    /// its window is observed when it closes (from the stored start).
    #[test]
    fn a_restored_open_window_counts_until_it_closes() {
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let mut tap = Recorder::default();
        let mut r = PositionRunner::open(
            &position(),
            &inst,
            &config(),
            Silent { atomic: false },
            &mut tap,
        )
        .unwrap();
        let stored = record(&r, &tap.journal());
        let mut obs = Observer::default();
        assert_eq!(
            obs.restore(&stored),
            Update::Set {
                name: names::UNPROTECTED,
                value: 1.0
            }
        );
        let mut tap = Recorder::default();
        r.on_venue_event(&accepted(1, 9800, 400).unwrap(), &mut tap);
        let u = obs.step(&tap.journal(), &record(&r, &tap.journal()));
        assert_eq!(observed(&u), [0.4]);
        assert_eq!(unprotected(&u), Some(0.0));
    }
}
