//! Scale-down support: which workers to close (`workers_to_close`), how many
//! workers the load calls for (`adaptive_target`), when the scheduler is idle
//! (`check_idle`) and graceful retirement of workers.
//!
//! Graceful retirement follows `Scheduler.retire_workers` and the Active Memory
//! Manager's `RetireWorker` policy: the retiring worker gets the
//! `closing_gracefully` status (no new tasks), every key whose only safe
//! replica is on it is replicated to another running worker with
//! `acquire-replicas` (the recipient with the least memory), and the worker is
//! closed or removed only once the recipients confirmed with `add-keys`. If a
//! key has nowhere to go, the retirement is abandoned and the worker keeps
//! running: data is never lost. The async side (polling, time limits, closing)
//! lives in the server; this module is the pure bookkeeping.

use crate::ids::{TaskId, WorkerId};
use crate::messages;
use crate::state::State;
use crate::task::TaskState;
use crate::transitions::Target;
use crate::worker::WorkerStatus;
use dask_wire::Value;
use std::collections::{BTreeMap, HashMap};

/// Seconds after which an unconfirmed replica request is made again, possibly
/// to another recipient (the Active Memory Manager's default interval).
pub const REPLICA_RETRY_INTERVAL: f64 = 2.0;

/// The worker attribute `workers_to_close` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerAttribute {
    /// The contact address (Dask's default).
    #[default]
    Address,
    /// The worker's name (what the Dask Kubernetes operator asks for).
    Name,
}

impl WorkerAttribute {
    /// Parse the `attribute=` argument; `None` for attributes not supported.
    pub fn parse(s: &str) -> Option<WorkerAttribute> {
        match s {
            "address" => Some(WorkerAttribute::Address),
            "name" => Some(WorkerAttribute::Name),
            _ => None,
        }
    }
}

/// Arguments of `workers_to_close` (all optional, as in Dask).
#[derive(Debug, Clone, Default)]
pub struct CloseOptions {
    /// Keep `memory_ratio` times as much memory as the data held (default 2
    /// when neither `n` nor `target` is given).
    pub memory_ratio: Option<f64>,
    /// Number of workers to close.
    pub n: Option<i64>,
    /// Minimum number of workers to keep.
    pub minimum: Option<i64>,
    /// Number of workers to have after closing.
    pub target: Option<i64>,
    /// What to report for each worker.
    pub attribute: WorkerAttribute,
}

/// Where a retirement stands after [`State::retire_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireProgress {
    /// Nothing unique is left on the worker (or it is gone): close it.
    Done,
    /// Some unique key has no worker to go to: abandon the retirement.
    NoRecipients,
    /// This many keys are still being replicated away.
    Pending(usize),
}

/// Bookkeeping of one worker being retired.
#[derive(Debug, Clone)]
struct Retirement {
    /// Status to restore if the retirement is abandoned.
    prev_status: WorkerStatus,
    /// Identity at the start, reported if the worker disappears meanwhile.
    identity: Value,
    /// Replications asked for and not yet confirmed: key → (recipient, when).
    pending: HashMap<TaskId, (WorkerId, f64)>,
}

/// Retirement and idleness state kept in [`State`].
#[derive(Debug, Default)]
pub struct RetireState {
    retiring: BTreeMap<WorkerId, Retirement>,
    idle_since: Option<f64>,
    idle_counter: u64,
    /// Graphs received and still being materialized (Python's
    /// `_active_graph_updates`): the scheduler is not idle meanwhile.
    active_graph_updates: u32,
}

impl State {
    /// Python's `Scheduler.workers_to_close`: workers that can be closed at
    /// low cost (idle, holding little data), keeping enough memory for the
    /// data held (`memory_ratio`) or closing exactly `n` / down to `target`.
    pub fn workers_to_close(&self, o: &CloseOptions) -> Vec<String> {
        self.workers_to_close_ids(o)
            .into_iter()
            .map(|w| {
                let w = &self.workers[&w];
                match o.attribute {
                    WorkerAttribute::Address => w.info.address.clone(),
                    WorkerAttribute::Name => w.name_str.clone(),
                }
            })
            .collect()
    }

    /// [`State::workers_to_close`] as the RPC answers it: names keep their
    /// type (an int name stays an int), like Python's `getattr(ws, "name")`.
    pub fn workers_to_close_reply(&self, o: &CloseOptions) -> Value {
        Value::Array(
            self.workers_to_close_ids(o)
                .into_iter()
                .map(|w| {
                    let w = &self.workers[&w];
                    match (o.attribute, &w.info.name) {
                        (WorkerAttribute::Address, _) | (WorkerAttribute::Name, Value::Nil) => {
                            Value::str(w.info.address.as_str())
                        }
                        (WorkerAttribute::Name, name) => name.clone(),
                    }
                })
                .collect(),
        )
    }

