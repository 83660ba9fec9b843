//! Model turns (TURNS §17–§23, conformance scenarios 46–71): a thread, a turn streamed from the
//! fake Responses backend, history replay, the 401 layer under turns, retries, interrupts,
//! steering, routing and shutdown.

use std::time::Duration;

use authbridge::dev_backend::{FakeBackend, Reply};
use serde_json::{Value, json};

use crate::support::turns::{
    Fixture, MARKER, REFRESH, assistant, input, last_turn, methods, of, overrides, read_turns,
    reasoning, start_thread, start_turn, text_turn, until_completed, until_delta, user,
};
use crate::support::{Child, Client};

/// S: the rate limits of the fixture's headers H (TURNS §29).
fn snapshot_s() -> Value {
    json!({"primary": {"usedPercent": 13, "windowDurationMins": 300, "resetsAt": 1764580000},
           "secondary": {"usedPercent": 40, "windowDurationMins": 10080, "resetsAt": 1765000000},
           "credits": {"hasCredits": false, "unlimited": false, "balance": null},
           "planType": null})
}

fn usage(total: u64, input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({"totalTokens": total, "inputTokens": input, "cachedInputTokens": cached, "outputTokens": output, "reasoningOutputTokens": reasoning})
}

/// Checks TURNS §29 #46's exact sequence, from the `turn/start` reply to `turn/completed`.
fn assert_basic_turn(messages: &[Value], thread: &str, turn: &str) {
    assert_eq!(
        methods(messages),
        [
            "<reply>",
            "turn/started",
            "item/started",
            "item/completed",
            "item/started",
            "item/reasoning/summaryPartAdded",
            "item/reasoning/summaryTextDelta",
            "item/completed",
            "item/started",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "item/completed",
            "thread/tokenUsage/updated",
            "account/rateLimits/updated",
            "turn/completed",
        ],
        "{messages:#?}"
    );
    let reply = &messages[0]["result"]["turn"];
    assert_eq!(reply["id"], turn);
    assert_eq!(
        (
            &reply["items"],
            &reply["error"],
            &reply["completedAt"],
            &reply["durationMs"]
        ),
        (&json!([]), &Value::Null, &Value::Null, &Value::Null)
    );
    assert!(reply["startedAt"].is_i64());
    let started = &messages[1]["params"];
    assert_eq!(
        (&started["threadId"], &started["turn"]["id"]),
        (&json!(thread), &json!(turn))
    );
    for message in &messages[2..15] {
        if message["method"] != "account/rateLimits/updated" {
            assert_eq!(message["params"]["threadId"], thread, "{message}");
            assert_eq!(message["params"]["turnId"], turn, "{message}");
        }
    }
    let user_item = &messages[2]["params"]["item"];
    assert_eq!(user_item["type"], "userMessage");
    assert_eq!(
        user_item["content"],
        json!([{"type": "text", "text": "Say hello", "text_elements": []}])
    );
    assert_eq!(messages[3]["params"]["item"]["id"], user_item["id"]);
    assert_eq!(
        messages[4]["params"]["item"],
        json!({"type": "reasoning", "id": "rs_1", "summary": [], "content": [],
               "startedAtMs": messages[4]["params"]["startedAtMs"], "completedAtMs": null})
    );
    assert_eq!(messages[5]["params"]["summaryIndex"], 0);
    assert_eq!(messages[6]["params"]["delta"], "**Thinking** about it");
    let done = &messages[7]["params"]["item"];
    assert_eq!(
        (&done["id"], &done["summary"], &done["content"]),
        (
            &json!("rs_1"),
            &json!(["**Thinking** about it"]),
            &json!([])
        )
    );
    let message_started = &messages[8]["params"]["item"];
    assert_eq!(
        (
            &message_started["type"],
            &message_started["id"],
            &message_started["text"]
        ),
        (&json!("agentMessage"), &json!("msg_1"), &json!(""))
    );
    let deltas: Vec<&Value> = messages[9..12]
        .iter()
        .map(|message| &message["params"]["delta"])
        .collect();
    assert_eq!(
        deltas,
        [&json!("Hello fr"), &json!("om fake "), &json!("backend.")]
    );
    assert_eq!(messages[9]["params"]["itemId"], "msg_1");
    let message_done = &messages[12]["params"]["item"];
    assert_eq!(
        (&message_done["id"], &message_done["text"]),
        (&json!("msg_1"), &json!("Hello from fake backend."))
    );
    assert!(message_done["completedAtMs"].is_i64());
    let token_usage = &messages[13]["params"]["tokenUsage"];
    assert_eq!(token_usage["total"], usage(1290, 1234, 1000, 56, 7));
    assert_eq!(token_usage["last"], usage(1290, 1234, 1000, 56, 7));
    assert_eq!(messages[14]["params"]["rateLimits"], snapshot_s());
    let completed = last_turn(messages);
    assert_eq!(
        (
            &completed["id"],
            &completed["status"],
            &completed["items"],
            &completed["error"]
        ),
        (&json!(turn), &json!("completed"), &json!([]), &Value::Null)
    );
    assert!(completed["durationMs"].is_i64());
}

