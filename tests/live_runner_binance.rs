//! `trailstop live` with `exchange = "binance"` end to end against the fake Binance on
//! loopback (feature `live`): a real candle file replayed as the mark price in lockstep with
//! the runner's `/status`, positions opened at a scenario's entries. Binance has no amend:
//! every move is a cancel, then a create (`clientAlgoId` `ts-<position>-<seq>`). The runner
//! must end with the trades and events of `trailstop backtest` with `venue = "binance"`, the
//! unprotected windows included (also with a create latency, which the fake reports as the
//! create's `updateTime`); and after a SIGKILL between the cancel and the create, or
//! after the create before its commit, restart with exactly one stop, found by its
//! `clientAlgoId`. Every wait is bounded.
#![cfg(feature = "live")]

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

mod live_support;
use live_support::binance::{ALGO, KEY, Replayed as Run, SECRET, param};
use live_support::read;

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

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

fn trades_rows(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// The backtest of the scenario, and the fake Binance replaying it in lockstep with a
/// runner's status on a free port (its creates trigger only `latency_ms` of data time
/// after them, as the backtester's `binance` venue).
async fn setup(latency_ms: i64) -> Run {
    Run::setup(latency_ms, |_| {}).await
}

/// Replays the scenario through the runner on the fake Binance; the trades (and, when
/// `whole`, the events) against the backtest's.
async fn replay(latency_ms: i64) -> Run {
    let run = setup(latency_ms).await;
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    signal(&live, libc::SIGTERM);
    let exit = exit_of(&mut live, Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}: {}", read(&run.log));
    // Each move is a cancel, then a create: never an amend, never a stop on /fapi/v1/order.
    let creates = run.algo_calls("POST").len();
    let cancels = run.algo_calls("DELETE").len();
    assert!(
        creates >= 5 && cancels >= 1,
        "{creates} creates, {cancels} cancels"
    );
    assert!(
        run.fake
            .requests()
            .iter()
            .all(|r| !(r.path == "/fapi/v1/order"
                && format!("{}{}", r.query, r.body).contains("STOP"))),
        "a stop sent to the old endpoint"
    );
    assert!(
        run.fake.resting_stops().is_empty(),
        "{:?}",
        run.fake.resting_stops()
    );
    run
}

fn unprotected(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(14).unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_fake_binance_ends_with_the_backtests_trades() {
    let run = replay(0).await;
    run.assert_backtest();
    // No create latency: no replace left a position bare in data time.
    assert_eq!(unprotected(&read(&run.trades())), vec!["0"; 5]);
}

/// The fake's creates take effect 30 s of data time after them, as the backtester's with
/// `update_latency_ms = 30000`, and it says so (the create's `updateTime`, the `ALGO_UPDATE`'s
/// event time): the runner measures each window from the cancel's acknowledgement to that
/// time, so the trades (the unprotected windows included) and the events are the backtest's
/// byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_create_latency_the_exits_match_the_backtest() {
    let run = replay(30_000).await;
    run.assert_backtest();
    // Every trade had its first create's window and its replaces' at least.
    let live = read(&run.trades());
    assert!(
        unprotected(&live)
            .iter()
            .all(|u| u.parse::<i64>().unwrap() >= 30_000),
        "{live}"
    );
}

/// The `clientAlgoId` of every create sent, in order.
fn creates(run: &Run) -> Vec<String> {
    run.fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == ALGO)
        .filter_map(|r| param(r, "clientAlgoId"))
        .collect()
}

