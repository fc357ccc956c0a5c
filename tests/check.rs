//! `trailstop check` end to end on the fixtures in `tests/fixtures/check/` (see its README):
//! the tables a failing case prints, exit codes 0/1/2, `--bless`, `--filter`, `--junit`.

mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;

use cli_support::{copy_dir, root, run_code, trailstop};

const FIXTURES: &str = "tests/fixtures/check";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A temporary folder holding a copy of the fixture `name` (e.g. `planted/wrong_trade`) under
/// `cases/<last part of name>`; the command runs from the temporary folder.
fn copy_of(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let leaf = Path::new(name).file_name().unwrap();
    let dir = tmp.path().join("cases").join(leaf);
    copy_dir(&root().join(FIXTURES).join(name), &dir);
    (tmp, dir)
}

fn check_in(tmp: &tempfile::TempDir) -> assert_cmd::Command {
    let mut cmd = trailstop();
    cmd.current_dir(tmp.path()).args(["check", "cases"]);
    cmd
}

#[test]
fn passing_cases_exit_0_in_path_order() {
    let (stdout, _) = run_code(trailstop().args(["check", "tests/fixtures/check/pass"]), 0);
    assert_eq!(
        stdout,
        "ok      tests/fixtures/check/pass/ratchet\n\
         ok      tests/fixtures/check/pass/trace_ticks\n\
         \n2 cases: 2 passed, 0 failed, 0 could not run\n"
    );
}

