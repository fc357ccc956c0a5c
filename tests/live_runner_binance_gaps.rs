//! `trailstop live` on the fake Binance through what the exchange does to its clients
//! besides answering: pings and the 24-hour cut, duplicate and reordered user-stream
//! messages, request weights, and fills in several executions. The five-position replay of
//! `tests/live_support/binance.rs` in lockstep: the runner must end with the trades of
//! `trailstop backtest` (`venue = "binance"`) whatever the fake did. Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::Duration;

use live_support::binance::Replayed;
use trailstop::live::fake_binance::{Pick, Stream, StreamFault};

/// Pings every 100 ms, a drop after 2 s without a pong, and every connection cut 4 s after
/// it opened (Binance: 3 min, 10 min, 24 h; a runner that did not pong would lose every
/// connection after 2 s): while the replay runs the runner answers the pings (never
/// dropped), reconnects each stream after each cut and re-checks, and its trades and events
/// are the backtest's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pings_and_cuts_the_replay_equals_the_backtest() {
    let run = Replayed::setup(0, |c| {
        c.ping_every = Duration::from_millis(100);
        c.pong_within = Duration::from_millis(2000);
        c.cut_after = Duration::from_millis(4000);
    })
    .await;
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    // Counted while the runner runs (its exit is not a missing pong).
    let counts = [Stream::Market, Stream::Private].map(|s| (s, run.fake.counts(s)));
    run.finish(&mut live).await;
    run.assert_backtest();
    let text = run.log_text();
    for (s, c) in counts {
        assert_eq!(c.dropped_without_pong, 0, "{s:?}: {c:?}");
        assert!(c.cut >= 2 && c.connections > c.cut, "{s:?}: {c:?}");
        assert!(c.pongs >= c.pings / 2 && c.pongs > 0, "{s:?}: {c:?}");
        let name = match s {
            Stream::Market => "market",
            Stream::Private => "user",
        };
        let rechecks = text
            .matches(&format!("{name} stream reconnected: re-checking"))
            .count();
        // (The last cut may not have reconnected yet.)
        assert!(rechecks + 1 >= c.cut, "{name}: {rechecks} re-checks, {c:?}");
    }
}

/// The replay with `faults` on the user stream from the start: the backtest's trades and
/// events (each position closed once, at its stop's fill), no stop ever placed on a flat
/// position, none left resting.
async fn replay_with_stream_faults(faults: &[StreamFault]) -> Replayed {
    let run = Replayed::setup(0, |_| {}).await;
    for f in faults {
        run.fake.inject_stream(f.clone());
    }
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    run.finish(&mut live).await;
    run.assert_backtest();
    assert_eq!(run.fake.stops_without_position(), 0, "{}", run.log_text());
    assert!(
        run.fake.resting_stops().is_empty(),
        "{:?}",
        run.fake.resting_stops()
    );
    run
}

const EVENTS: [&str; 3] = ["ALGO_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"];

/// Every user-stream message sent twice (each `ALGO_UPDATE`, fill and `ACCOUNT_UPDATE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_stream_message_twice_changes_nothing() {
    let faults: Vec<StreamFault> = EVENTS
        .iter()
        .map(|e| StreamFault::twice(Pick::event(e)).always())
        .collect();
    replay_with_stream_faults(&faults).await;
}

/// Each change's `ACCOUNT_UPDATE` first: every stop's trigger tells the flat position
/// before any word of its fill. The runner re-checks over REST rather than closing at the
/// last price, and finds each fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flat_position_told_before_the_stop_fired_changes_nothing() {
    let run = replay_with_stream_faults(&[StreamFault::first(Pick::account()).always()]).await;
    let found = run
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == live_support::binance::ALGO)
        .count();
    assert!(found >= 5, "each fill read back: {found} stop reads");
}

/// The fill and `FINISHED` after the flat position, all twice: the stop was seen firing,
/// so the flat position waits for its fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_told_after_the_flat_position_changes_nothing() {
    let mut faults: Vec<StreamFault> = EVENTS
        .iter()
        .map(|e| StreamFault::twice(Pick::event(e)).always())
        .collect();
    faults.push(StreamFault::last(Pick::order("FILLED")).always());
    faults.push(StreamFault::last(Pick::algo("FINISHED")).always());
    replay_with_stream_faults(&faults).await;
}

