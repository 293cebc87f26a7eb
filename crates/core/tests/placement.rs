//! Where and when tasks run: restrictions, resources, worker status, root-task
//! queuing, data locality and priorities.

mod common;

use common::*;
use dask_core::{Config, TaskState};
use dask_wire::{Key, Value};

#[test]
fn gpu_task_goes_only_to_gpu_worker() {
    let mut sim = Sim::new();
    let _cpu = sim.worker("tcp://127.0.0.1:1", 4);
    let gpu = sim.worker_res("tcp://127.0.0.1:2", 1, &[("GPU", 1.0)]);
    let tasks: Vec<T> = (0..4)
        .map(|i| t(&format!("g-{i}"), &[]).ann("resources", Value::map([("GPU", Value::Int(1))])))
        .collect();
    sim.submit(&["g-0", "g-1", "g-2", "g-3"], tasks);
    let cs = sim.computes();
    // The scheduler books resources but the worker enforces concurrency: all
    // four go to the GPU worker, none to the CPU worker.
    assert_eq!(cs.len(), 4);
    for c in &cs {
        assert_eq!(c.worker, gpu);
        assert_eq!(
            c.msg.get("resource_restrictions"),
            Some(&Value::map([("GPU", Value::Float(1.0))]))
        );
    }
}

#[test]
fn gpu_task_waits_in_no_worker_until_a_gpu_worker_joins() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 4);
    sim.worker_res("tcp://127.0.0.1:3", 1, &[("GPU", 0.5)]);
    sim.submit(
        &["g"],
        vec![t("g", &[]).ann("resources", Value::map([("GPU", Value::Int(1))]))],
    );
    assert_eq!(sim.state("g"), Some(TaskState::NoWorker));
    assert!(sim.computes().is_empty());
    assert!(!sim.s.is_idle());
    let gpu = sim.worker_res("tcp://127.0.0.1:2", 1, &[("GPU", 1.0)]);
    let c = sim.one_compute();
    assert_eq!(c.worker, gpu);
    sim.finish(&c);
    assert_eq!(sim.state("g"), Some(TaskState::Memory));
}

#[test]
fn set_resources_wakes_no_worker_tasks() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(
        &["g"],
        vec![t("g", &[]).ann("resources", Value::map([("GPU", Value::Int(2))]))],
    );
    assert_eq!(sim.state("g"), Some(TaskState::NoWorker));
    let addr = sim.addr(w);
    assert!(sim.s.set_resources(&addr, vec![("GPU".into(), 2.0)]));
    sim.drain();
    assert_eq!(sim.one_compute().worker, w);
}

#[test]
fn set_resources_updates_like_add_resources() {
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    let addr = sim.addr(w);
    assert!(sim.s.set_resources(&addr, vec![("GPU".into(), 1.0)]));
    assert!(sim
        .s
        .set_resources(&addr, vec![("FPGA".into(), 2.0), ("GPU".into(), 3.0)]));
    let identity = sim.s.workers_identity(-1);
    let resources = identity
        .get(addr.as_str())
        .and_then(|w| w.get("resources"))
        .expect("the worker's resources");
    let mut got: Vec<(String, f64)> = resources
        .as_map()
        .expect("a map")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_f64().unwrap()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, vec![("FPGA".into(), 2.0), ("GPU".into(), 3.0)]);
    assert!(!sim.s.set_resources("tcp://127.0.0.1:9", vec![]));
}

