//! A read-only snapshot of the scheduler's tasks, workers and clients, for
//! the `run_on_scheduler` stand-in.
//!
//! Why: user code reads `dask_scheduler.tasks`, `.workers` and `.clients`
//! inside `run_on_scheduler` functions, preloads and scheduler plugins (to
//! count workers, list task states, find where a key lives). Those run in a
//! Python process beside this scheduler, which rebuilds Python-like
//! `TaskState`/`WorkerState` objects from this snapshot. Unlike the
//! cluster dump, whose cross references are `repr` strings, every task,
//! worker and client here carries its integer id (`i`) and refers to the
//! others by id, so the objects can point at each other as Python's do.
//! Tasks travel by field ([`TASK_FIELDS`]): a column for the fields every
//! task has, and only the values not at their default (empty, zero, false)
//! for the others, to keep a large graph's snapshot small and quick to
//! decode; the reader fills the defaults in.

use crate::dump::resources_map;
use crate::ids::TaskId;
use crate::state::State;
use crate::task::{Restrictions, Task, TaskState};
use crate::worker::Worker;
use dask_wire::Value;

/// Builds one object of the snapshot, leaving out default fields.
struct Fields(Vec<(Value, Value)>);

impl Fields {
    fn new(id: u32) -> Fields {
        Fields(vec![(Value::str("i"), Value::Int(i64::from(id)))])
    }

    /// Adds `name: value` unless the value is a default ([`or_nil`]).
    fn put(&mut self, name: &str, value: Value) {
        let value = or_nil(value);
        if !value.is_nil() {
            self.0.push((Value::str(name), value));
        }
    }

    /// Adds `name: value` even where it looks like a default (a worker
    /// named 0, as `LocalCluster` names its first).
    fn put_always(&mut self, name: &str, value: Value) {
        self.0.push((Value::str(name), value));
    }

    fn done(self) -> Value {
        Value::Map(self.0)
    }
}

/// A column of task values, or a sparse map of position to value, written
/// as msgpack as it fills: a snapshot of a million tasks never holds a
/// value per field per task at once.
struct Column {
    /// A 5-byte array or map header (its length filled in at the end:
    /// msgpack allows the long form for any length), then the values.
    body: Vec<u8>,
    len: usize,
}

impl Default for Column {
    fn default() -> Column {
        Column {
            body: vec![0; 5],
            len: 0,
        }
    }
}

impl Column {
    /// Appends `value` (after its position, for a sparse map). The values
    /// written here hold no pickled objects.
    fn push(&mut self, position: Option<i64>, value: &Value) {
        if let Some(n) = position {
            dask_wire::msgpack::write_int(&mut self.body, n);
        }
        dask_wire::msgpack::encode_with(value, &mut self.body, &mut |_, out| out.push(0xc0));
        self.len += 1;
    }

    /// Appends a value that `write` writes as msgpack (after its position,
    /// for a sparse map).
    fn push_with(&mut self, position: Option<i64>, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(n) = position {
            dask_wire::msgpack::write_int(&mut self.body, n);
        }
        write(&mut self.body);
        self.len += 1;
    }

    /// The column as a msgpack array (`0xdd`) or map (`0xdf`).
    fn finish(mut self, marker: u8) -> Value {
        self.body[0] = marker;
        self.body[1..5].copy_from_slice(&(self.len as u32).to_be_bytes());
        Value::Raw(self.body.into())
    }

    fn into_array(self) -> Value {
        self.finish(0xdd)
    }

    fn into_map(self) -> Value {
        self.finish(0xdf)
    }
}

/// The distinct `get_versions()` maps of the workers and clients, which
/// mostly share one environment: each is sent once, and a worker or client
/// names its map by position (nil where it sent none).
#[derive(Default)]
struct VersionsTable {
    values: Vec<Value>,
    by_bytes: rustc_hash::FxHashMap<Vec<u8>, i64>,
}

impl VersionsTable {
    /// The position of `versions` (added if new); `None` for an empty or
    /// missing map.
    fn index_of(&mut self, versions: &Value) -> Option<i64> {
        if versions.as_map().is_none_or(|m| m.is_empty()) {
            return None;
        }
        let bytes = dask_wire::msgpack::encode(versions);
        let next = self.values.len() as i64;
        let i = *self.by_bytes.entry(bytes).or_insert_with(|| {
            self.values.push(versions.clone());
            next
        });
        Some(i)
    }
}

