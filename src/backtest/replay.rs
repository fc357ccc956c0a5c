//! One position's replay, one bar or one tick at a time.
//!
//! This is the single per-position loop body: `run_positions` drives it over a whole series at
//! once, the paper runner (`store::paper`) one market step at a time with a database commit in
//! between. Everything a replay carries from one step to the next — the simulated position, the
//! bar cursor, the ambiguity count — is in [`Replay`] and round-trips through
//! [`ReplaySnapshot`], so a replay saved after any step and restored continues exactly as if it
//! had never stopped.

use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, Instrument, NoEvents, Position, TrailingConfig, TrailingStop};
use crate::runner::{RunnerSnapshot, Tap};
use crate::scenario::DetailBars;
use crate::sim::exchange::{Close, SimPosition, SimSnapshot, SimVenue, VenueModel};
use crate::sim::path::{Bar, Point, Policy, bar_points, bar_span};
use crate::venue::{OrderRef, Phase};

use super::record::PositionRun;
use super::skip::BarIndex;

/// How to run the positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub policy: Policy,
    /// Keep each position's events.
    pub events: bool,
    /// Count the bars where the optimistic and the pessimistic order end differently.
    pub ambiguity: bool,
    /// Which bars to replay from the market's finer detail data, when it has some.
    pub detail: Option<DetailBars>,
}

/// Which of a bar's points a position still sees: those strictly after `ts`, without the first
/// one when `skip_first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct After {
    pub ts: i64,
    pub skip_first: bool,
}

impl After {
    /// Every point of the bar.
    pub const ALL: After = After {
        ts: i64::MIN,
        skip_first: false,
    };
}

#[inline(always)]
pub(crate) fn run_bar<O: Tap>(
    sim: &mut SimPosition,
    bar: &Bar,
    delta_ms: i64,
    low_first: bool,
    after: After,
    out: &mut O,
) -> Result<Option<Close>, EngineError> {
    let points = bar_points(bar, delta_ms, low_first);
    let first = usize::from(after.skip_first);
    for &pt in &points[first..] {
        if pt.ts > after.ts
            && let Some(c) = sim.on_point(pt, out)?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Where the replay stands: the index of the next bar (or tick) of the market series, and which
/// of that bar's points it still sees (only the entry bar is partial).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub next: usize,
    pub after: After,
}

impl Cursor {
    fn advance(&mut self) {
        self.next += 1;
        self.after = After::ALL;
    }
}

/// How each bar is walked: the intrabar policy, whether the ambiguity count is kept, and which
/// bars finer detail data replays (`None` when there is no detail data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarRules {
    pub policy: Policy,
    pub ambiguity: bool,
    pub detail: Option<DetailBars>,
}

impl BarRules {
    /// The rules of a run: detail is only used when the market has some.
    pub fn of(opts: RunOptions, has_detail: bool) -> BarRules {
        BarRules {
            policy: opts.policy,
            ambiguity: opts.ambiguity,
            detail: opts.detail.filter(|_| has_detail),
        }
    }
}

/// One position being replayed.
#[derive(Debug, Clone)]
pub struct Replay {
    pub sim: SimPosition,
    pub rules: BarRules,
    pub cursor: Cursor,
    pub ambiguous_bars: u32,
    /// Reused buffer for a bar's detail points (not state).
    scratch: Vec<Point>,
}

/// A serialisable copy of a [`Replay`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySnapshot {
    pub sim: SimSnapshot,
    pub rules: BarRules,
    pub cursor: Cursor,
    pub ambiguous_bars: u32,
}

/// The driver's part of a [`Replay`]: everything but the runner (the simulated venue's
/// orders, the bar rules, the cursor, the ambiguity count). The store keeps it as an opaque
/// blob beside the runner it journals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayDriver {
    pub venue: SimVenue,
    pub rules: BarRules,
    pub cursor: Cursor,
    pub ambiguous_bars: u32,
}

/// Why a replay cannot be put back together from a runner and a driver state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the simulated venue holds {venue} but the stop order's lifecycle is {phase}; \
         the state row was changed"
    )]
    Venue { venue: String, phase: String },
}

impl Replay {
    /// The driver's part.
    pub fn driver(&self) -> ReplayDriver {
        ReplayDriver {
            venue: self.sim.venue.clone(),
            rules: self.rules,
            cursor: self.cursor,
            ambiguous_bars: self.ambiguous_bars,
        }
    }

