//! The events Python's scheduler logs about its own doings (topics `all`,
//! `scheduler`, a worker's address, a client's id), which
//! `client.get_events`, `subscribe_topic` and the plugins' `log_event`
//! hook see: workers and clients coming and going, a worker's status, a
//! submitted graph.

use crate::ids::{ClientId, TaskId};
use crate::state::State;
use crate::worker::WorkerStatus;
use dask_wire::Value;

fn action(name: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut map = vec![(Value::str("action"), Value::str(name))];
    map.extend(fields.into_iter().map(|(k, v)| (Value::str(k), v)));
    Value::Map(map)
}

impl State {
    fn keys_value(&self, ids: &[TaskId]) -> Value {
        Value::Array(ids.iter().map(|&id| self.task(id).key.to_value()).collect())
    }

    /// `add-worker`, to the worker's topic and (with its address) `all`.
    pub(crate) fn event_add_worker(&mut self, address: &str) {
        self.publish_event(address, action("add-worker", vec![]));
        let all = action("add-worker", vec![("worker", Value::str(address))]);
        self.publish_event("all", all);
    }

    /// `remove-worker`, with the tasks it was processing, the computed
    /// results lost with it (to be recomputed) and the scattered data lost
    /// for good; `expected` when it was retiring or closing.
    pub(crate) fn event_remove_worker(
        &mut self,
        address: &str,
        lost: RemovedWorkerLoss,
        stimulus_id: &str,
        expected: bool,
    ) {
        let fields = vec![
            ("processing-tasks", self.keys_value(&lost.processing)),
            ("lost-computed-tasks", self.keys_value(&lost.recomputed)),
            ("lost-scattered-tasks", self.keys_value(&lost.scattered)),
            ("stimulus_id", Value::str(stimulus_id)),
            ("expected", Value::Bool(expected)),
        ];
        let event = action("remove-worker", fields);
        let Value::Map(mut all) = event.clone() else {
            unreachable!("action builds a map")
        };
        self.publish_event(address, event);
        all.push((Value::str("worker"), Value::str(address)));
        self.publish_event("all", Value::Map(all));
    }

    /// Drop the events of a departed worker's or client's topic once
    /// `events-cleanup-delay` has passed (see [`State::cleanup_event_topics`]).
    pub(crate) fn schedule_topic_cleanup(&mut self, topic: &str) {
        let at = self.now + self.config.events_cleanup_delay;
        self.topic_cleanups.push_back((at, topic.to_string()));
    }

    /// Python's delayed `_broker.truncate(topic)` after a worker or client
    /// left: drops the events of each topic whose delay has passed, unless a
    /// worker or client of that name is registered again. Without it every
    /// worker that ever joined a long-lived, autoscaled cluster would keep
    /// its topic. Returns how many topics were dropped.
    pub fn cleanup_event_topics(&mut self, now: f64) -> usize {
        let mut dropped = 0;
        while self
            .topic_cleanups
            .front()
            .is_some_and(|(at, _)| *at <= now)
        {
            let Some((_, topic)) = self.topic_cleanups.pop_front() else {
                break;
            };
            let back = self.worker_by_addr.contains_key(&topic)
                || self.client_by_name.contains_key(&topic);
            if !back && self.events.remove(&topic).is_some() {
                dropped += 1;
            }
        }
        dropped
    }

    /// `no-workers-timeout-exceeded`, to `scheduler`, naming the tasks the
    /// no-workers timeout fails (see `noworkers.rs`).
    pub(crate) fn event_no_workers_timeout(&mut self, ids: &[TaskId]) {
        let event = action(
            "no-workers-timeout-exceeded",
            vec![("keys", self.keys_value(ids))],
        );
        self.publish_event("scheduler", event);
    }

    /// `add-client` / `remove-client`, to `all` and the client's topic.
    pub(crate) fn event_client(&mut self, name: &str, added: bool) {
        let what = if added { "add-client" } else { "remove-client" };
        let event = action(what, vec![("client", Value::str(name))]);
        self.publish_event("all", event.clone());
        self.publish_event(name, event);
    }

    /// `worker-status-change`, to the worker's topic.
    pub(crate) fn event_worker_status(
        &mut self,
        address: &str,
        was: WorkerStatus,
        now: WorkerStatus,
    ) {
        let stimulus_id = self.stimulus("worker-status-change");
        let event = action(
            "worker-status-change",
            vec![
                ("prev-status", Value::str(was.as_str())),
                ("status", Value::str(now.as_str())),
                ("stimulus_id", Value::str(stimulus_id)),
            ],
        );
        self.publish_event(address, event);
    }

    /// `update-graph`, to `scheduler` and the client's topic, as Python's:
    /// status `OK` with the graph's metrics, `cancelled` (a requested key
    /// lost) or `error` (a graph that could not be materialized).
    pub(crate) fn event_update_graph(&mut self, client: ClientId, outcome: GraphOutcome) {
        let Some(name) = self.client_name(client).map(str::to_string) else {
            return;
        };
        let stimulus_id = self.stimulus("update-graph");
        let mut fields = vec![("stimulus_id", Value::str(stimulus_id))];
        match outcome {
            GraphOutcome::Ok {
                tasks,
                new_tasks,
                key_collisions,
                timings,
            } => {
                let mut metrics = vec![
                    ("tasks", Value::from(tasks)),
                    ("new_tasks", Value::from(new_tasks)),
                    ("key_collisions", Value::from(key_collisions)),
                ];
                metrics.extend(
                    timings
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k, Value::Float(v))),
                );
                fields.push(("metrics", Value::map(metrics)));
                fields.push(("status", Value::str("OK")));
            }
            GraphOutcome::Cancelled => fields.push(("status", Value::str("cancelled"))),
            GraphOutcome::Error => fields.push(("status", Value::str("error"))),
        }
        let event = action("update-graph", fields);
        self.publish_event("scheduler", event.clone());
        self.publish_event(&name, event);
    }
}

/// How an `update-graph` ended, for its event.
#[derive(Debug)]
pub(crate) enum GraphOutcome {
    /// The graph was taken: the tasks submitted, those new here, the known
    /// keys submitted with other dependencies, and the timings (named as
    /// Python names them) when the server measured them.
    Ok {
        tasks: usize,
        new_tasks: usize,
        key_collisions: usize,
        timings: Option<[(&'static str, f64); 5]>,
    },
    /// A requested key is neither in the graph nor known (lost).
    Cancelled,
    /// The graph could not be materialized.
    Error,
}

/// What a removed worker took with it, for its `remove-worker` event.
#[derive(Debug, Default)]
pub(crate) struct RemovedWorkerLoss {
    pub(crate) processing: Vec<TaskId>,
    pub(crate) recomputed: Vec<TaskId>,
    pub(crate) scattered: Vec<TaskId>,
}
