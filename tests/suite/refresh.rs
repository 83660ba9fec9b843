//! Backend calls through the 401 layer: refresh via the owning client, managed refresh grants,
//! rate limits (SPEC §7, §9, §13 scenarios 4–7, 26–28, 40–44).

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    Client, TestServer, backend_accepting, backend_accepting_counted, idt, jwt, managed_auth,
    now_rfc3339, unauthorized, usage_body, usage_snapshot, write_auth,
};

const REFRESH: &str = "account/chatgptAuthTokens/refresh";

async fn server_for(backend: &MockServer, extra: &[&str]) -> TestServer {
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let mut overrides = vec![base.as_str()];
    overrides.extend_from_slice(extra);
    TestServer::start(&overrides).await
}

async fn login_external(client: &mut Client, email: &str, workspace: &str, access: &str) {
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": idt(email, "pro", workspace), "accessToken": access}),
        )
        .await;
    assert_eq!(
        reply["result"],
        json!({"type": "chatgptAuthTokens"}),
        "{reply}"
    );
    client.notification("account/login/completed").await;
    client.notification("account/updated").await;
}

async fn requests(backend: &MockServer) -> Vec<Request> {
    backend.received_requests().await.unwrap_or_default()
}

fn header_of(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

fn rl(text: &str) -> Value {
    json!({"code": -32603, "message": format!("failed to fetch codex rate limits: {text}")})
}

#[tokio::test]
async fn a_401_is_recovered_through_the_owning_client() {
    let backend = backend_accepting(&["access-refreshed"]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    login_external(
        &mut client,
        "initial@example.com",
        "org-initial",
        "access-initial",
    )
    .await;
    client
        .send(json!({"id": 9, "method": "account/rateLimits/read"}))
        .await;
    let request = client.server_request(REFRESH).await;
    assert_eq!(
        request,
        json!({"id": 0, "method": REFRESH, "params": {"reason": "unauthorized", "previousAccountId": "org-initial"}})
    );
    client
        .send(json!({"id": 0, "result": {"idToken": idt("refreshed@example.com", "pro", "org-refreshed"), "accessToken": "access-refreshed"}}))
        .await;
    assert_eq!(
        client.response(9).await,
        json!({"id": 9, "result": {"rateLimits": usage_snapshot()}})
    );

    let seen = requests(&backend).await;
    assert_eq!(seen.len(), 2, "exactly one retry");
    assert_eq!(
        header_of(&seen[0], "authorization").as_deref(),
        Some("Bearer access-initial")
    );
    assert_eq!(
        header_of(&seen[0], "chatgpt-account-id").as_deref(),
        Some("org-initial")
    );
    assert_eq!(
        header_of(&seen[1], "authorization").as_deref(),
        Some("Bearer access-refreshed")
    );
    assert_eq!(
        header_of(&seen[1], "chatgpt-account-id").as_deref(),
        Some("org-refreshed")
    );
    for request in &seen {
        assert_eq!(
            header_of(request, "originator").as_deref(),
            Some("codex-app-server-tests")
        );
        let user_agent = header_of(request, "user-agent").unwrap();
        assert!(
            user_agent.starts_with("codex-app-server-tests/"),
            "{user_agent}"
        );
        assert!(
            user_agent.ends_with("(codex-app-server-tests; 0.1.0)"),
            "{user_agent}"
        );
        assert!(
            !request.url.as_str().contains("access-"),
            "tokens never go in URLs"
        );
    }
    // The new identity is in effect, with no account/updated for a refresh.
    let account = client.call("account/read", json!({})).await;
    assert_eq!(
        account["result"]["account"]["email"],
        json!("refreshed@example.com")
    );
    client
        .assert_no_method(Duration::from_millis(200), "account/updated")
        .await;
}

#[tokio::test]
async fn a_401_is_recovered_with_the_later_token_shape() {
    let backend = backend_accepting(&["ACCESS-REFRESHED-JWT"]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    let initial = jwt(
        json!({"email": "initial@example.com", "https://api.openai.com/auth": {"chatgpt_plan_type": "pro"}}),
    );
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "accessToken": initial, "chatgptAccountId": "org-initial", "chatgptPlanType": "pro"}),
        )
        .await;
    assert_eq!(reply["result"], json!({"type": "chatgptAuthTokens"}));
    client.notification("account/updated").await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    assert_eq!(request["params"]["previousAccountId"], json!("org-initial"));
    // The backend accepts a JWT access token named below; build it so its claims carry an email.
    let refreshed = jwt(json!({"email": "refreshed@example.com"}));
    backend.reset().await;
    let good = format!("Bearer {refreshed}");
    Mock::given(method("GET"))
        .and(header("authorization", good.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body()))
        .mount(&backend)
        .await;
    client
        .send(json!({"id": request["id"], "result": {"accessToken": refreshed, "chatgptAccountId": "org-refreshed", "chatgptPlanType": "plus"}}))
        .await;
    assert_eq!(
        client.result(id).await,
        json!({"rateLimits": usage_snapshot()})
    );
    let seen = requests(&backend).await;
    assert_eq!(
        header_of(&seen[0], "chatgpt-account-id").as_deref(),
        Some("org-refreshed")
    );
    let account = client.call("account/read", json!({})).await;
    assert_eq!(
        account["result"]["account"],
        json!({"type": "chatgpt", "email": "refreshed@example.com", "planType": "plus"})
    );
}

