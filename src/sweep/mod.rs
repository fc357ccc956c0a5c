//! `trailstop sweep`: a scenario's parameter grid, each combination a full backtest, in
//! parallel with rayon (DESIGN §4); `merge` of sharded runs; the report's inputs.
//!
//! Output (`DIR` = `--out`, default `reports/<scenario>/`): `sweep.parquet` and `sweep.csv` (one
//! row per combination, sorted by the parameters), `sweep.json` (the grid, how it was run, the
//! best / most robust / walk-forward results), `report.json` (curves and trade charts) and the
//! report itself (`crate::report`, which the command line runs on the output). A shard writes `sweep-shard-K-of-N.{parquet,json}` only.

pub mod exec;
pub mod grid;
pub mod memory;
/// The metrics live with the backtest (its summary uses them too); re-exported for the sweep's paths.
pub use crate::backtest::metrics;
pub mod picks;
pub mod report_data;
pub mod robust;
pub mod spec;
pub mod stream;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backtest::BacktestError;
use crate::backtest::output::write_files_with;
use crate::scenario::{Scenario, ScenarioError};

use exec::{Folds, Job, Row};
use grid::{Grid, Shard};
use metrics::{Metrics, Objective};
use robust::{Plateau, WalkForward};
use spec::{CliSpec, Spec};
use stream::{CHUNK, Spill, Spilled};

#[derive(Debug, Error)]
pub enum SweepError {
    /// The grid or a sweep setting (`[sweep]`, `--grid`, `--objective`, …): the text names
    /// the key.
    #[error("sweep: {0}")]
    Spec(String),
    #[error("sweep: --walk-forward {k}: the data span is too short for {folds} folds")]
    FoldsTooShort { k: u32, folds: u32 },
    #[error("sweep: {}", memory::refusal(*.cells, *.needed, *.per_cell, *.available))]
    TooBig {
        cells: u64,
        needed: u64,
        per_cell: u64,
        available: u64,
    },
    #[error("sweep: TRAILSTOP_MEMORY_LIMIT={value}: not a size like 8G or 512M")]
    MemoryLimit { value: String },
    #[error("sweep: merge: no sweep-shard-*.json in {}", .dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoShards { dirs: Vec<PathBuf> },
    #[error("sweep: merge: shard {index}/{count} is missing")]
    MissingShard { index: usize, count: u32 },
    #[error("sweep: merge: the shards' rows are not exactly the sweep's combinations")]
    ShardRows,
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    #[error("combination {params}: {message}")]
    Combo { params: String, message: String },
    /// Building or writing the result tables (polars).
    #[error("{step}: {cause}")]
    Table {
        step: &'static str,
        cause: polars::prelude::PolarsError,
    },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    OutDir(#[from] crate::backtest::output::OutDirError),
}

/// Bumped when the files' layout changes.
pub const FORMAT: u32 = 1;

/// `sweep.json` (and a shard's `sweep-shard-K-of-N.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    pub scenario: String,
    /// The scenario file and the folder its relative paths resolve against, as given.
    pub scenario_file: PathBuf,
    pub base_dir: PathBuf,
    /// The scenario as swept: the file with `--set` applied, without `[sweep]`.
    pub scenario_toml: String,
    pub command: String,
    pub grid: Grid,
    pub objective: Objective,
    pub samples: Option<u64>,
    pub seed: u64,
    pub band: bool,
    pub walk_forward: Option<Folds>,
    /// Combinations of the whole sweep (after sampling), and how many this output holds.
    pub combinations: u64,
    pub finished: u64,
    pub interrupted: bool,
    pub shard: Option<Shard>,
    /// Filled in the final (unsharded or merged) output.
    pub results: Option<Results>,
    /// The digest of the `sweep.parquet` written with this file ([`table::digest`]): `report`
    /// refuses a table that does not belong to this `sweep.json`. Absent in a shard's file and
    /// in outputs of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_digest: Option<String>,
}

