//! Managed ChatGPT login: browser PKCE flow, device code, token lifecycle (SPEC §10, §13 scenarios
//! 11–13, 18–22, 24, 44). A fake issuer runs on 127.0.0.1:0; the browser is plain HTTP GETs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{
    Arrivals, Child, Client, TestServer, backend_accepting, days_ago, eventually, idt, jwt,
    managed_auth, now_rfc3339, usage_body, write_auth,
};

const NOT_COMPLETED: &str = "Login server error: Login was not completed";

/// A fake issuer: code exchange and API-key exchange.
async fn issuer_with_tokens(id_token: &str) -> MockServer {
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id_token": id_token, "access_token": "access-token-123", "refresh_token": "refresh-token-123"})))
        .mount(&issuer)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("token-exchange"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "sk-exchanged"})),
        )
        .mount(&issuer)
        .await;
    issuer
}

async fn server_with_issuer(issuer: &MockServer, extra: &[&str]) -> TestServer {
    let issuer_url = format!("auth.issuer=\"{}\"", issuer.uri());
    let mut overrides = vec![issuer_url.as_str()];
    overrides.extend_from_slice(extra);
    TestServer::start(&overrides).await
}

/// The usual browser-login setup: an issuer granting u@example.com's tokens, a server using it
/// (with `extra` settings) and a client of that server. Keep the issuer for the whole test.
async fn login_setup(extra: &[&str]) -> (MockServer, TestServer, Client) {
    let issuer = issuer_with_tokens(&idt("u@example.com", "pro", "o")).await;
    let server = server_with_issuer(&issuer, extra).await;
    let client = server.client().await;
    (issuer, server, client)
}

struct BrowserLogin {
    login_id: String,
    auth_url: url::Url,
    params: Vec<(String, String)>,
}

impl BrowserLogin {
    fn param(&self, name: &str) -> String {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("authUrl has no {name}: {}", self.auth_url))
    }

    /// `http://127.0.0.1:<port>` of the callback server.
    fn callback_base(&self) -> String {
        let redirect = url::Url::parse(&self.param("redirect_uri")).unwrap();
        format!("http://127.0.0.1:{}", redirect.port().unwrap())
    }
}

