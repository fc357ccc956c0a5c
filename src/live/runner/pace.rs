//! The account's rate limit on stop calls (`EXCHANGES.md` §2.7): the runner never sends more
//! stop calls than the venue allows per account in any rolling window, on top of the engine's
//! own update rules (which stay as they are).
//!
//! When more calls are due than the window allows, positions wait their turn here, protective
//! calls (a missing stop) first, then ratchets, in arrival order within each. Only the
//! *position* waits, not its command: when its turn comes the runner asks the lifecycle for
//! the command in flight, coalesced to the newest stop the engine wants
//! ([`Book::release`](super::Book::release)), so an older desired stop never leaves once a
//! newer one exists.
//!
//! Pure: times are milliseconds of a monotonic clock the caller reads.

use std::collections::{BTreeMap, VecDeque};

use crate::venue::Command;

/// At most `calls` calls in any rolling window of `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub calls: usize,
    pub window_ms: i64,
}

/// Bybit: `/v5/position/trading-stop`, 10 per rolling second per UID (`10006` beyond).
pub const BYBIT_TRADING_STOP: Limit = Limit {
    calls: 10,
    window_ms: 1000,
};

/// Binance USD-M: the account's `ORDERS` counters, 300 per 10 s and 1,200 per minute
/// (`EXCHANGES.md` §1.7): 200 per rolling 10 s keeps under both (cancels counted too).
pub const BINANCE_ORDERS: Limit = Limit {
    calls: 200,
    window_ms: 10_000,
};

/// Spare time on each call's slot: the venue stamps a call somewhere between our send and
/// its answer, on its own clock (millisecond boundaries need not line up with ours).
pub const SPARE_MS: i64 = 5;

/// Which calls go first when the window is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// The position has no stop resting (a first or missing stop).
    Protective,
    /// A stop moves tighter.
    Ratchet,
}

/// Whether `cmd` is a stop call the account limit counts (Bybit: all three are
/// `trading-stop`), and how urgent it is. A close at market (`order/create`) and a look-up
/// (`position/list`) have limits of their own, far from reach, and go at once.
pub fn urgency(cmd: &Command) -> Option<Urgency> {
    match cmd {
        Command::Place { .. } => Some(Urgency::Protective),
        Command::Amend { .. } | Command::Cancel { .. } => Some(Urgency::Ratchet),
        Command::CloseAtMarket { .. } | Command::Query { .. } => None,
    }
}

/// The calls of the window and the positions waiting for a slot.
#[derive(Debug, Clone)]
pub struct Pacer {
    limit: Limit,
    /// When each call of the window ended (its answer came), oldest first.
    ended: VecDeque<i64>,
    /// Calls started and not ended (each holds a slot).
    in_flight: usize,
    /// Waiting positions by (urgency, ticket); a position waits once.
    queue: BTreeMap<(Urgency, u64), u64>,
    /// Each waiting position's place, and the event time of the call it first held (the
    /// time the venue's answer is stamped with, as if it had gone at once).
    places: BTreeMap<u64, (Urgency, u64, i64)>,
    tickets: u64,
}

impl Pacer {
    pub fn new(limit: Limit) -> Pacer {
        Pacer {
            limit,
            ended: VecDeque::new(),
            in_flight: 0,
            queue: BTreeMap::new(),
            places: BTreeMap::new(),
            tickets: 0,
        }
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// How many positions wait.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    pub fn is_waiting(&self, id: u64) -> bool {
        self.places.contains_key(&id)
    }

    /// Position `id` has a stop call to make, wanted at event time `ts`. A position already
    /// waiting keeps its place and its first time (its call is coalesced when it leaves),
    /// moved up if this call is more urgent.
    pub fn hold(&mut self, id: u64, urgency: Urgency, ts: i64) {
        if let Some(&(u, t, first)) = self.places.get(&id) {
            if urgency >= u {
                return;
            }
            self.queue.remove(&(u, t));
            self.queue.insert((urgency, t), id);
            self.places.insert(id, (urgency, t, first));
            return;
        }
        self.tickets += 1;
        self.queue.insert((urgency, self.tickets), id);
        self.places.insert(id, (urgency, self.tickets, ts));
    }

    /// Position `id` has nothing to send any more (closed).
    pub fn forget(&mut self, id: u64) {
        if let Some((u, t, _)) = self.places.remove(&id) {
            self.queue.remove(&(u, t));
        }
    }

