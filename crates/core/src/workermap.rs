//! The registered workers, indexed directly by id.
//!
//! Worker ids are handed out in increasing order and never reused, so a
//! vector indexed by id finds a worker with one bounds check, where the
//! ordered map it replaces walked a tree on each of the ~10 lookups a task
//! costs. Iteration stays in id order, as before. A departed worker leaves
//! an empty 16-byte slot behind: a scheduler that sees a million worker
//! arrivals over its life keeps 16 MB of slots.

use crate::ids::WorkerId;
use crate::worker::Worker;

/// Workers by id (see the module docs); the subset of `BTreeMap`'s API the
/// scheduler uses.
#[derive(Debug, Default)]
pub struct WorkerMap {
    slots: Vec<Option<(WorkerId, Box<Worker>)>>,
    len: usize,
}

impl WorkerMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The worker with id `w`, if registered.
    #[inline]
    pub fn get(&self, w: &WorkerId) -> Option<&Worker> {
        self.slots.get(w.0 as usize)?.as_ref().map(|(_, b)| &**b)
    }

    /// The worker with id `w`, mutably.
    #[inline]
    pub fn get_mut(&mut self, w: &WorkerId) -> Option<&mut Worker> {
        self.slots
            .get_mut(w.0 as usize)?
            .as_mut()
            .map(|(_, b)| &mut **b)
    }

    /// Is `w` registered?
    pub fn contains_key(&self, w: &WorkerId) -> bool {
        self.get(w).is_some()
    }

    /// Register `worker` under `w`; returns the worker it replaces, if any.
    pub fn insert(&mut self, w: WorkerId, worker: Worker) -> Option<Worker> {
        let i = w.0 as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace((w, Box::new(worker)));
        if old.is_none() {
            self.len += 1;
        }
        old.map(|(_, b)| *b)
    }

    /// Remove `w`, returning its worker.
    pub fn remove(&mut self, w: &WorkerId) -> Option<Worker> {
        let old = self.slots.get_mut(w.0 as usize)?.take()?;
        self.len -= 1;
        Some(*old.1)
    }

    /// Number of registered workers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(id, worker)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&WorkerId, &Worker)> {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(id, b)| (id, &**b)))
    }

    /// Ids in increasing order.
    pub fn keys(&self) -> impl Iterator<Item = &WorkerId> {
        self.iter().map(|(id, _)| id)
    }

    /// Workers in id order.
    pub fn values(&self) -> impl Iterator<Item = &Worker> {
        self.iter().map(|(_, w)| w)
    }

    /// Workers in id order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Worker> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.as_mut().map(|(_, b)| &mut **b))
    }
}

impl std::ops::Index<&WorkerId> for WorkerMap {
    type Output = Worker;

    fn index(&self, w: &WorkerId) -> &Worker {
        self.get(w).expect("registered worker id")
    }
}

#[cfg(test)]
mod tests {
    use crate::state::State;
    use crate::worker::WorkerRegistration;
    use crate::{Config, WorkerId};

    #[test]
    fn lookups_and_id_order_survive_removals() {
        let mut s = State::new(Config::default());
        let ids: Vec<WorkerId> = (0..4)
            .map(|i| {
                s.add_worker(
                    WorkerRegistration::new(&format!("tcp://127.0.0.1:{}", 9000 + i), 1),
                    0.0,
                )
                .unwrap()
            })
            .collect();
        s.remove_worker(ids[1], 1.0);
        s.remove_worker(ids[3], 1.0);
        let map = &s.workers;
        assert_eq!(map.len(), 2);
        assert!(!map.is_empty());
        assert!(map.get(&ids[1]).is_none() && !map.contains_key(&ids[3]));
        assert!(map.get(&WorkerId(1000)).is_none(), "beyond the slots");
        assert_eq!(
            map.keys().copied().collect::<Vec<_>>(),
            vec![ids[0], ids[2]]
        );
        assert_eq!(map[&ids[2]].info.address, "tcp://127.0.0.1:9002");
        let again = s
            .add_worker(WorkerRegistration::new("tcp://127.0.0.1:9001", 1), 2.0)
            .unwrap();
        assert!(again > ids[3], "ids are never reused");
        assert_eq!(s.workers.values().count(), 3);
    }
}
