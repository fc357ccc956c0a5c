//! The journal: every step's input and the engine events it produced, enough to rebuild a
//! position's state without the state table (event sourcing).
//!
//! A step is one [`Input`] — the position's opening, one bar or one trade tick of the market, the
//! end of the data, or a config change on restart — applied through the same [`Replay`] the
//! backtester uses. The journal stores the input (with the finer detail points a bar actually
//! consumed, so no market data is needed to replay it) followed by the events. Rebuilding feeds
//! the inputs through a fresh replay and checks that it emits the journalled events again.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::backtest::market::Series;
use crate::backtest::replay::{BarRules, Cursor, Replay, ReplaySnapshot};
use crate::engine::{EngineError, Event, EventSink, Instrument, Position, Side, TrailingConfig};
use crate::sim::exchange::VenueModel;
use crate::sim::path::{Bar, Point, Policy};

/// A finer price point a bar was replayed from: `(ts, price, gap)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailPoint(pub i64, pub Decimal, pub bool);

/// What a step applied to a position. Prices are exact decimals (stored as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// The position opens (its entry is its first price point); the replay continues at `cursor`.
    Open {
        position: Position,
        instrument: Instrument,
        config: TrailingConfig,
        model: VenueModel,
        rules: BarRules,
        cursor: Cursor,
    },
    /// Bar `index` of the market's candles.
    Bar {
        index: usize,
        ts: i64,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        delta_ms: i64,
        /// The detail points the bar was replayed from, when it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Vec<DetailPoint>>,
    },
    /// Trade tick `index` of the market.
    Tick {
        index: usize,
        ts: i64,
        price: Decimal,
    },
    /// The data ended with the position open: it closes at `price`.
    EndOfData { ts: i64, price: Decimal },
    /// The trailing config changed on a restart; the stop never loosens (see
    /// [`crate::engine::TrailingStop::restore_with`]).
    ConfigChanged { ts: i64, config: TrailingConfig },
}

impl Input {
    /// A bar of the market, in exact decimals.
    pub fn bar(index: usize, bar: &Bar, delta_ms: i64, inst: &Instrument) -> Input {
        Input::Bar {
            index,
            ts: bar.ts,
            open: inst.decimal(bar.open),
            high: inst.decimal(bar.high),
            low: inst.decimal(bar.low),
            close: inst.decimal(bar.close),
            delta_ms,
            detail: None,
        }
    }

    /// The market index this input replays, if it is one.
    pub fn index(&self) -> Option<usize> {
        match self {
            Input::Bar { index, .. } | Input::Tick { index, .. } => Some(*index),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Input::Open { .. } => "open",
            Input::Bar { .. } => "bar",
            Input::Tick { .. } => "tick",
            Input::EndOfData { .. } => "end_of_data",
            Input::ConfigChanged { .. } => "config_changed",
        }
    }
}

/// Where a bar's detail points come from when a step asks for them.
pub enum DetailSource<'a> {
    /// The market's finer series, walked with the run's policy (the paper runner); the points
    /// used are recorded into the input.
    Market {
        series: Option<&'a Series>,
        policy: Policy,
    },
    /// The points recorded in the input (a rebuild).
    Journal,
}

/// Why a step could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Journal(String),
}

fn units(inst: &Instrument, what: &str, d: Decimal) -> Result<i64, ApplyError> {
    inst.units(d).ok_or_else(|| {
        ApplyError::Journal(format!(
            "{what} {d} is not exact at {} decimals",
            inst.price_decimals
        ))
    })
}

/// Opens a position from its first step's input; returns the replay and the entry time.
pub fn apply_open<O: EventSink>(input: &Input, out: &mut O) -> Result<(Replay, i64), ApplyError> {
    match input {
        Input::Open {
            position,
            instrument,
            config,
            model,
            rules,
            cursor,
        } => Ok((
            Replay::open(position, instrument, config, *model, *rules, *cursor, out)?,
            position.opened_at,
        )),
        other => Err(ApplyError::Journal(format!(
            "the first step is {}, not open",
            other.kind()
        ))),
    }
}

