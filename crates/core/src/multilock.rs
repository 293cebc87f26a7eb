//! `distributed.MultiLock`: several named locks taken together, the
//! scheduler-side state of Python's `MultiLockExtension`.
//!
//! Why: a task or client that needs several resources at once asks for all
//! of them in one request, so two requesters cannot each hold half. Every
//! lock name has a queue of requester ids; the front of a queue holds that
//! lock. A requester queues on its locks (emptiest queues first) and holds
//! them once it is at the front of `num_locks` of them. Waiting for that is
//! the server's part ([`State::multi_lock_acquired`] after each release).

use crate::state::State;
use std::collections::{HashMap, HashSet, VecDeque};

/// The queues of every lock name and what each requester waits for.
#[derive(Debug, Default)]
pub struct MultiLocks {
    /// Lock name → requester ids; the front one holds the lock.
    queues: HashMap<String, VecDeque<String>>,
    /// Requester → the locks it is queued on.
    requests: HashMap<String, HashSet<String>>,
    /// Requester → how many more locks it must hold.
    left: HashMap<String, usize>,
}

impl State {
    /// `multi_lock_acquire`, first step: queue `id` on `locks`; true if it
    /// holds `num_locks` of them at once (it then leaves the queues of the
    /// locks it did not need). An id already queued, or a `num_locks` not
    /// in `1..=locks.len()`, is an error.
    pub fn multi_lock_request(
        &mut self,
        locks: &[String],
        id: &str,
        num_locks: usize,
    ) -> Result<bool, String> {
        let m = &mut self.multi_locks;
        if m.requests.contains_key(id) {
            return Err(format!("MultiLock {id} has already requested its locks"));
        }
        let mut seen = HashSet::new();
        let mut order: Vec<&String> = locks.iter().filter(|l| seen.insert(*l)).collect();
        if num_locks == 0 || num_locks > order.len() {
            return Err(format!(
                "num_locks must be between 1 and {} (the number of locks), not {num_locks}",
                order.len()
            ));
        }
        order.sort_by_key(|l| m.queues.get(*l).map_or(0, VecDeque::len));
        let mut requested = HashSet::new();
        let mut left = num_locks;
        for lock in order {
            let q = m.queues.entry(lock.clone()).or_default();
            q.push_back(id.to_string());
            requested.insert(lock.clone());
            if q.len() == 1 {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        m.requests.insert(id.to_string(), requested);
        m.left.insert(id.to_string(), left);
        Ok(left == 0)
    }

    /// Whether `id` holds all the locks it asked for.
    pub fn multi_lock_acquired(&self, id: &str) -> bool {
        self.multi_locks.left.get(id) == Some(&0)
    }

    /// `multi_lock_release`, or giving up after a timeout: `id` leaves every
    /// queue it is on; whoever comes to the front of one holds one more
    /// lock. Returns false if `id` had requested nothing.
    pub fn multi_lock_release(&mut self, id: &str) -> bool {
        let m = &mut self.multi_locks;
        let Some(locks) = m.requests.remove(id) else {
            return false;
        };
        m.left.remove(id);
        for lock in locks {
            let Some(q) = m.queues.get_mut(&lock) else {
                continue;
            };
            if q.front().map(String::as_str) == Some(id) {
                q.pop_front();
                if let Some(next) = q.front() {
                    if let Some(n) = m.left.get_mut(next) {
                        *n = n.saturating_sub(1);
                    }
                }
            } else {
                q.retain(|u| u != id);
            }
            if q.is_empty() {
                m.queues.remove(&lock);
            }
        }
        true
    }
}
