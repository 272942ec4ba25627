//! The in-memory form of a dataset: what the builder fills and the reader returns.

use std::sync::Arc;

use kiln_model::{Labels, SampleLabels};

/// One dataset (tenant and service) of a segment or block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetData {
    /// The tenant.
    pub tenant: String,
    /// The service.
    pub service_name: String,
    /// Series, indexed by [`ProfileRow::series`].
    pub series: Vec<SeriesRow>,
    /// One row per (profile, series), indexed by [`SampleRow::profile`].
    pub profiles: Vec<ProfileRow>,
    /// Samples.
    pub samples: Vec<SampleRow>,
    /// The dataset's deduplicated symbols: shared, since a reader caches them apart from the
    /// samples (one decoded copy serves every read of the dataset's region).
    pub symbols: Arc<Symbols>,
}

impl DatasetData {
    /// Rows of all its tables: what encoding it costs, roughly.
    pub fn rows(&self) -> usize {
        let symbols = &self.symbols;
        self.series.len()
            + self.profiles.len()
            + self.samples.len()
            + symbols.strings.len()
            + symbols.mappings.len()
            + symbols.functions.len()
            + symbols.locations.len()
            + symbols.stacks.len()
    }
}

/// A series: a profile type and a label set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesRow {
    /// Profile type id, equal to the `__profile_type__` label.
    pub profile_type: String,
    /// All labels of the series.
    pub labels: Labels,
}

/// The part of one profile that belongs to one series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileRow {
    /// Index into [`DatasetData::series`].
    pub series: u32,
    /// The profile's id; queries count a profile id once.
    pub profile_id: String,
    /// Start time, unix nanoseconds.
    pub time_nanos: i64,
    /// Duration in nanoseconds (0 when unknown).
    pub duration_nanos: i64,
    /// Sampling period in the period type's unit.
    pub period: i64,
}

/// One stack and value.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRow {
    /// Index into [`DatasetData::profiles`].
    pub profile: u32,
    /// Stack node id: 0 is the empty stack, otherwise `symbols.stacks[stack - 1]` is the leaf.
    pub stack: u32,
    /// The value.
    pub value: i64,
    /// Labels kept on the sample (span and trace ids).
    pub labels: Arc<SampleLabels>,
}

/// Deduplicated symbols, pprof's tables with dense ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbols {
    /// Strings; index 0 is always "".
    pub strings: Vec<String>,
    /// Mappings; mapping id `k > 0` is `mappings[k - 1]`, 0 means none.
    pub mappings: Vec<Mapping>,
    /// Functions, indexed by [`Location::lines`].
    pub functions: Vec<Function>,
    /// Locations, indexed by the `location` of a stack node.
    pub locations: Vec<Location>,
    /// Stack tree nodes `(parent, location)`: node id `k > 0` is `stacks[k - 1]`; a parent of 0
    /// is the root. Parents always have smaller ids than their children.
    pub stacks: Vec<(u32, u32)>,
}

impl Default for Symbols {
    fn default() -> Self {
        Self {
            strings: vec![String::new()],
            mappings: Vec::new(),
            functions: Vec::new(),
            locations: Vec::new(),
            stacks: Vec::new(),
        }
    }
}

impl Symbols {
    /// The locations of stack node `stack`, leaf first.
    pub fn stack_locations(&self, mut stack: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while stack != 0 {
            let (parent, location) = self.stacks[stack as usize - 1];
            out.push(location);
            stack = parent;
        }
        out
    }

    /// The string at `index`.
    pub fn string(&self, index: u32) -> &str {
        &self.strings[index as usize]
    }
}

/// A binary or library mapped into the process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// Start address.
    pub memory_start: u64,
    /// End address.
    pub memory_limit: u64,
    /// Offset in the file.
    pub file_offset: u64,
    /// String id of the file name.
    pub filename: u32,
    /// String id of the build id.
    pub build_id: u32,
}

/// A function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Function {
    /// String id of the name.
    pub name: u32,
    /// String id of the system (mangled) name.
    pub system_name: u32,
    /// String id of the source file.
    pub filename: u32,
    /// First line of the function.
    pub start_line: i64,
}

/// A program counter with its (possibly inlined) source lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// Mapping id (0: none).
    pub mapping: u32,
    /// Instruction address.
    pub address: u64,
    /// `(function index, line)`, the innermost inlined frame first, as in pprof.
    pub lines: Vec<(u32, i64)>,
    /// pprof's is_folded.
    pub is_folded: bool,
}
