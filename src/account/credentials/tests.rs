//! How each mode renews its credentials: the managed refresh grant, adopting tokens another
//! process already rotated, `refresh_token_reused`, the latch, and the owner of host-owned tokens.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::*;
use crate::peer::{Overflow, WriteQueue};
use crate::protocol::ExternalTokenParams;

fn id_token() -> String {
    crate::testing::id_token("m@example.com", "org-m")
}

fn write_managed(home: &Path, access: &str, refresh: &str) {
    let doc = json!({"OPENAI_API_KEY": null, "last_refresh": "2026-11-30T12:00:00Z",
        "tokens": {"id_token": id_token(), "access_token": access, "refresh_token": refresh, "account_id": "org-m"}});
    std::fs::write(home.join("auth.json"), doc.to_string()).unwrap();
}

fn stored_tokens(home: &Path) -> (String, String) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("auth.json")).unwrap()).unwrap();
    (
        doc["tokens"]["access_token"].as_str().unwrap().to_owned(),
        doc["tokens"]["refresh_token"].as_str().unwrap().to_owned(),
    )
}

struct Fixture {
    home: tempfile::TempDir,
    issuer: MockServer,
    credentials: Arc<Credentials>,
}

async fn fixture() -> Fixture {
    let home = tempfile::tempdir().unwrap();
    let issuer = MockServer::start().await;
    let token_url = format!("auth.refresh_token_url=\"{}/oauth/token\"", issuer.uri());
    let config = Config::from_overrides(
        home.path(),
        &[&token_url, "auth.external_refresh_timeout_secs=1"],
    )
    .unwrap();
    let credentials = Arc::new(Credentials::new(
        Arc::new(config),
        Arc::new(Identity::new(None)),
        reqwest::Client::new(),
    ));
    Fixture {
        home,
        issuer,
        credentials,
    }
}

async fn grants(issuer: &MockServer) -> usize {
    issuer.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn a_managed_401_spends_the_refresh_token_once_and_saves_the_rotation() {
    let f = fixture().await;
    write_managed(f.home.path(), "access-1", "refresh-1");
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "access-2", "refresh_token": "refresh-2"})),
        )
        .mount(&f.issuer)
        .await;
    let stale = f.credentials.current_credential().await.unwrap();
    assert_eq!(stale.kind, CredentialKind::Managed);
    assert_eq!(stale.account_id.as_deref(), Some("org-m"));
    let refreshed = f.credentials.clone().refresh(stale.clone()).await;
    assert_eq!(refreshed, Ok(Refreshed::Renewed));
    assert_eq!(grants(&f.issuer).await, 1);
    assert_eq!(
        stored_tokens(f.home.path()),
        ("access-2".to_owned(), "refresh-2".to_owned())
    );
    let renewed = f.credentials.current_credential().await.unwrap();
    assert_eq!(renewed.bearer.expose_secret(), "access-2");
    assert!(renewed.generation > stale.generation);
}

#[tokio::test]
async fn tokens_another_process_rotated_are_adopted_without_a_grant() {
    let f = fixture().await;
    write_managed(f.home.path(), "access-1", "refresh-1");
    let stale = f.credentials.current_credential().await.unwrap();
    // Another process refreshed meanwhile.
    write_managed(f.home.path(), "access-other", "refresh-other");
    assert_eq!(
        f.credentials.clone().refresh(stale).await,
        Ok(Refreshed::Renewed)
    );
    assert_eq!(grants(&f.issuer).await, 0);
    let now = f.credentials.current_credential().await.unwrap();
    assert_eq!(now.bearer.expose_secret(), "access-other");
}

/// An issuer that says `refresh_token_reused` after another process (one that does not take the
/// lock) rotated the file.
struct RotatedElsewhere {
    home: std::path::PathBuf,
}

impl Respond for RotatedElsewhere {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        write_managed(&self.home, "access-codex", "refresh-codex");
        ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "refresh_token_reused"}}))
    }
}

#[tokio::test]
async fn refresh_token_reused_adopts_the_tokens_the_other_process_wrote() {
    let f = fixture().await;
    write_managed(f.home.path(), "access-1", "refresh-1");
    Mock::given(method("POST"))
        .respond_with(RotatedElsewhere {
            home: f.home.path().to_path_buf(),
        })
        .mount(&f.issuer)
        .await;
    let stale = f.credentials.current_credential().await.unwrap();
    assert_eq!(
        f.credentials.clone().refresh(stale).await,
        Ok(Refreshed::Renewed)
    );
    let snapshot = f.credentials.snapshot().await;
    assert!(matches!(snapshot, Snapshot::Managed { latched: false, .. }));
    let now = f.credentials.current_credential().await.unwrap();
    assert_eq!(now.bearer.expose_secret(), "access-codex");
}

