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
    /// A root task with a free slot on this worker: send it now, and
    /// reserve its queued siblings for the same worker.
    Root(WorkerId),
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
    /// cluster whose group depends on few, small groups (the union over all
    /// the group's tasks, the group itself included, like Python's
    /// `TaskGroup.dependencies`), or data-producing tasks.
    pub(crate) fn is_rootish(&self, id: TaskId) -> bool {
        let t = self.task(id);
        if t.restrictions().is_some() || t.is_actor() {
            return false;
        }
        if t.data_producer {
            return true;
        }
        if self.p2p_is_output(id) {
            return false;
        }
        // Python's `total_nthreads`: every registered worker, paused ones included
        // (pausing a worker must not turn ordinary tasks into queued root tasks).
        self.groups.size(t.group) > 2 * self.total_nthreads
            && self.groups.has_few_dependencies(t.group)
    }

    /// Estimated start time of `id` on `w`: queued work plus transfer of missing inputs.
    pub(crate) fn objective(&self, id: TaskId, w: &Worker) -> (f64, i64) {
        let comm_bytes: i64 = self
            .task(id)
            .dependencies
            .iter()
            .map(|d| self.task(*d))
            .filter(|d| !d.who_has.contains(&w.id))
            .map(|d| d.nbytes.max(0))
            .sum();
        let start = self.occupancy(w) / w.threads() + comm_bytes as f64 / self.bandwidth;
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
        // Root-ish tasks wait in the queue also while no worker runs, as in
        // Python (`decide_worker_rootish_queuing_enabled` returns None): the
        // rest wait in `no-worker`.
        if valid.is_none() && self.config.worker_saturation.is_finite() && self.is_rootish(id) {
            return match self.least_busy_with_slot() {
                Some(w) => Decision::Root(w),
                None => Decision::Queue,
            };
        }
        if self.running_workers().next().is_none() {
            return Decision::NoWorker;
        }
        if self.task(id).is_actor() {
            return self.decide_actor_worker(id, valid.as_deref());
        }
        let deps = &self.task(id).dependencies;
        if deps.is_empty() && valid.is_none() {
            return Decision::Worker(self.least_occupied());
        }
        // (inline: a task's inputs are held by a few workers)
        let mut candidates: smallvec::SmallVec<[WorkerId; 8]> = deps
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
                candidates = v.iter().copied().collect();
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

    /// Hand queued root tasks to workers that have free slots: to each, the
    /// tasks reserved for it first, then the shared queue's best priority,
    /// and when both are empty, another worker's reservation.
    pub(crate) fn fill_queued_slots(&mut self) {
        while self.queued_len() > 0 {
            let Some(w) = self.least_busy_with_slot() else {
                break;
            };
            let Some((id, reserved)) = self.take_queued_for(w) else {
                break;
            };
            if self.task(id).state == TaskState::Queued {
                self.transition_counter += 1;
                self.assign(id, w);
                // queued -> processing, for the log and the plugins
                self.log_direct_transition(id, TaskState::Queued, &Default::default());
                // a reserved task's family was reserved with it
                if !reserved {
                    self.reserve_family(id, w);
                }
            }
        }
    }

    /// Queued root tasks, reserved or not.
    pub(crate) fn queued_len(&self) -> usize {
        self.queued.len() + self.reserved_on.len()
    }

    /// The next queued task for worker `w` (see `fill_queued_slots`), out
    /// of whichever set held it, and whether it was reserved.
    fn take_queued_for(&mut self, w: WorkerId) -> Option<(TaskId, bool)> {
        let own = self
            .workers
            .get_mut(&w)
            .and_then(|x| x.reserved.pop_first());
        let (_, id) = match own.or_else(|| self.queued.pop_first()) {
            Some(entry) => entry,
            None => {
                // The shared queue is empty: take the best task of the
                // worker with the most reserved (its family then needs one
                // transfer, but no thread waits while there is work).
                let victim = self
                    .workers
                    .values()
                    .filter(|x| !x.reserved.is_empty())
                    .max_by_key(|x| (x.reserved.len(), std::cmp::Reverse(x.id)))?
                    .id;
                self.workers.get_mut(&victim)?.reserved.pop_first()?
            }
        };
        Some((id, self.reserved_on.remove(&id).is_some()))
    }

    /// Put the queued tasks reserved for `w` back in the shared queue (it
    /// paused or is retiring) and hand them to workers with free slots.
    /// Call after `w` left `slot_index`.
    pub(crate) fn release_reservations(&mut self, w: WorkerId) {
        let Some(worker) = self.workers.get_mut(&w) else {
            return;
        };
        if worker.reserved.is_empty() {
            return;
        }
        for entry in std::mem::take(&mut worker.reserved) {
            self.reserved_on.remove(&entry.1);
            self.queued.insert(entry);
        }
        self.fill_queued_slots();
    }

    /// Root task `id` now runs on `w`: reserve its queued relatives for
    /// `w`, so that the tasks joining them find their inputs in one place
    /// instead of fetching them from other workers.
    ///
    /// The family is the queued root tasks below a joining task: first the
    /// nearest task above `id` with more than one input, reached through
    /// tasks with one input and one dependent (like a chunk's `sum` between
    /// the chunk and a partial sum of a few chunks), then that task's own
    /// joining task and so on, as long as the family stays within
    /// `FAMILY_MAX` root tasks and within `w`'s share of the queue by
    /// threads (so that a small graph is not funnelled onto one worker).
    ///
    /// Python's scheduler hands each freed slot the best queued task, so
    /// siblings land on whichever workers free up first and most joining
    /// tasks fetch inputs; on a tree reduction over small chunks those
    /// transfers cost the workers more CPU than the tasks. Reservations
    /// change only which worker takes a queued task: slots
    /// (`worker-saturation`) still bound how many run at once.
    pub(crate) fn reserve_family(&mut self, id: TaskId, w: WorkerId) {
        if !self.config.sibling_affinity || self.queued.is_empty() {
            return;
        }
        let Some(threads) = self
            .workers
            .get(&w)
            .map(|x| u64::from(x.info.nthreads.max(1)))
        else {
            return;
        };
        let share = (self.queued_len() as u64 * threads).div_ceil(self.total_nthreads.max(1));
        let cap = FAMILY_MAX.min(share as usize);
        let mut family = Family::new();
        let Some(mut join) = self.joining_task(id) else {
            return;
        };
        if !self.collect_family(join, cap, &mut family) {
            return;
        }
        while let Some(up) = self.joining_task(join) {
            let mut wider = Family::new();
            if !self.collect_family(up, cap, &mut wider) {
                break;
            }
            family = wider;
            join = up;
        }
        let entries: smallvec::SmallVec<[(crate::task::Priority, TaskId); FAMILY_MAX]> = family
            .into_iter()
            .filter(|&root| root != id)
            .map(|root| (self.task(root).priority, root))
            .collect();
        let Some(worker) = self.workers.get_mut(&w) else {
            return;
        };
        for entry in entries {
            // only unreserved ones: a relative reserved elsewhere stays there
            if self.queued.remove(&entry) {
                self.reserved_on.insert(entry.1, w);
                worker.reserved.insert(entry);
            }
        }
    }

    /// The nearest task above `id` with more than one input (at most
    /// `FAMILY_MAX`), through tasks with one dependent and one input.
    fn joining_task(&self, id: TaskId) -> Option<TaskId> {
        let mut cur = id;
        for _ in 0..=FAMILY_CHAIN {
            let t = self.task(cur);
            if t.dependents.len() != 1 {
                return None;
            }
            let up = *t.dependents.iter().next()?;
            let inputs = self.task(up).dependencies.len();
            if inputs > 1 {
                return (inputs <= FAMILY_MAX).then_some(up);
            }
            cur = up;
        }
        None
    }

    /// The queued root tasks below `join`, through waiting tasks with one
    /// dependent, into `out`; false when there are more than `cap` (at most
    /// `FAMILY_MAX`), or the walk gets longer than such a family can need.
    fn collect_family(&self, join: TaskId, cap: usize, out: &mut Family) -> bool {
        let mut stack: smallvec::SmallVec<[TaskId; 32]> =
            self.task(join).dependencies.iter().copied().collect();
        let mut visited = 0;
        while let Some(cur) = stack.pop() {
            visited += 1;
            if visited > 4 * FAMILY_MAX {
                return false;
            }
            let t = self.task(cur);
            match t.state {
                TaskState::Queued => {
                    if out.len() >= cap {
                        return false;
                    }
                    out.push(cur);
                }
                TaskState::Waiting if t.dependents.len() == 1 => {
                    if t.dependencies.len() > FAMILY_MAX {
                        return false;
                    }
                    stack.extend(t.dependencies.iter().copied());
                }
                // running, done, or shared with other tasks: nothing to keep
                _ => {}
            }
        }
        true
    }
}

/// The root tasks of one family (see `State::reserve_family`).
type Family = smallvec::SmallVec<[TaskId; FAMILY_MAX]>;

/// Most root tasks of one family, and most inputs of a joining task: a
/// wider fan-in, like one sum over every chunk, would pull everything onto
/// one worker.
const FAMILY_MAX: usize = 16;

/// Most one-input tasks walked between a task and its joining task.
const FAMILY_CHAIN: usize = 4;
