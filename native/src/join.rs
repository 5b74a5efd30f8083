//! The run join of `meta_supervisor/tally/consistency.py` (each root's totals against its LLM spans, open runs
//! bounded and evicted) and the deferred calls of `agent_counts.py` (calls naming no agent, counted
//! for their run's agent when its root is read), for `part::Aggregator`; each function says which
//! Python function it follows.

use crate::kinds::add_tool_call;
use crate::part::*;
use crate::tables::ModelRef;
use crate::tallies::{note_mismatch, Deferred, Entry, Root};
use crate::values::{as_float, as_int, run_fingerprint};
use pyo3::prelude::*;

impl Aggregator<'_, '_> {
    /// `ConsistencyCheck.bound_open_runs`: resolve the LLM-only runs opened since the last sweep whose run is
    /// closed, then evict the oldest open runs while more than `max_open_runs` are open.
    pub(crate) fn bound_open_runs(&mut self) -> R<()> {
        self.dead.clear(); // what the sweep would delete (`settle_one` of an unchecked run)
        self.last_dead.clear();
        let mut new: Vec<(u64, String)> = self
            .pending
            .iter()
            .filter(|(_, e)| e.root.is_none() && e.seq >= self.sweep_seq)
            .map(|(k, e)| (e.seq, k.clone()))
            .collect();
        new.sort_unstable();
        for (_, key) in new {
            self.settle_one(&key)?;
        }
        self.sweep_seq = self.next_seq;
        if self.pending.len() > self.max_open_runs {
            let mut all: Vec<(u64, String)> = self.pending.iter().map(|(k, e)| (e.seq, k.clone())).collect();
            all.sort_unstable();
            let excess = self.pending.len() - self.max_open_runs * EVICT_TO_EIGHTHS / 8;
            for (_, key) in all.into_iter().take(excess) {
                let entry = self.pending.remove(&key).unwrap();
                self.evict(&key, *entry)?;
            }
        }
        self.sweep_at = self.pending.len() + sweep_every(self.max_open_runs);
        Ok(())
    }

    /// `ConsistencyCheck._evict`.
    pub(crate) fn evict(&mut self, run_key: &str, entry: Entry) -> R<()> {
        let fp = run_fingerprint(run_key, &self.helpers)?;
        if entry.root.is_some() {
            self.inputs.evicted_roots += 1;
            self.closed.set(fp, Self::closed_state(entry.agent, RUN_UNCHECKED))?;
            self.agents[entry.agent].consistency[UNCHECKED] += 1;
        } else {
            self.inputs.evicted_llm_runs += 1;
            self.inputs.evicted_llm_spans += entry.calls;
            self.closed.set(fp, EVICTED_STATE)?;
            if let Some(records) = entry.deferred {
                // their root never came in time: (unknown agent)'s
                let unknown = self.agent(UNKNOWN_AGENT);
                self.replay(unknown, records)?;
            }
        }
        Ok(())
    }

    /// `ConsistencyCheck._settle`: an LLM-only open run whose run is closed is resolved.
    pub(crate) fn settle_one(&mut self, run_key: &str) -> R<()> {
        let fp = run_fingerprint(run_key, &self.helpers)?;
        let state = self.closed.get(fp)?;
        if state == 0 {
            return Ok(());
        }
        let mut entry = self.pending.remove(run_key).unwrap();
        let code = state & 3;
        let index = (state >> INDEX_SHIFT) as usize;
        let known = index < AGENT_INDEX_UNKNOWN && index < self.agent_order.len();
        if let Some(records) = entry.deferred.take() {
            // calls without an agent name: the closed run's agent
            let owner = if known { index } else { self.agent(UNKNOWN_AGENT) };
            self.replay(owner, records)?;
        }
        let extra_tools = if state & TOOLS_UNANNOUNCED != 0 { 0 } else { entry.tools };
        if code == RUN_UNCHECKED || code == 0 || (entry.calls == 0 && extra_tools == 0) {
            return Ok(());
        }
        let owner = if known {
            index
        } else if entry.agent == NO_AGENT {
            self.agent(UNKNOWN_AGENT)
        } else {
            entry.agent
        };
        let tally = &mut self.agents[owner];
        if code == RUN_CONSISTENT {
            tally.consistency[CONSISTENT] -= 1;
            tally.consistency[MISMATCHED] += 1;
            self.closed.set(fp, (state & !3) | RUN_MISMATCHED)?;
        }
        let detail = if entry.calls != 0 { EXTRA_LLM_SPANS } else { EXTRA_TOOL_SPANS };
        note_mismatch(&mut tally.mismatches, &entry.trace_id, &entry.run_id, detail.to_string());
        Ok(())
    }

