//! Key → task id lookup that does not hold a second copy of each key.
//!
//! A `HashMap<Key, TaskId>` keeps its own clone of every key (a 32-byte
//! `Bytes` handle per entry, plus the shared header the first clone of a
//! key allocates). Here the table holds only `(task id, 32 bits of the key's
//! hash)`, 8 bytes per entry: the key itself is read from the task arena
//! when a lookup has to compare bytes, and growing the table rehashes from
//! the stored bits without touching the arena.
//!
//! Removals are deferred. A removed task's entry stays in the table, marked
//! dead in a bitset by id, and its arena slot stays empty (a lookup that
//! reaches the entry finds no task there, so no key matches it); once enough
//! entries are dead, one pass over the table drops them all and hands their
//! slots back for reuse ([`KeyIndex::sweep`]). Removing an entry on the spot
//! costs a random probe into a table of up to millions of entries (two cache
//! and TLB misses: the control bytes and the bucket), while releasing a
//! large graph removes its keys in the arena's order; the pass reads the
//! table in order and checks a bitset that stays in cache. In the core bench
//! the on-the-spot removals were ~40 % of releasing a 1M-task graph.

use crate::ids::TaskId;
use crate::task::Task;
use hashbrown::HashTable;
use std::hash::Hasher;

/// The key index of [`crate::State`]: finds a task by its key's canonical
/// bytes. The tasks themselves live in the arena passed to each call.
#[derive(Debug, Default)]
pub struct KeyIndex {
    table: HashTable<(TaskId, u32)>,
    /// One bit per arena slot: set while the slot's entry is dead (removed,
    /// not yet swept). Such a slot must stay empty until the sweep.
    dead: Vec<u64>,
    /// The ids whose bit is set in `dead`.
    dead_ids: Vec<TaskId>,
}

/// Fewest dead entries a sweep waits for: a small scheduler leaves at most
/// this many arena slots empty before it can reuse them.
const MIN_SWEEP: usize = 1024;

/// 32 bits of a key's hash: stored with each entry, compared before the
/// key bytes, and spread back to 64 bits for the table's own hash.
/// Computed once per key by [`KeyHash::of`] where a caller looks the same
/// key up more than once (a graph submission).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u32);

impl KeyHash {
    /// The hash of a key's canonical bytes.
    pub fn of(bytes: &[u8]) -> KeyHash {
        let mut h = rustc_hash::FxHasher::default();
        h.write(bytes);
        KeyHash((h.finish() >> 32) as u32)
    }

    /// The 64-bit hash a hash table of keys should use (spread from the
    /// stored 32 bits, see [`table_hash`]).
    pub fn table_hash(self) -> u64 {
        table_hash(self.0)
    }
}

/// The table's 64-bit hash of an entry: the stored bits multiplied by an
/// odd constant, so the table's bucket index (low bits) and its tag (high
/// bits) both depend on all 32 of them.
fn table_hash(short: u32) -> u64 {
    (short as u64 | (short as u64) << 32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn key_of(tasks: &[Option<Task>], id: TaskId) -> Option<&[u8]> {
    tasks
        .get(id as usize)
        .and_then(Option::as_ref)
        .map(|t| &t.key.as_bytes()[..])
}

impl KeyIndex {
    /// The task whose key has these canonical bytes.
    pub fn get(&self, tasks: &[Option<Task>], bytes: &[u8]) -> Option<TaskId> {
        self.get_hashed(tasks, KeyHash::of(bytes), bytes)
    }

    /// [`get`](Self::get) with the key's hash already computed.
    pub fn get_hashed(
        &self,
        tasks: &[Option<Task>],
        hash: KeyHash,
        bytes: &[u8],
    ) -> Option<TaskId> {
        let short = hash.0;
        self.table
            .find(table_hash(short), |&(id, s)| {
                s == short && key_of(tasks, id) == Some(bytes)
            })
            .map(|&(id, _)| id)
    }

    /// Index task `id` under `bytes` (its key; the caller checked that no
    /// task has this key).
    pub fn insert(&mut self, bytes: &[u8], id: TaskId) {
        self.insert_hashed(KeyHash::of(bytes), id)
    }

    /// [`insert`](Self::insert) with the key's hash already computed.
    pub fn insert_hashed(&mut self, hash: KeyHash, id: TaskId) {
        let short = hash.0;
        self.table
            .insert_unique(table_hash(short), (id, short), |&(_, s)| table_hash(s));
    }

    /// Mark the entry of task `id` dead; its arena slot was just emptied and
    /// must stay empty until [`sweep`](Self::sweep) hands it back. Returns
    /// true when enough entries are dead that the caller should sweep now.
    pub fn remove(&mut self, id: TaskId) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        if self.dead.len() <= word {
            self.dead.resize(word + 1, 0);
        }
        if self.dead[word] & (1 << bit) == 0 {
            self.dead[word] |= 1 << bit;
            self.dead_ids.push(id);
        }
        self.dead_ids.len() >= MIN_SWEEP.max(self.table.capacity() / 16)
    }

    /// Drop every dead entry in one pass over the table, and append their
    /// ids to `freed`: their arena slots can be reused from now on.
    pub fn sweep(&mut self, freed: &mut Vec<TaskId>) {
        if self.dead_ids.is_empty() {
            return;
        }
        let dead = &self.dead;
        self.table.retain(|&mut (id, _)| !is_set(dead, id));
        for &id in &self.dead_ids {
            self.dead[id as usize / 64] &= !(1 << (id % 64));
        }
        freed.append(&mut self.dead_ids);
    }

    /// Number of indexed tasks (dead entries not counted).
    pub fn len(&self) -> usize {
        self.table.len() - self.dead_ids.len()
    }

    /// True when no task is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Make room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.table.reserve(n, |&(_, s)| table_hash(s));
    }

    /// Every indexed task id, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.table
            .iter()
            .map(|&(id, _)| id)
            .filter(|&id| !is_set(&self.dead, id))
    }
}

