//! Published datasets, variables and events: who holds which key, and when
//! it is let go.

mod common;

use common::*;
use dask_core::coordination::python_str;
use dask_core::TaskState;
use dask_wire::Value;

fn release_c(sim: &mut Sim) {
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("c"))])),
        ("client", Value::str("Client-1")),
    ]))
    .unwrap();
}

/// A computed `c` (from `a`, `b`) held by the default client.
fn computed() -> Sim {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);
    sim.run_all();
    sim.clear();
    sim
}

#[test]
fn a_published_dataset_holds_its_keys_until_unpublished() {
    let mut sim = computed();
    sim.s
        .publish_put(vec![(k("ds"), vec![k("c")], Value::Int(1))], false)
        .unwrap();
    release_c(&mut sim);
    // c stays, and a and b, released, with it (they go when c goes)
    assert_eq!(sim.s.task_count(), 3, "the dataset holds c");
    assert_eq!(sim.s.publish_list(), Value::Array(vec![Value::str("ds")]));
    let got = sim.s.publish_get(&[k("ds"), k("missing")]);
    let Value::Array(items) = got else {
        panic!("{got:?}")
    };
    assert_eq!(items[0].get("data"), Some(&Value::Int(1)));
    assert_eq!(items[1], Value::Nil);

    sim.s.publish_delete(&[k("ds")]);
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(sim.s.publish_list(), Value::Array(vec![]));
}

#[test]
fn publishing_a_name_again_needs_override() {
    let mut sim = computed();
    let put = |sim: &mut Sim, v: i64, over: bool| {
        sim.s
            .publish_put(vec![(k("ds"), vec![k("c")], Value::Int(v))], over)
    };
    put(&mut sim, 1, false).unwrap();
    let err = put(&mut sim, 2, false).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    put(&mut sim, 3, true).unwrap();
    let got = sim.s.publish_get(&[k("ds")]);
    assert_eq!(got, Value::Array(vec![got_map(&got)]));
    assert_eq!(got_map(&got).get("data"), Some(&Value::Int(3)));
    release_c(&mut sim);
    assert_eq!(
        sim.s.task_count(),
        3,
        "held once by the dataset, not leaked"
    );
    sim.s.publish_delete(&[k("ds")]);
    assert_eq!(sim.s.task_count(), 0);
}

