//! Starting and stopping a server: wires configuration, account state, the method table and a
//! transport together. This is the entry point for the binary, for tests and for embedding apps.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::account::AccountService;
use crate::atomic_file;
use crate::config::{Config, Listen, WsAuthMode};
use crate::hub::Hub;
use crate::identity::Identity;
use crate::rpc::RpcServer;
use crate::rpc::methods::{self, HandlerContext};
use crate::transport::guard::{HostOriginPolicy, display_host};
use crate::transport::listener::{self, SocketLimits};
use crate::transport::server_file::{self, ServerFile, ServerFileOwner};
use crate::transport::stdio;
use crate::transport::ws::{self, WsShared};
use crate::transport::ws_auth::{CapabilityToken, WsAuthenticator};

/// Sockets beyond `server.max_connections` for plain HTTP (health checks, the console's assets).
const EXTRA_HTTP_SOCKETS: usize = 64;

/// A startup failure, with a message meant for the user.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<crate::config::ConfigError> for StartError {
    fn from(err: crate::config::ConfigError) -> Self {
        Self(err.0)
    }
}

/// A started server.
pub struct RunningServer {
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    account: Arc<AccountService>,
    listener: Option<ListenerInfo>,
}

struct ListenerInfo {
    addr: SocketAddr,
    auth: WsAuthMode,
    token: Option<CapabilityToken>,
    owner: ServerFileOwner,
}

impl RunningServer {
    /// Binds and starts serving according to `config`.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        atomic_file::ensure_private_dir(&config.home).map_err(|err| {
            StartError(format!(
                "cannot create home directory {}: {err}",
                config.home.display()
            ))
        })?;
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        let hub = Arc::new(Hub::new());
        let identity = Arc::new(Identity::from_env());
        let account = AccountService::new(config.clone(), hub.clone(), identity.clone())
            .map_err(StartError)?;
        account.remove_stale_files().await;
        let context = Arc::new(HandlerContext {
            identity,
            account: account.clone(),
            home: config.home.clone(),
        });
        let rpc = Arc::new(RpcServer::new(
            methods::build(context),
            hub,
            config.server.max_in_flight_per_connection,
            config.server.outbound_queue_messages,
            config.server.outbound_queue_bytes,
        ));
        let (task, listener) = match config.listen {
            Listen::Stdio => (serve_stdio(&config, rpc, shutdown.clone()), None),
            Listen::Ws(requested) => {
                let (task, info) = serve_ws(&config, requested, rpc, shutdown.clone()).await?;
                (task, Some(info))
            }
        };
        Ok(Self {
            shutdown,
            task,
            account,
            listener,
        })
    }

    /// The bound address (WebSocket listeners only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|info| info.addr)
    }

    /// `ws://host:port/` (WebSocket listeners only).
    pub fn url(&self) -> Option<String> {
        self.listener.as_ref().map(ListenerInfo::url)
    }

    /// The capability token clients must present (capability-token mode only).
    pub fn capability_token(&self) -> Option<&str> {
        self.listener
            .as_ref()
            .and_then(|info| info.token.as_ref())
            .map(CapabilityToken::expose)
    }

    /// The one line printed to stderr once listening. Never contains the token.
    pub fn connect_hint(&self) -> String {
        match &self.listener {
            None => "authbridge listening on stdio://".to_owned(),
            Some(info) => {
                let token_hint = match info.auth {
                    WsAuthMode::CapabilityToken => format!(
                        "; token in {} (send `Authorization: Bearer <token>` or subprotocol `authbridge.bearer.<token>`)",
                        info.owner.path().display()
                    ),
                    _ => String::new(),
                };
                let reach = if info.addr.ip().is_unspecified() {
                    format!(
                        " — every interface, reachable from the network (local clients: {};",
                        info.url()
                    )
                } else {
                    " (".to_owned()
                };
                format!(
                    "authbridge listening on {}{reach} auth: {}{}; console: {})",
                    info.bound_url(),
                    info.auth,
                    token_hint,
                    info.console_url()
                )
            }
        }
    }

    /// Starts a graceful shutdown (SPEC §2.1): stop accepting, drain, close sockets with 1001.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token cancelled when shutdown starts (by [`Self::shutdown`] or, on stdio, at EOF).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped, then cleans up (managed login, `server.json`).
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.task.await {
            Ok(result) => result,
            Err(err) => Err(std::io::Error::other(err)),
        };
        self.shutdown.cancel();
        self.account.shutdown().await;
        if let Some(info) = &self.listener
            && let Err(err) = info.owner.remove()
        {
            tracing::warn!(error = %err, "cannot remove server.json");
        }
        result
    }
}

