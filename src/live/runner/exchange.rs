//! The runner's seam over the two exchanges (`exchange = "bybit" | "binance"` in live.toml):
//! the venue adapter and its streams, behind the calls the runner makes. The runner speaks
//! Bybit's shapes ([`PositionInfo`] with its `positionIdx` 0/1/2, [`Action`], [`StreamNews`]);
//! a Binance position is that shape with `positionSide` `BOTH`/`LONG`/`SHORT` as 0/1/2 and
//! no stop of its own (its stops are orders, each with our `clientAlgoId`).
//!
//! Streams: Bybit's public and private WebSockets; Binance's market stream and user stream,
//! with the listenKey's lifecycle: created at the start, kept alive every
//! [`KEEPALIVE_EVERY`](binance::ws::KEEPALIVE_EVERY), and on `listenKeyExpired`, a refused
//! key (`-1125`, HTTP 400 on connect) or a failed keepalive a new key, a new user stream and
//! a REST re-check.

use std::collections::BTreeSet;
use std::time::Duration;

use rust_decimal::Decimal;

use super::LiveError;
use crate::engine::Instrument;
use crate::live::binance;
use crate::live::bybit;
use crate::live::clock::Clock;
use crate::live::config::{Exchange, LiveConfig, Symbols};
use crate::live::credentials::Credentials;
use crate::live::reconcile::{PositionKey, StopModel, VenueStop};
use crate::sim::venue::VenueKind;
use crate::venue::{Command, OrderRef, RejectReason, VenueEvent};

pub use bybit::request::PositionIdx;
pub use bybit::snapshot::PositionInfo;
pub use bybit::venue::{Action, Executed, StreamNews};

/// The venue the runner drives.
pub enum ExchangeVenue {
    Bybit(bybit::venue::BybitVenue),
    Binance(binance::venue::BinanceVenue),
}

/// A stream's event, either exchange's.
pub enum Feed {
    Bybit(bybit::ws::WsEvent),
    Binance(binance::ws::WsEvent),
    /// Time to extend the listenKey (Binance).
    KeepAlive,
}

/// What a stream event says, in the runner's terms.
pub enum Heard {
    News {
        news: StreamNews,
        /// The exchange's time of a position message (else the runner's now).
        ts: Option<i64>,
        /// Stops that fired without closing their position: close at market, alert.
        close_now: Vec<(u64, String)>,
        /// The listenKey is gone: a new one.
        renew_key: bool,
        /// What the message said needs a REST re-check to settle.
        recheck: bool,
    },
    Connected {
        kind: &'static str,
        connection: u64,
    },
    Disconnected {
        kind: &'static str,
        reason: String,
    },
    Unreadable {
        kind: &'static str,
        error: String,
    },
    /// The stream will not come back by itself (keys, topics; a dead listenKey is
    /// [`Heard::News`] with `renew_key`).
    Refused {
        kind: &'static str,
        reason: String,
    },
    KeepAlive,
}

fn binance_kind(k: binance::ws::StreamKind) -> &'static str {
    match k {
        binance::ws::StreamKind::Market => "market",
        binance::ws::StreamKind::Private => "user",
    }
}

/// A Binance position in the runner's shape.
pub fn from_binance(p: &binance::snapshot::PositionInfo) -> PositionInfo {
    use binance::request::PositionSide;
    PositionInfo {
        symbol: p.symbol.clone(),
        position_idx: match p.position_side {
            PositionSide::Both => PositionIdx::OneWay,
            PositionSide::Long => PositionIdx::HedgeBuy,
            PositionSide::Short => PositionIdx::HedgeSell,
        },
        side: p.side(),
        size: p.size(),
        avg_price: p.entry_price,
        stop_loss: None,
        mark_price: p.mark_price,
        updated_ms: p.updated_ms,
    }
}

/// The runner's shape back to Binance's (signed amount in one-way mode).
fn to_binance(p: &PositionInfo) -> binance::snapshot::PositionInfo {
    use binance::request::PositionSide;
    let position_side = match p.position_idx {
        PositionIdx::OneWay => PositionSide::Both,
        PositionIdx::HedgeBuy => PositionSide::Long,
        PositionIdx::HedgeSell => PositionSide::Short,
    };
    let amount = match p.side {
        Some(crate::engine::Side::Short) if position_side == PositionSide::Both => -p.size,
        Some(_) => p.size,
        None => Decimal::ZERO,
    };
    binance::snapshot::PositionInfo {
        symbol: p.symbol.clone(),
        position_side,
        amount,
        entry_price: p.avg_price,
        mark_price: p.mark_price,
        updated_ms: p.updated_ms,
    }
}

