//! Actors (`actor=True`): marked from `update-graph`, sent with
//! `compute-task.actor`, placed by actor count, never stolen, queued or
//! moved by a retirement, and failed (not recomputed) when their worker goes.

mod common;

use common::*;
use dask_core::retire::RetireProgress;
use dask_core::TaskState;
use dask_wire::Value;

fn actor_flag(c: &Compute) -> Option<bool> {
    match c.msg.get("actor") {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// Two workers, and an actor `counter` computed on one of them (its
/// `compute-task` is returned).
fn counter_in_memory() -> (Sim, Compute) {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.worker("tcp://b:1", 1);
    sim.submit_actors(&["counter"], vec![t("counter", &[])]);
    let c = sim.one_compute();
    sim.finish(&c);
    (sim, c)
}

#[test]
fn actors_go_to_the_worker_with_fewest_actors_and_the_worker_is_told() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 4);
    let b = sim.worker("tcp://b:1", 4);
    // a's plain data would pull an ordinary dependent to a
    sim.place("data", &["tcp://a:1"], 1 << 30);
    let mut workers = Vec::new();
    for name in ["counter-1", "counter-2", "counter-3", "counter-4"] {
        sim.submit_actors(&[name], vec![t(name, &["data"])]);
        let c = sim.one_compute();
        assert_eq!(actor_flag(&c), Some(true), "{:?}", c.msg);
        workers.push(c.worker);
        sim.finish(&c);
        assert_eq!(sim.state(name), Some(TaskState::Memory));
    }
    assert_eq!(
        workers.iter().filter(|w| **w == a).count(),
        2,
        "{workers:?}"
    );
    assert_eq!(
        workers.iter().filter(|w| **w == b).count(),
        2,
        "{workers:?}"
    );

    // an ordinary task is not an actor
    sim.submit(&["plain"], vec![t("plain", &[])]);
    assert_eq!(actor_flag(&sim.one_compute()), Some(false));
}

#[test]
fn many_actors_are_assigned_at_once_never_queued() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.worker("tcp://b:1", 1);
    // a group far wider than the cluster would be root-ish and queued
    let names: Vec<String> = (0..20).map(|i| format!("actor-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let tasks = refs.iter().map(|n| t(n, &[])).collect();
    sim.submit_actors(&refs, tasks);
    let computes = sim.computes();
    assert_eq!(computes.len(), 20);
    assert!(computes.iter().all(|c| actor_flag(c) == Some(true)));
    let on_first = computes
        .iter()
        .filter(|c| c.worker == computes[0].worker)
        .count();
    assert_eq!(on_first, 10, "spread by actor count");
    assert!(refs
        .iter()
        .all(|n| sim.state(n) == Some(TaskState::Processing)));
}

#[test]
fn an_actor_whose_worker_dies_errs_with_its_dependents_and_is_not_rerun() {
    let (mut sim, c) = counter_in_memory();
    // a task that uses the actor, still waiting for a worker slot
    sim.submit(&["use"], vec![t("use", &["counter"])]);
    sim.one_compute();
    sim.clear();

    sim.s.remove_worker(c.worker, sim.now);
    sim.drain();
    assert_eq!(sim.state("counter"), Some(TaskState::Erred));
    // its dependent errs with it, wherever it was running
    assert_eq!(sim.state("use"), Some(TaskState::Erred));
    assert!(
        sim.computes().iter().all(|c| c.key != k("counter")),
        "not recomputed"
    );
    let erred: Vec<Value> = sim
        .take_client(sim.client)
        .into_iter()
        .filter(|m| op(m) == "task-erred" && m.get("key").map(key_of) == Some(k("counter")))
        .collect();
    assert_eq!(erred.len(), 1);
    let exception = match erred[0].get("exception") {
        Some(Value::Bin(b)) => b.clone(),
        other => panic!("a pickled exception, got {other:?}"),
    };
    let text = String::from_utf8_lossy(&exception);
    assert!(text.contains("RuntimeError"), "{text}");
    assert!(text.contains("Worker holding Actor was lost"), "{text}");
}

#[test]
fn a_worker_holding_an_actor_is_not_retired_until_the_actor_is_released() {
    let (mut sim, c) = counter_in_memory();
    sim.clear();
    assert!(sim.s.start_retirement(c.worker, "retire-test"));
    assert_eq!(
        sim.s.retire_step(c.worker, sim.now, "retire-test"),
        RetireProgress::NoRecipients
    );
    sim.s.abort_retirement(c.worker, "retire-test");

    // once released and forgotten, the worker holds no actor
    sim.release(&["counter"]);
    assert_eq!(sim.state("counter"), None);
    assert!(sim.s.start_retirement(c.worker, "retire-test-2"));
    assert_eq!(
        sim.s.retire_step(c.worker, sim.now, "retire-test-2"),
        RetireProgress::Done
    );
}
