//! The two gauges the audit asked for first, end to end (feature `live`), read by scraping
//! `/metrics` of a `trailstop live` process over HTTP at each step of a script:
//! - `trailstop_positions_without_trailing_stop`: on the fake Bybit, a position opened on a
//!   new symbol during a ban cannot be managed (its instrument cannot be read): 1 until the
//!   ban ends and its stop is placed, then 0; a position closed by hand while unmanaged (seen
//!   on the stream, or missed and found by the next listing) leaves it at once;
//! - `trailstop_positions_unprotected`: on the fake Binance, a replace (cancel, then create)
//!   whose create answers slowly, or is held by a rate limit, reads 1 from the cancel's
//!   acknowledgement until the create's, then 0;
//! - the per-venue metric `trailstop_circuit_open` shows the run's exchange only.
//!
//! Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::Duration;

use rust_decimal_macros::dec;

use live_support::binance_runner::{self, ALGO, at};
use live_support::{BTC, ETH, Run, STOP_PATH, T0, scrape_until, wait_for};
use trailstop::engine::Side;
use trailstop::live::fake_binance::{Fault as BinanceFault, FaultKind as BinanceFaultKind};
use trailstop::live::fake_bybit::{Fault, FaultKind, Stream};
use trailstop::live::metrics::{sample, samples};

const WITHOUT: &str = "trailstop_positions_without_trailing_stop";
const UNPROTECTED: &str = "trailstop_positions_unprotected";
const WINDOWS: &str = "trailstop_unprotected_seconds_count";
const WINDOWS_SUM: &str = "trailstop_unprotected_seconds_sum";

/// Windows no longer than `le` seconds.
fn windows_within(text: &str, le: &str) -> f64 {
    sample(text, "trailstop_unprotected_seconds_bucket", &[("le", le)]).unwrap_or(f64::NAN)
}

fn value(text: &str, name: &str) -> f64 {
    sample(text, name, &[]).unwrap_or(f64::NAN)
}

fn positions(text: &str, symbol: &str, state: &str) -> f64 {
    sample(
        text,
        "trailstop_positions",
        &[("symbol", symbol), ("state", state)],
    )
    .unwrap_or(0.0)
}

/// The `venue` labels of `trailstop_circuit_open`, with their values.
fn circuits(text: &str) -> Vec<(String, f64)> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == "trailstop_circuit_open")
        .map(|s| (s.labels["venue"].clone(), s.value))
        .collect()
}

/// Instruments-info requests for `symbol` the fake saw.
fn instrument_reads(run: &Run, symbol: &str) -> usize {
    run.fake
        .requests()
        .iter()
        .filter(|q| q.path == "/v5/market/instruments-info" && q.query.contains(symbol))
        .count()
}

/// Bans the runner (HTTP 403 on BTC's next move, at 17200) and waits until `/status` says so.
async fn ban(run: &Run) {
    run.fake.inject(Fault::on(STOP_PATH, FaultKind::Forbidden));
    run.fake.set_price(BTC, dec!(17200), false, T0 + 60_000);
    wait_for("the ban", Duration::from_secs(30), &run.log, async || {
        run.status()
            .await
            .is_some_and(|s| s["circuit"]["bybit"] == "banned")
    })
    .await;
}