async fn start_browser_login(client: &mut Client) -> BrowserLogin {
    let reply = client
        .call("account/login/start", json!({"type": "chatgpt"}))
        .await;
    let result = &reply["result"];
    assert_eq!(result["type"], json!("chatgpt"), "{reply}");
    let auth_url = url::Url::parse(result["authUrl"].as_str().unwrap()).unwrap();
    let params = auth_url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    BrowserLogin {
        login_id: result["loginId"].as_str().unwrap().to_owned(),
        auth_url,
        params,
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Waits until the login's callback server stops answering.
async fn callback_server_gone(login: &BrowserLogin) {
    let success = format!("{}/success", login.callback_base());
    eventually("the callback server is gone", || async {
        browser().get(&success).send().await.is_err()
    })
    .await;
}

async fn completed(client: &mut Client) -> Value {
    client.notification("account/login/completed").await
}

#[tokio::test]
async fn browser_login_end_to_end() {
    let id_token = idt("user@example.com", "pro", "org-1");
    let issuer = issuer_with_tokens(&id_token).await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let mut watcher = server.client().await;
    let login = start_browser_login(&mut client).await;
    uuid::Uuid::parse_str(&login.login_id).expect("loginId is a UUID");

    // The authorize URL: issuer path and every parameter, in order.
    assert_eq!(
        format!("{}", login.auth_url).split('?').next().unwrap(),
        format!("{}/oauth/authorize", issuer.uri())
    );
    let names: Vec<&str> = login.params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "code_challenge",
            "code_challenge_method",
            "id_token_add_organizations",
            "codex_cli_simplified_flow",
            "state",
            "originator"
        ]
    );
    assert_eq!(login.param("response_type"), "code");
    assert_eq!(login.param("client_id"), "app_EMoamEEZ73f0CkXaXp7hrann");
    assert!(login.param("redirect_uri").starts_with("http://localhost:"));
    assert!(login.param("redirect_uri").ends_with("/auth/callback"));
    assert!(
        login
            .auth_url
            .as_str()
            .contains("redirect_uri=http%3A%2F%2Flocalhost")
    );
    assert_eq!(
        login.param("scope"),
        "openid profile email offline_access api.connectors.read api.connectors.invoke"
    );
    assert!(
        login
            .auth_url
            .as_str()
            .contains("scope=openid%20profile%20email"),
        "spaces are %20"
    );
    assert_eq!(login.param("code_challenge_method"), "S256");
    assert_eq!(login.param("id_token_add_organizations"), "true");
    assert_eq!(login.param("codex_cli_simplified_flow"), "true");
    assert_eq!(login.param("originator"), "codex-app-server-tests");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(login.param("state")).unwrap().len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(login.param("code_challenge"))
            .unwrap()
            .len(),
        32
    );

    // The browser comes back with a code.
    let callback = format!(
        "{}/auth/callback?code=the-code&state={}",
        login.callback_base(),
        login.param("state")
    );
    let response = browser().get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!(
            "http://localhost:{}/success?",
            url::Url::parse(&login.param("redirect_uri"))
                .unwrap()
                .port()
                .unwrap()
        )),
        "{location}"
    );
    assert!(!location.contains(&id_token), "tokens never go in URLs");
    let success = browser()
        .get(location.replace("http://localhost:", "http://127.0.0.1:"))
        .send()
        .await
        .unwrap();
    assert_eq!(success.status(), 200);
    assert_eq!(success.headers()["connection"], "close");
    assert!(success.text().await.unwrap().contains("Signed in"));

    for connection in [&mut client, &mut watcher] {
        assert_eq!(
            completed(connection).await,
            json!({"loginId": login.login_id, "success": true, "error": null})
        );
        assert_eq!(
            connection.notification("account/updated").await,
            json!({"authMode": "chatgpt", "planType": "pro"})
        );
    }

    // PKCE: the verifier sent to the token endpoint matches the challenge in the authorize URL.
    let requests = issuer.received_requests().await.unwrap();
    let exchange = requests
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("grant_type=authorization_code"))
        .unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&exchange.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("code"), "the-code");
    assert_eq!(field("redirect_uri"), login.param("redirect_uri"));
    assert_eq!(field("client_id"), "app_EMoamEEZ73f0CkXaXp7hrann");
    let verifier = field("code_verifier");
    assert_eq!(verifier.len(), 86);
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        login.param("code_challenge")
    );
    assert_eq!(
        exchange.headers["content-type"],
        "application/x-www-form-urlencoded"
    );

    // auth.json: Codex's format, 0600.
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(server.auth_json()).unwrap()).unwrap();
    assert_eq!(written["auth_mode"], json!("chatgpt"));
    assert_eq!(written["OPENAI_API_KEY"], json!("sk-exchanged"));
    assert_eq!(written["tokens"]["id_token"], json!(id_token));
    assert_eq!(written["tokens"]["access_token"], json!("access-token-123"));
    assert_eq!(
        written["tokens"]["refresh_token"],
        json!("refresh-token-123")
    );
    assert_eq!(written["tokens"]["account_id"], json!("org-1"));
    assert!(written["last_refresh"].as_str().unwrap().ends_with('Z'));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(server.auth_json())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        client.call("account/read", json!({})).await["result"],
        json!({"account": {"type": "chatgpt", "email": "user@example.com", "planType": "pro"}, "requiresOpenaiAuth": true})
    );
}

