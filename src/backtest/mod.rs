//! `trailstop backtest`: a scenario's data replayed through the engine against the simulated
//! exchange, with the optimistic/pessimistic band (DESIGN §3–§4).

pub mod checks;
pub mod market;
pub mod metrics;
pub mod output;
pub mod record;
pub mod replay;
pub mod run;
pub mod skip;

use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::Serialize;
use thiserror::Error;

use crate::data::{self, DataError, GapReport};
use crate::engine::{EngineError, Event, ExitReason, Instrument};
use crate::scenario::{DetailBars, Scenario};
use crate::sim::entries::{self, EntrySpec};
use crate::sim::exchange::VenueModel;
use crate::sim::path::{Bar, Policy};

use market::{Market, Series};
use metrics::Metrics;
use record::TradeRow;
use run::{PositionRun, RunOptions, RunSettings, run_positions};

#[derive(Debug, Error)]
pub enum BacktestError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Entries(#[from] entries::EntriesError),
    /// A tick the engine's units cannot hold (`--tick-size`; a scenario's `data.tick_size` is
    /// refused when the scenario is read).
    #[error("tick_size {}: {} decimals; at most {} are supported", .0.value, .0.decimals, crate::engine::fixed::MAX_PRICE_DECIMALS)]
    Tick(market::TooManyDecimals),
    /// An entry price given on the command line that the engine's units cannot hold.
    #[error("entry price {0}")]
    EntryPrice(market::TooManyDecimals),
    /// The engine refused an input (a setting, a price); its message names what.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
}

/// The data a scenario replays, loaded and converted once.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub market: Market,
    pub entries: Vec<EntrySpec>,
    pub source: PathBuf,
    pub rows: usize,
    pub gaps: Option<GapReport>,
    /// What the run should say about its inputs (printed by the CLI, kept in `summary.json`).
    pub warnings: Vec<String>,
    /// Why no position opens, when none does (also one of the warnings): a run of 0 trades says so.
    pub no_positions: Option<String>,
}

/// Where market data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Candles,
    Trades,
}

/// Market data as loaded, in exact decimals.
pub enum Raw {
    Candles(data::Candles),
    Trades(data::Trades),
}

impl Raw {
    pub fn load(kind: DataKind, path: &std::path::Path) -> Result<Raw, DataError> {
        Ok(match kind {
            DataKind::Candles => Raw::Candles(data::load_candles(path)?),
            DataKind::Trades => Raw::Trades(data::load_trades(path)?),
        })
    }

    /// [`Raw::load`] of bytes already read from `path` (a pipe).
    pub fn load_in(kind: DataKind, path: &std::path::Path, bytes: &[u8]) -> Result<Raw, DataError> {
        Ok(match kind {
            DataKind::Candles => Raw::Candles(data::load_candles_in(path, bytes)?),
            DataKind::Trades => Raw::Trades(data::load_trades_in(path, bytes)?),
        })
    }

    /// Finer data: candles, or trade ticks when the file has no candle columns.
    pub fn load_detail(path: &std::path::Path) -> Result<Raw, DataError> {
        match data::load_candles(path) {
            Ok(c) => Ok(Raw::Candles(c)),
            Err(e) => data::load_trades(path).map(Raw::Trades).map_err(|_| e),
        }
    }

    /// The fewest decimals that hold every price; the error names the row and the field.
    fn decimals(&self, path: &std::path::Path) -> Result<u32, BacktestError> {
        let columns: Vec<(&str, &[Decimal])> = match self {
            Raw::Candles(c) => vec![
                ("open", &c.open),
                ("high", &c.high),
                ("low", &c.low),
                ("close", &c.close),
            ],
            Raw::Trades(t) => vec![("price", &t.price)],
        };
        let mut dp = 0;
        for (field, values) in columns {
            dp = dp.max(
                market::decimals_for(values).map_err(|e| BacktestError::Input {
                    path: path.to_path_buf(),
                    message: format!("row {}, field `{field}`: {e}", e.index + 1),
                })?,
            );
        }
        Ok(dp)
    }

    /// The first and the last timestamp (of a non-empty load).
    fn span(&self) -> (i64, i64) {
        let ts = match self {
            Raw::Candles(c) => &c.ts,
            Raw::Trades(t) => &t.ts,
        };
        (
            ts.first().copied().unwrap_or(0),
            ts.last().copied().unwrap_or(0),
        )
    }

    fn rows(&self) -> usize {
        match self {
            Raw::Candles(c) => c.ts.len(),
            Raw::Trades(t) => t.ts.len(),
        }
    }

