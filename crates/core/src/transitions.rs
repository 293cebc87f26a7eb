//! The transition engine.
//!
//! Like `Scheduler._transitions`, every transition is a function that changes
//! one task, queues the messages it implies in the outbox, and returns
//! *recommendations* for other tasks; the engine processes recommendations in
//! FIFO order until none are left. A recommendation that no longer fits the
//! task's state (it changed meanwhile) is dropped.

use crate::ids::{TaskId, WorkerId};
use crate::messages;
use crate::state::{Outgoing, State};
use crate::task::{insert_item, ErrorInfo, TaskState};
use bytes::Bytes;
use dask_wire::pickle::{self, PickleArg};
use dask_wire::Value;
use smallvec::SmallVec;

/// What a task is recommended to become.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Drop from computation (keeps the task if others reference it).
    Released,
    /// Compute it (and its missing dependencies).
    Waiting,
    /// Its inputs are ready: assign it to a worker, queue it, or park it.
    Processing,
    /// It failed, or the given task it depends on failed.
    Erred(TaskId),
    /// Its workers died too often while running it (`KilledWorker`); the
    /// last worker that died is the task's `killed_by`. (No payload: every
    /// transition returns and queues these, so the type is kept small.)
    KilledWorker,
    /// Remove it entirely.
    Forgotten,
}

/// A batch of recommendations. Most transitions recommend a few (or no)
/// follow-ups, so they are kept inline: no allocation per transition.
pub type Recs = SmallVec<[(TaskId, Target); 4]>;

impl State {
    pub(crate) fn exists(&self, id: TaskId) -> bool {
        matches!(self.tasks.get(id as usize), Some(Some(_)))
    }

    /// Run recommendations to completion.
    pub(crate) fn transitions<I>(&mut self, recs: I)
    where
        I: IntoIterator<Item = (TaskId, Target)>,
    {
        // the queue's buffer is kept between batches (taken while one runs,
        // so a nested batch would start its own)
        let mut queue = std::mem::take(&mut self.transition_queue);
        queue.extend(recs);
        while let Some((id, target)) = queue.pop_front() {
            // the next task's slot loads while this one transitions (a
            // release of many keys queues tasks spread over the arena)
            if let Some(&(next, _)) = queue.front() {
                self.prefetch_task(next);
            }
            if !self.exists(id) {
                continue;
            }
            self.transition_counter += 1;
            // the log needs the key only where the task may be forgotten
            // (its id can then name another task); plugins always do
            let watched = self.plugin_wants(crate::pluginfeed::hooks::TRANSITION);
            let logged = (self.transition_log.enabled() || watched).then(|| {
                let t = self.task(id);
                let key = (watched || target == Target::Forgotten).then(|| t.key.clone());
                (t.state, key)
            });
            let more = self.transition(id, target);
            if let Some((start, key)) = logged {
                self.record_transition(id, start, key, &more);
            }
            if self.p2p_watching() {
                self.p2p_after_transition(id);
            }
            queue.extend(more);
        }
        if queue.capacity() <= 1 << 16 {
            self.transition_queue = queue;
        }
        // Like `stimulus_queue_slots_maybe_opened`, hand out freed root-task
        // slots only once the batch is complete. Doing it from inside a
        // transition could assign a queued task whose dependency was lost
        // earlier in the same batch (its `released` recommendation not yet
        // processed), sending a compute-task without replicas for that input.
        self.fill_queued_slots();
        self.end_batch();
    }

    fn transition(&mut self, id: TaskId, target: Target) -> Recs {
        use TaskState::*;
        let state = self.task(id).state;
        match (state, target) {
            (Released, Target::Waiting) => self.released_waiting(id),
            (Released | Memory | Erred, Target::Forgotten) => self.forget(id),
            (Waiting | Queued | NoWorker | Processing, Target::Forgotten) => {
                let mut recs = self.transition(id, Target::Released);
                recs.retain(|(t, _)| *t != id);
                if self.exists(id) && self.task(id).state == Released {
                    recs.extend(self.forget(id));
                }
                recs
            }
            (Released | Waiting | Queued | NoWorker | Processing, Target::Erred(blame)) => {
                self.enter_erred(id, blame)
            }
            (Processing, Target::KilledWorker) => self.killed_worker(id),
            (Waiting | Queued | NoWorker, Target::Processing) => self.enter_processing(id),
            (Waiting | Queued | NoWorker, Target::Released) => self.waiting_released(id),
            (Processing, Target::Released) => self.processing_released(id),
            (Memory, Target::Released) => self.memory_released(id),
            (Erred, Target::Released) => self.erred_released(id),
            (Erred, Target::Waiting) => {
                let mut recs = self.erred_released(id);
                recs.retain(|(t, r)| !(*t == id && *r == Target::Waiting));
                recs.extend(self.released_waiting(id));
                recs
            }
            (Memory, Target::Erred(_)) if self.task(id).is_actor() => self.actor_lost(id),
            (Memory, Target::KilledWorker) => Recs::new(),
            _ => Recs::new(),
        }
    }

