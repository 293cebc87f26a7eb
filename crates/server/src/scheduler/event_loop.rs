//! The single owner of the scheduler state.
//!
//! Connection tasks send [`Command`]s; the loop applies each to the pure
//! state machine, then delivers the messages it produced to the batched
//! writers of the addressed worker and client streams. Periodic duties
//! (worker time-to-live, idle timeout) run on a one-second tick.

use super::now;
use crate::net::batched::BatchedSender;
use crate::net::rpc::RpcPool;
use dask_core::{
    ClientId, GraphSubmission, Outgoing, State, TaskFinished, WorkerId, WorkerRegistration,
};
use dask_wire::{Key, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A closure run on the state inside the loop (RPC queries and updates).
pub type StateCall = Box<dyn FnOnce(&mut State, f64) + Send>;

/// Everything the event loop can be asked to do.
pub enum Command {
    /// A client opened its report stream (`register-client`).
    ClientConnected {
        /// The client's id string.
        name: String,
        /// Writer of its report stream.
        sender: BatchedSender,
        /// Its `get_versions()` (Python's `ClientState.versions`).
        versions: Value,
        /// Gets the client's id.
        reply: oneshot::Sender<ClientId>,
    },
    /// Ops read from a client's report stream.
    ClientOps {
        /// Who sent them.
        client: ClientId,
        /// The op maps.
        ops: Vec<Value>,
    },
    /// A materialized graph.
    Graph {
        /// Submitting client.
        client: ClientId,
        /// The tasks.
        graph: GraphSubmission,
    },
    /// A graph that could not be materialized.
    GraphFailed {
        /// Submitting client.
        client: ClientId,
        /// The keys it asked for.
        keys: Vec<Key>,
        /// Pickled exception (or text).
        exception: Value,
        /// Pickled traceback or nil.
        traceback: Value,
    },
    /// A client's stream ended (closed, or the client died).
    ClientGone {
        /// Which.
        client: ClientId,
    },
    /// A worker registered; its stream becomes `sender`.
    WorkerRegister {
        /// Registration fields.
        reg: Box<WorkerRegistration>,
        /// Writer of its stream.
        sender: BatchedSender,
        /// Gets the worker id and heartbeat interval, or the refusal.
        reply: oneshot::Sender<Result<(WorkerId, f64), String>>,
        /// Registered worker plugins (`{name: pickled plugin}`) for the reply.
        plugins: Value,
    },
    /// Ops read from a worker's stream.
    WorkerOps {
        /// Who sent them.
        worker: WorkerId,
        /// The ops, in stream order.
        ops: Vec<WorkerOp>,
    },
    /// A worker's stream ended.
    WorkerGone {
        /// Which.
        worker: WorkerId,
    },
    /// Run a closure on the state.
    Call(StateCall),
    /// A cluster manager's `subscribe_worker_status` stream: write it the
    /// identity now and every worker added or removed from then on.
    SubscribeWorkerStatus {
        /// Writer of the subscriber's connection.
        sender: BatchedSender,
        /// This scheduler's facts, for the identity.
        info: super::SchedulerInfo,
    },
    /// The scheduler is closing: tell every worker to close (like Python's
    /// `Scheduler.close`) and hand back their streams so they can be flushed.
    Shutdown {
        /// Gets the worker streams, already closing.
        reply: oneshot::Sender<Vec<BatchedSender>>,
    },
}

/// One op read from a worker's stream.
// `TaskFinished` is the large variant and by far the most frequent one:
// boxing it would cost an allocation per finished task.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum WorkerOp {
    /// A `task-finished`, read without a `Value` tree.
    TaskFinished(TaskFinished),
    /// Any other op map.
    Op(Value),
}

struct Loop {
    state: State,
    clients: HashMap<ClientId, BatchedSender>,
    workers: HashMap<WorkerId, BatchedSender>,
    worker_addrs: HashMap<WorkerId, String>,
    /// Worker names, for Dask's "Remove worker addr: ... name: ..." line.
    worker_names: HashMap<WorkerId, String>,
    rpc: RpcPool,
    /// `subscribe_worker_status` streams (closed ones are dropped lazily).
    worker_status: Vec<BatchedSender>,
    /// Where the scheduler plugins run (the function runner).
    materializer: crate::materializer::MaterializerPool,
    /// The scheduler's `get_versions()`, for the version check of a
    /// registering worker: read once the Python environment is up.
    scheduler_versions: Option<Value>,
}