#[tokio::test]
async fn basic_turn_streams_in_order() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    let id = f
        .client
        .request("turn/start", text_turn(&thread, "Say hello"))
        .await;
    let messages = f.completed().await;
    assert_eq!(messages[0]["id"], id);
    let turn = messages[0]["result"]["turn"]["id"].as_str().unwrap();
    assert_basic_turn(&messages, &thread, turn);
}

#[tokio::test]
async fn basic_turn_over_stdio() {
    let backend = FakeBackend::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--home".to_owned(),
        home.path().to_str().unwrap().to_owned(),
        "--listen".to_owned(),
        "stdio://".to_owned(),
    ];
    for item in overrides(&backend, &[]) {
        args.extend(["-c".to_owned(), item]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = Child::spawn(&args, &[]).await;
    let mut client = Client::over_stdio(&mut child);
    client.initialize().await;
    client.login_external("me@example.com", "acct-1", "A").await;
    let thread = start_thread(&mut client, json!({})).await;
    client
        .send(json!({"id": 7, "method": "turn/start", "params": {"threadId": thread, "input": [{"type": "text", "text": "Say hello"}]}}))
        .await;
    let mut messages = until_completed(&mut client).await;
    // The login's notifications came before the thread's; the turn starts at its reply.
    let start = messages.iter().position(|m| m["id"] == 7).unwrap();
    let messages = messages.split_off(start);
    let turn = messages[0]["result"]["turn"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_basic_turn(&messages, &thread, &turn);
}

#[tokio::test]
async fn backend_request_shape() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "Say hello").await;
    f.completed().await;
    let requests = f.backend.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/backend-api/codex/responses");
    assert_eq!(request.header("authorization"), Some("Bearer A"));
    assert_eq!(request.header("chatgpt-account-id"), Some("acct-1"));
    // The originator is the first client's name (SPEC §4).
    assert_eq!(request.header("originator"), Some("codex-app-server-tests"));
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .contains("codex-app-server-tests/0.1.0"),
        "{:?}",
        request.header("user-agent")
    );
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("session_id"), Some(thread.as_str()));
    assert_eq!(request.header("version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(
        request.body,
        json!({
            "model": "gpt-5.2-codex",
            "instructions": "You are a helpful assistant. Answer accurately and concisely. Use the provided tools when they help.",
            "input": [user("Say hello")],
            "reasoning": {"effort": "medium", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
            "store": false,
            "stream": true,
            "prompt_cache_key": thread,
        })
    );
}

#[tokio::test]
async fn second_turn_replays_history() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "one").await;
    f.completed().await;
    f.turn(&thread, "two").await;
    let messages = f.completed().await;
    let requests = f.backend.requests();
    assert_eq!(
        input(&requests[1]),
        [
            user("one"),
            reasoning(1),
            assistant("Hello from fake backend."),
            user("two")
        ]
    );
    let token_usage = &of(&messages, "thread/tokenUsage/updated")[0]["tokenUsage"];
    assert_eq!(token_usage["total"], usage(2580, 2468, 2000, 112, 14));
    assert_eq!(token_usage["last"], usage(1290, 1234, 1000, 56, 7));
}

#[tokio::test]
async fn thread_settings_shape_the_request() {
    let mut f = Fixture::start(&[]).await;
    let result = f
        .client
        .call_result(
            "thread/start",
            json!({"model": "gpt-5.2", "baseInstructions": "B", "developerInstructions": "D"}),
        )
        .await;
    assert_eq!(result["model"], "gpt-5.2");
    assert_eq!(
        (
            &result["approvalPolicy"],
            &result["sandbox"],
            &result["reasoningEffort"]
        ),
        (&json!("never"), &json!({"type": "readOnly"}), &Value::Null)
    );
    let thread = result["thread"]["id"].as_str().unwrap().to_owned();
    f.client.notification("thread/started").await;
    f.turn(&thread, "hi").await;
    f.completed().await;
    let body = &f.backend.requests()[0].body;
    assert_eq!(body["model"], "gpt-5.2");
    assert_eq!(body["instructions"], "B");
    assert_eq!(
        body["input"][0],
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "D"}]})
    );
    assert_eq!(body["input"][1], user("hi"));
}

