//! Merges selected stacks into one pprof profile with a single sample type.

use std::collections::HashMap;

use kiln_block::{DatasetData, Symbols};
use kiln_model::{ProfileType, StringTable};
use kiln_proto::google::v1::{Function, Line, Location, Mapping, Profile, Sample, ValueType};

use crate::budget::{ENTRY_OVERHEAD, MergeMemory, STRING_OVERHEAD};
use crate::select::SelectedDataset;

/// A location by content: mapping id, address, (function id, line) per line, is_folded.
type LocationKey = (u64, u64, Vec<(u64, i64)>, bool);

/// Builds a merged pprof, deduplicating symbols across datasets by content.
#[derive(Debug, Default)]
pub struct PprofBuilder {
    strings: StringTable,
    functions: HashMap<(i64, i64, i64, i64), u64>,
    mappings: HashMap<(u64, u64, u64, i64, i64), u64>,
    locations: HashMap<LocationKey, u64>,
    samples: HashMap<Vec<u64>, i64>,
    /// For the merge's memory estimate: strings interned and their bytes, bytes of location
    /// lines and of sample keys.
    interned: usize,
    string_bytes: usize,
    line_bytes: usize,
    sample_key_bytes: usize,
}

impl PprofBuilder {
    /// Adds the selected samples of one dataset.
    pub fn add_selected(&mut self, dataset: &SelectedDataset) {
        self.add_stacks(dataset.data(), dataset.stack_values());
    }

    /// Adds `(stack, value)` pairs of one dataset.
    pub fn add_stacks(&mut self, data: &DatasetData, values: HashMap<u32, i64>) {
        let mut location_ids: HashMap<u32, u64> = HashMap::new();
        for (stack, value) in values {
            let mut ids = Vec::new();
            for location in data.symbols.stack_locations(stack) {
                let id = match location_ids.get(&location) {
                    Some(&id) => id,
                    None => {
                        let id = self.location(&data.symbols, location);
                        location_ids.insert(location, id);
                        id
                    }
                };
                ids.push(id);
            }
            if let Some(total) = self.samples.get_mut(&ids) {
                *total += value;
            } else {
                self.sample_key_bytes += ids.len() * 8 + std::mem::size_of::<Vec<u64>>();
                self.samples.insert(ids, value);
            }
        }
    }

    fn location(&mut self, symbols: &Symbols, index: u32) -> u64 {
        let location = &symbols.locations[index as usize];
        let mapping = match location.mapping {
            0 => 0,
            m => {
                let m = &symbols.mappings[m as usize - 1];
                let key = (
                    m.memory_start,
                    m.memory_limit,
                    m.file_offset,
                    self.intern(symbols.string(m.filename)),
                    self.intern(symbols.string(m.build_id)),
                );
                let next = self.mappings.len() as u64 + 1;
                *self.mappings.entry(key).or_insert(next)
            }
        };
        let lines: Vec<(u64, i64)> = location
            .lines
            .iter()
            .map(|(function, line)| {
                let f = &symbols.functions[*function as usize];
                let key = (
                    self.intern(symbols.string(f.name)),
                    self.intern(symbols.string(f.system_name)),
                    self.intern(symbols.string(f.filename)),
                    f.start_line,
                );
                let next = self.functions.len() as u64 + 1;
                (*self.functions.entry(key).or_insert(next), *line)
            })
            .collect();
        let next = self.locations.len() as u64 + 1;
        let key = (mapping, location.address, lines, location.is_folded);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        self.line_bytes += key.2.len() * 16;
        self.locations.insert(key, next);
        next
    }

    /// Adds everything `other` holds: its strings, mappings, functions and locations are
    /// found or added here by content, and its samples re-keyed to this builder's ids.
    pub(crate) fn absorb(&mut self, other: PprofBuilder) {
        let strings = other.strings.into_strings();
        let string = |builder: &mut Self, id: i64| {
            let text = usize::try_from(id)
                .ok()
                .and_then(|i| strings.get(i))
                .map_or("", String::as_str);
            builder.intern(text)
        };
        let mut mappings: HashMap<u64, u64> = HashMap::from([(0, 0)]);
        for ((start, limit, offset, filename, build_id), id) in other.mappings {
            let key = (
                start,
                limit,
                offset,
                string(self, filename),
                string(self, build_id),
            );
            let next = self.mappings.len() as u64 + 1;
            mappings.insert(id, *self.mappings.entry(key).or_insert(next));
        }
        let mut functions: HashMap<u64, u64> = HashMap::new();
        for ((name, system_name, filename, start_line), id) in other.functions {
            let key = (
                string(self, name),
                string(self, system_name),
                string(self, filename),
                start_line,
            );
            let next = self.functions.len() as u64 + 1;
            functions.insert(id, *self.functions.entry(key).or_insert(next));
        }
        let mut locations: HashMap<u64, u64> = HashMap::new();
        for ((mapping, address, lines, is_folded), id) in other.locations {
            let lines: Vec<(u64, i64)> = lines
                .into_iter()
                .map(|(function, line)| (functions.get(&function).copied().unwrap_or(0), line))
                .collect();
            let key = (
                mappings.get(&mapping).copied().unwrap_or(0),
                address,
                lines,
                is_folded,
            );
            let next = self.locations.len() as u64 + 1;
            let line_bytes = key.2.len() * 16;
            let merged = *self.locations.entry(key).or_insert_with(|| {
                self.line_bytes += line_bytes;
                next
            });
            locations.insert(id, merged);
        }
        for (ids, value) in other.samples {
            let ids: Vec<u64> = ids
                .into_iter()
                .map(|id| locations.get(&id).copied().unwrap_or(0))
                .collect();
            if let Some(total) = self.samples.get_mut(&ids) {
                *total += value;
            } else {
                self.sample_key_bytes += ids.len() * 8 + std::mem::size_of::<Vec<u64>>();
                self.samples.insert(ids, value);
            }
        }
    }

