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
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A tuple (e.g. a task key such as `("x", 0)`).
    Tuple(Vec<PickleArg>),
    /// A `set` of str.
    StrSet(Vec<String>),
    /// A `dict` of str to float (e.g. resource restrictions).
    FloatDict(Vec<(String, f64)>),
    /// A `types.SimpleNamespace` with str attributes (e.g. `.address`).
    Namespace(Vec<(String, String)>),
}

impl PickleArg {
    /// A task key as Python holds it: a str, an int, or a tuple of those
    /// (other values, which keys never hold, become their text).
    pub fn key(v: &crate::Value) -> PickleArg {
        use crate::Value;
        match v {
            Value::Str(s) => PickleArg::Str(s.to_string()),
            Value::Int(i) => PickleArg::Int(*i),
            Value::Float(f) => PickleArg::Float(*f),
            Value::Array(items) => PickleArg::Tuple(items.iter().map(PickleArg::key).collect()),
            other => PickleArg::Str(other.to_string()),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            PickleArg::Str(s) => unicode(out, s),
            PickleArg::Int(i) => match i32::try_from(*i) {
                Ok(small) => {
                    out.push(b'J');
                    out.extend_from_slice(&small.to_le_bytes());
                }
                Err(_) => {
                    // LONG1: little-endian two's complement, 8 bytes
                    out.extend_from_slice(&[0x8a, 8]);
                    out.extend_from_slice(&i.to_le_bytes());
                }
            },
            PickleArg::Float(f) => {
                out.push(b'G');
                out.extend_from_slice(&f.to_be_bytes());
            }
            PickleArg::Tuple(items) => {
                out.push(b'(');
                for item in items {
                    item.write(out);
                }
                out.push(b't');
            }
            PickleArg::StrSet(items) => {
                // set([...]): protocol 2 has no set opcodes
                global(out, "builtins", "set");
                out.extend_from_slice(b"(](");
                for item in items {
                    unicode(out, item);
                }
                out.extend_from_slice(b"etR");
            }
            PickleArg::FloatDict(items) => {
                out.extend_from_slice(b"}(");
                for (k, v) in items {
                    unicode(out, k);
                    PickleArg::Float(*v).write(out);
                }
                out.push(b'u');
            }
            PickleArg::Namespace(attrs) => {
                global(out, "types", "SimpleNamespace");
                out.extend_from_slice(b")R}");
                for (k, v) in attrs {
                    unicode(out, k);
                    unicode(out, v);
                    out.push(b's');
                }
                out.push(b'b');
            }
        }
    }
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
        arg.write(&mut out);
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

    #[test]
    fn containers_and_numbers() {
        // checked with Python's pickle.loads: (("x", 3, 2**40), {"a"}, {"GPU": 1.5}, 0.25)
        let p = call(
            "builtins",
            "tuple",
            &[PickleArg::Tuple(vec![
                PickleArg::Tuple(vec![
                    PickleArg::Str("x".into()),
                    PickleArg::Int(3),
                    PickleArg::Int(1 << 40),
                ]),
                PickleArg::StrSet(vec!["a".into()]),
                PickleArg::FloatDict(vec![("GPU".into(), 1.5)]),
                PickleArg::Float(0.25),
            ])],
        );
        assert_eq!(
            &p[..],
            &b"\x80\x02cbuiltins\ntuple\n(((X\x01\x00\x00\x00xJ\x03\x00\x00\x00\x8a\x08\x00\x00\x00\x00\x00\x01\x00\x00t\
               cbuiltins\nset\n(](X\x01\x00\x00\x00aetR}(X\x03\x00\x00\x00GPUG?\xf8\x00\x00\x00\x00\x00\x00u\
               G?\xd0\x00\x00\x00\x00\x00\x00ttR."[..]
        );
    }
}