fn from_binance_news(n: binance::venue::StreamNews) -> (StreamNews, Vec<binance::venue::Action>) {
    let news = StreamNews {
        events: n.events,
        prices: n
            .prices
            .into_iter()
            .map(|p| bybit::stream::PricePoint {
                symbol: p.symbol,
                price: p.price,
                ts: p.ts,
            })
            .collect(),
        discovered: n.discovered.iter().map(from_binance).collect(),
    };
    (news, n.actions)
}

fn from_binance_action(a: binance::venue::Action) -> Action {
    use binance::venue::Action as B;
    match a {
        B::Retry | B::RenewListenKey | B::Recheck => Action::Retry,
        B::RetryAfter { ms } => Action::RetryAfter { ms },
        B::Halt { .. } => Action::Halt,
        B::CloseNow { reason, .. } => Action::Fatal {
            code: 0,
            message: reason,
        },
        B::Fatal { code, message } => Action::Fatal { code, message },
    }
}

/// A Binance read-back's "not applied" in the runner's code (Bybit's: the codes differ in
/// sign so that neither is a real code of its exchange).
fn not_applied_code(e: VenueEvent) -> VenueEvent {
    match e {
        VenueEvent::Rejected {
            order,
            ts,
            reason: RejectReason::Invalid { code },
        } if code == binance::snapshot::NOT_APPLIED => VenueEvent::Rejected {
            order,
            ts,
            reason: RejectReason::Invalid {
                code: bybit::snapshot::NOT_APPLIED,
            },
        },
        e => e,
    }
}

impl ExchangeVenue {
    pub fn exchange(&self) -> Exchange {
        match self {
            ExchangeVenue::Bybit(_) => Exchange::Bybit,
            ExchangeVenue::Binance(_) => Exchange::Binance,
        }
    }

    /// The backtester's venue of the same exchange (`--dry-run`).
    pub fn sim_kind(&self) -> VenueKind {
        match self {
            ExchangeVenue::Bybit(_) => VenueKind::Bybit,
            ExchangeVenue::Binance(_) => VenueKind::Binance,
        }
    }

    /// Bybit moves a stop in place; Binance cancels, then creates.
    pub fn atomic_amend(&self) -> bool {
        match self {
            ExchangeVenue::Bybit(v) => v.atomic_amend(),
            ExchangeVenue::Binance(v) => v.atomic_amend(),
        }
    }

    /// How long the host's ban has left (ms) when the exchange said (Binance's 418: its
    /// `Retry-After` or "banned until"); `None` when it did not (Bybit's 403: the runner
    /// waits its own `ban_wait`).
    pub fn ban_left_ms(&self) -> Option<i64> {
        match self {
            ExchangeVenue::Bybit(_) => None,
            ExchangeVenue::Binance(v) => v.rest().ban_left_ms(),
        }
    }

    /// How the exchange says "banned" and "rate limited", for the log lines.
    pub fn refusal_names(&self) -> (&'static str, &'static str) {
        match self {
            ExchangeVenue::Bybit(_) => ("HTTP 403", "10006"),
            ExchangeVenue::Binance(_) => ("HTTP 418", "HTTP 429"),
        }
    }

    /// Bybit holds one stop per position, Binance stop orders.
    pub fn stop_model(&self) -> StopModel {
        match self {
            ExchangeVenue::Bybit(_) => StopModel::OnePerPosition,
            ExchangeVenue::Binance(_) => StopModel::Orders,
        }
    }

    pub fn clock_offset_ms(&self) -> i64 {
        match self {
            ExchangeVenue::Bybit(v) => v.rest().clock_offset_ms(),
            ExchangeVenue::Binance(v) => v.rest().clock_offset_ms(),
        }
    }

    pub fn instrument(&self, symbol: &str) -> Option<&Instrument> {
        match self {
            ExchangeVenue::Bybit(v) => v.instrument(symbol),
            ExchangeVenue::Binance(v) => v.instrument(symbol),
        }
    }

