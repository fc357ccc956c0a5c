//! The Binance WebSocket client (feature `live`): one task per stream — the market stream
//! (`/market/stream?streams=…`: the streams of the start are in the URL; those added while it
//! runs, [`Subscriber::subscribe`], go as a `SUBSCRIBE` at once and again after every
//! reconnect) or the user stream (`/private/ws?listenKey=…`) — that connects, hands on the parsed
//! [`StreamMessage`]s, treats a silent connection as lost (Binance pings every 3 minutes and
//! tungstenite answers; no message at all for `silent_after` is a dead link), and reconnects
//! with backoff and jitter. Each connect and loss is marked, so the driver re-checks the gap
//! over REST (`LIVE.md` §5).
//!
//! A refused connection (HTTP 4xx at the handshake: a dead listenKey) ends the client with
//! [`WsEvent::Refused`]: the driver creates a new key (`POST /fapi/v1/listenKey`) and starts a
//! client on its path. Keepalives (`PUT` every 30 minutes) are the driver's, on its REST client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use super::request::market_subscribe;
use super::stream::{self, StreamMessage};
use crate::live::bybit::json::ParseError;
use crate::live::bybit::ws::jitter;
use crate::live::clock::Clock;

/// How often the listenKey is kept alive (`EXCHANGES.md` §1.6: hftbacktest and nautilus).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(30 * 60);

/// Which stream a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Market,
    Private,
}

#[derive(Clone)]
pub struct WsConfig {
    /// `wss://fstream.binance.com` or the fake's `ws://127.0.0.1:PORT`; no trailing slash.
    pub base_url: String,
    pub kind: StreamKind,
    /// The path with its query (`request::market_stream_path`, `private_stream_path`).
    pub path: String,
    /// Nothing at all heard for this long: the connection is dead.
    pub silent_after: Duration,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The handshake must finish within this.
    pub answer_within: Duration,
    pub clock: Clock,
}

impl WsConfig {
    pub fn new(base_url: &str, kind: StreamKind, path: &str, clock: Clock) -> WsConfig {
        WsConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            kind,
            path: path.to_string(),
            // The server pings every 3 minutes: a little more than that without a frame.
            silent_after: Duration::from_secs(200),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            answer_within: Duration::from_secs(10),
            clock,
        }
    }

    pub fn url(&self) -> String {
        format!("{}{}", self.base_url, self.path)
    }
}

/// What a client tells its reader.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// Connected (`connection` counts from 0); after a loss, the gap needs a REST re-check.
    Connected {
        kind: StreamKind,
        connection: u64,
    },
    Message(StreamMessage),
    /// A frame that is not a message this adapter reads (the connection stays up).
    Unreadable {
        kind: StreamKind,
        error: ParseError,
    },
    /// The connection was lost; a reconnect follows.
    Disconnected {
        kind: StreamKind,
        reason: String,
    },
    /// The server refused the connection (a dead listenKey): the client has ended.
    Refused {
        kind: StreamKind,
        reason: String,
    },
}

/// A running stream client. Dropping it stops the task.
pub struct WsClient {
    events: mpsc::Receiver<WsEvent>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    streams: mpsc::UnboundedSender<Vec<String>>,
}

/// Adds streams to a running market stream client.
#[derive(Clone)]
pub struct Subscriber {
    streams: mpsc::UnboundedSender<Vec<String>>,
}

impl Subscriber {
    /// Subscribes `streams` (`ethusdt@markPrice@1s`) now on the open connection (or on the
    /// next one), and again on every reconnect; ones already carried are not asked again.
    /// The answer comes as a [`StreamMessage::Reply`]. False once the client has ended.
    pub fn subscribe(&self, streams: Vec<String>) -> bool {
        self.streams.send(streams).is_ok()
    }
}

