//! `trailstop live live.toml [--set k=v]… [--dry-run] [--log-format text|json]` (feature `live`, `LIVE.md` §3–§6):
//! protects every open position of the account with a trailing stop resting on the
//! exchange. Exit 0 after SIGTERM/SIGINT (the stops stay on the exchange), 2 for missing keys
//! or a bad config, 1 for anything else (reconciliation that cannot complete included).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::live::LiveConfig;
use crate::live::credentials::Credentials;
use crate::live::runner::{self, LiveOptions, LogFormat, LogSink};

#[derive(clap::Args)]
pub struct Args {
    /// The live config (`live.toml`).
    config: PathBuf,
    /// Override a config value (`key=value`, e.g. `trailing.distance_percent=0.5`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The account's positions and live prices, the simulated venue's orders: no order
    /// reaches the exchange (the keys are still needed to read the positions).
    #[arg(long)]
    dry_run: bool,
    /// How the log lines on standard error look: readable text, or one JSON object a line
    /// (for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

pub fn run(args: Args) -> ExitCode {
    let config = match LiveConfig::load(&args.config, &args.set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let credentials = match Credentials::from_env(&config.venue) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: installing the SIGINT/SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = signals.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(true);
        }
    });
    let status = runner::shared_status();
    let result = runtime.block_on(runner::run(
        config,
        credentials,
        status,
        stop_rx,
        LiveOptions {
            dry_run: args.dry_run,
            log: LogSink::stderr(args.log_format),
            resilience: runner::Resilience::from_env(|k| std::env::var(k).ok()),
            ..LiveOptions::default()
        },
    ));
    handle.close();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
