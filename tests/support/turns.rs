//! The turn tests' fixture (TURNS §29): a fake Responses backend, a server pointed at it, a
//! logged-in client, and helpers to start threads and turns and read what a turn streamed.

use std::time::Duration;

use authbridge::dev_backend::{FakeBackend, Recorded, Reply};
use serde_json::{Value, json};

use super::{Client, TestServer};

pub const REFRESH: &str = "account/chatgptAuthTokens/refresh";
pub const MARKER: &str = "<turn_aborted>\nThe user interrupted the previous turn on purpose. Anything it was doing was stopped; tool calls in flight may have partially run.\n</turn_aborted>";

/// TURNS §29's fixture: the fake backend, a server pointed at it, and a client logged in with
/// host-owned tokens (bearer `A`, workspace `acct-1`).
pub struct Fixture {
    pub backend: FakeBackend,
    pub server: TestServer,
    pub client: Client,
    extra: Vec<String>,
}

impl Fixture {
    pub async fn start(extra: &[&str]) -> Self {
        let mut fixture = Self::without_login(extra).await;
        fixture
            .client
            .login_external("me@example.com", "acct-1", "A")
            .await;
        fixture.client.notification("account/login/completed").await;
        fixture.client.notification("account/updated").await;
        fixture
    }

    pub async fn without_login(extra: &[&str]) -> Self {
        let backend = FakeBackend::start().await.unwrap();
        let all = overrides(&backend, extra);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let server = TestServer::start(&all).await;
        let client = server.client().await;
        Self {
            backend,
            server,
            client,
            extra: extra.iter().map(|item| (*item).to_owned()).collect(),
        }
    }

    /// Stops the server gracefully, starts it again on the same home and logs in again
    /// (host-owned tokens live in memory only).
    pub async fn restart(mut self) -> Self {
        let all = overrides(&self.backend, &[]);
        let mut all: Vec<&str> = all.iter().map(String::as_str).collect();
        all.extend(self.extra.iter().map(String::as_str));
        drop(self.client);
        self.server = self.server.restart(&all).await;
        self.client = self.server.client().await;
        self.client
            .login_external("me@example.com", "acct-1", "A")
            .await;
        self.client.notification("account/updated").await;
        self
    }

    /// `thread/start {params}`; returns the thread id (after `thread/started`).
    pub async fn thread(&mut self, params: Value) -> String {
        start_thread(&mut self.client, params).await
    }

    /// `turn/start` with one text input; returns the turn id from the reply.
    pub async fn turn(&mut self, thread: &str, text: &str) -> String {
        start_turn(&mut self.client, thread, text).await
    }

    /// Everything up to and including the turn's `turn/completed`.
    pub async fn completed(&mut self) -> Vec<Value> {
        until_completed(&mut self.client).await
    }

    /// A turn still running: scripts `deltas` deltas 100 ms apart, starts the turn and waits
    /// for its first delta. Returns the turn id.
    pub async fn running_turn(&mut self, thread: &str, deltas: usize) -> String {
        self.backend.script([Reply::Slow {
            deltas,
            gap: Duration::from_millis(100),
        }]);
        let turn = self.turn(thread, "slow").await;
        until_delta(&mut self.client).await;
        turn
    }
}

pub fn overrides(backend: &FakeBackend, extra: &[&str]) -> Vec<String> {
    let mut all = backend.overrides();
    all.push("model.retry_base_delay_ms=1".into());
    all.extend(extra.iter().map(|item| (*item).to_owned()));
    all
}

pub async fn start_thread(client: &mut Client, params: Value) -> String {
    let result = client.call_result("thread/start", params).await;
    let id = result["thread"]["id"].as_str().unwrap().to_owned();
    let started = client.notification("thread/started").await;
    assert_eq!(started["thread"], result["thread"]);
    id
}

/// `turn/start`'s params for one text input.
pub fn text_turn(thread: &str, text: &str) -> Value {
    json!({"threadId": thread, "input": [{"type": "text", "text": text, "text_elements": []}]})
}

pub async fn start_turn(client: &mut Client, thread: &str, text: &str) -> String {
    let result = client
        .call_result("turn/start", text_turn(thread, text))
        .await;
    assert_eq!(result["turn"]["status"], "inProgress");
    result["turn"]["id"].as_str().unwrap().to_owned()
}

/// `thread/read {includeTurns: true}`: the thread's turns.
pub async fn read_turns(client: &mut Client, thread: &str) -> Value {
    let read = client
        .call_result(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    read["thread"]["turns"].clone()
}

pub async fn until_completed(client: &mut Client) -> Vec<Value> {
    client
        .until("turn/completed", |message| {
            message["method"] == "turn/completed"
        })
        .await
}

/// Everything up to and including the next text delta.
pub async fn until_delta(client: &mut Client) -> Vec<Value> {
    client
        .until("a delta", |m| m["method"] == "item/agentMessage/delta")
        .await
}

pub fn methods(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message["method"].as_str().unwrap_or("<reply>"))
        .collect()
}

pub fn last_turn(messages: &[Value]) -> &Value {
    &messages.last().unwrap()["params"]["turn"]
}

pub fn of<'a>(messages: &'a [Value], method: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|message| message["method"] == method)
        .map(|message| &message["params"])
        .collect()
}

pub fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

pub fn assistant(text: &str) -> Value {
    json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
}

pub fn reasoning(n: usize) -> Value {
    json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "**Thinking** about it"}], "content": null, "encrypted_content": format!("ENC-{n}")})
}

pub fn input(request: &Recorded) -> Vec<Value> {
    request.body["input"].as_array().unwrap().clone()
}
