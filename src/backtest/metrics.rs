//! A run's numbers from its trades (exact decimals until the final conversion): every sweep
//! cell's and the backtest's `summary.json` (one implementation).
//!
//! Definitions (also in the README, "Sweeps and reports"):
//! - returns are `pnl_pct` of `trades.csv` (net of fees, percent of the entry notional), summed
//!   (not compounded: positions are independent and may overlap);
//! - `max_drawdown_pct`: the deepest fall of the cumulative `pnl_pct` curve below its running
//!   peak (which starts at 0), trades taken in exit order (ties by position id), in percentage
//!   points, ≥ 0;
//! - `sharpe`: per-trade mean `pnl_pct` over its sample standard deviation (n − 1), not
//!   annualised; empty with fewer than 2 trades or no spread;
//! - `mean_giveback_pct`: mean of `mfe_pct − pnl_pct` (peak profit minus what was kept, fees
//!   included);
//! - `capture_ratio`: `Σ pnl_pct / Σ mfe_pct`; empty when no trade had a favourable excursion;
//! - `profit_factor`: gross profit over gross loss; empty when nothing was lost;
//! - `ambiguous_share`: ambiguous bars over bars replayed (each position's bars from its entry
//!   bar to its exit bar, both included).

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::backtest::market::{Market, Series};
use crate::backtest::record::TradeRow;

/// What a metric needs of one trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub id: u64,
    pub entry_time: i64,
    pub exit_time: i64,
    pub pnl_pct: Decimal,
    pub mfe_pct: Decimal,
    pub stop_updates: u32,
    pub updates_held: u32,
    pub emergency_updates: u32,
    pub unprotected_ms: i64,
    pub ambiguous_bars: u32,
    /// Bars the position was replayed on (entry and exit bars included); 0 for ticks.
    pub bars: u64,
}

impl Trade {
    pub fn of(row: &TradeRow, bars: u64) -> Trade {
        Trade {
            id: row.position_id,
            entry_time: row.entry_time,
            exit_time: row.exit_time,
            pnl_pct: row.pnl_pct,
            mfe_pct: row.mfe_pct,
            stop_updates: row.stop_updates,
            updates_held: row.updates_held,
            emergency_updates: row.emergency_updates,
            unprotected_ms: row.unprotected_ms,
            ambiguous_bars: row.ambiguous_bars,
            bars,
        }
    }
}

/// Bars a position was replayed on, entry and exit bars included (0 for ticks).
pub fn bars_between(market: &Market, opened_at: i64, exit_ts: i64) -> u64 {
    match &market.series {
        Series::Candles { bars, .. } => {
            let at = |t: i64| bars.partition_point(|b| b.ts <= t).saturating_sub(1);
            (at(exit_ts).saturating_sub(at(opened_at)) + 1) as u64
        }
        Series::Ticks { .. } => 0,
    }
}

/// What the metrics need of a run's rows on `market`.
pub fn trades_of(market: &Market, rows: &[TradeRow]) -> Vec<Trade> {
    rows.iter()
        .map(|r| Trade::of(r, bars_between(market, r.entry_time, r.exit_time)))
        .collect()
}

/// The metrics of one run; `None` is an empty cell (undefined, see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    pub trades: i64,
    pub total_return_pct: Option<f64>,
    pub mean_return_pct: Option<f64>,
    pub win_rate: Option<f64>,
    pub profit_factor: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub sharpe: Option<f64>,
    pub mean_giveback_pct: Option<f64>,
    pub capture_ratio: Option<f64>,
    pub stop_updates: i64,
    pub updates_held: i64,
    pub emergency_updates: i64,
    pub unprotected_ms: i64,
    pub ambiguous_bars: i64,
    pub ambiguous_share: Option<f64>,
}

/// Rounds half-even to 8 decimals, then to the nearest f64 (through the decimal text, which
/// Rust parses correctly rounded; `Decimal::to_f64` can be an ulp off, which JSON then shows as
/// `…0000001`): the same exact value always gives the same float, on any machine and thread count.
pub fn to_f64(d: Decimal) -> f64 {
    let r = d.round_dp_with_strategy(8, RoundingStrategy::MidpointNearestEven);
    r.to_string()
        .parse()
        .unwrap_or_else(|_| r.to_f64().unwrap_or(f64::NAN))
}

fn ratio(num: Decimal, den: Decimal) -> Option<f64> {
    if den.is_zero() {
        None
    } else {
        num.checked_div(den).map(to_f64)
    }
}

