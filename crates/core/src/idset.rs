//! A set of ids that is a short inline list while small and a hash set once
//! large.
//!
//! A task's dependencies, dependents, `waiting_on` and `waiters` are sets in
//! Python. Most hold a handful of ids, where a linear scan of an inline list
//! beats hashing and allocates nothing; but a fan-in (`client.submit(sum,
//! futures)` over 100k futures) or a broadcast (one scattered array used by
//! 100k tasks) makes one of them huge, and a list then costs O(n) per insert
//! or removal: O(n²) for the graph. Past [`PROMOTE_AT`] ids the set switches
//! to a hash set and stays one.

use rustc_hash::FxHashSet;
use smallvec::SmallVec;
use std::hash::Hash;

/// Size at which the inline list becomes a hash set.
pub const PROMOTE_AT: usize = 32;

/// A set of small `Copy` ids (see the module docs). Iteration order is
/// insertion order (up to removals, which swap the last id into the gap)
/// while small, and the hash set's order once large, as unordered as
/// Python's sets.
#[derive(Debug, Clone)]
pub enum IdSet<T: Copy + Eq + Hash> {
    /// Up to [`PROMOTE_AT`] ids, four of them inline.
    Small(SmallVec<[T; 4]>),
    /// Many ids.
    Large(Box<FxHashSet<T>>),
}

impl<T: Copy + Eq + Hash> Default for IdSet<T> {
    fn default() -> Self {
        IdSet::Small(SmallVec::new())
    }
}

impl<T: Copy + Eq + Hash> IdSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            IdSet::Small(v) => v.len(),
            IdSet::Large(s) => s.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Membership.
    pub fn contains(&self, x: &T) -> bool {
        match self {
            IdSet::Small(v) => v.contains(x),
            IdSet::Large(s) => s.contains(x),
        }
    }

    /// Add `x`; false if it was already there.
    pub fn insert(&mut self, x: T) -> bool {
        match self {
            IdSet::Small(v) => {
                if v.contains(&x) {
                    return false;
                }
                if v.len() < PROMOTE_AT {
                    v.push(x);
                } else {
                    let mut s: FxHashSet<T> = v.iter().copied().collect();
                    s.insert(x);
                    *self = IdSet::Large(Box::new(s));
                }
                true
            }
            IdSet::Large(s) => s.insert(x),
        }
    }

    /// Remove `x`; false if it was not there.
    pub fn remove(&mut self, x: &T) -> bool {
        match self {
            IdSet::Small(v) => match v.iter().position(|y| y == x) {
                Some(pos) => {
                    v.swap_remove(pos);
                    true
                }
                None => false,
            },
            IdSet::Large(s) => s.remove(x),
        }
    }

    /// Remove every id.
    pub fn clear(&mut self) {
        *self = IdSet::default();
    }

    /// The ids.
    pub fn iter(&self) -> Iter<'_, T> {
        match self {
            IdSet::Small(v) => Iter::Small(v.iter()),
            IdSet::Large(s) => Iter::Large(s.iter()),
        }
    }
}

impl<T: Copy + Eq + Hash> FromIterator<T> for IdSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut s = IdSet::new();
        for x in iter {
            s.insert(x);
        }
        s
    }
}

impl<T: Copy + Eq + Hash> Extend<T> for IdSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for x in iter {
            self.insert(x);
        }
    }
}

impl<T: Copy + Eq + Hash> PartialEq for IdSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|x| other.contains(x))
    }
}

/// Iterator over an [`IdSet`].
pub enum Iter<'a, T> {
    /// Over the inline list.
    Small(std::slice::Iter<'a, T>),
    /// Over the hash set.
    Large(std::collections::hash_set::Iter<'a, T>),
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;
    fn next(&mut self) -> Option<&'a T> {
        match self {
            Iter::Small(i) => i.next(),
            Iter::Large(i) => i.next(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(i) => i.size_hint(),
            Iter::Large(i) => i.size_hint(),
        }
    }
}

impl<'a, T: Copy + Eq + Hash> IntoIterator for &'a IdSet<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: Copy + Eq + Hash> IntoIterator for IdSet<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        match self {
            IdSet::Small(v) => IntoIter::Small(v.into_iter()),
            IdSet::Large(s) => IntoIter::Large(s.into_iter()),
        }
    }
}

/// Owning iterator over an [`IdSet`].
pub enum IntoIter<T: Copy> {
    /// Over the inline list.
    Small(smallvec::IntoIter<[T; 4]>),
    /// Over the hash set.
    Large(std::collections::hash_set::IntoIter<T>),
}

impl<T: Copy> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            IntoIter::Small(i) => i.next(),
            IntoIter::Large(i) => i.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_behave_as_a_set() {
        let mut s: IdSet<u32> = IdSet::new();
        let mut model = std::collections::BTreeSet::new();
        // Grow past the promotion point, remove some, re-add duplicates.
        for i in 0..200u32 {
            let x = (i * 7) % 97;
            assert_eq!(s.insert(x), model.insert(x), "insert {x}");
            if i % 3 == 0 {
                let y = (i * 5) % 97;
                assert_eq!(s.remove(&y), model.remove(&y), "remove {y}");
            }
            assert_eq!(s.len(), model.len());
        }
        assert!(matches!(s, IdSet::Large(_)));
        let mut got: Vec<u32> = s.iter().copied().collect();
        got.sort_unstable();
        assert_eq!(got, model.iter().copied().collect::<Vec<_>>());
        for x in 0..100 {
            assert_eq!(s.contains(&x), model.contains(&x));
        }
        s.clear();
        assert!(s.is_empty() && matches!(s, IdSet::Small(_)));
    }

    #[test]
    fn small_sets_keep_insertion_order() {
        let s: IdSet<u32> = [5, 3, 9, 3].into_iter().collect();
        assert!(matches!(s, IdSet::Small(_)));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![5, 3, 9]);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![5, 3, 9]);
    }
}
