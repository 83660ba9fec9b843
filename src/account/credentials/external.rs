//! The refresh request to the client that owns host-owned tokens (SPEC §7): the server→client
//! request, its failures, and reading its reply.

use std::time::Duration;

use serde_json::Value;

use crate::account::tokens::ExternalTokens;
use crate::backend::AuthFailure;
use crate::config::WorkspaceIds;
use crate::peer::{ClientRequestError, Peer};
use crate::protocol::{
    ChatgptAuthTokensRefreshParams, ChatgptAuthTokensRefreshReason, ExternalTokenParams, methods,
};

/// Sends `account/chatgptAuthTokens/refresh` to `owner` and waits at most `timeout` for its reply.
pub(super) async fn ask_owner(
    owner: &Peer,
    previous_account_id: Option<String>,
    timeout: Duration,
) -> Result<Value, AuthFailure> {
    let params = serde_json::to_value(ChatgptAuthTokensRefreshParams {
        reason: ChatgptAuthTokensRefreshReason::Unauthorized,
        previous_account_id,
    })
    .expect("refresh params serialize");
    tracing::info!(
        connection = owner.id(),
        "asking the owning client to refresh external tokens"
    );
    owner
        .request(methods::TOKENS_REFRESH, params, timeout)
        .await
        .map_err(|err| match err {
            ClientRequestError::TimedOut(_) => AuthFailure::RefreshTimedOut(timeout.as_secs()),
            ClientRequestError::Rejected { code, message } => {
                AuthFailure::RefreshRejected { code, message }
            }
            ClientRequestError::Disconnected => AuthFailure::NoOwner,
        })
}

/// Reads a refresh reply (either token shape) and checks its workspace.
pub(super) fn read_reply(
    reply: Value,
    forced_workspace: Option<&WorkspaceIds>,
) -> Result<ExternalTokens, AuthFailure> {
    let params: ExternalTokenParams = serde_json::from_value(reply)
        .map_err(|err| AuthFailure::InvalidRefreshReply(err.to_string()))?;
    let tokens = ExternalTokens::from_params(&params)
        .map_err(|err| AuthFailure::RefreshedTokens(err.parse_error().to_string()))?;
    if let Some(forced) = forced_workspace {
        tokens
            .check_refresh_workspace(forced)
            .map_err(AuthFailure::RefreshedTokens)?;
    }
    Ok(tokens)
}
