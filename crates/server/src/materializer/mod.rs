//! The graph materializer: a supervised pool of Python helper processes that
//! turn an `update-graph` expression (`expr_ser`) into tasks.
//!
//! See DESIGN.md, "The graph materializer". Python is needed because the
//! client sends the graph as a pickled dask expression; lowering it,
//! collecting annotations, `dask.order` and pickling each task's run_spec all
//! run dask code.
//!
//! # Processes
//!
//! The helper script (`helper.py`, embedded with `include_str!`) is run as
//! `<python> -u -c <bootstrap> <pieces of the script>...` (one argument may
//! not exceed 128 KiB), one process per pool slot. Each helper handles
//! one request at a time; a request goes to whichever helper is idle
//! (requests queue while all are busy). [`MaterializerPool::start`] starts
//! the `min_helpers` permanent ones (one by default); while requests wait
//! with every helper busy, spare helpers start, up to `pool_size` in all, so
//! that many graphs materialize in parallel, and each spare stops after
//! `spare_idle` without a request (details in `pool.rs`). The helper drops the
//! current directory from `sys.path`, ignores SIGINT (the scheduler owns its
//! lifetime), sends its own logs and anything user code prints to stderr,
//! which is forwarded line by line to `tracing` (target `"materializer"`),
//! and exits on EOF of its stdin. Helpers are spawned with `kill_on_drop`, so
//! they die with the pool (and with the scheduler: a dead parent means EOF).
//!
//! After a request, a helper whose resident memory exceeds a limit (1 GiB;
//! [`MAX_HELPER_RSS_ENV`] overrides it, `0` turns it off) is replaced by a
//! fresh one, logged at debug level: a big graph can leave a big Python heap
//! behind. The helper itself collects garbage and trims the C heap after a
//! big graph, so this is the backstop. Jobs stay queued meanwhile; none is
//! lost. Helpers are started with `DASK_SCHEDULER_MATERIALIZER_LOG_LEVEL=DEBUG`
//! when the scheduler logs the `materializer` target at debug level; they
//! then log per-graph phase timings (unpickle, materialize, order, pickle,
//! send).
//!
//! A helper that dies (crash, OOM kill, `os._exit` in user code) fails only
//! the request it was working on, with [`MaterializeError::HelperDied`]
//! carrying its exit status and last stderr lines, and is restarted; one
//! that dies while idle is restarted silently. A request that exceeds
//! `request_timeout` gets [`MaterializeError::Timeout`] and its helper is
//! killed and restarted. Restarts that fail at the hello stage back off
//! (0.1 s doubling to 5 s); after 5 consecutive failures the slot gives up,
//! and when every slot has given up the pool becomes
//! [`Availability::Unavailable`]. If no helper can start at all (Python
//! missing, dask/distributed not importable), the pool is Unavailable from
//! the start and every request fails immediately.
//!
//! # The function runner
//!
//! [`MaterializerPool::run_function`] runs `Client.run_on_scheduler`
//! functions in one more process of the same script, started with
//! `DASK_SCHEDULER_HELPER_ROLE=function-runner` on the first call and kept
//! (restarted on the next call if it dies): what a function starts must
//! outlive the call, which a recycled pool helper cannot promise. Its
//! requests `{"op": "run", "id", "function", "args", "kwargs", "wait",
//! "address", "scheduler_id"}`
//! may overlap; each reply echoes the id (`runner.rs`).
//!
//! # Wire protocol (pool <-> helper)
//!
//! Each message is an 8-byte little-endian length followed by that many bytes
//! of msgpack, over the helper's stdin (requests) and stdout (replies).
//!
//! On start the helper sends
//! `{"op": "hello", "status": "ok", "versions": get_versions(), "python": sys.executable, "pid": int}`
//! or `{"op": "hello", "status": "error", "message": str, "python": str, "pid": int}`.
//!
//! Requests are msgpack maps. The pool forwards the body untouched; it
//! neither needs nor rewrites an `"id"`: the helper echoes the request's
//! `"id"` (nil when absent) in the reply. Ops:
//!
//! * `{"op": "materialize", "id", "expr_header": bin, "expr_frames": [bin],
//!   "keys": [key], "internal_priority": {key: int} | nil,
//!   "annotations": {"header": bin, "frames": [bin]} | nil,
//!   "stream": bool (optional), "chunk_tasks": int (optional),
//!   "fork_order_min_tasks": int (optional)}`
//!   — `expr_header`/`expr_frames` are the `update-graph.expr_ser`
//!   `__Serialized__` sub-header and payload frames exactly as received;
//!   `annotations` is the `update-graph.annotations` `__Pickled__` sub-header
//!   and its out-of-band frames. Reply:
//!   `{"id", "status": "ok", "tasks": [{"key", "deps": [key], "dep_pos": [int],
//!   "run_spec": bin, "run_spec_frames": [bin], "order": int | nil,
//!   "annotations": {str: value}, "data_producer": bool}]}`. A task's
//!   dependencies in the graph are `dep_pos`, their positions in the task
//!   list (all chunks' tasks in order); `deps` holds only the keys the graph
//!   lacks (results of earlier graphs). `run_spec` is the msgpack `__Pickled__`
//!   sub-header `{"pickled-obj", "num-sub-frames"}` of the task's `GraphNode`
//!   and `run_spec_frames` its buffers: forward them as a `{"__Pickled__": i}`
//!   placeholder in `compute-task`. `order` is `internal_priority[key]` when
//!   `internal_priority` is non-empty (nil for keys it lacks, which the Python
//!   scheduler leaves without priority), else `dask.order.order`.
//!   `annotations` are the task's merged annotations (global ones, callables
//!   called with the key, overridden by layer annotations), made
//!   msgpack-safe: sets/tuples become arrays, numpy scalars plain numbers, a
//!   single `workers`/`restrictions` string a one-element array; other values
//!   are dropped with a warning. The graph is culled to `keys` for `LLGExpr`
//!   (`submit`) like the Python scheduler does; all other tasks are returned.
//!   The reply also carries `"ntasks"`, the number of tasks in all.
//!
//!   With `"stream": true` (sent with [`MaterializerPool::request_streaming`])
//!   the helper sends each full chunk of tasks (`chunk_tasks`, default 5000,
//!   or 8 MiB of run_specs) as soon as it is pickled, as a frame
//!   `{"partial": true, "tasks": [task, ...]}` (`"partial"` is always the
//!   first entry, so the pool recognises it without decoding the rest), and
//!   the reply above carries only the remaining tasks; `ntasks` counts them
//!   all. If the helper fails after some chunks, its reply is the usual error
//!   reply and the chunks already sent must be discarded. Without
//!   `"stream"` it never sends partial frames.
//!
//!   When a streamed graph of at least `fork_order_min_tasks` (default
//!   100000) tasks needs `dask.order`, the helper computes the order in a
//!   forked child while it pickles the tasks itself; the tasks then go out
//!   with `"order": nil` and the reply carries `"orders": [int | nil]`, one
//!   per task in the order they were sent. (Any trouble with the child falls
//!   back to ordering in the helper; so does memory: the child is forked only
//!   while the memory still available, the host's or the tightest of the
//!   helper's cgroup limits, is at least twice what the graph added to the
//!   helper. `DASK_SCHEDULER_MATERIALIZER_FORK_ORDER=0` turns forking off.)
//! * `{"op": "versions", "id"}` → `{"id", "status": "ok", "versions": {...}}`
//! * `{"op": "ping", "id"}` → `{"id", "status": "ok"}`
//!
//! Any failure (bad request, unknown op, unpicklable graph, exception in dask)
//! is a reply `{"id", "status": "error", "exception": bin, "traceback": bin | nil,
//! "exception_text": str, "traceback_text": str, "exception_ser": {"header":
//! bin, "frames": [bin]}, "traceback_ser": {...} | nil}` built from
//! `distributed.core.error_message`: `exception`/`traceback` are the pickles
//! (tblib-enabled), and the `*_ser` fields are the same bytes wrapped as the
//! Python scheduler's `Serialize(bytes)` sub-header + frames, ready to be
//! forwarded as `{"__Serialized__": i}` in `task-erred`. A graph that cannot
//! be unpickled yields the Python scheduler's "Error during deserialization
//! of the task graph ..." `RuntimeError`.

