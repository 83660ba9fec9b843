//! What a turn records and says. A change is first committed to the store (TURNS §25.2: each
//! completed item before its `item/completed`, the turn's end before `turn/completed`), then
//! made in memory under the thread's lock together with the notification that announces it, so
//! subscribers see changes in the order they were made (TURNS §19.2). A write that fails fails
//! the turn (`failed to persist turn: …`).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::announce::with_times;
use super::{Ending, FirstMessage, Scope};
use crate::protocol::DynamicTool;
use crate::protocol::{
    ItemCompletedNotification, ItemStartedNotification, ThreadItem, TurnError, TurnNotification,
    TurnStatus, UserInput, methods,
};
use crate::store::StoreError;
use crate::turns::events::{FunctionCall, Step};
use crate::turns::failures;
use crate::turns::request;
use crate::turns::thread::{ThreadState, now_ms, user_message};
use crate::turns::tools;

impl Scope<'_> {
    pub(super) fn with_state<T>(&self, change: impl FnOnce(&mut ThreadState) -> T) -> T {
        change(&mut self.thread.lock())
    }

    /// What a store write's failure does to the turn: fails it.
    fn stored(&self, written: Result<(), StoreError>) -> Result<(), TurnError> {
        written.map_err(|err| {
            tracing::error!(thread = %self.thread_id, error = %err, "cannot store the turn");
            failures::other(format!("failed to persist turn: {}", err.detail()))
        })
    }

    /// The turn's items and replay items so far (the next ones' numbers).
    fn counts(&self) -> (usize, usize) {
        self.with_state(|state| {
            state
                .turn_mut(self.turn_id)
                .map_or((0, 0), |turn| (turn.items.len(), turn.replay.len()))
        })
    }

    /// The request body for the thread as it is now.
    pub(super) fn body(&self, output_schema: Option<&Value>) -> Bytes {
        self.with_state(|state| {
            let tools: Vec<Value> = state
                .header
                .settings
                .tools
                .iter()
                .map(DynamicTool::offered)
                .collect();
            let body = request::body(
                &state.header.settings,
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
        self.with_state(|state| state.header.settings.tools.clone())
    }

    /// How many replay items the turn has (to drop an abandoned attempt's).
    pub(super) fn replay_len(&self) -> usize {
        self.with_state(|state| state.turn_mut(self.turn_id).map_or(0, |t| t.replay.len()))
    }

    pub(super) async fn truncate_replay(&self, len: usize) -> Result<(), TurnError> {
        if self.replay_len() == len {
            return Ok(());
        }
        if let Some(store) = self.store {
            self.stored(store.truncate_replay(self.turn_id, len).await)?;
        }
        self.with_state(|state| {
            if let Some(turn) = state.turn_mut(self.turn_id) {
                turn.replay.truncate(len);
            }
        });
        Ok(())
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

    /// The turn's first user message (stored with the turn) joins the turn in memory, so the first
    /// request can carry it before it is announced.
    pub(super) fn keep_first_message(&self, first: &FirstMessage) {
        self.keep_user_message(&first.item, &first.replay);
    }

    /// The turn's first user message, kept already, is announced.
    pub(super) fn announce_first_message(&self, first: FirstMessage) {
        self.publish_user_message(first.item, None);
    }

    /// A user message joins the running turn (steering): stored, then announced.
    pub(super) async fn add_user_message(&self, input: &[UserInput]) -> Result<(), TurnError> {
        let now = now_ms();
        let item = ThreadItem::UserMessage {
            id: Uuid::now_v7().to_string(),
            content: input.to_vec(),
            started_at_ms: Some(now),
            completed_at_ms: Some(now),
        };
        let replay = user_message(input);
        let (item_seq, replay_seq) = self.counts();
        if let Some(store) = self.store {
            let written = store
                .add_items(
                    self.turn_id,
                    item_seq,
                    vec![item.clone()],
                    replay_seq,
                    vec![replay.clone()],
                )
                .await;
            self.stored(written)?;
        }
        self.publish_user_message(item, Some(replay));
        Ok(())
    }

    /// A user message's item and its replay join the turn in memory.
    fn keep_user_message(&self, item: &ThreadItem, replay: &Value) {
        self.with_state(|state| remember(state, self.turn_id, [item.clone()], [replay.clone()]));
    }

    /// A user message's item is announced, started and completed; with its replay, it joins the
    /// turn in memory meanwhile (else it was kept already).
    fn publish_user_message(&self, item: ThreadItem, replay: Option<Value>) {
        // A user message starts and completes when it was taken (its stored times).
        let now = match &item {
            ThreadItem::UserMessage {
                completed_at_ms: Some(at),
                ..
            } => *at,
            _ => now_ms(),
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
            if let Some(replay) = replay {
                remember(state, self.turn_id, [item.clone()], [replay]);
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
    pub(super) async fn record_call(&self, call: &FunctionCall) -> Result<(), TurnError> {
        self.add_replay(vec![call.replay()]).await
    }

    /// The outputs of a response's calls, in call order, after all its calls (TURNS §20.4);
    /// stored before the next request.
    pub(super) async fn record_outputs(
        &self,
        calls: &[FunctionCall],
        outputs: Vec<Value>,
    ) -> Result<(), TurnError> {
        let items = calls
            .iter()
            .zip(outputs)
            .map(|(call, output)| tools::output_item(&call.call_id, output))
            .collect();
        self.add_replay(items).await
    }

    async fn add_replay(&self, replay: Vec<Value>) -> Result<(), TurnError> {
        self.add(Vec::new(), replay, |_| ()).await
    }

    /// Stores `items` and `replay` after what the turn has, then adds them in memory and runs
    /// `announce` under the same lock.
    async fn add(
        &self,
        items: Vec<ThreadItem>,
        replay: Vec<Value>,
        announce: impl FnOnce(&mut ThreadState),
    ) -> Result<(), TurnError> {
        let (item_seq, replay_seq) = self.counts();
        if let Some(store) = self.store {
            let written = store
                .add_items(
                    self.turn_id,
                    item_seq,
                    items.clone(),
                    replay_seq,
                    replay.clone(),
                )
                .await;
            self.stored(written)?;
        }
        self.with_state(|state| {
            remember(state, self.turn_id, items, replay);
            announce(state);
        });
        Ok(())
    }

    /// Publishes one step of the stream; a completed item is stored first.
    pub(super) async fn apply(
        &self,
        step: Step,
        started: &mut HashMap<String, i64>,
    ) -> Result<(), TurnError> {
        if let Step::ItemCompleted { item, replay } = step {
            return self.complete_item(item, replay, started).await;
        }
        self.publish_step(step, started);
        Ok(())
    }

    async fn complete_item(
        &self,
        item: ThreadItem,
        replay: Option<Value>,
        started: &HashMap<String, i64>,
    ) -> Result<(), TurnError> {
        let now = now_ms();
        let started_at = started.get(item.id()).copied();
        let item = with_times(item, started_at, Some(now));
        self.add(vec![item.clone()], replay.into_iter().collect(), |state| {
            state.publish(
                methods::ITEM_COMPLETED,
                &ItemCompletedNotification {
                    item,
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    completed_at_ms: now,
                },
            );
        })
        .await
    }

    /// Records how the turn ended and says so: `error` (if it failed), then `turn/completed`.
    /// The end is stored first; if that fails, the turn ends failed with the store's error.
    pub(super) async fn finish(&self, ending: Ending) {
        let (mut status, mut error) = match ending {
            Ending::Completed => (TurnStatus::Completed, None),
            Ending::Failed(error) => (TurnStatus::Failed, Some(error)),
            Ending::Interrupted => (TurnStatus::Interrupted, None),
        };
        let now = now_ms();
        let ended = self.with_state(|state| {
            let usage = state.header.usage_total;
            let turn = state.turn_mut(self.turn_id).map(|turn| {
                let mut ended = turn.clone();
                ended.finish(status, error.clone(), now);
                ended
            });
            turn.map(|turn| (turn, usage))
        });
        if let (Some((turn, usage)), Some(store)) = (&ended, self.store)
            && let Err(failure) =
                self.stored(store.finish_turn(&self.thread_id, turn, now, *usage).await)
        {
            status = TurnStatus::Failed;
            error = Some(failure);
        }
        if let Some(error) = &error {
            self.publish_error(error.clone(), false);
        }
        self.with_state(|state| {
            state.header.updated_at_ms = now;
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

/// Adds `items` and `replay` after what the turn has in memory.
fn remember(
    state: &mut ThreadState,
    turn_id: &str,
    items: impl IntoIterator<Item = ThreadItem>,
    replay: impl IntoIterator<Item = Value>,
) {
    if let Some(turn) = state.turn_mut(turn_id) {
        turn.items.extend(items);
        turn.replay.extend(replay);
    }
}
