//! The paper runner: a scenario's market streamed step by step through the engine, the store
//! and the simulated exchange, the way the live runner will run — and resumable at any point.
//!
//! The market is walked in time order, one bar (or trade tick) at a time. At each index `g`,
//! in one transaction: the positions whose replay starts at `g` open, every open position
//! replays bar `g` (through [`step::apply`], the backtester's own [`Replay`] step), at the last
//! index the still-open ones close at the end of the data, and the runner's clock moves to
//! `g + 1`. The store journals what the runner took in (price points, the simulated venue's
//! answers, the close) through a recording tap; the replay's own state (the venue's orders,
//! the cursor, the bar rules) is this driver's blob in the state row. Killed at any moment, a
//! restart finds the last committed index and continues from there; positions are
//! independent, so the result is the backtest's, byte for byte.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use thiserror::Error;

use crate::backtest::market::{Market, Series};
use crate::backtest::replay::{BarRules, Replay, ReplayDriver, RestoreError};
use crate::backtest::run::{PlannedPosition, PositionRun, plan_positions};
use crate::backtest::{self, BacktestError, Loaded, Report};
use crate::engine::EngineError;
use crate::runner::{Entry, Recorder};
use crate::scenario::Scenario;
use crate::store::{PositionRecord, RowKind, StepWrite, Store, StoreError, config_json, fnv1a};

pub mod legacy;
mod legacy_record;
pub mod step;

pub use legacy::upgrade_v1;
use step::{ApplyError, DetailSource, MarketStep, apply, apply_open};

/// `trailstop_meta` keys.
const META_SCENARIO: &str = "paper.scenario";
const META_CONFIG: &str = "paper.config";
const META_NEXT: &str = "paper.next_index";

#[derive(Debug, Error)]
pub enum PaperError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("position {position}, market index {index}: {source}")]
    Step {
        position: u64,
        index: usize,
        source: ApplyError,
    },
    #[error(
        "{path} holds a paper run of another scenario or other data ({diff}); \
         use another --db; nothing was changed"
    )]
    OtherRun { path: PathBuf, diff: String },
    #[error("{path}: {problem}; nothing was changed")]
    Inconsistent { path: PathBuf, problem: String },
    #[error(
        "{path}: position {position}: its paper state (driver_json): {problem}; nothing was changed"
    )]
    Driver {
        path: PathBuf,
        position: u64,
        problem: String,
    },
}

/// The replay of a stored position: its runner and this driver's blob, checked against each
/// other.
fn restore(store: &Store, rec: &PositionRecord) -> Result<Replay, PaperError> {
    let bad = |problem: String| PaperError::Driver {
        path: store.path().to_path_buf(),
        position: rec.id(),
        problem,
    };
    let driver = driver_of(store, rec)?;
    Replay::from_parts(&rec.runner, driver).map_err(|e| match e {
        RestoreError::Engine(e) => PaperError::Engine(e),
        other => bad(other.to_string()),
    })
}

fn driver_of(store: &Store, rec: &PositionRecord) -> Result<ReplayDriver, PaperError> {
    serde_json::from_str(&rec.driver).map_err(|e| PaperError::Driver {
        path: store.path().to_path_buf(),
        position: rec.id(),
        problem: e.to_string(),
    })
}

fn driver_json(r: &Replay) -> String {
    serde_json::to_string(&r.driver()).expect("a driver state serialises")
}

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaperOptions {
    /// Replay at this multiple of real time (sleeping between steps); `None`: as fast as possible.
    pub speed: Option<f64>,
}

/// What a run said about itself, for the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A new run starts at index 0 of `len`.
    Started { len: usize, positions: usize },
    /// A run resumes at `next` of `len` with `open` positions open.
    Resumed {
        next: usize,
        len: usize,
        open: usize,
        closed: usize,
    },
    /// The trailing config differs from the stored run's: `changes` lists `key: old → new`; the
    /// rule was applied to `open` positions.
    ConfigChanged { changes: Vec<String>, open: usize },
    /// Market step `index` is committed: `steps` position steps in one transaction.
    Committed { index: usize, steps: usize },
}

/// A committed market step, for an observer (`paper --http`'s metrics and status).
pub struct Progress<'a> {
    pub index: usize,
    pub len: usize,
    /// The data time and trigger price of the step (the bar's close, or the tick).
    pub ts: i64,
    pub price: rust_decimal::Decimal,
    /// The position steps committed: each one's journal entries and its record after it.
    pub steps: &'a [(Vec<Entry>, PositionRecord)],
}

