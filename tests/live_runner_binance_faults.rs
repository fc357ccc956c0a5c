//! `trailstop live`'s reaction to Binance's rate limit, ban and "would trigger" refusal, end
//! to end against the fake Binance on loopback (feature `live`), as `live_runner_faults.rs`
//! does for Bybit. Each test opens one long of 1 BTC at 17000, lets the runner place its
//! first stop (16830), injects the fault on the next move (a cancel, then a create: Binance
//! has no amend), and checks the reaction on the fake (its stops, its position, its request
//! log) and in the runner's log lines. Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::Duration;

use rust_decimal_macros::dec;

use live_support::binance_runner::{ALGO, ORDER, Run, at, decisions, param};
use live_support::{BTC, read, wait_for};
use trailstop::live::fake_binance::{Fault, FaultKind};

const ONLY_BTC: &str = r#"["BTCUSDT"]"#;

/// The algo-order calls from request `from` on, each as (method, triggerPrice or "-").
fn algo_calls(run: &Run, from: usize) -> Vec<(String, String)> {
    run.requests()[from..]
        .iter()
        .filter(|r| r.path == ALGO)
        .map(|r| {
            (
                r.method.clone(),
                param(r, "triggerPrice").unwrap_or_else(|| "-".into()),
            )
        })
        .collect()
}

/// HTTP 429 with `Retry-After: 2` on the move's cancel: nothing is sent until it has passed
/// (the fake bans a client that goes on: the move would then never land), the move wanted
/// meanwhile replaces the held one, and one cancel and one create go, at the newest stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_one_create_goes_at_the_newest_stop() {
    let run = Run::start(ONLY_BTC, &[]).await;
    run.fake.inject(Fault::on(
        "DELETE",
        ALGO,
        FaultKind::RateLimited { retry_after_s: 2 },
    ));
    let from = run.requests().len();
    run.price(BTC, dec!(17200), at(60_000)).await;
    wait_for("the 429", Duration::from_secs(10), &run.log, async || {
        algo_calls(&run, from).len() == 1
    })
    .await;
    // Meanwhile the market moves on: the newer stop waits with the first.
    run.price(BTC, dec!(17300), at(120_000)).await;
    assert_eq!(run.stop(BTC), Some(dec!(16830)), "the stop rests meanwhile");
    run.wait_stop(BTC, "the newest stop after Retry-After", dec!(17256.75))
        .await;
    assert_eq!(
        algo_calls(&run, from),
        [
            ("DELETE".to_string(), "-".to_string()),
            ("DELETE".into(), "-".into()),
            ("POST".into(), "17256.75".into()),
        ],
        "the refused cancel, then one replace at the newest stop"
    );
    assert_eq!(run.creates_since(from), ["17256.75"]);
    let (text, _run) = run.finish().await;
    assert!(
        text.contains("binance rate limit (HTTP 429): sends wait until"),
        "{text}"
    );
    let cancels = decisions(&text, "cancel stop");
    assert_eq!(cancels.len(), 2, "{text}");
    assert!(
        cancels[0].contains("result=\"rate limited (HTTP 429): held until the reset in 2000 ms\""),
        "{}",
        cancels[0]
    );
    assert!(
        cancels[1].contains("result=\"cancelled\""),
        "{}",
        cancels[1]
    );
    let places = decisions(&text, "place stop");
    assert_eq!(places.len(), 2, "the first stop and the newest: {text}");
    assert!(
        places[1].contains("what=\"place stop 17256.75\""),
        "{}",
        places[1]
    );
    assert!(places[1].contains("result=\"accepted\""), "{}", places[1]);
}

