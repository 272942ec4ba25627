//! Converters of the formats other than pprof (the /ingest ones and OTLP profiles) into
//! pprof, and pprof's cumulative helpers.

mod delta;
mod folded;
mod jfr;
mod legacy;
pub mod otlp;

pub use delta::{SampleTypeConfig, is_cumulative, parse_sample_type_config, subtract_previous};
pub use folded::{parse_folded, parse_lines};
pub use jfr::{JfrProfile, parse_jfr};
pub use legacy::{LegacyType, legacy_type};
