//! The string table of a pprof being built, shared by every converter and the query-side
//! pprof builder.

use std::collections::HashMap;

/// Interns strings into a pprof `string_table`.
///
/// Index 0 is always the empty string, as pprof requires. [`StringTable::intern`] hands out
/// the index of a string by content, adding it only the first time; indices are `i64` because
/// that is what pprof's string references are. Looking up a string already interned does not
/// allocate (std's hasher, as the interners it replaces used). There is no size limit: the
/// table grows with the distinct strings of the input, which its decoder has already bounded.
#[derive(Clone, Debug)]
pub struct StringTable {
    /// The table, in index order.
    strings: Vec<String>,
    /// Index of every string interned through this table (not of those it was built on, see
    /// [`StringTable::extending`]).
    ids: HashMap<String, i64>,
}

impl Default for StringTable {
    fn default() -> Self {
        Self::new()
    }
}

impl StringTable {
    /// A table holding only the empty string, at index 0.
    pub fn new() -> Self {
        let mut ids = HashMap::new();
        ids.insert(String::new(), 0);
        Self {
            strings: vec![String::new()],
            ids,
        }
    }

    /// A table that appends to `strings`, an existing pprof string table whose indices are
    /// already referenced and so stay as they are. `strings[0]` must be the empty string; an
    /// empty `strings` gets one.
    ///
    /// Nothing of `strings` is indexed (that would cost a hash and a copy of each, where the
    /// caller adds a handful): [`StringTable::intern`] dedups only the strings interned through
    /// it, so a string the existing table holds gets an index of its own, and so does the
    /// empty string. The OTLP converter relies on the latter: an empty attribute value is a
    /// label whose string index is not 0, which normalization keeps (index 0 means "no string
    /// value").
    pub fn extending(mut strings: Vec<String>) -> Self {
        if strings.is_empty() {
            strings.push(String::new());
        }
        Self {
            strings,
            ids: HashMap::new(),
        }
    }

    /// The index of `s`, adding it to the table if it is not there yet.
    pub fn intern(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    /// Appends `s` without looking it up or indexing it, and returns its index: for a caller
    /// that dedups by some other key (the OTLP converter, by dictionary index). A later
    /// [`StringTable::intern`] of the same content gets an index of its own.
    pub fn push(&mut self, s: &str) -> i64 {
        self.strings.push(s.to_string());
        self.strings.len() as i64 - 1
    }

    /// The finished table, for `Profile::string_table`.
    pub fn into_strings(self) -> Vec<String> {
        self.strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_zero_is_empty_and_strings_dedup_by_content() {
        let mut table = StringTable::new();
        assert_eq!(table.intern(""), 0);
        assert_eq!(table.intern("main"), 1);
        assert_eq!(table.intern("work"), 2);
        assert_eq!(table.intern("main"), 1);
        assert_eq!(table.into_strings(), ["", "main", "work"]);
        assert_eq!(StringTable::default().into_strings(), [""]);
    }

    #[test]
    fn extending_keeps_the_existing_indices() {
        let existing = vec![String::new(), "cpu".to_string(), "cpu".to_string()];
        let mut table = StringTable::extending(existing);
        assert_eq!(table.intern("nanoseconds"), 3);
        assert_eq!(table.intern("nanoseconds"), 3);
        // Existing strings are not looked up: "cpu" and "" get indices of their own.
        assert_eq!(table.intern("cpu"), 4);
        assert_eq!(table.intern(""), 5);
        assert_eq!(table.intern(""), 5);
        assert_eq!(
            table.into_strings(),
            ["", "cpu", "cpu", "nanoseconds", "cpu", ""]
        );
        assert_eq!(StringTable::extending(Vec::new()).into_strings(), [""]);
    }

    #[test]
    fn pushed_strings_are_not_indexed() {
        let mut table = StringTable::new();
        assert_eq!(table.push("main"), 1);
        assert_eq!(table.push("main"), 2);
        assert_eq!(table.intern("main"), 3);
        assert_eq!(table.intern("main"), 3);
        assert_eq!(table.into_strings(), ["", "main", "main", "main"]);
    }
}
