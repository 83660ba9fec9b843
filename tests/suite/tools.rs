//! Host tools (TURNS §24, conformance scenarios 76–81): tools offered to the model, the
//! `item/tool/call` request to the turn's starter, outputs fed back, and every way a call fails.

use authbridge::dev_backend::Reply;
use serde_json::{Value, json};

use crate::support::idt;
use crate::support::turns::{
    Fixture, MARKER, REFRESH, input, last_turn, of, start_thread, until_completed, user,
};

const TOOL_CALL: &str = "item/tool/call";

fn weather_tool() -> Value {
    json!({"name": "get_weather", "description": "Weather for a city.", "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}})
}

fn calls(list: &[(&str, &str, &str)]) -> Reply {
    Reply::FunctionCalls(
        list.iter()
            .map(|(id, name, args)| ((*id).into(), (*name).into(), (*args).into()))
            .collect(),
    )
}

fn call_item(id: &str, name: &str, arguments: &str) -> Value {
    json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments})
}

fn output_item(id: &str, output: Value) -> Value {
    json!({"type": "function_call_output", "call_id": id, "output": output})
}

/// A fixture with a thread offering `get_weather`.
async fn weather_thread(extra: &[&str]) -> (Fixture, String) {
    let mut f = Fixture::start(extra).await;
    let thread = f.thread(json!({"dynamicTools": [weather_tool()]})).await;
    (f, thread)
}

#[tokio::test]
async fn a_tool_call_goes_to_the_host_and_its_output_back_to_the_model() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend.script([
        calls(&[("call_1", "get_weather", "{\"city\":\"Paris\"}")]),
        Reply::Ok,
    ]);
    let turn = f.turn(&thread, "Weather?").await;
    let before = f
        .client
        .until("the tool call", |m| m["method"] == TOOL_CALL)
        .await;
    let request = before.last().unwrap();
    assert_eq!(
        request["params"],
        json!({"threadId": thread, "turnId": turn, "callId": "call_1", "tool": "get_weather", "arguments": {"city": "Paris"}})
    );
    // After the response's token usage; no item of any kind for the call.
    let previous = &before[before.len() - 2];
    assert_eq!(previous["method"], "thread/tokenUsage/updated");
    f.client
        .send(json!({"id": request["id"], "result": {"output": "Sunny", "success": true}}))
        .await;
    let after = f.completed().await;
    assert_eq!(last_turn(&after)["status"], "completed");
    let all: Vec<Value> = before.into_iter().chain(after).collect();
    let item_types: Vec<&Value> = all
        .iter()
        .filter(|m| m["method"] == "item/completed")
        .map(|m| &m["params"]["item"]["type"])
        .collect();
    assert_eq!(item_types, ["userMessage", "reasoning", "agentMessage"]);
    let requests = f.backend.requests();
    assert_eq!(
        requests[0].body["tools"],
        json!([{"type": "function", "name": "get_weather", "description": "Weather for a city.", "strict": false,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        (
            &requests[0].body["tool_choice"],
            &requests[0].body["parallel_tool_calls"]
        ),
        (&json!("auto"), &json!(true))
    );
    assert_eq!(
        input(&requests[1]),
        [
            user("Weather?"),
            call_item("call_1", "get_weather", "{\"city\":\"Paris\"}"),
            output_item("call_1", json!("Sunny")),
        ]
    );
}

#[tokio::test]
async fn parallel_calls_are_sent_together_and_answered_in_call_order() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend.script([
        calls(&[
            ("call_1", "get_weather", "{\"city\":\"Paris\"}"),
            ("call_2", "get_weather", "{\"city\":\"Rome\"}"),
        ]),
        Reply::Ok,
    ]);
    f.turn(&thread, "Two cities").await;
    let first = f.client.server_request(TOOL_CALL).await;
    let second = f.client.server_request(TOOL_CALL).await;
    assert_eq!(
        (&first["params"]["callId"], &second["params"]["callId"]),
        (&json!("call_1"), &json!("call_2"))
    );
    // Answered in reverse: the input keeps call order.
    f.client
        .send(json!({"id": second["id"], "result": {"output": "Warm", "success": true}}))
        .await;
    f.client
        .send(json!({"id": first["id"], "result": {"output": "Mild", "success": true}}))
        .await;
    f.completed().await;
    assert_eq!(
        input(&f.backend.requests()[1])[1..],
        [
            call_item("call_1", "get_weather", "{\"city\":\"Paris\"}"),
            call_item("call_2", "get_weather", "{\"city\":\"Rome\"}"),
            output_item("call_1", json!("Mild")),
            output_item("call_2", json!("Warm")),
        ]
    );
}

#[tokio::test]
async fn three_rounds_of_calls_then_an_answer() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend.script([
        calls(&[("c1", "get_weather", "{}")]),
        calls(&[("c2", "get_weather", "{}")]),
        calls(&[("c3", "get_weather", "{}")]),
        Reply::Ok,
    ]);
    f.turn(&thread, "Chain").await;
    for _ in 0..3 {
        let request = f.client.server_request(TOOL_CALL).await;
        f.client
            .send(json!({"id": request["id"], "result": {"output": "ok", "success": true}}))
            .await;
    }
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    let requests = f.backend.requests();
    assert_eq!(requests.len(), 4);
    let last = input(&requests[3]);
    assert_eq!(last.len(), 1 + 3 * 2);
    assert_eq!(last[6], output_item("c3", json!("ok")));
}

