//! `trailstop paper` and `trailstop state` through the binary: paper equals backtest byte for
//! byte (candles, trade ticks, candles with detail), a finished run is idempotent, the state
//! listing agrees with the backtest's own outputs, a config change on restart is shown and
//! applied by the documented rule, and every kind of bad database is refused untouched.
//! (Killing it mid-run: `tests/paper_crash.rs`.)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use trailstop::runner::Input;
use trailstop::store::{OpenOptions, RowKind, Store};

const BIN: &str = env!("CARGO_BIN_EXE_trailstop");
const QUICKSTART: &str = "scenarios/quickstart.toml";
const ETH_TRADES: &str = "data/ETHUSDT-usdm-trades-20240808.csv";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn trailstop(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root()).args(args);
    cmd
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs and expects success; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects an error (exit 1, no panic, nothing on stdout); returns stderr.
fn err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "an error, not a panic: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{cmd:?} printed to stdout");
    stderr
}

fn backtest(scenario: &str, out: &Path, sets: &[&str]) {
    let mut cmd = trailstop(&["backtest", scenario, "-q", "--out", p(out)]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    ok(&mut cmd);
}

fn paper(scenario: &str, db: &Path, out: &Path, sets: &[&str]) -> Command {
    let mut cmd = trailstop(&["paper", scenario, "--db", p(db), "--out", p(out)]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

fn assert_same_outputs(a: &Path, b: &Path, what: &str) {
    for f in ["trades.csv", "summary.json", "events.jsonl"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{what}: {f} differs between paper and backtest");
    }
}

/// 5-second candles built from the shipped ETHUSDT trades (so the trades can be their detail).
fn eth_scenarios(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(root().join(ETH_TRADES)).unwrap();
    let mut bars: BTreeMap<i64, [Decimal; 4]> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let t: i64 = f.next().unwrap().parse().unwrap();
        let price = Decimal::from_str(f.next().unwrap()).unwrap();
        let b = bars.entry(t / 5000 * 5000).or_insert([price; 4]);
        b[1] = b[1].max(price);
        b[2] = b[2].min(price);
        b[3] = price;
    }
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for (t, [o, h, l, c]) in &bars {
        csv.push_str(&format!("{t},{o},{h},{l},{c},1\n"));
    }
    std::fs::write(dir.join("eth-5s.csv"), csv).unwrap();
    let trades = root().join(ETH_TRADES);
    let rest = r#"
[entries]
every = "20s"
side = "alternate"
[exchange]
venue = "binance"
taker_fee = "0.0004"
slippage_bps = "1"
update_latency_ms = 300
[trailing]
activation_percent = "0.02"
distance_percent = "0.03"
initial_stop_percent = "0.1"
[trailing.rate_limit]
min_interval_seconds = 5
[trailing.momentum]
window_seconds = 10
threshold_percent = "0.02"
distance_factor = "0.5"
"#;
    let ticks = dir.join("eth-ticks.toml");
    std::fs::write(
        &ticks,
        format!(
            "name = \"eth-ticks\"\n[data]\ntrades = {:?}\nsymbol = \"ETHUSDT\"\ntick_size = \"0.01\"\n{rest}",
            p(&trades)
        ),
    )
    .unwrap();
    let detail = dir.join("eth-detail.toml");
    std::fs::write(
        &detail,
        format!(
            "name = \"eth-detail\"\n[data]\ncandles = \"eth-5s.csv\"\ndetail = {:?}\n\
             symbol = \"ETHUSDT\"\ntick_size = \"0.01\"\n{rest}",
            p(&trades)
        ),
    )
    .unwrap();
    (ticks, detail)
}

fn journal_rows(db: &Path) -> i64 {
    let store = Store::open(db, OpenOptions::read_only()).unwrap();
    store
        .conn()
        .query_row("SELECT COUNT(*) FROM trailing_stop_events", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn paper_equals_backtest_on_candles_ticks_and_detail() {
    let dir = tempfile::tempdir().unwrap();
    let (ticks, detail) = eth_scenarios(dir.path());
    let cases: [(&str, &str, &[&str]); 4] = [
        ("quickstart", QUICKSTART, &[]),
        (
            "quickstart bybit adaptive",
            QUICKSTART,
            &[
                "exchange.venue=bybit",
                "intrabar.policy=adaptive",
                "entries.every=25m",
            ],
        ),
        ("trade ticks", p(&ticks), &[]),
        ("candles with trade detail", p(&detail), &[]),
    ];
    for (i, (what, scenario, sets)) in cases.into_iter().enumerate() {
        let (bt, out, db) = (
            dir.path().join(format!("bt{i}")),
            dir.path().join(format!("paper{i}")),
            dir.path().join(format!("db{i}.sqlite")),
        );
        backtest(scenario, &bt, sets);
        let stdout = ok(&mut paper(scenario, &db, &out, sets));
        assert!(stdout.contains("new run"), "{what}: {stdout}");
        assert_same_outputs(&bt, &out, what);
        let trades = std::fs::read_to_string(bt.join("trades.csv")).unwrap();
        assert!(trades.lines().count() > 5, "{what}: a few trades at least");
        let verified = ok(&mut trailstop(&["state", "--db", p(&db), "--verify"]));
        assert!(
            verified.contains(&format!("{} positions rebuilt", trades.lines().count() - 1)),
            "{what}: {verified}"
        );
        // Started again on a finished run: nothing is replayed, the outputs are the same.
        let rows = journal_rows(&db);
        std::fs::remove_dir_all(&out).unwrap();
        let stdout = ok(&mut paper(scenario, &db, &out, sets));
        assert!(stdout.contains("resuming"), "{what}: {stdout}");
        assert_eq!(
            journal_rows(&db),
            rows,
            "{what}: a finished run adds nothing"
        );
        assert_same_outputs(&bt, &out, what);
    }
}

#[test]
fn detail_bars_are_journalled_as_the_trades_they_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, detail) = eth_scenarios(dir.path());
    let (db, out) = (dir.path().join("db.sqlite"), dir.path().join("out"));
    ok(&mut paper(p(&detail), &db, &out, &[]));
    // The trades, in units of the instrument (2 decimals).
    let text = std::fs::read_to_string(root().join(ETH_TRADES)).unwrap();
    let trades: std::collections::BTreeSet<(i64, i64)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let mut f = line.split(',');
            let t: i64 = f.next().unwrap().parse().unwrap();
            let price = Decimal::from_str(f.next().unwrap()).unwrap() * Decimal::from(100);
            (t, i64::try_from(price).unwrap())
        })
        .collect();
    let store = Store::open(&db, OpenOptions::read_only()).unwrap();
    let mut points = 0;
    for id in store.journal_ids().unwrap() {
        for row in store.journal(id).unwrap() {
            if row.kind != RowKind::Input {
                continue;
            }
            let pts = match serde_json::from_str(&row.payload).unwrap() {
                Input::Price { ts, price } => vec![(ts, price)],
                Input::Prices { points } => points,
                _ => continue,
            };
            for (ts, price) in pts {
                points += 1;
                assert!(
                    trades.contains(&(ts, price)),
                    "position {id}: price point {price} at {ts} is one of the trades"
                );
            }
        }
    }
    // Trade ticks as detail replay every bar (DESIGN §3): the journal holds their points, not
    // the candles'.
    assert!(points > 100, "{points} price points");
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn state_lists_positions_and_events_as_the_backtest_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out, bt) = (
        dir.path().join("db.sqlite"),
        dir.path().join("out"),
        dir.path().join("bt"),
    );
    backtest(QUICKSTART, &bt, &[]);
    ok(&mut paper(QUICKSTART, &db, &out, &[]));
    let trades = std::fs::read_to_string(bt.join("trades.csv")).unwrap();
    let rows: Vec<Vec<&str>> = trades
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();

    let table = ok(&mut trailstop(&["state", "--db", p(&db)]));
    assert!(
        table.contains("12 positions (0 open, 12 closed)"),
        "{table}"
    );
    for r in &rows {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(r[0]))
            .unwrap_or_else(|| panic!("position {} listed:\n{table}", r[0]));
        assert!(line.contains(&format!("closed:{}", r[6])), "{line}");
        assert!(line.contains(r[3]), "entry price in {line}");
    }

    let listing: Value =
        serde_json::from_str(&ok(&mut trailstop(&["state", "--db", p(&db), "--json"]))).unwrap();
    assert_eq!(listing["schema_version"], 2);
    assert_eq!(listing["paper_next_index"], 1440);
    let positions = listing["positions"].as_array().unwrap();
    assert_eq!(positions.len(), rows.len());
    for (pos, r) in positions.iter().zip(&rows) {
        assert_eq!(pos["position_id"].to_string(), r[0]);
        assert_eq!(pos["side"], r[1]);
        assert_eq!(pos["entry_price"], r[3]);
        assert_eq!(pos["exit_reason"], r[6]);
        assert_eq!(pos["state"], "triggered");
        assert_eq!(pos["stop_updates"].to_string(), r[11]);
        assert_eq!(pos["updates_held"].to_string(), r[12]);
        assert_eq!(pos["ambiguous_bars"].to_string(), r[15]);
        // The client order id counts the sends.
        assert_eq!(pos["exchange_order_id"], format!("ts-{}-{}", r[0], r[11]));
    }

    // One position's journal: its inputs, and its events exactly as events.jsonl has them.
    let backtest_events: Vec<Value> =
        jsonl(&std::fs::read_to_string(bt.join("events.jsonl")).unwrap())
            .into_iter()
            .filter(|e| e["position_id"] == 3)
            .map(|mut e| {
                e.as_object_mut().unwrap().remove("position_id");
                e
            })
            .collect();
    let journal = jsonl(&ok(&mut trailstop(&[
        "state",
        "--db",
        p(&db),
        "--events",
        "3",
        "--json",
    ])));
    assert_eq!(journal[0]["kind"], "input");
    assert_eq!(journal[0]["payload"]["type"], "open");
    let seqs: Vec<u64> = journal.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=journal.len() as u64).collect::<Vec<_>>());
    let events: Vec<Value> = journal
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| l["payload"].clone())
        .collect();
    assert_eq!(events, backtest_events);
    // Every step opens with an input, and the inputs are the runner's: price points and the
    // venue's answers, never a bar.
    let steps = journal.last().unwrap()["step"].as_u64().unwrap();
    for s in 1..=steps {
        let first = journal.iter().find(|l| l["step"] == s).unwrap();
        assert_eq!(first["kind"], "input", "step {s} opens with an input");
    }
    let kinds: std::collections::BTreeSet<&str> = journal
        .iter()
        .filter(|l| l["kind"] == "input")
        .map(|l| l["payload"]["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.is_subset(&["open", "price", "prices", "venue", "close"].into()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains("prices") && kinds.contains("venue"),
        "{kinds:?}"
    );

    let text = ok(&mut trailstop(&["state", "--db", p(&db), "--events", "3"]));
    assert_eq!(text.lines().count(), journal.len());
    assert!(
        text.contains("StopRaised")
            && text.contains("▶ price")
            && text.contains("▶ venue:accepted"),
        "{text}"
    );

    let e = err(&mut trailstop(&["state", "--db", p(&db), "--events", "99"]));
    assert!(e.contains("no position 99") && e.contains("1..=12"), "{e}");
}

