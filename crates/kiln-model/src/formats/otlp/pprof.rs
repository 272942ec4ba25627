//! One OTLP profile as a pprof over its request's dictionary.
//!
//! [`to_pprof`] runs the steps in order: [`stored_type`] (what the samples are stored as, and
//! the profile's name), [`sample_label_keys`] (which sample attributes become labels),
//! [`samples`] (every sample checked and converted), then [`locations`], [`functions`] and
//! [`mappings`] (the dictionary's symbols that the samples use, numbered densely by
//! [`Renumbering`]).

use std::collections::HashSet;

use kiln_proto::google::v1 as pprof;
use kiln_proto::opentelemetry::proto::profiles::v1development::{Profile, Sample, Stack};

use super::OtlpError;
use super::dictionary::Dictionary;
use super::labels::{sample_label_keys, sanitize_label_name};
use super::renumber::{Renumbering, Slots};
use crate::{LABEL_NAME, Labels, NormalizeOptions, StringTable};

/// Mapping attributes that carry build ids, in order of preference (semantic conventions).
const BUILD_ID_KEYS: [&str; 4] = [
    "process.executable.build_id.gnu",
    "process.executable.build_id.go",
    "process.executable.build_id.htlhash",
    "process.executable.build_id.profiling",
];

/// Builds the pprof of one OTLP profile and the options to normalize it with; sets
/// `__name__` on `labels` where the OTLP type needs a name of its own.
///
/// The pprof holds only what its samples use of the request's dictionary: their locations,
/// the functions and mappings of those, and the strings of all of them (plus the labels' and
/// types'), so that a request of many profiles over one large dictionary does not copy the
/// dictionary per profile. Locations, functions and mappings get ids 1..=n in order of first
/// use (`renumber`, shared by the request's profiles). A stack deeper than `max_stack_depth`
/// (0: no limit) keeps its `max_stack_depth + 1` outermost locations, which is enough for the
/// limit's truncation to cut and count it as it does any other.
pub(super) fn to_pprof(
    dictionary: &Dictionary<'_>,
    profile: &Profile,
    labels: &mut Labels,
    now_nanos: i64,
    max_stack_depth: usize,
    renumber: &mut Renumbering,
) -> Result<(pprof::Profile, NormalizeOptions), OtlpError> {
    let stored = stored_type(dictionary, profile, labels)?;
    let label_keys = sample_label_keys(dictionary, profile)?;
    renumber.reset();
    // Index 0 is the only string not looked up: an empty label value interned later gets an
    // index of its own, which normalization keeps (index 0 means "no string value").
    let mut strings = StringTable::extending(vec![String::new()]);
    let sample = samples(
        dictionary,
        profile,
        &label_keys,
        stored.multiplier,
        max_stack_depth,
        renumber,
        &mut strings,
    )?;
    let location = locations(dictionary, renumber)?;
    let function = functions(dictionary, renumber, &mut strings);
    let mapping = mappings(dictionary, renumber, &mut strings);
    let sample_type = pprof::ValueType {
        r#type: strings.intern(stored.sample_type),
        unit: strings.intern(stored.sample_unit),
    };
    let period_type = pprof::ValueType {
        r#type: strings.intern(stored.period_type),
        unit: strings.intern(stored.period_unit),
    };
    let time_nanos = i64::try_from(profile.time_unix_nano).unwrap_or(i64::MAX);
    let pprof = pprof::Profile {
        sample_type: vec![sample_type],
        sample,
        mapping,
        location,
        function,
        string_table: strings.into_strings(),
        time_nanos,
        duration_nanos: i64::try_from(profile.duration_nano).unwrap_or(i64::MAX),
        period_type: Some(period_type),
        period: profile.period,
        ..Default::default()
    };
    let options = NormalizeOptions {
        time_nanos: (time_nanos > 0).then_some(time_nanos),
        now_nanos,
        profile_id: (!profile.profile_id.is_empty()).then(|| hex(&profile.profile_id)),
        ..NormalizeOptions::default()
    };
    Ok((pprof, options))
}

/// The pprof string of dictionary string `index`: 0 stays 0, any other is copied into
/// `strings` on its first use by the profile.
fn string(
    dictionary: &Dictionary<'_>,
    copied: &mut Slots,
    strings: &mut StringTable,
    index: i32,
) -> i64 {
    if index <= 0 {
        return 0;
    }
    copied
        .get_or_insert_with(index as usize, |_| {
            strings.push(dictionary.string(index)) as usize
        })
        .map_or(0, |i| i as i64)
}

/// What a profile's samples are stored as.
#[derive(Clone, Copy, Debug)]
struct StoredType<'a> {
    sample_type: &'a str,
    sample_unit: &'a str,
    period_type: &'a str,
    period_unit: &'a str,
    /// Every sample value is multiplied by this: the period for CPU samples, else 1.
    multiplier: i64,
}

