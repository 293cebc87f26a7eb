//! Test harness for driving `dask_core::State` through its public API only.
//!
//! [`Sim`] owns a scheduler, a clock and a log of everything the scheduler sent.
//! Helpers register workers, submit graphs, and answer `compute-task`
//! messages the way a Dask worker would (`task-finished` / `task-erred`), so
//! tests read as short scenarios. After every stimulus [`Sim::check`] verifies
//! the cross-consistency of the public views (`who_has`, `has_what`,
//! `processing`, task states).

#![allow(dead_code)]

use bytes::Bytes;
use dask_core::{
    ClientId, Config, GraphSubmission, GraphTask, Outgoing, State, TaskState, WorkerId,
    WorkerRegistration,
};
use dask_wire::{Key, Opaque, OpaqueKind, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A string key.
pub fn k(s: &str) -> Key {
    Key::from_str_key(s)
}

/// A tuple key `(name, i)`.
pub fn tk(name: &str, i: i64) -> Key {
    Key::from_value(&Value::Array(vec![Value::str(name), Value::Int(i)])).unwrap()
}

/// The key as a plain (decoded) message value, like a peer would send it.
pub fn kv(key: &Key) -> Value {
    key.decoded()
}

/// Decode a key field of an outgoing message (keys go out pre-encoded as `Raw`).
pub fn key_of(v: &Value) -> Key {
    match v {
        Value::Raw(b) => Key::from_value(&dask_wire::msgpack::decode(b).unwrap()).unwrap(),
        other => Key::from_value(other).unwrap(),
    }
}

/// Decode a list of keys.
pub fn keys_of(v: &Value) -> Vec<Key> {
    v.as_seq()
        .unwrap_or_else(|| panic!("not a list of keys: {v:?}"))
        .iter()
        .map(key_of)
        .collect()
}

/// A decoded map with keys as `Key`s (for `who_has` / `nbytes` style maps).
pub fn key_map(v: &Value) -> BTreeMap<Key, Value> {
    v.as_map()
        .unwrap_or_else(|| panic!("not a map: {v:?}"))
        .iter()
        .map(|(k, v)| (key_of(k), v.clone()))
        .collect()
}

/// The `op` of a message.
pub fn op(v: &Value) -> &str {
    v.get("op")
        .and_then(Value::as_str_key)
        .expect("message has an op")
}

/// Field names of a message map, in order.
pub fn field_names(v: &Value) -> Vec<String> {
    v.as_map()
        .expect("message is a map")
        .iter()
        .map(|(k, _)| k.as_str_key().expect("string field name").to_string())
        .collect()
}

/// A run spec: an opaque pickle the scheduler never looks into.
pub fn run_spec() -> Opaque {
    Opaque {
        kind: OpaqueKind::Pickled,
        header: Bytes::from_static(b"\x81\xaenum-sub-frames\x00"),
        frames: vec![],
    }
}

/// An opaque exception object as a worker sends it in `task-erred`.
pub fn exception(tag: &'static str) -> Value {
    Value::Opaque(Box::new(Opaque {
        kind: OpaqueKind::Serialized,
        header: Bytes::from_static(b"\x81\xaenum-sub-frames\x01"),
        frames: vec![Bytes::from_static(tag.as_bytes())],
    }))
}

/// Builder for one graph task.
#[derive(Clone)]
pub struct T {
    pub key: Key,
    pub deps: Vec<Key>,
    pub order: Option<i64>,
    pub annotations: Vec<(String, Value)>,
    pub data_producer: bool,
}

/// A task with string key and string-key dependencies.
pub fn t(key: &str, deps: &[&str]) -> T {
    T {
        key: k(key),
        deps: deps.iter().map(|d| k(d)).collect(),
        order: None,
        annotations: Vec::new(),
        data_producer: false,
    }
}

impl T {
    pub fn order(mut self, o: i64) -> T {
        self.order = Some(o);
        self
    }
    pub fn ann(mut self, name: &str, v: Value) -> T {
        self.annotations.push((name.to_string(), v));
        self
    }
    pub fn producer(mut self) -> T {
        self.data_producer = true;
        self
    }
    pub fn keyed(key: Key, deps: Vec<Key>) -> T {
        T {
            key,
            deps,
            order: None,
            annotations: Vec::new(),
            data_producer: false,
        }
    }
}

/// A worker registration with the usual defaults.
/// Two one-thread workers, `tcp://127.0.0.1:1` and `:2`, and task `d`
/// computed on the first with a result of `nbytes` bytes: the set-up of
/// the transfer-cost tests.
pub fn two_workers_with_d_on_the_first(sim: &mut Sim, nbytes: i64) -> (WorkerId, WorkerId) {
    let a = sim.worker("tcp://127.0.0.1:1", 1);
    let b = sim.worker("tcp://127.0.0.1:2", 1);
    let addr_a = sim.addr(a);
    sim.submit(
        &["d"],
        vec![t("d", &[]).ann("workers", workers_ann(&[&addr_a]))],
    );
    let c = sim.one_compute();
    sim.finish_with(a, &c.key, c.run_id, nbytes);
    (a, b)
}

/// A `workers` annotation (restrictions) naming `specs`.
pub fn workers_ann(specs: &[&str]) -> Value {
    Value::Array(specs.iter().map(|s| Value::str(*s)).collect())
}

pub fn registration(addr: &str, nthreads: u32) -> WorkerRegistration {
    WorkerRegistration::new(addr, nthreads)
}

/// A `compute-task` as seen by a worker.
#[derive(Debug, Clone)]
pub struct Compute {
    pub worker: WorkerId,
    pub key: Key,
    pub run_id: i64,
    pub msg: Value,
}

impl Compute {
    pub fn priority(&self) -> Vec<f64> {
        self.msg
            .get("priority")
            .and_then(Value::as_seq)
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }
    pub fn who_has(&self) -> BTreeMap<Key, Vec<String>> {
        key_map(self.msg.get("who_has").unwrap())
            .into_iter()
            .map(|(k, v)| {
                let addrs = v
                    .as_seq()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str_key().unwrap().to_string())
                    .collect();
                (k, addrs)
            })
            .collect()
    }
}

