//! Prometheus metrics of a running trailstop (`LIVE.md` §6, issue 14; feature `live`).
//!
//! One [`Metrics`] per run: a `metrics`-facade recorder of its own (never the process-wide
//! one, so a backtest or a test in the same process sees nothing of it), rendered in the
//! Prometheus text format by the status server's `GET /metrics`. What moves them:
//! - [`observe`]: every committed journal step (engine events, venue answers, the
//!   unprotected window), for live and paper alike;
//! - the runner's hooks: REST requests ([`Metrics::on_request`], Binance's
//!   [`Metrics::on_binance_request`]), stream reconnects,
//!   reconciliation fixes, engine and database timings;
//! - [`Gauges`], set from the runner's status when `/metrics` is scraped (the unprotected
//!   gauge at each commit instead);
//! - [`wall`]: a live run's unprotected windows by the wall clock.

pub mod observe;
pub mod wall;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::live::binance::response::Outcome as BinanceOutcome;
use crate::live::bybit::response::Outcome;
use crate::runner::Entry;
use crate::store::PositionRecord;

pub use observe::{Observer, Update};
pub use watch::Watch;

/// The metric names of `LIVE.md` §6 (the dashboard and the alert rules use these).
pub mod names {
    pub const POSITIONS: &str = "trailstop_positions";
    pub const UNPROTECTED: &str = "trailstop_positions_unprotected";
    pub const WITHOUT_TRAILING_STOP: &str = "trailstop_positions_without_trailing_stop";
    pub const STOP_UPDATES: &str = "trailstop_stop_updates_total";
    pub const UPDATES_HELD: &str = "trailstop_updates_held_total";
    pub const ACTIVATIONS: &str = "trailstop_activations_total";
    pub const TRIGGERS: &str = "trailstop_triggers_total";
    pub const UNPROTECTED_SECONDS: &str = "trailstop_unprotected_seconds";
    pub const REQUEST_SECONDS: &str = "trailstop_exchange_request_seconds";
    pub const EXCHANGE_ERRORS: &str = "trailstop_exchange_errors_total";
    pub const ENGINE_STEP_SECONDS: &str = "trailstop_engine_step_seconds";
    pub const PRICE_AGE_SECONDS: &str = "trailstop_price_age_seconds";
    pub const STREAM_RECONNECTS: &str = "trailstop_stream_reconnects_total";
    pub const CLOCK_OFFSET_MS: &str = "trailstop_clock_offset_ms";
    pub const RECONCILE_FIXES: &str = "trailstop_reconcile_fixes_total";
    pub const CIRCUIT_OPEN: &str = "trailstop_circuit_open";
    pub const DB_COMMIT_SECONDS: &str = "trailstop_db_commit_seconds";

    /// Every name, in `LIVE.md` §6's order.
    pub const ALL: [&str; 17] = [
        POSITIONS,
        UNPROTECTED,
        WITHOUT_TRAILING_STOP,
        STOP_UPDATES,
        UPDATES_HELD,
        ACTIVATIONS,
        TRIGGERS,
        UNPROTECTED_SECONDS,
        REQUEST_SECONDS,
        EXCHANGE_ERRORS,
        ENGINE_STEP_SECONDS,
        PRICE_AGE_SECONDS,
        STREAM_RECONNECTS,
        CLOCK_OFFSET_MS,
        RECONCILE_FIXES,
        CIRCUIT_OPEN,
        DB_COMMIT_SECONDS,
    ];
}

/// The unprotected window: a Bybit amend has none, a Binance replace some ms, a replace
/// after an outage seconds; above 5 s an alert fires.
const UNPROTECTED_BUCKETS: &[f64] = &[
    0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// A REST request: ms on a good day, the 5 s timeout on a bad one.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// One price point through the engines of a symbol: µs.
const ENGINE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01,
];
/// One SQLite transaction (WAL, synchronous=NORMAL): sub-ms to ms, more under fsync.
const COMMIT_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
];

/// The exit reasons, activation and hold reasons, streams: their counters are shown at 0 from
/// the start, so a query or an alert on them never finds nothing.
const KNOWN_TRIGGERS: [&str; 5] = [
    "initial_stop",
    "breakeven_stop",
    "trailing_stop",
    "exit_now",
    "end_of_data",
];

