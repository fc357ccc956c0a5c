//! A live diagnosis (feature `live`): for a duration, every few seconds, the running
//! process's `/status` and `/metrics` against the exchange's positions (read-only REST calls),
//! then the database (read-only). Each check of one sample is a finding; the same finding in
//! several samples is counted, not repeated.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{Finding, Report, Severity, db};
use crate::live::bybit::request::PositionFilter;
use crate::live::bybit::rest::{RestClient, RestConfig};
use crate::live::bybit::snapshot::PositionInfo;
use crate::live::clock::system_clock;
use crate::live::config::LiveConfig;
use crate::live::credentials::Credentials;
use crate::live::metrics::samples;
use crate::store::{OpenOptions, Store};

/// How to sample.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// The process's status server (`http://host:port`), by default `[http] listen`'s.
    pub base_url: String,
    pub duration: Duration,
    pub every: Duration,
}

/// One sample's view.
struct Sample {
    status: Option<Value>,
    metrics: Option<String>,
    exchange: Result<Vec<PositionInfo>, String>,
}

async fn get(client: &reqwest::Client, url: &str) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

/// Runs the diagnosis; `Err` when it cannot start (the REST client).
pub async fn run(
    config: &LiveConfig,
    credentials: Credentials,
    sampling: &Sampling,
) -> Result<Report, String> {
    let rest = RestClient::new(
        RestConfig {
            base_url: config.venue.rest_url.clone(),
            recv_window_ms: config.venue.recv_window_ms,
            timeout: Duration::from_secs(5),
            clock: system_clock(),
        },
        Some(credentials),
    )
    .map_err(|e| format!("starting the REST client: {e}"))?;
    let _ = rest.sync_clock().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("starting the HTTP client: {e}"))?;
    let ticks: BTreeMap<String, Decimal> = rest
        .instruments(None)
        .await
        .map(|l| l.into_iter().map(|i| (i.symbol, i.tick_size)).collect())
        .unwrap_or_default();
    let mut report = Report::default();
    report
        .source
        .insert("config", config.source.display().to_string());
    report.source.insert("status", sampling.base_url.clone());
    report
        .source
        .insert("exchange", config.venue.rest_url.clone());
    let started = tokio::time::Instant::now();
    let last: Sample = loop {
        let s = Sample {
            status: get(&http, &format!("{}/status", sampling.base_url))
                .await
                .and_then(|t| serde_json::from_str(&t).ok()),
            metrics: get(&http, &format!("{}/metrics", sampling.base_url)).await,
            exchange: rest
                .positions(PositionFilter::SettleCoin("USDT"))
                .await
                .map(|l| l.into_iter().filter(PositionInfo::is_open).collect())
                .map_err(|e| e.to_string()),
        };
        report.samples += 1;
        check_sample(&s, &ticks, &mut report);
        if started.elapsed() + sampling.every > sampling.duration {
            break s;
        }
        tokio::time::sleep(sampling.every).await;
    };
    // The database, read-only, and the exchange's stop of each open position in its row.
    if config.db.exists() {
        match Store::open(&config.db, OpenOptions::read_only()) {
            Ok(store) => {
                if let Err(e) = db::check(&store, &mut report) {
                    report.add(Finding::new(
                        Severity::Critical,
                        "database_unreadable",
                        e.to_string(),
                        json!({ "db": config.db.display().to_string() }),
                    ));
                }
            }
            Err(e) => report.add(Finding::new(
                Severity::Warning,
                "database_unreadable",
                e.to_string(),
                json!({ "db": config.db.display().to_string() }),
            )),
        }
        report.source.insert("db", config.db.display().to_string());
    }
    if let Ok(x) = &last.exchange {
        for row in report.positions.iter_mut() {
            if row.state.starts_with("closed") {
                continue;
            }
            if let Some(p) = x
                .iter()
                .find(|p| p.symbol == row.symbol && p.side.map(|s| s.as_str()) == Some(row.side))
            {
                row.exchange_stop = p.stop_loss.map(|s| s.to_string());
            }
        }
    }
    if let Some(text) = last.metrics.as_deref() {
        metric_summary(text, &mut report);
    }
    report.sort();
    Ok(report)
}

