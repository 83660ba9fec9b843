//! The turn methods (TURNS §18.1–§18.3): `turn/start` (a new turn, or steering the running one)
//! and `turn/interrupt`.

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::runner::{FirstMessage, TurnTask};
use super::thread::{LoadedThread, RunningTurn, now_ms, preview_of, user_message};
use super::{Missing, ThreadError, Threads, parse_thread_id};
use crate::peer::{Outcome, Peer};
use crate::protocol::{
    ThreadItem, Turn, TurnInterruptParams, TurnInterruptResponse, TurnStartParams,
    TurnStartResponse, UserInput,
};
use crate::store::{ThreadSettings, TurnRecord, TurnStart};

/// What `turn/start` does, decided under the thread's lock.
enum Plan {
    /// Join the running turn with more input (TURNS §18.2).
    Steer {
        turn: Turn,
        input: Vec<UserInput>,
        steer: mpsc::UnboundedSender<Vec<UserInput>>,
        settings: ThreadSettings,
    },
    /// A new turn, in memory already; stored and spawned next.
    Start {
        start: TurnStart,
        first: Option<FirstMessage>,
        steers: mpsc::UnboundedReceiver<Vec<UserInput>>,
        cancel: CancellationToken,
        finished: CancellationToken,
        permit: OwnedSemaphorePermit,
    },
}

impl Threads {
    /// `turn/start` (TURNS §18.1); on a busy thread it steers the running turn (§18.2).
    pub async fn start_turn(
        &self,
        params: TurnStartParams,
        caller: &Peer,
    ) -> Outcome<TurnStartResponse, ThreadError> {
        Outcome::flatten(self.begin_turn(params, caller).await)
    }

