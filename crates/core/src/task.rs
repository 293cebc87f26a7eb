//! What the scheduler knows about one task.

use crate::ids::{ClientId, TaskId, WorkerId};
use crate::idset::IdSet;
use crate::resulttypes::ResultTypeId;
use crate::runspec::RunSpec;
use dask_wire::{Key, Value};
use smallvec::SmallVec;
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
    /// [`Priority::to_value`] written as msgpack into `out`, without
    /// building the value.
    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        let num = |out: &mut Vec<u8>, x: f64| {
            if x.fract() == 0.0 && x.abs() < 9e15 {
                dask_wire::msgpack::write_int(out, x as i64);
            } else {
                out.push(0xcb);
                out.extend_from_slice(&x.to_be_bytes());
            }
        };
        out.push(0x93);
        num(out, self.user);
        num(out, self.generation);
        dask_wire::msgpack::write_int(out, self.order);
    }

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

    /// `workers` split as Python keeps them: host names
    /// (`host_restrictions`), then worker addresses, the entries with a
    /// scheme (`worker_restrictions`).
    pub fn hosts_and_workers(&self) -> (Vec<String>, Vec<String>) {
        self.workers
            .iter()
            .cloned()
            .partition(|w| !w.contains("://"))
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

/// A short list of task, worker or client ids: up to four are stored inline
/// (no heap allocation), which covers most dependency, dependent, replica
/// and wanter lists; the list is as large as a `Vec`.
pub type IdList<T> = SmallVec<[T; 4]>;

/// The rarely set parts of a task, kept behind one pointer so that the
/// common task stays small.
#[derive(Debug, Clone)]
pub struct TaskExtra {
    /// Annotations forwarded to the worker in `compute-task` (non-empty).
    pub annotations: Value,
    /// Placement restrictions, if any.
    pub restrictions: Option<Restrictions>,
    /// Remaining automatic retries.
    pub retries: u32,
    /// Times a worker died while running this task.
    pub suspicious: u32,
    /// The last worker that died while running it, once that was one time
    /// too many: read by the `KilledWorker` transition (kept here so the
    /// recommendation itself stays small).
    pub killed_by: Option<String>,
    /// The failure, when this task itself raised.
    pub error: Option<ErrorInfo>,
    /// The task whose failure this task inherits (itself if it raised).
    pub exception_blame: Option<TaskId>,
    /// The result's type when the shared table could not hold it (see
    /// [`crate::resulttypes`]).
    pub result_type: Option<Value>,
    /// The result type's name when the shared table does not give it
    /// (the type itself is not in the table, or came without bytes).
    pub result_typename: Option<Box<str>>,
    /// What its workers reported as its `metadata`, merged (Python's
    /// `TaskState.metadata`): a map, `None` until one had entries.
    pub metadata: Option<Value>,
    /// The task is an actor (`actor=True`): its worker keeps the object.
    pub actor: bool,
}

impl Default for TaskExtra {
    fn default() -> Self {
        TaskExtra {
            annotations: Value::Map(Vec::new()),
            restrictions: None,
            retries: 0,
            suspicious: 0,
            killed_by: None,
            error: None,
            exception_blame: None,
            result_type: None,
            result_typename: None,
            metadata: None,
            actor: false,
        }
    }
}

/// The annotations of a task without any: an empty map.
static NO_ANNOTATIONS: Value = Value::Map(Vec::new());

/// One task.
///
/// Aligned to a cache line: a task then spans exactly four lines (its size
/// is 256 bytes), not five, wherever the arena's buffer starts.
#[derive(Debug, Clone)]
#[repr(align(64))]
pub struct Task {
    /// The Dask key.
    pub key: Key,
    /// Pickled `GraphNode` to send in `compute-task`; `None` for pure data (scatter).
    pub run_spec: Option<Box<RunSpec>>,
    /// Tasks this one needs.
    pub dependencies: IdSet<TaskId>,
    /// Tasks that need this one.
    pub dependents: IdSet<TaskId>,
    /// Dependencies not yet in memory (while waiting).
    pub waiting_on: IdSet<TaskId>,
    /// Dependents that still need this task's data.
    pub waiters: IdSet<TaskId>,
    /// Clients holding a future for this key.
    pub who_wants: IdList<ClientId>,
    /// Workers holding the result.
    pub who_has: IdList<WorkerId>,
    /// Size of the result in bytes (as reported by the worker).
    pub nbytes: i64,
    /// Scheduler-wide counter of the current assignment.
    pub run_id: i64,
    /// Execution priority.
    pub priority: Priority,
    /// Pickled result type from `task-finished`, forwarded to clients: an
    /// entry of `State::result_types` (see [`State::result_type_of`]).
    ///
    /// [`State::result_type_of`]: crate::state::State::result_type_of
    pub result_type: ResultTypeId,
    /// Annotations, restrictions, retries, failures: `None` while all unset.
    pub extra: Option<Box<TaskExtra>>,
    /// Worker the task is assigned to while processing.
    pub processing_on: Option<WorkerId>,
    /// Task prefix (`key_split`) id, whose measured durations estimate this task's.
    pub prefix: u32,
    /// Task group (`key_split_group`), for root-task detection.
    pub group: u32,
    /// Current state.
    pub state: TaskState,
    /// A dependency was forgotten: this task can never run.
    pub has_lost_dependencies: bool,
    /// The run spec produces data without inputs (`data_producer`): a root task.
    pub data_producer: bool,
}

impl Task {
    /// A fresh released task.
    pub fn new(key: Key, prefix: u32, group: u32) -> Task {
        Task {
            key,
            run_spec: None,
            dependencies: IdSet::new(),
            dependents: IdSet::new(),
            waiting_on: IdSet::new(),
            waiters: IdSet::new(),
            who_wants: IdList::new(),
            who_has: IdList::new(),
            nbytes: 0,
            run_id: -1,
            priority: Priority::default(),
            result_type: ResultTypeId::NONE,
            extra: None,
            processing_on: None,
            prefix,
            group,
            state: TaskState::Released,
            has_lost_dependencies: false,
            data_producer: false,
        }
    }

    /// Still needed by a client or by a dependent that has not run yet.
    pub fn is_needed(&self) -> bool {
        !self.who_wants.is_empty() || !self.waiters.is_empty()
    }

    /// Whether the task is an actor (see [`crate::actors`]).
    pub fn is_actor(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.actor)
    }

    /// The rarely set parts, created on first use.
    pub fn extra_mut(&mut self) -> &mut TaskExtra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// Annotations forwarded to the worker (an empty map if none).
    pub fn annotations(&self) -> &Value {
        self.extra
            .as_ref()
            .map_or(&NO_ANNOTATIONS, |e| &e.annotations)
    }

    /// What its workers reported as its metadata (Python's
    /// `TaskState.metadata`), if any had entries.
    pub fn metadata(&self) -> Option<&Value> {
        self.extra.as_ref()?.metadata.as_ref()
    }

    /// Placement restrictions, if any.
    pub fn restrictions(&self) -> Option<&Restrictions> {
        self.extra.as_ref()?.restrictions.as_ref()
    }

    /// Remaining automatic retries.
    pub fn retries(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.retries)
    }

    /// Times a worker died while running this task.
    pub fn suspicious(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.suspicious)
    }

    /// The failure, when this task itself raised.
    pub fn error(&self) -> Option<&ErrorInfo> {
        self.extra.as_ref()?.error.as_ref()
    }

    /// Forget the failure (retry, or data arrived), and the blame with it.
    pub fn clear_error(&mut self) {
        if let Some(e) = &mut self.extra {
            e.error = None;
            e.exception_blame = None;
        }
    }

    /// The task whose failure this task inherits (itself if it raised);
    /// `None` unless erred.
    pub fn exception_blame(&self) -> Option<TaskId> {
        self.extra.as_ref()?.exception_blame
    }
}

/// Remove one occurrence of `x` from a small unordered list.
pub(crate) fn remove_item<T: PartialEq + Copy>(v: &mut IdList<T>, x: T) -> bool {
    if let Some(pos) = v.iter().position(|y| *y == x) {
        v.swap_remove(pos);
        true
    } else {
        false
    }
}

/// Push `x` unless present.
pub(crate) fn insert_item<T: PartialEq + Copy>(v: &mut IdList<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_slot_is_four_cache_lines() {
        // the arena holds `Option<Task>`: the niche keeps it the same size
        assert_eq!(std::mem::size_of::<Task>(), 256);
        assert_eq!(std::mem::size_of::<Option<Task>>(), 256);
        assert_eq!(std::mem::align_of::<Option<Task>>(), 64);
    }
}
