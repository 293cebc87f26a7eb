//! End-to-end task lifecycles: submit, run, report, free, release, forget.

mod common;

use common::*;
use dask_core::{Outgoing, TaskState};
use dask_wire::Value;

#[test]
fn chain_runs_in_dependency_order_and_reports_only_requested_key() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);

    assert_eq!(sim.state("a"), Some(TaskState::Processing));
    assert_eq!(sim.state("b"), Some(TaskState::Waiting));
    assert_eq!(sim.state("c"), Some(TaskState::Waiting));

    let mut order = Vec::new();
    for _ in 0..3 {
        let c = sim.one_compute();
        assert_eq!(c.worker, w);
        order.push(c.key.clone());
        sim.finish(&c);
    }
    assert_eq!(order, vec![k("a"), k("b"), k("c")]);
    assert!(sim.computes().is_empty());

    // Only `c` is reported to the client.
    let events = sim.client_events(sim.client);
    assert_eq!(events, vec![("key-in-memory".to_string(), vec![k("c")])]);
    assert_eq!(sim.state("c"), Some(TaskState::Memory));
    assert_eq!(sim.who_has("c"), vec![sim.addr(w)]);
}

#[test]
fn key_in_memory_carries_the_result_type() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "key-in-memory");
    assert_eq!(
        msgs[0].get("type"),
        Some(&Value::Bin(bytes::Bytes::from_static(b"pickled-int")))
    );
}

/// Each task keeps its own result type, whether the shared table holds it
/// (bytes) or the task does (anything else).
#[test]
fn key_in_memory_carries_each_tasks_own_result_type() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 3);
    sim.submit(
        &["x", "y", "z"],
        vec![t("x", &[]), t("y", &[]), t("z", &[])],
    );
    let types = [
        ("x", Value::Bin(bytes::Bytes::from_static(b"pickled-int"))),
        ("y", Value::Bin(bytes::Bytes::from_static(b"pickled-str"))),
        ("z", Value::str("not bytes")),
    ];
    for c in sim.computes() {
        let mut msg = task_finished_msg(&c.key, c.run_id, 8, sim.now);
        let (_, ty) = types.iter().find(|(n, _)| k(n) == c.key).unwrap();
        let Value::Map(fields) = &mut msg else {
            unreachable!()
        };
        for (name, v) in fields.iter_mut() {
            if *name == Value::str("type") {
                *v = ty.clone();
            }
        }
        sim.wop(w, msg).unwrap();
    }
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 3);
    for m in &msgs {
        assert_eq!(op(m), "key-in-memory");
        let (_, ty) = types
            .iter()
            .find(|(n, _)| m.get("key") == Some(&k(n).to_value()))
            .unwrap();
        assert_eq!(m.get("type"), Some(ty));
    }
}

#[test]
fn intermediate_results_are_freed_once_dependents_finish() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);

    let a = sim.one_compute();
    sim.finish(&a);
    assert!(sim.free_keys().is_empty(), "a is still needed by b");
    assert_eq!(sim.state("a"), Some(TaskState::Memory));

    let b = sim.one_compute();
    assert_eq!(b.who_has(), [(k("a"), vec![sim.addr(w)])].into());
    sim.finish(&b);
    // a's only dependent finished: a is released and freed on the worker.
    assert_eq!(sim.free_keys(), vec![(w, vec![k("a")])]);
    assert_eq!(sim.state("a"), Some(TaskState::Released));

    let c = sim.one_compute();
    sim.finish(&c);
    assert_eq!(sim.free_keys(), vec![(w, vec![k("b")])]);
    assert_eq!(sim.state("b"), Some(TaskState::Released));
    assert_eq!(sim.state("c"), Some(TaskState::Memory));
    assert_eq!(
        sim.s.has_what(None),
        Value::Map(vec![(
            Value::str(sim.addr(w)),
            Value::Array(vec![k("c").to_value()])
        )])
    );
}

#[test]
fn client_releases_keys_forgets_everything() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);
    sim.run_all();
    sim.clear();
    assert_eq!(sim.s.task_count(), 3);

    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("c"))])),
        ("client", Value::str("Client-1")),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(sim.free_keys(), vec![(w, vec![k("c")])]);
    assert!(sim.take().is_empty(), "nothing but free-keys");
    assert!(sim.s.is_idle());
}