fn dec(v: &Value) -> Option<Decimal> {
    v.as_str()?.parse().ok()
}

/// The checks of one sample.
fn check_sample(s: &Sample, ticks: &BTreeMap<String, Decimal>, report: &mut Report) {
    let Some(status) = &s.status else {
        report.add(Finding::new(
            Severity::Critical,
            "status_unreachable",
            "the process's /status does not answer: is trailstop running?".into(),
            json!({}),
        ));
        return;
    };
    if status["reconciled"] != true {
        report.add(Finding::new(
            Severity::Warning,
            "not_reconciled",
            "the runner has not finished reconciling".into(),
            json!({}),
        ));
    }
    // Each venue's breaker: closed, open, half_open, banned, rate_limited.
    if let Some(states) = status["circuit"].as_object()
        && states.values().any(|v| v != "closed")
    {
        report.add(Finding::new(
            Severity::Warning,
            "circuit_open",
            "a venue's circuit breaker is not closed (requests wait)".into(),
            json!({ "circuit": states }),
        ));
    }
    if let Some(why) = status["degraded"].as_str()
        && why.contains("stale")
    {
        report.add(Finding::new(
            Severity::Critical,
            "stale_prices",
            why.to_string(),
            json!({ "degraded": why, "symbols": status["symbols"] }),
        ));
    }
    let ours: Vec<&Value> = status["positions"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let exchange = match &s.exchange {
        Ok(x) => x,
        Err(e) => {
            report.add(Finding::new(
                Severity::Warning,
                "exchange_unreadable",
                format!("listing the positions: {e}"),
                json!({}),
            ));
            return;
        }
    };
    let key = |p: &Value| {
        (
            p["symbol"].as_str().unwrap_or_default().to_string(),
            p["side"].as_str().unwrap_or_default().to_string(),
        )
    };
    let mut by_key: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for p in &ours {
        by_key.entry(key(p)).or_default().push(p);
    }
    for ((symbol, side), list) in &by_key {
        if list.len() > 1 {
            let ids: Vec<&Value> = list.iter().map(|p| &p["position_id"]).collect();
            report.add(
                Finding::new(
                    Severity::Critical,
                    "duplicate_stop",
                    format!(
                        "{} trailing stops for one {side} position on the exchange",
                        list.len()
                    ),
                    json!({ "positions": ids }),
                )
                .symbol(symbol),
            );
        }
    }
    for x in exchange {
        let side = x.side.map(|s| s.as_str()).unwrap_or_default();
        if !by_key.contains_key(&(x.symbol.clone(), side.to_string())) {
            report.add(
                Finding::new(
                    Severity::Critical,
                    "unknown_position",
                    format!("an open {side} position the runner does not know"),
                    json!({
                        "side": side,
                        "size": x.size.to_string(),
                        "position_idx": x.position_idx.as_u8(),
                        "exchange_stop": x.stop_loss.map(|s| s.to_string()),
                    }),
                )
                .symbol(&x.symbol),
            );
        }
    }
    for p in &ours {
        let (symbol, side) = key(p);
        let id = p["position_id"].as_u64();
        let expected = dec(&p["confirmed_stop"]).or_else(|| dec(&p["sent_stop"]));
        let on_exchange = exchange
            .iter()
            .find(|x| x.symbol == symbol && x.side.map(|s| s.as_str()) == Some(side.as_str()));
        let at = |f: Finding| match id {
            Some(id) => f.position(id).symbol(&symbol),
            None => f.symbol(&symbol),
        };
        let Some(x) = on_exchange else {
            report.add(at(Finding::new(
                Severity::Warning,
                "orphan_stop",
                "the runner holds a trailing stop for a position the exchange does not have".into(),
                json!({ "side": side, "stop": expected.map(|s| s.to_string()) }),
            )));
            continue;
        };
        match (expected, x.stop_loss) {
            (Some(want), None) => report.add(at(Finding::new(
                Severity::Critical,
                "missing_stop",
                format!("no stop rests on the exchange; the runner's is {want}"),
                json!({ "runner_stop": want.to_string(), "exchange_stop": null }),
            ))),
            (None, None) if p["state"] == "active" => report.add(at(Finding::new(
                Severity::Critical,
                "missing_stop",
                "an active trailing stop with no stop on the exchange".into(),
                json!({ "exchange_stop": null }),
            ))),
            (Some(want), Some(have)) => {
                let tick = ticks.get(&symbol).copied().unwrap_or_default();
                if (want - have).abs() > tick {
                    report.add(at(Finding::new(
                        Severity::Critical,
                        "stop_price_mismatch",
                        format!("the exchange's stop is {have}, the runner's {want}"),
                        json!({
                            "runner_stop": want.to_string(),
                            "exchange_stop": have.to_string(),
                            "tick": tick.to_string(),
                        }),
                    )));
                }
            }
            _ => {}
        }
        if let Some(since) = p["unprotected_since"].as_i64() {
            report.add(at(Finding::new(
                Severity::Warning,
                "unprotected_now",
                format!("a stop was sent and none rests since {since}"),
                json!({ "since": since }),
            )));
        }
    }
}

/// The metric summary, and findings on errors and the clock.
fn metric_summary(text: &str, report: &mut Report) {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples(text) {
        let key = match s.name.as_str() {
            "trailstop_exchange_errors_total" => format!(
                "exchange_errors.{}",
                s.labels.get("class").cloned().unwrap_or_default()
            ),
            "trailstop_stream_reconnects_total" => format!(
                "reconnects.{}",
                s.labels.get("stream").cloned().unwrap_or_default()
            ),
            "trailstop_stop_updates_total" => format!(
                "stop_updates.{}",
                s.labels.get("result").cloned().unwrap_or_default()
            ),
            "trailstop_updates_held_total" => "updates_held".into(),
            "trailstop_clock_offset_ms" => "clock_offset_ms".into(),
            "trailstop_positions_without_trailing_stop" => "positions_without_trailing_stop".into(),
            "trailstop_positions_unprotected" => "positions_unprotected".into(),
            "trailstop_unprotected_seconds_count" => "unprotected_windows".into(),
            "trailstop_unprotected_seconds_sum" => "unprotected_seconds".into(),
            _ => continue,
        };
        *sums.entry(key).or_default() += s.value;
    }
    let errors: f64 = sums
        .iter()
        .filter(|(k, _)| k.starts_with("exchange_errors."))
        .map(|(_, v)| v)
        .sum();
    if errors > 0.0 {
        let by: BTreeMap<&String, &f64> = sums
            .iter()
            .filter(|(k, _)| k.starts_with("exchange_errors."))
            .collect();
        report.add(Finding::new(
            Severity::Warning,
            "exchange_errors",
            format!("{errors} failed exchange request(s) since the start"),
            json!(by),
        ));
    }
    if let Some(off) = sums.get("clock_offset_ms")
        && off.abs() > 1000.0
    {
        report.add(Finding::new(
            Severity::Warning,
            "clock_offset",
            format!("the local clock is {off} ms off the exchange's"),
            json!({ "clock_offset_ms": off }),
        ));
    }
    if sums
        .get("positions_without_trailing_stop")
        .is_some_and(|v| *v > 0.0)
    {
        report.add(Finding::new(
            Severity::Critical,
            "without_trailing_stop",
            "the runner reports positions it does not manage".into(),
            json!({ "positions_without_trailing_stop": sums["positions_without_trailing_stop"] }),
        ));
    }
    for (k, v) in sums {
        report.metrics.insert(k, v);
    }
}
