//! The Active Memory Manager with its default policy, `ReduceReplicas`
//! (`distributed/active_memory_manager.py`): every `interval` (2 s), a task
//! in memory on more workers than it needs loses its extra replicas. It
//! needs one replica, or one per distinct worker its waiting dependents run
//! on (each not-yet-assigned dependent counting as its own). A replica is
//! dropped from the worker using the most memory (a paused or retiring one
//! first), never from a worker running one of the task's dependents, and
//! never the last one. The scheduler forgets the replica at once and sends
//! the worker `remove-replicas`; a worker that still needs the key answers
//! `add-keys`, which reinstates it.
//!
//! Python runs the AMM by default (`distributed.scheduler.active-memory-
//! manager.start`); `client.amm.start/stop/running/run_once` reach it
//! through the `amm_handler` RPC.

use crate::config::MemoryMeasure;
use crate::ids::{TaskId, WorkerId};
use crate::messages;
use crate::state::State;
use crate::task::TaskState;
use crate::worker::WorkerStatus;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// `distributed.scheduler.active-memory-manager.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct AmmConfig {
    /// Run the AMM from the start (`start`, default true).
    pub start: bool,
    /// Seconds between two runs (`interval`, default 2 s).
    pub interval: f64,
    /// The memory reading that picks which replica goes (`measure`).
    pub measure: MemoryMeasure,
}

impl Default for AmmConfig {
    fn default() -> Self {
        AmmConfig {
            start: true,
            interval: 2.0,
            measure: MemoryMeasure::Optimistic,
        }
    }
}

/// What one AMM run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmmRun {
    /// Tasks that lost replicas.
    pub tasks: usize,
    /// Replicas dropped.
    pub dropped: usize,
}

/// Waiters counted one by one beyond this many (Python's shortcut: the
/// distinct-worker count is only worked out for fewer than 20).
const DISTINCT_WAITERS_BELOW: usize = 20;

impl State {
    /// Whether the periodic AMM runs (`client.amm.running()`).
    pub fn amm_running(&self) -> bool {
        self.amm_running
    }

    /// `client.amm.start()` / `stop()`.
    pub fn set_amm_running(&mut self, running: bool) {
        self.amm_running = running;
    }

    /// A task reached a second replica: the AMM looks at it on its next
    /// run (Python's `replicated_tasks`, kept lazily: a task that lost its
    /// extra replicas another way leaves the set when the AMM finds it so).
    pub(crate) fn note_replicated(&mut self, id: TaskId) {
        self.amm_replicated.insert(id);
    }

    /// One run of `ReduceReplicas`: choose the replicas to drop, forget
    /// them and tell their workers (`remove-replicas`).
    pub fn amm_run_once(&mut self, now: f64) -> AmmRun {
        self.now = now;
        if self.amm_replicated.is_empty() {
            return AmmRun::default();
        }
        let measure = self.config.amm.measure;
        let mut memory: FxHashMap<WorkerId, i64> = self
            .workers
            .iter()
            .map(|(w, worker)| (*w, worker.memory().measure(measure)))
            .collect();
        let mut candidates: Vec<TaskId> = self.amm_replicated.iter().copied().collect();
        candidates.sort_unstable();
        let mut drops: BTreeMap<WorkerId, Vec<TaskId>> = BTreeMap::new();
        let mut run = AmmRun::default();
        for id in candidates {
            if !self.still_replicated(id) {
                self.amm_replicated.remove(&id);
                continue;
            }
            let excess = self.task(id).who_has.len() as isize - self.replicas_needed(id) as isize;
            let mut pending: SmallVec<[WorkerId; 4]> = SmallVec::new();
            for _ in 0..excess.max(0) {
                let Some(w) = self.find_dropper(id, &pending, &memory) else {
                    break;
                };
                pending.push(w);
                let nbytes = self.task(id).nbytes;
                if let Some(m) = memory.get_mut(&w) {
                    *m = (*m - nbytes).max(0);
                }
            }
            if !pending.is_empty() {
                run.tasks += 1;
                run.dropped += pending.len();
            }
            for w in pending {
                drops.entry(w).or_default().push(id);
            }
        }
        if drops.is_empty() {
            return run;
        }
        let stimulus = self.stimulus("active_memory_manager");
        for (w, ids) in drops {
            let keys = ids.iter().map(|&id| self.task(id).key.to_value()).collect();
            for &id in &ids {
                self.remove_replica(id, w);
            }
            self.push_worker(w, messages::remove_replicas(keys, &stimulus));
        }
        run
    }

    fn still_replicated(&self, id: TaskId) -> bool {
        matches!(self.tasks.get(id as usize), Some(Some(t))
            if t.state == TaskState::Memory && t.who_has.len() > 1)
    }

    /// Replicas `ReduceReplicas` keeps: one, or one per distinct worker the
    /// waiting dependents are processing on (an unassigned one counting as
    /// its own).
    fn replicas_needed(&self, id: TaskId) -> usize {
        let waiters = &self.task(id).waiters;
        let n = waiters.len();
        if n <= 1 || n >= DISTINCT_WAITERS_BELOW {
            return n.max(1);
        }
        let mut places: SmallVec<[(bool, u32); 8]> = waiters
            .iter()
            .map(|&d| match self.task(d).processing_on {
                Some(w) => (true, w.0),
                None => (false, d),
            })
            .collect();
        places.sort_unstable();
        places.dedup();
        places.len().max(1)
    }

    /// Python's `_find_dropper`: the holder to drop a replica from, or
    /// `None` when none may go.
    fn find_dropper(
        &self,
        id: TaskId,
        pending: &[WorkerId],
        memory: &FxHashMap<WorkerId, i64>,
    ) -> Option<WorkerId> {
        let t = self.task(id);
        if t.who_has.len() < pending.len() + 2 || t.is_actor() {
            return None;
        }
        let busy: SmallVec<[WorkerId; 4]> = t
            .waiters
            .iter()
            .filter_map(|&d| self.task(d).processing_on)
            .collect();
        let running = |w: &WorkerId| {
            self.workers
                .get(w)
                .is_some_and(|x| x.status == WorkerStatus::Running)
        };
        let mut busy_holders = t
            .who_has
            .iter()
            .filter(|w| !pending.contains(w) && busy.contains(w))
            .peekable();
        let has_busy_holders = busy_holders.peek().is_some();
        let all_busy_not_running = busy_holders.all(|w| !running(w));
        let candidates: SmallVec<[WorkerId; 4]> = t
            .who_has
            .iter()
            .copied()
            .filter(|w| !pending.contains(w) && !busy.contains(w))
            .collect();
        let choice = *candidates
            .iter()
            .max_by_key(|w| (!running(w), memory.get(w).copied().unwrap_or(0), **w))?;
        if candidates.len() == 1 && running(&choice) && has_busy_holders && all_busy_not_running {
            // the only replica on a worker that is neither paused nor retiring
            return None;
        }
        Some(choice)
    }
}
