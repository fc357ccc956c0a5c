//! Trailing-stop settings: strict serde types with validation (DESIGN §2, §5).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::fixed::MAX_PCT_DECIMALS;

/// A setting that cannot be used, with the key that holds it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}

/// Deserializes a decimal written as a string or a bare number; a bare number means exactly the
/// decimal written (`0.8` is 0.8): floats are read back through their shortest round-trip text.
pub mod exact_decimal {
    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::str::FromStr;

    struct DecVisitor;

    impl Visitor<'_> for DecVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal number (e.g. \"0.5\" or 0.5)")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            parse(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            if !v.is_finite() {
                return Err(E::custom(format!("{v} is not a finite number")));
            }
            parse(&format!("{v}")).map_err(E::custom)
        }
    }

    /// Parses plain decimal text (no exponent, no surrounding junk).
    pub fn parse(s: &str) -> Result<Decimal, String> {
        let t = s.trim();
        Decimal::from_str(t)
            .or_else(|_| Decimal::from_scientific(t))
            .map_err(|_| {
                let shown = crate::echo::echo(s);
                if is_number_text(t) {
                    format!("\"{shown}\" is {OUT_OF_RANGE}")
                } else {
                    format!("\"{shown}\" is not a decimal number")
                }
            })
    }

    /// Why a well-formed number is refused: what an exact decimal holds.
    pub const OUT_OF_RANGE: &str = "out of range: an exact decimal holds at most 28 digits (magnitude below 7.9e28, \
         no more than 28 decimals)";

    /// Whether `t` is written as a number (`-1.5`, `1e30`, `+2.5E-7`), whatever its size.
    pub fn is_number_text(t: &str) -> bool {
        let t = t.strip_prefix(['+', '-']).unwrap_or(t);
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], Some(&t[i + 1..])),
            None => (t, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
        let exponent_ok = exponent.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        });
        mantissa_ok && exponent_ok
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecVisitor)
    }

    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.normalize().to_string())
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            super::deserialize(d).map(Some)
        }
        pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }
    }
}

fn d(s: &str) -> Decimal {
    exact_decimal::parse(s).expect("literal")
}

/// The whole `[trailing]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailingConfig {
    #[serde(default, with = "exact_decimal")]
    pub activation_percent: Decimal,
    #[serde(with = "exact_decimal")]
    pub distance_percent: Decimal,
    #[serde(
        default,
        with = "exact_decimal::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub initial_stop_percent: Option<Decimal>,
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakeven: Option<Breakeven>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_activation: Option<TimeActivation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<Momentum>,
}

/// When a better stop may be sent to the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub min_interval_seconds: u64,
    #[serde(with = "exact_decimal")]
    pub min_improvement_percent: Decimal,
    #[serde(with = "exact_decimal")]
    pub emergency_percent: Decimal,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            min_interval_seconds: 60,
            min_improvement_percent: d("0.1"),
            emergency_percent: d("1.0"),
        }
    }
}

/// Move the stop to entry (plus an offset that covers fees) once in profit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breakeven {
    #[serde(with = "exact_decimal")]
    pub trigger_percent: Decimal,
    #[serde(default, with = "exact_decimal")]
    pub offset_percent: Decimal,
}

/// Activate trailing after a time in the trade, even below the activation price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeActivation {
    pub after_seconds: u64,
    #[serde(default, with = "exact_decimal")]
    pub min_profit_percent: Decimal,
}

/// Tighten the distance while the price runs fast in the position's favour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Momentum {
    pub window_seconds: u64,
    #[serde(with = "exact_decimal")]
    pub threshold_percent: Decimal,
    #[serde(with = "exact_decimal")]
    pub distance_factor: Decimal,
}

fn check_decimals(key: &str, v: Decimal) -> Result<(), ConfigError> {
    if v.normalize().scale() > MAX_PCT_DECIMALS {
        return Err(ConfigError::new(
            key,
            format!("{v} has more than {MAX_PCT_DECIMALS} decimals"),
        ));
    }
    Ok(())
}

fn check_range(
    key: &str,
    v: Decimal,
    lo: Decimal,
    lo_incl: bool,
    hi: Decimal,
) -> Result<(), ConfigError> {
    check_decimals(key, v)?;
    let lo_ok = if lo_incl { v >= lo } else { v > lo };
    if !lo_ok || v >= hi {
        let open = if lo_incl { "[" } else { "(" };
        return Err(ConfigError::new(
            key,
            format!("{v} is outside {open}{lo}, {hi})"),
        ));
    }
    Ok(())
}

impl TrailingConfig {
    /// A config with the given distance and every other key at its default.
    pub fn with_distance(distance_percent: Decimal) -> Self {
        TrailingConfig {
            activation_percent: Decimal::ZERO,
            distance_percent,
            initial_stop_percent: None,
            rate_limit: RateLimit::default(),
            breakeven: None,
            time_activation: None,
            momentum: None,
        }
    }