#[test]
fn planted_wrong_expectations_show_the_tables() {
    let (stdout, _) = run_code(
        trailstop().args(["check", "tests/fixtures/check/planted"]),
        1,
    );
    let trades = "\
FAIL    tests/fixtures/check/planted/wrong_trade
      trades.csv: 3 differences in 1 of 1 position (expected 1 trade, got 1 trade)
        position  field        expected                  got
        1         exit_time    2024-01-01T00:03:00.000Z  2024-01-01T00:03:20.000Z
        1         exit_reason  initial_stop              trailing_stop
        1         fees         0.00000002                0
      summary.json: 2 fields differ
        field                              expected  got
        band.pessimistic.total_return_pct  1.8       1.9
        stop_updates                       4         3
      events.jsonl: 2 of 12 events differ (expected 12, got 12); the first is event 7
        event  field  expected  got
        7      stop   99.8      99.9
        and 1 more differing event after it
        expected:
";
    assert!(stdout.starts_with(trades), "{stdout}");
    // Equal decimals (100.00, 101.90) and a metric within 1e-8 (mfe 4.000000005) are not
    // differences.
    for field in ["entry_price", "exit_price", "mfe_pct"] {
        assert!(
            !stdout.contains(&format!(" {field} ")),
            "{field}:\n{stdout}"
        );
    }
    // The neighbours of the first differing event, on both sides, the event itself marked.
    let expected_block = stdout
        .split("        expected:\n")
        .nth(1)
        .and_then(|s| s.split("        got:\n").next())
        .unwrap();
    let got_block = stdout.split("        got:\n").nth(1).unwrap();
    for (block, stop) in [(expected_block, "99.8"), (got_block, "99.9")] {
        let lines: Vec<&str> = block.lines().take(5).collect();
        let numbers: Vec<&str> = lines.iter().map(|l| l[12..16].trim()).collect();
        assert_eq!(numbers, ["5", "6", "7", "8", "9"], "{block}");
        assert!(
            lines[2].starts_with("          >    7  ")
                && lines[2].contains(&format!(
                    r#""type":"UpdateSent","ts":1704067240000,"price":"102","stop":"{stop}""#
                )),
            "{block}"
        );
        assert!(lines[1].contains(r#""type":"StopRaised""#), "{block}");
    }
    assert!(
        stdout.ends_with("\n1 case: 0 passed, 1 failed, 0 could not run\n"),
        "{stdout}"
    );
}

#[test]
fn the_tolerance_is_set_per_case_in_check_toml() {
    let (tmp, dir) = copy_of("planted/wrong_trade");
    std::fs::write(dir.join("check.toml"), "tolerance = \"0.0000001\"\n").unwrap();
    let (stdout, _) = run_code(&mut check_in(&tmp), 1);
    assert!(stdout.contains("trades.csv: 2 differences"), "{stdout}");
    assert!(
        !stdout.contains(" fees "),
        "0.00000002 is within 1e-7:\n{stdout}"
    );
    std::fs::write(dir.join("check.toml"), "tolerance = 0\n").unwrap();
    let (stdout, _) = run_code(&mut check_in(&tmp), 1);
    assert!(
        stdout.contains("        1         mfe_pct      4.000000005               4\n"),
        "{stdout}"
    );
    std::fs::write(dir.join("check.toml"), "tolerence = 0\n").unwrap();
    let (stdout, _) = run_code(&mut check_in(&tmp), 2);
    assert!(
        stdout.contains(
            "cannot run: cases/wrong_trade/check.toml: line 1: unknown field `tolerence`"
        ),
        "{stdout}"
    );
}

#[test]
fn cases_that_cannot_run_exit_2_naming_case_and_file() {
    let (stdout, _) = run_code(
        trailstop().args(["check", "tests/fixtures/check/broken"]),
        2,
    );
    for line in [
        "ERROR   tests/fixtures/check/broken/malformed_trades\n      cannot run: \
         tests/fixtures/check/broken/malformed_trades/expected/trades.csv:2: field `exit_price`: \
         \"10x\" is not a decimal number\n",
        "ERROR   tests/fixtures/check/broken/missing_candles\n      cannot run: \
         tests/fixtures/check/broken/missing_candles/scenario.toml: data.candles: file \"nope.csv\" not found",
        "ERROR   tests/fixtures/check/broken/no_expected\n      cannot run: \
         tests/fixtures/check/broken/no_expected/expected: missing (--bless writes the current outputs there)\n",
        "3 cases: 0 passed, 0 failed, 3 could not run\ncould not run: \
         tests/fixtures/check/broken/malformed_trades, tests/fixtures/check/broken/missing_candles, \
         tests/fixtures/check/broken/no_expected\n",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
    // A case that cannot run outweighs one that differs.
    let (stdout, _) = run_code(trailstop().args(["check", FIXTURES]), 2);
    assert!(
        stdout.contains("6 cases: 2 passed, 1 failed, 3 could not run"),
        "{stdout}"
    );
    let (_, stderr) = run_code(
        trailstop().args(["check", "tests/fixtures/check/nowhere"]),
        2,
    );
    assert!(
        stderr.contains("tests/fixtures/check/nowhere: no such folder"),
        "{stderr}"
    );
    let (_, stderr) = run_code(trailstop().args(["check", "src"]), 2);
    assert!(stderr.contains("src: holds no case folder"), "{stderr}");
}

fn expected_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir.join("expected"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                read(&e.path()),
            )
        })
        .collect()
}

#[cfg(unix)]
fn inode(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
}

#[test]
fn bless_writes_the_current_outputs_atomically_then_the_case_passes() {
    let (tmp, dir) = copy_of("planted/wrong_trade");
    #[cfg(unix)]
    let before = inode(&dir.join("expected/trades.csv"));
    let mut bless = check_in(&tmp);
    bless.arg("--bless");
    let (stdout, _) = run_code(&mut bless, 0);
    // What moved is still shown, then what was written.
    assert!(
        stdout.starts_with("BLESSED cases/wrong_trade\n      trades.csv: 3 differences"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "      blessed: wrote expected/trades.csv, expected/summary.json, expected/events.jsonl\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 case: 0 passed, 1 blessed, 0 failed, 0 could not run"),
        "{stdout}"
    );
    // The same scenario as pass/ratchet: the blessed files are exactly its expected files, and
    // nothing else (no temporary file) is left in expected/.
    let pass = root().join(FIXTURES).join("pass/ratchet");
    assert_eq!(expected_files(&dir), expected_files(&pass));
    // Replaced by a rename: a new file, not the old one rewritten in place.
    #[cfg(unix)]
    assert_ne!(inode(&dir.join("expected/trades.csv")), before);
    let (stdout, _) = run_code(&mut check_in(&tmp), 0);
    assert!(
        stdout.starts_with("ok      cases/wrong_trade\n"),
        "{stdout}"
    );
    // Blessing a passing case writes nothing.
    #[cfg(unix)]
    let now = inode(&dir.join("expected/trades.csv"));
    let (stdout, _) = run_code(&mut bless, 0);
    assert!(
        stdout.starts_with("ok      cases/wrong_trade\n"),
        "{stdout}"
    );
    #[cfg(unix)]
    assert_eq!(inode(&dir.join("expected/trades.csv")), now);
}

