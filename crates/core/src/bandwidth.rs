//! What the workers' heartbeats say about transfer speeds between pairs of
//! workers and per type of data: Python's `Scheduler.bandwidth_workers`
//! and `Scheduler.bandwidth_types`.
//!
//! Why: Python's dashboard and performance report show both tables, and
//! scheduler plugins and `run_on_scheduler` functions read them; the
//! scheduler's own cost model uses only the overall estimate
//! (`State::bandwidth`), which is updated beside these.
//!
//! A worker's heartbeat carries `metrics["bandwidth"]` =
//! `{"total": bytes/s, "workers": {other: [sum, count]}, "types": {name:
//! [sum, count]}}`: the sum of the speeds of its recent transfers and how
//! many there were, since its last heartbeat. As in Python, a pair or type
//! seen for the first time takes the mean (`sum / count`); after that the
//! estimate moves towards the sum by `1 - (1 - 1/n) ** count`, `n` the
//! number of workers.

use dask_wire::Value;
use rustc_hash::FxHashMap;

/// Distinct type names kept; names beyond these are ignored, so heartbeats
/// naming ever new types cannot grow the table without bound.
pub const MAX_TYPES: usize = 1_000;

/// The per-pair and per-type transfer speed estimates (bytes/s).
#[derive(Debug, Default)]
pub struct PeerBandwidth {
    /// `(receiving worker, sending worker)` addresses → bytes/s, as
    /// Python's `bandwidth_workers` keys them.
    workers: FxHashMap<(String, String), f64>,
    /// The type name of the data moved → bytes/s.
    types: FxHashMap<String, f64>,
}

/// `(sum, count)` from a heartbeat's `[sum, count]` entry, if both are
/// usable numbers and `count` is positive.
fn sum_and_count(v: &Value) -> Option<(f64, f64)> {
    let pair = v.as_seq()?;
    let (sum, count) = (pair.first()?.as_f64()?, pair.get(1)?.as_f64()?);
    (sum.is_finite() && count.is_finite() && count > 0.0).then_some((sum, count))
}

/// Python's update of one estimate: the mean on first sight, then an
/// exponential step towards `sum` weighted by `count` observations.
fn update(slot: Option<&mut f64>, sum: f64, count: f64, frac: f64) -> Option<f64> {
    match slot {
        None => Some(sum / count),
        Some(old) => {
            let alpha = (1.0 - frac).powf(count);
            *old = *old * alpha + sum * (1.0 - alpha);
            None
        }
    }
}

