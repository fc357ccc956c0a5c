//! Runs combinations: each one a full backtest through `backtest::run::run_positions` (the same
//! engine and simulator as `trailstop backtest`), in parallel over combinations with rayon.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backtest::market::{Market, Series};
use crate::backtest::record::TradeRow;
use crate::backtest::run::{RunOptions, run_positions};
use crate::backtest::{self, Loaded, Passes};
use crate::scenario::Scenario;

use super::SweepError;
use super::grid::Grid;
use super::metrics::{self, Metrics, Objective, Trade, bars_between};

/// Walk-forward folds: `bounds[f]..bounds[f + 1]` is fold `f` (epoch ms, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folds {
    pub bounds: Vec<i64>,
}

impl Folds {
    /// `k + 1` folds of equal length (integer ms) over the market's time span.
    pub fn split(market: &Market, k: u32) -> Option<Folds> {
        let (start, end) = match &market.series {
            Series::Candles { bars, delta_ms } => (bars.first()?.ts, bars.last()?.ts + delta_ms),
            Series::Ticks { ts, .. } => (*ts.first()?, *ts.last()? + 1),
        };
        let n = k as i64 + 1;
        let span = end - start;
        if span < n {
            return None;
        }
        Some(Folds {
            bounds: (0..=n).map(|i| start + span * i / n).collect(),
        })
    }

    pub fn count(&self) -> usize {
        self.bounds.len() - 1
    }
}

/// One fold's numbers for one combination.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct FoldCells {
    /// The objective over the trades that opened *and closed* in the fold: all that was known
    /// at its end, so choosing on it looks at no later price.
    pub train: Option<f64>,
    /// The objective over the trades that opened in the fold (run to their exit).
    pub test: Option<f64>,
    /// Their total return (%).
    pub test_return: Option<f64>,
}

/// One combination's results: a row of `sweep.parquet` before the whole-grid columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub combo: u64,
    pub metrics: Metrics,
    pub objective: Option<f64>,
    pub objective_optimistic: Option<f64>,
    pub objective_pessimistic: Option<f64>,
    pub folds: Vec<FoldCells>,
}

/// Everything shared by the combinations of one sweep.
pub struct Job {
    /// The scenario as a TOML table, `--set` applied, without `[sweep]`.
    pub base: toml::Table,
    pub scenario: Scenario,
    pub loaded: Arc<Loaded>,
    pub grid: Grid,
    pub objective: Objective,
    pub folds: Option<Folds>,
    /// Also run the optimistic and pessimistic orders and count ambiguous bars.
    pub band: bool,
    /// Some axis changes what is loaded (`data.*`, `entries.*`): load per combination.
    reload: bool,
    cache: Mutex<BTreeMap<String, Arc<Loaded>>>,
}

impl Job {
    pub fn new(
        base: toml::Table,
        scenario: Scenario,
        grid: Grid,
        objective: Objective,
        walk_forward: Option<u32>,
        band: bool,
    ) -> Result<Job, SweepError> {
        let loaded = Arc::new(backtest::load(&scenario)?);
        Job::with_loaded(base, scenario, loaded, grid, objective, walk_forward, band)
    }

    /// A job on data already loaded (benches, callers that build the market themselves).
    pub fn with_loaded(
        base: toml::Table,
        scenario: Scenario,
        loaded: Arc<Loaded>,
        grid: Grid,
        objective: Objective,
        walk_forward: Option<u32>,
        band: bool,
    ) -> Result<Job, SweepError> {
        let folds = match walk_forward {
            Some(k) => Some(
                Folds::split(&loaded.market, k)
                    .ok_or_else(|| SweepError::FoldsTooShort { k, folds: k + 1 })?,
            ),
            None => None,
        };
        let reload = grid
            .axes
            .iter()
            .any(|a| a.key.starts_with("data.") || a.key.starts_with("entries."));
        Ok(Job {
            base,
            scenario,
            loaded,
            grid,
            objective,
            folds,
            band,
            reload,
            cache: Mutex::new(BTreeMap::new()),
        })
    }

    /// The scenario of one combination: the base table with the combination's values set.
    pub fn scenario_for(&self, combo: u64) -> Result<Scenario, SweepError> {
        let mut table = self.base.clone();
        for (axis, value) in self.grid.axes.iter().zip(self.grid.values(combo)) {
            crate::scenario::set_key(&mut table, &axis.path(), value.to_toml()).map_err(|m| {
                SweepError::Combo {
                    params: self.grid.describe(combo),
                    message: m,
                }
            })?;
        }
        let combo_err = |message: String| SweepError::Combo {
            params: self.grid.describe(combo),
            message,
        };
        Scenario::from_table(table, &self.scenario.source).map_err(|e| combo_err(e.to_string()))
    }

