//! Objective over two swept axes (activation × distance when swept), one panel per value of
//! the other axes (venue, side, …); the best cell framed red, the most robust blue.

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::figure::{Figure, err, font};
use crate::sweep::grid::Grid;
use crate::sweep::metrics::Objective;
use crate::sweep::robust::Scored;

pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub z_label: String,
    pub xs: Vec<String>,
    pub ys: Vec<String>,
    /// `cells[y][x]`.
    pub cells: Vec<Vec<Option<f64>>>,
    pub best: Option<(usize, usize)>,
    pub robust: Option<(usize, usize)>,
    /// The colour scale, shared by all panels so that their colours compare.
    pub range: Option<(f64, f64)>,
}

/// A panel: the fixed values of the other axes and its heatmap.
pub struct Panel {
    pub fixed: Vec<(String, String)>,
    pub heatmap: Heatmap,
}

/// Which axes go across and up: activation × distance when both are swept, else the first
/// numeric axes (or any), the rest make panels.
fn pick_axes(grid: &Grid) -> (Option<usize>, Option<usize>) {
    let find = |k: &str| grid.axis(k);
    let mut x = find("trailing.activation_percent");
    let mut y = find("trailing.distance_percent");
    let order: Vec<usize> = (0..grid.axes.len())
        .filter(|&i| grid.axes[i].is_numeric())
        .chain((0..grid.axes.len()).filter(|&i| !grid.axes[i].is_numeric()))
        .collect();
    for i in order {
        if x.is_none() && y != Some(i) {
            x = Some(i);
        } else if y.is_none() && x != Some(i) {
            y = Some(i);
        }
    }
    // A single swept key goes across.
    if x.is_none() {
        x = y.take();
    }
    (x, y)
}

/// At most this many panels; beyond, only the panel with the best cell is drawn.
pub const MAX_PANELS: usize = 12;
/// At most this many cells across or up; a longer axis is drawn in blocks.
pub const MAX_SIDE: usize = 200;

pub fn panels<R: Scored>(
    grid: &Grid,
    rows: &[R],
    objective: Objective,
    best: Option<u64>,
    robust: Option<u64>,
    title: &str,
) -> Vec<Panel> {
    let (xa, ya) = pick_axes(grid);
    let Some(xa) = xa else { return Vec::new() };
    let others: Vec<usize> = (0..grid.axes.len())
        .filter(|&i| i != xa && Some(i) != ya)
        .collect();
    let labels = |a: Option<usize>| -> Vec<String> {
        a.map_or(vec![String::new()], |a| {
            grid.axes[a].values.iter().map(|v| v.to_string()).collect()
        })
    };
    let (xs, ys) = (labels(Some(xa)), labels(ya));
    // A long axis is drawn in blocks of `kx` (`ky`) values, each showing its best cell, so a
    // picture of a million cells stays a picture (not an SVG of a million rectangles).
    let block = |n: usize| n.div_ceil(MAX_SIDE).max(1);
    let (kx, ky) = (block(xs.len()), block(ys.len()));
    let thin = |v: &[String], k: usize| -> Vec<String> { v.iter().step_by(k).cloned().collect() };
    let (xs, ys) = (thin(&xs, kx), thin(&ys, ky));
    let blocked = |label: &str, k: usize| {
        if k > 1 {
            format!("{label} (blocks of {k}, best shown)")
        } else {
            label.to_string()
        }
    };
    // Panels keyed by the other axes' value indices, in grid order.
    let mut keys: Vec<Vec<usize>> = Vec::new();
    let mut maps: Vec<Heatmap> = Vec::new();
    for row in rows {
        let idx = grid.indices(row.combo());
        let key: Vec<usize> = others.iter().map(|&o| idx[o]).collect();
        let p = match keys.iter().position(|k| *k == key) {
            Some(p) => p,
            None => {
                keys.push(key);
                maps.push(Heatmap {
                    title: title.to_string(),
                    x_label: blocked(grid.axes[xa].short(), kx),
                    y_label: ya.map_or(String::new(), |a| blocked(grid.axes[a].short(), ky)),
                    z_label: objective.label().to_string(),
                    xs: xs.clone(),
                    ys: ys.clone(),
                    cells: vec![vec![None; xs.len()]; ys.len()],
                    best: None,
                    robust: None,
                    range: None,
                });
                keys.len() - 1
            }
        };
        let (x, y) = (idx[xa] / kx, ya.map_or(0, |a| idx[a] / ky));
        let cell = &mut maps[p].cells[y][x];
        if cell.is_none() || objective.better(row.objective(), *cell) {
            *cell = row.objective();
        }
        if Some(row.combo()) == best {
            maps[p].best = Some((x, y));
        }
        if Some(row.combo()) == robust {
            maps[p].robust = Some((x, y));
        }
    }
    let mut out: Vec<Panel> = keys
        .into_iter()
        .zip(maps)
        .map(|(key, mut heatmap)| {
            let fixed: Vec<(String, String)> = others
                .iter()
                .zip(&key)
                .map(|(&o, &i)| {
                    (
                        grid.axes[o].short().to_string(),
                        grid.axes[o].values[i].to_string(),
                    )
                })
                .collect();
            if !fixed.is_empty() {
                let f: Vec<String> = fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                heatmap.title = format!("{title} ({})", f.join(", "));
            }
            Panel { fixed, heatmap }
        })
        .collect();
    let (lo, hi) = rows
        .iter()
        .filter_map(Scored::objective)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo.is_finite() {
        for p in &mut out {
            p.heatmap.range = Some((lo, hi));
        }
    }
    if out.len() > MAX_PANELS {
        out.retain(|p| p.heatmap.best.is_some());
    }
    out
}

