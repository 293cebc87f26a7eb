//! Stream ops: replies, exact wire shapes, malformed input.

mod common;

use common::*;
use dask_core::{CoreError, Outgoing, TaskState, WorkerStatus};
use dask_wire::Value;
use std::collections::BTreeMap;

const COMPUTE_TASK_FIELDS: [&str; 12] = [
    "op",
    "key",
    "run_id",
    "priority",
    "stimulus_id",
    "who_has",
    "nbytes",
    "run_spec",
    "resource_restrictions",
    "actor",
    "annotations",
    "span_id",
];

/// Exact field sets of scheduler→worker stream ops (`handlers-2026.8.0.txt`):
/// a worker dies on a missing or extra field.
fn worker_op_fields(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "compute-task" => &COMPUTE_TASK_FIELDS,
        "free-keys" => &["op", "keys", "stimulus_id"],
        "remove-replicas" => &["op", "keys", "stimulus_id"],
        "refresh-who-has" => &["op", "who_has", "stimulus_id"],
        "acquire-replicas" => &["op", "who_has", "nbytes", "stimulus_id"],
        "steal-request" => &["op", "key", "stimulus_id"],
        "remove-worker" => &["op", "worker", "stimulus_id"],
        "worker-status-change" => &["op", "status", "stimulus_id"],
        _ => return None,
    })
}

fn assert_worker_msgs_well_formed(out: &[Outgoing]) {
    for m in out {
        if let Outgoing::Worker(_, v) = m {
            let name = op(v);
            let want = worker_op_fields(name).unwrap_or_else(|| panic!("unexpected op {name}"));
            let mut got = field_names(v);
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "fields of {name}: {v:?}");
            assert!(v.get("stimulus_id").unwrap().as_str_key().is_some());
        }
    }
}

#[test]
fn compute_task_has_exactly_the_worker_fields() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    assert_eq!(field_names(&a.msg), COMPUTE_TASK_FIELDS);
    let m = &a.msg;
    assert_eq!(m.get("who_has"), Some(&Value::Map(vec![])));
    assert_eq!(m.get("nbytes"), Some(&Value::Map(vec![])));
    assert_eq!(m.get("actor"), Some(&Value::Bool(false)));
    assert_eq!(m.get("span_id"), Some(&Value::Nil));
    assert_eq!(m.get("resource_restrictions"), Some(&Value::Nil));
    assert_eq!(m.get("annotations"), Some(&Value::Map(vec![])));
    assert_eq!(
        m.get("run_spec"),
        Some(&Value::Opaque(Box::new(run_spec()))),
        "run spec relayed verbatim"
    );
    assert!(m.get("stimulus_id").unwrap().as_str_key().is_some());
    sim.finish(&a);
    let b = sim.one_compute();
    assert_eq!(field_names(&b.msg), COMPUTE_TASK_FIELDS);
    // Every dependency in who_has and nbytes, with non-empty address lists.
    assert_eq!(b.who_has().len(), 1);
    assert!(b.who_has().values().all(|a| !a.is_empty()));
    assert_eq!(key_map(b.msg.get("nbytes").unwrap()).len(), 1);
}

