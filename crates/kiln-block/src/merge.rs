//! Merging datasets of one tenant and service into one, as compaction does: symbols, stacks and
//! series deduplicated across every input, each (series, profile id) once, and rows sorted by
//! series and time.
//!
//! A merge holds every sample of its inputs until it finishes, so it keeps them compact: a
//! sample's labels (span and trace ids) are interned as ids of their strings, once per distinct
//! set, rather than one shared allocation per sample row as a decoded dataset has them; the
//! samples' vector can be sized up front ([`DatasetMerger::reserve_samples`]).

use std::sync::Arc;

use kiln_model::{Labels, SampleLabels};

use crate::data::{DatasetData, Function, Location, Mapping, ProfileRow, SampleRow, SeriesRow};
use crate::intern::{FastSet, Interner};

/// A sample while merged: [`SampleRow`] with its labels as an id into the merge's label sets.
#[derive(Clone, Copy, Debug)]
struct MergedSample {
    profile: u32,
    stack: u32,
    value: i64,
    /// 0: no labels; `k > 0`: the label set `k`.
    labels: u32,
}

/// A label set as ids of its strings (0: absent), in [`SampleLabels`]' field order.
type LabelIds = [u32; 4];

/// Accumulates datasets of one tenant and service and merges them into one.
#[derive(Debug)]
pub struct DatasetMerger {
    tenant: String,
    service_name: String,
    strings: Interner<String>,
    mappings: Interner<Mapping>,
    functions: Interner<Function>,
    locations: Interner<Location>,
    stacks: Interner<(u32, u32)>,
    series: Interner<(String, Labels)>,
    /// Strings of sample labels (id `k > 0` is row `k - 1`), apart from the symbols' strings,
    /// which are written to the block's string table.
    label_strings: Interner<String>,
    /// Distinct sample label sets (id `k > 0` is row `k - 1`).
    label_sets: Interner<LabelIds>,
    /// (series, profile id) of every profile taken, to keep each once.
    seen: FastSet<(u32, String)>,
    profiles: Vec<ProfileRow>,
    samples: Vec<MergedSample>,
    duplicates: u64,
}

impl DatasetMerger {
    /// An empty merge of `service_name` of `tenant`.
    pub fn new(tenant: &str, service_name: &str) -> Self {
        let mut strings = Interner::new(0);
        strings.intern(String::new());
        Self {
            tenant: tenant.to_string(),
            service_name: service_name.to_string(),
            strings,
            mappings: Interner::new(1),
            functions: Interner::new(0),
            locations: Interner::new(0),
            stacks: Interner::new(1),
            series: Interner::new(0),
            label_strings: Interner::new(1),
            label_sets: Interner::new(1),
            seen: FastSet::default(),
            profiles: Vec::new(),
            samples: Vec::new(),
            duplicates: 0,
        }
    }

    /// Profile rows left out because an earlier input had the same series and profile id.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Room for `additional` more samples: a caller that knows how many samples its inputs hold
    /// spares the merge the growth of its largest vector (and the slack a doubling leaves).
    /// Best effort: nothing is reserved when the allocation fails.
    pub fn reserve_samples(&mut self, additional: usize) {
        let _ = self.samples.try_reserve_exact(additional);
    }

    /// Adds one input (of this tenant and service; checked references, as the reader gives).
    /// Inputs added first win when a profile appears twice.
    pub fn add(&mut self, input: &DatasetData) {
        self.add_where(input, |_| true);
    }

    /// Adds the profiles of `input` that `keep` selects, with their samples; only the symbols
    /// and stacks those samples use are taken.
    pub fn add_where(&mut self, input: &DatasetData, keep: impl Fn(&ProfileRow) -> bool) {
        let mut map = InputMap::new(input);
        let mut profiles: Vec<Option<u32>> = Vec::with_capacity(input.profiles.len());
        for profile in &input.profiles {
            if !keep(profile) {
                profiles.push(None);
                continue;
            }
            let series = map.series(self, profile.series);
            if !self.seen.insert((series, profile.profile_id.clone())) {
                self.duplicates += 1;
                profiles.push(None);
                continue;
            }
            profiles.push(Some(self.profiles.len() as u32));
            self.profiles.push(ProfileRow {
                series,
                ..profile.clone()
            });
        }
        for sample in &input.samples {
            if let Some(profile) = profiles[sample.profile as usize] {
                let stack = map.stack(self, sample.stack);
                let labels = map.labels(self, &sample.labels);
                self.samples.push(MergedSample {
                    profile,
                    stack,
                    value: sample.value,
                    labels,
                });
            }
        }
    }

