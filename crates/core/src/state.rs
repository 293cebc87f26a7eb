//! The scheduler state: task arena, workers, clients, outbox.

use crate::config::Config;
use crate::error::CoreError;
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::keyindex::KeyHash;
use crate::pluginfeed::hooks;
use crate::task::{insert_item, remove_item, Task, TaskState};
use crate::transitions::Target;
use crate::worker::{host_of, Worker, WorkerRegistration, WorkerStatus};
use bytes::Bytes;
use dask_wire::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A message for the I/O layer to deliver on a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// An op map for a worker's batched stream.
    Worker(WorkerId, Value),
    /// An op map for a client's report stream.
    Client(ClientId, Value),
}

/// A connected client (or the `fire-and-forget` pseudo-client).
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's id string (`Client-<uuid>`).
    pub name: String,
    /// Tasks it holds futures for.
    pub wants_what: crate::taskidset::TaskIdSet,
    /// Last heartbeat.
    pub last_seen: f64,
    /// What it sent as its `get_versions()` (Python's
    /// `ClientState.versions`): an empty map if nothing.
    pub versions: Value,
}

/// Running statistics of a task prefix (`inc`, `sum-aggregate`, ...).
#[derive(Debug, Clone, Default)]
pub struct PrefixStats {
    /// The prefix name.
    pub name: String,
    /// Exponentially weighted average duration (s), if measured (or preset
    /// by `default-task-durations`).
    pub duration_average: Option<f64>,
    /// Completed tasks.
    pub completed: u64,
    /// The longest a task of the prefix had been executing when a worker's
    /// heartbeat reported it (s; Python's `max_exec_time`): while no task
    /// has finished, twice this is the duration estimate, so a prefix of
    /// long tasks is not taken for one of `unknown-task-duration`.
    pub max_exec_time: Option<f64>,
    /// Preset to at most 1 ms by `default-task-durations` (Python's
    /// `stealing.fast_tasks`, e.g. `split-taskshuffle`): never worth stealing.
    pub fast: bool,
}

