//! The one error type of the `data` module.

use std::fmt;
use std::path::{Path, PathBuf};

/// A file that could not be loaded, with where in it and which field.
///
/// Displays as `data/x.csv: line 17, field `high`: high 10.5 is below max(open, close) 11`;
/// the location and the field are left out when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct DataError {
    /// The file as it was given to the loader.
    pub path: PathBuf,
    /// `line N` (1-based line of a CSV file, the header is line 1), `row N` (1-based data row of a
    /// Parquet/Feather/JSON file or of in-memory data) or `line N, column C` (JSON syntax).
    pub location: Option<String>,
    /// The column concerned, as the file names it (or the canonical name for headerless files).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl DataError {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Self {
        DataError {
            path: path.to_path_buf(),
            location: None,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, loc: Loc) -> Self {
        self.location = Some(loc.to_string());
        self
    }

    pub(crate) fn field(mut self, field: Option<&str>) -> Self {
        self.field = field.map(str::to_owned);
        self
    }

    fn render(&self) -> String {
        let mut out = format!("{}: ", self.path.display());
        if let Some(loc) = &self.location {
            out.push_str(loc);
        }
        if let Some(field) = &self.field {
            if self.location.is_some() {
                out.push_str(", ");
            }
            out.push_str("field `");
            out.push_str(&crate::echo::echo(field));
            out.push('`');
        }
        if self.location.is_some() || self.field.is_some() {
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// Where a row came from: a CSV line or a 1-based row of a columnar/JSON file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    Line(usize),
    Row(usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Line(n) => write!(f, "line {n}"),
            Loc::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// A problem found in one row, before the file's path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowError {
    pub field: Option<String>,
    pub message: String,
}

impl RowError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        RowError {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub(crate) fn into_data_error(self, path: &Path, loc: Loc) -> DataError {
        DataError {
            path: path.to_path_buf(),
            location: Some(loc.to_string()),
            field: self.field,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_parts() {
        let e = DataError {
            path: PathBuf::from("data/x.csv"),
            location: Some("line 17".into()),
            field: Some("high".into()),
            message: "high 10.5 is below max(open, close) 11".into(),
        };
        assert_eq!(
            e.to_string(),
            "data/x.csv: line 17, field `high`: high 10.5 is below max(open, close) 11"
        );
        let e = DataError::new(Path::new("a.csv"), "no data rows");
        assert_eq!(e.to_string(), "a.csv: no data rows");
        let e = DataError::new(Path::new("a.csv"), "m").field(Some("open"));
        assert_eq!(e.to_string(), "a.csv: field `open`: m");
        let e = DataError::new(Path::new("a.csv"), "m").at(Loc::Row(3));
        assert_eq!(e.to_string(), "a.csv: row 3: m");
    }
}
