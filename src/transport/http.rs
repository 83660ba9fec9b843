//! The HTTP side of the listener (SPEC §2.1): the routes, the Host/Origin admission every request
//! passes, and the WebSocket upgrade, which also needs a credential and a free connection slot.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use axum::body::Body;

use crate::config::ServerConfig;
use crate::proxy::{Proxy, ProxyError};
use crate::rpc::RpcServer;
use crate::transport::console;
use crate::transport::guard::HostOriginPolicy;
use crate::transport::listener::{self, SocketLimits, SocketSlot};
use crate::transport::ws;
use crate::transport::ws_auth::{self, WsAuthenticator};

/// State shared by the routes of one listener.
pub struct Listener {
    pub rpc: Arc<RpcServer>,
    pub policy: HostOriginPolicy,
    pub auth: WsAuthenticator,
    pub limits: ServerConfig,
    /// The local Responses endpoint (`None`: `proxy.enabled = false`, its routes are 404).
    pub proxy: Option<Arc<Proxy>>,
    /// `GET /console/catalog.json`, encoded once.
    pub console_catalog: String,
    connections: Arc<Semaphore>,
    sockets: TaskTracker,
}

impl Listener {
    pub fn new(
        rpc: Arc<RpcServer>,
        policy: HostOriginPolicy,
        auth: WsAuthenticator,
        limits: ServerConfig,
        proxy: Option<Arc<Proxy>>,
        console_catalog: String,
    ) -> Self {
        Self {
            console_catalog,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            rpc,
            policy,
            auth,
            limits,
            proxy,
            sockets: TaskTracker::new(),
        }
    }

    fn shutting_down(&self) -> bool {
        self.rpc.shutdown().is_cancelled()
    }
}

/// Serves HTTP on `tcp` until shutdown has drained every WebSocket. While they drain the listener
/// still answers (`/readyz` 503, upgrades 503), then it stops accepting.
pub async fn serve(
    tcp: TcpListener,
    shared: Arc<Listener>,
    limits: SocketLimits,
) -> std::io::Result<()> {
    let stop_accepting = CancellationToken::new();
    let accepting = tokio::spawn(listener::serve(
        tcp,
        router(shared.clone()),
        limits,
        stop_accepting.clone(),
    ));
    shared.rpc.shutdown().cancelled().await;
    shared.sockets.close();
    shared.sockets.wait().await;
    stop_accepting.cancel();
    accepting.await.map_err(std::io::Error::other)
}

fn router(shared: Arc<Listener>) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/console", get(console::page))
        .route("/console/catalog.json", get(console_catalog))
        .route("/console/{asset}", get(console::asset))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), admit))
        .with_state(shared)
}

async fn console_catalog(State(shared): State<Arc<Listener>>) -> Response {
    console::catalog_response(&shared.console_catalog)
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Host, then Origin, for every route. A repeated `Host` or `Origin` is refused: which copy a
/// proxy or browser would have honoured is ambiguous.
async fn admit(State(shared): State<Arc<Listener>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    for name in [header::HOST, header::ORIGIN] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            tracing::info!(path = request.uri().path(), header = %name, "refused request: repeated header");
            return plain(StatusCode::BAD_REQUEST, "repeated host or origin header");
        }
    }
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    if let Err(refusal) = shared.policy.admit(host, origin) {
        tracing::info!(
            path = request.uri().path(),
            reason = refusal.body(),
            "refused request"
        );
        let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
        return plain(status, refusal.body());
    }
    next.run(request).await
}

async fn readyz(State(shared): State<Arc<Listener>>) -> Response {
    if shared.shutting_down() {
        plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else {
        plain(StatusCode::OK, "ok")
    }
}

async fn healthz() -> Response {
    plain(StatusCode::OK, "ok")
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found")
}

/// The proxy, if enabled (else `None`: 404) and the caller presents the listener's credential
/// as a bearer token (what the SDKs send as their API key).
fn proxy_for(shared: &Listener, headers: &HeaderMap) -> Option<Result<Arc<Proxy>, ProxyError>> {
    let proxy = shared.proxy.as_ref()?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if let Err(refusal) = shared.auth.authenticate(authorization, std::iter::empty()) {
        tracing::info!(reason = refusal.0, "refused a proxied request");
        return Some(Err(if refusal.is_missing() {
            ProxyError::missing_token()
        } else {
            ProxyError::invalid_token()
        }));
    }
    Some(Ok(proxy.clone()))
}

/// `POST /v1/responses` (TURNS §26).
async fn responses(
    State(shared): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match proxy_for(&shared, &headers) {
        Some(Ok(proxy)) => proxy.responses(headers, body).await,
        Some(Err(refused)) => refused.into_response(),
        None => not_found().await,
    }
}

/// `GET /v1/models` (TURNS §26).
async fn models(State(shared): State<Arc<Listener>>, headers: HeaderMap) -> Response {
    match proxy_for(&shared, &headers) {
        Some(Ok(proxy)) => proxy.models(),
        Some(Err(refused)) => refused.into_response(),
        None => not_found().await,
    }
}

/// `GET /`: token, then connection slot, then the upgrade with the configured limits.
async fn upgrade(
    State(shared): State<Arc<Listener>>,
    socket_slot: Option<Extension<Arc<SocketSlot>>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return plain(StatusCode::UPGRADE_REQUIRED, "websocket upgrade required");
    };
    if shared.shutting_down() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let offered: Vec<String> = upgrade
        .requested_protocols()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if let Err(refusal) = shared
        .auth
        .authenticate(authorization, offered.iter().map(String::as_str))
    {
        tracing::info!(reason = refusal.0, "refused websocket upgrade");
        let mut response = plain(StatusCode::UNAUTHORIZED, refusal.0);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        tracing::warn!(
            max = shared.limits.max_connections,
            "refused websocket upgrade: too many connections"
        );
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    };

    let max_message = shared.limits.max_message_bytes;
    let mut upgrade = upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(4096);
    // The credential entry is never echoed: select `authbridge` if offered, else nothing.
    upgrade = if offered.iter().any(|p| p == ws_auth::SUBPROTOCOL) {
        upgrade.protocols([ws_auth::SUBPROTOCOL])
    } else {
        upgrade.protocols(std::iter::empty::<&'static str>())
    };
    let sockets = shared.sockets.clone();
    let socket_slot = socket_slot.map(|Extension(slot)| slot);
    upgrade
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            if let Some(slot) = &socket_slot {
                slot.mark_upgraded();
            }
            sockets.track_future(async move {
                ws::run(socket, &shared.rpc, &shared.limits).await;
                drop(permit);
                drop(socket_slot);
            })
        })
}
