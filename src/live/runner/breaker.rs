//! A venue's circuit breaker and its pauses (`LIVE.md` §5, `EXCHANGES.md` §2.7–§2.8): pure,
//! with the time given in milliseconds by the caller.
//!
//! - **Breaker.** After [`Settings::threshold`] consecutive failed sends (timeouts, 5xx,
//!   ambiguous answers, retries) it opens for [`Settings::cooldown_ms`]: ratchets (moving a
//!   resting stop tighter) wait, protective sends (a missing stop, a close at market) still
//!   go (their success does not close it: only a trial after the cooldown does). Then it
//!   half-opens: the next send is the trial, and ratchets wait until it is answered; a
//!   success closes it, a failure opens it again.
//! - **Pauses.** A ban (Bybit's HTTP 403: no REST to the host for at least 10 minutes) or a
//!   rate limit (`10006`: until `X-Bapi-Limit-Reset-Timestamp`) holds every send until its end,
//!   protective ones included: the venue would refuse them anyway, and the stops already on
//!   the exchange keep working meanwhile.

/// How the breaker behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Consecutive failed sends that open it.
    pub threshold: u32,
    /// How long it stays open before the trial send.
    pub cooldown_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// What a send is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A missing stop placed, a close at market, a look-up after an ambiguous answer: never
    /// held by the breaker.
    Protective,
    /// A resting stop moved tighter: waits while the breaker is open.
    Ratchet,
}

/// Why everything waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// HTTP 403: the host bans this IP.
    Banned,
    /// `10006`: the account's rate limit, until its reset.
    RateLimited,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Banned => "banned",
            PauseReason::RateLimited => "rate_limited",
        }
    }
}

/// The verdict on a send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Hold it until `until_ms` at the earliest.
    Wait {
        until_ms: i64,
        why: &'static str,
    },
}

/// A change of state, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { failures: u32, until_ms: i64 },
    HalfOpened,
    Closed,
    Paused { reason: PauseReason, until_ms: i64 },
    Resumed { reason: PauseReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: i64,
    },
    /// `trial`: the trial send is out (admitted, not answered yet).
    HalfOpen {
        trial: bool,
    },
}

/// One venue's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    settings: Settings,
    state: State,
    pause: Option<(PauseReason, i64)>,
}

impl Breaker {
    pub fn new(settings: Settings) -> Breaker {
        Breaker {
            settings,
            state: State::Closed { failures: 0 },
            pause: None,
        }
    }

    /// Moves time to `now`: an ended pause resumes, an open breaker whose cooldown passed
    /// half-opens. Returns what changed, in order.
    pub fn tick(&mut self, now: i64) -> Vec<Transition> {
        let mut changed = Vec::new();
        if let Some((reason, until)) = self.pause
            && now >= until
        {
            self.pause = None;
            changed.push(Transition::Resumed { reason });
        }
        if let State::Open { until_ms } = self.state
            && now >= until_ms
        {
            self.state = State::HalfOpen { trial: false };
            changed.push(Transition::HalfOpened);
        }
        changed
    }

    /// Whether a send of `kind` may go at `now` (after [`Breaker::tick`]), without taking
    /// the half-open breaker's trial: [`Breaker::admit`] does, for a send that leaves.
    pub fn check(&self, kind: Kind, now: i64) -> Verdict {
        if let Some((reason, until_ms)) = self.pause
            && now < until_ms
        {
            return Verdict::Wait {
                until_ms,
                why: reason.as_str(),
            };
        }
        match (self.state, kind) {
            (State::Open { until_ms }, Kind::Ratchet) if now < until_ms => Verdict::Wait {
                until_ms,
                why: "circuit open",
            },
            // The trial's answer decides; look again soon.
            (State::HalfOpen { trial: true }, Kind::Ratchet) => Verdict::Wait {
                until_ms: now,
                why: "circuit half-open: the trial is out",
            },
            _ => Verdict::Go,
        }
    }

    /// [`Breaker::check`] for a send that leaves now if it may: the first one after the
    /// breaker half-opened is the trial, and no ratchet goes until it is answered.
    pub fn admit(&mut self, kind: Kind, now: i64) -> Verdict {
        let verdict = self.check(kind, now);
        if verdict == Verdict::Go && self.state == (State::HalfOpen { trial: false }) {
            self.state = State::HalfOpen { trial: true };
        }
        verdict
    }

    /// A send was answered (the venue said what it did, accepted or refused). While open (a
    /// protective send), it stays open: the cooldown and then a trial decide.
    pub fn succeeded(&mut self) -> Option<Transition> {
        match self.state {
            State::Open { .. } => None,
            State::Closed { .. } => {
                self.state = State::Closed { failures: 0 };
                None
            }
            State::HalfOpen { .. } => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
        }
    }

