//! Fixtures shared by the core benches (a worker registration, a run_spec,
//! a worker's `task-finished`).

use bytes::Bytes;
use dask_core::{WorkerRegistration, WorkerStatus};
use dask_wire::{Opaque, OpaqueKind, Value};

/// A minimal registration for a simulated worker at `addr`.
pub fn registration(addr: &str, nthreads: u32) -> WorkerRegistration {
    WorkerRegistration {
        address: addr.to_string(),
        name: Value::str(addr),
        nthreads,
        memory_limit: 0,
        resources: Vec::new(),
        status: WorkerStatus::Init,
        services: Value::Map(vec![]),
        nanny: Value::Nil,
        local_directory: Value::str("/tmp"),
        pid: 1,
        server_id: format!("Worker-{addr}"),
        extra: Value::Map(vec![]),
        metrics: Value::Map(vec![]),
        versions: Value::Map(vec![]),
    }
}

/// An empty pickled run_spec (the core never looks inside).
pub fn run_spec() -> Opaque {
    Opaque {
        kind: OpaqueKind::Pickled,
        header: Bytes::from_static(b"\x81\xaenum-sub-frames\x00"),
        frames: vec![],
    }
}

/// The `task-finished` a worker sends for `key` (run `run_id`) at `now`.
pub fn task_finished(key: Value, run_id: Value, now: f64) -> Value {
    Value::map([
        ("op", Value::str("task-finished")),
        ("key", key),
        ("run_id", run_id),
        ("nbytes", Value::Int(28)),
        ("type", Value::Bin(Bytes::from_static(b"pickled-int"))),
        ("typename", Value::str("int")),
        ("metadata", Value::Map(vec![])),
        ("thread", Value::Int(1)),
        (
            "startstops",
            Value::Array(vec![Value::map([
                ("action", Value::str("compute")),
                ("start", Value::Float(now - 0.001)),
                ("stop", Value::Float(now)),
            ])]),
        ),
        ("stimulus_id", Value::str("task-finished-bench")),
        ("status", Value::str("OK")),
    ])
}
