//! `replicate` and `rebalance` planning: which worker copies or drops which
//! key, and how the outcome is recorded.

mod common;

use common::*;
use dask_core::replicas::{Move, RebalancePlan, ReplicaError, ReplicateStart, WorkerBatch};
use dask_core::{TaskState, WorkerId};
use dask_wire::{Key, Value};

const A: &str = "tcp://a:1";
const B: &str = "tcp://b:1";
const C: &str = "tcp://c:1";
const D: &str = "tcp://d:1";

fn workers(sim: &mut Sim, addrs: &[&str]) -> Vec<WorkerId> {
    addrs.iter().map(|a| sim.worker(a, 1)).collect()
}

/// A key as Python prints it (`str(key)`).
fn name(key: &Key) -> String {
    dask_core::coordination::key_label(key)
}

fn keys(names: &[&str]) -> Vec<Key> {
    names.iter().map(|n| k(n)).collect()
}

/// `(worker, [key names])` of a plan, for comparisons.
fn flat(plan: &[WorkerBatch]) -> Vec<(String, Vec<String>)> {
    plan.iter()
        .map(|(w, items)| (w.clone(), items.iter().map(|(k, _)| name(k)).collect()))
        .collect()
}

/// Report a heartbeat with `process` bytes of RSS.
fn heartbeat(sim: &mut Sim, addr: &str, process: i64) {
    let metrics = Value::map([
        ("memory", Value::Int(process)),
        (
            "spilled_bytes",
            Value::map([("memory", Value::Int(0)), ("disk", Value::Int(0))]),
        ),
    ]);
    let now = sim.now;
    sim.s.heartbeat_worker(addr, Some(metrics), None, now);
}

fn started(start: ReplicateStart) -> (dask_core::replicas::Replication, Vec<WorkerBatch>) {
    match start {
        ReplicateStart::Started { replication, drops } => (replication, drops),
        ReplicateStart::Missing(m) => panic!("unexpected missing keys {m:?}"),
    }
}

#[test]
fn replicate_copies_in_rounds_bounded_by_the_branching_factor() {
    let mut sim = Sim::new();
    workers(&mut sim, &[A, B, C, D]);
    sim.place("x", &[A], 100);
    sim.place("big", &[B], 10_000);
    let start = sim
        .s
        .replicate_start(&keys(&["x"]), None, None, 1, true)
        .unwrap();
    let (mut r, drops) = started(start);
    assert!(drops.is_empty());
    // one holder, branching factor 1: one copy, to the emptiest worker not
    // holding it (C and D hold nothing; the lower id wins)
    let round = sim.s.replicate_round(&mut r);
    assert_eq!(flat(&round), vec![(C.to_string(), vec!["x".to_string()])]);
    assert_eq!(
        round[0].1[0].1,
        vec![A.to_string()],
        "fetched from its holder"
    );
    assert_eq!(sim.s.replicas_copied(C, &keys(&["x"]), 2.0), 1);
    // two holders now: two more copies (B and D), then nothing left
    let round = sim.s.replicate_round(&mut r);
    assert_eq!(
        flat(&round),
        vec![
            (B.to_string(), vec!["x".to_string()]),
            (D.to_string(), vec!["x".to_string()])
        ]
    );
    sim.s.replicas_copied(B, &keys(&["x"]), 3.0);
    sim.s.replicas_copied(D, &keys(&["x"]), 3.0);
    assert!(sim.s.replicate_round(&mut r).is_empty());
    assert!(r.pending().is_empty());
    assert_eq!(sim.who_has("x").len(), 4);
}

