//! The transition log behind `client.story`: off by default, Python's
//! `Transition` tuples when on, bounded, and still naming forgotten tasks.

mod common;

use common::*;
use dask_core::Config;
use dask_wire::{Key, Value};

fn logging(length: usize) -> Sim {
    let config = Config {
        transition_log_length: length,
        ..Config::default()
    };
    let mut sim = Sim::with_config(config);
    sim.worker("tcp://a:1", 1);
    sim.clear();
    sim
}

/// `(start, finish)` of each record.
fn moves(story: &[Value]) -> Vec<(String, String)> {
    story
        .iter()
        .map(|r| {
            let Value::Array(f) = r else { panic!("{r:?}") };
            (
                f[1].as_str().unwrap().to_string(),
                f[2].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn a_task_s_story_from_submission_to_forgotten() {
    let mut sim = logging(1000);
    sim.submit(&["y"], vec![t("x", &[]), t("y", &["x"])]);
    sim.run_all();
    let story = sim.s.story(&[k("x")]);
    // (key, start, finish) of every record touching x
    let rows: Vec<(Key, String, String)> = story
        .iter()
        .zip(moves(&story))
        .map(|(r, (a, b))| {
            let Value::Array(f) = r else { unreachable!() };
            (key_of(&f[0]), a, b)
        })
        .collect();
    let row = |key: &str, a: &str, b: &str| (k(key), a.to_string(), b.to_string());
    assert_eq!(
        rows,
        vec![
            // the requested y first, recommending that x be computed
            row("y", "released", "waiting"),
            row("x", "released", "waiting"),
            row("x", "waiting", "processing"),
            row("x", "processing", "memory"),
            // y's completion, recommending that x be released
            row("y", "processing", "memory"),
            row("x", "memory", "released"),
        ]
    );
    let Value::Array(fields) = &story[4] else {
        unreachable!()
    };
    let recs = key_map(&fields[3]);
    assert_eq!(recs.get(&k("x")).and_then(Value::as_str), Some("released"));
    assert!(
        matches!(fields[4], Value::Raw(_)),
        "stimulus id: {:?}",
        fields[4]
    );
    assert!(matches!(fields[5], Value::Float(t) if t > 0.0));

    // released by the client: forgotten, and the story still names it
    sim.release(&["y"]);
    assert_eq!(sim.state("x"), None);
    let all = moves(&sim.s.story(&[k("x")]));
    assert_eq!(all.last(), Some(&pair("released", "forgotten")), "{all:?}");
}

#[test]
fn the_log_keeps_only_the_last_transitions_and_is_off_by_default() {
    let mut sim = logging(3);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.submit(&["z"], vec![t("z", &[])]);
    sim.run_all();
    // x's three transitions were pushed out by z's
    assert!(sim.s.story(&[k("x")]).is_empty());
    assert_eq!(sim.s.story(&[k("z")]).len(), 3);
    assert_eq!(sim.s.transition_log_values().len(), 3);

    let mut off = Sim::new();
    off.worker("tcp://a:1", 1);
    off.submit(&["x"], vec![t("x", &[])]);
    off.run_all();
    assert!(off.s.story(&[k("x")]).is_empty());
    assert!(off.s.transition_log_values().is_empty());
}
