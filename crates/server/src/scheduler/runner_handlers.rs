//! RPC handlers that Python code added to the scheduler's `handlers`.
//!
//! Why: libraries extend Python's scheduler with RPCs of their own. Optuna's
//! `DaskStorage` runs a `run_on_scheduler` function that puts an extension
//! in `scheduler.extensions` and its methods in `scheduler.handlers`
//! (`optuna_create_new_study`, ...), and its clients then call them as
//! `client.scheduler.optuna_create_new_study(...)`. Here such code runs in
//! the function runner with the scheduler stand-in, whose `handlers` takes
//! new names (never the scheduler's own). The runner's replies carry the
//! names it holds (`rpc_handlers`, with `rpc_handlers_version`: its pid and
//! a change count, as the plugin table's), and a call of one of them is
//! forwarded there: the client's message as its frames, loaded and handled
//! as Python's `Server._handle_comm` does, and the handler's return value
//! comes back as frames that become the reply.
//!
//! A fresh runner's first reply carries its (empty) table, so the names of
//! a runner that died are forgotten with it, as are the handlers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dask_wire::Value;

use super::errors::error_reply;
use super::rpc::helper_error;
use super::run_function::{is_stale, runner_version, RunnerVersion};
use super::Scheduler;
use crate::materializer::Availability;

/// The names of the handlers the function runner holds, as its newest reply
/// gave them.
#[derive(Debug, Default)]
pub struct RunnerHandlers {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Of the runner whose table this is.
    version: Option<RunnerVersion>,
    names: HashSet<String>,
}

impl RunnerHandlers {
    /// Whether calls of `op` go to the function runner.
    pub fn contains(&self, op: &str) -> bool {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        !table.names.is_empty() && table.names.contains(op)
    }

    /// Take the table a runner reply carries, unless an older reply of the
    /// same process (replies may be handled out of order).
    pub fn adopt(&self, reply: &Value) {
        let Some(names) = reply.get("rpc_handlers").and_then(Value::as_seq) else {
            return;
        };
        let version = runner_version(reply, "rpc_handlers_version");
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if is_stale(version, table.version) {
            return;
        }
        table.version = version;
        table.names = names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
}

/// Forward the call `msg` of the runner's handler `op` from the client at
/// `peer`; `None` when the handler asked for no reply
/// (`Status.dont_reply`).
pub async fn forward(sched: &Arc<Scheduler>, op: &str, msg: &Value, peer: &str) -> Option<Value> {
    match call(sched, op, msg, peer).await {
        Ok(reply) => reply,
        Err(e) => Some(e),
    }
}

async fn call(
    sched: &Arc<Scheduler>,
    op: &str,
    msg: &Value,
    peer: &str,
) -> Result<Option<Value>, Value> {
    if let Availability::Unavailable { reason } = sched.materializer.availability() {
        return Err(error_reply(
            "NotImplementedError",
            &format!(
                "the operation '{op}' was added by Python code in the Rust dask-scheduler's \
                 Python process, which is unavailable: {reason}"
            ),
        ));
    }
    let frames = dask_wire::message::encode_message(msg)
        .into_iter()
        .map(Value::Bin)
        .collect();
    let request = Value::map([
        ("op", Value::str("rpc_handler")),
        ("name", Value::str(op)),
        ("frames", Value::Array(frames)),
        ("peer", Value::str(peer)),
        // for the stand-in, should the handler reach the scheduler through it
        ("address", Value::str(sched.info.address.as_str())),
        ("scheduler_id", Value::str(sched.info.id.as_str())),
    ]);
    let what = format!("scheduler handler '{op}'");
    let reply = super::run_function::runner_reply(sched, request, &what).await?;
    if reply.get("status").and_then(Value::as_str) != Some("OK") {
        return Err(helper_error(&reply));
    }
    if matches!(reply.get("reply"), Some(Value::Bool(false))) {
        return Ok(None);
    }
    let frames: Vec<Bytes> = match reply.get("frames").and_then(Value::as_seq) {
        Some(frames) => frames
            .iter()
            .map(|f| match f {
                Value::Bin(b) => Ok(b.clone()),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| malformed(&what, "a frame is not bytes"))?,
        None => return Err(malformed(&what, "no frames")),
    };
    dask_wire::message::decode_message(&frames)
        .map(Some)
        .map_err(|e| malformed(&what, &e.to_string()))
}

fn malformed(what: &str, why: &str) -> Value {
    error_reply(
        "RuntimeError",
        &format!("{what}: malformed reply from the function runner: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(names: &[&str], pid: i64, v: i64) -> Value {
        Value::map([
            (
                "rpc_handlers",
                Value::Array(names.iter().map(|n| Value::str(*n)).collect()),
            ),
            (
                "rpc_handlers_version",
                Value::Array(vec![Value::Int(pid), Value::Int(v)]),
            ),
        ])
    }

    #[test]
    fn newest_table_of_a_process_wins_and_a_new_process_replaces_it() {
        let h = RunnerHandlers::default();
        assert!(!h.contains("optuna_get_study"));
        h.adopt(&reply(&["optuna_get_study", "other"], 10, 2));
        assert!(h.contains("optuna_get_study") && h.contains("other"));
        // an older reply of the same process, handled late: ignored
        h.adopt(&reply(&["stale"], 10, 1));
        assert!(!h.contains("stale") && h.contains("other"));
        h.adopt(&reply(&["other"], 10, 3));
        assert!(!h.contains("optuna_get_study") && h.contains("other"));
        // a fresh runner (another pid) starts from its own, empty table
        h.adopt(&reply(&[], 11, 0));
        assert!(!h.contains("other"));
        // a reply without a table changes nothing
        h.adopt(&reply(&["x"], 11, 1));
        h.adopt(&Value::map([("status", Value::str("OK"))]));
        assert!(h.contains("x"));
    }
}