/// The simulation: scheduler, clock, one default client, sent-message log.
pub struct Sim {
    pub s: State,
    pub now: f64,
    pub client: ClientId,
    /// Messages produced and not yet taken by a test.
    pub pending: Vec<Outgoing>,
    next_order: i64,
}

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}

/// A worker's `task-finished` for `key` (run `run_id`, `nbytes` bytes),
/// its compute ending at `now`, as `distributed` sends it.
pub fn task_finished_msg(key: &Key, run_id: i64, nbytes: i64, now: f64) -> Value {
    Value::map([
        ("op", Value::str("task-finished")),
        ("key", kv(key)),
        ("run_id", Value::Int(run_id)),
        ("nbytes", Value::Int(nbytes)),
        ("type", Value::Bin(Bytes::from_static(b"pickled-int"))),
        ("typename", Value::str("int")),
        ("metadata", Value::Map(vec![])),
        ("thread", Value::Int(1)),
        (
            "startstops",
            Value::Array(vec![Value::map([
                ("action", Value::str("compute")),
                ("start", Value::Float(now - 0.01)),
                ("stop", Value::Float(now)),
            ])]),
        ),
        ("stimulus_id", Value::str("task-finished-test")),
        ("status", Value::str("OK")),
    ])
}

/// `msg` (a `task-finished` op map) read the way the server reads a
/// worker's bytes: encoded, then [`dask_core::TaskFinished::decode`]d.
pub fn decode_task_finished(msg: &Value) -> dask_core::TaskFinished {
    let bytes = Bytes::from(dask_wire::msgpack::encode(msg));
    dask_core::TaskFinished::decode(&bytes)
        .expect("valid msgpack")
        .expect("an op map")
}

/// `msg` (an op map) with its `name` entry's value replaced by `value`.
pub fn with_field(mut msg: Value, name: &str, value: Value) -> Value {
    let Value::Map(entries) = &mut msg else {
        panic!("not an op map: {msg:?}");
    };
    let entry = entries
        .iter_mut()
        .find(|(k, _)| k.as_str_key() == Some(name))
        .unwrap_or_else(|| panic!("no {name} field"));
    entry.1 = value;
    msg
}

