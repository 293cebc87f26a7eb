//! Helpers shared by the materializer pool tests: the Python to run, a
//! request built by a Python script, and reading replies.
#![allow(dead_code)] // each test crate uses its own subset

use bytes::Bytes;
use rmpv::Value;
use std::path::PathBuf;

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

/// Run `script` (which writes a msgpack request to stdout) with `args`.
pub fn build(script: &str, args: &[&str]) -> Bytes {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
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
