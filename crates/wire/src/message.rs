//! Whole messages: the msgpack body plus out-of-band objects.
//!
//! On decode, every `{"__Serialized__": i}` / `{"__Pickled__": i}` placeholder is
//! replaced by a [`Value::Opaque`] holding the sub-header frame `i` and the
//! `num-sub-frames` frames after it. On encode, opaque objects are appended after
//! frame 0 in depth-first order and the placeholders renumbered, which is exactly
//! how a Python peer lays them out, so relayed payloads need no copying.

use crate::error::WireError;
use crate::msgpack;
use crate::value::{Opaque, OpaqueKind, Value};
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

/// Encode a value into frames: frame 0 is the msgpack body, opaque objects follow.
pub fn encode_message(v: &Value) -> Vec<Bytes> {
    let mut extra: Vec<Bytes> = Vec::new();
    let mut body = Vec::with_capacity(128);
    msgpack::encode_with(v, &mut body, &mut |o: &Opaque, out: &mut Vec<u8>| {
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
    let mut frames = Vec::with_capacity(1 + extra.len());
    frames.push(Bytes::from(body));
    frames.extend(extra);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

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
