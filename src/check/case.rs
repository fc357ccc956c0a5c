//! A check case: a folder with `scenario.toml` (a backtest) or `trace.toml` (one position
//! through a prices file), an `expected/` folder with any of `trades.csv`, `summary.json` and
//! `events.jsonl`, and optionally a `check.toml` with the case's comparison settings.

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::trace_case;
use crate::backtest::{self, BacktestError, Report, output};
use crate::engine::exact_decimal;
use crate::scenario::{Scenario, ScenarioError};

pub const SCENARIO_FILE: &str = "scenario.toml";
pub const TRACE_FILE: &str = "trace.toml";
pub const SETTINGS_FILE: &str = "check.toml";
pub const EXPECTED_DIR: &str = "expected";

/// The expected files a case may hold, in the order they are compared and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExpectedFile {
    Trades,
    Summary,
    Events,
}

impl ExpectedFile {
    pub const ALL: [ExpectedFile; 3] = [
        ExpectedFile::Trades,
        ExpectedFile::Summary,
        ExpectedFile::Events,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExpectedFile::Trades => "trades.csv",
            ExpectedFile::Summary => "summary.json",
            ExpectedFile::Events => "events.jsonl",
        }
    }
}

/// Why a case cannot run: a file that is missing or malformed (named, with its line where
/// there is one), or a backtest that fails.
#[derive(Debug, Error)]
pub enum CaseError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

impl CaseError {
    pub fn file(path: &Path, message: impl Into<String>) -> CaseError {
        CaseError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn line(path: &Path, line: usize, message: impl Into<String>) -> CaseError {
        CaseError::Line {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// How `expected/events.jsonl` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventsMode {
    /// The file is the whole event list (what `--bless` writes): every event, field by field.
    #[default]
    Exact,
    /// Each line is a JSON pattern (written by hand): the patterns must match events in this
    /// order, other events may come between; a pattern with `"_absent": true` must match none.
    Patterns,
}

/// `check.toml`: how a case compares (strict: unknown keys are errors).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckSettings {
    /// Absolute tolerance for `pnl_pct`, `fees`, `mfe_pct`, `mae_pct` and the summary's
    /// non-integer numbers.
    #[serde(with = "exact_decimal")]
    pub tolerance: Decimal,
    pub events: EventsMode,
    /// `false` for expected files written by hand: `--bless` leaves them alone.
    pub bless: bool,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            tolerance: Decimal::new(1, 8),
            events: EventsMode::Exact,
            bless: true,
        }
    }
}

impl CheckSettings {
    pub fn from_text(text: &str, path: &Path) -> Result<CheckSettings, CaseError> {
        let settings: CheckSettings =
            toml::from_str(text).map_err(|e| CaseError::file(path, toml_message(&e, text)))?;
        if settings.tolerance < Decimal::ZERO {
            return Err(CaseError::file(
                path,
                format!("tolerance: {} must be >= 0", settings.tolerance),
            ));
        }
        Ok(settings)
    }
}

/// A TOML error as `line N: message` (the parser's own text spans several lines).
pub fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let line = e.span().map(|s| {
        let before = &text.as_bytes()[..s.start.min(text.len())];
        before.iter().filter(|b| **b == b'\n').count() + 1
    });
    match line {
        Some(l) => format!("line {l}: {}", e.message()),
        None => e.message().to_string(),
    }
}

/// What a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `scenario.toml`: `trailstop backtest`.
    Scenario,
    /// `trace.toml`: one position through a prices file, as `trailstop trace`.
    Trace,
}

/// One case folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub dir: PathBuf,
    pub kind: Kind,
}

/// The outputs a case's run produced, in the form of the files a backtest writes.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub trades: String,
    /// `summary.json`, with `data` as the path written in the case's file (not where it was
    /// found from the working directory), so the file does not depend on where the check runs.
    pub summary: Value,
    /// The same, as the text `trailstop backtest` writes (keys in its order).
    pub summary_text: String,
    pub events: String,
}

impl Outputs {
    fn of(report: &Report, data_as_written: &str) -> Outputs {
        let mut summary = report.summary.clone();
        summary.data = data_as_written.to_string();
        Outputs {
            trades: output::trades_csv(report),
            summary: serde_json::to_value(&summary).expect("summary serialises"),
            summary_text: output::summary_json(&summary),
            events: output::events_jsonl(report),
        }
    }

