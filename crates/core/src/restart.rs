//! `Client.restart` and `Client.restart_workers`, the state's part.
//!
//! Why: a restart is how a Dask user gets a clean cluster back (after a
//! leak, a stuck task, a changed module): the scheduler forgets every task,
//! tells the clients (`{"op": "restart"}`: their futures are cancelled),
//! and has the workers restarted. Restarting a worker process is its
//! nanny's job (the server calls the nanny's `kill`); a worker without a
//! nanny is closed and removed, as Python does, for the deployment to
//! start again. The waiting is the server's part.

use crate::ids::{TaskId, WorkerId};
use crate::messages;
use crate::state::{Outgoing, State};
use crate::transitions::Target;
use dask_wire::Value;

/// A worker a restart acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartTarget {
    /// The worker's address.
    pub address: String,
    /// Its nanny's address, if it has one.
    pub nanny: Option<String>,
}

impl State {
    /// `restart`, before the workers: every client (pseudo-clients of
    /// published datasets, variables and queues included) releases all its
    /// keys, whatever is left is forgotten, the task prefixes' durations
    /// and counters are reset, and every client is told.
    pub fn restart_forget_all(&mut self, now: f64) {
        self.now = now;
        self.plugin_hook(crate::pluginfeed::hooks::RESTART, "restart", Vec::new);
        self.p2p_clear();
        // Python's `Progress.restart`: a bar open across a restart finishes
        self.progress_restart();
        self.metadata = Value::Map(Vec::new());
        let clients: Vec<_> = self.clients.keys().copied().collect();
        for c in &clients {
            let keys: Vec<TaskId> = self
                .clients
                .get(c)
                .map(|cl| cl.wants_what.iter().collect())
                .unwrap_or_default();
            self.client_releases(*c, &keys);
        }
        // Tasks nobody wanted (their dependents' inputs, data without a
        // holder) go too: dependents first, so that each forget is allowed.
        for _ in 0..64 {
            let mut left: Vec<TaskId> = self
                .tasks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.as_ref().map(|_| i as TaskId))
                .collect();
            if left.is_empty() {
                break;
            }
            left.sort_unstable_by(|a, b| b.cmp(a));
            for id in left {
                if self.exists(id) && self.task(id).dependents.is_empty() {
                    self.transitions([(id, Target::Forgotten)]);
                }
            }
        }
        self.reset_prefix_history();
        for c in clients {
            self.outbox.push(Outgoing::Client(
                c,
                Value::map([("op", Value::str("restart"))]),
            ));
        }
    }

    /// The workers a restart acts on: all of them, or those of `addresses`
    /// that are known.
    pub fn restart_targets(&self, addresses: Option<&[String]>) -> Vec<RestartTarget> {
        let mut out: Vec<RestartTarget> = self
            .workers
            .values()
            .filter(|w| addresses.is_none_or(|a| a.contains(&w.info.address)))
            .map(|w| RestartTarget {
                address: w.info.address.clone(),
                nanny: match &w.info.nanny {
                    Value::Str(s) if !s.is_empty() => Some(s.to_string()),
                    _ => None,
                },
            })
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }

    /// Tell the worker at `address` to close and forget it now (Python's
    /// `remove_worker(close=True)`): for workers without a nanny, and those
    /// whose nanny did not kill them in time. False if it was not known.
    pub fn close_and_remove_worker(&mut self, address: &str, now: f64) -> bool {
        let Some(w): Option<WorkerId> = self.worker_id(address) else {
            return false;
        };
        self.push_worker(w, messages::close_worker("scheduler-remove-worker"));
        self.remove_worker(w, now)
    }
}
