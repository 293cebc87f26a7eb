//! RPCs `restart` (`Client.restart`) and `restart_workers`
//! (`Client.restart_workers`), after Python's `Scheduler.restart` and
//! `Scheduler.restart_workers`.
//!
//! A worker with a nanny is restarted by its nanny (`kill`: the nanny starts
//! a fresh worker process, which registers again); a worker without one is
//! closed and removed, for the deployment to start again. With
//! `wait_for_workers`, the call returns once as many workers are connected
//! as before, or fails with `TimeoutError` after `timeout`.

use super::errors::{error_reply, shutting_down};
use super::Scheduler;
use dask_core::restart::RestartTarget;
use dask_wire::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between two looks at the worker count while waiting for workers.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// The options of both RPCs.
struct Options {
    timeout: Duration,
    wait_for_workers: bool,
    raise_on_error: bool,
    stimulus_id: String,
}

fn options(msg: &Value) -> Options {
    // Python's default when absent or unreadable: 30 s
    let timeout = super::coordination::timeout_of("restart", msg)
        .ok()
        .flatten()
        .unwrap_or(Duration::from_secs(30));
    Options {
        timeout,
        wait_for_workers: msg.get("wait_for_workers").is_none_or(Value::truthy),
        raise_on_error: msg.get("on_error").and_then(Value::as_str) != Some("return"),
        stimulus_id: msg
            .get("stimulus_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("restart-{}", super::now()), str::to_string),
    }
}

/// `restart(timeout, wait_for_workers, stimulus_id)`: forget every task,
/// tell the clients, restart every worker.
pub async fn rpc_restart(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let o = options(msg);
    tracing::info!(
        "Restarting workers and releasing all keys (stimulus_id='{}')",
        o.stimulus_id
    );
    sched
        .with_state(|s, now| s.restart_forget_all(now))
        .await
        .ok_or_else(shutting_down)?;
    // coordination waiters holding futures must look again
    sched.coordination_changed.notify_waiters();
    restart_workers(sched, None, &o).await?;
    Ok(Value::Nil)
}

/// `restart_workers(workers, timeout, on_error, stimulus_id)`: restart those
/// workers; `{address: "OK" | "removed" | "timed out"}`.
pub async fn rpc_restart_workers(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let o = options(msg);
    let workers: Vec<String> = match msg.get("workers") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::Nil) | None => Vec::new(),
        Some(_) => {
            return Err(error_reply(
                "TypeError",
                "restart_workers: 'workers' must be a list of addresses",
            ))
        }
    };
    let out = restart_workers(sched, Some(workers), &o).await?;
    Ok(Value::Map(
        out.into_iter()
            .map(|(k, v)| (Value::str(k), Value::str(v)))
            .collect(),
    ))
}