/// Metrics of `trades` (any order).
pub fn compute(trades: &[Trade]) -> Metrics {
    let n = trades.len();
    let nd = Decimal::from(n as u64);
    let total: Decimal = trades.iter().map(|t| t.pnl_pct).sum();
    let wins = trades.iter().filter(|t| t.pnl_pct > Decimal::ZERO).count();
    let gross_profit: Decimal = trades.iter().map(|t| t.pnl_pct.max(Decimal::ZERO)).sum();
    let gross_loss: Decimal = trades.iter().map(|t| (-t.pnl_pct).max(Decimal::ZERO)).sum();
    let mfe: Decimal = trades.iter().map(|t| t.mfe_pct).sum();
    let giveback: Decimal = trades.iter().map(|t| t.mfe_pct - t.pnl_pct).sum();

    // Realised equity: exits in time order.
    let mut order: Vec<&Trade> = trades.iter().collect();
    order.sort_by_key(|t| (t.exit_time, t.id));
    let (mut cum, mut peak, mut dd) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for t in order {
        cum += t.pnl_pct;
        peak = peak.max(cum);
        dd = dd.max(peak - cum);
    }

    let sharpe = if n >= 2 {
        let mean = total / nd;
        let ss: Decimal = trades
            .iter()
            .map(|t| (t.pnl_pct - mean) * (t.pnl_pct - mean))
            .sum();
        let var = ss / Decimal::from(n as u64 - 1);
        // The square root is the one step that leaves exact decimals.
        let sd = var.to_f64().unwrap_or(0.0).sqrt();
        (sd > 0.0).then(|| to_f64(mean) / sd)
    } else {
        None
    };
    let bars: u64 = trades.iter().map(|t| t.bars).sum();
    let ambiguous: u64 = trades.iter().map(|t| t.ambiguous_bars as u64).sum();
    let sum = |f: fn(&Trade) -> i64| trades.iter().map(f).sum::<i64>();
    Metrics {
        trades: n as i64,
        total_return_pct: Some(to_f64(total)),
        mean_return_pct: ratio(total, nd),
        win_rate: ratio(Decimal::from(wins as u64), nd),
        profit_factor: ratio(gross_profit, gross_loss),
        max_drawdown_pct: Some(to_f64(dd)),
        sharpe,
        mean_giveback_pct: ratio(giveback, nd),
        capture_ratio: ratio(total, mfe),
        stop_updates: sum(|t| t.stop_updates as i64),
        updates_held: sum(|t| t.updates_held as i64),
        emergency_updates: sum(|t| t.emergency_updates as i64),
        unprotected_ms: sum(|t| t.unprotected_ms),
        ambiguous_bars: ambiguous as i64,
        ambiguous_share: ratio(Decimal::from(ambiguous), Decimal::from(bars)),
    }
}

/// What the sweep ranks by, and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    TotalReturnPct,
    MeanReturnPct,
    WinRate,
    ProfitFactor,
    MaxDrawdownPct,
    Sharpe,
    MeanGivebackPct,
    CaptureRatio,
}

