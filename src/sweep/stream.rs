//! A sweep's rows streamed through disk, so a grid of a million cells runs in bounded memory.
//!
//! Finished rows go, in combination order, to a Parquet file in row groups of [`CHUNK`] rows (a
//! shard's file, or a temporary one beside the final tables); memory keeps only a [`Cell`] per
//! row: the combination, its objective and walk-forward cells — what the plateau, the best
//! cell and walk-forward need. The final tables are then written chunk by chunk from that file
//! with the plateau columns added. A run and a merge of its shards go through the same code,
//! so their tables are the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polars::prelude::*;

use super::SweepError;
use super::exec::{FoldCells, Row};
use super::grid::Grid;
use super::robust::{Plateau, Scored};
use super::table;
use crate::backtest::output::temp_path;

/// Rows per row group and per chunk of work held in memory at once.
pub const CHUNK: usize = 65_536;

/// What memory keeps of a finished row while the sweep runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub combo: u64,
    pub objective: Option<f64>,
    pub folds: Box<[FoldCells]>,
}

impl Scored for Cell {
    fn combo(&self) -> u64 {
        self.combo
    }
    fn objective(&self) -> Option<f64> {
        self.objective
    }
    fn fold(&self, k: usize) -> Option<&FoldCells> {
        self.folds.get(k)
    }
}

impl From<&Row> for Cell {
    fn from(r: &Row) -> Cell {
        Cell {
            combo: r.combo,
            objective: r.objective,
            folds: r.folds.clone().into_boxed_slice(),
        }
    }
}

fn polars(step: &'static str) -> impl Fn(PolarsError) -> SweepError {
    move |cause| SweepError::Table { step, cause }
}

fn named(path: &Path) -> impl Fn(std::io::Error) -> SweepError + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()
}

/// Removes its file when dropped, unless it was handed on.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a live temporary file")
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("a live temporary file")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A buffered file the Parquet writer writes through while we keep a handle to flush and
/// sync it once the writer is done (the writer never gives its file back).
#[derive(Clone)]
struct Shared(Arc<Mutex<BufWriter<File>>>);

impl Shared {
    fn new(f: File) -> Shared {
        Shared(Arc::new(Mutex::new(BufWriter::new(f))))
    }
    /// Flushes and syncs to disk.
    fn sync(&self, path: &Path) -> Result<(), SweepError> {
        let mut w = self.0.lock().expect("file lock");
        w.flush().map_err(named(path))?;
        w.get_ref().sync_all().map_err(named(path))
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("file lock").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().expect("file lock").flush()
    }
}

type Batched = polars::io::parquet::write::BatchedWriter<Shared>;

fn batched(out: &Shared, schema: &Schema) -> Result<Batched, SweepError> {
    ParquetWriter::new(out.clone())
        .batched(schema)
        .map_err(polars("writing Parquet"))
}

/// Writes rows, in combination order, to a Parquet file in row groups of [`CHUNK`].
pub struct Spill {
    file: TempFile,
    out: Shared,
    writer: Batched,
    grid: Grid,
    folds: usize,
    buffered: Vec<Row>,
    cells: Vec<Cell>,
}

/// The temporary file `dest` is written to (removed if the run fails).
fn create(dest: &Path) -> Result<(TempFile, File), SweepError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    if let Some(name) = dest.file_name().and_then(|n| n.to_str()) {
        crate::backtest::output::remove_stale_temps(dir, name);
    }
    std::fs::create_dir_all(dir).map_err(named(dir))?;
    let tmp = temp_path(dest);
    let f = File::create(&tmp).map_err(named(&tmp))?;
    Ok((TempFile(Some(tmp)), f))
}

impl Spill {
    /// A spill that becomes `dest` (its temporary sibling until [`Spilled::persist`]).
    pub fn create(dest: &Path, grid: &Grid, folds: usize) -> Result<Spill, SweepError> {
        let (file, f) = create(dest)?;
        let schema = table::frame(grid, &[], folds, None)?
            .schema()
            .as_ref()
            .clone();
        let out = Shared::new(f);
        let writer = batched(&out, &schema)?;
        Ok(Spill {
            file,
            out,
            writer,
            grid: grid.clone(),
            folds,
            buffered: Vec::new(),
            cells: Vec::new(),
        })
    }