    /// The name an open run's entry records (`NO_AGENT`: "(unknown agent)").
    pub(crate) fn entry_agent(&self, entry: &Entry) -> &str {
        if entry.agent == NO_AGENT {
            UNKNOWN_AGENT
        } else {
            &self.agent_order[entry.agent]
        }
    }

    /// `ConsistencyCheck._run_agent`: the agent of a run for a call that names none: its root's when the root
    /// was read ("(unknown agent)" when the closed run does not record it), None when not yet.
    pub(crate) fn run_agent(&mut self, run_key: &str) -> R<Option<String>> {
        if let Some(entry) = self.pending.get(run_key) {
            return Ok(entry.root.as_ref().map(|_| self.entry_agent(entry).to_string()));
        }
        let fp = run_fingerprint(run_key, &self.helpers)?;
        if self.dead.remove(&fp) {
            self.last_dead.clear();
            return Ok(None); // an unchecked run's open run, held as its fingerprint: the caller opens its entry
        }
        let state = self.closed.get(fp)?;
        if state == 0 {
            return Ok(None);
        }
        let index = (state >> INDEX_SHIFT) as usize;
        Ok(Some(if index < AGENT_INDEX_UNKNOWN && index < self.agent_order.len() {
            self.agent_order[index].clone()
        } else {
            UNKNOWN_AGENT.to_string()
        }))
    }

    /// `ConsistencyCheck._join_tool`: a tool span counted in its run's open entry; `record`: the
    /// call, when it names no agent (`agent` is then `NO_AGENT`), kept until the root comes.
    pub(crate) fn join_tool(&mut self, run_key: &str, trace_id: &str, run_id: &str, agent: usize, record: Option<Deferred>) -> R<()> {
        match self.pending.get_mut(run_key) {
            Some(entry) => {
                if let Some(record) = record {
                    entry.deferred.get_or_insert_with(Vec::new).push(record);
                }
                entry.tools += 1;
                if entry.complete() {
                    self.close(run_key)?;
                }
            }
            None => {
                if record.is_none() && self.of_unchecked_run(run_key)? {
                    return Ok(());
                }
                let mut entry = new_entry(agent, trace_id, run_id, None);
                entry.deferred = record.map(|record| vec![record]);
                entry.tools = 1;
                self.open(run_key, entry);
            }
        }
        Ok(())
    }

    /// `ConsistencyCheck._of_unchecked_run`: whether a child that names its agent, with no open
    /// entry, belongs to a run closed as unchecked (its entry is then not opened, only counted in
    /// `dead` until the next sweep, so that sweeps and evictions come when they did).
    pub(crate) fn of_unchecked_run(&mut self, run_key: &str) -> R<bool> {
        if !run_key.is_empty() && run_key == self.last_dead {
            return Ok(true); // the run of the span before (a run's children come together): in `dead`
        }
        let fp = run_fingerprint(run_key, &self.helpers)?;
        if self.dead.contains(&fp) || self.closed.get(fp)? & 3 == RUN_UNCHECKED {
            self.dead.insert(fp);
            self.last_dead.clear();
            self.last_dead.push_str(run_key);
            return Ok(true);
        }
        Ok(false)
    }

    /// A new open run, after every other (its `seq`: the order `pending` has it in Python).
    pub(crate) fn open(&mut self, run_key: &str, mut entry: Entry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(run_key.to_string(), Box::new(entry));
    }

    /// `agent_counts.replay`: deferred calls counted for the agent with this index.
    pub(crate) fn replay(&mut self, index: usize, records: Vec<Deferred>) -> R<()> {
        for record in records {
            match record {
                Deferred::Llm {
                    day,
                    model,
                    simulated,
                    operation,
                    tokens_in,
                    tokens_out,
                    cached,
                    error,
                    bad,
                } => self.count_llm(index, day, &model, simulated, &operation, tokens_in, tokens_out, cached, error, bad)?,
                Deferred::Tool { name, error, start, end } => add_tool_call(&mut self.agents[index], &name, error, start, end),
            }
        }
        Ok(())
    }

