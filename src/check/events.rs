//! `events.jsonl` compared with the events of the run, in one of two modes (`check.toml`
//! `events`):
//!
//! - `exact` (the default; what `--bless` writes): the same events in the same order, every
//!   field equal (decimal strings as decimals, `ts` and ids exactly). The report shows the first
//!   differing event's fields and its neighbours on both sides, and counts the rest.
//! - `patterns` (hand-written): each line names some fields of an event; the patterns must match
//!   events in file order, other events may come between. A pattern with `"_absent": true` must
//!   match no event at all. The report shows the first failing pattern against the nearest event
//!   of its type, with that event's neighbours.
//!
//! Blank lines and lines starting with `#` are skipped in both.

use std::path::Path;

use serde_json::{Map, Value};

use super::case::{CaseError, ExpectedFile};
use super::json::{same, show};
use super::mismatch::{Mismatch, count};

/// How many events either side of the one shown.
const NEIGHBOURS: usize = 2;
const ABSENT: &str = "_absent";

/// One line of an events file.
#[derive(Debug, Clone)]
pub struct EventLine {
    /// 1-based line in its file.
    pub line: usize,
    pub raw: String,
    pub value: Map<String, Value>,
}

/// Parses JSON lines, each an object; errors name the file, line and column.
pub fn parse(text: &str, path: &Path) -> Result<Vec<EventLine>, CaseError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let raw = l.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| CaseError::line(path, i + 1, format!("column {}: {e}", e.column())))?;
        let Value::Object(value) = value else {
            return Err(CaseError::line(path, i + 1, "not a JSON object"));
        };
        out.push(EventLine {
            line: i + 1,
            raw: raw.to_string(),
            value,
        });
    }
    Ok(out)
}

/// `events[at - NEIGHBOURS ..= at + NEIGHBOURS]` as numbered lines, `at` marked; an `at` past
/// the end shows as "(no event)".
fn neighbours(title: &str, events: &[EventLine], at: usize) -> Vec<String> {
    let mut out = vec![format!("{title}:")];
    let from = at.saturating_sub(NEIGHBOURS);
    for i in from..=at + NEIGHBOURS {
        let mark = if i == at { ">" } else { " " };
        match events.get(i) {
            Some(e) => out.push(format!("  {mark} {:>4}  {}", i + 1, e.raw)),
            None if i == at => out.push(format!("  {mark} {:>4}  (no event)", i + 1)),
            None => break,
        }
    }
    out
}

fn field_rows(
    at: &str,
    expected: &Map<String, Value>,
    got: &Map<String, Value>,
) -> Vec<Vec<String>> {
    let mut keys: Vec<&String> = expected.keys().filter(|k| k.as_str() != ABSENT).collect();
    keys.extend(got.keys().filter(|k| !expected.contains_key(*k)));
    keys.into_iter()
        .filter_map(|k| {
            let (e, g) = (expected.get(k), got.get(k));
            let agree = matches!((e, g), (Some(a), Some(b)) if same(a, b, 0.0));
            (!agree).then(|| {
                let cell = |v: Option<&Value>| v.map_or_else(|| "(none)".to_string(), show);
                vec![at.to_string(), k.clone(), cell(e), cell(g)]
            })
        })
        .collect()
}

/// The whole list, event by event.
pub fn compare_exact(expected: &[EventLine], got: &[EventLine]) -> Option<Mismatch> {
    let n = expected.len().max(got.len());
    let differing: Vec<usize> = (0..n)
        .filter(|&i| match (expected.get(i), got.get(i)) {
            (Some(e), Some(g)) => !same(
                &Value::Object(e.value.clone()),
                &Value::Object(g.value.clone()),
                0.0,
            ),
            _ => true,
        })
        .collect();
    let &first = differing.first()?;
    let mut m = Mismatch::new(
        ExpectedFile::Events,
        format!(
            "{} of {} differ (expected {}, got {}); the first is event {}",
            differing.len(),
            count(n, "event"),
            expected.len(),
            got.len(),
            first + 1
        ),
        vec!["event", "field", "expected", "got"],
    );
    let at = (first + 1).to_string();
    m.rows = match (expected.get(first), got.get(first)) {
        (Some(e), Some(g)) => field_rows(&at, &e.value, &g.value),
        (Some(e), None) => vec![vec![at, "(event)".into(), e.raw.clone(), "(none)".into()]],
        (None, Some(g)) => vec![vec![at, "(event)".into(), "(none)".into(), g.raw.clone()]],
        (None, None) => unreachable!("first < n"),
    };
    if differing.len() > 1 {
        m.rest = Some(format!(
            "and {} after it",
            count(differing.len() - 1, "more differing event")
        ));
    }
    m.context = neighbours("expected", expected, first);
    m.context.extend(neighbours("got", got, first));
    Some(m)
}

