//! The P2P shuffle RPCs workers call (`shuffle_get_or_create`,
//! `shuffle_get`, `shuffle_restrict_task`, `shuffle_barrier`) and the
//! installation of Dask's `ShuffleWorkerPlugin` on every worker, as Python's
//! `ShuffleSchedulerPlugin` does. The bookkeeping is the core's
//! ([`dask_core::p2p`]); building a run calls the shuffle spec's Python
//! (`pick_worker`), which a materializer helper does.

use super::errors::{error_reply, shutting_down};
use super::Scheduler;
use dask_core::p2p::{CreateRun, GetOrCreate};
use dask_wire::{pickle, Key, Value};
use std::sync::Arc;
use std::time::Duration;

/// The RPCs handled here.
pub const OPS: &[&str] = &[
    "shuffle_get_or_create",
    "shuffle_get",
    "shuffle_restrict_task",
    "shuffle_barrier",
];

/// Rounds of `shuffle_inputs_done` broadcasts that may all fail to reach
/// the same workers before the barrier gives up (Python's limit).
const BARRIER_ATTEMPTS: u32 = 3;

/// An error *value* (`status: "error"`) carrying Python's
/// `P2PConsistencyError`, which the worker re-raises; `message` too, which
/// `_ensure_output_worker` reads.
fn consistency_error(message: &str) -> Value {
    Value::map([
        ("status", Value::str("error")),
        (
            "exception",
            Value::Bin(pickle::exception(
                "distributed.shuffle._exceptions",
                "P2PConsistencyError",
                message,
            )),
        ),
        ("traceback", Value::Nil),
        (
            "exception_text",
            Value::str(format!("P2PConsistencyError('{message}')")),
        ),
        ("traceback_text", Value::str("")),
        ("message", Value::str(message)),
    ])
}

fn str_arg(op: &str, msg: &Value, field: &str) -> Result<String, Value> {
    msg.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| error_reply("TypeError", &format!("{op}: '{field}' must be a string")))
}

fn int_arg(op: &str, msg: &Value, field: &str) -> Result<i64, Value> {
    msg.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| error_reply("TypeError", &format!("{op}: '{field}' must be an integer")))
}

fn key_arg(op: &str, msg: &Value) -> Result<Key, Value> {
    dask_core::ops_client::key_of(op, msg, "key")
        .map_err(|e| error_reply("TypeError", &e.to_string()))
}

fn ok_run(run_spec: dask_wire::Opaque) -> Value {
    Value::map([
        ("status", Value::str("OK")),
        ("run_spec", Value::Opaque(Box::new(run_spec))),
    ])
}

/// Handle one of [`OPS`].
pub async fn handle(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    match op {
        "shuffle_get_or_create" => {
            let id = str_arg(op, msg, "shuffle_id")?;
            let key = key_arg(op, msg)?;
            let worker = str_arg(op, msg, "worker")?;
            // a run built while the other side of its hash join was
            // installed is built again, with that side's mapping
            for _ in 0..CREATE_ATTEMPTS {
                let (i, w, k) = (id.clone(), worker.clone(), key.clone());
                let step = sched
                    .with_state(move |s, _| s.p2p_get_or_create(&i, &k, &w))
                    .await
                    .ok_or_else(shutting_down)?;
                match step {
                    Err(message) => return Ok(consistency_error(&message)),
                    Ok(GetOrCreate::Run(run)) => return Ok(ok_run(run)),
                    Ok(GetOrCreate::Create(create)) => {
                        if let Some(reply) = create_run(sched, create, worker.clone()).await? {
                            return Ok(reply);
                        }
                    }
                }
            }
            Ok(consistency_error(&format!(
                "Shuffle {id:?}: a shuffle sharing its output tasks was installed during each \
                 of {CREATE_ATTEMPTS} attempts to create it"
            )))
        }
        "shuffle_get" => {
            let id = str_arg(op, msg, "id")?;
            let worker = str_arg(op, msg, "worker")?;
            let got = sched
                .with_state(move |s, _| s.p2p_get(&id, &worker))
                .await
                .ok_or_else(shutting_down)?;
            Ok(got.map_or_else(|m| consistency_error(&m), ok_run))
        }
        "shuffle_restrict_task" => {
            let id = str_arg(op, msg, "id")?;
            let run_id = int_arg(op, msg, "run_id")?;
            let key = key_arg(op, msg)?;
            let worker = str_arg(op, msg, "worker")?;
            let done = sched
                .with_state(move |s, _| s.p2p_restrict_task(&id, run_id, &key, &worker))
                .await
                .ok_or_else(shutting_down)?;
            Ok(match done {
                Ok(()) => Value::map([("status", Value::str("OK"))]),
                Err(m) => consistency_error(&m),
            })
        }
        _ => {
            // shuffle_barrier
            let id = str_arg(op, msg, "id")?;
            let run_id = int_arg(op, msg, "run_id")?;
            let consistent = msg.get("consistent").is_none_or(Value::truthy);
            let i = id.clone();
            let workers = sched
                .with_state(move |s, now| s.p2p_barrier(&i, run_id, consistent, now))
                .await
                .ok_or_else(shutting_down)?
                .map_err(|m| error_reply("RuntimeError", &m))?;
            inputs_done(sched, &id, run_id, workers).await?;
            Ok(Value::Nil)
        }
    }
}

