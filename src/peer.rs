//! What account code may know about, and do with, the connection that called it.
//!
//! The RPC layer implements [`ClientLink`] for each connection; account and backend code only see
//! these traits, so they never import the transport (DESIGN: transport → rpc → account, never back).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub use crate::protocol::ClientInfo;

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

impl fmt::Display for ClientRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut(timeout) => write!(f, "request timed out after {}s", timeout.as_secs()),
            Self::Rejected { code, message } => write!(f, "code={code} message={message}"),
            Self::Disconnected => f.write_str("connection closed"),
        }
    }
}

/// A notification encoded once for both envelope styles (§3.2), shared by every recipient.
#[derive(Debug)]
pub struct Notification {
    pub method: &'static str,
    /// `{"method":…,"params":…}`
    pub plain: String,
    /// `{"jsonrpc":"2.0","method":…,"params":…}`
    pub with_jsonrpc: String,
}

impl Notification {
    pub fn new(method: &'static str, params: &impl serde::Serialize) -> Self {
        let params = serde_json::to_string(params).expect("notification params serialize");
        let method_json = serde_json::to_string(method).expect("method name serializes");
        Self {
            method,
            plain: format!("{{\"method\":{method_json},\"params\":{params}}}"),
            with_jsonrpc: format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":{method_json},\"params\":{params}}}"
            ),
        }
    }
}

/// A live client connection.
pub trait ClientLink: Send + Sync {
    /// A process-unique number for this connection (logs, owner identity).
    fn connection_id(&self) -> u64;

    /// False once the connection has closed.
    fn is_open(&self) -> bool;

    /// Sends a server→client request and resolves with the client's `result`.
    fn request(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Value, ClientRequestError>>;

    /// Queues a notification (unless the connection opted out of its method).
    fn notify(&self, notification: &Notification);

    /// Notifications queued after this call wait until [`ClientLink::release_notifications`].
    fn hold_notifications(&self);

    /// Ends one [`ClientLink::hold_notifications`]; the last release flushes what waited, in order.
    fn release_notifications(&self);
}

/// The connection that sent one request, plus that request's bookkeeping.
pub struct Caller {
    link: Arc<dyn ClientLink>,
    client: Arc<ClientInfo>,
    holding: AtomicBool,
}

impl Caller {
    pub fn new(link: Arc<dyn ClientLink>, client: Arc<ClientInfo>) -> Self {
        Self {
            link,
            client,
            holding: AtomicBool::new(false),
        }
    }

    pub fn link(&self) -> &Arc<dyn ClientLink> {
        &self.link
    }

    pub fn client_info(&self) -> &ClientInfo {
        &self.client
    }

    /// Keeps notifications broadcast from now on off this caller's connection until the reply to
    /// this request has been queued (SPEC §3.5: a reply precedes the notifications it causes).
    pub fn defer_notifications_until_reply(&self) {
        if !self.holding.swap(true, Ordering::AcqRel) {
            self.link.hold_notifications();
        }
    }

    /// Called by the RPC layer once the reply is queued.
    pub fn reply_sent(&self) {
        if self.holding.swap(false, Ordering::AcqRel) {
            self.link.release_notifications();
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        // A handler that panicked or was cancelled must not leave the connection's notifications held.
        self.reply_sent();
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("connection", &self.link.connection_id())
            .field("client", &self.client.name)
            .finish()
    }
}
