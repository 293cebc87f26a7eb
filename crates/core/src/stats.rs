//! Counters the scheduler keeps for observability (Prometheus `/metrics`,
//! the JSON routes and the status page).
//!
//! Everything here is updated on the hot path with integer/float additions
//! keyed by ids the state already has (prefix ids, worker ids): no strings
//! per task. Gauges that describe the *current* state (tasks by state, bytes
//! in memory) are not kept incrementally but computed on demand by
//! [`State::metrics_snapshot`], which walks the task arena once per scrape.

use crate::ids::WorkerId;
use crate::state::State;
use crate::task::TaskState;
use crate::worker::WorkerStatus;
use dask_wire::Value;
use std::collections::VecDeque;

/// All task states, in the order of `distributed.scheduler.ALL_TASK_STATES`
/// used by the exporter (index = [`state_index`]).
pub const ALL_TASK_STATES: [TaskState; 8] = [
    TaskState::Released,
    TaskState::Waiting,
    TaskState::NoWorker,
    TaskState::Queued,
    TaskState::Processing,
    TaskState::Memory,
    TaskState::Erred,
    TaskState::Forgotten,
];

/// Position of `s` in [`ALL_TASK_STATES`].
pub fn state_index(s: TaskState) -> usize {
    match s {
        TaskState::Released => 0,
        TaskState::Waiting => 1,
        TaskState::NoWorker => 2,
        TaskState::Queued => 3,
        TaskState::Processing => 4,
        TaskState::Memory => 5,
        TaskState::Erred => 6,
        TaskState::Forgotten => 7,
    }
}

/// Dask's work-stealing cost multipliers (`WorkStealing.cost_multipliers`):
/// level `i` is the label `cost_multiplier` of the stealing metrics.
pub const STEAL_COST_MULTIPLIERS: [f64; 15] = [
    1.0, 1.03125, 1.0625, 1.125, 1.25, 1.5, 2.0, 3.0, 5.0, 9.0, 17.0, 33.0, 65.0, 129.0, 257.0,
];

/// How many task-stream entries are kept (oldest dropped first).
pub const TASK_STREAM_CAPACITY: usize = 10_000;

/// Cumulative counters of one task prefix.
#[derive(Debug, Clone, Default)]
pub struct PrefixCounters {
    /// Times a task of this prefix was processing on a worker that died.
    pub suspicious: u64,
    /// Seconds of `compute` reported in `startstops`.
    pub compute_seconds: f64,
    /// Seconds of `transfer` reported in `startstops`.
    pub transfer_seconds: f64,
    /// Times a task of this prefix entered each state (by [`state_index`]).
    pub state_totals: [u64; 8],
    /// Microseconds of every action reported in `startstops`, by action
    /// (Python's `TaskPrefix._all_durations_us`, which, unlike its other
    /// totals, keeps what its removed groups added).
    pub all_durations_us: Vec<(Box<str>, u64)>,
}

/// One entry of the task stream: which prefix ran where, when.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStreamEntry {
    /// Sequence number (monotonic, for "entries since N").
    pub seq: u64,
    /// Task prefix id (see [`State::prefix_name`]).
    pub prefix: u32,
    /// The worker (resolve with [`State::worker_address`]; entries of
    /// departed workers no longer resolve). An id, not its address, so the
    /// hot path does not allocate per finished task.
    pub worker: WorkerId,
    /// The `startstops` action (`compute`, `transfer`, `disk-read`,
    /// `disk-write`, else `other`).
    pub action: &'static str,
    /// Start (epoch seconds, worker clock).
    pub start: f64,
    /// Stop (epoch seconds, worker clock).
    pub stop: f64,
}

/// Scheduler-wide observability counters.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Workers ever registered.
    pub workers_added: u64,
    /// Workers ever removed.
    pub workers_removed: u64,
    /// Client connections ever added (not the fire-and-forget pseudo-client).
    pub clients_added: u64,
    /// Client connections ever removed.
    pub clients_removed: u64,
    /// Per prefix, indexed by prefix id (grown on first use).
    pub prefixes: Vec<PrefixCounters>,
    /// Steal requests per cost-multiplier level.
    pub steal_request_count: [u64; 15],
    /// Summed cost (seconds) of steal requests per level.
    pub steal_request_cost: [f64; 15],
    /// Recent task-stream entries, oldest first.
    pub task_stream: VecDeque<TaskStreamEntry>,
    /// Sequence number of the next task-stream entry.
    pub task_stream_next: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            workers_added: 0,
            workers_removed: 0,
            clients_added: 0,
            clients_removed: 0,
            prefixes: Vec::new(),
            steal_request_count: [0; 15],
            steal_request_cost: [0.0; 15],
            task_stream: VecDeque::new(),
            task_stream_next: 0,
        }
    }
}

