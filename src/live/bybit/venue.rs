//! The async Bybit venue adapter (feature `live`): seam [`Command`]s in, REST calls out, and
//! stream messages in, [`VenueEvent`]s out — the live counterpart of the simulated venue for
//! a driver that runs each position's [`StopOrder`](crate::venue::StopOrder) lifecycle.
//!
//! It holds no trading rule. Per managed position (symbol + `positionIdx`) it keeps only what
//! the wire needs: the instrument, the side and size (a close's quantity), the stop last sent
//! (a query's expectation), the close attempt (its `orderLinkId`) and the last position
//! message (to tell a real change from Bybit's repeated `position` messages). Duplicated
//! stream messages give one event; what it cannot attribute to a managed position it reports
//! as discovered, for the driver to adopt.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::request::{self, PositionFilter, PositionIdx, Target};
use super::response::{self, Answer, Outcome};
use super::rest::{RestClient, RestError};
use super::snapshot::{self, PositionInfo, to_units};
use super::stream::{OrderSide, OrderStatus, PricePoint, StreamMessage, TickerBook};
use crate::engine::{Instrument, Side};
use crate::live::config::TriggerPrice;
use crate::venue::{Command, OrderRef, VenueEvent};

/// What the driver must do besides feeding the events to the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the same command again now (it never left, or a read failed ambiguously).
    Retry,
    /// Send it again after this long (a rate-limited close or read).
    RetryAfter { ms: i64 },
    /// No REST to this host until the ban ends; the stops on the exchange keep working.
    Halt,
    /// Stop and alert (keys, permissions, a refused close).
    Fatal { code: i64, message: String },
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Executed {
    /// For the lifecycle, in order (empty when the answer comes on the stream: a close).
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
}

/// What a stream message meant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamNews {
    /// For the lifecycles of managed positions.
    pub events: Vec<VenueEvent>,
    /// Trigger-price points (tickers), stamped with the exchange's event time.
    pub prices: Vec<PricePoint>,
    /// Open positions that no managed position covers (new ones: the driver adopts them).
    pub discovered: Vec<PositionInfo>,
}

/// Why a position cannot be managed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManageError {
    #[error("{symbol}: not an instrument the venue listed")]
    UnknownSymbol { symbol: String },
    #[error("position {position} is already managed")]
    AlreadyManaged { position: u64 },
    #[error("{symbol} positionIdx {idx}: already managed as position {position}")]
    KeyTaken {
        symbol: String,
        idx: u8,
        position: u64,
    },
}

#[derive(Debug, Clone)]
struct Managed {
    symbol: String,
    idx: PositionIdx,
    side: Side,
    size: Decimal,
    instrument: Instrument,
    /// The stop of the last set sent (an amend's or a place's) and its order.
    sent: Option<(OrderRef, i64)>,
    /// The order resting on the venue as far as we know (set by an acceptance).
    resting: Option<OrderRef>,
    /// The attempt number of the close at market last sent, and whether its outcome is
    /// unknown (then a resend reuses the id: Bybit refuses a duplicate).
    close_attempt: u32,
    close_ambiguous: bool,
    closing_link: Option<String>,
    last: Option<PositionInfo>,
    /// The price of the last fill that reduced the position (a close by someone else).
    last_close_fill: Option<Decimal>,
    closed: bool,
}

/// A Bybit account as a venue.
pub struct BybitVenue {
    rest: RestClient,
    trigger: TriggerPrice,
    instruments: BTreeMap<String, Instrument>,
    managed: BTreeMap<u64, Managed>,
    by_key: BTreeMap<(String, u8), u64>,
    book: TickerBook,
    /// Order updates already turned into events (Bybit may send a `Filled` twice).
    seen_orders: BTreeSet<(String, i64, String)>,
}

