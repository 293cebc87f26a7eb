//! RPC handlers: request/response ops on non-stream connections.
//!
//! Replies follow `distributed.core.Server._handle_comm`: the handler's return
//! value is written back unless the request says `reply: false`; `close: true`
//! ends the connection after the reply. Failures are error replies that the
//! Python caller re-raises; they never cost more than this connection.

use super::errors::error_reply;
use super::Scheduler;
use crate::net::conn::Conn;
use dask_core::ops_client::keys_field;
use dask_wire::pickle;
use dask_wire::{Key, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Serve RPCs on a connection, starting with `first`, until it closes.
pub async fn serve_rpcs(sched: Arc<Scheduler>, mut conn: Conn, first: Value) {
    let peer = conn.peer().to_string();
    let mut msg = first;
    loop {
        let Some(op) = msg.get("op").and_then(Value::as_str).map(str::to_string) else {
            tracing::warn!(
                "Closing connection from {peer}: message without an 'op': {}",
                brief(&msg)
            );
            let _ = conn
                .write(&error_reply("ValueError", "message without an 'op' field"))
                .await;
            return;
        };
        crate::metrics::global().count_op("rpc", Some(&op));
        let mut wants_reply = msg.get("reply").is_none_or(Value::truthy);
        let close_after = msg.get("close").is_some_and(Value::truthy);
        // as Python's `handle_comm`: `close` first, then the blocked ones
        let mut blocked = (op != "close").then(|| sched.blocked_reply(&op)).flatten();
        let reply = match op.as_str() {
            _ if blocked.is_some() => blocked.take().unwrap_or(Value::Nil),
            "close" => {
                if wants_reply {
                    let _ = conn.write(&Value::str("OK")).await;
                }
                return;
            }
            "feed" => return super::feed::serve(sched, conn, msg).await,
            "subscribe_worker_status" => {
                return super::worker_status::serve(sched, conn).await;
            }
            "register_nanny" => {
                // Reply, then wait for the nanny's "worker started" message.
                let ok = Value::map([
                    ("status", Value::str("OK")),
                    ("nanny-plugins", sched.plugins.nanny_map()),
                ]);
                if conn.write(&ok).await.is_err() {
                    return;
                }
                match tokio::time::timeout(Duration::from_secs(300), conn.read()).await {
                    Ok(Ok(_)) => Value::Nil,
                    _ => return,
                }
            }
            // an RPC Python code added in the function runner
            op if sched.runner_handlers.contains(op) => {
                forward_call(&sched, op, &msg, &peer, &mut wants_reply).await
            }
            _ => {
                let reply = dispatch(&sched, &op, &msg).await;
                if *sched.preloading.borrow() && reply == unknown_op_reply(&op) {
                    unknown_while_preloading(&sched, &op, &msg, &peer, &mut wants_reply).await
                } else {
                    reply
                }
            }
        };
        if wants_reply && conn.write(&reply).await.is_err() {
            return;
        }
        if op == "terminate" {
            tracing::info!("Scheduler closing at the request of {peer} (terminate)");
            sched.shutdown.notify_one();
            return;
        }
        if close_after {
            return;
        }
        msg = match conn.read().await {
            Ok(m) => m,
            Err(e) => {
                if !e.is_disconnect() {
                    tracing::warn!("Closing connection from {peer}: {e}");
                    let _ = conn
                        .write(&error_reply("ValueError", &format!("bad message: {e}")))
                        .await;
                }
                return;
            }
        };
    }
}

/// A call of a handler Python code added in the function runner, forwarded
/// there; `wants_reply` is cleared where the handler asked for none
/// (`Status.dont_reply`).
async fn forward_call(
    sched: &Arc<Scheduler>,
    op: &str,
    msg: &Value,
    peer: &str,
    wants_reply: &mut bool,
) -> Value {
    let reply = super::runner_handlers::forward(sched, op, msg, peer).await;
    *wants_reply &= reply.is_some();
    reply.unwrap_or(Value::Nil)
}

/// A call of an operation this scheduler does not know while `--preload`
/// modules are starting. Python's scheduler serves no call before its
/// preloads ran; this one serves meanwhile, so the call waits for them (at
/// most [`PRELOAD_WAIT`]), which may add it as a handler, before it is
/// refused.
async fn unknown_while_preloading(
    sched: &Arc<Scheduler>,
    op: &str,
    msg: &Value,
    peer: &str,
    wants_reply: &mut bool,
) -> Value {
    if tokio::time::timeout(PRELOAD_WAIT, sched.preloads_started())
        .await
        .is_err()
    {
        return error_reply(
            "NotImplementedError",
            &format!(
                "The Rust dask-scheduler does not implement the operation '{op}' (its \
                 --preload modules, which may add it, have been starting for {} s and are \
                 not done)",
                PRELOAD_WAIT.as_secs()
            ),
        );
    }
    if sched.runner_handlers.contains(op) {
        forward_call(sched, op, msg, peer, wants_reply).await
    } else {
        unknown_op_reply(op)
    }
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// A heartbeat's `executing` (`{key: seconds running}`) as pairs; `None`
/// where it is nil or not a map. Entries whose key is not one, or whose
/// time is not a finite number, are left out rather than failing the
/// heartbeat or making a prefix's estimate infinite.
fn executing_field(v: &Value) -> Option<Vec<(Key, f64)>> {
    let entries = v.as_map()?;
    Some(
        entries
            .iter()
            .filter_map(|(k, t)| {
                let seconds = t.as_f64().filter(|s| s.is_finite())?;
                Some((Key::from_value(k).ok()?, seconds))
            })
            .collect(),
    )
}

pub(super) fn keys_opt(op: &str, msg: &Value, field: &str) -> Result<Option<Vec<Key>>, Value> {
    match msg.get(field) {
        None | Some(Value::Nil) => Ok(None),
        Some(_) => keys_field(op, msg, field)
            .map(Some)
            .map_err(|e| error_reply("TypeError", &e.to_string())),
    }
}

pub(super) fn keys_req(op: &str, msg: &Value, field: &str) -> Result<Vec<Key>, Value> {
    keys_field(op, msg, field).map_err(|e| error_reply("TypeError", &e.to_string()))
}

/// Run one RPC and produce its reply.
pub async fn dispatch(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Value {
    match handle(sched, op, msg).await {
        Ok(v) | Err(v) => v,
    }
}

async fn handle(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    let field = |k: &str| msg.get(k).cloned();
    let lost = super::errors::shutting_down;
    Ok(match op {
        "identity" => {
            let n = msg.get("n_workers").and_then(Value::as_i64).unwrap_or(-1);
            sched.identity(n).await
        }
        "echo" => field("data").unwrap_or(Value::Nil),
        // The reply goes out first; the caller then triggers the shutdown.
        "terminate" => Value::Nil,
        "who_has" => {
            let keys = keys_opt(op, msg, "keys")?;
            sched
                .with_state(move |s, _| s.who_has(keys.as_deref()))
                .await
                .ok_or_else(lost)?
        }
        "has_what" | "processing" | "ncores" | "ncores_running" => {
            let workers = field("workers");
            let op = op.to_string();
            sched
                .with_state(move |s, _| match op.as_str() {
                    "has_what" => s.has_what(workers.as_ref()),
                    "processing" => s.processing(workers.as_ref()),
                    "ncores" => s.ncores(workers.as_ref(), false),
                    _ => s.ncores(workers.as_ref(), true),
                })
                .await
                .ok_or_else(lost)?
        }
        "nbytes" => {
            let keys = keys_opt(op, msg, "keys")?;
            // the client's default, as Python's `get_nbytes`
            let summary = msg.get("summary").is_none_or(Value::truthy);
            sched
                .with_state(move |s, _| s.nbytes(keys.as_deref(), summary))
                .await
                .ok_or_else(lost)?
                .map_err(|k| error_reply("KeyError", &k))?
        }
        "get_task_status" => {
            let keys = keys_req(op, msg, "keys")?;
            sched
                .with_state(move |s, _| s.task_status(&keys))
                .await
                .ok_or_else(lost)?
        }
        "get_runspec" => one_task_query(sched, op, msg, dask_core::State::runspec_of).await?,
        // this scheduler's own: the stand-in's `TaskState.exception` and
        // `.traceback`, asked when first read
        "stand_in_error" => one_task_query(sched, op, msg, dask_core::State::error_of).await?,
        "get_error_cause" => {
            let keys = keys_opt(op, msg, "keys")?.unwrap_or_default();
            sched
                .with_state(move |s, _| s.error_cause(&keys))
                .await
                .ok_or_else(lost)?
        }
        "get_task_stream_index" => sched
            .with_state(|s, _| Value::from(s.task_stream_index()))
            .await
            .ok_or_else(lost)?,
        "run_function" => return super::run_function::rpc_run_function(sched, msg).await,
        "get_task_prefix_states" => sched
            .with_state(|s, _| s.task_prefix_states())
            .await
            .ok_or_else(lost)?,
        "set_restrictions" => return set_restrictions(sched, msg).await,
        "add_keys" => {
            let worker = msg
                .get("worker")
                .and_then(Value::as_str)
                .ok_or_else(|| error_reply("TypeError", "add_keys needs a 'worker' address"))?
                .to_string();
            keys_req(op, msg, "keys")?;
            let mut stream_op = msg.clone();
            stream_op.set("op", Value::str("add-keys"));
            sched
                .with_state(move |s, now| match s.worker_id(&worker) {
                    None => Ok(Value::str("not found")),
                    Some(w) => s
                        .handle_worker_op(w, &stream_op, now)
                        .map(|_| Value::str("OK"))
                        .map_err(|e| error_reply("ValueError", &e.to_string())),
                })
                .await
                .ok_or_else(lost)??
        }
        "performance_report" => return super::perfreport::rpc_performance_report(sched, msg).await,
        "get_task_stream" => {
            let (start, stop) = (field("start"), field("stop"));
            let int = |k: &str| msg.get(k).and_then(Value::as_i64);
            let (count, start_index) = (int("count"), int("start_index"));
            sched
                .with_state(move |s, now| {
                    Value::Array(s.task_stream(
                        start.as_ref(),
                        stop.as_ref(),
                        count,
                        start_index,
                        now,
                    ))
                })
                .await
                .ok_or_else(lost)?
        }
        "heartbeat_worker" => {
            let address = msg
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| error_reply("TypeError", "heartbeat_worker without 'address'"))?
                .to_string();
            let metrics = field("metrics");
            let sent_at = msg.get("now").and_then(Value::as_f64);
            let executing = msg.get("executing").and_then(executing_field);
            let hb = sched
                .with_state(move |s, now| {
                    let interval = s.heartbeat_worker(&address, metrics, sent_at, now);
                    if let (Some(_), Some(executing)) = (interval, executing) {
                        s.record_executing(&address, executing);
                    }
                    (interval, now)
                })
                .await
                .ok_or_else(lost)?;
            match hb {
                (Some(interval), now) => Value::map([
                    ("status", Value::str("OK")),
                    ("time", Value::Float(now)),
                    ("heartbeat-interval", Value::Float(interval)),
                ]),
                (None, _) => Value::map([("status", Value::str("missing"))]),
            }
        }
        "unregister" => {
            let address = msg
                .get("address")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let removed = sched
                .with_state(move |s, now| match s.worker_id(&address) {
                    Some(w) => s.remove_worker(w, now),
                    None => false,
                })
                .await
                .ok_or_else(lost)?;
            Value::str(if removed { "OK" } else { "already-removed" })
        }
        "set_resources" => {
            let worker = msg
                .get("worker")
                .and_then(Value::as_str)
                .ok_or_else(|| error_reply("TypeError", "set_resources needs a 'worker' address"))?
                .to_string();
            let resources = match msg.get("resources") {
                None | Some(Value::Nil) => Vec::new(),
                Some(v) if v.as_map().is_some() => super::connection::resources_of(Some(v)),
                Some(_) => {
                    return Err(error_reply(
                        "TypeError",
                        "set_resources needs 'resources': {name: quantity}",
                    ))
                }
            };
            let missing = worker.clone();
            let known = sched
                .with_state(move |s, _| s.set_resources(&worker, resources))
                .await
                .ok_or_else(lost)?;
            if !known {
                return Err(error_reply("KeyError", &missing));
            }
            Value::str("OK")
        }
        "retry" => {
            let keys = keys_req(op, msg, "keys")?;
            let visited = sched
                .with_state(move |s, now| s.retry(None, &keys, now))
                .await
                .ok_or_else(lost)?;
            Value::Array(visited.iter().map(Key::to_value).collect())
        }
        "update_data" => {
            let (who_has, nbytes) = dask_core::ops_worker::parse_who_has_nbytes(op, msg)
                .map_err(|e| error_reply("TypeError", &e.to_string()))?;
            let client = msg
                .get("client")
                .and_then(Value::as_str)
                .map(str::to_string);
            sched
                .with_state(move |s, now| {
                    let c = client.map(|c| s.add_client(&c, now));
                    s.update_data(c, &who_has, &nbytes)
                })
                .await
                .ok_or_else(lost)?;
            Value::Nil
        }
        "versions" => versions_of_packages(sched, msg).await?,
        "log_event" => {
            // a topic, or a list of topics
            let topics: Vec<String> = match msg.get("topic") {
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(t) => vec![t.as_str().unwrap_or("").to_string()],
                None => vec![String::new()],
            };
            let event = field("msg").unwrap_or(Value::Nil);
            sched
                .with_state(move |s, now| {
                    for t in &topics {
                        s.log_event(t, event.clone(), now);
                    }
                })
                .await;
            Value::Nil
        }
        "events" => {
            let topic = msg.get("topic").and_then(Value::as_str).map(str::to_string);
            sched
                .with_state(move |s, _| s.get_events(topic.as_deref()))
                .await
                .ok_or_else(lost)?
        }
        "logs" | "get_logs" => {
            let start = msg.get("start").and_then(Value::as_f64).unwrap_or(0.0);
            let n = msg
                .get("n")
                .and_then(Value::as_i64)
                .map(|n| n.max(0) as usize);
            let timestamps = msg.get("timestamps").is_some_and(Value::truthy);
            crate::logring::get_logs(start, n, timestamps)
        }
        "worker_logs" => {
            // Python: `broadcast(msg={"op": "get_logs", "n": n}, workers, nanny)`
            let mut request = Value::map([
                (
                    "msg",
                    Value::map([
                        ("op", Value::str("get_logs")),
                        ("n", field("n").unwrap_or(Value::Nil)),
                    ]),
                ),
                ("nanny", field("nanny").unwrap_or(Value::Bool(false))),
            ]);
            if let Some(w) = field("workers") {
                request.set("workers", w);
            }
            broadcast(sched, &request).await?
        }
        "gather" => gather(sched, keys_req(op, msg, "keys")?).await,
        "scatter" => scatter(sched, msg).await?,
        "broadcast" => broadcast(sched, msg).await?,
        "proxy" => {
            let worker = msg
                .get("worker")
                .and_then(Value::as_str)
                .ok_or_else(|| error_reply("TypeError", "proxy without 'worker'"))?;
            let inner = field("msg").unwrap_or(Value::Nil);
            sched
                .rpc
                .call(worker, inner)
                .await
                .map_err(|e| error_reply("OSError", &e.to_string()))?
        }
        "call_stack" => call_stack(sched, keys_opt(op, msg, "keys")?).await,
        "retire_workers" => super::retire::rpc_retire_workers(sched, msg).await?,
        "restart" => super::restart::rpc_restart(sched, msg).await?,
        "profile" => super::profile::rpc_profile(sched, msg).await?,
        "benchmark_hardware" => super::hardware::rpc_benchmark_hardware(sched).await?,
        "restart_workers" => super::restart::rpc_restart_workers(sched, msg).await?,
        "workers_to_close" => super::retire::rpc_workers_to_close(sched, msg).await?,
        "adaptive_target" => super::retire::rpc_adaptive_target(sched, msg).await?,
        "memory_sampler_start" => super::memory_sampler::rpc_start(sched, msg).await?,
        "memory_sampler_stop" => super::memory_sampler::rpc_stop(sched, msg).await?,
        "check_idle" => super::retire::check_idle(sched).await.ok_or_else(lost)?,
        "register_worker_plugin" | "register_nanny_plugin" => {
            register_plugin(sched, op == "register_nanny_plugin", msg).await?
        }
        "unregister_worker_plugin" | "unregister_nanny_plugin" => {
            unregister_plugin(sched, op == "unregister_nanny_plugin", msg).await?
        }
        "register_scheduler_plugin" => super::scheduler_plugins::rpc_register(sched, msg).await?,
        "set_metadata" | "get_metadata" => metadata(sched, op, msg).await?,
        "replicate" => super::replicas::rpc_replicate(sched, msg).await?,
        "start_task_metadata" | "stop_task_metadata" => task_metadata(sched, op, msg).await?,
        "get_cluster_state" => super::dump::rpc_get_cluster_state(sched, msg).await?,
        "dump_state" => super::dump::rpc_dump_state(sched, msg).await?,
        "dump_cluster_state_to_url" => super::dump::rpc_dump_to_url(sched, msg).await?,
        "rebalance" => super::replicas::rpc_rebalance(sched, msg).await?,
        "amm_handler" => amm_handler(sched, msg).await?,
        "get_story" => get_story(sched, msg).await?,
        // this scheduler's own: what the run_on_scheduler stand-in's
        // `tasks`, `workers` and `clients` are rebuilt from
        "stand_in_snapshot" => {
            let with_tasks = !matches!(msg.get("tasks"), Some(Value::Bool(false)));
            sched
                .with_state(move |s, _| s.snapshot(with_tasks))
                .await
                .ok_or_else(super::errors::shutting_down)?
        }
        // the stand-in's `transition_log`: Python's `Transition` tuples
        "stand_in_transition_log" => Value::Array(
            sched
                .with_state(|s, _| s.transition_log_values())
                .await
                .ok_or_else(super::errors::shutting_down)?,
        ),
        "unregister_scheduler_plugin" => {
            super::scheduler_plugins::rpc_unregister(sched, msg).await?
        }
        op if super::p2p::OPS.contains(&op) => return super::p2p::handle(sched, op, msg).await,
        op if super::coordination::OPS.contains(&op) => {
            return super::coordination::handle(sched, op, msg).await
        }
        "register-client" | "register-worker" => {
            return Err(error_reply(
                "ValueError",
                &format!("'{op}' must be the first message of a new connection"),
            ))
        }
        other => {
            tracing::warn!("Unsupported RPC '{other}' ({})", brief(msg));
            return Err(unknown_op_reply(other));
        }
    })
}

/// How long a call of an operation this scheduler does not know waits for
/// `--preload` modules still starting, which may add it as a handler.
const PRELOAD_WAIT: Duration = Duration::from_secs(60);

/// The reply to an operation this scheduler does not know.
fn unknown_op_reply(op: &str) -> Value {
    error_reply(
        "NotImplementedError",
        &format!("The Rust dask-scheduler does not implement the operation '{op}'"),
    )
}

/// `get_story(keys_or_stimuli)` (`client.story`): the logged transitions
/// of those keys, as Python's `Transition` tuples; a clear error naming the
/// setting while the log is off.
async fn get_story(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let keys: Vec<dask_wire::Key> = match msg.get("keys_or_stimuli") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| dask_wire::Key::from_value(v).ok())
            .collect(),
        Some(Value::Nil) | None => Vec::new(),
        Some(one) => dask_wire::Key::from_value(one).into_iter().collect(),
    };
    sched
        .with_state(move |s, _| {
            if s.config().transition_log_length == 0 {
                return Err(error_reply(
                    "NotImplementedError",
                    "get_story: this scheduler was started with its transition log off \
                     (distributed.scheduler.transition-log: false, or \
                     distributed.admin.low-level-log-length: 0); leave \
                     distributed.scheduler.transition-log at its default (true) to keep the last \
                     distributed.admin.low-level-log-length transitions for client.story",
                ));
            }
            Ok(Value::Array(s.story(&keys)))
        })
        .await
        .ok_or_else(super::errors::shutting_down)?
}

