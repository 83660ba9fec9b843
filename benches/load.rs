//! authbridge's benchmarks: throughput and latency against a floor baseline, refresh storms, memory
//! per idle connection, startup time and binary size. Prints Markdown for docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench load                      # everything (about five minutes)
//! cargo bench --bench load -- throughput        # floor vs authbridge at 1x1, 4x16, 16x8
//!     [--shapes 1x1,4x16] [--rounds 5] [--duration 5] [--warmup 1]
//! cargo bench --bench load -- storm             # refresh storms of 1, 100, 1000 reads
//! cargo bench --bench load -- memory            # RSS with 1000 idle connections
//! cargo bench --bench load -- startup           # process start to /readyz 200; binary size
//! cargo bench --bench load -- load --url ws://127.0.0.1:4500/ [--token T] [--connections 4]
//!     [--in-flight 16] [--method account/read] [--params '{}'] [--duration 5] [--warmup 1]
//! ```

mod driver;

use driver::options::Options;
use driver::process::{
    Server, authbridge_binary, machine, pin_driver, serve_as_child, spawn_authbridge, spawn_floor,
};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const SHAPES: &str = "1x1,4x16,16x8";

fn main() {
    let options = Options::parse();
    if options.command == "serve-floor" {
        return serve_floor();
    }
    if options.pin() {
        pin_driver();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match options.command.as_str() {
            "all" => {
                machine();
                throughput(&options).await;
                storms().await;
                memory(&options).await;
                startup();
            }
            "throughput" => throughput(&options).await,
            "storm" => storms().await,
            "memory" => memory(&options).await,
            "startup" => startup(),
            "load" => load(&options).await,
            other => panic!("unknown command {other}; see the top of benches/load.rs"),
        }
    });
}

/// The floor server, run as a child process: `load serve-floor` prints its port.
fn serve_floor() {
    serve_as_child("floor", driver::serve_floor);
}

/// One run, and the server's CPU time per reply over it (µs; user + system, from /proc).
struct Measured {
    report: driver::Report,
    cpu_us_per_request: f64,
}

async fn measure(
    server: &Server,
    connections: usize,
    in_flight: usize,
    duration: Duration,
    warmup: Duration,
) -> Measured {
    let pid = server.child.id();
    let cpu_before = driver::cpu_seconds(pid).unwrap_or(0.0);
    let report = driver::run(&driver::Load {
        url: server.url.clone(),
        token: server.token.clone(),
        connections,
        in_flight,
        warmup,
        duration,
        method: "account/read".into(),
        params: json!({}),
    })
    .await;
    assert_eq!(report.errors, 0, "errors during the run");
    let cpu = driver::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    Measured {
        cpu_us_per_request: cpu * 1e6 / report.total.max(1) as f64,
        report,
    }
}

