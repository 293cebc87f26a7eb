//! Work stealing with the real worker protocol (`steal-request` /
//! `steal-response`), after `distributed.stealing.WorkStealing`.
//!
//! Every balancing round (the server calls [`State::balance`] periodically)
//! pairs workers that have idle threads (thieves) with workers that have more
//! tasks assigned than threads (victims). For each free thread of a thief the
//! victim's lowest-priority stealable task (most likely still waiting in the
//! victim's ready queue) is requested back with `steal-request`. Only when the
//! victim answers that it had not started the task (`ready`, `constrained`,
//! `waiting`) is the task reassigned to the thief, with a new `run_id`; if it
//! is already running or done it stays put. A task is therefore never run
//! twice by stealing and never lost: every other answer reschedules it.

use crate::ids::{TaskId, WorkerId};
use crate::messages;
use crate::state::State;
use crate::task::{Priority, TaskState};
use crate::transitions::Target;
use crate::worker::WorkerStatus;
use dask_wire::{Key, Value};

/// A `steal-request` sent and not yet answered.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlightSteal {
    /// Where the task is processing.
    pub victim: WorkerId,
    /// Where it should go.
    pub thief: WorkerId,
    /// The stimulus id of the request (echoed in the response).
    pub stimulus_id: String,
}

/// Dask's `stealing.LATENCY`: the fixed cost (s) of moving a task that has inputs.
const STEAL_LATENCY: f64 = 0.1;

/// Worker states in a `steal-response` meaning "not started, released: move it".
const CONFIRM: [&str; 3] = ["ready", "constrained", "waiting"];
/// Worker states meaning "already running or done: keep it here".
const REJECT: [&str; 5] = [
    "memory",
    "executing",
    "long-running",
    "cancelled",
    "resumed",
];

impl State {
    fn steals_from(&self, w: WorkerId) -> usize {
        self.steals.values().filter(|s| s.victim == w).count()
    }

    fn steals_to(&self, w: WorkerId) -> usize {
        self.steals.values().filter(|s| s.thief == w).count()
    }

    /// Can `id` (processing on its victim) run on `thief`, and is moving it worth it?
    fn stealable(&self, id: TaskId, thief: WorkerId) -> bool {
        let t = self.task(id);
        if self.steals.contains_key(&id) {
            return false;
        }
        let Some(w) = self.workers.get(&thief) else {
            return false;
        };
        if let Some(r) = t.restrictions() {
            let location = r.workers.is_empty()
                || r.workers
                    .iter()
                    .any(|s| *s == w.info.address || *s == w.name_str || *s == w.host);
            let resources = r.resources.iter().all(|(n, a)| w.resource(n) >= *a);
            if !resources || (!location && !r.loose) {
                return false;
            }
        }
        // an actor stays where placement put it (by actor count)
        if self.prefixes[t.prefix as usize].fast || t.is_actor() {
            return false;
        }
        if t.dependencies.is_empty() {
            return true;
        }
        let Some(victim) = t.processing_on.and_then(|v| self.workers.get(&v)) else {
            return false;
        };
        // Python's rule: moving a task with inputs costs their transfer plus a
        // fixed latency; steal only if the thief still finishes it before the
        // victim would get to it (`occ_thief + cost * d <= occ_victim - d / 2`).
        let transfer_bytes: i64 = t
            .dependencies
            .iter()
            .map(|d| self.task(*d))
            .filter(|d| !d.who_has.contains(&thief))
            .map(|d| d.nbytes.max(0))
            .sum();
        let transfer = transfer_bytes as f64 / self.bandwidth + STEAL_LATENCY;
        let d = self.estimated_duration(id);
        let thief_occ = self.occupancy(w) / w.threads();
        let victim_occ = self.occupancy(victim) / victim.threads();
        thief_occ + transfer + d <= victim_occ - d / 2.0
    }

    /// Tasks assigned or on their way to `w`, per thread.
    fn load(&self, w: WorkerId) -> f64 {
        let worker = &self.workers[&w];
        let tasks =
            worker.processing.len() - worker.long_running.len().min(worker.processing.len());
        (tasks + self.steals_to(w)) as f64 / worker.threads()
    }

