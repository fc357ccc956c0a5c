//! The upgrade of a schema-version-1 database (written by `paper` up to trailstop 0.x of
//! issue 10) to version 2: its journal recorded market steps ([`MarketStep`]: bars with the
//! detail points they used, ticks, the end of the data); each position's steps are replayed
//! through today's [`Replay`] with a recording tap, which gives the runner inputs and events
//! version 2 journals. Every step must emit exactly its journalled events and the replay must
//! end exactly at the stored row; anything else is refused, and the store then changes nothing.

use rusqlite::Connection;

use crate::backtest::replay::Replay;
use crate::engine::Event;
use crate::runner::{Entry, Recorder};
use crate::store::{Converted, PositionRecord};

use super::legacy_record::{self, V1Record};
use super::step::{DetailSource, MarketStep, apply, apply_open};

/// Converts every position of a version-1 database ([`crate::store::UpgradeV1`]).
pub fn upgrade_v1(db: &Connection) -> Result<Vec<Converted>, String> {
    let sql = |e: rusqlite::Error| e.to_string();
    let ids: Vec<i64> = {
        let mut st = db
            .prepare(
                "SELECT position_id FROM trailing_stop_events UNION \
                 SELECT position_id FROM trailing_stop_state ORDER BY 1",
            )
            .map_err(sql)?;
        st.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(sql)?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let record = read_v1_row(db, id)?
            .ok_or_else(|| format!("position {id}: a journal without a state row"))?;
        let rows = read_v1_journal(db, id)?;
        out.push(convert(&rows, &record).map_err(|m| format!("position {id}: {m}"))?);
    }
    Ok(out)
}

/// One version-1 journal row: `(seq, step, kind, payload)`.
type V1Row = (i64, i64, String, String);

fn read_v1_row(db: &Connection, id: i64) -> Result<Option<V1Record>, String> {
    let mut st = db
        .prepare(&format!(
            "SELECT {} FROM trailing_stop_state WHERE position_id = ?1",
            legacy_record::COLUMNS
        ))
        .map_err(|e| e.to_string())?;
    let mut rows = st.query([id]).map_err(|e| e.to_string())?;
    match rows.next().map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(row) => legacy_record::from_row(row)
            .map(Some)
            .map_err(|m| format!("position {id}: trailing_stop_state: {m}")),
    }
}

fn read_v1_journal(db: &Connection, id: i64) -> Result<Vec<V1Row>, String> {
    let mut st = db
        .prepare(
            "SELECT seq, step, kind, payload FROM trailing_stop_events \
             WHERE position_id = ?1 ORDER BY seq",
        )
        .map_err(|e| e.to_string())?;
    st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())
}

/// Replays one position's version-1 steps with a recording tap.
fn convert(rows: &[V1Row], v1: &V1Record) -> Result<Converted, String> {
    let mut replay: Option<Replay> = None;
    let mut steps: Vec<Vec<Entry>> = Vec::new();
    let mut record: Option<PositionRecord> = None;
    let mut i = 0;
    let mut n_steps = 0u64;
    while i < rows.len() {
        n_steps += 1;
        let step = n_steps;
        let (seq, row_step, kind, payload) = &rows[i];
        if *row_step != step as i64 || kind != "input" {
            return Err(format!(
                "row {seq} should open step {step} with its input, found step {row_step} {kind}"
            ));
        }
        let mut input: MarketStep = serde_json::from_str(payload)
            .map_err(|e| format!("step {step}: row {seq}: input: {e}"))?;
        let mut j = i + 1;
        while j < rows.len() && rows[j].1 == step as i64 {
            if rows[j].2 != "event" {
                return Err(format!("step {step}: row {}: a second input", rows[j].0));
            }
            j += 1;
        }
        let journalled = rows[i + 1..j]
            .iter()
            .map(|r| serde_json::from_str::<Event>(&r.3))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("step {step}: an event: {e}"))?;
        let mut rec = Recorder::default();
        match replay.as_mut() {
            None => {
                replay = Some(
                    apply_open(&input, &mut rec)
                        .map_err(|e| format!("step {step}: {e}"))?
                        .0,
                )
            }
            Some(r) => {
                apply(r, &mut input, DetailSource::Journal, &mut rec)
                    .map_err(|e| format!("step {step}: {e}"))?;
            }
        }
        let events: Vec<&Event> = rec
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Event(ev) => Some(ev),
                Entry::Input(_) => None,
            })
            .collect();
        if !events.iter().copied().eq(journalled.iter()) {
            return Err(format!(
                "step {step}: the replay emits {:?} where the journal has {:?}",
                events.iter().map(|e| e.kind()).collect::<Vec<_>>(),
                journalled.iter().map(Event::kind).collect::<Vec<_>>()
            ));
        }
        let r = replay.as_ref().expect("opened by the first step");
        if !rec.entries.is_empty() {
            let driver = serde_json::to_string(&r.driver()).expect("serialises");
            let entries = rec.journal();
            record = Some(PositionRecord::after_step(
                record.as_ref(),
                r.sim.snapshot(),
                driver,
                &entries,
            ));
            steps.push(entries);
        } else if let Some(prev) = record.as_mut() {
            // Only the cursor moved: the driver's state, not a journal step.
            prev.driver = serde_json::to_string(&r.driver()).expect("serialises");
        }
        i = j;
    }
    let (Some(replay), Some(mut record)) = (replay, record) else {
        return Err("no journal rows".into());
    };
    if n_steps != v1.version || rows.len() as u64 != v1.last_seq {
        return Err(format!(
            "the journal has {n_steps} steps and {} rows, the state row says version {} and \
             row {}",
            rows.len(),
            v1.version,
            v1.last_seq
        ));
    }
    let replayed = replay.snapshot();
    if replayed != v1.replay {
        let json = |v| serde_json::to_string(v).expect("serialises");
        let diff = super::diff_json(&json(&v1.replay), &json(&replayed));
        return Err(format!(
            "its journal replays to another state than its row holds (stored → replayed: {})",
            diff.join("; ")
        ));
    }
    record.driver = serde_json::to_string(&replay.driver()).expect("serialises");
    Ok(Converted { steps, record })
}
