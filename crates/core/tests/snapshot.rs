//! The snapshot the `run_on_scheduler` stand-in rebuilds `tasks`,
//! `workers` and `clients` from: every object with its id, and references
//! by id that resolve to the right objects.

mod common;

use common::*;
use dask_core::snapshot::{DENSE_TASK_FIELDS, TASK_FIELDS};
use dask_wire::{Key, Value};
use std::collections::BTreeMap;

/// The snapshot as a client reads it (its columns are written as msgpack
/// where they are built).
fn snapshot(sim: &Sim, with_tasks: bool) -> Value {
    let encoded = dask_wire::msgpack::encode(&sim.s.snapshot(with_tasks));
    dask_wire::msgpack::decode_slice(&encoded).expect("the snapshot decodes")
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an int: {v:?}"))
}

fn ids(v: &Value) -> Vec<i64> {
    if v.is_nil() {
        return Vec::new();
    }
    array(v).iter().map(int).collect()
}

/// Each task's fields by key, as maps of field name to value (nil where
/// the sparse maps have no value).
fn task_rows(snapshot: &Value) -> BTreeMap<Key, BTreeMap<&'static str, Value>> {
    let count = int(snapshot.get("task_count").unwrap()) as usize;
    let columns = snapshot.get("task_columns").unwrap();
    let sparse = snapshot.get("task_sparse").unwrap();
    let column_names: Vec<&str> = columns
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(column_names, DENSE_TASK_FIELDS);
    (0..count)
        .map(|n| {
            let fields: BTreeMap<&'static str, Value> = TASK_FIELDS
                .iter()
                .map(|name| {
                    let value = match columns.get(name) {
                        Some(column) => {
                            assert_eq!(array(column).len(), count, "{name}");
                            array(column)[n].clone()
                        }
                        None => sparse
                            .get(name)
                            .and_then(Value::as_map)
                            .and_then(|m| m.iter().find(|(k, _)| int(k) == n as i64))
                            .map_or(Value::Nil, |(_, v)| v.clone()),
                    };
                    (*name, value)
                })
                .collect();
            (key_of(&fields["key"]), fields)
        })
        .collect()
}

#[test]
fn references_by_id_resolve_to_the_right_tasks_workers_and_clients() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://a:1", 1);
    sim.worker("tcp://b:1", 1);
    let c = sim.add_client("alice");
    sim.submit_as(
        c,
        &["y", "z"],
        vec![t("x", &[]), t("y", &["x"]), t("z", &["x"])],
    );
    sim.run_all();
    let snap = snapshot(&sim, true);
    let tasks = task_rows(&snap);
    assert_eq!(tasks.len(), 3);
    let id = |key: &str| int(&tasks[&k(key)]["i"]);
    assert_eq!(ids(&tasks[&k("y")]["dependencies"]), vec![id("x")]);
    let mut dependents = ids(&tasks[&k("x")]["dependents"]);
    dependents.sort_unstable();
    let mut expected = vec![id("y"), id("z")];
    expected.sort_unstable();
    assert_eq!(dependents, expected);
    assert_eq!(tasks[&k("y")]["state"].as_str(), Some("memory"));

    // the worker that holds y lists it, by the same ids
    let workers = array(snap.get("workers").unwrap());
    assert_eq!(workers.len(), 2);
    let holder = ids(&tasks[&k("y")]["who_has"]);
    assert_eq!(holder.len(), 1);
    let w = workers
        .iter()
        .find(|w| int(w.get("i").unwrap()) == holder[0])
        .expect("y's holder is a worker of the snapshot");
    assert!(ids(w.get("has_what").unwrap()).contains(&id("y")));
    assert!(["tcp://a:1", "tcp://b:1"].contains(&w.get("address").unwrap().as_str().unwrap()));
    assert_eq!(int(workers[0].get("i").unwrap()), i64::from(a.0));

    // y is wanted by alice, by her id
    let clients = array(snap.get("clients").unwrap());
    let alice = clients
        .iter()
        .find(|cl| cl.get("client_key").and_then(Value::as_str) == Some("alice"))
        .expect("alice");
    assert_eq!(int(alice.get("i").unwrap()), i64::from(c.0));
    assert_eq!(ids(&tasks[&k("y")]["who_wants"]), vec![i64::from(c.0)]);
    assert!(ids(alice.get("wants_what").unwrap()).contains(&id("y")));

    // each task's group is an index into `groups`, named by the group,
    // whose prefix is an index into `prefixes`
    let groups = array(snap.get("groups").unwrap());
    let prefixes = array(snap.get("prefixes").unwrap());
    for key in ["x", "y", "z"] {
        let g = array(&groups[int(&tasks[&k(key)]["group"]) as usize]);
        assert_eq!(g[0].as_str(), Some(key));
        let prefix = array(&prefixes[int(&g[1]) as usize]);
        assert_eq!(prefix[0].as_str(), Some(key));
        // tasks ever added to the group
        assert_eq!(g[2], Value::Int(1));
        // the prefix's tasks went through waiting, processing and memory
        let entered = prefix[2].as_map().unwrap();
        for state in ["waiting", "processing", "memory"] {
            let n = entered.iter().find(|(s, _)| s.as_str() == Some(state));
            assert_eq!(n.map(|(_, n)| int(n)), Some(1), "{key} {state}");
        }
    }
}

