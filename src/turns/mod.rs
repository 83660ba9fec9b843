//! Threads and turns (TURNS §16–§25): the process's loaded threads, the store behind them, and
//! the methods that start, steer, interrupt, read, list, resume, rename and archive them, plus
//! `model/list`.
//!
//! Methods answer at once and return an [`Outcome`](crate::peer::Outcome) whose follow-up steps
//! do what must come after the reply: complete the caller's subscription, start a turn's task,
//! cancel it. A turn's task ([`runner::TurnTask`]) publishes everything else. A stored thread is
//! loaded on demand (taking its lease, so it is open in one process at a time) and unloaded once
//! idle: no running turn and no open subscriber.

mod error;
mod events;
mod failures;
mod models;
mod request;
mod runner;
mod subscribers;
#[cfg(test)]
mod tests;
mod thread;
mod thread_ops;
mod tools;
mod turn_ops;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use error::ThreadError;
pub use request::Route;
pub use runner::TurnContext;

use crate::account::credentials::Snapshot;
use crate::store::{Store, StoreError};
use crate::turns::thread::LoadedThread;

/// The threads of this process.
pub struct Threads {
    ctx: Arc<TurnContext>,
    home: String,
    /// The store, or why it cannot be used (stored-thread methods then answer -32603).
    store: Result<Store, StoreError>,
    loaded: Mutex<HashMap<Uuid, Arc<LoadedThread>>>,
    /// Held while a thread is loaded or unloaded, so taking and releasing its lease never
    /// interleave.
    lease_lock: tokio::sync::Mutex<()>,
    /// Running turns, process-wide (`turns.max_concurrent`).
    running: Arc<Semaphore>,
    /// Every turn's task; shutdown waits for them (each ends with `turn/completed`).
    runners: TaskTracker,
    /// Cancelled at shutdown: every running turn is interrupted.
    shutdown: CancellationToken,
}

/// Which text a missing thread gets: it depends on the method (TURNS §17's table).
#[derive(Clone, Copy)]
enum Missing {
    /// `thread/resume`, `thread/archive`, `thread/unarchive`.
    NoRollout,
    /// `turn/start`, `turn/interrupt`, `thread/name/set`.
    NotFound,
}

impl Missing {
    fn error(self, id: &str) -> ThreadError {
        match self {
            Self::NoRollout => ThreadError::NoRollout(id.to_owned()),
            Self::NotFound => ThreadError::NotFound(id.to_owned()),
        }
    }
}

