//! What a new connection is, decided by its first message, and the read loops
//! of client and worker streams.
//!
//! * `register-client` → the client's report stream.
//! * `register-worker` → the worker's stream (after the registration reply).
//! * anything else → a sequence of RPCs on this connection.

use super::event_loop::{Command, WorkerOp};
use super::graph;
use super::rpc;
use super::Scheduler;
use crate::net::batched::BatchedSender;
use crate::net::conn::{Conn, ConnError, ConnReader};
use crate::net::listener::ConnectionHandler;
use bytes::Bytes;
use dask_core::{ClientId, TaskFinished, WorkerId, WorkerRegistration, WorkerStatus};
use dask_wire::{decode_message, Value, WireError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Batching interval of the scheduler→client report stream (Dask: 2 ms).
const CLIENT_BATCH_INTERVAL: Duration = Duration::from_millis(2);
/// Batching interval of scheduler→worker streams: 1 ms, where Dask uses
/// 5 ms. A worker holds at most `ceil(worker-saturation × nthreads)` queued
/// root tasks, so it gets its next one only after a round trip; with 5 ms
/// between writes, short tasks left the workers idle (a 20k-task
/// `client.map` on 4 one-thread workers: 18.1 s at 5 ms, 13.1 s at 1 ms,
/// 13.1 s with no interval; 64 simulated workers: 51k → 77k tasks/s) at
/// the same scheduler CPU per task. Messages queued while the event loop
/// works still go out together; only the wait between writes is shorter.
const WORKER_BATCH_INTERVAL: Duration = Duration::from_millis(1);

/// The listener's handler: routes each connection by its first message.
pub struct Router {
    /// The scheduler all connections act on.
    pub scheduler: Arc<Scheduler>,
}

impl ConnectionHandler for Router {
    fn handle(&self, conn: Conn) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(serve(self.scheduler.clone(), conn))
    }
}

async fn serve(sched: Arc<Scheduler>, mut conn: Conn) {
    let first = match conn.read().await {
        Ok(m) => m,
        Err(e) => {
            if !e.is_disconnect() {
                tracing::warn!("Closing connection from {}: {e}", conn.peer());
            }
            return;
        }
    };
    crate::metrics::global().count_op("connection", first.get("op").and_then(Value::as_str));
    match first.get("op").and_then(Value::as_str) {
        // a blocked registration is answered with its error like any RPC
        Some(op) if sched.blocked_reply(op).is_some() => rpc::serve_rpcs(sched, conn, first).await,
        Some("register-client") => client_stream(sched, conn, first).await,
        Some("register-worker") => worker_stream(sched, conn, first).await,
        _ => rpc::serve_rpcs(sched, conn, first).await,
    }
}

/// The ops of one stream message: a batch (array) or a single map.
fn ops_of(msg: Value) -> Vec<Value> {
    match msg {
        Value::Array(items) => items,
        single => vec![single],
    }
}

async fn client_stream(sched: Arc<Scheduler>, conn: Conn, first: Value) {
    let peer = conn.peer().to_string();
    let Some(name) = first
        .get("client")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        tracing::warn!("register-client from {peer} without a client id; closing");
        return;
    };
    // Python's version check: the client warns of what differs
    let scheduler_versions = rpc::checked_versions(&sched.materializer);
    let versions = first.get("versions").cloned().unwrap_or(Value::Nil);
    let checked = versions.clone();
    let warning = sched
        .with_state(move |s, _| s.version_mismatch(&scheduler_versions, &checked, "Client"))
        .await
        .unwrap_or_default();
    if !warning.is_empty() {
        tracing::debug!("Client {name}: {warning}");
    }
    let (reader, mut writer) = conn.into_split();
    // `stream-start` must be alone in the first batch the client reads.
    let start = Value::Array(vec![dask_core::messages::stream_start(&warning)]);
    if let Err(e) = writer.write(&start).await {
        tracing::info!("Client {name} went away during registration: {e}");
        return;
    }
    let sender = BatchedSender::spawn(writer, CLIENT_BATCH_INTERVAL);
    let (tx, rx) = oneshot::channel();
    sched.send(Command::ClientConnected {
        name: name.clone(),
        sender,
        versions,
        reply: tx,
    });
    let Ok(client) = rx.await else { return };
    read_client_stream(&sched, client, reader, &name).await;
    sched.send(Command::ClientGone { client });
}

async fn read_client_stream(
    sched: &Arc<Scheduler>,
    client: ClientId,
    mut reader: ConnReader,
    name: &str,
) {
    loop {
        let msg = match reader.read().await {
            Ok(m) => m,
            Err(e) => {
                if e.is_disconnect() {
                    tracing::info!("Client {name} stream closed");
                } else {
                    tracing::warn!("Closing stream of client {name} ({}): {e}", reader.peer());
                }
                return;
            }
        };
        let mut batch = Vec::new();
        for op in ops_of(msg) {
            if op.as_str() == Some("OK") {
                break;
            }
            crate::metrics::global().count_op("client", op.get("op").and_then(Value::as_str));
            match op.get("op").and_then(Value::as_str) {
                Some("update-graph") => {
                    flush_client(sched, client, &mut batch);
                    graph::update_graph(sched, client, op).await;
                }
                Some("close-client") | Some("close-stream") => {
                    flush_client(sched, client, &mut batch);
                    return;
                }
                _ => batch.push(op),
            }
        }
        flush_client(sched, client, &mut batch);
    }
}

