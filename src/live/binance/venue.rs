//! The async Binance venue adapter (feature `live`): seam [`Command`]s in, REST calls out, and
//! stream messages in, [`VenueEvent`]s out — the counterpart of `bybit::venue::BybitVenue` for
//! a driver that runs each position's [`StopOrder`](crate::venue::StopOrder) lifecycle with
//! `atomic = false`: a replace arrives as a cancel, then (once the cancel is acknowledged) a
//! create, one command at a time, so the driver journals between them.
//!
//! It holds no trading rule. What it decides is the wire's (`EXCHANGES.md` §1.8, §3.3):
//!
//! - a create answered `-2021` is the lifecycle's "would trigger" (the engine exits at
//!   market); an ambiguous create is the lifecycle's `Ambiguous` (it queries by
//!   `clientAlgoId` before anything else);
//! - a cancel answered `-2011` is looked into: the stop and the position are read back, and a
//!   stop that just triggered is reported as triggered (never a new stop on a closed position);
//! - `-4130` adopts the stop resting; `-4014` refreshes the tick sizes;
//! - `REJECTED`/`EXPIRED` after `TRIGGERING` is [`Action::CloseNow`]: the position is bare;
//! - the fill of a triggered stop is the *new* order's (`ai`), not the algo id's;
//! - 429 / 418 / `-1125` become actions for the driver (wait, halt REST, renew the key).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::request::{self, AlgoRef, PositionSide, RequestError, StopOptions, StopPrice, Target};
use super::response::{self, Answer};
use super::rest::{RestClient, RestError};
use super::snapshot::{self, MissingStop, PositionInfo, parse_client_id};
use super::stream::{self, AlgoNews, Executions, PriceClock, PricePoint, StreamMessage};
use crate::engine::{Instrument, Side};
use crate::live::bybit::json::ParseError;
use crate::venue::{Command, OrderRef, VenueEvent};

/// What the driver must do besides feeding the events to the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the same command again now.
    Retry,
    /// Send it again after this long.
    RetryAfter { ms: i64 },
    /// No REST to this host until the ban ends; the stops on the exchange keep working.
    Halt { until_ms: Option<i64> },
    /// The listenKey is gone: a new one, a reconnect, a REST re-check.
    RenewListenKey,
    /// The stream told something only a REST re-check can settle (a position flat while
    /// our stop rests, before any fill: triggered, or closed by someone else?).
    Recheck,
    /// The position's stop fired but did not close it (or vanished on the way): the position
    /// is unprotected. Close it at market now, and alert.
    CloseNow { position: u64, reason: String },
    /// Stop and alert (keys, a bug, a refused close).
    Fatal { code: i64, message: String },
}

/// Why a position cannot be managed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManageError {
    #[error("{symbol}: not an instrument the venue listed")]
    UnknownSymbol { symbol: String },
    #[error("position {position} is already managed")]
    AlreadyManaged { position: u64 },
    #[error("{symbol} positionSide {position_side}: already managed as position {position}")]
    KeyTaken {
        symbol: String,
        position_side: &'static str,
        position: u64,
    },
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Executed {
    pub events: Vec<VenueEvent>,
    pub action: Option<Action>,
}

impl Executed {
    fn event(e: VenueEvent) -> Executed {
        Executed {
            events: vec![e],
            action: None,
        }
    }

    fn action(a: Action) -> Executed {
        Executed {
            events: Vec::new(),
            action: Some(a),
        }
    }

    fn fatal(message: impl Into<String>) -> Executed {
        Executed::action(Action::Fatal {
            code: 0,
            message: message.into(),
        })
    }
}

/// Where a position's state was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    OnStream,
    ByRest,
}

/// What a stream message meant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamNews {
    pub events: Vec<VenueEvent>,
    pub prices: Vec<PricePoint>,
    /// Open positions no managed position covers (new ones: the driver adopts them).
    pub discovered: Vec<PositionInfo>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone)]