/// Microseconds by action, as a map.
fn action_us(list: &[(Box<str>, u64)]) -> Value {
    Value::Map(
        list.iter()
            .map(|(action, us)| (Value::str(&**action), Value::Int(*us as i64)))
            .collect(),
    )
}

/// Ids as a msgpack array.
fn ids(ids: impl Iterator<Item = u32>) -> Value {
    Value::Array(ids.map(|i| Value::Int(i64::from(i))).collect())
}

fn text_list(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::str).collect())
}

/// The fields of a task. [`DENSE_TASK_FIELDS`] travel as columns, one
/// value per task in the order of the tasks; the others, mostly at their
/// default, as maps of a task's position to its value where that is not
/// the default. `group` is an index into the snapshot's `groups`: `[name,
/// prefix id (an index into its `prefixes`), tasks ever added to the group
/// (Python's len), {result type name: times a task of the group entered
/// memory with it} (Python's `_types`), `nbytes_total`, `_duration_us`,
/// `_all_durations_us` ({action: µs}), `start`, `stop`]`.
pub const TASK_FIELDS: [&str; 29] = [
    "i",
    "key",
    "state",
    "priority",
    "run_id",
    "dependencies",
    "dependents",
    "waiting_on",
    "waiters",
    "who_has",
    "who_wants",
    "processing_on",
    "nbytes",
    "group",
    "has_lost_dependencies",
    "retries",
    "suspicious",
    "actor",
    "annotations",
    "exception_blame",
    "exception_text",
    "traceback_text",
    "host_restrictions",
    "worker_restrictions",
    "resource_restrictions",
    "loose_restrictions",
    "type",
    "erred_on",
    "metadata",
];

// Positions in [`TASK_FIELDS`] (checked by a test).
const F_I: usize = 0;
const F_KEY: usize = 1;
const F_STATE: usize = 2;
const F_PRIORITY: usize = 3;
const F_RUN_ID: usize = 4;
const F_DEPENDENCIES: usize = 5;
const F_DEPENDENTS: usize = 6;
const F_WAITING_ON: usize = 7;
const F_WAITERS: usize = 8;
const F_WHO_HAS: usize = 9;
const F_WHO_WANTS: usize = 10;
const F_PROCESSING_ON: usize = 11;
const F_NBYTES: usize = 12;
const F_GROUP: usize = 13;
const F_HAS_LOST_DEPENDENCIES: usize = 14;
const F_RETRIES: usize = 15;
const F_SUSPICIOUS: usize = 16;
const F_ACTOR: usize = 17;
const F_ANNOTATIONS: usize = 18;
const F_EXCEPTION_BLAME: usize = 19;
const F_EXCEPTION_TEXT: usize = 20;
const F_TRACEBACK_TEXT: usize = 21;
const F_HOST_RESTRICTIONS: usize = 22;
const F_WORKER_RESTRICTIONS: usize = 23;
const F_RESOURCE_RESTRICTIONS: usize = 24;
const F_LOOSE_RESTRICTIONS: usize = 25;
const F_TYPE: usize = 26;
const F_ERRED_ON: usize = 27;
const F_METADATA: usize = 28;

/// `n` ids written as a msgpack array.
fn write_ids(out: &mut Vec<u8>, n: usize, ids: impl Iterator<Item = u32>) {
    dask_wire::msgpack::write_array_len(out, n);
    for i in ids {
        dask_wire::msgpack::write_int(out, i64::from(i));
    }
}

/// The fields every task has a value of.
pub const DENSE_TASK_FIELDS: [&str; 6] = ["i", "key", "state", "priority", "nbytes", "group"];

/// A value, or nil where it is a default (nil, false, 0, empty).
fn or_nil(value: Value) -> Value {
    let default = match &value {
        Value::Bool(false) | Value::Int(0) => true,
        Value::Array(items) => items.is_empty(),
        Value::Map(entries) => entries.is_empty(),
        Value::Str(s) => s.is_empty(),
        _ => false,
    };
    if default {
        Value::Nil
    } else {
        value
    }
}

