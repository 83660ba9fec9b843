//! authbridge: a localhost WebSocket (and stdio) JSON-RPC server speaking the Codex app-server
//! protocol. It holds the user's OpenAI account in one of three modes — API key, managed ChatGPT
//! login, or host-owned tokens — and recovers backend calls from `401` transparently.
//!
//! Embedding: build a [`Config`] and call [`RunningServer::start`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = authbridge::Config::from_overrides("/tmp/authbridge-home", &["server.listen=\"ws://127.0.0.1:0\""])?;
//! let server = authbridge::RunningServer::start(config).await?;
//! println!("{}", server.connect_hint());
//! server.wait().await?;
//! # Ok(()) }
//! ```

mod account;
mod atomic_file;
mod backend;
mod cli;
mod config;
pub mod dev_backend;
mod identity;
mod jsonrpc;
mod login;
mod memory;
mod peer;
mod protocol;
mod proxy;
mod rpc;
mod schema;
mod server;
mod store;
#[cfg(test)]
mod testing;
mod transport;
mod turns;

pub use config::{Config, ConfigError};
pub use server::{RunningServer, StartError};

/// The `authbridge` command line (what the binary runs).
pub fn run_cli() -> std::process::ExitCode {
    cli::main()
}

/// The pure parsers the fuzz targets drive (`cargo +nightly fuzz run <target>`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::account::jwt;
    pub use crate::account::store::parse_auth_file;
    pub use crate::jsonrpc::{RpcError, envelope};
    pub use crate::transport::guard::HostOriginPolicy;
    pub use crate::transport::ws_auth::{WsAuthenticator, presented_credential};
}
