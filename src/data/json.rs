//! Freqtrade JSON data files: an array of rows, each `[ms, open, high, low, close, volume]`
//! (trades: `[timestamp, id, type, side, price, amount, cost]` or `[timestamp, price]`), or an
//! array of objects keyed by column name. Numbers with a fraction arrive as binary floats and
//! become decimals through their shortest round-trip text; numbers given as strings stay exact.

use std::path::Path;

use serde_json::{Map, Value};

use super::build::{CandleBuilder, CandleNames, TradeBuilder};
use super::csv::missing_columns;
use super::error::{DataError, Loc, RowError};
use super::parse::Cell;
use super::{Candles, TIME_COLUMNS, Trades, column_key};

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Value>, DataError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let text = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
        let mut err = DataError::new(path, format!("invalid JSON: {message}"));
        err.location = Some(format!("line {line}, column {column}"));
        err
    })?;
    match value {
        Value::Array(rows) if !rows.is_empty() => Ok(rows),
        Value::Array(_) => Err(DataError::new(
            path,
            "no data rows (the JSON array is empty)",
        )),
        _ => Err(DataError::new(
            path,
            "expected a JSON array of rows (Freqtrade's `[[ms, open, high, low, close, volume], ...]`)",
        )),
    }
}

fn cell<'a>(field: &str, v: &'a Value) -> Result<Cell<'a>, RowError> {
    match v {
        Value::Null => Ok(Cell::Null),
        Value::String(s) => Ok(Cell::Str(s)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Cell::Int(i))
            } else if let Some(f) = n.as_f64() {
                Ok(Cell::F64(f))
            } else {
                Err(RowError::new(field, format!("number {n} is out of range")))
            }
        }
        other => Err(RowError::new(
            field,
            format!(
                "expected a number or a string, found `{}`",
                crate::echo::echo(&other.to_string())
            ),
        )),
    }
}

/// Keys of an object row, matched case-insensitively; time first.
fn object_keys(
    path: &Path,
    first: &Map<String, Value>,
    wanted: &[&str],
) -> Result<Vec<String>, DataError> {
    let find = |want: &str| first.keys().find(|k| column_key(k) == want).cloned();
    let mut keys = Vec::new();
    let mut missing = Vec::new();
    match TIME_COLUMNS.iter().find_map(|t| find(t)) {
        Some(k) => keys.push(k),
        None => missing.push("timestamp".to_owned()),
    }
    for w in wanted {
        match find(w) {
            Some(k) => keys.push(k),
            None => missing.push((*w).to_owned()),
        }
    }
    if missing.is_empty() {
        Ok(keys)
    } else {
        let found = first
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(missing_columns(path, &missing, &found).at(Loc::Row(1)))
    }
}

/// How to pick the wanted fields out of each row.
enum Layout {
    /// Array rows: element indexes, and the minimum row length.
    Array(Vec<usize>, usize),
    /// Object rows: keys.
    Object(Vec<String>),
}

/// Picks `N` cells out of one row.
fn pick<'a, const N: usize>(
    layout: &Layout,
    names: &[&str; N],
    row: &'a Value,
) -> Result<[Cell<'a>; N], RowError> {
    let mut out = [Cell::Null; N];
    match (layout, row) {
        (Layout::Array(idx, min_len), Value::Array(items)) => {
            if items.len() < *min_len {
                return Err(RowError {
                    field: None,
                    message: format!("has {} elements, expected at least {min_len}", items.len()),
                });
            }
            for (k, &i) in idx.iter().enumerate() {
                out[k] = cell(names[k], &items[i])?;
            }
        }
        (Layout::Object(keys), Value::Object(map)) => {
            for (k, key) in keys.iter().enumerate() {
                let v = map
                    .get(key)
                    .ok_or_else(|| RowError::new(names[k], format!("missing key `{key}`")))?;
                out[k] = cell(names[k], v)?;
            }
        }
        (Layout::Array(..), _) => {
            return Err(RowError {
                field: None,
                message: "expected an array like the first row".to_owned(),
            });
        }
        (Layout::Object(_), _) => {
            return Err(RowError {
                field: None,
                message: "expected an object like the first row".to_owned(),
            });
        }
    }
    Ok(out)
}