#[test]
fn releasing_a_running_graph_frees_the_processing_task() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);
    let a = sim.one_compute();
    sim.finish(&a);
    let b = sim.one_compute();

    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("c"))])),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(sim.freed_on(w), keyset(&["a", "b"]));
    assert!(sim.s.is_idle());

    // The late answer for b is stale now: free it, change nothing.
    sim.finish(&b);
    assert_eq!(sim.free_keys(), vec![(w, vec![k("b")])]);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn two_clients_wanting_the_same_key() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let c1 = sim.client;
    let c2 = sim.add_client("Client-2");
    sim.submit_as(c1, &["x"], vec![t("x", &[])]);
    sim.submit_as(c2, &["x"], vec![t("x", &[])]);
    assert_eq!(sim.s.task_count(), 1);
    let x = sim.one_compute();
    sim.finish(&x);
    assert_eq!(
        sim.client_events(c1),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
    assert_eq!(
        sim.client_events(c2),
        vec![("key-in-memory".into(), vec![k("x")])]
    );

    sim.cop_as(
        c1,
        Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(vec![kv(&k("x"))])),
        ]),
    )
    .unwrap();
    assert_eq!(sim.state("x"), Some(TaskState::Memory), "c2 still wants x");
    assert!(sim.free_keys().is_empty());

    sim.s.remove_client(c2, sim.now);
    sim.drain();
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(sim.free_keys(), vec![(w, vec![k("x")])]);
}

#[test]
fn second_client_gets_key_in_memory_immediately_for_finished_key() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let c2 = sim.add_client("Client-2");
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    sim.submit_as(c2, &["x"], vec![t("x", &[])]);
    assert!(sim.computes().is_empty(), "no recomputation");
    assert_eq!(
        sim.client_events(c2),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
}

#[test]
fn client_desires_keys_adds_a_wanter_and_reports() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let c2 = sim.add_client("Client-2");
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    sim.cop_as(
        c2,
        Value::map([
            ("op", Value::str("client-desires-keys")),
            ("keys", Value::Array(vec![kv(&k("x"))])),
        ]),
    )
    .unwrap();
    assert_eq!(
        sim.client_events(c2),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
    // The first client lets go; the second keeps it alive.
    sim.s.remove_client(sim.client, sim.now);
    sim.drain();
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
}

#[test]
fn pure_dedup_same_key_twice_is_one_task() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.submit(&["x"], vec![t("x", &[])]);
    assert_eq!(sim.s.task_count(), 1);
    let x = sim.one_compute();
    sim.finish(&x);
    // One future, one report (the client holds one wanter entry).
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
    // Shared dependency between two graphs is one task too.
    sim.submit(&["y"], vec![t("d", &[]), t("y", &["d"])]);
    sim.submit(&["z"], vec![t("d", &[]), t("z", &["d"])]);
    assert_eq!(sim.s.task_count(), 4);
    let ran = sim.run_all();
    assert_eq!(ran.iter().filter(|k| **k == common::k("d")).count(), 1);
}

#[test]
fn same_key_twice_in_one_request() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let c = sim.client;
    sim.submit_keys(c, vec![k("x"), k("x")], vec![t("x", &[])], 0.1);
    assert_eq!(sim.s.task_count(), 1);
    assert_eq!(sim.computes().len(), 1);
}

#[test]
fn requested_keys_may_be_known_tasks_not_shipped_again() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    // x is requested again without its task; y comes with the graph
    sim.submit(&["x", "y"], vec![t("y", &[])]);
    assert_eq!(sim.s.task_count(), 2);
    let y = sim.one_compute();
    assert_eq!(y.key, k("y"));
    sim.finish(&y);
    let events = sim.client_events(sim.client);
    assert!(events.contains(&("key-in-memory".into(), vec![k("x")])));
    assert!(events.contains(&("key-in-memory".into(), vec![k("y")])));
    // a requested key neither shipped nor known cancels the request
    sim.submit(&["y", "nowhere"], vec![]);
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "cancelled-keys");
    assert_eq!(
        keys_of(msgs[0].get("keys").unwrap()),
        vec![k("y"), k("nowhere")]
    );
}

