//! Server core: transport, envelope, handshake, batches, limits, liveness, stdio (SPEC §2–4).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Arrivals, Child, Client, TestServer, eventually, idt, usage_body};

fn is_reply(id: i64) -> impl Fn(&Value) -> bool {
    move |v| v.get("id") == Some(&json!(id))
}

#[tokio::test]
async fn requests_before_initialize_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    let reply = client.call("account/read", json!({})).await;
    assert_eq!(
        reply,
        json!({"id": 101, "error": {"code": -32600, "message": "Not initialized"}})
    );
}

#[tokio::test]
async fn initialize_reports_user_agent_home_and_platform() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    let reply = client.initialize().await;
    let result = &reply["result"];
    let user_agent = result["userAgent"].as_str().unwrap();
    assert!(
        user_agent.starts_with(&format!(
            "codex-app-server-tests/{} (",
            env!("CARGO_PKG_VERSION")
        )),
        "{user_agent}"
    );
    assert!(
        user_agent.ends_with(") (codex-app-server-tests; 0.1.0)"),
        "{user_agent}"
    );
    assert_eq!(
        result["codexHome"],
        json!(server.home().display().to_string())
    );
    assert_eq!(result["platformFamily"], json!("unix"));
    assert_eq!(result["platformOs"], json!(std::env::consts::OS));

    let again = client
        .call(
            "initialize",
            json!({"clientInfo": {"name": "x", "version": "1"}}),
        )
        .await;
    assert_eq!(
        again["error"],
        json!({"code": -32600, "message": "Already initialized"})
    );
}

#[tokio::test]
async fn client_names_must_be_header_values_and_a_failed_initialize_can_be_retried() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    let reply = client
        .call(
            "initialize",
            json!({"clientInfo": {"name": "bad\rname", "title": null, "version": "0.1.0"}}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "Invalid clientInfo.name: 'bad\rname'. Must be a valid HTTP header value."})
    );
    assert!(reply["error"].get("data").is_none());
    let missing = client.call("initialize", json!({})).await;
    assert_eq!(missing["error"]["code"], json!(-32602));
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid params: missing field `clientInfo`"),
        "{missing}"
    );
    client.initialize().await;
}

