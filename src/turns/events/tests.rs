//! The SSE mapping of TURNS §21, event by event.

use serde_json::json;

use super::*;

fn steps(events: &[Value]) -> Vec<Step> {
    let mut reader = ResponseEvents::default();
    events
        .iter()
        .flat_map(|event| reader.handle(event, || "generated".to_owned()))
        .collect()
}

#[test]
fn a_reasoning_item_then_a_message() {
    let got = steps(&[
        json!({"type": "response.created", "response": {}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1"}}),
        json!({"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "summary_index": 0}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "summary_index": 0, "delta": "**Thinking**"}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Thinking**"}], "encrypted_content": "ENC-1"}}),
        json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
        json!({"type": "response.output_text.delta", "output_index": 1, "delta": "Hel"}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "lo"}),
        json!({"type": "response.content_part.done"}),
        json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "Hel"}, {"type": "output_text", "text": "lo"}]}}),
        json!({"type": "response.completed", "response": {"usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 3}}}),
    ]);
    let reasoning = |summary: Vec<String>| ThreadItem::Reasoning {
        id: "rs_1".into(),
        summary,
        content: Vec::new(),
        started_at_ms: None,
        completed_at_ms: None,
    };
    let message = |text: &str| ThreadItem::AgentMessage {
        id: "msg_1".into(),
        text: text.into(),
        started_at_ms: None,
        completed_at_ms: None,
    };
    assert_eq!(
        got,
        vec![
            Step::ItemStarted(reasoning(Vec::new())),
            Step::SummaryPartAdded {
                item_id: "rs_1".into(),
                summary_index: 0
            },
            Step::SummaryDelta {
                item_id: "rs_1".into(),
                delta: "**Thinking**".into(),
                summary_index: 0
            },
            Step::ItemCompleted {
                item: reasoning(vec!["**Thinking**".into()]),
                replay: Some(
                    json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "**Thinking**"}], "content": null, "encrypted_content": "ENC-1"})
                ),
            },
            Step::ItemStarted(message("")),
            Step::AgentDelta {
                item_id: "msg_1".into(),
                delta: "Hel".into()
            },
            Step::AgentDelta {
                item_id: "msg_1".into(),
                delta: "lo".into()
            },
            Step::ItemCompleted {
                item: message("Hello"),
                replay: Some(
                    json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]})
                ),
            },
            Step::Completed {
                usage: Some(TokenUsageBreakdown {
                    total_tokens: 13,
                    input_tokens: 10,
                    cached_input_tokens: 4,
                    output_tokens: 3,
                    reasoning_output_tokens: 0
                })
            },
        ]
    );
}

#[test]
fn reasoning_without_encrypted_content_is_not_replayed_and_items_without_ids_get_one() {
    let got = steps(&[
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "summary": []}}),
    ]);
    assert!(matches!(&got[0], Step::ItemStarted(item) if item.id() == "generated"));
    assert!(
        matches!(&got[1], Step::ItemCompleted { item, replay: None } if item.id() == "generated")
    );
}

#[test]
fn refusals_function_calls_and_failures() {
    let got = steps(&[
        json!({"type": "response.refusal.delta", "item_id": "msg_2", "delta": "No."}),
        json!({"type": "response.output_item.done", "item": {"type": "message", "id": "msg_2", "content": [{"type": "refusal", "refusal": "No."}]}}),
        json!({"type": "response.output_item.done", "item": {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}),
        json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}}),
        json!({"type": "error", "code": "context_length_exceeded", "message": "too long"}),
        json!({"type": "response.incomplete", "response": {"incomplete_details": {"reason": "max_output_tokens"}}}),
        json!({"type": "response.completed", "response": {}}),
    ]);
    assert_eq!(
        got[0],
        Step::AgentDelta {
            item_id: "msg_2".into(),
            delta: "No.".into()
        }
    );
    assert!(
        matches!(&got[1], Step::ItemCompleted { item: ThreadItem::AgentMessage { text, .. }, .. } if text == "No.")
    );
    assert_eq!(
        got[2],
        Step::FunctionCall(FunctionCall {
            call_id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into()
        })
    );
    assert_eq!(
        got[3],
        Step::Failed(ResponseFailure::Error {
            code: Some("server_error".into()),
            message: "boom".into()
        })
    );
    assert_eq!(
        got[4],
        Step::Failed(ResponseFailure::Error {
            code: Some("context_length_exceeded".into()),
            message: "too long".into()
        })
    );
    assert_eq!(
        got[5],
        Step::Failed(ResponseFailure::Incomplete {
            reason: "max_output_tokens".into()
        })
    );
    assert_eq!(got[6], Step::Completed { usage: None });
}

#[test]
fn the_text_fast_path_agrees_with_the_json_path() {
    let events = [
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1"}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "plain"}),
        json!({"type": "response.output_text.delta", "output_index": 0, "delta": "esc\"aped\n\u{e9}"}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "summary_index": 2, "delta": "s"}),
        json!({"type": "response.reasoning_text.delta", "item_id": "rs_1", "content_index": 1, "delta": "r"}),
        json!({"type": "response.refusal.delta", "item_id": "msg_1", "delta": "no"}),
        json!({"type": "response.output_text.delta", "item_id": "msg_\"1", "delta": "a \"quoted\"\nline"}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "x"}]}}),
        json!({"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 2}}}),
    ];
    let mut by_json = ResponseEvents::default();
    let mut by_text = ResponseEvents::default();
    for event in &events {
        let expected = by_json.handle(event, || "generated".to_owned());
        let got = by_text
            .handle_text(&event.to_string(), || "generated".to_owned())
            .unwrap()
            .collect::<Vec<_>>();
        assert_eq!(got, expected, "{event}");
    }
    assert!(by_text.handle_text("not json", String::new).is_none());
    assert!(by_text.handle_text("[1]", String::new).is_none());
}

#[test]
fn delta_strings_are_borrowed_unless_escaped() {
    let plain: DeltaEvent<'_> = serde_json::from_str(
        r#"{"type":"response.output_text.delta","item_id":"msg_1","delta":"plain"}"#,
    )
    .unwrap();
    assert!(matches!(plain.delta, Some(Cow::Borrowed("plain"))));
    assert!(matches!(plain.item_id, Some(Cow::Borrowed("msg_1"))));
    let escaped: DeltaEvent<'_> = serde_json::from_str(
        r#"{"type":"response.output_text.delta","item_id":"m\"1","delta":"a\nb"}"#,
    )
    .unwrap();
    assert!(matches!(escaped.delta, Some(Cow::Owned(ref text)) if text == "a\nb"));
    assert!(matches!(escaped.item_id, Some(Cow::Owned(ref id)) if id == "m\"1"));
    let absent: DeltaEvent<'_> = serde_json::from_str(r#"{"type":"response.created"}"#).unwrap();
    assert!(absent.delta.is_none() && absent.item_id.is_none());
}
