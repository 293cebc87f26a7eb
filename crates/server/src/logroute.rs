//! Writes the scheduler's log lines through the handlers of Dask's logging
//! config ([`crate::logsetup`]): each logger's level, each handler's
//! level, format, date format and destination (stderr, stdout, a file, a
//! rotating file), as Python's scheduler does with the same config.
//!
//! Until the materializer's Python has described the set-up, INFO and lower
//! lines are held for it and the rest written in Dask's format on stderr,
//! as every line is when there is no such Python.

use crate::logformat::{LogFormat, Record, DEFAULT};
use crate::logsetup::{Destination, Formatter, HandlerConf, JsonSpec, LoggingSetup, Route};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Where one sink's lines go.
enum Out {
    Stderr,
    Stdout,
    File(File),
    /// A `WatchedFileHandler`'s file and the (device, inode) it has open.
    Watched {
        file: File,
        path: String,
        id: Option<(u64, u64)>,
    },
    Rotating {
        file: File,
        path: String,
        size: u64,
        max_bytes: u64,
        backup_count: u32,
    },
    /// A `TimedRotatingFileHandler`'s file and its next rollover (epoch s).
    Timed {
        file: File,
        timed: Timed,
        next: i64,
    },
    Null,
}

/// How a `TimedRotatingFileHandler` rolls over.
struct Timed {
    path: String,
    interval: i64,
    from_last: bool,
    suffix: String,
    utc: bool,
    backup_count: u32,
}

impl Timed {
    /// Python's `doRollover` for the rollover due at `due`: the file becomes
    /// `path.<suffix of the interval's start>`, and rotated files beyond
    /// `backup_count` are deleted, oldest first.
    fn roll_over(&self, due: i64) -> std::io::Result<()> {
        let rotated = format!("{}.{}", self.path, self.stamp(due - self.interval));
        if std::path::Path::new(&rotated).exists() {
            std::fs::remove_file(&rotated)?;
        }
        if std::path::Path::new(&self.path).exists() {
            std::fs::rename(&self.path, &rotated)?;
        }
        if self.backup_count == 0 {
            return Ok(());
        }
        let path = std::path::Path::new(&self.path);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(std::path::Path::new("."));
        let base = format!(
            "{}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut old: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // Python's `extMatch`: a part after the base name in the
                // suffix's shape
                name.strip_prefix(&base)
                    .is_some_and(|rest| rest.split('.').any(|p| self.is_stamp(p)))
            })
            .map(|e| e.path())
            .collect();
        old.sort();
        let keep = self.backup_count as usize;
        for f in &old[..old.len().saturating_sub(keep)] {
            std::fs::remove_file(f)?;
        }
        Ok(())
    }

    /// `time.strftime(suffix, ...)` of the epoch second `t`.
    fn stamp(&self, t: i64) -> String {
        use chrono::TimeZone;
        match self.utc {
            true => chrono::Utc
                .timestamp_opt(t, 0)
                .single()
                .map(|d| d.format(&self.suffix).to_string()),
            false => chrono::Local
                .timestamp_opt(t, 0)
                .earliest()
                .map(|d| d.format(&self.suffix).to_string()),
        }
        .unwrap_or_default()
    }

    fn is_stamp(&self, text: &str) -> bool {
        let mut parsed = chrono::format::Parsed::new();
        chrono::format::parse(
            &mut parsed,
            text,
            chrono::format::StrftimeItems::new(&self.suffix),
        )
        .is_ok()
    }

    /// The rollover after one due at `due`, rolled over at `now`.
    fn next(&self, due: i64, now: i64) -> i64 {
        if !self.from_last {
            return now + self.interval;
        }
        let mut next = due + self.interval;
        while next <= now {
            next += self.interval;
        }
        next
    }
}

