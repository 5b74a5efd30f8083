//! The loops of `meta_supervisor/tally/fingerprints.py` over whole tables, worked on in place in the
//! Python arrays (an array('Q') of slots, linear probing from fp % size, or from the id part of a
//! span entry for the span set, 0 empty, 1 deleted; the
//! caller makes room first, so no insert here fills a table beyond its load limit), and an in-place
//! sort of an array('q'). Used when a part is merged and when latencies are sorted.

use crate::content::CHECK_BITS;
use crate::spill::SpillRuns;
use crate::tables::{entry_home, key_home, prefetch, probe, probe_entry};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::cell::Cell;

/// How many entries ahead a loop over a part's entries asks for the slot it will probe.
const AHEAD: usize = 16;

/// A part's entries probe a large table at random: the slot at `home` of `cells`, and the spilled
/// tier's filter block of `key`, asked for `AHEAD` entries before they are read, so that the cache
/// misses overlap instead of coming one by one.
fn ask_ahead(cells: &[Cell<u64>], home: usize, runs: Option<&SpillRuns>, key: u64) {
    prefetch(cells.as_ptr().wrapping_add(home));
    if let Some(runs) = runs {
        runs.prefetch(key);
    }
}

pub(crate) fn writable<'a, T: pyo3::buffer::Element>(py: Python<'a>, buffer: &'a PyBuffer<T>) -> PyResult<&'a [std::cell::Cell<T>]> {
    buffer
        .as_mut_slice(py)
        .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("a writable contiguous buffer is needed"))
}

fn readable<'a, T: pyo3::buffer::Element>(py: Python<'a>, buffer: &'a PyBuffer<T>) -> PyResult<&'a [pyo3::buffer::ReadOnlyCell<T>]> {
    buffer
        .as_slice(py)
        .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("a contiguous buffer is needed"))
}

/// `FingerprintSet.first_present`: the index of the first of `entries` whose id is already in
/// `slots`, or -1.
/// With `runs` (the set's spilled tier) those are asked too.
#[pyfunction]
#[pyo3(signature = (slots, entries, runs=None))]
pub(crate) fn set_first_present(
    py: Python,
    slots: PyBuffer<u64>,
    entries: PyBuffer<u64>,
    mut runs: Option<PyRefMut<SpillRuns>>,
) -> PyResult<i64> {
    let slots = writable(py, &slots)?;
    let entries = readable(py, &entries)?;
    for (index, entry) in entries.iter().enumerate() {
        if let Some(ahead) = entries.get(index + AHEAD) {
            let id = ahead.get() >> CHECK_BITS;
            ask_ahead(slots, entry_home(slots.len(), id), runs.as_deref(), id);
        }
        let entry = entry.get();
        if slots[probe_entry(slots, entry)].get() != 0 {
            return Ok(index as i64);
        }
        if let Some(runs) = runs.as_deref_mut() {
            if runs.get_value(entry >> CHECK_BITS)?.is_some() {
                return Ok(index as i64);
            }
        }
    }
    Ok(-1)
}

/// `FingerprintSet.add_all` with a spilled tier: add `entries` (none of their ids there yet) to the
/// resident `slots` holding `count`, spilled to `runs` whenever more than `limit`; returns the
/// resident count.
#[pyfunction]
pub(crate) fn set_add_all_spilling(
    py: Python,
    slots: PyBuffer<u64>,
    entries: PyBuffer<u64>,
    mut runs: PyRefMut<SpillRuns>,
    mut count: usize,
    limit: usize,
) -> PyResult<usize> {
    let slots = writable(py, &slots)?;
    for entry in readable(py, &entries)? {
        let entry = entry.get();
        let i = probe_entry(slots, entry);
        if slots[i].get() == 0 {
            slots[i].set(entry);
            count += 1;
            if count > limit {
                runs.spill_set_cells(slots)?;
                count = 0;
            }
        }
    }
    Ok(count)
}

