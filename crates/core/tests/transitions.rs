//! Failure paths: errors, retries, cancellation, lost workers, stale messages.

mod common;

use common::*;
use dask_core::{Config, TaskState};
use dask_wire::Value;

fn erred_exception(msg: &Value) -> &Value {
    assert_eq!(op(msg), "task-erred");
    msg.get("exception").unwrap()
}

#[test]
fn task_erred_propagates_to_dependents_with_original_exception() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["a", "b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.fail(&a, exception("ZeroDivisionError"));

    assert_eq!(sim.state("a"), Some(TaskState::Erred));
    assert_eq!(sim.state("b"), Some(TaskState::Erred));
    assert!(sim.computes().is_empty(), "b never runs");
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let keys: Vec<_> = msgs.iter().map(|m| key_of(m.get("key").unwrap())).collect();
    assert!(keys.contains(&k("a")) && keys.contains(&k("b")));
    for m in &msgs {
        assert_eq!(erred_exception(m), &exception("ZeroDivisionError"));
        assert_eq!(m.get("traceback"), Some(&Value::Nil));
    }
    // The worker keeps the erred task until told otherwise: no free-keys yet.
    assert!(sim.freed_on(w).is_empty());
    assert!(sim.s.is_idle());
}

#[test]
fn erred_task_blames_whole_chain() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(
        &["d"],
        vec![t("a", &[]), t("b", &["a"]), t("c", &["b"]), t("d", &["c"])],
    );
    let a = sim.one_compute();
    sim.fail(&a, exception("E"));
    for key in ["a", "b", "c", "d"] {
        assert_eq!(sim.state(key), Some(TaskState::Erred), "{key}");
    }
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1, "only the wanted key is reported");
    assert_eq!(key_of(msgs[0].get("key").unwrap()), k("d"));
    assert_eq!(erred_exception(&msgs[0]), &exception("E"));
}

#[test]
fn new_graph_on_erred_dependency_errs_immediately() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["a"], vec![t("a", &[])]);
    let a = sim.one_compute();
    sim.fail(&a, exception("E"));
    sim.clear();
    sim.submit(&["b"], vec![t("b", &["a"])]);
    assert_eq!(sim.state("b"), Some(TaskState::Erred));
    assert!(sim.computes().is_empty());
    let msgs = sim.client_msgs();
    assert!(!msgs.is_empty());
    for m in &msgs {
        assert_eq!(key_of(m.get("key").unwrap()), k("b"));
        assert_eq!(erred_exception(m), &exception("E"));
    }
}

#[test]
fn retries_rerun_with_new_run_id_then_err() {
    for retries in [0i64, 1, 3] {
        let mut sim = Sim::new();
        let w = sim.worker("tcp://127.0.0.1:1", 1);
        sim.submit(
            &["x"],
            vec![t("x", &[]).ann("retries", Value::Int(retries))],
        );
        let mut run_ids = Vec::new();
        for attempt in 0..=retries {
            let c = sim.one_compute();
            assert_eq!(
                c.msg.get("annotations").unwrap().get("retries"),
                Some(&Value::Int(retries))
            );
            run_ids.push(c.run_id);
            if attempt > 0 {
                // The previous attempt was freed before this one.
                assert_eq!(sim.freed_on(w), keyset(&["x"]), "retries={retries}");
            }
            assert!(sim.client_msgs().is_empty(), "client not told of retries");
            sim.fail(&c, exception("E"));
            if attempt < retries {
                assert_ne!(sim.state("x"), Some(TaskState::Erred));
            }
        }
        assert_eq!(sim.state("x"), Some(TaskState::Erred), "retries={retries}");
        let mut sorted = run_ids.clone();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            run_ids.len(),
            "run_ids are fresh: {run_ids:?}"
        );
        assert!(run_ids.windows(2).all(|w| w[0] < w[1]));
        let msgs = sim.client_msgs();
        assert_eq!(msgs.len(), 1);
        assert_eq!(erred_exception(&msgs[0]), &exception("E"));
        assert!(sim.computes().is_empty());
    }
}