/// Seconds since the epoch, now.
fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Out {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Stderr => std::io::stderr().lock().write_all(line),
            Out::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Out::File(f) => f.write_all(line),
            Out::Watched { file, path, id } => {
                // Python's `WatchedFileHandler.reopenIfNeeded`
                let now = file_id(std::fs::metadata(path.as_str()).ok());
                if now.is_none() || now != *id {
                    *file = open_append(path)?;
                    *id = file_id(file.metadata().ok());
                }
                file.write_all(line)
            }
            Out::Rotating {
                file,
                path,
                size,
                max_bytes,
                backup_count,
            } => {
                // Python's `shouldRollover`: the line would reach maxBytes
                if *max_bytes > 0 && *size + line.len() as u64 >= *max_bytes && *backup_count > 0 {
                    rotate(path, *backup_count)?;
                    *file = open_append(path)?;
                    *size = 0;
                }
                file.write_all(line)?;
                *size += line.len() as u64;
                Ok(())
            }
            Out::Timed { file, timed, next } => {
                // Python's `shouldRollover`: the time has come
                let now = epoch_now();
                if now >= *next {
                    timed.roll_over(*next)?;
                    *file = open_append(&timed.path)?;
                    *next = timed.next(*next, now);
                }
                file.write_all(line)
            }
            Out::Null => Ok(()),
        }
    }
}

/// The (device, inode) of a file, to tell when the one at a path changed.
fn file_id(meta: Option<std::fs::Metadata>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    meta.map(|m| (m.dev(), m.ino()))
}

fn open_append(path: &str) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Python's `RotatingFileHandler.doRollover`: `path.N-1` → `path.N`, ...,
/// `path` → `path.1`.
fn rotate(path: &str, backup_count: u32) -> std::io::Result<()> {
    for i in (1..backup_count).rev() {
        let from = format!("{path}.{i}");
        if std::path::Path::new(&from).exists() {
            std::fs::rename(&from, format!("{path}.{}", i + 1))?;
        }
    }
    std::fs::rename(path, format!("{path}.1"))
}

/// How a sink formats its lines.
enum LineFormat {
    /// `logging.Formatter`'s `%`-style format.
    Text(LogFormat),
    /// python-json-logger's `JsonFormatter`.
    Json(JsonSpec),
}

/// One handler, ready to write.
struct Sink {
    /// Its class, for messages.
    class: String,
    /// A write failed (reported once).
    failed: std::sync::atomic::AtomicBool,
    level: i64,
    format: LineFormat,
    /// `datefmt` for `%(asctime)s` (Python: `time.strftime`); `None`:
    /// Dask's `YYYY-mm-dd HH:MM:SS,mmm`.
    datefmt: Option<String>,
    out: Mutex<Out>,
}

/// The installed set-up: its sinks and the routes resolved so far.
pub struct Router {
    setup: LoggingSetup,
    sinks: Vec<Sink>,
    /// Levels come from `--log-level` or `RUST_LOG` instead of the loggers'.
    levels_overridden: bool,
    routes: Mutex<HashMap<String, Arc<Route>>>,
}

/// A line's parts, formatted once for every sink.
pub struct Line<'a> {
    /// The Dask logger name.
    pub name: &'a str,
    /// Python's level number.
    pub levelno: i64,
    /// Python's level name.
    pub levelname: &'static str,
    /// The message with its fields.
    pub message: &'a str,
    /// When, local time.
    pub now: chrono::DateTime<chrono::Local>,
    /// Seconds since logging started.
    pub relative: f64,
    /// The Rust module the line comes from.
    pub module_path: &'a str,
    /// Its source file.
    pub file: &'a str,
    /// And the line in it.
    pub line: u32,
}

impl Line<'_> {
    /// What a format renders of this line, with `asctime` as given.
    fn record<'b>(&'b self, asctime: &'b str) -> Record<'b> {
        Record {
            asctime,
            name: self.name,
            levelname: self.levelname,
            levelno: self.levelno,
            message: self.message,
            created: self.now.timestamp() as f64
                + f64::from(self.now.timestamp_subsec_micros()) / 1e6,
            relative: self.relative,
            module_path: self.module_path,
            file: self.file,
            line: self.line,
        }
    }
}

/// Python's default `asctime`: local time with comma milliseconds.
const DASK_DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S,%3f";

