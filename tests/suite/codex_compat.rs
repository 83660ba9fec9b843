//! auth.json compatibility with the real Codex app-server 0.94.0 (SPEC §11): a login authbridge
//! writes is read by Codex, and a login Codex writes is read by authbridge. Codex is installed by
//! `npm ci --prefix tests/compat` and driven over stdio.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{TestServer, idt, repo_root};

fn codex_binary() -> PathBuf {
    repo_root().join("tests/compat/node_modules/.bin/codex")
}

/// Sends `requests` (one JSON per line) to `codex app-server` with `CODEX_HOME=home` and returns
/// the replies to requests carrying an `id`, in id order.
async fn codex_app_server(home: &Path, requests: &[Value]) -> Vec<Value> {
    let mut child = tokio::process::Command::new(codex_binary())
        .arg("app-server")
        .env("CODEX_HOME", home)
        .env_remove("OPENAI_API_KEY")
        .env_remove("CODEX_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("codex starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut replies = Vec::new();
    for request in requests {
        stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
        let Some(id) = request.get("id") else {
            continue;
        };
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("codex answers")
                .unwrap()
                .expect("codex stdout open");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message.get("id") == Some(id) && message.get("method").is_none() {
                replies.push(message);
                break;
            }
        }
    }
    drop(stdin);
    let _ = child.kill().await;
    replies
}

fn initialize() -> Value {
    json!({"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "compat", "version": "1"}}})
}

async fn codex_reads_account(home: &Path) -> Value {
    let replies = codex_app_server(
        home,
        &[
            initialize(),
            json!({"method": "initialized"}),
            json!({"id": 1, "method": "account/read", "params": {}}),
        ],
    )
    .await;
    replies[1]["result"].clone()
}

#[tokio::test]
#[cfg_attr(
    missing_codex,
    ignore = "needs the Codex 0.94.0 package (npm ci --prefix tests/compat)"
)]
async fn codex_reads_an_api_key_authbridge_saved() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-from-authbridge"}),
        )
        .await;
    assert_eq!(
        codex_reads_account(server.home()).await,
        json!({"account": {"type": "apiKey"}, "requiresOpenaiAuth": true})
    );
}

#[tokio::test]
#[cfg_attr(
    missing_codex,
    ignore = "needs the Codex 0.94.0 package (npm ci --prefix tests/compat)"
)]
async fn codex_reads_a_chatgpt_login_authbridge_saved() {
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/accounts/deviceauth/usercode"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"device_auth_id": "d", "user_code": "U-1", "interval": "0"})),
        )
        .mount(&issuer)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/accounts/deviceauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"authorization_code": "c", "code_challenge": "x", "code_verifier": "v"}),
        ))
        .mount(&issuer)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id_token": idt("compat@example.com", "plus", "org-compat"), "access_token": "access-compat", "refresh_token": "refresh-compat"})))
        .mount(&issuer)
        .await;
    let issuer_url = format!("auth.issuer=\"{}\"", issuer.uri());
    let server = TestServer::start(&[&issuer_url]).await;
    let mut client = server.client().await;
    client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    assert_eq!(
        client.notification("account/login/completed").await["success"],
        json!(true)
    );
    assert_eq!(
        codex_reads_account(server.home()).await,
        json!({"account": {"type": "chatgpt", "email": "compat@example.com", "planType": "plus"}, "requiresOpenaiAuth": true})
    );
}

#[tokio::test]
#[cfg_attr(
    missing_codex,
    ignore = "needs the Codex 0.94.0 package (npm ci --prefix tests/compat)"
)]
async fn authbridge_reads_a_login_codex_saved() {
    let home = tempfile::tempdir().unwrap();
    let replies = codex_app_server(
        home.path(),
        &[
            initialize(),
            json!({"method": "initialized"}),
            json!({"id": 1, "method": "account/login/start", "params": {"type": "apiKey", "apiKey": "sk-from-codex"}}),
        ],
    )
    .await;
    assert_eq!(replies[1]["result"], json!({"type": "apiKey"}));
    let server = TestServer::start_in(home, &[]).await;
    let mut client = server.client().await;
    assert_eq!(
        client.call("account/read", json!({})).await["result"],
        json!({"account": {"type": "apiKey"}, "requiresOpenaiAuth": true})
    );
}
