//! Property (feature `live`): the live runner's pure parts — the [`Book`] (engine, stop
//! lifecycle, write-ahead journal in SQLite) and [`reconcile`] — driven against a simulated
//! Bybit (one stop per position, setting it is idempotent) over a random price path, with a
//! crash at a random journal point (a stop's step committed before its request left; the
//! venue applied it but its answer was not committed; the answer committed) and a restart
//! from the database: the stop on the venue never loosens, one stop rests per position after
//! the restart's reconciliation and it is the stored one, and the run ends with the same
//! stops sent as an uninterrupted run (nothing lost, nothing extra but the resend of an
//! unanswered command). No process and no socket: every case runs in milliseconds.
#![cfg(feature = "live")]

use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use trailstop::engine::{Instrument, RateLimit, Side, TrailingConfig};
use trailstop::live::reconcile::{
    self, Decision, Managed, PositionKey, Snapshot, StopModel, VenuePosition, VenueStop,
};
use trailstop::live::runner::{Book, Opening, in_flight_command};
use trailstop::store::{OpenOptions, Store};
use trailstop::venue::{Command, Phase, VenueEvent};

const SYMBOL: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;

/// Where the crash comes, around the `send`-th stop request (counted from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// The step that wants it committed; the request never left.
    BeforeSend,
    /// The venue applied it; its answer not committed.
    Acked,
    /// Its answer committed.
    Committed,
}

/// The simulated exchange: one position and its one stop.
#[derive(Debug, Default)]
struct Exchange {
    stop: Option<i64>,
    /// Every stop it was set to, in order (a resend of the same stop included).
    history: Vec<i64>,
}

impl Exchange {
    /// Bybit's answer to `cmd`: a stop set is applied (the same stop again: "not modified",
    /// also an acceptance).
    fn apply(&mut self, cmd: Command, ts: i64) -> VenueEvent {
        match cmd {
            Command::Place { order, stop } | Command::Amend { order, stop, .. } => {
                self.stop = Some(stop);
                self.history.push(stop);
                VenueEvent::Accepted {
                    order,
                    stop,
                    ts,
                    venue_id: None,
                }
            }
            other => panic!("not expected of a trailing stop that never triggers: {other:?}"),
        }
    }
}

struct Crash {
    send: usize,
    point: Point,
}

/// One run: the book over `db`, the exchange, and the sends so far.
struct Driver {
    book: Book,
    sends: usize,
    crash: Option<Crash>,
}

/// The crash was reached: the book is dropped there (nothing more committed).
struct Crashed;

impl Driver {
    fn at(&mut self, send: usize, point: Point) -> Result<(), Crashed> {
        match &self.crash {
            Some(c) if c.send == send && c.point == point => Err(Crashed),
            _ => Ok(()),
        }
    }

    /// Sends what `id` queued, each answer fed back and committed, as the runner's drain.
    fn drain(&mut self, id: u64, ex: &mut Exchange) -> Result<(), Crashed> {
        loop {
            let cmds = self.book.take_commands(id);
            if cmds.is_empty() {
                return Ok(());
            }
            for (cmd, ts) in cmds {
                self.sends += 1;
                let n = self.sends;
                self.at(n, Point::BeforeSend)?;
                let cmd = self.book.never_looser(id, cmd);
                let event = ex.apply(cmd, ts);
                self.at(n, Point::Acked)?;
                self.book.on_event(id, &event);
                self.book.commit(&[id]).unwrap();
                self.at(n, Point::Committed)?;
            }
        }
    }
}

fn config() -> TrailingConfig {
    TrailingConfig {
        activation_percent: dec!(0.3),
        distance_percent: dec!(0.25),
        initial_stop_percent: Some(dec!(1.0)),
        rate_limit: RateLimit::default(),
        breakeven: None,
        time_activation: None,
        momentum: None,
    }
}

fn instrument() -> Instrument {
    Instrument::new(dec!(0.01))
}