    async fn begin_turn(
        &self,
        params: TurnStartParams,
        caller: &Peer,
    ) -> Result<Outcome<TurnStartResponse, ThreadError>, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let (thread, ops) = self.open_for_change(&id, Missing::NotFound).await?;
        if !self.account_ready().await {
            return Err(ThreadError::AuthenticationRequired);
        }
        let thread_id = params.thread_id.clone();
        let output_schema = params.output_schema.clone();
        let plan = self.plan_turn(&thread, params, caller)?;
        match plan {
            Plan::Steer {
                turn,
                input,
                steer,
                settings,
            } => {
                if !settings.ephemeral
                    && let Err(error) = self.store()?.save_settings(&thread_id, &settings).await
                {
                    thread.lock().subscribers.complete_join(caller);
                    return Err(error.into());
                }
                let caller = caller.clone();
                Ok(Outcome::ok(TurnStartResponse { turn })
                    .then(move || {
                        thread.lock().subscribers.complete_join(&caller);
                        let _ = steer.send(input);
                    })
                    .holding(ops))
            }
            Plan::Start {
                start,
                first,
                steers,
                cancel,
                finished,
                permit,
            } => {
                let ephemeral = start.settings.ephemeral;
                let turn_id = start.turn.id.clone();
                let user_agent = caller
                    .client()
                    .map(|client| self.ctx.identity.user_agent(client))
                    .unwrap_or_else(|| self.ctx.identity.background_user_agent());
                // The task starts now, so its first model request overlaps the turn's first
                // commit; it publishes nothing until the reply below is queued (`begun`).
                let store = match (ephemeral, self.store()) {
                    (true, _) => None,
                    (false, Ok(store)) => Some(store.clone()),
                    (false, Err(error)) => {
                        forget_planned_turn(&thread, &turn_id, caller);
                        return Err(error);
                    }
                };
                let (begin, begun) = oneshot::channel();
                let task = TurnTask {
                    thread: thread.clone(),
                    store: store.clone(),
                    turn_id: turn_id.clone(),
                    first,
                    output_schema,
                    starter: caller.clone(),
                    user_agent,
                    steers,
                    cancel,
                    finished,
                    permit,
                    begun: begun.shared(),
                };
                self.runners.spawn(task.run(self.ctx.clone()));
                if let Some(store) = &store
                    && let Err(error) = store.begin_turn(&start).await
                {
                    // Nothing started, and the task ends unseen.
                    forget_planned_turn(&thread, &turn_id, caller);
                    return Err(error.into());
                }
                let turn = TurnRecord::new(turn_id, start.turn.started_at_ms).to_turn(false);
                let caller = caller.clone();
                Ok(Outcome::ok(TurnStartResponse { turn })
                    .then(move || {
                        thread.lock().subscribers.complete_join(&caller);
                        let _ = begin.send(());
                    })
                    .holding(ops))
            }
        }
    }

    /// Decides, under the thread's lock, whether `turn/start` steers the running turn or starts
    /// one, and makes the in-memory changes either way (the caller's subscription begins).
    fn plan_turn(
        &self,
        thread: &LoadedThread,
        params: TurnStartParams,
        caller: &Peer,
    ) -> Result<Plan, ThreadError> {
        let input = params.input.0;
        let mut state = thread.lock();
        // Sticky from now on (for a running turn: from its next request).
        let settings = &mut state.header.settings;
        if let Some(model) = params.model {
            settings.model = model;
        }
        if let Some(effort) = params.effort {
            settings.effort = Some(effort);
        }
        if let Some(summary) = params.summary {
            settings.summary = Some(summary);
        }
        let settings = settings.clone();
        if let Some(running) = &state.running {
            let steer = running.steer.clone();
            let running_id = running.id.clone();
            let turn = state
                .turns
                .iter()
                .find(|turn| turn.id == running_id)
                .map(|turn| turn.to_turn(false))
                .ok_or_else(|| ThreadError::NotFound(params.thread_id.clone()))?;
            state.subscribers.begin_join(caller);
            return Ok(Plan::Steer {
                turn,
                input,
                steer,
                settings,
            });
        }
        let permit = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| ThreadError::Overloaded)?;
        let now = now_ms();
        let record = TurnRecord::new(Uuid::now_v7().to_string(), now);
        let first = (!input.is_empty()).then(|| FirstMessage {
            item: ThreadItem::UserMessage {
                id: Uuid::now_v7().to_string(),
                content: input.clone(),
                started_at_ms: Some(now),
                completed_at_ms: Some(now),
            },
            replay: user_message(&input),
        });
        if state.header.preview.is_empty() {
            state.header.preview = preview_of(&input);
        }
        state.header.updated_at_ms = now;
        let mut stored_turn = record.clone();
        if let Some(first) = &first {
            stored_turn.items.push(first.item.clone());
            stored_turn.replay.push(first.replay.clone());
        }
        let start = TurnStart {
            thread_id: params.thread_id,
            updated_at_ms: now,
            preview: state.header.preview.clone(),
            settings,
            turn: stored_turn,
        };
        let cancel = self.shutdown.child_token();
        let finished = CancellationToken::new();
        let (steer, steers) = mpsc::unbounded_channel();
        state.running = Some(RunningTurn {
            id: record.id.clone(),
            cancel: cancel.clone(),
            steer,
            finished: finished.clone(),
        });
        state.turns.push(record);
        state.subscribers.begin_join(caller);
        Ok(Plan::Start {
            start,
            first,
            steers,
            cancel,
            finished,
            permit,
        })
    }

    /// `turn/interrupt` (TURNS §18.3): the reply goes first, then the turn ends.
    pub async fn interrupt(
        &self,
        params: TurnInterruptParams,
    ) -> Outcome<TurnInterruptResponse, ThreadError> {
        Outcome::flatten(self.interrupt_turn(params).await)
    }

    async fn interrupt_turn(
        &self,
        params: TurnInterruptParams,
    ) -> Result<Outcome<TurnInterruptResponse, ThreadError>, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let Some(thread) = self.loaded(&id) else {
            // Not loaded here: nothing of it runs in this process.
            return match self.store()?.load(&params.thread_id, false).await? {
                Some(stored) if !stored.header.archived => Err(ThreadError::NoActiveTurn),
                _ => Err(ThreadError::NotFound(params.thread_id)),
            };
        };
        let state = thread.lock();
        let running = state.running.as_ref().ok_or(ThreadError::NoActiveTurn)?;
        if running.id != params.turn_id {
            return Err(ThreadError::WrongTurn {
                expected: params.turn_id,
                found: running.id.clone(),
            });
        }
        let cancel = running.cancel.clone();
        Ok(Outcome::ok(TurnInterruptResponse {}).then(move || cancel.cancel()))
    }
}

/// Undoes `plan_turn`'s start of a turn that could not be stored: the thread is as it was.
fn forget_planned_turn(thread: &LoadedThread, turn_id: &str, caller: &Peer) {
    let mut state = thread.lock();
    state.running = None;
    state.turns.retain(|turn| turn.id != turn_id);
    state.subscribers.complete_join(caller);
}
