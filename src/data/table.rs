//! Parquet and Arrow IPC (Feather v2) files, read with polars' eager readers.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use polars::prelude::*;

use super::build::{CandleBuilder, CandleNames, TradeBuilder};
use super::csv::missing_columns;
use super::error::{DataError, Loc};
use super::parse::Cell;
use super::{Candles, TIME_COLUMNS, Trades, column_key};

/// Which polars reader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Columnar {
    Parquet,
    Ipc,
}

impl Columnar {
    fn name(self) -> &'static str {
        match self {
            Columnar::Parquet => "Parquet",
            Columnar::Ipc => "Arrow IPC (Feather)",
        }
    }
}

/// Reads the whole file (or its bytes, already read: a pipe) into a DataFrame. A malformed
/// file must not take the process down, so a panic inside polars is caught and reported as an
/// error.
fn read_frame(path: &Path, kind: Columnar, bytes: Option<&[u8]>) -> Result<DataFrame, DataError> {
    fn read<R: polars::io::mmap::MmapBytesReader>(kind: Columnar, r: R) -> PolarsResult<DataFrame> {
        match kind {
            Columnar::Parquet => ParquetReader::new(r).finish(),
            Columnar::Ipc => IpcReader::new(r).finish(),
        }
    }
    let result = match bytes {
        Some(b) => catch_unwind(AssertUnwindSafe(|| read(kind, std::io::Cursor::new(b)))),
        None => {
            let file =
                File::open(path).map_err(|e| DataError::new(path, format!("cannot open: {e}")))?;
            catch_unwind(AssertUnwindSafe(|| read(kind, file)))
        }
    };
    match result {
        Ok(Ok(df)) => Ok(df),
        Ok(Err(e)) => Err(DataError::new(
            path,
            format!("cannot read as {}: {e}", kind.name()),
        )),
        Err(_) => Err(DataError::new(
            path,
            format!(
                "cannot read as {}: the reader failed on malformed data",
                kind.name()
            ),
        )),
    }
}

/// One column's values, in a shape that hands out [`Cell`]s by row.
enum Values<'a> {
    /// Epoch milliseconds (from a datetime/date column).
    Ms(Vec<Option<i64>>),
    Int(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    F32(Vec<Option<f32>>),
    Str(Vec<Option<&'a str>>),
}

impl Values<'_> {
    fn cell(&self, row: usize) -> Cell<'_> {
        let or_null = |c: Option<Cell<'static>>| c.unwrap_or(Cell::Null);
        match self {
            Values::Ms(v) => or_null(v.get(row).copied().flatten().map(Cell::Ms)),
            Values::Int(v) => or_null(v.get(row).copied().flatten().map(Cell::Int)),
            Values::F64(v) => or_null(v.get(row).copied().flatten().map(Cell::F64)),
            Values::F32(v) => or_null(v.get(row).copied().flatten().map(Cell::F32)),
            Values::Str(v) => v.get(row).copied().flatten().map_or(Cell::Null, Cell::Str),
        }
    }
}

fn polars_err(path: &Path, name: &str, e: PolarsError) -> DataError {
    DataError::new(path, format!("cannot read column: {e}")).field(Some(name))
}

/// Raw i64s of a datetime column as epoch milliseconds (floored).
fn datetime_ms(
    path: &Path,
    name: &str,
    s: &Series,
    unit: TimeUnit,
) -> Result<Values<'static>, DataError> {
    let phys = s.to_physical_repr();
    let ints = phys.i64().map_err(|e| polars_err(path, name, e))?;
    let div = match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1000,
        TimeUnit::Nanoseconds => 1_000_000,
    };
    Ok(Values::Ms(
        ints.iter().map(|v| v.map(|x| x.div_euclid(div))).collect(),
    ))
}

