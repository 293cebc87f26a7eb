//! A dynamic msgpack codec for [`Value`].
//!
//! Decoding follows Python's `msgpack.loads(raw=False, strict_map_key=False)`:
//! str stays text, bin stays bytes (sliced out of the input without copying), map
//! keys may be of any type. Encoding uses the smallest representation, like
//! Python's packer with `use_bin_type=True`, so a decoded value re-encodes
//! canonically. Placeholders are not handled here (see [`crate::message`]): an
//! [`Value::Opaque`] is encoded through a caller-supplied hook.

use crate::error::WireError;
use crate::value::{Opaque, Value};
use bytes::Bytes;

/// Maximum nesting depth accepted by the decoder (protects the stack).
pub const MAX_DEPTH: usize = 256;

/// Decode one msgpack value occupying the whole input.
pub fn decode(input: &Bytes) -> Result<Value, WireError> {
    let mut dec = Decoder { buf: input, pos: 0 };
    let v = dec.value(0)?;
    if dec.pos != input.len() {
        return Err(WireError::TrailingBytes(input.len() - dec.pos));
    }
    Ok(v)
}

/// Decode one msgpack value from a byte slice (copies bin payloads).
pub fn decode_slice(input: &[u8]) -> Result<Value, WireError> {
    decode(&Bytes::copy_from_slice(input))
}

struct Decoder<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        if end > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn str(&mut self, n: usize) -> Result<Value, WireError> {
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| WireError::InvalidUtf8)?;
        Ok(Value::Str(s.into()))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, WireError> {
        // Every element needs at least one byte: refuse absurd counts before allocating.
        if n > self.buf.len() - self.pos {
            return Err(WireError::Truncated);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, WireError> {
        if n.saturating_mul(2) > self.buf.len() - self.pos {
            return Err(WireError::Truncated);
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn ext(&mut self, n: usize) -> Result<Value, WireError> {
        let t = self.u8()? as i8;
        Ok(Value::Ext(t, self.take_bytes(n)?))
    }

    fn value(&mut self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep(MAX_DEPTH));
        }
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Value::Int(m as i64),
            0x80..=0x8f => self.map((m & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array((m & 0x0f) as usize, depth)?,
            0xa0..=0xbf => self.str((m & 0x1f) as usize)?,
            0xc0 => Value::Nil,
            0xc1 => return Err(WireError::InvalidMarker(m)),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.u8()? as usize;
                Value::Bin(self.take_bytes(n)?)
            }
            0xc5 => {
                let n = self.u16()? as usize;
                Value::Bin(self.take_bytes(n)?)
            }
            0xc6 => {
                let n = self.u32()? as usize;
                Value::Bin(self.take_bytes(n)?)
            }
            0xc7 => {
                let n = self.u8()? as usize;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.u16()? as usize;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.u32()? as usize;
                self.ext(n)?
            }
            0xca => Value::Float(f32::from_be_bytes(self.take(4)?.try_into().unwrap()) as f64),
            0xcb => Value::Float(f64::from_be_bytes(self.take(8)?.try_into().unwrap())),
            0xcc => Value::Int(self.u8()? as i64),
            0xcd => Value::Int(self.u16()? as i64),
            0xce => Value::Int(self.u32()? as i64),
            0xcf => Value::from(self.u64()?),
            0xd0 => Value::Int(self.u8()? as i8 as i64),
            0xd1 => Value::Int(self.u16()? as i16 as i64),
            0xd2 => Value::Int(self.u32()? as i32 as i64),
            0xd3 => Value::Int(self.u64()? as i64),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = self.u8()? as usize;
                self.str(n)?
            }
            0xda => {
                let n = self.u16()? as usize;
                self.str(n)?
            }
            0xdb => {
                let n = self.u32()? as usize;
                self.str(n)?
            }
            0xdc => {
                let n = self.u16()? as usize;
                self.array(n, depth)?
            }
            0xdd => {
                let n = self.u32()? as usize;
                self.array(n, depth)?
            }
            0xde => {
                let n = self.u16()? as usize;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.u32()? as usize;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::Int(m as i8 as i64),
        })
    }
}

