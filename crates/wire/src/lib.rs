//! The Dask distributed wire format, without any I/O policy.
//!
//! * [`frames`]: the TCP frame-group layout (`n1`, frame count, lengths, frames),
//!   as an incremental, size-limited decoder and an encoder.
//! * [`msgpack`]: a dynamic msgpack codec for [`Value`], the message model.
//! * [`message`]: whole messages: frame 0 plus out-of-band `__Serialized__` /
//!   `__Pickled__` objects, which are kept opaque ([`Opaque`]) and renumbered on
//!   re-encoding so that payloads can be relayed without being understood.
//! * [`key`]: Dask keys in a canonical, hashable, cheap-to-clone form.
//! * [`handshake`]: the per-connection handshake message.
//! * [`pickle`]: a tiny writer for plain-data pickles (exceptions the scheduler raises).

pub mod encoded;
pub mod error;
pub mod frames;
pub mod handshake;
pub mod key;
pub mod message;
pub mod msgpack;
pub mod pickle;
pub mod value;

pub use encoded::Encoded;
pub use error::WireError;
pub use key::{Key, KeyArena};
pub use message::{decode_message, encode_message, encode_message_into, split_ops, RawOp};
pub use value::{Opaque, OpaqueKind, Text, Value};
