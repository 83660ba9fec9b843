//! The local Responses endpoint (TURNS §26, conformance scenarios 82–85): the official `openai`
//! packages (npm and PyPI) as clients, every account mode upstream, and the relay's own answers.

use std::time::Duration;

use authbridge::dev_backend::{FakeBackend, Reply};
use serde_json::{Value, json};

use crate::support::turns::{REFRESH, overrides};
use crate::support::{Client, TestServer, idt, repo_root};

/// The fake backend, a server pointed at it (capability-token auth), and a client.
struct Proxied {
    backend: FakeBackend,
    server: TestServer,
    client: Client,
}

impl Proxied {
    async fn start(extra: &[&str]) -> Self {
        let backend = FakeBackend::start().await.unwrap();
        let all = overrides(&backend, extra);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let server = TestServer::start(&all).await;
        let client = server.client().await;
        Self {
            backend,
            server,
            client,
        }
    }

    /// An API-key account (the OpenAI route).
    async fn with_api_key(extra: &[&str]) -> Self {
        let mut proxied = Self::start(extra).await;
        proxied
            .client
            .call_result(
                "account/login/start",
                json!({"type": "apiKey", "apiKey": "sk-upstream-key"}),
            )
            .await;
        proxied
    }

    /// Host-owned ChatGPT tokens (bearer `A`).
    async fn with_host_tokens(extra: &[&str]) -> Self {
        let mut proxied = Self::start(extra).await;
        proxied
            .client
            .login_external("me@example.com", "acct-1", "A")
            .await;
        proxied
    }

    fn token(&self) -> String {
        self.server.token.clone().expect("capability-token auth")
    }

    fn base_url(&self) -> String {
        self.server.http_url("/v1")
    }

    /// Runs one scenario of an SDK script (`node` or `python`); returns its JSON line.
    fn sdk(&self, language: &str, scenario: &str) -> tokio::process::Child {
        let dir = repo_root().join("tests/sdk");
        let mut command = match language {
            "node" => {
                let mut command = tokio::process::Command::new("node");
                command.arg(dir.join("sdk.mjs"));
                command
            }
            _ => {
                let mut command = tokio::process::Command::new("python3");
                command.arg(dir.join("sdk.py"));
                command
            }
        };
        command
            .env("BASE_URL", self.base_url())
            .env("TOKEN", self.token())
            .env("GATE_URL", format!("{}/gate/open", self.backend.url()))
            .env("SCENARIO", scenario)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the SDK script starts")
    }

    async fn sdk_result(&self, language: &str, scenario: &str) -> Value {
        output_of(self.sdk(language, scenario)).await
    }

    fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn post(&self, token: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let mut request = self
            .http()
            .post(self.server.http_url("/v1/responses"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

async fn output_of(child: tokio::process::Child) -> Value {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the SDK script finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "SDK script failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

const LANGUAGES: &[&str] = &[
    #[cfg(not(missing_sdk_node))]
    "node",
    #[cfg(not(missing_sdk_python))]
    "python",
];

#[tokio::test]
#[cfg_attr(
    all(missing_sdk_node, missing_sdk_python),
    ignore = "needs the openai package for Node (npm ci --prefix tests/sdk) or Python"
)]
async fn sdks_get_text_and_unbuffered_streams_through_an_api_key_account() {
    let f = Proxied::with_api_key(&[]).await;
    for language in LANGUAGES {
        f.backend.script([Reply::Ok]);
        let text = f.sdk_result(language, "text").await;
        assert_eq!(
            text,
            json!({"text": "Hello from fake backend.", "status": "completed"}),
            "{language}"
        );
        f.backend.script([Reply::Paused]);
        let stream = f.sdk_result(language, "stream").await;
        assert_eq!(
            stream,
            json!({"deltas": ["Hello", " world."], "completed": true}),
            "{language}"
        );
    }
    for request in f.backend.requests() {
        assert_eq!(request.path, "/v1/responses");
        assert_eq!(
            request.header("authorization"),
            Some("Bearer sk-upstream-key")
        );
        assert_eq!(request.header("accept-encoding"), Some("identity"));
        assert_eq!(request.header("version"), Some(env!("CARGO_PKG_VERSION")));
        assert!(request.header("originator").is_some());
        assert!(request.header("user-agent").is_some());
        // The API-key route gets the body as the SDK wrote it.
        assert_eq!(request.body["input"], "Say hello");
        assert!(request.body.get("store").is_none());
    }
}

#[tokio::test]
#[cfg_attr(
    missing_sdk_node,
    ignore = "needs the openai package (npm ci --prefix tests/sdk)"
)]
async fn a_host_owned_401_is_refreshed_over_the_websocket_and_the_sdk_call_succeeds() {
    let mut f = Proxied::with_host_tokens(&[]).await;
    f.backend.accept_bearers(&["B"]);
    let call = f.sdk("node", "text");
    let refresh = f.client.server_request(REFRESH).await;
    assert_eq!(
        refresh["params"],
        json!({"reason": "unauthorized", "previousAccountId": "acct-1"})
    );
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": idt("me@example.com", "pro", "acct-1"), "accessToken": "B"}}))
        .await;
    assert_eq!(
        output_of(call).await,
        json!({"text": "Hello from fake backend.", "status": "completed"})
    );
    let requests = f.backend.requests();
    assert_eq!(requests.len(), 2);
    let last = &requests[1];
    assert_eq!(last.path, "/backend-api/codex/responses");
    assert_eq!(last.header("authorization"), Some("Bearer B"));
    assert_eq!(last.header("chatgpt-account-id"), Some("acct-1"));
    // The ChatGPT route streams and stores nothing; the client's own token never leaves.
    assert_eq!(
        (&last.body["stream"], &last.body["store"]),
        (&json!(true), &json!(false))
    );
    assert!(last.body["instructions"].is_string());
    for request in &requests {
        assert!(
            !request
                .header("authorization")
                .unwrap()
                .contains(&f.token())
        );
    }
}

#[tokio::test]
#[cfg_attr(
    all(missing_sdk_node, missing_sdk_python),
    ignore = "needs the openai package for Node (npm ci --prefix tests/sdk) or Python"
)]
async fn upstream_errors_reach_the_sdk_with_their_status_and_message() {
    let f = Proxied::with_api_key(&[]).await;
    let mut calls = 0;
    for language in LANGUAGES {
        for (reply, class, status, message) in [
            (Reply::rate_limited(), "RateLimitError", 429, "slow down"),
            (
                Reply::server_error(),
                "InternalServerError",
                500,
                "internal error",
            ),
        ] {
            f.backend.script([reply]);
            let error = f.sdk_result(language, "error").await;
            calls += 1;
            assert_eq!(
                error,
                json!({"class": class, "status": status, "message": message}),
                "{language}"
            );
            assert_eq!(f.backend.requests().len(), calls, "no retries");
        }
    }
}

