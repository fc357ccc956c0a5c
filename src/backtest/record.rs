//! A closed position as a `trades.csv` row (DESIGN §4), with exact decimal arithmetic.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::engine::{ExitReason, Instrument, Side};
use crate::timefmt::iso_ms;

use crate::engine::{Counters, Event};
use crate::sim::exchange::Close;

/// One simulated position, before its numbers are turned into a `trades.csv` row.
#[derive(Debug, Clone)]
pub struct PositionRun {
    pub id: u64,
    pub side: Side,
    pub opened_at: i64,
    /// Entry price in instrument units.
    pub entry: i64,
    pub close: Close,
    pub counters: Counters,
    pub unprotected_ms: i64,
    pub favourable_units: i64,
    pub adverse_units: i64,
    pub ambiguous_bars: u32,
    pub events: Vec<Event>,
}

pub const TRADES_HEADER: &str = "position_id,side,entry_time,entry_price,exit_time,exit_price,exit_reason,pnl_pct,fees,mfe_pct,mae_pct,stop_updates,updates_held,emergency_updates,unprotected_ms,ambiguous_bars";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradeRow {
    pub position_id: u64,
    pub side: Side,
    pub entry_time: i64,
    pub entry_price: Decimal,
    pub exit_time: i64,
    /// After slippage.
    pub exit_price: Decimal,
    pub exit_reason: ExitReason,
    pub pnl_pct: Decimal,
    pub fees: Decimal,
    pub mfe_pct: Decimal,
    pub mae_pct: Decimal,
    pub stop_updates: u32,
    pub updates_held: u32,
    pub emergency_updates: u32,
    pub unprotected_ms: i64,
    pub ambiguous_bars: u32,
}

fn round8(d: Decimal) -> Decimal {
    let r = d
        .round_dp_with_strategy(8, RoundingStrategy::MidpointNearestEven)
        .normalize();
    // A tiny negative value rounds to a signed zero; write it as plain `0`.
    if r.is_zero() { Decimal::ZERO } else { r }
}

/// Net result in percent of the entry notional, fees `f` on both sides (DESIGN §2.1).
pub fn pnl_pct(side: Side, entry: Decimal, exit: Decimal, fee: Decimal) -> (Decimal, Decimal) {
    let ratio = exit / entry;
    let fees = fee * Decimal::ONE_HUNDRED * (Decimal::ONE + ratio);
    let gross = match side {
        Side::Long => (ratio - Decimal::ONE) * Decimal::ONE_HUNDRED,
        Side::Short => (Decimal::ONE - ratio) * Decimal::ONE_HUNDRED,
    };
    (gross - fees, fees)
}

/// The exit price after slippage: long `fill * (1 - bps/10000)`, short `fill * (1 + bps/10000)`.
pub fn slipped(side: Side, fill: Decimal, bps: Decimal) -> Decimal {
    let s = bps / Decimal::from(10_000);
    match side {
        Side::Long => fill * (Decimal::ONE - s),
        Side::Short => fill * (Decimal::ONE + s),
    }
}

impl TradeRow {
    pub fn from_run(
        run: &PositionRun,
        instrument: &Instrument,
        fee: Decimal,
        slippage_bps: Decimal,
    ) -> TradeRow {
        let entry = instrument.decimal(run.entry);
        let fill = instrument.decimal(run.close.fill);
        let exit = if run.close.reason == ExitReason::EndOfData {
            fill
        } else {
            slipped(run.side, fill, slippage_bps)
        }
        .normalize();
        let (pnl, fees) = pnl_pct(run.side, entry, exit, fee);
        let pct = |units: i64| instrument.decimal(units) / entry * Decimal::ONE_HUNDRED;
        TradeRow {
            position_id: run.id,
            side: run.side,
            entry_time: run.opened_at,
            entry_price: entry,
            exit_time: run.close.ts,
            exit_price: exit,
            exit_reason: run.close.reason,
            pnl_pct: round8(pnl),
            fees: round8(fees),
            mfe_pct: round8(pct(run.favourable_units)),
            mae_pct: round8(pct(run.adverse_units)),
            stop_updates: run.counters.stop_updates,
            updates_held: run.counters.updates_held,
            emergency_updates: run.counters.emergency_updates,
            unprotected_ms: run.unprotected_ms,
            ambiguous_bars: run.ambiguous_bars,
        }
    }

    /// The row as written in `trades.csv`.
    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.position_id,
            self.side.as_str(),
            iso_ms(self.entry_time),
            self.entry_price,
            iso_ms(self.exit_time),
            self.exit_price,
            self.exit_reason.as_str(),
            self.pnl_pct,
            self.fees,
            self.mfe_pct,
            self.mae_pct,
            self.stop_updates,
            self.updates_held,
            self.emergency_updates,
            self.unprotected_ms,
            self.ambiguous_bars
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn pnl_and_fees_follow_the_formula() {
        // Long 100 -> 110, fee 0.0005: gross 10 %, fees 0.05 * (1 + 1.1) = 0.105 %.
        let (pnl, fees) = pnl_pct(Side::Long, dec!(100), dec!(110), dec!(0.0005));
        assert_eq!(fees, dec!(0.105));
        assert_eq!(pnl, dec!(9.895));
        // Short 100 -> 90: gross 10 %, fees 0.05 * 1.9 = 0.095 %.
        let (pnl, fees) = pnl_pct(Side::Short, dec!(100), dec!(90), dec!(0.0005));
        assert_eq!(fees, dec!(0.095));
        assert_eq!(pnl, dec!(9.905));
    }

    #[test]
    fn slippage_moves_against_the_position() {
        assert_eq!(slipped(Side::Long, dec!(100), dec!(1)), dec!(99.99));
        assert_eq!(slipped(Side::Short, dec!(100), dec!(1)), dec!(100.01));
    }

    #[test]
    fn rounding_is_half_even_at_8_decimals() {
        assert_eq!(round8(dec!(0.123456785)), dec!(0.12345678));
        assert_eq!(round8(dec!(0.123456775)), dec!(0.12345678));
        assert_eq!(round8(dec!(0.1234567851)), dec!(0.12345679));
        assert_eq!(round8(dec!(1.50000000)).to_string(), "1.5");
        assert_eq!(round8(dec!(-0.000000001)).to_string(), "0");
    }
}