fn matches(pattern: &Map<String, Value>, event: &Map<String, Value>) -> bool {
    pattern
        .iter()
        .filter(|(k, _)| k.as_str() != ABSENT)
        .all(|(k, v)| event.get(k).is_some_and(|a| same(v, a, 0.0)))
}

struct Failure {
    headline: String,
    rows: Vec<Vec<String>>,
    context: Vec<String>,
    line: usize,
}

/// The patterns, in order (see the module text).
pub fn compare_patterns(patterns: &[EventLine], got: &[EventLine]) -> Option<Mismatch> {
    let mut failures: Vec<Failure> = Vec::new();
    let mut next = 0usize;
    // The line of the last pattern that matched, and the event it matched.
    let mut previous: Option<usize> = None;
    for p in patterns {
        let at = format!("line {}", p.line);
        if p.value.get(ABSENT) == Some(&Value::Bool(true)) {
            if let Some(k) = got.iter().position(|e| matches(&p.value, &e.value)) {
                failures.push(Failure {
                    headline: format!(
                        "the pattern on line {} must match no event, but event {} matches it",
                        p.line,
                        k + 1
                    ),
                    rows: vec![vec![
                        at,
                        ABSENT.into(),
                        "no such event".into(),
                        format!("event {}", k + 1),
                    ]],
                    context: neighbours("got", got, k),
                    line: p.line,
                });
            }
            continue;
        }
        if let Some(k) = got[next..].iter().position(|e| matches(&p.value, &e.value)) {
            next += k + 1;
            previous = Some(p.line);
            continue;
        }
        // The nearest event it may have meant: the next one of its type (and position).
        let same_kind = |e: &&EventLine| {
            ["type", "position_id"]
                .iter()
                .all(|k| p.value.get(*k).is_none_or(|v| e.value.get(*k) == Some(v)))
        };
        let nearest = got
            .iter()
            .enumerate()
            .skip(next)
            .find(|(_, e)| same_kind(e));
        let earlier = got[..next].iter().position(|e| matches(&p.value, &e.value));
        let mut headline = match previous {
            None => format!("the pattern on line {} matches no event", p.line),
            Some(l) => format!(
                "the pattern on line {} matches no event after event {next} (line {l}'s)",
                p.line
            ),
        };
        if let Some(j) = earlier {
            headline.push_str(&format!(
                "; event {} matches it, but comes before that",
                j + 1
            ));
        }
        let (rows, context) = match nearest {
            Some((i, e)) => {
                headline.push_str(&format!("; the nearest of its type is event {}", i + 1));
                (
                    field_rows(&at, &p.value, &e.value)
                        .into_iter()
                        .filter(|r| p.value.contains_key(&r[1]))
                        .collect(),
                    neighbours("got", got, i),
                )
            }
            None => (
                vec![vec![
                    at,
                    "(event)".into(),
                    p.raw.clone(),
                    "(none of its type)".into(),
                ]],
                neighbours("got", got, next),
            ),
        };
        failures.push(Failure {
            headline,
            rows,
            context,
            line: p.line,
        });
    }
    let first = failures.first()?;
    let mut m = Mismatch::new(
        ExpectedFile::Events,
        format!(
            "{} of {} fail; {}",
            failures.len(),
            count(patterns.len(), "pattern"),
            first.headline
        ),
        vec!["pattern", "field", "expected", "got"],
    );
    m.rows = first.rows.clone();
    m.context = first.context.clone();
    if failures.len() > 1 {
        let lines: Vec<String> = failures[1..].iter().map(|f| f.line.to_string()).collect();
        m.rest = Some(format!(
            "and {} ({} {})",
            count(failures.len() - 1, "more failing pattern"),
            if lines.len() == 1 { "line" } else { "lines" },
            lines.join(", ")
        ));
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOT: &str = r#"{"position_id":1,"type":"Created","ts":0,"side":"long","entry_price":"100","activation_price":"100"}
{"position_id":1,"type":"Activated","ts":0,"price":"100","reason":"price"}
{"position_id":1,"type":"UpdateSent","ts":0,"price":"100","stop":"99","previous":null,"reason":"initial"}
{"position_id":1,"type":"UpdateSent","ts":20000,"price":"101","stop":"99.9","previous":"99","reason":"normal"}
{"position_id":1,"type":"UpdateSent","ts":40000,"price":"102","stop":"100.9","previous":"99.9","reason":"normal"}
{"position_id":1,"type":"Triggered","ts":60000,"fill_price":"100.9","reason":"trailing_stop"}
"#;

    fn events(text: &str) -> Vec<EventLine> {
        parse(text, Path::new("c/expected/events.jsonl")).unwrap()
    }

    #[test]
    fn exact_equal_lists_agree_decimals_as_decimals() {
        let written = GOT
            .replace("\"99.90\"", "\"99.9\"")
            .replace("\"stop\":\"99\"", "\"stop\":\"99.0\"");
        assert!(compare_exact(&events(&written), &events(GOT)).is_none());
    }

    #[test]
    fn exact_shows_the_first_differing_event_with_neighbours() {
        let wrong = GOT
            .replace("\"stop\":\"99.9\"", "\"stop\":\"99.8\"")
            .replace("\"fill_price\":\"100.9\"", "\"fill_price\":\"101\"");
        let m = compare_exact(&events(&wrong), &events(GOT)).unwrap();
        assert_eq!(
            m.headline,
            "2 of 6 events differ (expected 6, got 6); the first is event 4"
        );
        assert_eq!(m.rows, vec![vec!["4", "stop", "99.8", "99.9"]]);
        assert_eq!(
            m.rest.as_deref(),
            Some("and 1 more differing event after it")
        );
        let ctx = m.context.join("\n");
        assert!(ctx.starts_with("expected:\n       2  "), "{ctx}");
        assert!(ctx.contains("  >    4  {\"position_id\":1,\"type\":\"UpdateSent\",\"ts\":20000,\"price\":\"101\",\"stop\":\"99.8\""), "{ctx}");
        assert!(ctx.contains("\ngot:\n       2  "), "{ctx}");
        assert!(
            ctx.contains("       6  {\"position_id\":1,\"type\":\"Triggered\""),
            "{ctx}"
        );
    }

    #[test]
    fn exact_a_missing_event_is_shown() {
        let got = events(GOT);
        let short: Vec<EventLine> = got[..5].to_vec();
        let m = compare_exact(&short, &got).unwrap();
        assert_eq!(m.rows[0][..3], ["6", "(event)", "(none)"]);
        assert!(
            m.context.iter().any(|l| l.contains(">    6  (no event)")),
            "{:?}",
            m.context
        );
    }

    #[test]
    fn patterns_in_order_with_absent() {
        let got = events(GOT);
        let ok = events(
            r#"{"type":"UpdateSent","reason":"initial","stop":"99"}
# a comment
{"type":"UpdateSent","stop":"100.90"}
{"type":"Triggered","reason":"trailing_stop"}
{"type":"UpdateHeld","_absent":true}"#,
        );
        assert!(compare_patterns(&ok, &got).is_none());
        let bad = events(
            r#"{"type":"UpdateSent","stop":"100.9"}
{"type":"UpdateSent","stop":"99.9"}
{"type":"Triggered","fill_price":"100.8"}
{"type":"Activated","_absent":true}"#,
        );
        let m = compare_patterns(&bad, &got).unwrap();
        assert_eq!(
            m.headline,
            "3 of 4 patterns fail; the pattern on line 2 matches no event after event 5 \
             (line 1's); event 4 matches it, but comes before that"
        );
        assert_eq!(
            m.rest.as_deref(),
            Some("and 2 more failing patterns (lines 3, 4)")
        );
        // No UpdateSent after event 5: the nearest is none.
        assert_eq!(m.rows[0][1], "(event)");
        let third = events(r#"{"type":"Triggered","fill_price":"100.8"}"#);
        let m = compare_patterns(&third, &got).unwrap();
        assert_eq!(m.rows, vec![vec!["line 1", "fill_price", "100.8", "100.9"]]);
        assert!(
            m.context.iter().any(|l| l.starts_with("  >    6  ")),
            "{:?}",
            m.context
        );
        let absent = events(r#"{"type":"Activated","_absent":true}"#);
        let m = compare_patterns(&absent, &got).unwrap();
        assert_eq!(
            m.rows,
            vec![vec!["line 1", "_absent", "no such event", "event 2"]]
        );
    }

    #[test]
    fn malformed_lines_are_named() {
        let e = parse("{\"type\":\"Created\"}\n{\"type\":", Path::new("c/e.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c/e.jsonl:2: column"), "{e}");
        let e = parse("[]", Path::new("c/e.jsonl")).unwrap_err().to_string();
        assert!(e.contains("c/e.jsonl:1: not a JSON object"), "{e}");
    }
}
