//! `get_task_metadata` (Python's `CollectTaskMetaDataPlugin`): while a
//! client's `with get_task_metadata() as tasks:` block runs, the keys of the
//! graphs it submits are watched, and each one's final state (`memory` or
//! `erred`) and its `metadata` then (what its workers reported, merged
//! over its computations as Python's `TaskState.metadata`; nil if none had
//! entries) are kept, to be handed back when the block ends
//! (`stop_task_metadata`).
//!
//! Why: it is how a user learns what each of a computation's outputs ended
//! as, without polling. Nothing is watched while no block is open, so the
//! finished-task path pays one emptiness check.

use crate::ids::TaskId;
use crate::state::State;
use crate::task::TaskState;
use dask_wire::{Key, Value};
use rustc_hash::FxHashSet;

/// One open `get_task_metadata` block.
#[derive(Debug)]
struct Collector {
    name: String,
    /// Requested keys not finished yet.
    keys: FxHashSet<Key>,
    /// `(key, metadata)` of the finished ones, in finishing order.
    metadata: Vec<(Value, Value)>,
    /// `(key, "memory" | "erred")` of the finished ones.
    state: Vec<(Value, Value)>,
}

/// The open blocks.
#[derive(Debug, Default)]
pub(crate) struct TaskMetadataCollectors {
    open: Vec<Collector>,
}

impl TaskMetadataCollectors {
    /// Whether any block is open (checked on every finished task).
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        !self.open.is_empty()
    }
}

impl State {
    /// `start_task_metadata(name)`: open a block. One of the same name is
    /// replaced, as Python's `add_plugin` replaces a plugin of that name.
    pub fn start_task_metadata(&mut self, name: &str) {
        self.task_metadata.open.retain(|c| c.name != name);
        self.task_metadata.open.push(Collector {
            name: name.to_string(),
            keys: FxHashSet::default(),
            metadata: Vec::new(),
            state: Vec::new(),
        });
    }

    /// `stop_task_metadata(name)`: close the block and return
    /// `{"metadata": {key: metadata}, "state": {key: state}}`; an error text
    /// (Python's `ValueError`) if no block of that name is open.
    pub fn stop_task_metadata(&mut self, name: &str) -> Result<Value, String> {
        let Some(i) = self.task_metadata.open.iter().position(|c| c.name == name) else {
            return Err(format!(
                "Expected to find exactly one CollectTaskMetaDataPlugin with name {name} but \
                 found 0."
            ));
        };
        let c = self.task_metadata.open.remove(i);
        Ok(Value::map([
            ("metadata", Value::Map(c.metadata)),
            ("state", Value::Map(c.state)),
        ]))
    }

    /// A graph was submitted: every open block watches its requested keys
    /// (the `keys` Python's `update_graph` hook gets).
    pub(crate) fn watch_task_metadata(&mut self, requested: &[Key]) {
        for c in &mut self.task_metadata.open {
            c.keys.extend(requested.iter().cloned());
        }
    }

    /// Task `id` entered `finish` (memory or erred): blocks watching its
    /// key keep that and its metadata.
    pub(crate) fn collect_task_metadata(&mut self, id: TaskId, finish: TaskState) {
        let task = self.task(id);
        let (key, metadata) = (
            task.key.clone(),
            task.metadata().cloned().unwrap_or(Value::Nil),
        );
        for c in &mut self.task_metadata.open {
            if c.keys.remove(&key) {
                c.metadata.push((key.to_value(), metadata.clone()));
                c.state.push((key.to_value(), Value::str(finish.as_str())));
            }
        }
    }
}
