//! The materializer pool against the real helper and a real Python with
//! dask/distributed (`DASK_SCHEDULER_PYTHON`, default `/work/venv/bin/python`,
//! else `python3` on PATH).

mod common;
use common::*;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_scheduler::materializer::{
    Availability, MaterializeError, MaterializerConfig, MaterializerPool,
};
use rmpv::Value;

fn config(pool_size: usize) -> MaterializerConfig {
    MaterializerConfig {
        python: Some(python()),
        pool_size,
        min_helpers: pool_size,
        spare_idle: Duration::from_secs(60),
        request_timeout: Duration::from_secs(120),
    }
}

/// Builds request bodies the way the scheduler will: a real update-graph
/// message from distributed's encoder, cut into expr_ser / annotations parts.
const BUILDER: &str = r#"
import os, sys, time, uuid, operator, msgpack
import dask
from dask._expr import LLGExpr, FinalizeCompute
from dask._task_spec import Task
from dask.base import collections_to_expr
from dask.core import flatten

class Exit:
    def __init__(self, code): self.code = code
    def __reduce__(self): return (os._exit, (self.code,))

class Sleep:
    def __init__(self, s): self.s = s
    def __reduce__(self): return (time.sleep, (self.s,))

kind = sys.argv[1]
if kind in ("submit", "annotated"):
    key = "add-fixed-key"
    expr = LLGExpr({key: Task(key, operator.add, 41, 1)}, _determ_token=uuid.uuid4().hex)
    ann = {"resources": {"GPU": 1}, "retries": 2, "workers": "tcp://10.0.0.1:1"} if kind == "annotated" else {}
    req = request(expr, [key], {key: 0}, ann)
elif kind == "array":
    import dask.array as da
    expr = FinalizeCompute(collections_to_expr([da.ones((100, 100), chunks=10).sum()], True)).optimize()
    req = request(expr, list(flatten(expr.__dask_keys__())))
elif kind == "exit":
    req = request(Exit(int(sys.argv[2])), ["x"])
elif kind == "sleep":
    req = request(Sleep(float(sys.argv[2])), ["x"])
else:
    raise SystemExit(f"unknown kind {kind}")
sys.stdout.buffer.write(msgpack.packb(req, use_bin_type=True))
"#;

fn encode(v: &Value) -> Bytes {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    Bytes::from(buf)
}

fn op(name: &str, id: i64) -> Bytes {
    encode(&Value::Map(vec![
        ("op".into(), name.into()),
        ("id".into(), id.into()),
    ]))
}

async fn ping(pool: &MaterializerPool) -> Result<(), MaterializeError> {
    let reply = decode(&pool.request(op("ping", 9)).await?);
    assert_eq!(get(&reply, "status").as_str(), Some("ok"));
    assert_eq!(get(&reply, "id").as_i64(), Some(9));
    Ok(())
}

fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // a zombie waiting to be reaped is gone as far as we are concerned
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

