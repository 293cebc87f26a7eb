//! The supervised pool: one supervisor task per slot, each owning one helper
//! process and taking jobs from a shared queue whenever its helper is idle.
//!
//! The first `min_helpers` slots run for the pool's lifetime. The others are
//! *spare* slots, opened only while graphs wait: a job still queued
//! [`GROW_AFTER`] after it was submitted, with every helper busy, opens one
//! (up to `pool_size` slots in all). A spare helper stops once it has been
//! idle for `spare_idle`, and is never restarted: its slot closes and a
//! later wait opens a new one. An idle Python helper with dask imported
//! holds ~60 MB (more once a graph has imported pandas), so keeping one per
//! CPU would make the scheduler several times larger than Python's.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::process::Helper;
use super::runner::FunctionRunner;
use super::{msgpack, Availability, MaterializeError, MaterializerConfig};

/// Consecutive failed (re)starts after which a slot gives up.
const MAX_START_FAILURES: u32 = 5;
/// First restart backoff; doubles per consecutive failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest restart backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long a job waits in the queue, every helper busy, before a spare
/// helper is started for it. Most graphs materialize in milliseconds, and
/// a graph that follows another (a `client.submit` on the futures of a
/// `client.map`) should not pay a helper's start-up (~1 s of imports).
pub const GROW_AFTER: Duration = Duration::from_millis(250);

/// A helper whose resident memory exceeds this after a request is replaced
/// by a fresh one (see [`max_helper_rss`]).
const DEFAULT_MAX_HELPER_RSS: u64 = 1 << 30;

/// Environment variable overriding [`DEFAULT_MAX_HELPER_RSS`]: a size in
/// bytes, with an optional `k`/`M`/`G` (x1024) suffix; `0` disables
/// recycling.
pub const MAX_HELPER_RSS_ENV: &str = "DASK_SCHEDULER_MATERIALIZER_MAX_RSS";

/// The recycling threshold: [`MAX_HELPER_RSS_ENV`] or the default.
fn max_helper_rss() -> Option<u64> {
    let limit = match std::env::var(MAX_HELPER_RSS_ENV) {
        Ok(text) => parse_size(&text).unwrap_or_else(|| {
            tracing::warn!(
                target: "materializer",
                "ignoring {MAX_HELPER_RSS_ENV}={text:?}: not a size like 800M or 2G"
            );
            DEFAULT_MAX_HELPER_RSS
        }),
        Err(_) => DEFAULT_MAX_HELPER_RSS,
    };
    (limit > 0).then_some(limit)
}

/// `123`, `512k`, `800M`, `2G` (binary multiples; `B`/`iB` suffixes allowed).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(1 << shift)
}

struct Job {
    body: Bytes,
    /// Where partial reply frames go (streamed requests only).
    chunks: Option<mpsc::UnboundedSender<Bytes>>,
    reply: oneshot::Sender<Result<Bytes, MaterializeError>>,
    /// Set when a slot takes the job (the spare-helper check reads it).
    taken: Arc<AtomicBool>,
}

/// What occupies one slot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// No supervisor: a spare slot not open now.
    Free,
    /// A supervisor without a running helper (starting or restarting it).
    Starting,
    /// A supervisor whose helper runs with this pid.
    Running(u32),
}

/// State shared by the pool handle and the slot supervisors.
struct Shared {
    python: PathBuf,
    /// Runs `run_on_scheduler` functions, in a process of its own.
    runner: FunctionRunner,
    request_timeout: Duration,
    /// Replace a helper whose RSS exceeds this after a request.
    max_helper_rss: Option<u64>,
    availability: Mutex<Availability>,
    /// Multi-consumer job queue: an idle slot holds the lock while it waits.
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    /// Permanent slots that have not given up.
    live_slots: AtomicUsize,
    /// Every slot index, permanent ones first (`pool_size` in all).
    slots: Mutex<Vec<Slot>>,
    /// Slots below this index are permanent; the others are spares.
    min_helpers: usize,
    /// How long a spare helper may stay idle before it stops.
    spare_idle: Duration,
    /// Jobs submitted and not yet taken by a slot.
    pending: AtomicUsize,
    /// Slots whose helper is waiting for a job.
    idle: AtomicUsize,
    /// Set when the last pool handle is dropped.
    shutdown: AtomicBool,
}