impl Sim {
    pub fn new() -> Sim {
        Sim::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Sim {
        let mut s = State::new(config);
        let client = s.add_client("Client-1", 0.0);
        Sim {
            s,
            now: 1.0,
            client,
            pending: Vec::new(),
            next_order: 0,
        }
    }

    /// Advance the clock.
    pub fn tick(&mut self, dt: f64) {
        self.now += dt;
    }

    /// Move the scheduler's outbox into `pending` and check invariants.
    /// Ops the scheduler encoded where it built them (`compute-task`) are
    /// decoded, as a worker would, so tests read every op as a tree.
    pub fn drain(&mut self) {
        let out = self.s.take_outbox();
        self.pending.extend(out.into_iter().map(decode_encoded));
        self.check();
    }

    pub fn add_client(&mut self, name: &str) -> ClientId {
        self.s.add_client(name, self.now)
    }

    /// Register a worker and send `worker-status-change: running` like a real one.
    pub fn worker(&mut self, addr: &str, nthreads: u32) -> WorkerId {
        self.worker_reg(registration(addr, nthreads))
    }

    /// Register a worker from a custom registration (then make it running).
    pub fn worker_reg(&mut self, reg: WorkerRegistration) -> WorkerId {
        let id = self
            .s
            .add_worker(reg, self.now)
            .expect("registration accepted");
        self.drain();
        self.status(id, "running");
        id
    }

    /// A worker with resources.
    pub fn worker_res(&mut self, addr: &str, nthreads: u32, res: &[(&str, f64)]) -> WorkerId {
        let mut reg = registration(addr, nthreads);
        reg.resources = res.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        self.worker_reg(reg)
    }

    pub fn status(&mut self, w: WorkerId, status: &str) {
        self.wop(
            w,
            Value::map([
                ("op", Value::str("worker-status-change")),
                ("status", Value::str(status)),
                ("stimulus_id", Value::str("test")),
            ]),
        )
        .unwrap();
    }

    /// Send a worker op.
    pub fn wop(&mut self, w: WorkerId, msg: Value) -> Result<(), dask_core::CoreError> {
        let r = self.s.handle_worker_op(w, &msg, self.now);
        self.drain();
        r
    }

    /// Send a client op from the default client.
    pub fn cop(&mut self, msg: Value) -> Result<(), dask_core::CoreError> {
        let c = self.client;
        self.cop_as(c, msg)
    }

    pub fn cop_as(&mut self, c: ClientId, msg: Value) -> Result<(), dask_core::CoreError> {
        let r = self.s.handle_client_op(c, &msg, self.now);
        self.drain();
        r
    }

    fn graph_task(&mut self, t: T) -> GraphTask {
        let order = t.order.unwrap_or_else(|| {
            self.next_order += 1;
            self.next_order
        });
        GraphTask {
            key: t.key,
            dependencies: t.deps,
            dependency_positions: Vec::new(),
            run_spec: run_spec().into(),
            order,
            annotations: Value::map(t.annotations),
            data_producer: t.data_producer,
        }
    }

    /// Submit a graph for the default client (fifo_timeout 100 ms).
    pub fn submit(&mut self, requested: &[&str], tasks: Vec<T>) {
        let c = self.client;
        let requested = requested.iter().map(|r| k(r)).collect();
        self.submit_keys(c, requested, tasks, 0.1);
    }

    pub fn submit_as(&mut self, c: ClientId, requested: &[&str], tasks: Vec<T>) {
        let requested = requested.iter().map(|r| k(r)).collect();
        self.submit_keys(c, requested, tasks, 0.1);
    }

    pub fn submit_keys(&mut self, c: ClientId, requested: Vec<Key>, tasks: Vec<T>, fifo: f64) {
        self.next_order = 0;
        let tasks = tasks.into_iter().map(|t| self.graph_task(t)).collect();
        let g = GraphSubmission {
            requested,
            tasks,
            fifo_timeout: fifo,
            actors: Vec::new(),
            timings: None,
        };
        self.s.update_graph(c, g, self.now);
        self.drain();
    }

    /// Submit `tasks` with `actors` as the requested keys, run as actors
    /// (`client.submit(Cls, actor=True)`).
    pub fn submit_actors(&mut self, actors: &[&str], tasks: Vec<T>) {
        self.next_order = 0;
        let tasks = tasks.into_iter().map(|t| self.graph_task(t)).collect();
        let requested: Vec<Key> = actors.iter().map(|a| k(a)).collect();
        let g = GraphSubmission {
            requested: requested.clone(),
            tasks,
            fifo_timeout: 0.1,
            actors: requested,
            timings: None,
        };
        self.s.update_graph(self.client, g, self.now);
        self.drain();
    }

    /// Take every pending message.
    pub fn take(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.pending)
    }

