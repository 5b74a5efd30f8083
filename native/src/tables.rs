//! Open-addressing tables of 64-bit fingerprints (already well mixed, so the slot is `fp % size`),
//! and a small insertion-ordered map: Python dicts keep insertion order, and so do the tallies here.

use hashbrown::Equivalent;
use std::hash::Hash;

use std::cell::Cell;

use crate::part::Stop;
use crate::spill::SpillRuns;

const EMPTY: u64 = 0;
use crate::content::{CHECK_BITS, CHECK_MASK};

/// A table's slots: its own, or those of a Python `array` it works on in place (which cannot grow;
/// `Detachable`: the table grows out of it into slots of its own, and the caller takes them back).
pub enum Slots<'t, T> {
    Own(Vec<Cell<T>>),
    Shared(&'t [Cell<T>]),
    Detachable(&'t [Cell<T>]),
}

impl<T: Copy + Default> Slots<'_, T> {
    fn new(size: usize) -> Self {
        Slots::Own((0..size).map(|_| Cell::new(T::default())).collect())
    }

    fn cells(&self) -> &[Cell<T>] {
        match self {
            Slots::Own(cells) => cells,
            Slots::Shared(cells) => cells,
            Slots::Detachable(cells) => cells,
        }
    }

    /// Whether the slots are still those of the Python array the table was made on.
    fn in_place(&self) -> bool {
        !matches!(self, Slots::Own(_))
    }
}

/// A table in a Python array is full: the part is declined (the array was sized for the file).
pub struct Full;

/// A table's spilled tier (`spill.rs`): none (the table grows in memory), the core's own (a part
/// read apart), or the build's (`fingerprints.SpillPlan`, worked on in place). With a tier the
/// resident table never grows past `cap` slots: when full it is spilled and starts empty again.
pub enum Tier<'t> {
    Off,
    Own(Box<SpillRuns>, usize),
    Shared(&'t mut SpillRuns),
}

impl Tier<'_> {
    fn runs(&mut self) -> Option<&mut SpillRuns> {
        match self {
            Tier::Off => None,
            Tier::Own(runs, _) => Some(runs),
            Tier::Shared(runs) => Some(runs),
        }
    }

    /// Whether a full resident table of `size` slots is spilled (else it grows).
    fn spills_at(&self, size: usize, in_place: bool) -> bool {
        match self {
            Tier::Off => false,
            Tier::Own(_, cap) => in_place || size * 2 + 1 > *cap,
            Tier::Shared(_) => true,
        }
    }
}

/// The span dedup set (`fingerprints.FingerprintSet`): one entry per span id (`content::span_entry`).
pub struct FpSet<'t> {
    slots: Slots<'t, u64>,
    count: usize,
    pub tier: Tier<'t>,
}

impl<'t> FpSet<'t> {
    pub fn new(expected: usize) -> Self {
        FpSet {
            slots: Slots::new(slots_for(expected)),
            count: 0,
            tier: Tier::Off,
        }
    }

    /// With a spilled tier: the resident table grows to at most `cap` slots, then spills.
    pub fn with_tier(mut self, tier: Tier<'t>) -> Self {
        if let Tier::Own(_, cap) = tier {
            if self.slots.cells().len() > cap && !self.slots.in_place() {
                self.slots = Slots::new(cap.max(1 << 10));
            }
        }
        self.tier = tier;
        self
    }

    /// The slots of an empty `FingerprintSet`, filled in place.
    pub fn shared(slots: &'t [Cell<u64>]) -> Self {
        FpSet {
            slots: Slots::Shared(slots),
            count: 0,
            tier: Tier::Off,
        }
    }

    /// Ask the CPU to bring the slot where the span of fingerprint `fp` goes (`span_entry`) into
    /// its cache, as soon as the span's ids are read: the table is larger than the caches, and the
    /// `insert` that follows the rest of the span's parse then finds the slot there instead of
    /// waiting on memory (`Scan::span_then`; the slot's load was 92% of the insert's time). A hint
    /// only: nothing is read or written, and a slot moved since (the table grew or spilled) costs
    /// one miss, as before. (The spilled tier's filter block, asked next for a new span, prefetched
    /// the same way made no difference: docs/benchmarks.md "Span slots prefetched".)
    pub fn prefetch(&self, fp: u64) {
        let slots = self.slots.cells();
        let id = (fp >> CHECK_BITS).max(1); // `span_entry(fp, _) >> CHECK_BITS`, as `probe_entry` starts from
        prefetch(slots.as_ptr().wrapping_add(entry_home(slots.len(), id)));
    }

