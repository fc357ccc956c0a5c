//! Scenario files (DESIGN §5): strict TOML, `--set key=value` overrides, validation.

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::{TrailingConfig, exact_decimal};
use crate::sim::path::Policy;
// The simulator's vocabulary, as the scenario's keys name it (the scenario depends on the
// simulator, never the other way round).
pub use crate::sim::entries::SideRule;
pub use crate::sim::venue::VenueKind as Venue;

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("--set {0}: expected key=value (e.g. trailing.distance_percent=0.8)")]
    BadOverride(String),
}

/// Which candles the finer `detail` data replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailBars {
    /// Only bars whose outcome depends on the intrabar order.
    Ambiguous,
    /// Every bar the detail data covers.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candles: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Which bars `detail` replays: `ambiguous` ones, or `all` bars it covers. Default: `all`
    /// for trade ticks (they are the real path), `ambiguous` for finer candles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_bars: Option<DetailBars>,
    #[serde(default)]
    pub symbol: String,
    #[serde(with = "exact_decimal")]
    pub tick_size: Decimal,
    /// The candle interval (`"1m"`, `"1s"`, …); inferred from the timestamps when absent
    /// (DESIGN §4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The first time replayed (inclusive): an ISO date or date-time, UTC unless an offset is
    /// given (`"2022-12-13"`, `"2022-12-13T06:00:00Z"`); a TOML date works too.
    #[serde(
        default,
        deserialize_with = "time_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<String>,
    /// The end of the time replayed (exclusive: `end = "2022-12-14"` keeps all of 2022-12-13).
    #[serde(
        default,
        deserialize_with = "time_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<String>,
}

/// A time key's value as text: a string, or a TOML date / date-time written bare
/// (`start = 2022-12-13`); anything else is kept as its text for `validate` to refuse by name.
fn time_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(match toml::Value::deserialize(d)? {
        toml::Value::String(s) => s,
        v => v.to_string(),
    }))
}

/// An ISO date or date-time as epoch milliseconds (UTC unless an offset is given); an epoch
/// number is refused (a bare number could be read in several units).
pub fn parse_time_key(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let example = "e.g. \"2022-12-13\" or \"2022-12-13T06:00:00Z\"";
    if t.parse::<f64>().is_ok() {
        return Err(format!(
            "`{t}` is a number; write an ISO date or date-time (UTC), {example}"
        ));
    }
    crate::data::parse_iso_time(t)
        .map_err(|why| format!("`{t}` is not an ISO date or date-time ({why}); {example}"))
}

impl DataSection {
    /// `[start, end)` in epoch milliseconds (`None`: open on that side), as validated.
    pub fn time_range(&self) -> (Option<i64>, Option<i64>) {
        let at = |t: &Option<String>| t.as_deref().and_then(|t| parse_time_key(t).ok());
        (at(&self.start), at(&self.end))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EntriesSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub side: SideRule,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeSection {
    pub venue: Venue,
    /// A fraction of the notional per side (`0.0004` = 0.04 %).
    #[serde(with = "exact_decimal")]
    pub taker_fee: Decimal,
    /// The taker fee in basis points (`4` = 0.04 %), instead of `taker_fee`.
    #[serde(
        default,
        with = "exact_decimal::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub taker_fee_bps: Option<Decimal>,
    /// Confirms a `taker_fee` of 1 % or more, which otherwise reads as a percent written where
    /// a fraction belongs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub taker_fee_confirmed: bool,
    #[serde(with = "exact_decimal")]
    pub slippage_bps: Decimal,
    pub update_latency_ms: u64,
}

impl Default for ExchangeSection {
    fn default() -> Self {
        ExchangeSection {
            venue: Venue::Bybit,
            taker_fee: Decimal::ZERO,
            taker_fee_bps: None,
            taker_fee_confirmed: false,
            slippage_bps: Decimal::ZERO,
            update_latency_ms: 0,
        }
    }
}

impl ExchangeSection {
    /// The taker fee as a fraction of the notional: `taker_fee`, or `taker_fee_bps / 10000`.
    pub fn fee(&self) -> Decimal {
        match self.taker_fee_bps {
            Some(bps) => bps / Decimal::from(10_000),
            None => self.taker_fee,
        }
    }
}

/// The units of the keys that take a fee, a cost or a distance (for messages about them).
pub const UNITS: &str = "units: exchange.taker_fee is a fraction of the notional (0.0004 = \
     0.04 %), exchange.taker_fee_bps and exchange.slippage_bps are basis points (4 = 0.04 %), \
     trailing.*_percent keys are percent (0.5 = 0.5 %)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IntrabarSection {
    pub policy: Policy,
}

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub data: DataSection,
    #[serde(default)]
    pub entries: EntriesSection,
    #[serde(default)]
    pub exchange: ExchangeSection,
    pub trailing: TrailingConfig,
    #[serde(default)]
    pub intrabar: IntrabarSection,
    /// The sweep grid; read by `trailstop sweep`, kept as written here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<toml::Table>,
    /// The folder of the scenario file: relative paths resolve against it first.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub source: PathBuf,
}