#[tokio::test]
async fn first_client_names_the_originator() {
    let server = TestServer::start(&[]).await;
    let mut first = server.connect().await;
    let reply = first
        .call("initialize", json!({"clientInfo": {"name": "codex_vscode", "title": "Codex VS Code Extension", "version": "0.1.0"}}))
        .await;
    assert!(
        reply["result"]["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("codex_vscode/")
    );
    let mut second = server.connect().await;
    let reply = second
        .call(
            "initialize",
            json!({"clientInfo": {"name": "other", "version": "2"}}),
        )
        .await;
    let user_agent = reply["result"]["userAgent"].as_str().unwrap();
    assert!(user_agent.starts_with("codex_vscode/"), "{user_agent}");
    assert!(user_agent.ends_with("(other; 2)"), "{user_agent}");
}

/// `authbridge serve` on a loopback port without WebSocket auth, with `env` added.
async fn spawn_without_auth(home: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let home = home.to_str().unwrap();
    let args = [
        "--home",
        home,
        "--listen",
        "ws://127.0.0.1:0",
        "--ws-auth",
        "none",
    ];
    Child::spawn(&args, env).await
}

#[tokio::test]
async fn originator_env_override() {
    let home = tempfile::tempdir().unwrap();
    let child = spawn_without_auth(
        home.path(),
        &[(
            "CODEX_INTERNAL_ORIGINATOR_OVERRIDE",
            "codex_originator_via_env_var",
        )],
    )
    .await;
    let mut client = Client::connect(child.url.as_deref().unwrap(), None).await;
    let reply = client.initialize().await;
    assert!(
        reply["result"]["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("codex_originator_via_env_var/"),
        "{reply}"
    );
}

#[tokio::test]
async fn ids_are_echoed_byte_for_byte() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for id in [
        "-7",
        "\"abc-1\"",
        "18446744073709551616",
        "-99999999999999999999",
        "\"\\u00e9\"",
        "0",
    ] {
        client
            .send_text(format!("{{\"id\":{id},\"method\":\"account/read\"}}"))
            .await;
        let text = client.next_text().await;
        assert_eq!(
            text,
            format!("{{\"id\":{id},\"result\":{{\"account\":null,\"requiresOpenaiAuth\":true}}}}")
        );
    }
    for bad in ["1.5", "1e3", "null", "true", "[1]", "{\"a\":1}"] {
        client
            .send_text(format!("{{\"id\":{bad},\"method\":\"account/read\"}}"))
            .await;
        assert_eq!(
            client.next_json().await,
            json!({"id": null, "error": {"code": -32600, "message": "Invalid request: invalid id"}})
        );
    }
}

#[tokio::test]
async fn jsonrpc_member_follows_initialize() {
    let server = TestServer::start(&[]).await;

    let mut strict = server.connect().await;
    strict
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "account/read"}))
        .await;
    assert_eq!(
        strict.next_json().await,
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32600, "message": "Not initialized"}})
    );
    strict
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"clientInfo": {"name": "strict", "version": "1"}}}))
        .await;
    assert_eq!(strict.next_json().await["jsonrpc"], json!("2.0"));
    strict
        .send(json!({"id": 3, "method": "account/read"}))
        .await;
    assert_eq!(
        strict.next_json().await,
        json!({"jsonrpc": "2.0", "id": 3, "result": {"account": null, "requiresOpenaiAuth": true}})
    );
    strict.send_text("not json").await;
    assert_eq!(
        strict.next_json().await,
        json!({"id": null, "error": {"code": -32700, "message": "Parse error"}})
    );

    let mut plain = server.client().await;
    plain
        .send(json!({"jsonrpc": "2.0", "id": 4, "method": "account/read"}))
        .await;
    assert_eq!(
        plain.next_json().await,
        json!({"id": 4, "result": {"account": null, "requiresOpenaiAuth": true}})
    );
    plain
        .send(json!({"jsonrpc": "1.0", "id": 5, "method": "account/read"}))
        .await;
    assert_eq!(
        plain.next_json().await,
        json!({"id": 5, "error": {"code": -32600, "message": "Invalid request: jsonrpc must be \"2.0\""}})
    );

    // Notifications carry the member only on the strict connection.
    plain
        .send(json!({"id": 6, "method": "account/login/start", "params": {"type": "apiKey", "apiKey": "sk-test-key"}}))
        .await;
    assert!(plain.response(6).await.get("jsonrpc").is_none());
    let strict_note = strict
        .wait_for("account/updated", |v| {
            v["method"] == json!("account/updated")
        })
        .await;
    assert_eq!(strict_note["jsonrpc"], json!("2.0"));
    let plain_note = plain
        .wait_for("account/updated", |v| {
            v["method"] == json!("account/updated")
        })
        .await;
    assert!(plain_note.get("jsonrpc").is_none());
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_connection_lives_on() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    client.send_text("this is not json").await;
    assert_eq!(
        client.next_json().await,
        json!({"id": null, "error": {"code": -32700, "message": "Parse error"}})
    );
    let reply = client.call("no/such/method", json!({})).await;
    assert_eq!(
        reply["error"],
        json!({"code": -32601, "message": "Method not found: no/such/method"})
    );
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": 12345}),
        )
        .await;
    assert_eq!(reply["error"]["code"], json!(-32602));
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid params: ")
    );
    let reply = client
        .call("account/login/start", json!({"type": "bogus"}))
        .await;
    assert_eq!(reply["error"]["code"], json!(-32602));
    for garbage in [
        "42",
        "\"x\"",
        "{\"id\":1}",
        "{\"method\":5,\"id\":9}",
        "{\"id\":1,\"id\":2,\"method\":\"m\"}",
    ] {
        client.send_text(garbage).await;
        let reply = client.next_json().await;
        assert_eq!(reply["error"]["code"], json!(-32600), "{garbage} → {reply}");
    }
    client
        .send_raw(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let reply = client.call("account/read", json!(null)).await;
    assert_eq!(reply["result"]["account"], json!(null));
}

#[tokio::test]
async fn unknown_methods_come_before_the_handshake_check() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    let reply = client.call("no/such/method", json!({})).await;
    assert_eq!(reply["error"]["code"], json!(-32601));
    let reply = client.call("account/login/start", json!({"type": 1})).await;
    assert_eq!(
        reply["error"]["code"],
        json!(-32602),
        "params are checked before the handshake"
    );
}

