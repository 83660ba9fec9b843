//! Reading Codex's files, rewriting them, the change cache and the lock.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn idt(email: &str) -> String {
    let payload = json!({"email": email, "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "org-1"}});
    format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload.to_string()))
}

#[test]
fn classifies_codex_files() {
    let key = parse_auth_file(br#"{"auth_mode":"apikey","OPENAI_API_KEY":"sk-1"}"#).unwrap();
    assert!(matches!(key, Some(StoredAuth::ApiKey(_))));
    let legacy_key = parse_auth_file(br#"{"OPENAI_API_KEY":"sk-1"}"#).unwrap();
    assert!(matches!(legacy_key, Some(StoredAuth::ApiKey(_))));
    let managed = json!({"OPENAI_API_KEY": null, "tokens": {"id_token": idt("u@x"), "access_token": "a", "refresh_token": "r", "account_id": null}, "last_refresh": "2026-01-29T12:34:56.123456Z"});
    match parse_auth_file(managed.to_string().as_bytes()).unwrap() {
        Some(StoredAuth::Managed(tokens)) => {
            assert_eq!(tokens.claims.email.as_deref(), Some("u@x"));
            assert_eq!(tokens.workspace(), Some("org-1"));
            assert!(tokens.last_refresh.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse_auth_file(br#"{"OPENAI_API_KEY":null}"#)
            .unwrap()
            .is_none()
    );
}

#[test]
fn unusable_files_are_errors() {
    for bad in [
        &b"not json"[..],
        br#"{"auth_mode":"apikey","OPENAI_API_KEY":""}"#,
        br#"{"auth_mode":"chatgptAuthTokens"}"#,
        br#"{"auth_mode":"chatgpt"}"#,
        br#"{"tokens":{"id_token":"nope","access_token":"a","refresh_token":"r"}}"#,
    ] {
        assert!(
            parse_auth_file(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn errors_do_not_echo_secrets() {
    let err = parse_auth_file(br#"{"OPENAI_API_KEY": sk-SENTINEL}"#).unwrap_err();
    assert!(!err.contains("SENTINEL"), "{err}");
}

#[tokio::test]
async fn refresh_rewrite_keeps_unknown_members() {
    let dir = tempfile::tempdir().unwrap();
    let store = AuthStore::new(dir.path());
    let doc = json!({"auth_mode":"chatgpt","OPENAI_API_KEY":null,"future_field":{"x":1},
        "tokens":{"id_token": idt("u@x"),"access_token":"a","refresh_token":"r","account_id":"acct","future_token_field":2},
        "last_refresh":"2026-01-29T12:34:56Z"});
    fs::write(store.path(), doc.to_string()).unwrap();
    let (loaded, _) = store.current().await;
    let Some(StoredAuth::Managed(tokens)) = loaded.credentials() else {
        panic!()
    };
    let next = tokens
        .refreshed(None, Some("a2".into()), Some("r2".into()))
        .unwrap();
    store.write_managed(&next).await.unwrap();
    let written: Value = serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
    assert_eq!(written["future_field"], json!({"x":1}));
    assert_eq!(written["tokens"]["future_token_field"], json!(2));
    assert_eq!(written["tokens"]["access_token"], json!("a2"));
    assert_eq!(written["tokens"]["refresh_token"], json!("r2"));
    assert_eq!(written["tokens"]["account_id"], json!("acct"));
    assert_eq!(written["auth_mode"], json!("chatgpt"));
    assert!(written["OPENAI_API_KEY"].is_null());
    assert_ne!(written["last_refresh"], json!("2026-01-29T12:34:56Z"));
}

#[tokio::test]
async fn cache_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = AuthStore::new(dir.path());
    let (loaded, v1) = store.current().await;
    assert!(matches!(loaded, Loaded::Empty));
    let (_, v1b) = store.current().await;
    assert_eq!(v1, v1b, "unchanged file is not re-read");
    store.write_api_key(&"sk-1".into()).await.unwrap();
    let (loaded, v2) = store.current().await;
    assert!(matches!(loaded.credentials(), Some(StoredAuth::ApiKey(_))));
    assert!(v2 > v1);
    store.delete().await.unwrap();
    assert!(matches!(store.current().await.0, Loaded::Empty));
}

#[tokio::test]
async fn lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let store = AuthStore::new(dir.path());
    let held = store.lock().await.unwrap();
    let second = atomic_file::open_lock_file(&dir.path().join("auth.json.lock")).unwrap();
    assert!(matches!(
        second.try_lock(),
        Err(fs::TryLockError::WouldBlock)
    ));
    drop(held);
    assert!(second.try_lock().is_ok());
}

proptest::proptest! {
    #[test]
    fn arbitrary_files_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let _ = parse_auth_file(&bytes);
    }
}
