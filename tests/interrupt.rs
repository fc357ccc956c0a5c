//! Ctrl-C exits 130 (issue 9): at once for a command that only reads or that resumes (`paper`),
//! after saving the finished rows for `sweep` (tests/sweep.rs).

mod cli_support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use cli_support::{QUICKSTART, root};

fn spawn<A: AsRef<std::ffi::OsStr>>(args: &[A]) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("trailstop"))
        .current_dir(root())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends SIGINT once the process had time to install its handler; returns its exit code.
fn interrupt(child: Child) -> Option<i32> {
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    out.status.code()
}

#[test]
fn ctrl_c_during_a_trace_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody writes: the trace waits for its prices until interrupted.
    let fifo = dir.path().join("prices");
    let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let fifo = fifo.to_str().unwrap();
    let child = spawn(&[
        "trace",
        fifo,
        "--tick-size",
        "0.01",
        "--set",
        "distance_percent=0.5",
    ]);
    assert_eq!(interrupt(child), Some(130));
}

#[test]
fn ctrl_c_during_paper_exits_130_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("paper.db");
    let out = dir.path().join("out");
    let (db_s, out_s) = (db.to_str().unwrap(), out.to_str().unwrap());
    let args = |speed| {
        [
            "paper", QUICKSTART, "--db", db_s, "--out", out_s, "--speed", speed, "-q",
        ]
    };
    // 1,440 minutes at 600x: a few minutes, interrupted after a second and a half.
    assert_eq!(interrupt(spawn(&args("600"))), Some(130));
    assert!(db.exists(), "the run was under way");
    let done = spawn(&args("1000000000")).wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(out.join("trades.csv").exists());
}
