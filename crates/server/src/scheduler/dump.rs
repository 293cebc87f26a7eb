//! `get_cluster_state` and `dump_cluster_state_to_url`: what
//! `Client.dump_cluster_state` asks for.
//!
//! Why: a cluster dump is the first thing asked of a Dask user reporting a
//! stuck computation. As in Python, it holds the scheduler's state (the
//! core's [`dask_core::State::dump_state`] plus this server's identity),
//! each worker's own `dump_state` (or the error of asking it), and the
//! versions. The client writes a local file itself; for a URL
//! (`s3://...`) the scheduler writes it, here through a materializer
//! helper running Dask's own writer (`cluster_dump.write_state`, fsspec).

use super::errors::{error_reply, shutting_down};
use super::rpc::{helper_error, versions};
use super::Scheduler;
use dask_wire::Value;
use std::sync::Arc;

/// The `exclude` field: attribute names left out at every level (Python's
/// default, `DEFAULT_CLUSTER_DUMP_EXCLUDE`, is `("run_spec",)`).
fn exclude_of(msg: &Value) -> Vec<String> {
    match msg.get("exclude") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Str(s)) => vec![s.to_string()],
        _ => vec!["run_spec".to_string()],
    }
}

/// The scheduler's own part of a dump (Python's `Scheduler._to_dict`),
/// with the addresses of the workers to ask for theirs.
async fn scheduler_state(
    sched: &Arc<Scheduler>,
    exclude: &[String],
) -> Result<(Value, Vec<String>), Value> {
    // the server's identity (type, id, address, services, started, totals);
    // its `workers` entry is replaced by the dump's below
    let mut scheduler = sched.identity(0).await;
    if scheduler.as_map().is_none() {
        return Err(shutting_down());
    }
    scheduler.set("status", Value::str("running"));
    let ex = exclude.to_vec();
    let (state, addresses) = sched
        .with_state(move |s, _| (s.dump_state(&ex), s.broadcast_targets(None, None)))
        .await
        .ok_or_else(shutting_down)?;
    for (name, value) in state {
        scheduler.set(name, value);
    }
    if let Value::Map(entries) = &mut scheduler {
        entries.retain(|(k, _)| !k.as_str().is_some_and(|k| exclude.iter().any(|e| e == k)));
    }
    Ok((scheduler, addresses))
}

/// RPC `dump_state(exclude=())`: the scheduler's own state, as every
/// Python server answers it (`Server._to_dict`; nothing left out unless
/// asked).
pub async fn rpc_dump_state(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let exclude = match msg.get("exclude") {
        None | Some(Value::Nil) => Vec::new(),
        Some(_) => exclude_of(msg),
    };
    Ok(scheduler_state(sched, &exclude).await?.0)
}

/// The whole dump: `{"scheduler": ..., "workers": ..., "versions": ...}`.
async fn cluster_state(sched: &Arc<Scheduler>, exclude: Vec<String>) -> Result<Value, Value> {
    let (scheduler, addresses) = scheduler_state(sched, &exclude).await?;

    // each worker's own state and versions, asked at once
    let exclude_value = Value::Array(exclude.iter().map(|e| Value::str(e.as_str())).collect());
    let mut calls = tokio::task::JoinSet::new();
    for addr in addresses {
        let rpc = sched.rpc.clone();
        let dump = Value::map([
            ("op", Value::str("dump_state")),
            ("exclude", exclude_value.clone()),
            ("close", Value::Bool(false)),
        ]);
        let ask_versions = Value::map([
            ("op", Value::str("versions")),
            ("close", Value::Bool(false)),
        ]);
        calls.spawn(async move {
            let state = rpc.call(&addr, dump).await;
            let versions = rpc.call(&addr, ask_versions).await.ok();
            (addr, state, versions)
        });
    }
    let mut workers = Vec::new();
    let mut worker_versions = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let Ok((addr, state, v)) = joined else {
            continue;
        };
        // as Python does, an error becomes its repr
        let state = state.unwrap_or_else(|e| Value::str(format!("OSError({:?})", e.to_string())));
        workers.push((Value::str(addr.as_str()), state));
        if let Some(v) = v {
            worker_versions.push((Value::str(addr.as_str()), v));
        }
    }
    workers.sort_by_key(|(a, _)| a.to_string());
    worker_versions.sort_by_key(|(a, _)| a.to_string());
    Ok(Value::map([
        ("scheduler", scheduler),
        ("workers", Value::Map(workers)),
        (
            "versions",
            Value::map([
                ("scheduler", versions(sched)),
                ("workers", Value::Map(worker_versions)),
            ]),
        ),
    ]))
}

/// RPC `get_cluster_state(exclude)`.
pub async fn rpc_get_cluster_state(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    cluster_state(sched, exclude_of(msg)).await
}

/// Fields of a `dump_cluster_state_to_url` message that are not storage
/// options (the client sends its `**storage_options` as fields).
const NOT_STORAGE_OPTIONS: [&str; 8] = [
    "op",
    "reply",
    "close",
    "serializers",
    "deserializers",
    "url",
    "exclude",
    "format",
];

/// RPC `dump_cluster_state_to_url(url, exclude, format, **storage_options)`.
pub async fn rpc_dump_to_url(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    use crate::materializer::Availability;
    let url = msg
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| error_reply("TypeError", "dump_cluster_state_to_url needs a 'url'"))?
        .to_string();
    let format = msg.get("format").cloned().unwrap_or(Value::str("msgpack"));
    if let Availability::Unavailable { reason } = sched.materializer.availability() {
        return Err(error_reply(
            "NotImplementedError",
            &format!(
                "Writing a cluster dump from the scheduler needs the graph materializer's \
                 Python (fsspec), which is unavailable: {reason}; pass a local filename to \
                 write it from the client"
            ),
        ));
    }
    let storage_options = Value::Map(
        msg.as_map()
            .unwrap_or(&[])
            .iter()
            .filter(|(k, _)| !k.as_str().is_some_and(|k| NOT_STORAGE_OPTIONS.contains(&k)))
            .cloned()
            .collect(),
    );
    let state = cluster_state(sched, exclude_of(msg)).await?;
    let request = Value::map([
        ("op", Value::str("write_cluster_dump")),
        ("url", Value::str(url.as_str())),
        ("format", format),
        ("storage_options", storage_options),
        ("state", state),
    ]);
    let reply = sched.helper_request(&request).await?;
    if reply.get("status").and_then(Value::as_str) == Some("ok") {
        tracing::info!("Wrote a cluster dump to {url}");
        return Ok(Value::Nil);
    }
    Err(helper_error(&reply))
}