#[tokio::test]
async fn a_wrong_state_is_refused_and_the_login_goes_on() {
    let issuer = issuer_with_tokens(&idt("user@example.com", "pro", "org-1")).await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let login = start_browser_login(&mut client).await;
    let response = browser()
        .get(format!(
            "{}/auth/callback?code=c&state=forged",
            login.callback_base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "State mismatch");
    let response = browser()
        .get(format!(
            "{}/auth/callback?code=c&state={}",
            login.callback_base(),
            login.param("state")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(completed(&mut client).await["success"], json!(true));
}

async fn failing_login(
    issuer: &MockServer,
    extra: &[&str],
    query: &str,
) -> (Value, Client, TestServer) {
    let server = server_with_issuer(issuer, extra).await;
    let mut client = server.client().await;
    let login = start_browser_login(&mut client).await;
    let url = format!(
        "{}/auth/callback?state={}&{query}",
        login.callback_base(),
        login.param("state")
    );
    let page = browser().get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Sign-in failed"));
    let done = completed(&mut client).await;
    assert_eq!(done["loginId"], json!(login.login_id));
    assert_eq!(done["success"], json!(false));
    client
        .assert_no_method(Duration::from_millis(300), "account/updated")
        .await;
    assert!(
        !server.auth_json().exists(),
        "a failed login writes nothing"
    );
    (done, client, server)
}

#[tokio::test]
async fn issuer_errors_fail_the_login() {
    let issuer = issuer_with_tokens(&idt("user@example.com", "pro", "org-1")).await;
    let (done, ..) = failing_login(&issuer, &[], "error=access_denied").await;
    assert_eq!(
        done["error"],
        json!("Login server error: Sign-in failed: access_denied")
    );
    let (done, ..) = failing_login(
        &issuer,
        &[],
        "error=access_denied&error_description=missing_codex_entitlement",
    )
    .await;
    assert_eq!(
        done["error"],
        json!(
            "Login server error: Codex is not enabled for your workspace. Contact your workspace administrator to request access to Codex."
        )
    );
    let (done, ..) = failing_login(
        &issuer,
        &[],
        "error=server_error&error_description=Something%20broke",
    )
    .await;
    assert_eq!(
        done["error"],
        json!("Login server error: Sign-in failed: Something broke")
    );
    let (done, ..) = failing_login(&issuer, &[], "nothing=here").await;
    assert_eq!(
        done["error"],
        json!("Login server error: Missing authorization code. Sign-in could not be completed.")
    );
}

#[tokio::test]
async fn token_endpoint_failures_fail_the_login() {
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": "server_error", "error_description": "db down"})),
        )
        .mount(&issuer)
        .await;
    let (done, ..) = failing_login(&issuer, &[], "code=c").await;
    assert_eq!(
        done["error"],
        json!(
            "Login server error: Token exchange failed: token endpoint returned status 500 Internal Server Error: db down"
        )
    );
}

#[tokio::test]
async fn a_forced_workspace_is_enforced_on_the_id_token() {
    let issuer = issuer_with_tokens(&idt("user@example.com", "pro", "org-other")).await;
    let (done, ..) = failing_login(
        &issuer,
        &["forced_chatgpt_workspace_id=\"ws-forced\""],
        "code=c",
    )
    .await;
    assert_eq!(
        done["error"],
        json!("Login server error: Login is restricted to workspace id(s) ws-forced.")
    );
    let no_claim = jwt(json!({"email": "user@example.com"}));
    let issuer = issuer_with_tokens(&no_claim).await;
    let (done, ..) = failing_login(
        &issuer,
        &["forced_chatgpt_workspace_id=[\"ws-a\",\"ws-b\"]"],
        "code=c",
    )
    .await;
    assert_eq!(
        done["error"],
        json!(
            "Login server error: Login is restricted to a specific workspace, but the token did not include an chatgpt_account_id claim."
        )
    );
}

#[tokio::test]
async fn forced_workspaces_appear_in_the_authorize_url() {
    let issuer = issuer_with_tokens(&idt("u@example.com", "pro", "ws-forced")).await;
    let server = server_with_issuer(&issuer, &["forced_chatgpt_workspace_id=\"ws-forced\""]).await;
    let mut client = server.client().await;
    let login = start_browser_login(&mut client).await;
    assert_eq!(login.param("allowed_workspace_id"), "ws-forced");
    assert!(
        login
            .auth_url
            .as_str()
            .contains("allowed_workspace_id=ws-forced")
    );

    let server = server_with_issuer(
        &issuer,
        &["forced_chatgpt_workspace_id=[\"ws-a\",\"ws-b\"]"],
    )
    .await;
    let mut client = server.client().await;
    let login = start_browser_login(&mut client).await;
    let found: Vec<_> = login
        .params
        .iter()
        .filter(|(k, _)| k == "allowed_workspace_id")
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, "ws-a,ws-b");
}

#[tokio::test]
async fn cancel_ends_the_login() {
    let (_issuer, _server, mut client) = login_setup(&[]).await;
    let login = start_browser_login(&mut client).await;
    let id = client
        .request("account/login/cancel", json!({"loginId": login.login_id}))
        .await;
    assert_eq!(
        client.response(id).await["result"],
        json!({"status": "canceled"})
    );
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login.login_id, "success": false, "error": NOT_COMPLETED})
    );
    client
        .assert_no_method(Duration::from_millis(500), "account/updated")
        .await;
    let again = client
        .call("account/login/cancel", json!({"loginId": login.login_id}))
        .await;
    assert_eq!(again["result"], json!({"status": "notFound"}));
    callback_server_gone(&login).await;
}

