//! Threads and turns (TURNS §16–§23): the process's loaded threads and the methods that start,
//! steer, interrupt, read and resume them, plus `model/list`.
//!
//! Methods answer at once and return an [`Outcome`] whose follow-up steps do what must come after
//! the reply: complete the caller's subscription, start a turn's task, cancel it. A turn's task
//! ([`runner::TurnTask`]) publishes everything else. One running turn per thread; running turns
//! are bounded process-wide by `turns.max_concurrent`.

mod error;
mod events;
mod failures;
mod models;
mod request;
mod runner;
mod subscribers;
mod thread;
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use error::ThreadError;
pub use runner::TurnContext;

use crate::account::credentials::Snapshot;
use crate::peer::{Outcome, Peer};
use crate::protocol::{
    ModelListParams, ModelListResponse, ThreadReadParams, ThreadReadResponse, ThreadResumeParams,
    ThreadStartParams, ThreadStartResponse, ThreadStartedNotification, TurnInterruptParams,
    TurnInterruptResponse, TurnStartParams, TurnStartResponse, methods,
};
use crate::turns::runner::TurnTask;
use crate::turns::thread::{LoadedThread, RunningTurn, ThreadSettings, TurnRecord, now_ms};

/// The threads of this process.
pub struct Threads {
    ctx: Arc<TurnContext>,
    home: String,
    loaded: Mutex<HashMap<Uuid, Arc<LoadedThread>>>,
    /// Running turns, process-wide (`turns.max_concurrent`).
    running: Arc<Semaphore>,
    /// Every turn's task; shutdown waits for them (each ends with `turn/completed`).
    runners: TaskTracker,
    /// Cancelled at shutdown: every running turn is interrupted.
    shutdown: CancellationToken,
}

