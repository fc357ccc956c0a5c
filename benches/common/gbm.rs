//! The seeded synthetic series shared by the benches (no real 500k-candle set exists here).

use rust_decimal::Decimal;
use trailstop::backtest::market::{Market, Series};
use trailstop::engine::Instrument;
use trailstop::sim::path::Bar;

/// xorshift64* uniform in (0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next(), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Seeded GBM candles in units of 0.1 (f64 only generates the data; the run is exact).
pub fn gbm_market(n: usize, seed: u64) -> Market {
    let mut rng = Rng(seed);
    let mut price = 30_000.0f64;
    let sigma = 0.0008; // per-minute volatility, BTC-like
    let mut bars = Vec::with_capacity(n);
    let t0 = 1_640_995_200_000i64;
    for i in 0..n {
        let open = price;
        let mut hi = open;
        let mut lo = open;
        for _ in 0..4 {
            price *= (sigma / 2.0 * rng.normal()).exp();
            hi = hi.max(price);
            lo = lo.min(price);
        }
        let u = |x: f64| (x * 10.0).round() as i64;
        bars.push(Bar {
            ts: t0 + i as i64 * 60_000,
            open: u(open),
            high: u(hi),
            low: u(lo),
            close: u(price),
        });
    }
    Market::new(
        Instrument::with_price_decimals(Decimal::new(1, 1), 1),
        Series::Candles {
            bars,
            delta_ms: 60_000,
        },
        None,
    )
}
