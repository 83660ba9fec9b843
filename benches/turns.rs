//! Streaming turns: what authbridge adds between a UI and the model, measured against the floor
//! (the same client reading the fake backend's SSE directly). Prints Markdown for
//! docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench turns                 # everything (about six minutes)
//! cargo bench --bench turns -- lag          # per-delta lag and time to first delta, 1 ms gap
//!     [--streams 64] [--deltas 100]         # one shape only (default: 1, then 64); deltas per turn
//! cargo bench --bench turns -- throughput   # deltas/s at gap 0, 8 clients
//! cargo bench --bench turns -- history      # one thread whose history grows vs a fresh thread per turn
//! cargo bench --bench turns -- scale        # 1024 concurrent streaming turns: errors and RSS
//! cargo bench --bench turns -- interrupt    # turn/interrupt → turn/completed
//! cargo bench --bench turns -- storm        # 1000 turns on one stale host-owned token
//! cargo bench --bench turns -- store        # thread/list over 10 000 stored threads
//! cargo bench --bench turns -- codex        # Codex 0.94.0 vs authbridge, both over stdio
//!     [--duration 5] [--warmup 1] [--pin no]
//! ```
//!
//! The fake backend runs in this process (on the driver's CPU); authbridge runs as a child on
//! CPU 0. Every delta carries its send time, so lag is one-way, on one clock.

mod driver;

use std::time::Duration;

use authbridge::dev_backend::{FakeBackend, Reply};
use driver::options::Options;
use driver::process::{Server, machine, pin_driver, serve_as_child, spawn_authbridge, spawn_self};
use driver::turns::{TurnLoad, TurnReport, interrupts, run_floor, run_turns};

/// The fake backend and an authbridge child pointed at it.
struct Bench {
    backend: FakeBackend,
    bridge: Server,
    /// The relay floor, pointed at the same backend.
    relay: Server,
    warmup: Duration,
    duration: Duration,
}

impl Bench {
    async fn start(options: &Options) -> Self {
        Self::start_with(options, &[]).await
    }

