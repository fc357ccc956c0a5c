//! Crash safety, end to end through the binary: `trailstop paper` is killed with SIGKILL at
//! random moments, 25 times, and restarted with the same command each time. After every kill:
//! the database opens, `PRAGMA integrity_check` is ok, every position's state row equals the
//! replay of its own journal, all open positions stand at the runner's committed clock (no
//! half-written market step is visible), and nothing the child reported as committed is lost.
//! Finally the run completes and its outputs are byte-identical to `trailstop backtest`.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trailstop::store::{OpenOptions, Store};

const BIN: &str = env!("CARGO_BIN_EXE_trailstop");
const KILLS: usize = 25;
/// A position every 10 minutes over the shipped day of 1m candles: 144 positions, 1440 steps.
const EVERY: &str = "entries.every=10m";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// xorshift64*: the kill delays (seeded, so a failure can be rerun with the same delays).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn paper(db: &Path, out: &Path, speed: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root()).args([
        "paper",
        "scenarios/quickstart.toml",
        "--set",
        EVERY,
        "--db",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--log-steps",
        "-q",
    ]);
    if let Some(s) = speed {
        cmd.args(["--speed", s]);
    }
    cmd
}

/// The last market index the child said it committed.
fn last_committed(log: &str) -> Option<usize> {
    log.lines()
        .filter_map(|l| l.strip_prefix("committed "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .next_back()
}

fn spawn(mut cmd: Command) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Drained on a thread so the child never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    (child, reader)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_resumes_to_the_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out, bt) = (
        dir.path().join("paper.sqlite"),
        dir.path().join("paper"),
        dir.path().join("backtest"),
    );
    let status = Command::new(BIN)
        .current_dir(root())
        .args([
            "backtest",
            "scenarios/quickstart.toml",
            "-q",
            "--set",
            EVERY,
        ])
        .arg("--out")
        .arg(&bt)
        .status()
        .unwrap();
    assert!(status.success());

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let (mut kills, mut mid_run, mut clock) = (0usize, 0usize, 0usize);
    let len = 1440usize;
    while kills < KILLS {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the kill loop is bounded in time"
        );
        // 12 ms of sleep per 1-minute bar: the whole day would take ~17 s, so every kill lands
        // mid-run: while loading, while sleeping, or inside a transaction.
        let (mut child, reader) = spawn(paper(&db, &out, Some("5000")));
        std::thread::sleep(Duration::from_millis(10 + rng.below(490)));
        if child.try_wait().unwrap().is_some() {
            panic!("the run finished before kill {kills}: slow it down");
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        kills += 1;
        let log = reader.join().unwrap();
        let reported = last_committed(&log);
        if !db.exists() {
            assert_eq!(
                reported, None,
                "kill {kills}: committed steps but no database"
            );
            continue;
        }
        let store = Store::open(
            &db,
            OpenOptions {
                create: false,
                ..OpenOptions::create()
            },
        )
        .unwrap_or_else(|e| panic!("kill {kills}: the database does not open: {e}"));
        assert_eq!(
            store.integrity_check().unwrap(),
            ["ok"],
            "kill {kills}: integrity_check"
        );
        store
            .verify()
            .unwrap_or_else(|e| panic!("kill {kills}: state vs journal: {e}"));
        let next: usize = store
            .meta("paper.next_index")
            .unwrap()
            .map_or(0, |s| s.parse().unwrap());
        if let Some(g) = reported {
            assert!(
                next > g,
                "kill {kills}: step {g} was reported committed, the database is at {next}"
            );
        }
        assert!(next >= clock, "kill {kills}: the clock went back");
        clock = next;
        for r in store.records().unwrap() {
            if r.closed().is_none() {
                // The paper driver's cursor, from its state blob.
                let driver: trailstop::backtest::replay::ReplayDriver =
                    serde_json::from_str(&r.driver).unwrap();
                assert_eq!(
                    driver.cursor.next,
                    next,
                    "kill {kills}: open position {} is not at the committed clock",
                    r.id()
                );
            }
        }
        if next > 0 && next < len {
            mid_run += 1;
        }
    }
    assert!(
        mid_run >= KILLS / 2,
        "only {mid_run} of {kills} kills hit a run in progress"
    );
    assert!(clock > 0, "the runs made progress");

    // Now let it finish: same command, at full speed.
    let status = paper(&db, &out, None)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let store = Store::open(&db, OpenOptions::read_only()).unwrap();
    assert_eq!(store.verify().unwrap(), 144);
    for f in ["trades.csv", "summary.json", "events.jsonl"] {
        let (a, b) = (
            std::fs::read(bt.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
        );
        assert!(
            a == b,
            "{f} differs from the backtest's after {kills} kills"
        );
    }
    let trades = std::fs::read_to_string(out.join("trades.csv")).unwrap();
    assert_eq!(trades.lines().count(), 145, "a header and 144 trades");
    eprintln!("{kills} kills, {mid_run} mid-run, clock at {clock} of {len} before the last run");
}
