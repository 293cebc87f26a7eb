//! The transition log behind `client.story`: on by default as in Python,
//! Python's `Transition` tuples, bounded, and still naming forgotten tasks
//! after their ids name other tasks.

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
    // the submission's records and a completion's come from different
    // messages, so they name different stimulus ids
    let Value::Array(submitted) = &story[0] else {
        unreachable!()
    };
    assert_ne!(submitted[4], fields[4]);
    assert!(matches!(fields[5], Value::Float(t) if t > 0.0));

    // released by the client: forgotten, and the story still names it
    sim.release(&["y"]);
    assert_eq!(sim.state("x"), None);
    let all = moves(&sim.s.story(&[k("x")]));
    assert_eq!(all.last(), Some(&pair("released", "forgotten")), "{all:?}");
}

#[test]
fn the_log_keeps_only_the_last_transitions_and_can_be_turned_off() {
    let mut sim = logging(3);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    sim.submit(&["z"], vec![t("z", &[])]);
    sim.run_all();
    // x's three transitions were pushed out by z's
    assert!(sim.s.story(&[k("x")]).is_empty());
    assert_eq!(sim.s.story(&[k("z")]).len(), 3);
    assert_eq!(sim.s.transition_log_values().len(), 3);

    let mut off = logging(0);
    off.submit(&["x"], vec![t("x", &[])]);
    off.run_all();
    assert!(off.s.story(&[k("x")]).is_empty());
    assert!(off.s.transition_log_values().is_empty());
}

#[test]
fn the_log_is_on_by_default_with_python_s_length() {
    let mut sim = Sim::new();
    sim.worker("tcp://a:1", 1);
    sim.submit(&["x"], vec![t("x", &[])]);
    sim.run_all();
    assert_eq!(
        moves(&sim.s.story(&[k("x")])),
        vec![
            pair("released", "waiting"),
            pair("waiting", "processing"),
            pair("processing", "memory"),
        ]
    );
    assert_eq!(Config::default().transition_log_length, 1000);
}

/// Records by key, each key's `(start, finish)` in the log's order.
fn chains(log: &[Value]) -> std::collections::HashMap<Key, Vec<(String, String)>> {
    let mut by_key: std::collections::HashMap<Key, Vec<(String, String)>> = Default::default();
    for (record, step) in log.iter().zip(moves(log)) {
        let Value::Array(f) = record else {
            unreachable!()
        };
        by_key.entry(key_of(&f[0])).or_default().push(step);
    }
    by_key
}

#[test]
fn records_of_a_forgotten_task_keep_its_key_after_its_id_names_another() {
    // 1,100 keys forgotten is enough for the key index to sweep (from
    // 1,024 dead entries) and hand their ids to a smaller graph's keys
    let mut sim = logging(100_000);
    sim.worker("tcp://b:1", 1000);
    let names = |p: &str, n: usize| (0..n).map(|i| format!("{p}-{i}")).collect::<Vec<_>>();
    let (olds, news) = (names("old", 1100), names("new", 100));
    let graph = |v: &[String]| v.iter().map(|n| t(n, &[])).collect::<Vec<_>>();

    sim.submit(&refs(&olds), graph(&olds));
    sim.run_all();
    let old_ids: Vec<_> = olds.iter().map(|n| sim.s.task_id(&k(n)).unwrap()).collect();
    sim.release(&refs(&olds));
    sim.submit(&refs(&news), graph(&news));
    sim.run_all();
    let (old, new) = olds
        .iter()
        .zip(&old_ids)
        .find_map(|(old, id)| {
            let new = news.iter().find(|n| sim.s.task_id(&k(n)) == Some(*id))?;
            Some((old.as_str(), new.as_str()))
        })
        .expect("a new key reuses a forgotten key's id");

    let one_key = |story: &[Value]| {
        story
            .iter()
            .map(|r| {
                let Value::Array(f) = r else { unreachable!() };
                key_of(&f[0])
            })
            .collect::<std::collections::HashSet<_>>()
    };
    let old_story = sim.s.story(&[k(old)]);
    assert_eq!(one_key(&old_story), [k(old)].into(), "{old_story:?}");
    // released by its client, it went from memory to forgotten at once
    assert_eq!(moves(&old_story).last(), Some(&pair("memory", "forgotten")));
    let new_story = sim.s.story(&[k(new)]);
    assert_eq!(one_key(&new_story), [k(new)].into(), "{new_story:?}");
    assert_eq!(moves(&new_story).len(), 3, "{new_story:?}");

    // every key's records chain, from released to where it is now
    let all = chains(&sim.s.transition_log_values());
    assert_eq!(all.len(), 1200);
    for (key, steps) in &all {
        assert_eq!(steps[0].0, "released", "{key:?}: {steps:?}");
        for w in steps.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{key:?}: {steps:?}");
        }
        let last = &steps.last().unwrap().1;
        let now = if key.as_bytes().windows(3).any(|w| w == b"old") {
            "forgotten"
        } else {
            "memory"
        };
        assert_eq!(last, now, "{key:?}: {steps:?}");
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_short_ring_holds_the_last_records_of_a_long_one() {
    // the same work logged in a ring of 10,000 and in rings too short for
    // it: each short ring holds exactly the long one's last records, with
    // the same recommendations, stimulus ids and times (records are
    // overwritten as their recommendations, forgotten keys and stimulus
    // ids are dropped and the recommendation ring grows)
    let run = |length: usize| {
        let mut sim = logging(length);
        sim.worker("tcp://b:1", 4);
        for round in 0..4 {
            // one release recommends 40 to 320 tasks (more than the first
            // recommendation ring holds)
            let name = |i: usize| format!("r{round}-{i}");
            let roots: Vec<String> = (0..40 << round).map(name).collect();
            let mut tasks: Vec<T> = roots.iter().map(|r| t(r, &[])).collect();
            let all: Vec<&str> = roots.iter().map(String::as_str).collect();
            let sum = format!("r{round}-sum");
            tasks.push(t(&sum, &all));
            sim.submit(&[sum.as_str()], tasks);
            sim.tick(0.5);
            sim.run_all();
            sim.release(&[sum.as_str()]);
        }
        sim.s.transition_log_values()
    };
    let long = run(10_000);
    assert!(long.len() > 2000 && long.len() < 10_000, "{}", long.len());
    for short in [1, 37, 100, 333, 1500] {
        let got = run(short);
        assert_eq!(got.len(), short);
        assert_eq!(got[..], long[long.len() - short..], "ring of {short}");
    }
}
