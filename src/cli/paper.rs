//! `trailstop paper` (issue 4): not built yet.

#[derive(clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("trailstop paper: not built yet (planned in issue 4); nothing was run")
}
