//! `update-graph` after materialization: create tasks, wire dependencies,
//! apply annotations and priorities, and start computing the requested keys.

use crate::ids::{ClientId, TaskId};
use crate::keyindex::KeyHash;
use crate::messages;
use crate::runspec::RunSpec;
use crate::schedevents::GraphOutcome;
use crate::state::{Outgoing, State};
use crate::task::{Priority, Restrictions, TaskState};
use crate::transitions::Target;
use dask_wire::{Key, Value};
use hashbrown::hash_table::{Entry, HashTable};
use smallvec::SmallVec;

/// One materialized task, as produced by the graph materializer.
#[derive(Debug, Clone)]
pub struct GraphTask {
    /// The key.
    pub key: Key,
    /// Keys it depends on, other than those in `dependency_positions`.
    pub dependencies: Vec<Key>,
    /// Dependencies that come with the same submission, as positions in its
    /// `tasks`. The materializer sends its graph's internal dependencies
    /// this way, so that `update_graph` need not hash and look up their
    /// keys; a position out of range counts as a lost dependency.
    pub dependency_positions: Vec<u32>,
    /// Pickled `GraphNode` (sent verbatim as `compute-task.run_spec`),
    /// stored packed ([`crate::RunSpecPacker`]) or whole (`Opaque::into`).
    pub run_spec: RunSpec,
    /// Position from `dask.order` (or the client's `internal_priority`).
    pub order: i64,
    /// Merged global + layer annotations (a msgpack map).
    pub annotations: Value,
    /// The run spec makes data from nothing (`GraphNode.data_producer`).
    pub data_producer: bool,
}

/// A graph submitted by a client, materialized.
#[derive(Debug, Clone)]
pub struct GraphSubmission {
    /// The keys the client wants (its futures).
    pub requested: Vec<Key>,
    /// Materialized tasks.
    pub tasks: Vec<GraphTask>,
    /// Seconds after which a new graph starts a new priority generation.
    pub fifo_timeout: f64,
    /// Keys to run as actors (`actor=True`; see [`crate::actors`]).
    pub actors: Vec<Key>,
    /// How the graph's way to the core was timed, for the `update-graph`
    /// event's `*_seconds` metrics; `None` leaves them out.
    pub timings: Option<GraphTimings>,
}

/// The timings of a graph's way in, measured by the server, which Python's
/// scheduler reports in its `update-graph` event (`start_timestamp_seconds`,
/// `materialization_duration_seconds`, `ordering_duration_seconds`,
/// `state_initialization_duration_seconds`, `duration_seconds`).
#[derive(Debug, Clone, Copy)]
pub struct GraphTimings {
    /// When the scheduler received the `update-graph` (seconds since the epoch).
    pub start: f64,
    /// Seconds spent deserializing and materializing the graph.
    pub materialization: f64,
    /// Seconds spent ordering it (`dask.order`).
    pub ordering: f64,
    /// The server's clock (seconds since the epoch), read once when the
    /// tasks' state is created: the core reads no clock of its own, and the
    /// time from `update_graph`'s `now` to that reading is the state's
    /// initialization.
    pub clock: fn() -> f64,
}

