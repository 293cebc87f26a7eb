//! Just enough msgpack reading for the pool: walk a top-level map and slice
//! out raw values (the hello message), without a full value model.
//!
//! Everything here is bounds-checked and iterative, so arbitrary input can
//! neither panic nor overflow the stack.

/// Why a buffer could not be read as msgpack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed msgpack at byte {pos}: {what}")]
pub(crate) struct DecodeError {
    pos: usize,
    what: &'static str,
}

fn err<T>(pos: usize, what: &'static str) -> Result<T, DecodeError> {
    Err(DecodeError { pos, what })
}

fn be(buf: &[u8], pos: usize, n: usize) -> Result<u64, DecodeError> {
    let end = pos.checked_add(n).filter(|&e| e <= buf.len());
    let Some(end) = end else {
        return err(pos, "truncated length");
    };
    Ok(buf[pos..end]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// One step: the header of the value at `pos`.
/// Returns (end of the header + inline payload, number of nested values).
fn step(buf: &[u8], pos: usize) -> Result<(usize, u64), DecodeError> {
    let Some(&m) = buf.get(pos) else {
        return err(pos, "unexpected end of input");
    };
    let p = pos + 1;
    // (header bytes after the marker, payload length, nested values)
    let (hdr, payload, nested): (usize, u64, u64) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
        0x80..=0x8f => (0, 0, 2 * u64::from(m & 0x0f)),
        0x90..=0x9f => (0, 0, u64::from(m & 0x0f)),
        0xa0..=0xbf => (0, u64::from(m & 0x1f), 0),
        0xc1 => return err(pos, "reserved marker 0xc1"),
        0xc4 | 0xd9 => (1, be(buf, p, 1)?, 0),
        0xc5 | 0xda => (2, be(buf, p, 2)?, 0),
        0xc6 | 0xdb => (4, be(buf, p, 4)?, 0),
        0xc7 => (1, be(buf, p, 1)? + 1, 0),
        0xc8 => (2, be(buf, p, 2)? + 1, 0),
        0xc9 => (4, be(buf, p, 4)? + 1, 0),
        0xca => (0, 4, 0),
        0xcb => (0, 8, 0),
        0xcc | 0xd0 => (0, 1, 0),
        0xcd | 0xd1 => (0, 2, 0),
        0xce | 0xd2 => (0, 4, 0),
        0xcf | 0xd3 => (0, 8, 0),
        0xd4 => (0, 2, 0),
        0xd5 => (0, 3, 0),
        0xd6 => (0, 5, 0),
        0xd7 => (0, 9, 0),
        0xd8 => (0, 17, 0),
        0xdc => (2, 0, be(buf, p, 2)?),
        0xdd => (4, 0, be(buf, p, 4)?),
        0xde => (2, 0, 2 * be(buf, p, 2)?),
        0xdf => (4, 0, 2 * be(buf, p, 4)?),
    };
    let end = usize::try_from(payload)
        .ok()
        .and_then(|len| (p + hdr).checked_add(len))
        .filter(|&e| e <= buf.len());
    match end {
        Some(end) => Ok((end, nested)),
        None => err(pos, "value runs past the end of input"),
    }
}

/// End position of the value starting at `pos`.
pub(crate) fn skip(buf: &[u8], mut pos: usize) -> Result<usize, DecodeError> {
    let mut remaining: u64 = 1;
    while remaining > 0 {
        let (end, nested) = step(buf, pos)?;
        remaining = remaining - 1 + nested;
        // Every pending value takes at least one byte: reject impossible
        // counts early instead of looping over a bogus 2^32-entry header.
        if remaining > (buf.len() - end) as u64 {
            return err(pos, "container longer than the input");
        }
        pos = end;
    }
    Ok(pos)
}

/// Number of entries if `buf` starts with a map header.
fn map_len(buf: &[u8]) -> Option<(usize, u64)> {
    let m = *buf.first()?;
    match m {
        0x80..=0x8f => Some((1, u64::from(m & 0x0f))),
        0xde => Some((3, be(buf, 1, 2).ok()?)),
        0xdf => Some((5, be(buf, 1, 4).ok()?)),
        _ => None,
    }
}

/// True if `buf` is exactly one msgpack value and that value is a map.
pub(crate) fn is_single_map(buf: &[u8]) -> bool {
    map_len(buf).is_some() && skip(buf, 0) == Ok(buf.len())
}

/// The raw value stored under the string key `key` of the top-level map.
pub(crate) fn map_get<'a>(buf: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, DecodeError> {
    let Some((mut pos, n)) = map_len(buf) else {
        return err(0, "not a map");
    };
    for _ in 0..n {
        let kend = skip(buf, pos)?;
        let vend = skip(buf, kend)?;
        if as_str(&buf[pos..kend]) == Some(key) {
            return Ok(Some(&buf[kend..vend]));
        }
        pos = vend;
    }
    Ok(None)
}

/// True if `buf` is a map whose *first* entry is `"partial": true` (a
/// streamed chunk of a reply; only the first entry is looked at, so this is
/// O(1) however large the frame).
pub(crate) fn is_partial(buf: &[u8]) -> bool {
    let Some((pos, n)) = map_len(buf) else {
        return false;
    };
    if n == 0 {
        return false;
    }
    let Ok(kend) = skip(buf, pos) else {
        return false;
    };
    as_str(&buf[pos..kend]) == Some("partial") && buf.get(kend) == Some(&0xc3)
}

