//! The sweep grid: axes over scenario keys, their exact values, and the order of combinations.
//!
//! A combination is numbered by its position in the grid read as a mixed-radix number: axes
//! sorted by key, each axis's values ascending, the last axis changing fastest. That number
//! (`combo`) orders the output rows, slices shards and finds neighbours, so the same grid always
//! gives the same numbering, whoever runs which part of it.

use std::cmp::Ordering;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::exact_decimal;

/// At most this many values per axis and combinations per grid (a typo in a step should fail
/// fast, not allocate for an hour).
pub const MAX_AXIS_VALUES: usize = 100_000;
pub const MAX_COMBINATIONS: u64 = 1 << 40;

/// One grid value: an exact decimal, or a word (`binance`, `short`, `optimistic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Num(#[serde(with = "exact_decimal")] Decimal),
    Text(String),
}

impl Value {
    /// The value as the scenario TOML should hold it: integers as integers (so integer keys such
    /// as `update_latency_ms` accept them), other decimals as strings (exact), words as strings.
    pub fn to_toml(&self) -> toml::Value {
        match self {
            Value::Num(d) => {
                let n = d.normalize();
                if n.scale() == 0
                    && let Ok(i) = n.to_string().parse::<i64>()
                {
                    return toml::Value::Integer(i);
                }
                toml::Value::String(n.to_string())
            }
            Value::Text(s) => toml::Value::String(s.clone()),
        }
    }

    /// The value as a number for tables and plots (never used for a decision).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(d) => d.normalize().to_string().parse().ok(),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(d) => write!(f, "{}", d.normalize()),
            Value::Text(s) => f.write_str(s),
        }
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Num(x), Value::Num(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Num(_), Value::Text(_)) => Ordering::Less,
        (Value::Text(_), Value::Num(_)) => Ordering::Greater,
    }
}

/// One swept key and its values, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    /// The full dotted key, e.g. `trailing.activation_percent`.
    pub key: String,
    pub values: Vec<Value>,
}

impl Axis {
    pub fn is_numeric(&self) -> bool {
        self.values.iter().all(|v| matches!(v, Value::Num(_)))
    }

    pub fn path(&self) -> Vec<String> {
        self.key.split('.').map(str::to_string).collect()
    }

    /// The short name: the key without a leading `trailing.`.
    pub fn short(&self) -> &str {
        self.key.strip_prefix("trailing.").unwrap_or(&self.key)
    }
}

/// `activation_percent` → `trailing.activation_percent`; keys that start with a section stay.
pub fn canonical_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|k| k.trim().is_empty()) {
        return Err(format!("\"{key}\" is not a key"));
    }
    let first = key.split('.').next().unwrap_or_default();
    if first == "sweep" {
        return Err(format!("{key}: the [sweep] table itself cannot be swept"));
    }
    Ok(crate::scenario::key_path(key).join("."))
}

/// Parses one decimal written as text or as a TOML number (a bare number means exactly the
/// decimal written, as everywhere in a scenario).
fn decimal_of(v: &toml::Value) -> Result<Decimal, String> {
    match v {
        toml::Value::String(s) => exact_decimal::parse(s),
        toml::Value::Integer(i) => Ok(Decimal::from(*i)),
        toml::Value::Float(f) if f.is_finite() => exact_decimal::parse(&format!("{f}")),
        other => Err(format!("{other} is not a decimal number")),
    }
}

/// `from..=to` by `step`, exact.
pub fn range(from: Decimal, to: Decimal, step: Decimal) -> Result<Vec<Value>, String> {
    if step <= Decimal::ZERO {
        return Err(format!("step {step} must be > 0"));
    }
    if to < from {
        return Err(format!("to {to} is below from {from}"));
    }
    let count = ((to - from) / step).floor();
    if count >= Decimal::from(MAX_AXIS_VALUES) {
        return Err(format!(
            "{from} to {to} by {step} gives more than {MAX_AXIS_VALUES} values"
        ));
    }
    let n: u64 = count.to_string().parse().map_err(|_| "range too long")?;
    Ok((0..=n)
        .map(|i| Value::Num((from + step * Decimal::from(i)).normalize()))
        .collect())
}

/// Sorts and checks a list of values: all numbers or all words, no repeats.
fn finish_list(values: Vec<Value>) -> Result<Vec<Value>, String> {
    if values.is_empty() {
        return Err("no values".into());
    }
    let numeric = matches!(values[0], Value::Num(_));
    if values.iter().any(|v| matches!(v, Value::Num(_)) != numeric) {
        return Err("mixes numbers and words".into());
    }
    let mut values = values;
    values.sort_by(cmp_values);
    if let Some(w) = values.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("{} appears twice", w[0]));
    }
    if values.len() > MAX_AXIS_VALUES {
        return Err(format!("more than {MAX_AXIS_VALUES} values"));
    }
    Ok(values)
}

