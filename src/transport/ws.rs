//! The WebSocket listener: axum owns the socket, the routes and the upgrade (SPEC §2.1).
//!
//! Every request passes the Host and Origin checks; the upgrade also needs a credential and a free
//! connection slot. Each socket then gets a reader loop (this module: frames, liveness, limits) in
//! front of an [`rpc::Connection`](crate::rpc::Connection), and a writer task that drains the
//! connection's queue, batching writes between flushes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::rpc::{Connection, OutFrame, OutboundReceiver, Overflow, RpcServer};
use crate::transport::console;
use crate::transport::guard::HostOriginPolicy;
use crate::transport::listener::{self, SocketLimits, SocketSlot};
use crate::transport::ws_auth::{self, WsAuthenticator};

/// Writes between two flushes at most.
const WRITE_BATCH: usize = 64;
/// How long a closing socket may take to deliver what was written and its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// State shared by the routes of one listener.
pub struct WsShared {
    pub rpc: Arc<RpcServer>,
    pub policy: HostOriginPolicy,
    pub auth: WsAuthenticator,
    pub limits: ServerConfig,
    pub shutdown: CancellationToken,
    connections: Arc<Semaphore>,
    sockets: TaskTracker,
}

impl WsShared {
    pub fn new(
        rpc: Arc<RpcServer>,
        policy: HostOriginPolicy,
        auth: WsAuthenticator,
        limits: ServerConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            rpc,
            policy,
            auth,
            limits,
            shutdown,
            sockets: TaskTracker::new(),
        }
    }

    /// Waits for every socket to finish (after shutdown was signalled).
    pub async fn wait_for_sockets(&self) {
        self.sockets.close();
        self.sockets.wait().await;
    }
}

/// Serves HTTP on `listener` until `shared.shutdown` is cancelled and every socket has closed.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<WsShared>,
    limits: SocketLimits,
) -> std::io::Result<()> {
    let shutdown = shared.shutdown.clone();
    listener::serve(listener, router(shared.clone()), limits, shutdown).await;
    shared.wait_for_sockets().await;
    Ok(())
}

pub fn router(shared: Arc<WsShared>) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/console", get(console::page))
        .route("/console/{asset}", get(console::asset))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), admit))
        .with_state(shared)
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
async fn admit(State(shared): State<Arc<WsShared>>, request: Request, next: Next) -> Response {
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

async fn readyz(State(shared): State<Arc<WsShared>>) -> Response {
    if shared.shutdown.is_cancelled() {
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

/// `GET /`: token, then connection slot, then the upgrade with the configured limits.
async fn upgrade(
    State(shared): State<Arc<WsShared>>,
    socket_slot: Option<Extension<Arc<SocketSlot>>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return plain(StatusCode::UPGRADE_REQUIRED, "websocket upgrade required");
    };
    if shared.shutdown.is_cancelled() {
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
                run_socket(socket, shared).await;
                drop(permit);
                drop(socket_slot);
            })
        })
}

/// Why a socket's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    PeerClosed,
    Shutdown,
    TooBig,
    Idle,
    Overflowed,
    /// A text frame that is not UTF-8 (close 1007).
    InvalidText,
    /// A frame that breaks RFC 6455: reserved bits or opcodes, unmasked, orphan continuation (1002).
    ProtocolViolation,
    Error,
}

async fn run_socket(socket: WebSocket, shared: Arc<WsShared>) {
    let (sink, mut stream) = socket.split();
    let (connection, receiver) = Connection::new(shared.rpc.clone(), Overflow::Disconnect);
    let id = connection.id();
    tracing::debug!(connection = id, "websocket connected");
    let overflowed = connection.outbound().overflowed().clone();
    let writer = tokio::spawn(write_loop(sink, receiver, overflowed));

    let ending = read_loop(&mut stream, &connection, &shared).await;
    tracing::debug!(connection = id, ?ending, "websocket reader stopped");
    connection.close();
    let close = match ending {
        Ending::Shutdown => Some((1001, "server shutting down")),
        Ending::TooBig => Some((1009, "message too big")),
        Ending::Idle => Some((1001, "connection idle")),
        Ending::InvalidText => Some((1007, "invalid utf-8 in a text frame")),
        Ending::ProtocolViolation => Some((1002, "protocol error")),
        Ending::PeerClosed | Ending::Error => Some((1000, "")),
        // The writer drops what is queued and sends 1008 itself.
        Ending::Overflowed => None,
    };
    if let Some((code, reason)) = close {
        connection.push_close(code, reason);
    }
    // Let the writer deliver what is queued (the close frame last) while the peer's last frames
    // are read and dropped until its close arrives: closing a socket with unread input resets it,
    // which could destroy the close frame in flight. Never wait long on a dead peer.
    let writer_abort = writer.abort_handle();
    let finished = tokio::time::timeout(CLOSE_WAIT, async {
        let drain = async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::join!(writer, drain);
    })
    .await;
    if finished.is_err() {
        writer_abort.abort();
    }
    tracing::debug!(connection = id, "websocket closed");
}

