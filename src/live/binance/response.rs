//! What a Binance USD-M answer means (`EXCHANGES.md` §1.7, §1.8; `LIVE.md` §5).
//!
//! Binance answers a success with HTTP 200 and the result itself, and a refusal with a 4xx
//! and `{"code":-2021,"msg":"…"}`. So an answer is read in two steps: the transport
//! ([`Transport`]: not sent, timed out, an HTTP status with its headers) and then the error
//! body's `code` ([`classify`]). Either gives an [`Outcome`]; [`answer`] turns an outcome of a
//! seam command into what happens next: a [`VenueEvent`] for the lifecycle, or an
//! adapter-level action (resync the clock, refresh the tick sizes, check the stop and the
//! position, wait out a ban, stop with an alert).
//!
//! As for Bybit (NautilusTrader's outcome policy): *rejected* only when the venue proved it
//! did not act; anything after which the request may have acted is *ambiguous* and is
//! resolved by a query by `clientAlgoId`, never by a blind retry.

use super::super::bybit::json::{self, ParseError};
use crate::venue::{Command, OrderRef, RejectReason, VenueEvent};

/// Binance error codes with a reaction of their own (`EXCHANGES.md` §1.8).
pub mod code {
    /// An unexpected response: execution status unknown.
    pub const UNKNOWN: i64 = -1006;
    /// Timeout waiting for the backend: execution status unknown.
    pub const TIMEOUT: i64 = -1007;
    /// Server overloaded; reduce-only and close-position orders are exempt.
    pub const THROTTLED: i64 = -1008;
    pub const TOO_MANY_REQUESTS: i64 = -1003;
    pub const TOO_MANY_ORDERS: i64 = -1015;
    pub const UNAUTHORIZED: i64 = -1002;
    pub const INVALID_TIMESTAMP: i64 = -1021;
    pub const INVALID_SIGNATURE: i64 = -1022;
    pub const FILTER: i64 = -1013;
    pub const BAD_PRECISION: i64 = -1111;
    pub const INVALID_LISTEN_KEY: i64 = -1125;
    pub const CANCEL_REJECTED: i64 = -2011;
    pub const NO_SUCH_ORDER: i64 = -2013;
    pub const BAD_API_KEY: i64 = -2014;
    pub const REJECTED_MBX_KEY: i64 = -2015;
    pub const WOULD_TRIGGER: i64 = -2021;
    pub const REDUCE_ONLY_REJECT: i64 = -2022;
    pub const PRICE_LESS_THAN_TICK: i64 = -4013;
    pub const PRICE_NOT_BY_TICK: i64 = -4014;
    pub const POSITION_SIDE_NOT_MATCH: i64 = -4061;
    pub const DUPLICATED_CLIENT_ID: i64 = -4116;
    pub const REDUCE_ONLY_CONFLICT: i64 = -4118;
    pub const STOP_ORDER_SWITCH_ALGO: i64 = -4120;
    pub const CLOSE_POSITION_EXISTS: i64 = -4130;
    pub const MARKET_ORDER_REJECT: i64 = -4131;
    pub const HEDGE_MODE_MISMATCH: i64 = -4531;
}

/// How long to wait after a 429 whose `Retry-After` is missing or unreadable.
pub const DEFAULT_RETRY_AFTER_MS: i64 = 1000;

/// An error body: `{"code":-2021,"msg":"Order would immediately trigger."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: i64,
    pub msg: String,
}

/// Parses an error body.
pub fn parse_error(body: &str) -> Result<ErrorBody, ParseError> {
    let v = json::parse_text(body)?;
    let o = json::object(&v, "")?;
    Ok(ErrorBody {
        code: o.int("code")?,
        msg: o.opt_str("msg")?.unwrap_or_default().to_string(),
    })
}

/// Binance's usage headers (`X-MBX-USED-WEIGHT-1M`, `X-MBX-ORDER-COUNT-10S`,
/// `X-MBX-ORDER-COUNT-1M`) and `Retry-After` (seconds), as far as present and readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub used_weight_1m: Option<i64>,
    pub order_count_10s: Option<i64>,
    pub order_count_1m: Option<i64>,
    pub retry_after_s: Option<i64>,
}

