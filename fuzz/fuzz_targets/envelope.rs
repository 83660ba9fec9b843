//! Any frame text: classification and reply rendering never panic, and replies are valid JSON.
#![no_main]

use authbridge::fuzzing::RpcError;
use authbridge::fuzzing::envelope::{self, Entry, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = match envelope::parse(&text) {
        Frame::Single(entry) => vec![entry],
        Frame::Batch(entries) => entries,
        Frame::ParseError | Frame::BadBatch(_) => return,
    };
    for entry in entries {
        let reply = match entry {
            Entry::Request { id, jsonrpc, .. } => {
                envelope::readdress(id, jsonrpc, r#"{"jsonrpc":"2.0","id":null,"result":null}"#)
            }
            Entry::Invalid { id, jsonrpc, error } => envelope::failure(id, jsonrpc, &error),
            Entry::Response { id, .. } => envelope::failure(Some(id), false, &RpcError::parse_error()),
            Entry::Notification { .. } | Entry::Dropped => continue,
        };
        serde_json::from_str::<serde_json::Value>(&reply).expect("replies are valid JSON");
    }
});
