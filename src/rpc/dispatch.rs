//! Dispatching one connection's frames (SPEC §3): classify each message, run requests through the
//! method table as tasks, and queue each reply — then, and only then, what the request caused.
//!
//! `initialize` runs inline (it completes before the next message is looked at, SPEC §3.5); every
//! other request runs as its own task (`request.rs`), so the reader is always free to take the next
//! frame. A
//! request's [`AfterReply`] is applied right after its reply is queued; for a batch, after the
//! array reply. This is the one place that ordering rule lives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use jsonrpsee::core::server::Methods;
use jsonrpsee::types::Params;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jsonrpc::RpcError;
use crate::jsonrpc::envelope::{self, Entry, Frame, Reply};
use crate::peer::{AfterReply, ClientRequestError, Hub, Overflow, Peer, QueueReader, WriteQueue};
use crate::protocol::methods::INITIALIZE;
use crate::rpc::cancel::{self, CANCEL_REQUEST, RunningRequests};
use crate::rpc::request::{Answer, Completed, InFlight, Prepared, Shared, answer, cancelled_reply};

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_in_flight: usize,
    pub queue_messages: usize,
    pub queue_bytes: usize,
}

/// What every connection of one server shares.
pub struct RpcServer {
    methods: Methods,
    /// Methods `$/cancelRequest` may stop midway: they change no state.
    cancellable: &'static [&'static str],
    hub: Arc<Hub>,
    request_ids: Arc<AtomicU64>,
    connection_ids: AtomicU64,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    shutdown_grace: Duration,
    /// Work that outlives requests and still talks to connections (turn tasks): at shutdown,
    /// connections close only once it has finished (within the grace period).
    background: TaskTracker,
    /// Told whenever a connection ends (threads it subscribed to may now be idle).
    disconnects: Arc<Notify>,
}

/// What [`RpcServer::new`] is built from.
pub struct RpcServerParts {
    pub methods: Methods,
    pub cancellable: &'static [&'static str],
    pub hub: Arc<Hub>,
    pub limits: ConnectionLimits,
    pub shutdown: CancellationToken,
    pub shutdown_grace: Duration,
    pub background: TaskTracker,
    pub disconnects: Arc<Notify>,
}

impl RpcServer {
    pub fn new(parts: RpcServerParts) -> Self {
        Self {
            methods: parts.methods,
            cancellable: parts.cancellable,
            hub: parts.hub,
            request_ids: Arc::new(AtomicU64::new(0)),
            connection_ids: AtomicU64::new(1),
            limits: parts.limits,
            shutdown: parts.shutdown,
            shutdown_grace: parts.shutdown_grace,
            background: parts.background,
            disconnects: parts.disconnects,
        }
    }

    /// Resolves once the background work has finished (after shutdown closed it).
    pub async fn background_finished(&self) {
        self.background.wait().await;
    }

    /// Cancelled when the server starts shutting down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Every method a client may call, in no particular order.
    pub fn method_names(&self) -> Vec<&'static str> {
        self.methods.method_names().collect()
    }
}

/// The reader's side of one connection.
pub struct Dispatcher {
    rpc: Arc<RpcServer>,
    shared: Arc<Shared>,
    tasks: TaskTracker,
    /// Set at shutdown: only replies to our server requests are still taken.
    draining: AtomicBool,
}

/// What to do with one entry of a frame.
enum Admitted {
    /// Answered at once (an error).
    Answer(String),
    Run(Prepared),
    /// Nothing to answer (a notification or a response).
    Nothing,
}

impl Dispatcher {
    pub fn new(rpc: Arc<RpcServer>, overflow: Overflow) -> (Self, QueueReader) {
        let limits = rpc.limits;
        let (queue, reader) = WriteQueue::new(limits.queue_messages, limits.queue_bytes, overflow);
        let id = rpc.connection_ids.fetch_add(1, Ordering::Relaxed);
        let peer = Peer::new(id, queue, rpc.request_ids.clone());
        let shared = Arc::new(Shared {
            hub: rpc.hub.clone(),
            peer,
            running: RunningRequests::default(),
        });
        let dispatcher = Self {
            rpc,
            shared,
            tasks: TaskTracker::new(),
            draining: AtomicBool::new(false),
        };
        (dispatcher, reader)
    }

    pub fn peer(&self) -> &Peer {
        &self.shared.peer
    }

    /// Queues an error that answers no request (id `null`), e.g. a stdio line that was too long.
    pub fn reply_error(&self, error: &RpcError) {
        let jsonrpc = self.peer().reply_jsonrpc(false);
        self.peer()
            .queue()
            .push_text(envelope::failure(None, jsonrpc, error));
    }

    /// Handles one frame. Returns once it is dispatched (after `initialize` has completed).
    pub async fn handle_frame(&self, text: &str) {
        let frame = envelope::parse(text);
        if self.draining.load(Ordering::Acquire) {
            return self.take_replies_only(frame);
        }
        match frame {
            Frame::ParseError => {
                tracing::debug!(connection = self.peer().id(), "frame is not JSON");
                let text = envelope::failure(None, false, &RpcError::parse_error());
                self.peer().queue().push_text(text);
            }
            Frame::BadBatch(error) => self.reply_error(&error),
            Frame::Single(entry) => match self.admit(entry) {
                Admitted::Answer(text) => {
                    self.peer().queue().push_text(text);
                }
                Admitted::Run(request) if request.method == INITIALIZE => {
                    let completed = self.shared.execute(request).await;
                    self.shared.deliver(completed);
                }
                Admitted::Run(request) => {
                    let shared = self.shared.clone();
                    let ticket = request.ticket;
                    let run = shared.clone().run(request, Answer::Queue);
                    let task = self.tasks.spawn(async move {
                        let completed = run.await;
                        shared.deliver(completed);
                    });
                    if let Some(ticket) = ticket {
                        self.shared.running.spawned(ticket, task.abort_handle());
                    }
                }
                Admitted::Nothing => {}
            },
            Frame::Batch(entries) => self.handle_batch(entries).await,
        }
    }

