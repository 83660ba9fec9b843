//! What the console's request composer offers, served as `GET /console/catalog.json`: one entry
//! per method this server registered (never a copy kept in the page), each with example params
//! and a line of help, and how long the server waits for each server→client request, so the
//! page's countdowns show the configured windows.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::protocol::methods;

/// The catalogue, encoded once at start.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    methods: Vec<Entry>,
    /// Server→client request method → how long the server waits for the answer (ms).
    server_requests: Value,
}

#[derive(Clone, Debug, Serialize)]
struct Entry {
    group: &'static str,
    /// Unique key of the entry (a method may have several, e.g. one per login type).
    value: &'static str,
    label: &'static str,
    method: &'static str,
    /// Example params; `null`: sent without params.
    params: Value,
    doc: &'static str,
}

/// Placeholder the page replaces with the thread it has open.
const THREAD: &str = "<thread id>";

impl Catalog {
    /// Entries for `registered` (the server's method names; `initialize` is the page's own).
    pub fn new(
        registered: &[&str],
        refresh_timeout: Duration,
        tool_call_timeout: Duration,
    ) -> Self {
        let methods = entries()
            .into_iter()
            .filter(|entry| registered.contains(&entry.method))
            .collect();
        Self {
            methods,
            server_requests: json!({
                methods::TOKENS_REFRESH: refresh_timeout.as_millis() as u64,
                methods::TOOL_CALL: tool_call_timeout.as_millis() as u64,
            }),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the catalogue serializes")
    }
}

fn entry(
    group: &'static str,
    value: &'static str,
    label: &'static str,
    params: Value,
    doc: &'static str,
) -> Entry {
    Entry {
        group,
        value,
        label,
        method: value,
        params,
        doc,
    }
}

fn login(value: &'static str, label: &'static str, params: Value, doc: &'static str) -> Entry {
    Entry {
        method: methods::LOGIN_START,
        ..entry("account/login/start", value, label, params, doc)
    }
}

fn entries() -> Vec<Entry> {
    vec![
        entry(
            "Account",
            methods::READ,
            methods::READ,
            json!({"refreshToken": false}),
            "The current account. refreshToken:true runs the managed refresh grant first.",
        ),
        entry(
            "Account",
            methods::RATE_LIMITS_READ,
            methods::RATE_LIMITS_READ,
            Value::Null,
            "One usage call to the backend; a 401 with host-owned tokens sends this client a refresh request.",
        ),
        entry(
            "Account",
            methods::LOGOUT,
            methods::LOGOUT,
            Value::Null,
            "Clears the credentials; every client gets account/updated with authMode null.",
        ),
        login(
            "login:apiKey",
            "apiKey",
            json!({"type": "apiKey", "apiKey": "sk-…"}),
            "Stores an API key in auth.json.",
        ),
        login(
            "login:chatgpt",
            "chatgpt (browser)",
            json!({"type": "chatgpt"}),
            "Starts the managed browser login; the result carries loginId and authUrl.",
        ),
        login(
            "login:chatgptDeviceCode",
            "chatgptDeviceCode",
            json!({"type": "chatgptDeviceCode"}),
            "Starts a device-code login; the result carries verificationUrl and userCode.",
        ),
        login(
            "login:chatgptAuthTokens",
            "chatgptAuthTokens (idToken)",
            json!({"type": "chatgptAuthTokens", "idToken": "<id token JWT>", "accessToken": "<access token>"}),
            "Host-owned tokens, kept in memory. This connection becomes the owner that answers refresh requests.",
        ),
        login(
            "login:chatgptAuthTokens-account",
            "chatgptAuthTokens (accountId)",
            json!({"type": "chatgptAuthTokens", "accessToken": "<access token JWT>", "chatgptAccountId": "org-…", "chatgptPlanType": "pro"}),
            "Host-owned tokens, later shape: the email comes from the access token's claims.",
        ),
        Entry {
            group: "account/login/start",
            ..entry(
                "account/login/cancel",
                methods::LOGIN_CANCEL,
                methods::LOGIN_CANCEL,
                json!({"loginId": "<login id>"}),
                "Cancels the managed login in progress (the last loginId seen is filled in).",
            )
        },
        entry(
            "Threads",
            methods::THREAD_START,
            methods::THREAD_START,
            json!({}),
            "A new thread; dynamicTools declares tools this client runs, ephemeral:true keeps it off disk.",
        ),
        entry(
            "Threads",
            methods::THREAD_LIST,
            methods::THREAD_LIST,
            json!({"limit": 20}),
            "Stored threads, newest first; pass nextCursor back as cursor for the next page.",
        ),
        entry(
            "Threads",
            methods::THREAD_READ,
            methods::THREAD_READ,
            json!({"threadId": THREAD, "includeTurns": true}),
            "One thread, with its turns if asked.",
        ),
        entry(
            "Threads",
            methods::THREAD_RESUME,
            methods::THREAD_RESUME,
            json!({"threadId": THREAD}),
            "Opens a stored thread here and subscribes this connection to it.",
        ),
        entry(
            "Threads",
            methods::THREAD_NAME_SET,
            methods::THREAD_NAME_SET,
            json!({"threadId": THREAD, "name": "A name"}),
            "Names the thread; subscribers get thread/name/updated.",
        ),
        entry(
            "Threads",
            methods::THREAD_ARCHIVE,
            methods::THREAD_ARCHIVE,
            json!({"threadId": THREAD}),
            "Hides the thread from thread/list (archived:true lists it).",
        ),
        entry(
            "Threads",
            methods::THREAD_UNARCHIVE,
            methods::THREAD_UNARCHIVE,
            json!({"threadId": THREAD}),
            "Brings an archived thread back.",
        ),
        entry(
            "Turns",
            methods::TURN_START,
            methods::TURN_START,
            json!({"threadId": THREAD, "input": [{"type": "text", "text": "Hello"}]}),
            "Runs a model turn; the answer streams as item/agentMessage/delta, turn/completed comes last.",
        ),
        entry(
            "Turns",
            methods::TURN_INTERRUPT,
            methods::TURN_INTERRUPT,
            json!({"threadId": THREAD, "turnId": "<turn id>"}),
            "Stops the running turn; it completes with status interrupted.",
        ),
        entry(
            "Turns",
            methods::MODEL_LIST,
            methods::MODEL_LIST,
            json!({}),
            "The models turn/start accepts.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_registered_method_has_an_entry_and_nothing_else_does() {
        let registered = crate::testing::TestCore::new(&[]).rpc.method_names();
        let catalog = Catalog::new(&registered, Duration::from_secs(7), Duration::from_secs(60));
        for method in &registered {
            if *method == methods::INITIALIZE {
                continue;
            }
            assert!(
                catalog.methods.iter().any(|entry| entry.method == *method),
                "{method} has no catalogue entry"
            );
        }
        assert_eq!(
            entries().len(),
            catalog.methods.len(),
            "an entry names no registered method"
        );
        let json: Value = serde_json::from_str(&catalog.to_json()).unwrap();
        assert_eq!(json["serverRequests"][methods::TOKENS_REFRESH], 7000);
        assert_eq!(json["serverRequests"][methods::TOOL_CALL], 60000);
    }
}
