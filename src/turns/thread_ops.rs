//! The thread methods (TURNS §17, §18.4): start, resume, read, list, archive, unarchive, rename,
//! and `model/list`.

use std::sync::Arc;

use uuid::Uuid;

use super::thread::{LoadedThread, ThreadState, now_ms, thread_view};
use super::{Missing, ThreadError, Threads, models, parse_thread_id, tools};
use crate::peer::{Notification, Outcome, Peer};
use crate::protocol::{
    ModelListParams, ModelListResponse, ThreadArchiveResponse, ThreadIdParams, ThreadListParams,
    ThreadListResponse, ThreadNameUpdatedNotification, ThreadReadParams, ThreadReadResponse,
    ThreadResumeParams, ThreadSetNameParams, ThreadSetNameResponse, ThreadSortKey,
    ThreadStartParams, ThreadStartResponse, ThreadStartedNotification, ThreadStatus,
    ThreadUnarchiveResponse, TokenUsageBreakdown, methods,
};
use crate::store::{ListQuery, StoredThread, ThreadHeader, ThreadSettings};

/// Longest thread name, in characters (TURNS §17.6).
const MAX_NAME_CHARS: usize = 256;
/// `thread/list` page size: default and bounds (TURNS §17.4).
const LIST_DEFAULT: u32 = 25;
const LIST_MAX: u32 = 100;

impl Threads {
    /// `thread/start` (TURNS §17.1).
    pub async fn start_thread(
        &self,
        params: ThreadStartParams,
        caller: &Peer,
    ) -> Outcome<ThreadStartResponse, ThreadError> {
        Outcome::flatten(self.create(params, caller).await)
    }

    async fn create(
        &self,
        params: ThreadStartParams,
        caller: &Peer,
    ) -> Result<Outcome<ThreadStartResponse, ThreadError>, ThreadError> {
        if !self.account_ready().await {
            return Err(ThreadError::AuthenticationRequired);
        }
        let model = params
            .model
            .or_else(|| self.ctx.config.model.default.clone())
            .ok_or(ThreadError::NoModel)?;
        let tools = tools::check(params.dynamic_tools.unwrap_or_default())?;
        let id = Uuid::now_v7();
        let now = now_ms();
        let header = ThreadHeader {
            id: id.to_string(),
            created_at_ms: now,
            updated_at_ms: now,
            archived: false,
            name: None,
            preview: String::new(),
            settings: ThreadSettings {
                model,
                effort: None,
                summary: None,
                base_instructions: params.base_instructions,
                developer_instructions: params.developer_instructions,
                ephemeral: params.ephemeral.unwrap_or(false),
                tools,
            },
            usage_total: TokenUsageBreakdown::default(),
        };
        if !header.settings.ephemeral {
            let store = self.store()?;
            store.create_thread(&header).await?;
        }
        let thread = LoadedThread::new(
            id,
            StoredThread {
                header,
                turns: Vec::new(),
            },
        );
        let response = {
            let mut state = thread.lock();
            state.subscribers.add(caller);
            self.response(&state, false)
        };
        self.loaded
            .lock()
            .expect("threads lock")
            .insert(id, thread.clone());
        tracing::info!(thread = %id, "thread started");
        let started = ThreadStartedNotification {
            thread: response.thread.clone(),
        };
        Ok(Outcome::ok(response).then(move || {
            thread.lock().publish(methods::THREAD_STARTED, &started);
        }))
    }

    /// The `thread/start` and `thread/resume` result.
    pub(super) fn response(&self, state: &ThreadState, with_turns: bool) -> ThreadStartResponse {
        ThreadStartResponse {
            thread: state.snapshot(&self.home, with_turns),
            model: state.header.settings.model.clone(),
            model_provider: "openai".to_owned(),
            cwd: self.home.clone(),
            approval_policy: "never".to_owned(),
            sandbox: serde_json::json!({"type": "readOnly"}),
            reasoning_effort: state.header.settings.effort,
            approvals_reviewer: "user".to_owned(),
        }
    }

    /// `thread/resume` (TURNS §17.2): the thread with its turns so far, and the caller receives
    /// what follows.
    pub async fn resume(
        &self,
        params: ThreadResumeParams,
        caller: &Peer,
    ) -> Outcome<ThreadStartResponse, ThreadError> {
        Outcome::flatten(self.resume_thread(params, caller).await)
    }

