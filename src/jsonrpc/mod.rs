//! JSON-RPC as Codex speaks it (SPEC §3): classifying frames without decoding `params`, echoing
//! ids byte for byte, writing replies in either envelope style, and the error objects clients see.
//! Pure functions and plain data: no I/O, no state.

pub mod envelope;
mod error;

pub use error::RpcError;
