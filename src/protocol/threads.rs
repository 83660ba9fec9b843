//! Threads, turns, items and models (TURNS §16–§19): the methods' params and results and the
//! notifications a turn streams, in Codex 0.94.0's shapes plus TURNS §15's additive members.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use super::DynamicToolSpec;

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

/// `thread/start` params. Agent-only members (`cwd`, `sandbox`, `approvalPolicy`, `config`,
/// `personality`, …) are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartParams {
    #[serde(default)]
    #[ts(optional)]
    pub model: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub base_instructions: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub developer_instructions: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub ephemeral: Option<bool>,
    /// Host tools the model may call (TURNS §24).
    #[serde(default)]
    #[ts(optional)]
    pub dynamic_tools: Option<Vec<DynamicToolSpec>>,
}

/// `thread/start` result (also `thread/resume`'s).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartResponse {
    pub thread: Thread,
    pub model: String,
    pub model_provider: String,
    pub cwd: String,
    /// Always `never`: nothing runs that could be approved.
    pub approval_policy: String,
    /// Always `{"type":"readOnly"}`.
    #[ts(type = "{ type: \"readOnly\" }")]
    pub sandbox: Value,
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Always `user` (0.169.0).
    pub approvals_reviewer: String,
}

/// `thread/resume` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadResumeParams {
    pub thread_id: String,
    #[serde(default)]
    #[ts(optional)]
    pub model: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub base_instructions: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub developer_instructions: Option<String>,
    /// 0.169.0: answer with `turns: []`.
    #[serde(default)]
    #[ts(optional)]
    pub exclude_turns: Option<bool>,
}

/// `thread/read` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadParams {
    pub thread_id: String,
    #[serde(default)]
    #[ts(optional)]
    pub include_turns: Option<bool>,
}

/// `thread/read` result.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
pub struct ThreadReadResponse {
    pub thread: Thread,
}

/// `turn/start` params. Agent-only members are accepted and ignored.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    pub thread_id: String,
    #[schemars(with = "Vec<UserInput>")]
    #[ts(as = "Vec<UserInput>")]
    pub input: UserInputs,
    /// This and later turns.
    #[serde(default)]
    #[ts(optional)]
    pub model: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub effort: Option<ReasoningEffort>,
    #[serde(default)]
    #[ts(optional)]
    pub summary: Option<ReasoningSummary>,
    /// This turn only: constrains the final message to this JSON Schema.
    #[serde(default)]
    #[ts(optional, type = "unknown")]
    pub output_schema: Option<Value>,
}

/// `turn/start` result: the turn, always `inProgress`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
pub struct TurnStartResponse {
    pub turn: Turn,
}

/// `turn/interrupt` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct TurnInterruptParams {
    pub thread_id: String,
    pub turn_id: String,
}

/// `turn/interrupt` result: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema, TS)]
pub struct TurnInterruptResponse {}

/// `model/list` params.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
pub struct ModelListParams {
    /// A decimal offset, as Codex.
    #[serde(default)]
    #[ts(optional)]
    pub cursor: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ModelListResponse {
    pub data: Vec<Model>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub id: String,
    pub model: String,
    pub display_name: String,
    pub description: String,
    pub supported_reasoning_efforts: Vec<ReasoningEffortOption>,
    pub default_reasoning_effort: ReasoningEffort,
    pub supports_personality: bool,
    pub is_default: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningEffortOption {
    pub reasoning_effort: ReasoningEffort,
    pub description: String,
}

/// `thread/list` params (TURNS §17.4); provider and source filters are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadListParams {
    #[serde(default)]
    #[ts(optional)]
    pub cursor: Option<String>,
    /// Page size: absent → 25, clamped to 1–100.
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
    #[serde(default)]
    #[ts(optional)]
    pub sort_key: Option<ThreadSortKey>,
    /// `true`: only archived threads; otherwise only the others.
    #[serde(default)]
    #[ts(optional)]
    pub archived: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "snake_case")]
pub enum ThreadSortKey {
    #[default]
    UpdatedAt,
    CreatedAt,
}

/// `thread/list` result.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadListResponse {
    pub data: Vec<Thread>,
    pub next_cursor: Option<String>,
}

/// `thread/archive` and `thread/unarchive` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadIdParams {
    pub thread_id: String,
}

/// `thread/archive` result.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
pub struct ThreadArchiveResponse {}

/// `thread/unarchive` result.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
pub struct ThreadUnarchiveResponse {
    pub thread: Thread,
}

/// `thread/name/set` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSetNameParams {
    pub thread_id: String,
    pub name: String,
}

/// `thread/name/set` result.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
pub struct ThreadSetNameResponse {}