    /// `FingerprintSet.add`: 0 when `entry`'s id was not in the set (it is now), else the entry
    /// already there.
    pub fn insert(&mut self, entry: u64) -> Result<u64, Stop> {
        let slots = self.slots.cells();
        let i = probe_entry(slots, entry);
        let value = slots[i].get();
        if value != EMPTY {
            return Ok(value);
        }
        if let Some(runs) = self.tier.runs() {
            if let Some(check) = runs.lookup(entry >> CHECK_BITS)? {
                return Ok((entry >> CHECK_BITS) << CHECK_BITS | u64::from(check));
            }
        }
        let slots = self.slots.cells();
        slots[i].set(entry);
        self.count += 1;
        if self.count * 10 > slots.len() * 7 {
            if self.tier.spills_at(slots.len(), self.slots.in_place()) {
                let cells = self.slots.cells();
                self.tier.runs().unwrap().spill_set_cells(cells)?;
                self.count = 0;
            } else {
                self.grow()?;
            }
        }
        Ok(EMPTY)
    }

    /// The slots of an empty `FingerprintSet`, filled in place until the table must grow: it then
    /// grows into slots of its own (`in_place` is false from then on).
    pub fn detachable(slots: &'t [Cell<u64>]) -> Self {
        FpSet {
            slots: Slots::Detachable(slots),
            count: 0,
            tier: Tier::Off,
        }
    }

    pub fn in_place(&self) -> bool {
        self.slots.in_place()
    }

    /// Everything into the tier's runs (the resident table spilled): the tier, or None without one.
    pub fn drain_to_runs(&mut self) -> Result<Option<&mut SpillRuns>, Stop> {
        if matches!(self.tier, Tier::Off) {
            return Ok(None);
        }
        if self.count > 0 {
            let cells = self.slots.cells();
            self.tier.runs().unwrap().spill_set_cells(cells)?;
            self.count = 0;
        }
        Ok(self.tier.runs())
    }

    fn grow(&mut self) -> Result<(), Stop> {
        let old = match &self.slots {
            Slots::Own(cells) => &cells[..],
            Slots::Detachable(cells) => cells,
            Slots::Shared(_) => return Err(Full.into()),
        };
        let mut bigger = FpSet {
            slots: Slots::new(old.len() * 2 + 1),
            count: 0,
            tier: Tier::Off,
        };
        for value in old.iter().map(Cell::get).filter(|&v| v != EMPTY) {
            bigger.insert(value)?;
        }
        bigger.tier = std::mem::replace(&mut self.tier, Tier::Off);
        *self = bigger;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.cells().iter().map(Cell::get).filter(|&v| v != EMPTY)
    }
}

/// Closed runs: fingerprint -> state byte (`fingerprints.FingerprintMap`).
pub struct FpMap<'t> {
    keys: Slots<'t, u64>,
    states: Slots<'t, u8>,
    count: usize,
    pub tier: Tier<'t>,
}

impl<'t> FpMap<'t> {
    pub fn new(expected: usize) -> Self {
        let size = slots_for(expected);
        FpMap {
            keys: Slots::new(size),
            states: Slots::new(size),
            count: 0,
            tier: Tier::Off,
        }
    }

    /// With a spilled tier (`FpSet::with_tier`).
    pub fn with_tier(mut self, tier: Tier<'t>) -> Self {
        if let Tier::Own(_, cap) = tier {
            if self.keys.cells().len() > cap && !self.keys.in_place() {
                self.keys = Slots::new(cap.max(1 << 10));
                self.states = Slots::new(cap.max(1 << 10));
            }
        }
        self.tier = tier;
        self
    }

    /// The keys and states of an empty `FingerprintMap`, filled in place.
    pub fn shared(keys: &'t [Cell<u64>], states: &'t [Cell<u8>]) -> Self {
        FpMap {
            keys: Slots::Shared(keys),
            states: Slots::Shared(states),
            count: 0,
            tier: Tier::Off,
        }
    }