/// How often `shuffle_get_or_create` builds a run that another shuffle's
/// installation made stale before it gives up (each retry follows a new
/// installation, so two suffice for a hash join).
const CREATE_ATTEMPTS: usize = 4;

/// Have a helper build the run (`pick_worker` for every partition), then
/// install it; `None` when the run is stale
/// ([`dask_core::State::p2p_install`]).
async fn create_run(
    sched: &Arc<Scheduler>,
    create: CreateRun,
    worker: String,
) -> Result<Option<Value>, Value> {
    let request = Value::map([
        ("op", Value::str("p2p_create")),
        ("spec", Value::Bin(create.spec.clone())),
        (
            "workers",
            Value::Array(create.workers.iter().map(Value::str).collect()),
        ),
        (
            "existing",
            Value::Array(create.existing.iter().cloned().map(Value::Bin).collect()),
        ),
        ("run_id", Value::Int(create.run_id)),
    ]);
    let reply = helper_call(sched, &request).await?;
    let bin = |field: &str| match reply.get(field) {
        Some(Value::Bin(b)) => Ok(b.clone()),
        _ => Err(error_reply(
            "RuntimeError",
            &format!("graph materializer: p2p_create reply without '{field}'"),
        )),
    };
    let run_spec = bin("run_spec")?;
    let worker_for = bin("worker_for")?;
    let participating: Vec<String> = reply
        .get("participating")
        .and_then(Value::as_seq)
        .map(|ws| {
            ws.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let installed = sched
        .with_state(move |s, _| {
            s.p2p_install(&create, &worker, run_spec, worker_for, participating)
        })
        .await
        .ok_or_else(shutting_down)?;
    Ok(match installed {
        Ok(run) => run.map(ok_run),
        Err(m) => Some(consistency_error(&m)),
    })
}

/// One request to a materializer helper; its error replies become errors.
async fn helper_call(sched: &Arc<Scheduler>, request: &Value) -> Result<Value, Value> {
    let reply = sched.helper_request(request).await?;
    if reply.get("status").and_then(Value::as_str) == Some("ok") {
        Ok(reply)
    } else {
        let text = reply
            .get("exception_text")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        Err(error_reply("RuntimeError", &format!("P2P shuffle: {text}")))
    }
}

/// Tell every participating worker that all inputs are in
/// (`shuffle_inputs_done`), retrying those that could not be reached.
async fn inputs_done(
    sched: &Arc<Scheduler>,
    id: &str,
    run_id: i64,
    mut workers: Vec<String>,
) -> Result<(), Value> {
    let mut no_progress = 0;
    while !workers.is_empty() {
        let mut calls = tokio::task::JoinSet::new();
        for w in workers.clone() {
            let sched = sched.clone();
            let msg = Value::map([
                ("op", Value::str("shuffle_inputs_done")),
                ("shuffle_id", Value::str(id)),
                ("run_id", Value::Int(run_id)),
            ]);
            calls.spawn(async move {
                let reply = sched.rpc.call(&w, msg).await;
                (w, reply)
            });
        }
        let before = workers.len();
        workers.clear();
        while let Some(joined) = calls.join_next().await {
            let Ok((w, reply)) = joined else { continue };
            match reply {
                Ok(r) if r.get("status").and_then(Value::as_str) == Some("uncaught-error") => {
                    let text = r
                        .get("exception_text")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    return Err(error_reply(
                        "RuntimeError",
                        &format!("Unexpected error encountered during P2P barrier: {text}"),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        "Failure during broadcast of shuffle {id} to {w} ({e}), retrying."
                    );
                    workers.push(w);
                }
            }
        }
        if workers.is_empty() {
            break;
        }
        let addrs = workers.clone();
        let gone = sched
            .with_state(move |s, _| addrs.iter().any(|a| s.worker_id(a).is_none()))
            .await
            .ok_or_else(shutting_down)?;
        if gone {
            return Err(error_reply(
                "RuntimeError",
                &format!("Worker {workers:?} left during shuffle {id}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if workers.len() == before {
            no_progress += 1;
            if no_progress >= BARRIER_ATTEMPTS {
                return Err(error_reply(
                    "RuntimeError",
                    &format!(
                        "Broadcast not making progress for shuffle {id}. Aborting. This is \
                         possibly due to overloaded workers. Increasing config \
                         `distributed.comm.timeouts.connect` timeout may help."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Install Dask's `ShuffleWorkerPlugin` on every worker that registers (the
/// Python scheduler's shuffle extension does this when it starts). Without a
/// materializer Python there is no plugin to install, and P2P graphs cannot
/// be submitted anyway.
pub async fn install_worker_plugin(sched: &Arc<Scheduler>) {
    use crate::materializer::Availability;
    if let Availability::Unavailable { .. } = sched.materializer.availability() {
        return;
    }
    let request = Value::map([("op", Value::str("p2p_worker_plugin"))]);
    match helper_call(sched, &request).await {
        Ok(reply) => match reply.get("plugin") {
            Some(Value::Bin(b)) => {
                sched.plugins.add(
                    super::plugins::Kind::Worker,
                    "shuffle",
                    Value::Bin(b.clone()),
                    false,
                );
            }
            _ => tracing::warn!("P2P shuffle worker plugin: the helper sent no plugin"),
        },
        Err(e) => tracing::warn!("P2P shuffle worker plugin unavailable: {e}"),
    }
}
