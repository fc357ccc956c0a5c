//! The per-position state machine: `Inactive → Active → Triggered` (DESIGN §2.1 steps 2–3).
//!
//! Internally every price is an `i64` in instrument units multiplied by the side's sign
//! ("mirrored"), so that for both sides a higher mirrored price is better, stops ratchet up and
//! round down. The exact thresholds (activation, profit triggers) are precomputed at open, so a
//! price point costs a few integer compares; the candidate stop is only recomputed when the
//! extreme or the momentum state changes.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::config::{ConfigError, TrailingConfig};
use super::event::{ActivationReason, Event, ExitReason, HoldReason, SendReason, StopOrigin};
use super::fixed::{MAX_PRICE_DECIMALS, Ratio};
use super::window::MinWindow;
use super::{Instrument, Position, Side};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Inactive,
    Active,
    Triggered,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    #[error("{what} {value} is not exact at {decimals} decimals or is out of range")]
    NotRepresentable {
        what: &'static str,
        value: Decimal,
        decimals: u32,
    },
    #[error("{what} must be positive, got {value}")]
    NotPositive { what: &'static str, value: Decimal },
    #[error("price point at {ts} is before the previous one at {last}")]
    OutOfOrder { ts: i64, last: i64 },
    #[error("the position is already closed")]
    Closed,
    /// A stop that rounding to the tick takes to zero (long) or to a single tick (short: the
    /// price is below one tick): such a stop never protects anything.
    #[error("{0}")]
    CoarseTick(Box<CoarseTick>),
}

/// The details of [`EngineError::CoarseTick`] (boxed: the error stays small on the hot path).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "position {id} ({side}, entry {entry}): the {origin} stop {stop} ({distance} % from {reference}) rounds {direction} to {rounded} at tick_size {tick}: the tick is too coarse for the price; use the instrument's tick"
)]
pub struct CoarseTick {
    pub id: u64,
    pub side: &'static str,
    pub entry: Decimal,
    pub origin: &'static str,
    pub stop: Decimal,
    pub distance: Decimal,
    pub reference: Decimal,
    pub direction: &'static str,
    pub rounded: Decimal,
    pub tick: Decimal,
}

/// What the engine asks its exchange side to do after a price point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Place (or move) the resting stop to `price` (instrument units, real sign).
    PlaceStop { price: i64, origin: StopOrigin },
    /// Close at market now: the stop due to be sent is at or through the market.
    ExitNow,
}

/// Where events go. `NoEvents` lets a sweep skip building them at all.
pub trait EventSink {
    const ENABLED: bool = true;
    fn push(&mut self, event: Event);
    /// How many events are held (a mark to roll back to).
    fn mark(&self) -> usize {
        0
    }
    /// Drops the events after `mark` (a simulator replaying a bar another way).
    fn rollback(&mut self, _mark: usize) {}
}

impl EventSink for Vec<Event> {
    #[inline]
    fn push(&mut self, event: Event) {
        Vec::push(self, event)
    }
    fn mark(&self) -> usize {
        self.len()
    }
    fn rollback(&mut self, mark: usize) {
        self.truncate(mark)
    }
}

/// Discards events (the counters are still kept).
pub struct NoEvents;

impl EventSink for NoEvents {
    const ENABLED: bool = false;
    #[inline]
    fn push(&mut self, _: Event) {}
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Stops sent (also ones the exchange later rejects).
    pub stop_updates: u32,
    /// Price points at which an improvement was held back.
    pub updates_held: u32,
    /// Sends that only the emergency override let through.
    pub emergency_updates: u32,
}

