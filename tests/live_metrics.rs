//! `GET /metrics` of `trailstop live` against the fake Bybit on loopback (feature `live`):
//! scripted events move each metric of `LIVE.md` §6 exactly as expected, read by scraping
//! `/metrics` over HTTP; `/status` shows the streams, the circuit and the unprotected time;
//! no key is ever in what the runner serves. Every wait is bounded.
#![cfg(feature = "live")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::engine::Side;
use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, Fault, FaultKind, InstrumentSpec, Setup};
use trailstop::live::metrics::sample;

const KEY: &str = "metrics-test-key-4c1e77";
const SECRET: &str = "metrics-test-secret-9b02fa";
const BTC: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_trailstop")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_live_toml(dir: &Path, fake: &FakeBybit, listen: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "metrics"
[venue]
exchange = "bybit"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_METRICS_KEY"
api_secret_env = "TS_METRICS_SECRET"
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

/// A child process killed when dropped (a failing assertion leaves no runner behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_live(config: &Path, log: &Path) -> Child {
    Command::new(bin())
        .arg("live")
        .arg(config)
        .env("TS_METRICS_KEY", KEY)
        .env("TS_METRICS_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

async fn get(url: &str) -> Option<String> {
    reqwest::get(url).await.ok()?.text().await.ok()
}

/// Polls `/metrics` until `done` holds for its text, at most `within`; the last text.
async fn scrape_until(
    url: &str,
    what: &str,
    log: &Path,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + within;
    loop {
        if let Some(text) = get(url).await
            && done(&text)
        {
            return text;
        }
        assert!(
            Instant::now() < until,
            "{what}: not within {within:?}\n--- metrics:\n{}\n--- log:\n{}",
            get(url).await.unwrap_or_default(),
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn updates(text: &str, reason: &str, result: &str) -> f64 {
    sample(
        text,
        "trailstop_stop_updates_total",
        &[("symbol", BTC), ("reason", reason), ("result", result)],
    )
    .unwrap_or(0.0)
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(f64::NAN)
}

/// A position opened (its initial stop), an activation with a normal send, a held update,
/// an emergency send, a rate-limited send sent again after the reset, dropped streams, the
/// trigger: each step moves exactly its metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_events_move_each_metric_as_expected() {
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
    let metrics = format!("http://{listen}/metrics");
    let status = format!("http://{listen}/status");
    let config = write_live_toml(dir.path(), &fake, &listen);
    let log = dir.path().join("live.log");
    let mut live = Reaped(spawn_live(&config, &log));
    let wait = Duration::from_secs(30);
    let stop_calls = || {
        fake.requests()
            .iter()
            .filter(|r| r.path == "/v5/position/trading-stop")
            .count() as f64
    };
    let mut served: Vec<String> = Vec::new();

    // Reconciled: the position found is a new trailing stop; its initial stop 1 % below.
    let text = scrape_until(&metrics, "the initial stop", &log, wait, |t| {
        updates(t, "initial", "ok") == 1.0
    })
    .await;
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16830)));
    assert_eq!(
        value(
            &text,
            "trailstop_reconcile_fixes_total",
            &[("kind", "new_position")]
        ),
        1.0
    );
    let text = scrape_until(&metrics, "the gauges", &log, wait, |t| {
        sample(
            t,
            "trailstop_positions",
            &[("symbol", BTC), ("state", "inactive")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&text, "trailstop_positions_without_trailing_stop", &[]),
        0.0
    );
    assert_eq!(value(&text, "trailstop_positions_unprotected", &[]), 0.0);
    assert_eq!(
        value(&text, "trailstop_circuit_open", &[("venue", "bybit")]),
        0.0
    );
    assert_eq!(
        value(&text, "trailstop_activations_total", &[("reason", "price")]),
        0.0
    );
    assert!(value(&text, "trailstop_db_commit_seconds_count", &[]) >= 1.0);
    assert!(value(&text, "trailstop_clock_offset_ms", &[]).is_finite());
    served.push(text);

    // 17100 (0.59 % up): activation, a normal send 0.25 % below.
    fake.set_price(BTC, dec!(17100), false, T0 + 60_000);
    let text = scrape_until(&metrics, "the activation's send", &log, wait, |t| {
        updates(t, "normal", "ok") == 1.0
    })
    .await;
    assert_eq!(
        value(&text, "trailstop_activations_total", &[("reason", "price")]),
        1.0
    );
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(17057.25)));
    let text = scrape_until(&metrics, "active", &log, wait, |t| {
        sample(
            t,
            "trailstop_positions",
            &[("symbol", BTC), ("state", "active")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(
            &text,
            "trailstop_positions",
            &[("symbol", BTC), ("state", "inactive")]
        ),
        0.0
    );
    assert!(value(&text, "trailstop_engine_step_seconds_count", &[]) >= 1.0);

    // 17110 ten seconds later: too soon and too little: held (interval).
    fake.set_price(BTC, dec!(17110), false, T0 + 70_000);
    let text = scrape_until(&metrics, "the held update", &log, wait, |t| {
        sample(t, "trailstop_updates_held_total", &[("reason", "interval")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(
            &text,
            "trailstop_updates_held_total",
            &[("reason", "improvement")]
        ),
        0.0
    );
    assert_eq!(
        updates(&text, "normal", "ok") + updates(&text, "emergency", "ok"),
        1.0
    );

    // 17400 at 80 s: 1.75 % better than the sent stop: an emergency send.
    fake.set_price(BTC, dec!(17400), false, T0 + 80_000);
    let text = scrape_until(&metrics, "the emergency send", &log, wait, |t| {
        updates(t, "emergency", "ok") == 1.0
    })
    .await;
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(17356.5)));
    assert_eq!(
        value(
            &text,
            "trailstop_updates_held_total",
            &[("reason", "interval")]
        ),
        1.0
    );

    // A fault: the next stop send is rate limited (10006): an error by class and code; the
    // send waits for the reset and goes out again, accepted (counted once, as ok).
    fake.inject(Fault::on(
        "/v5/position/trading-stop",
        FaultKind::RateLimited { reset_in_ms: 50 },
    ));
    fake.set_price(BTC, dec!(17700), false, T0 + 90_000);
    let text = scrape_until(&metrics, "the send after the rate limit", &log, wait, |t| {
        updates(t, "emergency", "ok") == 2.0
    })
    .await;
    assert_eq!(
        value(
            &text,
            "trailstop_exchange_errors_total",
            &[("class", "rate_limited"), ("code", "10006")]
        ),
        1.0
    );
    assert_eq!(updates(&text, "emergency", "rate_limited"), 0.0);
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(17655.75)));
    // Every trading-stop request the fake saw was timed, and only those.
    assert_eq!(
        value(
            &text,
            "trailstop_exchange_request_seconds_count",
            &[("endpoint", "/v5/position/trading-stop")]
        ),
        stop_calls()
    );
    assert_eq!(
        stop_calls(),
        5.0,
        "initial, normal, emergency, the refused one, its resend"
    );
    served.push(text);

    // Both streams dropped: each reconnect counted once.
    fake.drop_streams(None);
    let text = scrape_until(&metrics, "the reconnects", &log, wait, |t| {
        sample(
            t,
            "trailstop_stream_reconnects_total",
            &[("stream", "public")],
        ) == Some(1.0)
            && sample(
                t,
                "trailstop_stream_reconnects_total",
                &[("stream", "private")],
            ) == Some(1.0)
    })
    .await;
    served.push(text);
    let s: Value = serde_json::from_str(&get(&status).await.unwrap()).unwrap();
    assert_eq!(s["circuit"]["bybit"], "closed", "{s}");
    assert_eq!(s["positions"][0]["unprotected_since"], Value::Null, "{s}");
    let public = &s["streams"]["public"];
    assert!(public["last_message_age_ms"].is_u64(), "{s}");
    served.push(s.to_string());

    // 17300: through the resting stop: it triggers on the exchange; the trigger is counted
    // and the position is gone from the gauges.
    fake.set_price(BTC, dec!(17300), false, T0 + 100_000);
    let text = scrape_until(&metrics, "the trigger", &log, wait, |t| {
        sample(
            t,
            "trailstop_triggers_total",
            &[("reason", "trailing_stop")],
        ) == Some(1.0)
    })
    .await;
    let text = if value(
        &text,
        "trailstop_positions",
        &[("symbol", BTC), ("state", "active")],
    ) == 0.0
    {
        text
    } else {
        scrape_until(&metrics, "no position", &log, wait, |t| {
            sample(
                t,
                "trailstop_positions",
                &[("symbol", BTC), ("state", "active")],
            ) == Some(0.0)
        })
        .await
    };
    for r in ["initial_stop", "breakeven_stop", "exit_now", "end_of_data"] {
        assert_eq!(
            value(&text, "trailstop_triggers_total", &[("reason", r)]),
            0.0
        );
    }
    let age = value(&text, "trailstop_price_age_seconds", &[("symbol", BTC)]);
    assert!((0.0..10.0).contains(&age), "{age}");
    // The README's table of metrics is the set the runner serves: each is in this scrape.
    let listed = readme_metrics();
    let mut all: Vec<String> = trailstop::live::metrics::names::ALL
        .iter()
        .map(|n| n.to_string())
        .collect();
    all.sort_unstable();
    assert_eq!(listed, all, "the README's metrics against LIVE.md §6's");
    for name in &listed {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in the README, not in the scrape:\n{text}"
        );
    }
    served.push(text);

    // SIGTERM: exit 0.
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(live.0.id() as i32, libc::SIGTERM) }, 0);
    let until = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = live.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "no exit: {}", read(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}: {}", read(&log));
    for text in served.iter().chain([&read(&log)]) {
        assert!(!text.contains(KEY) && !text.contains(SECRET), "{text}");
    }
}

