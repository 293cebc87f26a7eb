//! Errors of the wire layer.

/// Everything that can be wrong with bytes received from a peer.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum WireError {
    /// The msgpack body ended before a value was complete.
    #[error("truncated msgpack data")]
    Truncated,
    /// A msgpack marker byte that is not valid msgpack.
    #[error("invalid msgpack marker byte 0x{0:02x}")]
    InvalidMarker(u8),
    /// A msgpack str that is not UTF-8.
    #[error("msgpack str is not valid UTF-8")]
    InvalidUtf8,
    /// Bytes left over after the top-level msgpack value.
    #[error("{0} trailing bytes after msgpack value")]
    TrailingBytes(usize),
    /// Nesting deeper than we are willing to recurse.
    #[error("msgpack nesting deeper than {0}")]
    TooDeep(usize),
    /// A frame group whose declared sizes exceed the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// declared size in bytes
        size: u64,
        /// configured limit in bytes
        limit: u64,
    },
    /// A frame group whose prelude is inconsistent.
    #[error("malformed frame prelude: {0}")]
    BadPrelude(String),
    /// A placeholder pointing at a frame that does not exist or a bad sub-header.
    #[error("bad out-of-band placeholder: {0}")]
    BadPlaceholder(String),
    /// A value that is not a valid Dask key.
    #[error("not a valid Dask key: {0}")]
    BadKey(String),
}
