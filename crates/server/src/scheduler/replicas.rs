//! The `replicate` and `rebalance` RPCs (`Client.replicate`,
//! `Client.rebalance`): the core plans which worker copies or drops which
//! key ([`dask_core::replicas`]); here the copies are made with the
//! recipient's `gather` RPC (it fetches from the holders itself) and the
//! drops with the holder's `free_keys` RPC, as `Scheduler.gather_on_worker`
//! and `Scheduler.delete_worker_data` do, and the outcome is recorded.
//!
//! One replicate or rebalance runs at a time (Python's `_replica_lock`).

use super::errors::{error_reply, shutting_down};
use super::retire::{opt_i64, str_list};
use super::rpc::{keys_opt, keys_req};
use super::Scheduler;
use dask_core::replicas::{Move, RebalancePlan, ReplicaError, ReplicateStart, WorkerBatch};
use dask_wire::{Key, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rounds in a row that may add no replica before `replicate` gives up
/// (a recipient or holder that keeps failing; Python would loop forever).
const STALLED_ROUNDS: usize = 3;

fn planning_error(e: ReplicaError) -> Value {
    error_reply(e.exception_type(), &e.to_string())
}

fn keys_value(keys: &[Key]) -> Value {
    Value::Array(keys.iter().map(Key::to_value).collect())
}

/// RPC `replicate(keys, n=None, workers=None, branching_factor=2,
/// delete=True)`: returns nothing (Python's `None`) once every key has `n`
/// copies on the chosen running workers, `{"status": "partial-fail",
/// "keys": [...]}` for keys in memory nowhere.
pub async fn rpc_replicate(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let keys = keys_req("replicate", msg, "keys")?;
    let n = opt_i64(msg, "n")?;
    let workers = str_list(msg, "workers")?;
    let branching_factor = opt_i64(msg, "branching_factor")?.unwrap_or(2);
    if branching_factor <= 0 {
        return Err(error_reply(
            "ValueError",
            &format!("branching_factor must be positive, got {branching_factor}"),
        ));
    }
    let delete = msg.get("delete").is_none_or(|d| d.is_nil() || d.truthy());
    let stimulus_id = stimulus(msg, "replicate");
    let _one_at_a_time = sched.replica_lock.lock().await;
    let n_keys = keys.len();
    let start = sched
        .with_state(move |s, _| {
            s.replicate_start(
                &keys,
                n,
                workers.as_deref(),
                branching_factor as usize,
                delete,
            )
        })
        .await
        .ok_or_else(shutting_down)?
        .map_err(planning_error)?;
    let (mut replication, drops) = match start {
        ReplicateStart::Missing(keys) => return Ok(partial_fail(&keys)),
        ReplicateStart::Started { replication, drops } => (replication, drops),
    };
    drop_replicas(sched, drops, &stimulus_id).await;
    let mut stalled = 0;
    loop {
        let (plan, r) = sched
            .with_state(move |s, _| {
                let plan = s.replicate_round(&mut replication);
                (plan, replication)
            })
            .await
            .ok_or_else(shutting_down)?;
        replication = r;
        if plan.is_empty() {
            break;
        }
        let added = copy_replicas(sched, plan, "replicate-add").await;
        stalled = if added == 0 { stalled + 1 } else { 0 };
        if stalled >= STALLED_ROUNDS {
            let pending: Vec<String> = replication.pending().iter().map(Key::to_string).collect();
            return Err(error_reply(
                "RuntimeError",
                &format!(
                    "replicate: no copy succeeded in {STALLED_ROUNDS} rounds; keys still short \
                     of their replicas: {pending:?} (see the scheduler log for the workers' errors)"
                ),
            ));
        }
    }
    let workers = Value::Array(replication.workers().iter().map(Value::str).collect());
    let event = Value::map([
        ("action", Value::str("replicate")),
        ("workers", workers),
        ("key-count", Value::Int(n_keys as i64)),
        ("branching-factor", Value::Int(branching_factor)),
    ]);
    log_events(sched, vec![("all".to_string(), event)]).await;
    Ok(Value::Nil)
}

/// RPC `rebalance(keys=None, workers=None)`: `{"status": "OK"}`, or
/// `{"status": "partial-fail", "keys": [...]}` for requested keys that are
/// in memory nowhere or could not be moved.
pub async fn rpc_rebalance(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let keys = keys_opt("rebalance", msg, "keys")?;
    let workers = str_list(msg, "workers")?;
    let stimulus_id = stimulus(msg, "rebalance");
    let keys_given = keys.is_some();
    let _one_at_a_time = sched.replica_lock.lock().await;
    let plan = sched
        .with_state(move |s, _| s.rebalance_plan(keys.as_deref(), workers.as_deref()))
        .await
        .ok_or_else(shutting_down)?
        .map_err(planning_error)?;
    let (moves, senders, recipients) = match plan {
        RebalancePlan::Missing(keys) => return Ok(partial_fail(&keys)),
        RebalancePlan::Moves {
            moves,
            senders,
            recipients,
        } => (moves, senders, recipients),
    };
    if moves.is_empty() {
        log_rebalance(
            sched,
            Value::Int(senders as i64),
            Value::Int(recipients as i64),
            0,
        )
        .await;
        return Ok(ok());
    }
    let failed = move_replicas(sched, &moves, &stimulus_id).await;
    if keys_given && !failed.is_empty() {
        // Python reports failed keys only when the client named the keys
        return Ok(partial_fail(&failed));
    }
    Ok(ok())
}

/// Copy each move's key to its recipient, then drop it from the sender
/// where the copy succeeded. Returns the keys that could not be copied.
async fn move_replicas(sched: &Arc<Scheduler>, moves: &[Move], stimulus_id: &str) -> Vec<Key> {
    let mut to_recipients: BTreeMap<&str, BTreeMap<&Key, Vec<String>>> = BTreeMap::new();
    for m in moves {
        to_recipients
            .entry(&m.recipient)
            .or_default()
            .entry(&m.key)
            .or_default()
            .push(m.sender.clone());
    }
    let batches: Vec<WorkerBatch> = to_recipients
        .iter()
        .map(|(r, who_has)| {
            let items = who_has
                .iter()
                .map(|(k, s)| ((*k).clone(), s.clone()))
                .collect();
            (r.to_string(), items)
        })
        .collect();
    let failed_by_recipient = gather_all(sched, batches.clone()).await;
    let mut to_senders: BTreeMap<&str, Vec<Key>> = BTreeMap::new();
    let mut failed = Vec::new();
    for m in moves {
        if failed_by_recipient
            .get(m.recipient.as_str())
            .is_some_and(|f| f.contains(&m.key))
        {
            failed.push(m.key.clone());
        } else {
            to_senders.entry(&m.sender).or_default().push(m.key.clone());
        }
    }
    let senders_count = Value::Map(
        to_senders
            .iter()
            .map(|(s, k)| (Value::str(*s), Value::Int(k.len() as i64)))
            .collect(),
    );
    let drops: Vec<WorkerBatch> = to_senders
        .into_iter()
        .map(|(s, keys)| {
            (
                s.to_string(),
                keys.into_iter().map(|k| (k, Vec::new())).collect(),
            )
        })
        .collect();
    drop_replicas(sched, drops, stimulus_id).await;
    let recipients_count = Value::Map(
        batches
            .iter()
            .map(|(r, items)| (Value::str(r.as_str()), Value::Int(items.len() as i64)))
            .collect(),
    );
    log_events(sched, who_has_events(&batches, "rebalance")).await;
    log_rebalance(sched, senders_count, recipients_count, moves.len()).await;
    failed.sort();
    failed.dedup();
    failed
}

async fn log_rebalance(sched: &Arc<Scheduler>, senders: Value, recipients: Value, moved: usize) {
    let event = Value::map([
        ("action", Value::str("rebalance")),
        ("senders", senders),
        ("recipients", recipients),
        ("moved_keys", Value::Int(moved as i64)),
    ]);
    log_events(sched, vec![("all".to_string(), event)]).await;
}

/// Log each `(topic, event)` (`get_events`).
async fn log_events(sched: &Arc<Scheduler>, events: Vec<(String, Value)>) {
    sched
        .with_state(move |s, now| {
            for (topic, event) in events {
                s.log_event(&topic, event, now);
            }
        })
        .await;
}

/// `{"action": action, "who_has": {key: [holders]}}` on each recipient's topic.
fn who_has_events(batches: &[WorkerBatch], action: &str) -> Vec<(String, Value)> {
    batches
        .iter()
        .map(|(r, items)| {
            let event = Value::map([
                ("action", Value::str(action)),
                ("who_has", who_has_value(items)),
            ]);
            (r.clone(), event)
        })
        .collect()
}

/// Run the copies of one `replicate` round; log them on each recipient's
/// topic as `action`. Returns the number of new replicas.
async fn copy_replicas(sched: &Arc<Scheduler>, plan: Vec<WorkerBatch>, action: &str) -> usize {
    let events = who_has_events(&plan, action);
    let before = plan.iter().map(|(_, items)| items.len()).sum::<usize>();
    let failed = gather_all(sched, plan).await;
    log_events(sched, events).await;
    before - failed.values().map(Vec::len).sum::<usize>()
}

/// `gather` on every recipient at once; the replicas that arrived are
/// recorded. Returns the failed keys per recipient.
async fn gather_all(
    sched: &Arc<Scheduler>,
    batches: Vec<WorkerBatch>,
) -> BTreeMap<String, Vec<Key>> {
    let mut calls = tokio::task::JoinSet::new();
    for (addr, items) in batches {
        let sched = sched.clone();
        calls.spawn(async move {
            let failed = gather_on_worker(&sched, &addr, &items).await;
            (addr, failed)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok((addr, failed)) = joined {
            out.insert(addr, failed);
        }
    }
    out
}

/// Ask the worker at `addr` to fetch `items` from their holders (its
/// `gather` RPC); record the replicas it got. Returns the keys it failed to
/// get (all of them if it could not be reached).
async fn gather_on_worker(
    sched: &Arc<Scheduler>,
    addr: &str,
    items: &[(Key, Vec<String>)],
) -> Vec<Key> {
    let all: Vec<Key> = items.iter().map(|(k, _)| k.clone()).collect();
    let request = Value::map([
        ("op", Value::str("gather")),
        ("who_has", who_has_value(items)),
    ]);
    let reply = match sched.rpc.call(addr, request).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!("Communication with worker {addr} failed during replication: {e}");
            return all;
        }
    };
    let failed: Vec<Key> = match reply.get("status").and_then(Value::as_str) {
        Some("OK") => Vec::new(),
        Some("partial-fail") => {
            let failed: Vec<Key> = reply
                .get("keys")
                .and_then(Value::as_seq)
                .map(|ks| ks.iter().filter_map(|k| Key::from_value(k).ok()).collect())
                .unwrap_or_default();
            tracing::warn!("Worker {addr} failed to acquire keys: {failed:?}");
            failed
        }
        _ => {
            tracing::warn!("Unexpected reply from {addr} to gather: {reply}");
            return all;
        }
    };
    let ok: Vec<Key> = all.into_iter().filter(|k| !failed.contains(k)).collect();
    let addr_owned = addr.to_string();
    let recorded = sched
        .with_state(move |s, now| s.replicas_copied(&addr_owned, &ok, now))
        .await;
    if recorded.is_none() {
        tracing::warn!("Worker {addr} lost during replication");
    }
    failed
}

/// Tell each worker to drop its batch of keys (its `free_keys` RPC), at
/// once, and record the replicas dropped.
async fn drop_replicas(sched: &Arc<Scheduler>, drops: Vec<WorkerBatch>, stimulus_id: &str) {
    let mut calls = tokio::task::JoinSet::new();
    for (addr, items) in drops {
        let sched = sched.clone();
        let stimulus_id = stimulus_id.to_string();
        calls.spawn(async move {
            let keys: Vec<Key> = items.into_iter().map(|(k, _)| k).collect();
            let request = Value::map([
                ("op", Value::str("free_keys")),
                ("keys", keys_value(&keys)),
                ("stimulus_id", Value::str(stimulus_id)),
            ]);
            match sched.rpc.call(&addr, request).await {
                Ok(_) => {
                    sched
                        .with_state(move |s, now| s.replicas_dropped(&addr, &keys, now))
                        .await;
                }
                Err(e) => tracing::warn!(
                    "Communication with worker {addr} failed during replication: {e}"
                ),
            }
        });
    }
    while calls.join_next().await.is_some() {}
}

/// `{key: [holder addresses]}` as the worker's `gather` takes it.
fn who_has_value(items: &[(Key, Vec<String>)]) -> Value {
    Value::Map(
        items
            .iter()
            .map(|(k, holders)| {
                (
                    k.to_value(),
                    Value::Array(holders.iter().map(Value::str).collect()),
                )
            })
            .collect(),
    )
}

fn partial_fail(keys: &[Key]) -> Value {
    Value::map([
        ("status", Value::str("partial-fail")),
        ("keys", keys_value(keys)),
    ])
}

fn ok() -> Value {
    Value::map([("status", Value::str("OK"))])
}

fn stimulus(msg: &Value, what: &str) -> String {
    msg.get("stimulus_id")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{what}-{}", super::now()), str::to_string)
}
