//! The spilled tier of the build's fingerprint tables (`fingerprints.SpillPlan`): exact, on disk,
//! so a build's memory does not grow with its file.
//!
//! A table (the span set, the closed-run map) keeps a bounded resident hash table (a Python array, or
//! the core's own slots); when that is full its (key, value) pairs are sorted and written here as a
//! *run*, and the resident table starts empty again. A run is two files in the build's cache folder
//! (keys as little-endian u64, then one value byte per key), each unlinked as soon as it is made: a
//! killed build leaves nothing behind (only the microseconds between create and unlink could). In
//! memory stay a blocked Bloom filter over every spilled key (`FILTER_BITS` bits a key: 1 byte,
//! about 2.6% false positives, sized for the keys the table is expected to spill) and one key per page of `PAGE` keys (0.06 bytes a key); a key the filter
//! passes is looked up with one `pread` of a page per run (page cache, not this process's memory).
//! Runs are merged while the newest is at least half the size of the one before it (a binary
//! counter: O(log n) runs, each key rewritten O(log n) times); where two runs hold the same key (a
//! closed run's state set again after it was spilled) the newer value wins.
//!
//! Keys are never 0: the span set spills `entry >> 8` (the id part, never 0) with the content check
//! as the value; the closed-run map spills the fingerprint (>= 2) with its state.

use crate::tables::{FpMap, FpSet, Tier};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Keys a page of a run's key file holds: one `pread` of 1 kB per run for a filter positive.
const PAGE: usize = 128;
/// Bloom filter bits per spilled key (blocks of 512 bits, `PROBES` bits set in one block per key).
const FILTER_BITS: usize = 8;
const PROBES: u32 = 5;
const BLOCK_WORDS: usize = 8;
/// Bytes read or written at a time when runs are merged or exported.
const CHUNK: usize = 1 << 16;

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

struct Run {
    keys: File,
    values: File,
    count: usize,
    index: Vec<u64>, // the first key of each page
}

impl Run {
    fn get(&self, key: u64, page: &mut Vec<u8>) -> std::io::Result<Option<u8>> {
        let at = self.index.partition_point(|&first| first <= key);
        if at == 0 {
            return Ok(None);
        }
        let first = (at - 1) * PAGE;
        let n = PAGE.min(self.count - first);
        page.resize(n * 8, 0);
        self.keys.read_exact_at(page, (first * 8) as u64)?;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let value = u64::from_le_bytes(page[mid * 8..mid * 8 + 8].try_into().unwrap());
            if value == key {
                let mut byte = [0u8];
                self.values.read_exact_at(&mut byte, (first + mid) as u64)?;
                return Ok(Some(byte[0]));
            }
            if value < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(None)
    }
}

/// Reads a run's (key, value) pairs in order, a chunk at a time.
struct RunReader<'r> {
    run: &'r Run,
    next: usize,
    keys: Vec<u64>,
    values: Vec<u8>,
    at: usize,
}

impl<'r> RunReader<'r> {
    fn new(run: &'r Run) -> Self {
        RunReader {
            run,
            next: 0,
            keys: Vec::new(),
            values: Vec::new(),
            at: 0,
        }
    }

    fn peek(&mut self) -> std::io::Result<Option<(u64, u8)>> {
        if self.at == self.keys.len() {
            let n = (CHUNK / 8).min(self.run.count - self.next);
            if n == 0 {
                return Ok(None);
            }
            let mut raw = vec![0u8; n * 8];
            self.run.keys.read_exact_at(&mut raw, (self.next * 8) as u64)?;
            self.keys = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
            self.values = vec![0u8; n];
            self.run.values.read_exact_at(&mut self.values, self.next as u64)?;
            self.next += n;
            self.at = 0;
        }
        Ok(Some((self.keys[self.at], self.values[self.at])))
    }
}

/// Writes a new run (keys in increasing order, no repeats).
struct RunWriter {
    keys: BufWriter<File>,
    values: BufWriter<File>,
    count: usize,
    index: Vec<u64>,
    last: u64,
}

