//! Cumulative profiles to deltas (`prev_profile`) and pyroscope-go's `sample_type_config`.

use std::collections::{BTreeMap, HashMap};

use kiln_proto::google::v1::Profile;
use serde::Deserialize;

use crate::{ModelError, Result};

/// One entry of `sample_type_config`, keyed by pprof sample type.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SampleTypeConfig {
    /// Display units (`objects`, `bytes`, `lock_samples`, ...); informational.
    #[serde(default)]
    pub units: Option<String>,
    /// `sum` or `average`; informational.
    #[serde(default)]
    pub aggregation: Option<String>,
    /// The legacy name (`mutex_count`, `block_duration`, ...); picks `__name__`.
    #[serde(default, rename = "display-name")]
    pub display_name: Option<String>,
    /// True for types whose values accumulate over the process's life.
    #[serde(default)]
    pub cumulative: Option<bool>,
    /// True for sampled types.
    #[serde(default)]
    pub sampled: Option<bool>,
}

/// Parses the `sample_type_config` JSON.
pub fn parse_sample_type_config(json: &[u8]) -> Result<BTreeMap<String, SampleTypeConfig>> {
    serde_json::from_slice(json)
        .map_err(|e| ModelError::InvalidPprof(format!("invalid sample_type_config JSON: {e}")))
}

/// Whether a sample type is cumulative: as configured, else Pyroscope's default (allocations,
/// contentions and delays are; in-use memory and CPU are not).
pub fn is_cumulative(sample_type: &str, config: &BTreeMap<String, SampleTypeConfig>) -> bool {
    config
        .get(sample_type)
        .and_then(|c| c.cumulative)
        .unwrap_or(matches!(
            sample_type,
            "alloc_objects" | "alloc_space" | "contentions" | "delay"
        ))
}

/// Replaces every cumulative sample type's values of `profile` with `profile − prev`, stack by
/// stack (stacks matched by their frames and string labels); a stack that shrank counts zero.
/// Non-cumulative types keep their values.
pub fn subtract_previous(
    profile: &mut Profile,
    prev: &Profile,
    config: &BTreeMap<String, SampleTypeConfig>,
) -> Result<()> {
    let types = |p: &Profile| -> Result<Vec<String>> {
        p.sample_type
            .iter()
            .map(|t| {
                p.string_table
                    .get(t.r#type as usize)
                    .cloned()
                    .ok_or_else(|| {
                        ModelError::InvalidPprof(
                            "sample type refers to a missing string".to_string(),
                        )
                    })
            })
            .collect()
    };
    let current_types = types(profile)?;
    let previous_types = types(prev)?;
    let mut previous: HashMap<Vec<String>, Vec<i64>> = HashMap::new();
    let prev_index = Index::new(prev);
    for sample in &prev.sample {
        let values = previous
            .entry(prev_index.key(sample)?)
            .or_insert_with(|| vec![0; previous_types.len()]);
        for (total, value) in values.iter_mut().zip(&sample.value) {
            *total += value;
        }
    }
    let columns: Vec<Option<usize>> = current_types
        .iter()
        .map(|t| {
            is_cumulative(t, config)
                .then(|| previous_types.iter().position(|p| p == t))
                .flatten()
        })
        .collect();
    // Samples with the same frames and labels (Go splits them by numeric labels, which Kiln
    // does not keep) are one stack: merge them first, so the previous value is taken once.
    let keys: Vec<Vec<String>> = {
        let index = Index::new(profile);
        profile
            .sample
            .iter()
            .map(|s| index.key(s))
            .collect::<Result<_>>()?
    };
    let mut merged: Vec<kiln_proto::google::v1::Sample> = Vec::with_capacity(profile.sample.len());
    let mut merged_keys: Vec<Vec<String>> = Vec::with_capacity(profile.sample.len());
    let mut position: HashMap<Vec<String>, usize> = HashMap::new();
    for (sample, key) in std::mem::take(&mut profile.sample).into_iter().zip(keys) {
        match position.get(&key) {
            Some(&i) => {
                for (total, value) in merged[i].value.iter_mut().zip(&sample.value) {
                    *total += value;
                }
            }
            None => {
                position.insert(key.clone(), merged.len());
                merged.push(sample);
                merged_keys.push(key);
            }
        }
    }
    for (sample, key) in merged.iter_mut().zip(&merged_keys) {
        let Some(before) = previous.get(key) else {
            continue;
        };
        for (value_index, column) in columns.iter().enumerate() {
            if let (Some(column), Some(value)) = (column, sample.value.get_mut(value_index)) {
                *value = (*value - before[*column]).max(0);
            }
        }
    }
    profile.sample = merged;
    Ok(())
}

/// Lookups of a profile's locations and functions by id.
struct Index<'a> {
    profile: &'a Profile,
    locations: HashMap<u64, &'a kiln_proto::google::v1::Location>,
    functions: HashMap<u64, &'a kiln_proto::google::v1::Function>,
}

impl<'a> Index<'a> {
    fn new(profile: &'a Profile) -> Self {
        Self {
            profile,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            functions: profile.function.iter().map(|f| (f.id, f)).collect(),
        }
    }

    /// Frames (function names, leaf first) and string labels of a sample.
    fn key(&self, sample: &kiln_proto::google::v1::Sample) -> Result<Vec<String>> {
        let missing = |what: &str| ModelError::InvalidPprof(format!("prev_profile: {what}"));
        let string = |i: i64| {
            self.profile
                .string_table
                .get(i as usize)
                .cloned()
                .ok_or_else(|| missing("a reference to a missing string"))
        };
        let mut key = Vec::new();
        for id in &sample.location_id {
            let location = self
                .locations
                .get(id)
                .ok_or_else(|| missing("a sample refers to a missing location"))?;
            for line in &location.line {
                let function = self
                    .functions
                    .get(&line.function_id)
                    .ok_or_else(|| missing("a line refers to a missing function"))?;
                key.push(string(function.name)?);
            }
            if location.line.is_empty() {
                key.push(format!("0x{:x}", location.address));
            }
        }
        key.push(String::new());
        for label in sample.label.iter().filter(|l| l.str != 0) {
            key.push(format!("{}={}", string(label.key)?, string(label.str)?));
        }
        Ok(key)
    }
}