    /// A send failed (no answer, an ambiguous one, a server error) at `now`.
    pub fn failed(&mut self, now: i64) -> Option<Transition> {
        let failures = match self.state {
            State::Closed { failures } => failures + 1,
            // The trial failed, or a protective send failed while open: open (again) anew.
            State::HalfOpen { .. } | State::Open { .. } => self.settings.threshold,
        };
        if failures >= self.settings.threshold {
            let until_ms = now + self.settings.cooldown_ms;
            let reopened = matches!(self.state, State::Open { .. });
            self.state = State::Open { until_ms };
            return (!reopened).then_some(Transition::Opened { failures, until_ms });
        }
        self.state = State::Closed { failures };
        None
    }

    /// Holds every send until `until_ms` for `reason` (a later end extends the pause).
    pub fn pause(&mut self, reason: PauseReason, until_ms: i64) -> Option<Transition> {
        let merged = match self.pause {
            // A ban is the stronger reason; the later end holds.
            Some((r, u)) if r == PauseReason::Banned => (r, u.max(until_ms)),
            Some((_, u)) => (reason, u.max(until_ms)),
            None => (reason, until_ms),
        };
        // A trial answered with a pause says nothing of the venue's health: the next send
        // after the pause is the trial.
        if self.state == (State::HalfOpen { trial: true }) {
            self.state = State::HalfOpen { trial: false };
        }
        if self.pause == Some(merged) {
            return None;
        }
        self.pause = Some(merged);
        Some(Transition::Paused {
            reason: merged.0,
            until_ms: merged.1,
        })
    }

    /// The pause in force at `now`, if any.
    pub fn paused(&self, now: i64) -> Option<(PauseReason, i64)> {
        self.pause.filter(|&(_, until)| now < until)
    }

