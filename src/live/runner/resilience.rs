//! The runner's side of [`breaker`](super::breaker): commands that must wait (a ban, a rate
//! limit, the breaker open for ratchets) are held per position, and released when the venue
//! may be asked again, carrying the newest stop the lifecycle wants by then (one call, not one
//! per price that came meanwhile). The lifecycle keeps the held command in flight (journalled
//! as such), so a restart while it waits sends it again like any unanswered command.

use std::collections::BTreeMap;
use std::time::Duration;

use super::book::in_flight_command;
use super::breaker::{Kind, PauseReason, Settings, Transition, Verdict};
use super::{Live, LiveError, log, why_of};
use crate::live::bybit::snapshot::NOT_APPLIED;
use crate::venue::{Command, Phase, RejectReason, VenueEvent};

/// Why a command is sent again after its look-up.
pub(super) const NOT_APPLIED_WHY: &str =
    "the look-up showed it was not applied: sent again with the same client id";

/// How the runner waits out faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resilience {
    pub breaker: Settings,
    /// How long no REST goes to a host that banned the IP (Bybit's 403: "wait for at least
    /// 10 minutes").
    pub ban_wait: Duration,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            breaker: Settings::default(),
            ban_wait: Duration::from_secs(600),
        }
    }
}

impl Resilience {
    /// The defaults, with the test hooks `TRAILSTOP_BAN_WAIT_MS` and
    /// `TRAILSTOP_BREAKER_COOLDOWN_MS` (milliseconds) read from `env`: they let a test wait
    /// out a ban or a cooldown in a second.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Resilience {
        let ms = |name: &str| env(name).and_then(|v| v.trim().parse::<u64>().ok());
        let mut r = Resilience::default();
        if let Some(v) = ms("TRAILSTOP_BAN_WAIT_MS") {
            r.ban_wait = Duration::from_millis(v);
        }
        if let Some(v) = ms("TRAILSTOP_BREAKER_COOLDOWN_MS") {
            r.breaker.cooldown_ms = v as i64;
        }
        r
    }
}

/// What came of a send.
#[derive(Debug)]
pub(super) enum Sent {
    /// The venue's answer, for the lifecycle.
    Answered(Vec<VenueEvent>),
    /// Not answered: held until `until_ms` at the earliest.
    Held { until_ms: i64 },
}

/// A command waiting to be sent.
#[derive(Debug, Clone)]
pub(super) struct Held {
    cmd: Command,
    ts: i64,
    why: String,
    not_before_ms: i64,
}

pub(super) type HeldCommands = BTreeMap<u64, Held>;

/// Moving a resting stop is a ratchet; the rest protects the position.
pub(super) fn kind_of(cmd: &Command) -> Kind {
    match cmd {
        Command::Amend { .. } | Command::Cancel { .. } => Kind::Ratchet,
        Command::Place { .. } | Command::CloseAtMarket { .. } | Command::Query { .. } => {
            Kind::Protective
        }
    }
}

impl Live {
    fn transition(&self, t: Transition) {
        let at = |ms: i64| crate::timefmt::iso_ms(ms);
        let venue = self.venue.exchange().as_str();
        let (banned, limited) = self.venue.refusal_names();
        match t {
            Transition::Opened { failures, until_ms } => log::warn(&format!(
                "{venue} circuit open after {failures} failed sends: stops are only moved \
                 again from {}; missing stops and closes still go",
                at(until_ms)
            )),
            Transition::HalfOpened => log::note(&format!(
                "{venue} circuit half-open: the next send is the trial"
            )),
            Transition::Closed => log::note(&format!("{venue} circuit closed")),
            Transition::Paused {
                reason: PauseReason::Banned,
                until_ms,
            } => log::warn(&format!(
                "{venue} bans this IP ({banned}): no REST to it until {}; the stops on the \
                 exchange keep working",
                at(until_ms)
            )),
            Transition::Paused {
                reason: PauseReason::RateLimited,
                until_ms,
            } => log::warn(&format!(
                "{venue} rate limit ({limited}): sends wait until {}",
                at(until_ms)
            )),
            Transition::Resumed { reason } => log::note(&format!(
                "{venue}: the {} pause is over",
                match reason {
                    PauseReason::Banned => "ban",
                    PauseReason::RateLimited => "rate-limit",
                }
            )),
        }
    }

    pub(super) fn failed(&mut self, now: i64) {
        if let Some(t) = self.circuit.failed(now) {
            self.transition(t);
        }
    }

    pub(super) fn succeeded(&mut self) {
        if let Some(t) = self.circuit.succeeded() {
            self.transition(t);
        }
    }

    /// Holds every send until `until_ms` for `reason`.
    pub(super) fn pause(&mut self, reason: PauseReason, until_ms: i64) -> Sent {
        if let Some(t) = self.circuit.pause(reason, until_ms) {
            self.transition(t);
            self.publish();
        }
        Sent::Held { until_ms }
    }

    /// Why `/healthz` is degraded by the venue, if it is.
    pub(super) fn circuit_degraded(&self) -> Option<String> {
        let now = self.now();
        let venue = self.venue.exchange().as_str();
        if let Some((reason, until)) = self.circuit.paused(now) {
            let at = crate::timefmt::iso_ms(until);
            return Some(match reason {
                PauseReason::Banned => {
                    let banned = self.venue.refusal_names().0;
                    format!("{venue} REST banned ({banned}) until {at}: no request is sent")
                }
                PauseReason::RateLimited => format!("{venue} rate limited until {at}"),
            });
        }
        match self.circuit.state_name(now) {
            "open" => Some(format!("{venue} circuit open")),
            _ => None,
        }
    }