/// The stored sample type of `profile`, and its name set on `labels` unless they have one.
///
/// The eBPF profiler's CPU profile counts `samples` taken every `period` nanoseconds of
/// `cpu`: it is stored as CPU time (`cpu`/`nanoseconds`, values times the period), as
/// Pyroscope does, named `process_cpu`. `off_cpu` keeps its name; any other type is named
/// after itself. A profile without a sample type has no name and is refused.
fn stored_type<'a>(
    dictionary: &Dictionary<'a>,
    profile: &Profile,
    labels: &mut Labels,
) -> Result<StoredType<'a>, OtlpError> {
    let value_type = profile.sample_type.unwrap_or_default();
    let period_type = profile.period_type.unwrap_or_default();
    let (sample_type, sample_unit) = (
        dictionary.string(value_type.type_strindex),
        dictionary.string(value_type.unit_strindex),
    );
    let (period_type, period_unit) = (
        dictionary.string(period_type.type_strindex),
        dictionary.string(period_type.unit_strindex),
    );
    let cpu_samples = sample_type == "samples"
        && period_type == "cpu"
        && period_unit == "nanoseconds"
        && profile.period > 0;
    let (sample_type, sample_unit, multiplier) = if cpu_samples {
        ("cpu", "nanoseconds", profile.period)
    } else {
        (sample_type, sample_unit, 1)
    };
    if labels.get(LABEL_NAME).is_none() {
        let name = match sample_type {
            "cpu" => "process_cpu",
            "off_cpu" => "off_cpu",
            "" => return Err(OtlpError::NoSampleType),
            other => other,
        };
        labels.set(LABEL_NAME.to_string(), name.to_string());
    }
    Ok(StoredType {
        sample_type,
        sample_unit,
        period_type,
        period_unit,
        multiplier,
    })
}

/// Every sample of `profile` as a pprof sample: its stack's locations (leaf first, ids from
/// `renumber`), one value (the sum of its values times `multiplier`, or its
/// number of timestamps), and as labels its attributes whose keys are in `label_keys` and
/// its link's `trace_id` and `span_id` in hex. Refuses the first sample with a bad reference.
fn samples(
    dictionary: &Dictionary<'_>,
    profile: &Profile,
    label_keys: &HashSet<String>,
    multiplier: i64,
    max_stack_depth: usize,
    renumber: &mut Renumbering,
    strings: &mut StringTable,
) -> Result<Vec<pprof::Sample>, OtlpError> {
    let mut samples = Vec::with_capacity(profile.samples.len());
    for (i, sample) in profile.samples.iter().enumerate() {
        let stack = check_sample(dictionary, i, sample)?;
        let locations = &stack.location_indices;
        let keep = match max_stack_depth {
            0 => locations.len(),
            depth => locations.len().min(depth + 1),
        };
        let location_id = locations[locations.len() - keep..]
            .iter()
            .map(|&l| {
                // check_dictionary let only index 0 of an empty location table through.
                renumber
                    .locations
                    .id(l as usize)
                    .ok_or(OtlpError::DictionaryIndex {
                        table: "stack_table",
                        entry: sample.stack_index as usize,
                        field: "location_indices",
                        index: l,
                        len: 0,
                    })
            })
            .collect::<Result<_, _>>()?;
        samples.push(pprof::Sample {
            location_id,
            value: vec![sample_value(i, sample, multiplier)?],
            label: sample_labels(dictionary, sample, label_keys, strings),
        });
    }
    Ok(samples)
}

/// Checks the references of sample `i` (its stack and link) and that it has as many values as
/// timestamps when it has both; returns its stack.
fn check_sample<'a>(
    dictionary: &Dictionary<'a>,
    i: usize,
    sample: &Sample,
) -> Result<&'a Stack, OtlpError> {
    let d = dictionary.d;
    let stack = d
        .stack_table
        .get(sample.stack_index as usize)
        .filter(|_| sample.stack_index >= 0)
        .ok_or(OtlpError::StackIndex {
            sample: i,
            index: sample.stack_index,
            len: d.stack_table.len(),
        })?;
    if sample.link_index < 0 || (sample.link_index as usize >= d.link_table.len().max(1)) {
        return Err(OtlpError::LinkIndex {
            sample: i,
            index: sample.link_index,
            len: d.link_table.len(),
        });
    }
    if !sample.values.is_empty()
        && !sample.timestamps_unix_nano.is_empty()
        && sample.values.len() != sample.timestamps_unix_nano.len()
    {
        return Err(OtlpError::TimestampCount {
            sample: i,
            values: sample.values.len(),
            timestamps: sample.timestamps_unix_nano.len(),
        });
    }
    Ok(stack)
}