#[test]
fn a_key_shipped_twice_in_one_graph_is_one_task() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    // the later copy counts: its dependency is the one wired
    sim.submit(
        &["x"],
        vec![t("a", &[]), t("b", &[]), t("x", &["a"]), t("x", &["b"])],
    );
    assert_eq!(sim.s.task_count(), 2);
    let ran = sim.run_all();
    assert_eq!(ran, vec![k("b"), k("x")]);
}

#[test]
fn remove_client_releases_everything_it_wanted() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 2);
    sim.submit(&["x", "y"], vec![t("x", &[]), t("y", &[])]);
    let cs = sim.computes();
    sim.finish(&cs[0]);
    sim.clear();
    sim.s.remove_client(sim.client, sim.now);
    sim.drain();
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(sim.freed_on(w), keyset(&["x", "y"]));
    assert_eq!(sim.s.client_count(), 0);
    assert!(sim.s.is_idle());
}

#[test]
fn graph_with_unknown_dependency_is_cancelled() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["y"], vec![t("y", &["missing"])]);
    assert_eq!(sim.s.task_count(), 0);
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "cancelled-keys");
    assert_eq!(keys_of(msgs[0].get("keys").unwrap()), vec![k("y")]);
    assert_eq!(
        msgs[0].get("reason"),
        Some(&Value::str("lost dependencies"))
    );
}

#[test]
fn graph_depending_on_a_key_in_memory_uses_it() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    // New graph references x only as a dependency (not shipped again).
    sim.submit(&["y"], vec![t("y", &["x"])]);
    let y = sim.one_compute();
    assert_eq!(y.key, k("y"));
    assert_eq!(y.who_has(), [(k("x"), vec![sim.addr(w)])].into());
    assert_eq!(
        key_map(y.msg.get("nbytes").unwrap()),
        [(k("x"), Value::Int(100))].into()
    );
}

#[test]
fn scattered_data_is_in_memory_and_usable() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let addr = sim.addr(w);
    sim.s.update_data(
        Some(sim.client),
        &[(k("data"), vec![addr.clone()])],
        &[(k("data"), 80)],
    );
    sim.drain();
    assert_eq!(sim.state("data"), Some(TaskState::Memory));
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("data")])]
    );
    assert_eq!(
        key_map(&sim.s.nbytes(None, false).unwrap()),
        [(k("data"), Value::Int(80))].into()
    );
    // Python's `get_nbytes`: summed by prefix by default, -1 for a key
    // without a size yet, an unknown key named
    assert_eq!(
        sim.s.nbytes(None, true).unwrap(),
        Value::map([("data", Value::Int(80))])
    );
    assert_eq!(sim.s.nbytes(Some(&[k("nope")]), true), Err("nope".into()));
    sim.submit(&["s"], vec![t("s", &["data"])]);
    let s = sim.one_compute();
    assert_eq!(s.who_has(), [(k("data"), vec![addr.clone()])].into());
    assert_eq!(
        key_map(&sim.s.nbytes(Some(&[k("s")]), false).unwrap()),
        [(k("s"), Value::Int(-1))].into()
    );
    sim.finish(&s);
    // data is still wanted by the client: not freed.
    assert!(sim.free_keys().is_empty());
    let (plan, missing) = sim.s.gather_plan(&[k("s"), k("data"), k("nope")]);
    assert_eq!(missing, vec![k("nope")]);
    assert_eq!(plan.get(&addr).unwrap().len(), 2);
    // Releasing the scattered key forgets it.
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("data"))])),
    ]))
    .unwrap();
    assert_eq!(sim.state("data"), None);
    assert_eq!(sim.free_keys(), vec![(w, vec![k("data")])]);
}

#[test]
fn scatter_waiting_dependent_starts() {
    // A task waiting on a key that then arrives via update_data runs.
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let addr = sim.addr(w);
    sim.s.update_data(
        Some(sim.client),
        &[(k("d"), vec![addr.clone()])],
        &[(k("d"), 8)],
    );
    sim.drain();
    sim.submit(&["y"], vec![t("y", &["d"])]);
    let y = sim.one_compute();
    sim.finish(&y);
    assert_eq!(sim.state("y"), Some(TaskState::Memory));
}

