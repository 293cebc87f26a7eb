//! Worker memory readings as Dask polishes them (`MemoryState`): process
//! memory from the heartbeats, managed memory from the scheduler's own
//! `nbytes`, and "old" unmanaged memory, the minimum of the unmanaged
//! readings over the last `recent-to-old-time` seconds, so that temporary
//! spikes of task heap do not count. `rebalance` balances one of these.

use crate::config::MemoryMeasure;
use dask_wire::Value;
use std::collections::VecDeque;

/// Unmanaged-memory readings of one worker over the `recent-to-old-time`
/// window (Python's `_memory_unmanaged_history` / `_memory_unmanaged_old`).
#[derive(Debug, Clone, Default)]
pub struct UnmanagedHistory {
    readings: VecDeque<(f64, i64)>,
    old: i64,
}

impl UnmanagedHistory {
    /// Record the unmanaged reading `size` taken at `now`, forgetting
    /// readings older than `window` seconds.
    pub fn record(&mut self, now: f64, size: i64, window: f64) {
        let mut old = self.old;
        while let Some(&(t, s)) = self.readings.front() {
            if t >= now - window {
                break;
            }
            self.readings.pop_front();
            if s == old {
                old = 0; // the minimum left the window: recompute it
            }
        }
        self.readings.push_back((now, size));
        if old == 0 {
            self.old = self.readings.iter().map(|r| r.1).min().unwrap_or(0);
        } else if size < old {
            self.old = size;
        }
    }

    /// The minimum unmanaged reading in the window.
    pub fn old(&self) -> i64 {
        self.old
    }
}

/// One worker's memory (Python's `MemoryState`); the parts always add up:
/// `process = managed + unmanaged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerMemory {
    /// RSS of the worker process.
    pub process: i64,
    /// Bytes of the keys it holds in memory (not spilled).
    pub managed: i64,
    /// Bytes of its keys spilled to disk.
    pub spilled: i64,
    /// Unmanaged memory that has been there for `recent-to-old-time`.
    pub unmanaged_old: i64,
}

impl WorkerMemory {
    /// Build from the readings, forcing them to add up as Python does
    /// (heartbeats and `nbytes` arrive at different times).
    pub fn new(process: i64, managed: i64, spilled: i64, unmanaged_old: i64) -> Self {
        let process = process.max(0);
        let managed = managed.clamp(0, process);
        WorkerMemory {
            process,
            managed,
            spilled: spilled.max(0),
            unmanaged_old: unmanaged_old.clamp(0, process - managed),
        }
    }

    /// Python's `MemoryState.sum`: the readings of several added up (the
    /// cluster's memory is the sum of its workers').
    pub fn sum(all: impl IntoIterator<Item = WorkerMemory>) -> WorkerMemory {
        let (mut process, mut managed, mut spilled, mut old) = (0, 0, 0, 0);
        for m in all {
            process += m.process;
            managed += m.managed;
            spilled += m.spilled;
            old += m.unmanaged_old;
        }
        WorkerMemory::new(process, managed, spilled, old)
    }

    /// The attribute of Python's `MemoryState` called `name` (any of
    /// [`WorkerMemory::NAMES`]); `None` for any other name.
    pub fn named(&self, name: &str) -> Option<i64> {
        let unmanaged = self.process - self.managed;
        Some(match name {
            "managed" => self.managed,
            "managed_total" => self.managed + self.spilled,
            "optimistic" => self.managed + self.unmanaged_old,
            "process" => self.process,
            "spilled" => self.spilled,
            "unmanaged" => unmanaged,
            "unmanaged_old" => self.unmanaged_old,
            "unmanaged_recent" => unmanaged - self.unmanaged_old,
            _ => return None,
        })
    }

    /// The readings of Python's `MemoryState`, in alphabetical order.
    pub const NAMES: [&'static str; 8] = [
        "managed",
        "managed_total",
        "optimistic",
        "process",
        "spilled",
        "unmanaged",
        "unmanaged_old",
        "unmanaged_recent",
    ];

    /// The reading `measure` names.
    pub fn measure(&self, measure: MemoryMeasure) -> i64 {
        match measure {
            MemoryMeasure::Process => self.process,
            MemoryMeasure::Optimistic => self.managed + self.unmanaged_old,
            MemoryMeasure::Managed => self.managed,
            MemoryMeasure::ManagedTotal => self.managed + self.spilled,
        }
    }
}

/// `(process memory, spilled bytes in memory, spilled bytes on disk)` of a
/// heartbeat's `metrics` (zero where absent).
pub fn heartbeat_memory(metrics: &Value) -> (i64, i64, i64) {
    let int = |v: Option<&Value>| v.and_then(Value::as_i64).unwrap_or(0);
    let spilled = metrics.get("spilled_bytes");
    (
        int(metrics.get("memory")),
        int(spilled.and_then(|s| s.get("memory"))),
        int(spilled.and_then(|s| s.get("disk"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_is_the_minimum_over_the_window() {
        let mut h = UnmanagedHistory::default();
        h.record(0.0, 500, 30.0);
        assert_eq!(h.old(), 500);
        h.record(10.0, 300, 30.0);
        assert_eq!(h.old(), 300);
        h.record(20.0, 900, 30.0); // a spike does not count
        assert_eq!(h.old(), 300);
        h.record(41.0, 800, 30.0); // 0 and 10 left the window
        assert_eq!(h.old(), 800);
    }

    #[test]
    fn readings_are_forced_to_add_up() {
        let m = WorkerMemory::new(100, 150, 7, 80);
        assert_eq!((m.process, m.managed, m.unmanaged_old), (100, 100, 0));
        let m = WorkerMemory::new(1000, 200, 50, 300);
        assert_eq!(m.measure(MemoryMeasure::Optimistic), 500);
        assert_eq!(m.measure(MemoryMeasure::Process), 1000);
        assert_eq!(m.measure(MemoryMeasure::Managed), 200);
        assert_eq!(m.measure(MemoryMeasure::ManagedTotal), 250);
    }
}
