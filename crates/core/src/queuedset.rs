//! The scheduler's queue of root tasks waiting for a free worker slot,
//! ordered by priority.
//!
//! Python keeps `queued` in a heap. A `BTreeSet` of `(priority, id)` does
//! the same job, but inserting a million entries of a `client.map` costs a
//! walk down the tree with a dozen comparisons per level for each one
//! (profiled at ~12 % of `update_graph` of a 1M-task map). Entries nearly
//! always arrive in priority order, though: a submission queues its tasks
//! in the graph's order, and later submissions have later generations. So
//! a [`QueuedSet`] keeps those in a sorted deque (append and take from the
//! front in O(1)) and only the out-of-order rest (a task put back after its
//! worker left, a reservation given back, a graph with a higher user
//! priority) in a `BTreeSet`. Removing an entry from the middle of the
//! deque marks it dead instead of moving its neighbours; dead entries are
//! dropped as they reach either end, or all at once when they outnumber the
//! live ones.

use crate::ids::TaskId;
use crate::task::Priority;
use std::collections::{BTreeSet, VecDeque};

/// An entry: the task's priority, then its id (which makes entries unique).
pub type Entry = (Priority, TaskId);

/// Dead deque entries tolerated before they are swept, if they are also
/// more than the live ones.
const SWEEP_AT: usize = 1024;

/// One deque entry; `live` is false once removed.
#[derive(Debug, Clone, Copy)]
struct Slot {
    priority: Priority,
    id: TaskId,
    live: bool,
}

impl Slot {
    fn entry(&self) -> Entry {
        (self.priority, self.id)
    }
}

/// A set of [`Entry`]s taken lowest first (see the module docs).
#[derive(Debug, Default)]
pub struct QueuedSet {
    /// Entries appended in increasing order, dead ones included.
    run: VecDeque<Slot>,
    /// Live entries in `run`.
    run_live: usize,
    /// Entries that arrived out of order.
    others: BTreeSet<Entry>,
}

impl QueuedSet {
    /// An empty set.
    pub fn new() -> QueuedSet {
        QueuedSet::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.run_live + self.others.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position of `e` in the deque, live or dead.
    ///
    /// Searched outward from the front (1, 2, 4, ... slots, then a binary
    /// search within the last step): the entries looked up are mostly near
    /// the front (the queued relatives of a task just taken, reserved for
    /// its worker), where this touches a few cached slots instead of a
    /// binary search's probes across the whole deque.
    fn run_position(&self, e: &Entry) -> Option<usize> {
        let n = self.run.len();
        let below = |i: usize| self.run[i].entry() < *e;
        // find `hi` with run[hi] >= e (or the end), `lo` with run[..lo] < e
        let (mut lo, mut hi) = (0, 1);
        while hi < n && below(hi - 1) {
            lo = hi;
            hi = (hi * 2).min(n);
        }
        let mut hi = hi.min(n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < n && self.run[lo].entry() == *e).then_some(lo)
    }

    /// Membership.
    pub fn contains(&self, e: &Entry) -> bool {
        match self.run_position(e) {
            Some(i) if self.run[i].live => true,
            _ => self.others.contains(e),
        }
    }

    /// Add `e`; false if it was already there.
    pub fn insert(&mut self, e: Entry) -> bool {
        let after_run = self.run.back().is_none_or(|s| s.entry() < e);
        if after_run {
            if !self.others.is_empty() && self.others.contains(&e) {
                return false;
            }
            self.run.push_back(Slot {
                priority: e.0,
                id: e.1,
                live: true,
            });
            self.run_live += 1;
            return true;
        }
        if let Some(i) = self.run_position(&e) {
            if self.run[i].live {
                return false;
            }
            // a dead slot of the same entry: live again, in its place
            self.run[i].live = true;
            self.run_live += 1;
            return true;
        }
        self.others.insert(e)
    }

    /// Remove `e`; false if it was not there.
    pub fn remove(&mut self, e: &Entry) -> bool {
        match self.run_position(e) {
            Some(i) if self.run[i].live => {
                self.run[i].live = false;
                self.run_live -= 1;
                self.drop_dead_ends();
                true
            }
            _ => self.others.remove(e),
        }
    }

    /// The lowest entry, taken out.
    pub fn pop_first(&mut self) -> Option<Entry> {
        self.drop_dead_ends();
        let from_run = match (self.run.front(), self.others.first()) {
            (Some(s), Some(o)) => s.entry() < *o,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_run {
            let s = self.run.pop_front()?;
            self.run_live -= 1;
            self.drop_dead_ends();
            Some(s.entry())
        } else {
            self.others.pop_first()
        }
    }

    /// The entries, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        Merge {
            run: self
                .run
                .iter()
                .filter(|s| s.live)
                .map(Slot::entry)
                .peekable(),
            others: self.others.iter().copied().peekable(),
        }
    }