impl RunWriter {
    fn new(dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(RunWriter {
            keys: BufWriter::with_capacity(CHUNK, unlinked_file(dir)?),
            values: BufWriter::with_capacity(CHUNK / 8, unlinked_file(dir)?),
            count: 0,
            index: Vec::new(),
            last: 0,
        })
    }

    fn push(&mut self, key: u64, value: u8) -> std::io::Result<()> {
        if self.count.is_multiple_of(PAGE) {
            self.index.push(key);
        }
        self.keys.write_all(&key.to_le_bytes())?;
        self.values.write_all(&[value])?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> std::io::Result<Run> {
        let keys = self.keys.into_inner().map_err(|e| e.into_error())?;
        let values = self.values.into_inner().map_err(|e| e.into_error())?;
        Ok(Run {
            keys,
            values,
            count: self.count,
            index: self.index,
        })
    }
}

/// A new file in `dir`, already unlinked: it lives as long as its handle.
fn unlinked_file(dir: &std::path::Path) -> std::io::Result<File> {
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".spill-{}-{}.tmp", std::process::id(), n));
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

fn mix(key: u64) -> u64 {
    // splitmix64's finaliser: the span set's keys are 56-bit, its low bits must not pick alone
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The spilled tier of one table: its runs, their Bloom filter and the count of distinct keys.
#[pyclass(module = "alphatrace_native")]
pub struct SpillRuns {
    dir: PathBuf,
    runs: Vec<Run>, // oldest first
    filter: Vec<u64>,
    filter_capacity: usize, // keys the filter was sized for
    filtered: usize,        // keys added to it (a key spilled twice counts twice)
    /// keys the filter is first sized for (the table's expected spilled keys; set from Python for
    /// the part a process is about to read)
    #[pyo3(get, set)]
    expected: usize,
    /// some spilled keys are not in the filter (`defer_filter`): the next lookup fills it again
    stale: bool,
    distinct: usize,
    /// keys of the resident table that are in a run too (a map's value set again after a spill)
    #[pyo3(get, set)]
    pub shadowed: usize,
    #[pyo3(get)]
    spills: usize,
    page: Vec<u8>,
    loading: Option<RunWriter>,
}

impl SpillRuns {
    pub fn create(dir: PathBuf, expected: usize) -> Self {
        SpillRuns {
            dir,
            runs: Vec::new(),
            filter: Vec::new(),
            filter_capacity: 0,
            filtered: 0,
            expected,
            stale: false,
            distinct: 0,
            shadowed: 0,
            spills: 0,
            page: Vec::new(),
            loading: None,
        }
    }

    pub fn distinct(&self) -> usize {
        self.distinct
    }

    fn block(&self, key: u64) -> (usize, u64) {
        let h = mix(key);
        let blocks = self.filter.len() / BLOCK_WORDS;
        (((h >> 32) as usize % blocks) * BLOCK_WORDS, h)
    }

    fn filter_add(&mut self, key: u64) {
        let (base, h) = self.block(key);
        for j in 0..PROBES {
            let bit = (h >> (j * 9)) & 511;
            self.filter[base + (bit >> 6) as usize] |= 1 << (bit & 63);
        }
        self.filtered += 1;
    }

    /// Bring in the filter's block of `key` ahead of its `lookup` (a hint: reads nothing).
    pub fn prefetch(&self, key: u64) {
        if !self.filter.is_empty() {
            crate::tables::prefetch(self.filter.as_ptr().wrapping_add(self.block(key).0));
        }
    }

    fn filter_may_hold(&self, key: u64) -> bool {
        if self.filter.is_empty() {
            return false;
        }
        let (base, h) = self.block(key);
        (0..PROBES).all(|j| {
            let bit = (h >> (j * 9)) & 511;
            self.filter[base + (bit >> 6) as usize] & (1 << (bit & 63)) != 0
        })
    }

    /// Make room in the filter for `more` keys: sized for the build's expected keys at first,
    /// doubled (and filled again from the runs) when the file holds more.
    fn filter_room(&mut self, more: usize) -> std::io::Result<()> {
        let needed = self.filtered + more;
        if needed <= self.filter_capacity {
            return Ok(());
        }
        let mut capacity = self.filter_capacity.max(self.expected).max(1 << 16);
        while capacity < needed {
            capacity *= 2;
        }
        let words = (capacity * FILTER_BITS / 64).div_ceil(BLOCK_WORDS) * BLOCK_WORDS;
        self.filter = Vec::new(); // the old filter freed before the new one is made (peak memory)
        self.filter = vec![0u64; words];
        self.filter_capacity = capacity;
        self.filtered = 0;
        let runs = std::mem::take(&mut self.runs);
        for run in &runs {
            let mut reader = RunReader::new(run);
            while let Some((key, _)) = reader.peek()? {
                self.filter_add(key);
                reader.at += 1;
            }
        }
        self.runs = runs;
        Ok(())
    }

    /// Leave the keys spilled from now on out of the filter, and free it: until the next lookup,
    /// which fills it again from the runs. For keys known to be new that nothing looks up in the
    /// meantime (a part's spans added by its merge, a saved state's table loaded): the filter of
    /// the whole table is then not held at the build's peak, and is only made when asked.
    pub fn defer(&mut self) {
        self.stale = true;
        self.filter = Vec::new();
        self.filter_capacity = 0;
        self.filtered = 0;
    }

    /// The filter made again from every run, after `defer` (sized as `filter_room` sizes it).
    fn refilter(&mut self) -> std::io::Result<()> {
        self.stale = false;
        let keys = self.runs.iter().map(|run| run.count).sum();
        self.filter_room(keys)
    }

    /// The value of `key` in the newest run holding it.
    pub fn lookup(&mut self, key: u64) -> std::io::Result<Option<u8>> {
        if self.stale {
            self.refilter()?;
        }
        if !self.filter_may_hold(key) {
            return Ok(None);
        }
        for run in self.runs.iter().rev() {
            if let Some(value) = run.get(key, &mut self.page)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Write `count` (key, value) pairs, in key order, keys distinct (`shadowed` of them already in
    /// a run), as a new run, then merge runs as the binary counter says.
    fn spill_sorted(&mut self, count: usize, pairs: impl Iterator<Item = (u64, u8)>) -> std::io::Result<()> {
        let filtered = !self.stale;
        if filtered {
            self.filter_room(count)?;
        }
        let mut writer = RunWriter::new(&self.dir)?;
        for (key, value) in pairs {
            writer.push(key, value)?;
            if filtered {
                self.filter_add(key);
            }
        }
        self.distinct += count - self.shadowed.min(count);
        self.shadowed = 0;
        self.spills += 1;
        self.runs.push(writer.finish()?);
        while self.runs.len() >= 2 && self.runs[self.runs.len() - 1].count * 2 >= self.runs[self.runs.len() - 2].count {
            self.merge_last_two()?;
        }
        Ok(())
    }

    fn merge_last_two(&mut self) -> std::io::Result<()> {
        let newer = self.runs.pop().unwrap();
        let older = self.runs.pop().unwrap();
        let mut writer = RunWriter::new(&self.dir)?;
        {
            let (mut a, mut b) = (RunReader::new(&older), RunReader::new(&newer));
            loop {
                match (a.peek()?, b.peek()?) {
                    (None, None) => break,
                    (Some(x), None) => {
                        writer.push(x.0, x.1)?;
                        a.at += 1;
                    }
                    (None, Some(y)) => {
                        writer.push(y.0, y.1)?;
                        b.at += 1;
                    }
                    (Some(x), Some(y)) => {
                        if x.0 < y.0 {
                            writer.push(x.0, x.1)?;
                            a.at += 1;
                        } else {
                            writer.push(y.0, y.1)?; // equal keys: the newer value
                            b.at += 1;
                            if x.0 == y.0 {
                                a.at += 1;
                            }
                        }
                    }
                }
            }
        }
        self.runs.push(writer.finish()?);
        Ok(())
    }

    /// Merge every run into one (the order the state and a part's hand-over read them in).
    pub fn merge_all(&mut self) -> std::io::Result<()> {
        while self.runs.len() >= 2 {
            self.merge_last_two()?;
        }
        Ok(())
    }

    /// Every (key, value) in key order, after `merge_all`, `f` called on chunks.
    pub fn for_each_chunk(&mut self, mut f: impl FnMut(&[u64], &[u8]) -> PyResult<()>) -> PyResult<()> {
        self.merge_all()?;
        if let Some(run) = self.runs.first() {
            let mut reader = RunReader::new(run);
            while reader.peek()?.is_some() {
                f(&reader.keys, &reader.values)?;
                reader.at = reader.keys.len();
            }
        }
        Ok(())
    }
}

fn io(err: std::io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("the build's spilled table: {err}"))
}

#[pymethods]
impl SpillRuns {
    /// Runs in `dir` (the build's cache folder), the filter sized for `expected` keys.
    #[new]
    fn py_new(dir: &str, expected: usize) -> Self {
        SpillRuns::create(PathBuf::from(dir), expected)
    }

    fn __len__(&self) -> usize {
        self.distinct
    }

    /// The value of `key` (its newest), or -1.
    fn get(&mut self, key: u64) -> PyResult<i64> {
        Ok(self.get_value(key)?.map_or(-1, i64::from))
    }

    /// How many runs there are now (merged as they accumulate).
    #[getter]
    fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Bytes held in memory: the filter and the page indexes.
    #[getter]
    fn resident_bytes(&self) -> usize {
        self.filter.len() * 8 + self.runs.iter().map(|r| r.index.len() * 8).sum::<usize>()
    }

    /// Spill the span set's resident slots (`FingerprintSet.slots`: entries, 0 empty, 1 deleted) and
    /// empty them; returns how many were spilled.
    fn spill_set(&mut self, py: Python, slots: PyBuffer<u64>) -> PyResult<usize> {
        let cells = crate::table_loops::writable(py, &slots)?;
        Ok(self.spill_set_cells(cells)?)
    }

    /// Spill the closed-run map's resident keys and states and empty them.
    fn spill_map(&mut self, py: Python, keys: PyBuffer<u64>, states: PyBuffer<u8>) -> PyResult<usize> {
        let keys = crate::table_loops::writable(py, &keys)?;
        let states = crate::table_loops::writable(py, &states)?;
        Ok(self.spill_map_cells(keys, states)?)
    }

    /// Write every (key, value) in key order to file descriptors at their current positions: keys
    /// (u64) to `keys_fd` and values to `values_fd`; or, with `values_fd` -1, span set entries
    /// (`key << 8 | value`) to `keys_fd`. Returns how many.
    fn export(&mut self, keys_fd: i32, values_fd: i32) -> PyResult<usize> {
        use std::os::fd::FromRawFd;
        // borrowed descriptors: never closed here
        let mut keys_out = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(keys_fd) });
        if values_fd < 0 {
            return self.export_to(&mut keys_out, None);
        }
        let mut values_out = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(values_fd) });
        self.export_to(&mut keys_out, Some(&mut values_out))
    }

    /// Add sorted, distinct (keys, values) chunks read back (a saved state's spilled table, as
    /// `export` wrote it) as one run, ended by `loaded`; keys new to the tier (a saved state's table
    /// into an empty tier, or a worker's part at its merge: `merge.merge_part`). Without `values`,
    /// `keys` are span set entries (`key << 8 | value`).
    #[pyo3(signature = (keys, values=None))]
    fn load(&mut self, keys: &[u8], values: Option<&[u8]>) -> PyResult<()> {
        if !keys.len().is_multiple_of(8) || values.is_some_and(|v| keys.len() != v.len() * 8) {
            return Err(pyo3::exceptions::PyValueError::new_err("spilled keys and values differ in length"));
        }
        let mut pending = self.loading.take().map_or_else(|| RunWriter::new(&self.dir), Ok).map_err(io)?;
        let mut last = pending.last;
        for (n, chunk) in keys.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().unwrap());
            let (key, value) = match values {
                Some(values) => (word, values[n]),
                None => (word >> 8, word as u8),
            };
            if key == 0 || key <= last {
                return Err(pyo3::exceptions::PyValueError::new_err("spilled keys are not sorted"));
            }
            last = key;
            pending.push(key, value).map_err(io)?;
        }
        pending.last = last;
        self.loading = Some(pending);
        Ok(())
    }

    /// End a `load`: the run is added (its keys filtered at the first lookup, `defer`: a build
    /// with nothing new to read never makes the filter).
    fn loaded(&mut self) -> PyResult<()> {
        if let Some(writer) = self.loading.take() {
            let run = writer.finish().map_err(io)?;
            self.defer();
            self.distinct += run.count;
            self.runs.push(run);
        }
        Ok(())
    }

    /// `defer`: the keys spilled from now on are left out of the filter, which is freed, until
    /// the next lookup (a part's spans added by its merge: `merge.merge_part`).
    fn defer_filter(&mut self) {
        self.defer();
    }
}

