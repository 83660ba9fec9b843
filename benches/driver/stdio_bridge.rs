//! A WebSocket front for servers that speak the protocol on stdio only (Codex 0.94.0's
//! `codex app-server`): each WebSocket connection spawns one child and carries frames to its stdin
//! and its stdout lines back, so the same turn driver measures it. authbridge is measured over
//! the same bridge (`authbridge app-server`) when the two are compared, so both pay the same hop.

use std::path::PathBuf;
use std::process::Stdio;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What each connection runs.
#[derive(Clone, Debug)]
pub struct StdioServer {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Prefixes the command (CPU pinning, e.g. `taskset -c 0`).
    pub wrapper: Vec<String>,
}

/// Serves the bridge on `listener` until the process ends.
pub async fn serve_stdio_bridge(listener: tokio::net::TcpListener, server: StdioServer) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/", get(upgrade)).with_state(server);
    axum::serve(listener, app).await.unwrap();
}

async fn upgrade(State(server): State<StdioServer>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| bridge(server, socket))
}

async fn bridge(server: StdioServer, socket: WebSocket) {
    let mut command = match server.wrapper.split_first() {
        Some((first, rest)) => {
            let mut command = tokio::process::Command::new(first);
            command.args(rest).arg(&server.program);
            command
        }
        None => tokio::process::Command::new(&server.program),
    };
    let mut child = command
        .args(&server.args)
        .envs(server.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the stdio server starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut sink, mut stream) = socket.split();
    let to_client = async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if sink.send(Message::Text(line.into())).await.is_err() {
                break;
            }
        }
    };
    let to_server = async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let mut line = text.as_str().to_owned();
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = to_client => {}
        () = to_server => {}
    }
    let _ = child.kill().await;
}