impl WsClient {
    pub fn spawn(config: WsConfig) -> WsClient {
        let (tx, events) = mpsc::channel(4096);
        let (stop, stop_rx) = watch::channel(false);
        let (streams, added) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(config, tx, stop_rx, added));
        WsClient {
            events,
            stop,
            task,
            streams,
        }
    }

    /// Adds streams to this connection while it runs (the market stream's).
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            streams: self.streams.clone(),
        }
    }

    /// The next event; `None` once the client has ended.
    pub async fn next(&mut self) -> Option<WsEvent> {
        self.events.recv().await
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

enum End {
    Lost(String),
    Refused(String),
    Stop,
}

/// The streams added while running (kept for every reconnect) and the requests' ids.
#[derive(Default)]
struct Added {
    names: Vec<String>,
    next_id: u64,
    /// Every [`Subscriber`] is gone: nothing more will be asked.
    closed: bool,
}

impl Added {
    /// The `SUBSCRIBE` for `names` (those not carried yet), if any.
    fn take(&mut self, names: Vec<String>, config_path: &str) -> Option<String> {
        let fresh: Vec<String> = names
            .into_iter()
            .filter(|n| !self.names.contains(n) && !in_path(config_path, n))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        self.names.extend(fresh.iter().cloned());
        Some(self.request(&fresh))
    }

    fn request(&mut self, names: &[String]) -> String {
        self.next_id += 1;
        market_subscribe(names, self.next_id)
    }
}

/// Whether the connection's URL names `stream` already.
fn in_path(path: &str, stream: &str) -> bool {
    path.split(['=', '/', '&']).any(|p| p == stream)
}

async fn run(
    config: WsConfig,
    tx: mpsc::Sender<WsEvent>,
    mut stop: watch::Receiver<bool>,
    mut requested: mpsc::UnboundedReceiver<Vec<String>>,
) {
    let kind = config.kind;
    let mut backoff = config.backoff;
    let mut connection = 0u64;
    let mut added = Added::default();
    loop {
        let mut connected = false;
        let end = tokio::select! {
            end = session(&config, connection, &tx, &mut connected, &mut added, &mut requested) => end,
            _ = stop.changed() => End::Stop,
        };
        let reason = match end {
            End::Stop => return,
            End::Refused(reason) => {
                let _ = tx.send(WsEvent::Refused { kind, reason }).await;
                return;
            }
            End::Lost(reason) => reason,
        };
        if tx
            .send(WsEvent::Disconnected { kind, reason })
            .await
            .is_err()
        {
            return;
        }
        // A connection that worked starts the backoff over; failed attempts double it.
        if connected {
            connection += 1;
            backoff = config.backoff;
        }
        let wait = backoff + jitter(backoff, (config.clock)());
        backoff = (backoff * 2).min(config.max_backoff);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn session(
    config: &WsConfig,
    connection: u64,
    tx: &mpsc::Sender<WsEvent>,
    connected: &mut bool,
    added: &mut Added,
    requested: &mut mpsc::UnboundedReceiver<Vec<String>>,
) -> End {
    let kind = config.kind;
    let connect = tokio_tungstenite::connect_async(config.url());
    let (ws, _) = match tokio::time::timeout(config.answer_within, connect).await {
        Ok(Ok(ok)) => ok,
        // An HTTP answer instead of the upgrade: the server refused (a 4xx) or failed.
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status().is_client_error() => {
            return End::Refused(format!("HTTP {}", resp.status().as_u16()));
        }
        Ok(Err(e)) => return End::Lost(format!("connect: {e}")),
        Err(_) => return End::Lost("connect: timed out".into()),
    };
    *connected = true;
    if tx
        .send(WsEvent::Connected { kind, connection })
        .await
        .is_err()
    {
        return End::Stop;
    }
    let (mut sink, mut source) = ws.split();
    // What was added on an earlier connection, again on this one.
    if !added.names.is_empty() {
        let again = added.names.clone();
        let request = added.request(&again);
        if let Err(e) = sink.send(Message::Text(request.into())).await {
            return End::Lost(format!("subscribe: {e}"));
        }
    }
    loop {
        let heard = tokio::select! {
            m = tokio::time::timeout(config.silent_after, source.next()) => m,
            names = requested.recv(), if !added.closed => {
                let Some(names) = names else {
                    added.closed = true;
                    continue;
                };
                if let Some(request) = added.take(names, &config.path)
                    && let Err(e) = sink.send(Message::Text(request.into())).await
                {
                    return End::Lost(format!("subscribe: {e}"));
                }
                continue;
            }
        };
        let msg = match heard {
            Ok(m) => m,
            Err(_) => return End::Lost(format!("nothing heard for {:?}", config.silent_after)),
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return End::Lost(format!("closed by the server: {frame:?}"));
            }
            // Pings (answered by tungstenite), pongs, binary: alive.
            Some(Ok(_)) => continue,
            Some(Err(e)) => return End::Lost(e.to_string()),
            None => return End::Lost("connection ended".into()),
        };
        let event = match stream::parse(text.as_str()) {
            Ok(m) => WsEvent::Message(m),
            Err(error) => WsEvent::Unreadable { kind, error },
        };
        if tx.send(event).await.is_err() {
            return End::Stop;
        }
    }
}
