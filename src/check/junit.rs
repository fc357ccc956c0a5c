//! JUnit XML, the report CI systems read: one `<testsuite>`, one `<testcase>` per case (the
//! case's folder as `name`, its parent path as a dotted `classname`), a `<failure>` for a case
//! that differs and an `<error>` for one that cannot run, with the text report's details inside.

use std::fmt::Write as _;
use std::path::Path;

use super::report::details;
use super::{CaseResult, Status};

/// `s` for an attribute value: `&`, `<`, `>`, `"` and `'` escaped, and the control characters
/// XML 1.0 cannot hold dropped.
pub fn escape(s: &str) -> String {
    escape_with(s, true)
}

/// `s` for element text: as [`escape`] but quotes stay as they are (JSON stays readable).
pub fn escape_text(s: &str) -> String {
    escape_with(s, false)
}

fn escape_with(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn names(case: &str) -> (String, String) {
    let p = Path::new(case);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| case.to_string());
    let class: Vec<String> = p
        .parent()
        .map(|d| {
            d.components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let class = if class.is_empty() {
        "check".to_string()
    } else {
        class.join(".")
    };
    (class, name)
}

/// The JUnit document for `results` (cases in report order).
pub fn render(results: &[CaseResult]) -> String {
    let of = |s: Status| results.iter().filter(|r| r.status() == s).count();
    let (failures, errors) = (of(Status::Fail), of(Status::Error));
    let time: f64 = results.iter().map(|r| r.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let counts = format!(
        "tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\"",
        results.len()
    );
    let _ = writeln!(out, "<testsuites name=\"trailstop check\" {counts}>");
    let _ = writeln!(
        out,
        "  <testsuite name=\"trailstop check\" {counts} skipped=\"0\">"
    );
    for r in results {
        let (class, name) = names(&r.name);
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(&class),
            escape(&name),
            r.seconds
        );
        let body = escape_text(&details(r, usize::MAX, ""));
        match (r.status(), &r.outcome) {
            (Status::Error, Err(e)) => {
                let _ = write!(
                    out,
                    ">\n      <error type=\"cannot run\" message=\"{}\">{body}</error>\n    </testcase>\n",
                    escape(e)
                );
            }
            (Status::Fail, Ok(ms)) => {
                let message: Vec<String> = ms
                    .iter()
                    .map(|m| format!("{}: {}", m.file.name(), m.headline))
                    .collect();
                let _ = write!(
                    out,
                    ">\n      <failure type=\"mismatch\" message=\"{}\">{body}</failure>\n    </testcase>\n",
                    escape(&message.join("; "))
                );
            }
            _ if !body.is_empty() => {
                let _ = write!(
                    out,
                    ">\n      <system-out>{body}</system-out>\n    </testcase>\n"
                );
            }
            _ => out.push_str("/>\n"),
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\n"
        );
        assert_eq!(escape_text("{\"a\":\"<\"}"), "{\"a\":\"&lt;\"}");
    }

    #[test]
    fn classname_is_the_dotted_parent() {
        assert_eq!(
            names("scenarios/golden/breakeven"),
            ("scenarios.golden".into(), "breakeven".into())
        );
        assert_eq!(names("breakeven"), ("check".into(), "breakeven".into()));
        assert_eq!(names("/tmp/x/c"), ("tmp.x".into(), "c".into()));
    }
}
