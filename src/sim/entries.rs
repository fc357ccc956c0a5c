//! Where positions open (DESIGN §3 "Entries"): a generator over the data's times or a CSV file.

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use crate::engine::{Side, exact_decimal};
use serde::{Deserialize, Serialize};

/// Why the entries cannot be used: each names the file and line, or the key.
#[derive(Debug, thiserror::Error)]
pub enum EntriesError {
    #[error("{}: {cause}", .path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: line {line}: expected time,side[,price][,quantity], got {got} fields", .path.display())]
    Width {
        path: PathBuf,
        line: usize,
        got: usize,
    },
    #[error("{}: line {line}, field `{field}`: {problem}", .path.display())]
    Field {
        path: PathBuf,
        line: usize,
        field: &'static str,
        problem: String,
    },
    /// A duration key (`entries.every`, `data.interval`).
    #[error("{key}: {problem}")]
    Duration { key: &'static str, problem: String },
    /// A priced entry too far outside the market where it opens to be a fill there (boxed:
    /// the error stays small).
    #[error("{0}")]
    FarFromMarket(Box<FarEntry>),
}

/// The details of [`EntriesError::FarFromMarket`].
#[derive(Debug, thiserror::Error)]
#[error(
    "{place}: entry price {price} at {time} is {off_percent} % outside {market} ({low}–{high}): \
     more than {far_percent} % away, it cannot be a fill on this market (check the file's \
     prices and the data's symbol)"
)]
pub struct FarEntry {
    /// The file and line, or `entry N`.
    pub place: String,
    pub price: Decimal,
    pub time: String,
    pub off_percent: Decimal,
    /// `the candle at …` or `the ticks at … and …`.
    pub market: String,
    pub low: Decimal,
    pub high: Decimal,
    pub far_percent: i64,
}

/// Which side the generated entries take (`entries.side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SideRule {
    #[default]
    Long,
    Short,
    Alternate,
}

/// One requested entry. Without a price it opens at the first price point at or after `time`
/// (a candle's open); with a price it opens there at `time` and continues strictly after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpec {
    pub time: i64,
    pub side: Side,
    pub price: Option<Decimal>,
    pub quantity: Option<Decimal>,
}