impl From<std::io::Error> for crate::part::Stop {
    fn from(err: std::io::Error) -> Self {
        crate::part::Stop::Python(io(err))
    }
}

/// The `spill` argument of `read_part` and `read_zstd_part`: the build's tiers of the tables filled
/// in place (`(seen tier or None, closed tier or None)`), or for a part's own tables `(folder,
/// resident slots, (span fd, closed keys fd, closed states fd))`: tiers of its own, everything
/// handed over through the three files (`part_result.Handoff`).
pub enum SpillArg<'py> {
    None,
    Shared(Option<PyRefMut<'py, SpillRuns>>, Option<PyRefMut<'py, SpillRuns>>),
    Own(String, usize, (i32, i32, i32)),
}

impl<'py> SpillArg<'py> {
    pub fn parse(spill: Option<&Bound<'py, PyAny>>, in_place: bool) -> PyResult<Self> {
        Ok(match spill {
            None => SpillArg::None,
            Some(value) if value.is_none() => SpillArg::None,
            Some(value) if in_place => {
                let (seen, closed) = value.extract()?;
                SpillArg::Shared(seen, closed)
            }
            Some(value) => {
                let (dir, cap, fds) = value.extract()?;
                SpillArg::Own(dir, cap, fds)
            }
        })
    }