/// `(price, from, to)` of the journal's trailing `StopRaised` events after `from_seq`, but the
/// first one of each position: that one comes with the activation, when the extreme may be an
/// earlier price; every later one (no momentum here) comes at a new extreme, the point itself.
fn trailing_raises(store: &Store, id: u64, from_seq: u64) -> Vec<(Decimal, Decimal, Decimal)> {
    let all: Vec<Value> = store
        .journal(id)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == RowKind::Event)
        .map(|r| {
            let mut v: Value = serde_json::from_str(&r.payload).unwrap();
            v["seq"] = r.seq.into();
            v
        })
        .filter(|v| v["type"] == "StopRaised" && v["origin"] == "trailing")
        .collect();
    all.iter()
        .skip(1)
        .filter(|v| v["seq"].as_u64().unwrap() > from_seq)
        .map(|v| {
            let d = |k: &str| Decimal::from_str(v[k].as_str().unwrap()).unwrap();
            (d("price"), d("from"), d("to"))
        })
        .collect()
}

#[test]
fn config_change_on_restart_is_shown_and_never_loosens_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("db.sqlite"), dir.path().join("out"));
    let sets = ["entries.every=10m"];
    // Run until market step 400 is committed, then kill it.
    let mut child = paper(QUICKSTART, &db, &out, &sets)
        .args(["--log-steps", "-q", "--speed", "20000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        let g: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
        if g >= 400 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before: BTreeMap<u64, _> = {
        let store = Store::open(&db, OpenOptions::read_only()).unwrap();
        store
            .records()
            .unwrap()
            .into_iter()
            .map(|r| (r.id(), r))
            .collect()
    };
    let open_before: Vec<u64> = before
        .values()
        .filter(|r| r.closed().is_none())
        .map(|r| r.id())
        .collect();
    assert!(open_before.len() >= 3, "positions were open at the kill");

    let stdout = ok(&mut paper(
        QUICKSTART,
        &db,
        &out,
        &[
            "entries.every=10m",
            "trailing.distance_percent=0.5",
            "trailing.activation_percent=0.1",
        ],
    ));
    assert!(
        stdout.contains("trailing.distance_percent: 0.25 → 0.5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("trailing.activation_percent: 0.3 → 0.1"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "applied to {} open position(s)",
            open_before.len()
        )),
        "{stdout}"
    );
    ok(&mut trailstop(&["state", "--db", p(&db), "--verify"]));

    let store = Store::open(&db, OpenOptions::read_only()).unwrap();
    let tick = Decimal::from_str("0.01").unwrap();
    let mut checked_raises = 0;
    for id in &open_before {
        let old = &before[id];
        let journal = store.journal(*id).unwrap();
        let change = journal
            .iter()
            .find(|r| r.kind == RowKind::Input && r.payload.contains("config_changed"))
            .unwrap_or_else(|| panic!("position {id} journals the change"));
        assert_eq!(change.step, old.version + 1, "the change is the next step");
        // The stop never loosens: the desired and sent stops survive the change as they were.
        let rows: Vec<_> = journal
            .iter()
            .filter(|r| r.step <= change.step)
            .cloned()
            .collect();
        let after = trailstop::store::rebuild(&rows).unwrap().runner;
        assert_eq!(after.engine.desired, old.engine().desired);
        assert_eq!(after.engine.sent, old.engine().sent);
        assert_eq!(after.engine.config.distance_percent, Decimal::new(5, 1));
        // Future moves use the new distance: a trailing raise at a new extreme p is
        // p * (1 - 0.5/100) rounded down (long) or p * (1 + 0.5/100) rounded up (short).
        let long = old.side() == trailstop::engine::Side::Long;
        for (price, from, to) in trailing_raises(&store, *id, change.seq) {
            let (factor, rounding) = if long {
                (Decimal::new(995, 3), RoundingStrategy::ToNegativeInfinity)
            } else {
                (Decimal::new(1005, 3), RoundingStrategy::ToPositiveInfinity)
            };
            let expected = (price * factor / tick).round_dp_with_strategy(0, rounding) * tick;
            assert_eq!(to, expected, "position {id}: raise at {price}");
            assert!(if long { to > from } else { to < from }, "ratchet");
            checked_raises += 1;
        }
    }
    assert!(
        checked_raises > 0,
        "some open position trailed after the change"
    );
    // Closed positions keep the config they ran with.
    for r in store.records().unwrap() {
        let d = r.engine().config.distance_percent.to_string();
        if open_before.contains(&r.id()) || !before.contains_key(&r.id()) {
            assert_eq!(d, "0.5", "position {}", r.id());
        } else {
            assert_eq!(d, "0.25", "position {}", r.id());
        }
    }
}

