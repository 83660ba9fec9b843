//! One client connection, whatever carries it (SPEC §2): read frames and dispatch them, write what
//! the connection's queue holds, and end the connection cleanly.
//!
//! A transport provides a [`FrameSource`] (frames in; the WebSocket one also pings and watches
//! for silence) and a [`FrameSink`] (frames out). [`serve`] runs the reader loop in the caller's
//! task and the writer as its own, so a slow write never stops the reader — which must stay free
//! to take the client's reply to a server request a handler is waiting for (DESIGN rule 1).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::RpcError;
use crate::peer::{OutFrame, Overflow, QueueReader, WriteQueue};
use crate::rpc::dispatch::{Dispatcher, RpcServer};

/// Writes between two flushes at most.
const WRITE_BATCH: usize = 64;
/// A notification queued this soon after the last flush is part of a burst (a model streaming
/// fast): the writer lets the tasks producing it run once before paying for the next write.
const BURST: Duration = Duration::from_micros(200);
/// How long a closing connection may take to deliver what was written and its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What a transport read (`T`: its text frames, kept as the transport holds them).
#[derive(Debug)]
pub enum Inbound<T> {
    Text(T),
    /// A message over the size limit, skipped without buffering it (stdio): answered -32600.
    Skipped {
        limit: usize,
    },
    /// The peer is done sending (WebSocket close frame, end of stdin).
    Closed,
    /// The connection must end (a broken or oversized WebSocket frame, silence).
    End(Ending),
}

/// Frames in.
pub trait FrameSource: Send {
    /// A text frame as the transport holds it (no copy on the way to the dispatcher).
    type Text: std::ops::Deref<Target = str> + Send;

    /// The next frame. Must be cancel-safe (it runs in a `select!`). `queue` is the connection's
    /// write queue, for sources that ping or wait for room before reading.
    fn next(&mut self, queue: &WriteQueue) -> impl Future<Output = Inbound<Self::Text>> + Send;

    /// After the close frame was queued: read and drop what the peer still sends until it closes
    /// too (closing a socket with unread input resets it, which could destroy the close frame).
    fn drain(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Frames out. Writes may be buffered until [`FrameSink::flush`].
pub trait FrameSink: Send + 'static {
    fn write(&mut self, text: String) -> impl Future<Output = io::Result<()>> + Send;
    fn ping(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Ends the output: a WebSocket close frame with `code` and `reason`; stdio just flushes.
    fn close(&mut self, code: u16, reason: &str) -> impl Future<Output = ()> + Send;
}

/// How a connection behaves where transports differ.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionOptions {
    /// A full queue disconnects the peer (WebSocket) or makes the reader wait (stdio).
    pub overflow: Overflow,
    /// The end of input shuts the whole server down (stdio: the parent is gone) instead of
    /// ending just this connection.
    pub closing_input_shuts_down: bool,
}

/// Why a connection ended; decides its close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    PeerClosed,
    Shutdown,
    TooBig,
    Idle,
    Overflowed,
    /// A text frame that is not UTF-8 (1007).
    InvalidText,
    /// A frame that breaks RFC 6455: reserved bits or opcodes, unmasked, orphan continuation (1002).
    ProtocolViolation,
    Error,
}

impl Ending {
    /// The close frame to send; `None` after an overflow, where the writer sends 1008 itself.
    fn close_frame(self) -> Option<(u16, &'static str)> {
        Some(match self {
            Self::Shutdown => (1001, "server shutting down"),
            Self::TooBig => (1009, "message too big"),
            Self::Idle => (1001, "connection idle"),
            Self::InvalidText => (1007, "invalid utf-8 in a text frame"),
            Self::ProtocolViolation => (1002, "protocol error"),
            Self::PeerClosed | Self::Error => (1000, ""),
            Self::Overflowed => return None,
        })
    }
}

/// Serves one connection until it ends; returns why.
pub async fn serve<S, K>(
    rpc: &Arc<RpcServer>,
    mut source: S,
    sink: K,
    options: ConnectionOptions,
) -> Ending
where
    S: FrameSource,
    K: FrameSink,
{
    let (dispatcher, reader) = Dispatcher::new(rpc.clone(), options.overflow);
    let peer = dispatcher.peer().clone();
    tracing::debug!(connection = peer.id(), "connection opened");
    let overflowed = peer.queue().overflowed().clone();
    let writer = tokio::spawn(write_loop(sink, reader, overflowed));

    let ending = read_loop(&mut source, &dispatcher, rpc, options).await;
    tracing::debug!(connection = peer.id(), ?ending, "connection reader stopped");
    peer.close();
    if let Some((code, reason)) = ending.close_frame() {
        peer.queue().push(OutFrame::Close(code, reason));
    }
    let writer_abort = writer.abort_handle();
    let finished = tokio::time::timeout(CLOSE_WAIT, async {
        let _ = tokio::join!(writer, source.drain());
    })
    .await;
    if finished.is_err() {
        writer_abort.abort();
    }
    tracing::debug!(connection = peer.id(), "connection closed");
    ending
}