#[test]
fn every_worker_message_in_a_busy_session_is_well_formed() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 2);
    let w1 = sim.worker_res("tcp://127.0.0.1:2", 2, &[("GPU", 1.0)]);
    let mut log = Vec::new();
    sim.submit(
        &["sum"],
        vec![
            t("a-1", &[]),
            t("a-2", &[]),
            t("g", &[]).ann("resources", Value::map([("GPU", Value::Int(1))])),
            t("e", &[]).ann("retries", Value::Int(1)),
            t("sum", &["a-1", "a-2", "g"]),
        ],
    );
    sim.submit(&["e"], vec![t("e", &[]).ann("retries", Value::Int(1))]);
    for _ in 0..20 {
        let out = sim.take();
        log.extend(out.iter().cloned());
        for m in out {
            if let Outgoing::Worker(w, v) = m {
                if op(&v) == "compute-task" {
                    let c = Compute {
                        worker: w,
                        key: key_of(v.get("key").unwrap()),
                        run_id: v.get("run_id").unwrap().as_i64().unwrap(),
                        msg: v,
                    };
                    if c.key == k("e") {
                        sim.fail(&c, exception("E"));
                    } else {
                        sim.finish(&c);
                    }
                }
            }
        }
    }
    sim.wop(
        w0,
        Value::map([
            ("op", Value::str("add-keys")),
            ("keys", Value::Array(vec![Value::str("nope")])),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    sim.wop(
        w0,
        Value::map([
            ("op", Value::str("request-refresh-who-has")),
            (
                "keys",
                Value::Array(vec![Value::str("sum"), Value::str("nope")]),
            ),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    sim.s.retry(None, &[k("e")], sim.now);
    sim.drain();
    sim.s.remove_client(sim.client, sim.now);
    sim.drain();
    sim.s.remove_worker(w1, sim.now);
    sim.drain();
    log.extend(sim.take());
    let ops: std::collections::BTreeSet<&str> = log
        .iter()
        .filter_map(|m| match m {
            Outgoing::Worker(_, v) => Some(op(v)),
            _ => None,
        })
        .collect();
    for want in [
        "compute-task",
        "free-keys",
        "remove-replicas",
        "refresh-who-has",
        "remove-worker",
    ] {
        assert!(ops.contains(want), "{want} not exercised: {ops:?}");
    }
    assert_worker_msgs_well_formed(&log);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn add_keys_for_unknown_key_answers_remove_replicas() {
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
            (
                "keys",
                Value::Array(vec![Value::str("x"), Value::str("unknown")]),
            ),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    let msgs = sim.take_worker(other);
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "remove-replicas");
    assert_eq!(field_names(&msgs[0]), ["op", "keys", "stimulus_id"]);
    assert_eq!(keys_of(msgs[0].get("keys").unwrap()), vec![k("unknown")]);
    // The known key gained a replica.
    assert_eq!(sim.who_has("x").len(), 2);
    assert_eq!(sim.state("unknown"), None);
}

#[test]
fn add_keys_for_key_not_in_memory_answers_remove_replicas() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.computes();
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("add-keys")),
            ("keys", Value::Array(vec![Value::str("x")])),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    let msgs = sim.take_worker(w);
    assert_eq!(op(&msgs[0]), "remove-replicas");
    assert_eq!(sim.state("x"), Some(TaskState::Processing));
}

#[test]
fn request_refresh_who_has_answers_refresh_who_has_and_free_keys() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish(&x);
    let other = if x.worker == w0 { w1 } else { w0 };
    sim.clear();
    sim.wop(
        other,
        Value::map([
            ("op", Value::str("request-refresh-who-has")),
            (
                "keys",
                Value::Array(vec![Value::str("x"), Value::str("gone")]),
            ),
            ("stimulus_id", Value::str("s")),
        ]),
    )
    .unwrap();
    let msgs = sim.take_worker(other);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(op(&msgs[0]), "refresh-who-has");
    assert_eq!(field_names(&msgs[0]), ["op", "who_has", "stimulus_id"]);
    let who_has = key_map(msgs[0].get("who_has").unwrap());
    assert_eq!(
        who_has,
        BTreeMap::from([(k("x"), Value::Array(vec![Value::str(sim.addr(x.worker))]))])
    );
    assert_eq!(op(&msgs[1]), "free-keys");
    assert_eq!(keys_of(msgs[1].get("keys").unwrap()), vec![k("gone")]);
}

#[test]
fn heartbeat_client_answers_adjust_heartbeat_interval() {
    let mut sim = Sim::new();
    sim.cop(Value::map([("op", Value::str("heartbeat-client"))]))
        .unwrap();
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "adjust-heartbeat-interval");
    // Python: heartbeat_interval(len(clients)) * 10 = 0.5 * 10 with few clients.
    assert_eq!(msgs[0].get("interval"), Some(&Value::Float(5.0)));
}

#[test]
fn heartbeat_client_interval_depends_on_clients_not_workers() {
    let mut sim = Sim::new();
    for i in 0..20 {
        sim.worker(&format!("tcp://127.0.0.1:{}", 1000 + i), 1);
    }
    sim.clear();
    sim.cop(Value::map([("op", Value::str("heartbeat-client"))]))
        .unwrap();
    let msgs = sim.client_msgs();
    assert_eq!(msgs[0].get("interval"), Some(&Value::Float(5.0)));
}

#[test]
fn heartbeat_worker_and_expiry() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let addr = sim.addr(w);
    assert_eq!(
        sim.s.heartbeat_worker(&addr, None, None, sim.now),
        Some(0.5)
    );
    assert_eq!(
        sim.s
            .heartbeat_worker("tcp://nobody:1", None, None, sim.now),
        None
    );
    assert!(sim.s.expired_workers(sim.now + 10.0).is_empty());
    assert_eq!(sim.s.expired_workers(sim.now + 301.0), vec![w]);
}