/// `client.amm.start()`, `stop()`, `running()`, `run_once()` (Python's
/// `Scheduler.amm_handler(method)`).
async fn amm_handler(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    sched
        .with_state(move |s, now| match method.as_str() {
            "start" | "stop" => {
                s.set_amm_running(method == "start");
                Ok(Value::Nil)
            }
            "running" => Ok(Value::Bool(s.amm_running())),
            "run_once" => {
                super::event_loop::run_amm(s, now);
                Ok(Value::Nil)
            }
            other => Err(error_reply(
                "ValueError",
                &format!(
                    "amm_handler: unknown method {other:?}; expected start, stop, run_once or running"
                ),
            )),
        })
        .await
        .ok_or_else(super::errors::shutting_down)?
}

/// `start_task_metadata(name)` / `stop_task_metadata(name)`: the two ends
/// of a client's `with get_task_metadata():` block.
async fn task_metadata(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    let name = msg
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| error_reply("TypeError", &format!("{op} needs a 'name'")))?
        .to_string();
    if op == "start_task_metadata" {
        sched
            .with_state(move |s, _| s.start_task_metadata(&name))
            .await
            .ok_or_else(super::errors::shutting_down)?;
        return Ok(Value::Nil);
    }
    sched
        .with_state(move |s, _| s.stop_task_metadata(&name))
        .await
        .ok_or_else(super::errors::shutting_down)?
        .map_err(|e| error_reply("ValueError", &e))
}

