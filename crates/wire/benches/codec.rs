//! Criterion benchmark of the wire codec: encode/decode rates of the messages
//! that dominate scheduler traffic: a `compute-task` (with a 2-dependency
//! `who_has`/`nbytes` and a 200-byte pickled `run_spec` frame), a
//! `task-finished` as a worker sends it, and batches of 1,000 of each (what a
//! busy worker stream carries). Encode = `encode_message` + frame prelude
//! (`frames::to_contiguous`); decode = `frames::parse` + `decode_message`.
//! Throughput is in messages (ops) per second.
//!
//! Run: `cargo bench -p dask-wire --bench codec` (add `-- --quick` for less).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dask_wire::frames::{self, FrameLimits, Parse};
use dask_wire::{decode_message, encode_message, msgpack, Key, Opaque, OpaqueKind, Value};
use std::time::Duration;

fn compute_task(i: usize) -> Value {
    let key = Key::from_str_key(&format!("inc-5b4e2f0c9d1a7e3b8f6c2d4a1e9b7c3d-{i}"));
    let dep = |j: usize| Key::from_str_key(&format!("x-{j}"));
    let header = Bytes::from(msgpack::encode(&Value::map([(
        "num-sub-frames",
        Value::Int(1),
    )])));
    Value::map([
        ("op", Value::str("compute-task")),
        ("key", Value::Raw(key.as_bytes().clone())),
        ("run_id", Value::Int(i as i64)),
        (
            "priority",
            Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(i as i64)]),
        ),
        (
            "stimulus_id",
            Value::str("task-finished-1795313391.1321943"),
        ),
        (
            "who_has",
            Value::Map(
                (0..2)
                    .map(|j| {
                        (
                            Value::Raw(dep(i + j).as_bytes().clone()),
                            Value::Array(vec![Value::str("tcp://127.0.0.1:40001")]),
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "nbytes",
            Value::Map(
                (0..2)
                    .map(|j| (Value::Raw(dep(i + j).as_bytes().clone()), Value::Int(28)))
                    .collect(),
            ),
        ),
        (
            "run_spec",
            Value::Opaque(Box::new(Opaque {
                kind: OpaqueKind::Pickled,
                header,
                frames: vec![Bytes::from(vec![0x80u8; 200])],
            })),
        ),
        ("resource_restrictions", Value::Nil),
        ("actor", Value::Bool(false)),
        ("annotations", Value::Map(vec![])),
        (
            "span_id",
            Value::str("fcb5dddb-17cd-4b0f-900e-2d2d93f2f8f9"),
        ),
    ])
}

fn task_finished(i: usize) -> Value {
    Value::map([
        (
            "key",
            Value::str(format!("inc-5b4e2f0c9d1a7e3b8f6c2d4a1e9b7c3d-{i}")),
        ),
        ("run_id", Value::Int(i as i64)),
        ("nbytes", Value::Int(28)),
        ("type", Value::Bin(Bytes::from(vec![0x80u8; 31]))),
        ("typename", Value::str("int")),
        ("metadata", Value::Map(vec![])),
        ("thread", Value::Int(140159884367552)),
        (
            "startstops",
            Value::Array(vec![Value::map([
                ("action", Value::str("compute")),
                ("start", Value::Float(1795313391.1316624)),
                ("stop", Value::Float(1795313391.1317105)),
            ])]),
        ),
        ("op", Value::str("task-finished")),
        (
            "stimulus_id",
            Value::str("task-finished-1795313391.1321943"),
        ),
        ("status", Value::str("OK")),
    ])
}

fn encode(v: &Value) -> Bytes {
    frames::to_contiguous(&encode_message(v))
}

fn decode(wire: &Bytes) -> Value {
    let mut buf = BytesMut::from(&wire[..]);
    match frames::parse(&mut buf, &FrameLimits::default()).expect("frames") {
        Parse::Message(f) => decode_message(&f).expect("message"),
        Parse::NeedBytes(_) => panic!("short message"),
    }
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    type Build = fn(usize) -> Value;
    let cases: [(&str, Build); 2] = [
        ("compute-task", compute_task),
        ("task-finished", task_finished),
    ];
    for (name, build) in cases {
        for batch in [1usize, 1000] {
            let msg = if batch == 1 {
                build(7)
            } else {
                Value::Array((0..batch).map(build).collect())
            };
            let wire = encode(&msg);
            // the codec round-trips (Raw keys decode to their plain values)
            assert_eq!(encode(&decode(&wire)), wire, "{name} does not round-trip");
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("encode/{name}"), batch),
                &msg,
                |b, m| b.iter(|| encode(m)),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("decode/{name}"), batch),
                &wire,
                |b, w| b.iter(|| decode(w)),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
