//! Unit tests of the state machine against DESIGN §2 / §2.1, with exact decimals.
//!
//! Every expected value below is computed by hand (the arithmetic is in the comments), never by
//! calling the engine's own helpers. Each rule is checked for a long and for a short.

use super::*;
use crate::engine::{Breakeven, Momentum, RateLimit, TimeActivation};
use rust_decimal_macros::dec;

const LONG: Side = Side::Long;
const SHORT: Side = Side::Short;

fn config(activation: Decimal, distance: Decimal) -> TrailingConfig {
    let mut c = TrailingConfig::with_distance(distance);
    c.activation_percent = activation;
    c
}

/// Every improvement is sent at once (`normal`).
fn no_limit() -> RateLimit {
    RateLimit {
        min_interval_seconds: 0,
        min_improvement_percent: dec!(0),
        emergency_percent: dec!(50),
    }
}

fn rate_limit(interval: u64, improvement: Decimal, emergency: Decimal) -> RateLimit {
    RateLimit {
        min_interval_seconds: interval,
        min_improvement_percent: improvement,
        emergency_percent: emergency,
    }
}

fn open_at(
    side: Side,
    entry: Decimal,
    tick: Decimal,
    c: &TrailingConfig,
    opened_at: i64,
) -> (TrailingStop, Vec<Event>, Option<Intent>) {
    let position = Position::new(7, "BTCUSDT", side, entry, opened_at);
    let mut events = Vec::new();
    let (stop, intent) =
        TrailingStop::open(&position, &Instrument::new(tick), c, &mut events).unwrap();
    (stop, events, intent)
}

fn open(
    side: Side,
    entry: Decimal,
    tick: Decimal,
    c: &TrailingConfig,
) -> (TrailingStop, Vec<Event>, Option<Intent>) {
    open_at(side, entry, tick, c, 0)
}

/// Feeds one point; returns the intent and the events of that point only.
fn feed(stop: &mut TrailingStop, price: Decimal, ts: i64) -> (Option<Intent>, Vec<Event>) {
    let mut events = Vec::new();
    let intent = stop.on_price(price, ts, &mut events).unwrap();
    (intent, events)
}

fn place(stop: &TrailingStop, price: Decimal, origin: StopOrigin) -> Option<Intent> {
    Some(Intent::PlaceStop {
        price: stop.instrument().units(price).unwrap(),
        origin,
    })
}

fn created(side: Side, entry: Decimal, activation_price: Decimal) -> Event {
    Event::Created {
        ts: 0,
        side,
        entry_price: entry,
        activation_price,
    }
}

fn activated(ts: i64, price: Decimal, reason: ActivationReason) -> Event {
    Event::Activated { ts, price, reason }
}

fn raised(
    ts: i64,
    price: Decimal,
    from: Option<Decimal>,
    to: Decimal,
    origin: StopOrigin,
) -> Event {
    Event::StopRaised {
        ts,
        price,
        from,
        to,
        origin,
    }
}

fn sent(
    ts: i64,
    price: Decimal,
    stop: Decimal,
    previous: Option<Decimal>,
    reason: SendReason,
) -> Event {
    Event::UpdateSent {
        ts,
        price,
        stop,
        previous,
        reason,
    }
}

fn held(ts: i64, price: Decimal, desired: Decimal, sent: Decimal, reason: HoldReason) -> Event {
    Event::UpdateHeld {
        ts,
        price,
        desired,
        sent,
        reason,
    }
}

fn sends(events: &[Event]) -> Vec<(Decimal, SendReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::UpdateSent { stop, reason, .. } => Some((*stop, *reason)),
            _ => None,
        })
        .collect()
}

fn holds(events: &[Event]) -> Vec<HoldReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::UpdateHeld { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn counters(stop_updates: u32, updates_held: u32, emergency_updates: u32) -> Counters {
    Counters {
        stop_updates,
        updates_held,
        emergency_updates,
    }
}

// ---------------------------------------------------------------------------------------------
// Profit / activation
// ---------------------------------------------------------------------------------------------

#[test]
fn long_activates_at_the_activation_price_inclusive() {
    // entry 100, activation 2 % -> 100 * 1.02 = 102; distance 1 % -> 102 * 0.99 = 100.98 -> 100.9.
    let c = config(dec!(2.0), dec!(1.0));
    let (mut s, ev, intent) = open(LONG, dec!(100), dec!(0.1), &c);
    assert_eq!(intent, None);
    assert_eq!(ev, vec![created(LONG, dec!(100), dec!(102))]);
    assert_eq!(s.activation_price(), dec!(102));

    // One tick below, then one price unit (1e-8) below: nothing.
    assert_eq!(feed(&mut s, dec!(101.9), 1_000), (None, vec![]));
    assert_eq!(feed(&mut s, dec!(101.99999999), 2_000), (None, vec![]));
    assert_eq!(s.state(), State::Inactive);
    assert_eq!(s.desired_stop(), None);

    let (intent, ev) = feed(&mut s, dec!(102), 3_000);
    assert_eq!(
        ev,
        vec![
            activated(3_000, dec!(102), ActivationReason::Price),
            raised(3_000, dec!(102), None, dec!(100.9), StopOrigin::Trailing),
            sent(3_000, dec!(102), dec!(100.9), None, SendReason::Initial),
        ]
    );
    assert_eq!(intent, place(&s, dec!(100.9), StopOrigin::Trailing));
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.activated_at(), Some(3_000));
    assert_eq!(s.desired_stop(), Some(dec!(100.9)));
    assert_eq!(s.sent_stop(), Some((dec!(100.9), 3_000)));
    assert_eq!(s.extreme(), dec!(102));
    assert_eq!(s.counters(), counters(1, 0, 0));
}

#[test]
fn short_activates_at_the_activation_price_inclusive() {
    // entry 100, activation 2 % -> 100 * 0.98 = 98; distance 1 % -> 98 * 1.01 = 98.98 -> up 99.0.
    let c = config(dec!(2.0), dec!(1.0));
    let (mut s, ev, intent) = open(SHORT, dec!(100), dec!(0.1), &c);
    assert_eq!(intent, None);
    assert_eq!(ev, vec![created(SHORT, dec!(100), dec!(98))]);
    assert_eq!(s.activation_price(), dec!(98));

    assert_eq!(feed(&mut s, dec!(98.1), 1_000), (None, vec![]));
    assert_eq!(feed(&mut s, dec!(98.00000001), 2_000), (None, vec![]));
    assert_eq!(s.state(), State::Inactive);

    let (intent, ev) = feed(&mut s, dec!(98), 3_000);
    assert_eq!(
        ev,
        vec![
            activated(3_000, dec!(98), ActivationReason::Price),
            raised(3_000, dec!(98), None, dec!(99.0), StopOrigin::Trailing),
            sent(3_000, dec!(98), dec!(99.0), None, SendReason::Initial),
        ]
    );
    assert_eq!(intent, place(&s, dec!(99), StopOrigin::Trailing));
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.extreme(), dec!(98));
    assert_eq!(s.sent_stop_units(), s.instrument().units(dec!(99)));
}

#[test]
fn activation_price_with_digits_beyond_the_tick() {
    // 17212.12 * 1.0035 = 17272.362420: a long needs 17272.37 on the 0.01 grid.
    // 17212.12 * 0.9965 = 17151.877580: a short needs 17151.87.
    let c = config(dec!(0.35), dec!(1));
    let (mut l, ev, _) = open(LONG, dec!(17212.12), dec!(0.01), &c);
    assert_eq!(ev, vec![created(LONG, dec!(17212.12), dec!(17272.36242))]);
    assert_eq!(feed(&mut l, dec!(17272.36), 1), (None, vec![]));
    assert_eq!(l.state(), State::Inactive);
    feed(&mut l, dec!(17272.37), 2);
    assert_eq!(l.state(), State::Active);

    let (mut s, ev, _) = open(SHORT, dec!(17212.12), dec!(0.01), &c);
    assert_eq!(ev, vec![created(SHORT, dec!(17212.12), dec!(17151.87758))]);
    assert_eq!(feed(&mut s, dec!(17151.88), 1), (None, vec![]));
    assert_eq!(s.state(), State::Inactive);
    feed(&mut s, dec!(17151.87), 2);
    assert_eq!(s.state(), State::Active);
}

