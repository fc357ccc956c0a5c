//! Whole-grid numbers, so the chosen cell is not just noise: the neighbourhood (plateau) score
//! of every cell, the best and the most robust cell, and walk-forward.
//!
//! They are computed from the finished rows only, so a sharded sweep merged afterwards gives
//! exactly what the unsharded run gives.

use serde::{Deserialize, Serialize};

use super::exec::{FoldCells, Row};
use super::grid::Grid;
use super::metrics::Objective;

/// A cell's neighbourhood: the mean objective of the cell and of every finished cell at most one
/// step away on each numeric axis (the 3×3 block in two dimensions, fewer at the edges), with
/// the same value on every word axis (venue, side, policy); empty objectives are left out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    pub score: Option<f64>,
    /// How many cells (the cell included) had an objective.
    pub cells: i64,
}

/// What the whole-grid numbers need of a finished cell: a full [`Row`], or the few numbers a
/// streamed sweep keeps of each cell ([`super::stream::Cell`]).
pub trait Scored {
    fn combo(&self) -> u64;
    fn objective(&self) -> Option<f64>;
    fn fold(&self, k: usize) -> Option<&FoldCells>;
}

impl Scored for Row {
    fn combo(&self) -> u64 {
        self.combo
    }
    fn objective(&self) -> Option<f64> {
        self.objective
    }
    fn fold(&self, k: usize) -> Option<&FoldCells> {
        self.folds.get(k)
    }
}

/// The plateau of every row; `rows` are in combination order (as every table is), so a
/// neighbour is found by binary search instead of a map of the whole grid.
pub fn plateau<R: Scored>(grid: &Grid, rows: &[R]) -> Vec<Plateau> {
    debug_assert!(rows.windows(2).all(|w| w[0].combo() < w[1].combo()));
    let at = |combo: u64| rows.binary_search_by_key(&combo, Scored::combo).ok();
    let numeric: Vec<bool> = grid.axes.iter().map(|a| a.is_numeric()).collect();
    rows.iter()
        .map(|row| {
            let idx = grid.indices(row.combo());
            let mut sum = 0.0f64;
            let mut cells = 0i64;
            // Walk the offsets {-1, 0, 1} on numeric axes (0 on word axes) in a fixed order, so
            // the float sum is the same everywhere.
            let dims: Vec<i64> = numeric.iter().map(|n| if *n { 3 } else { 1 }).collect();
            let total: i64 = dims.iter().product();
            for k in 0..total {
                let mut rest = k;
                let mut n = idx.clone();
                let mut inside = true;
                for (d, dim) in dims.iter().enumerate().rev() {
                    let off = if *dim == 3 { rest % 3 - 1 } else { 0 };
                    rest /= dim;
                    let v = n[d] as i64 + off;
                    if v < 0 || v >= grid.axes[d].values.len() as i64 {
                        inside = false;
                        break;
                    }
                    n[d] = v as usize;
                }
                if !inside {
                    continue;
                }
                if let Some(i) = at(grid.combo_of(&n))
                    && let Some(v) = rows[i].objective()
                {
                    sum += v;
                    cells += 1;
                }
            }
            Plateau {
                score: (cells > 0).then(|| sum / cells as f64),
                cells,
            }
        })
        .collect()
}

/// The position of the best value by `objective`'s direction; ties keep the earliest row (the
/// lowest combination number), empty values never win.
pub fn best_by(objective: Objective, values: impl Iterator<Item = Option<f64>>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        let Some(v) = v else { continue };
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if !objective.better(Some(v), Some(b)) => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// The positions of the `n` best rows by `objective` (rows without a value are not ranked),
/// equal values in combination order: the report's "top cells" and the terminal's table.
pub fn top<R: Scored>(objective: Objective, rows: &[R], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].objective().is_some_and(|v| !v.is_nan()))
        .collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&rows[a], &rows[b]);
        let (x, y) = (a.objective().unwrap_or(0.0), b.objective().unwrap_or(0.0));
        let o = if objective.higher_is_better() {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        };
        o.then(a.combo().cmp(&b.combo()))
    });
    order.truncate(n);
    order
}

