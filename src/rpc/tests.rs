//! The connection loop and the dispatcher through in-memory connections: reply-before-events
//! ordering, the handshake, batches, refresh routing, the credential-generation rule,
//! cancellation, the in-flight limit, overflow and shutdown.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::rpc::Ending;
use crate::rpc::memory::Written;
use crate::testing::{TestCore, id_token, login_external};

fn usage() -> Value {
    json!({"plan_type": "pro", "rate_limit": {"primary_window": {"used_percent": 42, "limit_window_seconds": 3600, "reset_at": 1}}})
}

/// A usage endpoint that accepts `good` and answers 401 otherwise (after `delay`).
async fn backend(good: &str, delay: Duration) -> MockServer {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/codex/usage"))
        .and(header("authorization", format!("Bearer {good}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(usage())
                .set_delay(delay),
        )
        .with_priority(1)
        .mount(&backend)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "expired"})))
        .with_priority(10)
        .mount(&backend)
        .await;
    backend
}

fn base_url(backend: &MockServer) -> String {
    format!("chatgpt_base_url=\"{}\"", backend.uri())
}

#[tokio::test]
async fn a_reply_precedes_the_notifications_it_causes_and_others_see_them_in_order() {
    let core = TestCore::new(&[]);
    let mut caller = core.connect();
    let mut other = core.connect();
    caller.initialize().await;
    other.initialize().await;
    let id = caller.request(
        "account/login/start",
        json!({"type": "apiKey", "apiKey": "sk-test"}),
    );
    assert_eq!(
        caller.next_json().await,
        json!({"id": id, "result": {"type": "apiKey"}})
    );
    let completed = json!({"method": "account/login/completed", "params": {"loginId": null, "success": true, "error": null}});
    let updated =
        json!({"method": "account/updated", "params": {"authMode": "apikey", "planType": null}});
    assert_eq!(caller.next_json().await, completed);
    assert_eq!(caller.next_json().await, updated);
    assert_eq!(other.next_json().await, completed);
    assert_eq!(other.next_json().await, updated);
}

#[tokio::test]
async fn initialize_completes_before_the_next_frame_is_looked_at() {
    let core = TestCore::new(&[]);
    let mut client = core.connect();
    client.send(json!({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "n", "version": "1"}}}));
    client.send(json!({"id": 2, "method": "account/read"}));
    assert!(client.next_json().await["result"]["userAgent"].is_string());
    assert_eq!(
        client.next_json().await,
        json!({"id": 2, "result": {"account": null, "requiresOpenaiAuth": true}})
    );
}

