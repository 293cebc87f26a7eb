//! The scheduler's transition log and `story` (Python's `transition_log`,
//! a deque of `distributed.admin.low-level-log-length` records, and
//! `Scheduler.story` / the `get_story` RPC behind `client.story`).
//!
//! Kept by default, as Python keeps it (`distributed.scheduler.transition-log:
//! false` turns it off). Recording must stay cheap: every transition writes a
//! record. So a record holds the task's id, not its key, and touches no
//! reference count; ids become keys only when a story or a dump is asked
//! for. An id names another task once its task is forgotten and its slot
//! reused, so the record of a forgetting transition keeps the key itself,
//! and a story walks the log newest first: an id means the task that holds
//! it now until the walk passes the record that forgot that id's earlier
//! task. Every removal from the arena is such a transition, and a record
//! cannot outlive the records after it, so the walk always knows each id's
//! key at each record's time.
//!
//! Each record reads as Python's `Transition`: `(key, start, finish,
//! recommendations, stimulus_id, timestamp)`. A story holds the records of
//! the asked keys and those that recommended something for them, as
//! `distributed._stories.scheduler_story` selects. The stimulus id is the
//! batch's: the worker's or client's own where the message carried one,
//! otherwise one made for the batch.

use crate::ids::TaskId;
use crate::state::State;
use crate::task::TaskState;
use crate::transitions::{Recs, Target};
use bytes::Bytes;
use dask_wire::{Key, Value};
use std::collections::{HashMap, VecDeque};

/// One transition as the log stores it: 24 bytes, no reference counted
/// handle (the ring is written on every transition).
#[derive(Debug, Clone, Copy)]
struct Record {
    id: TaskId,
    start: TaskState,
    finish: TaskState,
    /// how many entries of [`TransitionLog::recs`] are this record's
    n_recs: u32,
    /// the sequence number of its batch's stimulus id (wrapping)
    stimulus: u32,
    time: f64,
}

/// A record as a story reads it: with its recommendations and, where it
/// forgot its task, the task's key.
type ReadRecord<'a> = (&'a Record, Vec<(TaskId, u8)>, Option<Key>);

/// The state names a recommendation can ask for, as Python's dict holds
/// them; a recommendation stores its index.
const TARGET_NAMES: [&str; 5] = ["released", "waiting", "processing", "erred", "forgotten"];

/// The index in [`TARGET_NAMES`] of the state a recommendation asks for.
fn target_code(target: &Target) -> u8 {
    match target {
        Target::Released => 0,
        Target::Waiting => 1,
        Target::Processing => 2,
        Target::Erred(_) | Target::KilledWorker => 3,
        Target::Forgotten => 4,
    }
}

/// The bounded log; length 0 keeps nothing (and costs nothing). A ring
/// whose records are overwritten in place: once it is full, recording
/// allocates nothing.
#[derive(Debug, Clone)]
pub struct TransitionLog {
    records: Vec<Record>,
    /// where the next record goes once the ring is full (the oldest)
    next: usize,
    capacity: usize,
    /// the recommendations of the records, in their order: a ring whose
    /// length is a power of two, written at `recs_head` (a running count)
    recs: Vec<(TaskId, u8)>,
    recs_head: usize,
    /// how many of `recs` the records in the ring still name
    recs_live: usize,
    /// the keys of the records whose transition forgot the task, in the
    /// records' order (the task's id may name another task later)
    forgotten: VecDeque<Key>,
    /// the stimulus ids the records name, oldest first (one per batch);
    /// older ones than the oldest record's are dropped now and then
    stimuli: VecDeque<StimulusId>,
    /// the sequence number of `stimuli[0]`
    first_stimulus: u32,
    /// whether the engine batch running now has its stimulus id in
    /// `stimuli` (the last one)
    batch_stimulus_kept: bool,
}

/// A stimulus id's msgpack bytes, copied: the id is often a slice of an
/// incoming frame, and holding the slice would keep the frame's whole
/// buffer alive for as long as the log names the id.
type StimulusId = smallvec::SmallVec<[u8; 64]>;

impl TransitionLog {
    /// A log keeping the last `capacity` transitions.
    pub fn new(capacity: usize) -> TransitionLog {
        TransitionLog {
            records: Vec::with_capacity(capacity.min(1 << 16)),
            next: 0,
            capacity,
            recs: Vec::new(),
            recs_head: 0,
            recs_live: 0,
            forgotten: VecDeque::new(),
            stimuli: VecDeque::new(),
            first_stimulus: 0,
            batch_stimulus_kept: false,
        }
    }