    /// The data a combination replays: the shared load unless an axis changes it.
    pub fn loaded_for(&self, s: &Scenario) -> Result<Arc<Loaded>, SweepError> {
        if !self.reload {
            return Ok(self.loaded.clone());
        }
        let key = serde_json::to_string(&(&s.data, &s.entries)).expect("sections serialise");
        if let Some(l) = self.cache.lock().expect("cache lock").get(&key) {
            return Ok(l.clone());
        }
        let l = Arc::new(backtest::load(s)?);
        self.cache
            .lock()
            .expect("cache lock")
            .insert(key, l.clone());
        Ok(l)
    }

    /// One combination, measured.
    pub fn run_combo(&self, combo: u64) -> Result<Row, SweepError> {
        let s = self.scenario_for(combo)?;
        let loaded = self.loaded_for(&s)?;
        let passes = Passes::of(&s, &loaded.market, false, self.band);
        let main = trades(&s, &loaded, passes.main)?;
        let m = metrics::compute(&main);
        let objective = self.objective.of(&m);
        let band_of = |p: Option<RunOptions>| -> Result<Option<f64>, SweepError> {
            Ok(match p {
                None => objective,
                Some(o) => self
                    .objective
                    .of(&metrics::compute(&trades(&s, &loaded, o)?)),
            })
        };
        let (objective_optimistic, objective_pessimistic) = if self.band {
            (band_of(passes.optimistic)?, band_of(passes.pessimistic)?)
        } else {
            (None, None)
        };
        let folds = match &self.folds {
            Some(f) => fold_cells(f, &main, self.objective),
            None => Vec::new(),
        };
        Ok(Row {
            combo,
            metrics: m,
            objective,
            objective_optimistic,
            objective_pessimistic,
            folds,
        })
    }

    /// Runs `combos` in parallel, [`CHUNK`](super::stream::CHUNK) at a time, handing each
    /// chunk's rows (in `combos` order) to `sink`, so only one chunk of rows is in memory.
    /// Stops after the chunk under way when `stop` is set (its finished rows are handed on).
    pub fn run_chunks(
        &self,
        combos: &[u64],
        stop: &AtomicBool,
        done: &(dyn Fn() + Sync),
        sink: &mut dyn FnMut(Vec<Row>) -> Result<(), SweepError>,
    ) -> Result<(), SweepError> {
        for chunk in combos.chunks(super::stream::CHUNK) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            sink(self.run_many(chunk, stop, done)?)?;
        }
        Ok(())
    }

    /// Runs `combos` in parallel; stops early when `stop` is set (Ctrl-C) and returns the rows
    /// finished by then, in `combos` order. `done` is called after each combination.
    pub fn run_many(
        &self,
        combos: &[u64],
        stop: &AtomicBool,
        done: &(dyn Fn() + Sync),
    ) -> Result<Vec<Row>, SweepError> {
        let failed = AtomicBool::new(false);
        let results: Vec<Option<Result<Row, SweepError>>> = combos
            .par_iter()
            .map(|&c| {
                if stop.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                    return None;
                }
                let r = self.run_combo(c);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                done();
                Some(r)
            })
            .collect();
        let mut rows = Vec::with_capacity(results.len());
        for r in results.into_iter().flatten() {
            rows.push(r?);
        }
        Ok(rows)
    }
}

fn trades(s: &Scenario, loaded: &Loaded, opts: RunOptions) -> Result<Vec<Trade>, SweepError> {
    let settings = crate::backtest::run_settings(s);
    let market = &loaded.market;
    let runs = run_positions(market, &loaded.entries, &settings, opts, |_| {})
        .map_err(|e| SweepError::Backtest(backtest::BacktestError::Engine(e)))?;
    Ok(runs
        .iter()
        .map(|r| {
            let row = TradeRow::from_run(
                r,
                &market.instrument,
                settings.taker_fee,
                settings.slippage_bps,
            );
            Trade::of(&row, bars_between(market, r.opened_at, r.close.ts))
        })
        .collect())
}

/// Per fold: the training objective (trades opened and closed inside), the test objective and
/// total return (trades opened inside).
pub fn fold_cells(folds: &Folds, trades: &[Trade], objective: Objective) -> Vec<FoldCells> {
    (0..folds.count())
        .map(|f| {
            let (a, z) = (folds.bounds[f], folds.bounds[f + 1]);
            let opened: Vec<Trade> = trades
                .iter()
                .filter(|t| t.entry_time >= a && t.entry_time < z)
                .cloned()
                .collect();
            let closed: Vec<Trade> = opened.iter().filter(|t| t.exit_time < z).cloned().collect();
            let test = metrics::compute(&opened);
            FoldCells {
                train: objective.of(&metrics::compute(&closed)),
                test: objective.of(&test),
                test_return: test.total_return_pct,
            }
        })
        .collect()
}

impl Job {
    /// The scenario's own parameters, measured like a combination's main run.
    pub fn run_scenario_itself(&self) -> Result<Metrics, SweepError> {
        let passes = Passes::of(&self.scenario, &self.loaded.market, false, self.band);
        Ok(metrics::compute(&trades(
            &self.scenario,
            &self.loaded,
            passes.main,
        )?))
    }
}