    /// Keeps the rows in `[start, end)` (epoch ms; `None` leaves that side open); the candles'
    /// gap report is made anew for the rows kept.
    fn keep_range(&mut self, (start, end): (Option<i64>, Option<i64>)) {
        if start.is_none() && end.is_none() {
            return;
        }
        let span = |ts: &[i64]| {
            let a = start.map_or(0, |s| ts.partition_point(|&t| t < s));
            let z = end.map_or(ts.len(), |e| ts.partition_point(|&t| t < e));
            a..z.max(a)
        };
        // In place: the rows after the range go first, then those before it.
        fn cut<T>(v: &mut Vec<T>, r: &std::ops::Range<usize>) {
            v.truncate(r.end);
            v.drain(..r.start);
        }
        match self {
            Raw::Candles(c) => {
                let r = span(&c.ts);
                for v in [&mut c.open, &mut c.high, &mut c.low, &mut c.close] {
                    cut(v, &r);
                }
                cut(&mut c.ts, &r);
                c.gaps = GapReport::from_timestamps(&c.ts);
            }
            Raw::Trades(t) => {
                let r = span(&t.ts);
                cut(&mut t.price, &r);
                cut(&mut t.ts, &r);
            }
        }
    }

    /// The first price and its time.
    fn first_price(&self) -> Option<(Decimal, i64)> {
        match self {
            Raw::Candles(c) => Some((*c.open.first()?, *c.ts.first()?)),
            Raw::Trades(t) => Some((*t.price.first()?, *t.ts.first()?)),
        }
    }

    /// `interval`: the candle interval when given (`[data] interval`), else inferred.
    fn into_series(
        self,
        dp: u32,
        path: &std::path::Path,
        interval: Option<i64>,
    ) -> Result<Series, BacktestError> {
        let out_of_range = |i: usize, field: &str, v: &[Decimal]| BacktestError::Input {
            path: path.to_path_buf(),
            message: format!("row {}, field `{field}`: {} is out of range", i + 1, v[i]),
        };
        Ok(match self {
            Raw::Candles(c) => {
                let conv = |v: &[Decimal], field: &str| {
                    market::to_units(v, dp).map_err(|i| out_of_range(i, field, v))
                };
                let (o, h, l, cl) = (
                    conv(&c.open, "open")?,
                    conv(&c.high, "high")?,
                    conv(&c.low, "low")?,
                    conv(&c.close, "close")?,
                );
                let bars = (0..c.ts.len())
                    .map(|i| Bar {
                        ts: c.ts[i],
                        open: o[i],
                        high: h[i],
                        low: l[i],
                        close: cl[i],
                    })
                    .collect();
                let delta_ms =
                    interval.unwrap_or_else(|| data::interval_ms(&c.ts).unwrap_or(60_000));
                Series::Candles { bars, delta_ms }
            }
            Raw::Trades(t) => {
                let price = market::to_units(&t.price, dp)
                    .map_err(|i| out_of_range(i, "price", &t.price))?;
                Series::Ticks { ts: t.ts, price }
            }
        })
    }
}

/// Loads candles or trades (and optional finer `detail` data) and converts them to integer
/// units at the fewest decimals that hold every price, the tick and `extra_prices` (priced
/// entries) exactly.
pub fn load_market<'a>(
    kind: DataKind,
    path: &std::path::Path,
    detail: Option<&std::path::Path>,
    tick: Decimal,
    extra_prices: impl IntoIterator<Item = &'a Decimal>,
) -> Result<(Market, usize, Option<GapReport>), BacktestError> {
    let m = load_market_with(kind, path, detail, tick, extra_prices, None, (None, None))?;
    Ok((m.market, m.rows, m.gaps))
}

/// A market as [`load_market_with`] loads it.
pub struct MarketData {
    pub market: Market,
    pub rows: usize,
    pub gaps: Option<GapReport>,
    pub warnings: Vec<String>,
}

/// [`load_market`] with the candle interval given (`[data] interval`, else inferred), the rows
/// kept to `range` (`[data] start` / `end`, `[start, end)` in epoch ms) and the warnings about
/// the data kept.
pub fn load_market_with<'a>(
    kind: DataKind,
    path: &std::path::Path,
    detail: Option<&std::path::Path>,
    tick: Decimal,
    extra_prices: impl IntoIterator<Item = &'a Decimal>,
    interval: Option<i64>,
    range: (Option<i64>, Option<i64>),
) -> Result<MarketData, BacktestError> {
    market_of(
        Raw::load(kind, path)?,
        path,
        detail,
        tick,
        extra_prices,
        interval,
        range,
    )
}

