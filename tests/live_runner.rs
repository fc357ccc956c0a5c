//! `trailstop live` end to end against the fake Bybit on loopback (feature `live`): a real
//! candle file replayed as the mark price in lockstep with the runner's `/status`, positions
//! opened at a scenario's entries. The runner must end with the backtest's trades and
//! events, byte for byte; resume after a SIGKILL with the exchange's one stop at the stored
//! price; refuse a second runner on its database; and never show its keys. Every wait is
//! bounded.
#![cfg(feature = "live")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::live::fake_bybit::{
    FakeBybit, FakeConfig, InstrumentSpec, Pace, Replay, Setup, replay,
};
use trailstop::scenario::Scenario;

const KEY: &str = "runner-test-key-7f3a9c";
const SECRET: &str = "runner-test-secret-51d2e8";
const BTC: &str = "BTCUSDT";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_trailstop")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Five positions that do not overlap (one-way mode holds one per symbol), each closed by
/// its stop before the next opens; `olhc` does not depend on the side, so one replayed path
/// serves every position.
fn write_scenario(dir: &Path) -> PathBuf {
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
            r#"name = "replay"
[data]
candles = "{}"
symbol = "BTCUSDT"
tick_size = "0.01"
[entries]
file = "entries.csv"
[exchange]
venue = "bybit"
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

const TRAILING: &str = r#"activation_percent = "0.3"
distance_percent = "0.25"
initial_stop_percent = "1.0"
[trailing.rate_limit]
min_interval_seconds = 60
min_improvement_percent = "0.1"
emergency_percent = "1.0""#;

fn write_live_toml(dir: &Path, fake: &FakeBybit, listen: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "replay-live"
[venue]
exchange = "bybit"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_RUNNER_KEY"
api_secret_env = "TS_RUNNER_SECRET"
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

/// A loopback port free now (for the runner's status server, which the fake polls).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_live(config: &Path, log: &Path) -> Child {
    spawn_live_with(config, log, &[])
}

fn spawn_live_with(config: &Path, log: &Path, args: &[&str]) -> Child {
    Command::new(bin())
        .arg("live")
        .arg(config)
        .args(args)
        .env("TS_RUNNER_KEY", KEY)
        .env("TS_RUNNER_SECRET", SECRET)
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
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

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for the child's exit, at most `within`.
async fn exit_of(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < until,
            "the runner did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(url: &str) -> Option<Value> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Polls until `done`, at most `within`.
async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Run {
    dir: tempfile::TempDir,
    fake: FakeBybit,
    config: PathBuf,
    status_url: String,
    backtest: PathBuf,
}

/// The backtest of the scenario, and the fake replaying it in lockstep with a runner's
/// status on a free port.
async fn setup() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path());
    let bt = dir.path().join("bt");
    let out = Command::new(bin())
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
    let status_url = format!("http://{listen}/status");
    let mut config = FakeConfig::new(Setup::new(
        KEY,
        SECRET,
        vec![InstrumentSpec::new(BTC, dec!(0.01))],
    ));
    config.replay = Some(Replay::new(BTC, ticks, openings));
    config.pace = Pace::Lockstep {
        status_url: status_url.clone(),
        symbol: BTC.into(),
        poll: Duration::from_millis(2),
    };
    config.start_on_subscribe = true;
    let fake = FakeBybit::start(config).await.unwrap();
    let config = write_live_toml(dir.path(), &fake, &listen);
    Run {
        dir,
        fake,
        config,
        status_url,
        backtest: bt,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn trades_rows(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// Neither key nor secret in the runner's output, its database files or its status.
fn assert_no_keys(dir: &Path, status_texts: &[String]) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.extend(
        std::fs::read_dir(dir.join("out"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    let mut checked = 0;
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for k in [KEY, SECRET] {
            assert!(!text.contains(k), "{} holds {k}", f.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the log, the config and the database were checked"
    );
    for s in status_texts {
        assert!(!s.contains(KEY) && !s.contains(SECRET), "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_fake_bybit_ends_with_the_backtests_trades() {
    let run = setup().await;
    let log = run.dir.path().join("live.log");
    // JSON lines here (the others read the text lines): the key check covers both formats.
    let mut live = spawn_live_with(&run.config, &log, &["--log-format", "json"]);
    let trades = run.dir.path().join("out/trades.csv");
    let mut statuses = Vec::new();
    let until = Instant::now() + Duration::from_secs(120);
    while run.fake.remaining() > 0 || trades_rows(&trades) < 5 {
        assert!(
            Instant::now() < until,
            "replay not over in 120 s: {}",
            read(&log)
        );
        assert!(live.try_wait().unwrap().is_none(), "{}", read(&log));
        if statuses.len() < 50
            && let Some(s) = status(&run.status_url).await
        {
            statuses.push(s.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&live, libc::SIGTERM);
    let exit = exit_of(&mut live, Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}: {}", read(&log));

    assert_eq!(
        read(&trades),
        read(&run.backtest.join("trades.csv")),
        "{}",
        read(&log)
    );
    assert_eq!(
        read(&run.dir.path().join("out/events.jsonl")),
        read(&run.backtest.join("events.jsonl"))
    );
    // Every stop send the engine made reached the exchange once: one trading-stop call each.
    let sends = read(&run.backtest.join("events.jsonl"))
        .lines()
        .filter(|l| l.contains(r#""type":"UpdateSent""#))
        .count();
    let calls = run
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/v5/position/trading-stop")
        .count();
    assert_eq!((calls, sends), (10, 10));
    // Every line is a JSON object; one decision line per trading-stop call, each with its
    // what, why, client id and result.
    let lines: Vec<Value> = read(&log)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let stop_sends: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["what"]
                .as_str()
                .is_some_and(|w| w.starts_with("place stop") || w.starts_with("move stop"))
        })
        .collect();
    assert_eq!(stop_sends.len(), 10, "{}", read(&log));
    for l in &stop_sends {
        assert_eq!(l["symbol"], BTC, "{l}");
        assert!(l["position"].is_u64(), "{l}");
        assert!(
            ["initial stop", "breakeven", "trailing"].contains(&l["why"].as_str().unwrap()),
            "{l}"
        );
        assert!(l["client_id"].as_str().unwrap().starts_with("ts-"), "{l}");
        assert_eq!(l["result"], "accepted", "{l}");
    }
    // The status showed positions in the §6 shape while they were open.
    let shown: Vec<Value> = statuses
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert!(
        shown
            .iter()
            .all(|s| s["reconciled"] == true || s["positions"].as_array().is_some())
    );
    assert!(
        shown.iter().any(|s| s["symbols"][BTC]["price"].is_string()),
        "{statuses:?}"
    );
    assert_no_keys(run.dir.path(), &statuses);
}

/// Both streams dropped mid-run (no close frame): the runner reconnects, re-checks over REST
/// and still ends with the backtest's trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_streams_reconnect_and_the_replay_still_equals_the_backtest() {
    let run = setup().await;
    let log = run.dir.path().join("live.log");
    let mut live = spawn_live(&run.config, &log);
    wait_for(
        "the second position",
        Duration::from_secs(120),
        async || {
            status(&run.status_url)
                .await
                .is_some_and(|s| s["positions"][0]["position_id"] == 2)
        },
    )
    .await;
    run.fake.drop_streams(None);
    let trades = run.dir.path().join("out/trades.csv");
    let until = Instant::now() + Duration::from_secs(120);
    while run.fake.remaining() > 0 || trades_rows(&trades) < 5 {
        assert!(
            Instant::now() < until,
            "replay not over in 120 s: {}",
            read(&log)
        );
        assert!(live.try_wait().unwrap().is_none(), "{}", read(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&live, libc::SIGTERM);
    assert!(exit_of(&mut live, Duration::from_secs(10)).await.success());
    let text = read(&log);
    assert!(text.contains("stream reconnected: re-checking"), "{text}");
    assert_eq!(
        read(&trades),
        read(&run.backtest.join("trades.csv")),
        "{text}"
    );
}

/// A stop someone else set on a position (Bybit: one per position) is adopted: the trailing
/// stop's looser first stop is not sent over it; it moves only once the trailing passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_set_by_someone_else_is_adopted_and_only_moved_tighter() {
    use trailstop::live::bybit::request::PositionFilter;
    use trailstop::live::bybit::rest::{RestClient, RestConfig};
    use trailstop::live::bybit::venue::BybitVenue;
    use trailstop::venue::OrderRef;
    const T0: i64 = 1_670_889_600_000;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBybit::start(FakeConfig::new(Setup::new(
        KEY,
        SECRET,
        vec![InstrumentSpec::new(BTC, dec!(0.01))],
    )))
    .await
    .unwrap();
    fake.set_price(BTC, dec!(17000), true, T0);
    fake.open_position(BTC, trailstop::engine::Side::Long, dec!(1), T0)
        .unwrap();
    // Someone else's stop at 16950 (the config's initial stop would be 1 % below 17000).
    let creds = trailstop::live::Credentials {
        api_key: trailstop::live::Secret::new(KEY),
        api_secret: trailstop::live::Secret::new(SECRET),
    };
    let rest = RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(5),
            clock: trailstop::live::clock::system_clock(),
        },
        Some(creds),
    )
    .unwrap();
    let mut other = BybitVenue::connect(rest, trailstop::live::TriggerPrice::Mark, &[BTC])
        .await
        .unwrap();
    let info = other
        .rest()
        .positions(PositionFilter::Symbol(BTC))
        .await
        .unwrap();
    other.manage(99, &info[0]).unwrap();
    let stop = other.instrument(BTC).unwrap().units(dec!(16950)).unwrap();
    let order = OrderRef {
        position: 99,
        seq: 1,
    };
    let done = other
        .execute(trailstop::venue::Command::Place { order, stop }, T0)
        .await;
    assert_eq!(done.action, None, "{done:?}");
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16950)));

    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_live_toml(dir.path(), &fake, &listen);
    let log = dir.path().join("live.log");
    let mut live = spawn_live(&config, &log);
    let stop_calls = || {
        fake.requests()
            .iter()
            .filter(|r| r.path == "/v5/position/trading-stop")
            .count()
    };
    wait_for(
        "the runner's first stop",
        Duration::from_secs(30),
        async || stop_calls() >= 2,
    )
    .await;
    assert_eq!(
        fake.position(BTC, 0).stop_loss,
        Some(dec!(16950)),
        "{}",
        read(&log)
    );
    // 0.3 % up activates; the trailing stop 0.25 % below 17200 passes the adopted one.
    fake.set_price(BTC, dec!(17200), false, T0 + 60_000);
    wait_for(
        "the stop moved tighter",
        Duration::from_secs(30),
        async || fake.position(BTC, 0).stop_loss == Some(dec!(17157)),
    )
    .await;
    signal(&live, libc::SIGTERM);
    assert!(exit_of(&mut live, Duration::from_secs(10)).await.success());
    let text = read(&log);
    assert!(text.contains("adopt: Some(16950)"), "{text}");
    assert!(
        text.contains("the stop at 16950 set by someone else is adopted"),
        "{text}"
    );
    assert_eq!(
        fake.position(BTC, 0).stop_loss,
        Some(dec!(17157)),
        "the stop stays on exit"
    );
}

/// `/healthz`: 200 once reconciled with fresh prices; 503 naming the symbol after 10 s
/// without a price; 200 again when one comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_degraded_on_stale_prices() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBybit::start(FakeConfig::new(Setup::new(
        KEY,
        SECRET,
        vec![InstrumentSpec::new(BTC, dec!(0.01))],
    )))
    .await
    .unwrap();
    fake.set_price(BTC, dec!(17000), true, 1_670_889_600_000);
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_live_toml(dir.path(), &fake, &listen);
    let log = dir.path().join("live.log");
    let mut live = spawn_live(&config, &log);
    let health = async || {
        let r = reqwest::get(format!("http://{listen}/healthz"))
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    };
    let mut seen = None;
    wait_for("a healthy runner", Duration::from_secs(30), async || {
        seen = health().await;
        seen.as_ref().is_some_and(|(c, _)| *c == 200)
    })
    .await;
    // The subscription's snapshot was the last price: stale 10 s later.
    wait_for("stale prices", Duration::from_secs(20), async || {
        seen = health().await;
        seen.as_ref().is_some_and(|(c, _)| *c == 503)
    })
    .await;
    let (_, text) = seen.clone().unwrap();
    assert_eq!(text, "stale prices: BTCUSDT\n");
    fake.set_price(BTC, dec!(17001), true, 1_670_889_700_000);
    wait_for("fresh again", Duration::from_secs(10), async || {
        seen = health().await;
        seen.as_ref().is_some_and(|(c, _)| *c == 200)
    })
    .await;
    signal(&live, libc::SIGTERM);
    assert!(exit_of(&mut live, Duration::from_secs(10)).await.success());
    let text = read(&log);
    assert!(text.contains("BTCUSDT: no price for 10 s: stale"), "{text}");
    assert!(text.contains("BTCUSDT: prices again"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_run_resumes_with_the_stop_it_stored() {
    let run = setup().await;
    let log = run.dir.path().join("live.log");
    let mut live = spawn_live(&run.config, &log);
    // Killed while the third position is open with its stop confirmed.
    let mut confirmed = None;
    wait_for(
        "the third position with a stop",
        Duration::from_secs(120),
        async || {
            let Some(s) = status(&run.status_url).await else {
                return false;
            };
            let p = &s["positions"][0];
            if p["position_id"] == 3 && p["confirmed_stop"].is_string() {
                confirmed = Some(p["confirmed_stop"].as_str().unwrap().to_string());
                return true;
            }
            false
        },
    )
    .await;
    signal(&live, libc::SIGKILL);
    exit_of(&mut live, Duration::from_secs(10)).await;
    // The exchange holds the position's one stop, at (or, had a move been answered in the
    // meantime, above) the stop the status showed; the replay waits for the runner.
    let held = run.fake.position(BTC, 0);
    assert!(held.side.is_some(), "the position is still open");
    let stop = held
        .stop_loss
        .expect("its stop rests while trailstop is down");
    let shown: rust_decimal::Decimal = confirmed.unwrap().parse().unwrap();
    assert!(
        stop <= shown,
        "a short's stop only moves down: {stop} vs {shown}"
    );
    // While trailstop is down the position grows (at the mark): the same position, resized.
    run.fake
        .open_position(
            BTC,
            trailstop::engine::Side::Short,
            dec!(1),
            held.updated_ms,
        )
        .unwrap();
    assert_eq!(run.fake.position(BTC, 0).size, dec!(2));

    let mut again = spawn_live(&run.config, &log);
    let trades = run.dir.path().join("out/trades.csv");
    let until = Instant::now() + Duration::from_secs(120);
    while run.fake.remaining() > 0 || trades_rows(&trades) < 5 {
        assert!(
            Instant::now() < until,
            "replay not over in 120 s: {}",
            read(&log)
        );
        assert!(again.try_wait().unwrap().is_none(), "{}", read(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&again, libc::SIGTERM);
    assert!(exit_of(&mut again, Duration::from_secs(10)).await.success());
    let text = read(&log);
    assert!(
        text.contains("reconcile: Resized { position_id: 3, size: 2, entry: "),
        "{text}"
    );
    // The stored position follows the exchange's size (its stop, in Full mode, covers it all).
    let db = trailstop::store::Store::open(
        &run.dir.path().join("live.sqlite"),
        trailstop::store::OpenOptions::read_only(),
    )
    .unwrap();
    let rec = db.record(3).unwrap().unwrap();
    let driver: Value = serde_json::from_str(&rec.driver).unwrap();
    assert_eq!(driver["size"], "2", "{driver}");
    db.check_row(&rec).unwrap();
    // Resumed exactly: the same trades as the backtest (the size is not a trade column).
    assert_eq!(
        read(&trades),
        read(&run.backtest.join("trades.csv")),
        "{text}"
    );
    assert_no_keys(run.dir.path(), &[]);
}

/// `--dry-run`: the simulated venue takes the orders, none reaches the exchange; its
/// trailing stop is the backtest's. (The fake's position stays open, as nothing closed it on
/// the exchange: its later openings add to it or are refused, so the first trade compares.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_sends_no_order_and_trails_as_the_backtest() {
    let run = setup().await;
    let log = run.dir.path().join("live.log");
    let mut live = spawn_live_with(&run.config, &log, &["--dry-run"]);
    let trades = run.dir.path().join("out/trades.csv");
    let until = Instant::now() + Duration::from_secs(120);
    while run.fake.remaining() > 0 || trades_rows(&trades) < 1 {
        assert!(
            Instant::now() < until,
            "replay not over in 120 s: {}",
            read(&log)
        );
        assert!(live.try_wait().unwrap().is_none(), "{}", read(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&live, libc::SIGTERM);
    assert!(exit_of(&mut live, Duration::from_secs(10)).await.success());
    let orders = run
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect::<Vec<_>>();
    assert_eq!(
        orders,
        Vec::<String>::new(),
        "no order reached the exchange"
    );
    let first = |text: String, n: usize| text.lines().take(n).collect::<Vec<_>>().join("\n");
    assert_eq!(
        first(read(&trades), 2),
        first(read(&run.backtest.join("trades.csv")), 2),
        "{}",
        read(&log)
    );
    let bt_events: Vec<String> = read(&run.backtest.join("events.jsonl"))
        .lines()
        .filter(|l| l.starts_with(r#"{"position_id":1,"#))
        .map(String::from)
        .collect();
    let events: Vec<String> = read(&run.dir.path().join("out/events.jsonl"))
        .lines()
        .filter(|l| l.starts_with(r#"{"position_id":1,"#))
        .map(String::from)
        .collect();
    assert_eq!(events, bt_events);
    assert!(read(&log).contains("(dry run: simulated)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_on_the_same_database_is_refused_at_once() {
    let run = setup().await;
    let log = run.dir.path().join("live.log");
    let mut first = spawn_live(&run.config, &log);
    wait_for(
        "the first runner's status",
        Duration::from_secs(30),
        async || status(&run.status_url).await.is_some(),
    )
    .await;
    let started = Instant::now();
    let second = Command::new(bin())
        .arg("live")
        .arg(&run.config)
        .args(["--set", &format!("http.listen=127.0.0.1:{}", free_port())])
        .env("TS_RUNNER_KEY", KEY)
        .env("TS_RUNNER_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another trailstop process is running on this database"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first one runs on");
    signal(&first, libc::SIGTERM);
    assert!(exit_of(&mut first, Duration::from_secs(10)).await.success());
}

#[test]
fn missing_keys_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("live.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"k\"\n[venue]\nexchange = \"bybit\"\napi_key_env = \"TS_RUNNER_NO_KEY\"\n\
             api_secret_env = \"TS_RUNNER_NO_SECRET\"\n[positions]\nsymbols = [\"BTCUSDT\"]\n\
             [trailing]\n{TRAILING}\n[store]\ndb = \"live.sqlite\"\nout = \"out\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("live")
        .arg(&config)
        .env_remove("TS_RUNNER_NO_KEY")
        .env("TS_RUNNER_NO_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TS_RUNNER_NO_KEY"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert!(
        !dir.path().join("live.sqlite").exists(),
        "nothing was created"
    );
}
