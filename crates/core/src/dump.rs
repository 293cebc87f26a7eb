//! `Client.dump_cluster_state`, the scheduler's part (Python's
//! `Scheduler._to_dict`).
//!
//! Why: a cluster dump is what Dask users attach to a bug report about a
//! stuck or failing computation. This gives the scheduler's tasks, workers,
//! clients, task groups, memory and events in the shape of Python's dump:
//! the same field names, and other tasks, workers and clients named by
//! their `repr` as `recursive_to_dict` writes them, so that
//! `distributed.cluster_dump.DumpArtefact` reads it. Differences: the
//! `transition_log` is empty where the log was turned off ([`crate::story`]),
//! events are the events themselves rather than `Topic` reprs, and a field this scheduler
//! does not track is left out rather than invented.

use crate::coordination::python_repr;
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::memory::WorkerMemory;
use crate::state::State;
use crate::stats::{state_index, ALL_TASK_STATES as STATES};
use crate::task::{Restrictions, Task, TaskState};
use crate::worker::Worker;
use dask_wire::Value;
use rustc_hash::FxHashMap;

/// Per-state task counts, by [`state_index`].
type StateCounts = [u64; 8];

/// A map of `entries` without the names in `exclude` (Python's `exclude`
/// applies at every level of the dump).
fn dict(entries: Vec<(&str, Value)>, exclude: &[String]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .filter(|(k, _)| !exclude.iter().any(|e| e == k))
            .map(|(k, v)| (Value::str(k), v))
            .collect(),
    )
}

/// Python's `TaskGroup`/`TaskPrefix` repr: `<name: memory: 3, waiting: 1>`.
fn counts_repr(name: &str, counts: &StateCounts) -> String {
    let mut states: Vec<(&str, u64)> = STATES
        .iter()
        .map(|s| (s.as_str(), counts[state_index(*s)]))
        .filter(|(_, n)| *n > 0)
        .collect();
    states.sort_unstable();
    let inner: Vec<String> = states.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    format!("<{name}: {}>", inner.join(", "))
}

fn states_map(counts: &StateCounts) -> Value {
    Value::Map(
        STATES
            .iter()
            .filter(|s| **s != TaskState::Forgotten)
            .map(|s| {
                (
                    Value::str(s.as_str()),
                    Value::Int(counts[state_index(*s)] as i64),
                )
            })
            .collect(),
    )
}

/// Resources (`{name: amount}`) as Python keeps them, a dict of floats.
pub(crate) fn resources_map(r: &[(String, f64)]) -> Value {
    Value::Map(
        r.iter()
            .map(|(n, a)| (Value::str(n.as_str()), Value::Float(*a)))
            .collect(),
    )
}

/// Python's `MemoryState._to_dict` of summed readings.
fn memory_dict(m: WorkerMemory) -> Value {
    Value::Map(
        WorkerMemory::NAMES
            .iter()
            .map(|n| (Value::str(*n), Value::Int(m.named(n).unwrap_or(0))))
            .collect(),
    )
}

/// Python's `repr(bytes)`, as `recursive_to_dict` writes bytes.
fn bytes_repr(b: &[u8]) -> String {
    let mut out = String::from("b'");
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push('\'');
    out
}

/// What Python's `recursive_to_dict` makes of a value that came from a
/// worker or a client (heartbeat metrics, events, annotations): bytes and
/// other opaque data become their repr, and a map key that cannot be one in
/// Python after the conversion (a tuple, which becomes a list) becomes its
/// `str`, so that Dask's reader (msgpack with `strict_map_key`) loads it.
fn plain(v: Value) -> Value {
    match v {
        Value::Bin(b) => Value::str(bytes_repr(&b)),
        Value::Ext(_, b) => Value::str(bytes_repr(&b)),
        Value::Opaque(_) => Value::str("<Serialized>"),
        Value::Raw(b) => plain(dask_wire::msgpack::decode(&b).unwrap_or(Value::Nil)),
        Value::Encoded(e) => plain(e.decode().unwrap_or(Value::Nil)),
        Value::Array(items) => Value::Array(items.into_iter().map(plain).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let k = match plain(k) {
                        Value::Array(items) => {
                            let inner: Vec<String> = items.iter().map(python_repr).collect();
                            Value::str(format!("[{}]", inner.join(", ")))
                        }
                        Value::Map(_) => Value::str("{...}"),
                        k => k,
                    };
                    (k, plain(v))
                })
                .collect(),
        ),
        other => other,
    }
}

