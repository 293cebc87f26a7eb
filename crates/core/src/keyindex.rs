//! Key → task id lookup that does not hold a second copy of each key.
//!
//! A `HashMap<Key, TaskId>` keeps its own clone of every key (a 32-byte
//! `Bytes` handle per entry, plus the shared header the first clone of a
//! key allocates). Here the table holds only `(task id, 32 bits of the key's
//! hash)`, 8 bytes per entry: the key itself is read from the task arena
//! when a lookup has to compare bytes, and growing the table rehashes from
//! the stored bits without touching the arena. Removing a task needs no byte
//! comparison at all (the id is known).

use crate::ids::TaskId;
use crate::task::Task;
use hashbrown::HashTable;
use std::hash::Hasher;

/// The key index of [`crate::State`]: finds a task by its key's canonical
/// bytes. The tasks themselves live in the arena passed to each call.
#[derive(Debug, Default)]
pub struct KeyIndex {
    table: HashTable<(TaskId, u32)>,
}

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

    /// Drop the entry of task `id`, whose key has these bytes.
    pub fn remove(&mut self, bytes: &[u8], id: TaskId) -> bool {
        let short = KeyHash::of(bytes).0;
        match self.table.find_entry(table_hash(short), |&(i, _)| i == id) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Number of indexed tasks.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no task is indexed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Make room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.table.reserve(n, |&(_, s)| table_hash(s));
    }

    /// Every indexed task id, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.table.iter().map(|&(id, _)| id)
    }
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

    #[test]
    fn finds_inserts_and_removes_by_key_bytes() {
        let keys: Vec<String> = (0..2000).map(|i| format!("x-{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut tasks = arena(&refs);
        let mut index = KeyIndex::default();
        for (id, t) in tasks.iter().enumerate() {
            index.insert(t.as_ref().unwrap().key.as_bytes(), id as TaskId);
        }
        assert_eq!(index.len(), 2000);
        for (id, k) in refs.iter().enumerate() {
            let bytes = Key::from_str_key(k);
            assert_eq!(index.get(&tasks, bytes.as_bytes()), Some(id as TaskId));
        }
        assert_eq!(
            index.get(&tasks, Key::from_str_key("x-2000").as_bytes()),
            None
        );

        // removal goes by id; the key can then no longer be found
        let gone = tasks[7].take().unwrap();
        assert!(index.remove(gone.key.as_bytes(), 7));
        assert!(!index.remove(gone.key.as_bytes(), 7));
        assert_eq!(index.get(&tasks, gone.key.as_bytes()), None);
        assert_eq!(index.len(), 1999);
        let mut ids: Vec<TaskId> = index.ids().collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 1999);
        assert!(!ids.contains(&7));

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
    fn an_arena_slot_that_holds_another_key_is_not_a_match() {
        // same short hash is not enough: the bytes decide
        let tasks = arena(&["a"]);
        let mut index = KeyIndex::default();
        index.insert(Key::from_str_key("a").as_bytes(), 0);
        assert_eq!(index.get(&tasks, Key::from_str_key("b").as_bytes()), None);
        assert_eq!(index.get(&[], Key::from_str_key("a").as_bytes()), None);
    }
}