/// The whole scheduler state. See the crate docs.
#[derive(Debug)]
pub struct State {
    pub(crate) config: Config,
    pub(crate) tasks: Vec<Option<Task>>,
    pub(crate) free_slots: Vec<TaskId>,
    pub(crate) task_ids: crate::keyindex::KeyIndex,
    pub(crate) workers: crate::workermap::WorkerMap,
    pub(crate) worker_by_addr: HashMap<String, WorkerId>,
    next_worker: u32,
    pub(crate) clients: BTreeMap<ClientId, Client>,
    pub(crate) client_by_name: HashMap<String, ClientId>,
    next_client: u32,
    pub(crate) outbox: Vec<Outgoing>,
    /// Per worker, the outbox index of a `free-keys` message that more keys
    /// of the current transition batch may join: set by `free_keys_on`,
    /// dropped when anything else is sent to that worker (so that a key is
    /// never freed ahead of a message that was sent before it), at the end
    /// of each transition batch and when the outbox is taken.
    pub(crate) open_free_keys: FxHashMap<WorkerId, usize>,
    /// The stimulus id shared by the `compute-task`s of the current
    /// transition batch (Python gives them the batch's stimulus id),
    /// msgpack-encoded so that each message only takes a reference.
    pub(crate) compute_stimulus: Option<Bytes>,
    /// The stimulus id of the message being handled, when it carried one
    /// (msgpack str): the messages sent in answer take it, as Python's
    /// `_transitions(..., stimulus_id)` gives them the stimulus's own id,
    /// instead of a fresh one (`State::stimulus`).
    pub(crate) incoming_stimulus: Option<Bytes>,
    /// The work queue of `transitions`, whose buffer is reused by the next
    /// batch (a huge one is dropped instead).
    pub(crate) transition_queue: std::collections::VecDeque<(TaskId, Target)>,
    /// Tasks that reached a second replica, for the AMM's next run
    /// (Python's `replicated_tasks`, pruned lazily by the AMM).
    pub(crate) amm_replicated: rustc_hash::FxHashSet<TaskId>,
    /// Whether the periodic AMM runs (`client.amm.start/stop`).
    pub(crate) amm_running: bool,
    /// The last transitions, for `story` and the cluster dump.
    pub(crate) transition_log: crate::story::TransitionLog,
    /// Events for the scheduler plugins' hooks (none without plugins).
    pub(crate) plugin_feed: crate::pluginfeed::PluginFeed,
    pub(crate) run_counter: i64,
    /// Times a task was sent to a worker to run, steals left out (Python's
    /// `Scheduler.n_tasks`, which `run_on_scheduler` functions read).
    pub(crate) n_tasks: u64,
    /// Network bandwidth assumed for transfer costs (bytes/s): the
    /// `bandwidth` setting at first, then, as in Python, a moving average
    /// of what the workers' heartbeats say their transfers measured
    /// (`queries.rs`, `heartbeat_worker`).
    pub(crate) bandwidth: f64,
    /// Transfer speeds between pairs of workers and per type of data, from
    /// the heartbeats (Python's `bandwidth_workers` and `bandwidth_types`).
    pub(crate) peer_bandwidth: crate::bandwidth::PeerBandwidth,
    /// The task of each run still under way, by run id: finds the task of
    /// a `task-finished` without hashing its key.
    pub(crate) run_index: crate::runindex::RunIndex,
    pub(crate) generation: f64,
    pub(crate) last_graph_time: f64,
    pub(crate) prefixes: Vec<PrefixStats>,
    prefix_ids: FxHashMap<String, u32>,
    /// Task groups: sizes, live tasks, names and dependency groups (what
    /// `is_rootish` reads).
    pub(crate) groups: crate::taskgroups::TaskGroups,
    /// Tasks in `no-worker`, with the time each entered it (Python's
    /// `unrunnable`, read by the no-workers timeout).
    pub(crate) unrunnable: BTreeMap<TaskId, f64>,
    /// Since when no worker has been running while tasks wait for one
    /// (Python's `_no_workers_since`; see `noworkers.rs`).
    pub(crate) no_workers_since: Option<f64>,
    /// Queued root tasks that no worker has reserved, best priority first.
    pub(crate) queued: crate::queuedset::QueuedSet,
    /// Queued root tasks reserved for a worker (in that worker's
    /// `Worker::reserved`) because a sibling of theirs runs there: see
    /// `State::reserve_family`.
    pub(crate) reserved_on: FxHashMap<TaskId, WorkerId>,
    /// Running workers with a free root-task slot, ordered like
    /// `least_busy_with_slot` picks them: `processing / threads` (as the
    /// bits of a non-negative f64, which order like the number), then id.
    /// Kept up to date by `refresh_slot_index` wherever a worker's
    /// processing set, seceded set or status changes.
    pub(crate) slot_index: BTreeSet<(u64, WorkerId)>,
    /// Threads of every registered worker, paused ones included (Python's
    /// `total_nthreads`), kept as workers come and go.
    pub(crate) total_nthreads: u64,
    /// The `fire-and-forget` pseudo-client (registered first, never removed).
    fire_and_forget: ClientId,
    pub(crate) subscriptions: HashMap<String, BTreeSet<ClientId>>,
    /// The last events of each topic (`log_event`, the scheduler's own).
    pub(crate) events: HashMap<String, std::collections::VecDeque<(f64, Value)>>,
    /// Topics of departed workers and clients, with the time their events
    /// are dropped (`events-cleanup-delay`), in that order.
    pub(crate) topic_cleanups: std::collections::VecDeque<(f64, String)>,
    /// Published datasets, variables and events.
    pub(crate) coordination: crate::coordination::Coordination,
    /// Semaphores and locks.
    pub(crate) semaphores: crate::semaphores::Semaphores,
    /// P2P shuffles and rechunks (specs, runs, restrictions).
    pub(crate) p2p: crate::p2p::P2p,
    /// Open `get_task_metadata` blocks.
    pub(crate) task_metadata: crate::taskmetadata::TaskMetadataCollectors,
    /// Open progress bars (`distributed.progress`).
    pub(crate) progress: crate::progress::ProgressWatches,
    /// `set_metadata` values (a nested map).
    pub(crate) metadata: Value,
    /// The live tasks marked as actors (few): where each runs or is held
    /// is read from the tasks themselves (`actors.rs`).
    pub(crate) actor_tasks: FxHashSet<TaskId>,
    /// Named queues.
    pub(crate) queues: crate::queues::Queues,
    /// `MultiLock` queues.
    pub(crate) multi_locks: crate::multilock::MultiLocks,
    pub(crate) transition_counter: u64,
    pub(crate) stimulus_counter: u64,
    pub(crate) now: f64,
    pub(crate) round_robin: usize,
    pub(crate) steals: FxHashMap<TaskId, crate::stealing::InFlightSteal>,
    /// Processing tasks whose worker refused a steal (already running).
    pub(crate) steal_refused: FxHashSet<TaskId>,
    /// Workers being retired and idleness tracking (`retire.rs`).
    pub(crate) retire: crate::retire::RetireState,
    /// Observability counters (see [`crate::stats`]).
    pub(crate) stats: crate::stats::Stats,
    /// Distinct pickled result types seen in `task-finished`, named by the
    /// tasks' [`crate::resulttypes::ResultTypeId`].
    pub(crate) result_types: crate::resulttypes::ResultTypes,
    /// The workers' distinct package versions, for the version check of a
    /// registering client or worker ([`State::version_mismatch`]).
    pub(crate) package_sets: crate::versions::PackageSets,
    /// Scratch buffer for a key's canonical bytes (`task_id_of_value`).
    pub(crate) key_scratch: Vec<u8>,
    /// The task stream's records, once a client asked for them.
    pub(crate) task_records: Option<Box<crate::taskstream::TaskRecords>>,
}

