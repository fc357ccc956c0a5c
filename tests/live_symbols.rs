//! `symbols = ["*"]` end to end against the fake Bybit on loopback (feature `live`): the
//! symbols with a position at start are subscribed; a position opened while running on a
//! symbol not seen yet gets its instrument read, its tickers subscribed (kept across a
//! reconnect) and its stop placed within a second, and then trails on its own prices.
//! Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::{Duration, Instant};

use rust_decimal_macros::dec;

use live_support::{BTC, ETH, KEY, Run, SECRET, T0, read, wait_for};
use trailstop::engine::Side;
use trailstop::live::fake_bybit::Stream;

/// `["*"]`: BTCUSDT (open at start) is subscribed at start, ETHUSDT is not; an ETH position
/// opened mid-run gets its instrument read, its tickers subscribed and its first stop within
/// a second; then each stop trails on its own symbol's prices only, and after the public
/// stream is dropped the reconnect subscribes both again and ETH still trails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_on_a_new_symbol_gets_its_stop_at_once_and_trails_on_its_own_prices() {
    let run = Run::start(r#"["*"]"#, &[]).await;
    assert_eq!(
        run.public_subscribes(),
        [vec![format!("tickers.{BTC}")]],
        "only the symbol with a position at start"
    );
    let eth_info = |r: &Run| {
        r.fake
            .requests()
            .iter()
            .filter(|q| q.path == "/v5/market/instruments-info" && q.query.contains(ETH))
            .count()
    };
    assert_eq!(eth_info(&run), 0);

    let opened = Instant::now();
    run.fake
        .open_position(ETH, Side::Long, dec!(10), T0 + 10_000)
        .unwrap();
    run.wait_stop(ETH, "the new symbol's first stop", dec!(1980))
        .await;
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{took:?}\n{}",
        read(&run.log)
    );
    assert_eq!(eth_info(&run), 1, "{:?}", run.fake.requests());
    assert_eq!(
        run.public_subscribes(),
        [
            vec![format!("tickers.{BTC}")],
            vec![format!("tickers.{ETH}")]
        ]
    );

    // ETH's prices move ETH's stop only.
    run.price(ETH, dec!(2040), T0 + 70_000).await;
    run.wait_stop(ETH, "ETH trails", dec!(2034.9)).await;
    assert_eq!(run.stop(BTC), Some(dec!(16830)));
    // BTC's prices move BTC's stop only.
    run.price(BTC, dec!(17200), T0 + 80_000).await;
    run.wait_stop(BTC, "BTC trails", dec!(17157)).await;
    assert_eq!(run.stop(ETH), Some(dec!(2034.9)));

    // A reconnect subscribes both, and the new symbol's prices still arrive.
    let connections = run.fake.connections(Stream::Public);
    run.fake.drop_streams(Some(Stream::Public));
    wait_for(
        "the public stream back",
        Duration::from_secs(30),
        &run.log,
        async || run.public_subscribes().len() == 3,
    )
    .await;
    assert_eq!(run.fake.connections(Stream::Public), connections + 1);
    assert_eq!(
        run.public_subscribes()[2],
        [format!("tickers.{BTC}"), format!("tickers.{ETH}")]
    );
    run.price(ETH, dec!(2100), T0 + 140_000).await;
    run.wait_stop(ETH, "ETH trails after the reconnect", dec!(2094.75))
        .await;
    assert_eq!(run.stop(BTC), Some(dec!(17157)));

    let status = run.status().await.unwrap();
    let symbols: Vec<&str> = status["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, [BTC, ETH], "{status}");
    assert_eq!(
        run.stop_calls(),
        [
            (BTC.to_string(), "16830".to_string()),
            (ETH.to_string(), "1980".to_string()),
            (ETH.to_string(), "2034.9".to_string()),
            (BTC.to_string(), "17157".to_string()),
            (ETH.to_string(), "2094.75".to_string()),
        ]
    );
    let (text, _run) = run.finish().await;
    assert!(
        text.contains("ETHUSDT: a new symbol: tick size 0.01, tickers subscribed"),
        "{text}"
    );
    assert!(!text.contains(KEY) && !text.contains(SECRET));
}

/// A listed symbol list (not `["*"]`) leaves a position on another symbol alone: no
/// instrument read, no subscription, no stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_on_an_unlisted_symbol_is_not_managed() {
    let run = Run::start(r#"["BTCUSDT"]"#, &[]).await;
    run.fake
        .open_position(ETH, Side::Long, dec!(10), T0 + 10_000)
        .unwrap();
    // A later point on BTC: the private message about ETH was read before it.
    run.price(BTC, dec!(17010), T0 + 20_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run.stop(ETH), None);
    assert_eq!(run.public_subscribes(), [vec![format!("tickers.{BTC}")]]);
    let (text, _run) = run.finish().await;
    assert!(!text.contains("ETHUSDT"), "{text}");
}

/// `["*"]` after a restart: the stored position's symbol has no open position any more (its
/// stop triggered while the runner was down), yet its instrument is read at start, so the
/// position is reconciled as closed while away and its trade written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_position_closed_while_away_is_reconciled_under_star() {
    let mut run = Run::start(r#"["*"]"#, &[]).await;
    run.restart().await;
    wait_for(
        "running again",
        Duration::from_secs(30),
        &run.log,
        async || run.status().await.is_some_and(|s| s["reconciled"] == true),
    )
    .await;
    // Down, and meanwhile the stop triggers on the exchange.
    run.live.kill().unwrap();
    run.live.wait().unwrap();
    run.fake.set_price(BTC, dec!(16800), true, T0 + 60_000);
    wait_for(
        "flat on the exchange",
        Duration::from_secs(10),
        &run.log,
        async || run.fake.position(BTC, 0).side.is_none(),
    )
    .await;
    run.restart_killed();
    let trades = run.dir.path().join("out/trades.csv");
    wait_for(
        "the trade written",
        Duration::from_secs(30),
        &run.log,
        async || std::fs::read_to_string(&trades).is_ok_and(|t| t.lines().count() == 2),
    )
    .await;
    wait_for(
        "reconciled",
        Duration::from_secs(30),
        &run.log,
        async || run.status().await.is_some_and(|s| s["reconciled"] == true),
    )
    .await;
    let (text, run) = run.finish().await;
    assert!(text.contains("position 1: closed while away"), "{text}");
    // Its own stop's fill: the trade says so (not a close by someone else).
    let rows = read(&run.dir.path().join("out/trades.csv"));
    let row: Vec<&str> = rows.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((row[5], row[6]), ("16800", "initial_stop"), "{rows}");
}
