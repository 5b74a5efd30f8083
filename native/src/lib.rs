//! alphatrace_native: the compiled reader of one part of a collector JSON-lines trace file.
//!
//! `read_part` reads bytes `[start, stop)` the way `meta_supervisor.reading.shapes.read_json_lines`
//! does and aggregates the spans the way `meta_supervisor.tally.span_aggregator.SpanAggregator` does
//! (`part.rs`), and returns plain Python data that `meta_supervisor/build/native_reader.py` turns into the
//! same `PartResult` as `parallel.read_part_python`. On input it does not read exactly as
//! Python does, it returns the reason as a string instead, and the Python reader reads the part.
//! `zstd_lines::read_zstd_part` feeds the same line loop from a whole-file zstd stream.

mod content;
mod events;
mod join;
mod json_check;
mod kinds;
mod latency_spill;
mod legacy;
mod names;
mod part;
mod scan;
mod scan_spans;
mod schema;
mod spill;
mod stream;
mod table_loops;
mod tables;
mod tallies;
mod values;
mod zstd_frames;
mod zstd_lines;
mod zstd_ring;

use part::{Aggregator, Stop, R};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use table_loops::writable;
use tallies::Tally;
use values::Helpers;

const BLOCK_SIZE: usize = 2 << 20;

/// One line as a request. The whole line's UTF-8 is checked at once (fast), so the parser need not
/// check each string again; invalid UTF-8 is an error like any other.
fn decode(line: &[u8]) -> serde_json::Result<schema::Request<'_>> {
    match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(line), // the parser's own error, with its position and kind
    }
}

/// `shapes.without_bom`: a line's JSON starts after a UTF-8 byte order mark.
fn without_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
}

