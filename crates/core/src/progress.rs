//! Progress bars: what `distributed.progress(futures)` watches (Python's
//! `Progress` and `MultiProgress` scheduler plugins, which its
//! `ProgressBar` and `MultiProgressBar` install through `feed`).
//!
//! Why: `progress` is how a user watches a computation, in a console or a
//! notebook. A bar names some keys; the scheduler tracks those keys and the
//! tasks they need, and the bar polls how many are left. Nothing is watched
//! while no bar is open, so the task paths pay one emptiness check.
//!
//! Semantics are Python's: a tracked task counts as done when it goes from
//! processing to memory; the bar ends `finished` when none is left, and
//! `error` when a tracked task errs or (one not done yet, or for a bar by
//! prefix any tracked one) is forgotten, i.e. cancelled. On a cancellation
//! Python's bar gets no exception (`None`), and its bar by prefix not even
//! the key (`MultiProgress` looks up the key `None` and fails with
//! `KeyError`); here both get the key and an exception text saying that it
//! was cancelled.

use crate::ids::TaskId;
use crate::state::State;
use crate::task::TaskState;
use dask_wire::{Key, Value};
use rustc_hash::{FxHashMap, FxHashSet};

/// Names one open progress bar.
pub type ProgressId = u64;

/// Which bar: one count, or one count per task prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressKind {
    /// `ProgressBar` (`Progress`): `{"all": n, "remaining": n}`.
    Single,
    /// `MultiProgressBar` grouped by `key_split` (`MultiProgress`):
    /// `{"all": {prefix: n}, "remaining": {prefix: n}}`.
    ByPrefix,
}

/// How a bar ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Finished,
    Error { key: Value, exception: Value },
}

/// One open bar.
#[derive(Debug)]
struct Watch {
    id: ProgressId,
    kind: ProgressKind,
    /// Every tracked task, with its group (always 0 for a single bar).
    all: FxHashMap<TaskId, u32>,
    /// The tracked tasks not computed yet.
    remaining: FxHashSet<TaskId>,
    /// Group names (prefixes), indexed by group.
    groups: Vec<String>,
    /// Tracked tasks per group, as counted when the bar opened.
    all_counts: Vec<usize>,
    /// Tasks left per group.
    remaining_counts: Vec<usize>,
    outcome: Option<Outcome>,
}

/// The open bars.
#[derive(Debug, Default)]
pub(crate) struct ProgressWatches {
    open: Vec<Watch>,
    next: ProgressId,
}

impl ProgressWatches {
    /// Whether any bar is open (checked on every finished, erred and
    /// forgotten task).
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        !self.open.is_empty()
    }
}

impl State {
    /// Open a bar on `keys`, as Python's `Progress.setup` does: the keys and
    /// every task they need (with `complete`, those already computed too).
    /// `None` while some key is not known yet: Python's setup waits for
    /// that, so the caller asks again a little later.
    pub fn progress_start(
        &mut self,
        keys: &[Key],
        complete: bool,
        kind: ProgressKind,
    ) -> Option<ProgressId> {
        let roots = keys
            .iter()
            .map(|k| self.task_id(k))
            .collect::<Option<Vec<TaskId>>>()?;
        let (mut all, errors) = self.dependent_tasks(&roots, complete);
        let mut remaining = if complete {
            self.dependent_tasks(&roots, false).0
        } else {
            all.clone()
        };
        all.extend(roots.iter().copied());
        remaining.extend(errors.iter().filter(|e| all.contains(e)).copied());

        let mut groups: Vec<String> = Vec::new();
        let mut group_of_prefix: FxHashMap<u32, u32> = FxHashMap::default();
        let mut all_groups = FxHashMap::default();
        for &t in &all {
            let g = match kind {
                ProgressKind::Single => 0,
                ProgressKind::ByPrefix => {
                    let prefix = self.task(t).prefix;
                    *group_of_prefix.entry(prefix).or_insert_with(|| {
                        groups.push(self.prefix_name(prefix).unwrap_or("").to_string());
                        (groups.len() - 1) as u32
                    })
                }
            };
            all_groups.insert(t, g);
        }
        if kind == ProgressKind::Single {
            groups.push(String::new());
        }
        let mut all_counts = vec![0; groups.len()];
        for g in all_groups.values() {
            all_counts[*g as usize] += 1;
        }
        let mut remaining_counts = vec![0; groups.len()];
        // remaining ⊆ all, but a miss must not take the event loop down
        for g in remaining.iter().filter_map(|t| all_groups.get(t)) {
            remaining_counts[*g as usize] += 1;
        }
        let mut outcome = remaining.is_empty().then_some(Outcome::Finished);
        // Python replays an `erred` transition for each erred task found
        if let Some(&t) = errors.iter().find(|t| all_groups.contains_key(t)) {
            outcome = Some(self.progress_error(t));
        }
        let id = self.progress.next;
        self.progress.next += 1;
        self.progress.open.push(Watch {
            id,
            kind,
            all: all_groups,
            remaining,
            groups,
            all_counts,
            remaining_counts,
            outcome,
        });
        Some(id)
    }

