//! Parsing single values: exact decimals and timestamps (epoch s/ms/µs/ns or ISO-8601).

use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::echo::echo;
use crate::engine::exact_decimal;

/// One raw value of one row, as the file holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    /// Text (CSV field, JSON string, String column).
    Str(&'a str),
    /// An integer (JSON number, integer column).
    Int(i64),
    /// A binary float (JSON number with a fraction, Float64 column).
    F64(f64),
    /// A binary float from a Float32 column (printed as the shortest f32 text).
    F32(f32),
    /// An exact decimal (in-memory data).
    Dec(Decimal),
    /// A point in time already in epoch milliseconds (datetime columns, in-memory data).
    Ms(i64),
    /// A missing value (null).
    Null,
}

/// The unit of an epoch number, detected from its magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    /// `< 1e11` seconds, `< 1e14` milliseconds, `< 1e17` microseconds, else nanoseconds.
    pub(crate) fn detect(abs: u128) -> EpochUnit {
        if abs < 100_000_000_000 {
            EpochUnit::Seconds
        } else if abs < 100_000_000_000_000 {
            EpochUnit::Millis
        } else if abs < 100_000_000_000_000_000 {
            EpochUnit::Micros
        } else {
            EpochUnit::Nanos
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            EpochUnit::Seconds => "seconds",
            EpochUnit::Millis => "milliseconds",
            EpochUnit::Micros => "microseconds",
            EpochUnit::Nanos => "nanoseconds",
        }
    }

    /// Epoch milliseconds from an integer in this unit (floored), `None` on overflow.
    fn int_to_ms(self, v: i64) -> Option<i64> {
        match self {
            EpochUnit::Seconds => v.checked_mul(1000),
            EpochUnit::Millis => Some(v),
            EpochUnit::Micros => Some(v.div_euclid(1000)),
            EpochUnit::Nanos => Some(v.div_euclid(1_000_000)),
        }
    }

    /// Epoch milliseconds from a decimal in this unit (floored), `None` on overflow.
    fn dec_to_ms(self, v: Decimal) -> Option<i64> {
        let ms = match self {
            EpochUnit::Seconds => v.checked_mul(Decimal::from(1000))?,
            EpochUnit::Millis => v,
            EpochUnit::Micros => v.checked_div(Decimal::from(1000))?,
            EpochUnit::Nanos => v.checked_div(Decimal::from(1_000_000))?,
        };
        ms.floor().to_i64()
    }
}

/// Parses a price-like decimal text exactly: plain (`17208.88`) or scientific (`1.5e-7`).
/// Rejects empty text, `NaN`, `inf` and anything else that is not a finite decimal.
pub(crate) fn parse_decimal_text(text: &str) -> Result<Decimal, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty value".to_owned());
    }
    let unsigned = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if matches!(unsigned.as_str(), "nan" | "inf" | "infinity") {
        return Err(format!("`{}` is not a finite number", echo(s)));
    }
    // Only digits, one sign, a point and an exponent: `Decimal::from_str` alone also takes `_`.
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !plain || !s.bytes().any(|b| b.is_ascii_digit()) {
        return Err(format!("`{}` is not a decimal number", echo(s)));
    }
    if let Ok(d) = Decimal::from_str_exact(s) {
        return Ok(d);
    }
    if s.contains(['e', 'E']) {
        // `from_scientific` does not take a `+` in the exponent.
        let normalised = s.replacen("e+", "e", 1).replacen("E+", "E", 1);
        if let Ok(d) = Decimal::from_scientific(&normalised) {
            return Ok(d);
        }
    }
    if Decimal::from_str(s).is_ok() {
        return Err(format!(
            "`{}` has more digits than a 96-bit decimal holds exactly",
            echo(s)
        ));
    }
    if exact_decimal::is_number_text(s) {
        return Err(format!("`{}` is {}", echo(s), exact_decimal::OUT_OF_RANGE));
    }
    Err(format!("`{}` is not a decimal number", echo(s)))
}

/// The exact decimal a binary float stands for, through its shortest round-trip text.
pub(crate) fn f64_to_decimal(v: f64) -> Result<Decimal, String> {
    if !v.is_finite() {
        return Err(format!("`{v}` is not a finite number"));
    }
    parse_decimal_text(&format!("{v}"))
}

