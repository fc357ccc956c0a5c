//! Live trading (`LIVE.md`, issue 11).
//!
//! - [`config`]: `live.toml` (strict like scenarios; per-symbol `[trailing]` overrides).
//! - [`credentials`]: API keys from the environment variables the config names, held as
//!   [`Secret`]s that never print.
//! - [`bybit`]: the Bybit v5 adapter: the pure parts (requests from seam commands, response
//!   classification, REST snapshots and stream messages) and, with feature `live`, the
//!   signing, the REST and stream clients and the async venue adapter.
//! - [`binance`]: the Binance USD-M adapter's pure parts (Algo Order stops: requests,
//!   response classification, REST results, stream messages) and, with feature `live`, the
//!   signing.
//! - `clock` (feature `live`): the injectable local clock.
//! - [`reconcile`]: the decisions of LIVE.md §4 from stored positions and an exchange snapshot.
//! - `runner` (feature `live`): `trailstop live`: the driver on the store, reconciliation at
//!   start, `/status`.
//! - `fake_binance` (feature `live`): the Binance USD-M exchange rules for a fake venue (the
//!   model, sans I/O).
//! - `metrics` (feature `live`): the Prometheus metrics of `LIVE.md` §6, derived from the
//!   journal steps, the REST requests and the runner's book.
//! - `fake_bybit` (feature `live`): a Bybit v5 venue on loopback for tests and
//!   `trailstop fake-bybit`.
//!
//! Everything but the `live` modules needs no crate beyond the backtester's, so it is always
//! built and tested; the feature adds the HMAC and network crates (tokio, reqwest with rustls,
//! tokio-tungstenite, hyper for the fake's server side).

pub mod binance;
pub mod bybit;
#[cfg(feature = "live")]
pub mod clock;
pub mod config;
pub mod credentials;
#[cfg(feature = "live")]
pub mod fake_binance;
#[cfg(feature = "live")]
pub mod fake_bybit;
#[cfg(feature = "live")]
pub mod metrics;
pub mod reconcile;
#[cfg(feature = "live")]
pub mod runner;

pub use config::{Exchange, LiveConfig, LiveConfigError, TriggerPrice};
pub use credentials::{Credentials, CredentialsError, Secret};
