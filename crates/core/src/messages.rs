//! Constructors for the op maps the scheduler sends, with exactly the fields
//! the peers expect (`proto/handlers-2026.8.0.txt`): a worker's stream handler
//! dies on a missing or extra field, so every scheduler→worker op is built here.
//!
//! Op names and field names go out as msgpack strs encoded at compile time
//! ([`Value::Raw`], written verbatim, no allocation): on the wire they are
//! the same bytes as strings. [`Value::get`] still finds the fields, and
//! [`Value::as_str_key`] reads such a string back.

use bytes::Bytes;
use dask_wire::Value;

/// A short string (under 32 bytes) as a msgpack fixstr encoded at compile
/// time, in a `Value::Raw` that costs no allocation.
macro_rules! fixstr {
    ($s:literal) => {{
        const LEN: usize = $s.len();
        const ENCODED: [u8; LEN + 1] = {
            assert!(LEN < 32, "a fixstr holds at most 31 bytes");
            let src = $s.as_bytes();
            let mut out = [0u8; LEN + 1];
            out[0] = 0xa0 | LEN as u8;
            let mut i = 0;
            while i < LEN {
                out[i + 1] = src[i];
                i += 1;
            }
            out
        };
        Value::Raw(Bytes::from_static(&ENCODED))
    }};
}

/// An op map: `op` (a pre-encoded str, see [`fixstr`]) first, then
/// `fields`, then `optional` if given; one allocation.
fn op_with<const N: usize>(
    name: Value,
    fields: [(Value, Value); N],
    optional: Option<(Value, Value)>,
) -> Value {
    let mut entries = Vec::with_capacity(N + 1 + usize::from(optional.is_some()));
    entries.push((fixstr!("op"), name));
    entries.extend(fields);
    entries.extend(optional);
    Value::Map(entries)
}

/// An op map with exactly these fields.
fn op<const N: usize>(name: Value, fields: [(Value, Value); N]) -> Value {
    op_with(name, fields, None)
}

/// Fields of a `compute-task` message.
pub struct ComputeTask {
    /// Task key.
    pub key: Value,
    /// Assignment counter.
    pub run_id: i64,
    /// Priority tuple.
    pub priority: Value,
    /// Stimulus id (a str, or a pre-encoded msgpack str).
    pub stimulus_id: Value,
    /// `{dep key: [addresses]}`.
    pub who_has: Value,
    /// `{dep key: nbytes}`.
    pub nbytes: Value,
    /// The pickled run spec (opaque `__Pickled__`).
    pub run_spec: Value,
    /// `{resource: amount}` or nil.
    pub resource_restrictions: Value,
    /// Annotations map.
    pub annotations: Value,
}

/// scheduler→worker `compute-task`.
pub fn compute_task(c: ComputeTask) -> Value {
    op(
        fixstr!("compute-task"),
        [
            (fixstr!("key"), c.key),
            (fixstr!("run_id"), Value::Int(c.run_id)),
            (fixstr!("priority"), c.priority),
            (fixstr!("stimulus_id"), c.stimulus_id),
            (fixstr!("who_has"), c.who_has),
            (fixstr!("nbytes"), c.nbytes),
            (fixstr!("run_spec"), c.run_spec),
            (fixstr!("resource_restrictions"), c.resource_restrictions),
            (fixstr!("actor"), Value::Bool(false)),
            (fixstr!("annotations"), c.annotations),
            (fixstr!("span_id"), Value::Nil),
        ],
    )
}

