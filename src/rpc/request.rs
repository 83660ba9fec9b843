//! Running one request (SPEC §3.3): the method call through jsonrpsee's table with the client's
//! id kept byte for byte, a panic turned into `-32603`, the rendered reply with what the request
//! caused, and — for cancellable methods — the guard that answers `-32800` if the task is aborted.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use jsonrpsee::core::server::{ConnectionId, Extensions, MethodCallback};
use jsonrpsee::types::{Id, Params};

use crate::jsonrpc::RpcError;
use crate::jsonrpc::envelope;
use crate::peer::{AfterReply, Hub, Peer};
use crate::rpc::cancel::{RunningRequests, Ticket};
use crate::rpc::methods::RequestScope;

/// What a connection's request tasks share.
pub(super) struct Shared {
    pub hub: Arc<Hub>,
    pub peer: Peer,
    pub running: RunningRequests,
}

/// A request copied out of its frame, ready to run.
pub(super) struct Prepared {
    pub id: Box<str>,
    pub method: &'static str,
    pub callback: MethodCallback,
    pub params: Params<'static>,
    pub jsonrpc: bool,
    pub in_flight: Option<InFlight>,
    /// Cancellable requests hold a ticket from admission on.
    pub ticket: Option<Ticket>,
}

/// A rendered reply and what follows it.
pub(super) struct Completed {
    pub text: String,
    pub after: AfterReply,
    /// The request's in-flight slot, freed as the reply is queued.
    pub in_flight: Option<InFlight>,
}

/// One request counted against the connection's in-flight limit until dropped.
pub(super) struct InFlight(pub Peer);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.queue().finish_request();
    }
}

/// Where a cancelled request's `-32800` goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Queue,
    InBatch,
}

/// Held by a cancellable request's task while it runs, with its in-flight slot. Dropped with an
/// aborted task, it frees the slot, forgets the request and queues `-32800` (if it has a reply to
/// send).
struct CancelGuard {
    shared: Arc<Shared>,
    ticket: Ticket,
    in_flight: Option<InFlight>,
    /// `Some(jsonrpc)` while an aborted request must still be answered.
    reply: Option<bool>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        // The slot is free before the client can see the answer.
        drop(self.in_flight.take());
        let id = self.shared.running.finish(self.ticket);
        if let (Some(jsonrpc), Some(id)) = (self.reply, id) {
            let reply = envelope::failure(Some(&id), jsonrpc, &RpcError::request_cancelled());
            self.shared.peer.queue().push_text(reply);
        }
    }
}

/// The reply a cancelled request gets.
pub(super) fn cancelled_reply(request: &Prepared, peer: &Peer) -> String {
    envelope::failure(
        Some(&request.id),
        peer.reply_jsonrpc(request.jsonrpc),
        &RpcError::request_cancelled(),
    )
}

pub(super) fn answer(text: String) -> Completed {
    Completed {
        text,
        after: AfterReply::default(),
        in_flight: None,
    }
}

impl Shared {
    /// Runs a request. A cancellable one holds its guard from before the task is first polled,
    /// so an abort at any point answers `-32800` (a single request; a batch entry's is answered
    /// in the batch reply).
    pub fn run(
        self: Arc<Self>,
        mut request: Prepared,
        answer: Answer,
    ) -> BoxFuture<'static, Completed> {
        let Some(ticket) = request.ticket else {
            return async move { self.execute(request).await }.boxed();
        };
        let guard = CancelGuard {
            in_flight: request.in_flight.take(),
            reply: (answer == Answer::Queue).then(|| self.peer.reply_jsonrpc(request.jsonrpc)),
            shared: self.clone(),
            ticket,
        };
        async move {
            let mut guard = guard;
            let completed = self.execute(request).await;
            guard.reply = None;
            completed
        }
        .boxed()
    }

    /// Calls the handler through jsonrpsee and renders its reply with the client's raw id.
    pub async fn execute(&self, request: Prepared) -> Completed {
        let scope = Arc::new(RequestScope::new(
            self.peer.clone(),
            self.hub.clone(),
            request.jsonrpc,
        ));
        let mut extensions = Extensions::new();
        extensions.insert(scope.clone());
        // Ids jsonrpsee writes exactly as the client did go through it; others are spliced back in.
        let passthrough = envelope::passthrough_id(&request.id);
        let call = invoke(
            request.callback,
            passthrough.clone().unwrap_or(Id::Null),
            request.params,
            self.peer.id(),
            extensions,
        );
        let reply = match AssertUnwindSafe(call).catch_unwind().await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(RpcError::method_not_found(request.method)),
            Err(_) => {
                tracing::error!(method = request.method, "request handler panicked");
                Err(RpcError::internal("internal error"))
            }
        };
        let jsonrpc = self.peer.reply_jsonrpc(request.jsonrpc);
        let text = match reply {
            Ok(reply) if passthrough.is_some() => envelope::adopt(reply, jsonrpc),
            Ok(reply) => envelope::readdress(&request.id, jsonrpc, &reply),
            Err(error) => envelope::failure(Some(&request.id), jsonrpc, &error),
        };
        Completed {
            text,
            after: scope.take_after(),
            in_flight: request.in_flight,
        }
    }

    /// Queues the reply, then applies what the request caused.
    pub fn deliver(&self, completed: Completed) {
        drop(completed.in_flight);
        self.peer.queue().push_text(completed.text);
        completed.after.apply(&self.hub);
    }
}

/// Calls a jsonrpsee callback; returns the reply it serialized.
async fn invoke(
    callback: MethodCallback,
    id: Id<'static>,
    params: Params<'static>,
    connection: u64,
    extensions: Extensions,
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
