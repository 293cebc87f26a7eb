//! P2P shuffle bookkeeping: a run is created once and shared, output tasks
//! are restricted to their partition's worker, a worker that leaves
//! restarts the shuffle, and the spec goes when the barrier is forgotten.

mod common;

use bytes::Bytes;
use common::*;
use dask_core::p2p::{CreateRun, GetOrCreate};
use dask_core::{Outgoing, TaskState};
use dask_wire::Value;

const A: &str = "tcp://a:1";
const B: &str = "tcp://b:1";
const BARRIER: &str = "shuffle-barrier-s1";

/// Two transfer tasks, the barrier and two outputs; transfers processing.
fn shuffle_graph() -> Sim {
    let mut sim = Sim::new();
    sim.worker(A, 1);
    sim.worker(B, 1);
    sim.submit(
        &["o0", "o1"],
        vec![
            t("t0", &[]),
            t("t1", &[]),
            t(BARRIER, &["t0", "t1"]),
            t("o0", &[BARRIER]),
            t("o1", &[BARRIER]),
        ],
    );
    sim.s
        .p2p_add_specs(vec![("s1".to_string(), Bytes::from_static(b"spec"))]);
    sim
}

fn created(sim: &mut Sim, worker: &str) -> CreateRun {
    match sim.s.p2p_get_or_create("s1", &k("t0"), worker).unwrap() {
        GetOrCreate::Create(c) => c,
        other => panic!("{other:?}"),
    }
}

fn install(sim: &mut Sim, create: &CreateRun, worker: &str) {
    let run = sim
        .s
        .p2p_install(
            create,
            worker,
            Bytes::from_static(b"run"),
            Bytes::from_static(b"map"),
            vec![A.to_string(), B.to_string()],
        )
        .unwrap()
        .expect("not stale");
    assert_eq!(&run.header[..], b"run");
}

fn shuffle_fails(sim: &mut Sim) -> Vec<dask_core::WorkerId> {
    sim.drain();
    let mut out = Vec::new();
    sim.pending.retain(|m| match m {
        Outgoing::Worker(w, v) if op(v) == "shuffle-fail" => {
            out.push(*w);
            false
        }
        _ => true,
    });
    out
}

#[test]
fn one_run_is_created_and_shared() {
    let mut sim = shuffle_graph();
    let transfers = sim.computes();
    assert_eq!(transfers.len(), 2);
    let create = created(&mut sim, A);
    assert_eq!(create.spec, Bytes::from_static(b"spec"));
    assert_eq!(create.workers, vec![A.to_string(), B.to_string()]);
    assert_eq!(create.run_id, 1);
    // two requests raced: the first installed run wins
    let other = created(&mut sim, B);
    install(&mut sim, &create, A);
    let run = sim
        .s
        .p2p_install(&other, B, Bytes::from_static(b"late"), Bytes::new(), vec![])
        .unwrap()
        .expect("the installed run");
    assert_eq!(&run.header[..], b"run");
    match sim.s.p2p_get_or_create("s1", &k("t1"), B).unwrap() {
        GetOrCreate::Run(r) => assert_eq!(&r.header[..], b"run"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sim.s.p2p_active(),
        vec![("s1".to_string(), 1, vec![A.to_string(), B.to_string()])]
    );
    assert!(sim.s.p2p_get("nope", A).is_err());
    // workers taking part are not offered for downscaling
    let idle = dask_core::retire::CloseOptions {
        n: Some(2),
        ..Default::default()
    };
    assert!(sim.s.workers_to_close(&idle).is_empty());
}

/// A hash join: shuffles s1 and s2 share output tasks j0 and j1.
fn hash_join_graph() -> Sim {
    let mut sim = Sim::new();
    sim.worker(A, 1);
    sim.worker(B, 1);
    sim.submit(
        &["j0", "j1"],
        vec![
            t("t0", &[]),
            t("u0", &[]),
            t(BARRIER, &["t0"]),
            t("shuffle-barrier-s2", &["u0"]),
            t("j0", &[BARRIER, "shuffle-barrier-s2"]),
            t("j1", &[BARRIER, "shuffle-barrier-s2"]),
        ],
    );
    sim.s.p2p_add_specs(vec![
        ("s1".to_string(), Bytes::from_static(b"spec1")),
        ("s2".to_string(), Bytes::from_static(b"spec2")),
    ]);
    sim
}

#[test]
fn a_hash_join_side_built_before_the_other_side_was_installed_is_built_again() {
    let mut sim = hash_join_graph();
    assert_eq!(sim.computes().len(), 2);
    let create =
        |sim: &mut Sim, id: &str, key: &str| match sim.s.p2p_get_or_create(id, &k(key), A).unwrap()
        {
            GetOrCreate::Create(c) => c,
            other => panic!("{other:?}"),
        };
    // both sides asked for at once: neither sees the other's mapping
    let first = create(&mut sim, "s1", "t0");
    let second = create(&mut sim, "s2", "u0");
    assert!(first.existing.is_empty() && second.existing.is_empty());
    let install = |sim: &mut Sim, c: &CreateRun, map: &'static [u8]| {
        sim.s
            .p2p_install(
                c,
                A,
                Bytes::from_static(b"run"),
                Bytes::from_static(map),
                vec![],
            )
            .unwrap()
    };
    assert!(install(&mut sim, &first, b"map1").is_some());
    // the second was built without the first's mapping: stale, not installed
    assert!(install(&mut sim, &second, b"map2").is_none());
    assert_eq!(sim.s.p2p_active().len(), 1);
    // built again, it carries the first side's mapping and is installed
    let again = create(&mut sim, "s2", "u0");
    assert_eq!(again.existing, vec![Bytes::from_static(b"map1")]);
    assert!(install(&mut sim, &again, b"map1").is_some());
    assert_eq!(sim.s.p2p_active().len(), 2);
}

