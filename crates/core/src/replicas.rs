//! Replica placement a client asks for: `Client.replicate` (copy keys onto
//! `n` workers, in rounds, each holder seeding at most `branching_factor`
//! new copies per round) and `Client.rebalance` (move keys from the workers
//! with the most memory to those with the least, as `Scheduler.rebalance`
//! does).
//!
//! This module only plans and records: the server copies with the worker's
//! `gather` RPC and drops with its `free_keys` RPC, then reports what
//! succeeded with [`State::replicas_copied`] and [`State::replicas_dropped`].
//! Plans hold keys and addresses, not ids, because tasks and workers may
//! come and go while the copies are on the wire.
//!
//! Where Python chooses at random (which extra replicas to drop, which
//! workers receive new ones), this module chooses by memory: copies go to the
//! workers holding the fewest bytes and extra replicas leave those holding
//! the most. Rebalance takes a sender's keys in task-id order, where Python
//! takes them least recently inserted first.

use crate::ids::{TaskId, WorkerId};
use crate::state::State;
use crate::task::TaskState;
use crate::worker::WorkerStatus;
use dask_wire::{Key, Value};
use rustc_hash::FxHashSet;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Why a `replicate` or `rebalance` request cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplicaError {
    /// A key the scheduler does not know (Python raises `KeyError`).
    #[error("{0}")]
    UnknownKey(String),
    /// A worker address the scheduler does not know (`KeyError`).
    #[error("{0}")]
    UnknownWorker(String),
    /// `replicate` with no running workers to keep copies on (`ValueError`).
    #[error("Can not use replicate to delete data")]
    NoWorkers,
}

impl ReplicaError {
    /// The Python exception type a client sees.
    pub fn exception_type(&self) -> &'static str {
        match self {
            ReplicaError::UnknownKey(_) | ReplicaError::UnknownWorker(_) => "KeyError",
            ReplicaError::NoWorkers => "ValueError",
        }
    }
}

/// Copies or drops for one worker: `(worker address, [(key, [holder
/// addresses])])`; the holders are where a recipient fetches from (empty for
/// drops).
pub type WorkerBatch = (String, Vec<(Key, Vec<String>)>);

/// A `replicate` in progress: the keys still short of `n` copies on
/// `workers`.
#[derive(Debug, Clone)]
pub struct Replication {
    keys: Vec<Key>,
    workers: Vec<String>,
    n: usize,
    branching_factor: usize,
}

impl Replication {
    /// Keys not yet known to hold enough copies.
    pub fn pending(&self) -> &[Key] {
        &self.keys
    }

    /// The workers replicated onto (addresses).
    pub fn workers(&self) -> &[String] {
        &self.workers
    }
}

/// What `replicate` starts with.
#[derive(Debug, Clone)]
pub enum ReplicateStart {
    /// Some keys are in memory nowhere: Python answers `partial-fail`.
    Missing(Vec<Key>),
    /// Drop these extra replicas first (only with `delete=True`), then run
    /// [`State::replicate_round`] until it plans nothing.
    Started {
        /// The replication to continue.
        replication: Replication,
        /// Extra replicas to drop, per worker.
        drops: Vec<WorkerBatch>,
    },
}

/// One key moved by `rebalance`.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The worker that has it and drops it once the copy succeeded.
    pub sender: String,
    /// The worker that copies it.
    pub recipient: String,
    /// The key.
    pub key: Key,
}

/// What `rebalance` should do.
#[derive(Debug, Clone, PartialEq)]
pub enum RebalancePlan {
    /// Some of the requested keys are in memory nowhere (`partial-fail`).
    Missing(Vec<Key>),
    /// The moves, and how many workers were senders and recipients.
    Moves {
        /// Keys to move, in the order chosen.
        moves: Vec<Move>,
        /// Workers above the mean that may send.
        senders: usize,
        /// Workers below the mean that may receive.
        recipients: usize,
    },
}