#[test]
fn defaults_travel_as_nil_but_a_size_of_zero_does_not() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://a:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    let x = sim.one_compute();
    sim.wop(w, task_finished_msg(&x.key, x.run_id, 0, 1.0))
        .unwrap();
    // a task never sent to a worker has no run id (Python's None)
    sim.submit(
        &["never"],
        vec![t("never", &[]).ann("workers", workers_ann(&["tcp://nowhere:1"]))],
    );
    let tasks = task_rows(&snapshot(&sim, true));
    let row = &tasks[&k("x")];
    assert_eq!(row["nbytes"], Value::Int(0));
    assert_eq!(row["run_id"], Value::Int(x.run_id));
    assert_eq!(tasks[&k("never")]["state"].as_str(), Some("no-worker"));
    assert!(tasks[&k("never")]["run_id"].is_nil());
    for field in [
        "dependencies",
        "waiting_on",
        "retries",
        "actor",
        "exception_text",
    ] {
        assert!(row[field].is_nil(), "{field}: {:?}", row[field]);
    }
}

#[test]
fn annotations_keep_out_of_band_objects_as_values() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    let pickled = Value::Opaque(Box::new(run_spec()));
    sim.submit(
        &["x", "y"],
        vec![
            t("x", &[]).ann("tag", pickled.clone()),
            t("y", &[]).ann("tag", Value::str("b")),
        ],
    );
    // the snapshot as built: annotations stay values, so the connection
    // writes a pickled one out of band as it writes any other
    let built = sim.s.snapshot(true);
    let Some(Value::Map(annotations)) = built.get("task_sparse").and_then(|s| s.get("annotations"))
    else {
        panic!("annotations are a map of values: {built:?}");
    };
    let tags: Vec<&Value> = annotations
        .iter()
        .filter_map(|(_, a)| a.get("tag"))
        .collect();
    assert_eq!(tags.len(), 2);
    assert!(tags.contains(&&pickled) && tags.contains(&&Value::str("b")));
}

#[test]
fn a_worker_named_0_keeps_its_name() {
    // LocalCluster names its workers 0, 1, ...: a name is never a default
    let mut sim = Sim::new();
    let mut reg = registration("tcp://a:1", 1);
    reg.name = Value::Int(0);
    sim.worker_reg(reg);
    let snap = snapshot(&sim, false);
    let workers = array(snap.get("workers").unwrap());
    assert_eq!(workers[0].get("name"), Some(&Value::Int(0)));
}

#[test]
fn without_tasks_the_snapshot_has_workers_and_clients_only() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 2);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    let snap = snapshot(&sim, false);
    assert_eq!(snap.get("task_count"), Some(&Value::Int(0)));
    assert!(task_rows(&snap).is_empty());
    let workers = array(snap.get("workers").unwrap());
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].get("nthreads"), Some(&Value::Int(2)));
    // the worker holds x, but the snapshot without tasks names no task
    assert!(workers[0].get("has_what").is_none());
    assert!(array(snapshot(&sim, true).get("workers").unwrap())[0]
        .get("has_what")
        .is_some());
}

/// How a case's worker reports a finished task.
#[derive(Clone, Copy)]
enum Report {
    /// The decoded op map (`handle_worker_op`).
    Op,
    /// The message's bytes, read as the server reads them
    /// (`TaskFinished::decode`): the name is in the bytes only.
    Bytes,
}

/// A finished task's `type` and `typename` fields.
type Sent = (Value, Value);

fn pickled(tag: &'static str) -> Value {
    Value::Bin(bytes::Bytes::from_static(tag.as_bytes()))
}

