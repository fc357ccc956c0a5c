//! `trailstop fake-binance SOURCE [--listen ADDR] [--open TIME,SIDE[,QTY[,PRICE]]]…` (feature
//! `live`): the fake Binance USD-M of `live::fake_binance` as a program, as `fake-bybit` is for
//! Bybit. SOURCE is a scenario (its data, tick size, intrabar policy and entries) or a
//! candle/trade file; its points are replayed as the mark price (`markPriceUpdate`, and as
//! `aggTrade`), positions open at the given times, and stops trigger on it. Keys: the values
//! of the two environment variables named (the same ones `live.toml` names).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use serde_json::Value;

use super::fake_bybit::{env_value, parse_open, parse_policy, say};
use crate::live::fake_binance::{
    FakeBinance, FakeConfig, InstrumentSpec, Outgoing, Pace, Replay, Setup, replay,
};
use crate::scenario::Scenario;

#[derive(clap::Args)]
pub struct Args {
    /// A scenario (`.toml`) or a candle / trade file to replay as the mark price.
    source: PathBuf,
    /// Where to listen (REST and both stream hosts on one port; loopback unless changed).
    #[arg(long, default_value = "127.0.0.1:9191")]
    listen: SocketAddr,
    /// The symbol of a data file's prices [a scenario names its own].
    #[arg(long, default_value = "BTCUSDT")]
    symbol: String,
    /// The tick size of a data file's symbol [default: the decimals its prices have].
    #[arg(long)]
    tick: Option<Decimal>,
    /// Candle → points order for a data file (`ohlc`, `olhc`; side-dependent policies are
    /// read as for a long) [a scenario names its own].
    #[arg(long, default_value = "olhc")]
    policy: String,
    /// Open a position: `TIME,SIDE[,QTY[,PRICE]]` (TIME as in entry files, SIDE long|short,
    /// QTY default 1; without PRICE at the first candle open / trade at or after TIME).
    /// Repeatable; added to a scenario's entries.
    #[arg(long = "open", value_name = "TIME,SIDE[,QTY[,PRICE]]")]
    open: Vec<String>,
    /// Milliseconds between replayed points.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Step in lockstep with a client's status endpoint (`trailstop live`'s `GET /status`):
    /// the next point only once `symbols.<symbol>.last_price_ts` there reached the last one
    /// (replaces --interval-ms).
    #[arg(long, value_name = "URL")]
    lockstep: Option<String>,
    /// A created stop triggers only from this many milliseconds of data time after its create
    /// (the backtester's `binance` venue `update_latency_ms`).
    #[arg(long, default_value_t = 0)]
    update_latency_ms: i64,
    /// Start replaying at once instead of when the first stream connects.
    #[arg(long)]
    no_wait: bool,
    /// Exit when the replay is over [default: keep serving until interrupted].
    #[arg(long)]
    exit_at_end: bool,
    /// Milliseconds between the server's pings on every stream connection (Binance: 3 min).
    #[arg(long, default_value_t = 180_000)]
    ping_every_ms: u64,
    /// Drop a stream connection that sent no pong for this many milliseconds (Binance:
    /// 10 min).
    #[arg(long, default_value_t = 600_000)]
    pong_within_ms: u64,
    /// Cut every stream connection this many milliseconds after it opened (Binance: 24 h).
    #[arg(long, default_value_t = 86_400_000)]
    cut_after_ms: u64,
    /// The IP's request weight per minute (`REQUEST_WEIGHT`; over it HTTP 429, then 418).
    #[arg(long, default_value_t = 2400)]
    request_weight: u32,
    /// Fill each triggered stop and each close at market in this many executions
    /// (`PARTIALLY_FILLED` … `FILLED`).
    #[arg(long, default_value_t = 1)]
    fill_parts: usize,
    /// Each execution after the first this many ticks further from the first.
    #[arg(long, default_value_t = 0)]
    fill_slip_ticks: i64,
    /// Hedge mode (positionSide LONG / SHORT) instead of one-way.
    #[arg(long)]
    hedge: bool,
    /// The environment variable holding the API key the fake accepts.
    #[arg(long, default_value = "BINANCE_API_KEY")]
    api_key_env: String,
    /// The environment variable holding the API secret the fake checks signatures with.
    #[arg(long, default_value = "BINANCE_API_SECRET")]
    api_secret_env: String,
    /// Print nothing but the listening line and errors.
    #[arg(long, short)]
    quiet: bool,
}