#[test]
fn zero_activation_activates_at_entry() {
    // Long 100 * 0.99 = 99; short 100 * 1.01 = 101, both sent at entry as `initial`.
    for (side, stop) in [(LONG, dec!(99)), (SHORT, dec!(101))] {
        let c = config(dec!(0), dec!(1));
        let (s, ev, intent) = open(side, dec!(100), dec!(0.01), &c);
        assert_eq!(
            ev,
            vec![
                created(side, dec!(100), dec!(100)),
                activated(0, dec!(100), ActivationReason::Price),
                raised(0, dec!(100), None, stop, StopOrigin::Trailing),
                sent(0, dec!(100), stop, None, SendReason::Initial),
            ],
            "{side:?}"
        );
        assert_eq!(intent, place(&s, stop, StopOrigin::Trailing));
        assert_eq!(s.activated_at(), Some(0));
    }
}

// ---------------------------------------------------------------------------------------------
// Trailing stop and tick rounding
// ---------------------------------------------------------------------------------------------

#[test]
fn long_trailing_stop_rounds_down_to_the_tick() {
    let mut c = config(dec!(0), dec!(0.3));
    c.rate_limit = no_limit();
    // On the boundary: 1000 * 0.997 = 997.0 exactly.
    let (s, _, _) = open(LONG, dec!(1000), dec!(0.5), &c);
    assert_eq!(s.desired_stop(), Some(dec!(997.0)));
    // Just off it: 999.99999999 * 0.997 = 996.99999999003 -> down to 996.5.
    let (s, _, _) = open(LONG, dec!(999.99999999), dec!(0.5), &c);
    assert_eq!(s.desired_stop(), Some(dec!(996.5)));

    let (mut s, _, _) = open(LONG, dec!(1000), dec!(0.5), &c);
    // New highs that round to the same stop are not updates: 1000.1 * 0.997 = 997.0997 -> 997.0,
    // 1000.5 * 0.997 = 997.4985 -> 997.0.
    assert_eq!(feed(&mut s, dec!(1000.1), 1_000), (None, vec![]));
    assert_eq!(feed(&mut s, dec!(1000.5), 2_000), (None, vec![]));
    assert_eq!(s.extreme(), dec!(1000.5));
    assert_eq!(s.desired_stop(), Some(dec!(997)));
    // 1001 * 0.997 = 997.997 -> 997.5.
    let (intent, ev) = feed(&mut s, dec!(1001), 3_000);
    assert_eq!(
        ev,
        vec![
            raised(
                3_000,
                dec!(1001),
                Some(dec!(997)),
                dec!(997.5),
                StopOrigin::Trailing
            ),
            sent(
                3_000,
                dec!(1001),
                dec!(997.5),
                Some(dec!(997)),
                SendReason::Normal
            ),
        ]
    );
    assert_eq!(intent, place(&s, dec!(997.5), StopOrigin::Trailing));
    assert_eq!(s.counters(), counters(2, 0, 0));
}

#[test]
fn short_trailing_stop_rounds_up_to_the_tick() {
    let mut c = config(dec!(0), dec!(0.3));
    c.rate_limit = no_limit();
    // On the boundary: 1000 * 1.003 = 1003.0 exactly.
    let (s, _, _) = open(SHORT, dec!(1000), dec!(0.5), &c);
    assert_eq!(s.desired_stop(), Some(dec!(1003.0)));
    // Just off it: 1000.00000001 * 1.003 = 1003.00000001003 -> up to 1003.5.
    let (s, _, _) = open(SHORT, dec!(1000.00000001), dec!(0.5), &c);
    assert_eq!(s.desired_stop(), Some(dec!(1003.5)));

    let (mut s, _, _) = open(SHORT, dec!(1000), dec!(0.5), &c);
    // 999.9 * 1.003 = 1002.8997 -> up to 1003.0: equal, not an update.
    assert_eq!(feed(&mut s, dec!(999.9), 1_000), (None, vec![]));
    assert_eq!(s.extreme(), dec!(999.9));
    // 999.5 * 1.003 = 1002.4985 -> 1002.5.
    let (intent, ev) = feed(&mut s, dec!(999.5), 2_000);
    assert_eq!(
        ev,
        vec![
            raised(
                2_000,
                dec!(999.5),
                Some(dec!(1003)),
                dec!(1002.5),
                StopOrigin::Trailing
            ),
            sent(
                2_000,
                dec!(999.5),
                dec!(1002.5),
                Some(dec!(1003)),
                SendReason::Normal
            ),
        ]
    );
    assert_eq!(intent, place(&s, dec!(1002.5), StopOrigin::Trailing));
    // 999 * 1.003 = 1001.997 -> 1002.0.
    let (_, ev) = feed(&mut s, dec!(999), 3_000);
    assert_eq!(sends(&ev), vec![(dec!(1002), SendReason::Normal)]);
    assert_eq!(s.desired_stop(), Some(dec!(1002)));
}

#[test]
fn the_stop_only_ratchets() {
    let mut c = config(dec!(0), dec!(1));
    c.rate_limit = no_limit();
    // Long: 105 * 0.99 = 103.95; retraces (and 104.99 * 0.99 = 103.9401 -> 103.94) keep it.
    let (mut s, _, _) = open(LONG, dec!(100), dec!(0.01), &c);
    assert_eq!(s.desired_stop(), Some(dec!(99)));
    feed(&mut s, dec!(105), 1_000);
    assert_eq!(s.desired_stop(), Some(dec!(103.95)));
    for (i, p) in [dec!(104.5), dec!(104), dec!(104.99), dec!(104.2)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(feed(&mut s, p, 2_000 + i as i64), (None, vec![]));
        assert_eq!(s.desired_stop(), Some(dec!(103.95)));
        assert_eq!(s.sent_stop(), Some((dec!(103.95), 1_000)));
    }
    assert_eq!(s.extreme(), dec!(105));

    // Short: 95 * 1.01 = 95.95; 95.01 * 1.01 = 95.9601 -> 95.97 is worse and ignored.
    let (mut s, _, _) = open(SHORT, dec!(100), dec!(0.01), &c);
    assert_eq!(s.desired_stop(), Some(dec!(101)));
    feed(&mut s, dec!(95), 1_000);
    assert_eq!(s.desired_stop(), Some(dec!(95.95)));
    for (i, p) in [dec!(95.5), dec!(95.9), dec!(95.01), dec!(95.3)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(feed(&mut s, p, 2_000 + i as i64), (None, vec![]));
        assert_eq!(s.desired_stop(), Some(dec!(95.95)));
    }
    assert_eq!(s.extreme(), dec!(95));
}

// ---------------------------------------------------------------------------------------------
// Initial stop
// ---------------------------------------------------------------------------------------------

#[test]
fn initial_stop_is_sent_at_entry() {
    // Long 100 * 0.97 = 97; short 100 * 1.03 = 103.
    for (side, stop, act) in [(LONG, dec!(97), dec!(102)), (SHORT, dec!(103), dec!(98))] {
        let mut c = config(dec!(2), dec!(1));
        c.initial_stop_percent = Some(dec!(3));
        let (s, ev, intent) = open(side, dec!(100), dec!(0.1), &c);
        assert_eq!(
            ev,
            vec![
                created(side, dec!(100), act),
                raised(0, dec!(100), None, stop, StopOrigin::Initial),
                sent(0, dec!(100), stop, None, SendReason::Initial),
            ],
            "{side:?}"
        );
        assert_eq!(intent, place(&s, stop, StopOrigin::Initial));
        assert_eq!(s.state(), State::Inactive);
        assert_eq!(s.desired_origin(), Some(StopOrigin::Initial));
        assert_eq!(s.counters(), counters(1, 0, 0));
    }
}

#[test]
fn initial_stop_rounds_to_the_safe_side() {
    // 17212.12 * 0.985 = 16953.9382 -> down 16953.9; 17212.12 * 1.015 = 17470.3018 -> up 17470.4.
    let mut c = config(dec!(5), dec!(1));
    c.initial_stop_percent = Some(dec!(1.5));
    let (l, _, _) = open(LONG, dec!(17212.12), dec!(0.1), &c);
    assert_eq!(l.desired_stop(), Some(dec!(16953.9)));
    let (s, _, _) = open(SHORT, dec!(17212.12), dec!(0.1), &c);
    assert_eq!(s.desired_stop(), Some(dec!(17470.4)));
}

#[test]
fn better_trailing_candidate_at_entry_replaces_the_initial_stop() {
    // Initial 3 % (97 / 103), trailing 1 % at entry (99 / 101): only the trailing stop is sent.
    for (side, initial, trailing) in [(LONG, dec!(97), dec!(99)), (SHORT, dec!(103), dec!(101))] {
        let mut c = config(dec!(0), dec!(1));
        c.initial_stop_percent = Some(dec!(3));
        let (s, ev, intent) = open(side, dec!(100), dec!(0.1), &c);
        assert_eq!(
            ev,
            vec![
                created(side, dec!(100), dec!(100)),
                raised(0, dec!(100), None, initial, StopOrigin::Initial),
                activated(0, dec!(100), ActivationReason::Price),
                raised(0, dec!(100), Some(initial), trailing, StopOrigin::Trailing),
                sent(0, dec!(100), trailing, None, SendReason::Initial),
            ],
            "{side:?}"
        );
        assert_eq!(intent, place(&s, trailing, StopOrigin::Trailing));
        assert_eq!(s.counters(), counters(1, 0, 0));
    }
}