impl RateHeaders {
    /// From `(name, value)` pairs, names compared without case.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> RateHeaders {
        let mut h = RateHeaders::default();
        for (name, value) in pairs {
            let v = value.trim().parse::<i64>().ok();
            match name.to_ascii_lowercase().as_str() {
                "x-mbx-used-weight-1m" => h.used_weight_1m = v,
                "x-mbx-order-count-10s" => h.order_count_10s = v,
                "x-mbx-order-count-1m" => h.order_count_1m = v,
                "retry-after" => h.retry_after_s = v,
                _ => {}
            }
        }
        h
    }

    fn retry_after_ms(&self) -> i64 {
        self.retry_after_s
            .filter(|s| *s >= 0)
            .map_or(DEFAULT_RETRY_AFTER_MS, |s| s * 1000)
    }
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200: done (the body holds the result).
    Done,
    /// `-2021`: the stop is at or through the price it is judged against. Close at market
    /// now, never re-place the same price.
    WouldTrigger,
    /// `-2011` (cancel) / `-2013` (query): no such order — gone (triggered, cancelled,
    /// expired) or never placed. Query the stop and the position before anything else.
    NotFound,
    /// `-4130`: a `closePosition` stop already rests in that direction: adopt it.
    AlreadyExists,
    /// `-4014`, `-4013`, `-1111`, `-1013`: a price off the grid (the tick may have changed).
    /// Refresh `exchangeInfo`, re-round, retry once.
    Precision { code: i64 },
    /// `-2022`, `-4118`: a reduce-only close with nothing to reduce: probably already flat.
    NoPosition,
    /// The venue proved it did not act, for another reason.
    Invalid { code: i64, message: String },
    /// 429 (`-1003`, `-1015`) or `-1008`: retry after this long, with the newest stop.
    RateLimited { retry_after_ms: i64 },
    /// `-1021`: the timestamp is outside the window. Resync the clock, retry once.
    ClockSkew,
    /// Bad key, signature, permission; the wrong endpoint (`-4120`) or position mode
    /// (`-4061`, `-4531`): a bug or a config error, never retried.
    Fatal { code: i64, message: String },
    /// HTTP 418: the IP is banned for this long (`Retry-After`, else the `-1003` message's
    /// "banned until"). No REST to this host until then; stops on the exchange keep working.
    Banned {
        until_ms: Option<i64>,
        retry_after_ms: Option<i64>,
    },
    /// `-1125`: the listenKey is gone. Create a new one, reconnect, re-check by REST.
    BadListenKey,
    /// It may or may not have acted (5xx, 408, timeout, reset after sending, `-1006`,
    /// `-1007`, an unreadable answer): query by client id before anything else.
    Ambiguous { detail: String },
    /// It failed before anything was sent: safe to send again as is.
    NotSent { detail: String },
}

/// Classifies an error `code`/`msg` pair; `rate` gives a rate limit's wait.
pub fn classify(code_: i64, msg: &str, rate: &RateHeaders) -> Outcome {
    use code::*;
    match code_ {
        WOULD_TRIGGER => Outcome::WouldTrigger,
        CANCEL_REJECTED | NO_SUCH_ORDER => Outcome::NotFound,
        CLOSE_POSITION_EXISTS | DUPLICATED_CLIENT_ID => Outcome::AlreadyExists,
        PRICE_NOT_BY_TICK | PRICE_LESS_THAN_TICK | BAD_PRECISION | FILTER => {
            Outcome::Precision { code: code_ }
        }
        REDUCE_ONLY_REJECT | REDUCE_ONLY_CONFLICT => Outcome::NoPosition,
        TOO_MANY_REQUESTS | TOO_MANY_ORDERS | THROTTLED => Outcome::RateLimited {
            retry_after_ms: rate.retry_after_ms(),
        },
        INVALID_TIMESTAMP => Outcome::ClockSkew,
        INVALID_LISTEN_KEY => Outcome::BadListenKey,
        UNKNOWN | TIMEOUT => Outcome::Ambiguous {
            detail: format!("code {code_}: {msg}"),
        },
        UNAUTHORIZED
        | INVALID_SIGNATURE
        | BAD_API_KEY
        | REJECTED_MBX_KEY
        | STOP_ORDER_SWITCH_ALGO
        | POSITION_SIDE_NOT_MATCH
        | HEDGE_MODE_MISMATCH => Outcome::Fatal {
            code: code_,
            message: msg.to_string(),
        },
        _ => Outcome::Invalid {
            code: code_,
            message: msg.to_string(),
        },
    }
}

