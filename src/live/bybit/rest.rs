//! The signed REST client (feature `live`): sends the exact [`Request`]s of
//! [`request`], signed by [`sign`] at the local clock plus the
//! server offset, and reads every answer into an [`Outcome`] through
//! [`response`]. It decides nothing: what to do after an outcome is
//! `response::answer`'s (and the runner's).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;
use thiserror::Error;

use super::json::{self, ParseError};
use super::request::{self, Method, PositionFilter, Request};
use super::response::{self, Envelope, Outcome, RateHeaders, Transport};
use super::sign;
use super::snapshot::{self, InstrumentInfo, PositionInfo};
use super::stream::ExecutionInfo;
use crate::live::clock::Clock;
use crate::live::credentials::Credentials;

/// How long a request may take before its outcome is unknown (`Transport::TimedOut`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most pages a listing follows (200 positions or 1,000 instruments a page).
pub const MAX_PAGES: usize = 50;

/// Where and how to send.
#[derive(Clone)]
pub struct RestConfig {
    /// `venue.rest_url` (`https://api.bybit.com`, a testnet, or the fake on loopback).
    pub base_url: String,
    pub recv_window_ms: u64,
    pub timeout: Duration,
    pub clock: Clock,
}

/// What came back for one request: what the transport saw, and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status; `None` when no answer came (not sent, timed out, reset).
    pub status: Option<u16>,
    pub rate: RateHeaders,
    pub body: String,
    pub outcome: Outcome,
    /// The envelope, when the body is one (any HTTP 200 JSON answer).
    pub envelope: Option<Envelope>,
}

/// Why a read (server time, instruments, positions) gave no data.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RestError {
    /// The venue answered with something else than success.
    #[error("{path}: {outcome:?}")]
    Refused {
        path: &'static str,
        outcome: Outcome,
    },
    /// Success, but the result cannot be read (names the field).
    #[error("{path}: {error}")]
    Unreadable {
        path: &'static str,
        error: ParseError,
    },
    #[error("{path}: more than {MAX_PAGES} pages")]
    TooManyPages { path: &'static str },
}

/// A Bybit v5 REST client. `Debug` shows no key.
pub struct RestClient {
    http: reqwest::Client,
    config: RestConfig,
    credentials: Option<Credentials>,
    /// Server time − local time (ms), from the last [`RestClient::sync_clock`].
    offset_ms: AtomicI64,
    /// Where each request's duration and outcome is counted (issue 14), if anywhere.
    metrics: Option<std::sync::Arc<crate::live::metrics::Metrics>>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base_url", &self.config.base_url)
            .field("recv_window_ms", &self.config.recv_window_ms)
            .field("credentials", &self.credentials)
            .field("offset_ms", &self.clock_offset_ms())
            .finish()
    }
}

fn rate_headers(h: &HeaderMap) -> RateHeaders {
    RateHeaders::from_pairs(
        h.iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v))),
    )
}