    /// The merged dataset: series sorted by profile type and labels, profiles by series, time
    /// and id, samples grouped by profile in that order.
    pub fn finish(self) -> DatasetData {
        let Self {
            tenant,
            service_name,
            strings,
            mappings,
            functions,
            locations,
            stacks,
            series,
            mut profiles,
            mut samples,
            label_strings,
            label_sets,
            ..
        } = self;
        let series_order = sorted_order(series.rows(), |a, b| a.cmp(b));
        let series_rank = rank(&series_order);
        for profile in &mut profiles {
            profile.series = series_rank[profile.series as usize];
        }
        let profile_order = sorted_order(&profiles, |a, b| {
            (a.series, a.time_nanos, &a.profile_id).cmp(&(b.series, b.time_nanos, &b.profile_id))
        });
        let profile_rank = rank(&profile_order);
        for sample in &mut samples {
            sample.profile = profile_rank[sample.profile as usize];
        }
        // Stable: samples of one profile keep their order.
        samples.sort_by_key(|s| s.profile);
        let labels = label_arcs(label_strings, label_sets);
        // The same size as `MergedSample`: collected in place.
        let samples: Vec<SampleRow> = samples
            .into_iter()
            .map(|s| SampleRow {
                profile: s.profile,
                stack: s.stack,
                value: s.value,
                labels: Arc::clone(&labels[s.labels as usize]),
            })
            .collect();
        let series_rows = series_order
            .iter()
            .map(|&i| {
                let (profile_type, labels) = series.rows()[i as usize].clone();
                SeriesRow {
                    profile_type,
                    labels,
                }
            })
            .collect();
        let profile_rows = profile_order
            .iter()
            .map(|&i| profiles[i as usize].clone())
            .collect();
        DatasetData {
            tenant,
            service_name,
            series: series_rows,
            profiles: profile_rows,
            samples,
            symbols: Arc::new(crate::data::Symbols {
                strings: strings.into_rows(),
                mappings: mappings.into_rows(),
                functions: functions.into_rows(),
                locations: locations.into_rows(),
                stacks: stacks.into_rows(),
            }),
        }
    }
}

/// Each label set as one shared allocation, indexed by label set id (0: no labels).
fn label_arcs(strings: Interner<String>, sets: Interner<LabelIds>) -> Vec<Arc<SampleLabels>> {
    let strings = strings.into_rows();
    let text = |id: u32| (id != 0).then(|| strings[id as usize - 1].clone());
    let mut arcs = Vec::with_capacity(sets.rows().len() + 1);
    arcs.push(Arc::new(SampleLabels::default()));
    arcs.extend(
        sets.into_rows()
            .into_iter()
            .map(|[span_id, span_name, trace_id, profile_id]| {
                Arc::new(SampleLabels {
                    span_id: text(span_id),
                    span_name: text(span_name),
                    trace_id: text(trace_id),
                    profile_id: text(profile_id),
                })
            }),
    );
    arcs
}

/// Positions of `rows` in sorted order.
fn sorted_order<T>(rows: &[T], compare: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<u32> {
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_by(|&a, &b| compare(&rows[a as usize], &rows[b as usize]));
    order
}

/// The inverse of an order: `rank[old position] = new position`.
fn rank(order: &[u32]) -> Vec<u32> {
    let mut rank = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        rank[old as usize] = new as u32;
    }
    rank
}

/// The ids of one input mapped onto the merge's, interned the first time a kept sample needs
/// them (memoized per input id).
struct InputMap<'a> {
    input: &'a DatasetData,
    strings: Vec<Option<u32>>,
    mappings: Vec<Option<u32>>,
    functions: Vec<Option<u32>>,
    locations: Vec<Option<u32>>,
    /// Index 0 is the empty stack.
    stacks: Vec<Option<u32>>,
    series: Vec<Option<u32>>,
    /// The last label set mapped and its id: rows of one sample's labels share an allocation.
    last_labels: Option<(*const SampleLabels, u32)>,
}

impl<'a> InputMap<'a> {
    fn new(input: &'a DatasetData) -> Self {
        let symbols = &input.symbols;
        let mut stacks = vec![None; symbols.stacks.len() + 1];
        stacks[0] = Some(0);
        Self {
            input,
            strings: vec![None; symbols.strings.len()],
            mappings: vec![None; symbols.mappings.len()],
            functions: vec![None; symbols.functions.len()],
            locations: vec![None; symbols.locations.len()],
            stacks,
            series: vec![None; input.series.len()],
            last_labels: None,
        }
    }