#[tokio::test]
async fn a_client_error_reply_fails_fast_without_a_second_refresh() {
    let backend = backend_accepting(&[]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    login_external(
        &mut client,
        "initial@example.com",
        "org-initial",
        "access-initial",
    )
    .await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    client
        .send(json!({"id": request["id"], "error": {"code": -32000, "message": "refresh failed"}}))
        .await;
    assert_eq!(
        client.response(id).await["error"],
        rl("auth refresh request failed: code=-32000 message=refresh failed")
    );
    assert_eq!(requests(&backend).await.len(), 1);
    client
        .assert_no_method(Duration::from_millis(300), REFRESH)
        .await;
}

#[tokio::test]
async fn a_refresh_reply_for_the_wrong_workspace_is_rejected() {
    let backend = backend_accepting(&["access-refreshed"]).await;
    let server = server_for(&backend, &["forced_chatgpt_workspace_id=\"org-expected\""]).await;
    let mut client = server.client().await;
    login_external(
        &mut client,
        "e@example.com",
        "org-expected",
        "access-initial",
    )
    .await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    client
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org-other"), "accessToken": "access-refreshed"}}))
        .await;
    assert_eq!(
        client.response(id).await["error"],
        rl(
            "external auth refresh returned workspace Some(\"org-other\"), expected \"org-expected\""
        )
    );
    // Later shape, same rule.
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    client
        .send(json!({"id": request["id"], "result": {"accessToken": jwt(json!({"email": "e@example.com"})), "chatgptAccountId": "org-other"}}))
        .await;
    assert_eq!(
        client.response(id).await["error"],
        rl(
            "external auth refresh returned workspace Some(\"org-other\"), expected \"org-expected\""
        )
    );
    assert_eq!(
        requests(&backend).await.len(),
        2,
        "no retry after a rejected refresh"
    );
}

#[tokio::test]
async fn invalid_refresh_replies_are_rejected() {
    let backend = backend_accepting(&[]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let cases = [
        (
            json!({"accessToken": "access-refreshed", "idToken": "not-a-jwt"}),
            "invalid ID token format".to_owned(),
        ),
        (
            json!({"accessToken": "not-a-jwt", "chatgptAccountId": "org"}),
            "invalid ID token format".to_owned(),
        ),
    ];
    for (reply, text) in cases {
        let id = client.request("account/rateLimits/read", Value::Null).await;
        let request = client.server_request(REFRESH).await;
        client
            .send(json!({"id": request["id"], "result": reply}))
            .await;
        assert_eq!(client.response(id).await["error"], rl(&text));
    }
    for reply in [
        json!("just a string"),
        json!({"idToken": idt("e@x.com", "pro", "o")}),
        json!({"accessToken": "a"}),
    ] {
        let id = client.request("account/rateLimits/read", Value::Null).await;
        let request = client.server_request(REFRESH).await;
        client
            .send(json!({"id": request["id"], "result": reply}))
            .await;
        let error = client.response(id).await["error"].clone();
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("failed to fetch codex rate limits: invalid auth refresh response: "),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_silent_owner_times_out_and_a_late_reply_is_ignored() {
    let backend = backend_accepting(&["access-refreshed"]).await;
    let server = server_for(&backend, &["auth.external_refresh_timeout_secs=2"]).await;
    let mut client = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    let reply = client.response(id).await;
    assert_eq!(
        reply["error"],
        rl("auth refresh request timed out after 2s")
    );
    client
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org"), "accessToken": "access-refreshed"}}))
        .await;
    client
        .assert_none(
            Duration::from_millis(300),
            "anything after a late reply",
            |_| true,
        )
        .await;
    // The late reply changed nothing: the next read asks again.
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    client
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org"), "accessToken": "access-refreshed"}}))
        .await;
    assert!(client.response(id).await.get("result").is_some());
}

#[tokio::test]
async fn concurrent_401s_cause_exactly_one_refresh() {
    let (backend, unauthorized_answers) = backend_accepting_counted(&["access-refreshed"]).await;
    let server = server_for(&backend, &[]).await;
    let mut owner = server.client().await;
    login_external(&mut owner, "e@example.com", "org", "access-initial").await;
    // 200 reads from four connections (each stays under its in-flight limit of 128).
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut reader = server.client().await;
        let mut ids = Vec::new();
        for _ in 0..50 {
            ids.push(reader.request("account/rateLimits/read", Value::Null).await);
        }
        readers.push((reader, ids));
    }
    let request = owner.server_request(REFRESH).await;
    // Every read has had its 401 before the refresh is answered.
    unauthorized_answers.wait_for(200).await;
    owner
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org"), "accessToken": "access-refreshed"}}))
        .await;
    for (reader, ids) in &mut readers {
        for id in ids.iter() {
            assert_eq!(
                reader.result(*id).await,
                json!({"rateLimits": usage_snapshot()})
            );
        }
    }
    owner
        .assert_no_method(Duration::from_millis(300), REFRESH)
        .await;
    let seen = requests(&backend).await;
    let stale = seen
        .iter()
        .filter(|r| header_of(r, "authorization").as_deref() == Some("Bearer access-initial"))
        .count();
    assert_eq!(
        seen.len() - stale,
        200,
        "each read retried once with the new token"
    );
    assert_eq!(
        stale, 200,
        "each read was first signed with the stale token"
    );
}

#[tokio::test]
async fn a_second_401_is_surfaced_without_a_loop() {
    let backend = backend_accepting(&[]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    client
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org"), "accessToken": "access-refreshed"}}))
        .await;
    let url = format!("{}/api/codex/usage", backend.uri());
    assert_eq!(
        client.response(id).await["error"],
        rl(&format!(
            "GET {url} failed: 401 Unauthorized; content-type=application/json; body={{\"error\":{{\"message\":\"unauthorized\"}}}}"
        ))
    );
    assert_eq!(requests(&backend).await.len(), 2);
    client
        .assert_no_method(Duration::from_millis(300), REFRESH)
        .await;
}

#[tokio::test]
async fn refresh_requests_go_to_the_owner_only() {
    let backend = backend_accepting(&["access-refreshed"]).await;
    let server = server_for(&backend, &[]).await;
    let mut owner = server.client().await;
    let mut reader = server.client().await;
    login_external(&mut owner, "e@example.com", "org", "access-initial").await;
    let id = reader.request("account/rateLimits/read", Value::Null).await;
    let request = owner.server_request(REFRESH).await;
    owner
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org"), "accessToken": "access-refreshed"}}))
        .await;
    assert_eq!(
        reader.result(id).await,
        json!({"rateLimits": usage_snapshot()})
    );
    reader
        .assert_no_method(Duration::from_millis(300), REFRESH)
        .await;

    // The owner leaves; the tokens stay, but nobody can refresh them.
    owner.close().await;
    backend.reset().await;
    Mock::given(method("GET"))
        .respond_with(unauthorized())
        .mount(&backend)
        .await;
    let id = reader.request("account/rateLimits/read", Value::Null).await;
    assert_eq!(
        reader.response(id).await["error"],
        rl("no connected client can refresh external auth tokens")
    );
    assert_eq!(
        reader.call("account/read", json!({})).await["result"]["account"]["email"],
        json!("e@example.com")
    );
}

#[tokio::test]
async fn an_owner_disconnecting_mid_refresh_fails_waiters_at_once() {
    let backend = backend_accepting(&[]).await;
    let server = server_for(&backend, &["auth.external_refresh_timeout_secs=30"]).await;
    let mut owner = server.client().await;
    let mut reader = server.client().await;
    login_external(&mut owner, "e@example.com", "org", "access-initial").await;
    let id = reader.request("account/rateLimits/read", Value::Null).await;
    owner.server_request(REFRESH).await;
    // The refresh would wait 30 s for a silent owner; a gone one fails it at once (`response`
    // gives up after 10 s).
    drop(owner);
    assert_eq!(
        reader.response(id).await["error"],
        rl("no connected client can refresh external auth tokens")
    );
}

#[tokio::test]
async fn logout_during_a_refresh_discards_the_reply() {
    let backend = backend_accepting(&["access-refreshed"]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client.server_request(REFRESH).await;
    client.call("account/logout", json!({})).await;
    client
        .send(json!({"id": request["id"], "result": {"idToken": idt("e@example.com", "pro", "org"), "accessToken": "access-refreshed"}}))
        .await;
    let error = client.response(id).await["error"].clone();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("401 Unauthorized"),
        "{error}"
    );
    assert_eq!(
        client.call("account/read", json!({})).await["result"]["account"],
        json!(null)
    );
    assert_eq!(requests(&backend).await.len(), 1);
}

#[tokio::test]
async fn rate_limits_need_chatgpt_credentials() {
    let backend = backend_accepting(&[]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    let reply = client.call("account/rateLimits/read", Value::Null).await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "codex account authentication required to read rate limits"})
    );
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-test-key"}),
        )
        .await;
    let reply = client.call("account/rateLimits/read", Value::Null).await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "chatgpt authentication required to read rate limits"})
    );
    assert!(
        requests(&backend).await.is_empty(),
        "an API key never reaches the backend"
    );
    client
        .assert_no_method(Duration::from_millis(300), REFRESH)
        .await;
}

