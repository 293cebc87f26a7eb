//! What the scheduler learns from workers' heartbeats, as Python's
//! `heartbeat_worker` does:
//! - what a worker is executing (`executing`, seconds each task has run):
//!   Python's `TaskPrefix.add_exec_time` and `_get_prefix_duration`, which
//!   make a prefix of long tasks count as long before any of them
//!   finished, read here as the worker's occupancy; and
//!   `WorkerState.executing`, as the `run_on_scheduler` copy shows it;
//! - the bandwidth a worker measured (`metrics.bandwidth.total`), which
//!   `Scheduler.bandwidth` follows and transfer costs are divided by, and
//!   per pair of workers and per type (`bandwidth_workers`,
//!   `bandwidth_types`);
//! - how far the worker's clock is behind (`time_delay`, from its `now`).
//!
//! As in Python, a registration counts as a first heartbeat.

mod common;

use common::*;
use dask_core::{Config, WorkerId};
use dask_wire::{Key, Value};

const ADDR: &str = "tcp://127.0.0.1:1";

/// Worker `w`'s entry of the stand-in snapshot.
fn worker_entry(sim: &Sim, with_tasks: bool, w: WorkerId) -> Value {
    let snap = sim.s.snapshot(with_tasks);
    let Some(Value::Array(workers)) = snap.get("workers") else {
        panic!("no workers in {snap:?}");
    };
    workers
        .iter()
        .find(|v| v.get("i").and_then(Value::as_i64) == Some(i64::from(w.0)))
        .unwrap_or_else(|| panic!("no worker {w:?}"))
        .clone()
}

fn occupancy(sim: &Sim, w: WorkerId) -> f64 {
    worker_entry(sim, false, w)
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
    assert!(sim.s.heartbeat_worker(ADDR, None, None, sim.now).is_some());
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
        let got = occupancy(&sim, c.worker);
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
    assert!((occupancy(&sim, c.worker) - average).abs() < 1e-9);
}

#[test]
fn the_worker_shows_what_its_last_heartbeat_said_was_executing() {
    let (mut sim, c) = one_slow_task(Config::default(), false);
    let unknown = k("never-submitted");
    heartbeat(&mut sim, &[(&c.key, 1.5), (&unknown, 9.0)]);
    let id = sim.s.task_id(&c.key).expect("slow-1 is known");
    // the key the scheduler does not know is left out
    assert_eq!(
        worker_entry(&sim, true, c.worker).get("executing"),
        Some(&Value::Array(vec![Value::Array(vec![
            Value::Int(i64::from(id)),
            Value::Float(1.5)
        ])]))
    );
    assert_eq!(prefix_row(&sim, "slow")[4].as_f64(), Some(1.5));
    // without tasks, the copy names none
    assert_eq!(worker_entry(&sim, false, c.worker).get("executing"), None);
    // the next heartbeat replaces the list
    heartbeat(&mut sim, &[]);
    assert_eq!(worker_entry(&sim, true, c.worker).get("executing"), None);
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
    assert!((occupancy(&sim, c.worker) - 6.0).abs() < 1e-9);
    sim.s.restart_forget_all(sim.now);
    sim.clear();
    sim.submit(&["slow-2"], vec![t("slow-2", &[])]);
    sim.one_compute();
    assert_eq!(prefix_row(&sim, "slow")[4], Value::Nil);
    assert!(
        (occupancy(&sim, c.worker) - 0.5).abs() < 1e-9,
        "unknown-task-duration again: {}",
        occupancy(&sim, c.worker)
    );
}

/// A heartbeat's `metrics` with `bandwidth.total` = `total` (and the
/// per-worker and per-type tables a worker sends beside it).
fn bandwidth_metrics(total: Value) -> Value {
    Value::map([
        ("memory", Value::Int(0)),
        (
            "bandwidth",
            Value::map([
                ("total", total),
                ("workers", Value::Map(vec![])),
                ("types", Value::Map(vec![])),
            ]),
        ),
    ])
}

fn bandwidth(sim: &Sim) -> f64 {
    sim.s
        .snapshot(false)
        .get("bandwidth")
        .and_then(Value::as_f64)
        .expect("the copy has the bandwidth")
}