#[tokio::test]
async fn a_permanent_failure_is_latched_until_the_file_changes() {
    let f = fixture().await;
    write_managed(f.home.path(), "access-1", "refresh-1");
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": "refresh_token_expired"}})),
        )
        .mount(&f.issuer)
        .await;
    let stale = f.credentials.current_credential().await.unwrap();
    let expired = Err(AuthFailure::Grant(
        crate::login::oauth::REFRESH_EXPIRED.to_owned(),
    ));
    assert_eq!(f.credentials.clone().refresh(stale.clone()).await, expired);
    assert!(matches!(
        f.credentials.snapshot().await,
        Snapshot::Managed { latched: true, .. }
    ));
    // Latched: no second grant, the same failure at once.
    assert_eq!(
        f.credentials.current_credential().await.err(),
        expired.clone().err()
    );
    assert_eq!(f.credentials.clone().refresh(stale).await, expired);
    assert_eq!(grants(&f.issuer).await, 1);
    // A new refresh token in the file (a new login elsewhere) clears the latch.
    write_managed(f.home.path(), "access-new", "refresh-new");
    assert!(matches!(
        f.credentials.snapshot().await,
        Snapshot::Managed { latched: false, .. }
    ));
}

#[tokio::test]
async fn a_logout_meanwhile_makes_a_managed_refresh_fail_with_account_changed() {
    let f = fixture().await;
    write_managed(f.home.path(), "access-1", "refresh-1");
    let stale = f.credentials.current_credential().await.unwrap();
    std::fs::remove_file(f.home.path().join("auth.json")).unwrap();
    assert_eq!(
        f.credentials.clone().refresh(stale).await,
        Err(AuthFailure::Grant(AuthFailure::AccountChanged.to_string()))
    );
    assert_eq!(grants(&f.issuer).await, 0);
}

fn external_tokens(access: &str) -> ExternalTokens {
    let params: ExternalTokenParams =
        serde_json::from_value(json!({"idToken": id_token(), "accessToken": access})).unwrap();
    ExternalTokens::from_params(&params).unwrap()
}

fn peer() -> (Peer, crate::peer::QueueReader) {
    let (queue, reader) = WriteQueue::new(16, 1 << 20, Overflow::Disconnect);
    (Peer::new(1, queue, Arc::new(AtomicU64::new(0))), reader)
}

#[tokio::test]
async fn host_owned_tokens_are_refreshed_by_their_owner_only_while_it_is_open() {
    let f = fixture().await;
    let (owner, mut written) = peer();
    owner.complete_handshake(crate::peer::Handshake {
        client: crate::protocol::ClientInfo {
            name: "host".into(),
            title: None,
            version: "1".into(),
        },
        jsonrpc: false,
        opt_out: Vec::new(),
    });
    f.credentials
        .set_external(external_tokens("access-1"), &owner);
    let stale = f.credentials.current_credential().await.unwrap();
    assert_eq!(stale.kind, CredentialKind::HostOwned);
    let refresh = tokio::spawn(f.credentials.clone().refresh(stale.clone()));
    let Some(crate::peer::OutFrame::Text(request)) = written.recv().await else {
        panic!("no refresh request")
    };
    let request: Value = serde_json::from_str(&request).unwrap();
    assert_eq!(
        request["method"],
        json!("account/chatgptAuthTokens/refresh")
    );
    owner.deliver_reply(
        &request["id"].to_string(),
        Ok(json!({"idToken": id_token(), "accessToken": "access-2"})),
    );
    assert_eq!(refresh.await.unwrap(), Ok(Refreshed::Renewed));
    let renewed = f.credentials.current_credential().await.unwrap();
    assert_eq!(renewed.bearer.expose_secret(), "access-2");

    // The owner is gone: the refresh fails at once, the tokens stay active.
    owner.close();
    assert_eq!(
        f.credentials.clone().refresh(renewed).await,
        Err(AuthFailure::NoOwner)
    );
    assert!(f.credentials.external_active());
}

#[tokio::test]
async fn a_refresh_reply_that_arrives_after_a_logout_is_discarded() {
    let f = fixture().await;
    let (owner, mut written) = peer();
    owner.complete_handshake(crate::peer::Handshake {
        client: crate::protocol::ClientInfo {
            name: "host".into(),
            title: None,
            version: "1".into(),
        },
        jsonrpc: false,
        opt_out: Vec::new(),
    });
    f.credentials
        .set_external(external_tokens("access-1"), &owner);
    let stale = f.credentials.current_credential().await.unwrap();
    let refresh = tokio::spawn(f.credentials.clone().refresh(stale));
    let Some(crate::peer::OutFrame::Text(request)) = written.recv().await else {
        panic!("no refresh request")
    };
    let request: Value = serde_json::from_str(&request).unwrap();
    f.credentials.clear();
    owner.deliver_reply(
        &request["id"].to_string(),
        Ok(json!({"idToken": id_token(), "accessToken": "access-2"})),
    );
    assert_eq!(refresh.await.unwrap(), Ok(Refreshed::Superseded));
    assert!(!f.credentials.external_active());
}
