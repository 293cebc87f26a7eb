//! Events for scheduler plugins: recorded only for the hooks asked for, in
//! the order Python's scheduler calls them, with the arguments its hooks
//! get.

mod common;

use common::*;
use dask_core::pluginfeed::hooks;
use dask_wire::Value;

/// `[hook, args...]` of each event, stimulus ids (the last argument of
/// `transition`, `update_graph` and `remove_worker`) dropped, and without
/// the `log_event`s of the scheduler's own events (`{"action": ...}`, which
/// plugins see too, as in Python).
fn events(sim: &mut Sim) -> Vec<Vec<Value>> {
    sim.s
        .drain_plugin_events()
        .into_iter()
        .filter(|e| {
            let items = e.as_seq().unwrap();
            !(items[0].as_str() == Some("log_event") && items[2].get("action").is_some())
        })
        .map(|e| {
            let Value::Array(mut items) = e else {
                panic!("not an array: {e}")
            };
            let hook = items[0].as_str().unwrap().to_string();
            if matches!(
                hook.as_str(),
                "transition" | "update_graph" | "remove_worker"
            ) {
                let stimulus = decoded(items.pop().unwrap());
                assert!(
                    stimulus.as_str().is_some_and(|s| !s.is_empty()),
                    "{hook} without a stimulus id"
                );
            }
            items.into_iter().map(decoded).collect()
        })
        .collect()
}

/// Raw (pre-encoded) values decoded, inside arrays too.
fn decoded(v: Value) -> Value {
    match v {
        Value::Raw(b) => dask_wire::msgpack::decode(&b).unwrap(),
        Value::Array(items) => Value::Array(items.into_iter().map(decoded).collect()),
        Value::Map(items) => Value::Map(
            items
                .into_iter()
                .map(|(k, v)| (decoded(k), decoded(v)))
                .collect(),
        ),
        other => other,
    }
}

fn s(x: &str) -> Value {
    Value::str(x)
}

fn transition(key: &str, start: &str, finish: &str) -> Vec<Value> {
    vec![s("transition"), s(key), s(start), s(finish)]
}

#[test]
fn nothing_is_recorded_without_plugins() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.finish(&x);
    sim.s.log_event("all", s("hello"), 2.0);
    assert!(sim.s.drain_plugin_events().is_empty());
}

#[test]
fn each_hook_records_what_python_passes_it() {
    let mut sim = Sim::new();
    sim.s.set_plugin_hooks(u16::MAX);
    let a = sim.worker("tcp://a:1", 1);
    assert_eq!(
        events(&mut sim),
        vec![vec![s("add_worker"), s("tcp://a:1")]]
    );
    sim.submit(
        &["y"],
        vec![t("x", &[]).ann("retries", Value::Int(2)), t("y", &["x"])],
    );
    let got = events(&mut sim);
    // the graph first, then its transitions
    assert_eq!(
        got[0][..5],
        [
            s("update_graph"),
            s("Client-1"),
            Value::Array(vec![s("y")]),
            Value::Array(vec![s("x"), s("y")]),
            Value::map([("retries", Value::map([("x", Value::Int(2))]))]),
        ]
    );
    // each task's priority, as the wire carries it
    let priority = key_map(&got[0][5]);
    assert_eq!(priority.len(), 2);
    assert!(priority
        .values()
        .all(|p| p.as_seq().is_some_and(|p| p.len() == 3)));
    let mut rest = got[1..].to_vec();
    rest.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        rest,
        vec![
            transition("x", "released", "waiting"),
            transition("x", "waiting", "processing"),
            transition("y", "released", "waiting"),
        ]
    );
    let x = sim.one_compute();
    sim.finish(&x);
    let y = sim.one_compute();
    sim.finish(&y);
    let got = events(&mut sim);
    for step in [
        transition("x", "processing", "memory"),
        transition("y", "waiting", "processing"),
        transition("y", "processing", "memory"),
        transition("x", "memory", "released"),
    ] {
        assert!(got.contains(&step), "{step:?} missing from {got:?}");
    }
    sim.s.log_event("my-topic", s("hello"), 3.0);
    assert_eq!(
        events(&mut sim),
        vec![vec![s("log_event"), s("my-topic"), s("hello")]]
    );
    let c = sim.add_client("Client-2");
    sim.s.remove_client(c, 4.0);
    assert_eq!(
        events(&mut sim),
        vec![
            vec![s("add_client"), s("Client-2")],
            vec![s("remove_client"), s("Client-2")],
        ]
    );
    sim.s.remove_worker(a, 5.0);
    let got = events(&mut sim);
    assert_eq!(got.last(), Some(&vec![s("remove_worker"), s("tcp://a:1")]));
    assert!(
        got.contains(&transition("y", "memory", "released")),
        "{got:?}"
    );
    sim.s.restart_forget_all(6.0);
    assert_eq!(events(&mut sim)[0], vec![s("restart")]);
}

#[test]
fn only_the_hooks_asked_for_are_recorded_and_zero_stops_recording() {
    let mut sim = Sim::new();
    sim.s.set_plugin_hooks(hooks::ADD_WORKER | hooks::LOG_EVENT);
    sim.worker("tcp://a:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.s.log_event("t", s("m"), 2.0);
    assert_eq!(
        events(&mut sim),
        vec![
            vec![s("add_worker"), s("tcp://a:1")],
            vec![s("log_event"), s("t"), s("m")]
        ]
    );
    sim.s.log_event("t", s("undrained"), 2.5);
    sim.s.set_plugin_hooks(0);
    sim.s.log_event("t", s("m2"), 3.0);
    assert!(sim.s.drain_plugin_events().is_empty());
    assert_eq!(
        hooks::from_names(["transition", "restart", "not-a-hook"]),
        hooks::TRANSITION | hooks::RESTART
    );
}

#[test]
fn a_queued_task_sent_to_a_freed_thread_is_a_queued_to_processing_transition() {
    let mut sim = Sim::new();
    sim.s.set_plugin_hooks(hooks::TRANSITION);
    sim.worker("tcp://a:1", 1);
    let keys: Vec<String> = (0..10).map(|i| format!("x-{i}")).collect();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&names, names.iter().map(|k| t(k, &[])).collect());
    let got = events(&mut sim);
    assert!(
        got.iter()
            .any(|e| e[2] == s("waiting") && e[3] == s("queued")),
        "root tasks beyond the thread are queued: {got:?}"
    );
    let first = sim.computes();
    assert!(!first.is_empty());
    sim.finish(&first[0]);
    let got = events(&mut sim);
    assert!(
        got.iter()
            .any(|e| e[2] == s("queued") && e[3] == s("processing")),
        "{got:?}"
    );
}
