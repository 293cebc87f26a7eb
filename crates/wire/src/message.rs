//! Whole messages: the msgpack body plus out-of-band objects.
//!
//! On decode, every `{"__Serialized__": i}` / `{"__Pickled__": i}` placeholder is
//! replaced by a [`Value::Opaque`] holding the sub-header frame `i` and the
//! `num-sub-frames` frames after it. On encode, opaque objects are appended after
//! frame 0 in depth-first order and the placeholders renumbered, which is exactly
//! how a Python peer lays them out, so relayed payloads need no copying.

use crate::error::WireError;
use crate::msgpack;
use crate::value::{Opaque, OpaqueKind, Text, Value};
use bytes::Bytes;

const SERIALIZED: &str = "__Serialized__";
const PICKLED: &str = "__Pickled__";

/// Decode a frame group into a value with opaque objects in place.
pub fn decode_message(frames: &[Bytes]) -> Result<Value, WireError> {
    let first = frames
        .first()
        .ok_or_else(|| WireError::BadPrelude("message without frames".into()))?;
    let mut body = msgpack::decode(first)?;
    resolve(&mut body, frames)?;
    Ok(body)
}

fn placeholder(v: &Value) -> Option<(OpaqueKind, i64)> {
    let Value::Map(entries) = v else { return None };
    if entries.len() != 1 {
        return None;
    }
    let (Value::Str(k), idx) = &entries[0] else {
        return None;
    };
    let kind = match k.as_str() {
        SERIALIZED => OpaqueKind::Serialized,
        PICKLED => OpaqueKind::Pickled,
        _ => return None,
    };
    Some((kind, idx.as_i64()?))
}

fn resolve(v: &mut Value, frames: &[Bytes]) -> Result<(), WireError> {
    if let Some((kind, idx)) = placeholder(v) {
        *v = Value::Opaque(Box::new(take_opaque(kind, idx, frames)?));
        return Ok(());
    }
    match v {
        Value::Array(items) => items.iter_mut().try_for_each(|x| resolve(x, frames)),
        Value::Map(entries) => entries.iter_mut().try_for_each(|(k, x)| {
            resolve(k, frames)?;
            resolve(x, frames)
        }),
        _ => Ok(()),
    }
}

fn take_opaque(kind: OpaqueKind, idx: i64, frames: &[Bytes]) -> Result<Opaque, WireError> {
    let i = usize::try_from(idx)
        .ok()
        .filter(|i| *i >= 1 && *i < frames.len())
        .ok_or_else(|| {
            WireError::BadPlaceholder(format!("index {idx} of {} frames", frames.len()))
        })?;
    let header = frames[i].clone();
    let sub = msgpack::decode(&header)
        .map_err(|e| WireError::BadPlaceholder(format!("sub-header at frame {i}: {e}")))?;
    let n = match sub.get("num-sub-frames") {
        None => 0,
        Some(v) => v
            .as_i64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| WireError::BadPlaceholder("num-sub-frames is not an int".into()))?,
    };
    let end = i
        .checked_add(1 + n)
        .filter(|end| *end <= frames.len())
        .ok_or_else(|| {
            WireError::BadPlaceholder(format!(
                "object at frame {i} claims {n} sub-frames, message has {}",
                frames.len()
            ))
        })?;
    Ok(Opaque {
        kind,
        header,
        frames: frames[i + 1..end].to_vec(),
    })
}

/// One element of a batched-stream message, located but not decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOp {
    /// The element's `op`, when it is a map with a str `op` entry (the
    /// first one, as [`Value::get`] finds it).
    pub op: Option<Text>,
    /// The element's msgpack bytes, a slice of the body frame.
    pub bytes: Bytes,
}

/// Split the body frame of a batched-stream message (a msgpack array of op
/// maps, or one value alone) into its elements without building them, so
/// that a reader can decode the hot ops into typed structs and only the
/// others into [`Value`]s. Every element is checked as [`decode_message`]
/// checks it, so input this accepts decodes, and input it refuses
/// (truncated, bad markers, invalid UTF-8, trailing bytes) would not have.
/// Decode an element with [`decode_message`] on `[element bytes, frames[1..]]`:
/// placeholder indices count the message's frames, which stay in place.
pub fn split_ops(body: &Bytes) -> Result<Vec<RawOp>, WireError> {
    let mut r = msgpack::Reader::new(body);
    let (count, depth) = match r.array_len()? {
        Some(n) => (n, 1),
        None => (1, 0),
    };
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let start = r.position();
        let mut op = None;
        match r.map_len()? {
            Some(n) => {
                for _ in 0..n {
                    // field names are read in place (no allocation)
                    let is_op = match r.str()? {
                        Some(k) => k == "op",
                        None => {
                            r.skip(depth + 1)?;
                            false
                        }
                    };
                    if op.is_none() && is_op {
                        match r.str()? {
                            Some(s) => op = Some(Text::from(s)),
                            // not a str: not an op name (and later `op`
                            // entries are not what `get` would find)
                            None => {
                                r.skip(depth + 1)?;
                                op = Some(Text::default());
                            }
                        }
                    } else {
                        r.skip(depth + 1)?;
                    }
                }
            }
            None => r.skip(depth)?,
        }
        ops.push(RawOp {
            op: op.filter(|o| !o.is_empty()),
            bytes: r.slice(start, r.position()),
        });
    }
    if !r.is_at_end() {
        return Err(WireError::TrailingBytes(body.len() - r.position()));
    }
    Ok(ops)
}

/// Encode a value into frames: frame 0 is the msgpack body, opaque objects follow.
pub fn encode_message(v: &Value) -> Vec<Bytes> {
    let mut body = Vec::with_capacity(128);
    let extra = encode_message_into(v, &mut body);
    let mut frames = Vec::with_capacity(1 + extra.len());
    frames.push(Bytes::from(body));
    frames.extend(extra);
    frames
}