#[tokio::test]
async fn the_callback_servers_cancel_route_ends_the_login() {
    let (_issuer, _server, mut client) = login_setup(&[]).await;
    let login = start_browser_login(&mut client).await;
    let elsewhere = browser()
        .get(format!("{}/elsewhere", login.callback_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    let response = browser()
        .get(format!("{}/cancel", login.callback_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "Login cancelled");
    assert_eq!(
        completed(&mut client).await["error"],
        json!("Login server error: Login cancelled")
    );
    callback_server_gone(&login).await;
}

#[tokio::test]
async fn a_new_login_replaces_the_previous_one() {
    let (_issuer, _server, mut client) = login_setup(&[]).await;
    let first = start_browser_login(&mut client).await;
    let second = start_browser_login(&mut client).await;
    assert_ne!(first.login_id, second.login_id);
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": first.login_id, "success": false, "error": NOT_COMPLETED})
    );
    let reply = client
        .call("account/login/cancel", json!({"loginId": first.login_id}))
        .await;
    assert_eq!(reply["result"], json!({"status": "notFound"}));
    // The second one completes normally.
    let response = browser()
        .get(format!(
            "{}/auth/callback?code=c&state={}",
            second.callback_base(),
            second.param("state")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": second.login_id, "success": true, "error": null})
    );
}

#[tokio::test]
async fn an_external_login_ends_a_browser_login() {
    let (_issuer, _server, mut client) = login_setup(&[]).await;
    let login = start_browser_login(&mut client).await;
    let id = client
        .request(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": idt("e@example.com", "pro", "org"), "accessToken": "a"}),
        )
        .await;
    assert_eq!(
        client.next_json().await,
        json!({"id": id, "result": {"type": "chatgptAuthTokens"}})
    );
    assert_eq!(
        client.next_json().await["params"],
        json!({"loginId": login.login_id, "success": false, "error": NOT_COMPLETED})
    );
    assert_eq!(
        client.next_json().await["params"],
        json!({"loginId": null, "success": true, "error": null})
    );
    assert_eq!(client.next_json().await["method"], json!("account/updated"));
    let reply = client
        .call("account/login/cancel", json!({"loginId": login.login_id}))
        .await;
    assert_eq!(reply["result"], json!({"status": "notFound"}));
}

#[tokio::test]
async fn logout_ends_a_browser_login() {
    let (_issuer, _server, mut client) = login_setup(&[]).await;
    let login = start_browser_login(&mut client).await;
    client.call("account/logout", json!({})).await;
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login.login_id, "success": false, "error": NOT_COMPLETED})
    );
}

#[tokio::test]
async fn a_busy_login_port_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let issuer = issuer_with_tokens(&idt("u@example.com", "pro", "o")).await;
    let setting = format!("auth.login_port={port}");
    let server = server_with_issuer(&issuer, &[&setting]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgpt"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32603, "message": format!("failed to start login server: Port 127.0.0.1:{port} is already in use")})
    );
    client
        .assert_none(Duration::from_millis(200), "a notification", |v| {
            v.get("method").is_some()
        })
        .await;
}

#[tokio::test]
async fn a_previous_login_server_on_the_port_is_asked_to_cancel() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let issuer = issuer_with_tokens(&idt("u@example.com", "pro", "o")).await;
    let setting = format!("auth.login_port={port}");
    let first = server_with_issuer(&issuer, &[&setting]).await;
    let second = server_with_issuer(&issuer, &[&setting]).await;
    let mut a = first.client().await;
    let mut b = second.client().await;
    let old = start_browser_login(&mut a).await;
    let new = start_browser_login(&mut b).await;
    assert_eq!(new.callback_base(), old.callback_base());
    assert_eq!(
        completed(&mut a).await,
        json!({"loginId": old.login_id, "success": false, "error": "Login server error: Login cancelled"})
    );
}

