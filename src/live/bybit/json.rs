//! Reading Bybit's JSON by field, with errors that name the field (`result.list[1].size`).
//!
//! Bybit sends every number that matters as a string (`"tickSize": "0.10"`), some as JSON
//! numbers (`positionIdx`, `ts`), and marks "none" with `""`. Decimals are read from the text
//! exactly (`rust_decimal`), never through `f64`: a decimal sent as a bare number is an error.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use thiserror::Error;

/// A message or response that cannot be used, and where.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct ParseError {
    /// The field's path in the message (`data[0].stopLoss`), or `json` for the text itself.
    pub field: String,
    pub problem: String,
}

impl ParseError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> ParseError {
        ParseError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Parses `text` as JSON.
pub fn parse_text(text: &str) -> Result<Value, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::new("json", e.to_string()))
}

/// A JSON object and its path, for field-by-field reading.
#[derive(Clone)]
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `value` as an object at `path`.
pub fn object<'a>(value: &'a Value, path: impl Into<String>) -> Result<Obj<'a>, ParseError> {
    let path = path.into();
    match value {
        Value::Object(map) => Ok(Obj { map, path }),
        other => Err(ParseError::new(
            if path.is_empty() {
                "json".to_string()
            } else {
                path
            },
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn err(&self, key: &str, problem: impl Into<String>) -> ParseError {
        ParseError::new(self.field(key), problem)
    }

    /// The raw value, if present and not null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn value(&self, key: &str) -> Result<&'a Value, ParseError> {
        self.get(key).ok_or_else(|| self.err(key, "missing"))
    }

    pub fn str(&self, key: &str) -> Result<&'a str, ParseError> {
        match self.value(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.err(key, format!("expected a string, found {}", kind(other)))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        if self.has(key) {
            self.str(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn bool(&self, key: &str) -> Result<bool, ParseError> {
        match self.value(key)? {
            Value::Bool(b) => Ok(*b),
            other => Err(self.err(key, format!("expected a boolean, found {}", kind(other)))),
        }
    }

    /// An integer sent as a JSON number or as decimal text (`"1676538056258"`).
    pub fn int(&self, key: &str) -> Result<i64, ParseError> {
        match self.value(key)? {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| self.err(key, format!("{n} is not an integer"))),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| self.err(key, format!("\"{s}\" is not an integer"))),
            other => Err(self.err(key, format!("expected an integer, found {}", kind(other)))),
        }
    }

    /// An integer, or `None` when absent or `""`.
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(_) => self.int(key).map(Some),
        }
    }

    /// A decimal sent as text, Bybit's way. A bare JSON number is refused: it would have
    /// passed through `f64` on the way in.
    pub fn dec(&self, key: &str) -> Result<Decimal, ParseError> {
        self.opt_dec(key)?
            .ok_or_else(|| self.err(key, "missing (empty)"))
    }

    /// A decimal, or `None` when absent or `""` (Bybit's "none").
    pub fn opt_dec(&self, key: &str) -> Result<Option<Decimal>, ParseError> {
        let text = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(other) => {
                return Err(self.err(
                    key,
                    format!("expected a decimal string, found {}", kind(other)),
                ));
            }
        };
        if text.is_empty() {
            return Ok(None);
        }
        Decimal::from_str(&text)
            .map(Some)
            .map_err(|_| self.err(key, format!("\"{text}\" is not a decimal number")))
    }

    pub fn obj(&self, key: &str) -> Result<Obj<'a>, ParseError> {
        object(self.value(key)?, self.field(key))
    }

    pub fn array(&self, key: &str) -> Result<&'a Vec<Value>, ParseError> {
        match self.value(key)? {
            Value::Array(a) => Ok(a),
            other => Err(self.err(key, format!("expected an array, found {}", kind(other)))),
        }
    }
}

/// Reads each element of the array `key` of `obj` with `read`, paths `key[i]`.
pub fn each<T>(
    obj: &Obj<'_>,
    key: &str,
    read: impl Fn(Obj<'_>) -> Result<T, ParseError>,
) -> Result<Vec<T>, ParseError> {
    obj.array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| read(object(v, format!("{}[{i}]", obj.field(key)))?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn fields_are_read_exactly_and_errors_name_them() {
        let v = parse_text(
            r#"{"a":"0.10","n":17,"s":"1676538056258","e":"","b":true,"x":{"y":"z"},
                "l":[{"q":"1"},{"q":"oops"}],"f":0.1}"#,
        )
        .unwrap();
        let o = object(&v, "result").unwrap();
        assert_eq!(o.dec("a").unwrap(), dec!(0.10));
        assert_eq!(o.dec("a").unwrap().to_string(), "0.10");
        let e = o.dec("f").unwrap_err();
        assert_eq!(
            e.to_string(),
            "result.f: expected a decimal string, found a number"
        );
        assert_eq!(o.int("n").unwrap(), 17);
        assert_eq!(o.int("s").unwrap(), 1_676_538_056_258);
        assert_eq!(o.opt_dec("e").unwrap(), None);
        assert_eq!(o.opt_int("e").unwrap(), None);
        assert!(o.bool("b").unwrap());
        assert_eq!(o.obj("x").unwrap().str("y").unwrap(), "z");
        assert_eq!(
            o.obj("x").unwrap().str("q").unwrap_err().field,
            "result.x.q"
        );

        let e = o.dec("missing").unwrap_err();
        assert_eq!(e.field, "result.missing");
        let e = o.dec("e").unwrap_err();
        assert_eq!(e.field, "result.e");
        let e = o.int("a").unwrap_err();
        assert!(e.to_string().starts_with("result.a: "), "{e}");
        let e = o.str("n").unwrap_err();
        assert_eq!(e.to_string(), "result.n: expected a string, found a number");
        let e = each(&o, "l", |q| q.dec("q")).unwrap_err();
        assert_eq!(e.field, "result.l[1].q");
        assert!(e.problem.contains("oops"));
        let e = parse_text("{\"a\":").unwrap_err();
        assert_eq!(e.field, "json");
    }
}