/// Applies one later step's input to an open position's replay and returns the step's data
/// time: a bar's last point time (`ts + Δ - 1`), a tick's time, the end-of-data time or the
/// time a config change was applied at.
pub fn apply<O: EventSink>(
    r: &mut Replay,
    input: &mut Input,
    source: DetailSource<'_>,
    out: &mut O,
) -> Result<i64, ApplyError> {
    match input {
        Input::Open { .. } => Err(ApplyError::Journal("the position opens twice".into())),
        Input::Bar {
            index,
            ts,
            open,
            high,
            low,
            close,
            delta_ms,
            detail,
        } => {
            check_index(r, *index)?;
            let inst = *r.sim.engine.instrument();
            let bar = Bar {
                ts: *ts,
                open: units(&inst, "open", *open)?,
                high: units(&inst, "high", *high)?,
                low: units(&inst, "low", *low)?,
                close: units(&inst, "close", *close)?,
            };
            let delta = *delta_ms;
            match source {
                DetailSource::Market { series, policy } => {
                    let side = r.sim.engine.side();
                    let mut used = None;
                    r.step_bar(
                        &bar,
                        delta,
                        |b, after, buf| {
                            let Some(series) = series else { return };
                            series.points_in(
                                b.ts,
                                b.ts + delta,
                                after,
                                |fine| policy.low_first(side, fine),
                                buf,
                            );
                            used = Some(
                                buf.iter()
                                    .map(|p| DetailPoint(p.ts, inst.decimal(p.price), p.gap))
                                    .collect(),
                            );
                        },
                        out,
                    )?;
                    *detail = used;
                }
                DetailSource::Journal => {
                    let recorded = match detail {
                        Some(points) => Some(
                            points
                                .iter()
                                .map(|p| {
                                    Ok(Point {
                                        ts: p.0,
                                        price: units(&inst, "detail price", p.1)?,
                                        gap: p.2,
                                    })
                                })
                                .collect::<Result<Vec<_>, ApplyError>>()?,
                        ),
                        None => None,
                    };
                    let mut asked = false;
                    r.step_bar(
                        &bar,
                        delta,
                        |_, _, buf| {
                            asked = true;
                            buf.extend(recorded.iter().flatten());
                        },
                        out,
                    )?;
                    if asked != recorded.is_some() {
                        return Err(ApplyError::Journal(format!(
                            "bar {index}: the replay {} detail points but the journal {} them",
                            if asked { "asks for" } else { "does not use" },
                            if recorded.is_some() { "has" } else { "lacks" },
                        )));
                    }
                }
            }
            Ok(*ts + delta - 1)
        }
        Input::Tick { index, ts, price } => {
            check_index(r, *index)?;
            let p = units(r.sim.engine.instrument(), "price", *price)?;
            r.step_tick(
                Point {
                    ts: *ts,
                    price: p,
                    gap: true,
                },
                out,
            )?;
            Ok(*ts)
        }
        Input::EndOfData { ts, price } => {
            if r.is_closed() {
                return Err(ApplyError::Engine(EngineError::Closed));
            }
            let p = units(r.sim.engine.instrument(), "price", *price)?;
            r.end_of_data(p, *ts, out);
            Ok(*ts)
        }
        Input::ConfigChanged { ts, config } => {
            *r = Replay::restore_with(&r.snapshot(), config)?;
            Ok(*ts)
        }
    }
}

fn check_index(r: &Replay, index: usize) -> Result<(), ApplyError> {
    if r.cursor.next != index {
        return Err(ApplyError::Journal(format!(
            "step at market index {index}, but the position is at {}",
            r.cursor.next
        )));
    }
    Ok(())
}

/// The synthetic exchange order id of paper mode: deterministic, one per stop sent
/// (`paper-<position>-<sends>`), none before the first send.
pub fn paper_order_id(snap: &ReplaySnapshot) -> Option<String> {
    let n = snap.sim.engine.counters.stop_updates;
    (n > 0).then(|| format!("paper-{}-{n}", snap.sim.engine.position.id))
}

