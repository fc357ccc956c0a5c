//! The fake Binance on a socket: one HTTP/1 listener serving the `/fapi` REST endpoints and,
//! upgraded to WebSocket, the market streams (`/market/stream?streams=a/b`, combined and
//! wrapped; `/market/ws/<stream>`, raw) and the user data stream
//! (`/private/ws?listenKey=…` or `/private/ws/<listenKey>`). Every decision is the model's;
//! this moves bytes, holds the faults' delays, drops connections, and expires the listenKey
//! as time passes (`listenKeyExpired`, then the private connections close).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::faults::{Fault, FaultKind, StreamFault};
use super::model::{Model, Outgoing, Setup};
use crate::engine::Side;
use crate::live::clock::{Clock, system_clock};
use crate::live::fake_bybit::replay::{Replay, ReplayVenue};
use crate::live::fake_bybit::server::Pace;
use crate::live::fake_bybit::wire::{HttpReply, HttpRequest, decode};

/// Which stream host a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Market,
    Private,
}

/// Binance's server ping on every stream connection (`EXCHANGES.md` §1.6).
pub const PING_EVERY: Duration = Duration::from_secs(3 * 60);
/// Without a pong for this long a stream connection is dropped.
pub const PONG_WITHIN: Duration = Duration::from_secs(10 * 60);
/// A stream connection lives at most this long.
pub const CUT_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// What happened on one stream's connections so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Connections accepted.
    pub connections: usize,
    /// Pings sent and pongs received.
    pub pings: usize,
    pub pongs: usize,
    /// Connections dropped for want of a pong.
    pub dropped_without_pong: usize,
    /// Connections cut for their age.
    pub cut: usize,
    /// Connections open now.
    pub open: usize,
    /// The last published message a connection of it has written (or skipped as not its
    /// own): the lockstep pace waits for it.
    delivered: u64,
}

/// What to start.
pub struct FakeConfig {
    pub setup: Setup,
    /// `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The fake's local clock; its server time adds [`FakeBinance::set_clock_offset`].
    pub clock: Clock,
    pub replay: Option<Replay>,
    /// How the replay advances (the fake Bybit's paces).
    pub pace: Pace,
    /// With a pace other than manual: start replaying only once a stream connected (so a
    /// client started after the fake sees the series from its start).
    pub start_on_subscribe: bool,
    /// How often the server's time is looked at (the listenKey's expiry).
    pub tick_every: Duration,
    /// Every stream connection gets a ping this often (Binance: every 3 minutes).
    pub ping_every: Duration,
    /// A connection that sent no pong for this long is dropped (Binance: 10 minutes; the
    /// time counts from the connection's start until its first pong).
    pub pong_within: Duration,
    /// Every stream connection is cut this long after it opened, with a close frame
    /// (Binance: 24 hours).
    pub cut_after: Duration,
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
            tick_every: Duration::from_millis(100),
            ping_every: PING_EVERY,
            pong_within: PONG_WITHIN,
            cut_after: CUT_AFTER,
        }
    }
}

#[derive(Debug, Clone)]
enum Wire {
    /// A message and its place in the order of all published (from 1).
    Out(u64, Outgoing),
    /// Drop the connections of this stream (all when `None`) without a close frame.
    Drop(Option<Stream>),
}

struct Shared {
    model: Mutex<Model>,
    replay: Mutex<Option<Replay>>,
    tx: broadcast::Sender<Wire>,
    clock: Clock,
    counts: Mutex<[StreamCounts; 2]>,
    /// Messages published so far (each one's [`Wire::Out`] number).
    published: AtomicU64,
    timers: Timers,
    /// Raised on the first stream connection.
    subscribed: watch::Sender<bool>,
    /// Every text frame the streams received, in order.
    received: Mutex<Vec<(Stream, String)>>,
}

impl Shared {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock is a bug in a test; the state is still readable.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Whether every stream that had a connection has one now.
    fn streams_whole(&self) -> bool {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().all(|s| s.connections == 0 || s.open > 0)
    }

