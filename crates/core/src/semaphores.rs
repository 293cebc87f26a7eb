//! `distributed.Semaphore` and `distributed.Lock` (a semaphore of one
//! lease): the scheduler-side state of Python's `SemaphoreExtension`.
//!
//! Why: tasks and clients limit concurrent access to a resource through
//! leases the scheduler grants. A lease is kept alive by its holder's
//! `semaphore_refresh_leases` calls and taken back when they stop for longer
//! than the semaphore's lease timeout (a worker that died holding it).
//! Waiting for a lease is the server's part: it tries again after every
//! release ([`State::semaphore_release`] and the timeouts return whether
//! anything was freed).

use crate::coordination::key_label as label;
use crate::state::State;
use dask_wire::Key;
use std::collections::HashMap;

/// One named semaphore.
#[derive(Debug, Clone)]
struct Semaphore {
    max_leases: i64,
    /// Seconds without a refresh after which a lease is taken back; None:
    /// never.
    lease_timeout: Option<f64>,
    /// Lease id → when it was acquired or last refreshed.
    leases: HashMap<String, f64>,
    /// Counters for `/metrics`.
    metrics: SemaphoreCounters,
}

/// What Python's `SemaphoreExtension.metrics` counts per semaphore.
#[derive(Debug, Clone, Copy, Default)]
struct SemaphoreCounters {
    acquire_total: u64,
    release_total: u64,
    pending: i64,
    average_pending_lease_time: f64,
}

/// One semaphore's `dask_semaphore_*` metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SemaphoreSnapshot {
    /// The name as Python prints it (the `name` label).
    pub name: String,
    /// `max_leases`.
    pub max_leases: i64,
    /// Leases held now.
    pub active_leases: usize,
    /// Acquire calls waiting now.
    pub pending_leases: i64,
    /// Leases granted (an idempotent re-acquire counts again, as in Python).
    pub acquire_total: u64,
    /// Leases released or taken back after their timeout.
    pub release_total: u64,
    /// Python's running average of the seconds acquire calls waited:
    /// `(average + waited) / 2` after each.
    pub average_pending_lease_time: f64,
}

/// Every registered semaphore, by name.
#[derive(Debug, Default)]
pub struct Semaphores {
    by_name: HashMap<Key, Semaphore>,
}

/// What [`State::semaphore_release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The lease was held and is now free.
    Released,
    /// No such semaphore (Python logs a warning).
    UnknownSemaphore,
    /// The lease was not held: released twice, or timed out before.
    NotHeld,
}

impl State {
    /// `semaphore_register`: create the semaphore, or check that an existing
    /// one has the same `max_leases` (a `ValueError` message otherwise).
    pub fn semaphore_register(
        &mut self,
        name: Key,
        max_leases: i64,
        lease_timeout: Option<f64>,
    ) -> Result<(), String> {
        match self.semaphores.by_name.get(&name) {
            Some(s) if s.max_leases != max_leases => Err(format!(
                "Inconsistent max leases: {max_leases}, expected: {}",
                s.max_leases
            )),
            Some(_) => Ok(()),
            None => {
                self.semaphores.by_name.insert(
                    name,
                    Semaphore {
                        max_leases,
                        lease_timeout,
                        leases: HashMap::new(),
                        metrics: SemaphoreCounters::default(),
                    },
                );
                Ok(())
            }
        }
    }

    /// One try at `semaphore_acquire`: true if `lease_id` holds a lease now
    /// (again, if it already did: the request is idempotent). An unknown
    /// semaphore is an error (Python's `RuntimeError`).
    pub fn semaphore_try_acquire(
        &mut self,
        name: &Key,
        lease_id: &str,
        now: f64,
    ) -> Result<bool, String> {
        let s = self
            .semaphores
            .by_name
            .get_mut(name)
            .ok_or_else(|| format!("Semaphore or Lock `{}` not known.", label(name)))?;
        let held = s.leases.contains_key(lease_id);
        if held || (s.leases.len() as i64) < s.max_leases {
            s.leases.insert(lease_id.to_string(), now);
            s.metrics.acquire_total += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `semaphore_release`.
    pub fn semaphore_release(&mut self, name: &Key, lease_id: &str) -> Release {
        let Some(s) = self.semaphores.by_name.get_mut(name) else {
            return Release::UnknownSemaphore;
        };
        if s.leases.remove(lease_id).is_some() {
            s.metrics.release_total += 1;
            Release::Released
        } else {
            Release::NotHeld
        }
    }

    /// `semaphore_refresh_leases`: the holder is alive. Returns the ids that
    /// were not held (Python logs them as critical: the lease timed out and
    /// the semaphore may now be overbooked); they are held again.
    pub fn semaphore_refresh_leases(
        &mut self,
        name: &Key,
        lease_ids: &[String],
        now: f64,
    ) -> Vec<String> {
        let Some(s) = self.semaphores.by_name.get_mut(name) else {
            return lease_ids.to_vec();
        };
        let mut unknown = Vec::new();
        for id in lease_ids {
            if s.leases.insert(id.clone(), now).is_none() {
                unknown.push(id.clone());
            }
        }
        unknown
    }

    /// Take back the leases not refreshed within their semaphore's lease
    /// timeout; returns how many (a waiter may now get one).
    pub fn semaphore_expire_leases(&mut self, now: f64) -> usize {
        let mut expired = 0;
        for s in self.semaphores.by_name.values_mut() {
            let Some(timeout) = s.lease_timeout else {
                continue;
            };
            let before = s.leases.len();
            s.leases.retain(|_, seen| now - *seen <= timeout);
            let taken = before - s.leases.len();
            s.metrics.release_total += taken as u64;
            expired += taken;
        }
        expired
    }

    /// An acquire call starts waiting (the `pending_leases` metric).
    pub fn semaphore_acquire_begin(&mut self, name: &Key) {
        if let Some(s) = self.semaphores.by_name.get_mut(name) {
            s.metrics.pending += 1;
        }
    }

    /// An acquire call that waited `waited` seconds returns, with a lease or
    /// not.
    pub fn semaphore_acquire_end(&mut self, name: &Key, waited: f64) {
        if let Some(s) = self.semaphores.by_name.get_mut(name) {
            let m = &mut s.metrics;
            m.average_pending_lease_time = (m.average_pending_lease_time + waited.max(0.0)) / 2.0;
            m.pending -= 1;
        }
    }

    /// Every semaphore's metrics, by name (for `/metrics`).
    pub fn semaphore_snapshots(&self) -> Vec<SemaphoreSnapshot> {
        let mut out: Vec<SemaphoreSnapshot> = self
            .semaphores
            .by_name
            .iter()
            .map(|(name, s)| SemaphoreSnapshot {
                name: label(name),
                max_leases: s.max_leases,
                active_leases: s.leases.len(),
                pending_leases: s.metrics.pending,
                acquire_total: s.metrics.acquire_total,
                release_total: s.metrics.release_total,
                average_pending_lease_time: s.metrics.average_pending_lease_time,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `semaphore_value`: leases held now (0 for an unknown semaphore).
    pub fn semaphore_value(&self, name: &Key) -> usize {
        self.semaphores
            .by_name
            .get(name)
            .map_or(0, |s| s.leases.len())
    }

    /// `semaphore_close`: forget the semaphore; returns the leases still
    /// held (Python warns about them).
    pub fn semaphore_close(&mut self, name: &Key) -> Vec<String> {
        let mut held: Vec<String> = self
            .semaphores
            .by_name
            .remove(name)
            .map(|s| s.leases.into_keys().collect())
            .unwrap_or_default();
        held.sort();
        held
    }
}
