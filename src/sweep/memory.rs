//! A sweep's memory, estimated before it runs: a grid whose results cannot fit is refused with
//! a clear message instead of aborting hours later on a failed allocation.
//!
//! The rows stream through disk ([`super::stream`]): memory holds one chunk of full rows and,
//! for every finished combination, the few numbers the whole-grid results need (its number,
//! objective, walk-forward cells, and at the end its plateau).

use super::SweepError;
use super::exec::FoldCells;
use super::robust::Plateau;
use super::stream::{CHUNK, Cell};

/// Bytes each finished combination costs: its number in the list to run, its [`Cell`] (twice,
/// for the growth of the list that holds them), its plateau, and its walk-forward cells.
pub fn bytes_per_cell(folds: usize) -> u64 {
    let cell = std::mem::size_of::<Cell>() as u64;
    let plateau = std::mem::size_of::<Plateau>() as u64;
    let fold = std::mem::size_of::<FoldCells>() as u64;
    8 + 2 * cell + plateau + folds as u64 * 2 * fold
}

/// Memory the results of `cells` combinations need: the process and its data (64 MiB), one
/// chunk of full rows with its table columns and CSV text (~1 KiB a row), and the cells.
pub fn estimate(cells: u64, folds: usize) -> u64 {
    const BASE: u64 = 64 << 20;
    let chunk = CHUNK as u64 * (1024 + folds as u64 * 128);
    (BASE + chunk).saturating_add(cells.saturating_mul(bytes_per_cell(folds)))
}

/// Memory this process may still use: `TRAILSTOP_MEMORY_LIMIT` (bytes, or with a K/M/G suffix)
/// when set, else the smaller of the system's available memory and the cgroup's remaining
/// limit. `None` where neither can be read.
pub fn available() -> Result<Option<u64>, SweepError> {
    if let Ok(value) = std::env::var("TRAILSTOP_MEMORY_LIMIT") {
        return parse_size(&value)
            .map(Some)
            .ok_or(SweepError::MemoryLimit { value });
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    // `memory.max` is `max` when unlimited, which does not parse: no cgroup bound.
    let cgroup =
        read("memory.max").map(|max| max.saturating_sub(read("memory.current").unwrap_or(0)));
    Ok(match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        (i, 't' | 'T') => (&v[..i], 1 << 40),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// `1.5 GB`-style text (powers of 1024).
pub fn human(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// Refuses `cells` combinations whose results need more than `available` bytes.
pub fn check(cells: u64, folds: usize, available: Option<u64>) -> Result<(), SweepError> {
    let needed = estimate(cells, folds);
    match available {
        Some(free) if needed > free => Err(SweepError::TooBig {
            cells,
            needed,
            per_cell: bytes_per_cell(folds),
            available: free,
        }),
        _ => Ok(()),
    }
}

/// The text of [`SweepError::TooBig`].
pub fn refusal(cells: u64, needed: u64, per_cell: u64, available: u64) -> String {
    format!(
        "{cells} combinations need about {} of memory for their results ({per_cell} bytes \
         each), more than the {} available: use a coarser grid, a random subset (--samples N), \
         or shards (--shard K/N, each holds only its own rows; merge them where the memory is)",
        human(needed),
        human(available)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_that_does_not_fit_is_refused_and_one_that_fits_passes() {
        let gib = 1u64 << 30;
        // 40 M cells: about 4 GiB of cells.
        assert!(estimate(40_000_000, 0) > 4 * gib);
        let e = check(40_000_000, 0, Some(4 * gib)).unwrap_err().to_string();
        assert!(
            e.starts_with("sweep: 40000000 combinations need about "),
            "{e}"
        );
        assert!(e.contains("more than the 4.0 GiB available"), "{e}");
        assert!(
            e.contains("--samples N") && e.contains("--shard K/N"),
            "{e}"
        );
        check(40_000_000, 0, Some(20 * gib)).unwrap();
        check(40_000_000, 0, None).unwrap();
        // 1 M cells: a quarter of a GiB, at least the peak measured (186 MB for a 1,000 x 1,000
        // grid without walk-forward, `scripts/bench-sweep-memory`).
        assert!(
            estimate(1_000_000, 0) < gib / 4,
            "{}",
            estimate(1_000_000, 0)
        );
        assert!(estimate(1_000_000, 0) > 186_000_000);
        // Walk-forward folds cost more per cell.
        assert!(bytes_per_cell(5) > bytes_per_cell(0));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(5 << 20), "5 MiB");
    }
}
