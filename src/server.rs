//! Starting and stopping a server: wires configuration, the account, the backend stack, the
//! method table and a transport together. The binary, the tests and embedding apps all start here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::account::AccountService;
use crate::account::credentials::Credentials;
use crate::atomic_file;
use crate::backend::{BackendClient, http_client};
use crate::config::{Config, ConfigError, Listen, WsAuthMode};
use crate::identity::Identity;
use crate::peer::Hub;
use crate::proxy::Proxy;
use crate::rpc::methods::{self, HandlerContext};
use crate::rpc::{ConnectionLimits, RpcServer, RpcServerParts};
use crate::store::Store;
use crate::transport::console;
use crate::transport::guard::{HostOriginPolicy, display_host};
use crate::transport::http::{self, Listener};
use crate::transport::listener::{self, SocketLimits};
use crate::transport::server_file::{self, ClaimError, ServerFile, ServerFileOwner};
use crate::transport::stdio;
use crate::transport::ws_auth::{CapabilityToken, WsAuthenticator};
use crate::turns::{Threads, TurnContext};
use tokio_util::task::TaskTracker;

/// Sockets beyond `server.max_connections` for plain HTTP (health checks, the console's assets).
const EXTRA_HTTP_SOCKETS: usize = 64;

/// Why the server did not start; `Display` is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create home directory {}: {source}", .path.display())]
    Home {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("refusing to listen on non-loopback address {0} without websocket auth")]
    OpenNetworkListener(SocketAddr),
    #[error(transparent)]
    ServerFile(#[from] ClaimError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    WriteServerFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A started server.
pub struct RunningServer {
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    account: Arc<AccountService>,
    threads: Arc<Threads>,
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
        atomic_file::ensure_private_dir(&config.home).map_err(|source| StartError::Home {
            path: config.home.clone(),
            source,
        })?;
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        let Core {
            rpc,
            account,
            threads,
            proxy,
        } = Core::build(config.clone(), shutdown.clone())?;
        account.remove_stale_files().await;
        let (task, listener) = match config.listen {
            Listen::Stdio => (serve_stdio(&config, rpc), None),
            Listen::Ws(requested) => {
                let (task, info) = serve_ws(&config, requested, rpc, proxy).await?;
                (task, Some(info))
            }
        };
        Ok(Self {
            shutdown,
            task,
            account,
            threads,
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
            Some(info) => info.connect_hint(),
        }
    }

    /// Starts a graceful shutdown (SPEC §2.1): stop taking requests, drain, close with 1001.
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
        self.account.shutdown();
        self.threads.close().await;
        if let Some(info) = &self.listener
            && let Err(err) = info.owner.remove()
        {
            tracing::warn!(error = %err, "cannot remove server.json");
        }
        result
    }
}

/// What every transport serves: the method table over the account and its backend stack.
pub(crate) struct Core {
    pub rpc: Arc<RpcServer>,
    pub account: Arc<AccountService>,
    pub threads: Arc<Threads>,
    /// The local Responses endpoint, if enabled (WebSocket listeners serve it).
    pub proxy: Option<Arc<Proxy>>,
}

