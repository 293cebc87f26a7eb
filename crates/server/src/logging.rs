//! Log output in the shape of Dask's:
//! `2026-11-22 02:14:38,123 - distributed.scheduler - INFO - Receive client connection: ...`
//! (local time with comma milliseconds, logger name, level, message), on stderr.

use std::borrow::Cow;
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

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
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(format!("{directive},{QUIET_DEPS}")));
    let installed = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .event_format(DaskFormat)
        .try_init()
        .is_ok();
    if installed && bad_level {
        tracing::warn!("Unknown log level {level:?}; using info");
    }
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

/// The Dask logger name for a tracing target (a Rust module path).
/// Targets that already look like Dask logger names (`distributed...`) are kept,
/// so `tracing::info!(target: "distributed.scheduler", ...)` also works.
pub fn dask_logger_name(target: &str) -> Cow<'_, str> {
    const MAP: &[(&str, &str)] = &[
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
    if target.starts_with("distributed") {
        return Cow::Borrowed(target);
    }
    for (prefix, name) in MAP {
        if let Some(rest) = target.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with("::") {
                return Cow::Borrowed(name);
            }
        }
    }
    Cow::Owned(target.replace("::", "."))
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// `FormatEvent` producing Dask's `asctime - name - levelname - message` lines.
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
        write!(
            writer,
            "{} - {} - {} - ",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f"),
            dask_logger_name(meta.target()),
            level_name(meta.level()),
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
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
