//! Published datasets, `Variable`s and `Event`s: the scheduler-side state of
//! Dask's coordination extensions.
//!
//! Why: clients share futures and small values through the scheduler with
//! `client.publish_dataset`/`get_dataset`, `distributed.Variable` and
//! `distributed.Event`. The Python scheduler keeps them in its
//! `PublishExtension`, `VariableExtension` and `EventExtension`; this module
//! is the same state, pure. Waiting (a `Variable.get` before the first `set`,
//! an `Event.wait`, a `publish_put` that must first see the client's stream
//! catch up) is the server's part: it asks these methods again whenever
//! something may have changed.
//!
//! Futures held by a dataset or a variable are held by a pseudo-client, as in
//! Python: `published-<name>` and `variable-<name>`.

use crate::ids::ClientId;
use crate::state::State;
use dask_wire::{Key, Value};
use std::collections::{HashMap, HashSet, VecDeque};

/// Most `publish_flush_batched_send` uids remembered without their
/// `publish_put`/`publish_delete` (a client that sent the flush and died).
const MAX_FLUSHED: usize = 10_000;

/// One published dataset: the serialized collection and the keys it holds.
#[derive(Debug, Clone)]
struct Dataset {
    data: Value,
    keys: Vec<Key>,
}

/// What a variable holds.
#[derive(Debug, Clone)]
enum VarValue {
    /// A future, by key (held by the `variable-<name>` pseudo-client).
    Future(Key),
    /// A msgpack-encodable value, returned as it came.
    Data(Value),
}

/// An event's flag, its waiters, and how often it was set (a waiter that
/// saw a set it missed the flag of, because a clear came right after,
/// still returns true, as with `asyncio.Event`).
#[derive(Debug, Default, Clone, Copy)]
struct EventState {
    set: bool,
    waiters: u32,
    generation: u64,
}

/// The coordination extensions' state (see the module docs).
#[derive(Debug, Default)]
pub struct Coordination {
    datasets: HashMap<Key, Dataset>,
    flushed: HashSet<String>,
    flushed_order: VecDeque<String>,
    variables: HashMap<Key, VarValue>,
    /// `(task key, variable name)` → tokens handed out by `variable_get`
    /// whose `variable-future-received-confirm` has not come yet.
    tokens: HashMap<(Key, Key), HashSet<String>>,
    /// Futures a variable no longer holds, released once their tokens are
    /// confirmed (so that a getter holds the key before the variable lets go).
    pending_release: HashSet<(Key, Key)>,
    token_counter: u64,
    events: HashMap<Key, EventState>,
}

/// Python's `str()` of a key-like value (`'x'` → `x`, `('x', 1)` →
/// `('x', 1)`): names of pseudo-clients and the order of `publish_list`.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => python_repr(other),
    }
}

/// Python's `repr()` of a key-like value (`'x'`, `('x', 0)`).
pub(crate) fn python_repr(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        Value::Float(f) => f.to_string(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Nil => "None".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(python_repr).collect();
            if inner.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
        Value::Raw(raw) => python_repr(&dask_wire::msgpack::decode(raw).unwrap_or(Value::Nil)),
        other => other.to_string(),
    }
}

/// How a name (a key-like value) reads in messages and pseudo-client
/// names: Python's `str()` of it.
pub fn key_label(name: &Key) -> String {
    python_str(&name.decoded())
}

/// The pseudo-client that holds the futures of `<prefix>` `name`
/// (`published-x`, `variable-x`, `queue-x`).
fn holder_label(prefix: &str, name: &Key) -> String {
    format!("{prefix}-{}", key_label(name))
}

impl State {
    /// The holder pseudo-client of `<prefix>` `name`, registered if new.
    pub(crate) fn pseudo_client(&mut self, prefix: &str, name: &Key) -> ClientId {
        let now = self.now;
        self.add_client(&holder_label(prefix, name), now)
    }

    /// Ids of the known tasks among `keys` (unknown keys are skipped, as
    /// Python's `client_desires_keys` does with a warning).
    fn known_ids(&self, keys: &[Key]) -> Vec<crate::ids::TaskId> {
        keys.iter().filter_map(|k| self.task_id(k)).collect()
    }

    /// `publish_flush_batched_send` from a client's stream: every op the
    /// client sent before it has been handled.
    pub fn publish_flushed(&mut self, uid: &str) {
        let c = &mut self.coordination;
        if c.flushed.insert(uid.to_string()) {
            c.flushed_order.push_back(uid.to_string());
            while c.flushed_order.len() > MAX_FLUSHED {
                if let Some(old) = c.flushed_order.pop_front() {
                    c.flushed.remove(&old);
                }
            }
        }
    }