    fn workers_to_close_ids(&self, o: &CloseOptions) -> Vec<WorkerId> {
        let total_workers = self.workers.len() as i64;
        let mut n = o.n;
        let mut target = o.target;
        let mut memory_ratio = o.memory_ratio;
        if target.is_some() && n.is_none() {
            n = target.map(|t| total_workers - t);
        }
        if let Some(k) = n {
            let k = k.max(0);
            n = Some(k);
            target = Some(total_workers - k);
        }
        if n.is_none() && memory_ratio.is_none() {
            memory_ratio = Some(2.0);
        }
        if n.unwrap_or(0) == 0 && self.workers.values().all(|w| !w.processing.is_empty()) {
            return Vec::new();
        }
        // Workers running seceded tasks (worker_client) are never closed: the
        // tasks would restart from scratch elsewhere; nor are those taking
        // part in a running P2P shuffle (Python's `valid_workers_downscaling`),
        // which would restart it.
        let valid: Vec<&crate::worker::Worker> = self
            .workers
            .values()
            .filter(|w| w.long_running.is_empty() && !self.p2p_participant(&w.info.address))
            .collect();
        let mut limit: i64 = valid.iter().map(|w| w.info.memory_limit).sum();
        let total: i64 = valid.iter().map(|w| w.nbytes).sum();
        // Python sorts by (is_idle, -bytes) and pops from the end: idle workers
        // holding the least data go first (ties: the latest registered).
        let mut order = valid.clone();
        order.sort_by_key(|w| (w.processing.is_empty(), -w.nbytes));
        let mut to_close = Vec::new();
        let mut n_remain = total_workers;
        while let Some(w) = order.pop() {
            if n.is_none() && !w.processing.is_empty() {
                break;
            }
            if let Some(min) = o.minimum.filter(|m| *m != 0) {
                if n_remain - 1 < min {
                    break;
                }
            }
            limit -= w.info.memory_limit;
            let by_count = n.is_some() && n_remain > target.unwrap_or(0);
            let by_memory = memory_ratio.is_some_and(|r| limit as f64 >= r * total as f64);
            if by_count || by_memory {
                to_close.push(w.id);
                n_remain -= 1;
            } else {
                break;
            }
        }
        to_close
    }

    /// Estimated seconds of work assigned to all workers (seceded tasks excluded).
    fn total_occupancy(&self) -> f64 {
        self.workers
            .values()
            .flat_map(|w| w.processing.iter().filter(|t| !w.long_running.contains(t)))
            .map(|&t| self.estimated_duration(t))
            .sum()
    }

    /// Python's `Scheduler.adaptive_target`: the number of workers the current
    /// load calls for, so that the work takes about `target_duration` seconds
    /// (more workers if over 60% of the cluster's memory is used; fewer, as
    /// [`State::workers_to_close`] allows, when there is little to do).
    pub fn adaptive_target(&self, target_duration: f64) -> usize {
        let target_duration = if target_duration > 0.0 {
            target_duration
        } else {
            5.0
        };
        let mut queued_occupancy: f64 = self
            .queued
            .iter()
            .map(|(_, t)| t)
            .chain(self.reserved_on.keys().copied())
            .chain(self.unrunnable.keys().copied())
            .take(100)
            .map(|t| self.estimated_duration(t))
            .sum();
        let mut tasks_ready = self.queued_len() + self.unrunnable.len();
        if tasks_ready > 100 {
            queued_occupancy *= tasks_ready as f64 / 100.0;
        }
        let mut cpu =
            ((self.total_occupancy() + queued_occupancy) / target_duration).ceil() as usize;
        // Avoid a few long tasks asking for many cores.
        let mut stopped = false;
        for w in self.workers.values() {
            if tasks_ready > cpu {
                stopped = true;
                break;
            }
            tasks_ready += w.processing.len();
        }
        if !stopped {
            cpu = cpu.min(tasks_ready);
        }
        let n_workers = self.workers.len();
        if n_workers > 0 {
            let nthreads: u64 = self.workers.values().map(|w| w.info.nthreads as u64).sum();
            cpu = (cpu as f64 / nthreads.max(1) as f64 * n_workers as f64).ceil() as usize;
        }
        if (!self.unrunnable.is_empty() || self.queued_len() > 0) && n_workers == 0 {
            cpu = cpu.max(1);
        }
        let limit: i64 = self.workers.values().map(|w| w.info.memory_limit).sum();
        let used: i64 = self.workers.values().map(|w| w.nbytes).sum();
        let memory = if limit > 0 && used as f64 > 0.6 * limit as f64 {
            2 * n_workers
        } else {
            0
        };
        let target = memory.max(cpu);
        if target >= n_workers {
            target
        } else {
            n_workers - self.workers_to_close(&CloseOptions::default()).len()
        }
    }

