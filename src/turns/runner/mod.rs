//! A running turn (DESIGN rule 8: a turn is a task, not a handler). It starts while `turn/start`
//! stores the turn, so its first model request overlaps that commit, but it publishes nothing
//! until the reply is queued (and ends unseen, its request cut, if the reply is an error); it
//! then owns the turn until `turn/completed`: it sends model requests through the one
//! backend stack, streams what each response says to the thread's subscribers as each SSE event
//! is parsed, runs the host tools a response asks for, retries as TURNS §22 says, and ends the
//! turn — completed, failed or interrupted. Interrupts, steering and shutdown reach it through
//! its cancel token and steer channel; dropping a response body closes the upstream at once.

mod announce;
mod attempt;
mod record;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{Either, join_all};
use reqwest::Response;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::account::credentials::Credentials;
use crate::backend::{BackendClient, Gate};
use crate::config::Config;
use crate::identity::Identity;
use crate::peer::{Hub, Peer};
use crate::protocol::{RateLimitSnapshot, ThreadItem, TokenUsageBreakdown, TurnError, UserInput};
use crate::store::Store;
use crate::turns::events::FunctionCall;
use crate::turns::failures::{self, AttemptFailure};
use crate::turns::thread::LoadedThread;
use crate::turns::tools::{self, CallTarget};

/// What every turn shares.
pub struct TurnContext {
    pub config: Arc<Config>,
    pub identity: Arc<Identity>,
    pub credentials: Arc<Credentials>,
    pub backend: BackendClient,
    pub hub: Arc<Hub>,
    /// Told the thread's id whenever a turn ends: it may now be idle (and unloaded).
    pub ended: mpsc::UnboundedSender<uuid::Uuid>,
}

/// The turn's first user message, already stored with the turn; the task announces it.
pub struct FirstMessage {
    pub item: ThreadItem,
    pub replay: Value,
}

/// One running turn, ready to run.
pub struct TurnTask {
    pub thread: Arc<LoadedThread>,
    /// `None` for an ephemeral thread.
    pub store: Option<Store>,
    pub turn_id: String,
    /// `None` for a turn without input (it completes at once).
    pub first: Option<FirstMessage>,
    pub output_schema: Option<Value>,
    /// The connection that started the turn: host tool calls go there.
    pub starter: Peer,
    /// SPEC §4's User-Agent with the starter's `clientInfo`.
    pub user_agent: String,
    pub steers: mpsc::UnboundedReceiver<Vec<UserInput>>,
    pub cancel: CancellationToken,
    /// Cancelled once the turn has ended.
    pub finished: CancellationToken,
    /// The turn's place under `turns.max_concurrent`, held until it ends.
    pub permit: OwnedSemaphorePermit,
    /// Opens once the `turn/start` reply is queued (the turn is stored, for a stored thread);
    /// dropped if that reply is an error: the turn never began. Nothing is published before.
    pub begun: Gate,
}

/// The first model request of a turn, sent while the turn's first write is still committing.
type EarlySend<'a> = Pin<Box<dyn Future<Output = Result<Response, AttemptFailure>> + Send + 'a>>;

/// A step's request body and its first attempt, already sent.
type Early<'a> = (Bytes, EarlySend<'a>);

/// How a turn ended.
enum Ending {
    Completed,
    Failed(TurnError),
    Interrupted,
}

/// How one model step (a request with its retries) ended.
enum Sample {
    Done(Sampled),
    Failed(TurnError),
    Interrupted,
    Steered(Vec<UserInput>),
}

/// What a completed response brought besides its streamed items.
struct Sampled {
    usage: Option<TokenUsageBreakdown>,
    rate_limits: Option<RateLimitSnapshot>,
    calls: Vec<FunctionCall>,
}

/// The thread and turn a request belongs to, and how to reach the backend.
struct Scope<'a> {
    ctx: &'a TurnContext,
    thread: &'a LoadedThread,
    store: Option<&'a Store>,
    thread_id: String,
    turn_id: &'a str,
    user_agent: &'a str,
}

