//! What the dashboard's info pages show about one task or one worker, and
//! the erred tasks (Python's `/info/task/<key>.html`,
//! `/info/worker/<address>.html`, `/info/main/exceptions.html`).
//!
//! Why: an operator follows a stuck or failed computation from the workers
//! page to a worker, from there to a task and its dependencies. Keys are
//! shown as Python's `str(key)`, the form those pages put in their links.

use crate::coordination::key_label;
use crate::ids::TaskId;
use crate::state::State;
use crate::task::TaskState;
use dask_wire::Key;

/// Rows a page lists per table at most (a worker may hold millions of keys).
pub const MAX_ROWS: usize = 1000;

/// A task's page.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// `str(key)`.
    pub key: String,
    /// Its state.
    pub state: &'static str,
    /// The worker running it, while processing.
    pub processing_on: Option<String>,
    /// The result's type name (Python's `TaskState.type`), once computed.
    pub type_name: Option<String>,
    /// Result size, when in memory.
    pub nbytes: i64,
    /// `(user, generation, order)` as Python prints the tuple.
    pub priority: String,
    /// Dependencies not in memory yet, while waiting.
    pub waiting_on: Vec<String>,
    /// `(key, state)` of its dependencies (at most [`MAX_ROWS`]).
    pub dependencies: Vec<(String, &'static str)>,
    /// `(key, state)` of its dependents (at most [`MAX_ROWS`]).
    pub dependents: Vec<(String, &'static str)>,
    /// Workers holding its result.
    pub who_has: Vec<String>,
    /// Clients holding a future of it.
    pub who_wants: Vec<String>,
    /// `(attribute, value)` rows shown when set (restrictions, retries, ...).
    pub attributes: Vec<(&'static str, String)>,
    /// `(exception text, traceback text)` when it raised.
    pub exception: Option<(String, String)>,
}

/// A worker's page.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// Its address.
    pub address: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: &'static str,
    /// Threads.
    pub nthreads: u32,
    /// Memory limit, bytes.
    pub memory_limit: i64,
    /// Bytes of results held.
    pub nbytes: i64,
    /// How many keys it holds, and `(key, nbytes)` of up to [`MAX_ROWS`].
    pub has_what: (usize, Vec<(String, i64)>),
    /// How many tasks it runs, and `(key, priority)` of up to [`MAX_ROWS`]
    /// of them, best priority first.
    pub processing: (usize, Vec<(String, String)>),
    /// `(resource, used, total)`.
    pub resources: Vec<(String, f64, f64)>,
}

fn priority_text(p: &crate::task::Priority) -> String {
    let num = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 9e15 {
            format!("{}", x as i64)
        } else {
            format!("{x}")
        }
    };
    format!("({}, {}, {})", num(p.user), num(p.generation), p.order)
}

impl State {
    fn key_and_state(&self, t: TaskId) -> (String, &'static str) {
        let task = self.task(t);
        (key_label(&task.key), task.state.as_str())
    }

    /// The page of task `key`, if the scheduler knows it.
    pub fn task_info(&self, key: &Key) -> Option<TaskInfo> {
        let id = self.task_id(key)?;
        let t = self.task(id);
        let address = |w| self.worker_address(w).unwrap_or("?").to_string();
        let mut attributes = Vec::new();
        if t.has_lost_dependencies {
            attributes.push(("Has Lost Dependencies", "True".to_string()));
        }
        if let Some(r) = t.restrictions() {
            if !r.workers.is_empty() {
                attributes.push(("Worker Restrictions", format!("{:?}", r.workers)));
            }
            if !r.resources.is_empty() {
                let res: Vec<String> = r
                    .resources
                    .iter()
                    .map(|(k, v)| format!("'{k}': {v}"))
                    .collect();
                attributes.push(("Resource Restrictions", format!("{{{}}}", res.join(", "))));
            }
            if r.loose {
                attributes.push(("Loose Restrictions", "True".to_string()));
            }
        }
        if t.suspicious() > 0 {
            attributes.push(("Suspicious", t.suspicious().to_string()));
        }
        if t.retries() > 0 {
            attributes.push(("Retries", t.retries().to_string()));
        }
        let rows = |ids: &mut dyn Iterator<Item = TaskId>| -> Vec<(String, &'static str)> {
            ids.take(MAX_ROWS).map(|d| self.key_and_state(d)).collect()
        };
        Some(TaskInfo {
            key: key_label(&t.key),
            state: t.state.as_str(),
            processing_on: t.processing_on.map(address),
            type_name: self.typename_of(id).map(str::to_string),
            nbytes: t.nbytes,
            priority: priority_text(&t.priority),
            waiting_on: if t.state == TaskState::Waiting {
                t.waiting_on
                    .iter()
                    .take(MAX_ROWS)
                    .map(|d| key_label(&self.task(*d).key))
                    .collect()
            } else {
                Vec::new()
            },
            dependencies: rows(&mut t.dependencies.iter().copied()),
            dependents: rows(&mut t.dependents.iter().copied()),
            who_has: t.who_has.iter().map(|w| address(*w)).collect(),
            who_wants: t
                .who_wants
                .iter()
                .map(|c| self.client_name(*c).unwrap_or("?").to_string())
                .collect(),
            attributes,
            exception: t
                .error()
                .map(|e| (e.exception_text.clone(), e.traceback_text.clone())),
        })
    }

    /// The page of the worker at `address`, if connected.
    pub fn worker_info(&self, address: &str) -> Option<WorkerInfo> {
        let w = self.workers.get(&self.worker_id(address)?)?;
        let has_what = w
            .has_what
            .iter()
            .take(MAX_ROWS)
            .map(|t| (key_label(&self.task(t).key), self.task(t).nbytes))
            .collect();
        let mut processing: Vec<TaskId> = w.processing.iter().copied().collect();
        processing.sort_by_key(|t| self.task(*t).priority);
        processing.truncate(MAX_ROWS);
        Some(WorkerInfo {
            address: w.info.address.clone(),
            name: w.name_str.clone(),
            status: w.status.as_str(),
            nthreads: w.info.nthreads,
            memory_limit: w.info.memory_limit,
            nbytes: w.nbytes,
            has_what: (w.has_what.len(), has_what),
            processing: (
                w.processing.len(),
                processing
                    .into_iter()
                    .map(|t| {
                        let task = self.task(t);
                        (key_label(&task.key), priority_text(&task.priority))
                    })
                    .collect(),
            ),
            resources: w
                .info
                .resources
                .iter()
                .map(|(name, total)| {
                    let used = w
                        .used_resources
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(0.0, |(_, u)| *u);
                    (name.clone(), used, *total)
                })
                .collect(),
        })
    }

    /// The keys of the processing tasks on the worker at `address` (whose
    /// call stacks its page asks for).
    pub fn processing_keys(&self, address: &str) -> Vec<Key> {
        self.worker_id(address)
            .and_then(|w| self.workers.get(&w))
            .map(|w| {
                w.processing
                    .iter()
                    .map(|t| self.task(*t).key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `(key, exception text, traceback text)` of the tasks that raised (not
    /// those erred because a dependency did), at most [`MAX_ROWS`].
    pub fn raised_tasks(&self) -> Vec<(String, String, String)> {
        self.tasks
            .iter()
            .flatten()
            .filter(|t| t.state == TaskState::Erred)
            .filter_map(|t| {
                let e = t.error()?;
                Some((
                    key_label(&t.key),
                    e.exception_text.clone(),
                    e.traceback_text.clone(),
                ))
            })
            .take(MAX_ROWS)
            .collect()
    }
}
