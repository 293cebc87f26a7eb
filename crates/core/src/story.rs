//! The scheduler's transition log and `story` (Python's `transition_log`,
//! a deque of `distributed.admin.low-level-log-length` records, and
//! `Scheduler.story` / the `get_story` RPC behind `client.story`).
//!
//! Unlike Python's, the log is off unless asked for
//! (`distributed.scheduler.transition-log`): recording costs every
//! transition about 10 % more instructions (cachegrind, the chains shape of
//! the core scale bench), and the log only serves debugging.
//!
//! Each record is Python's `Transition`: `(key, start, finish,
//! recommendations, stimulus_id, timestamp)`. Keys are kept as their bytes
//! (a reference-count bump), so a story still names tasks forgotten since.
//! A story holds the records of the asked keys and those that recommended
//! something for them, as `distributed._stories.scheduler_story` selects.
//! The stimulus id is the batch's: the worker's or client's own where the
//! message carried one, otherwise one made for the batch.

use crate::ids::TaskId;
use crate::state::State;
use crate::task::TaskState;
use crate::transitions::{Recs, Target};
use bytes::Bytes;
use dask_wire::{Key, Value};
use smallvec::SmallVec;

/// One transition, as Python's `Transition` namedtuple holds it.
#[derive(Debug, Clone)]
pub struct TransitionRecord {
    key: Key,
    start: TaskState,
    finish: TaskState,
    recommendations: SmallVec<[(Key, &'static str); 2]>,
    /// msgpack str
    stimulus: Bytes,
    time: f64,
}

impl TransitionRecord {
    /// The record as the wire carries Python's tuple.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            self.key.to_value(),
            Value::str(self.start.as_str()),
            Value::str(self.finish.as_str()),
            Value::Map(
                self.recommendations
                    .iter()
                    .map(|(k, s)| (k.to_value(), Value::str(*s)))
                    .collect(),
            ),
            Value::Raw(self.stimulus.clone()),
            Value::Float(self.time),
        ])
    }

    fn touches(&self, keys: &[Key]) -> bool {
        keys.contains(&self.key) || self.recommendations.iter().any(|(k, _)| keys.contains(k))
    }
}

/// The bounded log; length 0 keeps nothing (and costs nothing). A ring
/// whose records are overwritten in place: recording moves no record and,
/// once the ring is full, allocates nothing.
#[derive(Debug, Clone)]
pub struct TransitionLog {
    records: Vec<TransitionRecord>,
    /// where the next record goes once the ring is full (the oldest)
    next: usize,
    capacity: usize,
}

impl TransitionLog {
    /// A log keeping the last `capacity` transitions.
    pub fn new(capacity: usize) -> TransitionLog {
        TransitionLog {
            records: Vec::with_capacity(capacity.min(1 << 16)),
            next: 0,
            capacity,
        }
    }

    /// Whether transitions are recorded at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The slot the next record is written into (the oldest one once the
    /// ring is full), or `None` while the ring is still growing.
    fn slot(&mut self) -> Option<&mut TransitionRecord> {
        if self.records.len() < self.capacity {
            return None;
        }
        let i = self.next;
        self.next = (i + 1) % self.capacity;
        Some(&mut self.records[i])
    }

    /// Every record, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &TransitionRecord> {
        let (newer, older) = self.records.split_at(self.next);
        older.iter().chain(newer)
    }
}

/// The state name a recommendation asks for, as Python's dict holds it.
fn target_name(target: &Target) -> &'static str {
    match target {
        Target::Released => "released",
        Target::Waiting => "waiting",
        Target::Processing => "processing",
        Target::Erred(_) | Target::KilledWorker => "erred",
        Target::Forgotten => "forgotten",
    }
}

impl State {
    /// Record the transition of `id` (key `key`) from `start`; `recs` are
    /// what it recommended. Called only while the log is enabled.
    pub(crate) fn log_transition(&mut self, key: Key, id: TaskId, start: TaskState, recs: &Recs) {
        let finish = match self.tasks.get(id as usize) {
            Some(Some(t)) => t.state,
            _ => TaskState::Forgotten,
        };
        self.make_compute_stimulus();
        let time = self.now;
        let (tasks, stimulus) = (&self.tasks, &self.compute_stimulus);
        let stimulus = stimulus.as_ref().expect("made by make_compute_stimulus");
        let fill = |r: &mut TransitionRecord| {
            r.key = key;
            r.start = start;
            r.finish = finish;
            r.recommendations.clear();
            for (rec, target) in recs {
                if let Some(Some(t)) = tasks.get(*rec as usize) {
                    r.recommendations.push((t.key.clone(), target_name(target)));
                }
            }
            // one stimulus per batch: most records keep the previous one's
            if r.stimulus.as_ptr() != stimulus.as_ptr() || r.stimulus.len() != stimulus.len() {
                r.stimulus = stimulus.clone();
            }
            r.time = time;
        };
        match self.transition_log.slot() {
            Some(slot) => fill(slot),
            None => {
                let mut r = TransitionRecord {
                    key: Key::from_str_key(""),
                    start,
                    finish,
                    recommendations: SmallVec::new(),
                    stimulus: Bytes::new(),
                    time,
                };
                fill(&mut r);
                self.transition_log.records.push(r);
            }
        }
    }

    /// Record a transition made outside the engine (a finished task going
    /// to memory, data arriving by `update_data`), when the log is on or a
    /// plugin watches transitions.
    pub(crate) fn log_direct_transition(&mut self, id: TaskId, start: TaskState, recs: &Recs) {
        if self.transition_log.enabled() || self.plugin_wants(crate::pluginfeed::hooks::TRANSITION)
        {
            let key = self.task(id).key.clone();
            self.record_transition(key, id, start, recs);
        }
    }

    /// A transition of `id` (key `key`) from `start`, to the log if it is
    /// on and to the plugins if they watch transitions.
    pub(crate) fn record_transition(
        &mut self,
        key: Key,
        id: TaskId,
        start: TaskState,
        recs: &Recs,
    ) {
        if self.plugin_wants(crate::pluginfeed::hooks::TRANSITION) {
            let finish = match self.tasks.get(id as usize) {
                Some(Some(t)) => t.state,
                _ => TaskState::Forgotten,
            };
            self.plugin_transition(key.clone(), start, finish);
        }
        if self.transition_log.enabled() {
            self.log_transition(key, id, start, recs);
        }
    }

    /// `Scheduler.story(*keys)`: the logged transitions of `keys` or that
    /// recommended something for them, oldest first, as wire tuples.
    pub fn story(&self, keys: &[Key]) -> Vec<Value> {
        self.transition_log
            .records()
            .filter(|r| r.touches(keys))
            .map(TransitionRecord::to_value)
            .collect()
    }

    /// Every logged transition, oldest first (the dump's `transition_log`).
    pub fn transition_log_values(&self) -> Vec<Value> {
        self.transition_log
            .records()
            .map(TransitionRecord::to_value)
            .collect()
    }
}