    fn expire(&mut self, now: i64) {
        let span = self.limit.window_ms + SPARE_MS;
        while self.ended.front().is_some_and(|&t| t + span <= now) {
            self.ended.pop_front();
        }
    }

    /// Whether a call may start at `now`.
    pub fn room(&mut self, now: i64) -> bool {
        self.expire(now);
        self.ended.len() + self.in_flight < self.limit.calls
    }

    /// The first waiting position and the event time it first held, if a call may start at
    /// `now` (it leaves the queue; the caller then [`start`](Pacer::start)s its call, if it
    /// still has one).
    pub fn pop(&mut self, now: i64) -> Option<(u64, i64)> {
        if !self.room(now) {
            return None;
        }
        let (_, id) = self.queue.pop_first()?;
        let (_, _, ts) = self.places.remove(&id)?;
        Some((id, ts))
    }

    /// A call starts (after [`room`](Pacer::room) said yes): it holds a slot until it ends.
    pub fn start(&mut self) {
        self.in_flight += 1;
    }

    /// The call started last ended at `now`: its slot is free a window after.
    pub fn end(&mut self, now: i64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let at = self.ended.back().map_or(now, |&b| b.max(now));
        self.ended.push_back(at);
    }

    /// When a slot opens, at or after `now` (`None` while every slot is held by a call in
    /// flight: its end frees one).
    pub fn free_at(&mut self, now: i64) -> Option<i64> {
        if self.room(now) {
            return Some(now);
        }
        let oldest = *self.ended.front()?;
        Some(oldest + self.limit.window_ms + SPARE_MS)
    }

