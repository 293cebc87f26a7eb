//! `update-graph`: hand the pickled expression to a materializer helper and
//! turn its reply into a [`GraphSubmission`] for the core.

use super::errors::exception_value;
use super::event_loop::Command;
use super::Scheduler;
use crate::materializer::MaterializeError;
use bytes::Bytes;
use dask_core::{ClientId, GraphSubmission, GraphTask};
use dask_wire::{msgpack, Key, Opaque, OpaqueKind, Value};

/// Why an update-graph could not become a graph (reported to the client).
struct Failure {
    exception: Value,
    traceback: Value,
    text: String,
}

impl Failure {
    fn not_implemented(text: String) -> Failure {
        Failure {
            exception: exception_value("NotImplementedError", &text),
            traceback: Value::Nil,
            text,
        }
    }

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

/// An error reply's exception as the client should receive it: the
/// `Serialize(bytes)` form the Python scheduler sends when available.
fn serialized_or_bin(reply: &Value, ser: &str, raw: &str) -> Value {
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

fn parse_task(t: &Value) -> Result<GraphTask, String> {
    let key =
        Key::from_value(t.get("key").ok_or("task without key")?).map_err(|e| e.to_string())?;
    let dependencies = t
        .get("deps")
        .and_then(Value::as_seq)
        .unwrap_or(&[])
        .iter()
        .map(|d| Key::from_value(d).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(Value::Bin(header)) = t.get("run_spec") else {
        return Err(format!("task {key} without run_spec"));
    };
    Ok(GraphTask {
        key,
        dependencies,
        run_spec: Opaque {
            kind: OpaqueKind::Pickled,
            header: header.clone(),
            frames: bins(t.get("run_spec_frames")),
        },
        order: t.get("order").and_then(Value::as_i64).unwrap_or(0),
        annotations: t
            .get("annotations")
            .filter(|a| a.as_map().is_some())
            .cloned()
            .unwrap_or(Value::Map(Vec::new())),
        data_producer: t.get("data_producer").is_some_and(Value::truthy),
    })
}

fn parse_reply(reply: &Value) -> Result<Vec<GraphTask>, Failure> {
    match reply.get("status").and_then(Value::as_str) {
        Some("ok") => {
            let tasks = reply
                .get("tasks")
                .and_then(Value::as_seq)
                .ok_or_else(|| Failure::runtime("materializer reply without tasks".into()))?;
            tasks
                .iter()
                .map(parse_task)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::runtime(format!("bad materializer reply: {e}")))
        }
        _ => Err(Failure {
            exception: serialized_or_bin(reply, "exception_ser", "exception"),
            traceback: serialized_or_bin(reply, "traceback_ser", "traceback"),
            text: reply
                .get("exception_text")
                .and_then(Value::as_str)
                .unwrap_or("graph materialization failed")
                .to_string(),
        }),
    }
}

fn fifo_timeout(msg: &Value) -> f64 {
    match msg.get("fifo_timeout") {
        Some(Value::Str(s)) => dask_core::timedelta::parse_seconds(s).unwrap_or(0.0),
        Some(v) => v.as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}

/// A materializer request, timed for `/metrics` (latency histogram and
/// queue depth).
async fn timed_request(sched: &Scheduler, body: Bytes) -> Result<Bytes, MaterializeError> {
    let _timer = crate::metrics::global().materialization();
    sched.materializer.request(body).await
}

/// Materialize one `update-graph` op and hand the result to the event loop.
/// Awaited by the client's stream reader so that the client's later ops
/// (e.g. releasing these keys) apply after the graph.
pub async fn update_graph(sched: &Scheduler, client: ClientId, msg: Value) {
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
    let actors = msg.get("actors").is_some_and(Value::truthy);
    let outcome = match request(&msg, &keys) {
        Ok(_) if actors => Err(Failure::not_implemented(
            "Actors (actors=True) are not supported by the Rust dask-scheduler".into(),
        )),
        Err(f) => Err(f),
        Ok(body) => match timed_request(sched, body).await {
            Ok(reply) => match msgpack::decode(&reply) {
                Ok(v) => parse_reply(&v),
                Err(e) => Err(Failure::runtime(format!(
                    "undecodable materializer reply: {e}"
                ))),
            },
            Err(e @ MaterializeError::Unavailable(_)) => Err(Failure::runtime(format!(
                "{e}. Start the scheduler with --python pointing at a Python that has \
                 dask and distributed installed (or set DASK_SCHEDULER_PYTHON)."
            ))),
            Err(e) => Err(Failure::runtime(format!(
                "graph materialization failed: {e}"
            ))),
        },
    };
    match outcome {
        Ok(tasks) => sched.send(Command::Graph {
            client,
            graph: GraphSubmission {
                requested: keys,
                tasks,
                fifo_timeout: fifo_timeout(&msg),
            },
        }),
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
