//! `distributed.scheduler.no-workers-timeout`: tasks that have waited too
//! long for a worker fail instead of waiting forever.
//!
//! As Python's `Scheduler._check_no_workers` (called every 250 ms when the
//! timeout is set):
//! - a task in `no-worker` for longer than the timeout fails with
//!   `NoValidWorkerError` when workers were running meanwhile (its
//!   restrictions are what keeps it waiting), else with `NoWorkerError`;
//! - once no worker has been running for longer than the timeout while tasks
//!   wait, every queued task fails with `NoWorkerError`.
//!
//! The failed tasks' dependents fail with them, and the scheduler logs a
//! `no-workers-timeout-exceeded` event naming the keys (`schedevents.rs`).

use crate::ids::TaskId;
use crate::state::State;
use crate::task::ErrorInfo;
use crate::transitions::Target;
use dask_wire::pickle::{self, PickleArg};
use dask_wire::{Key, Value};

/// Python's `format_time` for the error texts (seconds, milliseconds).
fn format_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

impl State {
    /// Python's `_refresh_no_workers_since`: start the no-workers period at
    /// `now` when no worker is running while tasks wait (queued or
    /// `no-worker`), end it when a worker runs or nothing waits.
    pub(crate) fn refresh_no_workers_since(&mut self, now: f64) {
        if self.config.no_workers_timeout.is_none() {
            return;
        }
        if self.running_workers().next().is_some()
            || (self.queued_len() == 0 && self.unrunnable.is_empty())
        {
            self.no_workers_since = None;
        } else if self.no_workers_since.is_none() {
            self.no_workers_since = Some(now);
        }
    }

    /// Fail the tasks that have waited longer than `no-workers-timeout` for
    /// a worker (see the module docs). Returns their keys; does nothing
    /// without the timeout.
    pub fn check_no_workers(&mut self, now: f64) -> Vec<Key> {
        let Some(timeout) = self.config.no_workers_timeout else {
            return Vec::new();
        };
        self.now = now;
        self.refresh_no_workers_since(now);
        let since = self.no_workers_since;
        let mut failed: Vec<(TaskId, bool)> = Vec::new();
        for (&id, &unrunnable_since) in &self.unrunnable {
            if now <= unrunnable_since + timeout {
                continue;
            }
            // Python: `_no_workers_since >= unrunnable_since` means workers
            // ran after the task became unrunnable. Its clock always moves
            // between the two readings; one `now` is shared by a whole call
            // here, so a worker's removal that made the task unrunnable reads
            // as equal and counts as having no workers.
            let restrictions_to_blame = since.is_none_or(|s| s > unrunnable_since);
            failed.push((id, restrictions_to_blame));
        }
        if since.is_some_and(|s| now > s + timeout) {
            let mut queued: Vec<TaskId> = self.queued.iter().map(|(_, id)| id).collect();
            queued.extend(self.reserved_on.keys().copied());
            failed.extend(queued.into_iter().map(|id| (id, false)));
        }
        if failed.is_empty() {
            return Vec::new();
        }
        failed.sort_by_key(|&(id, _)| self.task(id).priority);
        let mut keys = Vec::with_capacity(failed.len());
        let mut recs = Vec::with_capacity(failed.len());
        for (id, restrictions_to_blame) in failed {
            let error = self.no_worker_error(id, timeout, restrictions_to_blame);
            let key = self.task(id).key.clone();
            if restrictions_to_blame {
                tracing::error!(
                    "Task {key} marked as failed because it timed out waiting for its \
                     restrictions to become satisfied."
                );
            } else {
                tracing::error!(
                    "Task {key} marked as failed because it timed out waiting without any \
                     running workers."
                );
            }
            self.task_mut(id).extra_mut().error = Some(error);
            keys.push(key);
            recs.push((id, Target::Erred(id)));
        }
        let ids: Vec<TaskId> = recs.iter().map(|&(id, _)| id).collect();
        self.event_no_workers_timeout(&ids);
        self.transitions(recs);
        keys
    }

    /// The pickled `NoValidWorkerError` / `NoWorkerError` for task `id`, with
    /// the texts its `__str__` gives.
    fn no_worker_error(&self, id: TaskId, timeout: f64, restrictions_to_blame: bool) -> ErrorInfo {
        let t = self.task(id);
        let key = t.key.decoded();
        let shown = match &key {
            Value::Str(s) => format!("'{s}'"),
            other => other.to_string(),
        };
        let (exception, text) = if restrictions_to_blame {
            let r = t.restrictions().cloned().unwrap_or_default();
            // Python keeps addresses and host names apart (`coerce_address`)
            let (workers, hosts): (Vec<String>, Vec<String>) =
                r.workers.into_iter().partition(|w| w.contains(':'));
            let set_text = |items: &[String]| {
                if items.is_empty() {
                    "set()".to_string()
                } else {
                    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
                    format!("{{{}}}", quoted.join(", "))
                }
            };
            let resources: Vec<String> = r
                .resources
                .iter()
                .map(|(k, v)| format!("'{k}': {v:?}"))
                .collect();
            let text = format!(
                "Attempted to run task {shown} but timed out after {} waiting for a valid \
                 worker matching all restrictions.\n\nRestrictions:\nhost_restrictions={}\n\
                 worker_restrictions={}\nresource_restrictions={{{}}}\n",
                format_seconds(timeout),
                set_text(&hosts),
                set_text(&workers),
                resources.join(", "),
            );
            let exception = pickle::call(
                "distributed.scheduler",
                "NoValidWorkerError",
                &[
                    PickleArg::key(&key),
                    PickleArg::StrSet(hosts),
                    PickleArg::StrSet(workers),
                    PickleArg::FloatDict(r.resources),
                    PickleArg::Float(timeout),
                ],
            );
            (exception, format!("NoValidWorkerError: {text}"))
        } else {
            let text = format!(
                "Attempted to run task {shown} but timed out after {} waiting without any \
                 running workers.",
                format_seconds(timeout)
            );
            let exception = pickle::call(
                "distributed.scheduler",
                "NoWorkerError",
                &[PickleArg::key(&key), PickleArg::Float(timeout)],
            );
            (exception, format!("NoWorkerError: {text}"))
        };
        ErrorInfo {
            exception: Value::Bin(exception),
            traceback: Value::Nil,
            exception_text: text,
            traceback_text: String::new(),
        }
    }
}