/// Append `n` in decimal, zero-padded to at least `width` digits.
fn push_digits<B: DigitSink>(out: &mut B, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 || buf.len() - i < width.max(1) {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.put(&buf[i..]);
}

/// Where a stimulus id is written: a `Vec` or an inline buffer.
trait DigitSink {
    fn put(&mut self, bytes: &[u8]);
}

impl DigitSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed inline buffer for one stimulus id (its `what` is at most 200
/// bytes, the rest at most 50).
struct IdBuf {
    buf: [u8; 256],
    len: usize,
}

impl DigitSink for IdBuf {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// The pseudo-client that holds `fire_and_forget` futures.
pub const FIRE_AND_FORGET: &str = "fire-and-forget";

impl State {
    /// An empty scheduler.
    pub fn new(config: Config) -> State {
        let amm_running = config.amm.start;
        let bandwidth = config.bandwidth;
        let transition_log = crate::story::TransitionLog::new(config.transition_log_length);
        let groups = crate::taskgroups::TaskGroups::new(
            config.rootish_taskgroup,
            config.rootish_taskgroup_dependencies,
        );
        let mut s = State {
            config,
            tasks: Vec::new(),
            free_slots: Vec::new(),
            task_ids: Default::default(),
            workers: Default::default(),
            worker_by_addr: HashMap::new(),
            next_worker: 0,
            clients: BTreeMap::new(),
            client_by_name: HashMap::new(),
            next_client: 0,
            outbox: Vec::new(),
            open_free_keys: Default::default(),
            incoming_stimulus: None,
            transition_queue: Default::default(),
            amm_replicated: Default::default(),
            amm_running,
            transition_log,
            plugin_feed: Default::default(),
            compute_stimulus: None,
            run_counter: 0,
            n_tasks: 0,
            bandwidth,
            peer_bandwidth: Default::default(),
            run_index: Default::default(),
            generation: 0.0,
            last_graph_time: f64::NEG_INFINITY,
            prefixes: Vec::new(),
            prefix_ids: Default::default(),
            groups,
            unrunnable: BTreeMap::new(),
            no_workers_since: None,
            queued: crate::queuedset::QueuedSet::new(),
            reserved_on: FxHashMap::default(),
            slot_index: BTreeSet::new(),
            total_nthreads: 0,
            fire_and_forget: ClientId(0),
            subscriptions: HashMap::new(),
            events: HashMap::new(),
            topic_cleanups: Default::default(),
            coordination: Default::default(),
            semaphores: Default::default(),
            p2p: Default::default(),
            task_metadata: Default::default(),
            progress: Default::default(),
            metadata: Value::Map(Vec::new()),
            actor_tasks: Default::default(),
            queues: Default::default(),
            multi_locks: Default::default(),
            transition_counter: 0,
            stimulus_counter: 0,
            now: 0.0,
            round_robin: 0,
            steals: Default::default(),
            steal_refused: Default::default(),
            retire: Default::default(),
            stats: crate::stats::Stats::default(),
            result_types: Default::default(),
            package_sets: Default::default(),
            key_scratch: Vec::new(),
            task_records: None,
        };
        s.fire_and_forget = s.add_client(FIRE_AND_FORGET, 0.0);
        s
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Messages produced since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.end_batch();
        std::mem::take(&mut self.outbox)
    }

    /// [`State::take_outbox`] as a drain: the outbox keeps its capacity, so
    /// an I/O layer that drains after every stimulus does not regrow it.
    pub fn drain_outbox(&mut self) -> std::vec::Drain<'_, Outgoing> {
        self.end_batch();
        self.outbox.drain(..)
    }

    /// Queue `msg` for worker `w`'s stream (after everything queued before).
    pub(crate) fn push_worker(&mut self, w: WorkerId, msg: Value) {
        if !self.open_free_keys.is_empty() {
            self.open_free_keys.remove(&w);
        }
        self.outbox.push(Outgoing::Worker(w, msg));
    }

    /// Number of tasks the scheduler holds.
    pub fn task_count(&self) -> usize {
        self.task_ids.len()
    }

    /// Transitions performed so far (for idle detection).
    pub fn transition_counter(&self) -> u64 {
        self.transition_counter
    }

    // ---------------------------------------------------------------- tasks

    pub(crate) fn task(&self, id: TaskId) -> &Task {
        self.tasks[id as usize].as_ref().expect("live task id")
    }

    /// Ask the CPU to start loading task `id`'s slot (its first and third
    /// cache lines; the hardware fetches their neighbours): for tasks the
    /// caller will touch soon, whose slots are likely out of cache in a
    /// large graph. A hint only: nothing changes if `id` is not a slot.
    #[inline]
    pub(crate) fn prefetch_task(&self, id: TaskId) {
        #[cfg(target_arch = "x86_64")]
        if let Some(slot) = self.tasks.get(id as usize) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = (slot as *const Option<Task>).cast::<i8>();
            // SAFETY: `_mm_prefetch` is unsafe only for its target feature,
            // SSE, which every x86_64 CPU has; a prefetch is a hint that
            // never faults and reads nothing the program can see, and both
            // addresses lie within the slot (256 bytes).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(128));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// [`prefetch_task`](Self::prefetch_task) for the dependents and the
    /// dependencies of task `id`, which a finished or forgotten task's
    /// transition reads next.
    pub(crate) fn prefetch_relatives(&self, id: TaskId) {
        let t = self.task(id);
        for &d in t.dependents.iter().chain(t.dependencies.iter()) {
            self.prefetch_task(d);
        }
    }

    pub(crate) fn task_mut(&mut self, id: TaskId) -> &mut Task {
        self.tasks[id as usize].as_mut().expect("live task id")
    }

    /// The id of a key, if the scheduler knows it.
    pub fn task_id(&self, key: &Key) -> Option<TaskId> {
        self.task_ids.get(&self.tasks, key.as_bytes())
    }

    /// The id of the key that the decoded value `v` names, if the scheduler
    /// knows it; an error if `v` is not a valid key. Unlike building a
    /// [`Key`], allocates nothing (the canonical bytes go to a scratch buffer).
    pub(crate) fn task_id_of_value(
        &mut self,
        v: &Value,
    ) -> Result<Option<TaskId>, dask_wire::WireError> {
        Key::encode_canonical(v, &mut self.key_scratch)?;
        Ok(self.task_ids.get(&self.tasks, &self.key_scratch))
    }

    /// The state of a key, if known.
    pub fn task_state(&self, key: &Key) -> Option<TaskState> {
        self.task_id(key).map(|id| self.task(id).state)
    }

    /// Make room for `n` more tasks (a graph submission's size), so that
    /// the arena and the key map do not grow step by step.
    pub(crate) fn reserve_tasks(&mut self, n: usize) {
        let fresh = n.saturating_sub(self.free_slots.len());
        self.tasks.reserve(fresh);
        self.task_ids.reserve(n);
    }

    pub(crate) fn new_task(&mut self, key: Key) -> TaskId {
        let hash = KeyHash::of(key.as_bytes());
        self.new_task_hashed(key, hash)
    }

    /// [`State::task_id`] with the key's hash already computed.
    pub(crate) fn task_id_hashed(&self, key: &Key, hash: KeyHash) -> Option<TaskId> {
        self.task_ids.get_hashed(&self.tasks, hash, key.as_bytes())
    }

    /// A new released task for `key` (not yet known), whose hash is `hash`.
    pub(crate) fn new_task_hashed(&mut self, key: Key, hash: KeyHash) -> TaskId {
        let id = self.place_task(key);
        self.task_ids.insert_hashed(hash, id);
        id
    }

    /// A new released task for `key` in a free slot or at the end of the
    /// arena, not yet in the key index (the caller indexes it).
    pub(crate) fn place_task(&mut self, key: Key) -> TaskId {
        let task = self.make_task(key);
        match self.free_slots.pop() {
            Some(id) => {
                self.tasks[id as usize] = Some(task);
                id
            }
            None => {
                self.tasks.push(Some(task));
                (self.tasks.len() - 1) as TaskId
            }
        }
    }

    /// Add `n` empty slots at the end of the arena for a graph submission
    /// to fill with [`State::place_task_at`]; returns the first one. The
    /// caller gives back the slots it leaves empty ([`State::free_slot`]).
    pub(crate) fn fresh_slots(&mut self, n: usize) -> TaskId {
        let base = self.tasks.len();
        self.tasks.resize_with(base + n, || None);
        base as TaskId
    }

    /// [`State::place_task`] into the empty slot `id` (one of
    /// [`State::fresh_slots`]); the caller indexes the key.
    pub(crate) fn place_task_at(&mut self, key: Key, id: TaskId) {
        debug_assert!(self.tasks[id as usize].is_none());
        let task = self.make_task(key);
        self.tasks[id as usize] = Some(task);
    }

    /// Give back an empty slot of [`State::fresh_slots`] that was not used.
    pub(crate) fn free_slot(&mut self, id: TaskId) {
        debug_assert!(self.tasks[id as usize].is_none());
        self.free_slots.push(id);
    }

    /// A released task for `key`, with its prefix and group.
    fn make_task(&mut self, key: Key) -> Task {
        // `key_split` of the name is the prefix; tuple keys group by their
        // name, str keys by prefix (`key_split_group`). A str name is read in
        // place, without decoding the key or allocating.
        let (prefix, group) = match key.name_borrowed() {
            Some((name, is_tuple)) => {
                let prefix_name = dask_wire::key::key_split(name);
                let prefix = self.intern_prefix(&prefix_name);
                (
                    prefix,
                    self.groups
                        .add_task(if is_tuple { name } else { &prefix_name }),
                )
            }
            None => {
                let name = key.name();
                let is_tuple = matches!(key.decoded(), Value::Array(_));
                let prefix_name = dask_wire::key::key_split(&name);
                let prefix = self.intern_prefix(&prefix_name);
                (
                    prefix,
                    self.groups
                        .add_task(if is_tuple { &name } else { &prefix_name }),
                )
            }
        };
        Task::new(key, prefix, group)
    }

    /// Take `id` out of the queued or the unrunnable set, whichever its
    /// state puts it in (`validate_worker_accounting` checks that the sets
    /// and the states agree), without searching a set it cannot be in.
    pub(crate) fn leave_ready_sets(&mut self, id: TaskId) {
        let t = self.task(id);
        match t.state {
            TaskState::Queued => {
                let entry = (t.priority, id);
                match self.reserved_on.remove(&id) {
                    Some(w) => {
                        if let Some(worker) = self.workers.get_mut(&w) {
                            worker.reserved.remove(&entry);
                        }
                    }
                    None => {
                        self.queued.remove(&entry);
                    }
                }
            }
            TaskState::NoWorker => {
                self.unrunnable.remove(&id);
            }
            _ => {}
        }
    }

    /// Drop a task from the arena (it must be detached from everything).
    pub(crate) fn remove_task(&mut self, id: TaskId) {
        if matches!(self.tasks.get(id as usize), Some(Some(_))) {
            self.leave_ready_sets(id);
        }
        if let Some(task) = self.tasks[id as usize].take() {
            // the slot stays empty until the key index's sweep frees it
            if self.task_ids.remove(id) {
                self.task_ids.sweep(&mut self.free_slots);
            }
            self.steal_refused.remove(&id);
            self.groups.forget_task(task.group);
            for c in task.who_wants {
                if let Some(client) = self.clients.get_mut(&c) {
                    client.wants_what.remove(id);
                }
            }
        }
    }

    fn intern_prefix(&mut self, prefix: &str) -> u32 {
        if let Some(id) = self.prefix_ids.get(prefix) {
            return *id;
        }
        let id = self.prefixes.len() as u32;
        let preset = self.config.default_task_duration(prefix);
        self.prefixes.push(PrefixStats {
            name: prefix.to_string(),
            duration_average: preset,
            fast: preset.is_some_and(|d| d <= 0.001),
            ..Default::default()
        });
        self.prefix_ids.insert(prefix.to_string(), id);
        id
    }

    /// Forget what the task prefixes learned, as `restart` does in Python
    /// (`_clear_task_state` drops `task_prefixes`): duration estimates go
    /// back to their `default-task-durations` presets, and the per-prefix
    /// counters (state totals, compute and transfer seconds, suspicious
    /// tasks) to zero. The ids stay interned, so that task-stream entries
    /// still name their prefix; a prefix without history is left out of
    /// the metrics, as Python no longer knows it.
    pub(crate) fn reset_prefix_history(&mut self) {
        for p in &mut self.prefixes {
            p.duration_average = self.config.default_task_duration(&p.name);
            p.completed = 0;
            p.max_exec_time = None;
        }
        self.stats.prefixes.clear();
    }

    /// Estimated run time of a task from its prefix history.
    pub(crate) fn estimated_duration(&self, id: TaskId) -> f64 {
        self.prefix_duration(self.task(id).prefix)
    }

    /// Estimated run time of a task of prefix `p`, as Python's
    /// `_get_prefix_duration`: the measured average (or preset), else twice
    /// the longest a task of it has been seen executing, else
    /// `unknown-task-duration`.
    fn prefix_duration(&self, p: u32) -> f64 {
        let prefix = &self.prefixes[p as usize];
        match (prefix.duration_average, prefix.max_exec_time) {
            (Some(average), _) => average,
            (None, Some(longest)) if longest > 0.0 => 2.0 * longest,
            _ => self.config.unknown_task_duration,
        }
    }

    /// A worker's heartbeat says a task of prefix `p` has been executing
    /// for `seconds` (Python's `TaskPrefix.add_exec_time`): the prefix's
    /// longest execution grows, and an average it has outrun by more than
    /// twice is dropped, so the estimate follows the long task.
    pub(crate) fn add_exec_time(&mut self, p: u32, seconds: f64) {
        let prefix = &mut self.prefixes[p as usize];
        prefix.max_exec_time = Some(prefix.max_exec_time.map_or(seconds, |m| m.max(seconds)));
        if prefix
            .duration_average
            .is_some_and(|average| seconds > 2.0 * average)
        {
            prefix.duration_average = None;
        }
    }

    /// Estimated seconds of work on `w`, as Python's `WorkerState.occupancy`:
    /// its processing tasks at their prefixes' current duration estimates,
    /// plus the transfer time of the inputs it still has to fetch.
    pub fn occupancy(&self, w: &Worker) -> f64 {
        let compute: f64 = w
            .prefix_counts
            .iter()
            .map(|(p, n)| self.prefix_duration(*p) * f64::from(*n))
            .sum();
        compute + w.network_occ as f64 / self.bandwidth
    }

    /// `w`'s processing tasks by prefix name, sorted (Python's
    /// `WorkerState.task_prefix_count`, for the stand-in and the dump).
    pub fn task_prefix_count(&self, w: &Worker) -> Value {
        let mut counts: Vec<(&str, u32)> = w
            .prefix_counts
            .iter()
            .map(|(p, n)| (self.prefixes[*p as usize].name.as_str(), *n))
            .collect();
        counts.sort_unstable();
        Value::Map(
            counts
                .into_iter()
                .map(|(name, n)| (Value::str(name), Value::Int(i64::from(n))))
                .collect(),
        )
    }

    pub(crate) fn record_duration(&mut self, id: TaskId, seconds: f64) {
        let p = self.task(id).prefix as usize;
        let stats = &mut self.prefixes[p];
        stats.completed += 1;
        stats.duration_average = Some(match stats.duration_average {
            None => seconds,
            Some(avg) => 0.5 * avg + 0.5 * seconds,
        });
    }

    /// A transition batch is over: later `free-keys` start new messages and
    /// later `compute-task`s get a new stimulus id.
    pub(crate) fn end_batch(&mut self) {
        self.open_free_keys.clear();
        self.compute_stimulus = None;
        self.transition_log.end_batch();
    }

    /// Make the stimulus id of this batch's `compute-task`s (a msgpack str
    /// in `compute_stimulus`), once per batch: each message borrows it.
    pub(crate) fn make_compute_stimulus(&mut self) {
        if self.compute_stimulus.is_none() {
            let b = match &self.incoming_stimulus {
                Some(b) => b.clone(),
                None => self.stimulus_msgpack("compute-task"),
            };
            self.compute_stimulus = Some(b);
        }
    }

    /// A fresh stimulus id, `<what>-<now with 6 decimals>-<counter>`.
    pub(crate) fn stimulus(&mut self, what: &str) -> String {
        let mut id = Vec::with_capacity(what.len() + 32);
        self.write_stimulus(what, &mut id);
        String::from_utf8(id).expect("a str and ASCII digits")
    }

    /// [`State::stimulus`] as a msgpack str, in one exactly sized
    /// allocation (a `Bytes` made from a full `Vec` allocates nothing more
    /// until its first clone): most ids go straight into one outgoing
    /// message.
    pub(crate) fn stimulus_msgpack(&mut self, what: &str) -> Bytes {
        // `what` is a short literal and `now` a time, so the id fits the
        // inline buffer and a str8 (< 256 bytes); anything else (a long
        // name, a `now` whose digits are unbounded) takes the general path
        if what.len() > 200 || !(0.0..1e12).contains(&self.now) {
            let id = self.stimulus(what);
            let mut out = Vec::with_capacity(id.len() + 5);
            dask_wire::msgpack::write_str(&mut out, &id);
            return Bytes::from(out);
        }
        let mut id = IdBuf {
            buf: [0; 256],
            len: 0,
        };
        self.write_stimulus(what, &mut id);
        let id = &id.buf[..id.len];
        let mut out = Vec::with_capacity(id.len() + if id.len() < 32 { 1 } else { 2 });
        dask_wire::msgpack::write_str_header(&mut out, id.len());
        out.extend_from_slice(id);
        Bytes::from(out)
    }

    /// Append the next stimulus id (UTF-8) to `out`.
    fn write_stimulus<B: DigitSink>(&mut self, what: &str, out: &mut B) {
        self.stimulus_counter += 1;
        if (0.0..1e12).contains(&self.now) {
            // digits written by hand: `write!` goes through `core::fmt`,
            // which was ~4 % of the state machine's time on a chain graph
            let micros = (self.now * 1e6).round() as u64;
            let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
            out.put(what.as_bytes());
            out.put(b"-");
            push_digits(out, secs, 1);
            out.put(b".");
            push_digits(out, frac, 6);
            out.put(b"-");
            push_digits(out, self.stimulus_counter, 1);
        } else {
            let id = format!("{what}-{:.6}-{}", self.now, self.stimulus_counter);
            out.put(id.as_bytes());
        }
    }

    // ---------------------------------------------------------------- clients

    /// Keep what client `id` sent as its `get_versions()` (a map; anything
    /// else is kept as an empty map).
    pub fn set_client_versions(&mut self, id: ClientId, versions: Value) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.versions = if versions.as_map().is_some() {
                versions
            } else {
                Value::Map(Vec::new())
            };
        }
    }

    /// Register a client by its id string; idempotent.
    pub fn add_client(&mut self, name: &str, now: f64) -> ClientId {
        if let Some(id) = self.client_by_name.get(name) {
            return *id;
        }
        let id = ClientId(self.next_client);
        self.next_client += 1;
        if name != FIRE_AND_FORGET {
            self.stats.clients_added += 1;
        }
        self.clients.insert(
            id,
            Client {
                name: name.to_string(),
                wants_what: Default::default(),
                last_seen: now,
                versions: Value::Map(Vec::new()),
            },
        );
        self.client_by_name.insert(name.to_string(), id);
        if name != FIRE_AND_FORGET {
            self.event_client(name, true);
            self.plugin_hook(hooks::ADD_CLIENT, "add_client", || vec![Value::str(name)]);
        }
        id
    }

    /// Look up a client id by name.
    pub fn client_id(&self, name: &str) -> Option<ClientId> {
        self.client_by_name.get(name).copied()
    }

    /// Client id string.
    pub fn client_name(&self, id: ClientId) -> Option<&str> {
        self.clients.get(&id).map(|c| c.name.as_str())
    }

    /// Number of connected clients (without the fire-and-forget pseudo-client).
    pub fn client_count(&self) -> usize {
        self.clients.len() - 1
    }

    /// A client left: release everything it wanted and forget it.
    pub fn remove_client(&mut self, client: ClientId, now: f64) {
        self.now = now;
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        if c.name == FIRE_AND_FORGET {
            return;
        }
        let keys: Vec<TaskId> = c.wants_what.iter().collect();
        self.client_releases(client, &keys);
        for subs in self.subscriptions.values_mut() {
            subs.remove(&client);
        }
        if let Some(c) = self.clients.remove(&client) {
            self.client_by_name.remove(&c.name);
            self.stats.clients_removed += 1;
            self.event_client(&c.name, false);
            self.schedule_topic_cleanup(&c.name);
            self.plugin_hook(hooks::REMOVE_CLIENT, "remove_client", || {
                vec![Value::str(c.name)]
            });
        }
    }

    /// Add `client` to the wanters of these tasks and report their current state.
    pub(crate) fn client_desires(&mut self, client: ClientId, ids: &[TaskId]) {
        let fire_and_forget = client == self.fire_and_forget;
        for &id in ids {
            if fire_and_forget
                && matches!(self.task(id).state, TaskState::Memory | TaskState::Erred)
            {
                // fire-and-forget interest ends when the task has an outcome
                // (`release_fire_and_forget`); for a task that already has one
                // it would never end and the result would be held forever
                // (Python leaks it; there is nothing to wait for, so skip it).
                continue;
            }
            insert_item(&mut self.task_mut(id).who_wants, client);
            if let Some(c) = self.clients.get_mut(&client) {
                c.wants_what.insert(id);
            }
            self.report_to_client(client, id);
        }
    }

    /// Drop `client`'s interest; release or forget what nobody needs any more.
    pub(crate) fn client_releases(&mut self, client: ClientId, ids: &[TaskId]) {
        let recs = self.client_releases_recs(client, ids);
        self.transitions(recs);
    }

    /// Run `recs` as one batch whose stimulus id is a fresh `<what>-<now>`,
    /// as Python names the batches of some client messages
    /// (`update-graph-...`, `client-releases-keys-...`): the transition log,
    /// the plugins and the `compute-task`s of the batch carry it.
    pub(crate) fn transitions_named<I>(&mut self, what: &str, recs: I)
    where
        I: IntoIterator<Item = (TaskId, Target)>,
    {
        let outer = self.incoming_stimulus.take();
        self.incoming_stimulus = Some(match &outer {
            Some(own) => own.clone(),
            None => self.stimulus_msgpack(what),
        });
        self.transitions(recs);
        self.incoming_stimulus = outer;
    }

    /// `_client_releases_keys`: drop `client`'s interest and return the
    /// recommendations (forget or release) for tasks nobody wants any more.
    pub(crate) fn client_releases_recs(
        &mut self,
        client: ClientId,
        ids: &[TaskId],
    ) -> crate::transitions::Recs {
        let mut recs = crate::transitions::Recs::new();
        for &id in ids {
            if self.tasks.get(id as usize).is_none_or(Option::is_none) {
                continue;
            }
            if let Some(c) = self.clients.get_mut(&client) {
                c.wants_what.remove(id);
            }
            let t = self.task_mut(id);
            if !remove_item(&mut t.who_wants, client) || !t.who_wants.is_empty() {
                continue;
            }
            if t.dependents.is_empty() {
                recs.push((id, Target::Forgotten));
            } else if t.state != TaskState::Erred && t.waiters.is_empty() {
                recs.push((id, Target::Released));
            }
        }
        recs
    }

    /// Like Python's `_add_to_memory` / `_propagate_erred`: a `fire_and_forget`
    /// future only lasts until its task has a result (or an error); without
    /// this the task and its data would be held forever.
    pub(crate) fn release_fire_and_forget(&mut self, id: TaskId) -> crate::transitions::Recs {
        let ff = self.fire_and_forget;
        if self.task(id).who_wants.contains(&ff) {
            self.client_releases_recs(ff, &[id])
        } else {
            crate::transitions::Recs::new()
        }
    }

    // ---------------------------------------------------------------- workers

    /// Register a worker. Fails if the address or name is taken.
    pub fn add_worker(&mut self, reg: WorkerRegistration, now: f64) -> Result<WorkerId, CoreError> {
        self.now = now;
        if self.worker_by_addr.contains_key(&reg.address) {
            return Err(CoreError::Registration(format!(
                "worker address already registered: {}",
                reg.address
            )));
        }
        let name_str = match &reg.name {
            Value::Str(s) => s.to_string(),
            Value::Nil => reg.address.clone(),
            other => other.to_string(),
        };
        if self.workers.values().any(|w| w.name_str == name_str) {
            return Err(CoreError::Registration(format!("name taken, {name_str}")));
        }
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.stats.workers_added += 1;
        let host = host_of(&reg.address);
        let status = reg.status;
        let task_slots = self.task_slots(reg.nthreads);
        self.total_nthreads += u64::from(reg.nthreads);
        self.worker_by_addr.insert(reg.address.clone(), id);
        let address = reg.address.clone();
        let package_set = self.package_sets.add(&reg.versions);
        let sent_at = reg.sent_at;
        self.workers.insert(
            id,
            Worker {
                id,
                info: reg,
                host,
                address_msgpack: {
                    let mut encoded = Vec::with_capacity(address.len() + 2);
                    dask_wire::msgpack::write_str(&mut encoded, &address);
                    Bytes::from(encoded)
                },
                name_str,
                status,
                processing: Default::default(),
                long_running: Default::default(),
                has_what: Default::default(),
                reserved: Default::default(),
                task_slots,
                slot_key: None,
                prefix_counts: Default::default(),
                needs_what: Default::default(),
                network_occ: 0,
                nbytes: 0,
                used_resources: Vec::new(),
                last_seen: now,
                unmanaged: Default::default(),
                executing: Vec::new(),
                time_delay: 0.0,
                package_set,
            },
        );
        // Python's `add_worker` takes the registration as a first heartbeat
        self.observe_worker_clock(id, sent_at, now);
        self.observe_worker_metrics(id, now);
        self.refresh_slot_index(id);
        self.event_add_worker(&address);
        self.plugin_hook(hooks::ADD_WORKER, "add_worker", || {
            vec![Value::str(address.as_str())]
        });
        if status == WorkerStatus::Running {
            self.on_worker_running(id);
            self.refresh_no_workers_since(now);
        }
        Ok(id)
    }

    /// Python's version check for a client or worker registering with
    /// `versions` (its `get_versions()`), against the scheduler's
    /// (`scheduler_versions`, nil if not known) and the connected workers'
    /// (a registering worker counts itself once added): the warning its
    /// registration reply carries, `""` when nothing differs (see
    /// [`crate::versions`]). `source_name` heads the newcomer's column:
    /// `"Client"`, or a worker's `server_id`.
    pub fn version_mismatch(
        &self,
        scheduler_versions: &Value,
        versions: &Value,
        source_name: &str,
    ) -> String {
        use crate::versions::{mismatch_warning, Packages};
        mismatch_warning(
            Packages::of(scheduler_versions).as_ref(),
            self.package_sets.iter(),
            Packages::of(versions).as_ref(),
            source_name,
        )
    }

    /// [`State::version_mismatch`] for worker `id`, just registered (its
    /// column headed by its `server_id`, as Python's is).
    pub fn worker_version_mismatch(&self, id: WorkerId, scheduler_versions: &Value) -> String {
        let Some(w) = self.workers.get(&id) else {
            return String::new();
        };
        self.version_mismatch(scheduler_versions, &w.info.versions, &w.info.server_id)
    }

    /// Look up a worker by its contact address.
    pub fn worker_id(&self, address: &str) -> Option<WorkerId> {
        self.worker_by_addr.get(address).copied()
    }

    /// A worker's contact address.
    pub fn worker_address(&self, id: WorkerId) -> Option<&str> {
        self.workers.get(&id).map(|w| w.info.address.as_str())
    }

    /// Resolve an address, name or host to the matching worker addresses.
    pub fn resolve_workers(&self, spec: &str) -> Vec<String> {
        self.workers
            .values()
            .filter(|w| w.info.address == spec || w.name_str == spec || w.host == spec)
            .map(|w| w.info.address.clone())
            .collect()
    }

    /// A worker left (stream closed, killed, unregistered): reschedule its
    /// processing tasks and recompute or drop results only it held.
    pub fn remove_worker(&mut self, id: WorkerId, now: f64) -> bool {
        self.now = now;
        let Some(worker) = self.workers.remove(&id) else {
            return false;
        };
        if let Some(k) = worker.slot_key {
            self.slot_index.remove(&(k, id));
        }
        for entry in &worker.reserved {
            self.reserved_on.remove(&entry.1);
            self.queued.insert(*entry);
        }
        self.total_nthreads -= u64::from(worker.info.nthreads);
        self.worker_by_addr.remove(&worker.info.address);
        self.peer_bandwidth.forget_worker(&worker.info.address);
        if let Some(slot) = worker.package_set {
            self.package_sets.remove(slot);
        }
        self.stats.workers_removed += 1;
        // Steals *from* this worker are moot (its tasks are rescheduled below).
        // Steals *to* it stay in flight: the victim may already have dropped the
        // task when it answers, and `on_steal_response` then reschedules it
        // (Python's `move_task_confirm` does the same for a departed thief).
        // Forgetting them here left such a task "processing" on a victim that
        // no longer had it, forever.
        self.steals.retain(|_, s| s.victim != id);
        self.p2p_removal_started();
        let stim = self.stimulus("remove-worker");
        let mut recs = Vec::new();
        let mut processing: Vec<TaskId> = worker.processing.iter().copied().collect();
        processing.sort_unstable();
        let mut lost = crate::schedevents::RemovedWorkerLoss {
            processing: processing.clone(),
            ..Default::default()
        };
        for tid in processing {
            let allowed = self.config.allowed_failures;
            self.steal_refused.remove(&tid);
            let t = self.task_mut(tid);
            t.processing_on = None;
            t.extra_mut().suspicious += 1;
            let suspicious = t.suspicious();
            let prefix = t.prefix;
            self.stats.prefix_mut(prefix).suspicious += 1;
            if suspicious > allowed {
                self.task_mut(tid).extra_mut().killed_by = Some(worker.info.address.clone());
                recs.push((tid, Target::KilledWorker));
            } else {
                recs.push((tid, Target::Released));
            }
        }
        let mut held: Vec<TaskId> = worker.has_what.iter().collect();
        held.sort_unstable();
        for tid in held {
            let t = self.task_mut(tid);
            remove_item(&mut t.who_has, id);
            if t.is_actor() && t.state == TaskState::Memory {
                // the actor's object lived here (Python: `memory -> erred`)
                recs.push((tid, Target::Erred(tid)));
            } else if t.who_has.is_empty() && t.state == TaskState::Memory {
                if t.run_spec.is_some() {
                    recs.push((tid, Target::Released));
                    lost.recomputed.push(tid);
                } else {
                    recs.push((tid, Target::Forgotten));
                    lost.scattered.push(tid);
                }
            }
        }
        let others: Vec<WorkerId> = self.workers.keys().copied().collect();
        for other in others {
            self.push_worker(
                other,
                crate::messages::remove_worker(&worker.info.address, &stim),
            );
        }
        let expected = matches!(
            worker.status,
            WorkerStatus::ClosingGracefully | WorkerStatus::Closing
        );
        self.event_remove_worker(&worker.info.address, lost, &stim, expected);
        self.schedule_topic_cleanup(&worker.info.address);
        self.transitions(recs);
        self.refresh_no_workers_since(now);
        self.p2p_worker_removed(&worker.info.address);
        self.plugin_hook(hooks::REMOVE_WORKER, "remove_worker", || {
            vec![Value::str(worker.info.address.as_str()), Value::str(stim)]
        });
        true
    }

    /// Ids of workers that accept tasks.
    pub(crate) fn running_workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers
            .values()
            .filter(|w| w.status == WorkerStatus::Running)
    }

    /// A worker became `running`: try everything that had nowhere to go.
    pub(crate) fn on_worker_running(&mut self, _id: WorkerId) {
        let mut waiting: Vec<TaskId> = self.unrunnable.keys().copied().collect();
        // Best priority first (Python's `bulk_schedule_unrunnable_after_adding_worker`
        // returns priority-ordered recommendations); task ids are arbitrary.
        waiting.sort_by_key(|t| self.task(*t).priority);
        let recs: Vec<_> = waiting
            .into_iter()
            .map(|t| (t, Target::Processing))
            .collect();
        self.transitions(recs);
        self.fill_queued_slots();
    }

    /// Number of registered workers (any status).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_any_id_is_harmless() {
        let s = State::new(Config::default());
        // an empty arena: every id lies outside it, and a hint never panics
        for id in [0, 1, 1 << 20, TaskId::MAX] {
            s.prefetch_task(id);
        }
        assert_eq!(s.task_count(), 0);
    }

    #[test]
    fn stimulus_ids_match_formatted_ones() {
        let mut s = State::new(Config::default());
        for (now, counter) in [
            (0.0, 0),
            (1.5, 9),
            (1_234.000_007, 41),
            (99_999.999_999_6, 1 << 40),
        ] {
            s.now = now;
            s.stimulus_counter = counter;
            let micros = (now * 1e6).round() as u64;
            let expect = format!(
                "task-finished-{}.{:06}-{}",
                micros / 1_000_000,
                micros % 1_000_000,
                counter + 1
            );
            assert_eq!(s.stimulus("task-finished"), expect);
        }
        s.now = -2.25;
        assert_eq!(
            s.stimulus("x"),
            format!("x--2.250000-{}", s.stimulus_counter)
        );
    }

    #[test]
    fn digits_are_padded_to_width() {
        let mut out = Vec::new();
        push_digits(&mut out, 0, 1);
        push_digits(&mut out, 42, 6);
        push_digits(&mut out, u64::MAX, 1);
        assert_eq!(out, format!("0000042{}", u64::MAX).into_bytes());
    }

    #[test]
    fn msgpack_stimulus_ids_are_the_encoded_strings() {
        // the same id `stimulus` gives, encoded as `write_str` encodes it:
        // a fixstr below 32 bytes, a str8 from 32 on, and long names too
        let long = "w".repeat(230);
        for what in ["x", "compute-task", "memory-released", long.as_str()] {
            for (now, counter) in [
                (0.0, 0),
                (1.5, 9),
                (1_700_000_000.25, 1 << 40),
                (-2.25, 3),
                (1e300, u64::MAX - 1),
                (f64::NAN, 5),
            ] {
                let mut a = State::new(Config::default());
                let mut b = State::new(Config::default());
                for s in [&mut a, &mut b] {
                    s.now = now;
                    s.stimulus_counter = counter;
                }
                let id = a.stimulus(what);
                let mut want = Vec::new();
                dask_wire::msgpack::write_str(&mut want, &id);
                let got = b.stimulus_msgpack(what);
                assert_eq!(&got[..], &want[..], "{what} at {now}");
                assert_eq!(a.stimulus_counter, b.stimulus_counter);
            }
        }
    }
}
