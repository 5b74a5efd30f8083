//! The per-span logic of `meta_supervisor/tally/span_aggregator.py` and `alpha_events.py` (the run join is
//! in `join.rs`, other instrumentations' spans in `kinds.rs`), for one part of a file, with the same
//! results.
//!
//! Each function says which Python function it follows. What is rare and fiddly to reproduce exactly
//! (Python's `int()` of an odd string, ISO dates, BLAKE2 fingerprints of ids that are not hex, the text
//! of a mismatch, the price table) is asked of Python through `Helpers`, so it is Python's answer by
//! construction. What cannot be reproduced cheaply (a table at its size limit whose overflow key
//! changes type, spans without ids) makes the part `Decline`: the Python reader then reads it.

use crate::content::{content_check, span_entry};
use crate::join::{new_entry, sweep_every};
use crate::kinds::{classify, run_agent_name, Kind};
use crate::legacy;
use crate::schema::{AnyValue, KeyValue, Span};
use crate::tables::{FpMap, FpSet, PairRef, TripleRef};
use crate::tallies::{push_top, Deferred, Entry, Inputs, Process, Store, Tally};
use crate::values::{as_int, as_str, count_attr, label, span_fingerprint, time_of, Helpers};
use pyo3::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Cow;

pub enum Stop {
    Decline(String),
    Python(PyErr),
}

impl From<crate::tables::Full> for Stop {
    fn from(_: crate::tables::Full) -> Self {
        Stop::Decline("the build's fingerprint table is full".to_string())
    }
}

impl From<PyErr> for Stop {
    fn from(err: PyErr) -> Self {
        Stop::Python(err)
    }
}

pub type R<T> = Result<T, Stop>;

/// What `add_spans` counts over one batch (one `scopeSpans` entry's spans) for its process's row.
#[derive(Default)]
pub(crate) struct Batch {
    counted: i128,
    llm_calls: i128,
}

pub fn decline<T>(why: &str) -> R<T> {
    Err(Stop::Decline(why.to_string()))
}

// --- constants (otel/semconv.py, meta_supervisor/tally/aggregates.py) ------------------------------------

pub const TOP_K: usize = 5;
pub(crate) const MAX_LABEL: usize = 200;
pub(crate) const MAX_DISTINCT: usize = 1000;
pub(crate) const MAX_AGENTS: usize = 10_000;
pub const OTHER_LABEL: &str = "(other)";
pub(crate) const MAX_PROCESSES: usize = 10_000;
pub(crate) const NO_SERVICE: &str = "(no service.name)";
pub(crate) const NO_INSTANCE: &str = "(no service.instance.id)";
// the per-host table (`bounds.py`: MAX_HOST_PROCESSES, NO_HOST, NO_SHARD, the H_* columns)
pub(crate) const MAX_HOST_PROCESSES: usize = 1_000;
const NO_HOST: &str = "(no host.name)";
const NO_SHARD: &str = "(no shard)";
const H_SPANS: usize = 0;
const H_RUNS: usize = 1;
const H_ERRORS: usize = 2;
const H_LLM_CALLS: usize = 3;
const H_COST_NANO_USD: usize = 4;
const H_DROPPED: usize = 5;
const H_FAILED: usize = 6;
const MAX_RUN_COST_USD: f64 = 1e9;
pub(crate) const NS_PER_DAY: i128 = 86_400 * 1_000_000_000;
pub(crate) const MAX_TIME_NS: i128 = u64::MAX as i128;
pub(crate) const MAX_TOKENS: i128 = 1_000_000_000_000_000;
/// The span the report build adds under a run for its forecasts' outcomes (`semconv.SPAN_EVALUATION`).
pub(crate) const EVALUATION_SPAN: &str = "alphatrace.evaluation";
pub(crate) const UNKNOWN_AGENT: &str = "(unknown agent)";
pub(crate) const UNKNOWN_MODEL: &str = "(unknown model)";
pub(crate) const NO_SYMBOL: &str = "(no symbol)";
pub(crate) const NO_DIRECTION: &str = "(no direction)";
pub(crate) const STATUS_ERROR: i64 = 2;
pub(crate) const MAX_HORIZON: i128 = i64::MAX as i128;
pub(crate) const DAY_BITS: u32 = 22;
pub(crate) const TRADABLE_SHIFT: u32 = 2;
pub(crate) const RUN_CONSISTENT: u8 = 1;
pub(crate) const RUN_MISMATCHED: u8 = 2;
pub(crate) const RUN_UNCHECKED: u8 = 3;
/// `consistency.AGENT_INDEX_UNKNOWN`, `INDEX_SHIFT`, `TOOLS_UNANNOUNCED`: a closed run's state is its
/// code (2 bits), the flag "the root carried no tool total" and the agent's index (5 bits)
pub(crate) const AGENT_INDEX_UNKNOWN: usize = 31;
pub(crate) const INDEX_SHIFT: u32 = 3;
pub(crate) const TOOLS_UNANNOUNCED: u8 = 4;
/// `Entry.agent` of an open run made by calls that name no agent: "(unknown agent)", whose tally is
/// only made when something is counted for it
pub(crate) const NO_AGENT: usize = usize::MAX;
/// `consistency.EVICTED_STATE`: code RUN_EVICTED (0) with the unknown agent index
pub(crate) const EVICTED_STATE: u8 = (AGENT_INDEX_UNKNOWN as u8) << INDEX_SHIFT;
/// `open_runs.SWEEP_EVERY`
pub(crate) const SWEEP_EVERY: usize = 4_096;
/// `open_runs.EVICT_TO_EIGHTHS`
pub(crate) const EVICT_TO_EIGHTHS: usize = 7;
pub(crate) const EXTRA_LLM_SPANS: &str = "more LLM spans than alphatrace.run.llm_calls";
pub(crate) const EXTRA_TOOL_SPANS: &str = "more tool spans than alphatrace.run.tool_calls";
/// `bounds.UNKNOWN_BUDGET`
pub(crate) const UNKNOWN_BUDGET: &str = "(unknown budget)";
/// `span_aggregator.MAX_TOKENS` bounds a run's call totals too (`_run_steps`)
pub(crate) const RS_LLM_RUNS: usize = 0;
pub(crate) const RS_TOOL_RUNS: usize = 3;