    /// `agent_counts.count_llm_call`: one LLM call of the agent with this index.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn count_llm(
        &mut self,
        index: usize,
        day: i64,
        model: &str,
        simulated: bool,
        operation: &str,
        tokens_in: i128,
        tokens_out: i128,
        cached: i128,
        error: bool,
        bad: bool,
    ) -> R<()> {
        let tally = &mut self.agents[index];
        *tally.llm_operations.entry(operation, || operation.to_string(), || 0) += 1;
        if bad {
            tally.bad_token_values += 1;
        }
        let key = ModelRef(day, model, simulated);
        if !tally.day_models.contains(&key) && tally.day_models.len() >= MAX_DISTINCT {
            return decline("an agent's model table is full");
        }
        let counts = tally.day_models.entry(&key, || (key.0, key.1.to_string(), key.2), || [0; 5]);
        counts[0] += 1;
        counts[2] += tokens_in;
        counts[3] += cached;
        counts[4] += tokens_out;
        if error {
            counts[1] += 1;
        }
        Ok(())
    }

    /// `ConsistencyCheck._root_of_closed_run`: a second root, or the root of a run whose LLM spans were evicted.
    pub(crate) fn root_of_closed_run(&mut self, fp: u64, index: usize, run_key: &str, skipped: bool) -> R<()> {
        if self.closed.get(fp)? != EVICTED_STATE {
            self.inputs.duplicate_run_roots += 1;
            return Ok(());
        }
        self.closed.set(fp, Self::closed_state(index, RUN_UNCHECKED))?;
        self.pending.remove(run_key);
        if !skipped {
            self.agents[index].consistency[UNCHECKED] += 1;
        }
        Ok(())
    }

    /// `mismatch_detail`: None when consistent, else Python's text.
    pub(crate) fn detail(&self, entry: &Entry) -> R<Option<String>> {
        if entry.consistent() {
            return Ok(None);
        }
        let py = self.helpers.obj.py();
        Ok(self
            .helpers
            .call1("mismatch_detail", (entry.to_python(py, self.entry_agent(entry))?,))?
            .extract()?)
    }

    /// `ConsistencyCheck._close`: a run whose root came first, now that its last LLM span is here.
    pub(crate) fn close(&mut self, run_key: &str) -> R<()> {
        let entry = self.pending.remove(run_key).unwrap();
        let fp = run_fingerprint(run_key, &self.helpers)?;
        let detail = self.detail(&entry)?;
        let state = Self::closed_state(entry.agent, checked_code(detail.is_none(), entry.root.as_ref().unwrap()));
        let tally = &mut self.agents[entry.agent];
        match detail {
            None => tally.consistency[CONSISTENT] += 1,
            Some(detail) => {
                tally.consistency[MISMATCHED] += 1;
                note_mismatch(&mut tally.mismatches, &entry.trace_id, &entry.run_id, detail);
            }
        }
        self.closed.set(fp, state)?;
        Ok(())
    }

    /// `consistency._root_totals`.
    pub(crate) fn root_totals(&self, attrs: &Attrs) -> R<Option<Root>> {
        let Some(calls) = as_int(attrs[A_RUN_CALLS], &self.helpers)? else {
            return Ok(None);
        };
        let h = &self.helpers;
        Ok(Some(Root {
            calls,
            tokens_in: as_int(attrs[A_RUN_IN], h)?,
            tokens_out: as_int(attrs[A_RUN_OUT], h)?,
            cached: as_int(attrs[A_RUN_CACHED], h)?,
            cost: as_float(attrs[A_RUN_COST], h)?,
            unpriced: as_int(attrs[A_RUN_UNPRICED], h)?,
            tools: as_int(attrs[A_RUN_TOOLS], h)?,
        }))
    }

    /// `ConsistencyCheck._join_root` (its general path, which its fast path agrees with).
    #[allow(clippy::too_many_arguments)]
    /// `skipped`: killed before it started (its absent totals are not even "unchecked").
    pub(crate) fn join_root(&mut self, index: usize, trace_id: &str, attrs: &Attrs, run_key: &str, run_id: &str, skipped: bool) -> R<()> {
        if let Some(records) = self.pending.get_mut(run_key).and_then(|entry| entry.deferred.take()) {
            self.replay(index, records)?; // calls without an agent name that waited for this root
        }
        let has_entry = match self.pending.get(run_key) {
            Some(entry) if entry.root.is_some() => {
                self.inputs.duplicate_run_roots += 1;
                return Ok(());
            }
            Some(_) => true,
            None => false,
        };
        let fp = run_fingerprint(run_key, &self.helpers)?;
        let Some(root) = self.root_totals(attrs)? else {
            let state = Self::closed_state(index, RUN_UNCHECKED);
            if !self.closed.insert_new(fp, state)? {
                if run_id.is_empty() && self.closed.get(fp)? != EVICTED_STATE {
                    // another agent span of the same trace: a run of its own, never a duplicate
                    if has_entry {
                        self.pending.remove(run_key);
                    } else if self.dead.remove(&fp) {
                        self.last_dead.clear();
                    }
                    if !skipped {
                        self.agents[index].consistency[UNCHECKED] += 1;
                    }
                    return Ok(());
                }
                return self.root_of_closed_run(fp, index, run_key, skipped);
            }
            if has_entry {
                self.pending.remove(run_key);
            }
            if !skipped {
                self.agents[index].consistency[UNCHECKED] += 1;
            }
            return Ok(());
        };
        let (calls, tools) = self.pending.get(run_key).map_or((0, 0), |e| (e.calls, e.tools));
        if !root.complete_with(calls, tools) {
            if self.closed.get(fp)? != 0 {
                return self.root_of_closed_run(fp, index, run_key, skipped);
            }
            match self.pending.get_mut(run_key) {
                None => self.open(run_key, new_entry(index, trace_id, run_id, Some(root))),
                Some(entry) => set_root(entry, index, trace_id, run_id, root),
            }
            return Ok(());
        }
        // every LLM span the root counts has arrived: close the run now
        let detail = match self.pending.get_mut(run_key) {
            None => {
                let entry = new_entry(index, trace_id, run_id, Some(root));
                self.detail(&entry)?
            }
            Some(entry) => {
                set_root(entry, index, trace_id, run_id, root);
                let entry = self.pending.get(run_key).unwrap();
                self.detail(entry)?
            }
        };
        let state = Self::closed_state(index, checked_code(detail.is_none(), &root));
        if !self.closed.insert_new(fp, state)? {
            if let Some(entry) = self.pending.get_mut(run_key) {
                entry.root = None;
            }
            return self.root_of_closed_run(fp, index, run_key, skipped);
        }
        self.pending.remove(run_key);
        let tally = &mut self.agents[index];
        match detail {
            None => tally.consistency[CONSISTENT] += 1,
            Some(detail) => {
                tally.consistency[MISMATCHED] += 1;
                note_mismatch(&mut tally.mismatches, trace_id, run_id, detail);
            }
        }
        Ok(())
    }
}