    /// A graph arrived and is being materialized outside the core.
    pub fn graph_update_started(&mut self) {
        self.retire.active_graph_updates += 1;
    }

    /// A graph's materialization ended (added to the state, or failed).
    pub fn graph_update_finished(&mut self) {
        let r = &mut self.retire;
        r.active_graph_updates = r.active_graph_updates.saturating_sub(1);
    }

    /// Python's `Scheduler.check_idle`: the time since which nothing has
    /// happened (no transition, no graph being materialized, nothing queued,
    /// waiting for a worker or processing), or `None` while busy. A change of
    /// the transition counter since the previous call counts as activity.
    pub fn check_idle(&mut self, now: f64) -> Option<f64> {
        let r = &mut self.retire;
        if self.transition_counter != r.idle_counter {
            r.idle_counter = self.transition_counter;
            r.idle_since = None;
            return None;
        }
        if r.active_graph_updates > 0 {
            r.idle_since = None;
            return None;
        }
        if !self.queued.is_empty()
            || !self.reserved_on.is_empty()
            || !self.unrunnable.is_empty()
            || self.workers.values().any(|w| !w.processing.is_empty())
        {
            r.idle_since = None;
            return None;
        }
        Some(*r.idle_since.get_or_insert(now))
    }

    /// Resolve worker names (compared as text, like Python's `str(ws.name)`)
    /// to addresses of registered workers.
    pub fn addresses_of_names(&self, names: &[String]) -> Vec<String> {
        self.workers
            .values()
            .filter(|w| names.contains(&w.name_str))
            .map(|w| w.info.address.clone())
            .collect()
    }

    /// Whether `w` is being retired.
    pub fn is_retiring(&self, w: WorkerId) -> bool {
        self.retire.retiring.contains_key(&w)
    }

    /// Start retiring `w`: it gets (and is told) the `closing_gracefully`
    /// status so that it receives no new tasks. Returns false for an unknown
    /// worker; a worker already being retired stays as it is.
    pub fn start_retirement(&mut self, w: WorkerId, stimulus_id: &str) -> bool {
        if self.retire.retiring.contains_key(&w) {
            return true;
        }
        let Some(worker) = self.workers.get_mut(&w) else {
            return false;
        };
        let prev_status = worker.status;
        worker.status = WorkerStatus::ClosingGracefully;
        self.refresh_slot_index(w);
        self.release_reservations(w);
        let identity = self.worker_identity(&self.workers[&w]);
        self.retire.retiring.insert(
            w,
            Retirement {
                prev_status,
                identity,
                pending: HashMap::new(),
            },
        );
        self.push_worker(
            w,
            messages::worker_status_change(WorkerStatus::ClosingGracefully.as_str(), stimulus_id),
        );
        true
    }

    /// Worker `o` holds replicas that survive the retirement of others.
    fn is_safe_holder(&self, o: WorkerId) -> bool {
        !self.retire.retiring.contains_key(&o)
            && self
                .workers
                .get(&o)
                .is_some_and(|w| matches!(w.status, WorkerStatus::Running | WorkerStatus::Paused))
    }

    /// Keys in memory on `w` with no replica on a worker that stays.
    fn unique_keys(&self, w: WorkerId) -> Vec<TaskId> {
        let Some(worker) = self.workers.get(&w) else {
            return Vec::new();
        };
        let mut keys: Vec<TaskId> = worker
            .has_what
            .iter()
            .filter(|&t| {
                let task = self.task(t);
                task.state == TaskState::Memory
                    && !task
                        .who_has
                        .iter()
                        .any(|&o| o != w && self.is_safe_holder(o))
            })
            .collect();
        keys.sort_unstable();
        keys
    }

