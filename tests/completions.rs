//! `trailstop completions bash|zsh|fish`: the bash script, loaded into a real bash, completes
//! the commands and a command's options; each script is valid for its shell where that shell is
//! installed; other shells are refused.

mod cli_support;

use std::process::Command as Process;

use cli_support::{run_code, trailstop};

fn script(shell: &str) -> String {
    run_code(trailstop().args(["completions", shell]), 0).0
}

/// What bash offers for the words typed so far (the last one being completed).
fn bash_completes(script_path: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n_trailstop trailstop '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script_path.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words
            .get(words.len().wrapping_sub(2))
            .copied()
            .unwrap_or("")
    );
    let out = Process::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trailstop.bash");
    std::fs::write(&path, script("bash")).unwrap();
    let commands = bash_completes(&path, &["trailstop", ""]);
    for c in [
        "backtest",
        "sweep",
        "paper",
        "report",
        "check",
        "completions",
    ] {
        assert!(commands.iter().any(|w| w == c), "{c} in {commands:?}");
    }
    let options = bash_completes(&path, &["trailstop", "backtest", "--"]);
    for o in ["--from", "--to", "--report", "--set", "--out"] {
        assert!(options.iter().any(|w| w == o), "{o} in {options:?}");
    }
    assert_eq!(
        bash_completes(&path, &["trailstop", "completions", "z"]),
        ["zsh"]
    );
}

#[test]
fn zsh_and_fish_scripts_are_valid_where_the_shell_is_installed() {
    for (shell, check, option) in [
        ("zsh", vec!["-n"], "--from"),
        ("fish", vec!["--no-execute"], "-l from"),
    ] {
        let text = script(shell);
        assert!(
            text.contains("backtest") && text.contains(option),
            "{shell}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("trailstop.{shell}"));
        std::fs::write(&path, &text).unwrap();
        match Process::new(shell).args(&check).arg(&path).output() {
            Ok(out) => assert!(
                out.status.success(),
                "{shell} refuses the script: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            // Not installed here: the generated text was checked above.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{shell}: {e}"),
        }
    }
    // Fish, where installed, completes an option from the script.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trailstop.fish");
    std::fs::write(&path, script("fish")).unwrap();
    let complete = format!(
        "source '{}'; complete -C 'trailstop backtest --f'",
        path.display()
    );
    if let Ok(out) = Process::new("fish").args(["-c", &complete]).output() {
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(
            offered.lines().any(|l| l.starts_with("--from\t")),
            "{offered}"
        );
    }
    assert!(script("zsh").starts_with("#compdef trailstop"));
    assert!(script("fish").contains("complete -c trailstop"));
}

#[test]
fn other_shells_are_refused() {
    let (_, stderr) = run_code(trailstop().args(["completions", "powershell"]), 2);
    assert!(
        stderr.contains("possible values: bash, zsh, fish"),
        "{stderr}"
    );
}
