//! One client connection: classify each inbound frame and act on it (SPEC §2–4).
//!
//! The transport reads frames and hands each to [`Connection::handle_frame`]; replies, notifications
//! and server requests leave through the connection's [`Outbound`] queue, which the transport's
//! writer drains. Requests run as their own tasks so the reader is always free to take the next
//! frame — in particular the client's reply to a server request that a handler is waiting for.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use jsonrpsee::core::server::{ConnectionId, MethodCallback, Methods};
use jsonrpsee::types::{Id, Params};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::RpcError;
use crate::hub::Hub;
use crate::peer::{Caller, ClientInfo, ClientLink, ClientRequestError, Notification};
use crate::rpc::envelope::{self, Entry, Frame, Reply};
use crate::rpc::outbound::{OutFrame, Outbound, OutboundReceiver, Overflow};
use crate::rpc::outgoing::PendingRequests;

/// What every connection of one server shares.
pub struct RpcServer {
    methods: Methods,
    hub: Arc<Hub>,
    next_server_request_id: AtomicU64,
    next_connection_id: AtomicU64,
    max_in_flight: usize,
    queue_capacity: usize,
    queue_bytes: usize,
}

impl RpcServer {
    pub fn new(
        methods: Methods,
        hub: Arc<Hub>,
        max_in_flight: usize,
        queue_capacity: usize,
        queue_bytes: usize,
    ) -> Self {
        Self {
            methods,
            hub,
            next_server_request_id: AtomicU64::new(0),
            next_connection_id: AtomicU64::new(1),
            max_in_flight,
            queue_capacity,
            queue_bytes,
        }
    }
}

/// The reader's handle on a connection.
pub struct Connection {
    shared: Arc<ConnShared>,
    tasks: TaskTracker,
    /// Set at shutdown: only replies to our server requests are still taken.
    draining: AtomicBool,
}

/// State shared by the reader, the request tasks and whoever holds a [`ClientLink`] to it.
pub struct ConnShared {
    id: u64,
    server: Arc<RpcServer>,
    outbound: Outbound,
    pending: Arc<PendingRequests>,
    handshake: OnceLock<Handshake>,
    initialized_notified: AtomicBool,
    open: AtomicBool,
    running: RunningRequests,
}

struct Handshake {
    client: Arc<ClientInfo>,
    jsonrpc: bool,
    opt_out: Vec<String>,
}

/// Per-request context handed to method handlers through jsonrpsee's `Extensions`.
pub struct RequestScope {
    conn: Arc<ConnShared>,
    jsonrpc: bool,
    caller: Option<Arc<Caller>>,
}

impl RequestScope {
    /// The caller, or `None` before the connection's `initialize` succeeded.
    pub fn caller(&self) -> Option<Arc<Caller>> {
        self.caller.clone()
    }

    pub fn is_initialized(&self) -> bool {
        self.conn.handshake.get().is_some()
    }

    /// Records a successful `initialize`: fixes the envelope style and joins the notification hub.
    /// Returns false if another `initialize` won.
    pub fn complete_handshake(&self, client: ClientInfo, opt_out: Vec<String>) -> bool {
        let handshake = Handshake {
            client: Arc::new(client),
            jsonrpc: self.jsonrpc,
            opt_out,
        };
        if self.conn.handshake.set(handshake).is_err() {
            return false;
        }
        let link: Arc<dyn ClientLink> = self.conn.clone();
        self.conn.server.hub.join(&link);
        true
    }
}

/// The notification LSP-style clients (vscode-jsonrpc) send when they give up on a request.
const CANCEL_REQUEST: &str = "$/cancelRequest";

/// Requests that are running, by the client's raw id, so `$/cancelRequest` can stop them.
#[derive(Default)]
struct RunningRequests {
    next: AtomicU64,
    by_id: std::sync::Mutex<std::collections::HashMap<Box<str>, Vec<RunningRequest>>>,
}

