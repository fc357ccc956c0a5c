//! Reports from saved sweep results (no backtest is run here): heatmaps, the equity curves,
//! trade charts (PNG and SVG, drawn with plotters and the embedded font), and one
//! self-contained `index.html`.

pub mod axis;
pub mod equity;
pub mod figure;
pub mod heatmap;
pub mod html;
pub mod trade;

use std::path::{Path, PathBuf};

use crate::backtest::output::write_files;
use crate::sweep::exec::Folds;
use crate::sweep::{Meta, SweepError, table};

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    /// Reading the sweep's own tables.
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error("{}drawing failed: {message}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
    Draw {
        file: Option<PathBuf>,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing the report's files (the error names the file).
    #[error("{0}")]
    Write(std::io::Error),
}

use crate::sweep::report_data::ReportData;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::Input {
        path: path.to_path_buf(),
        message: format!("cannot read: {e} (run `trailstop sweep` into this folder first)"),
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Input {
        path: path.to_path_buf(),
        message: format!("not a sweep output: {e}"),
    })
}

/// A picture to write: its stem, the PNG bytes and the SVG text.
pub struct Drawn {
    pub stem: String,
    pub png: Vec<u8>,
    pub svg: String,
}

fn draw<F: figure::Figure>(fig: &F, dir: &Path, stem: &str) -> Result<Drawn, ReportError> {
    Ok(Drawn {
        stem: stem.to_string(),
        png: figure::png(fig, &dir.join(format!("{stem}.png")))?,
        svg: figure::svg(fig)?,
    })
}

/// Rows in the report's table of top cells.
const TOP_CELLS: usize = 10;