impl PeerBandwidth {
    /// Fold in the `bandwidth` part of a heartbeat from `address`, `n`
    /// workers being connected. Entries that are not `[sum, count]` with a
    /// positive count are skipped (Python would raise on them), and so are
    /// pairs with a worker that `connected` does not know (Python keeps
    /// those: a worker that left would be named until the reporter leaves
    /// too) and new types beyond [`MAX_TYPES`].
    pub fn observe(
        &mut self,
        address: &str,
        bandwidth: &Value,
        n: usize,
        connected: impl Fn(&str) -> bool,
    ) {
        let frac = 1.0 / n.max(1) as f64;
        let entries = |name: &str| {
            bandwidth
                .get(name)
                .and_then(Value::as_map)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str()?, sum_and_count(v)?)))
        };
        for (other, (sum, count)) in entries("workers") {
            if !connected(other) {
                continue;
            }
            let key = (address.to_string(), other.to_string());
            if let Some(first) = update(self.workers.get_mut(&key), sum, count, frac) {
                self.workers.insert(key, first);
            }
        }
        for (name, (sum, count)) in entries("types") {
            if let Some(first) = update(self.types.get_mut(name), sum, count, frac) {
                if self.types.len() < MAX_TYPES {
                    self.types.insert(name.to_string(), first);
                }
            }
        }
    }

    /// Drop every pair that names `address`, a worker that left. Python
    /// drops only its pairs with the workers still connected, so a pair
    /// whose other worker had left first stays there for good.
    pub fn forget_worker(&mut self, address: &str) {
        self.workers
            .retain(|(to, from), _| to != address && from != address);
    }

    /// The pair estimates, sorted, as `(receiver, sender, bytes/s)`.
    pub fn workers(&self) -> Vec<(&str, &str, f64)> {
        let mut out: Vec<_> = self
            .workers
            .iter()
            .map(|((to, from), bw)| (to.as_str(), from.as_str(), *bw))
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// The per-type estimates, sorted by name.
    pub fn types(&self) -> Vec<(&str, f64)> {
        let mut out: Vec<_> = self.types.iter().map(|(t, bw)| (t.as_str(), *bw)).collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, f64, f64)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, s, c)| {
                    (
                        Value::str(*k),
                        Value::Array(vec![Value::Float(*s), Value::Float(*c)]),
                    )
                })
                .collect(),
        )
    }

    fn heartbeat(workers: &[(&str, f64, f64)], types: &[(&str, f64, f64)]) -> Value {
        Value::map([
            ("total", Value::Float(1e8)),
            ("workers", pairs(workers)),
            ("types", pairs(types)),
        ])
    }

    /// Each row: the heartbeats from `tcp://a` (the `[sum, count]` of its
    /// transfers from `tcp://b`, all of type `bytes`, and the number of
    /// workers), and the estimate for that pair and that type after them,
    /// computed with Python's formulas by hand.
    #[test]
    fn estimates_follow_pythons_update() {
        type Beat = (f64, f64, usize);
        let rows: &[(&[Beat], f64)] = &[
            // first sight: the mean of the transfers
            (&[(300.0, 3.0, 2)], 100.0),
            // then towards the sum, by 1 - (1 - 1/2)^1 = 0.5
            (&[(300.0, 3.0, 2), (500.0, 1.0, 2)], 300.0),
            // with two transfers the step is 1 - 0.5^2 = 0.75
            (&[(100.0, 1.0, 2), (900.0, 2.0, 2)], 700.0),
            // with four workers, 1 - 0.75 = 0.25
            (&[(100.0, 1.0, 4), (500.0, 1.0, 4)], 200.0),
            // a zero count is skipped, not divided by
            (&[(100.0, 1.0, 2), (900.0, 0.0, 2)], 100.0),
        ];
        for (beats, expected) in rows {
            let mut bw = PeerBandwidth::default();
            for (sum, count, n) in beats.iter() {
                let beat = heartbeat(&[("tcp://b", *sum, *count)], &[("bytes", *sum, *count)]);
                bw.observe("tcp://a", &beat, *n, |_| true);
            }
            let got = bw.workers();
            assert_eq!(got.len(), 1, "{beats:?}");
            assert_eq!((got[0].0, got[0].1), ("tcp://a", "tcp://b"));
            assert!((got[0].2 - expected).abs() < 1e-9, "{beats:?}: {got:?}");
            let types = bw.types();
            assert_eq!(types.len(), 1, "{beats:?}");
            assert_eq!(types[0].0, "bytes");
            assert!((types[0].1 - expected).abs() < 1e-9, "{beats:?}: {types:?}");
        }
    }

    #[test]
    fn bad_entries_are_skipped_and_a_leaving_worker_takes_its_pairs() {
        let mut bw = PeerBandwidth::default();
        let odd = Value::map([
            (
                "workers",
                Value::map([
                    ("tcp://b", Value::str("fast")),
                    ("tcp://c", Value::Array(vec![Value::Float(10.0)])),
                    (
                        "tcp://d",
                        Value::Array(vec![Value::Float(8.0), Value::Int(2)]),
                    ),
                ]),
            ),
            ("types", Value::Int(3)),
        ]);
        let all = |_: &str| true;
        bw.observe("tcp://a", &odd, 3, all);
        bw.observe("tcp://d", &heartbeat(&[("tcp://a", 6.0, 1.0)], &[]), 3, all);
        bw.observe("tcp://b", &heartbeat(&[("tcp://c", 1.0, 1.0)], &[]), 3, all);
        assert_eq!(
            bw.workers(),
            vec![
                ("tcp://a", "tcp://d", 4.0),
                ("tcp://b", "tcp://c", 1.0),
                ("tcp://d", "tcp://a", 6.0)
            ]
        );
        assert!(bw.types().is_empty());
        bw.forget_worker("tcp://a");
        assert_eq!(bw.workers(), vec![("tcp://b", "tcp://c", 1.0)]);
        bw.observe("tcp://x", &Value::Nil, 0, all);
        assert_eq!(bw.workers().len(), 1);
        // a pair with a worker that is not connected (any more) is not
        // recorded, and the types stop growing at MAX_TYPES
        bw.observe(
            "tcp://b",
            &heartbeat(&[("tcp://gone", 1.0, 1.0)], &[]),
            3,
            |a| a != "tcp://gone",
        );
        assert_eq!(bw.workers(), vec![("tcp://b", "tcp://c", 1.0)]);
        let names: Vec<String> = (0..MAX_TYPES + 5).map(|i| format!("T{i}")).collect();
        let many: Vec<(&str, f64, f64)> = names.iter().map(|n| (n.as_str(), 1.0, 1.0)).collect();
        bw.observe("tcp://b", &heartbeat(&[], &many), 3, all);
        assert_eq!(bw.types().len(), MAX_TYPES);
    }
}
