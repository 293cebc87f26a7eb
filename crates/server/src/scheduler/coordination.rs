//! RPCs of the coordination extensions: `publish_*`, `variable_*`,
//! `event_*`, `semaphore_*` (also `distributed.Lock`), `queue_*` and
//! `multi_lock_*` (the state is in [`dask_core::coordination`],
//! [`dask_core::semaphores`], [`dask_core::queues`] and
//! [`dask_core::multilock`]).
//!
//! Why here: these calls wait (for the client's stream to catch up, for a
//! variable to be set, for an event), and waiting belongs to the I/O side.
//! A waiter asks the state again whenever [`Scheduler::coordination_changed`]
//! is notified (after every change a waiter may be waiting for) or its
//! deadline passes; the notification is armed before each check, so none is
//! missed. Semaphore waiters also look again every second: leases that time
//! out are taken back by the event loop's tick, which notifies nobody.

use super::errors::{error_reply, shutting_down};
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
    "semaphore_register",
    "semaphore_acquire",
    "semaphore_release",
    "semaphore_refresh_leases",
    "semaphore_value",
    "semaphore_close",
    "queue_create",
    "queue_put",
    "queue_get",
    "queue_qsize",
    "multi_lock_acquire",
    "multi_lock_release",
];

/// Longest a semaphore waiter sleeps without looking again (leases that
/// time out free a slot without a notification).
const LEASE_RECHECK: Duration = Duration::from_secs(1);

/// How long `publish_put`/`publish_delete` wait for the client's
/// `publish_flush_batched_send` before checking that the client is still
/// connected (Python: 30 s, then again while it is).
const FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// Between two looks at the state while waiting for something that no
/// notification announces (a flush, a future's key arriving with its graph).
const POLL: Duration = Duration::from_millis(5);

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
pub(super) fn timeout_of(op: &str, msg: &Value) -> Result<Option<Duration>, Value> {
    let secs = match msg.get("timeout") {
        None | Some(Value::Nil) => return Ok(None),
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Float(f)) => *f,
        Some(Value::Str(s)) => parse_seconds(s)
            .ok_or_else(|| type_error(format!("{op}: cannot parse timeout {s:?}")))?,
        Some(other) => return Err(type_error(format!("{op}: bad timeout {other}"))),
    };
    Ok(Some(seconds(secs)))
}

/// A timeout in seconds as a `Duration`, whatever the number: negative or
/// NaN is zero, anything past ~31 years (infinity included) is ~31 years.
pub(crate) fn seconds(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(secs.min(1e9))
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
                .ok_or_else(shutting_down)?;
            Ok(Value::Nil)
        }
        "publish_get" => {
            let names = names_of(op, msg)?;
            sched
                .with_state(move |s, _| s.publish_get(&names))
                .await
                .ok_or_else(shutting_down)
        }
        "publish_list" => sched
            .with_state(|s, _| s.publish_list())
            .await
            .ok_or_else(shutting_down),
        "variable_set" => variable_set(sched, msg).await,
        "variable_get" => variable_get(sched, msg).await,
        "event_wait" => event_wait(sched, msg).await,
        "event_set" => {
            let name = name_of(op, msg, "name")?;
            sched
                .with_state(move |s, _| s.event_set(name))
                .await
                .ok_or_else(shutting_down)?;
            sched.coordination_changed.notify_waiters();
            Ok(Value::Nil)
        }
        "event_clear" => {
            let name = name_of(op, msg, "name")?;
            sched
                .with_state(move |s, _| s.event_clear(&name))
                .await
                .ok_or_else(shutting_down)?;
            Ok(Value::Nil)
        }
        "event_is_set" => {
            let name = name_of(op, msg, "name")?;
            let set = sched
                .with_state(move |s, _| s.event_is_set(&name))
                .await
                .ok_or_else(shutting_down)?;
            Ok(Value::Bool(set))
        }
        op if op.starts_with("semaphore_") => semaphore(sched, op, msg).await,
        op if op.starts_with("queue_") => queue(sched, op, msg).await,
        "multi_lock_acquire" => multi_lock_acquire(sched, msg).await,
        "multi_lock_release" => {
            let id = str_field(op, msg, "id")?;
            let known = sched
                .with_state(move |s, _| s.multi_lock_release(&id))
                .await
                .ok_or_else(shutting_down)?;
            if !known {
                return Err(error_reply("KeyError", "this MultiLock holds no locks"));
            }
            sched.coordination_changed.notify_waiters();
            Ok(Value::Nil)
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
            .ok_or_else(shutting_down)?;
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
        .ok_or_else(shutting_down)?
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
            let n = name.clone();
            until_key_known(sched, &key, deadline, move |s, k| {
                s.variable_set_future(n.clone(), k.clone())
            })
            .await?;
        }
        _ => {
            let data = msg.get("data").cloned().unwrap_or(Value::Nil);
            sched
                .with_state(move |s, _| s.variable_set_data(name, data))
                .await
                .ok_or_else(shutting_down)?;
        }
    }
    sched.coordination_changed.notify_waiters();
    Ok(Value::Nil)
}

