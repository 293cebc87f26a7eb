//! Per-task records for `get_task_stream` (`Client.get_task_stream` and the
//! `get_task_stream` context manager): what Python's `TaskStreamPlugin`
//! keeps. Like Python, which installs that
//! plugin on the first `get_task_stream` or `get_task_stream_index` call,
//! nothing is recorded until a client has asked: the hot path pays one
//! `is_some` check until then.
//!
//! A record is what the worker's message carried (its fields but `op` and
//! `run_id`), plus the worker's address, as Python's plugin stores the
//! transition's keyword arguments. Each is kept as msgpack bytes (~300 B)
//! and turned into a map only when collected.

use crate::finished::StartStop;
use crate::state::State;
use crate::timedelta;
use bytes::Bytes;
use dask_wire::{msgpack, Value};
use std::collections::VecDeque;

/// One finished (or erred) task, as the task stream returns it.
#[derive(Debug, Clone)]
struct Record {
    /// The address of the worker that ran it, an encoded msgpack str
    /// (shared with the worker's own copy: no allocation per record).
    worker: Bytes,
    /// The latest `stop` of its `startstops` (what `start`/`stop` bounds compare).
    stop: f64,
    /// The worker's op map, msgpack (a copy: not a slice of the frame).
    fields: Bytes,
}

/// The records, oldest first, at most `maxlen`; `index` counts every record
/// ever appended (the cursor of the `get_task_stream` context manager).
#[derive(Debug, Clone)]
pub struct TaskRecords {
    buffer: VecDeque<Record>,
    index: u64,
    maxlen: usize,
}

impl TaskRecords {
    fn new(maxlen: usize) -> TaskRecords {
        TaskRecords {
            buffer: VecDeque::new(),
            index: 0,
            maxlen: maxlen.max(1),
        }
    }

    fn push(&mut self, record: Record) {
        if self.buffer.len() >= self.maxlen {
            self.buffer.pop_front();
        }
        self.buffer.push_back(record);
        self.index += 1;
    }

    /// First position whose record stops at or after `t` (records are in
    /// arrival order, which Python's bisect assumes is stop order too).
    fn bisect(&self, t: f64) -> usize {
        self.buffer.partition_point(|r| r.stop < t)
    }
}

/// A `start`/`stop` argument: a timestamp, or a duration before `now` (`"10s"`).
fn bound(v: Option<&Value>, now: f64) -> Option<f64> {
    match v? {
        Value::Str(s) => timedelta::parse_seconds(s).map(|d| now - d),
        other => other.as_f64(),
    }
}

impl State {
    fn task_records(&mut self) -> &mut TaskRecords {
        let maxlen = self.config.task_stream_length;
        self.task_records
            .get_or_insert_with(|| Box::new(TaskRecords::new(maxlen)))
    }

    /// `get_task_stream_index`: how many tasks the task stream has recorded
    /// (recording starts with the first call, as in Python).
    pub fn task_stream_index(&mut self) -> u64 {
        self.task_records().index
    }

    /// `get_task_stream`: the records selected like `TaskStreamPlugin.collect`
    /// does (by `start_index`, else by `start`/`stop` times or durations
    /// before `now`, and `count`), each a map of the worker's message
    /// fields plus `worker`. Starts recording if it had not.
    pub fn task_stream(
        &mut self,
        start: Option<&Value>,
        stop: Option<&Value>,
        count: Option<i64>,
        start_index: Option<i64>,
        now: f64,
    ) -> Vec<Value> {
        let recs = self.task_records();
        let len = recs.buffer.len() as i64;
        let (from, to) = if let Some(si) = start_index {
            let oldest = recs.index as i64 - len;
            ((si - oldest).clamp(0, len), len)
        } else {
            let mut from = bound(start, now).map(|t| recs.bisect(t) as i64);
            let mut to = bound(stop, now).map(|t| recs.bisect(t) as i64);
            if let Some(c) = count {
                match (from, to) {
                    (None, None) => {
                        to = Some(len);
                        from = Some(len - c);
                    }
                    (None, Some(s)) => from = Some(s - c),
                    (Some(s), None) => to = Some(s + c),
                    (Some(_), Some(_)) => {}
                }
            }
            (from.unwrap_or(0).max(0), to.unwrap_or(len).min(len))
        };
        (from..to.max(from))
            .map(|i| record_value(&recs.buffer[i as usize]))
            .collect()
    }

    /// Record a task that went from processing to memory or erred on
    /// `worker`, if the task stream is on. `msg` is the worker's op map
    /// (msgpack) and `startstops` what it reported; Python's plugin skips
    /// a record without any.
    pub(crate) fn record_task_stream(
        &mut self,
        worker: crate::ids::WorkerId,
        msg: &[u8],
        startstops: &[StartStop],
    ) {
        if self.task_records.is_none() || startstops.is_empty() {
            return;
        }
        let Some(address) = self.workers.get(&worker).map(|w| w.address_msgpack.clone()) else {
            return;
        };
        let stop = startstops
            .iter()
            .map(|s| s.stop)
            .fold(f64::NEG_INFINITY, f64::max);
        self.task_records().push(Record {
            worker: address,
            stop,
            fields: Bytes::copy_from_slice(msg),
        });
    }
}

/// A record as the client gets it: the message's fields but `op` and
/// `run_id`, plus `worker`.
fn record_value(r: &Record) -> Value {
    let mut entries = match msgpack::decode(&r.fields) {
        Ok(Value::Map(entries)) => entries,
        _ => Vec::new(),
    };
    entries.retain(|(k, _)| !matches!(k.as_str_key(), Some("op" | "run_id" | "worker")));
    entries.push((Value::str("worker"), Value::Raw(r.worker.clone())));
    Value::Map(entries)
}
