//! A test hook (feature `live` only): `TRAILSTOP_CRASH_AT=<point>[:<nth>]` aborts the process
//! (`std::process::abort`, as abrupt as a SIGKILL: no destructor, no flush, no shutdown) the
//! `nth` time (default 1) the runner reaches `point`, so a test can restart it from exactly
//! that journal state:
//!
//! - `placing`: a new stop's step committed, its request not sent;
//! - `amending`: a move's step committed, its request not sent;
//! - `acked`: the venue's answer received, not committed;
//! - `committed`: the answer committed, before the next step.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the runner can be crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Placing,
    Amending,
    Acked,
    Committed,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Placing => "placing",
            Point::Amending => "amending",
            Point::Acked => "acked",
            Point::Committed => "committed",
        }
    }
}

/// `<point>[:<nth>]`; `None` when unset or not understood (the hook is then off).
pub fn parse(text: &str) -> Option<(Point, u32)> {
    let (name, nth) = match text.trim().split_once(':') {
        Some((n, k)) => (n, k.parse().ok().filter(|&k| k > 0)?),
        None => (text.trim(), 1),
    };
    let point = [
        Point::Placing,
        Point::Amending,
        Point::Acked,
        Point::Committed,
    ]
    .into_iter()
    .find(|p| p.name() == name)?;
    Some((point, nth))
}

static HOOK: OnceLock<Option<(Point, u32)>> = OnceLock::new();
static REACHED: AtomicU32 = AtomicU32::new(0);

/// The runner reached `point`: aborts there if the hook says so.
pub fn reached(point: Point) {
    let hook = HOOK.get_or_init(|| {
        std::env::var("TRAILSTOP_CRASH_AT")
            .ok()
            .and_then(|v| parse(&v))
    });
    if let Some((p, nth)) = *hook
        && p == point
        && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == nth
    {
        eprintln!("TRAILSTOP_CRASH_AT: aborting at {} ({nth})", point.name());
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_counts_parse() {
        assert_eq!(parse("placing"), Some((Point::Placing, 1)));
        assert_eq!(parse("amending:3"), Some((Point::Amending, 3)));
        assert_eq!(parse(" acked:2 "), Some((Point::Acked, 2)));
        assert_eq!(parse("committed"), Some((Point::Committed, 1)));
        assert_eq!(parse("committed:0"), None);
        assert_eq!(parse("sending"), None);
        assert_eq!(parse("amending:x"), None);
    }
}
