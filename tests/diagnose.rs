//! `trailstop diagnose`: each planted fault found with its severity and the exit code — on a
//! database alone (`--db`: a stop that loosened in the journal, two trailing stops on one
//! exchange position, a stop sent and none resting), and live (a running process's `/status`
//! against the fake Bybit: an orphan stop, a missing stop, a duplicate stop, a stop at another
//! price, stale prices, a position the runner does not know). A clean run exits 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_trailstop")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A paper run of five positions on a day of 1m candles, in `dir/paper.sqlite`.
fn paper_db(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("entries.csv"),
        "time,side\n2022-12-13T10:00:00Z,short\n2022-12-13T12:00:00Z,long\n\
         2022-12-13T14:00:00Z,short\n2022-12-13T16:00:00Z,long\n2022-12-13T22:00:00Z,short\n",
    )
    .unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "diag"
[data]
candles = "{}"
symbol = "BTCUSDT"
tick_size = "0.01"
[entries]
file = "entries.csv"
[exchange]
venue = "bybit"
[trailing]
activation_percent = "0.3"
distance_percent = "0.25"
initial_stop_percent = "1.0"
[intrabar]
policy = "olhc"
"#,
            root().join("data/BTCUSDT-bybit-1m-20221213.csv").display()
        ),
    )
    .unwrap();
    let db = dir.join("paper.sqlite");
    let out = Command::new(bin())
        .arg("paper")
        .arg(&scenario)
        .arg("--db")
        .arg(&db)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

fn diagnose(args: &[&str], out: &Path) -> (Output, Value) {
    let o = Command::new(bin())
        .arg("diagnose")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (o, report)
}