    /// With `settings` (`key=value`) on top of the benchmarks' own.
    async fn start_with(options: &Options, settings: &[&str]) -> Self {
        let backend = FakeBackend::start().await.expect("the fake backend starts");
        let mut args: Vec<String> = Vec::new();
        for item in backend.overrides() {
            args.extend(["-c".to_owned(), item]);
        }
        for item in [
            "turns.max_concurrent=4000",
            "backend.max_concurrent=4096",
            "server.max_connections=1000",
            "server.max_in_flight_per_connection=1000",
            "model.retry_base_delay_ms=1",
        ]
        .into_iter()
        .chain(settings.iter().copied())
        {
            args.extend(["-c".to_owned(), item.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let base = format!("{}/v1", backend.url());
        Self {
            bridge: spawn_authbridge(&args),
            relay: spawn_self(&["serve-relay", "--backend", &base]),
            backend,
            warmup: Duration::from_secs_f64(options.number("warmup", 1.0)),
            duration: Duration::from_secs_f64(options.number("duration", 5.0)),
        }
    }

    fn pid(&self) -> u32 {
        self.bridge.child.id()
    }

    fn load(&self, connections: usize, threads: usize) -> TurnLoad {
        TurnLoad {
            url: self.bridge.url.clone(),
            token: self.bridge.token.clone(),
            connections,
            threads,
            fresh_thread: true,
            ephemeral: false,
            turns_per_slot: None,
            login: true,
            warmup: self.warmup,
            duration: self.duration,
            turn_timeout: driver::turns::TURN_TIMEOUT,
        }
    }

    fn stream(&self, deltas: usize, size: usize, gap: Duration) {
        self.backend
            .set_fallback(Some(Reply::Timed { deltas, size, gap }));
    }

    /// A run through authbridge, with its CPU per delta (µs) and RSS at the end (MiB).
    async fn through_authbridge(&self, load: &TurnLoad) -> (TurnReport, f64, f64) {
        let cpu_before = driver::cpu_seconds(self.pid()).unwrap_or(0.0);
        let report = run_turns(load).await;
        let cpu = driver::cpu_seconds(self.pid()).unwrap_or(0.0) - cpu_before;
        let rss = driver::rss_bytes(self.pid()).unwrap_or(0) as f64 / 1048576.0;
        let per_delta = cpu * 1e6 / report.all_deltas.max(1) as f64;
        (report, per_delta, rss)
    }

    /// The same load through the relay floor, with its CPU per delta (µs).
    async fn through_relay(&self, load: &TurnLoad) -> (TurnReport, f64) {
        let mut load = load.clone();
        load.url = self.relay.url.clone();
        load.token = None;
        load.login = false;
        let pid = self.relay.child.id();
        let cpu_before = driver::cpu_seconds(pid).unwrap_or(0.0);
        let report = run_turns(&load).await;
        let cpu = driver::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
        let per_delta = cpu * 1e6 / report.all_deltas.max(1) as f64;
        (report, per_delta)
    }

    async fn floor(&self, concurrency: usize) -> TurnReport {
        run_floor(
            &format!("{}/v1", self.backend.url()),
            concurrency,
            self.warmup,
            self.duration,
        )
        .await
    }
}

fn main() {
    let options = Options::parse();
    if options.command == "serve-relay" {
        return serve_relay(&options);
    }
    if options.pin() {
        pin_driver();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let wants = |name: &str| options.command == "all" || options.command == name;
        if options.command == "all" {
            machine();
        }
        if ["lag", "throughput", "history", "interrupt"]
            .into_iter()
            .any(wants)
        {
            let bench = Bench::start(&options).await;
            if wants("lag") {
                lag(&bench, &options).await;
            }
            if wants("throughput") {
                throughput(&bench).await;
            }
            if wants("history") {
                history(&bench).await;
            }
            if wants("interrupt") {
                interrupt(&bench).await;
            }
        }
        // These two start servers of their own: nothing else runs on the servers' core then.
        if wants("storm") {
            storm(&options).await;
        }
        if wants("scale") {
            scale(&options).await;
        }
        if ["store", "codex"].into_iter().any(wants) {
            let bench = Bench::start(&options).await;
            if wants("store") {
                store(&bench).await;
            }
            if wants("codex") {
                codex(&bench).await;
            }
        }
    });
}

/// The relay floor, run as a child process: `turns serve-relay --backend <base>` prints its port.
fn serve_relay(options: &Options) {
    let base = options
        .get("backend")
        .expect("--backend <base url>")
        .to_owned();
    serve_as_child("relay", |listener| async move {
        driver::relay::serve_relay(listener, &base).await;
    });
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

async fn lag(bench: &Bench, options: &Options) {
    let deltas = options.number("deltas", 100.0) as usize;
    println!(
        "## Per-delta lag and time to first delta ({deltas} deltas of 32 B, 1 ms apart; a fresh thread per turn)\n"
    );
    println!(
        "| streaming turns | path | lag p50 / p99 / p99.9 (µs) | first delta p50 / p99 (ms) | deltas/s | errors | server CPU per delta (µs) | server RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    bench.stream(deltas, 32, Duration::from_millis(1));
    let shapes = match options.number("streams", 0.0) as usize {
        0 => vec![(1, 1), (8, 8)],
        1 => vec![(1, 1)],
        streams => vec![(8, streams.div_ceil(8))],
    };
    let mut added = Vec::new();
    for (connections, threads) in shapes {
        let concurrency = connections * threads;
        let load = bench.load(connections, threads);
        let floor = bench.floor(concurrency).await;
        let (relay, relay_cpu) = bench.through_relay(&load).await;
        let (bridge, cpu, rss) = bench.through_authbridge(&load).await;
        let mut ephemeral_load = load.clone();
        ephemeral_load.ephemeral = true;
        let (ephemeral, ephemeral_cpu, _) = bench.through_authbridge(&ephemeral_load).await;
        for (name, report, cpu, rss) in [
            ("direct floor", &floor, None, None),
            ("relay floor", &relay, Some(relay_cpu), None),
            ("authbridge", &bridge, Some(cpu), Some(rss)),
            (
                "authbridge, ephemeral threads",
                &ephemeral,
                Some(ephemeral_cpu),
                None,
            ),
        ] {
            println!(
                "| {concurrency} | {name} | {} / {} / {} | {} / {} | {:.0} | {} | {} | {} |",
                report.lag_us(50.0),
                report.lag_us(99.0),
                report.lag_us(99.9),
                ms(report.first_delta_us(50.0)),
                ms(report.first_delta_us(99.0)),
                report.deltas_per_second(),
                report.errors,
                cpu.map_or(String::new(), |cpu| format!("{cpu:.1}")),
                rss.map_or(String::new(), |rss: f64| format!("{rss:.1}")),
            );
        }
        added.push((concurrency, floor, relay, bridge));
    }
    println!(
        "\n| streaming turns | authbridge adds to lag p50 / p99 (µs), vs direct floor | vs relay floor | adds to first delta p50 (ms), vs direct floor | vs relay floor |"
    );
    println!("|---|---|---|---|---|");
    let diff = |a: u64, b: u64| a as i64 - b as i64;
    for (concurrency, floor, relay, bridge) in added {
        println!(
            "| {concurrency} | {} / {} | {} / {} | {:.2} | {:.2} |",
            diff(bridge.lag_us(50.0), floor.lag_us(50.0)),
            diff(bridge.lag_us(99.0), floor.lag_us(99.0)),
            diff(bridge.lag_us(50.0), relay.lag_us(50.0)),
            diff(bridge.lag_us(99.0), relay.lag_us(99.0)),
            diff(bridge.first_delta_us(50.0), floor.first_delta_us(50.0)) as f64 / 1000.0,
            diff(bridge.first_delta_us(50.0), relay.first_delta_us(50.0)) as f64 / 1000.0,
        );
    }
    println!();
}

async fn throughput(bench: &Bench) {
    println!("## Throughput at gap 0 (500 deltas of 32 B as fast as the fake sends; 8 clients)\n");
    println!(
        "| | deltas/s | turns/s | lag p50 / p99 / p99.9 (µs) | errors | server CPU per delta (µs) |"
    );
    println!("|---|---|---|---|---|---|");
    bench.stream(500, 32, Duration::ZERO);
    let floor = bench.floor(8).await;
    let load = bench.load(8, 1);
    let (relay, relay_cpu) = bench.through_relay(&load).await;
    let (bridge, cpu, _) = bench.through_authbridge(&load).await;
    let mut ephemeral_load = load.clone();
    ephemeral_load.ephemeral = true;
    let (ephemeral, ephemeral_cpu, _) = bench.through_authbridge(&ephemeral_load).await;
    for (name, report, cpu) in [
        ("direct floor", &floor, None),
        ("relay floor", &relay, Some(relay_cpu)),
        ("authbridge", &bridge, Some(cpu)),
        (
            "authbridge, ephemeral threads",
            &ephemeral,
            Some(ephemeral_cpu),
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {} / {} / {} | {} | {} |",
            report.deltas_per_second(),
            report.turns_per_second(),
            report.lag_us(50.0),
            report.lag_us(99.0),
            report.lag_us(99.9),
            report.errors,
            cpu.map_or("".to_owned(), |cpu| format!("{cpu:.1}")),
        );
    }
    let ratio =
        |report: &TurnReport| report.deltas_per_second() / floor.deltas_per_second().max(1.0);
    println!(
        "\nOf the direct floor's deltas/s: authbridge {:.2}×, ephemeral threads {:.2}×, the relay floor {:.2}×.\n",
        ratio(&bridge),
        ratio(&ephemeral),
        ratio(&relay)
    );
}

async fn history(bench: &Bench) {
    println!("## History growth (1 client, 20 deltas of 32 B at gap 0)\n");
    println!("| | turns/s | first delta p50 / p99 (ms) | errors |");
    println!("|---|---|---|---|");
    bench.stream(20, 32, Duration::ZERO);
    for fresh in [true, false] {
        let mut load = bench.load(1, 1);
        load.fresh_thread = fresh;
        let (report, _, _) = bench.through_authbridge(&load).await;
        println!(
            "| {} | {:.0} | {} / {} | {} |",
            if fresh {
                "a fresh thread per turn"
            } else {
                "one thread, history growing every turn"
            },
            report.turns_per_second(),
            ms(report.first_delta_us(50.0)),
            ms(report.first_delta_us(99.0)),
            report.errors
        );
    }
    println!();
}

async fn interrupt(bench: &Bench) {
    let rounds = 50;
    bench.stream(10_000, 32, Duration::from_millis(1));
    println!("## turn/interrupt → turn/completed (interrupted), {rounds} turns per row\n");
    println!("| thread | p50 (ms) | p99 (ms) | max (ms) | errors | upstream streams closed |");
    println!("|---|---|---|---|---|---|");
    for ephemeral in [false, true] {
        let closed_before = bench.backend.closed_streams();
        let (latency, errors) = interrupts(
            &bench.bridge.url,
            bench.bridge.token.as_deref(),
            rounds,
            ephemeral,
        )
        .await;
        tokio::time::timeout(
            Duration::from_secs(10),
            bench
                .backend
                .wait_for_closed_streams(closed_before + rounds),
        )
        .await
        .expect("the backend saw every interrupted stream close");
        println!(
            "| {} | {} | {} | {} | {errors} | {rounds} of {rounds} |",
            if ephemeral { "ephemeral" } else { "stored" },
            ms(latency.value_at_quantile(0.5)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.max())
        );
    }
    println!();
}

async fn storm(options: &Options) {
    println!(
        "## Refresh storm with turns: 1000 turns at once on one stale host-owned token (the owner answers at once)\n"
    );
    println!(
        "| token | refresh requests | backend requests | errors | first delta p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|");
    for stale in [false, true] {
        // A fresh server each time: the token is stale until the first refresh.
        let bench = Bench::start(options).await;
        bench.stream(5, 32, Duration::ZERO);
        bench.backend.accept_bearers(&["fresh-token"]);
        let owner = driver::Owner::connect(
            &bench.bridge.url,
            bench.bridge.token.as_deref(),
            Duration::ZERO,
        )
        .await;
        owner
            .login(if stale { "stale-token" } else { "fresh-token" })
            .await;
        let mut load = bench.load(10, 100);
        load.login = false;
        load.turns_per_slot = Some(1);
        load.warmup = Duration::ZERO;
        let (report, _, _) = bench.through_authbridge(&load).await;
        println!(
            "| {} | {} | {} | {} | {} / {} |",
            if stale { "stale" } else { "valid" },
            owner
                .refresh_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            bench.backend.requests().len(),
            report.errors,
            ms(report.first_delta_us(50.0)),
            ms(report.first_delta_us(99.0)),
        );
    }
    println!();
}

/// Idle backend connections close after this in the scale run (90 s by default), so its last
/// row shows memory once they have.
const SCALE_IDLE_TIMEOUT_SECS: u64 = 2;

async fn scale(options: &Options) {
    let idle_timeout = format!("backend.idle_timeout_secs={SCALE_IDLE_TIMEOUT_SECS}");
    let bench = Bench::start_with(options, &[&idle_timeout]).await;
    let pid = bench.pid();
    bench.stream(200, 32, Duration::from_millis(5));
    // One warm connection first, so "idle" includes what every server has once it served.
    let mut warm = bench.load(1, 1);
    warm.turns_per_slot = Some(1);
    warm.warmup = Duration::ZERO;
    run_turns(&warm).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = driver::rss_bytes(pid).unwrap_or(0);
    println!(
        "## 1024 concurrent streaming turns (64 connections × 16 threads, 200 deltas 5 ms apart), eight times on one server\n"
    );
    println!(
        "| round | turns completed | deltas | errors | lag p50 / p99 (µs) | RSS idle | RSS peak | RSS after | after / idle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / 1048576.0);
    // A second round that ends where the first did means memory is kept for reuse, not leaked
    // per turn.
    for round in 1..=8 {
        let mut load = bench.load(64, 16);
        load.turns_per_slot = Some(1);
        load.warmup = Duration::ZERO;
        let report = run_turns(&load).await;
        let peak = high_water_mark(pid);
        // The connections are gone: their threads unload, what the turns held is freed.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let after = driver::rss_bytes(pid).unwrap_or(0);
        println!(
            "| {round} | {} | {} | {} | {} / {} | {} | {} | {} | {:.2} |",
            report.turns,
            report.deltas,
            report.errors,
            report.lag_us(50.0),
            report.lag_us(99.0),
            mib(idle),
            mib(peak),
            mib(after),
            after as f64 / idle.max(1) as f64
        );
    }
    // Idle worker threads of the runtime's blocking pool (file work at login) end after 10 s;
    // the idle backend connections close within two of their timeouts, and the server then
    // gives back what they held.
    let settle = Duration::from_secs(11.max(2 * SCALE_IDLE_TIMEOUT_SECS + 2));
    tokio::time::sleep(settle).await;
    let settled = driver::rss_bytes(pid).unwrap_or(0);
    println!(
        "| {} s later, idle connections closed | | | | | {} | | {} | {:.2} |",
        settle.as_secs(),
        mib(idle),
        mib(settled),
        settled as f64 / idle.max(1) as f64
    );
    println!();
}

/// The process's RSS high-water mark (VmHWM).
fn high_water_mark(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

async fn store(bench: &Bench) {
    let (threads, calls) = (10_000, 200);
    let report = driver::turns::thread_list(
        &bench.bridge.url,
        bench.bridge.token.as_deref(),
        threads,
        calls,
    )
    .await;
    println!("## thread/list over {threads} stored threads ({calls} calls each, one at a time)\n");
    println!(
        "| threads made (thread/start, 64 in flight) | first page of 50, p50 / p99 (ms) | page of 50 at 5 000 deep, p50 / p99 (ms) |"
    );
    println!("|---|---|---|");
    println!(
        "| {:.0}/s | {} / {} | {} / {} |\n",
        report.created_per_second,
        ms(report.first_page.value_at_quantile(0.5)),
        ms(report.first_page.value_at_quantile(0.99)),
        ms(report.deep_page.value_at_quantile(0.5)),
        ms(report.deep_page.value_at_quantile(0.99)),
    );
}

/// Codex 0.94.0 (`tests/compat`, installed by `npm ci --prefix tests/compat`) against authbridge,
/// both as `app-server` on stdio behind the same WebSocket bridge, on the same fake backend.
async fn codex(bench: &Bench) {
    let codex = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat/node_modules/.bin/codex");
    println!(
        "## Against Codex 0.94.0 (both over stdio behind the same bridge; 100 deltas of 32 B, 1 ms apart)\n"
    );
    if !codex.exists() {
        println!(
            "Skipped: Codex 0.94.0 is not installed (`npm ci --prefix tests/compat` installs it).\n"
        );
        return;
    }
    bench.stream(100, 32, Duration::from_millis(1));
    let wrapper: Vec<String> = if driver::process::pinning() {
        vec!["taskset".into(), "-c".into(), "0".into()]
    } else {
        Vec::new()
    };
    let homes = tempfile::tempdir().unwrap();
    let codex_home = homes.path().join("codex");
    let bridge_home = homes.path().join("authbridge");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::create_dir_all(&bridge_home).unwrap();
    let mut bridge_args = vec![
        "app-server".to_owned(),
        "--home".to_owned(),
        bridge_home.display().to_string(),
    ];
    for item in bench.backend.overrides() {
        bridge_args.extend(["-c".to_owned(), item]);
    }
    let servers = [
        (
            "Codex 0.94.0",
            driver::stdio_bridge::StdioServer {
                program: codex,
                args: vec!["app-server".into()],
                env: vec![
                    ("CODEX_HOME".into(), codex_home.display().to_string()),
                    (
                        "OPENAI_BASE_URL".into(),
                        format!("{}/v1", bench.backend.url()),
                    ),
                    ("OPENAI_API_KEY".into(), String::new()),
                    ("RUST_LOG".into(), "error".into()),
                ],
                wrapper: wrapper.clone(),
            },
        ),
        (
            "authbridge",
            driver::stdio_bridge::StdioServer {
                program: driver::process::authbridge_binary(),
                args: bridge_args,
                env: vec![("RUST_LOG".into(), "warn".into())],
                wrapper,
            },
        ),
    ];
    println!(
        "| streaming turns | server | lag p50 / p99 (µs) | first delta p50 / p99 (ms) | deltas/s | turns | errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut first_delta = Vec::new();
    for connections in [1, 8] {
        for (name, server) in &servers {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("ws://{}/", listener.local_addr().unwrap());
            let serving = tokio::spawn(driver::stdio_bridge::serve_stdio_bridge(
                listener,
                server.clone(),
            ));
            let mut load = bench.load(connections, 1);
            load.url = url;
            load.token = None;
            load.turn_timeout = Duration::from_secs(10);
            let report = run_turns(&load).await;
            serving.abort();
            println!(
                "| {connections} | {name} | {} / {} | {} / {} | {:.0} | {} | {} |",
                report.lag_us(50.0),
                report.lag_us(99.0),
                ms(report.first_delta_us(50.0)),
                ms(report.first_delta_us(99.0)),
                report.deltas_per_second(),
                report.turns,
                report.errors,
            );
            first_delta.push((connections, *name, report.first_delta_us(50.0)));
        }
    }
    let floor = bench.floor(1).await.first_delta_us(50.0);
    println!(
        "\nTime to first delta added over the direct floor ({} ms), one stream: {}.\n",
        ms(floor),
        first_delta
            .iter()
            .filter(|(connections, _, _)| *connections == 1)
            .map(|(_, name, us)| format!("{name} {} ms", ms(us.saturating_sub(floor))))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
