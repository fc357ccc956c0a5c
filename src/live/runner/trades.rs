//! A closed live position appended to `<out>/trades.csv` and `<out>/events.jsonl` with the
//! backtest's columns (`LIVE.md` §5), so a live period and its backtest compare trade by
//! trade. The row is the backtest's own [`TradeRow`]; live fills are real, so no fee or
//! slippage model is applied to them.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use super::book::Slot;
use crate::backtest::record::{PositionRun, TRADES_HEADER, TradeRow};
use crate::engine::Event;
use crate::store::{RowKind, Store, StoreError};

/// The `trades.csv` row of a closed position.
pub fn row(slot: &Slot) -> Option<TradeRow> {
    let close = slot.runner.closed()?;
    let e = slot.runner.engine.snapshot();
    let run = PositionRun {
        id: e.position.id,
        side: e.position.side,
        opened_at: e.position.opened_at,
        entry: e.instrument.units(e.position.entry_price)?,
        close,
        counters: e.counters,
        unprotected_ms: slot.runner.unprotected_ms(),
        favourable_units: slot.runner.favourable_units(),
        adverse_units: slot.runner.adverse_units(),
        ambiguous_bars: 0,
        events: Vec::new(),
    };
    Some(TradeRow::from_run(
        &run,
        &e.instrument,
        Decimal::ZERO,
        Decimal::ZERO,
    ))
}

/// One `events.jsonl` line, as the backtest writes it.
#[derive(Serialize)]
struct Line<'a> {
    position_id: u64,
    #[serde(flatten)]
    event: &'a Event,
}

/// The engine events of position `id`, from its journal.
pub fn events(store: &Store, id: u64) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    for r in store.journal(id)? {
        if r.kind == RowKind::Event
            && let Ok(e) = serde_json::from_str::<Event>(&r.payload)
        {
            out.push(e);
        }
    }
    Ok(out)
}

fn append(path: &Path, header: Option<&str>, text: &str) -> std::io::Result<()> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(named)?;
    let mut s = String::new();
    if let (true, Some(h)) = (fresh, header) {
        s.push_str(h);
        s.push('\n');
    }
    s.push_str(text);
    f.write_all(s.as_bytes()).map_err(named)?;
    f.sync_data().map_err(named)
}

/// The position ids `<out>/trades.csv` holds already (none when there is no such file).
pub fn written(out: &Path) -> BTreeSet<u64> {
    std::fs::read_to_string(out.join("trades.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect()
}

/// Appends the row and the events of one closed position to `out`'s two files.
pub fn append_closed(out: &Path, row: &TradeRow, events: &[Event]) -> std::io::Result<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", out.display())))?;
    append(
        &out.join("trades.csv"),
        Some(TRADES_HEADER),
        &format!("{}\n", row.csv_line()),
    )?;
    let mut lines = String::new();
    for event in events {
        let line = Line {
            position_id: row.position_id,
            event,
        };
        lines.push_str(&serde_json::to_string(&line).expect("events serialise"));
        lines.push('\n');
    }
    append(&out.join("events.jsonl"), None, &lines)
}