#[tokio::test]
async fn a_turn_recovers_a_401_through_the_owner() {
    let mut f = Fixture::start(&[]).await;
    f.backend.accept_bearers(&["B"]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let refresh = f.client.server_request(REFRESH).await;
    assert_eq!(
        refresh["params"],
        json!({"reason": "unauthorized", "previousAccountId": "acct-1"})
    );
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": crate::support::idt("me@example.com", "pro", "acct-1"), "accessToken": "B"}}))
        .await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(of(&messages, "error").is_empty(), "{messages:#?}");
    f.turn(&thread, "again").await;
    f.completed().await;
    let bearers: Vec<_> = f
        .backend
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(bearers, ["Bearer A", "Bearer B", "Bearer B"]);
}

/// Asserts the turn failed at once with `message` and `unauthorized`.
fn assert_unauthorized(messages: &[Value], message: &str) {
    let errors = of(messages, "error");
    assert_eq!(errors.len(), 1, "{messages:#?}");
    let expected =
        json!({"message": message, "codexErrorInfo": "unauthorized", "additionalDetails": null});
    assert_eq!(errors[0]["error"], expected);
    assert_eq!(errors[0]["willRetry"], false);
    let turn = last_turn(messages);
    assert_eq!(
        (&turn["status"], &turn["error"]),
        (&json!("failed"), &expected)
    );
}

#[tokio::test]
async fn a_refresh_the_host_refuses_fails_the_turn_and_the_next_turn_asks_again() {
    let mut f = Fixture::start(&[]).await;
    f.backend.accept_bearers(&["B"]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "error": {"code": -32000, "message": "host says no"}}))
        .await;
    let messages = f.completed().await;
    assert_unauthorized(
        &messages,
        "auth refresh request failed: code=-32000 message=host says no",
    );
    assert_eq!(f.backend.requests().len(), 1);
    f.turn(&thread, "again").await;
    let second = f.client.server_request(REFRESH).await;
    assert_ne!(second["id"], refresh["id"]);
    f.client
        .send(json!({"id": second["id"], "error": {"code": -32000, "message": "host says no"}}))
        .await;
    f.completed().await;
}

