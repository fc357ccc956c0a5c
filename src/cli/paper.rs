//! `trailstop paper SCENARIO.toml --db PATH [--out DIR] [--speed N] [--set key=value ...]`
//!
//! The scenario's market streamed step by step through engine → store → simulated exchange
//! (`store::paper`). Killed at any moment and started again with the same command, it resumes
//! from the database; the outputs are then the backtest's, byte for byte.

use std::path::PathBuf;

use anyhow::Context;

use crate::backtest::{self, output};
use crate::paper::{self, Notice, PaperOptions};
use crate::scenario::Scenario;
use crate::store::{OpenOptions, Store, Synchronous};

#[derive(clap::Args)]
pub struct Args {
    /// The scenario file (TOML, DESIGN §5).
    scenario: PathBuf,
    /// The SQLite database holding the run's state and journal (created when missing; an
    /// existing one is resumed).
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// Output folder [default: reports/<scenario name>-paper/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replay at N times real time, sleeping between steps [default: as fast as possible].
    #[arg(long, value_name = "N")]
    speed: Option<f64>,
    /// Override any scenario key, e.g. --set distance_percent=0.8 (= trailing.distance_percent;
    /// repeatable). A
    /// changed [trailing] config on a resumed run is shown and applied (the stop never loosens).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    range: super::TimeRange,
    /// fsync every committed step (synchronous=FULL) instead of relying on the WAL (NORMAL).
    #[arg(long)]
    sync_full: bool,
    /// Print a line as each market step is committed (`committed <index> <position steps>`).
    #[arg(long)]
    log_steps: bool,
    /// Print nothing but errors (and --log-steps lines).
    #[arg(long, short)]
    quiet: bool,
    /// Serve /metrics, /status and /healthz on ADDR (e.g. 127.0.0.1:9184) while the run goes
    /// on (a build with feature `live`).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
}

#[cfg(feature = "live")]
impl Args {
    /// `--http`: the run serves its endpoints (and keeps SIGPIPE ignored).
    pub fn serves_http(&self) -> bool {
        self.http.is_some()
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(s) = args.speed
        && !(s.is_finite() && s > 0.0)
    {
        anyhow::bail!("--speed {s}: must be a positive number (e.g. 60 for one minute per second)");
    }
    // Everything that can fail on the inputs fails before the database is touched.
    let scenario = Scenario::load(&args.scenario, &args.range.sets(&args.set)?)?;
    let loaded = backtest::load(&scenario)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-paper", scenario.name)));
    output::check_out_dir(&dir)?;
    // A database of an older trailstop is upgraded on open (in one transaction, or not at all).
    let mut opts = OpenOptions::runner().upgrading(paper::upgrade_v1);
    if args.sync_full {
        opts.synchronous = Synchronous::Full;
    }
    #[cfg(not(feature = "live"))]
    if let Some(addr) = args.http {
        anyhow::bail!(
            "--http {addr}: this trailstop was built without feature `live` (cargo build --features live)"
        );
    }
    let mut store = Store::open(&args.db, opts)?;
    #[cfg(feature = "live")]
    let mut http = match args.http {
        Some(addr) => {
            let (h, bound) = super::paper_http::PaperHttp::start(addr, &scenario.data.symbol)?;
            if !args.quiet {
                println!(
                    "paper {}: /metrics, /status, /healthz on http://{bound}",
                    scenario.name
                );
            }
            Some(h)
        }
        None => None,
    };
    let (quiet, log_steps) = (args.quiet, args.log_steps);
    let say = |n: Notice| {
        if let Notice::Committed { index, steps } = n {
            if log_steps {
                println!("committed {index} {steps}");
            }
            return;
        }
        if quiet {
            return;
        }
        match n {
            Notice::Started { len, positions } => println!(
                "paper {}: new run in {}: {positions} positions over {len} market steps",
                scenario.name,
                args.db.display()
            ),
            Notice::Resumed {
                next,
                len,
                open,
                closed,
            } => println!(
                "paper {}: resuming {} at market step {next} of {len} ({open} open, {closed} closed)",
                scenario.name,
                args.db.display()
            ),
            Notice::ConfigChanged { changes, open } => {
                println!("  the [trailing] config changed since the run was saved:");
                for c in &changes {
                    println!("    trailing.{c}");
                }
                println!(
                    "  applied to {open} open position(s): stops already set never loosen; the \
                     new settings apply to their future moves and to every position opened from now on"
                );
            }
            Notice::Committed { .. } => {}
        }
    };
    let report = paper::run_observed(
        &scenario,
        &loaded,
        &mut store,
        PaperOptions { speed: args.speed },
        say,
        |_p| {
            #[cfg(feature = "live")]
            if let Some(h) = &mut http {
                h.on_progress(_p);
            }
        },
    )?;
    output::write_all(&dir, &report).with_context(|| format!("writing {}", dir.display()))?;
    if !args.quiet {
        let s = &report.summary;
        println!(
            "  done: {} trades, total {:+.4} %, stop updates {} (held {}); wrote {}/{{trades.csv,summary.json,events.jsonl}}",
            s.totals.trades,
            s.totals.total_return_pct,
            s.stop_updates,
            s.updates_held,
            dir.display()
        );
    }
    Ok(())
}