impl Shared {
    fn availability(&self) -> Availability {
        self.availability
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record slot `slot`'s helper pid (`None`: no helper running now).
    fn set_pid(&self, slot: usize, pid: Option<u32>) {
        if let Some(s) = self.slots().get_mut(slot) {
            *s = pid.map_or(Slot::Starting, Slot::Running);
        }
    }

    /// Claim a free spare slot if jobs wait for more helpers than are idle
    /// or starting, and there is room; its index, marked [`Slot::Starting`].
    fn open_spare(&self) -> Option<usize> {
        let mut slots = self.slots();
        let starting = slots.iter().filter(|s| **s == Slot::Starting).count();
        let waiting = self.pending.load(Ordering::SeqCst);
        if waiting <= self.idle.load(Ordering::SeqCst) + starting {
            return None;
        }
        let free = slots.iter().position(|s| *s == Slot::Free)?;
        slots[free] = Slot::Starting;
        Some(free)
    }
}

/// Counts a slot as idle while it lives.
struct IdleGuard<'a>(&'a AtomicUsize);

impl<'a> IdleGuard<'a> {
    fn new(idle: &'a AtomicUsize) -> Self {
        idle.fetch_add(1, Ordering::SeqCst);
        IdleGuard(idle)
    }
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Owned by the `MaterializerPool` clones; dropping the last one shuts the
/// slots down (closing the queue), which kills the helpers.
struct Handle {
    tx: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
    }
}

/// A pool of Python helper processes materializing task graphs.
/// Cheap to clone; the helpers are killed when the last clone is dropped.
#[derive(Clone)]
pub struct MaterializerPool {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for MaterializerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterializerPool")
            .field("python", &self.handle.shared.python)
            .field("availability", &self.availability())
            .finish()
    }
}