/// The metric names of the README's table (the rows of its `## Monitoring` section that start
/// with a metric), sorted.
fn readme_metrics() -> Vec<String> {
    let text = include_str!("../README.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Monitoring"))
        .expect("a Monitoring section");
    let mut names: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("trailstop_"))
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// A scenario of five positions (each closed before the next opens) on a day of 1m candles
/// on `venue`'s simulator, and its backtest's events.
fn paper_scenario(dir: &Path, venue: &str) -> (PathBuf, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        dir.join("entries.csv"),
        "time,side\n2022-12-13T10:00:00Z,short\n2022-12-13T12:00:00Z,long\n\
         2022-12-13T14:00:00Z,short\n2022-12-13T16:00:00Z,long\n2022-12-13T22:00:00Z,short\n",
    )
    .unwrap();
    let path = dir.join("scenario.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "paper-metrics"
[data]
candles = "{}"
symbol = "BTCUSDT"
tick_size = "0.01"
[entries]
file = "entries.csv"
[exchange]
venue = "{venue}"
[trailing]
activation_percent = "0.3"
distance_percent = "0.25"
initial_stop_percent = "1.0"
[trailing.rate_limit]
min_interval_seconds = 60
min_improvement_percent = "0.1"
emergency_percent = "1.0"
[intrabar]
policy = "olhc"
"#,
            root.join("data/BTCUSDT-bybit-1m-20221213.csv").display()
        ),
    )
    .unwrap();
    let bt = dir.join("bt");
    let out = Command::new(bin())
        .args(["backtest", "-q", "--out"])
        .arg(&bt)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (path, read(&bt.join("events.jsonl")))
}