/// `bytes.strip()` of Python: ASCII whitespace.
fn is_blank(data: &[u8]) -> bool {
    data.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

fn add_request(agg: &mut Aggregator, request: &schema::Request) -> R<()> {
    for resource_spans in &request.resource_spans {
        let attributes = resource_spans.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let (simulated, process) = agg.resource_facts(attributes)?;
        // `is_tail_sampled`: a tail-sampling collector marked the resource (alphatrace.sampling)
        if attributes.iter().any(|kv| &*kv.key == "alphatrace.sampling") {
            agg.inputs.tail_sampled_spans += resource_spans.scope_spans.iter().map(|s| s.spans.len() as i64).sum::<i64>();
        }
        for scope_spans in &resource_spans.scope_spans {
            agg.add_spans(&scope_spans.spans, simulated, &process)?;
        }
    }
    Ok(())
}

/// One whole (newline-terminated) line: its spans added as they are parsed (`scan_spans.rs`, else `stream.rs`); a line
/// that is not valid UTF-8 is parsed whole first, as the last line of a part is.
fn add_line(agg: &mut Aggregator, line: &[u8]) -> R<()> {
    let parsed = match std::str::from_utf8(line) {
        Ok(text) => scan_spans::add_line(agg, text),
        Err(_) => match decode(line) {
            Ok(request) => add_request(agg, &request)
                .map(|()| request.resource_spans.len())
                .map_err(stream::LineError::Stop),
            Err(err) => Err(stream::LineError::Json(err)),
        },
    };
    match parsed {
        Ok(0) if line.len() > 2 => part::decline("a line without resourceSpans"),
        Ok(_) => Ok(()),
        Err(stream::LineError::Stop(stop)) => Err(stop),
        Err(stream::LineError::Json(_)) if is_blank(line) => Ok(()),
        Err(stream::LineError::Json(err)) => part::decline(&format!("a line the strict decoder refuses: {err}")),
    }
}

#[derive(Default)]
struct Lines {
    consumed: u64,
    records: u64,
    partial_tail: u64,
}

/// `read_json_lines`: whole lines, then an unterminated rest that is a complete request on its own.
/// A line longer than `max_line` (Python's line cap, a bad line there) declines the part as soon as
/// it is seen, so the buffer never holds more than `max_line + 1` bytes of a line.
fn read_lines(agg: &mut Aggregator, file: &mut dyn Read, limit: Option<u64>, progress: Option<&Bound<PyAny>>, max_line: usize) -> R<Lines> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut filled = 0usize;
    let mut scanned = 0usize; // how far the line at the buffer's start was searched for its end
    let mut lines = Lines::default();
    let mut remaining = limit;
    loop {
        if filled == buf.len() {
            // a line longer than the buffer: grown by a quarter (at least a block), not doubled, so
            // that a batch of thousands of spans on one line costs little more than its own length
            let grown = buf.len() + (buf.len() / 4).max(BLOCK_SIZE);
            buf.resize(grown.min(max_line + 1), 0);
        }
        let mut want = buf.len() - filled;
        if let Some(left) = remaining {
            want = want.min(left as usize);
        }
        let got = if want > 0 {
            file.read(&mut buf[filled..filled + want]).map_err(|e| Stop::Python(e.into()))?
        } else {
            0
        };
        if got == 0 {
            break;
        }
        if let Some(left) = remaining.as_mut() {
            *left -= got as u64;
        }
        if let Some(callback) = progress {
            callback.call1((got,))?;
        }
        filled += got;
        let mut pos = 0usize;
        while let Some(offset) = memchr::memchr(b'\n', &buf[scanned..filled]) {
            let end = scanned + offset;
            whole_line(agg, &buf[pos..end], max_line, &mut lines)?;
            pos = end + 1;
            scanned = pos;
        }
        if filled - pos > max_line {
            return part::decline("a line longer than the line cap");
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        scanned = filled;
    }
    last_line(agg, &buf[..filled], &mut lines)?;
    Ok(lines)
}

/// A whole line (its newline not included) of `read_json_lines`: counted, and read unless empty.
/// One longer than `max_line` declines the part.
fn whole_line(agg: &mut Aggregator, line: &[u8], max_line: usize, lines: &mut Lines) -> R<()> {
    lines.records += 1;
    if line.len() > max_line {
        return part::decline("a line longer than the line cap");
    }
    if !line.is_empty() {
        add_line(agg, without_bom(line))?;
    }
    lines.consumed += line.len() as u64 + 1;
    Ok(())
}

/// The unterminated rest after the last newline: a complete request of its own, blank, or a
/// partial tail (JSON cut short); anything else declines the part.
fn last_line(agg: &mut Aggregator, rest: &[u8], lines: &mut Lines) -> R<()> {
    if rest.is_empty() {
        return Ok(());
    }
    let tail = without_bom(rest);
    match decode(tail) {
        Ok(request) => {
            lines.records += 1;
            lines.consumed += rest.len() as u64;
            add_request(agg, &request)?;
        }
        Err(_) if is_blank(tail) => lines.consumed += rest.len() as u64,
        Err(err) if err.is_eof() => lines.partial_tail = rest.len() as u64,
        Err(err) => return part::decline(&format!("an unterminated last line the strict decoder refuses: {err}")),
    }
    Ok(())
}

/// A tool's histogram in `tool_tallies.pack_histogram`'s narrow form, as bytes: its buckets (sorted,
/// each once) then their calls, 32-bit unsigned in the machine's order; None when it is empty or a
/// count does not fit (then the (bucket, calls) pairs). Python packs it with one copy, not a
/// tuple and two ints a bucket checked and packed again (1,000 agents: ~3,000 histograms a part).
fn narrow_histogram(histogram: &std::collections::BTreeMap<u32, i64>) -> Option<Vec<u8>> {
    if histogram.is_empty() || histogram.values().any(|&calls| !(0..=u32::MAX as i64).contains(&calls)) {
        return None;
    }
    let mut packed = Vec::with_capacity(8 * histogram.len());
    for bucket in histogram.keys() {
        packed.extend_from_slice(&bucket.to_ne_bytes());
    }
    for &calls in histogram.values() {
        packed.extend_from_slice(&(calls as u32).to_ne_bytes());
    }
    Some(packed)
}

fn tally_state<'py>(py: Python<'py>, tally: &Tally) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let outcomes = PyDict::new(py);
    for (key, count) in &tally.outcomes.items {
        outcomes.set_item(key, count)?;
    }
    d.set_item("outcomes", outcomes)?;
    d.set_item("outcome_missing", tally.outcome_missing)?;
    d.set_item("bad_durations", tally.bad_durations)?;
    d.set_item("first_start_ns", tally.first_start)?;
    d.set_item("last_start_ns", tally.last_start)?;
    let rows = PyList::empty(py);
    for (day, counts) in &tally.day_runs.items {
        rows.append((day, counts[0], counts[1], counts[2], counts[3], counts[4]))?;
    }
    d.set_item("day_runs", rows)?;
    let rows = PyList::empty(py);
    for (day, counts) in &tally.asof_runs.items {
        rows.append((day, counts[0], counts[1], counts[2]))?;
    }
    d.set_item("asof_runs", rows)?;
    let rows = PyList::empty(py);
    for ((day, model, simulated), c) in &tally.day_models.items {
        rows.append((day, model, simulated, c[0], c[1], c[2], c[3], c[4]))?;
    }
    d.set_item("day_models", rows)?;
    d.set_item("bad_token_values", tally.bad_token_values)?;
    let operations = PyDict::new(py);
    for (operation, count) in &tally.llm_operations.items {
        operations.set_item(operation, count)?;
    }
    d.set_item("llm_operations", operations)?;
    let rows = PyList::empty(py);
    for (name, t) in &tally.tools.items {
        let histogram = match narrow_histogram(&t.histogram) {
            Some(packed) => PyBytes::new(py, &packed).into_any(),
            None => t
                .histogram
                .iter()
                .map(|(b, c)| (*b, *c))
                .collect::<Vec<(u32, i64)>>()
                .into_pyobject(py)?
                .into_any(),
        };
        rows.append((name, t.calls, t.errors, t.timed, t.sum, t.min, t.max, histogram))?;
    }
    d.set_item("tools", rows)?;
    d.set_item("run_steps", tally.run_steps.to_vec())?;
    for (key, table) in [("killed_mid_run", &tally.killed_mid_run), ("budget_stops", &tally.budget_stops)] {
        let counts = PyDict::new(py);
        for (name, count) in &table.items {
            counts.set_item(name, count)?;
        }
        d.set_item(key, counts)?;
    }
    let rows = PyList::empty(py);
    for ((symbol, direction), count) in &tally.alpha.items {
        rows.append((symbol, direction, count))?;
    }
    d.set_item("alpha", rows)?;
    let reasons = PyDict::new(py);
    for (key, count) in &tally.invalid_reasons.items {
        reasons.set_item(key, count)?;
    }
    d.set_item("invalid_reasons", reasons)?;
    d.set_item(
        "slowest",
        tally
            .slowest
            .iter()
            .map(|t| {
                PyList::new(
                    py,
                    [
                        t.0.into_pyobject(py)?.into_any(),
                        t.1.as_str().into_pyobject(py)?.into_any(),
                        t.2.as_str().into_pyobject(py)?.into_any(),
                        t.3.into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .collect::<PyResult<Vec<_>>>()?,
    )?;
    d.set_item(
        "failing",
        tally
            .failing
            .iter()
            .map(|t| (t.0, &t.1, &t.2, &t.3, &t.4).into_pyobject(py))
            .collect::<PyResult<Vec<_>>>()?,
    )?;
    d.set_item("last_kill", tally.last_kill.as_ref().map(|(start, reason)| (start, reason)))?;
    d.set_item("kill_switch_errors", tally.kill_switch_errors)?;
    d.set_item("consistency", tally.consistency.to_vec())?;
    d.set_item("mismatches", tally.mismatches.iter().map(|(a, b, c)| (a, b, c)).collect::<Vec<_>>())?;
    Ok(d)
}

fn signal_state<'py>(py: Python<'py>, store: &tallies::Store) -> PyResult<Bound<'py, PyTuple>> {
    let d = PyDict::new(py);
    d.set_item("count", store.rows.len())?;
    d.set_item("symbols", &store.symbols)?;
    d.set_item("total", store.total)?;
    d.set_item("unusable", store.unusable)?;
    d.set_item(
        "odd_ids",
        store.odd_ids.iter().map(|(slot, (t, s))| (slot, t, s)).collect::<Vec<_>>(),
    )?;
    let mut blob = Vec::with_capacity(store.rows.len() * 77);
    for row in &store.rows {
        blob.extend_from_slice(&row.key.to_le_bytes());
        blob.extend_from_slice(&row.time_ns.to_le_bytes());
        blob.extend_from_slice(&row.fp.to_le_bytes());
        blob.extend_from_slice(&row.position.to_le_bytes());
        blob.extend_from_slice(&row.prob_up.to_le_bytes());
        blob.extend_from_slice(&row.score.to_le_bytes());
        blob.extend_from_slice(&row.horizon.to_le_bytes());
        blob.push(row.flags);
        blob.extend_from_slice(&row.ids);
    }
    PyTuple::new(py, [d.into_any(), PyBytes::new(py, &blob).into_any()])
}

/// `count` 64-bit values as little-endian bytes (an array('Q') or array('q') on the Python side),
/// written straight into the bytes object.
fn words<'py>(py: Python<'py>, count: usize, values: impl Iterator<Item = u64>) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, count * 8, |target| {
        for (chunk, value) in target.chunks_exact_mut(8).zip(values) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    })
}

