//! Account surface: API key and host-owned tokens, logout, policies, auth.json (SPEC §5–6, §8, §11).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Child, Client, TestServer, idt, jwt, managed_auth, now_rfc3339, write_auth};

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn read(client: &mut Client) -> Value {
    client.call_result("account/read", json!({})).await
}

#[tokio::test]
async fn no_credentials_reads_null() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    assert_eq!(
        read(&mut client).await,
        json!({"account": null, "requiresOpenaiAuth": true})
    );
    let absent_params = client.call("account/read", Value::Null).await;
    assert_eq!(
        absent_params["result"],
        json!({"account": null, "requiresOpenaiAuth": true})
    );
}

#[tokio::test]
async fn api_key_login_persists_and_notifies_in_order() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut other = server.client().await;
    let id = client
        .request(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-test-key"}),
        )
        .await;
    // The reply comes first, then the notifications, in this order.
    assert_eq!(
        client.next_json().await,
        json!({"id": id, "result": {"type": "apiKey"}})
    );
    assert_eq!(
        client.next_json().await,
        json!({"method": "account/login/completed", "params": {"loginId": null, "success": true, "error": null}})
    );
    assert_eq!(
        client.next_json().await,
        json!({"method": "account/updated", "params": {"authMode": "apikey", "planType": null}})
    );
    // Every initialized connection hears about it.
    assert_eq!(
        other.notification("account/updated").await,
        json!({"authMode": "apikey", "planType": null})
    );
    let path = server.auth_json();
    assert_eq!(mode_of(&path), 0o600);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-test-key"})
    );
    assert_eq!(
        read(&mut client).await,
        json!({"account": {"type": "apiKey"}, "requiresOpenaiAuth": true})
    );
    let leftovers: Vec<_> = std::fs::read_dir(server.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn an_existing_world_readable_file_ends_0600() {
    let server = TestServer::start(&[]).await;
    write_auth(
        server.home(),
        &json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-old"}),
    );
    std::fs::set_permissions(server.auth_json(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut client = server.client().await;
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-new"}),
        )
        .await;
    assert_eq!(mode_of(&server.auth_json()), 0o600);
}

#[tokio::test]
async fn logout_deletes_auth_json_and_notifies() {
    let server = TestServer::start(&[]).await;
    write_auth(
        server.home(),
        &json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-test-key"}),
    );
    let mut client = server.client().await;
    assert_eq!(
        read(&mut client).await["account"],
        json!({"type": "apiKey"})
    );
    let id = client.request("account/logout", Value::Null).await;
    assert_eq!(client.next_json().await, json!({"id": id, "result": {}}));
    assert_eq!(
        client.next_json().await,
        json!({"method": "account/updated", "params": {"authMode": null, "planType": null}})
    );
    assert!(!server.auth_json().exists());
    assert_eq!(
        read(&mut client).await,
        json!({"account": null, "requiresOpenaiAuth": true})
    );
}

#[tokio::test]
async fn logout_without_credentials_is_still_ok() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    assert_eq!(
        client.call("account/logout", json!({})).await["result"],
        json!({})
    );
    assert_eq!(
        client.notification("account/updated").await,
        json!({"authMode": null, "planType": null})
    );
}

#[tokio::test]
async fn external_tokens_seed_shape() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let id = client
        .request(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": idt("embedded@example.com", "pro", "org-embedded"), "accessToken": "access-embedded"}),
        )
        .await;
    assert_eq!(
        client.next_json().await,
        json!({"id": id, "result": {"type": "chatgptAuthTokens"}})
    );
    assert_eq!(
        client.next_json().await["params"],
        json!({"loginId": null, "success": true, "error": null})
    );
    assert_eq!(
        client.next_json().await,
        json!({"method": "account/updated", "params": {"authMode": "chatgptAuthTokens", "planType": "pro"}})
    );
    let expected = json!({"account": {"type": "chatgpt", "email": "embedded@example.com", "planType": "pro"}, "requiresOpenaiAuth": true});
    assert_eq!(read(&mut client).await, expected);
    assert!(
        !server.auth_json().exists(),
        "external tokens never touch disk"
    );

    // refreshToken:true is ignored in external mode: same answer, no server request.
    let reply = client
        .call("account/read", json!({"refreshToken": true}))
        .await;
    assert_eq!(reply["result"], expected);
    client
        .assert_none(Duration::from_millis(250), "server request", |v| {
            v.get("method").is_some() && v.get("id").is_some()
        })
        .await;
}

