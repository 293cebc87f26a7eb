//! A set of task ids that is a hash set while sparse and a bitmap while
//! dense.
//!
//! A worker's `has_what` and a client's `wants_what` get one insert and one
//! removal per task. As hash sets of a 1M-task graph they are megabytes of
//! randomly probed buckets: each insert and removal is a cache (and TLB)
//! miss. Task ids are arena slots, so a set holding a large share of them
//! (a client that wants every key of its graph, a worker of a few dozen that
//! holds its share of the results) is cheaper as one bit per id: tasks
//! submitted and finished together have neighbouring ids and share a cache
//! line, and the bitmap is smaller than the hash set it replaces.
//!
//! The set switches to a bitmap once it holds at least [`DENSE_MIN`] ids and
//! at least one id in [`DENSE_AT`] below the largest it has seen (the bitmap
//! then costs at most 8 bytes per id; the hash set costs 6 to 12), and back to
//! a hash set when it thins out below one in [`SPARSE_AT`] (a bitmap never
//! costs more than 32 bytes per id). Empty, it is an empty hash set, which
//! holds no memory.

use crate::ids::TaskId;
use rustc_hash::FxHashSet;

/// Fewest ids a set holds before it may become a bitmap.
pub const DENSE_MIN: usize = 1024;
/// A hash set becomes a bitmap at one id in this many below its largest.
pub const DENSE_AT: u64 = 64;
/// A bitmap becomes a hash set below one id in this many of its bits.
pub const SPARSE_AT: u64 = 256;

/// A set of task ids (see the module docs). Iteration order is unspecified,
/// as for Python's sets.
#[derive(Debug, Clone)]
pub enum TaskIdSet {
    /// Few ids, or ids spread thinly over the arena.
    Sparse {
        /// The ids.
        set: FxHashSet<TaskId>,
        /// No id in `set` is above this (the largest ever inserted since the
        /// set became sparse; removals do not lower it).
        max_seen: TaskId,
    },
    /// Many ids, densely packed: bit `i % 64` of word `i / 64` is id `i`.
    Dense {
        /// The bitmap.
        words: Vec<u64>,
        /// Number of set bits.
        len: usize,
    },
}

impl Default for TaskIdSet {
    fn default() -> Self {
        TaskIdSet::Sparse {
            set: FxHashSet::default(),
            max_seen: 0,
        }
    }
}

impl PartialEq for TaskIdSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|id| other.contains(id))
    }
}

impl Eq for TaskIdSet {}

impl TaskIdSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            TaskIdSet::Sparse { set, .. } => set.len(),
            TaskIdSet::Dense { len, .. } => *len,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while stored as a bitmap (for tests and memory accounting).
    pub fn is_dense(&self) -> bool {
        matches!(self, TaskIdSet::Dense { .. })
    }

    /// Membership.
    pub fn contains(&self, id: TaskId) -> bool {
        match self {
            TaskIdSet::Sparse { set, .. } => set.contains(&id),
            TaskIdSet::Dense { words, .. } => words
                .get(id as usize / 64)
                .is_some_and(|w| w & (1 << (id % 64)) != 0),
        }
    }

    /// Add `id`; false if it was already there.
    pub fn insert(&mut self, id: TaskId) -> bool {
        match self {
            TaskIdSet::Sparse { set, max_seen } => {
                if !set.insert(id) {
                    return false;
                }
                *max_seen = (*max_seen).max(id);
                let len = set.len() as u64;
                if len >= DENSE_MIN as u64 && len * DENSE_AT > u64::from(*max_seen) {
                    self.make_dense();
                }
                true
            }
            TaskIdSet::Dense { words, len } => {
                let word = id as usize / 64;
                if word >= words.len() {
                    // a far id would thin the bitmap out: store sparse
                    if (*len as u64 + 1) * SPARSE_AT < u64::from(id) + 1 {
                        self.make_sparse();
                        return self.insert(id);
                    }
                    words.resize(word + 1, 0);
                }
                let bit = 1u64 << (id % 64);
                let fresh = words[word] & bit == 0;
                words[word] |= bit;
                *len += usize::from(fresh);
                fresh
            }
        }
    }

    /// Remove `id`; false if it was not there.
    pub fn remove(&mut self, id: TaskId) -> bool {
        match self {
            TaskIdSet::Sparse { set, .. } => set.remove(&id),
            TaskIdSet::Dense { words, len } => {
                let Some(w) = words.get_mut(id as usize / 64) else {
                    return false;
                };
                let bit = 1u64 << (id % 64);
                if *w & bit == 0 {
                    return false;
                }
                *w &= !bit;
                *len -= 1;
                if (*len as u64) * SPARSE_AT < words.len() as u64 * 64 {
                    self.make_sparse();
                }
                true
            }
        }
    }

    /// Every id, in no particular order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            TaskIdSet::Sparse { set, .. } => Iter::Sparse(set.iter()),
            TaskIdSet::Dense { words, .. } => Iter::Dense {
                words,
                index: 0,
                current: words.first().copied().unwrap_or(0),
            },
        }
    }

    fn make_dense(&mut self) {
        let TaskIdSet::Sparse { set, max_seen } = self else {
            return;
        };
        let mut words = vec![0u64; *max_seen as usize / 64 + 1];
        for &id in set.iter() {
            words[id as usize / 64] |= 1 << (id % 64);
        }
        *self = TaskIdSet::Dense {
            words,
            len: set.len(),
        };
    }

    fn make_sparse(&mut self) {
        let set: FxHashSet<TaskId> = self.iter().collect();
        let max_seen = set.iter().copied().max().unwrap_or(0);
        *self = TaskIdSet::Sparse { set, max_seen };
    }
}

