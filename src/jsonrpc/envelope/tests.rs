//! Classification, id echoing and reply writing, by example.

use super::*;
use serde_json::{Value, json};

fn single(text: &str) -> Entry<'_> {
    match parse(text) {
        Frame::Single(entry) => entry,
        other => panic!("expected a single entry, got {other:?}"),
    }
}

#[test]
fn requests_keep_raw_ids() {
    for id in [
        "-7",
        "\"abc-1\"",
        "18446744073709551616",
        "0",
        "\"\\u0041\"",
    ] {
        let text = format!("{{\"id\":{id},\"method\":\"m\"}}");
        match single(&text) {
            Entry::Request {
                id: raw, jsonrpc, ..
            } => {
                assert_eq!(raw, id);
                assert!(!jsonrpc);
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn bad_ids_are_invalid_with_null_id() {
    for id in ["1.5", "1e3", "null", "true", "[1]", "{}"] {
        let text = format!("{{\"id\":{id},\"method\":\"m\"}}");
        assert_eq!(
            single(&text),
            Entry::Invalid {
                id: None,
                jsonrpc: false,
                error: RpcError::invalid_envelope("invalid id")
            },
            "{id}"
        );
    }
}

#[test]
fn notifications_and_responses() {
    assert!(
        matches!(single(r#"{"method":"initialized"}"#), Entry::Notification { method, .. } if method == "initialized")
    );
    assert!(matches!(
        single(r#"{"id":3,"result":{"a":1}}"#),
        Entry::Response {
            id: "3",
            outcome: Reply::Result(_)
        }
    ));
    assert_eq!(
        single(r#"{"id":0,"error":{"code":-32000,"message":"refresh failed"}}"#),
        Entry::Response {
            id: "0",
            outcome: Reply::Error {
                code: -32000,
                message: "refresh failed".into()
            }
        }
    );
    assert_eq!(
        single(r#"{"jsonrpc":"1.0","id":0,"result":1}"#),
        Entry::Dropped
    );
}

#[test]
fn jsonrpc_member_rules() {
    assert!(matches!(
        single(r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#),
        Entry::Request { jsonrpc: true, .. }
    ));
    assert_eq!(
        single(r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#),
        Entry::Invalid {
            id: Some("1"),
            jsonrpc: false,
            error: RpcError::invalid_envelope("jsonrpc must be \"2.0\"")
        }
    );
}

#[test]
fn garbage_and_batches() {
    assert!(matches!(parse("this is not json"), Frame::ParseError));
    assert!(matches!(parse("[1,"), Frame::ParseError));
    assert!(
        matches!(parse("[]"), Frame::BadBatch(e) if e.message == "Invalid request: empty batch")
    );
    let big = format!("[{}]", vec!["{\"method\":\"x\"}"; 65].join(","));
    assert!(
        matches!(parse(&big), Frame::BadBatch(e) if e.message == "Invalid request: batch exceeds 64 entries")
    );
    match parse(r#"[{"id":1,"method":"a"}, 5, [1]]"#) {
        Frame::Batch(entries) => {
            assert!(matches!(entries[0], Entry::Request { .. }));
            assert!(matches!(entries[1], Entry::Invalid { .. }));
            assert!(matches!(entries[2], Entry::Invalid { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(single("42"), Entry::Invalid { .. }));
    assert!(matches!(
        single(r#"{"id":1}"#),
        Entry::Invalid { id: Some("1"), .. }
    ));
    assert!(matches!(
        single(r#"{"id":1,"method":5}"#),
        Entry::Invalid { id: Some("1"), .. }
    ));
}

#[test]
fn writers_produce_valid_json() {
    let err: Value = serde_json::from_str(&failure(None, false, &RpcError::parse_error())).unwrap();
    assert_eq!(
        err,
        json!({"id":null,"error":{"code":-32700,"message":"Parse error"}})
    );
    let re = readdress(
        "\"x\"",
        false,
        r#"{"jsonrpc":"2.0","id":null,"result":{"ok":true}}"#,
    );
    assert_eq!(re, r#"{"id":"x","result":{"ok":true}}"#);
    let fallback = readdress(
        "1",
        true,
        r#"{"id":null,"jsonrpc":"2.0","error":{"code":1,"message":"m"}}"#,
    );
    let fallback: Value = serde_json::from_str(&fallback).unwrap();
    assert_eq!(
        fallback,
        json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}})
    );
    let req: Value =
        serde_json::from_str(&server_request(0, false, "a/b", &json!({"x":null}))).unwrap();
    assert_eq!(req, json!({"id":0,"method":"a/b","params":{"x":null}}));
}

#[test]
fn passthrough_ids_and_adoption() {
    assert_eq!(passthrough_id("7"), Some(Id::Number(7)));
    assert_eq!(passthrough_id("\"abc\""), Some(Id::Str("abc".into())));
    for slow in ["-7", "\"a\\u0041\"", "18446744073709551616", "01"] {
        assert_eq!(passthrough_id(slow), None, "{slow}");
    }
    let reply = r#"{"jsonrpc":"2.0","id":7,"result":{}}"#.to_owned();
    assert_eq!(adopt(reply.clone(), true), reply);
    assert_eq!(adopt(reply, false), r#"{"id":7,"result":{}}"#);
}
