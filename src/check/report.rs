//! The text report: one line per case in path order, and under a failing case, per differing
//! file, a table of the first differing fields, the count of the rest and any context.

use std::fmt::Write as _;

use super::mismatch::{Mismatch, count};
use super::{CaseResult, Status};

/// Indent of a case's details under its status line.
const INDENT: &str = "      ";

/// `rows` under `columns`, each column as wide as its widest cell; the last is not padded.
pub fn table(columns: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::from(indent);
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One differing file: its headline, the first `show` rows as a table, the rest counted.
pub fn mismatch(m: &Mismatch, show: usize, indent: &str) -> String {
    let mut out = format!("{indent}{}: {}\n", m.file.name(), m.headline);
    let inner = format!("{indent}  ");
    let shown = &m.rows[..m.rows.len().min(show)];
    if !shown.is_empty() {
        out.push_str(&table(&m.columns, shown, &inner));
    }
    if m.rows.len() > shown.len() {
        let _ = writeln!(
            out,
            "{inner}and {} not shown",
            count(m.rows.len() - shown.len(), "more row")
        );
    }
    if let Some(rest) = &m.rest {
        let _ = writeln!(out, "{inner}{rest}");
    }
    for l in &m.context {
        let _ = writeln!(out, "{inner}{l}");
    }
    out
}

/// What goes under a case's status line: its differences, its error, what was blessed.
pub fn details(r: &CaseResult, show: usize, indent: &str) -> String {
    let mut out = String::new();
    match &r.outcome {
        Err(e) => {
            let _ = writeln!(out, "{indent}cannot run: {e}");
        }
        Ok(ms) => {
            for m in ms {
                out.push_str(&mismatch(m, show, indent));
            }
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "{indent}note: {n}");
    }
    if !r.blessed.is_empty() {
        let files: Vec<String> = r
            .blessed
            .iter()
            .map(|f| format!("expected/{}", f.name()))
            .collect();
        let _ = writeln!(out, "{indent}blessed: wrote {}", files.join(", "));
    }
    out
}

fn label(s: Status) -> &'static str {
    match s {
        Status::Pass => "ok",
        Status::Fail => "FAIL",
        Status::Blessed => "BLESSED",
        Status::Error => "ERROR",
    }
}

/// The whole report, ending with the counts and the cases that could not run.
pub fn render(results: &[CaseResult], show: usize) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "{:<7} {}", label(r.status()), r.name);
        out.push_str(&details(r, show, INDENT));
    }
    let of = |s: Status| results.iter().filter(|r| r.status() == s).count();
    let mut parts = vec![format!("{} passed", of(Status::Pass))];
    if of(Status::Blessed) > 0 {
        parts.push(format!("{} blessed", of(Status::Blessed)));
    }
    parts.push(format!("{} failed", of(Status::Fail)));
    parts.push(format!("{} could not run", of(Status::Error)));
    let _ = writeln!(
        out,
        "\n{}: {}",
        count(results.len(), "case"),
        parts.join(", ")
    );
    let broken: Vec<&str> = results
        .iter()
        .filter(|r| r.status() == Status::Error)
        .map(|r| r.name.as_str())
        .collect();
    if !broken.is_empty() {
        let _ = writeln!(out, "could not run: {}", broken.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::case::ExpectedFile;

    #[test]
    fn tables_align_and_the_rest_is_counted() {
        let mut m = Mismatch::new(
            ExpectedFile::Trades,
            "3 differences".into(),
            vec!["position", "field", "expected", "got"],
        );
        m.rows = vec![
            vec![
                "1".into(),
                "fees".into(),
                "0.10143457".into(),
                "0.10143456".into(),
            ],
            vec![
                "12".into(),
                "exit_reason".into(),
                "initial_stop".into(),
                "trailing_stop".into(),
            ],
            vec!["13".into(), "side".into(), "long".into(), "short".into()],
        ];
        let text = mismatch(&m, 2, "");
        assert_eq!(
            text,
            "trades.csv: 3 differences\n\
             \x20 position  field        expected      got\n\
             \x20 1         fees         0.10143457    0.10143456\n\
             \x20 12        exit_reason  initial_stop  trailing_stop\n\
             \x20 and 1 more row not shown\n"
        );
    }
}