impl Core {
    pub fn build(config: Arc<Config>, shutdown: CancellationToken) -> Result<Self, StartError> {
        let hub = Arc::new(Hub::default());
        let identity = Arc::new(Identity::from_env());
        let http = http_client(&config.backend).map_err(StartError::HttpClient)?;
        let credentials = Arc::new(Credentials::new(
            config.clone(),
            identity.clone(),
            http.clone(),
        ));
        let backend = BackendClient::new(
            http.clone(),
            credentials.clone(),
            config.backend.max_concurrent,
        );
        let account = AccountService::new(
            config.clone(),
            identity.clone(),
            hub.clone(),
            credentials.clone(),
            backend.clone(),
            http,
        );
        let runners = TaskTracker::new();
        let disconnects = Arc::new(Notify::new());
        let (ended, turn_ends) = tokio::sync::mpsc::unbounded_channel();
        let store = Store::open(&config.home).inspect_err(|err| {
            tracing::warn!(error = %err, "stored threads are unavailable; accounts and ephemeral threads still work");
        });
        let threads = Arc::new(Threads::new(
            Arc::new(TurnContext {
                config: config.clone(),
                identity: identity.clone(),
                credentials: credentials.clone(),
                backend: backend.clone(),
                hub: hub.clone(),
                ended,
            }),
            store,
            runners.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(
            threads
                .clone()
                .unload_when_idle(disconnects.clone(), turn_ends),
        );
        let proxy = config.proxy.enabled.then(|| {
            Arc::new(Proxy::new(
                config.clone(),
                credentials,
                backend,
                identity.clone(),
                hub.clone(),
                &threads,
            ))
        });
        // At shutdown every turn is interrupted; once their tasks end, connections may close.
        tokio::spawn({
            let (shutdown, runners) = (shutdown.clone(), runners.clone());
            async move {
                shutdown.cancelled().await;
                runners.close();
            }
        });
        let context = Arc::new(HandlerContext {
            identity,
            account: account.clone(),
            threads: threads.clone(),
            home: config.home.clone(),
        });
        let rpc = Arc::new(RpcServer::new(RpcServerParts {
            methods: methods::build(context),
            cancellable: methods::CANCELLABLE,
            hub,
            limits: ConnectionLimits {
                max_in_flight: config.server.max_in_flight_per_connection,
                queue_messages: config.server.outbound_queue_messages,
                queue_bytes: config.server.outbound_queue_bytes,
            },
            shutdown,
            shutdown_grace: config.server.shutdown_grace,
            background: runners,
            disconnects,
        }));
        Ok(Self {
            rpc,
            account,
            threads,
            proxy,
        })
    }
}

fn serve_stdio(config: &Arc<Config>, rpc: Arc<RpcServer>) -> JoinHandle<std::io::Result<()>> {
    let max_message_bytes = config.server.max_message_bytes;
    tokio::spawn(async move {
        stdio::serve(
            tokio::io::stdin(),
            tokio::io::stdout(),
            &rpc,
            max_message_bytes,
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
    proxy: Option<Arc<Proxy>>,
) -> Result<(JoinHandle<std::io::Result<()>>, ListenerInfo), StartError> {
    let auth_mode = config.ws_auth.mode;
    if auth_mode == WsAuthMode::None && !requested.ip().is_loopback() {
        return Err(StartError::OpenNetworkListener(requested));
    }
    let (authenticator, token) = WsAuthenticator::from_settings(&config.ws_auth)?;
    let owner = server_file::claim(&config.home)?;
    if auth_mode == WsAuthMode::None {
        tracing::warn!(
            "websocket auth is off: any local process or web page allowed by the Origin rules can use this server"
        );
    }
    let tcp = TcpListener::bind(requested)
        .await
        .map_err(|source| StartError::Listen {
            addr: requested,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| StartError::Listen {
        addr: requested,
        source,
    })?;
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
    let catalog = console::Catalog::new(
        &rpc.method_names(),
        config.auth.external_refresh_timeout,
        config.model.tool_call_timeout,
    );
    let shared = Arc::new(Listener::new(
        rpc,
        policy,
        authenticator,
        config.server.clone(),
        proxy,
        catalog.to_json(),
    ));
    let info = ListenerInfo {
        addr,
        auth: auth_mode,
        token,
        owner,
    };
    info.write_server_json()
        .map_err(|source| StartError::WriteServerFile {
            path: info.owner.path().to_path_buf(),
            source,
        })?;
    let limits = SocketLimits::fitting_descriptor_limit(
        config.server.max_connections + EXTRA_HTTP_SOCKETS,
        listener::RESERVED_DESCRIPTORS + config.backend.max_concurrent,
        config.server.header_timeout,
        config.server.max_header_bytes,
    );
    tracing::debug!(max_sockets = limits.max_sockets, "listener socket budget");
    Ok((tokio::spawn(http::serve(tcp, shared, limits)), info))
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

    fn connect_hint(&self) -> String {
        let token_hint = match self.auth {
            WsAuthMode::CapabilityToken => format!(
                "; token in {} (send `Authorization: Bearer <token>` or subprotocol `authbridge.bearer.<token>`)",
                self.owner.path().display()
            ),
            _ => String::new(),
        };
        let reach = if self.addr.ip().is_unspecified() {
            format!(
                " — every interface, reachable from the network (local clients: {};",
                self.url()
            )
        } else {
            " (".to_owned()
        };
        format!(
            "authbridge listening on {}{reach} auth: {}{}; console: {})",
            self.bound_url(),
            self.auth,
            token_hint,
            self.console_url()
        )
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
