//! `distributed.admin.log-format`: the Python `logging` format string
//! (`%(asctime)s - %(name)s - %(levelname)s - %(message)s` by default) that
//! Dask's scheduler formats its log lines with. Operators set it to make
//! lines their log collectors parse (JSON lines, say); this scheduler renders
//! the same `%(field)` directives, with Python's `%`-conversion flags, width
//! and precision.
//!
//! Fields: `asctime`, `name`, `levelname`, `levelno`, `message`, `created`,
//! `msecs`, `relativeCreated`, `process`, `processName`, `thread`,
//! `threadName`, and, from the Rust source the line comes from, `module`,
//! `filename`, `pathname`, `funcName` (the Rust module path) and `lineno`.
//! A format naming any other field, or malformed, is refused with a
//! [`LogFormatError`] naming what (Python's logging would print a "Logging
//! error" for each line instead).

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

/// Dask's default `log-format`.
pub const DEFAULT: &str = "%(asctime)s - %(name)s - %(levelname)s - %(message)s";

/// Why a `log-format` was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogFormatError {
    /// `%(...)` names a field this scheduler does not have.
    #[error("log-format field %({0}) is not supported by this scheduler")]
    UnknownField(String),
    /// A `%` directive that is not `%%` or `%(name)<spec><conversion>`.
    #[error("malformed log-format directive at byte {0}: {1:?}")]
    Malformed(usize, String),
}

/// A value of a field, for one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Asctime,
    Name,
    Levelname,
    Levelno,
    Message,
    Created,
    Msecs,
    RelativeCreated,
    Process,
    ProcessName,
    Thread,
    ThreadName,
    Module,
    Filename,
    Pathname,
    FuncName,
    Lineno,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "asctime" => Field::Asctime,
            "name" => Field::Name,
            "levelname" => Field::Levelname,
            "levelno" => Field::Levelno,
            "message" => Field::Message,
            "created" => Field::Created,
            "msecs" => Field::Msecs,
            "relativeCreated" => Field::RelativeCreated,
            "process" => Field::Process,
            "processName" => Field::ProcessName,
            "thread" => Field::Thread,
            "threadName" => Field::ThreadName,
            "module" => Field::Module,
            "filename" => Field::Filename,
            "pathname" => Field::Pathname,
            "funcName" => Field::FuncName,
            "lineno" => Field::Lineno,
            _ => return None,
        })
    }
}

/// One `%(field)<flags><width>.<precision><conversion>` directive.
#[derive(Debug, Clone, PartialEq)]
struct Directive {
    field: Field,
    left: bool,
    zero: bool,
    plus: bool,
    width: usize,
    precision: Option<usize>,
    /// `s`, `r`, `d`, `i`, `f`, `F`, `e`, `g`, `x`
    conversion: char,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Value(Directive),
}

/// A parsed `log-format`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFormat {
    pieces: Vec<Piece>,
}

/// What one log line says, for [`LogFormat::render`].
pub struct Record<'a> {
    /// local time, `YYYY-mm-dd HH:MM:SS,mmm`
    pub asctime: &'a str,
    /// the Dask logger name
    pub name: &'a str,
    /// Python's level name
    pub levelname: &'a str,
    /// Python's level number
    pub levelno: i64,
    /// the message, fields included
    pub message: &'a str,
    /// epoch seconds
    pub created: f64,
    /// seconds since the process started logging
    pub relative: f64,
    /// the Rust module path the line comes from
    pub module_path: &'a str,
    /// the Rust source file
    pub file: &'a str,
    /// and line
    pub line: u32,
}

impl LogFormat {
    /// Parse a Python `%`-style logging format.
    pub fn parse(format: &str) -> Result<LogFormat, LogFormatError> {
        let bytes = format.as_bytes();
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let Some(off) = format[i..].find('%') else {
                text.push_str(&format[i..]);
                break;
            };
            text.push_str(&format[i..i + off]);
            let at = i + off;
            let malformed = || {
                let end = (at + 12).min(format.len());
                let end = (end..=format.len())
                    .find(|e| format.is_char_boundary(*e))
                    .unwrap_or(format.len());
                LogFormatError::Malformed(at, format[at..end].to_string())
            };
            match bytes.get(at + 1) {
                Some(b'%') => {
                    text.push('%');
                    i = at + 2;
                    continue;
                }
                Some(b'(') => {}
                _ => return Err(malformed()),
            }
            let close = format[at + 2..].find(')').ok_or_else(malformed)? + at + 2;
            let name = &format[at + 2..close];
            let field =
                Field::parse(name).ok_or_else(|| LogFormatError::UnknownField(name.to_string()))?;
            let mut j = close + 1;
            let (mut left, mut zero, mut plus) = (false, false, false);
            while let Some(&c) = bytes.get(j) {
                match c {
                    b'-' => left = true,
                    b'0' => zero = true,
                    b'+' => plus = true,
                    b' ' | b'#' => {}
                    _ => break,
                }
                j += 1;
            }
            let digits = |j: &mut usize| {
                let start = *j;
                while bytes.get(*j).is_some_and(u8::is_ascii_digit) {
                    *j += 1;
                }
                format[start..*j].parse::<usize>().ok()
            };
            let width = digits(&mut j).unwrap_or(0);
            let precision = if bytes.get(j) == Some(&b'.') {
                j += 1;
                Some(digits(&mut j).unwrap_or(0))
            } else {
                None
            };
            let conversion = match bytes.get(j) {
                Some(c) if b"srdifFeEgGxX".contains(c) => *c as char,
                _ => return Err(malformed()),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Value(Directive {
                field,
                left,
                zero,
                plus,
                width,
                precision,
                conversion,
            }));
            i = j + 1;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(LogFormat { pieces })
    }