    /// Takes finished rows; they follow every row taken before in combination order.
    pub fn push(&mut self, rows: Vec<Row>) -> Result<(), SweepError> {
        for r in rows {
            debug_assert!(self.cells.last().is_none_or(|c| c.combo < r.combo));
            self.cells.push(Cell::from(&r));
            self.buffered.push(r);
            if self.buffered.len() == CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SweepError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let df = table::frame(&self.grid, &self.buffered, self.folds, None)?;
        self.writer
            .write_batch(&df)
            .map_err(polars("writing Parquet"))?;
        self.buffered.clear();
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.cells.len()
    }

    /// The file complete, and the cells of its rows.
    pub fn close(mut self) -> Result<Spilled, SweepError> {
        self.flush()?;
        self.writer.finish().map_err(polars("writing Parquet"))?;
        self.out.sync(self.file.path())?;
        let Spill {
            file,
            cells,
            grid,
            folds,
            ..
        } = self;
        Ok(Spilled {
            file,
            cells,
            grid,
            folds,
        })
    }
}

/// A finished spill: the rows on disk, their cells in memory.
pub struct Spilled {
    file: TempFile,
    pub cells: Vec<Cell>,
    grid: Grid,
    folds: usize,
}

impl Spilled {
    /// Rows `start..start + len` read back.
    pub fn read(&self, start: usize, len: usize) -> Result<Vec<Row>, SweepError> {
        let path = self.file.path();
        let df = table::read_parquet_slice(path, Some((start, len)))?;
        table::rows_from(&df, self.folds, path)
    }

    /// Row `i` read back.
    pub fn row(&self, i: usize) -> Result<Row, SweepError> {
        self.read(i, 1)?
            .pop()
            .ok_or_else(|| SweepError::Spec(format!("row {i} is not in the spilled rows")))
    }

    /// The temporary file, kept to be renamed onto its destination.
    pub fn persist(self) -> PathBuf {
        self.file.keep()
    }

    /// Writes `sweep.parquet` and `sweep.csv` (their temporary siblings, to be renamed with the
    /// rest) chunk by chunk, each row with its plateau. Returns the (temporary, final) pairs
    /// and the Parquet file's digest.
    pub fn write_final(
        &self,
        plateau: &[Plateau],
        parquet: &Path,
        csv: &Path,
    ) -> Result<(Vec<(PathBuf, PathBuf)>, String), SweepError> {
        let (pq_file, pq) = create(parquet)?;
        let (csv_file, c) = create(csv)?;
        let schema = table::frame(&self.grid, &[], self.folds, Some(&[]))?
            .schema()
            .as_ref()
            .clone();
        let pq_out = Shared::new(pq);
        let mut pq_writer = batched(&pq_out, &schema)?;
        let mut csv_out = BufWriter::new(c);
        let n = self.cells.len();
        let mut start = 0;
        loop {
            let len = CHUNK.min(n - start);
            let rows = if len == 0 {
                Vec::new()
            } else {
                self.read(start, len)?
            };
            let mut df = table::frame(
                &self.grid,
                &rows,
                self.folds,
                Some(&plateau[start..start + len]),
            )?;
            if len > 0 {
                pq_writer
                    .write_batch(&df)
                    .map_err(polars("writing Parquet"))?;
            }
            // The header once (also for an empty table), then the rows of each chunk.
            if start == 0 || len > 0 {
                CsvWriter::new(&mut csv_out)
                    .include_header(start == 0)
                    .finish(&mut df)
                    .map_err(polars("writing CSV"))?;
            }
            start += len;
            if start >= n {
                break;
            }
        }
        pq_writer.finish().map_err(polars("writing Parquet"))?;
        pq_out.sync(pq_file.path())?;
        csv_out.flush().map_err(named(csv_file.path()))?;
        csv_out
            .get_ref()
            .sync_all()
            .map_err(named(csv_file.path()))?;
        let digest = table::digest_file(pq_file.path()).map_err(named(pq_file.path()))?;
        Ok((
            vec![
                (pq_file.keep(), parquet.to_path_buf()),
                (csv_file.keep(), csv.to_path_buf()),
            ],
            digest,
        ))
    }
}