#[test]
fn a_task_s_type_is_its_result_s_typename_and_its_group_counts_them() {
    // (path, what each of the group's tasks sends, each task's `type`, the
    // group's {name: count})
    type Case = (
        Report,
        Vec<Sent>,
        Vec<Option<&'static str>>,
        Vec<(&'static str, i64)>,
    );
    let cases: Vec<Case> = vec![
        (
            Report::Op,
            vec![(pickled("p-int"), Value::str("int")); 2],
            vec![Some("int"); 2],
            vec![("int", 2)],
        ),
        (
            Report::Bytes,
            vec![
                (pickled("p-int"), Value::str("int")),
                (
                    pickled("p-frame"),
                    Value::str("pandas.core.frame.DataFrame"),
                ),
                (pickled("p-int"), Value::str("int")),
            ],
            vec![
                Some("int"),
                Some("pandas.core.frame.DataFrame"),
                Some("int"),
            ],
            vec![("int", 2), ("pandas.core.frame.DataFrame", 1)],
        ),
        // a type pickled two ways (one that fails pickling is sent as its
        // pickled name): one name
        (
            Report::Bytes,
            vec![
                (pickled("p-lock"), Value::str("_thread.lock")),
                (pickled("p-lock-name"), Value::str("_thread.lock")),
            ],
            vec![Some("_thread.lock"); 2],
            vec![("_thread.lock", 2)],
        ),
        // no pickled type, or a type that is not bytes: the name still counts
        (
            Report::Bytes,
            vec![
                (Value::Nil, Value::str("int")),
                (Value::str("not bytes"), Value::str("int")),
            ],
            vec![Some("int"); 2],
            vec![("int", 2)],
        ),
        // no name, or one that is not a str: no type
        (
            Report::Op,
            vec![(pickled("p-anon"), Value::Nil), (Value::Nil, Value::Int(3))],
            vec![None, None],
            vec![],
        ),
    ];
    for (n, (report, sent, types, group_types)) in cases.into_iter().enumerate() {
        let mut sim = Sim::new();
        let w = sim.worker("tcp://a:1", 8);
        let keys: Vec<Key> = (0..sent.len() as i64).map(|i| tk("typed", i)).collect();
        let tasks = keys
            .iter()
            .map(|key| T::keyed(key.clone(), vec![]))
            .collect();
        sim.submit_keys(sim.client, keys.clone(), tasks, 0.0);
        let mut computes = sim.computes();
        computes.sort_by_key(|c| c.key.clone());
        assert_eq!(computes.len(), sent.len(), "case {n}");
        for (c, (ty, name)) in computes.iter().zip(&sent) {
            let msg = task_finished_msg(&c.key, c.run_id, 8, sim.now);
            let msg = with_field(
                with_field(msg, "type", ty.clone()),
                "typename",
                name.clone(),
            );
            match report {
                Report::Op => sim.wop(w, msg).unwrap(),
                Report::Bytes => sim.finish_typed(w, &decode_task_finished(&msg)),
            }
        }
        let snap = snapshot(&sim, true);
        let rows = task_rows(&snap);
        let got: Vec<Option<&str>> = keys.iter().map(|key| rows[key]["type"].as_str()).collect();
        assert_eq!(got, types, "case {n}: each task's type");
        for (key, want) in keys.iter().zip(&types) {
            let id = sim.s.task_id(key).unwrap();
            assert_eq!(sim.s.typename_of(id), *want, "case {n}");
        }
        let group = &array(snap.get("groups").unwrap())[int(&rows[&keys[0]]["group"]) as usize];
        let counts: Vec<(&str, i64)> = array(group)[3]
            .as_map()
            .expect("the group's types are a map")
            .iter()
            .map(|(name, count)| (name.as_str().unwrap(), int(count)))
            .collect();
        assert_eq!(counts, group_types, "case {n}: the group's types");
        sim.check();
    }
}

#[test]
fn an_erred_task_names_the_workers_it_erred_on_and_holds_nothing() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.submit(&["y"], vec![t("x", &[]), t("y", &["x"])]);
    let x = sim.one_compute();
    sim.fail(&x, exception("boom"));
    assert_eq!(sim.state("x"), Some(dask_core::TaskState::Erred));
    assert_eq!(sim.state("y"), Some(dask_core::TaskState::Erred));
    let tasks = task_rows(&snapshot(&sim, true));
    let failed = &tasks[&k("x")];
    assert_eq!(
        failed["erred_on"],
        Value::Array(vec![Value::str("tcp://a:1")])
    );
    assert!(failed["who_has"].is_nil(), "{:?}", failed["who_has"]);
    // y inherited the failure while waiting: Python's erred_on is None
    assert!(tasks[&k("y")]["erred_on"].is_nil());
    // the stand-in's `exception`: what the worker sent, on x only
    let error = sim.s.error_of(&k("x")).unwrap();
    assert_eq!(error.get("exception"), Some(&exception("boom")));
    let inherited = sim.s.error_of(&k("y")).unwrap();
    assert!(inherited.get("exception").is_some_and(Value::is_nil));
    assert!(sim.s.error_of(&k("nothing")).is_err());
    // released, x no longer names the worker
    sim.release(&["y"]);
    let tasks = task_rows(&snapshot(&sim, true));
    assert!(tasks
        .get(&k("x"))
        .is_none_or(|row| row["erred_on"].is_nil()));
}

