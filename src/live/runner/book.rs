//! The live driver's synchronous core: one [`PositionRunner`] per managed position on an
//! [`Outbox`] venue, each step journalled in the store before its commands leave
//! (write-ahead, `LIVE.md` §5). No socket and no clock: the async loop hands it prices and
//! venue events, sends what it queued and feeds the answers back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, Instrument, Position, Side, TrailingConfig};
use crate::runner::{Close, PositionRunner, Recorder};
use crate::store::{PositionRecord, StepWrite, Store, StoreError};
use crate::venue::{Command, Phase, Venue, VenueEvent};

/// A venue that answers nothing at once: it queues each command for the async loop, which
/// sends it after the step that wants it is committed.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub queue: Vec<(Command, i64)>,
    /// Bybit moves the stop in place (`trading-stop`); Binance cancels, then creates.
    pub atomic: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            queue: Vec::new(),
            atomic: true,
        }
    }
}

impl Venue for Outbox {
    fn atomic_amend(&self) -> bool {
        self.atomic
    }
    fn execute(&mut self, command: Command, ts: i64) -> Option<VenueEvent> {
        self.queue.push((command, ts));
        None
    }
}

/// What the live driver keeps per position beside the runner (the record's `driver` JSON):
/// which exchange position it is and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    pub symbol: String,
    pub position_idx: u8,
    pub size: Decimal,
    /// A stop someone else set on the position (Bybit holds one per position), adopted: no
    /// stop looser than it is sent until the trailing stop passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_stop: Option<Decimal>,
}

impl Driver {
    fn json(&self) -> String {
        serde_json::to_string(self).expect("a driver state serialises")
    }
}

/// One managed position.
pub struct Slot {
    pub runner: PositionRunner<Outbox>,
    pub record: PositionRecord,
    pub driver: Driver,
    /// The entries of the step not yet committed.
    tap: Recorder,
    /// For a restored position, the data time of the last point it took before the
    /// restart: a stream's snapshot repeats that point, which must not count twice.
    resumed_at: Option<i64>,
    /// The driver state changed without a runner input (written by the next commit).
    dirty: bool,
}

impl Slot {
    pub fn instrument(&self) -> &Instrument {
        self.runner.engine.instrument()
    }
    pub fn side(&self) -> Side {
        self.record.side()
    }
    /// The data time of the last price the engine took.
    pub fn last_ts(&self) -> i64 {
        self.runner.engine.snapshot().last_ts
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("position {position}: engine: {source}")]
    Engine { position: u64, source: EngineError },
    #[error("position {position}: its live state (driver_json): {problem}")]
    Driver { position: u64, problem: String },
}

/// A new position to manage.
#[derive(Debug, Clone)]
pub struct Opening {
    pub symbol: String,
    pub position_idx: u8,
    pub side: Side,
    pub entry: Decimal,
    pub size: Decimal,
    pub opened_at: i64,
    /// A stop someone else set on it, adopted ([`Driver::foreign_stop`]).
    pub foreign_stop: Option<Decimal>,
}

/// Price points kept per symbol, so a position whose opening arrives after later points
/// (another stream) still takes every point after its opening time.
const RECENT_POINTS: usize = 64;

/// The last price of a symbol, for `/status` and for ordering.
#[derive(Debug, Clone, Default)]
pub struct SymbolPrice {
    pub last_ts: i64,
    pub price: Decimal,
    recent: VecDeque<(i64, Decimal)>,
    /// Points stamped before the last one processed (dropped).
    pub dropped: u64,
}

/// Every open position and the store they are journalled in.
pub struct Book {
    pub store: Store,
    pub slots: BTreeMap<u64, Slot>,
    pub symbols: BTreeMap<String, SymbolPrice>,
    next_id: u64,
    /// Whether the venue moves a stop in place (new positions' lifecycles follow it).
    pub atomic_amend: bool,
    /// Told each committed step and how long its transaction took (issue 14), if set.
    pub metrics: Option<std::sync::Arc<crate::live::metrics::Metrics>>,
    /// The positions of each symbol (a price steps only these).
    by_symbol: BTreeMap<String, BTreeSet<u64>>,
    /// What changed since [`Book::take_changed`]: `/status` is brought up to date from these
    /// alone, so a message costs what it touched, not the whole book.
    changed: Changed,
}

