//! Transitions per second of the pure state machine on ~1M-task graphs.
//!
//! Not criterion: one iteration of a 1M-task graph takes seconds, so this
//! harness runs each shape five times (`--quick`: once, at ~1/4 the size)
//! and prints the median and range, plus one JSON line per shape (read by
//! `benches/run_all.py`). Five, not three: on a shared machine single runs
//! swing by ±20 %, and the median of five moves less.
//!
//! Each run: a client submits the already-materialized graph
//! (`update_graph`), 64 simulated one-thread workers answer every
//! `compute-task` in the outbox with a typed `task-finished` message (FIFO,
//! as a fast network would deliver them), then the client releases the
//! requested keys (`client-releases-keys`) so every task goes to
//! released/forgotten. Counted: `State::transition_counter()` over the run.
//! Each run also prints (stderr) how the time splits between `update_graph`,
//! the compute/finish loop and the release.
//! Not included: Python materialization, msgpack, sockets.
//!
//! Memory: before the timed runs, the independent graph is submitted once
//! more in a fresh state and the process's resident set is read before the
//! submission is built and after `update_graph` returns (`/proc/self/statm`);
//! the delta per task is printed as `rss_bytes_per_task_after_update_graph`
//! in the independent shape's JSON line. It includes the keys (built with
//! the submission in a `KeyArena`, as the server builds them, then held by
//! the tasks), the key map, the arena and the
//! run_spec boxes; the bench's run_spec payloads are one static buffer shared
//! by every task, so no run_spec payload bytes are in the delta (nothing to
//! subtract).
//!
//! Run: `cargo bench -p dask-core --bench scale` (`-- --quick`).

use dask_core::{ClientId, GraphSubmission, GraphTask, Outgoing, State, TaskFinished, WorkerId};
use dask_wire::{Key, KeyArena, Value};
use std::collections::VecDeque;
use std::time::Instant;

mod support;
use support::{compute_task_fields, run_spec, running_state, task_finished};

const N_WORKERS: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// n independent tasks (`client.map`).
    Independent,
    /// n/1000 chains of 1000 tasks.
    Chains,
    /// binary fan-in tree over n/2 leaves.
    Tree,
    /// butterfly all-to-all: p tasks per layer (a power of two), ~n/p layers, 2 deps each.
    Shuffle,
}

/// A task whose dependencies are earlier positions of the submission, as
/// the materializer gives a graph's internal dependencies.
fn task(key: Key, deps: Vec<u32>, order: i64) -> GraphTask {
    GraphTask {
        key,
        dependencies: Vec::new(),
        dependency_positions: deps,
        run_spec: run_spec().into(),
        order,
        annotations: Value::Map(vec![]),
        data_producer: false,
    }
}

fn graph(shape: Shape, n: usize) -> (Vec<GraphTask>, Vec<Key>) {
    // keys as the server makes them from a submission: packed in an arena
    let mut arena = KeyArena::new();
    let mut k = |s: String| arena.key_from_str(&s);
    let mut tasks = Vec::with_capacity(n + 16);
    let mut requested = Vec::new();
    let mut order = 0i64;
    let mut next = || {
        order += 1;
        order
    };
    match shape {
        Shape::Independent => {
            for i in 0..n {
                let key = k(format!("noop-{i}"));
                requested.push(key.clone());
                tasks.push(task(key, vec![], next()));
            }
        }
        Shape::Chains => {
            let len = 1000;
            for c in 0..n.div_ceil(len) {
                let mut prev: Option<(Key, u32)> = None;
                for i in 0..len {
                    let key = k(format!("chain-{c}-{i}"));
                    let deps = prev.take().map(|(_, p)| p).into_iter().collect();
                    prev = Some((key.clone(), tasks.len() as u32));
                    tasks.push(task(key, deps, next()));
                }
                requested.extend(prev.map(|(key, _)| key));
            }
        }
        Shape::Tree => {
            // (key, position) of each node of the current level
            let mut level: Vec<(Key, u32)> = (0..n / 2)
                .map(|i| (k(format!("leaf-{i}")), i as u32))
                .collect();
            for (key, _) in &level {
                tasks.push(task(key.clone(), vec![], next()));
            }
            let mut depth = 0;
            while level.len() > 1 {
                let mut up = Vec::with_capacity(level.len() / 2 + 1);
                for (j, pair) in level.chunks(2).enumerate() {
                    if pair.len() == 2 {
                        let key = k(format!("add-{depth}-{j}"));
                        up.push((key.clone(), tasks.len() as u32));
                        tasks.push(task(key, vec![pair[0].1, pair[1].1], next()));
                    } else {
                        up.push(pair[0].clone());
                    }
                }
                level = up;
                depth += 1;
            }
            requested = level.into_iter().map(|(key, _)| key).collect();
        }
        Shape::Shuffle => {
            // p = largest power of two <= n/16; as many layers as make ~n tasks
            let p = 1usize << (usize::BITS - 1 - (n / 16).max(2).leading_zeros());
            let layers = n / p - 1;
            let bits = p.trailing_zeros() as usize;
            let mut name = |l: usize, j: usize| k(format!("('bfly', {l}, {j})"));
            for j in 0..p {
                tasks.push(task(name(0, j), vec![], next()));
            }
            for l in 1..=layers {
                let b = 1usize << ((l - 1) % bits.max(1));
                for j in 0..p {
                    let at = |j: usize| ((l - 1) * p + j) as u32;
                    tasks.push(task(name(l, j), vec![at(j), at(j ^ b)], next()));
                }
            }
            requested = (0..p).map(|j| name(layers, j)).collect();
        }
    }
    (tasks, requested)
}