    /// The spans a part's own tables are first sized for: at most what the resident cap holds.
    pub fn table_spans(&self, expected: usize) -> usize {
        match self {
            SpillArg::Own(_, cap, _) => expected.min(cap * 7 / 10),
            _ => expected,
        }
    }

    pub fn handoff(&self) -> Option<(i32, i32, i32)> {
        match self {
            SpillArg::Own(_, _, fds) => Some(*fds),
            _ => None,
        }
    }

    /// The tables with their tiers.
    pub fn attach<'t>(&'t mut self, tables: (FpSet<'t>, FpMap<'t>), expected: usize) -> (FpSet<'t>, FpMap<'t>) {
        let (seen, closed) = tables;
        match self {
            SpillArg::None => (seen, closed),
            SpillArg::Shared(a, b) => (
                seen.with_tier(a.as_deref_mut().map_or(Tier::Off, Tier::Shared)),
                closed.with_tier(b.as_deref_mut().map_or(Tier::Off, Tier::Shared)),
            ),
            SpillArg::Own(dir, cap, _) => {
                let dir = PathBuf::from(&*dir);
                (
                    seen.with_tier(Tier::Own(Box::new(SpillRuns::create(dir.clone(), expected)), *cap)),
                    closed.with_tier(Tier::Own(Box::new(SpillRuns::create(dir, expected / 2)), (*cap / 2).max(1 << 10))),
                )
            }
        }
    }
}