/// Where cell `combo` lies on the edge of the grid: each numeric axis of three values or more
/// on which it holds the smallest or the largest value, as "`key` = `value` is its smallest
/// (largest) value". The best cell there may mean the optimum lies outside the range swept.
pub fn edges(grid: &Grid, combo: u64) -> Vec<String> {
    grid.axes
        .iter()
        .zip(grid.indices(combo))
        .filter(|(a, _)| a.is_numeric() && a.values.len() >= 3)
        .filter_map(|(a, i)| {
            let side = if i == 0 {
                "smallest"
            } else if i + 1 == a.values.len() {
                "largest"
            } else {
                return None;
            };
            Some(format!("{} = {} is its {side} value", a.key, a.values[i]))
        })
        .collect()
}

/// One walk-forward step: choose on fold `train`, measure on fold `test = train + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub train_fold: usize,
    pub test_fold: usize,
    pub train_from: i64,
    pub train_to: i64,
    pub test_from: i64,
    pub test_to: i64,
    pub chosen_combo: Option<u64>,
    pub chosen: Option<String>,
    pub train_objective: Option<f64>,
    pub test_objective: Option<f64>,
    pub test_return_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkForward {
    pub steps: Vec<Step>,
    /// The chosen parameters' total return summed over the test windows (out of sample).
    pub oos_total_return_pct: f64,
}

