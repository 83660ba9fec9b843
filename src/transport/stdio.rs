//! The stdio transport: one connection over stdin/stdout, one JSON message per line (SPEC §2.2).
//!
//! The parent process owns the pipes, so there are no admission checks. Lines longer than the
//! message limit are skipped (without buffering them) and answered `-32600`. When the parent stops
//! reading stdout the writer blocks, the queue fills and the reader stops taking stdin: nothing is
//! dropped. EOF on stdin starts shutdown.

use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::RpcError;
use crate::rpc::{Connection, OutFrame, OutboundReceiver, Overflow, RpcServer};

/// One read from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// Splits input into lines of at most `max` bytes without buffering longer ones. Progress lives in
/// the reader, so a `next_line` cancelled by `select!` loses nothing.
pub struct LineReader<R> {
    input: R,
    max: usize,
    line: Vec<u8>,
    too_long: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(input: R, max: usize) -> Self {
        Self {
            input,
            max,
            line: Vec::new(),
            too_long: false,
        }
    }

    /// The next line (without its `\n`), or `None` at EOF.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                // EOF: a final line without a newline still counts.
                return Ok(if self.too_long || !self.line.is_empty() {
                    Some(self.take())
                } else {
                    None
                });
            }
            let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            if !self.too_long {
                if self.line.len() + chunk.len() > self.max {
                    self.too_long = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let consumed = chunk.len() + usize::from(found_newline);
            self.input.consume(consumed);
            if found_newline {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> Line {
        if std::mem::take(&mut self.too_long) {
            self.line.clear();
            Line::TooLong
        } else {
            Line::Text(std::mem::take(&mut self.line))
        }
    }
}

/// Serves one connection over `input`/`output` until EOF or `shutdown`, then lets running requests
/// finish (at most `grace`).
pub async fn serve<R, W>(
    input: R,
    output: W,
    rpc: Arc<RpcServer>,
    max_message_bytes: usize,
    shutdown: CancellationToken,
    grace: std::time::Duration,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (connection, receiver) = Connection::new(rpc, Overflow::Backpressure);
    let writer = tokio::spawn(write_lines(BufWriter::new(output), receiver));
    let mut lines = LineReader::new(BufReader::new(input), max_message_bytes);
    let mut input_open = true;
    let mut drain_until: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled(), if drain_until.is_none() => {
                connection.stop_accepting();
                drain_until = Some(Instant::now() + grace);
            }
            _ = connection.requests_finished(), if drain_until.is_some() => break,
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => break,
            line = next_line_with_room(&connection, &mut lines), if input_open => match line {
                Ok(Some(Line::Text(bytes))) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let text = text.trim_end_matches('\r');
                    if !text.trim().is_empty() {
                        connection.handle_frame(text).await;
                    }
                }
                Ok(Some(Line::TooLong)) => {
                    connection.reply_error(&RpcError::invalid_envelope(format!(
                        "message exceeds {max_message_bytes} bytes"
                    )));
                }
                Ok(None) | Err(_) => {
                    if let Err(err) = line {
                        tracing::warn!(error = %err, "reading stdin failed");
                    }
                    tracing::debug!("stdin closed: shutting down");
                    input_open = false;
                    shutdown.cancel();
                }
            },
        }
    }
    connection.close();
    connection.push_close(1000, "");
    let _ = writer.await;
}

/// Waits for room in the outbound queue (the parent reads our stdout), then reads a line.
async fn next_line_with_room<R: AsyncBufRead + Unpin>(
    connection: &Connection,
    lines: &mut LineReader<R>,
) -> std::io::Result<Option<Line>> {
    connection.outbound().wait_for_room().await;
    lines.next_line().await
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut output: BufWriter<W>,
    mut receiver: OutboundReceiver,
) {
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            match frame {
                OutFrame::Text(text) => {
                    if output.write_all(text.as_bytes()).await.is_err()
                        || output.write_all(b"\n").await.is_err()
                    {
                        return;
                    }
                }
                OutFrame::Ping => {}
                OutFrame::Close(..) => {
                    let _ = output.flush().await;
                    return;
                }
            }
            next = receiver.try_recv();
        }
        if output.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = LineReader::new(BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_skips_long_ones() {
        let got = lines(b"{\"a\":1}\r\n0123456789abc\nok\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                Line::Text(b"{\"a\":1}\r".to_vec()),
                Line::TooLong,
                Line::Text(b"ok".to_vec()),
                Line::Text(b"last".to_vec()),
            ]
        );
    }
}