impl State {
    /// `{"prefixes", "n_tasks", "bandwidth", "bandwidth_workers" (`[to,
    /// from, bytes/s]` rows), "bandwidth_types", "task_count", "unrunnable"
    /// (`[task id, since]` rows),
    /// "task_columns", "task_sparse", "groups", "workers", "clients",
    /// "versions"}`: every
    /// task's fields by [`TASK_FIELDS`] (columns and
    /// sparse maps, as that describes), every worker and client as a map
    /// with its id `i`, fields named as Python's `TaskState`, `WorkerState`
    /// and `ClientState` name them, other objects by id; a worker's or
    /// client's `versions` is a position in `versions`, the distinct
    /// `get_versions()` maps. Without
    /// `with_tasks`, no tasks, and no task ids in the workers and clients:
    /// what reading `workers` costs stays small with a large graph.
    pub fn snapshot(&self, with_tasks: bool) -> Value {
        let dense = TASK_FIELDS.map(|f| DENSE_TASK_FIELDS.contains(&f));
        let mut columns: Vec<Column> = (0..TASK_FIELDS.len()).map(|_| Column::default()).collect();
        // annotations and metadata may hold pickled objects, which only the
        // connection can write: kept as values
        let mut annotations: Vec<(Value, Value)> = Vec::new();
        let mut metadata: Vec<(Value, Value)> = Vec::new();
        let mut group_index: rustc_hash::FxHashMap<u32, i64> = Default::default();
        let mut groups = Vec::new();
        let mut count = 0i64;
        let all = if with_tasks { &self.tasks[..] } else { &[] };
        for (i, t) in all.iter().enumerate() {
            let Some(t) = t else { continue };
            let next = groups.len() as i64;
            let group = *group_index.entry(t.group).or_insert_with(|| {
                let totals = self.groups.totals(t.group);
                groups.push(Value::Array(vec![
                    Value::str(self.groups.name(t.group)),
                    Value::Int(i64::from(t.prefix)),
                    Value::Int(self.groups.size(t.group) as i64),
                    Value::Map(
                        self.groups
                            .types(t.group)
                            .iter()
                            .map(|&(name, n)| {
                                (
                                    Value::str(self.result_types.name(name)),
                                    Value::Int(i64::from(n)),
                                )
                            })
                            .collect(),
                    ),
                    Value::Int(totals.nbytes_total),
                    Value::Int(totals.duration_us as i64),
                    action_us(&totals.all_durations_us),
                    Value::Float(totals.start),
                    Value::Float(totals.stop),
                ]));
                next
            });
            self.write_common_fields(i as TaskId, t, group, count, &mut columns);
            // the rarely set fields live in the task's extra: built as
            // values only where there is one
            if t.extra.is_some() {
                for (f, value) in self.rare_fields(t) {
                    if value.is_nil() {
                        // at its default: left out
                    } else if f == F_ANNOTATIONS {
                        annotations.push((Value::Int(count), value));
                    } else if f == F_METADATA {
                        metadata.push((Value::Int(count), value));
                    } else {
                        columns[f].push(Some(count), &value);
                    }
                }
            }
            count += 1;
        }
        let mut task_columns = Vec::new();
        let mut task_sparse = Vec::new();
        for (f, column) in columns.into_iter().enumerate() {
            let name = Value::str(TASK_FIELDS[f]);
            if dense[f] {
                task_columns.push((name, column.into_array()));
            } else if f == F_ANNOTATIONS {
                task_sparse.push((name, Value::Map(std::mem::take(&mut annotations))));
            } else if f == F_METADATA {
                task_sparse.push((name, Value::Map(std::mem::take(&mut metadata))));
            } else {
                task_sparse.push((name, column.into_map()));
            }
        }
        let mut versions = VersionsTable::default();
        let workers = self
            .workers
            .values()
            .map(|w| {
                let mut f = self.worker_snapshot(w, with_tasks);
                if let Some(i) = versions.index_of(&w.info.versions) {
                    f.put_always("versions", Value::Int(i));
                }
                f.done()
            })
            .collect();
        let clients = self
            .clients
            .iter()
            .map(|(id, cl)| {
                let mut f = Fields::new(id.0);
                f.put("client_key", Value::str(cl.name.as_str()));
                f.put("last_seen", Value::Float(cl.last_seen));
                if let Some(i) = versions.index_of(&cl.versions) {
                    f.put_always("versions", Value::Int(i));
                }
                if with_tasks {
                    f.put("wants_what", ids(cl.wants_what.iter()));
                }
                f.done()
            })
            .collect();
        Value::map([
            ("prefixes", self.prefixes_snapshot()),
            ("n_tasks", Value::Int(self.n_tasks as i64)),
            ("bandwidth", Value::Float(self.bandwidth)),
            (
                "bandwidth_workers",
                Value::Array(
                    self.bandwidth_workers()
                        .into_iter()
                        .map(|(to, from, bw)| {
                            Value::Array(vec![Value::str(to), Value::str(from), Value::Float(bw)])
                        })
                        .collect(),
                ),
            ),
            (
                "bandwidth_types",
                Value::Map(
                    self.bandwidth_types()
                        .into_iter()
                        .map(|(t, bw)| (Value::str(t), Value::Float(bw)))
                        .collect(),
                ),
            ),
            ("task_count", Value::Int(count)),
            // Python's `unrunnable`: the tasks in `no-worker`, by id, with
            // when each got there (empty without the tasks)
            (
                "unrunnable",
                Value::Array(if with_tasks {
                    self.unrunnable
                        .iter()
                        .map(|(id, since)| {
                            Value::Array(vec![Value::Int(i64::from(*id)), Value::Float(*since)])
                        })
                        .collect()
                } else {
                    Vec::new()
                }),
            ),
            ("task_columns", Value::Map(task_columns)),
            ("task_sparse", Value::Map(task_sparse)),
            ("groups", Value::Array(groups)),
            ("workers", Value::Array(workers)),
            ("clients", Value::Array(clients)),
            ("versions", Value::Array(versions.values)),
        ])
    }

