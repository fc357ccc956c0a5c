//! A fake Binance USD-M venue on loopback (`LIVE.md` §7, `EXCHANGES.md` §4): one
//! account's positions and their Algo Order stops, the HMAC and timestamp checks
//! (`-1022`, `-1021`, `-2015`), the algo rules (`-4120` on the old endpoint, `-2021` on the
//! wrong side of the mark, `-4014` off the tick, `-2011`/`-2013` for unknown ids, one
//! `closePosition` stop per direction), the `ALGO_UPDATE` lifecycle with a new order id at
//! the trigger, the reduce-only close, the order counter with its headers (429, then 418),
//! the listenKey (60-minute life, `listenKeyExpired`, `-1125`), the create's
//! `update_latency_ms` in data time, and the injectable faults of `EXCHANGES.md` §4.3.
//!
//! - [`model`]: the exchange (every behaviour a test asserts is decided there).
//! - [`faults`]: the injectable REST faults.
//! - [`server`]: hyper + tungstenite on a socket (REST, `/market` and `/private` streams);
//!   [`FakeBinance`] is the handle tests drive.
//! - [`subscribe`]: a market connection's live `SUBSCRIBE` / `UNSUBSCRIBE` requests.
//!
//! It shares the fake Bybit's HTTP types ([`crate::live::fake_bybit::wire`]) and its replay
//! ([`crate::live::fake_bybit::replay`], through `ReplayVenue`).

pub mod faults;
pub mod model;
pub mod server;
pub mod subscribe;

pub use crate::live::fake_bybit::server::Pace;
pub use crate::live::fake_bybit::{Opening, Replay, Tick, replay};
pub use faults::{Change, Fault, FaultKind, Pick, StreamFault, StreamFaults};
pub use model::{InstrumentSpec, Model, Outgoing, Setup};
pub use server::{FakeBinance, FakeConfig, Stream, StreamCounts, Tap};
