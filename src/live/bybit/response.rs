//! What a Bybit answer means (`EXCHANGES.md` §2.2, §2.7, §2.8; `LIVE.md` §5).
//!
//! Business errors come back with HTTP 200 and `retCode != 0`, so an answer is read in two
//! steps: the transport ([`Transport`]: not sent, timed out, an HTTP status) and then the
//! envelope's `retCode`/`retMsg` ([`classify`]). Either gives an [`Outcome`]; [`answer`]
//! turns an outcome of a seam command into what happens next: a [`VenueEvent`] for the
//! lifecycle, or an adapter-level action (resync the clock, halt, stop with an alert).
//!
//! The split follows NautilusTrader's outcome policy: *rejected* only when the venue proved
//! it did not act; anything after which the request may have acted is *ambiguous* and is
//! resolved by reading the position back, never by a blind retry.

use serde_json::Value;

use super::json::{self, ParseError};
use crate::venue::{Command, OrderRef, RejectReason, VenueEvent};

/// `retCode`s with a meaning of their own (`EXCHANGES.md` §2.8; Bybit's error page).
pub mod code {
    pub const OK: i64 = 0;
    /// TP/SL not modified: the value is already set (an idempotent retry).
    pub const NOT_MODIFIED: i64 = 34040;
    pub const PARAMS: i64 = 10001;
    pub const TIMESTAMP: i64 = 10002;
    pub const API_KEY_INVALID: i64 = 10003;
    pub const SIGN: i64 = 10004;
    pub const PERMISSION: i64 = 10005;
    pub const RATE_LIMIT: i64 = 10006;
    pub const NOT_LOGGED_IN: i64 = 10007;
    pub const USER_BANNED: i64 = 10008;
    pub const IP_BANNED: i64 = 10009;
    pub const UNMATCHED_IP: i64 = 10010;
    pub const INTERNAL: i64 = 10016;
    pub const IP_RATE_LIMIT: i64 = 10018;
    pub const SERVER_ERROR: i64 = 10000;
    pub const KEY_EXPIRED: i64 = 33004;
    pub const ORDER_NOT_EXIST: i64 = 110001;
    pub const REDUCE_ONLY: i64 = 110017;
    pub const TRIGGER_RISING: i64 = 110092;
    pub const TRIGGER_FALLING: i64 = 110093;
}

/// How long to wait after a `10006` whose reset header is missing or unreadable.
pub const DEFAULT_RETRY_AFTER_MS: i64 = 1000;

/// The envelope of every REST answer: `{"retCode","retMsg","result","retExtInfo","time"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub ret_code: i64,
    pub ret_msg: String,
    /// `{}` when the endpoint returns nothing (trading-stop).
    pub result: Value,
    /// The server's time (ms) when it answered.
    pub time: Option<i64>,
}

/// Parses a REST body's envelope.
pub fn parse_envelope(body: &str) -> Result<Envelope, ParseError> {
    let v = json::parse_text(body)?;
    let o = json::object(&v, "")?;
    Ok(Envelope {
        ret_code: o.int("retCode")?,
        ret_msg: o.opt_str("retMsg")?.unwrap_or_default().to_string(),
        result: o.get("result").cloned().unwrap_or(Value::Null),
        time: o.opt_int("time")?,
    })
}

/// Bybit's rate-limit headers (`X-Bapi-Limit`, `X-Bapi-Limit-Status`,
/// `X-Bapi-Limit-Reset-Timestamp`), as far as present and readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: Option<i64>,
    /// Requests left in the current window.
    pub remaining: Option<i64>,
    /// When the window resets (epoch ms).
    pub reset_at_ms: Option<i64>,
}

