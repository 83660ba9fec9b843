//! A scripted fake of the ChatGPT and OpenAI backends on loopback: the Responses endpoints on
//! both routes (streamed), the usage endpoint, and a record of every request. The test suite
//! drives it with scripted replies; `authbridge dev-backend` serves it for building a UI without
//! an account or a network (a message containing `/tool`, `/401` or `/slow` asks for a tool
//! call, one unauthorized answer — the retry after a token refresh succeeds — or a slow stream).

mod connections;
mod script;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use connections::CountingListener;
use script::{BodyEnd, Rendered, rate_limit_headers, render};
pub use script::{Reply, STAMP_DIGITS};

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body (`null` if none or not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The running fake backend.
#[derive(Clone)]
pub struct FakeBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    /// What answers once the script is used up (`None`: pick by the last user message).
    fallback: Mutex<Option<Reply>>,
    /// Bearers that pass; empty means any.
    accepted: Mutex<Vec<String>>,
    /// Every model request, in order.
    requests: Mutex<Vec<Recorded>>,
    request_count: watch::Sender<usize>,
    /// Streams whose body the client dropped before it ended.
    closed_early: watch::Sender<usize>,
    /// TCP connections open to the fake now.
    open_connections: watch::Sender<usize>,
    responses: AtomicUsize,
    gap: Duration,
    /// Opened once per paused stream that may go on.
    gate: tokio::sync::Semaphore,
    /// Bodies already answered 401 for `/401` (their retry succeeds).
    refused_once: Mutex<std::collections::HashSet<u64>>,
}

impl FakeBackend {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().expect("a socket address"),
            Duration::from_secs(1),
        )
        .await
    }

    /// Starts on `addr`; `slow_gap` separates the deltas of `/slow` answers.
    pub async fn start_on(addr: SocketAddr, slow_gap: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::default(),
            fallback: Mutex::new(Some(Reply::Ok)),
            accepted: Mutex::default(),
            requests: Mutex::default(),
            request_count: watch::channel(0).0,
            closed_early: watch::channel(0).0,
            open_connections: watch::channel(0).0,
            responses: AtomicUsize::new(0),
            gap: slow_gap,
            gate: tokio::sync::Semaphore::new(0),
            refused_once: Mutex::default(),
        });
        let app = Router::new()
            .route("/backend-api/codex/responses", post(responses))
            .route("/v1/responses", post(responses))
            .route("/backend-api/wham/usage", get(usage))
            .route("/api/codex/usage", get(usage))
            .route("/gate/open", post(open_gate))
            .with_state(shared.clone());
        let listener = CountingListener {
            listener,
            open: shared.open_connections.clone(),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `-c` overrides that point a server at this fake (TURNS §29's fixture).
    pub fn overrides(&self) -> Vec<String> {
        vec![
            format!("chatgpt_base_url=\"{}/backend-api/\"", self.url()),
            format!("model.openai_base_url=\"{}/v1\"", self.url()),
        ]
    }

    /// Queues replies for the next model requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .script
            .lock()
            .expect("script lock")
            .extend(replies);
    }

    /// What answers once the script is used up; `None` picks by the last user message.
    pub fn set_fallback(&self, reply: Option<Reply>) {
        *self.shared.fallback.lock().expect("fallback lock") = reply;
    }

    /// Only these bearers pass; others get 401 (before the script is consulted).
    pub fn accept_bearers(&self, bearers: &[&str]) {
        *self.shared.accepted.lock().expect("accepted lock") =
            bearers.iter().map(|bearer| (*bearer).to_owned()).collect();
    }

    /// Every model request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Lets one paused stream ([`Reply::Paused`]) go on.
    pub fn open_gate(&self) {
        self.shared.gate.add_permits(1);
    }

    /// Waits until at least `n` model requests arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.shared.request_count.subscribe();
        let _ = count.wait_for(|count| *count >= n).await;
    }

    /// How many streams the client dropped before they ended, so far.
    pub fn closed_streams(&self) -> usize {
        *self.shared.closed_early.borrow()
    }

    /// Waits until exactly `n` TCP connections are open to the fake.
    pub async fn wait_for_open_connections(&self, n: usize) {
        let mut open = self.shared.open_connections.subscribe();
        let _ = open.wait_for(|open| *open == n).await;
    }

    /// Waits until at least `n` streams were dropped by the client before they ended.
    pub async fn wait_for_closed_streams(&self, n: usize) {
        let mut count = self.shared.closed_early.subscribe();
        let _ = count.wait_for(|count| *count >= n).await;
    }
}

async fn open_gate(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.gate.add_permits(1);
    StatusCode::NO_CONTENT
}

async fn usage(State(_shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"plan_type": "pro", "rate_limit": {
            "primary_window": {"used_percent": 12.5, "limit_window_seconds": 18000, "reset_at": 1764580000},
            "secondary_window": {"used_percent": 40, "limit_window_seconds": 604800, "reset_at": 1765000000}}})
        .to_string(),
    )
        .into_response()
}

