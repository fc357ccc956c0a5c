//! The circuit breaker end to end against the fake Bybit on loopback (feature `live`): five
//! failed sends in a row (HTTP 503s on a move and on its look-ups) open it; while open, moves
//! wait and a missing stop (a new position's first) still goes; after the cooldown
//! (`TRAILSTOP_BREAKER_COOLDOWN_MS`) it half-opens and the one trial send goes; its success
//! closes it and the waiting moves go, each with its newest stop. `/status` shows the circuit
//! at each stage. Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::Duration;

use rust_decimal_macros::dec;

use live_support::{BTC, ETH, Run, STOP_PATH, T0, read, wait_for};
use trailstop::engine::Side;
use trailstop::live::fake_bybit::{Fault, FaultKind};

const LIST_PATH: &str = "/v5/position/list";

async fn circuit(run: &Run) -> Option<String> {
    let s = run.status().await?;
    s["circuit"]["bybit"].as_str().map(str::to_string)
}

async fn wait_circuit(run: &Run, state: &str) {
    wait_for(
        &format!("the circuit {state}"),
        Duration::from_secs(30),
        &run.log,
        async || circuit(run).await.as_deref() == Some(state),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_five_failures_holds_moves_and_a_trial_closes_it() {
    let run = Run::start(r#"["*"]"#, &[("TRAILSTOP_BREAKER_COOLDOWN_MS", "6000")]).await;
    assert_eq!(circuit(&run).await.as_deref(), Some("closed"));

    // The move gets a 503 (ambiguous: failure 1); its look-up gets four more (failures 2–5,
    // retried with backoff); the fifth look-up finds the move not applied, and the move,
    // sent again, waits: the circuit is open.
    run.fake
        .inject(Fault::on(STOP_PATH, FaultKind::ServerError));
    for _ in 0..4 {
        run.fake
            .inject(Fault::on(LIST_PATH, FaultKind::ServerError));
    }
    let calls_before = run.stop_calls().len();
    run.fake.set_price(BTC, dec!(17200), false, T0 + 60_000);
    wait_circuit(&run, "open").await;
    let (code, why) = run.health().await.unwrap();
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("bybit circuit open"), "{why}");
    assert_eq!(run.stop(BTC), Some(dec!(16830)));
    // Only the failed move went.
    assert_eq!(run.stop_calls().len(), calls_before + 1);

    // While open: BTC moves on and its move still waits ...
    run.price(BTC, dec!(17300), T0 + 120_000).await;
    assert_eq!(run.stop_calls().len(), calls_before + 1);
    // ... a new position's missing stop goes at once, and its success leaves it open ...
    run.fake
        .open_position(ETH, Side::Long, dec!(10), T0 + 121_000)
        .unwrap();
    run.wait_stop(ETH, "the missing stop while open", dec!(1980))
        .await;
    assert_eq!(circuit(&run).await.as_deref(), Some("open"));
    // ... and that position's move waits too.
    run.price(ETH, dec!(2040), T0 + 190_000).await;
    assert_eq!(run.stop(ETH), Some(dec!(1980)));
    assert_eq!(run.stop(BTC), Some(dec!(16830)));
    assert_eq!(circuit(&run).await.as_deref(), Some("open"));
    let before_trial = run.stop_calls().len();
    assert_eq!(before_trial, calls_before + 2, "{:?}", run.stop_calls());

    // After the cooldown: half-open; the trial (BTC's move, as the look-up left it: the same
    // client id and stop) is answered slowly, and meanwhile nothing else goes.
    run.fake.inject(Fault::on(
        STOP_PATH,
        FaultKind::TimeoutAfterApply {
            hold: Duration::from_millis(1500),
        },
    ));
    wait_circuit(&run, "half_open").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(circuit(&run).await.as_deref(), Some("half_open"));
    assert_eq!(
        run.stop_calls()[before_trial..],
        [(BTC.to_string(), "17157".to_string())],
        "the trial only: {}",
        read(&run.log)
    );

    // Its success closes it: ETH's waiting move goes at once, and BTC's next point moves
    // BTC's stop on.
    wait_circuit(&run, "closed").await;
    run.wait_stop(ETH, "the waiting move after the trial", dec!(2034.9))
        .await;
    run.price(BTC, dec!(17400), T0 + 200_000).await;
    run.wait_stop(BTC, "BTC moves on", dec!(17356.5)).await;
    wait_for(
        "healthy again",
        Duration::from_secs(10),
        &run.log,
        async || run.health().await.is_some_and(|(c, _)| c == 200),
    )
    .await;
    let (text, _run) = run.finish().await;
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
    };
    assert!(at("bybit circuit open after 5 failed sends") < at("bybit circuit half-open"));
    assert!(at("bybit circuit half-open") < at("bybit circuit closed"));
    assert_eq!(
        text.matches("bybit circuit open after").count(),
        1,
        "{text}"
    );
}
