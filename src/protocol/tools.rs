//! Host tools (TURNS §24): how `thread/start` declares them, and the `item/tool/call` request
//! that asks the host to run one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use ts_rs::TS;

/// One dynamic tool of `thread/start`: 0.94.0's `{name, description, inputSchema}` or 0.169.0's
/// `{type: "function", …, deferLoading?}`. Checked by the thread, not here, so each problem gets
/// its TURNS §24.1 text.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolSpec {
    /// 0.169.0: `function` (or `namespace`, refused).
    #[serde(default, rename = "type")]
    #[ts(optional, rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    #[ts(optional)]
    pub description: Option<String>,
    /// A JSON Schema object for the arguments.
    #[serde(default)]
    #[ts(optional, type = "unknown")]
    pub input_schema: Option<Value>,
}

/// `item/tool/call` params: run `tool` with `arguments` and answer with its output.
#[derive(Clone, Debug, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolCallParams {
    pub thread_id: String,
    pub turn_id: String,
    pub call_id: String,
    pub tool: String,
    #[ts(type = "unknown")]
    pub arguments: Value,
}

/// The host's answer (0.94.0's shape; 0.169.0's `{contentItems, success}` is accepted too).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, TS)]
pub struct DynamicToolCallResponse {
    pub output: String,
    pub success: bool,
}

/// A checked tool declaration, as stored with the thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicTool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

impl DynamicTool {
    /// The tool as the model request offers it (TURNS §20.3).
    pub fn offered(&self) -> Value {
        json!({"type": "function", "name": self.name, "description": self.description, "strict": false, "parameters": self.input_schema})
    }
}