impl RestClient {
    /// A client; `credentials` may be `None` for the public endpoints only (a signed request
    /// then fails as `Auth` without being sent).
    pub fn new(
        config: RestConfig,
        credentials: Option<Credentials>,
    ) -> Result<RestClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()?;
        Ok(RestClient {
            http,
            config,
            credentials,
            offset_ms: AtomicI64::new(0),
            metrics: None,
        })
    }

    /// Counts every request in `metrics` (duration by endpoint, errors by class and code).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::live::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn clock_offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn set_clock_offset_ms(&self, ms: i64) {
        self.offset_ms.store(ms, Ordering::SeqCst);
    }

    /// The timestamp a request is signed with: the local clock plus the server offset.
    pub fn timestamp_ms(&self) -> i64 {
        (self.config.clock)() + self.clock_offset_ms()
    }

    /// Sends `req` once and classifies what came back. Never an error: a failure is an
    /// [`Outcome`] (`NotSent`, `Ambiguous`…), which the caller reacts to.
    pub async fn send(&self, req: &Request) -> Reply {
        let started = std::time::Instant::now();
        let reply = self.send_once(req).await;
        if let Some(m) = &self.metrics {
            m.on_request(
                req.path,
                started.elapsed(),
                &reply.outcome,
                reply.status,
                reply.envelope.as_ref().map(|e| e.ret_code),
            );
        }
        reply
    }

    async fn send_once(&self, req: &Request) -> Reply {
        let now = self.timestamp_ms();
        let url = format!("{}{}", self.config.base_url, req.path_and_query());
        let mut builder = match req.method {
            Method::Get => self.http.get(&url),
            Method::Post => self
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body(req.body.clone()),
        };
        if req.signed {
            let Some(c) = &self.credentials else {
                return Reply {
                    status: None,
                    rate: RateHeaders::default(),
                    body: String::new(),
                    outcome: Outcome::Auth {
                        code: 0,
                        message: format!("{}: no API key configured", req.path),
                    },
                    envelope: None,
                };
            };
            let headers = sign::sign(c, req, now, self.config.recv_window_ms);
            for (name, value) in headers.pairs() {
                builder = builder.header(name, value);
            }
        }
        let answer = match builder.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let rate = rate_headers(resp.headers());
                match resp.text().await {
                    Ok(body) => Ok((status, rate, body)),
                    Err(e) => Err(transport_failure(&e)),
                }
            }
            Err(e) => Err(transport_failure(&e)),
        };
        let now = self.timestamp_ms();
        match answer {
            Ok((status, rate, body)) => {
                // Bybit's 10004 message echoes the signed text, API key included: the key is
                // cut out here, before any outcome, error or log line can carry it.
                let body = match &self.credentials {
                    Some(c) if !c.api_key.expose().is_empty() => {
                        body.replace(c.api_key.expose(), "<api key>")
                    }
                    _ => body,
                };
                let outcome = response::outcome(
                    &Transport::Answered {
                        status,
                        rate,
                        body: &body,
                    },
                    now,
                );
                let envelope = (status == 200)
                    .then(|| response::parse_envelope(&body).ok())
                    .flatten();
                Reply {
                    status: Some(status),
                    rate,
                    body,
                    outcome,
                    envelope,
                }
            }
            Err(transport) => Reply {
                status: None,
                rate: RateHeaders::default(),
                body: String::new(),
                outcome: response::outcome(&transport, now),
                envelope: None,
            },
        }
    }

    /// Sends `req`; on `10002` resyncs the clock from `/v5/market/time` and sends it once more
    /// with a fresh timestamp (`LIVE.md` §5: "resync, retry once").
    pub async fn send_resyncing(&self, req: &Request) -> Reply {
        let reply = self.send(req).await;
        if reply.outcome != Outcome::ClockSkew {
            return reply;
        }
        match self.sync_clock().await {
            Ok(_) => self.send(req).await,
            Err(_) => reply,
        }
    }

    /// The server's time (ms) from `GET /v5/market/time` (`timeNano`, else the envelope's
    /// `time`).
    pub async fn server_time_ms(&self) -> Result<i64, RestError> {
        let path = request::PATH_SERVER_TIME;
        // Public and unsigned: no timestamp to be skewed, so no resync.
        let reply = self.send(&request::server_time()).await;
        let env = match (reply.outcome, reply.envelope) {
            (Outcome::Done, Some(env)) => env,
            (outcome, _) => return Err(RestError::Refused { path, outcome }),
        };
        server_time_of(&env).map_err(|error| RestError::Unreadable { path, error })
    }

    /// Measures the offset server − local around one `/v5/market/time` call (the server's
    /// time against the midpoint of the call) and keeps it for signing. Returns it.
    pub async fn sync_clock(&self) -> Result<i64, RestError> {
        let before = (self.config.clock)();
        let server = self.server_time_ms().await?;
        let after = (self.config.clock)();
        let offset = server - (before + (after - before) / 2);
        self.set_clock_offset_ms(offset);
        Ok(offset)
    }

    /// Instruments (tick sizes), one symbol or all, following the cursor.
    pub async fn instruments(
        &self,
        symbol: Option<&str>,
    ) -> Result<Vec<InstrumentInfo>, RestError> {
        let path = request::PATH_INSTRUMENTS_INFO;
        self.pages(
            path,
            |c| request::instruments_info(symbol, c),
            snapshot::instruments,
        )
        .await
    }

    /// Positions (`position/list`), following the cursor. Flat entries are kept: the list
    /// says what the venue says.
    pub async fn positions(
        &self,
        filter: PositionFilter<'_>,
    ) -> Result<Vec<PositionInfo>, RestError> {
        let path = request::PATH_POSITION_LIST;
        self.pages(
            path,
            |c| request::position_list(filter, c),
            snapshot::positions,
        )
        .await
    }

    /// Fills of `symbol` since `start_ms` (`execution/list`), newest first, following the
    /// cursor.
    pub async fn executions(
        &self,
        symbol: &str,
        start_ms: Option<i64>,
    ) -> Result<Vec<ExecutionInfo>, RestError> {
        let path = request::PATH_EXECUTION_LIST;
        self.pages(
            path,
            |c| request::execution_list(symbol, start_ms, c),
            snapshot::executions,
        )
        .await
    }

    /// Every page of a listing, following the cursor: `request(cursor)` builds a page's
    /// request, `parse` reads its result.
    async fn pages<T>(
        &self,
        path: &'static str,
        request: impl Fn(Option<&str>) -> Result<Request, request::RequestError>,
        parse: impl Fn(&Value) -> Result<snapshot::Page<T>, ParseError>,
    ) -> Result<Vec<T>, RestError> {
        let mut cursor: Option<String> = None;
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let req = request(cursor.as_deref()).map_err(|e| bad_request(path, e))?;
            let env = self.read(&req, path).await?;
            let page = parse(&env.result).map_err(|error| RestError::Unreadable { path, error })?;
            all.extend(page.list);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
        Err(RestError::TooManyPages { path })
    }

    /// A read: sent (resyncing once on `10002`), success required.
    async fn read(&self, req: &Request, path: &'static str) -> Result<Envelope, RestError> {
        let reply = self.send_resyncing(req).await;
        match (reply.outcome, reply.envelope) {
            (Outcome::Done, Some(env)) => Ok(env),
            (outcome, _) => Err(RestError::Refused { path, outcome }),
        }
    }
}

