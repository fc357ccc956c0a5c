//! `trailstop check DIR... [--bless] [--junit FILE] [--filter PATTERN] [--show N]`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::backtest::output::write_atomic;
use crate::check::{self, display_name, filter_matches};

#[derive(clap::Args)]
#[command(after_help = "\
A case folder holds scenario.toml (a backtest) or trace.toml (one position through a prices
file: the `trace` flags as keys, and a [trailing] table), an expected/ folder with any of
trades.csv, summary.json and events.jsonl, and optionally check.toml:
  tolerance = 1e-8        # pnl_pct, fees, mfe_pct, mae_pct and the summary's numbers
  events = \"exact\"        # or \"patterns\": hand-written JSON patterns matched in order
  bless = true            # false: hand-written expected files, --bless leaves them alone
Ids, sides, reasons, times and prices compare exactly (prices as decimals); only the columns
and summary keys the expected files name are compared.

Exit status: 0 all cases pass, 1 a case differs, 2 a case cannot run.

Example:
  trailstop check scenarios/golden
  trailstop check checks --bless      # record the current outputs; `git diff` shows the change")]
pub struct Args {
    /// Folders to search for case folders (recursively), or case folders themselves.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Write the current outputs as the expected ones, for the cases that ran and differ
    /// (all three files for a case with none yet); each file is replaced atomically.
    #[arg(long)]
    bless: bool,
    /// Also write the results as JUnit XML to FILE (for CI).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run only the cases whose path contains PATTERN (`*` matches any run of characters);
    /// repeatable, a case runs when it matches any.
    #[arg(long, value_name = "PATTERN")]
    filter: Vec<String>,
    /// How many differing rows to show per file.
    #[arg(long, value_name = "N", default_value_t = 10)]
    show: usize,
}

pub fn run(args: Args) -> ExitCode {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let mut found = match check::discover(&args.dirs) {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    if !args.filter.is_empty() {
        found.retain(|(dir, _)| {
            let name = display_name(dir);
            args.filter.iter().any(|p| filter_matches(p, &name))
        });
        if found.is_empty() {
            return fail(format!(
                "no case matches --filter {}",
                args.filter.join(" --filter ")
            ));
        }
    }
    let results = check::run_all(&found, args.bless);
    let text = check::report::render(&results, args.show);
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is the reader's choice; the exit status still tells.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Some(path) = &args.junit
        && let Err(e) = write_atomic(path, check::junit::render(&results).as_bytes())
    {
        return fail(format!("writing {}: {e}", path.display()));
    }
    ExitCode::from(check::exit_code(&results))
}