    /// Checks every value; the error names the key (`trailing.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let hundred = Decimal::ONE_HUNDRED;
        let zero = Decimal::ZERO;
        check_range(
            "trailing.activation_percent",
            self.activation_percent,
            zero,
            true,
            hundred,
        )?;
        check_range(
            "trailing.distance_percent",
            self.distance_percent,
            zero,
            false,
            hundred,
        )?;
        if let Some(p) = self.initial_stop_percent {
            check_range("trailing.initial_stop_percent", p, zero, false, hundred)?;
        }
        let r = &self.rate_limit;
        check_range(
            "trailing.rate_limit.min_improvement_percent",
            r.min_improvement_percent,
            zero,
            true,
            hundred,
        )?;
        check_range(
            "trailing.rate_limit.emergency_percent",
            r.emergency_percent,
            zero,
            false,
            hundred,
        )?;
        if r.min_interval_seconds > 10 * 365 * 86_400 {
            return Err(ConfigError::new(
                "trailing.rate_limit.min_interval_seconds",
                "longer than ten years",
            ));
        }
        if let Some(b) = &self.breakeven {
            check_range(
                "trailing.breakeven.trigger_percent",
                b.trigger_percent,
                zero,
                true,
                hundred,
            )?;
            check_range(
                "trailing.breakeven.offset_percent",
                b.offset_percent,
                -hundred,
                false,
                hundred,
            )?;
        }
        if let Some(t) = &self.time_activation {
            check_range(
                "trailing.time_activation.min_profit_percent",
                t.min_profit_percent,
                -hundred,
                false,
                hundred,
            )?;
            if t.after_seconds > 10 * 365 * 86_400 {
                return Err(ConfigError::new(
                    "trailing.time_activation.after_seconds",
                    "longer than ten years",
                ));
            }
        }
        if let Some(m) = &self.momentum {
            if m.window_seconds == 0 || m.window_seconds > 365 * 86_400 {
                return Err(ConfigError::new(
                    "trailing.momentum.window_seconds",
                    format!("{} must be between 1 and one year", m.window_seconds),
                ));
            }
            check_range(
                "trailing.momentum.threshold_percent",
                m.threshold_percent,
                zero,
                true,
                hundred,
            )?;
            check_range(
                "trailing.momentum.distance_factor",
                m.distance_factor,
                zero,
                false,
                hundred,
            )?;
            if self.distance_percent * m.distance_factor >= hundred {
                return Err(ConfigError::new(
                    "trailing.momentum.distance_factor",
                    "distance_percent * distance_factor must stay below 100",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn minimal_toml_parses_with_defaults() {
        let c: TrailingConfig = toml::from_str("distance_percent = 0.8").unwrap();
        assert_eq!(c.distance_percent, dec!(0.8));
        assert_eq!(c.distance_percent.to_string(), "0.8");
        assert_eq!(c.activation_percent, dec!(0));
        assert_eq!(c.rate_limit, RateLimit::default());
        assert_eq!(c.rate_limit.min_interval_seconds, 60);
        c.validate().unwrap();
    }

    #[test]
    fn full_toml_parses_exactly() {
        let c: TrailingConfig = toml::from_str(
            r#"
            activation_percent = "1.0"
            distance_percent = 0.1
            initial_stop_percent = 2
            [rate_limit]
            min_interval_seconds = 30
            min_improvement_percent = 0.3
            emergency_percent = "1.5"
            [breakeven]
            trigger_percent = 0.5
            [time_activation]
            after_seconds = 3600
            min_profit_percent = 0.2
            [momentum]
            window_seconds = 300
            threshold_percent = 1.0
            distance_factor = 0.5
            "#,
        )
        .unwrap();
        assert_eq!(c.distance_percent, dec!(0.1));
        assert_eq!(c.initial_stop_percent, Some(dec!(2)));
        assert_eq!(c.rate_limit.min_improvement_percent, dec!(0.3));
        assert_eq!(c.breakeven.as_ref().unwrap().offset_percent, dec!(0));
        assert_eq!(c.momentum.as_ref().unwrap().distance_factor, dec!(0.5));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<TrailingConfig>("distance_percent = 1\ndistanse = 2").unwrap_err();
        assert!(e.to_string().contains("distanse"), "{e}");
        let e = toml::from_str::<TrailingConfig>(
            "distance_percent = 1\n[breakeven]\ntrigger_percent = 1\nofset_percent = 1",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ofset_percent"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (toml_text, key) in [
            ("distance_percent = 0", "trailing.distance_percent"),
            ("distance_percent = 100", "trailing.distance_percent"),
            ("distance_percent = -1", "trailing.distance_percent"),
            (
                "distance_percent = 1\nactivation_percent = -0.5",
                "trailing.activation_percent",
            ),
            (
                "distance_percent = 1\ninitial_stop_percent = 0",
                "trailing.initial_stop_percent",
            ),
            (
                "distance_percent = 0.000000001",
                "trailing.distance_percent",
            ),
            (
                "distance_percent = 60\n[momentum]\nwindow_seconds = 5\nthreshold_percent = 1\ndistance_factor = 2",
                "trailing.momentum.distance_factor",
            ),
            (
                "distance_percent = 1\n[momentum]\nwindow_seconds = 0\nthreshold_percent = 1\ndistance_factor = 0.5",
                "trailing.momentum.window_seconds",
            ),
        ] {
            let c: TrailingConfig = toml::from_str(toml_text).unwrap();
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, key, "{toml_text}");
        }
    }

    #[test]
    fn non_numbers_are_rejected() {
        let e = toml::from_str::<TrailingConfig>("distance_percent = \"abc\"").unwrap_err();
        assert!(e.to_string().contains("not a decimal"), "{e}");
        let e = toml::from_str::<TrailingConfig>("distance_percent = nan").unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
    }
}
