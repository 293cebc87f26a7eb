//! What the scheduler knows about one worker.

use crate::ids::{TaskId, WorkerId};
use dask_wire::Value;
use rustc_hash::{FxHashMap, FxHashSet};

/// The worker statuses the scheduler distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Registered but not yet `running` (`init`).
    Init,
    /// Accepting tasks.
    Running,
    /// Under memory pressure: no new tasks.
    Paused,
    /// Retiring: no new tasks.
    ClosingGracefully,
    /// Shutting down.
    Closing,
}

impl WorkerStatus {
    /// Parse a status string from `worker-status-change` / `register-worker`.
    pub fn parse(s: &str) -> Option<WorkerStatus> {
        Some(match s {
            "init" | "undefined" | "created" | "starting" => WorkerStatus::Init,
            "running" => WorkerStatus::Running,
            "paused" => WorkerStatus::Paused,
            "closing_gracefully" => WorkerStatus::ClosingGracefully,
            "closing" | "closed" | "failed" => WorkerStatus::Closing,
            _ => return None,
        })
    }

    /// The status string Dask uses.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Init => "init",
            WorkerStatus::Running => "running",
            WorkerStatus::Paused => "paused",
            WorkerStatus::ClosingGracefully => "closing_gracefully",
            WorkerStatus::Closing => "closing",
        }
    }
}

/// The fields of `register-worker` the scheduler keeps.
#[derive(Debug, Clone)]
pub struct WorkerRegistration {
    /// Contact address, the worker's identity (`tcp://host:port`).
    pub address: String,
    /// Unique name (str or int rendered as text).
    pub name: Value,
    /// Threads.
    pub nthreads: u32,
    /// Memory limit in bytes (0 = none).
    pub memory_limit: i64,
    /// Declared resources (`--resources GPU=1`).
    pub resources: Vec<(String, f64)>,
    /// Status at registration (normally `init`).
    pub status: WorkerStatus,
    /// `services` map (e.g. dashboard port).
    pub services: Value,
    /// Nanny address, if any.
    pub nanny: Value,
    /// Local directory.
    pub local_directory: Value,
    /// Process id.
    pub pid: i64,
    /// `server_id` (`Worker-<uuid>`).
    pub server_id: String,
    /// Startup `extra` map (e.g. `gpu` info), merged into the identity.
    pub extra: Value,
    /// Last metrics map.
    pub metrics: Value,
    /// Package versions.
    pub versions: Value,
    /// The worker's clock when it sent the registration (its `now`), for
    /// [`Worker::time_delay`].
    pub sent_at: Option<f64>,
}

impl WorkerRegistration {
    /// A worker at `address` with `nthreads` threads and defaults for the
    /// rest (named by its address, status `init`, no memory limit, no
    /// resources): for tests, benches and embedders that register workers
    /// without a `register-worker` message.
    pub fn new(address: &str, nthreads: u32) -> Self {
        WorkerRegistration {
            address: address.to_string(),
            name: Value::str(address),
            nthreads,
            memory_limit: 0,
            resources: Vec::new(),
            status: WorkerStatus::Init,
            services: Value::Map(vec![]),
            nanny: Value::Nil,
            local_directory: Value::Nil,
            pid: 1,
            server_id: format!("Worker-{address}"),
            extra: Value::Map(vec![]),
            metrics: Value::Map(vec![]),
            versions: Value::Map(vec![]),
            sent_at: None,
        }
    }
}