/// `["*"]` on Bybit: ETHUSDT opened during a ban cannot be managed (no REST to read its
/// instrument): without a trailing stop = 1, and nothing unprotected (BTC's stop rests while
/// its move waits); when the ban ends, ETH's first stop is placed: 0. The circuit gauge
/// shows `bybit` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_that_cannot_be_managed_counts_until_its_stop_is_placed() {
    let run = Run::start(r#"["*"]"#, &[("TRAILSTOP_BAN_WAIT_MS", "3000")]).await;
    let text = scrape_until(&run.listen, "the first stop counted", &run.log, |t| {
        positions(t, BTC, "inactive") == 1.0
    })
    .await;
    assert_eq!(
        (value(&text, WITHOUT), value(&text, UNPROTECTED)),
        (0.0, 0.0)
    );
    assert_eq!(circuits(&text), [("bybit".to_string(), 0.0)], "{text}");

    ban(&run).await;
    let text = run.metrics().await.unwrap();
    assert_eq!(
        (value(&text, WITHOUT), value(&text, UNPROTECTED)),
        (0.0, 0.0)
    );
    assert_eq!(run.stop(BTC), Some(dec!(16830)));

    run.fake
        .open_position(ETH, Side::Long, dec!(10), T0 + 61_000)
        .unwrap();
    let text = scrape_until(&run.listen, "ETH without a trailing stop", &run.log, |t| {
        value(t, WITHOUT) == 1.0
    })
    .await;
    assert_eq!(value(&text, UNPROTECTED), 0.0);
    assert_eq!(positions(&text, ETH, "inactive"), 0.0);
    assert_eq!(run.stop(ETH), None);
    assert_eq!(
        run.status().await.unwrap()["circuit"]["bybit"],
        "banned",
        "seen during the ban"
    );

    // The ban's end re-checks: ETH's instrument is read and its first stop placed; BTC's
    // newest stop goes.
    run.wait_stop(ETH, "ETH's first stop after the ban", dec!(1980))
        .await;
    let text = scrape_until(&run.listen, "ETH managed", &run.log, |t| {
        value(t, WITHOUT) == 0.0
    })
    .await;
    assert_eq!(positions(&text, ETH, "inactive"), 1.0);
    assert_eq!(value(&text, UNPROTECTED), 0.0);
    run.wait_stop(BTC, "BTC's newest stop after the ban", dec!(17157))
        .await;
    let text = run.metrics().await.unwrap();
    assert_eq!(circuits(&text), [("bybit".to_string(), 0.0)], "{text}");
    assert!(!text.contains("venue=\"binance\""), "{text}");
    run.finish().await;
}

/// An unmanaged position that closes leaves the gauge: closed by hand with the private
/// stream up (its position message), and closed while its message was lost (the listing of
/// the account at the ban's end no longer has it). Neither is ever managed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmanaged_position_closed_by_hand_leaves_the_gauge() {
    let run = Run::start(r#"["*"]"#, &[("TRAILSTOP_BAN_WAIT_MS", "6000")]).await;
    ban(&run).await;
    run.fake
        .open_position(ETH, Side::Long, dec!(10), T0 + 61_000)
        .unwrap();
    scrape_until(&run.listen, "ETH without a trailing stop", &run.log, |t| {
        value(t, WITHOUT) == 1.0
    })
    .await;

    // Closed by hand: the position message says it is flat.
    run.fake.close_position(ETH, 0, T0 + 62_000).unwrap();
    let text = scrape_until(&run.listen, "the close seen", &run.log, |t| {
        value(t, WITHOUT) == 0.0
    })
    .await;
    assert_eq!(value(&text, UNPROTECTED), 0.0);
    assert_eq!(run.status().await.unwrap()["circuit"]["bybit"], "banned");

    // Opened again, then closed while the private stream is silent: the runner does not know
    // yet ...
    run.fake
        .open_position(ETH, Side::Long, dec!(5), T0 + 63_000)
        .unwrap();
    scrape_until(&run.listen, "ETH unmanaged again", &run.log, |t| {
        value(t, WITHOUT) == 1.0
    })
    .await;
    run.fake.mute_streams(Some(Stream::Private));
    run.fake.close_position(ETH, 0, T0 + 64_000).unwrap();
    // (The stream's task drops the messages it takes while muted: let it take them.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.fake.unmute_streams();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = run.metrics().await.unwrap();
    assert_eq!(value(&text, WITHOUT), 1.0, "the close was not heard");
    assert_eq!(run.status().await.unwrap()["circuit"]["bybit"], "banned");

    // ... until the ban's end lists the account's positions: ETH is not among them.
    run.wait_stop(BTC, "BTC's newest stop after the ban", dec!(17157))
        .await;
    let text = scrape_until(&run.listen, "the listing", &run.log, |t| {
        value(t, WITHOUT) == 0.0
    })
    .await;
    assert_eq!(positions(&text, ETH, "inactive"), 0.0);
    assert_eq!(run.stop(ETH), None);
    assert_eq!(instrument_reads(&run, ETH), 0, "never managed");
    assert!(
        run.stop_calls().iter().all(|(s, _)| s == BTC),
        "{:?}",
        run.stop_calls()
    );
    run.finish().await;
}

