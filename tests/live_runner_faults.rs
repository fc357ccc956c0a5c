//! `trailstop live`'s reaction to each Bybit fault of `EXCHANGES.md` §4.3, end to end against
//! the fake Bybit on loopback (feature `live`). Each test opens one long position, lets the
//! runner place its first stop, injects the fault on the next move, and checks the reaction
//! on the fake (its stop, its position, its request log) and in the runner's log lines.
//! Every wait is bounded.
#![cfg(feature = "live")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::engine::Side;
use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, Fault, FaultKind, InstrumentSpec, Setup};

const KEY: &str = "faults-test-key-3b81d0";
const SECRET: &str = "faults-test-secret-c47e92";
const BTC: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;
const STOP_PATH: &str = "/v5/position/trading-stop";

/// Activation at +0.3 %, 0.25 % behind, an initial stop 1 % below the entry: a long at 17000
/// rests at 16830 first; at 17200 the stop moves to 17157, at 17300 to 17256.75.
fn write_live_toml(dir: &Path, fake: &FakeBybit, listen: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "faults"
[venue]
exchange = "bybit"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_FAULTS_KEY"
api_secret_env = "TS_FAULTS_SECRET"
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One long position of 1 BTC at 17000 on the fake, and `trailstop live` protecting it.
struct Run {
    dir: tempfile::TempDir,
    fake: FakeBybit,
    listen: String,
    log: PathBuf,
    config: PathBuf,
    live: Child,
}

fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trailstop"))
        .arg("live")
        .arg(config)
        .env("TS_FAULTS_KEY", KEY)
        .env("TS_FAULTS_SECRET", SECRET)
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

impl Run {
    /// `env`: the runner's extra environment (the test hooks).
    async fn start(env: &[(&str, &str)]) -> Run {
        let run = Run::launch(env).await;
        run.wait_stop("the first stop", dec!(16830)).await;
        run.wait_private_stream().await;
        run
    }

    /// Until `/status` shows the private stream subscribed: the re-check that follows the
    /// first subscription is over (the status is published after it), so the requests
    /// counted from here are the test's.
    async fn wait_private_stream(&self) {
        wait_for(
            "the private stream",
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
    async fn launch(env: &[(&str, &str)]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBybit::start(FakeConfig::new(Setup::new(
            KEY,
            SECRET,
            vec![InstrumentSpec::new(BTC, dec!(0.01))],
        )))
        .await
        .unwrap();
        fake.set_price(BTC, dec!(17000), true, T0);
        fake.open_position(BTC, Side::Long, dec!(1), T0).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let config = write_live_toml(dir.path(), &fake, &listen);
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

    /// Waits for the runner's abort (the crash hook), then starts it again without the hook.
    async fn restart_after_abort(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let until = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(s) = self.live.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < until, "no abort: {}", read(&self.log));
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            exit.signal(),
            Some(libc::SIGABRT),
            "{exit:?}: {}",
            read(&self.log)
        );
        self.live = spawn(&self.config, &self.log, &[]);
    }

    fn stop(&self) -> Option<Decimal> {
        self.fake.position(BTC, 0).stop_loss
    }

    async fn wait_stop(&self, what: &str, stop: Decimal) {
        wait_for(what, Duration::from_secs(30), &self.log, async || {
            self.stop() == Some(stop)
        })
        .await;
    }

    /// The REST requests so far (method and path).
    fn requests(&self) -> Vec<(String, String)> {
        self.fake
            .requests()
            .into_iter()
            .map(|r| (r.method, r.path))
            .collect()
    }

    fn stop_calls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(_, p)| p == STOP_PATH)
            .count()
    }

    /// Waits until the runner took the price point at `ts` (its status shows it).
    async fn price(&self, price: Decimal, ts: i64) {
        self.fake.set_price(BTC, price, false, ts);
        wait_for(
            "the point taken",
            Duration::from_secs(30),
            &self.log,
            async || {
                self.status()
                    .await
                    .is_some_and(|s| s["symbols"][BTC]["last_price_ts"] == ts)
            },
        )
        .await;
    }

    async fn status(&self) -> Option<Value> {
        let url = format!("http://{}/status", self.listen);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        serde_json::from_str(&text).ok()
    }

    async fn health(&self) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://{}/healthz", self.listen))
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    fn alive(&mut self) -> bool {
        self.live.try_wait().unwrap().is_none()
    }

    /// SIGTERM, a clean exit, and the log's lines.
    async fn finish(mut self) -> (String, Run) {
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
        assert!(!text.contains(KEY) && !text.contains(SECRET));
        (text, self)
    }
}

