//! A connection's write queue: every reply, notification and server request goes through it.
//!
//! Pushing never waits, so no handler (and no broadcast) can be stalled by one slow peer. The queue
//! is bounded by a message count and by bytes: over either, a WebSocket peer is disconnected with
//! 1008 (SPEC §2.1), while on stdio the reader stops taking input until the writer catches up
//! (SPEC §2.2).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// What the transport's writer sends.
#[derive(Debug, PartialEq, Eq)]
pub enum OutFrame {
    /// A reply or a server request.
    Text(String),
    /// A notification: one of a stream of them, perhaps (the writer batches those that come
    /// back to back).
    Notification(String),
    /// A liveness probe (WebSocket only).
    Ping,
    /// Close the connection with this code and reason, then stop writing.
    Close(u16, &'static str),
}

impl OutFrame {
    /// What the frame counts against the queue's byte bound.
    fn size(&self) -> usize {
        match self {
            Self::Text(text) | Self::Notification(text) => text.len(),
            Self::Ping | Self::Close(..) => 0,
        }
    }
}

/// What happens when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Disconnect the peer (WebSocket: a reader that cannot keep up must not hold memory).
    Disconnect,
    /// Keep queueing; the reader waits for room before taking more input (stdio).
    Backpressure,
}

pub struct WriteQueue {
    tx: mpsc::UnboundedSender<OutFrame>,
    level: Arc<Level>,
    capacity: usize,
    byte_capacity: usize,
    overflow: Overflow,
    /// Cancelled when the queue overflowed: the transport must drop the peer.
    overflowed: CancellationToken,
}

/// How many frames are queued, and how many requests will still queue a reply; shared by both
/// ends so the writer can tell whether waiting a moment would let more replies share a write.
#[derive(Default)]
struct Level {
    depth: AtomicUsize,
    bytes: AtomicUsize,
    room: Notify,
    running: AtomicUsize,
}

/// The writer's end of the queue.
pub struct QueueReader {
    rx: mpsc::UnboundedReceiver<OutFrame>,
    level: Arc<Level>,
}

impl WriteQueue {
    /// A queue holding at most `capacity` frames and `byte_capacity` bytes of text (one frame
    /// larger than that still goes through an empty queue).
    pub fn new(capacity: usize, byte_capacity: usize, overflow: Overflow) -> (Self, QueueReader) {
        let (tx, rx) = mpsc::unbounded_channel();
        let level = Arc::new(Level::default());
        let outbound = Self {
            tx,
            level: level.clone(),
            capacity: capacity.max(1),
            byte_capacity,
            overflow,
            overflowed: CancellationToken::new(),
        };
        (outbound, QueueReader { rx, level })
    }

    /// Queues a frame. Returns false if it was not queued (connection gone or overflowed).
    pub fn push(&self, frame: OutFrame) -> bool {
        if self.overflowed.is_cancelled() {
            return false;
        }
        let size = frame.size();
        let depth = self.level.depth.fetch_add(1, Ordering::AcqRel);
        let bytes = self.level.bytes.fetch_add(size, Ordering::AcqRel);
        let full = depth >= self.capacity || (bytes > 0 && bytes + size > self.byte_capacity);
        if full && self.overflow == Overflow::Disconnect {
            self.level.depth.fetch_sub(1, Ordering::AcqRel);
            self.level.bytes.fetch_sub(size, Ordering::AcqRel);
            if !self.overflowed.is_cancelled() {
                tracing::warn!(
                    messages = self.capacity,
                    bytes = self.byte_capacity,
                    "outbound queue full: disconnecting a peer that does not read"
                );
                self.overflowed.cancel();
            }
            return false;
        }
        if let Err(unsent) = self.tx.send(frame) {
            self.level.depth.fetch_sub(1, Ordering::AcqRel);
            self.level
                .bytes
                .fetch_sub(unsent.0.size(), Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn push_text(&self, text: String) -> bool {
        self.push(OutFrame::Text(text))
    }

    /// Resolves once the queue overflowed (WebSocket policy).
    pub fn overflowed(&self) -> &CancellationToken {
        &self.overflowed
    }

    /// Waits until the queue is below its capacity (stdio policy).
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.level.room.notified();
            if self.level.depth.load(Ordering::Acquire) < self.capacity {
                return;
            }
            notified.await;
        }
    }

    /// Counts a request that will queue a reply; false (nothing counted) when `limit` are running.
    pub fn start_request(&self, limit: usize) -> bool {
        let previous = self.level.running.fetch_add(1, Ordering::AcqRel);
        if previous >= limit {
            self.level.running.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// A request counted by [`WriteQueue::start_request`] is done.
    pub fn finish_request(&self) {
        self.level.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl QueueReader {
    pub async fn recv(&mut self) -> Option<OutFrame> {
        let frame = self.rx.recv().await;
        self.dequeued(frame.as_ref());
        frame
    }

    pub fn try_recv(&mut self) -> Option<OutFrame> {
        let frame = self.rx.try_recv().ok();
        self.dequeued(frame.as_ref());
        frame
    }

    /// True while requests are running whose replies are not queued yet.
    pub fn replies_pending(&self) -> bool {
        self.level.running.load(Ordering::Acquire) > 0
    }

    fn dequeued(&self, frame: Option<&OutFrame>) {
        if let Some(frame) = frame {
            self.level.depth.fetch_sub(1, Ordering::AcqRel);
            self.level.bytes.fetch_sub(frame.size(), Ordering::AcqRel);
            self.level.room.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_disconnects() {
        let (out, _rx) = WriteQueue::new(2, 1 << 20, Overflow::Disconnect);
        assert!(out.push_text("a".into()));
        assert!(out.push_text("b".into()));
        assert!(!out.overflowed().is_cancelled());
        assert!(!out.push_text("c".into()));
        assert!(out.overflowed().is_cancelled());
        assert!(!out.push_text("d".into()));
    }

    #[tokio::test]
    async fn overflow_by_bytes_disconnects_but_one_big_frame_passes() {
        let (out, mut rx) = WriteQueue::new(100, 10, Overflow::Disconnect);
        assert!(
            out.push_text("a".repeat(50)),
            "one frame over the bound goes through"
        );
        rx.try_recv();
        assert!(out.push_text("a".repeat(6)));
        assert!(out.push_text("a".repeat(4)));
        assert!(!out.overflowed().is_cancelled());
        assert!(!out.push_text("a".to_owned()));
        assert!(out.overflowed().is_cancelled());
    }

    #[tokio::test]
    async fn backpressure_waits_for_the_writer() {
        let (out, mut rx) = WriteQueue::new(1, 1 << 20, Overflow::Backpressure);
        let out = std::sync::Arc::new(out);
        assert!(out.push_text("a".into()));
        assert!(out.push_text("b".into()), "backpressure never drops");
        let waiter = tokio::spawn({
            let out = out.clone();
            async move { out.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        rx.try_recv();
        rx.try_recv();
        waiter.await.unwrap();
    }
}