/// `distance_percent (%)`; other keys as they are.
fn with_unit(key: &str) -> String {
    if key.ends_with("_percent") {
        format!("{key} (%)")
    } else {
        key.to_string()
    }
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        (960, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (body, footer) = root.split_vertically(610);
        let (main, bar) = body.split_horizontally(820);
        let values: Vec<f64> = self.cells.iter().flatten().flatten().copied().collect();
        let (lo, hi) = self.range.unwrap_or_else(|| {
            values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                })
        });
        let (lo, hi) = if lo.is_finite() {
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 1.0, hi + 1.0)
            }
        } else {
            (0.0, 1.0)
        };
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, font(20.0))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                // An integer range includes its end: n cells are 0..n-1.
                (0..nx.saturating_sub(1)).into_segmented(),
                (0..ny.saturating_sub(1)).into_segmented(),
            )
            .map_err(err)?;
        let xs = &self.xs;
        let ys = &self.ys;
        let label = |v: &SegmentValue<usize>, names: &[String]| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nx.min(16))
            .y_labels(ny.min(16))
            .x_label_formatter(&|v| label(v, xs))
            .y_label_formatter(&|v| label(v, ys))
            .x_desc(with_unit(&self.x_label))
            .y_desc(with_unit(&self.y_label))
            .label_style(font(13.0))
            .axis_desc_style(font(15.0))
            .draw()
            .map_err(err)?;
        let cell = |x: usize, y: usize| {
            [
                (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
            ]
        };
        let mut rects = Vec::new();
        for (y, row) in self.cells.iter().enumerate() {
            for (x, v) in row.iter().enumerate() {
                let style = match v {
                    Some(v) => ViridisRGB::get_color_normalized(*v, lo, hi).filled(),
                    None => RGBColor(220, 220, 220).filled(),
                };
                rects.push(Rectangle::new(cell(x, y), style));
            }
        }
        chart.draw_series(rects).map_err(err)?;
        if nx * ny <= 120 {
            let mut texts = Vec::new();
            for (y, row) in self.cells.iter().enumerate() {
                for (x, v) in row.iter().enumerate() {
                    let t = v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
                    let light = v.is_some_and(|v| (v - lo) / (hi - lo) < 0.6);
                    let colour = if light { WHITE } else { BLACK };
                    texts.push(Text::new(
                        t,
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        font(11.0)
                            .color(&colour)
                            .pos(plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Center,
                                plotters::style::text_anchor::VPos::Center,
                            )),
                    ));
                }
            }
            chart.draw_series(texts).map_err(err)?;
        }
        let frame = |(x, y): (usize, usize), colour: RGBColor| {
            Rectangle::new(cell(x, y), colour.stroke_width(4))
        };
        if let Some(r) = self.robust {
            chart
                .draw_series([frame(r, RGBColor(0, 90, 255))])
                .map_err(err)?;
        }
        if let Some(b) = self.best {
            chart.draw_series([frame(b, RED)]).map_err(err)?;
        }
        footer
            .draw_text(
                "red frame: best objective, blue frame: most robust (neighbourhood mean)",
                &font(13.0).color(&BLACK),
                (80, 8),
            )
            .map_err(err)?;
        // Colour bar with the objective's units.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(48)
            .margin_bottom(62)
            .margin_right(8)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, lo..hi)
            .map_err(err)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(8)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .y_desc(&self.z_label)
            .label_style(font(12.0))
            .axis_desc_style(font(12.0))
            .draw()
            .map_err(err)?;
        let steps = 100;
        cb.draw_series((0..steps).map(|i| {
            let a = lo + (hi - lo) * i as f64 / steps as f64;
            let b = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                ViridisRGB::get_color_normalized((a + b) / 2.0, lo, hi).filled(),
            )
        }))
        .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::exec::Row;
    use crate::sweep::grid::parse_cli;
    use crate::sweep::metrics::Metrics;

    fn rows(n: u64) -> Vec<Row> {
        (0..n)
            .map(|c| Row {
                combo: c,
                metrics: Metrics::default(),
                objective: Some(c as f64),
                objective_optimistic: None,
                objective_pessimistic: None,
                folds: vec![],
            })
            .collect()
    }

    #[test]
    fn a_long_axis_is_drawn_in_blocks_showing_their_best_cell() {
        let g = Grid::new(vec![
            parse_cli("activation_percent=0:449:1").unwrap(),
            parse_cli("distance_percent=1,2").unwrap(),
        ])
        .unwrap();
        let p = panels(
            &g,
            &rows(900),
            Objective::TotalReturnPct,
            Some(899),
            None,
            "t",
        );
        let h = &p[0].heatmap;
        assert_eq!((h.xs.len(), h.ys.len()), (150, 2));
        assert_eq!(h.x_label, "activation_percent (blocks of 3, best shown)");
        assert_eq!(h.y_label, "distance_percent");
        // Block 0 across holds activation 0, 1, 2: combos 0, 2, 4 (distance 1), 1, 3, 5.
        assert_eq!((h.cells[0][0], h.cells[1][0]), (Some(4.0), Some(5.0)));
        assert_eq!((h.xs[0].as_str(), h.xs[1].as_str()), ("0", "3"));
        assert_eq!(h.best, Some((149, 1)));
        // Lower is better: the block shows its smallest.
        let p = panels(&g, &rows(900), Objective::MaxDrawdownPct, None, None, "t");
        assert_eq!(p[0].heatmap.cells[0][0], Some(0.0));
    }

    #[test]
    fn activation_goes_across_distance_up_and_words_make_panels() {
        let g = Grid::new(vec![
            parse_cli("distance_percent=1,2,3").unwrap(),
            parse_cli("exchange.venue=binance,bybit").unwrap(),
            parse_cli("activation_percent=0,1").unwrap(),
        ])
        .unwrap();
        let p = panels(&g, &rows(12), Objective::TotalReturnPct, Some(7), None, "t");
        assert_eq!(p.len(), 2);
        let h = &p[1].heatmap;
        assert_eq!(p[1].fixed, vec![("exchange.venue".into(), "bybit".into())]);
        assert_eq!(
            (h.x_label.as_str(), h.y_label.as_str()),
            ("activation_percent", "distance_percent")
        );
        assert_eq!((h.xs.len(), h.ys.len()), (2, 3));
        // Combo 7: venue bybit (1), activation 0 (0), distance 2 (1) — axes sort by key:
        // exchange.venue, trailing.activation_percent, trailing.distance_percent.
        assert_eq!(h.best, Some((0, 1)));
        assert_eq!(h.cells[1][0], Some(7.0));
        // One colour scale for all panels.
        assert_eq!(h.range, Some((0.0, 11.0)));
        assert_eq!(p[0].heatmap.range, h.range);
    }

    #[test]
    fn a_single_axis_goes_across() {
        let g = Grid::new(vec![parse_cli("distance_percent=1,2,3").unwrap()]).unwrap();
        let p = panels(&g, &rows(3), Objective::TotalReturnPct, None, None, "t");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].heatmap.x_label, "distance_percent");
        assert_eq!(
            p[0].heatmap.cells,
            vec![vec![Some(0.0), Some(1.0), Some(2.0)]]
        );
    }
}
