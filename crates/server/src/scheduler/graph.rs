//! `update-graph`: hand the pickled expression to a materializer helper and
//! turn its reply into a [`GraphSubmission`] for the core.

use super::errors::exception_value;
use super::event_loop::Command;
use super::Scheduler;
use crate::materializer::MaterializeError;
use bytes::Bytes;
use dask_core::{ClientId, GraphSubmission, GraphTask, GraphTimings, RunSpecPacker};
use dask_wire::{msgpack, Key, KeyArena, Opaque, OpaqueKind, Value};

/// Why an update-graph could not become a graph (reported to the client).
struct Failure {
    exception: Value,
    traceback: Value,
    text: String,
}

impl Failure {
    fn runtime(text: String) -> Failure {
        Failure {
            exception: exception_value("RuntimeError", &text),
            traceback: Value::Nil,
            text,
        }
    }
}

fn opaque_parts(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Opaque(o)) => Value::map([
            ("header", Value::Bin(o.header.clone())),
            (
                "frames",
                Value::Array(o.frames.iter().cloned().map(Value::Bin).collect()),
            ),
        ]),
        _ => Value::Nil,
    }
}

/// The keys an `update-graph` runs as actors (its `actors` field): every
/// requested key for `True`, the listed keys for a list (the client expands
/// collections into keys), none for `False` or `None`.
fn actor_keys(msg: &Value, keys: &[Key]) -> Result<Vec<Key>, Failure> {
    match msg.get("actors") {
        None | Some(Value::Nil) | Some(Value::Bool(false)) => Ok(Vec::new()),
        Some(Value::Bool(true)) => Ok(keys.to_vec()),
        Some(Value::Array(_)) => dask_core::ops_client::keys_field("update-graph", msg, "actors")
            .map_err(|e| Failure::runtime(format!("update-graph: bad 'actors' field: {e}"))),
        Some(_) => Err(Failure::runtime(
            "update-graph: 'actors' must be a bool or a list of keys".into(),
        )),
    }
}

/// The materializer request for an `update-graph` op.
fn request(msg: &Value, keys: &[Key]) -> Result<Bytes, Failure> {
    let Some(Value::Opaque(expr)) = msg.get("expr_ser") else {
        return Err(Failure::runtime(
            "update-graph without a serialized expression ('expr_ser'); this scheduler needs \
             distributed>=2024 clients"
                .into(),
        ));
    };
    let req = Value::map([
        ("op", Value::str("materialize")),
        ("expr_header", Value::Bin(expr.header.clone())),
        (
            "expr_frames",
            Value::Array(expr.frames.iter().cloned().map(Value::Bin).collect()),
        ),
        (
            "keys",
            Value::Array(keys.iter().map(Key::to_value).collect()),
        ),
        (
            "internal_priority",
            msg.get("internal_priority").cloned().unwrap_or(Value::Nil),
        ),
        ("annotations", opaque_parts(msg.get("annotations"))),
        // Tasks come back in chunks while the helper is still pickling.
        ("stream", Value::Bool(true)),
    ]);
    Ok(Bytes::from(msgpack::encode(&req)))
}