    /// Whether every open connection's stream has written what was published up to `seq`
    /// (a stream without a connection has nothing to wait for).
    fn delivered(&self, seq: u64) -> bool {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().all(|s| s.open == 0 || s.delivered >= seq)
    }

    fn count(&self, stream: Stream, f: impl FnOnce(&mut StreamCounts)) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c[stream as usize]);
    }

    /// Sends `out` (the messages of one change) to the streams after the user-stream
    /// faults; called with the model's lock held, so the order of the messages is the
    /// order of the changes.
    fn publish(&self, m: &mut Model, out: Vec<Outgoing>) {
        let out = m.stream_faults.apply(out);
        self.send(out);
    }

    /// Sends `out` as it is. An expired key also closes the user streams.
    fn send(&self, out: Vec<Outgoing>) {
        for o in out {
            let expired =
                matches!(&o, Outgoing::Private { text } if text.contains("\"listenKeyExpired\""));
            // No receiver (no stream connected) is not an error.
            let seq = self.published.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = self.tx.send(Wire::Out(seq, o));
            if expired {
                let _ = self.tx.send(Wire::Drop(Some(Stream::Private)));
            }
        }
    }
}

/// A running fake Binance. Dropping it stops the listener.
pub struct FakeBinance {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeBinance {
    /// Binds and serves on a runtime already running.
    pub async fn start(config: FakeConfig) -> io::Result<FakeBinance> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, _) = broadcast::channel(65_536);
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(config.setup)),
            replay: Mutex::new(config.replay),
            tx,
            clock: config.clock,
            counts: Mutex::new([StreamCounts::default(); 2]),
            published: AtomicU64::new(0),
            timers: Timers {
                ping_every: config.ping_every,
                pong_within: config.pong_within,
                cut_after: config.cut_after,
            },
            subscribed: watch::channel(false).0,
            received: Mutex::new(Vec::new()),
        });
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            stop.clone(),
        ))];
        if config.pace != Pace::Manual {
            let (s, mut stop) = (shared.clone(), stop.clone());
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
        let (s, mut stop_tick) = (shared.clone(), stop);
        let every = config.tick_every;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = s.now();
                        let mut m = s.model();
                        let out = m.tick(now);
                        s.publish(&mut m, out);
                    }
                    _ = stop_tick.changed() => return,
                }
            }
        }));
        Ok(FakeBinance {
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

    /// Every message sent to the streams from now on, for a log.
    pub fn tap(&self) -> Tap {
        Tap(self.shared.tx.subscribe())
    }

    /// A price point outside the replay (`ts` its data time).
    pub fn set_price(&self, symbol: &str, price: Decimal, gap: bool, ts: i64) {
        let mut m = self.shared.model();
        let out = m.on_price(symbol, price, gap, ts);
        self.shared.publish(&mut m, out);
    }

    /// Opens (or adds to) a position at the symbol's price, as another client's order would.
    pub fn open_position(
        &self,
        symbol: &str,
        side: Side,
        qty: Decimal,
        ts: i64,
    ) -> Result<(), String> {
        let mut m = self.shared.model();
        let out = ReplayVenue::open_position(&mut *m, symbol, side, qty, ts)?;
        self.shared.publish(&mut m, out);
        Ok(())
    }

    /// The open positions: symbol, `positionSide`, side, size, entry.
    pub fn positions(&self) -> Vec<(String, &'static str, Side, Decimal, Decimal)> {
        self.shared.model().open_positions()
    }

    /// The resting stops: client id, symbol, trigger.
    pub fn resting_stops(&self) -> Vec<(String, String, Decimal)> {
        self.shared.model().resting_stops()
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.model().inject(fault);
    }

    /// The next stop to trigger is rejected at market (`-4131`): `REJECTED` after
    /// `TRIGGERING`, the position left open.
    pub fn reject_next_trigger(&self) {
        self.shared.model().reject_next_trigger = true;
    }

    /// Changes a symbol's tick (`-4014` for prices on the old grid).
    pub fn set_tick(&self, symbol: &str, tick: Decimal) {
        self.shared.model().set_tick(symbol, tick);
    }

    /// Skews the server clock by `ms` against the local one.
    pub fn set_clock_offset(&self, ms: i64) {
        self.shared.model().clock_offset_ms = ms;
    }

    /// Expires the listenKey now: `listenKeyExpired`, then the user streams close.
    pub fn expire_listen_key(&self) {
        let now = self.shared.now();
        let mut m = self.shared.model();
        let out = m.expire_listen_key(now);
        self.shared.publish(&mut m, out);
    }

    /// Sends a scripted message as is (no stream fault applies).
    pub fn emit(&self, out: Outgoing) {
        let _m = self.shared.model();
        self.shared.send(vec![out]);
    }

    /// Repeats or moves the user-stream messages `fault` picks.
    pub fn inject_stream(&self, fault: StreamFault) {
        self.shared.model().stream_faults.add(fault);
    }

    /// Drops the stream connections (of one stream, or all) without a close frame.
    pub fn drop_streams(&self, which: Option<Stream>) {
        let _ = self.shared.tx.send(Wire::Drop(which));
    }

    /// Stops accepted with no open position for them to close.
    pub fn stops_without_position(&self) -> usize {
        self.shared.model().stops_without_position
    }

    /// Another client on the IP uses up the request weight: the next request that weighs
    /// is answered 429.
    pub fn exhaust_weight(&self) {
        self.shared.model().exhaust_weight();
    }

    /// The 429s for the request weight and the bans (418) given so far.
    pub fn rate_refusals(&self) -> (usize, usize) {
        let m = self.shared.model();
        (m.weight_refusals, m.bans)
    }

    /// Every REST request received, in order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.shared.model().requests.clone()
    }

    /// Every text frame the streams received (a `SUBSCRIBE`, say), in order.
    pub fn received(&self) -> Vec<(Stream, String)> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stream connections accepted so far.
    pub fn connections(&self, stream: Stream) -> usize {
        self.counts(stream).connections
    }

    /// The pings, pongs, drops and cuts of `stream`'s connections so far.
    pub fn counts(&self, stream: Stream) -> StreamCounts {
        let c = self.shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        c[stream as usize]
    }

    /// Stops listening; open stream connections are dropped.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.drop_streams(None);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for FakeBinance {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The messages the fake publishes, as [`FakeBinance::tap`] hands them on.
pub struct Tap(broadcast::Receiver<Wire>);

impl Tap {
    /// The next message published; `None` when the fake stopped. A reader too slow to keep
    /// up skips what it missed.
    pub async fn next(&mut self) -> Option<Outgoing> {
        loop {
            match self.0.recv().await {
                Ok(Wire::Out(_, out)) => return Some(out),
                Ok(Wire::Drop(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn step(shared: &Shared) -> bool {
    matches!(step_ts(shared, false), Stepped::Point(..))
}

enum Stepped {
    /// The point of this data time was replayed; the last message published so far.
    Point(i64, u64),
    /// A stream that was connected is not (a reconnect under way): not now.
    Wait,
    End,
}

/// Replays the next point. With `whole_streams`, only while every stream that was ever
/// connected is connected (checked under the model's lock, as a session's end is): a
/// lockstep replay never moves the market while a client reconnects, so what it hears is
/// the backtest's series whatever the cuts.
fn step_ts(shared: &Shared, whole_streams: bool) -> Stepped {
    let mut m = shared.model();
    if whole_streams && !shared.streams_whole() {
        return Stepped::Wait;
    }
    let mut r = shared.replay.lock().unwrap_or_else(|e| e.into_inner());
    let Some(replay) = r.as_mut() else {
        return Stepped::End;
    };
    let Some(ts) = replay.next_ts() else {
        return Stepped::End;
    };
    let Some(out) = replay.step(&mut *m) else {
        return Stepped::End;
    };
    shared.publish(&mut m, out);
    Stepped::Point(ts, shared.published.load(Ordering::SeqCst))
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
                let before = shared.model().open_positions().len();
                let (ts, seq) = match step_ts(shared, true) {
                    Stepped::Point(ts, seq) => (ts, seq),
                    Stepped::Wait => {
                        tokio::time::sleep(poll).await;
                        continue;
                    }
                    Stepped::End => return,
                };
                let after = shared.model().open_positions().len();
                let opened_or_closed = (before != after).then_some(after);
                // Until the point's messages are written on every stream (the user stream's
                // too, so they are not behind the next point), then until the client has
                // caught up (or the fake stops).
                while !shared.delivered(seq) {
                    tokio::time::sleep(poll).await;
                }
                client_caught_up(&http, &status_url, &symbol, ts, opened_or_closed, poll).await;
            }
        }
    }
}

/// How long a step that opened or closed a position waits for the client to show it.
const POSITIONS_WITHIN: Duration = Duration::from_secs(2);

/// Until the client says it has the point at `ts` (or the fake stops) and, when the step
/// opened or closed a position (`positions`: how many are open now), until it holds as many
/// open ones (at most [`POSITIONS_WITHIN`]): the user stream's news of a new position can
/// come after the point on the market stream, and a stop created for it after the next
/// point would be stamped with that point's time.
async fn client_caught_up(
    http: &reqwest::Client,
    url: &str,
    symbol: &str,
    ts: i64,
    positions: Option<usize>,
    poll: Duration,
) {
    while processed_ts(http, url, symbol).await < Some(ts) {
        tokio::time::sleep(poll).await;
    }
    let Some(want) = positions else { return };
    let until = tokio::time::Instant::now() + POSITIONS_WITHIN;
    while open_positions(http, url).await != Some(want) && tokio::time::Instant::now() < until {
        tokio::time::sleep(poll).await;
    }
}

/// How many open positions a `/status` answer lists (`None` while unreachable).
async fn open_positions(http: &reqwest::Client, url: &str) -> Option<usize> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
    Some(v.get("positions")?.as_array()?.len())
}

/// `symbols.<symbol>.last_price_ts` of a `/status` answer (`None` while unreachable).
async fn processed_ts(http: &reqwest::Client, url: &str, symbol: &str) -> Option<i64> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
    v.get("symbols")?
        .get(symbol)?
        .get("last_price_ts")?
        .as_i64()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                // Each message goes out when written, as an exchange's feed does (Nagle's
                // delay would hold a change's later messages behind its first).
                let _ = socket.set_nodelay(true);
                let s = shared.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(req, s.clone(), stop.clone()));
                    // A client that goes away mid-request, or a dropped answer, ends here.
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

/// The connection is closed without an answer (a fault's "drop after apply").
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fake")
    }
}

