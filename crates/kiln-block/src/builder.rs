//! Builds the datasets of a segment from normalized profiles, deduplicating symbols.

use std::collections::HashMap;

use kiln_model::{Labels, NormalizedProfile, PprofIds, TenantId};
use kiln_proto::google::v1::Profile;

use crate::data::{
    DatasetData, Function, Location, Mapping, ProfileRow, SampleRow, SeriesRow, Symbols,
};
use crate::intern::{FastMap, Interner};

/// Accumulates profiles of any tenants and services until the segment is flushed.
#[derive(Debug, Default)]
pub struct SegmentBuilder {
    datasets: Vec<DatasetBuilder>,
    by_key: HashMap<(TenantId, String), usize>,
    samples: usize,
}

impl SegmentBuilder {
    /// Adds a normalized profile of `tenant`.
    pub fn add(&mut self, tenant: &TenantId, profile: &NormalizedProfile) {
        let key = (tenant.clone(), profile.service_name.clone());
        let index = *self.by_key.entry(key).or_insert_with(|| {
            self.datasets
                .push(DatasetBuilder::new(tenant.as_str(), &profile.service_name));
            self.datasets.len() - 1
        });
        self.datasets[index].add(profile);
        self.samples += profile.sample_count();
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Number of samples added so far.
    pub fn sample_count(&self) -> usize {
        self.samples
    }

    /// The datasets, ordered by tenant then service for a stable layout.
    pub fn into_datasets(self) -> Vec<DatasetData> {
        let mut datasets: Vec<DatasetData> = self
            .datasets
            .into_iter()
            .map(DatasetBuilder::finish)
            .collect();
        datasets.sort_by(|a, b| (&a.tenant, &a.service_name).cmp(&(&b.tenant, &b.service_name)));
        datasets
    }
}

/// Accumulates the profiles of one dataset (tenant and service), deduplicating its symbols and
/// stacks. Datasets are independent, so writers can fill several at once.
#[derive(Debug)]
pub struct DatasetBuilder {
    /// The rows; `data.symbols` is left empty until `finish`.
    data: DatasetData,
    strings: Interner<String>,
    mappings: Interner<Mapping>,
    functions: Interner<Function>,
    locations: Interner<Location>,
    stacks: Interner<(u32, u32)>,
    series: FastMap<Labels, u32>,
}

impl DatasetBuilder {
    /// An empty dataset of `service_name` of `tenant`.
    pub fn new(tenant: &str, service_name: &str) -> Self {
        let mut builder = Self {
            data: DatasetData {
                tenant: tenant.to_string(),
                service_name: service_name.to_string(),
                ..DatasetData::default()
            },
            strings: Interner::new(0),
            mappings: Interner::new(1),
            functions: Interner::new(0),
            locations: Interner::new(0),
            stacks: Interner::new(1),
            series: FastMap::default(),
        };
        builder.string("");
        builder
    }

    fn string(&mut self, s: &str) -> u32 {
        self.strings.intern_borrowed(s)
    }

    /// Adds a normalized profile of this dataset's service. Its symbols must be valid (as
    /// `normalize` and the ingester's wire decoding leave them).
    pub fn add(&mut self, profile: &NormalizedProfile) {
        let mut symbols = SymbolMapper::new(&profile.symbols);
        // Room for every symbol of the pprof at once, rather than growing (and rehashing) the
        // tables step by step while a new service's first profile fills them.
        let pprof = &profile.symbols;
        self.strings.reserve(pprof.string_table.len());
        self.mappings.reserve(pprof.mapping.len());
        self.functions.reserve(pprof.function.len());
        self.locations.reserve(pprof.location.len());
        // The series of one pprof's sample types share each sample's stack (one `Arc` per pprof
        // sample): resolved once, by address, for all of them rather than a walk over its frames
        // (two hashes per frame) per type. The profile outlives the map, so no address is
        // reused while it is looked up; stacks that are equal but not shared are resolved alike.
        let shared = profile.series.len() > 1;
        let mut resolved: FastMap<usize, u32> = FastMap::default();
        for series in &profile.series {
            let series_id = match self.series.get(&series.labels) {
                Some(&id) => id,
                None => {
                    let id = self.data.series.len() as u32;
                    self.data.series.push(SeriesRow {
                        profile_type: series.profile_type.id(),
                        labels: series.labels.clone(),
                    });
                    self.series.insert(series.labels.clone(), id);
                    id
                }
            };
            let profile_row = self.data.profiles.len() as u32;
            self.data.profiles.push(ProfileRow {
                series: series_id,
                profile_id: profile.profile_id.clone(),
                time_nanos: profile.time_nanos,
                duration_nanos: profile.duration_nanos,
                period: profile.period,
            });
            for sample in &series.samples {
                let address = sample.locations.as_ptr() as usize;
                let node = match shared.then(|| resolved.get(&address)).flatten() {
                    Some(&node) => node,
                    None => {
                        let mut node = 0;
                        for &location_id in sample.locations.iter().rev() {
                            let location = symbols.location(self, location_id);
                            node = self.stacks.intern((node, location));
                        }
                        if shared {
                            resolved.insert(address, node);
                        }
                        node
                    }
                };
                self.data.samples.push(SampleRow {
                    profile: profile_row,
                    stack: node,
                    value: sample.value,
                    labels: sample.labels.clone(),
                });
            }
        }
    }