#[tokio::test]
async fn a_silent_host_fails_the_turn_after_the_refresh_timeout() {
    let mut f = Fixture::start(&["auth.external_refresh_timeout_secs=1"]).await;
    f.backend.accept_bearers(&["B"]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    f.client.server_request(REFRESH).await;
    let messages = f.completed().await;
    assert_unauthorized(&messages, "auth refresh request timed out after 1s");
    assert_eq!(f.backend.requests().len(), 1);
}

#[tokio::test]
async fn a_gone_owner_fails_another_connections_turn() {
    let mut f = Fixture::start(&[]).await;
    f.backend.accept_bearers(&["B"]);
    let mut other = f.server.client().await;
    f.client.close().await;
    let thread = start_thread(&mut other, json!({})).await;
    start_turn(&mut other, &thread, "hi").await;
    let messages = until_completed(&mut other).await;
    assert_unauthorized(
        &messages,
        "no connected client can refresh external auth tokens",
    );
}

#[tokio::test]
async fn a_second_401_after_a_refresh_fails_the_turn() {
    let mut f = Fixture::start(&[]).await;
    f.backend.accept_bearers(&["nobody"]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": crate::support::idt("me@example.com", "pro", "acct-1"), "accessToken": "B"}}))
        .await;
    let messages = f.completed().await;
    let body = json!({"error": {"message": "unauthorized", "code": "token_expired"}});
    assert_unauthorized(
        &messages,
        &format!("unexpected status 401 Unauthorized: {body}"),
    );
    assert_eq!(f.backend.requests().len(), 2);
    assert_eq!(
        f.client
            .all_received()
            .iter()
            .filter(|m| m["method"] == REFRESH)
            .count(),
        1
    );
}

#[tokio::test]
async fn eight_turns_on_a_stale_token_share_one_refresh() {
    let mut f = Fixture::start(&[]).await;
    f.backend.accept_bearers(&["B"]);
    let mut threads = Vec::new();
    for _ in 0..8 {
        threads.push(f.thread(json!({})).await);
    }
    for thread in &threads {
        f.turn(thread, "hi").await;
    }
    // All eight got their 401 before the owner answers.
    f.backend.wait_for_requests(8).await;
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": crate::support::idt("me@example.com", "pro", "acct-1"), "accessToken": "B"}}))
        .await;
    let mut completed = 0;
    while completed < 8 {
        let messages = f.completed().await;
        assert_eq!(last_turn(&messages)["status"], "completed");
        completed += 1;
    }
    let refreshes = f
        .client
        .all_received()
        .iter()
        .filter(|m| m["method"] == REFRESH)
        .count();
    assert_eq!(refreshes, 1);
}

#[tokio::test]
async fn a_500_before_the_stream_is_retried_silently() {
    let mut f = Fixture::start(&[]).await;
    f.backend.script([Reply::server_error(), Reply::Ok]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(of(&messages, "error").is_empty());
    assert_eq!(f.backend.requests().len(), 2);
}

#[tokio::test]
async fn a_500_that_persists_fails_after_both_retry_levels() {
    let mut f =
        Fixture::start(&["model.request_max_retries=1", "model.stream_max_retries=1"]).await;
    f.backend.set_fallback(Some(Reply::server_error()));
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(f.backend.requests().len(), 4);
    let errors = of(&messages, "error");
    assert_eq!(errors.len(), 2, "{messages:#?}");
    let high_demand = "We're currently experiencing high demand, which may cause temporary errors.";
    assert_eq!(
        errors[0],
        &json!({"error": {"message": "Reconnecting... 1/1", "codexErrorInfo": {"responseStreamDisconnected": {"httpStatusCode": null}}, "additionalDetails": high_demand},
                "willRetry": true, "threadId": thread, "turnId": errors[0]["turnId"]})
    );
    let last = json!({"message": high_demand, "codexErrorInfo": "internalServerError", "additionalDetails": null});
    assert_eq!(
        (&errors[1]["error"], &errors[1]["willRetry"]),
        (&last, &json!(false))
    );
    assert_eq!(last_turn(&messages)["error"], last);
}

#[tokio::test]
async fn a_cut_stream_is_retried_and_its_partial_item_never_completes() {
    let mut f = Fixture::start(&[]).await;
    f.backend.script([Reply::Cut, Reply::Ok]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    let deltas: Vec<&Value> = of(&messages, "item/agentMessage/delta");
    assert_eq!(deltas[0]["itemId"], "msg_1");
    assert_eq!(deltas.iter().filter(|d| d["itemId"] == "msg_1").count(), 2);
    let completed: Vec<&Value> = of(&messages, "item/completed")
        .into_iter()
        .map(|params| &params["item"]["id"])
        .collect();
    assert!(!completed.contains(&&json!("msg_1")), "{completed:?}");
    assert!(completed.contains(&&json!("msg_2")), "{completed:?}");
    let errors = of(&messages, "error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["willRetry"], true);
    assert_eq!(errors[0]["error"]["message"], "Reconnecting... 1/5");
    assert_eq!(
        errors[0]["error"]["codexErrorInfo"],
        json!({"responseStreamDisconnected": {"httpStatusCode": null}})
    );
    let details = errors[0]["error"]["additionalDetails"].as_str().unwrap();
    assert!(
        details.starts_with("stream disconnected before completion: "),
        "{details}"
    );
    let requests = f.backend.requests();
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(last_turn(&messages)["status"], "completed");
}

#[tokio::test]
async fn a_stream_that_ends_early_or_fails_is_retried_then_fails() {
    let mut f = Fixture::start(&[]).await;
    f.backend.script([Reply::Eof, Reply::Ok]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(
        of(&messages, "error")[0]["error"]["additionalDetails"],
        "stream disconnected before completion: stream closed before response.completed"
    );
    assert_eq!(last_turn(&messages)["status"], "completed");

    f.backend.set_fallback(Some(Reply::Failed("boom".into())));
    f.turn(&thread, "again").await;
    let messages = f.completed().await;
    let errors = of(&messages, "error");
    let retries: Vec<&Value> = errors.iter().map(|e| &e["error"]["message"]).collect();
    assert_eq!(
        retries,
        [
            "Reconnecting... 1/5",
            "Reconnecting... 2/5",
            "Reconnecting... 3/5",
            "Reconnecting... 4/5",
            "Reconnecting... 5/5",
            "stream disconnected before completion: boom"
        ]
    );
    let last = json!({"message": "stream disconnected before completion: boom", "codexErrorInfo": "other", "additionalDetails": null});
    assert_eq!(last_turn(&messages)["error"], last);
    assert_eq!(f.backend.requests().len(), 2 + 6);
}

#[tokio::test]
async fn a_usage_limit_fails_the_turn_without_retrying() {
    let mut f = Fixture::start(&[]).await;
    f.backend.script([Reply::UsageLimit { plan: "pro".into() }]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(f.backend.requests().len(), 1);
    let tail = &methods(&messages)[messages.len() - 3..];
    assert_eq!(
        tail,
        ["account/rateLimits/updated", "error", "turn/completed"]
    );
    assert_eq!(
        of(&messages, "account/rateLimits/updated")[0]["rateLimits"],
        snapshot_s()
    );
    let error = &of(&messages, "error")[0];
    assert_eq!(error["willRetry"], false);
    assert_eq!(error["error"]["codexErrorInfo"], "usageLimitExceeded");
    let text = error["error"]["message"].as_str().unwrap();
    assert!(
        text.starts_with("You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or try again at "),
        "{text}"
    );
    assert_eq!(last_turn(&messages)["status"], "failed");
}

#[tokio::test]
async fn client_errors_fail_the_turn_at_once() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    let cases = [
        (
            Reply::rate_limited(),
            json!({"message": "exceeded retry limit, last status: 429 Too Many Requests", "codexErrorInfo": {"responseTooManyFailedAttempts": {"httpStatusCode": 429}}, "additionalDetails": null}),
        ),
        (
            Reply::Status {
                status: 400,
                body: "bad".into(),
            },
            json!({"message": "bad", "codexErrorInfo": "badRequest", "additionalDetails": null}),
        ),
        (
            Reply::Status {
                status: 400,
                body: json!({"error": {"code": "context_length_exceeded", "message": "too long"}})
                    .to_string(),
            },
            json!({"message": "Codex ran out of room in the model's context window. Start a new thread or clear earlier history before retrying.", "codexErrorInfo": "contextWindowExceeded", "additionalDetails": null}),
        ),
        (
            Reply::Status {
                status: 404,
                body: "nope".into(),
            },
            json!({"message": "unexpected status 404 Not Found: nope", "codexErrorInfo": "other", "additionalDetails": null}),
        ),
    ];
    for (n, (reply, expected)) in cases.into_iter().enumerate() {
        f.backend.script([reply]);
        f.turn(&thread, "hi").await;
        let messages = f.completed().await;
        assert_eq!(f.backend.requests().len(), n + 1);
        let errors = of(&messages, "error");
        assert_eq!(errors.len(), 1, "{messages:#?}");
        assert_eq!(errors[0]["error"], expected);
        assert_eq!(last_turn(&messages)["error"], expected);
    }
}

/// A slow turn, interrupted after its second delta.
async fn interrupted_slow_turn(f: &mut Fixture, thread: &str) -> Vec<Value> {
    f.backend.script([Reply::Slow {
        deltas: 50,
        gap: Duration::from_millis(100),
    }]);
    let turn = f.turn(thread, "slow one").await;
    let mut seen = f
        .client
        .until("two deltas", |m| {
            m["method"] == "item/agentMessage/delta" && m["params"]["delta"] == "2 "
        })
        .await;
    let reply = f
        .client
        .call(
            "turn/interrupt",
            json!({"threadId": thread, "turnId": turn}),
        )
        .await;
    assert_eq!(reply["result"], json!({}));
    seen.extend(f.completed().await);
    seen
}

#[tokio::test]
async fn interrupt_ends_the_turn_and_closes_the_upstream() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    let messages = interrupted_slow_turn(&mut f, &thread).await;
    let turn = last_turn(&messages);
    assert_eq!(
        (&turn["status"], &turn["error"]),
        (&json!("interrupted"), &Value::Null)
    );
    assert!(of(&messages, "error").is_empty());
    let completed: Vec<&Value> = of(&messages, "item/completed");
    assert!(
        completed.iter().all(|c| c["item"]["type"] == "userMessage"),
        "{completed:?}"
    );
    // The backend sees the stream closed (its waits are bounded by the test's own timeout).
    tokio::time::timeout(Duration::from_secs(5), f.backend.wait_for_closed_streams(1))
        .await
        .expect("the upstream stream was closed");
    f.turn(&thread, "next").await;
    f.completed().await;
    assert_eq!(
        input(&f.backend.requests()[1]),
        [user("slow one"), user(MARKER), user("next")]
    );
}

#[tokio::test]
async fn interrupt_of_an_idle_thread_or_another_turn_is_refused() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    let reply = f
        .client
        .call(
            "turn/interrupt",
            json!({"threadId": thread, "turnId": "nope"}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "no active turn to interrupt"})
    );
    f.backend.script([Reply::Slow {
        deltas: 3,
        gap: Duration::from_millis(50),
    }]);
    let turn = f.turn(&thread, "slow").await;
    let reply = f
        .client
        .call(
            "turn/interrupt",
            json!({"threadId": thread, "turnId": "nope"}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": format!("expected active turn id nope but found {turn}")})
    );
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
}

#[tokio::test]
async fn turn_start_on_a_busy_thread_steers_the_running_turn() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    f.backend.script([
        Reply::Slow {
            deltas: 50,
            gap: Duration::from_millis(100),
        },
        Reply::Ok,
    ]);
    let turn = f.turn(&thread, "first").await;
    let mut messages = until_delta(&mut f.client).await;
    let steer = f
        .client
        .call_result(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "second"}]}),
        )
        .await;
    assert_eq!(steer["turn"]["id"], turn);
    assert_eq!(steer["turn"]["status"], "inProgress");
    messages.extend(f.completed().await);
    assert_eq!(of(&messages, "turn/started").len(), 1);
    assert_eq!(of(&messages, "turn/completed").len(), 1);
    let users: Vec<&Value> = of(&messages, "item/completed")
        .into_iter()
        .filter(|c| c["item"]["type"] == "userMessage")
        .collect();
    assert_eq!(users.len(), 2);
    assert_eq!(users[1]["turnId"], turn);
    assert_eq!(users[1]["item"]["content"][0]["text"], "second");
    let completed_ids: Vec<&Value> = of(&messages, "item/completed")
        .into_iter()
        .map(|c| &c["item"]["id"])
        .collect();
    assert!(!completed_ids.contains(&&json!("msg_1")));
    let requests = f.backend.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(input(&requests[1]), [user("first"), user("second")]);
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(of(&messages, "error").is_empty());
}

