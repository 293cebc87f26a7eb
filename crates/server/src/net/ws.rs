//! Dask over WebSockets (`ws://`, `wss://`), as distributed's `comm/ws.py`
//! speaks it: a Dask message is one binary WebSocket message holding the
//! number of frames (a little-endian `u64`, Python's `struct.pack("Q")` on
//! the little-endian machines Dask runs on), then one binary message per
//! frame. The frames are the same as on `tcp://`; only the framing differs.
//!
//! The HTTP upgrade is served on the path `/`, the only route distributed's
//! `WSListener` has; the scheduler dials `ws://host:port/` as tornado's
//! `websocket_connect` does.

use super::conn::ConnError;
use super::stream::{ReadHalf, WriteHalf};
use bytes::Bytes;
use dask_wire::frames::FrameLimits;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::Join;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A WebSocket over either stream kind (TCP or TLS).
pub type WsStream = WebSocketStream<Join<ReadHalf, WriteHalf>>;

/// The socket-level WebSocket settings for Dask's limits: one whole Dask
/// message may use at most `max_message_bytes`, so may any of its frames.
fn config(limits: &FrameLimits) -> WebSocketConfig {
    let max = usize::try_from(limits.max_message_bytes).unwrap_or(usize::MAX);
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Serve the HTTP upgrade of an accepted stream (only on the path `/`).
pub async fn accept(
    (r, w): (ReadHalf, WriteHalf),
    limits: &FrameLimits,
    timeout: Duration,
) -> Result<WsStream, ConnError> {
    // (the error type is tungstenite's, large or not)
    #[allow(clippy::result_large_err)]
    let only_root = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/" {
            Ok(resp)
        } else {
            let mut err = ErrorResponse::new(Some(format!(
                "no WebSocket endpoint at {}; Dask's is at /",
                req.uri().path()
            )));
            *err.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
            Err(err)
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        tokio::io::join(r, w),
        only_root,
        Some(config(limits)),
    );
    match tokio::time::timeout(timeout, upgrade).await {
        Err(_) => Err(ConnError::Handshake(format!(
            "no WebSocket upgrade completed within {timeout:?}"
        ))),
        Ok(r) => r.map_err(|e| upgrade_error(e, "serving")),
    }
}

/// Upgrade a dialled stream to a WebSocket at `url` (`ws://host:port/`).
pub async fn connect(
    (r, w): (ReadHalf, WriteHalf),
    url: &str,
    limits: &FrameLimits,
    timeout: Duration,
) -> Result<WsStream, ConnError> {
    let upgrade = tokio_tungstenite::client_async_with_config(
        url,
        tokio::io::join(r, w),
        Some(config(limits)),
    );
    match tokio::time::timeout(timeout, upgrade).await {
        Err(_) => Err(ConnError::Timeout(timeout, "upgrading to a WebSocket")),
        Ok(r) => r
            .map(|(ws, _)| ws)
            .map_err(|e| upgrade_error(e, "requesting")),
    }
}

/// Name why an upgrade failed; a peer that hung up is an ordinary disconnect.
fn upgrade_error(e: WsError, doing: &str) -> ConnError {
    match e {
        WsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ConnError::ClosedBeforeHandshake
        }
        WsError::Io(io) => ConnError::Io(io),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ConnError::ClosedBeforeHandshake,
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::HandshakeIncomplete,
        ) => ConnError::ClosedBeforeHandshake,
        WsError::Http(resp) => {
            let body = resp.body().as_deref().map(String::from_utf8_lossy);
            ConnError::Handshake(format!(
                "WebSocket upgrade failed while {doing} it: HTTP {}{}",
                resp.status(),
                body.map_or(String::new(), |b| format!(" ({b})"))
            ))
        }
        other => ConnError::Handshake(format!(
            "WebSocket upgrade failed while {doing} it: {other}"
        )),
    }
}

/// Split an upgraded WebSocket into a Dask reader and writer.
pub fn split(ws: WsStream, limits: FrameLimits) -> (WsReader, WsWriter) {
    let (sink, stream) = ws.split();
    (
        WsReader {
            stream,
            limits,
            pending: None,
        },
        WsWriter { sink },
    )
}

/// A message whose frame count has arrived but not all of its frames.
struct Pending {
    expected: usize,
    frames: Vec<Bytes>,
    bytes: u64,
}

