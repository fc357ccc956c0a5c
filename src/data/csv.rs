//! Market data CSV, read with the `csv` crate, so that every error names its exact line.
//!
//! Commas separate fields; a field may be wrapped in double quotes (`""` is a quote inside) and
//! then span lines; `\r\n` and `\n` line ends; blank lines are skipped (but counted); a UTF-8
//! BOM is ignored.

use std::path::Path;

use super::build::{CandleBuilder, CandleNames, TradeBuilder};
use super::error::{DataError, Loc};
use super::parse::{Cell, is_number};
use super::{Candles, TIME_COLUMNS, Trades, column_key};
use crate::echo::echo;

/// One non-blank record split into fields.
#[derive(Clone)]
struct Record {
    /// The 1-based line it starts on.
    line: usize,
    fields: csv::StringRecord,
    /// The file's last record, with no line end after it.
    unterminated: bool,
}

impl Record {
    fn len(&self) -> usize {
        self.fields.len()
    }

    fn get(&self, i: usize) -> &str {
        self.fields.get(i).unwrap_or_default()
    }
}

struct Records<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    reader: csv::Reader<&'a [u8]>,
    record: Record,
}

impl<'a> Records<'a> {
    fn new(path: &'a Path, bytes: &'a [u8]) -> Self {
        // The reader skips a UTF-8 BOM at the start itself (its positions count it).
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        Records {
            path,
            bytes,
            reader,
            record: Record {
                line: 0,
                fields: csv::StringRecord::new(),
                unterminated: false,
            },
        }
    }

    /// The next record that is not blank (a line of spaces is blank too).
    fn next_record(&mut self) -> Option<Result<&Record, DataError>> {
        loop {
            let start = self.reader.position().clone();
            match self.reader.read_record(&mut self.record.fields) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(Err(self.read_error(&start, e))),
            }
            // The reader dates a record from where it began looking: before the blank lines
            // it skipped. Step over them to the record's own first line.
            let pos = self.record.fields.position().unwrap_or(&start);
            let (mut line, mut from) = (pos.line() as usize, pos.byte() as usize);
            while let Some(&b) = self.bytes.get(from).filter(|b| matches!(b, b'\n' | b'\r')) {
                line += usize::from(b == b'\n');
                from += 1;
            }
            self.record.line = line;
            let f = &self.record.fields;
            if f.len() == 1 && f[0].trim().is_empty() {
                continue;
            }
            let end = self.reader.position().byte() as usize;
            if end >= self.bytes.len() {
                if let Some(e) = self.open_quote(from) {
                    return Some(Err(e));
                }
                self.record.unterminated = !self.bytes.ends_with(b"\n");
            }
            return Some(Ok(&self.record));
        }
    }

    /// A quote opened in the file's last record and never closed: the rest of the file would
    /// otherwise be read as one field.
    fn open_quote(&self, from: usize) -> Option<DataError> {
        let quotes = self.bytes[from.min(self.bytes.len())..]
            .iter()
            .filter(|&&b| b == b'"')
            .count();
        (quotes % 2 == 1).then(|| {
            DataError::new(
                self.path,
                "unterminated quoted field: a quote opened here is never closed",
            )
            .at(Loc::Line(self.record.line))
        })
    }

    fn read_error(&self, start: &csv::Position, e: csv::Error) -> DataError {
        let line = e.position().map_or(start.line(), csv::Position::line) as usize;
        let message = match e.kind() {
            csv::ErrorKind::Utf8 { err, .. } => format!(
                "field {}: not valid UTF-8 text (byte {} of the field)",
                err.field() + 1,
                err.valid_up_to() + 1
            ),
            _ => e.to_string(),
        };
        DataError::new(self.path, message).at(Loc::Line(line))
    }
}

/// The index of the first of `names` (in their priority order) found in the header.
fn find_column(header: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| header.iter().position(|h| column_key(h) == *n))
}

