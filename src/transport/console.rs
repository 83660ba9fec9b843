//! The built-in browser console at `GET /console` (static files embedded in the binary).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("console/index.html");

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}