impl TurnTask {
    pub async fn run(mut self, ctx: Arc<TurnContext>) {
        let (thread, store) = (self.thread.clone(), self.store.clone());
        let (turn_id, user_agent) = (self.turn_id.clone(), self.user_agent.clone());
        let scope = Scope {
            ctx: &ctx,
            thread: &thread,
            store: store.as_ref(),
            thread_id: thread.id_text(),
            turn_id: &turn_id,
            user_agent: &user_agent,
        };
        let first = self.first.take();
        // The model need not wait for the turn's first commit, only the turn's events do: its
        // first request goes out now, and the model's first token is usually further away than
        // the commit.
        let early = first.as_ref().map(|first| {
            scope.keep_first_message(first);
            let body = scope.body(self.output_schema.as_ref());
            let sent = Box::pin(scope.send(body.clone(), Some(self.begun.clone())));
            (body, sent as EarlySend<'_>)
        });
        let (begun, early) = match early {
            None => (self.begun.clone().await.is_ok(), None),
            Some((body, sent)) => match futures::future::select(self.begun.clone(), sent).await {
                Either::Left((begun, sent)) => (begun.is_ok(), Some((body, sent))),
                Either::Right((response, begun)) => {
                    let sent = Box::pin(futures::future::ready(response)) as EarlySend<'_>;
                    (begun.await.is_ok(), Some((body, sent)))
                }
            },
        };
        if !begun {
            // `turn/start` failed: the turn never existed, and its request is dropped unsent or
            // cut.
            self.finished.cancel();
            return;
        }
        scope.publish_started();
        let ending = match first {
            None => Ending::Completed,
            Some(first) => {
                scope.announce_first_message(first);
                self.drive(&scope, early).await
            }
        };
        scope.finish(ending).await;
        self.finished.cancel();
        drop(self.permit);
        let _ = ctx.ended.send(thread.id);
    }

    /// Model steps until the model answers without tool calls, or the turn fails or is
    /// interrupted.
    async fn drive(&mut self, scope: &Scope<'_>, mut early: Option<Early<'_>>) -> Ending {
        let max_rounds = scope.ctx.config.model.max_tool_rounds;
        let mut rounds = 0;
        loop {
            match self.sample(scope, early.take()).await {
                Sample::Done(response) => {
                    scope.publish_usage(response.usage);
                    if let Some(snapshot) = response.rate_limits {
                        scope.publish_rate_limits(snapshot);
                    }
                    if response.calls.is_empty() {
                        return Ending::Completed;
                    }
                    if rounds == max_rounds {
                        return Ending::Failed(failures::other(format!(
                            "tool call round limit reached ({max_rounds})"
                        )));
                    }
                    rounds += 1;
                    let steered = match self.run_tools(scope, &response.calls).await {
                        Ok(Some(steered)) => steered,
                        Ok(None) => return Ending::Interrupted,
                        Err(error) => return Ending::Failed(error),
                    };
                    for input in steered {
                        if let Err(error) = scope.add_user_message(&input).await {
                            return Ending::Failed(error);
                        }
                    }
                }
                Sample::Failed(error) => return Ending::Failed(error),
                Sample::Interrupted => return Ending::Interrupted,
                Sample::Steered(input) => {
                    if let Err(error) = scope.add_user_message(&input).await {
                        return Ending::Failed(error);
                    }
                }
            }
        }
    }

    /// One model step: the request (its first attempt perhaps sent `early`), with the stream
    /// retries of TURNS §22.3.
    async fn sample(&mut self, scope: &Scope<'_>, early: Option<Early<'_>>) -> Sample {
        let (body, mut early) = match early {
            Some((body, sent)) => (body, Some(sent)),
            None => (scope.body(self.output_schema.as_ref()), None),
        };
        let model = &scope.ctx.config.model;
        let mut retries = 0;
        loop {
            let replay_mark = scope.replay_len();
            let outcome = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Sample::Interrupted,
                Some(input) = self.steers.recv() => return Sample::Steered(input),
                outcome = scope.attempt(&body, early.take()) => outcome,
            };
            let (cause, status) = match outcome {
                Ok(response) => return Sample::Done(response),
                Err(AttemptFailure::Fatal(error)) => return Sample::Failed(error),
                Err(AttemptFailure::Retryable { cause, status }) => (cause, status),
            };
            // The attempt is abandoned: what it added is not history.
            if let Err(error) = scope.truncate_replay(replay_mark).await {
                return Sample::Failed(error);
            }
            retries += 1;
            if retries > model.stream_max_retries {
                return Sample::Failed(failures::retries_exhausted(cause, status));
            }
            scope.publish_error(
                failures::reconnecting(retries, model.stream_max_retries, &cause, status),
                true,
            );
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Sample::Interrupted,
                Some(input) = self.steers.recv() => return Sample::Steered(input),
                _ = tokio::time::sleep(failures::backoff(model.retry_base_delay, retries)) => {}
            }
        }
    }

    /// Sends every call of a response at once and records their outputs, in call order (TURNS
    /// §24.2–§24.3). User messages that arrive meanwhile are returned, to follow the outputs.
    /// `None` if the turn was interrupted (the calls are abandoned).
    async fn run_tools(
        &mut self,
        scope: &Scope<'_>,
        calls: &[FunctionCall],
    ) -> Result<Option<Vec<Vec<UserInput>>>, TurnError> {
        let tools = scope.tools();
        let target = CallTarget {
            starter: &self.starter,
            thread_id: &scope.thread_id,
            turn_id: scope.turn_id,
            tools: &tools,
            timeout: scope.ctx.config.model.tool_call_timeout,
        };
        let started: Vec<_> = calls
            .iter()
            .map(|call| tools::start_call(&target, call))
            .collect();
        let outputs = join_all(started);
        tokio::pin!(outputs);
        let mut steered = Vec::new();
        let outputs = loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Ok(None),
                Some(input) = self.steers.recv() => steered.push(input),
                outputs = &mut outputs => break outputs,
            }
        };
        scope.record_outputs(calls, outputs).await?;
        Ok(Some(steered))
    }
}
