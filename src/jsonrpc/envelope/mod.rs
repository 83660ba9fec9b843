//! Reading and writing JSON-RPC envelopes (SPEC §3).
//!
//! jsonrpsee's own envelope types reject messages without `"jsonrpc":"2.0"` and cannot hold negative
//! or oversized ids, so the envelope is handled here: each frame is classified without decoding its
//! `params`, ids are kept as the exact bytes the client sent, and replies splice those bytes back in.

use std::borrow::Cow;

use jsonrpsee::types::Id;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::jsonrpc::RpcError;

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
mod properties;
#[cfg(test)]
mod tests;
