//! A position's stop order on a venue, from the first place to the close (`LIVE.md` §1):
//! no stop → placing → resting → amending (an atomic venue) or cancelling, then creating (a
//! cancel + create venue) → closed; *unknown* after an ambiguous outcome, until a query
//! answers. It turns engine intents into venue commands and venue events into what the
//! engine must be told, and measures the unprotected time: from a cancel's acknowledgement
//! (or a first create's send) to the create's acknowledgement, the union of the windows (a
//! live venue may stamp an acknowledgement later than the next command, DESIGN §3), cut at
//! the close.

use serde::{Deserialize, Serialize};

use crate::engine::{Intent, StopOrigin};

use super::{Command, OrderRef, RejectReason, VenueEvent};

/// A stop order of the lifecycle's position: which (the send's number), where (units, real
/// sign) and where its price came from. Small on purpose: the simulator copies it per bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rest {
    pub seq: u32,
    pub stop: i64,
    pub origin: StopOrigin,
}

/// Where a position's stop order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// No stop of ours rests and none is on its way.
    NoStop,
    /// A create is in flight; nothing rests. `next` is a newer stop to send once it is
    /// answered (an atomic venue queues; a cancel + create venue cancels the create instead).
    Placing { order: Rest, next: Option<Rest> },
    /// The stop rests on the venue.
    Resting { order: Rest },
    /// An amend to `to` is in flight; `from` still rests. `next` is queued as above.
    Amending {
        from: Rest,
        to: Rest,
        next: Option<Rest>,
    },
    /// The cancel of `from` (resting, or a create in flight) is in flight; `to` is created once
    /// it is acknowledged. Nothing may rest meanwhile.
    Cancelling { from: Rest, to: Rest },
    /// The outcome of the command on `order` is unknown; `prior` rested before it. Nothing is
    /// sent until a query answers; `next` is a newer stop to send then (as above), so a stop
    /// wanted meanwhile is never lost.
    Unknown {
        order: Rest,
        prior: Option<Rest>,
        // Absent in lifecycles stored before it existed.
        #[serde(default)]
        next: Option<Rest>,
    },
    /// A close at market is in flight.
    Closing,
    /// The position is closed.
    Closed,
}

/// What the engine must be told after a venue event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineNews {
    /// The stop rests at `stop` (`on_stop_confirmed`).
    Confirmed { stop: i64 },
    /// The venue refused `stop` as at or through `market` (`on_stop_rejected`: exit now).
    WouldTrigger { stop: i64, market: i64 },
    /// The stop filled: the position closed at `fill`, the exit reason is `origin`'s.
    Filled { fill: i64, origin: StopOrigin },
    /// The position closed at `fill`: by our close at market (`by_us`), or by someone else.
    Closed { fill: i64, by_us: bool },
    /// The venue refused a command for a reason other than "would trigger": nothing for the
    /// engine (a live driver retries or alerts; the simulated venue never refuses so).
    Refused(RejectReason),
}

/// The lifecycle's answer to an intent or an event: at most one command to send now and at
/// most one piece of news for the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reaction {
    pub command: Option<Command>,
    pub news: Option<EngineNews>,
}

impl Reaction {
    fn command(c: Command) -> Reaction {
        Reaction {
            command: Some(c),
            ..Reaction::default()
        }
    }
    fn news(n: EngineNews) -> Reaction {
        Reaction {
            news: Some(n),
            ..Reaction::default()
        }
    }
}

/// One position's stop order lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOrder {
    position: u64,
    atomic: bool,
    phase: Phase,
    unprotected_since: Option<i64>,
    unprotected_ms: i64,
    /// The end of the last window counted: a window that starts before it (a live venue's
    /// create acknowledged at a later time than the next command) counts from it only, and
    /// a close before it gives the excess back. The simulated venue never needs it (its
    /// acknowledgements come at the point they are stamped with).
    counted_until: Option<i64>,
}

/// A serialisable copy of a [`StopOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOrderSnapshot {
    pub position: u64,
    pub atomic: bool,
    pub phase: Phase,
    pub unprotected_since: Option<i64>,
    pub unprotected_ms: i64,
    /// Absent in lifecycles stored before it existed, and left out while unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_until: Option<i64>,
}

