//! The signed Binance REST client (feature `live`): sends the requests of [`super::request`]
//! signed by [`super::sign`] (reqwest, rustls), classifies every answer with
//! [`super::response`], keeps the clock offset from `/fapi/v1/time` (resynced and the request
//! sent once more on `-1021`), and honours a ban: after an HTTP 418 nothing is sent to the
//! host until the ban ends (`EXCHANGES.md` §1.7: requests during a ban extend it); the calls
//! answer [`Outcome::Banned`] at once meanwhile.
//!
//! The typed reads (`exchangeInfo`, `positionRisk`, the position mode, `openAlgoOrders`, a
//! stop by `clientAlgoId`, the listenKey) parse with [`super::snapshot`]. The API key is cut
//! out of every answer body before it becomes an outcome, an error or a log line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;
use thiserror::Error;

use super::request::{self, AlgoRef, Request, Security};
use super::response::{self, Outcome, RateHeaders, Transport};
use super::sign;
use super::snapshot::{self, AlgoOrderInfo, ExchangeInfo, PositionInfo};
use crate::live::bybit::json::ParseError;
use crate::live::bybit::rest::error_chain;
use crate::live::clock::Clock;
use crate::live::credentials::Credentials;

/// The default time a request may take before its outcome is ambiguous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to hold off after a 418 that says nothing of its length.
pub const DEFAULT_BAN_MS: i64 = 120_000;

#[derive(Clone)]
pub struct RestConfig {
    /// `https://fapi.binance.com`, or the fake's `http://127.0.0.1:PORT`; no trailing slash.
    pub base_url: String,
    pub recv_window_ms: u64,
    pub timeout: Duration,
    pub clock: Clock,
}

/// One request's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// `None` when nothing came back (or nothing was sent).
    pub status: Option<u16>,
    pub rate: RateHeaders,
    pub body: String,
    pub outcome: Outcome,
}

/// A typed call that did not give its result.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RestError {
    #[error("{endpoint}: {outcome:?}")]
    Refused { endpoint: String, outcome: Outcome },
    #[error("{endpoint}: {error}")]
    Unreadable { endpoint: String, error: ParseError },
}

/// The Binance REST client of one account.
pub struct RestClient {
    http: reqwest::Client,
    config: RestConfig,
    credentials: Option<Credentials>,
    offset_ms: AtomicI64,
    /// The local time until which the host has banned us (418).
    banned_until: Mutex<Option<i64>>,
    /// The IP's request weight the last answer reported (`X-MBX-USED-WEIGHT-1M`; -1: none
    /// yet).
    used_weight: AtomicI64,
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
            .field("used_weight_1m", &self.used_weight_1m())
            .finish()
    }
}

fn rate_headers(h: &HeaderMap) -> RateHeaders {
    RateHeaders::from_pairs(
        h.iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v))),
    )
}

fn transport_failure(e: &reqwest::Error) -> Transport<'static> {
    let detail = error_chain(e);
    if e.is_timeout() {
        Transport::TimedOut
    } else if e.is_connect() || e.is_builder() {
        Transport::NotSent(detail)
    } else {
        Transport::ResetAfterSend(detail)
    }
}

