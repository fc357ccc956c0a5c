//! Writes a backtest's files atomically: each to a temporary file in the target folder, then
//! renamed, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::record::TRADES_HEADER;
use super::{Report, Summary};
use crate::engine::Event;

/// The temporary sibling `path` is written to before its rename (`.<name>.tmp<PID>`).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    dir.join(format!(".{name}.tmp{}", std::process::id()))
}

/// Whether process `pid` is running (Linux `/proc`; elsewhere every process counts as running,
/// so nothing of another's is ever removed).
fn process_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the temporary files (`.<name>.tmp<PID>`, optionally with an extension after the PID)
/// that an interrupted write of `name` in `dir` left behind: those of processes no longer
/// running. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path, name: &str) -> usize {
    let prefix = format!(".{name}.tmp");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let digits = rest.split('.').next().unwrap_or("");
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id()
            && !process_alive(pid)
            && entry.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
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

/// An output folder that cannot take the files.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    #[error("{path}: not a folder (it, or a folder above it, is a file); give --out a folder")]
    NotAFolder { path: PathBuf },
    #[error("{path}: cannot write into {} ({cause})", .place.display())]
    CannotWrite {
        path: PathBuf,
        /// The folder the probe was written in: `path`, or its nearest existing parent.
        place: PathBuf,
        cause: std::io::Error,
    },
}

/// Proves that the output folder `dir` can take files before a long run: it, or the nearest
/// folder above it that exists (where it will be created), is a folder and takes a probe file,
/// removed at once. Nothing is left behind, so a run refused later leaves no empty folder.
pub fn check_out_dir(dir: &Path) -> Result<(), OutDirError> {
    let path = dir.to_path_buf();
    let place = dir
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.exists())
        .unwrap_or(Path::new("."));
    if !place.is_dir() {
        return Err(OutDirError::NotAFolder { path });
    }
    let probe = place.join(format!(".trailstop-probe.tmp{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| f.write_all(b"probe"));
    let _ = std::fs::remove_file(&probe);
    written.map_err(|cause| OutDirError::CannotWrite {
        path,
        place: place.to_path_buf(),
        cause,
    })
}

/// Writes `bytes` to `path` via a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_files(&[(path.to_path_buf(), bytes.to_vec())])
}

/// Writes every file to a temporary sibling first and renames them only once all are written,
/// so a failure leaves none of them half-written or out of step. Errors name the file.
pub fn write_files(files: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    write_files_with(Vec::new(), files)
}

/// As [`write_files`], with files already written to temporary siblings (`(temporary,
/// final)`, as a stream writes them): all are renamed together once everything is written; on
/// a failure every temporary file is removed.
pub fn write_files_with(
    streamed: Vec<(PathBuf, PathBuf)>,
    files: &[(PathBuf, Vec<u8>)],
) -> std::io::Result<()> {
    let named = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    // A rename onto a folder fails: find that before anything is replaced.
    let destinations = streamed
        .iter()
        .map(|(_, p)| p)
        .chain(files.iter().map(|(p, _)| p));
    if let Some(path) = destinations.clone().find(|p| p.is_dir()) {
        for (tmp, _) in &streamed {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(named(
            path,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder"),
        ));
    }
    let mut temps: Vec<(PathBuf, &PathBuf)> =
        streamed.iter().map(|(t, p)| (t.clone(), p)).collect();
    for (path, bytes) in files {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            remove_stale_temps(dir, name);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_writes_temporary_files_are_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        // A PID above Linux's pid_max (4194304) is never a running process.
        let dead = dir.path().join(".events.jsonl.tmp4294967");
        let dead_png = dir.path().join(".heatmap.tmp4294967.png");
        let ours = dir
            .path()
            .join(format!(".events.jsonl.tmp{}", std::process::id()));
        let other_name = dir.path().join(".notes.txt.tmp4294967");
        for f in [&dead, &dead_png, &ours, &other_name] {
            std::fs::write(f, b"partial").unwrap();
        }
        write_atomic(&dir.path().join("events.jsonl"), b"{}\n").unwrap();
        assert!(!dead.exists(), "a dead process's temporary file is removed");
        assert!(!ours.exists(), "our own temporary file became events.jsonl");
        assert!(
            dead_png.exists() && other_name.exists(),
            "other names are left alone"
        );
        assert_eq!(remove_stale_temps(dir.path(), "heatmap"), 1);
        assert!(!dead_png.exists());
        // A running process's (this test's parent, PID 1's) temporary file stays.
        let live = dir.path().join(".events.jsonl.tmp1");
        std::fs::write(&live, b"partial").unwrap();
        assert_eq!(remove_stale_temps(dir.path(), "events.jsonl"), 0);
        assert!(live.exists());
        assert_eq!(
            std::fs::read(dir.path().join("events.jsonl")).unwrap(),
            b"{}\n"
        );
    }

    /// A full disk (the temporary file is `/dev/full`): the error names the file the write was
    /// for, says the cause once, and leaves nothing behind.
    #[test]
    fn a_full_disk_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("heatmap.png");
        std::os::unix::fs::symlink("/dev/full", temp_path(&target)).unwrap();
        let e = write_files(&[
            (dir.path().join("sweep.csv"), b"a\n".to_vec()),
            (target.clone(), vec![0; 4096]),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: ", target.display())),
            "{text}"
        );
        assert_eq!(text.matches("No space left on device").count(), 1, "{text}");
        assert!(!dir.path().join("sweep.csv").exists(), "nothing renamed");
    }

    #[test]
    fn the_out_folder_is_checked_without_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        check_out_dir(&deep).unwrap();
        assert!(!dir.path().join("a").exists(), "nothing is created");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no probe left"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for bad in [file.clone(), file.join("below")] {
            let e = check_out_dir(&bad).unwrap_err();
            assert!(matches!(e, OutDirError::NotAFolder { .. }), "{e}");
            assert!(e.to_string().starts_with(&bad.display().to_string()), "{e}");
        }
    }
}
