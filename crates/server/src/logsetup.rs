//! Python's logging set-up as Dask's config leaves it (the `logging:`
//! section in its old form or its `version: 1` dictConfig form, or
//! `logging-file-config`), described by the materializer's Python, and
//! Python's rules for which handlers a logger's record reaches.
//!
//! The Python scheduler's lines go through that set-up; this scheduler
//! resolves its own logger names (`distributed.scheduler`, ...) the same
//! way and writes the lines itself ([`crate::logroute`]).

use dask_wire::Value;
use std::collections::HashMap;

/// Python's `logging.NOTSET`: a logger without a level of its own.
const NOTSET: i64 = 0;

/// One logger's settings of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggerConf {
    /// Its level, `0` (NOTSET) when it takes its parent's.
    pub level: i64,
    /// Whether records go on to its parent's handlers.
    pub propagate: bool,
    /// `Logger.disabled` (dictConfig's `disable_existing_loggers`).
    pub disabled: bool,
    /// Its handlers, as positions in [`LoggingSetup::handlers`].
    pub handlers: Vec<usize>,
    /// Its filters.
    pub filters: Vec<FilterConf>,
}

/// A logging filter on a logger or handler.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterConf {
    /// `logging.Filter(name)`: records of that logger and its children
    /// (all, for an empty name).
    Name(String),
    /// Any other filter: its class (not applied by this scheduler).
    Other(String),
}

impl FilterConf {
    /// Python's `Filter.filter` for a record of logger `logger`; a filter
    /// this scheduler cannot apply lets everything through.
    pub fn passes(&self, logger: &str) -> bool {
        match self {
            FilterConf::Name(n) => {
                n.is_empty()
                    || logger
                        .strip_prefix(n.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            }
            FilterConf::Other(_) => true,
        }
    }

    fn unapplied(&self) -> Option<&str> {
        match self {
            FilterConf::Other(class) => Some(class),
            FilterConf::Name(_) => None,
        }
    }
}

impl Default for LoggerConf {
    /// A logger nothing configured: Python's fresh `getLogger(name)`.
    fn default() -> LoggerConf {
        LoggerConf {
            level: NOTSET,
            propagate: true,
            disabled: false,
            handlers: Vec::new(),
            filters: Vec::new(),
        }
    }
}

/// Where a handler writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// `StreamHandler(sys.stderr)` (Python's default stream).
    Stderr,
    /// `StreamHandler(sys.stdout)`.
    Stdout,
    /// `FileHandler` or `WatchedFileHandler` (`watched`: reopened when the
    /// file at `path` is moved or removed, as by logrotate): the file, and
    /// the mode Python opened it with.
    File {
        path: String,
        mode: String,
        watched: bool,
    },
    /// `RotatingFileHandler`.
    Rotating {
        path: String,
        max_bytes: u64,
        backup_count: u32,
    },
    /// `TimedRotatingFileHandler`, as Python set it up: the first rollover
    /// time (epoch s), the seconds between rollovers, whether the next one
    /// counts from the last (`MIDNIGHT`, `W0`-`W6`) or from the moment of
    /// rolling over (`S`, `M`, `H`, `D`), the rotated files' `strftime`
    /// suffix, UTC or local time, and how many rotated files are kept.
    Timed {
        path: String,
        rollover_at: i64,
        interval: i64,
        from_last: bool,
        suffix: String,
        utc: bool,
        backup_count: u32,
    },
    /// `NullHandler`: nothing.
    Null,
    /// Anything else, and why (a handler class this scheduler cannot write
    /// for, or a stream other than stdout/stderr).
    Unsupported(String),
}

/// How a handler formats its lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Formatter {
    /// `logging.Formatter`: a `%`-style format (converted from `{` or `$`
    /// style by the materializer) and its `datefmt`.
    Text {
        /// The format string.
        format: String,
        /// `time.strftime` format of `%(asctime)s`; `None`: Python's default.
        datefmt: Option<String>,
    },
    /// python-json-logger's `JsonFormatter`.
    Json(JsonSpec),
}

/// What a `JsonFormatter` line holds, as the materializer worked it out
/// from the formatter's settings (Python's `add_fields` order, renames,
/// static fields and defaults already applied).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSpec {
    /// Text before the JSON object.
    pub prefix: String,
    /// `json_indent` as the string one level indents by; `None`: one line.
    pub indent: Option<String>,
    /// `json_ensure_ascii`: non-ASCII characters as `\uXXXX`.
    pub ensure_ascii: bool,
    /// `datefmt` of the `asctime` field.
    pub datefmt: Option<String>,
    /// The object's members in order: each key's JSON text and its value.
    pub entries: Vec<(String, JsonSource)>,
}

