//! Where a ready task runs: restrictions, resources, data locality, occupancy
//! and root-task queuing (`worker-saturation`), after `Scheduler.decide_worker_*`.

use crate::ids::{TaskId, WorkerId};
use crate::state::State;
use crate::task::{Restrictions, TaskState};
use crate::worker::{Worker, WorkerStatus};

/// The outcome of placing a ready task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it to this worker now.
    Worker(WorkerId),
    /// A root task while every worker is saturated: hold it in the scheduler queue.
    Queue,
    /// No running worker can ever take it as things stand.
    NoWorker,
}

/// Does `w` satisfy the worker/host/name part of the restrictions?
fn location_ok(w: &Worker, r: &Restrictions) -> bool {
    r.workers.is_empty()
        || r.workers
            .iter()
            .any(|s| *s == w.info.address || *s == w.name_str || *s == w.host)
}

/// Does `w` have the total capacity for every requested resource?
fn resources_ok(w: &Worker, r: &Restrictions) -> bool {
    r.resources
        .iter()
        .all(|(name, amount)| w.resource(name) >= *amount)
}

/// The key of `w` in `State::slot_index` if it is running with a free
/// root-task slot (seceded tasks take none): the bits of `processing /
/// threads`, a non-negative f64, whose bit patterns order like the numbers
/// (`total_cmp`), so that the index orders exactly like the former scan.
pub(crate) fn slot_key(w: &Worker) -> Option<u64> {
    (w.status == WorkerStatus::Running
        && w.processing.len().saturating_sub(w.long_running.len()) < w.task_slots)
        .then(|| (w.processing.len() as f64 / w.threads()).to_bits())
}

impl State {
    /// Root-task slots of a worker with `nthreads` under `worker-saturation`
    /// (computed once, when the worker registers).
    pub(crate) fn task_slots(&self, nthreads: u32) -> usize {
        let sat = self.config.worker_saturation;
        ((sat * f64::from(nthreads.max(1))).ceil() as usize).max(1)
    }

    /// Running workers allowed by the task's restrictions (`None` = unrestricted).
    fn valid_workers(&self, id: TaskId) -> Option<Vec<WorkerId>> {
        let r = self.task(id).restrictions()?;
        let strict: Vec<WorkerId> = self
            .running_workers()
            .filter(|w| location_ok(w, r) && resources_ok(w, r))
            .map(|w| w.id)
            .collect();
        if strict.is_empty() && r.loose {
            return Some(
                self.running_workers()
                    .filter(|w| resources_ok(w, r))
                    .map(|w| w.id)
                    .collect(),
            );
        }
        Some(strict)
    }

    /// Dask's `is_rootish`: unrestricted tasks of a group much wider than the
    /// cluster with (almost) no dependencies, or data-producing tasks.
    pub(crate) fn is_rootish(&self, id: TaskId) -> bool {
        let t = self.task(id);
        if t.restrictions().is_some() {
            return false;
        }
        if t.data_producer {
            return true;
        }
        // Python's `total_nthreads`: every registered worker, paused ones included
        // (pausing a worker must not turn ordinary tasks into queued root tasks).
        if self.groups[t.group as usize] as u64 <= 2 * self.total_nthreads {
            return false;
        }
        if t.dependencies.len() >= 5 {
            return false;
        }
        // the distinct groups of (at most four) dependencies
        let mut dep_groups = [0u32; 4];
        let mut n = 0;
        for d in &t.dependencies {
            let g = self.task(*d).group;
            if !dep_groups[..n].contains(&g) {
                dep_groups[n] = g;
                n += 1;
            }
        }
        let dep_group_sizes: u64 = dep_groups[..n]
            .iter()
            .map(|g| self.groups[*g as usize] as u64)
            .sum();
        n < 5 && dep_group_sizes < 5
    }

