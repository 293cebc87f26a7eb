//! The function runner behind `run_on_scheduler`
//! (`MaterializerPool::run_function`) against the real helper script and a
//! real Python with dask/distributed (`DASK_SCHEDULER_PYTHON`): replies go to
//! their own calls when calls overlap, a failure before the call is
//! `uncaught`, and a runner that exits fails the calls in flight and is
//! started again for the next call.
//!
//! The functions are standard-library globals, pickled by hand (protocol 0:
//! `c<module>\n<name>\n.`), their arguments tuples (`(<items>t.`).

mod common;
use common::*;
use std::time::{Duration, Instant};

use dask_scheduler::materializer::{MaterializeError, MaterializerPool};
use dask_wire::Value;

/// A `run` request for `module.name(*args)`.
fn run(module: &str, name: &str, args: &str) -> Value {
    Value::map([
        ("op", Value::str("run")),
        (
            "function",
            Value::Bin(format!("c{module}\n{name}\n.").into_bytes().into()),
        ),
        ("args", Value::Bin(format!("({args}t.").into_bytes().into())),
        ("kwargs", Value::Nil),
        ("wait", Value::Bool(true)),
        ("address", Value::str("tcp://127.0.0.1:1")),
        ("scheduler_id", Value::str("Scheduler-test")),
    ])
}

async fn status(pool: &MaterializerPool, request: Value) -> Result<String, MaterializeError> {
    let frame = pool.run_function(request).await?;
    let reply = dask_wire::msgpack::decode(&frame).expect("reply is msgpack");
    Ok(reply
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("<none>")
        .to_string())
}

/// The pickle an `OK` reply's result travels as (`Serialize(result)`:
/// a small object is one pickle frame).
fn result_pickle(reply: &Value) -> Vec<u8> {
    assert_eq!(reply.get("status").and_then(Value::as_str), Some("OK"));
    let result = reply.get("result_ser").expect("result_ser");
    assert!(matches!(result.get("header"), Some(Value::Bin(_))));
    match result.get("frames").and_then(Value::as_seq) {
        Some([Value::Bin(b)]) => b.to_vec(),
        other => panic!("expected one frame, got {other:?}"),
    }
}

#[tokio::test]
async fn overlapping_calls_get_their_own_replies() {
    let pool = one_helper_pool().await;
    // a coroutine function: awaited on the runner's loop, so the next call
    // is answered while it sleeps
    let slow = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let frame = pool.run_function(run("asyncio", "sleep", "F1.5\n")).await;
            (frame, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let frame = pool
        .run_function(run("builtins", "len", "Vabcd\n"))
        .await
        .expect("len runs");
    let quick = t0.elapsed();
    // len("abcd") == 4, pickled: BININT1 4, STOP
    let reply = dask_wire::msgpack::decode(&frame).unwrap();
    assert!(result_pickle(&reply).ends_with(b"K\x04."));
    let (slow_frame, slow_took) = slow.await.unwrap();
    // asyncio.sleep's None: NONE, STOP
    let slow_reply = dask_wire::msgpack::decode(&slow_frame.unwrap()).unwrap();
    assert!(result_pickle(&slow_reply).ends_with(b"N."));
    assert!(slow_took >= Duration::from_millis(1400), "{slow_took:?}");
    assert!(quick < slow_took, "{quick:?} vs {slow_took:?}");
}

#[tokio::test]
async fn failures_are_told_apart_and_a_dead_runner_comes_back() {
    let pool = one_helper_pool().await;
    // the function raises: "error", which the client raises from
    assert_eq!(
        status(&pool, run("operator", "truediv", "I1\nI0\n"))
            .await
            .unwrap(),
        "error"
    );
    // the function cannot even be loaded: "uncaught"
    assert_eq!(
        status(&pool, run("no_such_module_here", "f", ""))
            .await
            .unwrap(),
        "uncaught"
    );
    // an op the runner does not know: "uncaught" too
    let bad = Value::map([("op", Value::str("nonsense"))]);
    assert_eq!(status(&pool, bad).await.unwrap(), "uncaught");
    // the runner exits: the call fails naming how, the next one runs
    let died = status(&pool, run("os", "_exit", "I3\n")).await;
    match died {
        Err(MaterializeError::HelperDied(why)) => {
            assert!(why.contains("exited with status 3"), "{why}")
        }
        other => panic!("expected the runner's death, got {other:?}"),
    }
    assert_eq!(
        status(&pool, run("builtins", "len", "Vab\n"))
            .await
            .unwrap(),
        "OK"
    );
}
