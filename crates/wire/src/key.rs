//! Dask keys (`str | int | float | tuple[key, ...]`) in canonical form.
//!
//! A key is stored as its canonical msgpack encoding: hashing and equality are
//! byte comparisons, clones are reference-count bumps, and writing a key into an
//! outgoing message is a memcpy ([`Value::Raw`]). Two encodings of the same Python
//! key from different peers normalise to the same bytes because we always
//! re-encode the decoded value in the smallest form.

use crate::error::WireError;
use crate::msgpack;
use crate::value::{raw_str_body, str_head, Value};
use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::fmt;

/// A validated Dask key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Bytes);

impl Key {
    /// Validate and canonicalise a decoded value as a key.
    pub fn from_value(v: &Value) -> Result<Key, WireError> {
        let mut out = Vec::new();
        Key::encode_canonical(v, &mut out)?;
        Ok(Key(Bytes::from(out)))
    }

    /// Write the canonical bytes of the key value `v` into `out` (cleared
    /// first), the bytes a [`Key`] built from `v` would hold ([`Key::as_bytes`]):
    /// an index of keys can then be searched with `&out[..]` without
    /// allocating a `Key` for each incoming message.
    pub fn encode_canonical(v: &Value, out: &mut Vec<u8>) -> Result<(), WireError> {
        validate(v, 0)?;
        out.clear();
        msgpack::encode_with(v, out, &mut |_, out| out.push(0xc0));
        Ok(())
    }

    /// A plain string key.
    pub fn from_str_key(s: &str) -> Key {
        let mut out = Vec::with_capacity(s.len() + 5);
        msgpack::write_str(&mut out, s);
        Key(Bytes::from(out))
    }

    /// Move the key out of `slot`, leaving msgpack nil there: not a valid
    /// key (`from_value` rejects nil), so the placeholder can never name a
    /// task. For moving keys out of a submission without cloning them.
    pub fn take(slot: &mut Key) -> Key {
        std::mem::replace(slot, Key(Bytes::from_static(b"\xc0")))
    }

    /// The key as a message value (pre-encoded).
    pub fn to_value(&self) -> Value {
        Value::Raw(self.0.clone())
    }

    /// The canonical msgpack bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Decode back into a structured value.
    pub fn decoded(&self) -> Value {
        msgpack::decode(&self.0).unwrap_or(Value::Nil)
    }

