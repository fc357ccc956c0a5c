//! What the live runner's end-to-end tests on the fake Binance share: the fake (BTCUSDT and
//! ETHUSDT listed, a long of 1 BTC at 17000 open, prices set by the test), `trailstop live`
//! with `exchange = "binance"` on it, and its request log read back. The waits are the
//! parent module's (bounded).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::engine::Side;
use trailstop::live::fake_binance::{FakeBinance, FakeConfig, InstrumentSpec, Setup};
use trailstop::live::fake_bybit::wire::HttpRequest;

use super::{BTC, ETH, T0, Venue, free_port, read, wait_for, write_config};

pub const KEY: &str = "binance-support-key-61c2e9";
pub const SECRET: &str = "binance-support-secret-07d5ab";
pub const ALGO: &str = "/fapi/v1/algoOrder";
pub const ORDER: &str = "/fapi/v1/order";

/// The live.toml of the other live tests (activation +0.3 %, 0.25 % behind, an initial stop
/// 1 % away): a long at 17000 rests at 16830 first, at 17200 moves to 17157, at 17300 to
/// 17256.75; a long of ETH at 2000 rests at 1980.
fn write_live_toml(dir: &Path, fake: &FakeBinance, listen: &str, symbols: &str) -> PathBuf {
    let venue = Venue {
        exchange: "binance",
        rest_url: &fake.rest_url(),
        ws_url: &fake.ws_url(),
        key_env: "TS_BINANCE_SUPPORT_KEY",
        secret_env: "TS_BINANCE_SUPPORT_SECRET",
    };
    write_config(dir, "binance", &venue, listen, symbols)
}

fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trailstop"))
        .arg("live")
        .arg(config)
        .env("TS_BINANCE_SUPPORT_KEY", KEY)
        .env("TS_BINANCE_SUPPORT_SECRET", SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        ))
        .spawn()
        .unwrap()
}

pub use super::binance::param;

/// The fake Binance and `trailstop live` protecting its long of 1 BTC at 17000.
pub struct Run {
    pub dir: tempfile::TempDir,
    pub fake: FakeBinance,
    pub listen: String,
    pub log: PathBuf,
    pub config: PathBuf,
    pub live: Child,
}

/// A test that fails leaves no `trailstop live` behind.
impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.live.try_wait() {
            let _ = self.live.kill();
            let _ = self.live.wait();
        }
    }
}

impl Run {
    /// `symbols`: the config's list as TOML; `env`: the runner's extra environment. Waits
    /// for the first stop (16830).
    pub async fn start(symbols: &str, env: &[(&str, &str)]) -> Run {
        let run = Run::launch(symbols, env).await;
        run.wait_stop(BTC, "the first stop", dec!(16830)).await;
        run.settled().await;
        run
    }

    /// Until the re-check after the user stream's first connection is over: `/status` shows
    /// the stream connected once it is (published after it), so the requests a test counts
    /// from here are its own.
    pub async fn settled(&self) {
        wait_for(
            "the user stream",
            Duration::from_secs(30),
            &self.log,
            async || {
                self.status()
                    .await
                    .is_some_and(|s| s["streams"]["private"]["connected"] == true)
            },
        )
        .await;
    }

    /// The fake and the runner, not waiting for anything.
    pub async fn launch(symbols: &str, env: &[(&str, &str)]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBinance::start(FakeConfig::new(Setup::new(
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
        let live = spawn(&config, &log, env);
        Run {
            dir,
            fake,
            listen,
            log,
            config,
            live,
        }
    }

    /// The trigger of our stop resting on `symbol`, if one does.
    pub fn stop(&self, symbol: &str) -> Option<Decimal> {
        let resting: Vec<Decimal> = self
            .fake
            .resting_stops()
            .into_iter()
            .filter(|(_, s, _)| s == symbol)
            .map(|(_, _, t)| t)
            .collect();
        assert!(resting.len() <= 1, "two stops on {symbol}: {resting:?}");
        resting.first().copied()
    }

    pub async fn wait_stop(&self, symbol: &str, what: &str, stop: Decimal) {
        wait_for(what, Duration::from_secs(30), &self.log, async || {
            self.stop(symbol) == Some(stop)
        })
        .await;
    }

    /// Sets `symbol`'s price (not a gap) and waits until the runner took the point.
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

    pub fn alive(&mut self) -> bool {
        self.live.try_wait().unwrap().is_none()
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.fake.requests()
    }

    /// The creates sent from request `from` on, each as its `triggerPrice`.
    pub fn creates_since(&self, from: usize) -> Vec<String> {
        self.requests()[from..]
            .iter()
            .filter(|r| r.method == "POST" && r.path == ALGO)
            .map(|r| param(r, "triggerPrice").unwrap_or_default())
            .collect()
    }

    /// The number of rows of `out/trades.csv` (0 before it exists).
    pub fn trades(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("out/trades.csv"))
            .map_or(0, |t| t.lines().count().saturating_sub(1))
    }

    pub fn trades_text(&self) -> String {
        read(&self.dir.path().join("out/trades.csv"))
    }

    /// SIGTERM, a clean exit within 10 s, and the log's text (which holds neither the key
    /// nor the secret).
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
        assert!(!text.contains(KEY) && !text.contains(SECRET), "{text}");
        (text, self)
    }
}

/// The decision lines (text format) whose `what` starts with `what`.
pub fn decisions<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    let key = format!("what=\"{what}");
    text.lines().filter(|l| l.contains(&key)).collect()
}

/// Milliseconds since `T0` as a data time.
pub fn at(ms: i64) -> i64 {
    T0 + ms
}