pub const DAY_OK: usize = 0;
pub const DAY_ERROR: usize = 1;
pub const DAY_KILLED: usize = 2;
pub const DAY_ALPHA: usize = 3;
/// `aggregates.EPOCH_ORDINAL`: as-of days are kept as days since 1970-01-01, as start days
pub const EPOCH_ORDINAL: i64 = 719_163;
pub const DAY_ALPHA_INVALID: usize = 4;
pub const CONSISTENT: usize = 0;
pub const MISMATCHED: usize = 1;
pub const UNCHECKED: usize = 2;

// span attribute slots (`span_attrs`)
pub(crate) const A_OP: usize = 0;
pub(crate) const A_AGENT: usize = 1;
pub(crate) const A_RUN_ID: usize = 2;
pub(crate) const A_OUTCOME: usize = 3;
pub(crate) const A_ERROR_TYPE: usize = 4;
pub(crate) const A_KILL_REASON: usize = 5;
pub(crate) const A_DROPPED: usize = 6;
pub(crate) const A_FAILED: usize = 7;
pub(crate) const A_RESPONSE_MODEL: usize = 8;
pub(crate) const A_REQUEST_MODEL: usize = 9;
pub(crate) const A_TOKENS_IN: usize = 10;
pub(crate) const A_TOKENS_OUT: usize = 11;
pub(crate) const A_TOKENS_CACHED: usize = 12;
pub(crate) const A_RUN_CALLS: usize = 13;
pub(crate) const A_RUN_COST: usize = 14;
pub(crate) const A_RUN_IN: usize = 15;
pub(crate) const A_RUN_OUT: usize = 16;
pub(crate) const A_RUN_CACHED: usize = 17;
pub(crate) const A_RUN_UNPRICED: usize = 18;
pub(crate) const A_RUN_AS_OF: usize = 19;
// spans from other instrumentations (`otel/semconv.py`, `kinds.rs`)
pub(crate) const A_OPENINFERENCE_KIND: usize = 20;
pub(crate) const A_TRACELOOP_KIND: usize = 21;
pub(crate) const A_REQUEST_TYPE: usize = 22;
pub(crate) const A_OPENINFERENCE_AGENT: usize = 23;
pub(crate) const A_TRACELOOP_ENTITY: usize = 24;
pub(crate) const A_TOOL_NAME: usize = 25;
pub(crate) const A_OPENINFERENCE_TOOL: usize = 26;
pub(crate) const A_OPENINFERENCE_RESPONSE_MODEL: usize = 27;
pub(crate) const A_OPENINFERENCE_MODEL: usize = 28;
pub(crate) const A_OPENINFERENCE_REQUEST_MODEL: usize = 29;
pub(crate) const A_EMBEDDING_MODEL: usize = 30;
pub(crate) const A_PROMPT_TOKENS: usize = 31;
pub(crate) const A_OPENINFERENCE_PROMPT: usize = 32;
pub(crate) const A_COMPLETION_TOKENS: usize = 33;
pub(crate) const A_OPENINFERENCE_COMPLETION: usize = 34;
pub(crate) const A_TRACELOOP_CACHE_READ: usize = 35;
pub(crate) const A_OPENINFERENCE_CACHE_READ: usize = 36;
// run totals and stops (`otel/semconv.py`)
pub(crate) const A_RUN_TOOLS: usize = 37;
pub(crate) const A_STOPPED_BEFORE: usize = 38;
pub(crate) const A_BUDGET_NAME: usize = 39;
pub(crate) const SLOTS: usize = 40;

