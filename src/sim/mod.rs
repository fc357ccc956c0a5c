//! The simulator: price paths from candles, entries, and the simulated exchange (DESIGN §3).

pub mod entries;
pub mod exchange;
pub mod path;
pub mod venue;
