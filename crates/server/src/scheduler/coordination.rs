//! RPCs of the coordination extensions: `publish_*`, `variable_*`,
//! `event_*` (the state is in [`dask_core::coordination`]).
//!
//! Why here: these calls wait (for the client's stream to catch up, for a
//! variable to be set, for an event), and waiting belongs to the I/O side.
//! A waiter asks the state again whenever [`Scheduler::coordination_changed`]
//! is notified (after every `variable_set` and `event_set`) or its deadline
//! passes; the notification is armed before each check, so none is missed.

use super::errors::error_reply;
use super::Scheduler;
use dask_core::timedelta::parse_seconds;
use dask_wire::{Key, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The RPC ops this module answers.
pub const OPS: &[&str] = &[
    "publish_put",
    "publish_get",
    "publish_delete",
    "publish_list",
    "variable_set",
    "variable_get",
    "event_wait",
    "event_set",
    "event_clear",
    "event_is_set",
];

/// How long `publish_put`/`publish_delete` wait for the client's
/// `publish_flush_batched_send` before checking that the client is still
/// connected (Python: 30 s, then again while it is).
const FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// Between two looks at the state while waiting for something that no
/// notification announces (a flush, a future's key arriving with its graph).
const POLL: Duration = Duration::from_millis(5);

fn lost() -> Value {
    error_reply("RuntimeError", "scheduler is shutting down")
}

fn type_error(message: String) -> Value {
    error_reply("TypeError", &message)
}

fn name_of(op: &str, msg: &Value, field: &str) -> Result<Key, Value> {
    dask_core::ops_client::key_of(op, msg, field).map_err(|e| type_error(e.to_string()))
}

fn names_of(op: &str, msg: &Value) -> Result<Vec<Key>, Value> {
    match msg.get("names") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| Key::from_value(v).map_err(|e| type_error(format!("{op}: {e}"))))
            .collect(),
        _ => Err(type_error(format!("{op}: 'names' must be a list"))),
    }
}

/// A timeout field: nil (wait forever), seconds, or a Dask time string.
fn timeout_of(op: &str, msg: &Value) -> Result<Option<Duration>, Value> {
    let secs = match msg.get("timeout") {
        None | Some(Value::Nil) => return Ok(None),
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Float(f)) => *f,
        Some(Value::Str(s)) => parse_seconds(s)
            .ok_or_else(|| type_error(format!("{op}: cannot parse timeout {s:?}")))?,
        Some(other) => return Err(type_error(format!("{op}: bad timeout {other}"))),
    };
    Ok(Some(Duration::from_secs_f64(secs.max(0.0))))
}

/// Answer `op`.
pub async fn handle(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    match op {
        "publish_put" => publish_put(sched, msg).await,
        "publish_delete" => {
            let names = names_of(op, msg)?;
            wait_for_flush(sched, msg).await?;
            sched
                .with_state(move |s, _| s.publish_delete(&names))
                .await
                .ok_or_else(lost)?;
            Ok(Value::Nil)
        }
        "publish_get" => {
            let names = names_of(op, msg)?;
            sched
                .with_state(move |s, _| s.publish_get(&names))
                .await
                .ok_or_else(lost)
        }
        "publish_list" => sched
            .with_state(|s, _| s.publish_list())
            .await
            .ok_or_else(lost),
        "variable_set" => variable_set(sched, msg).await,
        "variable_get" => variable_get(sched, msg).await,
        "event_wait" => event_wait(sched, msg).await,
        "event_set" => {
            let name = name_of(op, msg, "name")?;
            sched
                .with_state(move |s, _| s.event_set(name))
                .await
                .ok_or_else(lost)?;
            sched.coordination_changed.notify_waiters();
            Ok(Value::Nil)
        }
        "event_clear" => {
            let name = name_of(op, msg, "name")?;
            sched
                .with_state(move |s, _| s.event_clear(&name))
                .await
                .ok_or_else(lost)?;
            Ok(Value::Nil)
        }
        "event_is_set" => {
            let name = name_of(op, msg, "name")?;
            let set = sched
                .with_state(move |s, _| s.event_is_set(&name))
                .await
                .ok_or_else(lost)?;
            Ok(Value::Bool(set))
        }
        other => Err(error_reply(
            "NotImplementedError",
            &format!("no coordination operation '{other}'"),
        )),
    }
}