impl Stats {
    /// The counters of prefix `p`, created on first use.
    pub fn prefix_mut(&mut self, p: u32) -> &mut PrefixCounters {
        let i = p as usize;
        if self.prefixes.len() <= i {
            self.prefixes.resize_with(i + 1, PrefixCounters::default);
        }
        &mut self.prefixes[i]
    }

    /// Counters of prefix `p` (zeros if none recorded yet).
    pub fn prefix(&self, p: u32) -> PrefixCounters {
        self.prefixes.get(p as usize).cloned().unwrap_or_default()
    }

    /// Record a task of prefix `p` entering `state`.
    #[inline]
    pub fn state_entered(&mut self, p: u32, state: TaskState) {
        self.prefix_mut(p).state_totals[state_index(state)] += 1;
    }

    /// Append a task-stream entry, dropping the oldest beyond capacity.
    pub fn push_task_stream(
        &mut self,
        prefix: u32,
        worker: WorkerId,
        action: &str,
        start: f64,
        stop: f64,
    ) {
        if self.task_stream.len() >= TASK_STREAM_CAPACITY {
            self.task_stream.pop_front();
        }
        self.task_stream.push_back(TaskStreamEntry {
            seq: self.task_stream_next,
            prefix,
            worker,
            action: match action {
                "compute" => "compute",
                "transfer" => "transfer",
                "disk-read" => "disk-read",
                "disk-write" => "disk-write",
                _ => "other",
            },
            start,
            stop,
        });
        self.task_stream_next += 1;
    }
}

/// Per-prefix numbers of a [`MetricsSnapshot`].
#[derive(Debug, Clone, Default)]
pub struct PrefixSnapshot {
    /// Prefix name (`inc`, `sum-aggregate`, ...).
    pub name: String,
    /// Tasks currently in each state (by [`state_index`]; forgotten is cumulative).
    pub states: [u64; 8],
    /// Bytes of results in memory (each key counted once).
    pub nbytes_in_memory: i64,
    /// Cumulative counters.
    pub counters: PrefixCounters,
    /// The duration estimate (s): measured, or the configured preset;
    /// `None` while unknown.
    pub duration_average: Option<f64>,
}

impl PrefixSnapshot {
    /// Whether the prefix has live tasks or any counted state since the
    /// last restart: Python's exporter lists only such prefixes (it forgets
    /// all of them on `restart`).
    pub fn has_history(&self) -> bool {
        self.states
            .iter()
            .chain(&self.counters.state_totals)
            .any(|&n| n > 0)
    }
}

/// One worker as the status page and the worker listing show it.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// Contact address.
    pub address: String,
    /// Name (as a string).
    pub name: String,
    /// Status (`running`, `paused`, ...).
    pub status: &'static str,
    /// Threads.
    pub nthreads: u32,
    /// Memory limit in bytes (0 = none).
    pub memory_limit: i64,
    /// Process memory reported by the last heartbeat (bytes), if any.
    pub memory: i64,
    /// Bytes of results held.
    pub nbytes: i64,
    /// Tasks processing on it.
    pub processing: usize,
    /// Results held.
    pub in_memory: usize,
    /// Estimated seconds of work assigned.
    pub occupancy: f64,
    /// Declared resources and how much is in use: `(name, total, used)`.
    pub resources: Vec<(String, f64, f64)>,
    /// GPU facts from the worker's startup info (`extra.gpu`: name,
    /// memory-total), if any.
    pub gpu: Option<Value>,
    /// GPU metrics from the last heartbeat (`metrics.gpu`: utilization,
    /// memory-used), if any.
    pub gpu_metrics: Option<Value>,
    /// Last time it was heard from (epoch seconds).
    pub last_seen: f64,
    /// Services (e.g. `dashboard` port).
    pub services: Value,
    /// Nanny address or nil.
    pub nanny: Value,
}