/// One running request: its ticket (ids need not be unique) and its cancel switch.
type RunningRequest = (u64, CancellationToken);

impl RunningRequests {
    fn start(&self, id: &str) -> (u64, CancellationToken) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.by_id
            .lock()
            .expect("running lock")
            .entry(id.into())
            .or_default()
            .push((ticket, token.clone()));
        (ticket, token)
    }

    fn finish(&self, id: &str, ticket: u64) {
        let mut by_id = self.by_id.lock().expect("running lock");
        if let Some(running) = by_id.get_mut(id) {
            running.retain(|(t, _)| *t != ticket);
            if running.is_empty() {
                by_id.remove(id);
            }
        }
    }

    /// Cancels every running request with this raw id (ids need not be unique); unknown ids are
    /// ignored.
    fn cancel(&self, id: &str) -> usize {
        let running = self.by_id.lock().expect("running lock").remove(id);
        let running = running.unwrap_or_default();
        for (_, token) in &running {
            token.cancel();
        }
        running.len()
    }
}

/// A request copied out of its frame so it can run as a task.
struct OwnedRequest {
    id: Box<str>,
    method: &'static str,
    callback: MethodCallback,
    params: Params<'static>,
    jsonrpc: bool,
}

/// A reply ready to queue, and the notification holds to release once it is queued.
struct Completed {
    text: String,
    release: Release,
}

impl Completed {
    fn reply(text: String) -> Self {
        Self {
            text,
            release: Release::default(),
        }
    }

    /// Queues the reply, then lets the notifications it held back go (SPEC §3.5).
    fn queue_on(self, outbound: &Outbound) {
        outbound.push_text(self.text);
    }
}

/// Releases, when dropped, the holds a reply carries: its caller's and, for `initialize`, the
/// connection's own.
#[derive(Default)]
struct Release {
    caller: Option<Arc<Caller>>,
    connection: Option<Arc<ConnShared>>,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(caller) = self.caller.take() {
            caller.reply_sent();
        }
        if let Some(connection) = self.connection.take() {
            connection.outbound.release();
        }
    }
}