#[tokio::test]
async fn unknown_and_malformed_thread_ids_get_codex_texts() {
    let mut f = Fixture::start(&[]).await;
    let unknown = "019ad5f0-1c2b-7a3e-9f10-4b5c6d7e8f90";
    let cases = [
        (
            "thread/read",
            json!({"threadId": unknown}),
            format!("thread not loaded: {unknown}"),
        ),
        (
            "thread/resume",
            json!({"threadId": unknown}),
            format!("no rollout found for thread id {unknown}"),
        ),
        (
            "turn/start",
            json!({"threadId": unknown, "input": []}),
            format!("thread not found: {unknown}"),
        ),
        (
            "turn/interrupt",
            json!({"threadId": unknown, "turnId": "t"}),
            format!("thread not found: {unknown}"),
        ),
    ];
    for (method, params, text) in cases {
        let reply = f.client.call(method, params).await;
        assert_eq!(
            reply["error"],
            json!({"code": -32600, "message": text}),
            "{method}"
        );
    }
    for (method, params) in [
        ("thread/read", json!({"threadId": "nope"})),
        ("thread/resume", json!({"threadId": "nope"})),
        ("turn/start", json!({"threadId": "nope", "input": []})),
        ("turn/interrupt", json!({"threadId": "nope", "turnId": "t"})),
    ] {
        let reply = f.client.call(method, params).await;
        assert_eq!(reply["error"]["code"], -32600, "{method}");
        let text = reply["error"]["message"].as_str().unwrap();
        assert!(text.starts_with("invalid thread id: "), "{method}: {text}");
    }
}