/// `"4h"`, `"30m"`, `"15s"`, `"1d"`, `"500ms"`, `"1w"` in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration like 4h, 30m, 15s, 1d"))?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(format!("\"{s}\": unknown unit (use ms, s, m, h, d or w)")),
    };
    if n <= 0 {
        return Err(format!("\"{s}\" must be positive"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("\"{s}\" is too long"))
}

fn side_at(rule: SideRule, k: usize) -> Side {
    match rule {
        SideRule::Long => Side::Long,
        SideRule::Short => Side::Short,
        SideRule::Alternate if k.is_multiple_of(2) => Side::Long,
        SideRule::Alternate => Side::Short,
    }
}

/// Entries every `every_ms` over the point times `ts` (candle opens or ticks): the first at
/// `ts[0]`, then at the first time at or after each further multiple counted from `ts[0]`;
/// several multiples landing on one time give one entry.
pub fn every(ts: &[i64], every_ms: i64, rule: SideRule) -> Vec<EntrySpec> {
    let mut out = Vec::new();
    let Some(&t0) = ts.first() else { return out };
    let mut k: i64 = 0;
    let mut last: Option<usize> = None;
    loop {
        let target = t0 + k * every_ms;
        let idx = ts.partition_point(|&t| t < target);
        if idx == ts.len() {
            break;
        }
        if last != Some(idx) {
            out.push(EntrySpec {
                time: ts[idx],
                side: side_at(rule, out.len()),
                price: None,
                quantity: None,
            });
            last = Some(idx);
        }
        // Every multiple up to ts[idx] lands on idx or earlier: jump past them.
        k = (ts[idx] - t0) / every_ms + 1;
    }
    out
}

/// `n` distinct times drawn uniformly from `ts` with a SplitMix64 stream seeded by `seed`,
/// in time order.
pub fn random(ts: &[i64], n: u32, seed: u64, rule: SideRule) -> Vec<EntrySpec> {
    let len = ts.len();
    let n = (n as usize).min(len);
    // Partial Fisher–Yates over indices: exact, deterministic, no bias from the modulo below
    // worth caring about for entry picking (len << 2^64).
    let mut idx: Vec<usize> = (0..len).collect();
    let mut state = seed;
    for i in 0..n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = i + (z % (len - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut chosen: Vec<usize> = idx[..n].to_vec();
    chosen.sort_unstable();
    chosen
        .into_iter()
        .enumerate()
        .map(|(k, i)| EntrySpec {
            time: ts[i],
            side: side_at(rule, k),
            price: None,
            quantity: None,
        })
        .collect()
}

/// Reads `time,side[,price][,quantity]` (a header line is optional); errors name file and line.
pub fn read_file(path: &Path) -> Result<Vec<EntrySpec>, EntriesError> {
    Ok(read_file_lines(path)?.into_iter().map(|(_, e)| e).collect())
}

/// [`read_file`] with each entry's 1-based line.
pub fn read_file_lines(path: &Path) -> Result<Vec<(usize, EntrySpec)>, EntriesError> {
    let text = std::fs::read_to_string(path).map_err(|cause| EntriesError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        let err = |field: &'static str, problem: String| EntriesError::Field {
            path: path.to_path_buf(),
            line: line_no,
            field,
            problem,
        };
        if out.is_empty()
            && fields
                .get(1)
                .is_some_and(|f| f.eq_ignore_ascii_case("side"))
        {
            continue; // header
        }
        if fields.len() < 2 || fields.len() > 4 {
            return Err(EntriesError::Width {
                path: path.to_path_buf(),
                line: line_no,
                got: fields.len(),
            });
        }
        let time = crate::data::parse_time(fields[0]).map_err(|m| err("time", m))?;
        let side: Side = fields[1].parse().map_err(|m| err("side", m))?;
        let dec = |name: &'static str, s: &str| -> Result<Option<Decimal>, EntriesError> {
            if s.is_empty() {
                return Ok(None);
            }
            let d = exact_decimal::parse(s).map_err(|m| err(name, m))?;
            if d <= Decimal::ZERO {
                return Err(err(name, format!("{d} must be positive")));
            }
            Ok(Some(d))
        };
        let price = match fields.get(2) {
            Some(s) => dec("price", s)?,
            None => None,
        };
        let quantity = match fields.get(3) {
            Some(s) => dec("quantity", s)?,
            None => None,
        };
        out.push((
            line_no,
            EntrySpec {
                time,
                side,
                price,
                quantity,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("4h"), Ok(14_400_000));
        assert_eq!(parse_duration_ms("30m"), Ok(1_800_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert!(parse_duration_ms("4x").is_err());
        assert!(parse_duration_ms("0h").is_err());
        assert!(parse_duration_ms("h").is_err());
    }

    #[test]
    fn every_lands_on_first_time_at_or_after_each_multiple() {
        // Hourly data with a 3 h hole after t=2h.
        let h = 3_600_000;
        let ts = [0, h, 2 * h, 5 * h, 6 * h, 7 * h];
        let e = every(&ts, 2 * h, SideRule::Alternate);
        let times: Vec<i64> = e.iter().map(|e| e.time / h).collect();
        // Multiples 0,2,4,6: 4h lands on 5h; 6h on 6h.
        assert_eq!(times, [0, 2, 5, 6]);
        let sides: Vec<Side> = e.iter().map(|e| e.side).collect();
        assert_eq!(sides, [Side::Long, Side::Short, Side::Long, Side::Short]);
        // A hole spanning several multiples gives one entry.
        let ts = [0, 10 * h, 11 * h];
        let times: Vec<i64> = every(&ts, h, SideRule::Long)
            .iter()
            .map(|e| e.time / h)
            .collect();
        assert_eq!(times, [0, 10, 11]);
    }

    #[test]
    fn random_is_seeded_sorted_and_distinct() {
        let ts: Vec<i64> = (0..1000).collect();
        let a = random(&ts, 20, 7, SideRule::Long);
        assert_eq!(a, random(&ts, 20, 7, SideRule::Long));
        assert_ne!(a, random(&ts, 20, 8, SideRule::Long));
        assert_eq!(a.len(), 20);
        assert!(a.windows(2).all(|w| w[0].time < w[1].time));
        assert_eq!(random(&ts[..5], 20, 1, SideRule::Long).len(), 5);
    }
}