impl BybitVenue {
    /// Over `rest`, with the instruments it lists (tick sizes): one call per symbol.
    pub async fn connect(
        rest: RestClient,
        trigger: TriggerPrice,
        symbols: &[&str],
    ) -> Result<BybitVenue, RestError> {
        rest.sync_clock().await?;
        let mut instruments = BTreeMap::new();
        for s in symbols {
            for info in rest.instruments(Some(s)).await? {
                instruments.insert(info.symbol.clone(), info.instrument());
            }
        }
        Ok(BybitVenue {
            rest,
            trigger,
            instruments,
            managed: BTreeMap::new(),
            by_key: BTreeMap::new(),
            book: TickerBook::new(trigger),
            seen_orders: BTreeSet::new(),
        })
    }

    /// Bybit moves the stop in place (`trading-stop`).
    pub fn atomic_amend(&self) -> bool {
        true
    }

    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    pub fn instrument(&self, symbol: &str) -> Option<&Instrument> {
        self.instruments.get(symbol)
    }

    /// Reads `symbol`'s instrument (its tick size) now, unless known already: a symbol first
    /// seen while running (`symbols = ["*"]`). `None` when the venue does not list it.
    pub async fn learn(&mut self, symbol: &str) -> Result<Option<Instrument>, RestError> {
        if let Some(i) = self.instruments.get(symbol) {
            return Ok(Some(*i));
        }
        for info in self.rest.instruments(Some(symbol)).await? {
            self.instruments
                .insert(info.symbol.clone(), info.instrument());
        }
        Ok(self.instruments.get(symbol).copied())
    }

    /// The last trigger price seen for `symbol`, in units (a refusal's market).
    pub fn market_units(&self, symbol: &str) -> Option<i64> {
        let (last, mark) = self.book.prices(symbol);
        let p = match self.trigger {
            TriggerPrice::Mark => mark,
            TriggerPrice::Last => last,
        }?;
        self.instruments.get(symbol)?.units(p)
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
        let key = (info.symbol.clone(), info.position_idx.as_u8());
        if let Some(&p) = self.by_key.get(&key) {
            return Err(ManageError::KeyTaken {
                symbol: info.symbol.clone(),
                idx: info.position_idx.as_u8(),
                position: p,
            });
        }
        self.by_key.insert(key, position);
        self.managed.insert(
            position,
            Managed {
                symbol: info.symbol.clone(),
                idx: info.position_idx,
                side: info.side.unwrap_or(Side::Long),
                size: info.size,
                instrument,
                sent: None,
                resting: None,
                close_attempt: 0,
                close_ambiguous: false,
                closing_link: None,
                last: Some(info.clone()),
                last_close_fill: None,
                closed: !info.is_open(),
            },
        );
        Ok(())
    }

    /// Stops managing `position` (closed and reported).
    pub fn forget(&mut self, position: u64) {
        if let Some(m) = self.managed.remove(&position) {
            self.by_key.remove(&(m.symbol, m.idx.as_u8()));
        }
    }

    fn no_market(symbol: &str) -> Executed {
        Executed::action(Action::Fatal {
            code: response::code::PARAMS,
            message: format!("{symbol}: the stop would trigger now, and no market price is known"),
        })
    }

    fn unmanaged(position: u64) -> Executed {
        Executed::action(Action::Fatal {
            code: 0,
            message: format!("position {position} is not managed by this venue"),
        })
    }

