//! `trailstop trace`: one position, every engine event, as a table a trader can check by hand.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rust_decimal::Decimal;

use crate::backtest::{DataKind, load_market_in, run};
use crate::engine::{Event, Side, TrailingConfig, exact_decimal};
use crate::scenario::{Venue, parse_override, set_key};
use crate::sim::entries::EntrySpec;
use crate::sim::exchange::VenueModel;
use crate::sim::path::Policy;
use crate::timefmt::iso_ms;

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  trailstop trace data/BTCBUSD-1m-20221213.csv --side long --tick-size 0.01 \\\n    --set distance_percent=0.5 --set activation_percent=0.3"
)]
pub struct TraceArgs {
    /// Prices: a CSV of `timestamp,price` (ticks), or candles (CSV/Parquet/JSON) replayed as
    /// O, X, Y, C points under --policy.
    input: PathBuf,
    /// Position side.
    #[arg(long, default_value = "long")]
    side: Side,
    /// Entry price [default: the first price point's].
    #[arg(long, value_parser = exact_decimal::parse)]
    entry: Option<Decimal>,
    /// Entry time (epoch ms/s or ISO-8601) [default: the first point's].
    #[arg(long)]
    at: Option<String>,
    /// The instrument's tick size; stops are rounded to it.
    #[arg(long, default_value = "0.01", value_parser = exact_decimal::parse)]
    tick_size: Decimal,
    /// A TOML file with trailing settings (a `[trailing]` table, or its keys at top level).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A trailing setting, e.g. --set distance_percent=0.5 or --set trailing.breakeven.trigger_percent=0.3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Simulated venue: bybit (atomic amend) or binance (cancel + create).
    #[arg(long, default_value = "bybit", value_parser = parse_venue)]
    venue: Venue,
    /// Binance create latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Intrabar order for candles.
    #[arg(long, default_value = "pessimistic")]
    policy: Policy,
    /// Treat the input as trade ticks (`timestamp,price`) even if it looks like candles.
    #[arg(long)]
    ticks: bool,
    /// Print events as JSON lines instead of a table.
    #[arg(long)]
    jsonl: bool,
}

fn parse_venue(s: &str) -> Result<Venue, String> {
    match s {
        "bybit" => Ok(Venue::Bybit),
        "binance" => Ok(Venue::Binance),
        _ => Err(format!("\"{s}\" is not a venue (bybit or binance)")),
    }
}

fn trailing_config(args: &TraceArgs) -> anyhow::Result<TrailingConfig> {
    let mut table = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let mut t: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            match t.remove("trailing") {
                Some(toml::Value::Table(tr)) => tr,
                Some(_) => bail!("{}: `trailing` is not a table", p.display()),
                None => t,
            }
        }
        None => toml::Table::new(),
    };
    for s in &args.set {
        let (mut key, value) = parse_override(s)?;
        if key.first().map(String::as_str) == Some("trailing") {
            key.remove(0);
        }
        set_key(&mut table, &key, value).map_err(|m| anyhow::anyhow!("--set {s}: {m}"))?;
    }
    if !table.contains_key("distance_percent") {
        bail!("no distance: give --set distance_percent=<percent> (or a --config with it)");
    }
    let config: TrailingConfig = toml::Value::Table(table)
        .try_into()
        .context("trailing settings")?;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