fn f32_to_decimal(v: f32) -> Result<Decimal, String> {
    if !v.is_finite() {
        return Err(format!("`{v}` is not a finite number"));
    }
    parse_decimal_text(&format!("{v}"))
}

/// A price cell as an exact decimal (sign not checked here).
pub(crate) fn cell_decimal(cell: Cell<'_>) -> Result<Decimal, String> {
    match cell {
        Cell::Str(s) => parse_decimal_text(s),
        Cell::Int(i) => Ok(Decimal::from(i)),
        Cell::F64(f) => f64_to_decimal(f),
        Cell::F32(f) => f32_to_decimal(f),
        Cell::Dec(d) => Ok(d),
        Cell::Ms(_) => Err("is a date/time, not a number".to_owned()),
        Cell::Null => Err("missing value (null)".to_owned()),
    }
}

/// Turns timestamp cells into epoch milliseconds. The first epoch number fixes the file's unit
/// (by magnitude); a later epoch number of another magnitude is an error, not a silent
/// reinterpretation.
#[derive(Debug, Default)]
pub(crate) struct TsParser {
    unit: Option<EpochUnit>,
}

impl TsParser {
    pub(crate) fn parse(&mut self, cell: Cell<'_>) -> Result<i64, String> {
        match cell {
            Cell::Ms(ms) => Ok(ms),
            Cell::Int(i) => self.epoch_int(i, &i.to_string()),
            Cell::Dec(d) => self.epoch_dec(d, &d.to_string()),
            Cell::F64(f) => {
                let d = f64_to_decimal(f)?;
                self.epoch_dec(d, &format!("{f}"))
            }
            Cell::F32(f) => {
                let d = f32_to_decimal(f)?;
                self.epoch_dec(d, &format!("{f}"))
            }
            Cell::Null => Err("missing value (null)".to_owned()),
            Cell::Str(text) => {
                let s = text.trim();
                if s.is_empty() {
                    return Err("empty value".to_owned());
                }
                if looks_numeric(s) {
                    if let Ok(i) = s.parse::<i64>() {
                        return self.epoch_int(i, s);
                    }
                    return match parse_decimal_text(s) {
                        Ok(d) => self.epoch_dec(d, s),
                        Err(_) => Err(not_a_timestamp(s)),
                    };
                }
                parse_iso_ms(s).map_err(|why| format!("{} ({why})", not_a_timestamp(s)))
            }
        }
    }

    /// [`TsParser::parse`] for market data: a time before [`EARLIEST_MS`] or after
    /// [`LATEST_MS`] cannot be a crypto market's and is refused, naming the value and the unit
    /// it was read in (an epoch in the wrong unit, or a time of day, lands there).
    pub(crate) fn parse_market(&mut self, cell: Cell<'_>) -> Result<i64, String> {
        let ms = self.parse(cell)?;
        if (EARLIEST_MS..=LATEST_MS).contains(&ms) {
            return Ok(ms);
        }
        let bound = if ms < EARLIEST_MS {
            "before 2009-01-03 (the first Bitcoin block): no crypto market is that old"
        } else {
            "after 9999-12-31"
        };
        let read = match cell {
            Cell::Ms(_) => format!("datetime {}", format_ms(ms)),
            Cell::Str(s) if !looks_numeric(s.trim()) => {
                format!("ISO-8601 time `{}` is {}", echo(s.trim()), format_ms(ms))
            }
            _ => {
                let unit = self.unit.map_or("milliseconds", EpochUnit::name);
                format!(
                    "epoch `{}` read as {unit} is {}",
                    cell_text(cell),
                    format_ms(ms)
                )
            }
        };
        let mut hint = String::new();
        if let Some(v) = epoch_value(cell) {
            let others: Vec<String> = [
                EpochUnit::Seconds,
                EpochUnit::Millis,
                EpochUnit::Micros,
                EpochUnit::Nanos,
            ]
            .into_iter()
            .filter(|u| Some(*u) != self.unit)
            .filter_map(|u| {
                let t = u.dec_to_ms(v)?;
                (EARLIEST_MS..=LATEST_MS)
                    .contains(&t)
                    .then(|| format!("as {} it would be {}", u.name(), format_ms(t)))
            })
            .collect();
            if !others.is_empty() {
                hint = format!(" ({}; convert the column to one unit)", others.join(", "));
            } else if (Decimal::ZERO..Decimal::from(86_400_000)).contains(&v) {
                hint = concat!(
                    " (a time of day such as milliseconds since midnight? a timestamp needs",
                    " the date: epoch s/ms/µs/ns since 1970-01-01, or ISO-8601)"
                )
                .to_owned();
            }
        }
        Err(format!("{read}, {bound}{hint}"))
    }