pub(crate) type Attrs<'s, 'a> = [Option<&'s AnyValue<'a>>; SLOTS];

/// `{kv.key: kv.value for kv in span.attributes}` for the keys read: the last occurrence wins. A span
/// of a file written before the project namespace (old keys, no `alphatrace.run.id`) is read under
/// today's names, a key present under both keeping the new one's value (`legacy_names.upgrade_attributes`).
fn span_attrs<'s, 'a>(attributes: &'s [KeyValue<'a>]) -> Attrs<'s, 'a> {
    let mut found: Attrs = [None; SLOTS];
    let mut old: Option<Attrs> = None;
    for kv in attributes {
        if let Some(slot) = slot_of(&kv.key) {
            found[slot] = kv.value.as_ref();
        } else if legacy::may_be_old_key(&kv.key) {
            if let Some(slot) = legacy::current(&kv.key).and_then(slot_of) {
                old.get_or_insert([None; SLOTS])[slot] = kv.value.as_ref();
            }
        }
    }
    if let Some(old) = old {
        if found[A_RUN_ID].is_none() {
            for (slot, value) in found.iter_mut().zip(old) {
                if slot.is_none() {
                    *slot = value;
                }
            }
        }
    }
    found
}

/// The slot of a span attribute key the report reads.
fn slot_of(key: &str) -> Option<usize> {
    Some(match key {
        "gen_ai.operation.name" => A_OP,
        "gen_ai.agent.name" => A_AGENT,
        "alphatrace.run.id" => A_RUN_ID,
        "alphatrace.run.outcome" => A_OUTCOME,
        "error.type" => A_ERROR_TYPE,
        "alphatrace.kill.reason" => A_KILL_REASON,
        "alphatrace.telemetry.spans_dropped" => A_DROPPED,
        "alphatrace.telemetry.spans_export_failed" => A_FAILED,
        "gen_ai.response.model" => A_RESPONSE_MODEL,
        "gen_ai.request.model" => A_REQUEST_MODEL,
        "gen_ai.usage.input_tokens" => A_TOKENS_IN,
        "gen_ai.usage.output_tokens" => A_TOKENS_OUT,
        "gen_ai.usage.cache_read.input_tokens" => A_TOKENS_CACHED,
        "alphatrace.run.llm_calls" => A_RUN_CALLS,
        "alphatrace.run.cost_usd" => A_RUN_COST,
        "alphatrace.run.input_tokens" => A_RUN_IN,
        "alphatrace.run.output_tokens" => A_RUN_OUT,
        "alphatrace.run.cached_input_tokens" => A_RUN_CACHED,
        "alphatrace.run.unpriced_llm_calls" => A_RUN_UNPRICED,
        "alphatrace.run.as_of" => A_RUN_AS_OF,
        "openinference.span.kind" => A_OPENINFERENCE_KIND,
        "traceloop.span.kind" => A_TRACELOOP_KIND,
        "llm.request.type" => A_REQUEST_TYPE,
        "agent.name" => A_OPENINFERENCE_AGENT,
        "traceloop.entity.name" => A_TRACELOOP_ENTITY,
        "gen_ai.tool.name" => A_TOOL_NAME,
        "tool.name" => A_OPENINFERENCE_TOOL,
        "llm.response.model_name" => A_OPENINFERENCE_RESPONSE_MODEL,
        "llm.model_name" => A_OPENINFERENCE_MODEL,
        "llm.request.model_name" => A_OPENINFERENCE_REQUEST_MODEL,
        "embedding.model_name" => A_EMBEDDING_MODEL,
        "gen_ai.usage.prompt_tokens" => A_PROMPT_TOKENS,
        "llm.token_count.prompt" => A_OPENINFERENCE_PROMPT,
        "gen_ai.usage.completion_tokens" => A_COMPLETION_TOKENS,
        "llm.token_count.completion" => A_OPENINFERENCE_COMPLETION,
        "gen_ai.usage.cache_read_input_tokens" => A_TRACELOOP_CACHE_READ,
        "llm.token_count.prompt_details.cache_read" => A_OPENINFERENCE_CACHE_READ,
        "alphatrace.run.tool_calls" => A_RUN_TOOLS,
        "alphatrace.run.stopped_before" => A_STOPPED_BEFORE,
        "alphatrace.budget.name" => A_BUDGET_NAME,
        _ => return None,
    })
}

// --- the aggregator (span_aggregator.SpanAggregator) -------------------------------------------------

