//! The scheduler's half of Dask's P2P shuffle and rechunk (Python's
//! `ShuffleSchedulerPlugin`).
//!
//! A P2P graph has transfer tasks, one barrier task (`shuffle-barrier-<id>`)
//! and output tasks. The first transfer task to run asks the scheduler for
//! the shuffle's run (`shuffle_get_or_create`); the scheduler then maps every
//! output partition to a worker and starts a *run* (a run id and the workers
//! taking part). Output tasks that start on the wrong worker ask for a
//! restriction to the right one (`shuffle_restrict_task`) and reschedule
//! themselves. If a participating worker leaves, the run is failed on the
//! workers and the shuffle restarts: its barrier, the barrier's inputs and
//! its outputs are released and computed again under a new run. A barrier
//! that is released, errs or is forgotten ends its run.
//!
//! The pickled `ShuffleSpec` of each barrier comes from the graph
//! materializer ([`State::p2p_add_specs`]); building a run (which calls the
//! spec's `pick_worker`) is Python's work, done by the server through a
//! materializer helper between [`State::p2p_get_or_create`] and
//! [`State::p2p_install`].

use crate::ids::TaskId;
use crate::state::State;
use crate::task::{Restrictions, TaskState};
use crate::transitions::Target;
use bytes::Bytes;
use dask_wire::value::{Opaque, OpaqueKind};
use dask_wire::{Key, Value};
use rustc_hash::FxHashMap;
use std::collections::{BTreeSet, HashMap};

/// The key prefix of barrier tasks (Python's `_BARRIER_PREFIX`).
pub const BARRIER_PREFIX: &str = "shuffle-barrier-";

/// The barrier key of shuffle `id`.
pub fn barrier_key(id: &str) -> Key {
    Key::from_str_key(&format!("{BARRIER_PREFIX}{id}"))
}

/// A run in progress.
#[derive(Debug, Clone)]
struct ActiveShuffle {
    run_id: i64,
    /// The pickled `ShuffleRunSpec` (`__Pickled__` sub-header, no frames).
    run_spec: Bytes,
    /// The pickled `{partition: worker}` mapping, for shuffles that share
    /// output tasks (a hash join's two sides must agree).
    worker_for: Bytes,
    participating: BTreeSet<String>,
    /// Output tasks restricted to their partition's worker (id and key:
    /// an id is reused once its task is forgotten), with the restrictions
    /// they had before.
    restricted: Vec<(TaskId, Key, Option<Restrictions>)>,
}

/// P2P bookkeeping (see the module docs).
#[derive(Debug, Default)]
pub struct P2p {
    /// Pickled `ShuffleSpec` of every shuffle in a graph.
    specs: HashMap<String, Bytes>,
    /// Barrier task → shuffle id (the transition hook's lookup).
    by_barrier: FxHashMap<TaskId, String>,
    active: HashMap<String, ActiveShuffle>,
    last_run_id: i64,
    shift: usize,
    /// While a worker is being removed: the shuffles deactivated meanwhile,
    /// which are restarted at the end.
    deactivated: Option<Vec<String>>,
}

/// Why a P2P request is refused: Python's `P2PConsistencyError` message.
pub type P2pError = String;

/// What the server does for `shuffle_get_or_create`.
#[derive(Debug, Clone, PartialEq)]
pub enum GetOrCreate {
    /// The run exists: answer with its pickled `ShuffleRunSpec`.
    Run(Opaque),
    /// Start a run: have a materializer helper build it, then
    /// [`State::p2p_install`] it.
    Create(CreateRun),
}

/// What a helper needs to build a run (Python's `_create`).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRun {
    /// The shuffle id.
    pub id: String,
    /// The pickled `ShuffleSpec`.
    pub spec: Bytes,
    /// The workers to map partitions to, in order (already rotated so that
    /// small concurrent shuffles spread over the cluster).
    pub workers: Vec<String>,
    /// Pickled mappings of other running shuffles that share output tasks.
    pub existing: Vec<Bytes>,
    /// The run id to give it.
    pub run_id: i64,
}

fn run_opaque(run_spec: &Bytes) -> Opaque {
    Opaque {
        kind: OpaqueKind::Pickled,
        header: run_spec.clone(),
        frames: Vec::new(),
    }
}