/// True if `id`'s bit is set in the bitset `bits`.
fn is_set(bits: &[u64], id: TaskId) -> bool {
    bits.get(id as usize / 64)
        .is_some_and(|w| w & (1 << (id % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_wire::Key;

    fn arena(keys: &[&str]) -> Vec<Option<Task>> {
        keys.iter()
            .map(|k| Some(Task::new(Key::from_str_key(k), 0, 0)))
            .collect()
    }

    /// Keys `{prefix}-0` .. `{prefix}-{n-1}`, an arena of them (id = position)
    /// and an index of the arena.
    fn indexed(prefix: &str, n: usize) -> (Vec<String>, Vec<Option<Task>>, KeyIndex) {
        let keys: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let tasks = arena(&refs);
        let mut index = KeyIndex::default();
        for (id, t) in tasks.iter().enumerate() {
            index.insert(t.as_ref().unwrap().key.as_bytes(), id as TaskId);
        }
        (keys, tasks, index)
    }

    #[test]
    fn finds_inserts_and_removes_by_key_bytes() {
        let (keys, mut tasks, mut index) = indexed("x", 2000);
        assert_eq!(index.len(), 2000);
        for (id, k) in keys.iter().enumerate() {
            let bytes = Key::from_str_key(k);
            assert_eq!(index.get(&tasks, bytes.as_bytes()), Some(id as TaskId));
        }
        assert_eq!(
            index.get(&tasks, Key::from_str_key("x-2000").as_bytes()),
            None
        );

        // removal goes by id (the slot is empty); the key can then no
        // longer be found, and the slot is held back until a sweep
        let gone = tasks[7].take().unwrap();
        assert!(!index.remove(7), "one dead entry is no reason to sweep");
        assert!(!index.remove(7));
        assert_eq!(index.get(&tasks, gone.key.as_bytes()), None);
        assert_eq!(index.len(), 1999);
        let mut ids: Vec<TaskId> = index.ids().collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 1999);
        assert!(!ids.contains(&7));
        let mut freed = Vec::new();
        index.sweep(&mut freed);
        assert_eq!(freed, vec![7], "a slot is handed back once");
        assert_eq!(index.len(), 1999);
        assert_eq!(index.ids().count(), 1999);

        // a slot reused by another key answers only to the new key
        tasks[7] = Some(Task::new(Key::from_str_key("reused"), 0, 0));
        index.insert(Key::from_str_key("reused").as_bytes(), 7);
        assert_eq!(
            index.get(&tasks, Key::from_str_key("reused").as_bytes()),
            Some(7)
        );
        assert_eq!(index.get(&tasks, gone.key.as_bytes()), None);
    }

    #[test]
    fn a_sweep_is_asked_for_once_enough_entries_are_dead() {
        let (keys, mut tasks, mut index) = indexed("k", 3000);
        let mut freed = Vec::new();
        let mut asked = 0;
        for id in 0..2500u32 {
            tasks[id as usize] = None;
            if index.remove(id) {
                asked += 1;
                index.sweep(&mut freed);
                assert_eq!(freed.len() as u32, id + 1, "every dead slot so far");
            }
            assert_eq!(index.len(), 3000 - id as usize - 1);
        }
        assert_eq!(asked, 2, "one sweep per {MIN_SWEEP} removals here");
        index.sweep(&mut freed);
        freed.sort_unstable();
        assert_eq!(freed, (0..2500).collect::<Vec<_>>());
        // the live keys are all still found, the removed ones are not
        for (id, k) in keys.iter().enumerate() {
            let found = index.get(&tasks, Key::from_str_key(k).as_bytes());
            assert_eq!(found, (id >= 2500).then_some(id as TaskId), "{k}");
        }
    }

    #[test]
    fn an_arena_slot_that_holds_another_key_is_not_a_match() {
        // same short hash is not enough: the bytes decide
        let tasks = arena(&["a"]);
        let mut index = KeyIndex::default();
        index.insert(Key::from_str_key("a").as_bytes(), 0);
        assert_eq!(index.get(&tasks, Key::from_str_key("b").as_bytes()), None);
        assert_eq!(index.get(&[], Key::from_str_key("a").as_bytes()), None);
    }
}
