//! The relay floor: the smallest relay on authbridge's own stack (axum WebSocket, reqwest,
//! sseer, tokio), run as a separate process like authbridge. It answers
//! `thread/start` with a new id and turns each `turn/start` into one streamed request to the
//! backend, forwarding every text delta as `item/agentMessage/delta` and ending with
//! `turn/completed`. No accounts, no history, no store: what is left is the cost of one more
//! process and socket hop, which no relay can avoid.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Clone)]
struct Relay {
    client: reqwest::Client,
    responses_url: String,
}

/// Serves the relay floor on `listener`, streaming from `<base>/responses`.
pub async fn serve_relay(listener: tokio::net::TcpListener, base: &str) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let relay = Relay {
        client: reqwest::Client::new(),
        responses_url: format!("{base}/responses"),
    };
    let app = Router::new().route("/", get(upgrade)).with_state(relay);
    axum::serve(listener, app).await.unwrap();
}

async fn upgrade(State(relay): State<Relay>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| connection(relay, socket))
}

async fn connection(relay: Relay, socket: WebSocket) {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    let (mut sink, mut stream) = socket.split();
    let (out, mut queue) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            if sink.feed(Message::Text(first.into())).await.is_err() {
                return;
            }
            while let Ok(next) = queue.try_recv() {
                if sink.feed(Message::Text(next.into())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(request) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let id = request["id"].clone();
        match request["method"].as_str() {
            Some("thread/start") => {
                let thread = THREADS.fetch_add(1, Ordering::Relaxed).to_string();
                let _ =
                    out.send(json!({"id": id, "result": {"thread": {"id": thread}}}).to_string());
            }
            Some("turn/start") => {
                let thread = request["params"]["threadId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let _ = out.send(json!({"id": id, "result": {"turn": {"id": "t"}}}).to_string());
                tokio::spawn(turn(relay.clone(), thread, out.clone()));
            }
            _ => {
                let _ = out.send(json!({"id": id, "result": {}}).to_string());
            }
        }
    }
    drop(out);
    let _ = writer.await;
}

async fn turn(relay: Relay, thread: String, out: mpsc::UnboundedSender<String>) {
    let response = relay
        .client
        .post(&relay.responses_url)
        .header("content-type", "application/json")
        .body(json!({"model": "m", "input": "bench", "stream": true}).to_string())
        .send()
        .await;
    let mut status = "failed";
    if let Ok(response) = response {
        let mut events = sseer::EventStream::new(response.bytes_stream());
        while let Some(Ok(event)) = events.next().await {
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            match data["type"].as_str() {
                Some("response.output_text.delta") => {
                    let delta = json!({"method": "item/agentMessage/delta", "params": {"threadId": thread, "delta": data["delta"]}});
                    let _ = out.send(delta.to_string());
                }
                Some("response.completed") => status = "completed",
                _ => {}
            }
        }
    }
    let _ = out.send(
        json!({"method": "turn/completed", "params": {"threadId": thread, "turn": {"status": status}}})
            .to_string(),
    );
}