impl Decoder<'_> {
    /// Step over one value without building it, checking it exactly as
    /// [`Decoder::value`] would (markers, lengths, UTF-8, depth).
    fn skip(&mut self, depth: usize) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep(MAX_DEPTH));
        }
        let m = self.u8()?;
        let (items, len) = match m {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => return Ok(()),
            0x80..=0x8f => return self.skip_map((m & 0x0f) as usize, depth),
            0x90..=0x9f => return self.skip_array((m & 0x0f) as usize, depth),
            0xa0..=0xbf => return self.skip_str((m & 0x1f) as usize),
            0xc1 => return Err(WireError::InvalidMarker(m)),
            0xc4 => (0, self.u8()? as usize),
            0xc5 => (0, self.u16()? as usize),
            0xc6 => (0, self.u32()? as usize),
            // ext: the type byte, then the payload
            0xc7 => (0, self.u8()? as usize + 1),
            0xc8 => (0, self.u16()? as usize + 1),
            0xc9 => (0, self.u32()? as usize + 1),
            0xca | 0xce | 0xd2 => (0, 4),
            0xcb | 0xcf | 0xd3 => (0, 8),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xd4 => (0, 2),
            0xd5 => (0, 3),
            0xd6 => (0, 5),
            0xd7 => (0, 9),
            0xd8 => (0, 17),
            0xd9 => return self.u8().and_then(|n| self.skip_str(n as usize)),
            0xda => return self.u16().and_then(|n| self.skip_str(n as usize)),
            0xdb => return self.u32().and_then(|n| self.skip_str(n as usize)),
            0xdc => (1, self.u16()? as usize),
            0xdd => (1, self.u32()? as usize),
            0xde => (2, self.u16()? as usize),
            0xdf => (2, self.u32()? as usize),
        };
        match items {
            0 => self.take(len).map(|_| ()),
            1 => self.skip_array(len, depth),
            _ => self.skip_map(len, depth),
        }
    }

    fn skip_str(&mut self, n: usize) -> Result<(), WireError> {
        let raw = self.take(n)?;
        std::str::from_utf8(raw).map_err(|_| WireError::InvalidUtf8)?;
        Ok(())
    }

    fn skip_array(&mut self, n: usize, depth: usize) -> Result<(), WireError> {
        if n > self.buf.len() - self.pos {
            return Err(WireError::Truncated);
        }
        for _ in 0..n {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn skip_map(&mut self, n: usize, depth: usize) -> Result<(), WireError> {
        if n.saturating_mul(2) > self.buf.len() - self.pos {
            return Err(WireError::Truncated);
        }
        for _ in 0..2 * n {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    /// If the next value is a container whose header is `fix` (the fixed
    /// marker range), `n16` or `n32`, read the header and return its length.
    fn container_len(
        &mut self,
        fix: std::ops::RangeInclusive<u8>,
        n16: u8,
        n32: u8,
    ) -> Result<Option<usize>, WireError> {
        let Some(&m) = self.buf.get(self.pos) else {
            return Err(WireError::Truncated);
        };
        let n = if fix.contains(&m) {
            self.pos += 1;
            (m & 0x0f) as usize
        } else if m == n16 {
            self.pos += 1;
            self.u16()? as usize
        } else if m == n32 {
            self.pos += 1;
            self.u32()? as usize
        } else {
            return Ok(None);
        };
        Ok(Some(n))
    }
}

/// A cursor over msgpack bytes, for decoders of hot messages that read the
/// fields they need as values and step over the rest without building
/// them. Every value read or skipped is checked as [`decode`] checks it;
/// `depth` is the nesting level of the value (the outermost value is 0).
pub struct Reader<'a> {
    dec: Decoder<'a>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub fn new(input: &'a Bytes) -> Reader<'a> {
        Reader {
            dec: Decoder { buf: input, pos: 0 },
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.dec.pos
    }

    /// True when every byte has been consumed.
    pub fn is_at_end(&self) -> bool {
        self.dec.pos == self.dec.buf.len()
    }

    /// If the next value is an array, consume its header and return its
    /// length; otherwise consume nothing and return `None`.
    pub fn array_len(&mut self) -> Result<Option<usize>, WireError> {
        let n = self.dec.container_len(0x90..=0x9f, 0xdc, 0xdd)?;
        // every element needs at least one byte (as in `decode`)
        if n.is_some_and(|n| n > self.dec.buf.len() - self.dec.pos) {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }

    /// If the next value is a map, consume its header and return its number
    /// of entries; otherwise consume nothing and return `None`.
    pub fn map_len(&mut self) -> Result<Option<usize>, WireError> {
        let n = self.dec.container_len(0x80..=0x8f, 0xde, 0xdf)?;
        if n.is_some_and(|n| n.saturating_mul(2) > self.dec.buf.len() - self.dec.pos) {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }

    /// If the next value is a str, consume it and return it borrowed from
    /// the input (no allocation); otherwise consume nothing and return `None`.
    pub fn str(&mut self) -> Result<Option<&'a str>, WireError> {
        let start = self.dec.pos;
        let Some(raw) = self.str_bytes()? else {
            return Ok(None);
        };
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Some(s)),
            Err(_) => {
                self.dec.pos = start;
                Err(WireError::InvalidUtf8)
            }
        }
    }

    /// Like [`str`](Self::str), but the str's bytes, not checked to be
    /// UTF-8: for comparing with known ASCII names, where a match implies
    /// valid UTF-8 and a mismatch needs no check.
    pub fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let buf: &'a Bytes = self.dec.buf;
        let pos = self.dec.pos;
        let Some(&m) = buf.get(pos) else {
            return Err(WireError::Truncated);
        };
        let (header, n) = match m {
            0xa0..=0xbf => (1, (m & 0x1f) as usize),
            0xd9 => (2, *buf.get(pos + 1).ok_or(WireError::Truncated)? as usize),
            0xda => match buf.get(pos + 1..pos + 3) {
                Some(b) => (3, u16::from_be_bytes([b[0], b[1]]) as usize),
                None => return Err(WireError::Truncated),
            },
            0xdb => match buf.get(pos + 1..pos + 5) {
                Some(b) => (5, u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
                None => return Err(WireError::Truncated),
            },
            _ => return Ok(None),
        };
        let start = pos + header;
        let raw = buf.get(start..start + n).ok_or(WireError::Truncated)?;
        self.dec.pos = start + n;
        Ok(Some(raw))
    }

    /// Decode the next value.
    pub fn value(&mut self, depth: usize) -> Result<Value, WireError> {
        self.dec.value(depth)
    }

    /// Step over the next value without building it.
    pub fn skip(&mut self, depth: usize) -> Result<(), WireError> {
        self.dec.skip(depth)
    }

    /// The input between two positions of this reader, without copying.
    pub fn slice(&self, start: usize, end: usize) -> Bytes {
        self.dec.buf.slice(start..end)
    }
}

