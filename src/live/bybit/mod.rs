//! The Bybit v5 adapter (`EXCHANGES.md` §2, §3). The pure parts take no socket and no clock;
//! the I/O parts (feature `live`) use them.
//!
//! - [`request`]: seam [`Command`](crate::venue::Command)s → exact REST requests
//!   (`/v5/position/trading-stop`, `/v5/order/create`, `/v5/position/list`,
//!   `/v5/market/instruments-info`, `/v5/execution/list`) and stream control messages.
//! - `sign` (feature `live`): the v5 HMAC-SHA256 signature and its headers.
//! - [`response`]: `retCode`/`retMsg` and transport failures → an [`Outcome`](response::Outcome),
//!   and an outcome → what the lifecycle or the adapter must do.
//! - [`snapshot`]: `instruments-info`, `position/list` and `execution/list` results.
//! - [`stream`]: public `tickers` (snapshot + delta) and private `position`/`order`/`execution`
//!   messages.
//! - `rest` (feature `live`): the signed REST client (reqwest), server time and clock offset.
//! - `venue` (feature `live`): the async adapter: seam commands → REST calls, stream
//!   messages → venue events, per managed position.
//! - `ws` (feature `live`): the stream client (tokio-tungstenite): auth, subscribe, ping every
//!   20 s, reconnect with resubscribe.
//!
//! Linear (USDT/USDC) perpetuals only: `category=linear` throughout.

pub mod json;
pub mod request;
pub mod response;
#[cfg(feature = "live")]
pub mod rest;
#[cfg(feature = "live")]
pub mod sign;
pub mod snapshot;
pub mod stream;
#[cfg(feature = "live")]
pub mod venue;
#[cfg(feature = "live")]
pub mod ws;

pub use json::ParseError;

/// The product category of every request: linear perpetuals.
pub const CATEGORY: &str = "linear";

/// Stream paths appended to `venue.ws_url` (`EXCHANGES.md` §2.1).
pub const WS_PUBLIC_LINEAR: &str = "/v5/public/linear";
pub const WS_PRIVATE: &str = "/v5/private";