    /// `symbol`'s instrument, read now if not known (`symbols = ["*"]`, a symbol first seen
    /// while running).
    pub async fn learn(&mut self, symbol: &str) -> Result<Option<Instrument>, String> {
        match self {
            ExchangeVenue::Bybit(v) => v.learn(symbol).await.map_err(|e| e.to_string()),
            ExchangeVenue::Binance(v) => v.learn(symbol).await.map_err(|e| e.to_string()),
        }
    }

    /// Every open position of the account (`symbols = ["*"]`).
    pub async fn all_open_positions(&self) -> Result<Vec<PositionInfo>, String> {
        let list = match self {
            ExchangeVenue::Bybit(v) => v
                .rest()
                .positions(bybit::request::PositionFilter::SettleCoin("USDT"))
                .await
                .map_err(|e| e.to_string())?,
            ExchangeVenue::Binance(v) => v
                .rest()
                .positions(None)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(from_binance)
                .collect(),
        };
        Ok(list.into_iter().filter(PositionInfo::is_open).collect())
    }

    pub fn manage(&mut self, position: u64, info: &PositionInfo) -> Result<(), String> {
        match self {
            ExchangeVenue::Bybit(v) => v.manage(position, info).map_err(|e| e.to_string()),
            ExchangeVenue::Binance(v) => v
                .manage(position, &to_binance(info))
                .map_err(|e| e.to_string()),
        }
    }

    pub fn forget(&mut self, position: u64) {
        match self {
            ExchangeVenue::Bybit(v) => v.forget(position),
            ExchangeVenue::Binance(v) => v.forget(position),
        }
    }

    pub fn resume_resting(&mut self, order: OrderRef, stop: i64) {
        match self {
            ExchangeVenue::Bybit(v) => v.resume_resting(order, stop),
            ExchangeVenue::Binance(v) => v.resume_resting(order),
        }
    }

    pub async fn execute(&mut self, command: Command, ts: i64) -> Executed {
        match self {
            ExchangeVenue::Bybit(v) => v.execute(command, ts).await,
            ExchangeVenue::Binance(v) => {
                let ex = v.execute(command, ts).await;
                Executed {
                    events: ex.events.into_iter().map(not_applied_code).collect(),
                    action: ex.action.map(from_binance_action),
                }
            }
        }
    }

    pub async fn recheck(&mut self, ts: i64) -> Result<StreamNews, Action> {
        match self {
            ExchangeVenue::Bybit(v) => v.recheck(ts).await,
            ExchangeVenue::Binance(v) => v
                .recheck(ts)
                .await
                .map(|n| from_binance_news(n).0)
                .map_err(from_binance_action),
        }
    }

    /// The open positions of `symbol` now.
    pub async fn open_positions(&self, symbol: &str) -> Result<Vec<PositionInfo>, String> {
        let list = match self {
            ExchangeVenue::Bybit(v) => v
                .rest()
                .positions(bybit::request::PositionFilter::Symbol(symbol))
                .await
                .map_err(|e| e.to_string())?,
            ExchangeVenue::Binance(v) => v
                .rest()
                .positions(Some(symbol))
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(from_binance)
                .collect(),
        };
        Ok(list.into_iter().filter(PositionInfo::is_open).collect())
    }

    /// The stops resting on `symbol`, for reconciliation: Bybit's position stops (no id),
    /// Binance's open algo orders (by `clientAlgoId`), keyed as `positions` are.
    pub async fn resting_stops(
        &self,
        symbol: &str,
        positions: &[PositionInfo],
    ) -> Result<Vec<VenueStop>, String> {
        let key = |symbol: &str, idx: PositionIdx| PositionKey {
            symbol: symbol.to_string(),
            index: idx.as_u8(),
        };
        match self {
            ExchangeVenue::Bybit(_) => Ok(positions
                .iter()
                .filter_map(|p| {
                    Some(VenueStop {
                        key: key(&p.symbol, p.position_idx),
                        client_id: None,
                        price: p.stop_loss?,
                    })
                })
                .collect()),
            ExchangeVenue::Binance(v) => {
                let stops = v
                    .rest()
                    .open_stops(Some(symbol))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(stops
                    .into_iter()
                    .filter(|s| s.close_position)
                    .map(|s| {
                        let idx = from_binance(&binance::snapshot::PositionInfo {
                            symbol: s.symbol.clone(),
                            position_side: s.position_side,
                            amount: Decimal::ZERO,
                            entry_price: Decimal::ZERO,
                            mark_price: None,
                            updated_ms: None,
                        })
                        .position_idx;
                        VenueStop {
                            key: key(&s.symbol, idx),
                            client_id: Some(s.client_algo_id),
                            price: s.trigger_price,
                        }
                    })
                    .collect())
            }
        }
    }

