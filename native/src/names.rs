//! Names interned to small integer ids once per part, and per-agent tables keyed by those ids.
//!
//! With 1,000 agents each agent's tables are cold in the cache when its next span comes: a table
//! keyed by `String`s costs a hash of the text, the bucket, and then the key's own heap block for
//! the comparison (`memcmp`), each a likely miss. The names themselves are few and shared by all
//! the agents (the symbols and directions of alpha signals), so they are looked up once in one
//! table that stays hot (`Names`), and each agent's table (`Keyed`) is keyed by the ids: no text
//! is compared in it. A name is given an id only when some agent's table takes it, so `Names` holds
//! no more than the agents' tables do.

use rustc_hash::FxHashMap;

/// Names and their ids (0, 1, 2, ... in the order they were first given one).
#[derive(Default)]
pub struct Names {
    ids: FxHashMap<Box<str>, u32>,
}

impl Names {
    /// The id of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The id of `name`, given one first if it has none.
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(name.into(), id);
        id
    }
}

/// The names of alpha signals (`events.rs`): symbols (also the signal store's, `tallies::Store`) and directions.
#[derive(Default)]
pub struct SignalNames {
    pub symbols: Names,
    pub directions: Names,
}

/// `(symbol id, direction id)` as one key.
pub fn pair_key(symbol: u32, direction: u32) -> u64 {
    (symbol as u64) << 32 | direction as u64
}

/// An insertion-ordered table (a Python dict that is only added to) looked up by an id made of
/// interned names; `items` hold the real keys, in order, for the Python side.
pub struct Keyed<K, V> {
    index: FxHashMap<u64, usize>,
    pub items: Vec<(K, V)>,
}

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed {
            index: FxHashMap::default(),
            items: Vec::new(),
        }
    }
}

impl<K, V> Keyed<K, V> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The slot of the key with this id, if the table has it.
    pub fn slot(&self, id: u64) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// The value of the key with this id, inserted (`make_key()`, `make()`) first if absent.
    pub fn entry(&mut self, id: u64, make_key: impl FnOnce() -> K, make: impl FnOnce() -> V) -> &mut V {
        let items = &mut self.items;
        let slot = *self.index.entry(id).or_insert_with(|| {
            items.push((make_key(), make()));
            items.len() - 1
        });
        &mut self.items[slot].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_ids_in_order_and_keep_them() {
        let mut names = Names::default();
        assert_eq!(names.get("AAPL"), None);
        assert_eq!(names.id("AAPL"), 0);
        assert_eq!(names.id("MSFT"), 1);
        assert_eq!(names.id("AAPL"), 0);
        assert_eq!(names.get("MSFT"), Some(1));
    }

    #[test]
    fn keyed_keeps_insertion_order_and_counts() {
        let mut table: Keyed<(String, String), i64> = Keyed::default();
        for (id, key) in [
            (pair_key(1, 0), ("B", "up")),
            (pair_key(0, 0), ("A", "up")),
            (pair_key(1, 0), ("B", "up")),
        ] {
            *table.entry(id, || (key.0.to_string(), key.1.to_string()), || 0) += 1;
        }
        assert_eq!(table.len(), 2);
        assert_eq!(table.slot(pair_key(0, 0)), Some(1));
        assert_eq!(table.slot(pair_key(0, 1)), None);
        let items: Vec<_> = table.items.iter().map(|((s, d), c)| (s.as_str(), d.as_str(), *c)).collect();
        assert_eq!(items, [("B", "up", 2), ("A", "up", 1)]);
    }
}
