//! One OTLP profile as a pprof over its request's dictionary.
//!
//! [`to_pprof`] runs the steps in order: [`stored_type`] (what the samples are stored as, and
//! the profile's name), [`sample_label_keys`] (which sample attributes become labels),
//! [`samples`] (every sample checked and converted), then [`mappings`], [`locations`] and
//! [`functions`] (the dictionary's symbols, which keep their indices as pprof ids).

use std::collections::HashSet;

use kiln_proto::google::v1 as pprof;
use kiln_proto::opentelemetry::proto::profiles::v1development::{Profile, Sample, Stack};

use super::OtlpError;
use super::dictionary::Dictionary;
use super::labels::{sample_label_keys, sanitize_label_name};
use crate::{LABEL_NAME, Labels, NormalizeOptions, StringTable};

/// Mapping attributes that carry build ids, in order of preference (semantic conventions).
const BUILD_ID_KEYS: [&str; 4] = [
    "process.executable.build_id.gnu",
    "process.executable.build_id.go",
    "process.executable.build_id.htlhash",
    "process.executable.build_id.profiling",
];

/// Builds the pprof of one OTLP profile and the options to normalize it with; sets
/// `__name__` on `labels` where the OTLP type needs a name of its own. The pprof's string
/// table is the dictionary's, with the strings conversion adds appended.
pub(super) fn to_pprof(
    dictionary: &Dictionary<'_>,
    profile: &Profile,
    labels: &mut Labels,
    now_nanos: i64,
) -> Result<(pprof::Profile, NormalizeOptions), OtlpError> {
    let stored = stored_type(dictionary, profile, labels)?;
    let label_keys = sample_label_keys(dictionary, profile)?;
    // Strings are appended in the order they always were: sample labels, build ids, types.
    let mut strings = StringTable::extending(dictionary.d.string_table.clone());
    let sample = samples(
        dictionary,
        profile,
        &label_keys,
        stored.multiplier,
        &mut strings,
    )?;
    let mapping = mappings(dictionary, &mut strings);
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
        location: locations(dictionary),
        function: functions(dictionary),
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

/// Every sample of `profile` as a pprof sample: its stack's locations (leaf first, ids are
/// location indices plus one), one value (the sum of its values times `multiplier`, or its
/// number of timestamps), and as labels its attributes whose keys are in `label_keys` and
/// its link's `trace_id` and `span_id` in hex. Refuses the first sample with a bad reference.
fn samples(
    dictionary: &Dictionary<'_>,
    profile: &Profile,
    label_keys: &HashSet<String>,
    multiplier: i64,
    strings: &mut StringTable,
) -> Result<Vec<pprof::Sample>, OtlpError> {
    let mut samples = Vec::with_capacity(profile.samples.len());
    for (i, sample) in profile.samples.iter().enumerate() {
        let stack = check_sample(dictionary, i, sample)?;
        samples.push(pprof::Sample {
            location_id: stack
                .location_indices
                .iter()
                .map(|&l| l as u64 + 1)
                .collect(),
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

/// The dictionary's mappings but its zero entry, ids their indices, each with the build id
/// of the first of [`BUILD_ID_KEYS`] among its attributes.
fn mappings(dictionary: &Dictionary<'_>, strings: &mut StringTable) -> Vec<pprof::Mapping> {
    dictionary
        .d
        .mapping_table
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, m)| {
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
                id: i as u64,
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: m.filename_strindex as i64,
                build_id: strings.intern(&build_id),
                ..Default::default()
            }
        })
        .collect()
}

/// The dictionary's locations, ids their indices plus one, lines referring to functions by
/// index plus one.
fn locations(dictionary: &Dictionary<'_>) -> Vec<pprof::Location> {
    dictionary
        .d
        .location_table
        .iter()
        .enumerate()
        .map(|(i, l)| pprof::Location {
            id: i as u64 + 1,
            mapping_id: l.mapping_index.max(0) as u64,
            address: l.address,
            line: l
                .lines
                .iter()
                .map(|line| pprof::Line {
                    function_id: line.function_index as u64 + 1,
                    line: line.line,
                    column: line.column,
                })
                .collect(),
            is_folded: false,
        })
        .collect()
}

/// The dictionary's functions, ids their indices plus one, names referring to the
/// dictionary's strings.
fn functions(dictionary: &Dictionary<'_>) -> Vec<pprof::Function> {
    dictionary
        .d
        .function_table
        .iter()
        .enumerate()
        .map(|(i, f)| pprof::Function {
            id: i as u64 + 1,
            name: f.name_strindex as i64,
            system_name: f.system_name_strindex as i64,
            filename: f.filename_strindex as i64,
            start_line: f.start_line,
        })
        .collect()
}

/// Lowercase hex of bytes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
