//! Writes a backtest's files atomically: each to a temporary file in the target folder, then
//! renamed, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Report;
use super::record::TRADES_HEADER;
use crate::engine::Event;

/// Writes `bytes` to `path` via a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

/// Writes `trades.csv`, `summary.json` and `events.jsonl` into `dir`; returns their paths.
pub fn write_all(dir: &Path, report: &Report) -> std::io::Result<Vec<PathBuf>> {
    let files = [
        ("trades.csv", trades_csv(report)),
        (
            "summary.json",
            serde_json::to_string_pretty(&report.summary).expect("summary serialises") + "\n",
        ),
        ("events.jsonl", events_jsonl(report)),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        write_atomic(&p, text.as_bytes())?;
        paths.push(p);
    }
    Ok(paths)
}
