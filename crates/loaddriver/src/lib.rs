//! Simulated Dask workers for scheduler benchmarks.
//!
//! A simulated worker speaks the real worker side of the protocol
//! (`distributed/worker.py`, `worker_state_machine.py`, see
//! `/work/shared/protocol/PROTOCOL.md` §7): it registers with a full
//! `register-worker` message, reports `worker-status-change: running`, sends
//! `heartbeat_worker` RPCs on a separate connection, and answers every
//! `compute-task` at once with a `task-finished` carrying the same fields a real
//! worker sends (`nbytes`, `type`, `typename`, `metadata`, `thread`,
//! `startstops`, `stimulus_id`, `status`). It never runs anything and never
//! transfers data: a task with dependencies on another worker is simply
//! reported finished, which is fine for measuring the scheduler alone.
//!
//! This library holds the pure part (building and parsing messages, the
//! per-worker bookkeeping in [`WorkerSim`]); `main.rs` has the sockets.

pub mod probe;

use bytes::Bytes;
use dask_wire::{msgpack, Value};
use std::collections::HashSet;

/// Errors of the load driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A wire-format error (bad frames, bad msgpack).
    #[error("wire: {0}")]
    Wire(#[from] dask_wire::WireError),
    /// A socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The scheduler refused the registration.
    #[error("registration refused: {0}")]
    Rejected(String),
    /// The scheduler sent something we cannot interpret.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// `pickle.dumps(int)` (protocol 5), the `type` a real worker reports for an int result.
pub const PICKLED_INT_TYPE: &[u8] =
    b"\x80\x05\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x03int\x94\x93\x94.";

/// Identity of one simulated worker.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    /// Contact address (`tcp://127.0.0.1:<port>`); the worker's identity.
    pub address: String,
    /// Unique worker name.
    pub name: String,
    /// Number of threads advertised.
    pub nthreads: i64,
    /// `Worker-<id>` server id.
    pub server_id: String,
    /// Process id reported (the driver's own).
    pub pid: i64,
}

fn empty() -> Value {
    Value::Map(vec![])
}

/// The `metrics` map a worker sends at registration and in heartbeats
/// (the shape `Scheduler.heartbeat_worker` reads).
pub fn metrics(now: f64, executing: usize) -> Value {
    Value::map([
        (
            "task_counts",
            if executing > 0 {
                Value::map([("executing", Value::from(executing))])
            } else {
                empty()
            },
        ),
        (
            "bandwidth",
            Value::map([
                ("total", Value::Int(100_000_000)),
                ("workers", empty()),
                ("types", empty()),
            ]),
        ),
        ("digests_total_since_heartbeat", empty()),
        ("managed_bytes", Value::Int(0)),
        (
            "spilled_bytes",
            Value::map([("memory", Value::Int(0)), ("disk", Value::Int(0))]),
        ),
        (
            "transfer",
            Value::map([
                ("incoming_bytes", Value::Int(0)),
                ("incoming_count", Value::Int(0)),
                ("incoming_count_total", Value::Int(0)),
                ("outgoing_bytes", Value::Int(0)),
                ("outgoing_count", Value::Int(0)),
                ("outgoing_count_total", Value::Int(0)),
            ]),
        ),
        ("event_loop_interval", Value::Float(0.02)),
        ("cpu", Value::Float(0.0)),
        ("memory", Value::Int(60 << 20)),
        ("time", Value::Float(now)),
        (
            "host_net_io",
            Value::map([
                ("read_bps", Value::Float(0.0)),
                ("write_bps", Value::Float(0.0)),
            ]),
        ),
        (
            "host_disk_io",
            Value::map([
                ("read_bps", Value::Float(0.0)),
                ("write_bps", Value::Float(0.0)),
            ]),
        ),
        ("num_fds", Value::Int(8)),
    ])
}

fn versions() -> Value {
    Value::map([
        (
            "host",
            Value::map([
                ("python", Value::str("3.11.7.final.0")),
                ("python-bits", Value::Int(64)),
                ("OS", Value::str("Linux")),
                ("OS-release", Value::str("")),
                ("machine", Value::str("x86_64")),
                ("processor", Value::str("")),
                ("byteorder", Value::str("little")),
                ("LC_ALL", Value::str("None")),
                ("LANG", Value::str("C.UTF-8")),
            ]),
        ),
        (
            "packages",
            Value::map([
                ("python", Value::str("3.11.7.final.0")),
                ("dask", Value::str("2026.8.0")),
                ("distributed", Value::str("2026.8.0")),
                ("msgpack", Value::str("1.2.4")),
                ("cloudpickle", Value::str("3.1.2")),
                ("tornado", Value::str("6.6.1")),
                ("toolz", Value::str("1.2.0")),
                ("numpy", Value::Nil),
                ("pandas", Value::Nil),
                ("lz4", Value::Nil),
            ]),
        ),
    ])
}