/// The replay with the runner aborted at `point` (`TRAILSTOP_CRASH_AT`, as abrupt as a
/// SIGKILL) and restarted on the same database. Returns the run, the stops resting when it
/// died, and how many requests the fake had by then.
async fn crashed_at(point: &str) -> (Run, Vec<(String, String, rust_decimal::Decimal)>, usize) {
    let run = setup(0).await;
    let mut live = run.spawn(&[("TRAILSTOP_CRASH_AT", point)]);
    let exit = exit_of(&mut live, Duration::from_secs(120)).await;
    assert!(!exit.success(), "{exit:?}: {}", read(&run.log));
    assert!(
        read(&run.log).contains(&format!(
            "TRAILSTOP_CRASH_AT: aborting at {}",
            point.split(':').next().unwrap()
        )),
        "{}",
        read(&run.log)
    );
    let resting = run.fake.resting_stops();
    let before = run.fake.requests().len();
    let mut again = run.spawn(&[]);
    run.until_replayed(&mut again).await;
    signal(&again, libc::SIGTERM);
    assert!(exit_of(&mut again, Duration::from_secs(10)).await.success());
    // The crash changed nothing: the backtest's trades, each create sent once, no stop left.
    assert_eq!(
        read(&run.trades()),
        read(&run.backtest.join("trades.csv")),
        "{}",
        read(&run.log)
    );
    let sent = creates(&run);
    let unique: std::collections::BTreeSet<&String> = sent.iter().collect();
    assert_eq!(unique.len(), sent.len(), "a create sent twice: {sent:?}");
    assert!(run.fake.resting_stops().is_empty());
    (run, resting, before)
}

/// SIGKILL after the cancel of the first move was acknowledged, before its commit (no stop
/// rests): on restart the cancel is looked into (`-2011`: gone, the position open) and the
/// new stop created once — the position never holds two stops, and none is re-created on a
/// closed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_cancel_and_the_create_restarts_with_one_stop() {
    let (run, resting, before) = crashed_at("acked:2").await;
    assert_eq!(resting, Vec::new(), "the cancel took the only stop");
    let after = &run.fake.requests()[before..];
    let first_create = after
        .iter()
        .position(|r| r.method == "POST" && r.path == ALGO)
        .expect("a create after the restart");
    // Before anything is created, the stops are read (reconciliation, by clientAlgoId).
    assert!(
        after[..first_create]
            .iter()
            .any(|r| r.method == "GET" && r.path == "/fapi/v1/openAlgoOrders"),
        "{:?}",
        after.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(
        run.fake
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE"
                && r.path == ALGO
                && param(r, "clientAlgoId") == Some("ts-1-1".into()))
            .count(),
        2,
        "the cancel, and the one resent after the restart"
    );
}

/// SIGKILL after the create of the first move was acknowledged, before its commit: on
/// restart the stop is found by its `clientAlgoId` (looked up, never created again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_create_before_its_commit_finds_the_stop_by_its_client_algo_id() {
    let (run, resting, before) = crashed_at("acked:3").await;
    assert_eq!(resting.len(), 1, "{resting:?}");
    let id = resting[0].0.clone();
    let after = &run.fake.requests()[before..];
    assert!(
        after.iter().any(|r| r.method == "GET"
            && r.path == ALGO
            && param(r, "clientAlgoId") == Some(id.clone())),
        "looked up by {id}: {:?}",
        after
            .iter()
            .map(|r| (&r.method, &r.path, &r.query))
            .collect::<Vec<_>>()
    );
    assert!(
        !after
            .iter()
            .any(|r| r.method == "POST" && param(r, "clientAlgoId") == Some(id.clone())),
        "{id} created again"
    );
    assert!(
        read(&run.log).contains("reconcile: LookUp { position_id: 1"),
        "{}",
        read(&run.log)
    );
}

async fn status(url: &str) -> Option<serde_json::Value> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Polls the runner's status until `done`, at most 120 s.
async fn wait_status(run: &Run, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = status(&run.status_url()).await
            && done(&s)
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: not in 120 s: {}",
            read(&run.log)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Run {
    fn status_url(&self) -> String {
        let text = read(&self.config);
        let listen = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_string();
        format!("http://{listen}/status")
    }
}

/// The listenKey expires mid-run (`listenKeyExpired`, the user stream closed): the runner
/// takes a new key, opens a new user stream, re-checks over REST, and still ends with the
/// backtest's trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_listen_key_is_renewed_and_the_replay_still_equals_the_backtest() {
    let run = setup(0).await;
    let mut live = run.spawn(&[]);
    wait_status(&run, "the second position", |s| {
        s["positions"][0]["position_id"] == 2
    })
    .await;
    let keys_before = run
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/listenKey")
        .count();
    run.fake.expire_listen_key();
    run.until_replayed(&mut live).await;
    signal(&live, libc::SIGTERM);
    assert!(exit_of(&mut live, Duration::from_secs(10)).await.success());
    let text = read(&run.log);
    assert!(
        text.contains("user stream: a new listenKey; re-checking"),
        "{text}"
    );
    let keys_after = run
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/listenKey")
        .count();
    assert_eq!((keys_before, keys_after > keys_before), (1, true));
    run.assert_backtest();
}

