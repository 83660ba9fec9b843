//! Wire types of the protocol, in Codex 0.94.0's shapes plus the additive members the SPEC and
//! TURNS list: the handshake here, the account surface in [`account`], threads and turns in
//! [`threads`] and their methods in [`thread_methods`].
//!
//! Inputs accept both the seed and the later Codex shapes; unknown members are ignored. Secret
//! inputs are [`SecretString`](secrecy::SecretString)s from the moment they are decoded.

mod account;
mod notifications;
mod thread_methods;
mod threads;
mod tools;

pub use account::*;
pub use notifications::*;
pub use thread_methods::*;
pub use threads::*;
pub use tools::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// The `clientInfo` a connection sends with `initialize`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
pub struct ClientInfo {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    pub version: String,
}

/// `initialize` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub client_info: ClientInfo,
    #[serde(default)]
    #[ts(optional)]
    pub capabilities: Option<InitializeCapabilities>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct InitializeCapabilities {
    /// Accepted for compatibility; gates nothing (as Codex 0.94.0).
    #[allow(dead_code)]
    #[serde(default)]
    #[ts(optional)]
    pub experimental_api: Option<bool>,
    /// Notification methods this connection does not want.
    #[serde(default)]
    #[ts(optional)]
    pub opt_out_notification_methods: Option<Vec<String>>,
}

/// `initialize` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    pub user_agent: String,
    pub codex_home: String,
    pub platform_family: String,
    pub platform_os: String,
}

/// Method names, in one place.
pub mod methods {
    pub const INITIALIZE: &str = "initialize";
    pub const INITIALIZED: &str = "initialized";
    pub const READ: &str = "account/read";
    pub const LOGIN_START: &str = "account/login/start";
    pub const LOGIN_CANCEL: &str = "account/login/cancel";
    pub const LOGOUT: &str = "account/logout";
    pub const RATE_LIMITS_READ: &str = "account/rateLimits/read";
    pub const LOGIN_COMPLETED: &str = "account/login/completed";
    pub const UPDATED: &str = "account/updated";
    pub const RATE_LIMITS_UPDATED: &str = "account/rateLimits/updated";
    pub const TOKENS_REFRESH: &str = "account/chatgptAuthTokens/refresh";

    pub const THREAD_START: &str = "thread/start";
    pub const THREAD_RESUME: &str = "thread/resume";
    pub const THREAD_READ: &str = "thread/read";
    pub const THREAD_LIST: &str = "thread/list";
    pub const THREAD_ARCHIVE: &str = "thread/archive";
    pub const THREAD_UNARCHIVE: &str = "thread/unarchive";
    pub const THREAD_NAME_SET: &str = "thread/name/set";
    pub const TURN_START: &str = "turn/start";
    pub const TURN_INTERRUPT: &str = "turn/interrupt";
    pub const MODEL_LIST: &str = "model/list";

    pub const THREAD_STARTED: &str = "thread/started";
    pub const THREAD_NAME_UPDATED: &str = "thread/name/updated";
    pub const TURN_STARTED: &str = "turn/started";
    pub const TURN_COMPLETED: &str = "turn/completed";
    pub const ITEM_STARTED: &str = "item/started";
    pub const ITEM_COMPLETED: &str = "item/completed";
    pub const AGENT_MESSAGE_DELTA: &str = "item/agentMessage/delta";
    pub const REASONING_SUMMARY_PART_ADDED: &str = "item/reasoning/summaryPartAdded";
    pub const REASONING_SUMMARY_TEXT_DELTA: &str = "item/reasoning/summaryTextDelta";
    pub const REASONING_TEXT_DELTA: &str = "item/reasoning/textDelta";
    pub const TOKEN_USAGE_UPDATED: &str = "thread/tokenUsage/updated";
    pub const ERROR: &str = "error";
    pub const TOOL_CALL: &str = "item/tool/call";
}