/// The `register-worker` message (first message of the worker stream), with
/// every field `Scheduler.add_worker` requires.
pub fn register_worker(id: &WorkerIdentity, now: f64) -> Value {
    Value::map([
        ("op", Value::str("register-worker")),
        ("reply", Value::Bool(false)),
        ("address", Value::str(&id.address)),
        ("status", Value::str("init")),
        ("nthreads", Value::Int(id.nthreads)),
        ("name", Value::str(&id.name)),
        ("now", Value::Float(now)),
        ("resources", empty()),
        ("memory_limit", Value::Int(0)),
        ("local_directory", Value::str("/tmp/dask-loaddriver")),
        ("services", empty()),
        ("nanny", Value::Nil),
        ("pid", Value::Int(id.pid)),
        ("versions", versions()),
        ("metrics", metrics(now, 0)),
        ("extra", empty()),
        ("stimulus_id", Value::str(format!("worker-connect-{now}"))),
        ("server_id", Value::str(&id.server_id)),
    ])
}

/// The `worker-status-change: running` stream op a worker sends after registering.
pub fn status_running(now: f64) -> Value {
    Value::map([
        ("op", Value::str("worker-status-change")),
        ("status", Value::str("running")),
        (
            "stimulus_id",
            Value::str(format!("worker-status-change-{now}")),
        ),
    ])
}

/// A `heartbeat_worker` RPC request.
pub fn heartbeat(address: &str, now: f64, executing: usize) -> Value {
    Value::map([
        ("op", Value::str("heartbeat_worker")),
        ("address", Value::str(address)),
        ("now", Value::Float(now)),
        ("metrics", metrics(now, executing)),
        ("executing", empty()),
        (
            "extensions",
            Value::map([("spans", empty()), ("shuffle", empty())]),
        ),
        ("reply", Value::Bool(true)),
    ])
}

/// How long each simulated task says it ran (s): its `startstops` end at
/// the moment it is answered and start this much earlier. Never zero, as
/// no real task's is: on a prefix whose tasks all took 0 s, the Python
/// scheduler's work stealing fails an assertion (`steal_time_ratio`) for
/// every transition of a task with dependencies and logs the traceback,
/// which made it spend most of its time writing logs in these benchmarks
/// until the thirty-ninth session.
pub const SIMULATED_RUN_S: f64 = 100e-6;

/// The `task-finished` op a real worker sends for a small int result.
pub fn task_finished(key: Value, run_id: Value, now: f64, thread: i64) -> Value {
    Value::map([
        ("key", key),
        ("run_id", run_id),
        ("nbytes", Value::Int(28)),
        ("type", Value::Bin(Bytes::from_static(PICKLED_INT_TYPE))),
        ("typename", Value::str("int")),
        ("metadata", empty()),
        ("thread", Value::Int(thread)),
        (
            "startstops",
            Value::Array(vec![Value::map([
                ("action", Value::str("compute")),
                ("start", Value::Float(now - SIMULATED_RUN_S)),
                ("stop", Value::Float(now)),
            ])]),
        ),
        ("op", Value::str("task-finished")),
        ("stimulus_id", Value::str(task_finished_stimulus(now))),
        ("status", Value::str("OK")),
    ])
}

/// The stimulus id of the `task-finished` ops answered at `now`.
pub fn task_finished_stimulus(now: f64) -> String {
    format!("task-finished-{now}")
}

