//! The params and results of the thread, turn and model methods (TURNS §16–§18), in Codex
//! 0.94.0's shapes plus TURNS §15's additive members. The objects they carry are in
//! [`super::threads`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use super::{
    DynamicToolSpec, ReasoningEffort, ReasoningSummary, Thread, Turn, UserInput, UserInputs,
};

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
