//! Property tests of the trailing-stop engine (DESIGN §2, §2.1 steps 2–3).
//!
//! Random price paths (random walks on a tick grid with drift, gaps, off-grid prices and time
//! steps of 0..120 s) and random configs (every mode on or off, random rate limits, both sides).
//! The invariants are checked from the event stream and the accessors, and the engine is compared
//! with `Reference`, a plain `Decimal` implementation of the DESIGN text written only as an oracle.

use proptest::prelude::*;
use rust_decimal::Decimal;
use trailstop::engine::{
    ActivationReason, Breakeven, Counters, EngineError, Event, ExitReason, HoldReason, Instrument,
    Intent, Momentum, NoEvents, Position, RateLimit, SendReason, Side, State, StopOrigin,
    TimeActivation, TrailingConfig, TrailingStop,
};

const PRICE_DECIMALS: u32 = 8;

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Case {
    side: Side,
    tick: Decimal,
    entry: Decimal,
    opened_at: i64,
    config: TrailingConfig,
    /// `(price, ts)`, ts non-decreasing and at or after `opened_at`.
    points: Vec<(Decimal, i64)>,
    /// Close the position (as if the exchange stop filled) before this point, if any.
    close_before: Option<usize>,
}

impl Case {
    fn instrument(&self) -> Instrument {
        Instrument::new(self.tick)
    }
    fn position(&self) -> Position {
        Position::new(1, "BTCUSDT", self.side, self.entry, self.opened_at)
    }
}

/// A percentage in `[lo, hi]` hundredths, with 2 or 4 decimals.
fn pct(lo: i64, hi: i64) -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (lo..=hi).prop_map(|h| Decimal::new(h, 2)),
        (lo * 100..=hi * 100).prop_map(|m| Decimal::new(m, 4)),
    ]
}

fn config_strategy() -> impl Strategy<Value = TrailingConfig> {
    let rate_limit = (0u64..=180, pct(0, 100), pct(1, 300)).prop_map(|(s, imp, em)| RateLimit {
        min_interval_seconds: s,
        min_improvement_percent: imp,
        emergency_percent: em,
    });
    let breakeven = proptest::option::weighted(
        0.7,
        (pct(0, 150), pct(-50, 50)).prop_map(|(t, o)| Breakeven {
            trigger_percent: t,
            offset_percent: o,
        }),
    );
    let time = proptest::option::weighted(
        0.6,
        (0u64..=3600, pct(-100, 200)).prop_map(|(a, m)| TimeActivation {
            after_seconds: a,
            min_profit_percent: m,
        }),
    );
    let momentum = proptest::option::of((1u64..=600, pct(0, 300), pct(10, 200)).prop_map(
        |(w, t, f)| Momentum {
            window_seconds: w,
            threshold_percent: t,
            distance_factor: f,
        },
    ));
    (
        prop_oneof![1 => Just(Decimal::ZERO), 4 => pct(0, 300)],
        pct(1, 500),
        proptest::option::of(pct(10, 500)),
        rate_limit,
        breakeven,
        time,
        momentum,
    )
        .prop_map(|(a, d, i, r, b, t, m)| TrailingConfig {
            activation_percent: a,
            distance_percent: d,
            initial_stop_percent: i,
            rate_limit: r,
            breakeven: b,
            time_activation: t,
            momentum: m,
        })
}