/// A serialisable copy of an engine's whole state (for persistence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub position: Position,
    pub instrument: Instrument,
    pub config: TrailingConfig,
    pub state: State,
    /// The highest price since entry (long) or the lowest (short).
    pub extreme: Decimal,
    pub desired: Option<(Decimal, StopOrigin)>,
    /// The last stop sent and when.
    pub sent: Option<(Decimal, i64)>,
    pub confirmed: Option<Decimal>,
    pub activated_at: Option<i64>,
    pub breakeven_armed: bool,
    pub momentum_fast: bool,
    pub last_ts: i64,
    pub exit: Option<ExitReason>,
    pub counters: Counters,
    /// The momentum window's retained points `(ts, price)`.
    pub window: Vec<(i64, Decimal)>,
}

/// Mirrored price and time bounds within which price points are quiet (see
/// [`TrailingStop::quiet_bounds`]): every point priced in `[worst_min, best_max]` and timed
/// before `until_ts`. Quiet points change no state, no stop and emit no event, except that with
/// `held` each one is an `UpdateHeld` (so a run with events on is not quiet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietBounds {
    pub best_max: i64,
    pub worst_min: i64,
    pub until_ts: i64,
    /// An improvement is pending and held back (counted) at each point.
    pub held: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    price: i64,
    at: i64,
}

#[derive(Debug, Clone, Copy)]
struct TimeRule {
    after_ms: i64,
    threshold: i64,
}

#[derive(Debug, Clone, Copy)]
struct BreakevenRule {
    threshold: i64,
    stop: i64,
}

#[derive(Debug, Clone, Copy)]
struct MomentumRule {
    window_ms: i64,
    threshold: Ratio,
}

/// One position's trailing stop.
#[derive(Debug, Clone)]
pub struct TrailingStop {
    // Shared, immutable after open: a clone (the simulator's what-if copies) stays cheap.
    position: Arc<Position>,
    instrument: Instrument,
    config: Arc<TrailingConfig>,
    opened_at: i64,
    side: Side,
    sign: i64,
    tick: i64,
    activation_at: i64,
    trail: Ratio,
    fast_trail: Ratio,
    time_rule: Option<TimeRule>,
    breakeven: Option<BreakevenRule>,
    momentum: Option<MomentumRule>,
    min_interval_ms: i64,
    min_improvement: Ratio,
    emergency: Ratio,

    state: State,
    extreme: i64,
    desired: Option<(i64, StopOrigin)>,
    sent: Option<Sent>,
    confirmed: Option<i64>,
    activated_at: Option<i64>,
    breakeven_armed: bool,
    fast: bool,
    last_ts: i64,
    exit: Option<ExitReason>,
    counters: Counters,
    window: MinWindow,
}

macro_rules! emit {
    ($out:expr, $event:expr) => {
        if O::ENABLED {
            $out.push($event)
        }
    };
}

impl TrailingStop {
    /// Opens the trailing stop of `position` and runs the entry as its first price point
    /// (`p = entry`, `ts = opened_at`): the initial stop, activation at entry and the first send.
    pub fn open<O: EventSink>(
        position: &Position,
        instrument: &Instrument,
        config: &TrailingConfig,
        out: &mut O,
    ) -> Result<(TrailingStop, Option<Intent>), EngineError> {
        let mut stop = Self::build(position, instrument, config)?;
        let (sign, s, entry, tick) = (stop.sign, stop.sign as i128, stop.extreme, stop.tick);
        let c = config;
        let ts = position.opened_at;
        emit!(
            out,
            Event::Created {
                ts,
                side: position.side,
                entry_price: position.entry_price,
                activation_price: (position.entry_price
                    * (Decimal::ONE
                        + Decimal::from(sign) * c.activation_percent / Decimal::ONE_HUNDRED))
                    .normalize(),
            }
        );
        if let Some(be) = stop.breakeven
            && stop.coarse(be.stop)
        {
            let offset = c
                .breakeven
                .as_ref()
                .map_or(Decimal::ZERO, |b| b.offset_percent);
            return Err(stop.coarse_tick(StopOrigin::Breakeven, -offset, entry, be.stop));
        }
        if let Some(pct) = c.initial_stop_percent {
            let initial = Ratio::one_plus(pct, -s).floor_to_tick(entry, tick);
            if stop.coarse(initial) {
                return Err(stop.coarse_tick(StopOrigin::Initial, pct, entry, initial));
            }
            stop.offer(initial, StopOrigin::Initial, entry, ts, out);
        }
        let intent = stop.step(entry, ts, out)?;
        Ok((stop, intent))
    }

