//! The proxy's own answers (TURNS §26), for requests that never reached the upstream or whose
//! upstream call could not be made: OpenAI-style `{"error": {message, type, param, code}}`
//! bodies, so the official SDKs raise their usual error classes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One of the proxy's own errors.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: &'static str,
}

impl ProxyError {
    fn new(
        status: StatusCode,
        message: impl Into<String>,
        kind: &'static str,
        code: &'static str,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code,
        }
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
            "invalid_request_error",
            "invalid_api_key",
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid bearer token",
            "invalid_request_error",
            "invalid_api_key",
        )
    }

    pub fn no_account() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: log in with account/login/start first",
            "invalid_request_error",
            "no_account",
        )
    }

    /// The 401 layer could not recover the account's credentials (SPEC §7.3, §9.3, §10.4 text).
    pub fn refresh_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            message,
            "invalid_request_error",
            "token_refresh_failed",
        )
    }

    pub fn invalid_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "request body is not valid JSON",
            "invalid_request_error",
            "invalid_json",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {limit} bytes"),
            "invalid_request_error",
            "body_too_large",
        )
    }

    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server overloaded; retry later.",
            "server_error",
            "overloaded",
        )
    }

    pub fn upstream(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            format!("upstream request failed: {detail}"),
            "server_error",
            "upstream_error",
        )
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": null, "code": self.code}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
