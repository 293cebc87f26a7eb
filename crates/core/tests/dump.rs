//! Debugging helpers: `dump_state` (the scheduler's part of
//! `Client.dump_cluster_state`) and `get_task_metadata` blocks. The dump has
//! Python's field names and other objects named by their Python `repr`.

mod common;

use common::*;
use dask_wire::Value;

fn dump(sim: &Sim, exclude: &[&str]) -> Value {
    let exclude: Vec<String> = exclude.iter().map(|e| e.to_string()).collect();
    Value::map(sim.s.dump_state(&exclude))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_seq()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tasks_workers_clients_and_groups_in_pythons_shape() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let c = sim.one_compute();
    sim.finish(&c);
    assert_eq!(sim.one_compute().key, k("b"));

    let d = dump(&sim, &["run_spec"]);
    let tasks = d.get("tasks").unwrap();
    let a = tasks.get("a").unwrap();
    assert_eq!(a.get("state").and_then(Value::as_str), Some("memory"));
    assert_eq!(a.get("nbytes").and_then(Value::as_i64), Some(100));
    // the result's type name; b has no result yet
    assert_eq!(a.get("type").and_then(Value::as_str), Some("int"));
    assert_eq!(
        strs(a.get("dependents").unwrap()),
        ["<TaskState 'b' processing>"]
    );
    let who_has = strs(a.get("who_has").unwrap());
    assert_eq!(who_has.len(), 1);
    assert!(
        who_has[0].starts_with("<WorkerState 'tcp://a:1', name: ")
            && who_has[0].ends_with("status: running, memory: 1, processing: 1>"),
        "{who_has:?}"
    );
    let b = tasks.get("b").unwrap();
    assert_eq!(b.get("type"), Some(&Value::Nil));
    assert_eq!(
        strs(b.get("dependencies").unwrap()),
        ["<TaskState 'a' memory>"]
    );
    assert!(b
        .get("processing_on")
        .and_then(Value::as_str)
        .is_some_and(|w| w.contains("'tcp://a:1'")));
    assert_eq!(
        b.get("prefix").and_then(Value::as_str),
        Some("<b: processing: 1>")
    );
    assert_eq!(
        strs(b.get("who_wants").unwrap()),
        ["<Client 'Client-1'>"],
        "the default client holds b"
    );

    let w = d.get("workers").unwrap().get("tcp://a:1").unwrap();
    assert_eq!(
        strs(w.get("processing").unwrap()),
        ["<TaskState 'b' processing>"]
    );
    assert_eq!(strs(w.get("has_what").unwrap()), ["<TaskState 'a' memory>"]);
    assert_eq!(w.get("nthreads").and_then(Value::as_i64), Some(1));

    let groups = d.get("task_groups").unwrap();
    let ga = groups.get("a").unwrap();
    assert_eq!(
        ga.get("states")
            .unwrap()
            .get("memory")
            .and_then(Value::as_i64),
        Some(1)
    );
    assert_eq!(ga.get("done"), Some(&Value::Bool(true)));
    assert_eq!(strs(ga.get("types").unwrap()), ["int"]);
    assert_eq!(
        groups.get("b").unwrap().get("done"),
        Some(&Value::Bool(false))
    );

    let client = d.get("clients").unwrap().get("Client-1").unwrap();
    assert_eq!(
        strs(client.get("wants_what").unwrap()),
        ["<TaskState 'b' processing>"]
    );
    // the log is kept by default: b's records are there, as 6-tuples
    let Some(Value::Array(log)) = d.get("transition_log") else {
        panic!("no transition_log")
    };
    assert!(log.iter().any(|r| matches!(
        r,
        Value::Array(f) if f.len() == 6 && f[0].as_str() == Some("b") && f[2].as_str() == Some("processing")
    )));
    assert!(d.get("transition_counter").and_then(Value::as_i64).unwrap() > 0);
}

#[test]
fn excluded_names_are_left_out_at_every_level() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.submit(&["a"], vec![t("a", &[])]);
    let d = dump(&sim, &["who_has", "events", "processing"]);
    assert!(d.get("events").is_none());
    let a = d.get("tasks").unwrap().get("a").unwrap();
    assert!(a.get("who_has").is_none());
    assert!(a.get("state").is_some());
    let w = d.get("workers").unwrap().get("tcp://a:1").unwrap();
    assert!(w.get("processing").is_none() && w.get("has_what").is_some());
}

