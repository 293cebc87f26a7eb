//! Run specs as the scheduler stores them: consecutive tasks of a layer share
//! their bytes.
//!
//! A task's run_spec is its pickled `GraphNode`, relayed verbatim to the
//! worker in `compute-task`; the scheduler never looks inside. The pickles of
//! one layer are nearly identical: a `da.ones(N, chunks=1)` task pickles to
//! ~2.4 KB (the function's docstring travels with it) and differs from its
//! neighbour only in the key's index. Keeping each pickle whole costs more
//! memory per task than the Python scheduler, which keeps unpickled task
//! objects that share their function. So a [`RunSpecPacker`] stores a pickle
//! as a reference to an earlier one (its *base*) plus the few bytes in which
//! it differs; [`RunSpec::to_opaque`] rebuilds the exact bytes for each
//! `compute-task`. The bytes on the wire do not change.

use bytes::Bytes;
use dask_wire::{Opaque, OpaqueKind};
use smallvec::SmallVec;

/// Differences up to this many bytes are stored inline in the task.
const INLINE_DIFF: usize = 24;

/// A difference longer than `len / MAX_DIFF_DIVISOR` starts a new base.
const MAX_DIFF_DIVISOR: usize = 8;

/// How many recent bases a pickle is compared with (graphs whose layers'
/// tasks come interleaved alternate between a few functions).
const RECENT_BASES: usize = 4;

/// The header bytes of a run_spec (the msgpack `__Pickled__` sub-header,
/// which holds the pickle).
#[derive(Debug, Clone, PartialEq)]
enum Header {
    /// Stored as is.
    Whole(Bytes),
    /// `base[..prefix] ++ diff ++ base[base.len() - suffix..]`.
    Delta {
        base: Bytes,
        prefix: u32,
        suffix: u32,
        diff: SmallVec<[u8; INLINE_DIFF]>,
    },
}

impl Header {
    fn len(&self) -> usize {
        match self {
            Header::Whole(b) => b.len(),
            Header::Delta {
                prefix,
                suffix,
                diff,
                ..
            } => *prefix as usize + diff.len() + *suffix as usize,
        }
    }

    fn to_bytes(&self) -> Bytes {
        match self {
            Header::Whole(b) => b.clone(),
            Header::Delta {
                base,
                prefix,
                suffix,
                diff,
            } => {
                let (prefix, suffix) = (*prefix as usize, *suffix as usize);
                let mut out = Vec::with_capacity(prefix + diff.len() + suffix);
                out.extend_from_slice(&base[..prefix]);
                out.extend_from_slice(diff);
                out.extend_from_slice(&base[base.len() - suffix..]);
                Bytes::from(out)
            }
        }
    }
}

/// A task's run_spec in stored form (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    kind: OpaqueKind,
    header: Header,
    frames: Vec<Bytes>,
}

impl RunSpec {
    /// The opaque object exactly as it was received, for a `compute-task`.
    pub fn to_opaque(&self) -> Opaque {
        Opaque {
            kind: self.kind,
            header: self.header.to_bytes(),
            frames: self.frames.clone(),
        }
    }

    /// Size of the run_spec on the wire (header plus frames), in bytes.
    pub fn nbytes(&self) -> usize {
        self.header.len() + self.frames.iter().map(Bytes::len).sum::<usize>()
    }

    /// True if this run_spec refers to an earlier one's bytes.
    pub fn is_delta(&self) -> bool {
        matches!(self.header, Header::Delta { .. })
    }
}

impl Default for RunSpec {
    /// An empty pickled run_spec (allocates nothing).
    fn default() -> RunSpec {
        RunSpec {
            kind: OpaqueKind::Pickled,
            header: Header::Whole(Bytes::new()),
            frames: Vec::new(),
        }
    }
}

impl From<Opaque> for RunSpec {
    /// Stored whole, sharing its buffers with `o` (no packing).
    fn from(o: Opaque) -> RunSpec {
        RunSpec {
            kind: o.kind,
            header: Header::Whole(o.header),
            frames: o.frames,
        }
    }
}

/// Turns a sequence of run_specs (in submission order) into stored ones,
/// each either a fresh copy (a new base) or a delta against one of the few
/// most recent bases.
///
/// Everything stored is copied out of the given buffers, so a stored run_spec
/// never keeps the (much larger) reply it was decoded from alive.
#[derive(Debug, Default)]
pub struct RunSpecPacker {
    /// Most recently used first.
    bases: Vec<Bytes>,
}

impl RunSpecPacker {
    /// A packer with no base yet.
    pub fn new() -> RunSpecPacker {
        RunSpecPacker::default()
    }

    /// Store `o`, sharing bytes with the previous base when it differs
    /// little from it.
    pub fn pack(&mut self, o: &Opaque) -> RunSpec {
        let frames = o.frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
        let header = self.pack_header(&o.header);
        RunSpec {
            kind: o.kind,
            header,
            frames,
        }
    }

    fn pack_header(&mut self, h: &[u8]) -> Header {
        for i in 0..self.bases.len() {
            if let Some(delta) = delta_against(&self.bases[i], h) {
                // keep the base that matched first in line for the next one
                self.bases[..=i].rotate_right(1);
                return delta;
            }
        }
        let whole = Bytes::copy_from_slice(h);
        self.bases.insert(0, whole.clone());
        self.bases.truncate(RECENT_BASES);
        Header::Whole(whole)
    }
}

