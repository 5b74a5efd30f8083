//! The mergeable tallies of `meta_supervisor/tally/aggregates.py` (per agent, per input), the signal store
//! of `signal_store.py` and the open runs of `tally/consistency.py`, as the core builds them for one part.

use crate::names::{Keyed, Names};
use crate::part::{MAX_DISTINCT, OTHER_LABEL, TOP_K};
use crate::tables::Ordered;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use rustc_hash::FxHashMap;

const COST_ABS_TOLERANCE: f64 = 1e-9;
const COST_REL_TOLERANCE: f64 = 1e-6;

// --- tallies (aggregates.py) -------------------------------------------------------------------------

/// `push_top`: keep the k largest items.
pub fn push_top<T: Ord>(top: &mut Vec<T>, item: T) {
    if top.len() < TOP_K {
        top.push(item);
        return;
    }
    let (at, smallest) = top.iter().enumerate().min_by(|a, b| a.1.cmp(b.1)).unwrap();
    if item > *smallest {
        top[at] = item;
    }
}

/// `note_mismatch`: the k mismatched runs with the smallest trace ids, sorted; a run noted again
/// replaces its detail.
pub fn note_mismatch(examples: &mut Vec<(String, String, String)>, trace_id: &str, run_id: &str, detail: String) {
    for item in examples.iter_mut() {
        if item.0 == trace_id {
            *item = (trace_id.to_string(), run_id.to_string(), detail);
            return;
        }
    }
    if examples.len() >= TOP_K && trace_id > examples.last().unwrap().0.as_str() {
        return;
    }
    examples.push((trace_id.to_string(), run_id.to_string(), detail));
    examples.sort();
    examples.truncate(TOP_K);
}

/// One kept signal (`signal_store.ROW`).
pub struct Row {
    pub key: u64,
    pub time_ns: u64,
    pub fp: u64,
    pub position: u32,
    pub prob_up: f64,
    pub score: f64,
    pub horizon: i64,
    pub flags: u8,
    pub ids: [u8; 24],
}

#[derive(Default)]
pub struct Store {
    pub symbols: Vec<String>,
    /// the store's symbol id of each symbol by its id in the part's `Names`
    symbol_ids: FxHashMap<u32, u64>,
    index: FxHashMap<u64, usize>,
    pub rows: Vec<Row>,
    pub odd_ids: std::collections::BTreeMap<usize, (String, String)>,
    pub total: i64,
    pub unusable: i64,
}

impl Store {
    /// The store's id of `symbol` (`names`' id `name`): a new one while the store has fewer than
    /// `MAX_DISTINCT` symbols, then that of `OTHER_LABEL`.
    pub(crate) fn symbol_id(&mut self, name: u32, symbol: &str, names: &mut Names) -> u64 {
        if let Some(&id) = self.symbol_ids.get(&name) {
            return id;
        }
        let (name, symbol) = if self.symbols.len() >= MAX_DISTINCT {
            (names.id(OTHER_LABEL), OTHER_LABEL)
        } else {
            (name, symbol)
        };
        if let Some(&id) = self.symbol_ids.get(&name) {
            return id;
        }
        let id = self.symbols.len() as u64;
        self.symbol_ids.insert(name, id);
        self.symbols.push(symbol.to_string());
        id
    }

    pub(crate) fn put(&mut self, row: Row, odd: Option<(String, String)>) {
        let slot = match self.index.get(&row.key) {
            None => {
                let slot = self.rows.len();
                self.index.insert(row.key, slot);
                self.rows.push(row);
                slot
            }
            Some(&slot) => {
                let kept = &self.rows[slot];
                if (row.time_ns, row.fp, row.position) <= (kept.time_ns, kept.fp, kept.position) {
                    return;
                }
                self.rows[slot] = row;
                slot
            }
        };
        match odd {
            Some(pair) => {
                self.odd_ids.insert(slot, pair);
            }
            None => {
                self.odd_ids.remove(&slot);
            }
        }
    }
}