/// HTTP 418 (banned for 3 s) on the move's cancel: no REST at all to the host until the ban
/// ends (by the exchange's own `Retry-After`, not the runner's default 10 minutes), the stop
/// resting meanwhile and `/healthz` degraded; then a REST re-check first, and the newest
/// stop in one replace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_418_stops_all_rest_until_the_ban_ends_then_rechecks_and_sends_the_newest_stop() {
    let mut run = Run::start(ONLY_BTC, &[]).await;
    run.fake.inject(Fault::on(
        "DELETE",
        ALGO,
        FaultKind::Banned { for_ms: 3_000 },
    ));
    let from = run.requests().len();
    run.price(BTC, dec!(17200), at(60_000)).await;
    wait_for(
        "the ban seen",
        Duration::from_secs(10),
        &run.log,
        async || {
            run.health()
                .await
                .is_some_and(|(c, t)| c == 503 && t.contains("banned"))
        },
    )
    .await;
    let (_, why) = run.health().await.unwrap();
    assert!(
        why.contains("binance REST banned (HTTP 418) until"),
        "{why}"
    );
    assert_eq!(run.status().await.unwrap()["circuit"]["binance"], "banned");
    run.price(BTC, dec!(17300), at(120_000)).await;
    assert!(run.alive(), "{}", read(&run.log));
    assert_eq!(run.stop(BTC), Some(dec!(16830)), "the stop rests meanwhile");
    let banned_at = run.requests().len();
    assert_eq!(
        banned_at,
        from + 1,
        "only the refused call: {:?}",
        run.requests()[from..]
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
    run.wait_stop(BTC, "the newest stop after the ban", dec!(17256.75))
        .await;
    let after = &run.requests()[banned_at..];
    assert_eq!(
        after.first().map(|r| (r.method.as_str(), r.path.as_str())),
        Some(("GET", "/fapi/v2/positionRisk")),
        "a re-check first: {:?}",
        after.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(
        algo_calls(&run, banned_at),
        [
            ("DELETE".to_string(), "-".to_string()),
            ("POST".into(), "17256.75".into()),
        ],
        "one replace for both moves"
    );
    wait_for(
        "healthy again",
        Duration::from_secs(10),
        &run.log,
        async || run.health().await.is_some_and(|(c, _)| c == 200),
    )
    .await;
    let (text, _run) = run.finish().await;
    assert!(text.contains("binance bans this IP (HTTP 418)"), "{text}");
    assert!(
        text.contains("the ban is over: re-checking over REST"),
        "{text}"
    );
    let cancels = decisions(&text, "cancel stop");
    assert_eq!(cancels.len(), 2, "{text}");
    assert!(
        cancels[0].contains("result=\"banned (HTTP 418): no REST to the host for 3 s; held\""),
        "{}",
        cancels[0]
    );
    assert!(cancels[1].contains("(held until now)"), "{}", cancels[1]);
    let places = decisions(&text, "place stop");
    assert_eq!(places.len(), 2, "{text}");
    assert!(
        places[1].contains("what=\"place stop 17256.75\""),
        "{}",
        places[1]
    );
}

/// The stop on the exchange keeps working during a 418: a price through it closes the
/// position (its fill comes on the user stream, no REST needed), the trade is written, and
/// after the ban nothing is placed on the closed position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_418_the_resting_stop_still_closes_the_position() {
    let run = Run::start(ONLY_BTC, &[]).await;
    run.fake.inject(Fault::on(
        "DELETE",
        ALGO,
        FaultKind::Banned { for_ms: 3_000 },
    ));
    let from = run.requests().len();
    run.price(BTC, dec!(17200), at(60_000)).await;
    wait_for(
        "the ban seen",
        Duration::from_secs(10),
        &run.log,
        async || {
            run.health()
                .await
                .is_some_and(|(c, t)| c == 503 && t.contains("banned"))
        },
    )
    .await;
    // A gap through the resting stop (16830): it fills at 16800.
    run.fake.set_price(BTC, dec!(16800), true, at(90_000));
    wait_for(
        "the trade written",
        Duration::from_secs(10),
        &run.log,
        async || run.trades() == 1,
    )
    .await;
    assert!(
        run.fake.positions().is_empty(),
        "{:?}",
        run.fake.positions()
    );
    assert_eq!(
        run.requests().len(),
        from + 1,
        "no REST during the ban: {:?}",
        run.requests()[from..]
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
    // Past the ban's end: nothing is placed on the closed position.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(run.creates_since(from), Vec::<String>::new());
    assert_eq!(run.stop(BTC), None);
    let trades = run.trades_text();
    assert!(trades.contains(",16800,initial_stop,"), "{trades}");
    let (text, _run) = run.finish().await;
    assert_eq!(decisions(&text, "place stop").len(), 1, "{text}");
}

/// `-2021` on the move's create (the market went through the new stop between the cancel and
/// the create): one reduce-only market close, the refused price never placed again, and an
/// `exit_now` trade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_would_trigger_closes_at_market_once_and_never_replaces_it() {
    let run = Run::start(ONLY_BTC, &[]).await;
    run.fake
        .inject(Fault::on("POST", ALGO, FaultKind::WouldTrigger));
    let from = run.requests().len();
    run.price(BTC, dec!(17200), at(60_000)).await;
    wait_for(
        "the trade written",
        Duration::from_secs(30),
        &run.log,
        async || run.trades() == 1,
    )
    .await;
    assert!(
        run.fake.positions().is_empty(),
        "{:?}",
        run.fake.positions()
    );
    let closes: Vec<_> = run.requests()[from..]
        .iter()
        .filter(|r| r.method == "POST" && r.path == ORDER)
        .cloned()
        .collect();
    assert_eq!(closes.len(), 1, "{:?}", run.requests());
    assert_eq!(param(&closes[0], "type").as_deref(), Some("MARKET"));
    assert_eq!(param(&closes[0], "reduceOnly").as_deref(), Some("true"));
    assert_eq!(param(&closes[0], "side").as_deref(), Some("SELL"));
    assert_eq!(run.creates_since(from), ["17157"], "never placed again");
    assert_eq!(run.stop(BTC), None, "no stop left behind");
    let trades = run.trades_text();
    assert!(trades.contains(",exit_now,"), "{trades}");
    // Nothing more is sent after the close.
    let settled = run.requests().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        run.requests().len(),
        settled,
        "{:?}",
        &run.requests()[settled..]
    );
    let (text, _run) = run.finish().await;
    let refused = decisions(&text, "place stop 17157");
    assert_eq!(refused.len(), 1, "{text}");
    assert!(
        refused[0].contains("rejected (WouldTrigger"),
        "{}",
        refused[0]
    );
    let close = decisions(&text, "close at market, reduce-only");
    assert_eq!(close.len(), 1, "{text}");
    assert!(close[0].contains("why=\"exit now\""), "{}", close[0]);
}