#[tokio::test]
async fn managed_credentials_sign_backend_calls() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/codex/usage"))
        .and(header("authorization", "Bearer chatgpt-token"))
        .and(header("chatgpt-account-id", "account-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body()))
        .mount(&backend)
        .await;
    let server = server_for(&backend, &[]).await;
    write_auth(
        server.home(),
        &managed_auth(
            "user@example.com",
            "pro",
            "account-123",
            "chatgpt-token",
            "refresh-token",
            &now_rfc3339(),
        ),
    );
    let mut client = server.client().await;
    let reply = client.call("account/rateLimits/read", Value::Null).await;
    assert_eq!(reply["result"], json!({"rateLimits": usage_snapshot()}));
}

#[tokio::test]
async fn a_managed_401_runs_one_refresh_grant_and_retries() {
    let backend = backend_accepting(&["access-new"]).await;
    let issuer = MockServer::start().await;
    let new_id_token = idt("user@example.com", "pro", "account-123");
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({
            "client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token",
            "refresh_token": "refresh-old", "scope": "openid profile email"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id_token": new_id_token, "access_token": "access-new", "refresh_token": "refresh-new"})))
        .expect(1)
        .mount(&issuer)
        .await;
    let refresh_url = format!("auth.refresh_token_url=\"{}/oauth/token\"", issuer.uri());
    let server = server_for(&backend, &[&refresh_url]).await;
    write_auth(
        server.home(),
        &managed_auth(
            "user@example.com",
            "pro",
            "account-123",
            "access-old",
            "refresh-old",
            &now_rfc3339(),
        ),
    );
    std::fs::set_permissions(
        server.auth_json(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let mut client = server.client().await;
    let reply = client.call("account/rateLimits/read", Value::Null).await;
    assert_eq!(reply["result"], json!({"rateLimits": usage_snapshot()}));
    issuer.verify().await;
    let grant = &requests(&issuer).await[0];
    let originator = header_of(grant, "originator");
    assert_eq!(originator.as_deref(), Some("codex-app-server-tests"));
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(server.auth_json()).unwrap()).unwrap();
    assert_eq!(written["tokens"]["access_token"], json!("access-new"));
    assert_eq!(written["tokens"]["refresh_token"], json!("refresh-new"));
    assert_eq!(written["tokens"]["account_id"], json!("account-123"));
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(server.auth_json()).unwrap().permissions()
        ) & 0o777,
        0o600
    );
    assert_eq!(requests(&backend).await.len(), 2);
}

#[tokio::test]
async fn rate_limit_updates_are_broadcast_when_they_change() {
    let backend = backend_accepting(&["access-initial"]).await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    let mut watcher = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    assert_eq!(
        client.next_json().await["id"],
        json!(id),
        "the reply precedes the notification"
    );
    assert_eq!(
        client.notification("account/rateLimits/updated").await,
        json!({"rateLimits": usage_snapshot()})
    );
    assert_eq!(
        watcher.notification("account/rateLimits/updated").await,
        json!({"rateLimits": usage_snapshot()})
    );
    client.call("account/rateLimits/read", Value::Null).await;
    watcher
        .assert_no_method(Duration::from_millis(300), "account/rateLimits/updated")
        .await;
}

#[tokio::test]
async fn backend_failures_have_clear_messages() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("not json", "text/plain"))
        .mount(&backend)
        .await;
    let server = server_for(&backend, &[]).await;
    let mut client = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let url = format!("{}/api/codex/usage", backend.uri());
    let message = client.call("account/rateLimits/read", Value::Null).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(&format!(
            "failed to fetch codex rate limits: Decode error for {url}: "
        )),
        "{message}"
    );
    assert!(
        message.ends_with("; content-type=text/plain; body=not json"),
        "{message}"
    );

    backend.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_raw("down", "text/plain"))
        .mount(&backend)
        .await;
    let reply = client.call("account/rateLimits/read", Value::Null).await;
    assert_eq!(
        reply["error"],
        rl(&format!(
            "GET {url} failed: 503 Service Unavailable; content-type=text/plain; body=down"
        ))
    );

    // A backend that is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "chatgpt_base_url=\"http://{}\"",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let server = TestServer::start(&[&dead]).await;
    let mut client = server.client().await;
    login_external(&mut client, "e@example.com", "org", "access-initial").await;
    let reply = client.call("account/rateLimits/read", Value::Null).await;
    assert_eq!(reply["error"]["code"], json!(-32603));
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to fetch codex rate limits: GET http://"),
        "{reply}"
    );
}
