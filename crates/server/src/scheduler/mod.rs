//! The scheduler service: one event loop owns the pure [`dask_core::State`];
//! connection tasks talk to it over a channel.
//!
//! * [`event_loop`]: the loop that owns the state, applies commands and
//!   delivers the outbox to per-connection batched writers.
//! * [`connection`]: what a new connection is (client stream, worker stream,
//!   nanny, or RPC) and the stream read loops.
//! * [`rpc`]: RPC handlers (`identity`, `gather`, `scatter`, `broadcast`, ...).
//! * [`graph`]: `update-graph` → materializer request → core graph.
//! * [`errors`]: error replies clients turn into exceptions.
//! * [`coordination`]: published datasets, variables and events.

pub mod config;
pub mod connection;
pub mod coordination;
pub mod dump;
pub mod errors;
pub mod event_loop;
pub mod feed;
pub mod graph;
pub mod hardware;
pub mod memory_sampler;
pub mod p2p;
pub mod perfreport;
pub mod plugins;
pub mod profile;
pub mod replicas;
pub mod restart;
pub mod retire;
pub mod rpc;
pub mod run_function;
pub mod runner_handlers;
pub mod scheduler_plugins;
pub mod worker_status;

use crate::materializer::MaterializerPool;
use crate::net::rpc::RpcPool;
use dask_core::State;
use dask_wire::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use event_loop::Command;

/// Seconds since the epoch, as Dask's `time()`.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A random UUID in Python's `str(uuid.uuid4())` form (scheduler ids,
/// sampler keys).
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn futures_wait_all(streams: Vec<crate::net::batched::BatchedSender>) {
    for s in streams {
        s.wait_closed().await;
    }
}

/// Static facts about this scheduler, reported by `identity` and the scheduler file.
#[derive(Debug, Clone)]
pub struct SchedulerInfo {
    /// `Scheduler-<uuid>`.
    pub id: String,
    /// The contact address clients and workers use (`tcp://ip:port`).
    pub address: String,
    /// Dashboard port, if HTTP is served.
    pub dashboard_port: Option<u16>,
    /// Start time (epoch seconds).
    pub started: f64,
}

/// Shared handle used by every connection task.
pub struct Scheduler {
    /// Identity facts.
    pub info: SchedulerInfo,
    commands: mpsc::UnboundedSender<Command>,
    /// Connections to workers for scheduler-initiated RPCs.
    pub rpc: RpcPool,
    /// The Python graph materializers.
    pub materializer: MaterializerPool,
    scatter_counter: AtomicUsize,
    /// Worker and nanny plugins installed on every (future) worker.
    pub plugins: plugins::Plugins,
    /// Notified when a client asks the scheduler to close (`terminate`).
    pub shutdown: Arc<tokio::sync::Notify>,
    /// Notified after a variable is set or an event is set: wakes the
    /// `variable_get` and `event_wait` calls waiting for that.
    pub coordination_changed: tokio::sync::Notify,
    /// Held by a running `replicate` or `rebalance`: one at a time, as
    /// Python's `_replica_lock`.
    pub replica_lock: tokio::sync::Mutex<()>,
    /// `MemorySampler`s running.
    pub memory_samplers: memory_sampler::MemorySamplers,
    /// Scheduler plugins registered, by name.
    pub scheduler_plugins: scheduler_plugins::SchedulerPlugins,
    /// RPC handlers Python code added in the function runner, whose calls
    /// are forwarded there.
    pub runner_handlers: runner_handlers::RunnerHandlers,
    /// True while `--preload` modules are starting (they may add handlers).
    pub preloading: tokio::sync::watch::Sender<bool>,
    /// `distributed.scheduler.blocked-handlers`: RPCs an operator switched
    /// off (set once at start-up, before the listeners open).
    blocked_handlers: std::sync::OnceLock<Vec<String>>,
}

impl Scheduler {
    /// Start the event loop that owns `state`; returns the shared handle.
    pub fn start(
        info: SchedulerInfo,
        state: State,
        rpc: RpcPool,
        materializer: MaterializerPool,
        idle_timeout: Option<std::time::Duration>,
    ) -> (Arc<Scheduler>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let sched = Arc::new(Scheduler {
            info,
            commands: tx,
            rpc,
            materializer,
            scatter_counter: AtomicUsize::new(0),
            plugins: plugins::Plugins::default(),
            shutdown: shutdown.clone(),
            coordination_changed: tokio::sync::Notify::new(),
            replica_lock: tokio::sync::Mutex::new(()),
            memory_samplers: memory_sampler::MemorySamplers::default(),
            scheduler_plugins: scheduler_plugins::SchedulerPlugins::default(),
            runner_handlers: runner_handlers::RunnerHandlers::default(),
            preloading: tokio::sync::watch::Sender::new(false),
            blocked_handlers: std::sync::OnceLock::new(),
        });
        let handle = tokio::spawn(event_loop::run(
            state,
            rx,
            sched.rpc.clone(),
            idle_timeout,
            shutdown,
            sched.materializer.clone(),
        ));
        (sched, handle)
    }

