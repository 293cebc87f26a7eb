//! Fixtures shared by the core benches (a state with running workers, a
//! worker registration, a run_spec, a worker's `task-finished`).

use bytes::Bytes;
use dask_core::{ClientId, Config, State, WorkerRegistration};
use dask_wire::msgpack::Reader;
use dask_wire::{Opaque, OpaqueKind, Value};

/// A minimal registration for a simulated worker at `addr`.
pub fn registration(addr: &str, nthreads: u32) -> WorkerRegistration {
    WorkerRegistration::new(addr, nthreads)
}

/// An empty pickled run_spec (the core never looks inside).
pub fn run_spec() -> Opaque {
    Opaque {
        kind: OpaqueKind::Pickled,
        header: Bytes::from_static(b"\x81\xaenum-sub-frames\x00"),
        frames: vec![],
    }
}

/// How every `compute-task` the state machine encodes starts: a map of 12
/// fields, `op` first.
const COMPUTE_TASK_START: &[u8] = b"\x8c\xa2op\xaccompute-task";

/// The key (msgpack bytes) and run_id of a `compute-task` the state machine
/// emitted, or `None` for any other op. Read the way a worker reads them,
/// from the encoded message's leading fields (`op`, `key`, `run_id` come
/// before the run_spec), without decoding the rest.
pub fn compute_task_fields(msg: &Value) -> Option<(Bytes, i64)> {
    let Value::Encoded(e) = msg else {
        return None;
    };
    // Other encoded ops (`free-keys`: one per released task) are passed
    // over at once: the harness's cost should not be counted as the state
    // machine's. (A `compute-task` laid out otherwise would not be found,
    // and the bench's every-task-ran-once check would fail.)
    if !e.leading().starts_with(COMPUTE_TASK_START) {
        return None;
    }
    if let Some(fields) = str_key_compute_task_fields(e.leading()) {
        return Some(fields);
    }
    let leading = Bytes::copy_from_slice(e.leading());
    let mut r = Reader::new(&leading);
    r.map_len().ok()??;
    let (mut is_compute, mut key, mut run_id) = (false, None, None);
    for _ in 0..3 {
        match r.str().ok()?? {
            "op" => is_compute = r.str().ok()? == Some("compute-task"),
            "key" => {
                let start = r.position();
                r.skip(1).ok()?;
                key = Some(r.slice(start, r.position()));
            }
            "run_id" => run_id = r.value(1).ok()?.as_i64(),
            _ => r.skip(1).ok()?,
        }
    }
    if !is_compute {
        return None;
    }
    Some((key?, run_id?))
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

/// A fresh state with one client and `n_workers` running workers of
/// `nthreads` threads each, outbox drained.
pub fn running_state(n_workers: usize, nthreads: u32) -> (State, ClientId) {
    let mut state = State::new(Config::default());
    let client = state.add_client("Client-bench", 0.0);
    for i in 0..n_workers {
        let addr = format!("tcp://127.0.0.1:{}", 40000 + i);
        let w = state
            .add_worker(registration(&addr, nthreads), 0.0)
            .expect("worker accepted");
        state
            .handle_worker_op(
                w,
                &Value::map([
                    ("op", Value::str("worker-status-change")),
                    ("status", Value::str("running")),
                    ("stimulus_id", Value::str("bench")),
                ]),
                0.0,
            )
            .expect("status change");
    }
    state.take_outbox();
    (state, client)
}

/// [`compute_task_fields`] for the benches' own messages, cheaply: a
/// `compute-task` whose key is a str (every bench key is) starts with
/// fixed bytes, the key, then `run_id` and a non-negative int. `None` for
/// anything else, which the general reader handles. The harness stands in
/// for a worker and should cost the measured state machine little.
fn str_key_compute_task_fields(b: &[u8]) -> Option<(Bytes, i64)> {
    let rest = b
        .strip_prefix(COMPUTE_TASK_START)?
        .strip_prefix(b"\xa3key")?;
    let key_len = match *rest.first()? {
        m @ 0xa0..=0xbf => 1 + (m & 0x1f) as usize,
        0xd9 => 2 + *rest.get(1)? as usize,
        _ => return None,
    };
    let (key, rest) = (rest.get(..key_len)?, rest.get(key_len..)?);
    let rest = rest.strip_prefix(b"\xa6run_id")?;
    let run_id = match *rest.first()? {
        m @ 0x00..=0x7f => m as i64,
        0xcc => *rest.get(1)? as i64,
        0xcd => u16::from_be_bytes(rest.get(1..3)?.try_into().ok()?) as i64,
        0xce => u32::from_be_bytes(rest.get(1..5)?.try_into().ok()?) as i64,
        _ => return None,
    };
    Some((Bytes::copy_from_slice(key), run_id))
}
