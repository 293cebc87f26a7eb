//! Constructors for the op maps the scheduler sends, with exactly the fields
//! the peers expect (`proto/handlers-2026.8.0.txt`): a worker's stream handler
//! dies on a missing or extra field, so every scheduler→worker op is built here.
//!
//! Op names and field names go out as msgpack strs encoded at compile time
//! ([`Value::Raw`], written verbatim, no allocation): on the wire they are
//! the same bytes as strings. [`Value::get`] still finds the fields, and
//! [`Value::as_str_key`] reads such a string back.

use crate::task::Priority;
use bytes::Bytes;
use dask_wire::{Encoded, Key, Opaque, Value};
use smallvec::SmallVec;

/// The msgpack fixstr bytes of a short string (under 32 bytes), encoded at
/// compile time.
macro_rules! fixstr_bytes {
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
        &ENCODED as &'static [u8]
    }};
}

/// A short string (under 32 bytes) as a msgpack fixstr encoded at compile
/// time, in a `Value::Raw` that costs no allocation.
macro_rules! fixstr {
    ($s:literal) => {
        Value::Raw(Bytes::from_static(fixstr_bytes!($s)))
    };
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

/// One dependency of a task, as `compute-task` lists it.
pub struct ComputeDep<'a> {
    /// The dependency's key.
    pub key: &'a Key,
    /// Its size in bytes.
    pub nbytes: i64,
    /// Its holders' addresses, each a pre-encoded msgpack str.
    pub who_has: SmallVec<[&'a Bytes; 2]>,
}

/// Fields of a `compute-task` message.
pub struct ComputeTask<'a, 'd> {
    /// Task key.
    pub key: &'a Key,
    /// Assignment counter.
    pub run_id: i64,
    /// Priority tuple.
    pub priority: &'a Priority,
    /// Stimulus id, a pre-encoded msgpack str (see `State::stimulus_msgpack`).
    pub stimulus_id: &'a [u8],
    /// The dependencies (`who_has` and `nbytes`).
    pub deps: &'d [ComputeDep<'a>],
    /// The pickled run spec (opaque `__Pickled__`), if any.
    pub run_spec: Option<Opaque>,
    /// `{resource: amount}`, if the task has resource restrictions.
    pub resources: Option<&'a [(String, f64)]>,
    /// Annotations map.
    pub annotations: &'a Value,
    /// The task is an actor: the worker keeps the object it returns.
    pub actor: bool,
}

/// scheduler→worker `compute-task`, encoded at once: the most frequent op
/// the scheduler sends, so it is written field by field into msgpack rather
/// than built as a [`Value`] tree (see [`dask_wire::encoded`]). It decodes
/// to a map with the fields in this order.
pub fn compute_task(c: ComputeTask<'_, '_>) -> Value {
    use dask_wire::msgpack::{write_array_len, write_int, write_map_len, write_str};
    let deps_len: usize = c
        .deps
        .iter()
        .map(|d| 2 * d.key.as_bytes().len() + 24 + 8 * d.who_has.len())
        .sum();
    let mut e = Encoded::with_capacity(256 + c.key.as_bytes().len() + deps_len);
    let out = e.buf();
    out.push(0x8c); // a map of 12 fields
    out.extend_from_slice(fixstr_bytes!("op"));
    out.extend_from_slice(fixstr_bytes!("compute-task"));
    out.extend_from_slice(fixstr_bytes!("key"));
    out.extend_from_slice(c.key.as_bytes());
    out.extend_from_slice(fixstr_bytes!("run_id"));
    write_int(out, c.run_id);
    out.extend_from_slice(fixstr_bytes!("priority"));
    c.priority.write_msgpack(out);
    out.extend_from_slice(fixstr_bytes!("stimulus_id"));
    out.extend_from_slice(c.stimulus_id);
    out.extend_from_slice(fixstr_bytes!("who_has"));
    write_map_len(out, c.deps.len());
    for d in c.deps {
        out.extend_from_slice(d.key.as_bytes());
        write_array_len(out, d.who_has.len());
        for addr in &d.who_has {
            out.extend_from_slice(addr);
        }
    }
    out.extend_from_slice(fixstr_bytes!("nbytes"));
    write_map_len(out, c.deps.len());
    for d in c.deps {
        out.extend_from_slice(d.key.as_bytes());
        write_int(out, d.nbytes);
    }
    out.extend_from_slice(fixstr_bytes!("run_spec"));
    match c.run_spec {
        Some(o) => e.push_opaque(o),
        None => out.push(0xc0),
    }
    let out = e.buf();
    out.extend_from_slice(fixstr_bytes!("resource_restrictions"));
    match c.resources {
        Some(resources) => {
            write_map_len(out, resources.len());
            for (name, amount) in resources {
                write_str(out, name);
                out.push(0xcb);
                out.extend_from_slice(&amount.to_be_bytes());
            }
        }
        None => out.push(0xc0),
    }
    out.extend_from_slice(fixstr_bytes!("actor"));
    out.push(if c.actor { 0xc3 } else { 0xc2 });
    out.extend_from_slice(fixstr_bytes!("annotations"));
    e.push_value(c.annotations);
    let out = e.buf();
    out.extend_from_slice(fixstr_bytes!("span_id"));
    out.push(0xc0);
    e.into_value()
}