#[test]
fn retry_succeeds_on_second_attempt() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[]).ann("retries", Value::Int(2))]);
    let c = sim.one_compute();
    sim.fail(&c, exception("E"));
    let c = sim.one_compute();
    sim.finish(&c);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
}

#[test]
fn retry_resets_erred_key_and_erred_dependents() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.fail(&a, exception("E"));
    assert_eq!(sim.state("b"), Some(TaskState::Erred));
    sim.clear();

    let mut visited = sim.s.retry(Some(sim.client), &[k("b")], sim.now);
    sim.drain();
    visited.sort();
    assert_eq!(visited, vec![k("a"), k("b")]);

    // task-retried for the wanted key, free-keys for the erred one on its worker.
    assert_eq!(
        sim.client_events(sim.client),
        vec![("task-retried".into(), vec![k("b")])]
    );
    assert_eq!(sim.freed_on(w), keyset(&["a"]));
    let a2 = sim.one_compute();
    assert_eq!(a2.key, k("a"));
    assert!(a2.run_id > a.run_id);
    assert_eq!(sim.state("b"), Some(TaskState::Waiting));
    sim.finish(&a2);
    let b = sim.one_compute();
    sim.finish(&b);
    assert_eq!(sim.state("b"), Some(TaskState::Memory));
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("b")])]
    );
}

#[test]
fn retry_of_unknown_or_healthy_keys_is_harmless() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    let visited = sim.s.retry(None, &[k("x"), k("unknown")], sim.now);
    sim.drain();
    assert_eq!(visited, vec![k("x")]);
    // Like Python's stimulus_retry, the healthy key is simply run again
    // (the client resets its future); the unknown one is ignored.
    sim.run_all();
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert_eq!(sim.state("unknown"), None);
}

#[test]
fn cancel_processing_task_frees_it_and_cancels_dependents() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["a", "b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.cop(Value::map([
        ("op", Value::str("cancel-keys")),
        ("keys", Value::Array(vec![kv(&k("a"))])),
        ("force", Value::Bool(false)),
        ("reason", Value::Nil),
        ("msg", Value::Nil),
    ]))
    .unwrap();
    assert_eq!(sim.freed_on(w), keyset(&["a"]));
    let msgs = sim.client_msgs();
    let cancelled: std::collections::BTreeSet<_> = msgs
        .iter()
        .filter(|m| op(m) == "cancelled-keys")
        .flat_map(|m| keys_of(m.get("keys").unwrap()))
        .collect();
    assert_eq!(cancelled, keyset(&["a", "b"]));
    assert_eq!(sim.s.task_count(), 0);
    assert!(sim.s.is_idle());
    // The worker's late answer is stale.
    sim.finish(&a);
    assert_eq!(sim.freed_on(w), keyset(&["a"]));
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn cancel_does_not_touch_keys_other_clients_want() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let c2 = sim.add_client("Client-2");
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.submit_as(c2, &["x"], vec![t("x", &[])]);
    sim.computes();
    sim.cop(Value::map([
        ("op", Value::str("cancel-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
        ("force", Value::Bool(false)),
    ]))
    .unwrap();
    assert_eq!(sim.state("x"), Some(TaskState::Processing));
    assert!(sim.free_keys().is_empty());
    // Like Python, the (empty) cancellation report still goes to every client.
    assert_eq!(
        sim.client_events(c2),
        vec![("cancelled-keys".into(), vec![])]
    );
    // Forced cancel drops it for everybody.
    sim.cop(Value::map([
        ("op", Value::str("cancel-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
        ("force", Value::Bool(true)),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(
        sim.client_events(c2),
        vec![("cancelled-keys".into(), vec![k("x")])]
    );
}

#[test]
fn remove_worker_reschedules_processing_tasks() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    let other = if x.worker == w0 { w1 } else { w0 };
    let dead_addr = sim.addr(x.worker);
    assert!(sim.s.remove_worker(x.worker, sim.now));
    sim.drain();
    let x2 = sim.one_compute();
    assert_eq!(x2.worker, other);
    assert!(x2.run_id > x.run_id);
    // The survivor hears about the departure.
    let msgs = sim.take_worker(other);
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "remove-worker");
    assert_eq!(msgs[0].get("worker"), Some(&Value::str(dead_addr)));
    assert_eq!(field_names(&msgs[0]), ["op", "worker", "stimulus_id"]);
    assert!(sim.client_msgs().is_empty(), "nothing lost yet");
    sim.finish(&x2);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert!(!sim.s.remove_worker(x.worker, sim.now), "already removed");
}

#[test]
fn remove_worker_recomputes_results_only_it_held() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    sim.run_all();
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("b")])]
    );
    sim.clear();
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    assert!(sim.s.remove_worker(w0, sim.now));
    sim.drain();
    assert_eq!(
        sim.client_events(sim.client),
        vec![("lost-data".into(), vec![k("b")])]
    );
    // b needs a again: both recomputed on the survivor, in order.
    let ran = sim.run_all();
    assert_eq!(ran, vec![k("a"), k("b")]);
    assert_eq!(sim.who_has("b"), vec![sim.addr(w1)]);
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("b")])]
    );
    assert_eq!(sim.state("a"), Some(TaskState::Released));
}

