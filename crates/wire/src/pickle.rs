//! A tiny writer for the few pickles the scheduler must produce itself.
//!
//! Clients unpickle `exception` fields of error replies and `task-erred`
//! messages; to make them raise a specific exception type we emit
//! `PROTO 2, GLOBAL module\nname\n, BINUNICODE message, TUPLE1, REDUCE, STOP`,
//! i.e. `module.name(message)`. No Python is needed.

use bytes::Bytes;

/// Pickle of `module.name(message)` (an exception instance).
pub fn exception(module: &str, name: &str, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(32 + module.len() + name.len() + message.len());
    out.extend_from_slice(&[0x80, 0x02, b'c']);
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    out.push(b'X');
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&[0x85, b'R', b'.']);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn layout() {
        let p = super::exception("builtins", "ValueError", "hi");
        assert_eq!(&p[..], b"\x80\x02cbuiltins\nValueError\nX\x02\x00\x00\x00hi\x85R.");
    }
}
