//! What the charts show, read from the computed axes and titles rather than pixels (issue 9):
//! time ticks on round times, P&L with two decimals and prices on the tick in titles, a short's
//! initial stop inside the frame (not under the legend), and no spike that flattens the axis.

use std::path::Path;

use rust_decimal::Decimal;
use trailstop::backtest;
use trailstop::report::axis::{Step, time_label};
use trailstop::scenario::Scenario;
use trailstop::sweep::picks;
use trailstop::sweep::report_data::ReportData;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The quickstart's backtest report data, on `data` (a candle file) when given.
fn charts(data: Option<&Path>) -> (backtest::Report, ReportData) {
    let path = root().join("scenarios/quickstart.toml");
    let sets: Vec<String> = data
        .map(|d| format!("data.candles=\"{}\"", d.display()))
        .into_iter()
        .collect();
    let scenario = Scenario::load(&path, &sets).unwrap();
    let loaded = backtest::load(&scenario).unwrap();
    let report = backtest::run_scenario(&scenario, &loaded, |_, _| {}).unwrap();
    let data = picks::backtest_data(&scenario, &loaded, &report);
    (report, data)
}

#[test]
fn time_ticks_fall_on_round_times() {
    let (_, data) = charts(None);
    assert_eq!(data.charts.len(), 6);
    for c in &data.charts {
        let axis = c.time_axis();
        let (t0, t1) = c.time_span();
        let Step::Ms(step) = axis.step else {
            panic!("{}: a day of data ticks in hours", c.file)
        };
        assert!(
            axis.ticks.len() >= 2 && axis.ticks.len() <= 8,
            "{}: {:?}",
            c.file,
            axis.ticks
        );
        for t in &axis.ticks {
            assert!((t0..=t1).contains(t), "{}: tick inside", c.file);
            assert_eq!(t % step, 0, "{}: {t} on a multiple of {step} ms", c.file);
            // Steps of minutes and hours: labels end on whole minutes (`MM-DD HH:MM`).
            let label = time_label(*t, axis.step);
            assert_eq!(label.len(), 11, "{label}");
            assert_eq!(&label[2..3], "-");
        }
        // Round minutes at least: 1, 2, 5, 10, 15 or 30 of them, or hours.
        assert!(step % 60_000 == 0, "{}: {step}", c.file);
    }
}

#[test]
fn titles_show_pnl_with_two_decimals_and_prices_on_the_tick() {
    let (report, data) = charts(None);
    for c in &data.charts {
        let id: u64 = c.file.rsplit('-').next().unwrap().parse().unwrap();
        let row = report.rows.iter().find(|r| r.position_id == id).unwrap();
        let pnl = c.title.split("pnl ").nth(1).unwrap().trim_end_matches(" %");
        assert_eq!(
            pnl,
            format!("{:+.2}", row.pnl_pct.round_dp(2)),
            "{}",
            c.title
        );
        // "short 17643.58 to 17777.08,": both on the 0.01 tick.
        let side = row.side.as_str();
        let prices = c.title.split(&format!("{side} ")).nth(1).unwrap();
        let (entry, rest) = prices.split_once(" to ").unwrap();
        let exit = rest.split(',').next().unwrap();
        for p in [entry, exit] {
            let d: Decimal = p.parse().unwrap_or_else(|_| panic!("{}", c.title));
            assert!(d.scale() <= 2, "{p} on the tick in {}", c.title);
        }
        let exit: Decimal = exit.parse().unwrap();
        assert!(
            (exit - row.exit_price).abs() <= Decimal::new(5, 3),
            "{}",
            c.title
        );
    }
}

#[test]
fn a_shorts_initial_stop_is_inside_the_frame_below_the_legend() {
    let (report, data) = charts(None);
    let mut shorts = 0;
    for c in data.charts.iter().filter(|c| c.side == "short") {
        let id: u64 = c.file.rsplit('-').next().unwrap().parse().unwrap();
        let row = report.rows.iter().find(|r| r.position_id == id).unwrap();
        let f = c.price_frame();
        // The initial stop of a short lies above its entry: the first stop sent.
        let initial = c.exchange.iter().find_map(|p| p.1).unwrap();
        assert!(initial > c.entry_price, "{}", c.title);
        let levels = c
            .desired
            .iter()
            .map(|p| p.1)
            .chain(c.exchange.iter().filter_map(|p| p.1))
            .chain([c.entry_price, c.exit_price, initial]);
        for p in levels {
            assert!(
                p > f.lo && p < f.legend_floor,
                "#{} {p} inside [{}, {}) below the legend: {}",
                row.position_id,
                f.lo,
                f.legend_floor,
                c.title
            );
        }
        shorts += 1;
    }
    assert!(shorts > 0, "the quickstart's charts include a short");
}

#[test]
fn a_spike_does_not_flatten_the_price_axis() {
    let tmp = tempfile::tempdir().unwrap();
    // One candle of the last trade (the short opened at 18:00) with a wick ten times the price.
    let text = std::fs::read_to_string(root().join("data/BTCBUSD-1m-20221213.csv")).unwrap();
    let spike_ts = 1_670_958_000_000i64; // 19:00
    let spiked: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f[0] == spike_ts.to_string() {
                format!("{},{},{},{},{},{}", f[0], f[1], "170000", f[3], f[4], f[5])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = tmp.path().join("spiked.csv");
    std::fs::write(&path, spiked + "\n").unwrap();
    let (_, data) = charts(Some(&path));
    let with_spike: Vec<_> = data
        .charts
        .iter()
        .filter(|c| c.candles.iter().any(|k| k.high > 100_000.0))
        .collect();
    assert!(!with_spike.is_empty(), "a chart holds the spike candle");
    for c in with_spike {
        let f = c.price_frame();
        // The trade's prices span a few hundred; the spike would make it 150,000.
        assert!(f.hi - f.lo < 2_000.0, "{}: {f:?}", c.title);
        assert!(
            c.entry_price > f.lo && c.exit_price < f.legend_floor,
            "{}",
            c.title
        );
    }
}