impl RateHeaders {
    /// From `(name, value)` pairs, names compared without case.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> RateHeaders {
        let mut h = RateHeaders::default();
        for (name, value) in pairs {
            let v = value.trim().parse::<i64>().ok();
            match name.to_ascii_lowercase().as_str() {
                "x-bapi-limit" => h.limit = v,
                "x-bapi-limit-status" => h.remaining = v,
                "x-bapi-limit-reset-timestamp" => h.reset_at_ms = v,
                _ => {}
            }
        }
        h
    }
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `0`: done.
    Done,
    /// `34040`: the stop is already at that value: done (an idempotent retry).
    NotModified,
    /// The stop is at or through the price the venue judges it against: it would trigger at
    /// once (`10001 … base_price`, `110092`/`110093`). The position must close at market.
    WouldTrigger,
    /// A reduce-only close found nothing to reduce (`110017`): probably already flat.
    NoPosition,
    /// The venue proved it did not act, for another reason (a parameter, an unknown order,
    /// a gateway refusal: an HTTP 4xx status is given as its number).
    Invalid { code: i64, message: String },
    /// Too many requests (`10006`, `10018`): retry after this long, with the newest stop.
    RateLimited { retry_after_ms: i64 },
    /// `10002`: the timestamp is outside the window. Resync the clock, retry once.
    ClockSkew,
    /// Bad key, signature, permission, IP binding, expired key: fatal, never retried.
    Auth { code: i64, message: String },
    /// HTTP 403 (IP limit: at least 10 minutes) or `10009`: no REST to this host for now.
    Banned,
    /// The request may or may not have acted (5xx, 429, timeout, reset after sending, an
    /// unreadable answer, `10000`/`10016`): read back before anything else.
    Ambiguous { detail: String },
    /// It failed before anything was sent: safe to send again as is.
    NotSent { detail: String },
}

/// Classifies a `retCode`/`retMsg` pair; `now_ms` and the rate headers give a `10006`'s wait.
pub fn classify(ret_code: i64, ret_msg: &str, rate: &RateHeaders, now_ms: i64) -> Outcome {
    use code::*;
    match ret_code {
        OK => Outcome::Done,
        NOT_MODIFIED => Outcome::NotModified,
        PARAMS if would_trigger_message(ret_msg) => Outcome::WouldTrigger,
        TRIGGER_RISING | TRIGGER_FALLING => Outcome::WouldTrigger,
        REDUCE_ONLY => Outcome::NoPosition,
        TIMESTAMP => Outcome::ClockSkew,
        API_KEY_INVALID | SIGN | PERMISSION | NOT_LOGGED_IN | USER_BANNED | UNMATCHED_IP
        | KEY_EXPIRED => Outcome::Auth {
            code: ret_code,
            message: ret_msg.to_string(),
        },
        IP_BANNED => Outcome::Banned,
        RATE_LIMIT | IP_RATE_LIMIT => Outcome::RateLimited {
            retry_after_ms: rate
                .reset_at_ms
                .map_or(DEFAULT_RETRY_AFTER_MS, |at| (at - now_ms).max(0)),
        },
        SERVER_ERROR | INTERNAL | 429 => Outcome::Ambiguous {
            detail: format!("retCode {ret_code}: {ret_msg}"),
        },
        _ => Outcome::Invalid {
            code: ret_code,
            message: ret_msg.to_string(),
        },
    }
}

/// `10001`'s "SL … should lower/greater … base_price" (ccxt #19089): the stop is on the wrong
/// side of the trigger price. Other `10001`s are plain parameter errors.
fn would_trigger_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("base_price") && (m.contains("should lower") || m.contains("should greater"))
}

/// What the transport saw of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport<'a> {
    /// It never left (connect refused, DNS, TLS before sending).
    NotSent(String),
    /// No answer in time after sending.
    TimedOut,
    /// The connection broke after the request was (maybe) sent.
    ResetAfterSend(String),
    /// An HTTP answer: its status, rate headers and body.
    Answered {
        status: u16,
        rate: RateHeaders,
        body: &'a str,
    },
}

