//! Decoders of the /ingest formats other than pprof, and pprof's cumulative helpers.

mod delta;
mod folded;
mod jfr;
mod legacy;

pub use delta::{SampleTypeConfig, is_cumulative, parse_sample_type_config, subtract_previous};
pub use folded::{parse_folded, parse_lines};
pub use jfr::{JfrProfile, parse_jfr};
pub use legacy::{LegacyType, legacy_type};
