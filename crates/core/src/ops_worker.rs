//! Worker stream ops (`task-finished`, `task-erred`, `add-keys`, ...) and
//! data registration (`update_data` from scatter).

use crate::error::CoreError;
use crate::finished::TaskFinished;
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::messages;
use crate::ops_client::keys_field;
use crate::pluginfeed::hooks;
use crate::resulttypes::ResultTypeId;
use crate::state::{Outgoing, State};
use crate::task::{remove_item, ErrorInfo, TaskState};
use crate::transitions::Target;
use crate::worker::WorkerStatus;
use dask_wire::{Key, Value};

fn key_field(op: &str, msg: &Value) -> Result<Key, CoreError> {
    let v = msg
        .get("key")
        .ok_or_else(|| CoreError::malformed(op, "missing 'key'"))?;
    Key::from_value(v).map_err(|e| CoreError::malformed(op, e.to_string()))
}

/// `who_has` entries: key and the addresses holding it.
pub type WhoHas = Vec<(Key, Vec<String>)>;
/// `nbytes` entries: key and its size.
pub type NBytes = Vec<(Key, i64)>;

/// Parse `who_has: {key: [addr]}` and `nbytes: {key: int}` of `update_data`.
pub fn parse_who_has_nbytes(op: &str, msg: &Value) -> Result<(WhoHas, NBytes), CoreError> {
    let who_has = msg
        .get("who_has")
        .and_then(Value::as_map)
        .ok_or_else(|| CoreError::malformed(op, "'who_has' is not a map"))?;
    let mut out = Vec::with_capacity(who_has.len());
    for (k, v) in who_has {
        let key = Key::from_value(k).map_err(|e| CoreError::malformed(op, e.to_string()))?;
        let addrs = v
            .as_seq()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        out.push((key, addrs));
    }
    let mut sizes = Vec::new();
    if let Some(nb) = msg.get("nbytes").and_then(Value::as_map) {
        for (k, v) in nb {
            let key = Key::from_value(k).map_err(|e| CoreError::malformed(op, e.to_string()))?;
            sizes.push((key, v.as_i64().unwrap_or(0)));
        }
    }
    Ok((out, sizes))
}

/// Events kept per topic for `get_events` (Python's
/// `distributed.admin.low-level-log-length` default).
pub const EVENTS_PER_TOPIC: usize = 1000;