#[test]
fn worse_trailing_candidate_at_entry_keeps_the_initial_stop() {
    // Initial 2 % (98 / 102) beats trailing 5 % (95 / 105).
    for (side, initial) in [(LONG, dec!(98)), (SHORT, dec!(102))] {
        let mut c = config(dec!(0), dec!(5));
        c.initial_stop_percent = Some(dec!(2));
        let (s, ev, intent) = open(side, dec!(100), dec!(0.1), &c);
        assert_eq!(s.state(), State::Active);
        assert_eq!(s.desired_stop(), Some(initial));
        assert_eq!(s.desired_origin(), Some(StopOrigin::Initial));
        assert_eq!(intent, place(&s, initial, StopOrigin::Initial));
        assert_eq!(sends(&ev), vec![(initial, SendReason::Initial)]);
    }
}

// ---------------------------------------------------------------------------------------------
// Breakeven
// ---------------------------------------------------------------------------------------------

fn breakeven_config(trigger: Decimal, offset: Decimal) -> TrailingConfig {
    let mut c = config(dec!(2), dec!(1));
    c.breakeven = Some(Breakeven {
        trigger_percent: trigger,
        offset_percent: offset,
    });
    c
}

#[test]
fn long_breakeven_arms_once_then_trailing_takes_over() {
    // trigger 0.5 %: 100.5; stop 100 * 1.001 = 100.1.
    let c = breakeven_config(dec!(0.5), dec!(0.1));
    let (mut s, _, intent) = open(LONG, dec!(100), dec!(0.01), &c);
    assert_eq!(intent, None);
    assert_eq!(feed(&mut s, dec!(100.49), 1_000), (None, vec![]));
    assert!(!s.breakeven_armed());

    let (intent, ev) = feed(&mut s, dec!(100.5), 2_000);
    assert_eq!(
        ev,
        vec![
            Event::BreakevenArmed {
                ts: 2_000,
                price: dec!(100.5),
                stop: dec!(100.1)
            },
            raised(2_000, dec!(100.5), None, dec!(100.1), StopOrigin::Breakeven),
            sent(2_000, dec!(100.5), dec!(100.1), None, SendReason::Initial),
        ]
    );
    assert_eq!(intent, place(&s, dec!(100.1), StopOrigin::Breakeven));
    assert!(s.breakeven_armed());
    assert_eq!(s.state(), State::Inactive);

    // Armed once: no second event, no new stop.
    assert_eq!(feed(&mut s, dec!(100.7), 3_000), (None, vec![]));
    assert_eq!(feed(&mut s, dec!(100.5), 4_000), (None, vec![]));

    // 102 activates: 102 * 0.99 = 100.98; (100.98 - 100.1) / 100.1 = 0.879 % after 68 s: normal.
    let (_, ev) = feed(&mut s, dec!(102), 70_000);
    assert_eq!(
        ev,
        vec![
            activated(70_000, dec!(102), ActivationReason::Price),
            raised(
                70_000,
                dec!(102),
                Some(dec!(100.1)),
                dec!(100.98),
                StopOrigin::Trailing
            ),
            sent(
                70_000,
                dec!(102),
                dec!(100.98),
                Some(dec!(100.1)),
                SendReason::Normal
            ),
        ]
    );
}

#[test]
fn short_breakeven_arms_once_then_trailing_takes_over() {
    // trigger 0.5 %: 99.5; stop 100 * 0.999 = 99.9.
    let c = breakeven_config(dec!(0.5), dec!(0.1));
    let (mut s, _, _) = open(SHORT, dec!(100), dec!(0.01), &c);
    assert_eq!(feed(&mut s, dec!(99.51), 1_000), (None, vec![]));

    let (intent, ev) = feed(&mut s, dec!(99.5), 2_000);
    assert_eq!(
        ev,
        vec![
            Event::BreakevenArmed {
                ts: 2_000,
                price: dec!(99.5),
                stop: dec!(99.9)
            },
            raised(2_000, dec!(99.5), None, dec!(99.9), StopOrigin::Breakeven),
            sent(2_000, dec!(99.5), dec!(99.9), None, SendReason::Initial),
        ]
    );
    assert_eq!(intent, place(&s, dec!(99.9), StopOrigin::Breakeven));
    assert_eq!(feed(&mut s, dec!(99.3), 3_000), (None, vec![]));

    // 98 activates: 98 * 1.01 = 98.98; (99.9 - 98.98) / 99.9 = 0.92 %: normal.
    let (_, ev) = feed(&mut s, dec!(98), 70_000);
    assert_eq!(
        ev,
        vec![
            activated(70_000, dec!(98), ActivationReason::Price),
            raised(
                70_000,
                dec!(98),
                Some(dec!(99.9)),
                dec!(98.98),
                StopOrigin::Trailing
            ),
            sent(
                70_000,
                dec!(98),
                dec!(98.98),
                Some(dec!(99.9)),
                SendReason::Normal
            ),
        ]
    );
}

#[test]
fn breakeven_trigger_and_stop_are_exact_and_rounded_to_the_safe_side() {
    // Long: trigger 17212.12 * 1.005 = 17298.1806; stop 17212.12 * 1.001 = 17229.33212 -> 17229.3.
    // Short: trigger 17212.12 * 0.995 = 17126.0594; stop 17212.12 * 0.999 = 17194.90788 -> 17195.0.
    let mut c = breakeven_config(dec!(0.5), dec!(0.1));
    c.activation_percent = dec!(5);
    let (mut l, _, _) = open(LONG, dec!(17212.12), dec!(0.1), &c);
    assert_eq!(feed(&mut l, dec!(17298.1), 1), (None, vec![]));
    feed(&mut l, dec!(17298.2), 2);
    assert!(l.breakeven_armed());
    assert_eq!(l.desired_stop(), Some(dec!(17229.3)));

    let (mut s, _, _) = open(SHORT, dec!(17212.12), dec!(0.1), &c);
    assert_eq!(feed(&mut s, dec!(17126.1), 1), (None, vec![]));
    feed(&mut s, dec!(17126.0), 2);
    assert!(s.breakeven_armed());
    assert_eq!(s.desired_stop(), Some(dec!(17195.0)));
}

#[test]
fn breakeven_is_not_applied_once_active() {
    // Activation 1 %, distance 2 %, breakeven trigger 1.5 % offset 0.5 %.
    // Long: 101 activates (101 * 0.98 = 98.98); 101.5 (profit 1.5 %) trails to 99.47, no breakeven
    // (which would be 100.5). Short: 99 -> 100.98; 98.5 -> 98.5 * 1.02 = 100.47 (not 99.5).
    for (side, p1, s1, p2, s2) in [
        (LONG, dec!(101), dec!(98.98), dec!(101.5), dec!(99.47)),
        (SHORT, dec!(99), dec!(100.98), dec!(98.5), dec!(100.47)),
    ] {
        let mut c = breakeven_config(dec!(1.5), dec!(0.5));
        c.activation_percent = dec!(1);
        c.distance_percent = dec!(2);
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        feed(&mut s, p1, 1_000);
        assert_eq!(s.desired_stop(), Some(s1));
        let (_, ev) = feed(&mut s, p2, 2_000);
        assert!(!s.breakeven_armed(), "{side:?}");
        assert!(
            !ev.iter().any(|e| matches!(e, Event::BreakevenArmed { .. })),
            "{side:?}"
        );
        assert_eq!(s.desired_stop(), Some(s2), "{side:?}");
        assert_eq!(s.desired_origin(), Some(StopOrigin::Trailing));
    }
}

#[test]
fn breakeven_below_the_initial_stop_does_not_lower_it() {
    // Offset -3 %: breakeven 97 (long) / 103 (short) is worse than the initial 98 / 102.
    for (side, initial, p) in [
        (LONG, dec!(98), dec!(100.5)),
        (SHORT, dec!(102), dec!(99.5)),
    ] {
        let mut c = breakeven_config(dec!(0.5), dec!(-3));
        c.initial_stop_percent = Some(dec!(2));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        let (intent, ev) = feed(&mut s, p, 1_000);
        assert_eq!(intent, None);
        assert!(s.breakeven_armed());
        assert!(!ev.iter().any(|e| matches!(e, Event::StopRaised { .. })));
        assert_eq!(s.desired_stop(), Some(initial));
        assert_eq!(s.desired_origin(), Some(StopOrigin::Initial));
    }
}