fn bins(v: Option<&Value>) -> Vec<Bytes> {
    v.and_then(Value::as_seq)
        .map(|items| {
            items
                .iter()
                .filter_map(|b| match b {
                    Value::Bin(b) => Some(b.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A helper reply's object as the client should receive it: the
/// `Serialize(...)` form (`ser`: `{"header", "frames"}`) the Python
/// scheduler sends when available, else the plain field `raw`.
pub(super) fn serialized_or_bin(reply: &Value, ser: &str, raw: &str) -> Value {
    if let Some(parts) = reply.get(ser).filter(|v| !v.is_nil()) {
        if let Some(Value::Bin(header)) = parts.get("header") {
            return Value::Opaque(Box::new(Opaque {
                kind: OpaqueKind::Serialized,
                header: header.clone(),
                frames: bins(parts.get("frames")),
            }));
        }
    }
    reply.get(raw).cloned().unwrap_or(Value::Nil)
}

fn parse_task(
    t: &Value,
    keys: &mut KeyArena,
    packer: &mut RunSpecPacker,
) -> Result<GraphTask, String> {
    let key = keys
        .key_from_value(t.get("key").ok_or("task without key")?)
        .map_err(|e| e.to_string())?;
    let dependencies = t
        .get("deps")
        .and_then(Value::as_seq)
        .unwrap_or(&[])
        .iter()
        .map(|d| Key::from_value(d).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    // dependencies in the same graph, as positions in its task list (checked
    // against its length once every chunk is in)
    let dependency_positions = t
        .get("dep_pos")
        .and_then(Value::as_seq)
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            p.as_i64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| format!("task {key}: dependency position {p:?} is not a u32"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(Value::Bin(header)) = t.get("run_spec") else {
        return Err(format!("task {key} without run_spec"));
    };
    Ok(GraphTask {
        key,
        dependencies,
        dependency_positions,
        run_spec: packer.pack(&Opaque {
            kind: OpaqueKind::Pickled,
            header: header.clone(),
            frames: bins(t.get("run_spec_frames")),
        }),
        order: t.get("order").and_then(Value::as_i64).unwrap_or(0),
        annotations: t
            .get("annotations")
            .filter(|a| a.as_map().is_some())
            .cloned()
            .unwrap_or(Value::Map(Vec::new())),
        data_producer: t.get("data_producer").is_some_and(Value::truthy),
    })
}

/// The tasks of a reply or chunk, their run_specs packed
/// ([`RunSpecPacker`]: copied out of the reply, consecutive similar pickles
/// sharing their bytes) and their keys side by side ([`KeyArena`]), so that
/// no task keeps the reply's buffer alive.
fn parse_tasks(tasks: Option<&Value>) -> Result<Vec<GraphTask>, Failure> {
    let mut packer = RunSpecPacker::new();
    let mut keys = KeyArena::new();
    tasks
        .and_then(Value::as_seq)
        .ok_or_else(|| Failure::runtime("materializer reply without tasks".into()))?
        .iter()
        .map(|t| parse_task(t, &mut keys, &mut packer))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::runtime(format!("bad materializer reply: {e}")))
}

fn undecodable(e: impl std::fmt::Display) -> Failure {
    Failure::runtime(format!("undecodable materializer reply: {e}"))
}

/// One streamed chunk `{"partial": true, "tasks": [...]}`.
fn parse_chunk(chunk: Bytes) -> Result<Vec<GraphTask>, Failure> {
    let v = msgpack::decode(&chunk).map_err(undecodable)?;
    parse_tasks(v.get("tasks"))
}

/// What an `ok` final reply carries besides its status.
struct FinalReply {
    /// The last chunk of tasks (all of them for a small graph).
    tasks: Vec<GraphTask>,
    /// The number of tasks in all chunks, when announced.
    ntasks: Option<usize>,
    /// Every task's order, in stream order, when the helper sends them at
    /// the end (computed while the tasks were being pickled).
    orders: Option<Vec<i64>>,
    /// The pickled `ShuffleSpec` of each P2P shuffle in the graph, by id.
    p2p_specs: Vec<(String, Bytes)>,
    /// The helper's seconds spent materializing and ordering the graph.
    timings: Option<HelperTimings>,
}

/// How long the helper took over a graph (its reply's `timings`), for the
/// `update-graph` event.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HelperTimings {
    /// Deserializing and materializing.
    materialization: f64,
    /// `dask.order`.
    ordering: f64,
}

/// The reply's `timings`, when it has both, as numbers.
fn helper_timings(reply: &Value) -> Option<HelperTimings> {
    let t = reply.get("timings")?;
    Some(HelperTimings {
        materialization: t.get("materialization")?.as_f64()?,
        ordering: t.get("ordering")?.as_f64()?,
    })
}

/// Materialized tasks, the graph's P2P shuffle specs and the helper's timings.
type Materialized = (Vec<GraphTask>, Vec<(String, Bytes)>, Option<HelperTimings>);

/// The final reply: the tasks it carries (the last chunk, or all of them for
/// a small graph), run_specs packed, and the total
/// count it announces (`ntasks`); or the failure it reports.
fn parse_reply(bytes: Bytes) -> Result<FinalReply, Failure> {
    let reply = msgpack::decode(&bytes).map_err(undecodable)?;
    match reply.get("status").and_then(Value::as_str) {
        Some("ok") => {
            let ntasks = reply
                .get("ntasks")
                .and_then(Value::as_i64)
                .and_then(|n| usize::try_from(n).ok());
            let orders = match reply.get("orders") {
                None | Some(Value::Nil) => None,
                Some(v) => Some(
                    v.as_seq()
                        .ok_or_else(|| {
                            Failure::runtime(
                                "bad materializer reply: 'orders' is not an array".into(),
                            )
                        })?
                        .iter()
                        .map(|o| o.as_i64().unwrap_or(0))
                        .collect(),
                ),
            };
            let tasks = parse_tasks(reply.get("tasks"))?;
            let p2p_specs = reply
                .get("p2p_specs")
                .and_then(Value::as_map)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| match v {
                            Value::Bin(b) => Some((k.as_str()?.to_string(), b.clone())),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(FinalReply {
                timings: helper_timings(&reply),
                tasks,
                ntasks,
                orders,
                p2p_specs,
            })
        }
        _ => Err(Failure {
            exception: serialized_or_bin(&reply, "exception_ser", "exception"),
            traceback: serialized_or_bin(&reply, "traceback_ser", "traceback"),
            text: reply
                .get("exception_text")
                .and_then(Value::as_str)
                .unwrap_or("graph materialization failed")
                .to_string(),
        }),
    }
}

/// Replies at least this big are decoded on a blocking thread, not on the
/// async I/O thread (a 100k-task reply takes ~0.2 s to decode and parse).
const INLINE_DECODE_MAX: usize = 64 * 1024;

fn fifo_timeout(msg: &Value) -> f64 {
    match msg.get("fifo_timeout") {
        Some(Value::Str(s)) => dask_core::timedelta::parse_seconds(s).unwrap_or(0.0),
        Some(v) => v.as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}

fn materialize_error(e: MaterializeError) -> Failure {
    match e {
        e @ MaterializeError::Unavailable(_) => Failure::runtime(format!(
            "{e}. Start the scheduler with --python pointing at a Python that has \
             dask and distributed installed (or set DASK_SCHEDULER_PYTHON)."
        )),
        e => Failure::runtime(format!("graph materialization failed: {e}")),
    }
}

/// What the chunk parser hands back: the tasks of every chunk in order, the
/// first chunk's failure if any, and the time spent parsing.
type Parsed = (Vec<GraphTask>, Option<Failure>, std::time::Duration);

/// Decode and parse streamed chunks on a blocking thread (never the async
/// I/O thread), in order, until the channel closes; after a bad chunk it
/// only drains.
fn spawn_parser(
    first: Bytes,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
) -> tokio::task::JoinHandle<Parsed> {
    tokio::task::spawn_blocking(move || {
        let mut tasks: Vec<GraphTask> = Vec::new();
        let mut failure = None;
        let mut busy = std::time::Duration::ZERO;
        let mut next = Some(first);
        while let Some(chunk) = next.take().or_else(|| rx.blocking_recv()) {
            if failure.is_some() {
                continue;
            }
            let t0 = std::time::Instant::now();
            match parse_chunk(chunk) {
                Ok(part) => tasks.extend(part),
                Err(f) => failure = Some(f),
            }
            busy += t0.elapsed();
        }
        (tasks, failure, busy)
    })
}

fn join_failure(e: tokio::task::JoinError) -> Failure {
    Failure::runtime(format!("graph materialization failed: {e}"))
}

/// Run a materializer request and parse its tasks.
///
/// A big graph's tasks are streamed by the helper in chunks while it is
/// still pickling the rest; a blocking thread, started with the first chunk,
/// decodes and parses each as it arrives, so when the final reply comes only
/// its own (last) chunk is left. A small graph comes in the reply alone and
/// is parsed here, or on a blocking thread when the reply is big. Timed for
/// `/metrics` (latency histogram and queue depth).
async fn materialize(sched: &Scheduler, body: Bytes) -> Result<Materialized, Failure> {
    let _timer = crate::metrics::global().materialization();
    let started = std::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let mut request = std::pin::pin!(sched.materializer.request_streaming(body, tx));
    let (reply, parser) = tokio::select! {
        reply = &mut request => {
            // Chunks sent before the reply are all queued by now.
            let parser = rx.try_recv().ok().map(|first| spawn_parser(first, rx));
            (reply, parser)
        }
        Some(first) = rx.recv() => {
            let parser = spawn_parser(first, rx);
            (request.await, Some(parser))
        }
    };
    let replied = started.elapsed();
    let (mut tasks, chunk_failure, parse_busy) = match parser {
        Some(p) => p.await.map_err(join_failure)?,
        None => Default::default(),
    };
    let reply = reply.map_err(materialize_error)?;
    let last = if reply.len() < INLINE_DECODE_MAX {
        parse_reply(reply)?
    } else {
        tokio::task::spawn_blocking(move || parse_reply(reply))
            .await
            .map_err(join_failure)??
    };
    if let Some(f) = chunk_failure {
        return Err(f);
    }
    tasks.extend(last.tasks);
    if let Some(n) = last.ntasks.filter(|&n| n != tasks.len()) {
        return Err(Failure::runtime(format!(
            "bad materializer reply: {n} tasks announced, {} received",
            tasks.len()
        )));
    }
    check_positions(&tasks)?;
    if let Some(orders) = last.orders {
        if orders.len() != tasks.len() {
            return Err(Failure::runtime(format!(
                "bad materializer reply: {} orders for {} tasks",
                orders.len(),
                tasks.len()
            )));
        }
        for (t, o) in tasks.iter_mut().zip(orders) {
            t.order = o;
        }
    }
    tracing::debug!(
        target: "materializer",
        tasks = tasks.len(),
        "graph materialized in {replied:.3?}; parsing its chunks took {parse_busy:.3?} \
         (overlapped), the rest {:.3?} after the reply",
        started.elapsed().saturating_sub(replied)
    );
    Ok((tasks, last.p2p_specs, last.timings))
}

/// Every dependency given by position names a task of the graph.
fn check_positions(tasks: &[GraphTask]) -> Result<(), Failure> {
    match tasks
        .iter()
        .flat_map(|t| &t.dependency_positions)
        .find(|&&p| p as usize >= tasks.len())
    {
        Some(p) => Err(Failure::runtime(format!(
            "bad materializer reply: dependency position {p} in a graph of {} tasks",
            tasks.len()
        ))),
        None => Ok(()),
    }
}

/// Graphs at least this big are followed by [`release_freed_memory`].
const TRIM_AFTER_TASKS: usize = 10_000;

/// Hand memory that is free but kept by the allocator back to the OS.
///
/// Receiving a big graph leaves tens of MB of freed transient buffers
/// (decoded messages and replies, the submission itself) in glibc's
/// per-thread arenas, which glibc does not return on its own; ~300 B per
/// task on a 100k-task graph. Takes a few ms.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and only returns free
    // pages of the allocator's own arenas to the OS; it is thread-safe.
    unsafe {
        malloc_trim(0);
    }
}

/// Hand memory that is free but kept by the allocator back to the OS
/// (only glibc needs this).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// Materialize one `update-graph` op and hand the result to the event loop.
/// Awaited by the client's stream reader so that the client's later ops
/// (e.g. releasing these keys) apply after the graph.
pub async fn update_graph(sched: &Scheduler, client: ClientId, msg: Value) {
    let start = super::now();
    let keys: Vec<Key> = match dask_core::ops_client::keys_field("update-graph", &msg, "keys") {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("Ignoring update-graph: {e}");
            return;
        }
    };
    // Like Python's `_active_graph_updates`: the scheduler is not idle (for
    // `--idle-timeout` and `check_idle`) while a graph is being materialized.
    sched.send(Command::Call(Box::new(|s, _| s.graph_update_started())));
    let fifo_timeout = fifo_timeout(&msg);
    let actors = actor_keys(&msg, &keys);
    let body = request(&msg, &keys);
    // The decoded message (all its keys again) is not needed while the
    // graph materializes.
    drop(msg);
    let outcome = match (body, actors) {
        (Err(f), _) | (_, Err(f)) => Err(f),
        (Ok(body), Ok(actors)) => materialize(sched, body)
            .await
            .map(|(tasks, specs, timings)| (tasks, specs, timings, actors)),
    };
    match outcome {
        Ok((tasks, p2p_specs, timings, actors)) => {
            let big = tasks.len() >= TRIM_AFTER_TASKS;
            sched.send(Command::Graph {
                client,
                graph: GraphSubmission {
                    requested: keys,
                    tasks,
                    fifo_timeout,
                    actors,
                    timings: timings.map(|t| GraphTimings {
                        start,
                        materialization: t.materialization,
                        ordering: t.ordering,
                        clock: super::now,
                    }),
                },
            });
            if !p2p_specs.is_empty() {
                // right after the graph (same channel): before any worker
                // can ask for one of these shuffles
                sched.send(Command::Call(Box::new(move |s, _| {
                    s.p2p_add_specs(p2p_specs)
                })));
            }
            if big {
                // After the core has taken the graph (same channel, in order).
                sched.send(Command::Call(Box::new(|_, _| release_freed_memory())));
            }
        }
        Err(f) => {
            tracing::warn!("update-graph of {} keys failed: {}", keys.len(), f.text);
            sched.send(Command::GraphFailed {
                client,
                keys,
                exception: f.exception,
                traceback: f.traceback,
            });
        }
    }
    // After the graph (same channel, so in order).
    sched.send(Command::Call(Box::new(|s, _| s.graph_update_finished())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(i: i64, frames: usize) -> Value {
        Value::map([
            (
                "key",
                Value::Array(vec![Value::str("x-abc"), Value::Int(i)]),
            ),
            (
                "deps",
                Value::Array(
                    (0..i)
                        .map(|d| Value::Array(vec![Value::str("x-abc"), Value::Int(d)]))
                        .collect(),
                ),
            ),
            (
                "run_spec",
                Value::Bin(Bytes::from(vec![i as u8; 10 + i as usize])),
            ),
            (
                "run_spec_frames",
                Value::Array(
                    (0..frames)
                        .map(|f| Value::Bin(Bytes::from(vec![f as u8 + 100; 3])))
                        .collect(),
                ),
            ),
            ("order", Value::Int(i)),
            ("annotations", Value::Map(Vec::new())),
            ("data_producer", Value::Bool(i == 0)),
        ])
    }

    fn chunk(n: i64) -> Bytes {
        Bytes::from(msgpack::encode(&Value::map([
            ("partial", Value::Bool(true)),
            (
                "tasks",
                Value::Array((0..n).map(|i| task(i, (i % 3) as usize)).collect()),
            ),
        ])))
    }

    fn check(tasks: &[GraphTask]) {
        for (i, t) in tasks.iter().enumerate() {
            let o = t.run_spec.to_opaque();
            assert_eq!(o.header, vec![i as u8; 10 + i]);
            assert_eq!(o.frames.len(), i % 3);
            for (f, b) in o.frames.iter().enumerate() {
                assert_eq!(b, &vec![f as u8 + 100; 3]);
            }
            assert_eq!(t.order, i as i64);
            assert_eq!(t.dependencies.len(), i);
            let key = Value::Array(vec![Value::str("x-abc"), Value::Int(i as i64)]);
            assert_eq!(t.key, Key::from_value(&key).expect("a key"));
        }
    }

    #[test]
    fn dependencies_in_the_graph_come_as_positions() {
        let mut packer = RunSpecPacker::new();
        let mut keys = KeyArena::new();
        let mut t = task(0, 0);
        t.set("dep_pos", Value::Array(vec![Value::Int(2), Value::Int(0)]));
        let parsed = parse_task(&t, &mut keys, &mut packer).expect("parses");
        assert_eq!(parsed.dependency_positions, [2, 0]);
        assert!(parsed.dependencies.is_empty());
        for bad in [Value::Int(-1), Value::Int(1 << 40), Value::str("0")] {
            t.set("dep_pos", Value::Array(vec![bad.clone()]));
            let err = parse_task(&t, &mut keys, &mut packer).expect_err("rejected");
            assert!(err.contains("dependency position"), "{bad:?}: {err}");
        }
        // within the graph, or the reply is refused
        let mut tasks: Vec<GraphTask> = (0..3)
            .map(|_| parse_task(&task(0, 0), &mut keys, &mut packer).expect("parses"))
            .collect();
        tasks[1].dependency_positions = vec![0, 2];
        assert!(check_positions(&tasks).is_ok());
        tasks[2].dependency_positions = vec![3];
        let err = check_positions(&tasks).expect_err("out of range");
        assert!(err.text.contains("dependency position 3"), "{}", err.text);
    }

    #[test]
    fn chunk_run_specs_rebuild_exactly_and_leave_the_chunk() {
        let bytes = chunk(20);
        let Ok(tasks) = parse_chunk(bytes.clone()) else {
            panic!("chunk parses")
        };
        assert_eq!(tasks.len(), 20);
        check(&tasks);
        // nothing the tasks keep points into the chunk
        let inside = |p: *const u8| bytes.as_ptr_range().contains(&p);
        for t in &tasks {
            let o = t.run_spec.to_opaque();
            assert!(!inside(o.header.as_ptr()));
            assert!(o.frames.iter().all(|f| !inside(f.as_ptr())));
            assert!(!inside(t.key.as_bytes().as_ptr()));
        }
        // the keys lie side by side in the chunk's key arena
        let (a, b) = (tasks[0].key.as_bytes(), tasks[1].key.as_bytes());
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
    }

    #[test]
    fn similar_run_specs_share_their_bytes() {
        // pickles that differ only in a few bytes, like one layer's tasks
        let pickle = |i: i64| {
            let mut v = vec![b'p'; 2000];
            v.extend_from_slice(format!("('x-abc', {i})").as_bytes());
            v.extend_from_slice(&[b's'; 20]);
            v
        };
        let tasks: Vec<Value> = (0..50)
            .map(|i| {
                let mut t = task(i, 0);
                t.set("run_spec", Value::Bin(Bytes::from(pickle(i))));
                t.set("deps", Value::Array(vec![]));
                t
            })
            .collect();
        let reply = Bytes::from(msgpack::encode(&Value::map([
            ("status", Value::str("ok")),
            ("tasks", Value::Array(tasks)),
        ])));
        let last = parse_reply(reply).ok().unwrap();
        assert!(!last.tasks[0].run_spec.is_delta());
        assert!(last.tasks[1..].iter().all(|t| t.run_spec.is_delta()));
        for (i, t) in last.tasks.iter().enumerate() {
            assert_eq!(t.run_spec.to_opaque().header, pickle(i as i64));
        }
    }

    #[test]
    fn reply_with_count_and_error_reply() {
        let ok = msgpack::encode(&Value::map([
            ("status", Value::str("ok")),
            ("tasks", Value::Array((0..4).map(|i| task(i, 1)).collect())),
            ("ntasks", Value::Int(9)),
            ("id", Value::Nil),
        ]));
        let last = parse_reply(Bytes::from(ok)).ok().unwrap();
        assert_eq!((last.tasks.len(), last.ntasks), (4, Some(9)));
        assert!(last.orders.is_none());
        let with_orders = msgpack::encode(&Value::map([
            ("status", Value::str("ok")),
            ("tasks", Value::Array((0..2).map(|i| task(i, 0)).collect())),
            ("orders", Value::Array(vec![Value::Int(5), Value::Nil])),
        ]));
        let last = parse_reply(Bytes::from(with_orders)).ok().unwrap();
        assert_eq!(last.orders, Some(vec![5, 0]));
        let err = msgpack::encode(&Value::map([
            ("status", Value::str("error")),
            ("exception", Value::Bin(Bytes::from_static(b"pickled"))),
            ("exception_text", Value::str("ValueError('boom')")),
        ]));
        let f = parse_reply(Bytes::from(err)).err().unwrap();
        assert_eq!(f.text, "ValueError('boom')");
        assert!(parse_chunk(Bytes::from_static(&[0xc1])).is_err());
    }

    #[test]
    fn the_helpers_timings_are_read_when_whole() {
        let timings = |t: Value| {
            let reply = msgpack::encode(&Value::map([
                ("status", Value::str("ok")),
                ("tasks", Value::Array(vec![task(0, 0)])),
                ("timings", t),
            ]));
            parse_reply(Bytes::from(reply)).ok().unwrap().timings
        };
        let whole = Value::map([
            ("materialization", Value::Float(0.25)),
            ("ordering", Value::Int(0)),
        ]);
        assert_eq!(
            timings(whole),
            Some(HelperTimings {
                materialization: 0.25,
                ordering: 0.0
            })
        );
        // a part missing, or not a number: left out of the event
        let half = Value::map([("materialization", Value::Float(0.25))]);
        assert_eq!(timings(half), None);
        let text = Value::map([
            ("materialization", Value::str("0.25")),
            ("ordering", Value::Float(0.1)),
        ]);
        assert_eq!(timings(text), None);
        assert_eq!(timings(Value::Nil), None);
    }
}