#[test]
fn duplicate_registration_is_rejected() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let dup_addr = sim
        .s
        .add_worker(registration("tcp://127.0.0.1:1", 1), sim.now);
    assert!(matches!(dup_addr, Err(CoreError::Registration(_))));
    let mut reg = registration("tcp://127.0.0.1:2", 1);
    reg.name = Value::str("tcp://127.0.0.1:1");
    assert!(matches!(
        sim.s.add_worker(reg, sim.now),
        Err(CoreError::Registration(_))
    ));
    assert_eq!(sim.s.cluster_totals().0, 1);
}

#[test]
fn registration_with_running_status_is_immediately_eligible() {
    let mut sim = Sim::new();
    sim.submit(&["x"], vec![t("x", &[])]);
    let mut reg = registration("tcp://127.0.0.1:1", 1);
    reg.status = WorkerStatus::Running;
    let w = sim.s.add_worker(reg, sim.now).unwrap();
    sim.drain();
    assert_eq!(sim.one_compute().worker, w);
}

#[test]
fn subscribe_topic_and_log_event() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let c2 = sim.add_client("Client-2");
    sim.cop(Value::map([
        ("op", Value::str("subscribe-topic")),
        ("topic", Value::str("print")),
    ]))
    .unwrap();
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("log-event")),
            ("topic", Value::str("print")),
            ("msg", Value::map([("args", Value::str("hello"))])),
        ]),
    )
    .unwrap();
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    assert_eq!(op(&msgs[0]), "event");
    assert_eq!(msgs[0].get("topic"), Some(&Value::str("print")));
    let event = msgs[0].get("event").unwrap().as_seq().unwrap();
    assert_eq!(event.len(), 2);
    assert_eq!(
        event[1].get("worker"),
        Some(&Value::str("tcp://127.0.0.1:1"))
    );
    assert!(sim.take_client(c2).is_empty(), "not subscribed");
    sim.cop(Value::map([
        ("op", Value::str("unsubscribe-topic")),
        ("topic", Value::str("print")),
    ]))
    .unwrap();
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("log-event")),
            ("topic", Value::Array(vec![Value::str("print")])),
            ("msg", Value::str("x")),
        ]),
    )
    .unwrap();
    assert!(sim.client_msgs().is_empty());
}

#[test]
fn ignored_worker_ops() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    for m in [
        Value::map([("op", Value::str("keep-alive"))]),
        Value::map([
            ("op", Value::str("long-running")),
            ("key", Value::str("x")),
            ("run_id", Value::Int(x.run_id)),
            ("compute_duration", Value::Nil),
            ("stimulus_id", Value::str("s")),
        ]),
        Value::map([
            ("op", Value::str("long-running")),
            ("key", Value::str("unknown")),
            ("stimulus_id", Value::str("s")),
        ]),
    ] {
        sim.wop(w, m).unwrap();
        assert!(sim.take().is_empty());
        assert_eq!(sim.state("x"), Some(TaskState::Processing));
    }
    sim.finish(&x);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
}

#[test]
fn ops_from_a_removed_worker_are_ignored() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.s.remove_worker(x.worker, sim.now);
    sim.drain();
    let x2 = sim.one_compute();
    assert_ne!(x2.worker, x.worker);
    let _ = (w0, w1);
    sim.clear();
    sim.finish(&x);
    assert!(sim.take().is_empty());
    assert_eq!(sim.state("x"), Some(TaskState::Processing));
}

