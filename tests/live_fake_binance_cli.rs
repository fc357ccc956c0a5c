//! `trailstop fake-binance` as a user runs it: a data file replayed as the market on a port it
//! picks, waiting for a stream connection, a position opened at the first candle; requests
//! built and signed by `live::binance` read it over REST, the market stream over WebSocket.
//! Every wait is bounded.
#![cfg(feature = "live")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use rust_decimal_macros::dec;
use tokio_tungstenite::tungstenite::Message;

use trailstop::engine::Side;
use trailstop::live::TriggerPrice;
use trailstop::live::binance::request::{self as req, Request};
use trailstop::live::binance::sign;
use trailstop::live::binance::snapshot;
use trailstop::live::binance::stream::{self, StreamMessage};
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

async fn get(addr: &str, r: &Request) -> String {
    let c = Credentials {
        api_key: Secret::new("cli-key"),
        api_secret: Secret::new("cli-secret"),
    };
    let s = sign::sign(&c, r, system_clock()(), 5000);
    let mut b = reqwest::Client::new().get(format!("http://{addr}{}", s.path_and_query(r)));
    if let Some((n, v)) = s.header() {
        b = b.header(n, v);
    }
    let resp = within(b.send()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    within(resp.text()).await.unwrap()
}

#[tokio::test]
async fn the_command_serves_a_replayed_file_to_the_clients() {
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/BTCUSDT-bybit-1m-20221213.csv"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailstop"))
        .args([
            "fake-binance",
            data,
            "--listen",
            "127.0.0.1:0",
            "--open",
            "2022-12-13T00:00:00Z,long,0.5",
            "--interval-ms",
            "5",
            "--api-key-env",
            "FAKE_KEY",
            "--api-secret-env",
            "FAKE_SECRET",
        ])
        .env("FAKE_KEY", "cli-key")
        .env("FAKE_SECRET", "cli-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
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
        first.starts_with("fake-binance listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(first.contains("BTCUSDT tick 0.01, 5760 points"), "{first}");
    let addr = first.split_whitespace().nth(3).unwrap().to_string();

    // Nothing replays before a stream connects: the account is flat.
    let before =
        snapshot::positions(&get(&addr, &req::position_risk(Some("BTCUSDT")).unwrap()).await)
            .unwrap();
    assert!(!before[0].is_open());

    let path = req::market_stream_path(&["BTCUSDT"], TriggerPrice::Mark);
    let (mut ws, _) = within(tokio_tungstenite::connect_async(format!(
        "ws://{addr}{path}"
    )))
    .await
    .unwrap();
    let point = within(async {
        loop {
            if let Some(Ok(Message::Text(t))) = ws.next().await
                && let StreamMessage::Price(p) = stream::parse(t.as_str()).unwrap()
            {
                return p;
            }
        }
    })
    .await;
    assert_eq!(point.symbol, "BTCUSDT");
    assert_eq!(point.ts, T0);
    // The opening at the first candle's open, logged and on the account.
    let logged = within(async {
        loop {
            let line = lines.recv().await.expect("the program runs");
            if line.contains("position BTCUSDT BOTH amount 0.5") {
                return line;
            }
        }
    })
    .await;
    assert!(logged.starts_with(&T0.to_string()), "{logged}");
    let after =
        snapshot::positions(&get(&addr, &req::position_risk(Some("BTCUSDT")).unwrap()).await)
            .unwrap();
    assert_eq!(after[0].side(), Some(Side::Long));
    assert_eq!(after[0].size(), dec!(0.5));
}