async fn responses(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streaming = body["stream"] == true;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let reply = {
        let accepted = shared.accepted.lock().expect("accepted lock");
        if !accepted.is_empty() && !bearer.as_ref().is_some_and(|b| accepted.contains(b)) {
            Reply::unauthorized()
        } else {
            drop(accepted);
            next_reply(&shared, &body)
        }
    };
    let n = shared.responses.fetch_add(1, Ordering::AcqRel) + 1;
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(Recorded {
            path: uri.path().to_owned(),
            headers,
            body,
        });
    shared.request_count.send_modify(|count| *count += 1);
    if !streaming {
        // The ChatGPT route only streams; the OpenAI route answers with the final object.
        let (status, text) = if uri.path().starts_with("/backend-api/") {
            (
                400,
                json!({"detail": "Stream must be set to true"}).to_string(),
            )
        } else {
            script::final_response(render(&reply, n))
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, [(header::CONTENT_TYPE, "application/json")], text).into_response();
    }
    respond(render(&reply, n), shared)
}

/// The scripted reply, else the fallback, else one chosen by the last user message.
fn next_reply(shared: &Shared, body: &Value) -> Reply {
    if let Some(reply) = shared.script.lock().expect("script lock").pop_front() {
        return reply;
    }
    if let Some(reply) = shared.fallback.lock().expect("fallback lock").clone() {
        return reply;
    }
    let last = last_user_text(body);
    if last.contains("/401") && first_time(shared, body) {
        Reply::unauthorized()
    } else if last.contains("/slow") {
        Reply::Slow {
            deltas: 20,
            gap: shared.gap,
        }
    } else if last.contains("/tool") && !answered_a_tool(body) {
        let tool = body["tools"][0]["name"]
            .as_str()
            .unwrap_or("get_time")
            .to_owned();
        Reply::FunctionCalls(vec![("call_1".into(), tool, "{}".into())])
    } else {
        Reply::Ok
    }
}

/// Whether this body was never answered with `/401`'s 401 before (its retry after a token
/// refresh is identical and succeeds).
fn first_time(shared: &Shared, body: &Value) -> bool {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut hasher);
    shared
        .refused_once
        .lock()
        .expect("refused lock")
        .insert(hasher.finish())
}

fn last_user_text(body: &Value) -> String {
    body["input"]
        .as_array()
        .and_then(|input| input.iter().rev().find(|item| item["role"] == "user"))
        .and_then(|item| item["content"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn answered_a_tool(body: &Value) -> bool {
    body["input"]
        .as_array()
        .and_then(|input| input.last())
        .is_some_and(|item| item["type"] == "function_call_output")
}

fn respond(rendered: Rendered, shared: Arc<Shared>) -> Response {
    let mut response = match rendered.body {
        script::Body::Text(text) => (
            StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        script::Body::Events { events, end } => {
            let stream = EventStream::new(events, end, shared);
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/event-stream"),
            );
            response
        }
    };
    if rendered.rate_limit_headers {
        for (name, value) in rate_limit_headers() {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// An SSE body that sends its events with their delays, and counts itself closed early if it is
/// dropped before the end.
struct EventStream {
    inner: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
    finished: bool,
    shared: Arc<Shared>,
}

impl EventStream {
    fn new(events: script::Events, end: BodyEnd, shared: Arc<Shared>) -> Self {
        let stream = async_stream(events, end, shared.clone());
        Self {
            inner: Box::pin(stream),
            finished: false,
            shared,
        }
    }
}

fn async_stream(
    events: script::Events,
    end: BodyEnd,
    shared: Arc<Shared>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold((events, end, false), move |(mut events, end, done)| {
        let shared = shared.clone();
        async move {
            if done {
                return None;
            }
            match events.next() {
                Some(mut event) => {
                    if event.gated
                        && let Ok(permit) = shared.gate.acquire().await
                    {
                        permit.forget();
                    }
                    if !event.delay.is_zero() {
                        tokio::time::sleep(event.delay).await;
                    }
                    if event.stamped {
                        let len = event.data["delta"].as_str().map_or(0, str::len);
                        event.data["delta"] = Value::String(script::stamp(len));
                    }
                    let kind = event.data["type"].as_str().unwrap_or("message").to_owned();
                    let frame = format!("event: {kind}\ndata: {}\n\n", event.data);
                    Some((Ok(Bytes::from(frame)), (events, end, false)))
                }
                None if end == BodyEnd::Reset => {
                    // One pending poll first: hyper flushes what it wrote while the body waits,
                    // so the events reach the client before the connection drops.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "cut by the fake backend",
                        )),
                        (events, end, true),
                    ))
                }
                None => None,
            }
        }
    })
}

impl Stream for EventStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.finished = true;
        }
        polled
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.closed_early.send_modify(|count| *count += 1);
        }
    }
}