/// The gauges of a run, as the runner sees them when it publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// Open positions by (symbol, engine state: inactive | active).
    pub positions: BTreeMap<(String, &'static str), u64>,
    /// Exchange positions no trailing stop manages.
    pub without_trailing_stop: u64,
    /// Seconds since the last price of each symbol arrived (local clock).
    pub price_age: BTreeMap<String, f64>,
    /// Server − local (ms).
    pub clock_offset_ms: i64,
    /// The run's venue's circuit breaker is open.
    pub circuit_open: bool,
}

/// A run's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    observer: Mutex<Observer>,
    /// The run's exchange (`bybit`, `binance`; `sim` for paper): the only `venue` label.
    venue: String,
    /// A live run times the unprotected windows by the wall clock ([`wall`]); else the
    /// journal's data time is observed.
    wall: Option<Mutex<wall::WallWindows>>,
    /// Label sets of the gauges set so far (a set no longer seen is set to 0, not left at its
    /// last value).
    shown: Mutex<BTreeSet<(&'static str, String, String)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("bybit")
    }
}

impl Metrics {
    /// Every metric of `LIVE.md` §6 registered (counters at 0, the circuit of `venue`
    /// closed), histograms with the buckets above. `venue` is the run's exchange: the per-venue
    /// metrics show it and no other.
    pub fn new(venue: &str) -> Metrics {
        let buckets = [
            (names::UNPROTECTED_SECONDS, UNPROTECTED_BUCKETS),
            (names::REQUEST_SECONDS, REQUEST_BUCKETS),
            (names::ENGINE_STEP_SECONDS, ENGINE_BUCKETS),
            (names::DB_COMMIT_SECONDS, COMMIT_BUCKETS),
        ];
        let mut b = PrometheusBuilder::new();
        for (name, values) in buckets {
            b = b
                .set_buckets_for_metric(Matcher::Full(name.into()), values)
                .expect("bucket lists are not empty");
        }
        let recorder = b.build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder,
            handle,
            observer: Mutex::new(Observer::default()),
            venue: venue.to_string(),
            wall: None,
            shown: Mutex::new(BTreeSet::new()),
        };
        m.with(|| {
            for r in KNOWN_TRIGGERS {
                metrics::counter!(names::TRIGGERS, "reason" => r).absolute(0);
            }
            for r in ["price", "time"] {
                metrics::counter!(names::ACTIVATIONS, "reason" => r).absolute(0);
            }
            for r in ["interval", "improvement"] {
                metrics::counter!(names::UPDATES_HELD, "reason" => r).absolute(0);
            }
            for s in ["public", "private"] {
                metrics::counter!(names::STREAM_RECONNECTS, "stream" => s).absolute(0);
            }
            metrics::gauge!(names::UNPROTECTED).set(0.0);
            metrics::gauge!(names::WITHOUT_TRAILING_STOP).set(0.0);
            metrics::gauge!(names::CLOCK_OFFSET_MS).set(0.0);
            metrics::gauge!(names::CIRCUIT_OPEN, "venue" => venue.to_string()).set(0.0);
        });
        m
    }

    /// The unprotected windows timed by the wall clock, from the commit that opened each to
    /// the one that closed it (a live run: its answers carry the data time of the point that
    /// caused them, so the journal's windows are not the time a position was bare).
    pub fn with_wall_windows(mut self) -> Metrics {
        self.wall = Some(Mutex::new(wall::WallWindows::default()));
        self
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Applies updates (from [`Observer::step`]).
    pub fn apply(&self, updates: &[Update]) {
        self.with(|| {
            for u in updates {
                match u {
                    Update::Count { name, labels } => {
                        let labels: Vec<metrics::Label> = labels
                            .iter()
                            .map(|(k, v)| metrics::Label::new(*k, v.clone()))
                            .collect();
                        metrics::counter!(*name, labels).increment(1);
                    }
                    Update::Observe { name, value } => metrics::histogram!(*name).record(*value),
                    Update::Set { name, value } => metrics::gauge!(*name).set(*value),
                }
            }
        });
    }

    /// A committed step of a position (its journal entries and the record after it).
    pub fn on_step(&self, entries: &[Entry], record: &PositionRecord) {
        let mut updates = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .step(entries, record);
        if let Some(wall) = &self.wall {
            wall.lock().unwrap_or_else(|e| e.into_inner()).time(
                record,
                &mut updates,
                std::time::Instant::now(),
            );
        }
        self.apply(&updates);
    }

    /// A stored open position taken up again (a restart): an open window counts at once.
    pub fn on_restore(&self, record: &PositionRecord) {
        let update = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restore(record);
        if let Some(wall) = &self.wall {
            wall.lock()
                .unwrap_or_else(|e| e.into_inner())
                .restore(record, std::time::Instant::now());
        }
        self.apply(&[update]);
    }

    /// One REST request to `endpoint` (its path), answered (or not) after `elapsed`.
    /// `ret_code` is the venue's code when it answered with one.
    pub fn on_request(
        &self,
        endpoint: &str,
        elapsed: Duration,
        outcome: &Outcome,
        status: Option<u16>,
        ret_code: Option<i64>,
    ) {
        self.record_request(endpoint, elapsed, error_class(outcome), status, ret_code);
    }

    /// One Binance REST request to `endpoint` (its path), answered (or not) after `elapsed`;
    /// `code` is the error body's code when it had one.
    pub fn on_binance_request(
        &self,
        endpoint: &str,
        elapsed: Duration,
        outcome: &BinanceOutcome,
        status: Option<u16>,
        code: Option<i64>,
    ) {
        self.record_request(
            endpoint,
            elapsed,
            binance_error_class(outcome),
            status,
            code,
        );
    }

    /// Times a request and, when `class` says it failed, counts it by class and code (the
    /// venue's code, else the HTTP status, else `none`).
    fn record_request(
        &self,
        endpoint: &str,
        elapsed: Duration,
        class: Option<&'static str>,
        status: Option<u16>,
        ret_code: Option<i64>,
    ) {
        let error = class.map(|class| {
            let code = match (ret_code, status) {
                (Some(c), _) if c != 0 => c.to_string(),
                (_, Some(s)) if s != 200 => s.to_string(),
                _ => "none".to_string(),
            };
            (class, code)
        });
        self.with(|| {
            metrics::histogram!(names::REQUEST_SECONDS, "endpoint" => endpoint.to_string())
                .record(elapsed.as_secs_f64());
            if let Some((class, code)) = error {
                metrics::counter!(names::EXCHANGE_ERRORS, "class" => class, "code" => code)
                    .increment(1);
            }
        });
    }

    /// A stream came back after a loss.
    pub fn on_reconnect(&self, stream: &str) {
        self.with(|| {
            metrics::counter!(names::STREAM_RECONNECTS, "stream" => stream.to_string()).increment(1)
        });
    }

    /// A reconciliation fix of `kind` (a decision other than resuming as stored).
    pub fn on_fix(&self, kind: &str) {
        self.with(|| {
            metrics::counter!(names::RECONCILE_FIXES, "kind" => kind.to_string()).increment(1)
        });
    }

    /// One price point through its symbol's engines took `elapsed`.
    pub fn on_engine_step(&self, elapsed: Duration) {
        self.with(|| metrics::histogram!(names::ENGINE_STEP_SECONDS).record(elapsed.as_secs_f64()));
    }

    /// One database transaction took `elapsed`.
    pub fn on_commit(&self, elapsed: Duration) {
        self.with(|| metrics::histogram!(names::DB_COMMIT_SECONDS).record(elapsed.as_secs_f64()));
    }

    /// Sets the gauges; a label set shown before and missing now reads 0. (The unprotected
    /// gauge is set at each commit instead, by [`Metrics::on_step`].)
    pub fn set_gauges(&self, g: &Gauges) {
        let mut now: BTreeMap<(&'static str, String, String), f64> = BTreeMap::new();
        for ((symbol, state), n) in &g.positions {
            now.insert(
                (names::POSITIONS, symbol.clone(), (*state).to_string()),
                *n as f64,
            );
        }
        for (symbol, age) in &g.price_age {
            now.insert(
                (names::PRICE_AGE_SECONDS, symbol.clone(), String::new()),
                *age,
            );
        }
        now.insert(
            (names::CIRCUIT_OPEN, self.venue.clone(), String::new()),
            if g.circuit_open { 1.0 } else { 0.0 },
        );
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        for key in shown.iter() {
            now.entry(key.clone()).or_insert(0.0);
        }
        self.with(|| {
            for ((name, a, b), v) in &now {
                match *name {
                    names::POSITIONS => {
                        metrics::gauge!(*name, "symbol" => a.clone(), "state" => b.clone()).set(*v)
                    }
                    names::PRICE_AGE_SECONDS => {
                        metrics::gauge!(*name, "symbol" => a.clone()).set(*v)
                    }
                    _ => metrics::gauge!(*name, "venue" => a.clone()).set(*v),
                }
            }
            metrics::gauge!(names::WITHOUT_TRAILING_STOP).set(g.without_trailing_stop as f64);
            metrics::gauge!(names::CLOCK_OFFSET_MS).set(g.clock_offset_ms as f64);
        });
        shown.extend(now.into_keys());
    }
}

/// The kind of fix a reconciliation decision is; `None` for a position resumed as stored.
pub fn fix_kind(d: &crate::live::reconcile::Decision) -> Option<&'static str> {
    use crate::live::reconcile::Decision;
    Some(match d {
        Decision::Resume { .. } => return None,
        Decision::Resized { .. } => "resized",
        Decision::Open { .. } => "new_position",
        Decision::CancelOrphan { .. } => "orphan_stop",
        Decision::ClosedWhileAway { .. } => "closed_while_away",
        Decision::LookUp { .. } => "look_up",
        Decision::AdoptStop { .. } => "adopt_stop",
        Decision::CancelExtra { .. } => "duplicate_stop",
        Decision::PlaceMissing { .. } => "missing_stop",
        Decision::ForeignStop { .. } => "foreign_stop",
    })
}