    /// Every task prefix ever seen, by id, as Python keeps them: `[name,
    /// average duration or nil, {state: times a task entered it}
    /// (Python's `state_counts`), times a task was suspicious, the longest
    /// execution a heartbeat reported or nil, {action: µs} (Python's
    /// `_all_durations_us`)]`.
    fn prefixes_snapshot(&self) -> Value {
        let none = crate::stats::PrefixCounters::default();
        Value::Array(
            self.prefixes
                .iter()
                .enumerate()
                .map(|(p, prefix)| {
                    let counters = self.stats.prefixes.get(p).unwrap_or(&none);
                    let entered = crate::stats::ALL_TASK_STATES
                        .iter()
                        .map(|&st| (st, counters.state_totals[crate::stats::state_index(st)]))
                        .filter(|&(_, n)| n > 0)
                        .map(|(st, n)| (Value::str(st.as_str()), Value::Int(n as i64)))
                        .collect();
                    Value::Array(vec![
                        Value::str(prefix.name.as_str()),
                        prefix.duration_average.map_or(Value::Nil, Value::Float),
                        Value::Map(entered),
                        Value::Int(counters.suspicious as i64),
                        prefix.max_exec_time.map_or(Value::Nil, Value::Float),
                        action_us(&counters.all_durations_us),
                    ])
                })
                .collect(),
        )
    }