pub struct Aggregator<'py, 't> {
    pub helpers: Helpers<'py>,
    pub(crate) since_ns: Option<i128>,
    pub(crate) until_ns: Option<i128>,
    pub(crate) collect_signals: bool,
    pub inputs: Inputs,
    pub agents: Vec<Tally>,
    pub agent_order: Vec<String>,
    pub(crate) agent_index: FxHashMap<String, usize>,
    pub seen: FpSet<'t>,
    pub closed: FpMap<'t>,
    /// open runs, each entry boxed: the table's slots are a key and a pointer, so its capacity
    /// (which never shrinks, up to twice the open runs between two sweeps) costs ~32 bytes a slot,
    /// not an `Entry`'s ~400 (the worst row at 5 M spans: 6.8 MB of slots at the read's peak)
    pub pending: FxHashMap<String, Box<Entry>>,
    /// `SpanAggregator._dead`: runs closed as unchecked whose children came since the last sweep
    /// (the entries they would have opened; `join::of_unchecked_run`), by fingerprint.
    pub dead: FxHashSet<u64>,
    /// The run key last found in `dead` ("" when none; cleared whenever a run leaves `dead`).
    pub(crate) last_dead: String,
    pub(crate) next_seq: u64,
    pub(crate) max_open_runs: usize,
    pub(crate) sweep_at: usize,
    pub(crate) sweep_seq: u64, // LLM-only open runs from this seq on were opened since the last sweep
    pub latency_spill: Option<crate::latency_spill::LatencySpill>,
    pub(crate) signal_names: crate::names::SignalNames,
    /// The scanner's vectors, kept empty from one line to the next (`scan_spans::Spare`).
    pub(crate) spare: crate::scan_spans::Spare,
}

impl<'py, 't> Aggregator<'py, 't> {
    pub fn new(
        helpers: Helpers<'py>,
        since_ns: Option<i128>,
        until_ns: Option<i128>,
        collect_signals: bool,
        tables: (FpSet<'t>, FpMap<'t>),
        max_open_runs: usize,
    ) -> Self {
        Aggregator {
            helpers,
            since_ns,
            until_ns,
            collect_signals,
            inputs: Inputs::default(),
            agents: Vec::new(),
            agent_order: Vec::new(),
            agent_index: FxHashMap::default(),
            seen: tables.0,
            closed: tables.1,
            pending: FxHashMap::default(),
            dead: FxHashSet::default(),
            last_dead: String::new(),
            next_seq: 0,
            max_open_runs,
            sweep_at: sweep_every(max_open_runs),
            sweep_seq: 0,
            latency_spill: None,
            signal_names: Default::default(),
            spare: Default::default(),
        }
    }

