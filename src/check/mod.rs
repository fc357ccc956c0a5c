//! `trailstop check`: regression tests of trailing settings. Every case folder under the given
//! folders is run through the library's backtest and its outputs are compared, field by field,
//! with the case's `expected/` files; cases run in parallel, results come back in the sorted
//! order of their paths. `--bless` writes the current outputs as the expected ones.
//!
//! A case folder holds `scenario.toml` (a backtest, DESIGN §5) or `trace.toml` (one position,
//! [`trace_case`]), an `expected/` folder with any of `trades.csv`, `summary.json` and
//! `events.jsonl`, and optionally `check.toml` ([`case::CheckSettings`]).

pub mod case;
pub mod events;
pub mod json;
pub mod junit;
pub mod mismatch;
pub mod report;
pub mod summary;
pub mod trace_case;
pub mod trades;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use case::{Case, CaseError, EventsMode, ExpectedFile, read_text};
use mismatch::Mismatch;

/// How a case came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every expected file agrees.
    Pass,
    /// Some expected file differs (and was not blessed).
    Fail,
    /// It differed (or had no expected files) and `--bless` wrote the current outputs.
    Blessed,
    /// The case could not run: a missing or malformed file, or a failing backtest.
    Error,
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case folder as found under the given folders.
    pub name: String,
    /// The differences found, or why the case could not run.
    pub outcome: Result<Vec<Mismatch>, String>,
    /// The expected files `--bless` wrote.
    pub blessed: Vec<ExpectedFile>,
    /// Remarks for the report (e.g. a patterns file that `--bless` leaves alone).
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl CaseResult {
    pub fn status(&self) -> Status {
        match &self.outcome {
            Err(_) => Status::Error,
            Ok(m) if m.iter().all(|m| self.blessed.contains(&m.file)) => {
                if self.blessed.is_empty() {
                    Status::Pass
                } else {
                    Status::Blessed
                }
            }
            Ok(_) => Status::Fail,
        }
    }
}

/// 0 when every case passed (or was blessed), 1 when one differs, 2 when one cannot run.
pub fn exit_code(results: &[CaseResult]) -> u8 {
    let statuses: Vec<Status> = results.iter().map(CaseResult::status).collect();
    if statuses.contains(&Status::Error) {
        2
    } else if statuses.contains(&Status::Fail) {
        1
    } else {
        0
    }
}

/// A case folder found, or one that is not a usable case (both `scenario.toml` and
/// `trace.toml`).
pub type Found = (PathBuf, Result<Case, CaseError>);

/// Every case folder under `roots` (a root may be a case itself), sorted by path, each once.
/// Hidden folders and cache folders (with a `CACHEDIR.TAG`, like cargo's `target/`) are
/// skipped; a case folder's own subfolders are not searched. A root that
/// does not exist or holds no case is an error.
pub fn discover(roots: &[PathBuf]) -> Result<Vec<Found>, CaseError> {
    fn walk(dir: &Path, out: &mut Vec<Found>) -> Result<(), CaseError> {
        if let Some(case) = Case::at(dir) {
            out.push((dir.to_path_buf(), case));
            return Ok(());
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CaseError::file(dir, format!("cannot read: {e}")))?;
        let mut subs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            // Build and cache folders (cargo's `target/`, anything marked by the cache
            // directory convention) hold no cases and can be huge.
            .filter(|p| !p.join("CACHEDIR.TAG").is_file())
            .collect();
        subs.sort();
        for s in subs {
            walk(&s, out)?;
        }
        Ok(())
    }
    let mut all: BTreeMap<PathBuf, Result<Case, CaseError>> = BTreeMap::new();
    for root in roots {
        if !root.is_dir() {
            return Err(CaseError::file(root, "no such folder"));
        }
        let mut found = Vec::new();
        walk(root, &mut found)?;
        if found.is_empty() {
            return Err(CaseError::file(
                root,
                "holds no case folder (a case folder holds scenario.toml or trace.toml)",
            ));
        }
        for (dir, case) in found {
            all.entry(dir).or_insert(case);
        }
    }
    Ok(all.into_iter().collect())
}

/// The path as the report names it: as found, without a leading `./`.
pub fn display_name(dir: &Path) -> String {
    let s = dir.display().to_string();
    match s.strip_prefix("./") {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => s,
    }
}

