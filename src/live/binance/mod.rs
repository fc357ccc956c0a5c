//! The Binance USD-M futures adapter (`EXCHANGES.md` §0, §1, §3). The pure parts take no
//! socket and no clock; the I/O parts (feature `live`) use them.
//!
//! - [`request`]: seam [`Command`](crate::venue::Command)s → exact REST requests: the stop is
//!   an Algo Order (`/fapi/v1/algoOrder`, `STOP_MARKET`, `closePosition=true`); there is no
//!   amend (the lifecycle cancels, then creates); the close at market is a regular
//!   reduce-only `MARKET` order. Also time, `exchangeInfo`, `positionRisk`, the position
//!   mode, `openAlgoOrders`, the listenKey calls and the stream paths.
//! - `sign` (feature `live`): HMAC-SHA256 over the exact query, `X-MBX-APIKEY`.
//! - `rest` (feature `live`): the signed REST client (reqwest): clock offset and `-1021`
//!   resync, no request to a host that banned us (418), the typed reads.
//! - [`response`]: HTTP status + `{"code","msg"}` → an [`Outcome`](response::Outcome)
//!   (`EXCHANGES.md` §1.8), and an outcome → what the lifecycle or the adapter must do.
//! - [`snapshot`]: the REST results, and how a read-back resolves an ambiguous command or a
//!   cancel that found nothing (`-2011`).
//! - [`stream`]: `markPriceUpdate`/`aggTrade` points; `ALGO_UPDATE`, `ORDER_TRADE_UPDATE`,
//!   `ACCOUNT_UPDATE`, `listenKeyExpired`.
//! - `venue` (feature `live`): the async adapter: seam commands → REST calls (cancel, then
//!   create: the lifecycle's two commands), stream messages → venue events, per position.
//! - `ws` (feature `live`): the stream client (tokio-tungstenite): the market and user
//!   streams, silence as loss, reconnect with backoff; a refused key ends it.
//!
//! JSON is read with the Bybit adapter's field reader ([`crate::live::bybit::json`]): exact
//! decimals from text, errors that name the field.

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
