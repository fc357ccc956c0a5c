//! `trailstop fake-bybit` as a user runs it: a data file replayed as the market on a port it
//! picks, waiting for a subscriber, a position opened at the first candle; the client of
//! `live::bybit` reads it over REST and the ticker stream. Every wait is bounded.
#![cfg(feature = "live")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rust_decimal_macros::dec;

use trailstop::engine::Side;
use trailstop::live::bybit::request::PositionFilter;
use trailstop::live::bybit::rest::{RestClient, RestConfig};
use trailstop::live::bybit::stream::{StreamMessage, TickerKind};
use trailstop::live::bybit::ws::{StreamKind, WsClient, WsConfig, WsEvent};
use trailstop::live::clock::system_clock;
use trailstop::live::{Credentials, Secret};

const T0: i64 = 1_670_889_600_000;

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("finished within 20 s")
}

#[tokio::test]
async fn the_command_serves_a_replayed_file_to_the_clients() {
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/BTCUSDT-bybit-1m-20221213.csv"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailstop"))
        .args([
            "fake-bybit",
            data,
            "--listen",
            "127.0.0.1:0",
            "--open",
            "2022-12-13T00:00:00Z,long,0.5",
            "--interval-ms",
            "5",
        ])
        .env("FAKE_KEY", "cli-key")
        .env("FAKE_SECRET", "cli-secret")
        .args([
            "--api-key-env",
            "FAKE_KEY",
            "--api-secret-env",
            "FAKE_SECRET",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // Every stdout line, read on a thread for as long as the program runs (a closed pipe
    // would end it).
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = within(lines.recv()).await.expect("a first line");
    assert!(
        first.starts_with("fake-bybit listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(first.contains("BTCUSDT tick 0.01, 5760 points"), "{first}");
    let addr = first
        .split_whitespace()
        .nth(3)
        .expect("the address is the fourth word");

    let rest = RestClient::new(
        RestConfig {
            base_url: format!("http://{addr}"),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(5),
            clock: system_clock(),
        },
        Some(Credentials {
            api_key: Secret::new("cli-key"),
            api_secret: Secret::new("cli-secret"),
        }),
    )
    .unwrap();
    within(rest.sync_clock()).await.unwrap();
    // Nothing replays before a stream subscribes: the account is flat.
    let before = within(rest.positions(PositionFilter::Symbol("BTCUSDT")))
        .await
        .unwrap();
    assert!(!before[0].is_open());

    let mut ws = WsClient::spawn(WsConfig::new(
        &format!("ws://{addr}"),
        StreamKind::Public,
        vec!["tickers.BTCUSDT".into()],
        system_clock(),
    ));
    let first_ticker = within(async {
        loop {
            match ws.next().await.expect("stream alive") {
                WsEvent::Message(StreamMessage::Ticker(t)) => return t,
                WsEvent::Connected { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    // The file's first candle open, stamped with its data time.
    assert_eq!(first_ticker.kind, TickerKind::Snapshot);
    assert_eq!(first_ticker.ts, T0);
    assert_eq!(first_ticker.mark_price, Some(dec!(17208.86)));

    let open = within(async {
        loop {
            let list = rest
                .positions(PositionFilter::Symbol("BTCUSDT"))
                .await
                .unwrap();
            if list[0].is_open() {
                return list[0].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(open.side, Some(Side::Long));
    assert_eq!((open.size, open.avg_price), (dec!(0.5), dec!(17208.86)));
    // The log says what the venue did, in data time.
    let log = within(async {
        loop {
            let l = lines.recv().await.expect("the program is running");
            if l.contains(" position ") {
                return l;
            }
        }
    })
    .await;
    assert_eq!(
        log,
        "1670889600000 position BTCUSDT Buy size 0.5 entry 17208.86 stop 0.00"
    );
    ws.shutdown().await;
    drop(running);
}