impl std::error::Error for Dropped {}

/// The market streams a path names: `/market/stream?streams=a/b` (combined) or
/// `/market/ws/<stream>` (raw); `(combined, names)`.
fn market_streams(path: &str, query: &str) -> Option<(bool, Vec<String>)> {
    if path == "/market/stream" {
        let streams = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("streams="))?;
        let names: Vec<String> = decode(streams).split('/').map(str::to_string).collect();
        return Some((true, names));
    }
    let one = path.strip_prefix("/market/ws/")?;
    Some((false, vec![decode(one)]))
}

/// The listenKey a private path names.
fn private_key(path: &str, query: &str) -> Option<String> {
    if path == "/private/ws" {
        return query
            .split('&')
            .find_map(|kv| kv.strip_prefix("listenKey="))
            .map(decode);
    }
    path.strip_prefix("/private/ws/").map(decode)
}

async fn serve(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    if let Some((combined, names)) = market_streams(&path, &query) {
        return Ok(upgrade(
            req,
            Session::Market { combined, names },
            shared,
            stop,
        ));
    }
    if path.starts_with("/private/ws") {
        let key = private_key(&path, &query).unwrap_or_default();
        let alive = shared.model().listen_key(shared.now()) == Some(key.as_str());
        if !alive {
            return Ok(response(HttpReply {
                status: 400,
                headers: vec![("content-type".into(), "application/json".into())],
                body: r#"{"code":-1125,"msg":"This listenKey does not exist."}"#.into(),
            }));
        }
        return Ok(upgrade(req, Session::Private, shared, stop));
    }
    let method = req.method().as_str().to_string();
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
        method: method.clone(),
        path: path.clone(),
        query,
        headers,
        body,
    };
    let local = shared.now();
    let fault = shared.model().take_fault(&method, &path);
    let apply = |shared: &Shared| {
        let mut m = shared.model();
        let (reply, out) = m.handle(&request, local);
        shared.publish(&mut m, out);
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
            shared.model().requests.push(request.clone());
            tokio::time::sleep(hold).await;
            HttpReply::status(504, "Gateway Timeout")
        }
        Some(FaultKind::ServerErrorAfterApply) => {
            apply(&shared);
            Model::server_error_after_apply()
        }
        Some(FaultKind::DropAfterApply) => {
            apply(&shared);
            return Err(Dropped);
        }
        Some(kind) => {
            let mut m = shared.model();
            m.requests.push(request.clone());
            match m.fault_reply(&kind, local) {
                Some(r) => r,
                None => HttpReply::status(500, "fault"),
            }
        }
    };
    Ok(response(reply))
}

