//! What the Binance live tests share: the fake Binance on loopback (bare, for wire tests), and
//! a replay harness — the backtest of a five-position scenario on a real candle file, the
//! fake replaying it in lockstep with a `trailstop live` on a free port — for runner tests
//! that compare the live trades with the backtest's. Every wait is bounded.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal_macros::dec;

use trailstop::live::fake_binance::{
    FakeBinance, FakeConfig, InstrumentSpec, Pace, Replay, Setup, replay,
};
use trailstop::live::fake_bybit::wire::HttpRequest;
use trailstop::scenario::Scenario;

use super::{free_port, read};

pub const KEY: &str = "binance-support-key-7c1e2a";
pub const SECRET: &str = "binance-support-secret-4f90b3";
pub const BTC: &str = "BTCUSDT";
pub const ALGO: &str = "/fapi/v1/algoOrder";

/// At most 10 s.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded in time")
}

/// A bare fake (BTCUSDT, tick 0.1, the support keys), `tune` changing its config.
pub async fn fake(tune: impl FnOnce(&mut FakeConfig)) -> FakeBinance {
    let s = Setup::new(KEY, SECRET, vec![InstrumentSpec::new(BTC, dec!(0.1))]);
    let mut c = FakeConfig::new(s);
    c.tick_every = Duration::from_millis(20);
    tune(&mut c);
    within(FakeBinance::start(c)).await.unwrap()
}

const TRAILING: &str = r#"activation_percent = "0.3"
distance_percent = "0.25"
initial_stop_percent = "1.0"
[trailing.rate_limit]
min_interval_seconds = 60
min_improvement_percent = "0.1"
emergency_percent = "1.0""#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Five positions that do not overlap (one-way mode holds one per symbol), each closed by
/// its stop before the next opens; `olhc` does not depend on the side.
fn write_scenario(dir: &Path, latency_ms: i64) -> PathBuf {
    std::fs::write(
        dir.join("entries.csv"),
        "time,side\n2022-12-13T10:00:00Z,short\n2022-12-13T12:00:00Z,long\n\
         2022-12-13T14:00:00Z,short\n2022-12-13T16:00:00Z,long\n2022-12-13T22:00:00Z,short\n",
    )
    .unwrap();
    let data = root().join("data/BTCUSDT-bybit-1m-20221213.csv");
    let path = dir.join("scenario.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "replay-binance"
[data]
candles = "{}"
symbol = "BTCUSDT"
tick_size = "0.01"
[entries]
file = "entries.csv"
[exchange]
venue = "binance"
update_latency_ms = {latency_ms}
[trailing]
{TRAILING}
[intrabar]
policy = "olhc"
"#,
            data.display()
        ),
    )
    .unwrap();
    path
}

