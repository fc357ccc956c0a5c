//! `report.json`: what the pictures need besides `sweep.parquet`, saved by the sweep so that
//! `trailstop report DIR` re-renders without running anything.

use serde::{Deserialize, Serialize};

use super::metrics::{Metrics, Objective};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub scenario: String,
    pub objective: Objective,
    /// Cumulative return of the best, the most robust and the scenario's own parameters.
    pub curves: Vec<Curve>,
    /// Top and worst trades of the best parameters.
    pub charts: Vec<TradeChart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// `best`, `robust` or `scenario`.
    pub label: String,
    /// `key=value` pairs.
    pub params: String,
    pub metrics: Metrics,
    /// (exit time ms, cumulative `pnl_pct` after that exit), trades in exit order.
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
}

/// One trade's picture: prices as f64 (drawing only; the exact values are in the title).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeChart {
    /// File stem under `trades/`.
    pub file: String,
    pub title: String,
    pub side: String,
    pub entry_time: i64,
    pub entry_price: f64,
    pub exit_time: i64,
    pub exit_price: f64,
    pub exit_reason: String,
    /// Candle width in ms (candles may be merged for long trades).
    pub candle_ms: i64,
    pub candles: Vec<Candle>,
    /// The best price seen since the entry (long: highest, short: lowest), as steps.
    pub peak: Vec<(i64, f64)>,
    /// The engine's desired stop, as steps.
    pub desired: Vec<(i64, f64)>,
    /// The stop resting on the exchange, as steps; `None` while none rests.
    pub exchange: Vec<(i64, Option<f64>)>,
    pub activation: Option<(i64, f64)>,
}
