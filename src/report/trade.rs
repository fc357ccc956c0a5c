//! One trade: candles, the peak, the desired stop, the stop resting on the exchange (its steps
//! show the rate limit; gaps are the unprotected windows), activation and exit markers.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{PriceFrame, TimeAxis, price_frame, time_axis};
use super::figure::{Figure, draw_time_mesh, err, font, time_coord};
use crate::sweep::report_data::TradeChart;

/// The share of the chart's height kept above the trade for the legend.
pub const LEGEND_SHARE: f64 = 0.28;

impl TradeChart {
    /// The time span drawn: the candles around the trade, the entry and the exit.
    pub fn time_span(&self) -> (i64, i64) {
        let end = self.candles.last().map_or(self.exit_time, |c| c.ts) + self.candle_ms;
        let t0 = self
            .candles
            .first()
            .map_or(self.entry_time, |c| c.ts)
            .min(self.entry_time);
        (t0, end.max(self.exit_time + 1))
    }

    /// The time axis: ticks on round times.
    pub fn time_axis(&self) -> TimeAxis {
        let (t0, t1) = self.time_span();
        time_axis(t0, t1, 8)
    }

    /// The price frame: the trade's levels (entry, exit, activation, the peak, both stops) and
    /// the candle bodies always inside, below the legend; the wicks only as far as they do not
    /// flatten the rest ([`price_frame`]).
    pub fn price_frame(&self) -> PriceFrame {
        let levels = self
            .candles
            .iter()
            .flat_map(|c| [c.open, c.close])
            .chain(self.desired.iter().map(|p| p.1))
            .chain(self.exchange.iter().filter_map(|p| p.1))
            .chain(self.peak.iter().map(|p| p.1))
            .chain(self.activation.map(|a| a.1))
            .chain([self.entry_price, self.exit_price]);
        let wicks = self.candles.iter().flat_map(|c| [c.low, c.high]);
        price_frame(levels, wicks, LEGEND_SHARE)
    }
}

impl Figure for TradeChart {
    fn size(&self) -> (u32, u32) {
        (960, 540)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (t0, t1) = self.time_span();
        let axis = self.time_axis();
        let frame = self.price_frame();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, font(15.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(time_coord(&axis, (t0, t1)), frame.lo..frame.hi)
            .map_err(err)?;
        let grid = RGBColor(238, 238, 238);
        draw_time_mesh(&mut chart, &axis, Some("time (UTC)"), "price", grid)?;
        let width = ((860.0 / self.candles.len().max(1) as f64) * 0.7).clamp(1.0, 12.0) as u32;
        let up = RGBColor(38, 166, 91);
        let down = RGBColor(214, 69, 65);
        chart
            .draw_series(self.candles.iter().map(|c| {
                // A wick beyond the frame (a spike) is cut at its edge.
                CandleStick::new(
                    c.ts + self.candle_ms / 2,
                    c.open,
                    c.high.min(frame.legend_floor),
                    c.low.max(frame.lo),
                    c.close,
                    up.filled(),
                    down.filled(),
                    width,
                )
            }))
            .map_err(err)?;
        let step_line = |pts: &[(i64, f64)], until: i64| -> Vec<(i64, f64)> {
            let mut out: Vec<(i64, f64)> = Vec::new();
            for &(t, v) in pts {
                if let Some(&(_, prev)) = out.last() {
                    out.push((t, prev));
                }
                out.push((t, v));
            }
            if let Some(&(t, v)) = out.last()
                && t < until
            {
                out.push((until, v));
            }
            out
        };
        let orange = RGBColor(255, 140, 0);
        chart
            .draw_series(LineSeries::new(
                step_line(&self.peak, self.exit_time),
                orange.stroke_width(2),
            ))
            .map_err(err)?
            .label("peak since entry")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], orange));
        let blue = RGBColor(0, 90, 255);
        chart
            .draw_series(LineSeries::new(
                step_line(&self.desired, self.exit_time),
                blue.stroke_width(1),
            ))
            .map_err(err)?
            .label("desired stop (engine)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue));
        // The exchange's stop: one segment per resting period.
        let purple = RGBColor(128, 0, 160);
        let mut segments: Vec<Vec<(i64, f64)>> = Vec::new();
        for w in self.exchange.windows(2) {
            if let (t, Some(v)) = w[0] {
                segments.push(vec![(t, v), (w[1].0, v)]);
            }
        }
        let mut first = true;
        for seg in segments {
            let s = chart
                .draw_series(LineSeries::new(seg, purple.stroke_width(3)))
                .map_err(err)?;
            if first {
                s.label("stop on the exchange")
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], purple));
                first = false;
            }
        }
        chart
            .draw_series([Circle::new(
                (self.entry_time, self.entry_price),
                5,
                BLACK.filled(),
            )])
            .map_err(err)?
            .label("entry")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.filled()));
        if let Some((t, p)) = self.activation {
            let green = RGBColor(0, 150, 60);
            chart
                .draw_series([TriangleMarker::new((t, p), 8, green.filled())])
                .map_err(err)?
                .label("activation")
                .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, green.filled()));
        }
        chart
            .draw_series([Cross::new(
                (self.exit_time, self.exit_price),
                7,
                RED.stroke_width(3),
            )])
            .map_err(err)?
            .label(format!("exit ({})", self.exit_reason))
            .legend(|(x, y)| Cross::new((x + 9, y), 5, RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(font(12.0))
            .draw()
            .map_err(err)?;
        Ok(())
    }
}
