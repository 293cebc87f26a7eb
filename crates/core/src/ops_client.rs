//! Client report-stream ops (`client-desires-keys`, `cancel-keys`, ...).
//!
//! `update-graph`, `close-client` and `close-stream` involve I/O and are
//! handled by the server, which calls [`State::update_graph`] /
//! [`State::remove_client`].

use crate::error::CoreError;
use crate::ids::{ClientId, TaskId};
use crate::messages;
use crate::state::{Outgoing, State};
use crate::task::TaskState;
use dask_wire::{Key, Value};

/// The items of a list (or `__Set__`) of keys in a message field; nil is
/// an empty list.
fn key_items<'m>(op: &str, msg: &'m Value, field: &str) -> Result<&'m [Value], CoreError> {
    let Some(v) = msg.get(field) else {
        return Err(CoreError::malformed(op, format!("missing '{field}'")));
    };
    if v.is_nil() {
        return Ok(&[]);
    }
    v.as_seq()
        .ok_or_else(|| CoreError::malformed(op, format!("'{field}' is not a list of keys")))
}

/// Parse a list (or `__Set__`) of keys from a message field.
pub fn keys_field(op: &str, msg: &Value, field: &str) -> Result<Vec<Key>, CoreError> {
    key_items(op, msg, field)?
        .iter()
        .map(|k| Key::from_value(k).map_err(|e| CoreError::malformed(op, e.to_string())))
        .collect()
}

fn op_name(msg: &Value) -> Result<&str, CoreError> {
    msg.get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| CoreError::malformed("?", "message without a string 'op'"))
}

impl State {
    /// The ids of the known keys in the list of keys `msg[field]`, in its
    /// order; unknown keys are left out (and logged at debug level), a
    /// value that is not a key makes the whole message malformed. Unlike
    /// [`keys_field`], builds no [`Key`] (a release of a 1M-key graph would
    /// otherwise allocate and free a million of them).
    fn known_ids_field(
        &mut self,
        op: &str,
        msg: &Value,
        field: &str,
    ) -> Result<Vec<TaskId>, CoreError> {
        let items = key_items(op, msg, field)?;
        // All keys' canonical bytes first, into one buffer, then the
        // lookups in a loop of their own: each lookup is a random probe
        // into the key index, and with nothing else between them the CPU
        // overlaps the cache misses of several.
        let mut bytes: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::with_capacity(items.len());
        let mut scratch = std::mem::take(&mut self.key_scratch);
        for k in items {
            Key::encode_canonical(k, &mut scratch)
                .map_err(|e| CoreError::malformed(op, e.to_string()))?;
            bytes.extend_from_slice(&scratch);
            ends.push(bytes.len());
        }
        self.key_scratch = scratch;
        let mut ids = Vec::with_capacity(items.len());
        let mut start = 0;
        for (k, &end) in items.iter().zip(&ends) {
            match self.task_ids.get(&self.tasks, &bytes[start..end]) {
                Some(id) => ids.push(id),
                None => tracing::debug!("{op}: unknown key {k:?}"),
            }
            start = end;
        }
        Ok(ids)
    }

    /// Resolve the client a stream message acts for: its `client` field if
    /// present (e.g. `fire-and-forget`), else the stream's own client.
    fn acting_client(&mut self, stream_client: ClientId, msg: &Value) -> ClientId {
        match msg.get("client").and_then(Value::as_str) {
            Some(name) if self.client_name(stream_client) != Some(name) => {
                let now = self.now;
                self.add_client(name, now)
            }
            _ => stream_client,
        }
    }

