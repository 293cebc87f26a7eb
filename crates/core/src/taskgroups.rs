//! Task groups (Python's `TaskGroup`): the tasks of one `key_split_group`
//! name, with the two facts `is_rootish` reads, the group's size and the
//! groups its tasks depend on.
//!
//! Python keeps `TaskGroup.dependencies`, the set of groups that any task of
//! the group depends on, and calls a group root-ish only if that set has
//! fewer than `rootish-taskgroup` (5) groups, together fewer than
//! `rootish-taskgroup-dependencies` (5) tasks. A group may depend on itself:
//! in 100 chains of `inc` tasks every chain's first `inc` is in a group that
//! depends on the 10,000-task `inc` group, so no `inc` is root-ish and the
//! chains start on every worker at once instead of being queued two per
//! thread.
//!
//! A group disappears with its last live task (its name can then start a
//! new group), but like Python's objects, a dead group that another group
//! still names as a dependency keeps its size until nothing names it; only
//! then is its slot reused.

use crate::resulttypes::TypeNameId;
use rustc_hash::FxHashMap;

/// The groups a group's tasks depend on, as far as `is_rootish` needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dependencies {
    /// Fewer distinct groups than `rootish-taskgroup` (the group itself
    /// among them when it depends on itself).
    Few(Vec<u32>),
    /// Never root-ish again: too many dependency groups, or too many tasks
    /// in them (a group's size only grows, and a group never loses a
    /// dependency, so this is final).
    Many,
}

/// One group slot.
#[derive(Debug)]
struct Group {
    /// `len(TaskGroup)`: tasks added since the group was created, forgotten
    /// ones included.
    size: u32,
    /// Tasks not yet forgotten; the group dies when this reaches zero.
    live: u32,
    /// Other groups whose dependencies name this one.
    referrers: u32,
    name: String,
    dependencies: Dependencies,
    /// Python's `TaskGroup._types`: each result type name, with how many
    /// times a task of the group entered memory with a result of it.
    types: Vec<(TypeNameId, u32)>,
    /// Python's `TaskGroup` timing and size totals (see [`GroupTotals`]).
    totals: GroupTotals,
}

/// What Python's `TaskGroup` sums over its tasks' results: the bytes of
/// each task's last result, forgotten tasks included (`nbytes_total`), the
/// microseconds of every action its workers reported (`_duration_us`, and
/// by action `_all_durations_us`), and the span of its `compute`s (`start`,
/// `stop`; 0 until one finished).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupTotals {
    /// `nbytes_total`.
    pub nbytes_total: i64,
    /// `_duration_us`.
    pub duration_us: u64,
    /// `_all_durations_us`, in the order the actions were first reported.
    pub all_durations_us: Vec<(Box<str>, u64)>,
    /// `start`: the earliest `compute` start, 0 until one finished.
    pub start: f64,
    /// `stop`: the latest `compute` stop, 0 until one finished.
    pub stop: f64,
}

/// Python's `add_duration`: microseconds, rounded, never negative.
pub(crate) fn duration_us(start: f64, stop: f64) -> u64 {
    ((stop - start) * 1e6).round().max(0.0) as u64
}

/// Add `us` to `action`'s entry of a by-action list of durations.
pub(crate) fn add_action_us(list: &mut Vec<(Box<str>, u64)>, action: &str, us: u64) {
    match list.iter_mut().find(|(a, _)| &**a == action) {
        Some((_, total)) => *total += us,
        None => list.push((action.into(), us)),
    }
}

/// All task groups, by dense id.
#[derive(Debug)]
pub(crate) struct TaskGroups {
    /// Python's `distributed.scheduler.rootish-taskgroup`: a root-ish group
    /// depends on fewer groups than this.
    max_dependency_groups: usize,
    /// Python's `distributed.scheduler.rootish-taskgroup-dependencies`: a
    /// root-ish group's dependency groups hold fewer tasks than this together.
    max_dependency_tasks: u64,
    groups: Vec<Group>,
    /// Slots of groups that are dead and named by no other group.
    free: Vec<u32>,
    /// The live group of each name.
    by_name: FxHashMap<String, u32>,
}

impl TaskGroups {
    /// No groups yet; root-ish groups depend on fewer than
    /// `max_dependency_groups` groups of fewer than `max_dependency_tasks`
    /// tasks together (Python's defaults: 5 and 5).
    pub(crate) fn new(max_dependency_groups: usize, max_dependency_tasks: u64) -> TaskGroups {
        TaskGroups {
            max_dependency_groups,
            max_dependency_tasks,
            groups: Vec::new(),
            free: Vec::new(),
            by_name: FxHashMap::default(),
        }
    }