impl Threads {
    pub fn new(ctx: Arc<TurnContext>, runners: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            home: ctx.config.home.display().to_string(),
            running: Arc::new(Semaphore::new(ctx.config.turns.max_concurrent)),
            ctx,
            loaded: Mutex::default(),
            runners,
            shutdown,
        }
    }

    fn thread(&self, id: &Uuid) -> Option<Arc<LoadedThread>> {
        self.loaded.lock().expect("threads lock").get(id).cloned()
    }

    /// An account to run turns with (TURNS §17.1): any but none or a latched managed one.
    async fn account_ready(&self) -> bool {
        !self.ctx.config.requires_openai_auth
            || !matches!(
                self.ctx.credentials.snapshot().await,
                Snapshot::None | Snapshot::Managed { latched: true, .. }
            )
    }

    /// `thread/start` (TURNS §17.1).
    pub async fn start_thread(
        &self,
        params: ThreadStartParams,
        caller: &Peer,
    ) -> Outcome<ThreadStartResponse, ThreadError> {
        if !self.account_ready().await {
            return Outcome::new(Err(ThreadError::AuthenticationRequired));
        }
        let Some(model) = params
            .model
            .or_else(|| self.ctx.config.model.default.clone())
        else {
            return Outcome::new(Err(ThreadError::NoModel));
        };
        let tools = match tools::check(params.dynamic_tools.unwrap_or_default()) {
            Ok(tools) => tools,
            Err(error) => return Outcome::new(Err(error)),
        };
        let settings = ThreadSettings {
            model,
            effort: None,
            summary: None,
            base_instructions: params.base_instructions,
            developer_instructions: params.developer_instructions,
            ephemeral: params.ephemeral.unwrap_or(false),
            tools,
        };
        let id = Uuid::now_v7();
        let thread = LoadedThread::new(id, settings, now_ms() / 1000);
        let response = {
            let mut state = thread.lock();
            state.subscribers.add(caller);
            self.response(&id, &state, false)
        };
        self.loaded
            .lock()
            .expect("threads lock")
            .insert(id, thread.clone());
        tracing::info!(thread = %id, "thread started");
        let started = ThreadStartedNotification {
            thread: response.thread.clone(),
        };
        Outcome::ok(response).then(move || {
            thread.lock().publish(methods::THREAD_STARTED, &started);
        })
    }

    /// The `thread/start` and `thread/resume` result.
    fn response(
        &self,
        id: &Uuid,
        state: &thread::ThreadState,
        with_turns: bool,
    ) -> ThreadStartResponse {
        ThreadStartResponse {
            thread: state.snapshot(id, &self.home, with_turns),
            model: state.settings.model.clone(),
            model_provider: "openai".to_owned(),
            cwd: self.home.clone(),
            approval_policy: "never".to_owned(),
            sandbox: serde_json::json!({"type": "readOnly"}),
            reasoning_effort: state.settings.effort,
            approvals_reviewer: "user".to_owned(),
        }
    }

    /// `turn/start` (TURNS §18.1); on a busy thread it steers the running turn (§18.2).
    pub async fn start_turn(
        &self,
        params: TurnStartParams,
        caller: &Peer,
    ) -> Outcome<TurnStartResponse, ThreadError> {
        let thread = match parse_thread_id(&params.thread_id).and_then(|id| {
            self.thread(&id)
                .ok_or(ThreadError::NotFound(params.thread_id.clone()))
        }) {
            Ok(thread) => thread,
            Err(error) => return Outcome::new(Err(error)),
        };
        if !self.account_ready().await {
            return Outcome::new(Err(ThreadError::AuthenticationRequired));
        }
        let input = params.input.0;
        let mut state = thread.lock();
        // Sticky from now on (for a running turn: from its next request).
        if let Some(model) = params.model {
            state.settings.model = model;
        }
        if let Some(effort) = params.effort {
            state.settings.effort = Some(effort);
        }
        if let Some(summary) = params.summary {
            state.settings.summary = Some(summary);
        }
        if let Some(running) = &state.running {
            let Some(turn) = state
                .turns
                .iter()
                .find(|turn| turn.id == running.id)
                .map(|turn| turn.to_turn(false))
            else {
                return Outcome::new(Err(ThreadError::NotFound(params.thread_id)));
            };
            let steer = running.steer.clone();
            let joining = state.subscribers.begin_join(caller);
            drop(state);
            let (thread, caller) = (thread.clone(), caller.clone());
            return Outcome::ok(TurnStartResponse { turn }).then(move || {
                if joining {
                    thread.lock().subscribers.complete_join(&caller);
                }
                let _ = steer.send(input);
            });
        }
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            return Outcome::new(Err(ThreadError::Overloaded));
        };
        let now = now_ms();
        let turn_id = Uuid::now_v7().to_string();
        let record = TurnRecord::new(turn_id.clone(), now);
        let turn = record.to_turn(false);
        state.turns.push(record);
        state.updated_at = now / 1000;
        state.set_preview_from(&input);
        let cancel = self.shutdown.child_token();
        let (steer, steers) = mpsc::unbounded_channel();
        state.running = Some(RunningTurn {
            id: turn_id.clone(),
            cancel: cancel.clone(),
            steer,
        });
        let joining = state.subscribers.begin_join(caller);
        drop(state);
        let user_agent = caller
            .client()
            .map(|client| self.ctx.identity.user_agent(client))
            .unwrap_or_else(|| self.ctx.identity.background_user_agent());
        let task = TurnTask {
            thread: thread.clone(),
            turn_id,
            input,
            output_schema: params.output_schema,
            starter: caller.clone(),
            user_agent,
            steers,
            cancel,
            permit,
        };
        let (runners, ctx, caller) = (self.runners.clone(), self.ctx.clone(), caller.clone());
        Outcome::ok(TurnStartResponse { turn }).then(move || {
            if joining {
                thread.lock().subscribers.complete_join(&caller);
            }
            runners.spawn(task.run(ctx));
        })
    }

    /// `turn/interrupt` (TURNS §18.3): the reply goes first, then the turn ends.
    pub fn interrupt(
        &self,
        params: TurnInterruptParams,
    ) -> Outcome<TurnInterruptResponse, ThreadError> {
        let thread = match parse_thread_id(&params.thread_id).and_then(|id| {
            self.thread(&id)
                .ok_or(ThreadError::NotFound(params.thread_id.clone()))
        }) {
            Ok(thread) => thread,
            Err(error) => return Outcome::new(Err(error)),
        };
        let state = thread.lock();
        let Some(running) = &state.running else {
            return Outcome::new(Err(ThreadError::NoActiveTurn));
        };
        if running.id != params.turn_id {
            return Outcome::new(Err(ThreadError::WrongTurn {
                expected: params.turn_id,
                found: running.id.clone(),
            }));
        }
        let cancel = running.cancel.clone();
        Outcome::ok(TurnInterruptResponse {}).then(move || cancel.cancel())
    }

    /// `thread/read` (TURNS §17.3).
    pub fn read(&self, params: ThreadReadParams) -> Result<ThreadReadResponse, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let thread = self
            .thread(&id)
            .ok_or(ThreadError::NotLoaded(params.thread_id))?;
        let state = thread.lock();
        Ok(ThreadReadResponse {
            thread: state.snapshot(&id, &self.home, params.include_turns.unwrap_or(false)),
        })
    }

    /// `thread/resume` (TURNS §17.2): the thread with its turns so far, and the caller receives
    /// what follows.
    pub fn resume(
        &self,
        params: ThreadResumeParams,
        caller: &Peer,
    ) -> Outcome<ThreadStartResponse, ThreadError> {
        let (id, thread) = match parse_thread_id(&params.thread_id).and_then(|id| {
            self.thread(&id)
                .map(|thread| (id, thread))
                .ok_or(ThreadError::NoRollout(params.thread_id.clone()))
        }) {
            Ok(found) => found,
            Err(error) => return Outcome::new(Err(error)),
        };
        let mut state = thread.lock();
        if let Some(model) = params.model {
            state.settings.model = model;
        }
        if let Some(base) = params.base_instructions {
            state.settings.base_instructions = Some(base);
        }
        if let Some(developer) = params.developer_instructions {
            state.settings.developer_instructions = Some(developer);
        }
        let response = self.response(&id, &state, !params.exclude_turns.unwrap_or(false));
        let joining = state.subscribers.begin_join(caller);
        drop(state);
        let caller = caller.clone();
        Outcome::ok(response).then(move || {
            if joining {
                thread.lock().subscribers.complete_join(&caller);
            }
        })
    }

    /// `model/list` (TURNS §18.4).
    pub fn list_models(&self, params: ModelListParams) -> Result<ModelListResponse, ThreadError> {
        models::page(&self.ctx.config.model.catalog, params)
    }
}

fn parse_thread_id(id: &str) -> Result<Uuid, ThreadError> {
    Uuid::parse_str(id).map_err(|err| ThreadError::InvalidThreadId(err.to_string()))
}