    /// Cancels the stop of ours `client_id` that reconciliation found without a position
    /// (Binance; Bybit's stop goes with its position). Gone already counts as done.
    pub async fn cancel_orphan(&self, client_id: &str) -> Result<(), String> {
        let ExchangeVenue::Binance(v) = self else {
            return Ok(());
        };
        let req = binance::request::cancel_stop(binance::request::AlgoRef::Client(client_id))
            .map_err(|e| e.to_string())?;
        let reply = v.rest().send_resyncing(&req).await;
        match reply.outcome {
            binance::response::Outcome::Done | binance::response::Outcome::NotFound => Ok(()),
            other => Err(format!("{}: {other:?}", req.endpoint())),
        }
    }

    /// The runner's reading of a stream event.
    pub fn hear(&mut self, feed: Feed, now: i64) -> Heard {
        match (self, feed) {
            (_, Feed::KeepAlive) => Heard::KeepAlive,
            (ExchangeVenue::Bybit(v), Feed::Bybit(ev)) => {
                use bybit::ws::WsEvent as E;
                match ev {
                    E::Message(m) => {
                        if let bybit::stream::StreamMessage::Reply {
                            op,
                            success: false,
                            message,
                            ..
                        } = &m
                        {
                            // A topic added while running (a new symbol's tickers) was refused.
                            super::log::warn(&format!("stream {op} refused: {message}"));
                        }
                        let ts = match &m {
                            bybit::stream::StreamMessage::Positions { ts, .. } => Some(*ts),
                            _ => None,
                        };
                        Heard::News {
                            news: v.on_message(&m),
                            ts,
                            close_now: Vec::new(),
                            renew_key: false,
                            recheck: false,
                        }
                    }
                    E::Connected { kind, connection } => Heard::Connected {
                        kind: kind.as_str(),
                        connection,
                    },
                    E::Disconnected { kind, reason } => Heard::Disconnected {
                        kind: kind.as_str(),
                        reason,
                    },
                    E::Unreadable { kind, error } => Heard::Unreadable {
                        kind: kind.as_str(),
                        error: error.to_string(),
                    },
                    E::Refused { kind, reason } => Heard::Refused {
                        kind: kind.as_str(),
                        reason,
                    },
                }
            }
            (ExchangeVenue::Binance(v), Feed::Binance(ev)) => {
                use binance::ws::WsEvent as E;
                match ev {
                    E::Message(m) => {
                        if let binance::stream::StreamMessage::Reply {
                            error: Some((code, message)),
                            ..
                        } = &m
                        {
                            // A stream added while running (a new symbol's) was refused.
                            super::log::warn(&format!(
                                "market stream SUBSCRIBE refused ({code}): {message}"
                            ));
                        }
                        let ts = match &m {
                            binance::stream::StreamMessage::Account(a) => Some(a.ts),
                            _ => None,
                        };
                        match v.on_stream(m) {
                            Ok(n) => {
                                let (news, actions) = from_binance_news(n);
                                let mut close_now = Vec::new();
                                let mut renew_key = false;
                                let mut recheck = false;
                                for a in actions {
                                    match a {
                                        binance::venue::Action::CloseNow { position, reason } => {
                                            close_now.push((position, reason))
                                        }
                                        binance::venue::Action::RenewListenKey => renew_key = true,
                                        binance::venue::Action::Recheck => recheck = true,
                                        _ => {}
                                    }
                                }
                                Heard::News {
                                    news,
                                    ts,
                                    close_now,
                                    renew_key,
                                    recheck,
                                }
                            }
                            Err(e) => Heard::Unreadable {
                                kind: "user",
                                error: e.to_string(),
                            },
                        }
                    }
                    E::Connected { kind, connection } => Heard::Connected {
                        kind: binance_kind(kind),
                        connection,
                    },
                    E::Disconnected { kind, reason } => Heard::Disconnected {
                        kind: binance_kind(kind),
                        reason,
                    },
                    E::Unreadable { kind, error } => Heard::Unreadable {
                        kind: binance_kind(kind),
                        error: error.to_string(),
                    },
                    // A refused user stream is a dead listenKey: a new one.
                    E::Refused {
                        kind: binance::ws::StreamKind::Private,
                        ..
                    } => Heard::News {
                        news: StreamNews::default(),
                        ts: Some(now),
                        close_now: Vec::new(),
                        renew_key: true,
                        recheck: false,
                    },
                    E::Refused { kind, reason } => Heard::Refused {
                        kind: binance_kind(kind),
                        reason,
                    },
                }
            }
            (_, _) => Heard::Unreadable {
                kind: "stream",
                error: "an event of the other exchange's stream".into(),
            },
        }
    }

