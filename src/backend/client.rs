//! The one HTTP client for backend calls: trace → [`AuthRetryLayer`] → process-wide concurrency
//! limit → per-attempt timeout → reqwest.
//!
//! reqwest's `Client` is itself a tower `Service`, so the stack is plain tower layers. Tracing logs
//! method, URL, status and latency; headers only at TRACE, where the bearer is marked sensitive and
//! prints as `Sensitive`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::{Method, Request, Response, Url};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use crate::backend::{AuthRetryLayer, BackendError, CredentialProvider};

/// Per-attempt timeout (SPEC §9.1).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct BackendClient {
    service: BoxCloneSyncService<Request, Response, BackendError>,
}

impl BackendClient {
    pub fn new(
        http: reqwest::Client,
        provider: Arc<dyn CredentialProvider>,
        attempt_timeout: Duration,
        max_concurrent: usize,
    ) -> Self {
        let timeout_secs = attempt_timeout.as_secs();
        // One semaphore for every clone: excess calls wait for a slot (before their timeout
        // starts) instead of opening ever more sockets.
        let service = ServiceBuilder::new()
            .layer(TraceLayer)
            .layer(AuthRetryLayer::new(provider))
            .map_err(move |err: BoxError| classify(err, timeout_secs))
            .layer(GlobalConcurrencyLimitLayer::new(max_concurrent))
            .timeout(attempt_timeout)
            .service(http);
        Self {
            service: BoxCloneSyncService::new(service),
        }
    }

    /// `GET url` with `headers` (plus the credential headers the stack adds).
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<Response, BackendError> {
        let url = Url::parse(url)
            .map_err(|err| BackendError::Transport(format!("invalid URL {url}: {err}")))?;
        let mut request = Request::new(Method::GET, url);
        *request.headers_mut() = headers;
        self.service.clone().oneshot(request).await
    }
}

fn classify(err: BoxError, timeout_secs: u64) -> BackendError {
    if err.is::<tower::timeout::error::Elapsed>() {
        return BackendError::Timeout(timeout_secs);
    }
    match err.downcast::<reqwest::Error>() {
        Ok(err) => BackendError::Transport(describe(&err)),
        Err(err) => BackendError::Transport(err.to_string()),
    }
}

/// reqwest's message plus its root cause (e.g. "connection refused").
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Logs each backend call.
#[derive(Clone, Copy)]
struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner }
    }
}

#[derive(Clone)]
struct Traced<S> {
    inner: S,
}

impl<S> Service<Request> for Traced<S>
where
    S: Service<Request, Response = Response, Error = BackendError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BoxFuture<'static, Result<Response, BackendError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method().clone();
        let url = request.url().clone();
        tracing::trace!(%method, %url, headers = ?request.headers(), "backend request");
        let started = Instant::now();
        let call = self.inner.call(request);
        async move {
            let result = call.await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(response) => {
                    tracing::debug!(%method, %url, status = response.status().as_u16(), elapsed_ms, "backend response");
                }
                Err(err) => tracing::debug!(%method, %url, error = %err, elapsed_ms, "backend call failed"),
            }
            result
        }
        .boxed()
    }
}
