//! `trailstop state --db PATH [--events ID] [--json]`: the trailing-stop state stored in a
//! database (opened read-only: this command never changes it).

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::store::{OpenOptions, PositionRecord, RowKind, Store};
use crate::timefmt::iso_ms;

#[derive(clap::Args)]
pub struct Args {
    /// The SQLite database (as written by `trailstop paper`).
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// Print one position's journal: each step's input and the events it produced.
    #[arg(long, value_name = "ID")]
    events: Option<u64>,
    /// JSON for machines: one object for the list, JSON lines for --events.
    #[arg(long)]
    json: bool,
    /// Rebuild every position from its journal alone and check it equals the stored state.
    #[arg(long, conflicts_with = "events")]
    verify: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open(&args.db, OpenOptions::read_only())?;
    let mut out = std::io::stdout().lock();
    if args.verify {
        let n = store.verify()?;
        println!(
            "{}: {n} positions rebuilt from trailing_stop_events, each equal to its stored state",
            store.path().display()
        );
        return Ok(());
    }
    // One read snapshot: a `paper` run committing meanwhile is seen before or after a step.
    let text = store.read_snapshot(|store| {
        Ok(match args.events {
            Some(id) => events(store, id, args.json),
            None => list(store, args.json),
        })
    })??;
    let written = out.write_all(text.as_bytes());
    // A closed pipe (`| head`) is not an error.
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn record_json(r: &PositionRecord) -> Value {
    let e = r.engine();
    let driver: Value = serde_json::from_str(&r.driver).unwrap_or(Value::Null);
    json!({
        "position_id": e.position.id,
        "symbol": e.position.symbol,
        "side": e.position.side,
        "entry_price": e.position.entry_price.to_string(),
        "opened_at": e.position.opened_at,
        "state": e.state,
        "extreme": e.extreme.to_string(),
        "desired_stop": e.desired.map(|(d, _)| d.to_string()),
        "desired_origin": e.desired.map(|(_, o)| o),
        "sent_stop": e.sent.map(|(d, _)| d.to_string()),
        "sent_at": e.sent.map(|(_, t)| t),
        "confirmed_stop": e.confirmed.map(|d| d.to_string()),
        "exchange_order_id": r.exchange_order_id(),
        "activated_at": e.activated_at,
        "exit_reason": e.exit,
        "exit_price": r.closed().map(|c| e.instrument.decimal(c.fill).to_string()),
        "stop_updates": e.counters.stop_updates,
        "updates_held": e.counters.updates_held,
        "emergency_updates": e.counters.emergency_updates,
        // The paper driver's own state (the market cursor, the ambiguity count).
        "ambiguous_bars": driver.get("ambiguous_bars"),
        "next_index": driver.pointer("/cursor/next"),
        "order": r.runner.order,
        "driver": driver,
        "config_hash": crate::store::config_hash(&e.config),
        "distance_percent": e.config.distance_percent.to_string(),
        "activation_percent": e.config.activation_percent.to_string(),
        "version": r.version,
        "updated_at": r.updated_at,
    })
}

fn list(store: &Store, as_json: bool) -> anyhow::Result<String> {
    let records = store.records()?;
    if as_json {
        let v = json!({
            "database": store.path().display().to_string(),
            "schema_version": store.schema_version()?,
            "paper_next_index": store.meta("paper.next_index")?.and_then(|s| s.parse::<u64>().ok()),
            "positions": records.iter().map(record_json).collect::<Vec<_>>(),
        });
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let open = records.iter().filter(|r| r.closed().is_none()).count();
    let mut text = format!(
        "{}: {} positions ({open} open, {} closed)\n",
        store.path().display(),
        records.len(),
        records.len() - open
    );
    text.push_str(&format!(
        "{:>4}  {:<5}  {:<21}  {:>12}  {:>12}  {:>22}  {:>12}  {:>12}  {:<14}  {:>7}  {:<24}  {:>7}\n",
        "id", "side", "state", "entry", "extreme", "desired stop", "sent stop", "on exchange",
        "order id", "sent/held", "updated at (data time)", "version"
    ));
    for r in &records {
        let e = r.engine();
        let desired = e.desired.map(|(d, o)| {
            format!(
                "{d} ({})",
                serde_json::to_value(o)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        });
        let state = match r.closed() {
            Some(c) => format!("closed:{}", c.reason.as_str()),
            None => serde_json::to_value(e.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        };
        text.push_str(&format!(
            "{:>4}  {:<5}  {:<21}  {:>12}  {:>12}  {:>22}  {:>12}  {:>12}  {:<14}  {:>7}  {:<24}  {:>7}\n",
            e.position.id,
            e.position.side.as_str(),
            state,
            e.position.entry_price.to_string(),
            e.extreme.to_string(),
            opt(desired),
            opt(e.sent.map(|(d, _)| d)),
            opt(e.confirmed),
            opt(r.exchange_order_id()),
            format!("{}/{}", e.counters.stop_updates, e.counters.updates_held),
            iso_ms(r.updated_at),
            r.version
        ));
    }
    Ok(text)
}

fn events(store: &Store, id: u64, as_json: bool) -> anyhow::Result<String> {
    let rows = store.journal(id)?;
    if rows.is_empty() {
        let ids = store.journal_ids()?;
        let known = match (ids.first(), ids.last()) {
            (Some(a), Some(b)) => format!("positions {a}..={b}"),
            _ => "no positions".to_string(),
        };
        anyhow::bail!(
            "{}: no position {id} (the database has {known})",
            store.path().display()
        );
    }
    // Runner inputs hold prices in integer units; the listing shows them as decimals.
    let decimals = rows.first().and_then(|r| {
        let v: Value = serde_json::from_str(&r.payload).ok()?;
        v.pointer("/instrument/price_decimals")?.as_u64()
    });
    let mut text = String::new();
    for row in &rows {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        if as_json {
            let line = json!({
                "position_id": id,
                "seq": row.seq,
                "step": row.step,
                "kind": row.kind.as_str(),
                "payload": payload,
            });
            text.push_str(&line.to_string());
            text.push('\n');
            continue;
        }
        // A venue input shows the venue's event in its place.
        let (kind, mut rest) = match payload.get("event") {
            Some(ev) => (
                format!(
                    "venue:{}",
                    ev.get("type").and_then(Value::as_str).unwrap_or("?")
                ),
                ev.clone(),
            ),
            None => (
                payload
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
                payload.clone(),
            ),
        };
        if let (RowKind::Input, Some(d), Some(m)) = (row.kind, decimals, rest.as_object_mut()) {
            let show =
                |units: i64| Value::String(rust_decimal::Decimal::new(units, d as u32).to_string());
            for key in ["price", "stop", "fill", "market", "entry"] {
                if let Some(units) = m.get(key).and_then(Value::as_i64) {
                    m.insert(key.into(), show(units));
                }
            }
            if let Some(Value::Array(points)) = m.get_mut("points") {
                for p in points.iter_mut() {
                    if let Some(units) = p.get(1).and_then(Value::as_i64) {
                        p[1] = show(units);
                    }
                }
            }
        }
        let ts = rest.get("ts").and_then(Value::as_i64).map(iso_ms);
        if let Some(m) = rest.as_object_mut() {
            m.remove("type");
            m.remove("ts");
        }
        let marker = match row.kind {
            RowKind::Input => "▶",
            RowKind::Event => " ",
        };
        text.push_str(&format!(
            "{:>6}  {:>5}  {marker} {:<14}  {:<24}  {}\n",
            row.seq,
            row.step,
            kind,
            opt(ts),
            rest
        ));
    }
    Ok(text)
}