/// Everything `/metrics`, `/json/*` and the status page read, taken in one
/// pass on the event loop.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Connected clients (without fire-and-forget).
    pub clients: usize,
    /// Cumulative client connections added / removed.
    pub clients_added: u64,
    /// See `clients_added`.
    pub clients_removed: u64,
    /// Cumulative workers added / removed.
    pub workers_added: u64,
    /// See `workers_added`.
    pub workers_removed: u64,
    /// Running workers with fewer tasks than threads.
    pub workers_idle: usize,
    /// Running workers neither idle nor saturated.
    pub workers_partially_saturated: usize,
    /// Running workers with more tasks than threads and much pending work.
    pub workers_saturated: usize,
    /// Paused workers.
    pub workers_paused: usize,
    /// Workers neither running nor paused (closing, closing_gracefully, init).
    pub workers_retiring: usize,
    /// Tasks in each state over all prefixes (by [`state_index`]); for
    /// `forgotten`, those of task groups that still have live tasks.
    pub tasks: [u64; 8],
    /// Live task groups.
    pub task_groups: usize,
    /// Per prefix, in prefix-id order.
    pub prefixes: Vec<PrefixSnapshot>,
    /// Workers the current load asks for (`adaptive_target`).
    pub desired_workers: usize,
    /// Steal requests / cost per level (see [`STEAL_COST_MULTIPLIERS`]).
    pub steal_request_count: [u64; 15],
    /// See `steal_request_count`.
    pub steal_request_cost: [f64; 15],
    /// Bytes of results held, all workers.
    pub bytes_in_memory: i64,
    /// Total threads.
    pub total_threads: u64,
    /// Workers.
    pub workers: Vec<WorkerSnapshot>,
    /// Tasks with an exception blame (erred themselves or by a dependency).
    pub erred_blamed: u64,
    /// Tasks waiting on dependencies.
    pub waiting_on_deps: u64,
    /// Tasks other tasks wait on.
    pub with_waiters: u64,
    /// Distinct worker hosts.
    pub hosts: usize,
    /// Tasks with no worker able to run them.
    pub unrunnable: usize,
    /// Tasks the scheduler holds.
    pub task_count: usize,
    /// `distributed.Semaphore`s and `Lock`s, by name.
    pub semaphores: Vec<crate::semaphores::SemaphoreSnapshot>,
}

impl State {
    /// Observability counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Name of a task prefix by id.
    pub fn prefix_name(&self, id: u32) -> Option<&str> {
        self.prefixes.get(id as usize).map(|p| p.name.as_str())
    }

    /// Task-stream entries with `seq >= since`, at most `limit` of the newest.
    pub fn task_stream_since(&self, since: u64, limit: usize) -> Vec<TaskStreamEntry> {
        let s = &self.stats.task_stream;
        let first = s.partition_point(|e| e.seq < since);
        let start = first.max(s.len().saturating_sub(limit));
        s.range(start..).cloned().collect()
    }

    /// Record task `id` entering `state` in the per-prefix state totals
    /// (Python's `TaskPrefix.state_counts`).
    #[inline]
    pub(crate) fn count_state_as(&mut self, id: crate::ids::TaskId, state: TaskState) {
        let p = self.task(id).prefix;
        self.stats.state_entered(p, state);
    }

    /// Record a `task-finished`'s `startstops` (`[{action, start, stop}]`):
    /// per-prefix compute and transfer seconds, the group's and prefix's
    /// durations by action (Python's `TaskGroup.add_duration`) and
    /// task-stream entries;
    /// returns the first `compute` entry's `stop - start` (the task's
    /// measured duration).
    pub(crate) fn record_startstops(
        &mut self,
        id: crate::ids::TaskId,
        w: WorkerId,
        list: &[crate::finished::StartStop],
    ) -> Option<f64> {
        let prefix = self.task(id).prefix;
        let group = self.task(id).group;
        let mut compute = None;
        for ss in list {
            let (action, start, stop) = (ss.action.as_str(), ss.start, ss.stop);
            let d = (stop - start).max(0.0);
            self.groups.add_duration(group, action, start, stop);
            let c = self.stats.prefix_mut(prefix);
            crate::taskgroups::add_action_us(
                &mut c.all_durations_us,
                action,
                crate::taskgroups::duration_us(start, stop),
            );
            match action {
                "compute" => {
                    c.compute_seconds += d;
                    compute = compute.or(Some(stop - start));
                }
                "transfer" => c.transfer_seconds += d,
                _ => {}
            }
            self.stats.push_task_stream(prefix, w, action, start, stop);
        }
        compute
    }

    /// Record a steal request for `id` (Dask's `steal_time_ratio` level and cost).
    pub(crate) fn record_steal(&mut self, id: crate::ids::TaskId) {
        let t = self.task(id);
        let compute = self.estimated_duration(id);
        let level = if t.dependencies.is_empty() {
            0
        } else {
            let nbytes: i64 = t
                .dependencies
                .iter()
                .map(|d| self.task(*d).nbytes.max(0))
                .sum();
            let transfer = nbytes as f64 / self.bandwidth + 0.001;
            if compute > 0.0 {
                ((transfer / compute).log2() + 6.0).round().clamp(1.0, 14.0) as usize
            } else {
                14
            }
        };
        self.stats.steal_request_count[level] += 1;
        self.stats.steal_request_cost[level] += compute;
    }

