//! The dynamic message model.

use bytes::Bytes;
use std::fmt;

/// The string type of [`Value::Str`]: strings of up to 24 bytes (field
/// names, ops, statuses, most keys of decoded maps) are stored inline, so
/// decoding and building messages does not allocate for them.
pub type Text = compact_str::CompactString;

/// Which placeholder an opaque object travelled as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpaqueKind {
    /// `{"__Serialized__": i}`: data for workers/clients, never understood by the scheduler.
    Serialized,
    /// `{"__Pickled__": i}`: a pickle (run specs, annotations), also never unpickled in Rust.
    Pickled,
}

/// An out-of-band object: its msgpack sub-header bytes and its payload frames,
/// kept exactly as received so that it can be relayed verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Opaque {
    /// Placeholder kind.
    pub kind: OpaqueKind,
    /// The msgpack-encoded sub-header (contains `num-sub-frames`).
    pub header: Bytes,
    /// The payload frames that follow the sub-header.
    pub frames: Vec<Bytes>,
}

impl Opaque {
    /// Total payload size in bytes (header plus frames).
    pub fn nbytes(&self) -> usize {
        self.header.len() + self.frames.iter().map(Bytes::len).sum::<usize>()
    }

    /// A copy that shares no buffer with `self` (see [`Value::deep_copy`]).
    pub fn deep_copy(&self) -> Opaque {
        let copy = |b: &Bytes| Bytes::copy_from_slice(b);
        Opaque {
            kind: self.kind,
            header: copy(&self.header),
            frames: self.frames.iter().map(copy).collect(),
        }
    }
}

/// A msgpack value, extended with opaque out-of-band objects and pre-encoded msgpack.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// msgpack nil / Python None.
    Nil,
    /// msgpack bool.
    Bool(bool),
    /// A signed integer (also used for every integer that fits in i64).
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float (float32 is widened).
    Float(f64),
    /// A UTF-8 string (inline up to 24 bytes, see [`Text`]).
    Str(Text),
    /// Binary data.
    Bin(Bytes),
    /// An array (a Python tuple or list).
    Array(Vec<Value>),
    /// A map with arbitrary keys, in wire order.
    Map(Vec<(Value, Value)>),
    /// A msgpack extension value (unused by Dask; kept for fidelity).
    Ext(i8, Bytes),
    /// An out-of-band object (`__Serialized__` / `__Pickled__`).
    Opaque(Box<Opaque>),
    /// Already-encoded msgpack, written verbatim (used for interned keys).
    Raw(Bytes),
    /// A value encoded where it was built, out-of-band objects included
    /// (outgoing ops; see [`crate::encoded`]). Never produced by decoding.
    Encoded(Box<crate::encoded::Encoded>),
}

