//! One `trailstop live` process with many positions on the fake Bybit (issue 11, "Speed"):
//! the runner's CPU per price event and its peak memory, and the most `trading-stop` calls in
//! any rolling second (the account's limit: 10).
//!
//! The fake runs in this process; the runner is the release binary, a child process, so its
//! figures are its own (`/proc/<pid>/stat` user + system time, `/proc/<pid>/status` VmHWM).
//! One position per symbol (Bybit's one-way mode; an account holds at most two per symbol, so
//! "1,000 positions over 100 symbols" is not one account: the symbol count is the knob), longs
//! on even symbols, shorts on odd ones, trailing 1 % once 0.5 % in profit, no initial stop,
//! the engine's default update rules (60 s, 0.1 %, 1 % overrides). Price events stamped with
//! the wall clock, at a fixed total rate, round-robin over the symbols:
//! 1. quiet: a walk within ±0.3 % of the entry: nothing activates, no call is due;
//! 2. rally: every symbol moves 3 % in its position's favour: every position activates (a
//!    first stop: protective) and then wants a move per 1 % (the override), far more calls
//!    than 10 a second;
//! 3. hold at the new level until no call waits: every position's last sent stop confirmed.
//!
//! run with: cargo bench --features live --bench live_load
//! knobs: TS_LOAD_SYMBOLS (1000), TS_LOAD_RATE (price events/s, 2000), TS_LOAD_SECONDS (per
//! phase, 20)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;
use trailstop::engine::Side;
use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, InstrumentSpec, Setup};

const KEY: &str = "load-bench-key";
const SECRET: &str = "load-bench-secret";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// User + system CPU of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A `/proc/<pid>/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The most calls in any window `(t - 1000, t]` of sorted arrival times.
fn busiest_second(arrivals: &[i64]) -> usize {
    let mut best = 0;
    for (j, &t) in arrivals.iter().enumerate() {
        let first = arrivals.partition_point(|&a| a <= t - 1000);
        best = best.max(j + 1 - first);
    }
    best
}

fn side(i: usize) -> Side {
    if i.is_multiple_of(2) {
        Side::Long
    } else {
        Side::Short
    }
}

/// A deterministic walk: the `k`-th price of symbol `i` in the quiet phase, within ±0.3 %.
fn quiet_price(i: usize, k: u64) -> Decimal {
    let h = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(k.wrapping_mul(1442695040888963407));
    let off = ((h >> 33) % 61) as i64 - 30; // −30..=30 hundredths of a percent
    dec!(100) + Decimal::new(off, 2)
}

async fn status(url: &str) -> Option<Value> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

fn write_config(
    dir: &Path,
    fake: &FakeBybit,
    symbols: &[String],
    listen: &str,
) -> std::path::PathBuf {
    let list: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "load"
[venue]
exchange = "bybit"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_LOAD_KEY"
api_secret_env = "TS_LOAD_SECRET"
[positions]
symbols = [{}]
[trailing]
activation_percent = "0.5"
distance_percent = "1"
[store]
db = "live.sqlite"
out = "out"
[http]
listen = "{listen}"
"#,
            fake.rest_url(),
            fake.ws_url(),
            list.join(", ")
        ),
    )
    .unwrap();
    path
}

/// Sends `rate` price events a second for `secs`, round-robin over the symbols, the price
/// of the `k`-th event of symbol `i` given by `price`. Returns the events sent.
async fn drive(
    fake: &FakeBybit,
    symbols: &[String],
    rate: u64,
    secs: u64,
    last_ts: &mut [i64],
    mut price: impl FnMut(usize, u64, f64) -> Decimal,
) -> u64 {
    let start = Instant::now();
    let total = rate * secs;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let i = (sent % symbols.len() as u64) as usize;
            let k = sent / symbols.len() as u64;
            let progress = sent as f64 / total as f64;
            // Stamped with the wall clock, never before the symbol's last point.
            let ts = now_ms().max(last_ts[i] + 1);
            last_ts[i] = ts;
            fake.set_price(&symbols[i], price(i, k, progress), false, ts);
            sent += 1;
        }
    }
    sent
}

