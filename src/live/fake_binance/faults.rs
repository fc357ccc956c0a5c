//! The faults the fake Binance can inject (`EXCHANGES.md` §4.3): one-shot REST faults queued
//! per endpoint (path and method), and the trigger-time rejection.

use std::time::Duration;

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