    /// Take everything the observability surfaces show, in one arena walk.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snap = MetricsSnapshot {
            clients: self.client_count(),
            clients_added: self.stats.clients_added,
            clients_removed: self.stats.clients_removed,
            workers_added: self.stats.workers_added,
            workers_removed: self.stats.workers_removed,
            steal_request_count: self.stats.steal_request_count,
            steal_request_cost: self.stats.steal_request_cost,
            // Python's exporter calls `adaptive_target()` with the default
            // `distributed.adaptive.target-duration` of 5 s.
            desired_workers: self.adaptive_target(5.0),
            ..Default::default()
        };
        snap.prefixes = self
            .prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| PrefixSnapshot {
                name: p.name.clone(),
                counters: self.stats.prefix(i as u32),
                duration_average: p.duration_average,
                ..Default::default()
            })
            .collect();
        for t in self.tasks.iter().flatten() {
            let i = state_index(t.state);
            snap.tasks[i] += 1;
            snap.erred_blamed += u64::from(t.exception_blame().is_some());
            snap.waiting_on_deps += u64::from(!t.waiting_on.is_empty());
            snap.with_waiters += u64::from(!t.waiters.is_empty());
            if let Some(p) = snap.prefixes.get_mut(t.prefix as usize) {
                p.states[i] += 1;
                if t.state == TaskState::Memory {
                    p.nbytes_in_memory += t.nbytes.max(0);
                }
            }
        }
        // Forgotten tasks are gone from the arena. Per prefix the count is
        // cumulative; the total is, like Python's exporter, the forgotten
        // tasks of task groups that still have live tasks.
        let f = state_index(TaskState::Forgotten);
        for p in &mut snap.prefixes {
            p.states[f] = p.counters.state_totals[f];
        }
        snap.tasks[f] = self.groups.forgotten_in_live_groups();
        snap.task_groups = self.groups.live_count();
        snap.task_count = self.task_count();
        snap.semaphores = self.semaphore_snapshots();
        snap.unrunnable = self.unrunnable.len();
        snap.hosts = self
            .workers
            .values()
            .map(|w| w.host.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        let total_threads: u64 = self.workers.values().map(|w| w.info.nthreads as u64).sum();
        let total_occupancy: f64 = self.workers.values().map(|w| self.occupancy(w)).sum();
        snap.total_threads = total_threads;
        for w in self.workers.values() {
            snap.bytes_in_memory += w.nbytes;
            match w.status {
                WorkerStatus::Running => {
                    let p = w.processing.len();
                    let nc = w.info.nthreads.max(1) as usize;
                    if p < nc {
                        snap.workers_idle += 1;
                    } else {
                        let pending = if p > nc {
                            self.occupancy(w) * (p - nc) as f64 / (p * nc) as f64
                        } else {
                            0.0
                        };
                        let avg = if total_threads > 0 {
                            total_occupancy / total_threads as f64
                        } else {
                            0.0
                        };
                        if pending > 0.4 && pending > 1.9 * avg {
                            snap.workers_saturated += 1;
                        } else {
                            snap.workers_partially_saturated += 1;
                        }
                    }
                }
                WorkerStatus::Paused => snap.workers_paused += 1,
                _ => snap.workers_retiring += 1,
            }
            let memory = w
                .info
                .metrics
                .get("memory")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let resources = w
                .info
                .resources
                .iter()
                .map(|(n, total)| {
                    let used = w
                        .used_resources
                        .iter()
                        .find(|(u, _)| u == n)
                        .map_or(0.0, |(_, v)| *v);
                    (n.clone(), *total, used)
                })
                .collect();
            snap.workers.push(WorkerSnapshot {
                address: w.info.address.clone(),
                name: w.name_str.clone(),
                status: w.status.as_str(),
                nthreads: w.info.nthreads,
                memory_limit: w.info.memory_limit,
                memory,
                nbytes: w.nbytes,
                processing: w.processing.len(),
                in_memory: w.has_what.len(),
                occupancy: self.occupancy(w),
                resources,
                gpu: w.info.extra.get("gpu").filter(|v| !v.is_nil()).cloned(),
                gpu_metrics: w.info.metrics.get("gpu").filter(|v| !v.is_nil()).cloned(),
                last_seen: w.last_seen,
                services: w.info.services.clone(),
                nanny: w.info.nanny.clone(),
            });
        }
        snap
    }
}
