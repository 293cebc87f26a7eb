//! Prometheus metrics for `/metrics`.
//!
//! Two kinds of families:
//! * the `dask_*` families of the Python scheduler's exporter
//!   (`distributed/http/scheduler/prometheus/`), with the same names, types,
//!   help texts and labels, built per scrape from a
//!   [`dask_core::stats::MetricsSnapshot`] taken on the event loop;
//! * our own, kept in a process-wide [`ServerMetrics`] updated where things
//!   happen (per-op message counts, graph materialization latency and queue
//!   depth, event-loop busy time and tick durations), plus `process_*` from
//!   the `prometheus` crate's process collector.

use dask_core::stats::{state_index, MetricsSnapshot, ALL_TASK_STATES, STEAL_COST_MULTIPLIERS};
use dask_core::TaskState;
use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Ops counted by name in `dask_scheduler_messages_total`; anything else a
/// peer sends is counted as `other`, so a peer cannot grow the label set.
const KNOWN_OPS: &[&str] = &[
    "task-finished",
    "task-erred",
    "release-worker-data",
    "add-keys",
    "worker-status-change",
    "long-running",
    "reschedule",
    "request-refresh-who-has",
    "log-event",
    "steal-response",
    "keep-alive",
    "heartbeat-worker",
    "heartbeat-client",
    "update-graph",
    "client-desires-keys",
    "client-releases-keys",
    "update-data",
    "report-key",
    "client-key-exists",
    "missing-data",
    "retry",
    "cancel-keys",
    "restart",
    "subscribe-topic",
    "unsubscribe-topic",
    "close-client",
    "close-stream",
    "register-client",
    "register-worker",
    "unregister",
    "identity",
    "gather",
    "scatter",
    "broadcast",
    "who_has",
    "has_what",
    "processing",
    "ncores",
    "ncores_running",
    "nbytes",
    "run_function",
    "terminate",
    "retire_workers",
    "adaptive_target",
    "memory_sampler_start",
    "memory_sampler_stop",
    "check_idle",
    "get_metadata",
    "set_metadata",
    "publish_put",
    "publish_get",
    "publish_list",
    "call_stack",
    "register_worker_plugin",
    "register_nanny_plugin",
    "log_event",
    "events",
    "get_task_status",
    "proxy",
    "feed",
    "subscribe_worker_status",
    "performance_report",
];

/// Sources of `dask_scheduler_messages_total`.
const SOURCES: [&str; 4] = ["client", "worker", "rpc", "connection"];

/// Process-wide metrics of the server (not the scheduler state).
pub struct ServerMetrics {
    registry: Registry,
    messages: IntCounterVec,
    /// Children of `messages` by (op index, source index), created on first
    /// use (so unused combinations are not exported), then a plain atomic add.
    message_cells: Vec<[OnceLock<IntCounter>; 4]>,
    op_index: HashMap<&'static str, usize>,
    materialize_seconds: Histogram,
    materialize_queue: IntGauge,
    loop_busy: Counter,
    ticks: IntCounter,
    /// Longest tick gap (f64 bits) since the last scrape.
    tick_max: AtomicU64,
    /// Epoch seconds (f64 bits) of the last tick; 0 before the first.
    last_tick: AtomicU64,
}

/// The process-wide metrics (created on first use).
pub fn global() -> &'static ServerMetrics {
    static M: OnceLock<ServerMetrics> = OnceLock::new();
    M.get_or_init(ServerMetrics::new)
}

