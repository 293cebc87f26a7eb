//! `subscribe_worker_status`: the stream a cluster manager keeps open to
//! follow the workers (Python's `WorkerStatusPlugin`).
//!
//! Why: `distributed.deploy.Cluster._start` opens it, so every cluster
//! manager built on `Cluster` (dask-kubernetes' `KubeCluster` among them)
//! needs it to start and to keep `cluster.scheduler_info` current. The reply
//! is the scheduler's identity; after it, batches of `["add", {"workers":
//! {address: identity}}]` and `["remove", address]` as workers come and go.

use super::event_loop::Command;
use super::Scheduler;
use crate::net::batched::BatchedSender;
use crate::net::conn::Conn;
use dask_wire::Value;
use std::sync::Arc;
use std::time::Duration;

/// Python's `WorkerStatusPlugin` batches with `BatchedSend(interval="5ms")`.
const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// A worker identity without the fields that change with every heartbeat
/// (`metrics`, `last_seen`), as the plugin sends it.
pub fn without_volatile(mut ident: Value) -> Value {
    if let Value::Map(entries) = &mut ident {
        entries.retain(|(k, _)| !matches!(k.as_str(), Some("metrics" | "last_seen")));
    }
    ident
}

/// The scheduler identity a subscriber gets first: every worker's entry
/// without its volatile fields.
pub fn initial_identity(mut identity: Value) -> Value {
    if let Value::Map(entries) = &mut identity {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("workers") {
                if let Value::Map(workers) = v {
                    for (_, w) in workers.iter_mut() {
                        *w = without_volatile(std::mem::replace(w, Value::Nil));
                    }
                }
            }
        }
    }
    identity
}

/// `["add", {"workers": {address: identity}}]`.
pub fn added(address: &str, identity: Value) -> Value {
    Value::Array(vec![
        Value::str("add"),
        Value::map([(
            "workers",
            Value::Map(vec![(Value::str(address), without_volatile(identity))]),
        )]),
    ])
}

/// `["remove", address]`.
pub fn removed(address: &str) -> Value {
    Value::Array(vec![Value::str("remove"), Value::str(address)])
}

/// Serve a `subscribe_worker_status` connection: hand it to the event loop,
/// which writes the identity and then the updates, and keep reading it so
/// that its close is noticed. Anything the subscriber sends but `close` is
/// logged and ignored (Python's plugin never reads it either).
pub async fn serve(sched: Arc<Scheduler>, conn: Conn) {
    let peer = conn.peer().to_string();
    let (mut reader, writer) = conn.into_split();
    let sender = BatchedSender::spawn(writer, BATCH_INTERVAL);
    sched.send(Command::SubscribeWorkerStatus {
        sender: sender.clone(),
        info: sched.info.clone(),
    });
    tracing::info!("Worker status subscriber connected from {peer}");
    loop {
        match reader.read().await {
            Ok(msg) if msg.get("op").and_then(Value::as_str) == Some("close") => break,
            Ok(msg) => {
                let op = msg.get("op").and_then(Value::as_str).unwrap_or("(no op)");
                tracing::warn!("Ignoring a message on the worker status stream from {peer}: {op}");
            }
            Err(e) => {
                if !e.is_disconnect() {
                    tracing::warn!("Closing the worker status stream from {peer}: {e}");
                }
                break;
            }
        }
        if sender.is_closed() {
            break;
        }
    }
    sender.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Value {
        Value::map([
            ("name", Value::str("w")),
            ("last_seen", Value::Float(1.0)),
            ("metrics", Value::Map(Vec::new())),
            ("status", Value::str("running")),
        ])
    }

    #[test]
    fn the_volatile_fields_are_dropped_from_each_worker() {
        assert_eq!(
            without_volatile(ident()),
            Value::map([("name", Value::str("w")), ("status", Value::str("running"))])
        );
        let identity = Value::map([
            ("type", Value::str("Scheduler")),
            (
                "workers",
                Value::Map(vec![(Value::str("tcp://a:1"), ident())]),
            ),
        ]);
        let got = initial_identity(identity);
        let w = got.get("workers").and_then(|w| w.get("tcp://a:1")).unwrap();
        assert!(w.get("last_seen").is_none() && w.get("metrics").is_none());
        assert_eq!(w.get("name").and_then(Value::as_str), Some("w"));
        assert_eq!(got.get("type").and_then(Value::as_str), Some("Scheduler"));
    }

    #[test]
    fn updates_have_the_shape_cluster_managers_unpack() {
        // `for op, msg in msgs: ...` in `Cluster._watch_worker_status`
        let add = added("tcp://a:1", ident());
        let items = add.as_seq().unwrap();
        assert_eq!(items[0].as_str(), Some("add"));
        let w = items[1]
            .get("workers")
            .and_then(|w| w.get("tcp://a:1"))
            .unwrap();
        assert!(w.get("metrics").is_none());
        assert_eq!(
            removed("tcp://a:1"),
            Value::Array(vec![Value::str("remove"), Value::str("tcp://a:1")])
        );
    }
}