/// Parses "1x1,4x16": connections × requests in flight per connection.
fn shapes(list: &str) -> Vec<(usize, usize)> {
    list.split(',')
        .map(|shape| {
            let (connections, in_flight) = shape.split_once('x').expect("shapes like 4x16");
            (
                connections.trim().parse().expect("a number of connections"),
                in_flight.trim().parse().expect("a number in flight"),
            )
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

async fn throughput(options: &Options) {
    let duration = Duration::from_secs_f64(options.number("duration", 5.0));
    let warmup = Duration::from_secs_f64(options.number("warmup", 1.0));
    let rounds = options.number("rounds", 5.0) as usize;
    let floor = spawn_floor();
    let bridge = spawn_authbridge(&[]);
    println!(
        "## account/read vs the floor ({rounds} alternating rounds of {}s after {}s warm-up; medians, ratios paired per round)\n",
        duration.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!(
        "| connections × in flight | floor req/s | authbridge req/s | ratio | floor p50 / p99 / p99.9 (µs) | authbridge p50 / p99 / p99.9 (µs) | p50 ratio | server CPU per request, floor / authbridge (µs) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (connections, in_flight) in shapes(options.get("shapes").unwrap_or(SHAPES)) {
        let (mut floor_runs, mut bridge_runs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which server goes first, so drift in the machine's speed cancels out.
            if round % 2 == 0 {
                bridge_runs.push(measure(&bridge, connections, in_flight, duration, warmup).await);
                floor_runs.push(measure(&floor, connections, in_flight, duration, warmup).await);
            } else {
                floor_runs.push(measure(&floor, connections, in_flight, duration, warmup).await);
                bridge_runs.push(measure(&bridge, connections, in_flight, duration, warmup).await);
            }
        }
        // Ratios are taken per round (each pair ran back to back), then the median.
        let paired = |of: &dyn Fn(&Measured) -> f64| {
            median(
                bridge_runs
                    .iter()
                    .zip(&floor_runs)
                    .map(|(bridge, floor)| of(bridge) / of(floor))
                    .collect(),
            )
        };
        let rate = |runs: &[Measured]| {
            median(
                runs.iter()
                    .map(|r| r.report.requests_per_second())
                    .collect(),
            )
        };
        let pct = |runs: &[Measured], p: f64| {
            median(
                runs.iter()
                    .map(|r| r.report.percentile_us(p) as f64)
                    .collect(),
            )
        };
        let cpu = |runs: &[Measured]| median(runs.iter().map(|r| r.cpu_us_per_request).collect());
        let (floor_rate, bridge_rate) = (rate(&floor_runs), rate(&bridge_runs));
        println!(
            "| {connections} × {in_flight} | {floor_rate:.0} | {bridge_rate:.0} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.2} | {:.1} / {:.1} |",
            paired(&|run| run.report.requests_per_second()),
            pct(&floor_runs, 50.0),
            pct(&floor_runs, 99.0),
            pct(&floor_runs, 99.9),
            pct(&bridge_runs, 50.0),
            pct(&bridge_runs, 99.0),
            pct(&bridge_runs, 99.9),
            paired(&|run| run.report.percentile_us(50.0) as f64),
            cpu(&floor_runs),
            cpu(&bridge_runs),
        );
    }
    println!();
}

async fn storms() {
    let (backend_addr, backend) = driver::start_backend().await;
    let base = format!("chatgpt_base_url=\"http://{backend_addr}\"");
    let bridge = spawn_authbridge(&["-c", &base]);
    let answer_after = Duration::from_millis(10);
    let owner = driver::Owner::connect(&bridge.url, bridge.token.as_deref(), answer_after).await;
    println!("## Refresh storms: concurrent rate-limit reads on a stale host-owned token\n");
    println!(
        "The host answers `account/chatgptAuthTokens/refresh` after {} ms. Each size first runs one \
         unreported pass with a valid token so that the backend connection pool is equally warm for both.\n",
        answer_after.as_millis()
    );
    println!(
        "| reads | refresh requests | backend calls | errors | p50 / p99 (ms), stale token | p50 / p99 (ms), valid token |"
    );
    println!("|---|---|---|---|---|---|");
    let storm = |access: &'static str, reads: usize| {
        driver::storm(
            &bridge.url,
            bridge.token.as_deref(),
            &owner,
            &backend,
            access,
            reads,
        )
    };
    for reads in [1, 100, 1000] {
        // Warm the backend connection pool to this size first, so both passes start alike.
        storm("fresh-warm-up", reads).await;
        let stale = storm("stale-token", reads).await;
        let valid = storm("fresh-baseline", reads).await;
        let ms = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "| {reads} | {} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} |",
            stale.refresh_requests,
            stale.backend_calls,
            stale.errors + valid.errors,
            ms(&stale.latency, 0.5),
            ms(&stale.latency, 0.99),
            ms(&valid.latency, 0.5),
            ms(&valid.latency, 0.99),
        );
        assert_eq!(stale.refresh_requests, 1, "exactly one refresh per storm");
    }
    println!();
}

async fn memory(options: &Options) {
    let connections = options.number("connections", 1000.0) as usize;
    let limit = format!("server.max_connections={}", connections + 10);
    let bridge = spawn_authbridge(&["-c", &limit]);
    let pid = bridge.child.id();
    let first = driver::connect(&bridge.url, bridge.token.as_deref()).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = driver::rss_bytes(pid).unwrap();
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        sockets.push(driver::connect(&bridge.url, bridge.token.as_deref()).await);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = driver::rss_bytes(pid).unwrap();
    let per = after.saturating_sub(before) as f64 / connections as f64;
    println!("## Memory\n");
    println!("| idle authenticated connections | server RSS | per connection |");
    println!("|---|---|---|");
    println!("| 0 | {:.1} MiB | |", before as f64 / 1048576.0);
    println!(
        "| {connections} | {:.1} MiB | {:.1} KiB |\n",
        after as f64 / 1048576.0,
        per / 1024.0
    );
    drop(sockets);
}

fn startup() {
    let mut samples = Vec::new();
    for _ in 0..10 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let home = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = Command::new(authbridge_binary())
            .args([
                "serve",
                "--home",
                home.path().to_str().unwrap(),
                "--listen",
                &format!("ws://127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if readyz(port) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not ready in 10 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let size = std::fs::metadata(authbridge_binary())
        .map(|m| m.len())
        .unwrap_or(0);
    println!("## Startup and size\n");
    println!("| process start → `/readyz` 200 (10 runs) | binary size |");
    println!("|---|---|");
    println!(
        "| median {:.1} ms, min {:.1} ms, max {:.1} ms | {:.1} MiB |\n",
        samples[5],
        samples[0],
        samples[9],
        size as f64 / 1048576.0
    );
}

fn readyz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request =
        format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

async fn load(options: &Options) {
    let url = options
        .get("url")
        .expect("--url ws://host:port/")
        .to_owned();
    let report = driver::run(&driver::Load {
        url,
        token: options.get("token").map(str::to_owned),
        connections: options.number("connections", 4.0) as usize,
        in_flight: options.number("in-flight", 16.0) as usize,
        warmup: Duration::from_secs_f64(options.number("warmup", 1.0)),
        duration: Duration::from_secs_f64(options.number("duration", 5.0)),
        method: options.get("method").unwrap_or("account/read").to_owned(),
        params: options.get("params").map_or(json!({}), |p| {
            serde_json::from_str(p).expect("--params is JSON")
        }),
    })
    .await;
    println!(
        "{:.0} req/s, errors {}, p50 {} µs, p99 {} µs, p99.9 {} µs",
        report.requests_per_second(),
        report.errors,
        report.percentile_us(50.0),
        report.percentile_us(99.0),
        report.percentile_us(99.9)
    );
}