#[tokio::test]
async fn the_round_limit_fails_the_turn_without_sending_the_last_calls() {
    let (mut f, thread) = weather_thread(&["model.max_tool_rounds=2"]).await;
    f.backend
        .set_fallback(Some(calls(&[("again", "get_weather", "{}")])));
    f.turn(&thread, "Loop").await;
    for _ in 0..2 {
        let request = f.client.server_request(TOOL_CALL).await;
        f.client
            .send(json!({"id": request["id"], "result": {"output": "ok", "success": true}}))
            .await;
    }
    let messages = f.completed().await;
    assert_eq!(f.backend.requests().len(), 3);
    let expected = json!({"message": "tool call round limit reached (2)", "codexErrorInfo": "other", "additionalDetails": null});
    assert_eq!(last_turn(&messages)["error"], expected);
    assert!(!messages.iter().any(|m| m["method"] == TOOL_CALL));
    // The unsent call is answered `aborted` in the next turn's history.
    f.backend.set_fallback(Some(Reply::Ok));
    f.turn(&thread, "next").await;
    f.completed().await;
    let next = input(&f.backend.requests()[3]);
    assert_eq!(next[next.len() - 2], output_item("again", json!("aborted")));
}

#[tokio::test]
async fn failed_calls_become_outputs_and_the_turn_goes_on() {
    let (mut f, thread) = weather_thread(&["model.tool_call_timeout_secs=1"]).await;
    f.backend.script([
        calls(&[
            ("err", "get_weather", "{}"),
            ("false", "get_weather", "{}"),
            ("empty", "get_weather", "{}"),
            ("silent", "get_weather", "{}"),
            ("args", "get_weather", "{"),
            ("unknown", "not_a_tool", "{}"),
        ]),
        Reply::Ok,
    ]);
    f.turn(&thread, "Everything fails").await;
    let mut sent = Vec::new();
    for _ in 0..4 {
        sent.push(f.client.server_request(TOOL_CALL).await);
    }
    let ids: Vec<&Value> = sent.iter().map(|r| &r["params"]["callId"]).collect();
    assert_eq!(ids, ["err", "false", "empty", "silent"]);
    f.client
        .send(json!({"id": sent[0]["id"], "error": {"code": -32000, "message": "no weather"}}))
        .await;
    f.client
        .send(json!({"id": sent[1]["id"], "result": {"output": "city unknown", "success": false}}))
        .await;
    f.client
        .send(json!({"id": sent[2]["id"], "result": {}}))
        .await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(!messages.iter().any(|m| m["method"] == TOOL_CALL));
    let outputs: Vec<Value> = input(&f.backend.requests()[1])
        .into_iter()
        .filter(|item| item["type"] == "function_call_output")
        .collect();
    let parse_error = serde_json::from_str::<Value>("{").unwrap_err().to_string();
    assert_eq!(
        outputs,
        [
            output_item("err", json!("dynamic tool request failed")),
            output_item("false", json!("city unknown")),
            output_item("empty", json!("dynamic tool response was invalid")),
            output_item("silent", json!("dynamic tool call timed out after 1s")),
            output_item(
                "args",
                json!(format!("failed to parse function arguments: {parse_error}"))
            ),
            output_item("unknown", json!("unsupported call: not_a_tool")),
        ]
    );
    // The late answer is dropped silently.
    f.client
        .send(json!({"id": sent[3]["id"], "result": {"output": "late", "success": true}}))
        .await;
    let read = f.client.call("account/read", json!({})).await;
    assert!(read.get("result").is_some());
}

#[tokio::test]
async fn the_0_169_content_items_answer_is_accepted() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend
        .script([calls(&[("c", "get_weather", "")]), Reply::Ok]);
    f.turn(&thread, "Weather?").await;
    let request = f.client.server_request(TOOL_CALL).await;
    assert_eq!(request["params"]["arguments"], json!({}));
    f.client
        .send(json!({"id": request["id"], "result": {"contentItems": [{"type": "inputText", "text": "Sunny"}, {"type": "inputText", "text": "21 C"}], "success": true}}))
        .await;
    f.completed().await;
    let last = input(&f.backend.requests()[1]).pop().unwrap();
    assert_eq!(last, output_item("c", json!("Sunny\n21 C")));
}

