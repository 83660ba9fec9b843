//! The load driver shared by `benches/load.rs` and the CI smoke test: WebSocket connections that
//! keep a fixed number of requests in flight, a floor server to compare against, a fake backend for
//! refresh storms, and RSS readings.

#![allow(dead_code)]

pub mod options;
pub mod process;
pub mod relay;
pub mod stdio_bridge;
pub mod turns;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One load run.
#[derive(Clone, Debug)]
pub struct Load {
    pub url: String,
    pub token: Option<String>,
    pub connections: usize,
    pub in_flight: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub method: String,
    pub params: Value,
}

/// What a load run measured.
pub struct Report {
    /// Replies within the measurement window.
    pub completed: u64,
    /// Replies over the whole run, warm-up included.
    pub total: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
}

impl Report {
    pub fn requests_per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, percentile: f64) -> u64 {
        self.latency.value_at_quantile(percentile / 100.0)
    }
}

/// Opens a WebSocket with the bearer token (if any) and completes the handshake.
pub async fn connect(url: &str, token: Option<&str>) -> Socket {
    let mut request = url.into_client_request().expect("valid url");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .expect("websocket connects");
    socket
        .send(Message::Text(
            r#"{"id":0,"method":"initialize","params":{"clientInfo":{"name":"authbridge_load","version":"1"}}}"#.into(),
        ))
        .await
        .unwrap();
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let reply: Value = serde_json::from_str(&text).unwrap();
                if reply["id"] == json!(0) {
                    assert!(reply.get("result").is_some(), "initialize failed: {reply}");
                    break;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("handshake failed: {other:?}"),
        }
    }
    socket
        .send(Message::Text(r#"{"method":"initialized"}"#.into()))
        .await
        .unwrap();
    socket
}

#[derive(Deserialize)]
struct Reply {
    id: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

/// A histogram of latencies in microseconds, from 1 µs to one minute, at three significant figures.
/// Its bounds are fixed so that `saturating_record` clamps rather than silently losing values.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs `load`: every connection keeps `in_flight` requests outstanding; latencies are recorded
/// after the warm-up, for `duration`.
pub async fn run(load: &Load) -> Report {
    let mut sockets = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        sockets.push(connect(&load.url, load.token.as_deref()).await);
    }
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let stop_at = measure_from + load.duration;
    let params = load.params.to_string();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let method = load.method.clone();
            let params = params.clone();
            let in_flight = load.in_flight;
            tokio::spawn(drive(
                socket,
                method,
                params,
                in_flight,
                measure_from,
                stop_at,
            ))
        })
        .collect();
    let mut report = Report {
        completed: 0,
        total: 0,
        errors: 0,
        elapsed: load.duration,
        latency: latency_histogram(),
    };
    for task in tasks {
        let (completed, total, errors, latency) = task.await.unwrap();
        report.completed += completed;
        report.total += total;
        report.errors += errors;
        report.latency.add(latency).unwrap();
    }
    report
}

async fn drive(
    socket: Socket,
    method: String,
    params: String,
    in_flight: usize,
    measure_from: Instant,
    stop_at: Instant,
) -> (u64, u64, u64, Histogram<u64>) {
    let (mut sink, mut stream) = socket.split();
    let mut latency = latency_histogram();
    let (mut completed, mut total, mut errors) = (0u64, 0u64, 0u64);
    let mut sent_at: HashMap<u64, Instant> = HashMap::with_capacity(in_flight * 2);
    let mut next_id = 1u64;
    let frame = |id: u64| format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}");
    for _ in 0..in_flight {
        sent_at.insert(next_id, Instant::now());
        sink.send(Message::Text(frame(next_id).into()))
            .await
            .unwrap();
        next_id += 1;
    }
    while !sent_at.is_empty() {
        let Some(Ok(message)) = stream.next().await else {
            errors += sent_at.len() as u64;
            break;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(reply) = serde_json::from_str::<Reply>(&text) else {
            continue;
        };
        let Some(started) = reply.id.and_then(|id| sent_at.remove(&id)) else {
            continue;
        };
        total += 1;
        let now = Instant::now();
        if now >= measure_from && now < stop_at {
            if reply.error.is_some() {
                errors += 1;
            } else {
                completed += 1;
                latency.saturating_record(now.duration_since(started).as_micros() as u64);
            }
        }
        if now < stop_at {
            sent_at.insert(next_id, Instant::now());
            sink.send(Message::Text(frame(next_id).into()))
                .await
                .unwrap();
            next_id += 1;
        }
    }
    let _ = sink.close().await;
    (completed, total, errors, latency)
}

