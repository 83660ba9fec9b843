//! An in-memory connection for unit tests, like rust-analyzer's `lsp_server::Connection::memory()`:
//! the server side runs the real connection loop ([`connection::serve`]) over channels, and the
//! test holds the other end. The test can also stop reading, to fill the server's write queue.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::peer::{Overflow, WriteQueue};
use crate::rpc::RpcServer;
use crate::rpc::connection::{self, ConnectionOptions, Ending, FrameSink, FrameSource, Inbound};

/// How long a test waits for the server before failing.
const WAIT: Duration = Duration::from_secs(5);

/// What the server wrote.
#[derive(Debug, PartialEq)]
pub enum Written {
    Text(String),
    Ping,
    Close(u16, String),
}

/// The test's end of an in-memory connection.
pub struct MemoryClient {
    to_server: Option<mpsc::UnboundedSender<String>>,
    from_server: mpsc::UnboundedReceiver<Written>,
    reading: watch::Sender<bool>,
    task: JoinHandle<Ending>,
    buffered: VecDeque<Value>,
    next_id: i64,
}

/// Starts a connection served by `rpc`.
pub fn connect(rpc: &Arc<RpcServer>, overflow: Overflow) -> MemoryClient {
    let (to_server, inbound) = mpsc::unbounded_channel();
    let (outbound, from_server) = mpsc::unbounded_channel();
    let (reading, gate) = watch::channel(true);
    let options = ConnectionOptions {
        overflow,
        closing_input_shuts_down: false,
    };
    let rpc = rpc.clone();
    let task = tokio::spawn(async move {
        connection::serve(
            &rpc,
            MemorySource(inbound),
            MemorySink { outbound, gate },
            options,
        )
        .await
    });
    MemoryClient {
        to_server: Some(to_server),
        from_server,
        reading,
        task,
        buffered: VecDeque::new(),
        next_id: 0,
    }
}

impl MemoryClient {
    pub fn send(&self, message: Value) {
        self.send_text(message.to_string());
    }

    pub fn send_text(&self, text: impl Into<String>) {
        if let Some(sender) = &self.to_server {
            let _ = sender.send(text.into());
        }
    }

    /// Sends a request with a fresh id; returns the id.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next_id += 1;
        self.send(json!({"id": self.next_id, "method": method, "params": params}));
        self.next_id
    }

    /// The next thing the server wrote.
    pub async fn next(&mut self) -> Written {
        tokio::time::timeout(WAIT, self.from_server.recv())
            .await
            .expect("the server wrote in time")
            .expect("the connection is open")
    }

    /// The next message (pings skipped), in the order the server wrote them.
    pub async fn next_json(&mut self) -> Value {
        if let Some(value) = self.buffered.pop_front() {
            return value;
        }
        loop {
            match self.next().await {
                Written::Text(text) => return serde_json::from_str(&text).expect("valid JSON"),
                Written::Ping => continue,
                Written::Close(code, reason) => panic!("closed with {code} {reason:?}"),
            }
        }
    }

    /// The next message if one arrives within `limit` (a negative wait: "nothing in T").
    pub async fn next_json_within(&mut self, limit: Duration) -> Option<Value> {
        if let Some(value) = self.buffered.pop_front() {
            return Some(value);
        }
        loop {
            match tokio::time::timeout(limit, self.from_server.recv()).await {
                Ok(Some(Written::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("valid JSON"));
                }
                Ok(Some(Written::Ping)) => continue,
                Ok(Some(Written::Close(..)) | None) | Err(_) => return None,
            }
        }
    }

    /// Waits for the reply to `id`; messages before it are kept for [`Self::next_json`].
    pub async fn reply(&mut self, id: i64) -> Value {
        let mut skipped = VecDeque::new();
        let found = loop {
            let value = match self.buffered.pop_front() {
                Some(value) => value,
                None => self.next_json().await,
            };
            if value["id"] == json!(id) && value.get("method").is_none() {
                break value;
            }
            skipped.push_back(value);
        };
        skipped.extend(self.buffered.drain(..));
        self.buffered = skipped;
        found
    }

    /// Sends a request and waits for its reply.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        self.reply(id).await
    }

    /// `initialize` with a test client name; panics unless it succeeds.
    pub async fn initialize(&mut self) -> Value {
        let reply = self
            .call(
                "initialize",
                json!({"clientInfo": {"name": "memory-tests", "version": "1"}}),
            )
            .await;
        assert!(reply.get("result").is_some(), "{reply}");
        reply
    }

    /// Stops (or resumes) taking what the server writes: its writer blocks as a slow peer's would.
    pub fn set_reading(&self, reading: bool) {
        let _ = self.reading.send(reading);
    }

    /// Ends the input (a WebSocket close frame or EOF).
    pub fn close_input(&mut self) {
        self.to_server = None;
    }

    /// Waits for the connection loop to end; returns why it ended.
    pub async fn ending(self) -> Ending {
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the connection ends in time")
            .expect("the connection task did not panic")
    }
}

struct MemorySource(mpsc::UnboundedReceiver<String>);

impl FrameSource for MemorySource {
    type Text = String;

    async fn next(&mut self, _queue: &WriteQueue) -> Inbound<String> {
        match self.0.recv().await {
            Some(text) => Inbound::Text(text),
            None => Inbound::Closed,
        }
    }
}

struct MemorySink {
    outbound: mpsc::UnboundedSender<Written>,
    gate: watch::Receiver<bool>,
}

impl MemorySink {
    async fn write_out(&mut self, written: Written) -> io::Result<()> {
        let _ = self.gate.wait_for(|reading| *reading).await;
        self.outbound
            .send(written)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl FrameSink for MemorySink {
    async fn write(&mut self, text: String) -> io::Result<()> {
        self.write_out(Written::Text(text)).await
    }

    async fn ping(&mut self) -> io::Result<()> {
        self.write_out(Written::Ping).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .write_out(Written::Close(code, reason.to_owned()))
            .await;
    }
}
