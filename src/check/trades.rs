//! `trades.csv` compared field by field, trades matched by `position_id`: ids, counters, sides
//! and reasons exactly; times as instants (milliseconds); prices as decimals (`1.50` is `1.5`);
//! `pnl_pct`, `fees`, `mfe_pct` and `mae_pct` within the case's tolerance. Only the columns the
//! expected file's header names are compared (in any order); every trade must be there.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use super::case::{CaseError, ExpectedFile};
use super::mismatch::{Mismatch, count};
use crate::backtest::record::TRADES_HEADER;
use crate::engine::exact_decimal;

/// How a column compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Ids and counters: integers, exactly.
    Count,
    /// `side`, `exit_reason`: the word, exactly.
    Word,
    /// ISO-8601 (or epoch) times, as the same millisecond.
    Time,
    /// Prices: the same decimal.
    Price,
    /// The rounded results: decimals within the tolerance.
    Metric,
}

fn kind_of(column: &str) -> Option<Kind> {
    Some(match column {
        "position_id" | "stop_updates" | "updates_held" | "emergency_updates"
        | "unprotected_ms" | "ambiguous_bars" => Kind::Count,
        "side" | "exit_reason" => Kind::Word,
        "entry_time" | "exit_time" => Kind::Time,
        "entry_price" | "exit_price" => Kind::Price,
        "pnl_pct" | "fees" | "mfe_pct" | "mae_pct" => Kind::Metric,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Int(i64),
    Word(String),
    Time(i64),
    Dec(Decimal),
}

#[derive(Debug, Clone)]
struct Row {
    /// The fields as written, for the report.
    text: Vec<String>,
    cells: Vec<Cell>,
}

/// A parsed `trades.csv`.
#[derive(Debug, Clone)]
pub struct Trades {
    columns: Vec<(String, Kind)>,
    /// Rows by `position_id`.
    rows: BTreeMap<i64, Row>,
}

impl Trades {
    /// Parses and checks every field; errors name the file, the line and the field.
    pub fn parse(text: &str, path: &Path) -> Result<Trades, CaseError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end()))
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((header_line, header)) = lines.next() else {
            return Err(CaseError::file(path, "empty: no header line"));
        };
        let mut columns: Vec<(String, Kind)> = Vec::new();
        for name in header.split(',').map(str::trim) {
            let kind = kind_of(name).ok_or_else(|| {
                CaseError::line(
                    path,
                    header_line,
                    format!("unknown column `{name}` (columns: {TRADES_HEADER})"),
                )
            })?;
            if columns.iter().any(|(c, _)| c == name) {
                return Err(CaseError::line(
                    path,
                    header_line,
                    format!("column `{name}` appears twice"),
                ));
            }
            columns.push((name.to_string(), kind));
        }
        let id_col = columns
            .iter()
            .position(|(c, _)| c == "position_id")
            .ok_or_else(|| {
                CaseError::line(
                    path,
                    header_line,
                    "no `position_id` column: trades are matched by it",
                )
            })?;
        let mut rows: BTreeMap<i64, (usize, Row)> = BTreeMap::new();
        for (line, l) in lines {
            let text: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
            if text.len() != columns.len() {
                return Err(CaseError::line(
                    path,
                    line,
                    format!("{} fields, the header has {}", text.len(), columns.len()),
                ));
            }
            let cells = text
                .iter()
                .zip(&columns)
                .map(|(t, (name, kind))| {
                    parse_cell(t, *kind)
                        .map_err(|m| CaseError::line(path, line, format!("field `{name}`: {m}")))
                })
                .collect::<Result<Vec<Cell>, CaseError>>()?;
            let Cell::Int(id) = cells[id_col] else {
                unreachable!("position_id is a count")
            };
            if let Some((first, _)) = rows.get(&id) {
                return Err(CaseError::line(
                    path,
                    line,
                    format!("position_id {id} appears twice (first on line {first})"),
                ));
            }
            rows.insert(id, (line, Row { text, cells }));
        }
        Ok(Trades {
            columns,
            rows: rows.into_iter().map(|(id, (_, r))| (id, r)).collect(),
        })
    }

    fn field<'a>(&self, row: &'a Row, column: &str) -> Option<(usize, &'a Cell, &'a str)> {
        let i = self.columns.iter().position(|(c, _)| c == column)?;
        Some((i, &row.cells[i], row.text[i].as_str()))
    }

    /// A trade in a few words for a missing or an extra row.
    fn describe(&self, row: &Row) -> String {
        let parts: Vec<&str> = ["side", "entry_time", "exit_reason"]
            .iter()
            .filter_map(|c| self.field(row, c).map(|(_, _, t)| t))
            .collect();
        if parts.is_empty() {
            "present".into()
        } else {
            parts.join(" ")
        }
    }
}