    async fn resume_thread(
        &self,
        params: ThreadResumeParams,
        caller: &Peer,
    ) -> Result<Outcome<ThreadStartResponse, ThreadError>, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let (thread, ops) = self.open_for_change(&id, Missing::NoRollout).await?;
        let settings = {
            let mut state = thread.lock();
            let settings = &mut state.header.settings;
            if let Some(model) = params.model {
                settings.model = model;
            }
            if let Some(base) = params.base_instructions {
                settings.base_instructions = Some(base);
            }
            if let Some(developer) = params.developer_instructions {
                settings.developer_instructions = Some(developer);
            }
            settings.clone()
        };
        if !settings.ephemeral {
            self.store()?
                .save_settings(&params.thread_id, &settings)
                .await?;
        }
        let mut state = thread.lock();
        let response = self.response(&state, !params.exclude_turns.unwrap_or(false));
        let joining = state.subscribers.begin_join(caller);
        drop(state);
        let caller = caller.clone();
        Ok(Outcome::ok(response)
            .then(move || {
                if joining {
                    thread.lock().subscribers.complete_join(&caller);
                }
            })
            .holding(ops))
    }

    /// The loaded thread with its `ops` lock held (a thread unloaded meanwhile is loaded again).
    pub(super) async fn open_for_change(
        &self,
        id: &Uuid,
        missing: Missing,
    ) -> Result<(Arc<LoadedThread>, tokio::sync::OwnedMutexGuard<()>), ThreadError> {
        loop {
            let thread = self.open(id, missing).await?;
            let ops = thread.ops.clone().lock_owned().await;
            if !thread.lock().unloaded {
                return Ok((thread, ops));
            }
        }
    }

    /// `thread/read` (TURNS §17.3): from memory if loaded here, else from the store.
    pub async fn read(&self, params: ThreadReadParams) -> Result<ThreadReadResponse, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let with_turns = params.include_turns.unwrap_or(false);
        if let Some(thread) = self.loaded(&id) {
            let state = thread.lock();
            if !state.unloaded {
                return Ok(ThreadReadResponse {
                    thread: state.snapshot(&self.home, with_turns),
                });
            }
        }
        let stored = self
            .store()?
            .load(&params.thread_id, with_turns)
            .await?
            .ok_or(ThreadError::NotLoaded(params.thread_id))?;
        Ok(ThreadReadResponse {
            thread: thread_view(
                &stored.header,
                &self.home,
                self.status_of(&id),
                &stored.turns,
            ),
        })
    }

    /// How `thread/list` shows a stored thread's state in this process.
    fn status_of(&self, id: &Uuid) -> ThreadStatus {
        match self.loaded(id) {
            Some(thread) => thread.lock().snapshot(&self.home, false).status,
            None => ThreadStatus::NotLoaded,
        }
    }

    /// `thread/list` (TURNS §17.4).
    pub async fn list(&self, params: ThreadListParams) -> Result<ThreadListResponse, ThreadError> {
        let cursor = params.cursor.clone();
        let page = self
            .store()?
            .list(ListQuery {
                archived: params.archived.unwrap_or(false),
                by_created: params.sort_key == Some(ThreadSortKey::CreatedAt),
                limit: params.limit.unwrap_or(LIST_DEFAULT).clamp(1, LIST_MAX) as usize,
                cursor: params.cursor,
            })
            .await?
            .map_err(|_| ThreadError::InvalidCursor(cursor.unwrap_or_default()))?;
        let data = page
            .threads
            .iter()
            .map(|header| {
                let id = Uuid::parse_str(&header.id).unwrap_or_default();
                thread_view(header, &self.home, self.status_of(&id), &[])
            })
            .collect();
        Ok(ThreadListResponse {
            data,
            next_cursor: page.next_cursor,
        })
    }

    /// `thread/archive` (TURNS §17.5): a running turn is interrupted (and has ended) first; the
    /// thread leaves memory and its subscribers.
    pub async fn archive(
        &self,
        params: ThreadIdParams,
    ) -> Result<ThreadArchiveResponse, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let missing = || ThreadError::NoRollout(params.thread_id.clone());
        let store = self.store()?;
        if let Some(thread) = self.loaded(&id) {
            if thread.is_ephemeral() {
                return Err(missing());
            }
            let _ops = thread.ops.lock().await;
            let running = thread.lock().running.as_ref().map(|running| {
                running.cancel.cancel();
                running.finished.clone()
            });
            if let Some(finished) = running {
                finished.cancelled().await;
            }
            let _leases = self.lease_lock.lock().await;
            {
                let mut state = thread.lock();
                state.unloaded = true;
                state.subscribers.clear();
            }
            self.loaded.lock().expect("threads lock").remove(&id);
            store.set_archived(&params.thread_id, true, None).await?;
            store.release_lease(&params.thread_id).await?;
            return Ok(ThreadArchiveResponse {});
        }
        // Not open here: it must not be open elsewhere either.
        let _leases = self.lease_lock.lock().await;
        match store.load(&params.thread_id, false).await? {
            None => return Err(missing()),
            Some(stored) if stored.header.archived => return Ok(ThreadArchiveResponse {}),
            Some(_) => {}
        }
        store.acquire_lease(&params.thread_id).await?;
        let archived = store.set_archived(&params.thread_id, true, None).await;
        store.release_lease(&params.thread_id).await?;
        archived?.ok_or_else(missing)?;
        Ok(ThreadArchiveResponse {})
    }

    /// `thread/unarchive` (TURNS §17.5).
    pub async fn unarchive(
        &self,
        params: ThreadIdParams,
    ) -> Result<ThreadUnarchiveResponse, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let store = self.store()?;
        let header = store
            .set_archived(&params.thread_id, false, Some(now_ms()))
            .await?
            .ok_or_else(|| ThreadError::NoRollout(params.thread_id.clone()))?;
        Ok(ThreadUnarchiveResponse {
            thread: thread_view(&header, &self.home, self.status_of(&id), &[]),
        })
    }

    /// `thread/name/set` (TURNS §17.6): stored, then `thread/name/updated` to the subscribers
    /// and the caller.
    pub async fn set_name(
        &self,
        params: ThreadSetNameParams,
        caller: &Peer,
    ) -> Outcome<ThreadSetNameResponse, ThreadError> {
        Outcome::flatten(self.rename(params, caller).await)
    }

    async fn rename(
        &self,
        params: ThreadSetNameParams,
        caller: &Peer,
    ) -> Result<Outcome<ThreadSetNameResponse, ThreadError>, ThreadError> {
        let id = parse_thread_id(&params.thread_id)?;
        let name = params.name.trim().to_owned();
        if name.is_empty() {
            return Err(ThreadError::NameEmpty);
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ThreadError::NameTooLong);
        }
        let now = now_ms();
        let thread = self.loaded(&id);
        let ops = match &thread {
            Some(thread) => Some(thread.ops.clone().lock_owned().await),
            None => None,
        };
        let ephemeral = thread.as_ref().is_some_and(|thread| thread.is_ephemeral());
        if !ephemeral
            && !self
                .store()?
                .set_name(&params.thread_id, &name, now)
                .await?
        {
            return Err(ThreadError::NotFound(params.thread_id));
        }
        let notification = ThreadNameUpdatedNotification {
            thread_id: params.thread_id,
            thread_name: Some(name.clone()),
        };
        if let Some(thread) = &thread {
            let mut state = thread.lock();
            state.header.name = Some(name);
            state.header.updated_at_ms = now;
        }
        let caller = caller.clone();
        Ok(Outcome::ok(ThreadSetNameResponse {})
            .then(move || {
                let mut told_caller = false;
                if let Some(thread) = thread {
                    let mut state = thread.lock();
                    told_caller = state.subscribers.contains(&caller);
                    state.publish(methods::THREAD_NAME_UPDATED, &notification);
                }
                if !told_caller {
                    caller.notify(&Notification::new(
                        methods::THREAD_NAME_UPDATED,
                        &notification,
                    ));
                }
            })
            .holding(ops))
    }

    /// `model/list` (TURNS §18.4).
    pub fn list_models(&self, params: ModelListParams) -> Result<ModelListResponse, ThreadError> {
        models::page(&self.ctx.config.model.catalog, params)
    }
}