    /// Drop dead slots at both ends of the deque, and sweep them all when
    /// they are many and outnumber the live ones.
    fn drop_dead_ends(&mut self) {
        while self.run.front().is_some_and(|s| !s.live) {
            self.run.pop_front();
        }
        while self.run.back().is_some_and(|s| !s.live) {
            self.run.pop_back();
        }
        let dead = self.run.len() - self.run_live;
        if dead > SWEEP_AT && dead > self.run_live {
            self.run.retain(|s| s.live);
        }
    }
}

/// Two sorted iterators merged into one.
struct Merge<A: Iterator<Item = Entry>, B: Iterator<Item = Entry>> {
    run: std::iter::Peekable<A>,
    others: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = Entry>, B: Iterator<Item = Entry>> Iterator for Merge<A, B> {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        match (self.run.peek(), self.others.peek()) {
            (Some(a), Some(b)) if b < a => self.others.next(),
            (Some(_), _) => self.run.next(),
            (None, _) => self.others.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(order: i64, id: TaskId) -> Entry {
        (
            Priority {
                user: 0.0,
                generation: 1.0,
                order,
            },
            id,
        )
    }

    /// Small deterministic generator (no extra dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn behaves_as_an_ordered_set_under_random_operations() {
        for seed in 0..20 {
            let mut rng = Lcg(seed);
            let mut s = QueuedSet::new();
            let mut model: BTreeSet<Entry> = BTreeSet::new();
            let mut next_order = 0i64;
            for step in 0..5000 {
                match rng.next(10) {
                    // mostly appends in order, as a submission queues
                    0..=3 => {
                        next_order += 1;
                        let x = e(next_order, next_order as TaskId);
                        assert_eq!(s.insert(x), model.insert(x));
                    }
                    // an entry anywhere, often one seen before
                    4 | 5 => {
                        let o = rng.next(next_order as u64 + 2) as i64;
                        let x = e(o, o as TaskId);
                        assert_eq!(s.insert(x), model.insert(x), "seed {seed} step {step}");
                    }
                    6 | 7 => {
                        let o = rng.next(next_order as u64 + 2) as i64;
                        let x = e(o, o as TaskId);
                        assert_eq!(s.remove(&x), model.remove(&x), "seed {seed} step {step}");
                    }
                    _ => assert_eq!(s.pop_first(), model.pop_first(), "seed {seed} step {step}"),
                }
                assert_eq!(s.len(), model.len());
                if step % 97 == 0 {
                    assert!(
                        s.iter().eq(model.iter().copied()),
                        "seed {seed} step {step}"
                    );
                    for o in 0..next_order + 2 {
                        let x = e(o, o as TaskId);
                        assert_eq!(s.contains(&x), model.contains(&x));
                    }
                }
            }
            while let Some(x) = model.pop_first() {
                assert_eq!(s.pop_first(), Some(x));
            }
            assert!(s.is_empty() && s.pop_first().is_none());
        }
    }

    #[test]
    fn in_order_entries_stay_out_of_the_tree_and_removals_are_swept() {
        let mut s = QueuedSet::new();
        let n = 10_000i64;
        for i in 0..n {
            assert!(s.insert(e(i, i as TaskId)));
        }
        assert!(s.others.is_empty(), "in-order entries go to the deque");
        // a removed entry comes back in its slot
        assert!(s.remove(&e(5, 5)));
        assert!(!s.remove(&e(5, 5)), "removed once");
        assert!(s.insert(e(5, 5)));
        assert!(s.others.is_empty());
        // remove three in four from the middle: marked dead, then swept
        // once they outnumber the live ones
        for i in (1..n - 1).filter(|i| i % 4 != 0) {
            assert!(s.remove(&e(i, i as TaskId)));
        }
        assert_eq!(s.len(), 2501);
        assert!(
            s.run.len() - s.run_live <= SWEEP_AT.max(s.run_live),
            "dead slots are bounded: {} of {}",
            s.run.len() - s.run_live,
            s.run.len()
        );
        // an entry swept out comes back out of order, and still pops in order
        assert!(s.insert(e(3, 3)));
        let got: Vec<i64> = std::iter::from_fn(|| s.pop_first())
            .map(|(p, _)| p.order)
            .take(4)
            .collect();
        assert_eq!(got, vec![0, 3, 4, 8]);
    }
}
