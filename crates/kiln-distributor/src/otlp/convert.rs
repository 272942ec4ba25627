//! OTLP profiles (v1.10/v1.11 layout) to Kiln's model.
//!
//! Every OTLP profile becomes a pprof built from the request's shared dictionary, then goes
//! through the same validation and normalization as any pprof. docs/profile-types.md
//! documents the mapping.

use std::collections::{BTreeMap, HashMap};

use kiln_model::{
    LABEL_NAME, LABEL_SERVICE_NAME, Labels, NormalizeOptions, NormalizedProfile, normalize,
};
use kiln_proto::google::v1 as pprof;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use kiln_proto::opentelemetry::proto::profiles::v1development::{
    KeyValueAndUnit, Profile, ProfilesDictionary,
};

/// The service name when a resource names none, as OpenTelemetry's SDKs default it.
const UNKNOWN_SERVICE: &str = "unknown_service";
/// A sample attribute becomes a series label only while it has at most this many distinct
/// values in one profile; past that it is dropped for the profile (it is per-request data
/// such as a thread id, which would explode the number of series).
pub(crate) const MAX_SAMPLE_LABEL_VALUES: usize = 64;
/// Mapping attributes that carry build ids, in order of preference (semantic conventions).
const BUILD_ID_KEYS: [&str; 4] = [
    "process.executable.build_id.gnu",
    "process.executable.build_id.go",
    "process.executable.build_id.htlhash",
    "process.executable.build_id.profiling",
];

/// One profile of a request that could not be used, and why.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) reason: String,
}

/// The outcome of converting a whole request.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    pub(crate) profiles: Vec<NormalizedProfile>,
    pub(crate) rejected: Vec<Rejected>,
    /// Number of OTLP profiles in the request.
    pub(crate) total: usize,
}

/// Converts every profile of `request`; a profile that is invalid is rejected on its own.
pub(crate) fn convert_request(request: ExportProfilesServiceRequest, now_nanos: i64) -> Converted {
    let dictionary = request.dictionary.unwrap_or_default();
    let mut converted = Converted::default();
    if let Err(reason) = check_dictionary(&dictionary) {
        converted.total = count_profiles(&request.resource_profiles);
        converted.rejected = (0..converted.total)
            .map(|_| Rejected {
                reason: reason.clone(),
            })
            .collect();
        return converted;
    }
    let context = Dictionary::new(&dictionary);
    for (r, resource) in request.resource_profiles.iter().enumerate() {
        let resource_attributes = resource
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for (s, scope) in resource.scope_profiles.iter().enumerate() {
            for (p, profile) in scope.profiles.iter().enumerate() {
                converted.total += 1;
                let where_ = format!("resource {r} scope {s} profile {p}");
                let mut labels =
                    match context.base_labels(resource_attributes, scope.scope.as_ref(), profile) {
                        Ok(labels) => labels,
                        Err(reason) => {
                            converted.rejected.push(Rejected {
                                reason: format!("{where_}: {reason}"),
                            });
                            continue;
                        }
                    };
                match context.to_pprof(profile, &mut labels, now_nanos) {
                    Ok((pprof, options)) => match normalize(pprof, &labels, options) {
                        Ok(normalized) => converted.profiles.push(normalized),
                        Err(e) => converted.rejected.push(Rejected {
                            reason: format!("{where_}: {e}"),
                        }),
                    },
                    Err(reason) => converted.rejected.push(Rejected {
                        reason: format!("{where_}: {reason}"),
                    }),
                }
            }
        }
    }
    converted
}

fn count_profiles(
    resources: &[kiln_proto::opentelemetry::proto::profiles::v1development::ResourceProfiles],
) -> usize {
    resources
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .map(|s| s.profiles.len())
        .sum()
}