    // ------------------------------------------------------------ helpers

    /// Dependencies lose `id` as a waiter; those nobody needs any more are released.
    pub(crate) fn release_unneeded_dependencies(&mut self, id: TaskId) -> Recs {
        let deps = self.task(id).dependencies.clone();
        let mut recs = Recs::new();
        for dep in deps {
            let d = self.task_mut(dep);
            d.waiters.remove(&id);
            // An erred dependency stays erred until it is retried or forgotten:
            // `erred -> released` is the retry transition (it clears the error and
            // re-runs erred dependents), never a side effect of a dependent
            // letting go. Python avoids it by clearing `waiters` in `_propagate_erred`.
            if d.waiters.is_empty()
                && d.who_wants.is_empty()
                && !matches!(d.state, TaskState::Released | TaskState::Erred)
            {
                recs.push((dep, Target::Released));
            }
        }
        recs
    }

    /// Every holder of in-memory task `id` drops it: out of `who_has`, the
    /// workers' `has_what` and bytes, and a `free-keys` to each.
    pub(crate) fn release_replicas(&mut self, id: TaskId, why: &str) {
        let holders = std::mem::take(&mut self.task_mut(id).who_has);
        let nbytes = self.task(id).nbytes;
        for w in &holders {
            if let Some(worker) = self.workers.get_mut(w) {
                worker.has_what.remove(id);
                worker.nbytes -= nbytes;
            }
        }
        self.free_keys_on(id, &holders, why);
    }

    /// Take a processing task off its worker; returns the worker if it is still connected.
    pub(crate) fn detach_from_worker(&mut self, id: TaskId) -> Option<WorkerId> {
        self.steals.remove(&id);
        self.steal_refused.remove(&id);
        let w = self.task_mut(id).processing_on.take()?;
        let prefix = self.task(id).prefix;
        let restrictions = self.task(id).restrictions().cloned();
        let missing = self.missing_inputs(id, w);
        let worker = self.workers.get_mut(&w)?;
        worker.processing.remove(&id);
        if !worker.long_running.remove(&id) {
            // (a seceded task was already taken out of the prefix counts)
            worker.remove_prefix(prefix);
        }
        for (dep, _) in missing {
            worker.dec_needs(dep);
        }
        if let Some(r) = restrictions {
            for (name, amount) in &r.resources {
                if let Some(slot) = worker.used_resources.iter_mut().find(|(n, _)| n == name) {
                    slot.1 = (slot.1 - amount).max(0.0);
                }
            }
        }
        self.refresh_slot_index(w);
        Some(w)
    }

    /// Inputs of `id` that worker `w` does not hold, with their sizes.
    fn missing_inputs(&self, id: TaskId, w: WorkerId) -> smallvec::SmallVec<[(TaskId, i64); 4]> {
        self.task(id)
            .dependencies
            .iter()
            .map(|d| (*d, self.task(*d)))
            .filter(|(_, d)| !d.who_has.contains(&w))
            .map(|(d, t)| (d, t.nbytes.max(0)))
            .collect()
    }

