//! A WebSocket connection (SPEC §2.1): frames in and out of the shared connection loop, plus the
//! WebSocket's own duties — pinging, closing a silent peer, and mapping broken frames to their
//! RFC 6455 close codes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, Interval, Sleep};

use crate::config::ServerConfig;
use crate::peer::{OutFrame, Overflow, WriteQueue};
use crate::rpc::{ConnectionOptions, Ending, FrameSink, FrameSource, Inbound, RpcServer};

/// Serves one upgraded socket until it ends.
pub async fn run(socket: WebSocket, rpc: &Arc<RpcServer>, limits: &ServerConfig) {
    let (sink, stream) = socket.split();
    let source = WsSource::new(stream, limits.ping_interval, limits.idle_timeout);
    let options = ConnectionOptions {
        overflow: Overflow::Disconnect,
        closing_input_shuts_down: false,
    };
    crate::rpc::connection::serve(rpc, source, WsSink(sink), options).await;
}

struct WsSource {
    stream: SplitStream<WebSocket>,
    ping: Interval,
    idle_timeout: Duration,
    /// The idle timer is not reset per frame (that costs a timer-wheel update each time): frames
    /// only record when they arrived, and the timer re-arms itself when it fires early.
    idle: Pin<Box<Sleep>>,
    last_inbound: Instant,
}

impl WsSource {
    fn new(
        stream: SplitStream<WebSocket>,
        ping_interval: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            ping: tokio::time::interval_at(Instant::now() + ping_interval, ping_interval),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            last_inbound: Instant::now(),
        }
    }
}

impl FrameSource for WsSource {
    type Text = Utf8Bytes;

    async fn next(&mut self, queue: &WriteQueue) -> Inbound<Utf8Bytes> {
        loop {
            tokio::select! {
                _ = &mut self.idle => {
                    let deadline = self.last_inbound + self.idle_timeout;
                    if Instant::now() >= deadline {
                        return Inbound::End(Ending::Idle);
                    }
                    self.idle.as_mut().reset(deadline);
                }
                _ = self.ping.tick() => {
                    queue.push(OutFrame::Ping);
                }
                message = self.stream.next() => {
                    self.last_inbound = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => return Inbound::Text(text),
                        Some(Ok(Message::Binary(data))) => {
                            tracing::debug!(bytes = data.len(), "ignoring binary frame");
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => return Inbound::Closed,
                        Some(Err(err)) => return Inbound::End(classify_read_error(err)),
                    }
                }
            }
        }
    }

    async fn drain(&mut self) {
        while let Some(Ok(message)) = self.stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    }
}

/// Maps a read failure to the close code it deserves (RFC 6455 §7.4.1).
fn classify_read_error(err: axum::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = err.into_inner();
    let ending = match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => Ending::TooBig,
        Some(WsError::Utf8(_)) => Ending::InvalidText,
        Some(WsError::Protocol(_)) => Ending::ProtocolViolation,
        _ => Ending::Error,
    };
    tracing::debug!(error = %inner, ?ending, "websocket read failed");
    ending
}

struct WsSink(SplitSink<WebSocket, Message>);

impl FrameSink for WsSink {
    async fn write(&mut self, text: String) -> io::Result<()> {
        self.0
            .feed(Message::Text(text.into()))
            .await
            .map_err(io::Error::other)
    }

    async fn ping(&mut self) -> io::Result<()> {
        self.0
            .feed(Message::Ping(Default::default()))
            .await
            .map_err(io::Error::other)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await.map_err(io::Error::other)
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        let _ = self.0.send(Message::Close(Some(frame))).await;
        let _ = self.0.close().await;
    }
}