/// `FingerprintMap.set` for each (fp, state) pair with a spilled tier: spilled whenever the
/// resident table holds more than `limit`; returns the resident count.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_set_all_spilling(
    py: Python,
    keys: PyBuffer<u64>,
    states: PyBuffer<u8>,
    fps: PyBuffer<u64>,
    new_states: PyBuffer<u8>,
    mut runs: PyRefMut<SpillRuns>,
    mut count: usize,
    limit: usize,
) -> PyResult<usize> {
    let table = writable(py, &keys)?;
    let table_states = writable(py, &states)?;
    for (fp, state) in readable(py, &fps)?.iter().zip(readable(py, &new_states)?) {
        let fp = fp.get();
        let i = probe(table, fp);
        if table[i].get() == fp {
            table_states[i].set(state.get());
            continue;
        }
        if runs.get_value(fp)?.is_some() {
            runs.shadowed += 1;
        }
        table[i].set(fp);
        table_states[i].set(state.get());
        count += 1;
        if count > limit {
            runs.spill_map_cells(table, table_states)?;
            count = 0;
        }
    }
    Ok(count)
}

/// `FingerprintSet.add_all`: add `entries` (none of their ids there yet) to the set's `slots`;
/// returns how many were added.
#[pyfunction]
pub(crate) fn set_add_all(py: Python, slots: PyBuffer<u64>, entries: PyBuffer<u64>) -> PyResult<usize> {
    let slots = writable(py, &slots)?;
    let mut added = 0;
    for entry in readable(py, &entries)? {
        let entry = entry.get();
        let i = probe_entry(slots, entry);
        if slots[i].get() == 0 {
            slots[i].set(entry);
            added += 1;
        }
    }
    Ok(added)
}

/// Rehash the live slots of `old` (values > 1) into the empty table `new`; returns how many.
#[pyfunction]
pub(crate) fn set_rehash(py: Python, old: PyBuffer<u64>, new: PyBuffer<u64>) -> PyResult<usize> {
    let new = writable(py, &new)?;
    let mut count = 0;
    for value in readable(py, &old)? {
        let value = value.get();
        if value > 1 {
            let i = probe_entry(new, value);
            new[i].set(value);
            count += 1;
        }
    }
    Ok(count)
}