/// [`load_market`] of bytes already read from `path`: a FIFO or `/dev/stdin`, which can be read
/// only once.
pub fn load_market_in<'a>(
    kind: DataKind,
    path: &std::path::Path,
    bytes: &[u8],
    tick: Decimal,
    extra_prices: impl IntoIterator<Item = &'a Decimal>,
) -> Result<(Market, usize, Option<GapReport>), BacktestError> {
    let raw = Raw::load_in(kind, path, bytes)?;
    let m = market_of(raw, path, None, tick, extra_prices, None, (None, None))?;
    Ok((m.market, m.rows, m.gaps))
}

/// The market of loaded data (`path` names it in errors).
fn market_of<'a>(
    mut raw: Raw,
    path: &std::path::Path,
    detail: Option<&std::path::Path>,
    tick: Decimal,
    extra_prices: impl IntoIterator<Item = &'a Decimal>,
    interval: Option<i64>,
    range: (Option<i64>, Option<i64>),
) -> Result<MarketData, BacktestError> {
    let input_err = |path: &std::path::Path, message: String| BacktestError::Input {
        path: path.to_path_buf(),
        message,
    };
    if raw.rows() == 0 {
        return Err(input_err(path, "no data rows".into()));
    }
    let before = raw.span();
    raw.keep_range(range);
    if raw.rows() == 0 {
        let side = |t: Option<i64>| t.map_or("…".to_string(), crate::data::format_ms);
        return Err(input_err(
            path,
            format!(
                "data.start / data.end: the time range [{}, {}) holds none of the data ({} to {})",
                side(range.0),
                side(range.1),
                crate::data::format_ms(before.0),
                crate::data::format_ms(before.1)
            ),
        ));
    }
    if let Some((first, ts)) = raw.first_price()
        && let Some(m) = checks::coarse_tick(tick, first, ts)
    {
        return Err(input_err(path, m));
    }
    let mut dp = market::decimals_for([&tick]).map_err(BacktestError::Tick)?;
    dp = dp.max(raw.decimals(path)?);
    dp = dp.max(market::decimals_for(extra_prices).map_err(BacktestError::EntryPrice)?);
    let detail_raw = match detail {
        Some(d) => {
            let r = Raw::load_detail(d)?;
            dp = dp.max(r.decimals(d)?);
            Some((r, d))
        }
        None => None,
    };
    let mut warnings = Vec::new();
    let gaps = match &raw {
        Raw::Candles(c) => {
            let given = interval.is_some();
            let interval = interval.unwrap_or(c.gaps.interval_ms);
            warnings.extend(checks::short_steps(path, &c.ts, interval, given));
            Some(if given {
                GapReport::with_interval(&c.ts, interval)
            } else {
                c.gaps
            })
        }
        Raw::Trades(_) => None,
    };
    let rows = raw.rows();
    let series = raw.into_series(dp, path, interval)?;
    let detail = match detail_raw {
        Some((r, d)) => {
            let fine = r.into_series(dp, d, None)?;
            if let Series::Candles { bars, delta_ms } = &series
                && checks::covered_bars(bars, *delta_ms, &fine) == 0
            {
                return Err(input_err(
                    d,
                    format!(
                        "data.detail covers none of the candles: it runs from {}, the candles ({}) from {}; no bar could be resolved from it",
                        checks::span_text(&fine),
                        path.display(),
                        checks::span_text(&series)
                    ),
                ));
            }
            Some(fine)
        }
        None => None,
    };
    Ok(MarketData {
        market: Market::new(Instrument::with_price_decimals(tick, dp), series, detail),
        rows,
        gaps,
        warnings,
    })
}