/// Iterator over a [`TaskIdSet`].
#[derive(Debug)]
pub enum Iter<'a> {
    /// Over the hash set.
    Sparse(std::collections::hash_set::Iter<'a, TaskId>),
    /// Over the bitmap: the bits of `words[index]` not yet yielded are in
    /// `current`.
    Dense {
        /// The bitmap.
        words: &'a [u64],
        /// Word being read.
        index: usize,
        /// Its bits not yet yielded.
        current: u64,
    },
}

impl Iterator for Iter<'_> {
    type Item = TaskId;

    fn next(&mut self) -> Option<TaskId> {
        match self {
            Iter::Sparse(it) => it.next().copied(),
            Iter::Dense {
                words,
                index,
                current,
            } => loop {
                if *current != 0 {
                    let bit = current.trailing_zeros();
                    *current &= *current - 1;
                    return Some((*index * 64) as TaskId + bit);
                }
                *index += 1;
                *current = *words.get(*index)?;
            },
        }
    }
}

impl FromIterator<TaskId> for TaskIdSet {
    fn from_iter<I: IntoIterator<Item = TaskId>>(iter: I) -> Self {
        let mut s = TaskIdSet::new();
        for id in iter {
            s.insert(id);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Apply `ops` (positive: insert, negative: remove `-id - 1`) to a
    /// `TaskIdSet` and a `BTreeSet`, checking every answer and the contents
    /// after each step; returns whether the set was ever dense.
    fn check_against_btreeset(ops: &[i64]) -> bool {
        check_switches(ops).0 > 0
    }

    /// [`check_against_btreeset`], returning how many times the set became
    /// a bitmap and how many times it became a hash set again.
    fn check_switches(ops: &[i64]) -> (usize, usize) {
        let mut s = TaskIdSet::new();
        let mut model = BTreeSet::new();
        let (mut to_dense, mut to_sparse) = (0, 0);
        for &op in ops {
            let was_dense = s.is_dense();
            if op >= 0 {
                let id = op as TaskId;
                assert_eq!(s.insert(id), model.insert(id), "insert {id}");
            } else {
                let id = (-op - 1) as TaskId;
                assert_eq!(s.remove(id), model.remove(&id), "remove {id}");
            }
            let dense = s.is_dense();
            to_dense += usize::from(dense && !was_dense);
            to_sparse += usize::from(was_dense && !dense);
            assert_eq!(s.len(), model.len());
        }
        let got: BTreeSet<TaskId> = s.iter().collect();
        assert_eq!(got, model);
        for id in 0..=model.last().copied().unwrap_or(0) + 70 {
            assert_eq!(s.contains(id), model.contains(&id), "contains {id}");
        }
        (to_dense, to_sparse)
    }

    #[test]
    fn a_dense_run_of_ids_becomes_a_bitmap_and_answers_as_a_set() {
        let ops: Vec<i64> = (0..5000).collect();
        assert!(check_against_btreeset(&ops));
        let s: TaskIdSet = (0..5000).collect();
        assert!(s.is_dense());
        assert_eq!(s.len(), 5000);
    }

    #[test]
    fn a_sparse_set_stays_a_hash_set() {
        // one id in 100: thinner than one in DENSE_AT
        let ops: Vec<i64> = (0..3000).map(|i| i * 100).collect();
        assert!(!check_against_btreeset(&ops));
    }

    #[test]
    fn a_bitmap_that_thins_out_becomes_a_hash_set_again() {
        let mut ops: Vec<i64> = (0..4096).collect();
        // remove all but every 300th id
        ops.extend((0..4096).filter(|i| i % 300 != 0).map(|i| -i - 1));
        assert!(check_against_btreeset(&ops));
        let mut s: TaskIdSet = (0..4096).collect();
        assert!(s.is_dense());
        for i in (0..4096).filter(|i| i % 300 != 0) {
            s.remove(i);
        }
        assert!(!s.is_dense(), "14 ids over 4096 bits is below one in 256");
        for i in (0..4096).filter(|i| i % 300 == 0) {
            s.remove(i);
        }
        assert!(s.is_empty() && !s.is_dense());
    }

    #[test]
    fn a_far_id_turns_a_bitmap_back_into_a_hash_set() {
        let mut s: TaskIdSet = (0..2048).collect();
        assert!(s.is_dense());
        assert!(s.insert(10_000_000));
        assert!(!s.is_dense());
        assert!(s.contains(10_000_000) && s.contains(2047) && !s.contains(2048));
        assert_eq!(s.len(), 2049);
    }

    #[test]
    fn mixed_inserts_and_removals_agree_with_a_btreeset() {
        // a deterministic pseudo-random walk: rounds of mostly inserts over
        // a span of ids (dense enough to become a bitmap) followed by
        // removals until (nearly) empty (sparse again)
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ops = Vec::new();
        for span in [3000u64, 5000, 2500] {
            for _ in 0..2 * span {
                let r = next();
                let id = (r % span) as i64;
                ops.push(if (r >> 40) % 3 == 0 { -id - 1 } else { id });
            }
            for _ in 0..12 * span {
                ops.push(-((next() % span) as i64) - 1);
            }
        }
        let (to_dense, to_sparse) = check_switches(&ops);
        assert!(to_dense >= 2 && to_sparse >= 2, "{to_dense} {to_sparse}");
    }

    #[test]
    fn equality_ignores_the_representation() {
        let dense: TaskIdSet = (0..2000).collect();
        let mut sparse = TaskIdSet::Sparse {
            set: (0..2000).collect(),
            max_seen: 1999,
        };
        assert!(dense.is_dense() && !sparse.is_dense());
        assert_eq!(dense, sparse);
        sparse.remove(5);
        assert_ne!(dense, sparse);
    }
}
