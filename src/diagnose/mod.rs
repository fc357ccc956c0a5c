//! `trailstop diagnose` (issue 14, `LIVE.md` §6): the database, the running process and the
//! exchange checked against each other; findings with a severity and their evidence, a
//! per-position table and a metric summary, as a JSON report and a short summary.
//!
//! - [`db`]: what a database alone tells (paper or live, opened read-only): the journal
//!   rebuilds each open row, no stop ever loosened, sends within the rate limit, a stop sent
//!   and none resting, two trailing stops on one exchange position.
//! - `live` (feature `live`): samples of `/status`, `/metrics` and the exchange's positions.

pub mod db;
#[cfg(feature = "live")]
pub mod live;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    /// A position may be unprotected or protected wrongly: the exit code is non-zero.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// What was checked (a stable name: `missing_stop`, `stop_loosened`, …).
    pub check: &'static str,
    /// The position it is about (the database's id), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub message: String,
    /// The values the finding rests on.
    pub evidence: Value,
    /// In how many samples it was seen (a database check: 1).
    pub seen: u32,
}

impl Finding {
    pub fn new(severity: Severity, check: &'static str, message: String, evidence: Value) -> Self {
        Finding {
            severity,
            check,
            position: None,
            symbol: None,
            message,
            evidence,
            seen: 1,
        }
    }
    pub fn position(mut self, id: u64) -> Self {
        self.position = Some(id);
        self
    }
    pub fn symbol(mut self, s: &str) -> Self {
        self.symbol = Some(s.to_string());
        self
    }
}

/// One row of the per-position table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionRow {
    pub position: u64,
    pub symbol: String,
    pub side: &'static str,
    /// inactive | active | closed (with the exit reason).
    pub state: String,
    pub entry_price: String,
    pub sent_stop: Option<String>,
    pub confirmed_stop: Option<String>,
    /// The stop order's lifecycle phase (`no_stop`, `resting`, …).
    pub phase: &'static str,
    pub stop_updates: u32,
    pub updates_held: u32,
    pub unprotected_ms: i64,
    /// On the exchange (live): its stop, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange_stop: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// What was diagnosed: the database, the config, the status URL.
    pub source: BTreeMap<&'static str, String>,
    pub samples: u32,
    pub findings: Vec<Finding>,
    pub positions: Vec<PositionRow>,
    /// Counts from the journal and, live, from `/metrics`.
    pub metrics: BTreeMap<String, f64>,
}

impl Report {
    pub fn critical(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .count()
    }

    /// Adds `f`, or counts it once more when the same check on the same position or symbol
    /// was already found (the first evidence is kept).
    pub fn add(&mut self, f: Finding) {
        if let Some(old) = self
            .findings
            .iter_mut()
            .find(|o| o.check == f.check && o.position == f.position && o.symbol == f.symbol)
        {
            old.seen += 1;
            old.severity = old.severity.max(f.severity);
            return;
        }
        self.findings.push(f);
    }

    /// Critical first, then by check and position: the same inputs give the same report.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.check.cmp(b.check))
                .then(a.position.cmp(&b.position))
                .then(a.symbol.cmp(&b.symbol))
        });
        self.positions.sort_by_key(|p| p.position);
    }

    /// The short human summary for stdout.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        out.push_str(&format!(
            "diagnose: {} position(s), {} finding(s): {} critical, {} warning, {} info\n",
            self.positions.len(),
            self.findings.len(),
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Info)
        ));
        for f in &self.findings {
            let what = match (f.position, &f.symbol) {
                (Some(p), Some(s)) => format!("{s} position {p}: "),
                (Some(p), None) => format!("position {p}: "),
                (None, Some(s)) => format!("{s}: "),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "  {:<8} {:<22} {what}{}\n",
                f.severity.as_str(),
                f.check,
                f.message
            ));
        }
        if self.findings.is_empty() {
            out.push_str("  every check passed\n");
        }
        out
    }
}
