//! Getting the upstream's answer to the client (TURNS §26): relayed as it arrives — status,
//! headers minus hop-by-hop ones, and each body chunk as soon as it is read — or, for a
//! non-streaming request the ChatGPT route can only answer as a stream, collected into the final
//! response object.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::errors::ProxyError;

/// Response headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the length:
/// the relayed body is re-framed.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The upstream response as it comes. The permit (the request's place under
/// `turns.max_concurrent`) is held until the body ends or the client goes away; dropping the
/// body closes the upstream connection at once.
pub fn relay(upstream: reqwest::Response, permit: OwnedSemaphorePermit) -> Response {
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = relayed_headers(upstream.headers());
    let body = Body::from_stream(Held {
        inner: upstream.bytes_stream().boxed(),
        _permit: permit,
    });
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn relayed_headers(upstream: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let hop_by_hop: Vec<&str> = upstream
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for (name, value) in upstream {
        let listed = hop_by_hop
            .iter()
            .any(|hop| name.as_str().eq_ignore_ascii_case(hop));
        if HOP_BY_HOP.contains(name) || name.as_str() == "keep-alive" || listed {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// A body stream that keeps something alive until it is done or dropped.
struct Held<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S> Stream for Held<S>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    type Item = Result<Bytes, reqwest::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Reads an SSE answer to its end and answers with its final `response` object: that of
/// `response.completed` or `response.incomplete` (`output` rebuilt from the items if the event
/// left it empty); `response.failed` becomes a 502 carrying its error.
pub async fn collect(upstream: reqwest::Response) -> Response {
    let mut events = sseer::EventStream::new(upstream.bytes_stream());
    let mut items: Vec<Value> = Vec::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                return ProxyError::upstream(format!("stream broke: {err}")).into_response();
            }
        };
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        match data["type"].as_str().unwrap_or_default() {
            "response.output_item.done" => items.push(data["item"].clone()),
            "response.completed" | "response.incomplete" => {
                let mut response = data["response"].clone();
                let empty = response["output"].as_array().is_none_or(Vec::is_empty);
                if empty {
                    response["output"] = Value::Array(items);
                }
                return (StatusCode::OK, axum::Json(response)).into_response();
            }
            "response.failed" => {
                let error = data["response"]["error"].clone();
                return (StatusCode::BAD_GATEWAY, axum::Json(json!({"error": error})))
                    .into_response();
            }
            "error" => {
                return (StatusCode::BAD_GATEWAY, axum::Json(json!({"error": data})))
                    .into_response();
            }
            _ => {}
        }
    }
    ProxyError::upstream("stream closed before response.completed").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_length_are_dropped() {
        let mut upstream = reqwest::header::HeaderMap::new();
        for (name, value) in [
            ("content-type", "text/event-stream"),
            ("content-length", "12"),
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("x-request-id", "req_1"),
            ("x-codex-primary-used-percent", "12.5"),
        ] {
            upstream.append(HeaderName::from_static(name), value.parse().unwrap());
        }
        let relayed = relayed_headers(&upstream);
        let names: Vec<&str> = relayed.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-request-id",
                "x-codex-primary-used-percent"
            ]
        );
    }
}
