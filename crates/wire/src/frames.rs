//! The TCP frame-group layout of one Dask message.
//!
//! ```text
//! u64 n1 | u64 nframes | nframes × u64 length | frame bytes...
//! ```
//! all little-endian. `n1` is only a read hint of the sender and is ignored when
//! reading; we always write the whole message size there.

use crate::error::WireError;
use bytes::{Buf, Bytes, BytesMut};

/// Limits that protect the reader against absurd or hostile preludes.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Largest accepted message (prelude plus frames), in bytes.
    pub max_message_bytes: u64,
    /// Largest accepted number of frames in one message.
    pub max_frames: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_message_bytes: 4 << 30,
            max_frames: 1 << 20,
        }
    }
}

/// Outcome of looking at the start of a read buffer.
#[derive(Debug, PartialEq)]
pub enum Parse {
    /// A whole message was removed from the buffer.
    Message(Vec<Bytes>),
    /// More bytes are needed; at least this many in total in the buffer.
    NeedBytes(usize),
}

/// Try to take one complete frame group off the front of `buf`.
///
/// Validates the prelude against `limits` as soon as it is readable, so a
/// hostile length is rejected before anything is allocated for it.
pub fn parse(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Parse, WireError> {
    if buf.len() < 16 {
        return Ok(Parse::NeedBytes(16));
    }
    let nframes = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    if nframes > limits.max_frames {
        return Err(WireError::BadPrelude(format!(
            "{nframes} frames exceeds the limit of {}",
            limits.max_frames
        )));
    }
    let prelude = 16 + 8 * nframes as usize;
    if buf.len() < prelude {
        return Ok(Parse::NeedBytes(prelude));
    }
    let mut total: u64 = prelude as u64;
    for i in 0..nframes as usize {
        let off = 16 + 8 * i;
        let len = u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
        total = total.saturating_add(len);
        if total > limits.max_message_bytes {
            return Err(WireError::TooLarge {
                size: total,
                limit: limits.max_message_bytes,
            });
        }
    }
    let total = total as usize;
    if buf.len() < total {
        return Ok(Parse::NeedBytes(total));
    }
    let lengths: Vec<usize> = (0..nframes as usize)
        .map(|i| {
            let off = 16 + 8 * i;
            u64::from_le_bytes(buf[off..off + 8].try_into().unwrap()) as usize
        })
        .collect();
    buf.advance(prelude);
    let mut frames = Vec::with_capacity(lengths.len());
    for len in lengths {
        frames.push(buf.split_to(len).freeze());
    }
    Ok(Parse::Message(frames))
}

/// The prelude (`n1`, count, lengths) to write before `frames`.
pub fn prelude(frames: &[Bytes]) -> Vec<u8> {
    prelude_of_lengths(frames.iter().map(Bytes::len))
}

/// The prelude of a message whose frames are `body_len` bytes (not yet
/// a `Bytes`, e.g. still in a writer's buffer) followed by `rest`: the same
/// bytes [`prelude`] gives for the whole list.
pub fn prelude_with_body(body_len: usize, rest: &[Bytes]) -> Vec<u8> {
    prelude_of_lengths(std::iter::once(body_len).chain(rest.iter().map(Bytes::len)))
}

fn prelude_of_lengths<I>(lengths: I) -> Vec<u8>
where
    I: Iterator<Item = usize> + Clone,
{
    let n = lengths.clone().count();
    let payload: usize = lengths.clone().sum();
    let mut out = Vec::with_capacity(16 + 8 * n);
    out.extend_from_slice(&((8 + 8 * n + payload) as u64).to_le_bytes());
    out.extend_from_slice(&(n as u64).to_le_bytes());
    for len in lengths {
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    out
}

/// Length of the prelude of a message that has one frame.
pub const ONE_FRAME_PRELUDE_LEN: usize = 24;

/// The prelude of a message whose only frame is `body_len` bytes, the same
/// bytes [`prelude`] gives: for writers that encode the body after room left
/// for the prelude, and fill it in once the body's length is known.
pub fn one_frame_prelude(body_len: usize) -> [u8; ONE_FRAME_PRELUDE_LEN] {
    let mut out = [0u8; ONE_FRAME_PRELUDE_LEN];
    out[..8].copy_from_slice(&((16 + body_len) as u64).to_le_bytes());
    out[8..16].copy_from_slice(&1u64.to_le_bytes());
    out[16..].copy_from_slice(&(body_len as u64).to_le_bytes());
    out
}

/// A whole message as one contiguous buffer (prelude plus frames).
pub fn to_contiguous(frames: &[Bytes]) -> Bytes {
    let mut out = prelude(frames);
    for f in frames {
        out.extend_from_slice(f);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_prelude_is_the_general_prelude_of_one_frame() {
        for n in [1usize, 7, 300, 70_000] {
            let body = Bytes::from(vec![0xA5u8; n]);
            assert_eq!(one_frame_prelude(n).to_vec(), prelude(&[body]));
        }
    }

    #[test]
    fn prelude_with_body_is_the_general_prelude() {
        let rest = [
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from(vec![1u8; 300]),
        ];
        for n in [0usize, 5, 70_000] {
            let body = Bytes::from(vec![0x5Au8; n]);
            let mut all = vec![body];
            all.extend(rest.iter().cloned());
            assert_eq!(prelude_with_body(n, &rest), prelude(&all));
        }
        assert_eq!(prelude_with_body(9, &[]).as_slice(), one_frame_prelude(9));
    }

    #[test]
    fn roundtrip_and_incremental() {
        let frames = vec![Bytes::from_static(b"\xa2OK"), Bytes::from_static(b"xyz")];
        let wire = to_contiguous(&frames);
        let limits = FrameLimits::default();
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert!(matches!(parse(&mut buf, &limits), Ok(Parse::NeedBytes(_))));
        }
        let mut buf = BytesMut::from(&wire[..]);
        buf.extend_from_slice(b"next");
        assert_eq!(parse(&mut buf, &limits), Ok(Parse::Message(frames)));
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn rejects_absurd_lengths() {
        let limits = FrameLimits::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(matches!(
            parse(&mut buf, &limits),
            Err(WireError::TooLarge { .. })
        ));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&mut buf, &limits),
            Err(WireError::BadPrelude(_))
        ));
    }
}
