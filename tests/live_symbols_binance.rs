//! `symbols = ["*"]` on Binance end to end against the fake Binance on loopback (feature
//! `live`), as `live_symbols.rs` does for Bybit: the symbols with a position at start are in
//! the market stream's URL; a position opened while running on a symbol not seen yet gets its
//! instrument read (`exchangeInfo`), its price stream added to the running connection
//! (`{"method":"SUBSCRIBE",…}`, sent again after a reconnect) and its stop placed within a
//! second, and then trails on its own prices. Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::{Duration, Instant};

use rust_decimal_macros::dec;
use serde_json::Value;

use live_support::binance_runner::{ALGO, Run, at, param};
use live_support::{BTC, ETH, read, wait_for};
use trailstop::engine::Side;
use trailstop::live::fake_binance::Stream;

/// The `params` of every `SUBSCRIBE` the market stream received, in order.
fn subscribes(run: &Run) -> Vec<Vec<String>> {
    run.fake
        .received()
        .into_iter()
        .filter(|(s, _)| *s == Stream::Market)
        .filter_map(|(_, text)| {
            let v: Value = serde_json::from_str(&text).ok()?;
            (v["method"] == "SUBSCRIBE").then(|| {
                v["params"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect()
            })
        })
        .collect()
}

/// Every create sent, as (symbol, triggerPrice).
fn creates(run: &Run) -> Vec<(String, String)> {
    run.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == ALGO)
        .map(|r| {
            (
                param(r, "symbol").unwrap_or_default(),
                param(r, "triggerPrice").unwrap_or_default(),
            )
        })
        .collect()
}

fn instrument_reads(run: &Run) -> usize {
    run.requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/exchangeInfo")
        .count()
}

/// `["*"]`: BTCUSDT (open at start) is in the stream's URL, ETHUSDT is not; an ETH position
/// opened mid-run gets its instrument read, its stream subscribed on the running connection
/// and its first stop within a second; then each stop trails on its own symbol's prices
/// only, and after the market stream is dropped the reconnect subscribes ETH again and ETH
/// still trails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_on_a_new_symbol_gets_its_stop_at_once_and_trails_on_its_own_prices() {
    let run = Run::start(r#"["*"]"#, &[]).await;
    assert_eq!(
        subscribes(&run),
        Vec::<Vec<String>>::new(),
        "the URL names BTC"
    );
    let reads = instrument_reads(&run);

    let opened = Instant::now();
    run.fake
        .open_position(ETH, Side::Long, dec!(10), at(10_000))
        .unwrap();
    run.wait_stop(ETH, "the new symbol's first stop", dec!(1980))
        .await;
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{took:?}\n{}",
        read(&run.log)
    );
    assert_eq!(
        instrument_reads(&run),
        reads + 1,
        "ETH's instrument read once"
    );
    assert_eq!(subscribes(&run), [vec!["ethusdt@markPrice@1s".to_string()]]);

    // ETH's prices move ETH's stop only.
    run.price(ETH, dec!(2040), at(70_000)).await;
    run.wait_stop(ETH, "ETH trails", dec!(2034.9)).await;
    assert_eq!(run.stop(BTC), Some(dec!(16830)));
    // BTC's prices move BTC's stop only.
    run.price(BTC, dec!(17200), at(80_000)).await;
    run.wait_stop(BTC, "BTC trails", dec!(17157)).await;
    assert_eq!(run.stop(ETH), Some(dec!(2034.9)));

    // A reconnect subscribes ETH again, and its prices still arrive.
    let connections = run.fake.connections(Stream::Market);
    run.fake.drop_streams(Some(Stream::Market));
    wait_for(
        "the market stream back",
        Duration::from_secs(30),
        &run.log,
        async || subscribes(&run).len() == 2,
    )
    .await;
    assert_eq!(run.fake.connections(Stream::Market), connections + 1);
    assert_eq!(subscribes(&run)[1], ["ethusdt@markPrice@1s"]);
    run.price(ETH, dec!(2100), at(140_000)).await;
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
    let pair = |s: &str, p: &str| (s.to_string(), p.to_string());
    assert_eq!(
        creates(&run),
        [
            pair(BTC, "16830"),
            pair(ETH, "1980"),
            pair(ETH, "2034.9"),
            pair(BTC, "17157"),
            pair(ETH, "2094.75"),
        ]
    );
    let (text, _run) = run.finish().await;
    assert!(
        text.contains(
            "ETHUSDT: a new symbol: tick size 0.01, its stream ethusdt@markPrice@1s subscribed"
        ),
        "{text}"
    );
}

/// A listed symbol list (not `["*"]`) leaves a position on another symbol alone: no
/// instrument read, no subscription, no stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_on_an_unlisted_symbol_is_not_managed() {
    let run = Run::start(r#"["BTCUSDT"]"#, &[]).await;
    let reads = instrument_reads(&run);
    run.fake
        .open_position(ETH, Side::Long, dec!(10), at(10_000))
        .unwrap();
    // A later point on BTC: the user stream's message about ETH was read before it.
    run.price(BTC, dec!(17010), at(20_000)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run.stop(ETH), None);
    assert_eq!(subscribes(&run), Vec::<Vec<String>>::new());
    assert_eq!(instrument_reads(&run), reads);
    let (text, _run) = run.finish().await;
    assert!(!text.contains("ETHUSDT: a new symbol"), "{text}");
}
