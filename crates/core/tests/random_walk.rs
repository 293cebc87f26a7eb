//! Randomised scenarios: interleave graph submissions, worker answers
//! (success, failure, stale), worker churn, pauses, releases, cancels and
//! retries; check the public views stay consistent after every stimulus, that
//! everything wanted eventually completes, and that releasing everything
//! leaves nothing behind.

mod common;

use common::*;
use dask_core::{ClientId, Outgoing, TaskState, WorkerId};
use dask_wire::{Key, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Tiny deterministic PRNG (xorshift64*), so failures are reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A fake worker's view: the assignments it is working on.
#[derive(Default)]
struct FakeWorker {
    running: BTreeMap<Key, i64>,
}

struct World {
    sim: Sim,
    rng: Rng,
    workers: BTreeMap<WorkerId, FakeWorker>,
    clients: Vec<ClientId>,
    /// Keys each client holds futures for (as the client believes).
    futures: BTreeMap<ClientId, BTreeSet<Key>>,
    next_worker_port: u32,
    graphs: u32,
    /// Keys that should fail when run (without retries left).
    failing: BTreeSet<Key>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut sim = Sim::new();
        let c1 = sim.client;
        let c2 = sim.add_client("Client-2");
        let mut w = World {
            sim,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            workers: BTreeMap::new(),
            clients: vec![c1, c2],
            futures: BTreeMap::new(),
            next_worker_port: 1000,
            graphs: 0,
            failing: BTreeSet::new(),
        };
        for _ in 0..2 {
            w.add_worker();
        }
        w
    }

    fn add_worker(&mut self) {
        let port = self.next_worker_port;
        self.next_worker_port += 1;
        let threads = 1 + self.rng.below(3) as u32;
        let id = self.sim.worker(&format!("tcp://10.0.0.1:{port}"), threads);
        self.workers.insert(id, FakeWorker::default());
        self.deliver();
    }

    /// Route pending worker messages to the fake workers; drop client ones.
    fn deliver(&mut self) {
        let debug = std::env::var("WALK_DEBUG").is_ok();
        for m in self.sim.take() {
            if debug {
                let (to, v) = match &m {
                    Outgoing::Worker(w, v) => (format!("{w:?}"), v),
                    Outgoing::Client(c, v) => (format!("{c:?}"), v),
                };
                let keys: Vec<Key> = match (v.get("key"), v.get("keys")) {
                    (Some(key), _) => vec![key_of(key)],
                    (_, Some(keys)) if keys.as_seq().is_some() => keys_of(keys),
                    _ => vec![],
                };
                eprintln!("  -> {to} {} {keys:?} run_id={:?}", op(v), v.get("run_id"));
            }
            if let Outgoing::Worker(w, v) = m {
                let Some(fw) = self.workers.get_mut(&w) else {
                    continue;
                };
                match op(&v) {
                    "compute-task" => {
                        let key = key_of(v.get("key").unwrap());
                        let run_id = v.get("run_id").unwrap().as_i64().unwrap();
                        // Dependencies must be in memory somewhere.
                        for (dep, addrs) in key_map(v.get("who_has").unwrap()) {
                            assert!(
                                !addrs.as_seq().unwrap().is_empty(),
                                "compute-task {key:?} without replicas of {dep:?}"
                            );
                        }
                        fw.running.insert(key, run_id);
                    }
                    "free-keys" => {
                        for key in keys_of(v.get("keys").unwrap()) {
                            fw.running.remove(&key);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn submit(&mut self) {
        self.graphs += 1;
        let g = self.graphs;
        let client = self.clients[self.rng.below(self.clients.len())];
        let n = 1 + self.rng.below(8);
        let mut tasks: Vec<T> = Vec::new();
        let mut names = Vec::new();
        for i in 0..n {
            // Some keys are shared between graphs (dedup); most are fresh.
            let name = if self.rng.chance(15) {
                format!("shared-{}", self.rng.below(4))
            } else {
                format!("g{g}x-{i}")
            };
            if names.contains(&name) {
                continue;
            }
            let deps: Vec<String> = names
                .iter()
                .filter(|d: &&String| !d.starts_with("shared") && self.rng.chance(40))
                .cloned()
                .collect();
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            let mut task = t(
                &name,
                if name.starts_with("shared") {
                    &[]
                } else {
                    &deps
                },
            );
            if self.rng.chance(10) {
                task = task.ann("retries", Value::Int(1));
            }
            if self.rng.chance(5) {
                self.failing.insert(k(&name));
            }
            tasks.push(task);
            names.push(name);
        }
        let last = names.last().unwrap().clone();
        let mut requested = vec![last];
        if self.rng.chance(30) {
            requested.push(names[0].clone());
        }
        let refs: Vec<&str> = requested.iter().map(String::as_str).collect();
        self.sim.submit_as(client, &refs, tasks);
        // A client holds at most one future per key.
        let f = self.futures.entry(client).or_default();
        for r in &requested {
            f.insert(k(r));
        }
        self.deliver();
    }

    fn answer(&mut self) {
        let busy: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, fw)| !fw.running.is_empty())
            .map(|(w, _)| *w)
            .collect();
        if busy.is_empty() {
            return;
        }
        let w = busy[self.rng.below(busy.len())];
        let fw = self.workers.get_mut(&w).unwrap();
        let idx = self.rng.below(fw.running.len());
        let (key, run_id) = fw
            .running
            .iter()
            .nth(idx)
            .map(|(k, r)| (k.clone(), *r))
            .unwrap();
        fw.running.remove(&key);
        let c = Compute {
            worker: w,
            key: key.clone(),
            run_id,
            msg: Value::Nil,
        };
        if self.failing.contains(&key) || self.rng.chance(3) {
            self.sim.fail(&c, exception("E"));
        } else {
            let nbytes = 1 + self.rng.below(1000) as i64;
            self.sim.finish_with(w, &key, run_id, nbytes);
        }
        self.deliver();
    }

    fn stale_answer(&mut self) {
        let Some((&w, _)) = self.workers.iter().nth(self.rng.below(self.workers.len())) else {
            return;
        };
        let key = k(&format!(
            "g{}x-{}",
            1 + self.rng.below(self.graphs.max(1) as usize),
            self.rng.below(4)
        ));
        let run_id = self.rng.below(50) as i64;
        self.sim.finish_with(w, &key, run_id, 5);
        self.deliver();
    }

    fn remove_worker(&mut self) {
        if self.workers.len() <= 1 {
            return;
        }
        let w = *self
            .workers
            .keys()
            .nth(self.rng.below(self.workers.len()))
            .unwrap();
        self.workers.remove(&w);
        assert!(self.sim.s.remove_worker(w, self.sim.now));
        self.sim.drain();
        self.deliver();
    }

    fn toggle_pause(&mut self) {
        let w = *self
            .workers
            .keys()
            .nth(self.rng.below(self.workers.len()))
            .unwrap();
        let status = if self.rng.chance(50) {
            "paused"
        } else {
            "running"
        };
        self.sim.status(w, status);
        self.deliver();
    }

    fn release(&mut self) {
        let client = self.clients[self.rng.below(self.clients.len())];
        let held: Vec<Key> = self
            .futures
            .entry(client)
            .or_default()
            .iter()
            .cloned()
            .collect();
        if held.is_empty() {
            return;
        }
        let key = held[self.rng.below(held.len())].clone();
        self.futures.get_mut(&client).unwrap().remove(&key);
        self.sim
            .cop_as(
                client,
                Value::map([
                    ("op", Value::str("client-releases-keys")),
                    ("keys", Value::Array(vec![kv(&key)])),
                ]),
            )
            .unwrap();
        self.deliver();
    }

    fn cancel(&mut self) {
        let client = self.clients[self.rng.below(self.clients.len())];
        let held: Vec<Key> = self
            .futures
            .entry(client)
            .or_default()
            .iter()
            .cloned()
            .collect();
        if held.is_empty() {
            return;
        }
        let key = held[self.rng.below(held.len())].clone();
        self.sim
            .cop_as(
                client,
                Value::map([
                    ("op", Value::str("cancel-keys")),
                    ("keys", Value::Array(vec![kv(&key)])),
                    ("force", Value::Bool(false)),
                ]),
            )
            .unwrap();
        // The client drops every future the scheduler reports cancelled.
        for m in self.sim.take() {
            if let Outgoing::Client(c, v) = &m {
                if op(v) == "cancelled-keys" {
                    for key in keys_of(v.get("keys").unwrap()) {
                        self.futures.entry(*c).or_default().remove(&key);
                    }
                }
            }
            self.sim.pending.push(m);
        }
        self.deliver();
    }

    fn retry(&mut self) {
        let erred: Vec<Key> = self.sim.in_state(TaskState::Erred).into_iter().collect();
        if erred.is_empty() {
            return;
        }
        let key = erred[self.rng.below(erred.len())].clone();
        self.failing.clear();
        self.sim.s.retry(None, &[key], self.sim.now);
        self.sim.drain();
        self.deliver();
    }

    fn step(&mut self) {
        self.sim.tick(0.01 * self.rng.below(30) as f64);
        let r = self.rng.below(100);
        if let Ok(prefix) = std::env::var("WALK_DEBUG") {
            let states: Vec<String> = key_map(&self.sim.s.who_has(None))
                .into_iter()
                .filter(|(k, _)| k.to_string().starts_with(&prefix))
                .map(|(k, a)| format!("{k}={:?}@{a}", self.sim.s.task_state(&k).unwrap()))
                .collect();
            eprintln!("step {r} {states:?}");
        }
        match r {
            0..=14 => self.submit(),
            15..=64 => self.answer(),
            65..=67 => self.stale_answer(),
            68..=71 => self.remove_worker(),
            72..=75 => self.add_worker(),
            76..=80 => self.toggle_pause(),
            81..=88 => self.release(),
            89..=93 => self.cancel(),
            _ => self.retry(),
        }
    }

    /// Resume everything and answer every assignment successfully until quiet.
    fn settle(&mut self) {
        let ws: Vec<WorkerId> = self.workers.keys().copied().collect();
        for w in ws {
            self.sim.status(w, "running");
        }
        self.deliver();
        self.failing.clear();
        for _ in 0..100_000 {
            let pending: Vec<(WorkerId, Key, i64)> = self
                .workers
                .iter_mut()
                .flat_map(|(w, fw)| {
                    std::mem::take(&mut fw.running)
                        .into_iter()
                        .map(move |(k, r)| (*w, k, r))
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            for (w, key, run_id) in pending {
                self.sim.finish_with(w, &key, run_id, 10);
                self.deliver();
            }
        }
        panic!("did not settle");
    }
}

fn run_seed(seed: u64, steps: usize) {
    let mut world = World::new(seed);
    for _ in 0..steps {
        world.step();
    }
    world.settle();
    // Everything some client still wants has an outcome.
    for (c, keys) in &world.futures {
        for key in keys {
            let state = world.sim.s.task_state(key);
            assert!(
                matches!(state, Some(TaskState::Memory | TaskState::Erred)),
                "seed {seed}: client {c:?} wants {key:?} in state {state:?}"
            );
        }
    }
    assert!(world.sim.s.is_idle(), "seed {seed}: idle after settling");
    // Release everything: nothing may be left behind.
    for c in world.clients.clone() {
        world.sim.s.remove_client(c, world.sim.now);
        world.sim.drain();
        world.deliver();
    }
    assert_eq!(
        world.sim.s.task_count(),
        0,
        "seed {seed}: leftover tasks {:?}",
        key_map(&world.sim.s.who_has(None))
            .keys()
            .collect::<Vec<_>>()
    );
    for (_, keys) in world.sim.s.has_what(None).as_map().unwrap() {
        assert!(
            keys_of(keys).is_empty(),
            "seed {seed}: data left on workers"
        );
    }
}

#[test]
fn random_walks_stay_consistent() {
    for seed in 1..=300 {
        run_seed(seed, 150);
    }
}

#[test]
fn long_random_walks_stay_consistent() {
    for seed in 1000..1010 {
        run_seed(seed, 2000);
    }
}

#[test]
#[ignore]
fn debug_seed() {
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let steps: usize = std::env::var("STEPS").unwrap().parse().unwrap();
    run_seed(seed, steps);
}