impl Threads {
    pub fn new(
        ctx: Arc<TurnContext>,
        store: Result<Store, StoreError>,
        runners: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            home: ctx.config.home.display().to_string(),
            running: Arc::new(Semaphore::new(ctx.config.turns.max_concurrent)),
            ctx,
            store,
            loaded: Mutex::default(),
            lease_lock: tokio::sync::Mutex::new(()),
            runners,
            shutdown,
        }
    }

    fn store(&self) -> Result<&Store, ThreadError> {
        self.store.as_ref().map_err(|err| err.clone().into())
    }

    fn loaded(&self, id: &Uuid) -> Option<Arc<LoadedThread>> {
        self.loaded.lock().expect("threads lock").get(id).cloned()
    }

    /// The thread, loading it (and taking its lease) if it is stored but not in memory.
    /// Archived threads are missing here.
    async fn open(&self, id: &Uuid, missing: Missing) -> Result<Arc<LoadedThread>, ThreadError> {
        if let Some(thread) = self.loaded(id) {
            return Ok(thread);
        }
        let _leases = self.lease_lock.lock().await;
        if let Some(thread) = self.loaded(id) {
            return Ok(thread);
        }
        let text = id.to_string();
        let store = self.store()?;
        let stored = match store.load(&text, true).await? {
            Some(stored) if !stored.header.archived => stored,
            _ => return Err(missing.error(&text)),
        };
        store.acquire_lease(&text).await?;
        let thread = LoadedThread::new(*id, stored);
        self.loaded
            .lock()
            .expect("threads lock")
            .insert(*id, thread.clone());
        tracing::debug!(thread = %id, "thread loaded");
        Ok(thread)
    }

    /// Unloads every idle thread (no running turn, no open subscriber) and closes its lease;
    /// true if that unloaded the last loaded thread.
    async fn unload_idle(&self) -> bool {
        self.unload_where(|_| true).await
    }

    /// Unloads the thread `id` if it is idle; true if it was the last loaded thread.
    async fn unload_if_idle(&self, id: Uuid) -> bool {
        self.unload_where(|candidate| *candidate == id).await
    }

    async fn unload_where(&self, candidate: impl Fn(&Uuid) -> bool) -> bool {
        let _leases = self.lease_lock.lock().await;
        let (unloaded, none_left): (Vec<(Uuid, bool)>, bool) = {
            let mut loaded = self.loaded.lock().expect("threads lock");
            let mut gone = Vec::new();
            loaded.retain(|id, thread| {
                if !candidate(id) {
                    return true;
                }
                let mut state = thread.lock();
                if !state.is_idle() {
                    return true;
                }
                state.unloaded = true;
                gone.push((*id, state.header.settings.ephemeral));
                false
            });
            let none_left = !gone.is_empty() && loaded.is_empty();
            if none_left {
                // A burst's table would otherwise stay at its largest.
                loaded.shrink_to_fit();
            }
            (gone, none_left)
        };
        for (id, _) in &unloaded {
            tracing::debug!(thread = %id, "thread unloaded");
        }
        if let Ok(store) = &self.store {
            let leased: Vec<String> = unloaded
                .iter()
                .filter(|(_, ephemeral)| !ephemeral)
                .map(|(id, _)| id.to_string())
                .collect();
            if !leased.is_empty()
                && let Err(err) = store.release_leases(leased).await
            {
                tracing::warn!(error = %err, "cannot release thread leases");
            }
            if none_left && let Err(err) = store.release_memory().await {
                tracing::debug!(error = %err, "cannot release the store's cache");
            }
        }
        if none_left {
            crate::memory::release_freed();
        }
        none_left
    }

    /// Unloads idle threads when something may have made them idle — a connection closed (all
    /// are looked at) or a thread's turn ended (that one is) — until shutdown.
    ///
    /// Once the last one is unloaded, freed memory goes back to the OS at once, and again when
    /// the backend connections the turns left idle have timed out and closed, if no thread was
    /// loaded meanwhile.
    pub async fn unload_when_idle(
        self: Arc<Self>,
        disconnects: Arc<Notify>,
        mut ended: mpsc::UnboundedReceiver<Uuid>,
    ) {
        // The pool looks for expired connections once per timeout, so one idle from now is
        // closed within two timeouts.
        let connections_closed = 2 * self.ctx.config.backend.idle_timeout + Duration::from_secs(1);
        let settled = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(settled);
        let mut settling = false;
        loop {
            let none_left = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = disconnects.notified() => self.unload_idle().await,
                Some(id) = ended.recv() => {
                    let loaded = self.loaded.lock().expect("threads lock").contains_key(&id);
                    loaded && self.unload_if_idle(id).await
                }
                _ = &mut settled, if settling => {
                    settling = false;
                    if self.loaded.lock().expect("threads lock").is_empty() {
                        crate::memory::release_freed();
                    }
                    false
                }
            };
            if none_left {
                settled
                    .as_mut()
                    .reset(tokio::time::Instant::now() + connections_closed);
                settling = true;
            }
        }
    }

    /// At exit, once every turn has ended: this process's leases go.
    pub async fn close(&self) {
        if let Ok(store) = &self.store {
            store.close().await;
        }
    }

    /// An account to run turns with (TURNS §17.1): any but none or a latched managed one.
    async fn account_ready(&self) -> bool {
        !self.ctx.config.requires_openai_auth
            || !matches!(
                self.ctx.credentials.snapshot().await,
                Snapshot::None | Snapshot::Managed { latched: true, .. }
            )
    }

    /// The places running turns take under `turns.max_concurrent`; proxied requests take them
    /// too (TURNS §23.1).
    pub fn slots(&self) -> Arc<Semaphore> {
        self.running.clone()
    }

    #[cfg(test)]
    pub fn store_for_tests(&self) -> &Store {
        self.store.as_ref().expect("the store opened")
    }
}

fn parse_thread_id(id: &str) -> Result<Uuid, ThreadError> {
    Uuid::parse_str(id).map_err(|err| ThreadError::InvalidThreadId(err.to_string()))
}