impl State {
    /// `repr(TaskState)`: `<TaskState 'x' memory>`.
    fn task_repr(&self, id: TaskId) -> Value {
        let t = self.task(id);
        Value::str(format!(
            "<TaskState {} {}>",
            python_repr(&t.key.decoded()),
            t.state.as_str()
        ))
    }

    fn task_reprs(&self, ids: impl Iterator<Item = TaskId>) -> Value {
        Value::Array(ids.map(|id| self.task_repr(id)).collect())
    }

    /// `repr(WorkerState)`: `<WorkerState 'tcp://…', name: a, status: running,
    /// memory: 2, processing: 0>`.
    fn worker_repr(&self, w: WorkerId) -> Value {
        match self.workers.get(&w) {
            Some(w) => Value::str(format!(
                "<WorkerState '{}', name: {}, status: {}, memory: {}, processing: {}>",
                w.info.address,
                crate::coordination::python_str(&w.info.name),
                w.status.as_str(),
                w.has_what.len(),
                w.processing.len()
            )),
            None => Value::str(format!("<WorkerState (removed, id {})>", w.0)),
        }
    }

    fn client_repr(&self, c: ClientId) -> Value {
        match self.clients.get(&c) {
            Some(cl) => Value::str(format!("<Client '{}'>", cl.name)),
            None => Value::Nil,
        }
    }

    /// The scheduler's part of a cluster dump (the caller adds the server's
    /// identity: `id`, `address`, `services`, the cluster totals, ...).
    pub fn dump_state(&self, exclude: &[String]) -> Vec<(&'static str, Value)> {
        let mut groups: FxHashMap<u32, StateCounts> = FxHashMap::default();
        let mut prefixes: FxHashMap<u32, StateCounts> = FxHashMap::default();
        for t in self.tasks.iter().flatten() {
            groups.entry(t.group).or_default()[state_index(t.state)] += 1;
            prefixes.entry(t.prefix).or_default()[state_index(t.state)] += 1;
        }
        let group_repr = |g: u32| counts_repr(self.groups.name(g), &groups[&g]);
        let prefix_repr = |p: u32| {
            let name = self.prefix_name(p).unwrap_or("?");
            counts_repr(name, prefixes.get(&p).unwrap_or(&[0; 8]))
        };

        let tasks: Vec<(Value, Value)> = self
            .tasks
            .iter()
            .flatten()
            .map(|t| {
                (
                    Value::str(crate::coordination::key_label(&t.key)),
                    self.task_dict(t, &group_repr(t.group), &prefix_repr(t.prefix), exclude),
                )
            })
            .collect();
        let mut group_ids: Vec<u32> = groups.keys().copied().collect();
        group_ids.sort_unstable_by(|a, b| self.groups.name(*a).cmp(self.groups.name(*b)));
        let task_groups: Vec<(Value, Value)> = group_ids
            .into_iter()
            .map(|g| {
                let counts = &groups[&g];
                let active = [
                    TaskState::Waiting,
                    TaskState::NoWorker,
                    TaskState::Queued,
                    TaskState::Processing,
                ];
                let done = active.iter().all(|s| counts[state_index(*s)] == 0);
                (
                    Value::str(self.groups.name(g)),
                    dict(
                        vec![
                            ("name", Value::str(self.groups.name(g))),
                            ("states", states_map(counts)),
                            ("done", Value::Bool(done)),
                            // Python's: each task's last result size
                            // (forgotten tasks included), every reported
                            // action's seconds, the span of its computes
                            (
                                "nbytes_total",
                                Value::Int(self.groups.totals(g).nbytes_total),
                            ),
                            (
                                "duration",
                                Value::Float(self.groups.totals(g).duration_us as f64 / 1e6),
                            ),
                            ("start", Value::Float(self.groups.totals(g).start)),
                            ("stop", Value::Float(self.groups.totals(g).stop)),
                            (
                                "types",
                                Value::Array(
                                    self.groups
                                        .types(g)
                                        .iter()
                                        .map(|&(name, _)| Value::str(self.result_types.name(name)))
                                        .collect(),
                                ),
                            ),
                        ],
                        exclude,
                    ),
                )
            })
            .collect();
        let workers: Vec<(Value, Value)> = self
            .workers
            .values()
            .map(|w| {
                (
                    Value::str(w.info.address.as_str()),
                    self.worker_dict(w, exclude),
                )
            })
            .collect();
        let clients: Vec<(Value, Value)> = self
            .clients
            .values()
            .map(|cl| {
                (
                    Value::str(cl.name.as_str()),
                    dict(
                        vec![
                            ("client_key", Value::str(cl.name.as_str())),
                            ("last_seen", Value::Float(cl.last_seen)),
                            ("wants_what", self.task_reprs(cl.wants_what.iter())),
                        ],
                        exclude,
                    ),
                )
            })
            .collect();
        let memory = WorkerMemory::sum(self.workers.values().map(|w| w.memory()));
        let mut topics: Vec<&String> = self.events.keys().collect();
        topics.sort();
        let events = Value::Map(
            topics
                .into_iter()
                .map(|topic| {
                    let list = self.events[topic]
                        .iter()
                        .map(|(t, msg)| Value::Array(vec![Value::Float(*t), msg.clone()]))
                        .collect();
                    (Value::str(topic.as_str()), Value::Array(list))
                })
                .collect(),
        );
        vec![
            (
                "transition_counter",
                Value::Int(self.transition_counter as i64),
            ),
            ("transition_log", Value::Array(self.transition_log_values())),
            ("tasks", Value::Map(tasks)),
            ("task_groups", Value::Map(task_groups)),
            ("workers", Value::Map(workers)),
            ("clients", Value::Map(clients)),
            ("memory", memory_dict(memory)),
            ("events", events),
        ]
        .into_iter()
        .filter(|(k, _)| !exclude.iter().any(|e| e == k))
        .map(|(k, v)| (k, plain(v)))
        .collect()
    }

