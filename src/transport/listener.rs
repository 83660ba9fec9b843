//! Accepting TCP connections for the HTTP/WebSocket listener (SPEC §2.1, "Limits").
//!
//! `axum::serve` accepts without bound and gives hyper no timeouts, so one local process holding
//! idle sockets could use up every file descriptor and lock healthy clients out. Here every accepted
//! socket is counted against a budget that fits the process's descriptor limit. A connection that
//! is still plain HTTP must send a complete request header within the header timeout — when it
//! opens and again while it idles between keep-alive requests — and a header over the size cap is
//! answered 431. When the budget is used up, the oldest plain-HTTP connection is closed to make
//! room for the newcomer; upgraded WebSocket connections are never evicted (they have their own cap).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Descriptors kept free for everything that is not a client socket: backend calls (bounded by
/// `backend.max_concurrent`, added by the caller), files, the thread store, the runtime.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// How the listener bounds its sockets.
#[derive(Clone, Copy, Debug)]
pub struct SocketLimits {
    /// Accepted sockets at most (HTTP and WebSocket together).
    pub max_sockets: usize,
    /// A plain-HTTP connection must deliver a complete request header within this long.
    pub header_timeout: Duration,
    /// Largest request head (431 beyond it).
    pub max_header_bytes: usize,
}

impl SocketLimits {
    /// `wanted` sockets, or fewer if the descriptor limit (minus `reserved`) is lower.
    pub fn fitting_descriptor_limit(
        wanted: usize,
        reserved: usize,
        header_timeout: Duration,
        max_header_bytes: usize,
    ) -> Self {
        let budget = descriptor_limit()
            .map(|limit| limit.saturating_sub(reserved).max(16))
            .unwrap_or(wanted);
        Self {
            max_sockets: wanted.min(budget),
            header_timeout,
            max_header_bytes,
        }
    }
}

/// The soft `RLIMIT_NOFILE`, if there is one.
fn descriptor_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit
            .current
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// One accepted socket. It counts against the budget until every handle to it is gone: the
/// connection task holds one, and an upgrade hands another to the WebSocket task.
pub struct SocketSlot {
    upgraded: AtomicBool,
    evict: CancellationToken,
    sockets: Arc<Sockets>,
}

impl SocketSlot {
    /// The socket now carries a WebSocket: it is no longer evicted to make room.
    pub fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.sockets.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sockets currently accepted, oldest first.
#[derive(Default)]
struct Sockets {
    open: AtomicUsize,
    order: Mutex<VecDeque<Weak<SocketSlot>>>,
}

impl Sockets {
    /// Counts a new socket, evicting the oldest plain-HTTP one if the budget is used up. `None`
    /// when every counted socket is a WebSocket.
    fn admit(self: &Arc<Self>, max: usize) -> Option<Arc<SocketSlot>> {
        let mut order = self.order.lock().expect("sockets lock");
        order.retain(|slot| slot.strong_count() > 0);
        if self.open.load(Ordering::Acquire) >= max {
            let oldest_http = order
                .iter()
                .filter_map(Weak::upgrade)
                .find(|slot| !slot.upgraded.load(Ordering::Acquire) && !slot.evict.is_cancelled());
            match oldest_http {
                Some(slot) => {
                    tracing::debug!("socket budget used up: closing the oldest HTTP connection");
                    slot.evict.cancel();
                }
                None => return None,
            }
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        let slot = Arc::new(SocketSlot {
            upgraded: AtomicBool::new(false),
            evict: CancellationToken::new(),
            sockets: self.clone(),
        });
        order.push_back(Arc::downgrade(&slot));
        Some(slot)
    }
}

/// Accepts on `listener` and serves `router` on each socket until `shutdown`; then asks every
/// plain-HTTP connection to finish and waits for them. (Upgraded sockets are the WebSocket
/// layer's to close.)
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: SocketLimits,
    shutdown: CancellationToken,
) {
    let sockets = Arc::new(Sockets::default());
    let connections = TaskTracker::new();
    let mut last_accept_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of descriptors (or a transient network error): back off instead of spinning.
                let now = tokio::time::Instant::now();
                if last_accept_warning.is_none_or(|at| now - at >= Duration::from_secs(1)) {
                    tracing::warn!(error = %err, "accept failed");
                    last_accept_warning = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(slot) = sockets.admit(limits.max_sockets) else {
            tracing::warn!(
                max = limits.max_sockets,
                "refusing a connection: every socket is an open WebSocket"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_socket(
            stream,
            slot,
            router.clone(),
            limits,
            shutdown.clone(),
        ));
        // Let an evicted connection close before the next accept.
        tokio::task::yield_now().await;
    }
    connections.close();
    connections.wait().await;
}

async fn serve_socket(
    stream: TcpStream,
    slot: Arc<SocketSlot>,
    router: Router,
    limits: SocketLimits,
    shutdown: CancellationToken,
) {
    let evict = slot.evict.clone();
    let handle = slot.clone();
    let service = router.map_request(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(handle.clone());
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let connection = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    let mut finishing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "http connection ended");
                }
                break;
            }
            _ = evict.cancelled() => break,
            _ = shutdown.cancelled(), if !finishing => {
                finishing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}