/// scheduler→worker `free-keys` for keys given as values (those a worker
/// named that the scheduler does not hold); a known [`Key`] goes out
/// through [`free_keys_of`].
pub fn free_keys(keys: Vec<Value>, stimulus_id: &str) -> Value {
    op(
        fixstr!("free-keys"),
        [
            (fixstr!("keys"), Value::Array(keys)),
            (fixstr!("stimulus_id"), Value::str(stimulus_id)),
        ],
    )
}

/// The bytes a `free-keys` from [`free_keys_of`] starts with: a map of
/// three fields, the op, then the stimulus id (the keys come last, so more
/// can be appended).
const FREE_KEYS_PREFIX: &[u8] = b"\x83\xa2op\xa9free-keys\xabstimulus_id";

/// scheduler→worker `free-keys` for one task's key, encoded at once: the
/// transitions free one key per task on its holders, and a batch's keys
/// for one worker share a message ([`free_keys_push`] appends to it). The
/// key's canonical bytes are copied, not shared, so the task's key buffer
/// is not turned into a shared one (an allocation and atomic counts per
/// key). `stimulus_id` is a pre-encoded msgpack str. The worker reads the
/// fields by name; their order (`op`, `stimulus_id`, `keys`) is not
/// Python's (`keys` before `stimulus_id`) only so that keys can be added at
/// the end.
pub fn free_keys_of(key: &Key, stimulus_id: &[u8]) -> Value {
    let key = key.as_bytes();
    let mut e = Encoded::with_capacity(FREE_KEYS_PREFIX.len() + stimulus_id.len() + 16 + key.len());
    let out = e.buf();
    out.extend_from_slice(FREE_KEYS_PREFIX);
    out.extend_from_slice(stimulus_id);
    out.extend_from_slice(fixstr_bytes!("keys"));
    // an array32 header, so the count can be raised in place
    out.push(0xdd);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(key);
    e.into_value()
}