/// Everything observable, for "changes nothing" checks.
fn snapshot(sim: &Sim) -> String {
    let who_has = key_map(&sim.s.who_has(None));
    let states: BTreeMap<_, _> = who_has
        .keys()
        .map(|key| (key.clone(), sim.s.task_state(key)))
        .collect();
    let sorted_map = |v: Value| -> BTreeMap<String, Vec<String>> {
        v.as_map()
            .unwrap()
            .iter()
            .map(|(a, ks)| {
                let mut ks: Vec<String> = keys_of(ks).iter().map(|k| k.to_string()).collect();
                ks.sort();
                (a.as_str().unwrap().to_string(), ks)
            })
            .collect()
    };
    format!(
        "{who_has:?}\n{states:?}\n{:?}\n{:?}\n{}",
        sorted_map(sim.s.has_what(None)),
        sorted_map(sim.s.processing(None)),
        sim.s.task_count()
    )
}

#[test]
fn malformed_worker_ops_are_rejected_without_effect() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.finish(&a);
    let b = sim.one_compute();
    sim.clear();
    let before = snapshot(&sim);
    let bad_key = Value::map([("not", Value::str("a key"))]);
    let cases: Vec<(&str, Value, bool)> = vec![
        ("no op", Value::map([("key", Value::str("b"))]), false),
        (
            "op not a string",
            Value::map([("op", Value::Int(3))]),
            false,
        ),
        ("not a map", Value::Array(vec![]), false),
        (
            "unknown op",
            Value::map([("op", Value::str("bogus"))]),
            true,
        ),
        (
            "task-finished without key",
            Value::map([
                ("op", Value::str("task-finished")),
                ("run_id", Value::Int(b.run_id)),
            ]),
            false,
        ),
        (
            "task-finished with a map as key",
            Value::map([
                ("op", Value::str("task-finished")),
                ("key", bad_key.clone()),
                ("run_id", Value::Int(b.run_id)),
            ]),
            false,
        ),
        (
            "task-finished with nil key",
            Value::map([("op", Value::str("task-finished")), ("key", Value::Nil)]),
            false,
        ),
        (
            "task-erred without key",
            Value::map([
                ("op", Value::str("task-erred")),
                ("run_id", Value::Int(b.run_id)),
            ]),
            false,
        ),
        (
            "add-keys without keys",
            Value::map([("op", Value::str("add-keys"))]),
            false,
        ),
        (
            "add-keys with keys not a list",
            Value::map([("op", Value::str("add-keys")), ("keys", Value::Int(1))]),
            false,
        ),
        (
            "add-keys with one bad key",
            Value::map([
                ("op", Value::str("add-keys")),
                (
                    "keys",
                    Value::Array(vec![Value::str("nope"), bad_key.clone()]),
                ),
            ]),
            false,
        ),
        (
            "worker-status-change without status",
            Value::map([("op", Value::str("worker-status-change"))]),
            false,
        ),
        (
            "worker-status-change with unknown status",
            Value::map([
                ("op", Value::str("worker-status-change")),
                ("status", Value::str("dancing")),
            ]),
            false,
        ),
        (
            "release-worker-data without key",
            Value::map([("op", Value::str("release-worker-data"))]),
            false,
        ),
        (
            "request-refresh-who-has with keys a string",
            Value::map([
                ("op", Value::str("request-refresh-who-has")),
                ("keys", Value::str("b")),
            ]),
            false,
        ),
        (
            "long-running without key",
            Value::map([("op", Value::str("long-running"))]),
            false,
        ),
        (
            "reschedule with bad key",
            Value::map([("op", Value::str("reschedule")), ("key", bad_key.clone())]),
            false,
        ),
    ];
    for (what, msg, unknown) in cases {
        let r = sim.s.handle_worker_op(w, &msg, sim.now);
        match r {
            Err(CoreError::UnknownOp(_)) => assert!(unknown, "{what}: {r:?}"),
            Err(CoreError::Malformed { .. }) => assert!(!unknown, "{what}: {r:?}"),
            other => panic!("{what}: expected an error, got {other:?}"),
        }
        assert!(sim.s.take_outbox().is_empty(), "{what}: no messages");
        assert_eq!(snapshot(&sim), before, "{what}: state unchanged");
    }
    // Still fully functional.
    sim.finish(&b);
    assert_eq!(sim.state("b"), Some(TaskState::Memory));
}

