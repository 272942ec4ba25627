//! Limits that bound what decoding and normalizing one request may cost, checked before the
//! work they bound: the distributor passes each tenant's values in.

use thiserror::Error;

/// A profile over one of the limits that bound the cost of decoding and normalizing it.
///
/// Each message names the limit and its value. The distributor turns these into its per-tenant
/// limit errors (which add the tenant); other callers see them inside [`crate::ModelError`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LimitExceeded {
    /// More samples than `max_samples_per_profile`, counted in the wire format before decoding.
    #[error("profile has {samples} samples, over max_samples_per_profile {limit}")]
    Samples {
        /// Samples of the profile (zero-valued ones included).
        samples: usize,
        /// The limit.
        limit: usize,
    },
    /// The decoded profiles of one request would take more memory than `max_decoded_bytes`.
    #[error("decoded profiles would take {bytes} bytes, over max_decoded_bytes {limit}")]
    DecodedBytes {
        /// Estimated bytes of the request's decoded profiles so far.
        bytes: u64,
        /// The limit.
        limit: usize,
    },
    /// A series with more label names than `max_label_names_per_series`.
    #[error("series has {names} label names, over max_label_names_per_series {limit}")]
    LabelNames {
        /// Label names of the series (at least this many).
        names: usize,
        /// The limit.
        limit: usize,
    },
    /// A label name longer than `max_label_name_length`.
    #[error("label name {name:?}... is {length} bytes, over max_label_name_length {limit}")]
    LabelNameLength {
        /// The first bytes of the name.
        name: String,
        /// Its length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// A label value longer than `max_label_value_length`.
    #[error("value of label {name} is {length} bytes, over max_label_value_length {limit}")]
    LabelValueLength {
        /// The label's name.
        name: String,
        /// The value's length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// One profile alone makes more series than `max_series_per_tenant`.
    #[error("profile would make {series} series, over max_series_per_tenant {limit}")]
    Series {
        /// Series of the profile (sample types times label sets with data).
        series: usize,
        /// The limit.
        limit: usize,
    },
}

/// The label and series limits normalization checks before it copies a label set per sample
/// type. 0 turns a limit off (the default: no limits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NormalizeLimits {
    /// Label names per series, derived ones (`__name__`, `__profile_type__`, ...) included.
    pub max_label_names_per_series: usize,
    /// Bytes of a label name.
    pub max_label_name_length: usize,
    /// Bytes of a label value.
    pub max_label_value_length: usize,
    /// Series one profile may make.
    pub max_series: usize,
}

/// `text` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate_str(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl NormalizeLimits {
    /// Checks the name and value lengths of one label.
    pub(crate) fn check_label(&self, name: &str, value: &str) -> Result<(), LimitExceeded> {
        if self.max_label_name_length > 0 && name.len() > self.max_label_name_length {
            return Err(LimitExceeded::LabelNameLength {
                name: truncate_str(name, 64).to_string(),
                length: name.len(),
                limit: self.max_label_name_length,
            });
        }
        if self.max_label_value_length > 0 && value.len() > self.max_label_value_length {
            return Err(LimitExceeded::LabelValueLength {
                name: name.to_string(),
                length: value.len(),
                limit: self.max_label_value_length,
            });
        }
        Ok(())
    }

    /// Checks a series' number of label names.
    pub(crate) fn check_names(&self, names: usize) -> Result<(), LimitExceeded> {
        if self.max_label_names_per_series > 0 && names > self.max_label_names_per_series {
            return Err(LimitExceeded::LabelNames {
                names,
                limit: self.max_label_names_per_series,
            });
        }
        Ok(())
    }
}
