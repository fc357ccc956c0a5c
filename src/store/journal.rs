//! The journal: every step's inputs and the engine events they produced, enough to rebuild a
//! position's runner without the state table or the driver (event sourcing).
//!
//! A step is what one commit applied to one position: the runner's [`Input`]s (an opening,
//! price points, venue events, a close, a config change), each followed by the engine events it
//! produced. These are the inputs a live runner has too; nothing here knows bars or markets.
//! Rebuilding feeds the inputs to a runner on a venue that answers nothing at once
//! ([`Silent`]), so each journalled venue answer arrives as the input it was, and checks that
//! every input emits the journalled events again.

use serde::{Deserialize, Serialize};

use crate::engine::{EngineSnapshot, Event, Side};
use crate::runner::{Close, Entry, Input, PositionRunner, RunnerSnapshot, Silent};

/// One position's stored state: its runner, its driver's own state, and where it stands in
/// the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRecord {
    pub runner: RunnerSnapshot,
    /// The driver's state for this position, opaque to the store (JSON; for the simulator its
    /// venue's orders, the market cursor and the bar rules). Not in the journal.
    pub driver: String,
    /// The journal's last sequence number this state reflects.
    pub last_seq: u64,
    /// Steps applied (optimistic concurrency: a write expects `version - 1` stored).
    pub version: u64,
    /// The data time of the step's last input (never the wall clock: outputs stay
    /// deterministic).
    pub updated_at: i64,
}

impl PositionRecord {
    pub fn engine(&self) -> &EngineSnapshot {
        &self.runner.engine
    }

    pub fn id(&self) -> u64 {
        self.runner.engine.position.id
    }

    pub fn side(&self) -> Side {
        self.runner.engine.position.side
    }

    pub fn closed(&self) -> Option<Close> {
        self.runner.closed
    }

    /// The client id of the newest stop order sent (`ts-<position>-<sends>`: an order is
    /// numbered by the engine's send count), none before the first send.
    pub fn exchange_order_id(&self) -> Option<String> {
        let seq = self.runner.engine.counters.stop_updates;
        (seq > 0).then(|| {
            crate::venue::OrderRef {
                position: self.id(),
                seq,
            }
            .client_id()
        })
    }

    /// The record after a step of `entries` (its inputs and events), with the driver's state.
    pub fn after_step(
        prev: Option<&PositionRecord>,
        runner: RunnerSnapshot,
        driver: String,
        entries: &[Entry],
    ) -> PositionRecord {
        let (version, last_seq, updated_at) = step_counts(prev, entries);
        PositionRecord {
            runner,
            driver,
            last_seq,
            version,
            updated_at,
        }
    }
}

/// Version, last sequence number and data time after a step of `entries` (a step without
/// entries changes none of them: only the driver's state moved).
fn step_counts(prev: Option<&PositionRecord>, entries: &[Entry]) -> (u64, u64, i64) {
    let (v, s, t) = prev.map_or((0, 0, i64::MIN), |p| (p.version, p.last_seq, p.updated_at));
    if entries.is_empty() {
        return (v, s, t);
    }
    let ts = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Input(i) => Some(i.ts()),
            Entry::Event(_) => None,
        })
        .max()
        .unwrap_or(t);
    (v + 1, s + entries.len() as u64, ts)
}

/// Whether a journal row is an input or an engine event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    Input,
    Event,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Input => "input",
            RowKind::Event => "event",
        }
    }
}

/// One row of `trailing_stop_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub position_id: u64,
    pub seq: u64,
    pub step: u64,
    pub kind: RowKind,
    /// JSON: an [`Input`] or an [`Event`].
    pub payload: String,
}

impl JournalRow {
    /// The row's entry, parsed.
    pub fn entry(&self) -> Result<Entry, RebuildProblem> {
        let bad = |e: serde_json::Error| RebuildProblem::BadRow {
            seq: self.seq,
            kind: self.kind.as_str(),
            detail: e.to_string(),
        };
        match self.kind {
            RowKind::Input => serde_json::from_str(&self.payload)
                .map(Entry::Input)
                .map_err(bad),
            RowKind::Event => serde_json::from_str(&self.payload)
                .map(Entry::Event)
                .map_err(bad),
        }
    }
}

/// What a rebuild gives: the runner and the journal position of the last step (the driver's
/// state is not in the journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub runner: RunnerSnapshot,
    pub last_seq: u64,
    pub version: u64,
    pub updated_at: i64,
}

impl Rebuilt {
    /// The record with this runner and journal position and `driver`'s state.
    pub fn with_driver(self, driver: String) -> PositionRecord {
        PositionRecord {
            runner: self.runner,
            driver,
            last_seq: self.last_seq,
            version: self.version,
            updated_at: self.updated_at,
        }
    }
}

