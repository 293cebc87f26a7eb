//! Worker and nanny plugins: pickled objects the scheduler stores and relays
//! (`register_worker_plugin`, `register_nanny_plugin`), never unpickles.
//! New workers get the worker plugins in their registration reply, new
//! nannies the nanny plugins in theirs.

use dask_wire::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The registered plugins, by name.
#[derive(Default)]
pub struct Plugins {
    worker: Mutex<BTreeMap<String, Value>>,
    nanny: Mutex<BTreeMap<String, Value>>,
}

/// Which kind of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Installed in worker processes (`plugin-add`).
    Worker,
    /// Installed in nanny processes (`plugin_add`).
    Nanny,
}

impl Plugins {
    fn table(&self, kind: Kind) -> &Mutex<BTreeMap<String, Value>> {
        match kind {
            Kind::Worker => &self.worker,
            Kind::Nanny => &self.nanny,
        }
    }

    /// Store a plugin; false if `idempotent` and one of that name exists.
    pub fn add(&self, kind: Kind, name: &str, plugin: Value, idempotent: bool) -> bool {
        let mut t = self.table(kind).lock().unwrap_or_else(|e| e.into_inner());
        if idempotent && t.contains_key(name) {
            return false;
        }
        t.insert(name.to_string(), plugin);
        true
    }

    /// Remove a plugin; false if unknown.
    pub fn remove(&self, kind: Kind, name: &str) -> bool {
        let mut t = self.table(kind).lock().unwrap_or_else(|e| e.into_inner());
        t.remove(name).is_some()
    }

    fn map(&self, kind: Kind) -> Value {
        let t = self.table(kind).lock().unwrap_or_else(|e| e.into_inner());
        Value::Map(
            t.iter()
                .map(|(k, v)| (Value::str(k.clone()), v.clone()))
                .collect(),
        )
    }

    /// `{name: plugin}` of worker plugins, for `register-worker` replies.
    pub fn worker_map(&self) -> Value {
        self.map(Kind::Worker)
    }

    /// `{name: plugin}` of nanny plugins, for `register_nanny` replies.
    pub fn nanny_map(&self) -> Value {
        self.map(Kind::Nanny)
    }
}
