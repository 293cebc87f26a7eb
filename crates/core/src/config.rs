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
        }
    }
}