/// Rolling walk-forward over `bounds` (K + 1 folds): K steps.
pub fn walk_forward<R: Scored>(
    grid: &Grid,
    rows: &[R],
    bounds: &[i64],
    objective: Objective,
) -> WalkForward {
    let folds = bounds.len().saturating_sub(1);
    let mut steps = Vec::new();
    let mut oos = 0.0f64;
    for k in 1..folds {
        let chosen = best_by(
            objective,
            rows.iter().map(|r| r.fold(k - 1).and_then(|f| f.train)),
        );
        let cell = chosen.and_then(|i| rows[i].fold(k));
        let test_return = cell.and_then(|c| c.test_return);
        oos += test_return.unwrap_or(0.0);
        steps.push(Step {
            train_fold: k - 1,
            test_fold: k,
            train_from: bounds[k - 1],
            train_to: bounds[k],
            test_from: bounds[k],
            test_to: bounds[k + 1],
            chosen_combo: chosen.map(|i| rows[i].combo()),
            chosen: chosen.map(|i| grid.describe(rows[i].combo())),
            train_objective: chosen.and_then(|i| rows[i].fold(k - 1).and_then(|f| f.train)),
            test_objective: cell.and_then(|c| c.test),
            test_return_pct: test_return,
        });
    }
    WalkForward {
        steps,
        oos_total_return_pct: super::metrics::to_f64(
            rust_decimal::Decimal::from_f64_retain(oos).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::exec::FoldCells;
    use crate::sweep::grid::parse_cli;
    use crate::sweep::metrics::Metrics;

    fn row(combo: u64, objective: Option<f64>, folds: Vec<FoldCells>) -> Row {
        Row {
            combo,
            metrics: Metrics::default(),
            objective,
            objective_optimistic: None,
            objective_pessimistic: None,
            folds,
        }
    }

    #[test]
    fn top_ranks_by_the_objective_direction_and_skips_empty_cells() {
        let rows = vec![
            row(0, Some(1.0), Vec::new()),
            row(1, None, Vec::new()),
            row(2, Some(3.0), Vec::new()),
            row(3, Some(1.0), Vec::new()),
        ];
        assert_eq!(top(Objective::TotalReturnPct, &rows, 10), [2, 0, 3]);
        assert_eq!(top(Objective::TotalReturnPct, &rows, 2), [2, 0]);
        assert_eq!(top(Objective::MaxDrawdownPct, &rows, 10), [0, 3, 2]);
    }

    #[test]
    fn edges_name_the_smallest_or_largest_value_of_axes_of_three_or_more() {
        use crate::sweep::grid::parse_cli;
        let grid = Grid::new(vec![
            parse_cli("activation_percent=0.1:0.5:0.2").unwrap(),
            parse_cli("distance_percent=0.2,0.3").unwrap(),
            parse_cli("intrabar.policy=ohlc,olhc,optimistic").unwrap(),
        ])
        .unwrap();
        // Axes by key: the word axis (never an edge), activation, distance (two values: no edge).
        let first = grid.combo_of(&[0, 0, 0]);
        assert_eq!(
            edges(&grid, first),
            ["trailing.activation_percent = 0.1 is its smallest value"]
        );
        assert_eq!(
            edges(&grid, grid.combo_of(&[2, 2, 1])),
            ["trailing.activation_percent = 0.5 is its largest value"]
        );
        assert!(edges(&grid, grid.combo_of(&[0, 1, 1])).is_empty());
    }

    #[test]
    fn plateau_averages_the_finished_neighbours() {
        // 3 × 3 grid, objective = combo number, the centre (4) missing.
        let g = Grid::new(vec![
            parse_cli("activation_percent=0,1,2").unwrap(),
            parse_cli("distance_percent=1,2,3").unwrap(),
        ])
        .unwrap();
        let rows: Vec<Row> = [0u64, 1, 2, 3, 5, 6, 7, 8]
            .iter()
            .map(|&c| row(c, Some(c as f64), vec![]))
            .collect();
        let p = plateau(&g, &rows);
        // Corner 0: itself, 1 and 3 (4 is missing) → 4 / 3.
        assert_eq!(p[0].cells, 3);
        assert!((p[0].score.unwrap() - 4.0 / 3.0).abs() < 1e-12);
        // Edge 1 (combo 1): 0, 2, 3, 5 and itself → 11 / 5.
        assert_eq!(p[1].cells, 5);
        assert!((p[1].score.unwrap() - 11.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn word_axes_do_not_mix_in_neighbourhoods() {
        let g = Grid::new(vec![
            parse_cli("exchange.venue=binance,bybit").unwrap(),
            parse_cli("distance_percent=1,2").unwrap(),
        ])
        .unwrap();
        let rows: Vec<Row> = (0..4)
            .map(|c| row(c, Some(c as f64 * 10.0), vec![]))
            .collect();
        let p = plateau(&g, &rows);
        assert_eq!(p[0].cells, 2);
        assert_eq!(p[0].score, Some(5.0));
        assert_eq!(p[3].score, Some(25.0));
    }

    #[test]
    fn best_prefers_the_earliest_of_equals_and_skips_empty() {
        let v = [None, Some(1.0), Some(3.0), Some(3.0)];
        assert_eq!(best_by(Objective::TotalReturnPct, v.into_iter()), Some(2));
        assert_eq!(best_by(Objective::MaxDrawdownPct, v.into_iter()), Some(1));
        assert_eq!(best_by(Objective::Sharpe, [None, None].into_iter()), None);
    }

    #[test]
    fn walk_forward_chooses_on_training_and_reports_the_next_fold() {
        let g = Grid::new(vec![parse_cli("distance_percent=1,2").unwrap()]).unwrap();
        let f = |train: f64, test_return: f64| FoldCells {
            train: Some(train),
            test: Some(test_return),
            test_return: Some(test_return),
        };
        // Fold 0 prefers combo 1, fold 1 prefers combo 0.
        let rows = vec![
            row(0, None, vec![f(1.0, -9.0), f(5.0, 2.0), f(0.0, 7.0)]),
            row(1, None, vec![f(2.0, -9.0), f(4.0, -1.0), f(0.0, 3.0)]),
        ];
        let wf = walk_forward(&g, &rows, &[0, 10, 20, 30], Objective::TotalReturnPct);
        assert_eq!(wf.steps.len(), 2);
        assert_eq!(wf.steps[0].chosen_combo, Some(1));
        assert_eq!(wf.steps[0].test_return_pct, Some(-1.0));
        assert_eq!(wf.steps[1].chosen_combo, Some(0));
        assert_eq!(wf.steps[1].test_return_pct, Some(7.0));
        assert_eq!(wf.oos_total_return_pct, 6.0);
        assert_eq!((wf.steps[1].test_from, wf.steps[1].test_to), (20, 30));
    }
}
