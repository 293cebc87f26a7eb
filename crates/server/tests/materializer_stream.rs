//! Streamed materializer replies (`"stream": true`) against the real helper
//! and a real Python with dask/distributed (`DASK_SCHEDULER_PYTHON`, default
//! `/work/venv/bin/python`, else `python3` on PATH).

mod common;
use common::*;
use std::collections::BTreeSet;

use bytes::Bytes;
use dask_scheduler::materializer::MaterializerPool;
use rmpv::Value;
use tokio::sync::mpsc;

/// Builds `materialize` requests the way the scheduler does (see
/// materializer_pool.rs): `array` is a ~130-task array reduction; `late-bad`
/// is 80 tasks of which only the first 40 the helper pickles can be pickled
/// there (all pickle fine here, in the client).
const BUILDER: &str = r#"
import os, sys, uuid, operator, msgpack
from dask._expr import LLGExpr, FinalizeCompute
from dask._task_spec import Task
from dask.base import collections_to_expr
from dask.core import flatten

class Bad:
    """Pickles in the client; in the helper, the 41st instance does not."""
    seen = set()
    def __reduce__(self):
        if os.environ.get("DASK_SCHEDULER_MATERIALIZER"):
            type(self).seen.add(id(self))
            if len(type(self).seen) > 40:
                raise TypeError("cannot pickle Bad in the helper")
        return (Bad, ())

kind = sys.argv[1]
if kind == "array":
    import dask.array as da
    expr = FinalizeCompute(collections_to_expr([da.ones((100, 100), chunks=10).sum()], True)).optimize()
    req = request(expr, list(flatten(expr.__dask_keys__())))
elif kind == "late-bad":
    dsk = {f"t-{i}": Task(f"t-{i}", operator.add, Bad(), 1) for i in range(80)}
    req = request(LLGExpr(dsk, _determ_token=uuid.uuid4().hex), list(dsk))
else:
    raise SystemExit(f"unknown kind {kind}")
if len(sys.argv) > 2:
    req["stream"] = True
    req["chunk_tasks"] = int(sys.argv[2])
if len(sys.argv) > 3:
    req["fork_order_min_tasks"] = int(sys.argv[3])
sys.stdout.buffer.write(msgpack.packb(req, use_bin_type=True))
"#;

fn tasks(v: &Value) -> &[Value] {
    get(v, "tasks").as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn keys(tasks: &[Value]) -> Vec<String> {
    tasks.iter().map(|t| get(t, "key").to_string()).collect()
}

/// The request `body` without its `stream` and `chunk_tasks` fields.
fn without_stream(body: &[u8]) -> Bytes {
    let Value::Map(entries) = decode(body) else {
        panic!("request is a map")
    };
    let kept = entries
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), Some("stream" | "chunk_tasks")))
        .collect();
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &Value::Map(kept)).unwrap();
    Bytes::from(buf)
}

/// Send `body` with a chunk sink; returns the chunks received and the reply.
async fn streamed(pool: &MaterializerPool, body: Bytes) -> (Vec<Value>, Value) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reply = pool.request_streaming(body, tx).await.expect("a reply");
    let mut chunks = Vec::new();
    // The sender is dropped before the reply is returned.
    while let Some(c) = rx.recv().await {
        chunks.push(decode(&c));
    }
    (chunks, decode(&reply))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_graph_streams_in_chunks() {
    let pool = one_helper_pool().await;
    let body = build(BUILDER, &["array", "16"]);
    let (chunks, reply) = streamed(&pool, body.clone()).await;
    assert_eq!(get(&reply, "status").as_str(), Some("ok"), "{reply}");
    assert!(chunks.len() >= 5, "{} chunks", chunks.len());
    let mut all: Vec<Value> = Vec::new();
    for c in &chunks {
        assert_eq!(get(c, "partial").as_bool(), Some(true));
        assert_eq!(tasks(c).len(), 16, "full chunks only");
        all.extend(tasks(c).iter().cloned());
    }
    assert!(tasks(&reply).len() < 16, "the reply carries the remainder");
    all.extend(tasks(&reply).iter().cloned());
    assert_eq!(get(&reply, "ntasks").as_u64(), Some(all.len() as u64));

    // The same tasks as the same request unstreamed (one helper: same
    // process, same hashing).
    let whole = decode(&pool.request(without_stream(&body)).await.unwrap());
    assert_eq!(get(&whole, "status").as_str(), Some("ok"));
    assert_eq!(get(&whole, "ntasks").as_u64(), Some(all.len() as u64));
    let mut streamed_keys = keys(&all);
    let mut whole_keys = keys(tasks(&whole));
    assert_eq!(streamed_keys, whole_keys, "same tasks in the same order");
    streamed_keys.sort();
    whole_keys.sort();
    let unique: BTreeSet<_> = streamed_keys.iter().collect();
    assert_eq!(unique.len(), streamed_keys.len());
    for (a, b) in all.iter().zip(tasks(&whole)) {
        assert_eq!(get(a, "run_spec"), get(b, "run_spec"));
        assert_eq!(get(a, "deps"), get(b, "deps"));
        assert_eq!(get(a, "order"), get(b, "order"));
    }
    // Orders are a permutation of 0..n.
    let mut orders: Vec<i64> = all
        .iter()
        .map(|t| get(t, "order").as_i64().unwrap())
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, (0..all.len() as i64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_after_some_chunks_is_an_error_reply() {
    let pool = one_helper_pool().await;
    let (chunks, reply) = streamed(&pool, build(BUILDER, &["late-bad", "16"])).await;
    assert_eq!(chunks.len(), 2, "40 good tasks: two full chunks went out");
    assert!(chunks.iter().all(|c| tasks(c).len() == 16));
    assert_eq!(get(&reply, "status").as_str(), Some("error"));
    let text = get(&reply, "exception_text").as_str().unwrap_or("");
    assert!(text.contains("cannot pickle Bad"), "{text}");
    assert!(!get(&reply, "exception_ser").is_nil());
    // The helper is still in step for the next request.
    let (chunks, reply) = streamed(&pool, build(BUILDER, &["array", "50"])).await;
    assert_eq!(get(&reply, "status").as_str(), Some("ok"));
    assert!(!chunks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_without_a_sink_are_a_protocol_error() {
    let pool = one_helper_pool().await;
    // A request asking for a stream, sent through the plain `request`.
    let err = pool
        .request(build(BUILDER, &["array", "16"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("streamed partial replies to a request that did not ask for them"),
        "{err}"
    );
    // The helper was replaced; the pool still works.
    let reply = decode(&pool.request(build(BUILDER, &["array"])).await.unwrap());
    assert_eq!(get(&reply, "status").as_str(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_computed_alongside_pickling_come_with_the_reply() {
    let pool = one_helper_pool().await;
    let (chunks, reply) = streamed(&pool, build(BUILDER, &["array", "16", "1"])).await;
    assert_eq!(get(&reply, "status").as_str(), Some("ok"), "{reply}");
    let mut all: Vec<Value> = chunks.iter().flat_map(|c| tasks(c).to_vec()).collect();
    all.extend(tasks(&reply).iter().cloned());
    assert!(all.iter().all(|t| get(t, "order").is_nil()));
    let mut orders: Vec<i64> = get(&reply, "orders")
        .as_array()
        .expect("orders in the reply")
        .iter()
        .map(|o| o.as_i64().unwrap())
        .collect();
    assert_eq!(orders.len(), all.len());
    orders.sort_unstable();
    assert_eq!(orders, (0..all.len() as i64).collect::<Vec<_>>());
}
