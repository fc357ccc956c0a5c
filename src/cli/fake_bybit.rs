//! `trailstop fake-bybit SOURCE [--listen ADDR] [--open TIME,SIDE[,QTY[,PRICE]]]…` (feature
//! `live`): the fake Bybit of `live::fake_bybit` as a program, so `trailstop live` can run end
//! to end on a laptop. SOURCE is a scenario (its data, tick size, intrabar policy and entries)
//! or a candle/trade file; its points are replayed as the mark price, and positions open at
//! the given times. Keys: the values of the two environment variables named (the same ones
//! `live.toml` names), so one shell serves both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::data::parse_time;
use crate::engine::Side;
use crate::live::fake_bybit::{
    FakeBybit, FakeConfig, InstrumentSpec, Opening, Outgoing, Pace, Replay, Setup, replay,
};
use crate::scenario::Scenario;
use crate::sim::path::Policy;

#[derive(clap::Args)]
pub struct Args {
    /// A scenario (`.toml`) or a candle / trade file to replay as the mark price.
    source: PathBuf,
    /// Where to listen (REST and both streams on one port; loopback unless changed).
    #[arg(long, default_value = "127.0.0.1:9190")]
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
    /// Start replaying at once instead of when the first stream subscribes.
    #[arg(long)]
    no_wait: bool,
    /// Exit when the replay is over [default: keep serving until interrupted].
    #[arg(long)]
    exit_at_end: bool,
    /// Hedge mode (positionIdx 1 / 2) instead of one-way.
    #[arg(long)]
    hedge: bool,
    /// The environment variable holding the API key the fake accepts.
    #[arg(long, default_value = "BYBIT_API_KEY")]
    api_key_env: String,
    /// The environment variable holding the API secret the fake checks signatures with.
    #[arg(long, default_value = "BYBIT_API_SECRET")]
    api_secret_env: String,
    /// Print nothing but the listening line and errors.
    #[arg(long, short)]
    quiet: bool,
}

pub(super) fn env_value(var: &str, flag: &str) -> anyhow::Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        Ok(_) => bail!("environment variable {var} ({flag}) is empty"),
        Err(_) => bail!("environment variable {var} ({flag}) is not set"),
    }
}

/// `TIME,SIDE[,QTY[,PRICE]]`.
pub(super) fn parse_open(text: &str) -> anyhow::Result<Opening> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if !(2..=4).contains(&parts.len()) {
        bail!("--open {text}: expected TIME,SIDE[,QTY[,PRICE]]");
    }
    let at = parse_time(parts[0]).map_err(|e| anyhow::anyhow!("--open {text}: time: {e}"))?;
    let side = match parts[1].to_ascii_lowercase().as_str() {
        "long" | "buy" => Side::Long,
        "short" | "sell" => Side::Short,
        other => bail!("--open {text}: side \"{other}\" is not long or short"),
    };
    let dec = |i: usize, what: &str| -> anyhow::Result<Option<Decimal>> {
        match parts.get(i) {
            None => Ok(None),
            Some(s) => {
                let d: Decimal = s.parse().map_err(|_| {
                    anyhow::anyhow!("--open {text}: {what} \"{s}\" is not a decimal")
                })?;
                if d <= Decimal::ZERO {
                    bail!("--open {text}: {what} {d} must be > 0");
                }
                Ok(Some(d))
            }
        }
    };
    Ok(Opening {
        at,
        side,
        qty: dec(2, "quantity")?.unwrap_or(Decimal::ONE),
        price: dec(3, "price")?,
    })
}

pub(super) fn parse_policy(text: &str) -> anyhow::Result<Policy> {
    Ok(match text {
        "pessimistic" => Policy::Pessimistic,
        "optimistic" => Policy::Optimistic,
        "ohlc" => Policy::Ohlc,
        "olhc" => Policy::Olhc,
        "adaptive" => Policy::Adaptive,
        other => {
            bail!("--policy {other}: not one of pessimistic, optimistic, ohlc, olhc, adaptive")
        }
    })
}

/// A short line for the log about a private message (topic and what changed).
fn describe(out: &Outgoing) -> Option<String> {
    let Outgoing::Private { topic, text } = out else {
        return None;
    };
    let v: Value = serde_json::from_str(text).ok()?;
    let d = v.get("data")?.get(0)?;
    let s = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let ts = v
        .get("creationTime")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    Some(match *topic {
        "position" => format!(
            "{ts} position {} {} size {} entry {} stop {}",
            s("symbol"),
            if s("side").is_empty() {
                "flat".into()
            } else {
                s("side")
            },
            s("size"),
            s("avgPrice"),
            s("stopLoss")
        ),
        "order" => format!(
            "{ts} order {} {} {} {} trigger {} fill {}",
            s("symbol"),
            s("stopOrderType"),
            s("side"),
            s("orderStatus"),
            s("triggerPrice"),
            s("avgPrice")
        ),
        _ => format!(
            "{ts} execution {} {} {} @ {}",
            s("symbol"),
            s("side"),
            s("execQty"),
            s("execPrice")
        ),
    })
}

/// Prints a line (flushed, so a script reading the pipe sees it at once); false when stdout
/// is gone.
pub(super) fn say(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = env_value(&args.api_key_env, "--api-key-env")?;
    let secret = env_value(&args.api_secret_env, "--api-secret-env")?;
    let mut openings = Vec::new();
    for o in &args.open {
        openings.push(parse_open(o)?);
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
        let fake = FakeBybit::start(config)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // The line scripts wait for: the address actually bound (port 0 picks one).
        let listening = format!(
            "fake-bybit listening on {} (rest_url = \"{}\", ws_url = \"{}\"), {symbol} tick {tick}, {points} points",
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
    use rust_decimal_macros::dec;

    #[test]
    fn openings_are_parsed_and_errors_name_the_flag() {
        let o = parse_open("2022-12-13T00:10:00Z,short,0.5,17100").unwrap();
        assert_eq!(o.side, Side::Short);
        assert_eq!(o.qty, dec!(0.5));
        assert_eq!(o.price, Some(dec!(17100)));
        assert_eq!(o.at, parse_time("2022-12-13T00:10:00Z").unwrap());
        let o = parse_open("1670889600000,long").unwrap();
        assert_eq!((o.at, o.qty, o.price), (1_670_889_600_000, dec!(1), None));
        for bad in [
            "x,long",
            "1670889600000,up",
            "1670889600000",
            "1670889600000,long,0",
        ] {
            let e = parse_open(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--open {bad}:")), "{e}");
        }
        assert!(parse_policy("olhc").is_ok());
        assert!(parse_policy("lohc").is_err());
    }
}