    /// One task as Python's `TaskState._to_dict_no_nest` shows it.
    fn task_dict(&self, t: &Task, group: &str, prefix: &str, exclude: &[String]) -> Value {
        let error = t.error();
        // an erred task's `who_has` holds the workers it erred on (Python's
        // `erred_on`); nothing holds its result
        let erred = t.state == TaskState::Erred;
        let held: &[crate::ids::WorkerId] = if erred { &[] } else { &t.who_has };
        let text = |s: Option<&str>| s.map_or(Value::Nil, Value::str);
        let restrictions = t.restrictions();
        let workers_or_nil = |v: Vec<String>| {
            if v.is_empty() {
                Value::Nil
            } else {
                Value::Array(v.into_iter().map(Value::str).collect())
            }
        };
        let (hosts, workers) = restrictions
            .map(Restrictions::hosts_and_workers)
            .unwrap_or_default();
        let resources = restrictions
            .filter(|r| !r.resources.is_empty())
            .map_or(Value::Nil, |r| resources_map(&r.resources));
        dict(
            vec![
                ("key", t.key.to_value()),
                ("state", Value::str(t.state.as_str())),
                ("priority", t.priority.to_value()),
                ("run_id", Value::Int(t.run_id)),
                ("actor", Value::Bool(t.is_actor())),
                ("annotations", t.annotations().clone()),
                (
                    "dependencies",
                    self.task_reprs(t.dependencies.iter().copied()),
                ),
                ("dependents", self.task_reprs(t.dependents.iter().copied())),
                ("waiting_on", self.task_reprs(t.waiting_on.iter().copied())),
                ("waiters", self.task_reprs(t.waiters.iter().copied())),
                (
                    "who_has",
                    Value::Array(held.iter().map(|&w| self.worker_repr(w)).collect()),
                ),
                (
                    "erred_on",
                    if erred && !t.who_has.is_empty() {
                        Value::Array(
                            t.who_has
                                .iter()
                                .filter_map(|&w| self.worker_address(w))
                                .map(Value::str)
                                .collect(),
                        )
                    } else {
                        Value::Nil
                    },
                ),
                (
                    "who_wants",
                    Value::Array(t.who_wants.iter().map(|&c| self.client_repr(c)).collect()),
                ),
                (
                    "processing_on",
                    t.processing_on.map_or(Value::Nil, |w| self.worker_repr(w)),
                ),
                ("nbytes", Value::Int(t.nbytes)),
                (
                    "type",
                    self.typename_of_task(t).map_or(Value::Nil, Value::str),
                ),
                ("metadata", t.metadata().cloned().unwrap_or(Value::Nil)),
                ("group", Value::str(group)),
                ("group_key", Value::str(self.groups.name(t.group))),
                ("prefix", Value::str(prefix)),
                (
                    "has_lost_dependencies",
                    Value::Bool(t.has_lost_dependencies),
                ),
                ("retries", Value::Int(i64::from(t.retries()))),
                ("suspicious", Value::Int(i64::from(t.suspicious()))),
                (
                    "exception_blame",
                    t.exception_blame()
                        .filter(|&b| self.exists(b))
                        .map_or(Value::Nil, |b| self.task_repr(b)),
                ),
                // Python writes the repr of the serialized objects it keeps;
                // the texts below are what they say
                ("exception", serialized_repr(error.map(|e| &e.exception))),
                ("traceback", serialized_repr(error.map(|e| &e.traceback))),
                (
                    "exception_text",
                    text(error.map(|e| e.exception_text.as_str())),
                ),
                (
                    "traceback_text",
                    text(error.map(|e| e.traceback_text.as_str())),
                ),
                ("host_restrictions", workers_or_nil(hosts)),
                ("worker_restrictions", workers_or_nil(workers)),
                ("resource_restrictions", resources),
                (
                    "loose_restrictions",
                    Value::Bool(restrictions.is_some_and(|r| r.loose)),
                ),
            ],
            exclude,
        )
    }

