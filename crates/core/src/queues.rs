//! `distributed.Queue`: the scheduler-side state of Python's
//! `QueueExtension`.
//!
//! Why: clients and tasks pass futures and small values to each other
//! through named multi-producer, multi-consumer queues on the scheduler. A
//! future in a queue is held by the `queue-<name>` pseudo-client until a
//! getter confirms it holds it (`queue-future-release`). Waiting (a full
//! queue on put, an empty one on get) is the server's part: it tries again
//! after every change.

use crate::state::State;
use dask_wire::{Key, Value};
use std::collections::{HashMap, VecDeque};

/// An item of a queue.
#[derive(Debug, Clone)]
pub enum QueueItem {
    /// A future, by key.
    Future(Key),
    /// A msgpack-encodable value.
    Data(Value),
}

#[derive(Debug, Default)]
struct NamedQueue {
    /// 0: unbounded.
    maxsize: usize,
    items: VecDeque<QueueItem>,
    /// `Queue` objects created with this name and not yet released.
    refcount: u32,
}

/// Every queue, by name, and how many items of each queue name each key.
#[derive(Debug, Default)]
pub struct Queues {
    by_name: HashMap<Key, NamedQueue>,
    /// (queue name, key) → items of that queue naming the key that no
    /// getter has confirmed yet.
    future_refcount: HashMap<(Key, Key), u32>,
}

/// Python's `self.queues[name]` raises `KeyError(name)`.
fn unknown(name: &Key) -> String {
    crate::coordination::key_label(name)
}

impl State {
    /// `queue_create`: a new queue, or one more user of an existing one.
    pub fn queue_create(&mut self, name: Key, maxsize: usize) {
        let q = self
            .queues
            .by_name
            .entry(name)
            .or_insert_with(|| NamedQueue {
                maxsize,
                ..Default::default()
            });
        q.refcount += 1;
    }

    /// `queue_release` (stream op): one user fewer; the last one drops the
    /// queue and the futures in it.
    pub fn queue_release(&mut self, name: &Key) {
        let Some(q) = self.queues.by_name.get_mut(name) else {
            return;
        };
        q.refcount = q.refcount.saturating_sub(1);
        if q.refcount > 0 {
            return;
        }
        let Some(q) = self.queues.by_name.remove(name) else {
            return;
        };
        let holder = self.pseudo_client("queue", name);
        let mut ids = Vec::new();
        for item in q.items {
            if let QueueItem::Future(key) = item {
                self.queues
                    .future_refcount
                    .remove(&(name.clone(), key.clone()));
                ids.extend(self.task_id(&key));
            }
        }
        self.client_releases(holder, &ids);
    }

    /// One try at `queue_put`: false while the queue is full. An unknown
    /// queue is an error (Python's `KeyError`). A future's key must be
    /// known (the caller waits for it); it is held by the queue from now on.
    pub fn queue_try_put(&mut self, name: &Key, item: QueueItem) -> Result<bool, String> {
        let q = self.queues.by_name.get(name).ok_or_else(|| unknown(name))?;
        if q.maxsize > 0 && q.items.len() >= q.maxsize {
            return Ok(false);
        }
        if let QueueItem::Future(key) = &item {
            let Some(id) = self.task_id(key) else {
                return Err(format!("Task {} unknown to scheduler.", unknown(key)));
            };
            *self
                .queues
                .future_refcount
                .entry((name.clone(), key.clone()))
                .or_default() += 1;
            let holder = self.pseudo_client("queue", name);
            self.client_desires(holder, &[id]);
        }
        if let Some(q) = self.queues.by_name.get_mut(name) {
            q.items.push_back(item);
        }
        Ok(true)
    }

    /// One try at `queue_get`: the next item as the client expects it, or
    /// None while the queue is empty.
    pub fn queue_try_get(&mut self, name: &Key) -> Result<Option<Value>, String> {
        let q = self
            .queues
            .by_name
            .get_mut(name)
            .ok_or_else(|| unknown(name))?;
        let Some(item) = q.items.pop_front() else {
            return Ok(None);
        };
        Ok(Some(self.queue_record(item)))
    }

    /// `queue_get` with `batch=True`: every item in the queue now.
    pub fn queue_get_all(&mut self, name: &Key) -> Result<Vec<Value>, String> {
        let q = self
            .queues
            .by_name
            .get_mut(name)
            .ok_or_else(|| unknown(name))?;
        let items: Vec<QueueItem> = q.items.drain(..).collect();
        Ok(items.into_iter().map(|i| self.queue_record(i)).collect())
    }

    /// `queue_qsize`.
    pub fn queue_qsize(&self, name: &Key) -> Result<usize, String> {
        self.queues
            .by_name
            .get(name)
            .map(|q| q.items.len())
            .ok_or_else(|| unknown(name))
    }

    /// `queue-future-release` (stream op): `client` got the future `key`
    /// from the queue and holds it now; the queue lets go of it once no
    /// item of it is left unconfirmed.
    pub fn queue_future_release(&mut self, client: crate::ids::ClientId, name: Key, key: Key) {
        if let Some(id) = self.task_id(&key) {
            self.client_desires(client, &[id]);
        }
        let pair = (name, key);
        let Some(count) = self.queues.future_refcount.get_mut(&pair) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        self.queues.future_refcount.remove(&pair);
        let (name, key) = pair;
        let holder = self.pseudo_client("queue", &name);
        if let Some(id) = self.task_id(&key) {
            self.client_releases(holder, &[id]);
        }
    }

    /// The record a getter receives: `{"type": "msgpack", "value"}`, or a
    /// future's `{"type": "Future", "value": key, "state"}` (with the
    /// exception and traceback if it erred).
    fn queue_record(&self, item: QueueItem) -> Value {
        match item {
            QueueItem::Data(data) => Value::map([("type", Value::str("msgpack")), ("value", data)]),
            QueueItem::Future(key) => {
                let mut fields = vec![("type", Value::str("Future")), ("value", key.to_value())];
                fields.extend(self.future_state_fields(&key));
                Value::map(fields)
            }
        }
    }
}
