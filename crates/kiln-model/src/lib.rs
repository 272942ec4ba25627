//! Kiln's profile model, shared by every role.
//!
//! A profile arrives in one of the wire formats (pprof, or JFR, folded, lines and OTLP, which
//! [`formats`] converts to pprof), is decoded within byte limits, validated, and normalized
//! into [`NormalizedProfile`]: one [`SeriesProfile`] per profile type and label set, with the
//! symbols of the original pprof kept for the ingester to deduplicate. [`BlockMeta`] describes a
//! stored object for the block index, without its storage format.

mod block_meta;
mod decode;
mod error;
pub mod formats;
mod labels;
mod limit;
mod matcher;
mod normalize;
mod pprof_ids;
mod pprof_wire;
mod profile_type;
mod string_table;
mod tenant;
mod time;

pub use block_meta::{BlockMeta, DatasetMeta, PARTITION_NANOS, partition_of};
pub use decode::{DecodeBudget, DecodeLimits, PprofCounts, decode_pprof, decompress};
pub use error::{ModelError, Result};
pub use labels::{
    LABEL_NAME, LABEL_PROFILE_TYPE, LABEL_SERVICE_NAME, Labels, MAX_LABEL_NAME_LEN,
    MAX_LABEL_VALUE_LEN, parse_app_name, validate_label_name, validate_label_value,
};
pub use limit::{LimitExceeded, NormalizeLimits};
pub use matcher::{LabelMatcher, MAX_REGEX_BYTES, MatchOp, bounded_regex};
pub use normalize::{
    NormalizeOptions, NormalizedProfile, NormalizedSample, SampleLabels, SeriesProfile, normalize,
    validate_references,
};
pub use pprof_ids::PprofIds;
pub use profile_type::{ProfileType, profile_name_for};
pub use string_table::StringTable;
pub use tenant::{ANONYMOUS_TENANT, TenantId};
pub use time::{parse_time_nanos, timestamp_to_nanos};
