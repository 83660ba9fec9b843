//! Every message authbridge sends to a test client is checked against the JSON Schemas Codex 0.94.0
//! generates (`tests/fixtures/codex-schema/seed-codex-0.94.0`), so the whole suite doubles as a
//! conformance test. The deliberate deviations the README lists are handled explicitly here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/codex-schema")
}

fn load(relative: &str) -> Validator {
    let path = fixtures().join(relative);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

struct Schemas {
    seed: HashMap<&'static str, Validator>,
    /// Later shapes authbridge emits on purpose (SPEC §1 additive variants).
    latest_login_response: Validator,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let seed = [
            ("jsonrpc/request", "JSONRPCRequest.json"),
            ("jsonrpc/notification", "JSONRPCNotification.json"),
            ("jsonrpc/response", "JSONRPCResponse.json"),
            ("jsonrpc/error", "JSONRPCError.json"),
            ("jsonrpc/errorObject", "JSONRPCErrorError.json"),
            ("initialize", "v1/InitializeResponse.json"),
            ("account/read", "v2/GetAccountResponse.json"),
            ("account/login/start", "v2/LoginAccountResponse.json"),
            ("account/login/cancel", "v2/CancelLoginAccountResponse.json"),
            ("account/logout", "v2/LogoutAccountResponse.json"),
            (
                "account/rateLimits/read",
                "v2/GetAccountRateLimitsResponse.json",
            ),
            (
                "account/login/completed",
                "v2/AccountLoginCompletedNotification.json",
            ),
            ("account/updated", "v2/AccountUpdatedNotification.json"),
            (
                "account/rateLimits/updated",
                "v2/AccountRateLimitsUpdatedNotification.json",
            ),
            (
                "account/chatgptAuthTokens/refresh",
                "ChatgptAuthTokensRefreshParams.json",
            ),
            ("item/tool/call", "DynamicToolCallParams.json"),
            // Thread and turn results (TURNS §17–§18).
            ("thread/start", "v2/ThreadStartResponse.json"),
            ("thread/resume", "v2/ThreadResumeResponse.json"),
            ("thread/read", "v2/ThreadReadResponse.json"),
            ("thread/list", "v2/ThreadListResponse.json"),
            ("thread/archive", "v2/ThreadArchiveResponse.json"),
            ("thread/unarchive", "v2/ThreadUnarchiveResponse.json"),
            ("thread/name/set", "v2/ThreadSetNameResponse.json"),
            ("turn/start", "v2/TurnStartResponse.json"),
            ("turn/interrupt", "v2/TurnInterruptResponse.json"),
            ("model/list", "v2/ModelListResponse.json"),
            // Thread and turn notifications (TURNS §19.1).
            ("thread/started", "v2/ThreadStartedNotification.json"),
            (
                "thread/name/updated",
                "v2/ThreadNameUpdatedNotification.json",
            ),
            (
                "thread/tokenUsage/updated",
                "v2/ThreadTokenUsageUpdatedNotification.json",
            ),
            ("turn/started", "v2/TurnStartedNotification.json"),
            ("turn/completed", "v2/TurnCompletedNotification.json"),
            ("item/started", "v2/ItemStartedNotification.json"),
            ("item/completed", "v2/ItemCompletedNotification.json"),
            (
                "item/agentMessage/delta",
                "v2/AgentMessageDeltaNotification.json",
            ),
            (
                "item/reasoning/summaryPartAdded",
                "v2/ReasoningSummaryPartAddedNotification.json",
            ),
            (
                "item/reasoning/summaryTextDelta",
                "v2/ReasoningSummaryTextDeltaNotification.json",
            ),
            (
                "item/reasoning/textDelta",
                "v2/ReasoningTextDeltaNotification.json",
            ),
            ("error", "v2/ErrorNotification.json"),
        ]
        .into_iter()
        .map(|(key, file)| (key, load(&format!("seed-codex-0.94.0/{file}"))))
        .collect();
        Schemas {
            seed,
            latest_login_response: load("latest-codex-0.169.0/v2/LoginAccountResponse.json"),
        }
    })
}

fn check(validator: &Validator, value: &Value, what: &str, message: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "authbridge sent a message that does not match Codex 0.94.0's schema for {what}: {errors:?}\nmessage: {message}"
    );
}