impl MaterializerPool {
    /// Start the permanent helpers (`config.min_helpers`, at least one, at
    /// most `config.pool_size`) and wait for their hello (at most the hello
    /// timeout, two minutes); spare helpers start later, while graphs wait
    /// (see the module docs). Never fails: when no helper can start, the pool
    /// is [`Availability::Unavailable`] with the reason. Must run inside a
    /// tokio runtime (the slot supervisors are spawned on it).
    pub async fn start(config: MaterializerConfig) -> MaterializerPool {
        let size = config.pool_size.max(1);
        let permanent = config.min_helpers.clamp(1, size);
        let (tx, rx) = mpsc::unbounded_channel();
        let resolved = match &config.python {
            Some(p) => Ok(p.clone()),
            None => find_python(),
        };
        let mut slots = vec![Slot::Free; size];
        slots[..permanent].fill(Slot::Starting);
        let shared = Arc::new(Shared {
            python: resolved.clone().unwrap_or_default(),
            runner: FunctionRunner::new(resolved.clone().unwrap_or_default()),
            request_timeout: config.request_timeout,
            max_helper_rss: max_helper_rss(),
            availability: Mutex::new(Availability::Unavailable {
                reason: "not started".into(),
            }),
            queue: tokio::sync::Mutex::new(rx),
            live_slots: AtomicUsize::new(0),
            slots: Mutex::new(slots),
            min_helpers: permanent,
            spare_idle: config.spare_idle,
            pending: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let pool = MaterializerPool {
            handle: Arc::new(Handle {
                tx,
                shared: shared.clone(),
            }),
        };
        let python = match resolved {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(target: "materializer", "graph materializer unavailable: {reason}");
                set_unavailable(&shared, reason).await;
                return pool;
            }
        };

        let mut starting = JoinSet::new();
        for slot in 0..permanent {
            let python = python.clone();
            starting.spawn(async move { (slot, Helper::spawn(&python, slot).await) });
        }
        let mut started: Vec<(usize, Result<Helper, String>)> = Vec::with_capacity(permanent);
        while let Some(res) = starting.join_next().await {
            match res {
                Ok(r) => started.push(r),
                Err(e) => tracing::error!(target: "materializer", "helper start task failed: {e}"),
            }
        }
        started.sort_by_key(|(slot, _)| *slot);

        let first_ok = started.iter().find_map(|(_, r)| r.as_ref().ok());
        let Some(first) = first_ok else {
            let reason = started
                .into_iter()
                .find_map(|(_, r)| r.err())
                .unwrap_or_else(|| "no helper process could be started".into());
            tracing::warn!(target: "materializer", "graph materializer unavailable: {reason}");
            set_unavailable(&shared, reason).await;
            return pool;
        };
        *shared
            .availability
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Availability::Available {
            python: first.hello.python.clone(),
            versions_msgpack: first.hello.versions.clone(),
        };
        tracing::info!(
            target: "materializer",
            python = %first.hello.python,
            helpers = permanent,
            most_helpers = size,
            "graph materializer ready"
        );
        shared.live_slots.store(permanent, Ordering::SeqCst);
        for (slot, initial) in started {
            if let Ok(h) = &initial {
                shared.set_pid(slot, Some(h.pid()));
            }
            let shared = shared.clone();
            tokio::spawn(supervise(slot, Some(initial), shared));
        }
        pool
    }

    /// Send one msgpack-encoded request map to an idle helper and return its
    /// raw msgpack reply. The body is forwarded untouched (its `"id"`, if
    /// any, is echoed by the helper). Fails immediately when the pool is
    /// unavailable or the body is not a single msgpack map.
    pub async fn request(&self, body: Bytes) -> Result<Bytes, MaterializeError> {
        self.submit(body, None).await
    }

    /// Like [`request`](Self::request), for a request that lets the helper
    /// stream its reply (`materialize` with `"stream": true`): each partial
    /// frame (`{"partial": true, ...}`) is sent to `chunks` as soon as it
    /// arrives, while the helper is still working, and the final reply is
    /// returned. `chunks` is dropped before this returns, so a receiver can
    /// read until the channel closes. When the request fails, the partial
    /// frames already sent are incomplete and must be discarded.
    pub async fn request_streaming(
        &self,
        body: Bytes,
        chunks: mpsc::UnboundedSender<Bytes>,
    ) -> Result<Bytes, MaterializeError> {
        self.submit(body, Some(chunks)).await
    }

    async fn submit(
        &self,
        body: Bytes,
        chunks: Option<mpsc::UnboundedSender<Bytes>>,
    ) -> Result<Bytes, MaterializeError> {
        if let Availability::Unavailable { reason } = self.availability() {
            return Err(MaterializeError::Unavailable(reason));
        }
        if !msgpack::is_single_map(&body) {
            return Err(MaterializeError::Protocol(
                "a materializer request must be exactly one msgpack map".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let job = Job {
            body,
            chunks,
            reply,
            taken: taken.clone(),
        };
        let shared = &self.handle.shared;
        let waiting = shared.pending.fetch_add(1, Ordering::SeqCst) + 1;
        if self.handle.tx.send(job).is_err() {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(self.unavailable_error());
        }
        if waiting > shared.idle.load(Ordering::SeqCst) {
            tokio::spawn(open_spare_if_still_waiting(shared.clone(), taken));
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(match self.availability() {
                Availability::Unavailable { reason } => MaterializeError::Unavailable(reason),
                Availability::Available { .. } => MaterializeError::HelperDied(
                    "the graph materializer shut down before replying".into(),
                ),
            }),
        }
    }

    /// Whether graphs can be materialized, and with which Python.
    pub fn availability(&self) -> Availability {
        self.handle.shared.availability()
    }

    /// Run a `run_on_scheduler` request (`{"op": "run", "function",
    /// "args", "kwargs", "wait", "address", "scheduler_id"}`, the client's
    /// pickles as they came, the scheduler's address and id) in the
    /// function runner, a long-lived process of its own (`runner.rs`), and
    /// return its reply frame: `{"status": "OK", "result_ser"}`, or an
    /// error reply whose `status` is `"error"` (the function raised) or
    /// `"uncaught"` (it could not be called).
    pub async fn run_function(&self, request: dask_wire::Value) -> Result<Bytes, MaterializeError> {
        if let Availability::Unavailable { reason } = self.availability() {
            return Err(MaterializeError::Unavailable(reason));
        }
        self.handle
            .shared
            .runner
            .call(request)
            .await
            .map_err(MaterializeError::HelperDied)
    }

    /// Start the `--preload` modules in the function runner (with the
    /// scheduler's `address` and `scheduler_id` for its stand-in scheduler):
    /// `argv` is one list of arguments for all, or one per module. `Ok` holds
    /// the `dask_setup`s (and the plugins they added) that failed to start
    /// (logged, not fatal, as in Python) and the whole reply (it may carry
    /// the runner's plugin table);
    /// `Err` says why the modules could not even be loaded, which stops the
    /// scheduler as it stops Python's.
    pub async fn start_preloads(
        &self,
        names: &[String],
        argv: dask_wire::Value,
        address: &str,
        scheduler_id: &str,
    ) -> Result<(Vec<String>, dask_wire::Value), String> {
        use dask_wire::Value;
        let request = Value::map([
            ("op", Value::str("preload")),
            (
                "names",
                Value::Array(names.iter().map(|n| Value::str(n.as_str())).collect()),
            ),
            ("argv", argv),
            ("address", Value::str(address)),
            ("scheduler_id", Value::str(scheduler_id)),
        ]);
        let frame = self
            .run_function(request)
            .await
            .map_err(|e| e.to_string())?;
        let reply = dask_wire::msgpack::decode(&frame)
            .map_err(|e| format!("malformed reply from the function runner: {e}"))?;
        let text = |k: &str| reply.get(k).and_then(Value::as_str).unwrap_or("");
        if text("status") != "ok" {
            return Err(format!(
                "{}\n{}",
                text("exception_text"),
                text("traceback_text")
            ));
        }
        let failed = reply
            .get("failed")
            .and_then(Value::as_seq)
            .unwrap_or(&[])
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        Ok((failed, reply))
    }

    /// Queue a request that gets no reply (`{"op": "plugin_events"}`) for
    /// the function runner, if it runs; written before any later
    /// `run_function` request ([`FunctionRunner::notify`]).
    pub fn notify_function_runner(&self, frame: Bytes) {
        self.handle.shared.runner.notify(frame);
    }

    /// When the scheduler closes: tear the preloads down and end the
    /// function runner, if it was started, waiting at most `within`.
    pub async fn close_function_runner(&self, within: Duration) {
        self.handle.shared.runner.close(within).await;
    }

    /// Process ids of the running helpers (for diagnostics and tests).
    pub fn helper_pids(&self) -> Vec<u32> {
        self.handle
            .shared
            .slots()
            .iter()
            .filter_map(|s| match s {
                Slot::Running(pid) => Some(*pid),
                _ => None,
            })
            .collect()
    }

    fn unavailable_error(&self) -> MaterializeError {
        match self.availability() {
            Availability::Unavailable { reason } => MaterializeError::Unavailable(reason),
            Availability::Available { .. } => {
                MaterializeError::Unavailable("the graph materializer has shut down".into())
            }
        }
    }
}

/// Mark the pool unavailable, close the queue and fail everything queued.
async fn set_unavailable(shared: &Shared, reason: String) {
    *shared
        .availability
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Availability::Unavailable {
        reason: reason.clone(),
    };
    let mut queue = shared.queue.lock().await;
    queue.close();
    while let Ok(job) = queue.try_recv() {
        shared.pending.fetch_sub(1, Ordering::SeqCst);
        let _ = job
            .reply
            .send(Err(MaterializeError::Unavailable(reason.clone())));
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (BACKOFF_START * factor).min(BACKOFF_MAX)
}

/// After [`GROW_AFTER`], open a spare slot for a job that is still queued
/// (see the module docs).
async fn open_spare_if_still_waiting(shared: Arc<Shared>, taken: Arc<AtomicBool>) {
    tokio::time::sleep(GROW_AFTER).await;
    if taken.load(Ordering::SeqCst) || shared.shutdown.load(Ordering::SeqCst) {
        return;
    }
    if let Some(slot) = shared.open_spare() {
        tracing::debug!(target: "materializer", slot, "graphs waiting: starting a spare helper");
        tokio::spawn(supervise(slot, None, shared));
    }
}

/// One slot: keep a helper running and feed it jobs. A permanent slot gets
/// its first helper started (`initial`) and restarts it whenever it ends; a
/// spare slot (`initial` is `None`) starts its own and closes when that
/// helper ends or stays idle for `spare_idle`.
async fn supervise(slot: usize, initial: Option<Result<Helper, String>>, shared: Arc<Shared>) {
    let spare = slot >= shared.min_helpers;
    let mut failures: u32 = 0;
    // The last helper was replaced on purpose (memory), not after a failure.
    let mut recycled = false;
    let mut helper = match initial {
        Some(Ok(h)) => Some(h),
        Some(Err(reason)) => {
            tracing::warn!(target: "materializer", slot, "helper failed to start: {reason}");
            failures = 1;
            None
        }
        None => match Helper::spawn(&shared.python, slot).await {
            Ok(h) => {
                shared.set_pid(slot, Some(h.pid()));
                Some(h)
            }
            Err(reason) => {
                tracing::warn!(target: "materializer", slot, "spare helper failed to start: {reason}");
                None
            }
        },
    };
    loop {
        if helper.is_none() && (spare || shared.shutdown.load(Ordering::SeqCst)) {
            if spare {
                shared.slots()[slot] = Slot::Free;
            }
            return;
        }
        let mut h = match helper.take() {
            Some(h) => h,
            None => {
                if failures > 0 {
                    tokio::time::sleep(backoff(failures)).await;
                }
                if shared.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                match Helper::spawn(&shared.python, slot).await {
                    Ok(h) => {
                        failures = 0;
                        shared.set_pid(slot, Some(h.pid()));
                        if std::mem::take(&mut recycled) {
                            tracing::debug!(
                                target: "materializer", slot, pid = h.pid(),
                                python_pid = h.hello.python_pid, "helper recycled"
                            );
                        } else {
                            tracing::info!(
                                target: "materializer", slot, pid = h.pid(),
                                python_pid = h.hello.python_pid, "helper restarted"
                            );
                        }
                        h
                    }
                    Err(reason) => {
                        failures += 1;
                        tracing::warn!(
                            target: "materializer", slot, failures,
                            "helper failed to restart: {reason}"
                        );
                        if failures >= MAX_START_FAILURES {
                            give_up(&shared, slot, reason).await;
                            return;
                        }
                        continue;
                    }
                }
            }
        };

        // Wait for a job, noticing if the idle helper dies meanwhile, and
        // (spare slots) stopping once idle for too long.
        let idle = IdleGuard::new(&shared.idle);
        let job = tokio::select! {
            biased;
            how = h.exited() => {
                let next = if spare { "closing its spare slot" } else { "restarting it" };
                tracing::warn!(
                    target: "materializer", slot, pid = h.pid(),
                    "idle helper {how}; {next}"
                );
                shared.set_pid(slot, None);
                h.stop().await;
                continue;
            }
            job = async { shared.queue.lock().await.recv().await } => job,
            () = tokio::time::sleep(shared.spare_idle), if spare => {
                tracing::debug!(
                    target: "materializer", slot, pid = h.pid(),
                    "spare helper idle for {:?}; stopping it", shared.spare_idle
                );
                shared.set_pid(slot, None);
                h.stop().await;
                continue;
            }
        };
        drop(idle);
        let Some(Job {
            body,
            chunks,
            reply,
            taken,
        }) = job
        else {
            // Pool dropped: the helper is killed on drop.
            shared.set_pid(slot, None);
            h.stop().await;
            return;
        };
        taken.store(true, Ordering::SeqCst);
        shared.pending.fetch_sub(1, Ordering::SeqCst);
        if reply.is_closed() {
            helper = Some(h);
            continue; // the requester went away while queued
        }
        let outcome =
            tokio::time::timeout(shared.request_timeout, h.roundtrip(&body, chunks.as_ref())).await;
        // The requester reads chunks until the channel closes.
        drop(chunks);
        drop(body);
        match outcome {
            Ok(Ok(answer)) => {
                let _ = reply.send(Ok(answer));
                match shared.max_helper_rss.zip(h.rss_bytes()) {
                    Some((limit, rss)) if rss > limit => {
                        // A big graph leaves a big Python heap behind:
                        // start afresh rather than keep it for good.
                        tracing::debug!(
                            target: "materializer", slot, pid = h.pid(), rss, limit,
                            "recycling helper: resident memory above the limit after a request"
                        );
                        shared.set_pid(slot, None);
                        h.stop().await;
                        recycled = true;
                    }
                    _ => helper = Some(h),
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::error!(target: "materializer", slot, pid = h.pid(), "{e}; restarting helper");
                shared.set_pid(slot, None);
                h.stop().await;
                let _ = reply.send(Err(MaterializeError::Protocol(e.to_string())));
            }
            Ok(Err(e)) => {
                shared.set_pid(slot, None);
                let report = h.death_report(&e).await;
                tracing::error!(target: "materializer", slot, "{report}");
                let _ = reply.send(Err(MaterializeError::HelperDied(report)));
            }
            Err(_) => {
                tracing::error!(
                    target: "materializer", slot, pid = h.pid(),
                    "request exceeded {:?}; killing helper", shared.request_timeout
                );
                shared.set_pid(slot, None);
                h.stop().await;
                let _ = reply.send(Err(MaterializeError::Timeout(shared.request_timeout)));
            }
        }
    }
}

async fn give_up(shared: &Shared, slot: usize, reason: String) {
    shared.set_pid(slot, None);
    let left = shared
        .live_slots
        .fetch_sub(1, Ordering::SeqCst)
        .saturating_sub(1);
    tracing::error!(
        target: "materializer", slot, slots_left = left,
        "giving up on helper slot after {MAX_START_FAILURES} failed starts: {reason}"
    );
    if left == 0 {
        set_unavailable(
            shared,
            format!("the materializer helpers keep failing to start: {reason}"),
        )
        .await;
    }
}

/// First `python3`, then `python`, on PATH.
fn find_python() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["python3", "python"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "no Python interpreter found: neither 'python3' nor 'python' is on PATH ({})",
        path.to_string_lossy()
    ))
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size(" 800M "), Some(800 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999G"), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