    /// A replay from a runner and its driver's part, checked against each other: the venue's
    /// resting or in-flight order must be the one the lifecycle holds.
    pub fn from_parts(
        runner: &RunnerSnapshot,
        driver: ReplayDriver,
    ) -> Result<Replay, RestoreError> {
        let order = |seq| OrderRef {
            position: runner.engine.position.id,
            seq,
        };
        let v = &driver.venue;
        let agrees = match runner.order.phase {
            Phase::NoStop | Phase::Closed => v.resting.is_none() && v.pending.is_none(),
            Phase::Resting { order: r } => {
                v.resting == Some((order(r.seq), r.stop)) && v.pending.is_none()
            }
            Phase::Placing {
                order: r,
                next: None,
            } => {
                v.resting.is_none()
                    && v.pending
                        .is_some_and(|p| p.order == order(r.seq) && p.stop == r.stop)
            }
            // The simulated venue answers at once: nothing else is ever stored.
            _ => false,
        };
        if !agrees {
            return Err(RestoreError::Venue {
                venue: format!("resting {:?}, in flight {:?}", v.resting, v.pending),
                phase: format!("{:?}", runner.order.phase),
            });
        }
        let sim = SimPosition::restore(runner, driver.venue)?;
        Ok(Replay {
            sim,
            rules: driver.rules,
            cursor: driver.cursor,
            ambiguous_bars: driver.ambiguous_bars,
            scratch: Vec::new(),
        })
    }

