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
