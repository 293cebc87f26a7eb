//! A framed, handshaken Dask connection over TCP (`tcp://`), TLS (`tls://`)
//! or WebSockets on either (`ws://`, `wss://`).
//!
//! [`Conn::accept`] and [`Conn::dial`] exchange the per-connection handshake
//! (both sides write theirs first, then read the peer's), after which
//! [`Conn::read`] / [`Conn::write`] move whole Dask messages. A connection can
//! be split into a [`ConnReader`] and a [`ConnWriter`] so that one task reads
//! while another (e.g. a [`crate::net::BatchedSender`]) writes.

use super::stream::{split_tcp, split_tls, ReadHalf, Scheme, WriteHalf};
use super::tls::{server_name, CommSecurity, Tls};
use super::ws::{self, WsReader, WsWriter};
use bytes::{Bytes, BytesMut};
use dask_wire::frames::{self, FrameLimits, Parse};
use dask_wire::handshake::{self, ACCEPT_PICKLE_PROTOCOL, DIAL_PICKLE_PROTOCOL};
use dask_wire::{decode_message, encode_message_into, Value, WireError};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// How long an accepted peer has to send its handshake.
pub const ACCEPT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The out-of-band frames of a message smaller than this are copied after
/// its body into the writer's buffer; a larger message's frames are written
/// in place (vectored).
const COALESCE_BELOW: usize = 64 * 1024;

/// The read buffer never grows by more than this beyond what has arrived, so a
/// peer announcing a huge message only costs memory as it actually sends it.
const MIN_READ_RESERVE: usize = 64 * 1024;

/// Smallest spare capacity a read is issued with.
const MIN_READ_SPARE: usize = 8 * 1024;

/// Most `IoSlice`s handed to one vectored write (Linux IOV_MAX is 1024).
const MAX_IOVECS: usize = 512;

/// Everything that can go wrong on a Dask connection. Each message is meant to
/// be logged as-is, after the peer's address.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer closed the connection cleanly, between two messages.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection in the middle of a message.
    #[error(
        "connection closed in the middle of a message ({received} of {expected} bytes received)"
    )]
    ClosedMidMessage {
        /// bytes of the message buffered when the stream ended
        received: usize,
        /// bytes needed to make progress (at least the full prelude or message)
        expected: usize,
    },
    /// The frame prelude is malformed (e.g. an absurd number of frames).
    #[error("malformed frame prelude: {0}")]
    BadPrelude(String),
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes (see --max-message-size)")]
    TooLarge {
        /// declared size in bytes
        size: u64,
        /// configured limit in bytes
        limit: u64,
    },
    /// The frames arrived but do not decode (bad msgpack, bad placeholder, ...).
    #[error("undecodable message: {0}")]
    BadMessage(WireError),
    /// The peer closed (or reset) the connection before sending its handshake,
    /// as port scanners and TCP health probes do.
    #[error("connection closed before the handshake completed")]
    ClosedBeforeHandshake,
    /// The peer's handshake is missing, malformed or timed out.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// An operation did not complete in time.
    #[error("timed out after {0:?} while {1}")]
    Timeout(Duration, &'static str),
    /// An address we cannot dial.
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress {
        /// the address as given
        addr: String,
        /// what is wrong with it
        reason: String,
    },
    /// Connecting to a peer failed.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// the address dialled
        addr: String,
        /// the OS error
        source: std::io::Error,
    },
    /// The TLS handshake failed (bad or missing certificate, a peer not
    /// speaking TLS, no common protocol version).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// A `tcp://` peer while `distributed.comm.require-encryption` is set
    /// (Python's wording).
    #[error("encryption required by Dask configuration, refusing communication from/to {0:?}")]
    Insecure(String),
    /// A socket-level error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ConnError {
    /// True for the ordinary ways a peer goes away (EOF, reset, broken pipe),
    /// which deserve a quieter log line than protocol violations.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ConnError::Closed
            | ConnError::ClosedMidMessage { .. }
            | ConnError::ClosedBeforeHandshake => true,
            ConnError::Io(e) => is_disconnect_kind(e.kind()),
            _ => false,
        }
    }

    /// The error a decoding failure of a message read from this connection
    /// is reported as (for readers that decode frames themselves).
    pub fn from_wire(e: WireError) -> ConnError {
        match e {
            WireError::BadPrelude(s) => ConnError::BadPrelude(s),
            WireError::TooLarge { size, limit } => ConnError::TooLarge { size, limit },
            other => ConnError::BadMessage(other),
        }
    }
}