/// Binance: a replace is a cancel, then a create. With the create answered 2 s late, the
/// position reads unprotected = 1 from the cancel's acknowledgement until the answer, then
/// 0; with the create refused by the rate limit (429, `Retry-After: 2`), 1 while it is held,
/// then 0 once it is sent again. Each window is observed once, for the time it really lasted
/// (the wall clock: the journal's data time says 0 for both). The circuit gauge shows
/// `binance` only, and `/status` names its circuit `binance`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binance_replace_is_unprotected_until_its_create_rests() {
    let run = binance_runner::Run::start(r#"["BTCUSDT"]"#, &[]).await;
    let stops = || -> Vec<rust_decimal::Decimal> {
        run.fake.resting_stops().into_iter().map(|s| s.2).collect()
    };
    let cancels = || {
        run.fake
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == ALGO)
            .count()
    };
    let text = scrape_until(&run.listen, "the first stop counted", &run.log, |t| {
        positions(t, BTC, "inactive") == 1.0 && value(t, WINDOWS) == 1.0
    })
    .await;
    assert_eq!(
        (value(&text, UNPROTECTED), value(&text, WITHOUT)),
        (0.0, 0.0)
    );
    assert_eq!(circuits(&text), [("binance".to_string(), 0.0)], "{text}");
    assert!(!text.contains("venue=\"bybit\""), "{text}");
    assert_eq!(
        windows_within(&text, "1"),
        1.0,
        "the first create's window is short"
    );
    let sum0 = value(&text, WINDOWS_SUM);
    let status = run.status().await.unwrap();
    assert_eq!(
        status["circuit"],
        serde_json::json!({"binance": "closed"}),
        "{status}"
    );

    // 17200: activation and a replace whose create is answered after 2 s.
    run.fake.inject(BinanceFault::on(
        "POST",
        ALGO,
        BinanceFaultKind::TimeoutAfterApply {
            hold: Duration::from_secs(2),
        },
    ));
    let cancelled = cancels();
    run.fake.set_price(BTC, dec!(17200), false, at(120_000));
    let text = scrape_until(
        &run.listen,
        "unprotected during the create",
        &run.log,
        |t| value(t, UNPROTECTED) == 1.0,
    )
    .await;
    assert_eq!(cancels(), cancelled + 1, "the cancel went");
    assert_eq!(value(&text, WINDOWS), 1.0, "the window is still open");
    let text = scrape_until(&run.listen, "protected after the create", &run.log, |t| {
        value(t, UNPROTECTED) == 0.0
    })
    .await;
    assert_eq!(value(&text, WINDOWS), 2.0);
    let sum1 = value(&text, WINDOWS_SUM);
    assert!((1.9..10.0).contains(&(sum1 - sum0)), "{sum0} → {sum1}");
    assert_eq!(windows_within(&text, "1"), 1.0, "{text}");
    assert_eq!(stops(), [dec!(17157)]);

    // 17400 two minutes later: the next replace's create is rate limited for 2 s, then sent again.
    run.fake.inject(BinanceFault::on(
        "POST",
        ALGO,
        BinanceFaultKind::RateLimited { retry_after_s: 2 },
    ));
    run.fake.set_price(BTC, dec!(17400), false, at(240_000));
    let text = scrape_until(&run.listen, "unprotected while held", &run.log, |t| {
        value(t, UNPROTECTED) == 1.0
    })
    .await;
    assert_eq!(value(&text, WINDOWS), 2.0);
    assert!(stops().is_empty(), "{:?}", stops());
    let text = scrape_until(&run.listen, "protected after the hold", &run.log, |t| {
        value(t, UNPROTECTED) == 0.0
    })
    .await;
    assert_eq!(value(&text, WINDOWS), 3.0);
    let sum2 = value(&text, WINDOWS_SUM);
    assert!((1.9..10.0).contains(&(sum2 - sum1)), "{sum1} → {sum2}");
    assert_eq!(
        (windows_within(&text, "1"), windows_within(&text, "5")),
        (1.0, 3.0),
        "{text}"
    );
    assert_eq!(stops(), [dec!(17356.5)]);
    let rate_limited: f64 = samples(&text)
        .iter()
        .filter(|s| s.name == "trailstop_exchange_errors_total")
        .filter(|s| s.labels.get("class").is_some_and(|c| c == "rate_limited"))
        .map(|s| s.value)
        .sum();
    assert_eq!(rate_limited, 1.0, "{text}");
    assert_eq!(circuits(&text), [("binance".to_string(), 0.0)], "{text}");
    run.finish().await;
}