async fn wait_for_pids(pool: &MaterializerPool, n: usize) -> Vec<u32> {
    for _ in 0..600 {
        let pids = pool.helper_pids();
        if pids.len() == n {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pool never got {n} helpers");
}

#[tokio::test]
async fn hello_versions_and_ping() {
    let pool = MaterializerPool::start(config(2)).await;
    let Availability::Available {
        python,
        versions_msgpack,
    } = pool.availability()
    else {
        panic!("pool unavailable: {:?}", pool.availability());
    };
    assert!(!python.is_empty());
    let versions = decode(&versions_msgpack);
    assert!(get(&versions, "host").is_map());
    assert!(get(get(&versions, "packages"), "distributed").is_str());
    assert_eq!(pool.helper_pids().len(), 2);

    ping(&pool).await.unwrap();
    let reply = decode(&pool.request(op("versions", 3)).await.unwrap());
    assert_eq!(get(&reply, "status").as_str(), Some("ok"));
    assert_eq!(get(&reply, "versions"), &versions);

    // unknown op: an error reply, and the helper keeps serving
    let reply = decode(&pool.request(op("frobnicate", 4)).await.unwrap());
    assert_eq!(get(&reply, "status").as_str(), Some("error"));
    assert!(get(&reply, "exception_text")
        .as_str()
        .unwrap()
        .contains("unknown op"));
    // not a msgpack map: refused without bothering a helper
    for bad in [&b"\x93\x01\x02\x03"[..], b"", b"\xc1", b"\x81\xa1x"] {
        assert!(matches!(
            pool.request(Bytes::copy_from_slice(bad)).await,
            Err(MaterializeError::Protocol(_))
        ));
    }
    ping(&pool).await.unwrap();
}

#[tokio::test]
async fn materializes_submit_and_array_graphs() {
    let pool = MaterializerPool::start(config(1)).await;
    let reply = decode(&pool.request(build(BUILDER, &["annotated"])).await.unwrap());
    assert_eq!(get(&reply, "status").as_str(), Some("ok"), "{reply}");
    assert_eq!(get(&reply, "id").as_i64(), Some(1));
    let tasks = get(&reply, "tasks").as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(get(task, "key").as_str(), Some("add-fixed-key"));
    assert_eq!(get(task, "deps").as_array().map(Vec::len), Some(0));
    assert_eq!(get(task, "order").as_i64(), Some(0));
    let ann = get(task, "annotations");
    assert_eq!(get(get(ann, "resources"), "GPU").as_i64(), Some(1));
    assert_eq!(get(ann, "retries").as_i64(), Some(2));
    assert_eq!(
        get(ann, "workers"),
        &Value::Array(vec!["tcp://10.0.0.1:1".into()])
    );
    let run_spec = decode(get(task, "run_spec").as_slice().unwrap());
    assert!(get(&run_spec, "pickled-obj").is_bin());
    assert_eq!(get(&run_spec, "num-sub-frames").as_i64(), Some(0));

    let reply = decode(&pool.request(build(BUILDER, &["array"])).await.unwrap());
    assert_eq!(get(&reply, "status").as_str(), Some("ok"), "{reply}");
    let tasks = get(&reply, "tasks").as_array().unwrap();
    assert!(tasks.len() > 100, "{} tasks", tasks.len());
    let mut orders: Vec<i64> = tasks
        .iter()
        .map(|t| get(t, "order").as_i64().unwrap())
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, (0..tasks.len() as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn crashing_helper_fails_only_its_request() {
    let pool = MaterializerPool::start(config(1)).await;
    let before = pool.helper_pids();
    let err = pool
        .request(build(BUILDER, &["exit", "3"]))
        .await
        .unwrap_err();
    let MaterializeError::HelperDied(msg) = &err else {
        panic!("expected HelperDied, got {err:?}");
    };
    assert!(msg.contains("exited with status 3"), "{msg}");
    // the pool recovers with a new helper
    ping(&pool).await.unwrap();
    let after = wait_for_pids(&pool, 1).await;
    assert_ne!(before, after);
    assert!(matches!(
        pool.availability(),
        Availability::Available { .. }
    ));
}

#[tokio::test]
async fn killed_helper_mid_request() {
    let pool = MaterializerPool::start(config(1)).await;
    let pid = pool.helper_pids()[0];
    let body = build(BUILDER, &["sleep", "60"]);
    let p2 = pool.clone();
    let pending = tokio::spawn(async move { p2.request(body).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(pid, "-KILL");
    let err = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("request must fail promptly")
        .unwrap()
        .unwrap_err();
    let MaterializeError::HelperDied(msg) = &err else {
        panic!("expected HelperDied, got {err:?}");
    };
    assert!(msg.contains("signal 9"), "{msg}");
    ping(&pool).await.unwrap();
}

#[tokio::test]
async fn idle_helper_death_is_repaired_silently() {
    let pool = MaterializerPool::start(config(1)).await;
    let pid = pool.helper_pids()[0];
    kill(pid, "-KILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ping(&pool).await.unwrap();
    assert_ne!(pool.helper_pids(), vec![pid]);
}

#[tokio::test]
async fn timeout_kills_and_restarts() {
    let mut cfg = config(1);
    cfg.request_timeout = Duration::from_secs(2);
    let pool = MaterializerPool::start(cfg).await;
    let pid = pool.helper_pids()[0];
    let started = Instant::now();
    let err = pool
        .request(build(BUILDER, &["sleep", "60"]))
        .await
        .unwrap_err();
    assert_eq!(err, MaterializeError::Timeout(Duration::from_secs(2)));
    assert!(started.elapsed() < Duration::from_secs(30));
    ping(&pool).await.unwrap();
    assert_ne!(pool.helper_pids(), vec![pid]);
    assert!(process_gone(pid));
}

#[tokio::test]
async fn requests_run_in_parallel_and_queue() {
    let pool = MaterializerPool::start(config(2)).await;
    let body = build(BUILDER, &["sleep", "2"]);
    let started = Instant::now();
    let mut pending = Vec::new();
    for _ in 0..4 {
        let (p, b) = (pool.clone(), body.clone());
        pending.push(tokio::spawn(async move { p.request(b).await }));
    }
    for p in pending {
        // the sleep "graph" unpickles to None, which is an error reply
        let reply = decode(&p.await.unwrap().unwrap());
        assert_eq!(get(&reply, "status").as_str(), Some("error"));
    }
    let elapsed = started.elapsed();
    // 4 jobs x 2 s on 2 helpers: two rounds, not four
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(7), "{elapsed:?}");
}

#[tokio::test]
async fn missing_python_is_unavailable() {
    let mut cfg = config(2);
    cfg.python = Some("/nonexistent/bin/python3".into());
    let pool = MaterializerPool::start(cfg).await;
    let Availability::Unavailable { reason } = pool.availability() else {
        panic!("expected Unavailable");
    };
    assert!(reason.contains("/nonexistent/bin/python3"), "{reason}");
    let started = Instant::now();
    let err = pool.request(op("ping", 1)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(err, MaterializeError::Unavailable(reason));
}

#[tokio::test]
async fn python_without_dask_is_unavailable() {
    let dir = std::env::temp_dir().join(format!("no-dask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("python-without-dask");
    // -S: no site-packages, -E: ignore PYTHONPATH => dask cannot be imported
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{}' -S -E \"$@\"\n", python().display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cfg = config(1);
    cfg.python = Some(wrapper);
    let pool = MaterializerPool::start(cfg).await;
    let Availability::Unavailable { reason } = pool.availability() else {
        panic!("expected Unavailable");
    };
    assert!(reason.contains("cannot import 'dask'"), "{reason}");
    assert!(reason.contains("No module named 'dask'"), "{reason}");
    let err = pool.request(op("ping", 1)).await.unwrap_err();
    assert!(matches!(err, MaterializeError::Unavailable(_)));
    assert!(err.to_string().contains("dask"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn not_a_python_is_unavailable() {
    let mut cfg = config(1);
    cfg.python = Some("/bin/true".into());
    let pool = MaterializerPool::start(cfg).await;
    let Availability::Unavailable { reason } = pool.availability() else {
        panic!("expected Unavailable");
    };
    assert!(reason.contains("/bin/true"), "{reason}");
    assert!(reason.contains("exited with status 0"), "{reason}");
}

#[tokio::test]
async fn dropping_the_pool_kills_helpers() {
    let pool = MaterializerPool::start(config(2)).await;
    let pids = pool.helper_pids();
    assert_eq!(pids.len(), 2);
    let clone = pool.clone();
    drop(pool);
    ping(&clone).await.unwrap(); // a clone keeps it alive
    drop(clone);
    for _ in 0..100 {
        if pids.iter().all(|&p| process_gone(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("helpers {pids:?} still running after the pool was dropped");
}

#[tokio::test]
async fn default_config_finds_python_on_path() {
    let cfg = MaterializerConfig::default();
    assert!(cfg.python.is_none());
    assert!(cfg.pool_size >= 1);
    // Whatever python3 is on PATH, start() must not hang or panic.
    let mut cfg = cfg;
    cfg.pool_size = 1;
    let pool = tokio::time::timeout(Duration::from_secs(150), MaterializerPool::start(cfg))
        .await
        .expect("start returns");
    match pool.availability() {
        Availability::Available { .. } => ping(&pool).await.unwrap(),
        Availability::Unavailable { reason } => {
            assert!(!reason.is_empty());
            assert!(matches!(
                pool.request(op("ping", 1)).await,
                Err(MaterializeError::Unavailable(_))
            ));
        }
    }
}

/// Spare helpers: one helper is kept; jobs that wait with every helper busy
/// open spares up to `pool_size`, and each spare stops once idle for
/// `spare_idle`; a later wait opens one again.
#[tokio::test]
async fn spare_helpers_start_while_jobs_wait_and_stop_when_idle() {
    let mut cfg = config(3);
    cfg.min_helpers = 1;
    cfg.spare_idle = Duration::from_secs(1);
    let pool = MaterializerPool::start(cfg).await;
    let kept = pool.helper_pids();
    assert_eq!(kept.len(), 1, "only the kept helper starts: {kept:?}");

    // a quick request is taken at once: no spare
    ping(&pool).await.unwrap();
    tokio::time::sleep(dask_scheduler::materializer::GROW_AFTER * 3).await;
    assert_eq!(pool.helper_pids(), kept);

    // four slow jobs: spares open, never more than pool_size helpers
    let body = build(BUILDER, &["sleep", "3"]);
    let mut pending = Vec::new();
    for _ in 0..4 {
        let (p, b) = (pool.clone(), body.clone());
        pending.push(tokio::spawn(async move { p.request(b).await }));
    }
    let mut most = 0;
    let mut seen = std::collections::BTreeSet::new();
    while pending.iter().any(|p| !p.is_finished()) {
        let pids = pool.helper_pids();
        most = most.max(pids.len());
        seen.extend(pids);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in pending {
        // the sleep "graph" unpickles to None, which is an error reply
        let reply = decode(&p.await.unwrap().unwrap());
        assert_eq!(get(&reply, "status").as_str(), Some("error"));
    }
    assert_eq!(most, 3, "spares up to pool_size, no more");
    let spares: Vec<u32> = seen.into_iter().filter(|p| !kept.contains(p)).collect();
    assert!(spares.len() >= 2, "{spares:?}");

    // idle spares stop; the kept helper stays and serves
    let after = wait_for_pids(&pool, 1).await;
    assert_eq!(after, kept);
    for _ in 0..100 {
        if spares.iter().all(|&p| process_gone(p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spares.iter().all(|&p| process_gone(p)), "{spares:?}");
    ping(&pool).await.unwrap();

    // a later wait opens a spare again
    let mut pending = Vec::new();
    for _ in 0..2 {
        let (p, b) = (pool.clone(), body.clone());
        pending.push(tokio::spawn(async move { p.request(b).await }));
    }
    let pids = wait_for_pids(&pool, 2).await;
    assert!(pids.contains(&kept[0]));
    for p in pending {
        p.await.unwrap().unwrap();
    }
}
