//! A fake Bybit v5 venue on loopback (`LIVE.md` §7, `EXCHANGES.md` §4): it speaks the real
//! protocol — signed REST with the time-window check, the public `tickers` stream and the
//! private `position`/`order`/`execution` streams with auth and ping/pong — holds one
//! account's positions and their Full-mode stop losses, replays a price series as the mark
//! price (candles as the backtester's DESIGN §3 points, or trades), triggers stops on it, opens
//! positions at given times, and injects the faults of `EXCHANGES.md` §4.3.
//!
//! - [`model`]: the exchange, sans I/O (every behaviour a test asserts is decided there).
//! - [`wire`]: the fake's own reading and writing of the wire (independent of the client's).
//! - [`faults`]: the injectable REST and stream faults.
//! - [`replay`]: the market it replays and the positions it opens.
//! - [`server`]: hyper + tungstenite on a socket; [`FakeBybit`] is the handle tests drive.
//!
//! `trailstop fake-bybit` runs it as a user command.

pub mod faults;
pub mod model;
pub mod replay;
pub mod server;
pub mod wire;

pub use faults::{Fault, FaultKind};
pub use model::{InstrumentSpec, Outgoing, Setup};
pub use replay::{Opening, Replay, Tick};
pub use server::{FakeBybit, FakeConfig, Pace, Stream, Tap};
