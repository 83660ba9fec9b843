//! The method table: every JSON-RPC method authbridge answers, as a jsonrpsee [`Methods`] table.
//!
//! Each entry decodes its params (`-32602` with the decoder's detail), checks the handshake
//! (`Not initialized`), then calls the domain with the calling [`Peer`]. What the domain returns —
//! an [`Outcome`] — is split here: the result becomes the reply, the rest waits in the request's
//! [`RequestScope`] until the dispatcher has queued that reply.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jsonrpsee::core::server::{Methods, RpcModule};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::account::AccountService;
use crate::identity::{self, Identity, is_header_safe};
use crate::jsonrpc::RpcError;
use crate::peer::{AfterReply, Handshake, Hub, Outcome, Peer};
use crate::protocol::{
    CancelLoginAccountParams, GetAccountParams, GetAccountRateLimitsParams, InitializeParams,
    InitializeResponse, LoginAccountParams, LogoutAccountParams, ModelListParams, ThreadIdParams,
    ThreadListParams, ThreadReadParams, ThreadResumeParams, ThreadSetNameParams, ThreadStartParams,
    TurnInterruptParams, TurnStartParams, methods,
};
use crate::turns::Threads;

/// Longest `clientInfo.name`, `title` and `version`: they end up in every backend User-Agent.
const MAX_CLIENT_INFO_CHARS: usize = 256;

/// Methods `$/cancelRequest` may stop midway: they wait on the network and change nothing.
/// (Others either answer at once or change state — `account/read {refreshToken}` may rotate the
/// tokens — and run to completion.)
pub const CANCELLABLE: &[&str] = &[methods::RATE_LIMITS_READ];

/// Methods whose params must be present (TURNS §15.3); others read absent or `null` as `{}`.
const PARAMS_REQUIRED: &[&str] = &[
    methods::THREAD_START,
    methods::THREAD_RESUME,
    methods::THREAD_READ,
    methods::THREAD_ARCHIVE,
    methods::THREAD_UNARCHIVE,
    methods::THREAD_NAME_SET,
    methods::TURN_START,
    methods::TURN_INTERRUPT,
];

/// Everything handlers share within one server.
pub struct HandlerContext {
    pub identity: Arc<Identity>,
    pub account: Arc<AccountService>,
    pub threads: Arc<Threads>,
    pub home: PathBuf,
}

/// What the dispatcher hands a handler: the calling connection, and a place for what must follow
/// the reply.
pub struct RequestScope {
    peer: Peer,
    hub: Arc<Hub>,
    /// Whether the request carried `"jsonrpc":"2.0"` (an `initialize` fixes the style with it).
    jsonrpc: bool,
    after: Mutex<AfterReply>,
}

impl RequestScope {
    pub fn new(peer: Peer, hub: Arc<Hub>, jsonrpc: bool) -> Self {
        Self {
            peer,
            hub,
            jsonrpc,
            after: Mutex::default(),
        }
    }

    /// What must follow the reply; taken by the dispatcher once the handler returned.
    pub fn take_after(&self) -> AfterReply {
        std::mem::take(&mut *self.after.lock().expect("scope lock"))
    }

    fn defer(&self, after: AfterReply) {
        self.after.lock().expect("scope lock").append(after);
    }
}

/// Builds the table.
pub fn build(context: Arc<HandlerContext>) -> Methods {
    let mut module = RpcModule::from_arc(context);
    register_initialize(&mut module);
    register(
        &mut module,
        methods::READ,
        |ctx, _peer, params: GetAccountParams| async move {
            Outcome::from(ctx.account.read(params).await)
        },
    );
    register(
        &mut module,
        methods::LOGIN_START,
        |ctx, peer, params: LoginAccountParams| async move {
            ctx.account.login_start(params, &peer).await
        },
    );
    register(
        &mut module,
        methods::LOGIN_CANCEL,
        |ctx, _peer, params: CancelLoginAccountParams| async move {
            ctx.account.login_cancel(params).await
        },
    );
    register(
        &mut module,
        methods::LOGOUT,
        |ctx, _peer, _params: LogoutAccountParams| async move { ctx.account.logout().await },
    );
    register(
        &mut module,
        methods::RATE_LIMITS_READ,
        |ctx, peer, _params: GetAccountRateLimitsParams| async move {
            ctx.account.read_rate_limits(&peer).await
        },
    );
    register_turns(&mut module);
    module.into()
}

