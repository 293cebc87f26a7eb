//! The function runner: one long-lived Python process that runs the
//! functions of `Client.run_on_scheduler`.
//!
//! Why: libraries start things on the scheduler that must outlive the call.
//! `xgboost.dask.train` starts its collective tracker there, a thread that
//! listens until every worker has connected. The Python scheduler runs these
//! functions in its own process; this scheduler runs them in this one, on
//! the same host, started on the first call and kept for the scheduler's
//! lifetime. Pool helpers cannot serve: they are recycled, and a request's
//! state must not outlive it there.
//!
//! Requests carry an id that the reply echoes, so calls can overlap: the
//! runner runs plain functions one at a time on its event loop's thread (as
//! the Python scheduler's event loop does) and coroutine functions
//! concurrently. If the process dies (say `os._exit` in a function), the
//! calls in flight fail with its exit status and last stderr lines, and the
//! next call starts a fresh one. The process ends with the scheduler (EOF on
//! its input), whatever threads the functions started.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dask_wire::Value;
use tokio::process::ChildStdin;
use tokio::sync::oneshot;

use super::msgpack;
use super::process::{write_frame, Helper, Role};

/// How long frames queued by [`FunctionRunner::notify`] wait for more
/// before they are written (a later call writes them at once).
const NOTIFY_BATCHING: std::time::Duration = std::time::Duration::from_millis(2);

/// Starts the runner process on demand and routes replies to their calls.
#[derive(Debug)]
pub(crate) struct FunctionRunner {
    python: PathBuf,
    live: tokio::sync::Mutex<Option<Arc<Live>>>,
    /// The live process as well, for [`FunctionRunner::notify`], which
    /// cannot wait for `live`'s lock.
    current: Mutex<Option<Arc<Live>>>,
}

/// A running runner process.
struct Live {
    stdin: tokio::sync::Mutex<ChildStdin>,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
    /// Set when the scheduler asked it to close: its end is no failure.
    closing: AtomicBool,
    /// Frames that need no reply (the scheduler plugins' events), in order.
    /// Whoever holds `stdin` writes them before its own frame, so a call
    /// made after an event was queued reaches the runner after it.
    queued: Mutex<Vec<Bytes>>,
    /// A task to write `queued` has been spawned and has not yet started.
    flush_pending: AtomicBool,
}

