//! A thread in memory (TURNS §16–17, §20.4): what it is, its turns, the one running turn, and its
//! subscribers. Everything about a thread changes under its one lock, and events are published
//! under it too, so a snapshot (`thread/resume`) and a subscription taken together never miss or
//! duplicate an event.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::peer::Notification;
use crate::protocol::{
    ReasoningEffort, ReasoningSummary, Thread, ThreadItem, ThreadStatus, TokenUsageBreakdown, Turn,
    TurnError, TurnStatus, UserInput,
};
use crate::turns::subscribers::Subscribers;
use crate::turns::tools::{self, DynamicTool};

/// Longest thread preview, in characters (TURNS §25.1).
const PREVIEW_CHARS: usize = 200;

/// What every request after an interrupted turn carries (TURNS §20.4).
const INTERRUPTED_MARKER: &str = "<turn_aborted>\nThe user interrupted the previous turn on purpose. Anything it was doing was stopped; tool calls in flight may have partially run.\n</turn_aborted>";

pub struct LoadedThread {
    pub id: Uuid,
    state: Mutex<ThreadState>,
}

/// The thread's settings: what `thread/start` chose and `turn/start` made sticky.
#[derive(Clone, Debug)]
pub struct ThreadSettings {
    pub model: String,
    pub effort: Option<ReasoningEffort>,
    pub summary: Option<ReasoningSummary>,
    pub base_instructions: Option<String>,
    pub developer_instructions: Option<String>,
    pub ephemeral: bool,
    /// Host tools offered on every request (TURNS §24.1).
    pub tools: Vec<DynamicTool>,
}

pub struct ThreadState {
    pub settings: ThreadSettings,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: Option<String>,
    pub preview: String,
    pub turns: Vec<TurnRecord>,
    pub running: Option<RunningTurn>,
    pub usage_total: TokenUsageBreakdown,
    pub subscribers: Subscribers,
}

/// One turn as it is remembered.
#[derive(Clone, Debug)]
pub struct TurnRecord {
    pub id: String,
    pub status: TurnStatus,
    pub error: Option<TurnError>,
    pub started_at: i64,
    pub started_at_ms: i64,
    pub completed_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Completed items, in order.
    pub items: Vec<ThreadItem>,
    /// The input items that replay this turn in later requests, in order.
    pub replay: Vec<Value>,
}

/// Handles on the running turn.
pub struct RunningTurn {
    pub id: String,
    pub cancel: CancellationToken,
    pub steer: mpsc::UnboundedSender<Vec<UserInput>>,
}

