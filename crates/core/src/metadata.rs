//! `Client.set_metadata` / `get_metadata`: small administrative values kept
//! on the scheduler in a nested map (Python's `Scheduler.task_metadata`).
//! A top-level entry named like a task is dropped when that task is
//! forgotten, as in Python.

use crate::state::State;
use dask_wire::{Key, Value};

/// Why `get_metadata` has nothing to return (Python raises `KeyError`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MissingMetadata(pub String);

impl State {
    /// `set_metadata(keys, value)`: store `value` under the path `keys`,
    /// creating (or replacing non-map) intermediate entries with maps.
    pub fn set_metadata(&mut self, keys: &[Value], value: Value) {
        let Some((last, path)) = keys.split_last() else {
            return;
        };
        let mut node = &mut self.metadata;
        for k in path {
            let map = as_map_mut(node);
            let at = match map.iter().position(|(existing, _)| existing == k) {
                Some(i) => i,
                None => {
                    map.push((k.clone(), Value::Map(Vec::new())));
                    map.len() - 1
                }
            };
            if map[at].1.as_map().is_none() {
                map[at].1 = Value::Map(Vec::new());
            }
            node = &mut map[at].1;
        }
        let map = as_map_mut(node);
        match map.iter_mut().find(|(existing, _)| existing == last) {
            Some(entry) => entry.1 = value,
            None => map.push((last.clone(), value)),
        }
    }

    /// `get_metadata(keys)`: the value under the path `keys` (an array is
    /// indexed by integers), or the first key that is missing.
    pub fn get_metadata(&self, keys: &[Value]) -> Result<Value, MissingMetadata> {
        let mut node = &self.metadata;
        for k in keys {
            let next = match node {
                Value::Map(entries) => entries.iter().find(|(e, _)| e == k).map(|(_, v)| v),
                Value::Array(items) => k
                    .as_i64()
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| items.get(i)),
                _ => None,
            };
            node = next.ok_or_else(|| MissingMetadata(crate::coordination::python_str(k)))?;
        }
        Ok(node.clone())
    }

    /// A task was forgotten: drop the top-level entry named by its key.
    pub(crate) fn forget_metadata(&mut self, key: &Key) {
        if let Value::Map(entries) = &mut self.metadata {
            if entries.is_empty() {
                return;
            }
            let name = key.decoded();
            entries.retain(|(k, _)| *k != name);
        }
    }
}

/// `node` as a map, replacing anything else with an empty one.
fn as_map_mut(node: &mut Value) -> &mut Vec<(Value, Value)> {
    if node.as_map().is_none() {
        *node = Value::Map(Vec::new());
    }
    match node {
        Value::Map(entries) => entries,
        _ => unreachable!("just made a map"),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, State};
    use dask_wire::Value;

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    #[test]
    fn nested_paths_are_created_replaced_and_read() {
        let mut st = State::new(Config::default());
        st.set_metadata(&[s("x"), s("y")], Value::Int(123));
        st.set_metadata(&[s("x"), s("w"), s("z")], Value::Int(456));
        assert_eq!(st.get_metadata(&[s("x"), s("y")]), Ok(Value::Int(123)));
        assert_eq!(
            st.get_metadata(&[s("x"), s("w")]),
            Ok(Value::map([("z", Value::Int(456))]))
        );
        // a non-map on the path is replaced by a map
        st.set_metadata(&[s("x"), s("y"), s("deeper")], Value::Int(1));
        assert_eq!(
            st.get_metadata(&[s("x"), s("y")]),
            Ok(Value::map([("deeper", Value::Int(1))]))
        );
        assert_eq!(st.get_metadata(&[s("x"), s("nope")]).unwrap_err().0, "nope");
        st.set_metadata(
            &[s("list")],
            Value::Array(vec![Value::Int(7), Value::Int(8)]),
        );
        assert_eq!(
            st.get_metadata(&[s("list"), Value::Int(1)]),
            Ok(Value::Int(8))
        );
        // a top-level entry named like a forgotten task goes with it
        st.set_metadata(&[s("task-1")], Value::Int(5));
        st.forget_metadata(&dask_wire::Key::from_str_key("task-1"));
        assert!(st.get_metadata(&[s("task-1")]).is_err());
        assert!(st.get_metadata(&[s("x")]).is_ok());
    }
}