fn got_map(v: &Value) -> Value {
    match v {
        Value::Array(items) => items[0].clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_flush_is_seen_once() {
    let mut sim = Sim::new();
    assert!(!sim.s.take_publish_flush("u1"));
    sim.cop(Value::map([
        ("op", Value::str("publish_flush_batched_send")),
        ("uid", Value::str("u1")),
    ]))
    .unwrap();
    assert!(sim.s.take_publish_flush("u1"));
    assert!(!sim.s.take_publish_flush("u1"));
}

#[test]
fn a_variable_lets_go_of_a_replaced_future_only_after_the_getter_confirms() {
    let mut sim = computed();
    assert!(!sim.s.variable_set_future(k("v"), k("nope")), "unknown key");
    assert!(sim.s.variable_set_future(k("v"), k("c")));
    let record = sim.s.variable_get(&k("v")).expect("set");
    assert_eq!(record.get("type"), Some(&Value::str("Future")));
    assert_eq!(record.get("state"), Some(&Value::str("memory")));
    let token = record
        .get("token")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    release_c(&mut sim);
    // replaced before the getter confirmed: c stays
    sim.s.variable_set_data(k("v"), Value::Int(5));
    assert_eq!(sim.s.task_count(), 3);
    assert_eq!(
        sim.s.variable_get(&k("v")).unwrap().get("value"),
        Some(&Value::Int(5))
    );
    // a second client confirms, then lets go: nobody holds c any more
    let other = sim.add_client("Client-2");
    sim.cop_as(
        other,
        Value::map([
            ("op", Value::str("variable-future-received-confirm")),
            ("name", Value::str("v")),
            ("key", kv(&k("c"))),
            ("token", Value::str(token)),
        ]),
    )
    .unwrap();
    assert_eq!(sim.s.task_count(), 3, "the getter holds c now");
    sim.cop_as(
        other,
        Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(vec![kv(&k("c"))])),
            ("client", Value::str("Client-2")),
        ]),
    )
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn deleting_a_variable_releases_its_future_and_pseudo_client() {
    let mut sim = computed();
    assert!(sim.s.variable_set_future(k("v"), k("c")));
    release_c(&mut sim);
    assert_eq!(sim.s.task_count(), 3);
    sim.cop(Value::map([
        ("op", Value::str("variable_delete")),
        ("name", Value::str("v")),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
    assert!(sim.s.variable_get(&k("v")).is_none());
    assert!(sim.s.client_id("variable-v").is_none());
}

#[test]
fn an_event_waiter_sees_a_set_even_if_cleared_at_once() {
    let mut sim = Sim::new();
    let e = k("ev");
    assert!(!sim.s.event_is_set(&e));
    let ticket = sim.s.event_wait_begin(e.clone());
    assert!(!sim.s.event_wait_done(&e, ticket));
    sim.s.event_set(e.clone());
    sim.s.event_clear(&e);
    assert!(!sim.s.event_is_set(&e));
    assert!(
        sim.s.event_wait_done(&e, ticket),
        "the set happened while it waited"
    );
    sim.s.event_wait_end(&e);
    // a new waiter does not see the old set
    let t2 = sim.s.event_wait_begin(e.clone());
    assert!(!sim.s.event_wait_done(&e, t2));
    sim.s.event_wait_end(&e);
    sim.s.event_set(e.clone());
    assert!(sim.s.event_is_set(&e));
    let t3 = sim.s.event_wait_begin(e.clone());
    assert!(sim.s.event_wait_done(&e, t3), "set: returns at once");
    sim.s.event_wait_end(&e);
}

#[test]
fn python_str_of_names() {
    let cases = [
        (Value::str("x"), "x"),
        (
            Value::Array(vec![Value::str("x"), Value::Int(1)]),
            "('x', 1)",
        ),
        (Value::Array(vec![Value::str("x")]), "('x',)"),
        (Value::Int(3), "3"),
        (Value::Float(2.0), "2.0"),
    ];
    for (v, want) in cases {
        assert_eq!(python_str(&v), want, "{v:?}");
    }
}

#[test]
fn semaphore_leases_are_counted_refreshed_and_timed_out() {
    use dask_core::semaphores::Release;
    let mut sim = Sim::new();
    let s = k("sem");
    assert!(
        sim.s.semaphore_try_acquire(&s, "a", 0.0).is_err(),
        "unknown"
    );
    sim.s.semaphore_register(s.clone(), 2, Some(10.0)).unwrap();
    sim.s.semaphore_register(s.clone(), 2, Some(10.0)).unwrap();
    let err = sim.s.semaphore_register(s.clone(), 3, None).unwrap_err();
    assert!(
        err.contains("Inconsistent max leases: 3, expected: 2"),
        "{err}"
    );
    // (lease, now, granted)
    let table = [
        ("a", 0.0, true),
        ("b", 1.0, true),
        ("c", 2.0, false),
        ("a", 3.0, true),
    ];
    for (lease, now, want) in table {
        assert_eq!(
            sim.s.semaphore_try_acquire(&s, lease, now),
            Ok(want),
            "{lease}"
        );
    }
    assert_eq!(sim.s.semaphore_value(&s), 2);
    assert_eq!(sim.s.semaphore_release(&s, "b"), Release::Released);
    assert_eq!(sim.s.semaphore_release(&s, "b"), Release::NotHeld);
    assert_eq!(
        sim.s.semaphore_release(&k("other"), "b"),
        Release::UnknownSemaphore
    );
    assert_eq!(sim.s.semaphore_try_acquire(&s, "c", 4.0), Ok(true));
    // "a" refreshed at 12, "c" never again: at 14.5 only "c" is stale
    assert!(sim
        .s
        .semaphore_refresh_leases(&s, &["a".into()], 12.0)
        .is_empty());
    assert_eq!(sim.s.semaphore_expire_leases(14.5), 1);
    assert_eq!(sim.s.semaphore_value(&s), 1);
    assert_eq!(
        sim.s.semaphore_refresh_leases(&s, &["c".into()], 15.0),
        vec!["c".to_string()],
        "refreshing a timed-out lease is reported (and holds it again)"
    );
    // the /metrics counters: grants (a's idempotent re-acquire counts
    // again, as in Python), one release and one lease taken back
    sim.s.semaphore_acquire_begin(&s);
    let [snap] = sim.s.semaphore_snapshots().try_into().unwrap();
    assert_eq!(
        (snap.max_leases, snap.active_leases, snap.pending_leases),
        (2, 2, 1)
    );
    assert_eq!((snap.acquire_total, snap.release_total), (4, 2));
    sim.s.semaphore_acquire_end(&s, 1.0);
    sim.s.semaphore_acquire_begin(&s);
    sim.s.semaphore_acquire_end(&s, 3.0);
    let [snap] = sim.s.semaphore_snapshots().try_into().unwrap();
    assert_eq!(snap.pending_leases, 0);
    assert_eq!(
        snap.average_pending_lease_time, 1.75,
        "((0 + 1) / 2 + 3) / 2"
    );
    assert_eq!(snap.name, "sem");
    assert_eq!(
        sim.s.semaphore_close(&s),
        vec!["a".to_string(), "c".to_string()]
    );
    assert_eq!(sim.s.semaphore_value(&s), 0);
    assert!(sim.s.semaphore_snapshots().is_empty());
}

#[test]
fn a_queue_holds_its_futures_until_a_getter_takes_them() {
    use dask_core::queues::QueueItem;
    let mut sim = computed();
    let q = k("q");
    assert!(
        sim.s
            .queue_try_put(&q, QueueItem::Data(Value::Int(1)))
            .is_err(),
        "no queue"
    );
    sim.s.queue_create(q.clone(), 2);
    sim.s.queue_create(q.clone(), 2); // a second user
    assert_eq!(
        sim.s.queue_try_put(&q, QueueItem::Data(Value::Int(1))),
        Ok(true)
    );
    assert_eq!(sim.s.queue_try_put(&q, QueueItem::Future(k("c"))), Ok(true));
    assert_eq!(
        sim.s.queue_try_put(&q, QueueItem::Data(Value::Int(3))),
        Ok(false),
        "full"
    );
    assert_eq!(sim.s.queue_qsize(&q), Ok(2));
    release_c(&mut sim);
    assert_eq!(sim.s.task_count(), 3, "the queue holds c");
    let first = sim.s.queue_try_get(&q).unwrap().unwrap();
    assert_eq!(first.get("type"), Some(&Value::str("msgpack")));
    assert_eq!(first.get("value"), Some(&Value::Int(1)));
    let second = sim.s.queue_try_get(&q).unwrap().unwrap();
    assert_eq!(second.get("type"), Some(&Value::str("Future")));
    assert_eq!(second.get("state"), Some(&Value::str("memory")));
    assert_eq!(sim.s.queue_try_get(&q), Ok(None));
    // the getter confirms (and holds c); the queue lets go; then the getter
    sim.cop(Value::map([
        ("op", Value::str("queue-future-release")),
        ("name", Value::str("q")),
        ("key", kv(&k("c"))),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 3, "the getter holds c now");
    release_c(&mut sim);
    assert_eq!(sim.s.task_count(), 0);
    // the queue goes with its last user
    sim.cop(Value::map([
        ("op", Value::str("queue_release")),
        ("name", Value::str("q")),
    ]))
    .unwrap();
    assert_eq!(sim.s.queue_qsize(&q), Ok(0));
    sim.cop(Value::map([
        ("op", Value::str("queue_release")),
        ("name", Value::str("q")),
    ]))
    .unwrap();
    assert!(sim.s.queue_qsize(&q).is_err());
}

#[test]
fn releasing_a_queue_releases_the_futures_left_in_it() {
    use dask_core::queues::QueueItem;
    let mut sim = computed();
    let q = k("q");
    sim.s.queue_create(q.clone(), 0);
    assert_eq!(sim.s.queue_try_put(&q, QueueItem::Future(k("c"))), Ok(true));
    release_c(&mut sim);
    assert_eq!(sim.s.task_count(), 3);
    sim.s.queue_release(&q);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn events_are_kept_per_topic_up_to_the_limit() {
    use dask_core::ops_worker::EVENTS_PER_TOPIC;
    let mut sim = Sim::new();
    for i in 0..(EVENTS_PER_TOPIC as i64 + 5) {
        sim.s.log_event("busy", Value::Int(i), i as f64);
    }
    sim.s.log_event("quiet", Value::str("once"), 7.0);
    let busy = sim.s.get_events(Some("busy"));
    let busy = busy.as_seq().unwrap();
    assert_eq!(busy.len(), EVENTS_PER_TOPIC, "the oldest are dropped");
    assert_eq!(
        busy[0],
        Value::Array(vec![Value::Float(5.0), Value::Int(5)])
    );
    assert_eq!(sim.s.get_events(Some("none")), Value::Array(vec![]));
    let all = sim.s.get_events(None);
    let topics: Vec<String> = all
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_string())
        .collect();
    // the scheduler's own events (the default client's `add-client`) too
    assert_eq!(topics, ["Client-1", "all", "busy", "quiet"]);
}

/// `action` of each event of `topic`.
fn actions(sim: &Sim, topic: &str) -> Vec<String> {
    sim.s
        .get_events(Some(topic))
        .as_seq()
        .unwrap()
        .iter()
        .map(|e| {
            let msg = &e.as_seq().unwrap()[1];
            msg.get("action")
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_scheduler_logs_its_own_events_as_python_does() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    assert_eq!(
        actions(&sim, "tcp://a:1"),
        ["add-worker", "worker-status-change"]
    );
    sim.submit(&["x"], vec![t("x", &[])]);
    assert_eq!(actions(&sim, "scheduler"), ["update-graph"]);
    assert_eq!(actions(&sim, "Client-1"), ["add-client", "update-graph"]);
    let x = sim.one_compute();
    sim.finish(&x);
    sim.s.update_data(
        Some(sim.client),
        &[(k("scattered"), vec!["tcp://a:1".to_string()])],
        &[(k("scattered"), 8)],
    );
    sim.submit(&["y"], vec![t("y", &["x"])]);
    sim.drain();
    sim.s.remove_worker(a, 5.0);
    let all = sim.s.get_events(Some("all"));
    let last = &all.as_seq().unwrap().last().unwrap().as_seq().unwrap()[1];
    assert_eq!(
        last.get("action").and_then(Value::as_str),
        Some("remove-worker")
    );
    assert_eq!(
        last.get("worker").and_then(Value::as_str),
        Some("tcp://a:1")
    );
    let keys = |field: &str| keys_of(last.get(field).unwrap());
    assert_eq!(keys("processing-tasks"), vec![k("y")]);
    assert_eq!(keys("lost-computed-tasks"), vec![k("x")]);
    assert_eq!(keys("lost-scattered-tasks"), vec![k("scattered")]);
    assert_eq!(last.get("expected"), Some(&Value::Bool(false)));
    let c = sim.add_client("Client-2");
    sim.s.remove_client(c, 6.0);
    assert_eq!(actions(&sim, "Client-2"), ["add-client", "remove-client"]);
}

#[test]
fn departed_workers_and_clients_topics_are_dropped_after_the_cleanup_delay() {
    let mut sim = Sim::with_config(dask_core::Config {
        events_cleanup_delay: 10.0,
        ..dask_core::Config::default()
    });
    let a = sim.worker("tcp://a:1", 1);
    let b = sim.worker("tcp://b:1", 1);
    let c = sim.add_client("Client-2");
    sim.s.remove_worker(a, 100.0);
    sim.s.remove_worker(b, 101.0);
    sim.s.remove_client(c, 102.0);
    // b comes back under the same address before its delay ends
    sim.now = 105.0;
    sim.worker("tcp://b:1", 1);
    assert_eq!(sim.s.cleanup_event_topics(109.9), 0, "not yet");
    assert_eq!(sim.s.cleanup_event_topics(111.0), 1, "a's topic, not b's");
    assert_eq!(sim.s.get_events(Some("tcp://a:1")), Value::Array(vec![]));
    assert!(!actions(&sim, "tcp://b:1").is_empty());
    assert_eq!(actions(&sim, "Client-2"), ["add-client", "remove-client"]);
    assert_eq!(sim.s.cleanup_event_topics(112.0), 1, "the client's");
    assert_eq!(sim.s.get_events(Some("Client-2")), Value::Array(vec![]));
    // `all` keeps the record of both
    assert!(
        actions(&sim, "all")
            .iter()
            .filter(|a| *a == "remove-worker")
            .count()
            == 2
    );
    assert_eq!(sim.s.cleanup_event_topics(1e9), 0, "nothing left to drop");
}

#[test]
fn multi_locks_are_taken_together_and_handed_on_in_order() {
    let mut sim = Sim::new();
    let names = |ls: &[&str]| ls.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // a holds x and y; b wants y and z: it gets z, waits for y
    assert_eq!(
        sim.s.multi_lock_request(&names(&["x", "y"]), "a", 2),
        Ok(true)
    );
    assert_eq!(
        sim.s.multi_lock_request(&names(&["y", "z"]), "b", 2),
        Ok(false)
    );
    assert!(!sim.s.multi_lock_acquired("b"));
    // c needs only one of y, z, w: w is free
    assert_eq!(
        sim.s.multi_lock_request(&names(&["y", "z", "w"]), "c", 1),
        Ok(true)
    );
    assert!(
        sim.s.multi_lock_request(&names(&["q"]), "a", 1).is_err(),
        "a already queued"
    );
    assert!(
        sim.s.multi_lock_request(&names(&["q"]), "d", 2).is_err(),
        "more than asked"
    );
    // a lets go: b is at the front of y now and holds both
    assert!(sim.s.multi_lock_release("a"));
    assert!(sim.s.multi_lock_acquired("b"));
    assert!(sim.s.multi_lock_release("b"));
    assert!(sim.s.multi_lock_release("c"));
    assert!(!sim.s.multi_lock_release("c"), "nothing left to release");
    // everything is free again
    assert_eq!(
        sim.s
            .multi_lock_request(&names(&["x", "y", "z", "w"]), "e", 4),
        Ok(true)
    );
}

#[test]
fn a_variable_deleted_while_a_getter_confirms_goes_once_it_has() {
    let mut sim = computed();
    assert!(sim.s.variable_set_future(k("v"), k("c")));
    let token = sim
        .s
        .variable_get(&k("v"))
        .and_then(|r| r.get("token").and_then(Value::as_str).map(str::to_string))
        .unwrap();
    release_c(&mut sim);
    sim.cop(Value::map([
        ("op", Value::str("variable_delete")),
        ("name", Value::str("v")),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 3, "held until the getter confirms");
    assert!(sim.s.client_id("variable-v").is_some());
    sim.cop(Value::map([
        ("op", Value::str("variable-future-received-confirm")),
        ("name", Value::str("v")),
        ("key", kv(&k("c"))),
        ("token", Value::str(token)),
    ]))
    .unwrap();
    assert!(
        sim.s.client_id("variable-v").is_none(),
        "the pseudo-client is gone"
    );
    assert_eq!(sim.s.task_count(), 3, "the getter (Client-1) holds c now");
    release_c(&mut sim);
    assert_eq!(sim.s.task_count(), 0);
}

/// The `metrics` of the last `update-graph` event on `scheduler`.
fn last_update_graph_metrics(sim: &Sim) -> Value {
    let events = sim.s.get_events(Some("scheduler"));
    events
        .as_seq()
        .unwrap()
        .iter()
        .rev()
        .map(|e| &e.as_seq().unwrap()[1])
        .find(|m| m.get("action").and_then(Value::as_str) == Some("update-graph"))
        .and_then(|m| m.get("metrics").cloned())
        .expect("an update-graph event")
}

#[test]
fn key_collisions_are_counted_as_python_counts_them() {
    // Python's `_generate_taskstates`: a known task (with its run_spec)
    // submitted again with other dependencies is a collision; the scheduler
    // keeps its own task. Same dependencies, or a task known only as data,
    // are not.
    struct Case {
        what: &'static str,
        second: Vec<T>,
        requested: &'static str,
        collisions: i64,
    }
    let cases = [
        Case {
            what: "same dependencies",
            second: vec![t("a", &[]), t("x", &["a"])],
            requested: "x",
            collisions: 0,
        },
        Case {
            what: "another dependency",
            second: vec![t("b", &[]), t("x", &["b"])],
            requested: "x",
            collisions: 1,
        },
        Case {
            what: "one more dependency",
            second: vec![t("a", &[]), t("b", &[]), t("x", &["a", "b"])],
            requested: "x",
            collisions: 1,
        },
        Case {
            what: "none where it had one",
            second: vec![t("x", &[])],
            requested: "x",
            collisions: 1,
        },
        Case {
            what: "a new key depending on the known one",
            second: vec![t("y", &["x"])],
            requested: "y",
            collisions: 0,
        },
    ];
    for case in cases {
        let mut sim = Sim::new();
        sim.worker("tcp://a:1", 1);
        sim.submit(&["x"], vec![t("a", &[]), t("x", &["a"])]);
        assert_eq!(
            last_update_graph_metrics(&sim).get("key_collisions"),
            Some(&Value::Int(0)),
            "{}",
            case.what
        );
        sim.submit(&[case.requested], case.second);
        assert_eq!(
            last_update_graph_metrics(&sim).get("key_collisions"),
            Some(&Value::Int(case.collisions)),
            "{}",
            case.what
        );
        // the state stays consistent, and the computation finishes
        sim.check();
        sim.run_all();
        assert_eq!(sim.state("x"), Some(TaskState::Memory), "{}", case.what);
        assert_eq!(
            sim.state(case.requested),
            Some(TaskState::Memory),
            "{}",
            case.what
        );
    }
}