#[test]
fn a_run_of_another_scenario_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("db.sqlite"), dir.path().join("out"));
    ok(&mut paper(QUICKSTART, &db, &out, &[]));
    let bytes = std::fs::read(&db).unwrap();
    let e = err(&mut paper(QUICKSTART, &db, &out, &["entries.every=3h"]));
    assert!(
        e.contains("another scenario") && e.contains("entries.every: 2h → 3h"),
        "{e}"
    );
    let e = err(&mut paper(QUICKSTART, &db, &out, &["exchange.venue=bybit"]));
    assert!(e.contains("exchange.venue: binance → bybit"), "{e}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

// ---------------------------------------------------------------------------------------------
// bad databases: a clear error and nothing changed

/// The folder's files with their sizes and content hashes.
fn snapshot(dir: &Path) -> BTreeMap<String, (usize, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (bytes.len(), trailstop::store::fnv1a(&bytes)),
            )
        })
        .collect()
}

/// A finished paper run's database in a folder of its own.
fn finished_db(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let db = dir.join("db.sqlite");
    ok(paper(QUICKSTART, &db, &dir.join("out"), &[]).arg("-q"));
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    db
}

fn refuses(db: &Path, needles: &[&str]) {
    let dir = db.parent().unwrap();
    let before = snapshot(dir);
    let out = dir.join("out");
    for mut cmd in [
        paper(QUICKSTART, db, &out, &[]),
        trailstop(&["state", "--db", p(db)]),
    ] {
        let e = err(&mut cmd);
        for n in needles {
            assert!(e.contains(n), "{cmd:?} should say {n:?}: {e}");
        }
        assert!(e.contains(p(db)), "the error names the file: {e}");
        assert!(e.contains("nothing was"), "{e}");
        assert_eq!(snapshot(dir), before, "{cmd:?} changed the folder");
    }
}