/// The part as Python data; the big tables are handed over one at a time, each freed here as soon
/// as its copy exists (peak memory).
pub(crate) fn result<'py>(
    py: Python<'py>,
    mut agg: Aggregator,
    read: &Lines,
    in_place: bool,
    handoff: Option<(i32, i32, i32)>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let mut seen = std::mem::replace(&mut agg.seen, tables::FpSet::new(0));
    let mut closed = std::mem::replace(&mut agg.closed, tables::FpMap::new(0));
    out.set_item("span_count", seen.len())?;
    out.set_item("closed_count", closed.len())?;
    if let (false, Some(fds)) = (in_place, handoff) {
        // a part's own tables with tiers: everything through the hand-over files (`part_result.Handoff`)
        let (spans, runs) = spill::hand_over(&mut seen, &mut closed, fds)?;
        drop((seen, closed));
        out.set_item("span_count", spans)?;
        out.set_item("closed_count", runs)?;
        out.set_item("handed_over", true)?;
    } else if !in_place {
        out.set_item("span_fps", words(py, seen.len(), seen.values())?)?;
        drop(seen);
        out.set_item("closed_keys", words(py, closed.len(), closed.items().map(|(fp, _)| fp))?)?;
        let states: Vec<u8> = closed.items().map(|(_, state)| state).collect();
        drop(closed);
        out.set_item("closed_states", PyBytes::new(py, &states))?;
    }
    if let Some(spill) = &agg.latency_spill {
        out.set_item("latency_end", spill.at)?;
    }
    out.set_item("consumed", read.consumed)?;
    out.set_item("records", read.records)?;
    out.set_item("partial_tail", read.partial_tail)?;
    let inputs = PyDict::new(py);
    let i = &agg.inputs;
    for (name, value) in [
        ("spans", i.spans),
        ("duplicate_spans", i.duplicate_spans),
        ("conflicting_spans", 0),
        ("bad_lines", 0),
        ("bad_spans", 0),
        ("spans_without_id", 0),
        ("outside_window", i.outside_window),
        ("other_spans", i.other_spans),
        ("supervisor_spans", i.supervisor_spans),
        ("evaluation_spans", i.evaluation_spans),
        ("tail_sampled_spans", i.tail_sampled_spans),
        ("duplicate_run_roots", i.duplicate_run_roots),
        ("evicted_roots", i.evicted_roots),
        ("evicted_llm_runs", i.evicted_llm_runs),
    ] {
        inputs.set_item(name, value)?;
    }
    inputs.set_item("evicted_llm_spans", i.evicted_llm_spans)?;
    inputs.set_item("bad_line_examples", PyList::empty(py))?;
    inputs.set_item("conflicting_examples", PyList::empty(py))?;
    inputs.set_item(
        "telemetry_losses",
        i.telemetry_losses
            .items
            .iter()
            .map(|((s, n), c)| (s, n, c[0], c[1]))
            .collect::<Vec<_>>(),
    )?;
    let mut hosts: Vec<_> = i.host_processes.items.iter().collect();
    hosts.sort(); // `InputTally.to_state`: by key
    let hosts: Vec<_> = hosts
        .into_iter()
        .map(|((h, s, n), c)| (h, s, n, c[0], c[1], c[2], c[3], c[4], c[5], c[6]))
        .collect();
    inputs.set_item("host_processes", hosts)?;
    out.set_item("inputs", inputs)?;
    let mut pending: Vec<_> = agg.pending.iter().collect();
    pending.sort_by_key(|(_, entry)| entry.seq);
    let rows = PyList::empty(py);
    for (key, entry) in pending {
        rows.append((key, entry.to_python(py, agg.entry_agent(entry))?))?;
    }
    out.set_item("pending", rows)?;
    let mut dead: Vec<u64> = agg.dead.iter().copied().collect();
    dead.sort_unstable(); // `SpanAggregator._dead` of the part (its order does not matter: sorted for a stable output)
    out.set_item("dead", dead)?;
    let names = std::mem::take(&mut agg.agent_order);
    let tallies = std::mem::take(&mut agg.agents);
    let rest: Vec<(String, Tally)> = names.into_iter().zip(tallies).collect();
    out.set_item("agents", Bound::new(py, AgentStates { rest: rest.into_iter() })?)?;
    Ok(out)
}