#[tokio::test]
async fn external_tokens_later_shape() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let access = jwt(
        json!({"email": "embedded@example.com", "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "org-embedded"}}),
    );
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "accessToken": access, "chatgptAccountId": "org-embedded", "chatgptPlanType": "pro"}),
        )
        .await;
    assert_eq!(reply["result"], json!({"type": "chatgptAuthTokens"}));
    assert_eq!(
        client.notification("account/updated").await,
        json!({"authMode": "chatgptAuthTokens", "planType": "pro"})
    );
    assert_eq!(
        read(&mut client).await,
        json!({"account": {"type": "chatgpt", "email": "embedded@example.com", "planType": "pro"}, "requiresOpenaiAuth": true})
    );
    assert!(!server.auth_json().exists());
}

#[tokio::test]
async fn external_login_errors() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": "not-a-jwt", "accessToken": "a"}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "invalid id token: invalid ID token format"})
    );
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "accessToken": "not-a-jwt", "chatgptAccountId": "org"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32603, "message": "failed to set external auth: invalid ID token format"})
    );
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "accessToken": "x"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], json!(-32602));
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chatgptAccountId")
    );
    client
        .assert_none(
            Duration::from_millis(200),
            "a notification after failed logins",
            |v| v.get("method").is_some(),
        )
        .await;
}

#[tokio::test]
async fn missing_plan_is_unknown_and_missing_email_is_an_error() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let no_plan = jwt(
        json!({"email": "noplan@example.com", "https://api.openai.com/auth": {"chatgpt_account_id": "org"}}),
    );
    client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": no_plan, "accessToken": "a"}),
        )
        .await;
    assert_eq!(
        read(&mut client).await["account"],
        json!({"type": "chatgpt", "email": "noplan@example.com", "planType": "unknown"})
    );
    let no_email = jwt(json!({"https://api.openai.com/auth": {"chatgpt_plan_type": "pro"}}));
    client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": no_email, "accessToken": "a"}),
        )
        .await;
    let reply = client.call("account/read", json!({})).await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "email and plan type are required for chatgpt authentication"})
    );
}

#[tokio::test]
async fn external_auth_blocks_other_logins_but_can_be_replaced() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("a@example.com", "pro", "org-a"), "accessToken": "a"}))
        .await;
    let message = "External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it.";
    for params in [
        json!({"type": "apiKey", "apiKey": "sk"}),
        json!({"type": "chatgpt"}),
        json!({"type": "chatgptDeviceCode"}),
    ] {
        let reply = client.call("account/login/start", params).await;
        assert_eq!(reply["error"], json!({"code": -32600, "message": message}));
    }
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("b@example.com", "team", "org-b"), "accessToken": "b"}))
        .await;
    assert_eq!(reply["result"], json!({"type": "chatgptAuthTokens"}));
    assert_eq!(
        read(&mut client).await["account"]["email"],
        json!("b@example.com")
    );
    client.call("account/logout", json!({})).await;
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk"}),
        )
        .await;
    assert_eq!(reply["result"], json!({"type": "apiKey"}));
}

#[tokio::test]
async fn external_tokens_shadow_auth_json() {
    let server = TestServer::start(&[]).await;
    write_auth(
        server.home(),
        &json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-file"}),
    );
    let mut client = server.client().await;
    client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("e@example.com", "pro", "org"), "accessToken": "a"}))
        .await;
    assert_eq!(read(&mut client).await["account"]["type"], json!("chatgpt"));
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(server.auth_json()).unwrap()).unwrap();
    assert_eq!(
        on_disk["OPENAI_API_KEY"],
        json!("sk-file"),
        "auth.json untouched"
    );
}

#[tokio::test]
async fn forced_login_method_chatgpt_blocks_api_keys() {
    let server = TestServer::start(&["forced_login_method=\"chatgpt\""]).await;
    let mut client = server.client().await;
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-test-key"}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "API key login is disabled. Use ChatGPT login instead."})
    );
    client
        .assert_none(Duration::from_millis(200), "a notification", |v| {
            v.get("method").is_some()
        })
        .await;
    assert!(!server.auth_json().exists());
}