/// One step of the walk: time step (ms), move in thousandths of the case's volatility, an
/// occasional gap in ticks, off-grid units (0 = on the grid).
fn step_strategy() -> impl Strategy<Value = (i64, i64, i64, i64)> {
    let dt = prop_oneof![
        4 => (0i64..=120).prop_map(|s| s * 1000),
        1 => 0i64..=120_000,
    ];
    let gap = prop_oneof![
        30 => Just(0i64),
        1 => prop_oneof![-1000i64..=-50, 50i64..=1000],
    ];
    let off = prop_oneof![5 => Just(0i64), 1 => 1i64..1_000_000_000];
    (dt, -1000i64..=1000, gap, off)
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let ticks = [
        Decimal::new(1, 3),
        Decimal::new(1, 2),
        Decimal::new(5, 2),
        Decimal::new(1, 1),
        Decimal::new(25, 2),
        Decimal::new(5, 1),
        Decimal::ONE,
    ];
    (
        (
            prop_oneof![Just(Side::Long), Just(Side::Short)],
            proptest::sample::select(ticks.to_vec()),
            1_000i64..=50_000,
            prop_oneof![3 => Just(0i64), 1 => 1i64..1_000_000_000],
            0i64..=2_000_000_000_000,
        ),
        config_strategy(),
        // Volatility (basis points of the entry per step) and drift (thousandths of it).
        prop_oneof![1i64..=5, 6i64..=40],
        -100i64..=100,
        proptest::collection::vec(step_strategy(), 1..250),
        proptest::option::of(0usize..300),
    )
        .prop_map(
            |(
                (side, tick, entry_ticks, entry_off, opened_at),
                config,
                vol,
                drift,
                steps,
                close,
            )| {
                let tick_units = (tick * Decimal::from(100_000_000)).normalize();
                let tick_units = i64::try_from(tick_units.mantissa()).unwrap();
                let units = |ticks: i64, off: i64| ticks * tick_units + off % tick_units;
                let entry = Decimal::new(units(entry_ticks, entry_off), PRICE_DECIMALS);
                // The walk in thousandths of a tick.
                let mut milli = entry_ticks * 1000;
                let mut ts = opened_at;
                let points = steps
                    .iter()
                    .map(|&(dt, mv, gap, off)| {
                        let mv = (mv + drift) * vol * entry_ticks / 10_000;
                        milli = (milli + mv + gap * 1000).max(1000);
                        ts += dt;
                        let price = Decimal::new(units(milli / 1000, off), PRICE_DECIMALS);
                        (price, ts)
                    })
                    .collect();
                Case {
                    side,
                    tick,
                    entry,
                    opened_at,
                    config,
                    points,
                    close_before: close,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Running the engine
// ---------------------------------------------------------------------------------------------

/// What one run produced, point by point (index 0 is the entry).
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    desired: Option<Decimal>,
    sent: Option<(Decimal, i64)>,
    state: State,
    counters: Counters,
    extreme: Decimal,
    momentum: bool,
    activated_at: Option<i64>,
    breakeven_armed: bool,
}

fn snapshot(s: &TrailingStop) -> Snapshot {
    Snapshot {
        desired: s.desired_stop(),
        sent: s.sent_stop(),
        state: s.state(),
        counters: s.counters(),
        extreme: s.extreme(),
        momentum: s.momentum_active(),
        activated_at: s.activated_at(),
        breakeven_armed: s.breakeven_armed(),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct PointOut {
    price: Decimal,
    ts: i64,
    result: Result<Option<Intent>, EngineError>,
    events: Vec<Event>,
    after: Snapshot,
}

struct Run {
    points: Vec<PointOut>,
    all_events: Vec<Event>,
    final_state: Snapshot,
}

fn run_engine(case: &Case) -> Run {
    let inst = case.instrument();
    let mut events = Vec::new();
    let (mut stop, intent) =
        TrailingStop::open(&case.position(), &inst, &case.config, &mut events).expect("open");
    let mut all_events = events.clone();
    let mut points = vec![PointOut {
        price: case.entry,
        ts: case.opened_at,
        result: Ok(intent),
        events,
        after: snapshot(&stop),
    }];
    for (i, &(price, ts)) in case.points.iter().enumerate() {
        let mut events = Vec::new();
        if case.close_before == Some(i) && stop.state() != State::Triggered {
            let fill = inst.units(price).unwrap();
            stop.on_closed(ExitReason::TrailingStop, fill, ts, &mut events);
        }
        let result = stop.on_price(price, ts, &mut events);
        all_events.extend(events.iter().cloned());
        points.push(PointOut {
            price,
            ts,
            result,
            events,
            after: snapshot(&stop),
        });
    }
    Run {
        points,
        all_events,
        final_state: snapshot(&stop),
    }
}

/// The same inputs through the `NoEvents` sink: only the final state.
fn run_silent(case: &Case) -> Snapshot {
    let inst = case.instrument();
    let (mut stop, _) =
        TrailingStop::open(&case.position(), &inst, &case.config, &mut NoEvents).unwrap();
    for (i, &(price, ts)) in case.points.iter().enumerate() {
        if case.close_before == Some(i) && stop.state() != State::Triggered {
            let fill = inst.units(price).unwrap();
            stop.on_closed(ExitReason::TrailingStop, fill, ts, &mut NoEvents);
        }
        let _ = stop.on_price(price, ts, &mut NoEvents);
    }
    snapshot(&stop)
}

// ---------------------------------------------------------------------------------------------
// Independent Decimal helpers (no engine code)
// ---------------------------------------------------------------------------------------------

fn hundred() -> Decimal {
    Decimal::ONE_HUNDRED
}

fn is_long(side: Side) -> bool {
    side == Side::Long
}

/// Profit in percent: long `(p - entry) / entry * 100`, short `(entry - p) / entry * 100`.
fn profit(side: Side, entry: Decimal, p: Decimal) -> Decimal {
    if is_long(side) {
        (p - entry) / entry * hundred()
    } else {
        (entry - p) / entry * hundred()
    }
}

fn reaches_activation(side: Side, entry: Decimal, activation: Decimal, p: Decimal) -> bool {
    if is_long(side) {
        p >= entry * (Decimal::ONE + activation / hundred())
    } else {
        p <= entry * (Decimal::ONE - activation / hundred())
    }
}

fn time_activation_holds(case: &Case, p: Decimal, ts: i64) -> bool {
    case.config.time_activation.as_ref().is_some_and(|t| {
        ts - case.opened_at >= t.after_seconds as i64 * 1000
            && profit(case.side, case.entry, p) >= t.min_profit_percent
    })
}

/// `a` strictly better than `b` for the side (long higher, short lower).
fn better(side: Side, a: Decimal, b: Decimal) -> bool {
    if is_long(side) { a > b } else { a < b }
}

/// Onto the tick grid toward the safe side: long down, short up.
fn round_safe(side: Side, x: Decimal, tick: Decimal) -> Decimal {
    let q = x / tick;
    let q = if is_long(side) { q.floor() } else { q.ceil() };
    q * tick
}

fn improvement(stop: Decimal, last: Decimal) -> Decimal {
    (stop - last).abs() / last * hundred()
}

// ---------------------------------------------------------------------------------------------
// Reference implementation (test oracle): DESIGN §2.1 steps 2–3, written plainly in Decimal
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum RefIntent {
    Place(Decimal, StopOrigin),
    ExitNow,
}

struct Reference<'a> {
    case: &'a Case,
    state: State,
    /// `highest` (long) / `lowest` (short) since entry.
    extreme: Decimal,
    desired: Option<(Decimal, StopOrigin)>,
    sent: Option<(Decimal, i64)>,
    armed: bool,
    momentum: bool,
    activated_at: Option<i64>,
    history: Vec<(i64, Decimal)>,
    counters: Counters,
}

impl<'a> Reference<'a> {
    fn open(case: &'a Case, out: &mut Vec<Event>) -> (Self, Option<RefIntent>) {
        let c = &case.config;
        let side = case.side;
        let entry = case.entry;
        let mut r = Reference {
            case,
            state: State::Inactive,
            extreme: entry,
            desired: None,
            sent: None,
            armed: false,
            momentum: false,
            activated_at: None,
            history: Vec::new(),
            counters: Counters::default(),
        };
        let activation_price = if is_long(side) {
            entry * (Decimal::ONE + c.activation_percent / hundred())
        } else {
            entry * (Decimal::ONE - c.activation_percent / hundred())
        };
        out.push(Event::Created {
            ts: case.opened_at,
            side,
            entry_price: entry,
            activation_price,
        });
        if let Some(i) = c.initial_stop_percent {
            // long entry * (1 - i/100), short entry * (1 + i/100)
            let raw = if is_long(side) {
                entry * (Decimal::ONE - i / hundred())
            } else {
                entry * (Decimal::ONE + i / hundred())
            };
            let stop = round_safe(side, raw, case.tick);
            r.offer(stop, StopOrigin::Initial, entry, case.opened_at, out);
        }
        let intent = r.step(entry, case.opened_at, out);
        (r, intent)
    }

    fn offer(
        &mut self,
        cand: Decimal,
        origin: StopOrigin,
        p: Decimal,
        ts: i64,
        out: &mut Vec<Event>,
    ) {
        let take = match self.desired {
            None => true,
            Some((s, _)) => better(self.case.side, cand, s),
        };
        if take {
            out.push(Event::StopRaised {
                ts,
                price: p,
                from: self.desired.map(|(s, _)| s),
                to: cand,
                origin,
            });
            self.desired = Some((cand, origin));
        }
    }

    fn step(&mut self, p: Decimal, ts: i64, out: &mut Vec<Event>) -> Option<RefIntent> {
        let case = self.case;
        let c = &case.config;
        let side = case.side;
        let entry = case.entry;
        // highest = max(highest, p) / lowest = min(lowest, p)
        if better(side, p, self.extreme) {
            self.extreme = p;
        }
        // Momentum over the position's own points in [ts - window, ts], the current included.
        self.history.push((ts, p));
        self.momentum = match &c.momentum {
            None => false,
            Some(m) => {
                let from = ts - m.window_seconds as i64 * 1000;
                let inside = self
                    .history
                    .iter()
                    .filter(|(t, _)| *t >= from)
                    .map(|(_, q)| *q);
                let mv = if is_long(side) {
                    let low = inside.min().unwrap();
                    (p - low) / low * hundred()
                } else {
                    let high = inside.max().unwrap();
                    (high - p) / high * hundred()
                };
                mv >= m.threshold_percent
            }
        };
        if self.state == State::Inactive {
            let reason = if reaches_activation(side, entry, c.activation_percent, p) {
                Some(ActivationReason::Price)
            } else if time_activation_holds(case, p, ts) {
                Some(ActivationReason::Time)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.state = State::Active;
                self.activated_at = Some(ts);
                out.push(Event::Activated {
                    ts,
                    price: p,
                    reason,
                });
            } else if let Some(b) = &c.breakeven
                && profit(side, entry, p) >= b.trigger_percent
            {
                let raw = if is_long(side) {
                    entry * (Decimal::ONE + b.offset_percent / hundred())
                } else {
                    entry * (Decimal::ONE - b.offset_percent / hundred())
                };
                let stop = round_safe(side, raw, case.tick);
                if !self.armed {
                    self.armed = true;
                    out.push(Event::BreakevenArmed { ts, price: p, stop });
                }
                self.offer(stop, StopOrigin::Breakeven, p, ts, out);
            }
        }
        if self.state == State::Active {
            let mut d = c.distance_percent;
            if self.momentum {
                d *= c.momentum.as_ref().unwrap().distance_factor;
            }
            let raw = if is_long(side) {
                self.extreme * (Decimal::ONE - d / hundred())
            } else {
                self.extreme * (Decimal::ONE + d / hundred())
            };
            let cand = round_safe(side, raw, case.tick);
            self.offer(cand, StopOrigin::Trailing, p, ts, out);
        }
        self.update_policy(p, ts, out)
    }

    fn update_policy(&mut self, p: Decimal, ts: i64, out: &mut Vec<Event>) -> Option<RefIntent> {
        let side = self.case.side;
        let r = &self.case.config.rate_limit;
        let (s, origin) = self.desired?;
        let reason = match self.sent {
            None => SendReason::Initial,
            Some((x, at)) => {
                if !better(side, s, x) {
                    return None;
                }
                let imp = improvement(s, x);
                let interval_ok = ts - at >= r.min_interval_seconds as i64 * 1000;
                if interval_ok && imp >= r.min_improvement_percent {
                    SendReason::Normal
                } else if imp >= r.emergency_percent {
                    SendReason::Emergency
                } else {
                    self.counters.updates_held += 1;
                    // When both fail the engine names the interval (DESIGN leaves it open).
                    let reason = if interval_ok {
                        HoldReason::Improvement
                    } else {
                        HoldReason::Interval
                    };
                    out.push(Event::UpdateHeld {
                        ts,
                        price: p,
                        desired: s,
                        sent: x,
                        reason,
                    });
                    return None;
                }
            }
        };
        let through = if is_long(side) { s >= p } else { s <= p };
        if through {
            self.state = State::Triggered;
            out.push(Event::ExitNow {
                ts,
                price: p,
                stop: s,
            });
            return Some(RefIntent::ExitNow);
        }
        self.counters.stop_updates += 1;
        if reason == SendReason::Emergency {
            self.counters.emergency_updates += 1;
        }
        out.push(Event::UpdateSent {
            ts,
            price: p,
            stop: s,
            previous: self.sent.map(|(x, _)| x),
            reason,
        });
        self.sent = Some((s, ts));
        Some(RefIntent::Place(s, origin))
    }
}

fn engine_intent(inst: &Instrument, i: Option<Intent>) -> Option<RefIntent> {
    i.map(|i| match i {
        Intent::PlaceStop { price, origin } => RefIntent::Place(inst.decimal(price), origin),
        Intent::ExitNow => RefIntent::ExitNow,
    })
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

fn check_invariants(case: &Case) -> Result<(), TestCaseError> {
    let run = run_engine(case);
    let side = case.side;
    let tick = case.tick;
    let r = &case.config.rate_limit;
    let long = is_long(side);

    // 1. The desired stop only ratchets.
    let mut last_desired: Option<Decimal> = None;
    for pt in &run.points {
        if let (Some(a), Some(b)) = (last_desired, pt.after.desired) {
            prop_assert!(
                if long { b >= a } else { b <= a },
                "desired stop moved against the position: {a} -> {b}"
            );
        }
        if last_desired.is_some() {
            prop_assert!(pt.after.desired.is_some(), "desired stop disappeared");
        }
        last_desired = pt.after.desired;
        for e in &pt.events {
            if let Event::StopRaised {
                from: Some(f), to, ..
            } = e
            {
                prop_assert!(
                    better(side, *to, *f),
                    "StopRaised not an improvement: {f} -> {to}"
                );
            }
        }
    }

    // 2.–3. Every sent stop is on the grid and strictly inside the market at its point; the
    // counters match the stream; the send reasons follow the rate limit.
    let mut last_send: Option<(Decimal, i64)> = None;
    let (mut sends, mut held, mut emergencies) = (0u32, 0u32, 0u32);
    for pt in &run.points {
        for e in &pt.events {
            match e {
                Event::UpdateSent {
                    ts,
                    price,
                    stop,
                    previous,
                    reason,
                } => {
                    sends += 1;
                    prop_assert_eq!(*ts, pt.ts);
                    prop_assert_eq!(*price, pt.price);
                    prop_assert!(
                        (*stop % tick).is_zero(),
                        "stop {} off the {} grid",
                        stop,
                        tick
                    );
                    prop_assert!(
                        if long { stop < price } else { stop > price },
                        "stop {} sent at or through the market {}",
                        stop,
                        price
                    );
                    prop_assert_eq!(*previous, last_send.map(|(x, _)| x));
                    match (last_send, reason) {
                        (None, SendReason::Initial) => {}
                        (None, other) => prop_assert!(false, "first send is {:?}", other),
                        (Some(_), SendReason::Initial) => {
                            prop_assert!(false, "a later send is `initial`")
                        }
                        (Some((x, at)), reason) => {
                            prop_assert!(better(side, *stop, x));
                            let imp = improvement(*stop, x);
                            let interval_ok = *ts - at >= r.min_interval_seconds as i64 * 1000;
                            let normal_ok = interval_ok && imp >= r.min_improvement_percent;
                            if *reason == SendReason::Normal {
                                prop_assert!(
                                    normal_ok,
                                    "normal send at {} with {}% after {} ms",
                                    ts,
                                    imp,
                                    ts - at
                                );
                            } else {
                                emergencies += 1;
                                prop_assert!(imp >= r.emergency_percent, "emergency with {}%", imp);
                                prop_assert!(
                                    !normal_ok,
                                    "emergency although the normal rule allows it"
                                );
                            }
                        }
                    }
                    last_send = Some((*stop, *ts));
                }
                Event::UpdateHeld {
                    desired,
                    sent,
                    reason,
                    ts,
                    ..
                } => {
                    held += 1;
                    let (x, at) = last_send.expect("held before any send");
                    prop_assert_eq!(*sent, x);
                    prop_assert!(better(side, *desired, x));
                    let imp = improvement(*desired, x);
                    let interval_ok = *ts - at >= r.min_interval_seconds as i64 * 1000;
                    prop_assert!(imp < r.emergency_percent);
                    prop_assert!(!(interval_ok && imp >= r.min_improvement_percent));
                    prop_assert_eq!(*reason == HoldReason::Interval, !interval_ok);
                }
                _ => {}
            }
        }
        prop_assert_eq!(pt.after.sent, last_send);
    }
    let c = run.final_state.counters;
    prop_assert_eq!(
        (c.stop_updates, c.updates_held, c.emergency_updates),
        (sends, held, emergencies)
    );

    // 4. After ExitNow / Triggered: Err(Closed) and no events, for every later point.
    let mut closed = false;
    for pt in &run.points {
        if closed {
            prop_assert_eq!(&pt.result, &Err(EngineError::Closed));
            prop_assert!(pt.events.is_empty(), "events after close: {:?}", pt.events);
        } else {
            let triggered_here = pt
                .events
                .iter()
                .any(|e| matches!(e, Event::Triggered { .. }));
            if triggered_here {
                // Closed by on_closed just before this point: the point itself is refused.
                prop_assert_eq!(&pt.result, &Err(EngineError::Closed));
                closed = true;
                continue;
            }
            prop_assert!(pt.result.is_ok(), "{:?}", pt.result);
            let exit = pt.events.iter().any(|e| matches!(e, Event::ExitNow { .. }));
            prop_assert_eq!(exit, pt.result == Ok(Some(Intent::ExitNow)));
            if exit {
                prop_assert_eq!(pt.after.state, State::Triggered);
                closed = true;
            }
        }
    }

    // 5. Activation happens exactly at the first point whose price or time condition holds.
    let mut active = false;
    for pt in &run.points {
        if active || pt.result.is_err() {
            break;
        }
        let by_price =
            reaches_activation(side, case.entry, case.config.activation_percent, pt.price);
        let by_time = time_activation_holds(case, pt.price, pt.ts);
        let ev = pt.events.iter().find_map(|e| match e {
            Event::Activated { reason, price, ts } => Some((*reason, *price, *ts)),
            _ => None,
        });
        match ev {
            Some((reason, price, ts)) => {
                prop_assert_eq!((price, ts), (pt.price, pt.ts));
                match reason {
                    ActivationReason::Price => prop_assert!(by_price),
                    ActivationReason::Time => prop_assert!(by_time && !by_price),
                }
                prop_assert_eq!(pt.after.activated_at, Some(pt.ts));
                active = true;
            }
            None => prop_assert!(
                !by_price && !by_time,
                "not activated at {} {} although the condition holds",
                pt.ts,
                pt.price
            ),
        }
    }
    let activations = run
        .all_events
        .iter()
        .filter(|e| matches!(e, Event::Activated { .. }))
        .count();
    prop_assert!(activations <= 1);
    Ok(())
}

fn check_reference(case: &Case) -> Result<(), TestCaseError> {
    let inst = case.instrument();
    let run = run_engine(case);
    let mut ref_events = Vec::new();
    let (mut reference, intent) = Reference::open(case, &mut ref_events);
    let check_state = |r: &Reference, pt: &PointOut, what: &str| -> Result<(), TestCaseError> {
        let s = &pt.after;
        prop_assert_eq!(s.desired, r.desired.map(|(d, _)| d), "desired at {}", what);
        prop_assert_eq!(s.sent, r.sent, "sent at {}", what);
        prop_assert_eq!(s.state, r.state, "state at {}", what);
        prop_assert_eq!(s.counters, r.counters, "counters at {}", what);
        prop_assert_eq!(s.extreme, r.extreme, "extreme at {}", what);
        prop_assert_eq!(s.momentum, r.momentum, "momentum at {}", what);
        prop_assert_eq!(s.activated_at, r.activated_at, "activated_at at {}", what);
        prop_assert_eq!(s.breakeven_armed, r.armed, "breakeven at {}", what);
        Ok(())
    };
    let entry = &run.points[0];
    prop_assert_eq!(&entry.events, &ref_events, "events at entry");
    prop_assert_eq!(
        engine_intent(&inst, *entry.result.as_ref().unwrap()),
        intent
    );
    check_state(&reference, entry, "entry")?;
    for (i, pt) in run.points.iter().enumerate().skip(1) {
        if reference.state == State::Triggered {
            break;
        }
        if case.close_before == Some(i - 1) {
            break;
        }
        let mut ev = Vec::new();
        let intent = reference.step(pt.price, pt.ts, &mut ev);
        let what = format!("point {i} ({} @ {})", pt.price, pt.ts);
        prop_assert_eq!(&pt.events, &ev, "events at {}", what);
        prop_assert_eq!(
            engine_intent(&inst, *pt.result.as_ref().unwrap()),
            intent,
            "intent at {}",
            what
        );
        check_state(&reference, pt, &what)?;
    }
    Ok(())
}

fn check_determinism(case: &Case) -> Result<(), TestCaseError> {
    let a = run_engine(case);
    let b = run_engine(case);
    prop_assert_eq!(&a.points, &b.points);
    prop_assert_eq!(&a.all_events, &b.all_events);
    let ja = serde_json::to_string(&a.all_events).unwrap();
    let jb = serde_json::to_string(&b.all_events).unwrap();
    prop_assert_eq!(ja, jb);
    // Round trip through JSON gives the same events.
    let back: Vec<Event> =
        serde_json::from_str(&serde_json::to_string(&a.all_events).unwrap()).unwrap();
    prop_assert_eq!(&back, &a.all_events);
    // Skipping the events does not change any decision.
    prop_assert_eq!(run_silent(case), a.final_state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(case in case_strategy()) {
        check_invariants(&case)?;
    }

    #[test]
    fn engine_matches_the_decimal_reference(case in case_strategy()) {
        check_reference(&case)?;
    }

    #[test]
    fn same_inputs_same_events(case in case_strategy()) {
        check_determinism(&case)?;
    }
}

/// A deterministic walk that exercises every mode, so the reference is also compared on a long
/// path with many sends, holds and momentum flips (not left to chance).
#[test]
fn long_walk_with_all_modes_matches_the_reference() {
    for side in [Side::Long, Side::Short] {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let sign = if side == Side::Long { 1 } else { -1 };
        let mut ticks: i64 = 1_721_212;
        let mut ts = 0i64;
        let points = (0..3000)
            .map(|_| {
                let r = next();
                ticks = (ticks + (r % 41) as i64 - 20 + sign).max(1);
                ts += ((r >> 8) % 60_000) as i64;
                (Decimal::new(ticks, 2), ts)
            })
            .collect();
        let case = Case {
            side,
            tick: Decimal::new(1, 2),
            entry: Decimal::new(1_721_212, 2),
            opened_at: 0,
            config: TrailingConfig {
                activation_percent: Decimal::new(5, 1),
                distance_percent: Decimal::new(3, 1),
                initial_stop_percent: Some(Decimal::new(15, 1)),
                rate_limit: RateLimit {
                    min_interval_seconds: 60,
                    min_improvement_percent: Decimal::new(5, 2),
                    emergency_percent: Decimal::new(3, 1),
                },
                breakeven: Some(Breakeven {
                    trigger_percent: Decimal::new(25, 2),
                    offset_percent: Decimal::new(5, 2),
                }),
                time_activation: Some(TimeActivation {
                    after_seconds: 1800,
                    min_profit_percent: Decimal::new(1, 1),
                }),
                momentum: Some(Momentum {
                    window_seconds: 300,
                    threshold_percent: Decimal::new(2, 1),
                    distance_factor: Decimal::new(5, 1),
                }),
            },
            points,
            close_before: None,
        };
        check_reference(&case).unwrap();
        check_invariants(&case).unwrap();
        check_determinism(&case).unwrap();
    }
}