#[test]
fn remove_worker_keeps_results_replicated_elsewhere() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish(&x);
    let other = if x.worker == w0 { w1 } else { w0 };
    sim.wop(
        other,
        Value::map([
            ("op", Value::str("add-keys")),
            ("keys", Value::Array(vec![kv(&k("x"))])),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    assert_eq!(sim.who_has("x").len(), 2);
    sim.clear();
    sim.s.remove_worker(x.worker, sim.now);
    sim.drain();
    assert_eq!(sim.who_has("x"), vec![sim.addr(other)]);
    assert!(sim.client_msgs().is_empty());
    assert!(sim.computes().is_empty());
}

#[test]
fn remove_worker_forgets_scattered_data() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    sim.worker("tcp://127.0.0.1:2", 1);
    let addr = sim.addr(w0);
    sim.s.update_data(
        Some(sim.client),
        &[(k("data"), vec![addr])],
        &[(k("data"), 8)],
    );
    sim.drain();
    // A computation waiting on the scattered key can never run after it is lost.
    sim.submit(&["y"], vec![t("y", &["data"])]);
    let y = sim.one_compute();
    assert_eq!(y.worker, w0, "runs where the data is");
    sim.clear();
    sim.s.remove_worker(w0, sim.now);
    sim.drain();
    assert_eq!(sim.state("data"), None);
    assert_eq!(sim.state("y"), None, "y lost its dependency");
    let events = sim.client_events(sim.client);
    // Pure data is forgotten outright (Python's remove_worker recommends
    // `forgotten`, whose report is `cancelled-keys`, not `lost-data`).
    assert!(
        events.contains(&("cancelled-keys".into(), vec![k("data")])),
        "{events:?}"
    );
    assert!(
        events.contains(&("cancelled-keys".into(), vec![k("y")])),
        "{events:?}"
    );
    assert!(sim.computes().is_empty());
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn killed_worker_after_allowed_failures() {
    let mut sim = Sim::with_config(Config {
        allowed_failures: 3,
        ..Config::default()
    });
    sim.submit(&["x"], vec![t("x", &[])]);
    // without threads a lone task is root-ish: queued, as in Python
    assert_eq!(sim.state("x"), Some(TaskState::Queued));
    let mut last_addr = String::new();
    for i in 0..4 {
        let addr = format!("tcp://127.0.0.1:{}", 100 + i);
        let w = sim.worker(&addr, 1);
        let x = sim.one_compute();
        assert_eq!(x.worker, w);
        assert!(sim.client_msgs().is_empty());
        sim.s.remove_worker(w, sim.now);
        sim.drain();
        last_addr = addr;
        if i < 3 {
            assert_eq!(sim.state("x"), Some(TaskState::Queued), "death {i}");
        }
    }
    assert_eq!(sim.state("x"), Some(TaskState::Erred));
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    let Value::Bin(pickle) = erred_exception(&msgs[0]) else {
        panic!("KilledWorker is sent as a pickle: {msgs:?}")
    };
    let text = String::from_utf8_lossy(pickle);
    assert!(text.contains("KilledWorker"), "{text}");
    assert!(text.contains("distributed.scheduler"), "{text}");
    assert!(text.contains(&last_addr), "{text}");
    // A new worker gets nothing.
    sim.worker("tcp://127.0.0.1:200", 1);
    assert!(sim.computes().is_empty());
}

#[test]
fn killed_worker_counts_only_deaths_while_processing() {
    let mut sim = Sim::new();
    let keep = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish(&x);
    // Many unrelated worker deaths do not make x suspicious.
    for i in 0..5 {
        let w = sim.worker(&format!("tcp://127.0.0.1:{}", 10 + i), 1);
        sim.s.remove_worker(w, sim.now);
        sim.drain();
    }
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert_eq!(sim.who_has("x"), vec![sim.addr(keep)]);
}

#[test]
fn stale_task_finished_is_freed_and_changes_nothing() {
    // Released (a, after b finished), erred (e) and unknown keys.
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.finish(&a);
    let b = sim.one_compute();
    sim.finish(&b);
    sim.submit(&["e"], vec![t("e", &[])]);
    let e = sim.one_compute();
    sim.fail(&e, exception("E"));
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.clear();
    let cases = [
        ("released key", k("a"), a.run_id, TaskState::Released),
        ("erred key", k("e"), e.run_id, TaskState::Erred),
        ("unknown key", k("nope"), 12345, TaskState::Forgotten),
    ];
    for (what, key, run_id, state) in cases {
        let count = sim.s.task_count();
        sim.finish_with(w0, &key, run_id, 10);
        assert_eq!(sim.free_keys(), vec![(w0, vec![key.clone()])], "{what}");
        assert!(sim.take().is_empty(), "{what}");
        assert_eq!(sim.s.task_count(), count, "{what}");
        let want = (state != TaskState::Forgotten).then_some(state);
        assert_eq!(sim.s.task_state(&key), want, "{what}");
        assert_eq!(sim.state("x"), Some(TaskState::Processing), "{what}");
    }
    // The real answer still works.
    sim.finish(&x);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
}

#[test]
fn stale_task_finished_from_another_worker_is_freed() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    let other = if x.worker == w0 { w1 } else { w0 };
    sim.finish_with(other, &k("x"), x.run_id - 1, 10);
    assert_eq!(sim.free_keys(), vec![(other, vec![k("x")])]);
    assert_eq!(sim.state("x"), Some(TaskState::Processing));
}

#[test]
fn stale_run_from_the_same_worker_reschedules() {
    // Python: a task-finished whose run_id is outdated but that comes from the
    // worker the task is processing on releases the task and assigns it again.
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish_with(w, &k("x"), x.run_id - 1, 10);
    assert_eq!(sim.freed_on(w), keyset(&["x"]));
    let x2 = sim.one_compute();
    assert!(x2.run_id > x.run_id);
    sim.finish(&x2);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
}

#[test]
fn stale_task_erred_changes_nothing() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish(&x);
    sim.clear();
    // An error for a task already in memory, and for an unknown key.
    let mut late = x.clone();
    sim.fail(&late, exception("E"));
    late.key = k("unknown");
    sim.fail(&late, exception("E"));
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert!(sim.client_msgs().is_empty());
    assert!(sim.computes().is_empty());
    assert_eq!(sim.who_has("x"), vec![sim.addr(w)]);
}

