//! The `trailstop` command line.

mod backtest;
mod check;
#[cfg(feature = "live")]
mod fake_bybit;
#[cfg(feature = "live")]
mod live;
mod merge;
mod paper;
mod report;
mod state;
mod sweep;
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
    /// Run a scenario's [sweep] grid in parallel and rank the results.
    Sweep(sweep::Args),
    /// Dry-run a scenario step by step with its state in SQLite; resumes after a crash.
    Paper(paper::Args),
    /// Show trailing-stop state stored in a database.
    State(state::Args),
    /// Re-render reports from saved results.
    Report(report::Args),
    /// Merge sharded sweep outputs.
    Merge(merge::Args),
    /// Run regression cases (scenario or trace + expected outputs) and show what moved.
    Check(check::Args),
    /// Serve a fake Bybit on loopback that replays a scenario or data file as the market.
    #[cfg(feature = "live")]
    FakeBybit(fake_bybit::Args),
    /// Protect the account's open positions with trailing stops on the exchange (Bybit).
    #[cfg(feature = "live")]
    Live(live::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(a) => trace::run(a),
        Command::Backtest(a) => backtest::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Paper(a) => paper::run(a),
        Command::State(a) => state::run(a),
        Command::Report(a) => report::run(a),
        Command::Merge(a) => merge::run(a),
        #[cfg(feature = "live")]
        Command::FakeBybit(a) => fake_bybit::run(a),
        // Its own exit status: 0 pass, 1 a case differs, 2 a case cannot run.
        Command::Check(a) => return check::run(a),
        // Its own exit status: 2 for missing keys or a bad config.
        #[cfg(feature = "live")]
        Command::Live(a) => return live::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