/// The read side: reassembles Dask messages from WebSocket messages.
pub struct WsReader {
    stream: SplitStream<WsStream>,
    limits: FrameLimits,
    pending: Option<Pending>,
}

impl WsReader {
    /// Read one whole Dask message as its frames.
    ///
    /// Cancel-safe: the frames of a message read before a cancellation are
    /// kept, and a later call continues the same message.
    pub async fn read_frames(&mut self) -> Result<Vec<Bytes>, ConnError> {
        loop {
            let data = match self.stream.next().await {
                None | Some(Ok(Message::Close(_))) => return Err(self.closed()),
                Some(Err(e)) => return Err(self.read_error(e)),
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Text(_))) => {
                    return Err(ConnError::BadPrelude(
                        "a text WebSocket message; Dask sends binary messages only".into(),
                    ))
                }
                // pings are answered by the WebSocket layer itself
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            };
            if let Some(done) = self.take(data)? {
                return Ok(done);
            }
        }
    }

    /// Account for one binary message; the frames once a message is whole.
    fn take(&mut self, data: Bytes) -> Result<Option<Vec<Bytes>>, ConnError> {
        let Some(p) = &mut self.pending else {
            let count: [u8; 8] = data[..].try_into().map_err(|_| {
                ConnError::BadPrelude(format!(
                    "a message must start with its 8-byte frame count, got {} bytes",
                    data.len()
                ))
            })?;
            let n = u64::from_le_bytes(count);
            if n == 0 || n > self.limits.max_frames {
                return Err(ConnError::BadPrelude(format!(
                    "{n} frames in one message (1 to {} accepted)",
                    self.limits.max_frames
                )));
            }
            self.pending = Some(Pending {
                expected: n as usize,
                frames: Vec::with_capacity((n as usize).min(64)),
                bytes: 0,
            });
            return Ok(None);
        };
        p.bytes += data.len() as u64;
        if p.bytes > self.limits.max_message_bytes {
            return Err(ConnError::TooLarge {
                size: p.bytes,
                limit: self.limits.max_message_bytes,
            });
        }
        p.frames.push(data);
        if p.frames.len() < p.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.frames))
    }

    /// The error for a closed WebSocket: mid-message or between messages.
    fn closed(&self) -> ConnError {
        match &self.pending {
            None => ConnError::Closed,
            Some(p) => ConnError::ClosedMidMessage {
                received: p.bytes as usize,
                expected: p.expected,
            },
        }
    }

    fn read_error(&self, e: WsError) -> ConnError {
        match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed => self.closed(),
            WsError::Io(io) => ConnError::Io(io),
            WsError::Capacity(c) => ConnError::BadPrelude(format!("{c} (see --max-message-size)")),
            other => ConnError::BadPrelude(format!("WebSocket protocol error: {other}")),
        }
    }

    /// True if the idle WebSocket was closed or carries unsolicited data;
    /// never waits. Pings and pongs that arrived meanwhile are consumed.
    pub fn idle_is_stale(&mut self) -> bool {
        if self.pending.is_some() {
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            match self.stream.poll_next_unpin(&mut cx) {
                Poll::Pending => return false,
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Poll::Ready(_) => return true,
            }
        }
    }
}

/// The write side: sends a Dask message as its count and frames.
pub struct WsWriter {
    sink: SplitSink<WsStream, Message>,
}

impl WsWriter {
    /// Send the frames of one message (`body` first); returns the bytes of
    /// frames sent. Not cancel-safe, as [`super::ConnWriter::write`].
    pub async fn write_frames(&mut self, body: Bytes, extra: &[Bytes]) -> Result<usize, ConnError> {
        let count = (1 + extra.len()) as u64;
        let total = body.len() + extra.iter().map(Bytes::len).sum::<usize>();
        let send = async {
            self.sink
                .feed(Message::Binary(Bytes::copy_from_slice(
                    &count.to_le_bytes(),
                )))
                .await?;
            self.sink.feed(Message::Binary(body)).await?;
            for f in extra {
                self.sink.feed(Message::Binary(f.clone())).await?;
            }
            self.sink.flush().await
        };
        send.await.map(|()| total).map_err(write_error)
    }

    /// Send a WebSocket close (the peer reads the end of the connection).
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        self.sink.close().await.map_err(write_error)
    }
}

fn write_error(e: WsError) -> ConnError {
    match e {
        WsError::Io(io) => ConnError::Io(io),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ConnError::Closed,
        other => ConnError::Io(std::io::Error::other(other.to_string())),
    }
}