fn opening(side: Side) -> Opening {
    Opening {
        symbol: SYMBOL.into(),
        position_idx: 0,
        side,
        entry: dec!(17000),
        size: dec!(1),
        opened_at: T0,
        foreign_stop: None,
    }
}

/// The price path's points: (ts, price), each a minute or more after the last.
fn points(steps: &[(i64, i64)]) -> Vec<(i64, Decimal)> {
    let mut ts = T0;
    let mut cents: i64 = 1_700_000;
    steps
        .iter()
        .map(|&(dt, d)| {
            ts += dt * 1000;
            cents = (cents + d).max(1_000);
            (ts, Decimal::new(cents, 2))
        })
        .collect()
}

/// Whether `price` reaches the exchange's stop (the exchange would trigger it: the path ends
/// there, as the properties concern a stop that protects an open position).
fn reaches(ex: &Exchange, side: Side, inst: &Instrument, price: Decimal) -> bool {
    let units = inst.units(price).unwrap();
    ex.stop
        .is_some_and(|s| side.sign() * units <= side.sign() * s)
}

/// Runs the path from point `from` (after an opening or a restart) until the end or the crash.
fn run_path(
    d: &mut Driver,
    ex: &mut Exchange,
    side: Side,
    path: &[(i64, Decimal)],
    from: &mut usize,
) -> Result<(), Crashed> {
    let inst = instrument();
    while *from < path.len() {
        let (ts, price) = path[*from];
        if reaches(ex, side, &inst, price) {
            *from = path.len();
            return Ok(());
        }
        *from += 1;
        if let Some(ids) = d.book.on_price(SYMBOL, price, ts).unwrap() {
            for id in ids {
                d.drain(id, ex)?;
            }
        }
    }
    Ok(())
}

/// The restart: the book from the database, reconciled against the exchange, each decision
/// carried out as the runner does for Bybit (an unanswered command sent again, a missing
/// stop placed). Returns the decisions.
fn restart(db: &std::path::Path, ex: &mut Exchange, side: Side) -> (Driver, Vec<Decision>) {
    let store = Store::open(db, OpenOptions::runner()).unwrap();
    let mut book = Book::new(store).unwrap();
    for rec in book.store.records().unwrap() {
        if rec.closed().is_none() {
            book.store.check_row(&rec).unwrap();
            book.restore(&rec).unwrap();
        }
    }
    let key = PositionKey {
        symbol: SYMBOL.into(),
        index: 0,
    };
    let inst = instrument();
    let snap = Snapshot {
        positions: vec![VenuePosition {
            key: key.clone(),
            side,
            size: dec!(1),
            entry: dec!(17000),
            ts: T0,
            market: None,
        }],
        stops: ex
            .stop
            .map(|s| VenueStop {
                key: key.clone(),
                client_id: None,
                price: inst.decimal(s),
            })
            .into_iter()
            .collect(),
    };
    let managed: Vec<Managed> = book
        .slots
        .iter()
        .map(|(&id, s)| Managed {
            position_id: id,
            key: key.clone(),
            side: s.side(),
            size: s.driver.size,
            entry: s.record.engine().position.entry_price,
            resting: s.runner.order.resting().map(|r| inst.decimal(r.stop)),
            pending: in_flight_command(&s.runner, id).and_then(|c| match c {
                Command::Place { order, .. }
                | Command::Amend { order, .. }
                | Command::Cancel { order }
                | Command::Query { order } => Some(order),
                Command::CloseAtMarket { .. } => None,
            }),
        })
        .collect();
    let decisions = reconcile::reconcile(&managed, &snap, StopModel::OnePerPosition);
    let mut d = Driver {
        book,
        sends: 0,
        crash: None,
    };
    for x in &decisions {
        let (id, cmd) = match x {
            Decision::LookUp { position_id, .. } => (
                *position_id,
                in_flight_command(&d.book.slots[position_id].runner, *position_id),
            ),
            Decision::PlaceMissing { position_id } => {
                let r = d.book.slots[position_id].runner.order.resting();
                (
                    *position_id,
                    r.map(|r| Command::Place {
                        order: trailstop::venue::OrderRef {
                            position: *position_id,
                            seq: r.seq,
                        },
                        stop: r.stop,
                    }),
                )
            }
            Decision::Resume { .. } => continue,
            other => panic!("not expected after a crash of one runner: {other:?}"),
        };
        let Some(cmd) = cmd else { continue };
        let ts = d.book.slots[&id].record.updated_at;
        let event = ex.apply(cmd, ts);
        d.book.on_event(id, &event);
        d.book.commit(&[id]).unwrap();
    }
    let ids: Vec<u64> = d.book.slots.keys().copied().collect();
    for id in ids {
        d.drain(id, ex)
            .unwrap_or_else(|_| unreachable!("no crash after the restart"));
    }
    (d, decisions)
}