    /// `resource_facts`: whether the resource's LLM calls were simulated, and its process.
    pub fn resource_facts<'r>(&self, attributes: &'r [KeyValue]) -> R<(bool, Process<'r>)> {
        let mut simulated = false;
        let (mut service, mut instance, mut host, mut shard) = (None, None, None, None);
        for kv in attributes {
            match &*kv.key {
                "alphatrace.llm.simulated" => {
                    simulated = match &kv.value {
                        None => false,
                        Some(v) => match (v.boolean, &v.string) {
                            (Some(b), _) => b,
                            (None, None) => false,
                            (None, Some(text)) => self.helpers.call1("truthy", (&**text,))?.extract()?,
                        },
                    }
                }
                "service.instance.id" => instance = as_str(kv.value.as_ref()),
                "service.name" => service = as_str(kv.value.as_ref()),
                "host.name" => host = as_str(kv.value.as_ref()),
                "alphatrace.shard" => shard = as_str(kv.value.as_ref()),
                _ => {}
            }
        }
        Ok((simulated, (service, instance, host, shard)))
    }

    /// `SpanAggregator.add_spans`.
    pub fn add_spans(&mut self, spans: &[Span], simulated: bool, process: &Process) -> R<()> {
        let mut batch = Batch::default();
        for span in spans {
            self.add_span(span, simulated, process, &mut batch)?;
        }
        self.end_batch(&batch, process)
    }

    /// One span of a batch (`add_spans`' loop body): a line's spans can be added as they are
    /// parsed (`stream.rs`), the batch ended (`end_batch`) after its last.
    pub(crate) fn add_span(&mut self, span: &Span, simulated: bool, process: &Process, batch: &mut Batch) -> R<()> {
        self.add_span_with(span, None, simulated, process, batch)
    }

    /// `add_span`, with the span's fingerprint when its reader made it already (`Scan::span_then`).
    pub(crate) fn add_span_with(&mut self, span: &Span, fp: Option<u64>, simulated: bool, process: &Process, batch: &mut Batch) -> R<()> {
        let windowed = self.since_ns.is_some() || self.until_ns.is_some();
        let Batch { counted, llm_calls } = batch;
        let (trace_id, span_id) = (&*span.trace_id, &*span.span_id);
        if trace_id.is_empty() || span_id.is_empty() {
            return decline("a span without ids");
        }
        let fp = match fp {
            Some(fp) => fp,
            None => span_fingerprint(trace_id, span_id, &self.helpers)?,
        };
        let start = time_of(&span.start, &self.helpers)?;
        let end = time_of(&span.end, &self.helpers)?;
        let entry = span_entry(fp, content_check(start, end, span));
        match self.seen.insert(entry)? {
            0 => {}
            old if old == entry => {
                self.inputs.duplicate_spans += 1;
                return Ok(());
            }
            _ => return decline("a span whose ids were seen with other content (the Python reader lists its ids)"),
        }
        if windowed && !self.in_window(start) {
            self.inputs.outside_window += 1;
            return Ok(());
        }
        self.inputs.spans += 1;
        *counted += 1;
        let attrs = span_attrs(&span.attributes);
        let operation = as_str(attrs[A_OP]);
        match operation {
            Some("chat") => {
                *llm_calls += 1;
                self.llm_span(span, &attrs, start, simulated, "chat")?
            }
            Some("invoke_agent") => self.run_span(span, &attrs, start, fp, process)?,
            // another instrumentation's spans (`genai_spans.classify`)
            _ => match classify(&attrs, operation) {
                Kind::Llm(op) => {
                    *llm_calls += 1;
                    self.llm_span(span, &attrs, start, simulated, op)?
                }
                Kind::Run => self.run_span(span, &attrs, start, fp, process)?,
                Kind::Tool => self.tool_span(span, &attrs, start, end, fp)?,
                // a forecast's outcome under its run (`semconv.SPAN_EVALUATION`): not one of the run's spans
                Kind::Other if &*span.name == EVALUATION_SPAN => self.inputs.evaluation_spans += 1,
                Kind::Other
                    if span.name.starts_with("alphatrace.supervisor.") || span.name.starts_with(legacy::OLD_SUPERVISOR_SPAN_PREFIX) =>
                {
                    self.inputs.supervisor_spans += 1
                }
                Kind::Other => {
                    self.inputs.other_spans += 1;
                    if !span.events.is_empty() {
                        if let Some(agent) = as_str(attrs[A_AGENT]).filter(|a| !a.is_empty()) {
                            let index = self.agent(agent);
                            let day = day_of(start)?;
                            self.agents[index].day_runs.entry(&day, || day, || [0; 5]);
                            self.events(index, span, day, fp)?;
                        }
                    }
                }
            },
        }
        Ok(())
    }

    /// The end of `add_spans`: the batch's spans on its process's row, then the open-run bound.
    pub(crate) fn end_batch(&mut self, batch: &Batch, process: &Process) -> R<()> {
        if batch.counted > 0 {
            let row = self.host_row(process);
            row[H_SPANS] += batch.counted;
            row[H_LLM_CALLS] += batch.llm_calls;
        }
        if self.pending.len() + self.dead.len() > self.sweep_at {
            self.bound_open_runs()?;
        }
        Ok(())
    }

    pub(crate) fn in_window(&self, start: i128) -> bool {
        if let Some(since) = self.since_ns {
            if start < since {
                return false;
            }
        }
        self.until_ns.is_none_or(|until| start < until)
    }

    /// `SpanAggregator._agent`: the index of the agent's tally (its canonical, bounded name).
    pub(crate) fn agent(&mut self, name: &str) -> usize {
        if let Some(&index) = self.agent_index.get(name) {
            return index;
        }
        let mut name = label(Some(name), UNKNOWN_AGENT, MAX_LABEL).into_owned();
        if !self.agent_index.contains_key(&name) && self.agents.len() >= MAX_AGENTS {
            name = OTHER_LABEL.to_string();
        }
        if let Some(&index) = self.agent_index.get(&name) {
            return index;
        }
        let index = self.agents.len();
        let tally = Tally {
            signals: if self.collect_signals { Some(Store::default()) } else { None },
            ..Tally::default()
        };
        self.agents.push(tally);
        self.agent_index.insert(name.clone(), index);
        self.agent_order.push(name);
        index
    }

    /// `ConsistencyCheck._closed_state` of the agent with this index.
    pub(crate) fn closed_state(index: usize, code: u8) -> u8 {
        code | ((index.min(AGENT_INDEX_UNKNOWN) as u8) << INDEX_SHIFT)
    }

    /// `SpanAggregator._run_span`.
    pub(crate) fn run_span(&mut self, span: &Span, attrs: &Attrs, start: i128, fp: u64, process: &Process) -> R<()> {
        let named = as_str(attrs[A_AGENT]).filter(|a| !a.is_empty());
        let agent_name = named.or_else(|| run_agent_name(span, attrs)).unwrap_or(UNKNOWN_AGENT);
        let as_of_day = match as_str(attrs[A_RUN_AS_OF]).filter(|t| !t.is_empty()) {
            Some(text) => self.helpers.day_ordinal(text)?,
            None => 0,
        };
        let index = self.agent(agent_name);
        let helpers = &self.helpers;
        let tally = &mut self.agents[index];
        let status_code = span.status.as_ref().map(|s| s.code);
        let outcome = match as_str(attrs[A_OUTCOME]).filter(|o| !o.is_empty()) {
            Some(outcome) => outcome,
            None => {
                tally.outcome_missing += 1;
                if status_code == Some(STATUS_ERROR) {
                    "error"
                } else {
                    "ok"
                }
            }
        };
        let mut key = label(Some(outcome), "(empty)", MAX_LABEL);
        if !tally.outcomes.contains(&*key) && tally.outcomes.len() >= 20 {
            key = Cow::Borrowed(OTHER_LABEL);
        }
        *tally.outcomes.entry(&*key, || key.to_string(), || 0) += 1;
        let day = day_of(start)?;
        let run_id = as_str(attrs[A_RUN_ID]).unwrap_or("");
        let mut skipped = false; // killed before it started: no children, not a run that ran
        if as_of_day != 0 && (outcome == "ok" || outcome == "error" || outcome == "killed") {
            let key = as_of_day - EPOCH_ORDINAL;
            let slot = match outcome {
                "ok" => DAY_OK,
                "error" => DAY_ERROR,
                _ => DAY_KILLED,
            };
            tally.asof_runs.entry(&key, || key, || [0; 3])[slot] += 1;
        }
        if outcome == "ok" || outcome == "error" {
            let row = tally.day_runs.entry(&day, || day, || [0; 5]);
            if outcome == "ok" {
                row[DAY_OK] += 1;
            } else {
                row[DAY_ERROR] += 1;
                let error_type = as_str(attrs[A_ERROR_TYPE]).unwrap_or("");
                let message = span.status.as_ref().map_or("", |s| &*s.message);
                push_top(
                    &mut tally.failing,
                    (
                        start,
                        span.trace_id.to_string(),
                        label(Some(run_id), "", MAX_LABEL).into_owned(),
                        label(Some(error_type), "", MAX_LABEL).into_owned(),
                        label(Some(message), "", 300).into_owned(),
                    ),
                );
            }
            let end = time_of(&span.end, helpers)?;
            if start > 0 && end >= start && end - start <= i64::MAX as i128 {
                let latency = end - start;
                tally.latencies.push(latency as i64);
                let slowest = &mut tally.slowest;
                if slowest.len() < TOP_K || latency >= slowest.iter().map(|s| s.0).min().unwrap() {
                    push_top(
                        slowest,
                        (
                            latency,
                            span.trace_id.to_string(),
                            label(Some(run_id), "", MAX_LABEL).into_owned(),
                            start,
                        ),
                    );
                }
            } else {
                tally.bad_durations += 1;
            }
            if start > 0 {
                if start > tally.last_start {
                    tally.last_start = start;
                }
                if tally.first_start == 0 || start < tally.first_start {
                    tally.first_start = start;
                }
            }
        } else {
            let row = tally.day_runs.entry(&day, || day, || [0; 5]);
            if outcome == "killed" {
                row[DAY_KILLED] += 1;
                let item = (start, label(as_str(attrs[A_KILL_REASON]), "", 300).into_owned());
                if tally.last_kill.as_ref().is_none_or(|kill| item > *kill) {
                    tally.last_kill = Some(item);
                }
                match as_str(attrs[A_STOPPED_BEFORE]).filter(|s| !s.is_empty()) {
                    // stopped mid-run: it ran, and its children are checked as any run's
                    Some(step) => count_key(&mut tally.killed_mid_run, &label(Some(step), "", MAX_LABEL)),
                    None => skipped = true,
                }
            } else if outcome == "budget_exceeded" {
                count_key(
                    &mut tally.budget_stops,
                    &label(as_str(attrs[A_BUDGET_NAME]), UNKNOWN_BUDGET, MAX_LABEL),
                );
            }
        }
        if !skipped && outcome != "stale_data" {
            for (slot, runs) in [(A_RUN_CALLS, RS_LLM_RUNS), (A_RUN_TOOLS, RS_TOOL_RUNS)] {
                // `SpanAggregator._run_steps`: a total that is not a count in range is as absent
                if let Some(number) = as_int(attrs[slot], helpers)?.filter(|n| (0..=MAX_TOKENS).contains(n)) {
                    let steps = &mut tally.run_steps;
                    steps[runs] += 1;
                    steps[runs + 1] += number;
                    steps[runs + 2] = steps[runs + 2].max(number);
                }
            }
        }
        if let Some(spill) = self.latency_spill.as_mut() {
            spill.added(&mut self.agents)?;
        }
        if !span.events.is_empty() {
            self.events(index, span, day, fp)?;
        }
        if attrs[A_DROPPED].is_some() || attrs[A_FAILED].is_some() {
            let dropped = count_attr(attrs[A_DROPPED], &self.helpers)?;
            let failed = count_attr(attrs[A_FAILED], &self.helpers)?;
            self.add_telemetry_losses(process, dropped, failed);
            let row = self.host_row(process);
            row[H_DROPPED] = row[H_DROPPED].max(dropped);
            row[H_FAILED] = row[H_FAILED].max(failed);
        }
        let cost = cost_nano_usd(crate::values::as_float(attrs[A_RUN_COST], &self.helpers)?);
        let row = self.host_row(process);
        if outcome == "ok" || outcome == "error" {
            row[H_RUNS] += 1;
            if outcome == "error" {
                row[H_ERRORS] += 1;
            }
        }
        row[H_COST_NANO_USD] += cost;
        let run_key = run_key(run_id, span);
        self.join_root(index, &span.trace_id, attrs, run_key, run_id, skipped)
    }

    /// `InputTally.host_row`: the per-host row of a process, created on first sight; past
    /// MAX_HOST_PROCESSES a new process is folded whole into ("(other)", "(other)", "(other)").
    pub(crate) fn host_row(&mut self, process: &Process) -> &mut [i128; 7] {
        let host = label(process.2, NO_HOST, MAX_LABEL);
        let shard = label(process.3, NO_SHARD, MAX_LABEL);
        let instance = label(process.1, NO_INSTANCE, MAX_LABEL);
        let table = &mut self.inputs.host_processes;
        let mut key = TripleRef(&host, &shard, &instance); // looked up without allocating (a batch of one span a line)
        if !table.contains(&key) && table.len() >= MAX_HOST_PROCESSES {
            key = TripleRef(OTHER_LABEL, OTHER_LABEL, OTHER_LABEL);
        }
        table.entry(&key, || (key.0.to_string(), key.1.to_string(), key.2.to_string()), || [0; 7])
    }

    /// `InputTally.add_telemetry_losses`: the largest value of each counter per process.
    pub(crate) fn add_telemetry_losses(&mut self, process: &Process, dropped: i128, failed: i128) {
        let service = label(process.0, NO_SERVICE, MAX_LABEL);
        let mut instance = label(process.1, NO_INSTANCE, MAX_LABEL);
        let table = &mut self.inputs.telemetry_losses;
        if !table.contains(&PairRef(&service, &instance)) && table.len() >= MAX_PROCESSES {
            instance = Cow::Borrowed(OTHER_LABEL);
        }
        let counts = table.entry(
            &PairRef(&service, &instance),
            || (service.to_string(), instance.to_string()),
            || [0, 0],
        );
        counts[0] = counts[0].max(dropped);
        counts[1] = counts[1].max(failed);
    }

    /// `SpanAggregator._llm_span`; `operation`: the LLM operation (`chat`, `embeddings`, ...).
    pub(crate) fn llm_span(&mut self, span: &Span, attrs: &Attrs, start: i128, simulated: bool, operation: &str) -> R<()> {
        let run_id = as_str(attrs[A_RUN_ID]).unwrap_or("");
        let run_key = run_key(run_id, span);
        // another instrumentation's child names no agent: its run's (agent_counts), maybe later
        let agent: Option<Cow<str>> = match as_str(attrs[A_AGENT]).filter(|a| !a.is_empty()) {
            Some(name) => Some(Cow::Borrowed(name)),
            None => self.run_agent(run_key)?.map(Cow::Owned),
        };
        // the first key present (`semconv.LLM_MODEL_KEYS`, `INPUT_TOKEN_KEYS`, ...)
        let model_value = attrs[A_RESPONSE_MODEL]
            .or(attrs[A_REQUEST_MODEL])
            .or(attrs[A_OPENINFERENCE_RESPONSE_MODEL])
            .or(attrs[A_OPENINFERENCE_MODEL])
            .or(attrs[A_OPENINFERENCE_REQUEST_MODEL])
            .or(attrs[A_EMBEDDING_MODEL]);
        let model = label(as_str(model_value), UNKNOWN_MODEL, MAX_LABEL);
        let h = &self.helpers;
        let in_value = attrs[A_TOKENS_IN].or(attrs[A_PROMPT_TOKENS]).or(attrs[A_OPENINFERENCE_PROMPT]);
        let out_value = attrs[A_TOKENS_OUT]
            .or(attrs[A_COMPLETION_TOKENS])
            .or(attrs[A_OPENINFERENCE_COMPLETION]);
        let cached_value = attrs[A_TOKENS_CACHED]
            .or(attrs[A_TRACELOOP_CACHE_READ])
            .or(attrs[A_OPENINFERENCE_CACHE_READ]);
        let mut tokens_in = as_int(in_value, h)?.unwrap_or(0);
        let mut tokens_out = as_int(out_value, h)?.unwrap_or(0);
        let mut cached = as_int(cached_value, h)?.unwrap_or(0);
        let bad = tokens_in < 0 || tokens_out < 0 || cached < 0 || cached > tokens_in || tokens_in.max(tokens_out) > MAX_TOKENS;
        if bad {
            if !(0..=MAX_TOKENS).contains(&tokens_in) {
                tokens_in = 0;
            }
            if !(0..=MAX_TOKENS).contains(&tokens_out) {
                tokens_out = 0;
            }
            cached = cached.max(0).min(tokens_in);
        }
        let error = span.status.as_ref().is_some_and(|s| s.code == STATUS_ERROR);
        let day = day_of(start)?;
        let (index, deferred) = match agent {
            Some(name) => {
                let index = self.agent(&name);
                self.count_llm(index, day, &model, simulated, operation, tokens_in, tokens_out, cached, error, bad)?;
                (index, None)
            }
            None => (
                NO_AGENT,
                Some(Deferred::Llm {
                    day,
                    model: model.to_string(),
                    simulated,
                    operation: operation.to_string(),
                    tokens_in,
                    tokens_out,
                    cached,
                    error,
                    bad,
                }),
            ),
        };
        let (cost, unpriced) = if simulated {
            (0.0, 0)
        } else {
            match self.helpers.price(&model)? {
                None => (0.0, 1),
                Some((input, cached_input, output)) => (
                    ((tokens_in - cached) as f64 * input + cached as f64 * cached_input + tokens_out as f64 * output) / 1_000_000.0,
                    0,
                ),
            }
        };
        let close = match self.pending.get_mut(run_key) {
            None => {
                // a run closed as unchecked needs no entry (`of_unchecked_run`)
                if deferred.is_none() && self.of_unchecked_run(run_key)? {
                    return Ok(());
                }
                let mut entry = new_entry(index, &span.trace_id, run_id, None);
                (entry.calls, entry.tokens_in, entry.tokens_out, entry.cached) = (1, tokens_in, tokens_out, cached);
                (entry.cost, entry.unpriced, entry.deferred) = (cost, unpriced, deferred.map(|record| vec![record]));
                self.open(run_key, entry);
                false
            }
            Some(entry) => {
                if let Some(record) = deferred {
                    entry.deferred.get_or_insert_with(Vec::new).push(record);
                }
                entry.calls += 1;
                entry.tokens_in += tokens_in;
                entry.tokens_out += tokens_out;
                entry.cached += cached;
                entry.cost += cost;
                entry.unpriced += unpriced;
                entry.complete()
            }
        };
        if close {
            self.close(run_key)?;
        }
        Ok(())
    }
}