    /// Whether a rounded (mirrored) stop lost its price to the tick: a long stop at zero, a short
    /// one at a single tick (only a price below one tick rounds up to exactly one).
    #[inline(always)]
    fn coarse(&self, mirrored: i64) -> bool {
        if self.sign > 0 {
            mirrored <= 0
        } else {
            mirrored >= -self.tick
        }
    }

    /// The error for a stop `distance` percent from `reference` (mirrored units) that rounds to
    /// `rounded` (mirrored).
    #[cold]
    fn coarse_tick(
        &self,
        origin: StopOrigin,
        distance: Decimal,
        reference: i64,
        rounded: i64,
    ) -> EngineError {
        let reference = self.dec(reference);
        let sign = Decimal::from(self.sign);
        let exact = reference * (Decimal::ONE - sign * distance / Decimal::ONE_HUNDRED);
        EngineError::CoarseTick(Box::new(CoarseTick {
            id: self.position.id,
            side: self.side.as_str(),
            entry: self.position.entry_price.normalize(),
            origin: match origin {
                StopOrigin::Initial => "initial",
                StopOrigin::Breakeven => "breakeven",
                StopOrigin::Trailing => "trailing",
            },
            stop: exact.normalize(),
            distance: distance.abs().normalize(),
            reference: reference.normalize(),
            direction: if self.sign > 0 { "down" } else { "up" },
            rounded: self.dec(rounded).normalize(),
            tick: self.instrument.tick_size.normalize(),
        }))
    }

    /// The engine with its exact thresholds, before any price point.
    fn build(
        position: &Position,
        instrument: &Instrument,
        config: &TrailingConfig,
    ) -> Result<TrailingStop, EngineError> {
        config.validate()?;
        let decimals = instrument.price_decimals;
        if decimals > MAX_PRICE_DECIMALS {
            return Err(ConfigError::new(
                "price_decimals",
                format!("{decimals} is more than {MAX_PRICE_DECIMALS}"),
            )
            .into());
        }
        if instrument.tick_size <= Decimal::ZERO {
            return Err(EngineError::NotPositive {
                what: "tick_size",
                value: instrument.tick_size,
            });
        }
        if position.entry_price <= Decimal::ZERO {
            return Err(EngineError::NotPositive {
                what: "entry_price",
                value: position.entry_price,
            });
        }
        let units = |what, value: Decimal| {
            instrument
                .units(value)
                .ok_or(EngineError::NotRepresentable {
                    what,
                    value,
                    decimals,
                })
        };
        let tick = units("tick_size", instrument.tick_size)?;
        let sign = position.side.sign();
        let s = sign as i128;
        let entry = sign * units("entry_price", position.entry_price)?;
        let c = config;
        let profit_threshold = |pct: Decimal| Ratio::one_plus(pct, s).ceil_mul(entry);
        let trail = Ratio::one_plus(c.distance_percent, -s);
        let fast_trail = c.momentum.as_ref().map_or(trail, |m| {
            Ratio::one_plus_scaled(c.distance_percent, m.distance_factor, -s)
        });
        let stop = TrailingStop {
            position: Arc::new(position.clone()),
            opened_at: position.opened_at,
            side: position.side,
            instrument: *instrument,
            config: Arc::new(config.clone()),
            sign,
            tick,
            activation_at: profit_threshold(c.activation_percent),
            trail,
            fast_trail,
            time_rule: c.time_activation.as_ref().map(|t| TimeRule {
                after_ms: t.after_seconds as i64 * 1000,
                threshold: profit_threshold(t.min_profit_percent),
            }),
            breakeven: c.breakeven.as_ref().map(|b| BreakevenRule {
                threshold: profit_threshold(b.trigger_percent),
                stop: Ratio::one_plus(b.offset_percent, s).floor_to_tick(entry, tick),
            }),
            momentum: c.momentum.as_ref().map(|m| MomentumRule {
                window_ms: m.window_seconds as i64 * 1000,
                threshold: Ratio::percent(m.threshold_percent),
            }),
            min_interval_ms: c.rate_limit.min_interval_seconds as i64 * 1000,
            min_improvement: Ratio::percent(c.rate_limit.min_improvement_percent),
            emergency: Ratio::percent(c.rate_limit.emergency_percent),
            state: State::Inactive,
            extreme: entry,
            desired: None,
            sent: None,
            confirmed: None,
            activated_at: None,
            breakeven_armed: false,
            fast: false,
            last_ts: position.opened_at,
            exit: None,
            counters: Counters::default(),
            window: MinWindow::default(),
        };
        Ok(stop)
    }