    /// Executes `command` at `ts` (the event time it answers to): the REST call and what its
    /// answer means. A stop's fill and a close's fill arrive on the private stream.
    pub async fn execute(&mut self, command: Command, ts: i64) -> Executed {
        let position = match command {
            Command::Place { order, .. }
            | Command::Amend { order, .. }
            | Command::Cancel { order }
            | Command::Query { order } => order.position,
            Command::CloseAtMarket { position } => position,
        };
        let Some(m) = self.managed.get(&position).cloned() else {
            return Self::unmanaged(position);
        };
        let streamed = self.market_units(&m.symbol);
        let target = Target {
            symbol: &m.symbol,
            position_idx: m.idx,
            side: m.side,
            size: m.size,
            instrument: &m.instrument,
        };
        if let Command::Query { order } = command {
            return self.query(position, order, ts).await;
        }
        let attempt = match command {
            Command::CloseAtMarket { .. } if m.close_ambiguous => m.close_attempt,
            Command::CloseAtMarket { .. } => m.close_attempt + 1,
            _ => m.close_attempt,
        };
        let req = match request::for_command(&command, &target, self.trigger, attempt) {
            Ok(r) => r,
            Err(e) => {
                return Executed::action(Action::Fatal {
                    code: 0,
                    message: e.to_string(),
                });
            }
        };
        // What the request expects, kept before it leaves (a query after an ambiguous
        // outcome compares the read-back with it).
        if let Some(m) = self.managed.get_mut(&position) {
            match command {
                Command::Place { order, stop } | Command::Amend { order, stop, .. } => {
                    m.sent = Some((order, stop));
                }
                Command::CloseAtMarket { .. } => {
                    m.close_attempt = attempt;
                    m.closing_link = Some(request::close_link_id(position, attempt));
                }
                _ => {}
            }
        }
        let reply = self.rest.send_resyncing(&req).await;
        // "Would trigger" carries the market the stop was judged against: the stream's last
        // trigger price, else the mark read back now (Bybit's text gives it in no stated scale).
        let market = match (streamed, &reply.outcome) {
            (Some(p), _) => p,
            (None, Outcome::WouldTrigger) => match self.read(&m).await {
                Ok(Some(PositionInfo {
                    mark_price: Some(mark),
                    ..
                })) => match m.instrument.units(mark) {
                    Some(u) => u,
                    None => return Self::no_market(&m.symbol),
                },
                _ => return Self::no_market(&m.symbol),
            },
            (None, _) => 0,
        };
        let answer = response::answer(&command, &reply.outcome, ts, market);
        if let Some(m) = self.managed.get_mut(&position) {
            if matches!(command, Command::CloseAtMarket { .. }) {
                m.close_ambiguous = matches!(reply.outcome, Outcome::Ambiguous { .. });
            }
            if let Answer::Event(VenueEvent::Accepted { order, .. }) = &answer {
                m.resting = Some(*order);
            }
            if let Answer::Event(VenueEvent::Cancelled { .. }) = &answer {
                m.resting = None;
                m.sent = None;
            }
        }
        match answer {
            Answer::Event(e) => Executed::event(e),
            Answer::Pending => Executed::default(),
            Answer::ReadBack => self.read_back_close(position, ts).await,
            Answer::ResyncAndRetry | Answer::Retry => Executed::action(Action::Retry),
            Answer::RetryAfter { ms } => Executed::action(Action::RetryAfter { ms }),
            Answer::Halt => Executed::action(Action::Halt),
            Answer::Fatal { code, message } => Executed::action(Action::Fatal { code, message }),
        }
    }

    /// After a restart: `order` is the stop of ours resting on `position` at `stop` (the
    /// journal says so, reconciliation found it there), so the stream's trigger of it is
    /// ours (a stop fill, not a close by someone else).
    pub fn resume_resting(&mut self, order: OrderRef, stop: i64) {
        if let Some(m) = self.managed.get_mut(&order.position) {
            m.sent = Some((order, stop));
            m.resting = Some(order);
        }
    }

    /// The position as the venue has it now.
    async fn read(&self, m: &Managed) -> Result<Option<PositionInfo>, Outcome> {
        match self.rest.positions(PositionFilter::Symbol(&m.symbol)).await {
            Ok(list) => Ok(list.into_iter().find(|p| p.position_idx == m.idx)),
            Err(RestError::Refused { outcome, .. }) => Err(outcome),
            Err(e) => Err(Outcome::Ambiguous {
                detail: e.to_string(),
            }),
        }
    }