    /// The text of one output file, as `--bless` writes it.
    pub fn text(&self, file: ExpectedFile) -> String {
        match file {
            ExpectedFile::Trades => self.trades.clone(),
            ExpectedFile::Summary => self.summary_text.clone(),
            ExpectedFile::Events => self.events.clone(),
        }
    }
}

impl Case {
    /// The case in `dir`, if `dir` is one (holds `scenario.toml` or `trace.toml`); both at once
    /// is an error.
    pub fn at(dir: &Path) -> Option<Result<Case, CaseError>> {
        let scenario = dir.join(SCENARIO_FILE).is_file();
        let trace = dir.join(TRACE_FILE).is_file();
        let kind = match (scenario, trace) {
            (false, false) => return None,
            (true, false) => Kind::Scenario,
            (false, true) => Kind::Trace,
            (true, true) => {
                return Some(Err(CaseError::file(
                    dir,
                    format!("holds both {SCENARIO_FILE} and {TRACE_FILE}: keep one"),
                )));
            }
        };
        Some(Ok(Case {
            dir: dir.to_path_buf(),
            kind,
        }))
    }

    /// The case's `check.toml`, or the defaults when it has none.
    pub fn settings(&self) -> Result<CheckSettings, CaseError> {
        let path = self.dir.join(SETTINGS_FILE);
        if !path.exists() {
            return Ok(CheckSettings::default());
        }
        let text = read_text(&path)?;
        CheckSettings::from_text(&text, &path)
    }

    pub fn expected_dir(&self) -> PathBuf {
        self.dir.join(EXPECTED_DIR)
    }

    pub fn expected_path(&self, file: ExpectedFile) -> PathBuf {
        self.expected_dir().join(file.name())
    }

    /// The expected files present.
    pub fn expected_files(&self) -> Vec<ExpectedFile> {
        ExpectedFile::ALL
            .into_iter()
            .filter(|f| self.expected_path(*f).is_file())
            .collect()
    }

    /// Runs the case through the library's backtest and returns its outputs.
    pub fn produce(&self) -> Result<Outputs, CaseError> {
        match self.kind {
            Kind::Scenario => {
                let scenario = Scenario::load(&self.dir.join(SCENARIO_FILE), &[])?;
                let loaded = backtest::load(&scenario)?;
                let report = backtest::run_scenario(&scenario, &loaded, |_, _| {})?;
                let data = scenario
                    .data
                    .candles
                    .as_deref()
                    .or(scenario.data.trades.as_deref())
                    .unwrap_or_default();
                Ok(Outputs::of(&report, data))
            }
            Kind::Trace => {
                let path = self.dir.join(TRACE_FILE);
                let trace = trace_case::TraceCase::from_text(&read_text(&path)?, &path)?;
                let (scenario, loaded) = trace.load(&path)?;
                let report = backtest::run_scenario(&scenario, &loaded, |_, _| {})?;
                Ok(Outputs::of(&report, &trace.prices))
            }
        }
    }
}

/// A file's text; the error names the file.
pub fn read_text(path: &Path) -> Result<String, CaseError> {
    std::fs::read_to_string(path).map_err(|e| CaseError::file(path, format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn check_toml_parses_and_defaults() {
        let p = Path::new("c/check.toml");
        let s = CheckSettings::from_text("", p).unwrap();
        assert_eq!(s, CheckSettings::default());
        assert_eq!(s.tolerance, dec!(0.00000001));
        assert!(s.bless);
        let s = CheckSettings::from_text(
            "tolerance = 1e-6\nevents = \"patterns\"\nbless = false\n",
            p,
        )
        .unwrap();
        assert_eq!(s.tolerance, dec!(0.000001));
        assert_eq!(s.events, EventsMode::Patterns);
        assert!(!s.bless);
        let s = CheckSettings::from_text("tolerance = \"0.0005\"", p).unwrap();
        assert_eq!(s.tolerance, dec!(0.0005));
    }

    #[test]
    fn check_toml_errors_name_file_line_and_key() {
        let p = Path::new("c/check.toml");
        let e = CheckSettings::from_text("tolerance = 0\ntolerence = 1", p).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("c/check.toml: line 2"), "{text}");
        assert!(text.contains("tolerence"), "{text}");
        let e = CheckSettings::from_text("events = \"fuzzy\"", p).unwrap_err();
        assert!(e.to_string().contains("fuzzy"), "{e}");
        let e = CheckSettings::from_text("tolerance = -1", p).unwrap_err();
        assert!(e.to_string().contains("tolerance"), "{e}");
    }
}