    /// Forget every pending message.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Take pending messages for worker `w` (others stay pending).
    pub fn take_worker(&mut self, w: WorkerId) -> Vec<Value> {
        let mut out = Vec::new();
        self.pending.retain(|m| match m {
            Outgoing::Worker(id, v) if *id == w => {
                out.push(v.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// Take pending messages for client `c` (others stay pending).
    pub fn take_client(&mut self, c: ClientId) -> Vec<Value> {
        let mut out = Vec::new();
        self.pending.retain(|m| match m {
            Outgoing::Client(id, v) if *id == c => {
                out.push(v.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// Take the default client's messages.
    pub fn client_msgs(&mut self) -> Vec<Value> {
        let c = self.client;
        self.take_client(c)
    }

    /// Client messages as `(op, key)` pairs (for single-key ops) or `(op, keys...)`.
    pub fn client_events(&mut self, c: ClientId) -> Vec<(String, Vec<Key>)> {
        self.take_client(c)
            .into_iter()
            .map(|m| {
                let keys = match (m.get("key"), m.get("keys")) {
                    (Some(key), _) => vec![key_of(key)],
                    (_, Some(keys)) => keys_of(keys),
                    _ => vec![],
                };
                (op(&m).to_string(), keys)
            })
            .collect()
    }

    /// Take all pending `compute-task` messages (any worker), in send order.
    pub fn computes(&mut self) -> Vec<Compute> {
        let mut out = Vec::new();
        self.pending.retain(|m| match m {
            Outgoing::Worker(w, v) if op(v) == "compute-task" => {
                out.push(Compute {
                    worker: *w,
                    key: key_of(v.get("key").unwrap()),
                    run_id: v.get("run_id").unwrap().as_i64().unwrap(),
                    msg: v.clone(),
                });
                false
            }
            _ => true,
        });
        out
    }

    /// Take the single pending `compute-task`, asserting there is exactly one.
    pub fn one_compute(&mut self) -> Compute {
        let mut c = self.computes();
        assert_eq!(c.len(), 1, "expected one compute-task, got {c:?}");
        c.pop().unwrap()
    }

    /// Take pending `free-keys` as `(worker, keys)`.
    pub fn free_keys(&mut self) -> Vec<(WorkerId, Vec<Key>)> {
        let mut out = Vec::new();
        self.pending.retain(|m| match m {
            Outgoing::Worker(w, v) if op(v) == "free-keys" => {
                out.push((*w, keys_of(v.get("keys").unwrap())));
                false
            }
            _ => true,
        });
        out
    }

    /// Keys freed on a given worker (taking those messages).
    pub fn freed_on(&mut self, w: WorkerId) -> BTreeSet<Key> {
        self.free_keys()
            .into_iter()
            .filter(|(id, _)| *id == w)
            .flat_map(|(_, ks)| ks)
            .collect()
    }

    /// A worker reports success for a `compute-task`.
    pub fn finish(&mut self, c: &Compute) {
        self.finish_with(c.worker, &c.key, c.run_id, 100);
    }

    pub fn finish_with(&mut self, w: WorkerId, key: &Key, run_id: i64, nbytes: i64) {
        let msg = task_finished_msg(key, run_id, nbytes, self.now);
        self.wop(w, msg).unwrap();
    }

    /// Worker `w` reports `tf` through the typed path the server uses
    /// (`State::handle_task_finished`); the answers are drained.
    pub fn finish_typed(&mut self, w: WorkerId, tf: &dask_core::TaskFinished) {
        self.s.handle_task_finished(w, tf, self.now).unwrap();
        self.drain();
    }

    /// A worker reports failure for a `compute-task`.
    pub fn fail(&mut self, c: &Compute, exc: Value) {
        self.wop(
            c.worker,
            Value::map([
                ("op", Value::str("task-erred")),
                ("key", kv(&c.key)),
                ("run_id", Value::Int(c.run_id)),
                ("exception", exc),
                ("traceback", Value::Nil),
                ("exception_text", Value::str("ZeroDivisionError()")),
                ("traceback_text", Value::str("")),
                ("thread", Value::Int(1)),
                ("startstops", Value::Array(vec![])),
                ("stimulus_id", Value::str("task-erred-test")),
            ]),
        )
        .unwrap();
    }

    /// Answer every pending `compute-task` with success until none are left;
    /// returns the keys in the order they ran.
    /// The default client releases `keys` (`client-releases-keys`); the
    /// outbox is drained.
    pub fn release(&mut self, keys: &[&str]) {
        let keys = keys.iter().map(|n| kv(&k(n))).collect();
        self.cop(Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(keys)),
            ("client", Value::str("Client-1")),
        ]))
        .unwrap();
        self.drain();
    }

    /// Put `key` (of `nbytes`) in memory on the given workers, wanted by the client.
    pub fn place(&mut self, key: &str, addrs: &[&str], nbytes: i64) {
        let c = self.client;
        self.s.update_data(
            Some(c),
            &[(k(key), addrs.iter().map(|a| a.to_string()).collect())],
            &[(k(key), nbytes)],
        );
        self.drain();
    }

    pub fn run_all(&mut self) -> Vec<Key> {
        let mut ran = Vec::new();
        for _ in 0..10_000 {
            let cs = self.computes();
            if cs.is_empty() {
                return ran;
            }
            for c in cs {
                // Only answer if the assignment is still current.
                if self.s.task_state(&c.key) == Some(TaskState::Processing) {
                    ran.push(c.key.clone());
                    self.finish(&c);
                }
            }
        }
        panic!("run_all did not converge");
    }

    pub fn state(&self, key: &str) -> Option<TaskState> {
        self.s.task_state(&k(key))
    }

    /// Addresses holding `key`, from the `who_has` query.
    pub fn who_has(&self, key: &str) -> Vec<String> {
        let m = key_map(&self.s.who_has(Some(&[k(key)])));
        m.values()
            .next()
            .unwrap()
            .as_seq()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    pub fn addr(&self, w: WorkerId) -> String {
        self.s.worker_address(w).unwrap().to_string()
    }

    /// Cross-check the public views of the state.
    pub fn check(&self) {
        // who_has (all keys) vs has_what (all workers).
        let who_has = key_map(&self.s.who_has(None));
        assert_eq!(
            who_has.len(),
            self.s.task_count(),
            "who_has covers every task"
        );
        let mut from_who_has: BTreeSet<(String, Key)> = BTreeSet::new();
        for (key, addrs) in &who_has {
            let state = self.s.task_state(key).expect("known key");
            let addrs = addrs.as_seq().unwrap();
            if state == TaskState::Memory {
                assert!(!addrs.is_empty(), "{key:?} in memory without replicas");
            } else {
                assert!(addrs.is_empty(), "{key:?} {state:?} reports replicas");
            }
            for a in addrs {
                from_who_has.insert((a.as_str().unwrap().to_string(), key.clone()));
            }
            assert_ne!(state, TaskState::Forgotten, "forgotten task still known");
        }
        let mut from_has_what: BTreeSet<(String, Key)> = BTreeSet::new();
        for (addr, keys) in self.s.has_what(None).as_map().unwrap() {
            for key in keys_of(keys) {
                let state = self.s.task_state(&key);
                assert_eq!(
                    state,
                    Some(TaskState::Memory),
                    "has_what lists {key:?} in state {state:?}"
                );
                from_has_what.insert((addr.as_str().unwrap().to_string(), key));
            }
        }
        assert_eq!(from_who_has, from_has_what, "who_has and has_what agree");

        // processing view vs task states.
        let mut processing: BTreeSet<Key> = BTreeSet::new();
        for (_, keys) in self.s.processing(None).as_map().unwrap() {
            for key in keys_of(keys) {
                assert!(processing.insert(key.clone()), "{key:?} processing twice");
                assert_eq!(
                    self.s.task_state(&key),
                    Some(TaskState::Processing),
                    "processing() lists {key:?}"
                );
            }
        }
        let in_state: BTreeSet<Key> = self
            .s
            .tasks_in_state(TaskState::Processing)
            .into_iter()
            .collect();
        assert_eq!(processing, in_state, "processing tasks are on workers");
        if let Err(e) = self.s.validate_worker_accounting() {
            panic!("worker accounting: {e}");
        }
    }

    /// Keys in a state, sorted.
    pub fn in_state(&self, state: TaskState) -> BTreeSet<Key> {
        self.s.tasks_in_state(state).into_iter().collect()
    }
}

/// A set of string keys.
pub fn keyset(keys: &[&str]) -> BTreeSet<Key> {
    keys.iter().map(|s| k(s)).collect()
}

/// An outgoing message with an encoded op decoded into a tree.
pub fn decode_encoded(m: Outgoing) -> Outgoing {
    let decode = |v: Value| match v {
        Value::Encoded(e) => e.decode().expect("an encoded op decodes"),
        other => other,
    };
    match m {
        Outgoing::Worker(w, v) => Outgoing::Worker(w, decode(v)),
        Outgoing::Client(c, v) => Outgoing::Client(c, decode(v)),
    }
}

/// Tiny deterministic PRNG (xorshift64*), so randomised tests reproduce by
/// seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// A copy of one of `items`, `None` if there are none.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }
    /// One of `items` (which must not be empty).
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