/// The positions and symbols whose `/status` entries may be out of date.
#[derive(Debug, Default)]
pub struct Changed {
    pub positions: BTreeSet<u64>,
    pub symbols: BTreeSet<String>,
}

impl Book {
    /// Over `store`; new positions are numbered after every stored one.
    pub fn new(store: Store) -> Result<Book, BookError> {
        let next_id = store
            .journal_ids()?
            .into_iter()
            .chain(store.records()?.iter().map(PositionRecord::id))
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Book {
            store,
            slots: BTreeMap::new(),
            symbols: BTreeMap::new(),
            next_id,
            atomic_amend: true,
            metrics: None,
            by_symbol: BTreeMap::new(),
            changed: Changed::default(),
        })
    }

    fn outbox(&self) -> Outbox {
        Outbox {
            atomic: self.atomic_amend,
            ..Outbox::default()
        }
    }

    /// What changed since the last call (and forgets it).
    pub fn take_changed(&mut self) -> Changed {
        std::mem::take(&mut self.changed)
    }

    /// The id the next opened position gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Rebuilds a stored open position (after `store.check_row`).
    pub fn restore(&mut self, rec: &PositionRecord) -> Result<u64, BookError> {
        let id = rec.id();
        let driver: Driver = serde_json::from_str(&rec.driver).map_err(|e| BookError::Driver {
            position: id,
            problem: e.to_string(),
        })?;
        let runner = PositionRunner::restore(&rec.runner, self.outbox()).map_err(|source| {
            BookError::Engine {
                position: id,
                source,
            }
        })?;
        self.index(&driver.symbol, id);
        self.slots.insert(
            id,
            Slot {
                runner,
                record: rec.clone(),
                driver,
                tap: Recorder::default(),
                resumed_at: Some(rec.runner.engine.last_ts),
                dirty: false,
            },
        );
        self.changed.positions.insert(id);
        Ok(id)
    }

    /// Opens a trailing stop for `o` and commits its first step (the first stop, if the
    /// engine wants one at once, is then queued).
    pub fn open(
        &mut self,
        o: &Opening,
        instrument: &Instrument,
        config: &TrailingConfig,
    ) -> Result<u64, BookError> {
        let id = self.next_id;
        let position = Position {
            id,
            symbol: o.symbol.clone(),
            side: o.side,
            entry_price: o.entry,
            quantity: o.size,
            opened_at: o.opened_at,
        };
        let mut tap = Recorder::default();
        let outbox = self.outbox();
        let runner = PositionRunner::open(&position, instrument, config, outbox, &mut tap)
            .map_err(|source| BookError::Engine {
                position: id,
                source,
            })?;
        let driver = Driver {
            symbol: o.symbol.clone(),
            position_idx: o.position_idx,
            size: o.size,
            foreign_stop: o.foreign_stop,
        };
        let entries = tap.journal();
        let record = PositionRecord::after_step(None, runner.snapshot(), driver.json(), &entries);
        let started = std::time::Instant::now();
        self.store.commit(
            &[StepWrite {
                entries: &entries,
                record: &record,
            }],
            &[],
        )?;
        if let Some(m) = &self.metrics {
            m.on_commit(started.elapsed());
            m.on_step(&entries, &record);
        }
        self.next_id += 1;
        self.index(&o.symbol, id);
        self.slots.insert(
            id,
            Slot {
                runner,
                record,
                driver,
                tap: Recorder::default(),
                resumed_at: None,
                dirty: false,
            },
        );
        self.changed.positions.insert(id);
        // Points of its symbol after its opening that arrived before it.
        let recent: Vec<(i64, Decimal)> = self
            .symbols
            .get(&o.symbol)
            .map(|s| {
                s.recent
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t > o.opened_at)
                    .collect()
            })
            .unwrap_or_default();
        for (ts, price) in recent {
            self.price_to(id, price, ts)?;
        }
        if self.slots[&id].tap.entries.is_empty() {
            return Ok(id);
        }
        self.commit(&[id])?;
        Ok(id)
    }

    /// A trigger-price point of `symbol` at the exchange's `ts`: to the engine of every open
    /// position of that symbol, committed in one transaction. Returns the positions stepped;
    /// `None` when the point is older than the last one of the symbol (dropped).
    pub fn on_price(
        &mut self,
        symbol: &str,
        price: Decimal,
        ts: i64,
    ) -> Result<Option<Vec<u64>>, BookError> {
        if !self.symbols.contains_key(symbol) {
            self.symbols
                .insert(symbol.to_string(), SymbolPrice::default());
        }
        let s = self.symbols.get_mut(symbol).expect("inserted above");
        if ts < s.last_ts {
            s.dropped += 1;
            return Ok(None);
        }
        if !self.changed.symbols.contains(symbol) {
            self.changed.symbols.insert(symbol.to_string());
        }
        s.last_ts = ts;
        s.price = price;
        s.recent.push_back((ts, price));
        if s.recent.len() > RECENT_POINTS {
            s.recent.pop_front();
        }
        let ids: Vec<u64> = self
            .by_symbol
            .get(symbol)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| {
                self.slots
                    .get(id)
                    .is_some_and(|s| s.runner.closed().is_none())
            })
            .collect();
        let mut stepped = Vec::new();
        for id in ids {
            if self.price_to(id, price, ts)? {
                stepped.push(id);
            }
        }
        self.commit(&stepped)?;
        Ok(Some(stepped))
    }

    /// One point to one position's engine (not before its last point); whether it took it.
    fn price_to(&mut self, id: u64, price: Decimal, ts: i64) -> Result<bool, BookError> {
        let slot = self.slots.get_mut(&id).expect("a managed position");
        // The opening's own point is its entry (the engine took it as its first price).
        if ts < slot.last_ts()
            || ts <= slot.record.engine().position.opened_at
            || slot.resumed_at.is_some_and(|r| ts <= r)
            || slot.runner.closed().is_some()
        {
            return Ok(false);
        }
        let Some(units) = slot.instrument().units(price) else {
            return Err(BookError::Engine {
                position: id,
                source: EngineError::NotRepresentable {
                    what: "price",
                    value: price,
                    decimals: slot.instrument().price_decimals,
                },
            });
        };
        // A point at or through the stop resting on the exchange is the exchange's to
        // trigger (as the simulated venue checks its stop before the engine sees a point):
        // the engine waits for the fill instead of acting on it.
        let sign = slot.side().sign();
        if slot
            .runner
            .order
            .resting()
            .is_some_and(|r| sign * units <= sign * r.stop)
        {
            return Ok(false);
        }
        slot.runner
            .on_price(units, ts, &mut slot.tap)
            .map_err(|source| BookError::Engine {
                position: id,
                source,
            })?;
        self.changed.positions.insert(id);
        Ok(true)
    }

    /// A venue event for position `id` (uncommitted until [`Book::commit`]); the close if the
    /// position closed.
    pub fn on_event(&mut self, id: u64, event: &VenueEvent) -> Option<Close> {
        let slot = self.slots.get_mut(&id)?;
        self.changed.positions.insert(id);
        if let VenueEvent::PositionChanged { quantity, .. } = event {
            slot.driver.size = *quantity;
        }
        slot.runner.on_venue_event(event, &mut slot.tap)
    }

    /// Sets position `id`'s adopted foreign stop (written by the next commit).
    pub fn set_foreign_stop(&mut self, id: u64, stop: Option<Decimal>) {
        if let Some(slot) = self.slots.get_mut(&id)
            && slot.driver.foreign_stop != stop
        {
            slot.driver.foreign_stop = stop;
            slot.dirty = true;
        }
    }

    /// `cmd` as it may leave for position `id`: a stop looser than the adopted foreign stop
    /// is sent at the foreign stop instead (Bybit answers `34040`, and the lifecycle then
    /// holds the exchange's price); a stop at least as tight ends the adoption.
    pub fn never_looser(&mut self, id: u64, cmd: Command) -> Command {
        let Some(slot) = self.slots.get(&id) else {
            return cmd;
        };
        let Some(foreign) = slot
            .driver
            .foreign_stop
            .and_then(|f| slot.instrument().units(f))
        else {
            return cmd;
        };
        let sign = slot.side().sign();
        let clamp = |stop: i64| {
            if sign * stop < sign * foreign {
                (foreign, true)
            } else {
                (stop, false)
            }
        };
        let (cmd, clamped) = match cmd {
            Command::Place { order, stop } => {
                let (stop, c) = clamp(stop);
                (Command::Place { order, stop }, c)
            }
            Command::Amend {
                order,
                replaces,
                stop,
            } => {
                let (stop, c) = clamp(stop);
                (
                    Command::Amend {
                        order,
                        replaces,
                        stop,
                    },
                    c,
                )
            }
            other => return other,
        };
        if !clamped {
            self.set_foreign_stop(id, None);
        }
        cmd
    }

    /// The stop command position `id` has in flight, to send now that the account's rate
    /// limit lets it go: coalesced to the newest stop the engine wants (the change journalled
    /// by the next [`Book::commit`], before it leaves). `None` when nothing is left to send.
    pub fn release(&mut self, id: u64) -> Option<Command> {
        let slot = self.slots.get_mut(&id)?;
        self.changed.positions.insert(id);
        let ts = slot.last_ts();
        slot.runner.coalesce(ts, &mut slot.tap)
    }

    /// The commands position `id` queued, oldest first.
    pub fn take_commands(&mut self, id: u64) -> Vec<(Command, i64)> {
        self.slots
            .get_mut(&id)
            .map(|s| std::mem::take(&mut s.runner.venue.queue))
            .unwrap_or_default()
    }

    /// Commits the pending steps of `ids` in one transaction (a position without new entries
    /// writes nothing).
    pub fn commit(&mut self, ids: &[u64]) -> Result<(), BookError> {
        let mut steps: Vec<(Vec<crate::runner::Entry>, PositionRecord)> = Vec::new();
        for id in ids {
            let Some(slot) = self.slots.get(id) else {
                continue;
            };
            if slot.tap.entries.is_empty() && !slot.dirty {
                continue;
            }
            let entries = slot.tap.journal();
            let record = PositionRecord::after_step(
                Some(&slot.record),
                slot.runner.snapshot(),
                slot.driver.json(),
                &entries,
            );
            steps.push((entries, record));
        }
        if steps.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.store.commit(&StepWrite::all(&steps), &[])?;
        if let Some(m) = &self.metrics {
            m.on_commit(started.elapsed());
            for (entries, record) in &steps {
                m.on_step(entries, record);
            }
        }
        for (_, record) in steps {
            self.changed.positions.insert(record.id());
            if let Some(slot) = self.slots.get_mut(&record.id()) {
                slot.tap = Recorder::default();
                slot.dirty = false;
                slot.record = record;
            }
        }
        Ok(())
    }

    /// Removes a closed position (its record stays in the store).
    pub fn remove(&mut self, id: u64) -> Option<Slot> {
        self.changed.positions.insert(id);
        let slot = self.slots.remove(&id)?;
        if let Some(ids) = self.by_symbol.get_mut(&slot.driver.symbol) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_symbol.remove(&slot.driver.symbol);
            }
        }
        Some(slot)
    }

    fn index(&mut self, symbol: &str, id: u64) {
        match self.by_symbol.get_mut(symbol) {
            Some(ids) => {
                ids.insert(id);
            }
            None => {
                self.by_symbol
                    .insert(symbol.to_string(), BTreeSet::from([id]));
            }
        }
    }

    /// The open position at `symbol` + `idx`.
    pub fn at(&self, symbol: &str, idx: u8) -> Option<u64> {
        self.by_symbol.get(symbol)?.iter().copied().find(|id| {
            self.slots
                .get(id)
                .is_some_and(|s| s.driver.position_idx == idx)
        })
    }
}