async fn read_loop(
    stream: &mut SplitStream<WebSocket>,
    connection: &Connection,
    shared: &WsShared,
) -> Ending {
    let idle_timeout = shared.limits.idle_timeout;
    let mut ping = tokio::time::interval_at(
        Instant::now() + shared.limits.ping_interval,
        shared.limits.ping_interval,
    );
    // The idle timer is not reset per frame (that costs a timer-wheel update each time): frames
    // only record when they arrived, and the timer re-arms itself when it fires early.
    let mut last_inbound = Instant::now();
    let idle = tokio::time::sleep(idle_timeout);
    // Created once, so each loop turn does not register new waiters.
    let shutdown = shared.shutdown.cancelled();
    let overflowed = connection.outbound().overflowed().cancelled();
    tokio::pin!(idle, shutdown, overflowed);
    // At shutdown, running requests get the grace period; the reader keeps taking replies to
    // server requests meanwhile, since a request may be waiting for one.
    let mut drain_until: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown, if drain_until.is_none() => {
                connection.stop_accepting();
                drain_until = Some(Instant::now() + shared.limits.shutdown_grace);
            }
            _ = connection.requests_finished(), if drain_until.is_some() => return Ending::Shutdown,
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                return Ending::Shutdown;
            }
            _ = &mut overflowed => return Ending::Overflowed,
            _ = &mut idle => {
                let deadline = last_inbound + idle_timeout;
                if Instant::now() >= deadline {
                    return Ending::Idle;
                }
                idle.as_mut().reset(deadline);
            }
            _ = ping.tick() => {
                connection.outbound().push(OutFrame::Ping);
            }
            message = stream.next() => {
                last_inbound = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => connection.handle_frame(text.as_str()).await,
                    Some(Ok(Message::Binary(data))) => {
                        tracing::debug!(connection = connection.id(), bytes = data.len(), "ignoring binary frame");
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return Ending::PeerClosed,
                    Some(Err(err)) => return classify_read_error(err),
                }
            }
        }
    }
}

/// Maps a read failure to the close code it deserves (RFC 6455 §7.4.1).
fn classify_read_error(err: axum::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = err.into_inner();
    let ending = match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => Ending::TooBig,
        Some(WsError::Utf8(_)) => Ending::InvalidText,
        Some(WsError::Protocol(_)) => Ending::ProtocolViolation,
        _ => Ending::Error,
    };
    tracing::debug!(error = %inner, ?ending, "websocket read failed");
    ending
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut receiver: OutboundReceiver,
    overflowed: CancellationToken,
) {
    tokio::select! {
        biased;
        _ = overflowed.cancelled() => {
            // The peer stopped reading: drop what is still queued and say why. Bytes the
            // interrupted write had buffered go first, so the close frame still arrives whole.
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: 1008,
                    reason: "outbound queue full".into(),
                })))
                .await;
            let _ = sink.close().await;
        }
        () = write_frames(&mut sink, &mut receiver) => {}
    }
}

/// Writes queued frames until a close frame is sent or a write fails.
async fn write_frames(sink: &mut SplitSink<WebSocket, Message>, receiver: &mut OutboundReceiver) {
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        let mut written = 0;
        let mut yielded = false;
        loop {
            while let Some(frame) = next.take() {
                let message = match frame {
                    OutFrame::Text(text) => Message::Text(text.into()),
                    OutFrame::Ping => Message::Ping(Default::default()),
                    OutFrame::Close(code, reason) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        let _ = sink.close().await;
                        return;
                    }
                };
                if sink.feed(message).await.is_err() {
                    return;
                }
                written += 1;
                if written < WRITE_BATCH {
                    next = receiver.try_recv();
                }
            }
            // Before paying for a write, let requests that are about to reply finish: their
            // replies then share this write instead of each costing one. With nothing running
            // (one request at a time), write at once.
            if yielded || written >= WRITE_BATCH || !receiver.replies_pending() {
                break;
            }
            yielded = true;
            tokio::task::yield_now().await;
            next = receiver.try_recv();
            if next.is_none() {
                break;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