#[test]
fn update_data_over_a_processing_task_stays_consistent() {
    // Scattering data under the key of a task that is being computed: the key
    // is in memory afterwards and nothing keeps it on a worker's processing list.
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    let other = if x.worker == w0 { w1 } else { w0 };
    let addr = sim.addr(other);
    sim.clear();
    sim.s
        .update_data(None, &[(k("x"), vec![addr.clone()])], &[(k("x"), 8)]);
    sim.drain();
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert_eq!(sim.who_has("x"), vec![addr]);
    assert!(sim.computes().is_empty(), "no new compute-task for x");
    assert!(sim.s.is_idle());
    // The computing worker was told to drop its run.
    assert_eq!(sim.freed_on(x.worker), keyset(&["x"]));
    // Its late answer only adds a replica.
    sim.finish(&x);
    assert_eq!(sim.who_has("x").len(), 2);
}

#[test]
fn report_key_answers_state_or_cancelled() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    for (key, want) in [("x", "key-in-memory"), ("unknown", "cancelled-keys")] {
        sim.cop(Value::map([
            ("op", Value::str("report-key")),
            ("key", Value::str(key)),
        ]))
        .unwrap();
        let msgs = sim.client_msgs();
        assert_eq!(msgs.len(), 1, "{key}");
        assert_eq!(op(&msgs[0]), want, "{key}");
    }
}

#[test]
fn release_worker_data_of_last_replica_recomputes_if_wanted() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("release-worker-data")),
            ("key", Value::str("x")),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    assert_eq!(
        sim.client_events(sim.client),
        vec![("lost-data".into(), vec![k("x")])]
    );
    let x = sim.one_compute();
    sim.finish(&x);
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
}

#[test]
fn tuple_keys_work_end_to_end() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 2);
    let parts: Vec<T> = (0..3)
        .map(|i| T::keyed(tk("chunk-abc", i), vec![]))
        .collect();
    let mut tasks = parts.clone();
    tasks.push(T::keyed(
        tk("agg-abc", 0),
        parts.iter().map(|p| p.key.clone()).collect(),
    ));
    let c = sim.client;
    sim.submit_keys(c, vec![tk("agg-abc", 0)], tasks, 0.1);
    let ran = sim.run_all();
    assert_eq!(ran.last(), Some(&tk("agg-abc", 0)));
    assert_eq!(
        sim.client_events(c),
        vec![("key-in-memory".into(), vec![tk("agg-abc", 0)])]
    );
    assert_eq!(sim.freed_on(w).len(), 3);
    assert_eq!(sim.s.task_count(), 4);
}

#[test]
fn fire_and_forget_tasks_are_released_when_done() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    // The client hands its future to the fire-and-forget pseudo-client, then drops it.
    sim.cop(Value::map([
        ("op", Value::str("client-desires-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
        ("client", Value::str("fire-and-forget")),
    ]))
    .unwrap();
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
    ]))
    .unwrap();
    assert_eq!(sim.state("x"), Some(TaskState::Processing));
    let x = sim.one_compute();
    sim.finish(&x);
    // Like Python's `_add_to_memory`: fire-and-forget interest ends with the result.
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(sim.freed_on(w), keyset(&["x"]));
}

#[test]
fn fire_and_forget_erred_tasks_are_released() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.cop(Value::map([
        ("op", Value::str("client-desires-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
        ("client", Value::str("fire-and-forget")),
    ]))
    .unwrap();
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
    ]))
    .unwrap();
    let x = sim.one_compute();
    sim.fail(&x, exception("boom"));
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn outgoing_messages_are_addressed() {
    // Sanity check of the harness: compute-task goes to a worker, reports to the client.
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let out = sim.take();
    assert!(matches!(&out[..], [Outgoing::Worker(id, m)] if *id == w && op(m) == "compute-task"));
}

