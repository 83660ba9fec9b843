//! A short run of the benchmark driver (benches/driver), so CI notices if the load paths break:
//! it asserts zero errors and exactly one refresh per storm, never a timing.

use std::time::Duration;

use serde_json::json;

use crate::support::TestServer;

#[path = "../../benches/driver/mod.rs"]
mod driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_driver_runs_against_the_floor_and_authbridge() {
    let floor = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let floor_url = format!("ws://{}/", floor.local_addr().unwrap());
    tokio::spawn(driver::serve_floor(floor));
    let server = TestServer::start(&[]).await;
    for (url, token) in [
        (floor_url.as_str(), None),
        (server.url.as_str(), server.token.as_deref()),
    ] {
        for (connections, in_flight) in [(1, 1), (4, 16)] {
            let report = driver::run(&driver::Load {
                url: url.to_owned(),
                token: token.map(str::to_owned),
                connections,
                in_flight,
                warmup: Duration::from_millis(100),
                duration: Duration::from_millis(500),
                method: "account/read".into(),
                params: json!({}),
            })
            .await;
            assert_eq!(report.errors, 0, "{url} {connections}x{in_flight}");
            assert!(report.completed > 0, "{url} {connections}x{in_flight}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_storm_causes_one_refresh() {
    let (backend_addr, backend) = driver::start_backend().await;
    let base = format!("chatgpt_base_url=\"http://{backend_addr}\"");
    let server = TestServer::start(&[&base]).await;
    // The host takes 200 ms to answer, so every read meets the stale token first.
    let owner = driver::Owner::connect(
        &server.url,
        server.token.as_deref(),
        Duration::from_millis(200),
    )
    .await;
    let storm = driver::storm(
        &server.url,
        server.token.as_deref(),
        &owner,
        &backend,
        "stale-token",
        150,
    )
    .await;
    assert_eq!(storm.errors, 0);
    assert_eq!(storm.refresh_requests, 1);
    assert_eq!(storm.backend_calls, 300, "every read: one 401, one retry");
    let valid = driver::storm(
        &server.url,
        server.token.as_deref(),
        &owner,
        &backend,
        "fresh-baseline",
        150,
    )
    .await;
    assert_eq!(
        (valid.errors, valid.refresh_requests, valid.backend_calls),
        (0, 0, 150)
    );
}

/// The turn driver against authbridge, the relay floor and the direct floor (benches/turns.rs):
/// every turn completes, every delta arrives once and carries a readable send time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_driver_streams_through_authbridge_and_both_floors() {
    let backend = authbridge::dev_backend::FakeBackend::start().await.unwrap();
    backend.set_fallback(Some(authbridge::dev_backend::Reply::Timed {
        deltas: 20,
        size: 32,
        gap: Duration::ZERO,
    }));
    let overrides = crate::support::turns::overrides(&backend, &[]);
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let server = TestServer::start(&overrides).await;
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("ws://{}/", relay.local_addr().unwrap());
    let base = format!("{}/v1", backend.url());
    let relay_base = base.clone();
    tokio::spawn(async move { driver::relay::serve_relay(relay, &relay_base).await });
    for (url, token, login, ephemeral) in [
        (server.url.as_str(), server.token.as_deref(), true, false),
        (server.url.as_str(), server.token.as_deref(), true, true),
        (relay_url.as_str(), None, false, false),
    ] {
        let report = driver::turns::run_turns(&driver::turns::TurnLoad {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            connections: 2,
            threads: 3,
            fresh_thread: !ephemeral,
            ephemeral,
            turns_per_slot: Some(2),
            login,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(30),
            turn_timeout: driver::turns::TURN_TIMEOUT,
        })
        .await;
        assert_eq!(report.errors, 0, "{url} ephemeral={ephemeral}");
        assert_eq!(report.turns, 12, "{url} ephemeral={ephemeral}");
        assert_eq!(report.deltas, 12 * 20, "{url} ephemeral={ephemeral}");
        assert_eq!(
            report.lag.len(),
            report.deltas,
            "every delta has a send time"
        );
    }
    let floor = driver::turns::run_floor(
        &base,
        2,
        Duration::from_millis(100),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(floor.errors, 0);
    assert!(floor.turns > 0);
    assert_eq!(floor.lag.len(), floor.deltas);
}