impl GraphTimings {
    /// The five metrics, named as Python names them, with the state's
    /// initialization taken as starting at `began` (the core's `now`).
    ///
    /// Python 2026.8.0 subtracts the other way round for the ordering and
    /// the state's initialization and so reports both negated; these are
    /// the durations themselves, never negative.
    pub fn metrics(&self, began: f64) -> [(&'static str, f64); 5] {
        let done = (self.clock)();
        [
            ("start_timestamp_seconds", self.start),
            (
                "materialization_duration_seconds",
                self.materialization.max(0.0),
            ),
            ("ordering_duration_seconds", self.ordering.max(0.0)),
            (
                "state_initialization_duration_seconds",
                (done - began).max(0.0),
            ),
            ("duration_seconds", (done - self.start).max(0.0)),
        ]
    }
}

/// A dependency of a submitted task, resolved once: another task of the
/// submission (its position) or a task the scheduler already has.
#[derive(Debug, Clone, Copy)]
enum Dep {
    Graph(usize),
    Known(TaskId),
}

/// The placement-relevant annotations of a task.
fn parse_annotations(ann: &Value) -> (f64, u32, Option<Restrictions>) {
    // most tasks have none: skip the seven lookups
    if ann.as_map().is_some_and(<[_]>::is_empty) {
        return (0.0, 0, None);
    }
    let priority = ann.get("priority").and_then(Value::as_f64).unwrap_or(0.0);
    let retries = ann
        .get("retries")
        .and_then(Value::as_i64)
        .map_or(0, |r| r.clamp(0, u32::MAX as i64) as u32);
    let mut r = Restrictions::default();
    if let Some(workers) = ann.get("workers").or_else(|| ann.get("restrictions")) {
        match workers {
            Value::Str(s) => r.workers.push(s.to_string()),
            other => {
                if let Some(items) = other.as_seq() {
                    r.workers
                        .extend(items.iter().filter_map(Value::as_str).map(str::to_string));
                }
            }
        }
    }
    if let Some(res) = ann.get("resources").and_then(Value::as_map) {
        for (k, v) in res {
            if let (Some(name), Some(amount)) = (k.as_str(), v.as_f64()) {
                r.resources.push((name.to_string(), amount));
            }
        }
    }
    r.loose = ann
        .get("allow_other_workers")
        .or_else(|| ann.get("loose_restrictions"))
        .is_some_and(Value::truthy);
    let restrictions = (!r.is_empty()).then_some(r);
    (priority, retries, restrictions)
}

/// Positions of a submission sampled to judge whether its keys are new
/// (see [`State::update_graph`]).
const NEW_KEY_SAMPLE: usize = 32;

/// What [`State::update_graph`]'s walk found at a position of the
/// submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walked {
    /// Not reached from the requested keys.
    Not,
    /// A known task that already has its run_spec or its data: nothing to do.
    Done,
    /// A known task the submission gives a run_spec.
    Known,
    /// A key the scheduler does not know: a new task.
    New,
}

impl State {
    /// Add a materialized graph for `client` and start computing its requested keys.
    pub fn update_graph(&mut self, client: ClientId, mut graph: GraphSubmission, now: f64) {
        self.now = now;
        let plugin_event = self
            .plugin_wants(crate::pluginfeed::hooks::UPDATE_GRAPH)
            .then(|| self.plugin_update_graph(client, &graph));
        // Each submitted key is hashed once: the same hash finds it among
        // the submission's positions and in the scheduler's key index.
        let hashes: Vec<KeyHash> = graph
            .tasks
            .iter()
            .map(|t| KeyHash::of(t.key.as_bytes()))
            .collect();
        // positions as u32 (task ids are u32 too): half the table to miss in
        let mut by_key: HashTable<u32> = HashTable::with_capacity(graph.tasks.len());
        let mut duplicates = false;
        for (i, h) in hashes.iter().enumerate() {
            let key = &graph.tasks[i].key;
            match by_key.entry(
                h.table_hash(),
                |&j| graph.tasks[j as usize].key == *key,
                |&j| hashes[j as usize].table_hash(),
            ) {
                // a key given twice: the last one counts
                Entry::Occupied(mut e) => {
                    *e.get_mut() = i as u32;
                    duplicates = true;
                }
                Entry::Vacant(e) => {
                    e.insert(i as u32);
                }
            }
        }
        let position = |k: &Key, h: KeyHash| {
            by_key
                .find(h.table_hash(), |&j| graph.tasks[j as usize].key == *k)
                .map(|&j| j as usize)
        };

        // Every dependency must come with the graph or already be known.
        // Each is resolved once here (to its position in the submission or
        // its known task), so that the walk and the wiring below need no
        // more key lookups.
        // A dependency given by position needs no lookup, unless a key was
        // given twice: then it stands for its key's last position.
        let n_deps: usize = graph
            .tasks
            .iter()
            .map(|t| t.dependencies.len() + t.dependency_positions.len())
            .sum();
        let mut dep_refs: Vec<Dep> = Vec::with_capacity(n_deps);
        let mut dep_start: Vec<usize> = Vec::with_capacity(graph.tasks.len() + 1);
        let mut lost = false;
        'tasks: for t in &graph.tasks {
            dep_start.push(dep_refs.len());
            for &p in &t.dependency_positions {
                let Some(dep) = graph.tasks.get(p as usize) else {
                    lost = true;
                    break 'tasks;
                };
                let gi = if duplicates {
                    position(&dep.key, hashes[p as usize]).unwrap_or(p as usize)
                } else {
                    p as usize
                };
                dep_refs.push(Dep::Graph(gi));
            }
            for d in &t.dependencies {
                let h = KeyHash::of(d.as_bytes());
                match position(d, h) {
                    Some(gi) => dep_refs.push(Dep::Graph(gi)),
                    None => match self.task_id_hashed(d, h) {
                        Some(id) => dep_refs.push(Dep::Known(id)),
                        None => {
                            lost = true;
                            break 'tasks;
                        }
                    },
                }
            }
        }
        dep_start.push(dep_refs.len());
        // Each requested key: its position in the submission, or else the
        // task the scheduler already has (the order does not matter: the
        // requested tasks are sorted by priority below).
        let mut requested_pos: Vec<u32> = Vec::with_capacity(graph.requested.len());
        let mut requested_known: Vec<TaskId> = Vec::new();
        for k in &graph.requested {
            if lost {
                break;
            }
            let h = KeyHash::of(k.as_bytes());
            match position(k, h) {
                Some(gi) => requested_pos.push(gi as u32),
                None => match self.task_id_hashed(k, h) {
                    Some(id) => requested_known.push(id),
                    None => lost = true,
                },
            }
        }
        if lost {
            let keys = graph.requested.iter().map(Key::to_value).collect();
            self.outbox.push(Outgoing::Client(
                client,
                messages::cancelled_keys(keys, Some("lost dependencies")),
            ));
            self.event_update_graph(client, GraphOutcome::Cancelled);
            return;
        }

