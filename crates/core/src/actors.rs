//! Actors (`client.submit(Cls, actor=True)`), the scheduler's part.
//!
//! Why: an actor is a task whose result, a stateful object, stays in its
//! worker's memory; the client then calls its methods on that worker. The
//! scheduler marks the task (`update-graph`'s `actors`), tells the worker
//! (`compute-task`'s `actor`), places each actor on the worker holding the
//! fewest actors (Python's `worker_objective`), never moves it (no
//! stealing, no retirement of its worker: Python's `RetireWorker` refuses
//! too), and, because the object cannot be recomputed, fails it with
//! `RuntimeError("Worker holding Actor was lost")` when its worker goes
//! (Python's `memory -> erred`).

use crate::ids::{TaskId, WorkerId};
use crate::placement::Decision;
use crate::state::State;
use crate::task::{ErrorInfo, TaskState};
use crate::transitions::Recs;
use dask_wire::pickle::{self, PickleArg};
use dask_wire::{Key, Value};
use rustc_hash::FxHashMap;

/// The error an actor whose worker is gone fails with (Python's text).
const ACTOR_LOST: &str = "Worker holding Actor was lost";

impl State {
    /// Mark the known tasks among `keys` as actors (`update-graph`'s
    /// `actors`), before they are scheduled.
    pub(crate) fn mark_actors(&mut self, keys: &[Key]) {
        for key in keys {
            if let Some(id) = self.task_id(key) {
                self.task_mut(id).extra_mut().actor = true;
                self.actor_tasks.insert(id);
            }
        }
    }

    /// Per worker, the actors it runs or holds (Python's `WorkerState.actors`),
    /// derived from the few actor tasks rather than kept per worker.
    fn actor_counts(&self) -> FxHashMap<WorkerId, usize> {
        let mut counts = FxHashMap::default();
        for &id in &self.actor_tasks {
            let t = self.task(id);
            if let Some(w) = t.processing_on {
                *counts.entry(w).or_default() += 1;
            }
            if t.state == TaskState::Memory {
                for &w in &t.who_has {
                    *counts.entry(w).or_default() += 1;
                }
            }
        }
        counts
    }

    /// The actor tasks running on or held by `w`.
    pub(crate) fn actors_on(&self, w: WorkerId) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = self
            .actor_tasks
            .iter()
            .copied()
            .filter(|&id| {
                let t = self.task(id);
                t.processing_on == Some(w)
                    || (t.state == TaskState::Memory && t.who_has.contains(&w))
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Where actor `id` goes: among the allowed running workers (its inputs
    /// do not pull it), the one with the fewest actors, then the earliest
    /// start, then the least data (Python's `worker_objective` for actors).
    pub(crate) fn decide_actor_worker(&self, id: TaskId, valid: Option<&[WorkerId]>) -> Decision {
        let candidates: Vec<WorkerId> = match valid {
            Some(v) => v.to_vec(),
            None => self.running_workers().map(|w| w.id).collect(),
        };
        let counts = self.actor_counts();
        candidates
            .into_iter()
            .filter_map(|w| self.workers.get(&w))
            .map(|w| {
                let (start, nbytes) = self.objective(id, w);
                (counts.get(&w.id).copied().unwrap_or(0), start, nbytes, w.id)
            })
            .min_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then(a.2.cmp(&b.2))
                    .then(a.3.cmp(&b.3))
            })
            .map_or(Decision::NoWorker, |c| Decision::Worker(c.3))
    }

    /// An actor in memory lost its worker (Python's `memory -> erred`): its
    /// other holders free it, and it errs with [`ACTOR_LOST`], taking its
    /// dependents that are not in memory with it. It is never recomputed:
    /// its state lived only in that worker.
    pub(crate) fn actor_lost(&mut self, id: TaskId) -> Recs {
        self.release_replicas(id, "actor-lost");
        let exception = pickle::call(
            "builtins",
            "RuntimeError",
            &[PickleArg::Str(ACTOR_LOST.to_string())],
        );
        tracing::warn!(task = %self.task(id).key, "{ACTOR_LOST}");
        self.task_mut(id).extra_mut().error = Some(ErrorInfo {
            exception: Value::Bin(exception),
            traceback: Value::Nil,
            exception_text: format!("RuntimeError: {ACTOR_LOST}"),
            traceback_text: String::new(),
        });
        self.enter_erred(id, id)
    }
}
