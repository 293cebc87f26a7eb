//! Log output in the shape of Dask's:
//! `2026-11-22 02:14:38,123 - distributed.scheduler - INFO - Receive client connection: ...`
//! (local time with comma milliseconds, logger name, level, message), on
//! stderr, or through the handlers of Dask's logging config once it is known
//! ([`crate::logroute`]); levels, the Dask logger names of Rust modules.

use std::borrow::Cow;
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Handle to change the level after start-up (Dask's YAML logging config is
/// only known once the materializer's Python has resolved it). `None` when
/// `RUST_LOG` fixed the filter or another subscriber was installed.
static RELOAD: std::sync::OnceLock<reload::Handle<EnvFilter, Registry>> =
    std::sync::OnceLock::new();

/// Noisy dependencies are capped at this level unless RUST_LOG says otherwise.
const QUIET_DEPS: &str =
    "hyper=warn,hyper_util=warn,h2=warn,tower=warn,tower_http=warn,axum=warn,mio=warn";

/// Install the global subscriber. `level` is a Dask-style level name
/// (`debug`, `info`, `warning`, `error`, `critical`, or 10/20/30/40/50);
/// `RUST_LOG`, when set, takes precedence. Safe to call more than once (later
/// calls do nothing).
pub fn init(level: &str) {
    let (directive, bad_level) = match normalize_level(level) {
        Some(l) => (l, false),
        None => ("info", true),
    };
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok());
    let rust_log = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| filter_for(directive));
    let (filter, handle) = reload::Layer::new(filter);
    // the lines: through the handlers of Dask's logging config once it is
    // known; before, INFO and lower held for them, the rest in Dask's
    // format on stderr
    let routed = crate::logroute::RouteLayer;
    // the `distributed.scheduler` lines, kept for `get_scheduler_logs` as
    // Python's scheduler keeps them in a handler on that logger (those its
    // level lets through, once the config is known)
    let ring = tracing_subscriber::fmt::layer()
        .with_writer(crate::logring::MakeRingWriter)
        .with_ansi(false)
        .event_format(DaskFormat)
        .with_filter(filter_fn(|meta| {
            let name = dask_logger_name(meta.target());
            let scheduler = name
                .strip_prefix("distributed.scheduler")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
            scheduler
                && crate::logroute::current()
                    .is_none_or(|r| r.enabled(&name, level_number(meta.level())))
        }));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(routed)
        .with(ring)
        .try_init()
        .is_ok();
    if installed && !rust_log {
        let _ = RELOAD.set(handle);
    }
    if installed {
        crate::logroute::hold_early_lines();
    }
    if installed && bad_level {
        tracing::warn!("Unknown log level {level:?}; using info");
    }
    let _ = START.set(std::time::Instant::now());
    // Dask's environment variable for `distributed.admin.log-format`, applied
    // before the materializer's Python resolves the YAML config as well
    if let Ok(format) = std::env::var("DASK_DISTRIBUTED__ADMIN__LOG_FORMAT") {
        set_format(format.trim().trim_matches(|c| c == '"' || c == '\''));
    }
}

/// When logging started (Python's `relativeCreated` counts from it).
static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Seconds since logging started.
pub(crate) fn since_start() -> f64 {
    START.get().map_or(0.0, |s| s.elapsed().as_secs_f64())
}