impl RestClient {
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
            banned_until: Mutex::new(None),
            used_weight: AtomicI64::new(-1),
            metrics: None,
        })
    }

    /// Counts every request in `metrics` (duration by endpoint, errors by class and code).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::live::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Server time minus local time, as last measured (a metric).
    pub fn clock_offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn set_clock_offset_ms(&self, ms: i64) {
        self.offset_ms.store(ms, Ordering::SeqCst);
    }

    /// The timestamp a request signed now carries.
    pub fn timestamp_ms(&self) -> i64 {
        (self.config.clock)() + self.clock_offset_ms()
    }

    /// The request weight of the last minute as the last answer that said it reported
    /// (`X-MBX-USED-WEIGHT-1M`; the limit is `exchangeInfo`'s `REQUEST_WEIGHT`).
    pub fn used_weight_1m(&self) -> Option<i64> {
        Some(self.used_weight.load(Ordering::SeqCst)).filter(|w| *w >= 0)
    }

    /// Until when (local ms) the host has banned us, if it has.
    pub fn banned_until(&self) -> Option<i64> {
        let now = (self.config.clock)();
        let b = self.banned_until.lock().unwrap_or_else(|e| e.into_inner());
        b.filter(|until| now < *until)
    }

    /// How long the ban has left (ms), if the host has banned us.
    pub fn ban_left_ms(&self) -> Option<i64> {
        self.banned_until()
            .map(|until| (until - (self.config.clock)()).max(0))
    }

    fn note_ban(&self, outcome: &Outcome) {
        let Outcome::Banned {
            until_ms,
            retry_after_ms,
        } = outcome
        else {
            return;
        };
        let now = (self.config.clock)();
        // The server's "banned until" is server time; Retry-After is relative.
        let until = match (retry_after_ms, until_ms) {
            (Some(ms), _) => now + ms,
            (None, Some(at)) => at - self.clock_offset_ms(),
            (None, None) => now + DEFAULT_BAN_MS,
        };
        *self.banned_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    fn local(outcome: Outcome) -> Reply {
        Reply {
            status: None,
            rate: RateHeaders::default(),
            body: String::new(),
            outcome,
        }
    }

    /// Sends `req` once; the classified answer.
    pub async fn send(&self, req: &Request) -> Reply {
        let started = std::time::Instant::now();
        let reply = self.send_once(req).await;
        if let Some(m) = &self.metrics {
            let code = response::parse_error(&reply.body).ok().map(|e| e.code);
            m.on_binance_request(
                req.path,
                started.elapsed(),
                &reply.outcome,
                reply.status,
                code,
            );
        }
        reply
    }

    async fn send_once(&self, req: &Request) -> Reply {
        if let Some(until) = self.banned_until() {
            // Nothing goes to a host that banned us: it would extend the ban.
            return Self::local(Outcome::Banned {
                until_ms: None,
                retry_after_ms: Some(until - (self.config.clock)()),
            });
        }
        let signed = match (&self.credentials, req.security) {
            (_, Security::Public) => None,
            (Some(c), _) => Some(sign::sign(
                c,
                req,
                self.timestamp_ms(),
                self.config.recv_window_ms,
            )),
            (None, _) => {
                return Self::local(Outcome::Fatal {
                    code: 0,
                    message: format!("{}: no API key configured", req.endpoint()),
                });
            }
        };
        let path_and_query = match &signed {
            Some(s) => s.path_and_query(req),
            None => req.path_and_query(),
        };
        let url = format!("{}{}", self.config.base_url, path_and_query);
        let method = match req.method {
            request::Method::Get => reqwest::Method::GET,
            request::Method::Post => reqwest::Method::POST,
            request::Method::Put => reqwest::Method::PUT,
            request::Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.http.request(method, &url);
        if let Some((name, value)) = signed.as_ref().and_then(|s| s.header()) {
            builder = builder.header(name, value);
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
        let reply = match answer {
            Ok((status, rate, body)) => {
                if let Some(w) = rate.used_weight_1m {
                    self.used_weight.store(w, Ordering::SeqCst);
                }
                let body = match &self.credentials {
                    Some(c) if !c.api_key.expose().is_empty() => {
                        body.replace(c.api_key.expose(), "<api key>")
                    }
                    _ => body,
                };
                let outcome = response::outcome(&Transport::Answered {
                    status,
                    rate,
                    body: &body,
                });
                Reply {
                    status: Some(status),
                    rate,
                    body,
                    outcome,
                }
            }
            Err(transport) => Self::local(response::outcome(&transport)),
        };
        self.note_ban(&reply.outcome);
        reply
    }

    /// Sends `req`; on `-1021` resyncs the clock and sends it once more (with a fresh
    /// timestamp and signature). A second `-1021` is returned as it is.
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

    /// `GET /fapi/v1/time`.
    pub async fn server_time_ms(&self) -> Result<i64, RestError> {
        let r = request::server_time();
        let reply = self.send(&r).await;
        match reply.outcome {
            Outcome::Done => parse(&r, snapshot::server_time(&reply.body)),
            outcome => Err(RestError::Refused {
                endpoint: r.endpoint(),
                outcome,
            }),
        }
    }

    /// Measures the offset (server − local, at the request's midpoint) and keeps it.
    pub async fn sync_clock(&self) -> Result<i64, RestError> {
        let before = (self.config.clock)();
        let server = self.server_time_ms().await?;
        let after = (self.config.clock)();
        let offset = server - (before + (after - before) / 2);
        self.set_clock_offset_ms(offset);
        Ok(offset)
    }

    /// `GET /fapi/v1/exchangeInfo`: tick sizes and rate limits.
    pub async fn exchange_info(&self) -> Result<ExchangeInfo, RestError> {
        let r = request::exchange_info();
        let body = self.read(&r).await?;
        parse(&r, snapshot::exchange_info(&body))
    }

    /// `GET /fapi/v2/positionRisk`.
    pub async fn positions(&self, symbol: Option<&str>) -> Result<Vec<PositionInfo>, RestError> {
        let r = request::position_risk(symbol).map_err(bad_request)?;
        let body = self.read(&r).await?;
        parse(&r, snapshot::positions(&body))
    }

    /// `GET /fapi/v1/positionSide/dual`: whether the account is in hedge mode.
    pub async fn hedge_mode(&self) -> Result<bool, RestError> {
        let r = request::position_mode();
        let body = self.read(&r).await?;
        parse(&r, snapshot::position_mode(&body))
    }

    /// `GET /fapi/v1/openAlgoOrders`.
    pub async fn open_stops(&self, symbol: Option<&str>) -> Result<Vec<AlgoOrderInfo>, RestError> {
        let r = request::open_stops(symbol).map_err(bad_request)?;
        let body = self.read(&r).await?;
        parse(&r, snapshot::open_algo_orders(&body))
    }

    /// `GET /fapi/v1/algoOrder`: the stop `id` names, `None` when there is none (`-2013`).
    pub async fn stop(&self, id: AlgoRef<'_>) -> Result<Option<AlgoOrderInfo>, RestError> {
        let r = request::query_stop(id).map_err(bad_request)?;
        let reply = self.send_resyncing(&r).await;
        match reply.outcome {
            Outcome::Done => parse(&r, snapshot::algo_order(&reply.body)).map(Some),
            Outcome::NotFound => Ok(None),
            outcome => Err(RestError::Refused {
                endpoint: r.endpoint(),
                outcome,
            }),
        }
    }

    /// `POST /fapi/v1/listenKey`: the user stream's key.
    pub async fn listen_key(&self) -> Result<String, RestError> {
        let r = request::listen_key_create();
        let body = self.read(&r).await?;
        parse(&r, snapshot::listen_key(&body))
    }

    /// `PUT /fapi/v1/listenKey`: another 60 minutes (`-1125`: the key is gone).
    pub async fn keep_listen_key(&self) -> Result<(), RestError> {
        self.read(&request::listen_key_keepalive())
            .await
            .map(|_| ())
    }

    async fn read(&self, r: &Request) -> Result<String, RestError> {
        let reply = self.send_resyncing(r).await;
        match reply.outcome {
            Outcome::Done => Ok(reply.body),
            outcome => Err(RestError::Refused {
                endpoint: r.endpoint(),
                outcome,
            }),
        }
    }
}

fn parse<T>(r: &Request, result: Result<T, ParseError>) -> Result<T, RestError> {
    result.map_err(|error| RestError::Unreadable {
        endpoint: r.endpoint(),
        error,
    })
}

fn bad_request(e: request::RequestError) -> RestError {
    RestError::Refused {
        endpoint: "request".into(),
        outcome: Outcome::Invalid {
            code: 0,
            message: e.to_string(),
        },
    }
}
