//! Reading and writing JSON-RPC envelopes (SPEC §3).
//!
//! jsonrpsee's own envelope types reject messages without `"jsonrpc":"2.0"` and cannot hold negative
//! or oversized ids, so the envelope is handled here: each frame is classified without decoding its
//! `params`, ids are kept as the exact bytes the client sent, and replies splice those bytes back in.

use std::borrow::Cow;

use jsonrpsee::types::Id;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::RpcError;

/// Largest batch the server accepts (SPEC §3.4).
pub const MAX_BATCH_ENTRIES: usize = 64;

/// One frame (a WebSocket text message or a stdio line), classified.
#[derive(Debug)]
pub enum Frame<'a> {
    Single(Entry<'a>),
    Batch(Vec<Entry<'a>>),
    /// Not JSON at all: answered `-32700` with id `null`.
    ParseError,
    /// A batch that is empty or too long: answered with one `-32600`, nothing processed.
    BadBatch(RpcError),
}

/// One message of a frame.
#[derive(Debug, PartialEq)]
pub enum Entry<'a> {
    Request {
        id: &'a str,
        method: Cow<'a, str>,
        params: Option<&'a str>,
        jsonrpc: bool,
    },
    Notification {
        method: Cow<'a, str>,
        params: Option<&'a str>,
        jsonrpc: bool,
    },
    /// A reply to one of our server→client requests.
    Response { id: &'a str, outcome: Reply<'a> },
    /// Answered with `error`; `id` is the client's id when it was valid.
    Invalid {
        id: Option<&'a str>,
        jsonrpc: bool,
        error: RpcError,
    },
    /// A response carrying a bad `jsonrpc` member: dropped without an answer (SPEC §3.2).
    Dropped,
}

/// The payload of a client's reply to a server request.
#[derive(Debug, PartialEq)]
pub enum Reply<'a> {
    /// The raw JSON of `result`.
    Result(&'a str),
    Error {
        code: i64,
        message: String,
    },
}

/// Every member the envelope cares about, each kept raw. `Some` means present, even if `null`.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

/// Classifies a frame. Never fails: anything unreadable becomes an entry to answer.
pub fn parse(text: &str) -> Frame<'_> {
    let body = text.trim_start_matches([' ', '\t', '\r', '\n']);
    if body.starts_with('[') {
        return match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(entries) if entries.is_empty() => {
                Frame::BadBatch(RpcError::invalid_envelope("empty batch"))
            }
            Ok(entries) if entries.len() > MAX_BATCH_ENTRIES => Frame::BadBatch(
                RpcError::invalid_envelope(format!("batch exceeds {MAX_BATCH_ENTRIES} entries")),
            ),
            Ok(entries) => Frame::Batch(entries.into_iter().map(classify_value).collect()),
            Err(_) => Frame::ParseError,
        };
    }
    // The common case, a well-formed object, is read in one pass.
    if body.starts_with('{')
        && let Ok(envelope) = serde_json::from_str::<RawEnvelope<'_>>(text)
    {
        return Frame::Single(classify(envelope));
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(value) => Frame::Single(classify_value(value)),
        Err(_) => Frame::ParseError,
    }
}

/// Classifies one JSON value (already known to be valid JSON).
fn classify_value(value: &RawValue) -> Entry<'_> {
    if !value.get().starts_with('{') {
        return Entry::Invalid {
            id: None,
            jsonrpc: false,
            error: RpcError::invalid_envelope("expected a JSON object"),
        };
    }
    match serde_json::from_str::<RawEnvelope<'_>>(value.get()) {
        Ok(envelope) => classify(envelope),
        Err(err) => Entry::Invalid {
            id: None,
            jsonrpc: false,
            error: RpcError::invalid_envelope(err),
        },
    }
}

