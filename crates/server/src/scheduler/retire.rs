//! Graceful retirement and the scale-down RPCs the Dask Kubernetes operator
//! (and `Client.retire_workers`) use: `retire_workers`, `workers_to_close`,
//! `adaptive_target`, `check_idle`.
//!
//! [`retire_workers`] drives the pure bookkeeping of `dask_core::retire`: it
//! marks the workers `closing_gracefully`, then polls each one (like Python's
//! `_track_retire_worker`) while its unique keys are replicated elsewhere, and
//! finally closes/removes it. A worker whose data cannot go anywhere, or not
//! within [`RETIRE_TIMEOUT`], is left running and not reported as retired.

use super::errors::{error_reply, shutting_down};
use super::Scheduler;
use dask_core::retire::{CloseOptions, RetireProgress, WorkerAttribute};
use dask_core::timedelta::parse_seconds;
use dask_wire::Value;
use std::sync::Arc;
use std::time::Duration;

/// Longest a retirement waits for its data to be replicated before it is
/// abandoned (the worker then keeps running; nothing is lost).
pub const RETIRE_TIMEOUT: Duration = Duration::from_secs(600);

/// `distributed.adaptive.target-duration` default (s).
pub const DEFAULT_TARGET_DURATION: f64 = 5.0;

/// `distributed.adaptive.target-duration` from `DASK_DISTRIBUTED__ADAPTIVE__TARGET_DURATION`
/// (a Dask time string such as `"5s"`), else Dask's default of 5 s.
pub fn default_target_duration() -> f64 {
    ["TARGET_DURATION", "TARGET-DURATION"]
        .iter()
        .find_map(|k| std::env::var(format!("DASK_DISTRIBUTED__ADAPTIVE__{k}")).ok())
        .and_then(|v| parse_seconds(v.trim().trim_matches(|c| c == '"' || c == '\'')))
        .filter(|d| *d > 0.0)
        .unwrap_or(DEFAULT_TARGET_DURATION)
}

/// Which workers to retire and how.
#[derive(Debug, Clone, Default)]
pub struct RetireRequest {
    /// Addresses (`workers=`).
    pub workers: Option<Vec<String>>,
    /// Names (`names=`), compared as text.
    pub names: Option<Vec<String>>,
    /// Neither given: let `workers_to_close` choose with these options.
    pub choose: CloseOptions,
    /// Tell the workers to close (`close_workers=`).
    pub close_workers: bool,
    /// Forget the workers once their data is safe (`remove=`, default true).
    pub remove: bool,
    /// Stimulus id for logs and messages.
    pub stimulus_id: Option<String>,
}

/// Retire workers gracefully; returns `{address: identity}` of those retired.
///
/// The retirement runs as its own task: a caller that goes away (an HTTP
/// client timing out, a closed RPC connection) does not leave workers stuck
/// in `closing_gracefully` halfway through.
pub async fn retire_workers(sched: &Arc<Scheduler>, req: RetireRequest) -> Option<Value> {
    let sched = sched.clone();
    tokio::spawn(async move { run_retirement(&sched, req).await })
        .await
        .ok()
        .flatten()
}