/// A part's agents, in order, as `(name, tally state, latencies, signal state)`: an iterator that
/// makes each agent's Python data only when it is asked for and frees the agent's tally then, so a
/// part of 1,000 agents is never whole both as Rust tallies and as Python data (peak memory).
#[pyclass(module = "alphatrace_native")]
struct AgentStates {
    rest: std::vec::IntoIter<(String, Tally)>,
}

#[pymethods]
impl AgentStates {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(mut slf: PyRefMut<'py, Self>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let py = slf.py();
        let Some((name, tally)) = slf.rest.next() else {
            return Ok(None);
        };
        let latencies = words(py, tally.latencies.len(), tally.latencies.iter().map(|&v| v as u64))?;
        let signals = match &tally.signals {
            Some(store) => signal_state(py, store)?.into_any(),
            None => py.None().into_bound(py),
        };
        let state = tally_state(py, &tally)?;
        if !tally.latency_runs.is_empty() {
            state.set_item("latency_runs", &tally.latency_runs)?;
        }
        drop(tally);
        Ok(Some(PyTuple::new(
            py,
            [name.into_pyobject(py)?.into_any(), state.into_any(), latencies.into_any(), signals],
        )?))
    }

    fn __len__(&self) -> usize {
        self.rest.len()
    }

    /// The agents still to come, in order, before any is made: each one's name and the sizes of its
    /// bounded tables as `packed_tallies.table_sizes` gives them for its tally (outcomes, day_models,
    /// tools, killed_mid_run, budget_stops, alpha, invalid_reasons, then its signal store's
    /// symbols). A forked worker sends them ahead of its tallies (`streamed_tallies`).
    fn upcoming(&self) -> Vec<(String, [usize; 8])> {
        self.rest
            .as_slice()
            .iter()
            .map(|(name, t)| {
                let symbols = t.signals.as_ref().map_or(0, |store| store.symbols.len());
                let sizes = [
                    t.outcomes.len(),
                    t.day_models.len(),
                    t.tools.len(),
                    t.killed_mid_run.len(),
                    t.budget_stops.len(),
                    t.alpha.len(),
                    t.invalid_reasons.len(),
                    symbols,
                ];
                (name.clone(), sizes)
            })
            .collect()
    }
}