    /// Dispatches a batch in array order (an `initialize` entry completes first) and queues one
    /// array reply once every request finished; then applies what each caused, in array order.
    async fn handle_batch(&self, entries: Vec<Entry<'_>>) {
        let mut replies: Vec<BoxFuture<'static, Completed>> = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.admit(entry) {
                Admitted::Answer(text) => {
                    replies.push(futures::future::ready(answer(text)).boxed())
                }
                Admitted::Run(request) if request.method == INITIALIZE => {
                    let completed = self.shared.execute(request).await;
                    replies.push(futures::future::ready(completed).boxed());
                }
                Admitted::Run(request) => {
                    let cancelled = cancelled_reply(&request, self.peer());
                    let ticket = request.ticket;
                    let task = self
                        .tasks
                        .spawn(self.shared.clone().run(request, Answer::InBatch));
                    if let Some(ticket) = ticket {
                        self.shared.running.spawned(ticket, task.abort_handle());
                    }
                    replies.push(
                        async move { task.await.unwrap_or_else(|_| answer(cancelled)) }.boxed(),
                    );
                }
                Admitted::Nothing => {}
            }
        }
        if replies.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            let completed = join_all(replies).await;
            let mut after = AfterReply::default();
            let mut parts = Vec::with_capacity(completed.len());
            for reply in completed {
                drop(reply.in_flight);
                if !reply.text.is_empty() {
                    parts.push(reply.text);
                }
                after.append(reply.after);
            }
            shared
                .peer
                .queue()
                .push_text(format!("[{}]", parts.join(",")));
            after.apply(&shared.hub);
        });
    }

    /// Classifies one entry: answers what needs no handler, prepares requests to run.
    fn admit(&self, entry: Entry<'_>) -> Admitted {
        let peer = self.peer();
        match entry {
            Entry::Request {
                id,
                method,
                params,
                jsonrpc,
            } => {
                let refuse = |error: RpcError| {
                    Admitted::Answer(envelope::failure(
                        Some(id),
                        peer.reply_jsonrpc(jsonrpc),
                        &error,
                    ))
                };
                // SPEC §3.6 check order: in-flight limit, then method.
                if !peer.queue().start_request(self.rpc.limits.max_in_flight) {
                    return refuse(RpcError::overloaded());
                }
                let in_flight = InFlight(peer.clone());
                let Some((name, callback)) = self.rpc.methods.method_with_name(&method) else {
                    drop(in_flight);
                    return refuse(RpcError::method_not_found(&method));
                };
                let ticket = self
                    .rpc
                    .cancellable
                    .contains(&name)
                    .then(|| self.shared.running.start(id));
                Admitted::Run(Prepared {
                    id: id.into(),
                    method: name,
                    callback: callback.clone(),
                    params: Params::new(params).into_owned(),
                    jsonrpc,
                    in_flight: Some(in_flight),
                    ticket,
                })
            }
            Entry::Notification { method, params, .. } => {
                match &*method {
                    "initialized" => {
                        tracing::debug!(connection = peer.id(), "client sent initialized");
                    }
                    CANCEL_REQUEST => self.cancel(params),
                    other => tracing::debug!(
                        connection = peer.id(),
                        method = other,
                        "ignoring notification"
                    ),
                }
                Admitted::Nothing
            }
            Entry::Response { id, outcome } => {
                peer.deliver_reply(id, client_reply(outcome));
                Admitted::Nothing
            }
            Entry::Invalid { id, jsonrpc, error } => {
                Admitted::Answer(envelope::failure(id, peer.reply_jsonrpc(jsonrpc), &error))
            }
            Entry::Dropped => {
                tracing::debug!(
                    connection = peer.id(),
                    "dropping a response with a bad jsonrpc member"
                );
                Admitted::Nothing
            }
        }
    }

    /// `$/cancelRequest {id}`: stops the cancellable requests with that raw id and answers them
    /// `-32800 Request cancelled`; anything else is ignored.
    fn cancel(&self, params: Option<&str>) {
        let Some(id) = cancel::cancelled_id(params) else {
            tracing::debug!(
                connection = self.peer().id(),
                "ignoring a malformed $/cancelRequest"
            );
            return;
        };
        let cancelled = self.shared.running.cancel(id);
        tracing::debug!(
            connection = self.peer().id(),
            id,
            cancelled,
            "cancel request"
        );
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
                Entry::Response { id, outcome } => {
                    self.peer().deliver_reply(id, client_reply(outcome))
                }
                _ => tracing::debug!(
                    connection = self.peer().id(),
                    "ignoring a message while shutting down"
                ),
            }
        }
    }

    /// Shutdown, step one: take no more requests (replies to server requests still count).
    pub fn stop_accepting(&self) {
        self.draining.store(true, Ordering::Release);
        self.tasks.close();
    }

    /// Resolves once every request taken before [`Dispatcher::stop_accepting`] has finished.
    pub async fn requests_finished(&self) {
        self.tasks.wait().await;
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.shared.peer.close();
        self.rpc.disconnects.notify_one();
    }
}

fn client_reply(outcome: Reply<'_>) -> Result<Value, ClientRequestError> {
    match outcome {
        Reply::Result(raw) => Ok(serde_json::from_str::<Value>(raw).unwrap_or(Value::Null)),
        Reply::Error { code, message } => Err(ClientRequestError::Rejected { code, message }),
    }
}