fn parse_cell(text: &str, kind: Kind) -> Result<Cell, String> {
    match kind {
        Kind::Count => text
            .parse::<i64>()
            .map(Cell::Int)
            .map_err(|_| format!("\"{text}\" is not an integer")),
        Kind::Word if text.is_empty() => Err("empty".into()),
        Kind::Word => Ok(Cell::Word(text.to_string())),
        Kind::Time => crate::data::parse_time(text).map(Cell::Time),
        Kind::Price | Kind::Metric => exact_decimal::parse(text).map(Cell::Dec),
    }
}

fn same(kind: Kind, expected: &Cell, got: &Cell, tolerance: Decimal) -> bool {
    match (kind, expected, got) {
        (Kind::Metric, Cell::Dec(e), Cell::Dec(g)) => {
            e.checked_sub(*g).is_some_and(|d| d.abs() <= tolerance)
        }
        _ => expected == got,
    }
}

/// The differences between the expected trades and the ones the run produced; `None` when
/// every compared field agrees.
pub fn compare(expected: &Trades, got: &Trades, tolerance: Decimal) -> Option<Mismatch> {
    let mut m = Mismatch::new(
        ExpectedFile::Trades,
        String::new(),
        vec!["position", "field", "expected", "got"],
    );
    let ids: std::collections::BTreeSet<i64> = expected
        .rows
        .keys()
        .chain(got.rows.keys())
        .copied()
        .collect();
    let mut positions = 0usize;
    for id in &ids {
        let before = m.rows.len();
        match (expected.rows.get(id), got.rows.get(id)) {
            (Some(e), Some(g)) => {
                for (i, (name, kind)) in expected.columns.iter().enumerate() {
                    let (got_cell, got_text) = match got.field(g, name) {
                        Some((_, c, t)) => (Some(c), t),
                        None => (None, "(no column)"),
                    };
                    if got_cell.is_none_or(|c| !same(*kind, &e.cells[i], c, tolerance)) {
                        m.rows.push(vec![
                            id.to_string(),
                            name.clone(),
                            e.text[i].clone(),
                            got_text.to_string(),
                        ]);
                    }
                }
            }
            (Some(e), None) => m.rows.push(vec![
                id.to_string(),
                "(trade)".into(),
                expected.describe(e),
                "missing".into(),
            ]),
            (None, Some(g)) => m.rows.push(vec![
                id.to_string(),
                "(trade)".into(),
                "missing".into(),
                got.describe(g),
            ]),
            (None, None) => {}
        }
        positions += usize::from(m.rows.len() > before);
    }
    if m.rows.is_empty() {
        return None;
    }
    m.headline = format!(
        "{} in {} of {} (expected {}, got {})",
        count(m.rows.len(), "difference"),
        positions,
        count(ids.len(), "position"),
        count(expected.rows.len(), "trade"),
        count(got.rows.len(), "trade"),
    );
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = TRADES_HEADER;
    const ROW1: &str = "1,long,2024-01-01T00:00:00.000Z,100,2024-01-01T00:02:20.000Z,102.86913,trailing_stop,2.76769544,0.10143456,5,0.5,3,0,0,0,0";
    const ROW2: &str = "2,short,2024-01-01T01:00:00.000Z,101.5,2024-01-01T01:00:59.999Z,101,end_of_data,0.49261084,0,1,0.2,0,0,0,0,1";

    fn parse(text: &str) -> Result<Trades, CaseError> {
        Trades::parse(text, Path::new("case/expected/trades.csv"))
    }

    fn table(rows: &[&str]) -> Trades {
        parse(&format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap()
    }

    const TOL: Decimal = Decimal::from_parts(1, 0, 0, false, 8);

    #[test]
    fn equal_decimals_and_instants_written_differently_agree() {
        let got = table(&[ROW1]);
        let written = ROW1
            .replace(",100,", ",100.00,")
            .replace("2024-01-01T00:02:20.000Z", "2024-01-01T00:02:20Z")
            .replace(",0.5,", ",0.50000000,");
        assert!(compare(&table(&[&written]), &got, TOL).is_none());
        // CRLF and blank lines in a hand-written file.
        let crlf = parse(&format!("{HEADER}\r\n\r\n{ROW1}\r\n")).unwrap();
        assert!(compare(&crlf, &got, TOL).is_none());
    }

    #[test]
    fn metrics_within_the_tolerance_prices_exactly() {
        let got = table(&[ROW1]);
        let near = ROW1.replace(",0.10143456,", ",0.10143457,");
        assert!(
            compare(&table(&[&near]), &got, TOL).is_none(),
            "1e-8 is within 1e-8"
        );
        let m = compare(&table(&[&near]), &got, Decimal::ZERO).expect("differs at tolerance 0");
        assert_eq!(m.rows, vec![vec!["1", "fees", "0.10143457", "0.10143456"]]);
        let price = ROW1.replace(",102.86913,", ",102.869130001,");
        let m = compare(&table(&[&price]), &got, Decimal::ONE).expect("prices are exact");
        assert_eq!(m.rows[0][1], "exit_price");
    }

    #[test]
    fn every_differing_field_and_missing_or_extra_trades_are_listed() {
        let got = table(&[ROW1, ROW2]);
        let wrong = ROW1
            .replace(",trailing_stop,", ",initial_stop,")
            .replace("00:02:20.000Z", "00:02:40.000Z")
            .replace(",3,0,0,0,0", ",2,0,0,0,0");
        let m = compare(&table(&[&wrong]), &got, TOL).unwrap();
        let fields: Vec<&str> = m.rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(
            fields,
            ["exit_time", "exit_reason", "stop_updates", "(trade)"]
        );
        assert_eq!(
            m.rows[3],
            [
                "2",
                "(trade)",
                "missing",
                "short 2024-01-01T01:00:00.000Z end_of_data"
            ]
        );
        assert_eq!(
            m.headline,
            "4 differences in 2 of 2 positions (expected 1 trade, got 2 trades)"
        );
    }

    #[test]
    fn a_header_subset_compares_only_its_columns() {
        let got = table(&[ROW1]);
        let subset =
            parse("position_id,exit_reason,exit_price\n1,trailing_stop,102.86913\n").unwrap();
        assert!(compare(&subset, &got, TOL).is_none());
        let subset = parse("exit_reason,position_id\ninitial_stop,1\n").unwrap();
        assert_eq!(compare(&subset, &got, TOL).unwrap().rows.len(), 1);
    }

    #[test]
    fn malformed_files_name_line_and_field() {
        let cases = [
            (
                format!("{HEADER}\n{}\n", ROW1.replace(",102.86913,", ",10x,")),
                "trades.csv:2: field `exit_price`",
            ),
            (
                format!("{HEADER}\n\n{}\n", ROW1.replace(",3,0,0", ",three,0,0")),
                "trades.csv:3: field `stop_updates`",
            ),
            (
                format!(
                    "{HEADER}\n{}\n",
                    ROW1.replace("2024-01-01T00:00:00.000Z", "yesterday")
                ),
                "trades.csv:2: field `entry_time`",
            ),
            (
                format!("{HEADER}\n1,long\n"),
                "trades.csv:2: 2 fields, the header has 16",
            ),
            (
                format!("{HEADER},colour\n"),
                "trades.csv:1: unknown column `colour`",
            ),
            (
                "side\nlong\n".to_string(),
                "trades.csv:1: no `position_id` column",
            ),
            (
                format!("{HEADER}\n{ROW1}\n{ROW1}\n"),
                "trades.csv:3: position_id 1 appears twice (first on line 2)",
            ),
            (String::new(), "trades.csv: empty"),
        ];
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }
}