#[test]
fn worker_restrictions_by_address_name_and_host() {
    struct Case {
        what: &'static str,
        restriction: &'static str,
        expect: &'static str,
    }
    let cases = [
        Case {
            what: "address",
            restriction: "tcp://10.0.0.2:2000",
            expect: "tcp://10.0.0.2:2000",
        },
        Case {
            what: "name",
            restriction: "bob",
            expect: "tcp://10.0.0.2:2000",
        },
        Case {
            what: "host",
            restriction: "10.0.0.3",
            expect: "tcp://10.0.0.3:3000",
        },
    ];
    for case in cases {
        let mut sim = Sim::new();
        for (addr, name) in [
            ("tcp://10.0.0.1:1000", "alice"),
            ("tcp://10.0.0.2:2000", "bob"),
            ("tcp://10.0.0.3:3000", "carol"),
        ] {
            let mut reg = registration(addr, 2);
            reg.name = Value::str(name);
            sim.worker_reg(reg);
        }
        let tasks: Vec<T> = (0..6)
            .map(|i| t(&format!("r-{i}"), &[]).ann("workers", workers_ann(&[case.restriction])))
            .collect();
        let keys: Vec<String> = (0..6).map(|i| format!("r-{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        sim.submit(&keys, tasks);
        let cs = sim.computes();
        assert_eq!(cs.len(), 6, "{}", case.what);
        for c in cs {
            assert_eq!(sim.addr(c.worker), case.expect, "{}", case.what);
        }
    }
}

#[test]
fn worker_restriction_as_plain_string() {
    let mut sim = Sim::new();
    sim.worker("tcp://10.0.0.1:1", 1);
    let w2 = sim.worker("tcp://10.0.0.2:1", 1);
    sim.submit(
        &["x"],
        vec![t("x", &[]).ann("workers", Value::str("tcp://10.0.0.2:1"))],
    );
    assert_eq!(sim.one_compute().worker, w2);
}

#[test]
fn restricted_task_waits_for_its_worker() {
    let mut sim = Sim::new();
    sim.worker("tcp://10.0.0.1:1", 1);
    sim.submit(
        &["x"],
        vec![t("x", &[]).ann("workers", workers_ann(&["tcp://10.0.0.9:9"]))],
    );
    assert_eq!(sim.state("x"), Some(TaskState::NoWorker));
    let w = sim.worker("tcp://10.0.0.9:9", 1);
    assert_eq!(sim.one_compute().worker, w);
}

#[test]
fn allow_other_workers_falls_back() {
    for (loose, expect_runs) in [(true, true), (false, false)] {
        let mut sim = Sim::new();
        let w = sim.worker("tcp://10.0.0.1:1", 1);
        sim.submit(
            &["x"],
            vec![t("x", &[])
                .ann("workers", workers_ann(&["tcp://10.0.0.9:9"]))
                .ann("allow_other_workers", Value::Bool(loose))],
        );
        let cs = sim.computes();
        if expect_runs {
            assert_eq!(cs.len(), 1);
            assert_eq!(cs[0].worker, w);
        } else {
            assert!(cs.is_empty());
            assert_eq!(sim.state("x"), Some(TaskState::NoWorker));
        }
    }
}

#[test]
fn allow_other_workers_prefers_the_restricted_worker() {
    let mut sim = Sim::new();
    sim.worker("tcp://10.0.0.1:1", 1);
    let w2 = sim.worker("tcp://10.0.0.2:1", 1);
    for i in 0..4 {
        sim.submit(
            &[&format!("x-{i}")],
            vec![t(&format!("x-{i}"), &[])
                .ann("workers", workers_ann(&["tcp://10.0.0.2:1"]))
                .ann("allow_other_workers", Value::Bool(true))],
        );
    }
    for c in sim.computes() {
        assert_eq!(c.worker, w2);
    }
}

#[test]
fn losing_the_only_valid_worker_parks_processing_task() {
    let mut sim = Sim::new();
    sim.worker("tcp://10.0.0.1:1", 1);
    let gpu = sim.worker_res("tcp://10.0.0.2:1", 1, &[("GPU", 1.0)]);
    sim.submit(
        &["g"],
        vec![t("g", &[]).ann("resources", Value::map([("GPU", Value::Int(1))]))],
    );
    assert_eq!(sim.one_compute().worker, gpu);
    sim.s.remove_worker(gpu, sim.now);
    sim.drain();
    assert_eq!(sim.state("g"), Some(TaskState::NoWorker));
    assert!(sim.computes().is_empty());
}

#[test]
fn workers_get_tasks_only_when_running() {
    let mut sim = Sim::new();
    // Registered with status init: not eligible yet.
    let w = sim
        .s
        .add_worker(registration("tcp://127.0.0.1:1", 1), sim.now)
        .unwrap();
    sim.submit(&["x"], vec![t("x", &[])]);
    assert_eq!(sim.state("x"), Some(TaskState::NoWorker));
    assert!(sim.computes().is_empty());
    sim.status(w, "running");
    assert_eq!(sim.one_compute().worker, w);
}

#[test]
fn paused_workers_get_no_new_tasks_and_resume() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.status(w0, "paused");
    for i in 0..3 {
        sim.submit(&[&format!("p-{i}")], vec![t(&format!("p-{i}"), &[])]);
    }
    for c in sim.computes() {
        assert_eq!(c.worker, w1, "paused worker gets nothing");
    }
    sim.status(w1, "paused");
    sim.submit(&["later"], vec![t("later", &[])]);
    assert_eq!(sim.state("later"), Some(TaskState::NoWorker));
    assert!(sim.computes().is_empty());
    sim.status(w0, "running");
    let c = sim.one_compute();
    assert_eq!((c.key, c.worker), (k("later"), w0));
}

#[test]
fn closing_gracefully_workers_get_no_new_tasks() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.status(w0, "closing_gracefully");
    for i in 0..3 {
        sim.submit(&[&format!("p-{i}")], vec![t(&format!("p-{i}"), &[])]);
    }
    for c in sim.computes() {
        assert_eq!(c.worker, w1);
    }
}

