//! Lines of python-json-logger's `JsonFormatter`, the formatter Dask's
//! `logging:` config names when an operator's log collector wants JSON: one
//! object per line, members as the materializer worked them out
//! ([`crate::logsetup::JsonSpec`]), each value serialized as Python's
//! `json.dumps` serializes it.

use crate::logformat::{named_value, python_float_str, Raw, Record};
use crate::logsetup::{JsonSource, JsonSpec};

/// The line for `record` (without a newline).
pub fn render(spec: &JsonSpec, record: &Record<'_>) -> String {
    let mut out = String::with_capacity(record.message.len() + 192);
    out.push_str(&spec.prefix);
    out.push('{');
    for (i, (key, source)) in spec.entries.iter().enumerate() {
        if i > 0 {
            // json.dumps's separators: ", " on one line, "," when indented
            out.push(',');
            if spec.indent.is_none() {
                out.push(' ');
            }
        }
        if let Some(indent) = &spec.indent {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(key);
        out.push_str(": ");
        match source {
            JsonSource::Field(name) => field(name, record, spec.ensure_ascii, &mut out),
            JsonSource::Value(json) => match &spec.indent {
                // a nested value is one level deeper inside the object
                Some(indent) => out.push_str(&json.replace('\n', &format!("\n{indent}"))),
                None => out.push_str(json),
            },
            JsonSource::Timestamp => {
                out.push('"');
                out.push_str(&utc_isoformat(record.created));
                out.push('"');
            }
        }
    }
    if spec.indent.is_some() && !spec.entries.is_empty() {
        out.push('\n');
    }
    out.push('}');
    out
}

/// The JSON of a record attribute, as `record.__dict__.get(name)` would
/// serialize: the fields this scheduler has, the message for `msg`, `[]`
/// for `args`, and `null` for the rest (no exception or stack information).
fn field(name: &str, record: &Record<'_>, ensure_ascii: bool, out: &mut String) {
    let mut scratch = String::new();
    match named_value(name, record, &mut scratch) {
        Some(Raw::Text(t)) => json_string(t, ensure_ascii, out),
        Some(Raw::Int(n)) => out.push_str(&n.to_string()),
        Some(Raw::Float(f)) => out.push_str(&json_float(f)),
        None => match name {
            "msg" => json_string(record.message, ensure_ascii, out),
            "args" => out.push_str("[]"),
            _ => out.push_str("null"),
        },
    }
}

/// Python's `json.dumps` of a float.
fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        python_float_str(f)
    }
}

/// Python's `json.dumps` of a string: `ensure_ascii` escapes everything
/// outside printable ASCII (as UTF-16 `\uXXXX`); otherwise only the control
/// characters, the quote and the backslash are escaped.
pub fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `datetime.fromtimestamp(created, tz=timezone.utc).isoformat()`.
fn utc_isoformat(created: f64) -> String {
    let micros = (created * 1e6).round() as i64;
    let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else {
        return String::new();
    };
    if micros.rem_euclid(1_000_000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(message: &'a str) -> Record<'a> {
        Record {
            asctime: "2026-12-07 11:00:00,123",
            name: "distributed.scheduler",
            levelname: "INFO",
            levelno: 20,
            message,
            created: 1796640000.5,
            relative: 1.25,
            module_path: "dask_scheduler::scheduler",
            file: "crates/server/src/scheduler/mod.rs",
            line: 7,
        }
    }

    fn spec(entries: &[(&str, JsonSource)], indent: Option<&str>, ensure_ascii: bool) -> JsonSpec {
        JsonSpec {
            prefix: String::new(),
            indent: indent.map(str::to_string),
            ensure_ascii,
            datefmt: None,
            entries: entries
                .iter()
                .map(|(k, s)| (format!("\"{k}\""), s.clone()))
                .collect(),
        }
    }

    #[test]
    fn lines_as_python_json_dumps_writes_them() {
        let f = |n: &str| JsonSource::Field(n.into());
        // (spec, message, the line python-json-logger 4.2.0 writes for it)
        let cases = [
            (
                spec(
                    &[
                        ("asctime", f("asctime")),
                        ("levelname", f("levelname")),
                        ("logger", f("name")),
                        ("message", f("message")),
                    ],
                    None,
                    true,
                ),
                "Receive client connection: Client-1",
                r#"{"asctime": "2026-12-07 11:00:00,123", "levelname": "INFO", "logger": "distributed.scheduler", "message": "Receive client connection: Client-1"}"#,
            ),
            (
                spec(
                    &[
                        ("message", f("message")),
                        ("levelno", f("levelno")),
                        ("created", f("created")),
                        ("exc_info", f("exc_info")),
                        ("app", JsonSource::Value("{\"a\": [1, 2]}".into())),
                        ("timestamp", JsonSource::Timestamp),
                    ],
                    None,
                    true,
                ),
                "quote \" back \\ tab \t é 😀 \u{7f}",
                r#"{"message": "quote \" back \\ tab \t \u00e9 \ud83d\ude00 \u007f", "levelno": 20, "created": 1796640000.5, "exc_info": null, "app": {"a": [1, 2]}, "timestamp": "2026-12-07T10:40:00.500000+00:00"}"#,
            ),
            (
                spec(&[("message", f("message"))], None, false),
                "é \u{1}",
                "{\"message\": \"é \\u0001\"}",
            ),
            (
                spec(
                    &[
                        ("message", f("message")),
                        ("app", JsonSource::Value("{\n  \"a\": 1\n}".into())),
                    ],
                    Some("  "),
                    true,
                ),
                "m",
                "{\n  \"message\": \"m\",\n  \"app\": {\n    \"a\": 1\n  }\n}",
            ),
        ];
        for (spec, message, want) in cases {
            assert_eq!(render(&spec, &record(message)), want);
        }
    }

    #[test]
    fn timestamps_drop_zero_microseconds_as_isoformat_does() {
        assert_eq!(utc_isoformat(1796640000.0), "2026-12-07T10:40:00+00:00");
        assert_eq!(
            utc_isoformat(1796640000.25),
            "2026-12-07T10:40:00.250000+00:00"
        );
    }
}