impl State {
    /// Handle one op from a worker's stream.
    pub fn handle_worker_op(
        &mut self,
        w: WorkerId,
        msg: &Value,
        now: f64,
    ) -> Result<(), CoreError> {
        self.now = now;
        let op = msg
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| CoreError::malformed("?", "message without a string 'op'"))?;
        if !self.heard_from(w, now) {
            return Ok(());
        }
        match op {
            "task-finished" => {
                let mut fields = TaskFinished::from_value(msg);
                if self.task_records.is_some() {
                    fields.source = Some(dask_wire::msgpack::encode(msg).into());
                }
                self.on_task_finished_answering(w, &fields)?
            }
            "task-erred" => self.on_task_erred(w, msg)?,
            "release-worker-data" => {
                let key = key_field(op, msg)?;
                if let Some(id) = self.task_id(&key) {
                    self.remove_replica(id, w);
                }
            }
            "add-keys" => {
                let keys = keys_field(op, msg, "keys")?;
                let mut redundant = Vec::new();
                for key in keys {
                    match self.task_id(&key) {
                        Some(id) if self.task(id).state == TaskState::Memory => {
                            self.add_replica(id, w)
                        }
                        _ => redundant.push(key.to_value()),
                    }
                }
                if !redundant.is_empty() {
                    let stim = self.stimulus("redundant-replicas");
                    self.push_worker(w, messages::remove_replicas(redundant, &stim));
                }
            }
            "worker-status-change" => {
                let status = msg
                    .get("status")
                    .and_then(Value::as_str)
                    .ok_or_else(|| CoreError::malformed(op, "missing 'status'"))?;
                let status = WorkerStatus::parse(status).ok_or_else(|| {
                    CoreError::malformed(op, format!("unknown status '{status}'"))
                })?;
                self.set_worker_status(w, status);
            }
            "long-running" => {
                let key = key_field(op, msg)?;
                let run_id = msg.get("run_id").and_then(Value::as_i64);
                if let Some(id) = self.task_id(&key) {
                    let t = self.task(id);
                    if t.processing_on == Some(w) && run_id.is_none_or(|r| r == t.run_id) {
                        // A seceded task no longer occupies a thread nor, like
                        // Python's `_task_slots_available`, a root-task slot: a
                        // task waiting on root tasks it submitted (worker_client)
                        // must not keep them queued forever.
                        let prefix = t.prefix;
                        if let Some(worker) = self.workers.get_mut(&w) {
                            if worker.long_running.insert(id) {
                                worker.remove_prefix(prefix);
                            }
                        }
                        self.refresh_slot_index(w);
                        self.fill_queued_slots();
                    }
                }
            }
            "reschedule" => {
                let key = key_field(op, msg)?;
                if let Some(id) = self.task_id(&key) {
                    if self.task(id).processing_on == Some(w) {
                        self.transitions(vec![(id, Target::Released)]);
                    }
                }
            }
            "request-refresh-who-has" => {
                let keys = keys_field(op, msg, "keys")?;
                let mut who_has = Vec::new();
                let mut unknown = Vec::new();
                for key in keys {
                    match self.task_id(&key) {
                        Some(id) => {
                            let addrs = self.replica_addresses(id);
                            who_has.push((key.to_value(), Value::Array(addrs)));
                        }
                        None => unknown.push(key.to_value()),
                    }
                }
                let stim = self.stimulus("refresh-who-has");
                if !who_has.is_empty() {
                    self.push_worker(w, messages::refresh_who_has(Value::Map(who_has), &stim));
                }
                if !unknown.is_empty() {
                    self.push_worker(w, messages::free_keys(unknown, &stim));
                }
            }
            "log-event" => {
                let mut event = msg.get("msg").cloned().unwrap_or(Value::Nil);
                if let (Value::Map(_), Some(addr)) = (&event, self.worker_address(w)) {
                    let addr = addr.to_string();
                    event.set("worker", Value::Str(addr.into()));
                }
                let topics: Vec<String> = match msg.get("topic") {
                    Some(Value::Str(t)) => vec![t.to_string()],
                    Some(other) => other
                        .as_seq()
                        .map(|ts| {
                            ts.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                for topic in topics {
                    self.publish_event(&topic, event.clone());
                }
            }
            "steal-response" => {
                let key = key_field(op, msg)?;
                let state = msg.get("state").and_then(Value::as_str);
                let stimulus = msg.get("stimulus_id").and_then(Value::as_str);
                self.on_steal_response(w, &key, state, stimulus);
            }
            "keep-alive" => {}
            other => return Err(CoreError::UnknownOp(other.to_string())),
        }
        Ok(())
    }

    /// Publish an event under `topic` at time `now` (a `log_event` RPC, the
    /// scheduler's own events).
    pub fn log_event(&mut self, topic: &str, msg: Value, now: f64) {
        self.now = now;
        self.publish_event(topic, msg);
    }

    /// `get_events`: the kept `[time, msg]` events of `topic`, or of every
    /// topic that has any (`{topic: [...]}`) when `topic` is None.
    pub fn get_events(&self, topic: Option<&str>) -> Value {
        let list = |events: &std::collections::VecDeque<(f64, Value)>| {
            Value::Array(
                events
                    .iter()
                    .map(|(t, m)| Value::Array(vec![Value::Float(*t), m.clone()]))
                    .collect(),
            )
        };
        match topic {
            Some(t) => self.events.get(t).map_or(Value::Array(vec![]), list),
            None => {
                let mut topics: Vec<(&String, _)> =
                    self.events.iter().filter(|(_, e)| !e.is_empty()).collect();
                topics.sort_by(|a, b| a.0.cmp(b.0));
                Value::Map(
                    topics
                        .into_iter()
                        .map(|(name, e)| (Value::str(name.clone()), list(e)))
                        .collect(),
                )
            }
        }
    }

    /// Forward an event to the clients subscribed to `topic`.
    /// The event is also kept (the last [`EVENTS_PER_TOPIC`] of each topic)
    /// for `get_events`.
    pub fn publish_event(&mut self, topic: &str, msg: Value) {
        self.plugin_hook(hooks::LOG_EVENT, "log_event", || {
            vec![Value::str(topic), msg.clone()]
        });
        let kept = self.events.entry(topic.to_string()).or_default();
        if kept.len() >= EVENTS_PER_TOPIC {
            kept.pop_front();
        }
        kept.push_back((self.now, msg.clone()));
        let Some(subs) = self.subscriptions.get(topic) else {
            return;
        };
        let out = messages::event(topic, self.now, msg);
        for c in subs.clone() {
            self.outbox.push(Outgoing::Client(c, out.clone()));
        }
    }

    fn set_worker_status(&mut self, w: WorkerId, status: WorkerStatus) {
        let Some(worker) = self.workers.get_mut(&w) else {
            return;
        };
        let was = worker.status;
        worker.status = status;
        if was != status {
            let address = worker.info.address.clone();
            self.event_worker_status(&address, was, status);
        }
        self.refresh_slot_index(w);
        if status != WorkerStatus::Running {
            self.release_reservations(w);
        }
        if status == WorkerStatus::Running && was != WorkerStatus::Running {
            self.on_worker_running(w);
        }
        self.refresh_no_workers_since(self.now);
    }

    pub(crate) fn replica_addresses(&self, id: TaskId) -> Vec<Value> {
        let t = self.task(id);
        if t.state != TaskState::Memory {
            return Vec::new();
        }
        t.who_has
            .iter()
            .filter_map(|w| self.workers.get(w))
            .map(|w| Value::str(w.info.address.as_str()))
            .collect()
    }

    pub(crate) fn add_replica(&mut self, id: TaskId, w: WorkerId) {
        let nbytes = self.task(id).nbytes;
        let t = self.task_mut(id);
        if t.who_has.contains(&w) {
            return;
        }
        t.who_has.push(w);
        if t.who_has.len() == 2 {
            self.note_replicated(id);
        }
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.has_what.insert(id);
            worker.nbytes += nbytes;
            worker.got_replica(id);
        }
    }

    /// A worker no longer holds a key (it said so, or a fetch found it missing).
    pub fn remove_replica(&mut self, id: TaskId, w: WorkerId) {
        if self.task(id).state != TaskState::Memory {
            return;
        }
        let nbytes = self.task(id).nbytes;
        if !remove_item(&mut self.task_mut(id).who_has, w) {
            return;
        }
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.has_what.remove(id);
            worker.nbytes -= nbytes;
        }
        if self.task(id).who_has.is_empty() {
            let target = if self.task(id).run_spec.is_some() {
                Target::Released
            } else {
                Target::Forgotten
            };
            self.transitions(vec![(id, target)]);
        }
    }

