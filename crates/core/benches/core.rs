//! Criterion benchmark of the pure scheduler core (`dask_core::State`).
//!
//! Drives the state machine the way the server does, with no sockets: a client
//! submits an already-materialized graph (`update_graph`), fake workers answer
//! every `compute-task` in the outbox with a `task-finished` message (as a
//! decoded msgpack map; the server hands the core a typed `TaskFinished`
//! read straight from msgpack, which the `worker-batch` group measures), until
//! every task is in memory. Reported as tasks/second (criterion `Throughput::Elements`).
//!
//! What is inside the measured time: `update_graph`, every transition,
//! placement decision and outgoing message the scheduler builds, plus building
//! the `task-finished` maps (the fake workers' share, small and constant per
//! task). What is not: materializing the graph in Python, msgpack
//! encoding/decoding and the network.
//!
//! Run: `cargo bench -p dask-core --bench core` (add `-- --quick` for a
//! shorter run).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use dask_core::{ClientId, GraphSubmission, GraphTask, Outgoing, State, TaskFinished, WorkerId};
use dask_wire::{Key, Value};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

mod support;
use support::{compute_task_fields, run_spec, running_state, task_finished};

const N_WORKERS: usize = 4;
const NTHREADS: u32 = 1;

/// Graph shapes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `n` tasks without dependencies (like `client.map`).
    Independent,
    /// One chain of `n` tasks.
    Chain,
    /// `n` leaves reduced by a binary tree (`2n - 1` tasks).
    Tree,
}

fn graph(shape: Shape, n: usize) -> (Vec<GraphTask>, Vec<Key>) {
    // dependencies as positions in the submission, as the materializer
    // gives a graph's internal ones
    let mk = |key: Key, deps: Vec<u32>, order: i64| GraphTask {
        key,
        dependencies: Vec::new(),
        dependency_positions: deps,
        run_spec: run_spec().into(),
        order,
        annotations: Value::Map(vec![]),
        data_producer: false,
    };
    let mut tasks = Vec::new();
    let requested;
    match shape {
        Shape::Independent => {
            let keys: Vec<Key> = (0..n)
                .map(|i| Key::from_str_key(&format!("inc-{i}")))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                tasks.push(mk(k.clone(), vec![], i as i64));
            }
            requested = keys;
        }
        Shape::Chain => {
            let keys: Vec<Key> = (0..n)
                .map(|i| Key::from_str_key(&format!("chain-{i}")))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                let deps = if i == 0 { vec![] } else { vec![i as u32 - 1] };
                tasks.push(mk(k.clone(), deps, i as i64));
            }
            requested = vec![keys[n - 1].clone()];
        }
        Shape::Tree => {
            // (key, position) of each node of the current level
            let mut level: Vec<(Key, u32)> = (0..n)
                .map(|i| (Key::from_str_key(&format!("leaf-{i}")), i as u32))
                .collect();
            let mut order = 0;
            for (k, _) in &level {
                tasks.push(mk(k.clone(), vec![], order));
                order += 1;
            }
            let mut depth = 0;
            while level.len() > 1 {
                let mut next = Vec::new();
                for (j, pair) in level.chunks(2).enumerate() {
                    if pair.len() == 2 {
                        let k = Key::from_str_key(&format!("add-{depth}-{j}"));
                        next.push((k.clone(), tasks.len() as u32));
                        tasks.push(mk(k, vec![pair[0].1, pair[1].1], order));
                        order += 1;
                    } else {
                        next.push(pair[0].clone());
                    }
                }
                level = next;
                depth += 1;
            }
            requested = level.into_iter().map(|(k, _)| k).collect();
        }
    }
    (tasks, requested)
}

struct Fixture {
    state: State,
    client: ClientId,
    submission: Option<GraphSubmission>,
    /// canonical key bytes -> the key as a peer sends it (decoded msgpack)
    decoded: HashMap<Bytes, Value>,
    n_tasks: usize,
    now: f64,
}

fn fixture(shape: Shape, n: usize) -> Fixture {
    let (state, client) = running_state(N_WORKERS, NTHREADS);
    let (tasks, requested) = graph(shape, n);
    let decoded = tasks
        .iter()
        .map(|t| (t.key.as_bytes().clone(), t.key.decoded()))
        .collect();
    Fixture {
        state,
        client,
        n_tasks: tasks.len(),
        submission: Some(GraphSubmission {
            requested,
            tasks,
            fifo_timeout: 0.1,
            actors: Vec::new(),
            timings: None,
        }),
        decoded,
        now: 1.0,
    }
}

