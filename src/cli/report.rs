//! `trailstop report DIR`: re-renders the pictures and index.html from a sweep's saved results
//! (sweep.json, sweep.parquet, report.json) without running anything.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// A sweep's output folder.
    dir: PathBuf,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let files = crate::report::render(&args.dir)
        .with_context(|| format!("report from {}", args.dir.display()))?;
    if !args.quiet {
        println!(
            "wrote {} files; open {}",
            files.len(),
            args.dir.join("index.html").display()
        );
    }
    Ok(())
}