impl Connection {
    pub fn new(server: Arc<RpcServer>, overflow: Overflow) -> (Self, OutboundReceiver) {
        let (outbound, receiver) =
            Outbound::new(server.queue_capacity, server.queue_bytes, overflow);
        let id = server.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(ConnShared {
            id,
            server,
            outbound,
            pending: Arc::new(PendingRequests::default()),
            handshake: OnceLock::new(),
            initialized_notified: AtomicBool::new(false),
            open: AtomicBool::new(true),
            running: RunningRequests::default(),
        });
        (
            Self {
                shared,
                tasks: TaskTracker::new(),
                draining: AtomicBool::new(false),
            },
            receiver,
        )
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn outbound(&self) -> &Outbound {
        &self.shared.outbound
    }

    /// Queues a reply that is not tied to a request (e.g. a stdio line that was too long).
    pub fn reply_error(&self, error: &RpcError) {
        let jsonrpc = self.shared.reply_jsonrpc(false);
        self.shared
            .outbound
            .push_text(envelope::failure(None, jsonrpc, error));
    }

    /// Handles one frame. Returns once the frame is dispatched (after `initialize` has completed).
    pub async fn handle_frame(&self, text: &str) {
        let frame = envelope::parse(text);
        if self.draining.load(Ordering::Acquire) {
            return self.take_replies_only(frame);
        }
        match frame {
            Frame::ParseError => {
                tracing::debug!(connection = self.id(), "frame is not JSON");
                self.shared.outbound.push_text(envelope::failure(
                    None,
                    false,
                    &RpcError::parse_error(),
                ));
            }
            Frame::BadBatch(error) => {
                let jsonrpc = self.shared.reply_jsonrpc(false);
                self.shared
                    .outbound
                    .push_text(envelope::failure(None, jsonrpc, &error));
            }
            Frame::Single(entry) => {
                if let Some(reply) = self.handle_entry(entry, true).await {
                    reply.await.queue_on(&self.shared.outbound);
                }
            }
            Frame::Batch(entries) => self.handle_batch(entries).await,
        }
    }

    /// While draining, requests are no longer taken, but replies to our server requests still are:
    /// a request finishing its grace period may be waiting for one.
    fn take_replies_only(&self, frame: Frame<'_>) {
        let entries = match frame {
            Frame::Single(entry) => vec![entry],
            Frame::Batch(entries) => entries,
            Frame::ParseError | Frame::BadBatch(_) => Vec::new(),
        };
        for entry in entries {
            match entry {
                Entry::Response { id, outcome } => self.shared.complete_server_request(id, outcome),
                _ => tracing::debug!(
                    connection = self.id(),
                    "ignoring a message while shutting down"
                ),
            }
        }
    }

    /// Handles one entry. A request that runs on its own (single, not batched) queues its own reply
    /// and returns `None`; otherwise the returned future yields the reply for the caller to queue.
    async fn handle_entry(
        &self,
        entry: Entry<'_>,
        single: bool,
    ) -> Option<BoxFuture<'static, Completed>> {
        let shared = &self.shared;
        match entry {
            Entry::Request {
                id,
                method,
                params,
                jsonrpc,
            } => {
                // SPEC §3.6 check order: in-flight limit, then method.
                if !shared.try_start_request() {
                    let jsonrpc = shared.reply_jsonrpc(jsonrpc);
                    let text = envelope::failure(Some(id), jsonrpc, &RpcError::overloaded());
                    return Some(ready(text));
                }
                let Some((name, callback)) = shared.server.methods.method_with_name(&method) else {
                    shared.outbound.finish_request();
                    let jsonrpc = shared.reply_jsonrpc(jsonrpc);
                    let text =
                        envelope::failure(Some(id), jsonrpc, &RpcError::method_not_found(&method));
                    return Some(ready(text));
                };
                let request = OwnedRequest {
                    id: id.into(),
                    method: name,
                    callback: callback.clone(),
                    params: Params::new(params).into_owned(),
                    jsonrpc,
                };
                if request.method == crate::protocol::methods::INITIALIZE {
                    // The handshake completes before the next message is looked at (SPEC §3.5), and
                    // notifications wait until its reply is queued.
                    shared.outbound.hold();
                    let mut completed = run_request(shared.clone(), request).await;
                    completed.release.connection = Some(shared.clone());
                    if single {
                        completed.queue_on(&shared.outbound);
                        return None;
                    }
                    return Some(futures::future::ready(completed).boxed());
                }
                let task = cancellable(shared.clone(), request);
                if single {
                    let shared = shared.clone();
                    self.tasks
                        .spawn(async move { task.await.queue_on(&shared.outbound) });
                    return None;
                }
                let handle = self.tasks.spawn(task);
                Some(
                    async move {
                        handle
                            .await
                            .unwrap_or_else(|_| Completed::reply(String::new()))
                    }
                    .boxed(),
                )
            }
            Entry::Notification { method, params, .. } => {
                if method == "initialized" {
                    shared.initialized_notified.store(true, Ordering::Release);
                    tracing::debug!(connection = self.id(), "client sent initialized");
                } else if method == CANCEL_REQUEST {
                    shared.cancel_requests(params);
                } else {
                    tracing::debug!(
                        connection = self.id(),
                        method = &*method,
                        "ignoring notification"
                    );
                }
                None
            }
            Entry::Response { id, outcome } => {
                shared.complete_server_request(id, outcome);
                None
            }
            Entry::Invalid { id, jsonrpc, error } => {
                let jsonrpc = shared.reply_jsonrpc(jsonrpc);
                Some(ready(envelope::failure(id, jsonrpc, &error)))
            }
            Entry::Dropped => {
                tracing::debug!(
                    connection = self.id(),
                    "dropping a response with a bad jsonrpc member"
                );
                None
            }
        }
    }