    /// Whether the flush `uid` has come (and forget it if so): a
    /// `publish_put`/`publish_delete` waits for this before acting.
    pub fn take_publish_flush(&mut self, uid: &str) -> bool {
        let c = &mut self.coordination;
        if c.flushed.remove(uid) {
            c.flushed_order.retain(|u| u != uid);
            true
        } else {
            false
        }
    }

    /// `publish_put`: store each dataset and hold its keys. A name already
    /// published without `override` is an error (`KeyError`), raised at
    /// that name after the earlier ones are stored, as in Python.
    pub fn publish_put(
        &mut self,
        entries: Vec<(Key, Vec<Key>, Value)>,
        override_existing: bool,
    ) -> Result<(), String> {
        for (name, keys, data) in entries {
            if self.coordination.datasets.contains_key(&name) {
                if !override_existing {
                    return Err(format!("Dataset {} already exists", key_label(&name)));
                }
                self.publish_drop(&name);
            }
            let holder = self.pseudo_client("published", &name);
            let ids = self.known_ids(&keys);
            self.client_desires(holder, &ids);
            self.coordination
                .datasets
                .insert(name, Dataset { data, keys });
        }
        Ok(())
    }

    fn publish_drop(&mut self, name: &Key) {
        if let Some(old) = self.coordination.datasets.remove(name) {
            let holder = self.pseudo_client("published", name);
            let ids = self.known_ids(&old.keys);
            self.client_releases(holder, &ids);
        }
    }

    /// `publish_delete`: drop the datasets and release their keys.
    pub fn publish_delete(&mut self, names: &[Key]) {
        for name in names {
            self.publish_drop(name);
        }
    }

