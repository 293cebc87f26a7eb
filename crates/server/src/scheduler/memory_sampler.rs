//! `memory_sampler_start` / `memory_sampler_stop`: the scheduler side of
//! `distributed.diagnostics.MemorySampler`.
//!
//! Why: `with ms.sample("label"): ...` is distributed's documented way to
//! record the cluster's memory during a computation (then `ms.plot()` or
//! `ms.to_pandas()`); against a scheduler without these handlers the block
//! fails on entry. As Python's `MemorySamplerExtension`: sampling starts
//! with one reading at once and goes on every `interval` seconds until the
//! matching stop, or until the client that started it disconnects (its
//! samples are then dropped). A reading is `[epoch seconds, bytes]` of the
//! cluster's memory measure (`process` by default; see
//! `State::cluster_memory`).

use super::errors::error_reply;
use super::Scheduler;
use dask_wire::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// The samplers running, by key.
#[derive(Debug, Default)]
pub struct MemorySamplers {
    running: Mutex<HashMap<String, Sampler>>,
}

#[derive(Debug)]
struct Sampler {
    samples: Vec<(f64, i64)>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySamplers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sampler>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One reading, or `None` when the client has gone (or the loop has ended).
async fn read(sched: &Scheduler, client: &str, measure: &str) -> Option<(f64, i64)> {
    let (client, measure) = (client.to_string(), measure.to_string());
    sched
        .with_state(move |s, now| {
            s.client_id(&client)?;
            Some((now, s.cluster_memory(&measure).unwrap_or(0)))
        })
        .await
        .flatten()
}

/// `memory_sampler_start(client, measure, interval)` → the sampler's key.
pub async fn rpc_start(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let client = msg.get("client").and_then(Value::as_str).unwrap_or("");
    // absent means the default; present but of the wrong type is an error
    // (Python fails on it too), never a silent fall-back to the default
    let measure = match msg.get("measure") {
        None => "process",
        Some(v) => v
            .as_str()
            .ok_or_else(|| error_reply("TypeError", "MemorySampler: 'measure' must be a string"))?,
    };
    let interval = match msg.get("interval") {
        None => 0.5,
        Some(v) => v.as_f64().ok_or_else(|| {
            error_reply(
                "TypeError",
                "MemorySampler: 'interval' must be a number of seconds",
            )
        })?,
    };
    if measure.starts_with('_') {
        return Err(error_reply(
            "AssertionError",
            &format!("MemorySampler: {measure:?} is not a memory measure"),
        ));
    }
    let (c, m) = (client.to_string(), measure.to_string());
    let known = sched
        .with_state(move |s, _| (s.client_id(&c).is_some(), s.cluster_memory(&m).is_some()))
        .await
        .ok_or_else(super::errors::shutting_down)?;
    if !known.1 {
        return Err(error_reply(
            "AttributeError",
            &format!("'MemoryState' object has no attribute '{measure}'"),
        ));
    }
    if !(interval.is_finite() && interval > 0.0) {
        return Err(error_reply(
            "ValueError",
            &format!(
                "MemorySampler: interval must be a positive number of seconds, not {interval}"
            ),
        ));
    }
    let key = super::uuid4();
    let first = if known.0 {
        read(sched, client, measure).await
    } else {
        None
    };
    // As in Python, the first reading of a sampler whose client is not
    // connected stops it and drops its samples: the key comes back, and a
    // stop answers KeyError.
    if let Some(first) = first {
        let task = tokio::spawn(sample_every(
            Arc::downgrade(sched),
            key.clone(),
            client.to_string(),
            measure.to_string(),
            // (a timer needs a period, and one it can add to the clock)
            Duration::from_secs_f64(interval.clamp(0.001, 1e6)),
        ));
        let sampler = Sampler {
            samples: vec![first],
            task,
        };
        sched.memory_samplers.lock().insert(key.clone(), sampler);
    }
    Ok(Value::str(key))
}

/// Read every `every` until the sampler is stopped or its client leaves.
async fn sample_every(
    sched: Weak<Scheduler>,
    key: String,
    client: String,
    measure: String,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first reading was taken by `rpc_start`
    loop {
        tick.tick().await;
        let Some(sched) = sched.upgrade() else { return };
        let reading = read(&sched, &client, &measure).await;
        let mut running = sched.memory_samplers.lock();
        match reading {
            Some(r) => match running.get_mut(&key) {
                Some(s) => s.samples.push(r),
                None => return,
            },
            None => {
                running.remove(&key);
                return;
            }
        }
    }
}

/// `memory_sampler_stop(key)` → the samples, `[[time, bytes], ...]`.
pub async fn rpc_stop(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let key = msg.get("key").and_then(Value::as_str).unwrap_or("");
    let sampler = sched.memory_samplers.lock().remove(key);
    let Some(sampler) = sampler else {
        return Err(error_reply("KeyError", &format!("'{key}'")));
    };
    sampler.task.abort();
    Ok(Value::Array(
        sampler
            .samples
            .into_iter()
            .map(|(t, b)| Value::Array(vec![Value::Float(t), Value::Int(b)]))
            .collect(),
    ))
}
