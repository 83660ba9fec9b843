//! Server→client requests waiting for their reply (SPEC §3.3, §7).
//!
//! Each connection keeps a table from request id to the waiter's oneshot. A reply completes its
//! waiter; a timeout removes the entry so a late reply is logged and dropped; closing the
//! connection fails every waiter at once, so no handler waits out a timeout for a peer that is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

/// Why a server→client request produced no usable result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequestError {
    /// No reply arrived within the timeout.
    TimedOut(Duration),
    /// The client answered with a JSON-RPC error.
    Rejected { code: i64, message: String },
    /// The connection is closed (or closed while the request was pending).
    Disconnected,
}

type Waiter = oneshot::Sender<Result<Value, ClientRequestError>>;

#[derive(Default)]
pub struct ServerRequests {
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    waiters: HashMap<u64, Waiter>,
    closed: bool,
}

/// A registered request: await [`Pending::wait`] after the message is queued.
pub struct Pending {
    table: Arc<ServerRequests>,
    id: u64,
    reply: oneshot::Receiver<Result<Value, ClientRequestError>>,
}

impl ServerRequests {
    /// Registers request `id`; fails at once when the connection is already closed.
    pub fn register(self: &Arc<Self>, id: u64) -> Result<Pending, ClientRequestError> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.state.lock().expect("pending lock");
        if state.closed {
            return Err(ClientRequestError::Disconnected);
        }
        state.waiters.insert(id, tx);
        Ok(Pending {
            table: self.clone(),
            id,
            reply: rx,
        })
    }

    /// Delivers a client's reply. Returns false when nobody waits for `id` (unknown or late).
    pub fn complete(&self, id: u64, outcome: Result<Value, ClientRequestError>) -> bool {
        let waiter = self.state.lock().expect("pending lock").waiters.remove(&id);
        match waiter {
            Some(waiter) => waiter.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Fails every waiter with [`ClientRequestError::Disconnected`] and refuses new requests.
    pub fn close(&self) {
        let waiters = {
            let mut state = self.state.lock().expect("pending lock");
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(ClientRequestError::Disconnected));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state.lock().expect("pending lock").waiters.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn forget(&self, id: u64) {
        self.state.lock().expect("pending lock").waiters.remove(&id);
    }
}

impl Pending {
    /// Waits for the reply, at most `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Result<Value, ClientRequestError> {
        let outcome = match tokio::time::timeout(timeout, &mut self.reply).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(ClientRequestError::Disconnected),
            Err(_) => Err(ClientRequestError::TimedOut(timeout)),
        };
        self.table.forget(self.id);
        outcome
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A cancelled waiter must not leave its entry behind.
        self.table.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn reply_reaches_its_waiter() {
        let table = Arc::new(ServerRequests::default());
        let pending = table.register(7).unwrap();
        assert!(table.complete(7, Ok(json!({"ok": true}))));
        assert_eq!(
            pending.wait(Duration::from_secs(1)).await,
            Ok(json!({"ok": true}))
        );
        assert!(table.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_releases_the_waiter_and_late_reply_is_dropped() {
        let table = Arc::new(ServerRequests::default());
        let pending = table.register(1).unwrap();
        let outcome = pending.wait(Duration::from_secs(10)).await;
        assert_eq!(
            outcome,
            Err(ClientRequestError::TimedOut(Duration::from_secs(10)))
        );
        assert!(table.is_empty());
        assert!(!table.complete(1, Ok(json!(null))), "late reply is dropped");
    }

    #[tokio::test]
    async fn close_fails_every_waiter_at_once() {
        let table = Arc::new(ServerRequests::default());
        let mut tasks = Vec::new();
        for id in 0..5 {
            let table = table.clone();
            tasks.push(tokio::spawn(async move {
                let pending = table.register(id).unwrap();
                pending.wait(Duration::from_secs(3600)).await
            }));
        }
        while table.len() < 5 {
            tokio::task::yield_now().await;
        }
        table.close();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err(ClientRequestError::Disconnected));
        }
        assert_eq!(
            table.register(99).err(),
            Some(ClientRequestError::Disconnected)
        );
    }

    #[tokio::test]
    async fn unknown_ids_are_reported() {
        let table = Arc::new(ServerRequests::default());
        assert!(!table.complete(42, Ok(json!(1))));
    }
}
