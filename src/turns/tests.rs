//! Turns through an in-memory connection and a real store: what a failed write does to a turn.

use serde_json::{Value, json};

use crate::dev_backend::{FakeBackend, Reply};
use crate::rpc::memory::MemoryClient;
use crate::testing::{TestCore, login_external};

async fn core_with_backend() -> (FakeBackend, TestCore, MemoryClient) {
    let backend = FakeBackend::start().await.unwrap();
    let overrides = backend.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let core = TestCore::new(&overrides);
    let mut client = core.connect();
    client.initialize().await;
    login_external(&mut client, "A").await;
    (backend, core, client)
}

/// Everything up to and including `turn/completed`.
async fn until_completed(client: &mut MemoryClient) -> Vec<Value> {
    let mut messages = Vec::new();
    loop {
        let message = client.next_json().await;
        let done = message["method"] == "turn/completed";
        messages.push(message);
        if done {
            return messages;
        }
    }
}

#[tokio::test]
async fn a_write_that_fails_mid_turn_fails_the_turn_and_the_thread_stays_readable() {
    let (backend, core, mut client) = core_with_backend().await;
    let thread = client.call("thread/start", json!({})).await["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.next_json().await["method"], "thread/started");
    // The turn's first rows still fit; its 64 KiB answer does not.
    core.threads.store_for_tests().fill_up_for_tests();
    backend.script([Reply::Message("x".repeat(64 * 1024))]);
    let started = client
        .call(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "hi"}]}),
        )
        .await;
    assert_eq!(started["result"]["turn"]["status"], "inProgress");
    let messages = until_completed(&mut client).await;
    let expected = json!({"message": "failed to persist turn: database or disk is full", "codexErrorInfo": "other", "additionalDetails": null});
    let errors: Vec<&Value> = messages.iter().filter(|m| m["method"] == "error").collect();
    assert_eq!(errors.len(), 1, "{messages:#?}");
    assert_eq!(errors[0]["params"]["error"], expected);
    let turn = &messages.last().unwrap()["params"]["turn"];
    assert_eq!(
        (&turn["status"], &turn["error"]),
        (&json!("failed"), &expected)
    );
    // The answer was never announced complete: it was never stored.
    assert!(
        !messages
            .iter()
            .any(|m| m["method"] == "item/completed"
                && m["params"]["item"]["type"] == "agentMessage")
    );
    let read = client
        .call(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    assert_eq!(read["result"]["thread"]["turns"][0]["status"], "failed");
}