async fn read_loop<S: FrameSource>(
    source: &mut S,
    dispatcher: &Dispatcher,
    rpc: &RpcServer,
    options: ConnectionOptions,
) -> Ending {
    let shutdown = rpc.shutdown().clone();
    let shutting_down = shutdown.cancelled();
    let overflowed = dispatcher.peer().queue().overflowed().clone();
    let overflowed = overflowed.cancelled();
    tokio::pin!(shutting_down, overflowed);
    let mut input_open = true;
    // At shutdown, running requests get the grace period; the reader keeps taking replies to
    // server requests meanwhile, since a request may be waiting for one.
    let mut drain_until: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutting_down, if drain_until.is_none() => {
                dispatcher.stop_accepting();
                drain_until = Some(Instant::now() + rpc.shutdown_grace());
            }
            _ = async {
                dispatcher.requests_finished().await;
                rpc.background_finished().await;
            }, if drain_until.is_some() => return Ending::Shutdown,
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                return Ending::Shutdown;
            }
            _ = &mut overflowed => return Ending::Overflowed,
            inbound = source.next(dispatcher.peer().queue()), if input_open => match inbound {
                Inbound::Text(text) => dispatcher.handle_frame(&text).await,
                Inbound::Skipped { limit } => dispatcher.reply_error(&RpcError::invalid_envelope(
                    format!("message exceeds {limit} bytes"),
                )),
                Inbound::Closed if options.closing_input_shuts_down => {
                    tracing::debug!("input closed: shutting down");
                    input_open = false;
                    shutdown.cancel();
                }
                Inbound::Closed => return Ending::PeerClosed,
                Inbound::End(ending) => return ending,
            },
        }
    }
}

/// Drains the queue into `sink`, batching writes between flushes. When the queue overflows, what
/// is still queued is dropped and the peer is told why (1008).
async fn write_loop<K: FrameSink>(
    mut sink: K,
    mut reader: QueueReader,
    overflowed: CancellationToken,
) {
    tokio::select! {
        biased;
        _ = overflowed.cancelled() => {
            // Bytes an interrupted write had buffered go first, so the close frame arrives whole.
            sink.close(1008, "outbound queue full").await;
        }
        () = write_frames(&mut sink, &mut reader) => {}
    }
}

/// Writes queued frames until a close frame was sent or a write failed.
async fn write_frames<K: FrameSink>(sink: &mut K, reader: &mut QueueReader) {
    let mut last_flush: Option<Instant> = None;
    while let Some(first) = reader.recv().await {
        let bursting = matches!(first, OutFrame::Notification(_))
            && last_flush.is_some_and(|flushed| flushed.elapsed() < BURST);
        let mut next = Some(first);
        let mut written = 0;
        let mut yielded = false;
        loop {
            while let Some(frame) = next.take() {
                let result = match frame {
                    OutFrame::Text(text) | OutFrame::Notification(text) => sink.write(text).await,
                    OutFrame::Ping => sink.ping().await,
                    OutFrame::Close(code, reason) => {
                        sink.close(code, reason).await;
                        return;
                    }
                };
                if result.is_err() {
                    return;
                }
                written += 1;
                if written < WRITE_BATCH {
                    next = reader.try_recv();
                }
            }
            // Before paying for a write, let requests that are about to reply, and a stream that
            // is delivering events back to back, run once: what they queue then shares this
            // write instead of each costing one. With nothing running (one request at a time,
            // deltas spaced out), write at once.
            if yielded || written >= WRITE_BATCH || !(bursting || reader.replies_pending()) {
                break;
            }
            yielded = true;
            tokio::task::yield_now().await;
            next = reader.try_recv();
            if next.is_none() {
                break;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        last_flush = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;

    /// Counts what the writer writes between flushes.
    #[derive(Clone, Default)]
    struct CountingSink(Arc<Mutex<Vec<usize>>>);

    impl FrameSink for CountingSink {
        async fn write(&mut self, _text: String) -> io::Result<()> {
            let mut batches = self.0.lock().unwrap();
            if batches.is_empty() {
                batches.push(0);
            }
            *batches.last_mut().unwrap() += 1;
            Ok(())
        }
        async fn ping(&mut self) -> io::Result<()> {
            Ok(())
        }
        async fn flush(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push(0);
            Ok(())
        }
        async fn close(&mut self, _code: u16, _reason: &str) {}
    }

    #[tokio::test(start_paused = true)]
    async fn frames_of_a_stream_arriving_back_to_back_share_writes() {
        let (queue, reader) = WriteQueue::new(1024, 1 << 20, Overflow::Disconnect);
        let sink = CountingSink::default();
        let writer = tokio::spawn(write_loop(sink.clone(), reader, CancellationToken::new()));
        // Like a response body handing over one event at a time: each frame is queued by a task
        // woken for it, so the writer could run between any two of them.
        let (events, mut received) = mpsc::channel::<usize>(1);
        let source = tokio::spawn(async move {
            for event in 0..40 {
                events.send(event).await.unwrap();
            }
        });
        let relay = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                queue.push(OutFrame::Notification(format!("delta {event}")));
            }
        });
        source.await.unwrap();
        relay.await.unwrap();
        writer.await.unwrap();
        let batches: Vec<usize> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|n| *n > 0)
            .collect();
        assert_eq!(batches.iter().sum::<usize>(), 40, "{batches:?}");
        assert!(batches.len() <= 4, "one write per frame: {batches:?}");
    }
}
