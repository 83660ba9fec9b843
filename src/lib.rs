//! authbridge: a localhost WebSocket (and stdio) JSON-RPC server speaking the Codex app-server
//! account protocol. It holds the user's OpenAI account in one of three modes — API key, managed
//! ChatGPT login, or host-owned tokens — and recovers backend calls from `401` transparently.
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

pub mod account;
pub mod atomic_file;
pub mod backend;
pub mod cli;
pub mod config;
pub mod error;
pub mod hub;
pub mod identity;
pub mod login;
pub mod peer;
pub mod protocol;
pub mod rpc;
pub mod schema;
pub mod server;
pub mod transport;

pub use config::Config;
pub use server::{RunningServer, StartError};