#[test]
fn the_bandwidth_follows_the_workers_measurements() {
    struct Case {
        what: &'static str,
        workers: usize,
        /// (index of the worker sending, its metrics)
        heartbeats: Vec<(usize, Value)>,
        expected: f64,
    }
    let report = |i: usize, total: f64| (i, bandwidth_metrics(Value::Float(total)));
    let cases = [
        Case {
            what: "no heartbeat: the bandwidth setting",
            workers: 2,
            heartbeats: vec![],
            expected: 100e6,
        },
        Case {
            what: "one worker: all the way to its measurement",
            workers: 1,
            heartbeats: vec![report(0, 1e9)],
            expected: 1e9,
        },
        Case {
            what: "two workers: half the way",
            workers: 2,
            heartbeats: vec![report(0, 3e8)],
            expected: 2e8,
        },
        Case {
            what: "two workers, two heartbeats: half the way each time",
            workers: 2,
            heartbeats: vec![report(0, 3e8), report(1, 3e8)],
            expected: 2.5e8,
        },
        Case {
            what: "four workers: a quarter of the way",
            workers: 4,
            heartbeats: vec![report(3, 5e8)],
            expected: 2e8,
        },
        Case {
            what: "an integer measurement counts as one",
            workers: 1,
            heartbeats: vec![(0, bandwidth_metrics(Value::Int(400_000_000)))],
            expected: 4e8,
        },
        Case {
            what: "no bandwidth in the metrics: unchanged",
            workers: 1,
            heartbeats: vec![(0, Value::map([("memory", Value::Int(0))]))],
            expected: 100e6,
        },
        Case {
            what: "zero, negative, not a number or not finite: ignored",
            workers: 1,
            heartbeats: vec![
                report(0, 0.0),
                report(0, -5e8),
                report(0, f64::NAN),
                report(0, f64::INFINITY),
                (0, bandwidth_metrics(Value::str("fast"))),
            ],
            expected: 100e6,
        },
    ];
    for case in cases {
        let mut sim = Sim::new();
        let addrs: Vec<String> = (0..case.workers)
            .map(|i| format!("tcp://127.0.0.1:{}", i + 1))
            .collect();
        for a in &addrs {
            sim.worker(a, 1);
        }
        for (i, metrics) in case.heartbeats {
            assert!(sim
                .s
                .heartbeat_worker(&addrs[i], Some(metrics), None, sim.now)
                .is_some());
        }
        // a worker the scheduler does not know changes nothing
        assert!(sim
            .s
            .heartbeat_worker(
                "tcp://10.0.0.1:1",
                Some(bandwidth_metrics(Value::Float(1.0))),
                None,
                sim.now
            )
            .is_none());
        let got = bandwidth(&sim);
        assert!(
            (got - case.expected).abs() < 1e-3,
            "{}: {got}, expected {}",
            case.what,
            case.expected
        );
    }
}

/// Transfer costs use the bandwidth the workers measured: a worker that
/// must first fetch a 200 MB input counts its transfer time in its
/// occupancy (Python's `_network_occ / bandwidth`).
#[test]
fn transfer_times_use_the_measured_bandwidth() {
    let mut sim = Sim::new();
    let (a, b) = two_workers_with_d_on_the_first(&mut sim, 200_000_000);
    let (addr_a, addr_b) = (sim.addr(a), sim.addr(b));
    sim.submit(
        &["u"],
        vec![t("u", &["d"]).ann("workers", workers_ann(&[&addr_b]))],
    );
    assert_eq!(sim.one_compute().worker, b);
    // 0.5 s of unknown duration, and 200 MB at the default 100 MB/s
    assert!((occupancy(&sim, b) - 2.5).abs() < 1e-9);
    // A measured 1.9 GB/s; with two workers the bandwidth goes half the
    // way: 1 GB/s, and the transfer takes 0.2 s.
    sim.s.heartbeat_worker(
        &addr_a,
        Some(bandwidth_metrics(Value::Float(1.9e9))),
        None,
        sim.now,
    );
    assert!((bandwidth(&sim) - 1e9).abs() < 1e-3);
    assert!(
        (occupancy(&sim, b) - 0.7).abs() < 1e-9,
        "{}",
        occupancy(&sim, b)
    );
}