#[tokio::test]
async fn batches() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    client
        .send_text(r#"[{"id":901,"method":"account/read"},{"id":902,"method":"account/read","params":{}}]"#)
        .await;
    let reply = client.next_json().await;
    let mut ids: Vec<i64> = reply
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![901, 902]);

    client.send_text("[]").await;
    assert_eq!(
        client.next_json().await,
        json!({"id": null, "error": {"code": -32600, "message": "Invalid request: empty batch"}})
    );
    let big = format!(
        "[{}]",
        vec![r#"{"id":1,"method":"account/read"}"#; 65].join(",")
    );
    client.send_text(big).await;
    assert_eq!(
        client.next_json().await,
        json!({"id": null, "error": {"code": -32600, "message": "Invalid request: batch exceeds 64 entries"}})
    );

    // A batch of notifications gets no reply; invalid entries get errors in the array.
    client.send_text(r#"[{"method":"initialized"}]"#).await;
    client
        .send_text(r#"[{"method":"initialized"}, 7, {"id":"x","method":"nope"}]"#)
        .await;
    let reply = client.next_json().await;
    let entries = reply.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.contains(&json!({"id": null, "error": {"code": -32600, "message": "Invalid request: expected a JSON object"}})));
    assert!(entries.contains(
        &json!({"id": "x", "error": {"code": -32601, "message": "Method not found: nope"}})
    ));
}

#[tokio::test]
async fn a_batch_can_start_with_initialize() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    client
        .send_text(r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"b","version":"1"}}},{"id":2,"method":"account/read"}]"#)
        .await;
    let reply = client.next_json().await;
    let entries = reply.as_array().unwrap();
    let read = entries.iter().find(|e| e["id"] == json!(2)).unwrap();
    assert_eq!(
        read,
        &json!({"jsonrpc": "2.0", "id": 2, "result": {"account": null, "requiresOpenaiAuth": true}})
    );
}

#[tokio::test]
async fn oversized_frames_close_the_connection_with_1009_and_others_keep_working() {
    let server = TestServer::start(&[]).await;
    let mut other = server.client().await;
    let mut client = server.client().await;
    let huge = format!(
        "{{\"id\":1,\"method\":\"account/read\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let _ = client.send_raw(Message::Text(huge.into())).await;
    let (code, _) = client.closed().await.expect("a close frame");
    assert_eq!(code, 1009);
    let reply = other.call("account/read", json!({})).await;
    assert!(reply.get("result").is_some());
    let mut fresh = server.client().await;
    fresh.call_result("account/read", json!({})).await;
}

#[tokio::test]
async fn frames_up_to_the_limit_are_accepted() {
    let server = TestServer::start(&["server.max_message_bytes=2000"]).await;
    let mut client = server.client().await;
    let message = format!(
        "{{\"id\":5,\"method\":\"account/read\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(1900)
    );
    client.send_text(message).await;
    assert_eq!(client.next_json().await["id"], json!(5));
    let message = format!(
        "{{\"id\":6,\"method\":\"account/read\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(2100)
    );
    client.send_text(message).await;
    assert_eq!(client.closed().await.map(|(code, _)| code), Some(1009));
}

/// Logs a connection in with host-owned tokens so it can read rate limits.
async fn external_login(client: &mut Client) {
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": idt("slow@example.com", "pro", "org-slow"), "accessToken": "access-slow"}),
        )
        .await;
    assert_eq!(reply["result"], json!({"type": "chatgptAuthTokens"}));
}

/// A usage endpoint answering after `delay`, counting the requests that arrive.
async fn slow_backend_counted(delay: Duration) -> (MockServer, Arrivals) {
    let arrivals = Arrivals::new();
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/codex/usage"))
        .respond_with(
            arrivals.answering(
                ResponseTemplate::new(200)
                    .set_body_json(usage_body())
                    .set_delay(delay),
            ),
        )
        .mount(&backend)
        .await;
    (backend, arrivals)
}

async fn slow_backend(delay: Duration) -> MockServer {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/codex/usage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(usage_body())
                .set_delay(delay),
        )
        .mount(&backend)
        .await;
    backend
}