    /// Dispatches a batch in array order and queues one array reply once every request finished.
    async fn handle_batch(&self, entries: Vec<Entry<'_>>) {
        let mut replies = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(reply) = self.handle_entry(entry, false).await {
                replies.push(reply);
            }
        }
        if replies.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            let completed = join_all(replies).await;
            let parts: Vec<&str> = completed
                .iter()
                .map(|c| c.text.as_str())
                .filter(|text| !text.is_empty())
                .collect();
            shared.outbound.push_text(format!("[{}]", parts.join(",")));
            // Dropping the replies now releases the notifications they held back.
            drop(completed);
        });
    }

    /// Shutdown, step one: take no more requests (replies to server requests still count).
    pub fn stop_accepting(&self) {
        self.draining.store(true, Ordering::Release);
        self.tasks.close();
    }

    /// Resolves once every request taken before [`Connection::stop_accepting`] has finished.
    pub async fn requests_finished(&self) {
        self.tasks.wait().await;
    }

    /// Marks the connection closed: pending server requests fail, notifications stop.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close();
    }
}

fn ready(text: String) -> BoxFuture<'static, Completed> {
    futures::future::ready(Completed::reply(text)).boxed()
}

/// Runs a request unless the client cancels it first: then the handler is dropped (releasing
/// whatever it held) and the reply is `-32800 Request cancelled`.
async fn cancellable(shared: Arc<ConnShared>, request: OwnedRequest) -> Completed {
    let id = request.id.clone();
    let jsonrpc = request.jsonrpc;
    let (ticket, cancelled) = shared.running.start(&id);
    let completed = tokio::select! {
        completed = run_request(shared.clone(), request) => completed,
        _ = cancelled.cancelled() => {
            shared.outbound.finish_request();
            let jsonrpc = shared.reply_jsonrpc(jsonrpc);
            Completed::reply(envelope::failure(Some(&id), jsonrpc, &RpcError::request_cancelled()))
        }
    };
    shared.running.finish(&id, ticket);
    completed
}

/// Runs one request through the method table and renders its reply.
async fn run_request(shared: Arc<ConnShared>, request: OwnedRequest) -> Completed {
    let caller = shared.handshake.get().map(|handshake| {
        let link: Arc<dyn ClientLink> = shared.clone();
        Arc::new(Caller::new(link, handshake.client.clone()))
    });
    let scope = Arc::new(RequestScope {
        conn: shared.clone(),
        jsonrpc: request.jsonrpc,
        caller: caller.clone(),
    });
    let mut extensions = jsonrpsee::core::server::Extensions::new();
    extensions.insert(scope);
    // Ids jsonrpsee writes exactly as the client did go through it; others are spliced back in.
    let passthrough = envelope::passthrough_id(&request.id);
    let call_id = passthrough.clone().unwrap_or(Id::Null);
    let call = invoke(
        request.callback,
        call_id,
        request.params,
        shared.id,
        extensions,
    );
    let outcome = match AssertUnwindSafe(call).catch_unwind().await {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(RpcError::method_not_found(request.method)),
        Err(_) => {
            tracing::error!(method = request.method, "request handler panicked");
            Err(RpcError::internal("internal error"))
        }
    };
    let jsonrpc = shared.reply_jsonrpc(request.jsonrpc);
    let text = match outcome {
        Ok(reply) if passthrough.is_some() => envelope::adopt(reply, jsonrpc),
        Ok(reply) => envelope::readdress(&request.id, jsonrpc, &reply),
        Err(error) => envelope::failure(Some(&request.id), jsonrpc, &error),
    };
    shared.outbound.finish_request();
    Completed {
        text,
        release: Release {
            caller,
            connection: None,
        },
    }
}

