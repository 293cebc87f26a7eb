//! Malformed ops never panic the state machine nor break its invariants.
//!
//! The core runs inside the scheduler's one event loop: a panic there would
//! take down every client's work, not just the connection that sent the bad
//! op. So the worker-stream and client-stream ops are driven here with
//! fields of every wrong shape (missing, wrong types, unknown or stale keys,
//! foreign run ids, absurd sizes, nested containers), interleaved with
//! honest traffic so that tasks are in every state when the bad ops arrive.
//! Each op must answer `Ok` or `Err` without panicking, the state's
//! cross-checks (`Sim::check`) must hold after each, and at the end the
//! scheduler must still run a fresh graph to completion. A fixed seed makes
//! a failure reproduce.

mod common;

use common::*;
use dask_core::TaskState;
use dask_wire::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};

const WORKER_OPS: [&str; 12] = [
    "task-finished",
    "task-erred",
    "release-worker-data",
    "add-keys",
    "worker-status-change",
    "long-running",
    "reschedule",
    "request-refresh-who-has",
    "log-event",
    "steal-response",
    "keep-alive",
    "no-such-op",
];

const CLIENT_OPS: [&str; 10] = [
    "client-desires-keys",
    "client-releases-keys",
    "cancel-keys",
    "heartbeat-client",
    "subscribe-topic",
    "unsubscribe-topic",
    "report-key",
    "update-data",
    "variable-future-received-confirm",
    "queue-future-release",
];

const FIELDS: [&str; 18] = [
    "key",
    "keys",
    "run_id",
    "nbytes",
    "type",
    "typename",
    "startstops",
    "status",
    "worker",
    "who_has",
    "data",
    "topic",
    "msg",
    "exception",
    "traceback",
    "metadata",
    "state",
    "stimulus_id",
];

/// A key the graph holds, a tuple key, an unknown one, or no key at all.
fn a_key(rng: &mut Rng, known: &[String]) -> Value {
    match rng.below(5) {
        0 | 1 => Value::str(rng.choose(known).as_str()),
        2 => Value::Array(vec![Value::str("tup"), Value::Int(rng.below(3) as i64)]),
        3 => Value::str("never-heard-of"),
        _ => any_value(rng, known, 1),
    }
}

/// Any value, of any shape (containers nest up to `depth`).
fn any_value(rng: &mut Rng, known: &[String], depth: usize) -> Value {
    let n = if depth == 0 { 9 } else { 12 };
    match rng.below(n) {
        0 => Value::Nil,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::Int(*rng.choose(&[0, -1, 1, i64::MIN, i64::MAX, 1 << 40])),
        3 => Value::Float(*rng.choose(&[0.0, -1.0, f64::NAN, f64::INFINITY, 1e300])),
        4 => Value::str(""),
        5 => Value::str(*rng.choose(&["running", "paused", "memory", "bogus", "tcp://w:1"])),
        6 => Value::Bin(bytes::Bytes::from_static(b"\x80\x02N.")),
        7 => Value::str(rng.choose(known).as_str()),
        8 => Value::Raw(bytes::Bytes::from_static(b"\xc1")),
        9 => {
            let len = rng.below(4);
            Value::Array((0..len).map(|_| any_value(rng, known, depth - 1)).collect())
        }
        10 => Value::Array((0..rng.below(4)).map(|_| a_key(rng, known)).collect()),
        _ => {
            let len = rng.below(4);
            Value::Map(
                (0..len)
                    .map(|_| (a_key(rng, known), any_value(rng, known, depth - 1)))
                    .collect(),
            )
        }
    }
}