    /// Whether this is Dask's default format.
    pub fn is_default(&self) -> bool {
        *self == *default_format()
    }

    /// The line for `record` (without a newline).
    pub fn render(&self, record: &Record<'_>) -> String {
        let mut out = String::with_capacity(record.message.len() + 64);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(d) => d.render(record, &mut out),
            }
        }
        out
    }
}

/// A field's value before conversion.
pub(crate) enum Raw<'a> {
    /// A string field.
    Text(&'a str),
    /// An int field.
    Int(i64),
    /// A float field.
    Float(f64),
}

/// The value of the record field Python's logging calls `name`, `None` for
/// one this scheduler does not have; `scratch` holds one made for this line.
pub(crate) fn named_value<'a>(
    name: &str,
    r: &Record<'a>,
    scratch: &'a mut String,
) -> Option<Raw<'a>> {
    Field::parse(name).map(|f| field_value(f, r, scratch))
}

/// A field's value; `scratch` holds one made for this line (the thread's
/// name).
fn field_value<'a>(field: Field, r: &Record<'a>, scratch: &'a mut String) -> Raw<'a> {
    let module = r.module_path.rsplit("::").next().unwrap_or(r.module_path);
    let filename = r.file.rsplit('/').next().unwrap_or(r.file);
    match field {
        Field::Asctime => Raw::Text(r.asctime),
        Field::Name => Raw::Text(r.name),
        Field::Levelname => Raw::Text(r.levelname),
        Field::Levelno => Raw::Int(r.levelno),
        Field::Message => Raw::Text(r.message),
        Field::Created => Raw::Float(r.created),
        // Python's `int((ct - int(ct)) * 1000) + 0.0`
        Field::Msecs => Raw::Float((r.created.fract() * 1000.0).trunc()),
        Field::RelativeCreated => Raw::Float(r.relative * 1000.0),
        Field::Process => Raw::Int(i64::from(std::process::id())),
        Field::ProcessName => Raw::Text("MainProcess"),
        Field::Thread => Raw::Int(thread_number()),
        Field::ThreadName => {
            *scratch = match std::thread::current().name() {
                Some("main") => "MainThread".to_string(),
                Some(name) => name.to_string(),
                None => format!("Thread-{}", thread_number()),
            };
            Raw::Text(scratch)
        }
        Field::Module => Raw::Text(module),
        Field::Filename => Raw::Text(filename),
        Field::Pathname => Raw::Text(r.file),
        Field::FuncName => Raw::Text(r.module_path),
        Field::Lineno => Raw::Int(i64::from(r.line)),
    }
}

impl Directive {
    fn render(&self, r: &Record<'_>, out: &mut String) {
        let mut scratch = String::new();
        let raw = field_value(self.field, r, &mut scratch);
        let mut body = match (self.conversion, raw) {
            ('s', Raw::Text(t)) => match self.precision {
                Some(p) => t.chars().take(p).collect(),
                None => t.to_string(),
            },
            // Python's repr of a plain string
            ('r', Raw::Text(t)) => {
                let quoted = format!("'{}'", t.replace('\\', "\\\\").replace('\'', "\\'"));
                match self.precision {
                    Some(p) => quoted.chars().take(p).collect(),
                    None => quoted,
                }
            }
            ('s' | 'r', Raw::Int(n)) => n.to_string(),
            ('s' | 'r', Raw::Float(f)) => python_float_str(f),
            ('d' | 'i', Raw::Int(n)) => n.to_string(),
            ('d' | 'i', Raw::Float(f)) => format!("{}", f.trunc() as i64),
            ('x', Raw::Int(n)) => format!("{n:x}"),
            ('X', Raw::Int(n)) => format!("{n:X}"),
            ('f' | 'F', Raw::Int(n)) => format!("{:.*}", self.precision.unwrap_or(6), n as f64),
            ('f' | 'F', Raw::Float(f)) => format!("{:.*}", self.precision.unwrap_or(6), f),
            ('e' | 'E', Raw::Int(n)) => format!("{:.*e}", self.precision.unwrap_or(6), n as f64),
            ('e' | 'E', Raw::Float(f)) => format!("{:.*e}", self.precision.unwrap_or(6), f),
            ('g' | 'G', Raw::Int(n)) => python_float_str(n as f64),
            ('g' | 'G', Raw::Float(f)) => python_float_str(f),
            // a number conversion of text: Python's logging would fail on it;
            // the text is more use in a log line than nothing
            (_, Raw::Text(t)) => t.to_string(),
            (_, Raw::Int(n)) => n.to_string(),
            (_, Raw::Float(f)) => python_float_str(f),
        };
        if self.plus && !body.starts_with('-') && self.conversion != 's' {
            body.insert(0, '+');
        }
        self.pad(body, out);
    }