/// The Dask logger whose route lines of Rust libraries (hyper, ...) take:
/// Python's scheduler has no such loggers.
const LIBRARY_LOGGER: &str = "distributed.scheduler";

impl Router {
    /// Open every handler's destination; returns the router and a warning
    /// for each part of the set-up this scheduler cannot honour, naming it.
    /// A handler it cannot write for writes to stderr in Dask's default
    /// format instead; a format or date format it cannot render is replaced
    /// by Dask's.
    pub fn new(setup: LoggingSetup, levels_overridden: bool) -> (Router, Vec<String>) {
        let mut router = Router {
            setup,
            sinks: Vec::new(),
            levels_overridden,
            routes: Mutex::new(HashMap::new()),
        };
        // the handlers this scheduler's loggers reach (only those are
        // opened, and only their parts are warned about)
        let mut used = vec![false; router.setup.handlers.len()];
        let mut warnings = Vec::new();
        for name in crate::logging::dask_loggers() {
            let route = router.route(name);
            let last = route.last_resort.then_some(router.setup.last_resort);
            for &h in route.handlers.iter().chain(last.flatten().iter()) {
                used[h] = true;
            }
            if !route.filters.is_empty() {
                warnings.push(format!(
                    "logging: the filters on logger {name}'s way ({}) are not applied by this scheduler",
                    route.filters.join(", ")
                ));
            }
        }
        let sinks = router
            .setup
            .handlers
            .iter()
            .zip(used)
            .map(|(h, used)| match used {
                true => sink(h, &mut warnings),
                false => Sink {
                    class: h.class.clone(),
                    failed: Default::default(),
                    level: h.level,
                    format: default_format(),
                    datefmt: None,
                    out: Mutex::new(Out::Null),
                },
            })
            .collect();
        router.sinks = sinks;
        (router, warnings)
    }

    /// The route of logger `name` (resolved once).
    pub fn route(&self, name: &str) -> Arc<Route> {
        let name = if name.starts_with("distributed") {
            name
        } else {
            LIBRARY_LOGGER
        };
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = routes.get(name) {
            return r.clone();
        }
        let r = Arc::new(self.setup.resolve(name));
        routes.insert(name.to_string(), r.clone());
        r
    }

    /// Whether logger `name` writes a record of Python level `level`.
    pub fn enabled(&self, name: &str, level: i64) -> bool {
        self.levels_overridden || self.route(name).enabled(level)
    }

    /// The lowest Python level any of this scheduler's loggers writes (for
    /// the global filter); `None` when all are disabled.
    pub fn lowest_level(&self) -> Option<i64> {
        crate::logging::dask_loggers()
            .filter_map(|name| self.route(name).level)
            .min()
    }

    /// Write `line` to every handler its logger's records reach.
    pub fn write(&self, line: &Line<'_>) {
        let route = self.route(line.name);
        if !self.levels_overridden && !route.enabled(line.levelno) {
            return;
        }
        let last = route
            .last_resort
            .then_some(self.setup.last_resort)
            .flatten();
        for &h in route.handlers.iter().chain(last.iter()) {
            let sink = &self.sinks[h];
            if line.levelno < sink.level {
                continue;
            }
            let asctime = match &sink.datefmt {
                Some(f) => line.now.format(f).to_string(),
                None => line.now.format(DASK_DATE_FORMAT).to_string(),
            };
            let record = line.record(&asctime);
            let mut text = match &sink.format {
                LineFormat::Text(f) => f.render(&record),
                LineFormat::Json(spec) => crate::logjson::render(spec, &record),
            };
            text.push('\n');
            let mut out = sink.out.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = out.write_line(text.as_bytes()) {
                // Python prints "--- Logging error ---" on stderr for each;
                // once per handler is enough to know
                if !sink.failed.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "--- Logging error --- logging handler {} cannot write ({e}); \
                         its lines are lost while it cannot",
                        sink.class
                    );
                }
            }
        }
    }
}