/// Checks one message from the server. `sent` maps request ids (as JSON text) to their methods.
pub fn check_server_message(message: &Value, sent: &HashMap<String, String>) {
    // Deviation: batches (an array reply) are checked entry by entry.
    if let Value::Array(entries) = message {
        for entry in entries {
            check_server_message(entry, sent);
        }
        return;
    }
    let schemas = schemas();
    let seed = &schemas.seed;
    let method = message.get("method").and_then(Value::as_str);
    let id = message.get("id");
    match (method, id) {
        (Some(method), Some(_)) => {
            check(
                &seed["jsonrpc/request"],
                message,
                "a server request",
                message,
            );
            if let Some(validator) = seed.get(method) {
                check(validator, &message["params"], method, message);
            }
        }
        (Some(method), None) => {
            check(
                &seed["jsonrpc/notification"],
                message,
                "a notification",
                message,
            );
            if let Some(validator) = seed.get(method) {
                check(validator, &message["params"], method, message);
            } else {
                panic!("authbridge sent an unknown notification: {message}");
            }
        }
        (None, Some(id)) => {
            if let Some(error) = message.get("error") {
                if id.is_null() {
                    // Deviation: Codex drops unreadable input; authbridge answers it with id null.
                    check(
                        &seed["jsonrpc/errorObject"],
                        error,
                        "an error object",
                        message,
                    );
                } else {
                    check(
                        &seed["jsonrpc/error"],
                        message,
                        "an error response",
                        message,
                    );
                }
                assert!(
                    error.get("data").is_none(),
                    "errors never carry data: {message}"
                );
                return;
            }
            if id_beyond_i64(id) {
                // The client chose an id Codex's schema cannot describe; it is echoed all the same.
                return;
            }
            check(&seed["jsonrpc/response"], message, "a response", message);
            let Some(method) = sent.get(&id.to_string()) else {
                return;
            };
            let result = &message["result"];
            if method == "account/login/start" && result["type"] == "chatgptDeviceCode" {
                // Deviation: the device-code login is a later, additive variant (Codex PR #15525).
                check(
                    &schemas.latest_login_response,
                    result,
                    "a device-code login result (0.169.0)",
                    message,
                );
            } else if let Some(validator) = seed.get(method.as_str()) {
                check(validator, result, method, message);
            }
        }
        (None, None) => panic!(
            "authbridge sent a message that is neither a request, a notification nor a response: {message}"
        ),
    }
}

fn id_beyond_i64(id: &Value) -> bool {
    id.is_number() && id.as_i64().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent(id: i64, method: &str) -> HashMap<String, String> {
        HashMap::from([(id.to_string(), method.to_owned())])
    }

    #[test]
    fn conforming_messages_pass() {
        check_server_message(
            &json!({"id": 1, "result": {"account": null, "requiresOpenaiAuth": true}}),
            &sent(1, "account/read"),
        );
        check_server_message(
            &json!({"method": "account/updated", "params": {"authMode": "apikey", "planType": null}}),
            &HashMap::new(),
        );
        check_server_message(
            &json!({"id": null, "error": {"code": -32700, "message": "Parse error"}}),
            &HashMap::new(),
        );
    }

    #[test]
    #[should_panic(expected = "does not match Codex 0.94.0's schema for account/read")]
    fn a_chatgpt_account_without_email_is_caught() {
        check_server_message(
            &json!({"id": 1, "result": {"account": {"type": "chatgpt", "planType": "pro"}, "requiresOpenaiAuth": true}}),
            &sent(1, "account/read"),
        );
    }

    #[test]
    #[should_panic(expected = "does not match Codex 0.94.0's schema for account/updated")]
    fn an_unknown_auth_mode_is_caught() {
        check_server_message(
            &json!({"method": "account/updated", "params": {"authMode": "bogus"}}),
            &HashMap::new(),
        );
    }

    #[test]
    #[should_panic(
        expected = "does not match Codex 0.94.0's schema for account/chatgptAuthTokens/refresh"
    )]
    fn a_bad_refresh_reason_is_caught() {
        check_server_message(
            &json!({"id": 0, "method": "account/chatgptAuthTokens/refresh", "params": {"reason": "expired"}}),
            &HashMap::new(),
        );
    }
}