/// scheduler→worker `free-keys`.
pub fn free_keys(keys: Vec<Value>, stimulus_id: &str) -> Value {
    op(
        fixstr!("free-keys"),
        [
            (fixstr!("keys"), Value::Array(keys)),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// Add `key` to a message built by [`free_keys`]; false if `msg` is not one.
pub fn free_keys_add(msg: &mut Value, key: Value) -> bool {
    if let Value::Map(entries) = msg {
        if let [(_, op), (_, Value::Array(keys)), _] = entries.as_mut_slice() {
            if op.is_str_key("free-keys") {
                keys.push(key);
                return true;
            }
        }
    }
    false
}

/// scheduler→worker `remove-replicas`.
pub fn remove_replicas(keys: Vec<Value>, stimulus_id: &str) -> Value {
    op(
        fixstr!("remove-replicas"),
        [
            (fixstr!("keys"), Value::Array(keys)),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `acquire-replicas`: fetch these keys from the listed
/// holders (`who_has: {key: [addr]}`, `nbytes: {key: int}`); the worker
/// confirms each replica with `add-keys`.
pub fn acquire_replicas(who_has: Value, nbytes: Value, stimulus_id: &str) -> Value {
    op(
        fixstr!("acquire-replicas"),
        [
            (fixstr!("who_has"), who_has),
            (fixstr!("nbytes"), nbytes),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `worker-status-change` (e.g. `closing_gracefully` when
/// retiring it).
pub fn worker_status_change(status: &str, stimulus_id: &str) -> Value {
    op(
        fixstr!("worker-status-change"),
        [
            (fixstr!("status"), Value::str(status)),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `close`: shut down (a nanny does not restart it).
pub fn close_worker(reason: &str) -> Value {
    op(fixstr!("close"), [(fixstr!("reason"), Value::str(reason))])
}

/// scheduler→worker `refresh-who-has`.
pub fn refresh_who_has(who_has: Value, stimulus_id: &str) -> Value {
    op(
        fixstr!("refresh-who-has"),
        [
            (fixstr!("who_has"), who_has),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `steal-request`.
pub fn steal_request(key: Value, stimulus_id: &str) -> Value {
    op(
        fixstr!("steal-request"),
        [
            (fixstr!("key"), key),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `remove-worker`: a peer left.
pub fn remove_worker(address: &str, stimulus_id: &str) -> Value {
    op(
        fixstr!("remove-worker"),
        [
            (fixstr!("worker"), Value::str(address)),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→client `key-in-memory`.
pub fn key_in_memory(key: Value, result_type: Option<Value>) -> Value {
    op_with(
        fixstr!("key-in-memory"),
        [(fixstr!("key"), key)],
        result_type.map(|t| (fixstr!("type"), t)),
    )
}

/// scheduler→client `task-erred`.
pub fn task_erred(key: Value, exception: Value, traceback: Value) -> Value {
    op(
        fixstr!("task-erred"),
        [
            (fixstr!("key"), key),
            (fixstr!("exception"), exception),
            (fixstr!("traceback"), traceback),
        ],
    )
}

/// scheduler→client `lost-data`.
pub fn lost_data(key: Value) -> Value {
    op(fixstr!("lost-data"), [(fixstr!("key"), key)])
}

/// scheduler→client `task-retried`.
pub fn task_retried(key: Value) -> Value {
    op(fixstr!("task-retried"), [(fixstr!("key"), key)])
}

/// scheduler→client `cancelled-keys`.
pub fn cancelled_keys(keys: Vec<Value>, reason: Option<&str>) -> Value {
    op_with(
        fixstr!("cancelled-keys"),
        [(fixstr!("keys"), Value::Array(keys))],
        reason.map(|r| (fixstr!("reason"), Value::str(r))),
    )
}

/// scheduler→client `adjust-heartbeat-interval`.
pub fn adjust_heartbeat_interval(interval: f64) -> Value {
    op(
        fixstr!("adjust-heartbeat-interval"),
        [(fixstr!("interval"), Value::Float(interval))],
    )
}

/// scheduler→client `event` (worker `log-event`s on a subscribed topic).
pub fn event(topic: &str, time: f64, msg: Value) -> Value {
    op(
        fixstr!("event"),
        [
            (fixstr!("topic"), Value::str(topic)),
            (
                fixstr!("event"),
                Value::Array(vec![Value::Float(time), msg]),
            ),
        ],
    )
}

/// scheduler→client `stream-start`, the only element of the first batch.
pub fn stream_start() -> Value {
    op(
        fixstr!("stream-start"),
        [
            (fixstr!("warning"), Value::str("")),
            (fixstr!("error"), Value::str("")),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_wire::msgpack;

    #[test]
    fn pre_encoded_field_names_encode_like_strings() {
        let msg = compute_task(ComputeTask {
            key: Value::str("x"),
            run_id: 1,
            priority: Value::Array(vec![]),
            stimulus_id: Value::str("s"),
            who_has: Value::Map(vec![]),
            nbytes: Value::Map(vec![]),
            run_spec: Value::Nil,
            resource_restrictions: Value::Nil,
            annotations: Value::Map(vec![]),
        });
        let decoded = msgpack::decode(&Bytes::from(msgpack::encode(&msg))).unwrap();
        let names: Vec<&str> = decoded
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().expect("field names decode as strs"))
            .collect();
        assert_eq!(
            names,
            [
                "op",
                "key",
                "run_id",
                "priority",
                "stimulus_id",
                "who_has",
                "nbytes",
                "run_spec",
                "resource_restrictions",
                "actor",
                "annotations",
                "span_id"
            ]
        );
        assert_eq!(msg.get("run_id"), Some(&Value::Int(1)));
        assert_eq!(decoded.get("run_id"), Some(&Value::Int(1)));
    }
}