#[tokio::test]
async fn in_flight_limit_answers_server_overloaded() {
    let backend = slow_backend(Duration::from_millis(1500)).await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let server = TestServer::start(&[&base]).await;
    let mut client = server.client().await;
    external_login(&mut client).await;
    let mut ids = Vec::new();
    for _ in 0..129 {
        ids.push(client.request("account/rateLimits/read", json!(null)).await);
    }
    let mut overloaded = 0;
    for id in ids {
        let reply = client.response(id).await;
        if reply.get("error").is_some() {
            assert_eq!(
                reply["error"],
                json!({"code": -32001, "message": "Server overloaded; retry later."})
            );
            overloaded += 1;
        }
    }
    assert_eq!(overloaded, 1);
}

#[tokio::test]
async fn in_flight_limit_is_configurable() {
    let backend = slow_backend(Duration::from_millis(800)).await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let server = TestServer::start(&[&base, "server.max_in_flight_per_connection=2"]).await;
    let mut client = server.client().await;
    external_login(&mut client).await;
    let ids = [
        client.request("account/rateLimits/read", json!(null)).await,
        client.request("account/rateLimits/read", json!(null)).await,
        client.request("account/rateLimits/read", json!(null)).await,
    ];
    let mut errors = 0;
    for id in ids {
        if client.response(id).await.get("error").is_some() {
            errors += 1;
        }
    }
    assert_eq!(errors, 1);
    // Slots free up once requests finish.
    client.call_result("account/read", json!({})).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_without_slowing_others() {
    let server = TestServer::start(&[
        "server.outbound_queue_messages=16",
        "server.max_connections=2",
    ])
    .await;
    // The slow client: a tiny receive buffer, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut request = server.url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", server.token.as_deref().unwrap())).unwrap(),
    );
    let (mut slow, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    use futures::SinkExt;
    slow.send(Message::Text(
        r#"{"id":0,"method":"initialize","params":{"clientInfo":{"name":"slow","version":"1"}}}"#
            .into(),
    ))
    .await
    .unwrap();

    let mut fast = server.client().await;
    let flood = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let frame = r#"{"id":1,"method":"account/read","params":{"padding":"................................................................................................................................................................................................................................................................"}}"#;
        let mut sent = 0u64;
        while tokio::time::Instant::now() < deadline {
            if slow.send(Message::Text(frame.into())).await.is_err() {
                return sent;
            }
            sent += 1;
        }
        panic!("the server never dropped a client that does not read ({sent} frames sent)");
    });
    // Meanwhile the other client is answered.
    for _ in 0..20 {
        fast.call_result("account/read", json!({})).await;
    }
    flood.await.unwrap();
    // The slot the slow client held is free again.
    let mut third = server.client().await;
    third.call_result("account/read", json!({})).await;
}

#[tokio::test]
async fn connection_cap_answers_503() {
    let server = TestServer::start(&["server.max_connections=1"]).await;
    let _first = server.client().await;
    let mut request = server.url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", server.token.as_deref().unwrap())).unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(
                response.body().as_deref(),
                Some(&b"too many connections"[..])
            );
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn two_connections_initialize_independently() {
    let server = TestServer::start(&[]).await;
    let mut ws1 = server.client().await;
    let mut ws2 = server.connect().await;
    ws2.assert_none(Duration::from_millis(250), "message on ws2", |_| true)
        .await;
    let reply = ws2.call("account/read", json!({})).await;
    assert_eq!(reply["error"]["message"], json!("Not initialized"));
    ws2.initialize().await;
    let message = json!({"id": 77, "method": "account/read"});
    ws1.send(message.clone()).await;
    ws2.send(message).await;
    assert_eq!(
        ws1.wait_for("77", is_reply(77)).await["result"]["account"],
        json!(null)
    );
    assert_eq!(
        ws2.wait_for("77", is_reply(77)).await["result"]["account"],
        json!(null)
    );
    ws1.assert_none(Duration::from_millis(200), "a second reply", is_reply(77))
        .await;
}