#[tokio::test]
async fn without_an_account_threads_need_a_login_unless_auth_is_off() {
    let mut f = Fixture::without_login(&[]).await;
    let reply = f.client.call("thread/start", json!({})).await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "authentication required: log in with account/login/start first"})
    );
    assert!(f.backend.requests().is_empty());

    let mut f = Fixture::without_login(&["requires_openai_auth=false"]).await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    let request = &f.backend.requests()[0];
    assert_eq!(request.path, "/v1/responses");
    assert_eq!(request.header("authorization"), None);
}

#[tokio::test]
async fn an_api_key_account_uses_the_openai_route() {
    let mut f = Fixture::without_login(&[]).await;
    f.client
        .call_result(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-test-key"}),
        )
        .await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    let request = &f.backend.requests()[0];
    assert_eq!(request.path, "/v1/responses");
    assert_eq!(request.header("authorization"), Some("Bearer sk-test-key"));
    assert_eq!(request.header("chatgpt-account-id"), None);
}

#[tokio::test]
async fn empty_input_unsupported_input_and_the_turn_cap() {
    let mut f = Fixture::start(&["turns.max_concurrent=1"]).await;
    let thread = f.thread(json!({})).await;
    f.client
        .request("turn/start", json!({"threadId": thread, "input": []}))
        .await;
    let messages = f.completed().await;
    assert_eq!(
        methods(&messages),
        ["<reply>", "turn/started", "turn/completed"]
    );
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(f.backend.requests().is_empty());

    let reply = f
        .client
        .call(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "localImage", "path": "/etc/passwd"}]}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32602, "message": "Invalid params: unsupported input type localImage"})
    );

    f.backend.script([Reply::Slow {
        deltas: 3,
        gap: Duration::from_millis(50),
    }]);
    let other = f.thread(json!({})).await;
    f.turn(&thread, "slow").await;
    let reply = f
        .client
        .call(
            "turn/start",
            json!({"threadId": other, "input": [{"type": "text", "text": "hi"}]}),
        )
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32001, "message": "Server overloaded; retry later."})
    );
    f.completed().await;
}

#[tokio::test]
async fn thread_events_go_to_subscribers_only() {
    let mut f = Fixture::start(&[]).await;
    let mut watcher = f.server.client().await;
    let thread = f.thread(json!({})).await;
    f.running_turn(&thread, 6).await;
    let resumed = watcher
        .call_result("thread/resume", json!({"threadId": thread}))
        .await;
    let turns = resumed["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0]["status"], "inProgress");
    let after_resume = until_completed(&mut watcher).await;
    assert!(!of(&after_resume, "item/agentMessage/delta").is_empty());
    // Before its resume the watcher saw nothing of the thread.
    let before: Vec<&Value> = watcher
        .all_received()
        .iter()
        .take_while(|m| !m["result"]["thread"].is_object())
        .filter(|m| m["method"].is_string())
        .collect();
    assert!(before.is_empty(), "{before:#?}");
    f.completed().await;

    // The starter leaves mid-turn: the turn completes for the others.
    f.backend.script([Reply::Slow {
        deltas: 4,
        gap: Duration::from_millis(100),
    }]);
    f.turn(&thread, "slow again").await;
    until_delta(&mut watcher).await;
    f.client.close().await;
    let messages = until_completed(&mut watcher).await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert_eq!(
        read_turns(&mut watcher, &thread).await[1]["status"],
        "completed"
    );
}

#[tokio::test]
async fn account_notifications_stay_broadcast_during_turns() {
    let mut f = Fixture::start(&[]).await;
    let mut watcher = f.server.client().await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    f.completed().await;
    let update = watcher.notification("account/rateLimits/updated").await;
    assert_eq!(update["rateLimits"], snapshot_s());
    let thread_events: Vec<&Value> = watcher
        .all_received()
        .iter()
        .filter(|m| {
            m["method"]
                .as_str()
                .is_some_and(|m| !m.starts_with("account/"))
        })
        .collect();
    assert!(thread_events.is_empty(), "{thread_events:#?}");
}

#[tokio::test]
async fn shutdown_interrupts_running_turns_before_closing() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    f.running_turn(&thread, 100).await;
    f.server.running().shutdown();
    let messages = f.completed().await;
    let turn = last_turn(&messages);
    assert_eq!(
        (&turn["status"], &turn["error"]),
        (&json!("interrupted"), &Value::Null)
    );
    assert_eq!(f.client.closed().await.map(|(code, _)| code), Some(1001));
}