async fn run_retirement(sched: &Arc<Scheduler>, req: RetireRequest) -> Option<Value> {
    let stimulus = req
        .stimulus_id
        .clone()
        .unwrap_or_else(|| format!("retire-workers-{}", super::now()));
    let stim = stimulus.clone();
    let (workers, choose) = (req.workers.clone(), req.choose.clone());
    let names = req.names.clone();
    let started = sched
        .with_state(move |s, _| {
            let addresses = match (workers, names) {
                (Some(w), _) => w,
                (None, Some(n)) => s.addresses_of_names(&n),
                (None, None) => s.workers_to_close(&choose),
            };
            let identities = s.workers_identity(-1);
            let mut ids = Vec::new();
            for addr in addresses {
                if let Some(w) = s.worker_id(&addr) {
                    if !ids.iter().any(|(i, _, _)| *i == w) && s.start_retirement(w, &stim) {
                        let identity = identities.get(&addr).cloned().unwrap_or(Value::Nil);
                        ids.push((w, addr, identity));
                    }
                }
            }
            ids
        })
        .await?;
    if started.is_empty() {
        return Some(Value::Map(Vec::new()));
    }
    tracing::info!(
        "Retire worker addresses ({stimulus}) {:?}",
        started.iter().map(|(_, a, _)| a).collect::<Vec<_>>()
    );
    let mut tracks = tokio::task::JoinSet::new();
    for (w, addr, at_start) in started {
        let sched = sched.clone();
        let stimulus = stimulus.clone();
        let (close, remove) = (req.close_workers, req.remove);
        tracks.spawn(async move {
            let outcome = track(&sched, w, close, remove, &stimulus).await;
            // A worker that left meanwhile (e.g. retired by a concurrent
            // request) is reported with its identity from the start.
            let outcome = outcome.map(|(ok, identity)| {
                (
                    ok,
                    if identity.is_nil() {
                        at_start
                    } else {
                        identity
                    },
                )
            });
            (addr, outcome)
        });
    }
    let mut retired = Vec::new();
    let mut not_retired = Vec::new();
    while let Some(joined) = tracks.join_next().await {
        let Ok((addr, outcome)) = joined else {
            continue;
        };
        match outcome {
            Some((true, identity)) => retired.push((addr, identity)),
            Some((false, _)) | None => not_retired.push(addr),
        }
    }
    retired.sort_by(|a, b| a.0.cmp(&b.0));
    not_retired.sort();
    let event = Value::map([
        ("action", Value::str("retire-workers")),
        (
            "retired",
            Value::Array(retired.iter().map(|(a, _)| Value::str(a.clone())).collect()),
        ),
        (
            "could-not-retire",
            Value::Array(not_retired.iter().map(|a| Value::str(a.clone())).collect()),
        ),
        ("stimulus_id", Value::str(stimulus)),
    ]);
    sched
        .with_state(move |s, now| s.log_event("all", event, now))
        .await;
    Some(Value::Map(
        retired
            .into_iter()
            .map(|(a, identity)| (Value::str(a), identity))
            .collect(),
    ))
}

/// Follow one worker's retirement to its end: `(retired?, identity)`.
async fn track(
    sched: &Arc<Scheduler>,
    w: dask_core::WorkerId,
    close: bool,
    remove: bool,
    stimulus: &str,
) -> Option<(bool, Value)> {
    let deadline = tokio::time::Instant::now() + RETIRE_TIMEOUT;
    loop {
        let stim = stimulus.to_string();
        let (progress, held) = sched
            .with_state(move |s, now| (s.retire_step(w, now, &stim), s.held_keys(w)))
            .await?;
        match progress {
            RetireProgress::Done => {
                let identity = sched
                    .with_state(move |s, now| s.finish_retirement(w, close, remove, now))
                    .await?;
                return Some((true, identity));
            }
            RetireProgress::NoRecipients => {
                let stim = stimulus.to_string();
                let identity = sched
                    .with_state(move |s, _| s.abort_retirement(w, &stim))
                    .await?;
                return Some((false, identity));
            }
            RetireProgress::Pending(_) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(
                    "Retirement of a worker timed out after {RETIRE_TIMEOUT:?} waiting for its \
                     data to be replicated; it keeps running"
                );
                let stim = stimulus.to_string();
                let identity = sched
                    .with_state(move |s, _| s.abort_retirement(w, &stim))
                    .await?;
                return Some((false, identity));
            }
            RetireProgress::Pending(_) => {
                // Python's poll interval: 10 ms for a few keys, up to 500 ms.
                let secs = (held as f64 / 400.0).clamp(0.01, 0.5);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
    }
}

/// A list argument of strings (addresses or names; names may be ints).
pub(super) fn str_list(msg: &Value, field: &str) -> Result<Option<Vec<String>>, Value> {
    match msg.get(field) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => {
            let seq = v.as_seq().ok_or_else(|| {
                error_reply("TypeError", &format!("'{field}' must be a list, got {v}"))
            })?;
            Ok(Some(
                seq.iter()
                    .map(|x| match x {
                        Value::Str(s) => s.to_string(),
                        other => other.to_string(),
                    })
                    .collect(),
            ))
        }
    }
}

pub(super) fn opt_i64(msg: &Value, field: &str) -> Result<Option<i64>, Value> {
    match msg.get(field) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            error_reply(
                "TypeError",
                &format!("'{field}' must be an integer, got {v}"),
            )
        }),
    }
}