/// Every stop fills in three executions at its price: one trade per position, closed only
/// once filled, the backtest's trades and events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_in_three_executions_at_one_price_give_the_backtests_trades() {
    let run = Replayed::setup(0, |c| c.setup.fill_parts = 3).await;
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    run.finish(&mut live).await;
    run.assert_backtest();
}

/// Every stop fills in three executions a tick (0.01) apart, away from the position: each
/// trade's exit is their volume-weighted average, exact — 0.333 at the stop, 0.333 a tick
/// worse, 0.334 two ticks worse: 0.01001 worse than the backtest's fill — and nothing else
/// but the return it makes differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_in_three_executions_walking_the_book_exit_at_their_average() {
    let run = Replayed::setup(0, |c| {
        c.setup.fill_parts = 3;
        c.setup.fill_slip_ticks = 1;
    })
    .await;
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    run.finish(&mut live).await;
    let rows = |text: String| -> Vec<Vec<String>> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let live_rows = rows(std::fs::read_to_string(run.trades()).unwrap());
    let bt_rows = rows(std::fs::read_to_string(run.backtest.join("trades.csv")).unwrap());
    assert_eq!(live_rows.len(), 5, "{}", run.log_text());
    for (l, b) in live_rows.iter().zip(&bt_rows) {
        // exit_price (5) and pnl_pct (7) aside, the same row.
        let without = |r: &Vec<String>| {
            let mut r = r.clone();
            r.remove(7);
            r.remove(5);
            r
        };
        assert_eq!(without(l), without(b), "{l:?} against {b:?}");
        let bt: rust_decimal::Decimal = b[5].parse().unwrap();
        let worse = rust_decimal_macros::dec!(0.01001);
        let want = match b[1].as_str() {
            "long" => bt - worse,
            _ => bt + worse,
        };
        assert_eq!(
            l[5].parse::<rust_decimal::Decimal>().unwrap(),
            want,
            "{l:?}"
        );
        assert_ne!(l[7], b[7]);
    }
}

/// Another client on the IP uses up the request weight when the first position opens
/// (a 2 s window here; Binance: a minute): the runner's next call that weighs is answered 429
/// `-1003` with a `Retry-After`. With the streams cut every 1.5 s, re-checks fall in that
/// wait. The runner waits it out — no REST at all before it ends (a re-check included), so it
/// never earns the 418 a request then would — and every position still ends closed by its
/// stop, none left bare, no stop placed on a flat one; the later positions, opened after
/// the wait, are the backtest's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_request_weight_the_runner_waits_out_the_retry_after() {
    let first_open = 1_670_925_600_000; // 2022-12-13T10:00:00Z, the first entry
    let run = Replayed::setup(0, |c| {
        c.setup.weight_window_ms = 2_000;
        c.setup.exhaust_weight_at = Some(first_open);
        c.cut_after = Duration::from_millis(1500);
    })
    .await;
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    run.finish(&mut live).await;
    let (refused, bans) = run.fake.rate_refusals();
    let text = run.log_text();
    assert!(refused >= 1, "no 429 for the weight: {text}");
    assert_eq!(bans, 0, "a request during the Retry-After: {text}");
    assert!(text.contains("rate limited"), "{text}");
    assert!(text.contains("reconnected: re-checking"), "{text}");
    assert_eq!(run.fake.stops_without_position(), 0, "{text}");
    assert!(
        run.fake.positions().is_empty(),
        "{:?}",
        run.fake.positions()
    );
    assert!(
        run.fake.resting_stops().is_empty(),
        "{:?}",
        run.fake.resting_stops()
    );
    let rows = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let (live_rows, bt_rows) = (rows(&run.trades()), rows(&run.backtest.join("trades.csv")));
    assert_eq!(live_rows.len(), 5, "{text}");
    assert_eq!(live_rows[1..], bt_rows[1..], "{text}");
}