/// Hand a part's tables over through `fds` (`SpillArg::Own`): (spans, closed runs) written.
pub fn hand_over(seen: &mut FpSet, closed: &mut FpMap, fds: (i32, i32, i32)) -> PyResult<(usize, usize)> {
    use std::os::fd::FromRawFd;
    let mut out: Vec<std::mem::ManuallyDrop<File>> = [fds.0, fds.1, fds.2]
        .iter()
        .map(|&fd| std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) }))
        .collect();
    let spans = match seen.drain_to_runs().map_err(stop_err)? {
        Some(runs) => runs.export_to(&mut out[0], None)?,
        None => 0,
    };
    let (first, rest) = out.split_at_mut(2);
    let runs = match closed.drain_to_runs().map_err(stop_err)? {
        Some(runs) => runs.export_to(&mut first[1], Some(&mut rest[0]))?,
        None => 0,
    };
    Ok((spans, runs))
}

fn stop_err(stop: crate::part::Stop) -> PyErr {
    match stop {
        crate::part::Stop::Python(err) => err,
        crate::part::Stop::Decline(why) => pyo3::exceptions::PyRuntimeError::new_err(why),
    }
}

impl SpillRuns {
    fn export_to(&mut self, keys_out: &mut File, mut values_out: Option<&mut File>) -> PyResult<usize> {
        let mut count = 0;
        self.for_each_chunk(|keys, values| {
            let raw: Vec<u8> = match values_out {
                Some(_) => keys.iter().flat_map(|k| k.to_le_bytes()).collect(),
                None => keys
                    .iter()
                    .zip(values)
                    .flat_map(|(k, &v)| (k << 8 | u64::from(v)).to_le_bytes())
                    .collect(),
            };
            keys_out.write_all(&raw).map_err(io)?;
            if let Some(out) = values_out.as_mut() {
                out.write_all(values).map_err(io)?;
            }
            count += keys.len();
            Ok(())
        })?;
        Ok(count)
    }