/// Write the lines through the handlers of Dask's logging config (as the
/// materializer's Python describes it) from now on, and let through what
/// its loggers' levels ask for. `explicit_level`: `--log-level` was given,
/// which (like `RUST_LOG`) sets the level instead of the loggers. Each part
/// of the config this scheduler cannot honour is logged as a warning.
pub fn route_through(setup: crate::logsetup::LoggingSetup, explicit_level: bool) {
    let handle = RELOAD.get();
    let overridden = explicit_level || handle.is_none();
    let (router, warnings) = crate::logroute::Router::new(setup, overridden);
    let lowest = router.lowest_level();
    crate::logroute::install(router);
    if let (false, Some(handle)) = (overridden, handle) {
        let directive = match lowest {
            None => "off",
            Some(..=5) => "trace",
            Some(6..=10) => "debug",
            Some(11..=20) => "info",
            Some(21..=30) => "warn",
            Some(_) => "error",
        };
        let _ = handle.reload(filter_for(directive));
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
}

/// Format the lines with a Python logging format string
/// (`distributed.admin.log-format`); one that cannot be rendered is refused
/// with a warning and the format stays as it was. Returns whether it applied.
pub fn set_format(format: &str) -> bool {
    match crate::logformat::LogFormat::parse(format) {
        Ok(f) => {
            crate::logformat::set(Some(f));
            true
        }
        Err(e) => {
            tracing::warn!("Ignoring distributed.admin.log-format {format:?}: {e}");
            false
        }
    }
}

fn filter_for(directive: &str) -> EnvFilter {
    EnvFilter::new(format!("{directive},{QUIET_DEPS}"))
}

/// The level to log at: `explicit` (from `--log-level` or
/// `DASK_SCHEDULER_LOG_LEVEL`) if given, else Dask's logging config from the
/// environment (`DASK_LOGGING__DISTRIBUTED__SCHEDULER`, then
/// `DASK_LOGGING__DISTRIBUTED`, as Dask maps them to
/// `logging: {distributed.scheduler: ...}` / `{distributed: ...}`), else `info`.
pub fn resolve_level(explicit: Option<&str>) -> String {
    resolve_level_from(explicit, |k| std::env::var(k).ok())
}

/// [`resolve_level`] with an injectable environment (for tests).
pub fn resolve_level_from(explicit: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    if let Some(l) = explicit {
        return l.to_string();
    }
    [
        "DASK_LOGGING__DISTRIBUTED__SCHEDULER",
        "DASK_LOGGING__DISTRIBUTED",
    ]
    .iter()
    .filter_map(|k| env(k))
    .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    .find(|v| !v.is_empty())
    .unwrap_or_else(|| "info".to_string())
}

/// Map a Dask/Python level name to a tracing directive.
pub fn normalize_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_lowercase().as_str() {
        "trace" | "5" => "trace",
        "debug" | "10" => "debug",
        "info" | "20" => "info",
        "warn" | "warning" | "30" => "warn",
        "error" | "40" | "critical" | "fatal" | "50" => "error",
        "off" | "none" => "off",
        _ => return None,
    })
}

/// The Dask logger each of this scheduler's Rust modules logs as (by
/// module path prefix, the longest first).
const TARGET_LOGGERS: &[(&str, &str)] = &[
    ("dask_scheduler::net::batched", "distributed.batched"),
    ("dask_scheduler::net::rpc", "distributed.core"),
    ("dask_scheduler::net", "distributed.comm.tcp"),
    ("dask_scheduler::http", "distributed.http"),
    (
        "dask_scheduler::materializer",
        "distributed.scheduler.materializer",
    ),
    ("dask_scheduler", "distributed.scheduler"),
    ("dask_core", "distributed.scheduler"),
    ("dask_wire", "distributed.protocol"),
];

/// Dask loggers some lines name as their target directly.
const NAMED_LOGGERS: &[&str] = &["distributed._signals"];

/// The Dask loggers this scheduler's lines come from.
pub fn dask_loggers() -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = TARGET_LOGGERS
        .iter()
        .map(|(_, n)| *n)
        .chain(NAMED_LOGGERS.iter().copied())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// The Dask logger name for a tracing target (a Rust module path).
/// Targets that already look like Dask logger names (`distributed...`) are kept,
/// so `tracing::info!(target: "distributed.scheduler", ...)` also works.
pub fn dask_logger_name(target: &str) -> Cow<'_, str> {
    if target.starts_with("distributed") {
        return Cow::Borrowed(target);
    }
    for (prefix, name) in TARGET_LOGGERS {
        if let Some(rest) = target.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with("::") {
                return Cow::Borrowed(name);
            }
        }
    }
    Cow::Owned(target.replace("::", "."))
}

/// Python's level name of a tracing level.
pub(crate) fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// Python's level number of a tracing level.
pub(crate) fn level_number(level: &Level) -> i64 {
    match *level {
        Level::TRACE => 5,
        Level::DEBUG => 10,
        Level::INFO => 20,
        Level::WARN => 30,
        Level::ERROR => 40,
    }
}

/// `FormatEvent` producing Dask's `asctime - name - levelname - message`
/// lines, or those of `distributed.admin.log-format` when it is set.
pub struct DaskFormat;