impl Value {
    /// A copy that shares no buffer with `self`: every `Bytes` inside
    /// (binary, raw, opaque frames) is copied. For values kept long after
    /// the frame they were decoded from, which a slice would keep alive whole.
    pub fn deep_copy(&self) -> Value {
        let copy = |b: &Bytes| Bytes::copy_from_slice(b);
        match self {
            Value::Bin(b) => Value::Bin(copy(b)),
            Value::Raw(b) => Value::Raw(copy(b)),
            Value::Ext(t, b) => Value::Ext(*t, copy(b)),
            Value::Array(items) => Value::Array(items.iter().map(Value::deep_copy).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.deep_copy(), v.deep_copy()))
                    .collect(),
            ),
            Value::Opaque(o) => Value::Opaque(Box::new(o.deep_copy())),
            Value::Encoded(e) => Value::Encoded(Box::new(e.deep_copy())),
            other => other.clone(),
        }
    }

    /// Build a string value.
    pub fn str(s: impl Into<Text>) -> Value {
        Value::Str(s.into())
    }

    /// Build a map from `&str` keys, the common shape of Dask messages.
    pub fn map<I, K>(entries: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<Text>,
    {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }

    /// Look up a string key in a map (None if not a map or absent). A key
    /// may be a `Str` or a pre-encoded msgpack str (`Raw`, see
    /// [`Value::is_str_key`]).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.is_str_key(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Remove and return a string-keyed entry of a map.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        match self {
            Value::Map(entries) => {
                let pos = entries.iter().position(|(k, _)| k.is_str_key(key))?;
                Some(entries.remove(pos).1)
            }
            _ => None,
        }
    }

    /// Is this the string `key`, as a `Str` or as a pre-encoded msgpack str
    /// (`Raw`, e.g. the static field names of outgoing messages)?
    pub fn is_str_key(&self, key: &str) -> bool {
        match self {
            Value::Str(s) => s == key,
            Value::Raw(b) => raw_str_body(b) == Some(key.as_bytes()),
            _ => false,
        }
    }

    /// The text of a string key: a `Str`, or a `Raw` that is exactly one
    /// msgpack str holding UTF-8.
    pub fn as_str_key(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Raw(b) => std::str::from_utf8(raw_str_body(b)?).ok(),
            _ => None,
        }
    }

    /// Text for people: a string (`Str`, or a `Raw` str) as it is, anything
    /// else in its `Display` form (tuples as Python prints them).
    pub fn to_text(&self) -> String {
        self.as_str_key()
            .map_or_else(|| self.to_string(), str::to_string)
    }

    /// Insert or replace a string-keyed entry (no-op on non-maps).
    pub fn set(&mut self, key: &str, value: Value) {
        if let Value::Map(entries) = self {
            if let Some(slot) = entries.iter_mut().find(|(k, _)| k.is_str_key(key)) {
                slot.1 = value;
            } else {
                entries.push((Value::Str(key.into()), value));
            }
        }
    }

    /// The string, if this is a str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an int that fits i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// A number as f64 (ints are converted).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Python truthiness of plain values (None/False/0/empty are false).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::UInt(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bin(b) => !b.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Map(m) => !m.is_empty(),
            _ => true,
        }
    }

    /// The elements of an array, or of a `{"__Set__": true, "as-list": [...]}` set.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            Value::Map(_) if self.get("__Set__").is_some() => match self.get("as-list") {
                Some(Value::Array(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// The entries of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// True for nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

/// The declared length of the msgpack str at the start of `b` and the
/// bytes after its header, if `b` starts with a str header.
pub(crate) fn str_head(b: &[u8]) -> Option<(usize, &[u8])> {
    let (&tag, rest) = b.split_first()?;
    Some(match tag {
        0xa0..=0xbf => (usize::from(tag & 0x1f), rest),
        0xd9 => (usize::from(*rest.first()?), rest.get(1..)?),
        0xda => (
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            rest.get(2..)?,
        ),
        0xdb => (
            u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize,
            rest.get(4..)?,
        ),
        _ => return None,
    })
}

/// The bytes of a msgpack-encoded str, if `b` is exactly one str.
pub(crate) fn raw_str_body(b: &[u8]) -> Option<&[u8]> {
    let (len, body) = str_head(b)?;
    (body.len() == len).then_some(body)
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<u64> for Value {
    fn from(u: u64) -> Self {
        match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(u),
        }
    }
}
impl From<usize> for Value {
    fn from(u: usize) -> Self {
        Value::from(u as u64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bin(b)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Nil, Into::into)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "None"),
            Value::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "'{s}'"),
            Value::Bin(b) => write!(f, "<{} bytes>", b.len()),
            Value::Array(items) => {
                write!(f, "(")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                if items.len() == 1 {
                    write!(f, ",")?;
                }
                write!(f, ")")
            }
            Value::Map(entries) => {
                write!(f, "{{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
            Value::Ext(t, b) => write!(f, "<ext {t} {} bytes>", b.len()),
            Value::Opaque(o) => write!(f, "<{:?} {} bytes>", o.kind, o.nbytes()),
            Value::Raw(b) => match crate::msgpack::decode(b) {
                Ok(v) => write!(f, "{v}"),
                Err(_) => write!(f, "<raw {} bytes>", b.len()),
            },
            Value::Encoded(e) => match e.decode() {
                Ok(v) => write!(f, "{v}"),
                Err(_) => write!(f, "<encoded value>"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Value {
        Value::Raw(Bytes::from(crate::msgpack::encode(&Value::str(s))))
    }

    #[test]
    fn text_is_a_string_as_it_is_and_anything_else_as_displayed() {
        assert_eq!(Value::str("a b").to_text(), "a b");
        assert_eq!(raw("tcp://a:1").to_text(), "tcp://a:1");
        assert_eq!(Value::Int(7).to_text(), "7");
        let tuple = Value::Array(vec![Value::str("x"), Value::Int(0)]);
        assert_eq!(tuple.to_text(), tuple.to_string());
    }

    #[test]
    fn deep_copy_shares_no_buffer() {
        let frame = Bytes::from(vec![7u8; 64]);
        let v = Value::Array(vec![
            Value::Bin(frame.slice(0..8)),
            Value::Opaque(Box::new(Opaque {
                kind: OpaqueKind::Serialized,
                header: frame.slice(8..16),
                frames: vec![frame.slice(16..32)],
            })),
        ]);
        let c = v.deep_copy();
        assert_eq!(c, v);
        let inside = |p: *const u8| frame.as_ptr_range().contains(&p);
        let Value::Array(items) = &c else { panic!() };
        let Value::Bin(b) = &items[0] else { panic!() };
        assert!(!inside(b.as_ptr()));
        let Value::Opaque(o) = &items[1] else {
            panic!()
        };
        assert!(!inside(o.header.as_ptr()) && !inside(o.frames[0].as_ptr()));
    }

    #[test]
    fn map_lookups_find_pre_encoded_str_keys() {
        let long = "k".repeat(40); // a str8, not a fixstr
        let mut m = Value::Map(vec![
            (raw("op"), Value::str("x")),
            (raw(&long), Value::Int(1)),
            (Value::str("plain"), Value::Int(2)),
            (Value::Raw(Bytes::from_static(b"\x01")), Value::Int(3)),
        ]);
        assert_eq!(m.get("op"), Some(&Value::str("x")));
        assert_eq!(m.get(&long), Some(&Value::Int(1)));
        assert_eq!(m.get("plain"), Some(&Value::Int(2)));
        assert_eq!(m.get("o"), None);
        assert_eq!(raw("op").as_str_key(), Some("op"));
        assert_eq!(Value::Raw(Bytes::from_static(b"\xa3op")).as_str_key(), None);
        m.set("op", Value::str("y"));
        assert_eq!(m.take("op"), Some(Value::str("y")));
        assert_eq!(m.get("op"), None);
    }
}