/// Where a JSON member's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonSource {
    /// A field of the log record (`message`, `levelname`, ...).
    Field(String),
    /// A fixed value: its JSON text.
    Value(String),
    /// The record's time in UTC, ISO 8601 (`timestamp=True`).
    Timestamp,
}

/// One handler.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerConf {
    /// Its class, `module.Name`, for messages.
    pub class: String,
    /// Records below this level are dropped (`0`: none are).
    pub level: i64,
    /// Where it writes.
    pub destination: Destination,
    /// Its formatter, or why it cannot be rendered here.
    pub format: Result<Formatter, String>,
    /// Its filters.
    pub filters: Vec<FilterConf>,
}

/// The whole set-up: what the materializer's `_describe_logging` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSetup {
    /// The root logger.
    pub root: LoggerConf,
    /// Loggers with a setting of their own, by name.
    pub loggers: HashMap<String, LoggerConf>,
    /// Every handler a logger uses.
    pub handlers: Vec<HandlerConf>,
    /// `logging.lastResort`: where a record that found no handler goes.
    pub last_resort: Option<usize>,
}

/// Which of a logger's records are written, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The lowest level written; `None` when the logger is disabled.
    pub level: Option<i64>,
    /// The handlers a record reaches, in Python's order.
    pub handlers: Vec<usize>,
    /// No handler on the way: records go to the handler of last resort.
    pub last_resort: bool,
    /// The classes of the filters on the way (logger's own and handlers')
    /// this scheduler does not apply.
    pub filters: Vec<String>,
}

