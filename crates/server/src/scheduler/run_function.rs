//! `run_function` (`Client.run_on_scheduler`).
//!
//! Why: libraries and users run Python on the scheduler's host through it.
//! `xgboost.dask.train` starts its tracker there; `performance_report` reads
//! the system monitor's sample count. The Python scheduler calls the
//! function in its own process. Here, when its pickle may be
//! `performance_report`'s lambda, a materializer helper says what it is
//! (`describe_scheduler_function`):
//! * `performance_report`'s lambda is answered here, from this process's
//!   own monitor;
//! * any other function runs in the function runner, a long-lived Python
//!   process on this host (`materializer/runner.rs`), and its result or
//!   exception goes back as Python's `distributed.worker.run` sends it.
//!
//! A function that takes `dask_scheduler` (or `dask_worker`) gets a stand-in
//! for the scheduler object there: one for the runner's lifetime, with
//! `address` and `id`, keeping the attributes functions set on it (raft-dask
//! keeps its NCCL root id so), and raising `NotImplementedError`, naming the
//! attribute, for anything else a real `Scheduler` has.
//!
//! Each call is logged as the event `{"action": "run-function", "function"}`
//! on topic `all`, as Python logs it.

use super::errors::error_reply;
use super::graph::serialized_or_bin;
use super::rpc::helper_error;
use super::Scheduler;
use crate::materializer::Availability;
use crate::monitor;
use dask_wire::Value;
use std::sync::Arc;

/// `run_function(function, args, kwargs, wait)`.
pub async fn rpc_run_function(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let field = |k: &str| msg.get(k).cloned().unwrap_or(Value::Nil);
    let event = Value::map([
        ("action", Value::str("run-function")),
        ("function", field("function")),
    ]);
    let _ = sched
        .with_state(move |s, now| s.log_event("all", event, now))
        .await;
    if let Availability::Unavailable { reason } = sched.materializer.availability() {
        return Err(error_reply(
            "NotImplementedError",
            &format!(
                "Client.run_on_scheduler runs Python functions, and the Rust dask-scheduler's \
                 Python (its graph materializer's) is unavailable: {reason}"
            ),
        ));
    }
    let request = Value::map([
        ("op", Value::str("run")),
        ("function", field("function")),
        ("args", field("args")),
        ("kwargs", field("kwargs")),
        (
            "wait",
            msg.get("wait").cloned().unwrap_or(Value::Bool(true)),
        ),
        // for the stand-in a `dask_scheduler` argument gets
        ("address", Value::str(sched.info.address.as_str())),
        ("scheduler_id", Value::str(sched.info.id.as_str())),
    ]);
    if !may_be_performance_reports(msg) {
        return run(sched, request).await;
    }
    let describe = Value::map([
        ("op", Value::str("describe_scheduler_function")),
        ("function", field("function")),
    ]);
    let reply = sched.helper_request(&describe).await?;
    match (
        reply.get("status").and_then(Value::as_str),
        reply.get("kind").and_then(Value::as_str),
    ) {
        (Some("ok"), Some("monitor_count")) => Ok(Value::map([
            ("status", Value::str("OK")),
            ("result", Value::from(monitor::count() as usize)),
        ])),
        (Some("ok"), Some("run")) => run(sched, request).await,
        (Some("ok"), other) => Err(error_reply(
            "RuntimeError",
            &format!("graph materializer: unexpected function kind {other:?}"),
        )),
        _ => Err(helper_error(&reply)),
    }
}

/// Whether the pickled function may be `performance_report`'s lambda, which
/// a helper then recognises. That lambda travels by value, its qualified
/// name in the pickle; any function whose pickle lacks the name goes
/// straight to the runner, a round trip to a helper fewer.
fn may_be_performance_reports(msg: &Value) -> bool {
    const NAME: &[u8] = b"performance_report";
    match msg.get("function") {
        Some(Value::Bin(b)) => b.windows(NAME.len()).any(|w| w == NAME),
        _ => true,
    }
}

/// Send `request` to the function runner and decode its reply (adopting
/// the plugin table it may carry); failures to get one are `RuntimeError`
/// replies starting with `what`.
pub(super) async fn runner_reply(
    sched: &Arc<Scheduler>,
    request: Value,
    what: &str,
) -> Result<Value, Value> {
    let frame = sched
        .materializer
        .run_function(request)
        .await
        .map_err(|e| error_reply("RuntimeError", &format!("{what}: {e}")))?;
    let reply = dask_wire::msgpack::decode(&frame).map_err(|e| {
        error_reply(
            "RuntimeError",
            &format!("{what}: malformed reply from the function runner: {e}"),
        )
    })?;
    // a function may have added or removed scheduler plugins or handlers
    super::scheduler_plugins::adopt_runner_table(sched, &reply);
    sched.runner_handlers.adopt(&reply);
    Ok(reply)
}

/// Which runner process sent a table in its replies, and how many changes it
/// had made to it: `[pid, count]` (the plugin table's `plugin_version`, the
/// handlers' `rpc_handlers_version`).
pub(super) type RunnerVersion = (i64, i64);

/// The version a runner reply gives in `field`.
pub(super) fn runner_version(reply: &Value, field: &str) -> Option<RunnerVersion> {
    let v = reply.get(field)?.as_seq()?;
    Some((v.first()?.as_i64()?, v.get(1)?.as_i64()?))
}

/// Whether a table of version `new` is older than the one kept (`last`):
/// replies may be handled out of order, so a late reply of the same process
/// must not undo a newer table; another process's table always replaces it.
pub(super) fn is_stale(new: Option<RunnerVersion>, last: Option<RunnerVersion>) -> bool {
    matches!((new, last), (Some((pid, v)), Some((last_pid, last_v))) if pid == last_pid && v < last_v)
}

/// Run the call in the function runner and shape its reply as Python's.
async fn run(sched: &Arc<Scheduler>, request: Value) -> Result<Value, Value> {
    let reply = runner_reply(sched, request, "run_on_scheduler").await?;
    match reply.get("status").and_then(Value::as_str) {
        Some("OK") => Ok(Value::map([
            ("status", Value::str("OK")),
            ("result", serialized_or_bin(&reply, "result_ser", "result")),
        ])),
        // The function raised: a reply the client raises from, as Python's
        // `error_message`.
        Some("error") => {
            let text = |k: &str| reply.get(k).cloned().unwrap_or_else(|| Value::str(""));
            Ok(Value::map([
                ("status", Value::str("error")),
                (
                    "exception",
                    serialized_or_bin(&reply, "exception_ser", "exception"),
                ),
                (
                    "traceback",
                    serialized_or_bin(&reply, "traceback_ser", "traceback"),
                ),
                ("exception_text", text("exception_text")),
                ("traceback_text", text("traceback_text")),
            ]))
        }
        _ => Err(helper_error(&reply)),
    }
}
