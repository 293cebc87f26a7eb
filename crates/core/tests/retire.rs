//! Scale-down logic: `workers_to_close`, `adaptive_target`, `check_idle` and
//! graceful retirement (replicate unique data, then close; never lose data).

mod common;

use common::*;
use dask_core::retire::{CloseOptions, RetireProgress, WorkerAttribute};
use dask_core::{Outgoing, TaskState, WorkerId};
use dask_wire::Value;

/// Pending messages of op `name` sent to `w` (taken).
fn take_ops(sim: &mut Sim, w: WorkerId, name: &str) -> Vec<Value> {
    let mut out = Vec::new();
    sim.pending.retain(|m| match m {
        Outgoing::Worker(to, v) if *to == w && op(v) == name => {
            out.push(v.clone());
            false
        }
        _ => true,
    });
    out
}

fn add_keys(sim: &mut Sim, w: WorkerId, keys: &[&str]) {
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("add-keys")),
            (
                "keys",
                Value::Array(keys.iter().map(|x| kv(&k(x))).collect()),
            ),
            ("stimulus_id", Value::str("test")),
        ]),
    )
    .unwrap();
}

fn three_workers(sim: &mut Sim) -> (WorkerId, WorkerId, WorkerId) {
    (
        sim.worker("tcp://a:1", 1),
        sim.worker("tcp://b:1", 1),
        sim.worker("tcp://c:1", 1),
    )
}

#[test]
fn workers_to_close_prefers_idle_workers_with_least_data() {
    let mut sim = Sim::new();
    let (_a, _b, _c) = three_workers(&mut sim);
    sim.place("x", &["tcp://a:1"], 1000);
    sim.place("y", &["tcp://b:1"], 10);
    // c holds nothing, b little, a most.
    let o = CloseOptions {
        n: Some(1),
        ..Default::default()
    };
    assert_eq!(sim.s.workers_to_close(&o), vec!["tcp://c:1".to_string()]);
    let o = CloseOptions {
        n: Some(2),
        ..Default::default()
    };
    assert_eq!(
        sim.s.workers_to_close(&o),
        vec!["tcp://c:1".to_string(), "tcp://b:1".to_string()]
    );
    // target=2: close one; names reported with attribute="name".
    let o = CloseOptions {
        target: Some(2),
        attribute: WorkerAttribute::Name,
        ..Default::default()
    };
    assert_eq!(sim.s.workers_to_close(&o), vec!["tcp://c:1".to_string()]);
    // minimum=3 keeps everyone.
    let o = CloseOptions {
        n: Some(2),
        minimum: Some(3),
        ..Default::default()
    };
    assert!(sim.s.workers_to_close(&o).is_empty());
}

#[test]
fn workers_to_close_never_picks_busy_workers_without_n() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    sim.submit(&["t"], vec![t("t", &[])]);
    let c = sim.one_compute();
    assert_eq!(c.worker, a);
    // The only worker is busy: nothing to close (memory_ratio mode).
    assert!(sim.s.workers_to_close(&CloseOptions::default()).is_empty());
    // Asking for n=1 still names it.
    let o = CloseOptions {
        n: Some(1),
        ..Default::default()
    };
    assert_eq!(sim.s.workers_to_close(&o), vec!["tcp://a:1".to_string()]);
}

#[test]
fn adaptive_target_scales_with_queued_work_and_down_when_idle() {
    let mut sim = Sim::new();
    // Nothing to do and no workers: zero.
    assert_eq!(sim.s.adaptive_target(5.0), 0);
    // Work but no workers: at least one.
    sim.submit(&["t"], vec![t("t", &[])]);
    // root-ish (its group is larger than twice no threads): queued, as in Python
    assert_eq!(sim.state("t"), Some(TaskState::Queued));
    assert_eq!(sim.s.adaptive_target(5.0), 1);
    let mut reg = registration("tcp://a:1", 1);
    reg.memory_limit = 1_000_000;
    let a = sim.worker_reg(reg);
    let mut reg = registration("tcp://b:1", 1);
    reg.memory_limit = 1_000_000;
    sim.worker_reg(reg);
    let cs = sim.computes();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].worker, a);
    // One short task on two workers: one worker is enough (the idle one can go).
    assert_eq!(sim.s.adaptive_target(5.0), 1);
    sim.finish(&cs[0]);
    // Everything done: keep enough memory for twice the data held (one worker).
    assert_eq!(sim.s.adaptive_target(5.0), 1);
}