/// The stored value of sample `i`: the sum of its values, or one per timestamp when it has
/// only timestamps, times `multiplier`.
fn sample_value(i: usize, sample: &Sample, multiplier: i64) -> Result<i64, OtlpError> {
    let value = if sample.values.is_empty() {
        sample.timestamps_unix_nano.len() as i64
    } else {
        sample.values.iter().sum()
    };
    value
        .checked_mul(multiplier)
        .ok_or(OtlpError::ValueOverflow { sample: i })
}

/// The pprof labels of a checked sample: its attributes whose keys are in `label_keys`
/// (names sanitized), then `trace_id` and `span_id` of its link, if it has one.
fn sample_labels(
    dictionary: &Dictionary<'_>,
    sample: &Sample,
    label_keys: &HashSet<String>,
    strings: &mut StringTable,
) -> Vec<pprof::Label> {
    let mut labels = Vec::new();
    for &index in &sample.attribute_indices {
        if let Some((k, v)) = dictionary
            .attribute(index)
            .filter(|(k, _)| label_keys.contains(k))
        {
            labels.push(pprof::Label {
                key: strings.intern(&sanitize_label_name(&k)),
                str: strings.intern(&v),
                ..Default::default()
            });
        }
    }
    if sample.link_index > 0 {
        let link = &dictionary.d.link_table[sample.link_index as usize];
        for (key, id) in [("trace_id", &link.trace_id), ("span_id", &link.span_id)] {
            labels.push(pprof::Label {
                key: strings.intern(key),
                str: strings.intern(&hex(id)),
                ..Default::default()
            });
        }
    }
    labels
}

/// The locations the samples used, in id order, their lines referring to functions by
/// renumbered id and their mappings (other than the zero entry) by renumbered id.
fn locations(
    dictionary: &Dictionary<'_>,
    renumber: &mut Renumbering,
) -> Result<Vec<pprof::Location>, OtlpError> {
    let Renumbering {
        locations,
        functions,
        mappings,
        ..
    } = renumber;
    let table = &dictionary.d.location_table;
    let mut out = Vec::with_capacity(locations.used().len());
    for (position, &index) in locations.used().iter().enumerate() {
        let l = &table[index];
        let mut line = Vec::with_capacity(l.lines.len());
        for dictionary_line in &l.lines {
            let function_index = dictionary_line.function_index;
            // check_dictionary let only index 0 of an empty function table through.
            let function_id =
                functions
                    .id(function_index as usize)
                    .ok_or(OtlpError::DictionaryIndex {
                        table: "location_table",
                        entry: index,
                        field: "lines.function_index",
                        index: function_index,
                        len: 0,
                    })?;
            line.push(pprof::Line {
                function_id,
                line: dictionary_line.line,
                column: dictionary_line.column,
            });
        }
        let mapping_id = match l.mapping_index {
            index if index > 0 => mappings.id(index as usize).unwrap_or(0),
            _ => 0,
        };
        out.push(pprof::Location {
            id: position as u64 + 1,
            mapping_id,
            address: l.address,
            line,
            is_folded: false,
        });
    }
    Ok(out)
}

/// The functions the locations used, in id order, their strings copied.
fn functions(
    dictionary: &Dictionary<'_>,
    renumber: &mut Renumbering,
    strings: &mut StringTable,
) -> Vec<pprof::Function> {
    let Renumbering {
        functions,
        strings: copied,
        ..
    } = renumber;
    functions
        .used()
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            let f = &dictionary.d.function_table[index];
            pprof::Function {
                id: position as u64 + 1,
                name: string(dictionary, copied, strings, f.name_strindex),
                system_name: string(dictionary, copied, strings, f.system_name_strindex),
                filename: string(dictionary, copied, strings, f.filename_strindex),
                start_line: f.start_line,
            }
        })
        .collect()
}

/// The mappings the locations used, in id order, each with the build id of the first of
/// [`BUILD_ID_KEYS`] among its attributes.
fn mappings(
    dictionary: &Dictionary<'_>,
    renumber: &mut Renumbering,
    strings: &mut StringTable,
) -> Vec<pprof::Mapping> {
    let Renumbering {
        mappings,
        strings: copied,
        ..
    } = renumber;
    mappings
        .used()
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            let m = &dictionary.d.mapping_table[index];
            let build_id = BUILD_ID_KEYS
                .iter()
                .find_map(|key| {
                    m.attribute_indices
                        .iter()
                        .filter_map(|&a| dictionary.attribute(a))
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v)
                })
                .unwrap_or_default();
            pprof::Mapping {
                id: position as u64 + 1,
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: string(dictionary, copied, strings, m.filename_strindex),
                build_id: strings.intern(&build_id),
                ..Default::default()
            }
        })
        .collect()
}

/// Lowercase hex of bytes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