#[test]
fn workers_and_clients_name_their_versions_in_one_table_of_distinct_maps() {
    let mut sim = Sim::new();
    let versions =
        |dask: &str| Value::map([("packages", Value::map([("dask", Value::str(dask))]))]);
    for (addr, dask) in [("tcp://a:1", "1"), ("tcp://b:1", "1"), ("tcp://c:1", "2")] {
        let mut reg = registration(addr, 1);
        reg.versions = versions(dask);
        sim.worker_reg(reg);
    }
    sim.worker("tcp://plain:1", 1); // sent no versions
    let c = sim.add_client("alice");
    sim.s.set_client_versions(c, versions("2"));
    let snap = snapshot(&sim, false);
    let table = array(snap.get("versions").unwrap());
    assert_eq!(
        table,
        [versions("1"), versions("2")],
        "each distinct map once"
    );
    let of = |entry: &Value| {
        entry
            .get("versions")
            .map(|i| table[int(i) as usize].clone())
    };
    let by_address: BTreeMap<&str, Option<Value>> = array(snap.get("workers").unwrap())
        .iter()
        .map(|w| (w.get("address").unwrap().as_str().unwrap(), of(w)))
        .collect();
    assert_eq!(by_address["tcp://a:1"], Some(versions("1")));
    assert_eq!(by_address["tcp://b:1"], Some(versions("1")));
    assert_eq!(by_address["tcp://c:1"], Some(versions("2")));
    assert_eq!(by_address["tcp://plain:1"], None);
    let alice = array(snap.get("clients").unwrap())
        .iter()
        .find(|cl| cl.get("client_key").and_then(Value::as_str) == Some("alice"))
        .unwrap();
    assert_eq!(of(alice), Some(versions("2")));
}

#[test]
fn a_task_keeps_the_metadata_its_worker_reported() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://a:1", 4);
    sim.submit(
        &["a", "b", "c"],
        vec![t("a", &[]), t("b", &[]), t("c", &[])],
    );
    let mut computes = sim.computes();
    computes.sort_by_key(|c| c.key.clone());
    let stamped = |key: &str| Value::map([("stamped", Value::str(key))]);
    for c in &computes {
        let msg = task_finished_msg(&c.key, c.run_id, 8, sim.now);
        if c.key == k("a") {
            // the decoded op map
            sim.wop(w, with_field(msg, "metadata", stamped("a")))
                .unwrap();
        } else if c.key == k("b") {
            // the bytes, as the server reads them
            let msg = with_field(msg, "metadata", stamped("b"));
            sim.finish_typed(w, &decode_task_finished(&msg));
        } else {
            // an empty map: no metadata (Python's None)
            sim.wop(w, msg).unwrap();
        }
    }
    let tasks = task_rows(&snapshot(&sim, true));
    assert_eq!(tasks[&k("a")]["metadata"], stamped("a"));
    assert_eq!(tasks[&k("b")]["metadata"], stamped("b"));
    assert!(tasks[&k("c")]["metadata"].is_nil());
}

#[test]
fn unrunnable_tasks_travel_by_id_with_when_they_got_there_only_with_the_tasks() {
    // a task restricted to a worker that is not there: no-worker
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.now = 7.5;
    sim.submit(
        &["stuck", "fine"],
        vec![
            t("stuck", &[]).ann("workers", workers_ann(&["tcp://elsewhere:1"])),
            t("fine", &[]),
        ],
    );
    let snap = snapshot(&sim, true);
    let rows = task_rows(&snap);
    let unrunnable = array(snap.get("unrunnable").unwrap());
    assert_eq!(unrunnable.len(), 1, "{unrunnable:?}");
    let entry = array(&unrunnable[0]);
    let stuck = &rows[&k("stuck")];
    assert_eq!(stuck["state"], Value::str("no-worker"));
    assert_eq!(int(&entry[0]), int(&stuck["i"]));
    assert_eq!(entry[1].as_f64(), Some(7.5));
    // without the tasks, no task ids
    assert!(array(snapshot(&sim, false).get("unrunnable").unwrap()).is_empty());
}
