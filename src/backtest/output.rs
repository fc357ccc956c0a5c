//! Writes a backtest's files atomically: each to a temporary file in the target folder, then
//! renamed, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::record::TRADES_HEADER;
use super::{Report, Summary};
use crate::engine::Event;

fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    dir.join(format!(".{name}.tmp{}", std::process::id()))
}

fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` via a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_files(&[(path.to_path_buf(), bytes.to_vec())])
}

/// Writes every file to a temporary sibling first and renames them only once all are written,
/// so a failure leaves none of them half-written or out of step. Errors name the file.
pub fn write_files(files: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    let named = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    // A rename onto a folder fails: find that before anything is replaced.
    if let Some((path, _)) = files.iter().find(|(p, _)| p.is_dir()) {
        return Err(named(
            path,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder"),
        ));
    }
    let mut temps = Vec::new();
    for (path, bytes) in files {
        let dir = path.parent().unwrap_or(Path::new("."));
        let written = std::fs::create_dir_all(dir).and_then(|()| write_temp(path, bytes));
        match written {
            Ok(tmp) => temps.push((tmp, path)),
            Err(e) => {
                for (tmp, _) in &temps {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(named(path, e));
            }
        }
    }
    for (i, (tmp, path)) in temps.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            for (t, _) in &temps[i..] {
                let _ = std::fs::remove_file(t);
            }
            return Err(named(path, e));
        }
    }
    Ok(())
}

pub fn trades_csv(report: &Report) -> String {
    let mut s = String::with_capacity(64 + report.rows.len() * 160);
    s.push_str(TRADES_HEADER);
    s.push('\n');
    for r in &report.rows {
        s.push_str(&r.csv_line());
        s.push('\n');
    }
    s
}

#[derive(Serialize)]
struct Line<'a> {
    position_id: u64,
    #[serde(flatten)]
    event: &'a Event,
}

pub fn events_jsonl(report: &Report) -> String {
    let mut s = String::new();
    for (id, events) in &report.events {
        for event in events {
            let line = Line {
                position_id: *id,
                event,
            };
            s.push_str(&serde_json::to_string(&line).expect("events serialise"));
            s.push('\n');
        }
    }
    s
}

/// `summary.json`'s text.
pub fn summary_json(summary: &Summary) -> String {
    serde_json::to_string_pretty(summary).expect("summary serialises") + "\n"
}

/// Writes `trades.csv`, `summary.json` and `events.jsonl` into `dir`; returns their paths.
pub fn write_all(dir: &Path, report: &Report) -> std::io::Result<Vec<PathBuf>> {
    let files = [
        ("trades.csv", trades_csv(report)),
        ("summary.json", summary_json(&report.summary)),
        ("events.jsonl", events_jsonl(report)),
    ];
    let files: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|(name, text)| (dir.join(name), text.into_bytes()))
        .collect();
    write_files(&files)?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