/// Runs (or resumes) the scenario's paper run in `store` and returns its report.
pub fn run(
    scenario: &Scenario,
    loaded: &Loaded,
    store: &mut Store,
    opts: PaperOptions,
    notice: impl FnMut(Notice),
) -> Result<Report, PaperError> {
    run_observed(scenario, loaded, store, opts, notice, |_| {})
}

/// [`run`], telling `observe` each committed market step.
pub fn run_observed(
    scenario: &Scenario,
    loaded: &Loaded,
    store: &mut Store,
    opts: PaperOptions,
    mut notice: impl FnMut(Notice),
    mut observe: impl FnMut(Progress<'_>),
) -> Result<Report, PaperError> {
    let market = &loaded.market;
    let settings = backtest::run_settings(scenario);
    let run_opts = backtest::main_options(scenario, market);
    let planned = plan_positions(market, &loaded.entries, &settings.symbol)?;
    let len = market.len();
    let fingerprint = fingerprint(scenario, market);
    let config = config_json(&scenario.trailing);

    let stored_fp = store.meta(META_SCENARIO)?;
    let next = match &stored_fp {
        None => {
            if !store.records()?.is_empty() || !store.journal_ids()?.is_empty() {
                return Err(PaperError::Inconsistent {
                    path: store.path().to_path_buf(),
                    problem: "positions are stored but no paper run is recorded".into(),
                });
            }
            store.commit(
                &[],
                &[
                    (META_SCENARIO, &fingerprint),
                    (META_CONFIG, &config),
                    (META_NEXT, "0"),
                ],
            )?;
            notice(Notice::Started {
                len,
                positions: planned.len(),
            });
            0
        }
        Some(fp) => {
            if *fp != fingerprint {
                return Err(PaperError::OtherRun {
                    path: store.path().to_path_buf(),
                    diff: diff_json(fp, &fingerprint).join("; "),
                });
            }
            let next = store.meta(META_NEXT)?.unwrap_or_default();
            next.parse::<usize>()
                .ok()
                .filter(|&n| n <= len)
                .ok_or_else(|| PaperError::Inconsistent {
                    path: store.path().to_path_buf(),
                    problem: format!("{META_NEXT} is \"{next}\" for a market of {len} steps"),
                })?
        }
    };

    let records = store.records()?;
    check_resume(store, &planned, &records, next)?;
    // Every open position's row must be what its journal rebuilds to, before anything moves.
    for rec in records.iter().filter(|r| r.closed().is_none()) {
        store.check_row(rec)?;
    }
    let mut open: BTreeMap<u64, (Replay, PositionRecord)> = BTreeMap::new();
    for rec in &records {
        if rec.closed().is_none() {
            open.insert(rec.id(), (restore(store, rec)?, rec.clone()));
        }
    }
    if stored_fp.is_some() {
        notice(Notice::Resumed {
            next,
            len,
            open: open.len(),
            closed: records.len() - open.len(),
        });
        let stored_config = store.meta(META_CONFIG)?.unwrap_or_default();
        if stored_config != config {
            let changes = diff_json(&stored_config, &config);
            change_config(store, scenario, &mut open, &config)?;
            notice(Notice::ConfigChanged {
                changes,
                open: open.len(),
            });
        }
    }

    // Positions still to open, by the market index their replay starts at.
    let mut starts: BTreeMap<usize, Vec<&PlannedPosition>> = BTreeMap::new();
    for p in planned.iter().filter(|p| p.cursor.next >= next) {
        starts.entry(p.cursor.next).or_default().push(p);
    }
    let source = || DetailSource::Market {
        series: market.detail.as_ref(),
        policy: run_opts.policy,
    };
    let mut steps: Vec<(Vec<Entry>, PositionRecord)> = Vec::new();
    for g in next..len {
        if let Some(speed) = opts.speed
            && g > next
        {
            let dt = time_at(market, g) - time_at(market, g - 1);
            std::thread::sleep(Duration::from_secs_f64(dt.max(0) as f64 / 1000.0 / speed));
        }
        steps.clear();
        for p in starts.remove(&g).unwrap_or_default() {
            let input = MarketStep::Open {
                position: p.position.clone(),
                instrument: market.instrument,
                config: scenario.trailing.clone(),
                model: settings.model,
                rules: BarRules::of(run_opts, market.detail.is_some()),
                cursor: p.cursor,
            };
            let mut tap = Recorder::default();
            let (r, _) = apply_open(&input, &mut tap).map_err(|source| PaperError::Step {
                position: p.position.id,
                index: g,
                source,
            })?;
            let entries = tap.journal();
            let rec = PositionRecord::after_step(None, r.sim.snapshot(), driver_json(&r), &entries);
            if !r.is_closed() {
                open.insert(p.position.id, (r, rec.clone()));
            }
            steps.push((entries, rec));
        }
        for (&id, (r, rec)) in open.iter_mut() {
            let mut input = market_input(market, g);
            step(r, rec, &mut input, source(), &mut steps).map_err(|source| PaperError::Step {
                position: id,
                index: g,
                source,
            })?;
            if g + 1 == len && !r.is_closed() {
                let mut input = end_input(market);
                step(r, rec, &mut input, source(), &mut steps).map_err(|source| {
                    PaperError::Step {
                        position: id,
                        index: g,
                        source,
                    }
                })?;
            }
        }
        open.retain(|_, (r, _)| !r.is_closed());
        let writes = StepWrite::all(&steps);
        let next = (g + 1).to_string();
        // An index where nothing happens writes nothing; a restart replays it as a no-op.
        if !writes.is_empty() || g + 1 == len {
            store.commit(&writes, &[(META_NEXT, &next)])?;
            notice(Notice::Committed {
                index: g,
                steps: writes.len(),
            });
            let (ts, price) = point_at(market, g);
            observe(Progress {
                index: g,
                len,
                ts,
                price,
                steps: &steps,
            });
        }
    }
    finish(scenario, loaded, store, &planned)
}

/// Applies one step to an open position and queues its write: what the runner took in and
/// emitted, and the record after it.
fn step(
    r: &mut Replay,
    rec: &mut PositionRecord,
    input: &mut MarketStep,
    source: DetailSource<'_>,
    steps: &mut Vec<(Vec<Entry>, PositionRecord)>,
) -> Result<(), ApplyError> {
    let mut tap = Recorder::default();
    apply(r, input, source, &mut tap)?;
    let entries = tap.journal();
    *rec = PositionRecord::after_step(Some(rec), r.sim.snapshot(), driver_json(r), &entries);
    steps.push((entries, rec.clone()));
    Ok(())
}

fn market_input(market: &Market, g: usize) -> MarketStep {
    match &market.series {
        Series::Candles { bars, delta_ms } => {
            let span = crate::sim::path::bar_span(bars, g, *delta_ms);
            MarketStep::bar(g, &bars[g], span, &market.instrument)
        }
        Series::Ticks { ts, price } => MarketStep::Tick {
            index: g,
            ts: ts[g],
            price: market.instrument.decimal(price[g]),
        },
    }
}

/// The end of the data: the last candle's close at `t + Δ - 1`, or the last tick.
fn end_input(market: &Market) -> MarketStep {
    let (price, ts) = match &market.series {
        Series::Candles { bars, delta_ms } => {
            let last = bars.last().expect("a market has data");
            (last.close, last.ts + delta_ms - 1)
        }
        Series::Ticks { ts, price } => (price[price.len() - 1], ts[ts.len() - 1]),
    };
    MarketStep::EndOfData {
        ts,
        price: market.instrument.decimal(price),
    }
}

/// The data time and price of market step `g` (a candle's close, or the tick).
fn point_at(market: &Market, g: usize) -> (i64, rust_decimal::Decimal) {
    let (ts, units) = match &market.series {
        Series::Candles { bars, .. } => (bars[g].ts, bars[g].close),
        Series::Ticks { ts, price } => (ts[g], price[g]),
    };
    (ts, market.instrument.decimal(units))
}

fn time_at(market: &Market, g: usize) -> i64 {
    match &market.series {
        Series::Candles { bars, .. } => bars[g].ts,
        Series::Ticks { ts, .. } => ts[g],
    }
}

/// Applies a changed trailing config to every open position (the stop never loosens; the new
/// settings apply to future moves) and records it as the run's config, in one transaction.
fn change_config(
    store: &mut Store,
    scenario: &Scenario,
    open: &mut BTreeMap<u64, (Replay, PositionRecord)>,
    config: &str,
) -> Result<(), PaperError> {
    let mut steps = Vec::new();
    for (&id, (r, rec)) in open.iter_mut() {
        if r.sim.engine.config() == &scenario.trailing {
            continue;
        }
        let mut input = MarketStep::ConfigChanged {
            ts: rec.updated_at,
            config: scenario.trailing.clone(),
        };
        let source = DetailSource::Journal;
        step(r, rec, &mut input, source, &mut steps).map_err(|source| PaperError::Step {
            position: id,
            index: r.cursor.next,
            source,
        })?;
    }
    let writes = StepWrite::all(&steps);
    store.commit(&writes, &[(META_CONFIG, config)])?;
    Ok(())
}

/// Checks that the stored positions are this run's: the ones whose replay starts before `next`
/// are stored (as planned), the later ones are not, and the open ones stand at `next`.
fn check_resume(
    store: &Store,
    planned: &[PlannedPosition],
    records: &[PositionRecord],
    next: usize,
) -> Result<(), PaperError> {
    let bad = |problem: String| PaperError::Inconsistent {
        path: store.path().to_path_buf(),
        problem,
    };
    let stored: BTreeMap<u64, &PositionRecord> = records.iter().map(|r| (r.id(), r)).collect();
    for p in planned {
        let id = p.position.id;
        match (p.cursor.next < next, stored.get(&id)) {
            (true, None) => return Err(bad(format!("position {id} is missing"))),
            (false, Some(_)) => {
                return Err(bad(format!(
                    "position {id} is stored but opens after the run's clock ({next})"
                )));
            }
            (true, Some(r)) => {
                if r.engine().position != p.position {
                    return Err(bad(format!(
                        "position {id} is stored with another entry than the scenario's"
                    )));
                }
                let at = driver_of(store, r)?.cursor.next;
                if r.closed().is_none() && at != next {
                    return Err(bad(format!(
                        "open position {id} stands at market index {at}, the run at {next}"
                    )));
                }
            }
            (false, None) => {}
        }
    }
    if let Some(r) = records.iter().find(|r| r.id() as usize > planned.len()) {
        return Err(bad(format!(
            "position {} is not one of the scenario's",
            r.id()
        )));
    }
    Ok(())
}

/// The report of a finished run, from the database: each position's numbers from its state
/// row, its events from its journal.
fn finish(
    scenario: &Scenario,
    loaded: &Loaded,
    store: &Store,
    planned: &[PlannedPosition],
) -> Result<Report, PaperError> {
    let bad = |problem: String| PaperError::Inconsistent {
        path: store.path().to_path_buf(),
        problem,
    };
    let records = store.records()?;
    if records.len() != planned.len() {
        return Err(bad(format!(
            "{} positions stored where the scenario has {}",
            records.len(),
            planned.len()
        )));
    }
    let mut runs: Vec<PositionRun> = Vec::with_capacity(records.len());
    for rec in &records {
        let replay = restore(store, rec)?;
        let mut run = replay
            .run()
            .ok_or_else(|| bad(format!("position {} is still open at the end", rec.id())))?;
        for row in store.journal(rec.id())? {
            if row.kind == RowKind::Event {
                run.events
                    .push(serde_json::from_str(&row.payload).map_err(|e| {
                        bad(format!(
                            "position {}, journal row {}: {e}",
                            rec.id(),
                            row.seq
                        ))
                    })?);
            }
        }
        runs.push(run);
    }
    Ok(backtest::report_from_runs(
        scenario,
        loaded,
        runs,
        |_, _| {},
    )?)
}

/// What identifies a run besides its trailing config: the scenario's other sections and the
/// market data itself (size, price precision and a hash of every price).
fn fingerprint(scenario: &Scenario, market: &Market) -> String {
    let series = |s: &Series| -> Value {
        let mut bytes = Vec::new();
        match s {
            Series::Candles { bars, delta_ms } => {
                bytes.extend(delta_ms.to_le_bytes());
                for b in bars {
                    for v in [b.ts, b.open, b.high, b.low, b.close] {
                        bytes.extend(v.to_le_bytes());
                    }
                }
            }
            Series::Ticks { ts, price } => {
                for (t, p) in ts.iter().zip(price) {
                    bytes.extend(t.to_le_bytes());
                    bytes.extend(p.to_le_bytes());
                }
            }
        }
        let kind = match s {
            Series::Candles { .. } => "candles",
            Series::Ticks { .. } => "ticks",
        };
        json!({ "kind": kind, "rows": bytes.len(), "hash": fnv1a(&bytes) })
    };
    json!({
        "name": scenario.name,
        "data": scenario.data,
        "entries": scenario.entries,
        "exchange": scenario.exchange,
        "intrabar": scenario.intrabar,
        "price_decimals": market.instrument.price_decimals,
        "market": series(&market.series),
        "detail": market.detail.as_ref().map(series),
    })
    .to_string()
}

/// `key: old → new` for every leaf that differs between two JSON texts.
pub fn diff_json(old: &str, new: &str) -> Vec<String> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &parse(old), &mut a);
    flatten("", &parse(new), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(none)".into());
            format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}
