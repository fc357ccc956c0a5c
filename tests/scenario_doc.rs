//! `docs/scenario.md` against the code: every key the scenario structs accept (read from their
//! own strict-key errors, so a new field cannot hide) is documented, every documented key
//! exists, each default is the code's default and each example is accepted.

use std::collections::BTreeSet;
use std::path::Path;

use rust_decimal::Decimal;
use trailstop::scenario::Scenario;
use trailstop::sweep::spec::SETTINGS;

const PROBE: &str = "zz_probe";

/// The TOML text that puts `PROBE = 0` in the table at `path` (the root when empty).
fn probe_text(path: &[String]) -> String {
    if path.is_empty() {
        format!("{PROBE} = 0\n")
    } else {
        format!("[{}]\n{PROBE} = 0\n", path.join("."))
    }
}

/// The fields serde lists in "unknown field `zz_probe`, expected one of `a`, `b`" (or
/// "expected `a` or `b`", "expected `a`"); `None` when the table at `path` is not a strict struct.
fn fields_at(path: &[String]) -> Option<Vec<String>> {
    let e = toml::from_str::<Scenario>(&probe_text(path))
        .err()?
        .to_string();
    let rest = e
        .split(&format!("unknown field `{PROBE}`, expected "))
        .nth(1)?;
    let list = rest.lines().next().unwrap_or("");
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every leaf key of the scenario, dotted; `[sweep]` (a free table: any numeric key is an
/// axis) is left to its own check.
fn code_keys() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let fields = fields_at(&path).unwrap_or_else(|| panic!("{path:?} is not a strict table"));
        for f in fields {
            let mut p = path.clone();
            p.push(f);
            if p == ["sweep"] {
                continue;
            }
            if fields_at(&p).is_some() {
                todo.push(p);
            } else {
                out.insert(p.join("."));
            }
        }
    }
    out
}

/// One documented key: its dotted name, default cell and example cell.
struct Doc {
    key: String,
    default: String,
    example: String,
}

fn doc_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scenario.md")).unwrap()
}

/// The rows of the page's key tables (`| \`key\` | type | unit | default | example | meaning |`).
fn documented() -> Vec<Doc> {
    doc_text()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            // Split on cell borders, not on `\|` inside a cell.
            let cells: Vec<String> = l
                .replace("\\|", "¦")
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            assert!(cells.len() >= 7, "a row of 6 cells: {l}");
            Doc {
                key: cells[1].trim_matches('`').to_string(),
                default: cells[4].clone(),
                example: cells[5].trim_matches('`').to_string(),
            }
        })
        .collect()
}

/// The first backticked literal of a cell.
fn literal(cell: &str) -> Option<&str> {
    cell.split('`').nth(1)
}

/// A minimal scenario with every optional table given with its required keys.
const FULL: &str = "name = \"doc\"\n[data]\ncandles = \"c.csv\"\ntick_size = \"0.1\"\n\
    [entries]\nevery = \"1h\"\n[trailing]\ndistance_percent = \"0.5\"\n\
    [trailing.breakeven]\ntrigger_percent = \"0.5\"\n\
    [trailing.time_activation]\nafter_seconds = 60\n\
    [trailing.momentum]\nwindow_seconds = 60\nthreshold_percent = \"1\"\ndistance_factor = \"0.5\"\n";

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn get<'a>(t: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.').peekable();
    let mut t = t;
    while let Some(k) = parts.next() {
        let v = t.get(k)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        t = v.as_table()?;
    }
    None
}

fn remove(t: &mut toml::Table, key: &str) {
    let (parents, last) = key.rsplit_once('.').map_or(("", key), |(a, b)| (a, b));
    let mut t = t;
    for k in parents.split('.').filter(|k| !k.is_empty()) {
        t = t.get_mut(k).and_then(|v| v.as_table_mut()).unwrap();
    }
    t.remove(last);
}

fn scenario(t: toml::Table) -> Result<Scenario, String> {
    Scenario::from_table(t, Path::new("doc.toml")).map_err(|e| e.to_string())
}

