//! The WebSocket client (feature `live`): one task per stream that connects, authenticates
//! (private), subscribes, pings every 20 s, and on any loss reconnects with backoff and
//! subscribes again. It hands on the parsed [`StreamMessage`]s of [`stream`]
//! and marks each connect and loss, so the runner re-checks the gap over REST (`LIVE.md` §5).
//! Topics added while it runs ([`Subscriber::subscribe`]: a symbol's first position) are
//! subscribed at once and kept for every reconnect.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::json::ParseError;
use super::request::{WS_PING, ws_subscribe};
use super::sign;
use super::stream::{self, StreamMessage};
use super::{WS_PRIVATE, WS_PUBLIC_LINEAR};
use crate::live::clock::Clock;
use crate::live::credentials::Credentials;

/// Bybit asks for a ping every 20 s.
pub const PING_EVERY: Duration = Duration::from_secs(20);

/// Topics per subscribe request (Bybit refuses more than 10 args on the public stream).
pub const TOPICS_PER_REQUEST: usize = 10;

/// How long an auth signature stays valid (`expires` = now + this).
pub const AUTH_EXPIRES_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `/v5/public/linear`: tickers.
    Public,
    /// `/v5/private`: position, order, execution (needs auth).
    Private,
}

impl StreamKind {
    pub fn path(self) -> &'static str {
        match self {
            StreamKind::Public => WS_PUBLIC_LINEAR,
            StreamKind::Private => WS_PRIVATE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Public => "public",
            StreamKind::Private => "private",
        }
    }
}

/// One stream's settings.
#[derive(Clone)]
pub struct WsConfig {
    /// `venue.ws_url` (`wss://stream.bybit.com`, or the fake's `ws://127.0.0.1:PORT`); the
    /// stream's path is appended.
    pub base_url: String,
    pub kind: StreamKind,
    pub topics: Vec<String>,
    /// Required for the private stream.
    pub credentials: Option<Credentials>,
    pub ping_every: Duration,
    /// No message at all (pongs included) for this long: the connection is dead, reconnect.
    pub silent_after: Duration,
    /// The first wait before reconnecting; doubled per failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Connect, auth and subscribe must each answer within this.
    pub answer_within: Duration,
    pub clock: Clock,
}

impl WsConfig {
    pub fn new(base_url: &str, kind: StreamKind, topics: Vec<String>, clock: Clock) -> WsConfig {
        WsConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            kind,
            topics,
            credentials: None,
            ping_every: PING_EVERY,
            silent_after: PING_EVERY * 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            answer_within: Duration::from_secs(10),
            clock,
        }
    }

    pub fn url(&self) -> String {
        format!("{}{}", self.base_url, self.kind.path())
    }
}

/// What the client hands on, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// Connected, authenticated (private) and subscribed. `connection` counts the successful
    /// connections before this one: any but 0 is a reconnect, after which the gap must be
    /// re-checked over REST.
    Connected {
        kind: StreamKind,
        connection: u64,
    },
    Message(StreamMessage),
    /// A text frame that does not parse (named field), handed on rather than dropped.
    Unreadable {
        kind: StreamKind,
        error: ParseError,
    },
    /// The connection is gone (or never came); a reconnect follows after the backoff.
    Disconnected {
        kind: StreamKind,
        reason: String,
    },
    /// Auth or a subscription was refused: the task ends (keys or topics are wrong; retrying
    /// would not help).
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
    topics: mpsc::UnboundedSender<Vec<String>>,
}

/// Adds topics to a running [`WsClient`] (cloneable; the client's task owns the list).
#[derive(Clone)]
pub struct Subscriber {
    topics: mpsc::UnboundedSender<Vec<String>>,
}

impl Subscriber {
    /// Subscribes `topics` now on the open connection (or on the next one), and on every
    /// reconnect after; topics already subscribed are left as they are. The answer comes as a
    /// [`StreamMessage::Reply`] with `op` `subscribe`. False once the client has ended.
    pub fn subscribe(&self, topics: Vec<String>) -> bool {
        self.topics.send(topics).is_ok()
    }
}

impl WsClient {
    /// Starts the stream's task on the current runtime.
    pub fn spawn(config: WsConfig) -> WsClient {
        let (tx, events) = mpsc::channel(4096);
        let (stop, stop_rx) = watch::channel(false);
        let (topics, topics_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(config, tx, stop_rx, topics_rx));
        WsClient {
            events,
            stop,
            task,
            topics,
        }
    }

    /// A handle that adds topics while the client runs.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            topics: self.topics.clone(),
        }
    }

    /// The next event; `None` once the task has ended.
    pub async fn next(&mut self) -> Option<WsEvent> {
        self.events.recv().await
    }

    /// Stops the task and waits for it.
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

/// How one connection ended.
enum End {
    /// Reconnect after the backoff, for this reason.
    Lost(String),
    /// Refused: stop.
    Refused(String),
    /// Asked to stop, or nobody listens any more.
    Stop,
}