struct Run {
    tasks: usize,
    transitions: u64,
    seconds: f64,
}

fn setup() -> (State, ClientId) {
    running_state(N_WORKERS, 1)
}

fn run(shape: Shape, n: usize) -> Run {
    let (mut state, client) = setup();
    let (tasks, requested) = graph(shape, n);
    let n_tasks = tasks.len();
    let release = Value::map([
        ("op", Value::str("client-releases-keys")),
        (
            "keys",
            Value::Array(requested.iter().map(Key::decoded).collect()),
        ),
        ("client", Value::str("Client-bench")),
    ]);
    let sub = GraphSubmission {
        requested,
        tasks,
        fifo_timeout: 0.1,
        actors: Vec::new(),
        timings: None,
    };
    let t0 = Instant::now();
    let c0 = state.transition_counter();
    let mut now = 1.0;
    state.update_graph(client, sub, now);
    let t_ug = t0.elapsed().as_secs_f64();
    let mut queue: VecDeque<(WorkerId, Value, i64)> = VecDeque::new();
    let mut finished = 0;
    // one message, its key, run_id and times rewritten for each finish: the
    // harness should not allocate a fresh message per task (what is timed is
    // the state machine, not building its input). It is the typed
    // `task-finished` the server reads from a worker's msgpack
    // (`TaskFinished::decode`; the decoding is the codec's share, measured
    // by the `worker-batch` group of the criterion bench).
    let mut msg = TaskFinished::from_value(&task_finished(Value::Nil, Value::Nil, now));
    loop {
        for m in state.drain_outbox() {
            if let Outgoing::Worker(w, v) = m {
                if let Some((key, run_id)) = compute_task_fields(&v) {
                    // the key as `TaskFinished::decode` gives it from a
                    // worker's message: its msgpack bytes
                    queue.push_back((w, Value::Raw(key), run_id));
                }
            }
        }
        let Some((w, key, run_id)) = queue.pop_front() else {
            break;
        };
        now += 1e-6;
        msg.key = Some(key);
        msg.run_id = Some(run_id);
        msg.startstops[0].start = now - 0.001;
        msg.startstops[0].stop = now;
        state
            .handle_task_finished(w, &msg, now)
            .expect("task-finished accepted");
        finished += 1;
    }
    assert_eq!(finished, n_tasks, "{shape:?}: not every task ran once");
    let t_loop = t0.elapsed().as_secs_f64();
    state
        .handle_client_op(client, &release, now)
        .expect("release accepted");
    state.take_outbox();
    let seconds = t0.elapsed().as_secs_f64();
    // where the time goes, per run (stderr: not parsed by run_all.py)
    eprintln!(
        "  {shape:?}: update_graph {t_ug:.3} s, compute/finish loop {:.3} s, release {:.3} s",
        t_loop - t_ug,
        seconds - t_loop
    );
    let transitions = state.transition_counter() - c0;
    // dropping a 1M-task state takes a while: outside the timing
    drop(state);
    Run {
        tasks: n_tasks,
        transitions,
        seconds,
    }
}

