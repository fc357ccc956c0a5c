//! What a runner takes in, as data: the inputs a journal records so that a position can be
//! rebuilt without its driver (event sourcing, `LIVE.md` §5).
//!
//! A [`PositionRunner`](super::PositionRunner) reports each input through its event sink when
//! the sink is a [`Tap`] that records ([`Tap::RECORDING`]); for the backtest's sinks the
//! constant is false and every report compiles away. The inputs are those a live runner has
//! too: the opening, a price point, a venue event (including a venue's immediate answer to a
//! command), a close the driver decides (the end of the data), and a changed config. Nothing
//! here knows bars, market indices or the simulator.

use serde::{Deserialize, Serialize};

use crate::engine::{Event, EventSink, ExitReason, Instrument, NoEvents, Position, TrailingConfig};
use crate::venue::{Command, Venue, VenueEvent};

/// One input of a runner. Prices are integer units of the instrument (real sign).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// The position opens on a venue that amends atomically or not; its entry is its first
    /// price point.
    /// (Boxed: an opening is rare, price points are many, and an entry is as big as its
    /// largest kind.)
    Open {
        position: Box<Position>,
        instrument: Instrument,
        config: Box<TrailingConfig>,
        atomic_amend: bool,
    },
    /// A price point for the engine.
    Price { ts: i64, price: i64 },
    /// Price points in a row that emitted no event, `(ts, price)` each (a journal's compact
    /// form of as many [`Input::Price`]s: one row instead of one per point).
    Prices { points: Vec<(i64, i64)> },
    /// What the venue reported (an answer to a command, a fill, a position change).
    Venue { event: VenueEvent },
    /// The driver closed the position at `fill` without the venue (the end of the data).
    Close {
        ts: i64,
        fill: i64,
        reason: ExitReason,
    },
    /// The trailing config changed (a restart with another config); the stop never loosens.
    ConfigChanged {
        ts: i64,
        config: Box<TrailingConfig>,
    },
    /// The driver sends the stop command in flight now, after an account rate limit held it
    /// back: a newer stop queued behind it takes its place (`StopOrder::coalesce`).
    Coalesce { ts: i64 },
}

impl Input {
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Open { .. } => "open",
            Input::Price { .. } => "price",
            Input::Prices { .. } => "prices",
            Input::Venue { .. } => "venue",
            Input::Close { .. } => "close",
            Input::ConfigChanged { .. } => "config_changed",
            Input::Coalesce { .. } => "coalesce",
        }
    }

    /// The data time the input happened at.
    pub fn ts(&self) -> i64 {
        match self {
            Input::Open { position, .. } => position.opened_at,
            Input::Price { ts, .. }
            | Input::Close { ts, .. }
            | Input::ConfigChanged { ts, .. }
            | Input::Coalesce { ts } => *ts,
            Input::Venue { event } => event.ts(),
            Input::Prices { points } => points.last().map_or(i64::MIN, |p| p.0),
        }
    }
}

/// An event sink that may also record the runner's inputs.
pub trait Tap: EventSink {
    /// Whether inputs are recorded: when true, drivers must feed every price point one by one
    /// (no quiet-run shortcut, which changes the engine without price inputs).
    const RECORDING: bool = false;
    /// Records an input (called only when [`Tap::RECORDING`]).
    fn input(&mut self, _input: Input) {}
}

impl Tap for Vec<Event> {}
impl Tap for NoEvents {}

/// A runner's inputs and events, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    Input(Input),
    Event(Event),
}

/// The journal form of a step's entries: price points in a row that emitted no event become
/// one [`Input::Prices`] (most points of a replay emit nothing, so a step is a row or two instead
/// of one per point). Replaying it gives the same engine calls in the same order.
pub fn compact(entries: &[Entry]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut i = 0;
    while i < entries.len() {
        let mut j = i;
        while let Some(Entry::Input(Input::Price { .. })) = entries.get(j) {
            // A point followed by its events stays on its own (the events belong to it).
            if matches!(entries.get(j + 1), Some(Entry::Event(_))) {
                break;
            }
            j += 1;
        }
        if j - i >= 2 {
            let points = entries[i..j]
                .iter()
                .map(|e| match e {
                    Entry::Input(Input::Price { ts, price }) => (*ts, *price),
                    _ => unreachable!("price inputs only"),
                })
                .collect();
            out.push(Entry::Input(Input::Prices { points }));
            i = j;
        } else {
            out.push(entries[i].clone());
            i += 1;
        }
    }
    out
}

/// Records inputs and events in one sequence (a journal step's rows); rolls back with the
/// events when a simulator replays a bar another way.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub entries: Vec<Entry>,
}

impl Recorder {
    /// The recorded entries in their journal form ([`compact`]).
    pub fn journal(&self) -> Vec<Entry> {
        compact(&self.entries)
    }
}

impl EventSink for Recorder {
    #[inline]
    fn push(&mut self, event: Event) {
        self.entries.push(Entry::Event(event));
    }
    fn mark(&self) -> usize {
        self.entries.len()
    }
    fn rollback(&mut self, mark: usize) {
        self.entries.truncate(mark);
    }
}

impl Tap for Recorder {
    const RECORDING: bool = true;
    fn input(&mut self, input: Input) {
        self.entries.push(Entry::Input(input));
    }
}

/// A venue that answers nothing at once, as a live one: rebuilding a position from its
/// journal feeds the journalled answers back as [`Input::Venue`] in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silent {
    pub atomic: bool,
}

impl Venue for Silent {
    fn atomic_amend(&self) -> bool {
        self.atomic
    }
    fn execute(&mut self, _command: Command, _ts: i64) -> Option<VenueEvent> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(ts: i64) -> Entry {
        Entry::Input(Input::Price { ts, price: ts * 10 })
    }
    fn event(ts: i64) -> Entry {
        Entry::Event(Event::StopConfirmed {
            ts,
            stop: rust_decimal::Decimal::ONE,
        })
    }

    /// Points in a row without events become one row; a point with events keeps them beside it.
    #[test]
    fn compact_joins_quiet_points_only() {
        let entries = [price(1), price(2), price(3), event(3), price(4), price(5)];
        assert_eq!(
            compact(&entries),
            vec![
                Entry::Input(Input::Prices {
                    points: vec![(1, 10), (2, 20)]
                }),
                price(3),
                event(3),
                Entry::Input(Input::Prices {
                    points: vec![(4, 40), (5, 50)]
                }),
            ]
        );
        assert_eq!(compact(&[price(1), event(1)]), vec![price(1), event(1)]);
        assert_eq!(compact(&[]), Vec::<Entry>::new());
    }
}