#[test]
fn malformed_client_ops_are_rejected_without_effect() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.clear();
    let before = snapshot(&sim);
    let bad_key = Value::map([("not", Value::str("a key"))]);
    let cases: Vec<(&str, Value, bool)> = vec![
        ("no op", Value::map([("keys", Value::Array(vec![]))]), false),
        (
            "unknown op",
            Value::map([("op", Value::str("frobnicate"))]),
            true,
        ),
        (
            "client-desires-keys without keys",
            Value::map([("op", Value::str("client-desires-keys"))]),
            false,
        ),
        (
            "client-desires-keys with a bad key",
            Value::map([
                ("op", Value::str("client-desires-keys")),
                ("keys", Value::Array(vec![bad_key.clone()])),
            ]),
            false,
        ),
        (
            "client-releases-keys with a string",
            Value::map([
                ("op", Value::str("client-releases-keys")),
                ("keys", Value::str("x")),
            ]),
            false,
        ),
        (
            "cancel-keys with an int",
            Value::map([("op", Value::str("cancel-keys")), ("keys", Value::Int(3))]),
            false,
        ),
        (
            "report-key without key",
            Value::map([("op", Value::str("report-key"))]),
            false,
        ),
        (
            "subscribe-topic without topic",
            Value::map([("op", Value::str("subscribe-topic"))]),
            false,
        ),
        (
            "update-data with who_has a list",
            Value::map([
                ("op", Value::str("update-data")),
                ("who_has", Value::Array(vec![])),
            ]),
            false,
        ),
    ];
    for (what, msg, unknown) in cases {
        let r = sim.s.handle_client_op(sim.client, &msg, sim.now);
        match r {
            Err(CoreError::UnknownOp(_)) => assert!(unknown, "{what}: {r:?}"),
            Err(CoreError::Malformed { .. }) => assert!(!unknown, "{what}: {r:?}"),
            other => panic!("{what}: expected an error, got {other:?}"),
        }
        assert!(sim.s.take_outbox().is_empty(), "{what}: no messages");
        assert_eq!(snapshot(&sim), before, "{what}: state unchanged");
    }
    sim.finish(&x);
    assert_eq!(
        sim.client_events(sim.client),
        vec![("key-in-memory".into(), vec![k("x")])]
    );
}

#[test]
fn keys_may_arrive_as_sets() {
    // Workers and clients sometimes send `{"__Set__": true, "as-list": [...]}`.
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        (
            "keys",
            Value::map([
                ("__Set__", Value::Bool(true)),
                ("as-list", Value::Array(vec![Value::str("x")])),
            ]),
        ),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn queries_reflect_state() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 3);
    let addr = sim.addr(w);
    sim.submit(&["x", "y"], vec![t("x", &[]), t("y", &[])]);
    let cs = sim.computes();
    sim.finish(&cs[0]);
    let done = cs[0].key.clone();
    let running = cs[1].key.clone();
    assert_eq!(
        sim.s.task_status(&[done.clone(), running.clone(), k("zz")]),
        Value::Map(vec![
            (done.to_value(), Value::str("memory")),
            (running.to_value(), Value::str("processing")),
            (k("zz").to_value(), Value::Nil),
        ])
    );
    assert_eq!(
        sim.s.ncores(None, true),
        Value::Map(vec![(Value::str(addr.as_str()), Value::Int(3))])
    );
    assert_eq!(sim.s.cluster_totals(), (1, 3, 0));
    assert_eq!(sim.s.scatter_targets(None), vec![addr.clone()]);
    assert_eq!(sim.s.resolve_workers("127.0.0.1"), vec![addr.clone()]);
    let (plan, missing) = sim.s.gather_plan(&[done.clone(), running.clone()]);
    assert_eq!(plan, BTreeMap::from([(addr, vec![done])]));
    assert_eq!(missing, vec![running]);
    assert!(!sim.s.is_idle());
}