#[tokio::test]
async fn health_routes_and_http_errors() {
    let server = TestServer::start(&[]).await;
    let http = reqwest::Client::new();
    for route in ["/readyz", "/healthz"] {
        let response = http.get(server.http_url(route)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(
        http.get(server.http_url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.post(server.http_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        http.get(server.http_url("/"))
            .send()
            .await
            .unwrap()
            .status(),
        426
    );
    let mut client = server.client().await;
    client.call_result("account/read", json!({})).await;
}

#[tokio::test]
async fn pings_are_answered() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    client
        .send_raw(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    client.pong().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server =
        TestServer::start(&["server.idle_timeout_secs=1", "server.ping_interval_secs=30"]).await;
    let mut client = server.client().await;
    assert_eq!(
        client.closed().await,
        Some((1001, "connection idle".to_owned()))
    );
}

#[tokio::test]
async fn clients_answering_pings_stay_connected() {
    let server =
        TestServer::start(&["server.idle_timeout_secs=2", "server.ping_interval_secs=1"]).await;
    let mut client = server.client().await;
    // The client only answers pings (tungstenite does so while reading) for longer than the timeout.
    client
        .assert_none(Duration::from_secs(4), "anything", |_| true)
        .await;
    client.call_result("account/read", json!({})).await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_closes_with_1001() {
    let (backend, arrivals) = slow_backend_counted(Duration::from_millis(700)).await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let server = TestServer::start(&[&base]).await;
    let mut client = server.client().await;
    external_login(&mut client).await;
    let id = client.request("account/rateLimits/read", json!(null)).await;
    arrivals.wait_for(1).await;
    let home = server.home.path().to_path_buf();
    assert!(home.join("server.json").exists());
    let stop = tokio::spawn(server.stop());
    let reply = client.response(id).await;
    assert!(reply.get("result").is_some(), "{reply}");
    assert_eq!(
        client.closed().await,
        Some((1001, "server shutting down".to_owned()))
    );
    stop.await.unwrap();
    assert!(!home.join("server.json").exists());
}

#[tokio::test]
async fn during_shutdown_a_pending_refresh_can_still_be_answered() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer access-fresh",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body()))
        .with_priority(1)
        .mount(&backend)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&backend)
        .await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let server = TestServer::start(&[&base]).await;
    let mut client = server.client().await;
    external_login(&mut client).await;
    let id = client.request("account/rateLimits/read", json!(null)).await;
    let request = client
        .server_request("account/chatgptAuthTokens/refresh")
        .await;
    let readyz = server.http_url("/readyz");
    let stop = tokio::spawn(server.stop());
    // Draining: the listener still answers, and says it is not ready.
    eventually("/readyz says 503", || async {
        let response = reqwest::get(&readyz).await.unwrap();
        response.status() == 503 && response.text().await.unwrap() == "shutting down"
    })
    .await;
    // New requests are no longer taken...
    client
        .send(json!({"id": 555, "method": "account/read"}))
        .await;
    // ...but the reply the running request waits for is.
    client
        .send(json!({"id": request["id"], "result": {"idToken": idt("slow@example.com", "pro", "org-slow"), "accessToken": "access-fresh"}}))
        .await;
    assert!(client.response(id).await.get("result").is_some());
    assert_eq!(
        client.closed().await,
        Some((1001, "server shutting down".to_owned()))
    );
    assert!(
        client.all_received().iter().all(|m| m["id"] != json!(555)),
        "no reply to a request sent during shutdown: {:?}",
        client.all_received()
    );
    stop.await.unwrap();
}

#[tokio::test]
async fn sigterm_exits_zero_and_removes_server_json() {
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().to_str().unwrap();
    let mut child = Child::spawn(&["--home", home_arg, "--listen", "ws://127.0.0.1:0"], &[]).await;
    let url = child.url.clone().expect("listening line");
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("server.json")).unwrap())
            .unwrap();
    let mut client = Client::connect(&url, info["token"].as_str()).await;
    client.initialize().await;
    child.terminate();
    assert_eq!(
        client.closed().await,
        Some((1001, "server shutting down".to_owned()))
    );
    assert_eq!(child.exit_code().await, Some(0));
    assert!(!home.path().join("server.json").exists());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (backend, arrivals) = slow_backend_counted(Duration::from_secs(30)).await;
    let home = tempfile::tempdir().unwrap();
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let mut child = Child::spawn(
        &[
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
            "--ws-auth",
            "none",
            "-c",
            &base,
            "-c",
            "server.shutdown_grace_secs=20",
        ],
        &[],
    )
    .await;
    let mut client = Client::connect(child.url.as_deref().unwrap(), None).await;
    client.initialize().await;
    external_login(&mut client).await;
    client.request("account/rateLimits/read", json!(null)).await;
    arrivals.wait_for(1).await;
    child.terminate();
    child
        .stderr_line("shutting down (a second signal exits at once)")
        .await;
    // The request would hold the server for its 20 s grace; the second signal must not wait
    // (`exit_code` gives up after 10 s).
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
    assert!(child.stderr().contains("second signal, exiting now"));
}

#[tokio::test]
async fn stdio_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Child::spawn(
        &[
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            "stdio://",
            "-c",
            "server.max_message_bytes=300",
        ],
        &[],
    )
    .await;
    let mut stdin = child.process.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.process.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("a line")
            .unwrap()
            .expect("stdout open");
        serde_json::from_str(&line).unwrap()
    };
    stdin
        .write_all(b"{\"id\":0,\"method\":\"initialize\",\"params\":{\"clientInfo\":{\"name\":\"stdio\",\"version\":\"1\"}}}\r\n\n")
        .await
        .unwrap();
    assert!(
        next().await["result"]["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("stdio/")
    );
    stdin
        .write_all(b"{\"id\":1,\"method\":\"account/read\"}\n")
        .await
        .unwrap();
    assert_eq!(
        next().await,
        json!({"id": 1, "result": {"account": null, "requiresOpenaiAuth": true}})
    );
    let long = format!(
        "{{\"id\":2,\"method\":\"account/read\",\"params\":{{\"pad\":\"{}\"}}}}\n",
        "x".repeat(400)
    );
    stdin.write_all(long.as_bytes()).await.unwrap();
    assert_eq!(
        next().await,
        json!({"id": null, "error": {"code": -32600, "message": "Invalid request: message exceeds 300 bytes"}})
    );
    stdin
        .write_all(b"garbage\n{\"id\":3,\"method\":\"account/read\"}\n")
        .await
        .unwrap();
    assert_eq!(next().await["error"]["code"], json!(-32700));
    assert_eq!(next().await["id"], json!(3));
    drop(stdin);
    assert_eq!(child.exit_code().await, Some(0));
    assert!(
        !home.path().join("server.json").exists(),
        "stdio writes no server.json"
    );
}