/// Loads the scenario's market data and entries.
pub fn load(scenario: &Scenario) -> Result<Loaded, BacktestError> {
    let tick = scenario.data.tick_size;
    let (kind, source) = match (&scenario.data.candles, &scenario.data.trades) {
        (Some(c), _) => (DataKind::Candles, scenario.resolve_file("data.candles", c)?),
        (None, Some(t)) => (DataKind::Trades, scenario.resolve_file("data.trades", t)?),
        (None, None) => unreachable!("validated"),
    };
    let e = &scenario.entries;
    let entries_file = match &e.file {
        Some(f) => Some(scenario.resolve_file("entries.file", f)?),
        None => None,
    };
    let range = scenario.data.time_range();
    let inside = |t: i64| range.0.is_none_or(|a| t >= a) && range.1.is_none_or(|z| t < z);
    // An entry outside the time range is not replayed (it would open at the range's edge).
    let mut outside = 0;
    let file_entries = match &entries_file {
        Some(f) => {
            let mut lines = entries::read_file_lines(f)?;
            let n = lines.len();
            lines.retain(|(_, e)| inside(e.time));
            outside = n - lines.len();
            Some(lines)
        }
        None => None,
    };
    if let (Some(f), Some(lines)) = (&entries_file, &file_entries) {
        for (line, e) in lines {
            if let Some(p) = &e.price {
                market::decimals_for([p]).map_err(|e| entries::EntriesError::Field {
                    path: f.clone(),
                    line: *line,
                    field: "price",
                    problem: e.to_string(),
                })?;
            }
        }
    }
    let entry_prices = file_entries
        .iter()
        .flatten()
        .filter_map(|(_, e)| e.price.as_ref());
    let detail = match &scenario.data.detail {
        Some(d) => Some(scenario.resolve_file("data.detail", d)?),
        None => None,
    };
    let interval = match &scenario.data.interval {
        Some(i) => Some(entries::parse_duration_ms(i).map_err(|problem| {
            entries::EntriesError::Duration {
                key: "data.interval",
                problem,
            }
        })?),
        None => None,
    };
    let MarketData {
        market,
        rows,
        gaps,
        mut warnings,
    } = load_market_with(
        kind,
        &source,
        detail.as_deref(),
        tick,
        entry_prices,
        interval,
        range,
    )?;
    let times = market.entry_times();
    let (entries, lines): (Vec<EntrySpec>, Vec<usize>) = match (file_entries, &e.every, e.random) {
        (Some(f), _, _) => f.into_iter().map(|(line, e)| (e, line)).unzip(),
        (None, Some(every), _) => {
            let ms = entries::parse_duration_ms(every).map_err(|problem| {
                entries::EntriesError::Duration {
                    key: "entries.every",
                    problem,
                }
            })?;
            (entries::every(&times, ms, e.side), Vec::new())
        }
        (None, None, Some(n)) => {
            if n as usize > times.len() {
                warnings.push(format!(
                    "entries.random = {n} is more than the {} {} of the data: {} entries, one at each",
                    times.len(),
                    if matches!(market.series, Series::Ticks { .. }) {
                        "ticks"
                    } else {
                        "candles"
                    },
                    times.len()
                ));
            }
            (
                entries::random(&times, n, e.seed.unwrap_or(0), e.side),
                Vec::new(),
            )
        }
        _ => unreachable!("validated"),
    };
    let where_of = |k: usize| match (&entries_file, lines.get(k)) {
        (Some(f), Some(line)) => format!("{}: line {line}", f.display()),
        _ => format!("entry {}", k + 1),
    };
    checks::entry_prices(&market, &entries, where_of, &mut warnings)?;
    let mut no_positions = None;
    if run::plan_positions(&market, &entries, "").is_ok_and(|planned| planned.is_empty()) {
        let what = match (&entries_file, entries.first(), entries.last()) {
            (Some(f), None, _) if outside > 0 => format!(
                "none of the {outside} entries of {} lies inside the time range (data.start / data.end: {})",
                f.display(),
                checks::span_text(&market.series)
            ),
            (Some(f), None, _) => format!("{} lists no entries", f.display()),
            (_, Some(a), Some(z)) => format!(
                "none of the {} entries ({} to {}) has a price point after it in the data ({})",
                entries.len(),
                crate::data::format_ms(a.time),
                crate::data::format_ms(z.time),
                checks::span_text(&market.series)
            ),
            _ => "there are no entries".into(),
        };
        warnings.push(format!("{what}: no position opens, 0 trades"));
        no_positions = Some(what);
    }
    Ok(Loaded {
        market,
        entries,
        source,
        rows,
        gaps,
        warnings,
        no_positions,
    })
}

/// Totals of one run, from its metrics ([`metrics::compute`], the sweep's own): an undefined
/// value (the mean or win rate of no trades) is `null`, as it is an empty cell in `sweep.csv`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    pub policy: Policy,
    pub trades: usize,
    pub wins: usize,
    pub win_rate: Option<f64>,
    pub total_return_pct: f64,
    pub mean_return_pct: Option<f64>,
}