    /// One round of the `RetireWorker` policy for `w`: ask recipients to
    /// acquire the keys only `w` holds (again, to the then best recipient, for
    /// requests unconfirmed for [`REPLICA_RETRY_INTERVAL`]) and report whether
    /// `w` can be closed.
    pub fn retire_step(&mut self, w: WorkerId, now: f64, stimulus_id: &str) -> RetireProgress {
        self.now = now;
        if !self.workers.contains_key(&w) || !self.retire.retiring.contains_key(&w) {
            return RetireProgress::Done;
        }
        let actors = self.actors_on(w);
        if !actors.is_empty() {
            // Python's `RetireWorker` refuses too: an actor cannot be moved
            let addr = self.worker_address(w).unwrap_or("?").to_string();
            let keys: Vec<String> = actors
                .iter()
                .map(|&t| self.task(t).key.to_string())
                .collect();
            tracing::warn!(
                "Tried retiring worker {addr}, but it holds actor(s) {keys:?}, which can't be \
                 moved. The worker will not be retired."
            );
            return RetireProgress::NoRecipients;
        }
        let unique = self.unique_keys(w);
        if unique.is_empty() {
            return RetireProgress::Done;
        }
        // Candidate recipients: running, not retiring; least memory first,
        // counting what this round already sends them.
        let mut candidates: Vec<(WorkerId, i64)> = self
            .workers
            .values()
            .filter(|o| {
                o.id != w
                    && o.status == WorkerStatus::Running
                    && !self.retire.retiring.contains_key(&o.id)
            })
            .map(|o| (o.id, o.nbytes))
            .collect();
        let mut plan: BTreeMap<WorkerId, Vec<TaskId>> = BTreeMap::new();
        let pending = self.retire.retiring[&w].pending.clone();
        let mut new_pending = HashMap::new();
        for &t in &unique {
            if let Some(&(rec, since)) = pending.get(&t) {
                if now - since < REPLICA_RETRY_INTERVAL && candidates.iter().any(|(c, _)| *c == rec)
                {
                    new_pending.insert(t, (rec, since));
                    continue;
                }
            }
            let holders = &self.task(t).who_has;
            let Some(best) = candidates
                .iter_mut()
                .filter(|(c, _)| !holders.contains(c))
                .min_by_key(|(c, bytes)| (*bytes, *c))
            else {
                let addr = self.worker_address(w).unwrap_or("?").to_string();
                tracing::warn!(
                    "Tried retiring worker {addr}, but some keys could not be moved as there \
                     are no suitable workers to receive them. The worker will not be retired."
                );
                return RetireProgress::NoRecipients;
            };
            best.1 += self.task(t).nbytes.max(0);
            plan.entry(best.0).or_default().push(t);
            new_pending.insert(t, (best.0, now));
        }
        for (rec, keys) in plan {
            let who_has = keys
                .iter()
                .map(|&t| {
                    (
                        self.task(t).key.to_value(),
                        Value::Array(self.replica_addresses(t)),
                    )
                })
                .collect();
            let nbytes = keys
                .iter()
                .map(|&t| (self.task(t).key.to_value(), Value::Int(self.task(t).nbytes)))
                .collect();
            self.push_worker(
                rec,
                messages::acquire_replicas(Value::Map(who_has), Value::Map(nbytes), stimulus_id),
            );
        }
        if let Some(r) = self.retire.retiring.get_mut(&w) {
            r.pending = new_pending;
        }
        RetireProgress::Pending(unique.len())
    }

    /// Number of keys in memory on `w` (for the polling interval).
    pub fn held_keys(&self, w: WorkerId) -> usize {
        self.workers.get(&w).map_or(0, |w| w.has_what.len())
    }

    /// Finish retiring `w` once [`State::retire_step`] said `Done`: with
    /// `close`, tell it to close; with `remove`, forget it now (its processing
    /// tasks are rescheduled elsewhere without counting as a failure, as for an
    /// expected departure). Returns the worker's identity for the reply.
    pub fn finish_retirement(&mut self, w: WorkerId, close: bool, remove: bool, now: f64) -> Value {
        self.now = now;
        let entry = self.retire.retiring.remove(&w);
        let Some(worker) = self.workers.get(&w) else {
            return entry.map_or(Value::Nil, |r| r.identity);
        };
        let identity = self.worker_identity(worker);
        let address = worker.info.address.clone();
        let mut processing: Vec<TaskId> = worker.processing.iter().copied().collect();
        if close {
            self.push_worker(w, messages::close_worker("scheduler-remove-worker"));
        }
        if remove {
            processing.sort_unstable();
            self.transitions(processing.into_iter().map(|t| (t, Target::Released)));
            self.remove_worker(w, now);
            tracing::info!("Retired worker {address}");
        }
        identity
    }

    /// Abandon retiring `w` (no recipients, or out of time): ask it to go
    /// back to its previous status; it confirms with `worker-status-change`.
    /// Returns its identity.
    pub fn abort_retirement(&mut self, w: WorkerId, stimulus_id: &str) -> Value {
        let entry = self.retire.retiring.remove(&w);
        let prev = entry
            .as_ref()
            .map_or(WorkerStatus::Running, |r| r.prev_status);
        match self.workers.get(&w) {
            Some(worker) => {
                let identity = self.worker_identity(worker);
                tracing::warn!(
                    "Could not retire worker {}: unique data could not be moved to any other \
                     worker ({stimulus_id})",
                    worker.info.address
                );
                self.push_worker(
                    w,
                    messages::worker_status_change(prev.as_str(), stimulus_id),
                );
                identity
            }
            None => entry.map_or(Value::Nil, |r| r.identity),
        }
    }
}