fn classify(envelope: RawEnvelope<'_>) -> Entry<'_> {
    let id = envelope.id.map(RawValue::get);
    let valid_id = id.filter(|raw| is_valid_id(raw));
    let is_response =
        envelope.method.is_none() && (envelope.result.is_some() || envelope.error.is_some());

    let jsonrpc = match envelope.jsonrpc {
        None => false,
        Some(raw) if serde_json::from_str::<&str>(raw.get()).ok() == Some("2.0") => true,
        Some(_) if is_response => return Entry::Dropped,
        Some(_) => {
            return Entry::Invalid {
                id: valid_id,
                jsonrpc: false,
                error: RpcError::invalid_envelope("jsonrpc must be \"2.0\""),
            };
        }
    };
    let invalid = |detail: &str| Entry::Invalid {
        id: valid_id,
        jsonrpc,
        error: RpcError::invalid_envelope(detail),
    };

    if let Some(method) = envelope.method {
        let Some(method) = json_string(method) else {
            return invalid("method must be a string");
        };
        let params = envelope.params.map(RawValue::get);
        return match id {
            None => Entry::Notification {
                method,
                params,
                jsonrpc,
            },
            Some(_) if valid_id.is_none() => invalid("invalid id"),
            Some(id) => Entry::Request {
                id,
                method,
                params,
                jsonrpc,
            },
        };
    }

    if is_response {
        let Some(id) = id else {
            return invalid("response without id");
        };
        if valid_id.is_none() {
            return invalid("invalid id");
        }
        let outcome = match (envelope.result, envelope.error) {
            (Some(result), None) => Reply::Result(result.get()),
            (None, Some(error)) => parse_error_object(error),
            _ => return invalid("response must have exactly one of result and error"),
        };
        return Entry::Response { id, outcome };
    }

    invalid("missing method")
}

/// A JSON string value, borrowed when it has no escapes.
fn json_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

fn parse_error_object(error: &RawValue) -> Reply<'_> {
    #[derive(Deserialize)]
    struct ErrorObject {
        #[serde(default)]
        code: Option<serde_json::Number>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_str::<ErrorObject>(error.get()) {
        Ok(object) => Reply::Error {
            code: object.code.and_then(|code| code.as_i64()).unwrap_or(0),
            message: object.message.unwrap_or_default(),
        },
        Err(_) => Reply::Error {
            code: 0,
            message: error.get().to_owned(),
        },
    }
}

/// A request id is a JSON string or an integer of any size (SPEC §3.3).
pub fn is_valid_id(raw: &str) -> bool {
    if raw.starts_with('"') {
        return true;
    }
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn open(out: &mut String, jsonrpc: bool) {
    out.push('{');
    if jsonrpc {
        out.push_str("\"jsonrpc\":\"2.0\",");
    }
}

/// `{"id":<id>,"result":<result>}` with the client's id bytes.
pub fn success(id: &str, jsonrpc: bool, result_json: &str) -> String {
    let mut out = String::with_capacity(id.len() + result_json.len() + 32);
    open(&mut out, jsonrpc);
    out.push_str("\"id\":");
    out.push_str(id);
    out.push_str(",\"result\":");
    out.push_str(result_json);
    out.push('}');
    out
}

/// `{"id":<id or null>,"error":{"code":…,"message":…}}`.
pub fn failure(id: Option<&str>, jsonrpc: bool, error: &RpcError) -> String {
    let message = serde_json::to_string(&error.message).expect("string serializes");
    let id = id.unwrap_or("null");
    let mut out = String::with_capacity(id.len() + message.len() + 48);
    open(&mut out, jsonrpc);
    out.push_str("\"id\":");
    out.push_str(id);
    out.push_str(",\"error\":{\"code\":");
    out.push_str(&error.code.to_string());
    out.push_str(",\"message\":");
    out.push_str(&message);
    out.push_str("}}");
    out
}

/// The id to hand jsonrpsee when it will serialize it exactly as the client sent it: an unsigned
/// integer that fits 64 bits, or a string without escapes. Other ids go through [`readdress`].
pub fn passthrough_id(raw: &str) -> Option<Id<'static>> {
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return (!inner.contains('\\')).then(|| Id::Str(Cow::Owned(inner.to_owned())));
    }
    raw.parse::<u64>()
        .ok()
        .filter(|n| n.to_string() == raw)
        .map(Id::Number)
}

/// jsonrpsee's reply to a call made with a [`passthrough_id`], in the connection's envelope style:
/// `"jsonrpc":"2.0"` is kept or cut out in place.
pub fn adopt(mut reply: String, jsonrpc: bool) -> String {
    const JSONRPC_MEMBER: &str = "\"jsonrpc\":\"2.0\",";
    if !jsonrpc && reply[1..].starts_with(JSONRPC_MEMBER) {
        reply.replace_range(1..1 + JSONRPC_MEMBER.len(), "");
    }
    reply
}

