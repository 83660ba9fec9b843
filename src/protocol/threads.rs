//! Threads, turns and items (TURNS §16–§19) as the methods return them and notifications carry
//! them, in Codex 0.94.0's shapes plus TURNS §15's additive members; the methods' own params and
//! results are in [`super::thread_methods`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

/// A conversation.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct Thread {
    /// UUIDv7.
    pub id: String,
    /// The first user message's text inputs joined by `\n`, at most 200 characters.
    pub preview: String,
    pub model_provider: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Always `null`: threads live in one database, not per-thread files.
    pub path: Option<String>,
    pub cwd: String,
    pub cli_version: String,
    pub source: String,
    #[ts(type = "null")]
    pub git_info: Option<Value>,
    pub name: Option<String>,
    pub ephemeral: bool,
    pub status: ThreadStatus,
    pub turns: Vec<Turn>,
}

/// Whether a thread is in memory, and running a turn (0.169.0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ThreadStatus {
    Idle,
    #[serde(rename_all = "camelCase")]
    Active {
        active_flags: Vec<String>,
    },
    NotLoaded,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    /// UUIDv7.
    pub id: String,
    /// Empty except in `thread/read` and `thread/resume`.
    pub items: Vec<ThreadItem>,
    pub status: TurnStatus,
    /// Set iff `status` is `failed`.
    pub error: Option<TurnError>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub enum TurnStatus {
    InProgress,
    Completed,
    Failed,
    Interrupted,
}

/// What a turn produced. Only these three 0.94.0 variants are emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ThreadItem {
    #[serde(rename_all = "camelCase")]
    UserMessage {
        id: String,
        content: Vec<UserInput>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
    #[serde(rename_all = "camelCase")]
    AgentMessage {
        id: String,
        text: String,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
    #[serde(rename_all = "camelCase")]
    Reasoning {
        id: String,
        summary: Vec<String>,
        content: Vec<String>,
        started_at_ms: Option<i64>,
        completed_at_ms: Option<i64>,
    },
}

impl ThreadItem {
    pub fn id(&self) -> &str {
        match self {
            Self::UserMessage { id, .. }
            | Self::AgentMessage { id, .. }
            | Self::Reasoning { id, .. } => id,
        }
    }
}

/// One part of a user message: text or an image URL (the only kinds authbridge takes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserInput {
    Text {
        text: String,
        /// UI-defined spans within `text`, kept as sent.
        #[serde(default)]
        #[ts(type = "Array<unknown>")]
        text_elements: Vec<Value>,
    },
    Image {
        url: String,
        /// 0.169.0's `detail` (`auto`, `low`, `high`), forwarded to the model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        detail: Option<String>,
    },
}

/// Input parts as received: anything but text and images is refused with its type's name.
#[derive(Clone, Debug)]
pub struct UserInputs(pub Vec<UserInput>);

impl<'de> Deserialize<'de> for UserInputs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Vec::<Value>::deserialize(deserializer)?;
        raw.into_iter()
            .map(|part| {
                let kind = part
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                match kind.as_str() {
                    "text" | "image" => {
                        serde_json::from_value(part).map_err(serde::de::Error::custom)
                    }
                    other => Err(serde::de::Error::custom(format!(
                        "unsupported input type {other}"
                    ))),
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Why a turn failed (TURNS §22).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct TurnError {
    pub message: String,
    pub codex_error_info: Option<CodexErrorInfo>,
    pub additional_details: Option<String>,
}

/// Codex's classification of a turn error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub enum CodexErrorInfo {
    ContextWindowExceeded,
    UsageLimitExceeded,
    InternalServerError,
    Unauthorized,
    BadRequest,
    Other,
    ResponseStreamDisconnected {
        #[serde(rename = "httpStatusCode")]
        http_status_code: Option<u16>,
    },
    ResponseTooManyFailedAttempts {
        #[serde(rename = "httpStatusCode")]
        http_status_code: Option<u16>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsageBreakdown {
    pub total_tokens: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_output_tokens: i64,
}

impl std::ops::AddAssign for TokenUsageBreakdown {
    fn add_assign(&mut self, other: Self) {
        self.total_tokens += other.total_tokens;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_output_tokens += other.reasoning_output_tokens;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadTokenUsage {
    /// The thread's running sum.
    pub total: TokenUsageBreakdown,
    /// This response's usage.
    pub last: TokenUsageBreakdown,
    pub model_context_window: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningSummary {
    Auto,
    Concise,
    Detailed,
    None,
}
