//! The results a trader reads first, as terminal tables: a backtest's metrics (the values of
//! its `summary.json`) and a sweep's best cells.

use std::fmt::Write as _;

use crate::backtest::Summary;
use crate::backtest::metrics::{Metrics, Objective};
use crate::sweep::Picked;
use crate::sweep::grid::Grid;

/// `v` with `dp` decimals, signed when `signed`; `–` for an undefined value.
fn num(v: Option<f64>, dp: usize, signed: bool) -> String {
    match v {
        Some(v) if signed => format!("{v:+.dp$}"),
        Some(v) => format!("{v:.dp$}"),
        None => "–".to_string(),
    }
}

/// Rows of cells, each column as wide as its widest cell (numbers right-aligned where
/// `right[i]`), the last column unpadded, every line indented by two spaces.
pub fn align(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, c) in r.iter().enumerate() {
            let w = widths[i];
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(line, "{c:>w$}  ");
            } else if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What the band says about this run.
fn band_meaning(s: &Summary) -> String {
    let (p, o) = (
        s.band.pessimistic.total_return_pct,
        s.band.optimistic.total_return_pct,
    );
    if s.interval_ms.is_none() {
        return "trade ticks: no order inside a candle to guess".into();
    }
    let bars = match s.ambiguous_bars {
        1 => "1 ambiguous bar".to_string(),
        n => format!("{n} ambiguous bars"),
    };
    if p == o {
        format!(
            "the same whichever extreme of a candle comes first ({bars}): the order inside candles does not move this result"
        )
    } else {
        format!(
            "the whole run with each candle's adverse extreme first, then its favourable one first ({bars}): the result rests on the unknown order inside candles by {:.4} pp; finer data (`[data] detail`) resolves it",
            (p - o).abs()
        )
    }
}

/// The backtest's results table (the values of `summary.json`); `no_positions`: why no
/// position opened, when none did.
pub fn backtest_table(s: &Summary, no_positions: Option<&str>) -> String {
    let m: &Metrics = &s.metrics;
    let source = format!(
        "{} {} ({} rows), {}, {} intrabar",
        if s.symbol.is_empty() {
            "data"
        } else {
            &s.symbol
        },
        s.data,
        s.data_rows,
        s.venue,
        s.totals.policy.as_str()
    );
    if m.trades == 0 {
        let why = no_positions.unwrap_or("no position was opened");
        return format!("{}: no trades on {source}: {why}\n", s.scenario);
    }
    let mut out = format!("{}: {} trades on {source}\n", s.scenario, m.trades);
    let exits: Vec<String> = s
        .exit_reasons
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let row = |a: &str, b: String, c: &str| vec![a.to_string(), b, c.to_string()];
    let rows = vec![
        row(
            "trades",
            m.trades.to_string(),
            &format!("{} won", s.totals.wins),
        ),
        row(
            "total return",
            format!("{} %", num(m.total_return_pct, 4, true)),
            "sum of the trades' pnl_pct: net of fees, % of each entry's notional",
        ),
        row(
            "mean return",
            format!("{} %", num(m.mean_return_pct, 4, true)),
            "per trade",
        ),
        row(
            "win rate",
            format!("{} %", num(m.win_rate.map(|w| w * 100.0), 1, false)),
            "trades with pnl_pct > 0",
        ),
        row(
            "profit factor",
            num(m.profit_factor, 4, false),
            "gross profit / gross loss (– when nothing was lost)",
        ),
        row(
            "max drawdown",
            format!("{} pp", num(m.max_drawdown_pct, 4, false)),
            "deepest fall of the summed returns below their peak, in exit order",
        ),
        row(
            "Sharpe",
            num(m.sharpe, 4, true),
            "per trade: mean / standard deviation, not annualised",
        ),
        row(
            "giveback",
            format!("{} pp", num(m.mean_giveback_pct, 4, false)),
            "mean of peak profit (mfe) minus the result: what the stop gave back",
        ),
        row(
            "capture",
            num(m.capture_ratio, 4, false),
            "summed result / summed peak profit",
        ),
    ];
    let table = align(&rows, &[]);
    out.push_str(&table);
    // The lines below share the label column; their text is too wide for the value column.
    let width = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "  {label:<width$}  {text}");
    };
    line("exits", exits.join(", "));
    line(
        "band",
        format!(
            "{} % pessimistic, {} % optimistic",
            num(Some(s.band.pessimistic.total_return_pct), 4, true),
            num(Some(s.band.optimistic.total_return_pct), 4, true)
        ),
    );
    line("", band_meaning(s));
    line(
        "stop updates",
        format!(
            "{} (held {}, emergency {}); unprotected {} ms",
            m.stop_updates, m.updates_held, m.emergency_updates, m.unprotected_ms
        ),
    );
    out
}

