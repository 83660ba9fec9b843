//! What is kept about a thread (TURNS §25.1): its settings, its header (times, name, preview,
//! token totals) and its turns with their completed items and replay items. These are also the
//! in-memory form a loaded thread works with, so a thread read back is the thread that was
//! written.

use serde_json::Value;

use crate::protocol::{
    DynamicTool, ReasoningEffort, ReasoningSummary, ThreadItem, TokenUsageBreakdown, Turn,
    TurnError, TurnStatus,
};

/// The thread's settings: what `thread/start` chose and `turn/start` or `thread/resume` made
/// sticky.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadSettings {
    pub model: String,
    pub effort: Option<ReasoningEffort>,
    pub summary: Option<ReasoningSummary>,
    pub base_instructions: Option<String>,
    pub developer_instructions: Option<String>,
    /// Never stored (TURNS §17).
    pub ephemeral: bool,
    /// Host tools offered on every request (TURNS §24.1).
    pub tools: Vec<DynamicTool>,
}

/// A thread without its turns.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadHeader {
    pub id: String,
    /// Unix milliseconds (the protocol shows seconds; lists sort by these).
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived: bool,
    pub name: Option<String>,
    pub preview: String,
    pub settings: ThreadSettings,
    pub usage_total: TokenUsageBreakdown,
}

/// A thread as stored, with its turns in order.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredThread {
    pub header: ThreadHeader,
    pub turns: Vec<TurnRecord>,
}

/// One turn as it is remembered.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnRecord {
    pub id: String,
    pub status: TurnStatus,
    pub error: Option<TurnError>,
    pub started_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// Completed items, in order.
    pub items: Vec<ThreadItem>,
    /// The input items that replay this turn in later requests, in order.
    pub replay: Vec<Value>,
}

impl TurnRecord {
    pub fn new(id: String, now_ms: i64) -> Self {
        Self {
            id,
            status: TurnStatus::InProgress,
            error: None,
            started_at_ms: now_ms,
            completed_at_ms: None,
            items: Vec::new(),
            replay: Vec::new(),
        }
    }

    /// The turn as the protocol shows it (`items` only where a method fills them).
    pub fn to_turn(&self, with_items: bool) -> Turn {
        Turn {
            id: self.id.clone(),
            items: if with_items {
                self.items.clone()
            } else {
                Vec::new()
            },
            status: self.status,
            error: self.error.clone(),
            started_at: Some(self.started_at_ms / 1000),
            completed_at: self.completed_at_ms.map(|at| at / 1000),
            duration_ms: self.completed_at_ms.map(|at| at - self.started_at_ms),
        }
    }

    /// Ends the turn at `now_ms`.
    pub fn finish(&mut self, status: TurnStatus, error: Option<TurnError>, now_ms: i64) {
        self.status = status;
        self.error = error;
        self.completed_at_ms = Some(now_ms);
    }
}