/// `open_runs.sweep_every`.
pub(crate) fn sweep_every(bound: usize) -> usize {
    (bound / 8).clamp(1, SWEEP_EVERY)
}

/// An open run with nothing counted yet (its `seq` set by `Aggregator::open`).
pub(crate) fn new_entry(agent: usize, trace_id: &str, run_id: &str, root: Option<Root>) -> Entry {
    Entry {
        seq: 0,
        agent,
        trace_id: trace_id.to_string(),
        run_id: run_id.to_string(),
        root,
        calls: 0,
        tokens_in: 0,
        tokens_out: 0,
        cached: 0,
        cost: 0.0,
        unpriced: 0,
        deferred: None,
        tools: 0,
    }
}

/// `consistency._checked_code`: the closed state's code of a checked run.
pub(crate) fn checked_code(consistent: bool, root: &Root) -> u8 {
    let code = if consistent { RUN_CONSISTENT } else { RUN_MISMATCHED };
    if root.tools.is_some() {
        code
    } else {
        code | TOOLS_UNANNOUNCED
    }
}

pub(crate) fn set_root(entry: &mut Entry, agent: usize, trace_id: &str, run_id: &str, root: Root) {
    entry.agent = agent;
    entry.trace_id = trace_id.to_string();
    entry.run_id = run_id.to_string();
    entry.root = Some(root);
}