/// The decision lines (text format) whose `what` starts with `what`.
fn decisions<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    let key = format!("what=\"{what}");
    text.lines().filter(|l| l.contains(&key)).collect()
}

/// HTTP 403 (the IP ban): no REST at all until the ban ends, the run goes on with the stop
/// resting, `/healthz` degraded naming it and `/status` showing the circuit `banned`; then a
/// REST re-check, and the newest stop in one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_is_waited_out_then_the_newest_stop_goes() {
    let mut run = Run::start(&[("TRAILSTOP_BAN_WAIT_MS", "3000")]).await;
    run.fake.inject(Fault::on(STOP_PATH, FaultKind::Forbidden));
    let before = run.requests().len();
    run.price(dec!(17200), T0 + 60_000).await;
    wait_for(
        "the ban seen",
        Duration::from_secs(10),
        &run.log,
        async || {
            run.health()
                .await
                .is_some_and(|(c, t)| c == 503 && t.contains("banned"))
        },
    )
    .await;
    let (_, why) = run.health().await.unwrap();
    assert!(why.contains("bybit REST banned (HTTP 403) until"), "{why}");
    assert_eq!(run.status().await.unwrap()["circuit"]["bybit"], "banned");
    // Meanwhile the market moves on: the newest stop waits with the first.
    run.price(dec!(17300), T0 + 120_000).await;
    assert!(run.alive(), "{}", read(&run.log));
    assert_eq!(run.stop(), Some(dec!(16830)), "the stop rests meanwhile");
    let banned_at = run.requests().len();
    assert_eq!(
        banned_at,
        before + 1,
        "only the refused call: {:?}",
        run.requests()
    );
    run.wait_stop("the newest stop after the ban", dec!(17256.75))
        .await;
    let after: Vec<(String, String)> = run.requests()[banned_at..].to_vec();
    assert_eq!(
        after.first().map(|(m, p)| (m.as_str(), p.as_str())),
        Some(("GET", "/v5/position/list")),
        "a re-check first: {after:?}"
    );
    assert_eq!(
        after.iter().filter(|(_, p)| p == STOP_PATH).count(),
        1,
        "one call for both moves: {after:?}"
    );
    wait_for(
        "healthy again",
        Duration::from_secs(10),
        &run.log,
        async || run.health().await.is_some_and(|(c, _)| c == 200),
    )
    .await;
    assert_eq!(run.status().await.unwrap()["circuit"]["bybit"], "closed");
    let (text, _run) = run.finish().await;
    assert!(text.contains("bybit bans this IP (HTTP 403)"), "{text}");
    assert!(
        text.contains("the ban is over: re-checking over REST"),
        "{text}"
    );
    let moves = decisions(&text, "move stop to");
    assert_eq!(moves.len(), 2, "{text}");
    assert!(
        moves[0].contains("result=\"banned (HTTP 403): no REST to the host for 3 s; held\""),
        "{}",
        moves[0]
    );
    assert!(
        moves[1].contains("what=\"move stop to 17256.75\""),
        "{}",
        moves[1]
    );
    assert!(moves[1].contains("the newest stop"), "{}", moves[1]);
    assert!(moves[1].contains("result=\"accepted\""), "{}", moves[1]);
}

