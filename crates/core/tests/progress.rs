//! Progress bars (`distributed.progress`): what a bar counts, when it
//! finishes and when it ends in an error, as Python's `Progress` and
//! `MultiProgress` plugins decide.

mod common;

use common::*;
use dask_core::progress::{ProgressId, ProgressKind};
use dask_wire::Value;

fn sim() -> Sim {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 4);
    sim.clear();
    sim
}

fn report(sim: &Sim, id: ProgressId) -> Value {
    sim.s.progress_report(id).expect("an open bar")
}

fn counts(r: &Value) -> (i64, i64) {
    (
        r.get("all").unwrap().as_i64().unwrap(),
        r.get("remaining").unwrap().as_i64().unwrap(),
    )
}

fn status(r: &Value) -> Option<&str> {
    r.get("status").unwrap().as_str()
}

/// `inc-0 -> inc-1 -> sum-0`, `sum-0` requested.
fn chain(sim: &mut Sim) {
    sim.submit(
        &["sum-0"],
        vec![
            t("inc-0", &[]),
            t("inc-1", &["inc-0"]),
            t("sum-0", &["inc-1"]),
        ],
    );
}

fn finish_one(sim: &mut Sim) {
    let c = sim.one_compute();
    sim.finish(&c);
}

#[test]
fn a_bar_counts_the_keys_and_what_they_need_down_to_finished() {
    for complete in [false, true] {
        let mut sim = sim();
        chain(&mut sim);
        let id = sim
            .s
            .progress_start(&[k("sum-0")], complete, ProgressKind::Single)
            .unwrap();
        let mut seen = vec![counts(&report(&sim, id))];
        for _ in 0..3 {
            assert_eq!(status(&report(&sim, id)), None);
            finish_one(&mut sim);
            seen.push(counts(&report(&sim, id)));
        }
        assert_eq!(
            seen,
            [(3, 3), (3, 2), (3, 1), (3, 0)],
            "complete={complete}"
        );
        assert_eq!(status(&report(&sim, id)), Some("finished"));
        sim.s.progress_stop(id);
        assert!(sim.s.progress_report(id).is_none());
    }
}

#[test]
fn computed_dependencies_count_only_with_complete() {
    // (complete, all, remaining): `inc-0` is in memory when the bar opens
    let table = [(false, 1, 1), (true, 2, 1)];
    for (complete, all, remaining) in table {
        let mut sim = sim();
        sim.submit(&["inc-0"], vec![t("inc-0", &[])]);
        sim.run_all();
        sim.submit(&["inc-1"], vec![t("inc-1", &["inc-0"])]);
        let id = sim
            .s
            .progress_start(&[k("inc-1")], complete, ProgressKind::Single)
            .unwrap();
        assert_eq!(
            counts(&report(&sim, id)),
            (all, remaining),
            "complete={complete}"
        );
        finish_one(&mut sim);
        assert_eq!(status(&report(&sim, id)), Some("finished"));
    }
}

#[test]
fn a_bar_waits_for_unknown_keys_and_finishes_at_once_on_computed_ones() {
    let mut sim = sim();
    assert!(sim
        .s
        .progress_start(&[k("inc-0")], false, ProgressKind::Single)
        .is_none());
    sim.submit(&["inc-0"], vec![t("inc-0", &[])]);
    sim.run_all();
    let id = sim
        .s
        .progress_start(&[k("inc-0")], false, ProgressKind::Single)
        .unwrap();
    let r = report(&sim, id);
    assert_eq!((counts(&r), status(&r)), ((1, 0), Some("finished")));
}

#[test]
fn a_failure_ends_the_bar_with_the_exception_of_the_task_that_raised() {
    for already_erred in [false, true] {
        let mut sim = sim();
        chain(&mut sim);
        let c = sim.one_compute();
        let opened_before = (!already_erred).then(|| {
            sim.s
                .progress_start(&[k("sum-0")], false, ProgressKind::Single)
                .unwrap()
        });
        sim.fail(&c, exception("boom"));
        let id = opened_before.unwrap_or_else(|| {
            sim.s
                .progress_start(&[k("sum-0")], true, ProgressKind::Single)
                .unwrap()
        });
        let r = report(&sim, id);
        assert_eq!(
            status(&r),
            Some("error"),
            "already_erred={already_erred}: {r:?}"
        );
        assert_eq!(r.get("exception"), Some(&exception("boom")));
        // opened before: the task that raised is the first tracked one to
        // err; opened after: any erred one (Python replays them in set order)
        let key = key_of(r.get("key").unwrap());
        let expected: &[&str] = if already_erred {
            &["inc-0", "inc-1", "sum-0"]
        } else {
            &["inc-0"]
        };
        assert!(expected.iter().any(|e| key == k(e)), "{key:?}");
    }
}

#[test]
fn cancelling_a_key_ends_the_bar_with_an_error_naming_it() {
    let mut sim = sim();
    chain(&mut sim);
    let id = sim
        .s
        .progress_start(&[k("sum-0")], false, ProgressKind::Single)
        .unwrap();
    sim.release(&["sum-0"]);
    let r = report(&sim, id);
    assert_eq!(status(&r), Some("error"), "{r:?}");
    let text = r.get("exception").unwrap().as_str().unwrap();
    assert!(text.contains("cancelled"), "{text}");
    assert!(r.get("key").is_some());
}

#[test]
fn a_bar_by_prefix_counts_each_prefix() {
    let mut sim = sim();
    sim.submit(
        &["sum-0"],
        vec![
            t("inc-0", &[]),
            t("inc-1", &[]),
            t("sum-0", &["inc-0", "inc-1"]),
        ],
    );
    let id = sim
        .s
        .progress_start(&[k("sum-0")], false, ProgressKind::ByPrefix)
        .unwrap();
    let per_prefix = |sim: &Sim, field: &str| {
        let r = report(sim, id);
        let mut v: Vec<(String, i64)> = r
            .get(field)
            .unwrap()
            .as_map()
            .unwrap()
            .iter()
            .map(|(g, n)| (g.as_str().unwrap().to_string(), n.as_i64().unwrap()))
            .collect();
        v.sort();
        v
    };
    let pairs = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(g, n)| (g.to_string(), *n)).collect()
    };
    assert_eq!(per_prefix(&sim, "all"), pairs(&[("inc", 2), ("sum", 1)]));
    for c in sim.computes() {
        sim.finish(&c);
    }
    assert_eq!(
        per_prefix(&sim, "remaining"),
        pairs(&[("inc", 0), ("sum", 1)])
    );
    finish_one(&mut sim);
    assert_eq!(
        per_prefix(&sim, "remaining"),
        pairs(&[("inc", 0), ("sum", 0)])
    );
    assert_eq!(status(&report(&sim, id)), Some("finished"));
    sim.s.validate_worker_accounting().unwrap();
}

#[test]
fn a_restart_finishes_every_open_bar() {
    let mut sim = sim();
    chain(&mut sim);
    let id = sim
        .s
        .progress_start(&[k("sum-0")], false, ProgressKind::Single)
        .unwrap();
    sim.s.restart_forget_all(sim.now);
    let r = report(&sim, id);
    assert_eq!(status(&r), Some("finished"), "{r:?}");
    assert_eq!(counts(&r), (3, 3));
}