fn values<'a>(path: &Path, name: &str, s: &'a Series) -> Result<Values<'a>, DataError> {
    let err = |e| polars_err(path, name, e);
    match s.dtype() {
        DataType::Datetime(unit, _) => datetime_ms(path, name, s, *unit),
        DataType::Date => {
            let ms = s
                .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
                .map_err(err)?;
            datetime_ms(path, name, &ms, TimeUnit::Milliseconds)
        }
        DataType::Float64 => Ok(Values::F64(s.f64().map_err(err)?.iter().collect())),
        DataType::Float32 => Ok(Values::F32(s.f32().map_err(err)?.iter().collect())),
        DataType::String => Ok(Values::Str(s.str().map_err(err)?.iter().collect())),
        dt if dt.is_integer() => {
            if matches!(dt, DataType::UInt64) {
                // Values above i64::MAX would silently become nulls in the cast.
                let max = s.u64().map_err(err)?.max().unwrap_or(0);
                if max > i64::MAX as u64 {
                    return Err(DataError::new(path, format!("value {max} is out of range"))
                        .field(Some(name)));
                }
            }
            let ints = s.cast(&DataType::Int64).map_err(err)?;
            Ok(Values::Int(ints.i64().map_err(err)?.iter().collect()))
        }
        other => Err(DataError::new(
            path,
            format!(
                "column type {other} is not supported (expected numbers, strings or datetimes)"
            ),
        )
        .field(Some(name))),
    }
}

/// Finds the wanted columns (time first, any of [`TIME_COLUMNS`]) case-insensitively.
fn resolve<'a>(
    path: &Path,
    df: &'a DataFrame,
    wanted: &[&str],
) -> Result<Vec<&'a Series>, DataError> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let find = |want: &str| names.iter().position(|n| column_key(n) == want);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    match TIME_COLUMNS.iter().find_map(|t| find(t)) {
        Some(i) => found.push(i),
        None => missing.push("timestamp".to_owned()),
    }
    for w in wanted {
        match find(w) {
            Some(i) => found.push(i),
            None => missing.push((*w).to_owned()),
        }
    }
    if !missing.is_empty() {
        let listed = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(missing_columns(path, &missing, &listed));
    }
    found
        .into_iter()
        .map(|i| {
            df.column(&names[i])
                .map(Column::as_materialized_series)
                .map_err(|e| polars_err(path, &names[i], e))
        })
        .collect()
}

pub(crate) fn load_candles(
    path: &Path,
    kind: Columnar,
    bytes: Option<&[u8]>,
) -> Result<Candles, DataError> {
    let df = read_frame(path, kind, bytes)?;
    let cols = resolve(path, &df, &["open", "high", "low", "close"])?;
    let vals = cols
        .iter()
        .map(|s| values(path, s.name(), s))
        .collect::<Result<Vec<_>, _>>()?;
    let name = |i: usize| cols[i].name().to_string();
    let mut builder = CandleBuilder::new(CandleNames {
        time: name(0),
        open: name(1),
        high: name(2),
        low: name(3),
        close: name(4),
    });
    for row in 0..df.height() {
        let cell = |i: usize| vals[i].cell(row);
        let loc = Loc::Row(row + 1);
        builder
            .push(loc, [cell(0), cell(1), cell(2), cell(3), cell(4)])
            .map_err(|e| e.into_data_error(path, loc))?;
    }
    builder
        .finish()
        .ok_or_else(|| DataError::new(path, "no data rows"))
}

pub(crate) fn load_trades(
    path: &Path,
    kind: Columnar,
    bytes: Option<&[u8]>,
) -> Result<Trades, DataError> {
    let df = read_frame(path, kind, bytes)?;
    let cols = resolve(path, &df, &["price"])?;
    let vals = cols
        .iter()
        .map(|s| values(path, s.name(), s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = TradeBuilder::new(cols[0].name(), cols[1].name());
    for row in 0..df.height() {
        let loc = Loc::Row(row + 1);
        builder
            .push(loc, [vals[0].cell(row), vals[1].cell(row)])
            .map_err(|e| e.into_data_error(path, loc))?;
    }
    builder
        .finish()
        .ok_or_else(|| DataError::new(path, "no data rows"))
}
