//! `symbols = ["*"]` end to end against the fake Bybit on loopback (feature `live`): the
//! symbols with a position at start are subscribed; a position opened while running on a
//! symbol not seen yet gets its instrument read, its tickers subscribed (kept across a
//! reconnect) and its stop placed within a second, and then trails on its own prices.
//! Every wait is bounded.
#![cfg(feature = "live")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::engine::Side;
use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, InstrumentSpec, Setup, Stream};

const KEY: &str = "symbols-test-key-5e07a1";
const SECRET: &str = "symbols-test-secret-9d24f6";
const BTC: &str = "BTCUSDT";
const ETH: &str = "ETHUSDT";
const T0: i64 = 1_670_889_600_000;
const STOP_PATH: &str = "/v5/position/trading-stop";

/// Activation at +0.3 %, 0.25 % behind, an initial stop 1 % below the entry: a long at 17000
/// rests at 16830 first (at 17200: 17157); a long at 2000 at 1980 (at 2040: 2034.9).
fn write_live_toml(dir: &Path, fake: &FakeBybit, listen: &str, symbols: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "symbols"
[venue]
exchange = "bybit"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_SYMBOLS_KEY"
api_secret_env = "TS_SYMBOLS_SECRET"
[positions]
symbols = {symbols}
[trailing]
activation_percent = "0.3"
distance_percent = "0.25"
initial_stop_percent = "1.0"
[trailing.rate_limit]
min_interval_seconds = 60
min_improvement_percent = "0.1"
emergency_percent = "1.0"
[store]
db = "live.sqlite"
out = "out"
[http]
listen = "{listen}"
"#,
            fake.rest_url(),
            fake.ws_url()
        ),
    )
    .unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Polls until `done`, at most `within`.
async fn wait_for(what: &str, within: Duration, log: &Path, mut done: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + within;
    while !done().await {
        assert!(
            Instant::now() < until,
            "{what}: not within {within:?}\n{}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The fake (BTCUSDT and ETHUSDT listed, a long of 1 BTC at 17000 open) and `trailstop live`
/// on it.
pub struct Run {
    pub dir: tempfile::TempDir,
    pub fake: FakeBybit,
    pub listen: String,
    pub log: PathBuf,
    pub live: Child,
}

impl Run {
    /// `symbols`: the config's list as TOML; `env`: the runner's extra environment.
    pub async fn start(symbols: &str, env: &[(&str, &str)]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBybit::start(FakeConfig::new(Setup::new(
            KEY,
            SECRET,
            vec![
                InstrumentSpec::new(BTC, dec!(0.01)),
                InstrumentSpec::new(ETH, dec!(0.01)),
            ],
        )))
        .await
        .unwrap();
        fake.set_price(BTC, dec!(17000), true, T0);
        fake.set_price(ETH, dec!(2000), true, T0);
        fake.open_position(BTC, Side::Long, dec!(1), T0).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let config = write_live_toml(dir.path(), &fake, &listen, symbols);
        let log = dir.path().join("live.log");
        let live = Command::new(env!("CARGO_BIN_EXE_trailstop"))
            .arg("live")
            .arg(&config)
            .env("TS_SYMBOLS_KEY", KEY)
            .env("TS_SYMBOLS_SECRET", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let run = Run {
            dir,
            fake,
            listen,
            log,
            live,
        };
        run.wait_stop(BTC, "the first stop", dec!(16830)).await;
        run
    }

    pub fn stop(&self, symbol: &str) -> Option<Decimal> {
        self.fake.position(symbol, 0).stop_loss
    }

    pub async fn wait_stop(&self, symbol: &str, what: &str, stop: Decimal) {
        wait_for(what, Duration::from_secs(30), &self.log, async || {
            self.stop(symbol) == Some(stop)
        })
        .await;
    }

    /// Sets `symbol`'s price and waits until the runner took the point (its status shows it).
    pub async fn price(&self, symbol: &str, price: Decimal, ts: i64) {
        self.fake.set_price(symbol, price, false, ts);
        wait_for(
            "the point taken",
            Duration::from_secs(30),
            &self.log,
            async || {
                self.status()
                    .await
                    .is_some_and(|s| s["symbols"][symbol]["last_price_ts"] == ts)
            },
        )
        .await;
    }

    pub async fn status(&self) -> Option<Value> {
        let url = format!("http://{}/status", self.listen);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        serde_json::from_str(&text).ok()
    }

    pub async fn health(&self) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://{}/healthz", self.listen))
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    /// The `args` of every subscribe the public stream received, in order.
    pub fn public_subscribes(&self) -> Vec<Vec<String>> {
        self.fake
            .received()
            .into_iter()
            .filter(|(s, _)| *s == Stream::Public)
            .filter_map(|(_, text)| {
                let v: Value = serde_json::from_str(&text).ok()?;
                (v["op"] == "subscribe").then(|| {
                    v["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string())
                        .collect()
                })
            })
            .collect()
    }

    /// The trading-stop calls so far, each as (symbol, stopLoss).
    pub fn stop_calls(&self) -> Vec<(String, String)> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.path == STOP_PATH)
            .map(|r| {
                let b: Value = serde_json::from_str(&r.body).unwrap();
                (
                    b["symbol"].as_str().unwrap_or_default().to_string(),
                    b["stopLoss"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// SIGTERM, a clean exit, and the log's text.
    pub async fn finish(mut self) -> (String, Run) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(
            unsafe { libc::kill(self.live.id() as i32, libc::SIGTERM) },
            0
        );
        let until = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(s) = self.live.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < until, "no exit: {}", read(&self.log));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let text = read(&self.log);
        assert!(exit.success(), "{exit:?}: {text}");
        (text, self)
    }
}

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