/// The outcome of a request from what the transport saw.
pub fn outcome(transport: &Transport<'_>, now_ms: i64) -> Outcome {
    match transport {
        Transport::NotSent(detail) => Outcome::NotSent {
            detail: detail.clone(),
        },
        Transport::TimedOut => Outcome::Ambiguous {
            detail: "timed out".into(),
        },
        Transport::ResetAfterSend(detail) => Outcome::Ambiguous {
            detail: format!("connection lost after sending: {detail}"),
        },
        Transport::Answered { status, rate, body } => match *status {
            200 => match parse_envelope(body) {
                Ok(env) => classify(env.ret_code, &env.ret_msg, rate, now_ms),
                // Sent and answered, but unreadable: it may have acted.
                Err(e) => Outcome::Ambiguous {
                    detail: format!("unreadable answer: {e}"),
                },
            },
            401 => Outcome::Auth {
                code: 401,
                message: "HTTP 401".into(),
            },
            403 => Outcome::Banned,
            408 | 429 | 500..=599 => Outcome::Ambiguous {
                detail: format!("HTTP {status}"),
            },
            s => Outcome::Invalid {
                code: s as i64,
                message: format!("HTTP {s}"),
            },
        },
    }
}

/// What happens after a command's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Tell the lifecycle (`StopOrder::on_event`).
    Event(VenueEvent),
    /// Accepted; the result arrives on the private stream (a close's fill) or in the body
    /// (a query's position list: see [`super::snapshot::resolve_query`]).
    Pending,
    /// Read the position back (`position/list`) before anything else: a close at market
    /// whose outcome is unknown, or that found nothing to close.
    ReadBack,
    /// Resync the clock (`/v5/market/time`) and send the same request once more.
    ResyncAndRetry,
    /// It was never sent (or it was a read): send it again as is.
    Retry,
    /// Wait, then send again (a close at market, or a read, that was rate limited).
    RetryAfter { ms: i64 },
    /// No REST to this host until the ban ends; the stops on the exchange keep working.
    Halt,
    /// Stop and alert: keys, permissions, or a refused close at market.
    Fatal { code: i64, message: String },
}

/// What follows `outcome` of `command` at `ts`. `market` is the last trigger-price point
/// (units) of the symbol: Bybit's "would trigger" refusal carries the price only as text in
/// an unstated scale, so the lifecycle is given the price the adapter last saw.
pub fn answer(command: &Command, outcome: &Outcome, ts: i64, market: i64) -> Answer {
    match *command {
        Command::Place { order, stop } | Command::Amend { order, stop, .. } => {
            stop_answer(order, Some(stop), outcome, ts, market)
        }
        Command::Cancel { order } => stop_answer(order, None, outcome, ts, market),
        Command::CloseAtMarket { .. } => match outcome {
            Outcome::Done => Answer::Pending,
            Outcome::Ambiguous { .. } | Outcome::NoPosition => Answer::ReadBack,
            other => common(other).unwrap_or_else(|| Answer::Fatal {
                code: code_of(other),
                message: format!("close at market refused: {other:?}"),
            }),
        },
        // A read changes nothing: any unknown outcome is simply read again.
        Command::Query { .. } => match outcome {
            Outcome::Done => Answer::Pending,
            Outcome::Ambiguous { .. } => Answer::Retry,
            other => common(other).unwrap_or_else(|| Answer::Fatal {
                code: code_of(other),
                message: format!("position read refused: {other:?}"),
            }),
        },
    }
}

/// A trading-stop set (`stop`) or removal (`None`) on `order`.
fn stop_answer(
    order: OrderRef,
    stop: Option<i64>,
    outcome: &Outcome,
    ts: i64,
    market: i64,
) -> Answer {
    let rejected = |reason| Answer::Event(VenueEvent::Rejected { order, ts, reason });
    match outcome {
        Outcome::Done | Outcome::NotModified => Answer::Event(match stop {
            Some(stop) => VenueEvent::Accepted {
                order,
                stop,
                ts,
                venue_id: None,
            },
            None => VenueEvent::Cancelled { order, ts },
        }),
        Outcome::WouldTrigger => rejected(RejectReason::WouldTrigger { market }),
        Outcome::NoPosition => rejected(RejectReason::NoPosition),
        Outcome::Invalid { code, .. } => rejected(RejectReason::Invalid { code: *code }),
        Outcome::RateLimited { retry_after_ms } => rejected(RejectReason::RateLimited {
            retry_after_ms: *retry_after_ms,
        }),
        Outcome::Ambiguous { .. } => Answer::Event(VenueEvent::Ambiguous { order, ts }),
        Outcome::ClockSkew => Answer::ResyncAndRetry,
        Outcome::NotSent { .. } => Answer::Retry,
        Outcome::Banned => Answer::Halt,
        Outcome::Auth { code, message } => Answer::Fatal {
            code: *code,
            message: message.clone(),
        },
    }
}