/// Checks every index inside the dictionary: a request in an older layout decodes into
/// indices that point nowhere, and must be refused rather than stored as garbage.
fn check_dictionary(d: &ProfilesDictionary) -> Result<(), String> {
    if d.string_table.first().is_some_and(|s| !s.is_empty()) {
        return Err("dictionary string_table[0] must be the empty string".to_string());
    }
    let strings = d.string_table.len().max(1);
    let check = |what: &str, index: i32, len: usize| -> Result<(), String> {
        if index < 0 || index as usize >= len.max(1) {
            Err(format!(
                "{what} {index} is out of range: the table has {len} entries (is the sender on OTLP profiles v1.10 or later?)"
            ))
        } else {
            Ok(())
        }
    };
    for (i, f) in d.function_table.iter().enumerate() {
        check(
            &format!("function_table[{i}].name_strindex"),
            f.name_strindex,
            strings,
        )?;
        check(
            &format!("function_table[{i}].system_name_strindex"),
            f.system_name_strindex,
            strings,
        )?;
        check(
            &format!("function_table[{i}].filename_strindex"),
            f.filename_strindex,
            strings,
        )?;
    }
    for (i, m) in d.mapping_table.iter().enumerate() {
        check(
            &format!("mapping_table[{i}].filename_strindex"),
            m.filename_strindex,
            strings,
        )?;
        for &a in &m.attribute_indices {
            check(
                &format!("mapping_table[{i}].attribute_indices"),
                a,
                d.attribute_table.len(),
            )?;
        }
    }
    for (i, l) in d.location_table.iter().enumerate() {
        check(
            &format!("location_table[{i}].mapping_index"),
            l.mapping_index,
            d.mapping_table.len(),
        )?;
        for line in &l.lines {
            check(
                &format!("location_table[{i}].lines.function_index"),
                line.function_index,
                d.function_table.len(),
            )?;
        }
        for &a in &l.attribute_indices {
            check(
                &format!("location_table[{i}].attribute_indices"),
                a,
                d.attribute_table.len(),
            )?;
        }
    }
    for (i, s) in d.stack_table.iter().enumerate() {
        for &l in &s.location_indices {
            check(
                &format!("stack_table[{i}].location_indices"),
                l,
                d.location_table.len(),
            )?;
        }
    }
    for (i, a) in d.attribute_table.iter().enumerate() {
        check(
            &format!("attribute_table[{i}].key_strindex"),
            a.key_strindex,
            strings,
        )?;
        check(
            &format!("attribute_table[{i}].unit_strindex"),
            a.unit_strindex,
            strings,
        )?;
        if let Some(any_value::Value::StringValueStrindex(index)) =
            a.value.as_ref().and_then(|v| v.value.as_ref())
        {
            check(
                &format!("attribute_table[{i}].value.string_value_strindex"),
                *index,
                strings,
            )?;
        }
    }
    for (i, link) in d.link_table.iter().enumerate().skip(1) {
        if link.trace_id.len() != 16 || link.span_id.len() != 8 {
            return Err(format!(
                "link_table[{i}] must have a 16-byte trace_id and an 8-byte span_id, got {} and {}",
                link.trace_id.len(),
                link.span_id.len()
            ));
        }
    }
    Ok(())
}

/// A checked dictionary and the lookups conversion needs.
struct Dictionary<'a> {
    d: &'a ProfilesDictionary,
}

impl<'a> Dictionary<'a> {
    fn new(d: &'a ProfilesDictionary) -> Self {
        Self { d }
    }