#[test]
fn missing_data_drops_the_replica_and_recomputes() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.clear();
    let addr = sim.addr(w);
    sim.s.missing_data(&addr, &[k("x"), k("unknown")], sim.now);
    sim.s.missing_data("tcp://nobody:1", &[k("x")], sim.now);
    sim.drain();
    assert_eq!(
        sim.client_events(sim.client),
        vec![("lost-data".into(), vec![k("x")])]
    );
    let x = sim.one_compute();
    sim.finish(&x);
    assert_eq!(sim.state("x"), Some(TaskState::Memory));
}

#[test]
fn graph_failed_reports_task_erred_for_each_key() {
    let mut sim = Sim::new();
    let c = sim.client;
    let now = sim.now;
    sim.s.graph_failed(
        c,
        &[k("a"), k("b")],
        exception("RuntimeError"),
        Value::Nil,
        now,
    );
    sim.drain();
    // an `update-graph` event with status `error`, as Python's
    let events = sim.s.get_events(Some("scheduler"));
    let last = &events.as_seq().unwrap().last().unwrap().as_seq().unwrap()[1];
    assert_eq!(last.get("action"), Some(&Value::str("update-graph")));
    assert_eq!(last.get("status"), Some(&Value::str("error")));
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 2);
    for (m, key) in msgs.iter().zip(["a", "b"]) {
        assert_eq!(op(m), "task-erred");
        assert_eq!(key_of(m.get("key").unwrap()), k(key));
        assert_eq!(m.get("exception"), Some(&exception("RuntimeError")));
    }
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn killed_worker_blames_dependents() {
    let mut sim = Sim::with_config(dask_core::Config {
        allowed_failures: 0,
        ..dask_core::Config::default()
    });
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    sim.one_compute();
    sim.s.remove_worker(w, sim.now);
    sim.drain();
    assert_eq!(sim.state("a"), Some(TaskState::Erred));
    assert_eq!(sim.state("b"), Some(TaskState::Erred));
    let msgs = sim.client_msgs();
    assert_eq!(msgs.len(), 1);
    assert_eq!(key_of(msgs[0].get("key").unwrap()), k("b"));
    let Some(Value::Bin(p)) = msgs[0].get("exception") else {
        panic!("{msgs:?}")
    };
    assert!(String::from_utf8_lossy(p).contains("KilledWorker"));
    // Retrying after a new worker joins runs the chain.
    sim.worker("tcp://127.0.0.1:2", 1);
    sim.s.retry(Some(sim.client), &[k("b")], sim.now);
    sim.drain();
    assert_eq!(sim.run_all(), vec![k("a"), k("b")]);
    assert_eq!(sim.state("b"), Some(TaskState::Memory));
}

/// `MemorySampler`'s readings: the workers' memory summed as Python's
/// `MemoryState.sum`, then each measure derived from the sum.
#[test]
fn cluster_memory_sums_the_workers_readings() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://127.0.0.1:1", 1);
    let b = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let c = sim.one_compute();
    sim.finish_with(c.worker, &c.key, c.run_id, 300);
    let metrics = |memory: i64, disk: i64| {
        Value::map([
            ("memory", Value::Int(memory)),
            (
                "spilled_bytes",
                Value::map([("memory", Value::Int(0)), ("disk", Value::Int(disk))]),
            ),
        ])
    };
    for (w, memory, disk) in [(a, 1_000, 50), (b, 2_000, 0)] {
        let addr = sim.addr(w);
        sim.s
            .heartbeat_worker(&addr, Some(metrics(memory, disk)), None, sim.now);
    }
    // process 3000, managed 300 (x's nbytes), spilled 50; unmanaged_old is
    // the minimum unmanaged over the window: one reading each, so all of it
    let table = [
        ("process", 3_000),
        ("managed", 300),
        ("spilled", 50),
        ("managed_total", 350),
        ("unmanaged", 2_700),
        ("unmanaged_old", 2_700),
        ("unmanaged_recent", 0),
        ("optimistic", 3_000),
    ];
    for (measure, want) in table {
        assert_eq!(sim.s.cluster_memory(measure), Some(want), "{measure}");
    }
    assert_eq!(sim.s.cluster_memory("_private"), None);
    assert_eq!(sim.s.cluster_memory("nbytes"), None);
}