/// A handler ready to write, with a warning for each part of it that
/// this scheduler cannot honour.
fn sink(h: &HandlerConf, warnings: &mut Vec<String>) -> Sink {
    let mut warn = |what: String| warnings.push(format!("logging handler {}: {what}", h.class));
    let (format, datefmt) = match &h.format {
        Ok(Formatter::Text { format, datefmt }) => match LogFormat::parse(format) {
            Ok(f) => (LineFormat::Text(f), datefmt.clone()),
            Err(e) => {
                warn(format!("{e}; its lines use Dask's default format"));
                (default_format(), None)
            }
        },
        Ok(Formatter::Json(spec)) => (LineFormat::Json(spec.clone()), spec.datefmt.clone()),
        Err(why) => {
            warn(format!(
                "{why} is not supported by this scheduler; its lines use Dask's default format"
            ));
            (default_format(), None)
        }
    };
    let datefmt = datefmt.filter(|d| check_datefmt(d).map_err(&mut warn).is_ok());
    let (path, out) = match &h.destination {
        Destination::Stderr => (None, Ok(Out::Stderr)),
        Destination::Stdout => (None, Ok(Out::Stdout)),
        Destination::Null => (None, Ok(Out::Null)),
        Destination::File {
            path,
            mode,
            watched,
        } => {
            if mode.starts_with('w') {
                warn(format!(
                    "it opens {path} with mode {mode:?}: every Python helper of this scheduler \
                     applies the logging config when it starts and truncates it; use mode 'a'"
                ));
            }
            let out = open_append(path).map(|file| match watched {
                true => Out::Watched {
                    id: file_id(file.metadata().ok()),
                    file,
                    path: path.clone(),
                },
                false => Out::File(file),
            });
            (Some(path), out)
        }
        Destination::Rotating {
            path,
            max_bytes,
            backup_count,
        } => (
            Some(path),
            open_append(path).map(|file| Out::Rotating {
                size: file.metadata().map_or(0, |m| m.len()),
                file,
                path: path.clone(),
                max_bytes: *max_bytes,
                backup_count: *backup_count,
            }),
        ),
        Destination::Timed {
            path,
            rollover_at,
            interval,
            from_last,
            suffix,
            utc,
            backup_count,
        } => (
            Some(path),
            open_append(path).map(|file| Out::Timed {
                file,
                next: *rollover_at,
                timed: Timed {
                    path: path.clone(),
                    interval: *interval,
                    from_last: *from_last,
                    suffix: suffix.clone(),
                    utc: *utc,
                    backup_count: *backup_count,
                },
            }),
        ),
        Destination::Unsupported(why) => {
            warn(format!(
                "{why} is not supported by this scheduler; its lines go to stderr in Dask's \
                 default format"
            ));
            return Sink {
                class: h.class.clone(),
                failed: Default::default(),
                level: h.level,
                format: default_format(),
                datefmt: None,
                out: Mutex::new(Out::Stderr),
            };
        }
    };
    let out = out.unwrap_or_else(|e| {
        let path = path.map_or("", String::as_str);
        warn(format!("cannot open {path} ({e}); its lines go to stderr"));
        Out::Stderr
    });
    Sink {
        class: h.class.clone(),
        failed: Default::default(),
        level: h.level,
        format,
        datefmt,
        out: Mutex::new(out),
    }
}

fn default_format() -> LineFormat {
    LineFormat::Text(LogFormat::parse(DEFAULT).expect("Dask's default log format parses"))
}

/// A `datefmt` chrono can render (Python renders it with `time.strftime`).
fn check_datefmt(f: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        Err(format!(
            "datefmt {f:?} is not supported by this scheduler; its lines use Dask's date format"
        ))
    } else {
        Ok(())
    }
}

