//! The stdio transport: one connection over stdin/stdout, one JSON message per line (SPEC §2.2).
//!
//! The parent process owns the pipes, so there are no admission checks. Lines longer than the
//! message limit are skipped (without buffering them) and answered `-32600`. When the parent stops
//! reading stdout the writer blocks, the queue fills and the reader stops taking stdin: nothing is
//! dropped. EOF on stdin starts shutdown.

use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio_util::sync::CancellationToken;

use crate::error::RpcError;
use crate::rpc::{Connection, OutFrame, OutboundReceiver, Overflow, RpcServer};

/// One read from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// Serves one connection over `input`/`output` until EOF or `shutdown`.
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
    let mut reader = BufReader::new(input);
    loop {
        connection.outbound().wait_for_room().await;
        let line = tokio::select! {
            _ = shutdown.cancelled() => break,
            line = read_line(&mut reader, max_message_bytes) => line,
        };
        match line {
            Ok(Some(Line::Text(bytes))) => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim_end_matches('\r');
                if text.trim().is_empty() {
                    continue;
                }
                connection.handle_frame(text).await;
            }
            Ok(Some(Line::TooLong)) => {
                connection.reply_error(&RpcError::invalid_envelope(format!(
                    "message exceeds {max_message_bytes} bytes"
                )));
            }
            Ok(None) => {
                tracing::debug!("stdin closed");
                break;
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading stdin failed");
                break;
            }
        }
    }
    connection.drain(grace).await;
    connection.close();
    connection.push_close(1000, "");
    let _ = writer.await;
}

/// Reads one `\n`-terminated line of at most `max` bytes; a longer one is consumed and reported.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // EOF: a final line without a newline still counts.
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Some(Line::TooLong),
                (false, true) => None,
                (false, false) => Some(Line::Text(line)),
            });
        }
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = chunk.len() + usize::from(found_newline);
        reader.consume(consumed);
        if found_newline {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            }));
        }
    }
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
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, max).await.unwrap() {
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
