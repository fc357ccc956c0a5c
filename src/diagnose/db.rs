//! The checks a database alone allows (`diagnose --db`, and the database part of a live
//! diagnosis). Read-only: nothing is written.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Finding, PositionRow, Report, Severity};
use crate::engine::{Event, SendReason};
use crate::runner::Entry;
use crate::store::{PositionRecord, Store, StoreError};
use crate::venue::Phase;

/// A replace window longer than this is reported (the alert's threshold too).
pub const UNPROTECTED_WARN_MS: i64 = 5_000;

pub fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::NoStop => "no_stop",
        Phase::Placing { .. } => "placing",
        Phase::Resting { .. } => "resting",
        Phase::Amending { .. } => "amending",
        Phase::Cancelling { .. } => "cancelling",
        Phase::Unknown { .. } => "unknown",
        Phase::Closing => "closing",
        Phase::Closed => "closed",
    }
}

/// The table row of a stored position.
pub fn row(rec: &PositionRecord) -> PositionRow {
    let e = rec.engine();
    PositionRow {
        position: rec.id(),
        symbol: e.position.symbol.clone(),
        side: e.position.side.as_str(),
        state: match rec.closed() {
            Some(c) => format!("closed ({})", c.reason.as_str()),
            None => match e.state {
                crate::engine::State::Inactive => "inactive".into(),
                crate::engine::State::Active => "active".into(),
                crate::engine::State::Triggered => "triggered".into(),
            },
        },
        entry_price: e.position.entry_price.to_string(),
        sent_stop: e.sent.map(|(s, _)| s.to_string()),
        confirmed_stop: e.confirmed.map(|s| s.to_string()),
        phase: phase_name(&rec.runner.order.phase),
        stop_updates: e.counters.stop_updates,
        updates_held: e.counters.updates_held,
        unprotected_ms: rec.runner.order.unprotected_ms,
        exchange_stop: None,
    }
}

/// Which exchange position a live record manages (its driver state), if it is a live one.
fn exchange_key(rec: &PositionRecord) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(&rec.driver).ok()?;
    Some((
        v.get("symbol")?.as_str()?.to_string(),
        v.get("position_idx")?.as_u64()?,
    ))
}

/// Every check on `store`, into `report` (findings, the table, the journal's counts).
pub fn check(store: &Store, report: &mut Report) -> Result<(), StoreError> {
    let records = store.records()?;
    let mut owners: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for rec in &records {
        let id = rec.id();
        let e = rec.engine();
        let symbol = e.position.symbol.clone();
        report.positions.push(row(rec));
        let open = rec.closed().is_none();
        *counts
            .entry(if open {
                "positions_open".into()
            } else {
                "positions_closed".into()
            })
            .or_default() += 1.0;
        if open {
            if let Err(err) = store.check_row(rec) {
                report.add(
                    Finding::new(
                        Severity::Critical,
                        "journal_diverged",
                        "the stored state is not what its journal rebuilds to".into(),
                        json!({ "error": err.to_string() }),
                    )
                    .position(id)
                    .symbol(&symbol),
                );
            }
            if let Some(key) = exchange_key(rec) {
                owners.entry(key).or_default().push(id);
            }
            let order = &rec.runner.order;
            if e.sent.is_some() && order.phase == Phase::NoStop {
                report.add(
                    Finding::new(
                        Severity::Critical,
                        "missing_stop",
                        "a stop was sent and none rests or is on its way".into(),
                        json!({
                            "sent_stop": e.sent.map(|(s, _)| s.to_string()),
                            "phase": "no_stop",
                            "unprotected_since": order.unprotected_since,
                        }),
                    )
                    .position(id)
                    .symbol(&symbol),
                );
            } else if let Some(since) = order.unprotected_since {
                report.add(
                    Finding::new(
                        Severity::Warning,
                        "unprotected_now",
                        format!("no stop rests since {since} (a command in flight)"),
                        json!({ "since": since, "phase": phase_name(&order.phase) }),
                    )
                    .position(id)
                    .symbol(&symbol),
                );
            }
        }
        if rec.runner.order.unprotected_ms > UNPROTECTED_WARN_MS {
            report.add(
                Finding::new(
                    Severity::Warning,
                    "long_unprotected",
                    format!(
                        "{} ms without a resting stop in all",
                        rec.runner.order.unprotected_ms
                    ),
                    json!({ "unprotected_ms": rec.runner.order.unprotected_ms }),
                )
                .position(id)
                .symbol(&symbol),
            );
        }
        journal_checks(store, rec, report, &mut counts)?;
    }
    for ((symbol, idx), ids) in owners {
        if ids.len() > 1 {
            report.add(
                Finding::new(
                    Severity::Critical,
                    "duplicate_stop",
                    format!(
                        "{} open trailing stops manage one exchange position (index {idx})",
                        ids.len()
                    ),
                    json!({ "positions": ids, "position_idx": idx }),
                )
                .symbol(&symbol),
            );
        }
    }
    for (k, v) in counts {
        *report.metrics.entry(k).or_default() += v;
    }
    Ok(())
}