fn write_live_toml(dir: &Path, fake: &FakeBinance, listen: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "replay-live-binance"
[venue]
exchange = "binance"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_BINANCE_KEY"
api_secret_env = "TS_BINANCE_SECRET"
[positions]
symbols = ["BTCUSDT"]
[trailing]
{TRAILING}
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

fn trades_rows(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// `key`'s value in a request's query or form body.
pub fn param(r: &HttpRequest, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    r.query
        .split('&')
        .chain(r.body.split('&'))
        .find_map(|p| p.strip_prefix(&prefix).map(str::to_string))
}

/// The backtest of the scenario and the fake replaying it in lockstep with a runner's
/// status; the runner is started by [`Replayed::spawn`].
pub struct Replayed {
    pub dir: tempfile::TempDir,
    pub fake: FakeBinance,
    pub config: PathBuf,
    pub backtest: PathBuf,
    pub log: PathBuf,
}

impl Replayed {
    /// The scenario's backtest with `update_latency_ms = latency_ms`, and the fake with the
    /// same create latency, `tune` changing its config before it starts.
    pub async fn setup(latency_ms: i64, tune: impl FnOnce(&mut FakeConfig)) -> Replayed {
        let dir = tempfile::tempdir().unwrap();
        let scenario = write_scenario(dir.path(), latency_ms);
        let bt = dir.path().join("bt");
        let out = Command::new(env!("CARGO_BIN_EXE_trailstop"))
            .args(["backtest", "-q", "--out"])
            .arg(&bt)
            .arg(&scenario)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ticks, openings) =
            replay::from_scenario(&Scenario::load(&scenario, &[]).unwrap()).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let mut setup = Setup::new(KEY, SECRET, vec![InstrumentSpec::new(BTC, dec!(0.01))]);
        setup.update_latency_ms = latency_ms;
        let mut config = FakeConfig::new(setup);
        config.replay = Some(Replay::new(BTC, ticks, openings));
        config.pace = Pace::Lockstep {
            status_url: format!("http://{listen}/status"),
            symbol: BTC.into(),
            poll: Duration::from_millis(2),
        };
        config.start_on_subscribe = true;
        tune(&mut config);
        let fake = FakeBinance::start(config).await.unwrap();
        let config = write_live_toml(dir.path(), &fake, &listen);
        let log = dir.path().join("live.log");
        Replayed {
            dir,
            fake,
            config,
            backtest: bt,
            log,
        }
    }

    /// `trailstop live` on the fake, `env` added to its environment.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_trailstop"))
            .arg("live")
            .arg(&self.config)
            .env("TS_BINANCE_KEY", KEY)
            .env("TS_BINANCE_SECRET", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::from(
                std::fs::File::create(self.log.with_extension("out")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            ))
            .spawn()
            .unwrap()
    }

    pub fn trades(&self) -> PathBuf {
        self.dir.path().join("out/trades.csv")
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }

    /// Until the replay is over and `rows` trades are written, the runner alive (at most
    /// 240 s).
    pub async fn until_traded(&self, live: &mut Child, rows: usize) {
        let until = Instant::now() + Duration::from_secs(240);
        while self.fake.remaining() > 0 || trades_rows(&self.trades()) < rows {
            assert!(
                Instant::now() < until,
                "replay not over in 240 s ({} points left): {}",
                self.fake.remaining(),
                self.log_text()
            );
            assert!(live.try_wait().unwrap().is_none(), "{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until the replay is over and the five trades are written.
    pub async fn until_replayed(&self, live: &mut Child) {
        self.until_traded(live, 5).await;
    }

    /// SIGTERM and a clean exit within 10 s.
    pub async fn finish(&self, live: &mut Child) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(live.id() as i32, libc::SIGTERM) }, 0);
        let until = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(s) = live.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < until, "no exit: {}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(exit.success(), "{exit:?}: {}", self.log_text());
    }

    /// The live trades and events against the backtest's, byte for byte.
    pub fn assert_backtest(&self) {
        assert_eq!(
            read(&self.trades()),
            read(&self.backtest.join("trades.csv")),
            "{}",
            self.log_text()
        );
        assert_eq!(
            read(&self.dir.path().join("out/events.jsonl")),
            read(&self.backtest.join("events.jsonl"))
        );
    }

    /// The requests of `method` on the algo order endpoint so far.
    pub fn algo_calls(&self, method: &str) -> Vec<HttpRequest> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == ALGO)
            .collect()
    }
}

/// The support keys as credentials.
pub fn credentials() -> trailstop::live::Credentials {
    trailstop::live::Credentials {
        api_key: trailstop::live::Secret::new(KEY),
        api_secret: trailstop::live::Secret::new(SECRET),
    }
}

/// The adapter's REST client on `fake` (2 s timeout).
pub fn rest_on(fake: &FakeBinance) -> trailstop::live::binance::rest::RestClient {
    use trailstop::live::binance::rest::{RestClient, RestConfig};
    RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(2),
            clock: trailstop::live::clock::system_clock(),
        },
        Some(credentials()),
    )
    .unwrap()
}

/// A long of 0.5 at 100 opened on `fake` (the mark at 100, data time 1000), and the
/// adapter's venue managing it as position 1.
pub async fn venue_on_a_long(fake: &FakeBinance) -> trailstop::live::binance::venue::BinanceVenue {
    use trailstop::live::binance::request::StopOptions;
    use trailstop::live::binance::venue::BinanceVenue;
    let mut venue = within(BinanceVenue::connect(
        rest_on(fake),
        StopOptions::default(),
        &[BTC],
    ))
    .await
    .unwrap();
    fake.set_price(BTC, dec!(100), true, 1_000);
    fake.open_position(BTC, trailstop::engine::Side::Long, dec!(0.5), 1_000)
        .unwrap();
    let p = within(venue.rest().positions(Some(BTC))).await.unwrap();
    venue.manage(1, &p[0]).unwrap();
    venue
}
