//! Domain errors as the JSON-RPC errors clients see (SPEC §3.6): the one place that decides each
//! failure's code. Messages are the domain errors' own `Display` texts, unchanged.

use crate::account::AccountError;
use crate::jsonrpc::RpcError;
use crate::turns::ThreadError;

impl From<AccountError> for RpcError {
    fn from(error: AccountError) -> Self {
        use AccountError::*;
        // Failures of the server itself are -32603; the request's own problems -32600.
        let code = match &error {
            SetExternalAuth(_) | SaveApiKey(_) | StartLoginServer(_) | DeviceCodeRequest(_)
            | Logout(_) | RateLimits(_) => RpcError::INTERNAL_ERROR,
            ExternalActive
            | ApiKeyLoginDisabled
            | ChatgptLoginDisabled
            | ExternalAuthDisabled
            | InvalidIdToken(_)
            | WorkspaceNotAllowed(_)
            | DeviceCodeNotEnabled
            | InvalidLoginId(_)
            | RateLimitsNeedAccount
            | RateLimitsNeedChatgpt
            | EmailRequired => RpcError::INVALID_REQUEST,
        };
        RpcError::new(code, error.to_string())
    }
}

impl From<ThreadError> for RpcError {
    fn from(error: ThreadError) -> Self {
        let code = match &error {
            ThreadError::Overloaded => RpcError::OVERLOADED,
            ThreadError::Store(_) => RpcError::INTERNAL_ERROR,
            _ => RpcError::INVALID_REQUEST,
        };
        RpcError::new(code, error.to_string())
    }
}

impl From<std::convert::Infallible> for RpcError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
