//! When two JSON values from `summary.json` or `events.jsonl` are the same: decimal strings as
//! decimals (`"1.50"` is `"1.5"`), integers exactly, other numbers within a tolerance.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

/// `expected` and `got` are the same value. Strings are equal as text or, when both are
/// decimals, as decimals; two integers must be equal; any other two numbers may differ by at
/// most `tolerance`. Arrays and objects compare element by element (objects: the same keys).
pub fn same(expected: &Value, got: &Value, tolerance: f64) -> bool {
    match (expected, got) {
        (Value::String(x), Value::String(y)) => x == y || same_decimal(x, y),
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
                return a == b;
            }
            if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
                return a == b;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(a), Some(b)) => a == b || (a - b).abs() <= tolerance,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b, tolerance))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| same(a, b, tolerance)))
        }
        _ => expected == got,
    }
}

fn same_decimal(x: &str, y: &str) -> bool {
    matches!((Decimal::from_str(x), Decimal::from_str(y)), (Ok(a), Ok(b)) if a == b)
}

/// A value as the report shows it: strings without quotes, the rest as JSON.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_integers_and_floats() {
        assert!(same(&json!("1.50"), &json!("1.5"), 0.0));
        assert!(
            !same(&json!("1.50"), &json!("1.51"), 0.1),
            "decimal strings are exact"
        );
        assert!(!same(&json!("long"), &json!("short"), 0.0));
        assert!(same(&json!(600), &json!(600), 0.0));
        assert!(!same(&json!(600), &json!(601), 10.0), "integers are exact");
        assert!(same(&json!(-2.1), &json!(-2.1000000001), 1e-8));
        assert!(!same(&json!(-2.1), &json!(-2.1001), 1e-8));
        assert!(same(&json!(2), &json!(2.0), 0.0));
        assert!(same(&json!(null), &json!(null), 0.0));
        assert!(!same(&json!(null), &json!("99"), 0.0));
        assert!(same(&json!({"a": ["1.0"]}), &json!({"a": ["1"]}), 0.0));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2}), 0.0));
    }
}
