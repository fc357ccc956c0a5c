//! What one expected file's comparison found, shaped for the report: a table of differing
//! fields, a count of the rest, and lines of context.

use super::case::ExpectedFile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub file: ExpectedFile,
    /// One line on what differs, e.g. "2 differing fields in 1 of 3 positions".
    pub headline: String,
    /// The table's column names, e.g. `position, field, expected, got`.
    pub columns: Vec<&'static str>,
    /// Every differing field, in file order; the report shows the first ones.
    pub rows: Vec<Vec<String>>,
    /// Differences the table does not list, told as a count (e.g. "2 more events differ").
    pub rest: Option<String>,
    /// Lines shown under the table (an events diff's neighbours).
    pub context: Vec<String>,
}

impl Mismatch {
    pub fn new(file: ExpectedFile, headline: String, columns: Vec<&'static str>) -> Mismatch {
        Mismatch {
            file,
            headline,
            columns,
            rows: Vec::new(),
            rest: None,
            context: Vec::new(),
        }
    }
}

/// `n` and the noun, plural when `n != 1` (`1 position`, `2 positions`).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
