//! trailstop: an exact trailing-stop engine for crypto futures and the deterministic
//! backtester around it. See `DESIGN.md` semantics in the README.

pub mod backtest;
pub mod check;
pub mod cli;
pub mod data;
pub mod diagnose;
pub mod echo;
pub mod engine;
pub mod live;
pub mod paper;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sim;
pub mod store;
pub mod sweep;
pub mod timefmt;
pub mod venue;