    fn pad(&self, body: String, out: &mut String) {
        let len = body.chars().count();
        if len >= self.width {
            out.push_str(&body);
        } else if self.left {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', self.width - len));
        } else if self.zero && self.conversion != 's' {
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(rest) => (&body[..1], rest),
                None => ("", body.as_str()),
            };
            let _ = write!(out, "{sign}{}{digits}", "0".repeat(self.width - len));
        } else {
            out.extend(std::iter::repeat_n(' ', self.width - len));
            out.push_str(&body);
        }
    }
}

/// `str(f)` of a Python float: the shortest repr, with `.0` for integers.
pub(crate) fn python_float_str(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// A small, stable number per thread (Python's `thread` is an identifier).
fn thread_number() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(1);
    thread_local! {
        static ID: i64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// Dask's default format, parsed once.
pub(crate) fn default_format() -> &'static LogFormat {
    static D: OnceLock<LogFormat> = OnceLock::new();
    D.get_or_init(|| LogFormat::parse(DEFAULT).expect("Dask's default parses"))
}

/// The format in use, `None` for Dask's default.
static CURRENT: RwLock<Option<Arc<LogFormat>>> = RwLock::new(None);

/// Use `format` for the lines from now on (Dask's default: `None`).
pub fn set(format: Option<LogFormat>) {
    let format = format.filter(|f| !f.is_default()).map(Arc::new);
    if let Ok(mut current) = CURRENT.write() {
        *current = format;
    }
}

/// The format in use, `None` for Dask's default.
pub fn current() -> Option<Arc<LogFormat>> {
    CURRENT.read().ok().and_then(|c| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record<'static> {
        Record {
            asctime: "2026-12-06 10:00:00,123",
            name: "distributed.scheduler",
            levelname: "INFO",
            levelno: 20,
            message: "Receive client connection: Client-1",
            created: 1796551200.123,
            relative: 1.5,
            module_path: "dask_scheduler::scheduler::connection",
            file: "crates/server/src/scheduler/connection.rs",
            line: 42,
        }
    }

    #[test]
    fn renders_like_python_logging() {
        // (format, line) pairs checked against Python's logging.Formatter
        // with the same record fields
        let cases = [
            (
                DEFAULT,
                "2026-12-06 10:00:00,123 - distributed.scheduler - INFO - Receive client connection: Client-1",
            ),
            ("%(levelname)-8s|%(name)s", "INFO    |distributed.scheduler"),
            ("%(levelname)8s|", "    INFO|"),
            ("[%(levelno)03d] %(message).7s", "[020] Receive"),
            ("%(msecs)03d %(relativeCreated).1f", "122 1500.0"),
            ("%(levelno)+d %(levelno)05d %(created).2f %(msecs)s", "+20 00020 1796551200.12 122.0"),
            ("%(levelname)r", "'INFO'"),
            ("%(created)f", "1796551200.123000"),
            ("100%% %(lineno)d %(module)s %(filename)s", "100% 42 connection connection.rs"),
            (
                r#"{"t": "%(asctime)s", "lvl": "%(levelname)s", "msg": "%(message)s"}"#,
                r#"{"t": "2026-12-06 10:00:00,123", "lvl": "INFO", "msg": "Receive client connection: Client-1"}"#,
            ),
        ];
        for (format, want) in cases {
            let f = LogFormat::parse(format).unwrap();
            assert_eq!(f.render(&record()), want, "{format}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        assert_eq!(
            LogFormat::parse("%(asctime)s %(stack_info)s"),
            Err(LogFormatError::UnknownField("stack_info".into()))
        );
        for bad in ["%(name", "%s", "%(name)", "%(name)q", "50%"] {
            assert!(
                matches!(LogFormat::parse(bad), Err(LogFormatError::Malformed(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_default_is_recognised() {
        assert!(LogFormat::parse(DEFAULT).unwrap().is_default());
        assert!(!LogFormat::parse("%(message)s").unwrap().is_default());
    }
}