/// The top-level sections of a scenario; a key given without one (`distance_percent`,
/// `rate_limit.min_interval_seconds`) means `trailing.<key>`, in `--set` as in `--grid`.
pub const SECTIONS: [&str; 7] = [
    "name", "data", "entries", "exchange", "trailing", "intrabar", "sweep",
];

/// `distance_percent` → `["trailing", "distance_percent"]`; a key that starts with a section
/// stays as it is.
pub fn key_path(key: &str) -> Vec<String> {
    let mut path: Vec<String> = key.split('.').map(|k| k.trim().to_string()).collect();
    if !SECTIONS.contains(&path[0].as_str()) {
        path.insert(0, "trailing".to_string());
    }
    path
}

/// Parses a scenario's `key=value` into a path and a TOML value (a bare word that is not TOML
/// is a string). The key may leave out `trailing.` ([`key_path`]).
pub fn parse_override(s: &str) -> Result<(Vec<String>, toml::Value), ScenarioError> {
    let (key, value) = parse_override_as_written(s)?;
    Ok((key_path(&key.join(".")), value))
}

/// [`parse_override`] for any TOML file: the key exactly as written.
pub fn parse_override_as_written(s: &str) -> Result<(Vec<String>, toml::Value), ScenarioError> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| ScenarioError::BadOverride(s.to_string()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|k| k.trim().is_empty()) {
        return Err(ScenarioError::BadOverride(s.to_string()));
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((
        key.split('.').map(|k| k.trim().to_string()).collect(),
        parsed,
    ))
}