#[tokio::test]
async fn model_list_pages_the_catalog_before_login() {
    let mut f = Fixture::without_login(&[]).await;
    let page = f
        .client
        .call_result("model/list", json!({"limit": 2}))
        .await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "gpt-5.2-codex");
    assert_eq!(data[0]["model"], "gpt-5.2-codex");
    assert_eq!(data[0]["isDefault"], true);
    assert_eq!(data[0]["supportsPersonality"], false);
    assert_eq!(page["nextCursor"], "2");
    let rest = f
        .client
        .call_result("model/list", json!({"cursor": "2"}))
        .await;
    assert_eq!(rest["nextCursor"], Value::Null);
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    let reply = f.client.call("model/list", json!({"cursor": "x"})).await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "invalid cursor: x"})
    );
}

#[tokio::test]
async fn thread_read_shows_turns_with_the_live_ids() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    let turn = f.turn(&thread, "Say hello").await;
    let messages = f.completed().await;
    let live: Vec<&Value> = of(&messages, "item/completed")
        .into_iter()
        .map(|c| &c["item"])
        .collect();
    let read = f
        .client
        .call_result(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    let stored = &read["thread"]["turns"][0];
    assert_eq!(stored["id"], turn);
    assert_eq!(stored["status"], "completed");
    let items: Vec<&Value> = stored["items"].as_array().unwrap().iter().collect();
    assert_eq!(items, live);
    assert_eq!(read["thread"]["preview"], "Say hello");
    let small = f
        .client
        .call_result("thread/read", json!({"threadId": thread}))
        .await;
    assert_eq!(small["thread"]["turns"], json!([]));
}

#[tokio::test]
async fn a_managed_account_refreshes_with_its_refresh_token_under_a_turn() {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let issuer = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_partial_json(
            json!({"grant_type": "refresh_token", "refresh_token": "refresh-old"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id_token": crate::support::idt("me@example.com", "pro", "acct-1"),
            "access_token": "access-new", "refresh_token": "refresh-new"})))
        .expect(1)
        .mount(&issuer)
        .await;
    let refresh_url = format!("auth.refresh_token_url=\"{}/oauth/token\"", issuer.uri());
    let mut f = Fixture::without_login(&[&refresh_url]).await;
    crate::support::write_auth(
        f.server.home(),
        &crate::support::managed_auth(
            "me@example.com",
            "pro",
            "acct-1",
            "access-old",
            "refresh-old",
            &crate::support::now_rfc3339(),
        ),
    );
    f.backend.accept_bearers(&["access-new"]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(of(&messages, "error").is_empty());
    issuer.verify().await;
    let bearers: Vec<_> = f
        .backend
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(bearers, ["Bearer access-old", "Bearer access-new"]);
}

#[tokio::test]
async fn a_refresh_for_another_workspace_fails_the_turn() {
    let mut f = Fixture::start(&["forced_chatgpt_workspace_id=\"acct-1\""]).await;
    f.backend.accept_bearers(&["B"]);
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": crate::support::idt("me@example.com", "pro", "acct-2"), "accessToken": "B"}}))
        .await;
    let messages = f.completed().await;
    assert_unauthorized(
        &messages,
        "external auth refresh returned workspace Some(\"acct-2\"), expected \"acct-1\"",
    );
    assert_eq!(f.backend.requests().len(), 1);
}

#[tokio::test]
async fn turn_params_are_checked() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    for method in [
        "thread/start",
        "thread/read",
        "turn/start",
        "turn/interrupt",
    ] {
        let reply = f.client.call(method, Value::Null).await;
        assert_eq!(
            reply["error"],
            json!({"code": -32602, "message": "Invalid params: params must be an object"}),
            "{method}"
        );
    }
    let reply = f
        .client
        .call("turn/start", json!({"threadId": thread, "input": "hello"}))
        .await;
    assert_eq!(reply["error"]["code"], -32602);
    let text = reply["error"]["message"].as_str().unwrap();
    assert!(text.starts_with("Invalid params: "), "{text}");
    let reply = f
        .client
        .call("turn/start", json!({"threadId": thread}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32602, "message": "Invalid params: missing field `input`"})
    );
    // Agent-only params are accepted and ignored; the 0.169 image detail is forwarded.
    f.client
        .call_result(
            "turn/start",
            json!({"threadId": thread, "cwd": "/", "approvalPolicy": "never", "sandboxPolicy": {"type": "dangerFullAccess"},
                   "input": [{"type": "text", "text": "look"}, {"type": "image", "url": "https://example.com/a.png", "detail": "low"}]}),
        )
        .await;
    f.completed().await;
    assert_eq!(
        input(&f.backend.requests()[0]),
        [json!({"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}]})]
    );
}

#[tokio::test]
async fn a_backend_that_is_down_fails_the_turn_after_its_retries() {
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("chatgpt_base_url=\"http://127.0.0.1:{port}/backend-api/\"");
    let mut f = Fixture::start(&[
        &base,
        "model.request_max_retries=1",
        "model.stream_max_retries=1",
    ])
    .await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    let errors = of(&messages, "error");
    assert_eq!(errors.len(), 2, "{messages:#?}");
    assert_eq!(errors[0]["willRetry"], true);
    let details = errors[0]["error"]["additionalDetails"].as_str().unwrap();
    assert!(details.starts_with("Connection failed: "), "{details}");
    let last = &last_turn(&messages)["error"];
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("Connection failed: "),
        "{last}"
    );
    assert_eq!(last["codexErrorInfo"], "other");
}

#[tokio::test]
async fn backend_connections_beyond_the_idle_limit_close_when_their_turns_end() {
    let mut f = Fixture::start(&["backend.idle_connections=1"]).await;
    f.backend.script(std::iter::repeat_n(Reply::Paused, 4));
    for _ in 0..4 {
        let thread = f.thread(json!({})).await;
        f.turn(&thread, "hi").await;
    }
    // Four streams at once hold four connections.
    f.backend.wait_for_requests(4).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        f.backend.wait_for_open_connections(4),
    )
    .await
    .expect("four backend connections");
    for _ in 0..4 {
        f.backend.open_gate();
    }
    for _ in 0..4 {
        let messages = f.completed().await;
        assert_eq!(last_turn(&messages)["status"], "completed");
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        f.backend.wait_for_open_connections(1),
    )
    .await
    .expect("only one idle backend connection is kept");
}