#[test]
fn missing_database_is_an_error_for_state_and_created_by_paper_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.sqlite");
    let e = err(&mut trailstop(&["state", "--db", p(&db)]));
    assert!(e.contains("no database") && e.contains(p(&db)), "{e}");
    assert!(!db.exists(), "state created nothing");
    let e = err(&mut paper(
        QUICKSTART,
        &dir.path().join("no/such/folder/db.sqlite"),
        &dir.path().join("out"),
        &[],
    ));
    assert!(e.contains("does not exist"), "{e}");
    assert!(!dir.path().join("no").exists());
}

#[test]
fn corrupt_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage/db.sqlite");
    std::fs::create_dir_all(garbage.parent().unwrap()).unwrap();
    std::fs::write(&garbage, "this is not a database, just text\n".repeat(200)).unwrap();
    refuses(&garbage, &["not a trailstop database, or corrupt"]);

    // A real trailstop database with a damaged page.
    let db = finished_db(&dir.path().join("damaged"));
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 3 * 4096);
    for b in &mut bytes[2 * 4096..2 * 4096 + 200] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    refuses(&db, &["corrupt"]);

    // Another program's SQLite database.
    let other = dir.path().join("other/db.sqlite");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE orders (id INTEGER); INSERT INTO orders VALUES (1);")
        .unwrap();
    drop(conn);
    refuses(&other, &["not a trailstop database", "orders"]);
}