    fn read_failed(outcome: Outcome) -> Executed {
        let q = Command::Query {
            order: OrderRef {
                position: 0,
                seq: 0,
            },
        };
        match response::answer(&q, &outcome, 0, 0) {
            Answer::RetryAfter { ms } => Executed::action(Action::RetryAfter { ms }),
            Answer::Halt => Executed::action(Action::Halt),
            Answer::Fatal { code, message } => Executed::action(Action::Fatal { code, message }),
            _ => Executed::action(Action::Retry),
        }
    }

    /// After an ambiguous stop command: the position's `stopLoss` says what happened.
    async fn query(&mut self, position: u64, order: OrderRef, ts: i64) -> Executed {
        let m = self.managed[&position].clone();
        let info = match self.read(&m).await {
            Ok(info) => info,
            Err(outcome) => return Self::read_failed(outcome),
        };
        // A query for our removal expects no stop; for a set, the stop we sent.
        let expected = m.sent.filter(|(o, _)| *o == order).map(|(_, s)| s);
        let event = match (expected, info.as_ref().filter(|p| p.is_open())) {
            (None, Some(p)) if p.stop_loss.is_none() => Ok(VenueEvent::Cancelled { order, ts }),
            (Some(stop), p) => snapshot::resolve_query(order, stop, p, &m.instrument, ts),
            (None, p) => snapshot::resolve_query(order, 0, p, &m.instrument, ts),
        };
        match event {
            Ok(e) => {
                if let VenueEvent::Accepted { order, .. } = e
                    && let Some(m) = self.managed.get_mut(&position)
                {
                    m.resting = Some(order);
                }
                Executed::event(e)
            }
            Err(e) => Executed::action(Action::Fatal {
                code: 0,
                message: e.to_string(),
            }),
        }
    }

    /// A close at market whose outcome is unknown, or that found nothing to close: flat now
    /// means closed (at the last fill seen, else the last trigger price); open means send it
    /// again (with the same id after an ambiguous outcome).
    async fn read_back_close(&mut self, position: u64, ts: i64) -> Executed {
        let m = self.managed[&position].clone();
        match self.read(&m).await {
            Ok(Some(p)) if p.is_open() => Executed::action(Action::Retry),
            Ok(p) => {
                if m.closed {
                    return Executed::default();
                }
                let mark = p.and_then(|p| p.mark_price);
                match self.closed_event(position, ts, mark) {
                    Some(e) => Executed::event(e),
                    None => Executed::action(Action::Fatal {
                        code: 0,
                        message: format!(
                            "{}: the position is flat, and no price is known to close it at",
                            m.symbol
                        ),
                    }),
                }
            }
            Err(outcome) => Self::read_failed(outcome),
        }
    }

    /// `PositionClosed` for `position`, once: at the last reducing fill seen, else the last
    /// trigger price from the stream, else `mark` (a read-back's); `None` without a price.
    fn closed_event(
        &mut self,
        position: u64,
        ts: i64,
        mark: Option<Decimal>,
    ) -> Option<VenueEvent> {
        let market = self
            .managed
            .get(&position)
            .and_then(|m| self.market_units(&m.symbol));
        let m = self.managed.get_mut(&position)?;
        if m.closed {
            return None;
        }
        let fill = m
            .last_close_fill
            .and_then(|p| m.instrument.units(p))
            .or(market)
            .or(mark.and_then(|p| m.instrument.units(p)))?;
        m.closed = true;
        Some(VenueEvent::PositionClosed { position, ts, fill })
    }