#[tokio::test]
async fn an_idle_backend_connection_closes_after_its_timeout() {
    let mut f = Fixture::start(&["backend.idle_timeout_secs=1"]).await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "hi").await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert_eq!(f.backend.requests().len(), 1);
    // Kept for the next request first, then closed by the pool within two timeouts.
    tokio::time::timeout(
        Duration::from_secs(10),
        f.backend.wait_for_open_connections(0),
    )
    .await
    .expect("the idle backend connection closes");
}

/// Sends `turn/start` while the database's write lock is held from outside (as another
/// authbridge process in a transaction would) and waits for the model request, which does not
/// wait for the turn's first commit. Returns the lock and the request's id.
async fn turn_start_while_the_store_is_locked(
    f: &mut Fixture,
    thread: &str,
) -> (rusqlite::Connection, i64) {
    let db = rusqlite::Connection::open(f.server.home().join("threads.sqlite")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let id = f
        .client
        .request("turn/start", text_turn(thread, "hi"))
        .await;
    tokio::time::timeout(Duration::from_secs(4), f.backend.wait_for_requests(1))
        .await
        .expect("the model request went out before the turn was stored");
    (db, id)
}

#[tokio::test]
async fn a_turns_model_request_goes_out_while_the_turn_is_stored_and_the_reply_still_comes_first() {
    let mut f = Fixture::start(&[]).await;
    // The stale token's 401 must not bring the refresh request ahead of the reply either.
    f.backend.accept_bearers(&["B"]);
    let thread = f.thread(json!({})).await;
    let (db, id) = turn_start_while_the_store_is_locked(&mut f, &thread).await;
    db.execute_batch("COMMIT").unwrap();
    let reply = f.client.next_json().await;
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["result"]["turn"]["status"], "inProgress");
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": crate::support::idt("me@example.com", "pro", "acct-1"), "accessToken": "B"}}))
        .await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(
        methods(&messages).contains(&"turn/started"),
        "{messages:#?}"
    );
    assert_eq!(
        read_turns(&mut f.client, &thread).await[0]["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_turn_that_cannot_be_stored_never_starts_and_its_early_request_is_cut() {
    let mut f = Fixture::start(&[]).await;
    f.backend.script([Reply::Paused]);
    let thread = f.thread(json!({})).await;
    let (db, id) = turn_start_while_the_store_is_locked(&mut f, &thread).await;
    // The lock outlasts the store's busy timeout: turn/start fails as TURNS §25.4 says.
    let reply = f.client.next_json().await;
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    f.backend.wait_for_closed_streams(1).await;
    drop(db);
    assert_eq!(read_turns(&mut f.client, &thread).await, json!([]));
    assert!(
        f.client
            .all_received()
            .iter()
            .all(|m| m["method"] != "turn/started" && m["method"] != "item/started"),
        "{:#?}",
        f.client.all_received()
    );
}

#[tokio::test]
async fn a_refusal_of_the_early_request_is_published_after_the_reply() {
    let mut f = Fixture::start(&[]).await;
    f.backend.script([Reply::UsageLimit { plan: "pro".into() }]);
    let thread = f.thread(json!({})).await;
    let (db, id) = turn_start_while_the_store_is_locked(&mut f, &thread).await;
    db.execute_batch("COMMIT").unwrap();
    // The refusal's rate limits are broadcast, but not ahead of the reply.
    let reply = f.client.next_json().await;
    assert_eq!(reply["id"], id, "{reply}");
    let messages = f.completed().await;
    assert_eq!(
        methods(&messages),
        [
            "turn/started",
            "item/started",
            "item/completed",
            "account/rateLimits/updated",
            "error",
            "turn/completed"
        ]
    );
}