impl LoadedThread {
    pub fn new(id: Uuid, settings: ThreadSettings, now: i64) -> Arc<Self> {
        Arc::new(Self {
            id,
            state: Mutex::new(ThreadState {
                settings,
                created_at: now,
                updated_at: now,
                name: None,
                preview: String::new(),
                turns: Vec::new(),
                running: None,
                usage_total: TokenUsageBreakdown::default(),
                subscribers: Subscribers::default(),
            }),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, ThreadState> {
        self.state.lock().expect("thread lock")
    }

    pub fn id_text(&self) -> String {
        self.id.to_string()
    }
}

impl ThreadState {
    /// Sends `{method, params}` to the thread's subscribers.
    pub fn publish(&mut self, method: &'static str, params: &impl Serialize) {
        self.subscribers.publish(&Notification::new(method, params));
    }

    /// The thread as the protocol shows it, with or without its turns.
    pub fn snapshot(&self, id: &Uuid, home: &str, with_turns: bool) -> Thread {
        Thread {
            id: id.to_string(),
            preview: self.preview.clone(),
            model_provider: "openai".to_owned(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            path: None,
            cwd: home.to_owned(),
            cli_version: env!("CARGO_PKG_VERSION").to_owned(),
            source: "vscode".to_owned(),
            git_info: None,
            name: self.name.clone(),
            ephemeral: self.settings.ephemeral,
            status: if self.running.is_some() {
                ThreadStatus::Active {
                    active_flags: Vec::new(),
                }
            } else {
                ThreadStatus::Idle
            },
            turns: if with_turns {
                self.turns.iter().map(|turn| turn.to_turn(true)).collect()
            } else {
                Vec::new()
            },
        }
    }

    pub fn turn_mut(&mut self, id: &str) -> Option<&mut TurnRecord> {
        self.turns.iter_mut().find(|turn| turn.id == id)
    }

    /// Sets the preview from the first user message (TURNS §25.1), once.
    pub fn set_preview_from(&mut self, input: &[UserInput]) {
        if !self.preview.is_empty() {
            return;
        }
        let text: Vec<&str> = input
            .iter()
            .filter_map(|part| match part {
                UserInput::Text { text, .. } => Some(text.as_str()),
                UserInput::Image { .. } => None,
            })
            .collect();
        self.preview = text.join("\n").chars().take(PREVIEW_CHARS).collect();
    }

    /// The request input replaying the thread up to now (TURNS §20.4): the developer
    /// instructions, every earlier turn (an interrupted one followed by the marker), then the
    /// turn `current` so far.
    pub fn replay_input(&self) -> Vec<Value> {
        let mut input = Vec::new();
        if let Some(developer) = &self.settings.developer_instructions {
            input.push(message(
                "developer",
                vec![json!({"type": "input_text", "text": developer})],
            ));
        }
        for turn in &self.turns {
            input.extend(turn.replay.iter().cloned());
            if turn.status != TurnStatus::InProgress {
                input.extend(aborted_outputs(&turn.replay));
            }
            if turn.status == TurnStatus::Interrupted {
                input.push(user_text(INTERRUPTED_MARKER));
            }
        }
        input
    }
}

impl TurnRecord {
    pub fn new(id: String, now_ms: i64) -> Self {
        Self {
            id,
            status: TurnStatus::InProgress,
            error: None,
            started_at: now_ms / 1000,
            started_at_ms: now_ms,
            completed_at: None,
            duration_ms: None,
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
            started_at: Some(self.started_at),
            completed_at: self.completed_at,
            duration_ms: self.duration_ms,
        }
    }

    /// Ends the turn at `now_ms`.
    pub fn finish(&mut self, status: TurnStatus, error: Option<TurnError>, now_ms: i64) {
        self.status = status;
        self.error = error;
        self.completed_at = Some(now_ms / 1000);
        self.duration_ms = Some(now_ms - self.started_at_ms);
    }
}

/// `aborted` outputs for the calls of an ended turn that never got one (interrupted while
/// pending, cut short by the round limit, or lost in a crash), so every call is answered.
fn aborted_outputs(replay: &[Value]) -> Vec<Value> {
    let mut answered: Vec<&Value> = replay
        .iter()
        .filter(|item| item["type"] == "function_call_output")
        .map(|item| &item["call_id"])
        .collect();
    let mut aborted = Vec::new();
    for call in replay.iter().filter(|item| item["type"] == "function_call") {
        match answered.iter().position(|id| **id == call["call_id"]) {
            // Ids may repeat across rounds: each output answers one call.
            Some(found) => {
                answered.swap_remove(found);
            }
            None => aborted.push(tools::output_item(
                call["call_id"].as_str().unwrap_or_default(),
                json!("aborted"),
            )),
        }
    }
    aborted
}

/// A user message's input item (TURNS §20.4).
pub fn user_message(input: &[UserInput]) -> Value {
    let content: Vec<Value> = input
        .iter()
        .map(|part| match part {
            UserInput::Text { text, .. } => json!({"type": "input_text", "text": text}),
            UserInput::Image { url, detail } => match detail {
                Some(detail) => json!({"type": "input_image", "image_url": url, "detail": detail}),
                None => json!({"type": "input_image", "image_url": url}),
            },
        })
        .collect();
    message("user", content)
}

fn user_text(text: &str) -> Value {
    message("user", vec![json!({"type": "input_text", "text": text})])
}

fn message(role: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "role": role, "content": content})
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