    /// One worker as Python's `WorkerState._to_dict_no_nest` shows it.
    fn worker_dict(&self, w: &Worker, exclude: &[String]) -> Value {
        let m = w.memory();
        let mut processing: Vec<TaskId> = w.processing.iter().copied().collect();
        processing.sort_unstable();
        let mut long_running: Vec<TaskId> = w.long_running.iter().copied().collect();
        long_running.sort_unstable();
        dict(
            vec![
                ("address", Value::str(w.info.address.as_str())),
                ("name", w.info.name.clone()),
                ("host", Value::str(w.host.as_str())),
                ("status", Value::str(w.status.as_str())),
                ("nthreads", Value::Int(i64::from(w.info.nthreads))),
                ("memory_limit", Value::Int(w.info.memory_limit)),
                ("local_directory", w.info.local_directory.clone()),
                ("pid", Value::Int(w.info.pid)),
                ("nanny", w.info.nanny.clone()),
                ("services", w.info.services.clone()),
                ("server_id", Value::str(w.info.server_id.as_str())),
                ("extra", w.info.extra.clone()),
                ("metrics", w.info.metrics.clone()),
                ("last_seen", Value::Float(w.last_seen)),
                ("time_delay", Value::Float(w.time_delay)),
                // as in Python, the configured bandwidth, never updated
                ("bandwidth", Value::Float(self.config.bandwidth)),
                ("resources", resources_map(&w.info.resources)),
                ("used_resources", resources_map(&w.used_resources)),
                ("nbytes", Value::Int(w.nbytes)),
                ("occupancy", Value::Float(self.occupancy(w))),
                ("memory", memory_dict(m)),
                ("has_what", self.task_reprs(w.has_what.iter())),
                ("processing", self.task_reprs(processing.into_iter())),
                ("long_running", self.task_reprs(long_running.into_iter())),
                ("actors", self.task_reprs(self.actors_on(w.id).into_iter())),
                ("task_prefix_count", self.task_prefix_count(w)),
                (
                    "executing",
                    Value::Map(
                        w.executing
                            .iter()
                            .filter_map(|(key, seconds)| {
                                Some((self.task_repr(self.task_id(key)?), Value::Float(*seconds)))
                            })
                            .collect(),
                    ),
                ),
                (
                    "needs_what",
                    Value::Map(
                        w.needs_what
                            .iter()
                            .map(|(&t, &(n, _))| (self.task_repr(t), Value::Int(i64::from(n))))
                            .collect(),
                    ),
                ),
            ],
            exclude,
        )
    }
}

/// What Python's dump has for a `Serialized` exception or traceback it
/// keeps: the object's repr (without its memory address), or None.
fn serialized_repr(v: Option<&Value>) -> Value {
    match v {
        Some(v) if !v.is_nil() => Value::str("<distributed.protocol.serialize.Serialized object>"),
        _ => Value::Nil,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_tuple_keys_become_what_python_writes() {
        assert_eq!(bytes_repr(b"a'\\\x00\n"), r"b'a\'\\\x00\n'");
        let metrics = Value::Map(vec![(
            Value::Array(vec![Value::str("execute"), Value::str("x"), Value::Int(1)]),
            Value::Bin(bytes::Bytes::from_static(b"\x01")),
        )]);
        assert_eq!(
            plain(metrics),
            Value::Map(vec![(
                Value::str("['execute', 'x', 1]"),
                Value::str(r"b'\x01'")
            )])
        );
    }
}
