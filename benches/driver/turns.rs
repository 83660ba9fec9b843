//! The turn driver: WebSocket clients that keep streaming turns running (each connection drives a
//! number of threads at once) and measure what the server between them and the model adds — the
//! lag of each delta (its send time is stamped in its text by the fake backend), the time from
//! `turn/start` to the first delta — and the floor: the same measurements reading the fake's SSE
//! directly, with no relay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Socket, connect};

/// What [`TurnLoad::turn_timeout`] usually is.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// One run of streaming turns.
#[derive(Clone, Debug)]
pub struct TurnLoad {
    pub url: String,
    pub token: Option<String>,
    pub connections: usize,
    /// Threads each connection keeps streaming at once.
    pub threads: usize,
    /// A new thread for every turn (else each thread's history grows turn after turn).
    pub fresh_thread: bool,
    /// Turns per thread slot; `None`: as many as fit in the duration.
    pub turns_per_slot: Option<usize>,
    /// `thread/start {ephemeral: true}`: threads the server never writes to its store.
    pub ephemeral: bool,
    /// Each connection logs in with an API key first (else the account is someone else's).
    pub login: bool,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long a connection waits for its next message before it counts its unfinished turns
    /// as errors and stops (a server can leave a turn without `turn/completed`).
    pub turn_timeout: Duration,
}

/// What a run measured (after the warm-up).
pub struct TurnReport {
    pub turns: u64,
    pub deltas: u64,
    /// Deltas including the warm-up's: what the server's CPU time over the whole run is divided by.
    pub all_deltas: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Per-delta one-way lag, µs.
    pub lag: Histogram<u64>,
    /// `turn/start` sent (or the request sent, for the floor) → first delta, µs.
    pub first_delta: Histogram<u64>,
}

impl TurnReport {
    fn new() -> Self {
        Self {
            turns: 0,
            deltas: 0,
            all_deltas: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            lag: histogram(),
            first_delta: histogram(),
        }
    }

    fn merge(&mut self, other: &TurnReport) {
        self.turns += other.turns;
        self.deltas += other.deltas;
        self.all_deltas += other.all_deltas;
        self.errors += other.errors;
        self.lag.add(&other.lag).expect("same bounds");
        self.first_delta
            .add(&other.first_delta)
            .expect("same bounds");
    }

    pub fn turns_per_second(&self) -> f64 {
        self.turns as f64 / self.elapsed.as_secs_f64()
    }

    pub fn deltas_per_second(&self) -> f64 {
        self.deltas as f64 / self.elapsed.as_secs_f64()
    }

    pub fn lag_us(&self, percentile: f64) -> u64 {
        self.lag.value_at_quantile(percentile / 100.0)
    }

