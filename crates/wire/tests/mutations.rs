//! Bad input never panics the codec: every golden capture (see `golden.rs`)
//! is mutated many times over (flipped bits, boundary bytes, truncation,
//! inflated length fields, spliced-in bytes) and fed to the frame parser,
//! the message decoder and the batch splitter. Each must answer `Ok` or
//! `Err`; a panic, or an allocation sized by a forged length, fails the test.
//! The mutations come from a fixed seed, so a failure reproduces.

use bytes::{Bytes, BytesMut};
use dask_wire::frames::{self, FrameLimits, Parse};
use dask_wire::{decode_message, split_ops, Key};
use std::path::PathBuf;

/// Mutants per capture.
const MUTANTS: usize = 300;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn captures() -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/golden");
    let mut out = Vec::new();
    for scenario in std::fs::read_dir(root).expect("proto/golden exists") {
        for f in std::fs::read_dir(scenario.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "bin") {
                let data = std::fs::read(&p).unwrap();
                out.push((p, data));
            }
        }
    }
    out.sort();
    out
}

/// Bytes that msgpack and the frame prelude treat specially: container and
/// length markers, the never-used 0xc1, extremes.
const BOUNDARY: [u8; 12] = [
    0x00, 0xff, 0x7f, 0x80, 0xc1, 0xc4, 0xc6, 0xd9, 0xdb, 0xdc, 0xdd, 0xdf,
];

fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut m = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            m.push(0x91);
        }
        let at = rng.below(m.len());
        match rng.below(6) {
            0 => m[at] ^= 1 << rng.below(8),
            1 => m[at] = BOUNDARY[rng.below(BOUNDARY.len())],
            2 => m.truncate(at),
            3 => {
                // a length-ish field inflated: 4 bytes of 0xff
                for b in m.iter_mut().skip(at).take(4) {
                    *b = 0xff;
                }
            }
            4 => {
                let n = 1 + rng.below(8);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                m.splice(at..at, fill);
            }
            _ => {
                let end = (at + 1 + rng.below(16)).min(m.len());
                m.drain(at..end);
            }
        }
    }
    m
}

/// Run one input through every decoding stage the scheduler applies to
/// bytes from the network.
fn decode_all(input: &[u8]) {
    let limits = FrameLimits::default();
    let mut buf = BytesMut::from(input);
    let Ok(Parse::Message(frames)) = frames::parse(&mut buf, &limits) else {
        return;
    };
    if let Some(body) = frames.first() {
        if let Ok(ops) = split_ops(body) {
            for op in ops {
                let mut one = vec![op.bytes.clone()];
                one.extend(frames.iter().skip(1).cloned());
                let _ = decode_message(&one);
            }
        }
    }
    if let Ok(v) = decode_message(&frames) {
        // keys are read from the decoded values
        let _ = Key::from_value(&v);
        if let Some(items) = v.as_seq() {
            for item in items {
                let _ = Key::from_value(item);
            }
        }
    }
}

#[test]
fn mutated_captures_never_panic_the_decoders() {
    let all = captures();
    assert!(all.len() > 100, "found {} captures", all.len());
    let mut rng = Rng(0x5eed_da5c_0ffe_e000);
    let mut decoded = 0usize;
    for (path, data) in &all {
        for i in 0..MUTANTS {
            let input = mutate(&mut rng, data);
            let outcome = std::panic::catch_unwind(|| decode_all(&input));
            assert!(
                outcome.is_ok(),
                "{path:?} mutant {i} panicked; input {:02x?}",
                &input[..input.len().min(256)]
            );
            let mut buf = BytesMut::from(&input[..]);
            if let Ok(Parse::Message(f)) = frames::parse(&mut buf, &FrameLimits::default()) {
                decoded += usize::from(decode_message(&f).is_ok());
            }
        }
    }
    // the mutants are not all rejected at the first byte: many still parse
    // and decode, so the deeper stages are exercised too
    assert!(decoded > all.len() * MUTANTS / 20, "only {decoded} decoded");
}

#[test]
fn random_bytes_after_a_valid_prelude_never_panic() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for _ in 0..20_000 {
        let n_frames = 1 + rng.below(3);
        let lens: Vec<usize> = (0..n_frames).map(|_| rng.below(64)).collect();
        let frames: Vec<Bytes> = lens
            .iter()
            .map(|&n| Bytes::from((0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>()))
            .collect();
        let input = frames::to_contiguous(&frames);
        let outcome = std::panic::catch_unwind(|| decode_all(&input));
        assert!(outcome.is_ok(), "panicked on {:02x?}", &input[..]);
    }
}