mod msgpack;
mod pool;
mod process;
mod runner;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

pub use pool::{MaterializerPool, GROW_AFTER, MAX_HELPER_RSS_ENV};

/// How long a spare helper may stay idle by default (see
/// [`MaterializerConfig::spare_idle`]).
pub const DEFAULT_SPARE_IDLE: Duration = Duration::from_secs(60);

/// How to run the helper processes.
#[derive(Debug, Clone)]
pub struct MaterializerConfig {
    /// Python interpreter with dask and distributed installed; `None` means
    /// the first of `python3`, `python` found on `PATH`.
    pub python: Option<PathBuf>,
    /// Most helper processes at once (graphs materialized in parallel); 0 is
    /// treated as 1.
    pub pool_size: usize,
    /// Helpers kept running for the pool's lifetime (at least 1, at most
    /// `pool_size`); the others start only while graphs wait.
    pub min_helpers: usize,
    /// How long a helper beyond `min_helpers` may stay idle before it stops.
    pub spare_idle: Duration,
    /// Longest time one request may take before its helper is killed.
    pub request_timeout: Duration,
}

impl Default for MaterializerConfig {
    /// PATH lookup, one helper kept and up to one per available CPU while
    /// graphs wait, spares stopped after a minute idle, a 10 minute timeout.
    fn default() -> Self {
        MaterializerConfig {
            python: None,
            pool_size: std::thread::available_parallelism().map_or(1, |n| n.get()),
            min_helpers: 1,
            spare_idle: DEFAULT_SPARE_IDLE,
            request_timeout: Duration::from_secs(600),
        }
    }
}

/// Whether graphs can be materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Helpers are running.
    Available {
        /// The helpers' `sys.executable`.
        python: String,
        /// msgpack encoding of the helpers' `distributed.versions.get_versions()`
        /// (`{"host": {...}, "packages": {...}}`).
        versions_msgpack: Bytes,
    },
    /// No helper can run; `reason` names what is missing.
    Unavailable {
        /// Human-readable cause, e.g. the Python path tried and the ImportError.
        reason: String,
    },
}

/// Why a request got no reply from a helper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterializeError {
    /// The pool has no working Python environment.
    #[error("the Python graph materializer is unavailable: {0}")]
    Unavailable(String),
    /// The helper handling the request died (it is being restarted).
    #[error("{0}")]
    HelperDied(String),
    /// The request took longer than `request_timeout` (its helper was killed).
    #[error(
        "graph materialization did not finish within {0:?}; the materializer process was killed"
    )]
    Timeout(Duration),
    /// The request or the helper's reply broke the framing protocol.
    #[error("graph materializer protocol error: {0}")]
    Protocol(String),
}
