//! The one interner of the block format: the segment builder and compaction's merge both
//! deduplicate symbols and stack nodes through it.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// The hasher of the interners and of the builder's other maps: foldhash. A hash of every frame
/// of every sample goes through them (stacks interned by `(parent, location)`), where std's
/// SipHash took a fifth of the server's CPU under load (docs/benchmarks.md). foldhash's
/// `RandomState` is seeded per map, so keys taken from a request (location ids, names) cannot be
/// chosen to collide without knowing the seed.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// A map hashed with [`FastHash`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHash>;

/// A set hashed with [`FastHash`].
pub(crate) type FastSet<T> = HashSet<T, FastHash>;

/// Interns values into a dense table: a value's id is its row's position plus the table's
/// offset (1 where id 0 means "none").
///
/// Each value is stored once, in its row: the hash table holds row positions and compares
/// through the rows, so interning a new string or location costs no second copy (and no second
/// free when the table is dropped), which a map from value to id would.
#[derive(Debug)]
pub(crate) struct Interner<T> {
    positions: HashTable<u32>,
    rows: Vec<T>,
    offset: u32,
    hasher: FastHash,
}

impl<T: Eq + Hash> Interner<T> {
    /// An empty table whose first row gets id `offset`.
    pub(crate) fn new(offset: u32) -> Self {
        Self {
            positions: HashTable::new(),
            rows: Vec::new(),
            offset,
            hasher: FastHash::default(),
        }
    }

    /// Room for `additional` more values without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let (rows, hasher) = (&self.rows, &self.hasher);
        self.positions
            .reserve(additional, |&i| hasher.hash_one(&rows[i as usize]));
        self.rows.reserve(additional);
    }

    /// The id of `value`, added as a new row when new.
    pub(crate) fn intern(&mut self, value: T) -> u32 {
        let hash = self.hasher.hash_one(&value);
        let rows = &self.rows;
        if let Some(&position) = self.positions.find(hash, |&i| rows[i as usize] == value) {
            return position + self.offset;
        }
        self.insert_new(hash, value)
    }

    /// The id of `value`, copied into a new row only when new (a string from a pprof's table, a
    /// location built in a reused buffer), hashed once either way.
    pub(crate) fn intern_borrowed<Q>(&mut self, value: &Q) -> u32
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = T> + ?Sized,
    {
        // `Borrow` guarantees that a value and its borrowed form hash alike.
        let hash = self.hasher.hash_one(value);
        let rows = &self.rows;
        if let Some(&position) = self
            .positions
            .find(hash, |&i| rows[i as usize].borrow() == value)
        {
            return position + self.offset;
        }
        self.insert_new(hash, value.to_owned())
    }

    /// Adds `value`, known to be absent and to hash to `hash`, as a new row. A lookup and then
    /// an insertion rather than hashbrown's entry API, which the compiler stopped inlining here
    /// once the merge interned more kinds of values (a third more instructions per stack node
    /// interned); inlined into both callers for the same reason.
    #[inline(always)]
    fn insert_new(&mut self, hash: u64, value: T) -> u32 {
        let (rows, hasher) = (&mut self.rows, &self.hasher);
        let position = rows.len() as u32;
        self.positions
            .insert_unique(hash, position, |&i| hasher.hash_one(&rows[i as usize]));
        rows.push(value);
        position + self.offset
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