/// One connected worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Stable id.
    pub id: WorkerId,
    /// Registration data.
    pub info: WorkerRegistration,
    /// Host part of the address.
    pub host: String,
    /// The address as an encoded msgpack str, for the `who_has` lists of
    /// `compute-task` (a reference instead of a copy per message).
    pub(crate) address_msgpack: bytes::Bytes,
    /// Name rendered as a string (for restrictions and uniqueness).
    pub name_str: String,
    /// Current status.
    pub status: WorkerStatus,
    /// Tasks assigned to it.
    pub processing: FxHashSet<TaskId>,
    /// Processing tasks that seceded from the thread pool (`long-running`):
    /// they no longer take a thread or a root-task slot.
    pub long_running: FxHashSet<TaskId>,
    /// Tasks whose results it holds.
    pub has_what: crate::taskidset::TaskIdSet,
    /// Queued root tasks reserved for it, best priority first: siblings of
    /// root tasks it runs, which it takes before the shared queue
    /// (`State::reserve_family`). Empty unless it is running.
    pub(crate) reserved: std::collections::BTreeSet<(crate::task::Priority, TaskId)>,
    /// Root-task slots (`ceil(worker-saturation × nthreads)`), fixed at registration.
    pub task_slots: usize,
    /// This worker's key in `State::slot_index` while it is there (running
    /// with a free root-task slot): the bits of `processing / threads`.
    pub(crate) slot_key: Option<u64>,
    /// Processing tasks per prefix id, seceded ones excluded (Python's
    /// `task_prefix_count`): occupancy is derived from these and the prefixes'
    /// *current* duration estimates, so it never drifts as estimates change.
    pub prefix_counts: FxHashMap<u32, u32>,
    /// Inputs of its processing tasks that it does not hold yet, with how
    /// many of those tasks need each and the size counted when first needed
    /// (Python's `needs_what`; the size is kept so that the network
    /// occupancy cannot drift if the input is recomputed with another size).
    pub needs_what: FxHashMap<TaskId, (u32, i64)>,
    /// Bytes of `needs_what` (Python's `_network_occ`), added to occupancy
    /// as transfer time.
    pub network_occ: i64,
    /// Sum of `nbytes` of results held.
    pub nbytes: i64,
    /// Resources booked by processing tasks.
    pub used_resources: Vec<(String, f64)>,
    /// Time of the last heartbeat or message.
    pub last_seen: f64,
    /// Unmanaged memory over the `recent-to-old-time` window (heartbeats).
    pub unmanaged: crate::memory::UnmanagedHistory,
    /// The keys its last heartbeat said were executing, with how long
    /// each had run (s): Python's `WorkerState.executing`, which user code
    /// reads through the `run_on_scheduler` stand-in.
    pub executing: Vec<(dask_wire::Key, f64)>,
    /// How far the scheduler's clock was ahead of the worker's when its
    /// last heartbeat (or registration) arrived, transit included (s;
    /// Python's `WorkerState.time_delay`, 0 until a message says).
    pub time_delay: f64,
    /// Its packages' slot in `State::package_sets`, if it sent versions.
    pub(crate) package_set: Option<u32>,
}

impl Worker {
    /// Its memory readings (Python's `WorkerState.memory`): process and
    /// spilled bytes from the last heartbeat, managed bytes from `nbytes`.
    pub fn memory(&self) -> crate::memory::WorkerMemory {
        let (process, spilled_memory, spilled_disk) =
            crate::memory::heartbeat_memory(&self.info.metrics);
        crate::memory::WorkerMemory::new(
            process,
            (self.nbytes - spilled_memory).max(0),
            spilled_disk,
            self.unmanaged.old(),
        )
    }

    /// Threads, at least one (for ratios).
    pub fn threads(&self) -> f64 {
        self.info.nthreads.max(1) as f64
    }

    /// Count one more processing task of `prefix`.
    pub(crate) fn add_prefix(&mut self, prefix: u32) {
        *self.prefix_counts.entry(prefix).or_insert(0) += 1;
    }

    /// Count one processing task of `prefix` less.
    pub(crate) fn remove_prefix(&mut self, prefix: u32) {
        if let Some(n) = self.prefix_counts.get_mut(&prefix) {
            *n -= 1;
            if *n == 0 {
                self.prefix_counts.remove(&prefix);
            }
        }
    }

    /// One more processing task needs `dep` (of `nbytes`) fetched here.
    pub(crate) fn inc_needs(&mut self, dep: TaskId, nbytes: i64) {
        let entry = self.needs_what.entry(dep).or_insert((0, nbytes));
        if entry.0 == 0 {
            self.network_occ += nbytes;
        }
        entry.0 += 1;
    }

    /// One processing task less needs `dep` fetched here.
    pub(crate) fn dec_needs(&mut self, dep: TaskId) {
        if let Some(entry) = self.needs_what.get_mut(&dep) {
            entry.0 -= 1;
            if entry.0 == 0 {
                let nbytes = entry.1;
                self.needs_what.remove(&dep);
                self.network_occ -= nbytes;
            }
        }
    }

    /// `dep` arrived here: nothing left to fetch for it.
    pub(crate) fn got_replica(&mut self, dep: TaskId) {
        if let Some((_, nbytes)) = self.needs_what.remove(&dep) {
            self.network_occ -= nbytes;
        }
    }

    /// Capacity of a resource (0 if undeclared).
    pub fn resource(&self, name: &str) -> f64 {
        self.info
            .resources
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }
}

/// The host part of `tcp://host:port` (IPv6 brackets kept).
pub fn host_of(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    match rest.rsplit_once(':') {
        Some((host, _)) => host.to_string(),
        None => rest.to_string(),
    }
}