/// The epoch ms in a `-1003` ban message ("… IP(…) banned until 1567580472458. …").
pub fn banned_until(msg: &str) -> Option<i64> {
    let rest = msg.split("banned until").nth(1)?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
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
    /// An HTTP answer: its status, usage headers and body.
    Answered {
        status: u16,
        rate: RateHeaders,
        body: &'a str,
    },
}

/// The outcome of a request from what the transport saw.
pub fn outcome(transport: &Transport<'_>) -> Outcome {
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
        Transport::Answered { status, rate, body } => {
            let error = parse_error(body).ok();
            match *status {
                200..=299 => Outcome::Done,
                418 => Outcome::Banned {
                    until_ms: error.as_ref().and_then(|e| banned_until(&e.msg)),
                    retry_after_ms: rate.retry_after_s.map(|s| s * 1000),
                },
                429 => Outcome::RateLimited {
                    retry_after_ms: rate.retry_after_ms(),
                },
                // "Execution status is UNKNOWN and could have been a success."
                408 | 500..=599 => Outcome::Ambiguous {
                    detail: match error {
                        Some(e) => format!("HTTP {status}, code {}: {}", e.code, e.msg),
                        None => format!("HTTP {status}"),
                    },
                },
                // The WAF: nothing reached the API.
                403 => Outcome::Invalid {
                    code: 403,
                    message: "HTTP 403 (WAF)".into(),
                },
                s => match error {
                    Some(e) => classify(e.code, &e.msg, rate),
                    // A 4xx without a readable code: the venue refused it as a request.
                    None => Outcome::Invalid {
                        code: s as i64,
                        message: format!("HTTP {s}"),
                    },
                },
            }
        }
    }
}

/// What happens after a command's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Tell the lifecycle (`StopOrder::on_event`).
    Event(VenueEvent),
    /// Accepted; the body is the result (a create's or a query's algo order: see
    /// [`super::snapshot::resolve_query`]) or it arrives on the stream (a close's fill).
    Pending,
    /// The cancel found no such stop (`-2011`): it may have just triggered. Query the stop
    /// and the position; never place a stop on a closed position.
    CheckStopAndPosition,
    /// A `closePosition` stop already rests that way: read `openAlgoOrders` and adopt it.
    AdoptResting,
    /// Read the position back before anything else (a close whose outcome is unknown, or that
    /// found nothing to close).
    ReadBack,
    /// Refresh `exchangeInfo` (the tick may have changed), re-round and send once more.
    RefreshInstruments,
    /// Resync the clock (`/fapi/v1/time`) and send the same request once more.
    ResyncAndRetry,
    /// It was never sent (or it was a read): send it again as is.
    Retry,
    /// Wait, then send again (a close or a read that was rate limited).
    RetryAfter { ms: i64 },
    /// No REST to this host until the ban ends; the stops on the exchange keep working.
    Halt {
        until_ms: Option<i64>,
        retry_after_ms: Option<i64>,
    },
    /// A new listenKey, a reconnect and a REST re-check.
    RenewListenKey,
    /// Stop and alert: keys, a bug, a refused close.
    Fatal { code: i64, message: String },
}

/// What follows `outcome` of `command` at `ts`. `market` is the last trigger-price point
/// (units) of the symbol: `-2021` carries no price, so the lifecycle is given the price the
/// adapter last saw.
pub fn answer(command: &Command, outcome: &Outcome, ts: i64, market: i64) -> Answer {
    match *command {
        Command::Place { order, .. } => create_answer(order, outcome, ts, market),
        Command::Cancel { order } => cancel_answer(order, outcome, ts),
        // Never sent to Binance (the request builder refuses it): a bug if it gets here.
        Command::Amend { .. } => Answer::Fatal {
            code: 0,
            message: "an amend reached the Binance venue (it has none)".into(),
        },
        Command::CloseAtMarket { .. } => match outcome {
            Outcome::Done => Answer::Pending,
            Outcome::Ambiguous { .. } | Outcome::NoPosition => Answer::ReadBack,
            other => common(other).unwrap_or_else(|| Answer::Fatal {
                code: code_of(other),
                message: format!("close at market refused: {other:?}"),
            }),
        },
        // A read changes nothing: any unknown outcome is simply read again. `-2013` is the
        // answer itself (no such stop): resolved like an absent order.
        Command::Query { .. } => match outcome {
            Outcome::Done | Outcome::NotFound => Answer::Pending,
            Outcome::Ambiguous { .. } => Answer::Retry,
            other => common(other).unwrap_or_else(|| Answer::Fatal {
                code: code_of(other),
                message: format!("stop read refused: {other:?}"),
            }),
        },
    }
}

