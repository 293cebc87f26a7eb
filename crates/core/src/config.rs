//! Scheduler settings the state machine depends on.

/// Tunables, with the defaults of `distributed.scheduler` in Dask's config.
#[derive(Debug, Clone)]
pub struct Config {
    /// `distributed.scheduler.unknown-task-duration`: estimate for never-seen task prefixes (s).
    pub unknown_task_duration: f64,
    /// `distributed.scheduler.allowed-failures`: worker deaths a task may survive.
    pub allowed_failures: u32,
    /// `distributed.scheduler.worker-ttl`: a worker silent for longer is removed (s).
    pub worker_ttl: Option<f64>,
    /// Assumed network bandwidth for transfer-cost estimates (bytes/s).
    pub bandwidth: f64,
    /// `distributed.scheduler.worker-saturation`: root tasks per thread handed out
    /// before the rest wait in the scheduler's queue (`inf` disables queuing).
    pub worker_saturation: f64,
    /// `distributed.scheduler.work-stealing`: move queued tasks to idle workers.
    pub work_stealing: bool,
    /// Keep the queued siblings of a running root task for the same worker
    /// (`State::reserve_family`); this scheduler's own setting,
    /// `distributed.scheduler.sibling-affinity` (on by default).
    pub sibling_affinity: bool,
    /// `distributed.scheduler.rootish-taskgroup`: a root-ish task group
    /// depends on fewer groups than this.
    pub rootish_taskgroup: usize,
    /// `distributed.scheduler.rootish-taskgroup-dependencies`: a root-ish
    /// task group's dependency groups hold fewer tasks than this together.
    pub rootish_taskgroup_dependencies: u64,
    /// `distributed.scheduler.default-task-durations`: duration estimates
    /// (s) of prefixes before any has been measured.
    pub default_task_durations: Vec<(String, f64)>,
    /// Records the task stream keeps for `get_task_stream`: the larger of
    /// `distributed.scheduler.dashboard.{status,tasks}.task-stream-length`
    /// (Python's `TaskStreamPlugin`).
    pub task_stream_length: usize,
}

impl Config {
    /// The preset duration of a task prefix, if configured.
    pub fn default_task_duration(&self, prefix: &str) -> Option<f64> {
        self.default_task_durations
            .iter()
            .find(|(name, _)| name == prefix)
            .map(|(_, d)| *d)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unknown_task_duration: 0.5,
            allowed_failures: 3,
            worker_ttl: Some(300.0),
            bandwidth: 100e6,
            worker_saturation: 1.1,
            work_stealing: true,
            sibling_affinity: true,
            rootish_taskgroup: 5,
            rootish_taskgroup_dependencies: 5,
            default_task_durations: [
                "rechunk-split",
                "split-shuffle",
                "split-taskshuffle",
                "split-stage",
            ]
            .iter()
            .map(|name| (name.to_string(), 1e-6))
            .collect(),
            task_stream_length: 100_000,
        }
    }
}
