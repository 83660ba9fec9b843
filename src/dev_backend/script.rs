//! What the fake backend answers: scripted replies, each rendered as a status, headers and an SSE
//! body (TURNS §29's fixture answers: ok, 401, 500, 429u, 429, cut, eof, failed, slow, fc).

use std::time::Duration;

use serde_json::{Value, json};

/// One answer to one model request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A reasoning item (`rs_<n>`, encrypted `ENC-<n>`) and a message (`msg_<n>`: `Hello fr`,
    /// `om fake `, `backend.`), usage 1234/1000/56/7/1290, rate-limit headers.
    Ok,
    /// A message with this text (one delta), then completion.
    Message(String),
    /// `Hello`, then nothing until the gate opens ([`super::FakeBackend::open_gate`] or
    /// `POST /gate/open`), then ` world.` and completion: proves a relay does not buffer.
    Paused,
    /// A message of `deltas` deltas of `size` bytes `gap` apart (0: as fast as possible), each
    /// starting with its send time (20 digits of unix nanoseconds), then completion: benchmarks
    /// compute each delta's one-way lag from it.
    Timed {
        deltas: usize,
        size: usize,
        gap: Duration,
    },
    /// A message of `deltas` deltas `gap` apart, then completion (interrupts, benchmarks).
    Slow { deltas: usize, gap: Duration },
    /// A message with two deltas, then the connection drops.
    Cut,
    /// A message with two deltas, then the body ends without `response.completed`.
    Eof,
    /// `response.failed` with this message.
    Failed(String),
    /// Function calls `(call_id, name, arguments)`, then completion.
    FunctionCalls(Vec<(String, String, String)>),
    /// An HTTP error with this body.
    Status { status: u16, body: String },
    /// 429 `usage_limit_reached` for `plan`, resetting in an hour, with rate-limit headers.
    UsageLimit { plan: String },
}

impl Reply {
    pub fn unauthorized() -> Self {
        Self::Status {
            status: 401,
            body: json!({"error": {"message": "unauthorized", "code": "token_expired"}})
                .to_string(),
        }
    }

    pub fn server_error() -> Self {
        Self::Status {
            status: 500,
            body: json!({"error": {"message": "internal error"}}).to_string(),
        }
    }

    pub fn rate_limited() -> Self {
        Self::Status {
            status: 429,
            body: json!({"error": {"type": "rate_limit_exceeded", "message": "slow down"}})
                .to_string(),
        }
    }
}

/// One SSE event to send, after `delay` (and, if `gated`, once the gate opens). A `stamped`
/// delta's text is replaced, as it is sent, by its send time padded to the same length.
#[derive(Clone, Debug)]
pub struct Event {
    pub delay: Duration,
    pub gated: bool,
    pub stamped: bool,
    pub data: Value,
}

/// How the body ends after its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    Clean,
    /// The connection drops (an error mid-body).
    Reset,
}

/// A rendered reply.
pub struct Rendered {
    pub status: u16,
    pub rate_limit_headers: bool,
    pub body: Body,
}

pub enum Body {
    Text(String),
    Events { events: Vec<Event>, end: BodyEnd },
}

/// Renders `reply` as response number `n` (1-based): ids are `rs_<n>`, `msg_<n>`, `resp_<n>`.
pub fn render(reply: &Reply, n: usize) -> Rendered {
    let events = |events: Vec<Value>, end| Body::Events {
        events: events.into_iter().map(immediate).collect(),
        end,
    };
    match reply {
        Reply::Ok => Rendered {
            status: 200,
            rate_limit_headers: true,
            body: events(
                [
                    vec![created(n)],
                    reasoning(n),
                    message(n, 1, &["Hello fr", "om fake ", "backend."]),
                    vec![completed(n)],
                ]
                .concat(),
                BodyEnd::Clean,
            ),
        },
        Reply::Paused => {
            let mut all: Vec<Event> = [vec![created(n)], message(n, 0, &["Hello", " world."])]
                .concat()
                .into_iter()
                .map(immediate)
                .collect();
            // The second delta waits for the gate.
            all[3].gated = true;
            all.push(immediate(completed(n)));
            Rendered {
                status: 200,
                rate_limit_headers: false,
                body: Body::Events {
                    events: all,
                    end: BodyEnd::Clean,
                },
            }
        }
        Reply::Timed { deltas, size, gap } => {
            let placeholder = ".".repeat((*size).max(STAMP_DIGITS));
            let texts = vec![placeholder.as_str(); *deltas];
            let mut all: Vec<Event> = vec![immediate(created(n))];
            for event in message(n, 0, &texts) {
                let delta = event["type"] == "response.output_text.delta";
                all.push(Event {
                    delay: if delta { *gap } else { Duration::ZERO },
                    gated: false,
                    stamped: delta,
                    data: event,
                });
            }
            all.push(immediate(completed(n)));
            Rendered {
                status: 200,
                rate_limit_headers: false,
                body: Body::Events {
                    events: all,
                    end: BodyEnd::Clean,
                },
            }
        }
        Reply::Message(text) => Rendered {
            status: 200,
            rate_limit_headers: false,
            body: events(
                [vec![created(n)], message(n, 0, &[text]), vec![completed(n)]].concat(),
                BodyEnd::Clean,
            ),
        },
        Reply::Slow { deltas, gap } => {
            let texts: Vec<String> = (1..=*deltas).map(|i| format!("{i} ")).collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut all: Vec<Event> = vec![immediate(created(n))];
            for event in message(n, 0, &texts) {
                let delay = if event["type"] == "response.output_text.delta" {
                    *gap
                } else {
                    Duration::ZERO
                };
                all.push(Event {
                    delay,
                    gated: false,
                    stamped: false,
                    data: event,
                });
            }
            all.push(immediate(completed(n)));
            Rendered {
                status: 200,
                rate_limit_headers: false,
                body: Body::Events {
                    events: all,
                    end: BodyEnd::Clean,
                },
            }
        }
        Reply::Cut | Reply::Eof => {
            let mut partial = vec![created(n)];
            partial.extend(message(n, 0, &["Hello fr", "om fake "]));
            partial.pop(); // no output_item.done
            Rendered {
                status: 200,
                rate_limit_headers: false,
                body: events(
                    partial,
                    if matches!(reply, Reply::Cut) {
                        BodyEnd::Reset
                    } else {
                        BodyEnd::Clean
                    },
                ),
            }
        }
        Reply::Failed(message) => Rendered {
            status: 200,
            rate_limit_headers: false,
            body: events(
                vec![
                    created(n),
                    json!({"type": "response.failed", "response": {"id": format!("resp_{n}"), "object": "response", "status": "failed", "error": {"code": "server_error", "message": message}}}),
                ],
                BodyEnd::Clean,
            ),
        },
        Reply::FunctionCalls(calls) => {
            let mut all = vec![created(n)];
            for (index, (call_id, name, arguments)) in calls.iter().enumerate() {
                let item = json!({"type": "function_call", "id": format!("fc_{n}_{index}"), "call_id": call_id, "name": name, "arguments": arguments, "status": "completed"});
                all.push(json!({"type": "response.output_item.added", "output_index": index, "item": item}));
                all.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
            }
            all.push(completed(n));
            Rendered {
                status: 200,
                rate_limit_headers: false,
                body: events(all, BodyEnd::Clean),
            }
        }
        Reply::Status { status, body } => Rendered {
            status: *status,
            rate_limit_headers: false,
            body: Body::Text(body.clone()),
        },
        Reply::UsageLimit { plan } => {
            let resets_at = unix_now() + 3600;
            Rendered {
                status: 429,
                rate_limit_headers: true,
                body: Body::Text(
                    json!({"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": plan, "resets_at": resets_at}})
                        .to_string(),
                ),
            }
        }
    }
}

