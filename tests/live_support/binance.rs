//! The fake Binance on loopback (BTCUSDT listed, a long of 1 BTC at 17000 open, prices set by
//! the test) and `trailstop live` with `exchange = "binance"` on it, its first stop resting.
//! The fake stamps a position with its own clock (the system's), so the test's price points
//! are stamped after [`BinanceRun::t0`], not at a fixed date.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::engine::Side;
use trailstop::live::fake_binance::{FakeBinance, FakeConfig, InstrumentSpec, Setup};

use super::{BTC, free_port, read, wait_for};

pub const KEY: &str = "binance-support-key-71c0e4";
pub const SECRET: &str = "binance-support-secret-2f9a58";
pub const ALGO: &str = "/fapi/v1/algoOrder";

/// The same trailing settings as the Bybit runs': a long at 17000 rests at 16830 first (at
/// 17200: 17157; at 17400: 17356.5).
fn write_live_toml(dir: &Path, fake: &FakeBinance, listen: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "binance-support"
[venue]
exchange = "binance"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_BINANCE_SUPPORT_KEY"
api_secret_env = "TS_BINANCE_SUPPORT_SECRET"
[positions]
symbols = ["BTCUSDT"]
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

pub struct BinanceRun {
    pub dir: tempfile::TempDir,
    pub fake: FakeBinance,
    pub listen: String,
    pub log: PathBuf,
    pub live: Child,
    /// The system time (ms) when the position was opened: price points after it move it.
    pub t0: i64,
}

impl BinanceRun {
    /// The fake, the runner on it (`env`: its extra environment), and its first stop resting.
    pub async fn start(env: &[(&str, &str)]) -> BinanceRun {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBinance::start(FakeConfig::new(Setup::new(
            KEY,
            SECRET,
            vec![InstrumentSpec::new(BTC, dec!(0.01))],
        )))
        .await
        .unwrap();
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        fake.set_price(BTC, dec!(17000), true, t0);
        fake.open_position(BTC, Side::Long, dec!(1), t0).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let config = write_live_toml(dir.path(), &fake, &listen);
        let log = dir.path().join("live.log");
        let live = Command::new(env!("CARGO_BIN_EXE_trailstop"))
            .arg("live")
            .arg(&config)
            .env("TS_BINANCE_SUPPORT_KEY", KEY)
            .env("TS_BINANCE_SUPPORT_SECRET", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let run = BinanceRun {
            dir,
            fake,
            listen,
            log,
            live,
            t0,
        };
        run.wait_stop("the first stop", dec!(16830)).await;
        run
    }

    /// The trigger prices of the stops resting on the fake.
    pub fn stops(&self) -> Vec<Decimal> {
        self.fake.resting_stops().into_iter().map(|s| s.2).collect()
    }

    pub async fn wait_stop(&self, what: &str, stop: Decimal) {
        wait_for(what, Duration::from_secs(30), &self.log, async || {
            self.stops() == [stop]
        })
        .await;
    }

    pub fn algo_calls(&self, method: &str) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == ALGO)
            .count()
    }

    pub async fn status(&self) -> Option<Value> {
        let url = format!("http://{}/status", self.listen);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        serde_json::from_str(&text).ok()
    }

    /// SIGTERM, a clean exit, and the log's text.
    pub async fn finish(mut self) -> String {
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
        text
    }
}

impl Drop for BinanceRun {
    /// A failing assertion leaves no runner behind.
    fn drop(&mut self) {
        if self.live.try_wait().ok().flatten().is_none() {
            let _ = self.live.kill();
            let _ = self.live.wait();
        }
    }
}
