//! Values encoded where they are built.
//!
//! The scheduler sends most of its ops (`compute-task` above all) once and
//! never looks at them again. Building a [`Value`] tree for such an op only
//! to encode it a moment later costs an allocation per map and a walk over
//! the tree twice (encode, then drop). An [`Encoded`] holds the msgpack bytes
//! instead, written by the code that knows the fields.
//!
//! Out-of-band objects cannot be written up front: their placeholder
//! (`{"__Pickled__": i}`) names the frame index `i` they get in the message
//! the value ends up in, which only the batch writer knows. So an `Encoded`
//! keeps each such object with the byte offset where its placeholder goes,
//! and [`crate::msgpack::encode_with`] writes the placeholder there through
//! the same callback it uses for an [`Value::Opaque`] in a tree.

use crate::error::WireError;
use crate::msgpack;
use crate::value::{Opaque, Value};
use smallvec::SmallVec;

/// Msgpack bytes of one value, with holes for out-of-band objects. See the
/// module docs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Encoded {
    body: Vec<u8>,
    /// `(offset into body, object)`, by increasing offset.
    holes: SmallVec<[(usize, Opaque); 1]>,
}

impl Encoded {
    /// An empty value with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Encoded {
        Encoded {
            body: Vec::with_capacity(capacity),
            holes: SmallVec::new(),
        }
    }

    /// The buffer to append msgpack to (with the `msgpack::write_*`
    /// functions, or verbatim pre-encoded bytes).
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Append an out-of-band object: its placeholder is written here when
    /// the value is encoded into a message.
    pub fn push_opaque(&mut self, o: Opaque) {
        self.holes.push((self.body.len(), o));
    }

    /// Append `v`; its opaque objects become holes, so nothing is lost.
    pub fn push_value(&mut self, v: &Value) {
        let holes = &mut self.holes;
        msgpack::encode_with(v, &mut self.body, &mut |o: &Opaque, out: &mut Vec<u8>| {
            holes.push((out.len(), o.clone()));
        });
    }

    /// The bytes before the first hole: the complete msgpack of everything
    /// written before the first out-of-band object (all of it if there is
    /// none). Lets a reader pick leading fields without decoding the rest.
    pub fn leading(&self) -> &[u8] {
        let end = self.holes.first().map_or(self.body.len(), |(at, _)| *at);
        &self.body[..end]
    }

    /// Write the bytes into `out`, calling `on_opaque` at each hole (it must
    /// write exactly one msgpack value there).
    pub fn write_with<F>(&self, out: &mut Vec<u8>, on_opaque: &mut F)
    where
        F: FnMut(&Opaque, &mut Vec<u8>),
    {
        let mut from = 0;
        for (at, o) in &self.holes {
            out.extend_from_slice(&self.body[from..*at]);
            on_opaque(o, out);
            from = *at;
        }
        out.extend_from_slice(&self.body[from..]);
    }

    /// The value as a tree, opaque objects included: the same value a peer
    /// decodes from a message holding it. For tests and diagnostics, not
    /// the hot path.
    pub fn decode(&self) -> Result<Value, WireError> {
        let mut body = Vec::with_capacity(self.body.len() + 16 * self.holes.len());
        let extra =
            crate::message::encode_message_into(&Value::Encoded(Box::new(self.clone())), &mut body);
        let mut frames = Vec::with_capacity(1 + extra.len());
        frames.push(bytes::Bytes::from(body));
        frames.extend(extra);
        crate::message::decode_message(&frames)
    }

    /// A copy that shares no buffer with `self` (see [`Value::deep_copy`]).
    pub fn deep_copy(&self) -> Encoded {
        Encoded {
            body: self.body.clone(),
            holes: self
                .holes
                .iter()
                .map(|(at, o)| (*at, o.deep_copy()))
                .collect(),
        }
    }

    /// Wrap into a [`Value`].
    pub fn into_value(self) -> Value {
        Value::Encoded(Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{decode_message, encode_message};
    use crate::value::OpaqueKind;
    use bytes::Bytes;

    fn blob(kind: OpaqueKind, byte: u8) -> Opaque {
        Opaque {
            kind,
            header: Bytes::from(msgpack::encode(&Value::map([(
                "num-sub-frames",
                Value::Int(1),
            )]))),
            frames: vec![Bytes::from(vec![byte; 5])],
        }
    }

    /// A map with two opaque values and a nested array, as a tree.
    fn tree() -> Value {
        Value::map([
            ("op", Value::str("compute-task")),
            (
                "run_spec",
                Value::Opaque(Box::new(blob(OpaqueKind::Pickled, 1))),
            ),
            ("n", Value::Int(-7)),
            (
                "deps",
                Value::Array(vec![
                    Value::str("a"),
                    Value::Opaque(Box::new(blob(OpaqueKind::Serialized, 2))),
                ]),
            ),
            ("last", Value::Nil),
        ])
    }

    /// The same map written field by field into an `Encoded`.
    fn built() -> Encoded {
        let mut e = Encoded::with_capacity(64);
        msgpack::write_map_len(e.buf(), 5);
        msgpack::write_str(e.buf(), "op");
        msgpack::write_str(e.buf(), "compute-task");
        msgpack::write_str(e.buf(), "run_spec");
        e.push_opaque(blob(OpaqueKind::Pickled, 1));
        msgpack::write_str(e.buf(), "n");
        msgpack::write_int(e.buf(), -7);
        msgpack::write_str(e.buf(), "deps");
        e.push_value(&Value::Array(vec![
            Value::str("a"),
            Value::Opaque(Box::new(blob(OpaqueKind::Serialized, 2))),
        ]));
        msgpack::write_str(e.buf(), "last");
        e.buf().push(0xc0);
        e
    }

    #[test]
    fn encodes_to_the_same_frames_as_the_tree() {
        assert_eq!(
            encode_message(&built().into_value()),
            encode_message(&tree())
        );
        // inside a batch, after another op with an opaque: frame indices
        // continue from the earlier op's
        let first = Value::map([("x", Value::Opaque(Box::new(blob(OpaqueKind::Pickled, 9))))]);
        let batch_tree = Value::Array(vec![first.clone(), tree()]);
        let batch_built = Value::Array(vec![first, built().into_value()]);
        let frames = encode_message(&batch_built);
        assert_eq!(frames, encode_message(&batch_tree));
        assert_eq!(frames.len(), 1 + 3 * 2);
        assert_eq!(
            decode_message(&frames).unwrap(),
            decode_message(&encode_message(&batch_tree)).unwrap()
        );
    }

    #[test]
    fn decodes_back_to_the_tree() {
        let want = decode_message(&encode_message(&tree())).unwrap();
        assert_eq!(built().decode().unwrap(), want);
        // push_value of the whole tree is the same value too
        let mut e = Encoded::default();
        e.push_value(&tree());
        assert_eq!(e, built());
    }

    #[test]
    fn plain_encode_writes_nil_for_holes() {
        let mut e = Encoded::default();
        msgpack::write_array_len(e.buf(), 2);
        e.push_opaque(blob(OpaqueKind::Pickled, 1));
        msgpack::write_int(e.buf(), 3);
        assert_eq!(e.leading(), [0x92]);
        assert_eq!(msgpack::encode(&e.into_value()), [0x92, 0xc0, 0x03]);
    }
}