#[tokio::test]
async fn a_login_times_out() {
    let (_issuer, _server, mut client) = login_setup(&["auth.login_timeout_secs=1"]).await;
    let login = start_browser_login(&mut client).await;
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login.login_id, "success": false, "error": "Login timed out"})
    );
}

// ---- device code ----

async fn device_issuer(usercode: ResponseTemplate, poll: ResponseTemplate) -> MockServer {
    let issuer = issuer_with_tokens(&idt("device@example.com", "pro", "ws-1")).await;
    Mock::given(method("POST"))
        .and(path("/api/accounts/deviceauth/usercode"))
        .respond_with(usercode)
        .mount(&issuer)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/accounts/deviceauth/token"))
        .respond_with(poll)
        .mount(&issuer)
        .await;
    issuer
}

fn usercode(interval: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"device_auth_id": "device-auth-123", "user_code": "CODE-12345", "interval": interval}))
}

#[tokio::test]
async fn device_code_login_succeeds() {
    let issuer = device_issuer(
        usercode("0"),
        ResponseTemplate::new(200).set_body_json(json!({
            "authorization_code": "poll-code-321", "code_challenge": "code-challenge-321", "code_verifier": "code-verifier-321"})),
    )
    .await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    let result = &reply["result"];
    assert_eq!(result["type"], json!("chatgptDeviceCode"));
    assert_eq!(
        result["verificationUrl"],
        json!(format!("{}/codex/device", issuer.uri()))
    );
    assert_eq!(result["userCode"], json!("CODE-12345"));
    let login_id = result["loginId"].as_str().unwrap().to_owned();
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login_id, "success": true, "error": null})
    );
    assert_eq!(
        client.notification("account/updated").await,
        json!({"authMode": "chatgpt", "planType": "pro"})
    );
    assert!(server.auth_json().exists());
    let requests = issuer.received_requests().await.unwrap();
    let usercode_request = requests
        .iter()
        .find(|r| r.url.path() == "/api/accounts/deviceauth/usercode")
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&usercode_request.body).unwrap(),
        json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann"})
    );
    let poll = requests
        .iter()
        .find(|r| r.url.path() == "/api/accounts/deviceauth/token")
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&poll.body).unwrap(),
        json!({"device_auth_id": "device-auth-123", "user_code": "CODE-12345"})
    );
    let exchange = requests
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("grant_type=authorization_code"))
        .unwrap();
    let body = String::from_utf8_lossy(&exchange.body).into_owned();
    assert!(body.contains("code=poll-code-321"), "{body}");
    assert!(body.contains("code_verifier=code-verifier-321"), "{body}");
    let redirect = url::form_urlencoded::byte_serialize(
        format!("{}/deviceauth/callback", issuer.uri()).as_bytes(),
    )
    .collect::<String>();
    assert!(body.contains(&format!("redirect_uri={redirect}")), "{body}");
}

#[tokio::test]
async fn device_code_not_enabled() {
    let issuer = device_issuer(ResponseTemplate::new(404), ResponseTemplate::new(404)).await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "device code login is not enabled for this Codex server. Use the browser login or verify the server URL."})
    );
    client
        .assert_no_method(Duration::from_millis(500), "account/login/completed")
        .await;
    assert!(!server.auth_json().exists());
}

#[tokio::test]
async fn device_code_start_failure() {
    let issuer = device_issuer(ResponseTemplate::new(500), ResponseTemplate::new(404)).await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    assert_eq!(reply["error"]["code"], json!(-32603));
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to request device code: "),
        "{reply}"
    );
}

#[tokio::test]
async fn device_code_poll_failure() {
    let issuer = device_issuer(usercode("0"), ResponseTemplate::new(500)).await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    let login_id = reply["result"]["loginId"].clone();
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login_id, "success": false, "error": "device auth failed with status 500 Internal Server Error"})
    );
    client
        .assert_no_method(Duration::from_millis(500), "account/updated")
        .await;
    assert!(!server.auth_json().exists());
}