fn serve_stdio(
    config: &Arc<Config>,
    rpc: Arc<RpcServer>,
    shutdown: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let config = config.clone();
    tokio::spawn(async move {
        stdio::serve(
            tokio::io::stdin(),
            tokio::io::stdout(),
            rpc,
            config.server.max_message_bytes,
            shutdown,
            config.server.shutdown_grace,
        )
        .await;
        Ok(())
    })
}

/// Claims the home, binds, writes `server.json` and starts the listener.
async fn serve_ws(
    config: &Arc<Config>,
    requested: SocketAddr,
    rpc: Arc<RpcServer>,
    shutdown: CancellationToken,
) -> Result<(JoinHandle<std::io::Result<()>>, ListenerInfo), StartError> {
    let auth_mode = config.ws_auth.mode;
    if auth_mode == WsAuthMode::None && !requested.ip().is_loopback() {
        return Err(StartError(format!(
            "refusing to listen on non-loopback address {requested} without websocket auth"
        )));
    }
    let (authenticator, token) = WsAuthenticator::from_settings(&config.ws_auth)?;
    let owner = server_file::claim(&config.home).map_err(|err| StartError(err.to_string()))?;
    if auth_mode == WsAuthMode::None {
        tracing::warn!(
            "websocket auth is off: any local process or web page allowed by the Origin rules can use this server"
        );
    }
    let listener = TcpListener::bind(requested)
        .await
        .map_err(|err| StartError(format!("cannot listen on {requested}: {err}")))?;
    let addr = listener
        .local_addr()
        .map_err(|err| StartError(format!("cannot read listen address: {err}")))?;
    if addr.ip().is_unspecified() {
        tracing::warn!(
            %addr,
            "listening on every interface: other machines on the network can reach this server"
        );
    }
    let policy = HostOriginPolicy::new(
        addr,
        &config.server.allowed_hosts,
        &config.server.allowed_origins,
    );
    let shared = Arc::new(WsShared::new(
        rpc,
        policy,
        authenticator,
        config.server.clone(),
        shutdown,
    ));
    let info = ListenerInfo {
        addr,
        auth: auth_mode,
        token,
        owner,
    };
    info.write_server_json().map_err(|err| {
        StartError(format!(
            "cannot write {}: {err}",
            info.owner.path().display()
        ))
    })?;
    let limits = SocketLimits::fitting_descriptor_limit(
        config.server.max_connections + EXTRA_HTTP_SOCKETS,
        listener::RESERVED_DESCRIPTORS + config.backend.max_concurrent,
        config.server.header_timeout,
        config.server.max_header_bytes,
    );
    tracing::debug!(max_sockets = limits.max_sockets, "listener socket budget");
    Ok((tokio::spawn(ws::serve(listener, shared, limits)), info))
}

impl ListenerInfo {
    /// Where local clients connect.
    fn url(&self) -> String {
        format!("ws://{}/", display_host(self.addr))
    }

    /// What is bound (differs from [`Self::url`] for `0.0.0.0` / `[::]`).
    fn bound_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn console_url(&self) -> String {
        format!("http://{}/console", display_host(self.addr))
    }

    fn write_server_json(&self) -> std::io::Result<()> {
        let url = self.url();
        let listen = self.bound_url();
        let console_url = self.console_url();
        self.owner.write(&ServerFile {
            pid: std::process::id(),
            url: &url,
            listen: &listen,
            auth: self.auth.as_str(),
            token: self.token.as_ref().map(CapabilityToken::expose),
            console_url: &console_url,
        })
    }
}