/// Threads, turns and models (TURNS §17–§18).
fn register_turns(module: &mut RpcModule<HandlerContext>) {
    register(
        module,
        methods::THREAD_START,
        |ctx, peer, params: ThreadStartParams| async move {
            ctx.threads.start_thread(params, &peer).await
        },
    );
    register(
        module,
        methods::THREAD_RESUME,
        |ctx, peer, params: ThreadResumeParams| async move { ctx.threads.resume(params, &peer).await },
    );
    register(
        module,
        methods::THREAD_READ,
        |ctx, _peer, params: ThreadReadParams| async move {
            Outcome::from(ctx.threads.read(params).await)
        },
    );
    register(
        module,
        methods::THREAD_LIST,
        |ctx, _peer, params: ThreadListParams| async move {
            Outcome::from(ctx.threads.list(params).await)
        },
    );
    register(
        module,
        methods::THREAD_ARCHIVE,
        |ctx, _peer, params: ThreadIdParams| async move {
            Outcome::from(ctx.threads.archive(params).await)
        },
    );
    register(
        module,
        methods::THREAD_UNARCHIVE,
        |ctx, _peer, params: ThreadIdParams| async move {
            Outcome::from(ctx.threads.unarchive(params).await)
        },
    );
    register(
        module,
        methods::THREAD_NAME_SET,
        |ctx, peer, params: ThreadSetNameParams| async move {
            ctx.threads.set_name(params, &peer).await
        },
    );
    register(
        module,
        methods::TURN_START,
        |ctx, peer, params: TurnStartParams| async move { ctx.threads.start_turn(params, &peer).await },
    );
    register(
        module,
        methods::TURN_INTERRUPT,
        |ctx, _peer, params: TurnInterruptParams| async move { ctx.threads.interrupt(params).await },
    );
    register(
        module,
        methods::MODEL_LIST,
        |ctx, _peer, params: ModelListParams| async move {
            Outcome::from(ctx.threads.list_models(params))
        },
    );
}

/// Registers `method` with the standard checks around `handler`.
fn register<P, R, E, F, Fut>(
    module: &mut RpcModule<HandlerContext>,
    method: &'static str,
    handler: F,
) where
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Clone + Send + 'static,
    E: Into<RpcError> + Send + 'static,
    F: Fn(Arc<HandlerContext>, Peer, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome<R, E>> + Send + 'static,
{
    let required = PARAMS_REQUIRED.contains(&method);
    module
        .register_async_method(method, move |params, ctx, extensions| {
            let handler = handler.clone();
            async move {
                let scope = scope_of(&extensions)?;
                if required && params.as_str().is_none_or(|raw| raw.trim() == "null") {
                    return Err(to_error_object(RpcError::invalid_params(
                        "params must be an object",
                    )));
                }
                let params: P = decode_params(&params).map_err(to_error_object)?;
                if !scope.peer.is_initialized() {
                    return Err(to_error_object(RpcError::not_initialized()));
                }
                let (result, after) = handler(ctx, scope.peer.clone(), params).await.into_parts();
                scope.defer(after);
                result.map_err(|err| to_error_object(err.into()))
            }
        })
        .expect("method names are unique");
}

fn scope_of(
    extensions: &jsonrpsee::core::server::Extensions,
) -> Result<Arc<RequestScope>, ErrorObjectOwned> {
    extensions
        .get::<Arc<RequestScope>>()
        .cloned()
        .ok_or_else(|| to_error_object(RpcError::internal("missing request scope")))
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
    serde_json::from_str(raw).map_err(|err| RpcError::invalid_params(without_position(&err)))
}

/// A decoding error's text without serde's ` at line L column C` (params are one line anyway).
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&position).unwrap_or(&text).to_owned()
}

fn to_error_object(error: RpcError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(error.code, error.message, None)
}

fn register_initialize(module: &mut RpcModule<HandlerContext>) {
    module
        .register_async_method(methods::INITIALIZE, |params, ctx, extensions| async move {
            let scope = scope_of(&extensions)?;
            let params: InitializeParams = decode_params(&params).map_err(to_error_object)?;
            initialize(&ctx, &scope, params).map_err(to_error_object)
        })
        .expect("method names are unique");
}

/// `initialize` (SPEC §4). The connection joins the notification hub once its reply is queued.
fn initialize(
    ctx: &HandlerContext,
    scope: &RequestScope,
    params: InitializeParams,
) -> Result<InitializeResponse, RpcError> {
    if scope.peer.is_initialized() {
        return Err(RpcError::already_initialized());
    }
    let client = params.client_info;
    for (member, value) in [
        ("name", Some(&client.name)),
        ("title", client.title.as_ref()),
        ("version", Some(&client.version)),
    ] {
        if value.is_some_and(|value| value.chars().count() > MAX_CLIENT_INFO_CHARS) {
            return Err(RpcError::invalid_request(format!(
                "Invalid clientInfo.{member}: must be at most {MAX_CLIENT_INFO_CHARS} characters."
            )));
        }
    }
    if !is_header_safe(&client.name) {
        return Err(RpcError::invalid_request(format!(
            "Invalid clientInfo.name: '{}'. Must be a valid HTTP header value.",
            client.name
        )));
    }
    let opt_out = params
        .capabilities
        .unwrap_or_default()
        .opt_out_notification_methods
        .unwrap_or_default();
    ctx.identity.client_initialized(&client);
    let user_agent = ctx.identity.user_agent(&client);
    let handshake = Handshake {
        client,
        jsonrpc: scope.jsonrpc,
        opt_out,
    };
    if !scope.peer.complete_handshake(handshake) {
        return Err(RpcError::already_initialized());
    }
    let (hub, peer) = (scope.hub.clone(), scope.peer.clone());
    scope.defer(AfterReply::step(move || hub.join(&peer)));
    Ok(InitializeResponse {
        user_agent,
        codex_home: ctx.home.display().to_string(),
        platform_family: identity::platform_family().to_owned(),
        platform_os: identity::platform_os().to_owned(),
    })
}
