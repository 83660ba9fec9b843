//! The `authbridge` binary: see `authbridge --help`.

/// mimalloc: the request path allocates many small, short-lived buffers across threads, where the
/// system allocator measured markedly slower (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    authbridge::cli::main()
}
