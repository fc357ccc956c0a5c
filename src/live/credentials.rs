//! API keys (`LIVE.md` §4.1): read from the environment variables that `live.toml` names,
//! held as [`Secret`]s. A key or secret never appears in an error, a log line or `Debug`
//! output: errors name the variable, never its value.

use std::ffi::OsString;
use std::fmt;

use thiserror::Error;

use super::config::VenueConfig;

/// A value that must not be printed. `Debug` and `Display` show a placeholder; the value is
/// reachable only through [`Secret::expose`], so every use is greppable. It has no
/// `Serialize` on purpose: it cannot reach a journal or `/status` by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub const REDACTED: &'static str = "<redacted>";

    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (a signature, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", Self::REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

/// Why the keys could not be read. Each names the variable and nothing of its value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("environment variable {var} (venue.{key}) is not set")]
    Missing { var: String, key: &'static str },
    #[error("environment variable {var} (venue.{key}) is empty")]
    Empty { var: String, key: &'static str },
    #[error("environment variable {var} (venue.{key}) is not valid UTF-8")]
    NotUnicode { var: String, key: &'static str },
}

/// The API key and secret of one exchange account.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_secret: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
            .finish()
    }
}

impl Credentials {
    /// Reads the variables `venue` names from the process environment.
    pub fn from_env(venue: &VenueConfig) -> Result<Credentials, CredentialsError> {
        Self::from_lookup(venue, |name| std::env::var_os(name))
    }

    /// Reads the variables `venue` names through `lookup` (the environment, or a test's map).
    /// Surrounding whitespace is dropped (a key pasted with its newline); nothing left is
    /// an error, as is a missing variable.
    pub fn from_lookup(
        venue: &VenueConfig,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Credentials, CredentialsError> {
        let read = |var: &str, key: &'static str| {
            let var_s = var.to_string();
            let value = lookup(var).ok_or_else(|| CredentialsError::Missing {
                var: var_s.clone(),
                key,
            })?;
            let value = value
                .into_string()
                .map_err(|_| CredentialsError::NotUnicode {
                    var: var_s.clone(),
                    key,
                })?;
            let trimmed = value.trim();
            if trimmed.is_empty() {
                return Err(CredentialsError::Empty { var: var_s, key });
            }
            Ok(Secret::new(trimmed))
        };
        Ok(Credentials {
            api_key: read(&venue.api_key_env, "api_key_env")?,
            api_secret: read(&venue.api_secret_env, "api_secret_env")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::config::LiveConfig;
    use std::collections::HashMap;
    use std::path::Path;

    const KEY: &str = "tEsTkEy-0123456789";
    const SECRET: &str = "tEsTsEcReT-9876543210-do-not-print";

    fn config() -> LiveConfig {
        LiveConfig::from_text(
            r#"
name = "t"
[venue]
exchange = "bybit"
api_key_env = "T_KEY"
api_secret_env = "T_SECRET"
[positions]
symbols = ["BTCUSDT"]
[trailing]
distance_percent = 1
[store]
db = "t.sqlite"
out = "out"
"#,
            Path::new("live.toml"),
            &[],
        )
        .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_the_named_variables() {
        let c = config();
        let creds = Credentials::from_lookup(
            &c.venue,
            env(&[("T_KEY", KEY), ("T_SECRET", &format!(" {SECRET}\n"))]),
        )
        .unwrap();
        assert_eq!(creds.api_key.expose(), KEY);
        assert_eq!(creds.api_secret.expose(), SECRET);
    }

    #[test]
    fn a_missing_or_empty_variable_is_named_never_echoed() {
        let c = config();
        let e = Credentials::from_lookup(&c.venue, env(&[("T_KEY", KEY)])).unwrap_err();
        assert_eq!(
            e,
            CredentialsError::Missing {
                var: "T_SECRET".into(),
                key: "api_secret_env"
            }
        );
        assert!(e.to_string().contains("T_SECRET"), "{e}");
        assert!(!e.to_string().contains(KEY), "{e}");

        let e = Credentials::from_lookup(&c.venue, env(&[("T_KEY", "  \n"), ("T_SECRET", SECRET)]))
            .unwrap_err();
        assert!(matches!(&e, CredentialsError::Empty { var, .. } if var == "T_KEY"));
        assert_eq!(
            e.to_string(),
            "environment variable T_KEY (venue.api_key_env) is empty"
        );
        assert!(!e.to_string().contains(SECRET), "{e}");

        let e = Credentials::from_lookup(&c.venue, env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("T_KEY"),
            "the key is read first: {e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_non_unicode_variable_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let c = config();
        let e = Credentials::from_lookup(&c.venue, |name| {
            Some(if name == "T_KEY" {
                OsString::from_vec(vec![0xff, 0xfe])
            } else {
                OsString::from(SECRET)
            })
        })
        .unwrap_err();
        assert!(matches!(e, CredentialsError::NotUnicode { ref var, .. } if var == "T_KEY"));
    }

    #[test]
    fn debug_and_display_never_show_the_values() {
        let c = config();
        let creds =
            Credentials::from_lookup(&c.venue, env(&[("T_KEY", KEY), ("T_SECRET", SECRET)]))
                .unwrap();
        let shown = format!(
            "{c:?} {c:#?} {creds:?} {creds:#?} {} {} {:?}",
            creds.api_key, creds.api_secret, creds.api_secret
        );
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(KEY), "{shown}");
        // The test can fail: the values are really there behind `expose`.
        assert!(creds.api_secret.expose().contains(SECRET));
        assert!(shown.contains(Secret::REDACTED));
        // The config names the variables, which is what an operator needs to see.
        assert!(shown.contains("T_SECRET"), "{shown}");
    }
}