fn root_tasks(n: usize) -> (Vec<String>, Vec<T>) {
    let keys: Vec<String> = (0..n).map(|i| format!("x-{i}")).collect();
    let tasks = (0..n).map(|i| t(&keys[i], &[]).order(i as i64)).collect();
    (keys, tasks)
}

#[test]
fn root_tasks_are_queued_and_released_in_priority_order() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    let (keys, tasks) = root_tasks(20);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);

    // ceil(1.1 * 1) = 2 slots per worker.
    let first = sim.computes();
    assert_eq!(first.len(), 4);
    let mut first_keys: Vec<_> = first.iter().map(|c| c.key.clone()).collect();
    first_keys.sort();
    assert_eq!(
        first_keys,
        keyset(&["x-0", "x-1", "x-2", "x-3"])
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(first.iter().filter(|c| c.worker == w0).count(), 2);
    assert_eq!(first.iter().filter(|c| c.worker == w1).count(), 2);
    assert_eq!(sim.in_state(TaskState::Queued).len(), 16);

    // Each finished task releases exactly one queued task, best priority first.
    let mut running = first;
    let mut started = Vec::new();
    while let Some(c) = (!running.is_empty()).then(|| running.remove(0)) {
        sim.finish(&c);
        let next = sim.computes();
        assert!(next.len() <= 1, "{next:?}");
        for n in next {
            assert_eq!(n.worker, c.worker, "the freed slot is refilled");
            started.push(n.key.clone());
            running.push(n);
        }
    }
    let expected: Vec<_> = (4..20).map(|i| k(&format!("x-{i}"))).collect();
    assert_eq!(started, expected);
    assert!(sim.in_state(TaskState::Queued).is_empty());
    assert_eq!(sim.in_state(TaskState::Memory).len(), 20);
}

#[test]
fn queue_disabled_with_infinite_saturation() {
    let mut sim = Sim::with_config(Config {
        worker_saturation: f64::INFINITY,
        ..Config::default()
    });
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.worker("tcp://127.0.0.1:2", 1);
    let (keys, tasks) = root_tasks(20);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    assert_eq!(sim.computes().len(), 20);
}

#[test]
fn small_groups_are_not_queued() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.worker("tcp://127.0.0.1:2", 1);
    // 4 tasks <= 2 * total threads: not root-ish, all sent.
    let (keys, tasks) = root_tasks(4);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    assert_eq!(sim.computes().len(), 4);
}

/// 10 chains of 3 tasks, all of one group unless `head` names the chain
/// heads' group (Python's `key_split_group`: the prefix before the token).
fn chains(head: &str) -> (Vec<String>, Vec<T>) {
    let mut keys = Vec::new();
    let mut tasks = Vec::new();
    for c in 0..10 {
        let mut prev: Option<String> = None;
        for i in 0..3 {
            let key = match (i, head) {
                (0, h) if !h.is_empty() => format!("{h}-{c}"),
                _ => format!("inc-{c}{i}"),
            };
            let deps: Vec<&str> = prev.iter().map(String::as_str).collect();
            tasks.push(t(&key, &deps).order(tasks.len() as i64));
            prev = Some(key);
        }
        keys.extend(prev);
    }
    (keys, tasks)
}

