//! The byte stream under a Dask connection: plain TCP or TLS over TCP (and
//! the address schemes built on them, WebSockets included).
//!
//! A connection is split into a read half and a write half that two tasks
//! use at once. TCP splits into owned halves with no locking; a TLS stream
//! is one state machine, so its halves share it through `tokio::io::split`.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// How the bytes of a connection travel; also its address scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `tcp://`
    Tcp,
    /// `tls://`
    Tls,
    /// `ws://`: Dask over WebSockets on TCP
    Ws,
    /// `wss://`: Dask over WebSockets on TLS
    Wss,
}

impl Scheme {
    /// The scheme's name in an address (`tcp`, `tls`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// True when the bytes travel over TLS (`tls://`, `wss://`).
    pub fn secure(self) -> bool {
        matches!(self, Scheme::Tls | Scheme::Wss)
    }

    /// True when Dask messages travel as WebSocket messages (`ws://`, `wss://`).
    pub fn websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    /// Parse a scheme name; `None` for the ones this scheduler cannot speak.
    pub fn parse(name: &str) -> Option<Scheme> {
        match name {
            "tcp" => Some(Scheme::Tcp),
            "tls" => Some(Scheme::Tls),
            "ws" => Some(Scheme::Ws),
            "wss" => Some(Scheme::Wss),
            _ => None,
        }
    }
}

/// The read half of a connection's stream.
pub enum ReadHalf {
    /// plain TCP
    Tcp(OwnedReadHalf),
    /// TLS (boxed: the TLS state is large and rarely used)
    Tls(Box<tokio::io::ReadHalf<TlsStream<TcpStream>>>),
}

/// The write half of a connection's stream.
pub enum WriteHalf {
    /// plain TCP
    Tcp(OwnedWriteHalf),
    /// TLS
    Tls(Box<tokio::io::WriteHalf<TlsStream<TcpStream>>>),
}

/// Split a TCP stream.
pub fn split_tcp(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = stream.into_split();
    (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
}

/// Split an established TLS stream.
pub fn split_tls(stream: TlsStream<TcpStream>) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (ReadHalf::Tls(Box::new(r)), WriteHalf::Tls(Box::new(w)))
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(h) => Pin::new(h).poll_read(cx, buf),
            ReadHalf::Tls(h) => Pin::new(h.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(h) => Pin::new(h).poll_write(cx, buf),
            WriteHalf::Tls(h) => Pin::new(h.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(h) => Pin::new(h).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(h) => Pin::new(h.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Tcp(h) => h.is_write_vectored(),
            WriteHalf::Tls(h) => h.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(h) => Pin::new(h).poll_flush(cx),
            WriteHalf::Tls(h) => Pin::new(h.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(h) => Pin::new(h).poll_shutdown(cx),
            WriteHalf::Tls(h) => Pin::new(h.as_mut()).poll_shutdown(cx),
        }
    }
}
