//! One model response's SSE events, turned into what the turn does about them (TURNS §21).
//!
//! Pure: [`ResponseEvents::handle`] takes one parsed `data:` object and says what to notify and
//! record, in stream order; the runner publishes each step as soon as it is returned. Items are
//! tracked so deltas name the right item and `item/completed` carries the finished text.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::protocol::{ThreadItem, TokenUsageBreakdown};

/// What an event asks the turn to do.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// `item/started` (agent message with `text:""`, reasoning with empty lists).
    ItemStarted(ThreadItem),
    AgentDelta {
        item_id: String,
        delta: String,
    },
    SummaryPartAdded {
        item_id: String,
        summary_index: i64,
    },
    SummaryDelta {
        item_id: String,
        delta: String,
        summary_index: i64,
    },
    ReasoningDelta {
        item_id: String,
        delta: String,
        content_index: i64,
    },
    /// `item/completed`, and the input item that replays it in later requests (if any).
    ItemCompleted {
        item: ThreadItem,
        replay: Option<Value>,
    },
    /// A host tool call the model asked for (`function_call` done).
    FunctionCall(FunctionCall),
    /// `response.completed`: the response is done.
    Completed {
        usage: Option<TokenUsageBreakdown>,
    },
    /// `response.failed`, a top-level `error`, or `response.incomplete`.
    Failed(ResponseFailure),
}

/// A function call of the response, with its arguments as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionCall {
    pub call_id: String,
    pub name: String,
    pub arguments: String,
}

impl FunctionCall {
    /// Its input item for the next request (TURNS §20.4).
    pub fn replay(&self) -> Value {
        json!({"type": "function_call", "call_id": self.call_id, "name": self.name, "arguments": self.arguments})
    }
}

/// How the backend said the response failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseFailure {
    /// `response.failed` or `error`, with its code (if any) and message.
    Error {
        code: Option<String>,
        message: String,
    },
    /// `response.incomplete`, with `incomplete_details.reason`.
    Incomplete { reason: String },
}

/// The items of one response attempt, by backend id.
#[derive(Default)]
pub struct ResponseEvents {
    /// `output_index` → item id, for deltas that name only the index.
    by_index: HashMap<u64, String>,
}

/// The members of a delta event, read without building a JSON tree (deltas are most of a
/// stream). Strings borrow from the event's text unless they hold escapes.
#[derive(Deserialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_if_unescaped")]
    delta: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_if_unescaped")]
    item_id: Option<Cow<'a, str>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    summary_index: Option<i64>,
    #[serde(default)]
    content_index: Option<i64>,
}

/// An optional string that borrows like a bare `Cow<str>` field (serde's `borrow` does not reach
/// through `Option`, which would copy every delta twice).
fn borrowed_if_unescaped<'de, D>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'de>>::deserialize(deserializer)?.map(|text| text.0))
}

/// The steps of one event, in order: a delta's one step without a `Vec` to hold it.
pub type Steps = std::iter::Chain<std::option::IntoIter<Step>, std::vec::IntoIter<Step>>;

fn one_step(step: Step) -> Steps {
    Some(step).into_iter().chain(Vec::new())
}

fn many_steps(steps: Vec<Step>) -> Steps {
    None.into_iter().chain(steps)
}

impl ResponseEvents {
    /// The steps for one event's `data:` text; `None` if it is not a JSON object. Deltas take a
    /// fast path; every other event is read as JSON and goes to [`ResponseEvents::handle`].
    pub fn handle_text(&mut self, data: &str, new_id: impl FnOnce() -> String) -> Option<Steps> {
        if let Ok(event) = serde_json::from_str::<DeltaEvent<'_>>(data)
            && let Some(delta) = event.delta
        {
            let item_id = event
                .item_id
                .map(Cow::into_owned)
                .or_else(|| {
                    event
                        .output_index
                        .and_then(|index| self.by_index.get(&index).cloned())
                })
                .unwrap_or_default();
            let delta = delta.into_owned();
            let step = match &*event.kind {
                "response.output_text.delta" | "response.refusal.delta" => {
                    Step::AgentDelta { item_id, delta }
                }
                "response.reasoning_summary_text.delta" => Step::SummaryDelta {
                    item_id,
                    delta,
                    summary_index: event.summary_index.unwrap_or(0),
                },
                "response.reasoning_text.delta" => Step::ReasoningDelta {
                    item_id,
                    delta,
                    content_index: event.content_index.unwrap_or(0),
                },
                _ => return Some(many_steps(Vec::new())),
            };
            return Some(one_step(step));
        }
        let event: Value = serde_json::from_str(data).ok()?;
        event
            .is_object()
            .then(|| many_steps(self.handle(&event, new_id)))
    }

