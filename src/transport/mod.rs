//! Transports: the localhost listener (HTTP routes, admission checks, WebSocket connections) and
//! stdio. Both run the shared connection loop in `rpc::connection`.

pub mod console;
pub mod guard;
pub mod http;
pub mod listener;
pub mod server_file;
pub mod stdio;
mod ws;
pub mod ws_auth;