#[derive(Debug, Clone)]
enum Session {
    Market { combined: bool, names: Vec<String> },
    Private,
}

impl Session {
    fn stream(&self) -> Stream {
        match self {
            Session::Market { .. } => Stream::Market,
            Session::Private => Stream::Private,
        }
    }
}

/// A connection's life: pinged every `ping_every`, dropped after `pong_within` without a
/// pong, cut at `cut_after` (wall time, as Binance's).
#[derive(Debug, Clone, Copy)]
struct Timers {
    ping_every: Duration,
    pong_within: Duration,
    cut_after: Duration,
}

fn upgrade(
    req: Request<Incoming>,
    session: Session,
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
    // Subscribed before the upgrade completes, so nothing published after it is missed
    // (what was published before is not this connection's to deliver).
    let rx = shared.tx.subscribe();
    let before = shared.published.load(Ordering::SeqCst);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let first = match &session {
            Session::Market { .. } => shared.model().current_marks(),
            Session::Private => Vec::new(),
        };
        shared.subscribed.send_replace(true);
        run_session(ws, session, first, (rx, before), stop, &shared).await;
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

/// The subscribed name a market message goes out under, if any (`btcusdt@markPrice@1s`,
/// `btcusdt@markPrice`, `btcusdt@aggTrade`).
fn market_name<'a>(names: &'a [String], symbol: &str, stream: &str) -> Option<&'a String> {
    let sym = symbol.to_ascii_lowercase();
    names.iter().find(|n| {
        let mut parts = n.split('@');
        parts.next() == Some(sym.as_str()) && parts.next() == Some(stream)
    })
}