/// `10006` with `X-Bapi-Limit-Reset-Timestamp`: the move waits until the reset, and then only
/// the newest stop is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_waits_for_the_reset_and_coalesces_to_the_newest_stop() {
    let run = Run::start(&[]).await;
    run.fake.inject(Fault::on(
        STOP_PATH,
        FaultKind::RateLimited { reset_in_ms: 2_500 },
    ));
    run.price(dec!(17200), T0 + 60_000).await;
    wait_for(
        "the limit seen",
        Duration::from_secs(10),
        &run.log,
        async || {
            run.status()
                .await
                .is_some_and(|s| s["circuit"]["bybit"] == "rate_limited")
        },
    )
    .await;
    let limited_at = run.stop_calls();
    run.price(dec!(17300), T0 + 120_000).await;
    assert_eq!(run.stop(), Some(dec!(16830)));
    run.wait_stop("the newest stop after the reset", dec!(17256.75))
        .await;
    assert_eq!(run.stop_calls(), limited_at + 1, "{:?}", run.requests());
    let (text, _run) = run.finish().await;
    let moves = decisions(&text, "move stop to");
    assert_eq!(moves.len(), 2, "{text}");
    assert!(
        moves[0].contains("rate limited (10006): held until the reset"),
        "{}",
        moves[0]
    );
    assert!(
        moves[1].contains("what=\"move stop to 17256.75\""),
        "{}",
        moves[1]
    );
}

/// `10001 … base_price` (the stop would trigger now): the position is closed at market,
/// reduce-only, and the trade is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_would_trigger_closes_at_market_reduce_only() {
    let run = Run::start(&[]).await;
    run.fake.inject(Fault::on(STOP_PATH, FaultKind::BasePrice));
    run.price(dec!(17200), T0 + 60_000).await;
    wait_for("flat", Duration::from_secs(30), &run.log, async || {
        run.fake.position(BTC, 0).side.is_none()
    })
    .await;
    let closes: Vec<Value> = run
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v5/order/create")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["reduceOnly"], true, "{}", closes[0]);
    assert_eq!(closes[0]["orderType"], "Market", "{}", closes[0]);
    assert_eq!(closes[0]["side"], "Sell", "{}", closes[0]);
    let trades = run.dir.path().join("out/trades.csv");
    wait_for(
        "the trade written",
        Duration::from_secs(10),
        &run.log,
        async || std::fs::read_to_string(&trades).is_ok_and(|t| t.lines().count() == 2),
    )
    .await;
    let (text, run) = run.finish().await;
    let refused = decisions(&text, "move stop to 17157");
    assert_eq!(refused.len(), 1, "{text}");
    assert!(
        refused[0].contains("rejected (WouldTrigger"),
        "{}",
        refused[0]
    );
    let close = decisions(&text, "close at market, reduce-only");
    assert_eq!(close.len(), 1, "{text}");
    assert!(close[0].contains("why=\"exit now\""), "{}", close[0]);
    assert!(read(&run.dir.path().join("out/trades.csv")).contains("exit_now"));
}

/// A timeout after the venue applied the move: looked up, found applied; no second send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_timeout_after_applying_is_looked_up_not_resent() {
    let run = Run::start(&[]).await;
    run.fake.inject(Fault::on(
        STOP_PATH,
        FaultKind::TimeoutAfterApply {
            hold: Duration::from_secs(7),
        },
    ));
    let calls = run.stop_calls();
    run.price(dec!(17200), T0 + 60_000).await;
    run.wait_stop("the move applied", dec!(17157)).await;
    wait_for(
        "the look-up",
        Duration::from_secs(20),
        &run.log,
        async || {
            run.status()
                .await
                .is_some_and(|s| s["positions"][0]["confirmed_stop"] == "17157")
        },
    )
    .await;
    assert_eq!(run.stop_calls(), calls + 1, "{:?}", run.requests());
    let (text, _run) = run.finish().await;
    let moves = decisions(&text, "move stop to 17157");
    assert_eq!(moves.len(), 1, "{text}");
    assert!(
        moves[0].contains("result=\"ambiguous (looked up next)\""),
        "{}",
        moves[0]
    );
    let look = decisions(&text, "look up the stop");
    assert_eq!(look.len(), 1, "{text}");
    assert!(look[0].contains("result=\"accepted\""), "{}", look[0]);
}

