//! What the CLI tests share: the package root, the binary run from it, and a failing run's
//! stderr.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::Path;

use assert_cmd::Command;

pub const QUICKSTART: &str = "scenarios/quickstart.toml";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, run from the package root (the README's paths are relative to it).
pub fn trailstop() -> Command {
    let mut cmd = Command::cargo_bin("trailstop").unwrap();
    cmd.current_dir(root());
    cmd
}

/// Runs a command that must fail (exit code 1: an error, not a panic or a usage error) and
/// returns its stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.assert().code(1).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains("panicked"),
        "an error, not a panic:\n{stderr}"
    );
    stderr
}

/// Copies the folder `from` into `to` (created), files and subfolders.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs a command, expects exit `code` and no panic, and returns its stdout and stderr.
pub fn run_code(cmd: &mut Command, code: i32) -> (String, String) {
    let out = cmd.assert().code(code).get_output().clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    (stdout, stderr)
}
