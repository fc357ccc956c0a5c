//! `summary.json` compared key by key: only the keys the expected file holds (a hand-written
//! subset checks just those; a blessed file holds them all), nested tables by their dotted
//! path; integers exactly, other numbers within the tolerance, decimal strings as decimals.

use std::path::Path;

use serde_json::Value;

use super::case::{CaseError, ExpectedFile};
use super::json::{same, show};
use super::mismatch::Mismatch;

/// Parses an expected `summary.json`: a JSON object (errors name the file, line and column).
pub fn parse(text: &str, path: &Path) -> Result<Value, CaseError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| CaseError::line(path, e.line(), format!("column {}: {e}", e.column())))?;
    if !v.is_object() {
        return Err(CaseError::line(path, 1, "not a JSON object"));
    }
    Ok(v)
}

fn walk(
    expected: &Value,
    got: Option<&Value>,
    path: &str,
    tolerance: f64,
    out: &mut Vec<Vec<String>>,
) {
    match (expected, got) {
        (Value::Object(e), Some(Value::Object(g))) => {
            for (k, v) in e {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(v, g.get(k), &p, tolerance, out);
            }
        }
        (e, Some(g)) if same(e, g, tolerance) => {}
        (e, g) => out.push(vec![
            path.to_string(),
            show(e),
            g.map_or_else(|| "(missing)".to_string(), show),
        ]),
    }
}

/// The expected keys whose values differ from the run's summary; `None` when all agree.
pub fn compare(expected: &Value, got: &Value, tolerance: f64) -> Option<Mismatch> {
    let mut m = Mismatch::new(
        ExpectedFile::Summary,
        String::new(),
        vec!["field", "expected", "got"],
    );
    walk(expected, Some(got), "", tolerance, &mut m.rows);
    if m.rows.is_empty() {
        return None;
    }
    m.headline = match m.rows.len() {
        1 => "1 field differs".to_string(),
        n => format!("{n} fields differ"),
    };
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn got() -> Value {
        json!({
            "venue": "binance", "trades": 4, "total_return_pct": -2.1,
            "exit_reasons": {"trailing_stop": 4, "exit_now": 0},
            "band": {"optimistic": {"total_return_pct": 1.8}, "pessimistic": {"total_return_pct": -4.0}},
            "gaps": null
        })
    }

    #[test]
    fn a_subset_compares_only_its_keys() {
        let e = json!({"trades": 4, "band": {"optimistic": {"total_return_pct": 1.80000000001}}});
        assert!(compare(&e, &got(), 1e-8).is_none());
        assert!(compare(&got(), &got(), 0.0).is_none());
    }

    #[test]
    fn differing_and_missing_keys_by_dotted_path() {
        let e = json!({
            "trades": 5, "venue": "bybit", "unprotected_ms": 0,
            "band": {"pessimistic": {"total_return_pct": -4.1}},
            "exit_reasons": {"exit_now": 0}
        });
        let m = compare(&e, &got(), 1e-8).unwrap();
        assert_eq!(m.headline, "4 fields differ");
        assert_eq!(
            m.rows,
            vec![
                vec!["band.pessimistic.total_return_pct", "-4.1", "-4.0"],
                vec!["trades", "5", "4"],
                vec!["unprotected_ms", "0", "(missing)"],
                vec!["venue", "bybit", "binance"],
            ]
        );
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let e = parse(
            "{\"trades\": 4,\n \"venue\": }",
            Path::new("c/expected/summary.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("c/expected/summary.json:2: column"), "{e}");
        let e = parse("[1]", Path::new("s.json")).unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
    }
}
