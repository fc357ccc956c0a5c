//! Rows ↔ polars DataFrames ↔ `sweep.parquet` / `sweep.csv` (and shard files).

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use polars::prelude::*;

use super::SweepError;
use super::exec::{FoldCells, Row};
use super::grid::Grid;
use super::metrics::Metrics;
use super::robust::Plateau;

/// Integer metric columns, in output order after the parameters.
const INT_METRICS: [&str; 6] = [
    "trades",
    "stop_updates",
    "updates_held",
    "emergency_updates",
    "unprotected_ms",
    "ambiguous_bars",
];

/// Float metric columns.
const FLOAT_METRICS: [&str; 9] = [
    "total_return_pct",
    "mean_return_pct",
    "win_rate",
    "profit_factor",
    "max_drawdown_pct",
    "sharpe",
    "mean_giveback_pct",
    "capture_ratio",
    "ambiguous_share",
];

fn ints(m: &Metrics) -> [i64; 6] {
    [
        m.trades,
        m.stop_updates,
        m.updates_held,
        m.emergency_updates,
        m.unprotected_ms,
        m.ambiguous_bars,
    ]
}

fn floats(m: &Metrics) -> [Option<f64>; 9] {
    [
        m.total_return_pct,
        m.mean_return_pct,
        m.win_rate,
        m.profit_factor,
        m.max_drawdown_pct,
        m.sharpe,
        m.mean_giveback_pct,
        m.capture_ratio,
        m.ambiguous_share,
    ]
}

fn metrics_of(i: [i64; 6], f: [Option<f64>; 9]) -> Metrics {
    Metrics {
        trades: i[0],
        stop_updates: i[1],
        updates_held: i[2],
        emergency_updates: i[3],
        unprotected_ms: i[4],
        ambiguous_bars: i[5],
        total_return_pct: f[0],
        mean_return_pct: f[1],
        win_rate: f[2],
        profit_factor: f[3],
        max_drawdown_pct: f[4],
        sharpe: f[5],
        mean_giveback_pct: f[6],
        capture_ratio: f[7],
        ambiguous_share: f[8],
    }
}

fn fold_names(f: usize) -> [String; 3] {
    [
        format!("wf{f}_train"),
        format!("wf{f}_test"),
        format!("wf{f}_test_return_pct"),
    ]
}

/// The table: `combo`, one column per axis (numbers as Float64, words as String), the metrics,
/// the objective and its band, walk-forward fold cells, and — in final output — the plateau.
pub fn frame(
    grid: &Grid,
    rows: &[Row],
    folds: usize,
    plateau: Option<&[Plateau]>,
) -> Result<DataFrame, SweepError> {
    let mut cols: Vec<Column> = Vec::new();
    cols.push(Column::new(
        "combo".into(),
        rows.iter().map(|r| r.combo).collect::<Vec<u64>>(),
    ));
    for (a, axis) in grid.axes.iter().enumerate() {
        let values = rows.iter().map(|r| grid.values(r.combo)[a]);
        if axis.is_numeric() {
            let v: Vec<Option<f64>> = values.map(|v| v.as_f64()).collect();
            cols.push(Column::new(axis.key.as_str().into(), v));
        } else {
            let v: Vec<String> = values.map(|v| v.to_string()).collect();
            cols.push(Column::new(axis.key.as_str().into(), v));
        }
    }
    for (k, name) in INT_METRICS.iter().enumerate() {
        let v: Vec<i64> = rows.iter().map(|r| ints(&r.metrics)[k]).collect();
        cols.push(Column::new((*name).into(), v));
    }
    for (k, name) in FLOAT_METRICS.iter().enumerate() {
        let v: Vec<Option<f64>> = rows.iter().map(|r| floats(&r.metrics)[k]).collect();
        cols.push(Column::new((*name).into(), v));
    }
    let mut float_col = |name: &str, v: Vec<Option<f64>>| {
        cols.push(Column::new(name.into(), v));
    };
    float_col("objective", rows.iter().map(|r| r.objective).collect());
    float_col(
        "objective_optimistic",
        rows.iter().map(|r| r.objective_optimistic).collect(),
    );
    float_col(
        "objective_pessimistic",
        rows.iter().map(|r| r.objective_pessimistic).collect(),
    );
    for f in 0..folds {
        let cell = |r: &Row| r.folds.get(f).copied().unwrap_or_default();
        let [train, test, ret] = fold_names(f);
        float_col(&train, rows.iter().map(|r| cell(r).train).collect());
        float_col(&test, rows.iter().map(|r| cell(r).test).collect());
        float_col(&ret, rows.iter().map(|r| cell(r).test_return).collect());
    }
    if let Some(p) = plateau {
        float_col("plateau", p.iter().map(|p| p.score).collect());
        cols.push(Column::new(
            "plateau_cells".into(),
            p.iter().map(|p| p.cells).collect::<Vec<i64>>(),
        ));
    }
    DataFrame::new_infer_height(cols).map_err(|cause| SweepError::Table {
        step: "building the table",
        cause,
    })
}