impl Meta {
    /// What must agree between the shards of one sweep.
    fn identity(&self) -> impl PartialEq + '_ {
        (
            &self.scenario_toml,
            &self.grid,
            self.objective,
            self.samples,
            self.seed,
            self.band,
            &self.walk_forward,
            self.combinations,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub best: Option<Picked>,
    pub robust: Option<Picked>,
    pub scenario: Picked,
    pub walk_forward: Option<WalkForward>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Picked {
    pub combo: Option<u64>,
    pub params: String,
    pub objective: Option<f64>,
    pub plateau: Option<f64>,
    pub metrics: Metrics,
}

/// How to run a sweep.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: PathBuf,
    pub set: Vec<String>,
    pub out: Option<PathBuf>,
    pub cli: CliSpec,
    pub shard: Option<Shard>,
    pub band: bool,
    /// The command line, recorded in `sweep.json` and the report.
    pub command: String,
}

/// What a sweep or merge did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub meta: Meta,
    /// The ten best cells, best first (empty for a shard).
    pub top: Vec<Picked>,
    /// Where the best cell lies on the edge of the grid (see [`robust::edges`]).
    pub edges: Vec<String>,
}

/// How many of the best cells the terminal shows.
pub const TOP: usize = 10;

/// The scenario table as swept: the file, `--set` applied, `[sweep]` removed.
fn base_table(path: &Path, set: &[String]) -> Result<toml::Table, SweepError> {
    let mut table = crate::scenario::read_table(path, set)?;
    table.remove("sweep");
    Ok(table)
}

/// Prepares a sweep: the scenario, the grid, the data (loaded once).
pub fn prepare(opts: &Options) -> Result<(Job, Spec, Vec<u64>, PathBuf), SweepError> {
    let scenario = Scenario::load(&opts.scenario, &opts.set)?;
    let spec = Spec::build(scenario.sweep.as_ref(), &opts.cli).map_err(SweepError::Spec)?;
    let base = base_table(&opts.scenario, &opts.set)?;
    let mut combos = spec.combos().map_err(SweepError::Spec)?;
    if let Some(shard) = opts.shard {
        combos = shard.take(&combos);
    }
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&scenario.name));
    // A grid whose results cannot fit fails now, not on a failed allocation at the end.
    let folds = spec.walk_forward.map_or(0, |k| k as usize + 1);
    memory::check(combos.len() as u64, folds, memory::available()?)?;
    // An unusable --out fails now, not after the whole grid has run.
    crate::backtest::output::check_out_dir(&dir)?;
    let job = Job::new(
        base,
        scenario,
        spec.grid.clone(),
        spec.objective,
        spec.walk_forward,
        opts.band,
    )?;
    // A bad key or value shows on the first combination: fail before the long run.
    if let Some(&c) = combos.first() {
        job.scenario_for(c)?;
    }
    Ok((job, spec, combos, dir))
}

/// Runs the sweep (or one shard of it) and writes its files. `stop` ends it early, keeping the
/// finished rows; `done` is called after each combination. The rows stream through a file in
/// the output folder ([`stream`]); a failed run leaves no file there (and no folder it made).
pub fn run(
    opts: &Options,
    prepared: (Job, Spec, Vec<u64>, PathBuf),
    stop: &AtomicBool,
    done: &(dyn Fn() + Sync),
) -> Result<Outcome, SweepError> {
    let fresh = !prepared.3.exists();
    let dir = prepared.3.clone();
    let result = run_into(opts, prepared, stop, done);
    if result.is_err() && fresh {
        // Only an empty folder goes: one the run made and left nothing in.
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

fn run_into(
    opts: &Options,
    prepared: (Job, Spec, Vec<u64>, PathBuf),
    stop: &AtomicBool,
    done: &(dyn Fn() + Sync),
) -> Result<Outcome, SweepError> {
    let (job, spec, combos, dir) = prepared;
    let folds = job.folds.as_ref().map_or(0, Folds::count);
    let dest = match opts.shard {
        Some(shard) => dir.join(format!("{}.parquet", shard_stem(shard))),
        None => dir.join(SPILL),
    };
    let mut spill = Spill::create(&dest, &spec.grid, folds)?;
    job.run_chunks(&combos, stop, done, &mut |rows| spill.push(rows))?;
    let finished = spill.rows() as u64;
    let spilled = spill.close()?;
    let total = spec.combos().map_err(SweepError::Spec)?.len() as u64;
    let meta = Meta {
        format: FORMAT,
        scenario: job.scenario.name.clone(),
        scenario_file: opts.scenario.clone(),
        base_dir: job.scenario.base_dir.clone(),
        scenario_toml: toml::to_string(&job.base).expect("a TOML table serialises"),
        command: opts.command.clone(),
        grid: spec.grid.clone(),
        objective: spec.objective,
        samples: spec.samples,
        seed: spec.seed,
        band: opts.band,
        walk_forward: job.folds.clone(),
        combinations: total,
        finished,
        interrupted: finished < combos.len() as u64,
        shard: opts.shard,
        results: None,
        parquet_digest: None,
    };
    match opts.shard {
        Some(shard) => write_shard(&dir, shard, &meta, spilled),
        None => finish(&job, meta, spilled, &dir),
    }
}

/// The rows of an unsharded run or a merge on their way to the final tables (a temporary file,
/// removed when they are written).
const SPILL: &str = "sweep-rows.parquet";

fn shard_stem(shard: Shard) -> String {
    format!("sweep-shard-{}-of-{}", shard.index, shard.count)
}

fn write_shard(
    dir: &Path,
    shard: Shard,
    meta: &Meta,
    spilled: Spilled,
) -> Result<Outcome, SweepError> {
    let stem = shard_stem(shard);
    let parquet = dir.join(format!("{stem}.parquet"));
    let json = dir.join(format!("{stem}.json"));
    let streamed = vec![(spilled.persist(), parquet.clone())];
    write_files_with(streamed, &[(json.clone(), json_bytes(meta))])?;
    Ok(Outcome {
        dir: dir.to_path_buf(),
        files: vec![parquet, json],
        meta: meta.clone(),
        top: Vec::new(),
        edges: Vec::new(),
    })
}

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).expect("serialises");
    s.push('\n');
    s.into_bytes()
}