/// `set_metadata(keys, value)` / `get_metadata(keys, default)`. Python's
/// "no default" (`dask.typing.no_default`, an enum) means a missing key
/// raises `KeyError`.
async fn metadata(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    let keys: Vec<Value> = match msg.get("keys") {
        Some(Value::Array(ks)) => ks.clone(),
        Some(Value::Nil) | None => Vec::new(),
        Some(single) => vec![single.clone()],
    };
    if op == "set_metadata" {
        // Python indexes keys[-1]: no path is an error there, not a no-op
        if keys.is_empty() {
            return Err(error_reply(
                "IndexError",
                "set_metadata needs a non-empty list of 'keys'",
            ));
        }
        let value = msg.get("value").cloned().unwrap_or(Value::Nil);
        sched
            .with_state(move |s, _| s.set_metadata(&keys, value))
            .await
            .ok_or_else(super::errors::shutting_down)?;
        return Ok(Value::Nil);
    }
    // the client's msgpack encodes the enum as {"__Enum__": True, ...,
    // "__name__": "_NoDefault"}
    let no_default = |v: &Value| {
        v.get("__Enum__").is_some_and(Value::truthy)
            && v.get("__name__").and_then(Value::as_str) == Some("_NoDefault")
    };
    let default = match msg.get("default") {
        None => None,
        Some(v) if no_default(v) => None,
        Some(v) => Some(v.clone()),
    };
    let got = sched
        .with_state(move |s, _| s.get_metadata(&keys))
        .await
        .ok_or_else(super::errors::shutting_down)?;
    match (got, default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d),
        (Err(missing), None) => Err(error_reply("KeyError", &missing.0)),
    }
}