    /// When the next waiting position may go (`None` when none waits).
    pub fn wake_at(&mut self, now: i64) -> Option<i64> {
        if self.queue.is_empty() {
            return None;
        }
        self.free_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::OrderRef;
    use proptest::prelude::*;

    const L: Limit = Limit {
        calls: 3,
        window_ms: 1000,
    };

    /// Pops and sends (each call instant) whatever may go at `now`.
    fn pump(p: &mut Pacer, now: i64, sent: &mut Vec<(i64, u64)>) {
        while let Some((id, _)) = p.pop(now) {
            p.start();
            p.end(now);
            sent.push((now, id));
        }
    }

    #[test]
    fn the_window_holds_at_most_its_calls_and_opens_as_it_rolls() {
        let mut p = Pacer::new(L);
        for id in 1..=5 {
            p.hold(id, Urgency::Ratchet, 0);
        }
        let mut sent = Vec::new();
        pump(&mut p, 0, &mut sent);
        assert_eq!(sent, vec![(0, 1), (0, 2), (0, 3)]);
        assert_eq!(p.wake_at(10), Some(1000 + SPARE_MS));
        pump(&mut p, 1000 + SPARE_MS - 1, &mut sent);
        assert_eq!(sent.len(), 3, "one ms early: still full");
        pump(&mut p, 1000 + SPARE_MS, &mut sent);
        assert_eq!(&sent[3..], &[(1005, 4), (1005, 5)]);
        assert_eq!(p.wake_at(1005), None, "nothing waits");
        assert_eq!(p.waiting(), 0);
    }

    #[test]
    fn protective_calls_go_before_ratchets_and_a_waiting_position_waits_once() {
        let mut p = Pacer::new(L);
        let mut sent = Vec::new();
        for id in 1..=3 {
            p.hold(id, Urgency::Ratchet, 0);
        }
        pump(&mut p, 0, &mut sent);
        // The window is full: ratchets of 4, 5, 6 wait, then 7 and 8 lose their stops.
        for id in [4, 5, 6] {
            p.hold(id, Urgency::Ratchet, 10 * id as i64);
        }
        p.hold(5, Urgency::Ratchet, 99);
        p.hold(7, Urgency::Protective, 70);
        p.hold(8, Urgency::Protective, 80);
        // 6 is raised: a protective call of a waiting position moves it up, keeping its ticket
        // and its first time.
        p.hold(6, Urgency::Protective, 99);
        assert_eq!(p.clone().pop(1005), Some((6, 60)));
        assert_eq!(p.waiting(), 5);
        pump(&mut p, 1005, &mut sent);
        assert_eq!(&sent[3..], &[(1005, 6), (1005, 7), (1005, 8)]);
        // A closed position leaves the queue.
        p.forget(4);
        pump(&mut p, 2010, &mut sent);
        assert_eq!(&sent[6..], &[(2010, 5)]);
        p.hold(9, Urgency::Ratchet, 7);
        p.hold(9, Urgency::Ratchet, 8);
        assert_eq!(p.pop(3020), Some((9, 7)), "the first time stays");
    }

    #[test]
    fn a_slot_is_held_while_its_call_is_in_flight_and_counts_from_its_end() {
        let mut p = Pacer::new(Limit {
            calls: 1,
            window_ms: 1000,
        });
        assert!(p.room(0));
        p.start();
        assert!(
            !p.room(5_000),
            "in flight: the slot is taken whatever the time"
        );
        assert_eq!(p.free_at(5_000), None);
        p.end(300);
        assert!(!p.room(1_304));
        assert!(p.room(1_305));
    }

    #[test]
    fn stop_calls_are_paced_and_others_go_at_once() {
        let o = OrderRef {
            position: 1,
            seq: 2,
        };
        assert_eq!(
            urgency(&Command::Place { order: o, stop: 1 }),
            Some(Urgency::Protective)
        );
        let amend = Command::Amend {
            order: o,
            replaces: o,
            stop: 1,
        };
        assert_eq!(urgency(&amend), Some(Urgency::Ratchet));
        assert_eq!(urgency(&Command::CloseAtMarket { position: 1 }), None);
        assert_eq!(urgency(&Command::Query { order: o }), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Time passes (ms).
        Wait(i64),
        /// A position wants a call.
        Hold(u64, bool),
        /// A call that takes this long (ms) from start to answer.
        Send(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..700).prop_map(Op::Wait),
            (0u64..12, any::<bool>()).prop_map(|(id, p)| Op::Hold(id, p)),
            (0i64..300).prop_map(Op::Send),
        ]
    }

    proptest! {
        /// Whatever the timing: no window of `window_ms` (plus the spare) holds more than
        /// `calls` calls, counted from start to answer; a ratchet never leaves while a
        /// protective call waits; within an urgency the order is the order of arrival; and
        /// everything held leaves once time passes.
        #[test]
        fn no_window_ever_holds_more_calls_than_the_limit(
            calls in 1usize..6,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let limit = Limit { calls, window_ms: 1000 };
            let mut p = Pacer::new(limit);
            let mut now = 0i64;
            // (start, end) of every call, and the model queue.
            let mut spans: Vec<(i64, i64)> = Vec::new();
            let mut model: Vec<(Urgency, u64)> = Vec::new();
            let run = |p: &mut Pacer, now: &mut i64, model: &mut Vec<(Urgency, u64)>,
                           spans: &mut Vec<(i64, i64)>, took: i64| {
                while let Some((id, _)) = p.pop(*now) {
                    let best = model.iter().map(|m| m.0).min().unwrap();
                    let i = model.iter().position(|m| m.1 == id).unwrap();
                    prop_assert_eq!(model[i].0, best, "the most urgent first");
                    prop_assert!(
                        model[..i].iter().all(|m| m.0 != best),
                        "arrival order within an urgency"
                    );
                    model.remove(i);
                    p.start();
                    let start = *now;
                    *now += took;
                    p.end(*now);
                    spans.push((start, *now));
                }
                Ok(())
            };
            for o in ops {
                match o {
                    Op::Wait(ms) => now += ms,
                    Op::Hold(id, protective) => {
                        let u = if protective { Urgency::Protective } else { Urgency::Ratchet };
                        p.hold(id, u, now);
                        match model.iter_mut().find(|m| m.1 == id) {
                            Some(m) => m.0 = m.0.min(u),
                            None => model.push((u, id)),
                        }
                    }
                    Op::Send(took) => run(&mut p, &mut now, &mut model, &mut spans, took)?,
                }
                prop_assert_eq!(p.waiting(), model.len());
            }
            // Liveness: waiting at each wake time empties the queue.
            while let Some(at) = p.wake_at(now) {
                now = now.max(at);
                run(&mut p, &mut now, &mut model, &mut spans, 1)?;
            }
            prop_assert!(model.is_empty());
            // A venue stamping each call anywhere in [start, end] on a clock off by < SPARE_MS
            // never sees more than `calls` in (t - window, t]: the k-th call after one starts
            // no earlier than window + SPARE after that one ended.
            for (i, a) in spans.iter().enumerate() {
                if let Some(b) = spans.get(i + calls) {
                    prop_assert!(b.0 >= a.1 + limit.window_ms + SPARE_MS, "{:?} {:?}", a, b);
                }
            }
        }
    }
}