/// Renders `dir`'s report from `sweep.json`, `sweep.parquet` and `report.json`; returns the
/// files written (all at once, atomically).
pub fn render(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let meta: Meta = read_json(&dir.join("sweep.json"))?;
    let data: ReportData = read_json(&dir.join("report.json"))?;
    let pq = dir.join("sweep.parquet");
    let folds = meta.walk_forward.as_ref().map_or(0, Folds::count);
    belongs(&meta, &pq, &dir.join("sweep.json"))?;
    // Only the scores of every row, and the full rows of the ten best: a table of a million
    // rows is read in little memory.
    let scores = table::read_scores(&pq)?;
    let top = crate::sweep::robust::top(meta.objective, &scores, TOP_CELLS)
        .into_iter()
        .map(|i| {
            let df = table::read_parquet_slice(&pq, Some((i, 1)))?;
            Ok(table::rows_from(&df, folds, &pq)?.remove(0))
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    let results = meta.results.as_ref().ok_or_else(|| ReportError::Input {
        path: dir.join("sweep.json"),
        message: "has no results (a shard? merge the shards first)".into(),
    })?;
    let best = results.best.as_ref().and_then(|p| p.combo);
    let robust = results.robust.as_ref().and_then(|p| p.combo);
    let title = format!("{}: {}", meta.scenario, meta.objective.as_str());
    let panels = heatmap::panels(&meta.grid, &scores, meta.objective, best, robust, &title);

    let mut heatmaps = Vec::new();
    // `heatmap` is the panel with the best cell (or the first); others are named by their
    // fixed values.
    let main = panels
        .iter()
        .position(|p| p.heatmap.best.is_some())
        .unwrap_or(0);
    for (i, p) in panels.iter().enumerate() {
        let stem = if i == main {
            "heatmap".to_string()
        } else {
            let f: Vec<String> = p
                .fixed
                .iter()
                .map(|(k, v)| format!("{}-{}", safe(k), safe(v)))
                .collect();
            format!("heatmap-{}", f.join("-"))
        };
        heatmaps.push(draw(&p.heatmap, dir, &stem)?);
    }
    let eq = equity::Equity {
        title: format!(
            "{}: realised return of the picked parameters",
            meta.scenario
        ),
        curves: data.curves.clone(),
    };
    let equity = draw(&eq, dir, "equity")?;
    let trades_dir = dir.join("trades");
    let mut trades = Vec::new();
    for c in &data.charts {
        trades.push(draw(c, &trades_dir, &c.file)?);
    }

    let page = html::page(&meta, &data, &scores, &top, &heatmaps, &equity, &trades);
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for d in heatmaps.iter().chain([&equity]) {
        files.push((dir.join(format!("{}.png", d.stem)), d.png.clone()));
        files.push((
            dir.join(format!("{}.svg", d.stem)),
            d.svg.clone().into_bytes(),
        ));
    }
    for d in &trades {
        files.push((trades_dir.join(format!("{}.png", d.stem)), d.png.clone()));
    }
    files.push((dir.join("index.html"), page.into_bytes()));
    write_files(&files).map_err(ReportError::Write)?;
    let written: Vec<PathBuf> = files.into_iter().map(|(p, _)| p).collect();
    remove_stale(dir, &written)?;
    Ok(written)
}

/// Whether `name` is one of the files a report writes into its folder (`trades/` aside).
fn is_report_file(name: &str) -> bool {
    let picture =
        |stem: &str| stem == "equity" || stem == "heatmap" || stem.starts_with("heatmap-");
    name == "index.html"
        || name
            .strip_suffix(".png")
            .or_else(|| name.strip_suffix(".svg"))
            .is_some_and(picture)
}

/// Removes the report files in `dir` (pictures, trade charts, `index.html`) that are not in
/// `written`: a report of another grid, or a sweep with `--no-report` (`written` empty), then
/// never leaves old pictures beside new tables. Returns what was removed.
pub fn remove_stale(dir: &Path, written: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    let mut removed = Vec::new();
    let trades = dir.join("trades");
    for (folder, ours) in [
        (dir, is_report_file as fn(&str) -> bool),
        (trades.as_path(), |n: &str| {
            n.ends_with(".png") || n.ends_with(".svg")
        }),
    ] {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        let mut stale: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| e.file_name().to_str().is_some_and(ours))
            .map(|e| e.path())
            .filter(|p| !written.contains(p))
            .collect();
        stale.sort();
        for path in stale {
            std::fs::remove_file(&path).map_err(|source| ReportError::Io {
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
    }
    // Only when empty: the folder itself is the report's too.
    let _ = std::fs::remove_dir(&trades);
    Ok(removed)
}

/// Refuses a `sweep.parquet` that is not the one written with `sweep.json` (its digest differs),
/// or, for outputs without a digest, one whose row count is not the sweep's.
fn belongs(meta: &Meta, pq: &Path, json: &Path) -> Result<(), ReportError> {
    let refuse = |why: String| ReportError::Input {
        path: pq.to_path_buf(),
        message: format!(
            "does not belong to {} beside it ({why}); run the sweep again into this folder, or \
             put back the pair that was written together",
            json.display()
        ),
    };
    match &meta.parquet_digest {
        Some(recorded) => {
            let found = table::digest_file(pq).map_err(|e| ReportError::Input {
                path: pq.to_path_buf(),
                message: format!("cannot read: {e}"),
            })?;
            if &found != recorded {
                return Err(refuse(format!(
                    "its digest is {found}, sweep.json records {recorded}"
                )));
            }
        }
        None => {
            let rows = table::read_parquet(pq)?.height() as u64;
            if rows != meta.finished {
                return Err(refuse(format!(
                    "it has {rows} rows, sweep.json says {} combinations finished",
                    meta.finished
                )));
            }
        }
    }
    Ok(())
}

/// Renders a backtest's report into `dir`: `equity.{png,svg}`, `trades/*.png` (its top and
/// worst trades) and `index.html` with the summary table; returns the files written (all at
/// once, atomically). `command`: how the run was made, shown on the page.
pub fn render_backtest(
    dir: &Path,
    summary: &crate::backtest::Summary,
    data: &ReportData,
    command: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    let eq = equity::Equity {
        title: format!("{}: realised return of the backtest", summary.scenario),
        curves: data.curves.clone(),
    };
    let equity = draw(&eq, dir, "equity")?;
    let trades_dir = dir.join("trades");
    let mut trades = Vec::new();
    for c in &data.charts {
        trades.push(draw(c, &trades_dir, &c.file)?);
    }
    let page = html::backtest_page(summary, command, &equity, &trades);
    let mut files: Vec<(PathBuf, Vec<u8>)> = vec![
        (dir.join("equity.png"), equity.png.clone()),
        (dir.join("equity.svg"), equity.svg.clone().into_bytes()),
    ];
    for d in &trades {
        files.push((trades_dir.join(format!("{}.png", d.stem)), d.png.clone()));
    }
    files.push((dir.join("index.html"), page.into_bytes()));
    write_files(&files).map_err(ReportError::Write)?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// A value as a file-name part.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
