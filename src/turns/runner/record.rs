//! What a turn records and says: every change to the thread happens under its lock together with
//! the notification that announces it, so subscribers see changes in the order they were made
//! (TURNS §19.2).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::{Ending, Scope};
use crate::peer::Notification;
use crate::protocol::{
    AccountRateLimitsUpdatedNotification, AgentMessageDeltaNotification, ErrorNotification,
    ItemCompletedNotification, ItemStartedNotification, RateLimitSnapshot,
    ReasoningSummaryPartAddedNotification, ReasoningSummaryTextDeltaNotification,
    ReasoningTextDeltaNotification, ThreadItem, ThreadTokenUsage,
    ThreadTokenUsageUpdatedNotification, TokenUsageBreakdown, TurnError, TurnNotification,
    TurnStatus, UserInput, methods,
};
use crate::turns::events::{FunctionCall, Step};
use crate::turns::request;
use crate::turns::thread::{ThreadState, now_ms, user_message};
use crate::turns::tools::{self, DynamicTool};

impl Scope<'_> {
    fn with_state<T>(&self, change: impl FnOnce(&mut ThreadState) -> T) -> T {
        change(&mut self.thread.lock())
    }

    /// The request body for the thread as it is now.
    pub(super) fn body(&self, output_schema: Option<&Value>) -> Bytes {
        self.with_state(|state| {
            let tools: Vec<Value> = state
                .settings
                .tools
                .iter()
                .map(DynamicTool::offered)
                .collect();
            let body = request::body(
                &state.settings,
                &self.ctx.config.model,
                &self.thread_id,
                state.replay_input(),
                &tools,
                output_schema,
            );
            Bytes::from(serde_json::to_vec(&body).expect("request bodies serialize"))
        })
    }

    pub(super) fn tools(&self) -> Vec<DynamicTool> {
        self.with_state(|state| state.settings.tools.clone())
    }

    /// How many replay items the turn has (to drop an abandoned attempt's).
    pub(super) fn replay_len(&self) -> usize {
        self.with_state(|state| state.turn_mut(self.turn_id).map_or(0, |t| t.replay.len()))
    }

    pub(super) fn truncate_replay(&self, len: usize) {
        self.with_state(|state| {
            if let Some(turn) = state.turn_mut(self.turn_id) {
                turn.replay.truncate(len);
            }
        });
    }

    pub(super) fn publish_started(&self) {
        self.with_state(|state| {
            let Some(turn) = state.turn_mut(self.turn_id).map(|t| t.to_turn(false)) else {
                return;
            };
            state.publish(
                methods::TURN_STARTED,
                &TurnNotification {
                    thread_id: self.thread_id.clone(),
                    turn,
                },
            );
        });
    }

    /// A user message joins the turn: its item (started and completed) and its replay.
    pub(super) fn add_user_message(&self, input: &[UserInput]) {
        let now = now_ms();
        let item = ThreadItem::UserMessage {
            id: Uuid::now_v7().to_string(),
            content: input.to_vec(),
            started_at_ms: Some(now),
            completed_at_ms: Some(now),
        };
        self.with_state(|state| {
            state.publish(
                methods::ITEM_STARTED,
                &ItemStartedNotification {
                    item: with_times(item.clone(), Some(now), None),
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    started_at_ms: now,
                },
            );
            if let Some(turn) = state.turn_mut(self.turn_id) {
                turn.items.push(item.clone());
                turn.replay.push(user_message(input));
            }
            state.publish(
                methods::ITEM_COMPLETED,
                &ItemCompletedNotification {
                    item,
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    completed_at_ms: now,
                },
            );
        });
    }

    /// A function call the model made: it is history from now on (its output follows later).
    pub(super) fn record_call(&self, call: &FunctionCall) {
        self.with_state(|state| {
            if let Some(turn) = state.turn_mut(self.turn_id) {
                turn.replay.push(call.replay());
            }
        });
    }

    /// The outputs of a response's calls, in call order, after all its calls (TURNS §20.4).
    pub(super) fn record_outputs(&self, calls: &[FunctionCall], outputs: Vec<Value>) {
        self.with_state(|state| {
            if let Some(turn) = state.turn_mut(self.turn_id) {
                for (call, output) in calls.iter().zip(outputs) {
                    turn.replay.push(tools::output_item(&call.call_id, output));
                }
            }
        });
    }

    /// Publishes (and, for completed items, records) one step of the stream.
    pub(super) fn apply(&self, step: Step, started: &mut HashMap<String, i64>) {
        let thread_id = self.thread_id.clone();
        let turn_id = self.turn_id.to_owned();
        self.with_state(|state| match step {
            Step::ItemStarted(item) => {
                let now = now_ms();
                started.insert(item.id().to_owned(), now);
                state.publish(
                    methods::ITEM_STARTED,
                    &ItemStartedNotification {
                        item: with_times(item, Some(now), None),
                        thread_id,
                        turn_id,
                        started_at_ms: now,
                    },
                );
            }
            Step::AgentDelta { item_id, delta } => state.publish(
                methods::AGENT_MESSAGE_DELTA,
                &AgentMessageDeltaNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    delta,
                },
            ),
            Step::SummaryPartAdded {
                item_id,
                summary_index,
            } => state.publish(
                methods::REASONING_SUMMARY_PART_ADDED,
                &ReasoningSummaryPartAddedNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    summary_index,
                },
            ),
            Step::SummaryDelta {
                item_id,
                delta,
                summary_index,
            } => state.publish(
                methods::REASONING_SUMMARY_TEXT_DELTA,
                &ReasoningSummaryTextDeltaNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    delta,
                    summary_index,
                },
            ),
            Step::ReasoningDelta {
                item_id,
                delta,
                content_index,
            } => state.publish(
                methods::REASONING_TEXT_DELTA,
                &ReasoningTextDeltaNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    delta,
                    content_index,
                },
            ),
            Step::ItemCompleted { item, replay } => {
                let now = now_ms();
                let started_at = started.get(item.id()).copied();
                let item = with_times(item, started_at, Some(now));
                if let Some(turn) = state.turn_mut(&turn_id) {
                    turn.items.push(item.clone());
                    turn.replay.extend(replay);
                }
                state.publish(
                    methods::ITEM_COMPLETED,
                    &ItemCompletedNotification {
                        item,
                        thread_id,
                        turn_id,
                        completed_at_ms: now,
                    },
                );
            }
            Step::FunctionCall(_) | Step::Completed { .. } | Step::Failed(_) => {}
        });
    }

    pub(super) fn publish_usage(&self, usage: Option<TokenUsageBreakdown>) {
        let Some(last) = usage else { return };
        self.with_state(|state| {
            let context_window = self
                .ctx
                .config
                .model
                .entry(&state.settings.model)
                .and_then(|entry| entry.context_window);
            state.usage_total += last;
            let total = state.usage_total;
            state.publish(
                methods::TOKEN_USAGE_UPDATED,
                &ThreadTokenUsageUpdatedNotification {
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    token_usage: ThreadTokenUsage {
                        total,
                        last,
                        model_context_window: context_window,
                    },
                },
            );
        });
    }

    /// `account/rateLimits/updated` goes to every initialized connection (SPEC §6).
    pub(super) fn publish_rate_limits(&self, snapshot: RateLimitSnapshot) {
        self.ctx.hub.send(&Notification::new(
            methods::RATE_LIMITS_UPDATED,
            &AccountRateLimitsUpdatedNotification {
                rate_limits: snapshot,
            },
        ));
    }

    pub(super) fn publish_error(&self, error: TurnError, will_retry: bool) {
        self.with_state(|state| {
            state.publish(
                methods::ERROR,
                &ErrorNotification {
                    error,
                    will_retry,
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                },
            );
        });
    }

    /// Records how the turn ended and says so: `error` (if it failed), then `turn/completed`.
    pub(super) fn finish(&self, ending: Ending) {
        let (status, error) = match ending {
            Ending::Completed => (TurnStatus::Completed, None),
            Ending::Failed(error) => (TurnStatus::Failed, Some(error)),
            Ending::Interrupted => (TurnStatus::Interrupted, None),
        };
        if let Some(error) = &error {
            self.publish_error(error.clone(), false);
        }
        let now = now_ms();
        self.with_state(|state| {
            state.updated_at = now / 1000;
            if state
                .running
                .as_ref()
                .is_some_and(|running| running.id == self.turn_id)
            {
                state.running = None;
            }
            let Some(turn) = state.turn_mut(self.turn_id) else {
                return;
            };
            turn.finish(status, error, now);
            let turn = turn.to_turn(false);
            state.publish(
                methods::TURN_COMPLETED,
                &TurnNotification {
                    thread_id: self.thread_id.clone(),
                    turn,
                },
            );
        });
    }
}

/// An item with its start and completion times set.
fn with_times(item: ThreadItem, started: Option<i64>, completed: Option<i64>) -> ThreadItem {
    match item {
        ThreadItem::UserMessage { id, content, .. } => ThreadItem::UserMessage {
            id,
            content,
            started_at_ms: started,
            completed_at_ms: completed,
        },
        ThreadItem::AgentMessage { id, text, .. } => ThreadItem::AgentMessage {
            id,
            text,
            started_at_ms: started,
            completed_at_ms: completed,
        },
        ThreadItem::Reasoning {
            id,
            summary,
            content,
            ..
        } => ThreadItem::Reasoning {
            id,
            summary,
            content,
            started_at_ms: started,
            completed_at_ms: completed,
        },
    }
}