/// Submit the graph and answer compute-tasks until none are left; returns
/// the number of `task-finished` messages sent.
fn drive(f: &mut Fixture) -> usize {
    let sub = f.submission.take().expect("fresh fixture");
    f.state.update_graph(f.client, sub, f.now);
    let mut queue: VecDeque<(WorkerId, Bytes, i64)> = VecDeque::new();
    let mut finished = 0;
    loop {
        for m in f.state.drain_outbox() {
            if let Outgoing::Worker(w, v) = m {
                if let Some((key, run_id)) = compute_task_fields(&v) {
                    queue.push_back((w, key, run_id));
                }
            }
        }
        let Some((w, key, run_id)) = queue.pop_front() else {
            break;
        };
        let key = f.decoded.get(&key).cloned().expect("known key");
        f.now += 1e-5;
        f.state
            .handle_worker_op(w, &task_finished(key, Value::Int(run_id), f.now), f.now)
            .expect("task-finished accepted");
        finished += 1;
    }
    finished
}

fn bench_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    for (shape, n) in [
        (Shape::Independent, 1_000usize),
        (Shape::Independent, 20_000),
        (Shape::Chain, 1_000),
        (Shape::Chain, 20_000),
        (Shape::Tree, 1_000),
        (Shape::Tree, 10_000),
    ] {
        // sanity check outside the timing: every task runs exactly once
        let mut f = fixture(shape, n);
        let total = f.n_tasks;
        let done = drive(&mut f);
        assert_eq!(
            done, total,
            "{shape:?}/{n}: {done} of {total} tasks finished"
        );
        drop(f);
        group.throughput(Throughput::Elements(total as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{shape:?}").to_lowercase(), n),
            &(shape, n),
            |b, &(shape, n)| {
                b.iter_batched(
                    || fixture(shape, n),
                    |mut f| {
                        let done = drive(&mut f);
                        (done, f) // drop the state outside the timed routine
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
}

/// Reading a worker's batch of 1,000 `task-finished` ops, the two ways the
/// server can: decoded into `Value` maps and read from those
/// (`decode_message` + [`TaskFinished::from_value`]), or split into ops and
/// read straight from msgpack ([`dask_wire::split_ops`] +
/// [`TaskFinished::decode`], what the server does).
fn bench_worker_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("worker-batch");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    let n = 1000;
    let batch = Value::Array(
        (0..n)
            .map(|i| {
                let key = Value::str(format!("inc-5b4e2f0c9d1a7e3b8f6c2d4a1e9b7c3d-{i}"));
                task_finished(key, Value::Int(i as i64), 1_795_313_391.131_662_4)
            })
            .collect(),
    );
    let frames = dask_wire::encode_message(&batch);
    assert_eq!(frames.len(), 1);
    let body = frames[0].clone();
    let via_value = |body: &Bytes| -> Vec<TaskFinished> {
        match dask_wire::decode_message(std::slice::from_ref(body)).expect("decodes") {
            Value::Array(ops) => ops.iter().map(TaskFinished::from_value).collect(),
            _ => unreachable!(),
        }
    };
    let direct = |body: &Bytes| -> Vec<TaskFinished> {
        dask_wire::split_ops(body)
            .expect("splits")
            .iter()
            .map(|op| {
                TaskFinished::decode(&op.bytes)
                    .expect("decodes")
                    .expect("a map")
            })
            .collect()
    };
    let mut read = direct(&body);
    // the direct way also keeps each op's bytes (for the task stream), and
    // the key as its msgpack bytes (found by them); decoded, it is the same
    for t in &mut read {
        t.source = None;
        if let Some(Value::Raw(raw)) = &t.key {
            t.key = Some(dask_wire::msgpack::decode(raw).expect("a key's bytes decode"));
        }
    }
    assert_eq!(via_value(&body), read, "both ways read the same");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new("task-finished/via-value", n), |b| {
        b.iter(|| via_value(&body))
    });
    group.bench_function(BenchmarkId::new("task-finished/direct", n), |b| {
        b.iter(|| direct(&body))
    });
    group.finish();
}

criterion_group!(benches, bench_core, bench_worker_batch);
criterion_main!(benches);