#[test]
fn update_data_of_a_dependency_and_its_dependent_together() {
    // y depends on x; both arrive by scatter in one call while y is running.
    // Releasing y's claim on x must not forget x before the client wants it.
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let addr = sim.addr(w);
    let c = sim.client;
    sim.s
        .update_data(Some(c), &[(k("x"), vec![addr.clone()])], &[(k("x"), 8)]);
    sim.drain();
    sim.submit(&["y"], vec![t("y", &["x"])]);
    sim.one_compute();
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
    ]))
    .unwrap();
    assert_eq!(sim.state("x"), Some(TaskState::Memory), "y still needs x");
    sim.clear();
    sim.s.update_data(
        Some(c),
        &[(k("x"), vec![addr.clone()]), (k("y"), vec![addr.clone()])],
        &[(k("x"), 8), (k("y"), 8)],
    );
    sim.drain();
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    assert_eq!(sim.state("y"), Some(TaskState::Memory));
    let events = sim.client_events(c);
    assert!(
        events.contains(&("key-in-memory".into(), vec![k("x")])),
        "{events:?}"
    );
    assert!(
        events.contains(&("key-in-memory".into(), vec![k("y")])),
        "{events:?}"
    );
    assert!(sim.s.is_idle());
}

#[test]
fn update_data_ends_fire_and_forget_interest() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.one_compute();
    sim.cop(Value::map([
        ("op", Value::str("client-desires-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
        ("client", Value::str("fire-and-forget")),
    ]))
    .unwrap();
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
    ]))
    .unwrap();
    let addr = sim.addr(w);
    let c2 = sim.add_client("Client-2");
    sim.s
        .update_data(Some(c2), &[(k("x"), vec![addr])], &[(k("x"), 8)]);
    sim.drain();
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
    sim.s.remove_client(c2, sim.now);
    sim.drain();
    assert_eq!(sim.s.task_count(), 0, "nothing holds x any more");
}

#[test]
fn fire_and_forget_of_finished_or_unknown_keys_holds_nothing() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.cop(Value::map([
        ("op", Value::str("client-desires-keys")),
        (
            "keys",
            Value::Array(vec![kv(&k("x")), kv(&k("never-submitted"))]),
        ),
        ("client", Value::str("fire-and-forget")),
    ]))
    .unwrap();
    assert_eq!(sim.state("never-submitted"), None);
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("x"))])),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
}

/// A broadcast (one input used by many tasks) feeding a wide fan-in: the
/// dependents/waiters of `src` and the dependencies/waiting_on of `total` grow
/// far past the size where their id sets switch from a list to a hash set.
/// Everything must run once, intermediates be freed as soon as `total` has
/// them, and releasing `total` must forget the whole graph.
#[test]
fn wide_broadcast_and_fan_in_run_free_and_forget_everything() {
    const N: usize = 300;
    let mut sim = Sim::new();
    let w1 = sim.worker("tcp://127.0.0.1:1", 2);
    let w2 = sim.worker("tcp://127.0.0.1:2", 2);
    let mids: Vec<String> = (0..N).map(|i| format!("mid-{i}")).collect();
    let mut tasks = vec![t("src", &[])];
    tasks.extend(mids.iter().map(|m| t(m, &["src"])));
    let mid_refs: Vec<&str> = mids.iter().map(String::as_str).collect();
    tasks.push(t("total", &mid_refs));
    sim.submit(&["total"], tasks);
    sim.check();

    let ran = sim.run_all();
    sim.check();
    assert_eq!(ran.len(), N + 2, "every task ran exactly once");
    assert_eq!(ran.first(), Some(&k("src")));
    assert_eq!(ran.last(), Some(&k("total")));
    assert_eq!(sim.state("total"), Some(TaskState::Memory));
    // Only `total` is still held; src and every mid were freed on their workers.
    assert_eq!(sim.in_state(TaskState::Memory), keyset(&["total"]));
    let mut freed = std::collections::BTreeSet::new();
    for (w, keys) in sim.free_keys() {
        assert!(w == w1 || w == w2);
        freed.extend(keys);
    }
    let mut expected: Vec<&str> = mid_refs.clone();
    expected.push("src");
    assert_eq!(freed, keyset(&expected));

    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("total"))])),
        ("client", Value::str("Client-1")),
    ]))
    .unwrap();
    sim.check();
    assert_eq!(sim.s.task_count(), 0);
    assert!(sim.s.is_idle());
}