    /// Wait until no `--preload` module is starting.
    pub async fn preloads_started(&self) {
        let mut preloading = self.preloading.subscribe();
        // an error: the sender is gone, and the scheduler with it
        let _ = preloading.wait_for(|starting| !*starting).await;
    }

    /// Switch the RPCs named in `distributed.scheduler.blocked-handlers` off;
    /// a second call changes nothing.
    pub fn block_handlers(&self, ops: Vec<String>) {
        if !ops.is_empty() {
            tracing::info!("Blocked handlers (distributed.scheduler.blocked-handlers): {ops:?}");
        }
        let _ = self.blocked_handlers.set(ops);
    }

    /// The error reply for `op` when an operator blocked it (Python's
    /// `Server.handle_comm` raises this `ValueError`), else `None`.
    pub fn blocked_reply(&self, op: &str) -> Option<Value> {
        let blocked = self.blocked_handlers.get()?;
        blocked.iter().any(|b| b == op).then(|| {
            errors::error_reply(
                "ValueError",
                &format!(
                    "The '{op}' handler has been explicitly disallowed in Scheduler, possibly \
                     due to security concerns."
                ),
            )
        })
    }

    /// Queue a command for the event loop (dropped if the loop has ended).
    pub fn send(&self, cmd: Command) {
        let _ = self.commands.send(cmd);
    }

    /// Run `f` on the state inside the event loop and return its result.
    pub async fn with_state<T, F>(&self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut State, f64) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Call(Box::new(move |state, now| {
            let _ = tx.send(f(state, now));
        })));
        rx.await.ok()
    }

    /// Send one msgpack request to a materializer helper and return its
    /// decoded reply, whatever its status; transport and decoding failures
    /// become `RuntimeError` replies.
    pub async fn helper_request(&self, request: &Value) -> Result<Value, Value> {
        let body = bytes::Bytes::from(dask_wire::msgpack::encode(request));
        let reply = self.materializer.request(body).await.map_err(|e| {
            errors::error_reply("RuntimeError", &format!("graph materializer: {e}"))
        })?;
        dask_wire::msgpack::decode(&reply).map_err(|e| {
            errors::error_reply("RuntimeError", &format!("graph materializer reply: {e}"))
        })
    }

    /// Close every worker (as the Python scheduler does when it closes) and
    /// wait, boundedly, for those messages to be written.
    pub async fn close_workers(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Shutdown { reply: tx });
        let Ok(streams) = rx.await else { return };
        let flushed = futures_wait_all(streams);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), flushed).await;
    }

    /// Advance and return the scatter round-robin counter by `n`.
    pub fn next_scatter_offset(&self, n: usize) -> usize {
        self.scatter_counter.fetch_add(n, Ordering::Relaxed)
    }

    /// `identity` reply.
    pub async fn identity(&self, n_workers: i64) -> Value {
        let info = self.info.clone();
        self.with_state(move |s, _| identity_of(&info, s, n_workers))
            .await
            .unwrap_or(Value::Nil)
    }
}

/// `Scheduler.identity()`: this scheduler's facts and up to `n_workers`
/// workers' identities (all when negative), read from `s`.
pub fn identity_of(info: &SchedulerInfo, s: &State, n_workers: i64) -> Value {
    let (n, threads, memory) = s.cluster_totals();
    let services = match info.dashboard_port {
        Some(p) => Value::map([("dashboard", Value::Int(p as i64))]),
        None => Value::Map(Vec::new()),
    };
    Value::map([
        ("type", Value::str("Scheduler")),
        ("id", Value::str(info.id.clone())),
        ("address", Value::str(info.address.clone())),
        ("services", services),
        ("started", Value::Float(info.started)),
        ("n_workers", Value::from(n)),
        ("total_threads", Value::Int(threads)),
        ("total_memory", Value::Int(memory)),
        ("workers", s.workers_identity(n_workers)),
    ])
}