/// Encode a value; opaque objects are written by `on_opaque` (which must write
/// exactly one msgpack value, normally the placeholder map).
pub fn encode_with<F>(value: &Value, out: &mut Vec<u8>, on_opaque: &mut F)
where
    F: FnMut(&Opaque, &mut Vec<u8>),
{
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => write_int(out, *i),
        Value::UInt(u) => write_uint(out, *u),
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => write_str(out, s),
        Value::Bin(b) => write_bin(out, b),
        Value::Array(items) => {
            write_array_len(out, items.len());
            for v in items {
                encode_with(v, out, on_opaque);
            }
        }
        Value::Map(entries) => {
            write_map_len(out, entries.len());
            for (k, v) in entries {
                encode_with(k, out, on_opaque);
                encode_with(v, out, on_opaque);
            }
        }
        Value::Ext(t, data) => write_ext(out, *t, data),
        Value::Opaque(o) => on_opaque(o, out),
        Value::Raw(b) => out.extend_from_slice(b),
        Value::Encoded(e) => e.write_with(out, on_opaque),
    }
}

/// Encode a value that contains no opaque objects (they are written as nil).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_with(value, &mut out, &mut |_, out| out.push(0xc0));
    out
}

/// Write an unsigned integer in its smallest form.
pub fn write_uint(out: &mut Vec<u8>, u: u64) {
    if u < 0x80 {
        out.push(u as u8);
    } else if u <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, u as u8]);
    } else if u <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

