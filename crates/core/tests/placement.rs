//! Where and when tasks run: restrictions, resources, worker status, root-task
//! queuing, data locality and priorities.

mod common;

use common::*;
use dask_core::{Config, TaskState};
use dask_wire::Value;

fn workers_ann(specs: &[&str]) -> Value {
    Value::Array(specs.iter().map(|s| Value::str(*s)).collect())
}

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
    let a = sim.worker("tcp://127.0.0.1:1", 1);
    let b = sim.worker("tcp://127.0.0.1:2", 1);
    let (addr_a, addr_b) = (sim.addr(a), sim.addr(b));
    // 200 MB on A: 2 s of transfer at the default 100 MB/s bandwidth.
    sim.submit(
        &["d"],
        vec![t("d", &[]).ann("workers", workers_ann(&[&addr_a]))],
    );
    let c = sim.one_compute();
    sim.finish_with(a, &c.key, c.run_id, 200_000_000);
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