/// The findings of `check` in a report: (severity, position, symbol).
fn found(report: &Value, check: &str) -> Vec<(String, Value, Value)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["position"].clone(),
                f["symbol"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_clean_paper_database_passes_and_a_loosened_stop_is_critical() {
    let dir = tempfile::tempdir().unwrap();
    let db = paper_db(dir.path());
    let report_path = dir.path().join("report.json");
    let (o, report) = diagnose(&["--db", db.to_str().unwrap()], &report_path);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("every check passed"), "{stdout}");
    assert_eq!(report["positions"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(
        report["positions"][0]["state"], "closed (trailing_stop)",
        "{report}"
    );
    assert!(
        report["metrics"]["events.UpdateSent"].as_f64().unwrap() >= 5.0,
        "{report}"
    );

    // Plant: position 1's second send made looser than its first (a short's stop higher).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(i64, String)> = conn
        .prepare(
            "SELECT seq, payload FROM trailing_stop_events WHERE position_id = 1 \
             AND payload LIKE '%\"type\":\"UpdateSent\"%' ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() >= 2, "{rows:?}");
    let first: Value = serde_json::from_str(&rows[0].1).unwrap();
    let mut second: Value = serde_json::from_str(&rows[1].1).unwrap();
    let looser: rust_decimal::Decimal = first["stop"]
        .as_str()
        .unwrap()
        .parse::<rust_decimal::Decimal>()
        .unwrap()
        + rust_decimal::Decimal::ONE;
    second["stop"] = Value::String(looser.to_string());
    // (The journal is append-only: the planting lifts the trigger and puts it back.)
    conn.execute_batch("DROP TRIGGER trailing_stop_events_no_update")
        .unwrap();
    conn.execute(
        "UPDATE trailing_stop_events SET payload = ?1 WHERE position_id = 1 AND seq = ?2",
        rusqlite::params![second.to_string(), rows[1].0],
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TRIGGER trailing_stop_events_no_update BEFORE UPDATE ON trailing_stop_events \
         BEGIN SELECT RAISE(ABORT, 'trailing_stop_events is append-only'); END;",
    )
    .unwrap();
    drop(conn);
    let (o, report) = diagnose(&["--db", db.to_str().unwrap()], &report_path);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        found(&report, "stop_loosened"),
        vec![(
            "critical".to_string(),
            Value::from(1),
            Value::from("BTCUSDT")
        )],
        "{report}"
    );
    let f = &report["findings"][0];
    assert_eq!(f["evidence"]["stop"], looser.to_string(), "{f}");
    assert_eq!(f["evidence"]["journal_seq"], rows[1].0, "{f}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("critical") && stdout.contains("stop_loosened"),
        "{stdout}"
    );
}

#[test]
fn a_missing_database_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sqlite");
    let (o, _) = diagnose(
        &["--db", missing.to_str().unwrap()],
        &dir.path().join("r.json"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nope.sqlite"), "{err}");
    assert!(!missing.exists(), "nothing created");
}

#[cfg(feature = "live")]
mod live {
    use super::*;
    use rust_decimal_macros::dec;
    use std::time::Duration;
    use trailstop::engine::{Instrument, Side, TrailingConfig};
    use trailstop::live::bybit::request::PositionFilter;
    use trailstop::live::bybit::rest::{RestClient, RestConfig};
    use trailstop::live::bybit::venue::BybitVenue;
    use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, InstrumentSpec, Setup};
    use trailstop::live::runner::{Book, Opening};
    use trailstop::store::{OpenOptions, Store};
    use trailstop::venue::{Command as VenueCommand, OrderRef, VenueEvent};

    const KEY: &str = "diag-test-key-33a0c7";
    const SECRET: &str = "diag-test-secret-e81f52";
    const T0: i64 = 1_670_889_600_000;

    fn opening(symbol: &str) -> Opening {
        Opening {
            symbol: symbol.into(),
            position_idx: 0,
            side: Side::Long,
            entry: dec!(100),
            size: dec!(1),
            opened_at: T0,
            foreign_stop: None,
        }
    }

    /// A live database with two trailing stops on one exchange position (BTCUSDT index 0),
    /// and an ETHUSDT position whose stop someone else cancelled (sent, none resting).
    #[test]
    fn a_live_database_with_a_duplicate_and_a_missing_stop_is_critical() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.sqlite");
        {
            let store = Store::open(&db, OpenOptions::runner()).unwrap();
            let mut book = Book::new(store).unwrap();
            let config: TrailingConfig = toml::from_str(
                "activation_percent = \"1\"\ndistance_percent = \"1\"\ninitial_stop_percent = \"1\"",
            )
            .unwrap();
            let inst = Instrument::with_price_decimals(dec!(0.1), 1);
            book.open(&opening("BTCUSDT"), &inst, &config).unwrap();
            book.open(&opening("BTCUSDT"), &inst, &config).unwrap();
            let eth = book.open(&opening("ETHUSDT"), &inst, &config).unwrap();
            for id in [1, 2, eth] {
                for (cmd, ts) in book.take_commands(id) {
                    let VenueCommand::Place { order, stop } = cmd else {
                        panic!("{cmd:?}")
                    };
                    let accepted = VenueEvent::Accepted {
                        order,
                        stop,
                        ts,
                        venue_id: None,
                    };
                    book.on_event(id, &accepted);
                    book.commit(&[id]).unwrap();
                }
            }
            let cancelled = VenueEvent::Cancelled {
                order: OrderRef {
                    position: eth,
                    seq: 1,
                },
                ts: T0 + 1_000,
            };
            book.on_event(eth, &cancelled);
            book.commit(&[eth]).unwrap();
        }
        let (o, report) = diagnose(&["--db", db.to_str().unwrap()], &dir.path().join("r.json"));
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(
            found(&report, "duplicate_stop"),
            vec![("critical".into(), Value::Null, Value::from("BTCUSDT"))],
            "{report}"
        );
        assert_eq!(
            found(&report, "missing_stop"),
            vec![("critical".into(), Value::from(3), Value::from("ETHUSDT"))],
            "{report}"
        );
        let dup = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "duplicate_stop")
            .unwrap();
        assert_eq!(dup["evidence"]["positions"], serde_json::json!([1, 2]));
        assert_eq!(report["findings"].as_array().unwrap().len(), 2, "{report}");
    }

    /// A status server with a crafted `/status` (and an empty `/metrics`), on loopback.
    async fn serve_status(status: Value) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let body_status = status.to_string();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = if req.starts_with("GET /status") {
                        body_status
                    } else {
                        "trailstop_clock_offset_ms 3\n".to_string()
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn position(id: u64, symbol: &str, stop: Option<&str>) -> Value {
        serde_json::json!({
            "position_id": id, "symbol": symbol, "side": "long", "state": "active",
            "entry_price": "10", "desired_stop": stop, "sent_stop": stop,
            "confirmed_stop": stop, "order_id": format!("ts-{id}-1"), "unprotected_since": null
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_diagnosis_finds_each_planted_fault() {
        let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"];
        let fake = FakeBybit::start(FakeConfig::new(Setup::new(
            KEY,
            SECRET,
            symbols
                .iter()
                .map(|s| InstrumentSpec::new(s, dec!(0.01)))
                .collect(),
        )))
        .await
        .unwrap();
        for (s, p) in [
            ("BTCUSDT", dec!(17000)),
            ("ETHUSDT", dec!(1520)),
            ("SOLUSDT", dec!(21)),
            ("XRPUSDT", dec!(5)),
        ] {
            fake.set_price(s, p, true, T0);
            fake.open_position(s, Side::Long, dec!(1), T0).unwrap();
        }
        // The stops on the exchange: BTC's as the runner says, ETH's at another price, none
        // on SOL, XRP's set by hand (a position the runner does not know).
        let rest = RestClient::new(
            RestConfig {
                base_url: fake.rest_url(),
                recv_window_ms: 5000,
                timeout: Duration::from_secs(5),
                clock: trailstop::live::clock::system_clock(),
            },
            Some(trailstop::live::Credentials {
                api_key: trailstop::live::Secret::new(KEY),
                api_secret: trailstop::live::Secret::new(SECRET),
            }),
        )
        .unwrap();
        let mut venue = BybitVenue::connect(rest, trailstop::live::TriggerPrice::Mark, &symbols)
            .await
            .unwrap();
        for (i, (s, stop)) in [
            ("BTCUSDT", dec!(16830)),
            ("ETHUSDT", dec!(1500)),
            ("XRPUSDT", dec!(4.9)),
        ]
        .into_iter()
        .enumerate()
        {
            let id = 90 + i as u64;
            let info = venue
                .rest()
                .positions(PositionFilter::Symbol(s))
                .await
                .unwrap();
            venue.manage(id, &info[0]).unwrap();
            let units = venue.instrument(s).unwrap().units(stop).unwrap();
            let order = OrderRef {
                position: id,
                seq: 1,
            };
            let done = venue
                .execute(VenueCommand::Place { order, stop: units }, T0)
                .await;
            assert_eq!(done.action, None, "{done:?}");
        }
        // What the runner says: BTC twice (a duplicate), ETH at 1490, SOL with a stop the
        // exchange lacks, ADA that the exchange has no position of; ETH's prices stale.
        let status = serde_json::json!({
            "reconciled": true,
            "symbols": {},
            "positions": [
                position(1, "BTCUSDT", Some("16830")),
                position(2, "BTCUSDT", Some("16830")),
                position(3, "ETHUSDT", Some("1490")),
                position(4, "SOLUSDT", Some("20")),
                position(5, "ADAUSDT", Some("0.3")),
            ],
            "circuit": {"bybit": "closed"},
            "streams": {},
            "degraded": "stale prices: ETHUSDT"
        });
        let url = serve_status(status).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("live.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"d\"\n[venue]\nexchange = \"bybit\"\nrest_url = \"{}\"\nws_url = \"{}\"\n\
                 api_key_env = \"TS_DIAG_KEY\"\napi_secret_env = \"TS_DIAG_SECRET\"\n\
                 [positions]\nsymbols = [\"BTCUSDT\"]\n[trailing]\nactivation_percent = \"1\"\n\
                 distance_percent = \"1\"\n[store]\ndb = \"live.sqlite\"\nout = \"out\"\n",
                fake.rest_url(),
                fake.ws_url()
            ),
        )
        .unwrap();
        let out = dir.path().join("report.json");
        let o = tokio::task::spawn_blocking({
            let (config, out, url) = (config.clone(), out.clone(), url.clone());
            move || {
                Command::new(bin())
                    .arg("diagnose")
                    .arg(&config)
                    .args(["--duration", "1s", "--every", "400ms", "--status-url", &url])
                    .arg("--out")
                    .arg(&out)
                    .env("TS_DIAG_KEY", KEY)
                    .env("TS_DIAG_SECRET", SECRET)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        assert_eq!(
            o.status.code(),
            Some(1),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let report: Value = serde_json::from_str(&text).unwrap();
        let c = |s: &str| s.to_string();
        assert_eq!(
            found(&report, "orphan_stop"),
            vec![(c("warning"), Value::from(5), Value::from("ADAUSDT"))]
        );
        assert_eq!(
            found(&report, "missing_stop"),
            vec![(c("critical"), Value::from(4), Value::from("SOLUSDT"))]
        );
        assert_eq!(
            found(&report, "duplicate_stop"),
            vec![(c("critical"), Value::Null, Value::from("BTCUSDT"))]
        );
        assert_eq!(
            found(&report, "stop_price_mismatch"),
            vec![(c("critical"), Value::from(3), Value::from("ETHUSDT"))]
        );
        assert_eq!(found(&report, "stale_prices")[0].0, "critical");
        assert_eq!(
            found(&report, "unknown_position"),
            vec![(c("critical"), Value::Null, Value::from("XRPUSDT"))]
        );
        // BTC's stop matches: no finding on positions 1 and 2 but the duplicate.
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["position"] != 1 && f["position"] != 2),
            "{report}"
        );
        let mismatch = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "stop_price_mismatch")
            .unwrap();
        assert_eq!(mismatch["evidence"]["exchange_stop"], "1500");
        assert_eq!(mismatch["evidence"]["runner_stop"], "1490");
        assert!(report["samples"].as_u64().unwrap() >= 2, "{report}");
        assert_eq!(report["metrics"]["clock_offset_ms"], 3.0);
        for t in [&text, &stdout] {
            assert!(!t.contains(KEY) && !t.contains(SECRET), "{t}");
        }
        assert!(stdout.contains("unknown_position"), "{stdout}");
    }

    /// A real `trailstop live` on the fake Bybit, its one position protected: the diagnosis
    /// agrees (exit 0, no critical finding) and its table shows the exchange's stop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_live_run_diagnoses_clean() {
        let fake = FakeBybit::start(FakeConfig::new(Setup::new(
            KEY,
            SECRET,
            vec![InstrumentSpec::new("BTCUSDT", dec!(0.01))],
        )))
        .await
        .unwrap();
        fake.set_price("BTCUSDT", dec!(17000), true, T0);
        fake.open_position("BTCUSDT", Side::Long, dec!(1), T0)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("live.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"d\"\n[venue]\nexchange = \"bybit\"\nrest_url = \"{}\"\nws_url = \"{}\"\n\
                 api_key_env = \"TS_DIAG_KEY\"\napi_secret_env = \"TS_DIAG_SECRET\"\n\
                 [positions]\nsymbols = [\"BTCUSDT\"]\n[trailing]\nactivation_percent = \"1\"\n\
                 distance_percent = \"1\"\ninitial_stop_percent = \"1\"\n[store]\n\
                 db = \"live.sqlite\"\nout = \"out\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
                fake.rest_url(),
                fake.ws_url()
            ),
        )
        .unwrap();
        struct Reaped(std::process::Child);
        impl Drop for Reaped {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _live = Reaped(
            Command::new(bin())
                .arg("live")
                .arg(&config)
                .env("TS_DIAG_KEY", KEY)
                .env("TS_DIAG_SECRET", SECRET)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while fake.position("BTCUSDT", 0).stop_loss.is_none() {
            assert!(std::time::Instant::now() < until, "no stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = dir.path().join("report.json");
        let o = tokio::task::spawn_blocking({
            let (config, out) = (config.clone(), out.clone());
            move || {
                Command::new(bin())
                    .arg("diagnose")
                    .arg(&config)
                    .args(["--duration", "600ms", "--every", "300ms", "--out"])
                    .arg(&out)
                    .env("TS_DIAG_KEY", KEY)
                    .env("TS_DIAG_SECRET", SECRET)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["severity"] != "critical"),
            "{report}"
        );
        let row = &report["positions"][0];
        assert_eq!(row["exchange_stop"], "16830", "{report}");
        assert_eq!(row["sent_stop"], "16830", "{report}");
    }
}

/// The default build (no feature `live`): a live diagnosis and `paper --http` say which build
/// they need, and change nothing.
#[cfg(not(feature = "live"))]
#[test]
fn without_feature_live_the_network_parts_say_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("live.toml");
    std::fs::write(&config, "name = \"x\"\n").unwrap();
    let o = Command::new(bin())
        .arg("diagnose")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("feature `live`") && err.contains("live.toml"),
        "{err}"
    );
    let db = dir.path().join("p.sqlite");
    let o = Command::new(bin())
        .arg("paper")
        .arg(root().join("scenarios/quickstart.toml"))
        .arg("--db")
        .arg(&db)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--http", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--http 127.0.0.1:9") && err.contains("feature `live`"),
        "{err}"
    );
    assert!(!db.exists(), "nothing created");
}
