//! `trailstop live` (feature `live`, `LIVE.md` §4–§6): the runner that ties a venue adapter
//! (Bybit or Binance), the engine's [`PositionRunner`](crate::runner::PositionRunner)s and the store
//! together.
//!
//! - [`book`]: the synchronous core: one runner per managed position on an [`Outbox`]
//!   venue; every step committed before its commands leave (write-ahead).
//! - [`pace`]: the account's rate limit on stop calls: protective first, then ratchets,
//!   each coalesced to its newest stop.
//! - [`status`]: `GET /status`, `GET /healthz`.
//! - [`trades`]: closed positions appended to `trades.csv` / `events.jsonl`.
//! - [`log`]: the log lines (`tracing`; text or JSON), one per decision that touches the
//!   exchange.
//! - [`symbols`]: `symbols = ["*"]`: a symbol first seen while running is read and subscribed.
//! - [`exchange`]: the seam over the two exchanges (`exchange = "bybit" | "binance"`): the
//!   venue, its streams, the listenKey's lifecycle on Binance.
//!
//! Start: the store (exclusive), the venue (clock, instruments), the streams (their events
//! wait in their queues), the REST snapshot, [`reconcile`] and every
//! decision carried out (each printed and journalled); then the loop: prices → engines →
//! commands → answers → engines, private messages → events, a REST re-check every 60 s and
//! after a reconnect. A stop or interrupt leaves every stop resting on the exchange.

pub mod book;
pub mod breaker;
pub mod crash;
pub mod exchange;
pub mod log;
pub mod pace;
pub mod resilience;
pub mod status;
pub mod symbols;
pub mod trades;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use rust_decimal::Decimal;
use thiserror::Error;
use tokio::sync::watch;

pub use book::{Book, BookError, Driver, Opening, Outbox, Slot, event_position, in_flight_command};
use breaker::{Breaker, PauseReason, Verdict};
pub use log::{LogFormat, LogSink};
pub use resilience::Resilience;
use resilience::{NOT_APPLIED_WHY, Sent};
pub use status::{Shared, Status};

use crate::live::bybit::rest::RestError;
use crate::live::clock::{Clock, system_clock};
use crate::live::config::{Exchange, LiveConfig};
use crate::live::credentials::Credentials;
use crate::live::metrics::{Metrics, Watch};
use crate::live::reconcile::{self, Decision, PositionKey, VenuePosition};
use crate::sim::path::Point;
use crate::sim::venue::{SimVenue, VenueKind, VenueModel};
use crate::store::{OpenOptions, Store, StoreError};
use crate::venue::Venue;
use crate::venue::{Command, OrderRef, Phase, RejectReason, VenueEvent};
use exchange::{
    Action, ExchangeVenue, Feed, Heard, PositionIdx, PositionInfo, StreamNews, Streams,
};

/// How often the positions are re-read over REST (`LIVE.md` §5).
pub const RECHECK_EVERY: Duration = Duration::from_secs(60);
/// No price for this long on a symbol (by the local clock of arrival): stale (`LIVE.md` §5).
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// Sends of one command before giving up (retries after `Retry`/`RetryAfter`).
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Error)]
pub enum LiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Book(#[from] BookError),
    #[error("{what}: {source}")]
    Rest {
        what: &'static str,
        source: RestError,
    },
    #[error("starting the REST client: {0}")]
    Client(String),
    #[error("reconciliation cannot complete: {0}; nothing but the journal was changed")]
    Unreconciled(String),
    #[error("{0}")]
    Venue(String),
    #[error("{stream} stream refused: {reason}")]
    StreamRefused {
        stream: &'static str,
        reason: String,
    },
    #[error("{path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
    #[error("the status server on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// How to run.
pub struct LiveOptions {
    /// Where log lines go (one per decision that touches the exchange), and their format.
    pub log: LogSink,
    pub clock: Clock,
    /// REST timeout per request.
    pub timeout: Duration,
    /// `--dry-run`: the exchange's positions and prices, the simulated venue's orders (no
    /// order reaches the exchange).
    pub dry_run: bool,
    /// The circuit breaker's settings and the wait after a ban.
    pub resilience: Resilience,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            log: LogSink::stderr(LogFormat::Text),
            clock: system_clock(),
            timeout: Duration::from_secs(5),
            dry_run: false,
            resilience: Resilience::default(),
        }
    }
}

/// The running driver.
struct Live {
    config: LiveConfig,
    book: Book,
    venue: ExchangeVenue,
    status: Shared,
    reconciled: bool,
    /// The streams down now.
    down: BTreeSet<&'static str>,
    /// When the last price of each subscribed symbol arrived (local clock).
    arrived: BTreeMap<String, Instant>,
    /// The symbols found stale at the last look (logged once per spell).
    stale: BTreeSet<String>,
    clock: Clock,
    /// `--dry-run`: each position's simulated venue (its commands go there, never to the
    /// exchange), and the exchange positions a simulated stop closed (not adopted again
    /// until their size, side or entry changes).
    dry: Option<Dry>,
    resilience: Resilience,
    /// The venue's circuit breaker and pauses (a ban, a rate limit).
    circuit: Breaker,
    /// Commands waiting for the venue, per position.
    held: resilience::HeldCommands,
    /// Adds a symbol first seen while running to the market stream.
    tickers: Option<exchange::Subscriber>,
    /// The account's limit on stop calls, on the monotonic clock since `started`.
    pace: pace::Pacer,
    started: Instant,
    /// `/metrics` (issue 14) and what the gauges need beside the book.
    metrics: Arc<Metrics>,
    watch: Watch,
}

#[derive(Default)]
struct Dry {
    venues: BTreeMap<u64, SimVenue>,
    closed: BTreeMap<(String, u8), PositionInfo>,
}