#[test]
fn newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_db(&dir.path().join("newer"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    refuses(&db, &["schema version 99 is newer", "(2)"]);
}

#[test]
fn read_only_database_is_refused_for_writing_and_still_readable() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_db(&dir.path().join("ro"));
    let before = snapshot(db.parent().unwrap());
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).unwrap();
    let e = err(&mut paper(QUICKSTART, &db, &dir.path().join("out"), &[]));
    assert!(e.contains("read-only") && e.contains(p(&db)), "{e}");
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(!dir.path().join("out").exists(), "no outputs either");
    let listing = ok(&mut trailstop(&["state", "--db", p(&db)]));
    assert!(listing.contains("12 positions"), "{listing}");
    // The database file is as it was. Reading a WAL database through a read-only file needs
    // SQLite's shared-memory index beside it, which SQLite may leave there (with an empty WAL).
    let mut after = snapshot(db.parent().unwrap());
    after.remove("db.sqlite-shm");
    if let Some((len, _)) = after.remove("db.sqlite-wal") {
        assert_eq!(len, 0, "no WAL frames written");
    }
    assert_eq!(after, before);
}

#[test]
fn locked_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_db(&dir.path().join("locked"));
    let before = snapshot(db.parent().unwrap());
    // Another process holds the database exclusively (as an exclusive-mode writer would).
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder
        .pragma_update(None, "locking_mode", "EXCLUSIVE")
        .unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for mut cmd in [
        paper(QUICKSTART, &db, &dir.path().join("out"), &[]),
        trailstop(&["state", "--db", p(&db)]),
    ] {
        let e = err(&mut cmd);
        assert!(e.contains("locked by another process"), "{e}");
        assert!(
            e.contains(p(&db)) && e.contains("nothing was changed"),
            "{e}"
        );
    }
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(snapshot(db.parent().unwrap()), before);
    // Released, it opens again.
    ok(&mut trailstop(&["state", "--db", p(&db), "--verify"]));
}

#[test]
fn bad_arguments_fail_before_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    for speed in ["0", "-2", "NaN"] {
        let e =
            err(paper(QUICKSTART, &db, &dir.path().join("out"), &[])
                .arg(format!("--speed={speed}")));
        assert!(e.contains("--speed"), "{e}");
    }
    let e = err(&mut paper(
        "tests/fixtures/cli/missing_data.toml",
        &db,
        &dir.path().join("out"),
        &[],
    ));
    assert!(e.contains("missing_data.toml"), "{e}");
    assert!(
        !db.exists(),
        "no database for a scenario that does not load"
    );
}

