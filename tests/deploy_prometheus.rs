//! `deploy/prometheus/` and `deploy/grafana/` against a real Prometheus (Debian's
//! `prometheus` package; `.ci/run` installs it): `promtool` accepts the config and the rules; a
//! Prometheus started on loopback scrapes a `trailstop live` run on the fake Bybit and its HTTP
//! API returns the expected `trailstop_positions`; every metric the dashboard and the rules use
//! exists in that real scrape, so they cannot drift apart. Without the binaries (a machine
//! that has not installed them) the tests say so and pass; under CI (`CI` set) they fail.
#![cfg(feature = "live")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, Fault, FaultKind, InstrumentSpec, Setup};

const KEY: &str = "prom-test-key-0d93be";
const SECRET: &str = "prom-test-secret-6a1f40";
const BTC: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program` runs; when not, a clear message (and a failure under CI).
fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed: .ci/run installs Debian's prometheus package"
        );
        eprintln!(
            "SKIPPED: {program} is not installed here (apt-get install prometheus; CI installs it)"
        );
    }
    ok
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_config_and_the_rules() {
    if !have("promtool") {
        return;
    }
    let text = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
    let text = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The `trailstop_*` metric names an expression uses (a histogram's series named by its
/// metric).
fn names_in(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("trailstop_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let mut name = &expr[start..end];
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(n) = name.strip_suffix(suffix)
                && n.ends_with("_seconds")
            {
                name = n;
            }
        }
        out.insert(name.to_string());
        i = end;
    }
}

/// Every metric the alert rules and the dashboard use.
fn used_metrics() -> (BTreeSet<String>, BTreeSet<String>) {
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let mut in_rules = BTreeSet::new();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            names_in(r["expr"].as_str().unwrap(), &mut in_rules);
        }
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/trailstop.json")).unwrap(),
    )
    .unwrap();
    let mut in_dash = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        let targets = p["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty(),
            "panel {} queries something",
            p["title"]
        );
        for t in targets {
            names_in(t["expr"].as_str().unwrap(), &mut in_dash);
        }
    }
    (in_rules, in_dash)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_live_toml(dir: &Path, fake: &FakeBybit, listen: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "prom"
[venue]
exchange = "bybit"
rest_url = "{}"
ws_url = "{}"
api_key_env = "TS_PROM_KEY"
api_secret_env = "TS_PROM_SECRET"
[positions]
symbols = ["BTCUSDT"]
[trailing]
activation_percent = "0.3"
distance_percent = "0.25"
initial_stop_percent = "1.0"
[store]
db = "live.sqlite"
out = "out"
[http]
listen = "{listen}"
"#,
            fake.rest_url(),
            fake.ws_url()
        ),
    )
    .unwrap();
    path
}

/// The deploy config with its one target pointed at `target`, scraped every second, the
/// rules loaded from `deploy/prometheus/`.
fn prometheus_config(dir: &Path, target: &str) -> PathBuf {
    let mut cfg: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    cfg["global"]["scrape_interval"] = "1s".into();
    cfg["global"]["evaluation_interval"] = "1s".into();
    cfg["rule_files"] = serde_json::json!([root()
        .join("deploy/prometheus/alerts.yml")
        .display()
        .to_string()]);
    let jobs = cfg["scrape_configs"].as_array_mut().unwrap();
    assert_eq!(jobs.len(), 1, "one job: trailstop");
    jobs[0]["static_configs"][0]["targets"] = serde_json::json!([target]);
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, serde_yaml_ng::to_string(&cfg).unwrap()).unwrap();
    path
}

async fn query(api: &str, q: &str) -> Option<Value> {
    let url =
        reqwest::Url::parse_with_params(&format!("{api}/api/v1/query"), &[("query", q)]).unwrap();
    let v: Value = serde_json::from_str(&reqwest::get(url).await.ok()?.text().await.ok()?).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].clone())
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_live_run_and_knows_every_metric_the_deploy_uses() {
    if !have("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBybit::start(FakeConfig::new(Setup::new(
        KEY,
        SECRET,
        vec![InstrumentSpec::new(BTC, dec!(0.01))],
    )))
    .await
    .unwrap();
    fake.set_price(BTC, dec!(17000), true, T0);
    fake.open_position(BTC, trailstop::engine::Side::Long, dec!(1), T0)
        .unwrap();
    // The first stop send meets a skewed clock once (resynced, sent again): an error series.
    fake.inject(Fault::on("/v5/position/trading-stop", FaultKind::ClockSkew));
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_live_toml(dir.path(), &fake, &listen);
    let log = dir.path().join("live.log");
    let _live = Killed(
        Command::new(env!("CARGO_BIN_EXE_trailstop"))
            .arg("live")
            .arg(&config)
            .env("TS_PROM_KEY", KEY)
            .env("TS_PROM_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let pconfig = prometheus_config(dir.path(), &listen);
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", pconfig.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{api_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let read_logs = || {
        format!(
            "--- live:\n{}\n--- prometheus:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        )
    };
    // A price after the start: the engine steps once (its histogram has a sample).
    wait_for("the first stop", Duration::from_secs(30), async || {
        fake.position(BTC, 0).stop_loss.map(|_| ())
    })
    .await;
    fake.set_price(BTC, dec!(17010), false, T0 + 1_000);

    // Prometheus's own answer: one inactive BTCUSDT position, scraped from the runner.
    let result = wait_for(
        "trailstop_positions in Prometheus",
        Duration::from_secs(60),
        async || {
            let r = query(&api, "trailstop_positions").await?;
            let rows = r.as_array()?;
            rows.iter()
                .any(|s| s["metric"]["state"] == "inactive" && s["value"][1] == "1")
                .then(|| r.clone())
        },
    )
    .await;
    let rows = result.as_array().unwrap();
    assert!(
        rows.iter().all(|s| s["metric"]["symbol"] == BTC
            && s["metric"]["job"] == "trailstop"
            && s["metric"]["instance"] == listen.as_str()),
        "{result}\n{}",
        read_logs()
    );

    // Every metric the rules and the dashboard use is a series Prometheus scraped.
    let (in_rules, in_dash) = used_metrics();
    assert!(in_rules.contains("trailstop_positions_without_trailing_stop"));
    assert!(in_dash.contains("trailstop_positions_unprotected"));
    let used: BTreeSet<String> = in_rules.union(&in_dash).cloned().collect();
    let scraped = wait_for(
        "every used metric scraped",
        Duration::from_secs(30),
        async || {
            let url = format!("{api}/api/v1/label/__name__/values");
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            let names: BTreeSet<String> = v["data"]
                .as_array()?
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect();
            let have = |m: &String| {
                names.contains(m)
                    || names.contains(&format!("{m}_bucket"))
                    || names.contains(&format!("{m}_count"))
            };
            used.iter().all(have).then_some(names)
        },
    )
    .await;
    let ours: BTreeSet<&String> = scraped
        .iter()
        .filter(|n| n.starts_with("trailstop_"))
        .collect();
    assert!(ours.len() >= 17, "{ours:?}");
    // The rules loaded, and with every position protected none of the critical ones fires.
    let rules: Value = serde_json::from_str(
        &reqwest::get(format!("{api}/api/v1/rules"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(loaded, 8, "{rules}");
    let firing = query(
        &api,
        "ALERTS{alertname=\"TrailstopPositionWithoutTrailingStop\"}",
    )
    .await
    .unwrap();
    assert_eq!(firing, serde_json::json!([]), "{}", read_logs());
}

#[test]
fn the_dashboard_and_the_rules_use_only_metrics_trailstop_has() {
    let (in_rules, in_dash) = used_metrics();
    let known: BTreeSet<&str> = trailstop::live::metrics::names::ALL.into_iter().collect();
    for m in in_rules.iter().chain(&in_dash) {
        assert!(known.contains(m.as_str()), "{m} is no trailstop metric");
    }
    // Each of the five alerts the issue names is there.
    for m in [
        "trailstop_positions_without_trailing_stop",
        "trailstop_positions_unprotected",
        "trailstop_price_age_seconds",
        "trailstop_circuit_open",
        "trailstop_exchange_errors_total",
    ] {
        assert!(in_rules.contains(m), "{m} has no alert");
    }
}

/// The README's Monitoring section names every alert rule (in bold) and every dashboard
/// panel (in italics), so its lists cannot drift from the files.
#[test]
fn the_readme_names_every_rule_and_panel() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Monitoring"))
        .expect("a Monitoring section");
    // Line breaks inside an italic title are spaces.
    let section = section.replace('\n', " ");
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let mut n = 0;
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap();
            assert!(section.contains(&format!("**{name}**")), "rule {name}");
            n += 1;
        }
    }
    assert_eq!(n, 8);
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/trailstop.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(section.contains(&format!("*{title}*")), "panel {title}");
    }
    assert!(
        section.contains(&format!("dashboard, {} panels", panels.len())),
        "the panel count"
    );
}