#[test]
fn requests_that_cannot_be_served_are_consistency_errors() {
    let mut sim = shuffle_graph();
    // the asking task is not processing (o0 waits for the barrier)
    let err = sim.s.p2p_get_or_create("s1", &k("o0"), A).unwrap_err();
    assert!(err.contains("to be processing, is waiting"), "{err}");
    let err = sim.s.p2p_get_or_create("s2", &k("t0"), A).unwrap_err();
    assert!(err.contains("shuffle-barrier-s2' does not exist"), "{err}");
    assert!(sim.s.p2p_get("s1", "tcp://z:9").is_err(), "unknown worker");
    let create = created(&mut sim, A);
    install(&mut sim, &create, A);
    let stale = sim.s.p2p_restrict_task("s1", 0, &k("o0"), B).unwrap_err();
    assert!(stale.contains("stale"), "{stale}");
    let invalid = sim.s.p2p_restrict_task("s1", 2, &k("o0"), B).unwrap_err();
    assert!(invalid.contains("invalid"), "{invalid}");
    assert!(sim.s.p2p_barrier("s1", 2, true, 2.0).is_err());
}

#[test]
fn an_output_on_the_wrong_worker_is_restricted_and_rescheduled() {
    let mut sim = shuffle_graph();
    let transfers = sim.computes();
    let create = created(&mut sim, A);
    install(&mut sim, &create, A);
    for c in &transfers {
        sim.finish(c);
    }
    let barrier = sim.one_compute();
    assert_eq!(
        sim.s.p2p_barrier("s1", 1, true, 2.0).unwrap(),
        vec![A.to_string(), B.to_string()]
    );
    sim.finish(&barrier);
    let outputs = sim.computes();
    let o0 = outputs.iter().find(|c| c.key == k("o0")).unwrap().clone();
    let right = if sim.s.worker_address(o0.worker) == Some(A) {
        B
    } else {
        A
    };
    sim.s.p2p_restrict_task("s1", 1, &k("o0"), right).unwrap();
    sim.wop(
        o0.worker,
        Value::map([
            ("op", Value::str("reschedule")),
            ("key", kv(&k("o0"))),
            ("stimulus_id", Value::str("test")),
        ]),
    )
    .unwrap();
    let again = sim.one_compute();
    assert_eq!(again.key, k("o0"));
    assert_eq!(sim.s.worker_address(again.worker), Some(right));
}

#[test]
fn a_participating_worker_leaving_restarts_the_shuffle() {
    let mut sim = shuffle_graph();
    let transfers = sim.computes();
    let create = created(&mut sim, A);
    install(&mut sim, &create, A);
    let on_a = transfers
        .iter()
        .find(|c| sim.s.worker_address(c.worker) == Some(A))
        .unwrap();
    sim.finish(on_a);
    sim.clear();
    let b = sim.s.worker_id(B).unwrap();
    sim.s.remove_worker(b, 3.0);
    // the run failed on the worker left, and every transfer runs again
    let a = sim.s.worker_id(A).unwrap();
    assert_eq!(shuffle_fails(&mut sim), vec![a]);
    assert!(sim.s.p2p_active().is_empty());
    // (the transfer that was on B may be sent to A twice: once when B
    // left, then, after a free-keys, again for the restarted run)
    let again: std::collections::BTreeSet<_> = sim.computes().into_iter().map(|c| c.key).collect();
    assert_eq!(again, [k("t0"), k("t1")].into_iter().collect());
    assert_eq!(sim.state("t0"), Some(TaskState::Processing));
    assert_eq!(sim.state("t1"), Some(TaskState::Processing));
    // a new run gets a new id
    assert_eq!(created(&mut sim, A).run_id, 2);
}

#[test]
fn an_inconsistent_barrier_restarts_and_a_forgotten_barrier_drops_the_spec() {
    let mut sim = shuffle_graph();
    sim.computes();
    let create = created(&mut sim, A);
    install(&mut sim, &create, A);
    assert!(sim.s.p2p_barrier("s1", 1, false, 2.0).unwrap().is_empty());
    assert!(sim.s.p2p_active().is_empty());
    assert_eq!(shuffle_fails(&mut sim).len(), 2);
    // release everything: the barrier is forgotten and so is its spec
    sim.cop(Value::map([
        ("op", Value::str("client-releases-keys")),
        ("keys", Value::Array(vec![kv(&k("o0")), kv(&k("o1"))])),
        ("client", Value::str("Client-1")),
    ]))
    .unwrap();
    assert_eq!(sim.s.task_count(), 0);
    let err = sim.s.p2p_get_or_create("s1", &k("t0"), A).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
}