/// A word is a number when it parses as a decimal.
fn word_value(s: &str) -> Value {
    let t = s.trim();
    match exact_decimal::parse(t) {
        Ok(d) => Value::Num(d.normalize()),
        Err(_) => Value::Text(t.to_string()),
    }
}

/// `--grid key=from:to:step` or `--grid key=a,b,c`.
pub fn parse_cli(spec: &str) -> Result<Axis, String> {
    let (key, rhs) = spec
        .split_once('=')
        .ok_or_else(|| format!("--grid {spec}: expected key=from:to:step or key=a,b,c"))?;
    let key = canonical_key(key).map_err(|e| format!("--grid {spec}: {e}"))?;
    let rhs = rhs.trim();
    let values = if rhs.contains(':') {
        let parts: Vec<&str> = rhs.split(':').collect();
        let [from, to, step] = parts[..] else {
            return Err(format!("--grid {spec}: expected from:to:step"));
        };
        let p = |s: &str| exact_decimal::parse(s).map_err(|e| format!("--grid {spec}: {e}"));
        range(p(from)?, p(to)?, p(step)?).map_err(|e| format!("--grid {spec}: {e}"))?
    } else {
        let values = rhs.split(',').map(word_value).collect();
        finish_list(values).map_err(|e| format!("--grid {spec}: {e}"))?
    };
    Ok(Axis { key, values })
}

/// A `[sweep]` entry: `{ from, to, step }` or a list.
pub fn parse_toml(key: &str, value: &toml::Value) -> Result<Axis, String> {
    let name = format!("sweep.{key}");
    let canon = canonical_key(key).map_err(|e| format!("{name}: {e}"))?;
    let values = match value {
        toml::Value::Table(t) => {
            if let Some(k) = t
                .keys()
                .find(|k| !["from", "to", "step"].contains(&k.as_str()))
            {
                return Err(format!("{name}: unknown field `{k}` (use from, to, step)"));
            }
            let get = |f: &str| {
                t.get(f)
                    .ok_or_else(|| format!("{name}: missing `{f}`"))
                    .and_then(|v| decimal_of(v).map_err(|e| format!("{name}.{f}: {e}")))
            };
            range(get("from")?, get("to")?, get("step")?).map_err(|e| format!("{name}: {e}"))?
        }
        toml::Value::Array(a) => {
            let values = a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(word_value(s)),
                    other => decimal_of(other).map(|d| Value::Num(d.normalize())),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{name}: {e}"))?;
            finish_list(values).map_err(|e| format!("{name}: {e}"))?
        }
        other => {
            return Err(format!(
                "{name}: expected {{ from, to, step }} or a list, found {}",
                other.type_str()
            ));
        }
    };
    Ok(Axis { key: canon, values })
}

/// Axes sorted by key; combination `i` is read as a mixed-radix number, last axis fastest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub axes: Vec<Axis>,
}

impl Grid {
    /// Sorts the axes by key; a key given twice is an error.
    pub fn new(mut axes: Vec<Axis>) -> Result<Grid, String> {
        axes.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(w) = axes.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(format!("{} is swept twice", w[0].key));
        }
        let g = Grid { axes };
        g.size()?;
        Ok(g)
    }

    pub fn size(&self) -> Result<u64, String> {
        let mut n: u64 = 1;
        for a in &self.axes {
            n = n
                .checked_mul(a.values.len() as u64)
                .filter(|n| *n <= MAX_COMBINATIONS)
                .ok_or_else(|| format!("the grid has more than {MAX_COMBINATIONS} combinations"))?;
        }
        Ok(n)
    }

    /// Each axis's value index for combination `combo`.
    pub fn indices(&self, mut combo: u64) -> Vec<usize> {
        let mut out = vec![0; self.axes.len()];
        for (i, a) in self.axes.iter().enumerate().rev() {
            let n = a.values.len() as u64;
            out[i] = (combo % n) as usize;
            combo /= n;
        }
        out
    }

    /// The combination number of per-axis value indices.
    pub fn combo_of(&self, idx: &[usize]) -> u64 {
        self.axes
            .iter()
            .zip(idx)
            .fold(0u64, |acc, (a, &i)| acc * a.values.len() as u64 + i as u64)
    }

    pub fn values(&self, combo: u64) -> Vec<&Value> {
        self.indices(combo)
            .into_iter()
            .zip(&self.axes)
            .map(|(i, a)| &a.values[i])
            .collect()
    }

    /// `key=value` pairs of a combination, for messages and the command line.
    pub fn describe(&self, combo: u64) -> String {
        self.axes
            .iter()
            .zip(self.values(combo))
            .map(|(a, v)| format!("{}={v}", a.key))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn axis(&self, key: &str) -> Option<usize> {
        self.axes.iter().position(|a| a.key == key)
    }
}

