//! Cumulative realised return of the picked parameters, drawdown underneath.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::time_axis;
use super::figure::{Figure, draw_time_mesh, err, font, time_coord};
use crate::sweep::report_data::Curve;

pub struct Equity {
    pub title: String,
    pub curves: Vec<Curve>,
}

fn colour(label: &str) -> RGBColor {
    match label {
        "best" => RGBColor(220, 30, 30),
        "robust" => RGBColor(0, 90, 255),
        _ => RGBColor(40, 40, 40),
    }
}

/// Steps through the points, starting at 0 at `t0`.
fn steps(points: &[(i64, f64)], t0: i64) -> Vec<(i64, f64)> {
    let mut out = vec![(t0, 0.0)];
    let mut last = 0.0;
    for &(t, v) in points {
        out.push((t, last));
        out.push((t, v));
        last = v;
    }
    out
}

/// The curve's distance below its running peak (≤ 0), as steps.
fn drawdown(points: &[(i64, f64)], t0: i64) -> Vec<(i64, f64)> {
    let mut peak = 0.0f64;
    let dd: Vec<(i64, f64)> = points
        .iter()
        .map(|&(t, v)| {
            peak = peak.max(v);
            (t, v - peak)
        })
        .collect();
    steps(&dd, t0)
}

impl Figure for Equity {
    fn size(&self) -> (u32, u32) {
        (960, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(420);
        let times = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0));
        let (t0, t1) = times.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
        let (t0, t1) = if t0 <= t1 {
            (t0, t1.max(t0 + 1))
        } else {
            (0, 1)
        };
        let series: Vec<(&Curve, Steps, Steps)> = self
            .curves
            .iter()
            .map(|c| (c, steps(&c.points, t0), drawdown(&c.points, t0)))
            .collect();
        let range = |vals: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = vals.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
            let pad = ((hi - lo) * 0.05).max(0.01);
            (lo - pad)..(hi + pad)
        };
        let y = range(&mut series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
        let axis = time_axis(t0, t1, 8);
        let mut chart = ChartBuilder::on(&top)
            .caption(&self.title, font(20.0))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(time_coord(&axis, (t0, t1)), y)
            .map_err(err)?;
        let grid = RGBColor(235, 235, 235);
        draw_time_mesh(&mut chart, &axis, None, "cumulative return (%)", grid)?;
        for (c, s, _) in &series {
            let col = colour(&c.label);
            let total = c.points.last().map_or(0.0, |p| p.1);
            chart
                .draw_series(LineSeries::new(s.iter().copied(), col.stroke_width(2)))
                .map_err(err)?
                .label(if c.params.is_empty() {
                    format!("{}: {:+.2} %", c.label, total)
                } else {
                    format!("{}: {:+.2} % ({})", c.label, total, c.params)
                })
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(font(12.0))
            .draw()
            .map_err(err)?;
        let y = range(&mut series.iter().flat_map(|s| s.2.iter().map(|p| p.1)));
        let mut dd = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(time_coord(&axis, (t0, t1)), y)
            .map_err(err)?;
        let x_desc = Some("exit time (UTC)");
        draw_time_mesh(&mut dd, &axis, x_desc, "drawdown (pp)", grid)?;
        for (c, _, d) in &series {
            dd.draw_series(LineSeries::new(d.iter().copied(), colour(&c.label)))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// A step curve for plotting: (time, value) pairs.
type Steps = Vec<(i64, f64)>;
