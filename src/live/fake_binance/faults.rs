//! The faults the fake Binance can inject (`EXCHANGES.md` §4.3): one-shot REST faults queued
//! per endpoint (path and method), and user-stream faults (a message repeated, or moved
//! within its change) on the messages they pick.

use std::time::Duration;

use super::model::Outgoing;

/// A REST fault for the next request to `path` (any path when `None`), with `method` when
/// given (`DELETE` of `/fapi/v1/algoOrder` is a cancel, `POST` a create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub method: Option<String>,
    pub path: Option<String>,
    pub kind: FaultKind,
}

impl Fault {
    pub fn on(method: &str, path: &str, kind: FaultKind) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            kind,
        }
    }

    pub fn any(kind: FaultKind) -> Fault {
        Fault {
            method: None,
            path: None,
            kind,
        }
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| p == path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Apply the request, then answer only after `hold` (past the client's timeout): the
    /// ambiguous timeout after the venue acted. (The server holds; the model applies.)
    TimeoutAfterApply { hold: Duration },
    /// Answer only after `hold` with a 504, without applying: the ambiguous timeout before.
    TimeoutBeforeApply { hold: Duration },
    /// Apply the request, then answer HTTP 503 with `-1006` (the venue acted; the client
    /// cannot know).
    ServerErrorAfterApply,
    /// Answer HTTP 503 with `-1007` without applying.
    ServerErrorBeforeApply,
    /// Apply the request, then close the connection without an answer.
    DropAfterApply,
    /// Refuse with `-2021` whatever the price: the market moved between the cancel and the
    /// create.
    WouldTrigger,
    /// Refuse with `-2011` / `-2013` as if the order were gone (a stop that triggered during
    /// the call).
    UnknownOrder,
    /// Refuse with `-1021`, as a skewed clock would.
    ClockSkew,
    /// HTTP 429 `-1003` with `Retry-After: retry_after_s`.
    RateLimited { retry_after_s: i64 },
    /// HTTP 418: the IP banned for `for_ms`.
    Banned { for_ms: i64 },
    /// Refuse with `-1125` (the listenKey is gone).
    BadListenKey,
}

/// The user-stream message a [`StreamFault`] applies to: its event (`e`: `ALGO_UPDATE`,
/// `ORDER_TRADE_UPDATE`, `ACCOUNT_UPDATE`) and, when given, its status (`o.X`: `NEW`,
/// `FINISHED`, `PARTIALLY_FILLED`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub event: &'static str,
    pub status: Option<&'static str>,
}

impl Pick {
    /// An `ALGO_UPDATE` of this status.
    pub fn algo(status: &'static str) -> Pick {
        Pick {
            event: "ALGO_UPDATE",
            status: Some(status),
        }
    }

    /// An `ORDER_TRADE_UPDATE` of this status.
    pub fn order(status: &'static str) -> Pick {
        Pick {
            event: "ORDER_TRADE_UPDATE",
            status: Some(status),
        }
    }

    /// Any message of this event.
    pub fn event(event: &'static str) -> Pick {
        Pick {
            event,
            status: None,
        }
    }

    /// Any `ACCOUNT_UPDATE`.
    pub fn account() -> Pick {
        Pick {
            event: "ACCOUNT_UPDATE",
            status: None,
        }
    }

    fn matches(&self, text: &str) -> bool {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return false;
        };
        v.get("e").and_then(|e| e.as_str()) == Some(self.event)
            && self.status.is_none_or(|s| {
                v.get("o").and_then(|o| o.get("X")).and_then(|x| x.as_str()) == Some(s)
            })
    }
}

/// What a stream fault does to the message it picks, within the messages of one change (a
/// trigger's `ALGO_UPDATE`s, fill and `ACCOUNT_UPDATE`; a create's `ALGO_UPDATE`; …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Sent twice in a row (a repeated message).
    Twice,
    /// Sent before the change's other user-stream messages.
    First,
    /// Sent after them.
    Last,
}

/// A user-stream fault: `change` on the next `times` messages `pick` matches (`None`: every
/// one). Faults that pick the same message all apply (twice, and moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFault {
    pub pick: Pick,
    pub change: Change,
    pub times: Option<usize>,
}

impl StreamFault {
    /// The next message `pick` matches is sent twice.
    pub fn twice(pick: Pick) -> StreamFault {
        StreamFault {
            pick,
            change: Change::Twice,
            times: Some(1),
        }
    }

