//! Dense pprof ids for the dictionary entries one profile uses.
//!
//! A request's profiles share one dictionary, and each profile's pprof holds only the entries
//! its samples use. Those entries get ids 1..=n in order of first use, so that validation and
//! the segment builder find them by subtraction ([`crate::PprofIds`]) rather than by hashing
//! ids that are sparse dictionary indices, and each dictionary string a profile uses is copied
//! into its string table once, found again by index rather than hashed by content.
//!
//! The slots are as long as the dictionary's tables (which the request's own bytes already
//! bound) and are made once per request: each profile resets only the slots it used, so a
//! request of many small profiles over one large dictionary does not pay for the dictionary
//! per profile.

use kiln_proto::opentelemetry::proto::profiles::v1development::ProfilesDictionary;

/// A value per dictionary index, set on first use.
#[derive(Debug)]
pub(super) struct Slots {
    /// The value of each index plus one; 0 when the profile has not used it.
    values: Vec<usize>,
    /// The indices used, in order of first use.
    used: Vec<usize>,
}

impl Slots {
    fn new(len: usize) -> Self {
        Self {
            values: vec![0; len],
            used: Vec::new(),
        }
    }

    /// The value of `index`, made by `value` (given the number of indices used before it) on
    /// its first use; None outside the table.
    pub(super) fn get_or_insert_with(
        &mut self,
        index: usize,
        value: impl FnOnce(usize) -> usize,
    ) -> Option<usize> {
        let slot = self.values.get_mut(index)?;
        if *slot == 0 {
            *slot = value(self.used.len()) + 1;
            self.used.push(index);
        }
        Some(*slot - 1)
    }

    /// The dense id of `index`: 1 for the first index used, 2 for the next, and so on; None
    /// outside the table.
    pub(super) fn id(&mut self, index: usize) -> Option<u64> {
        self.get_or_insert_with(index, |before| before + 1)
            .map(|id| id as u64)
    }

    /// The indices used since the last reset, in order of first use (so in id order).
    pub(super) fn used(&self) -> &[usize] {
        &self.used
    }

    fn reset(&mut self) {
        for &index in &self.used {
            self.values[index] = 0;
        }
        self.used.clear();
    }
}

/// The slots of every dictionary table a profile's pprof draws from.
#[derive(Debug)]
pub(super) struct Renumbering {
    /// Location index to pprof location id.
    pub(super) locations: Slots,
    /// Function index to pprof function id.
    pub(super) functions: Slots,
    /// Mapping index to pprof mapping id.
    pub(super) mappings: Slots,
    /// String index to the index in the profile's string table.
    pub(super) strings: Slots,
}

impl Renumbering {
    /// Empty slots for every entry of `d`.
    pub(super) fn new(d: &ProfilesDictionary) -> Self {
        Self {
            locations: Slots::new(d.location_table.len()),
            functions: Slots::new(d.function_table.len()),
            mappings: Slots::new(d.mapping_table.len()),
            strings: Slots::new(d.string_table.len()),
        }
    }

    /// Forgets the previous profile's entries.
    pub(super) fn reset(&mut self) {
        self.locations.reset();
        self.functions.reset();
        self.mappings.reset();
        self.strings.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn ids_are_dense_in_order_of_first_use_and_reset_forgets_them() {
        let mut slots = Slots::new(10);
        assert_eq!(
            [7, 3, 7, 9, 3, 10].map(|i| slots.id(i)),
            [Some(1), Some(2), Some(1), Some(3), Some(2), None]
        );
        assert_eq!(slots.used(), [7, 3, 9]);
        slots.reset();
        assert_eq!(slots.used(), [] as [usize; 0]);
        assert_eq!([9, 7].map(|i| slots.id(i)), [Some(1), Some(2)]);
        assert_eq!(slots.get_or_insert_with(4, |_| 40), Some(40));
        assert_eq!(slots.get_or_insert_with(4, |_| 41), Some(40));
    }
}