#[tokio::test]
#[cfg_attr(
    all(missing_sdk_node, missing_sdk_python),
    ignore = "needs the openai package for Node (npm ci --prefix tests/sdk) or Python"
)]
async fn models_list_shows_the_catalog_and_an_aborted_stream_closes_the_upstream() {
    let f = Proxied::start(&[]).await;
    for language in LANGUAGES {
        let models = f.sdk_result(language, "models").await;
        assert_eq!(
            models,
            json!({"ids": ["gpt-5.2-codex", "gpt-5.2", "gpt-5.1-codex-max", "gpt-5.1-codex-mini"]})
        );
    }
    let mut f = f;
    f.client
        .call_result(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-upstream-key"}),
        )
        .await;
    for (n, language) in LANGUAGES.iter().enumerate() {
        f.backend.script([Reply::Paused]);
        let aborted = f.sdk_result(language, "abort").await;
        assert_eq!(aborted, json!({"aborted": "Hello"}));
        tokio::time::timeout(
            Duration::from_secs(10),
            f.backend.wait_for_closed_streams(n + 1),
        )
        .await
        .expect("the upstream stream was closed");
    }
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["message"].as_str().unwrap(),
        body["error"]["code"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn requests_that_never_leave_the_machine_get_the_proxys_own_errors() {
    let f = Proxied::start(&["proxy.max_body_bytes=1024"]).await;
    let token = f.token();
    let small = json!({"model": "m", "input": "hi"}).to_string();
    let missing = f.post(None, small.clone()).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let body: Value = missing.json().await.unwrap();
    assert_eq!(error_of(&body), ("missing bearer token", "invalid_api_key"));
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], Value::Null);
    let wrong: Value = f
        .post(Some("nope"), small.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        error_of(&wrong),
        ("invalid bearer token", "invalid_api_key")
    );
    let no_account: Value = f
        .post(Some(&token), small.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        error_of(&no_account),
        (
            "authentication required: log in with account/login/start first",
            "no_account"
        )
    );
    let invalid = f.post(Some(&token), "{not json").await;
    assert_eq!(invalid.status(), 400);
    let invalid: Value = invalid.json().await.unwrap();
    assert_eq!(
        error_of(&invalid),
        ("request body is not valid JSON", "invalid_json")
    );
    let big = f.post(Some(&token), vec![b' '; 2048]).await;
    assert_eq!(big.status(), 413);
    let big: Value = big.json().await.unwrap();
    assert_eq!(
        error_of(&big),
        ("request body exceeds 1024 bytes", "body_too_large")
    );
    let foreign = f
        .http()
        .post(f.server.http_url("/v1/responses"))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(f.backend.requests().is_empty());

    let models = f
        .http()
        .get(f.server.http_url("/v1/models"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(
        models["data"][0],
        json!({"id": "gpt-5.2-codex", "object": "model", "created": 0, "owned_by": "openai"})
    );
}

#[tokio::test]
async fn a_disabled_proxy_is_not_there() {
    let f = Proxied::start(&["proxy.enabled=false"]).await;
    let response = f.post(Some(&f.token()), "{}").await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_big_body_is_refused_before_it_is_read_and_the_default_limit_holds() {
    let f = Proxied::with_api_key(&[]).await;
    let nine_mib = vec![b'x'; 9 * 1024 * 1024];
    let response = f.post(Some(&f.token()), nine_mib).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).1, "body_too_large");
    assert!(f.backend.requests().is_empty());
}

#[tokio::test]
async fn the_relay_streams_keeps_errors_and_broadcasts_rate_limits() {
    let mut f = Proxied::with_api_key(&["turns.max_concurrent=1"]).await;
    let mut watcher = f.server.client().await;
    let token = f.token();
    let stream = json!({"model": "m", "input": "hi", "stream": true}).to_string();
    // A paused upstream: the first event is already here while the upstream is still open.
    f.backend.script([Reply::Paused]);
    let mut response = f.post(Some(&token), stream.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while !seen.contains("\"Hello\"") {
        let chunk = response.chunk().await.unwrap().expect("more of the stream");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // It holds the only slot: another request is refused until it ends.
    let busy = f.post(Some(&token), stream.clone()).await;
    assert_eq!(busy.status(), 503);
    let busy: Value = busy.json().await.unwrap();
    assert_eq!(
        error_of(&busy),
        ("Server overloaded; retry later.", "overloaded")
    );
    f.backend.open_gate();
    while let Some(chunk) = response.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("response.completed"), "{seen}");

    // Upstream errors keep their status and body; rate-limit headers reach every client.
    f.backend.script([Reply::UsageLimit { plan: "pro".into() }]);
    let limited = f.post(Some(&token), stream).await;
    assert_eq!(limited.status(), 429);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    let update = watcher.notification("account/rateLimits/updated").await;
    assert_eq!(update["rateLimits"]["primary"]["usedPercent"], 13);
    f.client.notification("account/rateLimits/updated").await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_closes_the_upstream() {
    let f = Proxied::with_api_key(&[]).await;
    f.backend.script([Reply::Paused]);
    let stream = json!({"model": "m", "input": "hi", "stream": true}).to_string();
    let mut response = f.post(Some(&f.token()), stream).await;
    response.chunk().await.unwrap().expect("the first event");
    drop(response);
    tokio::time::timeout(
        Duration::from_secs(10),
        f.backend.wait_for_closed_streams(1),
    )
    .await
    .expect("the upstream stream was closed");
}

#[tokio::test]
async fn a_chatgpt_account_gets_a_final_object_for_a_non_streaming_request() {
    let f = Proxied::with_host_tokens(&[]).await;
    let response = f
        .post(
            Some(&f.token()),
            json!({"model": "m", "input": "hi"}).to_string(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 2);
    assert_eq!(output[1]["content"][0]["text"], "Hello from fake backend.");
    f.backend.script([Reply::Failed("boom".into())]);
    let failed = f
        .post(
            Some(&f.token()),
            json!({"model": "m", "input": "hi"}).to_string(),
        )
        .await;
    assert_eq!(failed.status(), 502);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["message"], "boom");
}

#[tokio::test]
async fn a_refresh_the_host_refuses_is_a_401_of_our_own() {
    let mut f = Proxied::with_host_tokens(&[]).await;
    f.backend.accept_bearers(&["B"]);
    let token = f.token();
    let url = f.server.http_url("/v1/responses");
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .body(json!({"model": "m", "input": "hi"}).to_string())
            .send()
            .await
            .unwrap()
    });
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "error": {"code": -32000, "message": "host says no"}}))
        .await;
    let response = call.await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        error_of(&body),
        (
            "auth refresh request failed: code=-32000 message=host says no",
            "token_refresh_failed"
        )
    );
}