    /// Writes task `t`'s fields that are not in its extra into their
    /// columns (the dense ones always, the others where not at their
    /// default), straight as msgpack: a snapshot of many tasks builds no
    /// value per field per task.
    fn write_common_fields(
        &self,
        id: TaskId,
        t: &Task,
        group: i64,
        position: i64,
        columns: &mut [Column],
    ) {
        use dask_wire::msgpack::{write_int, write_str};
        let at = Some(position);
        columns[F_I].push_with(None, |o| write_int(o, i64::from(id)));
        columns[F_KEY].push_with(None, |o| o.extend_from_slice(t.key.as_bytes()));
        columns[F_STATE].push_with(None, |o| write_str(o, t.state.as_str()));
        columns[F_PRIORITY].push_with(None, |o| t.priority.write_msgpack(o));
        // -1 until first sent to a worker: Python's None
        if t.run_id >= 0 {
            columns[F_RUN_ID].push_with(at, |o| write_int(o, t.run_id));
        }
        for (f, set) in [
            (F_DEPENDENCIES, &t.dependencies),
            (F_DEPENDENTS, &t.dependents),
            (F_WAITING_ON, &t.waiting_on),
            (F_WAITERS, &t.waiters),
        ] {
            if !set.is_empty() {
                columns[f].push_with(at, |o| write_ids(o, set.len(), set.iter().copied()));
            }
        }
        if t.state == TaskState::Erred {
            // an erred task's `who_has` holds the workers it erred on
            // (which keep it until told to forget it): Python's `erred_on`
            // (None for a task that inherited its failure while waiting, as
            // Python's); nothing holds its result
            if !t.who_has.is_empty() {
                columns[F_ERRED_ON].push_with(at, |o| {
                    let addresses: Vec<&str> = t
                        .who_has
                        .iter()
                        .filter_map(|&w| self.worker_address(w))
                        .collect();
                    dask_wire::msgpack::write_array_len(o, addresses.len());
                    for a in addresses {
                        write_str(o, a);
                    }
                });
            }
        } else if !t.who_has.is_empty() {
            columns[F_WHO_HAS].push_with(at, |o| {
                write_ids(o, t.who_has.len(), t.who_has.iter().map(|w| w.0))
            });
        }
        if !t.who_wants.is_empty() {
            columns[F_WHO_WANTS].push_with(at, |o| {
                write_ids(o, t.who_wants.len(), t.who_wants.iter().map(|c| c.0))
            });
        }
        if let Some(w) = t.processing_on {
            columns[F_PROCESSING_ON].push_with(at, |o| write_int(o, i64::from(w.0)));
        }
        // -1 until the task has a result, and 0 is a size: always sent
        columns[F_NBYTES].push_with(None, |o| write_int(o, t.nbytes));
        columns[F_GROUP].push_with(None, |o| write_int(o, group));
        if t.has_lost_dependencies {
            columns[F_HAS_LOST_DEPENDENCIES].push_with(at, |o| o.push(0xc3));
        }
        if let Some(name) = self.typename_of_task(t) {
            columns[F_TYPE].push_with(at, |o| write_str(o, name));
        }
    }

    /// Task `t`'s fields that live in its extra, by position in
    /// [`TASK_FIELDS`], nil where at the default.
    fn rare_fields(&self, t: &Task) -> [(usize, Value); 12] {
        let error = t.error();
        let text = |s: Option<&str>| s.map_or(Value::Nil, |s| or_nil(Value::str(s)));
        let r = t.restrictions();
        let (hosts, workers) = r.map(Restrictions::hosts_and_workers).unwrap_or_default();
        let blame = t.exception_blame().filter(|&b| self.exists(b));
        [
            (F_RETRIES, or_nil(Value::Int(i64::from(t.retries())))),
            (F_SUSPICIOUS, or_nil(Value::Int(i64::from(t.suspicious())))),
            (F_ACTOR, or_nil(Value::Bool(t.is_actor()))),
            (F_ANNOTATIONS, or_nil(t.annotations().clone())),
            (
                F_EXCEPTION_BLAME,
                blame.map_or(Value::Nil, |b| Value::Int(i64::from(b))),
            ),
            (
                F_EXCEPTION_TEXT,
                text(error.map(|e| e.exception_text.as_str())),
            ),
            (
                F_TRACEBACK_TEXT,
                text(error.map(|e| e.traceback_text.as_str())),
            ),
            (F_HOST_RESTRICTIONS, or_nil(text_list(hosts))),
            (F_WORKER_RESTRICTIONS, or_nil(text_list(workers))),
            (
                F_RESOURCE_RESTRICTIONS,
                r.map_or(Value::Nil, |r| or_nil(resources_map(&r.resources))),
            ),
            (
                F_LOOSE_RESTRICTIONS,
                or_nil(Value::Bool(r.is_some_and(|r| r.loose))),
            ),
            (F_METADATA, t.metadata().cloned().unwrap_or(Value::Nil)),
        ]
    }