    /// The state for `/status`: `closed`, `open`, `half_open`, `banned` or `rate_limited`.
    pub fn state_name(&self, now: i64) -> &'static str {
        if let Some((reason, _)) = self.paused(now) {
            return reason.as_str();
        }
        match self.state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    /// The earliest time something held may change: a pause's end or the cooldown's.
    pub fn next_change(&self) -> Option<i64> {
        let cooldown = match self.state {
            State::Open { until_ms } => Some(until_ms),
            _ => None,
        };
        match (self.pause.map(|(_, u)| u), cooldown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(Settings {
            threshold: 3,
            cooldown_ms: 1_000,
        })
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures() {
        let mut b = breaker();
        assert_eq!(b.failed(10), None);
        assert_eq!(b.failed(20), None);
        // A success in between starts the count again.
        assert_eq!(b.succeeded(), None);
        assert_eq!(b.failed(30), None);
        assert_eq!(b.failed(40), None);
        assert_eq!(b.state_name(40), "closed");
        assert_eq!(
            b.failed(50),
            Some(Transition::Opened {
                failures: 3,
                until_ms: 1_050
            })
        );
        assert_eq!(b.state_name(60), "open");
    }

    #[test]
    fn while_open_ratchets_wait_and_protective_sends_go() {
        let mut b = breaker();
        for t in [1, 2, 3] {
            b.failed(t);
        }
        assert_eq!(
            b.check(Kind::Ratchet, 500),
            Verdict::Wait {
                until_ms: 1_003,
                why: "circuit open"
            }
        );
        assert_eq!(b.check(Kind::Protective, 500), Verdict::Go);
        // A protective send failing while open keeps it open (no second transition).
        assert_eq!(b.failed(600), None);
        assert_eq!(b.next_change(), Some(1_600));
        assert_eq!(b.tick(1_599), []);
        assert!(matches!(
            b.check(Kind::Ratchet, 1_599),
            Verdict::Wait { .. }
        ));
    }

    #[test]
    fn it_half_opens_after_the_cooldown_and_the_trial_decides() {
        let mut b = breaker();
        for t in [1, 2, 3] {
            b.failed(t);
        }
        assert_eq!(b.tick(1_003), [Transition::HalfOpened]);
        assert_eq!(b.state_name(1_003), "half_open");
        assert_eq!(b.check(Kind::Ratchet, 1_003), Verdict::Go);
        // The trial fails: open again at once, for a new cooldown.
        assert_eq!(
            b.failed(1_010),
            Some(Transition::Opened {
                failures: 3,
                until_ms: 2_010
            })
        );
        assert_eq!(b.tick(2_010), [Transition::HalfOpened]);
        assert_eq!(b.succeeded(), Some(Transition::Closed));
        assert_eq!(b.state_name(2_010), "closed");
        assert_eq!(b.next_change(), None);
    }

    #[test]
    fn half_open_lets_exactly_one_trial_through() {
        let mut b = breaker();
        for t in [1, 2, 3] {
            b.failed(t);
        }
        b.tick(1_003);
        // Looking does not take the trial.
        assert_eq!(b.check(Kind::Ratchet, 1_003), Verdict::Go);
        assert_eq!(b.check(Kind::Ratchet, 1_003), Verdict::Go);
        assert_eq!(b.admit(Kind::Ratchet, 1_004), Verdict::Go);
        // The trial is out: no second ratchet, none admitted either; protective sends go.
        let waiting = Verdict::Wait {
            until_ms: 1_005,
            why: "circuit half-open: the trial is out",
        };
        assert_eq!(b.check(Kind::Ratchet, 1_005), waiting);
        assert_eq!(b.admit(Kind::Ratchet, 1_005), waiting);
        assert_eq!(b.admit(Kind::Protective, 1_005), Verdict::Go);
        assert_eq!(b.state_name(1_005), "half_open");
        // Its success closes it: everything goes.
        assert_eq!(b.succeeded(), Some(Transition::Closed));
        assert_eq!(b.admit(Kind::Ratchet, 1_006), Verdict::Go);
        assert_eq!(b.admit(Kind::Ratchet, 1_006), Verdict::Go);

        // A protective send admitted first is the trial too; its failure opens it again.
        for t in [2_000, 2_001, 2_002] {
            b.failed(t);
        }
        b.tick(3_002);
        assert_eq!(b.admit(Kind::Protective, 3_002), Verdict::Go);
        assert!(matches!(
            b.admit(Kind::Ratchet, 3_003),
            Verdict::Wait { .. }
        ));
        assert!(matches!(b.failed(3_004), Some(Transition::Opened { .. })));
        assert_eq!(
            b.admit(Kind::Ratchet, 3_005),
            Verdict::Wait {
                until_ms: 4_004,
                why: "circuit open"
            }
        );
    }

    #[test]
    fn a_trial_answered_with_a_pause_leaves_the_next_send_the_trial() {
        let mut b = breaker();
        for t in [1, 2, 3] {
            b.failed(t);
        }
        b.tick(1_003);
        assert_eq!(b.admit(Kind::Ratchet, 1_003), Verdict::Go);
        b.pause(PauseReason::RateLimited, 1_500);
        assert_eq!(
            b.tick(1_500),
            [Transition::Resumed {
                reason: PauseReason::RateLimited
            }]
        );
        assert_eq!(b.admit(Kind::Ratchet, 1_500), Verdict::Go);
        assert!(matches!(
            b.admit(Kind::Ratchet, 1_501),
            Verdict::Wait { .. }
        ));
    }

    #[test]
    fn a_protective_success_while_open_keeps_it_open() {
        let mut b = breaker();
        for t in [1, 2, 3] {
            b.failed(t);
        }
        assert_eq!(b.admit(Kind::Protective, 10), Verdict::Go);
        assert_eq!(b.succeeded(), None);
        assert_eq!(b.state_name(10), "open");
        assert!(matches!(b.check(Kind::Ratchet, 10), Verdict::Wait { .. }));
        assert_eq!(b.tick(1_003), [Transition::HalfOpened]);
    }

    #[test]
    fn a_pause_holds_every_send_until_its_end() {
        let mut b = breaker();
        assert_eq!(
            b.pause(PauseReason::RateLimited, 500),
            Some(Transition::Paused {
                reason: PauseReason::RateLimited,
                until_ms: 500
            })
        );
        assert_eq!(
            b.check(Kind::Protective, 100),
            Verdict::Wait {
                until_ms: 500,
                why: "rate_limited"
            }
        );
        assert_eq!(b.state_name(100), "rate_limited");
        // A ban within the rate limit's wait takes over, and lasts its own time.
        assert_eq!(
            b.pause(PauseReason::Banned, 600_100),
            Some(Transition::Paused {
                reason: PauseReason::Banned,
                until_ms: 600_100
            })
        );
        // A shorter rate limit does not shorten the ban, nor rename it.
        assert_eq!(b.pause(PauseReason::RateLimited, 700), None);
        assert_eq!(b.state_name(700), "banned");
        assert_eq!(b.next_change(), Some(600_100));
        assert_eq!(b.tick(600_099), []);
        assert_eq!(
            b.tick(600_100),
            [Transition::Resumed {
                reason: PauseReason::Banned
            }]
        );
        assert_eq!(b.check(Kind::Ratchet, 600_100), Verdict::Go);
        assert_eq!(b.state_name(600_100), "closed");
    }
}
