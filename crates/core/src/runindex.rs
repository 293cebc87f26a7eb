//! The task of each recent run id, found without hashing the key.
//!
//! Every `task-finished` names its task by key, and finding a key in the
//! key index is a probe of a table as large as the graph: at a million
//! tasks, two cache misses in tables spread over megabytes (a quarter of
//! the time the core spends on a finished task). The worker's message also
//! carries the `run_id` of the assignment, and run ids are handed out one
//! after another as tasks are assigned, so the tasks of the runs still
//! under way are a short window of consecutive run ids, which this module
//! keeps in order: finding one is an index into a small ring that the
//! workers' answers walk through almost in order.
//!
//! It is only a shortcut: the caller checks that the task it names has that
//! run id and the key the worker sent, and looks the key up in the key
//! index otherwise (no run id, an old run, a run dropped from the window).

use crate::ids::TaskId;
use std::collections::VecDeque;

/// Most runs the window holds: past this, the oldest run is dropped even
/// if still under way (a task running for hours while millions of others
/// run), and its answer is found through the key index.
pub const MAX_WINDOW: usize = 1 << 20;

/// Run ids `first ..= first + len - 1` and their tasks (see the module
/// docs).
#[derive(Debug, Default)]
pub struct RunIndex {
    first: i64,
    tasks: VecDeque<TaskId>,
}

impl RunIndex {
    /// Record that run `run_id` is of task `id`. Run ids are expected to
    /// follow each other; one that does not starts the window afresh.
    /// `finished(task, run)` tells whether an older run is over: those at
    /// the front of the window are dropped while it is.
    pub fn push(&mut self, run_id: i64, id: TaskId, finished: impl Fn(TaskId, i64) -> bool) {
        if self.tasks.is_empty() || run_id != self.first + self.tasks.len() as i64 {
            self.tasks.clear();
            self.first = run_id;
        }
        self.tasks.push_back(id);
        while self.tasks.len() > 1 {
            let over = self.tasks.len() > MAX_WINDOW || finished(self.tasks[0], self.first);
            if !over {
                break;
            }
            self.tasks.pop_front();
            self.first += 1;
        }
    }

    /// The task of run `run_id`, if it is in the window.
    pub fn get(&self, run_id: i64) -> Option<TaskId> {
        let offset = usize::try_from(run_id.checked_sub(self.first)?).ok()?;
        self.tasks.get(offset).copied()
    }

    /// Number of runs in the window.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no run is in the window.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn finds_the_task_of_each_run_in_the_window() {
        let mut index = RunIndex::default();
        for run in 1..=10 {
            index.push(run, run as TaskId * 100, |_, _| false);
        }
        assert_eq!(index.get(1), Some(100));
        assert_eq!(index.get(10), Some(1000));
        assert_eq!(index.get(0), None);
        assert_eq!(index.get(11), None);
        assert_eq!(index.get(i64::MIN), None);
        assert_eq!(index.len(), 10);
    }

    #[test]
    fn finished_runs_leave_the_front_of_the_window() {
        let mut index = RunIndex::default();
        let mut done: BTreeSet<i64> = BTreeSet::new();
        for run in 1..=5 {
            index.push(run, run as TaskId, |_, r| done.contains(&r));
        }
        // runs 1 and 2 end, 4 ends out of order: 1 and 2 leave, 3 holds 4
        done.extend([1, 2, 4]);
        index.push(6, 6, |_, r| done.contains(&r));
        assert_eq!(index.get(2), None);
        assert_eq!(index.get(3), Some(3));
        assert_eq!(index.get(4), Some(4));
        assert_eq!(index.len(), 4);
        done.insert(3);
        index.push(7, 7, |_, r| done.contains(&r));
        assert_eq!(index.get(4), None);
        assert_eq!(index.get(5), Some(5));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn the_window_is_bounded_even_behind_a_long_run() {
        let mut index = RunIndex::default();
        // run 1 never ends; every later run ends at once
        for run in 1..=(MAX_WINDOW as i64 + 10) {
            index.push(run, 0, |_, r| r != 1);
        }
        assert!(index.len() <= MAX_WINDOW);
        assert_eq!(index.get(1), None, "dropped: found through the key index");
    }

    #[test]
    fn a_run_id_out_of_sequence_starts_afresh() {
        let mut index = RunIndex::default();
        index.push(5, 50, |_, _| false);
        index.push(6, 60, |_, _| false);
        index.push(9, 90, |_, _| false);
        assert_eq!(index.get(5), None);
        assert_eq!(index.get(9), Some(90));
        assert_eq!(index.len(), 1);
    }
}
