//! `trailstop completions bash|zsh|fish`: the shell's completion script, generated from the
//! same clap definitions as the commands (so it never lists an option that does not exist).

use clap::CommandFactory;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ShellName {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args)]
#[command(
    after_help = "Install, e.g.:\n  bash: trailstop completions bash > ~/.local/share/bash-completion/completions/trailstop\n  zsh:  trailstop completions zsh > ~/.zfunc/_trailstop  (with fpath+=~/.zfunc before compinit)\n  fish: trailstop completions fish > ~/.config/fish/completions/trailstop.fish"
)]
pub struct Args {
    /// The shell to write the completion script for.
    shell: ShellName,
}

/// The completion script for `shell`.
pub fn script(shell: ShellName) -> Vec<u8> {
    let generator = match shell {
        ShellName::Bash => clap_complete::Shell::Bash,
        ShellName::Zsh => clap_complete::Shell::Zsh,
        ShellName::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut super::Cli::command(), "trailstop", &mut out);
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    use std::io::Write;
    std::io::stdout().write_all(&script(args.shell))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_names_the_commands_and_their_options() {
        // Fish spells an option `-l from`.
        for (shell, from) in [
            (ShellName::Bash, "--from"),
            (ShellName::Zsh, "--from"),
            (ShellName::Fish, "-l from"),
        ] {
            let s = String::from_utf8(script(shell)).unwrap();
            for word in ["backtest", "sweep", "paper", "completions", from] {
                assert!(s.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }
}