impl State {
    /// Workers named by `specs` as Python's `workers_list` resolves them:
    /// an address, else a name or host, else (for specs without a port) any
    /// worker whose address contains it. An unknown address is an error.
    fn replica_workers(&self, specs: &[String]) -> Result<Vec<WorkerId>, ReplicaError> {
        let mut out: Vec<WorkerId> = Vec::new();
        for spec in specs {
            let mut found: Vec<WorkerId> = self
                .resolve_workers(spec)
                .iter()
                .filter_map(|a| self.worker_id(a))
                .collect();
            if found.is_empty() && !spec.contains(':') {
                found = self
                    .workers
                    .values()
                    .filter(|w| w.info.address.contains(spec.as_str()))
                    .map(|w| w.id)
                    .collect();
            }
            if found.is_empty() && spec.contains(':') {
                return Err(ReplicaError::UnknownWorker(spec.clone()));
            }
            out.extend(found);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Plan `replicate(keys, n, workers, branching_factor, delete)`: the
    /// running workers among `workers` (all running workers when `None`),
    /// `n` capped at their number (all of them when `None`), and with
    /// `delete` the replicas beyond `n` to drop.
    pub fn replicate_start(
        &self,
        keys: &[Key],
        n: Option<i64>,
        workers: Option<&[String]>,
        branching_factor: usize,
        delete: bool,
    ) -> Result<ReplicateStart, ReplicaError> {
        let mut targets: Vec<WorkerId> = match workers {
            Some(specs) => self.replica_workers(specs)?,
            None => self.workers.values().map(|w| w.id).collect(),
        };
        targets.retain(|w| self.workers.get(w).map(|w| w.status) == Some(WorkerStatus::Running));
        targets.sort_unstable();
        let n = match n {
            None => targets.len(),
            Some(n) => (n.max(0) as usize).min(targets.len()),
        };
        if n == 0 {
            return Err(ReplicaError::NoWorkers);
        }
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            let id = self
                .task_id(key)
                .ok_or_else(|| ReplicaError::UnknownKey(crate::coordination::key_label(key)))?;
            ids.push(id);
        }
        // a key asked for twice is replicated once (Python takes a set)
        ids.sort_unstable();
        ids.dedup();
        let missing: Vec<Key> = ids
            .iter()
            .filter(|&&id| self.task(id).who_has.is_empty())
            .map(|&id| self.task(id).key.clone())
            .collect();
        if !missing.is_empty() {
            return Ok(ReplicateStart::Missing(missing));
        }
        let mut drops: BTreeMap<WorkerId, Vec<(Key, Vec<String>)>> = BTreeMap::new();
        if delete {
            for &id in &ids {
                let mut holders: Vec<WorkerId> = self
                    .task(id)
                    .who_has
                    .iter()
                    .copied()
                    .filter(|w| targets.binary_search(w).is_ok())
                    .collect();
                if holders.len() <= n {
                    continue;
                }
                // the fullest holders give theirs up
                holders.sort_by_key(|w| (Reverse(self.workers[w].nbytes), *w));
                let extra = holders.len() - n;
                for w in holders.into_iter().take(extra) {
                    drops
                        .entry(w)
                        .or_default()
                        .push((self.task(id).key.clone(), Vec::new()));
                }
            }
        }
        let keys: Vec<Key> = ids.iter().map(|&id| self.task(id).key.clone()).collect();
        Ok(ReplicateStart::Started {
            replication: Replication {
                keys,
                workers: targets
                    .iter()
                    .map(|w| self.workers[w].info.address.clone())
                    .collect(),
                n,
                branching_factor: branching_factor.max(1),
            },
            drops: self.batches(drops),
        })
    }

    /// One round of `replicate`: forget keys that have `n` copies on the
    /// replication's workers (or are no longer in memory) and plan, for the
    /// others, up to `branching_factor` new copies per current holder. An
    /// empty plan means the replication is over.
    pub fn replicate_round(&self, r: &mut Replication) -> Vec<WorkerBatch> {
        let targets: Vec<WorkerId> = r
            .workers
            .iter()
            .filter_map(|a| self.worker_id(a))
            .filter(|w| self.workers[w].status == WorkerStatus::Running)
            .collect();
        // bytes each target holds, counting the copies planned this round
        let mut load: Vec<(WorkerId, i64)> = targets
            .iter()
            .map(|w| (*w, self.workers[w].nbytes))
            .collect();
        let mut plan: BTreeMap<WorkerId, Vec<(Key, Vec<String>)>> = BTreeMap::new();
        let n = r.n.min(targets.len());
        r.keys.retain(|key| {
            let Some(id) = self.task_id(key) else {
                return false;
            };
            let t = self.task(id);
            if t.state != TaskState::Memory || t.who_has.is_empty() {
                return false;
            }
            let have = t.who_has.iter().filter(|w| targets.contains(w)).count();
            if have >= n {
                return false;
            }
            let count = (n - have).min(r.branching_factor * t.who_has.len());
            let holders: Vec<String> = t
                .who_has
                .iter()
                .filter_map(|w| self.workers.get(w))
                .map(|w| w.info.address.clone())
                .collect();
            let mut candidates: Vec<&mut (WorkerId, i64)> = load
                .iter_mut()
                .filter(|(w, _)| !t.who_has.contains(w))
                .collect();
            candidates.sort_by_key(|(w, bytes)| (*bytes, *w));
            for entry in candidates.into_iter().take(count) {
                entry.1 += t.nbytes.max(0);
                plan.entry(entry.0)
                    .or_default()
                    .push((key.clone(), holders.clone()));
            }
            true
        });
        self.batches(plan)
    }

    /// `recipient` reported that it now holds `keys` (its `gather` RPC
    /// answered): record the replicas of keys still in memory. Returns how
    /// many replicas are new.
    pub fn replicas_copied(&mut self, recipient: &str, keys: &[Key], now: f64) -> usize {
        self.now = now;
        let Some(w) = self.worker_id(recipient) else {
            return 0;
        };
        let mut added = 0;
        for key in keys {
            if let Some(id) = self.task_id(key) {
                if self.task(id).state == TaskState::Memory && !self.task(id).who_has.contains(&w) {
                    self.add_replica(id, w);
                    added += 1;
                }
            }
        }
        added
    }

    /// `holder` dropped `keys` (its `free_keys` RPC answered): forget those
    /// replicas; a key whose last replica this was is released.
    pub fn replicas_dropped(&mut self, holder: &str, keys: &[Key], now: f64) {
        if self.worker_id(holder).is_none() {
            return;
        }
        self.missing_data(holder, keys, now);
        let keys = Value::Array(keys.iter().map(Key::to_value).collect());
        self.publish_event(
            holder,
            Value::map([("action", Value::str("remove-worker-data")), ("keys", keys)]),
        );
    }

    /// Plan `rebalance(keys, workers)` as `Scheduler._rebalance_find_msgs`
    /// does: the workers above the mean memory (by more than half the
    /// sender-recipient gap, and above `sender-min`) send keys to those below
    /// it (and below `recipient-max`), the farthest from the mean first,
    /// never to a worker that already has the key and never so much that a
    /// sender would drop below the mean.
    pub fn rebalance_plan(
        &self,
        keys: Option<&[Key]>,
        workers: Option<&[String]>,
    ) -> Result<RebalancePlan, ReplicaError> {
        let wss: Vec<WorkerId> = match workers {
            Some(addrs) => {
                let mut out = Vec::with_capacity(addrs.len());
                for a in addrs {
                    out.push(
                        self.worker_id(a)
                            .ok_or_else(|| ReplicaError::UnknownWorker(a.clone()))?,
                    );
                }
                out
            }
            None => {
                let mut all: Vec<WorkerId> = self.workers.values().map(|w| w.id).collect();
                all.sort_unstable();
                all
            }
        };
        let empty = RebalancePlan::Moves {
            moves: Vec::new(),
            senders: 0,
            recipients: 0,
        };
        if wss.is_empty() {
            return Ok(empty);
        }
        let allowed: Option<FxHashSet<TaskId>> = match keys {
            None => None,
            Some([]) => return Ok(empty),
            Some(keys) => {
                let mut set = FxHashSet::default();
                let mut missing = Vec::new();
                for key in keys {
                    match self.task_id(key) {
                        Some(id) if !self.task(id).who_has.is_empty() => {
                            set.insert(id);
                        }
                        _ => missing.push(key.clone()),
                    }
                }
                if !missing.is_empty() {
                    return Ok(RebalancePlan::Missing(missing));
                }
                Some(set)
            }
        };
        let cfg = &self.config.rebalance;
        let memory: Vec<(WorkerId, i64)> = wss
            .iter()
            .map(|w| (*w, self.workers[w].memory().measure(cfg.measure)))
            .collect();
        let mean = memory.iter().map(|m| m.1).sum::<i64>() / memory.len() as i64;
        // min-heaps of (bytes_max, bytes_min, worker), both negative: the
        // worker farthest from the mean on top (Python's heapq tuples)
        let mut senders = BinaryHeap::new();
        let mut recipients = BinaryHeap::new();
        let mut sender_tasks: BTreeMap<WorkerId, (Vec<TaskId>, usize)> = BTreeMap::new();
        for &(w, mem) in &memory {
            let worker = &self.workers[&w];
            let limit = worker.info.memory_limit;
            let (half_gap, sender_min, recipient_max) = if limit > 0 {
                let l = limit as f64;
                (
                    (cfg.half_gap * l) as i64,
                    cfg.sender_min * l,
                    cfg.recipient_max * l,
                )
            } else {
                (0, 0.0, f64::INFINITY)
            };
            if !worker.has_what.is_empty() && mem >= mean + half_gap && mem as f64 >= sender_min {
                let max = mean - mem;
                senders.push(Reverse((max, max + half_gap, w)));
                let mut tasks: Vec<TaskId> = worker.has_what.iter().collect();
                tasks.sort_unstable();
                sender_tasks.insert(w, (tasks, 0));
            } else if mem < mean - half_gap && (mem as f64) < recipient_max {
                let max = mem - mean;
                recipients.push(Reverse((max, max + half_gap, w)));
            }
        }
        let (n_senders, n_recipients) = (senders.len(), recipients.len());
        let mut moves = Vec::new();
        while let (Some(&Reverse((mut s_max, mut s_min, sw))), false) =
            (senders.peek(), recipients.is_empty())
        {
            let (tasks, cursor) = sender_tasks.get_mut(&sw).expect("sender has tasks");
            let mut moved = false;
            while *cursor < tasks.len() {
                let id = tasks[*cursor];
                *cursor += 1;
                if allowed.as_ref().is_some_and(|a| !a.contains(&id)) {
                    continue;
                }
                let nbytes = self.task(id).nbytes.max(0);
                if nbytes + s_max > 0 {
                    // the sender would fall below the mean and could bounce back
                    continue;
                }
                // the recipient farthest from the mean with room that lacks it
                let mut skipped = Vec::new();
                let mut chosen = None;
                while let Some(&Reverse((r_max, r_min, rw))) = recipients.peek() {
                    if nbytes + r_max > 0 {
                        break;
                    }
                    recipients.pop();
                    if self.workers[&rw].has_what.contains(id) {
                        skipped.push(Reverse((r_max, r_min, rw)));
                    } else {
                        chosen = Some((r_max, r_min, rw));
                        break;
                    }
                }
                recipients.extend(skipped);
                let Some((mut r_max, mut r_min, rw)) = chosen else {
                    continue;
                };
                moves.push(Move {
                    sender: self.workers[&sw].info.address.clone(),
                    recipient: self.workers[&rw].info.address.clone(),
                    key: self.task(id).key.clone(),
                });
                s_max += nbytes;
                s_min += nbytes;
                r_max += nbytes;
                r_min += nbytes;
                senders.pop();
                if s_min < 0 {
                    senders.push(Reverse((s_max, s_min, sw)));
                }
                if r_min < 0 {
                    recipients.push(Reverse((r_max, r_min, rw)));
                }
                moved = true;
                break;
            }
            if !moved {
                senders.pop(); // nothing more this sender can give
            }
        }
        Ok(RebalancePlan::Moves {
            moves,
            senders: n_senders,
            recipients: n_recipients,
        })
    }

    /// Turn `{worker: [(key, holders)]}` into address-keyed batches.
    fn batches(&self, plan: BTreeMap<WorkerId, Vec<(Key, Vec<String>)>>) -> Vec<WorkerBatch> {
        plan.into_iter()
            .filter_map(|(w, items)| Some((self.workers.get(&w)?.info.address.clone(), items)))
            .collect()
    }
}