/// SplitMix64: a tiny seeded generator, enough to draw sample combinations reproducibly.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (rejection sampling, no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// `n` distinct combinations of `0..size` drawn with `seed` (Floyd's algorithm), ascending;
/// all of them when `n >= size`.
pub fn sample(size: u64, n: u64, seed: u64) -> Vec<u64> {
    if n >= size {
        return (0..size).collect();
    }
    let mut rng = SplitMix(seed);
    let mut chosen = std::collections::BTreeSet::new();
    for j in size - n..size {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// A deterministic slice of the combinations: shard `k` of `n` takes every `n`-th from the
/// `k`-th on (0-based), so neighbouring, similarly expensive cells spread over the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard, String> {
        let err = || format!("--shard {s}: expected K/N with 0 <= K < N (0-based), e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let index: u32 = k.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    pub fn take(&self, combos: &[u64]) -> Vec<u64> {
        combos
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as u64) % self.count as u64 == self.index as u64)
            .map(|(_, c)| *c)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn ranges_are_exact_and_inclusive() {
        let a = parse_cli("activation_percent=0:0.3:0.1").unwrap();
        assert_eq!(a.key, "trailing.activation_percent");
        assert_eq!(
            a.values,
            vec![
                Value::Num(dec!(0)),
                Value::Num(dec!(0.1)),
                Value::Num(dec!(0.2)),
                Value::Num(dec!(0.3))
            ]
        );
        // 0.1 + 0.2 is 0.3 exactly: no binary float creeps in.
        let b = range(dec!(0.1), dec!(0.3), dec!(0.1)).unwrap();
        assert_eq!(b.len(), 3);
        // An end that is not on the step is not reached.
        assert_eq!(range(dec!(0), dec!(1), dec!(0.3)).unwrap().len(), 4);
        assert!(range(dec!(1), dec!(0), dec!(0.1)).is_err());
        assert!(range(dec!(0), dec!(1), dec!(0)).is_err());
        assert!(parse_cli("x=0:1").is_err());
        assert!(parse_cli("novalue").is_err());
    }

    #[test]
    fn lists_sort_and_reject_repeats_and_mixtures() {
        let a = parse_cli("exchange.venue=bybit,binance").unwrap();
        assert_eq!(a.key, "exchange.venue");
        assert_eq!(a.values[0], Value::Text("binance".into()));
        let n = parse_cli("distance_percent=1.0,0.5").unwrap();
        assert_eq!(n.values, vec![Value::Num(dec!(0.5)), Value::Num(dec!(1))]);
        assert!(parse_cli("distance_percent=0.5,0.50").is_err());
        assert!(parse_cli("distance_percent=0.5,x").is_err());
        let t: toml::Table =
            toml::from_str("a = [0.3, \"0.1\"]\nb = { from = 1, to = 2 }").unwrap();
        let a = parse_toml("a", &t["a"]).unwrap();
        assert_eq!(a.values, vec![Value::Num(dec!(0.1)), Value::Num(dec!(0.3))]);
        let e = parse_toml("b", &t["b"]).unwrap_err();
        assert!(e.contains("sweep.b") && e.contains("step"), "{e}");
    }

    #[test]
    fn combination_numbers_round_trip_with_the_last_axis_fastest() {
        let g = Grid::new(vec![
            parse_cli("distance_percent=1,2,3").unwrap(),
            parse_cli("activation_percent=0,1").unwrap(),
        ])
        .unwrap();
        assert_eq!(g.axes[0].key, "trailing.activation_percent");
        assert_eq!(g.size().unwrap(), 6);
        assert_eq!(g.indices(4), vec![1, 1]);
        for c in 0..6 {
            assert_eq!(g.combo_of(&g.indices(c)), c);
        }
        assert_eq!(
            g.describe(5),
            "trailing.activation_percent=1 trailing.distance_percent=3"
        );
        assert!(Grid::new(vec![parse_cli("a=1").unwrap(), parse_cli("a=2").unwrap()]).is_err());
    }

    #[test]
    fn samples_are_distinct_sorted_and_seeded() {
        let s = sample(1000, 50, 7);
        assert_eq!(s.len(), 50);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s, sample(1000, 50, 7));
        assert_ne!(s, sample(1000, 50, 8));
        assert_eq!(sample(5, 9, 1), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn shards_partition_the_combinations() {
        let all: Vec<u64> = (0..10).collect();
        let mut seen: Vec<u64> = (0..3)
            .flat_map(|k| Shard { index: k, count: 3 }.take(&all))
            .collect();
        seen.sort();
        assert_eq!(seen, all);
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::parse("1/0").is_err());
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
    }
}