impl ServerMetrics {
    fn new() -> ServerMetrics {
        let registry = Registry::new();
        let messages = IntCounterVec::new(
            Opts::new(
                "dask_scheduler_messages_total",
                "Messages received from clients and workers, by source and op",
            ),
            &["source", "op"],
        )
        .expect("valid metric");
        let materialize_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "dask_scheduler_graph_materialization_seconds",
                "Time to materialize an update-graph in a Python helper (queueing included)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
        )
        .expect("valid metric");
        let materialize_queue = IntGauge::new(
            "dask_scheduler_graph_materialization_queue_depth",
            "Graphs waiting for or being materialized right now",
        )
        .expect("valid metric");
        let loop_busy = Counter::new(
            "dask_scheduler_event_loop_busy_seconds_total",
            "Time the scheduler event loop spent handling messages and timers",
        )
        .expect("valid metric");
        let ticks = IntCounter::new(
            "dask_scheduler_event_loop_ticks_total",
            "Iterations of the scheduler event loop",
        )
        .expect("valid metric");
        for c in [
            Box::new(messages.clone()) as Box<dyn Collector>,
            Box::new(materialize_seconds.clone()),
            Box::new(materialize_queue.clone()),
            Box::new(loop_busy.clone()),
            Box::new(ticks.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(pc));
        }
        // KNOWN_OPS, then `other`.
        let message_cells = (0..=KNOWN_OPS.len())
            .map(|_| std::array::from_fn(|_| OnceLock::new()))
            .collect();
        let op_index = KNOWN_OPS.iter().enumerate().map(|(i, o)| (*o, i)).collect();
        ServerMetrics {
            registry,
            messages,
            message_cells,
            op_index,
            materialize_seconds,
            materialize_queue,
            loop_busy,
            ticks,
            tick_max: AtomicU64::new(0f64.to_bits()),
            last_tick: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Count one op received from `source`: `client` / `worker` (stream ops),
    /// `rpc` (request/response ops), `connection` (the first message of each
    /// new connection, which says what kind of connection it is).
    pub fn count_op(&self, source: &'static str, op: Option<&str>) {
        let s = SOURCES.iter().position(|x| *x == source).unwrap_or(2);
        let o = op
            .and_then(|o| self.op_index.get(o).copied())
            .unwrap_or(KNOWN_OPS.len());
        self.message_cells[o][s]
            .get_or_init(|| {
                let name = KNOWN_OPS.get(o).copied().unwrap_or("other");
                self.messages.with_label_values(&[SOURCES[s], name])
            })
            .inc();
    }

    /// A graph entered the materializer queue; the guard records its latency
    /// and leaves the queue when dropped.
    pub fn materialization(&self) -> MaterializeTimer {
        self.materialize_queue.inc();
        MaterializeTimer {
            start: std::time::Instant::now(),
        }
    }

    /// Time spent by the event loop handling one command or timer.
    pub fn loop_busy(&self, seconds: f64) {
        self.loop_busy.inc_by(seconds.max(0.0));
    }

    /// One event-loop tick (Dask's `_tick`) at epoch seconds `now`, `gap`
    /// seconds after the previous one.
    pub fn tick(&self, gap: f64, now: f64) {
        self.ticks.inc();
        self.last_tick.store(now.to_bits(), Ordering::Relaxed);
        let mut cur = self.tick_max.load(Ordering::Relaxed);
        while gap > f64::from_bits(cur) {
            match self.tick_max.compare_exchange_weak(
                cur,
                gap.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    /// Total event-loop busy seconds so far.
    pub fn loop_busy_seconds(&self) -> f64 {
        self.loop_busy.get()
    }

    /// Graphs currently in the materializer queue.
    pub fn materialization_queue_depth(&self) -> i64 {
        self.materialize_queue.get()
    }
}

/// Records a materialization's latency when dropped (see
/// [`ServerMetrics::materialization`]).
pub struct MaterializeTimer {
    start: std::time::Instant,
}

impl Drop for MaterializeTimer {
    fn drop(&mut self) {
        let m = global();
        m.materialize_queue.dec();
        m.materialize_seconds
            .observe(self.start.elapsed().as_secs_f64());
    }
}

fn gauge(r: &Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::new(name, help).expect("valid metric");
    g.set(v);
    r.register(Box::new(g)).expect("unique metric names");
}

fn counter(r: &Registry, name: &str, help: &str, v: f64) {
    let c = Counter::new(name, help).expect("valid metric");
    c.inc_by(v.max(0.0));
    r.register(Box::new(c)).expect("unique metric names");
}

/// Python's `str(multiplier)` for the stealing `cost_multiplier` label.
fn multiplier_label(m: f64) -> String {
    if m == 1.0 {
        "1.0".to_string()
    } else {
        format!("{m}")
    }
}

/// The `dask_*` families of the Python exporter, from a state snapshot.
/// `stealing`: whether work stealing is on (Python exports the stealing
/// families only when the extension is loaded).
fn dask_families(r: &Registry, snap: &MetricsSnapshot, stealing: bool, tick_max: f64, ticks: u64) {
    gauge(
        r,
        "dask_scheduler_clients",
        "Number of clients connected",
        snap.clients as f64,
    );
    counter(
        r,
        "dask_scheduler_client_connections_added_total",
        "Total number of client connections added",
        snap.clients_added as f64,
    );
    counter(
        r,
        "dask_scheduler_client_connections_removed_total",
        "Total number of client connections removed",
        snap.clients_removed as f64,
    );
    gauge(
        r,
        "dask_scheduler_desired_workers",
        "Number of workers scheduler needs for task graph",
        snap.desired_workers as f64,
    );
    let workers = GaugeVec::new(
        Opts::new(
            "dask_scheduler_workers",
            "Number of workers known by scheduler",
        ),
        &["state"],
    )
    .expect("valid metric");
    for (state, n) in [
        ("idle", snap.workers_idle),
        ("partially_saturated", snap.workers_partially_saturated),
        ("saturated", snap.workers_saturated),
        ("paused", snap.workers_paused),
        ("retiring", snap.workers_retiring),
    ] {
        workers.with_label_values(&[state]).set(n as f64);
    }
    r.register(Box::new(workers)).expect("unique metric names");
    counter(
        r,
        "dask_scheduler_workers_added_total",
        "Total number of workers added",
        snap.workers_added as f64,
    );
    counter(
        r,
        "dask_scheduler_workers_removed_total",
        "Total number of workers removed",
        snap.workers_removed as f64,
    );

    let per_prefix = |name: &str, help: &str| {
        CounterVec::new(Opts::new(name, help), &["task_prefix_name"]).expect("valid metric")
    };
    let suspicious = per_prefix(
        "dask_scheduler_tasks_suspicious_total",
        "Total number of times a task has been marked suspicious",
    );
    let compute = per_prefix(
        "dask_scheduler_tasks_compute_seconds_total",
        "Total amount of compute time spent in each prefix",
    );
    let transfer = per_prefix(
        "dask_scheduler_tasks_transfer_seconds_total",
        "Total amount of transfer time spent in each prefix",
    );
    let output = GaugeVec::new(
        Opts::new(
            "dask_scheduler_tasks_output_bytes",
            "Current number of bytes in memory (without duplicates) for each prefix",
        ),
        &["task_prefix_name"],
    )
    .expect("valid metric");
    let state_totals = CounterVec::new(
        Opts::new(
            "dask_scheduler_prefix_state_totals_total",
            "Accumulated count of task prefix in each state",
        ),
        &["task_prefix_name", "state"],
    )
    .expect("valid metric");
    for p in snap.prefixes.iter().filter(|p| p.has_history()) {
        let l = [p.name.as_str()];
        suspicious
            .with_label_values(&l)
            .inc_by(p.counters.suspicious as f64);
        compute
            .with_label_values(&l)
            .inc_by(p.counters.compute_seconds.max(0.0));
        transfer
            .with_label_values(&l)
            .inc_by(p.counters.transfer_seconds.max(0.0));
        output.with_label_values(&l).set(p.nbytes_in_memory as f64);
        for s in ALL_TASK_STATES {
            let n = p.counters.state_totals[state_index(s)];
            if n > 0 {
                state_totals
                    .with_label_values(&[p.name.as_str(), s.as_str()])
                    .inc_by(n as f64);
            }
        }
    }
    r.register(Box::new(suspicious))
        .expect("unique metric names");
    counter(
        r,
        "dask_scheduler_tasks_forgotten_total",
        "Total number of processed tasks no longer in memory and already removed from the \
         scheduler job queue\nNote: Task groups on the scheduler which have all tasks in the \
         forgotten state are not included.",
        snap.tasks[state_index(TaskState::Forgotten)] as f64,
    );
    let tasks = GaugeVec::new(
        Opts::new("dask_scheduler_tasks", "Number of tasks known by scheduler"),
        &["state"],
    )
    .expect("valid metric");
    for s in ALL_TASK_STATES {
        if s != TaskState::Forgotten {
            tasks
                .with_label_values(&[s.as_str()])
                .set(snap.tasks[state_index(s)] as f64);
        }
    }
    r.register(Box::new(tasks)).expect("unique metric names");
    gauge(
        r,
        "dask_scheduler_task_groups",
        "Number of task groups known by scheduler",
        snap.task_groups as f64,
    );
    r.register(Box::new(compute)).expect("unique metric names");
    r.register(Box::new(transfer)).expect("unique metric names");
    r.register(Box::new(output)).expect("unique metric names");
    r.register(Box::new(state_totals))
        .expect("unique metric names");
    gauge(
        r,
        "dask_scheduler_tick_duration_maximum_seconds",
        "Maximum tick duration observed since Prometheus last scraped metrics",
        tick_max,
    );
    counter(
        r,
        "dask_scheduler_tick_count_total",
        "Total number of ticks observed since the server started",
        ticks as f64,
    );
    if stealing {
        let count = CounterVec::new(
            Opts::new(
                "dask_stealing_request_count_total",
                "Total number of stealing requests per cost multiplier.",
            ),
            &["cost_multiplier"],
        )
        .expect("valid metric");
        let cost = CounterVec::new(
            Opts::new(
                "dask_stealing_request_cost_total",
                "Total cost of stealing requests per cost multiplier.",
            ),
            &["cost_multiplier"],
        )
        .expect("valid metric");
        for (i, m) in STEAL_COST_MULTIPLIERS.iter().enumerate() {
            let l = [multiplier_label(*m)];
            let l = [l[0].as_str()];
            count
                .with_label_values(&l)
                .inc_by(snap.steal_request_count[i] as f64);
            cost.with_label_values(&l)
                .inc_by(snap.steal_request_cost[i].max(0.0));
        }
        r.register(Box::new(count)).expect("unique metric names");
        r.register(Box::new(cost)).expect("unique metric names");
    }
    semaphore_families(r, snap);
}

/// Python's `SemaphoreMetricCollector`: per `distributed.Semaphore` (and
/// `Lock`), labelled by name.
fn semaphore_families(r: &Registry, snap: &MetricsSnapshot) {
    let gauge_vec = |name: &str, help: &str| {
        GaugeVec::new(Opts::new(name, help), &["name"]).expect("valid metric")
    };
    let counter_vec = |name: &str, help: &str| {
        CounterVec::new(Opts::new(name, help), &["name"]).expect("valid metric")
    };
    let max_leases = gauge_vec(
        "dask_semaphore_max_leases",
        "Maximum leases allowed per semaphore\nNote: This will be constant for each \
         semaphore during its lifetime.",
    );
    let active = gauge_vec(
        "dask_semaphore_active_leases",
        "Amount of currently active leases per semaphore",
    );
    let pending = gauge_vec(
        "dask_semaphore_pending_leases",
        "Amount of currently pending leases per semaphore",
    );
    let acquired = counter_vec(
        "dask_semaphore_acquire_total",
        "Total number of leases acquired per semaphore",
    );
    let released = counter_vec(
        "dask_semaphore_release_total",
        "Total number of leases released per semaphore\nNote: If a semaphore is closed \
         while there are still leases active, this count will not equal \
         `semaphore_acquire_total` after execution.",
    );
    let waited = gauge_vec(
        "dask_semaphore_average_pending_lease_time_s",
        "Exponential moving average of the time it took to acquire a lease per \
         semaphore\nNote: This only includes time spent on scheduler side, it does not \
         include time spent on communication.\nNote: This average is calculated based \
         on order of leases instead of time of lease acquisition.",
    );
    for sem in &snap.semaphores {
        let l = [sem.name.as_str()];
        max_leases.with_label_values(&l).set(sem.max_leases as f64);
        active.with_label_values(&l).set(sem.active_leases as f64);
        pending.with_label_values(&l).set(sem.pending_leases as f64);
        acquired
            .with_label_values(&l)
            .inc_by(sem.acquire_total as f64);
        released
            .with_label_values(&l)
            .inc_by(sem.release_total as f64);
        waited
            .with_label_values(&l)
            .set(sem.average_pending_lease_time);
    }
    for family in [max_leases, active, pending, waited] {
        r.register(Box::new(family)).expect("unique metric names");
    }
    for family in [acquired, released] {
        r.register(Box::new(family)).expect("unique metric names");
    }
}

/// `distributed.dashboard.prometheus.namespace`: the first part of every
/// `dask_*` family's name (`dask` by default; empty drops it), as Python's
/// exporter builds `namespace_subsystem_name`.
static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Set the namespace of the `dask_*` families (once, at start-up).
pub fn set_namespace(namespace: &str) {
    let _ = NAMESPACE.set(namespace.to_string());
}

/// A family name with the configured namespace in place of `dask`.
fn namespaced(name: &str) -> Option<String> {
    let ns = NAMESPACE.get().filter(|ns| ns.as_str() != "dask")?;
    let rest = name.strip_prefix("dask_")?;
    Some(if ns.is_empty() {
        rest.to_string()
    } else {
        format!("{ns}_{rest}")
    })
}

/// Render the whole `/metrics` page (Prometheus text format 0.0.4).
/// Resets the "maximum tick duration since the last scrape", like Python.
pub fn render(snap: &MetricsSnapshot, stealing: bool) -> String {
    let m = global();
    let last = f64::from_bits(m.last_tick.load(Ordering::Relaxed));
    let since_last_tick = if last > 0.0 {
        (crate::scheduler::now() - last).max(0.0)
    } else {
        0.0
    };
    let tick_max =
        f64::from_bits(m.tick_max.swap(0f64.to_bits(), Ordering::Relaxed)).max(since_last_tick);
    let per_scrape = Registry::new();
    dask_families(&per_scrape, snap, stealing, tick_max, m.ticks.get());
    let mut families = m.registry.gather();
    families.extend(per_scrape.gather());
    for family in &mut families {
        if let Some(name) = namespaced(family.name()) {
            family.set_name(name);
        }
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!("encoding /metrics failed: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
