//! The benchmarks' processes: servers pinned to CPU 0 and the driver to CPU 1 (so the two never
//! compete for a core), authbridge and floor children, and the machine description.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// On machines with two or more cores, servers run on CPU 0 and this driver on CPU 1 (via
/// `taskset`), so the two never compete for a core and runs are comparable. `--pin no` disables it.
pub fn pinning() -> bool {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    cores >= 2 && Command::new("taskset").arg("-V").output().is_ok()
}

pub fn pin_driver() {
    if pinning() {
        let _ = Command::new("taskset")
            .args(["-cp", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
        PINNED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

static PINNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A command for a server process: on CPU 0 when the driver is pinned.
pub fn server_command(program: &Path) -> Command {
    if PINNED.load(std::sync::atomic::Ordering::Relaxed) {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let pinned = if PINNED.load(std::sync::atomic::Ordering::Relaxed) {
        "servers pinned to CPU 0, the driver to CPU 1"
    } else {
        "no CPU pinning"
    };
    println!(
        "## Machine\n\n{cores} cores, {cpu}, {} {}; {pinned}\n",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
}

/// A server child process and how to reach it.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: Option<String>,
    pub home: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn_floor() -> Server {
    spawn_self(&["serve-floor"])
}

/// The child side of [`spawn_self`]: serves on a loopback port with `serve` and prints
/// `<name> listening on <port>` first.
pub fn serve_as_child<F, Fut>(name: &str, serve: F)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "{name} listening on {}",
            listener.local_addr().unwrap().port()
        );
        serve(listener).await;
    });
}

/// This benchmark binary again, as a server child (`args` pick the mode); it prints
/// `… listening on <port>` as its first line ([`serve_as_child`]).
pub fn spawn_self(args: &[&str]) -> Server {
    let mut child = server_command(&std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().rsplit(' ').next().unwrap();
    Server {
        child,
        url: format!("ws://127.0.0.1:{port}/"),
        token: None,
        home: None,
    }
}

pub fn authbridge_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_authbridge"))
}

pub fn spawn_authbridge(extra: &[&str]) -> Server {
    let home = tempfile::tempdir().unwrap();
    let mut child = server_command(&authbridge_binary())
        .args([
            "serve",
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("authbridge listening on ") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "authbridge did not start"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("server.json")).unwrap())
            .unwrap();
    Server {
        child,
        url: info["url"].as_str().unwrap().to_owned(),
        token: info["token"].as_str().map(str::to_owned),
        home: Some(home),
    }
}
