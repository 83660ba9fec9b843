//! A thread in memory (TURNS §16–17, §20.4): what it is, its turns, the one running turn, and its
//! subscribers. Everything about a thread changes under its one lock, and events are published
//! under it too, so a snapshot (`thread/resume`) and a subscription taken together never miss or
//! duplicate an event. Operations that change a thread from outside its turn (turn start,
//! resume, rename, archive) also take its `ops` lock, so they apply in arrival order.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::peer::Notification;
use crate::protocol::{Thread, ThreadStatus, TurnStatus, UserInput};
use crate::store::{StoredThread, ThreadHeader, TurnRecord};
use crate::turns::subscribers::Subscribers;
use crate::turns::tools;

/// Longest thread preview, in characters (TURNS §25.1).
const PREVIEW_CHARS: usize = 200;

/// What every request after an interrupted turn carries (TURNS §20.4).
const INTERRUPTED_MARKER: &str = "<turn_aborted>\nThe user interrupted the previous turn on purpose. Anything it was doing was stopped; tool calls in flight may have partially run.\n</turn_aborted>";

pub struct LoadedThread {
    pub id: Uuid,
    state: Mutex<ThreadState>,
    /// Held by the methods that change the thread, one at a time.
    pub ops: Arc<tokio::sync::Mutex<()>>,
}

pub struct ThreadState {
    pub header: ThreadHeader,
    pub turns: Vec<TurnRecord>,
    pub running: Option<RunningTurn>,
    pub subscribers: Subscribers,
    /// Set once the thread is unloaded: whoever still holds it must look it up again.
    pub unloaded: bool,
}

/// Handles on the running turn.
pub struct RunningTurn {
    pub id: String,
    pub cancel: CancellationToken,
    pub steer: mpsc::UnboundedSender<Vec<UserInput>>,
    /// Cancelled once the turn has ended (its `turn/completed` is out).
    pub finished: CancellationToken,
}

impl LoadedThread {
    pub fn new(id: Uuid, stored: StoredThread) -> Arc<Self> {
        Arc::new(Self {
            id,
            state: Mutex::new(ThreadState {
                header: stored.header,
                turns: stored.turns,
                running: None,
                subscribers: Subscribers::default(),
                unloaded: false,
            }),
            ops: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, ThreadState> {
        self.state.lock().expect("thread lock")
    }

    pub fn id_text(&self) -> String {
        self.id.to_string()
    }

    pub fn is_ephemeral(&self) -> bool {
        self.lock().header.settings.ephemeral
    }
}

impl ThreadState {
    /// Sends `{method, params}` to the thread's subscribers.
    pub fn publish(&mut self, method: &'static str, params: &impl Serialize) {
        self.subscribers.publish(&Notification::new(method, params));
    }

    /// The thread as the protocol shows it, with or without its turns.
    pub fn snapshot(&self, home: &str, with_turns: bool) -> Thread {
        let status = if self.running.is_some() {
            ThreadStatus::Active {
                active_flags: Vec::new(),
            }
        } else {
            ThreadStatus::Idle
        };
        let turns = if with_turns { &self.turns[..] } else { &[] };
        thread_view(&self.header, home, status, turns)
    }

    pub fn turn_mut(&mut self, id: &str) -> Option<&mut TurnRecord> {
        self.turns.iter_mut().find(|turn| turn.id == id)
    }

    /// Whether nothing keeps the thread in memory: no running turn, no open subscriber.
    pub fn is_idle(&self) -> bool {
        self.running.is_none() && self.subscribers.is_empty()
    }

    /// The request input replaying the thread up to now (TURNS §20.4): the developer
    /// instructions, then every turn in order — an ended one with `aborted` outputs for calls
    /// left unanswered, an interrupted one followed by the marker.
    pub fn replay_input(&self) -> Vec<Value> {
        let mut input = Vec::new();
        if let Some(developer) = &self.header.settings.developer_instructions {
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

/// A thread as the protocol shows it.
pub fn thread_view(
    header: &ThreadHeader,
    home: &str,
    status: ThreadStatus,
    turns: &[TurnRecord],
) -> Thread {
    Thread {
        id: header.id.clone(),
        preview: header.preview.clone(),
        model_provider: "openai".to_owned(),
        created_at: header.created_at_ms / 1000,
        updated_at: header.updated_at_ms / 1000,
        path: None,
        cwd: home.to_owned(),
        cli_version: env!("CARGO_PKG_VERSION").to_owned(),
        source: "vscode".to_owned(),
        git_info: None,
        name: header.name.clone(),
        ephemeral: header.settings.ephemeral,
        status,
        turns: turns.iter().map(|turn| turn.to_turn(true)).collect(),
    }
}

/// The preview a first user message gives its thread (TURNS §25.1).
pub fn preview_of(input: &[UserInput]) -> String {
    let text: Vec<&str> = input
        .iter()
        .filter_map(|part| match part {
            UserInput::Text { text, .. } => Some(text.as_str()),
            UserInput::Image { .. } => None,
        })
        .collect();
    text.join("\n").chars().take(PREVIEW_CHARS).collect()
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
