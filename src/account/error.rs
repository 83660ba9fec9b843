//! Why an account method failed. `Display` is the SPEC §5 text the client sees; the JSON-RPC
//! code each variant gets is decided in one place, `rpc::errors`.

use crate::account::jwt::JwtError;
use crate::account::store::StoreError;
use crate::backend::rate_limits::FetchError;
use crate::login::browser::PortInUse;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it."
    )]
    ExternalActive,
    #[error("API key login is disabled. Use ChatGPT login instead.")]
    ApiKeyLoginDisabled,
    #[error("ChatGPT login is disabled. Use API key login instead.")]
    ChatgptLoginDisabled,
    #[error("External ChatGPT auth is disabled. Use API key login instead.")]
    ExternalAuthDisabled,
    /// Seed token shape: the id token does not parse.
    #[error("invalid id token: {0}")]
    InvalidIdToken(JwtError),
    /// Later token shape: the access token does not parse.
    #[error("failed to set external auth: {0}")]
    SetExternalAuth(JwtError),
    /// `External auth must use …` (SPEC §5.3).
    #[error("{0}")]
    WorkspaceNotAllowed(String),
    #[error("failed to save api key: {0}")]
    SaveApiKey(StoreError),
    #[error("failed to start login server: {0}")]
    StartLoginServer(LoginServerError),
    #[error(
        "device code login is not enabled for this Codex server. Use the browser login or verify the server URL."
    )]
    DeviceCodeNotEnabled,
    #[error("failed to request device code: {0}")]
    DeviceCodeRequest(String),
    #[error("invalid login id: {0}")]
    InvalidLoginId(String),
    #[error("logout failed: {0}")]
    Logout(StoreError),
    #[error("codex account authentication required to read rate limits")]
    RateLimitsNeedAccount,
    #[error("chatgpt authentication required to read rate limits")]
    RateLimitsNeedChatgpt,
    #[error("failed to fetch codex rate limits: {0}")]
    RateLimits(FetchError),
    #[error("email and plan type are required for chatgpt authentication")]
    EmailRequired,
}

/// Why the browser login's callback server could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoginServerError {
    #[error(transparent)]
    PortInUse(#[from] PortInUse),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