/// One position's stored state: everything needed to rebuild its replay exactly, and where it
/// stands in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRecord {
    pub replay: ReplaySnapshot,
    pub exchange_order_id: Option<String>,
    /// The journal's last sequence number this state reflects.
    pub last_seq: u64,
    /// Steps applied (optimistic concurrency: a write expects `version - 1` stored).
    pub version: u64,
    /// The data time of the last step (never the wall clock: outputs stay deterministic).
    pub updated_at: i64,
}

impl PositionRecord {
    pub fn id(&self) -> u64 {
        self.replay.sim.engine.position.id
    }

    pub fn side(&self) -> Side {
        self.replay.sim.engine.position.side
    }

    /// The record after a step that wrote `rows` journal rows (its input and events).
    pub fn after_step(
        prev: Option<&PositionRecord>,
        replay: &Replay,
        rows: u64,
        data_time: i64,
    ) -> PositionRecord {
        let snap = replay.snapshot();
        PositionRecord {
            exchange_order_id: paper_order_id(&snap),
            replay: snap,
            last_seq: prev.map_or(0, |p| p.last_seq) + rows,
            version: prev.map_or(0, |p| p.version) + 1,
            updated_at: data_time,
        }
    }
}

/// Whether a journal row is a step's input or an engine event.
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

/// Rebuilds a position's record from its journal alone: every input replayed through a fresh
/// [`Replay`], each step's events checked against the journalled ones. The error names the
/// step and what disagrees.
pub fn rebuild(rows: &[JournalRow]) -> Result<PositionRecord, (u64, String)> {
    let mut replay: Option<Replay> = None;
    let mut record: Option<PositionRecord> = None;
    let mut i = 0;
    let mut events = Vec::new();
    while i < rows.len() {
        let head = &rows[i];
        let step = record.as_ref().map_or(0, |r| r.version) + 1;
        let fail = |m: String| (step, m);
        if head.step != step || head.kind != RowKind::Input {
            return Err(fail(format!(
                "row {} should open step {step} with its input, found step {} {}",
                head.seq,
                head.step,
                head.kind.as_str()
            )));
        }
        let mut input: Input = serde_json::from_str(&head.payload)
            .map_err(|e| fail(format!("row {}: input: {e}", head.seq)))?;
        let mut j = i + 1;
        while j < rows.len() && rows[j].step == step {
            if rows[j].kind != RowKind::Event {
                return Err(fail(format!(
                    "row {}: a second input in one step",
                    rows[j].seq
                )));
            }
            j += 1;
        }
        let journalled = rows[i + 1..j]
            .iter()
            .map(|r| serde_json::from_str::<Event>(&r.payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("an event: {e}")))?;
        events.clear();
        let data_time = match replay.as_mut() {
            None => apply_open(&input, &mut events).map(|(r, t)| {
                replay = Some(r);
                t
            }),
            Some(r) => apply(r, &mut input, DetailSource::Journal, &mut events),
        }
        .map_err(|e| fail(e.to_string()))?;
        if events != journalled {
            return Err(fail(format!(
                "the replay emits {} events where the journal has {}: {:?} vs {:?}",
                events.len(),
                journalled.len(),
                events.iter().map(Event::kind).collect::<Vec<_>>(),
                journalled.iter().map(Event::kind).collect::<Vec<_>>()
            )));
        }
        let r = replay.as_ref().expect("opened by the first step");
        let next = PositionRecord::after_step(record.as_ref(), r, (j - i) as u64, data_time);
        if rows[j - 1].seq != next.last_seq {
            return Err(fail(format!(
                "sequence numbers skip: row {} where {} was due",
                rows[j - 1].seq,
                next.last_seq
            )));
        }
        record = Some(next);
        i = j;
    }
    record.ok_or((0, "no journal rows".into()))
}