    /// Tell `workers` to forget `id`. Like Python, which gives every message
    /// of a transition batch the batch's stimulus id, the keys freed on one
    /// worker during a batch share one `free-keys` message (and stimulus id)
    /// as long as nothing else was sent to that worker in between; otherwise
    /// a new message starts, so no key is freed ahead of an earlier message.
    pub(crate) fn free_keys_on(&mut self, id: TaskId, workers: &[WorkerId], why: &str) {
        if workers.is_empty() {
            return;
        }
        let mut stim: Option<Bytes> = None;
        for &w in workers {
            if !self.workers.contains_key(&w) {
                continue;
            }
            let key = &self.tasks[id as usize].as_ref().expect("live task id").key;
            if let Some(&idx) = self.open_free_keys.get(&w) {
                if let Some(Outgoing::Worker(to, msg)) = self.outbox.get_mut(idx) {
                    if *to == w && messages::free_keys_push(msg, key) {
                        continue;
                    }
                }
            }
            // the incoming message's stimulus id, else one made for this
            // call and shared by its messages
            let msg = match &self.incoming_stimulus {
                Some(b) => messages::free_keys_of(&self.task(id).key, b),
                None => {
                    let b = match stim.take() {
                        Some(b) => b,
                        None => self.stimulus_msgpack(why),
                    };
                    let msg = messages::free_keys_of(&self.task(id).key, &b);
                    stim = Some(b);
                    msg
                }
            };
            self.push_worker(w, msg);
            self.open_free_keys.insert(w, self.outbox.len() - 1);
        }
    }

    pub(crate) fn report_to_wanters(&mut self, id: TaskId, msg: Value) {
        for c in self.task(id).who_wants.clone() {
            self.outbox.push(Outgoing::Client(c, msg.clone()));
        }
    }

    // ------------------------------------------------------------ transitions

    fn released_waiting(&mut self, id: TaskId) -> Recs {
        let t = self.task(id);
        if t.run_spec.is_none() {
            return Recs::new();
        }
        if t.has_lost_dependencies {
            return smallvec::smallvec![(id, Target::Forgotten)];
        }
        let deps = t.dependencies.clone();
        for &dep in &deps {
            if let Some(blame) = self.task(dep).exception_blame() {
                return smallvec::smallvec![(id, Target::Erred(blame))];
            }
        }
        let mut recs = Recs::new();
        let mut waiting_on = crate::idset::IdSet::new();
        for &dep in &deps {
            let d = self.task_mut(dep);
            d.waiters.insert(id);
            if d.state != TaskState::Memory {
                waiting_on.insert(dep);
                if d.state == TaskState::Released {
                    recs.push((dep, Target::Waiting));
                }
            }
        }
        self.count_state_as(id, TaskState::Waiting);
        let t = self.task_mut(id);
        t.state = TaskState::Waiting;
        let ready = waiting_on.is_empty();
        t.waiting_on = waiting_on;
        if ready {
            recs.push((id, Target::Processing));
        }
        recs
    }

    fn enter_processing(&mut self, id: TaskId) -> Recs {
        if !self.task(id).waiting_on.is_empty() {
            return Recs::new();
        }
        let priority = self.task(id).priority;
        self.leave_ready_sets(id);
        match self.decide_worker(id) {
            crate::placement::Decision::Worker(w) => self.assign(id, w),
            crate::placement::Decision::Root(w) => {
                self.assign(id, w);
                self.reserve_family(id, w);
            }
            crate::placement::Decision::Queue => {
                self.task_mut(id).state = TaskState::Queued;
                self.count_state_as(id, TaskState::Queued);
                self.queued.insert((priority, id));
            }
            crate::placement::Decision::NoWorker => {
                self.task_mut(id).state = TaskState::NoWorker;
                self.count_state_as(id, TaskState::NoWorker);
                self.unrunnable.insert(id, self.now);
            }
        }
        Recs::new()
    }

    /// Send a ready task to a worker: it enters `processing`.
    pub(crate) fn assign(&mut self, id: TaskId, w: WorkerId) {
        self.n_tasks += 1;
        self.count_state_as(id, TaskState::Processing);
        self.send_to_worker(id, w);
    }

