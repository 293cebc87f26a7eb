//! The handshake each side writes first on every connection.

use crate::error::WireError;
use crate::value::Value;

/// Pickle protocol we advertise when accepting connections.
pub const ACCEPT_PICKLE_PROTOCOL: i64 = 5;
/// Pickle protocol we advertise when dialling (the Python scheduler uses 4 there).
pub const DIAL_PICKLE_PROTOCOL: i64 = 4;

/// The handshake message: no compression, Python 3.11.7, the given pickle protocol.
pub fn handshake(pickle_protocol: i64) -> Value {
    Value::map([
        ("compression", Value::Nil),
        (
            "python",
            Value::Array(vec![Value::Int(3), Value::Int(11), Value::Int(7)]),
        ),
        ("pickle-protocol", Value::Int(pickle_protocol)),
    ])
}

/// Check a peer's handshake has the fields Dask requires.
pub fn validate(peer: &Value) -> Result<(), WireError> {
    if peer.as_map().is_none() {
        return Err(WireError::BadPrelude(format!(
            "handshake is not a map: {peer}"
        )));
    }
    for field in ["compression", "pickle-protocol"] {
        if peer.get(field).is_none() {
            return Err(WireError::BadPrelude(format!(
                "handshake lacks '{field}' (are the Dask versions in sync?)"
            )));
        }
    }
    Ok(())
}
