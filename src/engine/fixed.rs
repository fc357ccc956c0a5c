//! Exact fixed-point arithmetic for the engine's hot path.
//!
//! Prices live as `i64` counts of `10^-decimals` (the instrument's price units). Percentages
//! become exact rationals, so every formula of DESIGN §2 is evaluated without rounding until the
//! one deliberate rounding to the tick grid. Decimal only appears at the API boundary.

use rust_decimal::Decimal;

/// Largest number of decimals a percentage or factor may carry (keeps products inside `i128`).
pub const MAX_PCT_DECIMALS: u32 = 8;
/// Largest number of price decimals the engine accepts.
pub const MAX_PRICE_DECIMALS: u32 = 12;
/// Prices (in units) must stay below this so products with ratios fit in `i128`.
pub const MAX_UNITS: i64 = 1_000_000_000_000_000_000; // 1e18

pub(crate) fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

/// `d` as an integer count of `10^-decimals`, or `None` when `d` has finer digits or is too big.
pub fn to_units(d: Decimal, decimals: u32) -> Option<i64> {
    let scale = d.scale();
    let mantissa = d.mantissa();
    let units = if scale <= decimals {
        mantissa.checked_mul(pow10(decimals - scale))?
    } else {
        let div = pow10(scale - decimals);
        if mantissa % div != 0 {
            return None;
        }
        mantissa / div
    };
    let units = i64::try_from(units).ok()?;
    (units.abs() < MAX_UNITS).then_some(units)
}

/// The exact decimal for `units` (trailing zeros removed).
pub fn from_units(units: i64, decimals: u32) -> Decimal {
    Decimal::from_i128_with_scale(units as i128, decimals).normalize()
}

/// An exact positive rational `num / den`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ratio {
    pub num: i128,
    pub den: i128,
}

impl Ratio {
    /// `pct` percent as a ratio (`0.5` → `5/1000`), exact.
    pub fn percent(pct: Decimal) -> Ratio {
        // Trailing zeros ("0.50000000000") pass validation but would inflate the denominator
        // past what the i128 products allow.
        let pct = pct.normalize();
        let den = pow10(pct.scale()) * 100;
        Ratio {
            num: pct.mantissa(),
            den,
        }
    }

    /// `1 + sign * pct/100`.
    pub fn one_plus(pct: Decimal, sign: i128) -> Ratio {
        let p = Ratio::percent(pct);
        Ratio {
            num: p.den + sign * p.num,
            den: p.den,
        }
    }

    /// `1 + sign * (pct/100) * factor`.
    pub fn one_plus_scaled(pct: Decimal, factor: Decimal, sign: i128) -> Ratio {
        let p = Ratio::percent(pct);
        let factor = factor.normalize();
        let fden = pow10(factor.scale());
        Ratio {
            num: p.den * fden + sign * p.num * factor.mantissa(),
            den: p.den * fden,
        }
    }

    /// `floor(x * self / tick) * tick`: the product rounded down onto the tick grid.
    #[inline]
    pub fn floor_to_tick(self, x: i64, tick: i64) -> i64 {
        let q = (x as i128 * self.num).div_euclid(self.den * tick as i128);
        (q * tick as i128) as i64
    }

    /// `ceil(x * self)`: the smallest integer unit at or above the exact product.
    pub fn ceil_mul(self, x: i64) -> i64 {
        -((-(x as i128) * self.num).div_euclid(self.den)) as i64
    }

    /// `a >= b * self` exactly (for `b >= 0`).
    #[inline]
    pub fn scaled_le(self, b: i64, a: i64) -> bool {
        a as i128 * self.den >= b as i128 * self.num
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn units_round_trip_exactly() {
        assert_eq!(to_units(dec!(17212.12), 2), Some(1_721_212));
        assert_eq!(to_units(dec!(17212.1200), 2), Some(1_721_212));
        assert_eq!(to_units(dec!(17212.125), 2), None);
        assert_eq!(to_units(dec!(-0.5), 3), Some(-500));
        assert_eq!(from_units(1_721_210, 2), dec!(17212.1));
        assert_eq!(from_units(1_721_210, 2).to_string(), "17212.1");
    }

    #[test]
    fn ratios_are_exact() {
        let r = Ratio::one_plus(dec!(0.5), -1);
        assert_eq!((r.num, r.den), (995, 1000));
        // 100.0 * 0.995 = 99.5 exactly; on a 0.1 grid (units of 0.01) stays 99.5.
        assert_eq!(r.floor_to_tick(10_000, 10), 9_950);
        // 100.07 * 0.995 = 99.56965 -> down to 99.5 on a 0.1 grid.
        assert_eq!(r.floor_to_tick(10_007, 10), 9_950);
        // Mirrored (negated) prices floor away from zero: -(100.07 * 1.005) = -100.57035 -> -100.6.
        let s = Ratio::one_plus(dec!(0.5), 1);
        assert_eq!(s.floor_to_tick(-10_007, 10), -10_060);
        assert_eq!(Ratio::one_plus(dec!(1), 1).ceil_mul(333), 337); // 336.33 -> 337
        let f = Ratio::one_plus_scaled(dec!(2), dec!(0.5), -1);
        assert_eq!(f.floor_to_tick(10_000, 1), 9_900);
    }
}
