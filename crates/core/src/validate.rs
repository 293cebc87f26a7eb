//! Internal-consistency checks of the derived per-worker bookkeeping (like
//! Python's `validate_state`), for tests and random walks: cheap enough to
//! call after every stimulus in a test, never called on the hot path.

use crate::ids::TaskId;
use crate::state::State;
use std::collections::HashMap;

impl State {
    /// Check that each worker's prefix counts, `needs_what` and network
    /// occupancy match what its processing tasks imply; the first mismatch
    /// is returned as a message.
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
            let bytes: i64 = w.needs_what.values().map(|(_, b)| b).sum();
            if bytes != w.network_occ {
                return Err(format!(
                    "worker {}: network occupancy {} but needs {bytes} bytes",
                    w.info.address, w.network_occ
                ));
            }
        }
        Ok(())
    }
}