/// True when one of `fps` is in the map (`keys`, `states`) with a state other than 0.
/// With `runs` (the map's spilled tier), a fingerprint not resident is asked there.
#[pyfunction]
#[pyo3(signature = (keys, states, fps, runs=None))]
pub(crate) fn map_any_set(
    py: Python,
    keys: PyBuffer<u64>,
    states: PyBuffer<u8>,
    fps: PyBuffer<u64>,
    mut runs: Option<PyRefMut<SpillRuns>>,
) -> PyResult<bool> {
    let keys = writable(py, &keys)?;
    let states = readable(py, &states)?;
    let fps = readable(py, &fps)?;
    for (index, fp) in fps.iter().enumerate() {
        if let Some(ahead) = fps.get(index + AHEAD) {
            let ahead = ahead.get();
            ask_ahead(keys, key_home(keys.len(), ahead), runs.as_deref(), ahead);
        }
        let fp = fp.get();
        let i = probe(keys, fp);
        let state = if keys[i].get() == fp {
            states[i].get()
        } else if let Some(runs) = runs.as_deref_mut() {
            runs.get_value(fp)?.unwrap_or(0)
        } else {
            0
        };
        if state != 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `FingerprintMap.set` for each (fp, state) pair; old entries of `old_keys`/`old_states` (values
/// > 1) are first rehashed into the empty `keys`/`states` when given. Returns the new count.
#[pyfunction]
#[pyo3(signature = (keys, states, fps, new_states, count, old_keys=None, old_states=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_set_all(
    py: Python,
    keys: PyBuffer<u64>,
    states: PyBuffer<u8>,
    fps: PyBuffer<u64>,
    new_states: PyBuffer<u8>,
    mut count: usize,
    old_keys: Option<PyBuffer<u64>>,
    old_states: Option<PyBuffer<u8>>,
) -> PyResult<usize> {
    let table = writable(py, &keys)?;
    let table_states = writable(py, &states)?;
    if let (Some(old_keys), Some(old_states)) = (&old_keys, &old_states) {
        count = 0;
        for (fp, state) in readable(py, old_keys)?.iter().zip(readable(py, old_states)?) {
            let fp = fp.get();
            if fp > 1 {
                let i = probe(table, fp);
                table[i].set(fp);
                table_states[i].set(state.get());
                count += 1;
            }
        }
    }
    for (fp, state) in readable(py, &fps)?.iter().zip(readable(py, &new_states)?) {
        let fp = fp.get();
        let i = probe(table, fp);
        if table[i].get() != fp {
            table[i].set(fp);
            count += 1;
        }
        table_states[i].set(state.get());
    }
    Ok(count)
}

/// Sort an array('q') in place (a Python `sorted()` of it would build a list of int objects, ~36
/// bytes a value, at the build's peak memory).
#[pyfunction]
pub(crate) fn sort_in_place(py: Python, values: PyBuffer<i64>) -> PyResult<()> {
    let cells = writable(py, &values)?;
    // SAFETY: `Cell<i64>` has the layout of `i64`, and nothing else reads or writes the buffer while
    // this runs (the GIL is held and the slice does not outlive the call): sorted where it is, without
    // a copy (a copy is 8 bytes a run, 20 MB at 5,000,000 spans, at the build's peak)
    let values = unsafe { std::slice::from_raw_parts_mut(cells.as_ptr() as *mut i64, cells.len()) };
    values.sort_unstable();
    Ok(())
}

/// `tool_tallies.merged_histogram` of two narrow histograms (each an array('I'): its buckets, sorted
/// and distinct, then their calls): the narrow histogram of their sum, as bytes in the machine's
/// order, or None when either is not that shape (empty, an odd length, buckets out of order) or a
/// sum does not fit 32 bits (Python then merges them itself: the wide form). A merge walk, no map
/// per bucket: 1,000 agents with three tools each are ~3,000 such merges a part.
#[pyfunction]
pub(crate) fn merged_narrow_histogram(py: Python, mine: PyBuffer<u32>, theirs: PyBuffer<u32>) -> PyResult<Option<PyObject>> {
    let (mine, theirs) = (readable(py, &mine)?, readable(py, &theirs)?);
    let split = |values: &[pyo3::buffer::ReadOnlyCell<u32>]| -> Option<(Vec<u32>, Vec<u32>)> {
        if values.is_empty() || !values.len().is_multiple_of(2) {
            return None;
        }
        let half = values.len() / 2;
        let buckets: Vec<u32> = values[..half].iter().map(|value| value.get()).collect();
        if buckets.windows(2).any(|pair| pair[0] >= pair[1]) {
            return None;
        }
        Some((buckets, values[half..].iter().map(|value| value.get()).collect()))
    };
    let (Some((buckets, calls)), Some((their_buckets, their_calls))) = (split(mine), split(theirs)) else {
        return Ok(None);
    };
    let mut out_buckets = Vec::with_capacity(buckets.len() + their_buckets.len());
    let mut out_calls = Vec::with_capacity(out_buckets.capacity());
    let (mut i, mut j) = (0, 0);
    while i < buckets.len() || j < their_buckets.len() {
        let (bucket, count) = if j == their_buckets.len() || (i < buckets.len() && buckets[i] < their_buckets[j]) {
            i += 1;
            (buckets[i - 1], calls[i - 1])
        } else if i == buckets.len() || their_buckets[j] < buckets[i] {
            j += 1;
            (their_buckets[j - 1], their_calls[j - 1])
        } else {
            i += 1;
            j += 1;
            match calls[i - 1].checked_add(their_calls[j - 1]) {
                Some(sum) => (buckets[i - 1], sum),
                None => return Ok(None),
            }
        };
        out_buckets.push(bucket);
        out_calls.push(count);
    }
    let mut packed = Vec::with_capacity(4 * (out_buckets.len() + out_calls.len()));
    for value in out_buckets.iter().chain(out_calls.iter()) {
        packed.extend_from_slice(&value.to_ne_bytes());
    }
    Ok(Some(pyo3::types::PyBytes::new(py, &packed).into_any().unbind()))
}
