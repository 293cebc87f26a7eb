//! Observability counters kept by the core (`dask_core::stats`).

mod common;

use common::*;
use dask_core::stats::{state_index, Stats, TASK_STREAM_CAPACITY};
use dask_core::{TaskState, WorkerId};
use dask_wire::Value;

fn prefix_id(sim: &Sim, name: &str) -> u32 {
    (0..1000u32)
        .find(|i| sim.s.prefix_name(*i) == Some(name))
        .expect("prefix known")
}

#[test]
fn finished_tasks_count_states_durations_and_stream() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["inc-2"], vec![t("inc-1", &[]), t("inc-2", &["inc-1"])]);
    for _ in 0..2 {
        let c = sim.one_compute();
        sim.tick(1.0);
        sim.finish(&c);
    }
    let p = prefix_id(&sim, "inc");
    let counters = sim.s.stats().prefix(p);
    let totals = counters.state_totals;
    assert_eq!(totals[state_index(TaskState::Waiting)], 2);
    assert_eq!(totals[state_index(TaskState::Processing)], 2);
    assert_eq!(totals[state_index(TaskState::Memory)], 2);
    // inc-1 is released once inc-2 no longer needs it.
    assert_eq!(totals[state_index(TaskState::Released)], 1);
    // The Sim reports 10 ms of compute per task.
    assert!((counters.compute_seconds - 0.02).abs() < 1e-9);
    assert_eq!(counters.transfer_seconds, 0.0);

    let stream = sim.s.task_stream_since(0, 100);
    assert_eq!(stream.len(), 2);
    assert!(stream
        .iter()
        .all(|e| e.prefix == p && e.worker == w && e.action == "compute" && e.stop > e.start));
    assert_eq!(stream[0].seq + 1, stream[1].seq);
    assert_eq!(sim.s.task_stream_since(stream[1].seq, 100).len(), 1);

    let snap = sim.s.metrics_snapshot();
    assert_eq!(snap.tasks[state_index(TaskState::Memory)], 1);
    assert_eq!(snap.tasks[state_index(TaskState::Released)], 1);
    let ps = &snap.prefixes[p as usize];
    assert_eq!(ps.name, "inc");
    assert_eq!(ps.nbytes_in_memory, 100);
    assert_eq!(snap.workers.len(), 1);
    assert_eq!(snap.workers[0].in_memory, 1);
    assert_eq!(snap.workers_idle, 1);
}

#[test]
fn forgotten_tasks_count_while_their_group_lives() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 2);
    let c = sim.add_client("Client-2");
    sim.submit_as(c, &["x-1", "x-2"], vec![t("x-1", &[]), t("x-2", &[])]);
    for comp in sim.computes() {
        sim.finish(&comp);
    }
    sim.cop_as(
        c,
        Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(vec![kv(&k("x-1"))])),
            ("client", Value::str("Client-2")),
        ]),
    )
    .unwrap();
    let p = prefix_id(&sim, "x");
    let snap = sim.s.metrics_snapshot();
    // x-1 is forgotten, its group (x) still holds x-2: Python counts it.
    assert_eq!(snap.tasks[state_index(TaskState::Forgotten)], 1);
    assert_eq!(snap.tasks[state_index(TaskState::Memory)], 1);
    assert_eq!(snap.prefixes[p as usize].nbytes_in_memory, 100);

    let now = sim.now;
    sim.s.remove_client(c, now);
    assert_eq!(sim.s.task_count(), 0);
    let snap = sim.s.metrics_snapshot();
    // The group is gone with its last task, and with it the gauge's count;
    // the per-prefix state totals stay cumulative.
    assert_eq!(snap.tasks[state_index(TaskState::Forgotten)], 0);
    assert_eq!(
        snap.prefixes[p as usize].counters.state_totals[state_index(TaskState::Forgotten)],
        2
    );
    assert_eq!(snap.prefixes[p as usize].nbytes_in_memory, 0);
    // Client-1 from the Sim plus Client-2; Client-2 left.
    assert_eq!(snap.clients_added, 2);
    assert_eq!(snap.clients_removed, 1);
    assert_eq!(snap.clients, 1);
}

#[test]
fn losing_a_worker_counts_removal_and_suspicious_tasks() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["slow-1"], vec![t("slow-1", &[])]);
    let comp = sim.one_compute();
    assert_eq!(comp.worker, a);
    let now = sim.now;
    assert!(sim.s.remove_worker(a, now));
    sim.drain();
    let snap = sim.s.metrics_snapshot();
    assert_eq!(snap.workers_added, 1);
    assert_eq!(snap.workers_removed, 1);
    let p = prefix_id(&sim, "slow");
    assert_eq!(snap.prefixes[p as usize].counters.suspicious, 1);
    // With no worker left the task waits for one.
    assert_eq!(snap.tasks[state_index(TaskState::NoWorker)], 1);
    assert!(snap.desired_workers >= 1);
}

#[test]
fn task_stream_is_bounded() {
    let mut stats = Stats::default();
    for i in 0..(TASK_STREAM_CAPACITY + 10) {
        stats.push_task_stream(0, WorkerId(0), "compute", i as f64, i as f64 + 1.0);
    }
    assert_eq!(stats.task_stream.len(), TASK_STREAM_CAPACITY);
    assert_eq!(stats.task_stream.front().unwrap().seq, 10);
    assert_eq!(stats.task_stream_next, (TASK_STREAM_CAPACITY + 10) as u64);
}