impl State {
    /// The materializer found these shuffles (`{id: pickled ShuffleSpec}`)
    /// in a graph just submitted: remember them with their barrier tasks.
    pub fn p2p_add_specs(&mut self, specs: Vec<(String, Bytes)>) {
        for (id, spec) in specs {
            let Some(barrier) = self.task_id(&barrier_key(&id)) else {
                continue;
            };
            self.p2p.by_barrier.insert(barrier, id.clone());
            self.p2p.specs.insert(id, spec);
        }
    }

    /// `shuffle_get`: the running shuffle's run spec; `worker` takes part.
    pub fn p2p_get(&mut self, id: &str, worker: &str) -> Result<Opaque, P2pError> {
        if self.worker_id(worker).is_none() {
            return Err(format!("Scheduler is unaware of this worker {worker:?}"));
        }
        let Some(run) = self.p2p.active.get_mut(id) else {
            return Err(format!("No active shuffle with id={id:?} found"));
        };
        run.participating.insert(worker.to_string());
        Ok(run_opaque(&run.run_spec))
    }

    /// `shuffle_get_or_create`, asked by transfer task `key` on `worker`.
    pub fn p2p_get_or_create(
        &mut self,
        id: &str,
        key: &Key,
        worker: &str,
    ) -> Result<GetOrCreate, P2pError> {
        if self.p2p.active.contains_key(id) {
            return self.p2p_get(id, worker).map(GetOrCreate::Run);
        }
        let Some(barrier) = self.task_id(&barrier_key(id)) else {
            return Err(format!(
                "Barrier task with key '{BARRIER_PREFIX}{id}' does not exist. This may be \
                 caused by task fusion during graph generation. Please let us know that you \
                 ran into this by leaving a comment at distributed#7816."
            ));
        };
        match self.task_id(key).map(|t| self.task(t).state) {
            Some(TaskState::Processing) => {}
            other => {
                return Err(format!(
                    "Expected <TaskState {}> to be processing, is {}.",
                    crate::coordination::key_label(key),
                    other.map_or("forgotten", TaskState::as_str)
                ))
            }
        }
        let Some(spec) = self.p2p.specs.get(id) else {
            return Err(format!("No shuffle spec known for shuffle {id:?}"));
        };
        let spec = spec.clone();
        let mut workers: Vec<String> = match self
            .task(barrier)
            .restrictions()
            .filter(|r| !r.workers.is_empty())
        {
            Some(r) => r
                .workers
                .iter()
                .flat_map(|spec| self.resolve_workers(spec))
                .collect(),
            None => {
                let mut all: Vec<_> = self.workers.values().map(|w| w.id).collect();
                all.sort_unstable(); // registration order, as Python's dict
                all.iter()
                    .map(|w| self.workers[w].info.address.clone())
                    .collect()
            }
        };
        if workers.is_empty() {
            return Err(format!("No workers to run shuffle {id:?} on"));
        }
        let shift = self.p2p.shift % workers.len();
        self.p2p.shift += 1;
        workers.rotate_left(shift);
        let existing = self.p2p_shared_output_mappings(barrier);
        self.p2p.last_run_id += 1;
        Ok(GetOrCreate::Create(CreateRun {
            id: id.to_string(),
            spec,
            workers,
            existing,
            run_id: self.p2p.last_run_id,
        }))
    }

    /// The `worker_for` mappings of the running shuffles that share output
    /// tasks with the one of `barrier` (the two sides of a hash join), which
    /// its own mapping must agree with (Python's `_calculate_worker_for`).
    fn p2p_shared_output_mappings(&self, barrier: TaskId) -> Vec<Bytes> {
        let mut existing = Vec::new();
        for &out in self.task(barrier).dependents.iter() {
            for &other in self.task(out).dependencies.iter() {
                if other == barrier {
                    continue;
                }
                if let Some(run) = self
                    .p2p
                    .by_barrier
                    .get(&other)
                    .and_then(|sid| self.p2p.active.get(sid))
                {
                    if !existing.contains(&run.worker_for) {
                        existing.push(run.worker_for.clone());
                    }
                }
            }
        }
        existing
    }

