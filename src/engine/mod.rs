//! The trailing-stop engine: a pure state machine, one per position (DESIGN §2).
//!
//! No I/O, no clock, no randomness: time arrives as data (`ts`, epoch milliseconds). This is the
//! only place the trailing formulas live; the backtester, the sweep and the live runner call it.
//!
//! ```
//! use rust_decimal_macros::dec;
//! use trailstop::engine::{Event, Instrument, Intent, Position, Side, TrailingConfig, TrailingStop};
//!
//! let position = Position::new(1, "BTCUSDT", Side::Long, dec!(100), 0);
//! let mut config = TrailingConfig::with_distance(dec!(1.0));
//! config.activation_percent = dec!(2.0);
//! let mut events = Vec::new();
//! let (mut stop, intent) =
//!     TrailingStop::open(&position, &Instrument::new(dec!(0.1)), &config, &mut events).unwrap();
//! assert_eq!(intent, None); // not active yet, no initial stop configured
//!
//! // 102 reaches the activation price: active, stop 102 * 0.99 = 100.98 -> 100.9 on the 0.1 grid.
//! let intent = stop.on_price(dec!(102), 60_000, &mut events).unwrap();
//! assert_eq!(stop.desired_stop(), Some(dec!(100.9)));
//! assert!(matches!(intent, Some(Intent::PlaceStop { .. })));
//! assert!(events.iter().any(|e| matches!(e, Event::Activated { .. })));
//! ```

mod config;
mod event;
pub mod fixed;
mod machine;
mod window;

pub use config::{
    Breakeven, ConfigError, Momentum, RateLimit, TimeActivation, TrailingConfig, exact_decimal,
};
pub use event::{ActivationReason, Event, ExitReason, HoldReason, SendReason, StopOrigin};
pub use machine::{
    Counters, EngineError, EngineSnapshot, EventSink, Intent, NoEvents, QuietBounds, State,
    TrailingStop,
};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Long,
    Short,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Long => "long",
            Side::Short => "short",
        }
    }

    /// `+1` for a long, `-1` for a short: the engine works on prices times this sign, so that
    /// "higher is better" for both sides and one code path serves both.
    pub fn sign(self) -> i64 {
        match self {
            Side::Long => 1,
            Side::Short => -1,
        }
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "long" | "buy" => Ok(Side::Long),
            "short" | "sell" => Ok(Side::Short),
            other => Err(format!(
                "\"{}\" is not a side (long or short)",
                crate::echo::echo(other)
            )),
        }
    }
}

/// The position a trailing stop protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub id: u64,
    pub symbol: String,
    pub side: Side,
    pub entry_price: Decimal,
    pub quantity: Decimal,
    /// Epoch milliseconds.
    pub opened_at: i64,
}

impl Position {
    pub fn new(id: u64, symbol: &str, side: Side, entry_price: Decimal, opened_at: i64) -> Self {
        Position {
            id,
            symbol: symbol.to_string(),
            side,
            entry_price,
            quantity: Decimal::ONE,
            opened_at,
        }
    }
}

/// The traded instrument: its tick size and the decimals of the engine's integer price units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    pub tick_size: Decimal,
    /// Prices are held as integer counts of `10^-price_decimals`; every price fed to the engine
    /// must be exact at this precision.
    pub price_decimals: u32,
}

impl Instrument {
    /// An instrument whose prices have at most `max(8, tick decimals)` decimals.
    pub fn new(tick_size: Decimal) -> Self {
        Instrument {
            tick_size,
            price_decimals: tick_size.normalize().scale().max(8),
        }
    }

    pub fn with_price_decimals(tick_size: Decimal, price_decimals: u32) -> Self {
        Instrument {
            tick_size,
            price_decimals,
        }
    }

    /// `price` in integer units, if exact at this instrument's precision.
    pub fn units(&self, price: Decimal) -> Option<i64> {
        fixed::to_units(price, self.price_decimals)
    }

    pub fn decimal(&self, units: i64) -> Decimal {
        fixed::from_units(units, self.price_decimals)
    }
}