/// The socket errors that mean the peer went away.
fn is_disconnect_kind(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

/// Format a socket address the way Dask does: `tcp://ip:port` (`[v6]:port`).
pub fn tcp_uri(addr: SocketAddr) -> String {
    uri(Scheme::Tcp, addr)
}

/// Format a socket address with its scheme: `tls://ip:port`.
pub fn uri(scheme: Scheme, addr: SocketAddr) -> String {
    format!("{}://{addr}", scheme.name())
}

/// The read half of a connection.
pub struct ConnReader {
    side: ReadSide,
    peer: Arc<str>,
}

/// How messages arrive: framed in a byte stream, or as WebSocket messages.
enum ReadSide {
    Stream(StreamReader),
    Ws(WsReader),
}

/// A byte stream plus a reassembly buffer.
struct StreamReader {
    half: ReadHalf,
    buf: BytesMut,
    limits: FrameLimits,
}

impl ConnReader {
    /// The peer's address, `tcp://ip:port` (or `tls://`, `ws://`, `wss://`).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Read one whole message.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered, so a later
    /// call continues the same message.
    pub async fn read(&mut self) -> Result<Value, ConnError> {
        let frames = self.read_frames().await?;
        decode_message(&frames).map_err(ConnError::from_wire)
    }

    /// Read one whole message as raw frames, without decoding them.
    pub async fn read_frames(&mut self) -> Result<Vec<Bytes>, ConnError> {
        match &mut self.side {
            ReadSide::Stream(s) => s.read_frames().await,
            ReadSide::Ws(w) => w.read_frames().await,
        }
    }

    /// A hint to append to handshake errors when the first bytes are clearly
    /// not Dask (an HTTP request or a TLS hello on the TCP port).
    fn foreign_protocol_hint(&self) -> Option<&'static str> {
        match &self.side {
            ReadSide::Stream(s) => s.foreign_protocol_hint(),
            ReadSide::Ws(_) => None,
        }
    }

    /// True if the peer has closed its end or sent unsolicited data while
    /// the connection was idle (such a connection must not be reused).
    fn idle_is_stale(&mut self) -> bool {
        match &mut self.side {
            ReadSide::Stream(s) => s.idle_is_stale(),
            ReadSide::Ws(w) => w.idle_is_stale(),
        }
    }
}

impl StreamReader {
    async fn read_frames(&mut self) -> Result<Vec<Bytes>, ConnError> {
        loop {
            let need = match frames::parse(&mut self.buf, &self.limits) {
                Ok(Parse::Message(frames)) => return Ok(frames),
                Ok(Parse::NeedBytes(n)) => n,
                Err(e) => return Err(ConnError::from_wire(e)),
            };
            let have = self.buf.len();
            // Make room for the rest of the message, but grow by at most what
            // has already arrived (with a floor), so memory follows actual
            // traffic rather than a declared size; and never read into a
            // sliver of spare capacity.
            let want = need
                .saturating_sub(have)
                .clamp(MIN_READ_SPARE, have.max(MIN_READ_RESERVE));
            if self.buf.capacity() - have < want {
                self.buf.reserve(want);
            }
            let n = self.half.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    ConnError::Closed
                } else {
                    ConnError::ClosedMidMessage {
                        received: self.buf.len(),
                        expected: need,
                    }
                });
            }
        }
    }

    /// A hint to append to handshake errors when the first bytes are clearly
    /// not Dask (an HTTP request or a TLS hello on the TCP port).
    fn foreign_protocol_hint(&self) -> Option<&'static str> {
        let b = &self.buf[..];
        const HTTP: [&[u8]; 7] = [
            b"GET ",
            b"POST ",
            b"HEAD ",
            b"PUT ",
            b"DELETE ",
            b"OPTIONS ",
            b"PRI * ",
        ];
        if HTTP.iter().any(|m| b.starts_with(m)) {
            Some("the peer sent an HTTP request to the Dask TCP port (the dashboard/HTTP port is separate)")
        } else if b.len() >= 2 && b[0] == 0x16 && b[1] == 0x03 {
            Some("the peer started a TLS handshake, but this listener is tcp://; start the scheduler with --tls-ca-file and --tls-cert for tls://")
        } else {
            None
        }
    }

    /// True if the peer has closed its end or sent unsolicited bytes while the
    /// connection was idle.
    ///
    /// One read is attempted without waiting: on TLS it also consumes the
    /// protocol's own records (session tickets), which are not a reason to
    /// drop the connection.
    fn idle_is_stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Ready means end of stream, an error or unsolicited data.
        Pin::new(&mut self.half)
            .poll_read(&mut cx, &mut probe)
            .is_ready()
    }
}