/// The exchange changed the tick (0.01 → 10) while running: the move's create (17157) is
/// refused `-4014`; the runner's venue reads `exchangeInfo` again and sends it on the new
/// grid, never looser (17160), and the next move goes on the new grid at once (17256.75 →
/// 17260). The run goes on: no fatal refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tick_rerounds_the_stop_and_the_run_goes_on() {
    let mut run = Run::start(ONLY_BTC, &[]).await;
    run.fake.set_tick(BTC, dec!(10));
    let from = run.requests().len();
    run.price(BTC, dec!(17200), at(60_000)).await;
    run.wait_stop(BTC, "the move on the new grid", dec!(17160))
        .await;
    run.price(BTC, dec!(17300), at(120_000)).await;
    run.wait_stop(BTC, "the next move on the new grid", dec!(17260))
        .await;
    assert!(run.alive(), "{}", read(&run.log));
    assert_eq!(run.creates_since(from), ["17157", "17160", "17260"]);
    let info_reads = run.requests()[from..]
        .iter()
        .filter(|r| r.path == "/fapi/v1/exchangeInfo")
        .count();
    assert_eq!(info_reads, 1, "the tick read again once");
    let status = run.status().await.unwrap();
    assert_eq!(
        status["positions"][0]["confirmed_stop"], "17260",
        "{status}"
    );
    let (text, _run) = run.finish().await;
    let places = decisions(&text, "place stop");
    assert_eq!(places.len(), 3, "{text}");
    assert!(places[1].contains("result=\"accepted\""), "{}", places[1]);
}

/// HTTP 429 on the move's create, the old stop already cancelled (the position is bare until
/// a stop lands): nothing is sent during `Retry-After`, the move wanted meanwhile replaces the
/// held create, and the stop that lands is the newest; the refused price is never placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_the_create_lands_only_the_newest_stop() {
    let run = Run::start(ONLY_BTC, &[]).await;
    run.fake.inject(Fault::on(
        "POST",
        ALGO,
        FaultKind::RateLimited { retry_after_s: 2 },
    ));
    let from = run.requests().len();
    run.price(BTC, dec!(17200), at(60_000)).await;
    wait_for(
        "the 429 on the create",
        Duration::from_secs(10),
        &run.log,
        async || run.creates_since(from).len() == 1,
    )
    .await;
    assert_eq!(run.stop(BTC), None, "cancelled, and the create refused");
    run.price(BTC, dec!(17300), at(120_000)).await;
    run.wait_stop(BTC, "the newest stop after Retry-After", dec!(17256.75))
        .await;
    // The held create stays in flight for the lifecycle, so the newer stop first cancels it
    // (`-2011`: never created, read back as gone), then goes.
    assert_eq!(
        run.creates_since(from),
        ["17157", "17256.75"],
        "{:?}",
        algo_calls(&run, from)
    );
    let (text, _run) = run.finish().await;
    let places = decisions(&text, "place stop");
    assert!(
        places
            .iter()
            .any(|l| l.contains("place stop 17157") && l.contains("rate limited (HTTP 429)")),
        "{text}"
    );
    assert!(
        places.last().unwrap().contains("place stop 17256.75"),
        "{text}"
    );
}