/// The `tracing` layer that writes every event: through the router in use,
/// or before Dask's logging config is known, held (INFO and below, to go
/// through its handlers once it is) or on stderr in Dask's format.
pub struct RouteLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RouteLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        use tracing_subscriber::fmt::format::{DefaultFields, Writer};
        use tracing_subscriber::fmt::FormatFields;
        let meta = event.metadata();
        let name = crate::logging::dask_logger_name(meta.target());
        let levelno = crate::logging::level_number(meta.level());
        let router = current();
        if router.as_ref().is_some_and(|r| !r.enabled(&name, levelno)) {
            return;
        }
        let mut message = String::new();
        if DefaultFields::new()
            .format_fields(Writer::new(&mut message), event)
            .is_err()
        {
            return;
        }
        let line = Line {
            name: &name,
            levelno,
            levelname: crate::logging::level_name(meta.level()),
            message: &message,
            now: chrono::Local::now(),
            relative: crate::logging::since_start(),
            module_path: meta.module_path().unwrap_or(meta.target()),
            file: meta.file().unwrap_or(""),
            line: meta.line().unwrap_or(0),
        };
        match router {
            Some(router) => router.write(&line),
            None => hold_or_write(&line),
        }
    }
}

/// A line logged before Dask's logging config is known.
struct HeldLine {
    name: String,
    levelno: i64,
    levelname: &'static str,
    message: String,
    now: chrono::DateTime<chrono::Local>,
    relative: f64,
    module_path: String,
    file: String,
    line: u32,
}

impl HeldLine {
    fn line(&self) -> Line<'_> {
        Line {
            name: &self.name,
            levelno: self.levelno,
            levelname: self.levelname,
            message: &self.message,
            now: self.now,
            relative: self.relative,
            module_path: &self.module_path,
            file: &self.file,
            line: self.line,
        }
    }
}

/// Lines held until Dask's logging config is known (Python's scheduler
/// applies it before its first line); `None`: not holding.
static HELD: Mutex<Option<Vec<HeldLine>>> = Mutex::new(None);

/// At most this many lines are held; more release them.
const MAX_HELD: usize = 1000;

/// Hold INFO and lower lines from now until [`install`] or
/// [`release_held`] (warnings and errors are never held: they release the
/// held lines, then are written at once).
pub fn hold_early_lines() {
    *HELD.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
}

/// Stop holding: the held lines go to stderr in Dask's format (the config
/// turned out unknown, or the scheduler is exiting).
pub fn release_held() {
    let held = HELD.lock().unwrap_or_else(PoisonError::into_inner).take();
    for l in held.unwrap_or_default() {
        write_default(&l.line());
    }
}

fn hold_or_write(line: &Line<'_>) {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(lines) = held.as_mut() {
        if line.levelno <= 20 && lines.len() < MAX_HELD {
            lines.push(HeldLine {
                name: line.name.to_string(),
                levelno: line.levelno,
                levelname: line.levelname,
                message: line.message.to_string(),
                now: line.now,
                relative: line.relative,
                module_path: line.module_path.to_string(),
                file: line.file.to_string(),
                line: line.line,
            });
            return;
        }
        // a warning must not wait: what was held first, in order
        for l in held.take().unwrap_or_default() {
            write_default(&l.line());
        }
    }
    drop(held);
    write_default(line);
}