#[test]
fn a_task_metadata_block_keeps_its_requested_keys_final_states_and_metadata() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 4);
    sim.s.start_task_metadata("block");
    sim.submit(
        &["b", "c", "d"],
        vec![t("a", &[]), t("b", &["a"]), t("c", &[]), t("d", &[])],
    );
    let meta = |k: &str, v: i64| Value::map([(k, Value::Int(v))]);
    for c in sim.computes() {
        if c.key == k("a") {
            sim.finish(&c);
        } else if c.key == k("c") {
            // read from the worker's bytes (the server's path)
            let msg = task_finished_msg(&c.key, c.run_id, 8, sim.now);
            let tf = decode_task_finished(&with_field(msg, "metadata", meta("x", 1)));
            sim.finish_typed(c.worker, &tf);
        } else {
            assert_eq!(c.key, k("d"));
            sim.fail(&c, exception("boom"));
        }
    }
    let b = sim.one_compute();
    let msg = task_finished_msg(&b.key, b.run_id, 8, sim.now);
    sim.wop(b.worker, with_field(msg, "metadata", meta("y", 2)))
        .unwrap();

    let got = sim.s.stop_task_metadata("block").unwrap();
    let state = key_map(got.get("state").unwrap());
    assert_eq!(state.len(), 3, "only the requested keys: {state:?}");
    assert_eq!(state[&k("b")].as_str(), Some("memory"));
    assert_eq!(state[&k("c")].as_str(), Some("memory"));
    assert_eq!(state[&k("d")].as_str(), Some("erred"));
    let metadata = key_map(got.get("metadata").unwrap());
    assert_eq!(metadata[&k("b")], meta("y", 2));
    assert_eq!(metadata[&k("c")], meta("x", 1));
    assert_eq!(metadata[&k("d")], Value::Nil);
    // closed: a second stop finds nothing
    assert!(sim.s.stop_task_metadata("block").is_err());
}

/// As Python's plugin keeps `TaskState.metadata`: what the task's workers
/// reported over all its computations, merged, and nil while no report had
/// entries.
#[test]
fn a_task_metadata_block_keeps_the_metadata_merged_over_computations() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    let meta = |entries: &[(&str, i64)]| {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::str(*k), Value::Int(*v)))
                .collect(),
        )
    };
    let finish_with = |sim: &mut Sim, metadata: Value| {
        let c = sim.one_compute();
        let msg = task_finished_msg(&c.key, c.run_id, 8, sim.now);
        sim.wop(c.worker, with_field(msg, "metadata", metadata))
            .unwrap();
    };
    // computed once before the block, its worker then lost with the result
    sim.submit(&["e"], vec![t("e", &[])]);
    finish_with(&mut sim, meta(&[("first", 1), ("both", 1)]));
    sim.s.remove_worker(a, sim.now);
    sim.drain();
    sim.s.start_task_metadata("block");
    sim.submit(&["e"], vec![t("e", &[])]);
    sim.worker("tcp://b:1", 1);
    finish_with(&mut sim, meta(&[("second", 2), ("both", 2)]));
    // a task whose worker reported an empty map
    sim.submit(&["f"], vec![t("f", &[])]);
    finish_with(&mut sim, meta(&[]));
    let got = sim.s.stop_task_metadata("block").unwrap();
    let metadata = key_map(got.get("metadata").unwrap());
    assert_eq!(
        metadata[&k("e")],
        meta(&[("first", 1), ("both", 2), ("second", 2)])
    );
    assert_eq!(metadata[&k("f")], Value::Nil);
}

#[test]
fn an_erred_task_lists_the_workers_it_erred_on_not_as_holders() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let c = sim.one_compute();
    sim.fail(&c, exception("boom"));
    let d = dump(&sim, &["run_spec"]);
    let x = d.get("tasks").unwrap().get("x").unwrap();
    assert_eq!(x.get("state").and_then(Value::as_str), Some("erred"));
    assert_eq!(strs(x.get("erred_on").unwrap()), ["tcp://a:1"]);
    assert!(strs(x.get("who_has").unwrap()).is_empty());
}
