//! The codec against golden frames captured from the real Python scheduler,
//! clients and workers (`proto/golden/<scenario>/*.bin`, see `proto/README.md`).
//!
//! Every captured message must parse as one frame group, decode (placeholders
//! resolved into opaque objects) and re-encode to exactly the frames the Python
//! peer wrote: the same msgpack bytes, the same sub-headers and payloads in the
//! same order. That is the property the scheduler's relays rely on.

use bytes::{Bytes, BytesMut};
use dask_wire::frames::{self, FrameLimits, Parse};
use dask_wire::{decode_message, encode_message, Key, Value};
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/golden")
}

fn all_captures() -> Vec<(PathBuf, Bytes)> {
    let mut out = Vec::new();
    for scenario in std::fs::read_dir(golden_dir()).expect("proto/golden exists") {
        let scenario = scenario.unwrap().path();
        for f in std::fs::read_dir(&scenario).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "bin") {
                let data = Bytes::from(std::fs::read(&p).unwrap());
                out.push((p, data));
            }
        }
    }
    out.sort();
    out
}

fn parse_one(data: &Bytes) -> Vec<Bytes> {
    let mut buf = BytesMut::from(&data[..]);
    match frames::parse(&mut buf, &FrameLimits::default()).unwrap() {
        Parse::Message(f) => {
            assert!(buf.is_empty(), "one message per capture file");
            f
        }
        Parse::NeedBytes(n) => panic!("capture incomplete, needs {n}"),
    }
}

#[test]
fn every_capture_roundtrips_frame_for_frame() {
    let captures = all_captures();
    assert!(captures.len() > 100, "found {} captures", captures.len());
    for (path, data) in &captures {
        let frames = parse_one(data);
        let value = decode_message(&frames).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let again = encode_message(&value);
        assert_eq!(again, frames, "{path:?} did not re-encode identically");
    }
}

fn load(rel: &str) -> Value {
    let data = Bytes::from(std::fs::read(golden_dir().join(rel)).unwrap());
    decode_message(&parse_one(&data)).unwrap()
}

fn first_op(v: &Value) -> &Value {
    match v {
        Value::Array(items) => &items[0],
        other => other,
    }
}

#[test]
fn client_handshake_fields() {
    let hs = load("submit_result/0008_c2_client-to-scheduler.bin");
    dask_wire::handshake::validate(&hs).unwrap();
    assert_eq!(hs.get("pickle-protocol"), Some(&Value::Int(5)));
    assert_eq!(hs.get("compression"), Some(&Value::Nil));
}

#[test]
fn update_graph_has_opaque_expr_and_pickled_fields() {
    let msg = load("submit_result/0022_c2_client-to-scheduler.bin");
    let op = first_op(&msg);
    assert_eq!(op.get("op").and_then(Value::as_str), Some("update-graph"));
    let Some(Value::Opaque(expr)) = op.get("expr_ser") else {
        panic!("expr_ser not opaque: {op}")
    };
    assert_eq!(expr.kind, dask_wire::OpaqueKind::Serialized);
    assert_eq!(expr.frames.len(), 1);
    for field in ["annotations", "code", "span_metadata"] {
        assert!(
            matches!(op.get(field), Some(Value::Opaque(o)) if o.kind == dask_wire::OpaqueKind::Pickled),
            "{field}"
        );
    }
    let keys = op.get("keys").and_then(Value::as_seq).expect("keys set");
    assert_eq!(keys.len(), 1);
    assert!(Key::from_value(&keys[0])
        .unwrap()
        .prefix()
        .starts_with("inc"));
}

#[test]
fn tuple_keys_in_maps_are_keys() {
    // array_sum: a compute-task whose who_has is keyed by tuple keys
    let mut found = false;
    for (path, data) in all_captures() {
        if !path.to_string_lossy().contains("array_sum") {
            continue;
        }
        let v = decode_message(&parse_one(&data)).unwrap();
        let Value::Array(ops) = &v else { continue };
        for op in ops {
            if op.get("op").and_then(Value::as_str) != Some("compute-task") {
                continue;
            }
            if let Some(Value::Map(who_has)) = op.get("who_has") {
                for (k, _) in who_has {
                    let key = Key::from_value(k).unwrap();
                    if let Value::Array(parts) = key.decoded() {
                        assert_eq!(parts.len(), 2, "{key}");
                        assert!(key.prefix().starts_with("sum"), "{key}");
                        found = true;
                    }
                }
            }
        }
    }
    assert!(found, "no tuple-keyed who_has found in array_sum");
}