    /// Feeds one price point (DESIGN §2.1 steps 2–3). `price` must be exact at the instrument's
    /// `price_decimals`.
    pub fn on_price<O: EventSink>(
        &mut self,
        price: Decimal,
        ts: i64,
        out: &mut O,
    ) -> Result<Option<Intent>, EngineError> {
        let units = self
            .instrument
            .units(price)
            .ok_or(EngineError::NotRepresentable {
                what: "price",
                value: price,
                decimals: self.instrument.price_decimals,
            })?;
        if units <= 0 {
            return Err(EngineError::NotPositive {
                what: "price",
                value: price,
            });
        }
        self.on_price_units(units, ts, out)
    }

    /// Feeds one price point given in instrument units (the hot path).
    #[inline]
    pub fn on_price_units<O: EventSink>(
        &mut self,
        price: i64,
        ts: i64,
        out: &mut O,
    ) -> Result<Option<Intent>, EngineError> {
        if self.state == State::Triggered {
            return Err(EngineError::Closed);
        }
        if ts < self.last_ts {
            return Err(EngineError::OutOfOrder {
                ts,
                last: self.last_ts,
            });
        }
        self.last_ts = ts;
        self.step(self.sign * price, ts, out)
    }

    /// The exchange accepted the stop at `price` (units); it rests there now.
    pub fn on_stop_confirmed<O: EventSink>(&mut self, price: i64, ts: i64, out: &mut O) {
        self.confirmed = Some(self.sign * price);
        emit!(
            out,
            Event::StopConfirmed {
                ts,
                stop: self.instrument.decimal(price),
            }
        );
    }

    /// The exchange refused the stop at `stop` because `market` is at or through it: the
    /// position must close at market now.
    pub fn on_stop_rejected<O: EventSink>(
        &mut self,
        stop: i64,
        market: i64,
        ts: i64,
        out: &mut O,
    ) -> Intent {
        emit!(
            out,
            Event::StopRejected {
                ts,
                price: self.instrument.decimal(market),
                stop: self.instrument.decimal(stop),
            }
        );
        self.exit_now(self.sign * stop, self.sign * market, ts, out)
    }

    /// The position closed at `fill` (units, before slippage) for `reason`.
    pub fn on_closed<O: EventSink>(&mut self, reason: ExitReason, fill: i64, ts: i64, out: &mut O) {
        self.state = State::Triggered;
        self.exit = Some(reason);
        self.last_ts = self.last_ts.max(ts);
        emit!(
            out,
            Event::Triggered {
                ts,
                fill_price: self.instrument.decimal(fill),
                reason,
            }
        );
    }