/// The text `out` goes out as on `session`, if it is for it (a market message wrapped as
/// `{"stream":…,"data":…}` on a combined stream).
fn frame(session: &Session, out: Outgoing) -> Option<String> {
    match (session, out) {
        (
            Session::Market { combined, names },
            Outgoing::Market {
                symbol,
                stream,
                text,
            },
        ) => match market_name(names, &symbol, stream) {
            Some(name) if *combined => Some(format!(r#"{{"stream":"{name}","data":{text}}}"#)),
            Some(_) => Some(text),
            None => None,
        },
        (Session::Private, Outgoing::Private { text }) => Some(text),
        _ => None,
    }
}

/// An open connection, counted in [`StreamCounts::open`] until it ends (under the model's
/// lock, so a lockstep step sees either the connection or its end, never half of it).
struct Open<'a> {
    shared: &'a Shared,
    stream: Stream,
    closed: bool,
}

impl Open<'_> {
    /// `before`: the last message published before it subscribed.
    fn new(shared: &Shared, stream: Stream, before: u64) -> Open<'_> {
        let _m = shared.model();
        shared.count(stream, |c| {
            c.connections += 1;
            c.open += 1;
            c.delivered = c.delivered.max(before);
        });
        Open {
            shared,
            stream,
            closed: false,
        }
    }

    /// Ends it now; `pending` is read under the same lock (what was published before).
    fn close<T>(&mut self, pending: impl FnOnce() -> T) -> T {
        let _m = self.shared.model();
        self.closed = true;
        self.shared.count(self.stream, |c| c.open -= 1);
        pending()
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.closed {
            self.close(|| ());
        }
    }
}