#[test]
fn root_ish_is_decided_by_the_groups_dependencies_like_python() {
    // (chain heads' group, how many chain heads start at once on 2
    // one-thread workers). Python's `is_rootish` reads
    // `TaskGroup.dependencies`, the union over the group's tasks: when the
    // heads share the `inc` group with the rest of the chains, that group
    // depends on itself (30 tasks), so no head is root-ish and all 10 start;
    // a heads-only group has no dependencies and is queued, 2 per worker.
    let cases = [("", 10, 0), ("start", 4, 6)];
    for (head, started, queued) in cases {
        let mut sim = Sim::new();
        sim.worker("tcp://127.0.0.1:1", 1);
        sim.worker("tcp://127.0.0.1:2", 1);
        let (keys, tasks) = chains(head);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        sim.submit(&refs, tasks);
        assert_eq!(sim.computes().len(), started, "heads {head:?}");
        assert_eq!(
            sim.in_state(TaskState::Queued).len(),
            queued,
            "heads {head:?}"
        );
    }
}

#[test]
fn data_producers_are_queued_even_in_small_groups() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let tasks = (0..3)
        .map(|i| t(&format!("p-{i}"), &[]).producer())
        .collect();
    sim.submit(&["p-0", "p-1", "p-2"], tasks);
    assert_eq!(sim.computes().len(), 2);
    assert_eq!(sim.in_state(TaskState::Queued).len(), 1);
}

#[test]
fn queued_root_tasks_start_in_priority_order_when_first_worker_joins() {
    let mut sim = Sim::new();
    let (keys, tasks) = root_tasks(10);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    assert!(sim.computes().is_empty());
    sim.worker("tcp://127.0.0.1:1", 1);
    let first = sim.computes();
    let mut first_keys: Vec<_> = first.iter().map(|c| c.key.clone()).collect();
    first_keys.sort();
    assert_eq!(first_keys, vec![k("x-0"), k("x-1")]);
    assert_eq!(sim.in_state(TaskState::Queued).len(), 8);
    let mut ran = Vec::new();
    for c in first {
        sim.finish(&c);
        ran.extend(sim.run_all());
    }
    assert_eq!(
        ran,
        (2..10).map(|i| k(&format!("x-{i}"))).collect::<Vec<_>>()
    );
}

#[test]
fn group_sizes_reset_once_a_group_is_forgotten() {
    // Many separate submissions of `inc-…` tasks, each released before the
    // next: the group never holds more than one task, so tasks are never
    // treated as root-ish and never queued behind each other.
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    for i in 0..10 {
        let key = format!("inc-{i}");
        sim.submit(&[&key], vec![t(&key, &[])]);
        let c = sim.one_compute();
        sim.finish(&c);
        sim.cop(Value::map([
            ("op", Value::str("client-releases-keys")),
            ("keys", Value::Array(vec![Value::str(key.as_str())])),
        ]))
        .unwrap();
        assert_eq!(sim.s.task_count(), 0);
        sim.clear();
    }
    // Now three at once on a single thread: a group of 3 > 2 threads would be
    // root-ish, but 3 is also what counts (not 13).
    sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(
        &["inc-a", "inc-b", "inc-c"],
        vec![t("inc-a", &[]), t("inc-b", &[]), t("inc-c", &[])],
    );
    assert_eq!(sim.computes().len(), 3, "3 <= 2 * 2 threads: not root-ish");
}

#[test]
fn data_locality_sends_task_to_big_dependency() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    let (a0, a1) = (sim.addr(w0), sim.addr(w1));
    for (big_on, small_on, want) in [(&a1, &a0, w1), (&a0, &a1, w0)] {
        let mut sim2 = Sim::new();
        let v0 = sim2.worker(&a0, 1);
        let v1 = sim2.worker(&a1, 1);
        let _ = (v0, v1);
        sim2.s.update_data(
            Some(sim2.client),
            &[
                (k("big"), vec![big_on.clone()]),
                (k("small"), vec![small_on.clone()]),
            ],
            &[(k("big"), 1_000_000_000), (k("small"), 10)],
        );
        sim2.drain();
        sim2.submit(&["y"], vec![t("y", &["big", "small"])]);
        let y = sim2.one_compute();
        assert_eq!(y.worker, want);
        assert_eq!(y.who_has().len(), 2);
    }
    let _ = &mut sim;
}

#[test]
fn data_locality_for_computed_dependencies() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(
        &["y"],
        vec![
            t("big", &[]).ann("workers", workers_ann(&["tcp://127.0.0.1:2"])),
            t("small", &[]).ann("workers", workers_ann(&["tcp://127.0.0.1:1"])),
            t("y", &["big", "small"]),
        ],
    );
    for c in sim.computes() {
        let nbytes = if c.key == k("big") { 500_000_000 } else { 10 };
        sim.finish_with(c.worker, &c.key, c.run_id, nbytes);
    }
    let y = sim.one_compute();
    assert_eq!(y.worker, w1);
    let who_has = y.who_has();
    assert_eq!(who_has[&k("big")], vec![sim.addr(w1)]);
    assert_eq!(who_has[&k("small")], vec![sim.addr(w0)]);
}

