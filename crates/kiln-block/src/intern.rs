//! The one interner of the block format: the segment builder and compaction's merge both
//! deduplicate symbols and stack nodes through it.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// A map hashed with foldhash: a hash of every frame of every sample goes through the
/// interners (stacks interned by `(parent, location)`), where std's SipHash took a fifth of the
/// server's CPU under load (docs/benchmarks.md). foldhash's `RandomState` is seeded per map, so
/// keys taken from a request (location ids, names) cannot be chosen to collide without knowing
/// the seed.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set hashed like [`FastMap`].
pub(crate) type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// Interns values into a dense table: a value's id is its row's position plus the table's
/// offset (1 where id 0 means "none").
#[derive(Debug)]
pub(crate) struct Interner<T> {
    ids: FastMap<T, u32>,
    rows: Vec<T>,
    offset: u32,
}

impl<T: Clone + Eq + Hash> Interner<T> {
    /// An empty table whose first row gets id `offset`.
    pub(crate) fn new(offset: u32) -> Self {
        Self {
            ids: FastMap::default(),
            rows: Vec::new(),
            offset,
        }
    }

    /// The id of `value` if it was interned.
    pub(crate) fn get<Q>(&self, value: &Q) -> Option<u32>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ids.get(value).copied()
    }

    /// The id of `value`, added as a new row when new (one hash either way).
    pub(crate) fn intern(&mut self, value: T) -> u32 {
        match self.ids.entry(value) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let id = self.rows.len() as u32 + self.offset;
                self.rows.push(entry.key().clone());
                entry.insert(id);
                id
            }
        }
    }

    /// The rows, in id order.
    pub(crate) fn rows(&self) -> &[T] {
        &self.rows
    }

    /// The rows, in id order, without the index.
    pub(crate) fn into_rows(self) -> Vec<T> {
        self.rows
    }
}