fn pair_metrics(other: &str, sum: f64, count: i64) -> Value {
    let entry =
        |k: &str| Value::map([(k, Value::Array(vec![Value::Float(sum), Value::Int(count)]))]);
    Value::map([
        ("memory", Value::Int(0)),
        (
            "bandwidth",
            Value::map([
                ("total", Value::Float(2e8)),
                ("workers", entry(other)),
                ("types", entry("bytes")),
            ]),
        ),
    ])
}

/// A worker's snapshot field `name` as a float.
fn worker_float(sim: &Sim, w: WorkerId, name: &str) -> f64 {
    worker_entry(sim, false, w)
        .get(name)
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

#[test]
fn time_delay_is_our_clock_minus_the_workers() {
    let mut sim = Sim::new();
    sim.now = 1000.0;
    let mut reg = registration(ADDR, 1);
    reg.sent_at = Some(999.75);
    let w = sim.worker_reg(reg);
    // the registration's `now` counts, as Python's add_worker passes it on
    assert!((worker_float(&sim, w, "time_delay") - 0.25).abs() < 1e-9);
    sim.now = 1010.0;
    sim.s.heartbeat_worker(ADDR, None, Some(1010.5), sim.now);
    assert!((worker_float(&sim, w, "time_delay") + 0.5).abs() < 1e-9);
    // a heartbeat without a time (or with 0, as Python's `if now:`) keeps it
    sim.s.heartbeat_worker(ADDR, None, None, sim.now);
    sim.s.heartbeat_worker(ADDR, None, Some(0.0), sim.now);
    assert!((worker_float(&sim, w, "time_delay") + 0.5).abs() < 1e-9);
    // a worker that never says starts at 0
    let other = sim.worker("tcp://127.0.0.1:2", 1);
    assert_eq!(worker_float(&sim, other, "time_delay"), 0.0);
}

#[test]
fn pair_and_type_bandwidths_follow_the_heartbeats_and_leave_with_a_worker() {
    let mut sim = Sim::new();
    let (a, b) = ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2");
    // a registration's metrics count: the mean of its two transfers; a
    // pair with a worker not connected is left out
    let wb = sim.worker(b, 1);
    let mut reg = registration(a, 1);
    let mut metrics = pair_metrics(b, 6e8, 2);
    let mut bw = metrics
        .get("bandwidth")
        .cloned()
        .expect("bandwidth metrics");
    let mut pairs = bw.get("workers").cloned().expect("pairs");
    pairs.set(
        "tcp://10.0.0.9:1",
        Value::Array(vec![Value::Float(1.0), Value::Int(1)]),
    );
    bw.set("workers", pairs);
    metrics.set("bandwidth", bw);
    reg.metrics = metrics;
    sim.worker_reg(reg);
    assert_eq!(sim.s.bandwidth_workers(), vec![(a, b, 3e8)]);
    assert_eq!(sim.s.bandwidth_types(), vec![("bytes", 3e8)]);
    // its total moved the overall estimate half the way (two workers)
    assert!((bandwidth(&sim) - 1.5e8).abs() < 1e-3);
    // two workers, one transfer: half the way to its sum
    sim.s
        .heartbeat_worker(a, Some(pair_metrics(b, 1e8, 1)), None, sim.now);
    sim.s
        .heartbeat_worker(b, Some(pair_metrics(a, 5e8, 1)), None, sim.now);
    assert_eq!(sim.s.bandwidth_workers(), vec![(a, b, 2e8), (b, a, 5e8)]);
    // the type: 3e8 -> 2e8 (a's heartbeat) -> 3.5e8 (b's)
    assert_eq!(sim.s.bandwidth_types(), vec![("bytes", 3.5e8)]);
    sim.s.remove_worker(wb, sim.now);
    assert!(sim.s.bandwidth_workers().is_empty());
    // the types are the cluster's, not the worker's: they stay
    assert_eq!(sim.s.bandwidth_types(), vec![("bytes", 3.5e8)]);
}