impl Totals {
    pub fn of(policy: Policy, m: &Metrics, rows: &[TradeRow]) -> Totals {
        Totals {
            policy,
            trades: rows.len(),
            wins: rows.iter().filter(|r| r.pnl_pct > Decimal::ZERO).count(),
            win_rate: m.win_rate,
            total_return_pct: m.total_return_pct.unwrap_or(0.0),
            mean_return_pct: m.mean_return_pct,
        }
    }
}

/// The metrics `summary.json` has beyond [`Totals`] and the counters (added keys; the sweep's
/// column names).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratios {
    pub profit_factor: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub sharpe: Option<f64>,
    pub mean_giveback_pct: Option<f64>,
    pub capture_ratio: Option<f64>,
    pub ambiguous_share: Option<f64>,
}

impl Ratios {
    fn of(m: &Metrics) -> Ratios {
        Ratios {
            profit_factor: m.profit_factor,
            max_drawdown_pct: m.max_drawdown_pct,
            sharpe: m.sharpe,
            mean_giveback_pct: m.mean_giveback_pct,
            capture_ratio: m.capture_ratio,
            ambiguous_share: m.ambiguous_share,
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub symbol: String,
    pub data: String,
    pub data_rows: usize,
    pub interval_ms: Option<i64>,
    pub gaps: Option<GapReport>,
    pub price_decimals: u32,
    pub venue: String,
    /// The run's own totals (with its policy).
    #[serde(flatten)]
    pub totals: Totals,
    pub exit_reasons: std::collections::BTreeMap<String, usize>,
    pub stop_updates: u64,
    pub updates_held: u64,
    pub emergency_updates: u64,
    pub unprotected_ms: i64,
    pub ambiguous_bars: u64,
    #[serde(flatten)]
    pub ratios: Ratios,
    /// The whole run under the optimistic and the pessimistic intrabar order.
    pub band: Band,
    /// What the run said about its inputs (absent when nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// All of the run's metrics, as a sweep cell has them (the values above come from here).
    #[serde(skip)]
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct Band {
    pub optimistic: Totals,
    pub pessimistic: Totals,
}

/// A finished backtest: rows, events by position, summary.
pub struct Report {
    pub rows: Vec<TradeRow>,
    pub events: Vec<(u64, Vec<Event>)>,
    pub summary: Summary,
}

/// The scenario's run settings (symbol, trailing config, venue model, fees).
pub fn run_settings(scenario: &Scenario) -> RunSettings {
    RunSettings {
        symbol: scenario.data.symbol.clone(),
        trailing: scenario.trailing.clone(),
        model: VenueModel {
            venue: scenario.exchange.venue,
            update_latency_ms: scenario.exchange.update_latency_ms as i64,
        },
        taker_fee: scenario.exchange.fee(),
        slippage_bps: scenario.exchange.slippage_bps,
    }
}

/// The runs a scenario needs: its own (the one that writes `trades.csv` and the events) and
/// the optimistic and pessimistic band passes; a band pass of `None` is the own run itself.
/// Chosen here alone, for the backtest and for every sweep cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passes {
    pub main: RunOptions,
    pub optimistic: Option<RunOptions>,
    pub pessimistic: Option<RunOptions>,
}

impl Passes {
    /// The scenario's own policy with its detail data (when there is some), and the two band
    /// orders on the candles alone (the band is the guess under each order); trade ticks have
    /// no intrabar order, so no band pass. `events`: keep the own run's events; `ambiguity`:
    /// count its ambiguous bars (on candles).
    pub fn of(scenario: &Scenario, market: &Market, events: bool, ambiguity: bool) -> Passes {
        let discrete = matches!(market.series, Series::Ticks { .. });
        let policy = scenario.intrabar.policy;
        let main = RunOptions {
            policy,
            events,
            ambiguity: ambiguity && !discrete,
            detail: market.detail.as_ref().map(|d| {
                scenario.data.detail_bars.unwrap_or(match d {
                    Series::Ticks { .. } => DetailBars::All,
                    Series::Candles { .. } => DetailBars::Ambiguous,
                })
            }),
        };
        let band = |p: Policy| {
            (!(discrete || (p == policy && market.detail.is_none()))).then_some(RunOptions {
                policy: p,
                events: false,
                ambiguity: false,
                detail: None,
            })
        };
        Passes {
            main,
            optimistic: band(Policy::Optimistic),
            pessimistic: band(Policy::Pessimistic),
        }
    }

    /// The backtest's: events kept, ambiguity counted.
    pub fn backtest(scenario: &Scenario, market: &Market) -> Passes {
        Passes::of(scenario, market, true, true)
    }

    /// How many runs over the entries these passes make.
    pub fn count(&self) -> usize {
        1 + usize::from(self.optimistic.is_some()) + usize::from(self.pessimistic.is_some())
    }
}

/// The options of the scenario's own run (see [`Passes::backtest`]).
pub fn main_options(scenario: &Scenario, market: &Market) -> RunOptions {
    Passes::backtest(scenario, market).main
}

/// Runs the scenario under its policy (with events and ambiguity) and under the optimistic and
/// pessimistic orders for the band.
pub fn run_scenario(
    scenario: &Scenario,
    loaded: &Loaded,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, BacktestError> {
    let market = &loaded.market;
    let settings = run_settings(scenario);
    let n = loaded.entries.len();
    let passes = Passes::backtest(scenario, market).count();
    let main = run_positions(
        market,
        &loaded.entries,
        &settings,
        main_options(scenario, market),
        |k| progress(k, n * passes),
    )?;
    report_from_runs(scenario, loaded, main, progress)
}

/// The report of a scenario whose own run is `main` (from `run_positions` with
/// [`main_options`], or from the paper runner's database): its rows and events as they are,
/// the band from fresh optimistic and pessimistic passes.
pub fn report_from_runs(
    scenario: &Scenario,
    loaded: &Loaded,
    main: Vec<PositionRun>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, BacktestError> {
    let market = &loaded.market;
    let settings = run_settings(scenario);
    let policy = scenario.intrabar.policy;
    let n = loaded.entries.len();
    let plan = Passes::backtest(scenario, market);
    let passes = plan.count();
    let rows_of = |runs: &[PositionRun]| -> Vec<TradeRow> {
        runs.iter()
            .map(|r| {
                TradeRow::from_run(
                    r,
                    &market.instrument,
                    settings.taker_fee,
                    settings.slippage_bps,
                )
            })
            .collect()
    };
    let rows = rows_of(&main);
    let own = metrics::compute(&metrics::trades_of(market, &rows));
    let mut pass = 0;
    let mut band_for = |p: Policy,
                        opts: Option<RunOptions>,
                        progress: &mut dyn FnMut(usize, usize)|
     -> Result<Totals, BacktestError> {
        let Some(opts) = opts else {
            return Ok(Totals::of(p, &own, &rows));
        };
        pass += 1;
        let runs = run_positions(market, &loaded.entries, &settings, opts, |k| {
            progress(pass * n + k, n * passes)
        })?;
        let band_rows = rows_of(&runs);
        let m = metrics::compute(&metrics::trades_of(market, &band_rows));
        Ok(Totals::of(p, &m, &band_rows))
    };
    let optimistic = band_for(Policy::Optimistic, plan.optimistic, &mut progress)?;
    let pessimistic = band_for(Policy::Pessimistic, plan.pessimistic, &mut progress)?;
    progress(n * passes, n * passes);
    let mut exit_reasons = std::collections::BTreeMap::new();
    for r in [
        ExitReason::TrailingStop,
        ExitReason::InitialStop,
        ExitReason::BreakevenStop,
        ExitReason::ExitNow,
        ExitReason::EndOfData,
    ] {
        exit_reasons.insert(
            r.as_str().to_string(),
            rows.iter().filter(|t| t.exit_reason == r).count(),
        );
    }
    let summary = Summary {
        scenario: scenario.name.clone(),
        symbol: scenario.data.symbol.clone(),
        data: loaded.source.display().to_string(),
        data_rows: loaded.rows,
        interval_ms: match &market.series {
            Series::Candles { delta_ms, .. } => Some(*delta_ms),
            Series::Ticks { .. } => None,
        },
        gaps: loaded.gaps,
        price_decimals: market.instrument.price_decimals,
        venue: format!("{:?}", scenario.exchange.venue).to_lowercase(),
        totals: Totals::of(policy, &own, &rows),
        exit_reasons,
        stop_updates: own.stop_updates as u64,
        updates_held: own.updates_held as u64,
        emergency_updates: own.emergency_updates as u64,
        unprotected_ms: own.unprotected_ms,
        ambiguous_bars: own.ambiguous_bars as u64,
        ratios: Ratios::of(&own),
        band: Band {
            optimistic,
            pessimistic,
        },
        warnings: loaded.warnings.clone(),
        metrics: own,
    };
    let events = main.into_iter().map(|r| (r.id, r.events)).collect();
    Ok(Report {
        rows,
        events,
        summary,
    })
}
