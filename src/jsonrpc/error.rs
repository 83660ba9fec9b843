//! The JSON-RPC error a client sees: a code and a message, never `data` (SPEC §3.6).
//!
//! The envelope checks and the method table build these directly; domain errors (account, turns,
//! …) are their own types, mapped to this one in a single place (`rpc::errors`).

use std::fmt;

/// A JSON-RPC error object as sent to the client.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
}

impl RpcError {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;
    pub const OVERLOADED: i32 = -32001;
    pub const REQUEST_CANCELLED: i32 = -32800;

    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `-32700 Parse error`: the frame is not JSON.
    pub fn parse_error() -> Self {
        Self::new(Self::PARSE_ERROR, "Parse error")
    }

    /// `-32600 Invalid request: <detail>`: a malformed envelope, id, batch or line.
    pub fn invalid_envelope(detail: impl fmt::Display) -> Self {
        Self::new(Self::INVALID_REQUEST, format!("Invalid request: {detail}"))
    }

    /// `-32600` with a message used verbatim (handshake and policy texts).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_REQUEST, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            Self::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )
    }

    pub fn invalid_params(detail: impl fmt::Display) -> Self {
        Self::new(Self::INVALID_PARAMS, format!("Invalid params: {detail}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL_ERROR, message)
    }

    pub fn overloaded() -> Self {
        Self::new(Self::OVERLOADED, "Server overloaded; retry later.")
    }

    /// `-32800 Request cancelled`: the client cancelled it with `$/cancelRequest` (LSP's code).
    pub fn request_cancelled() -> Self {
        Self::new(Self::REQUEST_CANCELLED, "Request cancelled")
    }

    pub fn not_initialized() -> Self {
        Self::invalid_request("Not initialized")
    }

    pub fn already_initialized() -> Self {
        Self::invalid_request("Already initialized")
    }
}

impl fmt::Debug for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcError({}, {:?})", self.code, self.message)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}
