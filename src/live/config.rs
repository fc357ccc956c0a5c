//! `live.toml` (`LIVE.md` §3): strict like a scenario. Unknown keys are errors naming the file
//! and the key; `[trailing]` is exactly a scenario's `[trailing]` table, plus optional
//! `[trailing.symbols.<SYMBOL>]` tables merged key by key into it for one symbol.
//!
//! The config names the environment variables that hold the keys, never the keys themselves
//! (`credentials` reads them), so a config can be printed, logged and committed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::TrailingConfig;
use crate::scenario::{tidy, toml_table_from_text};

#[derive(Debug, Error)]
pub enum LiveConfigError {
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
}

/// Which exchange the positions live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exchange {
    Bybit,
    Binance,
}

impl Exchange {
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Bybit => "bybit",
            Exchange::Binance => "binance",
        }
    }

    /// The production REST host (`EXCHANGES.md` §1.1, §2.1).
    pub fn default_rest_url(self) -> &'static str {
        match self {
            Exchange::Bybit => "https://api.bybit.com",
            Exchange::Binance => "https://fapi.binance.com",
        }
    }

    /// The production stream host; the adapter appends the exchange's own paths (Bybit
    /// `/v5/public/linear`, `/v5/private`; Binance `/market/…`, `/private/…`).
    pub fn default_ws_url(self) -> &'static str {
        match self {
            Exchange::Bybit => "wss://stream.bybit.com",
            Exchange::Binance => "wss://fstream.binance.com",
        }
    }

    fn default_key_env(self) -> &'static str {
        match self {
            Exchange::Bybit => "BYBIT_API_KEY",
            Exchange::Binance => "BINANCE_API_KEY",
        }
    }

    fn default_secret_env(self) -> &'static str {
        match self {
            Exchange::Bybit => "BYBIT_API_SECRET",
            Exchange::Binance => "BINANCE_API_SECRET",
        }
    }
}

/// The price the exchange judges the stop against (Bybit `slTriggerBy`, Binance
/// `workingType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerPrice {
    #[default]
    Mark,
    Last,
}

/// The default `recv_window_ms` (Bybit's and Binance's documented default).
pub const DEFAULT_RECV_WINDOW_MS: u64 = 5000;
/// The largest `recv_window_ms` accepted (Binance's documented maximum; a wider window only
/// lets a delayed request act later).
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;
/// The default `[http] listen`: loopback, so the endpoints are private unless changed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9184";

/// `[venue]`, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueConfig {
    pub exchange: Exchange,
    /// No trailing slash; paths are appended.
    pub rest_url: String,
    pub ws_url: String,
    /// Names of the environment variables holding the API key and secret.
    pub api_key_env: String,
    pub api_secret_env: String,
    pub recv_window_ms: u64,
    pub trigger_price: TriggerPrice,
}

/// `[positions] symbols`: which open positions trailstop manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbols {
    /// `["*"]`: every open position of the account.
    All,
    /// These symbols only (uppercase, no duplicates).
    Only(Vec<String>),
}

impl Symbols {
    pub fn contains(&self, symbol: &str) -> bool {
        match self {
            Symbols::All => true,
            Symbols::Only(list) => list.iter().any(|s| s == symbol),
        }
    }
}

/// A whole `live.toml`, validated, paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub name: String,
    pub venue: VenueConfig,
    pub symbols: Symbols,
    /// `[trailing]` as written (the config of every symbol without an override).
    pub trailing: TrailingConfig,
    /// The whole config of each symbol with a `[trailing.symbols.<SYMBOL>]` table: the base
    /// table with the override's keys merged in, validated.
    pub trailing_overrides: BTreeMap<String, TrailingConfig>,
    /// The SQLite database (resolved against the config file's folder).
    pub db: PathBuf,
    /// The folder for the closed positions' `trades.csv` and `events.jsonl` (resolved).
    pub out: PathBuf,
    pub listen: SocketAddr,
    /// The config file, as given.
    pub source: PathBuf,
}

impl LiveConfig {
    /// The trailing config for `symbol`: its override if it has one, else `[trailing]`.
    pub fn trailing_for(&self, symbol: &str) -> &TrailingConfig {
        self.trailing_overrides
            .get(symbol)
            .unwrap_or(&self.trailing)
    }

