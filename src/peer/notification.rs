//! A notification, encoded once for both envelope styles (SPEC §3.2) and shared by every
//! connection it goes to.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

#[derive(Clone, Debug)]
pub struct Notification {
    pub method: &'static str,
    encoded: Arc<Encoded>,
}

#[derive(Debug)]
struct Encoded {
    /// `{"method":…,"params":…}`, written in one buffer.
    plain: String,
    /// `{"jsonrpc":"2.0","method":…,"params":…}`, made the first time a connection that uses
    /// the full envelope asks (most fan-outs never do).
    with_jsonrpc: OnceLock<String>,
}

impl Notification {
    pub fn new(method: &'static str, params: &impl Serialize) -> Self {
        // Room for a text delta with its three ids, so the hottest notification never grows it.
        let mut text = Vec::with_capacity(256);
        text.extend_from_slice(b"{\"method\":");
        serde_json::to_writer(&mut text, method).expect("method name serializes");
        text.extend_from_slice(b",\"params\":");
        serde_json::to_writer(&mut text, params).expect("notification params serialize");
        text.push(b'}');
        Self {
            method,
            encoded: Arc::new(Encoded {
                plain: String::from_utf8(text).expect("serde_json writes UTF-8"),
                with_jsonrpc: OnceLock::new(),
            }),
        }
    }

    /// The text for a connection that does (or does not) carry `"jsonrpc":"2.0"`.
    pub fn encoded(&self, jsonrpc: bool) -> &str {
        let plain = &self.encoded.plain;
        if jsonrpc {
            self.encoded
                .with_jsonrpc
                .get_or_init(|| format!("{{\"jsonrpc\":\"2.0\",{}", &plain[1..]))
        } else {
            plain
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::Notification;

    #[test]
    fn both_envelopes_carry_the_same_method_and_params() {
        let notification = Notification::new("item/agentMessage/delta", &json!({"delta": "a\"b"}));
        let plain: Value = serde_json::from_str(notification.encoded(false)).unwrap();
        let full: Value = serde_json::from_str(notification.encoded(true)).unwrap();
        assert_eq!(
            plain,
            json!({"method": "item/agentMessage/delta", "params": {"delta": "a\"b"}})
        );
        assert_eq!(
            full,
            json!({"jsonrpc": "2.0", "method": "item/agentMessage/delta", "params": {"delta": "a\"b"}})
        );
    }
}
