//! `trailstop backtest SCENARIO.toml [--out DIR] [--set key=value ...]`

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backtest::{self, output};
use crate::scenario::Scenario;

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// The scenario file (TOML, DESIGN §5).
    scenario: PathBuf,
    /// Output folder [default: reports/<scenario name>/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override any scenario key, e.g. --set exchange.venue=binance or --set distance_percent=0.8
    /// (a key without a section means trailing.<key>, as in --grid; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario, &args.set)?;
    let loaded = backtest::load(&scenario)?;
    // Warnings go to stderr even with --quiet: they say the results may not mean what they seem.
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(&scenario.name));
    output::check_out_dir(&dir)?;
    let bar = ProgressBar::new(loaded.entries.len() as u64 * 3);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} backtest {bar:30} {pos}/{len} positions·passes {eta}",
        )
        .expect("template"),
    );
    if args.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = backtest::run_scenario(&scenario, &loaded, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    output::write_all(&dir, &report).with_context(|| format!("writing {}", dir.display()))?;
    if !args.quiet {
        let s = &report.summary;
        println!(
            "{}: {} trades on {} {} ({} rows), {} / {} / {} intrabar",
            s.scenario,
            s.totals.trades,
            if s.symbol.is_empty() {
                "data"
            } else {
                &s.symbol
            },
            s.data,
            s.data_rows,
            s.venue,
            s.totals.policy.as_str(),
            if s.ambiguous_bars > 0 {
                "ambiguous bars counted"
            } else {
                "no ambiguous bars"
            },
        );
        println!(
            "  total {:+.4} %  mean {:+.4} %  win rate {:.1} %  band [{:+.4} % pessimistic, {:+.4} % optimistic]",
            s.totals.total_return_pct,
            s.totals.mean_return_pct,
            s.totals.win_rate * 100.0,
            s.band.pessimistic.total_return_pct,
            s.band.optimistic.total_return_pct,
        );
        let reasons: Vec<String> = s
            .exit_reasons
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        println!(
            "  exits: {}; stop updates {} (held {}, emergency {}); unprotected {} ms; ambiguous bars {}",
            reasons.join(", "),
            s.stop_updates,
            s.updates_held,
            s.emergency_updates,
            s.unprotected_ms,
            s.ambiguous_bars
        );
        if let Some(g) = &s.gaps
            && g.count > 0
        {
            println!(
                "  data gaps: {} (longest {} ms), bridged",
                g.count, g.longest_ms
            );
        }
        println!(
            "  wrote {}/{{trades.csv,summary.json,events.jsonl}}",
            dir.display()
        );
    }
    Ok(())
}
