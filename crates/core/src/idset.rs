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
use std::hash::Hash;

/// Size at which the list becomes a hash set.
pub const PROMOTE_AT: usize = 32;

/// Ids held inline, in the set itself, before a list is allocated.
pub const INLINE: usize = 5;

/// A set of small `Copy` ids (see the module docs). Iteration order is
/// insertion order (up to removals, which swap the last id into the gap)
/// while small, and the hash set's order once large, as unordered as
/// Python's sets.
///
/// 24 bytes for 4-byte ids: a task holds four of these, so every byte here
/// is four per task (a `SmallVec` of four inline ids in an enum is 32).
#[derive(Debug, Clone)]
pub enum IdSet<T: Copy + Eq + Hash + Default> {
    /// Up to [`INLINE`] ids in place; slots past `len` are unused.
    Inline {
        /// Ids held.
        len: u8,
        /// The ids, `ids[..len]`.
        ids: [T; INLINE],
    },
    /// Up to [`PROMOTE_AT`] ids in a heap list whose length is its capacity.
    List {
        /// Ids held.
        len: u32,
        /// The ids, `ids[..len]`.
        ids: Box<[T]>,
    },
    /// Many ids.
    Large(Box<FxHashSet<T>>),
}

impl<T: Copy + Eq + Hash + Default> Default for IdSet<T> {
    fn default() -> Self {
        IdSet::Inline {
            len: 0,
            ids: [T::default(); INLINE],
        }
    }
}

impl<T: Copy + Eq + Hash + Default> IdSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids as a slice while small; `None` once a hash set.
    fn as_slice(&self) -> Option<&[T]> {
        match self {
            IdSet::Inline { len, ids } => Some(&ids[..*len as usize]),
            IdSet::List { len, ids } => Some(&ids[..*len as usize]),
            IdSet::Large(_) => None,
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            IdSet::Inline { len, .. } => *len as usize,
            IdSet::List { len, .. } => *len as usize,
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
            IdSet::Large(s) => s.contains(x),
            small => small.as_slice().is_some_and(|v| v.contains(x)),
        }
    }

    /// Add `x`; false if it was already there.
    pub fn insert(&mut self, x: T) -> bool {
        if self.contains(&x) {
            return false;
        }
        match self {
            IdSet::Inline { len, ids } if (*len as usize) < INLINE => {
                ids[*len as usize] = x;
                *len += 1;
            }
            IdSet::Inline { ids, .. } => {
                let mut list = vec![T::default(); 2 * INLINE].into_boxed_slice();
                list[..INLINE].copy_from_slice(ids);
                list[INLINE] = x;
                *self = IdSet::List {
                    len: INLINE as u32 + 1,
                    ids: list,
                };
            }
            IdSet::List { len, ids } if (*len as usize) < ids.len() => {
                ids[*len as usize] = x;
                *len += 1;
            }
            IdSet::List { len, ids } if (*len as usize) < PROMOTE_AT => {
                let n = *len as usize;
                let mut list = vec![T::default(); (2 * n).min(PROMOTE_AT)].into_boxed_slice();
                list[..n].copy_from_slice(ids);
                list[n] = x;
                *len += 1;
                *ids = list;
            }
            IdSet::List { len, ids } => {
                let mut s: FxHashSet<T> = ids[..*len as usize].iter().copied().collect();
                s.insert(x);
                *self = IdSet::Large(Box::new(s));
            }
            IdSet::Large(s) => {
                s.insert(x);
            }
        }
        true
    }

    /// Remove `x`; false if it was not there.
    pub fn remove(&mut self, x: &T) -> bool {
        match self {
            IdSet::Large(s) => s.remove(x),
            IdSet::Inline { len, ids } => {
                let removed = swap_remove(&mut ids[..*len as usize], x);
                *len -= u8::from(removed);
                removed
            }
            IdSet::List { len, ids } => {
                let removed = swap_remove(&mut ids[..*len as usize], x);
                *len -= u32::from(removed);
                removed
            }
        }
    }

    /// Remove every id.
    pub fn clear(&mut self) {
        *self = IdSet::default();
    }

    /// The ids.
    pub fn iter(&self) -> Iter<'_, T> {
        match self {
            IdSet::Large(s) => Iter::Large(s.iter()),
            small => Iter::Small(small.as_slice().unwrap_or_default().iter()),
        }
    }
}

