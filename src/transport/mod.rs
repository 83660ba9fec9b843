//! Transports: the WebSocket listener (with its admission checks) and stdio.
//!
//! Both feed frames into an [`rpc::Connection`](crate::rpc::Connection) and drain its outbound
//! queue; everything protocol-level happens there.

pub mod console;
pub mod guard;
pub mod listener;
pub mod server_file;
pub mod stdio;
pub mod ws;
pub mod ws_auth;
