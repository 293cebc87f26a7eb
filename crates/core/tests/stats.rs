//! Observability counters kept by the core (`dask_core::stats`).

mod common;

use common::*;
use dask_core::stats::{state_index, Stats, TASK_STREAM_CAPACITY};
use dask_core::{TaskState, WorkerId};
use dask_wire::Value;

fn prefix_id(sim: &Sim, name: &str) -> u32 {
    (0..1000u32)
        .find(|i| sim.s.prefix_name(*i) == Some(name))
        .expect("prefix known")
}

#[test]
fn finished_tasks_count_states_durations_and_stream() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["inc-2"], vec![t("inc-1", &[]), t("inc-2", &["inc-1"])]);
    for _ in 0..2 {
        let c = sim.one_compute();
        sim.tick(1.0);
        sim.finish(&c);
    }
    let p = prefix_id(&sim, "inc");
    let counters = sim.s.stats().prefix(p);
    let totals = counters.state_totals;
    assert_eq!(totals[state_index(TaskState::Waiting)], 2);
    assert_eq!(totals[state_index(TaskState::Processing)], 2);
    assert_eq!(totals[state_index(TaskState::Memory)], 2);
    // inc-1 is released once inc-2 no longer needs it.
    assert_eq!(totals[state_index(TaskState::Released)], 1);
    // The Sim reports 10 ms of compute per task.
    assert!((counters.compute_seconds - 0.02).abs() < 1e-9);
    assert_eq!(counters.transfer_seconds, 0.0);

    let stream = sim.s.task_stream_since(0, 100);
    assert_eq!(stream.len(), 2);
    assert!(stream
        .iter()
        .all(|e| e.prefix == p && e.worker == w && e.action == "compute" && e.stop > e.start));
    assert_eq!(stream[0].seq + 1, stream[1].seq);
    assert_eq!(sim.s.task_stream_since(stream[1].seq, 100).len(), 1);

    let snap = sim.s.metrics_snapshot();
    assert_eq!(snap.tasks[state_index(TaskState::Memory)], 1);
    assert_eq!(snap.tasks[state_index(TaskState::Released)], 1);
    let ps = &snap.prefixes[p as usize];
    assert_eq!(ps.name, "inc");
    assert_eq!(ps.nbytes_in_memory, 100);
    assert_eq!(snap.workers.len(), 1);
    assert_eq!(snap.workers[0].in_memory, 1);
    assert_eq!(snap.workers_idle, 1);
}

#[test]
fn forgotten_tasks_count_while_their_group_lives() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 2);
    let c = sim.add_client("Client-2");
    sim.submit_as(c, &["x-1", "x-2"], vec![t("x-1", &[]), t("x-2", &[])]);
    for comp in sim.computes() {
        sim.finish(&comp);
    }
    sim.cop_as(
        c,
        Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(vec![kv(&k("x-1"))])),
            ("client", Value::str("Client-2")),
        ]),
    )
    .unwrap();
    let p = prefix_id(&sim, "x");
    let snap = sim.s.metrics_snapshot();
    // x-1 is forgotten, its group (x) still holds x-2: Python counts it.
    assert_eq!(snap.tasks[state_index(TaskState::Forgotten)], 1);
    assert_eq!(snap.tasks[state_index(TaskState::Memory)], 1);
    assert_eq!(snap.prefixes[p as usize].nbytes_in_memory, 100);

    let now = sim.now;
    sim.s.remove_client(c, now);
    assert_eq!(sim.s.task_count(), 0);
    let snap = sim.s.metrics_snapshot();
    // The group is gone with its last task, and with it the gauge's count;
    // the per-prefix state totals stay cumulative.
    assert_eq!(snap.tasks[state_index(TaskState::Forgotten)], 0);
    assert_eq!(
        snap.prefixes[p as usize].counters.state_totals[state_index(TaskState::Forgotten)],
        2
    );
    assert_eq!(snap.prefixes[p as usize].nbytes_in_memory, 0);
    // Client-1 from the Sim plus Client-2; Client-2 left.
    assert_eq!(snap.clients_added, 2);
    assert_eq!(snap.clients_removed, 1);
    assert_eq!(snap.clients, 1);
}

#[test]
fn losing_a_worker_counts_removal_and_suspicious_tasks() {
    let mut sim = Sim::new();
    let a = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["slow-1"], vec![t("slow-1", &[])]);
    let comp = sim.one_compute();
    assert_eq!(comp.worker, a);
    let now = sim.now;
    assert!(sim.s.remove_worker(a, now));
    sim.drain();
    let snap = sim.s.metrics_snapshot();
    assert_eq!(snap.workers_added, 1);
    assert_eq!(snap.workers_removed, 1);
    let p = prefix_id(&sim, "slow");
    assert_eq!(snap.prefixes[p as usize].counters.suspicious, 1);
    // With no worker left the task waits for one, queued as in Python (with
    // no threads, its group counts as root-ish)
    assert_eq!(snap.tasks[state_index(TaskState::Queued)], 1);
    assert!(snap.desired_workers >= 1);
}

#[test]
fn task_stream_is_bounded() {
    let mut stats = Stats::default();
    for i in 0..(TASK_STREAM_CAPACITY + 10) {
        stats.push_task_stream(0, WorkerId(0), "compute", i as f64, i as f64 + 1.0);
    }
    assert_eq!(stats.task_stream.len(), TASK_STREAM_CAPACITY);
    assert_eq!(stats.task_stream.front().unwrap().seq, 10);
    assert_eq!(stats.task_stream_next, (TASK_STREAM_CAPACITY + 10) as u64);
}