pub fn parquet_bytes(df: &mut DataFrame) -> Result<Vec<u8>, SweepError> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .finish(df)
        .map_err(|cause| SweepError::Table {
            step: "writing Parquet",
            cause,
        })?;
    Ok(buf)
}

/// A table's fingerprint, recorded in `sweep.json`: FNV-1a (64 bit) of the file's bytes and
/// their length (`fnv1a64:<hex>:<bytes>`). It tells a table that belongs to its `sweep.json`
/// from one copied in from another sweep, not a forgery.
pub fn digest(bytes: &[u8]) -> String {
    let mut d = Digest::default();
    d.update(bytes);
    d.text()
}

/// [`digest`] of a file, read in pieces.
pub fn digest_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut d = Digest::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(d.text());
        }
        d.update(&buf[..n]);
    }
}

/// FNV-1a (64 bit) over bytes given in pieces.
struct Digest {
    h: u64,
    len: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Digest {
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.h ^= u64::from(b);
            self.h = self.h.wrapping_mul(0x0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }
    fn text(&self) -> String {
        format!("fnv1a64:{:016x}:{}", self.h, self.len)
    }
}

pub fn csv_bytes(df: &mut DataFrame) -> Result<Vec<u8>, SweepError> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(df)
        .map_err(|cause| SweepError::Table {
            step: "writing CSV",
            cause,
        })?;
    Ok(buf)
}

/// Reads a Parquet file; a malformed file is an error, not a crash.
pub fn read_parquet(path: &Path) -> Result<DataFrame, SweepError> {
    read_parquet_slice(path, None)
}

/// Rows `start..start + len` of a Parquet file (fewer at its end); a malformed file is an
/// error, not a crash.
pub fn read_parquet_slice(
    path: &Path,
    slice: Option<(usize, usize)>,
) -> Result<DataFrame, SweepError> {
    let err = |m: String| SweepError::Input {
        path: path.to_path_buf(),
        message: m,
    };
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    match catch_unwind(AssertUnwindSafe(|| {
        ParquetReader::new(file).with_slice(slice).finish()
    })) {
        Ok(Ok(df)) => Ok(df),
        Ok(Err(e)) => Err(err(format!("cannot read as Parquet: {e}"))),
        Err(_) => Err(err("cannot read as Parquet: malformed file".into())),
    }
}

fn f64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<f64>>, SweepError> {
    let col = df.column(name).map_err(|_| SweepError::Input {
        path: path.to_path_buf(),
        message: format!("missing column `{name}`"),
    })?;
    let ca = col.f64().map_err(|e| SweepError::Input {
        path: path.to_path_buf(),
        message: format!("column `{name}`: {e}"),
    })?;
    Ok(ca.iter().collect())
}