/// One tool's calls (`aggregates.T_*`, `tool_tallies.py`): counts, latency sum, minimum and maximum of
/// the timed calls, and their histogram (bucket -> calls, sorted).
#[derive(Default)]
pub struct ToolTally {
    pub calls: i64,
    pub errors: i64,
    pub timed: i64,
    pub sum: i128,
    pub min: i128,
    pub max: i128,
    pub histogram: std::collections::BTreeMap<u32, i64>,
}

#[derive(Default)]
pub struct Tally {
    pub outcomes: Ordered<String, i64>,
    pub outcome_missing: i64,
    pub latencies: Vec<i64>,
    /// `(byte offset, count)` of this agent's latencies spilled as sorted runs (`latency_spill`)
    pub latency_runs: Vec<(u64, u64)>,
    pub bad_durations: i64,
    pub first_start: i128,
    pub last_start: i128,
    pub day_runs: Ordered<i64, [i64; 5]>,
    pub asof_runs: Ordered<i64, [i64; 3]>,
    pub day_models: Ordered<(i64, String, bool), [i128; 5]>,
    pub bad_token_values: i64,
    pub llm_operations: Ordered<String, i64>,
    pub tools: Ordered<String, ToolTally>,
    /// `aggregates.AgentTally.run_steps` (`bounds.RS_*`): LLM and tool calls per run that ran
    pub run_steps: [i128; 6],
    pub killed_mid_run: Ordered<String, i64>,
    pub budget_stops: Ordered<String, i64>,
    /// (symbol, direction) -> signals, keyed by `names::pair_key` of the part's `SignalNames`
    pub alpha: Keyed<(String, String), i64>,
    pub invalid_reasons: Ordered<String, i64>,
    pub slowest: Vec<(i128, String, String, i128)>,
    pub failing: Vec<(i128, String, String, String, String)>,
    pub last_kill: Option<(i128, String)>,
    pub kill_switch_errors: i64,
    pub consistency: [i64; 4],
    pub mismatches: Vec<(String, String, String)>,
    pub signals: Option<Store>,
}

/// The root's totals (`consistency._root_totals`): calls, then input, output, cached input tokens,
/// cost, unpriced calls and tool calls, each None when absent or unreadable.
#[derive(Clone, Copy)]
pub struct Root {
    pub calls: i128,
    pub tokens_in: Option<i128>,
    pub tokens_out: Option<i128>,
    pub cached: Option<i128>,
    pub cost: Option<f64>,
    pub unpriced: Option<i128>,
    pub tools: Option<i128>,
}

impl Root {
    /// `consistency.is_complete`: `calls` LLM and `tools` tool spans are every one the root announces.
    pub(crate) fn complete_with(&self, calls: i128, tools: i128) -> bool {
        calls >= self.calls && self.tools.is_none_or(|announced| tools >= announced)
    }
}

/// An open run (`aggregates.P_*`), with its insertion number (the pending dict's order).
/// `agent_counts`: a call that names no agent, kept until its run's root is read.
pub enum Deferred {
    Llm {
        day: i64,
        model: String,
        simulated: bool,
        operation: String,
        tokens_in: i128,
        tokens_out: i128,
        cached: i128,
        error: bool,
        bad: bool,
    },
    Tool {
        name: String,
        error: bool,
        start: i128,
        end: i128,
    },
}

impl Deferred {
    /// The record as `agent_counts` writes it (`DEFERRED_LLM` 0, `DEFERRED_TOOL` 1).
    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self {
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
            } => PyTuple::new(
                py,
                [
                    0i64.into_pyobject(py)?.into_any(),
                    day.into_pyobject(py)?.into_any(),
                    model.as_str().into_pyobject(py)?.into_any(),
                    simulated.into_pyobject(py)?.to_owned().into_any(),
                    operation.as_str().into_pyobject(py)?.into_any(),
                    tokens_in.into_pyobject(py)?.into_any(),
                    tokens_out.into_pyobject(py)?.into_any(),
                    cached.into_pyobject(py)?.into_any(),
                    error.into_pyobject(py)?.to_owned().into_any(),
                    bad.into_pyobject(py)?.to_owned().into_any(),
                ],
            ),
            Deferred::Tool { name, error, start, end } => PyTuple::new(
                py,
                [
                    1i64.into_pyobject(py)?.into_any(),
                    name.as_str().into_pyobject(py)?.into_any(),
                    error.into_pyobject(py)?.to_owned().into_any(),
                    start.into_pyobject(py)?.into_any(),
                    end.into_pyobject(py)?.into_any(),
                ],
            ),
        }
    }
}

