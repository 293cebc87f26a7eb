//! Helpers shared by the materializer pool tests: the Python to run, a
//! request built by a Python script, and reading replies.
#![allow(dead_code)] // each test crate uses its own subset

use bytes::Bytes;
use rmpv::Value;
use std::path::PathBuf;

/// A pool of one helper on [`python()`], requests bounded at two minutes.
pub async fn one_helper_pool() -> dask_scheduler::materializer::MaterializerPool {
    use dask_scheduler::materializer::{MaterializerConfig, MaterializerPool};
    MaterializerPool::start(MaterializerConfig {
        python: Some(python()),
        pool_size: 1,
        request_timeout: std::time::Duration::from_secs(120),
        ..MaterializerConfig::default()
    })
    .await
}

/// The Python with the pinned dask: `DASK_SCHEDULER_PYTHON`, else the
/// default venv, else `python3` from `PATH`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DASK_SCHEDULER_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from("/work/venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Python run before every builder script: `request(expr, keys,
/// internal_priority=None, annotations=None)` is the `materialize` request
/// the scheduler sends for a client's `update-graph` of `expr`.
const REQUEST_PY: &str = r#"
import msgpack
from distributed.protocol import Serialized, ToPickle, dumps, serialize, to_serialize

def request(expr, keys, internal_priority=None, annotations=None):
    frames = [bytes(f) for f in dumps({
        "op": "update-graph",
        "expr_ser": Serialized(*serialize(to_serialize(expr), on_error="raise")),
        "keys": set(keys),
        "internal_priority": internal_priority,
        "annotations": ToPickle(annotations or {}),
    })]
    body = msgpack.unpackb(frames[0], raw=False, use_list=False, strict_map_key=False)
    def cut(i):
        n = msgpack.unpackb(frames[i])["num-sub-frames"]
        return frames[i], frames[i + 1 : i + 1 + n]
    eh, ef = cut(body["expr_ser"]["__Serialized__"])
    ah, af = cut(body["annotations"]["__Pickled__"])
    return {"op": "materialize", "id": 1, "expr_header": eh, "expr_frames": ef,
            "keys": list(body["keys"]["as-list"]),
            "internal_priority": body["internal_priority"],
            "annotations": {"header": ah, "frames": af}}
"#;

/// Run `script` (which writes a msgpack request to stdout, usually built
/// with `request(...)` from [`REQUEST_PY`]) with `args`.
pub fn build(script: &str, args: &[&str]) -> Bytes {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(format!("{REQUEST_PY}\n{script}"))
        .args(args)
        .output()
        .expect("run python to build a request");
    assert!(
        out.status.success(),
        "request builder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Bytes::from(out.stdout)
}

/// Decode a helper reply.
pub fn decode(b: &[u8]) -> Value {
    rmpv::decode::read_value(&mut &b[..]).expect("reply is msgpack")
}

/// A field of a msgpack map, nil when absent.
pub fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or(&Value::Nil)
}