    #[inline]
    fn step<O: EventSink>(
        &mut self,
        p: i64,
        ts: i64,
        out: &mut O,
    ) -> Result<Option<Intent>, EngineError> {
        let new_extreme = p > self.extreme;
        if new_extreme {
            self.extreme = p;
        }
        let fast = match self.momentum {
            Some(m) => {
                let low = self.window.push(ts, p, m.window_ms);
                m.threshold.scaled_le(low.abs(), p - low)
            }
            None => false,
        };
        let mut recompute = new_extreme || fast != self.fast;
        self.fast = fast;
        if self.state == State::Inactive {
            let reason = if p >= self.activation_at {
                Some(ActivationReason::Price)
            } else {
                match self.time_rule {
                    Some(t) if ts - self.opened_at >= t.after_ms && p >= t.threshold => {
                        Some(ActivationReason::Time)
                    }
                    _ => None,
                }
            };
            if let Some(reason) = reason {
                self.state = State::Active;
                self.activated_at = Some(ts);
                recompute = true;
                emit!(
                    out,
                    Event::Activated {
                        ts,
                        price: self.dec(p),
                        reason,
                    }
                );
            } else if let Some(be) = self.breakeven
                && p >= be.threshold
            {
                if !self.breakeven_armed {
                    self.breakeven_armed = true;
                    emit!(
                        out,
                        Event::BreakevenArmed {
                            ts,
                            price: self.dec(p),
                            stop: self.dec(be.stop),
                        }
                    );
                }
                self.offer(be.stop, StopOrigin::Breakeven, p, ts, out);
            }
        }
        if recompute && self.state == State::Active {
            let ratio = if fast { self.fast_trail } else { self.trail };
            let candidate = ratio.floor_to_tick(self.extreme, self.tick);
            if self.coarse(candidate) {
                let c = &self.config;
                let factor = match &c.momentum {
                    Some(m) if fast => m.distance_factor,
                    _ => Decimal::ONE,
                };
                let d = c.distance_percent * factor;
                return Err(self.coarse_tick(StopOrigin::Trailing, d, self.extreme, candidate));
            }
            self.offer(candidate, StopOrigin::Trailing, p, ts, out);
        }
        Ok(self.update_policy(p, ts, out))
    }

    /// Takes `candidate` as the desired stop if it is strictly better (DESIGN §2.1 step 2).
    #[inline]
    fn offer<O: EventSink>(
        &mut self,
        candidate: i64,
        origin: StopOrigin,
        p: i64,
        ts: i64,
        out: &mut O,
    ) {
        let better = match self.desired {
            None => true,
            Some((s, _)) => candidate > s,
        };
        if better {
            emit!(
                out,
                Event::StopRaised {
                    ts,
                    price: self.dec(p),
                    from: self.desired.map(|(s, _)| self.dec(s)),
                    to: self.dec(candidate),
                    origin,
                }
            );
            self.desired = Some((candidate, origin));
        }
    }

    /// DESIGN §2.1 step 3: send, hold, or exit now.
    #[inline]
    fn update_policy<O: EventSink>(&mut self, p: i64, ts: i64, out: &mut O) -> Option<Intent> {
        let (s, origin) = self.desired?;
        let reason = match self.sent {
            None => SendReason::Initial,
            Some(x) => {
                if s <= x.price {
                    return None;
                }
                let interval_ok = ts - x.at >= self.min_interval_ms;
                let (improvement, emergency) = self.send_gates(s, x);
                if interval_ok && improvement {
                    SendReason::Normal
                } else if emergency {
                    SendReason::Emergency
                } else {
                    self.counters.updates_held += 1;
                    emit!(
                        out,
                        Event::UpdateHeld {
                            ts,
                            price: self.dec(p),
                            desired: self.dec(s),
                            sent: self.dec(x.price),
                            reason: if interval_ok {
                                HoldReason::Improvement
                            } else {
                                HoldReason::Interval
                            },
                        }
                    );
                    return None;
                }
            }
        };
        if s >= p {
            return Some(self.exit_now(s, p, ts, out));
        }
        self.counters.stop_updates += 1;
        if reason == SendReason::Emergency {
            self.counters.emergency_updates += 1;
        }
        emit!(
            out,
            Event::UpdateSent {
                ts,
                price: self.dec(p),
                stop: self.dec(s),
                previous: self.sent.map(|x| self.dec(x.price)),
                reason,
            }
        );
        self.sent = Some(Sent { price: s, at: ts });
        Some(Intent::PlaceStop {
            price: self.sign * s,
            origin,
        })
    }