/// The class of a failed request (`LIVE.md` §5's classes), `None` for a success.
pub fn error_class(o: &Outcome) -> Option<&'static str> {
    Some(match o {
        Outcome::Done | Outcome::NotModified => return None,
        Outcome::WouldTrigger => "would_trigger",
        Outcome::NoPosition => "no_position",
        Outcome::Invalid { .. } => "rejected",
        Outcome::RateLimited { .. } => "rate_limited",
        Outcome::ClockSkew => "clock_skew",
        Outcome::Auth { .. } => "auth",
        Outcome::Banned => "banned",
        Outcome::Ambiguous { .. } => "ambiguous",
        Outcome::NotSent { .. } => "not_sent",
    })
}

/// The class of a failed Binance request, in the same classes as Bybit's where they mean
/// the same; `None` for a success.
pub fn binance_error_class(o: &BinanceOutcome) -> Option<&'static str> {
    Some(match o {
        BinanceOutcome::Done => return None,
        BinanceOutcome::WouldTrigger => "would_trigger",
        BinanceOutcome::NoPosition => "no_position",
        BinanceOutcome::NotFound => "not_found",
        BinanceOutcome::AlreadyExists => "already_exists",
        BinanceOutcome::Precision { .. } => "precision",
        BinanceOutcome::Invalid { .. } => "rejected",
        BinanceOutcome::RateLimited { .. } => "rate_limited",
        BinanceOutcome::ClockSkew => "clock_skew",
        BinanceOutcome::Fatal { .. } => "auth",
        BinanceOutcome::Banned { .. } => "banned",
        BinanceOutcome::BadListenKey => "bad_listen_key",
        BinanceOutcome::Ambiguous { .. } => "ambiguous",
        BinanceOutcome::NotSent { .. } => "not_sent",
    })
}

