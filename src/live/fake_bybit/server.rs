//! The fake Bybit on a socket: one HTTP/1 listener serving the v5 REST endpoints and, upgraded
//! to WebSocket, the public (`/v5/public/linear`) and private (`/v5/private`) streams. Every
//! decision is the model's; this moves bytes, holds faults' delays and paces the replay.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::faults::{Fault, FaultKind};
use super::model::{Model, Outgoing, PositionState, Setup};
use super::replay::Replay;
use super::wire::{self, HttpReply, HttpRequest};
use crate::engine::Side;
use crate::live::clock::{Clock, system_clock};

/// Which stream a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Public,
    Private,
}

impl Stream {
    pub fn path(self) -> &'static str {
        match self {
            Stream::Public => "/v5/public/linear",
            Stream::Private => "/v5/private",
        }
    }
}

/// How the replay advances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pace {
    /// Only when told ([`FakeBybit::step`]): tests step in lockstep.
    Manual,
    /// One point every interval, from the start.
    Every(Duration),
    /// In lockstep with a client's `GET /status` (`LIVE.md` §6): after a point at `ts`, the
    /// next comes once `symbols.<symbol>.last_price_ts` there is at or past `ts` (the client
    /// has processed it and its commands were answered), polled every `poll`.
    Lockstep {
        status_url: String,
        symbol: String,
        poll: Duration,
    },
}

/// Runs the replay at `pace` to its end.
async fn pace_replay(shared: &Shared, pace: Pace) {
    match pace {
        Pace::Manual => {}
        Pace::Every(every) => {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if !step(shared) {
                    return;
                }
            }
        }
        Pace::Lockstep {
            status_url,
            symbol,
            poll,
        } => {
            let http = reqwest::Client::new();
            loop {
                let Some(ts) = step_ts(shared) else { return };
                // Until the client says it has this point (or the fake stops).
                while processed_ts(&http, &status_url, &symbol).await < Some(ts) {
                    tokio::time::sleep(poll).await;
                }
            }
        }
    }
}

/// `symbols.<symbol>.last_price_ts` of a `/status` answer (`None` while unreachable).
async fn processed_ts(http: &reqwest::Client, url: &str, symbol: &str) -> Option<i64> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let v: Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
    v.get("symbols")?
        .get(symbol)?
        .get("last_price_ts")?
        .as_i64()
}

/// What to start.
pub struct FakeConfig {
    pub setup: Setup,
    /// `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The fake's local clock; its server time adds [`FakeBybit::set_clock_offset`].
    pub clock: Clock,
    pub replay: Option<Replay>,
    pub pace: Pace,
    /// With [`Pace::Every`]: start replaying only once a stream subscription succeeded (so a
    /// client started after the fake sees the series from its start).
    pub start_on_subscribe: bool,
}

impl FakeConfig {
    pub fn new(setup: Setup) -> FakeConfig {
        FakeConfig {
            setup,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock: system_clock(),
            replay: None,
            pace: Pace::Manual,
            start_on_subscribe: false,
        }
    }
}

/// What the broadcast carries to the stream connections, numbered under the model's lock so
/// that a subscriber's snapshot and the deltas after it never overlap.
#[derive(Debug, Clone)]
enum Wire {
    Out {
        seq: u64,
        out: Outgoing,
    },
    /// Drop the connections of this stream (all when `None`) without a close frame.
    Drop(Option<Stream>),
}

struct Shared {
    model: Mutex<Model>,
    replay: Mutex<Option<Replay>>,
    tx: broadcast::Sender<Wire>,
    seq: AtomicU64,
    clock: Clock,
    received: Mutex<Vec<(Stream, String)>>,
    connections: Mutex<BTreeMap<Stream, usize>>,
    conn_ids: AtomicUsize,
    /// Raised on the first successful subscription.
    subscribed: watch::Sender<bool>,
    /// Streams that send nothing at all (no pongs, no data): a connection gone silent.
    muted: Mutex<Option<Stream>>,
    muted_all: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn is_muted(&self, stream: Stream) -> bool {
        self.muted_all.load(Ordering::SeqCst)
            || *self.muted.lock().unwrap_or_else(|e| e.into_inner()) == Some(stream)
    }
}