    /// A new listenKey (Binance): `POST /fapi/v1/listenKey`.
    pub async fn listen_key(&self) -> Result<String, String> {
        match self {
            ExchangeVenue::Binance(v) => v.rest().listen_key().await.map_err(|e| e.to_string()),
            ExchangeVenue::Bybit(_) => Err("Bybit has no listenKey".into()),
        }
    }

    /// Extends the listenKey another 60 minutes (Binance).
    pub async fn keep_listen_key(&self) -> Result<(), String> {
        match self {
            ExchangeVenue::Binance(v) => {
                v.rest().keep_listen_key().await.map_err(|e| e.to_string())
            }
            ExchangeVenue::Bybit(_) => Ok(()),
        }
    }
}

/// Adds a symbol's prices to the running market stream (a symbol first seen while running,
/// `symbols = ["*"]`), kept across reconnects: Bybit's `tickers.<symbol>` topic, Binance's
/// `<symbol>@markPrice@1s` (or `@aggTrade`) stream.
pub enum Subscriber {
    Bybit(bybit::ws::Subscriber),
    Binance {
        streams: binance::ws::Subscriber,
        trigger: crate::live::config::TriggerPrice,
    },
}

impl Subscriber {
    /// Subscribes `symbol`'s prices; what was subscribed, for the log (`None`: the stream
    /// has ended).
    pub fn subscribe(&self, symbol: &str) -> Option<String> {
        match self {
            Subscriber::Bybit(s) => s
                .subscribe(vec![super::symbols::ticker_topic(symbol)])
                .then(|| "tickers".to_string()),
            Subscriber::Binance { streams, trigger } => {
                let name = binance::request::price_stream_name(symbol, *trigger);
                streams
                    .subscribe(vec![name.clone()])
                    .then(|| format!("its stream {name}"))
            }
        }
    }
}

/// The stream clients of the venue.
pub enum Streams {
    Bybit {
        public: bybit::ws::WsClient,
        private: bybit::ws::WsClient,
    },
    Binance {
        market: binance::ws::WsClient,
        user: binance::ws::WsClient,
        /// The user stream's settings (its path carries the listenKey).
        user_config: binance::ws::WsConfig,
        keepalive: tokio::time::Interval,
        /// Which price the market stream carries (a new symbol's stream is the same kind).
        trigger: crate::live::config::TriggerPrice,
    },
}

impl Streams {
    /// Adds a new symbol's prices to the market stream (Bybit's public, Binance's market).
    pub fn subscriber(&self) -> Subscriber {
        match self {
            Streams::Bybit { public, .. } => Subscriber::Bybit(public.subscriber()),
            Streams::Binance {
                market, trigger, ..
            } => Subscriber::Binance {
                streams: market.subscriber(),
                trigger: *trigger,
            },
        }
    }