    /// Interns `text`, counting the bytes of strings seen for the first time.
    fn intern(&mut self, text: &str) -> i64 {
        let id = self.strings.intern(text);
        if id as usize >= self.interned {
            self.interned = id as usize + 1;
            self.string_bytes += text.len();
        }
        id
    }

    /// The merged profile of `profile_type`, covering `[start, end)`.
    pub fn finish(
        mut self,
        profile_type: &ProfileType,
        period: i64,
        start_nanos: i64,
        end_nanos: i64,
    ) -> Profile {
        let sample_type = ValueType {
            r#type: self.strings.intern(&profile_type.sample_type),
            unit: self.strings.intern(&profile_type.sample_unit),
        };
        let period_type = ValueType {
            r#type: self.strings.intern(&profile_type.period_type),
            unit: self.strings.intern(&profile_type.period_unit),
        };
        Profile {
            sample_type: vec![sample_type],
            period_type: Some(period_type),
            period,
            time_nanos: start_nanos,
            duration_nanos: end_nanos.saturating_sub(start_nanos),
            ..self.into_profile()
        }
    }

    /// The merged samples and symbols as a pprof without sample type, period or time: what a
    /// querier sends another for a part of a query ([`PprofBuilder::from_profile`]).
    pub(crate) fn into_profile(self) -> Profile {
        let mut profile = Profile::default();
        let mut samples: Vec<(Vec<u64>, i64)> = self.samples.into_iter().collect();
        samples.sort();
        profile.sample = samples
            .into_iter()
            .map(|(location_id, value)| Sample {
                location_id,
                value: vec![value],
                label: vec![],
            })
            .collect();
        let mut mappings: Vec<_> = self.mappings.into_iter().collect();
        mappings.sort_by_key(|(_, id)| *id);
        profile.mapping = mappings
            .into_iter()
            .map(|((start, limit, offset, filename, build_id), id)| Mapping {
                id,
                memory_start: start,
                memory_limit: limit,
                file_offset: offset,
                filename,
                build_id,
                has_functions: true,
                ..Mapping::default()
            })
            .collect();
        let mut functions: Vec<_> = self.functions.into_iter().collect();
        functions.sort_by_key(|(_, id)| *id);
        profile.function = functions
            .into_iter()
            .map(|((name, system_name, filename, start_line), id)| Function {
                id,
                name,
                system_name,
                filename,
                start_line,
            })
            .collect();
        let mut locations: Vec<_> = self.locations.into_iter().collect();
        locations.sort_by_key(|(_, id)| *id);
        profile.location = locations
            .into_iter()
            .map(|((mapping_id, address, lines, is_folded), id)| Location {
                id,
                mapping_id,
                address,
                line: lines
                    .into_iter()
                    .map(|(function_id, line)| Line {
                        function_id,
                        line,
                        column: 0,
                    })
                    .collect(),
                is_folded,
            })
            .collect();
        profile.string_table = self.strings.into_strings();
        profile
    }

    /// The builder of a profile made by [`PprofBuilder::into_profile`]: its symbols are found
    /// or added by content, so references that resolve to nothing become empty strings and
    /// id 0 rather than out-of-bounds indices.
    pub(crate) fn from_profile(profile: Profile) -> PprofBuilder {
        let raw = PprofBuilder {
            mappings: profile
                .mapping
                .into_iter()
                .map(|m| {
                    let key = (
                        m.memory_start,
                        m.memory_limit,
                        m.file_offset,
                        m.filename,
                        m.build_id,
                    );
                    (key, m.id)
                })
                .collect(),
            functions: profile
                .function
                .into_iter()
                .map(|f| ((f.name, f.system_name, f.filename, f.start_line), f.id))
                .collect(),
            locations: profile
                .location
                .into_iter()
                .map(|l| {
                    let lines = l
                        .line
                        .iter()
                        .map(|line| (line.function_id, line.line))
                        .collect();
                    ((l.mapping_id, l.address, lines, l.is_folded), l.id)
                })
                .collect(),
            samples: profile
                .sample
                .into_iter()
                .map(|s| (s.location_id, s.value.first().copied().unwrap_or(0)))
                .collect(),
            strings: StringTable::extending(profile.string_table),
            ..PprofBuilder::default()
        };
        let mut builder = PprofBuilder::default();
        builder.absorb(raw);
        builder
    }
}

impl MergeMemory for PprofBuilder {
    fn merge_bytes(&self) -> usize {
        // Strings are held twice by the table: in order and as lookup keys.
        2 * (self.string_bytes + self.interned * STRING_OVERHEAD)
            + self.interned * ENTRY_OVERHEAD
            + self.functions.capacity() * (40 + ENTRY_OVERHEAD)
            + self.mappings.capacity() * (48 + ENTRY_OVERHEAD)
            + self.locations.capacity() * (std::mem::size_of::<LocationKey>() + 8 + ENTRY_OVERHEAD)
            + self.line_bytes
            + self.samples.capacity() * (std::mem::size_of::<Vec<u64>>() + 8 + ENTRY_OVERHEAD)
            + self.sample_key_bytes
    }
}
