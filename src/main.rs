//! The `rave` command: use a shared database directory from the shell, and run the demo.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