    /// Whether transitions are recorded at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The sequence number of the running batch's stimulus id, `stimulus`,
    /// which is copied in at the batch's first record.
    #[inline]
    fn stimulus_seq(&mut self, stimulus: &Bytes) -> u32 {
        if !self.batch_stimulus_kept {
            self.batch_stimulus_kept = true;
            self.stimuli.push_back(StimulusId::from_slice(stimulus));
        }
        self.first_stimulus
            .wrapping_add(self.stimuli.len() as u32 - 1)
    }

    /// An engine batch is over: the next record's stimulus id is another.
    pub(crate) fn end_batch(&mut self) {
        self.batch_stimulus_kept = false;
    }

    /// Add the recommendations of the record about to be pushed.
    #[inline]
    fn push_recs(&mut self, recs: &Recs) {
        if self.recs_live + recs.len() > self.recs.len() {
            self.grow_recs(self.recs_live + recs.len());
        }
        let mask = self.recs.len().wrapping_sub(1);
        for (rec, target) in recs {
            self.recs[self.recs_head & mask] = (*rec, target_code(target));
            self.recs_head = self.recs_head.wrapping_add(1);
        }
        self.recs_live += recs.len();
    }

    /// Make room for `need` live recommendations: a ring twice as long or
    /// more, the live ones copied to its start in their order.
    #[cold]
    fn grow_recs(&mut self, need: usize) {
        let len = need.next_power_of_two().max(2 * self.recs.len()).max(256);
        let mask = self.recs.len().wrapping_sub(1);
        let first = self.recs_head.wrapping_sub(self.recs_live);
        let mut grown = Vec::with_capacity(len);
        grown.extend((0..self.recs_live).map(|i| self.recs[first.wrapping_add(i) & mask]));
        grown.resize(len, (0, 0));
        self.recs = grown;
        self.recs_head = self.recs_live;
    }

    /// Add a record (its recommendations and forgotten key already added),
    /// overwriting the oldest once the ring is full, and drop what only the
    /// overwritten record named.
    #[inline]
    fn push(&mut self, record: Record) {
        if self.records.len() < self.capacity {
            self.records.push(record);
            return;
        }
        let i = self.next;
        self.next = if i + 1 == self.capacity { 0 } else { i + 1 };
        let old = std::mem::replace(&mut self.records[i], record);
        self.recs_live -= old.n_recs as usize;
        if old.finish == TaskState::Forgotten {
            self.forgotten.pop_front();
        }
        if self.stimuli.len() > 2 * self.capacity {
            self.drop_old_stimuli();
        }
    }

    /// Drop the stimulus ids older than the oldest record's.
    #[cold]
    fn drop_old_stimuli(&mut self) {
        let oldest = self.records[self.next].stimulus;
        while oldest.wrapping_sub(self.first_stimulus) as i32 > 0 && !self.stimuli.is_empty() {
            self.stimuli.pop_front();
            self.first_stimulus = self.first_stimulus.wrapping_add(1);
        }
    }

    /// Every record with its recommendations and, for a record that forgot
    /// its task, the task's key; newest first.
    fn newest_first(&self) -> Vec<ReadRecord<'_>> {
        let (newer, older) = self.records.split_at(self.next);
        let mask = self.recs.len().wrapping_sub(1);
        let mut end = self.recs_head;
        let mut forgotten = self.forgotten.iter().rev();
        newer
            .iter()
            .rev()
            .chain(older.iter().rev())
            .map(|r| {
                let start = end.wrapping_sub(r.n_recs as usize);
                let mine = (0..r.n_recs as usize)
                    .map(|i| self.recs[start.wrapping_add(i) & mask])
                    .collect();
                end = start;
                let key = if r.finish == TaskState::Forgotten {
                    forgotten.next().cloned()
                } else {
                    None
                };
                (r, mine, key)
            })
            .collect()
    }

    /// The stimulus id of sequence number `seq`.
    fn stimulus(&self, seq: u32) -> Bytes {
        self.stimuli
            .get(seq.wrapping_sub(self.first_stimulus) as usize)
            .map(|id| Bytes::copy_from_slice(id.as_slice()))
            .unwrap_or_default()
    }
}

