//! Drawing once for both backends (PNG and SVG), with the embedded font.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::coord::combinators::{BindKeyPoints, WithKeyPoints};
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::prelude::*;

use super::ReportError;
use super::axis::{TimeAxis, time_label};

/// Roboto Regular (Apache-2.0, from Debian's `fonts-roboto-unhinted`; see assets/fonts/): every
/// label is drawn with it, so pictures do not depend on the machine's fonts.
pub const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/Roboto-Regular.ttf");
pub const FONT: &str = "Roboto";

static REGISTER: Once = Once::new();

pub fn register_font() {
    REGISTER.call_once(|| {
        // The bytes are the shipped font: a failure is a build defect, caught by every test
        // that draws.
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            eprintln!("warning: the embedded font could not be registered");
        }
    });
}

/// A picture that can draw itself on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

pub fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// The figure as SVG text.
pub fn svg<F: Figure>(fig: &F) -> Result<String, ReportError> {
    register_font();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, fig.size()).into_drawing_area();
        fig.draw(&root).map_err(|m| ReportError::Draw {
            file: None,
            message: m,
        })?;
        root.present().map_err(|e| ReportError::Draw {
            file: None,
            message: err(e),
        })?;
    }
    Ok(text)
}

/// The figure as PNG bytes, drawn and encoded in memory: the caller writes every output
/// atomically together, and a full disk is then reported by that write, naming the file.
/// `file` names the picture in a drawing error.
pub fn png<F: Figure>(fig: &F, file: &Path) -> Result<Vec<u8>, ReportError> {
    register_font();
    let (w, h) = fig.size();
    let draw_err = |message: String| ReportError::Draw {
        file: Some(file.to_path_buf()),
        message,
    };
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        fig.draw(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(err(e)))?;
    }
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| draw_err(format!("PNG encoding: {e}")))?;
    Ok(bytes)
}

/// The x coordinate of a chart over time: epoch ms with ticks on round times.
pub type TimeCoord = WithKeyPoints<RangedCoordi64>;

/// `t0..t1` as a time coordinate with the ticks of `axis`.
pub fn time_coord(axis: &TimeAxis, (t0, t1): (i64, i64)) -> TimeCoord {
    (t0..t1)
        .with_key_points(axis.ticks.clone())
        .with_light_points(axis.light.clone())
}

/// The axes of a chart over time (epoch ms on x): the ticks and labels of `axis` (round times,
/// `super::axis`), the shared fonts and a light grid of `grid`.
pub fn draw_time_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<TimeCoord, RangedCoordf64>>,
    axis: &TimeAxis,
    x_desc: Option<&str>,
    y_desc: &str,
    grid: RGBColor,
) -> Result<(), String> {
    let step = axis.step;
    let labels = move |t: &i64| time_label(*t, step);
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&labels).y_desc(y_desc);
    if let Some(d) = x_desc {
        mesh.x_desc(d);
    }
    mesh.label_style(font(12.0))
        .axis_desc_style(font(14.0))
        .light_line_style(grid)
        .draw()
        .map_err(err)
}

pub fn font(size: f64) -> FontDesc<'static> {
    (FONT, size).into_font()
}

/// `YYYY-MM-DD HH:MM` of epoch ms (UTC).
pub fn minute(ms: i64) -> String {
    let s = crate::timefmt::iso_ms(ms);
    s.get(..16).unwrap_or(&s).replace('T', " ")
}