/// The first stop's trigger is rejected at market (`-4131`: `REJECTED` after `TRIGGERING`):
/// the position is unprotected, so the runner alerts and closes it at market, reduce-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_rejected_at_market_closes_the_position_and_alerts() {
    let run = setup(0).await;
    run.fake.reject_next_trigger();
    let mut live = run.spawn(&[]);
    let trades = run.trades();
    let until = Instant::now() + Duration::from_secs(120);
    while trades_rows(&trades) < 1 {
        assert!(
            Instant::now() < until,
            "no trade in 120 s: {}",
            read(&run.log)
        );
        assert!(live.try_wait().unwrap().is_none(), "{}", read(&run.log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&live, libc::SIGTERM);
    assert!(exit_of(&mut live, Duration::from_secs(10)).await.success());
    let text = read(&run.log);
    assert!(
        text.contains("ALERT: position 1: its stop fired but did not close it"),
        "{text}"
    );
    let closes: Vec<_> = run
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/order")
        .collect();
    assert_eq!(closes.len(), 1, "{text}");
    assert_eq!(param(&closes[0], "type").as_deref(), Some("MARKET"));
    assert_eq!(param(&closes[0], "reduceOnly").as_deref(), Some("true"));
    assert!(
        run.fake.positions().iter().all(|p| p.3.is_zero()),
        "{:?}",
        run.fake.positions()
    );
}

/// The values of `name` in a Prometheus text, by their labels.
fn metric(text: &str, name: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    trailstop::live::metrics::samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels, s.value))
        .collect()
}

/// `/metrics` of a replay on Binance: every replace (a cancel, then a create) is one more
/// unprotected window and one counted stop update, every algoOrder request is timed under
/// its path, the positions read 0 once all are closed, and neither the key nor the secret
/// is in what the runner serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_binance_show_each_replace() {
    let run = setup(0).await;
    let mut live = run.spawn(&[]);
    run.until_replayed(&mut live).await;
    let url = run.status_url().replace("/status", "/metrics");
    let until = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let positions = metric(&text, "trailstop_positions");
        if !positions.is_empty() && positions.iter().all(|(_, v)| *v == 0.0) {
            break text;
        }
        assert!(Instant::now() < until, "positions not 0:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let creates = run.algo_calls("POST").len();
    let cancels = run.algo_calls("DELETE").len();
    let algo_requests = run
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == ALGO)
        .count();
    signal(&live, libc::SIGTERM);
    let exit = exit_of(&mut live, Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}: {}", read(&run.log));
    assert!(cancels >= 1, "{creates} creates, {cancels} cancels");

    // A stop update counted by its reason: the five initial stops, then one per replace.
    let updates = |reason: &str| {
        metric(&text, "trailstop_stop_updates_total")
            .iter()
            .filter(|(l, _)| l.get("result").is_some_and(|r| r == "ok"))
            .filter(|(l, _)| l.get("reason").is_some_and(|r| r == reason))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    let all_ok: f64 = metric(&text, "trailstop_stop_updates_total")
        .iter()
        .filter(|(l, _)| l.get("result").is_some_and(|r| r == "ok"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(updates("initial"), 5.0, "{text}");
    assert_eq!(
        updates("normal") + updates("emergency"),
        cancels as f64,
        "one update per replace:\n{text}"
    );
    assert_eq!(all_ok, creates as f64, "each create one update:\n{text}");
    // A window closes each time a stop rests again: after each position's first create and
    // after each replace's create.
    let windows = metric(&text, "trailstop_unprotected_seconds_count");
    assert_eq!(windows.len(), 1, "{text}");
    assert_eq!(
        windows[0].1,
        5.0 + cancels as f64,
        "the windows grew by the replaces:\n{text}"
    );
    let algo = metric(&text, "trailstop_exchange_request_seconds_count")
        .into_iter()
        .find(|(l, _)| l.get("endpoint").is_some_and(|e| e == ALGO));
    assert_eq!(
        algo.map(|(_, v)| v),
        Some(algo_requests as f64),
        "every algoOrder request timed:\n{text}"
    );
    assert!(!text.contains(KEY) && !text.contains(SECRET), "{text}");
}
