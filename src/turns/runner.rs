//! A running turn (DESIGN rule 8: a turn is a task, not a handler). `turn/start` replies at once;
//! this task then owns the turn until `turn/completed`: it sends model requests through the one
//! backend stack, streams what each response says to the thread's subscribers as each SSE event
//! is parsed, retries as TURNS §22 says, and ends the turn — completed, failed or interrupted.
//! Interrupts, steering and shutdown reach it through its cancel token and steer channel;
//! dropping the response body closes the upstream stream at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::Response;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::account::credentials::Credentials;
use crate::backend::{BackendClient, BackendError, rate_limits};
use crate::config::Config;
use crate::identity::Identity;
use crate::peer::{Hub, Notification};
use crate::protocol::{
    AccountRateLimitsUpdatedNotification, AgentMessageDeltaNotification, ErrorNotification,
    ItemCompletedNotification, ItemStartedNotification, RateLimitSnapshot,
    ReasoningSummaryPartAddedNotification, ReasoningSummaryTextDeltaNotification,
    ReasoningTextDeltaNotification, ThreadItem, ThreadTokenUsage,
    ThreadTokenUsageUpdatedNotification, TokenUsageBreakdown, TurnError, TurnNotification,
    TurnStatus, UserInput, methods,
};
use crate::turns::events::{FunctionCall, ResponseEvents, Step};
use crate::turns::failures::{self, AttemptFailure};
use crate::turns::request::{self, RequestHeaders, Route};
use crate::turns::thread::{LoadedThread, ThreadState, now_ms, user_message};

/// A response that sends nothing for this long is a lost stream (TURNS §28).
const STREAM_IDLE: Duration = Duration::from_secs(300);
/// How much of an error response's body is read for its message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What every turn shares.
pub struct TurnContext {
    pub config: Arc<Config>,
    pub identity: Arc<Identity>,
    pub credentials: Arc<Credentials>,
    pub backend: BackendClient,
    pub hub: Arc<Hub>,
}

/// One running turn, ready to run.
pub struct TurnTask {
    pub thread: Arc<LoadedThread>,
    pub turn_id: String,
    pub input: Vec<UserInput>,
    pub output_schema: Option<Value>,
    /// SPEC §4's User-Agent with the starter's `clientInfo`.
    pub user_agent: String,
    pub steers: mpsc::UnboundedReceiver<Vec<UserInput>>,
    pub cancel: CancellationToken,
    /// The turn's place under `turns.max_concurrent`, held until it ends.
    pub permit: OwnedSemaphorePermit,
}

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
    #[allow(dead_code)]
    calls: Vec<FunctionCall>,
}

/// The thread and turn a request belongs to, and how to reach the backend.
struct Scope<'a> {
    ctx: &'a TurnContext,
    thread: &'a LoadedThread,
    thread_id: String,
    turn_id: &'a str,
    user_agent: &'a str,
}

impl TurnTask {
    pub async fn run(mut self, ctx: Arc<TurnContext>) {
        let thread = self.thread.clone();
        let scope = Scope {
            ctx: &ctx,
            thread: &thread,
            thread_id: thread.id_text(),
            turn_id: &self.turn_id.clone(),
            user_agent: &self.user_agent.clone(),
        };
        scope.with_state(|state| {
            let turn = state
                .turn_mut(scope.turn_id)
                .map(|turn| turn.to_turn(false));
            if let Some(turn) = turn {
                state.publish(
                    methods::TURN_STARTED,
                    &TurnNotification {
                        thread_id: scope.thread_id.clone(),
                        turn,
                    },
                );
            }
        });
        let ending = if self.input.is_empty() {
            Ending::Completed
        } else {
            let input = std::mem::take(&mut self.input);
            scope.add_user_message(&input);
            self.drive(&scope).await
        };
        scope.finish(ending);
        drop(self.permit);
    }