    /// One balancing round: send `steal-request`s from saturated to idle workers.
    ///
    /// A thief may take work until it holds two tasks per thread (so it does
    /// not sit idle while a steal is in flight), and only from a victim whose
    /// backlog per thread exceeds the thief's by more than one task.
    pub fn balance(&mut self, now: f64) {
        self.now = now;
        if !self.config.work_stealing || self.workers.len() < 2 {
            return;
        }
        let mut thieves: Vec<(f64, WorkerId)> = self
            .running_workers()
            .map(|w| w.id)
            .map(|w| (self.load(w), w))
            .filter(|(load, _)| *load < 1.0)
            .collect();
        if thieves.is_empty() {
            return;
        }
        thieves.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, thief) in thieves {
            loop {
                let threads = self.workers[&thief].threads();
                if self.load(thief) >= 2.0 {
                    break;
                }
                let Some(victim) = self.most_saturated(thief) else {
                    return;
                };
                let victim_backlog = self.load(victim)
                    - self.steals_from(victim) as f64 / self.workers[&victim].threads();
                if victim_backlog - self.load(thief) <= 1.0 / threads {
                    break;
                }
                let Some(id) = self.steal_candidate(victim, thief) else {
                    break;
                };
                self.request_steal(id, victim, thief);
            }
        }
    }

    /// The worker with the most tasks beyond its threads (not counting steals in flight).
    fn most_saturated(&self, thief: WorkerId) -> Option<WorkerId> {
        self.workers
            .values()
            .filter(|w| w.id != thief)
            .filter(|w| matches!(w.status, WorkerStatus::Running | WorkerStatus::Paused))
            .map(|w| {
                let extra = w.processing.len() as i64
                    - w.long_running.len() as i64
                    - w.info.nthreads as i64
                    - self.steals_from(w.id) as i64;
                (extra, w.id)
            })
            .filter(|(extra, _)| *extra > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, w)| w)
    }

    /// The victim's task it will run last: lowest priority and, among equal
    /// priorities, the one assigned first (a worker runs equal-priority tasks
    /// newest first). Tasks the victim refused to give up are skipped.
    fn steal_candidate(&self, victim: WorkerId, thief: WorkerId) -> Option<TaskId> {
        let mut best: Option<(Priority, std::cmp::Reverse<i64>, TaskId)> = None;
        for &id in &self.workers[&victim].processing {
            if self.steal_refused.contains(&id) || !self.stealable(id, thief) {
                continue;
            }
            let t = self.task(id);
            let rank = (t.priority, std::cmp::Reverse(t.run_id), id);
            if best.is_none_or(|b| rank > b) {
                best = Some(rank);
            }
        }
        best.map(|(_, _, id)| id)
    }

    fn request_steal(&mut self, id: TaskId, victim: WorkerId, thief: WorkerId) {
        self.record_steal(id);
        let stimulus_id = self.stimulus("steal");
        let key = self.task(id).key.to_value();
        self.push_worker(victim, messages::steal_request(key, &stimulus_id));
        self.steals.insert(
            id,
            InFlightSteal {
                victim,
                thief,
                stimulus_id,
            },
        );
    }

    /// A victim's `steal-response`: move the task, keep it, or reschedule it.
    pub(crate) fn on_steal_response(
        &mut self,
        w: WorkerId,
        key: &Key,
        state: Option<&str>,
        stimulus_id: Option<&str>,
    ) {
        let Some(id) = self.task_id(key) else { return };
        let Some(steal) = self.steals.get(&id) else {
            return;
        };
        if steal.victim != w || stimulus_id.is_some_and(|s| s != steal.stimulus_id) {
            return;
        }
        let steal = self.steals.remove(&id).expect("checked above");
        let t = self.task(id);
        if t.state != TaskState::Processing || t.processing_on != Some(w) {
            return; // finished, erred or moved meanwhile
        }
        match state {
            Some(s) if REJECT.contains(&s) => {
                // Running or done there: do not ask again while it stays.
                self.steal_refused.insert(id);
            }
            Some(s) if CONFIRM.contains(&s) => {
                self.detach_from_worker(id);
                let thief_ok = self
                    .workers
                    .get(&steal.thief)
                    .is_some_and(|t| t.status == WorkerStatus::Running);
                self.transition_counter += 1;
                if thief_ok {
                    self.send_to_worker(id, steal.thief);
                } else {
                    self.task_mut(id).state = TaskState::Waiting;
                    self.count_state_as(id, TaskState::Waiting);
                    self.transitions(vec![(id, Target::Processing)]);
                }
            }
            _ => {
                // The victim does not have it in a known way: start it again.
                self.transitions(vec![(id, Target::Released)]);
            }
        }
    }

    /// Steals in flight (for tests and diagnostics).
    pub fn steals_in_flight(&self) -> Vec<(Key, Value)> {
        self.steals
            .iter()
            .map(|(id, s)| {
                (
                    self.task(*id).key.clone(),
                    Value::str(s.stimulus_id.as_str()),
                )
            })
            .collect()
    }
}
