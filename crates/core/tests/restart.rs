//! `restart`: every task is forgotten, whoever held it, and every client is
//! told; the targets and the removal of workers without a nanny.

mod common;

use common::*;
use dask_core::Outgoing;
use dask_wire::Value;

#[test]
fn restart_forgets_every_task_and_tells_every_client() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let other = sim.add_client("Client-2");
    sim.submit(&["c"], vec![t("a", &[]), t("b", &["a"]), t("c", &["b"])]);
    sim.run_all();
    sim.submit_as(other, &["d"], vec![t("d", &[])]);
    // a dataset holds c too, and a task is still running
    sim.s
        .publish_put(vec![(k("ds"), vec![k("c")], Value::Nil)], false)
        .unwrap();
    sim.clear();
    assert!(sim.s.task_count() >= 4);

    sim.s.restart_forget_all(5.0);
    assert_eq!(sim.s.task_count(), 0);
    let told: Vec<_> = sim
        .s
        .drain_outbox()
        .filter_map(|m| match m {
            Outgoing::Client(c, v) if v.get("op").and_then(Value::as_str) == Some("restart") => {
                Some(c)
            }
            _ => None,
        })
        .collect();
    assert!(
        told.contains(&sim.client) && told.contains(&other),
        "{told:?}"
    );
    assert!(
        sim.s.worker_address(w).is_some(),
        "workers stay until restarted"
    );
}

#[test]
fn restart_targets_and_workers_without_a_nanny() {
    let mut sim = Sim::new();
    let mut reg = registration("tcp://127.0.0.1:2", 1);
    reg.nanny = Value::str("tcp://127.0.0.1:20");
    sim.worker_reg(reg);
    sim.worker("tcp://127.0.0.1:1", 1);
    let all = sim.s.restart_targets(None);
    let got: Vec<(&str, Option<&str>)> = all
        .iter()
        .map(|t| (t.address.as_str(), t.nanny.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("tcp://127.0.0.1:1", None),
            ("tcp://127.0.0.1:2", Some("tcp://127.0.0.1:20"))
        ]
    );
    let one = sim
        .s
        .restart_targets(Some(&["tcp://127.0.0.1:2".to_string(), "nope".into()]));
    assert_eq!(one.len(), 1);

    sim.clear();
    assert!(sim.s.close_and_remove_worker("tcp://127.0.0.1:1", 2.0));
    assert!(
        !sim.s.close_and_remove_worker("tcp://127.0.0.1:1", 2.0),
        "gone"
    );
    let closes: Vec<_> = sim
        .s
        .drain_outbox()
        .map(decode_encoded)
        .filter(|m| matches!(m, Outgoing::Worker(_, v) if op(v) == "close"))
        .collect();
    assert_eq!(closes.len(), 1, "told to close before it is removed");
    assert_eq!(sim.s.worker_count(), 1);
}

/// The snapshot of prefix `name`, if the scheduler knows it.
fn prefix(sim: &Sim, name: &str) -> Option<dask_core::stats::PrefixSnapshot> {
    sim.s
        .metrics_snapshot()
        .prefixes
        .into_iter()
        .find(|p| p.name == name)
}

#[test]
fn restart_resets_prefix_durations_and_counters() {
    let mut sim = Sim::with_config(dask_core::Config {
        default_task_durations: vec![("slow".to_string(), 7.0)],
        ..dask_core::Config::default()
    });
    sim.worker("tcp://127.0.0.1:1", 1);
    // each task's compute lasts 10 ms (`task_finished_msg`)
    sim.submit(
        &["inc-1", "slow-1"],
        vec![t("inc-1", &[]), t("slow-1", &[])],
    );
    sim.run_all();
    let inc = prefix(&sim, "inc").expect("inc is known");
    assert!(inc.has_history());
    assert!(
        (inc.duration_average.unwrap() - 0.01).abs() < 1e-9,
        "{inc:?}"
    );
    let slow = prefix(&sim, "slow").unwrap().duration_average.unwrap();
    assert!(slow < 7.0, "the measurement moved the preset: {slow}");

    sim.s.restart_forget_all(5.0);
    let inc = prefix(&sim, "inc").unwrap();
    assert!(!inc.has_history(), "{inc:?}");
    assert_eq!(inc.duration_average, None);
    assert_eq!(inc.counters.compute_seconds, 0.0);
    assert_eq!(
        prefix(&sim, "slow").unwrap().duration_average,
        Some(7.0),
        "back to the preset"
    );

    // counting starts again from zero
    sim.submit(&["inc-2"], vec![t("inc-2", &[])]);
    sim.run_all();
    let inc = prefix(&sim, "inc").unwrap();
    let memory = dask_core::stats::state_index(dask_core::TaskState::Memory);
    assert_eq!(inc.counters.state_totals[memory], 1);
    assert!(inc.has_history());
}