#[tokio::test]
async fn device_code_cancel() {
    let issuer = device_issuer(usercode("1"), ResponseTemplate::new(404)).await;
    let server = server_with_issuer(&issuer, &[]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    let login_id = reply["result"]["loginId"].as_str().unwrap().to_owned();
    let reply = client
        .call("account/login/cancel", json!({"loginId": login_id}))
        .await;
    assert_eq!(reply["result"], json!({"status": "canceled"}));
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login_id, "success": false, "error": "Login was not completed"})
    );
    client
        .assert_no_method(Duration::from_millis(500), "account/updated")
        .await;
    assert!(!server.auth_json().exists());
}

#[tokio::test]
async fn device_code_times_out() {
    let issuer = device_issuer(usercode("0"), ResponseTemplate::new(403)).await;
    let server = server_with_issuer(&issuer, &["auth.device_code_timeout_secs=1"]).await;
    let mut client = server.client().await;
    let reply = client
        .call("account/login/start", json!({"type": "chatgptDeviceCode"}))
        .await;
    let login_id = reply["result"]["loginId"].clone();
    assert_eq!(
        completed(&mut client).await,
        json!({"loginId": login_id, "success": false, "error": "device auth timed out after 1 second"})
    );
}

// ---- token lifecycle ----

async fn grant_issuer(response: ResponseTemplate) -> MockServer {
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(response)
        .mount(&issuer)
        .await;
    issuer
}

async fn lifecycle_server(backend: &MockServer, issuer: &MockServer) -> TestServer {
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let refresh = format!("auth.refresh_token_url=\"{}/oauth/token\"", issuer.uri());
    TestServer::start(&[&base, &refresh]).await
}

/// Writes a managed auth.json for user@example.com (plan `pro`, workspace `org-1`).
fn write_user_tokens(home: &std::path::Path, access: &str, refresh: &str, last_refresh: &str) {
    write_auth(
        home,
        &managed_auth(
            "user@example.com",
            "pro",
            "org-1",
            access,
            refresh,
            last_refresh,
        ),
    );
}

fn expired_access(token: &str) -> String {
    jwt(json!({"exp": time::OffsetDateTime::now_utc().unix_timestamp() - 60, "nonce": token}))
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_before_the_call() {
    let backend = backend_accepting(&["access-new"]).await;
    let issuer = grant_issuer(
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": "access-new", "refresh_token": "refresh-new"})),
    )
    .await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(
        server.home(),
        &expired_access("old"),
        "refresh-old",
        &now_rfc3339(),
    );
    let mut client = server.client().await;
    client
        .call_result("account/rateLimits/read", Value::Null)
        .await;
    assert_eq!(
        backend.received_requests().await.unwrap().len(),
        1,
        "no wasted call with the expired token"
    );
    assert_eq!(issuer.received_requests().await.unwrap().len(), 1);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(server.auth_json()).unwrap()).unwrap();
    assert_eq!(written["tokens"]["access_token"], json!("access-new"));
}

#[tokio::test]
async fn an_old_token_without_exp_is_refreshed_after_eight_days() {
    let backend = backend_accepting(&["access-new"]).await;
    let issuer = grant_issuer(
        ResponseTemplate::new(200).set_body_json(json!({"access_token": "access-new"})),
    )
    .await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "opaque-old", "refresh-old", &days_ago(9));
    let mut client = server.client().await;
    client
        .call_result("account/rateLimits/read", Value::Null)
        .await;
    assert_eq!(issuer.received_requests().await.unwrap().len(), 1);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(server.auth_json()).unwrap()).unwrap();
    assert_eq!(
        written["tokens"]["refresh_token"],
        json!("refresh-old"),
        "absent tokens are kept"
    );
}

#[tokio::test]
async fn a_transient_refresh_failure_keeps_the_current_token() {
    let backend = backend_accepting(&["opaque-old"]).await;
    let issuer =
        grant_issuer(ResponseTemplate::new(502).set_body_raw("upstream", "text/plain")).await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "opaque-old", "refresh-old", &days_ago(9));
    let mut client = server.client().await;
    client
        .call_result("account/rateLimits/read", Value::Null)
        .await;
    assert_eq!(
        client.call("account/read", json!({})).await["result"]["account"]["email"],
        json!("user@example.com")
    );
}