/// Read `[start, stop)` of `path` (to the end when `stop` is None). Returns a dict of the part's
/// tallies, or a string: why the part was declined (read it with the Python reader).
///
/// `tables`, when given, are the slots of an empty `FingerprintSet` and the keys and states of an
/// empty `FingerprintMap` (the build's own, sized for the whole file): they are filled in place
/// instead of returned. After a decline they hold whatever was read before it. Otherwise the part's
/// own tables are sized for `expected_spans` (`inputs.expected_spans`; without it they grow).
/// `max_line` is the Python reader's line cap (`shapes.max_line_bytes`); `max_open_runs` the
/// open-run bound (`open_runs.max_open_runs`).
#[pyfunction]
#[pyo3(signature = (path, start, stop, since_ns, until_ns, collect_signals, helpers, progress=None, tables=None, expected_spans=None, *, max_line, max_open_runs, spill=None, latencies=None))]
#[allow(clippy::too_many_arguments)]
fn read_part<'py>(
    py: Python<'py>,
    path: &str,
    start: u64,
    stop: Option<u64>,
    since_ns: Option<i128>,
    until_ns: Option<i128>,
    collect_signals: bool,
    helpers: Bound<'py, PyAny>,
    progress: Option<Bound<'py, PyAny>>,
    tables: Option<(PyBuffer<u64>, PyBuffer<u64>, PyBuffer<u8>)>,
    expected_spans: Option<usize>,
    max_line: usize,
    max_open_runs: usize,
    spill: Option<Bound<'py, PyAny>>,
    latencies: Option<(i32, u64, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut spill = spill::SpillArg::parse(spill.as_ref(), tables.is_some())?;
    let handoff = spill.handoff();
    let own_tables;
    let chosen = match &tables {
        Some((seen, keys, states)) => (
            tables::FpSet::shared(writable(py, seen)?),
            tables::FpMap::shared(writable(py, keys)?, writable(py, states)?),
        ),
        None => {
            let expected = expected_spans.unwrap_or(0); // the tables grow from their minimum size
            let expected = spill.table_spans(expected);
            own_tables = (tables::FpSet::new(expected), tables::FpMap::new(expected / 2));
            own_tables
        }
    };
    let chosen = spill.attach(chosen, expected_spans.unwrap_or(0));
    let mut agg = Aggregator::new(Helpers::new(helpers), since_ns, until_ns, collect_signals, chosen, max_open_runs);
    agg.latency_spill = latencies.map(latency_spill::LatencySpill::new).transpose()?;
    match read_lines(
        &mut agg,
        &mut file,
        stop.map(|s| s.saturating_sub(start)),
        progress.as_ref(),
        max_line,
    ) {
        Ok(read) => Ok(result(py, agg, &read, tables.is_some(), handoff)?.into_any()),
        Err(Stop::Decline(why)) => Ok(why.into_pyobject(py)?.into_any()),
        Err(Stop::Python(err)) => Err(err),
    }
}

#[pymodule]
fn alphatrace_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(table_loops::sort_in_place, m)?)?;
    m.add_class::<spill::SpillRuns>()?;
    m.add("LATENCY_RUNS", true)?; // read_part and read_zstd_part take `latencies`
    m.add_function(wrap_pyfunction!(read_part, m)?)?;
    m.add_function(wrap_pyfunction!(zstd_lines::read_zstd_part, m)?)?;
    m.add("ZSTD_FRAME_CUT", true)?; // read_zstd_part takes `frame_cut` and `seek`
    m.add_function(wrap_pyfunction!(zstd_frames::zstd_frame_near, m)?)?;
    m.add_function(wrap_pyfunction!(zstd_lines::zstd_version, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::set_first_present, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::merged_narrow_histogram, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::set_add_all, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::set_rehash, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::map_any_set, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::map_set_all, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::set_add_all_spilling, m)?)?;
    m.add_function(wrap_pyfunction!(table_loops::map_set_all_spilling, m)?)?;
    m.add_function(wrap_pyfunction!(json_check::orjson_writes_as_json, m)?)?;
    Ok(())
}