impl Route {
    /// Whether a record of Python level `level` is written at all.
    pub fn enabled(&self, level: i64) -> bool {
        self.level.is_some_and(|l| level >= l)
    }
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A `filters` list: `{"name": ...}` for `logging.Filter`, else the class.
fn filters(v: &Value) -> Vec<FilterConf> {
    v.get("filters")
        .and_then(Value::as_seq)
        .unwrap_or(&[])
        .iter()
        .map(
            |f| match (f.as_str(), f.get("name").and_then(Value::as_str)) {
                (Some(class), _) => FilterConf::Other(class.to_string()),
                (None, Some(name)) => FilterConf::Name(name.to_string()),
                (None, None) => FilterConf::Other(format!("{f:?}")),
            },
        )
        .collect()
}

fn logger(v: &Value, handlers: usize) -> Result<LoggerConf, String> {
    let mut refs = Vec::new();
    for h in v.get("handlers").and_then(Value::as_seq).unwrap_or(&[]) {
        match h.as_i64() {
            Some(i) if (0..handlers as i64).contains(&i) => refs.push(i as usize),
            _ => return Err(format!("a logger names handler {h:?}, not one described")),
        }
    }
    Ok(LoggerConf {
        level: int(v, "level").unwrap_or(NOTSET),
        propagate: v.get("propagate").is_none_or(Value::truthy),
        disabled: v.get("disabled").is_some_and(Value::truthy),
        handlers: refs,
        filters: filters(v),
    })
}

fn handler(v: &Value) -> HandlerConf {
    let path = || text(v, "path").unwrap_or_default();
    let destination = match v.get("kind").and_then(Value::as_str) {
        Some("stderr") => Destination::Stderr,
        Some("stdout") => Destination::Stdout,
        Some("file") => Destination::File {
            path: path(),
            mode: text(v, "mode").unwrap_or_else(|| "a".into()),
            watched: v.get("watched").is_some_and(Value::truthy),
        },
        Some("rotating") => Destination::Rotating {
            path: path(),
            max_bytes: int(v, "max-bytes").unwrap_or(0).max(0) as u64,
            backup_count: int(v, "backup-count").unwrap_or(0).clamp(0, 1000) as u32,
        },
        Some("timed") => {
            let when = text(v, "when").unwrap_or_default();
            Destination::Timed {
                path: path(),
                rollover_at: int(v, "rollover-at").unwrap_or(0),
                interval: int(v, "interval").unwrap_or(86400).max(1),
                from_last: when == "MIDNIGHT" || when.starts_with('W'),
                suffix: text(v, "suffix").unwrap_or_else(|| "%Y-%m-%d".into()),
                utc: v.get("utc").is_some_and(Value::truthy),
                backup_count: int(v, "backup-count").unwrap_or(0).clamp(0, 100_000) as u32,
            }
        }
        Some("null") => Destination::Null,
        _ => Destination::Unsupported(text(v, "why").unwrap_or_else(|| "unknown handler".into())),
    };
    let format = match (text(v, "format"), v.get("json"), text(v, "format-error")) {
        (_, _, Some(why)) => Err(why),
        (Some(format), _, None) => Ok(Formatter::Text {
            format,
            datefmt: text(v, "datefmt"),
        }),
        (None, Some(json), None) => json_spec(json).map(Formatter::Json),
        (None, None, None) => Err("no format described".into()),
    };
    HandlerConf {
        class: text(v, "class").unwrap_or_default(),
        level: int(v, "level").unwrap_or(NOTSET),
        destination,
        format,
        filters: filters(v),
    }
}

fn json_spec(v: &Value) -> Result<JsonSpec, String> {
    let mut entries = Vec::new();
    for e in v.get("entries").and_then(Value::as_seq).unwrap_or(&[]) {
        let part = |i: usize| e.as_seq().and_then(|p| p.get(i));
        let key = part(0).and_then(Value::as_str);
        let arg = part(2).and_then(Value::as_str).map(str::to_string);
        let source = match (part(1).and_then(Value::as_str), arg) {
            (Some("field"), Some(f)) => JsonSource::Field(f),
            (Some("value"), Some(json)) => JsonSource::Value(json),
            (Some("timestamp"), _) => JsonSource::Timestamp,
            _ => return Err(format!("a JSON formatter member {e:?} not understood")),
        };
        let key = key.ok_or_else(|| format!("a JSON formatter member {e:?} without a key"))?;
        entries.push((key.to_string(), source));
    }
    Ok(JsonSpec {
        prefix: text(v, "prefix").unwrap_or_default(),
        indent: text(v, "indent"),
        ensure_ascii: v.get("ensure-ascii").is_none_or(Value::truthy),
        datefmt: text(v, "datefmt"),
        entries,
    })
}

impl LoggingSetup {
    /// Read the materializer's description; an error says what is wrong
    /// with it (or what the Python side failed with).
    pub fn from_value(v: &Value) -> Result<LoggingSetup, String> {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(e.to_string());
        }
        let handlers: Vec<HandlerConf> = v
            .get("handlers")
            .and_then(Value::as_seq)
            .unwrap_or(&[])
            .iter()
            .map(handler)
            .collect();
        let n = handlers.len();
        let root = logger(v.get("root").ok_or("no root logger described")?, n)?;
        let mut loggers = HashMap::new();
        for (name, conf) in v.get("loggers").and_then(Value::as_map).unwrap_or(&[]) {
            let name = name.as_str().ok_or("a logger name is not a string")?;
            loggers.insert(name.to_string(), logger(conf, n)?);
        }
        let last_resort = match v.get("last-resort").and_then(Value::as_i64) {
            Some(i) if (0..n as i64).contains(&i) => Some(i as usize),
            Some(i) => return Err(format!("last-resort handler {i} is not described")),
            None => None,
        };
        Ok(LoggingSetup {
            root,
            loggers,
            handlers,
            last_resort,
        })
    }