/// Sets `path` in `table` to `value`, creating tables on the way.
pub fn set_key(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = table;
    for (i, k) in parents.iter().enumerate() {
        let entry = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a table", path[..=i].join(".")))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// The key a TOML value error is about: toml keeps it private and writes it as the last line
/// of the error's text (`… \nin `exchange.update_latency_ms``).
fn value_error_key(e: &toml::de::Error) -> Option<String> {
    let text = e.to_string();
    let (_, key) = text.trim_end().rsplit_once("\nin `")?;
    Some(key.strip_suffix('`')?.to_string())
}

fn read_text(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The scenario file at `path` as a TOML table with the `key=value` overrides applied.
pub fn read_table(path: &Path, overrides: &[String]) -> Result<toml::Table, ScenarioError> {
    table_from_text(&read_text(path)?, path, overrides)
}

/// A scenario's text as a TOML table with the overrides applied: with [`Scenario::from_table`]
/// the one place a file plus `--set` becomes a scenario.
pub fn table_from_text(
    text: &str,
    path: &Path,
    overrides: &[String],
) -> Result<toml::Table, ScenarioError> {
    overridden(text, path, overrides, parse_override)
}

/// Any TOML config's text (`live.toml`) as a table with `key=value` overrides applied, each key
/// exactly as written.
pub fn toml_table_from_text(
    text: &str,
    path: &Path,
    overrides: &[String],
) -> Result<toml::Table, ScenarioError> {
    overridden(text, path, overrides, parse_override_as_written)
}

type ParseOverride = fn(&str) -> Result<(Vec<String>, toml::Value), ScenarioError>;

fn overridden(
    text: &str,
    path: &Path,
    overrides: &[String],
    parse: ParseOverride,
) -> Result<toml::Table, ScenarioError> {
    let parse_err = |message: String| ScenarioError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    for o in overrides {
        let (key, value) = parse(o)?;
        set_key(&mut table, &key, value).map_err(|m| parse_err(format!("--set {o}: {m}")))?;
    }
    Ok(table)
}

impl Scenario {
    /// Reads, overrides (`key=value` strings) and validates a scenario file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
        Self::from_text(&read_text(path)?, path, overrides)
    }

    pub fn from_text(
        text: &str,
        path: &Path,
        overrides: &[String],
    ) -> Result<Scenario, ScenarioError> {
        if overrides.is_empty() {
            // Straight from the text: the parser's errors then point at the line.
            let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            return scenario.placed(path);
        }
        Self::typed(table_from_text(text, path, overrides)?, path, overrides)?.placed(path)
    }

    /// A scenario from its TOML table (a file with overrides, a sweep cell), read as the file
    /// at `path` (relative paths resolve against its folder), validated.
    pub fn from_table(table: toml::Table, path: &Path) -> Result<Scenario, ScenarioError> {
        Self::typed(table, path, &[])?.placed(path)
    }

    /// The table as a scenario, unvalidated; a value of the wrong type names its key and the
    /// `--set` among `overrides` that gave it.
    fn typed(
        table: toml::Table,
        path: &Path,
        overrides: &[String],
    ) -> Result<Scenario, ScenarioError> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| match value_error_key(&e) {
                Some(key) => {
                    let from = overrides
                        .iter()
                        .rev()
                        .find(|o| parse_override(o).is_ok_and(|(k, _)| k.join(".") == key));
                    let problem = match from {
                        Some(o) => format!("{} (from --set {o})", e.message()),
                        None => e.message().to_string(),
                    };
                    ScenarioError::Invalid {
                        path: path.to_path_buf(),
                        key,
                        problem,
                    }
                }
                None => ScenarioError::Parse {
                    path: path.to_path_buf(),
                    message: format!("after --set: {}", e.message()),
                },
            })
    }

    fn placed(mut self, path: &Path) -> Result<Scenario, ScenarioError> {
        self.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.source = path.to_path_buf();
        self.validate()?;
        Ok(self)
    }

    fn invalid(&self, key: &str, problem: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.source.clone(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty()
            || self
                .name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
            || self.name.starts_with('.')
        {
            return Err(self.invalid(
                "name",
                format!(
                    "\"{}\" must be a non-empty file name (no slashes)",
                    self.name
                ),
            ));
        }
        match (&self.data.candles, &self.data.trades) {
            (None, None) => {
                return Err(self.invalid("data.candles", "give data.candles or data.trades"));
            }
            (Some(_), Some(_)) => {
                return Err(
                    self.invalid("data.trades", "give data.candles or data.trades, not both")
                );
            }
            _ => {}
        }
        if self.data.trades.is_some() && self.data.detail.is_some() {
            return Err(self.invalid(
                "data.detail",
                "detail only refines candles; trades are already ticks",
            ));
        }
        if self.data.detail_bars.is_some() && self.data.detail.is_none() {
            return Err(self.invalid("data.detail_bars", "only used with data.detail"));
        }
        if let Some(i) = &self.data.interval {
            if self.data.candles.is_none() {
                return Err(self.invalid("data.interval", "only used with data.candles"));
            }
            crate::sim::entries::parse_duration_ms(i)
                .map_err(|m| self.invalid("data.interval", m))?;
        }
        for (key, text) in [
            ("data.start", &self.data.start),
            ("data.end", &self.data.end),
        ] {
            if let Some(t) = text {
                parse_time_key(t).map_err(|m| self.invalid(key, m))?;
            }
        }
        if let (Some(a), Some(z)) = self.data.time_range()
            && a >= z
        {
            return Err(self.invalid(
                "data.end",
                format!(
                    "{} is not after data.start {} (the range is [start, end): start \
                         included, end excluded)",
                    crate::data::format_ms(z),
                    crate::data::format_ms(a)
                ),
            ));
        }
        if self.data.tick_size <= Decimal::ZERO {
            return Err(self.invalid(
                "data.tick_size",
                format!("{} must be > 0", self.data.tick_size),
            ));
        }
        let tick_decimals = self.data.tick_size.normalize().scale();
        if tick_decimals > crate::engine::fixed::MAX_PRICE_DECIMALS {
            return Err(self.invalid(
                "data.tick_size",
                format!(
                    "{} has {tick_decimals} decimals; at most {} are supported",
                    self.data.tick_size,
                    crate::engine::fixed::MAX_PRICE_DECIMALS
                ),
            ));
        }
        let e = &self.entries;
        let given = [e.every.is_some(), e.file.is_some(), e.random.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given != 1 {
            return Err(self.invalid(
                "entries",
                "give exactly one of entries.every, entries.file or entries.random",
            ));
        }
        if e.seed.is_some() && e.random.is_none() {
            return Err(self.invalid("entries.seed", "only used with entries.random"));
        }
        if let Some(every) = &e.every {
            crate::sim::entries::parse_duration_ms(every)
                .map_err(|m| self.invalid("entries.every", m))?;
        }
        if e.random == Some(0) {
            return Err(self.invalid("entries.random", "must be at least 1"));
        }
        let x = &self.exchange;
        if x.taker_fee < Decimal::ZERO || x.taker_fee >= Decimal::ONE {
            return Err(self.invalid(
                "exchange.taker_fee",
                format!("{} is outside [0, 1); {UNITS}", x.taker_fee),
            ));
        }
        if let Some(bps) = x.taker_fee_bps {
            if x.taker_fee != Decimal::ZERO {
                return Err(self.invalid(
                    "exchange.taker_fee_bps",
                    format!("give exchange.taker_fee or exchange.taker_fee_bps, not both; {UNITS}"),
                ));
            }
            if bps < Decimal::ZERO || bps >= Decimal::from(10_000) {
                return Err(self.invalid(
                    "exchange.taker_fee_bps",
                    format!("{bps} is outside [0, 10000); {UNITS}"),
                ));
            }
        }
        // A fee of 1 % or more is nearly always a percent written as a fraction (0.04 meant
        // as 0.04 % runs as 4 % a side); the bps key or an explicit confirmation says otherwise.
        let one_percent = Decimal::new(1, 2);
        if x.taker_fee >= one_percent && !x.taker_fee_confirmed {
            let f = x.taker_fee.normalize();
            return Err(self.invalid(
                "exchange.taker_fee",
                format!(
                    "{f} is {} % of the notional per side, far above any exchange's taker fee; \
                     if you meant {f} %, write taker_fee = {} or taker_fee_bps = {}; to charge \
                     {} % a side, add exchange.taker_fee_confirmed = true ({UNITS})",
                    (f * Decimal::ONE_HUNDRED).normalize(),
                    (f / Decimal::ONE_HUNDRED).normalize(),
                    (f * Decimal::ONE_HUNDRED).normalize(),
                    (f * Decimal::ONE_HUNDRED).normalize(),
                ),
            ));
        }
        if x.taker_fee_confirmed && x.fee() < one_percent {
            return Err(self.invalid(
                "exchange.taker_fee_confirmed",
                "only confirms a taker_fee of 1 % (0.01) or more",
            ));
        }
        if x.slippage_bps < Decimal::ZERO || x.slippage_bps >= Decimal::from(10_000) {
            return Err(self.invalid(
                "exchange.slippage_bps",
                format!("{} is outside [0, 10000)", x.slippage_bps),
            ));
        }
        if x.update_latency_ms > 86_400_000 {
            return Err(self.invalid("exchange.update_latency_ms", "longer than a day"));
        }
        self.trailing
            .validate()
            .map_err(|e| self.invalid(&e.key, e.problem))?;
        let r = &self.trailing.rate_limit;
        if r.emergency_percent < r.min_improvement_percent {
            // The emergency send takes every improvement from its threshold up: the minimum
            // improvement and the interval would never hold anything back.
            return Err(self.invalid(
                "trailing.rate_limit.emergency_percent",
                format!(
                    "{} % is below min_improvement_percent {} %: every improvement of {} % or \
                     more would go out at once as an emergency, so neither the minimum \
                     improvement nor min_interval_seconds ({} s) could hold one back; set \
                     emergency_percent at or above min_improvement_percent (both in percent: \
                     0.5 = 0.5 %)",
                    r.emergency_percent.normalize(),
                    r.min_improvement_percent.normalize(),
                    r.emergency_percent.normalize(),
                    r.min_interval_seconds,
                ),
            ));
        }
        Ok(())
    }

    /// Resolves a path from the scenario: against the scenario's folder first, then the working
    /// directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let rel = Path::new(p);
        if rel.is_absolute() {
            return rel.to_path_buf();
        }
        let beside = tidy(&self.base_dir.join(rel));
        if beside.exists() {
            beside
        } else {
            rel.to_path_buf()
        }
    }

    /// [`Scenario::resolve`] for a file that must exist; the error names the key and where it
    /// looked.
    pub fn resolve_file(&self, key: &str, p: &str) -> Result<PathBuf, ScenarioError> {
        let path = self.resolve(p);
        if path.is_file() {
            return Ok(path);
        }
        let beside = tidy(&self.base_dir.join(p));
        Err(self.invalid(
            key,
            format!(
                "file \"{p}\" not found (looked for {} and for {} in the working directory)",
                beside.display(),
                Path::new(p).display()
            ),
        ))
    }
}

/// Removes `.` and `name/..` pairs without touching the file system (`scenarios/../data/x`
/// becomes `data/x`).
pub(crate) fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const MINIMAL: &str = r#"
name = "t"
[data]
candles = "x.csv"
tick_size = 0.1
[entries]
every = "4h"
[trailing]
distance_percent = 0.8
"#;

    #[test]
    fn minimal_scenario_has_documented_defaults() {
        let s = Scenario::from_text(MINIMAL, Path::new("s/t.toml"), &[]).unwrap();
        assert_eq!(s.trailing.distance_percent, dec!(0.8));
        assert_eq!(s.data.tick_size, dec!(0.1));
        assert_eq!(s.exchange.venue, Venue::Bybit);
        assert_eq!(s.exchange.taker_fee, dec!(0));
        assert_eq!(s.exchange.update_latency_ms, 0);
        assert_eq!(s.intrabar.policy, Policy::Pessimistic);
        assert_eq!(s.entries.side, SideRule::Long);
        assert_eq!(s.trailing.rate_limit.min_interval_seconds, 60);
        assert_eq!(s.base_dir, Path::new("s"));
    }

    #[test]
    fn overrides_set_any_key() {
        let s = Scenario::from_text(
            MINIMAL,
            Path::new("t.toml"),
            &[
                "trailing.distance_percent=0.5".into(),
                "intrabar.policy=optimistic".into(),
                "exchange.venue=binance".into(),
                "trailing.breakeven.trigger_percent=0.3".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.trailing.distance_percent, dec!(0.5));
        assert_eq!(s.intrabar.policy, Policy::Optimistic);
        assert_eq!(s.exchange.venue, Venue::Binance);
        assert_eq!(s.trailing.breakeven.unwrap().trigger_percent, dec!(0.3));
    }

    #[test]
    fn overrides_may_leave_out_trailing_as_the_grid_does() {
        let s = Scenario::from_text(
            MINIMAL,
            Path::new("t.toml"),
            &[
                "distance_percent=0.8".into(),
                "rate_limit.min_interval_seconds=5".into(),
                "breakeven.trigger_percent=0.3".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.trailing.distance_percent, dec!(0.8));
        assert_eq!(s.trailing.rate_limit.min_interval_seconds, 5);
        assert_eq!(s.trailing.breakeven.unwrap().trigger_percent, dec!(0.3));
        // An unknown key is still an error that names it (as a trailing key).
        let e = Scenario::from_text(MINIMAL, Path::new("t.toml"), &["distanse_percent=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("distanse_percent"), "{e}");
        assert_eq!(key_path("data.symbol"), ["data", "symbol"]);
        assert_eq!(
            key_path("momentum.window_seconds"),
            ["trailing", "momentum", "window_seconds"]
        );
    }

    #[test]
    fn fees_that_look_like_percent_are_refused_unless_confirmed() {
        let load = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Scenario::from_text(MINIMAL, Path::new("t.toml"), &sets)
        };
        let e = load(&["exchange.taker_fee=0.04"]).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.toml: exchange.taker_fee: 0.04 is 4 % of the notional per side, far above any \
             exchange's taker fee; if you meant 0.04 %, write taker_fee = 0.0004 or \
             taker_fee_bps = 4; to charge 4 % a side, add exchange.taker_fee_confirmed = true \
             (units: exchange.taker_fee is a fraction of the notional (0.0004 = 0.04 %), \
             exchange.taker_fee_bps and exchange.slippage_bps are basis points (4 = 0.04 %), \
             trailing.*_percent keys are percent (0.5 = 0.5 %))"
        );
        // Just below 1 % passes; 1 % itself needs the confirmation.
        assert_eq!(
            load(&["exchange.taker_fee=0.0099"]).unwrap().exchange.fee(),
            dec!(0.0099)
        );
        assert!(load(&["exchange.taker_fee=0.01"]).is_err());
        let s = load(&[
            "exchange.taker_fee=0.04",
            "exchange.taker_fee_confirmed=true",
        ])
        .unwrap();
        assert_eq!(s.exchange.fee(), dec!(0.04));
        // Basis points say their unit: 400 bps is 4 %, no confirmation needed.
        let s = load(&["exchange.taker_fee_bps=4"]).unwrap();
        assert_eq!(s.exchange.fee(), dec!(0.0004));
        assert_eq!(
            load(&["exchange.taker_fee_bps=400"])
                .unwrap()
                .exchange
                .fee(),
            dec!(0.04)
        );
        let e = load(&["exchange.taker_fee=0.0004", "exchange.taker_fee_bps=4"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exchange.taker_fee_bps: give exchange.taker_fee or"),
            "{e}"
        );
        let e = load(&["exchange.taker_fee_confirmed=true"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exchange.taker_fee_confirmed: only confirms"),
            "{e}"
        );
        let e = load(&["exchange.taker_fee=1.5"]).unwrap_err().to_string();
        assert!(
            e.contains("1.5 is outside [0, 1); units: exchange.taker_fee is a fraction"),
            "{e}"
        );
        // Unchanged scenarios serialise as before (no new keys).
        let text = toml::to_string(&load(&[]).unwrap().exchange).unwrap();
        assert!(
            !text.contains("taker_fee_bps") && !text.contains("confirmed"),
            "{text}"
        );
    }

    #[test]
    fn contradicting_rate_limits_are_refused() {
        let e = Scenario::from_text(
            MINIMAL,
            Path::new("t.toml"),
            &["trailing.rate_limit.emergency_percent=0.05".into()],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.toml: trailing.rate_limit.emergency_percent: 0.05 % is below \
             min_improvement_percent 0.1 %: every improvement of 0.05 % or more would go out at \
             once as an emergency, so neither the minimum improvement nor min_interval_seconds \
             (60 s) could hold one back; set emergency_percent at or above \
             min_improvement_percent (both in percent: 0.5 = 0.5 %)"
        );
        // Equal thresholds are allowed.
        Scenario::from_text(
            MINIMAL,
            Path::new("t.toml"),
            &["trailing.rate_limit.emergency_percent=0.1".into()],
        )
        .unwrap();
    }

    #[test]
    fn unknown_and_invalid_keys_are_named() {
        let e = Scenario::from_text(
            &format!("{MINIMAL}\ndistanse = 1"),
            Path::new("t.toml"),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("distanse"), "{e}");
        let e = Scenario::from_text(
            MINIMAL,
            Path::new("t.toml"),
            &["trailing.distance_percent=0".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("trailing.distance_percent"), "{e}");
        let e = Scenario::from_text(
            MINIMAL,
            Path::new("t.toml"),
            &["exchange.venue=kraken".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("kraken"), "{e}");
        let e = Scenario::from_text(MINIMAL, Path::new("t.toml"), &["entries.every=4x".into()])
            .unwrap_err();
        assert!(e.to_string().contains("entries.every"), "{e}");
        assert!(matches!(
            Scenario::from_text(MINIMAL, Path::new("t.toml"), &["novalue".into()]),
            Err(ScenarioError::BadOverride(_))
        ));
    }
}
