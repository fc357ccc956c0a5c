//! Loading and validating candles and trade ticks (DESIGN.md §7).
//!
//! Formats, detected from the file's first bytes and its extension:
//! - CSV with a header holding a time column (`timestamp`, `time`, `open_time`, `date`,
//!   `datetime` or `transact_time`; any case, spaces as `_`) and `open`, `high`, `low`,
//!   `close` (other columns ignored); timestamps as epoch s/ms/µs/ns (by magnitude, fixed by
//!   the first row) or ISO-8601.
//! - Binance kline dumps: no header, `open_time,open,high,low,close,volume,close_time,...`
//!   (a first field that is a number means "no header"). For trades, Binance `trades` and
//!   `aggTrades` dumps without header.
//! - Freqtrade `<PAIR>-<tf>.json` (`[[ms, o, h, l, c, v], ...]`) and `.feather` / `.parquet`
//!   (`date, open, high, low, close, volume`; `date` a datetime or an integer epoch).
//! - Any Parquet or Arrow IPC file with the CSV's columns.
//!
//! Prices are exact decimals: CSV text is parsed with `Decimal::from_str_exact` (scientific
//! notation too); binary floats (Parquet/Feather/JSON) go through their shortest round-trip text.
//!
//! Validation (every error names the file, the line or row, and the field): candle timestamps
//! strictly increasing, `high >= max(open, close)`, `low <= min(open, close)`, prices finite
//! and positive, required columns present, every line as wide as the header (a short last line
//! is a truncated file), at least one data row. Trade timestamps must never decrease (ties keep
//! file order). Gaps between candles are reported in [`GapReport`] and left as they are: no
//! candle is ever invented.

mod build;
mod csv;
mod error;
mod json;
mod parse;
mod table;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rust_decimal::Decimal;

pub use error::DataError;
pub use parse::format_ms;

use build::{CandleBuilder, CandleNames, TradeBuilder};
use error::Loc;
use parse::Cell;
use table::Columnar;

/// Accepted names of the time column, in priority order (case-insensitive).
pub const TIME_COLUMNS: &[&str] = &[
    "timestamp",
    "time",
    "open_time",
    "date",
    "datetime",
    "transact_time",
];

/// A column name as matched against [`TIME_COLUMNS`] and the price columns: trimmed, lower
/// case, spaces and hyphens as `_` (`Open time` matches `open_time`).
pub(crate) fn column_key(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Validated OHLC candles, oldest first. `ts` is each bar's open time in epoch ms UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct Candles {
    pub ts: Vec<i64>,
    pub open: Vec<Decimal>,
    pub high: Vec<Decimal>,
    pub low: Vec<Decimal>,
    pub close: Vec<Decimal>,
    pub gaps: GapReport,
}

impl Candles {
    /// Candles from in-memory columns, validated like a file (errors say `row N`, 1-based, and
    /// name the file `<memory>`); the gap report is computed.
    pub fn new(
        ts: Vec<i64>,
        open: Vec<Decimal>,
        high: Vec<Decimal>,
        low: Vec<Decimal>,
        close: Vec<Decimal>,
    ) -> Result<Candles, DataError> {
        let path = Path::new("<memory>");
        let n = ts.len();
        if [open.len(), high.len(), low.len(), close.len()] != [n; 4] {
            return Err(DataError::new(
                path,
                format!(
                    "columns differ in length: ts {n}, open {}, high {}, low {}, close {}",
                    open.len(),
                    high.len(),
                    low.len(),
                    close.len()
                ),
            ));
        }
        let mut builder = CandleBuilder::new(CandleNames::default());
        for i in 0..n {
            let loc = Loc::Row(i + 1);
            builder
                .push(
                    loc,
                    [
                        Cell::Ms(ts[i]),
                        Cell::Dec(open[i]),
                        Cell::Dec(high[i]),
                        Cell::Dec(low[i]),
                        Cell::Dec(close[i]),
                    ],
                )
                .map_err(|e| e.into_data_error(path, loc))?;
        }
        builder
            .finish()
            .ok_or_else(|| DataError::new(path, "no data rows"))
    }

