//! The `authbridge` binary: see `authbridge --help`.

fn main() -> std::process::ExitCode {
    authbridge::run_cli()
}
