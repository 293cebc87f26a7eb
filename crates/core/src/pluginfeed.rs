//! What scheduler plugins see: the events behind the hooks of Python's
//! `SchedulerPlugin` (`transition`, `update_graph`, `add_worker`, ...).
//!
//! Plugins run in the server's function runner, a Python process; the
//! state only records, for the hooks some registered plugin overrides
//! ([`State::set_plugin_hooks`]), one event per call Python's scheduler
//! would make, in order. The server drains them after each command
//! ([`State::drain_plugin_events`]) and ships them to the runner. With no
//! plugin (the default) nothing is recorded: each hook point costs one
//! test of a bit mask.
//!
//! Each event is an array whose first element names the hook:
//! `["transition", key, start, finish, stimulus_id]`,
//! `["update_graph", client, keys, tasks, annotations, priority, stimulus_id]`
//! (`annotations` by name then key, `priority` by key, as Python's),
//! `["add_worker", address]`, `["remove_worker", address, stimulus_id]`,
//! `["add_client", client]`, `["remove_client", client]`,
//! `["log_event", topic, msg]`, `["restart"]`.

use crate::graph::GraphSubmission;
use crate::ids::{ClientId, TaskId};
use crate::state::State;
use crate::task::TaskState;
use dask_wire::{Key, Value};

/// The hooks a plugin can override, as bits of [`State::set_plugin_hooks`].
pub mod hooks {
    /// `transition(key, start, finish, stimulus_id=...)`.
    pub const TRANSITION: u16 = 1;
    /// `update_graph(scheduler, client=, keys=, tasks=, ...)`.
    pub const UPDATE_GRAPH: u16 = 1 << 1;
    /// `add_worker(scheduler, worker)`.
    pub const ADD_WORKER: u16 = 1 << 2;
    /// `remove_worker(scheduler, worker, stimulus_id=)`.
    pub const REMOVE_WORKER: u16 = 1 << 3;
    /// `add_client(scheduler, client)`.
    pub const ADD_CLIENT: u16 = 1 << 4;
    /// `remove_client(scheduler, client)`.
    pub const REMOVE_CLIENT: u16 = 1 << 5;
    /// `log_event(topic, msg)`.
    pub const LOG_EVENT: u16 = 1 << 6;
    /// `restart(scheduler)`.
    pub const RESTART: u16 = 1 << 7;

    /// Each hook's bit with its Python method name.
    pub const NAMES: [(u16, &str); 8] = [
        (TRANSITION, "transition"),
        (UPDATE_GRAPH, "update_graph"),
        (ADD_WORKER, "add_worker"),
        (REMOVE_WORKER, "remove_worker"),
        (ADD_CLIENT, "add_client"),
        (REMOVE_CLIENT, "remove_client"),
        (LOG_EVENT, "log_event"),
        (RESTART, "restart"),
    ];

    /// The bits of the named hooks (unknown names are ignored).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> u16 {
        names
            .into_iter()
            .filter_map(|n| NAMES.iter().find(|(_, name)| *name == n))
            .fold(0, |mask, (bit, _)| mask | bit)
    }
}

/// The recorded events and the hooks that record them.
#[derive(Debug, Default)]
pub struct PluginFeed {
    hooks: u16,
    events: Vec<Value>,
}

impl State {
    /// Record events for these hooks (a union of [`hooks`] bits; 0 stops
    /// recording and drops what was not drained).
    pub fn set_plugin_hooks(&mut self, mask: u16) {
        self.plugin_feed.hooks = mask;
        if mask == 0 {
            self.plugin_feed.events = Vec::new();
        }
    }

    /// The events recorded since the last call, oldest first.
    pub fn drain_plugin_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.plugin_feed.events)
    }

    /// Whether a registered plugin overrides `hook`.
    #[inline]
    pub(crate) fn plugin_wants(&self, hook: u16) -> bool {
        self.plugin_feed.hooks & hook != 0
    }

    /// Record a call of `hook` (its bit `bit`) if a plugin overrides it;
    /// `args` builds its arguments only then.
    pub(crate) fn plugin_hook(
        &mut self,
        bit: u16,
        hook: &'static str,
        args: impl FnOnce() -> Vec<Value>,
    ) {
        if self.plugin_wants(bit) {
            self.plugin_event(hook, args());
        }
    }

    /// Record one event (callers check [`State::plugin_wants`] first, so
    /// that building it costs nothing without plugins).
    pub(crate) fn plugin_event(&mut self, hook: &'static str, args: Vec<Value>) {
        let mut event = Vec::with_capacity(args.len() + 1);
        event.push(Value::str(hook));
        event.extend(args);
        self.plugin_feed.events.push(Value::Array(event));
    }

    /// Record the transition of `key` from `start` to its current state.
    pub(crate) fn plugin_transition(&mut self, key: Key, start: TaskState, finish: TaskState) {
        self.make_compute_stimulus();
        let stimulus = self.compute_stimulus.clone().expect("just made");
        self.plugin_event(
            "transition",
            vec![
                key.to_value(),
                Value::str(start.as_str()),
                Value::str(finish.as_str()),
                Value::Raw(stimulus),
            ],
        );
    }

    /// Record a submitted graph: its client, the keys it wants, the keys
    /// of its tasks and their annotations (`{name: {key: value}}`), as
    /// Python's `keys`, `tasks` and `annotations`. Returns the event's
    /// index, for [`State::plugin_update_graph_priorities`] to fill in the
    /// priorities once the tasks have them.
    pub(crate) fn plugin_update_graph(
        &mut self,
        client: ClientId,
        graph: &GraphSubmission,
    ) -> usize {
        let keys =
            |ks: &mut dyn Iterator<Item = &Key>| Value::Array(ks.map(Key::to_value).collect());
        let mut by_name: Vec<(Value, Vec<(Value, Value)>)> = Vec::new();
        for t in &graph.tasks {
            for (name, value) in t.annotations.as_map().unwrap_or(&[]) {
                let i = match by_name.iter().position(|(n, _)| n == name) {
                    Some(i) => i,
                    None => {
                        by_name.push((name.clone(), Vec::new()));
                        by_name.len() - 1
                    }
                };
                by_name[i].1.push((t.key.to_value(), value.clone()));
            }
        }
        let annotations = Value::Map(
            by_name
                .into_iter()
                .map(|(name, per_key)| (name, Value::Map(per_key)))
                .collect(),
        );
        let args = vec![
            Value::str(self.client_name(client).unwrap_or_default()),
            keys(&mut graph.requested.iter()),
            keys(&mut graph.tasks.iter().map(|t| &t.key)),
            annotations,
            Value::Map(Vec::new()),
            Value::str(self.stimulus("update-graph")),
        ];
        self.plugin_event("update_graph", args);
        self.plugin_feed.events.len() - 1
    }

    /// Fill in the `priority` (`{key: priority}`) of the `update_graph`
    /// event at `index` from the graph's tasks, now placed.
    pub(crate) fn plugin_update_graph_priorities(&mut self, index: usize, ids: &[TaskId]) {
        let priority = Value::Map(
            ids.iter()
                .map(|&id| {
                    let t = self.task(id);
                    (t.key.to_value(), t.priority.to_value())
                })
                .collect(),
        );
        if let Some(Value::Array(items)) = self.plugin_feed.events.get_mut(index) {
            items[5] = priority;
        }
    }
}
