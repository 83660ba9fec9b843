//! Why a thread or turn method failed; `Display` is the TURNS §17–§18 text (Codex's where it has
//! one). The JSON-RPC code each gets is decided in `rpc::errors`.

use crate::store::{LeaseError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    #[error("invalid thread id: {0}")]
    InvalidThreadId(String),
    /// `thread/read` of a thread that does not exist.
    #[error("thread not loaded: {0}")]
    NotLoaded(String),
    /// `thread/resume` (and archive) of a thread that does not exist.
    #[error("no rollout found for thread id {0}")]
    NoRollout(String),
    /// `turn/start`, `turn/interrupt` of a thread that does not exist.
    #[error("thread not found: {0}")]
    NotFound(String),
    #[error("authentication required: log in with account/login/start first")]
    AuthenticationRequired,
    #[error("no model configured; set model.default")]
    NoModel,
    #[error("Server overloaded; retry later.")]
    Overloaded,
    #[error("no active turn to interrupt")]
    NoActiveTurn,
    #[error("expected active turn id {expected} but found {found}")]
    WrongTurn { expected: String, found: String },
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A `dynamicTools` entry refused (TURNS §24.1), with its text.
    #[error("{0}")]
    InvalidTool(String),
    #[error("thread name must not be empty")]
    NameEmpty,
    #[error("thread name must be at most 256 characters")]
    NameTooLong,
    /// Open in another live process (TURNS §25.3).
    #[error(transparent)]
    OpenElsewhere(LeaseError),
    /// The store cannot be used, or a write failed (TURNS §25.4).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LeaseError> for ThreadError {
    fn from(error: LeaseError) -> Self {
        match error {
            LeaseError::Store(error) => Self::Store(error),
            held => Self::OpenElsewhere(held),
        }
    }
}