impl Shared {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock is a bug in a test; the state is still readable.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Sends `out` to the streams; called with the model's lock held, so the order of
    /// messages is the order of the changes.
    fn publish(&self, out: Vec<Outgoing>) {
        for o in out {
            let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
            // No receiver (no stream connected) is not an error.
            let _ = self.tx.send(Wire::Out { seq, out: o });
        }
    }
}

/// The messages the fake publishes, as [`FakeBybit::tap`] hands them on.
pub struct Tap(broadcast::Receiver<Wire>);

impl Tap {
    /// The next message published; `None` when the fake stopped. A reader too slow to keep
    /// up skips what it missed.
    pub async fn next(&mut self) -> Option<Outgoing> {
        loop {
            match self.0.recv().await {
                Ok(Wire::Out { out, .. }) => return Some(out),
                Ok(Wire::Drop(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A running fake Bybit. Dropping it stops the listener.
pub struct FakeBybit {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeBybit {
    /// Binds and serves on a runtime already running.
    pub async fn start(config: FakeConfig) -> io::Result<FakeBybit> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, _) = broadcast::channel(65_536);
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(config.setup)),
            replay: Mutex::new(config.replay),
            tx,
            seq: AtomicU64::new(0),
            clock: config.clock,
            received: Mutex::new(Vec::new()),
            connections: Mutex::new(BTreeMap::new()),
            conn_ids: AtomicUsize::new(0),
            subscribed: watch::channel(false).0,
            muted: Mutex::new(None),
            muted_all: std::sync::atomic::AtomicBool::new(false),
        });
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            stop.clone(),
        ))];
        if config.pace != Pace::Manual {
            let (s, mut stop) = (shared.clone(), stop);
            let mut subscribed = shared.subscribed.subscribe();
            let wait = config.start_on_subscribe;
            let pace = config.pace.clone();
            tasks.push(tokio::spawn(async move {
                if wait {
                    tokio::select! {
                        _ = subscribed.wait_for(|s| *s) => {}
                        _ = stop.changed() => return,
                    }
                }
                tokio::select! {
                    _ = pace_replay(&s, pace) => {}
                    _ = stop.changed() => {}
                }
            }));
        }
        Ok(FakeBybit {
            addr,
            shared,
            shutdown,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: `venue.rest_url` for the client.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT`: `venue.ws_url` (the stream paths are appended).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Replays the next point; false when the series is over (or there is none).
    pub fn step(&self) -> bool {
        step(&self.shared)
    }

    /// Points the replay has left.
    pub fn remaining(&self) -> usize {
        let r = self.shared.replay.lock().unwrap_or_else(|e| e.into_inner());
        r.as_ref().map_or(0, Replay::remaining)
    }

    /// Openings the replay could not make, with why.
    pub fn refused_openings(&self) -> Vec<String> {
        let r = self.shared.replay.lock().unwrap_or_else(|e| e.into_inner());
        r.as_ref().map_or(Vec::new(), |r| r.refused.clone())
    }

    /// A price point outside the replay (`ts` its data time).
    pub fn set_price(&self, symbol: &str, price: rust_decimal::Decimal, gap: bool, ts: i64) {
        let mut m = self.shared.model();
        let out = m.on_price(symbol, price, gap, ts);
        self.shared.publish(out);
    }

    /// Opens (or adds to) a position at the symbol's price, as another client's order would.
    pub fn open_position(
        &self,
        symbol: &str,
        side: Side,
        qty: rust_decimal::Decimal,
        ts: i64,
    ) -> Result<(), String> {
        let mut m = self.shared.model();
        let out = m.open_position(symbol, side, qty, ts)?;
        self.shared.publish(out);
        Ok(())
    }

    /// Closes a position at the mark price, as another client's reduce-only order would (a
    /// close by hand).
    pub fn close_position(&self, symbol: &str, idx: u8, ts: i64) -> Result<(), String> {
        let mut m = self.shared.model();
        let out = m.close_position(symbol, idx, ts)?;
        self.shared.publish(out);
        Ok(())
    }

    pub fn position(&self, symbol: &str, idx: u8) -> PositionState {
        self.shared.model().position(symbol, idx)
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.model().inject(fault);
    }

    /// The next `n` private messages are sent twice.
    pub fn duplicate_next_private(&self, n: usize) {
        self.shared.model().stream_faults.duplicate_next += n;
    }

    /// The next private message is sent after the one following it.
    pub fn swap_next_private(&self) {
        self.shared.model().stream_faults.swap_next = true;
    }

    /// A `position` message with nothing changed.
    pub fn spurious_position(&self, symbol: &str, idx: u8) {
        let now = self.shared.now();
        let mut m = self.shared.model();
        let out = m.spurious_position(symbol, idx, now);
        self.shared.publish(out);
    }

    /// Sends a scripted message as is (an out-of-order ticker, a stray order update…).
    pub fn emit(&self, out: Outgoing) {
        let _m = self.shared.model();
        self.shared.publish(vec![out]);
    }

    /// Drops the stream connections (of one stream, or all) without a close frame.
    pub fn drop_streams(&self, which: Option<Stream>) {
        let _ = self.shared.tx.send(Wire::Drop(which));
    }

    /// Silences the streams (one, or all when `None`): they keep their connections but send
    /// nothing, pongs included, as a dead link does. `unmute_streams` ends it.
    pub fn mute_streams(&self, which: Option<Stream>) {
        match which {
            None => self.shared.muted_all.store(true, Ordering::SeqCst),
            Some(s) => *self.shared.muted.lock().unwrap_or_else(|e| e.into_inner()) = Some(s),
        }
    }

    pub fn unmute_streams(&self) {
        self.shared.muted_all.store(false, Ordering::SeqCst);
        *self.shared.muted.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Skews the server clock by `ms` against the local one.
    pub fn set_clock_offset(&self, ms: i64) {
        self.shared.model().clock_offset_ms = ms;
    }

    /// Every message sent to the streams from now on (private and public), for a log.
    pub fn tap(&self) -> Tap {
        Tap(self.shared.tx.subscribe())
    }

    /// Every REST request received, in order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.shared.model().requests.clone()
    }

    /// When each REST request arrived (the fake's local clock, ms), as [`requests`](Self::requests)
    /// lists them.
    pub fn arrivals(&self) -> Vec<i64> {
        self.shared.model().arrivals.clone()
    }

    /// How many calls the fake refused with `10006` (its per-UID, per-second limit).
    pub fn rate_limited(&self) -> usize {
        self.shared.model().rate_limited
    }

    /// Every stream text message received, in order, with its stream.
    pub fn received(&self) -> Vec<(Stream, String)> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stream connections accepted so far.
    pub fn connections(&self, stream: Stream) -> usize {
        let c = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.get(&stream).copied().unwrap_or(0)
    }

    /// Stops listening and replaying; open stream connections are dropped.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.drop_streams(None);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for FakeBybit {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Replays the next point; its data time, `None` at the end.
fn step_ts(shared: &Shared) -> Option<i64> {
    let ts = {
        let r = shared.replay.lock().unwrap_or_else(|e| e.into_inner());
        r.as_ref()?.next_ts()?
    };
    step(shared).then_some(ts)
}

fn step(shared: &Shared) -> bool {
    let mut m = shared.model();
    let mut r = shared.replay.lock().unwrap_or_else(|e| e.into_inner());
    let Some(replay) = r.as_mut() else {
        return false;
    };
    match replay.step(&mut *m) {
        Some(out) => {
            shared.publish(out);
            true
        }
        None => false,
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let s = shared.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(req, s.clone(), stop.clone()));
                    // A client that goes away mid-request is its business.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .with_upgrades()
                        .await;
                });
            }
            _ = stop.changed() => break,
        }
    }
}

type Body = Full<Bytes>;

fn response(reply: HttpReply) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

async fn serve(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let stream = [Stream::Public, Stream::Private]
        .into_iter()
        .find(|s| s.path() == path);
    if let Some(stream) = stream {
        return Ok(upgrade(req, stream, shared, stop));
    }
    let method = req.method().as_str().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => return Ok(response(HttpReply::status(400, "unreadable body"))),
    };
    let request = HttpRequest {
        method,
        path: path.clone(),
        query,
        headers,
        body,
    };
    let local = shared.now();
    let (fault, now) = {
        let mut m = shared.model();
        m.requests.push(request.clone());
        m.arrivals.push(local);
        (m.take_fault(&path), m.server_time(local))
    };
    let apply = |shared: &Shared| {
        let mut m = shared.model();
        let (reply, out) = m.handle(&request, local);
        shared.publish(out);
        reply
    };
    let reply = match fault {
        None => apply(&shared),
        Some(FaultKind::TimeoutAfterApply { hold }) => {
            let reply = apply(&shared);
            tokio::time::sleep(hold).await;
            reply
        }
        Some(FaultKind::TimeoutBeforeApply { hold }) => {
            tokio::time::sleep(hold).await;
            HttpReply::status(504, "Gateway Timeout")
        }
        Some(FaultKind::ServerErrorAfterApply) => {
            apply(&shared);
            HttpReply::status(503, "Service Unavailable")
        }
        Some(FaultKind::ServerError) => HttpReply::status(503, "Service Unavailable"),
        Some(FaultKind::BasePrice) => {
            let m = shared.model();
            let stop = serde_json::from_str::<Value>(&request.body)
                .ok()
                .and_then(|b| {
                    b.get("stopLoss")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            let symbol = serde_json::from_str::<Value>(&request.body)
                .ok()
                .and_then(|b| b.get("symbol").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            let base = m.mark(&symbol).unwrap_or(stop);
            HttpReply::error(
                super::model::ret::PARAMS,
                &m.base_price_message(Side::Long, stop, base, "MarkPrice"),
                now,
            )
        }
        Some(FaultKind::RateLimited { reset_in_ms }) => {
            HttpReply::error(super::model::ret::RATE_LIMIT, "Too many visits!", now)
                .with_header("X-Bapi-Limit", 10)
                .with_header("X-Bapi-Limit-Status", 0)
                .with_header("X-Bapi-Limit-Reset-Timestamp", now + reset_in_ms)
        }
        Some(FaultKind::Forbidden) => HttpReply::status(403, "access too frequent"),
        Some(FaultKind::ClockSkew) => HttpReply::error(
            super::model::ret::TIMESTAMP,
            "invalid request, please check your server timestamp or recv_window param",
            now,
        ),
    };
    Ok(response(reply))
}

fn upgrade(
    req: Request<Incoming>,
    stream: Stream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec());
    let is_ws = req
        .headers()
        .get("upgrade")
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = key.filter(|_| is_ws) else {
        return response(HttpReply::status(400, "a WebSocket endpoint"));
    };
    // Subscribed before the upgrade completes, so nothing published after it is missed.
    let rx = shared.tx.subscribe();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        {
            let mut c = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            *c.entry(stream).or_default() += 1;
        }
        session(ws, stream, shared, rx, stop).await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&derive_accept_key(&key)) {
        h.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// The topic an outgoing message belongs to, as a subscriber names it.
fn topic_of(out: &Outgoing) -> String {
    match out {
        Outgoing::Public { symbol, .. } => format!("tickers.{symbol}"),
        Outgoing::Private { topic, .. } => topic.to_string(),
    }
}

async fn session<S>(
    ws: WebSocketStream<S>,
    stream: Stream,
    shared: Arc<Shared>,
    mut rx: broadcast::Receiver<Wire>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let private = stream == Stream::Private;
    let conn = format!(
        "fake-conn-{}",
        shared.conn_ids.fetch_add(1, Ordering::SeqCst) + 1
    );
    let (mut sink, mut source) = ws.split();
    let mut authed = false;
    // Topic → the last message number before the subscription (later ones are sent).
    let mut subscribed: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        tokio::select! {
            msg = source.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                shared
                    .received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((stream, text.clone()));
                let replies = op(&text, private, &mut authed, &mut subscribed, &shared, &conn);
                if shared.is_muted(stream) {
                    continue;
                }
                for r in replies {
                    if sink.send(Message::Text(r.into())).await.is_err() {
                        return;
                    }
                }
            }
            wire = rx.recv() => match wire {
                Ok(Wire::Out { seq, out }) => {
                    let topic = topic_of(&out);
                    let wanted = matches!(out, Outgoing::Private { .. }) == private
                        && subscribed.get(&topic).is_some_and(|from| seq > *from);
                    if wanted && !shared.is_muted(stream) {
                        let (Outgoing::Public { text, .. } | Outgoing::Private { text, .. }) = out;
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Wire::Drop(which)) if which.is_none_or(|w| w == stream) => return,
                Ok(Wire::Drop(_)) => {}
                // Too slow to keep up: dropped, as an exchange drops a lagging consumer.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
    }
}

/// Answers one stream `op`; the replies to send, in order.
fn op(
    text: &str,
    private: bool,
    authed: &mut bool,
    subscribed: &mut BTreeMap<String, u64>,
    shared: &Shared,
    conn: &str,
) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return vec![wire::op_reply(
            "",
            private,
            false,
            10001,
            "invalid JSON",
            conn,
        )];
    };
    let name = v.get("op").and_then(Value::as_str).unwrap_or_default();
    let args: Vec<Value> = v
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match name {
        "ping" => vec![wire::pong(private, shared.now(), conn)],
        "auth" if private => {
            let m = shared.model();
            match m.check_ws_auth(&args, shared.now()) {
                Ok(()) => {
                    *authed = true;
                    vec![wire::op_reply("auth", true, true, 0, "", conn)]
                }
                Err((code, msg)) => vec![wire::op_reply("auth", true, false, code, &msg, conn)],
            }
        }
        "subscribe" => {
            if private && !*authed {
                return vec![wire::op_reply(
                    "subscribe",
                    private,
                    false,
                    10007,
                    "Request not authorized",
                    conn,
                )];
            }
            let m = shared.model();
            let topics: Vec<String> = args
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            let known = |t: &str| {
                if private {
                    matches!(t, "position" | "order" | "execution")
                } else {
                    t.strip_prefix("tickers.")
                        .is_some_and(|s| m.setup().instruments.iter().any(|i| i.symbol == s))
                }
            };
            if topics.is_empty() || !topics.iter().all(|t| known(t)) {
                return vec![wire::op_reply(
                    "subscribe",
                    private,
                    false,
                    10001,
                    &format!("error:handler not found,topic:{}", topics.join(",")),
                    conn,
                )];
            }
            // Under the model's lock: the snapshot and the numbering agree.
            let from = shared.seq.load(Ordering::SeqCst);
            let mut replies = vec![wire::op_reply("subscribe", private, true, 0, "", conn)];
            for t in topics {
                if let Some(symbol) = t.strip_prefix("tickers.")
                    && let Some(snap) = m.ticker_snapshot(symbol)
                {
                    replies.push(snap);
                }
                subscribed.insert(t, from);
            }
            shared.subscribed.send_replace(true);
            replies
        }
        other => vec![wire::op_reply(
            other,
            private,
            false,
            10001,
            &format!("unknown op \"{other}\""),
            conn,
        )],
    }
}