/// Why a journal does not rebuild, at which step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step}: {problem}")]
pub struct RebuildError {
    pub step: u64,
    pub problem: RebuildProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildProblem {
    #[error("no journal rows")]
    Empty,
    #[error("row {seq} should open step {step} with an input, found step {found} {kind}")]
    StepStart {
        seq: u64,
        step: u64,
        found: u64,
        kind: &'static str,
    },
    #[error("row {seq}: {kind}: {detail}")]
    BadRow {
        seq: u64,
        kind: &'static str,
        detail: String,
    },
    #[error("the first input is {kind}, not open")]
    FirstNotOpen { kind: &'static str },
    #[error("the position opens twice")]
    OpensTwice,
    #[error("{kind} input: {source}")]
    Engine {
        kind: &'static str,
        source: crate::engine::EngineError,
    },
    #[error("the {kind} input emits {emitted:?} where the journal has {journalled:?}")]
    Events {
        kind: &'static str,
        emitted: Vec<&'static str>,
        journalled: Vec<&'static str>,
    },
    #[error("sequence numbers skip: row {row} where {due} was due")]
    SeqSkip { row: u64, due: u64 },
}

/// Rebuilds a position's runner from its journal alone: every input fed to a fresh runner,
/// the events each emits checked against the journalled ones. The error names the step and
/// what disagrees.
pub fn rebuild(rows: &[JournalRow]) -> Result<Rebuilt, RebuildError> {
    let mut runner: Option<PositionRunner<Silent>> = None;
    let mut prev: Option<PositionRecord> = None;
    let mut i = 0;
    let mut emitted: Vec<Event> = Vec::new();
    let mut step_entries: Vec<Entry> = Vec::new();
    while i < rows.len() {
        let step = prev.as_ref().map_or(0, |r| r.version) + 1;
        let fail = |problem| RebuildError { step, problem };
        let head = &rows[i];
        if head.step != step || head.kind != RowKind::Input {
            return Err(fail(RebuildProblem::StepStart {
                seq: head.seq,
                step,
                found: head.step,
                kind: head.kind.as_str(),
            }));
        }
        let mut j = i;
        step_entries.clear();
        while j < rows.len() && rows[j].step == step {
            step_entries.push(rows[j].entry().map_err(fail)?);
            j += 1;
        }
        // Each input, then the events it must emit (up to the next input).
        let mut k = 0;
        while k < step_entries.len() {
            let Entry::Input(input) = &step_entries[k] else {
                unreachable!("k always stands at an input")
            };
            let mut end = k + 1;
            while end < step_entries.len() && matches!(step_entries[end], Entry::Event(_)) {
                end += 1;
            }
            emitted.clear();
            match runner.as_mut() {
                None => match PositionRunner::open_from(input, &mut emitted) {
                    Some(r) => {
                        runner = Some(r.map_err(|source| {
                            fail(RebuildProblem::Engine {
                                kind: "open",
                                source,
                            })
                        })?)
                    }
                    None => {
                        return Err(fail(RebuildProblem::FirstNotOpen { kind: input.kind() }));
                    }
                },
                Some(r) => match input {
                    Input::Open { .. } => return Err(fail(RebuildProblem::OpensTwice)),
                    _ => r.apply(input, &mut emitted).map_err(|source| {
                        fail(RebuildProblem::Engine {
                            kind: input.kind(),
                            source,
                        })
                    })?,
                },
            }
            let journalled = step_entries[k + 1..end].iter().map(|e| match e {
                Entry::Event(ev) => ev,
                Entry::Input(_) => unreachable!("events only"),
            });
            if !emitted.iter().eq(journalled) {
                return Err(fail(RebuildProblem::Events {
                    kind: input.kind(),
                    emitted: emitted.iter().map(Event::kind).collect(),
                    journalled: step_entries[k + 1..end]
                        .iter()
                        .map(|e| match e {
                            Entry::Event(ev) => ev.kind(),
                            Entry::Input(_) => "input",
                        })
                        .collect(),
                }));
            }
            k = end;
        }
        let r = runner.as_ref().expect("opened by the first step");
        let next =
            PositionRecord::after_step(prev.as_ref(), r.snapshot(), String::new(), &step_entries);
        if rows[j - 1].seq != next.last_seq {
            return Err(fail(RebuildProblem::SeqSkip {
                row: rows[j - 1].seq,
                due: next.last_seq,
            }));
        }
        prev = Some(next);
        i = j;
    }
    let p = prev.ok_or(RebuildError {
        step: 0,
        problem: RebuildProblem::Empty,
    })?;
    Ok(Rebuilt {
        runner: p.runner,
        last_seq: p.last_seq,
        version: p.version,
        updated_at: p.updated_at,
    })
}