#[test]
fn task_finished_for_key_in_memory_adds_replica() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish(&x);
    let other = if x.worker == w0 { w1 } else { w0 };
    sim.finish_with(other, &k("x"), x.run_id, 100);
    assert_eq!(sim.who_has("x").len(), 2);
    assert!(sim.free_keys().is_empty());
}

#[test]
fn reschedule_op_moves_task_back() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("reschedule")),
            ("key", Value::str("x")),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    let x2 = sim.one_compute();
    assert!(x2.run_id > x.run_id);
    sim.finish(&x2);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
}

#[test]
fn erred_task_released_by_client_is_forgotten_and_freed() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.fail(&a, exception("E"));
    sim.clear();
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("b"))])),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
    // The worker that holds the erred task is told to forget it.
    assert_eq!(sim.freed_on(w), keyset(&["a"]));
}

#[test]
fn lost_dependency_while_dependent_processing() {
    // a in memory on w0, b processing on w1 (fetching a); w0 dies: b is
    // released, a recomputed, then b runs again.
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.finish(&a);
    let b = sim.one_compute();
    assert_eq!(b.worker, w0);
    // Force the situation: b is processing on w0, which dies along with a.
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.clear();
    sim.s.remove_worker(w0, sim.now);
    sim.drain();
    let ran = sim.run_all();
    assert_eq!(ran, vec![k("a"), k("b")]);
    assert_eq!(sim.who_has("b"), vec![sim.addr(w1)]);
}