/// One whole scenario: the exchange's stop history, and the decisions of the restart (`None`:
/// the crash point was never reached).
fn scenario(
    side: Side,
    path: &[(i64, Decimal)],
    crash: Option<(usize, Point)>,
) -> (Vec<i64>, Option<Vec<Decision>>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.sqlite");
    let mut ex = Exchange::default();
    let mut from = 0;
    let mut d = Driver {
        book: Book::new(Store::open(&db, OpenOptions::runner()).unwrap()).unwrap(),
        sends: 0,
        crash: crash.map(|(send, point)| Crash { send, point }),
    };
    let id = d
        .book
        .open(&opening(side), &instrument(), &config())
        .unwrap();
    let crashed = d
        .drain(id, &mut ex)
        .and_then(|()| run_path(&mut d, &mut ex, side, path, &mut from))
        .is_err();
    let mut decisions = None;
    if crashed {
        // The process dies here: nothing of the step in progress reaches the database.
        drop(d);
        let (mut again, made) = restart(&db, &mut ex, side);
        decisions = Some(made);
        // After the reconciliation: one stop rests, the stored one, nothing in flight.
        let slot = &again.book.slots[&id];
        assert!(
            matches!(slot.runner.order.phase(), Phase::Resting { .. }),
            "{:?}",
            slot.runner.order.phase()
        );
        assert_eq!(slot.runner.order.resting().map(|r| r.stop), ex.stop);
        let stored = again.book.store.record(id).unwrap().unwrap();
        let Phase::Resting { order } = stored.runner.order.phase else {
            panic!("stored: {:?}", stored.runner.order.phase);
        };
        assert_eq!(Some(order.stop), ex.stop);
        run_path(&mut again, &mut ex, side, path, &mut from)
            .unwrap_or_else(|_| unreachable!("no crash after the restart"));
    }
    (ex.history, decisions)
}

/// Consecutive repeats dropped (a resend of the same stop).
fn distinct(h: &[i64]) -> Vec<i64> {
    let mut v = h.to_vec();
    v.dedup();
    v
}

fn never_looser(h: &[i64], side: Side) -> bool {
    h.windows(2)
        .all(|w| side.sign() * w[1] >= side.sign() * w[0])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_at_any_journal_point_never_loosens_and_resumes_to_the_one_stored_stop(
        long in any::<bool>(),
        steps in prop::collection::vec((60i64..=180, -6_000i64..=6_000), 1..30),
        send in 1usize..8,
        point in prop::sample::select(vec![Point::BeforeSend, Point::Acked, Point::Committed]),
    ) {
        let side = if long { Side::Long } else { Side::Short };
        let path = points(&steps);
        let (whole, _) = scenario(side, &path, None);
        prop_assert!(never_looser(&whole, side), "{whole:?}");
        let (crashed, decisions) = scenario(side, &path, Some((send, point)));
        // Every request of the uninterrupted run is a crash point reached.
        prop_assert_eq!(decisions.is_some(), send <= whole.len());
        prop_assert!(never_looser(&crashed, side), "{crashed:?} after {decisions:?}");
        prop_assert_eq!(distinct(&crashed), distinct(&whole), "{:?}", decisions);
        // Only an unanswered command is sent twice, and only once more.
        prop_assert!(crashed.len() <= whole.len() + 1, "{crashed:?} vs {whole:?}");
    }
}
