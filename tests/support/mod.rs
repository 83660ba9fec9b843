//! Test support: servers on loopback, a WebSocket client that waits for messages with deadlines,
//! JWT builders and a child-process runner. Everything talks over real sockets.

#![allow(dead_code)]

mod conformance;
pub mod turns;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const WAIT: Duration = Duration::from_secs(10);

/// `jwt(c)`: unpadded base64url of `{"alg":"none","typ":"JWT"}`, `c`, `"signature"` joined by `.`.
pub fn jwt(claims: Value) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!(
        "{}.{}.{}",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        encode(&claims),
        URL_SAFE_NO_PAD.encode("signature")
    )
}

/// `idt(e,p,a)`: an id token with email, plan and workspace claims.
pub fn idt(email: &str, plan: &str, account: &str) -> String {
    jwt(json!({
        "email": email,
        "https://api.openai.com/auth": {"chatgpt_plan_type": plan, "chatgpt_account_id": account}
    }))
}

/// `U`: the usage endpoint body of SPEC §13.
pub fn usage_body() -> Value {
    json!({"plan_type": "pro", "rate_limit": {
        "primary_window": {"used_percent": 42, "limit_window_seconds": 3600, "reset_at": 1735689720},
        "secondary_window": {"used_percent": 5, "limit_window_seconds": 86400, "reset_at": 1735693200}}})
}

/// `S`: the snapshot `U` maps to.
pub fn usage_snapshot() -> Value {
    json!({"primary": {"usedPercent": 42, "windowDurationMins": 60, "resetsAt": 1735689720},
           "secondary": {"usedPercent": 5, "windowDurationMins": 1440, "resetsAt": 1735693200},
           "credits": null, "planType": "pro"})
}

/// A server started in this process on `ws://127.0.0.1:0` with a fresh home.
pub struct TestServer {
    pub home: tempfile::TempDir,
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub token: Option<String>,
    server: Option<authbridge::RunningServer>,
}

impl TestServer {
    pub async fn start(overrides: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), overrides).await
    }

    pub async fn start_in(home: tempfile::TempDir, overrides: &[&str]) -> Self {
        let mut all = vec!["server.listen=\"ws://127.0.0.1:0\"", "auth.login_port=0"];
        all.extend_from_slice(overrides);
        let config = authbridge::Config::from_overrides(home.path(), &all).expect("config");
        let server = authbridge::RunningServer::start(config)
            .await
            .expect("server starts");
        Self {
            url: server.url().unwrap(),
            addr: server.local_addr().unwrap(),
            token: server.capability_token().map(str::to_owned),
            home,
            server: Some(server),
        }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn auth_json(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A connected, not yet initialized client.
    pub async fn connect(&self) -> Client {
        Client::connect(&self.url, self.token.as_deref()).await
    }

    /// A connected client that completed the SPEC §13 handshake.
    pub async fn client(&self) -> Client {
        let mut client = self.connect().await;
        client.initialize().await;
        client
    }

    /// Graceful shutdown; waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            timeout(WAIT, server.wait())
                .await
                .expect("server stops")
                .unwrap();
        }
    }

    /// Stops gracefully and starts again on the same home with `overrides`.
    pub async fn restart(mut self, overrides: &[&str]) -> Self {
        let home = std::mem::replace(&mut self.home, tempfile::tempdir().unwrap());
        self.stop().await;
        Self::start_in(home, overrides).await
    }

    pub fn running(&self) -> &authbridge::RunningServer {
        self.server.as_ref().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown();
        }
    }
}

/// Something the client received.
#[derive(Debug, Clone)]
pub enum Event {
    Text(String),
    Pong,
    Close(Option<(u16, String)>),
    /// The stream ended without a close frame (or with an error).
    Ended(String),
}

/// Where a client's messages go: a WebSocket, or a stdio server's stdin (one line each).
enum Sink {
    Ws(SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>),
    /// `None` once closed.
    Stdio(Option<tokio::process::ChildStdin>),
}