impl State {
    /// Record the transition of `id` from `start` to `finish`; `recs` are
    /// what it recommended, and `key` the task's key where the transition
    /// may have forgotten it. Called only while the log is enabled.
    #[inline]
    fn log_transition(
        &mut self,
        id: TaskId,
        start: TaskState,
        finish: TaskState,
        key: Option<Key>,
        recs: &Recs,
    ) {
        self.make_compute_stimulus();
        let stimulus = self
            .compute_stimulus
            .as_ref()
            .expect("made by make_compute_stimulus");
        let log = &mut self.transition_log;
        let stimulus = log.stimulus_seq(stimulus);
        // (transitions recommend only tasks that exist)
        debug_assert!(recs
            .iter()
            .all(|(rec, _)| matches!(self.tasks.get(*rec as usize), Some(Some(_)))));
        log.push_recs(recs);
        if finish == TaskState::Forgotten {
            // only a transition asked to forget can, and the engine keeps
            // the key for those
            debug_assert!(key.is_some(), "a forgetting transition's key is kept");
            log.forgotten
                .push_back(key.unwrap_or_else(|| Key::from_str_key("<unknown>")));
        }
        log.push(Record {
            id,
            start,
            finish,
            n_recs: recs.len() as u32,
            stimulus,
            time: self.now,
        });
    }

    /// Record a transition made outside the engine (a finished task going
    /// to memory, data arriving by `update_data`), when the log is on or a
    /// plugin watches transitions.
    pub(crate) fn log_direct_transition(&mut self, id: TaskId, start: TaskState, recs: &Recs) {
        let watched = self.plugin_wants(crate::pluginfeed::hooks::TRANSITION);
        if self.transition_log.enabled() || watched {
            let key = watched.then(|| self.task(id).key.clone());
            self.record_transition(id, start, key, recs);
        }
    }

    /// A transition of `id` from `start`, to the log if it is on and to the
    /// plugins if they watch transitions. `key` is the task's key, needed
    /// when plugins watch or the transition may have forgotten the task.
    #[inline]
    pub(crate) fn record_transition(
        &mut self,
        id: TaskId,
        start: TaskState,
        key: Option<Key>,
        recs: &Recs,
    ) {
        let finish = match self.tasks.get(id as usize) {
            Some(Some(t)) => t.state,
            _ => TaskState::Forgotten,
        };
        if self.plugin_wants(crate::pluginfeed::hooks::TRANSITION) {
            if let Some(key) = &key {
                self.plugin_transition(key.clone(), start, finish);
            }
        }
        if self.transition_log.enabled() {
            self.log_transition(id, start, finish, key, recs);
        }
    }

    /// `Scheduler.story(*keys)`: the logged transitions of `keys` or that
    /// recommended something for them, oldest first, as wire tuples.
    pub fn story(&self, keys: &[Key]) -> Vec<Value> {
        self.logged_transitions(|key, recs| {
            keys.contains(key) || recs.iter().any(|(k, _)| keys.contains(k))
        })
    }

    /// Every logged transition, oldest first (the dump's `transition_log`).
    pub fn transition_log_values(&self) -> Vec<Value> {
        self.logged_transitions(|_, _| true)
    }

    /// The logged transitions that `keep` accepts, given the key and the
    /// recommendations, oldest first, as Python's `Transition` tuples.
    fn logged_transitions(&self, keep: impl Fn(&Key, &[(Key, &str)]) -> bool) -> Vec<Value> {
        let log = &self.transition_log;
        // the key each id named at the record being read, where the walk
        // has passed the record that forgot it
        let mut earlier: HashMap<TaskId, Key> = HashMap::new();
        let mut out = Vec::new();
        for (record, recs, forgotten) in log.newest_first() {
            if let Some(key) = forgotten {
                earlier.insert(record.id, key);
            }
            let key_of = |id: TaskId| match earlier.get(&id) {
                Some(key) => Some(key.clone()),
                None => match self.tasks.get(id as usize) {
                    Some(Some(t)) => Some(t.key.clone()),
                    _ => None,
                },
            };
            let Some(key) = key_of(record.id) else {
                continue;
            };
            let recs: Vec<(Key, &str)> = recs
                .iter()
                .filter_map(|(id, code)| Some((key_of(*id)?, TARGET_NAMES[*code as usize])))
                .collect();
            if !keep(&key, &recs) {
                continue;
            }
            out.push(Value::Array(vec![
                key.to_value(),
                Value::str(record.start.as_str()),
                Value::str(record.finish.as_str()),
                Value::Map(
                    recs.iter()
                        .map(|(k, s)| (k.to_value(), Value::str(*s)))
                        .collect(),
                ),
                Value::Raw(log.stimulus(record.stimulus)),
                Value::Float(record.time),
            ]));
        }
        out.reverse();
        out
    }
}