    /// Model steps until the model is done, or the turn fails or is interrupted.
    async fn drive(&mut self, scope: &Scope<'_>) -> Ending {
        loop {
            match self.sample(scope).await {
                Sample::Done(response) => {
                    scope.publish_usage(response.usage);
                    if let Some(snapshot) = response.rate_limits {
                        scope.publish_rate_limits(snapshot);
                    }
                    return Ending::Completed;
                }
                Sample::Failed(error) => return Ending::Failed(error),
                Sample::Interrupted => return Ending::Interrupted,
                Sample::Steered(input) => scope.add_user_message(&input),
            }
        }
    }

    /// One model step: the request, with the stream retries of TURNS §22.3.
    async fn sample(&mut self, scope: &Scope<'_>) -> Sample {
        let body = scope.body(self.output_schema.as_ref());
        let model = &scope.ctx.config.model;
        let mut retries = 0;
        loop {
            let outcome = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Sample::Interrupted,
                Some(input) = self.steers.recv() => return Sample::Steered(input),
                outcome = scope.attempt(&body) => outcome,
            };
            let (cause, status) = match outcome {
                Ok(response) => return Sample::Done(response),
                Err(AttemptFailure::Fatal(error)) => return Sample::Failed(error),
                Err(AttemptFailure::Retryable { cause, status }) => (cause, status),
            };
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
}

impl Scope<'_> {
    fn with_state<T>(&self, change: impl FnOnce(&mut ThreadState) -> T) -> T {
        change(&mut self.thread.lock())
    }

    /// The request body for the thread as it is now.
    fn body(&self, output_schema: Option<&Value>) -> Bytes {
        self.with_state(|state| {
            let body = request::body(
                &state.settings,
                &self.ctx.config.model,
                &self.thread_id,
                state.replay_input(),
                &[],
                output_schema,
            );
            Bytes::from(serde_json::to_vec(&body).expect("request bodies serialize"))
        })
    }

    /// A user message joins the turn: its item (started and completed) and its replay.
    fn add_user_message(&self, input: &[UserInput]) {
        let now = now_ms();
        let item = ThreadItem::UserMessage {
            id: Uuid::now_v7().to_string(),
            content: input.to_vec(),
            started_at_ms: Some(now),
            completed_at_ms: Some(now),
        };
        self.with_state(|state| {
            state.publish(
                methods::ITEM_STARTED,
                &ItemStartedNotification {
                    item: with_times(item.clone(), Some(now), None),
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    started_at_ms: now,
                },
            );
            if let Some(turn) = state.turn_mut(self.turn_id) {
                turn.items.push(item.clone());
                turn.replay.push(user_message(input));
            }
            state.publish(
                methods::ITEM_COMPLETED,
                &ItemCompletedNotification {
                    item,
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    completed_at_ms: now,
                },
            );
        });
    }

    /// One stream attempt: the request (with TURNS §22.2's silent retries), then its events.
    async fn attempt(&self, body: &Bytes) -> Result<Sampled, AttemptFailure> {
        let response = self.send(body).await?;
        let rate_limits = rate_limits::from_headers(response.headers());
        let (usage, calls) = self.stream(response).await.inspect_err(|_| {
            // The response was handled: its rate limits go out before the error (TURNS §21).
            if let Some(snapshot) = &rate_limits {
                self.publish_rate_limits(snapshot.clone());
            }
        })?;
        Ok(Sampled {
            usage,
            rate_limits,
            calls,
        })
    }