/// One worker of `nthreads` threads with the two tasks `x-1` and `x-2`
/// assigned to it, and their `compute-task`s.
fn two_tasks_running(nthreads: u32) -> (Sim, dask_core::WorkerId, Vec<Compute>) {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", nthreads);
    sim.submit(&["x-1", "x-2"], vec![t("x-1", &[]), t("x-2", &[])]);
    let computes = sim.computes();
    assert_eq!(computes.len(), 2);
    (sim, w, computes)
}

/// The run id of `key`'s `compute-task` among `computes`.
fn run_id_of(computes: &[Compute], key: &str) -> i64 {
    computes.iter().find(|c| c.key == k(key)).unwrap().run_id
}

#[test]
fn task_finished_read_from_bytes_finds_its_task_by_bytes_or_by_value() {
    // The server reads a task-finished's key as the bytes the worker sent
    // (`TaskFinished::decode`). The canonical bytes are found as they are;
    // any other encoding of the same key is decoded and found too; an
    // unknown key is freed on the worker; bytes that are not msgpack are
    // an error, not a panic.
    let (mut sim, w, computes) = two_tasks_running(1);
    let typed = |key: &[u8], run_id: i64, now: f64| {
        let mut tf = decode_task_finished(&task_finished_msg(&k("placeholder"), run_id, 100, now));
        tf.key = Some(Value::Raw(bytes::Bytes::copy_from_slice(key)));
        tf
    };
    let run_id = |key: &str| run_id_of(&computes, key);
    let now = sim.now;
    // canonical: a fixstr
    let tf = typed(b"\xa3x-1", run_id("x-1"), now);
    sim.finish_typed(w, &tf);
    assert_eq!(sim.state("x-1"), Some(TaskState::Memory));
    // the same str as a str8: not the canonical bytes, found once decoded
    let tf = typed(b"\xd9\x03x-2", run_id("x-2"), now);
    sim.finish_typed(w, &tf);
    assert_eq!(sim.state("x-2"), Some(TaskState::Memory));
    // unknown: the worker is told to free it
    let tf = typed(b"\xa4nope", 1, now);
    sim.finish_typed(w, &tf);
    assert!(sim.freed_on(w).contains(&k("nope")));
    // not msgpack (0xc1 is never used): an error naming the op
    let tf = typed(b"\xc1", 1, now);
    let err = sim.s.handle_task_finished(w, &tf, now).unwrap_err();
    assert!(err.to_string().contains("task-finished"), "{err}");
}

#[test]
fn a_task_finished_is_found_by_its_key_whatever_run_id_it_names() {
    // The task of a run id is a shortcut (`runindex`): a message naming
    // another task's run, or none, still reaches the task of its key, and
    // never finishes the task whose run it named.
    let (mut sim, w, computes) = two_tasks_running(2);
    let run_id = |key: &str| run_id_of(&computes, key);
    let now = sim.now;
    // x-1's key with x-2's run: an outdated run of x-1 (released and
    // assigned afresh, as Python does); x-2 keeps running
    let tf = decode_task_finished(&task_finished_msg(&k("x-1"), run_id("x-2"), 100, now));
    sim.finish_typed(w, &tf);
    assert_eq!(sim.state("x-2"), Some(TaskState::Processing));
    assert_ne!(sim.state("x-1"), Some(TaskState::Memory));
    // x-2's key without a run id: found by its key, current
    let mut tf = decode_task_finished(&task_finished_msg(&k("x-2"), 0, 100, now));
    tf.run_id = None;
    sim.finish_typed(w, &tf);
    assert_eq!(sim.state("x-2"), Some(TaskState::Memory));
    // x-1's new run finishes it
    let again = sim.computes();
    let x1 = again
        .iter()
        .find(|c| c.key == k("x-1"))
        .expect("x-1 reassigned");
    assert_ne!(x1.run_id, run_id("x-1"));
    let tf = decode_task_finished(&task_finished_msg(&k("x-1"), x1.run_id, 100, now));
    sim.finish_typed(w, &tf);
    assert_eq!(sim.state("x-1"), Some(TaskState::Memory));
    sim.check();
}