#[test]
fn replicate_drops_extra_replicas_from_the_fullest_holders() {
    let mut sim = Sim::new();
    workers(&mut sim, &[A, B, C]);
    sim.place("full", &[B], 5000);
    sim.place("x", &[A, B, C], 10);
    let (mut r, drops) = started(
        sim.s
            .replicate_start(&keys(&["x"]), Some(1), None, 2, true)
            .unwrap(),
    );
    let mut dropped = flat(&drops);
    dropped.sort();
    // B holds the most bytes; A and C tie at 10 and the older worker goes
    assert_eq!(
        dropped,
        vec![
            (A.to_string(), vec!["x".to_string()]),
            (B.to_string(), vec!["x".to_string()])
        ]
    );
    sim.s.replicas_dropped(A, &keys(&["x"]), 2.0);
    sim.s.replicas_dropped(B, &keys(&["x"]), 2.0);
    assert_eq!(sim.who_has("x"), vec![C.to_string()]);
    assert!(
        sim.s.replicate_round(&mut r).is_empty(),
        "one copy is enough"
    );
    // without delete nothing is dropped
    sim.place("y", &[A, B], 10);
    let (_, drops) = started(
        sim.s
            .replicate_start(&keys(&["y"]), Some(1), None, 2, false)
            .unwrap(),
    );
    assert!(drops.is_empty());
}

#[test]
fn dropping_the_last_replica_releases_the_key() {
    let mut sim = Sim::new();
    workers(&mut sim, &[A]);
    sim.place("x", &[A], 10);
    sim.s.replicas_dropped(A, &keys(&["x"]), 2.0);
    assert_ne!(sim.state("x"), Some(TaskState::Memory));
    let events = sim.s.get_events(Some(A));
    assert!(
        events.to_string().contains("remove-worker-data"),
        "{events}"
    );
}

#[test]
fn replicate_refusals_and_partial_failures() {
    let mut sim = Sim::new();
    workers(&mut sim, &[A, B]);
    sim.place("x", &[A], 10);
    assert_eq!(
        sim.s
            .replicate_start(&keys(&["nope"]), None, None, 2, true)
            .unwrap_err(),
        ReplicaError::UnknownKey("nope".to_string())
    );
    assert_eq!(
        sim.s
            .replicate_start(&keys(&["x"]), Some(0), None, 2, true)
            .unwrap_err(),
        ReplicaError::NoWorkers
    );
    assert_eq!(
        sim.s
            .replicate_start(
                &keys(&["x"]),
                None,
                Some(&["tcp://z:9".to_string()]),
                2,
                true
            )
            .unwrap_err(),
        ReplicaError::UnknownWorker("tcp://z:9".to_string())
    );
    // a key that is known but in memory nowhere
    sim.submit(&["later"], vec![t("later", &[])]);
    match sim
        .s
        .replicate_start(&keys(&["x", "later"]), None, None, 2, true)
        .unwrap()
    {
        ReplicateStart::Missing(m) => assert_eq!(m, keys(&["later"])),
        other => panic!("{other:?}"),
    }
    // workers by host: only B (its host is "b")
    let (mut r, _) = started(
        sim.s
            .replicate_start(&keys(&["x"]), None, Some(&["b".to_string()]), 2, true)
            .unwrap(),
    );
    assert_eq!(r.workers(), &[B.to_string()]);
    assert_eq!(
        flat(&sim.s.replicate_round(&mut r)),
        vec![(B.to_string(), vec!["x".to_string()])]
    );
}

#[test]
fn a_key_released_during_replicate_leaves_the_replication() {
    let mut sim = Sim::new();
    workers(&mut sim, &[A, B]);
    sim.place("x", &[A], 10);
    let (mut r, _) = started(
        sim.s
            .replicate_start(&keys(&["x"]), None, None, 2, true)
            .unwrap(),
    );
    sim.s.replicas_dropped(A, &keys(&["x"]), 2.0);
    assert!(sim.s.replicate_round(&mut r).is_empty());
    assert!(r.pending().is_empty());
    // a copy reported for a key no longer in memory is not recorded
    assert_eq!(sim.s.replicas_copied(B, &keys(&["x"]), 3.0), 0);
}