    /// Reads, overrides (`key=value` strings, as `--set`) and validates a `live.toml`.
    pub fn load(path: &Path, overrides: &[String]) -> Result<LiveConfig, LiveConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LiveConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(&text, path, overrides)
    }

    /// [`LiveConfig::load`] from the file's text; `path` names the file in errors and is the
    /// base of relative paths.
    pub fn from_text(
        text: &str,
        path: &Path,
        overrides: &[String],
    ) -> Result<LiveConfig, LiveConfigError> {
        let parse_err = |message: String| LiveConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = if overrides.is_empty() {
            // Straight from the text: the parser's errors then point at the line.
            toml::from_str(text).map_err(|e| parse_err(e.to_string()))?
        } else {
            let table = toml_table_from_text(text, path, overrides).map_err(|e| match e {
                crate::scenario::ScenarioError::Parse { message, .. } => parse_err(message),
                other => parse_err(other.to_string()),
            })?;
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| parse_err(format!("after --set: {e}")))?
        };
        raw.validate(path)
    }
}

// ---- the file's shape (strict) ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    venue: RawVenue,
    positions: RawPositions,
    /// Read as a table: the `symbols` sub-table is taken out before the rest becomes a
    /// [`TrailingConfig`] (which knows no `symbols` key).
    trailing: toml::Table,
    store: RawStore,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVenue {
    exchange: Exchange,
    rest_url: Option<String>,
    ws_url: Option<String>,
    api_key_env: Option<String>,
    api_secret_env: Option<String>,
    recv_window_ms: Option<u64>,
    #[serde(default)]
    trigger_price: TriggerPrice,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPositions {
    symbols: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    db: String,
    out: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: DEFAULT_LISTEN.to_string(),
        }
    }
}

impl RawConfig {
    fn validate(self, path: &Path) -> Result<LiveConfig, LiveConfigError> {
        let invalid = |key: &str, problem: String| LiveConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        check_name(&self.name).map_err(|p| invalid("name", p))?;
        let venue = self.venue.validate().map_err(|(k, p)| invalid(&k, p))?;
        let symbols =
            symbols(&self.positions.symbols).map_err(|p| invalid("positions.symbols", p))?;
        let (trailing, trailing_overrides) =
            trailing(self.trailing, &symbols).map_err(|(k, p)| invalid(&k, p))?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        let db = resolve(base_dir, &self.store.db).map_err(|p| invalid("store.db", p))?;
        let out = resolve(base_dir, &self.store.out).map_err(|p| invalid("store.out", p))?;
        let listen = self.http.listen.trim().parse::<SocketAddr>().map_err(|_| {
            invalid(
                "http.listen",
                format!(
                    "\"{}\" is not an address:port (e.g. {DEFAULT_LISTEN})",
                    self.http.listen
                ),
            )
        })?;
        Ok(LiveConfig {
            name: self.name,
            venue,
            symbols,
            trailing,
            trailing_overrides,
            db,
            out,
            listen,
            source: path.to_path_buf(),
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty()
        || name.starts_with('.')
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(format!(
            "\"{name}\" must be a non-empty file name (no slashes)"
        ));
    }
    Ok(())
}

impl RawVenue {
    fn validate(self) -> Result<VenueConfig, (String, String)> {
        let x = self.exchange;
        let url = |key: &str, given: Option<String>, default: &str, schemes: [&str; 2]| {
            let u = given.unwrap_or_else(|| default.to_string());
            let u = u.trim().trim_end_matches('/').to_string();
            let host = schemes.iter().find_map(|s| u.strip_prefix(s));
            match host {
                Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(u),
                _ => Err((
                    format!("venue.{key}"),
                    format!("\"{u}\" must start with {} or {}", schemes[0], schemes[1]),
                )),
            }
        };
        let rest_url = url(
            "rest_url",
            self.rest_url,
            x.default_rest_url(),
            ["https://", "http://"],
        )?;
        let ws_url = url(
            "ws_url",
            self.ws_url,
            x.default_ws_url(),
            ["wss://", "ws://"],
        )?;
        let api_key_env = env_name("venue.api_key_env", self.api_key_env, x.default_key_env())?;
        let api_secret_env = env_name(
            "venue.api_secret_env",
            self.api_secret_env,
            x.default_secret_env(),
        )?;
        if api_key_env == api_secret_env {
            return Err((
                "venue.api_secret_env".into(),
                format!("the same variable as venue.api_key_env ({api_key_env})"),
            ));
        }
        let recv_window_ms = self.recv_window_ms.unwrap_or(DEFAULT_RECV_WINDOW_MS);
        if recv_window_ms == 0 || recv_window_ms > MAX_RECV_WINDOW_MS {
            return Err((
                "venue.recv_window_ms".into(),
                format!("{recv_window_ms} is outside 1..={MAX_RECV_WINDOW_MS}"),
            ));
        }
        Ok(VenueConfig {
            exchange: x,
            rest_url,
            ws_url,
            api_key_env,
            api_secret_env,
            recv_window_ms,
            trigger_price: self.trigger_price,
        })
    }
}

/// An environment variable's name (`[A-Za-z_][A-Za-z0-9_]*`).
fn env_name(key: &str, given: Option<String>, default: &str) -> Result<String, (String, String)> {
    let name = given.unwrap_or_else(|| default.to_string());
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        // Not echoed: a value that is no variable name may be a pasted key.
        return Err((
            key.to_string(),
            "must name an environment variable (letters, digits, _), not hold a key".into(),
        ));
    }
    Ok(name)
}

fn symbols(list: &[String]) -> Result<Symbols, String> {
    if list.is_empty() {
        return Err("empty: list the symbols, or [\"*\"] for every open position".into());
    }
    if list.iter().any(|s| s == "*") {
        return if list.len() == 1 {
            Ok(Symbols::All)
        } else {
            Err("\"*\" stands alone (it means every open position)".into())
        };
    }
    let mut seen = Vec::with_capacity(list.len());
    for s in list {
        check_symbol(s)?;
        if seen.contains(s) {
            return Err(format!("\"{s}\" is listed twice"));
        }
        seen.push(s.clone());
    }
    Ok(Symbols::Only(seen))
}

fn check_symbol(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" is not an exchange symbol (uppercase letters and digits, e.g. BTCUSDT)"
        ))
    }
}

