//! A client connection as the rest of the server sees it (SPEC §2–4, §7.2).
//!
//! The RPC layer makes one [`Peer`] per connection. Account code and turns hold `Peer`s to send it
//! notifications (in its envelope style, minus its opt-outs) and server→client requests (a token
//! refresh, a host tool call) without knowing the transport; everything a peer is sent goes
//! through its bounded [`WriteQueue`]. [`Outcome`] is how a request handler says what it did, so
//! that the RPC layer — and only it — orders the reply before the notifications it caused.

mod hub;
mod notification;
mod outcome;
mod queue;
mod requests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::jsonrpc::envelope;
pub use crate::protocol::ClientInfo;
pub use hub::Hub;
pub use notification::Notification;
pub use outcome::{AfterReply, Events, Outcome};
pub use queue::{OutFrame, Overflow, QueueReader, WriteQueue};
pub use requests::ClientRequestError;
use requests::ServerRequests;

/// A connection; cheap to clone. Sending to a closed peer does nothing, and its pending requests
/// fail at once.
#[derive(Clone)]
pub struct Peer(Arc<PeerState>);

/// A peer that does not keep its connection's state alive (e.g. the owner of host-owned tokens).
#[derive(Clone, Default)]
pub struct WeakPeer(Weak<PeerState>);

struct PeerState {
    id: u64,
    queue: WriteQueue,
    requests: Arc<ServerRequests>,
    handshake: OnceLock<Handshake>,
    open: AtomicBool,
    /// Server→client request ids: one counter for the whole process (SPEC §3.3).
    request_ids: Arc<AtomicU64>,
}

/// What a successful `initialize` fixed for the rest of the connection.
pub struct Handshake {
    pub client: ClientInfo,
    /// Whether every message carries `"jsonrpc":"2.0"` (SPEC §3.2).
    pub jsonrpc: bool,
    /// Notification methods this connection does not want.
    pub opt_out: Vec<String>,
}

impl Peer {
    pub fn new(id: u64, queue: WriteQueue, request_ids: Arc<AtomicU64>) -> Self {
        Self(Arc::new(PeerState {
            id,
            queue,
            requests: Arc::default(),
            handshake: OnceLock::new(),
            open: AtomicBool::new(true),
            request_ids,
        }))
    }

    /// A process-unique number (logs, owner identity).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// False once the connection has closed.
    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::Acquire)
    }

    /// The `clientInfo` of its `initialize`, once that succeeded.
    pub fn client(&self) -> Option<&ClientInfo> {
        self.0.handshake.get().map(|handshake| &handshake.client)
    }

    pub fn is_initialized(&self) -> bool {
        self.0.handshake.get().is_some()
    }

    /// Records a successful `initialize`; false if another one won.
    pub fn complete_handshake(&self, handshake: Handshake) -> bool {
        self.0.handshake.set(handshake).is_ok()
    }

    /// Envelope style of a reply: fixed by a successful `initialize`, else mirrors the request.
    pub fn reply_jsonrpc(&self, request_had_jsonrpc: bool) -> bool {
        self.0
            .handshake
            .get()
            .map_or(request_had_jsonrpc, |handshake| handshake.jsonrpc)
    }

    pub fn queue(&self) -> &WriteQueue {
        &self.0.queue
    }

    pub fn downgrade(&self) -> WeakPeer {
        WeakPeer(Arc::downgrade(&self.0))
    }

    /// Queues a notification, unless the connection is not initialized, closed, or opted out.
    pub fn notify(&self, notification: &Notification) {
        let Some(handshake) = self.0.handshake.get() else {
            return;
        };
        if !self.is_open()
            || handshake
                .opt_out
                .iter()
                .any(|method| method == notification.method)
        {
            return;
        }
        self.0.queue.push(OutFrame::Notification(
            notification.encoded(handshake.jsonrpc).to_owned(),
        ));
    }

    /// Sends a server→client request and resolves with the client's `result`, at most `timeout`
    /// later. Fails at once if the connection is (or becomes) closed.
    pub fn request(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Value, ClientRequestError>> {
        let id = self.0.request_ids.fetch_add(1, Ordering::Relaxed);
        let text = envelope::server_request(id, self.reply_jsonrpc(false), method, &params);
        // The waiter must exist before the request can be answered.
        let pending = match self.0.requests.register(id) {
            Ok(pending) => pending,
            Err(error) => return futures::future::ready(Err(error)).boxed(),
        };
        if !self.is_open() || !self.0.queue.push_text(text) {
            return futures::future::ready(Err(ClientRequestError::Disconnected)).boxed();
        }
        tracing::debug!(connection = self.id(), id, method, "sent server request");
        pending.wait(timeout).boxed()
    }

    /// Delivers the client's reply to one of our requests (`raw_id` as the client wrote it).
    pub fn deliver_reply(&self, raw_id: &str, outcome: Result<Value, ClientRequestError>) {
        let delivered = raw_id
            .parse::<u64>()
            .is_ok_and(|id| self.0.requests.complete(id, outcome));
        if !delivered {
            tracing::debug!(
                connection = self.id(),
                id = raw_id,
                "dropping a reply to an unknown or expired server request"
            );
        }
    }

    /// Marks the connection closed: pending requests fail, nothing more is sent to it.
    pub fn close(&self) {
        if self.0.open.swap(false, Ordering::AcqRel) {
            self.0.requests.close();
        }
    }
}

impl WeakPeer {
    /// The peer, if its connection is still open.
    pub fn upgrade(&self) -> Option<Peer> {
        self.0.upgrade().map(Peer).filter(Peer::is_open)
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id())
            .field("client", &self.client().map(|client| &client.name))
            .finish()
    }
}