// ---- the floor: the smallest JSON-RPC responder on the same axum WebSocket stack ----

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
}

async fn floor_socket(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let AxumMessage::Text(text) = message else {
                continue;
            };
            let Ok(IdOnly { id: Some(id) }) = serde_json::from_str::<IdOnly<'_>>(text.as_str())
            else {
                continue;
            };
            let reply = format!(
                "{{\"id\":{},\"result\":{{\"account\":null,\"requiresOpenaiAuth\":true}}}}",
                id.get()
            );
            if socket.send(AxumMessage::Text(reply.into())).await.is_err() {
                break;
            }
        }
    })
}

/// Serves the floor on `listener` (with `TCP_NODELAY`, as authbridge) until the process ends.
pub async fn serve_floor(listener: tokio::net::TcpListener) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/", get(floor_socket));
    axum::serve(listener, app).await.unwrap();
}

// ---- refresh storms ----

/// A fake ChatGPT backend: `GET /api/codex/usage` answers 200 to `Bearer fresh*` tokens, else 401.
#[derive(Default)]
pub struct FakeBackend {
    pub calls: AtomicU64,
}

async fn usage(State(backend): State<Arc<FakeBackend>>, headers: HeaderMap) -> Response {
    backend.calls.fetch_add(1, Ordering::Relaxed);
    let fresh = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bearer fresh"));
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    if fresh {
        let body = json!({"plan_type": "pro", "rate_limit": {
            "primary_window": {"used_percent": 42, "limit_window_seconds": 3600, "reset_at": 1735689720},
            "secondary_window": {"used_percent": 5, "limit_window_seconds": 86400, "reset_at": 1735693200}}});
        (StatusCode::OK, json, body.to_string()).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            json,
            r#"{"error":{"message":"unauthorized"}}"#,
        )
            .into_response()
    }
}

/// Starts the fake backend on 127.0.0.1:0.
pub async fn start_backend() -> (SocketAddr, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/api/codex/usage", get(usage))
        .with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, backend)
}