/// The scheduler's `get_versions()` for the version check of a client or
/// worker registering: the materializer's Python environment, nil while
/// there is none (then the scheduler takes no part in the check, rather
/// than calling every package missing).
pub(super) fn checked_versions(pool: &crate::materializer::MaterializerPool) -> Value {
    use crate::materializer::Availability;
    match pool.availability() {
        Availability::Available {
            versions_msgpack, ..
        } => dask_wire::msgpack::decode(&versions_msgpack).unwrap_or(Value::Nil),
        Availability::Unavailable { .. } => Value::Nil,
    }
}

/// The `versions` RPC (`Client.get_versions(packages=...)`): [`versions`],
/// with the versions of the extra `packages` asked of the materializer's
/// Python when the request names any (Python's `get_versions(packages)`).
async fn versions_of_packages(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let packages: Vec<Value> = msg
        .get("packages")
        .and_then(Value::as_seq)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.as_str().is_some())
        .cloned()
        .collect();
    if packages.is_empty() {
        return Ok(versions(sched));
    }
    let reply = sched
        .helper_request(&Value::map([
            ("op", Value::str("versions")),
            ("packages", Value::Array(packages)),
        ]))
        .await?;
    match reply.get("versions") {
        Some(v) if reply.get("status").and_then(Value::as_str) == Some("ok") => Ok(v.clone()),
        _ => Err(helper_error(&reply)),
    }
}