    /// The string of a str key, or of the first element of a tuple key.
    pub fn name(&self) -> String {
        match self.decoded() {
            Value::Str(s) => s.into_string(),
            Value::Array(items) => match items.into_iter().next() {
                Some(Value::Str(s)) => s.into_string(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            other => other.to_string(),
        }
    }

    /// The name ([`Key::name`]) read in place when it is a str (a str key,
    /// or a tuple key whose first element is a str), and whether the key is a
    /// tuple; None for other keys. Lets task creation skip decoding the key.
    pub fn name_borrowed(&self) -> Option<(&str, bool)> {
        let b: &[u8] = &self.0;
        let (&tag, rest) = b.split_first()?;
        let (first, is_tuple) = match tag {
            0x91..=0x9f => (rest, true),
            0xdc => (rest.get(2..)?, true),
            0xdd => (rest.get(4..)?, true),
            _ => (b, false),
        };
        let body = if is_tuple {
            str_prefix_body(first)?
        } else {
            raw_str_body(first)?
        };
        Some((std::str::from_utf8(body).ok()?, is_tuple))
    }

    /// Dask's `key_split`: the task prefix (`"inc-abc123"` → `"inc"`,
    /// `("sum-aggregate-<token>", 0)` → `"sum-aggregate"`).
    pub fn prefix(&self) -> String {
        key_split(&self.name()).into_owned()
    }
}

/// Bytes of one chunk of a [`KeyArena`]: room for ~100 usual keys (a tuple
/// of a ~40-character name and an index is ~45 bytes).
const ARENA_CHUNK: usize = 4096;

/// Keys longer than this get a buffer of their own rather than a chunk.
const ARENA_MAX_SHARED: usize = 512;

/// Makes the keys of a graph submission with their canonical bytes side by
/// side in shared chunks, instead of one heap allocation per key.
///
/// Why: at a million tasks, the scheduler touches a task's key bytes each
/// time it writes the key into a message or checks a worker's answer, and
/// keys allocated one by one lie scattered over the heap (each with its
/// allocator header, and a reference-count header allocated at its first
/// clone): every touch is a cache miss. Keys of one submission are mostly
/// handled in the order they were submitted, so packed together they share
/// cache lines, their clones count references in the chunk's one header,
/// and releasing the graph frees a chunk per ~100 keys.
///
/// A chunk's memory is freed once every key in it is dropped: a key kept
/// after the rest of its graph is released keeps at most its chunk
/// ([`ARENA_CHUNK`] bytes) alive.
#[derive(Debug, Default)]
pub struct KeyArena {
    chunk: BytesMut,
    scratch: Vec<u8>,
}

impl KeyArena {
    /// An arena with no chunk yet.
    pub fn new() -> KeyArena {
        KeyArena::default()
    }

    /// [`Key::from_value`], the bytes placed in the arena.
    pub fn key_from_value(&mut self, v: &Value) -> Result<Key, WireError> {
        Key::encode_canonical(v, &mut self.scratch)?;
        Ok(place(&mut self.chunk, &self.scratch))
    }

    /// [`Key::from_str_key`], the bytes placed in the arena.
    pub fn key_from_str(&mut self, s: &str) -> Key {
        self.scratch.clear();
        msgpack::write_str(&mut self.scratch, s);
        place(&mut self.chunk, &self.scratch)
    }
}

/// A key of canonical `bytes`, copied into `chunk` (a fresh chunk when the
/// current one is full), or into a buffer of its own when long.
fn place(chunk: &mut BytesMut, bytes: &[u8]) -> Key {
    if bytes.len() > ARENA_MAX_SHARED {
        return Key(Bytes::copy_from_slice(bytes));
    }
    if chunk.capacity() - chunk.len() < bytes.len() {
        *chunk = BytesMut::with_capacity(ARENA_CHUNK);
    }
    chunk.extend_from_slice(bytes);
    Key(chunk.split().freeze())
}

fn validate(v: &Value, depth: usize) -> Result<(), WireError> {
    match v {
        Value::Str(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Bin(_) => Ok(()),
        Value::Array(items) if depth < 32 => items.iter().try_for_each(|x| validate(x, depth + 1)),
        other => Err(WireError::BadKey(other.to_string())),
    }
}

/// Dask's `len(word) == 8 and hex_pattern.match(word)` with `hex_pattern =
/// "[a-f]+"`: `match` anchors only at the start, so any 8-character word that
/// *starts* with a–f counts (e.g. `finalize`, which ends a prefix).
fn is_hex8(w: &str) -> bool {
    w.chars().count() == 8 && w.starts_with(|c: char| ('a'..='f').contains(&c))
}

/// The body of the msgpack str at the start of `b` (more may follow).
fn str_prefix_body(b: &[u8]) -> Option<&[u8]> {
    let (len, rest) = str_head(b)?;
    rest.get(..len)
}

/// Is `w` a word that `key_split` keeps after the first one?
fn kept_word(w: &str) -> bool {
    !w.is_empty() && w.chars().all(char::is_alphabetic) && !is_hex8(w)
}

/// Port of `dask.utils.key_split` for string keys. Borrows from `s` in
/// the common case (the prefix is a leading part of the name), so that
/// creating a task does not allocate for its prefix.
pub fn key_split(s: &str) -> Cow<'_, str> {
    let mut words = s.split('-');
    let first = words.next().unwrap_or("");
    let result: Cow<'_, str> = if first.chars().next().is_some_and(|c| c.is_alphabetic()) {
        // the kept words are contiguous in `s`: the prefix is a slice of it
        let mut end = first.len();
        for word in words {
            if kept_word(word) {
                end += 1 + word.len();
            } else {
                break;
            }
        }
        Cow::Borrowed(&s[..end])
    } else {
        let mut out = first
            .split(',')
            .next()
            .unwrap_or("")
            .trim_matches(|c| "_'()\"".contains(c))
            .to_string();
        for word in words {
            if kept_word(word) {
                out.push('-');
                out.push_str(word);
            } else {
                break;
            }
        }
        Cow::Owned(out)
    };
    if result.len() == 32
        && result
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Cow::Borrowed("data");
    }
    if let Some(stripped) = result.strip_prefix('<') {
        let inner = stripped.trim_matches(|c| c == '<' || c == '>');
        let word = inner.split_whitespace().next().unwrap_or("");
        // (only the non-alphabetic branch above can start with '<')
        return Cow::Owned(word.rsplit('.').next().unwrap_or("").to_string());
    }
    if result.is_empty() {
        return Cow::Borrowed("Other");
    }
    result
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.decoded())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_keys_equal_keys_made_one_by_one_and_share_chunks() {
        let mut arena = KeyArena::new();
        let values: Vec<Value> = (0..500)
            .map(|i| match i % 4 {
                0 => Value::str(format!("x-{i}")),
                1 => Value::Array(vec![Value::str("('bfly', 3)"), Value::Int(i)]),
                2 => Value::Int(-i),
                // longer than a chunk can share: a buffer of its own
                _ => Value::str("y".repeat(ARENA_MAX_SHARED + i as usize)),
            })
            .collect();
        let keys: Vec<Key> = values
            .iter()
            .map(|v| arena.key_from_value(v).expect("a key"))
            .collect();
        for (v, k) in values.iter().zip(&keys) {
            assert_eq!(*k, Key::from_value(v).expect("a key"));
            assert_eq!(k.decoded(), *v);
        }
        // consecutive small keys lie side by side in one buffer
        let (a, b) = (keys[0].as_bytes(), keys[1].as_bytes());
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        assert_eq!(arena.key_from_str("x-0"), Key::from_str_key("x-0"));
        // a non-key is refused, and the arena goes on
        assert!(arena.key_from_value(&Value::Nil).is_err());
        assert_eq!(arena.key_from_str("z"), Key::from_str_key("z"));
        // a key outlives the others of its chunk
        let kept = keys[1].clone();
        drop(keys);
        drop(arena);
        assert_eq!(kept.decoded(), values[1]);
    }

    #[test]
    fn a_taken_key_leaves_a_placeholder_no_key_can_equal() {
        let mut slot = Key::from_str_key("x-1");
        let moved = Key::take(&mut slot);
        assert_eq!(moved, Key::from_str_key("x-1"));
        assert_eq!(slot.decoded(), Value::Nil);
        // nil is not a key: no decoded key can have the placeholder's bytes
        assert!(Key::from_value(&Value::Nil).is_err());
    }

    #[test]
    fn canonical_bytes_are_the_keys_bytes() {
        let tuple = Value::Array(vec![Value::str("x"), Value::Int(300)]);
        let tuple_key = Key::from_value(&tuple).unwrap();
        let str_key = Key::from_str_key("inc-abc");
        let mut buf = vec![0xff; 3]; // stale contents are cleared
        Key::encode_canonical(&tuple, &mut buf).unwrap();
        assert_eq!(&buf[..], &tuple_key.as_bytes()[..]);
        Key::encode_canonical(&Value::str("inc-abc"), &mut buf).unwrap();
        assert_eq!(&buf[..], &str_key.as_bytes()[..]);
        Key::encode_canonical(&Value::str("other"), &mut buf).unwrap();
        assert_ne!(&buf[..], &str_key.as_bytes()[..]);
        assert!(Key::encode_canonical(&Value::Map(vec![]), &mut buf).is_err());
    }

    #[test]
    fn canonical_and_validated() {
        let a = Key::from_value(&Value::Array(vec![Value::str("x"), Value::Int(1)])).unwrap();
        let b = Key::from_value(&msgpack::decode_slice(&[0x92, 0xa1, b'x', 0xd0, 0x01]).unwrap())
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "('x', 1)");
        assert!(Key::from_value(&Value::Nil).is_err());
        assert!(Key::from_value(&Value::map([("a", Value::Int(1))])).is_err());
        assert_eq!(
            Key::from_str_key("inc-1"),
            Key::from_value(&Value::str("inc-1")).unwrap()
        );
    }

    #[test]
    fn key_split_matches_dask() {
        let cases = [
            ("x", "x"),
            ("x-1", "x"),
            ("x-1-2-3", "x"),
            ("x-1-2-3-a", "x"),
            ("hello-world-1", "hello-world"),
            ("inc-1ad3b51f8a0b07a2a2a3c1d1e7e9fd26", "inc"),
            ("sum-aggregate-0d2b3c1f", "sum-aggregate"),
            ("ae05086432ca935f6eba409a8ecd4896", "data"),
            ("<module.submodule.myclass object at 0xdaf372", "myclass"),
            ("x-abcdefab", "x"),
            ("('x-2', 1)", "x"),
            // `finalize` looks like hex to Dask (8 letters starting with a-f).
            (
                "sum-aggregate-finalize-hlgfinalizecompute-0b1d2f3c",
                "sum-aggregate",
            ),
            (
                "finalize-hlgfinalizecompute-0b1d2f3c",
                "finalize-hlgfinalizecompute",
            ),
            ("x-abcdefgh-y", "x"),
            ("x-zbcdefgh-y", "x-zbcdefgh-y"),
        ];
        for (input, want) in cases {
            assert_eq!(key_split(input), want, "{input}");
        }
    }

    #[test]
    fn borrowed_name_matches_decoded_name() {
        let keys = [
            Key::from_str_key("inc-1"),
            Key::from_str_key(&"x".repeat(40)),
            Key::from_str_key(&"y".repeat(300)),
            Key::from_value(&Value::Array(vec![Value::str("bfly-ab"), Value::Int(3)])).unwrap(),
            Key::from_value(&Value::Array(vec![
                Value::str("z".repeat(70)),
                Value::Int(1),
            ]))
            .unwrap(),
            Key::from_value(&Value::Array(
                (0..20).map(|i| Value::str(format!("t{i}"))).collect(),
            ))
            .unwrap(),
        ];
        for key in &keys {
            let (name, is_tuple) = key.name_borrowed().expect("a str name");
            assert_eq!(name, key.name(), "{key}");
            assert_eq!(is_tuple, matches!(key.decoded(), Value::Array(_)), "{key}");
        }
        // names that are not strs: no borrowed form
        assert_eq!(
            Key::from_value(&Value::Int(7)).unwrap().name_borrowed(),
            None
        );
        let t = Key::from_value(&Value::Array(vec![Value::Int(1), Value::str("a")])).unwrap();
        assert_eq!(t.name_borrowed(), None);
    }
}