    /// Number of samples added so far.
    pub fn sample_count(&self) -> usize {
        self.data.samples.len()
    }

    /// The dataset's rows and symbols.
    pub fn finish(self) -> DatasetData {
        DatasetData {
            symbols: std::sync::Arc::new(Symbols {
                strings: self.strings.into_rows(),
                mappings: self.mappings.into_rows(),
                functions: self.functions.into_rows(),
                locations: self.locations.into_rows(),
                stacks: self.stacks.into_rows(),
            }),
            ..self.data
        }
    }
}

/// Why a pprof reference resolves: `add` takes profiles whose references were validated.
const VALIDATED: &str = "a normalized profile's references resolve";

/// Maps one pprof's ids onto the dataset's, memoized per profile by table position.
struct SymbolMapper<'a> {
    pprof: &'a Profile,
    location_index: PprofIds,
    function_index: PprofIds,
    mapping_index: PprofIds,
    locations: Vec<Option<u32>>,
    functions: Vec<Option<u32>>,
    mappings: Vec<Option<u32>>,
    /// The dataset's string id of each pprof string, once looked up: a function's name and
    /// system name are usually one string, and many functions share a file.
    strings: Vec<Option<u32>>,
    /// The location being mapped, kept to reuse its allocation of lines.
    location: Location,
}

impl<'a> SymbolMapper<'a> {
    fn new(pprof: &'a Profile) -> Self {
        Self {
            pprof,
            location_index: PprofIds::new(pprof.location.iter().map(|l| l.id)),
            function_index: PprofIds::new(pprof.function.iter().map(|f| f.id)),
            mapping_index: PprofIds::new(pprof.mapping.iter().map(|m| m.id)),
            locations: vec![None; pprof.location.len()],
            functions: vec![None; pprof.function.len()],
            mappings: vec![None; pprof.mapping.len()],
            strings: vec![None; pprof.string_table.len()],
            location: Location::default(),
        }
    }

    fn string(&mut self, dataset: &mut DatasetBuilder, index: i64) -> u32 {
        let index = index as usize;
        if let Some(mapped) = self.strings[index] {
            return mapped;
        }
        let mapped = dataset.string(&self.pprof.string_table[index]);
        self.strings[index] = Some(mapped);
        mapped
    }

    /// The dataset's id of pprof location `id`: a lookup in the memo for every frame of every
    /// sample, inlined; the first lookup of each location out of line.
    #[inline]
    fn location(&mut self, dataset: &mut DatasetBuilder, id: u64) -> u32 {
        let position = self.location_index.position(id).expect(VALIDATED);
        match self.locations[position] {
            Some(mapped) => mapped,
            None => self.map_location(dataset, position),
        }
    }

    /// Maps the pprof location at `position`, its functions and mapping, the first time a
    /// sample of the profile refers to it.
    #[inline(never)]
    fn map_location(&mut self, dataset: &mut DatasetBuilder, position: usize) -> u32 {
        let source = &self.pprof.location[position];
        let mapping = if source.mapping_id == 0 {
            0
        } else {
            self.mapping(dataset, source.mapping_id)
        };
        // Built in a reused location and copied only when new: most of a profile's locations
        // are already in the dataset from its earlier profiles.
        let mut location = std::mem::take(&mut self.location);
        location.lines.clear();
        for line in &source.line {
            let function = self.function(dataset, line.function_id);
            location.lines.push((function, line.line));
        }
        location.mapping = mapping;
        location.address = source.address;
        location.is_folded = source.is_folded;
        let mapped = dataset.locations.intern_borrowed(&location);
        self.location = location;
        self.locations[position] = Some(mapped);
        mapped
    }

    fn function(&mut self, dataset: &mut DatasetBuilder, id: u64) -> u32 {
        let position = self.function_index.position(id).expect(VALIDATED);
        if let Some(mapped) = self.functions[position] {
            return mapped;
        }
        let source = &self.pprof.function[position];
        let function = Function {
            name: self.string(dataset, source.name),
            system_name: self.string(dataset, source.system_name),
            filename: self.string(dataset, source.filename),
            start_line: source.start_line,
        };
        let mapped = dataset.functions.intern(function);
        self.functions[position] = Some(mapped);
        mapped
    }

    fn mapping(&mut self, dataset: &mut DatasetBuilder, id: u64) -> u32 {
        let position = self.mapping_index.position(id).expect(VALIDATED);
        if let Some(mapped) = self.mappings[position] {
            return mapped;
        }
        let source = &self.pprof.mapping[position];
        let mapping = Mapping {
            memory_start: source.memory_start,
            memory_limit: source.memory_limit,
            file_offset: source.file_offset,
            filename: self.string(dataset, source.filename),
            build_id: self.string(dataset, source.build_id),
        };
        let mapped = dataset.mappings.intern(mapping);
        self.mappings[position] = Some(mapped);
        mapped
    }
}