/// The value as a string, if it is a msgpack str holding valid UTF-8.
pub(crate) fn as_str(raw: &[u8]) -> Option<&str> {
    let m = *raw.first()?;
    let start = match m {
        0xa0..=0xbf => 1,
        0xd9 => 2,
        0xda => 3,
        0xdb => 5,
        _ => return None,
    };
    let end = skip(raw, 0).ok()?;
    std::str::from_utf8(raw.get(start..end)?).ok()
}

/// The value as an integer, if it is a msgpack int that fits in i64.
pub(crate) fn as_int(raw: &[u8]) -> Option<i64> {
    let m = *raw.first()?;
    match m {
        0x00..=0x7f => Some(i64::from(m)),
        0xe0..=0xff => Some(i64::from(m as i8)),
        0xcc => be(raw, 1, 1).ok().map(|v| v as i64),
        0xcd => be(raw, 1, 2).ok().map(|v| v as i64),
        0xce => be(raw, 1, 4).ok().map(|v| v as i64),
        0xcf => be(raw, 1, 8).ok().and_then(|v| i64::try_from(v).ok()),
        0xd0 => be(raw, 1, 1).ok().map(|v| i64::from(v as u8 as i8)),
        0xd1 => be(raw, 1, 2).ok().map(|v| i64::from(v as u16 as i16)),
        0xd2 => be(raw, 1, 4).ok().map(|v| i64::from(v as u32 as i32)),
        0xd3 => be(raw, 1, 8).ok().map(|v| v as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // {"op": "hello", "n": -3, "v": {"a": [1, 2.5, nil]}, "b": bin(2)}
    const SAMPLE: &[u8] = &[
        0x84, 0xa2, b'o', b'p', 0xa5, b'h', b'e', b'l', b'l', b'o', 0xa1, b'n', 0xfd, 0xa1, b'v',
        0x81, 0xa1, b'a', 0x93, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0, 0xc0, 0xa1, b'b', 0xc4,
        0x02, 0xff, 0xfe,
    ];

    #[test]
    fn reads_fields() {
        assert!(is_single_map(SAMPLE));
        assert_eq!(
            map_get(SAMPLE, "op").unwrap().and_then(as_str),
            Some("hello")
        );
        assert_eq!(map_get(SAMPLE, "n").unwrap().and_then(as_int), Some(-3));
        let v = map_get(SAMPLE, "v").unwrap().unwrap();
        assert_eq!(v.len(), 15);
        assert_eq!(map_get(v, "a").unwrap().map(<[u8]>::len), Some(12));
        assert_eq!(map_get(SAMPLE, "missing").unwrap(), None);
        assert_eq!(
            map_get(SAMPLE, "b").unwrap(),
            Some(&[0xc4, 0x02, 0xff, 0xfe][..])
        );
    }

    #[test]
    fn partial_frames() {
        // {"partial": true, "tasks": []}
        let p = [
            0x82, 0xa7, b'p', b'a', b'r', b't', b'i', b'a', b'l', 0xc3, 0xa5, b't', b'a', b's',
            b'k', b's', 0x90,
        ];
        assert!(is_partial(&p));
        let mut not = p;
        not[9] = 0xc2; // "partial": false
        assert!(!is_partial(&not));
        assert!(!is_partial(SAMPLE));
        assert!(!is_partial(&[0x80]));
        assert!(!is_partial(&p[..5]));
        assert!(!is_partial(&[]));
    }

    #[test]
    fn ints() {
        assert_eq!(as_int(&[0xd0, 0x80]), Some(-128));
        assert_eq!(as_int(&[0xd1, 0xff, 0xfe]), Some(-2));
        assert_eq!(as_int(&[0xce, 0, 1, 0, 0]), Some(65536));
        assert_eq!(as_int(&[0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(
            as_int(&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some(-1)
        );
        assert_eq!(as_int(&[0xa1, b'x']), None);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for len in 0..SAMPLE.len() {
            assert!(!is_single_map(&SAMPLE[..len]));
            let _ = map_get(&SAMPLE[..len], "b");
        }
        assert!(!is_single_map(&[0xc1]));
        assert!(!is_single_map(&[0x91, 0x01]));
        assert!(!is_single_map(&[0x80, 0x80])); // trailing bytes
        assert!(is_single_map(&[0x80]));
        // a map claiming 2^32-1 entries
        assert!(skip(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01], 0).is_err());
        assert!(skip(&[0xdb, 0xff, 0xff, 0xff, 0xff], 0).is_err());
        assert!(skip(&[0xc9, 0xff, 0xff, 0xff, 0xff], 0).is_err());
        // deep nesting is iterative
        let deep = vec![0x91; 1_000_000];
        assert!(skip(&deep, 0).is_err());
        let mut ok = vec![0x91; 100_000];
        ok.push(0xc0);
        assert_eq!(skip(&ok, 0), Ok(100_001));
        assert_eq!(as_str(&[0xa2, 0xff, 0xfe]), None);
    }
}