/// A create (`POST /fapi/v1/algoOrder`) of `order`.
fn create_answer(order: OrderRef, outcome: &Outcome, ts: i64, market: i64) -> Answer {
    let rejected = |reason| Answer::Event(VenueEvent::Rejected { order, ts, reason });
    match outcome {
        // The body holds the algo order (its algoId, its trigger): the adapter reads it.
        Outcome::Done => Answer::Pending,
        Outcome::WouldTrigger => rejected(RejectReason::WouldTrigger { market }),
        Outcome::NoPosition => rejected(RejectReason::NoPosition),
        Outcome::AlreadyExists => Answer::AdoptResting,
        Outcome::Precision { .. } => Answer::RefreshInstruments,
        Outcome::Invalid { code, .. } => rejected(RejectReason::Invalid { code: *code }),
        Outcome::NotFound => rejected(RejectReason::Invalid {
            code: code::NO_SUCH_ORDER,
        }),
        Outcome::RateLimited { retry_after_ms } => rejected(RejectReason::RateLimited {
            retry_after_ms: *retry_after_ms,
        }),
        Outcome::Ambiguous { .. } => Answer::Event(VenueEvent::Ambiguous { order, ts }),
        other => common(other).unwrap_or_else(|| Answer::Fatal {
            code: code_of(other),
            message: format!("create refused: {other:?}"),
        }),
    }
}

/// A cancel (`DELETE /fapi/v1/algoOrder`) of `order`.
fn cancel_answer(order: OrderRef, outcome: &Outcome, ts: i64) -> Answer {
    match outcome {
        Outcome::Done => Answer::Event(VenueEvent::Cancelled { order, ts }),
        Outcome::NotFound => Answer::CheckStopAndPosition,
        Outcome::Ambiguous { .. } => Answer::Event(VenueEvent::Ambiguous { order, ts }),
        Outcome::RateLimited { retry_after_ms } => Answer::Event(VenueEvent::Rejected {
            order,
            ts,
            reason: RejectReason::RateLimited {
                retry_after_ms: *retry_after_ms,
            },
        }),
        Outcome::Invalid { code, .. } => Answer::Event(VenueEvent::Rejected {
            order,
            ts,
            reason: RejectReason::Invalid { code: *code },
        }),
        other => common(other).unwrap_or_else(|| Answer::Fatal {
            code: code_of(other),
            message: format!("cancel refused: {other:?}"),
        }),
    }
}

/// The adapter-level outcomes, the same for every command.
fn common(outcome: &Outcome) -> Option<Answer> {
    Some(match outcome {
        Outcome::ClockSkew => Answer::ResyncAndRetry,
        Outcome::NotSent { .. } => Answer::Retry,
        Outcome::Banned {
            until_ms,
            retry_after_ms,
        } => Answer::Halt {
            until_ms: *until_ms,
            retry_after_ms: *retry_after_ms,
        },
        Outcome::RateLimited { retry_after_ms } => Answer::RetryAfter {
            ms: *retry_after_ms,
        },
        Outcome::BadListenKey => Answer::RenewListenKey,
        Outcome::Fatal { code, message } => Answer::Fatal {
            code: *code,
            message: message.clone(),
        },
        _ => return None,
    })
}