    /// `publish_get`: per name, `{"data", "keys"}` or nil.
    pub fn publish_get(&self, names: &[Key]) -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| match self.coordination.datasets.get(n) {
                    Some(d) => Value::map([
                        ("data", d.data.clone()),
                        (
                            "keys",
                            Value::Array(d.keys.iter().map(Key::to_value).collect()),
                        ),
                    ]),
                    None => Value::Nil,
                })
                .collect(),
        )
    }

    /// `publish_list`: the names, sorted by their Python `str()`.
    pub fn publish_list(&self) -> Value {
        let mut names: Vec<(String, Value)> = self
            .coordination
            .datasets
            .keys()
            .map(|k| {
                let v = k.decoded();
                (python_str(&v), v)
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Array(names.into_iter().map(|(_, v)| v).collect())
    }

    /// `variable_set` with a future: false while the key is unknown (the
    /// caller retries until its timeout: the graph may still be on its way).
    pub fn variable_set_future(&mut self, name: Key, key: Key) -> bool {
        let Some(id) = self.task_id(&key) else {
            return false;
        };
        let holder = self.pseudo_client("variable", &name);
        self.client_desires(holder, &[id]);
        self.variable_replace(name, VarValue::Future(key));
        true
    }

    /// `variable_set` with a plain value.
    pub fn variable_set_data(&mut self, name: Key, data: Value) {
        self.variable_replace(name, VarValue::Data(data));
    }

    fn variable_replace(&mut self, name: Key, value: VarValue) {
        let old = self.coordination.variables.insert(name.clone(), value);
        if let Some(VarValue::Future(old_key)) = old {
            let same = matches!(
                self.coordination.variables.get(&name),
                Some(VarValue::Future(k)) if *k == old_key
            );
            if !same {
                self.variable_release(old_key, name);
            }
        }
    }

    /// Release `key` from variable `name` now, or once the tokens handed
    /// out for it are confirmed.
    fn variable_release(&mut self, key: Key, name: Key) {
        let pair = (key, name);
        if self
            .coordination
            .tokens
            .get(&pair)
            .is_some_and(|t| !t.is_empty())
        {
            self.coordination.pending_release.insert(pair);
            return;
        }
        self.coordination.tokens.remove(&pair);
        let (key, name) = pair;
        let holder = self.pseudo_client("variable", &name);
        if let Some(id) = self.task_id(&key) {
            self.client_releases(holder, &[id]);
        }
    }

    /// `variable_get`: the record, or None while the variable is unset.
    /// A future comes with its state, a token to confirm (the variable does
    /// not release the key before the getter holds it) and, if it erred,
    /// its exception and traceback.
    pub fn variable_get(&mut self, name: &Key) -> Option<Value> {
        let value = self.coordination.variables.get(name)?.clone();
        Some(match value {
            VarValue::Data(data) => Value::map([("type", Value::str("msgpack")), ("value", data)]),
            VarValue::Future(key) => {
                self.coordination.token_counter += 1;
                let token = format!("{:032x}", self.coordination.token_counter);
                self.coordination
                    .tokens
                    .entry((key.clone(), name.clone()))
                    .or_default()
                    .insert(token.clone());
                let mut fields = vec![
                    ("type", Value::str("Future")),
                    ("value", key.to_value()),
                    ("token", Value::str(token)),
                ];
                fields.extend(self.future_state_fields(&key));
                Value::map(fields)
            }
        })
    }

    /// The `state` of the task behind a shared future (`lost` if the
    /// scheduler no longer knows it) and, if it erred, its `exception` and
    /// `traceback`: what a `Variable` or `Queue` getter builds its
    /// `Future` from.
    pub(crate) fn future_state_fields(&self, key: &Key) -> Vec<(&'static str, Value)> {
        let id = self.task_id(key);
        let state = id.map_or("lost", |id| self.task(id).state.as_str());
        let mut fields = vec![("state", Value::str(state))];
        if let (Some(id), "erred") = (id, state) {
            let msg = self.task_erred_msg(id);
            for field in ["exception", "traceback"] {
                fields.push((field, msg.get(field).cloned().unwrap_or(Value::Nil)));
            }
        }
        fields
    }

    /// `variable-future-received-confirm` from `client`'s stream: the
    /// getter now holds `key`; a release waiting for it may go ahead.
    pub fn variable_confirm(&mut self, client: ClientId, name: Key, key: Key, token: &str) {
        if let Some(id) = self.task_id(&key) {
            self.client_desires(client, &[id]);
        }
        let pair = (key, name);
        let drained = match self.coordination.tokens.get_mut(&pair) {
            Some(tokens) => {
                tokens.remove(token);
                tokens.is_empty()
            }
            None => false,
        };
        if !drained {
            return;
        }
        self.coordination.tokens.remove(&pair);
        if self.coordination.pending_release.remove(&pair) {
            let (key, name) = pair;
            self.variable_release(key, name.clone());
            if !self.coordination.variables.contains_key(&name) {
                // deleted while getters held tokens: its pseudo-client goes now
                self.remove_variable_holder(&name);
            }
        }
    }

    fn remove_variable_holder(&mut self, name: &Key) {
        if let Some(c) = self.client_id(&holder_label("variable", name)) {
            let now = self.now;
            self.remove_client(c, now);
        }
    }

    /// `variable_delete`: drop the variable, release its future (once
    /// confirmed) and remove its pseudo-client.
    pub fn variable_delete(&mut self, name: &Key) {
        match self.coordination.variables.remove(name) {
            Some(VarValue::Future(key)) => {
                self.variable_release(key.clone(), name.clone());
                if self
                    .coordination
                    .pending_release
                    .contains(&(key, name.clone()))
                {
                    // the pseudo-client must hold the key until the getters do
                    return;
                }
            }
            Some(VarValue::Data(_)) | None => {}
        }
        self.remove_variable_holder(name);
    }

    /// `event_set`: set the flag; every waiter returns true.
    pub fn event_set(&mut self, name: Key) {
        let e = self.coordination.events.entry(name).or_default();
        e.set = true;
        e.generation += 1;
    }

    /// `event_clear`: clear the flag (and forget an event nobody waits on).
    pub fn event_clear(&mut self, name: &Key) {
        if let Some(e) = self.coordination.events.get_mut(name) {
            e.set = false;
            if e.waiters == 0 {
                self.coordination.events.remove(name);
            }
        }
    }

    /// `event_is_set`.
    pub fn event_is_set(&self, name: &Key) -> bool {
        self.coordination.events.get(name).is_some_and(|e| e.set)
    }

    /// A waiter starts on `name`: the ticket to pass to
    /// [`State::event_wait_done`] and [`State::event_wait_end`].
    pub fn event_wait_begin(&mut self, name: Key) -> u64 {
        let e = self.coordination.events.entry(name).or_default();
        e.waiters += 1;
        e.generation
    }

    /// Whether a waiter that started with `ticket` may return true: the
    /// flag is set, or was set since it started.
    pub fn event_wait_done(&self, name: &Key, ticket: u64) -> bool {
        self.coordination
            .events
            .get(name)
            .is_some_and(|e| e.set || e.generation != ticket)
    }

    /// A waiter on `name` has returned.
    pub fn event_wait_end(&mut self, name: &Key) {
        if let Some(e) = self.coordination.events.get_mut(name) {
            e.waiters = e.waiters.saturating_sub(1);
            if e.waiters == 0 && !e.set {
                self.coordination.events.remove(name);
            }
        }
    }
}