    fn find(&self, fp: u64) -> (usize, bool) {
        let keys = self.keys.cells();
        let i = probe(keys, fp);
        (i, keys[i].get() == fp)
    }

    /// The state of `fp` (0 when absent): the resident table's, else the newest spilled one.
    pub fn get(&mut self, fp: u64) -> Result<u8, Stop> {
        match self.find(fp) {
            (i, true) => Ok(self.states.cells()[i].get()),
            _ => Ok(match self.tier.runs() {
                Some(runs) => runs.lookup(fp)?.unwrap_or(0),
                None => 0,
            }),
        }
    }

    /// Insert `fp` with `state` unless present: true when inserted.
    pub fn insert_new(&mut self, fp: u64, state: u8) -> Result<bool, Stop> {
        let (i, found) = self.find(fp);
        if found {
            return Ok(false);
        }
        if let Some(runs) = self.tier.runs() {
            if runs.lookup(fp)?.is_some() {
                return Ok(false);
            }
        }
        self.fill(i, fp, state)?;
        Ok(true)
    }

    fn fill(&mut self, i: usize, fp: u64, state: u8) -> Result<(), Stop> {
        self.keys.cells()[i].set(fp);
        self.states.cells()[i].set(state);
        self.count += 1;
        let size = self.keys.cells().len();
        if self.count * 10 > size * 7 {
            if self.tier.spills_at(size, self.keys.in_place()) {
                let (keys, states) = (self.keys.cells(), self.states.cells());
                self.tier.runs().unwrap().spill_map_cells(keys, states)?;
                self.count = 0;
            } else {
                self.grow()?;
            }
        }
        Ok(())
    }

    pub fn set(&mut self, fp: u64, state: u8) -> Result<(), Stop> {
        let (i, found) = self.find(fp);
        if found {
            self.states.cells()[i].set(state);
            return Ok(());
        }
        if let Some(runs) = self.tier.runs() {
            if runs.lookup(fp)?.is_some() {
                runs.shadowed += 1; // the resident copy is the newer: it wins when spilled
            }
        }
        self.fill(i, fp, state)
    }

    /// The keys and states of an empty `FingerprintMap`, filled in place until it must grow
    /// (`FpSet::detachable`).
    pub fn detachable(keys: &'t [Cell<u64>], states: &'t [Cell<u8>]) -> Self {
        FpMap {
            keys: Slots::Detachable(keys),
            states: Slots::Detachable(states),
            count: 0,
            tier: Tier::Off,
        }
    }

    pub fn in_place(&self) -> bool {
        self.keys.in_place()
    }

    /// `FpSet::drain_to_runs`.
    pub fn drain_to_runs(&mut self) -> Result<Option<&mut SpillRuns>, Stop> {
        if matches!(self.tier, Tier::Off) {
            return Ok(None);
        }
        if self.count > 0 {
            let (keys, states) = (self.keys.cells(), self.states.cells());
            self.tier.runs().unwrap().spill_map_cells(keys, states)?;
            self.count = 0;
        }
        Ok(self.tier.runs())
    }