    /// Install the run a helper built for [`CreateRun`] (unless another
    /// worker's request installed one meanwhile, which then wins); `worker`
    /// takes part. Returns the run spec to answer with, or `None` when a
    /// shuffle sharing its output tasks was installed while the helper
    /// worked: the mapping did not take that one's into account and could
    /// send a hash join's two sides to different workers, a deadlock; the
    /// caller builds the run again (Python creates a run in one step, so it
    /// never meets this).
    pub fn p2p_install(
        &mut self,
        create: &CreateRun,
        worker: &str,
        run_spec: Bytes,
        worker_for: Bytes,
        participating: Vec<String>,
    ) -> Result<Option<Opaque>, P2pError> {
        if self.p2p.active.contains_key(&create.id) {
            return self.p2p_get(&create.id, worker).map(Some);
        }
        let Some(barrier) = self.task_id(&barrier_key(&create.id)) else {
            return Err(format!("Shuffle {:?} was forgotten meanwhile", create.id));
        };
        if self.p2p_shared_output_mappings(barrier) != create.existing {
            return Ok(None);
        }
        let mut participating: BTreeSet<String> = participating.into_iter().collect();
        participating.insert(worker.to_string());
        self.p2p.by_barrier.insert(barrier, create.id.clone());
        self.p2p.active.insert(
            create.id.clone(),
            ActiveShuffle {
                run_id: create.run_id,
                run_spec: run_spec.clone(),
                worker_for,
                participating,
                restricted: Vec::new(),
            },
        );
        tracing::warn!(
            "Shuffle {} initialized by task on worker {worker}",
            create.id
        );
        Ok(Some(run_opaque(&run_spec)))
    }

    /// `shuffle_restrict_task`: output task `key` must run on `worker`.
    pub fn p2p_restrict_task(
        &mut self,
        id: &str,
        run_id: i64,
        key: &Key,
        worker: &str,
    ) -> Result<(), P2pError> {
        let Some(run) = self.p2p.active.get(id) else {
            return Err(format!("No active shuffle with id={id:?} found"));
        };
        if run.run_id > run_id {
            return Err(format!(
                "Request stale, expected run_id={run_id} for shuffle {id}"
            ));
        }
        if run.run_id < run_id {
            return Err(format!(
                "Request invalid, expected run_id={run_id} for shuffle {id}"
            ));
        }
        let Some(t) = self.task_id(key) else {
            return Err(format!(
                "Unknown task {}",
                crate::coordination::key_label(key)
            ));
        };
        if run.restricted.iter().any(|(r, _, _)| *r == t) {
            return Ok(());
        }
        let original = self.task(t).restrictions().cloned();
        let restricted = Restrictions {
            workers: vec![worker.to_string()],
            ..original.clone().unwrap_or_default()
        };
        self.task_mut(t).extra_mut().restrictions = Some(restricted);
        if let Some(run) = self.p2p.active.get_mut(id) {
            run.restricted.push((t, key.clone(), original));
        }
        Ok(())
    }

    /// `shuffle_barrier`: every input is in. With consistent run ids, the
    /// workers to tell (`shuffle_inputs_done`); otherwise the shuffle
    /// restarts and there is no one to tell.
    pub fn p2p_barrier(
        &mut self,
        id: &str,
        run_id: i64,
        consistent: bool,
        now: f64,
    ) -> Result<Vec<String>, P2pError> {
        self.now = now;
        let Some(run) = self.p2p.active.get(id) else {
            return Err(format!("No active shuffle with id={id:?} found"));
        };
        if run.run_id != run_id {
            return Err(format!(
                "run_id={run_id} does not match shuffle {id}[{}]",
                run.run_id
            ));
        }
        if !consistent {
            tracing::warn!("Shuffle {id} restarted due to data inconsistency during barrier");
            self.p2p_restart(id);
            return Ok(Vec::new());
        }
        Ok(run.participating.iter().cloned().collect())
    }

    /// The transition hook: a barrier that was released, erred or
    /// forgotten ends its shuffle's run (and a forgotten one its spec).
    /// Called after every transition while any shuffle is known.
    pub(crate) fn p2p_after_transition(&mut self, id: TaskId) {
        let Some(sid) = self.p2p.by_barrier.get(&id).cloned() else {
            return;
        };
        let gone = !matches!(self.tasks.get(id as usize), Some(Some(_)));
        let ended = gone || matches!(self.task(id).state, TaskState::Released | TaskState::Erred);
        if ended && self.p2p.active.contains_key(&sid) {
            self.p2p_deactivate(&sid, &format!("Shuffle {sid} forgotten"));
        }
        if gone {
            self.p2p.by_barrier.remove(&id);
            self.p2p.specs.remove(&sid);
        }
    }