impl StopOrder {
    /// A position with no stop yet, on a venue that amends atomically or not.
    pub fn new(position: u64, atomic: bool) -> StopOrder {
        StopOrder {
            position,
            atomic,
            phase: Phase::NoStop,
            unprotected_since: None,
            unprotected_ms: 0,
            counted_until: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The stop resting on the venue now, if one surely does.
    #[inline]
    pub fn resting(&self) -> Option<Rest> {
        match self.phase {
            Phase::Resting { order } | Phase::Amending { from: order, .. } => Some(order),
            _ => None,
        }
    }

    /// Whether a command is in flight or its outcome unknown (the order may change without a
    /// price point).
    #[inline]
    pub fn in_flight(&self) -> bool {
        !matches!(
            self.phase,
            Phase::NoStop | Phase::Resting { .. } | Phase::Closed
        )
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Since when no stop rests although one was sent (a replace window, a first create).
    pub fn unprotected_since(&self) -> Option<i64> {
        self.unprotected_since
    }

    /// Total unprotected time so far (the union of the windows).
    pub fn unprotected_ms(&self) -> i64 {
        self.unprotected_ms
    }

    /// The engine's intent at `ts`; `seq` numbers a new stop (the engine's send count).
    #[inline]
    pub fn on_intent(&mut self, intent: Intent, seq: u32, ts: i64) -> Reaction {
        match intent {
            Intent::PlaceStop { price, origin } => {
                let rest = Rest {
                    seq,
                    stop: price,
                    origin,
                };
                self.want(rest, ts)
            }
            Intent::ExitNow => self.close_at_market(),
        }
    }

    /// Asks for a close at market (exit now, or a protective close).
    pub fn close_at_market(&mut self) -> Reaction {
        self.phase = Phase::Closing;
        Reaction::command(Command::CloseAtMarket {
            position: self.position,
        })
    }

    fn want(&mut self, rest: Rest, ts: i64) -> Reaction {
        match self.phase {
            Phase::NoStop => self.place(rest, ts),
            Phase::Resting { order } if self.atomic => {
                self.phase = Phase::Amending {
                    from: order,
                    to: rest,
                    next: None,
                };
                Reaction::command(Command::Amend {
                    order: self.oref(rest),
                    replaces: self.oref(order),
                    stop: rest.stop,
                })
            }
            Phase::Resting { order } | Phase::Placing { order, .. } if !self.atomic => {
                // Cancel + create: the old stop (or the create still in flight) goes first.
                self.phase = Phase::Cancelling {
                    from: order,
                    to: rest,
                };
                Reaction::command(Command::Cancel {
                    order: self.oref(order),
                })
            }
            Phase::Placing { order, .. } => {
                self.phase = Phase::Placing {
                    order,
                    next: Some(rest),
                };
                Reaction::default()
            }
            Phase::Amending { from, to, .. } => {
                self.phase = Phase::Amending {
                    from,
                    to,
                    next: Some(rest),
                };
                Reaction::default()
            }
            Phase::Cancelling { from, .. } => {
                // Coalesce: only the newest stop is created.
                self.phase = Phase::Cancelling { from, to: rest };
                Reaction::default()
            }
            // Nothing is sent while an outcome is unknown: the newest stop waits for the answer.
            Phase::Unknown { order, prior, .. } => {
                self.phase = Phase::Unknown {
                    order,
                    prior,
                    next: Some(rest),
                };
                Reaction::default()
            }
            // Nothing is sent once closing.
            Phase::Closing | Phase::Closed => Reaction::default(),
            Phase::Resting { .. } => unreachable!("both arms above match a resting order"),
        }
    }

    fn place(&mut self, rest: Rest, ts: i64) -> Reaction {
        // Nothing rests until the venue accepts the create.
        self.unprotected_since.get_or_insert(ts);
        self.phase = Phase::Placing {
            order: rest,
            next: None,
        };
        Reaction::command(Command::Place {
            order: self.oref(rest),
            stop: rest.stop,
        })
    }

    fn end_window(&mut self, ts: i64) {
        if let Some(since) = self.unprotected_since.take() {
            let from = self.counted_until.map_or(since, |c| since.max(c));
            self.unprotected_ms += (ts - from).max(0);
            self.counted_until = Some(self.counted_until.map_or(ts, |c| c.max(ts)));
        }
    }

    /// The position closed at `ts`: an open window ends there, and time counted past it (a
    /// window acknowledged as ending later) is given back — the windows are cut at the close.
    fn end_at_close(&mut self, ts: i64) {
        self.end_window(ts);
        if let Some(c) = self.counted_until
            && c > ts
        {
            self.unprotected_ms = (self.unprotected_ms - (c - ts)).max(0);
            self.counted_until = Some(ts);
        }
    }

    /// A venue event about this position.
    #[inline]
    pub fn on_event(&mut self, event: &VenueEvent) -> Reaction {
        match *event {
            VenueEvent::Accepted {
                order, stop, ts, ..
            } => self.accepted(order, stop, ts),
            VenueEvent::Rejected { order, ts, reason } => self.rejected(order, ts, reason),
            VenueEvent::Cancelled { order, ts } => self.cancelled(order, ts),
            VenueEvent::Ambiguous { order, ts: _ } => self.ambiguous(order),
            VenueEvent::Triggered { order, ts, fill } => {
                let origin = self.known(order).map(|r| r.origin);
                self.end_at_close(ts);
                self.phase = Phase::Closed;
                match origin {
                    Some(origin) => Reaction::news(EngineNews::Filled { fill, origin }),
                    None => Reaction::news(EngineNews::Closed { fill, by_us: false }),
                }
            }
            VenueEvent::PositionClosed { ts, fill, .. } => {
                let by_us = self.phase == Phase::Closing;
                self.end_at_close(ts);
                self.phase = Phase::Closed;
                Reaction::news(EngineNews::Closed { fill, by_us })
            }
            VenueEvent::PositionOpened { .. } | VenueEvent::PositionChanged { .. } => {
                Reaction::default()
            }
        }
    }

    #[inline]
    fn oref(&self, r: Rest) -> OrderRef {
        OrderRef {
            position: self.position,
            seq: r.seq,
        }
    }

    /// The order `r` refers to, if it is one this lifecycle holds.
    #[inline]
    fn known(&self, r: OrderRef) -> Option<Rest> {
        if r.position != self.position {
            return None;
        }
        let is = |x: &Rest| x.seq == r.seq;
        let pick = |a: Rest, b: Option<Rest>, c: Option<Rest>| {
            if is(&a) {
                Some(a)
            } else {
                b.filter(is).or(c.filter(is))
            }
        };
        match self.phase {
            Phase::Placing { order, next } => pick(order, next, None),
            Phase::Resting { order } => pick(order, None, None),
            Phase::Amending { from, to, next } => pick(from, Some(to), next),
            Phase::Cancelling { from, to } => pick(from, Some(to), None),
            Phase::Unknown { order, prior, next } => pick(order, prior, next),
            Phase::NoStop | Phase::Closing | Phase::Closed => None,
        }
    }

    fn accepted(&mut self, order: OrderRef, stop: i64, ts: i64) -> Reaction {
        let Some(mut rest) = self.known(order) else {
            return Reaction::default();
        };
        // The venue is the truth about where the stop rests.
        rest.stop = stop;
        let next = match self.phase {
            Phase::Placing { next, .. }
            | Phase::Amending { next, .. }
            | Phase::Unknown { next, .. } => next,
            _ => None,
        };
        self.end_window(ts);
        self.phase = Phase::Resting { order: rest };
        let mut reaction = Reaction::news(EngineNews::Confirmed { stop });
        if let Some(next) = next {
            reaction.command = self.want(next, ts).command;
        }
        reaction
    }

    fn rejected(&mut self, order: OrderRef, ts: i64, reason: RejectReason) -> Reaction {
        let Some(rest) = self.known(order) else {
            return Reaction::default();
        };
        // What rests after the refusal: the old stop of an amend, else nothing.
        // After a look-up, the stop wanted while it ran goes now.
        let (prior, next) = match self.phase {
            Phase::Amending { from, .. } => (Some(from), None),
            Phase::Unknown { prior, next, .. } => (prior, next),
            _ => (None, None),
        };
        match prior {
            Some(p) => self.phase = Phase::Resting { order: p },
            None => {
                self.end_window(ts);
                self.phase = Phase::NoStop;
            }
        }
        match reason {
            RejectReason::WouldTrigger { market } => Reaction::news(EngineNews::WouldTrigger {
                stop: rest.stop,
                market,
            }),
            other => {
                let mut reaction = Reaction::news(EngineNews::Refused(other));
                // A newer stop wanted meanwhile goes now (the refused one is not sent again).
                if let Some(next) = next.filter(|n| n.seq != rest.seq) {
                    reaction.command = self.want(next, ts).command;
                }
                reaction
            }
        }
    }

    fn cancelled(&mut self, order: OrderRef, ts: i64) -> Reaction {
        match self.phase {
            Phase::Cancelling { from, to } if self.oref(from) == order => {
                // From the cancel's acknowledgement nothing rests until the create's.
                self.phase = Phase::NoStop;
                self.place(to, ts)
            }
            Phase::Resting { order: r } if self.oref(r) == order => {
                // Cancelled by someone else: the position is bare; the driver replaces it.
                self.unprotected_since.get_or_insert(ts);
                self.phase = Phase::NoStop;
                Reaction::default()
            }
            _ => Reaction::default(),
        }
    }

    fn ambiguous(&mut self, order: OrderRef) -> Reaction {
        let Some(rest) = self.known(order) else {
            return Reaction::default();
        };
        let prior = match self.phase {
            Phase::Amending { from, .. } => Some(from),
            Phase::Cancelling { from, .. } if self.oref(from) != order => Some(from),
            _ => None,
        };
        // A stop queued behind the ambiguous command still waits (for the answer to the query).
        let next = match self.phase {
            Phase::Placing { next, .. } | Phase::Amending { next, .. } => next,
            _ => None,
        }
        .filter(|n| n.seq != rest.seq);
        self.phase = Phase::Unknown {
            order: rest,
            prior,
            next,
        };
        Reaction::command(Command::Query { order })
    }

    /// Whether a newer stop waits behind the place or amend in flight.
    pub fn queued(&self) -> bool {
        matches!(
            self.phase,
            Phase::Placing { next: Some(_), .. } | Phase::Amending { next: Some(_), .. }
        )
    }

    /// The command in flight did not leave yet (an account's rate limit held it back): a newer
    /// stop queued behind it takes its place, so the older one is never sent (the engine's
    /// newest wish is what the venue gets). Returns the stop command to send now: the one in
    /// flight, coalesced; `None` when no place or amend is in flight (closed meanwhile).
    pub fn coalesce(&mut self) -> Option<Command> {
        match self.phase {
            Phase::Placing { order, next } => {
                let order = next.unwrap_or(order);
                self.phase = Phase::Placing { order, next: None };
                Some(Command::Place {
                    order: self.oref(order),
                    stop: order.stop,
                })
            }
            Phase::Amending { from, to, next } => {
                let to = next.unwrap_or(to);
                self.phase = Phase::Amending {
                    from,
                    to,
                    next: None,
                };
                Some(Command::Amend {
                    order: self.oref(to),
                    replaces: self.oref(from),
                    stop: to.stop,
                })
            }
            Phase::Cancelling { from, .. } => Some(Command::Cancel {
                order: self.oref(from),
            }),
            Phase::NoStop
            | Phase::Resting { .. }
            | Phase::Unknown { .. }
            | Phase::Closing
            | Phase::Closed => None,
        }
    }

    /// The position closed without the venue (the end of the data in a replay).
    pub fn close(&mut self, ts: i64) {
        self.end_at_close(ts);
        self.phase = Phase::Closed;
    }

    pub fn snapshot(&self) -> StopOrderSnapshot {
        StopOrderSnapshot {
            position: self.position,
            atomic: self.atomic,
            phase: self.phase,
            unprotected_since: self.unprotected_since,
            unprotected_ms: self.unprotected_ms,
            counted_until: self.counted_until,
        }
    }

    pub fn restore(s: &StopOrderSnapshot) -> StopOrder {
        StopOrder {
            position: s.position,
            atomic: s.atomic,
            phase: s.phase,
            unprotected_since: s.unprotected_since,
            unprotected_ms: s.unprotected_ms,
            counted_until: s.counted_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(stop: i64) -> Intent {
        Intent::PlaceStop {
            price: stop,
            origin: StopOrigin::Trailing,
        }
    }

    fn oref(seq: u32) -> OrderRef {
        OrderRef { position: 7, seq }
    }

    fn accepted(seq: u32, stop: i64, ts: i64) -> VenueEvent {
        VenueEvent::Accepted {
            order: oref(seq),
            stop,
            ts,
            venue_id: None,
        }
    }

    #[test]
    fn atomic_venue_places_then_amends_in_place() {
        let mut o = StopOrder::new(7, true);
        let r = o.on_intent(place(990), 1, 100);
        assert_eq!(
            r.command,
            Some(Command::Place {
                order: oref(1),
                stop: 990
            })
        );
        let r = o.on_event(&accepted(1, 990, 100));
        assert_eq!(r.news, Some(EngineNews::Confirmed { stop: 990 }));
        assert_eq!(o.resting().map(|r| r.stop), Some(990));
        let r = o.on_intent(place(995), 2, 200);
        assert_eq!(
            r.command,
            Some(Command::Amend {
                order: oref(2),
                replaces: oref(1),
                stop: 995
            })
        );
        // The old stop rests while the amend is in flight.
        assert_eq!(o.resting().map(|r| r.stop), Some(990));
        o.on_event(&accepted(2, 995, 210));
        assert_eq!(o.resting().map(|r| r.stop), Some(995));
        // Only the first create's flight was bare.
        assert_eq!(o.unprotected_ms(), 0);
    }

    #[test]
    fn cancel_create_venue_measures_the_window_from_the_cancel_ack() {
        let mut o = StopOrder::new(7, false);
        o.on_intent(place(990), 1, 0);
        o.on_event(&accepted(1, 990, 300));
        assert_eq!(o.unprotected_ms(), 300, "the first create's window counts");
        let r = o.on_intent(place(995), 2, 1000);
        assert_eq!(r.command, Some(Command::Cancel { order: oref(1) }));
        assert_eq!(
            o.unprotected_since(),
            None,
            "the old stop rests until the ack"
        );
        let r = o.on_event(&VenueEvent::Cancelled {
            order: oref(1),
            ts: 1040,
        });
        assert_eq!(
            r.command,
            Some(Command::Place {
                order: oref(2),
                stop: 995
            })
        );
        assert_eq!(o.unprotected_since(), Some(1040));
        assert_eq!(o.resting(), None);
        o.on_event(&accepted(2, 995, 1300));
        assert_eq!(o.unprotected_ms(), 300 + 260);
    }

    /// A live venue acknowledges a create at the time it takes effect (the first create at
    /// 300 for a send at 0), which can be after the next replace's cancel (at 200): the
    /// windows overlap and count once, as their union; a close before the last
    /// acknowledgement's time cuts the count there.
    #[test]
    fn overlapping_windows_count_once_and_are_cut_at_the_close() {
        let mut o = StopOrder::new(7, false);
        o.on_intent(place(990), 1, 0);
        o.on_event(&accepted(1, 990, 300));
        o.on_intent(place(995), 2, 200);
        o.on_event(&VenueEvent::Cancelled {
            order: oref(1),
            ts: 200,
        });
        o.on_event(&accepted(2, 995, 500));
        assert_eq!(
            o.unprotected_ms(),
            500,
            "[0, 300] and [200, 500]: their union"
        );
        // Apart again: a window after the last one counts whole.
        o.on_intent(place(998), 3, 1000);
        o.on_event(&VenueEvent::Cancelled {
            order: oref(2),
            ts: 1000,
        });
        o.on_event(&accepted(3, 998, 1300));
        assert_eq!(o.unprotected_ms(), 800);
        // Closed at 1100 (an exit now at its own point): the time counted past it is cut.
        o.on_event(&VenueEvent::PositionClosed {
            position: 7,
            ts: 1100,
            fill: 999,
        });
        assert_eq!(o.unprotected_ms(), 600);
        let back = StopOrder::restore(&o.snapshot());
        assert_eq!(back, o);
    }

    /// A lifecycle stored before `counted_until` existed reads back without it, and one
    /// without it set serialises as before.
    #[test]
    fn a_snapshot_without_counted_until_reads_back() {
        let o = StopOrder::new(7, false);
        let json = serde_json::to_string(&o.snapshot()).unwrap();
        assert!(!json.contains("counted_until"), "{json}");
        let back: StopOrderSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(StopOrder::restore(&back), o);
    }

    #[test]
    fn a_newer_stop_during_a_replace_is_coalesced() {
        let mut o = StopOrder::new(7, false);
        o.on_intent(place(990), 1, 0);
        o.on_event(&accepted(1, 990, 0));
        o.on_intent(place(995), 2, 10);
        assert_eq!(o.on_intent(place(998), 3, 20).command, None);
        let r = o.on_event(&VenueEvent::Cancelled {
            order: oref(1),
            ts: 30,
        });
        assert_eq!(
            r.command,
            Some(Command::Place {
                order: oref(3),
                stop: 998
            })
        );
        // An atomic venue queues behind an amend in flight and sends the newest after it.
        let mut a = StopOrder::new(7, true);
        a.on_intent(place(990), 1, 0);
        a.on_event(&accepted(1, 990, 0));
        a.on_intent(place(995), 2, 10);
        assert_eq!(a.on_intent(place(998), 3, 20).command, None);
        let r = a.on_event(&accepted(2, 995, 30));
        assert_eq!(
            r.command,
            Some(Command::Amend {
                order: oref(3),
                replaces: oref(2),
                stop: 998
            })
        );
    }

    /// A held amend is replaced by the newest stop queued behind it: the older one is never
    /// sent, the stop resting meanwhile stays, and the acceptance leaves nothing queued.
    #[test]
    fn a_held_command_coalesces_to_the_newest_stop() {
        let mut a = StopOrder::new(7, true);
        a.on_intent(place(990), 1, 0);
        assert_eq!(a.on_intent(place(992), 2, 5).command, None);
        assert_eq!(
            a.coalesce(),
            Some(Command::Place {
                order: oref(2),
                stop: 992
            })
        );
        a.on_event(&accepted(2, 992, 10));
        assert_eq!(a.resting().map(|r| r.stop), Some(992));
        a.on_intent(place(995), 3, 20);
        a.on_intent(place(997), 4, 30);
        assert_eq!(a.on_intent(place(999), 5, 40).command, None);
        assert!(a.queued());
        let cmd = a.coalesce();
        assert_eq!(
            cmd,
            Some(Command::Amend {
                order: oref(5),
                replaces: oref(2),
                stop: 999
            })
        );
        assert_eq!(a.resting().map(|r| r.stop), Some(992));
        // Nothing newer: the same command again, and the state unchanged.
        assert!(!a.queued());
        assert_eq!(a.coalesce(), cmd);
        let r = a.on_event(&accepted(5, 999, 50));
        assert_eq!(r.command, None, "nothing left queued behind it");
        assert_eq!(a.resting().map(|r| r.stop), Some(999));
        assert_eq!(a.coalesce(), None);
        a.close(60);
        assert_eq!(a.coalesce(), None);
    }

    #[test]
    fn would_trigger_rejection_tells_the_engine_and_an_amend_keeps_the_old_stop() {
        let mut o = StopOrder::new(7, false);
        o.on_intent(place(990), 1, 0);
        let r = o.on_event(&VenueEvent::Rejected {
            order: oref(1),
            ts: 300,
            reason: RejectReason::WouldTrigger { market: 985 },
        });
        assert_eq!(
            r.news,
            Some(EngineNews::WouldTrigger {
                stop: 990,
                market: 985
            })
        );
        assert_eq!(o.phase(), Phase::NoStop);
        assert_eq!(o.unprotected_ms(), 300);
        let r = o.on_intent(Intent::ExitNow, 1, 300);
        assert_eq!(r.command, Some(Command::CloseAtMarket { position: 7 }));
        let r = o.on_event(&VenueEvent::PositionClosed {
            position: 7,
            ts: 300,
            fill: 985,
        });
        assert_eq!(
            r.news,
            Some(EngineNews::Closed {
                fill: 985,
                by_us: true
            })
        );
        assert!(o.is_closed());

        let mut a = StopOrder::new(7, true);
        a.on_intent(place(990), 1, 0);
        a.on_event(&accepted(1, 990, 0));
        a.on_intent(place(995), 2, 10);
        let r = a.on_event(&VenueEvent::Rejected {
            order: oref(2),
            ts: 20,
            reason: RejectReason::Invalid { code: 10001 },
        });
        assert_eq!(
            r.news,
            Some(EngineNews::Refused(RejectReason::Invalid { code: 10001 }))
        );
        assert_eq!(a.resting().map(|r| r.stop), Some(990));
    }

    #[test]
    fn an_ambiguous_outcome_is_queried_and_nothing_else_is_sent() {
        let mut o = StopOrder::new(7, true);
        o.on_intent(place(990), 1, 0);
        let r = o.on_event(&VenueEvent::Ambiguous {
            order: oref(1),
            ts: 5,
        });
        assert_eq!(r.command, Some(Command::Query { order: oref(1) }));
        assert!(matches!(o.phase(), Phase::Unknown { .. }));
        assert_eq!(o.on_intent(place(995), 2, 10).command, None);
        // The query finds the create went through; the stop wanted meanwhile goes now (it
        // was once lost here: the engine believed it sent).
        let r = o.on_event(&accepted(1, 990, 20));
        assert_eq!(o.resting().map(|r| r.stop), Some(990));
        assert_eq!(
            r.command,
            Some(Command::Amend {
                order: oref(2),
                replaces: oref(1),
                stop: 995
            })
        );
        o.on_event(&accepted(2, 995, 30));
        assert_eq!(o.resting().map(|r| r.stop), Some(995));
        assert!(!o.in_flight());
    }

    #[test]
    fn a_look_up_that_finds_nothing_applied_sends_the_stop_wanted_meanwhile() {
        let mut o = StopOrder::new(7, true);
        o.on_intent(place(990), 1, 0);
        o.on_event(&VenueEvent::Ambiguous {
            order: oref(1),
            ts: 5,
        });
        assert_eq!(o.on_intent(place(993), 2, 8).command, None);
        assert_eq!(o.on_intent(place(995), 3, 10).command, None);
        let r = o.on_event(&VenueEvent::Rejected {
            order: oref(1),
            ts: 20,
            reason: RejectReason::Invalid { code: -1 },
        });
        // Nothing rested before: the newest stop is placed.
        assert_eq!(
            r.command,
            Some(Command::Place {
                order: oref(3),
                stop: 995
            })
        );
        // A lifecycle stored before `next` existed still reads.
        let old: Phase = serde_json::from_str(
            r#"{"phase":"unknown","order":{"seq":1,"stop":990,"origin":"initial"},"prior":null}"#,
        )
        .unwrap();
        assert!(matches!(old, Phase::Unknown { next: None, .. }));
    }

    #[test]
    fn a_fill_names_the_origin_and_a_foreign_close_is_not_ours() {
        let mut o = StopOrder::new(7, true);
        o.on_intent(
            Intent::PlaceStop {
                price: 990,
                origin: StopOrigin::Breakeven,
            },
            1,
            0,
        );
        o.on_event(&accepted(1, 990, 0));
        let r = o.on_event(&VenueEvent::Triggered {
            order: oref(1),
            ts: 50,
            fill: 989,
        });
        assert_eq!(
            r.news,
            Some(EngineNews::Filled {
                fill: 989,
                origin: StopOrigin::Breakeven
            })
        );
        let mut b = StopOrder::new(7, true);
        let r = b.on_event(&VenueEvent::PositionClosed {
            position: 7,
            ts: 9,
            fill: 1000,
        });
        assert_eq!(
            r.news,
            Some(EngineNews::Closed {
                fill: 1000,
                by_us: false
            })
        );
    }
}
