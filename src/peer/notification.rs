//! A notification, encoded once for both envelope styles (SPEC §3.2) and shared by every
//! connection it goes to.

use std::sync::Arc;

use serde::Serialize;

#[derive(Clone, Debug)]
pub struct Notification {
    pub method: &'static str,
    encoded: Arc<Encoded>,
}

#[derive(Debug)]
struct Encoded {
    /// `{"method":…,"params":…}`
    plain: String,
    /// `{"jsonrpc":"2.0","method":…,"params":…}`
    with_jsonrpc: String,
}

impl Notification {
    pub fn new(method: &'static str, params: &impl Serialize) -> Self {
        let params = serde_json::to_string(params).expect("notification params serialize");
        let method_json = serde_json::to_string(method).expect("method name serializes");
        Self {
            method,
            encoded: Arc::new(Encoded {
                plain: format!("{{\"method\":{method_json},\"params\":{params}}}"),
                with_jsonrpc: format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":{method_json},\"params\":{params}}}"
                ),
            }),
        }
    }

    /// The text for a connection that does (or does not) carry `"jsonrpc":"2.0"`.
    pub fn encoded(&self, jsonrpc: bool) -> &str {
        if jsonrpc {
            &self.encoded.with_jsonrpc
        } else {
            &self.encoded.plain
        }
    }
}