// ---------------------------------------------------------------------------------------------
// Time-based activation
// ---------------------------------------------------------------------------------------------

#[test]
fn time_activation_needs_both_age_and_profit() {
    // Opened at 1 000 000; after 3600 s = 3 600 000 ms; min profit 0.2 %; activation 5 % (out of
    // reach). Long: the early 100.5 sets the high, so the stop is 100.5 * 0.99 = 99.495 -> 99.49.
    // Short: low 99.5 -> 99.5 * 1.01 = 100.495 -> up 100.50.
    let t0 = 1_000_000;
    let due = t0 + 3_600_000;
    for (side, early, too_low, enough, stop) in [
        (LONG, dec!(100.5), dec!(100.1), dec!(100.2), dec!(99.49)),
        (SHORT, dec!(99.5), dec!(99.9), dec!(99.8), dec!(100.5)),
    ] {
        let mut c = config(dec!(5), dec!(1));
        c.time_activation = Some(TimeActivation {
            after_seconds: 3600,
            min_profit_percent: dec!(0.2),
        });
        let (mut s, _, _) = open_at(side, dec!(100), dec!(0.01), &c, t0);
        // Profit 0.5 %, one millisecond too early.
        assert_eq!(feed(&mut s, early, due - 1), (None, vec![]), "{side:?}");
        // Old enough, profit 0.1 % < 0.2 %.
        assert_eq!(feed(&mut s, too_low, due), (None, vec![]), "{side:?}");
        assert_eq!(s.state(), State::Inactive);
        // Profit exactly 0.2 %.
        let (intent, ev) = feed(&mut s, enough, due);
        assert_eq!(
            ev,
            vec![
                activated(due, enough, ActivationReason::Time),
                raised(due, enough, None, stop, StopOrigin::Trailing),
                sent(due, enough, stop, None, SendReason::Initial),
            ],
            "{side:?}"
        );
        assert_eq!(intent, place(&s, stop, StopOrigin::Trailing));
        assert_eq!(s.activated_at(), Some(due));
    }
}

#[test]
fn price_activation_wins_over_time_activation() {
    for (side, p) in [(LONG, dec!(105)), (SHORT, dec!(95))] {
        let mut c = config(dec!(5), dec!(1));
        c.time_activation = Some(TimeActivation {
            after_seconds: 10,
            min_profit_percent: dec!(0),
        });
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        let (_, ev) = feed(&mut s, p, 10_000);
        assert_eq!(ev[0], activated(10_000, p, ActivationReason::Price));
    }
}

#[test]
fn time_activation_with_negative_min_profit() {
    // min profit -1 %: a long at 99.0 (profit -1 %) after 60 s activates; at 98.99 it does not.
    // Stop from the high (entry 100): 99.0, which is at the market: exit now.
    for (side, bad, ok) in [
        (LONG, dec!(98.99), dec!(99)),
        (SHORT, dec!(101.01), dec!(101)),
    ] {
        let mut c = config(dec!(5), dec!(1));
        c.time_activation = Some(TimeActivation {
            after_seconds: 60,
            min_profit_percent: dec!(-1),
        });
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        assert_eq!(feed(&mut s, bad, 60_000), (None, vec![]));
        let (intent, ev) = feed(&mut s, ok, 60_000);
        assert_eq!(ev[0], activated(60_000, ok, ActivationReason::Time));
        assert_eq!(intent, Some(Intent::ExitNow));
        assert_eq!(s.state(), State::Triggered);
    }
}

// ---------------------------------------------------------------------------------------------
// Momentum
// ---------------------------------------------------------------------------------------------

fn momentum_config(threshold: Decimal) -> TrailingConfig {
    let mut c = config(dec!(0), dec!(2));
    c.rate_limit = no_limit();
    c.momentum = Some(Momentum {
        window_seconds: 60,
        threshold_percent: threshold,
        distance_factor: dec!(0.5),
    });
    c
}

#[test]
fn long_momentum_tightens_while_it_holds_and_the_ratchet_keeps_it() {
    let c = momentum_config(dec!(1));
    let (mut s, _, _) = open(LONG, dec!(100), dec!(0.01), &c);
    // Entry: no move; 100 * 0.98 = 98.
    assert_eq!(s.desired_stop(), Some(dec!(98)));
    assert!(!s.momentum_active());
    // 30 s: (100.5 - 100) / 100 = 0.5 % < 1 %: 100.5 * 0.98 = 98.49.
    feed(&mut s, dec!(100.5), 30_000);
    assert!(!s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(98.49)));
    // 60 s: the window [0, 60 000] still holds the entry 100: 1 % -> distance 1 %: 101 * 0.99.
    feed(&mut s, dec!(101), 60_000);
    assert!(s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(99.99)));
    // 61 s: window [1 000, 61 000], low 100.5: 0.497 % -> normal distance 101 * 0.98 = 98.98,
    // worse than 99.99: the ratchet keeps 99.99.
    let (intent, ev) = feed(&mut s, dec!(101), 61_000);
    assert!(!s.momentum_active());
    assert_eq!((intent, ev), (None, vec![]));
    assert_eq!(s.desired_stop(), Some(dec!(99.99)));
    // 122 s: window [62 000, 122 000] holds only this point: no move; 101.5 * 0.98 = 99.47, kept.
    assert_eq!(feed(&mut s, dec!(101.5), 122_000), (None, vec![]));
    assert_eq!(s.desired_stop(), Some(dec!(99.99)));
    // A new high without momentum: (102.1 - 101.5) / 101.5 = 0.59 %; 102.1 * 0.98 = 100.058
    // -> 100.05.
    feed(&mut s, dec!(102.1), 122_500);
    assert!(!s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(100.05)));
}

#[test]
fn short_momentum_tightens_while_it_holds_and_the_ratchet_keeps_it() {
    let c = momentum_config(dec!(1));
    let (mut s, _, _) = open(SHORT, dec!(100), dec!(0.01), &c);
    assert_eq!(s.desired_stop(), Some(dec!(102)));
    // (100 - 99.5) / 100 = 0.5 %: 99.5 * 1.02 = 101.49.
    feed(&mut s, dec!(99.5), 30_000);
    assert!(!s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(101.49)));
    // Window high 100 (entry, at the window's start): 1 % -> 99 * 1.01 = 99.99.
    feed(&mut s, dec!(99), 60_000);
    assert!(s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(99.99)));
    // Window high 99.5: (99.5 - 99) / 99.5 = 0.503 % -> 99 * 1.02 = 100.98, kept at 99.99.
    assert_eq!(feed(&mut s, dec!(99), 61_000), (None, vec![]));
    assert!(!s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(99.99)));
    // 122 s: only this point in the window; 98.5 * 1.02 = 100.47, kept at 99.99.
    assert_eq!(feed(&mut s, dec!(98.5), 122_000), (None, vec![]));
    // (98.5 - 97.9) / 98.5 = 0.61 %: 97.9 * 1.02 = 99.858 -> up 99.86.
    feed(&mut s, dec!(97.9), 122_500);
    assert!(!s.momentum_active());
    assert_eq!(s.desired_stop(), Some(dec!(99.86)));
}

#[test]
fn momentum_starting_without_a_new_extreme_tightens_the_stop() {
    // Window 60 s, threshold 1 %, factor 0.5, distance 2 %, every update sent.
    // Long: high 100.5 at 100 s (alone in its window: 100.5 * 0.98 = 98.49); a dip to 99.4, then
    // 100.4 within 30 s: (100.4 - 99.4) / 99.4 = 1.006 % -> from the unchanged high
    // 100.5 * 0.99 = 99.495 -> 99.49.
    // Short: low 99.5 (99.5 * 1.02 = 101.49); 100.7, then 99.6: (100.7 - 99.6) / 100.7 = 1.09 %
    // -> 99.5 * 1.01 = 100.495 -> up 100.50.
    for (side, high, first, dip, back, fast_stop) in [
        (
            LONG,
            dec!(100.5),
            dec!(98.49),
            dec!(99.4),
            dec!(100.4),
            dec!(99.49),
        ),
        (
            SHORT,
            dec!(99.5),
            dec!(101.49),
            dec!(100.7),
            dec!(99.6),
            dec!(100.5),
        ),
    ] {
        let c = momentum_config(dec!(1));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        feed(&mut s, high, 100_000);
        assert_eq!(s.desired_stop(), Some(first));
        assert_eq!(feed(&mut s, dip, 200_000), (None, vec![]));
        assert!(!s.momentum_active());
        let (intent, ev) = feed(&mut s, back, 230_000);
        assert!(s.momentum_active(), "{side:?}");
        assert_eq!(s.extreme(), high);
        assert_eq!(
            ev,
            vec![
                raised(230_000, back, Some(first), fast_stop, StopOrigin::Trailing),
                sent(230_000, back, fast_stop, Some(first), SendReason::Normal),
            ],
            "{side:?}"
        );
        assert_eq!(intent, place(&s, fast_stop, StopOrigin::Trailing));
    }
}

