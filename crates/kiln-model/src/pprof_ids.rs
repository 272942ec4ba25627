//! Finding a pprof entry by its id: one home for the lookup that validation and the segment
//! builder do for every frame of every sample.

use std::collections::HashMap;

/// Where the entries of one pprof table (locations, functions or mappings) are, by id.
/// Profilers number them 1..=n in table order (Go's runtime, the JVM agents, the OTLP and JFR
/// converters), so an id's position is found by subtraction, without hashing; any other
/// numbering goes through a map, hashed with a per-map seed (std's `RandomState`) since the ids
/// come from a request.
#[derive(Debug)]
pub enum PprofIds {
    /// Ids 1..=n, in order: the entry of id `k` is at `k - 1`.
    Dense(usize),
    /// Any other numbering: the position of each id (the first, should one repeat).
    Sparse(HashMap<u64, usize>),
}

impl PprofIds {
    /// The positions of `ids`, the id column of a table in table order.
    pub fn new(ids: impl Iterator<Item = u64> + Clone) -> Self {
        let mut count = 0;
        if ids.clone().all(|id| {
            count += 1;
            id == count as u64
        }) {
            return PprofIds::Dense(count);
        }
        let mut positions = HashMap::new();
        for (position, id) in ids.enumerate() {
            positions.entry(id).or_insert(position);
        }
        PprofIds::Sparse(positions)
    }

    /// The position of the entry with `id`, if the table has one. Inlined: the segment builder
    /// looks up every frame of every sample.
    #[inline]
    pub fn position(&self, id: u64) -> Option<usize> {
        match self {
            PprofIds::Dense(len) => (1..=*len as u64).contains(&id).then(|| (id - 1) as usize),
            PprofIds::Sparse(positions) => positions.get(&id).copied(),
        }
    }

    /// True when the table has an entry with `id`.
    pub fn contains(&self, id: u64) -> bool {
        self.position(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::PprofIds;

    #[test]
    fn dense_and_sparse_ids_find_the_same_positions() {
        let dense = PprofIds::new([1, 2, 3].into_iter());
        assert!(matches!(dense, PprofIds::Dense(3)));
        assert_eq!(
            [0, 1, 2, 3, 4].map(|id| dense.position(id)),
            [None, Some(0), Some(1), Some(2), None]
        );
        let sparse = PprofIds::new([7, 3, 9, 3].into_iter());
        assert!(matches!(sparse, PprofIds::Sparse(_)));
        assert_eq!(
            [7, 3, 9, 1, 0].map(|id| sparse.position(id)),
            [Some(0), Some(1), Some(2), None, None]
        );
        let empty = PprofIds::new(std::iter::empty());
        assert!(!empty.contains(0) && !empty.contains(1));
    }
}