async fn restart_workers(
    sched: &Arc<Scheduler>,
    workers: Option<Vec<String>>,
    o: &Options,
) -> Result<BTreeMap<String, &'static str>, Value> {
    let all = workers.is_none();
    let (targets, n_workers) = sched
        .with_state(move |s, _| (s.restart_targets(workers.as_deref()), s.worker_count()))
        .await
        .ok_or_else(shutting_down)?;
    let addresses: Vec<String> = targets.iter().map(|t| t.address.clone()).collect();
    if all {
        tracing::info!("Restarting all workers (stimulus_id='{}')", o.stimulus_id);
    } else {
        tracing::info!(
            "Restarting {} workers: {addresses:?} (stimulus_id='{}')",
            targets.len(),
            o.stimulus_id
        );
    }
    let (with_nanny, without): (Vec<RestartTarget>, Vec<RestartTarget>) =
        targets.into_iter().partition(|t| t.nanny.is_some());
    let mut out: BTreeMap<String, &'static str> = BTreeMap::new();
    if !without.is_empty() {
        let list: Vec<&str> = without.iter().map(|t| t.address.as_str()).collect();
        tracing::warn!(
            "Workers {list:?} do not use a nanny and will be terminated without restarting them"
        );
        let gone: Vec<String> = without.iter().map(|t| t.address.clone()).collect();
        remove_workers(sched, gone.clone()).await?;
        out.extend(gone.into_iter().map(|a| (a, "removed")));
    }
    let deadline = Instant::now() + o.timeout;
    let kills = with_nanny.iter().map(|t| {
        let nanny = t.nanny.clone().unwrap_or_default();
        let msg = Value::map([
            ("op", Value::str("kill")),
            ("reason", Value::str(o.stimulus_id.clone())),
        ]);
        let rpc = &sched.rpc;
        async move { tokio::time::timeout(o.timeout, rpc.call(&nanny, msg)).await }
    });
    let replies = futures_util::future::join_all(kills).await;
    let mut bad = Vec::new();
    for (t, reply) in with_nanny.iter().zip(replies) {
        match reply {
            Ok(Ok(v)) if v.get("status").and_then(Value::as_str) != Some("uncaught-error") => {
                out.insert(t.address.clone(), "OK");
            }
            _ => {
                bad.push(t.address.clone());
                out.insert(t.address.clone(), "timed out");
            }
        }
    }
    if !bad.is_empty() {
        tracing::error!(
            "Workers {bad:?} did not shut down within {}s; force closing",
            o.timeout.as_secs_f64()
        );
        remove_workers(sched, bad.clone()).await?;
        if o.raise_on_error {
            return Err(error_reply(
                "TimeoutError",
                &format!(
                    "{}/{} nanny worker(s) did not shut down within {}s: {bad:?}",
                    bad.len(),
                    with_nanny.len(),
                    o.timeout.as_secs_f64()
                ),
            ));
        }
    }
    let event = Value::map([
        ("action", Value::str("restart-workers")),
        (
            "workers",
            Value::Array(addresses.iter().cloned().map(Value::str).collect()),
        ),
    ]);
    sched
        .with_state(move |s, now| s.log_event("all", event, now))
        .await;
    if !o.wait_for_workers {
        tracing::info!(
            "Workers restart finished (did not wait for new workers) (stimulus_id='{}')",
            o.stimulus_id
        );
        return Ok(out);
    }
    // The killed workers leave when their streams close; then as many
    // workers as before must be back.
    loop {
        let old = addresses.clone();
        let (count, old_left) = sched
            .with_state(move |s, _| {
                let left = old.iter().filter(|a| s.worker_id(a).is_some()).count();
                (s.worker_count(), left)
            })
            .await
            .ok_or_else(shutting_down)?;
        if old_left == 0 && count >= n_workers {
            tracing::info!("Workers restart finished (stimulus_id='{}')", o.stimulus_id);
            return Ok(out);
        }
        if Instant::now() >= deadline {
            let mut text = format!(
                "Waited for {} worker(s) to reconnect after restarting but, after {}s, {} have \
                 not returned. Consider a longer timeout, or `wait_for_workers=False`.",
                addresses.len(),
                o.timeout.as_secs_f64(),
                n_workers.saturating_sub(count).max(old_left)
            );
            if !without.is_empty() {
                text.push_str(&format!(
                    " The {} worker(s) not using Nannies were just shut down instead of \
                     restarted (restart is only possible with Nannies). If your deployment \
                     system does not automatically re-launch terminated processes, then those \
                     workers will never come back, and `Client.restart` will always time out. \
                     Do not use `Client.restart` in that case.",
                    without.len()
                ));
            }
            return Err(error_reply("TimeoutError", &text));
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

async fn remove_workers(sched: &Arc<Scheduler>, addresses: Vec<String>) -> Result<(), Value> {
    sched
        .with_state(move |s, now| {
            for a in &addresses {
                s.close_and_remove_worker(a, now);
            }
        })
        .await
        .ok_or_else(shutting_down)
}