/// Append `key` to a message built by [`free_keys_of`]; false if `msg` is
/// not one.
pub fn free_keys_push(msg: &mut Value, key: &Key) -> bool {
    let Value::Encoded(e) = msg else {
        return false;
    };
    let body = e.buf();
    let Some(rest) = body.strip_prefix(FREE_KEYS_PREFIX) else {
        return false;
    };
    let stimulus_len = match rest.first() {
        Some(&m @ 0xa0..=0xbf) => 1 + (m & 0x1f) as usize,
        Some(0xd9) => match rest.get(1) {
            Some(&n) => 2 + n as usize,
            None => return false,
        },
        Some(0xda) => match rest.get(1..3) {
            Some(n) => 3 + u16::from_be_bytes([n[0], n[1]]) as usize,
            None => return false,
        },
        _ => return false,
    };
    let keys_at = FREE_KEYS_PREFIX.len() + stimulus_len;
    let count_at = keys_at + fixstr_bytes!("keys").len();
    if body.get(keys_at..count_at) != Some(fixstr_bytes!("keys"))
        || body.get(count_at) != Some(&0xdd)
    {
        return false;
    }
    let Some(count) = body.get(count_at + 1..count_at + 5) else {
        return false;
    };
    let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    body[count_at + 1..count_at + 5].copy_from_slice(&(count + 1).to_be_bytes());
    body.extend_from_slice(key.as_bytes());
    true
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

/// scheduler→client `stream-start`, the only element of the first batch,
/// with the version check's `warning` (`""` when nothing differs).
pub fn stream_start(warning: &str) -> Value {
    op(
        fixstr!("stream-start"),
        [
            (fixstr!("warning"), Value::str(warning)),
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
        let msg = free_keys(vec![Value::str("x")], "s");
        let decoded = msgpack::decode(&Bytes::from(msgpack::encode(&msg))).unwrap();
        let names: Vec<&str> = decoded
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().expect("field names decode as strs"))
            .collect();
        assert_eq!(names, ["op", "keys", "stimulus_id"]);
        assert_eq!(msg.get("stimulus_id"), Some(&Value::str("s")));
        assert_eq!(decoded.get("stimulus_id"), Some(&Value::str("s")));
    }

    #[test]
    fn free_keys_grows_in_place_and_decodes_to_its_keys() {
        let keys = [
            Key::from_str_key("x"),
            Key::from_value(&Value::Array(vec![Value::str("y"), Value::Int(3)])).unwrap(),
            Key::from_str_key(&"z".repeat(300)),
        ];
        // stimulus ids as fixstr, str8 and str16
        for stimulus in ["s", &"t".repeat(40), &"u".repeat(300)] {
            let stim = msgpack::encode(&Value::str(stimulus));
            let mut msg = free_keys_of(&keys[0], &stim);
            for k in &keys[1..] {
                assert!(free_keys_push(&mut msg, k), "{stimulus}");
            }
            let Value::Encoded(e) = &msg else {
                panic!("free-keys is encoded at once")
            };
            let decoded = e.decode().unwrap();
            assert_eq!(decoded.get("op"), Some(&Value::str("free-keys")));
            assert_eq!(decoded.get("stimulus_id"), Some(&Value::str(stimulus)));
            let want: Vec<Value> = keys.iter().map(Key::decoded).collect();
            assert_eq!(decoded.get("keys"), Some(&Value::Array(want)));
        }
        // anything else is left alone
        let mut other = free_keys(vec![Value::str("x")], "s");
        assert!(!free_keys_push(&mut other, &keys[1]));
        let mut compute = stream_start("");
        assert!(!free_keys_push(&mut compute, &keys[1]));
    }

    /// `compute-task` as a tree, the way it was built before it was encoded
    /// directly: the reference the direct encoding must match byte for byte.
    fn compute_task_tree(c: &ComputeTask<'_, '_>) -> Value {
        let deps = |f: &dyn Fn(&ComputeDep<'_>) -> Value| {
            Value::Map(c.deps.iter().map(|d| (d.key.to_value(), f(d))).collect())
        };
        Value::map([
            ("op", Value::str("compute-task")),
            ("key", c.key.to_value()),
            ("run_id", Value::Int(c.run_id)),
            ("priority", c.priority.to_value()),
            (
                "stimulus_id",
                msgpack::decode(&Bytes::copy_from_slice(c.stimulus_id)).unwrap(),
            ),
            (
                "who_has",
                deps(&|d| {
                    Value::Array(d.who_has.iter().map(|a| Value::Raw((*a).clone())).collect())
                }),
            ),
            ("nbytes", deps(&|d| Value::Int(d.nbytes))),
            (
                "run_spec",
                c.run_spec
                    .clone()
                    .map_or(Value::Nil, |o| Value::Opaque(Box::new(o))),
            ),
            (
                "resource_restrictions",
                c.resources.map_or(Value::Nil, |r| {
                    Value::Map(
                        r.iter()
                            .map(|(n, a)| (Value::str(n.as_str()), Value::Float(*a)))
                            .collect(),
                    )
                }),
            ),
            ("actor", Value::Bool(c.actor)),
            ("annotations", c.annotations.clone()),
            ("span_id", Value::Nil),
        ])
    }

    #[test]
    fn compute_task_encodes_like_its_tree() {
        use dask_wire::{encode_message, OpaqueKind};
        let run_spec = Opaque {
            kind: OpaqueKind::Pickled,
            header: Bytes::from(msgpack::encode(&Value::map([
                ("num-sub-frames", Value::Int(0)),
                ("pickled-obj", Value::Bin(Bytes::from_static(b"\x80\x05."))),
            ]))),
            frames: vec![],
        };
        let addr = |s: &str| Bytes::from(msgpack::encode(&Value::str(s)));
        let (a, b) = (addr("tcp://127.0.0.1:1"), addr("tcp://127.0.0.1:2"));
        let keys = [
            Key::from_str_key("x"),
            Key::from_value(&Value::Array(vec![Value::str("y"), Value::Int(3)])).unwrap(),
            Key::from_str_key("z"),
        ];
        let resources = [("GPU".to_string(), 1.0), ("MEM".to_string(), 0.5)];
        let priority = Priority {
            user: -1.0,
            generation: 0.5,
            order: 12,
        };
        let annotations = Value::map([("retries", Value::Int(2))]);
        let stimulus = msgpack::encode(&Value::str("compute-task-1"));
        let (no_priority, no_annotations) = (Priority::default(), Value::Map(vec![]));
        let deps = [
            ComputeDep {
                key: &keys[1],
                nbytes: 28,
                who_has: SmallVec::from_slice(&[&a, &b]),
            },
            ComputeDep {
                key: &keys[2],
                nbytes: 1 << 40,
                who_has: SmallVec::new(),
            },
        ];
        let cases = [
            ComputeTask {
                key: &keys[0],
                run_id: 1,
                priority: &no_priority,
                stimulus_id: &stimulus,
                deps: &[],
                run_spec: None,
                resources: None,
                annotations: &no_annotations,
                actor: false,
            },
            ComputeTask {
                key: &keys[0],
                run_id: 7,
                priority: &priority,
                stimulus_id: &stimulus,
                deps: &deps,
                run_spec: Some(run_spec),
                resources: Some(&resources),
                annotations: &annotations,
                actor: true,
            },
        ];
        for c in cases {
            let tree = compute_task_tree(&c);
            let direct = compute_task(c);
            assert_eq!(encode_message(&direct), encode_message(&tree));
            // and what a peer decodes from it is that tree
            let Value::Encoded(e) = &direct else {
                panic!("compute_task builds an encoded value");
            };
            assert_eq!(
                e.decode().unwrap(),
                dask_wire::decode_message(&encode_message(&tree)).unwrap()
            );
        }
    }
}
