//! Constructors for the op maps the scheduler sends, with exactly the fields
//! the peers expect (`proto/handlers-2026.8.0.txt`): a worker's stream handler
//! dies on a missing or extra field, so every scheduler→worker op is built here.

use dask_wire::Value;

fn op(name: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut entries = Vec::with_capacity(fields.len() + 1);
    entries.push((Value::str("op"), Value::str(name)));
    entries.extend(fields.into_iter().map(|(k, v)| (Value::str(k), v)));
    Value::Map(entries)
}

/// Fields of a `compute-task` message.
pub struct ComputeTask<'a> {
    /// Task key.
    pub key: Value,
    /// Assignment counter.
    pub run_id: i64,
    /// Priority tuple.
    pub priority: Value,
    /// Stimulus id.
    pub stimulus_id: &'a str,
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
pub fn compute_task(c: ComputeTask<'_>) -> Value {
    op(
        "compute-task",
        vec![
            ("key", c.key),
            ("run_id", Value::Int(c.run_id)),
            ("priority", c.priority),
            ("stimulus_id", Value::str(c.stimulus_id)),
            ("who_has", c.who_has),
            ("nbytes", c.nbytes),
            ("run_spec", c.run_spec),
            ("resource_restrictions", c.resource_restrictions),
            ("actor", Value::Bool(false)),
            ("annotations", c.annotations),
            ("span_id", Value::Nil),
        ],
    )
}

/// scheduler→worker `free-keys`.
pub fn free_keys(keys: Vec<Value>, stimulus_id: &str) -> Value {
    op(
        "free-keys",
        vec![
            ("keys", Value::Array(keys)),
            ("stimulus_id", Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `remove-replicas`.
pub fn remove_replicas(keys: Vec<Value>, stimulus_id: &str) -> Value {
    op(
        "remove-replicas",
        vec![
            ("keys", Value::Array(keys)),
            ("stimulus_id", Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `acquire-replicas`: fetch these keys from the listed
/// holders (`who_has: {key: [addr]}`, `nbytes: {key: int}`); the worker
/// confirms each replica with `add-keys`.
pub fn acquire_replicas(who_has: Value, nbytes: Value, stimulus_id: &str) -> Value {
    op(
        "acquire-replicas",
        vec![
            ("who_has", who_has),
            ("nbytes", nbytes),
            ("stimulus_id", Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `worker-status-change` (e.g. `closing_gracefully` when
/// retiring it).
pub fn worker_status_change(status: &str, stimulus_id: &str) -> Value {
    op(
        "worker-status-change",
        vec![
            ("status", Value::str(status)),
            ("stimulus_id", Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `close`: shut down (a nanny does not restart it).
pub fn close_worker(reason: &str) -> Value {
    op("close", vec![("reason", Value::str(reason))])
}

/// scheduler→worker `refresh-who-has`.
pub fn refresh_who_has(who_has: Value, stimulus_id: &str) -> Value {
    op(
        "refresh-who-has",
        vec![
            ("who_has", who_has),
            ("stimulus_id", Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→worker `steal-request`.
pub fn steal_request(key: Value, stimulus_id: &str) -> Value {
    op(
        "steal-request",
        vec![("key", key), ("stimulus_id", Value::str(stimulus_id))],
    )
}

/// scheduler→worker `remove-worker`: a peer left.
pub fn remove_worker(address: &str, stimulus_id: &str) -> Value {
    op(
        "remove-worker",
        vec![
            ("worker", Value::str(address)),
            ("stimulus_id", Value::str(stimulus_id)),
        ],
    )
}

/// scheduler→client `key-in-memory`.
pub fn key_in_memory(key: Value, result_type: Option<Value>) -> Value {
    let mut fields = vec![("key", key)];
    if let Some(t) = result_type {
        fields.push(("type", t));
    }
    op("key-in-memory", fields)
}

/// scheduler→client `task-erred`.
pub fn task_erred(key: Value, exception: Value, traceback: Value) -> Value {
    op(
        "task-erred",
        vec![
            ("key", key),
            ("exception", exception),
            ("traceback", traceback),
        ],
    )
}

/// scheduler→client `lost-data`.
pub fn lost_data(key: Value) -> Value {
    op("lost-data", vec![("key", key)])
}

/// scheduler→client `task-retried`.
pub fn task_retried(key: Value) -> Value {
    op("task-retried", vec![("key", key)])
}

/// scheduler→client `cancelled-keys`.
pub fn cancelled_keys(keys: Vec<Value>, reason: Option<&str>) -> Value {
    let mut fields = vec![("keys", Value::Array(keys))];
    if let Some(r) = reason {
        fields.push(("reason", Value::str(r)));
    }
    op("cancelled-keys", fields)
}

/// scheduler→client `adjust-heartbeat-interval`.
pub fn adjust_heartbeat_interval(interval: f64) -> Value {
    op(
        "adjust-heartbeat-interval",
        vec![("interval", Value::Float(interval))],
    )
}

/// scheduler→client `event` (worker `log-event`s on a subscribed topic).
pub fn event(topic: &str, time: f64, msg: Value) -> Value {
    op(
        "event",
        vec![
            ("topic", Value::str(topic)),
            ("event", Value::Array(vec![Value::Float(time), msg])),
        ],
    )
}

/// scheduler→client `stream-start`, the only element of the first batch.
pub fn stream_start() -> Value {
    op(
        "stream-start",
        vec![("warning", Value::str("")), ("error", Value::str(""))],
    )
}