    /// Estimated start time of `id` on `w`: queued work plus transfer of missing inputs.
    fn objective(&self, id: TaskId, w: &Worker) -> (f64, i64) {
        let comm_bytes: i64 = self
            .task(id)
            .dependencies
            .iter()
            .map(|d| self.task(*d))
            .filter(|d| !d.who_has.contains(&w.id))
            .map(|d| d.nbytes.max(0))
            .sum();
        let start = self.occupancy(w) / w.threads() + comm_bytes as f64 / self.config.bandwidth;
        (start, w.nbytes)
    }

    /// Choose a worker (or the queue, or nowhere) for a ready task.
    pub(crate) fn decide_worker(&mut self, id: TaskId) -> Decision {
        let valid = self.valid_workers(id);
        if let Some(v) = &valid {
            if v.is_empty() {
                return Decision::NoWorker;
            }
        }
        if self.running_workers().next().is_none() {
            return Decision::NoWorker;
        }
        if valid.is_none() && self.config.worker_saturation.is_finite() && self.is_rootish(id) {
            return match self.least_busy_with_slot() {
                Some(w) => Decision::Worker(w),
                None => Decision::Queue,
            };
        }
        let deps = &self.task(id).dependencies;
        if deps.is_empty() && valid.is_none() {
            return Decision::Worker(self.least_occupied());
        }
        let mut candidates: Vec<WorkerId> = deps
            .iter()
            .flat_map(|d| self.task(*d).who_has.iter().copied())
            .filter(|w| {
                self.workers
                    .get(w)
                    .is_some_and(|w| w.status == WorkerStatus::Running)
            })
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        if let Some(v) = &valid {
            candidates.retain(|w| v.contains(w));
            if candidates.is_empty() {
                candidates = v.clone();
            }
        } else if candidates.is_empty() {
            candidates = self.running_workers().map(|w| w.id).collect();
        }
        candidates
            .into_iter()
            .min_by(|a, b| {
                let oa = self.objective(id, &self.workers[a]);
                let ob = self.objective(id, &self.workers[b]);
                oa.0.total_cmp(&ob.0).then(oa.1.cmp(&ob.1))
            })
            .map_or(Decision::NoWorker, Decision::Worker)
    }

    /// Least occupied running worker, rotating among idle ones.
    fn least_occupied(&mut self) -> WorkerId {
        let running: Vec<&Worker> = self.running_workers().collect();
        let idle: Vec<WorkerId> = running
            .iter()
            .filter(|w| w.processing.is_empty())
            .map(|w| w.id)
            .collect();
        if !idle.is_empty() {
            self.round_robin = self.round_robin.wrapping_add(1);
            return idle[self.round_robin % idle.len()];
        }
        running
            .iter()
            .min_by(|a, b| {
                (self.occupancy(a) / a.threads())
                    .total_cmp(&(self.occupancy(b) / b.threads()))
                    .then(a.processing.len().cmp(&b.processing.len()))
            })
            .map(|w| w.id)
            .expect("at least one running worker")
    }

    /// Running worker with a free root-task slot and the fewest tasks per
    /// thread (ties: lowest id): the first entry of `slot_index`, O(log W).
    fn least_busy_with_slot(&self) -> Option<WorkerId> {
        self.slot_index.first().map(|&(_, w)| w)
    }

    /// Put worker `w` back in `slot_index` under its current key, or take
    /// it out; call after its processing set, seceded (`long_running`) set
    /// or status changed.
    pub(crate) fn refresh_slot_index(&mut self, w: WorkerId) {
        let Some(worker) = self.workers.get_mut(&w) else {
            return;
        };
        if let Some(k) = worker.slot_key.take() {
            self.slot_index.remove(&(k, w));
        }
        if let Some(k) = slot_key(worker) {
            worker.slot_key = Some(k);
            self.slot_index.insert((k, w));
        }
    }

    /// Hand queued root tasks to workers that have free slots, best priority first.
    pub(crate) fn fill_queued_slots(&mut self) {
        while !self.queued.is_empty() {
            let Some(w) = self.least_busy_with_slot() else {
                break;
            };
            let Some((_, id)) = self.queued.pop_first() else {
                break;
            };
            if self.task(id).state == TaskState::Queued {
                self.transition_counter += 1;
                self.assign(id, w);
            }
        }
    }
}
