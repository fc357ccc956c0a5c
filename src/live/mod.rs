//! Live trading (`LIVE.md`, issue 11): the pure, sans-I/O parts so far.
//!
//! - [`config`]: `live.toml` (strict like scenarios; per-symbol `[trailing]` overrides).
//! - [`credentials`]: API keys from the environment variables the config names, held as
//!   [`Secret`]s that never print.
//! - [`bybit`]: the Bybit v5 adapter's pure parts: requests from seam commands, signing
//!   (feature `live`), response classification, REST snapshots and stream messages.
//!
//! Everything here but the signing needs no crate beyond the backtester's, so it is always
//! built and tested; the feature `live` adds the HMAC crates now and the network crates
//! (tokio, reqwest, tokio-tungstenite, the metrics exporter) when the adapters get their I/O.

pub mod bybit;
#[cfg(feature = "live")]
pub mod clock;
pub mod config;
pub mod credentials;
#[cfg(feature = "live")]
pub mod fake_bybit;

pub use config::{Exchange, LiveConfig, LiveConfigError, TriggerPrice};
pub use credentials::{Credentials, CredentialsError, Secret};
