//! Scheduler settings from Dask's configuration.
//!
//! The authoritative source is the materializer's Python environment: it
//! resolves Dask config exactly like the Python scheduler would (YAML files,
//! `DASK_*` environment variables). Without Python, the `DASK_*` environment
//! variables for the same settings are read here.

use crate::materializer::MaterializerPool;
use crate::security::{CommConfig, DashboardTlsConfig};
use bytes::Bytes;
use dask_core::Config;
use dask_wire::{msgpack, Value};

/// Apply `{"worker-saturation": ..., ...}` (as produced by the helper) to `config`.
fn apply(config: &mut Config, values: &Value) {
    if let Some(v) = values.get("worker-saturation").and_then(Value::as_f64) {
        config.worker_saturation = v;
    }
    if let Some(v) = values.get("allowed-failures").and_then(Value::as_i64) {
        config.allowed_failures = v.clamp(0, u32::MAX as i64) as u32;
    }
    if let Some(v) = values.get("unknown-task-duration").and_then(Value::as_f64) {
        config.unknown_task_duration = v;
    }
    if let Some(v) = values.get("worker-ttl") {
        config.worker_ttl = v.as_f64();
    }
    if let Some(v) = values.get("events-cleanup-delay").and_then(Value::as_f64) {
        config.events_cleanup_delay = v.max(0.0);
    }
    if let Some(v) = values.get("no-workers-timeout") {
        // Python's periodic check asserts a non-zero timeout; 0 disables it here
        config.no_workers_timeout = v.as_f64().filter(|s| s.is_finite() && *s > 0.0);
    }
    if let Some(v) = values.get("bandwidth").and_then(Value::as_f64) {
        config.bandwidth = v.max(1.0);
    }
    if let Some(v) = values.get("work-stealing") {
        config.work_stealing = v.truthy();
    }
    if let Some(v) = values.get("work-stealing-interval").and_then(Value::as_f64) {
        if v.is_finite() && v > 0.0 {
            config.work_stealing_interval = v;
        }
    }
    if let Some(v) = values.get("sibling-affinity") {
        config.sibling_affinity = v.truthy();
    }
    if let Some(v) = values.get("rootish-taskgroup").and_then(Value::as_i64) {
        config.rootish_taskgroup = v.clamp(0, i64::from(u32::MAX)) as usize;
    }
    if let Some(v) = values
        .get("rootish-taskgroup-dependencies")
        .and_then(Value::as_i64)
    {
        config.rootish_taskgroup_dependencies = v.max(0) as u64;
    }
    if let Some(v) = values.get("task-stream-length").and_then(Value::as_i64) {
        config.task_stream_length = v.clamp(1, 10_000_000) as usize;
    }
    if let Some(v) = values.get("recent-to-old-time").and_then(Value::as_f64) {
        config.recent_to_old_time = v.max(0.0);
    }
    if let Some(name) = values.get("rebalance-measure").and_then(Value::as_str) {
        match dask_core::config::MemoryMeasure::parse(name) {
            Some(m) => config.rebalance.measure = m,
            None => tracing::warn!(
                "distributed.worker.memory.rebalance.measure: unknown measure '{name}'; \
                 using 'optimistic'"
            ),
        }
    }
    if let Some(v) = values.get("rebalance-sender-min").and_then(Value::as_f64) {
        config.rebalance.sender_min = v;
    }
    if let Some(v) = values
        .get("rebalance-recipient-max")
        .and_then(Value::as_f64)
    {
        config.rebalance.recipient_max = v;
    }
    if let Some(v) = values
        .get("rebalance-sender-recipient-gap")
        .and_then(Value::as_f64)
    {
        config.rebalance.half_gap = v / 2.0;
    }
    if let Some(v) = values.get("transition-log-length").and_then(Value::as_i64) {
        config.transition_log_length = v.clamp(0, 10_000_000) as usize;
    }
    if let Some(v) = values.get("amm-start") {
        config.amm.start = v.truthy();
    }
    if let Some(v) = values.get("amm-interval").and_then(Value::as_f64) {
        if v > 0.0 {
            config.amm.interval = v;
        }
    }
    if let Some(name) = values.get("amm-measure").and_then(Value::as_str) {
        match dask_core::config::MemoryMeasure::parse(name) {
            Some(m) => config.amm.measure = m,
            None => tracing::warn!(
                "distributed.scheduler.active-memory-manager.measure: unknown measure \
                 '{name}'; using 'optimistic'"
            ),
        }
    }
    if let Some(Value::Array(policies)) = values.get("amm-policies") {
        for p in policies.iter().filter_map(Value::as_str) {
            if p != "distributed.active_memory_manager.ReduceReplicas" {
                tracing::warn!(
                    "distributed.scheduler.active-memory-manager.policies: {p} is not \
                     supported by this scheduler (it runs no Python scheduler code); only \
                     ReduceReplicas runs"
                );
            }
        }
    }
    if let Some(map) = values.get("default-task-durations").and_then(Value::as_map) {
        config.default_task_durations = map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_f64()?)))
            .collect();
    }
}

