//! The account state machine across its modes, driven through in-memory connections (SPEC §5, §8).

use serde_json::{Value, json};

use crate::rpc::memory::MemoryClient;
use crate::testing::{TestCore, jwt};

fn external_login() -> Value {
    let id_token = jwt(
        json!({"email": "h@example.com", "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "org-h"}}),
    );
    json!({"type": "chatgptAuthTokens", "idToken": id_token, "accessToken": "access-h"})
}

async fn client(core: &TestCore) -> MemoryClient {
    let mut client = core.connect();
    client.initialize().await;
    client
}

async fn account(client: &mut MemoryClient) -> Value {
    client.call("account/read", json!({})).await["result"]["account"].clone()
}

#[tokio::test]
async fn an_api_key_is_saved_read_back_and_removed_by_logout() {
    let core = TestCore::new(&[]);
    let mut client = client(&core).await;
    let auth_json = core.home.path().join("auth.json");
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-unit"}),
        )
        .await;
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&auth_json).unwrap()).unwrap();
    assert_eq!(
        saved,
        json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-unit"})
    );
    assert_eq!(account(&mut client).await, json!({"type": "apiKey"}));
    client.call("account/logout", json!({})).await;
    assert!(!auth_json.exists());
    assert_eq!(account(&mut client).await, json!(null));
}

#[tokio::test]
async fn host_owned_tokens_shadow_auth_json_and_block_other_logins_until_logout() {
    let core = TestCore::new(&[]);
    let mut client = client(&core).await;
    let auth_json = core.home.path().join("auth.json");
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-on-disk"}),
        )
        .await;
    client.call("account/login/start", external_login()).await;
    assert_eq!(
        account(&mut client).await,
        json!({"type": "chatgpt", "email": "h@example.com", "planType": "plus"})
    );
    let on_disk = std::fs::read_to_string(&auth_json).unwrap();
    assert!(
        on_disk.contains("sk-on-disk"),
        "host-owned tokens never touch the file"
    );
    let refused = client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-other"}),
        )
        .await;
    assert_eq!(
        refused["error"],
        json!({"code": -32600, "message": "External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it."})
    );
    client.call("account/logout", json!({})).await;
    assert_eq!(account(&mut client).await, json!(null));
    assert!(!auth_json.exists());
}

#[tokio::test]
async fn cancelling_a_login_that_is_not_running() {
    let core = TestCore::new(&[]);
    let mut client = client(&core).await;
    let not_uuid = client
        .call("account/login/cancel", json!({"loginId": "nope"}))
        .await;
    assert_eq!(
        not_uuid["error"],
        json!({"code": -32600, "message": "invalid login id: nope"})
    );
    let unknown = client
        .call(
            "account/login/cancel",
            json!({"loginId": "6f1c2e8a-3b7d-4c1e-9a55-2d0f7b9c4e11"}),
        )
        .await;
    assert_eq!(unknown["result"], json!({"status": "notFound"}));
    assert!(
        client
            .next_json_within(std::time::Duration::from_millis(100))
            .await
            .is_none(),
        "no notification for a login that was not running"
    );
}

#[tokio::test]
async fn forced_login_methods_refuse_the_other_kind_without_notifications() {
    let core = TestCore::new(&["forced_login_method=\"api\""]);
    let mut client = client(&core).await;
    let chatgpt = client
        .call("account/login/start", json!({"type": "chatgpt"}))
        .await;
    assert_eq!(
        chatgpt["error"]["message"],
        json!("ChatGPT login is disabled. Use API key login instead.")
    );
    let external = client.call("account/login/start", external_login()).await;
    assert_eq!(
        external["error"]["message"],
        json!("External ChatGPT auth is disabled. Use API key login instead.")
    );
    assert!(
        client
            .next_json_within(std::time::Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn rate_limits_need_a_chatgpt_account() {
    let core = TestCore::new(&[]);
    let mut client = client(&core).await;
    let none = client.call("account/rateLimits/read", json!({})).await;
    assert_eq!(
        none["error"],
        json!({"code": -32600, "message": "codex account authentication required to read rate limits"})
    );
    client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-x"}),
        )
        .await;
    let api_key = client.call("account/rateLimits/read", json!({})).await;
    assert_eq!(
        api_key["error"]["message"],
        json!("chatgpt authentication required to read rate limits")
    );
}
