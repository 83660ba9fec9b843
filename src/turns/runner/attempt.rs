//! One stream attempt of a turn: the model request through the backend stack (TURNS §20, with
//! §22.2's silent retries), then its SSE body, each event turned into steps and applied as soon
//! as it is parsed. Nothing here buffers a response.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::Response;
use uuid::Uuid;

use super::{EarlySend, Sampled, Scope};
use crate::backend::{BackendError, Gate, rate_limits};
use crate::protocol::TokenUsageBreakdown;
use crate::turns::error::ThreadError;
use crate::turns::events::{FunctionCall, ResponseEvents, Step};
use crate::turns::failures::{self, AttemptFailure};
use crate::turns::request::{self, RequestHeaders, Route};

/// A response that sends nothing for this long is a lost stream (TURNS §28).
const STREAM_IDLE: Duration = Duration::from_secs(300);
/// How much of an error response's body is read for its message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

impl Scope<'_> {
    /// One stream attempt: the request (or the one sent `early`), then its events.
    pub(super) async fn attempt(
        &self,
        body: &Bytes,
        early: Option<EarlySend<'_>>,
    ) -> Result<Sampled, AttemptFailure> {
        let response = match early {
            Some(sent) => sent.await?,
            None => self.send(body.clone(), None).await?,
        };
        if !response.status().is_success() {
            return Err(self.refused(response).await);
        }
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
    /// headers are retried silently up to `model.request_max_retries` times. The account is
    /// read again for every request (TURNS §20.1). Any other answer is returned as it is, so
    /// nothing is published here: a request sent ahead of the `turn/start` reply recovers a 401
    /// only once `gate` opens.
    pub(super) async fn send(
        &self,
        body: Bytes,
        gate: Option<Gate>,
    ) -> Result<Response, AttemptFailure> {
        let config = &self.ctx.config;
        let mut retries = 0;
        loop {
            let snapshot = self.ctx.credentials.snapshot().await;
            let Some(route) =
                Route::for_account(&snapshot, config.requires_openai_auth, &config.model)
            else {
                return Err(AttemptFailure::unauthorized(
                    ThreadError::AuthenticationRequired.to_string(),
                ));
            };
            let headers = RequestHeaders {
                originator: self.ctx.identity.originator(),
                user_agent: self.user_agent,
                thread_id: &self.thread_id,
            };
            let mut request = request::build(&route, &headers, body.clone())
                .map_err(AttemptFailure::connection_failed)?;
            request.recover_after = gate.clone();
            let retry_allowed = retries < config.model.request_max_retries;
            match self.ctx.backend.send(request).await {
                Ok(response) if response.status().is_server_error() && retry_allowed => {
                    tracing::debug!(status = %response.status(), "model request failed; retrying");
                }
                // A refusal's rate limits and error are published by the caller: a request sent
                // ahead of the `turn/start` reply publishes nothing itself.
                Ok(response) => return Ok(response),
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

    /// Reads the SSE body, applying each event's steps as it is parsed.
    async fn stream(
        &self,
        response: Response,
    ) -> Result<(Option<TokenUsageBreakdown>, Vec<FunctionCall>), AttemptFailure> {
        let mut events = sseer::EventStream::new(response.bytes_stream());
        let mut reader = ResponseEvents::default();
        let mut started: HashMap<String, i64> = HashMap::new();
        let mut calls = Vec::new();
        // One timer for the stream: when it fires, it is re-armed from the last event unless
        // the stream really was silent that long (cheaper than a timer per event).
        let idle = tokio::time::sleep(STREAM_IDLE);
        tokio::pin!(idle);
        let mut last_event = tokio::time::Instant::now();
        loop {
            let event = tokio::select! {
                biased;
                event = events.next() => event,
                () = &mut idle => {
                    if last_event.elapsed() >= STREAM_IDLE {
                        return Err(AttemptFailure::disconnected("idle timeout waiting for SSE"));
                    }
                    idle.as_mut().reset(last_event + STREAM_IDLE);
                    continue;
                }
            };
            last_event = tokio::time::Instant::now();
            let event = match event {
                None => return Err(AttemptFailure::closed_early()),
                Some(Err(error)) => return Err(AttemptFailure::disconnected(error)),
                Some(Ok(event)) => event,
            };
            if event.data.is_empty() || event.data == "[DONE]" {
                continue;
            }
            let Some(steps) = reader.handle_text(&event.data, || Uuid::now_v7().to_string()) else {
                tracing::debug!(
                    event = &*event.event,
                    "ignoring an SSE event that is not JSON"
                );
                continue;
            };
            for step in steps {
                match step {
                    Step::Completed { usage } => return Ok((usage, calls)),
                    Step::Failed(failure) => return Err(AttemptFailure::from_event(&failure)),
                    Step::FunctionCall(call) => {
                        self.record_call(&call)
                            .await
                            .map_err(AttemptFailure::Fatal)?;
                        calls.push(call);
                    }
                    step => self
                        .apply(step, &mut started)
                        .await
                        .map_err(AttemptFailure::Fatal)?,
                }
            }
        }
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