/// Dask's spelling of an environment variable for `distributed.scheduler.<name>`.
fn env_value(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    [
        format!("DASK_DISTRIBUTED__SCHEDULER__{}", upper.replace('-', "_")),
        format!("DASK_DISTRIBUTED__SCHEDULER__{upper}"),
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok())
}

/// Settings from `DASK_DISTRIBUTED__SCHEDULER__*` variables only.
pub fn from_env() -> Config {
    let mut config = Config::default();
    let num = |name: &str| {
        env_value(name).and_then(|v| {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if v.eq_ignore_ascii_case("inf") {
                Some(f64::INFINITY)
            } else {
                v.parse::<f64>()
                    .ok()
                    .or_else(|| dask_core::timedelta::parse_seconds(v))
            }
        })
    };
    if let Some(v) = num("worker-saturation") {
        config.worker_saturation = v;
    }
    if let Some(v) = num("allowed-failures") {
        config.allowed_failures = v.max(0.0) as u32;
    }
    if let Some(v) = num("unknown-task-duration") {
        config.unknown_task_duration = v;
    }
    if let Some(v) = num("no-workers-timeout") {
        config.no_workers_timeout = Some(v).filter(|s| s.is_finite() && *s > 0.0);
    }
    if let Some(v) = num("work-stealing-interval").filter(|v| v.is_finite() && *v > 0.0) {
        config.work_stealing_interval = v;
    }
    if let Some(v) = num("rootish-taskgroup") {
        config.rootish_taskgroup = v.clamp(0.0, f64::from(u32::MAX)) as usize;
    }
    if let Some(v) = num("rootish-taskgroup-dependencies") {
        config.rootish_taskgroup_dependencies = v.max(0.0) as u64;
    }
    let flag = |v: String| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes");
    if let Some(v) = env_value("work-stealing") {
        config.work_stealing = flag(v);
    }
    if let Some(v) = env_value("sibling-affinity") {
        config.sibling_affinity = flag(v);
    }
    config
}

/// What Dask's config says beyond the core's settings.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `distributed.admin.log-format` (Python's logging format string).
    pub log_format: Option<String>,
    /// `distributed.admin.log-length`: lines kept for `get_scheduler_logs`.
    pub log_length: Option<usize>,
    /// Python's logging as Dask's config sets it up (loggers, handlers,
    /// formats), or why the materializer could not describe it.
    pub logging_setup: Option<Result<crate::logsetup::LoggingSetup, String>>,
    /// `distributed.comm.socket-backlog`: pending connections per listener.
    pub socket_backlog: Option<u32>,
    /// `distributed.dashboard.prometheus.namespace` (`dask` by default).
    pub prometheus_namespace: Option<String>,
    /// `distributed.scheduler.http.routes`: Python's route modules to serve.
    pub http_routes: Option<Vec<String>>,
    /// `distributed.scheduler.idle-timeout` (s), used when `--idle-timeout`
    /// is not given (Python: `idle_timeout or dask.config.get(...)`).
    pub idle_timeout: Option<f64>,
    /// `distributed.comm.*` security settings (TLS files, versions,
    /// require-encryption, default scheme).
    pub comm: CommConfig,
    /// `distributed.scheduler.dashboard.tls.*`: HTTPS on the dashboard port.
    pub dashboard_tls: DashboardTlsConfig,
    /// `distributed.scheduler.blocked-handlers`: RPCs switched off.
    pub blocked_handlers: Vec<String>,
    /// `distributed.scheduler.preload`: modules run at start-up when
    /// `--preload` names none.
    pub preload: Vec<String>,
    /// `distributed.scheduler.preload-argv`: their arguments, one list for
    /// all or one list per module, as the config holds it (`None` when unset).
    pub preload_argv: Option<Value>,
}