#[test]
fn state_reads_one_consistent_snapshot_while_paper_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("db.sqlite"), dir.path().join("out"));
    let mut child = paper(QUICKSTART, &db, &out, &["entries.every=10m"])
        .args(["--speed", "10000", "-q", "--log-steps"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first commit, then read while it keeps committing.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let v = ok(&mut trailstop(&["state", "--db", p(&db), "--verify"]));
        let n: usize = v
            .split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        seen.push(n);
        let listing: Value =
            serde_json::from_str(&ok(&mut trailstop(&["state", "--db", p(&db), "--json"])))
                .unwrap();
        let next = listing["paper_next_index"].as_u64().unwrap();
        for pos in listing["positions"].as_array().unwrap() {
            if pos["state"] != "triggered" {
                assert_eq!(pos["next_index"].as_u64().unwrap(), next, "one snapshot");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen.last() > seen.first(),
        "the run went on while read: {seen:?}"
    );
}

/// A second `paper` on a database a running one holds is refused at once and changes nothing;
/// the first one runs on to the same result as the backtest.
#[test]
fn a_second_paper_on_a_running_database_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("db.sqlite"), dir.path().join("out"));
    let mut first = paper(QUICKSTART, &db, &out, &[])
        .args(["--speed", "20000", "-q", "--log-steps"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    let journal_before = journal_rows(&db);
    let started = std::time::Instant::now();
    // Another config, which the second run would otherwise apply to the first one's positions.
    let e = err(&mut paper(
        QUICKSTART,
        &db,
        &dir.path().join("out2"),
        &["trailing.distance_percent=3"],
    ));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "refused at once, not after a wait"
    );
    assert!(
        e.contains("another trailstop process is running on this database") && e.contains(p(&db)),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(!dir.path().join("out2").exists());
    assert!(
        journal_rows(&db) >= journal_before,
        "the first run's journal is intact"
    );
    // Reading while it runs is still allowed.
    ok(&mut trailstop(&["state", "--db", p(&db)]));
    for _ in lines.by_ref() {}
    assert!(first.wait().unwrap().success(), "the first run finishes");
    let bt = dir.path().join("bt");
    backtest(QUICKSTART, &bt, &[]);
    assert_same_outputs(&out, &bt, "the first run, undisturbed");
}

/// Resuming checks every open position's row against its journal first: an edited `extreme`
/// is refused with the position and the field named, and nothing is changed.
#[test]
fn a_tampered_state_row_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("db.sqlite"), dir.path().join("out"));
    // Stop a run midway: some positions are open in the database.
    let mut child = paper(QUICKSTART, &db, &out, &[])
        .args(["--speed", "20000", "-q", "--log-steps"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let id: i64 = conn
        .query_row(
            "SELECT position_id FROM trailing_stop_state WHERE state != 'triggered' \
             ORDER BY position_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("an open position");
    conn.execute(
        "UPDATE trailing_stop_state SET extreme = '99999' WHERE position_id = ?1",
        [id],
    )
    .unwrap();
    drop(conn);
    let before = snapshot(dir.path());
    let e = err(&mut paper(QUICKSTART, &db, &out, &[]));
    assert!(
        e.contains(&format!("position {id}:")) && e.contains("`extreme` is 99999"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    let mut after = snapshot(dir.path());
    // SQLite may leave an empty WAL index behind after a read; the data files are unchanged.
    after.remove("db.sqlite-shm");
    let mut before = before;
    before.remove("db.sqlite-shm");
    assert_eq!(after, before);
}

/// `state` reads a finished database in a read-only folder, and a read-only file, without
/// creating or changing any file.
#[test]
fn state_reads_a_read_only_folder_and_file_without_writing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("ro");
    let db = finished_db(&folder);
    let expected = ok(&mut trailstop(&["state", "--db", p(&db)]));
    assert!(expected.contains("12 positions"), "{expected}");
    let before = snapshot(&folder);
    assert!(
        before.keys().all(|k| k == "db.sqlite"),
        "a finished run leaves the database alone: {before:?}"
    );
    // A read-only file in a writable folder.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert_eq!(ok(&mut trailstop(&["state", "--db", p(&db)])), expected);
    ok(&mut trailstop(&["state", "--db", p(&db), "--verify"]));
    assert_eq!(snapshot(&folder), before, "no -wal or -shm left behind");
    // The folder read-only too (and as root, which ignores permissions, the file is still
    // opened without a write).
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    let listed = trailstop(&["state", "--db", p(&db), "--json"])
        .output()
        .unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(snapshot(&folder), before);
}
