//! The faults the fake Bybit can inject (`EXCHANGES.md` §4.3): one-shot REST faults queued
//! per endpoint, and stream faults applied to the next private messages.

use std::time::Duration;

use super::model::Outgoing;

/// A REST fault for the next request to `path` (any path when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub path: Option<String>,
    pub kind: FaultKind,
}

impl Fault {
    pub fn on(path: &str, kind: FaultKind) -> Fault {
        Fault {
            path: Some(path.to_string()),
            kind,
        }
    }

    pub fn any(kind: FaultKind) -> Fault {
        Fault { path: None, kind }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Apply the request, then answer only after `hold` (past the client's timeout): the
    /// ambiguous timeout after the venue acted.
    TimeoutAfterApply { hold: Duration },
    /// Answer only after `hold` with a 504, without applying: the ambiguous timeout before.
    TimeoutBeforeApply { hold: Duration },
    /// Apply the request, then answer HTTP 503 (the venue acted; the client cannot know).
    ServerErrorAfterApply,
    /// Answer HTTP 503 at once without applying (an overloaded venue; the client cannot know
    /// it did not act).
    ServerError,
    /// Refuse with `10001 … base_price …` (the stop on the wrong side of the trigger price),
    /// whatever the price: a market that moved between the decision and the request.
    BasePrice,
    /// Refuse with `10006 Too many visits!` and a reset `reset_in_ms` after the server time.
    RateLimited { reset_in_ms: i64 },
    /// HTTP 403 "access too frequent" (the IP limit's ban).
    Forbidden,
    /// Refuse with `10002`, as a skewed clock would.
    ClockSkew,
}

/// Stream faults on the next private messages: duplicates (the `order` topic's double
/// `Filled`), and a swap (messages out of order).
#[derive(Debug, Clone, Default)]
pub struct StreamFaults {
    /// This many of the next private messages are sent twice.
    pub duplicate_next: usize,
    /// The next private message is held back and sent after the one following it.
    pub swap_next: bool,
    held: Option<Outgoing>,
}

impl StreamFaults {
    /// The messages to send for `out`, in order, after the faults.
    pub fn publish(&mut self, out: Vec<Outgoing>) -> Vec<Outgoing> {
        let mut sent = Vec::with_capacity(out.len());
        for m in out {
            if !matches!(m, Outgoing::Private { .. }) {
                sent.push(m);
                continue;
            }
            if self.swap_next && self.held.is_none() {
                self.held = Some(m);
                self.swap_next = false;
                continue;
            }
            if self.duplicate_next > 0 {
                self.duplicate_next -= 1;
                sent.push(m.clone());
            }
            sent.push(m);
            if let Some(h) = self.held.take() {
                sent.push(h);
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Outgoing {
        Outgoing::Private {
            topic: "order",
            text: text.into(),
        }
    }

    #[test]
    fn duplicates_and_swaps() {
        let mut f = StreamFaults {
            duplicate_next: 1,
            ..StreamFaults::default()
        };
        assert_eq!(f.publish(vec![p("a"), p("b")]), [p("a"), p("a"), p("b")]);
        f.swap_next = true;
        assert_eq!(f.publish(vec![p("c")]), []);
        let public = Outgoing::Public {
            symbol: "BTCUSDT".into(),
            text: "t".into(),
        };
        assert_eq!(
            f.publish(vec![public.clone(), p("d"), p("e")]),
            [public, p("d"), p("c"), p("e")]
        );
    }
}
