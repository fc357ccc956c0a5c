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
}

impl Input {
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Open { .. } => "open",
            Input::Price { .. } => "price",
            Input::Venue { .. } => "venue",
            Input::Close { .. } => "close",
            Input::ConfigChanged { .. } => "config_changed",
        }
    }

    /// The data time the input happened at.
    pub fn ts(&self) -> i64 {
        match self {
            Input::Open { position, .. } => position.opened_at,
            Input::Price { ts, .. } | Input::Close { ts, .. } | Input::ConfigChanged { ts, .. } => {
                *ts
            }
            Input::Venue { event } => event.ts(),
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

/// Records inputs and events in one sequence (a journal step's rows); rolls back with the
/// events when a simulator replays a bar another way.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub entries: Vec<Entry>,
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