impl<S, N> FormatEvent<S, N> for DaskFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = chrono::Local::now();
        let Some(custom) = crate::logformat::current() else {
            write!(
                writer,
                "{} - {} - {} - ",
                now.format("%Y-%m-%d %H:%M:%S,%3f"),
                dask_logger_name(meta.target()),
                level_name(meta.level()),
            )?;
            ctx.field_format().format_fields(writer.by_ref(), event)?;
            return writeln!(writer);
        };
        let mut message = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut message), event)?;
        let asctime = now.format("%Y-%m-%d %H:%M:%S,%3f").to_string();
        let name = dask_logger_name(meta.target());
        let line = custom.render(&crate::logformat::Record {
            asctime: &asctime,
            name: &name,
            levelname: level_name(meta.level()),
            levelno: level_number(meta.level()),
            message: &message,
            created: now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6,
            relative: since_start(),
            module_path: meta.module_path().unwrap_or(meta.target()),
            file: meta.file().unwrap_or(""),
            line: meta.line().unwrap_or(0),
        });
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logger_names() {
        let cases = [
            ("dask_scheduler::net::batched", "distributed.batched"),
            ("dask_scheduler::net::conn", "distributed.comm.tcp"),
            ("dask_scheduler::net::listener", "distributed.comm.tcp"),
            ("dask_scheduler::net::rpc", "distributed.core"),
            (
                "dask_scheduler::scheduler::handlers",
                "distributed.scheduler",
            ),
            ("dask_scheduler", "distributed.scheduler"),
            ("dask_scheduler_extra::x", "dask_scheduler_extra.x"),
            ("dask_core::state", "distributed.scheduler"),
            ("distributed.worker", "distributed.worker"),
            ("hyper::proto", "hyper.proto"),
        ];
        for (target, want) in cases {
            assert_eq!(dask_logger_name(target), want, "{target}");
        }
    }

    #[test]
    fn lines_look_like_dask() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .event_format(DaskFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "dask_scheduler::net::listener", "Failed handshake with {}: x", "tcp://1.2.3.4:5");
            tracing::info!(target: "dask_scheduler::scheduler", n = 3, "Receive client connection");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        // "2026-11-22 02:14:38,123 - " is 26 characters.
        let (ts, rest) = lines[0].split_at(23);
        assert_eq!(&ts[4..5], "-");
        assert_eq!(&ts[10..11], " ");
        assert_eq!(&ts[19..20], ",");
        assert_eq!(
            rest,
            " - distributed.comm.tcp - WARNING - Failed handshake with tcp://1.2.3.4:5: x"
        );
        assert!(
            lines[1].ends_with(" - distributed.scheduler - INFO - Receive client connection n=3"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn level_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(resolve_level_from(None, env(&[])), "info");
        assert_eq!(
            resolve_level_from(None, env(&[("DASK_LOGGING__DISTRIBUTED", "warning")])),
            "warning"
        );
        assert_eq!(
            resolve_level_from(
                None,
                env(&[
                    ("DASK_LOGGING__DISTRIBUTED", "warning"),
                    ("DASK_LOGGING__DISTRIBUTED__SCHEDULER", "'debug'"),
                ])
            ),
            "debug"
        );
        assert_eq!(
            resolve_level_from(
                Some("error"),
                env(&[("DASK_LOGGING__DISTRIBUTED", "debug")])
            ),
            "error"
        );
    }

    #[test]
    fn levels() {
        let cases = [
            ("INFO", Some("info")),
            ("warning", Some("warn")),
            ("Debug", Some("debug")),
            ("critical", Some("error")),
            ("30", Some("warn")),
            ("loud", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_level(input), want, "{input}");
        }
    }
}

/// Dask's `format_time`: durations in log lines the way Python's scheduler
/// prints them (`500.00 ms`, `10.00 s`, `83m 20s`, `27hr 46m`, `14d 6hr`).
pub fn format_time(n: f64) -> String {
    if n > 2.0 * 86400.0 {
        let d = (n / 86400.0) as i64;
        let h = ((n - d as f64 * 86400.0) / 3600.0) as i64;
        format!("{d}d {h}hr")
    } else if n > 2.0 * 3600.0 {
        let h = (n / 3600.0) as i64;
        let m = ((n - h as f64 * 3600.0) / 60.0) as i64;
        format!("{h}hr {m}m")
    } else if n > 600.0 {
        let m = (n / 60.0) as i64;
        let s = (n - m as f64 * 60.0) as i64;
        format!("{m}m {s}s")
    } else if n >= 1.0 {
        format!("{n:.2} s")
    } else if n >= 1e-3 {
        format!("{:.2} ms", n * 1e3)
    } else {
        format!("{:.2} us", n * 1e6)
    }
}

#[cfg(test)]
mod format_time_tests {
    #[test]
    fn matches_dask_format_time() {
        // Values from `dask.utils.format_time` in the pinned dask.
        let cases = [
            (0.5, "500.00 ms"),
            (10.0, "10.00 s"),
            (75.0, "75.00 s"),
            (3600.0, "60m 0s"),
            (5000.0, "83m 20s"),
            (100000.0, "27hr 46m"),
            (1234567.89, "14d 6hr"),
            (0.00002, "20.00 us"),
        ];
        for (n, want) in cases {
            assert_eq!(super::format_time(n), want, "{n}");
        }
    }
}