#[test]
fn momentum_window_includes_the_current_point() {
    // Threshold 0 %: with the current point in the window the move is never negative, so momentum
    // holds even while the price falls to a new window low (were the current point left out, the
    // move would be negative here).
    for (side, down) in [(LONG, dec!(99)), (SHORT, dec!(101))] {
        let c = momentum_config(dec!(0));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        assert!(s.momentum_active());
        // At entry the factor applies: 100 * 0.99 = 99 / 100 * 1.01 = 101.
        assert_eq!(
            s.desired_stop(),
            Some(if side == LONG { dec!(99) } else { dec!(101) })
        );
        s.on_price(down, 10_000, &mut NoEvents).unwrap();
        assert!(s.momentum_active(), "{side:?}");
    }
}

#[test]
fn momentum_window_start_is_inclusive() {
    // Exactly 1 % above the entry at ts = window: the entry is inside; one ms later it is not.
    for (side, p) in [(LONG, dec!(101)), (SHORT, dec!(99))] {
        let c = momentum_config(dec!(1));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        s.on_price(p, 60_000, &mut NoEvents).unwrap();
        assert!(s.momentum_active(), "{side:?}");
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        s.on_price(p, 60_001, &mut NoEvents).unwrap();
        // Only the current point is in the window: no move.
        assert!(!s.momentum_active(), "{side:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Exchange update policy
// ---------------------------------------------------------------------------------------------

#[test]
fn long_update_policy_holds_sends_and_overrides() {
    // 60 s, 0.5 %, emergency 2 %; distance 1 %.
    let mut c = config(dec!(0), dec!(1));
    c.rate_limit = rate_limit(60, dec!(0.5), dec!(2));
    let (mut s, ev, _) = open(LONG, dec!(100), dec!(0.01), &c);
    assert_eq!(sends(&ev), vec![(dec!(99), SendReason::Initial)]);

    // 100.4 * 0.99 = 99.396 -> 99.39: 0.39/99 = 0.394 % after 10 s: held, interval.
    let (intent, ev) = feed(&mut s, dec!(100.4), 10_000);
    assert_eq!(intent, None);
    assert_eq!(
        ev,
        vec![
            raised(
                10_000,
                dec!(100.4),
                Some(dec!(99)),
                dec!(99.39),
                StopOrigin::Trailing
            ),
            held(
                10_000,
                dec!(100.4),
                dec!(99.39),
                dec!(99),
                HoldReason::Interval
            ),
        ]
    );
    // 60 s later: interval met, 0.394 % < 0.5 %: held, improvement.
    let (intent, ev) = feed(&mut s, dec!(100.4), 60_000);
    assert_eq!(intent, None);
    assert_eq!(
        ev,
        vec![held(
            60_000,
            dec!(100.4),
            dec!(99.39),
            dec!(99),
            HoldReason::Improvement
        )]
    );
    // 100.6 * 0.99 = 99.594 -> 99.59: 0.596 %: normal.
    let (intent, ev) = feed(&mut s, dec!(100.6), 70_000);
    assert_eq!(intent, place(&s, dec!(99.59), StopOrigin::Trailing));
    assert_eq!(
        ev[1],
        sent(
            70_000,
            dec!(100.6),
            dec!(99.59),
            Some(dec!(99)),
            SendReason::Normal
        )
    );
    // 101 * 0.99 = 99.99: (99.99 - 99.59) / 99.59 = 0.402 %: held (interval, then improvement).
    assert_eq!(
        holds(&feed(&mut s, dec!(101), 80_000).1),
        vec![HoldReason::Interval]
    );
    assert_eq!(
        holds(&feed(&mut s, dec!(101), 130_000).1),
        vec![HoldReason::Improvement]
    );
    assert_eq!(s.sent_stop(), Some((dec!(99.59), 70_000)));
    assert_eq!(s.desired_stop(), Some(dec!(99.99)));
    // 101.2 * 0.99 = 100.188 -> 100.18: 0.592 %, 65 s after the last send: normal.
    let (_, ev) = feed(&mut s, dec!(101.2), 135_000);
    assert_eq!(sends(&ev), vec![(dec!(100.18), SendReason::Normal)]);
    // 103.5 * 0.99 = 102.465 -> 102.46: 2.276 % only 5 s later: emergency.
    let (intent, ev) = feed(&mut s, dec!(103.5), 140_000);
    assert_eq!(intent, place(&s, dec!(102.46), StopOrigin::Trailing));
    assert_eq!(
        ev[1],
        sent(
            140_000,
            dec!(103.5),
            dec!(102.46),
            Some(dec!(100.18)),
            SendReason::Emergency
        )
    );
    // 106 * 0.99 = 104.94: 2.42 % but the normal rule allows it: normal, not emergency.
    let (_, ev) = feed(&mut s, dec!(106), 300_000);
    assert_eq!(sends(&ev), vec![(dec!(104.94), SendReason::Normal)]);
    assert_eq!(s.counters(), counters(5, 4, 1));
}

#[test]
fn short_update_policy_holds_sends_and_overrides() {
    let mut c = config(dec!(0), dec!(1));
    c.rate_limit = rate_limit(60, dec!(0.5), dec!(2));
    let (mut s, ev, _) = open(SHORT, dec!(100), dec!(0.01), &c);
    assert_eq!(sends(&ev), vec![(dec!(101), SendReason::Initial)]);

    // 99.6 * 1.01 = 100.596 -> 100.60: (101 - 100.6) / 101 = 0.396 %.
    let (intent, ev) = feed(&mut s, dec!(99.6), 10_000);
    assert_eq!(intent, None);
    assert_eq!(
        ev,
        vec![
            raised(
                10_000,
                dec!(99.6),
                Some(dec!(101)),
                dec!(100.6),
                StopOrigin::Trailing
            ),
            held(
                10_000,
                dec!(99.6),
                dec!(100.6),
                dec!(101),
                HoldReason::Interval
            ),
        ]
    );
    assert_eq!(
        holds(&feed(&mut s, dec!(99.6), 60_000).1),
        vec![HoldReason::Improvement]
    );
    // 99.4 * 1.01 = 100.394 -> 100.40: 0.594 %: normal.
    let (intent, ev) = feed(&mut s, dec!(99.4), 70_000);
    assert_eq!(intent, place(&s, dec!(100.4), StopOrigin::Trailing));
    assert_eq!(
        ev[1],
        sent(
            70_000,
            dec!(99.4),
            dec!(100.4),
            Some(dec!(101)),
            SendReason::Normal
        )
    );
    // 99 * 1.01 = 99.99: (100.4 - 99.99) / 100.4 = 0.408 %.
    assert_eq!(
        holds(&feed(&mut s, dec!(99), 80_000).1),
        vec![HoldReason::Interval]
    );
    assert_eq!(
        holds(&feed(&mut s, dec!(99), 130_000).1),
        vec![HoldReason::Improvement]
    );
    // 98.8 * 1.01 = 99.788 -> 99.79: 0.608 %: normal.
    let (_, ev) = feed(&mut s, dec!(98.8), 135_000);
    assert_eq!(sends(&ev), vec![(dec!(99.79), SendReason::Normal)]);
    // 96.5 * 1.01 = 97.465 -> 97.47: 2.325 % after 5 s: emergency.
    let (_, ev) = feed(&mut s, dec!(96.5), 140_000);
    assert_eq!(
        ev[1],
        sent(
            140_000,
            dec!(96.5),
            dec!(97.47),
            Some(dec!(99.79)),
            SendReason::Emergency
        )
    );
    // 94 * 1.01 = 94.94: 2.596 %, interval met: normal.
    let (_, ev) = feed(&mut s, dec!(94), 300_000);
    assert_eq!(sends(&ev), vec![(dec!(94.94), SendReason::Normal)]);
    assert_eq!(s.counters(), counters(5, 4, 1));
}

#[test]
fn update_thresholds_are_inclusive() {
    // Distance 50 %, tick 0.001: the long stop is p / 2, the short stop p * 1.5.
    let mut c = config(dec!(0), dec!(50));
    c.rate_limit = rate_limit(60, dec!(0.5), dec!(2));

    // Long: initial 100. 200.998 -> 100.499 (0.499 %) at 60 s: held; 201 -> 100.5 (0.5 %): normal.
    // Then 2 % of 100.5 is 2.01: 205.018 -> 102.509 (1.999 %) held; 205.02 -> 102.51: emergency.
    let (mut s, _, _) = open(LONG, dec!(200), dec!(0.001), &c);
    assert_eq!(s.desired_stop(), Some(dec!(100)));
    assert_eq!(
        holds(&feed(&mut s, dec!(200.998), 60_000).1),
        vec![HoldReason::Improvement]
    );
    assert_eq!(
        sends(&feed(&mut s, dec!(201), 60_000).1),
        vec![(dec!(100.5), SendReason::Normal)]
    );
    assert_eq!(
        holds(&feed(&mut s, dec!(205.018), 70_000).1),
        vec![HoldReason::Interval]
    );
    assert_eq!(
        sends(&feed(&mut s, dec!(205.02), 80_000).1),
        vec![(dec!(102.51), SendReason::Emergency)]
    );
    assert_eq!(s.counters(), counters(3, 2, 1));

    // Short: initial 150. 99.502 -> 149.253 (0.498 %) held; 99.5 -> 149.25 (0.5 %) normal.
    // 2 % of 149.25 is 2.985: 97.512 -> 146.268 (1.998 %) held; 97.51 -> 146.265: emergency.
    let (mut s, _, _) = open(SHORT, dec!(100), dec!(0.001), &c);
    assert_eq!(s.desired_stop(), Some(dec!(150)));
    assert_eq!(
        holds(&feed(&mut s, dec!(99.502), 60_000).1),
        vec![HoldReason::Improvement]
    );
    assert_eq!(
        sends(&feed(&mut s, dec!(99.5), 60_000).1),
        vec![(dec!(149.25), SendReason::Normal)]
    );
    assert_eq!(
        holds(&feed(&mut s, dec!(97.512), 70_000).1),
        vec![HoldReason::Interval]
    );
    assert_eq!(
        sends(&feed(&mut s, dec!(97.51), 80_000).1),
        vec![(dec!(146.265), SendReason::Emergency)]
    );
    assert_eq!(s.counters(), counters(3, 2, 1));
}

// ---------------------------------------------------------------------------------------------
// Exit now, terminal state and errors
// ---------------------------------------------------------------------------------------------

/// Distance 1 %, a 60 s interval and an out-of-reach emergency: the long holds 105 -> 103.95,
/// the short 95 -> 95.95 (sent 99 / 101 at entry).
fn held_through_the_market(side: Side) -> TrailingStop {
    let mut c = config(dec!(0), dec!(1));
    c.rate_limit = rate_limit(60, dec!(0.1), dec!(50));
    let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
    let p = if side == LONG { dec!(105) } else { dec!(95) };
    let (_, ev) = feed(&mut s, p, 10_000);
    assert_eq!(holds(&ev), vec![HoldReason::Interval]);
    s
}

#[test]
fn held_stop_through_the_market_does_not_exit() {
    for (side, through) in [(LONG, dec!(103)), (SHORT, dec!(97))] {
        let mut s = held_through_the_market(side);
        let (intent, ev) = feed(&mut s, through, 20_000);
        assert_eq!(intent, None);
        assert_eq!(holds(&ev), vec![HoldReason::Interval]);
        assert_eq!(s.state(), State::Active);
    }
}

#[test]
fn due_stop_at_or_through_the_market_exits_now() {
    // At the market (p == S) and through it.
    for (side, p, stop) in [
        (LONG, dec!(103.95), dec!(103.95)),
        (LONG, dec!(103.9), dec!(103.95)),
        (SHORT, dec!(95.95), dec!(95.95)),
        (SHORT, dec!(96), dec!(95.95)),
    ] {
        let mut s = held_through_the_market(side);
        let (intent, ev) = feed(&mut s, p, 60_000);
        assert_eq!(intent, Some(Intent::ExitNow), "{side:?} {p}");
        assert_eq!(
            ev,
            vec![Event::ExitNow {
                ts: 60_000,
                price: p,
                stop
            }]
        );
        assert_eq!(s.state(), State::Triggered);
        assert_eq!(s.exit_reason(), Some(ExitReason::ExitNow));
        // Not sent: the counters and the last sent stop are unchanged.
        assert_eq!(s.counters(), counters(1, 1, 0));
        assert_eq!(
            s.sent_stop(),
            Some((if side == LONG { dec!(99) } else { dec!(101) }, 0))
        );

        let mut after = Vec::new();
        assert_eq!(s.on_price(p, 70_000, &mut after), Err(EngineError::Closed));
        assert_eq!(
            s.on_price_units(1, 70_000, &mut after),
            Err(EngineError::Closed)
        );
        assert!(after.is_empty());
    }
}

#[test]
fn due_stop_one_tick_inside_the_market_is_sent() {
    for (side, p) in [(LONG, dec!(103.96)), (SHORT, dec!(95.94))] {
        let mut s = held_through_the_market(side);
        let (_, ev) = feed(&mut s, p, 60_000);
        let stop = if side == LONG {
            dec!(103.95)
        } else {
            dec!(95.95)
        };
        assert_eq!(sends(&ev), vec![(stop, SendReason::Normal)]);
        assert_eq!(s.state(), State::Active);
    }
}

#[test]
fn triggered_is_terminal() {
    for side in [LONG, SHORT] {
        let c = config(dec!(0), dec!(1));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        let fill = s.instrument().units(dec!(99)).unwrap();
        let mut ev = Vec::new();
        s.on_closed(ExitReason::TrailingStop, fill, 5_000, &mut ev);
        assert_eq!(
            ev,
            vec![Event::Triggered {
                ts: 5_000,
                fill_price: dec!(99),
                reason: ExitReason::TrailingStop
            }]
        );
        assert_eq!(s.state(), State::Triggered);
        assert_eq!(s.exit_reason(), Some(ExitReason::TrailingStop));
        let mut after = Vec::new();
        assert_eq!(
            s.on_price(dec!(100), 6_000, &mut after),
            Err(EngineError::Closed)
        );
        assert!(after.is_empty());
    }
}

#[test]
fn out_of_order_and_unrepresentable_prices_are_errors() {
    for side in [LONG, SHORT] {
        let c = config(dec!(1), dec!(1));
        let (mut s, _, _) = open_at(side, dec!(100), dec!(0.01), &c, 10_000);
        let mut ev = Vec::new();
        // Before the entry.
        assert_eq!(
            s.on_price(dec!(100), 9_999, &mut ev),
            Err(EngineError::OutOfOrder {
                ts: 9_999,
                last: 10_000
            })
        );
        s.on_price(dec!(100), 20_000, &mut ev).unwrap();
        // The same ts again is fine; an earlier one is not.
        s.on_price(dec!(100), 20_000, &mut ev).unwrap();
        assert_eq!(
            s.on_price(dec!(100), 19_999, &mut ev),
            Err(EngineError::OutOfOrder {
                ts: 19_999,
                last: 20_000
            })
        );
        // Nine decimals on an 8-decimal instrument.
        assert_eq!(
            s.on_price(dec!(100.000000001), 30_000, &mut ev),
            Err(EngineError::NotRepresentable {
                what: "price",
                value: dec!(100.000000001),
                decimals: 8
            })
        );
        assert!(ev.is_empty());
        // The rejected points changed nothing.
        assert_eq!(s.state(), State::Inactive);
        assert_eq!(s.extreme(), dec!(100));

        // A 2-decimal instrument.
        let position = Position::new(1, "X", side, dec!(100), 0);
        let inst = Instrument::with_price_decimals(dec!(0.01), 2);
        let (mut s, _) = TrailingStop::open(&position, &inst, &c, &mut NoEvents).unwrap();
        assert_eq!(
            s.on_price(dec!(100.001), 1, &mut NoEvents),
            Err(EngineError::NotRepresentable {
                what: "price",
                value: dec!(100.001),
                decimals: 2
            })
        );
        assert!(s.on_price(dec!(100.01), 1, &mut NoEvents).is_ok());
        assert!(matches!(
            s.on_price(dec!(0), 2, &mut NoEvents),
            Err(EngineError::NotPositive { .. })
        ));
    }
}

#[test]
fn exchange_feedback_is_recorded() {
    for (side, stop, market) in [
        (LONG, dec!(99), dec!(98.5)),
        (SHORT, dec!(101), dec!(101.5)),
    ] {
        let c = config(dec!(0), dec!(1));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        let units = |d| s.instrument().units(d).unwrap();
        let (stop_u, market_u) = (units(stop), units(market));
        let mut ev = Vec::new();
        s.on_stop_confirmed(stop_u, 1_000, &mut ev);
        assert_eq!(s.confirmed_stop(), Some(stop));
        let intent = s.on_stop_rejected(stop_u, market_u, 2_000, &mut ev);
        assert_eq!(intent, Intent::ExitNow);
        assert_eq!(
            ev,
            vec![
                Event::StopConfirmed { ts: 1_000, stop },
                Event::StopRejected {
                    ts: 2_000,
                    price: market,
                    stop
                },
                Event::ExitNow {
                    ts: 2_000,
                    price: market,
                    stop
                },
            ]
        );
        assert_eq!(s.state(), State::Triggered);
        assert_eq!(s.exit_reason(), Some(ExitReason::ExitNow));
    }
}

#[test]
fn events_serialise_with_snake_case_reasons() {
    let c = config(dec!(0), dec!(1));
    let (_, ev, _) = open(SHORT, dec!(100), dec!(0.01), &c);
    let json = serde_json::to_string(&ev[3]).unwrap();
    assert_eq!(
        json,
        r#"{"type":"UpdateSent","ts":0,"price":"100","stop":"101","previous":null,"reason":"initial"}"#
    );
}

#[test]
fn config_decimals_with_trailing_zeros_behave_like_the_plain_value() {
    // A value such as "0.5000000000000000000000" passes validation (it has one significant
    // decimal); the engine must not treat its 22-digit scale as precision (i128 overflow).
    let plain = config(dec!(1), dec!(0.5));
    let mut padded = config(
        Decimal::from_i128_with_scale(10_i128.pow(22), 22),
        Decimal::from_i128_with_scale(5 * 10_i128.pow(21), 22),
    );
    padded.initial_stop_percent = Some(Decimal::from_i128_with_scale(2 * 10_i128.pow(22), 22));
    padded.momentum = Some(Momentum {
        window_seconds: 60,
        threshold_percent: Decimal::from_i128_with_scale(10_i128.pow(22), 22),
        distance_factor: Decimal::from_i128_with_scale(5 * 10_i128.pow(22), 23),
    });
    padded.validate().unwrap();
    for side in [LONG, SHORT] {
        let (mut a, _, _) = open(side, dec!(60000), dec!(0.1), &plain);
        let (mut b, _, _) = open(side, dec!(60000), dec!(0.1), &padded);
        // 60000 * 1.01 = 60600 activates the long; 59400 the short.
        let p = if side == LONG {
            dec!(60600)
        } else {
            dec!(59400)
        };
        a.on_price(p, 1_000, &mut NoEvents).unwrap();
        b.on_price(p, 1_000, &mut NoEvents).unwrap();
        // 60600 * 0.995 = 60297 (long); 59400 * 1.005 = 59697 (short). With momentum the padded
        // config's distance is 0.25 %: 60600 * 0.9975 = 60448.5 / 59400 * 1.0025 = 59548.5.
        let (plain_stop, padded_stop) = if side == LONG {
            (dec!(60297), dec!(60448.5))
        } else {
            (dec!(59697), dec!(59548.5))
        };
        assert_eq!(a.desired_stop(), Some(plain_stop));
        assert_eq!(b.desired_stop(), Some(padded_stop));
    }
}

// ---------------------------------------------------------------------------------------------
// Seed formula table
// ---------------------------------------------------------------------------------------------

struct Row {
    side: Side,
    entry: Decimal,
    price: Decimal,
    activation: Decimal,
    distance: Decimal,
    tick: Decimal,
    /// `(p - entry) / entry * 100` (long), `(entry - p) / entry * 100` (short).
    profit: Decimal,
    activation_price: Decimal,
    /// The desired stop after the point, if trailing is active then.
    stop: Option<Decimal>,
}

#[rustfmt::skip]
fn seed_rows() -> Vec<Row> {
    let r = |side, entry, price, activation, distance, tick, profit, activation_price, stop| Row {
        side, entry, price, activation, distance, tick, profit, activation_price, stop,
    };
    vec![
        // 101.5 >= 101; 101.5 * 0.995 = 100.9925 -> 100.99.
        r(LONG, dec!(100), dec!(101.5), dec!(1.0), dec!(0.5), dec!(0.01), dec!(1.5), dec!(101), Some(dec!(100.99))),
        // 98.5 <= 99; 98.5 * 1.005 = 98.9925 -> 99.00.
        r(SHORT, dec!(100), dec!(98.5), dec!(1.0), dec!(0.5), dec!(0.01), dec!(1.5), dec!(99), Some(dec!(99.00))),
        // 160 / 16000 = 1 %; 16160 * 0.997 = 16111.52 -> 16111.5.
        r(LONG, dec!(16000), dec!(16160), dec!(0.5), dec!(0.3), dec!(0.1), dec!(1), dec!(16080), Some(dec!(16111.5))),
        // 15840 * 1.003 = 15887.52 -> 15887.6.
        r(SHORT, dec!(16000), dec!(15840), dec!(0.5), dec!(0.3), dec!(0.1), dec!(1), dec!(15920), Some(dec!(15887.6))),
        // 40 / 16000 = 0.25 % < 0.5 %: inactive.
        r(LONG, dec!(16000), dec!(16040), dec!(0.5), dec!(0.3), dec!(0.1), dec!(0.25), dec!(16080), None),
        // An adverse move for the short: -0.25 %.
        r(SHORT, dec!(16000), dec!(16040), dec!(0.5), dec!(0.3), dec!(0.1), dec!(-0.25), dec!(15920), None),
        // Activation 0: active at entry; the extreme stays the entry: 250 * 0.98 = 245.
        r(LONG, dec!(250), dec!(240), dec!(0), dec!(2), dec!(0.01), dec!(-4), dec!(250), Some(dec!(245))),
        // 250 * 1.02 = 255.
        r(SHORT, dec!(250), dec!(260), dec!(0), dec!(2), dec!(0.01), dec!(-4), dec!(250), Some(dec!(255))),
        // Small prices: 0.000412 * 0.99 = 0.00040788 -> 0.0004078.
        r(LONG, dec!(0.0004), dec!(0.000412), dec!(2), dec!(1), dec!(0.0000001), dec!(3), dec!(0.000408), Some(dec!(0.0004078))),
        // 0.000388 * 1.015 = 0.00039382 -> up 0.0003939.
        r(SHORT, dec!(0.0004), dec!(0.000388), dec!(2), dec!(1.5), dec!(0.0000001), dec!(3), dec!(0.000392), Some(dec!(0.0003939))),
        // Exactly at the activation price: 204 * 0.9975 = 203.49.
        r(LONG, dec!(200), dec!(204), dec!(2), dec!(0.25), dec!(0.01), dec!(2), dec!(204), Some(dec!(203.49))),
        // 196 * 1.0025 = 196.49.
        r(SHORT, dec!(200), dec!(196), dec!(2), dec!(0.25), dec!(0.01), dec!(2), dec!(196), Some(dec!(196.49))),
        // One tick short of it: 3.99 / 200 = 1.995 %.
        r(LONG, dec!(200), dec!(203.99), dec!(2), dec!(0.25), dec!(0.01), dec!(1.995), dec!(204), None),
        r(SHORT, dec!(200), dec!(196.01), dec!(2), dec!(0.25), dec!(0.01), dec!(1.995), dec!(196), None),
        // 1234.5 / 60000 = 2.0575 %; 60000 * 1.0175 = 61050; 61234.5 * 0.992 = 60744.624 -> 60744.5.
        r(LONG, dec!(60000), dec!(61234.5), dec!(1.75), dec!(0.8), dec!(0.5), dec!(2.0575), dec!(61050), Some(dec!(60744.5))),
        // 60000 * 0.9825 = 58950; 58765.5 * 1.008 = 59235.624 -> up 59236.
        r(SHORT, dec!(60000), dec!(58765.5), dec!(1.75), dec!(0.8), dec!(0.5), dec!(2.0575), dec!(58950), Some(dec!(59236))),
    ]
}

#[test]
fn seed_formula_table() {
    for (i, row) in seed_rows().iter().enumerate() {
        let label = format!("row {i}: {:?} {} -> {}", row.side, row.entry, row.price);

        // Activation price, activation and the trailing stop.
        let c = config(row.activation, row.distance);
        let (mut s, ev, _) = open(row.side, row.entry, row.tick, &c);
        assert_eq!(
            ev[0],
            created(row.side, row.entry, row.activation_price),
            "{label}"
        );
        assert_eq!(s.activation_price(), row.activation_price, "{label}");
        s.on_price(row.price, 60_000, &mut NoEvents).unwrap();
        let active = s.state() == State::Active;
        assert_eq!(active, row.stop.is_some(), "{label}");
        assert_eq!(s.desired_stop(), row.stop, "{label}");

        // Profit, through time-based activation: a minimum of exactly the row's profit
        // activates at this point, one unit (1e-8 %) more does not.
        let profit_activates = |min_profit: Decimal| {
            let mut c = config(dec!(99), row.distance);
            c.time_activation = Some(TimeActivation {
                after_seconds: 60,
                min_profit_percent: min_profit,
            });
            let (mut s, _, _) = open(row.side, row.entry, row.tick, &c);
            let mut ev = Vec::new();
            s.on_price(row.price, 60_000, &mut ev).unwrap();
            let by_time = ev.iter().any(|e| {
                matches!(
                    e,
                    Event::Activated {
                        reason: ActivationReason::Time,
                        ..
                    }
                )
            });
            assert_eq!(by_time, s.state() != State::Inactive, "{label}");
            by_time
        };
        assert!(profit_activates(row.profit), "{label}");
        assert!(!profit_activates(row.profit + dec!(0.00000001)), "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// Quiet bounds (the backtester's fast path)
// ---------------------------------------------------------------------------------------------

/// With momentum able to tighten the stop, the bounds stop exactly at the first price that
/// would switch it on against the lowest window minimum the points allow.
#[test]
fn quiet_bounds_keep_momentum_off_to_the_tick() {
    // Window 60 s, threshold 1 %, factor 0.5, distance 2 %, every update sent.
    // Long: 100.9 at 30 s (0.9 %, off): desired 100.9 * 0.98 = 98.882 -> 98.88, while momentum
    // would give 100.9 * 0.99 = 99.891 -> 99.89. Resting stop 98.88: points stay at or above
    // 98.89, so the window minimum can fall to 98.89; 98.89 * 1.01 = 99.8789: quiet up to one
    // unit (1e-8) below; 99.88 switches momentum on, 99.87 does not.
    // Short: 99.1 at 30 s: desired 99.1 * 1.02 = 101.082 -> up 101.09, momentum 99.1 * 1.01 =
    // 100.091 -> 100.10. Points stay at or below 101.08; 101.08 * 0.99 = 100.0692: quiet down
    // to one unit above; 100.06 switches momentum on, 100.07 does not.
    for (side, move_to, floor, edge, on, off) in [
        (
            LONG,
            dec!(100.9),
            dec!(98.89),
            dec!(99.8789),
            dec!(99.88),
            dec!(99.87),
        ),
        (
            SHORT,
            dec!(99.1),
            dec!(101.08),
            dec!(100.0692),
            dec!(100.06),
            dec!(100.07),
        ),
    ] {
        let c = momentum_config(dec!(1));
        let (mut s, _, _) = open(side, dec!(100), dec!(0.01), &c);
        feed(&mut s, move_to, 30_000);
        assert!(!s.momentum_active());
        let sign = side.sign();
        let inst = *s.instrument();
        let units = |d: Decimal| inst.units(d).unwrap();
        let b = s.quiet_bounds(sign * units(floor)).unwrap();
        assert_eq!(b.best_max, sign * units(edge) - 1, "{side:?}");
        assert_eq!(b.worst_min, sign * units(floor), "{side:?}");
        assert_eq!((b.until_ts, b.held), (i64::MAX, false));
        for (price, fast) in [(on, true), (off, false)] {
            let mut t = s.clone();
            let before = t.desired_stop();
            feed(&mut t, floor, 40_000);
            feed(&mut t, price, 50_000);
            assert_eq!(t.momentum_active(), fast, "{side:?} {price}");
            assert_eq!(t.desired_stop() != before, fast, "{side:?} {price}");
        }
        // Without a floor the points must stay above the window's minimum (the entry, 100):
        // 100 * 1.01 = 101 is beyond the extreme, so the extreme bounds them.
        let b = s.quiet_bounds(i64::MIN).unwrap();
        assert_eq!(b.worst_min, sign * units(dec!(100)), "{side:?}");
        assert_eq!(b.best_max, sign * units(move_to), "{side:?}");
    }
}

/// A held improvement: the points are quiet (and each one counted) until the interval opens
/// when the improvement alone would pass, for good when it would not.
#[test]
fn quiet_bounds_with_a_held_update() {
    // Distance 1 %, interval 60 s, minimum improvement 0.5 %, emergency 5 %. Long from 100:
    // stop 99 sent at 0. 100.2 at 10 s: 99.198 -> 99.19, +0.19 % over 99: held for good.
    // 100.9 at 20 s: 99.891 -> 99.89, +0.9 %: held until 60 s.
    let mut c = config(dec!(0), dec!(1));
    c.rate_limit = rate_limit(60, dec!(0.5), dec!(5));
    let (mut s, _, _) = open(LONG, dec!(100), dec!(0.01), &c);
    let inst = *s.instrument();
    let units = |d: Decimal| inst.units(d).unwrap();
    let floor = units(dec!(99.01));
    assert_eq!(s.sent_stop(), Some((dec!(99), 0)));
    feed(&mut s, dec!(100.2), 10_000);
    assert_eq!(s.desired_stop(), Some(dec!(99.19)));
    let b = s.quiet_bounds(floor).unwrap();
    let expect = (i64::MAX, true, units(dec!(100.2)));
    assert_eq!((b.until_ts, b.held, b.best_max), expect);
    feed(&mut s, dec!(100.9), 20_000);
    let b = s.quiet_bounds(floor).unwrap();
    let expect = (60_000, true, units(dec!(100.9)));
    assert_eq!((b.until_ts, b.held, b.best_max), expect);
    // Each absorbed point counts as held, as it would point by point.
    let held = s.counters().updates_held;
    s.absorb_within(units(dec!(100.5)), 59_999, std::iter::empty(), 4);
    assert_eq!(s.counters().updates_held, held + 4);
    // At 60 s the update goes out.
    let (intent, _) = feed(&mut s, dec!(100.5), 60_000);
    assert_eq!(intent, place(&s, dec!(99.89), StopOrigin::Trailing));
}

/// A tick too coarse for the price: a long stop that rounds down to zero, a short one that
/// rounds up to a single tick, initial, breakeven or trailing, is an error naming the tick and
/// the price (the XRP/ETH case: prices near 0.0014 on a 0.01 tick sent a stop at 0).
#[test]
fn stops_that_round_to_zero_or_to_one_tick_are_errors() {
    let opened = |side, entry, c: &TrailingConfig| {
        let position = Position::new(3, "XRPETH", side, entry, 0);
        TrailingStop::open(&position, &Instrument::new(dec!(0.01)), c, &mut NoEvents)
    };
    // Long, trailing from the entry: 0.00141342 * 0.995 = 0.0014063529 -> 0.
    let c = config(dec!(0), dec!(0.5));
    let e = opened(LONG, dec!(0.00141342), &c).unwrap_err();
    assert_eq!(
        e.to_string(),
        "position 3 (long, entry 0.00141342): the trailing stop 0.0014063529 (0.5 % from \
         0.00141342) rounds down to 0 at tick_size 0.01: the tick is too coarse for the price; \
         use the instrument's tick"
    );
    // Short initial stop: 0.00141342 * 1.02 = 0.0014416884 -> 0.01.
    let mut c = config(dec!(1), dec!(0.5));
    c.initial_stop_percent = Some(dec!(2));
    let e = opened(SHORT, dec!(0.00141342), &c).unwrap_err();
    assert!(
        e.to_string().contains(
            "the initial stop 0.0014416884 (2 % from 0.00141342) rounds up to 0.01 at tick_size 0.01"
        ),
        "{e}"
    );
    // Breakeven: 0.005 * 1.001 -> 0, refused at open though it is not armed yet.
    let mut c = config(dec!(5), dec!(1));
    c.breakeven = Some(Breakeven {
        trigger_percent: dec!(1),
        offset_percent: dec!(0.1),
    });
    let e = opened(LONG, dec!(0.005), &c).unwrap_err();
    assert!(
        e.to_string()
            .contains("the breakeven stop 0.005005 (0.1 % from 0.005) rounds down to 0"),
        "{e}"
    );
    // A short whose price falls below a tick: the stop that follows it rounds up to 0.01.
    let c = config(dec!(0), dec!(1));
    let (mut s, _, _) = open(SHORT, dec!(1), dec!(0.01), &c);
    assert_eq!(s.sent_stop(), Some((dec!(1.01), 0)));
    let mut events = Vec::new();
    s.on_price(dec!(0.5), 1_000, &mut events).unwrap();
    assert_eq!(s.desired_stop(), Some(dec!(0.51)));
    let e = s.on_price(dec!(0.004), 2_000, &mut events).unwrap_err();
    assert!(
        e.to_string().contains(
            "the trailing stop 0.00404 (1 % from 0.004) rounds up to 0.01 at tick_size 0.01"
        ),
        "{e}"
    );
    // One tick above zero is still a stop: 1.01 * 0.99 = 0.9999 -> 0.99.
    open(LONG, dec!(1.01), dec!(0.01), &c);
}
