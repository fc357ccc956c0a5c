//! What to sweep: the scenario's `[sweep]` table and the command line, combined.

use super::grid::{self, Axis, Grid};
use super::metrics::Objective;

/// Keys of `[sweep]` that are settings, not axes.
pub const SETTINGS: [&str; 4] = ["objective", "samples", "seed", "walk_forward"];

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub grid: Grid,
    pub objective: Objective,
    /// Seeded random search: this many distinct grid combinations instead of all.
    pub samples: Option<u64>,
    pub seed: u64,
    pub walk_forward: Option<u32>,
}

/// Command-line parts of a sweep; each, when given, wins over `[sweep]`.
#[derive(Debug, Clone, Default)]
pub struct CliSpec {
    pub grid: Vec<String>,
    pub objective: Option<String>,
    pub samples: Option<u64>,
    pub seed: Option<u64>,
    pub walk_forward: Option<u32>,
}

fn int(table: &toml::Table, key: &str) -> Result<Option<u64>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
        Some(other) => Err(format!(
            "sweep.{key}: expected a whole number >= 0, found {other}"
        )),
    }
}

impl Spec {
    /// `--grid` axes replace `[sweep]` axes of the same key and add the others.
    pub fn build(table: Option<&toml::Table>, cli: &CliSpec) -> Result<Spec, String> {
        let empty = toml::Table::new();
        let table = table.unwrap_or(&empty);
        let mut axes: Vec<Axis> = Vec::new();
        for (k, v) in table {
            if SETTINGS.contains(&k.as_str()) {
                continue;
            }
            axes.push(grid::parse_toml(k, v)?);
        }
        for g in &cli.grid {
            let a = grid::parse_cli(g)?;
            axes.retain(|b| b.key != a.key);
            axes.push(a);
        }
        if axes.is_empty() {
            return Err(
                "nothing to sweep: add a [sweep] table to the scenario or give --grid key=from:to:step"
                    .into(),
            );
        }
        let objective = match (&cli.objective, table.get("objective")) {
            (Some(o), _) => o.parse()?,
            (None, Some(toml::Value::String(o))) => {
                o.parse().map_err(|e| format!("sweep.objective: {e}"))?
            }
            (None, Some(other)) => {
                return Err(format!("sweep.objective: expected a name, found {other}"));
            }
            (None, None) => Objective::TotalReturnPct,
        };
        let samples = match cli.samples {
            Some(n) => Some(n),
            None => int(table, "samples")?,
        };
        if samples == Some(0) {
            return Err("samples: must be at least 1".into());
        }
        let seed = match cli.seed {
            Some(s) => s,
            None => int(table, "seed")?.unwrap_or(0),
        };
        let walk_forward = match cli.walk_forward {
            Some(k) => Some(k),
            None => int(table, "walk_forward")?
                .map(|k| u32::try_from(k).map_err(|_| "sweep.walk_forward: too large".to_string()))
                .transpose()?,
        };
        if let Some(k) = walk_forward
            && !(1..=100).contains(&k)
        {
            return Err(format!("walk-forward {k}: give 1 to 100 test folds"));
        }
        Ok(Spec {
            grid: Grid::new(axes)?,
            objective,
            samples,
            seed,
            walk_forward,
        })
    }

    /// The combinations to run: all, or the seeded sample, ascending.
    pub fn combos(&self) -> Result<Vec<u64>, String> {
        let size = self.grid.size()?;
        Ok(match self.samples {
            Some(n) => grid::sample(size, n, self.seed),
            None => {
                if size > 50_000_000 {
                    return Err(format!(
                        "the grid has {size} combinations: use --samples N for a random subset"
                    ));
                }
                (0..size).collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_command_line_combine() {
        let t: toml::Table = toml::from_str(
            r#"
activation_percent = { from = "0.0", to = "1.0", step = "0.5" }
distance_percent = ["0.2", "0.4"]
objective = "sharpe"
walk_forward = 2
"#,
        )
        .unwrap();
        let s = Spec::build(Some(&t), &CliSpec::default()).unwrap();
        assert_eq!(s.grid.size().unwrap(), 6);
        assert_eq!(s.objective, Objective::Sharpe);
        assert_eq!(s.walk_forward, Some(2));
        let cli = CliSpec {
            grid: vec!["distance_percent=1,2,3".into()],
            objective: Some("win_rate".into()),
            ..CliSpec::default()
        };
        let s = Spec::build(Some(&t), &cli).unwrap();
        assert_eq!(s.grid.size().unwrap(), 9);
        assert_eq!(s.objective, Objective::WinRate);
        let e = Spec::build(None, &CliSpec::default()).unwrap_err();
        assert!(e.contains("nothing to sweep"), "{e}");
        let bad: toml::Table = toml::from_str("objective = \"profit\"\nx = [1]").unwrap();
        let e = Spec::build(Some(&bad), &CliSpec::default()).unwrap_err();
        assert!(e.contains("sweep.objective"), "{e}");
    }
}