/// The value of the sample `name{labels}` in a Prometheus text (labels in any order; `""`
/// for none), if it is there. For tests and `diagnose`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
}

/// One sample of a Prometheus text.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a Prometheus text (comments skipped; label values unescaped).
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rfind(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.find('{') {
            Some(i) => (&head[..i], parse_labels(&head[i + 1..head.len() - 1])),
            None => (head, BTreeMap::new()),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &body[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every §6 metric is in the text once it moved (the fixed-label counters and the gauges
    /// from the start), the histograms with their buckets; a gauge's label set that
    /// disappears reads 0.
    #[test]
    fn every_metric_renders_and_gauges_fall_back_to_zero() {
        let m = Metrics::new("bybit");
        let fresh = m.render();
        for name in [
            names::UNPROTECTED,
            names::WITHOUT_TRAILING_STOP,
            names::TRIGGERS,
            names::ACTIVATIONS,
            names::UPDATES_HELD,
            names::STREAM_RECONNECTS,
            names::CLOCK_OFFSET_MS,
            names::CIRCUIT_OPEN,
        ] {
            assert!(
                fresh.contains(&format!("# TYPE {name} ")),
                "{name}:\n{fresh}"
            );
        }
        m.on_request(
            "/v5/position/trading-stop",
            Duration::from_millis(3),
            &Outcome::Done,
            Some(200),
            Some(0),
        );
        m.on_request(
            "/v5/position/trading-stop",
            Duration::from_millis(7),
            &Outcome::RateLimited { retry_after_ms: 5 },
            Some(200),
            Some(10006),
        );
        m.on_request(
            "/v5/position/list",
            Duration::from_secs(5),
            &Outcome::Ambiguous {
                detail: "timeout".into(),
            },
            None,
            None,
        );
        m.on_reconnect("public");
        m.on_fix("place_missing");
        m.on_engine_step(Duration::from_micros(20));
        m.on_commit(Duration::from_micros(400));
        m.apply(&[
            Update::Observe {
                name: names::UNPROTECTED_SECONDS,
                value: 0.3,
            },
            Update::Count {
                name: names::STOP_UPDATES,
                labels: vec![
                    ("symbol", "BTCUSDT".into()),
                    ("reason", "initial".into()),
                    ("result", "ok".into()),
                ],
            },
        ]);
        let mut g = Gauges::default();
        g.positions.insert(("BTCUSDT".into(), "active"), 2);
        g.price_age.insert("BTCUSDT".into(), 1.5);
        g.clock_offset_ms = -12;
        m.set_gauges(&g);
        let text = m.render();
        for name in names::ALL {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        let v = |name, labels: &[(&str, &str)]| sample(&text, name, labels);
        assert_eq!(
            v(
                names::POSITIONS,
                &[("symbol", "BTCUSDT"), ("state", "active")]
            ),
            Some(2.0)
        );
        assert_eq!(v(names::UNPROTECTED, &[]), Some(0.0));
        assert_eq!(v(names::CLOCK_OFFSET_MS, &[]), Some(-12.0));
        assert_eq!(v(names::CIRCUIT_OPEN, &[("venue", "bybit")]), Some(0.0));
        assert_eq!(
            v(
                names::EXCHANGE_ERRORS,
                &[("class", "rate_limited"), ("code", "10006")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                names::EXCHANGE_ERRORS,
                &[("class", "ambiguous"), ("code", "none")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "trailstop_exchange_request_seconds_count",
                &[("endpoint", "/v5/position/trading-stop")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v(
                "trailstop_exchange_request_seconds_bucket",
                &[("endpoint", "/v5/position/trading-stop"), ("le", "0.005")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v("trailstop_unprotected_seconds_bucket", &[("le", "0.25")]),
            Some(0.0)
        );
        assert_eq!(
            v("trailstop_unprotected_seconds_bucket", &[("le", "0.5")]),
            Some(1.0)
        );
        assert_eq!(
            v(names::STREAM_RECONNECTS, &[("stream", "public")]),
            Some(1.0)
        );
        assert_eq!(
            v(names::STREAM_RECONNECTS, &[("stream", "private")]),
            Some(0.0)
        );
        assert_eq!(
            v(names::TRIGGERS, &[("reason", "trailing_stop")]),
            Some(0.0)
        );

        // The position closed and the symbol is no longer subscribed: 0, not the old value.
        m.set_gauges(&Gauges::default());
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                names::POSITIONS,
                &[("symbol", "BTCUSDT"), ("state", "active")]
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, names::PRICE_AGE_SECONDS, &[("symbol", "BTCUSDT")]),
            Some(0.0)
        );
    }

    /// The circuit is shown for the run's exchange only, from the start and when it opens.
    #[test]
    fn the_circuit_is_shown_for_the_runs_exchange_only() {
        for (venue, other) in [("binance", "bybit"), ("bybit", "binance"), ("sim", "bybit")] {
            let m = Metrics::new(venue);
            let circuits = |text: &str| -> Vec<(String, f64)> {
                samples(text)
                    .into_iter()
                    .filter(|s| s.name == names::CIRCUIT_OPEN)
                    .map(|s| (s.labels["venue"].clone(), s.value))
                    .collect()
            };
            assert_eq!(circuits(&m.render()), [(venue.to_string(), 0.0)]);
            m.set_gauges(&Gauges {
                circuit_open: true,
                ..Gauges::default()
            });
            let text = m.render();
            assert_eq!(circuits(&text), [(venue.to_string(), 1.0)]);
            assert!(!text.contains(&format!("venue=\"{other}\"")), "{text}");
        }
    }

    /// Two runs in one process keep their own numbers (no global recorder).
    #[test]
    fn runs_do_not_share_metrics() {
        let (a, b) = (Metrics::new("bybit"), Metrics::new("bybit"));
        a.on_reconnect("private");
        let read = |m: &Metrics| {
            sample(
                &m.render(),
                names::STREAM_RECONNECTS,
                &[("stream", "private")],
            )
        };
        assert_eq!((read(&a), read(&b)), (Some(1.0), Some(0.0)));
    }

    /// A Binance request is timed under its path and a failure counted by its class and the
    /// venue's code (else the HTTP status, else `none`), as Bybit's are.
    #[test]
    fn binance_requests_are_timed_and_their_errors_counted() {
        let m = Metrics::new("binance");
        let algo = "/fapi/v1/algoOrder";
        m.on_binance_request(
            algo,
            Duration::from_millis(2),
            &BinanceOutcome::Done,
            Some(200),
            None,
        );
        m.on_binance_request(
            algo,
            Duration::from_millis(4),
            &BinanceOutcome::NotFound,
            Some(400),
            Some(-2011),
        );
        m.on_binance_request(
            algo,
            Duration::from_secs(10),
            &BinanceOutcome::Ambiguous {
                detail: "timed out".into(),
            },
            None,
            None,
        );
        m.on_binance_request(
            "/fapi/v1/time",
            Duration::from_millis(1),
            &BinanceOutcome::RateLimited { retry_after_ms: 1 },
            Some(429),
            None,
        );
        let text = m.render();
        let count = |endpoint| {
            sample(
                &text,
                "trailstop_exchange_request_seconds_count",
                &[("endpoint", endpoint)],
            )
        };
        assert_eq!(
            (count(algo), count("/fapi/v1/time")),
            (Some(3.0), Some(1.0))
        );
        let errors = |class, code| {
            sample(
                &text,
                names::EXCHANGE_ERRORS,
                &[("class", class), ("code", code)],
            )
        };
        assert_eq!(errors("not_found", "-2011"), Some(1.0));
        assert_eq!(errors("ambiguous", "none"), Some(1.0));
        assert_eq!(errors("rate_limited", "429"), Some(1.0));
        let total: f64 = samples(&text)
            .iter()
            .filter(|s| s.name == names::EXCHANGE_ERRORS)
            .map(|s| s.value)
            .sum();
        assert_eq!(total, 3.0, "the success is no error:\n{text}");
    }

    #[test]
    fn label_values_are_unescaped() {
        let s = samples("x{a=\"q\\\"uote\",b=\"2\"} 3\n# HELP y\ny 4.5\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["a"], "q\"uote");
        assert_eq!(s[0].labels["b"], "2");
        assert_eq!((s[1].name.as_str(), s[1].value), ("y", 4.5));
    }
}
