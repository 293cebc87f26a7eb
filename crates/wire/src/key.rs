//! Dask keys (`str | int | float | tuple[key, ...]`) in canonical form.
//!
//! A key is stored as its canonical msgpack encoding: hashing and equality are
//! byte comparisons, clones are reference-count bumps, and writing a key into an
//! outgoing message is a memcpy ([`Value::Raw`]). Two encodings of the same Python
//! key from different peers normalise to the same bytes because we always
//! re-encode the decoded value in the smallest form.

use crate::error::WireError;
use crate::msgpack;
use crate::value::Value;
use bytes::Bytes;
use std::fmt;

/// A validated Dask key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Bytes);

impl Key {
    /// Validate and canonicalise a decoded value as a key.
    pub fn from_value(v: &Value) -> Result<Key, WireError> {
        validate(v, 0)?;
        Ok(Key(Bytes::from(msgpack::encode(v))))
    }

    /// A plain string key.
    pub fn from_str_key(s: &str) -> Key {
        let mut out = Vec::with_capacity(s.len() + 5);
        msgpack::write_str(&mut out, s);
        Key(Bytes::from(out))
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
            Value::Str(s) => s,
            Value::Array(items) => match items.into_iter().next() {
                Some(Value::Str(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            },
            other => other.to_string(),
        }
    }

    /// Dask's `key_split`: the task prefix (`"inc-abc123"` → `"inc"`,
    /// `("sum-aggregate-<token>", 0)` → `"sum-aggregate"`).
    pub fn prefix(&self) -> String {
        key_split(&self.name())
    }
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

/// Port of `dask.utils.key_split` for string keys.
pub fn key_split(s: &str) -> String {
    let mut words = s.split('-');
    let first = words.next().unwrap_or("");
    let mut result = if first.chars().next().is_some_and(|c| c.is_alphabetic()) {
        first.to_string()
    } else {
        first
            .split(',')
            .next()
            .unwrap_or("")
            .trim_matches(|c| "_'()\"".contains(c))
            .to_string()
    };
    for word in words {
        if !word.is_empty() && word.chars().all(char::is_alphabetic) && !is_hex8(word) {
            result.push('-');
            result.push_str(word);
        } else {
            break;
        }
    }
    if result.len() == 32
        && result
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return "data".into();
    }
    if let Some(stripped) = result.strip_prefix('<') {
        let inner = stripped.trim_matches(|c| c == '<' || c == '>');
        let word = inner.split_whitespace().next().unwrap_or("");
        return word.rsplit('.').next().unwrap_or("").to_string();
    }
    if result.is_empty() {
        return "Other".into();
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
}
