//! The stdio transport: one connection over stdin/stdout, one JSON message per line (SPEC §2.2).
//!
//! The parent process owns the pipes, so there are no admission checks. Lines longer than the
//! message limit are skipped (without buffering them) and answered `-32600`. When the parent stops
//! reading stdout the writer blocks, the queue fills and the reader stops taking stdin: nothing is
//! dropped. EOF on stdin starts shutdown.

use std::io;
use std::sync::Arc;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};

use crate::peer::{Overflow, WriteQueue};
use crate::rpc::{ConnectionOptions, FrameSink, FrameSource, Inbound, RpcServer};

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

/// Serves one connection over `input`/`output` until EOF or shutdown, then lets running requests
/// finish (at most the shutdown grace).
pub async fn serve<R, W>(input: R, output: W, rpc: &Arc<RpcServer>, max_message_bytes: usize)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let source = StdioSource {
        lines: LineReader::new(BufReader::new(input), max_message_bytes),
        max_message_bytes,
        failed: false,
    };
    let options = ConnectionOptions {
        overflow: Overflow::Backpressure,
        closing_input_shuts_down: true,
    };
    crate::rpc::connection::serve(rpc, source, StdioSink(BufWriter::new(output)), options).await;
}

struct StdioSource<R> {
    lines: LineReader<BufReader<R>>,
    max_message_bytes: usize,
    failed: bool,
}

impl<R: AsyncRead + Unpin + Send> FrameSource for StdioSource<R> {
    type Text = String;

    /// Waits for room in the write queue (the parent reads our stdout) before reading a line.
    async fn next(&mut self, queue: &WriteQueue) -> Inbound<String> {
        loop {
            if self.failed {
                return Inbound::Closed;
            }
            queue.wait_for_room().await;
            match self.lines.next_line().await {
                Ok(Some(Line::Text(bytes))) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let text = text.trim_end_matches('\r');
                    if !text.trim().is_empty() {
                        return Inbound::Text(text.to_owned());
                    }
                }
                Ok(Some(Line::TooLong)) => {
                    return Inbound::Skipped {
                        limit: self.max_message_bytes,
                    };
                }
                Ok(None) => return Inbound::Closed,
                Err(err) => {
                    tracing::warn!(error = %err, "reading stdin failed");
                    self.failed = true;
                }
            }
        }
    }
}

struct StdioSink<W>(BufWriter<W>);

impl<W: AsyncWrite + Unpin + Send + 'static> FrameSink for StdioSink<W> {
    async fn write(&mut self, text: String) -> io::Result<()> {
        self.0.write_all(text.as_bytes()).await?;
        self.0.write_all(b"\n").await
    }

    async fn ping(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await
    }

    async fn close(&mut self, _code: u16, _reason: &str) {
        let _ = self.0.flush().await;
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
