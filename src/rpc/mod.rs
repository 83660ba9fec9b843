//! JSON-RPC over a connection: the reader/writer loop every transport shares, the dispatcher
//! that runs requests and orders replies before what they caused, and the method table.

mod cancel;
pub mod connection;
mod dispatch;
mod errors;
#[cfg(test)]
pub mod memory;
pub mod methods;
mod request;
#[cfg(test)]
mod tests;

pub use connection::{ConnectionOptions, Ending, FrameSink, FrameSource, Inbound};
pub use dispatch::{ConnectionLimits, RpcServer, RpcServerParts};