#[test]
fn priority_array_is_user_generation_order() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 8);
    sim.submit(&["a"], vec![t("a", &[]).order(7)]);
    sim.tick(1.0);
    sim.submit(
        &["b"],
        vec![t("b", &[]).order(3).ann("priority", Value::Int(5))],
    );
    sim.tick(1.0);
    sim.submit(
        &["c"],
        vec![t("c", &[]).order(0).ann("priority", Value::Int(-2))],
    );
    let cs = sim.computes();
    let prio = |key: &str| {
        cs.iter()
            .find(|c| c.key == k(key))
            .unwrap()
            .msg
            .get("priority")
            .cloned()
            .unwrap()
    };
    assert_eq!(
        prio("a"),
        Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(7)])
    );
    // One-task graphs on an 8-thread cluster are interactive: they join the
    // current generation instead of opening new ones (see graph.rs).
    assert_eq!(
        prio("b"),
        Value::Array(vec![Value::Int(-5), Value::Int(1), Value::Int(3)])
    );
    assert_eq!(
        prio("c"),
        Value::Array(vec![Value::Int(2), Value::Int(1), Value::Int(0)])
    );
}

#[test]
fn interactive_graph_is_not_starved_by_an_earlier_big_one() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let big: Vec<T> = (0..5)
        .map(|i| t(&format!("big-{i}"), &[]).order(i))
        .collect();
    let big_keys: Vec<String> = (0..5).map(|i| format!("big-{i}")).collect();
    let refs: Vec<&str> = big_keys.iter().map(String::as_str).collect();
    sim.submit(&refs, big);
    sim.tick(5.0);
    sim.submit(&["small"], vec![t("small", &[]).order(0)]);
    let cs = sim.computes();
    let prio = |key: &str| cs.iter().find(|c| c.key == k(key)).unwrap().priority();
    // Same generation as the big graph, graph order 0: ahead of big-1..4.
    assert_eq!(prio("small")[1], prio("big-0")[1]);
    assert!(prio("small") < prio("big-1"));
}

#[test]
fn fifo_timeout_generations() {
    // (seconds since previous graph, fifo_timeout, generation expected)
    let steps = [
        (0.0, 0.1, 1.0),
        (0.05, 0.1, 1.0),  // within fifo_timeout: same generation
        (0.2, 0.1, 2.0),   // later: new generation
        (30.0, 60.0, 2.0), // long fifo_timeout (dask collections use 60s)
        (61.0, 60.0, 3.0),
    ];
    // Two-task graphs on one thread: not interactive, so Python's rule applies.
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let c = sim.client;
    for (i, (dt, fifo, want)) in steps.into_iter().enumerate() {
        sim.tick(dt);
        let key = format!("g{i}");
        let dep = format!("g{i}-dep");
        sim.submit_keys(c, vec![k(&key)], vec![t(&dep, &[]), t(&key, &[&dep])], fifo);
        let comp = sim.one_compute();
        assert_eq!(comp.priority()[1], want, "step {i}");
    }
}

#[test]
fn older_generation_runs_first_when_queued() {
    let mut sim = Sim::new();
    // One worker, one thread: everything queues behind the first two.
    let (keys, tasks) = root_tasks(10);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&refs, tasks);
    sim.tick(1.0);
    // A later graph of the same group with better graph order but a newer generation.
    let late: Vec<T> = (10..15)
        .map(|i| t(&format!("x-{i}"), &[]).order(-100 + i))
        .collect();
    let late_keys: Vec<String> = (10..15).map(|i| format!("x-{i}")).collect();
    let late_refs: Vec<&str> = late_keys.iter().map(String::as_str).collect();
    sim.submit(&late_refs, late);
    let ran = sim.run_all();
    let pos = |key: &str| ran.iter().position(|r| *r == k(key)).unwrap();
    assert!(pos("x-9") < pos("x-10"), "{ran:?}");
}