/// The string fields of a task-stream record, by name.
fn rec_str(r: &Value, name: &str) -> String {
    match r.get(name) {
        Some(Value::Raw(b)) => dask_wire::msgpack::decode(b)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string(),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{v:?}")),
        None => panic!("record without '{name}': {r:?}"),
    }
}

/// Run `n` independent tasks named `{prefix}-{i}` to completion, one second apart.
fn run_tasks(sim: &mut Sim, prefix: &str, n: usize) {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.submit(&refs, refs.iter().map(|k| t(k, &[])).collect());
    loop {
        let computes = sim.computes();
        if computes.is_empty() {
            break;
        }
        for c in computes {
            sim.tick(1.0);
            sim.finish(&c);
        }
    }
    assert!(refs.iter().all(|k| sim.state(k) == Some(TaskState::Memory)));
}

#[test]
fn task_stream_records_only_after_a_client_asked() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    run_tasks(&mut sim, "early", 2);
    // like Python's TaskStreamPlugin, installed by the first request
    assert_eq!(sim.s.task_stream_index(), 0);
    let now = sim.now;
    assert!(sim.s.task_stream(None, None, None, None, now).is_empty());
    run_tasks(&mut sim, "late", 3);
    assert_eq!(sim.s.task_stream_index(), 3);
    let now = sim.now;
    let all = sim.s.task_stream(None, None, None, None, now);
    let keys: Vec<String> = all.iter().map(|r| rec_str(r, "key")).collect();
    assert_eq!(keys, ["late-0", "late-1", "late-2"]);
    let r = &all[0];
    // the worker's message as Python's plugin keeps it: no op, no run_id
    assert_eq!(rec_str(r, "worker"), sim.addr(w));
    assert_eq!(rec_str(r, "status"), "OK");
    assert_eq!(rec_str(r, "typename"), "int");
    assert_eq!(r.get("nbytes").and_then(Value::as_i64), Some(100));
    assert!(r.get("op").is_none() && r.get("run_id").is_none());
    let ss = r.get("startstops").and_then(Value::as_seq).unwrap();
    assert_eq!(ss[0].get("action").and_then(Value::as_str), Some("compute"));
}

#[test]
fn task_stream_selects_like_collect() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.s.task_stream_index();
    run_tasks(&mut sim, "a", 5);
    let now = sim.now;
    let keys = |v: Vec<Value>| -> Vec<String> { v.iter().map(|r| rec_str(r, "key")).collect() };
    let mut get =
        |start: Option<Value>, stop: Option<Value>, count: Option<i64>, si: Option<i64>| {
            keys(
                sim.s
                    .task_stream(start.as_ref(), stop.as_ref(), count, si, now),
            )
        };
    // the context manager's cursor
    assert_eq!(get(None, None, None, Some(3)), ["a-3", "a-4"]);
    assert_eq!(get(None, None, None, Some(99)), Vec::<String>::new());
    // the last n
    assert_eq!(get(None, None, Some(2), None), ["a-3", "a-4"]);
    // by time: tasks stop one second apart, the last at `now`
    assert_eq!(
        get(Some(Value::Float(now - 1.5)), None, None, None),
        ["a-3", "a-4"]
    );
    assert_eq!(
        get(None, Some(Value::Float(now - 2.5)), None, None),
        ["a-0", "a-1"]
    );
    // a duration before now, as `client.get_task_stream(start="2.5s")` sends
    assert_eq!(
        get(Some(Value::str("2.5s")), None, None, None),
        ["a-2", "a-3", "a-4"]
    );
    assert_eq!(
        get(Some(Value::Float(now - 3.5)), None, Some(2), None),
        ["a-1", "a-2"]
    );
}

#[test]
fn task_stream_keeps_the_configured_number_of_records() {
    let mut sim = Sim::with_config(dask_core::Config {
        task_stream_length: 3,
        ..dask_core::Config::default()
    });
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.s.task_stream_index();
    run_tasks(&mut sim, "b", 5);
    assert_eq!(
        sim.s.task_stream_index(),
        5,
        "the index counts every record"
    );
    let now = sim.now;
    let kept: Vec<String> = sim
        .s
        .task_stream(None, None, None, Some(0), now)
        .iter()
        .map(|r| rec_str(r, "key"))
        .collect();
    assert_eq!(
        kept,
        ["b-2", "b-3", "b-4"],
        "a cursor older than the buffer gets it all"
    );
}

#[test]
fn task_stream_records_the_typed_path_alike() {
    // the server reads task-finished straight from msgpack; the record is
    // the same as for the decoded map
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.s.task_stream_index();
    sim.submit(&["x-1", "x-2"], vec![t("x-1", &[]), t("x-2", &[])]);
    let computes = sim.computes();
    sim.finish(&computes[0]);
    let c = &computes[1];
    let now = sim.now;
    let typed = decode_task_finished(&task_finished_msg(&c.key, c.run_id, 100, now));
    sim.finish_typed(w, &typed);
    let recs = sim.s.task_stream(None, None, None, None, now);
    assert_eq!(recs.len(), 2);
    let fields = |r: &Value| -> Vec<String> {
        let mut f: Vec<String> = r
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str_key().unwrap().to_string())
            .collect();
        f.sort();
        f
    };
    assert_eq!(fields(&recs[0]), fields(&recs[1]));
    assert_eq!(rec_str(&recs[1], "key"), "x-2");
}