/// Calls a jsonrpsee callback; returns the reply it serialized.
async fn invoke(
    callback: MethodCallback,
    id: Id<'static>,
    params: Params<'static>,
    connection: u64,
    extensions: jsonrpsee::core::server::Extensions,
) -> Option<String> {
    let response = match callback {
        MethodCallback::Async(method) => {
            method(
                id,
                params,
                ConnectionId(connection as usize),
                usize::MAX,
                extensions,
            )
            .await
        }
        MethodCallback::Sync(method) => method(id, params, usize::MAX, extensions),
        MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => return None,
    };
    let reply: Box<str> = response.into_json().into();
    Some(reply.into_string())
}

impl ConnShared {
    /// `$/cancelRequest {id}`.
    fn cancel_requests(&self, params: Option<&str>) {
        #[derive(serde::Deserialize)]
        struct Cancel<'a> {
            #[serde(borrow)]
            id: &'a serde_json::value::RawValue,
        }
        match params.map(serde_json::from_str::<Cancel<'_>>) {
            Some(Ok(cancel)) => {
                let cancelled = self.running.cancel(cancel.id.get());
                tracing::debug!(
                    connection = self.id,
                    id = cancel.id.get(),
                    cancelled,
                    "cancel request"
                );
            }
            _ => tracing::debug!(connection = self.id, "ignoring a malformed $/cancelRequest"),
        }
    }

    fn try_start_request(&self) -> bool {
        self.outbound.start_request(self.server.max_in_flight)
    }

    /// Envelope style for a reply: fixed by a successful `initialize`, else mirrors the request.
    fn reply_jsonrpc(&self, request_had_jsonrpc: bool) -> bool {
        self.handshake
            .get()
            .map_or(request_had_jsonrpc, |handshake| handshake.jsonrpc)
    }

    fn complete_server_request(&self, raw_id: &str, outcome: Reply<'_>) {
        let outcome = match outcome {
            Reply::Result(raw) => Ok(serde_json::from_str::<Value>(raw).unwrap_or(Value::Null)),
            Reply::Error { code, message } => Err(ClientRequestError::Rejected { code, message }),
        };
        let delivered = raw_id
            .parse::<u64>()
            .is_ok_and(|id| self.pending.complete(id, outcome));
        if !delivered {
            tracing::debug!(
                connection = self.id,
                id = raw_id,
                "dropping a reply to an unknown or expired server request"
            );
        }
    }

    fn close(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            self.pending.close();
            self.server.hub.leave(self.id);
        }
    }
}

impl ClientLink for ConnShared {
    fn connection_id(&self) -> u64 {
        self.id
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn request(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Value, ClientRequestError>> {
        let id = self
            .server
            .next_server_request_id
            .fetch_add(1, Ordering::Relaxed);
        let jsonrpc = self.reply_jsonrpc(false);
        let text = envelope::server_request(id, jsonrpc, method, &params);
        let registered = self.pending.register(id).map(|pending| {
            // The waiter must exist before the request can be answered.
            let queued = self.outbound.push_text(text);
            (pending, queued)
        });
        let outcome: Result<_, ClientRequestError> = match registered {
            Err(error) => Err(error),
            Ok((_, false)) => Err(ClientRequestError::Disconnected),
            Ok((pending, true)) => {
                tracing::debug!(connection = self.id, id, method, "sent server request");
                return pending.wait(timeout).boxed();
            }
        };
        futures::future::ready(outcome).boxed()
    }

    fn notify(&self, notification: &Notification) {
        let Some(handshake) = self.handshake.get() else {
            return;
        };
        if handshake
            .opt_out
            .iter()
            .any(|method| method == notification.method)
        {
            return;
        }
        let text = if handshake.jsonrpc {
            &notification.with_jsonrpc
        } else {
            &notification.plain
        };
        self.outbound.push_notification(text.clone());
    }

    fn hold_notifications(&self) {
        self.outbound.hold();
    }

    fn release_notifications(&self) {
        self.outbound.release();
    }
}

impl Connection {
    /// Sends a close frame (WebSocket) after everything already queued.
    pub fn push_close(&self, code: u16, reason: &'static str) {
        self.shared.outbound.push(OutFrame::Close(code, reason));
    }
}
