//! What the scheduler knows about one task.

use crate::ids::{ClientId, TaskId, WorkerId};
use dask_wire::{Key, Opaque, Value};
use std::cmp::Ordering;

/// The scheduler-side task states of `distributed.scheduler.TaskState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Known but not wanted for computation right now.
    Released,
    /// Wanted; waiting for dependencies to be in memory.
    Waiting,
    /// Ready root task held back on the scheduler until a worker has a free slot.
    Queued,
    /// Ready but no running worker satisfies its restrictions.
    NoWorker,
    /// Assigned to a worker.
    Processing,
    /// Result held by one or more workers.
    Memory,
    /// Failed (itself or a dependency).
    Erred,
    /// Removed; only seen transiently.
    Forgotten,
}

impl TaskState {
    /// The state name used on the wire and in Dask's APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting => "waiting",
            TaskState::Queued => "queued",
            TaskState::NoWorker => "no-worker",
            TaskState::Processing => "processing",
            TaskState::Memory => "memory",
            TaskState::Erred => "erred",
            TaskState::Forgotten => "forgotten",
        }
    }
}

/// `(-user_priority, generation, order)`, compared lexicographically; lower runs first.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Priority {
    /// Negated user priority (annotation `priority`).
    pub user: f64,
    /// Submission generation (fifo_timeout buckets).
    pub generation: f64,
    /// Position in the graph order.
    pub order: i64,
}

impl Priority {
    /// The wire form: an array of numbers (ints where integral, like Python).
    pub fn to_value(&self) -> Value {
        let num = |x: f64| {
            if x.fract() == 0.0 && x.abs() < 9e15 {
                Value::Int(x as i64)
            } else {
                Value::Float(x)
            }
        };
        Value::Array(vec![
            num(self.user),
            num(self.generation),
            Value::Int(self.order),
        ])
    }
}

impl Eq for Priority {}
impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Priority {
    fn cmp(&self, other: &Self) -> Ordering {
        self.user
            .total_cmp(&other.user)
            .then(self.generation.total_cmp(&other.generation))
            .then(self.order.cmp(&other.order))
    }
}

/// Where a task may run (annotations `workers`, `allow_other_workers`, `resources`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restrictions {
    /// Worker addresses, names or host names the task is restricted to.
    pub workers: Vec<String>,
    /// Resources a worker must have (total capacity), e.g. `GPU: 1.0`.
    pub resources: Vec<(String, f64)>,
    /// `allow_other_workers`: fall back to any worker if none of `workers` fits.
    pub loose: bool,
}

impl Restrictions {
    /// True when nothing restricts placement.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty() && self.resources.is_empty()
    }
}

/// The exception of an erred task, kept as the opaque objects the worker sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// Pickled exception (opaque `Serialized`, or bin/str produced by the scheduler).
    pub exception: Value,
    /// Pickled traceback or nil.
    pub traceback: Value,
    /// `repr(exception)`, for logs and HTTP.
    pub exception_text: String,
    /// Formatted traceback text.
    pub traceback_text: String,
}

/// One task.
#[derive(Debug, Clone)]
pub struct Task {
    /// The Dask key.
    pub key: Key,
    /// Current state.
    pub state: TaskState,
    /// Pickled `GraphNode` to send in `compute-task`; `None` for pure data (scatter).
    pub run_spec: Option<Box<Opaque>>,
    /// Tasks this one needs.
    pub dependencies: Vec<TaskId>,
    /// Tasks that need this one.
    pub dependents: Vec<TaskId>,
    /// Dependencies not yet in memory (while waiting).
    pub waiting_on: Vec<TaskId>,
    /// Dependents that still need this task's data.
    pub waiters: Vec<TaskId>,
    /// Clients holding a future for this key.
    pub who_wants: Vec<ClientId>,
    /// Workers holding the result.
    pub who_has: Vec<WorkerId>,
    /// Size of the result in bytes (as reported by the worker).
    pub nbytes: i64,
    /// Worker the task is assigned to while processing.
    pub processing_on: Option<WorkerId>,
    /// Scheduler-wide counter of the current assignment.
    pub run_id: i64,
    /// Execution priority.
    pub priority: Priority,
    /// Remaining automatic retries.
    pub retries: u32,
    /// Times a worker died while running this task.
    pub suspicious: u32,
    /// Placement restrictions, if any.
    pub restrictions: Option<Box<Restrictions>>,
    /// Annotations forwarded to the worker in `compute-task`.
    pub annotations: Value,
    /// Pickled result type from `task-finished`, forwarded to clients.
    pub result_type: Option<Value>,
    /// The task whose failure this task inherits (itself if it raised).
    pub exception_blame: Option<TaskId>,
    /// The failure, when this task itself raised.
    pub error: Option<Box<ErrorInfo>>,
    /// Task prefix (`key_split`) id, whose measured durations estimate this task's.
    pub prefix: u32,
    /// A dependency was forgotten: this task can never run.
    pub has_lost_dependencies: bool,
    /// The run spec produces data without inputs (`data_producer`): a root task.
    pub data_producer: bool,
    /// Task group (`key_split_group`), for root-task detection.
    pub group: u32,
}

impl Task {
    /// A fresh released task.
    pub fn new(key: Key, prefix: u32, group: u32) -> Task {
        Task {
            key,
            state: TaskState::Released,
            run_spec: None,
            dependencies: Vec::new(),
            dependents: Vec::new(),
            waiting_on: Vec::new(),
            waiters: Vec::new(),
            who_wants: Vec::new(),
            who_has: Vec::new(),
            nbytes: 0,
            processing_on: None,
            run_id: -1,
            priority: Priority::default(),
            retries: 0,
            suspicious: 0,
            restrictions: None,
            annotations: Value::Map(Vec::new()),
            result_type: None,
            exception_blame: None,
            error: None,
            prefix,
            has_lost_dependencies: false,
            data_producer: false,
            group,
        }
    }

    /// Still needed by a client or by a dependent that has not run yet.
    pub fn is_needed(&self) -> bool {
        !self.who_wants.is_empty() || !self.waiters.is_empty()
    }
}

/// Remove one occurrence of `x` from a small unordered vector.
pub(crate) fn remove_item<T: PartialEq + Copy>(v: &mut Vec<T>, x: T) -> bool {
    if let Some(pos) = v.iter().position(|y| *y == x) {
        v.swap_remove(pos);
        true
    } else {
        false
    }
}

/// Push `x` unless present.
pub(crate) fn insert_item<T: PartialEq + Copy>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}
