//! What a turn says without storing anything first: each streamed step (deltas, reasoning
//! parts, an item's start), token usage, rate limits and errors, published under the thread's lock
//! so subscribers see them in the order they happened (TURNS §19.2).

use std::collections::HashMap;

use super::Scope;
use crate::peer::Notification;
use crate::protocol::{
    AccountRateLimitsUpdatedNotification, AgentMessageDeltaNotification, ErrorNotification,
    ItemStartedNotification, RateLimitSnapshot, ReasoningSummaryPartAddedNotification,
    ReasoningSummaryTextDeltaNotification, ReasoningTextDeltaNotification, ThreadItem,
    ThreadTokenUsage, ThreadTokenUsageUpdatedNotification, TokenUsageBreakdown, TurnError, methods,
};
use crate::turns::events::Step;
use crate::turns::thread::now_ms;

impl Scope<'_> {
    /// Publishes a step that changes nothing stored (starts and deltas).
    pub(super) fn publish_step(&self, step: Step, started: &mut HashMap<String, i64>) {
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
            Step::ItemCompleted { .. }
            | Step::FunctionCall(_)
            | Step::Completed { .. }
            | Step::Failed(_) => {}
        });
    }

    pub(super) fn publish_usage(&self, usage: Option<TokenUsageBreakdown>) {
        let Some(last) = usage else { return };
        self.with_state(|state| {
            let context_window = self
                .ctx
                .config
                .model
                .entry(&state.header.settings.model)
                .and_then(|entry| entry.context_window);
            state.header.usage_total += last;
            let total = state.header.usage_total;
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
}

/// An item with its start and completion times set.
pub(super) fn with_times(
    item: ThreadItem,
    started: Option<i64>,
    completed: Option<i64>,
) -> ThreadItem {
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