/// The final output from all rows (on disk, their cells in memory): whole-grid columns, the
/// tables, `sweep.json` and the report's inputs (`report.json`; the command line then draws the
/// report from them).
pub fn finish(
    job: &Job,
    mut meta: Meta,
    spilled: Spilled,
    dir: &Path,
) -> Result<Outcome, SweepError> {
    let grid = &meta.grid;
    let cells = &spilled.cells;
    let plateau: Vec<Plateau> = robust::plateau(grid, cells);
    let best = robust::best_by(meta.objective, cells.iter().map(|r| r.objective));
    let most_robust = robust::best_by(meta.objective, plateau.iter().map(|p| p.score));
    let picked = |i: usize| -> Result<Picked, SweepError> {
        let row = spilled.row(i)?;
        Ok(Picked {
            combo: Some(row.combo),
            params: grid.describe(row.combo),
            objective: row.objective,
            plateau: plateau[i].score,
            metrics: row.metrics,
        })
    };
    let top = robust::top(meta.objective, cells, TOP)
        .into_iter()
        .map(picked)
        .collect::<Result<Vec<_>, _>>()?;
    let edges = best.map_or_else(Vec::new, |i| robust::edges(grid, cells[i].combo));
    let own = job.run_scenario_itself()?;
    let own_params = grid
        .axes
        .iter()
        .map(|a| format!("{}={}", a.key, value_at(&job.base, &a.key)))
        .collect::<Vec<_>>()
        .join(" ");
    let walk_forward = meta
        .walk_forward
        .as_ref()
        .map(|f| robust::walk_forward(grid, cells, &f.bounds, meta.objective));
    meta.results = Some(Results {
        best: best.map(picked).transpose()?,
        robust: most_robust.map(picked).transpose()?,
        scenario: Picked {
            combo: None,
            params: own_params.clone(),
            objective: meta.objective.of(&own),
            plateau: None,
            metrics: own,
        },
        walk_forward,
    });
    // The report's inputs: full runs of the picked parameters.
    let mut list = Vec::new();
    for (label, i) in [("best", best), ("robust", most_robust)] {
        if let Some(i) = i {
            list.push(picks::Pick {
                label,
                params: grid.describe(cells[i].combo),
                scenario: job.scenario_for(cells[i].combo)?,
            });
        }
    }
    list.push(picks::Pick {
        label: "scenario",
        params: own_params,
        scenario: job.scenario.clone(),
    });
    let data = picks::build(job, &list)?;
    let (streamed, digest) =
        spilled.write_final(&plateau, &dir.join("sweep.parquet"), &dir.join("sweep.csv"))?;
    meta.parquet_digest = Some(digest);
    let files = vec![
        (dir.join("sweep.json"), json_bytes(&meta)),
        (dir.join("report.json"), json_bytes(&data)),
    ];
    let mut written: Vec<PathBuf> = streamed.iter().map(|(_, p)| p.clone()).collect();
    write_files_with(streamed, &files)?;
    written.extend(files.into_iter().map(|(p, _)| p));
    Ok(Outcome {
        dir: dir.to_path_buf(),
        files: written,
        meta,
        top,
        edges,
    })
}

