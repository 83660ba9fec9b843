//! The one HTTP client for backend calls: trace → [`AuthRetryLayer`] → process-wide concurrency
//! limit → per-attempt header timeout → reqwest.
//!
//! Tracing logs method, URL, status and latency; headers only at TRACE, where the bearer is marked
//! sensitive and prints as `Sensitive`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Response;
use reqwest::header::HeaderMap;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::backend::{AuthRetryLayer, BackendError, BackendRequest, CredentialProvider, Signing};
use crate::config::BackendConfig;

/// The process's reqwest client (connection pool), shared by the backend stack and the OAuth calls.
/// At most `idle_connections` per host stay open between requests, each for `idle_timeout`: a
/// burst of streaming turns would otherwise leave one idle socket, with its buffers, per turn it
/// ran at once.
pub fn http_client(config: &BackendConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(config.idle_connections)
        .pool_idle_timeout(config.idle_timeout)
        .build()
}

#[derive(Clone)]
pub struct BackendClient {
    service: BoxCloneSyncService<BackendRequest, Response, BackendError>,
}

impl BackendClient {
    pub fn new(
        http: reqwest::Client,
        provider: Arc<dyn CredentialProvider>,
        max_concurrent: usize,
    ) -> Self {
        // One semaphore for every clone: excess calls wait for a slot (before their timeout
        // starts) instead of opening ever more sockets.
        let service = ServiceBuilder::new()
            .layer(TraceLayer)
            .layer(AuthRetryLayer::new(provider))
            .layer(GlobalConcurrencyLimitLayer::new(max_concurrent))
            .service(Send { http });
        Self {
            service: BoxCloneSyncService::new(service),
        }
    }

    /// `GET url` with `headers` (plus the ChatGPT credential headers the stack adds).
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<Response, BackendError> {
        let mut request = BackendRequest::get(url, Signing::Chatgpt)?;
        *request.headers_mut() = headers;
        self.send(request).await
    }

    /// Sends `request` through the stack; resolves when its response headers arrived (the body
    /// streams afterwards).
    pub async fn send(&self, request: BackendRequest) -> Result<Response, BackendError> {
        self.service.clone().oneshot(request).await
    }
}

/// The innermost service: reqwest, bounded by the request's header timeout.
#[derive(Clone)]
struct Send {
    http: reqwest::Client,
}

impl Service<BackendRequest> for Send {
    type Response = Response;
    type Error = BackendError;
    type Future = BoxFuture<'static, Result<Response, BackendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BackendRequest) -> Self::Future {
        let timeout = request.headers_timeout;
        let call = self.http.execute(request.http);
        async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(err)) => Err(BackendError::Transport(describe(&err))),
                Err(_) => Err(BackendError::Timeout(timeout.as_secs())),
            }
        }
        .boxed()
    }
}

/// reqwest's message plus its root cause (e.g. "connection refused").
pub fn describe(err: &reqwest::Error) -> String {
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

impl<S> Service<BackendRequest> for Traced<S>
where
    S: Service<BackendRequest, Response = Response, Error = BackendError>,
    S::Future: std::marker::Send + 'static,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BoxFuture<'static, Result<Response, BackendError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: BackendRequest) -> Self::Future {
        let method = request.http.method().clone();
        let url = request.http.url().clone();
        tracing::trace!(%method, %url, headers = ?request.http.headers(), "backend request");
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