/// Append the msgpack of [`task_finished`] to `out` without building the
/// value: the same bytes, with the key as the scheduler encoded it (`key`
/// is its msgpack) and a pre-formatted stimulus id. The driver answers
/// every `compute-task` with one, so this is its hot path: the driver
/// shares the benchmark machine's cores with the scheduler it measures.
pub fn write_task_finished(
    out: &mut Vec<u8>,
    key: &[u8],
    run_id: Option<i64>,
    now: f64,
    thread: i64,
    stimulus: &str,
) {
    let float = |out: &mut Vec<u8>, x: f64| {
        out.push(0xcb);
        out.extend_from_slice(&x.to_be_bytes());
    };
    msgpack::write_map_len(out, 11);
    msgpack::write_str(out, "key");
    out.extend_from_slice(key);
    msgpack::write_str(out, "run_id");
    match run_id {
        Some(r) => msgpack::write_int(out, r),
        None => out.push(0xc0),
    }
    msgpack::write_str(out, "nbytes");
    msgpack::write_int(out, 28);
    msgpack::write_str(out, "type");
    msgpack::write_bin(out, PICKLED_INT_TYPE);
    msgpack::write_str(out, "typename");
    msgpack::write_str(out, "int");
    msgpack::write_str(out, "metadata");
    msgpack::write_map_len(out, 0);
    msgpack::write_str(out, "thread");
    msgpack::write_int(out, thread);
    msgpack::write_str(out, "startstops");
    msgpack::write_array_len(out, 1);
    msgpack::write_map_len(out, 3);
    msgpack::write_str(out, "action");
    msgpack::write_str(out, "compute");
    msgpack::write_str(out, "start");
    float(out, now - SIMULATED_RUN_S);
    msgpack::write_str(out, "stop");
    float(out, now);
    msgpack::write_str(out, "op");
    msgpack::write_str(out, "task-finished");
    msgpack::write_str(out, "stimulus_id");
    msgpack::write_str(out, stimulus);
    msgpack::write_str(out, "status");
    msgpack::write_str(out, "OK");
}

/// A `steal-response` op (`state` nil when the worker does not know the key).
pub fn steal_response(key: Value, state: Option<&str>, now: f64) -> Value {
    Value::map([
        ("key", key),
        ("state", state.map(Value::str).unwrap_or(Value::Nil)),
        ("op", Value::str("steal-response")),
        ("stimulus_id", Value::str(format!("steal-response-{now}"))),
    ])
}

/// Check a registration reply; returns the `heartbeat-interval` it announces.
pub fn check_registration_reply(reply: &Value) -> Result<f64, DriverError> {
    match reply.get("status").and_then(Value::as_str) {
        Some("OK") => Ok(reply
            .get("heartbeat-interval")
            .and_then(Value::as_f64)
            .unwrap_or(0.5)),
        _ => Err(DriverError::Rejected(format!("{reply}"))),
    }
}

/// What handling one batch did, for the driver's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// `compute-task` ops answered.
    pub computed: u64,
    /// Keys named in `free-keys` ops.
    pub freed: u64,
    /// `steal-request` ops answered.
    pub steals: u64,
    /// Ops we ignore (logged by op name by the caller, if it likes).
    pub other: u64,
    /// True if the scheduler asked this worker to close.
    pub close: bool,
}

/// The per-worker state: which keys it "holds" (to answer `steal-request` as
/// a real worker would), and a thread id to report.
#[derive(Debug, Default)]
pub struct WorkerSim {
    /// Msgpack of each held key, as the scheduler encodes it (the same
    /// bytes in `compute-task`, `free-keys` and `steal-request`).
    held: HashSet<Bytes>,
    thread: i64,
}

/// The fields of one incoming op the driver acts on, read in place.
#[derive(Default)]
struct OpFields {
    /// `key`'s msgpack.
    key: Option<Bytes>,
    run_id: Option<i64>,
    /// Each element of `keys`, as msgpack.
    keys: Vec<Bytes>,
}

/// Read `key`, `run_id` and `keys` of one op map, stepping over every other
/// field (a `compute-task`'s run_spec placeholder included) without
/// building it.
fn read_op(bytes: &Bytes) -> Result<OpFields, DriverError> {
    let mut f = OpFields::default();
    let mut r = msgpack::Reader::new(bytes);
    let Some(n) = r.map_len()? else {
        return Ok(f);
    };
    // a copy per key: a slice would keep the whole read buffer alive while
    // the key is held
    let value_bytes = |r: &mut msgpack::Reader<'_>| -> Result<Bytes, DriverError> {
        let start = r.position();
        r.skip(1)?;
        Ok(Bytes::copy_from_slice(&r.slice(start, r.position())))
    };
    for _ in 0..n {
        match r.str()? {
            Some("key") => f.key = Some(value_bytes(&mut r)?),
            Some("run_id") => f.run_id = r.value(1)?.as_i64(),
            Some("keys") => match r.array_len()? {
                Some(k) => {
                    for _ in 0..k {
                        f.keys.push(value_bytes(&mut r)?);
                    }
                }
                None => r.skip(1)?,
            },
            Some(_) => r.skip(1)?,
            None => {
                r.skip(1)?;
                r.skip(1)?;
            }
        }
    }
    Ok(f)
}

impl WorkerSim {
    /// A simulated worker reporting `thread` as its executing thread id.
    pub fn new(thread: i64) -> Self {
        WorkerSim {
            held: HashSet::new(),
            thread,
        }
    }