struct Managed {
    symbol: String,
    ps: PositionSide,
    side: Side,
    size: Decimal,
    instrument: Instrument,
    /// The stops seen `TRIGGERING` (a later `REJECTED`/`EXPIRED` is then unprotected).
    triggering: BTreeSet<u32>,
    /// The order a triggered stop became (`ai`) → the stop.
    actual: BTreeMap<String, OrderRef>,
    /// The executions seen of the orders that close it (a stop's, our close's), by order
    /// id: one fill can come in several (`PARTIALLY_FILLED` … `FILLED`).
    executions: BTreeMap<i64, Executions>,
    close_attempt: u32,
    close_ambiguous: bool,
    closing_id: Option<String>,
    last: Option<PositionInfo>,
    closed: bool,
    /// Acceptances and cancellations already told (the REST answer and the stream's
    /// `ALGO_UPDATE` say the same thing; whichever comes first is told).
    told: BTreeSet<(u32, bool)>,
}

/// How many of a position's latest orders [`Managed::first`] remembers.
const TOLD_KEPT: u32 = 64;

impl Managed {
    /// The stop of ours last accepted and not cancelled since, as far as we were told.
    fn resting(&self, position: u64) -> Option<OrderRef> {
        let seq = self
            .told
            .iter()
            .filter(|(seq, accepted)| *accepted && !self.told.contains(&(*seq, false)))
            .map(|(seq, _)| *seq)
            .max()?;
        Some(OrderRef { position, seq })
    }

    /// Whether `e` is news (not an acceptance or cancellation already told). Only the last
    /// [`TOLD_KEPT`] orders are remembered: the set is cloned with the position on every
    /// command, and a stream repeating an order that many replaces old is not heard of.
    fn first(&mut self, e: &VenueEvent) -> bool {
        let news = match *e {
            VenueEvent::Accepted { order, .. } => self.told.insert((order.seq, true)),
            VenueEvent::Cancelled { order, .. } => self.told.insert((order.seq, false)),
            _ => return true,
        };
        if let Some(&(newest, _)) = self.told.last()
            && newest > TOLD_KEPT
        {
            self.told = self.told.split_off(&(newest - TOLD_KEPT, false));
        }
        news
    }
}

/// A Binance USD-M account as a venue.
pub struct BinanceVenue {
    rest: RestClient,
    options: StopOptions,
    hedge: bool,
    instruments: BTreeMap<String, Instrument>,
    managed: BTreeMap<u64, Managed>,
    by_key: BTreeMap<(String, PositionSide), u64>,
    last_price: BTreeMap<String, Decimal>,
    prices: PriceClock,
    /// `ALGO_UPDATE`s already turned into news (client id, status).
    seen_algo: BTreeSet<(String, &'static str)>,
    /// The last command was refused off the tick (`-4014`) and the tick sizes read again.
    refreshed: bool,
}

impl BinanceVenue {
    /// Over `rest`: the clock offset, the tick sizes of `symbols` and the position mode.
    pub async fn connect(
        rest: RestClient,
        options: StopOptions,
        symbols: &[&str],
    ) -> Result<BinanceVenue, RestError> {
        rest.sync_clock().await?;
        let info = rest.exchange_info().await?;
        let instruments = info
            .symbols
            .iter()
            .filter(|s| symbols.is_empty() || symbols.contains(&s.symbol.as_str()))
            .map(|s| (s.symbol.clone(), s.instrument()))
            .collect();
        let hedge = rest.hedge_mode().await?;
        Ok(BinanceVenue {
            rest,
            options,
            hedge,
            instruments,
            managed: BTreeMap::new(),
            by_key: BTreeMap::new(),
            last_price: BTreeMap::new(),
            prices: PriceClock::default(),
            seen_algo: BTreeSet::new(),
            refreshed: false,
        })
    }

    /// Binance has no amend: a stop moves by cancel, then create.
    pub fn atomic_amend(&self) -> bool {
        false
    }

    pub fn hedge(&self) -> bool {
        self.hedge
    }

    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    pub fn instrument(&self, symbol: &str) -> Option<&Instrument> {
        self.instruments.get(symbol)
    }