/// `pattern` occurs in `text`, where `*` in the pattern matches any run of characters.
pub fn filter_matches(pattern: &str, text: &str) -> bool {
    let mut rest = text;
    for piece in pattern.split('*') {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The run's outputs parsed for comparison.
struct Got {
    trades: trades::Trades,
    events: Vec<events::EventLine>,
    outputs: case::Outputs,
}

fn got(outputs: case::Outputs) -> Result<Got, CaseError> {
    Ok(Got {
        trades: trades::Trades::parse(&outputs.trades, Path::new("trades.csv (this run)"))?,
        events: events::parse(&outputs.events, Path::new("events.jsonl (this run)"))?,
        outputs,
    })
}

fn compare_file(
    case: &Case,
    settings: &case::CheckSettings,
    got: &Got,
    file: ExpectedFile,
) -> Result<Option<Mismatch>, CaseError> {
    let path = case.expected_path(file);
    let text = read_text(&path)?;
    Ok(match file {
        ExpectedFile::Trades => trades::compare(
            &trades::Trades::parse(&text, &path)?,
            &got.trades,
            settings.tolerance,
        ),
        ExpectedFile::Summary => {
            use rust_decimal::prelude::ToPrimitive;
            let tolerance = settings.tolerance.to_f64().unwrap_or(0.0);
            summary::compare(
                &summary::parse(&text, &path)?,
                &got.outputs.summary,
                tolerance,
            )
        }
        ExpectedFile::Events => {
            let expected = events::parse(&text, &path)?;
            match settings.events {
                EventsMode::Exact => events::compare_exact(&expected, &got.events),
                EventsMode::Patterns => events::compare_patterns(&expected, &got.events),
            }
        }
    })
}

/// What a case that ran found and wrote.
struct Checked {
    mismatches: Vec<Mismatch>,
    blessed: Vec<ExpectedFile>,
    notes: Vec<String>,
}

/// Runs one case and compares; with `bless`, writes the outputs of the files that differ (all
/// three when there are no expected files yet) atomically, and leaves a patterns file alone.
fn check_case(case: &Case, bless: bool) -> Result<Checked, CaseError> {
    let settings = case.settings()?;
    let got = got(case.produce()?)?;
    let present = case.expected_files();
    let mut notes = Vec::new();
    if present.is_empty() && !bless {
        let dir = case.expected_dir();
        return Err(if dir.is_dir() {
            CaseError::file(
                &dir,
                "holds none of trades.csv, summary.json, events.jsonl (--bless writes them)",
            )
        } else {
            CaseError::file(&dir, "missing (--bless writes the current outputs there)")
        });
    }
    let mut mismatches = Vec::new();
    let mut to_write: Vec<ExpectedFile> = Vec::new();
    if present.is_empty() {
        to_write = ExpectedFile::ALL.to_vec();
    }
    for file in present {
        match compare_file(case, &settings, &got, file) {
            Ok(None) => {}
            Ok(Some(m)) => {
                mismatches.push(m);
                to_write.push(file);
            }
            Err(e) if bless => {
                notes.push(format!("replaced unreadable expected/{}: {e}", file.name()));
                to_write.push(file);
            }
            Err(e) => return Err(e),
        }
    }
    if !bless {
        return Ok(Checked {
            mismatches,
            blessed: Vec::new(),
            notes,
        });
    }
    if !settings.bless && !to_write.is_empty() {
        to_write.clear();
        notes.push(
            "check.toml has bless = false (hand-written expectations): nothing blessed".into(),
        );
    }
    if settings.events == EventsMode::Patterns && to_write.contains(&ExpectedFile::Events) {
        to_write.retain(|f| *f != ExpectedFile::Events);
        notes.push(
            "expected/events.jsonl holds hand-written patterns (check.toml events = \"patterns\"): \
             not blessed"
                .into(),
        );
    }
    let files: Vec<(PathBuf, Vec<u8>)> = to_write
        .iter()
        .map(|f| (case.expected_path(*f), got.outputs.text(*f).into_bytes()))
        .collect();
    crate::backtest::output::write_files(&files)
        .map_err(|e| CaseError::file(&case.expected_dir(), format!("cannot bless: {e}")))?;
    Ok(Checked {
        mismatches,
        blessed: to_write,
        notes,
    })
}

/// Runs the cases in parallel; the results keep the order of `found`.
pub fn run_all(found: &[Found], bless: bool) -> Vec<CaseResult> {
    found
        .par_iter()
        .map(|(dir, case)| {
            let start = Instant::now();
            let outcome = case
                .as_ref()
                .map_err(|e| e.to_string())
                .and_then(|c| check_case(c, bless).map_err(|e| e.to_string()));
            let (outcome, blessed, notes) = match outcome {
                Ok(c) => (Ok(c.mismatches), c.blessed, c.notes),
                Err(e) => (Err(e), Vec::new(), Vec::new()),
            };
            CaseResult {
                name: display_name(dir),
                outcome,
                blessed,
                notes,
                seconds: start.elapsed().as_secs_f64(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_substrings_with_wildcards() {
        let t = "scenarios/golden/venue_binance_slow";
        for p in [
            "",
            "venue",
            "golden/venue",
            "venue*slow",
            "*binance*",
            "scen*gold*ven*",
        ] {
            assert!(filter_matches(p, t), "{p}");
        }
        for p in ["bybit", "slow*venue", "golden/binance"] {
            assert!(!filter_matches(p, t), "{p}");
        }
    }

    #[test]
    fn discovery_skips_hidden_and_cache_folders() {
        let root = tempfile::tempdir().unwrap();
        let case = |rel: &str| {
            let d = root.path().join(rel);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("scenario.toml"), "name = \"x\"\n").unwrap();
        };
        case("cases/a");
        case("target/debug/b");
        case(".hidden/c");
        std::fs::write(root.path().join("target/CACHEDIR.TAG"), "Signature").unwrap();
        let found: Vec<PathBuf> = discover(&[root.path().to_path_buf()])
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(found, [root.path().join("cases/a")]);
    }

    #[test]
    fn display_names_drop_a_leading_dot_slash() {
        assert_eq!(display_name(Path::new("./a/b")), "a/b");
        assert_eq!(display_name(Path::new("a/b")), "a/b");
        assert_eq!(display_name(Path::new(".")), ".");
    }
}