fn found_list(header: &[String]) -> String {
    header
        .iter()
        .map(|h| format!("`{}`", echo(h.trim())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Error for absent columns: names the first missing one as the field, lists all missing and found.
pub(crate) fn missing_columns(path: &Path, missing: &[String], found: &str) -> DataError {
    let listed = missing
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let what = if missing.len() == 1 {
        "missing column"
    } else {
        "missing columns"
    };
    DataError::new(path, format!("{what} {listed} (found: {found})"))
        .field(missing.first().map(String::as_str))
}

/// A header naming one column twice (as matched: any case, spaces as `_`) leaves which one is
/// read to chance: refused, naming both.
fn no_duplicates(path: &Path, header: &[String], line: usize) -> Result<(), DataError> {
    for (j, h) in header.iter().enumerate() {
        let key = column_key(h);
        if key.is_empty() {
            continue;
        }
        if let Some(i) = header[..j].iter().position(|g| column_key(g) == key) {
            return Err(DataError::new(
                path,
                format!(
                    "the header names column `{}` twice (columns {} and {}): which one to read is ambiguous; rename or drop one",
                    echo(h.trim()),
                    i + 1,
                    j + 1
                ),
            )
            .at(Loc::Line(line))
            .field(Some(h.trim())));
        }
    }
    Ok(())
}

/// Resolves the wanted columns (time first) against a header, or reports the missing ones.
/// The time column is reported as `timestamp` (any of [`TIME_COLUMNS`] is accepted).
fn resolve(path: &Path, header: &[String], wanted: &[&str]) -> Result<Vec<usize>, DataError> {
    let mut idx = Vec::with_capacity(wanted.len() + 1);
    let mut missing = Vec::new();
    match find_column(header, TIME_COLUMNS) {
        Some(i) => idx.push(i),
        None => missing.push("timestamp".to_owned()),
    }
    for w in wanted {
        match find_column(header, &[w]) {
            Some(i) => idx.push(i),
            None => missing.push((*w).to_owned()),
        }
    }
    if missing.is_empty() {
        Ok(idx)
    } else {
        let mut err = missing_columns(path, &missing, &found_list(header));
        if missing[0] == "timestamp" {
            err.message.push_str(&format!(
                "; the time column may be named {}",
                TIME_COLUMNS
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Err(err)
    }
}

/// A row whose field count differs from the header's.
fn width_error(path: &Path, rec: &Record, expected: usize, of_what: &str) -> DataError {
    let got = rec.len();
    let message = if rec.unterminated && got < expected {
        format!("has {got} of {expected} fields and no line end: the file looks truncated")
    } else {
        format!("has {got} fields, expected {expected} (as in {of_what})")
    };
    DataError::new(path, message).at(Loc::Line(rec.line))
}

/// Reads the first non-blank record, or reports an empty file.
fn first_record(path: &Path, records: &mut Records<'_>) -> Result<Record, DataError> {
    match records.next_record() {
        Some(r) => r.cloned(),
        None => Err(DataError::new(path, "the file is empty: no data rows")),
    }
}

/// Feeds every data record of a CSV file (`first_data`, when the first line is data, then the
/// rest) to `push` after checking its width.
fn for_each_row(
    path: &Path,
    records: &mut Records<'_>,
    first_data: Option<Record>,
    expected: usize,
    of_what: &str,
    mut push: impl FnMut(&Record) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let mut rows = 0;
    let mut check_and_push = |rec: &Record| {
        if rec.len() != expected {
            return Err(width_error(path, rec, expected, of_what));
        }
        push(rec)
    };
    if let Some(first) = first_data {
        check_and_push(&first)?;
        rows += 1;
    }
    while let Some(rec) = records.next_record() {
        check_and_push(rec?)?;
        rows += 1;
    }
    Ok(rows)
}

pub(crate) fn load_candles(path: &Path, bytes: &[u8]) -> Result<Candles, DataError> {
    let mut records = Records::new(path, bytes);
    let first = first_record(path, &mut records)?;
    let (cols, names, first_data, of_what) = if is_number(first.get(0)) {
        // A Binance kline dump: open_time, open, high, low, close, volume, close_time, ...
        if first.len() < 5 {
            return Err(DataError::new(
                path,
                format!(
                    "a headerless file is read as a Binance kline dump (open_time, open, high, low, close, ...), but this line has {} fields",
                    first.len()
                ),
            )
            .at(Loc::Line(first.line)));
        }
        let names = CandleNames {
            time: "open_time".into(),
            ..CandleNames::default()
        };
        let width = first.len();
        (
            vec![0, 1, 2, 3, 4],
            names,
            Some(first),
            ("the first line", width),
        )
    } else {
        let header: Vec<String> = first.fields.iter().map(str::to_string).collect();
        no_duplicates(path, &header, first.line)?;
        let cols = resolve(path, &header, &["open", "high", "low", "close"])
            .map_err(|e| e.at(Loc::Line(first.line)))?;
        let name = |i: usize| header[cols[i]].trim().to_owned();
        let names = CandleNames {
            time: name(0),
            open: name(1),
            high: name(2),
            low: name(3),
            close: name(4),
        };
        (cols, names, None, ("the header", header.len()))
    };
    let (of_what, expected) = of_what;
    let mut builder = CandleBuilder::new(names);
    let rows = for_each_row(path, &mut records, first_data, expected, of_what, |rec| {
        let cell = |i: usize| Cell::Str(rec.get(cols[i]));
        builder
            .push(
                Loc::Line(rec.line),
                [cell(0), cell(1), cell(2), cell(3), cell(4)],
            )
            .map_err(|e| e.into_data_error(path, Loc::Line(rec.line)))
    })?;
    if rows == 0 {
        return Err(DataError::new(path, "no data rows after the header"));
    }
    builder
        .finish()
        .ok_or_else(|| DataError::new(path, "no data rows"))
}

fn is_bool(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true") || s.trim().eq_ignore_ascii_case("false")
}

pub(crate) fn load_trades(path: &Path, bytes: &[u8]) -> Result<Trades, DataError> {
    let mut records = Records::new(path, bytes);
    let first = first_record(path, &mut records)?;
    let ((t, p), (time_name, price_name), first_data, of_what) = if is_number(first.get(0)) {
        // Binance dumps: trades `id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`,
        // aggTrades `agg_id,price,qty,first_id,last_id,transact_time,is_buyer_maker[,best]`.
        let layout = if first.len() >= 6 && is_bool(first.get(5)) {
            ((4, 1), ("time", "price"))
        } else if first.len() >= 7 && is_bool(first.get(6)) {
            ((5, 1), ("transact_time", "price"))
        } else {
            return Err(DataError::new(
                path,
                "a headerless trades file must be a Binance trades or aggTrades dump \
                 (id, price, qty, ..., time, is_buyer_maker); add a header with a time column and `price`",
            )
            .at(Loc::Line(first.line)));
        };
        let (cols, names) = layout;
        let width = first.len();
        (
            cols,
            (names.0.to_owned(), names.1.to_owned()),
            Some(first),
            ("the first line", width),
        )
    } else {
        let header: Vec<String> = first.fields.iter().map(str::to_string).collect();
        no_duplicates(path, &header, first.line)?;
        let cols = resolve(path, &header, &["price"]).map_err(|e| e.at(Loc::Line(first.line)))?;
        let names = (
            header[cols[0]].trim().to_owned(),
            header[cols[1]].trim().to_owned(),
        );
        (
            (cols[0], cols[1]),
            names,
            None,
            ("the header", header.len()),
        )
    };
    let (of_what, expected) = of_what;
    let mut builder = TradeBuilder::new(&time_name, &price_name);
    let rows = for_each_row(path, &mut records, first_data, expected, of_what, |rec| {
        builder
            .push(
                Loc::Line(rec.line),
                [Cell::Str(rec.get(t)), Cell::Str(rec.get(p))],
            )
            .map_err(|e| e.into_data_error(path, Loc::Line(rec.line)))
    })?;
    if rows == 0 {
        return Err(DataError::new(path, "no data rows after the header"));
    }
    builder
        .finish()
        .ok_or_else(|| DataError::new(path, "no data rows"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn quoted_fields_may_hold_commas_quotes_and_line_ends() {
        let text = "timestamp,open,high,low,close,note\n\
                    1704067200000,1,2,1,1,\"a, \"\"quoted\"\"\nnote\non three lines\"\n\
                    1704067260000,1,2,1,1,x\n\
                    1704067320000,1,0.5,1,1,x\n";
        let e = load_candles(Path::new("x.csv"), text.as_bytes()).unwrap_err();
        // The third data row starts on line 6: the note took lines 2 to 4.
        assert_eq!(e.location.as_deref(), Some("line 6"), "{e}");
        assert_eq!(e.field.as_deref(), Some("high"));
        let ok = text.replace(",0.5,", ",2,");
        let c = load_candles(Path::new("x.csv"), ok.as_bytes()).unwrap();
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn an_unclosed_quote_is_named() {
        let text = "timestamp,open,high,low,close\n1704067200000,1,2,1,1\n1704067260000,\"1,2,1,1\n1704067320000,1,2,1,1\n";
        let e = load_candles(Path::new("x.csv"), text.as_bytes()).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("line 3"), "{e}");
        assert!(e.message.starts_with("unterminated quoted field"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_the_line_and_field() {
        let text = b"timestamp,open,high,low,close\n1704067200000,1,\xff2,1,1\n";
        let e = load_candles(Path::new("x.csv"), text).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("line 2"), "{e}");
        assert!(e.message.contains("field 3: not valid UTF-8"), "{e}");
    }

    #[test]
    fn reads_iso_times_quotes_crlf_and_bom() {
        let text = "\u{feff}\"Date\",Open,High,Low,Close,Volume\r\n\
                    \"2022-12-13 00:00:00\",17212.12,17216.55,17208.88,17208.88,1\r\n\
                    \r\n\
                    2022-12-13T00:01:00Z,17209.49,17227.24,17208.84,17226.99,2\r\n";
        let c = load_candles(Path::new("x.csv"), text.as_bytes()).unwrap();
        assert_eq!(c.ts, vec![1_670_889_600_000, 1_670_889_660_000]);
        assert_eq!(c.high, vec![dec!(17216.55), dec!(17227.24)]);
        assert_eq!(c.close[1].to_string(), "17226.99");
    }

    #[test]
    fn header_names_ignore_case_spaces_and_extra_columns() {
        let text = "Open time,Open,High,Low,Close,Volume,Close time,Ignore\n\
                    1670889600000,17212.12,17216.55,17208.88,17208.88,1,1670889659999,x\n";
        let c = load_candles(Path::new("x.csv"), text.as_bytes()).unwrap();
        assert_eq!(c.ts, vec![1_670_889_600_000]);
        assert_eq!(c.low, vec![dec!(17208.88)]);
        // `timestamp` wins over `date` when both are present
        let text = "date,timestamp,open,high,low,close\njunk,1670889600,1,1,1,1\n";
        let c = load_candles(Path::new("y.csv"), text.as_bytes()).unwrap();
        assert_eq!(c.ts, vec![1_670_889_600_000]);
    }

    #[test]
    fn line_numbers_count_blank_lines() {
        let text = "time,open,high,low,close\n1704067200,2,3,1,2\n\n\n1704067260,2,1,1,2\n";
        let e = load_candles(Path::new("x.csv"), text.as_bytes()).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("line 5"));
        assert_eq!(e.field.as_deref(), Some("high"));
        assert_eq!(e.message, "high 1 is below max(open, close) 2");
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let text = "timestamp,open,high,low,close,Close\n1704067200000,1,2,1,1,2\n";
        let e = load_candles(Path::new("x.csv"), text.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.csv: line 1, field `Close`: the header names column `Close` twice (columns 5 and \
             6): which one to read is ambiguous; rename or drop one"
        );
        let text = "time,price,qty,qty\n1704067200000,1,2,3\n";
        let e = load_trades(Path::new("t.csv"), text.as_bytes()).unwrap_err();
        assert!(
            e.message.contains("column `qty` twice (columns 3 and 4)"),
            "{e}"
        );
        // Empty names (trailing commas) are not names.
        let text = "timestamp,open,high,low,close,,\n1704067200000,1,2,1,1,,\n";
        load_candles(Path::new("x.csv"), text.as_bytes()).unwrap();
    }

    #[test]
    fn headerless_trades_layouts() {
        // Binance trades dump: id, price, qty, quote_qty, time, is_buyer_maker, is_best_match
        let trades = "1,2681.62,1,2681.62,1723161256560,true,true\n\
                      2,2681.63,1,2681.63,1723161256775,False,True\n";
        let t = load_trades(Path::new("t.csv"), trades.as_bytes()).unwrap();
        assert_eq!(t.ts, vec![1_723_161_256_560, 1_723_161_256_775]);
        assert_eq!(t.price, vec![dec!(2681.62), dec!(2681.63)]);
        // aggTrades dump: agg_id, price, qty, first_id, last_id, transact_time, is_buyer_maker
        let agg = "10,2681.62,1,5,6,1723161256560,true\n";
        let t = load_trades(Path::new("a.csv"), agg.as_bytes()).unwrap();
        assert_eq!(t.ts, vec![1_723_161_256_560]);
        let e = load_trades(Path::new("b.csv"), b"1,2,3\n").unwrap_err();
        assert_eq!(e.location.as_deref(), Some("line 1"));
    }
}