/// `versions`: the materializer's Python environment, which is what runs the
/// graphs' dask code on the scheduler side.
pub(super) fn versions(sched: &Scheduler) -> Value {
    use crate::materializer::Availability;
    match sched.materializer.availability() {
        Availability::Available { .. } => checked_versions(&sched.materializer),
        Availability::Unavailable { reason } => Value::map([
            (
                "host",
                Value::map([(
                    "note",
                    Value::str(format!("no Python environment: {reason}")),
                )]),
            ),
            ("packages", Value::Map(Vec::new())),
        ]),
    }
}

/// `gather` through the scheduler: fetch from workers in parallel and relay
/// the opaque values (placeholders are renumbered by the encoder).
async fn gather(sched: &Arc<Scheduler>, keys: Vec<Key>) -> Value {
    let ks = keys.clone();
    let Some((plan, mut missing)) = sched.with_state(move |s, _| s.gather_plan(&ks)).await else {
        return error_reply("RuntimeError", "scheduler is shutting down");
    };
    let mut fetches = tokio::task::JoinSet::new();
    for (addr, keys) in plan {
        let rpc = sched.rpc.clone();
        fetches.spawn(async move {
            let wire_keys = keys.iter().map(Key::to_value).collect();
            let reply = rpc.get_data(&addr, wire_keys, None).await;
            (addr, keys, reply)
        });
    }
    let mut data: Vec<(Value, Value)> = Vec::with_capacity(keys.len());
    while let Some(joined) = fetches.join_next().await {
        let Ok((addr, wanted, reply)) = joined else {
            continue;
        };
        let got: BTreeMap<Key, Value> = match reply {
            Ok(r) if r.get("status").and_then(Value::as_str) == Some("OK") => r
                .get("data")
                .and_then(Value::as_map)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((Key::from_value(k).ok()?, v.clone())))
                        .collect()
                })
                .unwrap_or_default(),
            Ok(r) => {
                tracing::warn!("Gather from {addr} failed: {}", brief(&r));
                BTreeMap::new()
            }
            Err(e) => {
                tracing::warn!("Gather from {addr} failed: {e}");
                BTreeMap::new()
            }
        };
        let mut not_there = Vec::new();
        for k in wanted {
            match got.get(&k) {
                Some(v) => data.push((k.to_value(), v.clone())),
                None => not_there.push(k),
            }
        }
        if !not_there.is_empty() {
            tracing::warn!(
                "Couldn't gather {} keys from {addr}, rescheduling them",
                not_there.len()
            );
            let lost = not_there.clone();
            sched
                .with_state(move |s, now| s.missing_data(&addr, &lost, now))
                .await;
            missing.extend(not_there);
        }
    }
    if missing.is_empty() {
        Value::map([("status", Value::str("OK")), ("data", Value::Map(data))])
    } else {
        Value::map([
            ("status", Value::str("error")),
            (
                "keys",
                Value::Array(missing.iter().map(Key::to_value).collect()),
            ),
        ])
    }
}