pub struct Entry {
    pub seq: u64,
    pub agent: usize,
    pub trace_id: String,
    pub run_id: String,
    pub root: Option<Root>,
    pub calls: i128,
    pub tokens_in: i128,
    pub tokens_out: i128,
    pub cached: i128,
    pub cost: f64,
    pub unpriced: i128,
    pub deferred: Option<Vec<Deferred>>,
    pub tools: i128,
}

impl Entry {
    /// `mismatch_detail`'s first test: the root's totals equal the sums over the LLM spans.
    pub(crate) fn consistent(&self) -> bool {
        let root = self.root.as_ref().unwrap();
        root.calls == self.calls
            && root.tools.is_none_or(|v| v == self.tools)
            && root.tokens_in.is_none_or(|v| v == self.tokens_in)
            && root.tokens_out.is_none_or(|v| v == self.tokens_out)
            && root.cached.is_none_or(|v| v == self.cached)
            && root.unpriced.is_none_or(|v| v == self.unpriced)
            && root
                .cost
                .is_none_or(|c| (c - self.cost).abs() <= COST_ABS_TOLERANCE + COST_REL_TOLERANCE * self.cost.abs())
    }

    /// `consistency.is_complete`: every LLM and tool span the root announces has arrived.
    pub(crate) fn complete(&self) -> bool {
        self.root.is_some_and(|root| root.complete_with(self.calls, self.tools))
    }

    pub fn to_python<'py>(&self, py: Python<'py>, agent: &str) -> PyResult<Bound<'py, PyList>> {
        let root = match &self.root {
            None => py.None().into_bound(py),
            Some(r) => PyTuple::new(
                py,
                [
                    r.calls.into_pyobject(py)?.into_any(),
                    r.tokens_in.into_pyobject(py)?.into_any(),
                    r.tokens_out.into_pyobject(py)?.into_any(),
                    r.cached.into_pyobject(py)?.into_any(),
                    r.cost.into_pyobject(py)?.into_any(),
                    r.unpriced.into_pyobject(py)?.into_any(),
                    r.tools.into_pyobject(py)?.into_any(),
                ],
            )?
            .into_any(),
        };
        PyList::new(
            py,
            [
                agent.into_pyobject(py)?.into_any(),
                self.trace_id.as_str().into_pyobject(py)?.into_any(),
                self.run_id.as_str().into_pyobject(py)?.into_any(),
                root,
                self.calls.into_pyobject(py)?.into_any(),
                self.tokens_in.into_pyobject(py)?.into_any(),
                self.tokens_out.into_pyobject(py)?.into_any(),
                self.cached.into_pyobject(py)?.into_any(),
                self.cost.into_pyobject(py)?.into_any(),
                self.unpriced.into_pyobject(py)?.into_any(),
                match &self.deferred {
                    None => py.None().into_bound(py),
                    Some(records) => PyList::new(py, records.iter().map(|r| r.to_python(py)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
                },
                self.tools.into_pyobject(py)?.into_any(),
            ],
        )
    }
}

#[derive(Default)]
pub struct Inputs {
    pub spans: i64,
    pub duplicate_spans: i64,
    pub outside_window: i64,
    pub other_spans: i64,
    pub supervisor_spans: i64,
    pub evaluation_spans: i64,
    pub tail_sampled_spans: i64,
    pub duplicate_run_roots: i64,
    pub evicted_roots: i64,
    pub evicted_llm_runs: i64,
    pub evicted_llm_spans: i128,
    pub telemetry_losses: Ordered<(String, String), [i128; 2]>,
    /// `InputTally.host_processes`: (host.name, alphatrace.shard, service.instance.id) -> the H_* columns
    pub host_processes: Ordered<(String, String, String), [i128; 7]>,
}

/// (service.name, service.instance.id, host.name, alphatrace.shard) of a resource
pub(crate) type Process<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>);