    /// Number of candles.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there are no candles (never true for loaded data).
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The candle interval Δ in ms (see [`interval_ms`]); 0 for a single candle.
    pub fn interval_ms(&self) -> i64 {
        self.gaps.interval_ms
    }
}

/// Validated trade ticks in file order; `ts` (epoch ms UTC) never decreases.
#[derive(Debug, Clone, PartialEq)]
pub struct Trades {
    pub ts: Vec<i64>,
    pub price: Vec<Decimal>,
}

impl Trades {
    /// Trades from in-memory columns, validated like a file.
    pub fn new(ts: Vec<i64>, price: Vec<Decimal>) -> Result<Trades, DataError> {
        let path = Path::new("<memory>");
        if ts.len() != price.len() {
            return Err(DataError::new(
                path,
                format!(
                    "columns differ in length: ts {}, price {}",
                    ts.len(),
                    price.len()
                ),
            ));
        }
        let mut builder = TradeBuilder::new("timestamp", "price");
        for (i, (&t, &p)) in ts.iter().zip(&price).enumerate() {
            let loc = Loc::Row(i + 1);
            builder
                .push(loc, [Cell::Ms(t), Cell::Dec(p)])
                .map_err(|e| e.into_data_error(path, loc))?;
        }
        builder
            .finish()
            .ok_or_else(|| DataError::new(path, "no data rows"))
    }

    /// Number of ticks.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there are no ticks (never true for loaded data).
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// Missing stretches between candles. A gap is a difference between consecutive timestamps
/// larger than the interval; gaps are bridged (the next candle simply follows), never filled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GapReport {
    /// The candle interval Δ (see [`interval_ms`]); 0 when there are fewer than 2 candles.
    pub interval_ms: i64,
    /// Number of gaps.
    pub count: usize,
    /// The longest missing stretch: the largest difference minus the interval; 0 if none.
    pub longest_ms: i64,
}

impl GapReport {
    /// The report for increasing timestamps.
    pub fn from_timestamps(ts: &[i64]) -> GapReport {
        let Some(interval) = interval_ms(ts) else {
            return GapReport::default();
        };
        Self::with_interval(ts, interval)
    }

    /// The report for increasing timestamps at a given interval (`[data] interval`).
    pub fn with_interval(ts: &[i64], interval: i64) -> GapReport {
        let mut report = GapReport {
            interval_ms: interval,
            count: 0,
            longest_ms: 0,
        };
        for w in ts.windows(2) {
            let diff = w[1].saturating_sub(w[0]);
            if diff > interval {
                report.count += 1;
                report.longest_ms = report.longest_ms.max(diff - interval);
            }
        }
        report
    }
}

/// The candle interval: the most common difference between consecutive timestamps; a tie takes
/// the smaller. `None` for fewer than 2 rows (or when no difference is positive: only
/// increasing steps count).
pub fn interval_ms(ts: &[i64]) -> Option<i64> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for w in ts.windows(2) {
        let diff = w[1].saturating_sub(w[0]);
        if diff > 0 {
            *counts.entry(diff).or_default() += 1;
        }
    }
    // Equal counts: the larger step compares as smaller, so the maximum is the smallest step.
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(diff, _)| diff)
}

/// One timestamp text as epoch milliseconds UTC: an epoch number in s/ms/µs/ns (by magnitude:
/// `< 1e11` s, `< 1e14` ms, `< 1e17` µs, else ns; sub-millisecond parts floored) or ISO-8601
/// (`2022-12-13T00:00:00Z`, `2022-12-13 00:00:00`, fractions and offsets allowed; UTC if none).
pub fn parse_time(text: &str) -> Result<i64, String> {
    parse::TsParser::default().parse(Cell::Str(text))
}

/// An ISO-8601 date or date-time alone (no epoch numbers) as epoch milliseconds, UTC when no
/// offset is given; the error says what is wrong with it.
pub fn parse_iso_time(text: &str) -> Result<i64, &'static str> {
    parse::parse_iso_ms(text.trim())
}

/// A CSV whose header names `price` but not `open`: trade ticks rather than candles (what
/// `trailstop trace` and trace check cases replay as ticks without being told).
pub fn looks_like_ticks(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| looks_like_ticks_in(&bytes))
}

