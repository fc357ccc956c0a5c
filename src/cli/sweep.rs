//! `trailstop sweep SCENARIO.toml [--out DIR] [--set k=v] [--grid k=from:to:step | k=a,b,c]...
//! [--objective NAME] [--samples N --seed S] [--walk-forward K] [--shard K/N]`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::results;
use crate::sweep::grid::Shard;
use crate::sweep::spec::CliSpec;
use crate::sweep::{self, Options};

#[derive(clap::Args)]
pub struct Args {
    /// The scenario file (TOML, DESIGN §5); its [sweep] table is the grid.
    scenario: PathBuf,
    /// Output folder [default: reports/<scenario name>/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override any scenario key, e.g. --set exchange.venue=bybit or --set distance_percent=0.8
    /// (a key without a section means trailing.<key>, as in --grid; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    range: super::TimeRange,
    /// Sweep a key: KEY=FROM:TO:STEP (exact decimals, end included) or KEY=A,B,C; replaces the
    /// [sweep] entry of that key (repeatable). Keys without a section mean trailing.KEY.
    #[arg(long, value_name = "KEY=RANGE")]
    grid: Vec<String>,
    /// What to rank by (default: [sweep] objective, else total_return_pct).
    #[arg(long)]
    objective: Option<String>,
    /// Seeded random search: run N distinct grid combinations instead of all.
    #[arg(long, value_name = "N")]
    samples: Option<u64>,
    /// Seed of --samples.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Walk-forward: split the data's time into K+1 folds; choose on each, test on the next.
    #[arg(long = "walk-forward", value_name = "K")]
    walk_forward: Option<u32>,
    /// Run only shard K of N (0-based: 0 <= K < N); combine the shards with `trailstop merge`.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Skip the optimistic/pessimistic band and the ambiguity count (about 3x faster).
    #[arg(long)]
    no_band: bool,
    /// Write the tables only, no pictures or index.html.
    #[arg(long)]
    no_report: bool,
    /// Print nothing but errors (and no progress bar).
    #[arg(long, short)]
    quiet: bool,
}

/// The command line as typed, quoted where a shell needs it.
pub fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "trailstop".to_string() } else { a };
            if a.is_empty()
                || a.chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)))
            {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let shard = args
        .shard
        .as_deref()
        .map(Shard::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let opts = Options {
        scenario: args.scenario.clone(),
        set: args.range.sets(&args.set)?,
        out: args.out.clone(),
        cli: CliSpec {
            grid: args.grid.clone(),
            objective: args.objective.clone(),
            samples: args.samples,
            seed: args.seed,
            walk_forward: args.walk_forward,
        },
        shard,
        band: !args.no_band,
        command: command_line(),
    };
    let prepared = sweep::prepare(&opts)?;
    for w in &prepared.0.loaded.warnings {
        eprintln!("warning: {w}");
    }
    let n = prepared.2.len();
    // First Ctrl-C: finish the running combinations, write what is done. Second: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            sig,
            super::INTERRUPTED.into(),
            stop.clone(),
        )
        .context("installing the Ctrl-C handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} sweep {bar:30} {pos}/{len} combinations  {per_sec}  ETA {eta}",
        )
        .expect("template"),
    );
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let dir_hint = prepared.3.clone();
    let mut out = sweep::run(&opts, prepared, &stop, &|| bar.inc(1))
        .with_context(|| format!("sweep into {}", dir_hint.display()))?;
    bar.finish_and_clear();
    // The report is drawn from the files just written (a shard writes no results). Without
    // one, an earlier report's pictures would sit beside tables they do not show.
    if !args.no_report && out.meta.results.is_some() {
        out.files.extend(
            crate::report::render(&out.dir)
                .with_context(|| format!("report in {}", out.dir.display()))?,
        );
    } else if out.meta.results.is_some() {
        crate::report::remove_stale(&out.dir, &[])
            .with_context(|| format!("removing the old report in {}", out.dir.display()))?;
    }
    let m = &out.meta;
    // A warning, also with --quiet: the best cell may not be the best there is.
    let (edge, best_cells) = results::sweep_outcome(&out);
    if let Some(w) = edge {
        eprintln!("warning: {w}");
    }
    if !args.quiet {
        println!(
            "{}: {} of {} combinations{}, objective {}",
            m.scenario,
            m.finished,
            match m.shard {
                Some(s) => format!("{} (shard {}/{})", n, s.index, s.count),
                None => m.combinations.to_string(),
            },
            if m.interrupted { " (interrupted)" } else { "" },
            m.objective.as_str()
        );
        if let Some(r) = &m.results {
            let show = |label: &str, p: &Option<sweep::Picked>| {
                if let Some(p) = p {
                    println!(
                        "  {label:<9} {}  objective {}  plateau {}",
                        p.params,
                        p.objective.map_or("-".into(), |v| format!("{v:.4}")),
                        p.plateau.map_or("-".into(), |v| format!("{v:.4}"))
                    );
                }
            };
            if let Some(t) = &best_cells {
                print!("{t}");
            }
            show("best", &r.best);
            show("robust", &r.robust);
            show("scenario", &Some(r.scenario.clone()));
            if let Some(wf) = &r.walk_forward {
                println!(
                    "  walk-forward: {} steps, out-of-sample total {:+.4} %",
                    wf.steps.len(),
                    wf.oos_total_return_pct
                );
            }
        }
        println!(
            "  wrote {} files into {}",
            out.files.len(),
            out.dir.display()
        );
    }
    if stop.load(Ordering::Relaxed) || m.interrupted {
        return Err(super::Interrupted(format!(
            "interrupted: {} of {} combinations finished; they are in {}",
            m.finished,
            n,
            out.dir.display()
        ))
        .into());
    }
    Ok(())
}