/// An op with a plausible name and fields of arbitrary shape.
fn bad_op(rng: &mut Rng, name: &str, known: &[String], addrs: &[String]) -> Value {
    let mut fields = vec![(Value::str("op"), Value::str(name))];
    for _ in 0..rng.below(7) {
        let field = *rng.choose(&FIELDS);
        let value = match (field, rng.below(3)) {
            ("key", 0) | ("key", 1) => a_key(rng, known),
            ("keys", 0) => Value::Array((0..1 + rng.below(3)).map(|_| a_key(rng, known)).collect()),
            ("worker", 0) => Value::str(rng.choose(addrs).as_str()),
            ("run_id", 0) => Value::Int(rng.below(40) as i64),
            ("status", 0) => Value::str(*rng.choose(&["OK", "error", "running", "paused"])),
            _ => any_value(rng, known, 2),
        };
        fields.push((Value::str(field), value));
    }
    Value::Map(fields)
}

#[test]
fn malformed_ops_never_panic_and_keep_the_state_consistent() {
    let mut rng = Rng(0x0b5e_55ed_f00d_1234);
    let mut sim = Sim::new();
    let w1 = sim.worker("tcp://127.0.0.1:1", 2);
    let w2 = sim.worker("tcp://127.0.0.1:2", 1);
    let workers = [w1, w2];
    let addrs = vec![sim.addr(w1), sim.addr(w2), "tcp://nowhere:1".to_string()];
    let mut known: Vec<String> = Vec::new();
    let mut graphs = 0;
    let (mut ok, mut refused) = (0usize, 0usize);
    for step in 0..6000 {
        if step % 150 == 0 {
            // a new graph: a fan-in over a few roots, and a chain
            graphs += 1;
            let g = |name: &str| format!("{name}-{graphs}");
            let roots: Vec<String> = (0..4).map(|i| g(&format!("r{i}"))).collect();
            let root_refs: Vec<&str> = roots.iter().map(String::as_str).collect();
            let (sum, c1, c2) = (g("sum"), g("c1"), g("c2"));
            let mut tasks: Vec<T> = roots.iter().map(|r| t(r, &[])).collect();
            tasks.push(t(&sum, &root_refs));
            tasks.push(t(&c1, &[&sum]));
            tasks.push(t(&c2, &[&c1]));
            sim.submit(&[&c2, &sum], tasks);
            known.extend(roots);
            known.extend([sum, c1, c2]);
        }
        if rng.below(4) == 0 {
            // honest traffic: finish (or fail) what was handed out
            for c in sim.computes() {
                if sim.s.task_state(&c.key) != Some(TaskState::Processing) {
                    continue;
                }
                if rng.below(10) == 0 {
                    sim.fail(&c, exception("boom"));
                } else {
                    sim.finish(&c);
                }
            }
        }
        sim.tick(0.01);
        let now = sim.now;
        let to_worker = rng.below(3) != 0;
        let msg = if to_worker {
            let name = *rng.choose(&WORKER_OPS);
            bad_op(&mut rng, name, &known, &addrs)
        } else {
            let name = *rng.choose(&CLIENT_OPS);
            bad_op(&mut rng, name, &known, &addrs)
        };
        let w = *rng.choose(&workers);
        let client = sim.client;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if to_worker {
                sim.s.handle_worker_op(w, &msg, now)
            } else {
                sim.s.handle_client_op(client, &msg, now)
            }
        }));
        match outcome {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("step {step}: the op panicked the state machine: {msg:?}"),
        }
        let checked = catch_unwind(AssertUnwindSafe(|| sim.drain()));
        assert!(
            checked.is_ok(),
            "step {step}: invariants broken after {msg:?}"
        );
    }
    // both kinds of outcome were exercised
    assert!(ok > 500 && refused > 500, "ok {ok}, refused {refused}");
    // the worker may have been told it is paused: let it run again, then a
    // fresh graph still runs to completion
    for w in workers {
        sim.status(w, "running");
    }
    sim.run_all();
    sim.clear();
    sim.submit(
        &["after"],
        vec![t("after-a", &[]), t("after", &["after-a"])],
    );
    sim.run_all();
    assert_eq!(sim.state("after"), Some(TaskState::Memory));
}