    /// The steps for one event. Unknown or irrelevant types yield nothing.
    pub fn handle(&mut self, event: &Value, new_id: impl FnOnce() -> String) -> Vec<Step> {
        let kind = event["type"].as_str().unwrap_or_default();
        match kind {
            "response.output_item.added" => self.item_added(event, new_id),
            "response.output_text.delta" | "response.refusal.delta" => vec![Step::AgentDelta {
                item_id: self.item_id(event),
                delta: text(&event["delta"]),
            }],
            "response.reasoning_summary_part.added" => vec![Step::SummaryPartAdded {
                item_id: self.item_id(event),
                summary_index: event["summary_index"].as_i64().unwrap_or(0),
            }],
            "response.reasoning_summary_text.delta" => vec![Step::SummaryDelta {
                item_id: self.item_id(event),
                delta: text(&event["delta"]),
                summary_index: event["summary_index"].as_i64().unwrap_or(0),
            }],
            "response.reasoning_text.delta" => vec![Step::ReasoningDelta {
                item_id: self.item_id(event),
                delta: text(&event["delta"]),
                content_index: event["content_index"].as_i64().unwrap_or(0),
            }],
            "response.output_item.done" => self.item_done(event),
            "response.completed" => vec![Step::Completed {
                usage: usage(&event["response"]["usage"]),
            }],
            "response.failed" => {
                let error = &event["response"]["error"];
                vec![Step::Failed(ResponseFailure::Error {
                    code: error["code"].as_str().map(str::to_owned),
                    message: text(&error["message"]),
                })]
            }
            "error" => vec![Step::Failed(ResponseFailure::Error {
                code: event["code"].as_str().map(str::to_owned),
                message: text(&event["message"]),
            })],
            "response.incomplete" => vec![Step::Failed(ResponseFailure::Incomplete {
                reason: text(&event["response"]["incomplete_details"]["reason"]),
            })],
            other => {
                tracing::trace!(kind = other, "ignoring a response event");
                Vec::new()
            }
        }
    }

    fn item_added(&mut self, event: &Value, new_id: impl FnOnce() -> String) -> Vec<Step> {
        let item = &event["item"];
        let id = item["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(new_id);
        if let Some(index) = event["output_index"].as_u64() {
            self.by_index.insert(index, id.clone());
        }
        let started = match item["type"].as_str() {
            Some("message") => ThreadItem::AgentMessage {
                id,
                text: String::new(),
                started_at_ms: None,
                completed_at_ms: None,
            },
            Some("reasoning") => ThreadItem::Reasoning {
                id,
                summary: Vec::new(),
                content: Vec::new(),
                started_at_ms: None,
                completed_at_ms: None,
            },
            _ => return Vec::new(),
        };
        vec![Step::ItemStarted(started)]
    }

    fn item_done(&mut self, event: &Value) -> Vec<Step> {
        let item = &event["item"];
        let id = item["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.item_id(event));
        match item["type"].as_str() {
            Some("message") => {
                let text: String = parts(&item["content"])
                    .filter(|part| matches!(part["type"].as_str(), Some("output_text" | "refusal")))
                    .map(|part| {
                        part["text"]
                            .as_str()
                            .or(part["refusal"].as_str())
                            .unwrap_or_default()
                    })
                    .collect();
                let replay = json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]});
                vec![Step::ItemCompleted {
                    item: ThreadItem::AgentMessage {
                        id,
                        text,
                        started_at_ms: None,
                        completed_at_ms: None,
                    },
                    replay: Some(replay),
                }]
            }
            Some("reasoning") => {
                let summary: Vec<String> =
                    parts(&item["summary"]).map(|p| text(&p["text"])).collect();
                let content: Vec<String> =
                    parts(&item["content"]).map(|p| text(&p["text"])).collect();
                // Only reasoning the backend can read back (encrypted) is replayed.
                let replay = item["encrypted_content"].as_str().map(|encrypted| {
                    let summary: Vec<Value> = summary
                        .iter()
                        .map(|text| json!({"type": "summary_text", "text": text}))
                        .collect();
                    json!({"type": "reasoning", "summary": summary, "content": null, "encrypted_content": encrypted})
                });
                vec![Step::ItemCompleted {
                    item: ThreadItem::Reasoning {
                        id,
                        summary,
                        content,
                        started_at_ms: None,
                        completed_at_ms: None,
                    },
                    replay,
                }]
            }
            Some("function_call") => vec![Step::FunctionCall(FunctionCall {
                call_id: text(&item["call_id"]),
                name: text(&item["name"]),
                arguments: text(&item["arguments"]),
            })],
            _ => Vec::new(),
        }
    }

    /// The item an event refers to: `item_id`, else the item at `output_index`.
    fn item_id(&self, event: &Value) -> String {
        event["item_id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                event["output_index"]
                    .as_u64()
                    .and_then(|index| self.by_index.get(&index).cloned())
            })
            .unwrap_or_default()
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn parts(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// A response's `usage` (absent counts are 0; `total_tokens` defaults to input + output).
fn usage(value: &Value) -> Option<TokenUsageBreakdown> {
    if !value.is_object() {
        return None;
    }
    let count = |value: &Value| value.as_i64().unwrap_or(0);
    let input = count(&value["input_tokens"]);
    let output = count(&value["output_tokens"]);
    Some(TokenUsageBreakdown {
        total_tokens: value["total_tokens"].as_i64().unwrap_or(input + output),
        input_tokens: input,
        cached_input_tokens: count(&value["input_tokens_details"]["cached_tokens"]),
        output_tokens: output,
        reasoning_output_tokens: count(&value["output_tokens_details"]["reasoning_tokens"]),
    })
}

#[cfg(test)]
mod tests;
