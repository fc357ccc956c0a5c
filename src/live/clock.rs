//! The local clock, injectable (`LIVE.md` §2): used only for timestamps of signed requests,
//! timeouts, keepalives and the clock-offset estimate — never for a trading decision, which
//! runs on the exchange's event times.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as this process sees them.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// A clock a test sets by hand; clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Arc::new(move || t.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_system_clock_is_recent() {
        let m = ManualClock::new(5);
        let c = m.clock();
        assert_eq!(c(), 5);
        m.set(1_700_000_000_000);
        assert_eq!(c(), 1_700_000_000_000);
        // After 2023-11-14 and before 2100: the system clock reads epoch milliseconds.
        let now = system_clock()();
        assert!(now > 1_700_000_000_000 && now < 4_102_444_800_000, "{now}");
    }
}