    fn check_unit(&mut self, unit: EpochUnit, text: &str) -> Result<(), String> {
        match self.unit {
            None => {
                self.unit = Some(unit);
                Ok(())
            }
            Some(u) if u == unit => Ok(()),
            Some(u) => Err(format!(
                "epoch `{}` looks like {} but the file's first timestamp is in {}",
                echo(text),
                unit.name(),
                u.name()
            )),
        }
    }

    fn epoch_int(&mut self, v: i64, text: &str) -> Result<i64, String> {
        let unit = EpochUnit::detect(u128::from(v.unsigned_abs()));
        self.check_unit(unit, text)?;
        unit.int_to_ms(v)
            .ok_or_else(|| format!("epoch `{}` is out of range", echo(text)))
    }

    fn epoch_dec(&mut self, v: Decimal, text: &str) -> Result<i64, String> {
        let abs = v.abs().trunc().to_u128().unwrap_or(u128::MAX);
        let unit = EpochUnit::detect(abs);
        self.check_unit(unit, text)?;
        unit.dec_to_ms(v)
            .ok_or_else(|| format!("epoch `{}` is out of range", echo(text)))
    }
}

/// 2009-01-03T00:00:00Z, the day of the first Bitcoin block: no crypto market data is older.
pub(crate) const EARLIEST_MS: i64 = 1_230_940_800_000;
/// 9999-12-31T23:59:59.999Z, the last time ISO-8601's four-digit years write.
pub(crate) const LATEST_MS: i64 = 253_402_300_799_999;

/// An epoch cell's number, as an exact decimal (`None` for text that is not a number).
fn epoch_value(cell: Cell<'_>) -> Option<Decimal> {
    match cell {
        Cell::Int(i) => Some(Decimal::from(i)),
        Cell::Dec(d) => Some(d),
        Cell::F64(f) => f64_to_decimal(f).ok(),
        Cell::F32(f) => f32_to_decimal(f).ok(),
        Cell::Str(s) if looks_numeric(s.trim()) => parse_decimal_text(s).ok(),
        _ => None,
    }
}

/// A cell as the file writes it (for messages).
fn cell_text(cell: Cell<'_>) -> String {
    match cell {
        Cell::Str(s) => echo(s.trim()),
        Cell::Int(i) | Cell::Ms(i) => i.to_string(),
        Cell::F64(f) => f.to_string(),
        Cell::F32(f) => f.to_string(),
        Cell::Dec(d) => d.to_string(),
        Cell::Null => "null".to_owned(),
    }
}

fn not_a_timestamp(s: &str) -> String {
    format!(
        "`{}` is not a timestamp (epoch s/ms/µs/ns or ISO-8601 like 2022-12-13T00:00:00Z)",
        echo(s)
    )
}

/// Digits with an optional sign, point and exponent: an epoch number, not a date.
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    body.first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
        && body.iter().enumerate().all(|(i, &b)| {
            b.is_ascii_digit()
                || matches!(b, b'.' | b'e' | b'E')
                || (matches!(b, b'+' | b'-') && i > 0 && matches!(body[i - 1], b'e' | b'E'))
        })
}