/// A key's value in the scenario table, as text (`-` when absent).
fn value_at(table: &toml::Table, key: &str) -> String {
    let mut t = table;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, k) in parts.iter().enumerate() {
        match t.get(*k) {
            Some(toml::Value::Table(next)) if i + 1 < parts.len() => t = next,
            Some(v) if i + 1 == parts.len() => {
                return match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
            }
            _ => break,
        }
    }
    "-".into()
}

/// Reads `sweep-shard-*-of-*.json` and their Parquet files from `dirs`, checks that they are
/// the shards of one sweep, each once, all complete, and writes the final output to `out` —
/// byte-identical tables to the unsharded run.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Outcome, SweepError> {
    let mut parts: Vec<(Meta, PathBuf)> = Vec::new();
    for d in dirs {
        let entries = std::fs::read_dir(d).map_err(|e| SweepError::Input {
            path: d.clone(),
            message: format!("cannot list: {e}"),
        })?;
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sweep-shard-") && n.ends_with(".json"))
            })
            .collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p).map_err(|e| SweepError::Input {
                path: p.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let meta: Meta = serde_json::from_str(&text).map_err(|e| SweepError::Input {
                path: p.clone(),
                message: format!("not a shard description: {e}"),
            })?;
            parts.push((meta, p));
        }
    }
    let Some((first, first_path)) = parts.first().cloned() else {
        return Err(SweepError::NoShards {
            dirs: dirs.to_vec(),
        });
    };
    let count = first
        .shard
        .map(|s| s.count)
        .ok_or_else(|| SweepError::Input {
            path: first_path.clone(),
            message: "not a shard (no shard field)".into(),
        })?;
    let mut seen = vec![None::<PathBuf>; count as usize];
    let folds = first.walk_forward.as_ref().map_or(0, Folds::count);
    for (meta, path) in &parts {
        if meta.format != FORMAT || meta.identity() != first.identity() {
            return Err(SweepError::Input {
                path: path.clone(),
                message: format!(
                    "belongs to another sweep than {} (scenario, grid or settings differ)",
                    first_path.display()
                ),
            });
        }
        let shard = meta
            .shard
            .filter(|s| s.count == count)
            .ok_or_else(|| SweepError::Input {
                path: path.clone(),
                message: format!("not one of {count} shards"),
            })?;
        if let Some(other) = &seen[shard.index as usize] {
            return Err(SweepError::Input {
                path: path.clone(),
                message: format!("shard {}/{count} also in {}", shard.index, other.display()),
            });
        }
        if meta.interrupted {
            return Err(SweepError::Input {
                path: path.clone(),
                message: format!(
                    "shard {}/{count} was interrupted ({} combinations finished): run it again",
                    shard.index, meta.finished
                ),
            });
        }
        seen[shard.index as usize] = Some(path.clone());
    }
    if let Some(k) = seen.iter().position(Option::is_none) {
        return Err(SweepError::MissingShard { index: k, count });
    }
    let spec = Spec {
        grid: first.grid.clone(),
        objective: first.objective,
        samples: first.samples,
        seed: first.seed,
        walk_forward: first.walk_forward.as_ref().map(|f| f.count() as u32 - 1),
    };
    let expected = spec.combos().map_err(SweepError::Spec)?;
    memory::check(expected.len() as u64, folds, memory::available()?)?;
    // Shard k holds every count-th combination from the k-th on: the merged rows, in
    // combination order, take one row from each shard in turn.
    let mut cursors: Vec<ShardRows> = seen
        .into_iter()
        .flatten()
        .map(|p| ShardRows::new(p.with_extension("parquet"), folds, count))
        .collect();
    let mut spill = Spill::create(&out.join(SPILL), &first.grid, folds)?;
    let mut batch = Vec::with_capacity(CHUNK.min(expected.len()));
    for (j, &combo) in expected.iter().enumerate() {
        let row = cursors[j % count as usize].next()?;
        if row.as_ref().map(|r| r.combo) != Some(combo) {
            return Err(SweepError::ShardRows);
        }
        batch.extend(row);
        if batch.len() == CHUNK {
            spill.push(std::mem::take(&mut batch))?;
        }
    }
    spill.push(batch)?;
    for c in &mut cursors {
        if c.next()?.is_some() {
            return Err(SweepError::ShardRows);
        }
    }
    let spilled = spill.close()?;
    let job = job_from_meta(&first, &first_path)?;
    let merge = format!(
        "trailstop merge {} --out {}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        out.display()
    );
    let meta = Meta {
        command: unsharded_command(&first.command, out).map_or(merge.clone(), |sweep| {
            format!("{sweep}\n# here as {count} shards (--shard K/{count}), merged by: {merge}")
        }),
        finished: expected.len() as u64,
        interrupted: false,
        shard: None,
        results: None,
        parquet_digest: None,
        ..first
    };
    finish(&job, meta, spilled, out)
}