fn bad_request(path: &'static str, e: request::RequestError) -> RestError {
    RestError::Refused {
        path,
        outcome: Outcome::Invalid {
            code: 0,
            message: e.to_string(),
        },
    }
}

/// `result.timeNano` in ms, else the envelope's `time`.
pub fn server_time_of(env: &Envelope) -> Result<i64, ParseError> {
    let o = json::object(&env.result, "result")?;
    if let Some(nano) = o.opt_str("timeNano")? {
        let n: i128 = nano.trim().parse().map_err(|_| {
            ParseError::new(o.field("timeNano"), format!("\"{nano}\" is not an integer"))
        })?;
        return i64::try_from(n / 1_000_000)
            .map_err(|_| ParseError::new(o.field("timeNano"), format!("{nano} is out of range")));
    }
    if let Some(s) = o.opt_int("timeSecond")? {
        return Ok(s * 1000);
    }
    env.time
        .ok_or_else(|| ParseError::new("time", "no server time in the answer"))
}

/// What a reqwest failure means for the request: never left, timed out, or broke after
/// (maybe) being sent.
fn transport_failure(e: &reqwest::Error) -> Transport<'static> {
    // Only the error's kind and its causes: the URL holds no key, but a cause could quote a
    // header in some client version, so the text is kept short and generic.
    let detail = error_chain(e);
    if e.is_timeout() {
        Transport::TimedOut
    } else if e.is_connect() || e.is_builder() {
        Transport::NotSent(detail)
    } else {
        Transport::ResetAfterSend(detail)
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ")
}

/// The JSON body of a reply's `result`, for callers that read an endpoint's own fields
/// (`order/create`'s `orderId`).
pub fn result_of(reply: &Reply) -> Option<&Value> {
    reply.envelope.as_ref().map(|e| &e.result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_reads_nanos_seconds_or_the_envelope() {
        let env = |result: Value, time| Envelope {
            ret_code: 0,
            ret_msg: "OK".into(),
            result,
            time,
        };
        // The docs' example answer.
        let docs = env(
            serde_json::json!({"timeSecond": "1688639403", "timeNano": "1688639403423213947"}),
            Some(1688639403423),
        );
        assert_eq!(server_time_of(&docs).unwrap(), 1688639403423);
        assert_eq!(
            server_time_of(&env(serde_json::json!({"timeSecond": "1688639403"}), None)).unwrap(),
            1688639403000
        );
        assert_eq!(
            server_time_of(&env(serde_json::json!({}), Some(7))).unwrap(),
            7
        );
        let e = server_time_of(&env(serde_json::json!({"timeNano": "soon"}), None)).unwrap_err();
        assert_eq!(e.field, "result.timeNano");
        assert!(server_time_of(&env(serde_json::json!({}), None)).is_err());
    }
}
