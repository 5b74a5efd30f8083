//! Whether orjson writes a value as the standard library's `json` does (`meta_supervisor/render/outputs.py`,
//! `services/state_files.py`): one walk over the value, no text made. orjson and `json`'s C encoder
//! (`ensure_ascii=False`) write `None`, booleans, integers, strings and keys alike, and a float alike
//! when it is 0 or 1e-4 <= |x| < 1e16 (both write the shortest text that reads back as the same
//! float; outside that range `json` switches to an exponent, orjson not always); orjson writes NaN
//! and infinities as `null` where `json` refuses them. `tests/test_many_agents_compact.py` checks
//! this against `json.dumps` on every kind of value. A value that is anything else (a subclass, a
//! tuple, a key that is not a `str`, a value nested deeper than `MAX_DEPTH`) is not plain: the
//! caller then encodes it with `json`. An integer orjson cannot write (beyond 64 bits) and a lone
//! surrogate make orjson raise: the caller falls back on that as well. With `ensure_ascii=True`
//! (the state's files) `json` escapes every character outside ASCII, and DEL: such a string is not plain.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};

const MAX_DEPTH: usize = 64;
const SMALLEST_PLAIN: f64 = 1e-4;
const LARGEST_PLAIN: f64 = 1e16; // excluded

/// True when orjson's compact text of `value` is `json.dumps(value, separators=(",", ":"),
/// ensure_ascii=False, allow_nan=False)`'s (or orjson raises); with `ascii_only`, also every string
/// and key is ASCII (then it is also the text of `ensure_ascii=True`).
#[pyfunction]
#[pyo3(signature = (value, ascii_only=false))]
pub fn orjson_writes_as_json(value: &Bound<'_, PyAny>, ascii_only: bool) -> bool {
    plain(value, ascii_only, 0)
}

fn plain(value: &Bound<'_, PyAny>, ascii_only: bool, depth: usize) -> bool {
    if value.is_none() || value.is_exact_instance_of::<PyBool>() || value.is_exact_instance_of::<PyInt>() {
        return true;
    }
    if let Ok(text) = value.downcast_exact::<PyString>() {
        return !ascii_only || ascii(text);
    }
    if let Ok(number) = value.downcast_exact::<PyFloat>() {
        let x = number.value().abs();
        return x == 0.0 || (SMALLEST_PLAIN..LARGEST_PLAIN).contains(&x);
    }
    if depth >= MAX_DEPTH {
        return false;
    }
    if let Ok(items) = value.downcast_exact::<PyList>() {
        return items.iter().all(|item| plain(&item, ascii_only, depth + 1));
    }
    if let Ok(entries) = value.downcast_exact::<PyDict>() {
        return entries.iter().all(|(key, item)| {
            key.downcast_exact::<PyString>().is_ok_and(|key| !ascii_only || ascii(key)) && plain(&item, ascii_only, depth + 1)
        });
    }
    false
}

/// Whether `ensure_ascii=True` writes a str as orjson does: ASCII (its header says so: then its
/// UTF-8 text is its own data, no copy made) without DEL, which `json` then writes as `\u007f`.
fn ascii(text: &Bound<'_, PyString>) -> bool {
    // SAFETY: a str object's header, read while the GIL is held
    let is_ascii = unsafe { pyo3::ffi::PyUnicode_IS_ASCII(text.as_ptr()) != 0 };
    is_ascii && text.to_str().is_ok_and(|t| memchr::memchr(0x7f, t.as_bytes()).is_none())
}
