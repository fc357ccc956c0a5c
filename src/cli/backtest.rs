//! `trailstop backtest SCENARIO.toml [--out DIR] [--set key=value ...] [--report]`

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::results;
use crate::backtest::{self, output};
use crate::scenario::Scenario;
use crate::sweep::picks;

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// The scenario file (TOML; every key, its type, unit, default and an example:
    /// docs/scenario.md).
    scenario: PathBuf,
    /// Output folder [default: reports/<scenario name>/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override any scenario key, e.g. --set exchange.venue=binance or --set distance_percent=0.8
    /// (a key without a section means trailing.<key>, as in --grid; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    range: super::TimeRange,
    /// Also draw the report into the output folder: equity curve, charts of the top and worst
    /// trades (trades/*.png) and index.html.
    #[arg(long)]
    report: bool,
    /// Print nothing but errors (and warnings).
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario, &args.range.sets(&args.set)?)?;
    let loaded = backtest::load(&scenario)?;
    // Warnings go to stderr even with --quiet: they say the results may not mean what they seem.
    // Why no position opens is told once: in the results below unless they are not printed.
    let no_positions = loaded.no_positions.as_deref();
    for w in &loaded.warnings {
        if args.quiet || no_positions.is_none_or(|why| !w.starts_with(why)) {
            eprintln!("warning: {w}");
        }
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
    let drawn = if args.report {
        let data = picks::backtest_data(&scenario, &loaded, &report);
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        Some(
            crate::report::render_backtest(&dir, &report.summary, &data, &command)
                .with_context(|| format!("report into {}", dir.display()))?,
        )
    } else {
        None
    };
    if !args.quiet {
        let s = &report.summary;
        print!("{}", results::backtest_table(s, no_positions));
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
        if let Some(files) = drawn {
            println!(
                "  report: {} files; open {}",
                files.len(),
                dir.join("index.html").display()
            );
        }
    }
    Ok(())
}