#[tokio::test]
async fn forced_login_method_api_blocks_chatgpt_logins() {
    let server = TestServer::start(&["forced_login_method=\"api\""]).await;
    let mut client = server.client().await;
    for kind in ["chatgpt", "chatgptDeviceCode"] {
        let reply = client
            .call("account/login/start", json!({"type": kind}))
            .await;
        assert_eq!(
            reply["error"],
            json!({"code": -32600, "message": "ChatGPT login is disabled. Use API key login instead."})
        );
    }
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("e@x.com", "pro", "o"), "accessToken": "a"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "External ChatGPT auth is disabled. Use API key login instead."})
    );
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk"}),
        )
        .await;
    assert_eq!(reply["result"], json!({"type": "apiKey"}));
}

#[tokio::test]
async fn forced_workspace_on_external_login() {
    let server = TestServer::start(&["forced_chatgpt_workspace_id=\"org-expected\""]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("e@x.com", "pro", "org-other"), "accessToken": "a"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "External auth must use workspace org-expected, but received Some(\"org-other\")."})
    );
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "accessToken": jwt(json!({"email": "e@x.com"})), "chatgptAccountId": "org-other"}))
        .await;
    assert_eq!(
        reply["error"]["message"],
        json!("External auth must use workspace org-expected, but received \"org-other\".")
    );
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("e@x.com", "pro", "org-expected"), "accessToken": "a"}))
        .await;
    assert_eq!(reply["result"], json!({"type": "chatgptAuthTokens"}));
}

#[tokio::test]
async fn forced_workspace_list_on_external_login() {
    let server = TestServer::start(&["forced_chatgpt_workspace_id=[\"ws-a\", \"ws-b\"]"]).await;
    let mut client = server.client().await;
    let no_claim = jwt(json!({"email": "e@x.com"}));
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": no_claim, "accessToken": "a"}),
        )
        .await;
    assert_eq!(
        reply["error"]["message"],
        json!(
            "External auth must use one of workspace(s) [\"ws-a\", \"ws-b\"], but received None."
        )
    );
    let reply = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": idt("e@x.com", "pro", "ws-b"), "accessToken": "a"}))
        .await;
    assert_eq!(reply["result"], json!({"type": "chatgptAuthTokens"}));
}

#[tokio::test]
async fn requires_openai_auth_false() {
    let server = TestServer::start(&["requires_openai_auth=false"]).await;
    write_auth(
        server.home(),
        &json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-test-key"}),
    );
    let mut client = server.client().await;
    assert_eq!(
        read(&mut client).await,
        json!({"account": null, "requiresOpenaiAuth": false})
    );
}

#[tokio::test]
async fn reads_an_existing_codex_login() {
    // Codex's own format: no auth_mode member.
    let server = TestServer::start(&[]).await;
    write_auth(
        server.home(),
        &managed_auth(
            "user@example.com",
            "pro",
            "org-1",
            "access-chatgpt",
            "refresh-chatgpt",
            &now_rfc3339(),
        ),
    );
    let mut client = server.client().await;
    assert_eq!(
        read(&mut client).await,
        json!({"account": {"type": "chatgpt", "email": "user@example.com", "planType": "pro"}, "requiresOpenaiAuth": true})
    );
}

#[tokio::test]
async fn sees_logins_made_by_another_process() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    assert_eq!(read(&mut client).await["account"], json!(null));
    write_auth(
        server.home(),
        &json!({"OPENAI_API_KEY": "sk-from-elsewhere"}),
    );
    assert_eq!(
        read(&mut client).await["account"],
        json!({"type": "apiKey"})
    );
    std::fs::remove_file(server.auth_json()).unwrap();
    assert_eq!(read(&mut client).await["account"], json!(null));
}

