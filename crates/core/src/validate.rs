//! Internal-consistency checks of the derived per-worker bookkeeping (like
//! Python's `validate_state`), for tests and random walks: cheap enough to
//! call after every stimulus in a test, never called on the hot path.

use crate::ids::TaskId;
use crate::state::State;
use std::collections::HashMap;

impl State {
    /// Check that each worker's prefix counts, `needs_what`, network
    /// occupancy and place in the free-slot index match what its processing
    /// tasks and status imply; the first mismatch is returned as a message.
    pub fn validate_worker_accounting(&self) -> Result<(), String> {
        for w in self.workers.values() {
            let mut prefixes: rustc_hash::FxHashMap<u32, u32> = Default::default();
            let mut needs: HashMap<TaskId, u32> = HashMap::new();
            for &id in &w.processing {
                let t = self.task(id);
                if !w.long_running.contains(&id) {
                    *prefixes.entry(t.prefix).or_insert(0) += 1;
                }
                for &d in &t.dependencies {
                    if !self.task(d).who_has.contains(&w.id) {
                        *needs.entry(d).or_insert(0) += 1;
                    }
                }
            }
            if prefixes != w.prefix_counts {
                return Err(format!(
                    "worker {}: prefix counts {:?}, processing implies {prefixes:?}",
                    w.info.address, w.prefix_counts
                ));
            }
            // A dependency may be missing from `needs_what` only if it was
            // released and recomputed elsewhere meanwhile; every entry that is
            // there must be right.
            for (d, (n, _)) in &w.needs_what {
                if needs.get(d) != Some(n) {
                    return Err(format!(
                        "worker {}: needs {d:?} x{n}, processing implies {:?}",
                        w.info.address,
                        needs.get(d)
                    ));
                }
            }
            let key = crate::placement::slot_key(w);
            if key != w.slot_key || key.is_some_and(|k| !self.slot_index.contains(&(k, w.id))) {
                return Err(format!(
                    "worker {}: free-slot index key {:?} (indexed {}), its state implies {key:?}",
                    w.info.address,
                    w.slot_key,
                    w.slot_key
                        .is_some_and(|k| self.slot_index.contains(&(k, w.id)))
                ));
            }
            let bytes: i64 = w.needs_what.values().map(|(_, b)| b).sum();
            if bytes != w.network_occ {
                return Err(format!(
                    "worker {}: network occupancy {} but needs {bytes} bytes",
                    w.info.address, w.network_occ
                ));
            }
        }
        let threads: u64 = self
            .workers
            .values()
            .map(|w| u64::from(w.info.nthreads))
            .sum();
        if threads != self.total_nthreads {
            return Err(format!(
                "total threads {} but the workers have {threads}",
                self.total_nthreads
            ));
        }
        let indexed = self
            .workers
            .values()
            .filter(|w| w.slot_key.is_some())
            .count();
        if self.slot_index.len() != indexed {
            return Err(format!(
                "free-slot index has {} entries for {indexed} workers with a free slot",
                self.slot_index.len()
            ));
        }
        // The index's first entry is what a scan of every running worker
        // (the former implementation) would choose.
        let scanned = self
            .running_workers()
            .filter(|w| w.processing.len().saturating_sub(w.long_running.len()) < w.task_slots)
            .min_by(|a, b| {
                (a.processing.len() as f64 / a.threads())
                    .total_cmp(&(b.processing.len() as f64 / b.threads()))
                    .then(a.id.cmp(&b.id))
            })
            .map(|w| w.id);
        let indexed_first = self.slot_index.first().map(|&(_, w)| w);
        if scanned != indexed_first {
            return Err(format!(
                "free-slot index picks {indexed_first:?}, a scan of the workers picks {scanned:?}"
            ));
        }
        self.validate_ready_sets()?;
        self.validate_key_index()
    }

    /// Every live task is found by its key under its own id, and the index
    /// holds nothing else (it keeps no keys of its own, so a stale entry
    /// would otherwise go unnoticed until its slot is reused).
    fn validate_key_index(&self) -> Result<(), String> {
        let mut live = 0;
        for (id, t) in self.tasks.iter().enumerate() {
            let Some(t) = t else { continue };
            live += 1;
            if self.task_id(&t.key) != Some(id as TaskId) {
                return Err(format!(
                    "key index finds {:?} for task {id} ({})",
                    self.task_id(&t.key),
                    t.key
                ));
            }
        }
        if live != self.task_ids.len() {
            return Err(format!(
                "key index has {} entries for {live} live tasks",
                self.task_ids.len()
            ));
        }
        Ok(())
    }

    /// The queued set and the workers' reserved sets together hold exactly
    /// the `queued` tasks (under their current priority, each in one set,
    /// reserved ones only on running workers) and the unrunnable set exactly
    /// the `no-worker` ones: the transitions rely on it to skip set removals
    /// for tasks in other states.
    fn validate_ready_sets(&self) -> Result<(), String> {
        let mut queued = 0;
        let mut unrunnable = 0;
        for (id, t) in self.tasks.iter().enumerate() {
            let Some(t) = t else { continue };
            let id = id as TaskId;
            let entry = (t.priority, id);
            let in_shared = self.queued.contains(&entry);
            let in_reserved = self.reserved_on.get(&id).is_some_and(|w| {
                self.workers.get(w).is_some_and(|w| {
                    w.status == crate::worker::WorkerStatus::Running && w.reserved.contains(&entry)
                })
            });
            if in_shared && self.reserved_on.contains_key(&id) {
                return Err(format!("task {} is both queued and reserved", t.key));
            }
            let in_queued = in_shared || in_reserved;
            let in_unrunnable = self.unrunnable.contains_key(&id);
            queued += usize::from(in_queued);
            unrunnable += usize::from(in_unrunnable);
            if in_queued != (t.state == crate::task::TaskState::Queued)
                || in_unrunnable != (t.state == crate::task::TaskState::NoWorker)
            {
                return Err(format!(
                    "task {} is {} but queued: {in_queued}, unrunnable: {in_unrunnable}",
                    t.key,
                    t.state.as_str()
                ));
            }
        }
        let reserved: usize = self.workers.values().map(|w| w.reserved.len()).sum();
        if reserved != self.reserved_on.len() {
            return Err(format!(
                "workers hold {reserved} reservations, the index {}",
                self.reserved_on.len()
            ));
        }
        if queued != self.queued_len() || unrunnable != self.unrunnable.len() {
            return Err(format!(
                "queued sets have {} entries for {queued} queued tasks, unrunnable {} for {unrunnable}",
                self.queued_len(),
                self.unrunnable.len()
            ));
        }
        Ok(())
    }
}