#[tokio::test]
async fn interrupt_while_a_call_is_pending_abandons_it() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend
        .script([calls(&[("call_1", "get_weather", "{}")]), Reply::Ok]);
    let turn = f.turn(&thread, "Weather?").await;
    let request = f.client.server_request(TOOL_CALL).await;
    let reply = f
        .client
        .call(
            "turn/interrupt",
            json!({"threadId": thread, "turnId": turn}),
        )
        .await;
    assert_eq!(reply["result"], json!({}));
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "interrupted");
    f.client
        .send(json!({"id": request["id"], "result": {"output": "late", "success": true}}))
        .await;
    f.turn(&thread, "next").await;
    f.completed().await;
    let requests = f.backend.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        input(&requests[1]),
        [
            user("Weather?"),
            call_item("call_1", "get_weather", "{}"),
            output_item("call_1", json!("aborted")),
            user(MARKER),
            user("next"),
        ]
    );
}

#[tokio::test]
async fn a_starter_that_leaves_fails_its_pending_calls_at_once() {
    let (mut f, thread) = weather_thread(&[]).await;
    let mut watcher = f.server.client().await;
    watcher
        .call_result("thread/resume", json!({"threadId": thread}))
        .await;
    f.backend
        .script([calls(&[("call_1", "get_weather", "{}")]), Reply::Ok]);
    f.turn(&thread, "Weather?").await;
    f.client.server_request(TOOL_CALL).await;
    f.client.close().await;
    let messages = until_completed(&mut watcher).await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert_eq!(
        input(&f.backend.requests()[1]).pop().unwrap(),
        output_item("call_1", json!("dynamic tool request failed"))
    );
}

#[tokio::test]
async fn a_401_in_round_two_is_recovered_with_one_refresh() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend
        .script([calls(&[("call_1", "get_weather", "{}")]), Reply::Ok]);
    f.turn(&thread, "Weather?").await;
    let request = f.client.server_request(TOOL_CALL).await;
    // From now on only the refreshed bearer passes.
    f.backend.accept_bearers(&["B"]);
    f.client
        .send(json!({"id": request["id"], "result": {"output": "Sunny", "success": true}}))
        .await;
    let refresh = f.client.server_request(REFRESH).await;
    f.client
        .send(json!({"id": refresh["id"], "result": {"idToken": idt("me@example.com", "pro", "acct-1"), "accessToken": "B"}}))
        .await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert!(of(&messages, "error").is_empty());
    let bearers: Vec<String> = f
        .backend
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(bearers, ["Bearer A", "Bearer A", "Bearer B"]);
}

#[tokio::test]
async fn bad_tool_declarations_create_nothing() {
    let mut f = Fixture::start(&[]).await;
    let schema = json!({"type": "object"});
    let cases = [
        (
            json!([{"name": "", "description": "", "inputSchema": schema}]),
            "dynamic tool name must not be empty".to_owned(),
        ),
        (
            json!([{"name": "a b", "description": "", "inputSchema": schema}]),
            "dynamic tool name is invalid: a b".to_owned(),
        ),
        (
            json!([{"name": "a", "description": "", "inputSchema": schema}, {"name": "a", "description": "", "inputSchema": schema}]),
            "duplicate dynamic tool name: a".to_owned(),
        ),
        (
            json!([{"name": "a", "description": "", "inputSchema": []}]),
            "dynamic tool input schema is not supported for a: expected a JSON object".to_owned(),
        ),
        (
            json!([{"type": "namespace", "name": "ns", "description": "", "tools": []}]),
            "namespace dynamic tools are not supported: ns".to_owned(),
        ),
    ];
    for (tools, text) in cases {
        let reply = f
            .client
            .call("thread/start", json!({"dynamicTools": tools}))
            .await;
        assert_eq!(reply["error"], json!({"code": -32600, "message": text}));
    }
    // Nothing was created: a thread started now is the first the client hears of.
    let thread = start_thread(&mut f.client, json!({})).await;
    let started: Vec<&Value> = f
        .client
        .all_received()
        .iter()
        .filter(|m| m["method"] == "thread/started")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["params"]["thread"]["id"], thread);
}

#[tokio::test]
async fn a_message_sent_while_calls_are_pending_follows_their_outputs() {
    let (mut f, thread) = weather_thread(&[]).await;
    f.backend
        .script([calls(&[("call_1", "get_weather", "{}")]), Reply::Ok]);
    let turn = f.turn(&thread, "Weather?").await;
    let request = f.client.server_request(TOOL_CALL).await;
    let steer = f
        .client
        .call_result(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "in Celsius"}]}),
        )
        .await;
    assert_eq!(steer["turn"]["id"], turn);
    f.client
        .send(json!({"id": request["id"], "result": {"output": "21", "success": true}}))
        .await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    assert_eq!(
        input(&f.backend.requests()[1])[1..],
        [
            call_item("call_1", "get_weather", "{}"),
            output_item("call_1", json!("21")),
            user("in Celsius"),
        ]
    );
}