#[tokio::test]
async fn a_corrupt_auth_json_means_logged_out_and_is_left_alone() {
    let server = TestServer::start(&[]).await;
    std::fs::write(server.auth_json(), "{ this is not json").unwrap();
    let mut client = server.client().await;
    assert_eq!(
        read(&mut client).await,
        json!({"account": null, "requiresOpenaiAuth": true})
    );
    let reply = client.call("account/rateLimits/read", json!(null)).await;
    assert_eq!(reply["error"]["code"], json!(-32600));
    assert_eq!(
        std::fs::read_to_string(server.auth_json()).unwrap(),
        "{ this is not json"
    );
    // A successful login replaces it.
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-new"}),
        )
        .await;
    assert_eq!(
        read(&mut client).await["account"],
        json!({"type": "apiKey"})
    );
}

#[tokio::test]
async fn a_symlinked_auth_json_is_refused() {
    let server = TestServer::start(&[]).await;
    let target = server.home().join("elsewhere.json");
    std::fs::write(&target, r#"{"OPENAI_API_KEY":"sk-behind-a-link"}"#).unwrap();
    std::os::unix::fs::symlink(&target, server.auth_json()).unwrap();
    let mut client = server.client().await;
    assert_eq!(read(&mut client).await["account"], json!(null));
    // A login replaces the link instead of writing through it.
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-new"}),
        )
        .await;
    assert!(
        !std::fs::symlink_metadata(server.auth_json())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        r#"{"OPENAI_API_KEY":"sk-behind-a-link"}"#
    );
}

#[tokio::test]
async fn cancel_with_unknown_or_malformed_login_ids() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/cancel", json!({"loginId": "nope"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "invalid login id: nope"})
    );
    let reply = client
        .call(
            "account/login/cancel",
            json!({"loginId": "6f1c2e8a-3b7d-4c1e-9a55-2d0f7b9c4e11"}),
        )
        .await;
    assert_eq!(reply["result"], json!({"status": "notFound"}));
}

#[tokio::test]
async fn opted_out_notifications_are_not_sent() {
    let server = TestServer::start(&[]).await;
    let mut quiet = server.connect().await;
    quiet
        .call(
            "initialize",
            json!({"clientInfo": {"name": "quiet", "version": "1"}, "capabilities": {"optOutNotificationMethods": ["account/updated"]}}),
        )
        .await;
    quiet
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk"}),
        )
        .await;
    quiet.notification("account/login/completed").await;
    quiet
        .assert_no_method(Duration::from_millis(300), "account/updated")
        .await;
}

#[tokio::test]
async fn uninitialized_connections_get_no_notifications() {
    let server = TestServer::start(&[]).await;
    let mut idle = server.connect().await;
    let mut client = server.client().await;
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk"}),
        )
        .await;
    idle.assert_none(Duration::from_millis(300), "a notification", |_| true)
        .await;
}

/// Secrets never reach stderr, even at TRACE, nor error messages or Debug output.
#[tokio::test]
async fn sentinel_secrets_never_appear_in_trace_logs() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Child::spawn(
        &[
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
        ],
        &[("RUST_LOG", "trace")],
    )
    .await;
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("server.json")).unwrap())
            .unwrap();
    let token = info["token"].as_str().unwrap().to_owned();
    let mut client = Client::connect(child.url.as_deref().unwrap(), Some(&token)).await;
    client.initialize().await;
    let key = "sk-SENTINEL-api-key-4f1c";
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": key}),
        )
        .await;
    client.call("account/read", json!({})).await;
    let access = "SENTINEL-access-token-9b2e";
    let id_token = idt("sentinel@example.com", "pro", "org-sentinel");
    client.call("account/logout", json!({})).await;
    client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": id_token, "accessToken": access}),
        )
        .await;
    let bad = client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": "SENTINEL-not-a-jwt", "accessToken": access}))
        .await;
    assert!(!bad.to_string().contains("SENTINEL"), "{bad}");
    client.call("account/read", json!({})).await;
    client.call("account/logout", json!({})).await;
    child.terminate();
    child.exit_code().await;
    let stderr = child.stderr();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "trace logging is on:\n{stderr}"
    );
    for secret in [key, access, id_token.as_str(), token.as_str()] {
        assert!(
            !stderr.contains(secret),
            "a secret leaked into stderr:\n{stderr}"
        );
    }
    assert!(!stderr.contains("SENTINEL"), "{stderr}");
}
