use std::process::ExitCode;

fn main() -> ExitCode {
    trailstop::cli::main()
}