/// Parse the `workers_to_close` arguments; `key=` (a pickled Python callable)
/// is refused with a clear error.
fn close_options(msg: &Value) -> Result<CloseOptions, Value> {
    if msg.get("key").is_some_and(|k| !k.is_nil()) {
        return Err(error_reply(
            "NotImplementedError",
            "workers_to_close(key=...) takes a Python callable, which the Rust \
             dask-scheduler cannot run; workers are grouped one per worker",
        ));
    }
    let memory_ratio = match msg.get("memory_ratio") {
        None | Some(Value::Nil) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            error_reply(
                "TypeError",
                &format!("'memory_ratio' must be a number, got {v}"),
            )
        })?),
    };
    let attribute = match msg.get("attribute") {
        None | Some(Value::Nil) => WorkerAttribute::Address,
        Some(v) => {
            let a = v.as_str().unwrap_or("");
            WorkerAttribute::parse(a).ok_or_else(|| {
                error_reply(
                    "NotImplementedError",
                    &format!(
                        "workers_to_close(attribute={v}) is not supported; use 'address' or 'name'"
                    ),
                )
            })?
        }
    };
    Ok(CloseOptions {
        memory_ratio,
        n: opt_i64(msg, "n")?,
        minimum: opt_i64(msg, "minimum")?,
        target: opt_i64(msg, "target")?,
        attribute,
    })
}

/// RPC `retire_workers(workers=None, names=None, close_workers=False,
/// remove=True, stimulus_id=None, **workers_to_close kwargs)`.
pub async fn rpc_retire_workers(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let workers = str_list(msg, "workers")?;
    let names = str_list(msg, "names")?;
    if workers.is_some() && names.is_some() {
        return Err(error_reply(
            "TypeError",
            "names and workers are mutually exclusive",
        ));
    }
    let choose = close_options(msg)?;
    let has_kwargs = ["memory_ratio", "n", "key", "minimum", "target", "attribute"]
        .iter()
        .any(|f| msg.get(f).is_some_and(|v| !v.is_nil()));
    if (workers.is_some() || names.is_some()) && has_kwargs {
        return Err(error_reply(
            "TypeError",
            "Parameters for workers_to_close() are mutually exclusive with names and workers",
        ));
    }
    let req = RetireRequest {
        workers,
        names,
        choose,
        close_workers: msg.get("close_workers").is_some_and(Value::truthy),
        remove: msg.get("remove").is_none_or(|v| v.is_nil() || v.truthy()),
        stimulus_id: msg
            .get("stimulus_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    retire_workers(sched, req).await.ok_or_else(shutting_down)
}

/// RPC `workers_to_close(memory_ratio, n, key, minimum, target, attribute)`.
pub async fn rpc_workers_to_close(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let o = close_options(msg)?;
    sched
        .with_state(move |s, _| s.workers_to_close_reply(&o))
        .await
        .ok_or_else(shutting_down)
}

/// The `target_duration` argument: seconds or a Dask time string (`"5s"`).
fn target_duration(v: Option<&Value>) -> Result<f64, Value> {
    match v {
        None | Some(Value::Nil) => Ok(default_target_duration()),
        Some(Value::Str(s)) => parse_seconds(s)
            .ok_or_else(|| error_reply("ValueError", &format!("bad target_duration '{s}'"))),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| error_reply("TypeError", &format!("bad target_duration {v}"))),
    }
}

/// RPC `adaptive_target(target_duration=None)` → number of workers.
pub async fn rpc_adaptive_target(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let d = target_duration(msg.get("target_duration"))?;
    adaptive_target(sched, d).await.ok_or_else(shutting_down)
}

/// `adaptive_target` with a target duration in seconds.
pub async fn adaptive_target(sched: &Arc<Scheduler>, target_duration: f64) -> Option<Value> {
    sched
        .with_state(move |s, _| Value::Int(s.adaptive_target(target_duration) as i64))
        .await
}

/// `check_idle`: idle since (epoch seconds) or nil while busy.
pub async fn check_idle(sched: &Arc<Scheduler>) -> Option<Value> {
    sched
        .with_state(|s, now| s.check_idle(now).map_or(Value::Nil, Value::Float))
        .await
}