/// A WebSocket (or stdio) client with a receive buffer, so tests can wait for one message while
/// others pile up.
pub struct Client {
    sink: Sink,
    events: mpsc::UnboundedReceiver<Event>,
    buffer: VecDeque<Event>,
    next_id: i64,
    reader: tokio::task::JoinHandle<()>,
    /// Methods of the requests sent, by id (JSON text), to check replies against their schemas.
    sent: HashMap<String, String>,
    /// Messages some wait matched.
    pub received: Vec<Value>,
    /// Every message that arrived, in arrival order (whether a test waited for it or not).
    arrived: Vec<Value>,
}

impl Drop for Client {
    /// Dropping a client closes its socket (both halves go away).
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    pub async fn connect(url: &str, token: Option<&str>) -> Self {
        let mut request = url.into_client_request().unwrap();
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        let (socket, _) = timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("websocket connects in time")
            .expect("websocket connects");
        Self::from_socket(socket)
    }

    pub fn from_socket(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let (sink, stream) = socket.split();
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_events(stream, tx));
        Self::with(Sink::Ws(sink), events, reader)
    }

    /// A client speaking to a `--listen stdio://` child over its pipes.
    pub fn over_stdio(child: &mut Child) -> Self {
        let stdin = child.process.stdin.take().expect("stdin piped");
        let stdout = child.process.stdout.take().expect("stdout piped");
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(Event::Text(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Ended("stdout closed".into()));
        });
        Self::with(Sink::Stdio(Some(stdin)), events, reader)
    }

    fn with(
        sink: Sink,
        events: mpsc::UnboundedReceiver<Event>,
        reader: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            sink,
            events,
            buffer: VecDeque::new(),
            next_id: 100,
            reader,
            sent: HashMap::new(),
            received: Vec::new(),
            arrived: Vec::new(),
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        self.remember_requests(&text);
        match &mut self.sink {
            Sink::Ws(sink) => sink.send(Message::Text(text.into())).await.expect("send"),
            Sink::Stdio(stdin) => {
                use tokio::io::AsyncWriteExt;
                let stdin = stdin.as_mut().expect("stdin is open");
                stdin.write_all(text.as_bytes()).await.expect("write stdin");
                stdin.write_all(b"\n").await.expect("write stdin");
            }
        }
    }

    /// Closes the client's sending side (stdio: EOF on the server's stdin).
    pub async fn close_input(&mut self) {
        match &mut self.sink {
            Sink::Ws(sink) => {
                let _ = sink.close().await;
            }
            Sink::Stdio(stdin) => drop(stdin.take()),
        }
    }

    fn remember_requests(&mut self, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let entries = match value {
            Value::Array(entries) => entries,
            single => vec![single],
        };
        for entry in entries {
            if let (Some(id), Some(method)) =
                (entry.get("id"), entry.get("method").and_then(Value::as_str))
            {
                self.sent.insert(id.to_string(), method.to_owned());
            }
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_raw(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        match &mut self.sink {
            Sink::Ws(sink) => sink.send(message).await,
            Sink::Stdio(_) => panic!("raw frames need a WebSocket client"),
        }
    }

    /// Sends a request with a fresh integer id; returns the id.
    pub async fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(message).await;
        id
    }

    /// Sends a request and waits for its reply (other messages stay buffered).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    /// Sends a request and returns its result; panics with the reply if it is an error.
    pub async fn call_result(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.result(id).await
    }

    /// Logs in with host-owned tokens (`idt(email, "pro", workspace)`, bearer `access`).
    pub async fn login_external(&mut self, email: &str, workspace: &str, access: &str) {
        let result = self
            .call_result(
                "account/login/start",
                json!({"type": "chatgptAuthTokens", "idToken": idt(email, "pro", workspace), "accessToken": access}),
            )
            .await;
        assert_eq!(result, json!({"type": "chatgptAuthTokens"}));
    }

    /// The SPEC §13 handshake.
    pub async fn initialize(&mut self) -> Value {
        let reply = self
            .call(
                "initialize",
                json!({"clientInfo": {"name": "codex-app-server-tests", "title": null, "version": "0.1.0"},
                       "capabilities": {"experimentalApi": true}}),
            )
            .await;
        assert!(reply.get("result").is_some(), "initialize failed: {reply}");
        self.send(json!({"method": "initialized"})).await;
        reply
    }

    async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        if let Some(event) = self.buffer.pop_front() {
            return Some(event);
        }
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(event)) => {
                if let Event::Text(text) = &event
                    && let Ok(message) = serde_json::from_str::<Value>(text)
                {
                    conformance::check_server_message(&message, &self.sent);
                    self.arrived.push(message);
                }
                Some(event)
            }
            Ok(None) => Some(Event::Ended("reader stopped".into())),
            Err(_) => None,
        }
    }

    /// Waits for the first message matching `want`; others are kept for later waits.
    pub async fn wait_for(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        self.try_wait_for(WAIT, &want).await.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; received so far: {:#?}",
                self.received
            )
        })
    }

    pub async fn try_wait_for(
        &mut self,
        limit: Duration,
        want: &impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + limit;
        let mut skipped = VecDeque::new();
        let found = loop {
            let Some(event) = self.next_event(deadline).await else {
                break None;
            };
            match &event {
                Event::Text(text) => {
                    let value: Value = serde_json::from_str(text)
                        .unwrap_or_else(|err| panic!("server sent invalid JSON {text:?}: {err}"));
                    if want(&value) {
                        self.received.push(value.clone());
                        break Some(value);
                    }
                    skipped.push_back(event);
                }
                Event::Pong => skipped.push_back(event),
                _ => {
                    skipped.push_back(event);
                    if self.buffer.is_empty() && self.events.is_empty() {
                        // Nothing more can arrive after the end of the stream.
                        break None;
                    }
                }
            }
        };
        skipped.extend(self.buffer.drain(..));
        self.buffer = skipped;
        found
    }

    /// Every message from now (buffered ones first), in arrival order, up to and including the
    /// first matching `want`.
    pub async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut messages = Vec::new();
        loop {
            match self.next_event(deadline).await {
                Some(Event::Text(text)) => {
                    let value: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|err| panic!("server sent invalid JSON {text:?}: {err}"));
                    self.received.push(value.clone());
                    let done = want(&value);
                    messages.push(value);
                    if done {
                        return messages;
                    }
                }
                Some(Event::Pong) => continue,
                Some(other) => panic!("waiting for {what}, got {other:?} after {messages:#?}"),
                None => panic!("timed out waiting for {what}; received meanwhile: {messages:#?}"),
            }
        }
    }

    /// The raw text of the next text frame (in arrival order).
    pub async fn next_text(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_event(deadline).await {
                Some(Event::Text(text)) => return text,
                Some(Event::Pong) => continue,
                Some(other) => panic!("expected a text frame, got {other:?}"),
                None => panic!("timed out waiting for a text frame"),
            }
        }
    }

    /// The next message, parsed.
    pub async fn next_json(&mut self) -> Value {
        let text = self.next_text().await;
        serde_json::from_str(&text).unwrap()
    }

    pub async fn response(&mut self, id: i64) -> Value {
        self.wait_for(&format!("the reply to {id}"), |v| {
            v.get("id") == Some(&json!(id)) && v.get("method").is_none()
        })
        .await
    }

    pub async fn result(&mut self, id: i64) -> Value {
        let reply = self.response(id).await;
        reply
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("expected a result, got {reply}"))
    }

    pub async fn notification(&mut self, method: &str) -> Value {
        self.wait_for(method, |v| {
            v.get("method") == Some(&json!(method)) && v.get("id").is_none()
        })
        .await["params"]
            .clone()
    }

    pub async fn server_request(&mut self, method: &str) -> Value {
        self.wait_for(&format!("server request {method}"), |v| {
            v.get("method") == Some(&json!(method)) && v.get("id").is_some()
        })
        .await
    }

    /// Asserts no message matching `want` arrives within `limit`.
    pub async fn assert_none(
        &mut self,
        limit: Duration,
        what: &str,
        want: impl Fn(&Value) -> bool,
    ) {
        if let Some(found) = self.try_wait_for(limit, &want).await {
            panic!("unexpected {what}: {found}");
        }
    }

    /// Asserts no message with `method` (notification or server request) arrives within `limit`.
    pub async fn assert_no_method(&mut self, limit: Duration, method: &str) {
        self.assert_none(limit, method, |v| v["method"] == json!(method))
            .await;
    }

    /// Waits for a pong.
    pub async fn pong(&mut self) {
        let deadline = Instant::now() + WAIT;
        let mut skipped = VecDeque::new();
        loop {
            match self.next_event(deadline).await {
                Some(Event::Pong) => break,
                Some(other) => skipped.push_back(other),
                None => panic!("no pong"),
            }
        }
        skipped.extend(self.buffer.drain(..));
        self.buffer = skipped;
    }

    /// Every message received so far, waited for or not. Call after [`Client::closed`] (or a
    /// last wait) to see the whole conversation.
    pub fn all_received(&self) -> &[Value] {
        &self.arrived
    }

    /// Closes the connection from this side and waits for the server to acknowledge it: by then
    /// the server has dropped the connection (its pending requests failed, it left every list).
    pub async fn close(&mut self) {
        match &mut self.sink {
            Sink::Ws(sink) => {
                let _ = sink.send(Message::Close(None)).await;
            }
            Sink::Stdio(stdin) => drop(stdin.take()),
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_event(deadline).await {
                Some(Event::Close(_) | Event::Ended(_)) => return,
                Some(_) => continue,
                None => panic!("the server did not acknowledge the close"),
            }
        }
    }

    /// Waits for the server to close the connection; returns the close frame's code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_event(deadline).await {
                Some(Event::Close(frame)) => return frame,
                Some(Event::Ended(_)) => return None,
                Some(Event::Text(_) | Event::Pong) => continue,
                None => panic!("connection was not closed"),
            }
        }
    }
}

