//! RPC `benchmark_hardware` (`Client.benchmark_hardware`): the workers'
//! disk, memory and network bandwidth benchmarks, averaged per size, as
//! Python's `Scheduler.benchmark_hardware` does.

use super::errors::error_reply;
use super::Scheduler;
use dask_wire::Value;
use std::sync::Arc;

/// Bandwidths of one kind, by size label, in first-seen order.
#[derive(Default)]
struct Means(Vec<(Value, Vec<f64>)>);

impl Means {
    /// Add a worker's `{size: bandwidth}` answer.
    fn add(&mut self, answer: &Value) {
        for (size, v) in answer.as_map().unwrap_or_default() {
            let Some(x) = v.as_f64() else { continue };
            match self.0.iter_mut().find(|(s, _)| s == size) {
                Some((_, xs)) => xs.push(x),
                None => self.0.push((size.clone(), vec![x])),
            }
        }
    }

    fn into_value(self) -> Value {
        Value::Map(
            self.0
                .into_iter()
                .map(|(size, xs)| (size, Value::Float(xs.iter().sum::<f64>() / xs.len() as f64)))
                .collect(),
        )
    }
}

/// `benchmark_hardware()`.
pub async fn rpc_benchmark_hardware(sched: &Arc<Scheduler>) -> Result<Value, Value> {
    let mut out = Vec::new();
    for (name, op) in [("disk", "benchmark_disk"), ("memory", "benchmark_memory")] {
        let request = Value::map([("msg", Value::map([("op", Value::str(op))]))]);
        let answers = super::rpc::broadcast(sched, &request).await?;
        let mut means = Means::default();
        for (_, answer) in answers.as_map().unwrap_or_default() {
            means.add(answer);
        }
        out.push((Value::str(name), means.into_value()));
    }
    // pairs of workers measure the network between them (an odd one out sits out)
    let workers: Vec<String> = sched
        .with_state(|s, _| s.broadcast_targets(None, None))
        .await
        .unwrap_or_default();
    let calls = workers.chunks_exact(2).map(|pair| {
        let msg = Value::map([
            ("op", Value::str("benchmark_network")),
            ("address", Value::str(pair[1].clone())),
        ]);
        sched.rpc.call(&pair[0], msg)
    });
    let mut means = Means::default();
    for reply in futures_util::future::join_all(calls).await {
        let answer = reply.map_err(|e| error_reply("OSError", &e.to_string()))?;
        if answer.get("status").and_then(Value::as_str) == Some("uncaught-error") {
            return Err(answer);
        }
        means.add(&answer);
    }
    out.push((Value::str("network"), means.into_value()));
    Ok(Value::Map(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_per_size_in_first_seen_order() {
        let mut m = Means::default();
        m.add(&Value::map([
            ("1 kiB", Value::Float(1.0)),
            ("1 MiB", Value::Float(4.0)),
        ]));
        m.add(&Value::map([("1 kiB", Value::Float(3.0))]));
        assert_eq!(
            m.into_value(),
            Value::map([("1 kiB", Value::Float(2.0)), ("1 MiB", Value::Float(4.0))])
        );
    }
}
