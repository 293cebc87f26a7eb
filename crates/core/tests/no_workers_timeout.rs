//! `distributed.scheduler.no-workers-timeout` (Python's `_check_no_workers`).

mod common;

use common::*;
use dask_core::{Config, TaskState};
use dask_wire::Value;

const TIMEOUT: f64 = 2.0;

fn sim_with_timeout(timeout: Option<f64>) -> Sim {
    Sim::with_config(Config {
        no_workers_timeout: timeout,
        ..Config::default()
    })
}

/// The exception class each `task-erred` to the client names, by key.
fn erred_classes(sim: &mut Sim) -> Vec<(String, &'static str)> {
    sim.client_msgs()
        .iter()
        .filter(|m| op(m) == "task-erred")
        .map(|m| {
            let Some(Value::Bin(pickle)) = m.get("exception") else {
                panic!("a pickled exception: {m:?}")
            };
            let text = String::from_utf8_lossy(pickle);
            let class = if text.contains("distributed.scheduler\nNoValidWorkerError") {
                "NoValidWorkerError"
            } else if text.contains("distributed.scheduler\nNoWorkerError") {
                "NoWorkerError"
            } else {
                panic!("unexpected exception {text}")
            };
            (key_of(m.get("key").unwrap()).name(), class)
        })
        .collect()
}

fn timeout_event_keys(sim: &Sim) -> Vec<Vec<dask_wire::Key>> {
    let events = sim.s.get_events(Some("scheduler"));
    events
        .as_seq()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let msg = &e.as_seq()?[1];
            (msg.get("action")? == &Value::str("no-workers-timeout-exceeded"))
                .then(|| keys_of(msg.get("keys").unwrap()))
        })
        .collect()
}

#[test]
fn without_the_setting_tasks_wait_forever() {
    let mut sim = sim_with_timeout(None);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.tick(1e6);
    assert!(sim.s.check_no_workers(sim.now).is_empty());
    assert_eq!(sim.state("x"), Some(TaskState::Queued));
}

#[test]
fn queued_tasks_fail_once_no_worker_has_run_for_the_timeout() {
    let mut sim = sim_with_timeout(Some(TIMEOUT));
    sim.submit(&["y"], vec![t("x", &[]), t("y", &["x"])]);
    assert_eq!(sim.state("x"), Some(TaskState::Queued));
    // the first check starts the period without workers
    assert!(sim.s.check_no_workers(sim.now).is_empty());
    sim.tick(TIMEOUT);
    assert!(sim.s.check_no_workers(sim.now).is_empty(), "not yet past");
    sim.tick(0.25);
    assert_eq!(sim.s.check_no_workers(sim.now), vec![k("x")]);
    sim.drain();
    assert_eq!(sim.state("x"), Some(TaskState::Erred));
    assert_eq!(sim.state("y"), Some(TaskState::Erred));
    assert_eq!(
        erred_classes(&mut sim),
        vec![("y".to_string(), "NoWorkerError")],
        "the client wants y, which fails with x's error"
    );
    assert_eq!(timeout_event_keys(&sim), vec![vec![k("x")]]);
}

#[test]
fn a_worker_arriving_in_time_ends_the_period() {
    let mut sim = sim_with_timeout(Some(TIMEOUT));
    sim.submit(&["x"], vec![t("x", &[])]);
    assert!(sim.s.check_no_workers(sim.now).is_empty());
    sim.tick(TIMEOUT - 0.5);
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let x = sim.one_compute();
    assert_eq!(x.worker, w);
    sim.tick(TIMEOUT);
    assert!(sim.s.check_no_workers(sim.now).is_empty());
    assert_eq!(sim.state("x"), Some(TaskState::Processing));
}

#[test]
fn restricted_tasks_fail_with_their_restrictions_to_blame() {
    // (restriction, worker running meanwhile, expected class)
    let cases: [(&str, Value, bool, &str); 3] = [
        (
            "workers",
            Value::str("tcp://127.0.0.1:9"),
            true,
            "NoValidWorkerError",
        ),
        (
            "resources",
            Value::map([("GPU", Value::Float(1.0))]),
            true,
            "NoValidWorkerError",
        ),
        // became unrunnable with no worker around, and the period without
        // workers began later (at the first check): Python blames the
        // restrictions too
        (
            "workers",
            Value::str("tcp://127.0.0.1:9"),
            false,
            "NoValidWorkerError",
        ),
    ];
    for (annotation, value, with_worker, class) in cases {
        let mut sim = sim_with_timeout(Some(TIMEOUT));
        if with_worker {
            sim.worker("tcp://127.0.0.1:1", 1);
        }
        sim.submit(&["r"], vec![t("r", &[]).ann(annotation, value.clone())]);
        assert_eq!(sim.state("r"), Some(TaskState::NoWorker), "{annotation}");
        sim.tick(0.1);
        assert!(sim.s.check_no_workers(sim.now).is_empty());
        sim.tick(TIMEOUT);
        assert_eq!(
            sim.s.check_no_workers(sim.now),
            vec![k("r")],
            "{annotation}"
        );
        sim.drain();
        assert_eq!(
            erred_classes(&mut sim),
            vec![("r".to_string(), class)],
            "{annotation} {with_worker}"
        );
    }
}

#[test]
fn a_task_stranded_by_the_last_running_workers_removal_has_no_worker_to_blame() {
    let mut sim = sim_with_timeout(Some(TIMEOUT));
    let holder = sim.worker("tcp://127.0.0.1:1", 1);
    // five input groups make `z`'s group not root-ish: it waits in no-worker
    let inputs = ["a", "b", "c", "d", "e"];
    sim.submit(&inputs, inputs.iter().map(|n| t(n, &[])).collect());
    sim.run_all();
    sim.status(holder, "paused");
    let runner = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["z"], vec![t("z", &inputs)]);
    let z = sim.one_compute();
    assert_eq!(z.worker, runner);
    sim.tick(1.0);
    sim.s.remove_worker(runner, sim.now);
    sim.drain();
    assert_eq!(sim.state("z"), Some(TaskState::NoWorker));
    sim.tick(TIMEOUT + 0.25);
    assert_eq!(sim.s.check_no_workers(sim.now), vec![k("z")]);
    sim.drain();
    // Python takes the removal's time before `z` becomes unrunnable, so
    // the period without workers began first: no worker is to blame
    assert_eq!(
        erred_classes(&mut sim),
        vec![("z".to_string(), "NoWorkerError")]
    );
    // the inputs stay where they are
    assert_eq!(sim.state("a"), Some(TaskState::Memory));
}
