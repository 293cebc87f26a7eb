//! Work stealing: `steal-request` to saturated workers, `steal-response`
//! handling, and bookkeeping of steals in flight.

mod common;

use common::*;
use dask_core::{Config, TaskState, WorkerId};
use dask_wire::Value;

/// One worker with three unrelated tasks on one thread, then an idle worker joins.
fn imbalanced() -> (Sim, WorkerId, WorkerId, Vec<Compute>) {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    // Distinct prefixes: small groups, not root-ish, so nothing is queued.
    sim.submit(
        &["a", "b", "c"],
        vec![t("a", &[]), t("b", &[]), t("c", &[])],
    );
    let cs = sim.computes();
    assert_eq!(cs.len(), 3);
    assert!(cs.iter().all(|c| c.worker == w0));
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    (sim, w0, w1, cs)
}

fn steal_requests(sim: &mut Sim, w: WorkerId) -> Vec<Value> {
    sim.take_worker(w)
        .into_iter()
        .filter(|m| op(m) == "steal-request")
        .collect()
}

fn respond(sim: &mut Sim, w: WorkerId, req: &Value, state: Value) {
    sim.wop(
        w,
        Value::map([
            ("op", Value::str("steal-response")),
            ("key", kv(&key_of(req.get("key").unwrap()))),
            ("state", state),
            ("stimulus_id", req.get("stimulus_id").unwrap().clone()),
        ]),
    )
    .unwrap();
}

