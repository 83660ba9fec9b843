//! The 401 recovery layer: sign at send time, and on `401 Unauthorized` refresh once and retry once
//! (SPEC §7.4, §9.3).
//!
//! Credentials carry a generation. A request remembers the generation it was signed with; after a
//! 401 it joins the refresh already running for that generation, or starts one if the generation
//! is still current, or — if the credentials moved on meanwhile — simply re-signs. So N concurrent
//! 401s on one stale token cause exactly one refresh, and no request refreshes or retries twice.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tower::{Layer, Service, ServiceExt};

use crate::backend::{BackendError, BackendRequest, Signing};

/// Header naming the ChatGPT workspace.
pub const ACCOUNT_ID_HEADER: HeaderName = HeaderName::from_static("chatgpt-account-id");

/// What a request is signed with.
#[derive(Clone)]
pub struct Credential {
    pub bearer: SecretString,
    pub account_id: Option<String>,
    pub generation: u64,
    pub kind: CredentialKind,
}

/// Where a credential came from, which says how a 401 is recovered (SPEC §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// Host-owned tokens: ask the client that supplied them (`account/chatgptAuthTokens/refresh`).
    HostOwned,
    /// Managed tokens: re-read auth.json under its lock, else run the refresh_token grant.
    Managed,
    /// An API key: a 401 cannot be recovered.
    ApiKey,
}

impl CredentialKind {
    fn signs(self, signing: Signing) -> bool {
        match signing {
            Signing::Chatgpt => matches!(self, Self::HostOwned | Self::Managed),
            Signing::ApiKey => self == Self::ApiKey,
            Signing::Anonymous => false,
        }
    }

    fn refreshable(self) -> bool {
        matches!(self, Self::HostOwned | Self::Managed)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("bearer", &"[REDACTED]")
            .field("account_id", &self.account_id)
            .field("generation", &self.generation)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Why a request could not be (re)authenticated; `Display` is the SPEC §7.3/§9.3/§10.4 text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no connected client can refresh external auth tokens")]
    NoOwner,
    #[error("auth refresh request timed out after {0}s")]
    RefreshTimedOut(u64),
    #[error("auth refresh request failed: code={code} message={message}")]
    RefreshRejected { code: i64, message: String },
    #[error("invalid auth refresh response: {0}")]
    InvalidRefreshReply(String),
    /// A refresh reply's token does not parse (e.g. `invalid ID token format`), or its workspace
    /// is not allowed.
    #[error("{0}")]
    RefreshedTokens(String),
    /// A managed refresh grant failed (permanent or transient text, SPEC §10.4).
    #[error("{0}")]
    Grant(String),
    #[error(
        "Your access token could not be refreshed because you have since logged out or signed in to another account. Please sign in again."
    )]
    AccountChanged,
    #[error("codex account authentication required")]
    NoAccount,
    #[error("chatgpt authentication required")]
    ChatgptRequired,
    #[error("api key authentication required")]
    ApiKeyRequired,
    #[error("access token is not a valid header value")]
    BearerNotHeader,
    #[error("ChatGPT account id is not a valid header value")]
    AccountIdNotHeader,
    #[error("token refresh task failed: {0}")]
    RefreshTask(String),
}

/// The result of a refresh that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// New credentials are in place: re-sign and retry.
    Renewed,
    /// A login or logout replaced the credentials meanwhile: the 401 stands.
    Superseded,
}

/// The source of credentials for one process: the account state.
pub trait CredentialProvider: Send + Sync + 'static {
    /// Credentials to sign with now (may refresh proactively first).
    fn current(&self) -> BoxFuture<'_, Result<Credential, AuthFailure>>;

    /// The generation of the current credentials.
    fn generation(&self) -> u64;

    /// Recovers from a 401 received with `stale`. Called at most once per generation at a time.
    fn refresh(
        self: Arc<Self>,
        stale: Credential,
    ) -> BoxFuture<'static, Result<Refreshed, AuthFailure>>;
}

type Flight = Shared<BoxFuture<'static, Result<Refreshed, AuthFailure>>>;

/// The refresh in progress, keyed by the generation it replaces.
#[derive(Default)]
struct Flights {
    current: Mutex<Option<(u64, Flight)>>,
}