#[test]
fn user_priority_jumps_the_queue() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    let (keys, tasks) = root_tasks(10);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    let urgent: Vec<T> = (10..13)
        .map(|i| t(&format!("x-{i}"), &[]).ann("priority", Value::Int(10)))
        .collect();
    sim.submit(&["x-10", "x-11", "x-12"], urgent);
    let ran = sim.run_all();
    // The two already-sent tasks finish first, then the urgent ones.
    let urgent_keys = keyset(&["x-10", "x-11", "x-12"]);
    let got: std::collections::BTreeSet<_> = ran[2..5].iter().cloned().collect();
    assert_eq!(got, urgent_keys, "{ran:?}");
}

#[test]
fn least_occupied_spreads_independent_tasks() {
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["a"], vec![t("a", &[])]);
    sim.submit(&["b"], vec![t("b", &[])]);
    let cs = sim.computes();
    let mut ws: Vec<_> = cs.iter().map(|c| c.worker).collect();
    ws.sort();
    assert_eq!(ws, vec![w0, w1]);
}

#[test]
fn dependent_runs_where_its_dependency_is() {
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.worker("tcp://127.0.0.1:2", 1);
    sim.submit(&["b"], vec![t("a", &[]), t("b", &["a"])]);
    let a = sim.one_compute();
    sim.finish(&a);
    let b = sim.one_compute();
    assert_eq!(b.worker, a.worker);
}

#[test]
fn seceded_tasks_do_not_hold_root_task_slots() {
    // Two tasks secede (`long-running`, e.g. `worker_client`) on a one-thread
    // worker and wait for root tasks they submit. Like Python
    // (`_task_slots_available` subtracts `long_running`), the root tasks must
    // still be handed out, or the cluster deadlocks.
    let mut sim = Sim::new();
    let w = sim.worker("tcp://127.0.0.1:1", 1);
    sim.submit(&["p-0", "p-1"], vec![t("p-0", &[]), t("p-1", &[])]);
    let parents = sim.computes();
    assert_eq!(parents.len(), 2);
    for p in &parents {
        sim.wop(
            w,
            Value::map([
                ("op", Value::str("long-running")),
                ("key", kv(&p.key)),
                ("run_id", Value::Int(p.run_id)),
                ("compute_duration", Value::Nil),
                ("stimulus_id", Value::str("secede")),
            ]),
        )
        .unwrap();
    }
    let (keys, tasks) = root_tasks(10);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    let first = sim.computes();
    assert_eq!(first.len(), 2, "two free root-task slots");
    let mut ran = 0;
    for c in first {
        sim.finish(&c);
        ran += 1 + sim.run_all().len();
    }
    assert_eq!(ran, 10, "the rest follow as slots free up");
    for p in &parents {
        sim.finish(p);
    }
    assert!(sim.s.is_idle());
}

/// Python's occupancy counts the transfer time of inputs a worker still has
/// to fetch (`needs_what` / network occupancy): a worker about to pull a
/// large input looks busy until the input has arrived (`add-keys`).
#[test]
fn inputs_still_to_fetch_count_as_occupancy() {
    let mut sim = Sim::new();
    // 200 MB on A: 2 s of transfer at the default 100 MB/s bandwidth.
    let (a, b) = two_workers_with_d_on_the_first(&mut sim, 200_000_000);
    let (addr_a, addr_b) = (sim.addr(a), sim.addr(b));
    // A: two tasks of unknown duration (2 x 0.5 s); B: one (0.5 s) that must
    // first fetch `d` (2 s).
    let on_a = |key: &str| t(key, &[]).ann("workers", workers_ann(&[&addr_a]));
    sim.submit(&["a-1", "a-2"], vec![on_a("a-1"), on_a("a-2")]);
    sim.submit(
        &["u"],
        vec![t("u", &["d"]).ann("workers", workers_ann(&[&addr_b]))],
    );
    let first: Vec<_> = sim
        .computes()
        .into_iter()
        .map(|c| (c.key, c.worker))
        .collect();
    assert_eq!(first.len(), 3, "{first:?}");
    sim.check();
    // Free task: A (1.0 s) is less busy than B (0.5 s + 2 s of transfer).
    sim.submit(&["v"], vec![t("v", &[])]);
    assert_eq!(sim.one_compute().worker, a);
    // Once B holds `d`, only its 0.5 s task is left: the next one goes to B.
    sim.wop(
        b,
        Value::map([
            ("op", Value::str("add-keys")),
            ("keys", Value::Array(vec![kv(&k("d"))])),
            ("stimulus_id", Value::str("gather-dep-success")),
        ]),
    )
    .unwrap();
    sim.check();
    sim.submit(&["w"], vec![t("w", &[])]);
    assert_eq!(sim.one_compute().worker, b);
}