    pub fn first_delta_us(&self, percentile: f64) -> u64 {
        self.first_delta.value_at_quantile(percentile / 100.0)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// The lag of a delta whose text starts with its send time (20 digits of unix ns), in µs.
pub fn lag_of(delta: &str) -> Option<u64> {
    let sent: u128 = delta.get(..20)?.parse().ok()?;
    Some((now_ns().saturating_sub(sent) / 1000) as u64)
}

/// Logs a connection in with an API key (any key: the fake answers every bearer).
async fn login(socket: &mut Socket) {
    send(socket, json!({"id": "login", "method": "account/login/start", "params": {"type": "apiKey", "apiKey": "sk-bench"}})).await;
    loop {
        let message = next(socket).await.expect("the server answers the login");
        if message["id"] == "login" {
            assert!(message.get("result").is_some(), "login failed: {message}");
            return;
        }
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("the server takes the message");
}

async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// One thread slot of a connection.
struct Slot {
    thread: Option<String>,
    started: Instant,
    first_seen: bool,
    turns: usize,
    done: bool,
}

/// Runs `load`: every connection keeps `threads` turns streaming until the deadline (or until
/// each slot ran `turns_per_slot` turns).
pub async fn run_turns(load: &TurnLoad) -> TurnReport {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let deadline = measure_from + load.duration;
    let total = Arc::new(Mutex::new(TurnReport::new()));
    let mut tasks = Vec::new();
    for _ in 0..load.connections {
        let (load, total) = (load.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let report = connection(&load, measure_from, deadline).await;
            total.lock().unwrap().merge(&report);
        }));
    }
    for task in tasks {
        task.await.expect("a connection task");
    }
    let mut report = std::mem::replace(&mut *total.lock().unwrap(), TurnReport::new());
    report.elapsed = Instant::now()
        .min(deadline)
        .saturating_duration_since(measure_from);
    if load.turns_per_slot.is_some() {
        report.elapsed = Instant::now().saturating_duration_since(start);
    }
    report
}

async fn connection(load: &TurnLoad, measure_from: Instant, deadline: Instant) -> TurnReport {
    let mut report = TurnReport::new();
    let mut socket = connect(&load.url, load.token.as_deref()).await;
    if load.login {
        login(&mut socket).await;
    }
    let mut slots: Vec<Slot> = (0..load.threads)
        .map(|_| Slot {
            thread: None,
            started: Instant::now(),
            first_seen: false,
            turns: 0,
            done: false,
        })
        .collect();
    let mut by_thread: HashMap<String, usize> = HashMap::new();
    // Request id → the slot whose thread/start it is.
    let mut starting: HashMap<u64, usize> = HashMap::new();
    let mut next_id = 1u64;
    for slot in 0..load.threads {
        starting.insert(next_id, slot);
        send(
            &mut socket,
            json!({"id": next_id, "method": "thread/start", "params": {"ephemeral": load.ephemeral}}),
        )
        .await;
        next_id += 1;
    }
    let limit = deadline + Duration::from_secs(30);
    while slots.iter().any(|slot| !slot.done) {
        let wait = limit.min(Instant::now() + load.turn_timeout);
        let message = match tokio::time::timeout_at(wait.into(), next(&mut socket)).await {
            Ok(Some(message)) => message,
            _ => {
                report.errors += slots.iter().filter(|slot| !slot.done).count() as u64;
                break;
            }
        };
        let method = message["method"].as_str().unwrap_or_default();
        if method.is_empty() {
            // A reply: to a thread/start, or an error reply to a turn/start.
            let id = message["id"].as_u64().unwrap_or(0);
            if let Some(slot) = starting.remove(&id) {
                let Some(thread) = message["result"]["thread"]["id"].as_str() else {
                    report.errors += 1;
                    slots[slot].done = true;
                    continue;
                };
                by_thread.insert(thread.to_owned(), slot);
                slots[slot].thread = Some(thread.to_owned());
                start_turn(&mut socket, &mut slots[slot], &mut next_id).await;
            } else if message.get("error").is_some() {
                report.errors += 1;
            }
            continue;
        }
        let Some(&slot) = message["params"]["threadId"]
            .as_str()
            .and_then(|thread| by_thread.get(thread))
        else {
            continue;
        };
        let measuring = Instant::now() >= measure_from;
        match method {
            "item/agentMessage/delta" => {
                let state = &mut slots[slot];
                if measuring {
                    if !state.first_seen {
                        report
                            .first_delta
                            .saturating_record(state.started.elapsed().as_micros() as u64);
                    }
                    if let Some(lag) = message["params"]["delta"].as_str().and_then(lag_of) {
                        report.lag.saturating_record(lag.max(1));
                    }
                    report.deltas += 1;
                }
                report.all_deltas += 1;
                state.first_seen = true;
            }
            "turn/completed" => {
                let completed = message["params"]["turn"]["status"] == "completed";
                if measuring {
                    if completed {
                        report.turns += 1;
                    } else {
                        report.errors += 1;
                    }
                }
                let state = &mut slots[slot];
                state.turns += 1;
                let finished = load
                    .turns_per_slot
                    .map_or(Instant::now() >= deadline, |turns| state.turns >= turns);
                if finished {
                    state.done = true;
                } else if load.fresh_thread {
                    starting.insert(next_id, slot);
                    send(
                        &mut socket,
                        json!({"id": next_id, "method": "thread/start", "params": {"ephemeral": load.ephemeral}}),
                    )
                    .await;
                    next_id += 1;
                } else {
                    start_turn(&mut socket, state, &mut next_id).await;
                }
            }
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    report
}

async fn start_turn(socket: &mut Socket, slot: &mut Slot, next_id: &mut u64) {
    let thread = slot.thread.clone().expect("a started thread");
    slot.started = Instant::now();
    slot.first_seen = false;
    send(
        socket,
        json!({"id": *next_id, "method": "turn/start", "params": {"threadId": thread, "input": [{"type": "text", "text": "bench"}]}}),
    )
    .await;
    *next_id += 1;
}

/// The floor: `concurrency` clients reading the fake backend's SSE directly (`POST <base>/responses`),
/// each starting the next request as one ends.
pub async fn run_floor(
    base: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> TurnReport {
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + duration;
    let client = reqwest::Client::new();
    let total = Arc::new(Mutex::new(TurnReport::new()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, total, url) = (client.clone(), total.clone(), format!("{base}/responses"));
        tasks.push(tokio::spawn(async move {
            let mut report = TurnReport::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let measuring = started >= measure_from;
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(json!({"model": "m", "input": "bench", "stream": true}).to_string())
                    .send()
                    .await;
                let Ok(response) = response else {
                    report.errors += 1;
                    continue;
                };
                let mut events = sseer::EventStream::new(response.bytes_stream());
                let mut first = true;
                let mut completed = false;
                while let Some(Ok(event)) = events.next().await {
                    let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    match data["type"].as_str() {
                        Some("response.output_text.delta") if measuring => {
                            if first {
                                report
                                    .first_delta
                                    .saturating_record(started.elapsed().as_micros() as u64);
                                first = false;
                            }
                            if let Some(lag) = data["delta"].as_str().and_then(lag_of) {
                                report.lag.saturating_record(lag.max(1));
                            }
                            report.deltas += 1;
                        }
                        Some("response.completed") => completed = true,
                        _ => {}
                    }
                }
                if measuring {
                    if completed {
                        report.turns += 1;
                    } else {
                        report.errors += 1;
                    }
                }
            }
            total.lock().unwrap().merge(&report);
        }));
    }
    for task in tasks {
        task.await.expect("a floor task");
    }
    let mut report = std::mem::replace(&mut *total.lock().unwrap(), TurnReport::new());
    report.elapsed = Instant::now()
        .min(deadline)
        .saturating_duration_since(measure_from);
    report
}

/// Interrupt latency: on one connection, `rounds` times: start a turn, wait for its first delta,
/// send `turn/interrupt`, and time until `turn/completed {status:"interrupted"}`. µs.
pub async fn interrupts(
    url: &str,
    token: Option<&str>,
    rounds: usize,
    ephemeral: bool,
) -> (Histogram<u64>, u64) {
    let mut socket = connect(url, token).await;
    login(&mut socket).await;
    send(
        &mut socket,
        json!({"id": "thread", "method": "thread/start", "params": {"ephemeral": ephemeral}}),
    )
    .await;
    let thread = loop {
        let message = next(&mut socket).await.expect("thread/start answered");
        if message["id"] == "thread" {
            break message["result"]["thread"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    };
    let mut latency = histogram();
    let mut errors = 0;
    for round in 0..rounds {
        send(&mut socket, json!({"id": format!("turn-{round}"), "method": "turn/start", "params": {"threadId": thread, "input": [{"type": "text", "text": "bench"}]}})).await;
        let mut turn = None;
        loop {
            let message = next(&mut socket).await.expect("the turn streams");
            if message["id"] == format!("turn-{round}") {
                turn = message["result"]["turn"]["id"].as_str().map(str::to_owned);
            }
            if message["method"] == "item/agentMessage/delta" {
                break;
            }
        }
        let interrupted = Instant::now();
        send(&mut socket, json!({"id": format!("stop-{round}"), "method": "turn/interrupt", "params": {"threadId": thread, "turnId": turn}})).await;
        loop {
            let message = next(&mut socket).await.expect("the turn ends");
            if message["method"] == "turn/completed" {
                if message["params"]["turn"]["status"] == "interrupted" {
                    latency.saturating_record(interrupted.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                break;
            }
        }
    }
    (latency, errors)
}

/// What [`thread_list`] measured.
pub struct ListReport {
    /// `thread/start` replies per second while the threads were made (64 in flight).
    pub created_per_second: f64,
    /// `thread/list {limit: 50}` round trips, µs: the first page, and a page 5 000 threads deep.
    pub first_page: Histogram<u64>,
    pub deep_page: Histogram<u64>,
}

/// Makes `threads` stored threads on one connection, then times `calls` first-page and deep-page
/// `thread/list` requests, one at a time.
pub async fn thread_list(
    url: &str,
    token: Option<&str>,
    threads: usize,
    calls: usize,
) -> ListReport {
    let mut socket = connect(url, token).await;
    login(&mut socket).await;
    let started = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    while answered < threads {
        while sent < threads && sent - answered < 64 {
            send(
                &mut socket,
                json!({"id": sent, "method": "thread/start", "params": {}}),
            )
            .await;
            sent += 1;
        }
        let message = next(&mut socket).await.expect("thread/start answered");
        if message.get("id").is_some() && message.get("method").is_none() {
            assert!(
                message.get("result").is_some(),
                "thread/start failed: {message}"
            );
            answered += 1;
        }
    }
    let created_per_second = threads as f64 / started.elapsed().as_secs_f64();
    let mut call = async |params: Value| -> (Value, u64) {
        let sent = Instant::now();
        send(
            &mut socket,
            json!({"id": "list", "method": "thread/list", "params": params}),
        )
        .await;
        loop {
            let message = next(&mut socket).await.expect("thread/list answered");
            if message["id"] == "list" {
                return (message, sent.elapsed().as_micros() as u64);
            }
        }
    };
    // A cursor 5 000 threads deep: 100 pages of 50.
    let mut cursor = Value::Null;
    for _ in 0..(threads / 2 / 50) {
        let (page, _) = call(json!({"limit": 50, "cursor": cursor})).await;
        cursor = page["result"]["nextCursor"].clone();
    }
    let (mut first_page, mut deep_page) = (histogram(), histogram());
    for _ in 0..calls {
        let (page, us) = call(json!({"limit": 50})).await;
        assert_eq!(page["result"]["data"].as_array().map(Vec::len), Some(50));
        first_page.saturating_record(us.max(1));
        let (page, us) = call(json!({"limit": 50, "cursor": cursor})).await;
        assert_eq!(page["result"]["data"].as_array().map(Vec::len), Some(50));
        deep_page.saturating_record(us.max(1));
    }
    ListReport {
        created_per_second,
        first_page,
        deep_page,
    }
}