/// The base `[trailing]` config and each symbol's merged override, validated; an error names
/// the key as written (`trailing.symbols.ETHUSDT.distance_percent`).
#[allow(clippy::type_complexity)]
fn trailing(
    mut table: toml::Table,
    symbols: &Symbols,
) -> Result<(TrailingConfig, BTreeMap<String, TrailingConfig>), (String, String)> {
    let per_symbol = match table.remove("symbols") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err((
                "trailing.symbols".into(),
                "must be tables: [trailing.symbols.<SYMBOL>]".into(),
            ));
        }
    };
    let base = trailing_config(table.clone(), "trailing")?;
    let mut overrides = BTreeMap::new();
    for (symbol, value) in per_symbol {
        let key = format!("trailing.symbols.{symbol}");
        check_symbol(&symbol).map_err(|p| (key.clone(), p))?;
        if !symbols.contains(&symbol) {
            return Err((
                key,
                format!("{symbol} is not in positions.symbols, so this override would never apply"),
            ));
        }
        let toml::Value::Table(over) = value else {
            return Err((key, "must be a table of [trailing] keys".into()));
        };
        let mut merged = table.clone();
        merge(&mut merged, over);
        overrides.insert(symbol, trailing_config(merged, &key)?);
    }
    Ok((base, overrides))
}

/// A [`TrailingConfig`] from `table`, validated; errors say `prefix.<key>`.
fn trailing_config(table: toml::Table, prefix: &str) -> Result<TrailingConfig, (String, String)> {
    let config: TrailingConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| (prefix.to_string(), e.message().trim().to_string()))?;
    config.validate().map_err(|e| {
        let key = match e.key.strip_prefix("trailing") {
            Some(rest) => format!("{prefix}{rest}"),
            None => format!("{prefix}.{}", e.key),
        };
        (key, e.problem)
    })?;
    Ok(config)
}