impl Flights {
    /// Joins or starts the refresh for `stale`; `Ok(Renewed)` when the caller should re-sign.
    async fn recover(
        &self,
        provider: &Arc<dyn CredentialProvider>,
        stale: &Credential,
    ) -> Result<Refreshed, AuthFailure> {
        let flight = {
            let mut current = self.current.lock().expect("flights lock");
            match &*current {
                Some((generation, flight)) if *generation == stale.generation => flight.clone(),
                _ if provider.generation() != stale.generation => return Ok(Refreshed::Renewed),
                _ => {
                    // Its own task: a refresh outlives the request that started it (others wait
                    // on it; a cancelled turn must not cancel their refresh).
                    let task = tokio::spawn(provider.clone().refresh(stale.clone()));
                    let flight = async move {
                        task.await
                            .unwrap_or_else(|err| Err(AuthFailure::RefreshTask(err.to_string())))
                    }
                    .boxed()
                    .shared();
                    *current = Some((stale.generation, flight.clone()));
                    flight
                }
            }
        };
        let outcome = flight.await;
        let mut current = self.current.lock().expect("flights lock");
        if matches!(&*current, Some((generation, _)) if *generation == stale.generation) {
            *current = None;
        }
        outcome
    }
}

/// Adds [`AuthRetry`] around a service.
#[derive(Clone)]
pub struct AuthRetryLayer {
    provider: Arc<dyn CredentialProvider>,
    flights: Arc<Flights>,
}

impl AuthRetryLayer {
    pub fn new(provider: Arc<dyn CredentialProvider>) -> Self {
        Self {
            provider,
            flights: Arc::default(),
        }
    }
}

impl<S> Layer<S> for AuthRetryLayer {
    type Service = AuthRetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthRetry {
            inner,
            provider: self.provider.clone(),
            flights: self.flights.clone(),
        }
    }
}

/// Signs each request and recovers once from a 401.
#[derive(Clone)]
pub struct AuthRetry<S> {
    inner: S,
    provider: Arc<dyn CredentialProvider>,
    flights: Arc<Flights>,
}

impl<S> Service<BackendRequest> for AuthRetry<S>
where
    S: Service<BackendRequest, Response = Response, Error = BackendError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BoxFuture<'static, Result<Response, BackendError>>;

    /// Always ready: each attempt waits for the inner service's readiness itself (`oneshot`), so
    /// a request holds no inner capacity (e.g. a concurrency slot) while it waits for a refresh.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BackendRequest) -> Self::Future {
        let inner = self.inner.clone();
        let provider = self.provider.clone();
        let flights = self.flights.clone();
        async move {
            if request.signing == Signing::Anonymous {
                return inner.oneshot(request).await;
            }
            let retry = request.try_clone();
            let gate = request.recover_after.clone();
            let credential = provider.current().await.map_err(BackendError::Auth)?;
            let response = inner.clone().oneshot(sign(request, &credential)?).await?;
            if response.status() != StatusCode::UNAUTHORIZED || !credential.kind.refreshable() {
                return Ok(response);
            }
            let Some(retry) = retry else {
                return Ok(response);
            };
            let response = buffer_body(response).await;
            if let Some(gate) = gate
                && gate.await.is_err()
            {
                // What the request was sent ahead of was refused: nothing is recovered for it.
                return Ok(response);
            }
            tracing::debug!(
                generation = credential.generation,
                "backend answered 401; recovering credentials"
            );
            match flights.recover(&provider, &credential).await {
                Ok(Refreshed::Renewed) => {}
                Ok(Refreshed::Superseded) => return Ok(response),
                Err(failure) => return Err(BackendError::Auth(failure)),
            }
            let Ok(renewed) = provider.current().await else {
                return Ok(response);
            };
            inner.oneshot(sign(retry, &renewed)?).await
        }
        .boxed()
    }
}

/// Reads a 401's body now, so that its connection goes back to the pool for the retry instead of
/// staying tied up while the refresh runs; the rebuilt response is returned if the 401 stands.
async fn buffer_body(response: Response) -> Response {
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    let mut rebuilt = http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Response::from(rebuilt)
}

/// Sets `Authorization` (marked sensitive) and `ChatGPT-Account-Id`, if `credential` is the kind
/// the request was built for.
fn sign(
    mut request: BackendRequest,
    credential: &Credential,
) -> Result<BackendRequest, BackendError> {
    if !credential.kind.signs(request.signing) {
        // The account changed mode between building the request and signing it.
        return Err(BackendError::Auth(match request.signing {
            Signing::ApiKey => AuthFailure::ApiKeyRequired,
            _ => AuthFailure::ChatgptRequired,
        }));
    }
    let mut bearer =
        HeaderValue::from_str(&format!("Bearer {}", credential.bearer.expose_secret()))
            .map_err(|_| BackendError::Auth(AuthFailure::BearerNotHeader))?;
    bearer.set_sensitive(true);
    let headers = request.http.headers_mut();
    headers.insert(AUTHORIZATION, bearer);
    headers.remove(ACCOUNT_ID_HEADER);
    if let Some(account_id) = &credential.account_id {
        // Never send the request without the workspace it belongs to.
        let value = HeaderValue::from_str(account_id)
            .map_err(|_| BackendError::Auth(AuthFailure::AccountIdNotHeader))?;
        headers.insert(ACCOUNT_ID_HEADER, value);
    }
    Ok(request)
}

#[cfg(test)]
mod tests;