    /// Opens the position (its entry is its first price point) with the replay at `cursor`.
    pub fn open<O: Tap>(
        position: &Position,
        instrument: &Instrument,
        config: &TrailingConfig,
        model: VenueModel,
        rules: BarRules,
        cursor: Cursor,
        out: &mut O,
    ) -> Result<Replay, EngineError> {
        let sim = SimPosition::open_sim(position, instrument, config, model, out)?;
        Ok(Replay {
            sim,
            rules,
            cursor,
            ambiguous_bars: 0,
            scratch: Vec::new(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.sim.closed().is_some()
    }

    /// Replays the bar at the cursor under the run's policy, counts it when the optimistic and
    /// the pessimistic order end differently, and replays it from detail data instead where the
    /// rules say so. `detail(bar, after, buf)` fills `buf` with the bar's finer points; it is
    /// called only when those are used (at most once per bar). `delta_ms` is the bar's own span
    /// ([`crate::sim::path::bar_span`]). A position that closes inside the bar stays closed; the
    /// cursor moves on either way.
    #[inline]
    pub fn step_bar<O: Tap, D: FnMut(&Bar, After, &mut Vec<Point>)>(
        &mut self,
        candle: &Bar,
        delta_ms: i64,
        detail: D,
        out: &mut O,
    ) -> Result<(), EngineError> {
        self.step_bar_as(candle, delta_ms, detail, true, out)
    }

    /// Passes the run of whole bars from the cursor in which nothing can happen to this
    /// position, at once (see [`super::skip`]); the state afterwards is exactly that of
    /// stepping them one by one. `delta_ms` is the series' interval (each bar's span is taken
    /// from it and the next bar). Returns whether it looked: then the bar now at the cursor,
    /// if any, is known not to be quiet.
    #[inline]
    pub fn skip_quiet<O: Tap>(
        &mut self,
        bars: &[Bar],
        index: &BarIndex,
        delta_ms: i64,
        _out: &O,
    ) -> bool {
        // A recording tap sees every price point (the shortcut changes the engine without).
        if O::RECORDING
            || self.cursor.after != After::ALL
            || matches!(self.rules.detail, Some(DetailBars::All))
        {
            return false;
        }
        let from = self.cursor.next;
        let (Some(env), Some(first)) = (self.sim.quiet_envelope(), bars.get(from)) else {
            return true;
        };
        if first.ts < env.after_ts || (env.held && O::ENABLED) {
            return false;
        }
        let end = if env.until_ts == i64::MAX {
            bars.len()
        } else {
            // Bars whose last point (`ts + Δ - 1`) is before `until_ts`, found from the
            // interval: a bar shorter than it (the next one opens sooner) ends sooner, so this
            // may stop a bar early, never late.
            super::market::first_bar_at_or_after(
                bars,
                delta_ms,
                env.until_ts.saturating_sub(delta_ms - 1),
            )
        };
        let run = index.quiet_run(bars, from, end, env.high_max, env.low_min);
        if run.end == from {
            return true;
        }
        let last_bar = &bars[run.end - 1];
        let last = Point {
            ts: last_bar.ts + bar_span(bars, run.end - 1, delta_ms) - 1,
            price: last_bar.close,
            gap: false,
        };
        // Momentum needs the run's points inside the window before its last one, in the
        // policy's order (earlier ones would drop out of the window anyway, so the interval's
        // bound, which may take a bar or so more, is enough).
        let tail_from = match self.sim.engine.momentum_window_ms() {
            Some(w) => {
                let since = last.ts - w;
                super::market::first_bar_at_or_after(bars, delta_ms, since - delta_ms + 1)
                    .clamp(from, run.end)
            }
            None => run.end,
        };
        let (policy, side) = (self.rules.policy, self.sim.engine.side());
        let tail = (tail_from..run.end)
            .map(|i| (&bars[i], bar_span(bars, i, delta_ms)))
            .flat_map(|(b, span)| bar_points(b, span, policy.low_first(side, b)))
            .map(|p| (p.ts, p.price));
        self.sim
            .absorb_run(run.high, run.low, last, tail, 4 * (run.end - from) as u32);
        self.cursor.next = run.end;
        true
    }

    /// [`Replay::step_bar`]; `try_quiet` false skips the quiet-bar check (already done by
    /// [`Replay::skip_quiet`]).
    #[inline]
    pub(super) fn step_bar_as<O: Tap, D: FnMut(&Bar, After, &mut Vec<Point>)>(
        &mut self,
        candle: &Bar,
        delta_ms: i64,
        mut detail: D,
        try_quiet: bool,
        out: &mut O,
    ) -> Result<(), EngineError> {
        let sim = &mut self.sim;
        if sim.closed().is_some() {
            return Err(EngineError::Closed);
        }
        let after = self.cursor.after;
        self.cursor.advance();
        let rules = self.rules;
        let low_first = rules.policy.low_first(sim.engine.side(), candle);
        let mut resolve = matches!(rules.detail, Some(DetailBars::All));
        // Fast path: a whole bar in which nothing can happen, whatever its order, is taken at
        // once (same state as point by point; not ambiguous). Not with `detail_bars = all`,
        // whose points come from the finer data.
        if try_quiet
            && !O::RECORDING
            && !resolve
            && after == After::ALL
            && sim.absorb_quiet(&bar_points(candle, delta_ms, low_first), O::ENABLED)
        {
            return Ok(());
        }
        if (rules.ambiguity || rules.detail.is_some())
            && candle.high != candle.low
            && !sim.is_quiet_within(candle.low, candle.high)
        {
            let mark = out.mark();
            let mut alt = sim.clone();
            // With detail the pre-bar state is kept to replay the bar from it.
            let before = rules.detail.map(|_| sim.clone());
            run_bar(&mut alt, candle, delta_ms, !low_first, after, &mut NoEvents)?;
            run_bar(sim, candle, delta_ms, low_first, after, out)?;
            if alt.outcome() != sim.outcome() {
                self.ambiguous_bars += 1;
                resolve = rules.detail.is_some();
            }
            if let (true, Some(before)) = (resolve, before) {
                out.rollback(mark);
                *sim = before;
            }
        } else if !resolve {
            run_bar(sim, candle, delta_ms, low_first, after, out)?;
        }
        if resolve && rules.detail.is_some() {
            // Replay the bar from the finer data instead of guessing.
            let mut points = std::mem::take(&mut self.scratch);
            points.clear();
            detail(candle, after, &mut points);
            let result = (|| -> Result<(), EngineError> {
                if points.is_empty() {
                    run_bar(sim, candle, delta_ms, low_first, after, out)?;
                }
                for &pt in &points {
                    if sim.on_point(pt, out)?.is_some() {
                        break;
                    }
                }
                Ok(())
            })();
            self.scratch = points;
            result?;
        }
        Ok(())
    }

    /// Replays the trade tick at the cursor (a tick is a price point of its own).
    #[inline]
    pub fn step_tick<O: Tap>(&mut self, pt: Point, out: &mut O) -> Result<(), EngineError> {
        if self.is_closed() {
            return Err(EngineError::Closed);
        }
        self.cursor.advance();
        self.sim.on_point(pt, out).map(|_| ())
    }

    /// Closes a position still open when the data ends.
    pub fn end_of_data<O: Tap>(&mut self, price: i64, ts: i64, out: &mut O) {
        self.sim.end_of_data(price, ts, out);
    }

    /// The position's numbers for `trades.csv`, once it has closed.
    pub fn run(&self) -> Option<PositionRun> {
        let close = self.sim.closed()?;
        let engine = &self.sim.engine;
        let position = engine.position();
        Some(PositionRun {
            id: position.id,
            side: position.side,
            opened_at: position.opened_at,
            entry: engine.instrument().units(position.entry_price)?,
            close,
            counters: engine.counters(),
            unprotected_ms: self.sim.unprotected_ms(),
            favourable_units: self.sim.favourable_units(),
            adverse_units: self.sim.adverse_units(),
            ambiguous_bars: self.ambiguous_bars,
            events: Vec::new(),
        })
    }

    pub fn snapshot(&self) -> ReplaySnapshot {
        ReplaySnapshot {
            sim: self.sim.sim_snapshot(),
            rules: self.rules,
            cursor: self.cursor,
            ambiguous_bars: self.ambiguous_bars,
        }
    }

    /// Rebuilds a replay from [`Replay::snapshot`].
    pub fn restore(snap: &ReplaySnapshot) -> Result<Replay, EngineError> {
        Self::restore_with(snap, &snap.sim.engine.config)
    }

    /// Rebuilds a replay under a changed trailing config (the rule of
    /// [`TrailingStop::restore_with`]: the stop never loosens, the new settings apply to future
    /// moves).
    pub fn restore_with(
        snap: &ReplaySnapshot,
        config: &TrailingConfig,
    ) -> Result<Replay, EngineError> {
        let mut sim = SimPosition::restore_sim(&snap.sim)?;
        if *config != snap.sim.engine.config {
            sim.engine = TrailingStop::restore_with(&snap.sim.engine, config)?;
        }
        Ok(Replay {
            sim,
            rules: snap.rules,
            cursor: snap.cursor,
            ambiguous_bars: snap.ambiguous_bars,
            scratch: Vec::new(),
        })
    }
}
