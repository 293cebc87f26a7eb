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
    let n = s.len();
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
    out.extend_from_slice(s.as_bytes());
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