/// The server's environment as it was started (`/proc/<pid>/environ`), entries joined by `:`
/// (glibc may cut `GLIBC_TUNABLES` there in place while reading it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn started_environment(child: &Child) -> String {
    let pid = child.process.id().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    format!(":{}", String::from_utf8_lossy(&environ).replace('\0', ":"))
}

/// After a burst of turns, glibc's per-thread caches would keep ~3 MiB that no trim returns, so
/// the server starts itself again with them off, unless `GLIBC_TUNABLES` already decides.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_server_runs_without_glibcs_thread_caches_unless_told_otherwise() {
    for (given, running) in [
        ("", "GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        (
            "glibc.malloc.arena_max=4",
            "GLIBC_TUNABLES=glibc.malloc.arena_max=4:glibc.malloc.tcache_count=0",
        ),
        (
            "glibc.malloc.tcache_count=7",
            "GLIBC_TUNABLES=glibc.malloc.tcache_count=7",
        ),
    ] {
        let home = tempfile::tempdir().unwrap();
        let child = spawn_without_auth(home.path(), &[("GLIBC_TUNABLES", given)]).await;
        let environment = started_environment(&child);
        let seen: Vec<&str> = environment
            .split(':')
            .filter(|entry| entry.contains("GLIBC_TUNABLES") || entry.starts_with("glibc."))
            .collect();
        assert!(
            environment.contains(&format!(":{running}:")),
            "started with {given:?}, running with {seen:?}"
        );
        assert_eq!(environment.matches("GLIBC_TUNABLES=").count(), 1);
        if given.contains("tcache_count") {
            assert!(!environment.contains("tcache_count=0"), "{seen:?}");
        }
        // Same process, same server: the pid in server.json is the one that serves.
        let running_server = crate::support::server_json(home.path());
        assert_eq!(running_server["pid"], child.process.id().unwrap());
        let mut client = Client::connect(child.url.as_deref().unwrap(), None).await;
        client.initialize().await;
        client.call_result("account/read", json!({})).await;
    }
}