/// The scenario's value of `key` as serialised, as text (strings without quotes).
fn serialised(s: &Scenario, key: &str) -> Option<String> {
    let t: toml::Table = toml::from_str(&toml::to_string(s).unwrap()).unwrap();
    get(&t, key).map(|v| match v {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

fn same_value(a: &str, b: &str) -> bool {
    match (a.parse::<Decimal>(), b.parse::<Decimal>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[test]
fn every_key_of_the_code_is_documented_and_every_documented_key_exists() {
    let code = code_keys();
    let docs = documented();
    let doc: BTreeSet<String> = docs
        .iter()
        .map(|d| d.key.clone())
        .filter(|k| !k.starts_with("sweep."))
        .collect();
    let missing: Vec<&String> = code.difference(&doc).collect();
    let unknown: Vec<&String> = doc.difference(&code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/scenario.md is out of step with the code: not documented {missing:?}, documented but unknown {unknown:?}"
    );
    assert_eq!(docs.len(), doc.len() + SETTINGS.len(), "each key once");
    let sweep: BTreeSet<&str> = docs
        .iter()
        .filter_map(|d| d.key.strip_prefix("sweep."))
        .collect();
    assert_eq!(sweep, SETTINGS.into_iter().collect::<BTreeSet<_>>());
    // The probe is not vacuous: it finds nested tables and every section.
    assert!(code.contains("trailing.rate_limit.emergency_percent"));
    assert!(code.contains("data.start") && code.contains("intrabar.policy"));
}

#[test]
fn defaults_are_the_codes() {
    for d in documented().iter().filter(|d| !d.key.starts_with("sweep.")) {
        let what = format!("{}: documented default {}", d.key, d.default);
        if d.default.starts_with("required") {
            let mut t = table(FULL);
            remove(&mut t, &d.key);
            let e = scenario(t).expect_err(&what);
            let last = d.key.rsplit('.').next().unwrap();
            assert!(
                e.contains(&format!("missing field `{last}`")),
                "{what}: {e}"
            );
        } else if d.default.starts_with('–') {
            let s = scenario(table(FULL)).unwrap();
            if get(&table(FULL), &d.key).is_none() {
                assert_eq!(serialised(&s, &d.key), None, "{what}");
            }
        } else {
            let want = literal(&d.default).unwrap_or_else(|| panic!("{what}: not a literal"));
            let want = want.trim_matches('"');
            let s = scenario(table(FULL)).unwrap();
            match serialised(&s, &d.key) {
                Some(got) => assert!(same_value(&got, want), "{what}, the code's is {got}"),
                // Flags are written only when set.
                None => assert_eq!(want, "false", "{what}, the code writes none"),
            }
        }
    }
}

#[test]
fn every_example_is_accepted() {
    for d in documented().iter().filter(|d| !d.key.starts_with("sweep.")) {
        let mut t = table(FULL);
        // The keys that go with the example's key.
        let (drop, add): (&[&str], &[&str]) = match d.key.as_str() {
            "data.trades" => (&["data.candles", "data.interval"], &[]),
            "data.detail_bars" => (&[], &["data.detail=\"d.csv\""]),
            "entries.file" | "entries.random" => (&["entries.every"], &[]),
            "entries.seed" => (&["entries.every"], &["entries.random=5"]),
            "exchange.taker_fee_confirmed" => (&[], &["exchange.taker_fee=\"0.02\""]),
            _ => (&[], &[]),
        };
        for k in drop {
            remove(&mut t, k);
        }
        let set = |t: &mut toml::Table, kv: &str| {
            let (path, value) = trailstop::scenario::parse_override(kv).unwrap();
            trailstop::scenario::set_key(t, &path, value).unwrap();
        };
        for kv in add {
            set(&mut t, kv);
        }
        set(&mut t, &format!("{}={}", d.key, d.example));
        let s = scenario(t).unwrap_or_else(|e| panic!("{} = {}: {e}", d.key, d.example));
        let got = serialised(&s, &d.key).unwrap_or_else(|| panic!("{}: not kept", d.key));
        assert!(
            same_value(&got, d.example.trim_matches('"')),
            "{} = {} reads as {got}",
            d.key,
            d.example
        );
    }
}

#[test]
fn the_complete_example_parses() {
    let text = doc_text();
    let block = text
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let s = Scenario::from_text(block, Path::new("example.toml"), &[]).unwrap();
    assert_eq!(s.data.time_range().0, Some(1_670_889_600_000));
    assert!(s.sweep.is_some());
}

#[test]
fn backtest_help_points_to_the_reference() {
    let out = assert_cmd::Command::cargo_bin("trailstop")
        .unwrap()
        .args(["backtest", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("docs/scenario.md"), "{help}");
}