    /// Keys reported missing by a worker during a gather.
    pub fn missing_data(&mut self, worker_address: &str, keys: &[Key], now: f64) {
        self.now = now;
        let Some(w) = self.worker_id(worker_address) else {
            return;
        };
        for key in keys {
            if let Some(id) = self.task_id(key) {
                self.remove_replica(id, w);
            }
        }
    }

    fn free_on_worker(&mut self, w: WorkerId, key: &Key, why: &str) {
        let stim = self.stimulus_msgpack(why);
        self.push_worker(w, messages::free_keys_of(key, &stim));
    }

    /// `id` is now in memory: waiting dependents stop waiting on it, and those
    /// with nothing left to wait for are recommended for processing.
    fn dependents_ready(&mut self, id: TaskId) -> crate::transitions::Recs {
        let mut recs = crate::transitions::Recs::new();
        for d in self.task(id).dependents.clone() {
            let dt = self.task_mut(d);
            if dt.state == TaskState::Waiting
                && dt.waiting_on.remove(&id)
                && dt.waiting_on.is_empty()
            {
                recs.push((d, Target::Processing));
            }
        }
        recs
    }

    /// Handle a worker's `task-finished`, read without a `Value` tree
    /// ([`TaskFinished::decode`]): what [`State::handle_worker_op`] does for
    /// the same message as an op map.
    pub fn handle_task_finished(
        &mut self,
        w: WorkerId,
        fields: &TaskFinished,
        now: f64,
    ) -> Result<(), CoreError> {
        if !self.heard_from(w, now) {
            return Ok(());
        }
        self.on_task_finished_answering(w, fields)
    }

    /// [`State::on_task_finished`], the messages it sends taking the
    /// worker's stimulus id.
    fn on_task_finished_answering(
        &mut self,
        w: WorkerId,
        fields: &TaskFinished,
    ) -> Result<(), CoreError> {
        self.incoming_stimulus = fields.stimulus_id.clone();
        let result = self.on_task_finished(w, fields);
        self.incoming_stimulus = None;
        result
    }