    /// Sends the request until it gets response headers: 5xx and transport errors before
    /// headers are retried silently up to `model.request_max_retries` times.
    async fn send(&self, body: &Bytes) -> Result<Response, AttemptFailure> {
        let config = &self.ctx.config;
        let mut retries = 0;
        loop {
            let snapshot = self.ctx.credentials.snapshot().await;
            let Some(route) =
                Route::for_account(&snapshot, config.requires_openai_auth, &config.model)
            else {
                return Err(AttemptFailure::unauthorized(
                    crate::turns::error::ThreadError::AuthenticationRequired.to_string(),
                ));
            };
            let headers = RequestHeaders {
                originator: self.ctx.identity.originator(),
                user_agent: self.user_agent,
                thread_id: &self.thread_id,
            };
            let request = request::build(&route, &headers, body.clone())
                .map_err(AttemptFailure::connection_failed)?;
            let retry_allowed = retries < config.model.request_max_retries;
            match self.ctx.backend.send(request).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_server_error() && retry_allowed => {
                    tracing::debug!(status = %response.status(), "model request failed; retrying");
                }
                Ok(response) => return Err(self.refused(response).await),
                Err(BackendError::Auth(failure)) => {
                    return Err(AttemptFailure::unauthorized(failure.to_string()));
                }
                Err(error) if retry_allowed => {
                    tracing::debug!(%error, "model request failed; retrying");
                }
                Err(error) => return Err(AttemptFailure::connection_failed(error)),
            }
            retries += 1;
            tokio::time::sleep(failures::backoff(config.model.retry_base_delay, retries)).await;
        }
    }

    /// A non-success answer: its rate limits go out, then it becomes a failure.
    async fn refused(&self, response: Response) -> AttemptFailure {
        let status = response.status();
        if let Some(snapshot) = rate_limits::from_headers(response.headers()) {
            self.publish_rate_limits(snapshot);
        }
        let body = read_limited(response, ERROR_BODY_LIMIT).await;
        AttemptFailure::from_status(status, &body)
    }

    /// Reads the SSE body, publishing each event's notifications as it is parsed.
    async fn stream(
        &self,
        response: Response,
    ) -> Result<(Option<TokenUsageBreakdown>, Vec<FunctionCall>), AttemptFailure> {
        let mut events = response.bytes_stream().eventsource();
        let mut reader = ResponseEvents::default();
        let mut started: HashMap<String, i64> = HashMap::new();
        let mut calls = Vec::new();
        loop {
            let event = match tokio::time::timeout(STREAM_IDLE, events.next()).await {
                Err(_) => return Err(AttemptFailure::disconnected("idle timeout waiting for SSE")),
                Ok(None) => return Err(AttemptFailure::closed_early()),
                Ok(Some(Err(error))) => return Err(AttemptFailure::disconnected(error)),
                Ok(Some(Ok(event))) => event,
            };
            if event.data.is_empty() || event.data == "[DONE]" {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                tracing::debug!(
                    event = event.event,
                    "ignoring an SSE event that is not JSON"
                );
                continue;
            };
            for step in reader.handle(&value, || Uuid::now_v7().to_string()) {
                match step {
                    Step::Completed { usage } => return Ok((usage, calls)),
                    Step::Failed(failure) => return Err(AttemptFailure::from_event(&failure)),
                    Step::FunctionCall(call) => calls.push(call),
                    step => self.apply(step, &mut started),
                }
            }
        }
    }

    /// Publishes (and, for completed items, records) one step of the stream.
    fn apply(&self, step: Step, started: &mut HashMap<String, i64>) {
        let thread_id = self.thread_id.clone();
        let turn_id = self.turn_id.to_owned();
        self.with_state(|state| match step {
            Step::ItemStarted(item) => {
                let now = now_ms();
                started.insert(item.id().to_owned(), now);
                state.publish(
                    methods::ITEM_STARTED,
                    &ItemStartedNotification {
                        item: with_times(item, Some(now), None),
                        thread_id,
                        turn_id,
                        started_at_ms: now,
                    },
                );
            }
            Step::AgentDelta { item_id, delta } => state.publish(
                methods::AGENT_MESSAGE_DELTA,
                &AgentMessageDeltaNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    delta,
                },
            ),
            Step::SummaryPartAdded {
                item_id,
                summary_index,
            } => state.publish(
                methods::REASONING_SUMMARY_PART_ADDED,
                &ReasoningSummaryPartAddedNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    summary_index,
                },
            ),
            Step::SummaryDelta {
                item_id,
                delta,
                summary_index,
            } => state.publish(
                methods::REASONING_SUMMARY_TEXT_DELTA,
                &ReasoningSummaryTextDeltaNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    delta,
                    summary_index,
                },
            ),
            Step::ReasoningDelta {
                item_id,
                delta,
                content_index,
            } => state.publish(
                methods::REASONING_TEXT_DELTA,
                &ReasoningTextDeltaNotification {
                    thread_id,
                    turn_id,
                    item_id,
                    delta,
                    content_index,
                },
            ),
            Step::ItemCompleted { item, replay } => {
                let now = now_ms();
                let started_at = started.get(item.id()).copied();
                let item = with_times(item, started_at, Some(now));
                if let Some(turn) = state.turn_mut(&turn_id) {
                    turn.items.push(item.clone());
                    turn.replay.extend(replay);
                }
                state.publish(
                    methods::ITEM_COMPLETED,
                    &ItemCompletedNotification {
                        item,
                        thread_id,
                        turn_id,
                        completed_at_ms: now,
                    },
                );
            }
            Step::FunctionCall(_) | Step::Completed { .. } | Step::Failed(_) => {}
        });
    }

    fn publish_usage(&self, usage: Option<TokenUsageBreakdown>) {
        let Some(last) = usage else { return };
        let context_window = self.with_state(|state| {
            self.ctx
                .config
                .model
                .entry(&state.settings.model)
                .and_then(|entry| entry.context_window)
        });
        self.with_state(|state| {
            state.usage_total += last;
            let total = state.usage_total;
            state.publish(
                methods::TOKEN_USAGE_UPDATED,
                &ThreadTokenUsageUpdatedNotification {
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                    token_usage: ThreadTokenUsage {
                        total,
                        last,
                        model_context_window: context_window,
                    },
                },
            );
        });
    }

    /// `account/rateLimits/updated` goes to every initialized connection (SPEC §6).
    fn publish_rate_limits(&self, snapshot: RateLimitSnapshot) {
        self.ctx.hub.send(&Notification::new(
            methods::RATE_LIMITS_UPDATED,
            &AccountRateLimitsUpdatedNotification {
                rate_limits: snapshot,
            },
        ));
    }

    fn publish_error(&self, error: TurnError, will_retry: bool) {
        self.with_state(|state| {
            state.publish(
                methods::ERROR,
                &ErrorNotification {
                    error,
                    will_retry,
                    thread_id: self.thread_id.clone(),
                    turn_id: self.turn_id.to_owned(),
                },
            );
        });
    }

    /// Records how the turn ended and says so: `error` (if it failed), then `turn/completed`.
    fn finish(&self, ending: Ending) {
        let (status, error) = match ending {
            Ending::Completed => (TurnStatus::Completed, None),
            Ending::Failed(error) => (TurnStatus::Failed, Some(error)),
            Ending::Interrupted => (TurnStatus::Interrupted, None),
        };
        if let Some(error) = &error {
            self.publish_error(error.clone(), false);
        }
        let now = now_ms();
        self.with_state(|state| {
            state.updated_at = now / 1000;
            if state
                .running
                .as_ref()
                .is_some_and(|running| running.id == self.turn_id)
            {
                state.running = None;
            }
            let Some(turn) = state.turn_mut(self.turn_id) else {
                return;
            };
            turn.finish(status, error, now);
            let turn = turn.to_turn(false);
            state.publish(
                methods::TURN_COMPLETED,
                &TurnNotification {
                    thread_id: self.thread_id.clone(),
                    turn,
                },
            );
        });
    }
}

/// An item with its start and completion times set.
fn with_times(item: ThreadItem, started: Option<i64>, completed: Option<i64>) -> ThreadItem {
    match item {
        ThreadItem::UserMessage { id, content, .. } => ThreadItem::UserMessage {
            id,
            content,
            started_at_ms: started,
            completed_at_ms: completed,
        },
        ThreadItem::AgentMessage { id, text, .. } => ThreadItem::AgentMessage {
            id,
            text,
            started_at_ms: started,
            completed_at_ms: completed,
        },
        ThreadItem::Reasoning {
            id,
            summary,
            content,
            ..
        } => ThreadItem::Reasoning {
            id,
            summary,
            content,
            started_at_ms: started,
            completed_at_ms: completed,
        },
    }
}

/// Up to `limit` bytes of a body, as text (lossy).
async fn read_limited(response: Response, limit: usize) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