pub fn run(args: TraceArgs) -> anyhow::Result<()> {
    let config = trailing_config(&args)?;
    // Read once: the input may be a FIFO or `/dev/stdin`.
    let bytes = crate::data::read_input(&args.input)?;
    let kind = if args.ticks || crate::data::looks_like_ticks_in(&bytes) {
        DataKind::Trades
    } else {
        DataKind::Candles
    };
    let (market, _, _) =
        load_market_in(kind, &args.input, &bytes, args.tick_size, args.entry.iter())?;
    let time = match &args.at {
        Some(t) => crate::data::parse_time(t).map_err(|m| anyhow::anyhow!("--at: {m}"))?,
        None => *market.entry_times().first().expect("market is not empty"),
    };
    let entry = EntrySpec {
        time,
        side: args.side,
        price: args.entry,
        quantity: None,
    };
    let settings = run::RunSettings {
        symbol: String::new(),
        trailing: config,
        model: VenueModel {
            venue: args.venue,
            update_latency_ms: args.latency_ms as i64,
        },
        taker_fee: Decimal::ZERO,
        slippage_bps: Decimal::ZERO,
    };
    let opts = run::RunOptions {
        policy: args.policy,
        events: true,
        ambiguity: false,
        detail: None,
    };
    let runs = run::run_positions(&market, &[entry], &settings, opts, |_| {})?;
    let Some(r) = runs.first() else {
        bail!("no price point after the entry time: nothing to trace");
    };
    match print(&args, r, &market.instrument) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print(
    args: &TraceArgs,
    r: &run::PositionRun,
    inst: &crate::engine::Instrument,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.jsonl {
        for e in &r.events {
            writeln!(
                out,
                "{}",
                serde_json::to_string(e).map_err(std::io::Error::other)?
            )?;
        }
        return out.flush();
    }
    writeln!(
        out,
        "{:<24}  {:<15}  {:>14}  detail",
        "time", "event", "price"
    )?;
    for e in &r.events {
        let (price, detail) = describe(e);
        writeln!(
            out,
            "{:<24}  {:<15}  {:>14}  {}",
            iso_ms(e.ts()),
            e.kind(),
            price,
            detail
        )?;
    }
    writeln!(
        out,
        "closed: {} at {} ({}), stop updates {}, held {}, emergency {}",
        r.close.reason.as_str(),
        inst.decimal(r.close.fill),
        iso_ms(r.close.ts),
        r.counters.stop_updates,
        r.counters.updates_held,
        r.counters.emergency_updates
    )?;
    out.flush()
}

fn opt(d: &Option<Decimal>) -> String {
    d.map_or("none".to_string(), |d| d.to_string())
}

fn describe(e: &Event) -> (String, String) {
    match e {
        Event::Created {
            side,
            entry_price,
            activation_price,
            ..
        } => (
            entry_price.to_string(),
            format!(
                "{} entry {entry_price}, activation at {activation_price}",
                side.as_str()
            ),
        ),
        Event::Activated { price, reason, .. } => (
            price.to_string(),
            format!("reason {reason:?}").to_lowercase(),
        ),
        Event::BreakevenArmed { price, stop, .. } => {
            (price.to_string(), format!("breakeven stop {stop}"))
        }
        Event::StopRaised {
            price,
            from,
            to,
            origin,
            ..
        } => (
            price.to_string(),
            format!(
                "desired stop {} -> {to} ({})",
                opt(from),
                format!("{origin:?}").to_lowercase()
            ),
        ),
        Event::UpdateSent {
            price,
            stop,
            previous,
            reason,
            ..
        } => (
            price.to_string(),
            format!(
                "send {stop} (was {}), {}",
                opt(previous),
                format!("{reason:?}").to_lowercase()
            ),
        ),
        Event::UpdateHeld {
            price,
            desired,
            sent,
            reason,
            ..
        } => (
            price.to_string(),
            format!(
                "hold {desired} (exchange has {sent}): {}",
                format!("{reason:?}").to_lowercase()
            ),
        ),
        Event::ExitNow { price, stop, .. } => (
            price.to_string(),
            format!("stop {stop} at/through market: exit now"),
        ),
        Event::StopConfirmed { stop, .. } => {
            (String::new(), format!("exchange stop rests at {stop}"))
        }
        Event::StopRejected { price, stop, .. } => (
            price.to_string(),
            format!("exchange rejected {stop}: would trigger at once"),
        ),
        Event::Triggered {
            fill_price, reason, ..
        } => (
            fill_price.to_string(),
            format!("closed: {}", reason.as_str()),
        ),
    }
}