#[test]
fn adaptive_target_asks_for_more_workers_for_long_queues() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    // 40 root tasks at the default 0.5 s estimate: 20 s of work on one
    // thread; to finish in 5 s that takes 4 workers.
    let tasks: Vec<T> = (0..40).map(|i| t(&format!("r-{i}"), &[])).collect();
    let keys: Vec<String> = (0..40).map(|i| format!("r-{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    assert_eq!(sim.s.adaptive_target(5.0), 4);
    // A longer target duration needs fewer workers.
    assert_eq!(sim.s.adaptive_target(10.0), 2);
}

#[test]
fn check_idle_tracks_activity() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    assert_eq!(sim.s.check_idle(10.0), Some(10.0));
    assert_eq!(sim.s.check_idle(11.0), Some(10.0));
    sim.submit(&["t"], vec![t("t", &[])]);
    // Transitions happened: not idle, and busy while processing.
    assert_eq!(sim.s.check_idle(12.0), None);
    assert_eq!(sim.s.check_idle(13.0), None);
    let c = sim.one_compute();
    assert_eq!(c.worker, a);
    sim.finish(&c);
    // The first check after the transitions resets, the next starts the clock.
    assert_eq!(sim.s.check_idle(14.0), None);
    assert_eq!(sim.s.check_idle(15.0), Some(15.0));
    assert_eq!(sim.s.check_idle(20.0), Some(15.0));
}

#[test]
fn a_graph_being_materialized_is_activity() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    assert_eq!(sim.s.check_idle(10.0), Some(10.0));
    sim.s.graph_update_started();
    assert_eq!(sim.s.check_idle(11.0), None);
    assert_eq!(sim.s.check_idle(12.0), None);
    sim.s.graph_update_finished();
    // Materialization failed: nothing reached the core, idle again from now.
    assert_eq!(sim.s.check_idle(13.0), Some(13.0));
}

#[test]
fn retirement_replicates_unique_data_to_least_loaded_worker_then_closes() {
    let mut sim = Sim::new();
    let (a, b, c) = three_workers(&mut sim);
    sim.place("big", &["tcp://b:1"], 5000);
    sim.place("x", &["tcp://a:1"], 100);
    sim.place("shared", &["tcp://a:1", "tcp://b:1"], 100);
    sim.pending.clear();

    assert!(sim.s.start_retirement(a, "retire-test"));
    sim.drain();
    let status = take_ops(&mut sim, a, "worker-status-change");
    assert_eq!(status.len(), 1);
    assert_eq!(
        status[0].get("status").and_then(Value::as_str),
        Some("closing_gracefully")
    );
    assert!(sim.s.is_retiring(a));

    // Only `x` is unique; c holds less data than b, so c receives it.
    let p = sim.s.retire_step(a, sim.now, "retire-test");
    sim.drain();
    assert_eq!(p, RetireProgress::Pending(1));
    assert!(take_ops(&mut sim, b, "acquire-replicas").is_empty());
    let acq = take_ops(&mut sim, c, "acquire-replicas");
    assert_eq!(acq.len(), 1);
    let who_has = key_map(acq[0].get("who_has").unwrap());
    assert_eq!(who_has.len(), 1);
    assert_eq!(
        who_has[&k("x")],
        Value::Array(vec![Value::str("tcp://a:1")])
    );
    let nbytes = key_map(acq[0].get("nbytes").unwrap());
    assert_eq!(nbytes[&k("x")], Value::Int(100));

    // Not confirmed yet: still pending, and not asked again right away.
    sim.tick(0.5);
    assert_eq!(
        sim.s.retire_step(a, sim.now, "retire-test"),
        RetireProgress::Pending(1)
    );
    sim.drain();
    assert!(take_ops(&mut sim, c, "acquire-replicas").is_empty());

    // The recipient confirms: nothing unique is left.
    add_keys(&mut sim, c, &["x"]);
    assert_eq!(
        sim.s.retire_step(a, sim.now, "retire-test"),
        RetireProgress::Done
    );
    let identity = sim.s.finish_retirement(a, true, true, sim.now);
    sim.drain();
    assert_eq!(
        identity.get("name").and_then(Value::as_str),
        Some("tcp://a:1")
    );
    assert_eq!(take_ops(&mut sim, a, "close").len(), 1);
    assert_eq!(sim.s.worker_id("tcp://a:1"), None);
    assert!(!sim.s.is_retiring(a));
    // No data lost.
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert_eq!(sim.who_has("x"), vec!["tcp://c:1".to_string()]);
    assert_eq!(sim.who_has("shared"), vec!["tcp://b:1".to_string()]);
    assert_eq!(sim.state("big"), Some(TaskState::Memory));
}