    /// The merge's id of a sample's label set (0 for none).
    fn labels(&mut self, merger: &mut DatasetMerger, labels: &Arc<SampleLabels>) -> u32 {
        if let Some((last, id)) = self.last_labels
            && std::ptr::eq(last, Arc::as_ptr(labels))
        {
            return id;
        }
        let SampleLabels {
            span_id,
            span_name,
            trace_id,
            profile_id,
        } = labels.as_ref();
        let mut intern = |value: &Option<String>| {
            value
                .as_deref()
                .map_or(0, |text| merger.label_strings.intern_borrowed(text))
        };
        let ids = [
            intern(span_id),
            intern(span_name),
            intern(trace_id),
            intern(profile_id),
        ];
        let id = if ids == [0; 4] {
            0
        } else {
            merger.label_sets.intern(ids)
        };
        self.last_labels = Some((Arc::as_ptr(labels), id));
        id
    }

    fn series(&mut self, merger: &mut DatasetMerger, id: u32) -> u32 {
        if let Some(mapped) = self.series[id as usize] {
            return mapped;
        }
        let row = &self.input.series[id as usize];
        let mapped = merger
            .series
            .intern((row.profile_type.clone(), row.labels.clone()));
        self.series[id as usize] = Some(mapped);
        mapped
    }

    fn string(&mut self, merger: &mut DatasetMerger, id: u32) -> u32 {
        if let Some(mapped) = self.strings[id as usize] {
            return mapped;
        }
        let mapped = merger
            .strings
            .intern_borrowed(self.input.symbols.strings[id as usize].as_str());
        self.strings[id as usize] = Some(mapped);
        mapped
    }

    fn mapping(&mut self, merger: &mut DatasetMerger, id: u32) -> u32 {
        if id == 0 {
            return 0;
        }
        if let Some(mapped) = self.mappings[id as usize - 1] {
            return mapped;
        }
        let m = &self.input.symbols.mappings[id as usize - 1];
        let mapping = Mapping {
            filename: self.string(merger, m.filename),
            build_id: self.string(merger, m.build_id),
            ..m.clone()
        };
        let mapped = merger.mappings.intern(mapping);
        self.mappings[id as usize - 1] = Some(mapped);
        mapped
    }

    fn function(&mut self, merger: &mut DatasetMerger, id: u32) -> u32 {
        if let Some(mapped) = self.functions[id as usize] {
            return mapped;
        }
        let f = &self.input.symbols.functions[id as usize];
        let function = Function {
            name: self.string(merger, f.name),
            system_name: self.string(merger, f.system_name),
            filename: self.string(merger, f.filename),
            start_line: f.start_line,
        };
        let mapped = merger.functions.intern(function);
        self.functions[id as usize] = Some(mapped);
        mapped
    }

    fn location(&mut self, merger: &mut DatasetMerger, id: u32) -> u32 {
        if let Some(mapped) = self.locations[id as usize] {
            return mapped;
        }
        let l = &self.input.symbols.locations[id as usize];
        let location = Location {
            mapping: self.mapping(merger, l.mapping),
            address: l.address,
            lines: l
                .lines
                .iter()
                .map(|&(function, line)| (self.function(merger, function), line))
                .collect(),
            is_folded: l.is_folded,
        };
        let mapped = merger.locations.intern(location);
        self.locations[id as usize] = Some(mapped);
        mapped
    }

    /// The merge's node for input stack node `id`, interning the path from the root as needed.
    fn stack(&mut self, merger: &mut DatasetMerger, id: u32) -> u32 {
        // Walk up to the nearest mapped ancestor, then intern back down: no recursion, so deep
        // stacks cannot overflow the thread's stack.
        let mut path = Vec::new();
        let mut node = id;
        while self.stacks[node as usize].is_none() {
            path.push(node);
            node = self.input.symbols.stacks[node as usize - 1].0;
        }
        let mut mapped = self.stacks[node as usize].expect("mapped ancestor");
        for &node in path.iter().rev() {
            let location = self.input.symbols.stacks[node as usize - 1].1;
            let location = self.location(merger, location);
            mapped = merger.stacks.intern((mapped, location));
            self.stacks[node as usize] = Some(mapped);
        }
        mapped
    }
}

#[cfg(test)]
mod tests;