#[test]
fn queued_task_losing_its_dependency_is_not_sent_without_it() {
    // Root-ish tasks x-* need `d`, y-* need `e`; both inputs live only on w0.
    // Four x run (two per worker), the rest and all y are queued. w0 dies:
    // releasing the x on w1 frees slots in the same batch in which the queued
    // y lose `e`. No task may be assigned before its inputs are back.
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    let on_w0 = || workers_list(&["tcp://127.0.0.1:1"]);
    sim.submit(
        &["d", "e"],
        vec![
            t("d", &[])
                .ann("workers", on_w0())
                .ann("allow_other_workers", Value::Bool(true)),
            t("e", &[])
                .ann("workers", on_w0())
                .ann("allow_other_workers", Value::Bool(true)),
        ],
    );
    for c in sim.computes() {
        sim.finish(&c);
    }
    let xs: Vec<String> = (0..6).map(|i| format!("x-{i}")).collect();
    let ys: Vec<String> = (0..6).map(|i| format!("y-{i}")).collect();
    // (Requested in reverse so that the running x come first among d's dependents.)
    let refs: Vec<&str> = xs.iter().rev().map(String::as_str).collect();
    sim.submit(&refs, xs.iter().map(|key| t(key, &["d"])).collect());
    let refs: Vec<&str> = ys.iter().rev().map(String::as_str).collect();
    sim.submit(&refs, ys.iter().map(|key| t(key, &["e"])).collect());
    let first = sim.computes();
    assert_eq!(first.len(), 4);
    assert!(first.iter().any(|c| c.worker == w1));
    assert_eq!(sim.in_state(TaskState::Queued).len(), 8);
    sim.clear();
    sim.s.remove_worker(w0, sim.now);
    sim.drain();
    let mut ran = 0;
    loop {
        let cs = sim.computes();
        if cs.is_empty() {
            break;
        }
        for c in cs {
            for (dep, addrs) in c.who_has() {
                assert!(
                    !addrs.is_empty(),
                    "{:?} sent without a replica of {dep:?}",
                    c.key
                );
            }
            if sim.s.task_state(&c.key) == Some(TaskState::Processing) {
                sim.finish(&c);
                ran += 1;
            }
        }
    }
    assert!(ran >= 14, "{ran}");
    for key in xs.iter().chain(&ys) {
        assert_eq!(sim.state(key), Some(TaskState::Memory));
    }
}

fn workers_list(specs: &[&str]) -> Value {
    Value::Array(specs.iter().map(|s| Value::str(*s)).collect())
}

#[test]
fn retry_of_a_key_in_memory_recomputes_and_reports_it_again() {
    // `Future.retry()` resets the client's future to pending for every key
    // the scheduler returns, so a key already in memory must be reported again.
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["a"], vec![t("a", &[])]);
    sim.run_all();
    assert_eq!(sim.s.task_state(&k("a")), Some(TaskState::Memory));
    sim.clear();
    let visited = sim.s.retry(None, &[k("a")], sim.now);
    assert_eq!(visited, vec![k("a")]);
    sim.drain();
    let cs = sim.computes();
    assert_eq!(cs.len(), 1, "the key is computed again");
    sim.finish(&cs[0]);
    assert!(sim
        .client_events(sim.client)
        .contains(&("key-in-memory".into(), vec![k("a")])));
    assert_eq!(sim.s.task_state(&k("a")), Some(TaskState::Memory));
}