/// Wait until the client's stream has delivered the
/// `publish_flush_batched_send` with this call's `uid` (so a collection it
/// persisted just before publishing is known here), as Python does.
async fn wait_for_flush(sched: &Arc<Scheduler>, msg: &Value) -> Result<(), Value> {
    let Some(uid) = msg.get("uid").and_then(Value::as_str).map(str::to_string) else {
        return Ok(());
    };
    let client = msg
        .get("client")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut patience = Instant::now() + FLUSH_PATIENCE;
    loop {
        let uid = uid.clone();
        let client = client.clone();
        let (flushed, connected) = sched
            .with_state(move |s, _| {
                let connected = client.as_deref().is_some_and(|c| s.client_id(c).is_some());
                (s.take_publish_flush(&uid), connected)
            })
            .await
            .ok_or_else(lost)?;
        if flushed {
            return Ok(());
        }
        if Instant::now() >= patience {
            if !connected {
                return Err(error_reply(
                    "TimeoutError",
                    "the client's stream did not catch up with its publish call, and the client is gone",
                ));
            }
            patience = Instant::now() + FLUSH_PATIENCE;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn publish_put(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let op = "publish_put";
    let names = names_of(op, msg)?;
    let keys: Vec<Vec<Key>> = match msg.get("keys") {
        Some(Value::Array(lists)) => lists
            .iter()
            .map(|l| match l {
                Value::Array(ks) => ks
                    .iter()
                    .map(|k| Key::from_value(k).map_err(|e| type_error(format!("{op}: {e}"))))
                    .collect(),
                _ => Err(type_error(format!("{op}: 'keys' must be a list of lists"))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(type_error(format!("{op}: 'keys' must be a list"))),
    };
    let data = match msg.get("data") {
        Some(Value::Array(items)) => items.clone(),
        _ => return Err(type_error(format!("{op}: 'data' must be a list"))),
    };
    if names.len() != keys.len() || names.len() != data.len() {
        return Err(error_reply(
            "ValueError",
            "publish_put: 'names', 'keys' and 'data' differ in length",
        ));
    }
    let override_existing = msg.get("override").is_some_and(Value::truthy);
    wait_for_flush(sched, msg).await?;
    let entries: Vec<(Key, Vec<Key>, Value)> = names
        .into_iter()
        .zip(keys)
        .zip(data)
        .map(|((n, k), d)| (n, k, d))
        .collect();
    sched
        .with_state(move |s, _| s.publish_put(entries, override_existing))
        .await
        .ok_or_else(lost)?
        .map_err(|m| error_reply("KeyError", &m))?;
    Ok(Value::Nil)
}

async fn variable_set(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let op = "variable_set";
    let name = name_of(op, msg, "name")?;
    let deadline = timeout_of(op, msg)?.map(|t| Instant::now() + t);
    match msg.get("key") {
        Some(k) if !matches!(k, Value::Nil) => {
            let key = Key::from_value(k).map_err(|e| type_error(format!("{op}: {e}")))?;
            // The future's graph may still be on its way through the
            // client's stream: wait for its key, as Python does.
            loop {
                let (n, k) = (name.clone(), key.clone());
                let set = sched
                    .with_state(move |s, _| s.variable_set_future(n, k))
                    .await
                    .ok_or_else(lost)?;
                if set {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(error_reply(
                        "TimeoutError",
                        &format!(
                            "Task {} unknown to scheduler.",
                            dask_core::coordination::python_str(&key.decoded())
                        ),
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        _ => {
            let data = msg.get("data").cloned().unwrap_or(Value::Nil);
            sched
                .with_state(move |s, _| s.variable_set_data(name, data))
                .await
                .ok_or_else(lost)?;
        }
    }
    sched.coordination_changed.notify_waiters();
    Ok(Value::Nil)
}

/// Wait for `changed` or until `deadline`; false when the deadline passed.
async fn wait_changed(
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    deadline: Option<Instant>,
) -> bool {
    match deadline {
        None => {
            notified.await;
            true
        }
        Some(d) => tokio::time::timeout_at(d.into(), notified).await.is_ok(),
    }
}

async fn variable_get(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let op = "variable_get";
    let name = name_of(op, msg, "name")?;
    let deadline = timeout_of(op, msg)?.map(|t| Instant::now() + t);
    loop {
        let notified = sched.coordination_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let n = name.clone();
        if let Some(record) = sched
            .with_state(move |s, _| s.variable_get(&n))
            .await
            .ok_or_else(lost)?
        {
            return Ok(record);
        }
        if !wait_changed(notified, deadline).await {
            return Err(error_reply(
                "TimeoutError",
                &format!(
                    "Variable {} was not set in time",
                    dask_core::coordination::python_str(&name.decoded())
                ),
            ));
        }
    }
}

async fn event_wait(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let op = "event_wait";
    let name = name_of(op, msg, "name")?;
    let deadline = timeout_of(op, msg)?.map(|t| Instant::now() + t);
    let n = name.clone();
    let ticket = sched
        .with_state(move |s, _| s.event_wait_begin(n))
        .await
        .ok_or_else(lost)?;
    let result = loop {
        let notified = sched.coordination_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let n = name.clone();
        let done = sched
            .with_state(move |s, _| s.event_wait_done(&n, ticket))
            .await
            .ok_or_else(lost)?;
        if done {
            break true;
        }
        if !wait_changed(notified, deadline).await {
            break false;
        }
    };
    sched
        .with_state(move |s, _| s.event_wait_end(&name))
        .await
        .ok_or_else(lost)?;
    Ok(Value::Bool(result))
}