    /// Re-reads every managed position over REST, for what the private stream may have
    /// missed (after a reconnect; and periodically, `LIVE.md` §5): a position gone flat
    /// (closed by its stop, our close or someone else, from its fills since it was last seen),
    /// resized, or whose stop was removed; open positions of those symbols that nothing
    /// manages are reported as discovered. Events come once: what the stream already told is
    /// not told again.
    pub async fn recheck(&mut self, ts: i64) -> Result<StreamNews, Action> {
        let mut news = StreamNews::default();
        let symbols: BTreeSet<String> = self.managed.values().map(|m| m.symbol.clone()).collect();
        for symbol in symbols {
            let list = match self.rest.positions(PositionFilter::Symbol(&symbol)).await {
                Ok(list) => list,
                Err(RestError::Refused { outcome, .. }) => {
                    return Err(Self::read_failed(outcome).action.unwrap_or(Action::Retry));
                }
                Err(_) => return Err(Action::Retry),
            };
            for p in list {
                let Some(position) = self.key_of(&p.symbol, p.position_idx) else {
                    if p.is_open() {
                        news.discovered.push(p);
                    }
                    continue;
                };
                let m = self.managed[&position].clone();
                if m.closed {
                    continue;
                }
                if p.is_open() {
                    if let Ok(Some(e)) = p.event(position, m.last.as_ref(), ts, &m.instrument) {
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
                    if let (Some(order), None) = (m.resting, p.stop_loss) {
                        news.events.push(VenueEvent::Cancelled { order, ts });
                    }
                    if let Some(mm) = self.managed.get_mut(&position) {
                        mm.size = p.size;
                        if p.stop_loss.is_none() {
                            mm.resting = None;
                        }
                        mm.last = Some(p);
                    }
                    continue;
                }
                // Flat: what closed it, from its fills since it was last seen.
                let since = m.last.as_ref().and_then(|l| l.updated_ms);
                let fills = match self.rest.executions(&symbol, since).await {
                    Ok(f) => f,
                    Err(_) => return Err(Action::Retry),
                };
                let closing = fills.iter().find(|x| {
                    x.closed_size.is_some_and(|c| c > Decimal::ZERO)
                        && x.side
                            == match m.side {
                                Side::Long => OrderSide::Sell,
                                Side::Short => OrderSide::Buy,
                            }
                });
                let event = match closing {
                    Some(x) => match to_units(x.exec_price, &m.instrument, "execPrice") {
                        Ok(fill) if x.is_stop_loss_fill() => m
                            .resting
                            .or(m.sent.map(|(o, _)| o))
                            .map(|order| VenueEvent::Triggered {
                                order,
                                ts: x.exec_time_ms,
                                fill,
                            })
                            .or(Some(VenueEvent::PositionClosed {
                                position,
                                ts: x.exec_time_ms,
                                fill,
                            })),
                        Ok(fill) => Some(VenueEvent::PositionClosed {
                            position,
                            ts: x.exec_time_ms,
                            fill,
                        }),
                        Err(_) => None,
                    },
                    None => None,
                };
                let event = match event {
                    Some(e) => {
                        if let Some(mm) = self.managed.get_mut(&position) {
                            mm.closed = true;
                        }
                        Some(e)
                    }
                    None => self.closed_event(position, ts, p.mark_price),
                };
                news.events.extend(event);
                if let Some(mm) = self.managed.get_mut(&position) {
                    mm.last = Some(p);
                }
            }
        }
        Ok(news)
    }

    /// The managed position of `symbol` that an order of `side` reduces.
    fn closing_position(&self, symbol: &str, side: OrderSide) -> Option<u64> {
        let reduced = match side {
            OrderSide::Buy => Side::Short,
            OrderSide::Sell => Side::Long,
        };
        let mut of_symbol = self
            .managed
            .iter()
            .filter(|(_, m)| m.symbol == symbol && !m.closed);
        let first = of_symbol.next()?;
        match of_symbol.next() {
            None => Some(*first.0),
            Some(second) => [first, second]
                .into_iter()
                .find(|(_, m)| m.side == reduced)
                .map(|(p, _)| *p),
        }
    }

    fn key_of(&self, symbol: &str, idx: PositionIdx) -> Option<u64> {
        self.by_key.get(&(symbol.to_string(), idx.as_u8())).copied()
    }

    /// What a stream message means.
    pub fn on_message(&mut self, msg: &StreamMessage) -> StreamNews {
        let mut news = StreamNews::default();
        match msg {
            StreamMessage::Ticker(t) => news.prices.extend(self.book.apply(t)),
            StreamMessage::Orders { list, .. } => {
                for o in list {
                    let Some(position) = self.key_of(&o.symbol, o.position_idx) else {
                        continue;
                    };
                    if !o.is_stop_loss() {
                        continue;
                    }
                    let fresh = self.seen_orders.insert((
                        o.order_id.clone(),
                        o.updated_ms,
                        format!("{:?}", o.status),
                    ));
                    if !fresh {
                        continue;
                    }
                    let m = &self.managed[&position];
                    let Some(order) = m.resting.or(m.sent.map(|(o, _)| o)) else {
                        continue;
                    };
                    match o.stop_event(order, &m.instrument) {
                        Ok(Some(e @ VenueEvent::Triggered { .. })) => {
                            if let Some(m) = self.managed.get_mut(&position)
                                && !m.closed
                            {
                                m.closed = true;
                                news.events.push(e);
                            }
                        }
                        Ok(Some(e @ VenueEvent::Cancelled { .. })) => {
                            // Ours was removed by us (answered over REST already) or went
                            // with the closed position; otherwise someone else cancelled it.
                            if let Some(m) = self.managed.get_mut(&position)
                                && m.resting.is_some()
                                && !m.closed
                                && o.status != OrderStatus::Filled
                            {
                                m.resting = None;
                                news.events.push(e);
                            }
                        }
                        _ => {}
                    }
                }
            }
            StreamMessage::Executions { list, .. } => {
                for x in list {
                    // Executions carry no positionIdx: a fill that reduces is on the position
                    // of the other side (one-way: the symbol's only one).
                    let Some(position) = self.closing_position(&x.symbol, x.side) else {
                        continue;
                    };
                    let Some(m) = self.managed.get_mut(&position) else {
                        continue;
                    };
                    if x.closed_size.is_some_and(|c| c > Decimal::ZERO) {
                        m.last_close_fill = Some(x.exec_price);
                    }
                    let ours = m.closing_link.as_deref() == Some(x.order_link_id.as_str())
                        && !x.order_link_id.is_empty();
                    if ours && x.leaves_qty.is_zero() && !m.closed {
                        m.closed = true;
                        if let Ok(fill) = to_units(
                            x.exec_price,
                            &m.instrument,
                            &format!("{}.execPrice", x.symbol),
                        ) {
                            news.events.push(VenueEvent::PositionClosed {
                                position,
                                ts: x.exec_time_ms,
                                fill,
                            });
                        }
                    }
                }
            }
            StreamMessage::Positions { ts, list } => {
                for p in list {
                    let Some(position) = self.key_of(&p.symbol, p.position_idx) else {
                        if p.is_open() {
                            news.discovered.push(p.clone());
                        }
                        continue;
                    };
                    let ts = p.updated_ms.unwrap_or(*ts);
                    let m = &self.managed[&position];
                    let previous = m.last.clone();
                    if p.is_open() {
                        match p.event(position, previous.as_ref(), ts, &m.instrument) {
                            Ok(Some(VenueEvent::PositionOpened {
                                entry, quantity, ..
                            })) => {
                                // Managed already: the position came back (re-opened).
                                news.events.push(VenueEvent::PositionChanged {
                                    position,
                                    ts,
                                    entry,
                                    quantity,
                                });
                            }
                            Ok(Some(e)) => news.events.push(e),
                            _ => {}
                        }
                        if let Some(m) = self.managed.get_mut(&position) {
                            m.size = p.size;
                            m.last = Some(p.clone());
                        }
                    } else {
                        if let Some(m) = self.managed.get_mut(&position) {
                            m.last = Some(p.clone());
                        }
                        if let Some(e) = self.closed_event(position, ts, p.mark_price) {
                            news.events.push(e);
                        }
                    }
                }
            }
            StreamMessage::Pong | StreamMessage::Reply { .. } => {}
        }
        news
    }
}