fn code_of(outcome: &Outcome) -> i64 {
    match outcome {
        Outcome::Invalid { code, .. }
        | Outcome::Fatal { code, .. }
        | Outcome::Precision { code } => *code,
        Outcome::WouldTrigger => code::WOULD_TRIGGER,
        Outcome::NotFound => code::NO_SUCH_ORDER,
        Outcome::AlreadyExists => code::CLOSE_POSITION_EXISTS,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: RateHeaders = RateHeaders {
        used_weight_1m: None,
        order_count_10s: None,
        order_count_1m: None,
        retry_after_s: None,
    };

    fn oref(seq: u32) -> OrderRef {
        OrderRef { position: 9, seq }
    }

    fn answered(status: u16, body: &str) -> Outcome {
        outcome(&Transport::Answered {
            status,
            rate: NONE,
            body,
        })
    }

    fn err(code: i64, msg: &str) -> String {
        format!(r#"{{"code":{code},"msg":"{msg}"}}"#)
    }

    #[test]
    fn the_docs_error_body() {
        let e = parse_error(r#"{"code":-2021,"msg":"Order would immediately trigger."}"#).unwrap();
        assert_eq!(e.code, -2021);
        assert_eq!(e.msg, "Order would immediately trigger.");
        assert_eq!(parse_error(r#"{"msg":"x"}"#).unwrap_err().field, "code");
        assert_eq!(parse_error("<html>").unwrap_err().field, "json");
    }

    #[test]
    fn error_codes_are_classified_as_section_1_8_says() {
        let c = |code| answered(400, &err(code, "m"));
        assert_eq!(c(-2021), Outcome::WouldTrigger);
        assert_eq!(c(-2011), Outcome::NotFound);
        assert_eq!(c(-2013), Outcome::NotFound);
        assert_eq!(c(-4130), Outcome::AlreadyExists);
        for code in [-4014, -4013, -1111, -1013] {
            assert_eq!(c(code), Outcome::Precision { code }, "{code}");
        }
        assert_eq!(c(-2022), Outcome::NoPosition);
        assert_eq!(c(-4118), Outcome::NoPosition);
        assert_eq!(c(-1021), Outcome::ClockSkew);
        assert_eq!(c(-1125), Outcome::BadListenKey);
        for code in [-1006, -1007] {
            assert!(matches!(c(code), Outcome::Ambiguous { .. }), "{code}");
        }
        for code in [-1022, -2014, -2015, -4120, -4061, -4531] {
            assert!(
                matches!(c(code), Outcome::Fatal { code: k, .. } if k == code),
                "{code}"
            );
        }
        assert_eq!(
            c(-1015),
            Outcome::RateLimited {
                retry_after_ms: DEFAULT_RETRY_AFTER_MS
            }
        );
        assert!(matches!(c(-4131), Outcome::Invalid { code: -4131, .. }));
        assert!(matches!(c(-1102), Outcome::Invalid { code: -1102, .. }));
    }

    #[test]
    fn rate_limits_bans_and_the_headers() {
        let h = RateHeaders::from_pairs([
            ("X-MBX-USED-WEIGHT-1M", "2401"),
            ("x-mbx-order-count-10s", "301"),
            ("X-MBX-ORDER-COUNT-1M", "1201"),
            ("Retry-After", "7"),
            ("Content-Type", "application/json"),
        ]);
        assert_eq!(
            h,
            RateHeaders {
                used_weight_1m: Some(2401),
                order_count_10s: Some(301),
                order_count_1m: Some(1201),
                retry_after_s: Some(7),
            }
        );
        let body = err(
            -1003,
            "Too many requests; current limit is 2400 requests per minute.",
        );
        assert_eq!(
            outcome(&Transport::Answered {
                status: 429,
                rate: h,
                body: &body
            }),
            Outcome::RateLimited {
                retry_after_ms: 7000
            }
        );
        assert_eq!(
            answered(429, ""),
            Outcome::RateLimited {
                retry_after_ms: DEFAULT_RETRY_AFTER_MS
            }
        );
        // The ban message of the docs' -1003.
        let ban = err(
            -1003,
            "Way too many requests; IP(1.2.3.4) banned until 1567580472458. Please use the websocket for live updates to avoid bans.",
        );
        assert_eq!(
            outcome(&Transport::Answered {
                status: 418,
                rate: h,
                body: &ban
            }),
            Outcome::Banned {
                until_ms: Some(1567580472458),
                retry_after_ms: Some(7000)
            }
        );
        assert_eq!(
            answered(418, ""),
            Outcome::Banned {
                until_ms: None,
                retry_after_ms: None
            }
        );
        assert_eq!(banned_until("banned until soon"), None);
        let junk = RateHeaders::from_pairs([("Retry-After", "soon")]);
        assert_eq!(junk.retry_after_s, None);
    }

    #[test]
    fn transport_failures() {
        assert_eq!(answered(200, r#"{"algoId":1}"#), Outcome::Done);
        // A cancel's 200 carries "code":"200": still done.
        assert_eq!(
            answered(200, r#"{"algoId":1,"code":"200","msg":"success"}"#),
            Outcome::Done
        );
        assert!(matches!(
            outcome(&Transport::TimedOut),
            Outcome::Ambiguous { .. }
        ));
        assert!(matches!(
            outcome(&Transport::ResetAfterSend("reset".into())),
            Outcome::Ambiguous { .. }
        ));
        assert!(matches!(
            outcome(&Transport::NotSent("refused".into())),
            Outcome::NotSent { .. }
        ));
        for s in [408, 500, 502, 503, 504] {
            assert!(matches!(answered(s, ""), Outcome::Ambiguous { .. }), "{s}");
        }
        let o = answered(503, &err(-1006, "Unknown error"));
        assert!(
            matches!(&o, Outcome::Ambiguous { detail } if detail.contains("-1006")),
            "{o:?}"
        );
        assert!(matches!(
            answered(403, ""),
            Outcome::Invalid { code: 403, .. }
        ));
        assert!(matches!(
            answered(404, "<html>"),
            Outcome::Invalid { code: 404, .. }
        ));
    }

    #[test]
    fn creates_answer_the_lifecycle_or_the_adapter() {
        let place = Command::Place {
            order: oref(1),
            stop: 6_125_000,
        };
        let ev = |e| Answer::Event(e);
        assert_eq!(answer(&place, &Outcome::Done, 10, 0), Answer::Pending);
        // -2021: the lifecycle hears "would trigger" with the last market seen.
        assert_eq!(
            answer(&place, &Outcome::WouldTrigger, 13, 6_120_000),
            ev(VenueEvent::Rejected {
                order: oref(1),
                ts: 13,
                reason: RejectReason::WouldTrigger { market: 6_120_000 }
            })
        );
        // An ambiguous create: query by clientAlgoId before anything else.
        assert_eq!(
            answer(
                &place,
                &Outcome::Ambiguous {
                    detail: "503".into()
                },
                16,
                0
            ),
            ev(VenueEvent::Ambiguous {
                order: oref(1),
                ts: 16
            })
        );
        assert_eq!(
            answer(&place, &Outcome::AlreadyExists, 0, 0),
            Answer::AdoptResting
        );
        assert_eq!(
            answer(&place, &Outcome::Precision { code: -4014 }, 0, 0),
            Answer::RefreshInstruments
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
                &place,
                &Outcome::Invalid {
                    code: -4131,
                    message: "x".into()
                },
                14,
                0
            ),
            ev(VenueEvent::Rejected {
                order: oref(1),
                ts: 14,
                reason: RejectReason::Invalid { code: -4131 }
            })
        );
        assert_eq!(
            answer(&place, &Outcome::ClockSkew, 0, 0),
            Answer::ResyncAndRetry
        );
        assert_eq!(
            answer(
                &place,
                &Outcome::Banned {
                    until_ms: Some(5),
                    retry_after_ms: None
                },
                0,
                0
            ),
            Answer::Halt {
                until_ms: Some(5),
                retry_after_ms: None
            }
        );
        assert!(matches!(
            answer(
                &place,
                &Outcome::Fatal {
                    code: -4120,
                    message: "wrong endpoint".into()
                },
                0,
                0
            ),
            Answer::Fatal { code: -4120, .. }
        ));
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
    }

    #[test]
    fn cancels_closes_and_queries() {
        let cancel = Command::Cancel { order: oref(2) };
        assert_eq!(
            answer(&cancel, &Outcome::Done, 12, 0),
            Answer::Event(VenueEvent::Cancelled {
                order: oref(2),
                ts: 12
            })
        );
        // -2011: the stop may have just triggered; never assume, never place blindly.
        assert_eq!(
            answer(&cancel, &Outcome::NotFound, 12, 0),
            Answer::CheckStopAndPosition
        );
        assert_eq!(
            answer(&cancel, &Outcome::Ambiguous { detail: "t".into() }, 12, 0),
            Answer::Event(VenueEvent::Ambiguous {
                order: oref(2),
                ts: 12
            })
        );
        let close = Command::CloseAtMarket { position: 9 };
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
                    code: -4131,
                    message: "x".into()
                },
                0,
                0
            ),
            Answer::Fatal { code: -4131, .. }
        ));
        let query = Command::Query { order: oref(1) };
        assert_eq!(answer(&query, &Outcome::Done, 0, 0), Answer::Pending);
        assert_eq!(answer(&query, &Outcome::NotFound, 0, 0), Answer::Pending);
        assert_eq!(
            answer(&query, &Outcome::Ambiguous { detail: "t".into() }, 0, 0),
            Answer::Retry
        );
        assert_eq!(
            answer(&query, &Outcome::BadListenKey, 0, 0),
            Answer::RenewListenKey
        );
        assert!(matches!(
            answer(
                &Command::Amend {
                    order: oref(2),
                    replaces: oref(1),
                    stop: 1
                },
                &Outcome::Done,
                0,
                0
            ),
            Answer::Fatal { .. }
        ));
    }
}