/// A shard's rows, read a piece at a time.
struct ShardRows {
    path: PathBuf,
    folds: usize,
    /// Rows read per piece: one chunk's share, so all shards together hold about one chunk.
    piece: usize,
    next: usize,
    buf: std::collections::VecDeque<Row>,
    done: bool,
}

impl ShardRows {
    fn new(path: PathBuf, folds: usize, shards: u32) -> ShardRows {
        ShardRows {
            path,
            folds,
            piece: (CHUNK / shards as usize).max(1024),
            next: 0,
            buf: Default::default(),
            done: false,
        }
    }

    fn next(&mut self) -> Result<Option<Row>, SweepError> {
        if self.buf.is_empty() && !self.done {
            let df = table::read_parquet_slice(&self.path, Some((self.next, self.piece)))?;
            let rows = table::rows_from(&df, self.folds, &self.path)?;
            self.done = rows.len() < self.piece;
            self.next += rows.len();
            self.buf.extend(rows);
        }
        Ok(self.buf.pop_front())
    }
}

/// The unsharded sweep of a shard's command line (`trailstop sweep ... --shard K/N --out D`, as
/// `cli::sweep::command_line` quotes it): without `--shard`, into `out`. None for another command.
fn unsharded_command(shard: &str, out: &Path) -> Option<String> {
    // Shell words: split at spaces outside '...' (a backslash outside quotes escapes one char).
    let (mut words, mut word, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in shard.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !quoted => escaped = true,
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                words.push(std::mem::take(&mut word));
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    words.push(word);
    if words.len() < 2 || words[0] != "trailstop" || words[1] != "sweep" {
        return None;
    }
    let mut kept = Vec::new();
    let mut it = words.into_iter().filter(|w| !w.is_empty());
    while let Some(w) = it.next() {
        if w == "--shard" || w == "--out" {
            it.next();
        } else if !w.starts_with("--shard=") && !w.starts_with("--out=") {
            kept.push(w);
        }
    }
    let out = out.display().to_string();
    let plain = !out.is_empty()
        && out
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    kept.push("--out".into());
    kept.push(if plain {
        out
    } else {
        format!("'{}'", out.replace('\'', r"'\''"))
    });
    Some(kept.join(" "))
}

/// Rebuilds the sweep's job (scenario and data) from its description.
fn job_from_meta(meta: &Meta, path: &Path) -> Result<Job, SweepError> {
    let table: toml::Table =
        toml::from_str(&meta.scenario_toml).map_err(|e| SweepError::Input {
            path: path.to_path_buf(),
            message: format!("scenario_toml: {e}"),
        })?;
    let mut scenario: Scenario =
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| SweepError::Input {
                path: path.to_path_buf(),
                message: format!("scenario_toml: {e}"),
            })?;
    scenario.base_dir = meta.base_dir.clone();
    scenario.source = meta.scenario_file.clone();
    scenario.validate()?;
    let wf = meta.walk_forward.as_ref().map(|f| f.count() as u32 - 1);
    let job = Job::new(
        table,
        scenario,
        meta.grid.clone(),
        meta.objective,
        wf,
        meta.band,
    )?;
    if job.folds != meta.walk_forward {
        return Err(SweepError::Input {
            path: path.to_path_buf(),
            message: "the data's time span differs from the one the shards ran on".into(),
        });
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsharded_command_drops_the_shard_and_writes_into_the_merge() {
        let shard = r"trailstop sweep 'my scen.toml' --shard 3/16 --grid 'a=1,2' --out 'x y' --set 'n=it'\''s'";
        assert_eq!(
            unsharded_command(shard, Path::new("out dir")).as_deref(),
            Some(
                r"trailstop sweep 'my scen.toml' --grid 'a=1,2' --set 'n=it'\''s' --out 'out dir'"
            )
        );
        assert_eq!(
            unsharded_command(
                "trailstop sweep s.toml --out=o --shard=0/2 -q",
                Path::new("m")
            )
            .as_deref(),
            Some("trailstop sweep s.toml -q --out m")
        );
        assert_eq!(unsharded_command("made by a test", Path::new("m")), None);
    }
}
