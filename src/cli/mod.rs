//! The `trailstop` command line.

mod backtest;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trailstop",
    version,
    about = "Exact trailing stops for crypto futures: trace the engine, backtest it on real history",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Feed a price series through one position and print every engine event.
    Trace(trace::TraceArgs),
    /// Replay a scenario's market data through the engine against a simulated exchange.
    Backtest(backtest::BacktestArgs),
    /// (not built yet) Run a scenario's [sweep] grid in parallel.
    Sweep(Planned),
    /// (not built yet) Dry-run a scenario step by step with state in SQLite.
    Paper(Planned),
    /// (not built yet) Show trailing-stop state stored in a database.
    State(Planned),
    /// (not built yet) Re-render reports from saved results.
    Report(Planned),
    /// (not built yet) Merge sharded sweep outputs.
    Merge(Planned),
}

#[derive(clap::Args)]
struct Planned {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

fn planned(name: &str, issue: u32) -> ExitCode {
    eprintln!("trailstop {name}: not built yet (planned in issue {issue}); nothing was run");
    ExitCode::from(2)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(a) => trace::run(a),
        Command::Backtest(a) => backtest::run(a),
        Command::Sweep(_) => return planned("sweep", 5),
        Command::Paper(_) => return planned("paper", 4),
        Command::State(_) => return planned("state", 4),
        Command::Report(_) => return planned("report", 5),
        Command::Merge(_) => return planned("merge", 5),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