async fn read_events(
    mut stream: SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    tx: mpsc::UnboundedSender<Event>,
) {
    while let Some(message) = stream.next().await {
        let event = match message {
            Ok(Message::Text(text)) => Event::Text(text.to_string()),
            Ok(Message::Pong(_)) => Event::Pong,
            Ok(Message::Close(frame)) => Event::Close(
                frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string())),
            ),
            Ok(_) => continue,
            Err(err) => Event::Ended(err.to_string()),
        };
        let closed = matches!(event, Event::Close(_));
        let ended = matches!(event, Event::Ended(_));
        if tx.send(event).is_err() || ended {
            return;
        }
        if closed {
            // Like a real client: keep reading, so the close reply goes out and the server's end
            // of the stream is seen.
            while let Some(Ok(_)) = stream.next().await {}
            return;
        }
    }
    let _ = tx.send(Event::Ended("stream ended".into()));
}

/// Counts requests a wiremock backend answered, so tests can wait until N arrived.
#[derive(Clone)]
pub struct Arrivals {
    count: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

impl Arrivals {
    pub fn new() -> Self {
        Self {
            count: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// A responder that answers `template` and counts the request.
    pub fn answering(&self, template: ResponseTemplate) -> Counted {
        Counted {
            template,
            arrivals: self.clone(),
            before: None,
        }
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) {
        let mut count = self.count.subscribe();
        timeout(WAIT, count.wait_for(|count| *count >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} backend requests arrived"))
            .unwrap();
    }
}

/// A counting responder; optionally runs a step (e.g. rewrite a file) before it answers.
pub struct Counted {
    template: ResponseTemplate,
    arrivals: Arrivals,
    before: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Counted {
    /// Runs `step` when a request arrives, before the answer goes out.
    pub fn after_arrival(mut self, step: impl Fn() + Send + Sync + 'static) -> Self {
        self.before = Some(Box::new(step));
        self
    }
}

impl wiremock::Respond for Counted {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        if let Some(step) = &self.before {
            step();
        }
        self.arrivals.count.send_modify(|count| *count += 1);
        self.template.clone()
    }
}

/// Retries `check` until it holds (each try is a real round trip, no sleep); panics after `WAIT`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
    }
}

/// The `authbridge` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_authbridge")
}

/// A child `authbridge serve` process.
pub struct Child {
    pub process: tokio::process::Child,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    pub url: Option<String>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Child {
    /// Starts `authbridge serve <args>` and, for WebSocket listeners, waits for the listening line.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = tokio::process::Command::new(binary());
        command.arg("serve").args(args);
        Self::spawn_command(command, args, env).await
    }