/// Whether a header field is a number (a headerless file's first row).
pub(crate) fn is_number(s: &str) -> bool {
    let s = s.trim();
    looks_numeric(s) && (s.parse::<i64>().is_ok() || parse_decimal_text(s).is_ok())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A cursor over ASCII text for the ISO-8601 parser.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let end = self.i.checked_add(n)?;
        let part = self.b.get(self.i..end)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i = end;
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
}

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fff…]]][ ][Z|UTC|±HH[:MM]|±HHMM]` to epoch milliseconds
/// (UTC when no offset is given; fractions below a millisecond are floored).
pub(crate) fn parse_iso_ms(s: &str) -> Result<i64, &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]";
    let mut c = Cursor {
        b: s.as_bytes(),
        i: 0,
    };
    // `±YYYYYY`: the expanded years `format_ms` writes outside 0000–9999.
    let year = match c.peek() {
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let y = c.digits(6).ok_or(SHAPE)?;
            if sign == b'-' { -y } else { y }
        }
        _ => c.digits(4).ok_or(SHAPE)?,
    };
    if !c.eat(b'-') {
        return Err(SHAPE);
    }
    let month = c.digits(2).ok_or(SHAPE)?;
    if !c.eat(b'-') {
        return Err(SHAPE);
    }
    let day = c.digits(2).ok_or(SHAPE)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    if matches!(c.peek(), Some(b'T' | b't' | b' '))
        && c.b.get(c.i + 1).is_some_and(u8::is_ascii_digit)
    {
        c.i += 1;
        hour = c.digits(2).ok_or(SHAPE)?;
        if !c.eat(b':') {
            return Err(SHAPE);
        }
        minute = c.digits(2).ok_or(SHAPE)?;
        if c.eat(b':') {
            second = c.digits(2).ok_or(SHAPE)?;
            if c.eat(b'.') || c.eat(b',') {
                let start = c.i;
                while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                    c.i += 1;
                }
                let frac = &c.b[start..c.i];
                if frac.is_empty() {
                    return Err(SHAPE);
                }
                millis = frac
                    .iter()
                    .chain(std::iter::repeat(&b'0'))
                    .take(3)
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err("no such time of day");
        }
    }
    c.skip_spaces();
    let mut offset_min = 0i64;
    match c.peek() {
        None => {}
        Some(b'Z' | b'z') => c.i += 1,
        Some(b'U') if c.b[c.i..].starts_with(b"UTC") => c.i += 3,
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let oh = c.digits(2).ok_or(SHAPE)?;
            let om = if c.eat(b':') {
                c.digits(2).ok_or(SHAPE)?
            } else {
                c.digits(2).unwrap_or(0)
            };
            if oh > 23 || om > 59 {
                return Err("no such UTC offset");
            }
            offset_min = (oh * 60 + om) * if sign == b'-' { -1 } else { 1 };
        }
        Some(_) => return Err(SHAPE),
    }
    if c.i != c.b.len() {
        return Err(SHAPE);
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

/// Epoch milliseconds as ISO-8601 UTC (`2022-12-13T00:00:00Z`, milliseconds only when non-zero).
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    // Years past 9999 (or before year 0) in ISO-8601's expanded form, a sign and six digits:
    // never a five-digit year that reads as something else.
    let year = match y {
        0..=9999 => format!("{y:04}"),
        10_000.. => format!("+{y:06}"),
        _ => format!("-{:06}", -y),
    };
    if milli == 0 {
        format!("{year}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{year}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const T: i64 = 1_670_889_600_000; // 2022-12-13T00:00:00Z

    fn ts(s: &str) -> Result<i64, String> {
        TsParser::default().parse(Cell::Str(s))
    }

    #[test]
    fn epoch_units_by_magnitude() {
        assert_eq!(ts("1670889600"), Ok(T));
        assert_eq!(ts("1670889600000"), Ok(T));
        assert_eq!(ts("1670889600000000"), Ok(T));
        assert_eq!(ts("1670889600000000000"), Ok(T));
        assert_eq!(ts("1670889600123"), Ok(T + 123));
        assert_eq!(ts("1670889600123456"), Ok(T + 123)); // µs floored to ms
        assert_eq!(ts("1670889600123999999"), Ok(T + 123)); // ns floored to ms
        assert_eq!(ts("1670889600.5"), Ok(T + 500)); // fractional seconds
        assert_eq!(ts("1.6708896e12"), Ok(T)); // scientific ms
        assert_eq!(ts(" 1670889600000 "), Ok(T));
        let mut p = TsParser::default();
        assert_eq!(p.parse(Cell::Int(1_670_889_600)), Ok(T));
        assert_eq!(p.parse(Cell::Int(1_670_889_660)), Ok(T + 60_000));
        assert_eq!(TsParser::default().parse(Cell::F64(1.6708896e12)), Ok(T));
        assert_eq!(TsParser::default().parse(Cell::Ms(5)), Ok(5));
        // thresholds
        assert_eq!(EpochUnit::detect(99_999_999_999), EpochUnit::Seconds);
        assert_eq!(EpochUnit::detect(100_000_000_000), EpochUnit::Millis);
        assert_eq!(EpochUnit::detect(99_999_999_999_999), EpochUnit::Millis);
        assert_eq!(EpochUnit::detect(100_000_000_000_000), EpochUnit::Micros);
        assert_eq!(EpochUnit::detect(100_000_000_000_000_000), EpochUnit::Nanos);
    }

    #[test]
    fn epoch_unit_is_fixed_by_the_first_value() {
        let mut p = TsParser::default();
        assert_eq!(p.parse(Cell::Str("1670889600000")), Ok(T));
        let err = p.parse(Cell::Str("1670889660")).unwrap_err();
        assert_eq!(
            err,
            "epoch `1670889660` looks like seconds but the file's first timestamp is in milliseconds"
        );
    }

    #[test]
    fn iso_8601_forms() {
        assert_eq!(ts("2022-12-13T00:00:00Z"), Ok(T));
        assert_eq!(ts("2022-12-13 00:00:00"), Ok(T));
        assert_eq!(ts("2022-12-13T00:00:00.250Z"), Ok(T + 250));
        assert_eq!(ts("2022-12-13T00:00:00.1234567Z"), Ok(T + 123));
        assert_eq!(ts("2022-12-13 00:00:00+00:00"), Ok(T));
        assert_eq!(ts("2022-12-13T01:00:00+01:00"), Ok(T));
        assert_eq!(ts("2022-12-12T19:00:00-0500"), Ok(T));
        assert_eq!(ts("2022-12-13T02:00:00+02"), Ok(T));
        assert_eq!(ts("2022-12-13 00:00:00 UTC"), Ok(T));
        assert_eq!(ts("2022-12-13T00:00"), Ok(T));
        assert_eq!(ts("2022-12-13"), Ok(T));
        assert_eq!(ts("2024-02-29T12:34:56Z"), Ok(1_709_210_096_000));
        assert_eq!(ts("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert!(
            ts("2023-02-29T00:00:00Z")
                .unwrap_err()
                .contains("no such date")
        );
        assert!(
            ts("2022-12-13T24:00:00Z")
                .unwrap_err()
                .contains("no such time")
        );
        assert!(ts("2022-12-13T00:00:00Q").is_err());
        assert!(ts("13/12/2022").is_err());
        assert!(ts("").unwrap_err().contains("empty"));
        assert!(ts("abc").unwrap_err().contains("`abc` is not a timestamp"));
    }

    #[test]
    fn format_ms_round_trips() {
        assert_eq!(format_ms(T), "2022-12-13T00:00:00Z");
        assert_eq!(format_ms(T + 1), "2022-12-13T00:00:00.001Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ms(LATEST_MS), "9999-12-31T23:59:59.999Z");
        // Past 9999: the expanded form, never a bare five-digit year.
        assert_eq!(format_ms(LATEST_MS + 1), "+010000-01-01T00:00:00Z");
        assert_eq!(
            format_ms(100_000_000_000_000_000),
            "+3170843-11-07T09:46:40Z"
        );
        assert_eq!(
            format_ms(-62_167_219_200_001),
            "-000001-12-31T23:59:59.999Z"
        );
        for ms in [
            0,
            T,
            951_782_400_000,
            4_102_444_800_000,
            1_709_210_096_789,
            LATEST_MS,
            LATEST_MS + 1,
            -62_167_219_200_001,
        ] {
            assert_eq!(parse_iso_ms(&format_ms(ms)), Ok(ms));
        }
    }

    fn market(s: &str) -> Result<i64, String> {
        TsParser::default().parse_market(Cell::Str(s))
    }

    #[test]
    fn market_times_before_2009_or_after_9999_are_refused_with_their_unit() {
        assert_eq!(market("1670889600000"), Ok(T));
        assert_eq!(market("2009-01-03T00:00:00Z"), Ok(EARLIEST_MS));
        // Milliseconds since midnight read as seconds: 1970.
        assert_eq!(
            market("60000").unwrap_err(),
            "epoch `60000` read as seconds is 1970-01-01T16:40:00Z, before 2009-01-03 (the \
             first Bitcoin block): no crypto market is that old (a time of day such as \
             milliseconds since midnight? a timestamp needs the date: epoch s/ms/µs/ns since \
             1970-01-01, or ISO-8601)"
        );
        // 9999-12-31 in seconds is read as milliseconds (1978).
        assert_eq!(
            market("253402300799").unwrap_err(),
            "epoch `253402300799` read as milliseconds is 1978-01-11T21:31:40.799Z, before \
             2009-01-03 (the first Bitcoin block): no crypto market is that old (as seconds it \
             would be 9999-12-31T23:59:59Z; convert the column to one unit)"
        );
        assert_eq!(
            market("1e23").unwrap_err(),
            "epoch `1e23` read as nanoseconds is +3170843-11-07T09:46:40Z, after 9999-12-31"
        );
        assert_eq!(
            market("2001-05-01").unwrap_err(),
            "ISO-8601 time `2001-05-01` is 2001-05-01T00:00:00Z, before 2009-01-03 (the first \
             Bitcoin block): no crypto market is that old"
        );
        let e = TsParser::default().parse_market(Cell::Ms(0)).unwrap_err();
        assert!(
            e.starts_with("datetime 1970-01-01T00:00:00Z, before 2009-01-03"),
            "{e}"
        );
        // A year-9999 time in ms is read as µs: 1978, and named so.
        let e = market("253402300799999").unwrap_err();
        assert!(e.contains("read as microseconds is 1978-"), "{e}");
        assert!(
            e.contains("as milliseconds it would be 9999-12-31T23:59:59.999Z"),
            "{e}"
        );
    }

    #[test]
    fn exact_decimals() {
        assert_eq!(parse_decimal_text("17208.88"), Ok(dec!(17208.88)));
        assert_eq!(
            parse_decimal_text("0.00141342").unwrap().to_string(),
            "0.00141342"
        );
        assert_eq!(parse_decimal_text("17205").unwrap().to_string(), "17205");
        assert_eq!(
            parse_decimal_text("17205.10").unwrap().to_string(),
            "17205.10"
        );
        assert_eq!(parse_decimal_text("1.5e-7"), Ok(dec!(0.00000015)));
        assert_eq!(parse_decimal_text("2E+3"), Ok(dec!(2000)));
        assert_eq!(parse_decimal_text("-3.25"), Ok(dec!(-3.25)));
        assert_eq!(parse_decimal_text(" 0.1 "), Ok(dec!(0.1)));
        for bad in ["NaN", "nan", "inf", "-inf", "Infinity"] {
            assert!(
                parse_decimal_text(bad)
                    .unwrap_err()
                    .contains("not a finite number")
            );
        }
        assert_eq!(parse_decimal_text(""), Err("empty value".to_owned()));
        assert!(parse_decimal_text("1_000").is_err());
        assert!(parse_decimal_text("12a").is_err());
        assert!(parse_decimal_text(".").is_err());
        assert!(parse_decimal_text("1e").is_err());
        assert!(parse_decimal_text("0.00000000000000000000000000001").is_err());
    }

    #[test]
    fn floats_go_through_their_shortest_text() {
        // 0.1 + 0.2 is 0.30000000000000004 in binary: the text keeps exactly that, no more.
        assert_eq!(f64_to_decimal(0.1), Ok(dec!(0.1)));
        assert_eq!(f64_to_decimal(17208.88), Ok(dec!(17208.88)));
        assert_eq!(f64_to_decimal(0.1 + 0.2), Ok(dec!(0.30000000000000004)));
        assert_eq!(f64_to_decimal(1e-8), Ok(dec!(0.00000001)));
        assert_eq!(cell_decimal(Cell::F32(0.1)), Ok(dec!(0.1)));
        assert!(f64_to_decimal(f64::NAN).is_err());
        assert!(f64_to_decimal(f64::INFINITY).is_err());
        assert!(f64_to_decimal(1e300).is_err());
        assert_eq!(cell_decimal(Cell::Int(7)), Ok(dec!(7)));
        assert!(cell_decimal(Cell::Null).unwrap_err().contains("null"));
    }

    #[test]
    fn header_or_number() {
        assert!(is_number("1670889600000"));
        assert!(is_number("1.5"));
        assert!(!is_number("timestamp"));
        assert!(!is_number("2022-12-13"));
        assert!(!is_number(""));
    }
}