// --- sibling affinity: queued root tasks follow their relatives -----------

/// A binary tree of `add`s over `n` leaves `l-i` (priorities: leaves in
/// order, then the joins), with the key of its root.
fn leaf_tree(n: usize) -> (String, Vec<T>) {
    let mut tasks: Vec<T> = (0..n)
        .map(|i| t(&format!("l-{i}"), &[]).order(i as i64))
        .collect();
    let mut level: Vec<String> = (0..n).map(|i| format!("l-{i}")).collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let mut next = Vec::new();
        for (j, pair) in level.chunks(2).enumerate() {
            let key = format!("j{depth}-{j}");
            let deps: Vec<&str> = pair.iter().map(String::as_str).collect();
            tasks.push(t(&key, &deps).order((n + tasks.len()) as i64));
            next.push(key);
        }
        level = next;
    }
    (level.pop().unwrap(), tasks)
}

/// Submit a tree, requesting its leaves too, so that they enter (and the
/// first ones go out) in priority order: `l-0`, `l-2` to the first worker,
/// `l-1`, `l-3` to the second.
fn submit_tree(sim: &mut Sim, root: &str, n: usize, tasks: Vec<T>) {
    let mut requested: Vec<String> = (0..n).map(|i| format!("l-{i}")).collect();
    requested.push(root.to_string());
    let refs: Vec<&str> = requested.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
}

/// Run everything, answering compute-tasks in the order they were sent;
/// the worker each key ran on.
fn run_recording(sim: &mut Sim) -> std::collections::BTreeMap<Key, dask_core::WorkerId> {
    let mut ran = std::collections::BTreeMap::new();
    loop {
        let cs = sim.computes();
        if cs.is_empty() {
            return ran;
        }
        for c in cs {
            ran.insert(c.key.clone(), c.worker);
            sim.finish(&c);
        }
    }
}

/// Level-1 pairs of `leaf_tree(n)` whose two leaves ran on different workers.
fn split_pairs(ran: &std::collections::BTreeMap<Key, dask_core::WorkerId>, n: usize) -> usize {
    (0..n / 2)
        .filter(|i| ran[&k(&format!("l-{}", 2 * i))] != ran[&k(&format!("l-{}", 2 * i + 1))])
        .count()
}

#[test]
fn queued_siblings_run_where_their_relatives_run() {
    let tree = |config: Config| {
        let mut sim = Sim::with_config(config);
        sim.worker("tcp://127.0.0.1:1", 1);
        sim.worker("tcp://127.0.0.1:2", 1);
        let (root, tasks) = leaf_tree(64);
        submit_tree(&mut sim, &root, 64, tasks);
        let ran = run_recording(&mut sim);
        assert_eq!(sim.s.task_state(&k(&root)), Some(TaskState::Memory));
        split_pairs(&ran, 64)
    };
    let with = tree(Config::default());
    let without = tree(Config {
        sibling_affinity: false,
        ..Config::default()
    });
    // The first four leaves go out before anything is queued, alternating
    // between the workers (2 split pairs); every queued leaf then follows
    // its sibling. Without affinity each freed slot takes the next leaf,
    // wherever its sibling ran.
    assert_eq!(with, 2, "with sibling affinity");
    assert!(
        without >= 16,
        "without sibling affinity: {without} split pairs"
    );
}

#[test]
fn a_wide_fan_in_is_not_a_family() {
    // 40 leaves joined by one task: keeping them together would put every
    // leaf on one worker, so each freed slot takes the next leaf as before.
    let mut sim = Sim::new();
    sim.worker("tcp://127.0.0.1:1", 1);
    sim.worker("tcp://127.0.0.1:2", 1);
    let (keys, mut tasks) = root_tasks(40);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    tasks.push(t("total", &refs).order(100));
    sim.submit(&["total"], tasks);
    let mut running = sim.computes();
    assert_eq!(running.len(), 4);
    let first: Vec<Key> = running.iter().map(|c| c.key.clone()).collect();
    let mut started = Vec::new();
    while let Some(c) = (!running.is_empty()).then(|| running.remove(0)) {
        sim.finish(&c);
        for n in sim.computes() {
            started.push(n.key.clone());
            running.push(n);
        }
    }
    // (the first four go out as the graph's tasks enter, in no set order)
    let mut expected: Vec<_> = (0..40)
        .map(|i| k(&format!("x-{i}")))
        .filter(|key| !first.contains(key))
        .collect();
    expected.push(k("total"));
    assert_eq!(started, expected);
}