/// `paper --http`: while the run goes on, /metrics counts what the backtest's events say for
/// the positions closed so far (read between two positions, when nothing is open), and
/// /status and /healthz answer. Bybit's simulator amends in place: the only unprotected
/// windows are the first creates, 0 ms each (answered at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_serves_metrics_that_match_its_events() {
    paper_metrics_match_events("bybit").await;
}

/// The same on Binance's simulator (cancel, then create, answered at once): each replace's
/// window opens and closes inside one step and is observed, 0 ms long, so the histogram's
/// count is every stop sent (first creates and replaces) and its sum 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_on_binance_observes_every_replace_window() {
    paper_metrics_match_events("binance").await;
}

async fn paper_metrics_match_events(venue: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (scenario, events) = paper_scenario(dir.path(), venue);
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("paper.log");
    let mut paper = Reaped(
        Command::new(bin())
            .arg("paper")
            .arg(&scenario)
            .arg("--db")
            .arg(dir.path().join("paper.sqlite"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .args(["--speed", "12000", "--http", &listen, "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let metrics = format!("http://{listen}/metrics");
    let mut between: Vec<String> = Vec::new();
    let mut open_seen = false;
    let mut status_seen = false;
    let until = Instant::now() + Duration::from_secs(120);
    while paper.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "paper not done: {}", read(&log));
        if let Some(t) = get(&metrics).await {
            let open: f64 = ["inactive", "active"]
                .iter()
                .map(|s| {
                    sample(&t, "trailstop_positions", &[("symbol", BTC), ("state", s)])
                        .unwrap_or(0.0)
                })
                .sum();
            let closed: f64 = [
                "initial_stop",
                "breakeven_stop",
                "trailing_stop",
                "exit_now",
                "end_of_data",
            ]
            .iter()
            .map(|r| value(&t, "trailstop_triggers_total", &[("reason", r)]))
            .sum();
            if open == 1.0 && !status_seen {
                open_seen = true;
                if let Some(s) = get(&format!("http://{listen}/status")).await
                    && let Ok(s) = serde_json::from_str::<Value>(&s)
                    && s["positions"].as_array().is_some_and(|p| p.len() == 1)
                {
                    assert_eq!(s["positions"][0]["symbol"], BTC, "{s}");
                    assert!(s["symbols"][BTC]["price"].is_string(), "{s}");
                    let h = reqwest::get(format!("http://{listen}/healthz"))
                        .await
                        .unwrap();
                    assert_eq!(h.status().as_u16(), 200);
                    status_seen = true;
                }
            }
            if open == 0.0 && (1.0..5.0).contains(&closed) {
                between.push(t);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(paper.0.wait().unwrap().success(), "{}", read(&log));
    assert!(open_seen && status_seen, "an open position was shown");
    assert!(!between.is_empty(), "a scrape between two positions");
    for t in &between {
        let closed = [
            "initial_stop",
            "breakeven_stop",
            "trailing_stop",
            "exit_now",
            "end_of_data",
        ]
        .iter()
        .map(|r| value(t, "trailstop_triggers_total", &[("reason", r)]))
        .sum::<f64>() as u64;
        // The backtest's events of the positions closed so far (ids 1..=closed).
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["position_id"].as_u64().is_some_and(|id| id <= closed))
            .collect();
        let n = |ty: &str, field: &str, v: &str| {
            mine.iter()
                .filter(|e| e["type"] == ty && e[field] == v)
                .count() as f64
        };
        for r in ["price", "time"] {
            assert_eq!(
                value(t, "trailstop_activations_total", &[("reason", r)]),
                n("Activated", "reason", r),
                "{t}"
            );
        }
        for r in ["interval", "improvement"] {
            assert_eq!(
                value(t, "trailstop_updates_held_total", &[("reason", r)]),
                n("UpdateHeld", "reason", r),
                "{t}"
            );
        }
        for r in ["initial", "normal", "emergency"] {
            assert_eq!(updates(t, r, "ok"), n("UpdateSent", "reason", r), "{t}");
        }
        let windows = match venue {
            "binance" => ["initial", "normal", "emergency"]
                .iter()
                .map(|r| n("UpdateSent", "reason", r))
                .sum::<f64>(),
            _ => n("UpdateSent", "reason", "initial"),
        };
        assert!(windows >= closed as f64, "a first stop per position");
        if venue == "binance" {
            assert!(windows > closed as f64, "replaces too");
        }
        assert_eq!(
            value(t, "trailstop_unprotected_seconds_count", &[]),
            windows,
            "{t}"
        );
        assert_eq!(value(t, "trailstop_unprotected_seconds_sum", &[]), 0.0);
        assert_eq!(value(t, "trailstop_positions_unprotected", &[]), 0.0);
        assert_eq!(
            value(t, "trailstop_circuit_open", &[("venue", "sim")]),
            0.0,
            "{t}"
        );
        for r in [
            "initial_stop",
            "breakeven_stop",
            "trailing_stop",
            "exit_now",
            "end_of_data",
        ] {
            assert_eq!(
                value(t, "trailstop_triggers_total", &[("reason", r)]),
                n("Triggered", "reason", r),
                "{t}"
            );
        }
    }
}