        // Walk from the requested keys; only reachable tasks are created, and we
        // do not descend into tasks the scheduler already knows how to compute.
        // (positions in the submission; requested keys outside it are known)
        let mut stack: Vec<usize> = requested_pos.iter().map(|&gi| gi as usize).collect();
        drop(by_key);
        let deps_of = |gi: usize| &dep_refs[dep_start[gi]..dep_start[gi + 1]];
        // what the walk found at each position, and the task id of each
        // position it reached
        let mut walk = vec![Walked::Not; graph.tasks.len()];
        let mut ids: Vec<Option<TaskId>> = vec![None; graph.tasks.len()];
        // New tasks take arena slots in the submission's order, not the
        // walk's: tasks that run close together (the client's order, which
        // follows the graph's layers) then sit close together in the arena,
        // so the transitions of a running graph touch neighbouring memory.
        // A submission of new keys that the free slots cannot hold gets a
        // fresh range of slots, one per position (those left empty are
        // freed below); otherwise new tasks fill free slots or the end of
        // the arena in the submission's order. Whether the keys are new is judged
        // from a sample, so that resubmitting a graph the scheduler holds
        // does not grow the arena by a slot per position.
        self.reserve_tasks(graph.tasks.len());
        let fresh_base = (self.free_slots.len() < graph.tasks.len()
            && self.mostly_new(&graph.tasks, &hashes))
        .then(|| self.fresh_slots(graph.tasks.len()));
        // Which positions' keys the scheduler knows: all looked up before
        // the walk, in a loop of their own, so that the CPU overlaps the
        // cache misses of several (each lookup is a random probe into the
        // key index); likewise the new tasks' keys are indexed after the
        // walk. (Nothing in the walk looks up a key it creates: each key is
        // at one walked position.)
        let known: Vec<Option<TaskId>> = if self.task_ids.is_empty() {
            vec![None; graph.tasks.len()]
        } else {
            graph
                .tasks
                .iter()
                .zip(&hashes)
                .map(|(t, &h)| self.task_id_hashed(&t.key, h))
                .collect()
        };
        // known tasks submitted again with other dependencies (Python's
        // "key collisions"): the scheduler keeps its own task, as Python's does
        let mut collisions: Vec<(TaskId, usize)> = Vec::new();
        while let Some(gi) = stack.pop() {
            if walk[gi] != Walked::Not {
                continue;
            }
            walk[gi] = match known[gi] {
                Some(id) => {
                    ids[gi] = Some(id);
                    let t = self.task(id);
                    if t.run_spec.is_some() || t.state == TaskState::Memory {
                        if t.run_spec.is_some()
                            && self.dependencies_differ(id, deps_of(gi), &graph.tasks)
                        {
                            collisions.push((id, gi));
                        }
                        walk[gi] = Walked::Done;
                        continue;
                    }
                    Walked::Known
                }
                None => Walked::New,
            };
            stack.extend(deps_of(gi).iter().filter_map(|d| match d {
                Dep::Graph(g) => Some(*g),
                Dep::Known(_) => None,
            }));
        }
        drop(known);
        self.warn_key_collisions(&collisions, &graph.tasks, &dep_refs, &dep_start);
        let key_collisions = collisions.len();
        // The new tasks are created after the walk, in the submission's
        // order: the walk's order jumps between the graph's layers, and
        // the arena's pages would be written all over.
        for gi in 0..graph.tasks.len() {
            if walk[gi] != Walked::New {
                continue;
            }
            // the submission's key moves into the task (nothing reads it
            // after; no two walked positions share a key: dependencies and
            // requested keys resolve to the last position of each)
            let key = Key::take(&mut graph.tasks[gi].key);
            ids[gi] = Some(match fresh_base {
                Some(base) => {
                    let id = base + gi as TaskId;
                    self.place_task_at(key, id);
                    id
                }
                None => self.place_task(key),
            });
        }
        let mut new_tasks = 0;
        for gi in 0..graph.tasks.len() {
            if walk[gi] == Walked::New {
                let id = ids[gi].expect("a new task has its id");
                self.task_ids.insert_hashed(hashes[gi], id);
                new_tasks += 1;
            }
        }
        if let Some(base) = fresh_base {
            // highest first, so that later tasks fill the lowest
            for gi in (0..graph.tasks.len()).rev() {
                if walk[gi] != Walked::New {
                    self.free_slot(base + gi as TaskId);
                }
            }
        }
        // the tasks to give a run_spec and priority, in the submission's order
        let touched: Vec<(TaskId, usize)> = walk
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w, Walked::Known | Walked::New))
            .map(|(gi, _)| (ids[gi].expect("a walked position has its id"), gi))
            .collect();
        drop(walk);

        drop(hashes);

        // Priority generations (`fifo_timeout`): later graphs run after earlier
        // ones. Unlike Python, a graph no bigger than the cluster's thread count
        // (interactive work: a submit, a small compute) joins the current
        // generation instead of opening a new one, so it is not starved by a
        // long computation submitted before it; large graphs keep FIFO order.
        let threads: usize = self
            .running_workers()
            .map(|w| w.info.nthreads as usize)
            .sum();
        let interactive = touched.len() <= threads.max(1) && self.generation > 0.0;
        if !interactive && now - self.last_graph_time > graph.fifo_timeout {
            self.generation += 1.0;
            self.last_graph_time = now;
        }
        let generation = self.generation;

        for &(id, gi) in &touched {
            let gt = &mut graph.tasks[gi];
            let (user_priority, retries, restrictions) = parse_annotations(&gt.annotations);
            let t = self.task_mut(id);
            // moved: each position is walked (and touched) once
            t.run_spec = Some(Box::new(std::mem::take(&mut gt.run_spec)));
            // the rare parts only take memory when set (or set before)
            let plain = gt.annotations == Value::Map(Vec::new());
            if !plain || retries > 0 || restrictions.is_some() || t.extra.is_some() {
                let extra = t.extra_mut();
                extra.annotations = gt.annotations.clone();
                extra.retries = retries;
                extra.restrictions = restrictions;
            }
            t.data_producer = gt.data_producer;
            t.priority = Priority {
                user: -user_priority,
                generation,
                order: gt.order,
            };
        }
        for &(id, gi) in &touched {
            for dep_ref in deps_of(gi) {
                // every dependency of a walked task was walked too, so it
                // has an id
                let dep = match *dep_ref {
                    Dep::Known(d) => Some(d),
                    Dep::Graph(g) => ids[g],
                };
                let Some(dep) = dep else {
                    continue;
                };
                if dep == id {
                    continue;
                }
                self.task_mut(id).dependencies.insert(dep);
                self.task_mut(dep).dependents.insert(id);
                let (group, dep_group) = (self.task(id).group, self.task(dep).group);
                self.groups.add_dependency(group, dep_group);
            }
        }

        self.mark_actors(&graph.actors);
        if self.task_metadata.is_active() {
            self.watch_task_metadata(&graph.requested);
        }
        if let Some(index) = plugin_event {
            let placed: Vec<TaskId> = ids.iter().filter_map(|id| *id).collect();
            self.plugin_update_graph_priorities(index, &placed);
        }
        // every requested position was walked, so it has an id
        let mut requested: Vec<TaskId> = requested_known;
        requested.extend(requested_pos.iter().filter_map(|&gi| ids[gi as usize]));
        drop(requested_pos);
        // by id among equal priorities, so that a key requested twice is
        // adjacent to itself and dedup drops it
        requested.sort_by_key(|id| (self.task(*id).priority, *id));
        requested.dedup();
        self.client_desires(client, &requested);
        let recs: Vec<_> = requested
            .into_iter()
            .filter(|id| self.task(*id).state == TaskState::Released)
            .map(|id| (id, Target::Waiting))
            .collect();
        self.transitions_named("update-graph", recs);
        let timings = graph.timings.map(|t| t.metrics(now));
        self.event_update_graph(
            client,
            GraphOutcome::Ok {
                tasks: graph.tasks.len(),
                new_tasks,
                key_collisions,
                timings,
            },
        );
    }

    /// Whether known task `id` has other dependencies than a submission
    /// gives it (`submitted`, resolved as in [`State::update_graph`]).
    fn dependencies_differ(&self, id: TaskId, submitted: &[Dep], tasks: &[GraphTask]) -> bool {
        let t = self.task(id);
        // (a resubmitted graph pays this per known task: no heap for the
        // few dependencies most tasks have)
        let mut old: SmallVec<[&[u8]; 8]> = t
            .dependencies
            .iter()
            .map(|d| self.task(*d).key.as_bytes().as_ref())
            .collect();
        let mut new: SmallVec<[&[u8]; 8]> = submitted
            .iter()
            .map(|d| match d {
                Dep::Graph(g) => tasks[*g].key.as_bytes().as_ref(),
                Dep::Known(k) => self.task(*k).key.as_bytes().as_ref(),
            })
            .collect();
        old.sort_unstable();
        old.dedup();
        new.sort_unstable();
        new.dedup();
        old != new
    }

    /// Python's warning for keys submitted again with other dependencies
    /// ("Detected different `run_spec` for key ..."): once per task group
    /// and submission at WARNING, the rest at DEBUG.
    fn warn_key_collisions(
        &self,
        collisions: &[(TaskId, usize)],
        tasks: &[GraphTask],
        dep_refs: &[Dep],
        dep_start: &[usize],
    ) {
        let mut warned_groups: Vec<u32> = Vec::new();
        for &(id, gi) in collisions {
            let t = self.task(id);
            let key = &t.key;
            if warned_groups.contains(&t.group) {
                tracing::debug!(
                    "Detected different `run_spec` for key {key} between two consecutive calls \
                     to `update_graph`."
                );
                continue;
            }
            warned_groups.push(t.group);
            let names = |keys: Vec<&Key>| {
                let mut names: Vec<String> = keys.into_iter().map(Key::to_string).collect();
                names.sort();
                names.dedup();
                format!("{{{}}}", names.join(", "))
            };
            let old = names(t.dependencies.iter().map(|d| &self.task(*d).key).collect());
            let new = names(
                dep_refs[dep_start[gi]..dep_start[gi + 1]]
                    .iter()
                    .map(|d| match d {
                        Dep::Graph(g) => &tasks[*g].key,
                        Dep::Known(k) => &self.task(*k).key,
                    })
                    .collect(),
            );
            tracing::warn!(
                "Detected different `run_spec` for key {key} between two consecutive calls to \
                 `update_graph`. This can cause failures and deadlocks down the line. Please \
                 ensure unique key names. If you are using a standard dask collections, \
                 consider releasing all the data before resubmitting another computation. More \
                 details and help can be found at https://github.com/dask/dask/issues/9888. \
                 \nDebugging information\n---------------------\nold task state: {}\n\
                 old dependencies: {old}\nnew dependencies: {new}",
                t.state.as_str()
            );
        }
    }

    /// True if at most one in ten of up to [`NEW_KEY_SAMPLE`] evenly spaced
    /// positions of a submission names a key the scheduler knows.
    fn mostly_new(&self, tasks: &[GraphTask], hashes: &[KeyHash]) -> bool {
        let step = (tasks.len() / NEW_KEY_SAMPLE).max(1);
        let (mut sampled, mut known) = (0usize, 0usize);
        for gi in (0..tasks.len()).step_by(step) {
            sampled += 1;
            known += usize::from(self.task_id_hashed(&tasks[gi].key, hashes[gi]).is_some());
        }
        known * 10 <= sampled
    }

    /// Materialization failed: the client's requested keys err with this
    /// exception, and an `update-graph` event says `error`, as Python's.
    pub fn graph_failed(
        &mut self,
        client: ClientId,
        keys: &[Key],
        exception: Value,
        traceback: Value,
        now: f64,
    ) {
        self.now = now;
        self.event_update_graph(client, GraphOutcome::Error);
        for key in keys {
            self.outbox.push(Outgoing::Client(
                client,
                messages::task_erred(key.to_value(), exception.clone(), traceback.clone()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// An empty scheduler with one client.
    fn state_with_client() -> (State, ClientId) {
        let mut s = State::new(Config::default());
        let c = s.add_client("Client-a", 0.0);
        (s, c)
    }

    fn submission(tasks: &[(&str, &[&str])], requested: &[&str]) -> GraphSubmission {
        GraphSubmission {
            requested: requested.iter().map(|k| Key::from_str_key(k)).collect(),
            tasks: tasks
                .iter()
                .enumerate()
                .map(|(i, (key, deps))| GraphTask {
                    key: Key::from_str_key(key),
                    dependencies: deps.iter().map(|d| Key::from_str_key(d)).collect(),
                    dependency_positions: Vec::new(),
                    run_spec: RunSpec::default(),
                    order: i as i64,
                    annotations: Value::Map(vec![]),
                    data_producer: false,
                })
                .collect(),
            fifo_timeout: 0.1,
            actors: Vec::new(),
            timings: None,
        }
    }

    /// Like [`submission`], with each task's dependencies in the
    /// submission given as positions (`(key, positions, keys)`).
    fn submission_by_position(
        tasks: &[(&str, &[u32], &[&str])],
        requested: &[&str],
    ) -> GraphSubmission {
        let mut sub = submission(
            &tasks.iter().map(|(k, _, d)| (*k, *d)).collect::<Vec<_>>(),
            requested,
        );
        for (t, (_, positions, _)) in sub.tasks.iter_mut().zip(tasks) {
            t.dependency_positions = positions.to_vec();
        }
        sub
    }

    fn id(s: &State, key: &str) -> TaskId {
        s.task_id(&Key::from_str_key(key)).expect("known key")
    }

    /// The keys a task depends on, sorted.
    fn dependency_keys(s: &State, key: &str) -> Vec<String> {
        let mut keys: Vec<String> = s
            .task(id(s, key))
            .dependencies
            .iter()
            .map(|&d| {
                let key = s.task(d).key.decoded();
                key.as_str().expect("a string key").to_string()
            })
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn dependencies_by_position_wire_like_dependencies_by_key() {
        let by_key: &[(&str, &[&str])] = &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a", "b"]),
            ("unreached", &["a"]),
            ("d", &["c", "b"]),
        ];
        let by_position: &[(&str, &[u32], &[&str])] = &[
            ("a", &[], &[]),
            ("b", &[0], &[]),
            ("c", &[0], &["b"]),
            ("unreached", &[0], &[]),
            ("d", &[2, 1], &[]),
        ];
        let (mut s1, c1) = state_with_client();
        s1.update_graph(c1, submission(by_key, &["d"]), 1.0);
        let (mut s2, c2) = state_with_client();
        s2.update_graph(c2, submission_by_position(by_position, &["d"]), 1.0);
        assert_eq!(s2.task_count(), 4);
        assert_eq!(s2.task_id(&Key::from_str_key("unreached")), None);
        for k in ["a", "b", "c", "d"] {
            assert_eq!(dependency_keys(&s1, k), dependency_keys(&s2, k), "{k}");
        }
        assert_eq!(dependency_keys(&s2, "d"), ["b", "c"]);
        s2.validate_worker_accounting().unwrap();
        // a later graph: its own dependency by position, a known one by key
        let later: &[(&str, &[u32], &[&str])] = &[("e", &[], &["d"]), ("f", &[0], &["a"])];
        s2.update_graph(c2, submission_by_position(later, &["f"]), 2.0);
        assert_eq!(dependency_keys(&s2, "f"), ["a", "e"]);
        assert_eq!(dependency_keys(&s2, "e"), ["d"]);
        s2.validate_worker_accounting().unwrap();
    }

    #[test]
    fn a_position_out_of_range_is_a_lost_dependency() {
        let (mut s, c) = state_with_client();
        let bad: &[(&str, &[u32], &[&str])] = &[("a", &[], &[]), ("b", &[2], &[])];
        s.update_graph(c, submission_by_position(bad, &["b"]), 1.0);
        assert_eq!(s.task_count(), 0);
        let out = format!("{:?}", s.take_outbox());
        assert!(out.contains("cancelled-keys"), "{out}");
        assert!(out.contains("lost dependencies"), "{out}");
        // as Python's, the update-graph event says so
        let event = last_graph_event(&s, "scheduler");
        assert_eq!(event.get("status"), Some(&Value::str("cancelled")));
        assert_eq!(event.get("metrics"), None);
    }

    /// The last `update-graph` event on `topic`.
    fn last_graph_event(s: &State, topic: &str) -> Value {
        let events = s.get_events(Some(topic));
        events
            .as_seq()
            .expect("a list of events")
            .iter()
            .rev()
            .map(|e| e.as_seq().expect("(time, msg)")[1].clone())
            .find(|m| m.get("action").and_then(Value::as_str) == Some("update-graph"))
            .expect("an update-graph event")
    }

    #[test]
    fn the_update_graph_event_has_the_servers_timings_when_given() {
        fn clock() -> f64 {
            107.5
        }
        let timed = GraphTimings {
            start: 100.0,
            materialization: 2.0,
            ordering: 0.5,
            clock,
        };
        // the counts come first in each case
        let counts = [("tasks", 2.0), ("new_tasks", 2.0), ("key_collisions", 0.0)];
        /// (timings, `now`, the metrics expected)
        type Case = (Option<GraphTimings>, f64, Vec<(&'static str, f64)>);
        let cases: [Case; 3] = [
            (None, 106.0, counts.to_vec()),
            (
                Some(timed),
                106.0,
                [
                    &counts[..],
                    &[
                        ("start_timestamp_seconds", 100.0),
                        ("materialization_duration_seconds", 2.0),
                        ("ordering_duration_seconds", 0.5),
                        ("state_initialization_duration_seconds", 1.5),
                        ("duration_seconds", 7.5),
                    ],
                ]
                .concat(),
            ),
            // a clock behind `now` (a wall clock set back): no negative durations
            (
                Some(GraphTimings {
                    start: 108.0,
                    materialization: -1.0,
                    ..timed
                }),
                109.0,
                [
                    &counts[..],
                    &[
                        ("start_timestamp_seconds", 108.0),
                        ("materialization_duration_seconds", 0.0),
                        ("ordering_duration_seconds", 0.5),
                        ("state_initialization_duration_seconds", 0.0),
                        ("duration_seconds", 0.0),
                    ],
                ]
                .concat(),
            ),
        ];
        for (timings, now, expected) in cases {
            let (mut s, c) = state_with_client();
            let mut sub = submission(&[("a", &[]), ("b", &["a"])], &["b"]);
            sub.timings = timings;
            s.update_graph(c, sub, now);
            for topic in ["scheduler", "Client-a"] {
                let event = last_graph_event(&s, topic);
                assert_eq!(event.get("status"), Some(&Value::str("OK")));
                let metrics = event
                    .get("metrics")
                    .and_then(Value::as_map)
                    .expect("metrics");
                let got: Vec<(&str, f64)> = metrics
                    .iter()
                    .map(|(k, v)| (k.as_str().expect("a name"), v.as_f64().expect("a number")))
                    .collect();
                assert_eq!(got, expected, "{timings:?} on {topic}");
            }
        }
    }

    #[test]
    fn a_position_of_a_key_given_twice_stands_for_its_last_position() {
        let (mut s, c) = state_with_client();
        // "a" at positions 0 and 2; "b" names position 0, "c" the key
        let dup: &[(&str, &[u32], &[&str])] = &[
            ("a", &[], &[]),
            ("b", &[0], &[]),
            ("a", &[], &[]),
            ("c", &[], &["a"]),
        ];
        s.update_graph(c, submission_by_position(dup, &["b", "c"]), 1.0);
        assert_eq!(s.task_count(), 3, "one task per key");
        assert_eq!(dependency_keys(&s, "b"), ["a"]);
        assert_eq!(dependency_keys(&s, "c"), ["a"]);
        s.validate_worker_accounting().unwrap();
    }

    #[test]
    fn new_tasks_take_arena_slots_in_the_submission_order() {
        let (mut s, c) = state_with_client();
        // the walk starts at the requested key and reaches the tasks in the
        // reverse of their order; the slots still follow the submission
        let chain: &[(&str, &[&str])] = &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("unreached", &[]),
            ("d", &["c"]),
        ];
        s.update_graph(c, submission(chain, &["d"]), 1.0);
        let ids: Vec<TaskId> = ["a", "b", "c", "d"].iter().map(|k| id(&s, k)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(s.task_id(&Key::from_str_key("unreached")), None);
        assert_eq!(s.task_count(), 4);
        // the unreached position's slot was given back: a later one-task
        // submission fills it instead of growing the arena
        let arena = s.tasks.len();
        s.update_graph(c, submission(&[("e", &[])], &["e"]), 2.0);
        assert_eq!(s.tasks.len(), arena);
        assert_eq!(id(&s, "e"), ids[2] + 1, "the empty slot between c and d");
    }

    #[test]
    fn resubmitting_known_tasks_does_not_grow_the_arena() {
        let (mut s, c) = state_with_client();
        // a chain of 1,000: the sample of positions sees known keys
        let keys: Vec<String> = (0..1000).map(|i| format!("x-{i}")).collect();
        let deps: Vec<Vec<&str>> = (0..1000)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![keys[i - 1].as_str()]
                }
            })
            .collect();
        let graph: Vec<(&str, &[&str])> = (0..1000)
            .map(|i| (keys[i].as_str(), deps[i].as_slice()))
            .collect();
        s.update_graph(c, submission(&graph, &["x-999"]), 1.0);
        let arena = s.tasks.len();
        assert_eq!(arena, 1000);
        let ids: Vec<TaskId> = keys.iter().map(|k| id(&s, k)).collect();
        for round in 0..3 {
            // every key is known with its run_spec: nothing new is created,
            // and no slot is added for the positions
            s.update_graph(c, submission(&graph, &["x-999"]), 2.0 + f64::from(round));
            assert_eq!(s.task_count(), 1000);
            assert_eq!(s.tasks.len(), arena, "round {round}");
        }
        let again: Vec<TaskId> = keys.iter().map(|k| id(&s, k)).collect();
        assert_eq!(ids, again);
    }

    #[test]
    fn released_slots_come_back_after_the_key_index_sweeps() {
        // rounds of 3,000 keys submitted and released: the released keys'
        // slots are held until a sweep, then reused, so the arena stops
        // growing; a key released and submitted again is a new task that
        // the index finds
        let (mut s, c) = state_with_client();
        let keys: Vec<String> = (0..3000).map(|i| format!("y-{i}")).collect();
        let graph: Vec<(&str, &[&str])> = keys.iter().map(|k| (k.as_str(), &[][..])).collect();
        let requested: Vec<&str> = keys.iter().map(String::as_str).collect();
        let release = Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(keys.iter().map(Value::str).collect())),
        ]);
        let mut arena_sizes = Vec::new();
        for round in 0..6 {
            let now = 1.0 + f64::from(round);
            s.update_graph(c, submission(&graph, &requested), now);
            assert_eq!(s.task_count(), 3000, "round {round}");
            for k in &keys {
                assert!(s.task_id(&Key::from_str_key(k)).is_some(), "{k}");
            }
            s.validate_worker_accounting().unwrap();
            s.handle_client_op(c, &release, now).unwrap();
            assert_eq!(s.task_count(), 0, "round {round}");
            assert_eq!(s.task_id(&Key::from_str_key("y-7")), None);
            s.validate_worker_accounting().unwrap();
            arena_sizes.push(s.tasks.len());
        }
        // at most the live keys plus the dead ones a sweep waits for
        let last = *arena_sizes.last().unwrap();
        assert!(last <= 3000 + 3000, "{arena_sizes:?}");
        assert_eq!(arena_sizes[5], arena_sizes[4], "{arena_sizes:?}");
    }

    #[test]
    fn annotations_become_restrictions() {
        let ann = Value::map([
            ("priority", Value::Int(10)),
            ("retries", Value::Int(2)),
            ("workers", Value::str("tcp://a:1")),
            ("allow_other_workers", Value::Bool(true)),
            ("resources", Value::map([("GPU", Value::Int(1))])),
        ]);
        let (p, r, restr) = parse_annotations(&ann);
        assert_eq!(p, 10.0);
        assert_eq!(r, 2);
        let restr = restr.unwrap();
        assert_eq!(restr.workers, vec!["tcp://a:1".to_string()]);
        assert_eq!(restr.resources, vec![("GPU".to_string(), 1.0)]);
        assert!(restr.loose);
        assert_eq!(parse_annotations(&Value::Map(vec![])).2, None);
    }
}