    /// True while any shuffle is known (the transition hook is needed).
    pub(crate) fn p2p_watching(&self) -> bool {
        !self.p2p.by_barrier.is_empty()
    }

    /// An output task of a running shuffle must not be queued as a root
    /// task (Python's `_ensure_output_tasks_are_non_rootish`).
    pub(crate) fn p2p_is_output(&self, id: TaskId) -> bool {
        !self.p2p.active.is_empty()
            && self.task(id).dependencies.iter().any(|d| {
                self.p2p
                    .by_barrier
                    .get(d)
                    .is_some_and(|sid| self.p2p.active.contains_key(sid))
            })
    }

    /// True if the worker at `address` takes part in a running shuffle.
    pub(crate) fn p2p_participant(&self, address: &str) -> bool {
        self.p2p
            .active
            .values()
            .any(|run| run.participating.contains(address))
    }

    /// End a run: fail it on its workers and lift its restrictions.
    fn p2p_deactivate(&mut self, sid: &str, message: &str) {
        let Some(run) = self.p2p.active.remove(sid) else {
            return;
        };
        tracing::warn!("Shuffle {sid} deactivated");
        let msg = Value::map([
            ("op", Value::str("shuffle-fail")),
            ("shuffle_id", Value::str(sid)),
            ("run_id", Value::Int(run.run_id)),
            ("message", Value::str(message)),
        ]);
        for addr in &run.participating {
            if let Some(w) = self.worker_id(addr) {
                self.push_worker(w, msg.clone());
            }
        }
        for (t, key, original) in run.restricted {
            if matches!(self.tasks.get(t as usize), Some(Some(task)) if task.key == key) {
                self.task_mut(t).extra_mut().restrictions = original;
            }
        }
        if let Some(list) = self.p2p.deactivated.as_mut() {
            list.push(sid.to_string());
        }
    }

    /// Start collecting the shuffles a worker removal deactivates.
    pub(crate) fn p2p_removal_started(&mut self) {
        if self.p2p_watching() {
            self.p2p.deactivated = Some(Vec::new());
        }
    }

    /// A worker left: fail the runs it took part in, then restart every
    /// shuffle whose run ended during its removal.
    pub(crate) fn p2p_worker_removed(&mut self, address: &str) {
        let Some(mut ended) = self.p2p.deactivated.take() else {
            return;
        };
        let involved: Vec<String> = self
            .p2p
            .active
            .iter()
            .filter(|(_, run)| run.participating.contains(address))
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in involved {
            self.p2p_deactivate(
                &sid,
                &format!("Worker {address} left during active shuffle {sid}"),
            );
            ended.push(sid);
        }
        ended.sort();
        ended.dedup();
        for sid in ended {
            self.p2p_restart(&sid);
        }
    }

    /// Release the shuffle's outputs, barrier and inputs so that they run
    /// again under a new run (nothing if an output erred).
    fn p2p_restart(&mut self, sid: &str) {
        let Some(barrier) = self.task_id(&barrier_key(sid)) else {
            return;
        };
        self.p2p_deactivate(sid, &format!("Shuffle {sid} restarted"));
        let t = self.task(barrier);
        if t.dependents
            .iter()
            .any(|d| self.task(*d).state == TaskState::Erred)
        {
            return;
        }
        let mut recs: Vec<(TaskId, Target)> = t
            .dependents
            .iter()
            .map(|d| (*d, Target::Released))
            .collect();
        recs.push((barrier, Target::Released));
        recs.extend(t.dependencies.iter().map(|d| (*d, Target::Released)));
        tracing::warn!("Shuffle {sid} restarted");
        self.transitions(recs);
    }

    /// Running shuffles and the workers taking part (diagnostics, tests).
    pub fn p2p_active(&self) -> Vec<(String, i64, Vec<String>)> {
        let mut out: Vec<_> = self
            .p2p
            .active
            .iter()
            .map(|(sid, r)| {
                (
                    sid.clone(),
                    r.run_id,
                    r.participating.iter().cloned().collect(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Forget every shuffle (`restart`).
    pub(crate) fn p2p_clear(&mut self) {
        self.p2p = P2p::default();
    }
}