/// The write half of a connection.
pub struct ConnWriter {
    side: WriteSide,
    peer: Arc<str>,
    scratch: Vec<u8>,
}

/// How messages leave: framed in a byte stream, or as WebSocket messages.
enum WriteSide {
    Stream(WriteHalf),
    Ws(WsWriter),
}

impl ConnWriter {
    /// The peer's address, `tcp://ip:port` (or `tls://`, `ws://`, `wss://`).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Encode and write one message; returns the number of bytes written.
    ///
    /// Not cancel-safe: a write interrupted half-way leaves the stream corrupt,
    /// so drop the connection if this future is cancelled.
    pub async fn write(&mut self, msg: &Value) -> Result<usize, ConnError> {
        let half = match &mut self.side {
            WriteSide::Stream(half) => half,
            WriteSide::Ws(ws) => {
                let mut buf = std::mem::take(&mut self.scratch);
                buf.clear();
                let extra = encode_message_into(msg, &mut buf);
                let body = Bytes::copy_from_slice(&buf);
                if buf.capacity() <= 4 * COALESCE_BELOW {
                    self.scratch = buf;
                }
                return ws.write_frames(body, &extra).await;
            }
        };
        // The body is encoded into the reused scratch buffer, after room for
        // a one-frame prelude: a message without out-of-band frames (nearly
        // every message) is written from there as it is, with no allocation
        // and no copy once the buffer has grown to the usual batch size.
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(frames::ONE_FRAME_PRELUDE_LEN, 0);
        let extra = encode_message_into(msg, &mut buf);
        let result = if extra.is_empty() {
            let body = buf.len() - frames::ONE_FRAME_PRELUDE_LEN;
            buf[..frames::ONE_FRAME_PRELUDE_LEN].copy_from_slice(&frames::one_frame_prelude(body));
            half.write_all(&buf)
                .await
                .map(|()| buf.len())
                .map_err(ConnError::from)
        } else {
            // Out-of-band frames (a batch of `compute-task`s carries each
            // one's run_spec): the prelude is longer than the room left, so
            // it goes out as its own slice; small frames are appended to
            // the body and the message leaves in one vectored write.
            let body = buf.len() - frames::ONE_FRAME_PRELUDE_LEN;
            let prelude = frames::prelude_with_body(body, &extra);
            let extra_len: usize = extra.iter().map(Bytes::len).sum();
            let total = prelude.len() + body + extra_len;
            let written = if body + extra_len < COALESCE_BELOW {
                for f in &extra {
                    buf.extend_from_slice(f);
                }
                write_all_vectored(half, &[&prelude, &buf[frames::ONE_FRAME_PRELUDE_LEN..]]).await
            } else {
                let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + extra.len());
                parts.push(&prelude);
                parts.push(&buf[frames::ONE_FRAME_PRELUDE_LEN..]);
                parts.extend(extra.iter().filter(|f| !f.is_empty()).map(|f| &f[..]));
                write_all_vectored(half, &parts).await
            };
            written.map(|()| total).map_err(ConnError::from)
        };
        // TLS keeps what the socket did not take at once; a no-op on TCP.
        let result = match result {
            Ok(n) => half.flush().await.map(|()| n).map_err(ConnError::from),
            e => e,
        };
        if buf.capacity() <= 4 * COALESCE_BELOW {
            self.scratch = buf;
        }
        result
    }

    /// Shut down the sending direction (the peer reads EOF).
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        match &mut self.side {
            WriteSide::Stream(half) => Ok(half.shutdown().await?),
            WriteSide::Ws(ws) => ws.shutdown().await,
        }
    }
}