/// The command whose outcome a crash left unknown, from a stored lifecycle: sent again (on
/// Bybit setting a position's stop is idempotent: the same stop again answers `34040`).
pub fn in_flight_command(runner: &PositionRunner<Outbox>, position: u64) -> Option<Command> {
    let oref = |seq| crate::venue::OrderRef { position, seq };
    match runner.order.phase() {
        Phase::Placing { order, .. } => Some(Command::Place {
            order: oref(order.seq),
            stop: order.stop,
        }),
        Phase::Amending { from, to, .. } => Some(Command::Amend {
            order: oref(to.seq),
            replaces: oref(from.seq),
            stop: to.stop,
        }),
        Phase::Unknown { order, prior, .. } => Some(match prior {
            Some(p) => Command::Amend {
                order: oref(order.seq),
                replaces: oref(p.seq),
                stop: order.stop,
            },
            None => Command::Place {
                order: oref(order.seq),
                stop: order.stop,
            },
        }),
        Phase::Cancelling { from, .. } => Some(Command::Cancel {
            order: oref(from.seq),
        }),
        Phase::Closing => Some(Command::CloseAtMarket { position }),
        Phase::NoStop | Phase::Resting { .. } | Phase::Closed => None,
    }
}

/// The position a venue event is about.
pub fn event_position(e: &VenueEvent) -> u64 {
    match e {
        VenueEvent::Accepted { order, .. }
        | VenueEvent::Rejected { order, .. }
        | VenueEvent::Cancelled { order, .. }
        | VenueEvent::Ambiguous { order, .. }
        | VenueEvent::Triggered { order, .. } => order.position,
        VenueEvent::PositionOpened { position, .. }
        | VenueEvent::PositionChanged { position, .. }
        | VenueEvent::PositionClosed { position, .. } => *position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpenOptions;
    use crate::venue::OrderRef;
    use rust_decimal_macros::dec;

    fn config() -> TrailingConfig {
        toml::from_str(
            r#"
activation_percent = "0"
distance_percent = "1"
"#,
        )
        .unwrap()
    }

    fn opening() -> Opening {
        Opening {
            symbol: "BTCUSDT".into(),
            position_idx: 0,
            side: Side::Long,
            entry: dec!(100),
            size: dec!(1),
            opened_at: 1_000,
            foreign_stop: None,
        }
    }

    /// The command a step queues is committed before it is handed out: the stored lifecycle
    /// shows it in flight, and a restore finds it to send again.
    #[test]
    fn a_queued_command_is_journalled_before_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.sqlite");
        let store = Store::open(&db, OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let inst = Instrument::with_price_decimals(dec!(0.1), 1);
        let id = book.open(&opening(), &inst, &config()).unwrap();
        assert_eq!(id, 1);
        let cmds = book.take_commands(id);
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        let Command::Place { order, stop } = cmds[0].0 else {
            panic!("{cmds:?}")
        };
        assert_eq!(
            (order, stop),
            (
                OrderRef {
                    position: 1,
                    seq: 1
                },
                990
            )
        );
        let stored = book.store.record(1).unwrap().unwrap();
        assert!(matches!(stored.runner.order.phase, Phase::Placing { .. }));
        book.store.check_row(&stored).unwrap();

        // The answer, then a higher price: an amend, again journalled first.
        let accepted = VenueEvent::Accepted {
            order,
            stop,
            ts: 1_000,
            venue_id: None,
        };
        assert_eq!(book.on_event(id, &accepted), None);
        book.commit(&[id]).unwrap();
        assert_eq!(
            book.on_price("BTCUSDT", dec!(110), 2_000).unwrap(),
            Some(vec![1])
        );
        let cmds = book.take_commands(id);
        assert!(
            matches!(cmds[..], [(Command::Amend { stop: 1089, .. }, 2_000)]),
            "{cmds:?}"
        );
        let stored = book.store.record(1).unwrap().unwrap();
        book.store.check_row(&stored).unwrap();
        assert!(matches!(stored.runner.order.phase, Phase::Amending { .. }));

        // An older point is dropped; a restart restores the amend in flight.
        assert_eq!(book.on_price("BTCUSDT", dec!(120), 1_500).unwrap(), None);
        drop(book);
        let store = Store::open(&db, OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let rec = book.store.record(1).unwrap().unwrap();
        book.restore(&rec).unwrap();
        assert_eq!(
            in_flight_command(&book.slots[&1].runner, 1),
            Some(Command::Amend {
                order: OrderRef {
                    position: 1,
                    seq: 2
                },
                replaces: OrderRef {
                    position: 1,
                    seq: 1
                },
                stop: 1089
            })
        );
        // The next position is numbered after the stored one.
        let mut o = opening();
        o.symbol = "ETHUSDT".into();
        assert_eq!(book.open(&o, &inst, &config()).unwrap(), 2);
    }

    /// An adopted foreign stop is never loosened: looser sends go out at it; the first send
    /// at least as tight ends the adoption, which is journalled in the driver state.
    #[test]
    fn a_foreign_stop_is_only_moved_tighter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let mut o = opening();
        o.foreign_stop = Some(dec!(99.5));
        let inst = Instrument::with_price_decimals(dec!(0.1), 1);
        let id = book.open(&o, &inst, &config()).unwrap();
        let order = OrderRef {
            position: 1,
            seq: 1,
        };
        let (cmd, _) = book.take_commands(id)[0];
        assert_eq!(cmd, Command::Place { order, stop: 990 });
        assert_eq!(
            book.never_looser(id, cmd),
            Command::Place { order, stop: 995 }
        );
        let amend = Command::Amend {
            order: OrderRef {
                position: 1,
                seq: 2,
            },
            replaces: order,
            stop: 996,
        };
        assert_eq!(book.never_looser(id, amend), amend);
        assert_eq!(book.slots[&id].driver.foreign_stop, None);
        book.commit(&[id]).unwrap();
        let stored = book.store.record(id).unwrap().unwrap();
        assert_eq!(
            stored.driver,
            r#"{"symbol":"BTCUSDT","position_idx":0,"size":"1"}"#
        );
        book.store.check_row(&stored).unwrap();
        // A short's looser stop is a higher one.
        let mut s = opening();
        s.symbol = "ETHUSDT".into();
        s.side = Side::Short;
        s.foreign_stop = Some(dec!(100.5));
        let id = book.open(&s, &inst, &config()).unwrap();
        let (cmd, _) = book.take_commands(id)[0];
        assert!(matches!(
            book.never_looser(id, cmd),
            Command::Place { stop: 1005, .. }
        ));
    }

    /// A command held back by the account's rate limit leaves as the newest stop: the
    /// coalescing is journalled (the stored row still rebuilds from its journal) and a
    /// restart sends the newest stop, never the older one.
    #[test]
    fn a_held_amend_is_released_as_the_newest_stop_and_journalled() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.sqlite");
        let store = Store::open(&db, OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let inst = Instrument::with_price_decimals(dec!(0.1), 1);
        let id = book.open(&opening(), &inst, &config()).unwrap();
        let (Command::Place { order, stop }, _) = book.take_commands(id)[0] else {
            panic!()
        };
        book.on_event(
            id,
            &VenueEvent::Accepted {
                order,
                stop,
                ts: 1_000,
                venue_id: None,
            },
        );
        book.commit(&[id]).unwrap();
        // Two ratchets while the first is held (not sent): the engine's newest is 119.9 − 1 %.
        book.on_price("BTCUSDT", dec!(110), 2_000).unwrap();
        let held = book.take_commands(id);
        assert!(matches!(held[..], [(Command::Amend { stop: 1089, .. }, _)]));
        book.on_price("BTCUSDT", dec!(120), 3_000).unwrap();
        assert!(
            book.take_commands(id).is_empty(),
            "queued behind the held one"
        );
        let released = book.release(id).unwrap();
        let Command::Amend {
            order: newest,
            replaces,
            stop,
        } = released
        else {
            panic!("{released:?}")
        };
        assert_eq!((replaces, stop), (order, 1188));
        book.commit(&[id]).unwrap();
        let stored = book.store.record(id).unwrap().unwrap();
        book.store.check_row(&stored).unwrap();
        drop(book);
        let store = Store::open(&db, OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let rec = book.store.record(id).unwrap().unwrap();
        book.restore(&rec).unwrap();
        assert_eq!(
            in_flight_command(&book.slots[&id].runner, id),
            Some(Command::Amend {
                order: newest,
                replaces: order,
                stop: 1188
            })
        );
        // Accepted: nothing left to send.
        book.on_event(
            id,
            &VenueEvent::Accepted {
                order: newest,
                stop: 1188,
                ts: 3_100,
                venue_id: None,
            },
        );
        assert!(book.take_commands(id).is_empty());
        assert_eq!(book.release(id), None);
    }

    /// A position whose opening arrives after later points of its symbol takes those points.
    #[test]
    fn a_late_opening_takes_the_points_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        book.on_price("BTCUSDT", dec!(100), 1_000).unwrap();
        book.on_price("BTCUSDT", dec!(120), 2_000).unwrap();
        let inst = Instrument::with_price_decimals(dec!(0.1), 1);
        let id = book.open(&opening(), &inst, &config()).unwrap();
        let snap = book.slots[&id].runner.engine.snapshot();
        assert_eq!((snap.last_ts, snap.extreme), (2_000, dec!(120)));
        let stored = book.store.record(id).unwrap().unwrap();
        book.store.check_row(&stored).unwrap();
    }
}