    /// A new task of group `name`: its group's id, the group created if
    /// `name` has no live group.
    pub(crate) fn add_task(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.by_name.get(name) {
            let g = &mut self.groups[id as usize];
            g.size += 1;
            g.live += 1;
            return id;
        }
        let group = Group {
            size: 1,
            live: 1,
            referrers: 0,
            name: name.to_string(),
            dependencies: Dependencies::Few(Vec::new()),
            types: Vec::new(),
            totals: GroupTotals::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.groups[id as usize] = group;
                id
            }
            None => {
                self.groups.push(group);
                (self.groups.len() - 1) as u32
            }
        };
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// A task of group `g` was forgotten. Python drops a group once all its
    /// tasks are forgotten, so a later task of the same name starts a new
    /// group whose size (which drives `is_rootish`) starts from one.
    pub(crate) fn forget_task(&mut self, g: u32) {
        let group = &mut self.groups[g as usize];
        group.live -= 1;
        if group.live > 0 {
            return;
        }
        let name = std::mem::take(&mut group.name);
        self.by_name.remove(&name);
        // a dead group is never asked whether it is root-ish
        self.drop_dependencies(g);
        self.free_if_unreferenced(g);
    }

    /// Some task of group `g` depends on a task of group `dep` (Python's
    /// `TaskState.add_dependency`: `self.group.dependencies.add(...)`).
    pub(crate) fn add_dependency(&mut self, g: u32, dep: u32) {
        let Dependencies::Few(ids) = &self.groups[g as usize].dependencies else {
            return;
        };
        if ids.contains(&dep) {
            return;
        }
        if ids.len() + 1 >= self.max_dependency_groups
            || self.size(dep) >= self.max_dependency_tasks
        {
            self.drop_dependencies(g);
            self.groups[g as usize].dependencies = Dependencies::Many;
            return;
        }
        if let Dependencies::Few(ids) = &mut self.groups[g as usize].dependencies {
            ids.push(dep);
        }
        if dep != g {
            self.groups[dep as usize].referrers += 1;
        }
    }

