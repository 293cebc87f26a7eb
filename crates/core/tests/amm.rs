//! The Active Memory Manager's `ReduceReplicas`: extra replicas of a task
//! in memory go, from the fullest (or a paused) worker, never from a worker
//! running a dependent, never the last one; a worker's `add-keys` answer
//! reinstates a replica.

mod common;

use common::*;
use dask_core::amm::AmmRun;
use dask_core::{Config, WorkerId};
use dask_wire::Value;

const A: &str = "tcp://a:1";
const B: &str = "tcp://b:1";
const C: &str = "tcp://c:1";

/// The keys each worker was told to drop (`remove-replicas`).
fn removals(sim: &mut Sim, w: WorkerId) -> Vec<String> {
    sim.take_worker(w)
        .iter()
        .filter(|m| op(m) == "remove-replicas")
        .flat_map(|m| keys_of(m.get("keys").unwrap()))
        .map(|key| dask_core::coordination::key_label(&key))
        .collect()
}

fn run(sim: &mut Sim) -> AmmRun {
    let now = sim.now;
    let r = sim.s.amm_run_once(now);
    sim.drain();
    r
}

fn three_workers() -> (Sim, [WorkerId; 3]) {
    let mut sim = Sim::new();
    let ids = [sim.worker(A, 1), sim.worker(B, 1), sim.worker(C, 1)];
    sim.clear();
    (sim, ids)
}

#[test]
fn extra_replicas_leave_the_fullest_workers_and_one_always_stays() {
    let (mut sim, [a, b, c]) = three_workers();
    // b holds the most managed memory, then c
    sim.place("big-b", &[B], 1 << 30);
    sim.place("big-c", &[C], 1 << 20);
    sim.place("x", &[A, B, C], 100);
    sim.place("only-a", &[A], 100);
    sim.clear();

    assert_eq!(
        run(&mut sim),
        AmmRun {
            tasks: 1,
            dropped: 2
        }
    );
    assert_eq!(sim.who_has("x"), vec![A.to_string()]);
    assert_eq!(removals(&mut sim, b), vec!["x".to_string()]);
    assert_eq!(removals(&mut sim, c), vec!["x".to_string()]);
    assert!(removals(&mut sim, a).is_empty());
    assert_eq!(sim.who_has("only-a"), vec![A.to_string()]);

    // nothing left to do: no message, and the task left the candidates
    assert_eq!(run(&mut sim), AmmRun::default());
    assert!(sim.take().is_empty());
}

#[test]
fn a_paused_worker_loses_its_replica_first() {
    let (mut sim, [a, b, _]) = three_workers();
    sim.place("big-a", &[A], 1 << 30);
    sim.place("x", &[A, B], 100);
    sim.status(b, "paused");
    sim.clear();
    assert_eq!(run(&mut sim).dropped, 1);
    assert_eq!(sim.who_has("x"), vec![A.to_string()]);
    assert!(removals(&mut sim, a).is_empty());
}

#[test]
fn replicas_next_to_running_dependents_stay() {
    let (mut sim, [a, b, c]) = three_workers();
    sim.place("big-a", &[A], 1 << 30);
    sim.place("x", &[A, B, C], 100);
    // one dependent, processing on a (the fullest): one replica is needed,
    // and it must be a's
    sim.submit(&["d"], vec![t("d", &["x"]).ann("workers", Value::str(A))]);
    let d = sim.one_compute();
    assert_eq!(d.worker, a);
    sim.clear();
    assert_eq!(run(&mut sim).dropped, 2);
    assert_eq!(sim.who_has("x"), vec![A.to_string()]);
    assert_eq!(removals(&mut sim, b), vec!["x".to_string()]);
    assert_eq!(removals(&mut sim, c), vec!["x".to_string()]);
}

#[test]
fn dependents_on_distinct_workers_keep_a_replica_each() {
    let (mut sim, [a, b, _]) = three_workers();
    sim.place("x", &[A, B, C], 100);
    sim.submit(
        &["d1", "d2"],
        vec![
            t("d1", &["x"]).ann("workers", Value::str(A)),
            t("d2", &["x"]).ann("workers", Value::str(B)),
        ],
    );
    let on: Vec<WorkerId> = sim.computes().iter().map(|c| c.worker).collect();
    assert_eq!(on.len(), 2);
    assert!(on.contains(&a) && on.contains(&b));
    sim.clear();
    assert_eq!(run(&mut sim).dropped, 1);
    let mut holders = sim.who_has("x");
    holders.sort();
    assert_eq!(holders, vec![A.to_string(), B.to_string()]);
}

#[test]
fn a_worker_that_refuses_gets_its_replica_back() {
    let (mut sim, [_, b, _]) = three_workers();
    sim.place("big-b", &[B], 1 << 30);
    sim.place("x", &[A, B], 100);
    sim.clear();
    run(&mut sim);
    assert_eq!(removals(&mut sim, b), vec!["x".to_string()]);
    // the worker still needed it: add-keys reinstates the replica
    sim.wop(
        b,
        Value::map([
            ("op", Value::str("add-keys")),
            ("keys", Value::Array(vec![Value::str("x")])),
            ("stimulus_id", Value::str("test")),
        ]),
    )
    .unwrap();
    sim.drain();
    let mut holders = sim.who_has("x");
    holders.sort();
    assert_eq!(holders, vec![A.to_string(), B.to_string()]);
    // and it is a candidate again
    assert_eq!(run(&mut sim).dropped, 1);
}

#[test]
fn released_tasks_are_forgotten_by_the_amm() {
    let (mut sim, _) = three_workers();
    sim.place("x", &[A, B], 100);
    sim.release(&["x"]);
    sim.clear();
    assert_eq!(sim.state("x"), None);
    assert_eq!(run(&mut sim), AmmRun::default());
    assert!(sim.take().is_empty());
}

#[test]
fn the_amm_starts_as_configured_and_can_be_stopped() {
    let sim = Sim::new();
    assert!(sim.s.amm_running());
    let mut config = Config::default();
    config.amm.start = false;
    let mut sim = Sim::with_config(config);
    assert!(!sim.s.amm_running());
    sim.s.set_amm_running(true);
    assert!(sim.s.amm_running());
}