    /// What the bar's polling function returns: `{"all", "remaining",
    /// "status"}` (status nil, `finished` or `error`; with `exception` and
    /// `key` on an error). `None` for an unknown bar.
    pub fn progress_report(&self, id: ProgressId) -> Option<Value> {
        let w = self.progress.open.iter().find(|w| w.id == id)?;
        let counts = |c: &[usize]| match w.kind {
            ProgressKind::Single => Value::from(c[0]),
            ProgressKind::ByPrefix => Value::Map(
                w.groups
                    .iter()
                    .zip(c)
                    .map(|(g, n)| (Value::str(g.as_str()), Value::from(*n)))
                    .collect(),
            ),
        };
        let mut out = vec![
            (Value::str("all"), counts(&w.all_counts)),
            (Value::str("remaining"), counts(&w.remaining_counts)),
        ];
        let status = match &w.outcome {
            None => Value::Nil,
            Some(Outcome::Finished) => Value::str("finished"),
            Some(Outcome::Error { key, exception }) => {
                out.push((Value::str("exception"), exception.clone()));
                out.push((Value::str("key"), key.clone()));
                Value::str("error")
            }
        };
        out.push((Value::str("status"), status));
        Some(Value::Map(out))
    }

    /// Close a bar (it ended, or its connection did).
    pub fn progress_stop(&mut self, id: ProgressId) {
        self.progress.open.retain(|w| w.id != id);
    }

    /// Python's `dependent_keys`: the tasks `roots` need, themselves
    /// included, skipping (unless `complete`) those with a result; and the
    /// erred ones met (not followed unless `complete`).
    fn dependent_tasks(
        &self,
        roots: &[TaskId],
        complete: bool,
    ) -> (FxHashSet<TaskId>, FxHashSet<TaskId>) {
        let mut out = FxHashSet::default();
        let mut errors = FxHashSet::default();
        let mut stack = roots.to_vec();
        while let Some(t) = stack.pop() {
            if out.contains(&t) {
                continue;
            }
            let task = self.task(t);
            if !complete && !task.who_has.is_empty() {
                continue;
            }
            if task.state == TaskState::Erred {
                errors.insert(t);
                if !complete {
                    continue;
                }
            }
            out.insert(t);
            stack.extend(task.dependencies.iter());
        }
        (out, errors)
    }

    /// The error a bar ends with when tracked task `t` erred: its exception
    /// (that of the task it inherits the failure from).
    fn progress_error(&self, t: TaskId) -> Outcome {
        let exception = self
            .blamed_error(t)
            .map_or(Value::Nil, |e| e.exception.clone());
        Outcome::Error {
            key: self.task(t).key.to_value(),
            exception,
        }
    }

    /// The scheduler restarts: every open bar ends `finished`, as Python's
    /// `Progress.restart` ends it.
    pub(crate) fn progress_restart(&mut self) {
        for w in &mut self.progress.open {
            w.outcome.get_or_insert(Outcome::Finished);
        }
    }

    /// Task `t` went from processing to memory.
    pub(crate) fn progress_computed(&mut self, t: TaskId) {
        for w in &mut self.progress.open {
            if w.outcome.is_none() && w.remaining.remove(&t) {
                if let Some(g) = w.all.get(&t) {
                    w.remaining_counts[*g as usize] -= 1;
                }
                if w.remaining.is_empty() {
                    w.outcome = Some(Outcome::Finished);
                }
            }
        }
    }

    /// Task `t` erred.
    pub(crate) fn progress_erred(&mut self, t: TaskId) {
        let tracked_by: Vec<usize> = (self.progress.open.iter().enumerate())
            .filter(|(_, w)| w.outcome.is_none() && w.all.contains_key(&t))
            .map(|(i, _)| i)
            .collect();
        if tracked_by.is_empty() {
            return;
        }
        let outcome = self.progress_error(t);
        for i in tracked_by {
            self.progress.open[i].outcome = Some(outcome.clone());
        }
    }

    /// Task `t` is being forgotten (its id may be reused after this).
    pub(crate) fn progress_forgotten(&mut self, t: TaskId) {
        let key = self.task(t).key.clone();
        for w in &mut self.progress.open {
            let ends = match w.kind {
                ProgressKind::Single => w.remaining.contains(&t),
                ProgressKind::ByPrefix => w.all.contains_key(&t),
            };
            if ends && w.outcome.is_none() {
                w.outcome = Some(Outcome::Error {
                    key: key.to_value(),
                    exception: Value::str(format!(
                        "CancelledError: {} was cancelled (forgotten) before it finished",
                        key.to_value()
                    )),
                });
            }
            w.remaining.remove(&t);
            w.all.remove(&t);
        }
    }
}