pub(crate) fn load_candles(path: &Path, bytes: &[u8]) -> Result<Candles, DataError> {
    let rows = parse(path, bytes)?;
    let (layout, names) = match &rows[0] {
        Value::Object(first) => {
            let keys = object_keys(path, first, &["open", "high", "low", "close"])?;
            let names = CandleNames {
                time: keys[0].clone(),
                open: keys[1].clone(),
                high: keys[2].clone(),
                low: keys[3].clone(),
                close: keys[4].clone(),
            };
            (Layout::Object(keys), names)
        }
        _ => (
            Layout::Array(vec![0, 1, 2, 3, 4], 5),
            CandleNames {
                time: "date".into(),
                ..CandleNames::default()
            },
        ),
    };
    let field_names = [
        names.time.clone(),
        names.open.clone(),
        names.high.clone(),
        names.low.clone(),
        names.close.clone(),
    ];
    let field_refs: [&str; 5] = std::array::from_fn(|i| field_names[i].as_str());
    let mut builder = CandleBuilder::new(names);
    for (i, row) in rows.iter().enumerate() {
        let loc = Loc::Row(i + 1);
        pick(&layout, &field_refs, row)
            .and_then(|cells| builder.push(loc, cells))
            .map_err(|e| e.into_data_error(path, loc))?;
    }
    builder
        .finish()
        .ok_or_else(|| DataError::new(path, "no data rows"))
}

pub(crate) fn load_trades(path: &Path, bytes: &[u8]) -> Result<Trades, DataError> {
    let rows = parse(path, bytes)?;
    let (layout, names) = match &rows[0] {
        Value::Object(first) => {
            let keys = object_keys(path, first, &["price"])?;
            let names = [keys[0].clone(), keys[1].clone()];
            (Layout::Object(keys), names)
        }
        Value::Array(items) if items.len() == 2 => (
            Layout::Array(vec![0, 1], 2),
            ["timestamp".to_owned(), "price".to_owned()],
        ),
        // Freqtrade's trades list: [timestamp, id, type, side, price, amount, cost]
        _ => (
            Layout::Array(vec![0, 4], 5),
            ["timestamp".to_owned(), "price".to_owned()],
        ),
    };
    let refs = [names[0].as_str(), names[1].as_str()];
    let mut builder = TradeBuilder::new(refs[0], refs[1]);
    for (i, row) in rows.iter().enumerate() {
        let loc = Loc::Row(i + 1);
        pick(&layout, &refs, row)
            .and_then(|cells| builder.push(loc, cells))
            .map_err(|e| e.into_data_error(path, loc))?;
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
    fn freqtrade_arrays_and_objects() {
        let text = br#"[[1570752000000,0.00141342,0.00141557,0.00141266,0.00141418,1482],
                        [1570752060000,"0.00141597",0.00141658,0.00141597,0.00141658,522.0]]"#;
        let c = load_candles(Path::new("XRP_ETH-1m.json"), text).unwrap();
        assert_eq!(c.ts, vec![1_570_752_000_000, 1_570_752_060_000]);
        assert_eq!(c.open, vec![dec!(0.00141342), dec!(0.00141597)]);
        assert_eq!(c.high[0].to_string(), "0.00141557");
        let text = br#"[{"date":"2019-10-11T00:00:00Z","open":1,"high":2.5,"low":0.5,"close":2}]"#;
        let c = load_candles(Path::new("o.json"), text).unwrap();
        assert_eq!(c.ts, vec![1_570_752_000_000]);
        assert_eq!(c.high, vec![dec!(2.5)]);
    }

    #[test]
    fn json_errors_name_rows_and_fields() {
        let text = br#"[[1570752000000,1,2,0.5,1],[1570752060000,1,2,0.5]]"#;
        let e = load_candles(Path::new("x.json"), text).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("row 2"));
        assert_eq!(e.message, "has 4 elements, expected at least 5");
        let text = br#"[[1570752000000,1,2,0.5,1],[1570752060000,1,2,"NaN",1]]"#;
        let e = load_candles(Path::new("x.json"), text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.json: row 2, field `low`: `NaN` is not a finite number"
        );
        let e = load_candles(Path::new("x.json"), b"[[1,2,3,").unwrap_err();
        assert_eq!(e.location.as_deref(), Some("line 1, column 8"));
        let e = load_candles(Path::new("x.json"), b"[]").unwrap_err();
        assert!(e.message.contains("no data rows"));
        let e = load_candles(Path::new("x.json"), br#"[{"date":1,"open":1}]"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("high"));
    }

    #[test]
    fn freqtrade_trades_list() {
        let text = br#"[[1570752011620,"13519807",null,"sell",0.00141342,23,0.03250866],
                        [1570752011620,"13519808",null,"sell",0.00141266,54,0.07628364]]"#;
        let t = load_trades(Path::new("XRP_ETH-trades.json"), text).unwrap();
        assert_eq!(t.ts, vec![1_570_752_011_620, 1_570_752_011_620]);
        assert_eq!(t.price, vec![dec!(0.00141342), dec!(0.00141266)]);
    }
}