#[test]
fn messages_sent_in_answer_to_a_task_finished_take_its_stimulus_id() {
    // Python's `_transitions(..., stimulus_id)` gives every message sent
    // while handling a stimulus that stimulus's id; a message without one
    // gets a fresh id named after it. a -> b -> c on one worker.
    let stim_of = |v: &Value| {
        v.get("stimulus_id")
            .unwrap()
            .as_str_key()
            .unwrap()
            .to_string()
    };
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);
    let a = sim.one_compute();
    // the graph's first task: the submission's id, `update-graph-<time>`
    // as Python's `update_graph` makes it
    assert!(
        stim_of(&a.msg).starts_with("update-graph-"),
        "{}",
        stim_of(&a.msg)
    );
    // a decoded map (`handle_worker_op`): the test message's id
    sim.finish(&a);
    let b = sim.one_compute();
    assert_eq!(stim_of(&b.msg), "task-finished-test");
    // typed, read from the worker's bytes: its id; b's input a is freed with it
    let tf = decode_task_finished(&with_field(
        task_finished_msg(&b.key, b.run_id, 100, sim.now),
        "stimulus_id",
        Value::str("task-finished-1733212800.5-from-the-worker"),
    ));
    sim.finish_typed(w, &tf);
    let c = sim.one_compute();
    assert_eq!(
        stim_of(&c.msg),
        "task-finished-1733212800.5-from-the-worker"
    );
    assert_eq!(
        free_keys_stimuli(&sim),
        ["task-finished-1733212800.5-from-the-worker"],
        "{:?}",
        sim.pending
    );
    assert_eq!(sim.freed_on(w), keyset(&["a"]));
    // without a stimulus id (or with one that is not a str): fresh ids,
    // and nothing left over from the message before
    let tf = decode_task_finished(&with_field(
        task_finished_msg(&c.key, c.run_id, 100, sim.now),
        "stimulus_id",
        Value::Int(7),
    ));
    assert_eq!(tf.stimulus_id, None);
    sim.finish_typed(w, &tf);
    let frees = free_keys_stimuli(&sim);
    assert_eq!(frees.len(), 1, "{:?}", sim.pending);
    assert!(frees[0].starts_with("memory-released-"), "{}", frees[0]);
    assert_eq!(sim.freed_on(w), keyset(&["b"]));
}

/// The stimulus ids of the pending `free-keys` messages, in send order.
fn free_keys_stimuli(sim: &Sim) -> Vec<String> {
    sim.pending
        .iter()
        .filter_map(|m| match m {
            Outgoing::Worker(_, v) if op(v) == "free-keys" => {
                Some(v.get("stimulus_id")?.as_str_key()?.to_string())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn replay_queries_name_the_blamed_task_and_return_run_specs() {
    // `get_error_cause` / `get_runspec`, behind `client.recreate_error_locally`
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let addr = sim.addr(w);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);
    let cause = |sim: &Sim, keys: &[dask_wire::Key]| match sim.s.error_cause(keys) {
        Value::Nil => None,
        v => Some(key_of(&v)),
    };
    let a = sim.one_compute();
    sim.finish(&a);
    assert_eq!(cause(&sim, &[k("c"), k("a")]), None);
    let b = sim.one_compute();
    sim.fail(&b, exception("boom"));
    assert_eq!(sim.state("c"), Some(TaskState::Erred));
    // c erred through b: b is to blame, for either key, and unknown keys are skipped
    assert_eq!(cause(&sim, &[k("nope"), k("c")]), Some(k("b")));
    assert_eq!(cause(&sim, &[k("b")]), Some(k("b")));
    assert_eq!(cause(&sim, &[k("a")]), None);
    // the run_spec exactly as submitted, for a task done or failed
    let submitted = Value::Opaque(Box::new(run_spec()));
    assert_eq!(sim.s.runspec_of(&k("a")), Ok(submitted.clone()));
    assert_eq!(sim.s.runspec_of(&k("c")), Ok(submitted));
    assert_eq!(sim.s.runspec_of(&k("nope")), Err("nope".into()));
    // scattered data has none
    sim.s
        .update_data(Some(sim.client), &[(k("d"), vec![addr])], &[(k("d"), 8)]);
    assert_eq!(sim.s.runspec_of(&k("d")), Ok(Value::Nil));
}