    /// The next event of any stream; `Err(stream)` when that stream's client has ended.
    pub async fn next(&mut self) -> Result<Feed, &'static str> {
        match self {
            Streams::Bybit { public, private } => tokio::select! {
                biased;
                ev = private.next() => ev.map(Feed::Bybit).ok_or("private"),
                ev = public.next() => ev.map(Feed::Bybit).ok_or("public"),
            },
            Streams::Binance {
                market,
                user,
                keepalive,
                ..
            } => tokio::select! {
                biased;
                ev = user.next() => ev.map(Feed::Binance).ok_or("user"),
                ev = market.next() => ev.map(Feed::Binance).ok_or("market"),
                _ = keepalive.tick() => Ok(Feed::KeepAlive),
            },
        }
    }

    /// A new user stream on `listen_key` (the old one is closed).
    pub async fn renew_user(&mut self, listen_key: &str) {
        if let Streams::Binance {
            user, user_config, ..
        } = self
        {
            user_config.path = binance::request::private_stream_path(listen_key);
            let old = std::mem::replace(user, binance::ws::WsClient::spawn(user_config.clone()));
            old.shutdown().await;
        }
    }

    pub async fn shutdown(self) {
        match self {
            Streams::Bybit { public, private } => {
                private.shutdown().await;
                public.shutdown().await;
            }
            Streams::Binance { market, user, .. } => {
                user.shutdown().await;
                market.shutdown().await;
            }
        }
    }
}

fn rest_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> LiveError {
    move |e| LiveError::Client(format!("{what}: {e}"))
}

/// The venue of `config.venue.exchange`, the symbols to run (`*`: those with an open
/// position now, on the exchange or in the database: `stored`) and their streams (what they
/// say waits in their queues until reconciliation is done).
pub async fn connect(
    config: &LiveConfig,
    credentials: Credentials,
    clock: Clock,
    timeout: Duration,
    stored: BTreeSet<String>,
    metrics: std::sync::Arc<crate::live::metrics::Metrics>,
) -> Result<(ExchangeVenue, Streams, Vec<String>), LiveError> {
    match config.venue.exchange {
        Exchange::Bybit => {
            connect_bybit(config, credentials, clock, timeout, stored, metrics).await
        }
        Exchange::Binance => {
            connect_binance(config, credentials, clock, timeout, stored, metrics).await
        }
    }
}

async fn connect_bybit(
    config: &LiveConfig,
    credentials: Credentials,
    clock: Clock,
    timeout: Duration,
    stored: BTreeSet<String>,
    metrics: std::sync::Arc<crate::live::metrics::Metrics>,
) -> Result<(ExchangeVenue, Streams, Vec<String>), LiveError> {
    use bybit::rest::{RestClient, RestConfig};
    use bybit::ws::{StreamKind, WsClient, WsConfig};
    let rest = RestClient::new(
        RestConfig {
            base_url: config.venue.rest_url.clone(),
            recv_window_ms: config.venue.recv_window_ms,
            timeout,
            clock: clock.clone(),
        },
        Some(credentials.clone()),
    )
    .map_err(|e| LiveError::Client(e.to_string()))?
    .with_metrics(metrics);
    let symbols = super::symbols::at_start(config, &rest, stored).await?;
    let refs: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let venue = bybit::venue::BybitVenue::connect(rest, config.venue.trigger_price, &refs)
        .await
        .map_err(|source| LiveError::Rest {
            what: "reading the server time and instruments",
            source,
        })?;
    let mut public_cfg = WsConfig::new(
        &config.venue.ws_url,
        StreamKind::Public,
        symbols
            .iter()
            .map(|s| super::symbols::ticker_topic(s))
            .collect(),
        clock.clone(),
    );
    public_cfg.credentials = None;
    let mut private_cfg = WsConfig::new(
        &config.venue.ws_url,
        StreamKind::Private,
        vec!["position".into(), "order".into(), "execution".into()],
        clock,
    );
    private_cfg.credentials = Some(credentials);
    let private = WsClient::spawn(private_cfg);
    let public = WsClient::spawn(public_cfg);
    Ok((
        ExchangeVenue::Bybit(venue),
        Streams::Bybit { public, private },
        symbols,
    ))
}