    pub fn get_value(&mut self, key: u64) -> PyResult<Option<u8>> {
        self.lookup(key).map_err(io)
    }

    pub fn spill_set_cells(&mut self, cells: &[Cell<u64>]) -> std::io::Result<usize> {
        // a set's cell is its key and value in one word (key << 8 | value): sorted as words, they
        // are in key order (keys distinct). They are moved to the front of the slots and sorted
        // there, the slots being emptied after the spill anyway: no copy of them (4 MB for a full
        // table of 500,000 spans, at the peak of a read and of a part's merge)
        let n = compact(cells, |i| cells[i].get() > 1, |to, from| cells[to].set(cells[from].get()));
        // SAFETY: the cells are the resident table being spilled; nothing else touches them until
        // `words` is last used (before they are emptied or restored below)
        let words = unsafe { cells_as_mut(&cells[..n]) };
        words.sort_unstable();
        if let Err(err) = self.spill_sorted(n, words.iter().map(|&v| (v >> 8, v as u8))) {
            // the table as it was (the build reports the error and may go on reading other files)
            let kept: Vec<u64> = words.to_vec();
            cells.iter().for_each(|c| c.set(0));
            for entry in kept {
                cells[crate::tables::probe_entry(cells, entry)].set(entry);
            }
            return Err(err);
        }
        zero(cells);
        Ok(n)
    }