/// Merges `over` into `base` key by key: sub-tables merge, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `p` against the config file's folder (absolute paths stay); `..` pairs tidied.
fn resolve(base_dir: &Path, p: &str) -> Result<PathBuf, String> {
    if p.trim().is_empty() {
        return Err("empty path".into());
    }
    let rel = Path::new(p);
    Ok(if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        tidy(&base_dir.join(rel))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// LIVE.md §3's example.
    const EXAMPLE: &str = r#"
name = "guard"
[venue]
exchange = "bybit"
rest_url = "https://api.bybit.com"
ws_url = "wss://stream.bybit.com"
api_key_env = "BYBIT_API_KEY"
api_secret_env = "BYBIT_API_SECRET"
recv_window_ms = 5000
trigger_price = "mark"
[positions]
symbols = ["BTCUSDT", "ETHUSDT"]
[trailing]
activation_percent = "0.5"
distance_percent = "0.4"
[trailing.rate_limit]
min_interval_seconds = 60
min_improvement_percent = "0.1"
emergency_percent = "1.0"
[trailing.symbols.ETHUSDT]
distance_percent = "0.8"
[store]
db = "live.sqlite"
out = "reports/guard-live"
[http]
listen = "127.0.0.1:9184"
"#;

    const MINIMAL: &str = r#"
name = "m"
[venue]
exchange = "bybit"
[positions]
symbols = ["*"]
[trailing]
distance_percent = 1
[store]
db = "m.sqlite"
out = "out"
"#;

    fn load(text: &str) -> Result<LiveConfig, LiveConfigError> {
        LiveConfig::from_text(text, Path::new("conf/live.toml"), &[])
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn the_design_example_loads() {
        let c = load(EXAMPLE).unwrap();
        assert_eq!(c.name, "guard");
        assert_eq!(c.venue.exchange, Exchange::Bybit);
        assert_eq!(c.venue.trigger_price, TriggerPrice::Mark);
        assert_eq!(
            c.symbols,
            Symbols::Only(vec!["BTCUSDT".into(), "ETHUSDT".into()])
        );
        assert_eq!(c.trailing.distance_percent, dec!(0.4));
        assert_eq!(c.trailing.activation_percent, dec!(0.5));
        assert_eq!(c.listen, "127.0.0.1:9184".parse().unwrap());
        assert_eq!(c.trailing_for("ETHUSDT").distance_percent, dec!(0.8));
        assert_eq!(c.trailing_for("BTCUSDT"), &c.trailing);
    }

    #[test]
    fn defaults_per_exchange() {
        let c = load(MINIMAL).unwrap();
        let v = &c.venue;
        assert_eq!(v.rest_url, "https://api.bybit.com");
        assert_eq!(v.ws_url, "wss://stream.bybit.com");
        assert_eq!(v.api_key_env, "BYBIT_API_KEY");
        assert_eq!(v.api_secret_env, "BYBIT_API_SECRET");
        assert_eq!(v.recv_window_ms, 5000);
        assert_eq!(v.trigger_price, TriggerPrice::Mark);
        assert_eq!(c.symbols, Symbols::All);
        assert!(c.symbols.contains("ANYUSDT"));
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(c.listen.ip().is_loopback());
        assert!(c.trailing_overrides.is_empty());

        let b = load(&MINIMAL.replace("\"bybit\"", "\"binance\"")).unwrap();
        assert_eq!(b.venue.rest_url, "https://fapi.binance.com");
        assert_eq!(b.venue.ws_url, "wss://fstream.binance.com");
        assert_eq!(b.venue.api_key_env, "BINANCE_API_KEY");
        assert_eq!(b.venue.api_secret_env, "BINANCE_API_SECRET");
    }

    #[test]
    fn given_urls_lose_the_trailing_slash() {
        let c = load(&MINIMAL.replace(
            "exchange = \"bybit\"",
            "exchange = \"bybit\"\nrest_url = \"http://127.0.0.1:8080/\"\nws_url = \"ws://127.0.0.1:8081/\"\ntrigger_price = \"last\"",
        ))
        .unwrap();
        assert_eq!(c.venue.rest_url, "http://127.0.0.1:8080");
        assert_eq!(c.venue.ws_url, "ws://127.0.0.1:8081");
        assert_eq!(c.venue.trigger_price, TriggerPrice::Last);
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        for (from, to, key) in [
            ("name = \"m\"", "name = \"m\"\nnmae = 1", "nmae"),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\napi_key = \"k\"",
                "api_key",
            ),
            (
                "symbols = [\"*\"]",
                "symbols = [\"*\"]\nsymbol = 1",
                "symbol",
            ),
            (
                "distance_percent = 1",
                "distance_percent = 1\ndistanse = 1",
                "distanse",
            ),
            ("out = \"out\"", "out = \"out\"\nlog = \"x\"", "log"),
            (
                "[store]",
                "[http]\nlisten = \"127.0.0.1:1\"\nport = 1\n[store]",
                "port",
            ),
            ("[store]", "[metrics]\n[store]", "metrics"),
        ] {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "{from}");
            let e = err(&text);
            assert!(e.contains("conf/live.toml"), "{e}");
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        for (from, to, key) in [
            ("exchange = \"bybit\"", "exchange = \"kraken\"", "kraken"),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\ntrigger_price = \"index\"",
                "index",
            ),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\nrest_url = \"api.bybit.com\"",
                "venue.rest_url",
            ),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\nws_url = \"https://stream.bybit.com\"",
                "venue.ws_url",
            ),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\nrecv_window_ms = 0",
                "venue.recv_window_ms",
            ),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\nrecv_window_ms = 60001",
                "venue.recv_window_ms",
            ),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\napi_key_env = \"MY-KEY\"",
                "venue.api_key_env",
            ),
            (
                "exchange = \"bybit\"",
                "exchange = \"bybit\"\napi_secret_env = \"BYBIT_API_KEY\"",
                "venue.api_secret_env",
            ),
            ("symbols = [\"*\"]", "symbols = []", "positions.symbols"),
            (
                "symbols = [\"*\"]",
                "symbols = [\"*\", \"BTCUSDT\"]",
                "positions.symbols",
            ),
            (
                "symbols = [\"*\"]",
                "symbols = [\"btcusdt\"]",
                "positions.symbols",
            ),
            (
                "symbols = [\"*\"]",
                "symbols = [\"BTCUSDT\", \"BTCUSDT\"]",
                "positions.symbols",
            ),
            (
                "distance_percent = 1",
                "distance_percent = 0",
                "trailing.distance_percent",
            ),
            (
                "distance_percent = 1",
                "distance_percent = 1\n[trailing.rate_limit]\nemergency_percent = 0",
                "trailing.rate_limit.emergency_percent",
            ),
            ("db = \"m.sqlite\"", "db = \"\"", "store.db"),
            ("name = \"m\"", "name = \"a/b\"", "name"),
            (
                "[store]",
                "[http]\nlisten = \"localhost\"\n[store]",
                "http.listen",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "{from}");
            let e = err(&text);
            assert!(e.starts_with("conf/live.toml: "), "{e}");
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn a_value_that_is_no_variable_name_is_not_echoed() {
        let e = err(&MINIMAL.replace(
            "exchange = \"bybit\"",
            "exchange = \"bybit\"\napi_secret_env = \"s3cr3t/pasted+key\"",
        ));
        assert!(e.contains("venue.api_secret_env"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn required_sections_are_named_when_missing() {
        for section in ["[venue]", "[positions]", "[trailing]", "[store]"] {
            let start = MINIMAL.find(section).unwrap();
            let end = MINIMAL[start + 1..]
                .find("\n[")
                .map_or(MINIMAL.len(), |i| start + 1 + i);
            let text = format!("{}{}", &MINIMAL[..start], &MINIMAL[end..]);
            let e = err(&text);
            let name = section.trim_matches(['[', ']']);
            assert!(e.contains(name), "{section}: {e}");
        }
    }

    #[test]
    fn overrides_merge_key_by_key() {
        // Base values other than the defaults, so a replaced table would show.
        let base = EXAMPLE
            .replace(
                "min_improvement_percent = \"0.1\"",
                "min_improvement_percent = \"0.2\"",
            )
            .replace("emergency_percent = \"1.0\"", "emergency_percent = \"1.5\"");
        assert_ne!(base, EXAMPLE);
        let c = load(&base.replace(
            "[trailing.symbols.ETHUSDT]\ndistance_percent = \"0.8\"",
            "[trailing.symbols.ETHUSDT]\ndistance_percent = \"0.8\"\n\
             [trailing.symbols.ETHUSDT.rate_limit]\nmin_interval_seconds = 30\n\
             [trailing.symbols.BTCUSDT.breakeven]\ntrigger_percent = 0.3",
        ))
        .unwrap();
        let eth = c.trailing_for("ETHUSDT");
        assert_eq!(eth.distance_percent, dec!(0.8));
        // Merged into the base table, not replacing it: the other keys stay the base's.
        assert_eq!(eth.activation_percent, dec!(0.5));
        assert_eq!(eth.rate_limit.min_interval_seconds, 30);
        assert_eq!(eth.rate_limit.min_improvement_percent, dec!(0.2));
        assert_eq!(eth.rate_limit.emergency_percent, dec!(1.5));
        assert_eq!(eth.breakeven, None);
        let btc = c.trailing_for("BTCUSDT");
        assert_eq!(btc.distance_percent, dec!(0.4));
        assert_eq!(btc.breakeven.as_ref().unwrap().trigger_percent, dec!(0.3));
        // The base itself is untouched.
        assert_eq!(c.trailing.distance_percent, dec!(0.4));
        assert_eq!(c.trailing.rate_limit.min_interval_seconds, 60);
        assert_eq!(c.trailing.breakeven, None);
    }

    #[test]
    fn overrides_are_validated_and_named() {
        for (over, key) in [
            (
                "distance_percent = 0",
                "trailing.symbols.ETHUSDT.distance_percent",
            ),
            ("distanse = 1", "distanse"),
            (
                "[trailing.symbols.ETHUSDT.rate_limit]\nemergency_percent = 0",
                "trailing.symbols.ETHUSDT.rate_limit.emergency_percent",
            ),
        ] {
            let text = EXAMPLE.replace(
                "[trailing.symbols.ETHUSDT]\ndistance_percent = \"0.8\"",
                &format!("[trailing.symbols.ETHUSDT]\n{over}"),
            );
            let e = err(&text);
            assert!(e.contains(key), "{key}: {e}");
            assert!(e.contains("trailing.symbols.ETHUSDT"), "{e}");
        }
        // An override for a symbol that is not managed would never apply: a typo.
        let e = err(&EXAMPLE.replace("[trailing.symbols.ETHUSDT]", "[trailing.symbols.ETHUSD]"));
        assert!(e.contains("trailing.symbols.ETHUSD:"), "{e}");
        assert!(e.contains("positions.symbols"), "{e}");
        let e = err(&EXAMPLE.replace("[trailing.symbols.ETHUSDT]", "[trailing.symbols.ethusdt]"));
        assert!(e.contains("trailing.symbols.ethusdt"), "{e}");
        // With "*" any symbol may have one.
        let c = load(&MINIMAL.replace(
            "[store]",
            "[trailing.symbols.SOLUSDT]\ndistance_percent = 2\n[store]",
        ))
        .unwrap();
        assert_eq!(c.trailing_for("SOLUSDT").distance_percent, dec!(2));
    }

    #[test]
    fn paths_resolve_against_the_config_folder() {
        let c = load(EXAMPLE).unwrap();
        assert_eq!(c.db, Path::new("conf/live.sqlite"));
        assert_eq!(c.out, Path::new("conf/reports/guard-live"));
        let c = load(&EXAMPLE.replace(
            "db = \"live.sqlite\"\nout = \"reports/guard-live\"",
            "db = \"/var/lib/trailstop/live.sqlite\"\nout = \"../reports/x\"",
        ))
        .unwrap();
        assert_eq!(c.db, Path::new("/var/lib/trailstop/live.sqlite"));
        assert_eq!(c.out, Path::new("reports/x"));
        // A config in the working directory keeps relative paths relative to it.
        let c = LiveConfig::from_text(EXAMPLE, Path::new("live.toml"), &[]).unwrap();
        assert_eq!(c.db, Path::new("live.sqlite"));
    }

    #[test]
    fn set_overrides_apply_and_stay_strict() {
        let c = LiveConfig::from_text(
            EXAMPLE,
            Path::new("live.toml"),
            &[
                "venue.trigger_price=last".into(),
                "trailing.symbols.ETHUSDT.distance_percent=1.2".into(),
                "http.listen=127.0.0.1:9999".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.venue.trigger_price, TriggerPrice::Last);
        assert_eq!(c.trailing_for("ETHUSDT").distance_percent, dec!(1.2));
        assert_eq!(c.listen.port(), 9999);
        let e = LiveConfig::from_text(EXAMPLE, Path::new("live.toml"), &["venue.x=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("live.toml: "), "{e}");
        assert!(e.contains('x'), "{e}");
    }

    #[test]
    fn load_reads_the_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let c = LiveConfig::load(&path, &[]).unwrap();
        assert_eq!(c.db, dir.path().join("live.sqlite"));
        let missing = dir.path().join("nope.toml");
        let e = LiveConfig::load(&missing, &[]).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");
    }
}