async fn connect_binance(
    config: &LiveConfig,
    credentials: Credentials,
    clock: Clock,
    timeout: Duration,
    stored: BTreeSet<String>,
    metrics: std::sync::Arc<crate::live::metrics::Metrics>,
) -> Result<(ExchangeVenue, Streams, Vec<String>), LiveError> {
    use binance::request::{StopOptions, market_stream_path, private_stream_path};
    use binance::rest::{RestClient, RestConfig};
    use binance::ws::{KEEPALIVE_EVERY, StreamKind, WsClient, WsConfig};
    let rest = RestClient::new(
        RestConfig {
            base_url: config.venue.rest_url.clone(),
            recv_window_ms: config.venue.recv_window_ms,
            timeout,
            clock: clock.clone(),
        },
        Some(credentials),
    )
    .map_err(|e| LiveError::Client(e.to_string()))?
    .with_metrics(metrics);
    let symbols = match &config.symbols {
        Symbols::Only(list) => list.clone(),
        Symbols::All => {
            let list = rest
                .positions(None)
                .await
                .map_err(rest_err("listing positions"))?;
            let mut set = stored;
            set.extend(list.into_iter().filter(|p| p.is_open()).map(|p| p.symbol));
            set.into_iter().collect()
        }
    };
    let refs: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let options = StopOptions {
        trigger: config.venue.trigger_price,
        ..StopOptions::default()
    };
    let venue = binance::venue::BinanceVenue::connect(rest, options, &refs)
        .await
        .map_err(rest_err(
            "reading the server time, instruments and position mode",
        ))?;
    let key = venue
        .rest()
        .listen_key()
        .await
        .map_err(rest_err("creating the listenKey"))?;
    let market_cfg = WsConfig::new(
        &config.venue.ws_url,
        StreamKind::Market,
        &market_stream_path(&refs, config.venue.trigger_price),
        clock.clone(),
    );
    let user_config = WsConfig::new(
        &config.venue.ws_url,
        StreamKind::Private,
        &private_stream_path(&key),
        clock,
    );
    let user = WsClient::spawn(user_config.clone());
    let market = WsClient::spawn(market_cfg);
    let keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEPALIVE_EVERY,
        KEEPALIVE_EVERY,
    );
    Ok((
        ExchangeVenue::Binance(venue),
        Streams::Binance {
            market,
            user,
            user_config,
            keepalive,
            trigger: config.venue.trigger_price,
        },
        symbols,
    ))
}

impl super::Live {
    /// A command the last run left unanswered. On Binance a create is first looked up by its
    /// `clientAlgoId` (sent again, it could rest twice, or be refused as a duplicate); only
    /// a look-up that finds it not applied sends it again.
    pub(super) async fn resend_unanswered(
        &mut self,
        id: u64,
        cmd: Command,
        ts: i64,
        why: &str,
    ) -> Result<Option<Vec<VenueEvent>>, LiveError> {
        if let (ExchangeVenue::Binance(_), Command::Place { order, .. }) = (&self.venue, cmd) {
            let query = Command::Query { order };
            let Some(events) = self.dispatch(id, query, ts, why).await? else {
                return Ok(None);
            };
            match self.not_applied(id, &query, &events) {
                Some(again) => return self.dispatch(id, again, ts, super::NOT_APPLIED_WHY).await,
                None => return Ok(Some(events)),
            }
        }
        self.dispatch(id, cmd, ts, why).await
    }

    /// A stop fired without closing its position (`REJECTED`/`EXPIRED` after `TRIGGERING`,
    /// e.g. `-4131`): the position is bare. Alert, and close it at market now.
    pub(super) async fn close_now(&mut self, id: u64, reason: &str) -> Result<(), LiveError> {
        if !self.book.slots.contains_key(&id) {
            return Ok(());
        }
        self.warn(&format!(
            "ALERT: position {id}: its stop fired but did not close it ({reason}): \
             unprotected, closing at market"
        ));
        let ts = self.now();
        let cmd = Command::CloseAtMarket { position: id };
        let why = "the stop fired but did not close the position";
        if let Some(events) = self.dispatch(id, cmd, ts, why).await? {
            for e in &events {
                self.book.on_event(id, e);
            }
            self.book.commit(&[id])?;
        }
        self.drain(id).await
    }

    /// The listenKey is gone (expired, refused, or its keepalive failed): a new key, a new
    /// user stream, and a REST re-check for what the gap hid.
    pub(super) async fn renew_listen_key(
        &mut self,
        streams: &mut Streams,
    ) -> Result<(), LiveError> {
        let key = self
            .venue
            .listen_key()
            .await
            .map_err(|reason| LiveError::StreamRefused {
                stream: "user",
                reason: format!("a new listenKey: {reason}"),
            })?;
        streams.renew_user(&key).await;
        self.say("user stream: a new listenKey; re-checking");
        self.recheck().await
    }
}
