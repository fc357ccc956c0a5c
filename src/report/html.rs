//! `index.html`: one self-contained page (inline SVG, the font as a data URI, no script, no
//! network) with the summary tables, the pictures and the command that made them.

use std::fmt::Write;

use super::Drawn;
use super::figure::{FONT, FONT_BYTES};
use crate::sweep::exec::Row;
use crate::sweep::metrics::Metrics;
use crate::sweep::report_data::ReportData;
use crate::sweep::table::Scores;
use crate::sweep::{Meta, Picked};

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn num(v: Option<f64>, dp: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.dp$}"))
}

const METRIC_HEAD: &str = "<th>trades</th><th>total %</th><th>mean %</th><th>win rate</th><th>profit factor</th><th>max DD pp</th><th>Sharpe</th><th>giveback pp</th><th>capture</th><th>stop updates</th><th>held</th><th>emergency</th><th>unprotected ms</th><th>ambiguous share</th>";

fn metric_cells(m: &Metrics) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        m.trades,
        num(m.total_return_pct, 4),
        num(m.mean_return_pct, 4),
        num(m.win_rate, 3),
        num(m.profit_factor, 3),
        num(m.max_drawdown_pct, 4),
        num(m.sharpe, 3),
        num(m.mean_giveback_pct, 4),
        num(m.capture_ratio, 3),
        m.stop_updates,
        m.updates_held,
        m.emergency_updates,
        m.unprotected_ms,
        num(m.ambiguous_share, 4),
    )
}

fn pick_row(label: &str, p: &Picked, band: Option<(Option<f64>, Option<f64>)>) -> String {
    let band = band.map_or("–".to_string(), |(o, p)| {
        format!("{} / {}", num(o, 4), num(p, 4))
    });
    format!(
        "<tr><th>{}</th><td class=p>{}</td><td>{}</td><td>{}</td><td>{band}</td>{}</tr>\n",
        escape(label),
        escape(&p.params),
        num(p.objective, 4),
        num(p.plateau, 4),
        metric_cells(&p.metrics)
    )
}