fn i64s(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<i64>, SweepError> {
    let col = df.column(name).map_err(|_| SweepError::Input {
        path: path.to_path_buf(),
        message: format!("missing column `{name}`"),
    })?;
    let cast = col.cast(&DataType::Int64).map_err(|e| SweepError::Input {
        path: path.to_path_buf(),
        message: format!("column `{name}`: {e}"),
    })?;
    let ca = cast.i64().map_err(|e| SweepError::Input {
        path: path.to_path_buf(),
        message: format!("column `{name}`: {e}"),
    })?;
    ca.iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| SweepError::Input {
                path: path.to_path_buf(),
                message: format!("row {}, column `{name}`: empty", i + 1),
            })
        })
        .collect()
}

/// What a report needs of every row of a table: the heatmaps' and rankings' numbers, read
/// without the other columns so a table of a million rows reads in little memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub combo: u64,
    pub objective: Option<f64>,
    pub objective_optimistic: Option<f64>,
    pub objective_pessimistic: Option<f64>,
}

impl super::robust::Scored for Scores {
    fn combo(&self) -> u64 {
        self.combo
    }
    fn objective(&self) -> Option<f64> {
        self.objective
    }
    fn fold(&self, _: usize) -> Option<&FoldCells> {
        None
    }
}

/// The [`Scores`] of every row of a table file.
pub fn read_scores(path: &Path) -> Result<Vec<Scores>, SweepError> {
    let err = |m: String| SweepError::Input {
        path: path.to_path_buf(),
        message: m,
    };
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let columns = [
        "combo",
        "objective",
        "objective_optimistic",
        "objective_pessimistic",
    ];
    let df = match catch_unwind(AssertUnwindSafe(|| {
        ParquetReader::new(file)
            .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
            .finish()
    })) {
        Ok(Ok(df)) => df,
        Ok(Err(e)) => return Err(err(format!("cannot read as Parquet: {e}"))),
        Err(_) => return Err(err("cannot read as Parquet: malformed file".into())),
    };
    let combos = i64s(&df, "combo", path)?;
    let objective = f64s(&df, "objective", path)?;
    let opt = f64s(&df, "objective_optimistic", path)?;
    let pes = f64s(&df, "objective_pessimistic", path)?;
    Ok((0..df.height())
        .map(|i| Scores {
            combo: combos[i] as u64,
            objective: objective[i],
            objective_optimistic: opt[i],
            objective_pessimistic: pes[i],
        })
        .collect())
}

/// Rows back from a table written by [`frame`] (shard files, for `merge`).
pub fn rows_from(df: &DataFrame, folds: usize, path: &Path) -> Result<Vec<Row>, SweepError> {
    let combos = i64s(df, "combo", path)?;
    let ints: Vec<Vec<i64>> = INT_METRICS
        .iter()
        .map(|n| i64s(df, n, path))
        .collect::<Result<_, _>>()?;
    let floats: Vec<Vec<Option<f64>>> = FLOAT_METRICS
        .iter()
        .map(|n| f64s(df, n, path))
        .collect::<Result<_, _>>()?;
    let objective = f64s(df, "objective", path)?;
    let opt = f64s(df, "objective_optimistic", path)?;
    let pes = f64s(df, "objective_pessimistic", path)?;
    let fold_cols: Vec<[Vec<Option<f64>>; 3]> = (0..folds)
        .map(|f| {
            let [a, b, c] = fold_names(f);
            Ok([
                f64s(df, &a, path)?,
                f64s(df, &b, path)?,
                f64s(df, &c, path)?,
            ])
        })
        .collect::<Result<_, SweepError>>()?;
    Ok((0..df.height())
        .map(|i| Row {
            combo: combos[i] as u64,
            metrics: metrics_of(
                std::array::from_fn(|k| ints[k][i]),
                std::array::from_fn(|k| floats[k][i]),
            ),
            objective: objective[i],
            objective_optimistic: opt[i],
            objective_pessimistic: pes[i],
            folds: fold_cols
                .iter()
                .map(|[a, b, c]| FoldCells {
                    train: a[i],
                    test: b[i],
                    test_return: c[i],
                })
                .collect(),
        })
        .collect())
}