/// The adapter-level outcomes, the same for every command.
fn common(outcome: &Outcome) -> Option<Answer> {
    Some(match outcome {
        Outcome::ClockSkew => Answer::ResyncAndRetry,
        Outcome::NotSent { .. } => Answer::Retry,
        Outcome::Banned => Answer::Halt,
        Outcome::RateLimited { retry_after_ms } => Answer::RetryAfter {
            ms: *retry_after_ms,
        },
        Outcome::Auth { code, message } => Answer::Fatal {
            code: *code,
            message: message.clone(),
        },
        _ => return None,
    })
}

fn code_of(outcome: &Outcome) -> i64 {
    match outcome {
        Outcome::Invalid { code, .. } | Outcome::Auth { code, .. } => *code,
        Outcome::WouldTrigger => code::PARAMS,
        Outcome::NotModified => code::NOT_MODIFIED,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: RateHeaders = RateHeaders {
        limit: None,
        remaining: None,
        reset_at_ms: None,
    };

    fn oref(seq: u32) -> OrderRef {
        OrderRef { position: 9, seq }
    }

    #[test]
    fn the_docs_envelope() {
        // The trading-stop response example (Bybit docs, position/trading-stop).
        let e = parse_envelope(
            r#"{"retCode":0,"retMsg":"OK","result":{},"retExtInfo":{},"time":1672283125359}"#,
        )
        .unwrap();
        assert_eq!(e.ret_code, 0);
        assert_eq!(e.ret_msg, "OK");
        assert_eq!(e.result, serde_json::json!({}));
        assert_eq!(e.time, Some(1672283125359));
        assert_eq!(
            parse_envelope(r#"{"retMsg":"OK"}"#).unwrap_err().field,
            "retCode"
        );
        assert_eq!(
            parse_envelope(r#"{"retCode":"zero"}"#).unwrap_err().field,
            "retCode"
        );
        assert_eq!(parse_envelope("[1]").unwrap_err().field, "json");
        assert_eq!(parse_envelope("<html>").unwrap_err().field, "json");
    }

    #[test]
    fn ret_codes_are_classified() {
        let c = |code, msg: &str| classify(code, msg, &NONE, 0);
        assert_eq!(c(0, "OK"), Outcome::Done);
        assert_eq!(
            c(
                34040,
                "Not modified. Indicates you already set this TP/SL value"
            ),
            Outcome::NotModified
        );
        // ccxt #19089's message for a stop on the wrong side.
        assert_eq!(
            c(
                10001,
                "sl:257970000 set for Sell position should greater base_price:259477000??LastPrice"
            ),
            Outcome::WouldTrigger
        );
        assert_eq!(
            c(
                10001,
                "StopLoss:3000000 set for Buy position should lower base_price:2900000??MarkPrice"
            ),
            Outcome::WouldTrigger
        );
        assert_eq!(
            c(110092, "expect Rising, but trigger_price[1] <= current[2]"),
            Outcome::WouldTrigger
        );
        assert_eq!(c(110093, "expect Falling"), Outcome::WouldTrigger);
        // pybit #272's parameter error is not a would-trigger.
        assert_eq!(
            c(
                10001,
                "slOrderType can not have a value when tpSlMode is empty"
            ),
            Outcome::Invalid {
                code: 10001,
                message: "slOrderType can not have a value when tpSlMode is empty".into()
            }
        );
        assert!(matches!(
            c(110001, "Order does not exist"),
            Outcome::Invalid { code: 110001, .. }
        ));
        assert_eq!(
            c(110017, "ReduceOnly rule not satisfied"),
            Outcome::NoPosition
        );
        assert_eq!(
            c(10002, "invalid request, please check your server timestamp"),
            Outcome::ClockSkew
        );
        for code in [10003, 10004, 10005, 10007, 10008, 10010, 33004] {
            assert!(
                matches!(c(code, "x"), Outcome::Auth { code: k, .. } if k == code),
                "{code}"
            );
        }
        assert_eq!(c(10009, "IP has been banned"), Outcome::Banned);
        for code in [10000, 10016, 429] {
            assert!(
                matches!(c(code, "busy"), Outcome::Ambiguous { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn rate_limits_wait_for_the_reset_header() {
        let h = RateHeaders::from_pairs([
            ("X-Bapi-Limit", "10"),
            ("x-bapi-limit-status", "0"),
            ("X-Bapi-Limit-Reset-Timestamp", "1672283126000"),
            ("Content-Type", "application/json"),
        ]);
        assert_eq!(
            h,
            RateHeaders {
                limit: Some(10),
                remaining: Some(0),
                reset_at_ms: Some(1672283126000)
            }
        );
        assert_eq!(
            classify(10006, "Too many visits!", &h, 1672283125359),
            Outcome::RateLimited {
                retry_after_ms: 641
            }
        );
        // A reset already past waits nothing; no header waits the default.
        assert_eq!(
            classify(10006, "Too many visits!", &h, 1672283127000),
            Outcome::RateLimited { retry_after_ms: 0 }
        );
        assert_eq!(
            classify(10006, "Too many visits!", &NONE, 5),
            Outcome::RateLimited {
                retry_after_ms: DEFAULT_RETRY_AFTER_MS
            }
        );
        let junk = RateHeaders::from_pairs([("X-Bapi-Limit-Reset-Timestamp", "soon")]);
        assert_eq!(junk.reset_at_ms, None);
    }

    #[test]
    fn transport_failures() {
        let ok = r#"{"retCode":0,"retMsg":"OK","result":{},"retExtInfo":{},"time":1}"#;
        let answered = |status, body| Transport::Answered {
            status,
            rate: NONE,
            body,
        };
        assert_eq!(outcome(&answered(200, ok), 0), Outcome::Done);
        assert!(matches!(
            outcome(&Transport::TimedOut, 0),
            Outcome::Ambiguous { .. }
        ));
        assert!(matches!(
            outcome(&Transport::ResetAfterSend("reset".into()), 0),
            Outcome::Ambiguous { .. }
        ));
        assert!(matches!(
            outcome(&Transport::NotSent("refused".into()), 0),
            Outcome::NotSent { .. }
        ));
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(outcome(&answered(s, ""), 0), Outcome::Ambiguous { .. }),
                "{s}"
            );
        }
        assert_eq!(
            outcome(&answered(403, "access too frequent"), 0),
            Outcome::Banned
        );
        assert!(matches!(
            outcome(&answered(401, ""), 0),
            Outcome::Auth { code: 401, .. }
        ));
        assert!(matches!(
            outcome(&answered(404, ""), 0),
            Outcome::Invalid { code: 404, .. }
        ));
        // Answered 200 but unreadable: it may have acted.
        let o = outcome(&answered(200, "{\"retCode\":"), 0);
        assert!(
            matches!(&o, Outcome::Ambiguous { detail } if detail.contains("json")),
            "{o:?}"
        );
    }

    #[test]
    fn stop_commands_answer_with_seam_events() {
        let place = Command::Place {
            order: oref(1),
            stop: 6_125_000,
        };
        let amend = Command::Amend {
            order: oref(2),
            replaces: oref(1),
            stop: 6_130_000,
        };
        let cancel = Command::Cancel { order: oref(2) };
        let ev = |e| Answer::Event(e);
        assert_eq!(
            answer(&place, &Outcome::Done, 10, 0),
            ev(VenueEvent::Accepted {
                order: oref(1),
                stop: 6_125_000,
                ts: 10,
                venue_id: None
            })
        );
        // 34040 on a retried amend: the stop is where we wanted it.
        assert_eq!(
            answer(&amend, &Outcome::NotModified, 11, 0),
            ev(VenueEvent::Accepted {
                order: oref(2),
                stop: 6_130_000,
                ts: 11,
                venue_id: None
            })
        );
        assert_eq!(
            answer(&cancel, &Outcome::Done, 12, 0),
            ev(VenueEvent::Cancelled {
                order: oref(2),
                ts: 12
            })
        );
        assert_eq!(
            answer(&amend, &Outcome::WouldTrigger, 13, 6_131_000),
            ev(VenueEvent::Rejected {
                order: oref(2),
                ts: 13,
                reason: RejectReason::WouldTrigger { market: 6_131_000 }
            })
        );
        assert_eq!(
            answer(
                &place,
                &Outcome::Invalid {
                    code: 10001,
                    message: "x".into()
                },
                14,
                0
            ),
            ev(VenueEvent::Rejected {
                order: oref(1),
                ts: 14,
                reason: RejectReason::Invalid { code: 10001 }
            })
        );
        assert_eq!(
            answer(
                &place,
                &Outcome::RateLimited {
                    retry_after_ms: 640
                },
                15,
                0
            ),
            ev(VenueEvent::Rejected {
                order: oref(1),
                ts: 15,
                reason: RejectReason::RateLimited {
                    retry_after_ms: 640
                }
            })
        );
        assert_eq!(
            answer(
                &amend,
                &Outcome::Ambiguous {
                    detail: "503".into()
                },
                16,
                0
            ),
            ev(VenueEvent::Ambiguous {
                order: oref(2),
                ts: 16
            })
        );
        assert_eq!(
            answer(&place, &Outcome::ClockSkew, 0, 0),
            Answer::ResyncAndRetry
        );
        assert_eq!(answer(&place, &Outcome::Banned, 0, 0), Answer::Halt);
        assert_eq!(
            answer(
                &place,
                &Outcome::NotSent {
                    detail: "dns".into()
                },
                0,
                0
            ),
            Answer::Retry
        );
        assert!(matches!(
            answer(
                &cancel,
                &Outcome::Auth {
                    code: 10004,
                    message: "sign".into()
                },
                0,
                0
            ),
            Answer::Fatal { code: 10004, .. }
        ));
    }

    #[test]
    fn closes_and_queries_answer_the_adapter() {
        let close = Command::CloseAtMarket { position: 9 };
        let query = Command::Query { order: oref(1) };
        assert_eq!(answer(&close, &Outcome::Done, 0, 0), Answer::Pending);
        assert_eq!(
            answer(&close, &Outcome::Ambiguous { detail: "t".into() }, 0, 0),
            Answer::ReadBack
        );
        assert_eq!(answer(&close, &Outcome::NoPosition, 0, 0), Answer::ReadBack);
        assert_eq!(
            answer(&close, &Outcome::RateLimited { retry_after_ms: 5 }, 0, 0),
            Answer::RetryAfter { ms: 5 }
        );
        assert!(matches!(
            answer(
                &close,
                &Outcome::Invalid {
                    code: 110007,
                    message: "x".into()
                },
                0,
                0
            ),
            Answer::Fatal { code: 110007, .. }
        ));
        assert_eq!(answer(&query, &Outcome::Done, 0, 0), Answer::Pending);
        assert_eq!(
            answer(&query, &Outcome::Ambiguous { detail: "t".into() }, 0, 0),
            Answer::Retry
        );
        assert_eq!(
            answer(&query, &Outcome::ClockSkew, 0, 0),
            Answer::ResyncAndRetry
        );
    }
}
