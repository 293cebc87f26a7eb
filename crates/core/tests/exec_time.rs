//! What a worker's heartbeat says it is executing (`executing`, seconds
//! each task has run): Python's `TaskPrefix.add_exec_time` and
//! `_get_prefix_duration`, which make a prefix of long tasks count as long
//! before any of them finished, read here as the worker's occupancy; and
//! `WorkerState.executing`, as the `run_on_scheduler` copy shows it.

mod common;

use common::*;
use dask_core::Config;
use dask_wire::{Key, Value};

const ADDR: &str = "tcp://127.0.0.1:1";

/// The worker's entry of the stand-in snapshot.
fn worker_entry(sim: &Sim, with_tasks: bool) -> Value {
    let snap = sim.s.snapshot(with_tasks);
    let Some(Value::Array(workers)) = snap.get("workers") else {
        panic!("no workers in {snap:?}");
    };
    assert_eq!(workers.len(), 1);
    workers[0].clone()
}

fn occupancy(sim: &Sim) -> f64 {
    worker_entry(sim, false)
        .get("occupancy")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// The prefix's `[name, average, state counts, suspicious, longest
/// execution]` row of the snapshot.
fn prefix_row(sim: &Sim, name: &str) -> Vec<Value> {
    let snap = sim.s.snapshot(false);
    let Some(Value::Array(prefixes)) = snap.get("prefixes") else {
        panic!("no prefixes in {snap:?}");
    };
    prefixes
        .iter()
        .find_map(|p| match p {
            Value::Array(row) if row[0].as_str() == Some(name) => Some(row.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no prefix {name}"))
}

fn heartbeat(sim: &mut Sim, executing: &[(&Key, f64)]) {
    assert!(sim.s.heartbeat_worker(ADDR, None, sim.now).is_some());
    let executing = executing.iter().map(|(k, s)| ((*k).clone(), *s)).collect();
    sim.s.record_executing(ADDR, executing);
}

/// A one-thread worker; with `finish_first`, task `slow-0` has run and
/// finished (in 0.01 s); then `slow-1` is processing on the worker (the
/// `compute-task` returned).
fn one_slow_task(config: Config, finish_first: bool) -> (Sim, Compute) {
    let mut sim = Sim::with_config(config);
    let w = sim.worker(ADDR, 1);
    if finish_first {
        sim.submit(&["slow-0"], vec![t("slow-0", &[])]);
        let c = sim.one_compute();
        sim.tick(1.0);
        sim.finish(&c);
    }
    sim.submit(&["slow-1"], vec![t("slow-1", &[])]);
    let c = sim.one_compute();
    assert_eq!(c.worker, w);
    sim.clear();
    (sim, c)
}

#[test]
fn heartbeats_of_long_tasks_raise_the_duration_estimate() {
    struct Case {
        what: &'static str,
        preset: Option<f64>,
        finish_first: bool,
        reports: &'static [f64],
        estimate: f64,
        longest: Option<f64>,
    }
    let cases = [
        Case {
            what: "nothing known: unknown-task-duration",
            preset: None,
            finish_first: false,
            reports: &[],
            estimate: 0.5,
            longest: None,
        },
        Case {
            what: "running 3 s, none finished: twice the longest",
            preset: None,
            finish_first: false,
            reports: &[3.0],
            estimate: 6.0,
            longest: Some(3.0),
        },
        Case {
            what: "the longest of several reports is kept",
            preset: None,
            finish_first: false,
            reports: &[1.0, 3.0, 2.0],
            estimate: 6.0,
            longest: Some(3.0),
        },
        Case {
            what: "within twice the measured average: the average stays",
            preset: None,
            finish_first: true,
            reports: &[0.015],
            estimate: 0.01,
            longest: Some(0.015),
        },
        Case {
            what: "beyond twice the measured average: dropped for twice the longest",
            preset: None,
            finish_first: true,
            reports: &[0.5],
            estimate: 1.0,
            longest: Some(0.5),
        },
        Case {
            what: "within twice a default-task-durations preset: the preset stays",
            preset: Some(2.0),
            finish_first: false,
            reports: &[1.0],
            estimate: 2.0,
            longest: Some(1.0),
        },
        Case {
            what: "beyond twice the preset: dropped too",
            preset: Some(2.0),
            finish_first: false,
            reports: &[5.0],
            estimate: 10.0,
            longest: Some(5.0),
        },
    ];
    for case in cases {
        let config = Config {
            default_task_durations: case
                .preset
                .map(|d| vec![("slow".to_string(), d)])
                .unwrap_or_default(),
            ..Config::default()
        };
        let (mut sim, c) = one_slow_task(config, case.finish_first);
        for &seconds in case.reports {
            sim.tick(0.5);
            heartbeat(&mut sim, &[(&c.key, seconds)]);
        }
        let got = occupancy(&sim);
        assert!(
            (got - case.estimate).abs() < 1e-9,
            "{}: occupancy {got}, expected {}",
            case.what,
            case.estimate
        );
        assert_eq!(
            prefix_row(&sim, "slow")[4].as_f64(),
            case.longest,
            "{}",
            case.what
        );
    }
}

/// Once the long task finishes, its measured duration is the estimate
/// again (Python's `add_duration` replaces an unknown average).
#[test]
fn a_finished_task_measures_the_dropped_average_again() {
    let (mut sim, c) = one_slow_task(Config::default(), true);
    heartbeat(&mut sim, &[(&c.key, 0.5)]);
    assert_eq!(
        prefix_row(&sim, "slow")[1],
        Value::Nil,
        "the average is dropped"
    );
    sim.submit(&["slow-2"], vec![t("slow-2", &[])]);
    let next = sim.one_compute();
    assert_eq!(next.worker, c.worker);
    sim.tick(1.0);
    // 0.01 s of compute, as `task_finished_msg` reports it
    sim.finish(&c);
    let average = prefix_row(&sim, "slow")[1]
        .as_f64()
        .expect("measured again");
    assert!((average - 0.01).abs() < 1e-6, "{average}");
    // only slow-2 is left on the worker, at that estimate
    assert!((occupancy(&sim) - average).abs() < 1e-9);
}

#[test]
fn the_worker_shows_what_its_last_heartbeat_said_was_executing() {
    let (mut sim, c) = one_slow_task(Config::default(), false);
    let unknown = k("never-submitted");
    heartbeat(&mut sim, &[(&c.key, 1.5), (&unknown, 9.0)]);
    let id = sim.s.task_id(&c.key).expect("slow-1 is known");
    // the key the scheduler does not know is left out
    assert_eq!(
        worker_entry(&sim, true).get("executing"),
        Some(&Value::Array(vec![Value::Array(vec![
            Value::Int(i64::from(id)),
            Value::Float(1.5)
        ])]))
    );
    assert_eq!(prefix_row(&sim, "slow")[4].as_f64(), Some(1.5));
    // without tasks, the copy names none
    assert_eq!(worker_entry(&sim, false).get("executing"), None);
    // the next heartbeat replaces the list
    heartbeat(&mut sim, &[]);
    assert_eq!(worker_entry(&sim, true).get("executing"), None);
    // a list from a worker the scheduler does not know is ignored
    sim.s
        .record_executing("tcp://127.0.0.1:9", vec![(c.key.clone(), 50.0)]);
    assert_eq!(prefix_row(&sim, "slow")[4].as_f64(), Some(1.5));
}

/// A restart forgets what the prefixes learned, their longest executions
/// included (Python drops its `task_prefixes`).
#[test]
fn a_restart_forgets_the_longest_executions() {
    let (mut sim, c) = one_slow_task(Config::default(), false);
    heartbeat(&mut sim, &[(&c.key, 3.0)]);
    assert!((occupancy(&sim) - 6.0).abs() < 1e-9);
    sim.s.restart_forget_all(sim.now);
    sim.clear();
    sim.submit(&["slow-2"], vec![t("slow-2", &[])]);
    sim.one_compute();
    assert_eq!(prefix_row(&sim, "slow")[4], Value::Nil);
    assert!(
        (occupancy(&sim) - 0.5).abs() < 1e-9,
        "unknown-task-duration again: {}",
        occupancy(&sim)
    );
}