/// Resident set size of this process in bytes (`/proc/self/statm`, Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages on the Linux targets this bench runs on.
    Some(pages * 4096)
}

/// Resident bytes per task that `update_graph` of the independent n-task
/// graph adds (run_spec payloads excluded: they are a shared static buffer).
fn memory_per_task(n: usize) -> Option<f64> {
    let (mut state, client) = setup();
    // before the submission exists: its keys end up held by the tasks, and
    // the rest of it is freed inside `update_graph` (a baseline taken after
    // building it would subtract that from the state's growth)
    let before = rss_bytes()?;
    let (tasks, requested) = graph(Shape::Independent, n);
    // every task's run_spec is this fixture: a static header, no frames
    assert!(
        run_spec().frames.is_empty(),
        "the bench's run_spec payloads are static"
    );
    let n_tasks = tasks.len();
    let sub = GraphSubmission {
        requested,
        tasks,
        fifo_timeout: 0.1,
        actors: Vec::new(),
        timings: None,
    };
    state.update_graph(client, sub, 1.0);
    let after = rss_bytes()?;
    assert_eq!(state.task_count(), n_tasks);
    let per_task = after.saturating_sub(before) as f64 / n_tasks as f64;
    drop(state);
    Some(per_task)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, reps) = if quick { (250_000, 1) } else { (1_000_000, 5) };
    println!(
        "core scale bench: {n} tasks per graph, {N_WORKERS} workers, {reps} repetition(s); median (min-max)"
    );
    // `--shape NAME` runs one shape only (for profiling)
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--shape")
        .and_then(|i| args.get(i + 1).cloned());
    // measured first, while the heap is fresh (freed memory of earlier runs
    // would be reused and hide the growth)
    let mem = if only.as_ref().is_none_or(|o| o == "independent") {
        memory_per_task(n)
    } else {
        None
    };
    if let Some(m) = mem {
        println!(
            "memory       {n:>8} tasks  {m:>7.0} resident bytes per task after update_graph (independent; size_of::<Task>() = {})",
            std::mem::size_of::<dask_core::task::Task>()
        );
    }
    for shape in [
        Shape::Independent,
        Shape::Chains,
        Shape::Tree,
        Shape::Shuffle,
    ] {
        let name = format!("{shape:?}").to_lowercase();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let runs: Vec<Run> = (0..reps).map(|_| run(shape, n)).collect();
        let mut tps: Vec<f64> = runs
            .iter()
            .map(|r| r.transitions as f64 / r.seconds)
            .collect();
        tps.sort_by(f64::total_cmp);
        let mut secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        secs.sort_by(f64::total_cmp);
        let mid = reps / 2;
        let r0 = &runs[0];
        println!(
            "{:<12} {:>8} tasks {:>9} transitions  {:>7.3} s ({:.3}-{:.3})  {:>10.0} transitions/s ({:.0}-{:.0})  {:>9.0} tasks/s",
            format!("{shape:?}").to_lowercase(),
            r0.tasks,
            r0.transitions,
            secs[mid],
            secs[0],
            secs[reps - 1],
            tps[mid],
            tps[0],
            tps[reps - 1],
            r0.tasks as f64 / secs[mid],
        );
        let mem_field = match (shape, mem) {
            (Shape::Independent, Some(m)) => {
                format!(", \"rss_bytes_per_task_after_update_graph\": {m:.1}")
            }
            _ => String::new(),
        };
        println!(
            "JSON {{\"bench\": \"core-scale\", \"shape\": \"{}\", \"tasks\": {}, \"transitions\": {}, \"seconds_median\": {}, \"seconds_min\": {}, \"seconds_max\": {}, \"transitions_per_s_median\": {}, \"transitions_per_s_min\": {}, \"transitions_per_s_max\": {}, \"reps\": {}{mem_field}}}",
            format!("{shape:?}").to_lowercase(),
            r0.tasks,
            r0.transitions,
            secs[mid],
            secs[0],
            secs[reps - 1],
            tps[mid],
            tps[0],
            tps[reps - 1],
            reps
        );
    }
}