/// Write every byte of `parts` with vectored writes.
async fn write_all_vectored(half: &mut WriteHalf, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut idx = 0; // first part not fully written
    let mut off = 0; // bytes of parts[idx] already written
    while idx < parts.len() {
        let end = (idx + MAX_IOVECS).min(parts.len());
        let mut slices = Vec::with_capacity(end - idx);
        slices.push(IoSlice::new(&parts[idx][off..]));
        slices.extend(parts[idx + 1..end].iter().map(|p| IoSlice::new(p)));
        let mut n = half.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while idx < parts.len() && n > 0 {
            let left = parts[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// A framed, handshaken Dask connection.
pub struct Conn {
    reader: ConnReader,
    writer: ConnWriter,
    local: Arc<str>,
    peer_handshake: Value,
}

impl Conn {
    /// Take an accepted socket: write our handshake (pickle protocol 5), then
    /// read and validate the peer's within [`ACCEPT_HANDSHAKE_TIMEOUT`].
    pub async fn accept(stream: TcpStream, limits: FrameLimits) -> Result<Conn, ConnError> {
        Conn::accept_scheme(stream, Scheme::Tcp, None, limits).await
    }

    /// Take a socket accepted on a `tls://` listener: the TLS handshake
    /// (the peer's certificate checked), then Dask's, each within
    /// [`ACCEPT_HANDSHAKE_TIMEOUT`].
    pub async fn accept_tls(
        stream: TcpStream,
        tls: &Tls,
        limits: FrameLimits,
    ) -> Result<Conn, ConnError> {
        Conn::accept_scheme(stream, Scheme::Tls, Some(tls), limits).await
    }

    /// Take a socket accepted on a listener of `scheme`: the TLS handshake
    /// for `tls://` and `wss://` (`tls` must then be given), the WebSocket
    /// upgrade for `ws://` and `wss://`, then Dask's handshake, each within
    /// [`ACCEPT_HANDSHAKE_TIMEOUT`].
    pub async fn accept_scheme(
        stream: TcpStream,
        scheme: Scheme,
        tls: Option<&Tls>,
        limits: FrameLimits,
    ) -> Result<Conn, ConnError> {
        stream.set_nodelay(true)?;
        let (peer, local) = endpoints(&stream, scheme)?;
        let halves = match (scheme.secure(), tls) {
            (false, _) => split_tcp(stream),
            (true, Some(tls)) => split_tls(
                tls_handshake(
                    tls.acceptor().accept(stream),
                    ACCEPT_HANDSHAKE_TIMEOUT,
                    TlsStream::Server,
                )
                .await?,
            ),
            (true, None) => {
                return Err(ConnError::Tls(format!(
                    "a {}:// listener without TLS settings",
                    scheme.name()
                )))
            }
        };
        let conn = if scheme.websocket() {
            let socket = ws::accept(halves, &limits, ACCEPT_HANDSHAKE_TIMEOUT).await?;
            Conn::over_websocket(socket, peer, local, limits)
        } else {
            Conn::over_stream(halves, peer, local, limits)
        };
        conn.handshake(ACCEPT_PICKLE_PROTOCOL, ACCEPT_HANDSHAKE_TIMEOUT)
            .await
    }

    /// Connect to `addr` (`tcp://host:port` or `host:port`) and handshake with
    /// pickle protocol 4, all within `timeout`. `tls://` needs
    /// [`Conn::dial_secure`].
    pub async fn dial(
        addr: &str,
        limits: FrameLimits,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        Conn::dial_secure(addr, limits, timeout, &CommSecurity::default()).await
    }

    /// Connect to `addr` (`tcp://`, `tls://`, `ws://`, `wss://` or bare
    /// `host:port`) and handshake, each step within `timeout`. `tls://` and
    /// `wss://` use the configured TLS client side; `tcp://` is refused
    /// while encryption is required (as in distributed, whose WebSocket
    /// comms do not check that setting).
    pub async fn dial_secure(
        addr: &str,
        limits: FrameLimits,
        timeout: Duration,
        security: &CommSecurity,
    ) -> Result<Conn, ConnError> {
        let (scheme, hostport) = parse_address(addr)?;
        if scheme == Scheme::Tcp && security.require_encryption {
            return Err(ConnError::Insecure(addr.to_string()));
        }
        let tls = match (scheme.secure(), &security.tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls),
            (true, None) => {
                return Err(ConnError::BadAddress {
                    addr: addr.to_string(),
                    reason: format!(
                        "{}:// needs this scheduler's TLS set-up: --tls-ca-file and \
                         --tls-cert (or distributed.comm.tls.ca-file and \
                         distributed.comm.tls.scheduler.cert)",
                        scheme.name()
                    ),
                })
            }
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(hostport)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(ConnError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => return Err(ConnError::Timeout(timeout, "connecting")),
        };
        stream.set_nodelay(true)?;
        let (peer, local) = endpoints(&stream, scheme)?;
        let halves = match tls {
            None => split_tcp(stream),
            Some(tls) => {
                let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
                let connect = tls.connector().connect(server_name(host), stream);
                split_tls(tls_handshake(connect, timeout, TlsStream::Client).await?)
            }
        };
        let conn = if scheme.websocket() {
            let url = format!("{}://{hostport}/", scheme.name());
            let socket = ws::connect(halves, &url, &limits, timeout).await?;
            Conn::over_websocket(socket, peer, local, limits)
        } else {
            Conn::over_stream(halves, peer, local, limits)
        };
        conn.handshake(DIAL_PICKLE_PROTOCOL, timeout).await
    }

    fn over_stream(
        (r, w): (ReadHalf, WriteHalf),
        peer: Arc<str>,
        local: Arc<str>,
        limits: FrameLimits,
    ) -> Conn {
        let reader = ReadSide::Stream(StreamReader {
            half: r,
            buf: BytesMut::with_capacity(8 * 1024),
            limits,
        });
        Conn::new(reader, WriteSide::Stream(w), peer, local)
    }

    fn over_websocket(
        socket: ws::WsStream,
        peer: Arc<str>,
        local: Arc<str>,
        limits: FrameLimits,
    ) -> Conn {
        let (r, w) = ws::split(socket, limits);
        Conn::new(ReadSide::Ws(r), WriteSide::Ws(w), peer, local)
    }

    fn new(reader: ReadSide, writer: WriteSide, peer: Arc<str>, local: Arc<str>) -> Conn {
        Conn {
            reader: ConnReader {
                side: reader,
                peer: peer.clone(),
            },
            writer: ConnWriter {
                side: writer,
                peer,
                scratch: Vec::with_capacity(1024),
            },
            local,
            peer_handshake: Value::Nil,
        }
    }

    async fn handshake(
        mut self,
        pickle_protocol: i64,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let ours = handshake::handshake(pickle_protocol);
        let exchange = async {
            self.writer.write(&ours).await?;
            self.reader.read().await
        };
        let theirs = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                return Err(ConnError::Handshake(format!(
                    "no handshake received within {timeout:?}"
                )))
            }
            Ok(Err(e @ (ConnError::Closed | ConnError::Io(_)))) if e.is_disconnect() => {
                return Err(ConnError::ClosedBeforeHandshake)
            }
            Ok(Err(e)) => {
                let hint = self.reader.foreign_protocol_hint();
                return Err(ConnError::Handshake(match hint {
                    Some(h) => format!("{e} ({h})"),
                    None => e.to_string(),
                }));
            }
            Ok(Ok(v)) => v,
        };
        handshake::validate(&theirs).map_err(|e| ConnError::Handshake(e.to_string()))?;
        self.peer_handshake = theirs;
        Ok(self)
    }

    /// The peer's address, `tcp://ip:port` (or `tls://`).
    pub fn peer(&self) -> &str {
        &self.reader.peer
    }

    /// Our end's address, `tcp://ip:port` (or `tls://`).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The handshake map the peer sent.
    pub fn peer_handshake(&self) -> &Value {
        &self.peer_handshake
    }

    /// Read one whole message (see [`ConnReader::read`]).
    pub async fn read(&mut self) -> Result<Value, ConnError> {
        self.reader.read().await
    }

    /// Write one message (see [`ConnWriter::write`]).
    pub async fn write(&mut self, msg: &Value) -> Result<usize, ConnError> {
        self.writer.write(msg).await
    }

    /// Shut down the sending direction.
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        self.writer.shutdown().await
    }

    /// True if an idle connection can no longer be used (peer closed it, or
    /// sent something unsolicited). Never blocks.
    pub fn is_stale(&mut self) -> bool {
        self.reader.idle_is_stale()
    }

    /// Split into independently usable read and write halves.
    pub fn into_split(self) -> (ConnReader, ConnWriter) {
        (self.reader, self.writer)
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Conn {} -> {}>", self.local, self.peer())
    }
}

/// The peer's and our own address of a connected socket, with `scheme`.
fn endpoints(stream: &TcpStream, scheme: Scheme) -> Result<(Arc<str>, Arc<str>), ConnError> {
    Ok((
        uri(scheme, stream.peer_addr()?).into(),
        uri(scheme, stream.local_addr()?).into(),
    ))
}

/// Run one side of a TLS handshake within `timeout`, naming why it failed.
async fn tls_handshake<S>(
    handshake: impl std::future::Future<Output = std::io::Result<S>>,
    timeout: Duration,
    wrap: impl FnOnce(S) -> TlsStream<TcpStream>,
) -> Result<TlsStream<TcpStream>, ConnError> {
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(ConnError::Handshake(format!(
            "no TLS handshake completed within {timeout:?}"
        ))),
        Ok(Err(e)) if is_disconnect_kind(e.kind()) => Err(ConnError::ClosedBeforeHandshake),
        Ok(Err(e)) => {
            let text = e.to_string();
            let hint = if text.contains("corrupt message") || text.contains("InvalidContentType") {
                " (the peer is not speaking TLS: is it using tcp:// for a tls:// address?)"
            } else {
                ""
            };
            Err(ConnError::Tls(format!("{text}{hint}")))
        }
        Ok(Ok(s)) => Ok(wrap(s)),
    }
}