    fn grow(&mut self) -> Result<(), Stop> {
        if matches!(self.keys, Slots::Shared(_)) {
            return Err(Full.into());
        }
        let mut bigger = FpMap::new(0);
        let size = self.keys.cells().len() * 2 + 1;
        bigger.keys = Slots::new(size);
        bigger.states = Slots::new(size);
        for (fp, state) in self.items() {
            bigger.insert_new(fp, state)?;
        }
        bigger.tier = std::mem::replace(&mut self.tier, Tier::Off);
        *self = bigger;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn items(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        self.keys
            .cells()
            .iter()
            .map(Cell::get)
            .zip(self.states.cells().iter().map(Cell::get))
            .filter(|&(k, _)| k != EMPTY)
    }
}

/// Where the probe for `fp` starts in a map's `size` keys (`probe`, and what prefetches its slot).
pub(crate) fn key_home(size: usize, fp: u64) -> usize {
    (fp % size as u64) as usize
}

/// Where the probe for the entry of span id `id` (an entry's bits above its content check) starts
/// in a set's `size` slots (`probe_entry`, and what prefetches its slot).
pub(crate) fn entry_home(size: usize, id: u64) -> usize {
    (id % size as u64) as usize
}

/// Where `fp` is in `keys`, or the empty slot where it would go: linear probing from `fp % size`
/// (`FingerprintMap._slot`; a deleted slot, 1, is passed over like any other).
pub(crate) fn probe(keys: &[Cell<u64>], fp: u64) -> usize {
    let size = keys.len();
    let mut i = key_home(size, fp);
    loop {
        let value = keys[i].get();
        if value == fp || value == EMPTY {
            return i;
        }
        i += 1;
        if i == size {
            i = 0;
        }
    }
}

/// Where the entry of `entry`'s id is in `slots`, or the empty slot where it would go: linear
/// probing from `id part % size` (`FingerprintSet._slot`).
pub(crate) fn probe_entry(slots: &[Cell<u64>], entry: u64) -> usize {
    let size = slots.len();
    let mut i = entry_home(size, entry >> CHECK_BITS);
    loop {
        let value = slots[i].get();
        if value == EMPTY || value ^ entry <= CHECK_MASK {
            return i;
        }
        i += 1;
        if i == size {
            i = 0;
        }
    }
}

/// A hint to bring the cache line of `at` in (`FpSet::prefetch`): it reads nothing and cannot
/// fault, whatever `at` points to.
pub(crate) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch dereferences nothing and faults on no address, and SSE (which has it) is
    // in every x86_64 CPU
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

fn slots_for(entries: usize) -> usize {
    (entries * 10 / 7 + 1).max(1 << 10)
}

/// An insertion-ordered map without removal (a Python dict that is only added to); looked up by
/// borrowed keys (`PairRef`, `ModelRef`, `&str`), so a hit allocates nothing. The index holds the
/// items' positions only (4 bytes a key), not a second copy of each key: 1,000 agents' per-day
/// tables over a month are 30,000 keys a table, and a `(day, model, simulated)` key copied was a
/// second `String` and ~48 bytes of bucket each.
pub struct Ordered<K, V> {
    index: hashbrown::HashTable<u32>,
    pub items: Vec<(K, V)>,
}

impl<K: Hash + Eq + Clone, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered {
            index: hashbrown::HashTable::new(),
            items: Vec::new(),
        }
    }
}

fn hash_of<Q: Hash + ?Sized>(key: &Q) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

impl<K: Hash + Eq + Clone, V> Ordered<K, V> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn contains<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) -> bool {
        let items = &self.items;
        self.index.find(hash_of(key), |&i| key.equivalent(&items[i as usize].0)).is_some()
    }

    /// The value of `key`, inserted (`make_key()`, `make()`) first if absent.
    pub fn entry<Q: Hash + Equivalent<K> + ?Sized>(&mut self, key: &Q, make_key: impl FnOnce() -> K, make: impl FnOnce() -> V) -> &mut V {
        let hash = hash_of(key);
        let Ordered { index, items } = self;
        let i = match index.find(hash, |&i| key.equivalent(&items[i as usize].0)) {
            Some(&i) => i as usize,
            None => {
                let i = items.len();
                let key = make_key();
                // positions are u32: a table past 2^32 keys is far past every limit (MAX_DISTINCT)
                let at = u32::try_from(i).expect("an Ordered table of more than 2^32 keys");
                index.insert_unique(hash_of(&key), at, |&j| hash_of(&items[j as usize].0));
                items.push((key, make()));
                i
            }
        };
        &mut self.items[i].1
    }
}

/// A `(String, String)` key looked up without allocating (hashes as the tuple does).
#[derive(Hash)]
pub struct PairRef<'a>(pub &'a str, pub &'a str);

impl Equivalent<(String, String)> for PairRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// A `(String, String, String)` key looked up without allocating (hashes as the tuple does).
#[derive(Hash)]
pub struct TripleRef<'a>(pub &'a str, pub &'a str, pub &'a str);

impl Equivalent<(String, String, String)> for TripleRef<'_> {
    fn equivalent(&self, key: &(String, String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

/// A `(day, model, simulated)` key looked up without allocating.
#[derive(Hash)]
pub struct ModelRef<'a>(pub i64, pub &'a str, pub bool);

impl Equivalent<(i64, String, bool)> for ModelRef<'_> {
    fn equivalent(&self, key: &(i64, String, bool)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}