/// A non-empty string setting of a helper map.
fn config_text(values: &Value, key: &str) -> Option<String> {
    values
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The strings of a list setting of a helper map (none when absent).
fn config_strings(values: &Value, key: &str) -> Vec<String> {
    values
        .get(key)
        .and_then(Value::as_seq)
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The comm settings of the helper's `comm` map.
fn comm_config(values: &Value) -> CommConfig {
    let text = |k: &str| config_text(values, k);
    CommConfig {
        ca_file: text("ca-file"),
        cert: text("cert"),
        key: text("key"),
        min_version: values.get("min-version").and_then(Value::as_f64),
        max_version: values.get("max-version").and_then(Value::as_f64),
        ciphers: text("ciphers"),
        require_encryption: values
            .get("require-encryption")
            .filter(|v| !matches!(v, Value::Nil))
            .map(Value::truthy),
        default_scheme: text("default-scheme"),
    }
}

/// Settings as the materializer's Python resolves them, or from the
/// environment when Python is unavailable.
pub async fn load(pool: &MaterializerPool) -> (Config, Extras) {
    let request = Bytes::from(msgpack::encode(&Value::map([("op", Value::str("config"))])));
    let mut config = Config::default();
    match pool.request(request).await {
        Ok(reply) => match msgpack::decode(&reply) {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("ok") => {
                if let Some(values) = v.get("config") {
                    apply(&mut config, values);
                    let extras = Extras {
                        log_format: config_text(values, "log-format"),
                        log_length: values
                            .get("log-length")
                            .and_then(Value::as_i64)
                            .map(|n| n.clamp(0, 10_000_000) as usize),
                        logging_setup: values
                            .get("logging-setup")
                            .map(crate::logsetup::LoggingSetup::from_value),
                        prometheus_namespace: values
                            .get("prometheus-namespace")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        http_routes: values
                            .get("http-routes")
                            .is_some()
                            .then(|| config_strings(values, "http-routes")),
                        socket_backlog: values
                            .get("socket-backlog")
                            .and_then(Value::as_i64)
                            .map(|n| n.clamp(1, i64::from(u32::MAX)) as u32),
                        idle_timeout: values
                            .get("idle-timeout")
                            .and_then(Value::as_f64)
                            .filter(|s| s.is_finite() && *s > 0.0),
                        comm: values.get("comm").map(comm_config).unwrap_or_default(),
                        dashboard_tls: DashboardTlsConfig {
                            cert: config_text(values, "dashboard-tls-cert"),
                            key: config_text(values, "dashboard-tls-key"),
                        },
                        preload: config_strings(values, "preload"),
                        preload_argv: values.get("preload-argv").cloned(),
                        blocked_handlers: config_strings(values, "blocked-handlers"),
                    };
                    return (config, extras);
                }
            }
            Ok(v) => {
                let why = v
                    .get("exception_text")
                    .and_then(|t| t.as_str())
                    .unwrap_or("?");
                tracing::warn!("Could not read Dask config from the materializer: {why}");
            }
            Err(e) => tracing::warn!("Could not read Dask config from the materializer: {e}"),
        },
        Err(e) => tracing::info!("Reading Dask config from the environment only ({e})"),
    }
    (
        from_env(),
        Extras {
            comm: CommConfig::from_env(),
            dashboard_tls: DashboardTlsConfig::from_env(),
            ..Extras::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_helper_values() {
        let mut c = Config::default();
        apply(
            &mut c,
            &Value::map([
                ("worker-saturation", Value::Float(f64::INFINITY)),
                ("allowed-failures", Value::Int(7)),
                ("worker-ttl", Value::Nil),
                ("work-stealing", Value::Bool(false)),
                ("sibling-affinity", Value::Bool(false)),
                ("task-stream-length", Value::Int(500)),
                ("rootish-taskgroup", Value::Int(3)),
                ("rootish-taskgroup-dependencies", Value::Int(1000)),
                ("recent-to-old-time", Value::Float(5.0)),
                ("amm-start", Value::Bool(false)),
                ("amm-interval", Value::Float(0.5)),
                ("amm-measure", Value::str("managed")),
                ("rebalance-measure", Value::str("managed_total")),
                ("rebalance-sender-min", Value::Float(0.2)),
                ("rebalance-recipient-max", Value::Float(0.7)),
                ("rebalance-sender-recipient-gap", Value::Float(0.2)),
                (
                    "default-task-durations",
                    Value::map([("slow-load", Value::Float(60.0))]),
                ),
            ]),
        );
        assert!(c.worker_saturation.is_infinite());
        assert_eq!(c.allowed_failures, 7);
        assert_eq!(c.worker_ttl, None);
        assert!(!c.work_stealing);
        assert!(!c.sibling_affinity);
        assert_eq!(c.task_stream_length, 500);
        assert_eq!(c.rootish_taskgroup, 3);
        assert_eq!(c.rootish_taskgroup_dependencies, 1000);
        assert_eq!(c.recent_to_old_time, 5.0);
        assert!(!c.amm.start);
        assert_eq!(c.amm.interval, 0.5);
        assert_eq!(c.amm.measure, dask_core::config::MemoryMeasure::Managed);
        assert_eq!(
            c.rebalance,
            dask_core::config::RebalanceConfig {
                measure: dask_core::config::MemoryMeasure::ManagedTotal,
                sender_min: 0.2,
                recipient_max: 0.7,
                half_gap: 0.1,
            }
        );
        // The table as Python resolved it (defaults merged in there) replaces ours.
        assert_eq!(c.default_task_duration("slow-load"), Some(60.0));
        assert_eq!(c.default_task_duration("split-taskshuffle"), None);
    }

    #[test]
    fn reads_the_comm_security_settings() {
        let comm = comm_config(&Value::map([
            ("ca-file", Value::str("/ca.pem")),
            ("cert", Value::str("")),
            ("key", Value::Nil),
            ("min-version", Value::Float(1.3)),
            ("require-encryption", Value::Bool(true)),
            ("default-scheme", Value::str("tls")),
        ]));
        assert_eq!(
            comm,
            CommConfig {
                ca_file: Some("/ca.pem".into()),
                min_version: Some(1.3),
                require_encryption: Some(true),
                default_scheme: Some("tls".into()),
                ..CommConfig::default()
            }
        );
        let unset = comm_config(&Value::map([("require-encryption", Value::Nil)]));
        assert_eq!(unset.require_encryption, None);
    }
}
