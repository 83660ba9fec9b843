//! Calls to the ChatGPT backend, all through one tower stack with 401 recovery (SPEC §9).

pub mod auth_retry;
pub mod client;
pub mod rate_limits;

pub use auth_retry::{
    AuthFailure, AuthRetryLayer, Credential, CredentialProvider, Refreshed, RefresherKind,
};
pub use client::BackendClient;

/// Why a backend call failed before producing a response.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The credentials could not be obtained or recovered (SPEC §7.3, §9.3, §10.4 texts).
    #[error("{0}")]
    Auth(AuthFailure),
    /// No answer within the per-attempt timeout.
    #[error("request timed out after {0}s")]
    Timeout(u64),
    /// Connection or protocol failure.
    #[error("{0}")]
    Transport(String),
}