#[test]
fn unconfirmed_replication_is_requested_again() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    let b = sim.worker("tcp://b:1", 1);
    sim.place("x", &["tcp://a:1"], 100);
    sim.pending.clear();
    sim.s.start_retirement(a, "r");
    assert_eq!(
        sim.s.retire_step(a, sim.now, "r"),
        RetireProgress::Pending(1)
    );
    sim.drain();
    assert_eq!(take_ops(&mut sim, b, "acquire-replicas").len(), 1);
    sim.tick(dask_core::retire::REPLICA_RETRY_INTERVAL + 0.1);
    assert_eq!(
        sim.s.retire_step(a, sim.now, "r"),
        RetireProgress::Pending(1)
    );
    sim.drain();
    assert_eq!(take_ops(&mut sim, b, "acquire-replicas").len(), 1);
}

#[test]
fn worker_without_unique_data_is_done_at_once() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    let _b = sim.worker("tcp://b:1", 1);
    sim.place("x", &["tcp://a:1", "tcp://b:1"], 100);
    sim.pending.clear();
    sim.s.start_retirement(a, "r");
    assert_eq!(sim.s.retire_step(a, sim.now, "r"), RetireProgress::Done);
    sim.drain();
    assert!(sim
        .pending
        .iter()
        .all(|m| !matches!(m, Outgoing::Worker(_, v) if op(v) == "acquire-replicas")));
    sim.s.finish_retirement(a, false, true, sim.now);
    sim.drain();
    assert_eq!(sim.who_has("x"), vec!["tcp://b:1".to_string()]);
}

#[test]
fn no_recipient_aborts_and_keeps_the_worker_and_its_data() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    sim.place("x", &["tcp://a:1"], 100);
    sim.pending.clear();
    sim.s.start_retirement(a, "r");
    sim.drain();
    take_ops(&mut sim, a, "worker-status-change");
    assert_eq!(
        sim.s.retire_step(a, sim.now, "r"),
        RetireProgress::NoRecipients
    );
    let identity = sim.s.abort_retirement(a, "r");
    sim.drain();
    assert_eq!(
        identity.get("name").and_then(Value::as_str),
        Some("tcp://a:1")
    );
    let back = take_ops(&mut sim, a, "worker-status-change");
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].get("status").and_then(Value::as_str),
        Some("running")
    );
    assert!(!sim.s.is_retiring(a));
    // The worker confirms; it is running again and still holds the data.
    sim.status(a, "running");
    assert_eq!(sim.who_has("x"), vec!["tcp://a:1".to_string()]);
    assert_eq!(sim.s.worker_count(), 1);
}

#[test]
fn paused_or_retiring_workers_are_not_recipients() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    let b = sim.worker("tcp://b:1", 1);
    let c = sim.worker("tcp://c:1", 1);
    sim.status(c, "paused");
    sim.place("x", &["tcp://a:1"], 100);
    sim.place("y", &["tcp://b:1"], 100);
    sim.pending.clear();
    sim.s.start_retirement(a, "r");
    sim.s.start_retirement(b, "r");
    // a and b retire together; c is paused: nowhere to go.
    assert_eq!(
        sim.s.retire_step(a, sim.now, "r"),
        RetireProgress::NoRecipients
    );
    assert_eq!(
        sim.s.retire_step(b, sim.now, "r"),
        RetireProgress::NoRecipients
    );
}