/// A timeout before the venue applied it: the look-up finds the old stop, and the same move
/// (same client id) is sent again: one stop, at the intended price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_timeout_before_applying_is_looked_up_and_sent_again() {
    let run = Run::start(&[]).await;
    run.fake.inject(Fault::on(
        STOP_PATH,
        FaultKind::TimeoutBeforeApply {
            hold: Duration::from_secs(7),
        },
    ));
    let calls = run.stop_calls();
    run.price(dec!(17200), T0 + 60_000).await;
    run.wait_stop("the move sent again", dec!(17157)).await;
    assert_eq!(run.stop_calls(), calls + 2, "{:?}", run.requests());
    let (text, _run) = run.finish().await;
    let moves = decisions(&text, "move stop to 17157");
    assert_eq!(moves.len(), 2, "{text}");
    assert!(
        moves[0].contains("ambiguous (looked up next)"),
        "{}",
        moves[0]
    );
    assert!(
        moves[1].contains("not applied: sent again with the same client id"),
        "{}",
        moves[1]
    );
    assert!(moves[1].contains("result=\"accepted\""), "{}", moves[1]);
    let id = |l: &str| {
        l.split("client_id=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(id(moves[0]), id(moves[1]));
}

/// `10002` (the timestamp outside the window): the clock is read again and the move retried
/// once, successfully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_skew_refusal_resyncs_and_retries_once() {
    let run = Run::start(&[]).await;
    run.fake.inject(Fault::on(STOP_PATH, FaultKind::ClockSkew));
    let at = run.requests().len();
    run.price(dec!(17200), T0 + 60_000).await;
    run.wait_stop("the move after the resync", dec!(17157))
        .await;
    let after: Vec<(String, String)> = run.requests()[at..].to_vec();
    let paths: Vec<&str> = after.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        [STOP_PATH, "/v5/market/time", STOP_PATH],
        "{after:?}"
    );
    let (text, _run) = run.finish().await;
    let moves = decisions(&text, "move stop to 17157");
    assert_eq!(moves.len(), 1, "{text}");
    assert!(moves[0].contains("result=\"accepted\""), "{}", moves[0]);
}

/// Bybit's repeated `position` messages (nothing changed) send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spurious_position_messages_send_nothing() {
    let run = Run::start(&[]).await;
    let at = run.requests().len();
    for _ in 0..3 {
        run.fake.spurious_position(BTC, 0);
    }
    // A price after them on the other stream; then time for the private ones to be read.
    run.price(dec!(17010), T0 + 1_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run.requests()[at..].to_vec(), Vec::new());
    assert_eq!(run.stop(), Some(dec!(16830)));
    let (text, _run) = run.finish().await;
    assert_eq!(decisions(&text, "").len(), 1, "only the first stop: {text}");
}