    /// Starts `authbridge <args>` as given (any subcommand) without waiting for anything.
    pub async fn spawn_exactly(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = tokio::process::Command::new(binary());
        command.args(args);
        Self::spawn_command(command, &["stdio://"], env).await
    }

    /// Like [`Child::spawn`], with the process's open-file limit lowered to `limit`.
    pub async fn spawn_with_fd_limit(limit: u32, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = tokio::process::Command::new("bash");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" serve \"$@\""))
            .arg(binary())
            .args(args);
        Self::spawn_command(command, args, env).await
    }

    async fn spawn_command(
        mut command: tokio::process::Command,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = command.spawn().expect("binary starts");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (line_tx, mut line_rx) = mpsc::unbounded_channel();
        let pipe = process.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                let _ = line_tx.send(line);
            }
        });
        let listens_on_ws = !args.iter().any(|arg| arg.starts_with("stdio"));
        let mut url = None;
        if listens_on_ws {
            let deadline = Instant::now() + WAIT;
            while let Ok(Some(line)) = tokio::time::timeout_at(deadline, line_rx.recv()).await {
                // `--log-format json` prints the line as a JSON event.
                let line = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|event| event["fields"]["message"].as_str().map(str::to_owned))
                    .unwrap_or(line);
                if let Some(rest) = line.strip_prefix("authbridge listening on ") {
                    // Every interface bound: connect where local clients are told to.
                    url = match rest.split_once("(local clients: ") {
                        Some((_, local)) => local.split(';').next(),
                        None => rest.split_whitespace().next(),
                    }
                    .map(str::to_owned);
                    break;
                }
            }
        }
        Self {
            process,
            stderr,
            url,
            lines: line_rx,
        }
    }

    /// Waits for a stderr line containing `text` (lines already seen do not count).
    pub async fn stderr_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(text) => return line,
                Ok(Some(_)) => continue,
                Ok(None) => panic!(
                    "stderr closed before a line with {text:?}:\n{}",
                    self.stderr()
                ),
                Err(_) => panic!("no stderr line with {text:?}:\n{}", self.stderr()),
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit code, then for the end of stderr (so [`Child::stderr`] holds all of it).
    pub async fn exit_code(&mut self) -> Option<i32> {
        let status = timeout(WAIT, self.process.wait())
            .await
            .expect("process exits")
            .unwrap();
        timeout(WAIT, async { while self.lines.recv().await.is_some() {} })
            .await
            .expect("stderr closes once the process has exited");
        status.code()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(pid) = self.process.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

/// Reads `server.json` from a home.
pub fn server_json(home: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(home.join("server.json")).unwrap()).unwrap()
}