/// The reply jsonrpsee serialized for a call made with id `null`, re-addressed to the client's id.
///
/// jsonrpsee writes `{"jsonrpc":"2.0","id":null,` followed by `"result":…}` or `"error":…}`; the tail
/// is kept as is and the head rebuilt, so a reply costs one copy and no re-parse.
pub fn readdress(id: &str, jsonrpc: bool, jsonrpsee_reply: &str) -> String {
    const HEAD: &str = "{\"jsonrpc\":\"2.0\",\"id\":null,";
    let tail = jsonrpsee_reply
        .strip_prefix(HEAD)
        .map(str::to_owned)
        .unwrap_or_else(|| reserialize_tail(jsonrpsee_reply));
    let mut out = String::with_capacity(id.len() + tail.len() + 24);
    open(&mut out, jsonrpc);
    out.push_str("\"id\":");
    out.push_str(id);
    out.push(',');
    out.push_str(&tail);
    out
}

/// Fallback for a reply whose layout differs from the expected one: rebuild its tail from a parse.
fn reserialize_tail(reply: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(reply).unwrap_or_default();
    let (key, payload) = match value.get("error") {
        Some(error) => ("error", error.clone()),
        None => ("result", value.get("result").cloned().unwrap_or_default()),
    };
    format!("\"{key}\":{payload}}}")
}

/// `{"id":<n>,"method":…,"params":…}`: a server→client request.
pub fn server_request(id: u64, jsonrpc: bool, method: &str, params: &serde_json::Value) -> String {
    let method = serde_json::to_string(method).expect("string serializes");
    let params = serde_json::to_string(params).expect("value serializes");
    let mut out = String::with_capacity(method.len() + params.len() + 48);
    open(&mut out, jsonrpc);
    out.push_str("\"id\":");
    out.push_str(&id.to_string());
    out.push_str(",\"method\":");
    out.push_str(&method);
    out.push_str(",\"params\":");
    out.push_str(&params);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
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
        let ok: Value = serde_json::from_str(&success("-7", true, "{\"a\":1}")).unwrap();
        assert_eq!(ok, json!({"jsonrpc":"2.0","id":-7,"result":{"a":1}}));
        let err: Value =
            serde_json::from_str(&failure(None, false, &RpcError::parse_error())).unwrap();
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
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Any JSON value, a few levels deep.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Raw id texts: JSON strings (any content) and integers of any size.
    fn valid_id() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*".prop_map(|s| serde_json::to_string(&s).unwrap()),
            "-?(0|[1-9][0-9]{0,39})",
        ]
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip_byte_for_byte(id in valid_id(), jsonrpc in any::<bool>()) {
            let text = format!("{{\"id\":{id},\"method\":\"account/read\"}}");
            let Frame::Single(Entry::Request { id: raw, .. }) = parse(&text) else {
                panic!("not a request: {text}");
            };
            prop_assert_eq!(raw, id.as_str());
            let reply = readdress(raw, jsonrpc, r#"{"jsonrpc":"2.0","id":null,"result":{"ok":true}}"#);
            let expected_head = if jsonrpc { format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},") } else { format!("{{\"id\":{id},") };
            prop_assert!(reply.starts_with(&expected_head), "{}", reply);
            let parsed: Value = serde_json::from_str(&reply).unwrap();
            prop_assert_eq!(&parsed["result"], &json!({"ok": true}));
            let error = failure(Some(raw), jsonrpc, &RpcError::not_initialized());
            prop_assert!(error.starts_with(&expected_head));
            prop_assert!(serde_json::from_str::<Value>(&error).is_ok());
        }

        #[test]
        fn any_json_id_is_either_echoed_or_refused(id in any_json()) {
            let text = json!({"id": id, "method": "m"}).to_string();
            match parse(&text) {
                Frame::Single(Entry::Request { id: raw, .. }) => {
                    prop_assert!(id.is_string() || id.is_i64() || id.is_u64());
                    prop_assert_eq!(serde_json::from_str::<Value>(raw).unwrap(), id);
                }
                Frame::Single(Entry::Invalid { id: None, error, .. }) => {
                    prop_assert!(!(id.is_string() || id.is_i64() || id.is_u64()));
                    prop_assert_eq!(error.message, "Invalid request: invalid id");
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn any_json_value_is_classified_without_panicking(value in any_json()) {
            let text = value.to_string();
            match parse(&text) {
                Frame::ParseError => prop_assert!(false, "valid JSON reported as a parse error"),
                Frame::Single(_) | Frame::Batch(_) | Frame::BadBatch(_) => {}
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }

        #[test]
        fn objects_with_a_string_method_and_no_id_are_notifications(method in ".*", params in any_json()) {
            let text = json!({"method": method, "params": params}).to_string();
            match parse(&text) {
                Frame::Single(Entry::Notification { method: parsed, jsonrpc: false, .. }) => prop_assert_eq!(parsed, method),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