    fn worker_snapshot(&self, w: &Worker, with_tasks: bool) -> Fields {
        let m = w.memory();
        let mut f = Fields::new(w.id.0);
        f.put("address", Value::str(w.info.address.as_str()));
        f.put_always("name", w.info.name.clone());
        f.put("host", Value::str(w.host.as_str()));
        f.put("status", Value::str(w.status.as_str()));
        f.put("nthreads", Value::Int(i64::from(w.info.nthreads)));
        f.put("memory_limit", Value::Int(w.info.memory_limit));
        f.put("local_directory", w.info.local_directory.clone());
        f.put("pid", Value::Int(w.info.pid));
        f.put("nanny", w.info.nanny.clone());
        f.put("services", w.info.services.clone());
        f.put("server_id", Value::str(w.info.server_id.as_str()));
        f.put("extra", w.info.extra.clone());
        f.put("metrics", w.info.metrics.clone());
        f.put("last_seen", Value::Float(w.last_seen));
        f.put("time_delay", Value::Float(w.time_delay));
        f.put("task_prefix_count", self.task_prefix_count(w));
        f.put("resources", resources_map(&w.info.resources));
        f.put("used_resources", resources_map(&w.used_resources));
        f.put("nbytes", Value::Int(w.nbytes));
        f.put("occupancy", Value::Float(self.occupancy(w)));
        f.put(
            "memory",
            Value::map([
                ("process", Value::Int(m.process)),
                ("managed", Value::Int(m.managed)),
                ("spilled", Value::Int(m.spilled)),
                ("unmanaged_old", Value::Int(m.unmanaged_old)),
            ]),
        );
        if with_tasks {
            f.put("has_what", ids(w.has_what.iter()));
            f.put("processing", ids(w.processing.iter().copied()));
            f.put("long_running", ids(w.long_running.iter().copied()));
            f.put(
                "executing",
                Value::Array(
                    w.executing
                        .iter()
                        .filter_map(|(key, seconds)| {
                            let id = self.task_id(key)?;
                            Some(Value::Array(vec![
                                Value::Int(i64::from(id)),
                                Value::Float(*seconds),
                            ]))
                        })
                        .collect(),
                ),
            );
            f.put("actors", ids(self.actors_on(w.id).into_iter()));
            f.put(
                "needs_what",
                Value::Array(
                    w.needs_what
                        .iter()
                        .map(|(&t, &(n, _))| {
                            Value::Array(vec![Value::Int(i64::from(t)), Value::Int(i64::from(n))])
                        })
                        .collect(),
                ),
            );
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_positions_name_their_fields() {
        let positions = [
            (F_I, "i"),
            (F_KEY, "key"),
            (F_STATE, "state"),
            (F_PRIORITY, "priority"),
            (F_RUN_ID, "run_id"),
            (F_DEPENDENCIES, "dependencies"),
            (F_DEPENDENTS, "dependents"),
            (F_WAITING_ON, "waiting_on"),
            (F_WAITERS, "waiters"),
            (F_WHO_HAS, "who_has"),
            (F_WHO_WANTS, "who_wants"),
            (F_PROCESSING_ON, "processing_on"),
            (F_NBYTES, "nbytes"),
            (F_GROUP, "group"),
            (F_HAS_LOST_DEPENDENCIES, "has_lost_dependencies"),
            (F_RETRIES, "retries"),
            (F_SUSPICIOUS, "suspicious"),
            (F_ACTOR, "actor"),
            (F_ANNOTATIONS, "annotations"),
            (F_EXCEPTION_BLAME, "exception_blame"),
            (F_EXCEPTION_TEXT, "exception_text"),
            (F_TRACEBACK_TEXT, "traceback_text"),
            (F_HOST_RESTRICTIONS, "host_restrictions"),
            (F_WORKER_RESTRICTIONS, "worker_restrictions"),
            (F_RESOURCE_RESTRICTIONS, "resource_restrictions"),
            (F_LOOSE_RESTRICTIONS, "loose_restrictions"),
            (F_TYPE, "type"),
            (F_ERRED_ON, "erred_on"),
            (F_METADATA, "metadata"),
        ];
        assert_eq!(positions.len(), TASK_FIELDS.len());
        for (f, name) in positions {
            assert_eq!(TASK_FIELDS[f], name);
        }
    }

    #[test]
    fn written_ids_are_the_values_encoding() {
        for ids in [
            vec![],
            vec![0u32],
            vec![1, 127, 128, 255, 256, 65_536, u32::MAX],
        ] {
            let mut direct = Vec::new();
            write_ids(&mut direct, ids.len(), ids.iter().copied());
            let as_value = Value::Array(ids.iter().map(|&i| Value::Int(i64::from(i))).collect());
            assert_eq!(direct, dask_wire::msgpack::encode(&as_value), "{ids:?}");
        }
    }
}