fn flush_client(sched: &Scheduler, client: ClientId, batch: &mut Vec<Value>) {
    if !batch.is_empty() {
        sched.send(Command::ClientOps {
            client,
            ops: std::mem::take(batch),
        });
    }
}

/// A `{name: amount}` resources map (entries that are not str → number are skipped).
pub fn resources_of(v: Option<&Value>) -> Vec<(String, f64)> {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Parse the fields of `register-worker` the scheduler keeps.
pub fn parse_registration(msg: &Value) -> Result<WorkerRegistration, String> {
    let address = msg
        .get("address")
        .and_then(Value::as_str)
        .ok_or("register-worker without an 'address'")?
        .to_string();
    let nthreads = msg
        .get("nthreads")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .ok_or("register-worker without a valid 'nthreads'")?;
    let resources = resources_of(msg.get("resources"));
    let status = msg
        .get("status")
        .and_then(Value::as_str)
        .and_then(WorkerStatus::parse)
        .unwrap_or(WorkerStatus::Init);
    let field = |k: &str| msg.get(k).cloned().unwrap_or(Value::Nil);
    Ok(WorkerRegistration {
        address,
        name: field("name"),
        nthreads: nthreads.min(u32::MAX as i64) as u32,
        memory_limit: msg.get("memory_limit").and_then(Value::as_i64).unwrap_or(0),
        resources,
        status,
        services: msg
            .get("services")
            .cloned()
            .unwrap_or(Value::Map(Vec::new())),
        nanny: field("nanny"),
        local_directory: field("local_directory"),
        pid: msg.get("pid").and_then(Value::as_i64).unwrap_or(0),
        server_id: msg
            .get("server_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        extra: msg.get("extra").cloned().unwrap_or(Value::Map(Vec::new())),
        metrics: msg
            .get("metrics")
            .cloned()
            .unwrap_or(Value::Map(Vec::new())),
        versions: field("versions"),
        sent_at: msg.get("now").and_then(Value::as_f64),
    })
}

async fn worker_stream(sched: Arc<Scheduler>, mut conn: Conn, first: Value) {
    let peer = conn.peer().to_string();
    let reg = match parse_registration(&first) {
        Ok(r) => r,
        Err(message) => {
            tracing::warn!("Bad worker registration from {peer}: {message}");
            let reply = Value::map([
                ("status", Value::str("error")),
                ("message", Value::str(message)),
                ("time", Value::Float(super::now())),
            ]);
            let _ = conn.write(&reply).await;
            return;
        }
    };
    let address = reg.address.clone();
    let (reader, writer) = conn.into_split();
    let sender = BatchedSender::spawn(writer, WORKER_BATCH_INTERVAL);
    let (tx, rx) = oneshot::channel();
    sched.send(Command::WorkerRegister {
        reg: Box::new(reg),
        sender: sender.clone(),
        reply: tx,
        plugins: sched.plugins.worker_map(),
    });
    let worker = match rx.await {
        Ok(Ok((id, _))) => id,
        Ok(Err(_)) | Err(_) => {
            sender.close();
            return;
        }
    };
    read_worker_stream(&sched, worker, reader, &address).await;
    sched.send(Command::WorkerGone { worker });
}

async fn read_worker_stream(
    sched: &Arc<Scheduler>,
    worker: WorkerId,
    mut reader: ConnReader,
    address: &str,
) {
    let closed = |e: ConnError| {
        if e.is_disconnect() {
            tracing::info!("Worker {address} stream closed");
        } else {
            tracing::warn!("Closing stream of worker {address}: {e}");
        }
    };
    loop {
        let frames = match reader.read_frames().await {
            Ok(f) => f,
            Err(e) => return closed(e),
        };
        let (ops, close) = match worker_ops(&frames) {
            Ok(ops) => ops,
            Err(e) => return closed(ConnError::from_wire(e)),
        };
        if !ops.is_empty() {
            sched.send(Command::WorkerOps { worker, ops });
        }
        if close {
            return;
        }
    }
}

/// The ops of one message on a worker's stream, up to a `close-stream`
/// (the bool: the stream ends there) or an `OK` string. A `task-finished`,
/// most of the traffic, is read straight from its msgpack bytes into a
/// typed struct; every other op is decoded into a `Value` (with the
/// message's out-of-band frames). Errors are those decoding the whole
/// message would give.
fn worker_ops(frames: &[Bytes]) -> Result<(Vec<WorkerOp>, bool), WireError> {
    let body = frames
        .first()
        .ok_or_else(|| WireError::BadPrelude("message without frames".into()))?;
    let mut ops = Vec::new();
    for raw in dask_wire::split_ops(body)? {
        let op = raw.op.as_deref();
        // a task-finished never carries out-of-band objects; with some in
        // the message, its placeholders must be resolved: the Value path
        if op == Some("task-finished") && frames.len() == 1 {
            if let Some(tf) = TaskFinished::decode(&raw.bytes)? {
                crate::metrics::global().count_op("worker", op);
                ops.push(WorkerOp::TaskFinished(tf));
                continue;
            }
        }
        let mut own = Vec::with_capacity(frames.len());
        own.push(raw.bytes);
        own.extend(frames[1..].iter().cloned());
        let v = decode_message(&own)?;
        if v.as_str() == Some("OK") {
            break;
        }
        crate::metrics::global().count_op("worker", v.get("op").and_then(Value::as_str));
        if v.get("op").and_then(Value::as_str) == Some("close-stream") {
            return Ok((ops, true));
        }
        ops.push(WorkerOp::Op(v));
    }
    Ok((ops, false))
}