    /// Handle one op from a client's report stream.
    pub fn handle_client_op(
        &mut self,
        client: ClientId,
        msg: &Value,
        now: f64,
    ) -> Result<(), CoreError> {
        self.now = now;
        let op = op_name(msg)?;
        match op {
            "client-desires-keys" => {
                // Like Python, keys the scheduler does not know are ignored
                // (a placeholder would make later graphs wait on it forever).
                let ids = self.known_ids_field(op, msg, "keys")?;
                let who = self.acting_client(client, msg);
                self.client_desires(who, &ids);
            }
            "client-releases-keys" => {
                let ids = self.known_ids_field(op, msg, "keys")?;
                let who = self.acting_client(client, msg);
                let recs = self.client_releases_recs(who, &ids);
                self.transitions_named("client-releases-keys", recs);
            }
            "cancel-keys" => {
                let keys = keys_field(op, msg, "keys")?;
                let force = msg.get("force").is_some_and(Value::truthy);
                let reason = msg.get("reason").cloned().unwrap_or(Value::Nil);
                let text = msg.get("msg").cloned().unwrap_or(Value::Nil);
                self.cancel(client, &keys, force, reason, text);
            }
            "heartbeat-client" => {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.last_seen = now;
                }
                // Python: `heartbeat_interval(len(self.clients)) * 10` (clients,
                // fire-and-forget included; not workers).
                let interval = crate::queries::heartbeat_interval(self.clients.len()) * 10.0;
                self.outbox.push(Outgoing::Client(
                    client,
                    messages::adjust_heartbeat_interval(interval),
                ));
            }
            "subscribe-topic" | "unsubscribe-topic" => {
                let topic = msg
                    .get("topic")
                    .and_then(Value::as_str)
                    .ok_or_else(|| CoreError::malformed(op, "missing 'topic'"))?
                    .to_string();
                let subs = self.subscriptions.entry(topic).or_default();
                if op == "subscribe-topic" {
                    subs.insert(client);
                } else {
                    subs.remove(&client);
                }
            }
            "report-key" => {
                let key = msg
                    .get("key")
                    .ok_or_else(|| CoreError::malformed(op, "missing 'key'"))
                    .and_then(|k| {
                        Key::from_value(k).map_err(|e| CoreError::malformed(op, e.to_string()))
                    })?;
                match self.task_id(&key) {
                    Some(id) => self.report_to_client(client, id),
                    None => self.outbox.push(Outgoing::Client(
                        client,
                        messages::cancelled_keys(vec![key.to_value()], None),
                    )),
                }
            }
            "update-data" => {
                let who = self.acting_client(client, msg);
                let (who_has, nbytes) = crate::ops_worker::parse_who_has_nbytes(op, msg)?;
                self.update_data(Some(who), &who_has, &nbytes);
            }
            "publish_flush_batched_send" => {
                let uid = msg
                    .get("uid")
                    .and_then(Value::as_str)
                    .ok_or_else(|| CoreError::malformed(op, "missing 'uid'"))?;
                self.publish_flushed(uid);
            }
            "variable-future-received-confirm" => {
                let name = key_of(op, msg, "name")?;
                let key = key_of(op, msg, "key")?;
                let token = msg.get("token").and_then(Value::as_str).unwrap_or("");
                let who = self.acting_client(client, msg);
                self.variable_confirm(who, name, key, token);
            }
            "queue-future-release" => {
                let name = key_of(op, msg, "name")?;
                let key = key_of(op, msg, "key")?;
                let who = self.acting_client(client, msg);
                self.queue_future_release(who, name, key);
            }
            "queue_release" => {
                let name = key_of(op, msg, "name")?;
                self.queue_release(&name);
            }
            "variable_delete" => {
                let name = key_of(op, msg, "name")?;
                self.variable_delete(&name);
            }
            other => return Err(CoreError::UnknownOp(other.to_string())),
        }
        Ok(())
    }

    /// Send `client` the current outcome of a task (memory or erred), if any.
    pub(crate) fn report_to_client(&mut self, client: ClientId, id: TaskId) {
        let t = self.task(id);
        let msg = match t.state {
            TaskState::Memory => messages::key_in_memory(t.key.to_value(), self.result_type_of(id)),
            TaskState::Erred => self.task_erred_msg(id),
            _ => return,
        };
        self.outbox.push(Outgoing::Client(client, msg));
    }

    /// `cancel-keys`: stop the keys (and their dependents) nobody else wants.
    pub fn cancel(
        &mut self,
        client: ClientId,
        keys: &[Key],
        force: bool,
        reason: Value,
        text: Value,
    ) {
        let mut cancelled = Vec::new();
        let mut releasers = Vec::new();
        self.collect_cancel(client, keys, force, &mut cancelled, &mut releasers);
        let key_values: Vec<Value> = cancelled
            .iter()
            .map(|id| self.task(*id).key.to_value())
            .collect();
        releasers.sort_unstable();
        releasers.dedup();
        for c in releasers {
            let live: Vec<TaskId> = cancelled
                .iter()
                .copied()
                .filter(|&id| self.exists(id))
                .collect();
            self.client_releases(c, &live);
        }
        let msg = Value::map([
            ("op", Value::str("cancelled-keys")),
            ("keys", Value::Array(key_values)),
            ("reason", reason),
            ("msg", text),
        ]);
        let clients: Vec<ClientId> = self.clients.keys().copied().collect();
        for c in clients {
            self.outbox.push(Outgoing::Client(c, msg.clone()));
        }
    }

    fn collect_cancel(
        &mut self,
        client: ClientId,
        keys: &[Key],
        force: bool,
        cancelled: &mut Vec<TaskId>,
        releasers: &mut Vec<ClientId>,
    ) {
        for key in keys {
            let Some(id) = self.task_id(key) else {
                continue;
            };
            let t = self.task(id);
            if t.who_wants.is_empty() {
                continue;
            }
            if force || t.who_wants.as_slice() == [client] {
                let dependents: Vec<Key> = t
                    .dependents
                    .iter()
                    .map(|d| self.task(*d).key.clone())
                    .collect();
                if !dependents.is_empty() {
                    self.collect_cancel(client, &dependents, force, cancelled, releasers);
                }
                if !cancelled.contains(&id) {
                    cancelled.push(id);
                }
            }
            if force {
                releasers.extend(self.task(id).who_wants.iter().copied());
            } else {
                releasers.push(client);
            }
        }
    }
}

/// The key (or key-like name) in `msg[field]`.
pub fn key_of(op: &str, msg: &Value, field: &str) -> Result<Key, CoreError> {
    let v = msg
        .get(field)
        .ok_or_else(|| CoreError::malformed(op, format!("missing '{field}'")))?;
    Key::from_value(v).map_err(|e| CoreError::malformed(op, e.to_string()))
}