fn rest_err(what: &'static str) -> impl Fn(RestError) -> LiveError {
    move |source| LiveError::Rest { what, source }
}

/// `--dry-run`'s simulated venue: the backtester's of the same exchange.
fn dry_model(venue: VenueKind) -> VenueModel {
    VenueModel {
        venue,
        update_latency_ms: 0,
    }
}

/// What a command does, and its client id (`-` for a close at market: it has none of ours).
fn describe(cmd: &Command, instrument: Option<&crate::engine::Instrument>) -> (String, String) {
    let price = |u: i64| instrument.map_or(u.to_string(), |i| i.decimal(u).to_string());
    match cmd {
        Command::Place { order, stop } => {
            (format!("place stop {}", price(*stop)), order.client_id())
        }
        Command::Amend { order, stop, .. } => {
            (format!("move stop to {}", price(*stop)), order.client_id())
        }
        Command::Cancel { order } => ("cancel stop".into(), order.client_id()),
        Command::CloseAtMarket { .. } => ("close at market, reduce-only".into(), "-".into()),
        Command::Query { order } => ("look up the stop".into(), order.client_id()),
    }
}

/// Why the lifecycle of `slot` sends `cmd` now (the stop's origin for a set).
fn why_of(slot: Option<&Slot>, cmd: &Command) -> &'static str {
    use crate::engine::StopOrigin;
    let origin = |o: StopOrigin| match o {
        StopOrigin::Initial => "initial stop",
        StopOrigin::Breakeven => "breakeven",
        StopOrigin::Trailing => "trailing",
    };
    let phase = slot.map(|s| s.runner.order.phase());
    match (cmd, phase) {
        (Command::Place { .. }, Some(Phase::Placing { order, .. }))
        | (Command::Amend { .. }, Some(Phase::Amending { to: order, .. })) => origin(order.origin),
        (Command::Place { .. }, _) => "the position has no stop",
        (Command::Amend { .. }, _) => "trailing",
        (Command::Cancel { .. }, _) => "replaced",
        (Command::CloseAtMarket { .. }, _) => "exit now",
        (Command::Query { .. }, _) => "the last answer was ambiguous",
    }
}