async fn run_session<S>(
    ws: WebSocketStream<S>,
    mut session: Session,
    first: Vec<Outgoing>,
    (mut rx, before): (broadcast::Receiver<Wire>, u64),
    mut stop: watch::Receiver<bool>,
    shared: &Shared,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let this = session.stream();
    let mut open = Open::new(shared, this, before);
    let timers = shared.timers;
    let opened = tokio::time::Instant::now();
    let cut_at = opened + timers.cut_after;
    let mut last_pong = opened;
    let mut ping = tokio::time::interval_at(opened + timers.ping_every, timers.ping_every);
    let (mut sink, mut source) = ws.split();
    for out in first {
        let Some(text) = frame(&session, out) else {
            continue;
        };
        if sink.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            // What was published goes out before a timer ends the connection.
            biased;
            wire = rx.recv() => match wire {
                Ok(Wire::Out(seq, out)) => {
                    if let Some(text) = frame(&session, out)
                        && sink.send(Message::Text(text.into())).await.is_err()
                    {
                        return;
                    }
                    shared.count(this, |c| c.delivered = c.delivered.max(seq));
                }
                Ok(Wire::Drop(which)) if which.is_none_or(|w| w == this) => return,
                Ok(Wire::Drop(_)) => {}
                // Too slow to keep up: dropped, as an exchange drops a lagging consumer.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = source.next() => match msg {
                // Pings are answered by tungstenite; a market connection's SUBSCRIBE adds
                // streams (their current prices at once); the user stream's requests get the
                // plain reply.
                Some(Ok(Message::Text(t))) => {
                    let frames = on_text(&mut session, t.as_str(), shared);
                    for f in frames {
                        if sink.send(Message::Text(f.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Pong(_))) => {
                    last_pong = tokio::time::Instant::now();
                    shared.count(this, |c| c.pongs += 1);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                shared.count(this, |c| c.pings += 1);
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
            // No pong for too long: dropped without a close frame.
            _ = tokio::time::sleep_until(last_pong + timers.pong_within) => {
                shared.count(this, |c| c.dropped_without_pong += 1);
                return;
            }
            // Its age: cut with a close frame, once what was published before is out.
            _ = tokio::time::sleep_until(cut_at) => {
                let pending = open.close(|| {
                    let mut left = Vec::new();
                    let mut last = 0;
                    while let Ok(w) = rx.try_recv() {
                        if let Wire::Out(seq, out) = w {
                            left.extend(frame(&session, out));
                            last = seq;
                        }
                    }
                    (left, last)
                });
                let (pending, last) = pending;
                shared.count(this, |c| c.cut += 1);
                for text in pending {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                shared.count(this, |c| c.delivered = c.delivered.max(last));
                let _ = sink.send(Message::Close(None)).await;
                return;
            }
            _ = stop.changed() => return,
        }
    }
}

/// A text frame a stream connection received: what it sends back (the reply, then the current
/// prices of streams a `SUBSCRIBE` added).
fn on_text(session: &mut Session, text: &str, shared: &Shared) -> Vec<String> {
    let this = session.stream();
    shared
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((this, text.to_string()));
    let Session::Market { combined, names } = session else {
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(serde_json::Value::Null);
        return vec![serde_json::json!({"result": null, "id": id}).to_string()];
    };
    let answer = super::subscribe::on_request(names, text);
    let mut frames = vec![answer.reply];
    if !answer.added.is_empty() {
        for out in shared.model().current_marks() {
            let Outgoing::Market {
                symbol,
                stream,
                text,
            } = out
            else {
                continue;
            };
            match market_name(&answer.added, &symbol, stream) {
                Some(name) if *combined => {
                    frames.push(format!(r#"{{"stream":"{name}","data":{text}}}"#))
                }
                Some(_) => frames.push(text),
                None => {}
            }
        }
    }
    frames
}
