//! Scheduler plugins (`Client.register_plugin(SchedulerPlugin)`): they run
//! in the function runner, the Python process that runs
//! `run_on_scheduler` functions, with the same stand-in for the scheduler
//! object.
//!
//! Registering one starts it there (`plugin.start(scheduler)`). Whenever
//! the runner's plugins change, its next reply carries its plugin table
//! (the hooks each overrides), and the state records an event for each
//! call of those hooks Python's scheduler would make
//! (`dask_core::pluginfeed`), which the event loop ships to the runner
//! after each command, in order. The hooks see the events a moment after
//! they happen, not inside the transition, so they cannot change the
//! scheduler's decisions: `valid_workers_downscaling`, whose answer would
//! have to, is refused when a plugin overrides it. A request that reaches
//! the runner after an event (a `run_on_scheduler` asking a plugin what it
//! saw) is written after it.
//!
//! `SchedulerUploadFile` (what `Client.upload_file` registers) is the
//! exception: a materializer helper writes its file where every helper
//! imports from, and no process keeps it.

use super::errors::error_reply;
use super::event_loop::Command;
use super::rpc::helper_error;
use super::Scheduler;
use crate::materializer::Availability;
use dask_core::pluginfeed::hooks;
use dask_wire::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One registered plugin.
#[derive(Debug, Clone, Copy)]
struct Registered {
    /// The hooks it overrides ([`hooks`] bits).
    hooks: u16,
    /// It lives in the function runner (an uploaded file's does not).
    in_runner: bool,
}

/// The registered scheduler plugins, by name.
#[derive(Default)]
pub struct SchedulerPlugins {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_name: BTreeMap<String, Registered>,
    /// The runner's process id and plugin version of the table adopted
    /// last: an older one (a reply handled late) is not adopted.
    runner_version: Option<super::run_function::RunnerVersion>,
}

impl SchedulerPlugins {
    /// Change the table, then tell the state the hooks to record, while
    /// the table is still locked: concurrent changes reach the state in
    /// the order they were made.
    fn change<T>(&self, sched: &Scheduler, f: impl FnOnce(&mut Table) -> T) -> T {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut t);
        let mask = t.by_name.values().fold(0, |m, p| m | p.hooks);
        sched.send(Command::Call(Box::new(move |s, _| {
            s.set_plugin_hooks(mask)
        })));
        out
    }

    fn get(&self, name: &str) -> Option<Registered> {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.by_name.get(name).copied()
    }
}

/// A function runner reply that carries its plugin table (`plugin_hooks`:
/// `{name: [hook, ...]}`, sent whenever its plugins changed, whoever
/// changed them: a registration, or `scheduler.add_plugin` in a preload or a
/// `run_on_scheduler` function) makes it the registry's, and the state
/// records events for those hooks from now on.
pub fn adopt_runner_table(sched: &Scheduler, reply: &Value) {
    let Some(table) = reply.get("plugin_hooks").and_then(Value::as_map) else {
        return;
    };
    let version = super::run_function::runner_version(reply, "plugin_version");
    let table: Vec<(String, u16)> = table
        .iter()
        .filter_map(|(name, hooks)| {
            let names = hooks
                .as_seq()
                .unwrap_or(&[])
                .iter()
                .filter_map(Value::as_str);
            Some((name.as_str()?.to_string(), hooks::from_names(names)))
        })
        .collect();
    sched.scheduler_plugins.change(sched, |t| {
        if super::run_function::is_stale(version, t.runner_version) {
            return;
        }
        t.runner_version = version;
        t.by_name.retain(|_, p| !p.in_runner);
        for (name, hooks) in table {
            let plugin = Registered {
                hooks,
                in_runner: true,
            };
            t.by_name.insert(name, plugin);
        }
    });
}

/// Whether the pickle is `SchedulerUploadFile`'s (its class is named in
/// it by module and name); the helper checks the class once unpickled.
fn is_upload_file(plugin: &[u8]) -> bool {
    let has = |needle: &[u8]| plugin.windows(needle.len()).any(|w| w == needle);
    has(b"SchedulerUploadFile") && has(b"distributed.diagnostics.plugin")
}

/// `register_scheduler_plugin(plugin, name, idempotent)`.
pub async fn rpc_register(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let plugin = match msg.get("plugin") {
        Some(Value::Bin(b)) => b.clone(),
        _ => {
            return Err(error_reply(
                "TypeError",
                "register_scheduler_plugin: 'plugin' must be the pickled plugin",
            ))
        }
    };
    if let Availability::Unavailable { reason } = sched.materializer.availability() {
        return Err(error_reply(
            "NotImplementedError",
            &format!(
                "Scheduler plugins (Client.upload_file included) run in the scheduler's \
                 Python (its graph materializer's), which is unavailable: {reason}"
            ),
        ));
    }
    let name = msg.get("name").and_then(Value::as_str).map(str::to_string);
    let idempotent = msg.get("idempotent").is_some_and(Value::truthy);
    if is_upload_file(&plugin) {
        let request = Value::map([
            ("op", Value::str("scheduler_plugin")),
            ("plugin", Value::Bin(plugin)),
        ]);
        let reply = sched.helper_request(&request).await?;
        if reply.get("status").and_then(Value::as_str) != Some("ok") {
            return Err(helper_error(&reply));
        }
        let name = name.unwrap_or_else(|| "upload_file".to_string());
        tracing::info!("Registered scheduler plugin {name} (an uploaded file)");
        let uploaded = Registered {
            hooks: 0,
            in_runner: false,
        };
        sched.scheduler_plugins.change(sched, |t| {
            t.by_name.insert(name, uploaded);
        });
        return Ok(Value::Nil);
    }
    let request = Value::map([
        ("op", Value::str("plugin_add")),
        ("plugin", Value::Bin(plugin)),
        ("name", name.map_or(Value::Nil, Value::str)),
        ("idempotent", Value::Bool(idempotent)),
        ("address", Value::str(sched.info.address.as_str())),
        ("scheduler_id", Value::str(sched.info.id.as_str())),
    ]);
    // the reply's plugin table is adopted on the way (`runner_reply`)
    let reply = runner_call(sched, request).await?;
    if reply.get("added").is_some_and(Value::truthy) {
        let name = reply
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        tracing::info!("Registered scheduler plugin {name}");
    }
    Ok(Value::Nil)
}

/// `unregister_scheduler_plugin(name)`: Python's `ValueError` for a name
/// not registered.
pub async fn rpc_unregister(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let name = msg
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(plugin) = sched.scheduler_plugins.get(&name) else {
        return Err(error_reply(
            "ValueError",
            &format!("Could not find plugin '{name}' among the current scheduler plugins"),
        ));
    };
    if plugin.in_runner {
        // its reply's plugin table no longer has it
        runner_call(
            sched,
            Value::map([
                ("op", Value::str("plugin_remove")),
                ("name", Value::str(name.as_str())),
            ]),
        )
        .await?;
    } else {
        sched.scheduler_plugins.change(sched, |t| {
            t.by_name.remove(&name);
        });
    }
    Ok(Value::Nil)
}

/// One request to the function runner; its error replies become errors
/// the client raises.
async fn runner_call(sched: &Arc<Scheduler>, request: Value) -> Result<Value, Value> {
    let reply = super::run_function::runner_reply(sched, request, "scheduler plugin").await?;
    if reply.get("status").and_then(Value::as_str) == Some("ok") {
        Ok(reply)
    } else {
        Err(helper_error(&reply))
    }
}