fn describe_events(events: &[VenueEvent]) -> String {
    if events.is_empty() {
        return "pending (the answer comes on the stream)".into();
    }
    events
        .iter()
        .map(|e| match e {
            VenueEvent::Accepted { .. } => "accepted".to_string(),
            VenueEvent::Rejected { reason, .. } => format!("rejected ({reason:?})"),
            VenueEvent::Cancelled { .. } => "cancelled".to_string(),
            VenueEvent::Ambiguous { .. } => "ambiguous (looked up next)".to_string(),
            VenueEvent::Triggered { .. } => "triggered".to_string(),
            VenueEvent::PositionOpened { .. } => "opened".to_string(),
            VenueEvent::PositionChanged { .. } => "changed".to_string(),
            VenueEvent::PositionClosed { .. } => "closed".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Live {
    fn say(&self, line: &str) {
        log::note(line);
    }

    fn warn(&self, line: &str) {
        log::warn(line);
    }

    /// Why `/healthz` is degraded: a stream down, or symbols without a price for
    /// [`STALE_AFTER`].
    fn degraded(&self) -> Option<String> {
        let mut why: Vec<String> = self
            .down
            .iter()
            .map(|s| format!("{s} stream down"))
            .collect();
        if !self.stale.is_empty() {
            let list: Vec<&str> = self.stale.iter().map(String::as_str).collect();
            why.push(format!("stale prices: {}", list.join(", ")));
        }
        why.extend(self.circuit_degraded());
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Marks the symbols without a price for [`STALE_AFTER`]; logs each change.
    fn look_for_stale(&mut self) {
        let now = Instant::now();
        let stale: BTreeSet<String> = self
            .arrived
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= STALE_AFTER)
            .map(|(s, _)| s.clone())
            .collect();
        for s in stale.difference(&self.stale) {
            self.warn(&format!(
                "{s}: no price for {} s: stale",
                STALE_AFTER.as_secs()
            ));
        }
        for s in self.stale.difference(&stale) {
            self.say(&format!("{s}: prices again"));
        }
        self.stale = stale;
    }

    /// Brings `/status` and the gauges' inputs up to date after a message: only the
    /// positions and symbols it changed are rebuilt, so a price costs what it touched, not
    /// the whole book (the gauges are computed when `/metrics` is scraped).
    fn publish(&mut self) {
        let changed = self.book.take_changed();
        let degraded = self.degraded();
        let streams = self.watch.streams();
        let circuit = if self.dry.is_none() {
            self.circuit_status()
        } else {
            BTreeMap::new()
        };
        let offset = self.venue.clock_offset_ms();
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.refresh(&self.book, &changed);
        #[cfg(debug_assertions)]
        {
            // Every change the book made is in `changed` (what the tests' builds check).
            let full = Status::of(&self.book, self.reconciled, None);
            debug_assert_eq!(s.positions, full.positions, "/status positions out of date");
        }
        s.remember_labels(&changed.positions);
        for symbol in &changed.symbols {
            if let Some(at) = self.arrived.get(symbol) {
                s.gauges.arrived.insert(symbol.clone(), *at);
            }
        }
        s.reconciled = self.reconciled;
        s.degraded = degraded;
        s.streams = streams;
        s.gauges.circuit_open = circuit.values().any(|state| state == "open");
        s.circuit = circuit;
        s.gauges.without_trailing_stop = self.watch.unmanaged.len() as u64;
        s.gauges.clock_offset_ms = offset;
    }

    /// Every symbol's arrival time to the gauges' inputs (a point dropped as older than the
    /// last still arrived; a symbol subscribed while running has arrived at its subscription).
    fn publish_arrivals(&mut self) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.gauges.arrived.clone_from(&self.arrived);
    }

    fn now(&self) -> i64 {
        (self.clock)() + self.venue.clock_offset_ms()
    }

    /// Sends one command until it has an answer (retrying what the venue says to retry), or
    /// until it must wait ([`Sent::Held`]: a ban, a rate limit, the breaker open); logs one
    /// line per request, saying why it was sent (`why`). Each answer counts for the breaker.
    async fn send(&mut self, id: u64, cmd: Command, ts: i64, why: &str) -> Result<Sent, LiveError> {
        let symbol = self
            .book
            .slots
            .get(&id)
            .map_or(String::new(), |s| s.driver.symbol.clone());
        let instrument = self.book.slots.get(&id).map(|s| *s.instrument());
        if let Some(dry) = &mut self.dry {
            let Some(sim) = dry.venues.get_mut(&id) else {
                return Ok(Sent::Answered(Vec::new()));
            };
            let (what, client_id) = describe(&cmd, instrument.as_ref());
            let events: Vec<VenueEvent> = sim.execute(cmd, ts).into_iter().collect();
            log::decision(&log::Decision {
                symbol: &symbol,
                position: id,
                what: &what,
                why,
                client_id: &client_id,
                result: &format!("{} (dry run: simulated)", describe_events(&events)),
            });
            return Ok(Sent::Answered(events));
        }
        let asked = cmd;
        let cmd = self.book.never_looser(id, cmd);
        let why = if cmd == asked {
            why.to_string()
        } else {
            format!("{why}; held at the stop adopted from someone else (never looser)")
        };
        let (what, client_id) = describe(&cmd, instrument.as_ref());
        let line = |result: &str| {
            log::decision(&log::Decision {
                symbol: &symbol,
                position: id,
                what: &what,
                why: &why,
                client_id: &client_id,
                result,
            })
        };
        let kind = resilience::kind_of(&cmd);
        let mut wait = Duration::from_millis(100);
        match cmd {
            Command::Place { .. } => crash::reached(crash::Point::Placing),
            Command::Amend { .. } => crash::reached(crash::Point::Amending),
            _ => {}
        }
        let paced = pace::urgency(&cmd).is_some();
        for attempt in 1..=MAX_ATTEMPTS {
            if paced {
                self.pace_slot().await;
            }
            let ex = self.venue.execute(cmd, ts).await;
            if paced {
                self.pace.end(self.mono_ms());
            }
            let now = self.now();
            // A stop refused by the rate limit (10006) never changed: it waits for the reset,
            // and the newest stop goes then.
            if let [
                VenueEvent::Rejected {
                    reason: RejectReason::RateLimited { retry_after_ms },
                    ..
                },
            ] = ex.events[..]
            {
                line(&format!(
                    "rate limited ({}): held until the reset in {retry_after_ms} ms",
                    self.venue.refusal_names().1
                ));
                return Ok(self.pause(PauseReason::RateLimited, now + retry_after_ms.max(0)));
            }
            match ex.action {
                None => {
                    if ex
                        .events
                        .iter()
                        .any(|e| matches!(e, VenueEvent::Ambiguous { .. }))
                    {
                        self.failed(now);
                    } else {
                        self.succeeded();
                    }
                    line(&describe_events(&ex.events));
                    return Ok(Sent::Answered(ex.events));
                }
                Some(Action::Retry) => {
                    self.failed(now);
                    if let Verdict::Wait { until_ms, why } = self.circuit.check(kind, now) {
                        line(&format!("no answer: held ({why})"));
                        return Ok(Sent::Held { until_ms });
                    }
                    if attempt == MAX_ATTEMPTS {
                        break;
                    }
                    // Backoff with jitter: many positions retrying after one outage spread out.
                    let pause = wait + crate::live::bybit::ws::jitter(wait, now);
                    line(&format!("retry {attempt} after {} ms", pause.as_millis()));
                    tokio::time::sleep(pause).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Some(Action::RetryAfter { ms }) => {
                    line(&format!("rate limited: held for {ms} ms"));
                    return Ok(self.pause(PauseReason::RateLimited, now + ms.max(0)));
                }
                Some(Action::Fatal { code, message }) => {
                    line(&format!("refused ({code}): {message}"));
                    return Err(LiveError::Venue(format!(
                        "{symbol} position {id}: {what}: refused ({code}): {message}"
                    )));
                }
                Some(Action::Halt) => {
                    let wait_ms = self.ban_wait_ms();
                    line(&format!(
                        "banned ({}): no REST to the host for {} s; held",
                        self.venue.refusal_names().0,
                        (wait_ms + 999) / 1000
                    ));
                    return Ok(self.pause(PauseReason::Banned, now + wait_ms));
                }
            }
        }
        let until_ms = self.now() + self.resilience.breaker.cooldown_ms;
        line(&format!("no answer after {MAX_ATTEMPTS} attempts: held"));
        Ok(Sent::Held { until_ms })
    }

    /// How long no REST goes to a host that banned us: until the ban's end when the
    /// exchange said (Binance's 418), else the configured wait (Bybit's 403).
    fn ban_wait_ms(&self) -> i64 {
        self.venue
            .ban_left_ms()
            .unwrap_or(self.resilience.ban_wait.as_millis() as i64)
    }

    /// Milliseconds of the monotonic clock the pacing runs on.
    fn mono_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Waits until a stop call may start, and takes its slot (a retry, a released held
    /// command or a call at start-up, outside the pace queue's turns).
    async fn pace_slot(&mut self) {
        loop {
            let now = self.mono_ms();
            if self.pace.room(now) {
                self.pace.start();
                return;
            }
            let at = self.pace.free_at(now).unwrap_or(now + 1);
            tokio::time::sleep(Duration::from_millis((at - now).max(1) as u64)).await;
        }
    }

    /// How long until the next position waiting in the pace may send (`None`: none waits).
    fn pace_delay(&mut self) -> Option<Duration> {
        let now = self.mono_ms();
        let at = self.pace.wake_at(now)?;
        Some(Duration::from_millis((at - now).max(0) as u64))
    }

    /// Sends what position `id` queued (each step committed before), feeds the answers back
    /// and commits them, until nothing is left to send now: a stop call waits its turn in
    /// the account's [`pace`]. Then a closed position is written out.
    async fn drain(&mut self, id: u64) -> Result<(), LiveError> {
        self.route(id).await?;
        self.pump().await?;
        self.finish_if_closed(id)
    }

    /// Sends the stop calls whose turn has come, while the account's window has room: each
    /// position's call in flight, coalesced to its newest stop and journalled before it
    /// leaves.
    async fn pump(&mut self) -> Result<(), LiveError> {
        while let Some((id, ts)) = self.pace.pop(self.mono_ms()) {
            let Some(cmd) = self.book.release(id) else {
                continue;
            };
            self.book.commit(&[id])?;
            let why = self.why(id, &cmd);
            if let Some(events) = self.dispatch(id, cmd, ts, why).await? {
                crash::reached(crash::Point::Acked);
                for e in &events {
                    self.book.on_event(id, e);
                }
                self.book.commit(&[id])?;
                crash::reached(crash::Point::Committed);
            }
            self.route(id).await?;
            self.finish_if_closed(id)?;
        }
        Ok(())
    }

    /// Position `id`'s queued commands: a stop call joins the pace queue (the command itself
    /// is asked of the lifecycle when its turn comes), the rest go now.
    async fn route(&mut self, id: u64) -> Result<(), LiveError> {
        loop {
            let cmds = self.book.take_commands(id);
            if cmds.is_empty() {
                return Ok(());
            }
            for (cmd, ts) in cmds {
                if self.dry.is_none()
                    && let Some(urgency) = pace::urgency(&cmd)
                {
                    self.pace.hold(id, urgency, ts);
                    continue;
                }
                let why = self.why(id, &cmd);
                let events = match self.dispatch(id, cmd, ts, why).await? {
                    Some(events) => match self.not_applied(id, &cmd, &events) {
                        Some(again) => match self.dispatch(id, again, ts, NOT_APPLIED_WHY).await? {
                            Some(events) => events,
                            None => continue,
                        },
                        None => events,
                    },
                    // Held: the lifecycle keeps it in flight until it is released.
                    None => continue,
                };
                crash::reached(crash::Point::Acked);
                for e in &events {
                    self.book.on_event(id, e);
                }
                self.book.commit(&[id])?;
                crash::reached(crash::Point::Committed);
            }
        }
    }

    fn finish_if_closed(&mut self, id: u64) -> Result<(), LiveError> {
        let Some(slot) = self.book.slots.get(&id) else {
            return Ok(());
        };
        let Some(close) = slot.runner.closed() else {
            return Ok(());
        };
        let out = self.config.out.clone();
        let output = |source| LiveError::Output {
            path: out.display().to_string(),
            source,
        };
        if let Some(row) = trades::row(slot) {
            let events = trades::events(&self.book.store, id)?;
            trades::append_closed(&out, &row, &events).map_err(output)?;
        }
        let instrument = *slot.instrument();
        self.say(&format!(
            "{} position {id}: closed at {} ({}), written to {}",
            slot.driver.symbol,
            instrument.decimal(close.fill),
            close.reason.as_str(),
            out.join("trades.csv").display()
        ));
        self.venue.forget(id);
        self.pace.forget(id);
        if let Some(slot) = self.book.remove(id)
            && let Some(dry) = &mut self.dry
        {
            dry.venues.remove(&id);
            let key = (slot.driver.symbol.clone(), slot.driver.position_idx);
            dry.closed.insert(key, stored_info(&slot));
        }
        Ok(())
    }

    /// Venue events and discovered positions from a stream message or a re-check.
    async fn on_news(&mut self, news: StreamNews, ts: i64) -> Result<(), LiveError> {
        for e in &news.events {
            let id = event_position(e);
            if !self.book.slots.contains_key(&id) {
                continue;
            }
            self.book.on_event(id, e);
            self.book.commit(&[id])?;
            self.drain(id).await?;
        }
        for info in &news.discovered {
            self.open_discovered(info, ts).await?;
        }
        for p in &news.prices {
            match self.arrived.get_mut(&p.symbol) {
                Some(at) => *at = Instant::now(),
                None => {
                    self.arrived.insert(p.symbol.clone(), Instant::now());
                }
            }
            self.dry_triggers(&p.symbol, p.price, p.ts).await?;
            let started = std::time::Instant::now();
            let stepped = self.book.on_price(&p.symbol, p.price, p.ts)?;
            self.metrics.on_engine_step(started.elapsed());
            if let Some(ids) = stepped {
                for id in ids {
                    self.drain(id).await?;
                }
            }
        }
        Ok(())
    }

    /// `--dry-run`: the simulated venues see the point first and trigger the stops it
    /// crosses (at the stop: a live point is not known to be a gap).
    async fn dry_triggers(
        &mut self,
        symbol: &str,
        price: Decimal,
        ts: i64,
    ) -> Result<(), LiveError> {
        let Some(dry) = &mut self.dry else {
            return Ok(());
        };
        let mut fills = Vec::new();
        for (&id, slot) in self
            .book
            .slots
            .iter()
            .filter(|(_, s)| s.driver.symbol == symbol)
        {
            let (Some(sim), Some(units)) =
                (dry.venues.get_mut(&id), slot.instrument().units(price))
            else {
                continue;
            };
            if ts < slot.last_ts() {
                continue;
            }
            if let Some(e) = sim.check(Point {
                ts,
                price: units,
                gap: false,
            }) {
                fills.push((id, e));
            }
            sim.see(units);
        }
        for (id, e) in fills {
            self.book.on_event(id, &e);
            self.book.commit(&[id])?;
            self.drain(id).await?;
        }
        Ok(())
    }

    /// A trailing stop for an exchange position nobody manages yet.
    async fn open_discovered(&mut self, info: &PositionInfo, ts: i64) -> Result<(), LiveError> {
        let (Some(side), true) = (info.side, info.is_open()) else {
            return Ok(());
        };
        if !self.config.symbols.contains(&info.symbol)
            || self
                .book
                .at(&info.symbol, info.position_idx.as_u8())
                .is_some()
        {
            return Ok(());
        }
        if let Some(dry) = &self.dry
            && dry
                .closed
                .get(&(info.symbol.clone(), info.position_idx.as_u8()))
                .is_some_and(|c| c.same_exposure(info))
        {
            return Ok(());
        }
        let Some(instrument) = self.instrument_for(info).await else {
            // An open position left without a trailing stop (the gauge that must read 0).
            self.watch
                .unmanaged
                .insert((info.symbol.clone(), info.position_idx.as_u8()));
            return Ok(());
        };
        let opening = Opening {
            symbol: info.symbol.clone(),
            position_idx: info.position_idx.as_u8(),
            side,
            entry: on_grid(info.avg_price, &instrument),
            size: info.size,
            opened_at: info.updated_ms.unwrap_or(ts),
            // On Bybit a position has one stop: one set by someone else is adopted.
            foreign_stop: info.stop_loss,
        };
        let id = self.book.next_id();
        self.watch
            .unmanaged
            .remove(&(info.symbol.clone(), info.position_idx.as_u8()));
        self.venue
            .manage(id, info)
            .map_err(|e| LiveError::Venue(e.to_string()))?;
        let config = self.config.trailing_for(&info.symbol).clone();
        let kind = self.venue.sim_kind();
        if let Some(dry) = &mut self.dry {
            let entry = instrument.units(opening.entry).unwrap_or_default();
            dry.venues
                .insert(id, SimVenue::new(dry_model(kind), side.sign(), entry));
        }
        self.book.open(&opening, &instrument, &config)?;
        self.say(&format!(
            "{} position {id}: new {} of {} at {}: trailing stop opened",
            info.symbol,
            side.as_str(),
            info.size,
            info.avg_price
        ));
        if config.initial_stop_percent.is_none() {
            self.warn(&format!(
                "warning: {} position {id}: no initial stop configured: it rests without a \
                 stop until activation",
                info.symbol
            ));
        }
        self.drain(id).await
    }

    async fn on_feed(&mut self, feed: Feed, streams: &mut Streams) -> Result<(), LiveError> {
        match &feed {
            Feed::Bybit(ev) => self.watch.on_ws(ev),
            Feed::Binance(ev) => self.watch.on_binance(ev),
            Feed::KeepAlive => {}
        }
        let now = self.now();
        match self.venue.hear(feed, now) {
            Heard::News {
                news,
                ts,
                close_now,
                renew_key,
                recheck,
            } => {
                self.on_news(news, ts.unwrap_or(now)).await?;
                for (id, reason) in close_now {
                    self.close_now(id, &reason).await?;
                }
                if renew_key {
                    self.renew_listen_key(streams).await?;
                } else if recheck {
                    self.recheck().await?;
                }
            }
            Heard::KeepAlive => {
                if let Err(e) = self.venue.keep_listen_key().await {
                    self.warn(&format!("listenKey keepalive failed ({e}): a new key"));
                    self.renew_listen_key(streams).await?;
                }
            }
            Heard::Connected { kind, connection } => {
                self.down.remove(kind);
                if connection > 0 {
                    self.metrics.on_reconnect(kind);
                    self.say(&format!("{kind} stream reconnected: re-checking"));
                    self.recheck().await?;
                } else if matches!(kind, "private" | "user") {
                    // A position opened between the start's REST read and this subscription
                    // reached no stream: found now, not at the next periodic re-check.
                    self.say("private stream subscribed: re-checking what it could not see");
                    self.recheck().await?;
                }
            }
            Heard::Disconnected { kind, reason } => {
                self.warn(&format!("{kind} stream lost: {reason}"));
                self.down.insert(kind);
            }
            Heard::Unreadable { kind, error } => {
                self.warn(&format!("{kind} stream: unreadable message: {error}"));
            }
            Heard::Refused { kind, reason } => {
                return Err(LiveError::StreamRefused {
                    stream: kind,
                    reason,
                });
            }
        }
        self.publish();
        Ok(())
    }

    async fn recheck(&mut self) -> Result<(), LiveError> {
        if !self.rest_allowed() {
            // Banned: no REST to the host; the ban's end re-checks.
            return Ok(());
        }
        let ts = self.now();
        match self.venue.recheck(ts).await {
            Ok(news) => {
                // What the streams missed and the re-check found.
                for _ in &news.events {
                    self.metrics.on_fix("missed_event");
                }
                for _ in &news.discovered {
                    self.metrics.on_fix("new_position");
                }
                self.on_news(news, ts).await?;
                self.discover_all(ts).await
            }
            Err(Action::Halt) => {
                let wait_ms = self.ban_wait_ms();
                self.pause(PauseReason::Banned, ts + wait_ms);
                Ok(())
            }
            Err(Action::RetryAfter { ms }) => {
                // Waited out like a command's 429 (on Binance no REST before it ends).
                self.warn(&format!("re-check rate limited: held for {ms} ms"));
                self.pause(PauseReason::RateLimited, ts + ms);
                Ok(())
            }
            Err(a) => {
                self.warn(&format!("re-check failed ({a:?}); next one later"));
                Ok(())
            }
        }
    }
}

/// An exchange's average entry price at the instrument's decimals (an average of several
/// fills has more; the engine holds prices as integer units), half to even.
fn on_grid(price: Decimal, instrument: &crate::engine::Instrument) -> Decimal {
    price
        .round_dp_with_strategy(
            instrument.price_decimals,
            rust_decimal::RoundingStrategy::MidpointNearestEven,
        )
        .normalize()
}

fn stored_info(slot: &Slot) -> PositionInfo {
    let e = slot.runner.engine.snapshot();
    PositionInfo {
        symbol: slot.driver.symbol.clone(),
        position_idx: PositionIdx::from_u8(i64::from(slot.driver.position_idx))
            .unwrap_or(PositionIdx::OneWay),
        side: Some(e.position.side),
        size: slot.driver.size,
        avg_price: e.position.entry_price,
        stop_loss: slot
            .runner
            .order
            .resting()
            .map(|r| e.instrument.decimal(r.stop)),
        mark_price: None,
        updated_ms: Some(slot.record.updated_at),
    }
}

fn pending_order(slot: &Slot, id: u64) -> Option<OrderRef> {
    match in_flight_command(&slot.runner, id)? {
        Command::Place { order, .. }
        | Command::Amend { order, .. }
        | Command::Cancel { order }
        | Command::Query { order } => Some(order),
        Command::CloseAtMarket { .. } => None,
    }
}

/// Runs `trailstop live` until `stop` turns true (SIGTERM/SIGINT): returns `Ok` having left
/// every stop resting. `status` is what `/status` serves.
pub async fn run(
    config: LiveConfig,
    credentials: Credentials,
    status: Shared,
    stop: watch::Receiver<bool>,
    opts: LiveOptions,
) -> Result<(), LiveError> {
    use tracing::instrument::WithSubscriber;
    let LiveOptions {
        log,
        clock,
        timeout,
        dry_run,
        resilience,
    } = opts;
    let how = How {
        clock,
        timeout,
        dry_run,
        resilience,
    };
    run_logged(config, credentials, status, stop, how)
        .with_subscriber(log.into_dispatch())
        .await
}

/// [`LiveOptions`] but the log (the subscriber the run is under).
struct How {
    clock: Clock,
    timeout: Duration,
    dry_run: bool,
    resilience: Resilience,
}

async fn run_logged(
    config: LiveConfig,
    credentials: Credentials,
    status: Shared,
    mut stop: watch::Receiver<bool>,
    how: How,
) -> Result<(), LiveError> {
    let How {
        clock,
        timeout,
        dry_run,
        resilience,
    } = how;
    // The store first: a second runner on the same database is refused before any request.
    let store = Store::open(&config.db, OpenOptions::runner())?;
    let mut book = Book::new(store)?;
    let metrics = Arc::new(Metrics::new(config.venue.exchange.as_str()).with_wall_windows());
    book.metrics = Some(metrics.clone());
    let (addr, server) = status::listen(
        config.listen,
        status.clone(),
        Some(metrics.clone()),
        stop.clone(),
    )
    .await
    .map_err(|source| LiveError::Listen {
        addr: config.listen,
        source,
    })?;
    log::note(&format!(
        "{}: status on http://{addr}/status, database {}",
        config.name,
        config.db.display()
    ));

    let stored: BTreeSet<String> = book
        .store
        .records()?
        .iter()
        .filter(|r| r.closed().is_none())
        .map(|r| r.engine().position.symbol.clone())
        .collect();
    let (venue, mut streams, symbols) = exchange::connect(
        &config,
        credentials,
        clock.clone(),
        timeout,
        stored,
        metrics.clone(),
    )
    .await?;
    book.atomic_amend = venue.atomic_amend();

    // Stored open positions, each checked against its journal.
    for rec in book
        .store
        .records()?
        .iter()
        .filter(|r| r.closed().is_none())
    {
        book.store.check_row(rec)?;
        book.restore(rec)?;
    }
    let pace_limit = match venue.exchange() {
        Exchange::Bybit => pace::BYBIT_TRADING_STOP,
        Exchange::Binance => pace::BINANCE_ORDERS,
    };
    let mut live = Live {
        config,
        book,
        venue,
        status,
        reconciled: false,
        down: BTreeSet::new(),
        // Every symbol counts from the start: one that never sends a price goes stale too.
        arrived: symbols
            .iter()
            .map(|s| (s.clone(), Instant::now()))
            .collect(),
        stale: BTreeSet::new(),
        clock,
        dry: dry_run.then(Dry::default),
        resilience,
        circuit: Breaker::new(resilience.breaker),
        held: Default::default(),
        tickers: Some(streams.subscriber()),
        pace: pace::Pacer::new(pace_limit),
        started: Instant::now(),
        metrics,
        watch: Watch::default(),
    };
    let kind = live.venue.sim_kind();
    if let Some(dry) = &mut live.dry {
        // The simulated venues of stored positions: their stops rest where the lifecycle says.
        for (&id, slot) in &live.book.slots {
            let e = slot.runner.engine.snapshot();
            let entry = e
                .instrument
                .units(e.position.entry_price)
                .unwrap_or_default();
            let mut sim = SimVenue::new(dry_model(kind), e.position.side.sign(), entry);
            if let Some(r) = slot.runner.order.resting() {
                let order = OrderRef {
                    position: id,
                    seq: r.seq,
                };
                sim.execute(
                    Command::Place {
                        order,
                        stop: r.stop,
                    },
                    slot.record.updated_at,
                );
            }
            dry.venues.insert(id, sim);
        }
        live.say("dry run: the simulated venue takes every order; none reaches the exchange");
    }
    // Positions that closed before a crash let their rows reach trades.csv.
    let written = trades::written(&live.config.out);
    for rec in live.book.store.records()? {
        if rec.closed().is_some() && !written.contains(&rec.id()) {
            live.book.restore(&rec)?;
            live.finish_if_closed(rec.id())?;
        }
    }
    live.publish();
    reconcile_at_start(&mut live, &symbols).await?;
    live.reconciled = true;
    live.publish();
    live.say("reconciled: running");

    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    let mut freshness = tokio::time::interval(Duration::from_secs(1));
    // Held commands and the breaker's clock (a ban's or a cooldown's end).
    let mut release = tokio::time::interval(Duration::from_millis(100));
    release.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let pace_wait = live.pace_delay();
        let step = tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            _ = tokio::time::sleep(pace_wait.unwrap_or_default()), if pace_wait.is_some() => {
                live.pump().await.map(|()| live.publish())
            }
            feed = streams.next() => match feed {
                Ok(feed) => live.on_feed(feed, &mut streams).await,
                Err(stream) => Err(LiveError::StreamRefused { stream, reason: "ended".into() }),
            },
            _ = recheck.tick() => live.recheck().await.map(|()| live.publish()),
            _ = release.tick() => live.release().await,
            _ = freshness.tick() => {
                live.look_for_stale();
                live.publish_arrivals();
                live.publish();
                Ok(())
            }
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    // Nothing is cancelled: the stops keep protecting the positions while trailstop is down.
    streams.shutdown().await;
    server.abort();
    if result.is_ok() {
        live.say(&format!(
            "stopped; {} position(s) left with their stops resting on the exchange",
            live.book.slots.len()
        ));
    }
    result
}

/// `LIVE.md` §4: the exchange's positions and stops against the stored ones; each decision
/// printed and journalled, then carried out. Fails (the caller exits non-zero) rather than
/// run half-reconciled.
async fn reconcile_at_start(live: &mut Live, symbols: &[String]) -> Result<(), LiveError> {
    let mut exchange: Vec<PositionInfo> = Vec::new();
    let mut stops = Vec::new();
    for s in symbols {
        let list = live
            .venue
            .open_positions(s)
            .await
            .map_err(|e| LiveError::Unreconciled(format!("listing {s} positions: {e}")))?;
        stops.extend(
            live.venue
                .resting_stops(s, &list)
                .await
                .map_err(|e| LiveError::Unreconciled(format!("listing {s} stops: {e}")))?,
        );
        exchange.extend(list);
    }
    let now = live.now();
    let key = |p: &PositionInfo| PositionKey {
        symbol: p.symbol.clone(),
        index: p.position_idx.as_u8(),
    };
    let snap = reconcile::Snapshot {
        positions: exchange
            .iter()
            .filter_map(|p| {
                Some(VenuePosition {
                    key: key(p),
                    side: p.side?,
                    size: p.size,
                    entry: p.avg_price,
                    ts: p.updated_ms.unwrap_or(now),
                    market: p.mark_price,
                })
            })
            .collect(),
        stops,
    };
    let managed: Vec<reconcile::Managed> = live
        .book
        .slots
        .iter()
        .map(|(&id, s)| reconcile::Managed {
            position_id: id,
            key: PositionKey {
                symbol: s.driver.symbol.clone(),
                index: s.driver.position_idx,
            },
            side: s.side(),
            size: s.driver.size,
            entry: s.record.engine().position.entry_price,
            resting: s
                .runner
                .order
                .resting()
                .map(|r| s.instrument().decimal(r.stop)),
            pending: pending_order(s, id),
        })
        .collect();
    let decisions = reconcile::reconcile(&managed, &snap, live.venue.stop_model());
    let lines: Vec<String> = decisions.iter().map(|d| format!("{d:?}")).collect();
    for l in &lines {
        live.say(&format!("reconcile: {l}"));
    }
    for d in &decisions {
        if let Some(kind) = crate::live::metrics::fix_kind(d) {
            live.metrics.on_fix(kind);
        }
    }
    let journal = serde_json::to_string(&lines).expect("strings serialise");
    live.book
        .store
        .commit(&[], &[("live.reconcile", &journal)])?;

    let info_at = |k: &PositionKey| exchange.iter().find(|p| key(p) == *k).cloned();
    let mut resend: Vec<(u64, Command, &'static str)> = Vec::new();
    let mut gone: Vec<u64> = Vec::new();
    let mut opened: Vec<PositionInfo> = Vec::new();
    let mut orphans: Vec<String> = Vec::new();
    for d in &decisions {
        match d {
            Decision::Resume { position_id } | Decision::Resized { position_id, .. } => {
                let id = *position_id;
                let slot = &live.book.slots[&id];
                let k = PositionKey {
                    symbol: slot.driver.symbol.clone(),
                    index: slot.driver.position_idx,
                };
                let info = info_at(&k).ok_or_else(|| {
                    LiveError::Unreconciled(format!("position {id}: not in the snapshot"))
                })?;
                live.venue
                    .manage(id, &info)
                    .map_err(|e| LiveError::Unreconciled(e.to_string()))?;
                if let Some(r) = slot.runner.order.resting() {
                    let order = OrderRef {
                        position: id,
                        seq: r.seq,
                    };
                    live.venue.resume_resting(order, r.stop);
                }
                if let Decision::Resized { size, entry, .. } = d {
                    let inst = *slot.instrument();
                    let entry = inst.units(on_grid(*entry, &inst)).ok_or_else(|| {
                        LiveError::Unreconciled(format!(
                            "position {id}: entry {entry} off the tick"
                        ))
                    })?;
                    let ts = info.updated_ms.unwrap_or(now).max(slot.record.updated_at);
                    live.book.on_event(
                        id,
                        &VenueEvent::PositionChanged {
                            position: id,
                            ts,
                            entry,
                            quantity: *size,
                        },
                    );
                    live.book.commit(&[id])?;
                }
            }
            Decision::LookUp { position_id, .. } => {
                let id = *position_id;
                if let Some(cmd) = in_flight_command(&live.book.slots[&id].runner, id) {
                    resend.push((id, cmd, "unanswered when the last run stopped"));
                }
            }
            Decision::PlaceMissing { position_id } => {
                let id = *position_id;
                if let Some(r) = live.book.slots[&id].runner.order.resting() {
                    resend.push((
                        id,
                        Command::Place {
                            order: OrderRef {
                                position: id,
                                seq: r.seq,
                            },
                            stop: r.stop,
                        },
                        "the stored stop is missing on the exchange",
                    ));
                }
            }
            Decision::ClosedWhileAway {
                position_id,
                cancel,
            } => {
                let id = *position_id;
                orphans.extend(cancel.iter().cloned());
                let slot = &live.book.slots[&id];
                let info = stored_info(slot);
                live.venue
                    .manage(id, &info)
                    .map_err(|e| LiveError::Unreconciled(e.to_string()))?;
                // A stop-loss fill found for it is our stop's (its trade says so).
                if let Some(r) = slot.runner.order.resting() {
                    let order = OrderRef {
                        position: id,
                        seq: r.seq,
                    };
                    live.venue.resume_resting(order, r.stop);
                }
                gone.push(id);
            }
            Decision::Open { position, adopt } => {
                if let Some(price) = adopt {
                    live.say(&format!(
                        "{}: the stop at {price} set by someone else is adopted: it only \
                         moves tighter",
                        position.key.symbol
                    ));
                }
                if let Some(info) = info_at(&position.key) {
                    opened.push(info);
                }
            }
            Decision::AdoptStop {
                position_id, price, ..
            } => {
                // The exchange is the truth: a tighter stop there is never loosened again.
                let id = *position_id;
                let slot = &live.book.slots[&id];
                let sign = slot.side().sign();
                let ours = slot.runner.order.resting().map(|r| r.stop);
                let tighter = match (slot.instrument().units(*price), ours) {
                    (Some(p), Some(o)) => sign * p > sign * o,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if tighter {
                    live.book.set_foreign_stop(id, Some(*price));
                    live.book.commit(&[id])?;
                }
            }
            Decision::CancelOrphan { client_id, .. } => orphans.push(client_id.clone()),
            Decision::CancelExtra { cancel, .. } => orphans.extend(cancel.iter().cloned()),
            Decision::ForeignStop { .. } => {}
        }
    }
    // Our stops that must not rest (Binance: stops are orders of their own): cancelled
    // before anything is placed, so a position never holds two.
    for client_id in &orphans {
        live.venue.cancel_orphan(client_id).await.map_err(|e| {
            LiveError::Unreconciled(format!("cancelling the stop {client_id}: {e}"))
        })?;
        live.say(&format!("reconcile: cancelled the stop {client_id}"));
    }
    if !gone.is_empty() {
        let news =
            live.venue.recheck(now).await.map_err(|a| {
                LiveError::Unreconciled(format!("re-reading closed positions: {a:?}"))
            })?;
        let StreamNews { events, .. } = news;
        for e in &events {
            let id = event_position(e);
            if live.book.slots.contains_key(&id) {
                live.book.on_event(id, e);
                live.book.commit(&[id])?;
            }
        }
        for id in gone {
            if live.book.slots[&id].runner.closed().is_none() {
                return Err(LiveError::Unreconciled(format!(
                    "position {id} is gone from the exchange but no close was found"
                )));
            }
            live.say(&format!("position {id}: closed while away"));
            live.finish_if_closed(id)?;
        }
    }
    for (id, cmd, why) in resend {
        let ts = live.book.slots[&id].record.updated_at;
        let Some(events) = live.resend_unanswered(id, cmd, ts, why).await? else {
            continue;
        };
        for e in &events {
            live.book.on_event(id, e);
        }
        live.book.commit(&[id])?;
    }
    for info in &opened {
        live.open_discovered(info, now).await?;
    }
    let ids: Vec<u64> = live.book.slots.keys().copied().collect();
    for id in ids {
        live.drain(id).await?;
    }
    Ok(())
}

/// A fresh shared status.
pub fn shared_status() -> Shared {
    Arc::new(Mutex::new(Status::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// An average of fills off the grid becomes the nearest price at the instrument's decimals.
    #[test]
    fn an_average_entry_is_put_on_the_grid() {
        let i = crate::engine::Instrument::with_price_decimals(dec!(0.01), 2);
        assert_eq!(
            on_grid(dec!(17693.573333333333333333333333), &i),
            dec!(17693.57)
        );
        assert_eq!(on_grid(dec!(17693.575), &i), dec!(17693.58));
        assert_eq!(on_grid(dec!(17693.585), &i), dec!(17693.58));
        assert_eq!(on_grid(dec!(17693.50), &i).to_string(), "17693.5");
    }
}