    /// A task of group `g` entered memory with a result of type `name`
    /// (Python's `TaskGroup.add_type`).
    pub(crate) fn add_type(&mut self, g: u32, name: TypeNameId) {
        let types = &mut self.groups[g as usize].types;
        match types.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => types.push((name, 1)),
        }
    }

    /// A worker reported that a task of group `g` spent `start`..`stop` on
    /// `action` (Python's `TaskGroup.add_duration`).
    pub(crate) fn add_duration(&mut self, g: u32, action: &str, start: f64, stop: f64) {
        let totals = &mut self.groups[g as usize].totals;
        let us = duration_us(start, stop);
        totals.duration_us += us;
        add_action_us(&mut totals.all_durations_us, action, us);
        if action == "compute" {
            if totals.stop < stop {
                totals.stop = stop;
            }
            if totals.start == 0.0 || totals.start > start {
                totals.start = start;
            }
        }
    }

    /// A task of group `g` has a result `diff` bytes larger than its last
    /// (Python's `TaskGroup.update_nbytes`).
    pub(crate) fn update_nbytes(&mut self, g: u32, diff: i64) {
        self.groups[g as usize].totals.nbytes_total += diff;
    }

    /// Group `g`'s totals (see [`GroupTotals`]).
    pub(crate) fn totals(&self, g: u32) -> &GroupTotals {
        &self.groups[g as usize].totals
    }

    /// The result types of group `g`'s tasks with their counts (see
    /// [`TaskGroups::add_type`]), in the order first met.
    pub(crate) fn types(&self, g: u32) -> &[(TypeNameId, u32)] {
        &self.groups[g as usize].types
    }

    /// The name of group `g` (its `key_split_group`).
    pub(crate) fn name(&self, g: u32) -> &str {
        &self.groups[g as usize].name
    }

    /// `len(TaskGroup)` of group `g`.
    pub(crate) fn size(&self, g: u32) -> u64 {
        u64::from(self.groups[g as usize].size)
    }

    /// The dependency half of Python's `is_rootish`: fewer dependency groups
    /// than `rootish-taskgroup`, fewer tasks in them together than
    /// `rootish-taskgroup-dependencies`.
    pub(crate) fn has_few_dependencies(&self, g: u32) -> bool {
        match &self.groups[g as usize].dependencies {
            Dependencies::Many => false,
            Dependencies::Few(ids) => {
                let tasks: u64 = ids.iter().map(|d| self.size(*d)).sum();
                ids.len() < self.max_dependency_groups && tasks < self.max_dependency_tasks
            }
        }
    }

    /// Number of live groups.
    pub(crate) fn live_count(&self) -> usize {
        self.by_name.len()
    }

    /// Forgotten tasks of live groups (what Python's prefix
    /// `states["forgotten"]` holds: a group's counts leave its prefix when its
    /// last task is forgotten).
    pub(crate) fn forgotten_in_live_groups(&self) -> u64 {
        self.groups
            .iter()
            .filter(|g| g.live > 0)
            .map(|g| u64::from(g.size - g.live))
            .sum()
    }

    /// Stop naming `g`'s dependency groups (it died or became `Many`); the
    /// dead ones nothing else names are freed.
    fn drop_dependencies(&mut self, g: u32) {
        let Dependencies::Few(ids) = std::mem::replace(
            &mut self.groups[g as usize].dependencies,
            Dependencies::Few(Vec::new()),
        ) else {
            return;
        };
        for dep in ids {
            if dep == g {
                continue;
            }
            self.groups[dep as usize].referrers -= 1;
            self.free_if_unreferenced(dep);
        }
    }

    /// Reuse `g`'s slot if the group is dead and no group names it.
    fn free_if_unreferenced(&mut self, g: u32) {
        let group = &mut self.groups[g as usize];
        if group.live == 0 && group.referrers == 0 && group.size > 0 {
            group.size = 0;
            self.free.push(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_of(groups: &mut TaskGroups, name: &str, tasks: usize) -> u32 {
        let id = groups.add_task(name);
        for _ in 1..tasks {
            assert_eq!(groups.add_task(name), id);
        }
        id
    }

    #[test]
    fn a_group_counts_its_result_types_and_a_new_group_of_the_name_starts_without() {
        let mut names = crate::resulttypes::ResultTypes::default();
        let int = names.intern_name("int").unwrap();
        let frame = names.intern_name("pandas.core.frame.DataFrame").unwrap();
        let mut groups = TaskGroups::new(5, 5);
        let g = group_of(&mut groups, "inc-1", 3);
        for name in [int, frame, int] {
            groups.add_type(g, name);
        }
        assert_eq!(groups.types(g), [(int, 2), (frame, 1)]);
        for _ in 0..3 {
            groups.forget_task(g);
        }
        // the dead group's slot is reused by the next group
        let again = groups.add_task("inc-1");
        assert_eq!(again, g);
        assert!(groups.types(again).is_empty());
    }

    #[test]
    fn a_group_totals_bytes_and_durations_as_pythons() {
        let mut groups = TaskGroups::new(5, 5);
        let g = group_of(&mut groups, "x-1", 2);
        // (action, start, stop): compute spans set start and stop; other
        // actions count in the durations only; a negative span counts 0
        for (action, start, stop) in [
            ("transfer", 1.0, 1.5),
            ("compute", 10.0, 10.25),
            ("compute", 9.0, 9.5),
            ("disk-write", 11.0, 10.0),
        ] {
            groups.add_duration(g, action, start, stop);
        }
        groups.update_nbytes(g, 100);
        groups.update_nbytes(g, -40);
        let totals = groups.totals(g);
        assert_eq!(totals.nbytes_total, 60);
        assert_eq!(totals.duration_us, 1_250_000);
        assert_eq!(
            totals.all_durations_us,
            [
                ("transfer".into(), 500_000),
                ("compute".into(), 750_000),
                ("disk-write".into(), 0)
            ]
        );
        assert_eq!((totals.start, totals.stop), (9.0, 10.25));
        assert_eq!(
            duration_us(0.0, 0.000_000_6),
            1,
            "rounded, as Python's round()"
        );
    }

    #[test]
    fn few_dependencies_table() {
        // (rootish-taskgroup, rootish-taskgroup-dependencies, dependency
        // group sizes, expected `has_few_dependencies`); Python's defaults
        // are 5 and 5
        let cases: &[(usize, u64, &[usize], bool)] = &[
            (5, 5, &[], true),
            (5, 5, &[1], true),
            (5, 5, &[4], true),
            (5, 5, &[5], false),
            (5, 5, &[2, 2], true),
            (5, 5, &[2, 3], false),
            (5, 5, &[1, 1, 1, 1], true),
            (5, 5, &[1, 1, 1, 1, 1], false),
            (1, 5, &[], true),
            (1, 5, &[1], false),
            (10, 100, &[50, 49], true),
            (10, 100, &[50, 50], false),
            (3, 100, &[1, 1], true),
            (3, 100, &[1, 1, 1], false),
            (5, 1, &[1], false),
        ];
        for (i, (max_groups, max_tasks, sizes, few)) in cases.iter().enumerate() {
            let mut groups = TaskGroups::new(*max_groups, *max_tasks);
            let g = group_of(&mut groups, "x", 100);
            for (j, size) in sizes.iter().enumerate() {
                let d = group_of(&mut groups, &format!("dep-{j}"), *size);
                groups.add_dependency(g, d);
            }
            assert_eq!(groups.has_few_dependencies(g), *few, "case {i}: {sizes:?}");
        }
    }

    #[test]
    fn a_group_that_depends_on_itself_counts_its_own_size() {
        let mut groups = TaskGroups::new(5, 5);
        let inc = group_of(&mut groups, "inc", 3);
        groups.add_dependency(inc, inc);
        assert!(groups.has_few_dependencies(inc), "3 tasks < 5");
        for _ in 0..2 {
            groups.add_task("inc");
        }
        assert!(!groups.has_few_dependencies(inc), "5 tasks");
    }

    #[test]
    fn a_dependency_group_growing_later_makes_the_group_not_rootish() {
        let mut groups = TaskGroups::new(5, 5);
        let x = group_of(&mut groups, "x", 10);
        let d = group_of(&mut groups, "d", 1);
        groups.add_dependency(x, d);
        assert!(groups.has_few_dependencies(x));
        group_of(&mut groups, "d", 4);
        assert!(!groups.has_few_dependencies(x));
    }

    #[test]
    fn a_dead_group_named_as_a_dependency_keeps_its_size_and_slot() {
        let mut groups = TaskGroups::new(5, 5);
        let x = group_of(&mut groups, "x", 10);
        let d = group_of(&mut groups, "d", 3);
        groups.add_dependency(x, d);
        for _ in 0..3 {
            groups.forget_task(d);
        }
        assert_eq!(groups.live_count(), 1, "d is dead");
        // a new group of another name does not take d's slot
        let e = group_of(&mut groups, "e", 2);
        assert_ne!(e, d);
        // like Python's stale TaskGroup object, d still counts its 3 tasks
        groups.add_dependency(x, e);
        assert!(!groups.has_few_dependencies(x), "3 + 2 tasks");
        // once x is gone, d's slot is free again (and x's)
        for _ in 0..10 {
            groups.forget_task(x);
        }
        let mut reused = [groups.add_task("f"), groups.add_task("g")];
        reused.sort();
        assert_eq!(reused, [x.min(d), x.max(d)]);
    }

    #[test]
    fn groups_depending_on_each_other_are_freed_when_both_die() {
        let mut groups = TaskGroups::new(5, 5);
        let a = group_of(&mut groups, "a", 1);
        let b = group_of(&mut groups, "b", 1);
        groups.add_dependency(a, b);
        groups.add_dependency(b, a);
        groups.forget_task(a);
        groups.forget_task(b);
        assert_eq!(groups.live_count(), 0);
        let mut reused = [groups.add_task("c"), groups.add_task("d")];
        reused.sort();
        assert_eq!(reused, [a.min(b), a.max(b)]);
    }

    #[test]
    fn a_group_forgotten_and_added_again_starts_from_one_task() {
        let mut groups = TaskGroups::new(5, 5);
        let inc = group_of(&mut groups, "inc", 20);
        groups.add_dependency(inc, inc);
        for _ in 0..20 {
            groups.forget_task(inc);
        }
        let again = groups.add_task("inc");
        assert_eq!(groups.size(again), 1);
        assert!(groups.has_few_dependencies(again));
    }

    #[test]
    fn forgotten_tasks_count_only_in_live_groups() {
        let mut groups = TaskGroups::new(5, 5);
        let x = group_of(&mut groups, "x", 4);
        let d = group_of(&mut groups, "d", 2);
        groups.add_dependency(x, d);
        groups.forget_task(x);
        groups.forget_task(d);
        assert_eq!(groups.forgotten_in_live_groups(), 2);
        groups.forget_task(d);
        // d is dead (and still named by x): its forgotten tasks leave the count
        assert_eq!(groups.forgotten_in_live_groups(), 1);
    }
}