/// The sweep's best cells as a table, best first: rank, each axis's value, the objective (unless
/// it is the total return, shown anyway), the main metrics and the plateau (the neighbourhood's
/// mean objective).
pub fn sweep_table(grid: &Grid, objective: Objective, top: &[Picked]) -> String {
    let own_column = objective != Objective::TotalReturnPct;
    let mut head: Vec<String> = vec!["#".into()];
    head.extend(grid.axes.iter().map(|a| a.short().to_string()));
    let n_axes = grid.axes.len();
    if own_column {
        head.push(objective.as_str().to_string());
    }
    head.extend(
        [
            "trades",
            "total %",
            "win rate %",
            "max DD pp",
            "Sharpe",
            "plateau",
        ]
        .map(String::from),
    );
    let mut rows = vec![head];
    for (k, p) in top.iter().enumerate() {
        let m = &p.metrics;
        let mut r = vec![(k + 1).to_string()];
        match p.combo {
            Some(c) => r.extend(grid.values(c).iter().map(|v| v.to_string())),
            None => r.extend(std::iter::repeat_n("–".to_string(), n_axes)),
        }
        if own_column {
            r.push(num(p.objective, 4, false));
        }
        r.extend([
            m.trades.to_string(),
            num(m.total_return_pct, 4, true),
            num(m.win_rate.map(|w| w * 100.0), 1, false),
            num(m.max_drawdown_pct, 4, false),
            num(m.sharpe, 4, true),
            num(p.plateau, 4, false),
        ]);
        rows.push(r);
    }
    // Every column but the axes' is a number; axis values are numbers or words, shown as given.
    let right: Vec<bool> = (0..rows[0].len()).map(|i| i == 0 || i > n_axes).collect();
    align(&rows, &right)
}

/// What a finished sweep (or merge) says about its cells: the warning when the best lies on
/// the edge of the grid, and the table of the best cells under a line saying what they are.
pub fn sweep_outcome(out: &crate::sweep::Outcome) -> (Option<String>, Option<String>) {
    let m = &out.meta;
    let warning = m
        .results
        .as_ref()
        .and_then(|r| r.best.as_ref())
        .and_then(|best| edge_warning(&best.params, &out.edges));
    let table = (!out.top.is_empty()).then(|| {
        format!(
            "  the {} best of {} combinations by {}:\n{}",
            out.top.len(),
            m.finished,
            m.objective.as_str(),
            sweep_table(&m.grid, m.objective, &out.top)
        )
    });
    (warning, table)
}

/// The warning for a best cell on the edge of the grid (`edges` from `robust::edges`).
pub fn edge_warning(best: &str, edges: &[String]) -> Option<String> {
    (!edges.is_empty()).then(|| {
        format!(
            "the best cell ({best}) lies on the edge of the grid: {}; the optimum may lie outside the range swept: widen it there",
            edges.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_can_be_right_aligned() {
        let rows = vec![
            vec!["a".to_string(), "1.5".to_string(), "x".to_string()],
            vec!["long name".to_string(), "12.25".to_string(), "".to_string()],
        ];
        assert_eq!(
            align(&rows, &[false, true]),
            "  a            1.5  x\n  long name  12.25\n"
        );
    }

    #[test]
    fn a_best_cell_off_the_edge_gives_no_warning() {
        assert_eq!(edge_warning("d=0.2", &[]), None);
        let w = edge_warning("d=0.1", &["trailing.d = 0.1 is its smallest value".into()]).unwrap();
        assert!(
            w.starts_with("the best cell (d=0.1) lies on the edge of the grid: trailing.d = 0.1"),
            "{w}"
        );
    }

    #[test]
    fn undefined_values_show_as_a_dash() {
        assert_eq!(num(None, 4, true), "–");
        assert_eq!(num(Some(0.5), 2, true), "+0.50");
        assert_eq!(num(Some(-0.5), 1, false), "-0.5");
    }
}