/// [`looks_like_ticks`] of a file's bytes.
pub fn looks_like_ticks_in(bytes: &[u8]) -> bool {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let header = String::from_utf8_lossy(line).to_ascii_lowercase();
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    cols.contains(&"price") && !cols.contains(&"open")
}

/// Whether `path` is a pipe, a terminal or another stream that can be read only once (a FIFO,
/// `/dev/stdin`): such input is read whole, once, and parsed from memory.
fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// A data file's bytes, read once: what a FIFO or `/dev/stdin` needs (see [`load_candles_in`]).
pub fn read_input(path: &Path) -> Result<Vec<u8>, DataError> {
    read_all(path)
}

/// What a file holds, from its first bytes and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
    Columnar(Columnar),
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn read_head(path: &Path) -> Result<Vec<u8>, DataError> {
    let file =
        std::fs::File::open(path).map_err(|e| DataError::new(path, format!("cannot open: {e}")))?;
    let mut head = Vec::with_capacity(64);
    file.take(64)
        .read_to_end(&mut head)
        .map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    Ok(head)
}

fn detect(path: &Path, head: &[u8]) -> Result<Format, DataError> {
    let ext = extension(path);
    if head.is_empty() {
        return Err(DataError::new(path, "the file is empty: no data rows"));
    }
    if head.starts_with(b"PAR1") {
        return Ok(Format::Columnar(Columnar::Parquet));
    }
    if head.starts_with(b"ARROW1") {
        return Ok(Format::Columnar(Columnar::Ipc));
    }
    if head.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
        return Err(DataError::new(
            path,
            "an Arrow IPC stream is not supported; write it as an IPC file (Feather v2)",
        ));
    }
    if head.starts_with(&[0x1F, 0x8B]) {
        return Err(DataError::new(
            path,
            "a gzip-compressed file is not supported; decompress it first",
        ));
    }
    if head.starts_with(b"PK\x03\x04") {
        return Err(DataError::new(
            path,
            "a zip archive is not supported (Binance dumps ship zipped); unzip it first",
        ));
    }
    match ext.as_str() {
        "parquet" | "pq" => {
            return Err(DataError::new(path, "not a Parquet file (no `PAR1` magic)"));
        }
        "feather" | "arrow" | "ipc" => {
            return Err(DataError::new(
                path,
                "not an Arrow IPC file (no `ARROW1` magic)",
            ));
        }
        _ => {}
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if ext == "json" || matches!(first, Some(b'[' | b'{')) {
        return Ok(Format::Json);
    }
    Ok(Format::Csv)
}

fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))
}

/// Loads and validates candles from a CSV, Binance dump, Freqtrade JSON/Feather/Parquet,
/// Parquet or Arrow IPC file (or a pipe giving one).
pub fn load_candles(path: &Path) -> Result<Candles, DataError> {
    if is_stream(path) {
        return load_candles_in(path, &read_all(path)?);
    }
    match detect(path, &read_head(path)?)? {
        Format::Csv => csv::load_candles(path, &read_all(path)?),
        Format::Json => json::load_candles(path, &read_all(path)?),
        Format::Columnar(kind) => table::load_candles(path, kind, None),
    }
}

/// Loads and validates trade ticks (a time column and `price`; other columns ignored).
pub fn load_trades(path: &Path) -> Result<Trades, DataError> {
    if is_stream(path) {
        return load_trades_in(path, &read_all(path)?);
    }
    match detect(path, &read_head(path)?)? {
        Format::Csv => csv::load_trades(path, &read_all(path)?),
        Format::Json => json::load_trades(path, &read_all(path)?),
        Format::Columnar(kind) => table::load_trades(path, kind, None),
    }
}

/// [`load_candles`] of bytes already read from `path` (named in errors).
pub fn load_candles_in(path: &Path, bytes: &[u8]) -> Result<Candles, DataError> {
    match detect(path, head(bytes))? {
        Format::Csv => csv::load_candles(path, bytes),
        Format::Json => json::load_candles(path, bytes),
        Format::Columnar(kind) => table::load_candles(path, kind, Some(bytes)),
    }
}