/// Times tasks of prefix `name` entered `processing` (Python's
/// `state_counts`), and the scheduler's `n_tasks`, as the
/// `run_on_scheduler` copy reports them.
fn processing_counts(sim: &Sim, name: &str) -> (i64, i64) {
    let snap = sim.s.snapshot(false);
    let n_tasks = snap.get("n_tasks").and_then(Value::as_i64).unwrap();
    let Some(Value::Array(prefixes)) = snap.get("prefixes") else {
        panic!("no prefixes");
    };
    let entered = prefixes
        .iter()
        .find_map(|p| match p {
            Value::Array(row) if row[0].as_str() == Some(name) => Some(row[2].clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no prefix {name}"));
    let processing = entered
        .get("processing")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (processing, n_tasks)
}

#[test]
fn confirmed_steal_moves_the_task_with_a_new_run_id() {
    let (mut sim, w0, w1, cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    let reqs = steal_requests(&mut sim, w0);
    assert_eq!(reqs.len(), 1, "one free thread on the thief");
    assert_eq!(field_names(&reqs[0]), ["op", "key", "stimulus_id"]);
    let key = key_of(reqs[0].get("key").unwrap());
    // The lowest-priority task is asked for.
    assert_eq!(key, k("c"));
    assert_eq!(sim.s.steals_in_flight().len(), 1);
    // A second round does not ask again while the first is in flight.
    sim.s.balance(sim.now);
    sim.drain();
    assert!(steal_requests(&mut sim, w0).is_empty());

    respond(&mut sim, w0, &reqs[0], Value::str("ready"));
    let moved = sim.one_compute();
    assert_eq!((moved.key.clone(), moved.worker), (key.clone(), w1));
    let old = cs.iter().find(|c| c.key == key).unwrap();
    assert!(moved.run_id > old.run_id);
    assert!(sim.s.steals_in_flight().is_empty());
    // In Python a stolen task stays `processing`: it is not counted as
    // entering it again, nor as another task sent (`n_tasks`).
    assert_eq!(processing_counts(&sim, "c"), (1, 3));
    // The victim's stale answer for the old run is refused; the thief's counts.
    sim.finish(old);
    assert_eq!(sim.freed_on(w0), keyset(&["c"]));
    sim.finish(&moved);
    assert_eq!(sim.s.task_state(&key), Some(TaskState::Memory));
    assert_eq!(sim.who_has("c"), vec![sim.addr(w1)]);
}

#[test]
fn steal_responses_table() {
    // (worker state in the response, task stays on the victim, rescheduled)
    let cases = [
        ("executing", true, false),
        ("memory", true, false),
        ("long-running", true, false),
        ("constrained", false, false),
        ("waiting", false, false),
        ("bogus", false, true),
    ];
    for (state, stays, rescheduled) in cases {
        let (mut sim, w0, w1, _cs) = imbalanced();
        sim.s.balance(sim.now);
        sim.drain();
        let reqs = steal_requests(&mut sim, w0);
        let key = key_of(reqs[0].get("key").unwrap());
        respond(&mut sim, w0, &reqs[0], Value::str(state));
        let cs = sim.computes();
        if stays {
            assert!(cs.is_empty(), "{state}");
            assert!(sim.take().is_empty(), "{state}");
        } else if rescheduled {
            assert_eq!(sim.freed_on(w0), keyset(&["c"]), "{state}");
            assert_eq!(cs.len(), 1, "{state}");
        } else {
            assert_eq!(cs.len(), 1, "{state}");
            assert_eq!(cs[0].worker, w1, "{state}");
        }
        assert_eq!(sim.s.task_state(&key), Some(TaskState::Processing));
        assert!(sim.s.steals_in_flight().is_empty(), "{state}");
    }
}

#[test]
fn nil_state_response_reschedules() {
    let (mut sim, w0, _w1, _cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    let reqs = steal_requests(&mut sim, w0);
    respond(&mut sim, w0, &reqs[0], Value::Nil);
    assert_eq!(sim.computes().len(), 1);
    assert!(sim.s.steals_in_flight().is_empty());
}

#[test]
fn response_with_wrong_stimulus_or_from_another_worker_is_ignored() {
    let (mut sim, w0, w1, _cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    let reqs = steal_requests(&mut sim, w0);
    let mut wrong = reqs[0].clone();
    wrong.set("stimulus_id", Value::str("steal-other"));
    respond(&mut sim, w0, &wrong, Value::str("ready"));
    respond(&mut sim, w1, &reqs[0], Value::str("ready"));
    assert!(sim.computes().is_empty());
    assert_eq!(sim.s.steals_in_flight().len(), 1);
}

#[test]
fn task_finishing_during_steal_stays_put() {
    let (mut sim, w0, _w1, cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    let reqs = steal_requests(&mut sim, w0);
    let key = key_of(reqs[0].get("key").unwrap());
    let c = cs.iter().find(|c| c.key == key).unwrap();
    sim.finish(c);
    respond(&mut sim, w0, &reqs[0], Value::str("memory"));
    assert!(sim.computes().is_empty());
    assert_eq!(sim.s.task_state(&key), Some(TaskState::Memory));
    assert!(sim.s.steals_in_flight().is_empty());
}

#[test]
fn task_forgotten_during_steal_leaves_nothing_behind() {
    let (mut sim, w0, _w1, _cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    let reqs = steal_requests(&mut sim, w0);
    let key = key_of(reqs[0].get("key").unwrap());
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&key)])),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_state(&key), None);
    // Must not index the forgotten task.
    assert!(sim.s.steals_in_flight().is_empty());
    // A new task may reuse the slot; it is not considered "being stolen".
    sim.submit(&["d"], vec![t("d", &[])]);
    assert!(sim.s.steals_in_flight().is_empty());
    respond(&mut sim, w0, &reqs[0], Value::str("released"));
    assert!(sim.s.steals_in_flight().is_empty());
    assert_eq!(sim.s.task_state(&key), None);
}

#[test]
fn thief_leaving_cancels_the_steal_and_reschedules_on_confirm() {
    let (mut sim, w0, w1, _cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    let reqs = steal_requests(&mut sim, w0);
    sim.s.remove_worker(w1, sim.now);
    sim.drain();
    sim.clear();
    // The victim answers that it gave the task up (it dropped it from its
    // queue): the task must be assigned again, here back to the victim.
    respond(&mut sim, w0, &reqs[0], Value::str("ready"));
    let key = key_of(reqs[0].get("key").unwrap());
    let again = sim.one_compute();
    assert_eq!((again.key.clone(), again.worker), (key.clone(), w0));
    assert!(sim.s.steals_in_flight().is_empty());
    sim.finish(&again);
    assert_eq!(sim.s.task_state(&key), Some(TaskState::Memory));
}

#[test]
fn victim_leaving_drops_the_steal() {
    let (mut sim, w0, w1, _cs) = imbalanced();
    sim.s.balance(sim.now);
    sim.drain();
    sim.take_worker(w0);
    sim.s.remove_worker(w0, sim.now);
    sim.drain();
    assert!(sim.s.steals_in_flight().is_empty());
    // Everything w0 had is rescheduled on w1.
    let cs = sim.computes();
    assert_eq!(cs.len(), 3);
    assert!(cs.iter().all(|c| c.worker == w1));
}

#[test]
fn restricted_tasks_are_not_stolen_by_unfit_workers() {
    let mut sim = Sim::new();
    let gpu = sim.worker_res("tcp://127.0.0.1:1", 1, &[("GPU", 1.0)]);
    let tasks = ["g-a", "g-b", "g-c"]
        .iter()
        .map(|k| t(k, &[]).ann("resources", Value::map([("GPU", Value::Int(1))])))
        .collect();
    sim.submit(&["g-a", "g-b", "g-c"], tasks);
    assert_eq!(sim.computes().len(), 3);
    sim.worker("tcp://127.0.0.1:2", 1);
    sim.s.balance(sim.now);
    sim.drain();
    assert!(steal_requests(&mut sim, gpu).is_empty());
}

#[test]
fn stealing_can_be_disabled() {
    let mut sim = Sim::with_config(Config {
        work_stealing: false,
        ..Config::default()
    });
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(
        &["a", "b", "c"],
        vec![t("a", &[]), t("b", &[]), t("c", &[])],
    );
    sim.computes();
    sim.worker("tcp://127.0.0.1:2", 1);
    sim.s.balance(sim.now);
    sim.drain();
    assert!(steal_requests(&mut sim, w0).is_empty());
}

#[test]
fn balanced_cluster_sends_nothing() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 2);
    sim.worker("tcp://127.0.0.1:2", 2);
    sim.submit(&["a", "b"], vec![t("a", &[]), t("b", &[])]);
    sim.computes();
    sim.s.balance(sim.now);
    sim.drain();
    assert!(sim.take().is_empty());
}

/// Python's cost rule for tasks with inputs: moving one costs the transfer of
/// the inputs the thief lacks plus a fixed 0.1 s latency, and is done only if
/// the thief would still finish it before the victim got to it.
#[test]
fn tasks_with_inputs_are_stolen_only_when_the_move_pays_off() {
    struct Case {
        what: &'static str,
        duration: f64,
        input_bytes: i64,
        stolen: bool,
    }
    let cases = [
        Case {
            what: "long tasks, small input",
            duration: 0.5,
            input_bytes: 1_000,
            stolen: true,
        },
        Case {
            what: "short tasks: the latency alone outweighs the gain",
            duration: 0.1,
            input_bytes: 1_000,
            stolen: false,
        },
        Case {
            what: "long tasks, input too big to move (0.5 s of transfer)",
            duration: 0.5,
            input_bytes: 50_000_000,
            stolen: false,
        },
    ];
    for case in cases {
        let mut sim = Sim::with_config(Config {
            unknown_task_duration: case.duration,
            ..Config::default()
        });
        let w0 = sim.worker("tcp://127.0.0.1:1", 2);
        sim.submit(&["d"], vec![t("d", &[])]);
        let c = sim.one_compute();
        sim.finish_with(w0, &c.key, c.run_id, case.input_bytes);
        // Four tasks on the input, all on its holder (2 threads: 2 tasks of
        // backlog per thread).
        let keys = ["x-1", "x-2", "x-3", "x-4"];
        sim.submit(&keys, keys.iter().map(|k| t(k, &["d"])).collect());
        assert!(
            sim.computes().iter().all(|c| c.worker == w0),
            "{}",
            case.what
        );
        sim.worker("tcp://127.0.0.1:2", 1);
        sim.clear();
        sim.s.balance(sim.now);
        sim.drain();
        let reqs = steal_requests(&mut sim, w0);
        assert_eq!(!reqs.is_empty(), case.stolen, "{}: {reqs:?}", case.what);
    }
}

/// Prefixes preset to at most 1 ms by `default-task-durations` (Python's
/// `fast_tasks`, e.g. the getitem tasks of a task-based shuffle) are never
/// stolen: moving them would only move their input around.
#[test]
fn fast_task_prefixes_are_never_stolen() {
    for (prefix, stolen) in [("split-taskshuffle", false), ("plain", true)] {
        let mut sim = Sim::new();
        let w0 = sim.worker("tcp://127.0.0.1:1", 1);
        let keys = [format!("{prefix}-1"), format!("{prefix}-2")];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        sim.submit(&keys, keys.iter().map(|k| t(k, &[])).collect());
        assert_eq!(sim.computes().len(), 2, "{prefix}");
        sim.worker("tcp://127.0.0.1:2", 1);
        sim.clear();
        sim.s.balance(sim.now);
        sim.drain();
        let reqs = steal_requests(&mut sim, w0);
        assert_eq!(!reqs.is_empty(), stolen, "{prefix}: {reqs:?}");
    }
}