/// Waits until the runner's `/status` shows every symbol's last point processed (`ts[i]`).
async fn caught_up(url: &str, symbols: &[String], ts: &[i64], within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(s) = status(url).await {
            let done = symbols.iter().zip(ts).all(|(sym, &ts)| {
                s["symbols"][sym]["last_price_ts"]
                    .as_i64()
                    .is_some_and(|t| t >= ts)
            });
            if done {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trailstop"))
        .arg("live")
        .arg(config)
        .env("TS_LOAD_KEY", KEY)
        .env("TS_LOAD_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let n = knob("TS_LOAD_SYMBOLS", 1000) as usize;
    let rate = knob("TS_LOAD_RATE", 2000);
    let secs = knob("TS_LOAD_SECONDS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let symbols: Vec<String> = (0..n).map(|i| format!("S{i:04}USDT")).collect();
        let specs = symbols
            .iter()
            .map(|s| InstrumentSpec::new(s, dec!(0.01)))
            .collect();
        let fake = FakeBybit::start(FakeConfig::new(Setup::new(KEY, SECRET, specs)))
            .await
            .unwrap();
        let t0 = now_ms();
        for (i, s) in symbols.iter().enumerate() {
            fake.set_price(s, dec!(100), true, t0);
            fake.open_position(s, side(i), dec!(1), t0).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let url = format!("http://{listen}/status");
        let config = write_config(dir.path(), &fake, &symbols, &listen);
        let log = dir.path().join("live.log");
        let started = Instant::now();
        let mut child = spawn(&config, &log);
        let pid = child.id();
        let until = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(s) = status(&url).await
                && s["reconciled"] == Value::Bool(true)
                && s["positions"].as_array().map_or(0, Vec::len) == n
            {
                break;
            }
            assert!(
                Instant::now() < until,
                "not reconciled in 300 s\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "{n} positions on {n} symbols reconciled in {:.1} s (RSS {} MB)",
            started.elapsed().as_secs_f64(),
            status_kb(pid, "VmRSS:") / 1024
        );
        let mut last_ts = vec![t0; n];

        // 1. Quiet.
        let cpu0 = cpu_seconds(pid);
        let w0 = Instant::now();
        let sent = drive(&fake, &symbols, rate, secs, &mut last_ts, |i, k, _| {
            quiet_price(i, k)
        })
        .await;
        assert!(caught_up(&url, &symbols, &last_ts, Duration::from_secs(120)).await);
        let cpu1 = cpu_seconds(pid);
        let wall = w0.elapsed().as_secs_f64();
        println!(
            "quiet: {sent} price events in {wall:.1} s: runner CPU {:.1} µs per event ({:.0} % of a core)",
            (cpu1 - cpu0) / sent as f64 * 1e6,
            (cpu1 - cpu0) / wall * 100.0
        );
        let calls_before = fake
            .requests()
            .iter()
            .filter(|r| r.path == "/v5/position/trading-stop")
            .count();

        // 2. Rally: 3 % in each position's favour, linearly.
        let w1 = Instant::now();
        let sent = drive(&fake, &symbols, rate, secs, &mut last_ts, |i, _, p| {
            let moved = Decimal::new((300.0 * p) as i64, 2);
            match side(i) {
                Side::Long => dec!(100) + moved,
                Side::Short => dec!(100) - moved,
            }
        })
        .await;
        assert!(caught_up(&url, &symbols, &last_ts, Duration::from_secs(120)).await);
        let cpu2 = cpu_seconds(pid);
        let wall = w1.elapsed().as_secs_f64();
        println!(
            "rally: {sent} price events in {wall:.1} s: runner CPU {:.1} µs per event ({:.0} % of a core), \
             stop calls included",
            (cpu2 - cpu1) / sent as f64 * 1e6,
            (cpu2 - cpu1) / wall * 100.0
        );

        // 3. Hold at the new level until no call waits (each last sent stop confirmed).
        let w2 = Instant::now();
        let settled = loop {
            drive(&fake, &symbols, rate, 1, &mut last_ts, |i, _, _| match side(i) {
                Side::Long => dec!(103),
                Side::Short => dec!(97),
            })
            .await;
            let done = status(&url).await.is_some_and(|s| {
                s["positions"].as_array().is_some_and(|ps| {
                    ps.len() == n
                        && ps.iter().all(|p| {
                            p["confirmed_stop"] != Value::Null
                                && p["sent_stop"] == p["confirmed_stop"]
                        })
                })
            });
            if done {
                break true;
            }
            if w2.elapsed() > Duration::from_secs(600) {
                break false;
            }
        };
        let exchange_ok = symbols.iter().all(|s| fake.position(s, 0).stop_loss.is_some());
        let peak = status_kb(pid, "VmHWM:");
        let rss = status_kb(pid, "VmRSS:");
        let cpu3 = cpu_seconds(pid);
        // SAFETY: kill(2) on the pid of a child this bench started and has not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let exit = child.wait().unwrap();

        let requests = fake.requests();
        let arrivals = fake.arrivals();
        let stop_calls: Vec<i64> = requests
            .iter()
            .zip(&arrivals)
            .filter(|(r, _)| r.path == "/v5/position/trading-stop")
            .map(|(_, &t)| t)
            .collect();
        println!(
            "after the rally: nothing waiting after {:.1} s more ({}), on the exchange: {}",
            w2.elapsed().as_secs_f64(),
            if settled { "settled" } else { "NOT settled" },
            if exchange_ok { "every position has a stop" } else { "some without a stop" }
        );
        println!(
            "trading-stop calls: {} in all ({} during the rally and after), most in any \
             rolling second: {} (limit 10); 10006 answers: {}",
            stop_calls.len(),
            stop_calls.len() - calls_before,
            busiest_second(&stop_calls),
            fake.rate_limited()
        );
        println!(
            "runner memory: peak RSS (VmHWM) {:.1} MB, RSS at the end {:.1} MB; CPU in all {:.1} s; exit {exit}",
            peak as f64 / 1024.0,
            rss as f64 / 1024.0,
            cpu3
        );
        fake.stop().await;
    });
}