/// [`load_trades`] of bytes already read from `path` (named in errors).
pub fn load_trades_in(path: &Path, bytes: &[u8]) -> Result<Trades, DataError> {
    match detect(path, head(bytes))? {
        Format::Csv => csv::load_trades(path, bytes),
        Format::Json => json::load_trades(path, bytes),
        Format::Columnar(kind) => table::load_trades(path, kind, Some(bytes)),
    }
}

/// The bytes [`detect`] looks at.
fn head(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(64)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn interval_is_the_most_common_step_and_a_tie_takes_the_smaller() {
        assert_eq!(interval_ms(&[]), None);
        assert_eq!(interval_ms(&[5]), None);
        assert_eq!(interval_ms(&[0, 60_000]), Some(60_000));
        assert_eq!(interval_ms(&[0, 60, 120, 300, 360]), Some(60));
        // 60 twice, 120 twice: the tie takes 60
        assert_eq!(interval_ms(&[0, 120, 240, 300, 360]), Some(60));
        assert_eq!(interval_ms(&[0, 120, 180, 300, 360]), Some(60));
        // 120 three times beats 60 twice
        assert_eq!(interval_ms(&[0, 120, 240, 360, 420, 480]), Some(120));
        assert_eq!(interval_ms(&[10, 10]), None);
    }

    #[test]
    fn gaps_are_counted_and_measured() {
        let g = GapReport::from_timestamps(&[0, 60, 120, 300, 360, 480]);
        assert_eq!(
            g,
            GapReport {
                interval_ms: 60,
                count: 2,
                longest_ms: 120
            }
        );
        assert_eq!(GapReport::from_timestamps(&[0, 60, 120]).count, 0);
        assert_eq!(GapReport::from_timestamps(&[7]), GapReport::default());
    }

    #[test]
    fn in_memory_candles_are_validated() {
        const T: i64 = 1_704_067_200_000;
        let c = Candles::new(
            vec![T, T + 60_000, T + 180_000],
            vec![dec!(10), dec!(11), dec!(12)],
            vec![dec!(11), dec!(12), dec!(13)],
            vec![dec!(9), dec!(10), dec!(11)],
            vec![dec!(11), dec!(12), dec!(12.5)],
        )
        .unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.interval_ms(), 60_000);
        assert_eq!(c.gaps.count, 1);
        assert_eq!(c.gaps.longest_ms, 60_000);
        let e = Candles::new(
            vec![T, T],
            vec![dec!(1), dec!(1)],
            vec![dec!(1), dec!(1)],
            vec![dec!(1), dec!(1)],
            vec![dec!(1), dec!(1)],
        )
        .unwrap_err();
        assert_eq!(e.location.as_deref(), Some("row 2"));
        assert_eq!(e.field.as_deref(), Some("timestamp"));
        let e = Trades::new(vec![T + 5, T + 4], vec![dec!(1), dec!(1)]).unwrap_err();
        assert!(e.message.contains("must not go back in time"), "{e}");
        let t = Trades::new(vec![T + 5, T + 5, T + 6], vec![dec!(1), dec!(2), dec!(3)]).unwrap();
        // In-memory times are checked like a file's.
        let e = Trades::new(vec![5], vec![dec!(1)]).unwrap_err();
        assert!(
            e.message
                .starts_with("datetime 1970-01-01T00:00:00.005Z, before 2009-01-03"),
            "{e}"
        );
        assert_eq!(t.price, vec![dec!(1), dec!(2), dec!(3)]);
    }

    #[test]
    fn detects_formats() {
        let p = Path::new("x.csv");
        assert_eq!(detect(p, b"timestamp,open"), Ok(Format::Csv));
        assert_eq!(detect(p, b"  [[1,2"), Ok(Format::Json));
        assert_eq!(detect(Path::new("a.json"), b"x"), Ok(Format::Json));
        assert_eq!(
            detect(p, b"PAR1\x15"),
            Ok(Format::Columnar(Columnar::Parquet))
        );
        assert_eq!(
            detect(p, b"ARROW1\0\0"),
            Ok(Format::Columnar(Columnar::Ipc))
        );
        assert!(detect(Path::new("a.parquet"), b"timestamp").is_err());
        assert!(
            detect(p, b"PK\x03\x04")
                .unwrap_err()
                .message
                .contains("zip")
        );
        assert!(detect(p, b"").unwrap_err().message.contains("empty"));
    }
}