/// Run `attempt` on the state with `key` until it succeeds: a future
/// named by a `variable_set` or `queue_put` may still be on its way through
/// the client's stream, so its key is waited for, as Python does, until
/// `deadline` (`TimeoutError: Task <key> unknown to scheduler.`).
async fn until_key_known<F>(
    sched: &Arc<Scheduler>,
    key: &Key,
    deadline: Option<Instant>,
    attempt: F,
) -> Result<(), Value>
where
    F: Fn(&mut dask_core::State, &Key) -> bool + Clone + Send + 'static,
{
    loop {
        let (f, k) = (attempt.clone(), key.clone());
        if sched
            .with_state(move |s, _| f(s, &k))
            .await
            .ok_or_else(shutting_down)?
        {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(error_reply(
                "TimeoutError",
                &format!(
                    "Task {} unknown to scheduler.",
                    dask_core::coordination::key_label(key)
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
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
            .ok_or_else(shutting_down)?
        {
            return Ok(record);
        }
        if !wait_changed(notified, deadline).await {
            return Err(error_reply(
                "TimeoutError",
                &format!(
                    "Variable {} was not set in time",
                    dask_core::coordination::key_label(&name)
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
        .ok_or_else(shutting_down)?;
    let result = loop {
        let notified = sched.coordination_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let n = name.clone();
        let done = sched
            .with_state(move |s, _| s.event_wait_done(&n, ticket))
            .await
            .ok_or_else(shutting_down)?;
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
        .ok_or_else(shutting_down)?;
    Ok(Value::Bool(result))
}

fn str_field(op: &str, msg: &Value, field: &str) -> Result<String, Value> {
    match msg.get(field) {
        Some(Value::Str(s)) => Ok(s.to_string()),
        Some(Value::Nil) | None => Err(type_error(format!("{op}: missing '{field}'"))),
        Some(other) => Ok(other.to_string()),
    }
}

/// A list of ids or names in `msg[field]` (non-strings as their text).
fn str_list(op: &str, msg: &Value, field: &str) -> Result<Vec<String>, Value> {
    match msg.get(field) {
        Some(Value::Array(items)) => Ok(items
            .iter()
            .map(|v| match v {
                Value::Str(s) => s.to_string(),
                other => other.to_string(),
            })
            .collect()),
        _ => Err(type_error(format!("{op}: '{field}' must be a list"))),
    }
}

async fn semaphore(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    let name = name_of(op, msg, "name")?;
    match op {
        "semaphore_register" => {
            let max_leases = msg
                .get("max_leases")
                .and_then(Value::as_i64)
                .ok_or_else(|| type_error(format!("{op}: 'max_leases' must be an integer")))?;
            let lease_timeout = match msg.get("lease_timeout") {
                None | Some(Value::Nil) => None,
                Some(Value::Int(i)) => Some(*i as f64),
                Some(Value::Float(f)) => Some(*f),
                Some(Value::Str(s)) => parse_seconds(s),
                Some(_) => None,
            }
            .filter(|t| t.is_finite());
            sched
                .with_state(move |s, _| s.semaphore_register(name, max_leases, lease_timeout))
                .await
                .ok_or_else(shutting_down)?
                .map_err(|m| error_reply("ValueError", &m))?;
            Ok(Value::Nil)
        }
        "semaphore_acquire" => {
            let lease_id = str_field(op, msg, "lease_id")?;
            let started = Instant::now();
            let deadline = timeout_of(op, msg)?.map(|t| started + t);
            let n = name.clone();
            sched
                .with_state(move |s, _| s.semaphore_acquire_begin(&n))
                .await
                .ok_or_else(shutting_down)?;
            let outcome = acquire_lease(sched, &name, &lease_id, deadline).await;
            let waited = started.elapsed().as_secs_f64();
            sched
                .with_state(move |s, _| s.semaphore_acquire_end(&name, waited))
                .await;
            outcome.map(Value::Bool)
        }
        "semaphore_release" => {
            let lease_id = str_field(op, msg, "lease_id")?;
            let label = dask_core::coordination::key_label(&name);
            let (n, id) = (name, lease_id.clone());
            let outcome = sched
                .with_state(move |s, _| s.semaphore_release(&n, &id))
                .await
                .ok_or_else(shutting_down)?;
            match outcome {
                dask_core::semaphores::Release::Released => {
                    sched.coordination_changed.notify_waiters();
                }
                dask_core::semaphores::Release::UnknownSemaphore => tracing::warn!(
                    "Tried to release Lock or Semaphore `{label}` but it is not known."
                ),
                dask_core::semaphores::Release::NotHeld => tracing::warn!(
                    "Tried to release Lock or Semaphore but it was already released: \
                     name={label}, lease_id={lease_id}. This can happen if the Lock or \
                     Semaphore timed out before."
                ),
            }
            Ok(Value::Nil)
        }
        "semaphore_refresh_leases" => {
            let ids = str_list(op, msg, "lease_ids")?;
            let label = dask_core::coordination::key_label(&name);
            let unknown = sched
                .with_state(move |s, now| s.semaphore_refresh_leases(&name, &ids, now))
                .await
                .ok_or_else(shutting_down)?;
            for id in unknown {
                tracing::error!(
                    "Refreshing an unknown lease ID {id} for {label}. This might be due to \
                     leases timing out and may cause overbooking of the semaphore!This is \
                     often caused by long-running GIL-holding in the task which acquired the \
                     lease."
                );
            }
            Ok(Value::Nil)
        }
        "semaphore_value" => {
            let n = sched
                .with_state(move |s, _| s.semaphore_value(&name))
                .await
                .ok_or_else(shutting_down)?;
            Ok(Value::from(n))
        }
        _ => {
            // semaphore_close
            let label = dask_core::coordination::key_label(&name);
            let held = sched
                .with_state(move |s, _| s.semaphore_close(&name))
                .await
                .ok_or_else(shutting_down)?;
            if !held.is_empty() {
                tracing::warn!(
                    "Closing semaphore {label} but there remain unreleased leases {held:?}"
                );
            }
            sched.coordination_changed.notify_waiters();
            Ok(Value::Nil)
        }
    }
}

/// Try to get a lease for `lease_id` until `deadline`, trying again after
/// every release (and every [`LEASE_RECHECK`], for leases that time out).
async fn acquire_lease(
    sched: &Arc<Scheduler>,
    name: &Key,
    lease_id: &str,
    deadline: Option<Instant>,
) -> Result<bool, Value> {
    loop {
        let notified = sched.coordination_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (n, id) = (name.clone(), lease_id.to_string());
        let got = sched
            .with_state(move |s, now| s.semaphore_try_acquire(&n, &id, now))
            .await
            .ok_or_else(shutting_down)?
            .map_err(|m| error_reply("RuntimeError", &m))?;
        if got {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        let recheck = Instant::now() + LEASE_RECHECK;
        let until = deadline.map_or(recheck, |d| d.min(recheck));
        let _ = tokio::time::timeout_at(until.into(), notified).await;
    }
}

async fn queue(sched: &Arc<Scheduler>, op: &str, msg: &Value) -> Result<Value, Value> {
    use dask_core::queues::QueueItem;
    let name = name_of(op, msg, "name")?;
    let key_error = |m: String| error_reply("KeyError", &m);
    match op {
        "queue_create" => {
            let maxsize = msg
                .get("maxsize")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(0) as usize;
            sched
                .with_state(move |s, _| s.queue_create(name, maxsize))
                .await
                .ok_or_else(shutting_down)?;
            Ok(Value::Nil)
        }
        "queue_qsize" => {
            let n = sched
                .with_state(move |s, _| s.queue_qsize(&name))
                .await
                .ok_or_else(shutting_down)?
                .map_err(key_error)?;
            Ok(Value::from(n))
        }
        "queue_put" => {
            let deadline = timeout_of(op, msg)?.map(|t| Instant::now() + t);
            let timed_out = || error_reply("TimeoutError", "queue_put timed out");
            let item = match msg.get("key") {
                Some(k) if !matches!(k, Value::Nil) => {
                    let key = Key::from_value(k).map_err(|e| type_error(format!("{op}: {e}")))?;
                    until_key_known(sched, &key, deadline, |s, k| s.task_id(k).is_some()).await?;
                    QueueItem::Future(key)
                }
                _ => QueueItem::Data(msg.get("data").cloned().unwrap_or(Value::Nil)),
            };
            loop {
                let notified = sched.coordination_changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (n, i) = (name.clone(), item.clone());
                let put = sched
                    .with_state(move |s, _| s.queue_try_put(&n, i))
                    .await
                    .ok_or_else(shutting_down)?
                    .map_err(key_error)?;
                if put {
                    sched.coordination_changed.notify_waiters();
                    return Ok(Value::Nil);
                }
                if !wait_changed(notified, deadline).await {
                    return Err(timed_out());
                }
            }
        }
        _ => {
            // queue_get
            let deadline = timeout_of(op, msg)?.map(|t| Instant::now() + t);
            let batch = msg.get("batch").cloned().unwrap_or(Value::Bool(false));
            match batch {
                Value::Bool(true) => {
                    let items = sched
                        .with_state(move |s, _| s.queue_get_all(&name))
                        .await
                        .ok_or_else(shutting_down)?
                        .map_err(key_error)?;
                    sched.coordination_changed.notify_waiters();
                    Ok(Value::Array(items))
                }
                // `if batch:` in Python: 0 and False get one item
                Value::Int(n) if n != 0 => {
                    if deadline.is_some() {
                        return Err(error_reply(
                            "NotImplementedError",
                            "Dask queues don't support simultaneous use of integer batch sizes \
                             and timeouts",
                        ));
                    }
                    let mut out = Vec::new();
                    for _ in 0..n.max(0) {
                        out.push(queue_get_one(sched, &name, None).await?);
                    }
                    Ok(Value::Array(out))
                }
                _ => queue_get_one(sched, &name, deadline).await,
            }
        }
    }
}

/// Wait for the next item of queue `name` (until `deadline`).
async fn queue_get_one(
    sched: &Arc<Scheduler>,
    name: &Key,
    deadline: Option<Instant>,
) -> Result<Value, Value> {
    loop {
        let notified = sched.coordination_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let n = name.clone();
        let got = sched
            .with_state(move |s, _| s.queue_try_get(&n))
            .await
            .ok_or_else(shutting_down)?
            .map_err(|m| error_reply("KeyError", &m))?;
        if let Some(record) = got {
            // a put waiting for room may go ahead
            sched.coordination_changed.notify_waiters();
            return Ok(record);
        }
        if !wait_changed(notified, deadline).await {
            return Err(error_reply("TimeoutError", "queue_get timed out"));
        }
    }
}

/// `multi_lock_acquire(locks, id, timeout, num_locks)`: queue, then wait
/// until the locks are held (true) or the timeout passes (false, after
/// leaving the queues).
async fn multi_lock_acquire(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let op = "multi_lock_acquire";
    let id = str_field(op, msg, "id")?;
    let locks = str_list(op, msg, "locks")?;
    let num_locks = msg
        .get("num_locks")
        .and_then(Value::as_i64)
        .map_or(locks.len(), |n| n.max(0) as usize);
    let deadline = timeout_of(op, msg)?.map(|t| Instant::now() + t);
    let i = id.clone();
    let held = sched
        .with_state(move |s, _| s.multi_lock_request(&locks, &i, num_locks))
        .await
        .ok_or_else(shutting_down)?
        .map_err(|m| error_reply("ValueError", &m))?;
    if held {
        return Ok(Value::Bool(true));
    }
    loop {
        let notified = sched.coordination_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let i = id.clone();
        if sched
            .with_state(move |s, _| s.multi_lock_acquired(&i))
            .await
            .ok_or_else(shutting_down)?
        {
            return Ok(Value::Bool(true));
        }
        if !wait_changed(notified, deadline).await {
            let i = id.clone();
            sched
                .with_state(move |s, _| s.multi_lock_release(&i))
                .await
                .ok_or_else(shutting_down)?;
            // leaving the queues may have let others through
            sched.coordination_changed.notify_waiters();
            return Ok(Value::Bool(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_of_any_number_are_durations() {
        let table = [
            (f64::NAN, Duration::ZERO),
            (-1.0, Duration::ZERO),
            (0.5, Duration::from_millis(500)),
            (f64::INFINITY, Duration::from_secs(1_000_000_000)),
            (1e300, Duration::from_secs(1_000_000_000)),
        ];
        for (secs, want) in table {
            assert_eq!(seconds(secs), want, "{secs}");
        }
        let msg = |t: Value| Value::map([("timeout", t)]);
        assert_eq!(timeout_of("op", &msg(Value::Nil)).unwrap(), None);
        assert_eq!(
            timeout_of("op", &msg(Value::str("200ms"))).unwrap(),
            Some(Duration::from_millis(200))
        );
        assert!(timeout_of("op", &msg(Value::str("soon"))).is_err());
        assert!(timeout_of("op", &msg(Value::Bool(true))).is_err());
    }
}