/// `scatter`: place client data on workers (round-robin, or everywhere with
/// `broadcast`), then register it as in memory and wanted by the client.
async fn scatter(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let data: Vec<(Key, Value)> = msg
        .get("data")
        .and_then(Value::as_map)
        .ok_or_else(|| error_reply("TypeError", "scatter without a 'data' map"))?
        .iter()
        .map(|(k, v)| Ok((Key::from_value(k)?, v.clone())))
        .collect::<Result<_, dask_wire::WireError>>()
        .map_err(|e| error_reply("TypeError", &e.to_string()))?;
    let client = msg
        .get("client")
        .and_then(Value::as_str)
        .map(str::to_string);
    let workers = msg.get("workers").cloned().filter(|v| !v.is_nil());
    let timeout = msg.get("timeout").and_then(Value::as_f64).unwrap_or(2.0);
    let broadcast = match msg.get("broadcast") {
        Some(Value::Bool(b)) => {
            if *b {
                Some(usize::MAX)
            } else {
                None
            }
        }
        Some(v) => v.as_i64().filter(|n| *n > 0).map(|n| n as usize),
        None => None,
    };

    // Wait (bounded) for running workers, like Python's scatter.
    let deadline = tokio::time::Instant::now()
        + super::coordination::seconds(timeout).min(Duration::from_secs(3600));
    let targets = loop {
        let w = workers.clone();
        let t = sched
            .with_state(move |s, _| s.scatter_targets(w.as_ref()))
            .await
            .unwrap_or_default();
        if !t.is_empty() {
            break t;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(error_reply(
                "TimeoutError",
                "No valid workers found to scatter to",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut per_worker: BTreeMap<String, Vec<(Key, Value)>> = BTreeMap::new();
    match broadcast {
        Some(n) => {
            for (k, v) in &data {
                for addr in targets.iter().take(n) {
                    per_worker
                        .entry(addr.clone())
                        .or_default()
                        .push((k.clone(), v.clone()));
                }
            }
        }
        None => {
            let offset = sched.next_scatter_offset(data.len());
            for (i, (k, v)) in data.iter().enumerate() {
                let addr = &targets[(offset + i) % targets.len()];
                per_worker
                    .entry(addr.clone())
                    .or_default()
                    .push((k.clone(), v.clone()));
            }
        }
    }

    let mut sends = tokio::task::JoinSet::new();
    for (addr, items) in per_worker {
        let rpc = sched.rpc.clone();
        sends.spawn(async move {
            let keys: Vec<Key> = items.iter().map(|(k, _)| k.clone()).collect();
            let data = Value::Map(items.into_iter().map(|(k, v)| (k.to_value(), v)).collect());
            let req = Value::map([("op", Value::str("update_data")), ("data", data)]);
            (addr.clone(), keys, rpc.call(&addr, req).await)
        });
    }
    let mut who_has: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut nbytes: BTreeMap<Key, i64> = BTreeMap::new();
    while let Some(joined) = sends.join_next().await {
        let Ok((addr, keys, reply)) = joined else {
            continue;
        };
        let reply =
            reply.map_err(|e| error_reply("OSError", &format!("scatter to {addr} failed: {e}")))?;
        if reply.get("status").and_then(Value::as_str) != Some("OK") {
            return Err(error_reply(
                "RuntimeError",
                &format!("scatter to {addr} failed: {}", brief(&reply)),
            ));
        }
        let sizes = reply.get("nbytes").and_then(Value::as_map).unwrap_or(&[]);
        for k in keys {
            let size = sizes
                .iter()
                .find(|(sk, _)| Key::from_value(sk).ok().as_ref() == Some(&k))
                .and_then(|(_, v)| v.as_i64())
                .unwrap_or(0);
            nbytes.insert(k.clone(), size);
            who_has.entry(k).or_default().push(addr.clone());
        }
    }
    let keys: Vec<Value> = data.iter().map(|(k, _)| k.to_value()).collect();
    let who_has: Vec<(Key, Vec<String>)> = who_has.into_iter().collect();
    let nbytes: Vec<(Key, i64)> = nbytes.into_iter().collect();
    sched
        .with_state(move |s, now| {
            let c = client.map(|c| s.add_client(&c, now));
            s.update_data(c, &who_has, &nbytes);
        })
        .await;
    Ok(Value::Array(keys))
}

fn plugin_name(msg: &Value) -> Result<String, Value> {
    msg.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| error_reply("TypeError", "plugin request without a 'name'"))
}

/// `register_worker_plugin` / `register_nanny_plugin`: store, then install on
/// every current worker (or nanny); future ones get it when they register.
async fn register_plugin(sched: &Arc<Scheduler>, nanny: bool, msg: &Value) -> Result<Value, Value> {
    use super::plugins::Kind;
    let name = plugin_name(msg)?;
    let plugin = msg
        .get("plugin")
        .cloned()
        .ok_or_else(|| error_reply("TypeError", "plugin request without a 'plugin'"))?;
    let idempotent = msg.get("idempotent").is_some_and(Value::truthy);
    let kind = if nanny { Kind::Nanny } else { Kind::Worker };
    tracing::info!("Registering {kind:?} plugin {name}");
    if !sched.plugins.add(kind, &name, plugin.clone(), idempotent) {
        return Ok(Value::Map(Vec::new()));
    }
    let op = if nanny { "plugin_add" } else { "plugin-add" };
    let request = Value::map([
        (
            "msg",
            Value::map([
                ("op", Value::str(op)),
                ("plugin", plugin),
                ("name", Value::str(name)),
            ]),
        ),
        ("nanny", Value::Bool(nanny)),
    ]);
    // as Python's, a worker whose handler fails (e.g. cannot unpickle the
    // plugin) fails the whole call; a plugin whose setup raises is an error
    // *reply* of the worker, returned to the client as such
    broadcast(sched, &request).await
}

/// `set_restrictions(worker={key: address | [addresses] | None})`.
async fn set_restrictions(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let bad = || {
        error_reply(
            "TypeError",
            "set_restrictions needs 'worker': {key: address, [addresses] or None}",
        )
    };
    let mut changes = Vec::new();
    for (k, v) in msg.get("worker").and_then(Value::as_map).ok_or_else(bad)? {
        let key = Key::from_value(k).map_err(|e| error_reply("TypeError", &e.to_string()))?;
        let workers = match v {
            Value::Nil => None,
            Value::Str(s) => Some(vec![s.to_string()]),
            other => Some(
                other
                    .as_seq()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|w| w.as_str().map(str::to_string).ok_or_else(bad))
                    .collect::<Result<Vec<String>, Value>>()?,
            ),
        };
        changes.push((key, workers));
    }
    sched
        .with_state(move |s, _| {
            for (key, workers) in changes {
                s.set_worker_restrictions(&key, workers)
                    .map_err(|k| error_reply("KeyError", &k))?;
            }
            Ok(Value::Nil)
        })
        .await
        .ok_or_else(super::errors::shutting_down)?
}

/// A materializer helper's error reply as the error reply of an RPC: the
/// client re-raises the helper's exception.
pub(super) fn helper_error(reply: &Value) -> Value {
    let field = |k: &str| reply.get(k).cloned().unwrap_or(Value::Nil);
    Value::map([
        ("status", Value::str("uncaught-error")),
        ("exception", field("exception")),
        ("traceback", field("traceback")),
        ("exception_text", field("exception_text")),
        ("traceback_text", field("traceback_text")),
    ])
}

/// `unregister_worker_plugin` / `unregister_nanny_plugin`.
async fn unregister_plugin(
    sched: &Arc<Scheduler>,
    nanny: bool,
    msg: &Value,
) -> Result<Value, Value> {
    use super::plugins::Kind;
    let name = plugin_name(msg)?;
    let kind = if nanny { Kind::Nanny } else { Kind::Worker };
    if !sched.plugins.remove(kind, &name) {
        let what = if nanny { "nanny" } else { "worker" };
        return Err(error_reply(
            "ValueError",
            &format!("The {what} plugin {name} does not exist"),
        ));
    }
    let op = if nanny {
        "plugin_remove"
    } else {
        "plugin-remove"
    };
    let request = Value::map([
        (
            "msg",
            Value::map([("op", Value::str(op)), ("name", Value::str(name))]),
        ),
        ("nanny", Value::Bool(nanny)),
    ]);
    // as Python's, a worker whose handler fails (e.g. cannot unpickle the
    // plugin) fails the whole call; a plugin whose setup raises is an error
    // *reply* of the worker, returned to the client as such
    broadcast(sched, &request).await
}

/// `broadcast(msg, workers, hosts, nanny, on_error)`: send an RPC to many
/// workers (or their nannies) and collect the replies, `{address: reply}`.
pub(super) async fn broadcast(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let inner = msg
        .get("msg")
        .filter(|m| m.as_map().is_some())
        .cloned()
        .ok_or_else(|| error_reply("TypeError", "broadcast without a 'msg' map"))?;
    let workers = msg.get("workers").cloned();
    let hosts = msg.get("hosts").cloned();
    let nanny = msg.get("nanny").is_some_and(Value::truthy);
    let on_error = msg
        .get("on_error")
        .and_then(Value::as_str)
        .unwrap_or("raise")
        .to_string();
    // (worker, address to call): with `nanny`, the workers that have one,
    // as Python's skips the others
    let targets: Vec<(String, String)> = sched
        .with_state(move |s, _| {
            s.broadcast_targets(workers.as_ref(), hosts.as_ref())
                .into_iter()
                .filter_map(|a| {
                    let dial = if nanny { s.nanny_of(&a)? } else { a.clone() };
                    Some((a, dial))
                })
                .collect()
        })
        .await
        .unwrap_or_default();
    let mut calls = tokio::task::JoinSet::new();
    for (addr, dial) in targets {
        let rpc = sched.rpc.clone();
        let mut m = inner.clone();
        m.set("close", Value::Bool(false));
        calls.spawn(async move {
            let result = match rpc.call(&dial, m).await {
                Ok(reply) => {
                    uncaught_error_text(&reply).map_or(Ok(reply), |text| Err(("Exception", text)))
                }
                Err(e) => Err(("OSError", e.to_string())),
            };
            (addr, result)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let Ok((addr, result)) = joined else { continue };
        match result {
            Ok(reply) => out.push((Value::str(addr), reply)),
            Err((exc_type, e)) => {
                // as Python's `broadcast` logs every failed call
                tracing::error!("broadcast to {addr} failed: {exc_type}: {e}");
                match on_error.as_str() {
                    "ignore" => {}
                    "return" | "return_pickle" => {
                        let exc = pickle::exception("builtins", exc_type, &e);
                        out.push((Value::str(addr), Value::Bin(exc)));
                    }
                    _ => return Err(error_reply(exc_type, &e)),
                }
            }
        }
    }
    out.sort_by_key(|a| a.0.to_string());
    Ok(Value::Map(out))
}

/// The `exception_text` of a reply whose handler raised (`uncaught-error`).
/// Python's scheduler calls workers without deserializing, so its
/// `send_recv` raises `Exception(exception_text)` for such a reply, and
/// that `Exception` is what `broadcast` raises or returns.
fn uncaught_error_text(reply: &Value) -> Option<String> {
    (reply.get("status").and_then(Value::as_str) == Some("uncaught-error")).then(|| {
        reply
            .get("exception_text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    })
}

/// An RPC about the one task named by the request's `key`: `query`'s
/// answer, a `TypeError` for a `key` that is not a key, a `KeyError` for
/// one the scheduler does not know.
async fn one_task_query(
    sched: &Arc<Scheduler>,
    op: &str,
    msg: &Value,
    query: fn(&dask_core::State, &Key) -> Result<Value, String>,
) -> Result<Value, Value> {
    let key = dask_core::ops_client::key_of(op, msg, "key")
        .map_err(|e| error_reply("TypeError", &e.to_string()))?;
    sched
        .with_state(move |s, _| query(s, &key))
        .await
        .ok_or_else(super::errors::shutting_down)?
        .map_err(|k| error_reply("KeyError", &k))
}

/// `call_stack`: ask the workers processing `keys` (all if nil) for their stacks.
pub(crate) async fn call_stack(sched: &Arc<Scheduler>, keys: Option<Vec<Key>>) -> Value {
    let targets: Vec<String> = sched
        .with_state(move |s, _| s.call_stack_targets(keys.as_deref()))
        .await
        .unwrap_or_default();
    let mut calls = tokio::task::JoinSet::new();
    for addr in targets {
        let rpc = sched.rpc.clone();
        calls.spawn(async move {
            let req = Value::map([("op", Value::str("call_stack"))]);
            (addr.clone(), rpc.call(&addr, req).await)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok((addr, Ok(reply))) = joined {
            // a worker whose handler failed is left out, as one that could
            // not be reached (Python's `call_stack` raises for either)
            if reply.truthy() && uncaught_error_text(&reply).is_none() {
                out.push((Value::str(addr), reply));
            }
        }
    }
    Value::Map(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat's `executing` keeps the entries with a key and a finite
    /// time (a tuple key included), whatever else a worker sends.
    #[test]
    fn executing_keeps_keys_with_finite_times() {
        let tuple = Value::Array(vec![Value::str("x-1"), Value::Int(3)]);
        let got = executing_field(&Value::Map(vec![
            (Value::str("a-1"), Value::Float(1.5)),
            (tuple.clone(), Value::Int(2)),
            (Value::Nil, Value::Float(1.0)),
            (Value::str("b-1"), Value::str("long")),
            (Value::str("c-1"), Value::Float(f64::NAN)),
            (Value::str("d-1"), Value::Float(f64::INFINITY)),
        ]))
        .expect("a map");
        assert_eq!(
            got,
            vec![
                (Key::from_str_key("a-1"), 1.5),
                (Key::from_value(&tuple).unwrap(), 2.0)
            ]
        );
        assert_eq!(executing_field(&Value::Nil), None);
        assert_eq!(executing_field(&Value::str("busy")), None);
    }
}
