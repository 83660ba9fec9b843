//! Properties over arbitrary JSON and bytes: ids round-trip, nothing panics.

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