    pub fn spill_map_cells(&mut self, keys: &[Cell<u64>], states: &[Cell<u8>]) -> std::io::Result<usize> {
        // the (key, state) pairs moved to the front of the slots and sorted there by key (a heap
        // sort of the two arrays together): no copy, the slots being emptied after the spill anyway
        let n = compact(
            keys,
            |i| keys[i].get() > 1,
            |to, from| {
                keys[to].set(keys[from].get());
                states[to].set(states[from].get());
            },
        );
        // SAFETY: as in `spill_set_cells`: nothing else touches the slots until these are last used
        let (keys_n, states_n) = unsafe { (cells_as_mut(&keys[..n]), cells_as_mut(&states[..n])) };
        heap_sort_pairs(keys_n, states_n);
        if let Err(err) = self.spill_sorted(n, keys_n.iter().copied().zip(states_n.iter().copied())) {
            let kept: Vec<(u64, u8)> = keys_n.iter().copied().zip(states_n.iter().copied()).collect();
            keys.iter().for_each(|c| c.set(0));
            states.iter().for_each(|c| c.set(0));
            for (key, state) in kept {
                let i = crate::tables::probe(keys, key);
                keys[i].set(key);
                states[i].set(state);
            }
            return Err(err);
        }
        zero(keys);
        zero(states);
        Ok(n)
    }
}

/// Empty the slots after a spill: their whole pages are given back to the system (`MADV_DONTNEED`
/// of private anonymous memory, a Python array's or the core's own buffer: read again as zeros), so
/// a table emptied by the last spill of a read holds no memory through the merge that follows (5 M
/// spans: 5.5 MB); the cells on the partial pages at its ends are set to zero.
fn zero<T: Default>(cells: &[Cell<T>]) {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
            fn getpagesize() -> i32;
        }
        const MADV_DONTNEED: i32 = 4;
        // SAFETY: getpagesize has no preconditions
        let page = unsafe { getpagesize() } as usize;
        let size = std::mem::size_of::<T>();
        let start = cells.as_ptr() as usize;
        let end = start + cells.len() * size;
        let (first, last) = (start.next_multiple_of(page), end / page * page);
        if size > 0 && last >= first + 4 * page && (first - start).is_multiple_of(size) {
            // SAFETY: [first, last) is whole pages inside the cells' buffer, which nothing else
            // holds a reference into while it is emptied; they read back as zeros
            if unsafe { madvise(first as *mut std::ffi::c_void, last - first, MADV_DONTNEED) } == 0 {
                let (head, tail) = ((first - start) / size, (last - start) / size);
                cells[..head].iter().for_each(|c| c.set(T::default()));
                cells[tail..].iter().for_each(|c| c.set(T::default()));
                return;
            }
        }
    }
    cells.iter().for_each(|c| c.set(T::default()));
}

/// Move the cells `keep` says to keep to the front, in order (`put(to, from)`, `to <= from`);
/// returns how many.
fn compact(cells: &[Cell<u64>], keep: impl Fn(usize) -> bool, put: impl Fn(usize, usize)) -> usize {
    let mut n = 0;
    for i in 0..cells.len() {
        if keep(i) {
            if n != i {
                put(n, i);
            }
            n += 1;
        }
    }
    n
}

/// The cells as a plain mutable slice, to be sorted in place.
///
/// # Safety
/// Nothing else may read or write the cells while the returned slice is in use.
#[allow(clippy::mut_from_ref)]
unsafe fn cells_as_mut<T>(cells: &[Cell<T>]) -> &mut [T] {
    // `Cell<T>` has the layout of `T` and permits mutation through a shared reference
    std::slice::from_raw_parts_mut(cells.as_ptr() as *mut T, cells.len())
}

/// Sort `keys` ascending, moving `states` with them (in place: a heap sort).
fn heap_sort_pairs(keys: &mut [u64], states: &mut [u8]) {
    fn sift_down(keys: &mut [u64], states: &mut [u8], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && keys[child + 1] > keys[child] {
                child += 1;
            }
            if keys[root] >= keys[child] {
                return;
            }
            keys.swap(root, child);
            states.swap(root, child);
            root = child;
        }
    }
    let n = keys.len();
    for start in (0..n / 2).rev() {
        sift_down(keys, states, start, n);
    }
    for end in (1..n).rev() {
        keys.swap(0, end);
        states.swap(0, end);
        sift_down(keys, states, 0, end);
    }
}
