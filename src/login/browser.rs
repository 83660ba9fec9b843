//! The browser login's local callback server on `127.0.0.1:<auth.login_port>` (SPEC §10.1).
//!
//! It only speaks HTTP: it checks `state`, turns the issuer's redirect into a [`CallbackEvent`] for
//! the account layer (which exchanges the code and saves the tokens), and shows the browser a
//! success or error page depending on the answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Codex's default port and its fallback.
pub const DEFAULT_PORT: u16 = 1455;
pub const FALLBACK_PORT: u16 = 1457;

/// What the browser told the callback server.
pub enum CallbackEvent {
    /// The issuer redirected back with a code. Answer `Ok(success query)` to send the browser to
    /// `/success?…`, or `Err(message)` to show it an error page.
    Code {
        code: SecretString,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The login failed (the message is the SPEC's text, before the `Login server error: ` prefix).
    Failed(String),
}

struct CallbackState {
    port: u16,
    expected_state: String,
    events: mpsc::Sender<CallbackEvent>,
    success_served: CancellationToken,
}

/// The callback port stayed busy.
#[derive(Debug, thiserror::Error)]
#[error("Port 127.0.0.1:{port} is already in use")]
pub struct PortInUse {
    port: u16,
}

/// Binds the callback port; if busy, asks a previous login server there to cancel, then retries
/// (10 × 200 ms), falling back from 1455 to 1457.
pub async fn bind(port: u16, http: &reqwest::Client) -> Result<TcpListener, PortInUse> {
    match bind_with_cancel(port, http).await {
        Ok(listener) => Ok(listener),
        Err(_) if port == DEFAULT_PORT => bind_with_cancel(FALLBACK_PORT, http).await,
        Err(err) => Err(err),
    }
}

async fn bind_with_cancel(port: u16, http: &reqwest::Client) -> Result<TcpListener, PortInUse> {
    if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
        return Ok(listener);
    }
    tracing::info!(
        port,
        "login port busy; asking a previous login server to cancel"
    );
    let _ = http
        .get(format!("http://127.0.0.1:{port}/cancel"))
        .header(header::CONNECTION, "close")
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return Ok(listener);
        }
    }
    Err(PortInUse { port })
}

/// Serves the callback routes until `stop` is cancelled. `success_served` is cancelled once the
/// browser has seen the success page.
pub async fn serve(
    listener: TcpListener,
    expected_state: String,
    events: mpsc::Sender<CallbackEvent>,
    stop: CancellationToken,
    success_served: CancellationToken,
) {
    let port = listener
        .local_addr()
        .map(|addr| addr.port())
        .unwrap_or_default();
    let state = Arc::new(CallbackState {
        port,
        expected_state,
        events,
        success_served,
    });
    let app = Router::new()
        .route("/auth/callback", get(callback))
        .route("/success", get(success))
        .route("/cancel", get(cancel))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "login callback server failed");
    }
}

async fn callback(
    State(state): State<Arc<CallbackState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("state") != Some(&state.expected_state) {
        return (StatusCode::BAD_REQUEST, "State mismatch").into_response();
    }
    if let Some(error) = query.get("error") {
        let description = query.get("error_description");
        let message = if error == "access_denied"
            && description.is_some_and(|d| d.contains("missing_codex_entitlement"))
        {
            "Codex is not enabled for your workspace. Contact your workspace administrator to request access to Codex.".to_owned()
        } else {
            format!("Sign-in failed: {}", description.unwrap_or(error))
        };
        return fail(&state, message).await;
    }
    let Some(code) = query.get("code").filter(|code| !code.is_empty()) else {
        return fail(
            &state,
            "Missing authorization code. Sign-in could not be completed.".to_owned(),
        )
        .await;
    };
    let (reply, answer) = oneshot::channel();
    let event = CallbackEvent::Code {
        code: code.clone().into(),
        reply,
    };
    if state.events.send(event).await.is_err() {
        return error_page("This sign-in is no longer in progress.");
    }
    match answer.await {
        Ok(Ok(success_query)) => {
            let location = format!("http://localhost:{}/success?{success_query}", state.port);
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Ok(Err(message)) => error_page(&message),
        Err(_) => error_page("This sign-in is no longer in progress."),
    }
}

async fn fail(state: &CallbackState, message: String) -> Response {
    let page = error_page(&message);
    let _ = state.events.send(CallbackEvent::Failed(message)).await;
    page
}

async fn success(State(state): State<Arc<CallbackState>>) -> Response {
    state.success_served.cancel();
    (
        [(header::CONNECTION, "close")],
        Html(page(
            "Signed in",
            "You are signed in to ChatGPT. You can close this window and return to the app.",
        )),
    )
        .into_response()
}

async fn cancel(State(state): State<Arc<CallbackState>>) -> Response {
    let _ = state
        .events
        .send(CallbackEvent::Failed("Login cancelled".to_owned()))
        .await;
    (StatusCode::OK, "Login cancelled").into_response()
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONNECTION, "close")],
        Html(page("Sign-in failed", message)),
    )
        .into_response()
}

fn page(title: &str, message: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · authbridge</title>
<style>
body{{margin:0;min-height:100vh;display:grid;place-items:center;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f6f7f9;color:#1d2330}}
main{{max-width:28rem;padding:2.5rem;background:#fff;border-radius:12px;box-shadow:0 2px 18px rgba(0,0,0,.08);text-align:center}}
h1{{margin:0 0 .75rem;font-size:1.4rem}}p{{margin:0;color:#4a5264}}
</style></head>
<body><main><h1>{title}</h1><p>{message}</p></main></body></html>
"#,
        title = escape_html(title),
        message = escape_html(message),
    )
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_messages() {
        let html = page("t", "<script>alert(1)</script>");
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
    }

    /// 1455 held by something that never answers `/cancel` (a listener that does not accept):
    /// after the cancel attempt and the retries, the login binds 1457.
    #[tokio::test]
    async fn a_busy_default_port_falls_back_to_the_second_port() {
        let Ok(_squatter) = std::net::TcpListener::bind(("127.0.0.1", DEFAULT_PORT)) else {
            eprintln!("skipped: 127.0.0.1:{DEFAULT_PORT} is in use on this machine");
            return;
        };
        if std::net::TcpListener::bind(("127.0.0.1", FALLBACK_PORT)).is_err() {
            eprintln!("skipped: 127.0.0.1:{FALLBACK_PORT} is in use on this machine");
            return;
        }
        let listener = bind(DEFAULT_PORT, &reqwest::Client::new()).await.unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), FALLBACK_PORT);
    }

    #[tokio::test]
    async fn a_busy_port_other_than_the_default_is_an_error() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        let err = bind(port, &reqwest::Client::new()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Port 127.0.0.1:{port} is already in use")
        );
    }
}
