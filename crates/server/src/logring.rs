//! The scheduler's last log lines, kept in memory for
//! `Client.get_scheduler_logs` (the `logs` RPC), as Python keeps them in its
//! deque handler (`distributed.admin.log-length` entries).
//!
//! A second formatting layer writes the lines of the `distributed.scheduler`
//! logger (and its children) here, in Dask's format or `log-format`, as
//! Python's handler on that logger keeps them.

use dask_wire::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use tracing_subscriber::fmt::MakeWriter;

/// Lines kept by default (Python's `distributed.admin.log-length` default).
pub const LOG_LENGTH: usize = 10_000;

/// Lines kept: `distributed.admin.log-length` once Dask's config is known.
static CAPACITY: AtomicUsize = AtomicUsize::new(LOG_LENGTH);

/// Keep the last `n` lines from now on (`distributed.admin.log-length`;
/// Python's `deque(maxlen=n)`: 0 keeps none).
pub fn set_capacity(n: usize) {
    CAPACITY.store(n, Ordering::Relaxed);
    let mut ring = RING.lock().unwrap_or_else(PoisonError::into_inner);
    let excess = ring.len().saturating_sub(n);
    ring.drain(..excess);
}

struct Entry {
    created: f64,
    level: &'static str,
    line: String,
}

static RING: Mutex<VecDeque<Entry>> = Mutex::new(VecDeque::new());

fn push(entry: Entry) {
    let capacity = CAPACITY.load(Ordering::Relaxed);
    let mut ring = RING.lock().unwrap_or_else(PoisonError::into_inner);
    while ring.len() >= capacity {
        if ring.pop_front().is_none() {
            return;
        }
    }
    ring.push_back(entry);
}

/// `get_logs(start, n, timestamps)`: newest first, at most `n`, none older
/// than `start`; `[level, line]` or `[created, level, line]` each.
pub fn get_logs(start: f64, n: Option<usize>, timestamps: bool) -> Value {
    let ring = RING.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Vec::new();
    for (count, e) in ring.iter().rev().enumerate() {
        if n.is_some_and(|n| n > 0 && count >= n) || e.created < start {
            break;
        }
        let mut fields = Vec::with_capacity(3);
        if timestamps {
            fields.push(Value::Float(e.created));
        }
        fields.push(Value::str(e.level));
        fields.push(Value::str(e.line.clone()));
        out.push(Value::Array(fields));
    }
    Value::Array(out)
}

/// Collects one formatted line; kept when dropped.
pub struct RingWriter {
    level: &'static str,
    buf: Vec<u8>,
}

impl std::io::Write for RingWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.buf).trim_end().to_string();
        push(Entry {
            created: crate::scheduler::now(),
            level: self.level,
            line,
        });
    }
}

/// The `MakeWriter` of the ring's formatting layer.
pub struct MakeRingWriter;

impl<'a> MakeWriter<'a> for MakeRingWriter {
    type Writer = RingWriter;

    fn make_writer(&'a self) -> RingWriter {
        RingWriter {
            level: "INFO",
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> RingWriter {
        RingWriter {
            level: crate::logging::level_name(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(created: f64, line: &str) -> Entry {
        Entry {
            created,
            level: "INFO",
            line: line.to_string(),
        }
    }

    #[test]
    fn newest_first_bounded_by_n_and_start() {
        for (i, t) in [(1, 10.0), (2, 20.0), (3, 30.0)] {
            push(entry(t, &format!("ringtest line {i}")));
        }
        let lines = |v: Value| -> Vec<String> {
            v.as_seq()
                .unwrap()
                .iter()
                .map(|e| {
                    e.as_seq()
                        .unwrap()
                        .last()
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .filter(|l| l.starts_with("ringtest"))
                .collect()
        };
        assert_eq!(
            lines(get_logs(0.0, None, false)),
            ["ringtest line 3", "ringtest line 2", "ringtest line 1"]
        );
        assert_eq!(
            lines(get_logs(15.0, None, false)),
            ["ringtest line 3", "ringtest line 2"]
        );
        let two = get_logs(0.0, Some(2), true);
        assert_eq!(two.as_seq().unwrap().len(), 2);
        assert_eq!(
            two.as_seq().unwrap()[0].as_seq().unwrap().len(),
            3,
            "with the time"
        );
    }
}
