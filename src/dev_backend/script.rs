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
    Events { events: Events, end: BodyEnd },
}

/// A body's events, each made as it is about to be sent: a stream of thousands of deltas costs
/// nothing up front, and nothing more once the client cuts it.
pub type Events = Box<dyn Iterator<Item = Event> + Send>;

/// Renders `reply` as response number `n` (1-based): ids are `rs_<n>`, `msg_<n>`, `resp_<n>`.
pub fn render(reply: &Reply, n: usize) -> Rendered {
    let events = |events: Vec<Value>, end| Body::Events {
        events: Box::new(events.into_iter().map(immediate)),
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
                    events: Box::new(all.into_iter()),
                    end: BodyEnd::Clean,
                },
            }
        }
        Reply::Timed { deltas, size, gap } => {
            let placeholder = ".".repeat((*size).max(STAMP_DIGITS));
            spaced_message(n, *deltas, *gap, true, move |_| placeholder.clone())
        }
        Reply::Message(text) => Rendered {
            status: 200,
            rate_limit_headers: false,
            body: events(
                [vec![created(n)], message(n, 0, &[text]), vec![completed(n)]].concat(),
                BodyEnd::Clean,
            ),
        },
        Reply::Slow { deltas, gap } => spaced_message(n, *deltas, *gap, false, |i| format!("{i} ")),
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
    let mut events = vec![message_added(&id, output_index)];
    for delta in deltas {
        events.push(text_delta(&id, output_index, delta));
    }
    events.push(message_done(&id, output_index, &deltas.concat()));
    events
}

/// A reply of one message of `count` deltas (the `i`th, 1-based, is `delta(i)`), each `gap` after
/// the one before, then completion; every event is made only when it is next to be sent.
fn spaced_message(
    n: usize,
    count: usize,
    gap: Duration,
    stamped: bool,
    delta: impl Fn(usize) -> String + Clone + Send + 'static,
) -> Rendered {
    let id = format!("msg_{n}");
    let head = [created(n), message_added(&id, 0)].map(immediate);
    let (each, all) = (delta.clone(), delta);
    let item_id = id.clone();
    let deltas = (1..=count).map(move |i| Event {
        delay: gap,
        gated: false,
        stamped,
        data: text_delta(&item_id, 0, &each(i)),
    });
    let done = std::iter::once_with(move || {
        let text: String = (1..=count).map(all).collect();
        immediate(message_done(&id, 0, &text))
    });
    let completion = std::iter::once_with(move || immediate(completed(n)));
    Rendered {
        status: 200,
        rate_limit_headers: false,
        body: Body::Events {
            events: Box::new(head.into_iter().chain(deltas).chain(done).chain(completion)),
            end: BodyEnd::Clean,
        },
    }
}

fn message_added(id: &str, output_index: usize) -> Value {
    json!({"type": "response.output_item.added", "output_index": output_index, "item": {"type": "message", "id": id, "role": "assistant", "status": "in_progress", "content": []}})
}

fn text_delta(id: &str, output_index: usize, delta: &str) -> Value {
    json!({"type": "response.output_text.delta", "item_id": id, "output_index": output_index, "content_index": 0, "delta": delta})
}

fn message_done(id: &str, output_index: usize, text: &str) -> Value {
    json!({"type": "response.output_item.done", "output_index": output_index, "item": {"type": "message", "id": id, "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}})
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
pub fn final_response(rendered: Rendered) -> (u16, String) {
    let events = match rendered.body {
        Body::Events { events, .. } => events,
        Body::Text(text) => return (rendered.status, text),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn events(rendered: Rendered) -> Events {
        match rendered.body {
            Body::Events { events, .. } => events,
            Body::Text(text) => panic!("a text body: {text}"),
        }
    }

    #[test]
    fn a_spaced_message_sends_its_deltas_apart_then_the_whole_text_and_completion() {
        let gap = Duration::from_millis(3);
        let sent: Vec<Event> = events(render(&Reply::Slow { deltas: 3, gap }, 7)).collect();
        let kinds: Vec<&str> = sent
            .iter()
            .map(|e| e.data["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.output_item.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let deltas: Vec<&str> = sent[2..5]
            .iter()
            .map(|e| e.data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, ["1 ", "2 ", "3 "]);
        assert!(sent[2..5].iter().all(|e| e.delay == gap && !e.stamped));
        assert!(sent[5].delay.is_zero() && sent[6].delay.is_zero());
        assert_eq!(sent[5].data["item"]["id"], "msg_7");
        assert_eq!(sent[5].data["item"]["content"][0]["text"], "1 2 3 ");
        assert_eq!(sent[6].data["response"]["id"], "resp_7");
    }

    #[test]
    fn a_timed_message_stamps_every_delta_and_keeps_their_size() {
        let reply = Reply::Timed {
            deltas: 2,
            size: 32,
            gap: Duration::ZERO,
        };
        let sent: Vec<Event> = events(render(&reply, 1)).collect();
        let deltas: Vec<&Event> = sent.iter().filter(|e| e.stamped).collect();
        assert_eq!(deltas.len(), 2);
        assert!(
            deltas
                .iter()
                .all(|e| e.data["delta"].as_str().unwrap().len() == 32)
        );
    }

    #[test]
    fn a_long_stream_is_made_as_it_is_sent_not_up_front() {
        // Rendered up front, this reply would never fit in memory.
        let reply = Reply::Slow {
            deltas: usize::MAX,
            gap: Duration::ZERO,
        };
        let first: Vec<Event> = events(render(&reply, 1)).take(4).collect();
        assert_eq!(first[3].data["delta"], "2 ");
    }
}
