//! Read-mostly operations behind the scheduler's RPC handlers
//! (`who_has`, `ncores`, `identity`, `retry`, heartbeats, gather planning, ...).

use crate::ids::{ClientId, TaskId, WorkerId};
use crate::state::State;
use crate::task::TaskState;
use crate::transitions::Target;
use crate::worker::{Worker, WorkerStatus};
use dask_wire::{Key, Value};
use std::collections::BTreeMap;

/// [`State::bandwidth_report`]: the bandwidth estimates, owned, for a
/// report written away from the state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BandwidthReport {
    /// The estimate transfer costs use (bytes/s).
    pub overall: f64,
    /// `(receiving worker, sending worker, bytes/s)`, by name.
    pub workers: Vec<(String, String, f64)>,
    /// `(type name, bytes/s)`.
    pub types: Vec<(String, f64)>,
}

/// The heartbeat interval Dask asks of workers for a cluster of `n` workers.
pub fn heartbeat_interval(n: usize) -> f64 {
    match n {
        0..=10 => 0.5,
        11..=49 => 1.0,
        50..=199 => 2.0,
        _ => n as f64 / 200.0 + 1.0,
    }
}

fn str_list(v: Option<&Value>) -> Option<Vec<String>> {
    let v = v?;
    if v.is_nil() {
        return None;
    }
    Some(match v {
        Value::Str(s) => vec![s.to_string()],
        other => other
            .as_seq()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl State {
    fn selected_workers(&self, filter: Option<&Value>) -> Vec<&Worker> {
        match str_list(filter) {
            None => self.workers.values().collect(),
            Some(addrs) => addrs
                .iter()
                .filter_map(|a| self.worker_id(a).and_then(|id| self.workers.get(&id)))
                .collect(),
        }
    }

    /// `who_has`: `{key: [addresses]}` for the given keys (all if nil).
    pub fn who_has(&self, keys: Option<&[Key]>) -> Value {
        let ids: Vec<(Key, Option<TaskId>)> = match keys {
            Some(keys) => keys.iter().map(|k| (k.clone(), self.task_id(k))).collect(),
            None => self
                .task_ids
                .ids()
                .map(|id| (self.task(id).key.clone(), Some(id)))
                .collect(),
        };
        Value::Map(
            ids.into_iter()
                .map(|(k, id)| {
                    let addrs = id.map(|id| self.replica_addresses(id)).unwrap_or_default();
                    (k.to_value(), Value::Array(addrs))
                })
                .collect(),
        )
    }

    /// `has_what`: `{address: [keys]}`.
    pub fn has_what(&self, workers: Option<&Value>) -> Value {
        Value::Map(
            self.selected_workers(workers)
                .into_iter()
                .map(|w| {
                    let keys = w
                        .has_what
                        .iter()
                        .map(|id| self.task(id).key.to_value())
                        .collect();
                    (Value::str(w.info.address.as_str()), Value::Array(keys))
                })
                .collect(),
        )
    }

    /// `processing`: `{address: [keys]}`.
    pub fn processing(&self, workers: Option<&Value>) -> Value {
        Value::Map(
            self.selected_workers(workers)
                .into_iter()
                .map(|w| {
                    let keys = w
                        .processing
                        .iter()
                        .map(|id| self.task(*id).key.to_value())
                        .collect();
                    (Value::str(w.info.address.as_str()), Value::Array(keys))
                })
                .collect(),
        )
    }

    /// `ncores` / `ncores_running`: `{address: nthreads}`.
    pub fn ncores(&self, workers: Option<&Value>, running_only: bool) -> Value {
        Value::Map(
            self.selected_workers(workers)
                .into_iter()
                .filter(|w| !running_only || w.status == WorkerStatus::Running)
                .map(|w| {
                    (
                        Value::str(w.info.address.as_str()),
                        Value::Int(w.info.nthreads as i64),
                    )
                })
                .collect(),
        )
    }

    /// `nbytes` (Python's `get_nbytes`): `{key: nbytes}` for the tasks in
    /// memory, or for each of `keys` (-1 for one without a size yet, as
    /// Python's); with `summary` (the client's default) the sizes summed by
    /// `key_split` prefix. `Err` names a key this scheduler does not know
    /// (Python's `KeyError`).
    pub fn nbytes(&self, keys: Option<&[Key]>, summary: bool) -> Result<Value, String> {
        let mut sizes: Vec<(TaskId, i64)> = Vec::new();
        match keys {
            Some(keys) => {
                for k in keys {
                    let id = self.task_id(k).ok_or_else(|| k.name())?;
                    let t = self.task(id);
                    let size = if t.state == TaskState::Memory || t.nbytes > 0 {
                        t.nbytes
                    } else {
                        -1
                    };
                    sizes.push((id, size));
                }
            }
            None => sizes.extend(
                self.task_ids
                    .ids()
                    .filter(|&id| self.task(id).state == TaskState::Memory)
                    .map(|id| (id, self.task(id).nbytes)),
            ),
        }
        if !summary {
            return Ok(Value::Map(
                sizes
                    .into_iter()
                    .map(|(id, n)| (self.task(id).key.to_value(), Value::Int(n)))
                    .collect(),
            ));
        }
        let mut by_prefix: Vec<(u32, i64)> = Vec::new();
        for (id, n) in sizes {
            let p = self.task(id).prefix;
            match by_prefix.iter_mut().find(|(q, _)| *q == p) {
                Some((_, sum)) => *sum += n,
                None => by_prefix.push((p, n)),
            }
        }
        Ok(Value::Map(
            by_prefix
                .into_iter()
                .map(|(p, n)| {
                    let name = self.prefix_name(p).unwrap_or("");
                    (Value::str(name), Value::Int(n))
                })
                .collect(),
        ))
    }

    /// `get_runspec` (Python's `ReplayTaskScheduler`, behind
    /// `client.recreate_task_locally`): the key's run_spec as the client
    /// submitted it (a pickled `Task`), `Nil` for a key without one (scattered
    /// data). `Err` names a key this scheduler does not know (Python's
    /// `KeyError`).
    pub fn runspec_of(&self, key: &Key) -> Result<Value, String> {
        let id = self.task_id(key).ok_or_else(|| key.name())?;
        Ok(self
            .task(id)
            .run_spec
            .as_ref()
            .map_or(Value::Nil, |r| Value::Opaque(Box::new(r.to_opaque()))))
    }

    /// A task's failure as its worker sent it, for the `run_on_scheduler`
    /// stand-in's `TaskState.exception` and `.traceback`: `{"exception",
    /// "traceback"}`, both nil unless the task itself raised. `Err` names a
    /// key this scheduler does not know.
    pub fn error_of(&self, key: &Key) -> Result<Value, String> {
        let id = self.task_id(key).ok_or_else(|| key.name())?;
        let error = self.task(id).error();
        Ok(Value::map([
            (
                "exception",
                error.map_or(Value::Nil, |e| e.exception.clone()),
            ),
            (
                "traceback",
                error.map_or(Value::Nil, |e| e.traceback.clone()),
            ),
        ]))
    }

    /// `get_error_cause` (behind `client.recreate_error_locally`): the key
    /// blamed for the failure of the first of `keys` that failed, itself or
    /// through a dependency; `Nil` if none did.
    pub fn error_cause(&self, keys: &[Key]) -> Value {
        keys.iter()
            .filter_map(|k| self.task_id(k))
            .find_map(|id| self.task(id).exception_blame())
            .and_then(|blame| self.tasks.get(blame as usize)?.as_ref())
            .map_or(Value::Nil, |t| t.key.to_value())
    }

    /// `get_task_status`: `{key: state | nil}`.
    pub fn task_status(&self, keys: &[Key]) -> Value {
        Value::Map(
            keys.iter()
                .map(|k| {
                    let state = self
                        .task_state(k)
                        .map_or(Value::Nil, |s| Value::str(s.as_str()));
                    (k.to_value(), state)
                })
                .collect(),
        )
    }

    /// `get_task_prefix_states`: `{prefix: {memory, erred, released,
    /// processing, waiting}}` task counts, for the prefixes with any task in
    /// one of those states (what Python's dashboard polls).
    pub fn task_prefix_states(&self) -> Value {
        const SHOWN: [TaskState; 5] = [
            TaskState::Memory,
            TaskState::Erred,
            TaskState::Released,
            TaskState::Processing,
            TaskState::Waiting,
        ];
        let mut counts: BTreeMap<u32, [i64; 5]> = BTreeMap::new();
        for t in self.tasks.iter().flatten() {
            if let Some(i) = SHOWN.iter().position(|s| *s == t.state) {
                counts.entry(t.prefix).or_default()[i] += 1;
            }
        }
        Value::Map(
            counts
                .into_iter()
                .map(|(p, c)| {
                    let name = Value::str(self.prefix_name(p).unwrap_or(""));
                    let states = SHOWN
                        .iter()
                        .zip(c)
                        .map(|(s, n)| (Value::str(s.as_str()), Value::Int(n)))
                        .collect();
                    (name, Value::Map(states))
                })
                .collect(),
        )
    }

    /// `set_restrictions(worker={key: workers})`: replace the workers a
    /// task may run on (`None` or empty: any), keeping its resource
    /// restrictions, as Python's sets `worker_restrictions`. An error naming
    /// the key if the scheduler does not know it (Python's `KeyError`).
    pub fn set_worker_restrictions(
        &mut self,
        key: &Key,
        workers: Option<Vec<String>>,
    ) -> Result<(), String> {
        let id = self
            .task_id(key)
            .ok_or_else(|| crate::coordination::key_label(key))?;
        let mut r = self.task(id).restrictions().cloned().unwrap_or_default();
        r.workers = workers.unwrap_or_default();
        let r = (!r.is_empty()).then_some(r);
        if r.is_some() || self.task(id).extra.is_some() {
            self.task_mut(id).extra_mut().restrictions = r;
        }
        Ok(())
    }

    /// The `identity` entry of worker `id`, if known (what a cluster
    /// manager's `subscribe_worker_status` stream hears when it joins).
    pub fn worker_identity_of(&self, id: WorkerId) -> Option<Value> {
        self.workers.get(&id).map(|w| self.worker_identity(w))
    }

    /// The `identity` entry of one worker.
    pub fn worker_identity(&self, w: &Worker) -> Value {
        let mut entries = vec![
            ("type", Value::str("Worker")),
            // Python's `WorkerState.identity()` gives the name as the id
            ("id", w.info.name.clone()),
            ("host", Value::str(w.host.as_str())),
            (
                "resources",
                Value::Map(
                    w.info
                        .resources
                        .iter()
                        .map(|(k, v)| (Value::str(k.as_str()), Value::Float(*v)))
                        .collect(),
                ),
            ),
            ("local_directory", w.info.local_directory.clone()),
            ("name", w.info.name.clone()),
            ("nthreads", Value::Int(w.info.nthreads as i64)),
            ("memory_limit", Value::Int(w.info.memory_limit)),
            ("last_seen", Value::Float(w.last_seen)),
            ("services", w.info.services.clone()),
            ("metrics", w.info.metrics.clone()),
            ("status", Value::str(w.status.as_str())),
            ("nanny", w.info.nanny.clone()),
        ];
        let mut map = Value::map(entries.drain(..));
        if let Some(extra) = w.info.extra.as_map() {
            for (k, v) in extra {
                if let Some(name) = k.as_str() {
                    map.set(name, v.clone());
                }
            }
        }
        map
    }

    /// Worker identities keyed by address (`n` of them; all if negative).
    pub fn workers_identity(&self, n: i64) -> Value {
        let take = if n < 0 { usize::MAX } else { n as usize };
        Value::Map(
            self.workers
                .values()
                .take(take)
                .map(|w| (Value::str(w.info.address.as_str()), self.worker_identity(w)))
                .collect(),
        )
    }

    /// The cluster's memory reading `measure` names, as Python's
    /// `Scheduler.memory` (the sum of the workers' `MemoryState`s) has it:
    /// `process`, `managed`, `spilled`, `unmanaged_old`, `managed_total`,
    /// `unmanaged`, `unmanaged_recent` or `optimistic`. `None` for any other
    /// name. For `MemorySampler`.
    pub fn cluster_memory(&self, measure: &str) -> Option<i64> {
        crate::memory::WorkerMemory::sum(self.workers.values().map(|w| w.memory())).named(measure)
    }

    /// `(n_workers, total_threads, total_memory)` for `identity`.
    pub fn cluster_totals(&self) -> (usize, i64, i64) {
        let threads = self.workers.values().map(|w| w.info.nthreads as i64).sum();
        let memory = self.workers.values().map(|w| w.info.memory_limit).sum();
        (self.workers.len(), threads, memory)
    }

    /// Record a heartbeat (`sent_at`: the worker's clock when it sent it,
    /// its `now`). `None` if the worker is unknown (reply `missing`).
    pub fn heartbeat_worker(
        &mut self,
        address: &str,
        metrics: Option<Value>,
        sent_at: Option<f64>,
        now: f64,
    ) -> Option<f64> {
        let id = self.worker_id(address)?;
        self.workers.get_mut(&id)?.last_seen = now;
        self.observe_worker_clock(id, sent_at, now);
        if let Some(m) = metrics {
            self.workers.get_mut(&id)?.info.metrics = m;
            self.observe_worker_metrics(id, now);
        }
        Some(heartbeat_interval(self.workers.len()))
    }

    /// Python's `time_delay`: how far our clock is ahead of the worker's
    /// `sent_at` (left as it was when the worker sent none, or 0).
    pub(crate) fn observe_worker_clock(&mut self, id: WorkerId, sent_at: Option<f64>, now: f64) {
        let sent_at = sent_at.filter(|t| t.is_finite() && *t != 0.0);
        if let (Some(t), Some(w)) = (sent_at, self.workers.get_mut(&id)) {
            w.time_delay = now - t;
        }
    }

    /// What Python's `heartbeat_worker` learns from a worker's `metrics`,
    /// just stored (at registration too): the bandwidth estimates and the
    /// worker's unmanaged memory.
    pub(crate) fn observe_worker_metrics(&mut self, id: WorkerId, now: f64) {
        let n = self.workers.len();
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let m = &w.info.metrics;
        // unmanaged = process - managed, where managed excludes what was
        // spilled; floored at zero as nbytes and the heartbeat disagree
        // for a moment (Python's heartbeat_worker). Metrics without a
        // memory reading (Python's would raise on them) give none.
        if m.get("memory").and_then(Value::as_i64).is_some() {
            let (process, spilled_memory, _) = crate::memory::heartbeat_memory(m);
            let size = (process - w.nbytes + spilled_memory).max(0);
            w.unmanaged
                .record(now, size, self.config.recent_to_old_time);
        }
        let Some(bandwidth) = m.get("bandwidth") else {
            return;
        };
        // Python's `Scheduler.bandwidth`: each heartbeat moves it a 1/n-th
        // of the way to the worker's measured bandwidth
        let total = bandwidth.get("total").and_then(Value::as_f64);
        if let Some(total) = total.filter(|t| t.is_finite() && *t > 0.0) {
            let frac = 1.0 / n as f64;
            self.bandwidth = self.bandwidth * (1.0 - frac) + total * frac;
        }
        let known = &self.worker_by_addr;
        self.peer_bandwidth
            .observe(&w.info.address, bandwidth, n, |a| known.contains_key(a));
    }

    /// Python's `bandwidth_workers` as `(receiver, sender, bytes/s)`, sorted.
    pub fn bandwidth_workers(&self) -> Vec<(&str, &str, f64)> {
        self.peer_bandwidth.workers()
    }

    /// Python's `bandwidth_types` as `(type name, bytes/s)`, sorted.
    pub fn bandwidth_types(&self) -> Vec<(&str, f64)> {
        self.peer_bandwidth.types()
    }

    /// What Python's dashboard bandwidth charts (and so its performance
    /// report) show: the overall estimate, the pairs with a connected
    /// worker named by its name (else by its address), and the types.
    pub fn bandwidth_report(&self) -> BandwidthReport {
        let name = |address: &str| match self.worker_id(address) {
            Some(id) => self.workers[&id].name_str.clone(),
            None => address.to_string(),
        };
        BandwidthReport {
            overall: self.bandwidth,
            workers: self
                .bandwidth_workers()
                .into_iter()
                .map(|(to, from, bw)| (name(to), name(from), bw))
                .collect(),
            types: self
                .bandwidth_types()
                .into_iter()
                .map(|(t, bw)| (t.to_string(), bw))
                .collect(),
        }
    }

    /// Record what a worker's heartbeat says it is executing (`{key:
    /// seconds running}`), as Python's `heartbeat_worker` does: the
    /// worker's `executing` is replaced, and each known task's prefix
    /// learns how long its tasks run ([`State::add_exec_time`]). Keys the
    /// scheduler no longer knows are left out. Ignored for an unknown
    /// worker.
    pub fn record_executing(&mut self, address: &str, executing: Vec<(Key, f64)>) {
        let Some(w) = self.worker_id(address) else {
            return;
        };
        let mut known = Vec::with_capacity(executing.len());
        for (key, seconds) in executing {
            if let Some(id) = self.task_id(&key) {
                let prefix = self.task(id).prefix;
                self.add_exec_time(prefix, seconds);
                known.push((key, seconds));
            }
        }
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.executing = known;
        }
    }

    /// Workers silent for longer than `worker-ttl` (to be removed by the caller).
    pub fn expired_workers(&self, now: f64) -> Vec<WorkerId> {
        let Some(ttl) = self.config.worker_ttl else {
            return Vec::new();
        };
        let ttl = ttl.max(10.0 * heartbeat_interval(self.workers.len()));
        self.workers
            .values()
            .filter(|w| now - w.last_seen > ttl)
            .map(|w| w.id)
            .collect()
    }

    /// Queued root tasks reserved for the worker that runs their relatives
    /// (diagnostics and tests: the rest of the queue is shared).
    pub fn reserved_task_count(&self) -> usize {
        self.reserved_on.len()
    }

    /// True when nothing is running, queued or waiting for a worker.
    pub fn is_idle(&self) -> bool {
        self.workers.values().all(|w| w.processing.is_empty())
            && self.unrunnable.is_empty()
            && self.queued_len() == 0
    }

    /// Where to fetch each key for a gather: `{address: [keys]}`, plus keys
    /// that are not in memory anywhere.
    pub fn gather_plan(&self, keys: &[Key]) -> (BTreeMap<String, Vec<Key>>, Vec<Key>) {
        let mut plan: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        let mut missing = Vec::new();
        for key in keys {
            let holder = self.task_id(key).and_then(|id| {
                let t = self.task(id);
                if t.state != TaskState::Memory {
                    return None;
                }
                t.who_has
                    .iter()
                    .filter_map(|w| self.workers.get(w))
                    .min_by_key(|w| w.processing.len())
            });
            match holder {
                Some(w) => plan
                    .entry(w.info.address.clone())
                    .or_default()
                    .push(key.clone()),
                None => missing.push(key.clone()),
            }
        }
        (plan, missing)
    }

    /// Running worker addresses for scatter, sorted (Dask's round-robin order),
    /// optionally restricted to the given addresses, names or hosts.
    pub fn scatter_targets(&self, workers: Option<&Value>) -> Vec<String> {
        let running = self.running_workers();
        let mut out: Vec<String> = match str_list(workers) {
            None => running.map(|w| w.info.address.clone()).collect(),
            Some(specs) => running
                .filter(|w| {
                    specs
                        .iter()
                        .any(|s| *s == w.info.address || *s == w.name_str || *s == w.host)
                })
                .map(|w| w.info.address.clone())
                .collect(),
        };
        out.sort();
        out
    }

    /// Addresses for `broadcast`: the given workers/hosts, or all workers.
    pub fn broadcast_targets(&self, workers: Option<&Value>, hosts: Option<&Value>) -> Vec<String> {
        let workers = str_list(workers);
        let hosts = str_list(hosts);
        if workers.is_none() && hosts.is_none() {
            return self
                .workers
                .values()
                .map(|w| w.info.address.clone())
                .collect();
        }
        let mut out = Vec::new();
        for spec in workers.unwrap_or_default() {
            let resolved = self.resolve_workers(&spec);
            if resolved.is_empty() {
                out.push(spec);
            } else {
                out.extend(resolved);
            }
        }
        for host in hosts.unwrap_or_default() {
            out.extend(
                self.workers
                    .values()
                    .filter(|w| w.host == host)
                    .map(|w| w.info.address.clone()),
            );
        }
        out.sort();
        out.dedup();
        out
    }

    /// Workers whose stacks `call_stack` should fetch: those processing `keys`
    /// (following waiting tasks to their dependencies), or all workers.
    pub fn call_stack_targets(&self, keys: Option<&[Key]>) -> Vec<String> {
        let Some(keys) = keys else {
            return self
                .workers
                .values()
                .map(|w| w.info.address.clone())
                .collect();
        };
        let mut stack: Vec<TaskId> = keys.iter().filter_map(|k| self.task_id(k)).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = std::collections::BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let t = self.task(id);
            match t.state {
                TaskState::Waiting => stack.extend(t.dependencies.iter().copied()),
                TaskState::Processing => {
                    if let Some(w) = t.processing_on.and_then(|w| self.workers.get(&w)) {
                        out.insert(w.info.address.clone());
                    }
                }
                _ => {}
            }
        }
        out.into_iter().collect()
    }

    /// Nanny address of a worker, if it has one.
    pub fn nanny_of(&self, address: &str) -> Option<String> {
        let id = self.worker_id(address)?;
        self.workers[&id].info.nanny.as_str().map(str::to_string)
    }

    /// `retry`: rerun erred keys from their erred roots; returns all keys visited.
    pub fn retry(&mut self, _client: Option<ClientId>, keys: &[Key], now: f64) -> Vec<Key> {
        self.now = now;
        let mut stack: Vec<TaskId> = keys.iter().filter_map(|k| self.task_id(k)).collect();
        let mut seen: Vec<TaskId> = Vec::new();
        let mut roots = Vec::new();
        while let Some(id) = stack.pop() {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let erred_deps: Vec<TaskId> = self
                .task(id)
                .dependencies
                .iter()
                .copied()
                .filter(|d| self.task(*d).state == TaskState::Erred)
                .collect();
            if erred_deps.is_empty() {
                roots.push(id);
            } else {
                stack.extend(erred_deps);
            }
        }
        let visited = seen.iter().map(|id| self.task(*id).key.clone()).collect();
        // Like `stimulus_retry`, every root is recommended to run again. The
        // client resets its futures for all returned keys to pending, so a
        // root already in memory is recomputed (released, then waiting
        // because it is wanted) to be reported again.
        let recs: Vec<_> = roots
            .into_iter()
            .filter_map(|id| match self.task(id).state {
                TaskState::Erred => Some((id, Target::Waiting)),
                TaskState::Memory if self.task(id).run_spec.is_some() => {
                    Some((id, Target::Released))
                }
                _ => None,
            })
            .collect();
        self.transitions(recs);
        visited
    }

    /// Update a worker's resources (`set_resources`, Python's
    /// `add_resources`: the given quantities replace or join the worker's,
    /// the others stay) and retry parked tasks. `false` for an unknown worker.
    pub fn set_resources(&mut self, address: &str, resources: Vec<(String, f64)>) -> bool {
        let Some(id) = self.worker_id(address) else {
            return false;
        };
        if let Some(w) = self.workers.get_mut(&id) {
            for (name, quantity) in resources {
                match w.info.resources.iter_mut().find(|(n, _)| *n == name) {
                    Some(entry) => entry.1 = quantity,
                    None => w.info.resources.push((name, quantity)),
                }
            }
        }
        self.on_worker_running(id);
        true
    }

    /// All task ids in a given state (for tests and diagnostics).
    pub fn tasks_in_state(&self, state: TaskState) -> Vec<Key> {
        self.task_ids
            .ids()
            .filter(|id| self.task(*id).state == state)
            .map(|id| self.task(id).key.clone())
            .collect()
    }
}