    /// Python's rules for a record logged to `name`: the logger's effective
    /// level (its own, else the nearest ancestor's that is set, else the
    /// root's), and `Logger.callHandlers`: its handlers, then each
    /// ancestor's, stopping after a logger that does not propagate; with
    /// none on the way, the handler of last resort.
    pub fn resolve(&self, name: &str) -> Route {
        let none = LoggerConf::default();
        // the logger itself, then its ancestors by dotted prefix, then root
        let mut chain: Vec<&LoggerConf> = Vec::new();
        let mut at = Some(name);
        while let Some(n) = at {
            chain.push(self.loggers.get(n).unwrap_or(&none));
            at = n.rfind('.').map(|i| &n[..i]);
        }
        chain.push(&self.root);
        let level = chain
            .iter()
            .map(|l| l.level)
            .find(|&l| l != NOTSET)
            .unwrap_or(NOTSET);
        let mut handlers: Vec<usize> = Vec::new();
        for l in &chain {
            handlers.extend(&l.handlers);
            if !l.propagate {
                break;
            }
        }
        // Python counts the handlers found, whether their filters pass or not
        let last_resort = handlers.is_empty();
        let own = &chain[0].filters;
        let mut unapplied: Vec<String> = own
            .iter()
            .filter_map(FilterConf::unapplied)
            .map(str::to_string)
            .collect();
        for &h in &handlers {
            let f = &self.handlers[h].filters;
            unapplied.extend(
                f.iter()
                    .filter_map(FilterConf::unapplied)
                    .map(str::to_string),
            );
        }
        // a name filter depends on the record's logger only, which is `name`
        handlers.retain(|&h| self.handlers[h].filters.iter().all(|f| f.passes(name)));
        let passes = own.iter().all(|f| f.passes(name));
        Route {
            level: (!chain[0].disabled && passes).then_some(level),
            last_resort,
            handlers,
            filters: unapplied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger(level: i64, propagate: bool, handlers: &[usize]) -> LoggerConf {
        LoggerConf {
            level,
            propagate,
            handlers: handlers.to_vec(),
            ..LoggerConf::default()
        }
    }

    fn setup(root: LoggerConf, loggers: &[(&str, LoggerConf)]) -> LoggingSetup {
        let h = |class: &str| HandlerConf {
            class: class.into(),
            level: 0,
            destination: Destination::Stderr,
            format: Ok(Formatter::Text {
                format: "%(message)s".into(),
                datefmt: None,
            }),
            filters: Vec::new(),
        };
        LoggingSetup {
            root,
            loggers: loggers
                .iter()
                .map(|(n, l)| (n.to_string(), l.clone()))
                .collect(),
            handlers: vec![h("h0"), h("h1"), h("h2"), h("last")],
            last_resort: Some(3),
        }
    }

    #[test]
    fn routes_follow_pythons_rules() {
        // (loggers, name, want level, want handlers, want last resort)
        type Case = (
            Vec<(&'static str, LoggerConf)>,
            &'static str,
            Option<i64>,
            Vec<usize>,
            bool,
        );
        let cases: Vec<Case> = vec![
            // Dask's old-style default: `distributed` at INFO with its own
            // handler, not propagating
            (
                vec![("distributed", logger(20, false, &[0]))],
                "distributed.scheduler",
                Some(20),
                vec![0],
                false,
            ),
            // a nearer level wins; handlers collect up the chain
            (
                vec![
                    ("distributed", logger(20, true, &[1])),
                    ("distributed.scheduler", logger(10, true, &[0])),
                ],
                "distributed.scheduler",
                Some(10),
                vec![0, 1, 2],
                false,
            ),
            // a child takes its parent's level through loggers set nowhere
            (
                vec![("distributed", logger(40, true, &[]))],
                "distributed.comm.tcp",
                Some(40),
                vec![2],
                false,
            ),
            // propagation stops after a logger that does not propagate
            (
                vec![("distributed.core", logger(0, false, &[1]))],
                "distributed.core",
                Some(30),
                vec![1],
                false,
            ),
            // no handler anywhere: the handler of last resort
            (
                vec![("distributed", logger(10, false, &[]))],
                "distributed.scheduler",
                Some(10),
                vec![],
                true,
            ),
            // a prefix that is not a dotted parent is not an ancestor
            (
                vec![("distributed.sched", logger(50, false, &[1]))],
                "distributed.scheduler",
                Some(30),
                vec![2],
                false,
            ),
        ];
        for (loggers, name, level, handlers, last_resort) in cases {
            let s = setup(logger(30, true, &[2]), &loggers);
            let r = s.resolve(name);
            assert_eq!(r.level, level, "{name} under {loggers:?}");
            assert_eq!(r.handlers, handlers, "{name} under {loggers:?}");
            assert_eq!(r.last_resort, last_resort, "{name} under {loggers:?}");
        }
    }

    #[test]
    fn name_filters_apply_as_pythons() {
        let only = |n: &str| FilterConf::Name(n.into());
        for (filter, logger, passes) in [
            (only(""), "distributed.core", true),
            (only("distributed"), "distributed.core", true),
            (only("distributed.core"), "distributed.core", true),
            (only("distributed.co"), "distributed.core", false),
            (only("distributed.scheduler"), "distributed.core", false),
            (FilterConf::Other("m.F".into()), "distributed.core", true),
        ] {
            assert_eq!(filter.passes(logger), passes, "{filter:?} on {logger}");
        }
        // a handler whose filter rejects the logger is left out (but still
        // counts as found: no last resort); a logger whose own filter
        // rejects its records writes nothing
        let mut s = setup(logger(20, true, &[0, 1]), &[]);
        s.handlers[0].filters = vec![only("distributed.core")];
        let r = s.resolve("distributed.scheduler");
        assert_eq!((r.handlers.clone(), r.last_resort), (vec![1], false));
        assert!(r.filters.is_empty());
        let mut own = logger(0, true, &[]);
        own.filters = vec![only("nothing")];
        let s = setup(logger(20, true, &[0]), &[("distributed.core", own)]);
        assert_eq!(s.resolve("distributed.core").level, None);
        assert_eq!(s.resolve("distributed.scheduler").level, Some(20));
    }

    #[test]
    fn a_disabled_logger_writes_nothing_but_its_children_do() {
        let mut off = logger(10, true, &[0]);
        off.disabled = true;
        let s = setup(logger(30, true, &[]), &[("distributed", off)]);
        assert_eq!(s.resolve("distributed").level, None);
        assert!(!s.resolve("distributed").enabled(50));
        let child = s.resolve("distributed.scheduler");
        assert_eq!(child.level, Some(10));
        assert!(child.enabled(20) && !child.enabled(5));
    }

    #[test]
    fn reads_the_helpers_description() {
        let v = Value::map([
            (
                "root",
                Value::map([
                    ("level", Value::Int(20)),
                    ("propagate", Value::Bool(true)),
                    ("disabled", Value::Bool(false)),
                    ("handlers", Value::Array(vec![Value::Int(0)])),
                ]),
            ),
            (
                "loggers",
                Value::map([(
                    "distributed.core",
                    Value::map([
                        ("level", Value::Int(40)),
                        ("propagate", Value::Bool(false)),
                        ("handlers", Value::Array(vec![Value::Int(1)])),
                        ("filters", Value::Array(vec![Value::str("m.F")])),
                    ]),
                )]),
            ),
            (
                "handlers",
                Value::Array(vec![
                    Value::map([
                        ("kind", Value::str("rotating")),
                        ("class", Value::str("logging.handlers.RotatingFileHandler")),
                        ("path", Value::str("/tmp/x.log")),
                        ("max-bytes", Value::Int(1000)),
                        ("backup-count", Value::Int(2)),
                        ("level", Value::Int(10)),
                        ("format", Value::str("%(message)s")),
                        ("datefmt", Value::str("%H:%M")),
                    ]),
                    Value::map([
                        ("kind", Value::str("unsupported")),
                        (
                            "why",
                            Value::str("handler class logging.handlers.SocketHandler"),
                        ),
                        (
                            "format-error",
                            Value::str("formatter class x.JsonFormatter"),
                        ),
                    ]),
                ]),
            ),
            ("last-resort", Value::Int(1)),
        ]);
        let s = LoggingSetup::from_value(&v).expect("valid");
        assert_eq!(
            s.handlers[0].destination,
            Destination::Rotating {
                path: "/tmp/x.log".into(),
                max_bytes: 1000,
                backup_count: 2
            }
        );
        assert_eq!(
            s.handlers[0].format,
            Ok(Formatter::Text {
                format: "%(message)s".into(),
                datefmt: Some("%H:%M".into())
            })
        );
        assert_eq!(
            s.handlers[1].destination,
            Destination::Unsupported("handler class logging.handlers.SocketHandler".into())
        );
        assert_eq!(
            s.handlers[1].format,
            Err("formatter class x.JsonFormatter".into())
        );
        let r = s.resolve("distributed.core");
        assert_eq!((r.level, r.handlers.clone()), (Some(40), vec![1]));
        assert_eq!(r.filters, vec!["m.F".to_string()]);
        assert_eq!(s.last_resort, Some(1));
        // a logger naming a handler that is not there is refused
        let bad = Value::map([(
            "root",
            Value::map([("handlers", Value::Array(vec![Value::Int(5)]))]),
        )]);
        assert!(LoggingSetup::from_value(&bad).is_err());
        let failed = Value::map([("error", Value::str("ValueError: x"))]);
        assert_eq!(
            LoggingSetup::from_value(&failed),
            Err("ValueError: x".into())
        );
    }
}