#[test]
fn reserved_tasks_go_back_to_the_queue_when_their_worker_pauses_retires_or_leaves() {
    for leaves_by in ["paused", "retiring", "removed"] {
        let mut sim = Sim::new();
        let w0 = sim.worker("tcp://127.0.0.1:1", 1);
        let w1 = sim.worker("tcp://127.0.0.1:2", 1);
        let (root, tasks) = leaf_tree(32);
        submit_tree(&mut sim, &root, 32, tasks);
        let first = sim.computes();
        let on = |w| -> Vec<Key> {
            first
                .iter()
                .filter(|c| c.worker == w)
                .map(|c| c.key.clone())
                .collect()
        };
        assert_eq!(
            (on(w0), on(w1)),
            (vec![k("l-0"), k("l-2")], vec![k("l-1"), k("l-3")])
        );
        // w0 takes l-4 and reserves its relatives (l-5 .. l-15)
        sim.finish(&first[0]);
        let l4 = sim.one_compute();
        assert_eq!(l4.key, k("l-4"));
        let expected = match leaves_by {
            "paused" => {
                sim.status(w0, "paused");
                "l-5"
            }
            "retiring" => {
                assert!(sim.s.start_retirement(w0, "test"));
                "l-5"
            }
            _ => {
                // l-0 (held only by w0), l-2 and l-4 are computed again
                assert!(sim.s.remove_worker(w0, sim.now));
                "l-0"
            }
        };
        sim.drain();
        assert!(sim.computes().is_empty());
        // w1 finishes l-3 (whose sibling is not done) and takes the best
        // queued leaf, also when w0 had reserved it
        let l3 = first.iter().find(|c| c.key == k("l-3")).unwrap().clone();
        sim.finish(&l3);
        let next = sim.one_compute();
        assert_eq!(next.key, k(expected), "after w0 {leaves_by}");
        sim.finish(&next);
        if leaves_by != "removed" {
            // w0 still runs what it had
            sim.finish(&first[2]);
            sim.finish(&l4);
        }
        sim.finish(&first[1]); // l-1, on w1
        run_recording(&mut sim);
        sim.run_all();
        assert_eq!(
            sim.s.task_state(&k(&root)),
            Some(TaskState::Memory),
            "after w0 {leaves_by}"
        );
    }
}

#[test]
fn a_free_thread_takes_another_workers_reservation_once_the_queue_is_empty() {
    // Three families of four leaves under one final join.
    let mut sim = Sim::new();
    let w0 = sim.worker("tcp://127.0.0.1:1", 1);
    let w1 = sim.worker("tcp://127.0.0.1:2", 1);
    let mut tasks: Vec<T> = (0..12)
        .map(|i| t(&format!("l-{i}"), &[]).order(i as i64))
        .collect();
    for f in 0..3 {
        let deps: Vec<String> = (4 * f..4 * f + 4).map(|i| format!("l-{i}")).collect();
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        tasks.push(t(&format!("f-{f}"), &refs).order(20 + f as i64));
    }
    tasks.push(t("all", &["f-0", "f-1", "f-2"]).order(30));
    let mut requested: Vec<String> = (0..12).map(|i| format!("l-{i}")).collect();
    requested.push("all".to_string());
    let refs: Vec<&str> = requested.iter().map(String::as_str).collect();
    sim.submit(&refs, tasks);
    let first = sim.computes();
    let w0_first = first.iter().find(|c| c.worker == w0).unwrap().clone();
    // w0 takes l-4 and reserves l-5..l-7; it then finishes nothing more
    sim.finish(&w0_first);
    assert_eq!(sim.one_compute().key, k("l-4"));
    // w1 works through everything else, then through w0's reservations
    let mut w1_ran = Vec::new();
    let mut running: Vec<_> = first.into_iter().filter(|c| c.worker == w1).collect();
    while let Some(c) = running.pop() {
        sim.finish(&c);
        for n in sim.computes() {
            assert_eq!(n.worker, w1);
            w1_ran.push(n.key.clone());
            running.push(n);
        }
    }
    for i in 5..8 {
        assert!(
            w1_ran.contains(&k(&format!("l-{i}"))),
            "l-{i} not taken: {w1_ran:?}"
        );
    }
}