/// `h` as a delta against `base`, if they differ in few enough bytes.
fn delta_against(base: &Bytes, h: &[u8]) -> Option<Header> {
    let prefix = common_prefix(base, h);
    let max_suffix = base.len().min(h.len()) - prefix;
    let suffix = common_suffix(&base[base.len() - max_suffix..], &h[h.len() - max_suffix..]);
    let diff = &h[prefix..h.len() - suffix];
    if diff.len() > INLINE_DIFF && diff.len() > h.len() / MAX_DIFF_DIVISOR {
        return None;
    }
    Some(Header::Delta {
        base: base.clone(),
        prefix: u32::try_from(prefix).ok()?,
        suffix: u32::try_from(suffix).ok()?,
        diff: SmallVec::from_slice(diff),
    })
}

/// Length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    // eight bytes at a time, then the rest
    let words = n / 8;
    let mut i = 0;
    while i < words {
        let (x, y) = (
            u64::from_ne_bytes(a[i * 8..i * 8 + 8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes")),
        );
        if x != y {
            break;
        }
        i += 1;
    }
    let mut j = i * 8;
    while j < n && a[j] == b[j] {
        j += 1;
    }
    j
}

/// Length of the longest common suffix of `a` and `b` (of equal length).
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opaque(header: &[u8], frames: &[&[u8]]) -> Opaque {
        Opaque {
            kind: OpaqueKind::Pickled,
            header: Bytes::copy_from_slice(header),
            frames: frames.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
        }
    }

    /// A pickle-like header: a long shared body with a varying part inside.
    fn pickle_like(i: usize) -> Vec<u8> {
        let mut v = b"\x82\xabpickled-obj\xc5".to_vec();
        v.extend(std::iter::repeat_n(b'd', 2000)); // the docstring
        v.extend_from_slice(format!("key-{i}").as_bytes());
        v.extend_from_slice(b"\xaenum-sub-frames\x00");
        v
    }

    #[test]
    fn similar_headers_become_deltas_and_rebuild_exactly() {
        let mut packer = RunSpecPacker::new();
        let originals: Vec<Opaque> = (0..200).map(|i| opaque(&pickle_like(i), &[])).collect();
        let stored: Vec<RunSpec> = originals.iter().map(|o| packer.pack(o)).collect();
        assert!(!stored[0].is_delta());
        assert!(stored[1..].iter().all(RunSpec::is_delta));
        for (o, s) in originals.iter().zip(&stored) {
            assert_eq!(&s.to_opaque(), o);
            assert_eq!(s.nbytes(), o.nbytes());
        }
    }

    #[test]
    fn dissimilar_headers_start_a_new_base() {
        let mut packer = RunSpecPacker::new();
        let a = opaque(&pickle_like(1), &[]);
        let b = opaque(&vec![b'x'; 1500], &[b"frame"]);
        let c = opaque(&[], &[]);
        let d = opaque(b"short", &[]);
        let sa = packer.pack(&a);
        let sb = packer.pack(&b);
        assert!(!sa.is_delta() && !sb.is_delta());
        for (o, s) in [
            (&a, sa),
            (&b, sb),
            (&c, packer.pack(&c)),
            (&d, packer.pack(&d)),
        ] {
            assert_eq!(&s.to_opaque(), o);
        }
    }

    #[test]
    fn interleaved_layers_share_their_own_bases() {
        let layer = |name: u8, i: usize| {
            let mut v = vec![name; 1500];
            v.extend_from_slice(format!("{i}").as_bytes());
            v
        };
        let mut packer = RunSpecPacker::new();
        let originals: Vec<Opaque> = (0..100)
            .map(|i| opaque(&layer(b"abc"[i % 3], i), &[]))
            .collect();
        let stored: Vec<RunSpec> = originals.iter().map(|o| packer.pack(o)).collect();
        let wholes = stored.iter().filter(|s| !s.is_delta()).count();
        assert_eq!(wholes, 3, "one base per layer");
        for (o, s) in originals.iter().zip(&stored) {
            assert_eq!(&s.to_opaque(), o);
        }
    }

    #[test]
    fn overlapping_prefix_and_suffix_rebuild_exactly() {
        // the shorter header is both a prefix and a suffix of the base:
        // prefix and suffix must not overlap
        let mut packer = RunSpecPacker::new();
        let cases: [&[u8]; 6] = [b"abcabc", b"abc", b"abcabcabc", b"abcXabc", b"", b"abcabc"];
        for h in cases {
            let o = opaque(h, &[]);
            assert_eq!(packer.pack(&o).to_opaque(), o, "{h:?}");
        }
    }

    #[test]
    fn pseudo_random_edits_rebuild_exactly() {
        let mut packer = RunSpecPacker::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut h = pickle_like(0);
        for _ in 0..2000 {
            match next() % 4 {
                0 => {
                    let i = next() as usize % h.len();
                    h[i] = next() as u8;
                }
                1 => {
                    let i = next() as usize % h.len();
                    h.insert(i, next() as u8);
                }
                2 if h.len() > 1 => {
                    let i = next() as usize % h.len();
                    h.remove(i);
                }
                _ => h = pickle_like(next() as usize % 100_000),
            }
            let o = opaque(&h, &[]);
            assert_eq!(packer.pack(&o).to_opaque(), o);
        }
    }

    #[test]
    fn stored_run_specs_do_not_share_the_source_buffer() {
        let source = Bytes::from(pickle_like(7));
        let o = Opaque {
            kind: OpaqueKind::Pickled,
            header: source.slice(..),
            frames: vec![source.slice(0..10)],
        };
        let s = RunSpecPacker::new().pack(&o);
        let inside = |p: *const u8| source.as_ptr_range().contains(&p);
        let Header::Whole(h) = &s.header else {
            panic!("first one is whole")
        };
        assert!(!inside(h.as_ptr()) && !inside(s.frames[0].as_ptr()));
    }
}