/// Dask's format (or `distributed.admin.log-format`) on stderr: the output
/// before Dask's logging config is known, and without it.
fn write_default(line: &Line<'_>) {
    let asctime = line.now.format(DASK_DATE_FORMAT).to_string();
    let record = line.record(&asctime);
    let mut text = match crate::logformat::current() {
        Some(custom) => custom.render(&record),
        None => crate::logformat::default_format().render(&record),
    };
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The router in use; `None` until Dask's logging config is known.
static ROUTER: RwLock<Option<Arc<Router>>> = RwLock::new(None);

/// Route the lines through `router` from now on, the held ones first.
pub fn install(router: Router) {
    let router = Arc::new(router);
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    *ROUTER.write().unwrap_or_else(PoisonError::into_inner) = Some(router.clone());
    for l in held.take().unwrap_or_default() {
        router.write(&l.line());
    }
}

/// The router in use, if any.
pub fn current() -> Option<Arc<Router>> {
    ROUTER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logsetup::{HandlerConf, LoggerConf};

    fn handler(level: i64, destination: Destination, format: &str) -> HandlerConf {
        HandlerConf {
            class: "logging.FileHandler".into(),
            level,
            destination,
            format: Ok(Formatter::Text {
                format: format.into(),
                datefmt: None,
            }),
            filters: Vec::new(),
        }
    }

    fn line<'a>(name: &'a str, levelno: i64, message: &'a str) -> Line<'a> {
        Line {
            name,
            levelno,
            levelname: match levelno {
                10 => "DEBUG",
                20 => "INFO",
                _ => "WARNING",
            },
            message,
            now: chrono::Local::now(),
            relative: 0.0,
            module_path: "m",
            file: "f.rs",
            line: 1,
        }
    }

    #[test]
    fn lines_reach_files_by_logger_and_handler_level() {
        let (dir, all) = scratch("levels", "all.log");
        let warn = dir.join("warn.log").to_string_lossy().into_owned();
        let file = |p: &str| Destination::File {
            path: p.into(),
            mode: "a".into(),
            watched: false,
        };
        let setup = LoggingSetup {
            root: LoggerConf {
                level: 20,
                handlers: vec![1],
                ..LoggerConf::default()
            },
            loggers: [(
                "distributed.scheduler".to_string(),
                LoggerConf {
                    level: 10,
                    handlers: vec![0],
                    ..LoggerConf::default()
                },
            )]
            .into(),
            handlers: vec![
                handler(0, file(&all), "%(levelname)s %(name)s %(message)s"),
                handler(30, file(&warn), "%(name)s: %(message)s"),
            ],
            last_resort: None,
        };
        let (router, warnings) = Router::new(setup, false);
        assert!(warnings.is_empty(), "{warnings:?}");
        router.write(&line("distributed.scheduler", 10, "debug here"));
        router.write(&line("distributed.scheduler", 30, "warned"));
        router.write(&line("distributed.core", 20, "core info"));
        router.write(&line("distributed.core", 10, "core debug"));
        router.write(&line("hyper.proto", 30, "library"));
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(&all),
            "DEBUG distributed.scheduler debug here\n\
             WARNING distributed.scheduler warned\n\
             WARNING hyper.proto library\n"
        );
        assert_eq!(
            read(&warn),
            "distributed.scheduler: warned\nhyper.proto: library\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory for one test's files, and the path of `file` in it.
    fn scratch(test: &str, file: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!("logroute-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file).to_string_lossy().into_owned();
        (dir, path)
    }

    /// Everything from DEBUG up to one handler on the root, in `%(message)s`.
    fn root_only(destination: Destination) -> LoggingSetup {
        LoggingSetup {
            root: LoggerConf {
                level: 10,
                handlers: vec![0],
                ..LoggerConf::default()
            },
            loggers: HashMap::new(),
            handlers: vec![handler(0, destination, "%(message)s")],
            last_resort: None,
        }
    }

    #[test]
    fn a_watched_file_is_reopened_after_logrotate_moved_it() {
        let (dir, path) = scratch("watch", "w.log");
        let setup = root_only(Destination::File {
            path: path.clone(),
            mode: "a".into(),
            watched: true,
        });
        let (router, warnings) = Router::new(setup, false);
        assert!(warnings.is_empty(), "{warnings:?}");
        router.write(&line("distributed.scheduler", 20, "before"));
        std::fs::rename(&path, format!("{path}.1")).unwrap();
        router.write(&line("distributed.scheduler", 20, "after"));
        let read = |p: String| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(format!("{path}.1")), "before\n");
        assert_eq!(read(path.clone()), "after\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_timed_rotating_file_rolls_over_when_due_and_keeps_backup_count() {
        let (dir, path) = scratch("timed", "t.log");
        for old in ["2020-01-01_00-00-00", "2020-01-02_00-00-00", "keepme"] {
            std::fs::write(format!("{path}.{old}"), "old\n").unwrap();
        }
        let due = epoch_now() - 5;
        let setup = root_only(Destination::Timed {
            path: path.clone(),
            rollover_at: due,
            interval: 3600,
            from_last: false,
            suffix: "%Y-%m-%d_%H-%M-%S".into(),
            utc: true,
            backup_count: 1,
        });
        std::fs::write(&path, "before\n").unwrap();
        let (router, warnings) = Router::new(setup, false);
        assert!(warnings.is_empty(), "{warnings:?}");
        router.write(&line("distributed.scheduler", 20, "after"));
        router.write(&line("distributed.scheduler", 20, "again"));
        // rolled over once (the next is an hour away), named for the start
        // of the interval that ended, the older stamped files deleted
        let rotated = format!(
            "{path}.{}",
            chrono::DateTime::from_timestamp(due - 3600, 0)
                .unwrap()
                .format("%Y-%m-%d_%H-%M-%S")
        );
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&rotated), "before\n");
        assert_eq!(read(&path), "after\nagain\n");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let want = ["t.log", "t.log.keepme", rotated.rsplit('/').next().unwrap()];
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(left, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timed_rollovers_follow_the_last_or_the_moment() {
        let timed = |from_last| Timed {
            path: String::new(),
            interval: 10,
            from_last,
            suffix: "%Y-%m-%d".into(),
            utc: true,
            backup_count: 0,
        };
        // MIDNIGHT / W: the next after the last that is still ahead
        assert_eq!(timed(true).next(100, 105), 110);
        assert_eq!(timed(true).next(100, 135), 140);
        // S / M / H / D: an interval from the moment of rolling over
        assert_eq!(timed(false).next(100, 135), 145);
    }

    #[test]
    fn a_rotating_file_rolls_over_as_pythons() {
        let (dir, path) = scratch("rot", "r.log");
        let setup = root_only(Destination::Rotating {
            path: path.clone(),
            max_bytes: 20,
            backup_count: 2,
        });
        let (router, _) = Router::new(setup, false);
        // 10 bytes a line: a line that would reach 20 bytes rolls over first
        for m in ["aaaaaaaaa", "bbbbbbbbb", "ccccccccc", "ddddddddd"] {
            router.write(&line("distributed.scheduler", 20, m));
        }
        let read = |p: String| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()), "ddddddddd\n");
        assert_eq!(read(format!("{path}.1")), "ccccccccc\n");
        assert_eq!(read(format!("{path}.2")), "bbbbbbbbb\n");
        assert!(!std::path::Path::new(&format!("{path}.3")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsupported_parts_are_named() {
        let mut bad_format = handler(0, Destination::Stderr, "%(nope)s");
        bad_format.class = "logging.StreamHandler".into();
        bad_format.filters = vec![crate::logsetup::FilterConf::Other("x.Filter".into())];
        let mut json = handler(0, Destination::Stderr, "");
        json.format = Err("formatter class pythonjsonlogger.json.JsonFormatter".into());
        let socket = handler(
            0,
            Destination::Unsupported("handler class logging.handlers.SocketHandler".into()),
            "%(message)s",
        );
        let mut dated = handler(0, Destination::Null, "%(asctime)s");
        dated.format = Ok(Formatter::Text {
            format: "%(asctime)s".into(),
            datefmt: Some("%Q".into()),
        });
        // a handler only another logger uses, never written to: no warning
        let elsewhere = handler(
            0,
            Destination::Unsupported("handler class logging.handlers.SysLogHandler".into()),
            "%(message)s",
        );
        let setup = LoggingSetup {
            root: LoggerConf {
                level: 20,
                handlers: vec![0, 1, 2, 3],
                ..LoggerConf::default()
            },
            loggers: [(
                "tornado".to_string(),
                LoggerConf {
                    handlers: vec![4],
                    ..LoggerConf::default()
                },
            )]
            .into(),
            handlers: vec![bad_format, json, socket, dated, elsewhere],
            last_resort: None,
        };
        let (_, warnings) = Router::new(setup, false);
        let all = warnings.join("\n");
        assert!(!all.contains("SysLogHandler"), "{all}");
        for want in [
            "log-format field %(nope) is not supported",
            "formatter class pythonjsonlogger.json.JsonFormatter is not supported",
            "handler class logging.handlers.SocketHandler is not supported",
            "datefmt \"%Q\" is not supported",
            "x.Filter",
        ] {
            assert!(all.contains(want), "{want} not in {all}");
        }
    }
}