/// Writes auth.json content into a home.
pub fn write_auth(home: &Path, value: &Value) {
    std::fs::write(
        home.join("auth.json"),
        serde_json::to_string_pretty(value).unwrap(),
    )
    .unwrap();
}

/// The backend's answer to a bearer it does not accept.
pub fn unauthorized() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "unauthorized"}}))
}

/// A backend whose usage endpoint answers 401 to every bearer except the listed good ones.
pub async fn backend_accepting(good: &[&str]) -> MockServer {
    backend_accepting_counted(good).await.0
}

/// [`backend_accepting`], counting the 401s it answered.
pub async fn backend_accepting_counted(good: &[&str]) -> (MockServer, Arrivals) {
    let unauthorized_answers = Arrivals::new();
    let backend = MockServer::start().await;
    for token in good {
        Mock::given(method("GET"))
            .and(path("/api/codex/usage"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(usage_body()))
            .with_priority(1)
            .mount(&backend)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api/codex/usage"))
        .respond_with(unauthorized_answers.answering(unauthorized()))
        .with_priority(10)
        .mount(&backend)
        .await;
    (backend, unauthorized_answers)
}

/// A managed auth.json for `idt(email, plan, workspace)`.
pub fn managed_auth(
    email: &str,
    plan: &str,
    workspace: &str,
    access: &str,
    refresh: &str,
    last_refresh: &str,
) -> Value {
    json!({
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": idt(email, plan, workspace), "access_token": access,
                   "refresh_token": refresh, "account_id": workspace},
        "last_refresh": last_refresh
    })
}

/// Now, RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// RFC 3339 time `days` ago.
pub fn days_ago(days: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::days(days))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// True if `program --version` runs.
pub fn command_runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