/// Move the last id of `ids` over `x`, if `x` is there; true if it was.
fn swap_remove<T: Copy + Eq>(ids: &mut [T], x: &T) -> bool {
    match ids.iter().position(|y| y == x) {
        Some(pos) => {
            ids[pos] = ids[ids.len() - 1];
            true
        }
        None => false,
    }
}

impl<T: Copy + Eq + Hash + Default> FromIterator<T> for IdSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut s = IdSet::new();
        for x in iter {
            s.insert(x);
        }
        s
    }
}

impl<T: Copy + Eq + Hash + Default> Extend<T> for IdSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for x in iter {
            self.insert(x);
        }
    }
}

impl<T: Copy + Eq + Hash + Default> PartialEq for IdSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|x| other.contains(x))
    }
}

/// Iterator over an [`IdSet`].
pub enum Iter<'a, T> {
    /// Over the inline or heap list.
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

impl<'a, T: Copy + Eq + Hash + Default> IntoIterator for &'a IdSet<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: Copy + Eq + Hash + Default> IntoIterator for IdSet<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        match self {
            IdSet::Inline { len, ids } => IntoIter::Inline {
                ids: ids.into_iter().take(len as usize),
            },
            IdSet::List { len, ids } => IntoIter::List {
                ids: ids.into_vec().into_iter().take(len as usize),
            },
            IdSet::Large(s) => IntoIter::Large(s.into_iter()),
        }
    }
}

/// Owning iterator over an [`IdSet`].
pub enum IntoIter<T: Copy> {
    /// Over the inline ids.
    Inline {
        /// The held ids.
        ids: std::iter::Take<std::array::IntoIter<T, INLINE>>,
    },
    /// Over the heap list.
    List {
        /// The held ids.
        ids: std::iter::Take<std::vec::IntoIter<T>>,
    },
    /// Over the hash set.
    Large(std::collections::hash_set::IntoIter<T>),
}

impl<T: Copy> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            IntoIter::Inline { ids } => ids.next(),
            IntoIter::List { ids } => ids.next(),
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
        assert!(s.is_empty() && matches!(s, IdSet::Inline { .. }));
    }

    #[test]
    fn small_sets_keep_insertion_order() {
        let s: IdSet<u32> = [5, 3, 9, 3].into_iter().collect();
        assert!(matches!(s, IdSet::Inline { len: 3, .. }));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![5, 3, 9]);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![5, 3, 9]);
        let s: IdSet<u32> = (0..12).collect();
        assert!(matches!(s, IdSet::List { len: 12, .. }));
        assert_eq!(
            s.iter().copied().collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_size_through_promotion_matches_a_model() {
        // Each size from empty past the promotion point, with removals from
        // the front, middle and back at each, so every variant and every
        // growth step (inline -> list -> larger list -> hash set) is crossed.
        for n in 0..(PROMOTE_AT as u32 + 3) {
            for victim in [0, n / 2, n.saturating_sub(1), n + 100] {
                let mut s: IdSet<u32> = (0..n).collect();
                let mut model: std::collections::BTreeSet<u32> = (0..n).collect();
                assert_eq!(s.len(), model.len(), "n={n}");
                assert_eq!(
                    s.remove(&victim),
                    model.remove(&victim),
                    "n={n} remove {victim}"
                );
                assert!(!s.contains(&victim));
                assert_eq!(s.insert(n + 7), model.insert(n + 7));
                assert!(!s.insert(n + 7), "no duplicates");
                let mut got: Vec<u32> = s.clone().into_iter().collect();
                got.sort_unstable();
                assert_eq!(got, model.iter().copied().collect::<Vec<_>>(), "n={n}");
                assert_eq!(s.len(), model.len());
            }
        }
    }

    #[test]
    fn a_set_of_four_byte_ids_is_24_bytes() {
        assert_eq!(std::mem::size_of::<IdSet<u32>>(), 24);
    }
}