/// Check a Dask address and return its scheme and `host:port` part.
///
/// Accepts `tcp://`, `tls://`, `ws://` and `wss://` with `host:port` or
/// `[v6]:port`, and bare `host:port` (TCP); any other scheme is rejected
/// naming it.
pub fn parse_address(addr: &str) -> Result<(Scheme, &str), ConnError> {
    let bad = |reason: String| ConnError::BadAddress {
        addr: addr.to_string(),
        reason,
    };
    let (scheme, rest) = match addr.split_once("://") {
        Some((name, rest)) => match Scheme::parse(name) {
            Some(scheme) => (scheme, rest),
            None => {
                return Err(bad(format!(
                "unsupported scheme {name:?}; only tcp://, tls://, ws:// and wss:// are supported"
            )))
            }
        },
        None => (Scheme::Tcp, addr),
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(bad("no port given".into()));
    };
    if host.is_empty() {
        return Err(bad("no host given".into()));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad(
            "IPv6 hosts must be written in brackets, e.g. [::1]:8786".into(),
        ));
    }
    if port.parse::<u16>().is_err() {
        return Err(bad(format!("{port:?} is not a valid port")));
    }
    Ok((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = [
            ("tcp://127.0.0.1:8786", Scheme::Tcp, "127.0.0.1:8786"),
            ("127.0.0.1:1", Scheme::Tcp, "127.0.0.1:1"),
            ("tcp://[::1]:80", Scheme::Tcp, "[::1]:80"),
            (
                "tcp://worker-0.svc:40000",
                Scheme::Tcp,
                "worker-0.svc:40000",
            ),
            ("tls://1.2.3.4:80", Scheme::Tls, "1.2.3.4:80"),
            ("tls://[::1]:9", Scheme::Tls, "[::1]:9"),
            ("ws://1.2.3.4:80", Scheme::Ws, "1.2.3.4:80"),
            ("wss://h:8786", Scheme::Wss, "h:8786"),
        ];
        for (input, scheme, want) in ok {
            assert_eq!(parse_address(input).unwrap(), (scheme, want), "{input}");
        }
        for bad in [
            "ucx://1.2.3.4:80",
            "ws://1.2.3.4",
            "tls://1.2.3.4",
            "tcp://1.2.3.4",
            "1.2.3.4:http",
            ":80",
            "tcp://::1:80",
            "",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        let e = parse_address("ucx://h:1").unwrap_err().to_string();
        assert!(e.contains("\"ucx\""), "{e}");
    }
}