/// An unsigned id token naming `org-bench`.
pub fn id_token() -> String {
    let encode =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.c2ln",
        encode(&json!({"alg": "none"})),
        encode(
            &json!({"email": "bench@example.com", "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "org-bench"}})
        )
    )
}

/// What one storm measured.
pub struct Storm {
    pub reads: usize,
    pub refresh_requests: u64,
    pub backend_calls: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

/// A connection that logs in with host-owned tokens and answers every refresh request with a
/// `fresh` access token after `answer_after`, counting them.
pub struct Owner {
    commands: tokio::sync::mpsc::UnboundedSender<(Value, tokio::sync::oneshot::Sender<Value>)>,
    pub refresh_requests: Arc<AtomicU64>,
}

impl Owner {
    pub async fn connect(url: &str, token: Option<&str>, answer_after: Duration) -> Self {
        let mut socket = connect(url, token).await;
        let refresh_requests = Arc::new(AtomicU64::new(0));
        let counter = refresh_requests.clone();
        let (commands, mut received) =
            tokio::sync::mpsc::unbounded_channel::<(Value, tokio::sync::oneshot::Sender<Value>)>();
        tokio::spawn(async move {
            let mut waiting: HashMap<String, tokio::sync::oneshot::Sender<Value>> = HashMap::new();
            loop {
                tokio::select! {
                    command = received.recv() => {
                        let Some((request, reply)) = command else { break };
                        waiting.insert(request["id"].to_string(), reply);
                        if socket.send(Message::Text(request.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                    message = socket.next() => {
                        let Some(Ok(Message::Text(text))) = message else { break };
                        let message: Value = serde_json::from_str(&text).unwrap();
                        if message["method"] == json!("account/chatgptAuthTokens/refresh") {
                            counter.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(answer_after).await;
                            let answer = json!({"id": message["id"], "result": {"idToken": id_token(), "accessToken": "fresh-token"}});
                            if socket.send(Message::Text(answer.to_string().into())).await.is_err() {
                                break;
                            }
                        } else if let Some(reply) = message.get("id").and_then(|id| waiting.remove(&id.to_string())) {
                            let _ = reply.send(message);
                        }
                    }
                }
            }
        });
        Self {
            commands,
            refresh_requests,
        }
    }

    pub async fn call(&self, id: &str, method: &str, params: Value) -> Value {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send((json!({"id": id, "method": method, "params": params}), reply))
            .expect("owner connection alive");
        answer.await.expect("owner connection answered")
    }

    /// Logs in with host-owned tokens whose access token is `access`.
    pub async fn login(&self, access: &str) {
        let reply = self
            .call(
                &format!("login-{access}"),
                "account/login/start",
                json!({"type": "chatgptAuthTokens", "idToken": id_token(), "accessToken": access}),
            )
            .await;
        assert_eq!(
            reply["result"],
            json!({"type": "chatgptAuthTokens"}),
            "{reply}"
        );
    }
}

/// `reads` concurrent `account/rateLimits/read` calls spread over connections of at most 100 each.
/// Before the storm the owner logs in with `access` (`stale…` → every read gets a 401 first).
pub async fn storm(
    url: &str,
    token: Option<&str>,
    owner: &Owner,
    backend: &FakeBackend,
    access: &str,
    reads: usize,
) -> Storm {
    owner.login(access).await;
    let refreshes_before = owner.refresh_requests.load(Ordering::Relaxed);
    let calls_before = backend.calls.load(Ordering::Relaxed);
    let mut sockets = Vec::new();
    for _ in 0..reads.div_ceil(100) {
        sockets.push(connect(url, token).await);
    }
    let per_socket = reads.div_ceil(sockets.len());
    let mut tasks = Vec::new();
    let mut remaining = reads;
    for socket in sockets {
        let count = per_socket.min(remaining);
        remaining -= count;
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let mut sent_at = HashMap::new();
            for id in 1..=count as u64 {
                sent_at.insert(id, Instant::now());
                sink.feed(Message::Text(
                    format!("{{\"id\":{id},\"method\":\"account/rateLimits/read\"}}").into(),
                ))
                .await
                .unwrap();
            }
            sink.flush().await.unwrap();
            let mut latency = latency_histogram();
            let mut errors = 0u64;
            while !sent_at.is_empty() {
                let Some(Ok(Message::Text(text))) = stream.next().await else {
                    errors += sent_at.len() as u64;
                    break;
                };
                let Ok(reply) = serde_json::from_str::<Reply>(&text) else {
                    continue;
                };
                let Some(started) = reply.id.and_then(|id| sent_at.remove(&id)) else {
                    continue;
                };
                if reply.error.is_some() {
                    errors += 1;
                } else {
                    latency.saturating_record(started.elapsed().as_micros() as u64);
                }
            }
            (errors, latency)
        }));
    }
    let mut result = Storm {
        reads,
        refresh_requests: 0,
        backend_calls: 0,
        errors: 0,
        latency: latency_histogram(),
    };
    for task in tasks {
        let (errors, latency) = task.await.unwrap();
        result.errors += errors;
        result.latency.add(latency).unwrap();
    }
    result.refresh_requests = owner.refresh_requests.load(Ordering::Relaxed) - refreshes_before;
    result.backend_calls = backend.calls.load(Ordering::Relaxed) - calls_before;
    result
}

/// CPU time (user + system) a process has used, in seconds (Linux; clock-tick resolution).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident set size of a process, in bytes (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
