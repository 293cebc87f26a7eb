//! Batched stream writer, like distributed's `BatchedSend`.
//!
//! Messages queued with [`BatchedSender::send`] are coalesced into one Dask
//! message that is a msgpack array of the op maps. After each write the
//! writer waits until `interval` has passed since that write started; what is
//! queued meanwhile goes out in the next batch. An idle stream writes a new
//! message immediately, so latency is at most `interval` and throughput is
//! batched.

use super::conn::ConnWriter;
use dask_wire::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

enum Cmd {
    /// Goes into the next batch.
    Msg(Value),
    /// Written as its own message, after everything queued before it.
    Raw(Value),
    /// Flush what is queued, then shut the socket down.
    Close,
}

struct Shared {
    closed: AtomicBool,
    messages: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    peer: String,
}

/// Counters of one batched stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchedStats {
    /// Op maps written.
    pub messages: u64,
    /// Dask messages (batches and raw messages) written.
    pub batches: u64,
    /// Bytes written to the socket.
    pub bytes: u64,
}

/// Handle to a batched stream writer task. Cheap to clone; all clones feed
/// the same stream, in call order.
#[derive(Clone)]
pub struct BatchedSender {
    tx: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    done: watch::Receiver<bool>,
}

impl BatchedSender {
    /// Start the writer task on `writer`, batching with `interval`.
    ///
    /// Must be called inside a tokio runtime. The task ends (and the socket
    /// is shut down) on [`close`](Self::close), on a write error, or when the
    /// last handle is dropped.
    pub fn spawn(writer: ConnWriter, interval: Duration) -> BatchedSender {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(false);
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            messages: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            peer: writer.peer().to_string(),
        });
        let task_shared = shared.clone();
        tokio::spawn(async move {
            run(writer, rx, interval, &task_shared).await;
            task_shared.closed.store(true, Ordering::Release);
            let _ = done_tx.send(true);
        });
        BatchedSender { tx, shared, done }
    }

    /// Queue `msg` (an op map) for the next batch. Never blocks; dropped with
    /// a debug log if the stream is already closed.
    pub fn send(&self, msg: Value) {
        self.push(Cmd::Msg(msg));
    }

    /// Queue `msg` to be written as its own message, not wrapped in an array,
    /// after everything sent before it.
    pub fn send_raw(&self, msg: Value) {
        self.push(Cmd::Raw(msg));
    }

    fn push(&self, cmd: Cmd) {
        if self.is_closed() || self.tx.send(cmd).is_err() {
            tracing::debug!("Dropping message for closed stream to {}", self.shared.peer);
        }
    }

    /// Flush what is queued, then shut the socket down. Later sends are dropped.
    pub fn close(&self) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Cmd::Close);
        }
    }

    /// True once [`close`](Self::close) was called or the writer task ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Wait until the writer task has ended (flushed and shut down, or failed).
    pub async fn wait_closed(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    /// The peer's address, `tcp://ip:port`.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// Counters of what this stream has written so far.
    pub fn stats(&self) -> BatchedStats {
        BatchedStats {
            messages: self.shared.messages.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for BatchedSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<BatchedSender {}{}>",
            self.shared.peer,
            if self.is_closed() { " closed" } else { "" }
        )
    }
}

/// Writes one message; logs and returns false on failure.
async fn write_one(writer: &mut ConnWriter, msg: &Value, shared: &Shared, ops: u64) -> bool {
    match writer.write(msg).await {
        Ok(n) => {
            shared.messages.fetch_add(ops, Ordering::Relaxed);
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
            true
        }
        Err(e) if e.is_disconnect() => {
            tracing::info!("Batched Comm Closed to {}: {e}", shared.peer);
            false
        }
        Err(e) => {
            tracing::warn!("Error in batched write to {}: {e}", shared.peer);
            false
        }
    }
}

async fn flush(writer: &mut ConnWriter, batch: &mut Vec<Value>, shared: &Shared) -> bool {
    if batch.is_empty() {
        return true;
    }
    let ops = batch.len() as u64;
    let msg = Value::Array(std::mem::take(batch));
    let ok = write_one(writer, &msg, shared, ops).await;
    // the next batch reuses the vector (and its capacity)
    if let Value::Array(mut items) = msg {
        items.clear();
        *batch = items;
    }
    ok
}

async fn run(
    mut writer: ConnWriter,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    interval: Duration,
    shared: &Shared,
) {
    let mut batch: Vec<Value> = Vec::new();
    let mut next_write = Instant::now();
    loop {
        let Some(first) = rx.recv().await else {
            // Every handle is gone: nothing more can be queued.
            break;
        };
        if Instant::now() < next_write {
            tokio::time::sleep_until(next_write).await;
        }
        let started = Instant::now();
        let mut closing = false;
        let mut cmd = Some(first);
        // Take everything queued right now, in order.
        while let Some(c) = cmd {
            match c {
                Cmd::Msg(v) => batch.push(v),
                Cmd::Raw(v) => {
                    if !flush(&mut writer, &mut batch, shared).await
                        || !write_one(&mut writer, &v, shared, 1).await
                    {
                        return;
                    }
                }
                Cmd::Close => {
                    closing = true;
                    break;
                }
            }
            cmd = rx.try_recv().ok();
        }
        if !flush(&mut writer, &mut batch, shared).await {
            return;
        }
        if closing {
            break;
        }
        next_write = started + interval;
    }
    if let Err(e) = writer.shutdown().await {
        tracing::debug!("Shutting down stream to {}: {e}", shared.peer);
    }
}