/// From a position's journal: no stop loosened (the sends, and the confirmations), the
/// normal sends spaced by the interval; the events counted by type.
fn journal_checks(
    store: &Store,
    rec: &PositionRecord,
    report: &mut Report,
    counts: &mut BTreeMap<String, f64>,
) -> Result<(), StoreError> {
    let id = rec.id();
    let e = rec.engine();
    let symbol = e.position.symbol.as_str();
    let sign = e.position.side.sign();
    let interval_ms = e.config.rate_limit.min_interval_seconds as i64 * 1000;
    let mut last_sent: Option<(rust_decimal::Decimal, i64)> = None;
    let mut last_confirmed: Option<rust_decimal::Decimal> = None;
    for row in store.journal(id)? {
        let Ok(Entry::Event(ev)) = row.entry() else {
            continue;
        };
        *counts.entry(format!("events.{}", ev.kind())).or_default() += 1.0;
        let looser = |from: rust_decimal::Decimal, to: rust_decimal::Decimal| {
            if sign > 0 { to < from } else { to > from }
        };
        match ev {
            Event::UpdateSent {
                ts, stop, reason, ..
            } => {
                if let Some((prev, prev_ts)) = last_sent {
                    if looser(prev, stop) {
                        report.add(
                            Finding::new(
                                Severity::Critical,
                                "stop_loosened",
                                format!("a stop was sent looser than the one before: {prev} → {stop}"),
                                json!({ "journal_seq": row.seq, "ts": ts, "previous": prev.to_string(), "stop": stop.to_string() }),
                            )
                            .position(id)
                            .symbol(symbol),
                        );
                    }
                    if reason == SendReason::Normal && ts - prev_ts < interval_ms {
                        report.add(
                            Finding::new(
                                Severity::Warning,
                                "rate_limit",
                                format!(
                                    "a normal send {} ms after the last one (interval {} s)",
                                    ts - prev_ts,
                                    interval_ms / 1000
                                ),
                                json!({ "journal_seq": row.seq, "ts": ts, "previous_ts": prev_ts }),
                            )
                            .position(id)
                            .symbol(symbol),
                        );
                    }
                }
                last_sent = Some((stop, ts));
            }
            Event::StopConfirmed { ts, stop } => {
                if let Some(prev) = last_confirmed
                    && looser(prev, stop)
                {
                    report.add(
                        Finding::new(
                            Severity::Critical,
                            "stop_loosened",
                            format!("a confirmed stop moved looser: {prev} → {stop}"),
                            json!({ "journal_seq": row.seq, "ts": ts, "previous": prev.to_string(), "stop": stop.to_string() }),
                        )
                        .position(id)
                        .symbol(symbol),
                    );
                }
                last_confirmed = Some(stop);
            }
            _ => {}
        }
    }
    Ok(())
}
