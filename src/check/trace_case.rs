//! `trace.toml`: a trace case, the file form of `trailstop trace`'s flags. One position is
//! replayed through a prices file (trade ticks, or candles as O, X, Y, C points) and checked
//! like a one-position backtest.
//!
//! ```toml
//! name = "trace"             # the summary's `scenario` [trace]
//! prices = "prices.csv"      # required: `timestamp,price` ticks, or candles
//! side = "long"              # long | short [long]
//! tick_size = "0.01"         # [0.01]
//! entry = "100"              # entry price [the first price point's]
//! at = "2024-01-01T00:00:00Z"  # entry time, epoch or ISO-8601 [the first point's]
//! venue = "bybit"            # bybit | binance [bybit]
//! latency_ms = 0             # binance create latency [0]
//! policy = "pessimistic"     # intrabar order for candles [pessimistic]
//! ticks = false              # treat the prices as ticks even if they look like candles
//! [trailing]                 # the trailing settings, as in a scenario
//! distance_percent = "0.5"
//! ```

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;

use super::case::{CaseError, toml_message};
use crate::backtest::{DataKind, Loaded, load_market};
use crate::engine::{Side, TrailingConfig, exact_decimal};
use crate::scenario::{DataSection, ExchangeSection, IntrabarSection, Scenario, Venue};
use crate::sim::entries::EntrySpec;
use crate::sim::path::Policy;

fn long() -> Side {
    Side::Long
}

fn cent() -> Decimal {
    Decimal::new(1, 2)
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceCase {
    /// The summary's `scenario` (not the folder's name: a copied case keeps its outputs).
    #[serde(default)]
    pub name: Option<String>,
    pub prices: String,
    #[serde(default = "long")]
    pub side: Side,
    #[serde(default = "cent", with = "exact_decimal")]
    pub tick_size: Decimal,
    #[serde(default, with = "exact_decimal::option")]
    pub entry: Option<Decimal>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub venue: Venue,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub ticks: bool,
    pub trailing: TrailingConfig,
}

impl TraceCase {
    pub fn from_text(text: &str, path: &Path) -> Result<TraceCase, CaseError> {
        let case: TraceCase =
            toml::from_str(text).map_err(|e| CaseError::file(path, toml_message(&e, text)))?;
        let invalid =
            |key: &str, problem: String| CaseError::file(path, format!("{key}: {problem}"));
        if case.tick_size <= Decimal::ZERO {
            return Err(invalid(
                "tick_size",
                format!("{} must be > 0", case.tick_size),
            ));
        }
        if case.latency_ms > 86_400_000 {
            return Err(invalid("latency_ms", "longer than a day".into()));
        }
        if let Some(e) = case.entry
            && e <= Decimal::ZERO
        {
            return Err(invalid("entry", format!("{e} must be > 0")));
        }
        case.trailing
            .validate()
            .map_err(|e| invalid(&e.key, e.problem))?;
        Ok(case)
    }

    /// The scenario and data a backtest of this one position runs on: the prices file
    /// resolved against `path`'s folder first, then the working directory (as in a scenario);
    /// no fees or slippage, as `trailstop trace`.
    pub fn load(&self, path: &Path) -> Result<(Scenario, Loaded), CaseError> {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut scenario = Scenario {
            name: self.name.clone().unwrap_or_else(|| "trace".to_string()),
            data: DataSection {
                candles: None,
                trades: None,
                detail: None,
                detail_bars: None,
                symbol: String::new(),
                tick_size: self.tick_size,
                interval: None,
                start: None,
                end: None,
            },
            entries: Default::default(),
            exchange: ExchangeSection {
                venue: self.venue,
                update_latency_ms: self.latency_ms,
                ..Default::default()
            },
            trailing: self.trailing.clone(),
            intrabar: IntrabarSection {
                policy: self.policy,
            },
            sweep: None,
            base_dir: dir,
            source: path.to_path_buf(),
        };
        let source: PathBuf = scenario.resolve_file("prices", &self.prices)?;
        let kind = if self.ticks || crate::data::looks_like_ticks(&source) {
            scenario.data.trades = Some(self.prices.clone());
            DataKind::Trades
        } else {
            scenario.data.candles = Some(self.prices.clone());
            DataKind::Candles
        };
        let (market, rows, gaps) = load_market(kind, &source, None, self.tick_size, &self.entry)?;
        let time = match &self.at {
            Some(t) => {
                crate::data::parse_time(t).map_err(|m| CaseError::file(path, format!("at: {m}")))?
            }
            None => *market
                .entry_times()
                .first()
                .ok_or_else(|| CaseError::file(&source, "no price points"))?,
        };
        let entry = EntrySpec {
            time,
            side: self.side,
            price: self.entry,
            quantity: None,
        };
        Ok((
            scenario,
            Loaded {
                market,
                entries: vec![entry],
                source,
                rows,
                gaps,
                warnings: Vec::new(),
                no_positions: None,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn minimal_trace_case_has_the_trace_defaults() {
        let t = TraceCase::from_text(
            "prices = \"p.csv\"\n[trailing]\ndistance_percent = 0.5\n",
            Path::new("c/trace.toml"),
        )
        .unwrap();
        assert_eq!(t.side, Side::Long);
        assert_eq!(t.tick_size, dec!(0.01));
        assert_eq!(t.venue, Venue::Bybit);
        assert_eq!(t.policy, Policy::Pessimistic);
        assert_eq!(t.trailing.distance_percent, dec!(0.5));
        assert!(t.entry.is_none() && t.at.is_none() && !t.ticks);
    }

    #[test]
    fn bad_trace_cases_name_the_key() {
        let p = Path::new("c/trace.toml");
        for (text, needle) in [
            (
                "prices = \"p.csv\"\nsid = \"long\"\n[trailing]\ndistance_percent = 0.5",
                "sid",
            ),
            (
                "prices = \"p.csv\"\ntick_size = 0\n[trailing]\ndistance_percent = 0.5",
                "tick_size",
            ),
            (
                "prices = \"p.csv\"\n[trailing]\ndistance_percent = 0",
                "trailing.distance_percent",
            ),
            ("[trailing]\ndistance_percent = 0.5", "prices"),
        ] {
            let e = TraceCase::from_text(text, p).unwrap_err().to_string();
            assert!(e.contains("c/trace.toml") && e.contains(needle), "{e}");
        }
    }
}
