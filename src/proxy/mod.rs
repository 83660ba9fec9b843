//! The local Responses endpoint (TURNS §26): `POST /v1/responses` and `GET /v1/models` on the
//! listener, so the official `openai` SDKs work with `baseURL http://127.0.0.1:<port>/v1` and the
//! capability token as their API key. Each request goes up the account's route (TURNS §20.1)
//! with the account's credentials, through the same 401 layer as everything else (a host-owned
//! 401 sends the refresh request to the owning client), and the answer comes back as it arrives.

mod errors;
mod relay;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use reqwest::{Method, Url};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use errors::ProxyError;

use crate::account::credentials::Credentials;
use crate::backend::{BackendClient, BackendError, BackendRequest, Signing, rate_limits};
use crate::config::Config;
use crate::identity::Identity;
use crate::peer::{Hub, Notification};
use crate::protocol::{AccountRateLimitsUpdatedNotification, methods};
use crate::turns::{Route, Threads};

/// How long the upstream may take to send response headers (as model requests, TURNS §28).
const HEADERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Client headers passed up as they are.
const FORWARDED: &[&str] = &["content-type", "accept", "openai-beta", "session_id"];

/// What the endpoint needs from the server.
pub struct Proxy {
    config: Arc<Config>,
    credentials: Arc<Credentials>,
    backend: BackendClient,
    identity: Arc<Identity>,
    hub: Arc<Hub>,
    /// Shared with running turns (`turns.max_concurrent`, TURNS §23.1).
    slots: Arc<Semaphore>,
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        credentials: Arc<Credentials>,
        backend: BackendClient,
        identity: Arc<Identity>,
        hub: Arc<Hub>,
        threads: &Threads,
    ) -> Self {
        Self {
            slots: threads.slots(),
            config,
            credentials,
            backend,
            identity,
            hub,
        }
    }

    /// `GET /v1/models`: the configured catalog, no account needed.
    pub fn models(&self) -> Response {
        let data: Vec<Value> = self
            .config
            .model
            .catalog
            .iter()
            .map(|entry| json!({"id": entry.id, "object": "model", "created": 0, "owned_by": "openai"}))
            .collect();
        axum::Json(json!({"object": "list", "data": data})).into_response()
    }

    /// `POST /v1/responses`, once the caller is admitted and authenticated.
    pub async fn responses(&self, headers: HeaderMap, body: Body) -> Response {
        match self.forward(headers, body).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn forward(&self, client: HeaderMap, body: Body) -> Result<Response, ProxyError> {
        let limit = self.config.proxy.max_body_bytes;
        let body = read_limited(&client, body, limit).await?;
        let mut json: Value =
            serde_json::from_slice(&body).map_err(|_| ProxyError::invalid_json())?;
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProxyError::overloaded())?;
        let snapshot = self.credentials.snapshot().await;
        let route = Route::for_account(
            &snapshot,
            self.config.requires_openai_auth,
            &self.config.model,
        )
        .ok_or_else(ProxyError::no_account)?;
        let chatgpt = route.signing == Signing::Chatgpt;
        let wants_stream = json["stream"] == true;
        // The API-key route gets the bytes as sent; the ChatGPT route needs its defaults.
        let body = if chatgpt {
            adapt_for_chatgpt(&mut json, &self.config.model.instructions);
            Bytes::from(serde_json::to_vec(&json).expect("JSON re-encodes"))
        } else {
            body
        };
        let request = self.request(&route, &client, body)?;
        let upstream = match self.backend.send(request).await {
            Ok(upstream) => upstream,
            Err(BackendError::Auth(failure)) => {
                return Err(ProxyError::refresh_failed(failure.to_string()));
            }
            Err(error) => return Err(ProxyError::upstream(error)),
        };
        if let Some(snapshot) = rate_limits::from_headers(upstream.headers()) {
            self.hub.send(&Notification::new(
                methods::RATE_LIMITS_UPDATED,
                &AccountRateLimitsUpdatedNotification {
                    rate_limits: snapshot,
                },
            ));
        }
        if chatgpt && !wants_stream && upstream.status().is_success() {
            let response = relay::collect(upstream).await;
            drop(permit);
            return Ok(response);
        }
        Ok(relay::relay(upstream, permit))
    }

    /// The upstream request: the route's URL, the client's content headers, ours, and the
    /// account's credentials (added by the backend stack). The client's Authorization stays here.
    fn request(
        &self,
        route: &Route,
        client: &HeaderMap,
        body: Bytes,
    ) -> Result<BackendRequest, ProxyError> {
        let url = Url::parse(&route.url).map_err(ProxyError::upstream)?;
        let mut http = reqwest::Request::new(Method::POST, url);
        let headers = http.headers_mut();
        for name in FORWARDED {
            if let Some(value) = client.get(*name) {
                headers.insert(HeaderName::from_static(name), value.clone());
            }
        }
        let ours = [
            ("originator", self.identity.originator().to_owned()),
            ("user-agent", self.identity.background_user_agent()),
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("accept-encoding", "identity".to_owned()),
        ];
        for (name, value) in ours {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        headers
            .entry(header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
        *http.body_mut() = Some(body.into());
        Ok(BackendRequest {
            http,
            signing: route.signing,
            headers_timeout: HEADERS_TIMEOUT,
            recover_after: None,
        })
    }
}

/// The request body, refused past `limit` bytes (by its declared length, or as it arrives).
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::too_large(limit));
    }
    let mut read = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|err| ProxyError::upstream(format!("reading the request: {err}")))?;
        if read.len() + chunk.len() > limit {
            return Err(ProxyError::too_large(limit));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

/// What the ChatGPT route requires of a Responses request (TURNS §26): `store` defaults to
/// false, `instructions` to the configured ones, and it always streams.
fn adapt_for_chatgpt(body: &mut Value, instructions: &str) {
    let Some(object) = body.as_object_mut() else {
        return;
    };
    object.entry("store").or_insert(json!(false));
    object
        .entry("instructions")
        .or_insert_with(|| json!(instructions));
    object.insert("stream".to_owned(), json!(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chatgpt_route_gets_its_defaults_without_losing_the_clients_choices() {
        let mut body = json!({"model": "m", "input": "hi"});
        adapt_for_chatgpt(&mut body, "Be brief.");
        assert_eq!(
            body,
            json!({"model": "m", "input": "hi", "store": false, "instructions": "Be brief.", "stream": true})
        );
        let mut chosen = json!({"store": true, "instructions": "Mine", "stream": false});
        adapt_for_chatgpt(&mut chosen, "Be brief.");
        assert_eq!(
            chosen,
            json!({"store": true, "instructions": "Mine", "stream": true})
        );
    }
}
