//! `trailstop trace` reads its prices from a pipe: `/dev/stdin` or a FIFO, read once (issue 9).

mod cli_support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use cli_support::{root, trailstop};

const ARGS: [&str; 6] = [
    "--side",
    "long",
    "--tick-size",
    "0.01",
    "--set",
    "distance_percent=0.5",
];

fn trace_of_file(file: &str) -> String {
    let out = trailstop()
        .arg("trace")
        .arg(file)
        .args(ARGS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn trace_reads_dev_stdin() {
    for file in [
        "tests/fixtures/cli/trace_long.csv",
        "data/BTCBUSD-1m-20221213.csv",
    ] {
        let expected = trace_of_file(file);
        assert!(expected.lines().count() > 2, "{expected}");
        let bytes = std::fs::read(root().join(file)).unwrap();
        let out = trailstop()
            .args(["trace", "/dev/stdin"])
            .args(ARGS)
            .write_stdin(bytes)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{file}");
    }
}

#[test]
fn trace_reads_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("prices");
    let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let file = "tests/fixtures/cli/trace_long.csv";
    let bytes = std::fs::read(root().join(file)).unwrap();
    let writer = {
        let fifo = fifo.clone();
        // Opening a FIFO for writing waits for its reader: the trace below.
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    let out = trailstop()
        .arg("trace")
        .arg(&fifo)
        .args(ARGS)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), trace_of_file(file));
}

#[test]
fn an_empty_pipe_says_so() {
    let out = trailstop()
        .args(["trace", "/dev/stdin"])
        .args(ARGS)
        .write_stdin(Vec::new())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/dev/stdin: the file is empty"), "{err}");
}