#[tokio::test]
async fn connections_join_the_broadcasts_only_once_initialized() {
    let core = TestCore::new(&[]);
    let mut caller = core.connect();
    let mut bystander = core.connect();
    caller.initialize().await;
    caller.call("account/logout", json!({})).await;
    assert_eq!(caller.next_json().await["method"], json!("account/updated"));
    // The bystander got nothing: its first message is the reply to its own request.
    let reply = bystander.call("account/read", json!({})).await;
    assert_eq!(reply["error"]["message"], json!("Not initialized"));
    assert!(
        bystander
            .next_json_within(Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_batch_reply_precedes_what_its_requests_caused() {
    let core = TestCore::new(&[]);
    let mut client = core.connect();
    client.initialize().await;
    client.send(json!([
        {"id": 10, "method": "account/login/start", "params": {"type": "apiKey", "apiKey": "sk-batch"}},
        {"id": 11, "method": "no/such"}
    ]));
    let reply = client.next_json().await;
    let entries = reply.as_array().expect("one array reply");
    assert_eq!(entries.len(), 2);
    assert!(entries.contains(&json!({"id": 10, "result": {"type": "apiKey"}})));
    assert!(entries.contains(
        &json!({"id": 11, "error": {"code": -32601, "message": "Method not found: no/such"}})
    ));
    assert_eq!(
        client.next_json().await["method"],
        json!("account/login/completed")
    );
    assert_eq!(client.next_json().await["method"], json!("account/updated"));
}

#[tokio::test]
async fn refresh_requests_go_to_the_owner_and_concurrent_401s_share_one() {
    let backend = backend("fresh", Duration::ZERO).await;
    let core = TestCore::new(&[&base_url(&backend)]);
    let mut owner = core.connect();
    let mut reader = core.connect();
    owner.initialize().await;
    reader.initialize().await;
    login_external(&mut owner, "stale").await;
    assert_eq!(
        reader.next_json().await["method"],
        json!("account/login/completed")
    );
    assert_eq!(reader.next_json().await["method"], json!("account/updated"));
    let ids: Vec<i64> = (0..5)
        .map(|_| reader.request("account/rateLimits/read", json!({})))
        .collect();
    let refresh = owner.next_json().await;
    assert_eq!(
        refresh["method"],
        json!("account/chatgptAuthTokens/refresh")
    );
    assert_eq!(
        refresh["params"],
        json!({"reason": "unauthorized", "previousAccountId": "org-e"})
    );
    owner.send(json!({"id": refresh["id"], "result": {"idToken": id_token("e@example.com", "org-e"), "accessToken": "fresh"}}));
    for id in ids {
        let reply = reader.reply(id).await;
        assert_eq!(
            reply["result"]["rateLimits"]["primary"]["usedPercent"],
            json!(42),
            "{reply}"
        );
    }
    // The owner saw exactly one refresh request, and the reader none.
    let rest = owner.next_json_within(Duration::from_millis(100)).await;
    assert!(
        rest.as_ref()
            .is_none_or(|message| message["method"] == json!("account/rateLimits/updated")),
        "{rest:?}"
    );
    let rest = reader.next_json_within(Duration::from_millis(100)).await;
    assert!(
        rest.as_ref()
            .is_none_or(|message| message["method"] == json!("account/rateLimits/updated")),
        "{rest:?}"
    );
}

#[tokio::test]
async fn cancel_request_stops_a_read_but_not_a_state_change() {
    let backend = backend("slow", Duration::from_secs(30)).await;
    let core = TestCore::new(&[&base_url(&backend)]);
    let mut client = core.connect();
    client.initialize().await;
    login_external(&mut client, "slow").await;
    let read = client.request("account/rateLimits/read", json!({}));
    client.send(json!({"method": "$/cancelRequest", "params": {"id": read}}));
    assert_eq!(
        client.next_json().await,
        json!({"id": read, "error": {"code": -32800, "message": "Request cancelled"}})
    );
    // A logout is not cancellable: it completes and is answered as usual.
    let logout = client.request("account/logout", json!({}));
    client.send(json!({"method": "$/cancelRequest", "params": {"id": logout}}));
    assert_eq!(
        client.next_json().await,
        json!({"id": logout, "result": {}})
    );
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused() {
    let backend = backend("slow", Duration::from_secs(30)).await;
    let core = TestCore::new(&[&base_url(&backend), "server.max_in_flight_per_connection=1"]);
    let mut client = core.connect();
    client.initialize().await;
    login_external(&mut client, "slow").await;
    client.request("account/rateLimits/read", json!({}));
    let refused = client.call("account/read", json!({})).await;
    assert_eq!(
        refused["error"],
        json!({"code": -32001, "message": "Server overloaded; retry later."})
    );
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_with_1008() {
    let core = TestCore::new(&["server.outbound_queue_messages=4"]);
    let mut client = core.connect();
    client.initialize().await;
    client.set_reading(false);
    for _ in 0..20 {
        client.request("account/read", json!({}));
    }
    client.set_reading(true);
    loop {
        match client.next().await {
            Written::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (1008, "outbound queue full"));
                break;
            }
            Written::Text(_) | Written::Ping => continue,
        }
    }
    assert_eq!(client.ending().await, Ending::Overflowed);
}

#[tokio::test]
async fn shutdown_lets_a_running_request_finish_then_closes_with_1001() {
    let backend = backend("slow", Duration::from_millis(300)).await;
    let core = TestCore::new(&[&base_url(&backend)]);
    let mut client = core.connect();
    client.initialize().await;
    login_external(&mut client, "slow").await;
    let id = client.request("account/rateLimits/read", json!({}));
    // The request is running once the backend has it.
    while backend
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        tokio::task::yield_now().await;
    }
    core.shutdown.cancel();
    let reply = client.reply(id).await;
    assert!(reply.get("result").is_some(), "{reply}");
    loop {
        match client.next().await {
            Written::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
                break;
            }
            Written::Text(_) | Written::Ping => continue,
        }
    }
    assert_eq!(client.ending().await, Ending::Shutdown);
}

#[tokio::test]
async fn closing_the_input_ends_the_connection_and_fails_its_pending_server_requests() {
    let backend = backend("never", Duration::ZERO).await;
    let core = TestCore::new(&[&base_url(&backend)]);
    let mut owner = core.connect();
    let mut reader = core.connect();
    owner.initialize().await;
    reader.initialize().await;
    login_external(&mut owner, "stale").await;
    let id = reader.request("account/rateLimits/read", json!({}));
    assert_eq!(
        owner.next_json().await["method"],
        json!("account/chatgptAuthTokens/refresh")
    );
    owner.close_input();
    assert_eq!(owner.ending().await, Ending::PeerClosed);
    let reply = reader.reply(id).await;
    assert_eq!(
        reply["error"]["message"],
        json!(
            "failed to fetch codex rate limits: no connected client can refresh external auth tokens"
        )
    );
}