#[test]
fn processing_tasks_of_a_retired_worker_move_without_counting_as_failures() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    sim.submit(&["t"], vec![t("t", &[])]);
    let c = sim.one_compute();
    assert_eq!(c.worker, a);
    let b = sim.worker("tcp://b:1", 1);
    sim.pending.clear();
    sim.s.start_retirement(a, "r");
    assert_eq!(sim.s.retire_step(a, sim.now, "r"), RetireProgress::Done);
    sim.s.finish_retirement(a, true, true, sim.now);
    sim.drain();
    let again = sim.one_compute();
    assert_eq!(again.worker, b);
    assert_eq!(again.key, k("t"));
    // Retire its holder three more times in a row (more than
    // allowed-failures): an expected departure never makes a KilledWorker.
    let mut holder = b;
    for i in 0..3 {
        let next = sim.worker(&format!("tcp://n{i}:1"), 1);
        sim.pending.clear();
        sim.s.start_retirement(holder, "r");
        assert_eq!(
            sim.s.retire_step(holder, sim.now, "r"),
            RetireProgress::Done
        );
        sim.s.finish_retirement(holder, true, true, sim.now);
        sim.drain();
        let moved = sim.one_compute();
        assert_eq!(moved.worker, next);
        assert_eq!(sim.state("t"), Some(TaskState::Processing));
        holder = next;
    }
}

#[test]
fn workers_to_close_keeps_memory_for_twice_the_data() {
    let mut sim = Sim::new();
    for addr in ["tcp://a:1", "tcp://b:1", "tcp://c:1"] {
        let mut reg = registration(addr, 1);
        reg.memory_limit = 1000;
        sim.worker_reg(reg);
    }
    // 800 bytes held: 2x needs 1600, i.e. two of the three 1000-byte workers.
    sim.place("x", &["tcp://a:1"], 500);
    sim.place("y", &["tcp://b:1"], 300);
    assert_eq!(
        sim.s.workers_to_close(&CloseOptions::default()),
        vec!["tcp://c:1".to_string()]
    );
    // A looser ratio lets b (less data than a) go too.
    let o = CloseOptions {
        memory_ratio: Some(1.0),
        ..Default::default()
    };
    assert_eq!(
        sim.s.workers_to_close(&o),
        vec!["tcp://c:1".to_string(), "tcp://b:1".to_string()]
    );
}

#[test]
fn retirement_messages_have_the_fields_workers_expect() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    let b = sim.worker("tcp://b:1", 1);
    sim.place("x", &["tcp://a:1"], 100);
    sim.pending.clear();
    sim.s.start_retirement(a, "r");
    sim.s.retire_step(a, sim.now, "r");
    sim.drain();
    let status = take_ops(&mut sim, a, "worker-status-change");
    assert_eq!(field_names(&status[0]), ["op", "status", "stimulus_id"]);
    let acq = take_ops(&mut sim, b, "acquire-replicas");
    assert_eq!(
        field_names(&acq[0]),
        ["op", "who_has", "nbytes", "stimulus_id"]
    );
    add_keys(&mut sim, b, &["x"]);
    assert_eq!(sim.s.retire_step(a, sim.now, "r"), RetireProgress::Done);
    sim.s.finish_retirement(a, true, false, sim.now);
    sim.drain();
    let close = take_ops(&mut sim, a, "close");
    assert_eq!(field_names(&close[0]), ["op", "reason"]);
    // close without remove: the worker stays registered until it goes.
    assert_eq!(sim.s.worker_id("tcp://a:1"), Some(a));
}

#[test]
fn workers_to_close_reply_keeps_name_types() {
    let mut sim = Sim::new();
    let mut reg = registration("tcp://a:1", 1);
    reg.name = Value::Int(7);
    sim.worker_reg(reg);
    let o = CloseOptions {
        n: Some(1),
        attribute: WorkerAttribute::Name,
        ..Default::default()
    };
    assert_eq!(
        sim.s.workers_to_close_reply(&o),
        Value::Array(vec![Value::Int(7)])
    );
    assert_eq!(sim.s.workers_to_close(&o), vec!["7".to_string()]);
    // Names given back as text (a CLI, the operator) resolve to the worker.
    assert_eq!(
        sim.s.addresses_of_names(&["7".to_string()]),
        vec!["tcp://a:1".to_string()]
    );
    let o = CloseOptions {
        n: Some(1),
        ..Default::default()
    };
    assert_eq!(
        sim.s.workers_to_close_reply(&o),
        Value::Array(vec![Value::str("tcp://a:1")])
    );
}