impl Loop {
    /// Python's version check for worker `id`, just added: the warning of
    /// its registration reply (`""` when nothing differs).
    fn version_warning(&mut self, id: WorkerId) -> String {
        if self.scheduler_versions.is_none() {
            let versions = super::rpc::checked_versions(&self.materializer);
            self.scheduler_versions = Some(versions).filter(|v| !v.is_nil());
        }
        self.state
            .worker_version_mismatch(id, self.scheduler_versions.as_ref().unwrap_or(&Value::Nil))
    }

    fn apply(&mut self, cmd: Command) {
        let now = now();
        match cmd {
            Command::ClientConnected {
                name,
                sender,
                versions,
                reply,
            } => {
                let id = self.state.add_client(&name, now);
                self.state.set_client_versions(id, versions);
                tracing::info!("Receive client connection: {name}");
                self.clients.insert(id, sender);
                let _ = reply.send(id);
            }
            Command::ClientOps { client, ops } => {
                for op in &ops {
                    if let Err(e) = self.state.handle_client_op(client, op, now) {
                        let who = self.state.client_name(client).unwrap_or("?").to_string();
                        tracing::warn!("Ignoring message from client {who}: {e}");
                    }
                }
            }
            Command::Graph { client, graph } => self.state.update_graph(client, graph, now),
            Command::GraphFailed {
                client,
                keys,
                exception,
                traceback,
            } => self
                .state
                .graph_failed(client, &keys, exception, traceback, now),
            Command::ClientGone { client } => {
                if let Some(name) = self.state.client_name(client) {
                    tracing::info!("Remove client {name}");
                    tracing::info!("Close client connection: {name}");
                }
                if let Some(sender) = self.clients.remove(&client) {
                    sender.close();
                }
                self.state.remove_client(client, now);
            }
            Command::WorkerRegister {
                reg,
                sender,
                reply,
                plugins,
            } => {
                let address = reg.address.clone();
                let name = match &reg.name {
                    Value::Str(s) => s.to_string(),
                    Value::Nil => address.clone(),
                    other => other.to_string(),
                };
                match self.state.add_worker(*reg, now) {
                    Ok(id) => {
                        tracing::info!("Register worker addr: {address} name: {name}");
                        let warning = self.version_warning(id);
                        if !warning.is_empty() {
                            tracing::debug!("{warning}");
                        }
                        tracing::info!("Starting worker compute stream, {address}");
                        self.worker_names.insert(id, name);
                        let hb = dask_core::queries::heartbeat_interval(self.workers.len() + 1);
                        // The reply goes out before anything else on this stream.
                        sender.send_raw(Value::map([
                            ("status", Value::str("OK")),
                            ("time", Value::Float(now)),
                            ("heartbeat-interval", Value::Float(hb)),
                            ("worker-plugins", plugins),
                            ("warning", Value::str(warning)),
                            ("error", Value::str("")),
                        ]));
                        self.workers.insert(id, sender);
                        self.tell_worker_status(|s| {
                            let ident = s.worker_identity_of(id)?;
                            Some(super::worker_status::added(&address, ident))
                        });
                        self.worker_addrs.insert(id, address);
                        let _ = reply.send(Ok((id, hb)));
                    }
                    Err(e) => {
                        tracing::warn!("Refusing worker {address}: {e}");
                        sender.send_raw(Value::map([
                            ("status", Value::str("error")),
                            ("message", Value::str(e.to_string())),
                            ("time", Value::Float(now)),
                        ]));
                        sender.close();
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Command::WorkerOps { worker, ops } => {
                for op in &ops {
                    let handled = match op {
                        WorkerOp::TaskFinished(tf) => {
                            self.state.handle_task_finished(worker, tf, now)
                        }
                        WorkerOp::Op(v) => self.state.handle_worker_op(worker, v, now),
                    };
                    if let Err(e) = handled {
                        let who = self.worker_addrs.get(&worker).cloned().unwrap_or_default();
                        tracing::warn!("Ignoring message from worker {who}: {e}");
                    }
                }
            }
            Command::WorkerGone { worker } => {
                // "Remove worker addr: ..." is logged by `drop_removed_workers`.
                self.state.remove_worker(worker, now);
            }
            Command::Call(f) => f(&mut self.state, now),
            Command::SubscribeWorkerStatus { sender, info } => {
                let identity = super::identity_of(&info, &self.state, -1);
                sender.send_raw(super::worker_status::initial_identity(identity));
                self.worker_status.push(sender);
            }
            Command::Shutdown { reply } => {
                let streams: Vec<BatchedSender> = self.workers.values().cloned().collect();
                for s in &streams {
                    s.send(Value::map([
                        ("op", Value::str("close")),
                        ("reason", Value::str("scheduler-close")),
                    ]));
                    s.send(Value::map([("op", Value::str("close-stream"))]));
                    s.close();
                }
                for s in self.clients.values() {
                    s.send(Value::map([("op", Value::str("stream-closed"))]));
                    s.close();
                }
                for s in self.worker_status.drain(..) {
                    s.close();
                }
                let _ = reply.send(streams);
            }
        }
        // Deliver first: a worker removed by this command still gets what
        // was queued for it (a `close`) before its stream is closed.
        self.deliver();
        self.drop_removed_workers();
    }

    /// Close the streams of workers the state no longer knows.
    fn drop_removed_workers(&mut self) {
        if self.workers.len() == self.state.worker_count() {
            return;
        }
        let gone: Vec<WorkerId> = self
            .workers
            .keys()
            .copied()
            .filter(|w| self.state.worker_address(*w).is_none())
            .collect();
        for w in gone {
            if let Some(sender) = self.workers.remove(&w) {
                sender.close();
            }
            let name = self.worker_names.remove(&w).unwrap_or_default();
            if let Some(addr) = self.worker_addrs.remove(&w) {
                tracing::info!(
                    "Remove worker addr: {addr} name: {name} (stimulus_id='remove-worker-{:.6}')",
                    now()
                );
                self.rpc.remove(&addr);
                self.tell_worker_status(|_| Some(super::worker_status::removed(&addr)));
            }
        }
        if self.state.worker_count() == 0 {
            tracing::info!("Lost all workers");
        }
    }

    /// Send the message `msg` builds to every `subscribe_worker_status`
    /// stream still open (built only if there is one).
    fn tell_worker_status(&mut self, msg: impl FnOnce(&State) -> Option<Value>) {
        self.worker_status.retain(|s| !s.is_closed());
        if self.worker_status.is_empty() {
            return;
        }
        let Some(msg) = msg(&self.state) else { return };
        for s in &self.worker_status {
            s.send(msg.clone());
        }
    }

    fn deliver(&mut self) {
        // before the messages: a client that sees a result and then asks
        // the plugins about it finds them told
        let events = self.state.drain_plugin_events();
        if !events.is_empty() {
            let frame = dask_wire::msgpack::encode(&Value::map([
                ("op", Value::str("plugin_events")),
                ("events", Value::Array(events)),
            ]));
            self.materializer.notify_function_runner(frame.into());
        }
        for out in self.state.drain_outbox() {
            match out {
                Outgoing::Worker(w, msg) => {
                    if let Some(s) = self.workers.get(&w) {
                        s.send(msg);
                    }
                }
                Outgoing::Client(c, msg) => {
                    if let Some(s) = self.clients.get(&c) {
                        s.send(msg);
                    }
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = now();
        for w in self.state.expired_workers(now) {
            if let Some(addr) = self.state.worker_address(w) {
                tracing::warn!("Worker failed to heartbeat for too long; removing {addr}");
            }
            self.state.remove_worker(w, now);
        }
        // Python checks every `locks.lease-validation-interval` (10 s); a
        // waiting acquire looks again within a second.
        self.state.cleanup_event_topics(now);
        let expired = self.state.semaphore_expire_leases(now);
        if expired > 0 {
            tracing::debug!("{expired} semaphore lease(s) timed out");
        }
        self.deliver();
        self.drop_removed_workers();
    }
}

/// One Active Memory Manager run, logged as Python's `ReduceReplicas` logs
/// it (the periodic callback and `client.amm.run_once()`).
pub(crate) fn run_amm(state: &mut State, now: f64) {
    let run = state.amm_run_once(now);
    if run.dropped > 0 {
        tracing::debug!(
            "ReduceReplicas: Dropping {} superfluous replicas of {} tasks",
            run.dropped,
            run.tasks
        );
    }
}

/// Run the loop until every command sender is gone; the idle timeout
/// notifies `shutdown` (the binary then closes the workers and exits).
pub async fn run(
    state: State,
    mut rx: mpsc::UnboundedReceiver<Command>,
    rpc: RpcPool,
    idle_timeout: Option<Duration>,
    shutdown: std::sync::Arc<tokio::sync::Notify>,
    materializer: crate::materializer::MaterializerPool,
) {
    let mut lp = Loop {
        state,
        clients: HashMap::new(),
        workers: HashMap::new(),
        worker_addrs: HashMap::new(),
        worker_names: HashMap::new(),
        rpc,
        worker_status: Vec::new(),
        materializer,
        scheduler_versions: None,
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // Dask's `work-stealing-interval` (1 s by default in distributed 2026.8.0)
    let steal_every = lp
        .state
        .config()
        .work_stealing_interval
        .clamp(0.001, 3600.0);
    let mut steal_ticker = tokio::time::interval(Duration::from_secs_f64(steal_every));
    steal_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stealing = lp.state.config().work_stealing;
    // Python's `ActiveMemoryManagerExtension` callback (`interval`, 2 s).
    let amm_every = Duration::from_secs_f64(lp.state.config().amm.interval.clamp(0.01, 3600.0));
    let mut amm_ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + amm_every, amm_every);
    amm_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Python's periodic `_check_no_workers` (every 250 ms), when
    // `no-workers-timeout` is set.
    let no_workers_timeout = lp.state.config().no_workers_timeout.is_some();
    let mut no_workers_ticker = tokio::time::interval(Duration::from_millis(250));
    no_workers_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut idle_notified = false;
    // Dask's `distributed.admin.tick` (interval 20ms, limit 3s): measures how
    // late the loop gets to its timers, for the tick metrics and the
    // "unresponsive" warning.
    let mut admin_ticker = tokio::time::interval(Duration::from_millis(20));
    admin_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_admin_tick = std::time::Instant::now();
    let metrics = crate::metrics::global();
    loop {
        let mut busy_from = None;
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => {
                    busy_from = Some(std::time::Instant::now());
                    lp.apply(cmd);
                }
                None => return,
            },
            _ = steal_ticker.tick(), if stealing => {
                busy_from = Some(std::time::Instant::now());
                lp.state.balance(now());
                lp.deliver();
            }
            _ = amm_ticker.tick(), if lp.state.amm_running() => {
                busy_from = Some(std::time::Instant::now());
                run_amm(&mut lp.state, now());
                lp.deliver();
            }
            _ = no_workers_ticker.tick(), if no_workers_timeout => {
                busy_from = Some(std::time::Instant::now());
                if !lp.state.check_no_workers(now()).is_empty() {
                    lp.deliver();
                }
            }
            _ = admin_ticker.tick() => {
                let gap = last_admin_tick.elapsed().as_secs_f64();
                last_admin_tick = std::time::Instant::now();
                metrics.tick(gap, now());
                if gap > 3.0 {
                    // Python's `Server._measure_tick` logs it as `distributed.core`
                    tracing::info!(
                        target: "distributed.core",
                        "Event loop was unresponsive in Scheduler for {gap:.2}s.  This is often \
                         caused by long-running GIL-holding functions or moving large chunks of \
                         data. This can cause timeouts and instability."
                    );
                }
            }
            _ = ticker.tick() => {
                busy_from = Some(std::time::Instant::now());
                lp.tick();
                // Like Python's periodic `check_idle`: the same idleness the
                // operator's `check_idle` API reports drives the idle timeout.
                let since = lp.state.check_idle(now());
                if let (Some(timeout), Some(since)) = (idle_timeout, since) {
                    if !idle_notified && now() > since + timeout.as_secs_f64() {
                        tracing::info!(
                            "Scheduler closing after being idle for {}",
                            crate::logging::format_time(timeout.as_secs_f64())
                        );
                        shutdown.notify_one();
                        idle_notified = true;
                    }
                }
            }
        }
        if let Some(t) = busy_from {
            metrics.loop_busy(t.elapsed().as_secs_f64());
        }
    }
}