async fn run(
    mut config: WsConfig,
    tx: mpsc::Sender<WsEvent>,
    mut stop: watch::Receiver<bool>,
    mut added: mpsc::UnboundedReceiver<Vec<String>>,
) {
    let kind = config.kind;
    let mut backoff = config.backoff;
    let mut connection = 0u64;
    loop {
        let mut connected = false;
        let end = tokio::select! {
            end = session(&mut config, connection, &tx, &mut connected, &mut added) => end,
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

/// Up to a quarter of `backoff`, from the clock's milliseconds: reconnects of many clients
/// (or streams) after one outage spread out instead of arriving together.
pub(crate) fn jitter(backoff: Duration, now_ms: i64) -> Duration {
    let span = (backoff.as_millis() / 4) as u64 + 1;
    Duration::from_millis(now_ms.unsigned_abs() % span)
}

/// Adds the `topics` not in `config.topics` yet; returns those.
fn add_topics(config: &mut WsConfig, topics: Vec<String>) -> Vec<String> {
    let mut new = Vec::new();
    for t in topics {
        if !config.topics.contains(&t) && !new.contains(&t) {
            new.push(t);
        }
    }
    config.topics.extend(new.iter().cloned());
    new
}

async fn session(
    config: &mut WsConfig,
    connection: u64,
    tx: &mpsc::Sender<WsEvent>,
    connected: &mut bool,
    added: &mut mpsc::UnboundedReceiver<Vec<String>>,
) -> End {
    // Topics added while no connection was open are subscribed with the others.
    while let Ok(topics) = added.try_recv() {
        add_topics(config, topics);
    }
    let kind = config.kind;
    let connect = tokio_tungstenite::connect_async(config.url());
    let (ws, _) = match tokio::time::timeout(config.answer_within, connect).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return End::Lost(format!("connect: {e}")),
        Err(_) => return End::Lost("connect: timed out".into()),
    };
    let (mut sink, mut source) = ws.split();
    // Messages that arrive before the handshake's answers are handed on after Connected.
    let mut early: Vec<WsEvent> = Vec::new();

    if kind == StreamKind::Private {
        let Some(c) = &config.credentials else {
            return End::Refused("the private stream needs an API key".into());
        };
        let auth = sign::ws_auth(c, (config.clock)() + AUTH_EXPIRES_MS);
        if let Err(e) = sink.send(Message::Text(auth.expose().into())).await {
            return End::Lost(format!("auth: {e}"));
        }
        match await_reply(&mut source, "auth", config, kind, &mut early).await {
            Ok(()) => {}
            Err(end) => return end,
        }
    }
    for chunk in config.topics.chunks(TOPICS_PER_REQUEST) {
        if let Err(e) = sink.send(Message::Text(ws_subscribe(chunk).into())).await {
            return End::Lost(format!("subscribe: {e}"));
        }
        if let Err(end) = await_reply(&mut source, "subscribe", config, kind, &mut early).await {
            return end;
        }
    }
    *connected = true;
    if tx
        .send(WsEvent::Connected { kind, connection })
        .await
        .is_err()
    {
        return End::Stop;
    }
    for e in early {
        if tx.send(e).await.is_err() {
            return End::Stop;
        }
    }

    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + config.ping_every,
        config.ping_every,
    );
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let silent_at = last_heard + config.silent_after;
        tokio::select! {
            _ = ping.tick() => {
                if let Err(e) = sink.send(Message::Text(WS_PING.into())).await {
                    return End::Lost(format!("ping: {e}"));
                }
            }
            _ = tokio::time::sleep_until(silent_at) => {
                return End::Lost(format!("nothing heard for {:?}", config.silent_after));
            }
            Some(topics) = added.recv() => {
                let new = add_topics(config, topics);
                for chunk in new.chunks(TOPICS_PER_REQUEST) {
                    if let Err(e) = sink.send(Message::Text(ws_subscribe(chunk).into())).await {
                        return End::Lost(format!("subscribe: {e}"));
                    }
                }
            }
            msg = source.next() => {
                last_heard = tokio::time::Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        return End::Lost(format!("closed by the server: {frame:?}"));
                    }
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
    }
}

/// Waits for the reply to `op`; other messages meanwhile are kept in `early`.
async fn await_reply<S>(
    source: &mut S,
    op: &str,
    config: &WsConfig,
    kind: StreamKind,
    early: &mut Vec<WsEvent>,
) -> Result<(), End>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + config.answer_within;
    loop {
        let msg = match tokio::time::timeout_at(deadline, source.next()).await {
            Err(_) => return Err(End::Lost(format!("{op}: no answer in time"))),
            Ok(None) => return Err(End::Lost(format!("{op}: connection ended"))),
            Ok(Some(Err(e))) => return Err(End::Lost(format!("{op}: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(text) = msg else { continue };
        match stream::parse(text.as_str()) {
            Ok(StreamMessage::Reply {
                op: got,
                success,
                code,
                message,
            }) if got == op => {
                return if success {
                    Ok(())
                } else {
                    Err(End::Refused(format!(
                        "{op} refused: {}{message}",
                        code.map_or(String::new(), |c| format!("{c} "))
                    )))
                };
            }
            Ok(m) => early.push(WsEvent::Message(m)),
            Err(error) => early.push(WsEvent::Unreadable { kind, error }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter_of_the_backoff() {
        let b = Duration::from_millis(400);
        for now in [0, 1, 99, 100, 101, 1_767_000_000_123, -5] {
            assert!(jitter(b, now) <= Duration::from_millis(100), "{now}");
        }
        assert_eq!(
            jitter(b, 1_767_000_000_050),
            Duration::from_millis(1_767_000_000_050 % 101)
        );
        assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
    }
}