/// [`encode_message`] for writers that reuse one buffer: the msgpack body
/// is appended to `body` (nothing before it is touched), and the frames of
/// opaque objects, which follow the body on the wire, are returned (empty,
/// without allocating, for a message that has none).
pub fn encode_message_into(v: &Value, body: &mut Vec<u8>) -> Vec<Bytes> {
    let mut extra: Vec<Bytes> = Vec::new();
    msgpack::encode_with(v, body, &mut |o: &Opaque, out: &mut Vec<u8>| {
        let idx = 1 + extra.len();
        extra.push(o.header.clone());
        extra.extend(o.frames.iter().cloned());
        msgpack::write_map_len(out, 1);
        msgpack::write_str(
            out,
            match o.kind {
                OpaqueKind::Serialized => SERIALIZED,
                OpaqueKind::Pickled => PICKLED,
            },
        );
        msgpack::write_uint(out, idx as u64);
    });
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The elements of a batch as `decode_message` gives them.
    fn decoded_ops(frames: &[Bytes]) -> Vec<Value> {
        match decode_message(frames).unwrap() {
            Value::Array(items) => items,
            one => vec![one],
        }
    }

    #[test]
    fn split_ops_finds_each_op_and_its_bytes() {
        let blob = opaque(OpaqueKind::Serialized, 1, 9);
        let batch = Value::Array(vec![
            Value::map([
                ("key", Value::str("inc-1")),
                ("nbytes", Value::Int(28)),
                ("op", Value::str("task-finished")),
            ]),
            Value::map([("op", Value::Int(3))]),
            Value::map([("no-op", Value::Nil)]),
            Value::map([
                ("op", Value::str("add-keys")),
                ("data", Value::Opaque(Box::new(blob))),
            ]),
            Value::str("OK"),
        ]);
        let frames = encode_message(&batch);
        assert_eq!(frames.len(), 3, "body, sub-header, one frame");
        let ops = split_ops(&frames[0]).unwrap();
        let names: Vec<Option<&str>> = ops.iter().map(|o| o.op.as_deref()).collect();
        assert_eq!(
            names,
            [Some("task-finished"), None, None, Some("add-keys"), None]
        );
        // each element decodes, placeholders included, to what the whole
        // message decodes to
        let whole = decoded_ops(&frames);
        for (raw, expected) in ops.iter().zip(&whole) {
            let mut own = vec![raw.bytes.clone()];
            own.extend(frames[1..].iter().cloned());
            assert_eq!(decode_message(&own).unwrap(), *expected);
        }
        // one op alone (not in an array) is one element
        let single = encode_message(&Value::map([("op", Value::str("x"))]));
        let ops = split_ops(&single[0]).unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].op.as_deref(), Some("x"));
        assert_eq!(ops[0].bytes, single[0]);
    }

    #[test]
    fn split_ops_refuses_what_decode_refuses() {
        let body = Bytes::from(msgpack::encode(&Value::Array(vec![
            Value::map([("op", Value::str("a")), ("v", Value::str("xyz"))]),
            Value::map([("op", Value::str("b"))]),
        ])));
        for cut in 0..body.len() {
            let b = body.slice(..cut);
            assert!(split_ops(&b).is_err(), "truncated at {cut}");
            assert!(msgpack::decode(&b).is_err());
        }
        let mut trailing = body.to_vec();
        trailing.push(0xc0);
        assert!(matches!(
            split_ops(&Bytes::from(trailing)),
            Err(WireError::TrailingBytes(1))
        ));
        let mut bad_utf8 = body.to_vec();
        let at = bad_utf8.iter().position(|&b| b == b'y').unwrap();
        bad_utf8[at] = 0xff;
        let bad_utf8 = Bytes::from(bad_utf8);
        assert!(split_ops(&bad_utf8).is_err() && msgpack::decode(&bad_utf8).is_err());
    }

    fn opaque(kind: OpaqueKind, n: usize, tag: u8) -> Opaque {
        let header = msgpack::encode(&Value::map([("num-sub-frames", Value::from(n))]));
        Opaque {
            kind,
            header: Bytes::from(header),
            frames: (0..n).map(|i| Bytes::from(vec![tag, i as u8])).collect(),
        }
    }

    #[test]
    fn relays_renumber_placeholders() {
        let a = opaque(OpaqueKind::Serialized, 1, 1);
        let b = opaque(OpaqueKind::Pickled, 2, 2);
        let msg = Value::map([
            ("a", Value::Opaque(Box::new(a.clone()))),
            ("b", Value::Opaque(Box::new(b.clone()))),
        ]);
        let frames = encode_message(&msg);
        assert_eq!(frames.len(), 1 + 2 + 3);
        let body = msgpack::decode(&frames[0]).unwrap();
        assert_eq!(body.get("b").unwrap().get(PICKLED), Some(&Value::Int(3)));
        assert_eq!(decode_message(&frames).unwrap(), msg);
    }

    #[test]
    fn bad_placeholders_are_errors() {
        let body = Bytes::from(msgpack::encode(&Value::map([(SERIALIZED, Value::Int(5))])));
        assert!(matches!(
            decode_message(&[body]),
            Err(WireError::BadPlaceholder(_))
        ));
        let body = Bytes::from(msgpack::encode(&Value::map([(SERIALIZED, Value::Int(1))])));
        let header = Bytes::from(msgpack::encode(&Value::map([(
            "num-sub-frames",
            Value::Int(9),
        )])));
        assert!(matches!(
            decode_message(&[body, header]),
            Err(WireError::BadPlaceholder(_))
        ));
    }
}