fn head(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{}</title>\n<style>\n@font-face{{font-family:'{FONT}';src:url(data:font/ttf;base64,{}) format('truetype');}}\nbody{{font-family:'{FONT}',sans-serif;margin:24px;color:#222;background:#fff}}\ntable{{border-collapse:collapse;margin:8px 0 20px;font-size:13px}}\nth,td{{border:1px solid #ccc;padding:3px 6px;text-align:right}}\ntd.p{{text-align:left;font-family:monospace}}\npre{{background:#f4f4f4;padding:8px;white-space:pre-wrap}}\nfigure{{margin:12px 0}}\nsvg{{max-width:100%;height:auto}}\n</style></head><body>\n",
        escape(title),
        base64(FONT_BYTES)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(title));
}

/// A backtest's page: its metrics (those of `summary.json`), band, exits, equity curve and the
/// charts of its top and worst trades.
pub fn backtest_page(
    s: &crate::backtest::Summary,
    command: &str,
    equity: &Drawn,
    trades: &[Drawn],
) -> String {
    let mut h = String::with_capacity(400_000);
    head(&mut h, &format!("{} — backtest report", s.scenario));
    let _ = writeln!(
        h,
        "<p>{} on {} ({} rows), venue {}, {} intrabar.</p>\n<p>Reproduce with:</p><pre>{}</pre>",
        escape(if s.symbol.is_empty() {
            "data"
        } else {
            &s.symbol
        }),
        escape(&s.data),
        s.data_rows,
        escape(&s.venue),
        s.totals.policy.as_str(),
        escape(command)
    );
    h.push_str("<h2>Summary</h2>\n<table><tr>");
    h.push_str(METRIC_HEAD);
    let _ = writeln!(h, "</tr>\n<tr>{}</tr>\n</table>", metric_cells(&s.metrics));
    let exits: Vec<String> = s
        .exit_reasons
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let _ = writeln!(
        h,
        "<p>Exits: {}.</p>\n<p>Band (the whole run with each candle's adverse extreme first, then its favourable one first): total {:+.4} % pessimistic, {:+.4} % optimistic; {} ambiguous bars.</p>",
        escape(&exits.join(", ")),
        s.band.pessimistic.total_return_pct,
        s.band.optimistic.total_return_pct,
        s.ambiguous_bars
    );
    for w in &s.warnings {
        let _ = writeln!(h, "<p><b>Warning:</b> {}</p>", escape(w));
    }
    h.push_str("<h2>Equity</h2>\n");
    let _ = writeln!(h, "<figure>{}</figure>", equity.svg);
    if !trades.is_empty() {
        h.push_str("<h2>Top and worst trades</h2>\n");
        for d in trades {
            let _ = writeln!(
                h,
                "<figure>{}<figcaption>trades/{}.png</figcaption></figure>",
                d.svg, d.stem
            );
        }
    }
    h.push_str("<p>Definitions of the metrics: README, \"Sweeps and reports\". Font: Roboto (Apache-2.0), embedded.</p>\n</body></html>\n");
    h
}

/// `scores`: every row's numbers; `top`: the full rows of the best cells, best first.
pub fn page(
    meta: &Meta,
    data: &ReportData,
    scores: &[Scores],
    top: &[Row],
    heatmaps: &[Drawn],
    equity: &Drawn,
    trades: &[Drawn],
) -> String {
    let mut h = String::with_capacity(600_000);
    let title = format!("{} — sweep report", meta.scenario);
    head(&mut h, &title);
    let status = if meta.interrupted {
        format!(
            "<p><b>Interrupted:</b> {} of {} combinations finished; the tables hold those.</p>",
            meta.finished, meta.combinations
        )
    } else {
        format!("<p>{} combinations.</p>", meta.finished)
    };
    h.push_str(&status);
    let _ = writeln!(
        h,
        "<p>Objective: <b>{}</b> ({}). Grid: {}.</p>",
        meta.objective.as_str(),
        escape(meta.objective.label()),
        escape(
            &meta
                .grid
                .axes
                .iter()
                .map(|a| format!(
                    "{} ∈ {{{}}}",
                    a.key,
                    a.values
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    );
    let _ = writeln!(
        h,
        "<p>Reproduce with:</p><pre>{}</pre>",
        escape(&meta.command)
    );
    if let Some(r) = &meta.results {
        h.push_str("<h2>Summary</h2>\n<table><tr><th></th><th>parameters</th><th>objective</th><th>plateau</th><th>band opt / pess</th>");
        h.push_str(METRIC_HEAD);
        h.push_str("</tr>\n");
        let band_of = |p: &Picked| {
            p.combo.and_then(|c| {
                scores
                    .binary_search_by_key(&c, |s| s.combo)
                    .ok()
                    .map(|i| &scores[i])
                    .map(|r| (r.objective_optimistic, r.objective_pessimistic))
            })
        };
        if let Some(b) = &r.best {
            h.push_str(&pick_row("best", b, band_of(b)));
        }
        if let Some(b) = &r.robust {
            h.push_str(&pick_row("most robust", b, band_of(b)));
        }
        h.push_str(&pick_row("scenario's own", &r.scenario, None));
        h.push_str("</table>\n");
        if let Some(wf) = &r.walk_forward {
            h.push_str("<h2>Walk-forward</h2>\n<p>Each step chooses on one fold (trades opened and closed in it) and measures the choice on the next fold (trades opened in it).</p>\n<table><tr><th>train</th><th>test</th><th>chosen</th><th>train objective</th><th>test objective</th><th>test return %</th></tr>\n");
            for s in &wf.steps {
                let _ = writeln!(
                    h,
                    "<tr><td>{} → {}</td><td>{} → {}</td><td class=p>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    super::figure::minute(s.train_from),
                    super::figure::minute(s.train_to),
                    super::figure::minute(s.test_from),
                    super::figure::minute(s.test_to),
                    escape(s.chosen.as_deref().unwrap_or("–")),
                    num(s.train_objective, 4),
                    num(s.test_objective, 4),
                    num(s.test_return_pct, 4)
                );
            }
            let _ = writeln!(
                h,
                "</table><p>Out-of-sample total return: <b>{:+.4} %</b></p>",
                wf.oos_total_return_pct
            );
        }
    }
    h.push_str("<h2>Heatmap</h2>\n");
    for d in heatmaps {
        let _ = writeln!(
            h,
            "<figure>{}<figcaption>{}.png / .svg</figcaption></figure>",
            d.svg, d.stem
        );
    }
    h.push_str("<h2>Equity</h2>\n");
    let _ = writeln!(h, "<figure>{}</figure>", equity.svg);
    if !trades.is_empty() {
        h.push_str("<h2>Top and worst trades of the best parameters</h2>\n");
        for d in trades {
            let _ = writeln!(
                h,
                "<figure>{}<figcaption>trades/{}.png</figcaption></figure>",
                d.svg, d.stem
            );
        }
    }
    // The ten best cells.
    h.push_str(
        "<h2>Top cells</h2>\n<table><tr><th>combo</th><th>parameters</th><th>objective</th>",
    );
    h.push_str(METRIC_HEAD);
    h.push_str("</tr>\n");
    for r in top {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=p>{}</td><td>{}</td>{}</tr>",
            r.combo,
            escape(&meta.grid.describe(r.combo)),
            num(r.objective, 4),
            metric_cells(&r.metrics)
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p>Scenario <code>{}</code>; {} curves, {} trade charts. Definitions of the metrics: README, \"Sweeps and reports\". Font: Roboto (Apache-2.0), embedded.</p>\n</body></html>",
        escape(&data.scenario),
        data.curves.len(),
        data.charts.len()
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