#[test]
fn bless_creates_missing_expectations_and_skips_cases_that_cannot_run() {
    let (tmp, dir) = copy_of("broken/no_expected");
    let (stdout, _) = run_code(check_in(&tmp).arg("--bless"), 0);
    assert!(
        stdout.starts_with("BLESSED cases/no_expected\n"),
        "{stdout}"
    );
    assert_eq!(
        expected_files(&dir),
        expected_files(&root().join(FIXTURES).join("pass/ratchet"))
    );
    run_code(&mut check_in(&tmp), 0);

    // An unreadable expected file of a case that runs is replaced.
    let (tmp, dir) = copy_of("broken/malformed_trades");
    let (stdout, _) = run_code(check_in(&tmp).arg("--bless"), 0);
    assert!(
        stdout.contains("note: replaced unreadable expected/trades.csv: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("blessed: wrote expected/trades.csv\n"),
        "{stdout}"
    );
    assert_eq!(expected_files(&dir).len(), 1, "only the file it had");
    run_code(&mut check_in(&tmp), 0);

    // A case whose run fails is not blessed.
    let (tmp, dir) = copy_of("broken/missing_candles");
    let before = expected_files(&dir);
    let (stdout, _) = run_code(check_in(&tmp).arg("--bless"), 2);
    assert!(
        stdout.starts_with("ERROR   cases/missing_candles\n"),
        "{stdout}"
    );
    assert_eq!(expected_files(&dir), before);
}

#[test]
fn filter_runs_a_subset() {
    let (stdout, _) = run_code(
        trailstop().args(["check", FIXTURES, "--filter", "trace"]),
        0,
    );
    assert_eq!(
        stdout,
        "ok      tests/fixtures/check/pass/trace_ticks\n\n1 case: 1 passed, 0 failed, 0 could not run\n"
    );
    let (stdout, _) = run_code(
        trailstop().args([
            "check",
            FIXTURES,
            "--filter",
            "pass*ratchet",
            "--filter",
            "planted",
        ]),
        1,
    );
    assert!(
        stdout.contains("2 cases: 1 passed, 1 failed, 0 could not run"),
        "{stdout}"
    );
    let (_, stderr) = run_code(
        trailstop().args(["check", FIXTURES, "--filter", "nothing"]),
        2,
    );
    assert!(
        stderr.contains("no case matches --filter nothing"),
        "{stderr}"
    );
}

/// A parsed XML element.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: BTreeMap<String, String>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        if self.name == name {
            out.push(self);
        }
        for c in &self.children {
            c.all(name, out);
        }
    }

    fn find(&self, name: &str) -> Vec<&Element> {
        let mut out = Vec::new();
        self.all(name, &mut out);
        out
    }
}

/// Parses a whole document with quick-xml (which rejects mismatched or unclosed tags, bad
/// attributes and unknown entities) into one root element.
fn parse_xml(text: &str) -> Element {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(text);
    let element = |e: &BytesStart| Element {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attributes: e
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().expect("attribute value").into_owned(),
                )
            })
            .collect(),
        ..Default::default()
    };
    let mut stack = vec![Element::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Decl(_) => {}
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => stack.last_mut().unwrap().children.push(element(&e)),
            Event::End(_) => {
                let done = stack.pop().unwrap();
                stack.last_mut().expect("balanced").children.push(done);
            }
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_xml_entity(&r.decode().unwrap())
                        .expect("a known entity")
                        .to_string(),
                };
                stack.last_mut().unwrap().text.push_str(&c);
            }
            Event::Eof => break,
            other => panic!("unexpected XML: {other:?}"),
        }
    }
    assert_eq!(stack.len(), 1, "every element closed");
    let mut doc = stack.pop().unwrap();
    assert_eq!(doc.children.len(), 1, "one root element");
    doc.children.pop().unwrap()
}