    pub(super) fn circuit_status(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            self.venue.exchange().as_str().to_string(),
            self.circuit.state_name(self.now()).to_string(),
        )])
    }

    /// Whether REST may be used at all now (not during a ban; on Binance not during a 429's
    /// `Retry-After` either: its limits are the IP's, and any request before it ends earns
    /// the 418).
    pub(super) fn rest_allowed(&self) -> bool {
        match self.circuit.paused(self.now()) {
            Some((PauseReason::Banned, _)) => false,
            Some((PauseReason::RateLimited, _)) => {
                self.venue.exchange() != crate::live::config::Exchange::Binance
            }
            _ => true,
        }
    }

    /// Sends `cmd` for position `id` now, unless it must wait: then it is held and `None`
    /// returned (the lifecycle keeps it in flight).
    pub(super) async fn dispatch(
        &mut self,
        id: u64,
        cmd: Command,
        ts: i64,
        why: &str,
    ) -> Result<Option<Vec<VenueEvent>>, LiveError> {
        if self.dry.is_none() {
            let now = self.now();
            for t in self.circuit.tick(now) {
                self.transition(t);
            }
            if let Verdict::Wait { until_ms, .. } = self.circuit.admit(kind_of(&cmd), now) {
                self.hold(id, cmd, ts, why, until_ms);
                return Ok(None);
            }
        }
        match self.send(id, cmd, ts, why).await? {
            Sent::Answered(events) => Ok(Some(events)),
            Sent::Held { until_ms } => {
                self.hold(id, cmd, ts, why, until_ms);
                Ok(None)
            }
        }
    }

    fn hold(&mut self, id: u64, cmd: Command, ts: i64, why: &str, until_ms: i64) {
        // A newer command of the position (a close after a stop) replaces the held one.
        self.held.insert(
            id,
            Held {
                cmd,
                ts,
                why: why.to_string(),
                not_before_ms: until_ms,
            },
        );
    }

    /// Moves the breaker's time on (logging each change; a ban's end re-checks over REST
    /// first), then sends the held commands that may go now.
    pub(super) async fn release(&mut self) -> Result<(), LiveError> {
        let now = self.now();
        let changes = self.circuit.tick(now);
        let ban_over = changes.contains(&Transition::Resumed {
            reason: PauseReason::Banned,
        });
        for t in changes.iter().copied() {
            self.transition(t);
        }
        if !changes.is_empty() {
            self.publish();
        }
        if ban_over {
            log::note("the ban is over: re-checking over REST");
            self.recheck().await?;
        }
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| {
                h.not_before_ms <= now && self.circuit.check(kind_of(&h.cmd), now) == Verdict::Go
            })
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let Some(h) = self.held.remove(&id) else {
                continue;
            };
            let Some(slot) = self.book.slots.get(&id) else {
                continue;
            };
            if slot.runner.closed().is_some() {
                continue;
            }
            let ts = h.ts.max(slot.last_ts());
            let cmd = match h.cmd {
                Command::Place { .. } | Command::Amend { .. } | Command::Cancel { .. } => {
                    // The lifecycle's own coalescing, as the pacer's: a newer stop queued
                    // behind the held one goes instead, journalled before it leaves. A resend
                    // after a look-up (the outcome still unknown to the lifecycle) goes as
                    // it was; one the lifecycle no longer waits for (closing) does not.
                    if matches!(slot.runner.order.phase(), Phase::Unknown { .. }) {
                        h.cmd
                    } else {
                        let Some(cmd) = self.book.release(id) else {
                            continue;
                        };
                        self.book.commit(&[id])?;
                        cmd
                    }
                }
                other => other,
            };
            let why = if cmd == h.cmd {
                format!("{} (held until now)", h.why)
            } else {
                format!("{} (held until now; the newest stop)", h.why)
            };
            if let Some(events) = self.dispatch(id, cmd, ts, &why).await? {
                for e in &events {
                    self.book.on_event(id, e);
                }
                self.book.commit(&[id])?;
                self.drain(id).await?;
            }
        }
        Ok(())
    }

    /// A look-up that found an ambiguous command not applied (the venue never acted): the
    /// command to send again, with the same client id (`EXCHANGES.md` §4.3), instead of
    /// giving the refusal to the lifecycle (which would leave the position at its prior stop
    /// for good, the engine believing the new one sent).
    pub(super) fn not_applied(
        &self,
        id: u64,
        cmd: &Command,
        events: &[VenueEvent],
    ) -> Option<Command> {
        let refused = matches!(
            events,
            [VenueEvent::Rejected {
                reason: RejectReason::Invalid { code: NOT_APPLIED },
                ..
            }]
        );
        if !matches!(cmd, Command::Query { .. }) || !refused {
            return None;
        }
        in_flight_command(&self.book.slots.get(&id)?.runner, id)
    }

    /// Why position `id` sends `cmd` now.
    pub(super) fn why(&self, id: u64, cmd: &Command) -> &'static str {
        why_of(self.book.slots.get(&id), cmd)
    }
}
