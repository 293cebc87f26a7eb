//! What the scheduler knows about one worker.

use crate::ids::{TaskId, WorkerId};
use dask_wire::Value;
use std::collections::HashSet;

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
    /// Name rendered as a string (for restrictions and uniqueness).
    pub name_str: String,
    /// Current status.
    pub status: WorkerStatus,
    /// Tasks assigned to it.
    pub processing: HashSet<TaskId>,
    /// Processing tasks that seceded from the thread pool (`long-running`):
    /// they no longer take a thread or a root-task slot.
    pub long_running: HashSet<TaskId>,
    /// Tasks whose results it holds.
    pub has_what: HashSet<TaskId>,
    /// Estimated seconds of work assigned.
    pub occupancy: f64,
    /// Sum of `nbytes` of results held.
    pub nbytes: i64,
    /// Resources booked by processing tasks.
    pub used_resources: Vec<(String, f64)>,
    /// Time of the last heartbeat or message.
    pub last_seen: f64,
}

impl Worker {
    /// Threads, at least one (for ratios).
    pub fn threads(&self) -> f64 {
        self.info.nthreads.max(1) as f64
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