    /// `symbol`'s instrument, read now from `exchangeInfo` if not known yet (a symbol first
    /// seen while running, `symbols = ["*"]`); `None` when Binance does not list it.
    pub async fn learn(&mut self, symbol: &str) -> Result<Option<Instrument>, RestError> {
        if let Some(i) = self.instruments.get(symbol) {
            return Ok(Some(*i));
        }
        let info = self.rest.exchange_info().await?;
        let Some(listed) = info.symbols.iter().find(|s| s.symbol == symbol) else {
            return Ok(None);
        };
        let instrument = listed.instrument();
        self.instruments.insert(symbol.to_string(), instrument);
        Ok(Some(instrument))
    }

    /// The last trigger price seen for `symbol`, in units.
    pub fn market_units(&self, symbol: &str) -> Option<i64> {
        let p = self.last_price.get(symbol)?;
        self.instruments.get(symbol)?.units(*p)
    }

    /// Starts managing `info` (an open position of the venue) as `position`.
    pub fn manage(&mut self, position: u64, info: &PositionInfo) -> Result<(), ManageError> {
        let instrument =
            *self
                .instruments
                .get(&info.symbol)
                .ok_or_else(|| ManageError::UnknownSymbol {
                    symbol: info.symbol.clone(),
                })?;
        if self.managed.contains_key(&position) {
            return Err(ManageError::AlreadyManaged { position });
        }
        let key = (info.symbol.clone(), info.position_side);
        if let Some(&p) = self.by_key.get(&key) {
            return Err(ManageError::KeyTaken {
                symbol: info.symbol.clone(),
                position_side: info.position_side.as_str(),
                position: p,
            });
        }
        self.by_key.insert(key, position);
        self.managed.insert(
            position,
            Managed {
                symbol: info.symbol.clone(),
                ps: info.position_side,
                side: info.side().unwrap_or(Side::Long),
                size: info.size(),
                instrument,
                triggering: BTreeSet::new(),
                actual: BTreeMap::new(),
                executions: BTreeMap::new(),
                close_attempt: 0,
                close_ambiguous: false,
                closing_id: None,
                last: Some(info.clone()),
                closed: !info.is_open(),
                told: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// After a restart: `order` is the stop of ours resting on its position (the journal
    /// says so, reconciliation found it there): a re-check that no longer finds it reads it
    /// back.
    pub fn resume_resting(&mut self, order: OrderRef) {
        if let Some(m) = self.managed.get_mut(&order.position) {
            m.told.insert((order.seq, true));
        }
    }

    /// Stops managing `position` (closed and reported).
    pub fn forget(&mut self, position: u64) {
        if let Some(m) = self.managed.remove(&position) {
            self.by_key.remove(&(m.symbol, m.ps));
        }
    }

    /// Re-reads every managed position (`positionRisk`) and the stops resting
    /// (`openAlgoOrders`), for what the user stream may have missed (after a reconnect or a
    /// new listenKey, and periodically, `LIVE.md` §5): a position resized; a stop of ours
    /// accepted but resting no more (read back by its `clientAlgoId`: triggered, or gone);
    /// a position gone flat (its stop's fill when the stop triggered, else closed at the
    /// last price). Open positions nothing manages are discovered. What the stream already
    /// told is not told again.
    pub async fn recheck(&mut self, ts: i64) -> Result<StreamNews, Action> {
        let mut news = StreamNews::default();
        let symbols: BTreeSet<String> = self.managed.values().map(|m| m.symbol.clone()).collect();
        for symbol in symbols {
            let list = self
                .rest
                .positions(Some(&symbol))
                .await
                .map_err(recheck_failed)?;
            let resting = self
                .rest
                .open_stops(Some(&symbol))
                .await
                .map_err(recheck_failed)?;
            for p in list {
                let Some(&position) = self.by_key.get(&(p.symbol.clone(), p.position_side)) else {
                    if p.is_open() {
                        news.discovered.push(p);
                    }
                    continue;
                };
                let m = self.managed[&position].clone();
                if m.closed {
                    continue;
                }
                let missing = m
                    .resting(position)
                    .filter(|o| !resting.iter().any(|s| s.client_algo_id == o.client_id()));
                if let Some(order) = missing {
                    let info = self
                        .rest
                        .stop(AlgoRef::Client(&order.client_id()))
                        .await
                        .map_err(recheck_failed)?;
                    let found = snapshot::resolve_missing_cancel(
                        order,
                        info.as_ref(),
                        p.is_open(),
                        &m.instrument,
                        ts,
                    )
                    .map_err(|e| Action::Fatal {
                        code: 0,
                        message: e.to_string(),
                    })?;
                    let mm = self.managed.get_mut(&position).expect("managed");
                    match found {
                        MissingStop::Triggered(e) => {
                            mm.closed = true;
                            news.events.push(e);
                            continue;
                        }
                        // The stream's fill is on its way.
                        MissingStop::AwaitFill => continue,
                        MissingStop::Gone(e) => {
                            if mm.first(&e) {
                                news.events.push(e);
                            }
                        }
                        MissingStop::StillResting | MissingStop::PositionClosed => {}
                    }
                }
                self.on_position(p, ts, Heard::ByRest, &mut news)
                    .map_err(|e| Action::Fatal {
                        code: 0,
                        message: e.to_string(),
                    })?;
            }
        }
        Ok(news)
    }

    /// Executes `command` at `ts` (the event time it answers to). A create's or a cancel's
    /// acknowledgement already told by the stream is not told again. A create refused off
    /// the tick (`-4014`) reads the tick sizes again and goes once more, its stop moved onto
    /// the new grid (never looser, `EXCHANGES.md` §1.8); refused so again, it is fatal.
    pub async fn execute(&mut self, command: Command, ts: i64) -> Executed {
        self.refreshed = false;
        let mut done = self.execute_once(command, ts).await;
        if std::mem::take(&mut self.refreshed) && done.action == Some(Action::Retry) {
            done = self.execute_once(command, ts).await;
            if std::mem::take(&mut self.refreshed) {
                return Executed::action(Action::Fatal {
                    code: response::code::PRICE_NOT_BY_TICK,
                    message: format!(
                        "{}: still off the tick after reading exchangeInfo again",
                        describe_stop(&command, &self.managed)
                    ),
                });
            }
        }
        let position = match command {
            Command::Place { order, .. }
            | Command::Amend { order, .. }
            | Command::Cancel { order }
            | Command::Query { order } => order.position,
            Command::CloseAtMarket { position } => position,
        };
        if let Some(m) = self.managed.get_mut(&position) {
            done.events.retain(|e| m.first(e));
        }
        done
    }

    async fn execute_once(&mut self, command: Command, ts: i64) -> Executed {
        let position = match command {
            Command::Place { order, .. }
            | Command::Amend { order, .. }
            | Command::Cancel { order }
            | Command::Query { order } => order.position,
            Command::CloseAtMarket { position } => position,
        };
        let Some(m) = self.managed.get(&position).cloned() else {
            return Executed::fatal(format!("position {position} is not managed by this venue"));
        };
        if let Command::Query { order } = command {
            return self.query(&m, order, ts).await;
        }
        let attempt = match command {
            Command::CloseAtMarket { .. } if m.close_ambiguous => m.close_attempt,
            Command::CloseAtMarket { .. } => m.close_attempt + 1,
            _ => m.close_attempt,
        };
        // The engine's stop onto the exchange's grid (they differ once the tick changed).
        let command = match command {
            Command::Place { order, stop } => {
                match StopPrice::onto_grid(&m.symbol, stop, m.side, &m.instrument) {
                    Ok(stop) => Command::Place { order, stop },
                    Err(e) => return Executed::fatal(e.to_string()),
                }
            }
            other => other,
        };
        let target = Target {
            symbol: &m.symbol,
            position_side: m.ps,
            side: m.side,
            size: m.size,
            instrument: &m.instrument,
        };
        let req = match request::for_command(&command, &target, self.options, attempt) {
            Ok(r) => r,
            Err(e) => return Executed::fatal(e.to_string()),
        };
        if matches!(command, Command::CloseAtMarket { .. })
            && let Some(mm) = self.managed.get_mut(&position)
        {
            mm.close_attempt = attempt;
            mm.closing_id = Some(request::close_client_id(position, attempt));
        }
        let reply = self.rest.send_resyncing(&req).await;
        let market = self.market_units(&m.symbol).unwrap_or(0);
        if let (Command::CloseAtMarket { .. }, Some(mm)) =
            (command, self.managed.get_mut(&position))
        {
            mm.close_ambiguous = matches!(reply.outcome, response::Outcome::Ambiguous { .. });
        }
        match response::answer(&command, &reply.outcome, ts, market) {
            Answer::Event(e) => Executed::event(e),
            Answer::Pending => match command {
                // The create's acknowledgement: the algo order as it rests, from the time the
                // exchange says it took effect (its `updateTime`; never before the command).
                Command::Place { order, .. } => match snapshot::algo_order(&reply.body) {
                    Ok(info) => match info.trigger_units(&m.instrument) {
                        Ok(stop) => Executed::event(VenueEvent::Accepted {
                            order,
                            stop,
                            ts: info.acknowledged_at(ts),
                            venue_id: Some(info.algo_id.to_string()),
                        }),
                        Err(e) => Executed::fatal(e.to_string()),
                    },
                    Err(e) => Executed::fatal(format!("{}: {e}", req.endpoint())),
                },
                _ => Executed::default(),
            },
            Answer::CheckStopAndPosition => match command {
                Command::Cancel { order } => self.missing_stop(&m, position, order, ts).await,
                _ => Executed::fatal("a stop check after a command other than a cancel"),
            },
            Answer::AdoptResting => match command {
                Command::Place { order, .. } => self.adopt(&m, order, ts).await,
                _ => Executed::fatal("an adoption after a command other than a create"),
            },
            Answer::RefreshInstruments => match self.rest.exchange_info().await {
                Ok(info) => {
                    for s in info.symbols {
                        if let Some(i) = self.instruments.get_mut(&s.symbol) {
                            *i = s.instrument();
                        }
                    }
                    if let Err(e) = self.retick_managed() {
                        return Executed::fatal(e.to_string());
                    }
                    self.refreshed = true;
                    Executed::action(Action::Retry)
                }
                Err(e) => rest_failed(e),
            },
            Answer::ReadBack => self.read_back_close(&m, position, ts).await,
            Answer::ResyncAndRetry | Answer::Retry => Executed::action(Action::Retry),
            Answer::RetryAfter { ms } => Executed::action(Action::RetryAfter { ms }),
            Answer::Halt { .. } => Executed::action(Action::Halt {
                until_ms: self.rest.banned_until(),
            }),
            Answer::RenewListenKey => Executed::action(Action::RenewListenKey),
            Answer::Fatal { code, message } => Executed::action(Action::Fatal { code, message }),
        }
    }

    /// The managed positions take their symbol's tick as read again, at the price decimals
    /// their engines count in (a tick those decimals cannot hold is an error: the engine's
    /// units would mean another price).
    fn retick_managed(&mut self) -> Result<(), RequestError> {
        for m in self.managed.values_mut() {
            let Some(read) = self.instruments.get(&m.symbol) else {
                continue;
            };
            let instrument =
                Instrument::with_price_decimals(read.tick_size, m.instrument.price_decimals);
            if instrument.units(read.tick_size).is_none_or(|t| t <= 0) {
                return Err(RequestError::BadInstrument {
                    symbol: m.symbol.clone(),
                    tick: read.tick_size,
                    decimals: m.instrument.price_decimals,
                });
            }
            m.instrument = instrument;
        }
        Ok(())
    }

    /// After an ambiguous stop command: the algo order read back by its `clientAlgoId`.
    async fn query(&mut self, m: &Managed, order: OrderRef, ts: i64) -> Executed {
        let info = match self.rest.stop(AlgoRef::Client(&order.client_id())).await {
            Ok(info) => info,
            Err(e) => return rest_failed(e),
        };
        match snapshot::resolve_query(order, info.as_ref(), &m.instrument, ts) {
            Ok(Some(e)) => Executed::event(e),
            // Triggering or triggered: the stream tells the rest.
            Ok(None) => Executed::default(),
            Err(e) => Executed::fatal(e.to_string()),
        }
    }

    /// `-2011` on the cancel of `order`: what became of it, from the stop and the position.
    async fn missing_stop(
        &mut self,
        m: &Managed,
        position: u64,
        order: OrderRef,
        ts: i64,
    ) -> Executed {
        let info = match self.rest.stop(AlgoRef::Client(&order.client_id())).await {
            Ok(info) => info,
            Err(e) => return rest_failed(e),
        };
        let open = match self.read(m).await {
            Ok(p) => p.is_some_and(|p| p.is_open()),
            Err(e) => return rest_failed(e),
        };
        match snapshot::resolve_missing_cancel(order, info.as_ref(), open, &m.instrument, ts) {
            Ok(MissingStop::Triggered(e)) => {
                if let Some(mm) = self.managed.get_mut(&position) {
                    mm.closed = true;
                }
                Executed::event(e)
            }
            Ok(MissingStop::AwaitFill) => Executed::default(),
            Ok(MissingStop::StillResting) => Executed::action(Action::Retry),
            Ok(MissingStop::Gone(e)) => Executed::event(e),
            Ok(MissingStop::PositionClosed) => match self.closed_event(position, ts) {
                Some(e) => Executed::event(e),
                None => Executed::default(),
            },
            Err(e) => Executed::fatal(e.to_string()),
        }
    }

    /// `-4130`: a `closePosition` stop already rests that way. Ours with this id → accepted;
    /// anything else → refused, for the driver's reconciliation (never a second stop).
    async fn adopt(&mut self, m: &Managed, order: OrderRef, ts: i64) -> Executed {
        let open = match self.rest.open_stops(Some(&m.symbol)).await {
            Ok(o) => o,
            Err(e) => return rest_failed(e),
        };
        let id = order.client_id();
        match open.iter().find(|s| s.client_algo_id == id) {
            Some(s) => match s.trigger_units(&m.instrument) {
                Ok(stop) => Executed::event(VenueEvent::Accepted {
                    order,
                    stop,
                    ts,
                    venue_id: Some(s.algo_id.to_string()),
                }),
                Err(e) => Executed::fatal(e.to_string()),
            },
            None => Executed::event(VenueEvent::Rejected {
                order,
                ts,
                reason: crate::venue::RejectReason::Invalid {
                    code: response::code::CLOSE_POSITION_EXISTS,
                },
            }),
        }
    }

    async fn read(&self, m: &Managed) -> Result<Option<PositionInfo>, RestError> {
        let list = self.rest.positions(Some(&m.symbol)).await?;
        Ok(list.into_iter().find(|p| p.position_side == m.ps))
    }

    /// A close whose outcome is unknown, or that found nothing to close: flat now means
    /// closed (at the last trigger price seen); open means send it again.
    async fn read_back_close(&mut self, m: &Managed, position: u64, ts: i64) -> Executed {
        match self.read(m).await {
            Ok(Some(p)) if p.is_open() => Executed::action(Action::Retry),
            Ok(_) => match self.closed_event(position, ts) {
                Some(e) => Executed::event(e),
                None => Executed::default(),
            },
            Err(e) => rest_failed(e),
        }
    }

    /// `PositionClosed` for `position`, once, at the last trigger price seen.
    fn closed_event(&mut self, position: u64, ts: i64) -> Option<VenueEvent> {
        let m = self.managed.get(&position)?;
        if m.closed {
            return None;
        }
        let fill = self.market_units(&m.symbol)?;
        self.managed.get_mut(&position)?.closed = true;
        Some(VenueEvent::PositionClosed { position, ts, fill })
    }

    /// One text frame of either stream.
    pub fn on_message(&mut self, text: &str) -> Result<StreamNews, ParseError> {
        self.on_stream(stream::parse(text)?)
    }

    /// One message of either stream, parsed (the stream client's).
    pub fn on_stream(&mut self, message: StreamMessage) -> Result<StreamNews, ParseError> {
        let mut news = StreamNews::default();
        match message {
            StreamMessage::Price(p) => {
                if self.prices.admit(&p) {
                    self.last_price.insert(p.symbol.clone(), p.price);
                    news.prices.push(p);
                }
            }
            StreamMessage::Algo(a) => self.on_algo(&a, &mut news)?,
            StreamMessage::Order(u) => self.on_order(&u, &mut news)?,
            StreamMessage::Account(a) => {
                for p in a.positions {
                    self.on_position(p, a.ts, Heard::OnStream, &mut news)?;
                }
            }
            StreamMessage::ListenKeyExpired { .. } => news.actions.push(Action::RenewListenKey),
            StreamMessage::Reply { .. } | StreamMessage::Other { .. } => {}
        }
        Ok(news)
    }

    fn on_algo(&mut self, a: &stream::AlgoUpdate, news: &mut StreamNews) -> Result<(), ParseError> {
        let Some(order) = parse_client_id(&a.client_algo_id) else {
            // Not ours: left alone (LIVE.md §4).
            return Ok(());
        };
        let Some(m) = self.managed.get_mut(&order.position) else {
            return Ok(());
        };
        // A duplicate message says nothing new.
        if !self
            .seen_algo
            .insert((a.client_algo_id.clone(), a.status.as_str()))
        {
            return Ok(());
        }
        let seen = m.triggering.contains(&order.seq);
        match a.news(order, &m.instrument, seen)? {
            AlgoNews::Event(e) => {
                if !m.first(&e) {
                    return Ok(());
                }
                if matches!(e, VenueEvent::Triggered { .. }) {
                    if m.closed {
                        return Ok(());
                    }
                    m.closed = true;
                }
                news.events.push(e);
            }
            AlgoNews::Triggering => {
                m.triggering.insert(order.seq);
            }
            AlgoNews::Triggered { actual_order_id } => {
                m.triggering.insert(order.seq);
                if let Some(ai) = actual_order_id {
                    m.actual.insert(ai, order);
                }
            }
            AlgoNews::Unprotected { reason } => news.actions.push(Action::CloseNow {
                position: order.position,
                reason: format!("{}: {reason}", a.client_algo_id),
            }),
        }
        Ok(())
    }

    fn on_order(
        &mut self,
        u: &stream::OrderUpdate,
        news: &mut StreamNews,
    ) -> Result<(), ParseError> {
        let Some((&position, m)) = self.managed.iter_mut().find(|(_, m)| {
            m.symbol == u.symbol
                && (m.actual.contains_key(&u.order_id.to_string())
                    || m.closing_id.as_deref() == Some(u.client_order_id.as_str()))
        }) else {
            return Ok(());
        };
        if m.closed {
            return Ok(());
        }
        let seen = m.executions.entry(u.order_id).or_default();
        seen.add(u);
        let seen = *seen;
        // The fill of a triggered stop is the new order's (freqtrade #12680); the position
        // closes once it is filled, at the average of its executions.
        let event = match m.actual.get(&u.order_id.to_string()) {
            Some(&order) => u.triggered_after(order, &m.instrument, &seen)?,
            None => u.closed_after(position, &m.instrument, &seen)?,
        };
        if let Some(e) = event {
            m.closed = true;
            news.events.push(e);
        }
        Ok(())
    }

    fn on_position(
        &mut self,
        p: PositionInfo,
        ts: i64,
        heard: Heard,
        news: &mut StreamNews,
    ) -> Result<(), ParseError> {
        let Some(&position) = self.by_key.get(&(p.symbol.clone(), p.position_side)) else {
            if p.is_open() {
                news.discovered.push(p);
            }
            return Ok(());
        };
        let m = self
            .managed
            .get_mut(&position)
            .expect("keyed positions are managed");
        // Smaller while our stop's order or our close fills (in several executions): part
        // of that fill, not a change to follow.
        let filling = m.closing_id.is_some() || !m.triggering.is_empty();
        if p.is_open() && filling && p.size() < m.size {
            m.size = p.size();
            m.last = Some(p);
            return Ok(());
        }
        if p.is_open() {
            if let Some(e) = p.event(position, m.last.as_ref(), ts, &m.instrument)? {
                news.events.push(match e {
                    VenueEvent::PositionOpened {
                        entry, quantity, ..
                    } => VenueEvent::PositionChanged {
                        position,
                        ts,
                        entry,
                        quantity,
                    },
                    e => e,
                });
            }
            m.size = p.size();
            m.last = Some(p);
            return Ok(());
        }
        m.last = Some(p);
        if heard == Heard::OnStream && !m.closed {
            // The user stream's messages of one fill come in no fixed order: a flat
            // position can be told before the fill that flattened it.
            if filling {
                // Our close, or a stop seen firing: its fill is on its way.
                return Ok(());
            }
            if m.resting(position).is_some() {
                // Our stop may have filled: read it back before deciding the exit.
                news.actions.push(Action::Recheck);
                return Ok(());
            }
        }
        // Flat without a fill of ours (closed by someone else): at the last price.
        if let Some(e) = self.closed_event(position, ts) {
            news.events.push(e);
        }
        Ok(())
    }
}

/// `command`'s stop for an error message: the symbol and the price, in the position's units.
fn describe_stop(command: &Command, managed: &BTreeMap<u64, Managed>) -> String {
    match *command {
        Command::Place { order, stop } => match managed.get(&order.position) {
            Some(m) => format!(
                "{} stop {} (tick {})",
                m.symbol,
                m.instrument.decimal(stop),
                m.instrument.tick_size
            ),
            None => format!("position {} stop {stop} units", order.position),
        },
        other => format!("{other:?}"),
    }
}

fn recheck_failed(e: RestError) -> Action {
    rest_failed(e).action.unwrap_or(Action::Retry)
}

fn rest_failed(e: RestError) -> Executed {
    match e {
        RestError::Refused { outcome, endpoint } => {
            let q = Command::Query {
                order: OrderRef {
                    position: 0,
                    seq: 0,
                },
            };
            match response::answer(&q, &outcome, 0, 0) {
                Answer::RetryAfter { ms } => Executed::action(Action::RetryAfter { ms }),
                Answer::Halt { until_ms, .. } => Executed::action(Action::Halt { until_ms }),
                Answer::Fatal { code, message } => Executed::action(Action::Fatal {
                    code,
                    message: format!("{endpoint}: {message}"),
                }),
                _ => Executed::action(Action::Retry),
            }
        }
        RestError::Unreadable { .. } => Executed::fatal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn managed() -> Managed {
        Managed {
            symbol: "BTCUSDT".into(),
            ps: PositionSide::Both,
            side: Side::Long,
            size: dec!(1),
            instrument: Instrument::with_price_decimals(dec!(0.1), 1),
            triggering: BTreeSet::new(),
            actual: BTreeMap::new(),
            executions: BTreeMap::new(),
            close_attempt: 0,
            close_ambiguous: false,
            closing_id: None,
            last: None,
            closed: false,
            told: BTreeSet::new(),
        }
    }

    /// A long run of replaces (cancel seq k, create seq k+1) keeps only the latest orders:
    /// what is told twice is news once, and the resting stop is the last one created.
    #[test]
    fn what_was_told_stays_bounded_over_many_replaces() {
        let mut m = managed();
        let oref = |seq| OrderRef { position: 1, seq };
        let accepted = |seq| VenueEvent::Accepted {
            order: oref(seq),
            stop: 1,
            ts: 0,
            venue_id: None,
        };
        let cancelled = |seq| VenueEvent::Cancelled {
            order: oref(seq),
            ts: 0,
        };
        assert!(m.first(&accepted(1)));
        for k in 1..1000 {
            assert!(m.first(&cancelled(k)));
            assert!(m.first(&accepted(k + 1)));
            // The stream says it again: not news.
            assert!(!m.first(&accepted(k + 1)));
            assert!(!m.first(&cancelled(k)));
        }
        assert!(
            m.told.len() <= 2 * TOLD_KEPT as usize + 2,
            "{}",
            m.told.len()
        );
        assert_eq!(m.resting(1), Some(oref(1000)));
    }
}
