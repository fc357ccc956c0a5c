//! `trailstop merge DIR... --out DIR`: combines the shards of one sweep into the output the
//! unsharded run writes (the same bytes in sweep.parquet and sweep.csv), then the report.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Folders holding sweep-shard-K-of-N.{json,parquet} files (any number of shards each).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Write the tables only, no pictures or index.html.
    #[arg(long)]
    no_report: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::backtest::output::check_out_dir(&args.out)?;
    let mut out = crate::sweep::merge(&args.dirs, &args.out)
        .with_context(|| format!("merge into {}", args.out.display()))?;
    if !args.no_report {
        out.files.extend(
            crate::report::render(&out.dir)
                .with_context(|| format!("report in {}", out.dir.display()))?,
        );
    } else {
        crate::report::remove_stale(&out.dir, &[])
            .with_context(|| format!("removing the old report in {}", out.dir.display()))?;
    }
    // As the unsharded sweep says it.
    let (edge, best_cells) = super::results::sweep_outcome(&out);
    if let Some(w) = edge {
        eprintln!("warning: {w}");
    }
    if !args.quiet {
        println!(
            "{}: merged {} combinations; wrote {} files into {}",
            out.meta.scenario,
            out.meta.finished,
            out.files.len(),
            out.dir.display()
        );
        if let Some(t) = best_cells {
            print!("{t}");
        }
    }
    Ok(())
}