    /// Make `w` run task `id` and send it there. A confirmed steal moves a
    /// task this way without counting it again: in Python it stays
    /// `processing`, so neither `n_tasks` nor its prefix's `state_counts`
    /// change.
    pub(crate) fn send_to_worker(&mut self, id: TaskId, w: WorkerId) {
        self.run_counter += 1;
        let run_id = self.run_counter;
        let t = self.task_mut(id);
        t.state = TaskState::Processing;
        t.processing_on = Some(w);
        t.run_id = run_id;
        let prefix = t.prefix;
        let restrictions = t.restrictions().cloned();
        let tasks = &self.tasks;
        self.run_index.push(run_id, id, |tid, run| {
            tasks
                .get(tid as usize)
                .and_then(Option::as_ref)
                .is_none_or(|t| t.state != TaskState::Processing || t.run_id != run)
        });
        let missing = self.missing_inputs(id, w);
        let worker = self.workers.get_mut(&w).expect("assign to a live worker");
        worker.processing.insert(id);
        worker.add_prefix(prefix);
        for (dep, nbytes) in missing {
            worker.inc_needs(dep, nbytes);
        }
        if let Some(r) = &restrictions {
            for (name, amount) in &r.resources {
                match worker.used_resources.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 += amount,
                    None => worker.used_resources.push((name.clone(), *amount)),
                }
            }
        }
        self.refresh_slot_index(w);
        self.make_compute_stimulus();
        let msg = self.compute_task_msg(id);
        self.push_worker(w, msg);
    }

    fn compute_task_msg(&self, id: TaskId) -> Value {
        let stim = self
            .compute_stimulus
            .as_deref()
            .expect("made by make_compute_stimulus");
        let t = self.task(id);
        let deps: SmallVec<[messages::ComputeDep<'_>; 4]> = t
            .dependencies
            .iter()
            .map(|&dep| {
                let d = self.task(dep);
                messages::ComputeDep {
                    key: &d.key,
                    nbytes: d.nbytes,
                    who_has: d
                        .who_has
                        .iter()
                        .filter_map(|w| self.workers.get(w))
                        .map(|w| &w.address_msgpack)
                        .collect(),
                }
            })
            .collect();
        messages::compute_task(messages::ComputeTask {
            key: &t.key,
            run_id: t.run_id,
            priority: &t.priority,
            stimulus_id: stim,
            deps: &deps,
            run_spec: t.run_spec.as_ref().map(|r| r.to_opaque()),
            resources: t
                .restrictions()
                .map(|r| r.resources.as_slice())
                .filter(|r| !r.is_empty()),
            annotations: t.annotations(),
            actor: t.is_actor(),
        })
    }

    fn waiting_released(&mut self, id: TaskId) -> Recs {
        self.leave_ready_sets(id);
        let mut recs = self.release_unneeded_dependencies(id);
        self.count_state_as(id, TaskState::Released);
        let t = self.task_mut(id);
        t.waiting_on.clear();
        t.state = TaskState::Released;
        if t.has_lost_dependencies {
            recs.push((id, Target::Forgotten));
        } else if t.exception_blame().is_none() && t.is_needed() {
            recs.push((id, Target::Waiting));
        }
        recs
    }

    fn processing_released(&mut self, id: TaskId) -> Recs {
        if let Some(w) = self.detach_from_worker(id) {
            self.free_keys_on(id, &[w], "processing-released");
        }
        self.task_mut(id).state = TaskState::Released;
        self.count_state_as(id, TaskState::Released);
        let t = self.task(id);
        if t.has_lost_dependencies {
            smallvec::smallvec![(id, Target::Forgotten)]
        } else if t.is_needed() {
            smallvec::smallvec![(id, Target::Waiting)]
        } else {
            self.release_unneeded_dependencies(id)
        }
    }

    fn memory_released(&mut self, id: TaskId) -> Recs {
        if self.task(id).is_actor() && !self.task(id).who_wants.is_empty() {
            // Python's `memory -> released` of an actor someone holds: its
            // object cannot be made again, so the actor errs instead
            return self.actor_lost(id);
        }
        let mut recs = Recs::new();
        for d in self.task(id).dependents.clone() {
            match self.task(d).state {
                TaskState::Processing | TaskState::NoWorker | TaskState::Queued => {
                    recs.push((d, Target::Released))
                }
                TaskState::Waiting => {
                    self.task_mut(d).waiting_on.insert(id);
                }
                _ => {}
            }
        }
        self.release_replicas(id, "memory-released");
        self.task_mut(id).state = TaskState::Released;
        self.count_state_as(id, TaskState::Released);
        if !self.task(id).who_wants.is_empty() {
            let key = self.task(id).key.to_value();
            self.report_to_wanters(id, messages::lost_data(key));
        }
        let t = self.task(id);
        if t.run_spec.is_none() || t.has_lost_dependencies {
            recs.push((id, Target::Forgotten));
        } else if t.is_needed() {
            recs.push((id, Target::Waiting));
        } else {
            recs.extend(self.release_unneeded_dependencies(id));
        }
        recs
    }

    fn erred_released(&mut self, id: TaskId) -> Recs {
        self.count_state_as(id, TaskState::Released);
        let t = self.task_mut(id);
        t.clear_error();
        t.state = TaskState::Released;
        let erred_on = std::mem::take(&mut t.who_has);
        self.free_keys_on(id, &erred_on, "erred-released");
        let mut recs = Recs::new();
        for d in self.task(id).dependents.clone() {
            if self.task(d).state == TaskState::Erred {
                recs.push((d, Target::Waiting));
            }
        }
        let key = self.task(id).key.to_value();
        self.report_to_wanters(id, messages::task_retried(key));
        recs
    }

    pub(crate) fn enter_erred(&mut self, id: TaskId, blame: TaskId) -> Recs {
        let state = self.task(id).state;
        if state == TaskState::Processing {
            // The worker keeps the erred task until told to forget it.
            if let Some(w) = self.detach_from_worker(id) {
                insert_item(&mut self.task_mut(id).who_has, w);
            }
        }
        self.leave_ready_sets(id);
        let mut recs = self.release_unneeded_dependencies(id);
        self.count_state_as(id, TaskState::Erred);
        let t = self.task_mut(id);
        t.state = TaskState::Erred;
        t.extra_mut().exception_blame = Some(blame);
        t.waiting_on.clear();
        for d in self.task(id).dependents.clone() {
            if !matches!(
                self.task(d).state,
                TaskState::Erred | TaskState::Memory | TaskState::Forgotten
            ) {
                recs.push((d, Target::Erred(blame)));
            }
        }
        if !self.task(id).who_wants.is_empty() {
            let msg = self.task_erred_msg(id);
            self.report_to_wanters(id, msg);
        }
        if self.task_metadata.is_active() {
            self.collect_task_metadata(id, TaskState::Erred);
        }
        if self.progress.is_active() {
            self.progress_erred(id);
        }
        recs.extend(self.release_fire_and_forget(id));
        recs
    }

    fn killed_worker(&mut self, id: TaskId) -> Recs {
        let allowed = self.config.allowed_failures;
        let address = self
            .task_mut(id)
            .extra_mut()
            .killed_by
            .take()
            .unwrap_or_default();
        let key = self.task(id).key.to_string();
        let exception = pickle::call(
            "distributed.scheduler",
            "KilledWorker",
            &[
                // the key as Python holds it (a tuple key is a tuple)
                PickleArg::key(&self.task(id).key.decoded()),
                PickleArg::Namespace(vec![("address".into(), address.clone())]),
                PickleArg::Int(i64::from(allowed)),
            ],
        );
        let text = format!(
            "Attempted to run task {key} on {} different workers, but all those workers died \
             while running it. The last worker that attempt to run the task was {address}.",
            allowed + 1
        );
        tracing::warn!(task = %key, "{text}");
        self.task_mut(id).extra_mut().error = Some(ErrorInfo {
            exception: Value::Bin(exception),
            traceback: Value::Nil,
            exception_text: format!("KilledWorker: {text}"),
            traceback_text: String::new(),
        });
        self.detach_from_worker(id);
        self.enter_erred(id, id)
    }

    /// The failure an erred task inherits: that of the task it blames
    /// (itself if it raised), if that task is still known.
    pub(crate) fn blamed_error(&self, id: TaskId) -> Option<&crate::task::ErrorInfo> {
        let blame = self.task(id).exception_blame().unwrap_or(id);
        self.tasks
            .get(blame as usize)
            .and_then(Option::as_ref)
            .and_then(|b| b.error())
    }

    /// The `task-erred` report for a task, carrying its blamed task's exception.
    pub(crate) fn task_erred_msg(&self, id: TaskId) -> Value {
        let t = self.task(id);
        match self.blamed_error(id) {
            Some(e) => {
                messages::task_erred(t.key.to_value(), e.exception.clone(), e.traceback.clone())
            }
            None => messages::task_erred(
                t.key.to_value(),
                Value::Str("the task that caused this error is no longer known".into()),
                Value::Nil,
            ),
        }
    }

    fn forget(&mut self, id: TaskId) -> Recs {
        self.prefetch_relatives(id);
        let state = self.task(id).state;
        let holders = std::mem::take(&mut self.task_mut(id).who_has);
        let nbytes = self.task(id).nbytes;
        if state == TaskState::Memory {
            for w in &holders {
                if let Some(worker) = self.workers.get_mut(w) {
                    worker.has_what.remove(id);
                    worker.nbytes -= nbytes;
                }
            }
        }
        self.free_keys_on(id, &holders, "forget");
        if matches!(&self.metadata, Value::Map(m) if !m.is_empty()) {
            let key = self.task(id).key.clone();
            self.forget_metadata(&key);
        }
        let mut recs = Recs::new();
        for d in std::mem::take(&mut self.task_mut(id).dependents) {
            if !self.exists(d) {
                continue;
            }
            if let Some(pw) = self.task(d).processing_on {
                // It will not be fetched for `d` any more (its detach no
                // longer sees this dependency).
                if let Some(worker) = self.workers.get_mut(&pw) {
                    worker.dec_needs(id);
                }
            }
            let dt = self.task_mut(d);
            dt.has_lost_dependencies = true;
            dt.dependencies.remove(&id);
            dt.waiting_on.remove(&id);
            if !matches!(dt.state, TaskState::Memory | TaskState::Erred) {
                recs.push((d, Target::Forgotten));
            }
        }
        for dep in std::mem::take(&mut self.task_mut(id).dependencies) {
            if !self.exists(dep) {
                continue;
            }
            let dt = self.task_mut(dep);
            dt.dependents.remove(&id);
            dt.waiters.remove(&id);
            if dt.dependents.is_empty() && dt.who_wants.is_empty() {
                recs.push((dep, Target::Forgotten));
            }
        }
        if !self.task(id).who_wants.is_empty() {
            let key = self.task(id).key.to_value();
            // `_task_to_report_msg` for a forgotten task.
            self.report_to_wanters(
                id,
                messages::cancelled_keys(vec![key], Some("already forgotten")),
            );
        }
        if self.task(id).is_actor() {
            self.actor_tasks.remove(&id);
        }
        if self.progress.is_active() {
            self.progress_forgotten(id);
        }
        self.task_mut(id).state = TaskState::Forgotten;
        self.count_state_as(id, TaskState::Forgotten);
        self.remove_task(id);
        recs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::worker::{WorkerRegistration, WorkerStatus};
    use dask_wire::Key;

    fn registration(address: &str) -> WorkerRegistration {
        WorkerRegistration {
            status: WorkerStatus::Running,
            ..WorkerRegistration::new(address, 1)
        }
    }

    /// (op, freed keys) of each message in the outbox.
    fn ops(s: &mut State) -> Vec<(String, Vec<Value>)> {
        s.take_outbox()
            .into_iter()
            .map(|m| match m {
                Outgoing::Worker(_, Value::Encoded(e)) => {
                    let v = e.decode().expect("an encoded op decodes");
                    (
                        v.get("op").and_then(Value::as_str_key).unwrap().to_string(),
                        v.get("keys")
                            .and_then(Value::as_seq)
                            .map(<[Value]>::to_vec)
                            .unwrap_or_default(),
                    )
                }
                Outgoing::Worker(_, v) => (
                    v.get("op").and_then(Value::as_str_key).unwrap().to_string(),
                    v.get("keys")
                        .and_then(Value::as_seq)
                        .map(<[Value]>::to_vec)
                        .unwrap_or_default(),
                ),
                Outgoing::Client(..) => panic!("no client messages here"),
            })
            .collect()
    }

    #[test]
    fn free_keys_join_one_message_per_worker_unless_something_came_between() {
        let mut s = State::new(Config::default());
        let w = s.add_worker(registration("tcp://a:1"), 0.0).unwrap();
        let v = s.add_worker(registration("tcp://b:1"), 0.0).unwrap();
        s.take_outbox();
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|k| s.new_task(Key::from_str_key(k)));
        let key = |s: &State, id| s.task(id).key.decoded();
        s.free_keys_on(a, &[w, v], "t");
        s.free_keys_on(b, &[w], "t");
        // anything else sent to `w` closes its free-keys message ...
        s.push_worker(w, messages::close_worker("x"));
        s.free_keys_on(c, &[w, v], "t");
        // ... and so does the end of a transition batch
        s.transitions(Vec::new());
        s.free_keys_on(d, &[w], "t");
        let (ka, kb, kc, kd) = (key(&s, a), key(&s, b), key(&s, c), key(&s, d));
        let fk = |keys: Vec<Value>| ("free-keys".to_string(), keys);
        assert_eq!(
            ops(&mut s),
            vec![
                fk(vec![ka.clone(), kb]),
                fk(vec![ka, kc.clone()]),
                ("close".to_string(), vec![]),
                fk(vec![kc]),
                fk(vec![kd]),
            ]
        );
    }
}