    fn string(&self, index: i32) -> &str {
        self.d
            .string_table
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The string form of an attribute value; None for values that make no label.
    fn value_string(&self, value: Option<&AnyValue>) -> Option<String> {
        match value?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::StringValueStrindex(i) => Some(self.string(*i).to_string()),
            any_value::Value::BoolValue(b) => Some(b.to_string()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::DoubleValue(d) => Some(d.to_string()),
            _ => None,
        }
    }

    fn key_value(&self, kv: &KeyValue) -> Option<(String, String)> {
        let key = if kv.key.is_empty() {
            self.string(kv.key_strindex).to_string()
        } else {
            kv.key.clone()
        };
        Some((key, self.value_string(kv.value.as_ref())?))
    }

    fn attribute(&self, index: i32) -> Option<(String, String)> {
        let a: &KeyValueAndUnit = self.d.attribute_table.get(index as usize)?;
        if index == 0 {
            return None;
        }
        Some((
            self.string(a.key_strindex).to_string(),
            self.value_string(a.value.as_ref())?,
        ))
    }

    /// Series labels from the resource, the scope and the profile's own attributes.
    fn base_labels(
        &self,
        resource: &[KeyValue],
        scope: Option<&kiln_proto::opentelemetry::proto::common::v1::InstrumentationScope>,
        profile: &Profile,
    ) -> Result<Labels, String> {
        let mut pairs: BTreeMap<String, String> = BTreeMap::new();
        for kv in resource {
            if let Some((k, v)) = self.key_value(kv) {
                pairs.insert(k, v);
            }
        }
        if let Some(scope) = scope {
            if !scope.name.is_empty() {
                pairs.insert("otel.scope.name".to_string(), scope.name.clone());
            }
            if !scope.version.is_empty() {
                pairs.insert("otel.scope.version".to_string(), scope.version.clone());
            }
            for kv in &scope.attributes {
                if let Some((k, v)) = self.key_value(kv) {
                    pairs.insert(k, v);
                }
            }
        }
        for &index in &profile.attribute_indices {
            if index < 0 || index as usize >= self.d.attribute_table.len().max(1) {
                return Err(format!("attribute index {index} is out of range"));
            }
            if let Some((k, v)) = self.attribute(index) {
                pairs.insert(k, v);
            }
        }
        let service = match pairs.remove("service.name") {
            Some(name) if !name.is_empty() => name,
            _ => match pairs.get("process.executable.name") {
                Some(exe) if !exe.is_empty() => format!("{UNKNOWN_SERVICE}:{exe}"),
                _ => UNKNOWN_SERVICE.to_string(),
            },
        };
        let mut labels = Labels::default();
        for (key, value) in pairs {
            labels.set(sanitize_label_name(&key), value);
        }
        labels.set(LABEL_SERVICE_NAME.to_string(), service);
        Ok(labels)
    }

    /// Builds the pprof of one OTLP profile; sets `__name__` on `labels` where the OTLP type
    /// needs a name of its own.
    fn to_pprof(
        &self,
        profile: &Profile,
        labels: &mut Labels,
        now_nanos: i64,
    ) -> Result<(pprof::Profile, NormalizeOptions), String> {
        let d = self.d;
        let mut strings = d.string_table.clone();
        if strings.is_empty() {
            strings.push(String::new());
        }
        let mut interned: HashMap<String, i64> = HashMap::new();
        let mut intern = |strings: &mut Vec<String>, s: &str| -> i64 {
            if let Some(&i) = interned.get(s) {
                return i;
            }
            strings.push(s.to_string());
            interned.insert(s.to_string(), strings.len() as i64 - 1);
            strings.len() as i64 - 1
        };

        let value_type = profile.sample_type.unwrap_or_default();
        let period_type = profile.period_type.unwrap_or_default();
        let (sample_type_name, sample_unit) = (
            self.string(value_type.type_strindex),
            self.string(value_type.unit_strindex),
        );
        let (period_type_name, period_unit) = (
            self.string(period_type.type_strindex),
            self.string(period_type.unit_strindex),
        );
        // The eBPF profiler's CPU profile counts samples taken every `period` nanoseconds:
        // store CPU time, as Pyroscope does.
        let cpu_samples = sample_type_name == "samples"
            && period_type_name == "cpu"
            && period_unit == "nanoseconds"
            && profile.period > 0;
        let (stored_type, stored_unit, multiplier) = if cpu_samples {
            ("cpu", "nanoseconds", profile.period)
        } else {
            (sample_type_name, sample_unit, 1)
        };
        if labels.get(LABEL_NAME).is_none() {
            let name = match stored_type {
                "cpu" => "process_cpu",
                "off_cpu" => "off_cpu",
                "" => {
                    return Err("the profile has no sample_type".to_string());
                }
                other => other,
            };
            labels.set(LABEL_NAME.to_string(), name.to_string());
        }

        // Sample attributes become labels while their cardinality stays low.
        let mut values_per_key: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        for sample in &profile.samples {
            for &index in &sample.attribute_indices {
                if index < 0 || index as usize >= d.attribute_table.len().max(1) {
                    return Err(format!("sample attribute index {index} is out of range"));
                }
                if let Some((k, v)) = self.attribute(index) {
                    values_per_key.entry(k).or_default().insert(v);
                }
            }
        }
        let label_keys: std::collections::HashSet<String> = values_per_key
            .into_iter()
            .filter(|(_, values)| values.len() <= MAX_SAMPLE_LABEL_VALUES)
            .map(|(k, _)| k)
            .collect();

        let mut samples = Vec::with_capacity(profile.samples.len());
        for (i, sample) in profile.samples.iter().enumerate() {
            let stack = d.stack_table.get(sample.stack_index as usize).filter(|_| sample.stack_index >= 0).ok_or_else(|| {
                format!(
                    "sample {i}: stack_index {} is out of range: stack_table has {} entries (is the sender on OTLP profiles v1.10 or later?)",
                    sample.stack_index,
                    d.stack_table.len()
                )
            })?;
            if sample.link_index < 0 || (sample.link_index as usize >= d.link_table.len().max(1)) {
                return Err(format!(
                    "sample {i}: link_index {} is out of range: link_table has {} entries",
                    sample.link_index,
                    d.link_table.len()
                ));
            }
            if !sample.values.is_empty()
                && !sample.timestamps_unix_nano.is_empty()
                && sample.values.len() != sample.timestamps_unix_nano.len()
            {
                return Err(format!(
                    "sample {i}: {} values but {} timestamps; they must be equal in number",
                    sample.values.len(),
                    sample.timestamps_unix_nano.len()
                ));
            }
            // Timestamps without values count one each.
            let value = if sample.values.is_empty() {
                sample.timestamps_unix_nano.len() as i64
            } else {
                sample.values.iter().sum()
            };
            let value = value
                .checked_mul(multiplier)
                .ok_or_else(|| format!("sample {i}: value overflows"))?;
            let mut sample_labels = Vec::new();
            for &index in &sample.attribute_indices {
                if let Some((k, v)) = self
                    .attribute(index)
                    .filter(|(k, _)| label_keys.contains(k))
                {
                    sample_labels.push(pprof::Label {
                        key: intern(&mut strings, &sanitize_label_name(&k)),
                        str: intern(&mut strings, &v),
                        ..Default::default()
                    });
                }
            }
            if sample.link_index > 0 {
                let link = &d.link_table[sample.link_index as usize];
                for (key, id) in [("trace_id", &link.trace_id), ("span_id", &link.span_id)] {
                    sample_labels.push(pprof::Label {
                        key: intern(&mut strings, key),
                        str: intern(&mut strings, &hex(id)),
                        ..Default::default()
                    });
                }
            }
            samples.push(pprof::Sample {
                location_id: stack
                    .location_indices
                    .iter()
                    .map(|&l| l as u64 + 1)
                    .collect(),
                value: vec![value],
                label: sample_labels,
            });
        }

        let mappings = d
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
                            .filter_map(|&a| self.attribute(a))
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
                    build_id: intern(&mut strings, &build_id),
                    ..Default::default()
                }
            })
            .collect();
        let locations = d
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
            .collect();
        let functions = d
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
            .collect();
        let sample_type = pprof::ValueType {
            r#type: intern(&mut strings, stored_type),
            unit: intern(&mut strings, stored_unit),
        };
        let period_type_out = pprof::ValueType {
            r#type: intern(&mut strings, period_type_name),
            unit: intern(&mut strings, period_unit),
        };
        let time_nanos = i64::try_from(profile.time_unix_nano).unwrap_or(i64::MAX);
        let pprof = pprof::Profile {
            sample_type: vec![sample_type],
            sample: samples,
            mapping: mappings,
            location: locations,
            function: functions,
            string_table: strings,
            time_nanos,
            duration_nanos: i64::try_from(profile.duration_nano).unwrap_or(i64::MAX),
            period_type: Some(period_type_out),
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
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Attribute keys become label names: characters outside `[a-zA-Z0-9_.]` become `_`, and a
/// leading digit gets a `_` prefix.
pub(crate) fn sanitize_label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use kiln_proto::opentelemetry::proto::common::v1::InstrumentationScope;
    use kiln_proto::opentelemetry::proto::profiles::v1development::{
        Function, Line, Link, Location, Mapping, ResourceProfiles, Sample, ScopeProfiles, Stack,
        ValueType,
    };
    use kiln_proto::opentelemetry::proto::resource::v1::Resource;

    use super::*;

    fn string_value(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.to_string())),
        })
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: string_value(value),
            key_strindex: 0,
        }
    }

    /// Strings: 0 "", 1 samples, 2 count, 3 cpu, 4 nanoseconds, 5 main, 6 work, 7 leaf,
    /// 8 thread.name, 9 worker-1, 10 /usr/lib/libc.so.6, 11 process.executable.build_id.gnu,
    /// 12 off_cpu.
    fn dictionary() -> ProfilesDictionary {
        let strings = [
            "",
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "main",
            "work",
            "leaf",
            "thread.name",
            "worker-1",
            "/usr/lib/libc.so.6",
            "process.executable.build_id.gnu",
            "off_cpu",
        ];
        let function = |name| Function {
            name_strindex: name,
            ..Default::default()
        };
        let location = |function_index: i32| Location {
            lines: vec![Line {
                function_index,
                line: 1,
                column: 0,
            }],
            ..Default::default()
        };
        ProfilesDictionary {
            string_table: strings.map(String::from).to_vec(),
            function_table: vec![Function::default(), function(5), function(6), function(7)],
            // 1 main, 2 work, 3 leaf inlined into work, 4 unsymbolized libc frame.
            location_table: vec![
                Location::default(),
                location(1),
                location(2),
                Location {
                    lines: vec![
                        Line {
                            function_index: 3,
                            line: 9,
                            column: 0,
                        },
                        Line {
                            function_index: 2,
                            line: 4,
                            column: 0,
                        },
                    ],
                    ..Default::default()
                },
                Location {
                    mapping_index: 1,
                    address: 0x1234,
                    ..Default::default()
                },
            ],
            mapping_table: vec![
                Mapping::default(),
                Mapping {
                    filename_strindex: 10,
                    attribute_indices: vec![2],
                    memory_start: 0x1000,
                    memory_limit: 0x9000,
                    ..Default::default()
                },
            ],
            stack_table: vec![
                Stack::default(),
                Stack {
                    location_indices: vec![3, 1],
                },
                Stack {
                    location_indices: vec![2, 1],
                },
                Stack {
                    location_indices: vec![4, 1],
                },
            ],
            attribute_table: vec![
                KeyValueAndUnit::default(),
                KeyValueAndUnit {
                    key_strindex: 8,
                    value: string_value("worker-1"),
                    unit_strindex: 0,
                },
                KeyValueAndUnit {
                    key_strindex: 11,
                    value: string_value("abcdef"),
                    unit_strindex: 0,
                },
            ],
            link_table: vec![
                Link::default(),
                Link {
                    trace_id: vec![1; 16].into(),
                    span_id: vec![2; 8].into(),
                },
            ],
        }
    }

    fn cpu_profile() -> Profile {
        Profile {
            sample_type: Some(ValueType {
                type_strindex: 1,
                unit_strindex: 2,
            }),
            period_type: Some(ValueType {
                type_strindex: 3,
                unit_strindex: 4,
            }),
            period: 50_000_000,
            time_unix_nano: 1_700_000_000_000_000_000,
            samples: vec![
                Sample {
                    stack_index: 1,
                    values: vec![3],
                    ..Default::default()
                },
                Sample {
                    stack_index: 2,
                    values: vec![2],
                    attribute_indices: vec![1],
                    ..Default::default()
                },
                Sample {
                    stack_index: 3,
                    timestamps_unix_nano: vec![1, 2, 3, 4],
                    link_index: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn request(resources: Vec<(Vec<KeyValue>, Profile)>) -> ExportProfilesServiceRequest {
        ExportProfilesServiceRequest {
            resource_profiles: resources
                .into_iter()
                .map(|(attributes, profile)| ResourceProfiles {
                    resource: Some(Resource {
                        attributes,
                        dropped_attributes_count: 0,
                    }),
                    scope_profiles: vec![ScopeProfiles {
                        scope: Some(InstrumentationScope {
                            name: "ebpf".to_string(),
                            ..Default::default()
                        }),
                        profiles: vec![profile],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
            dictionary: Some(dictionary()),
        }
    }

    #[test]
    fn ebpf_cpu_samples_become_process_cpu_nanoseconds() {
        let converted = convert_request(
            request(vec![(
                vec![kv("service.name", "api"), kv("host.name", "h1")],
                cpu_profile(),
            )]),
            0,
        );
        assert!(converted.rejected.is_empty(), "{:?}", converted.rejected);
        let profile = &converted.profiles[0];
        assert_eq!(profile.service_name, "api");
        let total: i64 = profile
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .map(|s| s.value)
            .sum();
        assert_eq!(total, (3 + 2 + 4) * 50_000_000);
        for series in &profile.series {
            assert_eq!(
                series.profile_type.id(),
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            );
            assert_eq!(series.labels.get("host.name"), Some("h1"));
            assert_eq!(series.labels.get("otel.scope.name"), Some("ebpf"));
        }
        // thread.name splits the series; the link stays on the sample.
        let threads: Vec<Option<&str>> = profile
            .series
            .iter()
            .map(|s| s.labels.get("thread.name"))
            .collect();
        assert_eq!(threads.len(), 2);
        assert!(threads.contains(&Some("worker-1")) && threads.contains(&None));
        let linked: Vec<_> = profile
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .filter(|s| s.labels.span_id.is_some())
            .collect();
        assert_eq!(linked.len(), 1);
        assert_eq!(
            linked[0].labels.span_id.as_deref(),
            Some("0202020202020202")
        );
        assert_eq!(
            linked[0].labels.trace_id.as_deref(),
            Some("01010101010101010101010101010101")
        );
        assert_eq!(linked[0].value, 4 * 50_000_000);
        // The unsymbolized frame keeps its mapping and build id.
        let libc = profile.symbols.mapping.iter().find(|m| m.id == 1).unwrap();
        assert_eq!(
            profile.symbols.string_table[libc.build_id as usize],
            "abcdef"
        );
        assert_eq!(
            profile.symbols.string_table[libc.filename as usize],
            "/usr/lib/libc.so.6"
        );
    }

    #[test]
    fn service_names_fall_back_to_the_executable() {
        let converted = convert_request(
            request(vec![
                (vec![kv("process.executable.name", "foo")], cpu_profile()),
                (vec![], cpu_profile()),
            ]),
            0,
        );
        let names: Vec<&str> = converted
            .profiles
            .iter()
            .map(|p| p.service_name.as_str())
            .collect();
        assert_eq!(names, ["unknown_service:foo", "unknown_service"]);
    }

    #[test]
    fn off_cpu_profiles_get_their_own_type() {
        let mut profile = cpu_profile();
        profile.sample_type = Some(ValueType {
            type_strindex: 12,
            unit_strindex: 4,
        });
        profile.samples.truncate(2);
        let converted =
            convert_request(request(vec![(vec![kv("service.name", "api")], profile)]), 0);
        let series = &converted.profiles[0].series[0];
        assert_eq!(
            series.profile_type.id(),
            "off_cpu:off_cpu:nanoseconds:cpu:nanoseconds"
        );
        let total: i64 = converted.profiles[0]
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .map(|s| s.value)
            .sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn out_of_range_references_are_rejected_with_the_reason() {
        let mut bad = cpu_profile();
        bad.samples[0].stack_index = 99;
        let converted = convert_request(
            request(vec![
                (vec![kv("service.name", "bad")], bad),
                (vec![kv("service.name", "good")], cpu_profile()),
            ]),
            0,
        );
        assert_eq!(
            (
                converted.total,
                converted.profiles.len(),
                converted.rejected.len()
            ),
            (2, 1, 1)
        );
        assert!(
            converted.rejected[0]
                .reason
                .contains("stack_index 99 is out of range"),
            "{:?}",
            converted.rejected
        );

        let mut request = request(vec![(vec![], cpu_profile())]);
        request.dictionary.as_mut().unwrap().function_table[1].name_strindex = 500;
        let converted = convert_request(request, 0);
        assert_eq!(converted.rejected.len(), 1);
        assert!(
            converted.rejected[0]
                .reason
                .contains("function_table[1].name_strindex 500 is out of range")
        );
    }
}
