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
    /// `distributed.scheduler.no-workers-timeout` (s): a task that has had
    /// no worker to run on for longer fails (`NoWorkerError`,
    /// `NoValidWorkerError`); `None`, the default, waits forever.
    pub no_workers_timeout: Option<f64>,
    /// `distributed.scheduler.events-cleanup-delay` (s): the events of a
    /// worker's or client's topic are dropped this long after it left,
    /// unless it came back.
    pub events_cleanup_delay: f64,
    /// Assumed network bandwidth for transfer-cost estimates (bytes/s).
    pub bandwidth: f64,
    /// `distributed.scheduler.work-stealing-interval` (s): how often the
    /// server runs a balancing round.
    pub work_stealing_interval: f64,
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
    /// `distributed.worker.memory.recent-to-old-time` (s): unmanaged memory
    /// older than this counts as "old" (`unmanaged_old`, the minimum over
    /// the window), what appeared since as a temporary spike.
    pub recent_to_old_time: f64,
    /// `distributed.worker.memory.rebalance.*`: how `rebalance` picks
    /// senders and recipients.
    pub rebalance: RebalanceConfig,
    /// `distributed.scheduler.active-memory-manager.*`.
    pub amm: crate::amm::AmmConfig,
    /// Transitions kept for `story` and the cluster dump (0 keeps none):
    /// `distributed.admin.low-level-log-length`, 1000 by default as in
    /// Python, unless this scheduler's own
    /// `distributed.scheduler.transition-log` is false.
    pub transition_log_length: usize,
}

/// Which memory reading `rebalance` balances
/// (`distributed.worker.memory.rebalance.measure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryMeasure {
    /// Process RSS as the OS measures it.
    Process,
    /// Managed bytes in memory plus unmanaged memory older than
    /// `recent-to-old-time` (Dask's default).
    #[default]
    Optimistic,
    /// Only the managed bytes in memory.
    Managed,
    /// Managed bytes, including those spilled to disk.
    ManagedTotal,
}

impl MemoryMeasure {
    /// Parse Dask's name of a measure (`None` for names Dask does not have).
    pub fn parse(name: &str) -> Option<MemoryMeasure> {
        Some(match name {
            "process" => MemoryMeasure::Process,
            "optimistic" => MemoryMeasure::Optimistic,
            "managed" | "managed_in_memory" => MemoryMeasure::Managed,
            "managed_total" => MemoryMeasure::ManagedTotal,
            _ => return None,
        })
    }
}

/// `distributed.worker.memory.rebalance.*`, as fractions of a worker's
/// memory limit (ignored for workers without one).
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceConfig {
    /// The memory reading balanced.
    pub measure: MemoryMeasure,
    /// A worker below this fraction of its limit sends nothing.
    pub sender_min: f64,
    /// A worker above this fraction of its limit receives nothing.
    pub recipient_max: f64,
    /// Half of `sender-recipient-gap`: workers within this fraction of
    /// their limit from the mean neither send nor receive.
    pub half_gap: f64,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            measure: MemoryMeasure::Optimistic,
            sender_min: 0.30,
            recipient_max: 0.60,
            half_gap: 0.05,
        }
    }
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
            no_workers_timeout: None,
            events_cleanup_delay: 3600.0,
            bandwidth: 100e6,
            work_stealing_interval: 1.0,
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
            recent_to_old_time: 30.0,
            rebalance: RebalanceConfig::default(),
            amm: crate::amm::AmmConfig::default(),
            transition_log_length: 1000,
        }
    }
}