#[test]
fn rebalance_moves_from_the_fullest_to_the_emptiest_until_near_the_mean() {
    let mut sim = Sim::with_config(dask_core::Config {
        rebalance: dask_core::config::RebalanceConfig {
            measure: dask_core::config::MemoryMeasure::Managed,
            ..Default::default()
        },
        ..Default::default()
    });
    workers(&mut sim, &[A, B, C]);
    for i in 0..10 {
        sim.place(&format!("a{i}"), &[A], 100);
    }
    sim.place("b0", &[B], 100);
    // process memory bounds managed memory (Python's MemoryState): report it
    heartbeat(&mut sim, A, 1050);
    heartbeat(&mut sim, B, 150);
    heartbeat(&mut sim, C, 50);
    // mean 366: A sends until it would drop below it, B and C receive
    let plan = sim.s.rebalance_plan(None, None).unwrap();
    let RebalancePlan::Moves {
        moves,
        senders,
        recipients,
    } = plan
    else {
        panic!("{plan:?}")
    };
    assert_eq!((senders, recipients), (1, 2));
    assert_eq!(moves.len(), 5, "{moves:?}");
    assert!(moves.iter().all(|m| m.sender == A));
    let to: Vec<&str> = moves.iter().map(|m| m.recipient.as_str()).collect();
    // C (empty) first, then alternately as they near the mean; A stops
    // where one more key would take B or C above it
    assert_eq!(to, vec![C, B, C, B, C]);
    let moved: Vec<String> = moves.iter().map(|m| name(&m.key)).collect();
    assert_eq!(moved, vec!["a0", "a1", "a2", "a3", "a4"]);
    // balanced already: nothing moves
    let mut balanced = Sim::new();
    workers(&mut balanced, &[A, B]);
    balanced.place("x", &[A], 100);
    balanced.place("y", &[B], 100);
    heartbeat(&mut balanced, A, 150);
    heartbeat(&mut balanced, B, 150);
    // (both sit at the mean, which counts as a sender in Python too)
    assert_eq!(
        balanced.s.rebalance_plan(None, None).unwrap(),
        RebalancePlan::Moves {
            moves: vec![],
            senders: 2,
            recipients: 0
        }
    );
}

#[test]
fn rebalance_uses_the_optimistic_measure_and_respects_limits_and_keys() {
    let mut sim = Sim::new();
    let mut reg_a = registration(A, 1);
    reg_a.memory_limit = 1000;
    sim.worker_reg(reg_a);
    let mut reg_b = registration(B, 1);
    reg_b.memory_limit = 1000;
    sim.worker_reg(reg_b);
    sim.place("shared", &[A, B], 50);
    sim.place("a0", &[A], 100);
    sim.place("a1", &[A], 100);
    // A: 250 managed + 300 unmanaged = 550; B: 50 + 20 = 70 → mean 310
    heartbeat(&mut sim, A, 550);
    heartbeat(&mut sim, B, 70);
    let plan = sim.s.rebalance_plan(None, None).unwrap();
    let RebalancePlan::Moves { moves, .. } = plan else {
        panic!()
    };
    let moved: Vec<String> = moves.iter().map(|m| name(&m.key)).collect();
    // "shared" is never moved to a worker that has it; A stops above the mean
    assert_eq!(moved, vec!["a0".to_string(), "a1".to_string()]);
    assert_eq!(
        moves[0],
        Move {
            sender: A.to_string(),
            recipient: B.to_string(),
            key: k("a0")
        }
    );
    // only the keys asked for
    let plan = sim.s.rebalance_plan(Some(&keys(&["a1"])), None).unwrap();
    let RebalancePlan::Moves { moves, .. } = plan else {
        panic!()
    };
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].key, k("a1"));
    // below sender-min (30 % of 1000) nobody sends
    heartbeat(&mut sim, A, 280);
    let plan = sim.s.rebalance_plan(None, None).unwrap();
    let RebalancePlan::Moves { moves, .. } = plan else {
        panic!()
    };
    assert!(moves.is_empty());
    // unknown keys and workers
    assert_eq!(
        sim.s
            .rebalance_plan(Some(&keys(&["a0", "nope"])), None)
            .unwrap(),
        RebalancePlan::Missing(keys(&["nope"]))
    );
    assert_eq!(
        sim.s
            .rebalance_plan(None, Some(&["tcp://z:9".to_string()]))
            .unwrap_err(),
        ReplicaError::UnknownWorker("tcp://z:9".to_string())
    );
}