    /// Note a message from worker `w` at `now`; false when `w` is no longer
    /// known (a late message from a removed worker, which is ignored).
    fn heard_from(&mut self, w: WorkerId, now: f64) -> bool {
        self.now = now;
        match self.workers.get_mut(&w) {
            Some(worker) => {
                worker.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// The task assigned as run `run_id`, if its key has these canonical
    /// bytes (see [`crate::runindex`]; `None` sends the caller to the key
    /// index).
    fn task_of_run(&self, run_id: Option<i64>, key: &[u8]) -> Option<TaskId> {
        let run_id = run_id?;
        let id = self.run_index.get(run_id)?;
        let t = self.tasks.get(id as usize)?.as_ref()?;
        (t.run_id == run_id && t.key.as_bytes()[..] == *key).then_some(id)
    }

    fn on_task_finished(&mut self, w: WorkerId, fields: &TaskFinished) -> Result<(), CoreError> {
        let op = "task-finished";
        let malformed = |e: dask_wire::WireError| CoreError::malformed(op, e.to_string());
        let sent = fields
            .key
            .as_ref()
            .ok_or_else(|| CoreError::malformed(op, "missing 'key'"))?;
        // A key read from the worker's bytes is first looked up as those
        // bytes: a known key's canonical msgpack is what workers send back,
        // and equal bytes are the same key; the task of the message's run
        // id is tried first (no hashing). Otherwise the key is decoded and
        // canonicalised like any key value.
        let found = match sent {
            Value::Raw(raw) => self
                .task_of_run(fields.run_id, raw)
                .or_else(|| self.task_ids.get(&self.tasks, raw)),
            _ => None,
        };
        let (found, key_value) = match found {
            Some(id) => (Some(id), None),
            None => {
                let v = match sent {
                    Value::Raw(raw) => {
                        std::borrow::Cow::Owned(dask_wire::msgpack::decode(raw).map_err(malformed)?)
                    }
                    other => std::borrow::Cow::Borrowed(other),
                };
                (self.task_id_of_value(&v).map_err(malformed)?, Some(v))
            }
        };
        let run_id = fields.run_id;
        let Some(id) = found else {
            let key_value = key_value.expect("decoded when not found by its bytes");
            let key = Key::from_value(&key_value).map_err(malformed)?;
            self.free_on_worker(w, &key, "unknown-task-finished");
            return Ok(());
        };
        let t = self.task(id);
        let current = run_id.is_none_or(|r| r == t.run_id);
        match t.state {
            TaskState::Processing if t.processing_on == Some(w) && current => {}
            // Like `stimulus_task_finished`: an outdated run from the worker the
            // task is assigned to again. The worker holds one state per key, so
            // just freeing the key would cancel the current assignment too and
            // the task would hang in `processing`; release it (free-keys) and
            // assign it afresh instead.
            TaskState::Processing if t.processing_on == Some(w) => {
                self.transitions(vec![(id, Target::Released)]);
                return Ok(());
            }
            TaskState::Memory if current => {
                self.add_replica(id, w);
                return Ok(());
            }
            _ => {
                let key = t.key.clone();
                self.free_on_worker(w, &key, "stale-task-finished");
                return Ok(());
            }
        }
        // the dependents and dependencies are read below, after the worker's
        // bookkeeping: start loading their slots now
        self.prefetch_relatives(id);
        if let Some(seconds) = self.record_startstops(id, w, &fields.startstops) {
            self.record_duration(id, seconds.max(0.0));
        }
        self.detach_from_worker(id);
        let nbytes = fields.nbytes.unwrap_or(0);
        let result_type = fields.result_type.as_ref().map(|v| {
            let id = self.result_types.intern(v, || fields.typename());
            (
                id.unwrap_or(ResultTypeId::IN_EXTRA),
                id.is_none().then(|| v.deep_copy()),
            )
        });
        // the name: the table entry's, else (a type not in the table, which
        // a worker of `distributed` never sends) read from the message
        let table_id = result_type.as_ref().map_or(ResultTypeId::NONE, |r| r.0);
        let mut name = self.result_types.name_of(table_id);
        let own_name = if table_id.is_entry() {
            None
        } else {
            fields.typename()
        };
        if let Some(text) = &own_name {
            name = self.result_types.intern_name(text);
        }
        {
            self.count_state_as(id, TaskState::Memory);
            let t = self.task_mut(id);
            t.state = TaskState::Memory;
            // Python's `set_nbytes`: the group sums its tasks' last sizes
            let diff = nbytes - t.nbytes.max(0);
            let group = t.group;
            t.nbytes = nbytes;
            self.groups.update_nbytes(group, diff);
            let t = self.task_mut(id);
            t.result_type = ResultTypeId::NONE;
            if let Some(e) = t.extra.as_mut() {
                e.result_type = None;
                e.result_typename = None;
            }
            if let Some((id, kept)) = result_type {
                t.result_type = id;
                if kept.is_some() {
                    t.extra_mut().result_type = kept;
                }
            }
            if let Some(text) = own_name {
                t.extra_mut().result_typename = Some(text.into());
            }
            if fields.has_metadata {
                merge_metadata(t.extra_mut(), fields.metadata());
            }
            t.who_has.clear();
        }
        if let Some(name) = name {
            let group = self.task(id).group;
            self.groups.add_type(group, name);
        }
        self.add_replica(id, w);
        if let Some(source) = &fields.source {
            self.record_task_stream(w, source, &fields.startstops);
        }
        if self.task_metadata.is_active() {
            self.collect_task_metadata(id, TaskState::Memory);
        }
        if self.progress.is_active() {
            self.progress_computed(id);
        }

        let mut recs = self.dependents_ready(id);
        for dep in self.task(id).dependencies.clone() {
            let dt = self.task_mut(dep);
            dt.waiters.remove(&id);
            if dt.waiters.is_empty() && dt.who_wants.is_empty() && dt.state == TaskState::Memory {
                recs.push((dep, Target::Released));
            }
        }
        let t = self.task(id);
        if !t.who_wants.is_empty() {
            let report = messages::key_in_memory(t.key.to_value(), self.result_type_of(id));
            for c in t.who_wants.clone() {
                self.outbox.push(Outgoing::Client(c, report.clone()));
            }
        }
        let t = self.task(id);
        if t.who_wants.is_empty() && t.waiters.is_empty() {
            recs.push((id, Target::Released));
        }
        recs.extend(self.release_fire_and_forget(id));
        self.transition_counter += 1;
        self.log_direct_transition(id, TaskState::Processing, &recs);
        self.transitions(recs);
        self.fill_queued_slots();
        Ok(())
    }

    fn on_task_erred(&mut self, w: WorkerId, msg: &Value) -> Result<(), CoreError> {
        let op = "task-erred";
        let key = key_field(op, msg)?;
        let run_id = msg.get("run_id").and_then(Value::as_i64);
        let Some(id) = self.task_id(&key) else {
            self.free_on_worker(w, &key, "unknown-task-erred");
            return Ok(());
        };
        let t = self.task(id);
        if t.state != TaskState::Processing || t.processing_on != Some(w) {
            self.free_on_worker(w, &key, "stale-task-erred");
            return Ok(());
        }
        if run_id.is_some_and(|r| r != t.run_id) {
            // An outdated run from the worker the task is assigned to again:
            // release and reassign, as for `task-finished` (Python does the same).
            self.transitions(vec![(id, Target::Released)]);
            return Ok(());
        }
        if t.retries() > 0 {
            self.task_mut(id).extra_mut().retries -= 1;
            // Like Python: forget the failed attempt on the worker, then run again.
            self.transitions(vec![(id, Target::Released)]);
            return Ok(());
        }
        let text = |f: &str| msg.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        self.task_mut(id).extra_mut().error = Some(ErrorInfo {
            exception: msg.get("exception").cloned().unwrap_or(Value::Nil),
            traceback: msg.get("traceback").cloned().unwrap_or(Value::Nil),
            exception_text: text("exception_text"),
            traceback_text: text("traceback_text"),
        });
        if self.task_records.is_some() {
            let startstops = msg
                .get("startstops")
                .map(crate::finished::startstops_from_value)
                .unwrap_or_default();
            self.record_task_stream(w, &dask_wire::msgpack::encode(msg), &startstops);
        }
        self.transitions(vec![(id, Target::Erred(id))]);
        Ok(())
    }

    /// Register data placed on workers (scatter, `update_data`): the keys are in
    /// memory there, and `client` (if any) wants them.
    pub fn update_data(
        &mut self,
        client: Option<ClientId>,
        who_has: &[(Key, Vec<String>)],
        nbytes: &[(Key, i64)],
    ) {
        for (key, addrs) in who_has {
            let workers: Vec<WorkerId> = addrs.iter().filter_map(|a| self.worker_id(a)).collect();
            if workers.is_empty() {
                continue;
            }
            let id = self
                .task_id(key)
                .unwrap_or_else(|| self.new_task(key.clone()));
            let size = nbytes.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
            let mut recs = crate::transitions::Recs::new();
            let was = self.task(id).state;
            if was != TaskState::Memory {
                // Data arrived for something not in memory: the data wins. Stop
                // whatever the task was doing *without* the usual re-scheduling
                // (a `released` transition would recommend `waiting` again for a
                // wanted task and send a fresh compute-task), so that the task is
                // not left on a worker's processing list while in memory.
                recs = self.abandon_for_data(id);
                self.count_state_as(id, TaskState::Memory);
                let t = self.task_mut(id);
                t.state = TaskState::Memory;
                t.who_has.clear();
            }
            let t = self.task_mut(id);
            let (diff, group) = (size - t.nbytes.max(0), t.group);
            t.nbytes = size;
            self.groups.update_nbytes(group, diff);
            for w in workers {
                self.add_replica(id, w);
            }
            if was != TaskState::Memory {
                // Like Python's `report(key-in-memory)`: existing wanters learn too.
                let t = self.task(id);
                let msg = messages::key_in_memory(t.key.to_value(), None);
                self.report_to_wanters(id, msg);
            }
            // The scattering client wants the key before anything below may
            // release it (Python adds it at the end, after no transitions).
            if let Some(c) = client {
                self.client_desires(c, &[id]);
            }
            if was != TaskState::Memory {
                // The task has its outcome: fire-and-forget interest ends here too.
                recs.extend(self.release_fire_and_forget(id));
            }
            // Dependents waiting for this key can go ahead.
            recs.extend(self.dependents_ready(id));
            if was != TaskState::Memory {
                self.log_direct_transition(id, was, &recs);
            }
            self.transitions(recs);
        }
    }

    /// Detach a task that is not in memory from the computation it is part of
    /// (worker, queue, waiting lists, error) because its data just arrived.
    /// Returns recommendations for dependencies nobody needs any more.
    fn abandon_for_data(&mut self, id: TaskId) -> crate::transitions::Recs {
        let state = self.task(id).state;
        self.leave_ready_sets(id);
        match state {
            TaskState::Processing => {
                if let Some(w) = self.detach_from_worker(id) {
                    self.free_keys_on(id, &[w], "update-data");
                }
            }
            TaskState::Erred => {
                let t = self.task_mut(id);
                t.clear_error();
                let erred_on = std::mem::take(&mut t.who_has);
                self.free_keys_on(id, &erred_on, "update-data");
            }
            _ => {}
        }
        self.task_mut(id).waiting_on.clear();
        if state == TaskState::Released {
            crate::transitions::Recs::new()
        } else {
            self.release_unneeded_dependencies(id)
        }
    }
}

/// Python's `ts.metadata.update(metadata)`: the entries of `new` (a map)
/// replace those of the same name.
fn merge_metadata(extra: &mut crate::task::TaskExtra, new: Value) {
    let Value::Map(entries) = new else { return };
    if entries.is_empty() {
        return;
    }
    let Some(Value::Map(kept)) = &mut extra.metadata else {
        extra.metadata = Some(Value::Map(entries));
        return;
    };
    for (k, v) in entries {
        match kept.iter_mut().find(|(name, _)| *name == k) {
            Some(entry) => entry.1 = v,
            None => kept.push((k, v)),
        }
    }
}

impl State {
    /// The pickled result type `task-finished` gave for `id` (forwarded in
    /// `key-in-memory`), if any.
    pub fn result_type_of(&self, id: TaskId) -> Option<Value> {
        let t = self.task(id);
        match t.result_type {
            ResultTypeId::NONE => None,
            ResultTypeId::IN_EXTRA => t.extra.as_ref()?.result_type.clone(),
            table => self.result_types.get(table),
        }
    }

    /// The name of the type of `id`'s result (Python's `TaskState.type`,
    /// e.g. `"int"`), once it has been in memory.
    pub fn typename_of(&self, id: TaskId) -> Option<&str> {
        self.typename_of_task(self.task(id))
    }

    /// [`State::typename_of`] for a task already at hand.
    pub(crate) fn typename_of_task<'a>(&'a self, t: &'a crate::task::Task) -> Option<&'a str> {
        if let Some(name) = self.result_types.name_of(t.result_type) {
            return Some(self.result_types.name(name));
        }
        t.extra.as_ref()?.result_typename.as_deref()
    }
}
