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
    // Stacks are keyed by interned ids, never by copies of their names: each distinct frame
    // (a location's function names, or its address) is interned once per profile.
    let mut frames = Interner::default();
    let mut previous: HashMap<Vec<u32>, Vec<i64>> = HashMap::new();
    let prev_index = Index::new(prev, &mut frames);
    for sample in &prev.sample {
        let values = previous
            .entry(prev_index.key(sample, &mut frames)?)
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
    let keys: Vec<Vec<u32>> = {
        let index = Index::new(profile, &mut frames);
        profile
            .sample
            .iter()
            .map(|s| index.key(s, &mut frames))
            .collect::<Result<_>>()?
    };
    let mut merged: Vec<kiln_proto::google::v1::Sample> = Vec::with_capacity(profile.sample.len());
    let mut merged_keys: Vec<Vec<u32>> = Vec::with_capacity(profile.sample.len());
    let mut position: HashMap<Vec<u32>, usize> = HashMap::new();
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

/// What a stack key is made of: the text of a frame (a function name or a location's address),
/// or a sample label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Part<'a> {
    Name(&'a str),
    Address(u64),
    Label(&'a str, &'a str),
}

/// Ids of the parts of stack keys, shared by the two profiles so that equal stacks get equal
/// keys; parts borrow the profiles' strings.
#[derive(Debug, Default)]
struct Interner<'a> {
    ids: HashMap<Part<'a>, u32>,
    /// A location's frames, interned as one sequence.
    sequences: HashMap<Vec<u32>, u32>,
}

impl<'a> Interner<'a> {
    fn part(&mut self, part: Part<'a>) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(part).or_insert(next)
    }

    fn sequence(&mut self, parts: Vec<u32>) -> u32 {
        let next = self.sequences.len() as u32;
        *self.sequences.entry(parts).or_insert(next)
    }
}

/// A profile's locations by id, each as the interned id of its frames, or why it has none
/// (reported only when a sample uses it, as the names it refers to are looked up only then).
struct Index<'a> {
    profile: &'a Profile,
    locations: HashMap<u64, Result<u32, &'static str>>,
}

impl<'a> Index<'a> {
    fn new(profile: &'a Profile, interner: &mut Interner<'a>) -> Self {
        let functions: HashMap<u64, &kiln_proto::google::v1::Function> =
            profile.function.iter().map(|f| (f.id, f)).collect();
        let mut locations = HashMap::with_capacity(profile.location.len());
        for location in &profile.location {
            let mut parts = Vec::with_capacity(location.line.len().max(1));
            let mut frames = Ok(());
            for line in &location.line {
                let name = functions
                    .get(&line.function_id)
                    .ok_or("a line refers to a missing function")
                    .and_then(|f| {
                        profile
                            .string_table
                            .get(f.name as usize)
                            .ok_or("a reference to a missing string")
                    });
                match name {
                    Ok(name) => parts.push(interner.part(Part::Name(name))),
                    Err(reason) => {
                        frames = Err(reason);
                        break;
                    }
                }
            }
            if location.line.is_empty() {
                parts.push(interner.part(Part::Address(location.address)));
            }
            let entry = frames.map(|()| interner.sequence(parts));
            locations.insert(location.id, entry);
        }
        Self { profile, locations }
    }

    /// The frames (location frame ids, leaf first) and string labels of a sample, as ids.
    fn key(
        &self,
        sample: &kiln_proto::google::v1::Sample,
        interner: &mut Interner<'a>,
    ) -> Result<Vec<u32>> {
        let profile = self.profile;
        let string = |i: i64| -> Result<&'a str> {
            profile
                .string_table
                .get(i as usize)
                .map(String::as_str)
                .ok_or_else(|| missing("a reference to a missing string"))
        };
        let mut key = Vec::with_capacity(sample.location_id.len() + 1 + sample.label.len());
        for id in &sample.location_id {
            let frames = self
                .locations
                .get(id)
                .ok_or_else(|| missing("a sample refers to a missing location"))?;
            key.push(frames.map_err(missing)?);
        }
        key.push(u32::MAX);
        for label in sample.label.iter().filter(|l| l.str != 0) {
            key.push(interner.part(Part::Label(string(label.key)?, string(label.str)?)));
        }
        Ok(key)
    }
}

fn missing(what: &str) -> ModelError {
    ModelError::InvalidPprof(format!("prev_profile: {what}"))
}

#[cfg(test)]
mod tests {
    use kiln_proto::google::v1::{Function, Label, Line, Location, Sample, ValueType};

    use super::*;

    /// An alloc_objects profile of stacks (function names, leaf first) and values; ids and
    /// string indices are numbered from `offset` so that two profiles share none.
    fn profile(offset: u64, stacks: &[(&[&str], i64, Option<&str>)]) -> Profile {
        let mut strings = vec![String::new(), "alloc_objects".into(), "count".into()];
        let mut p = Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            ..Profile::default()
        };
        for _ in 0..offset {
            strings.push("padding".into());
        }
        for (names, value, label) in stacks {
            let mut ids = Vec::new();
            for name in *names {
                strings.push(name.to_string());
                let id = offset + p.location.len() as u64 + 1;
                p.function.push(Function {
                    id,
                    name: strings.len() as i64 - 1,
                    ..Function::default()
                });
                p.location.push(Location {
                    id,
                    line: vec![Line {
                        function_id: id,
                        ..Line::default()
                    }],
                    ..Location::default()
                });
                ids.push(id);
            }
            let label = label.map(|v| {
                strings.push("span_name".into());
                strings.push(v.into());
                Label {
                    key: strings.len() as i64 - 2,
                    str: strings.len() as i64 - 1,
                    ..Label::default()
                }
            });
            p.sample.push(Sample {
                location_id: ids,
                value: vec![*value],
                label: label.into_iter().collect(),
            });
        }
        p.string_table = strings;
        p
    }

    #[test]
    fn subtracts_matching_stacks_by_names_and_labels() {
        let previous = profile(
            0,
            &[
                (&["work", "main"], 10, None),
                (&["idle", "main"], 4, None),
                (&["work", "main"], 1, Some("a")),
            ],
        );
        let mut current = profile(
            7,
            &[
                (&["work", "main"], 15, None),
                (&["work", "main"], 2, None),
                (&["idle", "main"], 3, None),
                (&["work", "main"], 6, Some("a")),
                (&["new", "main"], 9, None),
            ],
        );
        subtract_previous(&mut current, &previous, &BTreeMap::new()).unwrap();
        let values: Vec<i64> = current.sample.iter().map(|s| s.value[0]).collect();
        assert_eq!(values, [7, 0, 5, 9]);
    }

    #[test]
    fn refuses_missing_references_of_used_locations_only() {
        let previous = profile(0, &[(&["work", "main"], 10, None)]);
        let mut current = profile(7, &[(&["work", "main"], 15, None)]);
        current.function[0].name = 999;
        let err = subtract_previous(&mut current, &previous, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("missing string"), "{err}");
        let mut current = profile(7, &[(&["work", "main"], 15, None)]);
        current.location.push(Location {
            id: 99,
            line: vec![Line {
                function_id: 12345,
                ..Line::default()
            }],
            ..Location::default()
        });
        subtract_previous(&mut current, &previous, &BTreeMap::new()).unwrap();
        current.sample[0].location_id.push(99);
        let err = subtract_previous(&mut current, &previous, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("missing function"), "{err}");
    }
}
