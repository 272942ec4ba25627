//! Why an OTLP profile, or a whole request's dictionary, cannot be used.

use thiserror::Error;

use crate::ModelError;

/// What is wrong with an OTLP profile or with the dictionary its request shares.
///
/// Every variant is the sender's fault. The messages name the table, entry, index or value
/// that is wrong; docs/profile-types.md quotes the `StackIndex` one.
#[derive(Clone, Debug, Error)]
pub enum OtlpError {
    /// The dictionary's string table does not start with the empty string.
    #[error("dictionary string_table[0] must be the empty string")]
    StringTableStart,
    /// An index inside the dictionary points outside the table it refers to: a request in an
    /// older layout (v1.9 and earlier) decodes into such indices.
    #[error(
        "{table}[{entry}].{field} {index} is out of range: the table has {len} entries (is the sender on OTLP profiles v1.10 or later?)"
    )]
    DictionaryIndex {
        /// The dictionary table holding the bad reference, e.g. `function_table`.
        table: &'static str,
        /// The entry of that table.
        entry: usize,
        /// The field of the entry, e.g. `name_strindex` or `lines.function_index`.
        field: &'static str,
        /// The index found there.
        index: i32,
        /// Entries of the table referred to (the string table counts at least one).
        len: usize,
    },
    /// A link of the dictionary has ids of the wrong length.
    #[error(
        "link_table[{entry}] must have a 16-byte trace_id and an 8-byte span_id, got {trace_id} and {span_id}"
    )]
    LinkIdLength {
        /// The entry of `link_table`.
        entry: usize,
        /// Length of its trace id in bytes.
        trace_id: usize,
        /// Length of its span id in bytes.
        span_id: usize,
    },
    /// One of the profile's own `attribute_indices` points outside `attribute_table`.
    #[error("attribute index {0} is out of range")]
    ProfileAttribute(i32),
    /// The profile's `sample_type` names no type.
    #[error("the profile has no sample_type")]
    NoSampleType,
    /// One of a sample's `attribute_indices` points outside `attribute_table`.
    #[error("sample attribute index {0} is out of range")]
    SampleAttribute(i32),
    /// A sample's `stack_index` points outside `stack_table`.
    #[error(
        "sample {sample}: stack_index {index} is out of range: stack_table has {len} entries (is the sender on OTLP profiles v1.10 or later?)"
    )]
    StackIndex {
        /// The sample, by position in the profile.
        sample: usize,
        /// Its `stack_index`.
        index: i32,
        /// Entries of `stack_table`.
        len: usize,
    },
    /// A sample's `link_index` points outside `link_table`.
    #[error("sample {sample}: link_index {index} is out of range: link_table has {len} entries")]
    LinkIndex {
        /// The sample, by position in the profile.
        sample: usize,
        /// Its `link_index`.
        index: i32,
        /// Entries of `link_table`.
        len: usize,
    },
    /// A sample has both values and timestamps, but not as many of each.
    #[error(
        "sample {sample}: {values} values but {timestamps} timestamps; they must be equal in number"
    )]
    TimestampCount {
        /// The sample, by position in the profile.
        sample: usize,
        /// Number of its values.
        values: usize,
        /// Number of its timestamps.
        timestamps: usize,
    },
    /// A sample's value does not fit in an `i64` once multiplied by the period.
    #[error("sample {sample}: value overflows")]
    ValueOverflow {
        /// The sample, by position in the profile.
        sample: usize,
    },
    /// The converted pprof fails validation or normalization like any pprof would.
    #[error(transparent)]
    Normalize(#[from] ModelError),
}