    /// Whether sending `s` over the last sent stop passes the minimum improvement and the
    /// emergency threshold (the interval is checked apart: it alone depends on the time).
    #[inline]
    fn send_gates(&self, s: i64, x: Sent) -> (bool, bool) {
        let (gain, base) = (s - x.price, x.price.abs());
        (
            self.min_improvement.scaled_le(base, gain),
            self.emergency.scaled_le(base, gain),
        )
    }

    fn exit_now<O: EventSink>(&mut self, stop: i64, p: i64, ts: i64, out: &mut O) -> Intent {
        self.state = State::Triggered;
        self.exit = Some(ExitReason::ExitNow);
        emit!(
            out,
            Event::ExitNow {
                ts,
                price: self.dec(p),
                stop: self.dec(stop),
            }
        );
        Intent::ExitNow
    }

    /// A mirrored price back to a real decimal.
    fn dec(&self, mirrored: i64) -> Decimal {
        self.instrument.decimal(self.sign * mirrored)
    }

    pub fn position(&self) -> &Position {
        &self.position
    }
    pub fn instrument(&self) -> &Instrument {
        &self.instrument
    }
    pub fn config(&self) -> &TrailingConfig {
        &self.config
    }
    pub fn side(&self) -> Side {
        self.side
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    pub fn activated_at(&self) -> Option<i64> {
        self.activated_at
    }
    pub fn breakeven_armed(&self) -> bool {
        self.breakeven_armed
    }
    /// How the position closed, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.exit
    }
    /// The best price since entry: the highest for a long, the lowest for a short.
    pub fn extreme(&self) -> Decimal {
        self.dec(self.extreme)
    }
    /// The exact activation price, `entry * (1 ± activation_percent/100)`.
    pub fn activation_price(&self) -> Decimal {
        let c = &self.config;
        (self.position.entry_price
            * (Decimal::ONE
                + Decimal::from(self.sign) * c.activation_percent / Decimal::ONE_HUNDRED))
            .normalize()
    }
    /// The stop the engine wants (rounded to the tick), if any.
    pub fn desired_stop(&self) -> Option<Decimal> {
        self.desired.map(|(s, _)| self.dec(s))
    }
    pub fn desired_stop_units(&self) -> Option<i64> {
        self.desired.map(|(s, _)| self.sign * s)
    }
    pub fn desired_origin(&self) -> Option<StopOrigin> {
        self.desired.map(|(_, o)| o)
    }
    /// The last stop sent to the exchange, and when.
    pub fn sent_stop(&self) -> Option<(Decimal, i64)> {
        self.sent.map(|x| (self.dec(x.price), x.at))
    }
    pub fn sent_stop_units(&self) -> Option<i64> {
        self.sent.map(|x| self.sign * x.price)
    }
    /// The stop the exchange last confirmed as resting.
    pub fn confirmed_stop(&self) -> Option<Decimal> {
        self.confirmed.map(|c| self.dec(c))
    }
    /// Everything needed to rebuild this engine exactly (exact decimals, no floats).
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            position: (*self.position).clone(),
            instrument: self.instrument,
            config: (*self.config).clone(),
            state: self.state,
            extreme: self.dec(self.extreme),
            desired: self.desired.map(|(s, o)| (self.dec(s), o)),
            sent: self.sent.map(|x| (self.dec(x.price), x.at)),
            confirmed: self.confirmed.map(|c| self.dec(c)),
            activated_at: self.activated_at,
            breakeven_armed: self.breakeven_armed,
            momentum_fast: self.fast,
            last_ts: self.last_ts,
            exit: self.exit,
            counters: self.counters,
            window: self
                .window
                .points()
                .map(|(t, p)| (t, self.dec(p)))
                .collect(),
        }
    }

    /// Rebuilds an engine from a snapshot; `restore(&e.snapshot())` behaves exactly like `e`.
    pub fn restore(snap: &EngineSnapshot) -> Result<TrailingStop, EngineError> {
        Self::restore_with(snap, &snap.config)
    }

    /// Rebuilds an engine from a snapshot under a changed `config`. The rule on a change:
    /// the stop never loosens (the desired and sent stops are kept as they are) and the new
    /// settings apply to future moves (the next candidate uses the new distance, the update
    /// policy the new rate limits).
    pub fn restore_with(
        snap: &EngineSnapshot,
        config: &TrailingConfig,
    ) -> Result<TrailingStop, EngineError> {
        let mut e = Self::build(&snap.position, &snap.instrument, config)?;
        let m = |what: &'static str, d: Decimal| {
            e.instrument
                .units(d)
                .map(|u| e.sign * u)
                .ok_or(EngineError::NotRepresentable {
                    what,
                    value: d,
                    decimals: e.instrument.price_decimals,
                })
        };
        let extreme = m("extreme", snap.extreme)?;
        let desired = match snap.desired {
            Some((d, o)) => Some((m("desired stop", d)?, o)),
            None => None,
        };
        let sent = match snap.sent {
            Some((d, at)) => Some(Sent {
                price: m("sent stop", d)?,
                at,
            }),
            None => None,
        };
        let confirmed = match snap.confirmed {
            Some(d) => Some(m("confirmed stop", d)?),
            None => None,
        };
        let window = snap
            .window
            .iter()
            .map(|&(t, p)| m("momentum point", p).map(|u| (t, u)))
            .collect::<Result<Vec<_>, _>>()?;
        e.state = snap.state;
        e.extreme = extreme;
        e.desired = desired;
        e.sent = sent;
        e.confirmed = confirmed;
        e.activated_at = snap.activated_at;
        e.breakeven_armed = snap.breakeven_armed;
        e.fast = snap.momentum_fast;
        e.last_ts = snap.last_ts;
        e.exit = snap.exit;
        e.counters = snap.counters;
        e.window = MinWindow::from_points(window);
        Ok(e)
    }

    /// The time of the last price point seen.
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// The momentum window's length, when momentum is on.
    pub fn momentum_window_ms(&self) -> Option<i64> {
        self.momentum.map(|m| m.window_ms)
    }

    /// Whether momentum acceleration held at the last price point.
    pub fn momentum_active(&self) -> bool {
        self.fast
    }

    /// The envelope within which price points change nothing but the extreme, the momentum
    /// window, the clock and the held-update count, whatever their order: `None` when any
    /// point could matter (a first stop or an emergency update is due, or the position is
    /// closed). Bounds are mirrored (higher is better for both sides). `floor` is the lowest
    /// mirrored price the caller's points can have (its resting stop keeps them above it), or
    /// `i64::MIN` for none; the bounds may raise it.
    #[inline]
    pub fn quiet_bounds(&self, floor: i64) -> Option<QuietBounds> {
        if self.state == State::Triggered {
            return None;
        }
        // An improvement held back by the rate limit is held again at every point (and
        // counted) until the interval opens, if the improvement alone would pass; it is never
        // sent sooner, since the emergency rule does not change while the stops stand still.
        let (mut until_ts, held) = match (self.desired, self.sent) {
            (Some((s, _)), Some(x)) if s > x.price => {
                let (improvement, emergency) = self.send_gates(s, x);
                if emergency {
                    return None;
                }
                let opens = if improvement {
                    x.at.saturating_add(self.min_interval_ms)
                } else {
                    i64::MAX
                };
                (opens, true)
            }
            (None, None) => (i64::MAX, false),
            (Some((s, _)), Some(x)) if s == x.price => (i64::MAX, false),
            _ => return None,
        };
        let mut bounds = match self.state {
            State::Inactive => {
                let mut best_max = self.activation_at - 1;
                if let Some(b) = self.breakeven
                    && !(self.breakeven_armed && self.desired.is_some_and(|(s, _)| s >= b.stop))
                {
                    best_max = best_max.min(b.threshold - 1);
                }
                if let Some(t) = self.time_rule {
                    // Before the time rule's moment only the price rules apply; from then on
                    // its threshold too.
                    let at = self.opened_at.saturating_add(t.after_ms);
                    if self.last_ts >= at {
                        best_max = best_max.min(t.threshold - 1);
                    } else {
                        until_ts = until_ts.min(at);
                    }
                }
                Some(QuietBounds {
                    best_max,
                    worst_min: floor,
                    until_ts,
                    held,
                })
            }
            State::Active => {
                let (mut best_max, mut worst_min) = (self.extreme, floor);
                if let Some(m) = self.momentum
                    && self.desired.is_none_or(|(s, _)| {
                        s < self.fast_trail.floor_to_tick(self.extreme, self.tick)
                    })
                {
                    // Momentum would tighten the stop, so it must stay off: at every point
                    // `p < low + threshold·|low|`, `low` the window's minimum. That minimum is
                    // never below `l = min(now, the lowest the points can go)`, and the
                    // right side does not decrease in `low` (threshold ≤ 100 %), so prices
                    // below `l + threshold·|l|` keep it off.
                    let now = self.window.min()?;
                    if floor == i64::MIN {
                        worst_min = now;
                    }
                    let l = now.min(worst_min);
                    best_max = best_max.min(l + m.threshold.ceil_mul(l.abs()) - 1);
                }
                Some(QuietBounds {
                    best_max,
                    worst_min,
                    until_ts,
                    held,
                })
            }
            State::Triggered => None,
        };
        if let Some(b) = &mut bounds {
            b.until_ts = b.until_ts.min(until_ts);
        }
        bounds
    }

    /// Takes a run of points the caller has checked against [`TrailingStop::quiet_bounds`]
    /// (every point at or after the clock and before `until_ts`, mirrored prices at most
    /// `best_max`): `best` is their best price (units, mirrored), `last_ts` the time of the
    /// last one. `tail` is the run's last points `(ts, units)` in order, at least those inside
    /// the momentum window before `last_ts` (the window after the last push holds only points
    /// inside it, and older points never displace newer ones, so the rest can be left out).
    /// Without momentum `tail` is not read. `points` is how many points the run has.
    #[inline]
    pub fn absorb_within(
        &mut self,
        best: i64,
        last_ts: i64,
        tail: impl Iterator<Item = (i64, i64)>,
        points: u32,
    ) {
        if self.desired.map(|(s, _)| s) != self.sent.map(|x| x.price) {
            // Held at each of them (the bounds said so).
            self.counters.updates_held += points;
        }
        self.extreme = self.extreme.max(best);
        if let Some(m) = self.momentum {
            let (mut low, mut last) = (None, 0);
            for (ts, p) in tail {
                last = self.sign * p;
                low = Some(self.window.push(ts, last, m.window_ms));
            }
            if let Some(low) = low {
                self.fast = m.threshold.scaled_le(low.abs(), last - low);
            }
        }
        self.last_ts = last_ts;
    }

    /// True when no price point in `[low, high]` (units), in any order and at any time, can
    /// change the desired or the sent stop: trailing is active, nothing is pending, no price
    /// makes a new extreme, and the desired stop is already at least the tightest candidate
    /// (momentum included) of the current extreme. Lets a simulator skip what-if replays.
    #[inline]
    pub fn is_quiet_within(&self, low: i64, high: i64) -> bool {
        let best = if self.sign > 0 { high } else { -low };
        let (Some((s, _)), Some(x)) = (self.desired, self.sent) else {
            return false;
        };
        self.state == State::Active
            && s == x.price
            && best <= self.extreme
            && (self.momentum.is_none()
                || s >= self.fast_trail.floor_to_tick(self.extreme, self.tick))
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