#[tokio::test]
async fn account_read_can_force_a_refresh() {
    let backend = backend_accepting(&[]).await;
    let issuer = grant_issuer(
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": "access-new", "refresh_token": "refresh-new"})),
    )
    .await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "access-old", "refresh-old", &now_rfc3339());
    let mut client = server.client().await;
    let reply = client
        .call("account/read", json!({"refreshToken": true}))
        .await;
    assert_eq!(
        reply["result"]["account"]["email"],
        json!("user@example.com")
    );
    let requests = issuer.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&requests[0].body).unwrap(),
        json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token", "refresh_token": "refresh-old", "scope": "openid profile email"})
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(server.auth_json()).unwrap()).unwrap();
    assert_eq!(written["tokens"]["refresh_token"], json!("refresh-new"));
}

async fn permanent_failure(code: &str) -> (Value, Value, usize, usize) {
    let backend = backend_accepting(&[]).await;
    let issuer =
        grant_issuer(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": code}})))
            .await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "opaque", "refresh-old", &days_ago(9));
    let mut client = server.client().await;
    let forced = client
        .call("account/read", json!({"refreshToken": true}))
        .await;
    let after = client.call("account/read", json!({})).await;
    assert_eq!(forced["result"], after["result"]);
    let rate_limits = client.call("account/rateLimits/read", Value::Null).await;
    (
        after["result"].clone(),
        rate_limits["error"].clone(),
        issuer.received_requests().await.unwrap().len(),
        backend.received_requests().await.unwrap().len(),
    )
}

#[tokio::test]
async fn permanent_refresh_failures_are_latched() {
    let cases = [
        (
            "refresh_token_expired",
            "Your access token could not be refreshed because your refresh token has expired. Please log out and sign in again.",
        ),
        (
            "refresh_token_reused",
            "Your access token could not be refreshed because your refresh token was already used. Please log out and sign in again.",
        ),
        (
            "refresh_token_invalidated",
            "Your access token could not be refreshed because your refresh token was revoked. Please log out and sign in again.",
        ),
        (
            "something_else",
            "Your access token could not be refreshed. Please log out and sign in again.",
        ),
    ];
    for (code, message) in cases {
        let (account, error, grants, backend_calls) = permanent_failure(code).await;
        assert_eq!(
            account,
            json!({"account": null, "requiresOpenaiAuth": true}),
            "{code}"
        );
        assert_eq!(
            error,
            json!({"code": -32603, "message": format!("failed to fetch codex rate limits: {message}")}),
            "{code}"
        );
        assert_eq!(grants, 1, "{code}: exactly one POST, no storm");
        assert_eq!(backend_calls, 0, "{code}: no network call once latched");
    }
}

#[tokio::test]
async fn a_new_refresh_token_in_auth_json_clears_the_latch() {
    let backend = backend_accepting(&["fresh-access"]).await;
    let issuer = grant_issuer(
        ResponseTemplate::new(401)
            .set_body_json(json!({"error": {"code": "refresh_token_expired"}})),
    )
    .await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "opaque", "refresh-old", &days_ago(9));
    let mut client = server.client().await;
    client
        .call("account/read", json!({"refreshToken": true}))
        .await;
    assert_eq!(
        client.call("account/read", json!({})).await["result"]["account"],
        json!(null)
    );
    // Another process signs in again.
    write_user_tokens(
        server.home(),
        "fresh-access",
        "refresh-fresh",
        &now_rfc3339(),
    );
    assert_eq!(
        client.call("account/read", json!({})).await["result"]["account"]["email"],
        json!("user@example.com")
    );
    client
        .call_result("account/rateLimits/read", Value::Null)
        .await;
}