impl Objective {
    pub const ALL: [Objective; 8] = [
        Objective::TotalReturnPct,
        Objective::MeanReturnPct,
        Objective::WinRate,
        Objective::ProfitFactor,
        Objective::MaxDrawdownPct,
        Objective::Sharpe,
        Objective::MeanGivebackPct,
        Objective::CaptureRatio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Objective::TotalReturnPct => "total_return_pct",
            Objective::MeanReturnPct => "mean_return_pct",
            Objective::WinRate => "win_rate",
            Objective::ProfitFactor => "profit_factor",
            Objective::MaxDrawdownPct => "max_drawdown_pct",
            Objective::Sharpe => "sharpe",
            Objective::MeanGivebackPct => "mean_giveback_pct",
            Objective::CaptureRatio => "capture_ratio",
        }
    }

    /// A label with units for plots.
    pub fn label(self) -> &'static str {
        match self {
            Objective::TotalReturnPct => "total return (% of entry notional, summed)",
            Objective::MeanReturnPct => "mean return per trade (%)",
            Objective::WinRate => "win rate (fraction of trades)",
            Objective::ProfitFactor => "profit factor (gross profit / gross loss)",
            Objective::MaxDrawdownPct => "max drawdown (percentage points)",
            Objective::Sharpe => "Sharpe per trade (mean / stdev)",
            Objective::MeanGivebackPct => "mean giveback (percentage points)",
            Objective::CaptureRatio => "capture ratio (sum pnl / sum mfe)",
        }
    }

    /// Drawdown and giveback are costs: lower is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Objective::MaxDrawdownPct | Objective::MeanGivebackPct)
    }

    pub fn of(self, m: &Metrics) -> Option<f64> {
        match self {
            Objective::TotalReturnPct => m.total_return_pct,
            Objective::MeanReturnPct => m.mean_return_pct,
            Objective::WinRate => m.win_rate,
            Objective::ProfitFactor => m.profit_factor,
            Objective::MaxDrawdownPct => m.max_drawdown_pct,
            Objective::Sharpe => m.sharpe,
            Objective::MeanGivebackPct => m.mean_giveback_pct,
            Objective::CaptureRatio => m.capture_ratio,
        }
    }

    /// Whether `a` is strictly better than `b` (an empty value is never better).
    pub fn better(self, a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => {
                if self.higher_is_better() {
                    a > b
                } else {
                    a < b
                }
            }
            (Some(_), None) => true,
            _ => false,
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Objective::ALL
            .into_iter()
            .find(|o| o.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Objective::ALL.iter().map(|o| o.as_str()).collect();
                format!("\"{s}\" is not an objective ({})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn t(id: u64, exit: i64, pnl: Decimal, mfe: Decimal) -> Trade {
        Trade {
            id,
            entry_time: 0,
            exit_time: exit,
            pnl_pct: pnl,
            mfe_pct: mfe,
            stop_updates: 2,
            updates_held: 1,
            emergency_updates: 0,
            unprotected_ms: 300,
            ambiguous_bars: 1,
            bars: 10,
        }
    }

    #[test]
    fn metrics_follow_their_definitions() {
        // Exit order: +2, -3, +1.5 → curve 2, -1, 0.5: peak 2, deepest fall 3.
        let trades = [
            t(2, 200, dec!(-3), dec!(0.5)),
            t(1, 100, dec!(2), dec!(2.5)),
            t(3, 300, dec!(1.5), dec!(2)),
        ];
        let m = compute(&trades);
        assert_eq!(m.trades, 3);
        assert_eq!(m.total_return_pct, Some(0.5));
        assert_eq!(m.mean_return_pct, Some(0.16666667));
        assert_eq!(m.win_rate, Some(0.66666667));
        // 3.5 / 3 = 1.1666…, rounded half-even to 8 decimals.
        assert_eq!(m.profit_factor, Some(1.16666667));
        assert_eq!(m.max_drawdown_pct, Some(3.0));
        // giveback: (0.5+3) + (2.5-2) + (2-1.5) = 4.5 → 1.5 per trade.
        assert_eq!(m.mean_giveback_pct, Some(1.5));
        assert_eq!(m.capture_ratio, Some(0.1));
        // mean 1/6, deviations 11/6, -19/6, 8/6: ss = (121+361+64)/36 = 546/36, var = 273/36.
        let sd = (273.0f64 / 36.0).sqrt();
        assert!((m.sharpe.unwrap() - 0.16666667 / sd).abs() < 1e-12);
        assert_eq!(m.stop_updates, 6);
        assert_eq!(m.unprotected_ms, 900);
        assert_eq!(m.ambiguous_share, Some(0.1));
    }

    #[test]
    fn drawdown_follows_exit_order_not_position_order() {
        // Exit order +3, -1, -2: curve 3, 2, 0 → 3. In position order (-2, +3, -1) it would be 2.
        let trades = [
            t(1, 300, dec!(-2), dec!(0)),
            t(2, 100, dec!(3), dec!(3)),
            t(3, 200, dec!(-1), dec!(0)),
        ];
        assert_eq!(compute(&trades).max_drawdown_pct, Some(3.0));
    }

    #[test]
    fn undefined_metrics_are_empty_not_zero() {
        let m = compute(&[]);
        assert_eq!(m.trades, 0);
        assert_eq!(m.total_return_pct, Some(0.0));
        assert_eq!(m.mean_return_pct, None);
        assert_eq!(m.sharpe, None);
        let one_win = compute(&[t(1, 1, dec!(1), dec!(1))]);
        assert_eq!(one_win.profit_factor, None);
        assert_eq!(one_win.sharpe, None);
        assert_eq!(one_win.max_drawdown_pct, Some(0.0));
    }

    #[test]
    fn objectives_know_their_direction() {
        use Objective::*;
        assert!(TotalReturnPct.better(Some(2.0), Some(1.0)));
        assert!(MaxDrawdownPct.better(Some(1.0), Some(2.0)));
        assert!(Sharpe.better(Some(-1.0), None));
        assert!(!Sharpe.better(None, Some(-1.0)));
        assert_eq!(
            "capture_ratio".parse::<Objective>().unwrap(),
            Objective::CaptureRatio
        );
        assert!(
            "return"
                .parse::<Objective>()
                .unwrap_err()
                .contains("total_return_pct")
        );
    }
}
