//! The `trailstop` command line.

mod backtest;
mod check;
mod completions;
mod diagnose;
#[cfg(feature = "live")]
mod fake_binance;
#[cfg(feature = "live")]
mod fake_bybit;
#[cfg(feature = "live")]
mod live;
mod merge;
mod paper;
#[cfg(feature = "live")]
mod paper_http;
mod report;
mod results;
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
    /// Serve a fake Binance USD-M on loopback that replays a scenario or data file as the
    /// market.
    #[cfg(feature = "live")]
    FakeBinance(fake_binance::Args),
    /// Protect the account's open positions with trailing stops on the exchange (Bybit).
    #[cfg(feature = "live")]
    Live(live::Args),
    /// Check a database, or a running live process against the exchange and its database:
    /// findings with severity and evidence; exit 1 on a critical one.
    Diagnose(diagnose::Args),
    /// Print the shell completion script (bash, zsh or fish) to stdout.
    Completions(completions::Args),
}

/// `--from` / `--to`: the time range of the replay, as `[data] start` / `end` (shared by
/// backtest, sweep and paper).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TimeRange {
    /// Replay from this time on, included: an ISO date or date-time, UTC unless an offset is
    /// given (e.g. 2022-12-13 or 2022-12-13T06:00:00Z); the same as --set data.start=TIME.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Replay up to this time, excluded (--to 2022-12-14 ends with the last candle of
    /// 2022-12-13); the same as --set data.end=TIME.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
}

impl TimeRange {
    /// `set` with the range's overrides after it (they win over a `--set` of the same key); a
    /// time that cannot be read is an error naming the flag as typed.
    pub fn sets(&self, set: &[String]) -> anyhow::Result<Vec<String>> {
        let mut out = set.to_vec();
        for (flag, key, value) in [
            ("--from", "data.start", &self.from),
            ("--to", "data.end", &self.to),
        ] {
            if let Some(t) = value {
                crate::scenario::parse_time_key(t)
                    .map_err(|m| anyhow::anyhow!("{flag} ({key}): {m}"))?;
                out.push(format!("{key}={t}"));
            }
        }
        Ok(out)
    }
}

/// The exit status after Ctrl-C (128 + SIGINT), as shells report a process that SIGINT ended.
pub const INTERRUPTED: u8 = 130;

/// A command that stopped early at Ctrl-C after saving what it had (a sweep's finished rows):
/// `main` prints it and exits [`INTERRUPTED`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// Ctrl-C (or SIGTERM) exits at once with [`INTERRUPTED`]: for every command but `sweep`,
/// which saves its finished combinations first (`cli::sweep`). What a command writes is
/// written atomically, and `paper` resumes from its last committed step, so stopping anywhere
/// is safe.
fn exit_on_interrupt() {
    let always = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if signal_hook::flag::register_conditional_shutdown(
            sig,
            i32::from(INTERRUPTED),
            always.clone(),
        )
        .is_err()
        {
            eprintln!("warning: no Ctrl-C handler: an interrupted run exits by the signal");
        }
    }
}

/// Whether a command handles SIGINT/SIGTERM itself: `sweep` saves its finished rows; `live`
/// finishes or journals what is in flight and exits 0, its stops left on the exchange.
fn handles_interrupt(command: &Command) -> bool {
    match command {
        Command::Sweep(_) => true,
        #[cfg(feature = "live")]
        Command::Live(_) => true,
        _ => false,
    }
}

/// Whether a command talks over sockets (`live`, `fake-bybit`): it keeps SIGPIPE ignored, so
/// a peer that went away is an error on that connection (a `writev` has no `MSG_NOSIGNAL`),
/// not the end of the process.
fn serves_network(command: &Command) -> bool {
    match command {
        #[cfg(feature = "live")]
        Command::Live(_)
        | Command::FakeBybit(_)
        | Command::FakeBinance(_)
        | Command::Diagnose(_) => true,
        #[cfg(feature = "live")]
        Command::Paper(a) => a.serves_http(),
        _ => {
            let _ = command;
            false
        }
    }
}

/// A closed stdout (`trailstop backtest … | head`) ends the process quietly, as it does any Unix
/// filter, instead of a panic in `println!` (Rust ignores SIGPIPE by default). `paper` commits
/// each step in one transaction, so it resumes from there.
fn quiet_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !handles_interrupt(&cli.command) {
        exit_on_interrupt();
    }
    if !serves_network(&cli.command) {
        quiet_on_closed_pipe();
    }
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
        #[cfg(feature = "live")]
        Command::FakeBinance(a) => fake_binance::run(a),
        Command::Completions(a) => completions::run(a),
        // Its own exit status: 0 pass, 1 a case differs, 2 a case cannot run.
        Command::Check(a) => return check::run(a),
        // Its own exit status: 1 on a critical finding, 2 when it cannot run.
        Command::Diagnose(a) => return diagnose::run(a),
        // Its own exit status: 2 for missing keys or a bad config.
        #[cfg(feature = "live")]
        Command::Live(a) => return live::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            if e.is::<Interrupted>() {
                ExitCode::from(INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error and its causes on one line, each cause once: many errors already show their
/// source in their own text (`{path}: {source}`), so a cause whose text is already there is
/// left out instead of being printed twice.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Shown {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading")]
    struct Hidden {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(Shown {
            path: "a.toml".into(),
            source: io(),
        });
        let text = error_text(&e);
        assert_eq!(text, format!("a.toml: {}", io()));
        // A cause not in the message is still shown, after a context.
        let e = anyhow::Error::new(Hidden { source: io() }).context("backtest x");
        assert_eq!(error_text(&e), format!("backtest x: loading: {}", io()));
    }
}
