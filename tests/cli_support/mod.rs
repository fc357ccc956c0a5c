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
