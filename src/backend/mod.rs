//! Calls to the ChatGPT and OpenAI backends, all through one tower stack with 401 recovery
//! (SPEC §9, TURNS §20).

mod auth_retry;
mod client;
pub mod rate_limits;

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

pub use auth_retry::{
    AuthFailure, AuthRetryLayer, Credential, CredentialKind, CredentialProvider, Refreshed,
};
pub use client::{BackendClient, describe, http_client};

/// Per-attempt timeout of plain calls (SPEC §9.1); model requests wait longer for headers.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which credentials a request must be signed with (it was built for that route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// ChatGPT tokens (managed or host-owned), with the account header.
    Chatgpt,
    /// The account's API key.
    ApiKey,
    /// Nothing (`requires_openai_auth = false`).
    Anonymous,
}

/// One backend call: the HTTP request, how to sign it, and how long to wait for its response
/// headers.
pub struct BackendRequest {
    pub http: reqwest::Request,
    pub signing: Signing,
    pub headers_timeout: Duration,
    /// Set on a request sent ahead of the reply to the client request it serves: a 401 is
    /// recovered only once the gate opens (a refresh request or account notification must not
    /// precede that reply, SPEC §3.5), and stands if the gate is dropped instead.
    pub recover_after: Option<Gate>,
}

/// Opens (`Ok`) when the reply a request was sent ahead of has been queued; `Err` if that
/// reply became an error instead.
pub type Gate = futures::future::Shared<tokio::sync::oneshot::Receiver<()>>;

impl BackendRequest {
    /// `GET url` with the plain-call timeout.
    pub fn get(url: &str, signing: Signing) -> Result<Self, BackendError> {
        let url = Url::parse(url)
            .map_err(|err| BackendError::Transport(format!("invalid URL {url}: {err}")))?;
        Ok(Self {
            http: reqwest::Request::new(Method::GET, url),
            signing,
            headers_timeout: ATTEMPT_TIMEOUT,
            recover_after: None,
        })
    }

    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.http.headers_mut()
    }

    /// A copy for a retry (`None` for a streaming body).
    fn try_clone(&self) -> Option<Self> {
        Some(Self {
            http: self.http.try_clone()?,
            signing: self.signing,
            headers_timeout: self.headers_timeout,
            recover_after: self.recover_after.clone(),
        })
    }
}

/// Why a backend call failed before producing a response.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The credentials could not be obtained or recovered (SPEC §7.3, §9.3, §10.4 texts).
    #[error("{0}")]
    Auth(AuthFailure),
    /// No response headers within the attempt's timeout.
    #[error("request timed out after {0}s")]
    Timeout(u64),
    /// Connection or protocol failure.
    #[error("{0}")]
    Transport(String),
}