/// The stop triggers while the private messages come twice and out of order: one close, one
/// trade row, one `Triggered` event, and nothing sent after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_swapped_messages_give_one_close() {
    let run = Run::start(&[]).await;
    run.fake.duplicate_next_private(6);
    run.fake.swap_next_private();
    let at = run.requests().len();
    run.fake.set_price(BTC, dec!(16800), true, T0 + 60_000);
    let trades = run.dir.path().join("out/trades.csv");
    wait_for(
        "the trade written",
        Duration::from_secs(30),
        &run.log,
        async || std::fs::read_to_string(&trades).is_ok_and(|t| t.lines().count() >= 2),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (text, run) = run.finish().await;
    let rows = read(&run.dir.path().join("out/trades.csv"));
    assert_eq!(rows.lines().count(), 2, "{rows}\n{text}");
    let events = read(&run.dir.path().join("out/events.jsonl"));
    assert_eq!(
        events
            .lines()
            .filter(|l| l.contains(r#""type":"Triggered""#))
            .count(),
        1,
        "{events}"
    );
    let posts: Vec<(String, String)> = run.requests()[at..]
        .iter()
        .filter(|(m, _)| m == "POST")
        .cloned()
        .collect();
    assert_eq!(posts, Vec::new(), "nothing sent after the trigger");
}

/// One run of the crash scenario: the first stop, a move to 17157, then the stop triggered;
/// crashed at `point` (a `TRAILSTOP_CRASH_AT` value) and restarted, unless `None`. Returns
/// `trades.csv`, `events.jsonl`, and the trading-stop calls after the restart.
async fn crash_scenario(point: Option<&str>) -> (String, String, usize) {
    let env: Vec<(&str, &str)> = point
        .map(|p| ("TRAILSTOP_CRASH_AT", p))
        .into_iter()
        .collect();
    let mut run = Run::launch(&env).await;
    let mut calls_before = 0;
    if point == Some("placing:1") {
        run.restart_after_abort().await;
        run.wait_stop("the first stop after the restart", dec!(16830))
            .await;
        run.price(dec!(17200), T0 + 60_000).await;
    } else {
        run.wait_stop("the first stop", dec!(16830)).await;
        run.fake.set_price(BTC, dec!(17200), false, T0 + 60_000);
        if point.is_some() {
            run.restart_after_abort().await;
            calls_before = run.stop_calls();
        }
    }
    run.wait_stop("the move", dec!(17157)).await;
    wait_for(
        "the move confirmed",
        Duration::from_secs(30),
        &run.log,
        async || {
            run.status()
                .await
                .is_some_and(|s| s["positions"][0]["confirmed_stop"] == "17157")
        },
    )
    .await;
    let after_restart = run.stop_calls() - calls_before;
    // The stop triggers: the trade is written.
    run.fake.set_price(BTC, dec!(17100), true, T0 + 120_000);
    let trades = run.dir.path().join("out/trades.csv");
    wait_for(
        "the trade written",
        Duration::from_secs(30),
        &run.log,
        async || std::fs::read_to_string(&trades).is_ok_and(|t| t.lines().count() >= 2),
    )
    .await;
    let (_, run) = run.finish().await;
    (
        read(&run.dir.path().join("out/trades.csv")),
        read(&run.dir.path().join("out/events.jsonl")),
        after_restart,
    )
}

/// SIGKILL-like aborts at every journal point (a stop's step committed before its request
/// left, for a first stop and for a move; the answer received before its commit; the answer
/// committed), each restarted: the exchange ends with the one stop at the stored price, sent
/// again only when its answer was not committed, and the trades and events equal an
/// uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_at_every_journal_point_resumes_to_one_stop_and_the_same_trades() {
    let (trades, events, _) = crash_scenario(None).await;
    assert_eq!(trades.lines().count(), 2, "{trades}");
    assert!(trades.contains(",17100,trailing_stop,"), "{trades}");
    // (point, trading-stop calls after the restart until the move is confirmed)
    for (point, resent) in [
        // The first stop never left: placed after the restart, then the move.
        ("placing:1", 2),
        // The move never left: sent after the restart.
        ("amending:1", 1),
        // The move was applied, its answer lost: sent again (Bybit: not modified, 34040).
        ("acked:2", 1),
        // The answer was committed: nothing to send again.
        ("committed:2", 0),
    ] {
        let (t, e, calls) = crash_scenario(Some(point)).await;
        assert_eq!(calls, resent, "{point}");
        assert_eq!(t, trades, "{point}");
        assert_eq!(e, events, "{point}");
    }
}