impl Live {
    /// Lock the input pipe and write the queued frames first.
    async fn input(&self) -> tokio::sync::MutexGuard<'_, ChildStdin> {
        let mut stdin = self.stdin.lock().await;
        let queued =
            std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner));
        for frame in queued {
            // a failed write means the process is going (its reader reports it)
            if write_frame(&mut stdin, &frame).await.is_err() {
                break;
            }
        }
        stdin
    }

    /// Whether the process has ended (its reader has failed every call).
    fn has_ended(&self) -> bool {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ended
            .is_some()
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// The calls waiting for a reply, or why none will come.
#[derive(Default)]
struct Calls {
    waiting: HashMap<u64, oneshot::Sender<Result<Bytes, String>>>,
    /// Set when the process has ended: the report every later call gets.
    ended: Option<String>,
}

impl FunctionRunner {
    /// A runner that will start `python` (the materializer's interpreter)
    /// on its first call.
    pub(crate) fn new(python: PathBuf) -> FunctionRunner {
        FunctionRunner {
            python,
            live: tokio::sync::Mutex::new(None),
            current: Mutex::new(None),
        }
    }

    /// Queue `frame`, a request that gets no reply, for the running
    /// process, without waiting: it is written before any later call's
    /// request. Dropped when no process runs (nothing there to see it:
    /// a process started later has none of the state it was meant for).
    pub(crate) fn notify(&self, frame: Bytes) {
        let live = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(live) = live.filter(|l| !l.has_ended()) else {
            return;
        };
        live.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(frame);
        if !live.flush_pending.swap(true, Ordering::AcqRel) {
            tokio::spawn(async move {
                // what else comes meanwhile goes in the same write: one
                // wake-up of the runner per batch, not per command
                tokio::time::sleep(NOTIFY_BATCHING).await;
                live.flush_pending.store(false, Ordering::Release);
                drop(live.input().await);
            });
        }
    }

    /// Send `request` (a msgpack map; its `"id"` is set) and wait for the
    /// reply frame. The error says why no reply can come: the process could
    /// not start, or it ended.
    pub(crate) async fn call(&self, request: Value) -> Result<Bytes, String> {
        let live = self.running().await?;
        let id = live.next_id.fetch_add(1, Ordering::Relaxed);
        let Value::Map(mut fields) = request else {
            return Err("function runner request must be a map".into());
        };
        // the runner's reply routing owns "id"
        fields.retain(|(k, _)| k.as_str() != Some("id"));
        fields.push((Value::str("id"), Value::from(id as usize)));
        let body = dask_wire::msgpack::encode(&Value::Map(fields));
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = live.calls.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(report) = &calls.ended {
                return Err(report.clone());
            }
            calls.waiting.insert(id, tx);
        }
        // A write that fails means the process is going: its reader reports
        // why to every waiting call, this one included.
        let _ = write_frame(&mut *live.input().await, &body).await;
        rx.await
            .unwrap_or_else(|_| Err("the function runner stopped".into()))
    }

    /// Tear the preloads down and end the process, if one is running;
    /// bounded by `within` (the process is killed with the scheduler anyway).
    pub(crate) async fn close(&self, within: std::time::Duration) {
        let close = async {
            let live = self.live.lock().await.clone();
            let Some(live) = live else { return };
            if !live.has_ended() {
                live.closing.store(true, Ordering::Relaxed);
                let _ = self.call(Value::map([("op", Value::str("close"))])).await;
            }
        };
        if tokio::time::timeout(within, close).await.is_err() {
            tracing::warn!(
                target: "materializer",
                "the run_on_scheduler function runner did not close within {within:?}"
            );
        }
    }

    /// The live process, started (or restarted after its end) if need be.
    async fn running(&self) -> Result<Arc<Live>, String> {
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref().filter(|l| !l.has_ended()) {
            return Ok(live.clone());
        }
        let mut helper = Helper::spawn_as(&self.python, Role::FunctionRunner)
            .await
            .map_err(|e| {
                format!("cannot start the process that runs run_on_scheduler functions: {e}")
            })?;
        let stdin = helper
            .take_stdin()
            .ok_or("the function runner started without an input pipe")?;
        tracing::info!(
            target: "materializer",
            pid = helper.pid(),
            "started the Python process that runs run_on_scheduler functions"
        );
        let live = Arc::new(Live {
            stdin: tokio::sync::Mutex::new(stdin),
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            queued: Mutex::new(Vec::new()),
            flush_pending: AtomicBool::new(false),
        });
        tokio::spawn(route_replies(helper, live.clone()));
        *slot = Some(live.clone());
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(live.clone());
        Ok(live)
    }
}

/// Hand each reply to its call until the process ends; then fail every
/// waiting call with the process's end.
async fn route_replies(mut helper: Helper, live: Arc<Live>) {
    let cause = loop {
        match helper.read_reply().await {
            Ok(frame) => {
                let id = msgpack::map_get(&frame, "id")
                    .ok()
                    .flatten()
                    .and_then(msgpack::as_int);
                let waiter = id.and_then(|id| {
                    live.calls
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .waiting
                        .remove(&(id as u64))
                });
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(Ok(frame));
                    }
                    None => tracing::warn!(
                        target: "materializer",
                        "function runner replied to no waiting call (id {id:?})"
                    ),
                }
            }
            Err(e) => break e,
        }
    };
    let report = helper
        .failure_report(
            "run_on_scheduler function runner",
            "running functions",
            &cause,
        )
        .await;
    if live.closing.load(Ordering::Relaxed) {
        tracing::debug!(target: "materializer", "function runner closed: {report}");
    } else {
        tracing::warn!(target: "materializer", "{report}");
    }
    let waiting = {
        let mut calls = live.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.ended = Some(report.clone());
        std::mem::take(&mut calls.waiting)
    };
    for (_, tx) in waiting {
        let _ = tx.send(Err(report.clone()));
    }
}
