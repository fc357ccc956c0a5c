//! `trailstop diagnose [live.toml] [--db PATH] [--duration 15m] [--every 10s] [--out FILE]`
//! (issue 14): a paper or live database checked on its own (`--db`), or a running live
//! process's `/status` and `/metrics`, the exchange (read-only calls) and its database
//! checked against each other (a config; feature `live`). Findings with a severity and their
//! evidence, the positions, a metric summary: a JSON report to `--out`, a summary to stdout.
//! Exit 0 without a critical finding, 1 with one, 2 when it cannot run.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::diagnose::{Report, db};
use crate::store::{OpenOptions, Store};

#[derive(clap::Args)]
pub struct Args {
    /// The live config (`live.toml`) of the running process to diagnose (feature `live`).
    config: Option<PathBuf>,
    /// A database to check on its own (paper or live; opened read-only).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// How long to sample the running process [default: 15m].
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    duration: String,
    /// How often to sample [default: 10s].
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    every: String,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The process's status server [default: http://<[http] listen>].
    #[arg(long, value_name = "URL")]
    status_url: Option<String>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

pub fn run(args: Args) -> ExitCode {
    let report = match (&args.config, &args.db) {
        (None, None) => return fail("give a live config, or --db PATH for a database"),
        (None, Some(path)) => {
            let store = match Store::open(path, OpenOptions::read_only()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let mut r = Report::default();
            r.source.insert("db", path.display().to_string());
            if let Err(e) = db::check(&store, &mut r) {
                return fail(e);
            }
            r.samples = 1;
            r.sort();
            r
        }
        (Some(config), _) => match live(&args, config) {
            Ok(r) => r,
            Err(code) => return code,
        },
    };
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&report).expect("a report serialises") + "\n";
        if let Err(e) = std::fs::write(out, text) {
            return fail(format!("{}: {e}", out.display()));
        }
    }
    print!("{}", report.summary());
    if report.critical() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(not(feature = "live"))]
fn live(_args: &Args, config: &std::path::Path) -> Result<Report, ExitCode> {
    Err(fail(format!(
        "{}: diagnosing a live process needs a build with feature `live` (--db works without)",
        config.display()
    )))
}

#[cfg(feature = "live")]
fn live(args: &Args, path: &std::path::Path) -> Result<Report, ExitCode> {
    use crate::diagnose::live::{Sampling, run};
    use crate::live::LiveConfig;
    use crate::live::credentials::Credentials;
    use crate::sim::entries::parse_duration_ms;
    use std::time::Duration;
    let config = LiveConfig::load(path, &[]).map_err(fail)?;
    if args.db.is_some() {
        return Err(fail(
            "--db with a config: the config's [store] db is the one checked",
        ));
    }
    let credentials = Credentials::from_env(&config.venue).map_err(fail)?;
    let ms = |flag: &str, v: &str| {
        parse_duration_ms(v)
            .map(|ms| Duration::from_millis(ms as u64))
            .map_err(|e| fail(format!("{flag}: {e}")))
    };
    let sampling = Sampling {
        base_url: args
            .status_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen))
            .trim_end_matches('/')
            .to_string(),
        duration: ms("--duration", &args.duration)?,
        every: ms("--every", &args.every)?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("starting the async runtime: {e}")))?;
    rt.block_on(run(&config, credentials, &sampling))
        .map_err(fail)
}
