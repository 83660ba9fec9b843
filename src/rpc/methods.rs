//! The method table: every JSON-RPC method authbridge answers, as a jsonrpsee [`Methods`] table.
//!
//! Each entry decodes its params (`-32602` with the decoder's detail), checks the handshake
//! (`Not initialized`), then calls a plain async handler. Handlers receive the [`Caller`] the
//! connection put in the request's `Extensions`; their errors are [`RpcError`]s.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use jsonrpsee::core::server::{Methods, RpcModule};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::account::AccountService;
use crate::error::RpcError;
use crate::identity::{self, Identity, is_header_safe};
use crate::peer::Caller;
use crate::protocol::{
    CancelLoginAccountParams, GetAccountParams, GetAccountRateLimitsParams, InitializeParams,
    InitializeResponse, LoginAccountParams, LogoutAccountParams, methods,
};
use crate::rpc::connection::RequestScope;

/// Longest `clientInfo.name`, `title` and `version`: they end up in every backend User-Agent.
const MAX_CLIENT_INFO_CHARS: usize = 256;

/// Everything handlers share within one server.
pub struct HandlerContext {
    pub identity: Arc<Identity>,
    pub account: Arc<AccountService>,
    pub home: PathBuf,
}

/// Builds the table.
pub fn build(context: Arc<HandlerContext>) -> Methods {
    let mut module = RpcModule::from_arc(context);
    register_initialize(&mut module);
    register(
        &mut module,
        methods::READ,
        |ctx, _caller, params: GetAccountParams| async move { ctx.account.read(params).await },
    );
    register(
        &mut module,
        methods::LOGIN_START,
        |ctx, caller, params: LoginAccountParams| async move {
            ctx.account.login_start(params, &caller).await
        },
    );
    register(
        &mut module,
        methods::LOGIN_CANCEL,
        |ctx, caller, params: CancelLoginAccountParams| async move {
            ctx.account.login_cancel(params, &caller).await
        },
    );
    register(
        &mut module,
        methods::LOGOUT,
        |ctx, caller, _params: LogoutAccountParams| async move { ctx.account.logout(&caller).await },
    );
    register(
        &mut module,
        methods::RATE_LIMITS_READ,
        |ctx, caller, _params: GetAccountRateLimitsParams| async move {
            ctx.account.read_rate_limits(&caller).await
        },
    );
    module.into()
}

/// Registers `method` with the standard checks around `handler`.
fn register<P, R, F, Fut>(module: &mut RpcModule<HandlerContext>, method: &'static str, handler: F)
where
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Clone + Send + 'static,
    F: Fn(Arc<HandlerContext>, Arc<Caller>, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
{
    module
        .register_async_method(method, move |params, ctx, extensions| {
            let handler = handler.clone();
            async move {
                let scope = extensions
                    .get::<Arc<RequestScope>>()
                    .cloned()
                    .ok_or_else(|| to_error_object(RpcError::internal("missing request scope")))?;
                let params: P = decode_params(&params).map_err(to_error_object)?;
                let caller = scope
                    .caller()
                    .ok_or_else(|| to_error_object(RpcError::not_initialized()))?;
                handler(ctx, caller, params).await.map_err(to_error_object)
            }
        })
        .expect("method names are unique");
}

/// Decodes params; absent or `null` params decode as `{}` so optional-only shapes accept them.
/// Every method takes named params: an array is refused rather than mapped by field order.
pub fn decode_params<P: DeserializeOwned>(params: &Params<'_>) -> Result<P, RpcError> {
    let raw = match params.as_str().map(str::trim) {
        None | Some("null") => "{}",
        Some(raw) if !raw.starts_with('{') => {
            return Err(RpcError::invalid_params("params must be an object"));
        }
        Some(raw) => raw,
    };
    serde_json::from_str(raw).map_err(RpcError::invalid_params)
}

pub fn to_error_object(error: RpcError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(error.code, error.message, None)
}

fn register_initialize(module: &mut RpcModule<HandlerContext>) {
    module
        .register_async_method("initialize", |params, ctx, extensions| async move {
            let scope = extensions
                .get::<Arc<RequestScope>>()
                .cloned()
                .ok_or_else(|| to_error_object(RpcError::internal("missing request scope")))?;
            let params: InitializeParams = decode_params(&params).map_err(to_error_object)?;
            if scope.is_initialized() {
                return Err(to_error_object(RpcError::already_initialized()));
            }
            let client = params.client_info;
            for (member, value) in [
                ("name", Some(&client.name)),
                ("title", client.title.as_ref()),
                ("version", Some(&client.version)),
            ] {
                if value.is_some_and(|value| value.chars().count() > MAX_CLIENT_INFO_CHARS) {
                    return Err(to_error_object(RpcError::invalid_request(format!(
                        "Invalid clientInfo.{member}: must be at most {MAX_CLIENT_INFO_CHARS} characters."
                    ))));
                }
            }
            if !is_header_safe(&client.name) {
                return Err(to_error_object(RpcError::invalid_request(format!(
                    "Invalid clientInfo.name: '{}'. Must be a valid HTTP header value.",
                    client.name
                ))));
            }
            let opt_out = params
                .capabilities
                .unwrap_or_default()
                .opt_out_notification_methods
                .unwrap_or_default();
            ctx.identity.client_initialized(&client);
            let user_agent = ctx.identity.user_agent(&client);
            if !scope.complete_handshake(client, opt_out) {
                return Err(to_error_object(RpcError::already_initialized()));
            }
            Ok::<_, ErrorObjectOwned>(InitializeResponse {
                user_agent,
                codex_home: ctx.home.display().to_string(),
                platform_family: identity::platform_family().to_owned(),
                platform_os: identity::platform_os().to_owned(),
            })
        })
        .expect("method names are unique");
}