/// Write a signed integer in its smallest form (non-negative ones as unsigned, like Python).
pub fn write_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        write_uint(out, i as u64);
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// Write a str header and payload.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_header(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Write the header of a str of `n` bytes (the shortest form, as
/// [`write_str`]); the caller appends the `n` UTF-8 bytes.
pub fn write_str_header(out: &mut Vec<u8>, n: usize) {
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Write a bin header and payload.
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xc4, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// Write an array header.
pub fn write_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Write a map header.
pub fn write_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write_ext(out: &mut Vec<u8>, t: i8, data: &[u8]) {
    let n = data.len();
    match n {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        _ if n <= u8::MAX as usize => out.extend_from_slice(&[0xc7, n as u8]),
        _ if n <= u16::MAX as usize => {
            out.push(0xc8);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc9);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.push(t as u8);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Reader::skip` accepts over the whole input.
    fn skips_whole(input: &Bytes) -> bool {
        let mut r = Reader::new(input);
        r.skip(0).is_ok() && r.is_at_end()
    }

    #[test]
    fn skip_accepts_exactly_what_decode_accepts() {
        let samples = [
            Value::map([
                ("op", Value::str("task-finished")),
                (
                    "key",
                    Value::Array(vec![Value::str("inc-abc"), Value::Int(3)]),
                ),
                ("nbytes", Value::Int(70_000)),
                ("big", Value::Int(-5_000_000_000)),
                ("type", Value::Bin(Bytes::from(vec![7u8; 300]))),
                ("f", Value::Float(1.25)),
                ("u", Value::UInt(u64::MAX)),
                ("e", Value::Ext(3, Bytes::from_static(b"abcdefgh"))),
                ("e1", Value::Ext(-2, Bytes::from_static(b"a"))),
                ("e5", Value::Ext(9, Bytes::from_static(b"abcde"))),
                ("s", Value::str("x".repeat(300))),
                ("n", Value::Nil),
                ("b", Value::Bool(false)),
            ]),
            Value::Array((0..40).map(Value::Int).collect()),
            Value::Map((0..20).map(|i| (Value::Int(i), Value::str("v"))).collect()),
        ];
        // every marker once, each followed by more items (a wrong skip
        // length misreads what follows): encoded items plus the forms our
        // encoder never writes (float32, str8/16 for short strings, wide
        // ints for small values, array16/map16 for few items)
        let mut items: Vec<Vec<u8>> = [
            Value::Ext(1, Bytes::from_static(b"a")),
            Value::Ext(2, Bytes::from_static(b"ab")),
            Value::Ext(3, Bytes::from_static(b"abcd")),
            Value::Ext(4, Bytes::from_static(b"abcdefgh")),
            Value::Ext(5, Bytes::from(vec![1u8; 16])),
            Value::Ext(6, Bytes::from(vec![2u8; 3])),
            Value::Ext(7, Bytes::from(vec![3u8; 300])),
            Value::Ext(8, Bytes::from(vec![4u8; 70_000])),
            Value::Bin(Bytes::from(vec![5u8; 3])),
            Value::Bin(Bytes::from(vec![6u8; 300])),
            Value::Bin(Bytes::from(vec![7u8; 70_000])),
            Value::str("s".repeat(40)),
            Value::str("t".repeat(300)),
            Value::str("u".repeat(70_000)),
            Value::Array((0..20).map(Value::Int).collect()),
            Value::Map((0..20).map(|i| (Value::Int(i), Value::Nil)).collect()),
            Value::Int(200),
            Value::Int(60_000),
            Value::Int(4_000_000_000),
            Value::Int(-100),
            Value::Int(-30_000),
            Value::Int(-2_000_000_000),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(0.5),
            Value::Bool(true),
            Value::Nil,
        ]
        .iter()
        .map(encode)
        .collect();
        items.extend([
            vec![0xca, 0x3f, 0x80, 0, 0],
            vec![0xd9, 1, b'x'],
            vec![0xda, 0, 1, b'y'],
            vec![0xdb, 0, 0, 0, 1, b'z'],
            vec![0xcc, 1],
            vec![0xcd, 0, 1],
            vec![0xce, 0, 0, 0, 1],
            vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![0xd0, 0xff],
            vec![0xd1, 0xff, 0xff],
            vec![0xd2, 0xff, 0xff, 0xff, 0xff],
            vec![0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0xdc, 0, 1, 0xc0],
            vec![0xdd, 0, 0, 0, 1, 0xc0],
            vec![0xde, 0, 1, 0xc0, 0xc0],
            vec![0xdf, 0, 0, 0, 1, 0xc0, 0xc0],
        ]);
        let mut all_markers = vec![0xdc];
        all_markers.extend_from_slice(&(items.len() as u16 + 1).to_be_bytes());
        for it in &items {
            all_markers.extend_from_slice(it);
        }
        all_markers.push(0xc0);
        let all_markers = Bytes::from(all_markers);
        assert!(decode(&all_markers).is_ok() && skips_whole(&all_markers));
        // a tiny xorshift: deterministic mutations and truncations
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for v in &samples {
            let enc = encode(v);
            assert!(skips_whole(&Bytes::from(enc.clone())));
            for _ in 0..3000 {
                let mut b = enc.clone();
                match rnd() % 3 {
                    0 => b.truncate((rnd() as usize) % b.len()),
                    _ => {
                        let i = (rnd() as usize) % b.len();
                        b[i] = rnd() as u8;
                    }
                }
                let b = Bytes::from(b);
                assert_eq!(decode(&b).is_ok(), skips_whole(&b), "input {:02x?}", &b[..]);
                checked += 1;
            }
        }
        assert_eq!(checked, 9000);
        // nesting deeper than MAX_DEPTH is refused by both
        let mut deep = vec![0x91u8; MAX_DEPTH + 2];
        deep.push(0xc0);
        let deep = Bytes::from(deep);
        assert!(decode(&deep).is_err() && !skips_whole(&deep));
    }

    #[test]
    fn reader_reads_headers_and_values_in_place() {
        let v = Value::Array(vec![
            Value::map([("op", Value::str("a")), ("x", Value::Int(1))]),
            Value::str("OK"),
        ]);
        let b = Bytes::from(encode(&v));
        let mut r = Reader::new(&b);
        assert_eq!(r.map_len().unwrap(), None, "an array is not a map");
        assert_eq!(r.array_len().unwrap(), Some(2));
        let start = r.position();
        assert_eq!(r.map_len().unwrap(), Some(2));
        assert_eq!(r.value(2).unwrap(), Value::str("op"));
        r.skip(2).unwrap();
        r.skip(2).unwrap();
        r.skip(2).unwrap();
        let first = r.slice(start, r.position());
        assert_eq!(decode(&first).unwrap(), v.as_seq().unwrap()[0]);
        assert_eq!(r.array_len().unwrap(), None);
        assert_eq!(r.value(1).unwrap(), Value::str("OK"));
        assert!(r.is_at_end());
        // strs are read in place, other values are left for the next call
        let b = Bytes::from(encode(&Value::Array(vec![
            Value::str("short"),
            Value::str("l".repeat(40)),
            Value::str("m".repeat(300)),
            Value::str("n".repeat(70_000)),
            Value::Int(3),
        ])));
        let mut r = Reader::new(&b);
        r.array_len().unwrap();
        assert_eq!(r.str().unwrap(), Some("short"));
        assert_eq!(r.str().unwrap(), Some("l".repeat(40).as_str()));
        assert_eq!(r.str().unwrap(), Some("m".repeat(300).as_str()));
        assert_eq!(r.str().unwrap().map(str::len), Some(70_000));
        assert_eq!(r.str().unwrap(), None);
        assert_eq!(r.value(1).unwrap(), Value::Int(3));
        assert!(r.is_at_end());
        for cut in 1..7 {
            // the header and part of "short"
            let short = b.slice(..cut);
            let mut r = Reader::new(&short);
            let _ = r.array_len();
            assert!(r.str().is_err(), "cut at {cut}");
        }
        let bad = Bytes::from_static(&[0xa2, b'o', 0xff]);
        let mut r = Reader::new(&bad);
        assert!(matches!(r.str(), Err(WireError::InvalidUtf8)));
        assert_eq!(r.position(), 0, "a refused str is not consumed");
        // its bytes, unchecked, for comparing with known names
        assert_eq!(r.str_bytes().unwrap(), Some(&[b'o', 0xff][..]));
        assert!(r.is_at_end());
        assert_eq!(Reader::new(&b).str_bytes().unwrap(), None, "an array");
        // a header claiming more entries than bytes left is refused up front
        let lying = Bytes::from_static(&[0xdf, 0, 0, 0, 9, 0xc0]);
        assert!(Reader::new(&lying).map_len().is_err());
    }

    fn roundtrip(v: Value) {
        let enc = encode(&v);
        assert_eq!(decode(&Bytes::from(enc)).unwrap(), v);
    }

    #[test]
    fn scalars_roundtrip() {
        for i in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            -1,
            -32,
            -33,
            -128,
            -129,
            -40000,
            i64::MIN,
            i64::MAX,
        ] {
            roundtrip(Value::Int(i));
        }
        roundtrip(Value::UInt(u64::MAX));
        roundtrip(Value::Float(1.5));
        roundtrip(Value::Nil);
        roundtrip(Value::Bool(true));
        roundtrip(Value::str("x".repeat(40)));
        roundtrip(Value::str("y".repeat(300)));
        roundtrip(Value::Bin(Bytes::from(vec![1u8; 70000])));
    }

    #[test]
    fn containers_roundtrip() {
        let v = Value::Map(vec![
            (
                Value::Array(vec![Value::str("sum-abc"), Value::Int(3)]),
                Value::Array((0..20).map(Value::Int).collect()),
            ),
            (Value::Int(7), Value::Ext(5, Bytes::from_static(b"abcd"))),
        ]);
        roundtrip(v);
    }

    #[test]
    fn python_int_encoding_matches() {
        // msgpack.packb(200) == b'\xcc\xc8'; msgpack.packb(-5) == b'\xfb'
        assert_eq!(encode(&Value::Int(200)), vec![0xcc, 0xc8]);
        assert_eq!(encode(&Value::Int(-5)), vec![0xfb]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode_slice(&[0xc1]), Err(WireError::InvalidMarker(0xc1)));
        assert_eq!(
            decode_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::Truncated)
        );
        assert_eq!(decode_slice(&[0xa3, b'a']), Err(WireError::Truncated));
        assert_eq!(decode_slice(&[0xa1, 0xff]), Err(WireError::InvalidUtf8));
        assert_eq!(
            decode_slice(&[0x01, 0x02]),
            Err(WireError::TrailingBytes(1))
        );
        let deep = vec![0x91u8; 10_000];
        assert_eq!(decode_slice(&deep), Err(WireError::TooDeep(MAX_DEPTH)));
    }
}