/// A short line for the log about a user-stream message (what changed).
fn describe(out: &Outgoing) -> Option<String> {
    let Outgoing::Private { text } = out else {
        return None;
    };
    let v: Value = serde_json::from_str(text).ok()?;
    let ts = v.get("E").and_then(Value::as_i64).unwrap_or_default();
    let s = |o: &Value, k: &str| match o.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let event = v.get("e").and_then(Value::as_str)?;
    Some(match event {
        "ALGO_UPDATE" => {
            let o = v.get("o")?;
            format!(
                "{ts} algo {} {} {} {} trigger {} order {} fill {}",
                s(o, "s"),
                s(o, "caid"),
                s(o, "S"),
                s(o, "X"),
                s(o, "tp"),
                s(o, "ai"),
                s(o, "ap")
            )
        }
        "ORDER_TRADE_UPDATE" => {
            let o = v.get("o")?;
            format!(
                "{ts} order {} {} {} {} {} @ {}",
                s(o, "s"),
                s(o, "i"),
                s(o, "S"),
                s(o, "X"),
                s(o, "z"),
                s(o, "ap")
            )
        }
        "ACCOUNT_UPDATE" => {
            let p = v.get("a")?.get("P")?.get(0)?;
            format!(
                "{ts} position {} {} amount {} entry {}",
                s(p, "s"),
                s(p, "ps"),
                s(p, "pa"),
                s(p, "ep")
            )
        }
        other => format!("{ts} {other}"),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = env_value(&args.api_key_env, "--api-key-env")?;
    let secret = env_value(&args.api_secret_env, "--api-secret-env")?;
    let mut openings = Vec::new();
    for o in &args.open {
        openings.push(parse_open(o)?);
    }
    if args.update_latency_ms < 0 {
        bail!(
            "--update-latency-ms {}: must be >= 0",
            args.update_latency_ms
        );
    }
    let is_scenario = args
        .source
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let (symbol, tick, ticks) = if is_scenario {
        let scenario = Scenario::load(&args.source, &[])?;
        let (ticks, entries) = replay::from_scenario(&scenario)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.source.display()))?;
        openings.splice(0..0, entries);
        (scenario.data.symbol.clone(), scenario.data.tick_size, ticks)
    } else {
        let (ticks, tick) = replay::load(&args.source, args.tick, parse_policy(&args.policy)?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        (args.symbol.clone(), tick, ticks)
    };
    if ticks.is_empty() {
        bail!("{}: no price points to replay", args.source.display());
    }
    let points = ticks.len();
    let mut setup = Setup::new(&key, &secret, vec![InstrumentSpec::new(&symbol, tick)]);
    setup.hedge = args.hedge;
    setup.update_latency_ms = args.update_latency_ms;
    if args.fill_parts == 0 {
        bail!("--fill-parts 0: must be >= 1");
    }
    if args.fill_slip_ticks < 0 {
        bail!("--fill-slip-ticks {}: must be >= 0", args.fill_slip_ticks);
    }
    setup.request_weight_per_min = args.request_weight;
    setup.fill_parts = args.fill_parts;
    setup.fill_slip_ticks = args.fill_slip_ticks;
    let mut config = FakeConfig::new(setup);
    config.listen = args.listen;
    config.replay = Some(Replay::new(&symbol, ticks, openings));
    config.pace = match &args.lockstep {
        Some(url) => Pace::Lockstep {
            status_url: url.clone(),
            symbol: symbol.clone(),
            poll: Duration::from_millis(2),
        },
        None => Pace::Every(Duration::from_millis(args.interval_ms.max(1))),
    };
    config.start_on_subscribe = !args.no_wait;
    for (flag, ms) in [
        ("--ping-every-ms", args.ping_every_ms),
        ("--pong-within-ms", args.pong_within_ms),
        ("--cut-after-ms", args.cut_after_ms),
    ] {
        if ms == 0 {
            bail!("{flag} 0: must be > 0");
        }
    }
    config.ping_every = Duration::from_millis(args.ping_every_ms);
    config.pong_within = Duration::from_millis(args.pong_within_ms);
    config.cut_after = Duration::from_millis(args.cut_after_ms);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing the SIGINT/SIGTERM handler")?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(true);
        }
    });
    let quiet = args.quiet;
    let exit_at_end = args.exit_at_end;
    let result = runtime.block_on(async move {
        let fake = FakeBinance::start(config)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // The line scripts wait for: the address actually bound (port 0 picks one).
        let listening = format!(
            "fake-binance listening on {} (rest_url = \"{}\", ws_url = \"{}\"), {symbol} tick {tick}, {points} points",
            fake.addr(),
            fake.rest_url(),
            fake.ws_url()
        );
        if !say(&listening) {
            fake.stop().await;
            return anyhow::Ok(());
        }
        let mut tap = fake.tap();
        let mut check = tokio::time::interval(Duration::from_millis(100));
        let mut reported_end = false;
        loop {
            tokio::select! {
                out = tap.next() => match out {
                    Some(out) if !quiet => {
                        // A closed stdout (`| head`) ends the run quietly.
                        if let Some(line) = describe(&out) && !say(&line) {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = check.tick() => {
                    if fake.remaining() == 0 && !reported_end {
                        reported_end = true;
                        for r in fake.refused_openings() {
                            eprintln!("warning: {r}");
                        }
                        let said = quiet || say(&format!("replay over: {points} points"));
                        if exit_at_end || !said {
                            break;
                        }
                    }
                }
                _ = stop_rx.changed() => break,
            }
        }
        fake.stop().await;
        anyhow::Ok(())
    });
    handle.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_stream_messages_are_described() {
        let algo = Outgoing::Private {
            text: r#"{"e":"ALGO_UPDATE","T":5,"E":5,"o":{"caid":"ts-1-1","s":"BTCUSDT","S":"SELL","X":"TRIGGERED","tp":"95","ai":"8000001","ap":"0"}}"#.into(),
        };
        assert_eq!(
            describe(&algo).unwrap(),
            "5 algo BTCUSDT ts-1-1 SELL TRIGGERED trigger 95 order 8000001 fill 0"
        );
        let acct = Outgoing::Private {
            text: r#"{"e":"ACCOUNT_UPDATE","E":6,"a":{"P":[{"s":"BTCUSDT","ps":"BOTH","pa":"0","ep":"0"}]}}"#.into(),
        };
        assert_eq!(
            describe(&acct).unwrap(),
            "6 position BTCUSDT BOTH amount 0 entry 0"
        );
        let market = Outgoing::Market {
            symbol: "BTCUSDT".into(),
            stream: "markPrice",
            text: "{}".into(),
        };
        assert_eq!(describe(&market), None);
    }
}