/// `span_aggregator._count_key`: one more for `key` (labelled already) in a bounded table of counts.
pub(crate) fn count_key(table: &mut crate::tables::Ordered<String, i64>, key: &str) {
    let key = if !table.contains(key) && table.len() >= MAX_DISTINCT {
        OTHER_LABEL
    } else {
        key
    };
    *table.entry(key, || key.to_string(), || 0) += 1;
}

/// `start // NS_PER_DAY`; a day beyond 64 bits (a hostile time) declines the part.
pub(crate) fn day_of(start: i128) -> R<i64> {
    match i64::try_from(start.div_euclid(NS_PER_DAY)) {
        Ok(day) => Ok(day),
        Err(_) => decline("a day beyond 64 bits"),
    }
}

/// The key a run is joined by: its `alphatrace.run.id`, else the trace id, else the span id.
pub(crate) fn run_key<'s>(run_id: &'s str, span: &'s Span) -> &'s str {
    if !run_id.is_empty() {
        run_id
    } else if !span.trace_id.is_empty() {
        &span.trace_id
    } else {
        &span.span_id
    }
}

/// `span_aggregator.cost_nano_usd`: a run's cost in whole nano-dollars, 0 when not a finite amount
/// in [0, MAX_RUN_COST_USD] (the same floating-point steps as Python's, so the same integer).
fn cost_nano_usd(cost: Option<f64>) -> i128 {
    match cost {
        Some(usd) if (0.0..=MAX_RUN_COST_USD).contains(&usd) => (usd * 1e9 + 0.5).floor() as i128,
        _ => 0,
    }
}