fn immediate(data: Value) -> Event {
    Event {
        delay: Duration::ZERO,
        gated: false,
        stamped: false,
        data,
    }
}

fn created(n: usize) -> Value {
    json!({"type": "response.created", "response": {"id": format!("resp_{n}"), "object": "response", "status": "in_progress"}})
}

fn reasoning(n: usize) -> Vec<Value> {
    let id = format!("rs_{n}");
    let text = "**Thinking** about it";
    vec![
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": id, "summary": []}}),
        json!({"type": "response.reasoning_summary_part.added", "item_id": id, "output_index": 0, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": id, "output_index": 0, "summary_index": 0, "delta": text}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}], "encrypted_content": format!("ENC-{n}")}}),
    ]
}

/// A message item at `output_index` with `deltas`, ending with its `output_item.done`.
fn message(n: usize, output_index: usize, deltas: &[&str]) -> Vec<Value> {
    let id = format!("msg_{n}");
    let mut events = vec![
        json!({"type": "response.output_item.added", "output_index": output_index, "item": {"type": "message", "id": id, "role": "assistant", "status": "in_progress", "content": []}}),
    ];
    for delta in deltas {
        events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": output_index, "content_index": 0, "delta": delta}));
    }
    let text: String = deltas.concat();
    events.push(json!({"type": "response.output_item.done", "output_index": output_index, "item": {"type": "message", "id": id, "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}}));
    events
}

fn completed(n: usize) -> Value {
    json!({"type": "response.completed", "response": {"id": format!("resp_{n}"), "object": "response", "status": "completed", "output": [],
        "usage": {"input_tokens": 1234, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 56, "output_tokens_details": {"reasoning_tokens": 7}, "total_tokens": 1290}}})
}

/// The rate-limit headers of TURNS §29 (H): 12.5 % of 300 min, 40 % of 10080 min, no credits.
pub fn rate_limit_headers() -> Vec<(&'static str, String)> {
    vec![
        ("x-codex-primary-used-percent", "12.5".into()),
        ("x-codex-primary-window-minutes", "300".into()),
        ("x-codex-primary-reset-at", "1764580000".into()),
        ("x-codex-secondary-used-percent", "40".into()),
        ("x-codex-secondary-window-minutes", "10080".into()),
        ("x-codex-secondary-reset-at", "1765000000".into()),
        ("x-codex-credits-has-credits", "false".into()),
        ("x-codex-credits-unlimited", "false".into()),
    ]
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// The JSON a non-streaming request gets for `rendered`: its final response object with the
/// items of the stream as `output` (or the error body as it is).
pub fn final_response(rendered: &Rendered) -> (u16, String) {
    let Body::Events { events, .. } = &rendered.body else {
        let Body::Text(text) = &rendered.body else {
            unreachable!()
        };
        return (rendered.status, text.clone());
    };
    let mut output = Vec::new();
    for event in events {
        match event.data["type"].as_str() {
            Some("response.output_item.done") => output.push(event.data["item"].clone()),
            Some("response.completed") => {
                let mut response = event.data["response"].clone();
                response["status"] = json!("completed");
                response["output"] = Value::Array(output);
                return (200, response.to_string());
            }
            _ => {}
        }
    }
    (
        500,
        json!({"error": {"message": "the stream did not complete"}}).to_string(),
    )
}

/// Digits of a stamped delta's send time.
pub const STAMP_DIGITS: usize = 20;

/// A stamped delta's text: now in unix nanoseconds, zero-padded, then dots up to `len`.
pub fn stamp(len: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut text = format!("{now:0width$}", width = STAMP_DIGITS);
    while text.len() < len {
        text.push('.');
    }
    text
}
