//! A tiny writer for the few pickles the scheduler must produce itself.
//!
//! Clients unpickle `exception` fields of error replies and `task-erred`
//! messages; to make them raise a specific exception type we emit protocol-2
//! pickles of `module.name(*args)` with plain arguments. No Python is needed.

use bytes::Bytes;

/// An argument of a pickled call.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleArg {
    /// A str.
    Str(String),
    /// An int (32-bit range).
    Int(i32),
    /// A `types.SimpleNamespace` with str attributes (e.g. `.address`).
    Namespace(Vec<(String, String)>),
}

fn global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Pickle of the call `module.name(*args)`, typically an exception instance.
pub fn call(module: &str, name: &str, args: &[PickleArg]) -> Bytes {
    let mut out = vec![0x80, 0x02];
    global(&mut out, module, name);
    out.push(b'(');
    for arg in args {
        match arg {
            PickleArg::Str(s) => unicode(&mut out, s),
            PickleArg::Int(i) => {
                out.push(b'J');
                out.extend_from_slice(&i.to_le_bytes());
            }
            PickleArg::Namespace(attrs) => {
                global(&mut out, "types", "SimpleNamespace");
                out.extend_from_slice(b")R}");
                for (k, v) in attrs {
                    unicode(&mut out, k);
                    unicode(&mut out, v);
                    out.push(b's');
                }
                out.push(b'b');
            }
        }
    }
    out.extend_from_slice(b"tR.");
    Bytes::from(out)
}

/// Pickle of `module.name(message)` (an exception instance).
pub fn exception(module: &str, name: &str, message: &str) -> Bytes {
    call(module, name, &[PickleArg::Str(message.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = exception("builtins", "ValueError", "hi");
        assert_eq!(
            &p[..],
            b"\x80\x02cbuiltins\nValueError\n(X\x02\x00\x00\x00hitR."
        );
        let q = call(
            "m",
            "K",
            &[
                PickleArg::Int(3),
                PickleArg::Namespace(vec![("a".into(), "b".into())]),
            ],
        );
        assert_eq!(
            &q[..],
            b"\x80\x02cm\nK\n(J\x03\x00\x00\x00ctypes\nSimpleNamespace\n)R}X\x01\x00\x00\x00aX\x01\x00\x00\x00bsbtR."
        );
    }
}