#[test]
fn junit_xml_is_well_formed_with_the_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("junit.xml");
    let (stdout, _) = run_code(
        trailstop().args(["check", FIXTURES, "--junit"]).arg(&file),
        2,
    );
    let xml = read(&file);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        "{xml}"
    );
    let doc = parse_xml(&xml);
    assert_eq!(doc.name, "testsuites");
    let suites = doc.find("testsuite");
    assert_eq!(suites.len(), 1);
    for e in [&doc, suites[0]] {
        assert_eq!(e.attributes["tests"], "6");
        assert_eq!(e.attributes["failures"], "1");
        assert_eq!(e.attributes["errors"], "3");
        assert!(e.attributes["time"].parse::<f64>().is_ok());
    }
    let cases = doc.find("testcase");
    let names: Vec<String> = cases
        .iter()
        .map(|c| format!("{}.{}", c.attributes["classname"], c.attributes["name"]))
        .collect();
    assert_eq!(
        names,
        [
            "tests.fixtures.check.broken.malformed_trades",
            "tests.fixtures.check.broken.missing_candles",
            "tests.fixtures.check.broken.no_expected",
            "tests.fixtures.check.pass.ratchet",
            "tests.fixtures.check.pass.trace_ticks",
            "tests.fixtures.check.planted.wrong_trade",
        ]
    );
    let failures = doc.find("failure");
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].attributes["message"]
            .starts_with("trades.csv: 3 differences in 1 of 1 position"),
        "{:?}",
        failures[0].attributes
    );
    // The body is the text report's details, unescaped back to the same text.
    let body = &failures[0].text;
    assert!(
        body.contains("  1         exit_reason  initial_stop              trailing_stop\n"),
        "{body}"
    );
    for line in body.lines() {
        assert!(stdout.contains(line), "{line:?} not in the text report");
    }
    let errors = doc.find("error");
    assert_eq!(errors.len(), 3);
    assert!(
        errors[0].attributes["message"]
            .contains("malformed_trades/expected/trades.csv:2: field `exit_price`: \"10x\""),
        "{:?}",
        errors[0].attributes
    );
}

#[test]
fn the_report_is_the_same_for_any_thread_count() {
    let run = |threads: &str| {
        let out = trailstop()
            .env("RAYON_NUM_THREADS", threads)
            .args(["check", FIXTURES, "scenarios/golden"])
            .assert()
            .code(2)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let one = run("1");
    assert_eq!(one, run("4"));
    let names: Vec<&str> = one
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|n| n.contains('/'))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "cases in path order");
    let golden = std::fs::read_dir(root().join("scenarios/golden"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("scenario.toml").is_file())
        .count();
    assert_eq!(names.len(), 6 + golden);
}

#[test]
fn help_describes_the_layout_and_exit_codes() {
    let (stdout, _) = run_code(trailstop().args(["check", "--help"]), 0);
    for needle in [
        "scenario.toml",
        "trace.toml",
        "expected/",
        "check.toml",
        "--bless",
        "--junit <FILE>",
        "--filter <PATTERN>",
        "Exit status: 0 all cases pass, 1 a case differs, 2 a case cannot run",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
}

/// "Copy a case": a copy under another folder name passes as it is (the outputs do not name
/// the folder, and paths are relative to the case).
#[test]
fn a_copied_case_passes_under_another_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (from, to) in [("pass/ratchet", "mine/a"), ("pass/trace_ticks", "mine/b")] {
        copy_dir(&root().join(FIXTURES).join(from), &tmp.path().join(to));
    }
    let (stdout, _) = run_code(
        trailstop().current_dir(tmp.path()).args(["check", "mine"]),
        0,
    );
    assert_eq!(
        stdout,
        "ok      mine/a\nok      mine/b\n\n2 cases: 2 passed, 0 failed, 0 could not run\n"
    );
}