    /// The next message `pick` matches goes before the others of its change.
    pub fn first(pick: Pick) -> StreamFault {
        StreamFault {
            pick,
            change: Change::First,
            times: Some(1),
        }
    }

    /// The next message `pick` matches goes after the others of its change.
    pub fn last(pick: Pick) -> StreamFault {
        StreamFault {
            pick,
            change: Change::Last,
            times: Some(1),
        }
    }

    /// On every message `pick` matches, not just the next.
    pub fn always(mut self) -> StreamFault {
        self.times = None;
        self
    }
}

/// The user-stream faults queued, applied to each change's messages as they are published.
#[derive(Debug, Clone, Default)]
pub struct StreamFaults {
    faults: Vec<StreamFault>,
}

impl StreamFaults {
    pub fn add(&mut self, fault: StreamFault) {
        self.faults.push(fault);
    }

    /// What the faults that pick `text` do to it (each used once): sent twice or not, and
    /// where (the last fault's place wins).
    fn take(&mut self, text: &str) -> (bool, Option<Change>) {
        let (mut twice, mut place) = (false, None);
        for f in &mut self.faults {
            if f.times == Some(0) || !f.pick.matches(text) {
                continue;
            }
            if let Some(n) = &mut f.times {
                *n -= 1;
            }
            match f.change {
                Change::Twice => twice = true,
                c => place = Some(c),
            }
        }
        self.faults.retain(|f| f.times != Some(0));
        (twice, place)
    }

    /// The messages of one change after the faults: the market ones as they were, then the
    /// user-stream ones, moved or repeated.
    pub fn apply(&mut self, out: Vec<Outgoing>) -> Vec<Outgoing> {
        if self.faults.is_empty() {
            return out;
        }
        let (mut market, mut first, mut middle, mut last) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for o in out {
            let Outgoing::Private { text } = &o else {
                market.push(o);
                continue;
            };
            let (twice, place) = self.take(text);
            let to = match place {
                Some(Change::First) => &mut first,
                Some(Change::Last) => &mut last,
                _ => &mut middle,
            };
            if twice {
                to.push(o.clone());
            }
            to.push(o);
        }
        market.extend(first);
        market.extend(middle);
        market.extend(last);
        market
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: &str, x: &str) -> Outgoing {
        Outgoing::Private {
            text: format!(r#"{{"e":"{e}","o":{{"X":"{x}"}}}}"#),
        }
    }

    fn account() -> Outgoing {
        Outgoing::Private {
            text: r#"{"e":"ACCOUNT_UPDATE","a":{}}"#.into(),
        }
    }

    fn trigger() -> Vec<Outgoing> {
        vec![
            Outgoing::Market {
                symbol: "BTCUSDT".into(),
                stream: "markPrice",
                text: "{}".into(),
            },
            msg("ALGO_UPDATE", "TRIGGERING"),
            msg("ALGO_UPDATE", "TRIGGERED"),
            msg("ORDER_TRADE_UPDATE", "FILLED"),
            msg("ALGO_UPDATE", "FINISHED"),
            account(),
        ]
    }

    #[test]
    fn faults_repeat_or_move_the_messages_they_pick_once_or_always() {
        let t = trigger();
        let mut f = StreamFaults::default();
        assert_eq!(f.apply(t.clone()), t);
        f.add(StreamFault::first(Pick::account()));
        f.add(StreamFault::last(Pick::order("FILLED")));
        f.add(StreamFault::twice(Pick::algo("FINISHED")));
        let want = vec![
            t[0].clone(),
            t[5].clone(),
            t[1].clone(),
            t[2].clone(),
            t[4].clone(),
            t[4].clone(),
            t[3].clone(),
        ];
        assert_eq!(f.apply(t.clone()), want);
        // Each was used once.
        assert_eq!(f.apply(t.clone()), t);
        // Always: every change.
        f.add(StreamFault::twice(Pick::account()).always());
        for _ in 0..3 {
            let got = f.apply(t.clone());
            assert_eq!(got.len(), 7);
            assert_eq!((&got[5], &got[6]), (&t[5], &t[5]));
        }
        // Twice and moved: both.
        let mut f = StreamFaults::default();
        f.add(StreamFault::twice(Pick::account()));
        f.add(StreamFault::first(Pick::account()));
        let got = f.apply(t.clone());
        assert_eq!((&got[1], &got[2], &got[3]), (&t[5], &t[5], &t[1]));
        // A status that is not there picks nothing.
        let mut f = StreamFaults::default();
        f.add(StreamFault::twice(Pick::algo("CANCELED")));
        assert_eq!(f.apply(t.clone()), t);
    }
}
