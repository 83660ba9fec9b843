//! JSON-RPC over a connection: envelopes, the per-connection dispatcher, the outbound queue,
//! server→client requests and the method table.

pub mod connection;
pub mod envelope;
pub mod methods;
pub mod outbound;
pub mod outgoing;

pub use connection::{Connection, RpcServer};
pub use outbound::{OutFrame, Outbound, OutboundReceiver, Overflow};