#[tokio::test]
async fn a_401_adopts_tokens_another_process_already_rotated() {
    let backend = MockServer::start().await;
    let issuer = grant_issuer(ResponseTemplate::new(500)).await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "access-old", "refresh-old", &now_rfc3339());
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer access-rotated"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body()))
        .with_priority(1)
        .mount(&backend)
        .await;
    // Another process rotates the tokens while the stale call is on its way.
    let home = server.home().to_path_buf();
    Mock::given(method("GET"))
        .respond_with(
            Arrivals::new()
                .answering(ResponseTemplate::new(401))
                .after_arrival(move || {
                    write_user_tokens(&home, "access-rotated", "refresh-rotated", &now_rfc3339())
                }),
        )
        .with_priority(10)
        .mount(&backend)
        .await;
    let mut client = server.client().await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    assert!(client.response(id).await.get("result").is_some());
    assert!(
        issuer.received_requests().await.unwrap().is_empty(),
        "no grant: the rotated tokens were adopted"
    );
}

#[tokio::test]
async fn a_401_after_logout_elsewhere_says_so() {
    let backend = MockServer::start().await;
    let issuer = grant_issuer(ResponseTemplate::new(500)).await;
    let server = lifecycle_server(&backend, &issuer).await;
    write_user_tokens(server.home(), "access-old", "refresh-old", &now_rfc3339());
    // Another process logs out while the call is on its way.
    let auth_json = server.auth_json();
    Mock::given(method("GET"))
        .respond_with(
            Arrivals::new()
                .answering(ResponseTemplate::new(401))
                .after_arrival(move || std::fs::remove_file(&auth_json).unwrap()),
        )
        .mount(&backend)
        .await;
    let mut client = server.client().await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    assert_eq!(
        client.response(id).await["error"]["message"],
        json!(
            "failed to fetch codex rate limits: Your access token could not be refreshed because you have since logged out or signed in to another account. Please sign in again."
        )
    );
}

/// A token endpoint that rotates refresh tokens and rejects reuse, as the real one does.
struct RotatingIssuer {
    current: Mutex<u32>,
    grants: Arc<Mutex<Vec<String>>>,
}

impl Respond for RotatingIssuer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let presented = body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.grants.lock().unwrap().push(presented.clone());
        let mut current = self.current.lock().unwrap();
        if presented != format!("refresh-{}", *current) {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": "refresh_token_reused"}}));
        }
        *current += 1;
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": format!("access-{}", *current), "refresh_token": format!("refresh-{}", *current)}))
            .set_delay(Duration::from_millis(200))
    }
}

#[tokio::test]
async fn two_processes_sharing_a_home_refresh_once() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer access-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body()))
        .with_priority(1)
        .mount(&backend)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_delay(Duration::from_millis(300)))
        .with_priority(10)
        .mount(&backend)
        .await;
    let grants = Arc::new(Mutex::new(Vec::new()));
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(RotatingIssuer {
            current: Mutex::new(0),
            grants: grants.clone(),
        })
        .mount(&issuer)
        .await;
    let home = tempfile::tempdir().unwrap();
    write_user_tokens(home.path(), "access-0", "refresh-0", &now_rfc3339());
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let refresh = format!("auth.refresh_token_url=\"{}/oauth/token\"", issuer.uri());
    let args = |listen| {
        [
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            listen,
            "--ws-auth",
            "none",
            "-c",
            &base,
            "-c",
            &refresh,
        ]
        .map(str::to_owned)
    };
    // One WebSocket server per home; an editor's stdio server shares it.
    let ws_args = args("ws://127.0.0.1:0");
    let stdio_args = args("stdio://");
    let first = Child::spawn(&ws_args.each_ref().map(String::as_str), &[]).await;
    let mut second = Child::spawn(&stdio_args.each_ref().map(String::as_str), &[]).await;
    let mut a = Client::connect(first.url.as_deref().unwrap(), None).await;
    let mut b = Client::over_stdio(&mut second);
    a.initialize().await;
    b.initialize().await;
    let (id_a, id_b) = (
        a.request("account/rateLimits/read", Value::Null).await,
        b.request("account/rateLimits/read", Value::Null).await,
    );
    let (reply_a, reply_b) = tokio::join!(a.response(id_a), b.response(id_b));
    assert!(reply_a.get("result").is_some(), "{reply_a}");
    assert!(reply_b.get("result").is_some(), "{reply_b}");
    assert_eq!(
        *grants.lock().unwrap(),
        vec!["refresh-0".to_owned()],
        "one grant, zero reuse"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("auth.json")).unwrap())
            .unwrap();
    assert_eq!(written["tokens"]["refresh_token"], json!("refresh-1"));
}