    /// Number of keys this worker holds (finished and not freed).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Handle one incoming stream message (its frames): append the msgpack
    /// of each reply op to `out`, and return the counters and how many
    /// replies were appended (the caller sends them as one batch, an array
    /// of that many ops). Ops are read in place ([`dask_wire::split_ops`]);
    /// only the fields acted on are extracted, so the driver spends little
    /// of the benchmark machine's CPU on each task.
    pub fn handle(
        &mut self,
        frames: &[Bytes],
        now: f64,
        out: &mut Vec<u8>,
    ) -> Result<(BatchStats, usize), DriverError> {
        let mut st = BatchStats::default();
        let mut replies = 0;
        let Some(body) = frames.first() else {
            return Ok((st, 0));
        };
        let mut stimulus = None;
        for raw in dask_wire::split_ops(body)? {
            match raw.op.as_deref() {
                Some("compute-task") => {
                    let f = read_op(&raw.bytes)?;
                    let key = f
                        .key
                        .ok_or_else(|| DriverError::Protocol("compute-task without key".into()))?;
                    let stimulus = stimulus.get_or_insert_with(|| task_finished_stimulus(now));
                    write_task_finished(out, &key, f.run_id, now, self.thread, stimulus);
                    self.held.insert(key);
                    replies += 1;
                    st.computed += 1;
                }
                Some("free-keys") | Some("remove-replicas") => {
                    for k in read_op(&raw.bytes)?.keys {
                        self.held.remove(&k);
                        st.freed += 1;
                    }
                }
                Some("steal-request") => {
                    // nil if the request names no key
                    let key = read_op(&raw.bytes)?
                        .key
                        .unwrap_or_else(|| Bytes::from_static(&[0xc0]));
                    // everything we were given is already finished
                    let state = self.held.contains(&key).then_some("memory");
                    let reply = steal_response(Value::Raw(key), state, now);
                    out.extend_from_slice(&msgpack::encode(&reply));
                    replies += 1;
                    st.steals += 1;
                }
                Some("close") => st.close = true,
                _ => st.other += 1,
            }
        }
        Ok((st, replies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_wire::{decode_message, encode_message, Opaque, OpaqueKind};

    fn ident() -> WorkerIdentity {
        WorkerIdentity {
            address: "tcp://127.0.0.1:1".into(),
            name: "sim-0".into(),
            nthreads: 1,
            server_id: "Worker-sim-0".into(),
            pid: 7,
        }
    }

    #[test]
    fn register_worker_has_every_field_add_worker_requires() {
        let msg = register_worker(&ident(), 1.0);
        for f in [
            "address",
            "status",
            "server_id",
            "nthreads",
            "name",
            "now",
            "resources",
            "memory_limit",
            "metrics",
            "pid",
            "services",
            "local_directory",
            "versions",
            "nanny",
            "extra",
            "stimulus_id",
        ] {
            assert!(msg.get(f).is_some(), "register-worker lacks {f}");
        }
        assert_eq!(
            msg.get("op").and_then(Value::as_str),
            Some("register-worker")
        );
        // survives the wire
        let back = decode_message(&encode_message(&msg)).unwrap();
        assert_eq!(back, msg);
        // the heartbeat carries what heartbeat_worker indexes
        let hb = heartbeat("tcp://127.0.0.1:1", 2.0, 0);
        let m = hb.get("metrics").unwrap();
        assert!(m.get("bandwidth").unwrap().get("workers").is_some());
        assert!(m.get("digests_total_since_heartbeat").is_some());
        assert!(m.get("spilled_bytes").unwrap().get("memory").is_some());
    }

    /// The replies `handle` appended, decoded (as the scheduler reads them).
    fn replies(out: &[u8], count: usize) -> Vec<Value> {
        let mut body = Vec::new();
        msgpack::write_array_len(&mut body, count);
        body.extend_from_slice(out);
        match msgpack::decode(&Bytes::from(body)).unwrap() {
            Value::Array(items) => items,
            other => panic!("not a batch: {other}"),
        }
    }

    /// Feed `msg` through the wire the way the driver receives it.
    fn handle(sim: &mut WorkerSim, msg: &Value, now: f64) -> (BatchStats, Vec<Value>) {
        let mut out = Vec::new();
        let (st, n) = sim.handle(&encode_message(msg), now, &mut out).unwrap();
        (st, replies(&out, n))
    }

    #[test]
    fn task_finished_is_written_as_the_value_encodes() {
        let keys = [
            Value::str("inc-0123"),
            Value::Array(vec![Value::str("x"), Value::Int(3), Value::Int(-1)]),
            Value::str("k".repeat(300)),
        ];
        for key in keys {
            for run_id in [Some(7), Some(1 << 40), None] {
                let now = 1_700_000_000.123_456;
                let mut out = Vec::new();
                let stim = task_finished_stimulus(now);
                write_task_finished(&mut out, &msgpack::encode(&key), run_id, now, 9, &stim);
                let tree =
                    task_finished(key.clone(), run_id.map_or(Value::Nil, Value::Int), now, 9);
                assert_eq!(out, msgpack::encode(&tree));
                // a task that took no time at all would trip the Python
                // scheduler's work stealing (see SIMULATED_RUN_S)
                let span = &tree.get("startstops").unwrap().as_seq().unwrap()[0];
                let (start, stop) = (span.get("start").unwrap(), span.get("stop").unwrap());
                assert!(
                    stop.as_f64().unwrap() - start.as_f64().unwrap() >= 50e-6,
                    "{span:?}"
                );
            }
        }
    }

    #[test]
    fn compute_task_is_answered_with_task_finished_and_bookkept() {
        let run_spec = Opaque {
            kind: OpaqueKind::Pickled,
            header: Bytes::from(msgpack::encode(&Value::map([(
                "num-sub-frames",
                Value::Int(0),
            )]))),
            frames: vec![],
        };
        let tuple_key = Value::Array(vec![Value::str("x"), Value::Int(3)]);
        let batch = Value::Array(vec![
            Value::map([
                ("op", Value::str("compute-task")),
                ("key", tuple_key.clone()),
                ("run_id", Value::Int(42)),
                ("priority", Value::Array(vec![Value::Int(0)])),
                ("stimulus_id", Value::str("s")),
                ("who_has", empty()),
                ("nbytes", empty()),
                ("run_spec", Value::Opaque(Box::new(run_spec))),
                ("resource_restrictions", Value::Nil),
                ("actor", Value::Bool(false)),
                ("annotations", empty()),
                ("span_id", Value::Nil),
            ]),
            Value::map([
                ("op", Value::str("steal-request")),
                ("key", Value::str("unknown")),
                ("stimulus_id", Value::str("s2")),
            ]),
            Value::map([("op", Value::str("some-future-op"))]),
        ]);
        let mut sim = WorkerSim::new(9);
        let (st, out) = handle(&mut sim, &batch, 5.0);
        assert_eq!((st.computed, st.steals, st.other), (1, 1, 1));
        assert_eq!(sim.held(), 1);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            task_finished(tuple_key.clone(), Value::Int(42), 5.0, 9)
        );
        assert_eq!(
            out[1].get("op").and_then(Value::as_str),
            Some("steal-response")
        );
        assert_eq!(out[1].get("key"), Some(&Value::str("unknown")));
        assert_eq!(out[1].get("state"), Some(&Value::Nil));

        // a steal-request for a held key says memory; free-keys forgets it
        let steal = Value::map([
            ("op", Value::str("steal-request")),
            ("key", tuple_key.clone()),
            ("stimulus_id", Value::str("s3")),
        ]);
        let (_, out) = handle(&mut sim, &Value::Array(vec![steal]), 6.0);
        assert_eq!(out[0].get("key"), Some(&tuple_key));
        assert_eq!(out[0].get("state").and_then(Value::as_str), Some("memory"));
        let free = Value::map([
            ("op", Value::str("free-keys")),
            (
                "keys",
                Value::Array(vec![tuple_key, Value::str("never-held")]),
            ),
            ("stimulus_id", Value::str("s4")),
        ]);
        let (st, out) = handle(&mut sim, &Value::Array(vec![free]), 7.0);
        assert_eq!(st.freed, 2);
        assert!(out.is_empty());
        assert_eq!(sim.held(), 0);
        // one op alone, not in a batch
        let close = Value::map([("op", Value::str("close")), ("reason", Value::str("x"))]);
        let (st, _) = handle(&mut sim, &close, 8.0);
        assert!(st.close);
        // malformed input is an error, not a panic
        let mut out = Vec::new();
        assert!(sim
            .handle(&[Bytes::from_static(b"\x92\x81")], 9.0, &mut out)
            .is_err());
    }

    #[test]
    fn registration_reply_is_checked() {
        let ok = Value::map([
            ("status", Value::str("OK")),
            ("heartbeat-interval", Value::Float(2.0)),
        ]);
        assert_eq!(check_registration_reply(&ok).unwrap(), 2.0);
        let bad = Value::map([
            ("status", Value::str("error")),
            ("message", Value::str("name taken, sim-0")),
        ]);
        assert!(matches!(
            check_registration_reply(&bad),
            Err(DriverError::Rejected(m)) if m.contains("name taken")
        ));
    }
}
