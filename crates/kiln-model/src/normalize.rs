use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kiln_proto::google::v1::Profile;

use crate::labels::{LABEL_NAME, LABEL_PROFILE_TYPE, LABEL_SERVICE_NAME, Labels};
use crate::pprof_ids::PprofIds;
use crate::{
    LimitExceeded, ModelError, NormalizeLimits, ProfileType, Result, profile_name_for,
    validate_label_name,
};

/// Sample labels that identify a sample rather than a series, so they stay on the sample
/// instead of splitting the profile into one series per value.
const SAMPLE_LEVEL_LABELS: [&str; 4] = ["span_id", "span_name", "trace_id", "profile_id"];

/// Everything about a profile that does not come from the pprof itself.
#[derive(Clone, Debug, Default)]
pub struct NormalizeOptions {
    /// The suffix of the /ingest application name (`cpu` in `app.cpu`), a naming hint.
    pub name_hint: Option<String>,
    /// Time of the profile in unix nanoseconds, overriding the pprof's `time_nanos`.
    pub time_nanos: Option<i64>,
    /// The current time, used when neither the request nor the pprof carries one.
    pub now_nanos: i64,
    /// The client's id for this profile; a random one is made when absent.
    pub profile_id: Option<String>,
    /// Label and series limits, checked before label sets are copied per sample type.
    pub limits: NormalizeLimits,
}

/// A profile split into series, ready for the ingester.
#[derive(Clone, Debug)]
pub struct NormalizedProfile {
    /// The service the profile belongs to (the `service_name` label of every series).
    pub service_name: String,
    /// Identifies the profile; a profile id seen twice is counted once by queries.
    pub profile_id: String,
    /// Start of the profile in unix nanoseconds.
    pub time_nanos: i64,
    /// Duration of the profile in nanoseconds (0 when unknown).
    pub duration_nanos: i64,
    /// Sampling period, in the period type's unit.
    pub period: i64,
    /// The decoded pprof with its samples removed: the symbol tables the samples refer to.
    pub symbols: Arc<Profile>,
    /// One entry per profile type and label set, each with at least one sample.
    pub series: Vec<SeriesProfile>,
}

impl NormalizedProfile {
    /// Total number of stored samples across all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// The samples of one series for one profile type.
#[derive(Clone, Debug)]
pub struct SeriesProfile {
    /// Full series labels, including `__name__`, `__profile_type__` and `service_name`.
    pub labels: Labels,
    /// The profile type of every value in `samples`.
    pub profile_type: ProfileType,
    /// Samples with non-zero values.
    pub samples: Vec<NormalizedSample>,
}

/// One stack and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizedSample {
    /// pprof location ids, leaf first, valid in [`NormalizedProfile::symbols`].
    pub locations: Arc<[u64]>,
    /// The sample value of this series' profile type.
    pub value: i64,
    /// Labels kept on the sample.
    pub labels: Arc<SampleLabels>,
}

/// Sample-level labels: trace correlation and profile identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SampleLabels {
    /// The span the sample was taken in (16 hex digits).
    pub span_id: Option<String>,
    /// The name of that span.
    pub span_name: Option<String>,
    /// The trace the sample was taken in.
    pub trace_id: Option<String>,
    /// An id the client gave to the sample's profile.
    pub profile_id: Option<String>,
}

impl SampleLabels {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "span_id" => self.span_id = Some(value),
            "span_name" => self.span_name = Some(value),
            "trace_id" => self.trace_id = Some(value),
            _ => self.profile_id = Some(value),
        }
    }
}

/// Splits a decoded pprof into series: one per sample type and per set of string sample
/// labels, each labelled with `base` plus the derived `__name__`, `__profile_type__` and
/// `service_name`. Zero-valued samples are dropped; a profile without samples gives no series.
pub fn normalize(
    mut profile: Profile,
    base: &Labels,
    options: NormalizeOptions,
) -> Result<NormalizedProfile> {
    if profile.string_table.is_empty() {
        profile.string_table.push(String::new());
    }
    validate_references(&profile)?;
    let service_name = base
        .get(LABEL_SERVICE_NAME)
        .ok_or(ModelError::MissingServiceName)?
        .to_string();
    let strings = &profile.string_table;
    let string = |i: i64| strings[i as usize].as_str();

    let sample_types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (string(t.r#type), string(t.unit)))
        .collect();
    let (period_type, period_unit) = profile
        .period_type
        .as_ref()
        .map(|t| (string(t.r#type), string(t.unit)))
        .unwrap_or(("", ""));
    let name = match base.get(LABEL_NAME) {
        Some(name) => name.to_string(),
        None => {
            let types: Vec<&str> = sample_types.iter().map(|(t, _)| *t).collect();
            profile_name_for(&types, period_type, options.name_hint.as_deref())
        }
    };

    let limits = options.limits;
    for (name, value) in base.iter() {
        limits.check_label(name, value)?;
    }
    // Group samples by their series-level labels; keep the rest on the samples. Label limits
    // are checked as each group is made, before anything is copied per sample type.
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<Vec<(i64, i64)>, usize> = HashMap::new();
    let mut sample_labels: Vec<Arc<SampleLabels>> = Vec::with_capacity(profile.sample.len());
    let mut interned: HashSet<Arc<SampleLabels>> = HashSet::new();
    // Most samples carry no string labels: once the first of them has found its group and its
    // (empty) sample labels, the rest reuse both without hashing.
    let mut unlabeled: Option<(usize, Arc<SampleLabels>)> = None;
    for (index, sample) in profile.sample.iter().enumerate() {
        let no_labels = sample.label.iter().all(|l| l.str == 0);
        if let (true, Some((group, on_sample))) = (no_labels, &unlabeled) {
            groups[*group].1.push(index);
            sample_labels.push(Arc::clone(on_sample));
            continue;
        }
        let mut key = Vec::new();
        let mut on_sample = SampleLabels::default();
        for label in sample.label.iter().filter(|l| l.str != 0) {
            let name = string(label.key);
            if SAMPLE_LEVEL_LABELS.contains(&name) {
                on_sample.set(name, string(label.str).to_string());
            } else {
                key.push((label.key, label.str));
            }
        }
        key.sort_unstable();
        let group = match group_of.get(&key) {
            Some(&group) => group,
            None => {
                let mut labels = base.clone();
                for &(k, v) in &key {
                    validate_label_name(string(k))?;
                    crate::validate_label_value(string(k), string(v))?;
                    limits.check_label(string(k), string(v))?;
                    labels.set(string(k).to_string(), string(v).to_string());
                    // Derived labels can remove at most this many (an empty type or unit): past
                    // it the series is over the limit whatever they are.
                    if limits.max_label_names_per_series > 0
                        && labels.len() > limits.max_label_names_per_series + DERIVED_LABELS
                    {
                        return Err(LimitExceeded::LabelNames {
                            names: labels.len(),
                            limit: limits.max_label_names_per_series,
                        }
                        .into());
                    }
                }
                groups.push((labels, Vec::new()));
                group_of.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        groups[group].1.push(index);
        let on_sample = match interned.get(&on_sample) {
            Some(existing) => Arc::clone(existing),
            None => {
                let shared = Arc::new(on_sample);
                interned.insert(Arc::clone(&shared));
                shared
            }
        };
        if no_labels {
            unlabeled = Some((group, Arc::clone(&on_sample)));
        }
        sample_labels.push(on_sample);
    }

    let stacks: Vec<Arc<[u64]>> = profile
        .sample
        .iter()
        .map(|s| Arc::from(s.location_id.as_slice()))
        .collect();
    let has_data = |type_index: usize, members: &[usize]| {
        members
            .iter()
            .any(|&i| profile.sample[i].value[type_index] != 0)
    };
    if limits.max_series > 0 {
        let count = (0..sample_types.len())
            .map(|t| groups.iter().filter(|(_, m)| has_data(t, m)).count())
            .sum::<usize>();
        if count > limits.max_series {
            return Err(LimitExceeded::Series {
                series: count,
                limit: limits.max_series,
            }
            .into());
        }
    }
    let mut series = Vec::new();
    for (type_index, (sample_type, sample_unit)) in sample_types.iter().enumerate() {
        let profile_type = ProfileType {
            name: name.clone(),
            sample_type: sample_type.to_string(),
            sample_unit: sample_unit.to_string(),
            period_type: period_type.to_string(),
            period_unit: period_unit.to_string(),
        };
        let type_id = profile_type.id();
        let derived = [
            (LABEL_NAME, name.as_str()),
            (LABEL_PROFILE_TYPE, type_id.as_str()),
            ("__type__", *sample_type),
            ("__unit__", *sample_unit),
            ("__period_type__", period_type),
            ("__period_unit__", period_unit),
        ];
        for (group_labels, members) in &groups {
            if !has_data(type_index, members) {
                continue;
            }
            limits.check_names(series_label_count(group_labels, &derived))?;
            for (label, value) in derived {
                limits.check_label(label, value)?;
            }
            let samples: Vec<NormalizedSample> = members
                .iter()
                .filter(|&&i| profile.sample[i].value[type_index] != 0)
                .map(|&i| NormalizedSample {
                    locations: Arc::clone(&stacks[i]),
                    value: profile.sample[i].value[type_index],
                    labels: Arc::clone(&sample_labels[i]),
                })
                .collect();
            if samples.is_empty() {
                continue;
            }
            let mut labels = group_labels.clone();
            labels.set(LABEL_NAME.to_string(), name.clone());
            labels.set(LABEL_PROFILE_TYPE.to_string(), type_id.clone());
            labels.set("__type__".to_string(), sample_type.to_string());
            labels.set("__unit__".to_string(), sample_unit.to_string());
            labels.set("__period_type__".to_string(), period_type.to_string());
            labels.set("__period_unit__".to_string(), period_unit.to_string());
            series.push(SeriesProfile {
                labels,
                profile_type: profile_type.clone(),
                samples,
            });
        }
    }

    let time_nanos = options
        .time_nanos
        .or((profile.time_nanos > 0).then_some(profile.time_nanos))
        .unwrap_or(options.now_nanos);
    profile.sample = Vec::new();
    Ok(NormalizedProfile {
        service_name,
        profile_id: options
            .profile_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        time_nanos,
        duration_nanos: profile.duration_nanos.max(0),
        period: profile.period,
        symbols: Arc::new(profile),
        series,
    })
}

/// Labels that normalization derives for every series and that can remove a label by being
/// empty (`__type__`, `__unit__`, `__period_type__`, `__period_unit__`).
const DERIVED_LABELS: usize = 4;

/// The number of labels of `group` once `derived` are set on it (an empty value removes).
fn series_label_count(group: &Labels, derived: &[(&str, &str)]) -> usize {
    let mut count = group.len();
    for (name, value) in derived {
        match (group.get(name).is_some(), value.is_empty()) {
            (false, false) => count += 1,
            (true, true) => count -= 1,
            _ => {}
        }
    }
    count
}

/// Checks every index and id reference of a pprof so that later stages can index without
/// checks: strings, mappings, functions and locations resolve, and every sample has one value per
/// sample type.
pub fn validate_references(profile: &Profile) -> Result<()> {
    let invalid = |what: String| Err(ModelError::InvalidPprof(what));
    let strings = profile.string_table.len() as i64;
    if profile.string_table.first().is_some_and(|s| !s.is_empty()) {
        return invalid("string_table[0] must be the empty string".to_string());
    }
    let check_string = |i: i64, field: &str| -> Result<()> {
        if (0..strings).contains(&i) {
            Ok(())
        } else {
            invalid(format!(
                "{field} refers to string {i}, but the table has {strings}"
            ))
        }
    };
    for t in profile.sample_type.iter().chain(profile.period_type.iter()) {
        check_string(t.r#type, "sample_type.type")?;
        check_string(t.unit, "sample_type.unit")?;
    }
    let mappings = PprofIds::new(profile.mapping.iter().map(|m| m.id));
    for m in &profile.mapping {
        check_string(m.filename, "mapping.filename")?;
        check_string(m.build_id, "mapping.build_id")?;
    }
    let functions = PprofIds::new(profile.function.iter().map(|f| f.id));
    for f in &profile.function {
        check_string(f.name, "function.name")?;
        check_string(f.system_name, "function.system_name")?;
        check_string(f.filename, "function.filename")?;
    }
    let locations = PprofIds::new(profile.location.iter().map(|l| l.id));
    for l in &profile.location {
        if l.id == 0 {
            return invalid("location id 0 is reserved".to_string());
        }
        if l.mapping_id != 0 && !mappings.contains(l.mapping_id) {
            return invalid(format!(
                "location {} refers to unknown mapping {}",
                l.id, l.mapping_id
            ));
        }
        if let Some(line) = l
            .line
            .iter()
            .find(|line| !functions.contains(line.function_id))
        {
            return invalid(format!(
                "location {} refers to unknown function {}",
                l.id, line.function_id
            ));
        }
    }
    let types = profile.sample_type.len();
    for (i, sample) in profile.sample.iter().enumerate() {
        if sample.value.len() != types {
            return invalid(format!(
                "sample {i} has {} values for {types} sample types",
                sample.value.len()
            ));
        }
        if let Some(id) = sample
            .location_id
            .iter()
            .find(|&&id| !locations.contains(id))
        {
            return invalid(format!("sample {i} refers to unknown location {id}"));
        }
        for label in &sample.label {
            check_string(label.key, "label.key")?;
            check_string(label.str, "label.str")?;
            check_string(label.num_unit, "label.num_unit")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kiln_proto::google::v1::{Function, Label, Line, Location, Sample, ValueType};

    use super::*;

    /// A two-type CPU profile: sample i has values [i+1, 10*(i+1)] and the given labels.
    fn profile(labels: Vec<Vec<(&str, &str)>>) -> Profile {
        let mut strings = vec![String::new()];
        let mut string = |s: &str| {
            if let Some(i) = strings.iter().position(|x| x == s) {
                return i as i64;
            }
            strings.push(s.to_string());
            strings.len() as i64 - 1
        };
        let sample_type = vec![
            ValueType {
                r#type: string("samples"),
                unit: string("count"),
            },
            ValueType {
                r#type: string("cpu"),
                unit: string("nanoseconds"),
            },
        ];
        let period_type = Some(ValueType {
            r#type: string("cpu"),
            unit: string("nanoseconds"),
        });
        let function = Function {
            id: 1,
            name: string("main"),
            ..Function::default()
        };
        let samples = labels
            .iter()
            .enumerate()
            .map(|(i, pairs)| Sample {
                location_id: vec![1],
                value: vec![i as i64 + 1, 10 * (i as i64 + 1)],
                label: pairs
                    .iter()
                    .map(|(k, v)| Label {
                        key: string(k),
                        str: string(v),
                        ..Label::default()
                    })
                    .collect(),
            })
            .collect();
        Profile {
            sample_type,
            period_type,
            sample: samples,
            location: vec![Location {
                id: 1,
                line: vec![Line {
                    function_id: 1,
                    line: 3,
                    column: 0,
                }],
                ..Location::default()
            }],
            function: vec![function],
            string_table: strings,
            ..Profile::default()
        }
    }

    fn base() -> Labels {
        Labels::from_pairs([("service_name", "svc"), ("env", "prod")])
    }

    #[test]
    fn unlabeled_samples_share_one_group_between_labeled_ones() {
        // Values: sample i has i + 1 samples and 10 * (i + 1) ns.
        let p = profile(vec![
            vec![],
            vec![("region", "eu")],
            vec![],
            vec![("span_id", "00000000000000aa")],
            vec![],
        ]);
        let normalized = normalize(p, &base(), NormalizeOptions::default()).unwrap();
        let cpu = normalized
            .series
            .iter()
            .filter(|s| s.profile_type.id() == "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        // (region, the series' samples as (value, span id)).
        type Series<'a> = (Option<&'a str>, Vec<(i64, Option<&'a str>)>);
        let mut seen: Vec<Series<'_>> = cpu
            .map(|s| {
                let samples = s
                    .samples
                    .iter()
                    .map(|sample| (sample.value, sample.labels.span_id.as_deref()))
                    .collect();
                (s.labels.get("region"), samples)
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    None,
                    vec![
                        (10, None),
                        (30, None),
                        (40, Some("00000000000000aa")),
                        (50, None)
                    ]
                ),
                (Some("eu"), vec![(20, None)]),
            ]
        );
    }

    #[test]
    fn splits_by_sample_type_and_string_labels() {
        let p = profile(vec![
            vec![("region", "eu"), ("span_id", "00000000000000aa")],
            vec![("region", "us")],
            vec![("region", "eu"), ("trace_id", "t1")],
        ]);
        let normalized = normalize(p, &base(), NormalizeOptions::default()).unwrap();
        assert_eq!(normalized.series.len(), 4);
        let mut seen = Vec::new();
        for series in &normalized.series {
            assert_eq!(series.labels.get("__name__"), Some("process_cpu"));
            assert_eq!(series.labels.get("env"), Some("prod"));
            assert_eq!(series.labels.get("span_id"), None);
            let total: i64 = series.samples.iter().map(|s| s.value).sum();
            seen.push((
                series.profile_type.id(),
                series.labels.get("region").unwrap().to_string(),
                total,
            ));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
                    "eu".to_string(),
                    40
                ),
                (
                    "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
                    "us".to_string(),
                    20
                ),
                (
                    "process_cpu:samples:count:cpu:nanoseconds".to_string(),
                    "eu".to_string(),
                    4
                ),
                (
                    "process_cpu:samples:count:cpu:nanoseconds".to_string(),
                    "us".to_string(),
                    2
                ),
            ]
        );
        let eu = &normalized.series[0];
        assert_eq!(
            eu.samples[0].labels.span_id.as_deref(),
            Some("00000000000000aa")
        );
        assert_eq!(eu.samples[1].labels.trace_id.as_deref(), Some("t1"));
    }

    #[test]
    fn an_explicit_name_wins_and_times_fall_back() {
        let mut labels = base();
        labels.set(LABEL_NAME.to_string(), "custom".to_string());
        let mut p = profile(vec![vec![]]);
        p.time_nanos = 5;
        let options = NormalizeOptions {
            now_nanos: 9,
            ..NormalizeOptions::default()
        };
        let normalized = normalize(p.clone(), &labels, options.clone()).unwrap();
        assert_eq!(normalized.series[0].profile_type.name, "custom");
        assert_eq!(normalized.time_nanos, 5);
        p.time_nanos = 0;
        assert_eq!(
            normalize(p.clone(), &labels, options).unwrap().time_nanos,
            9
        );
        let forced = NormalizeOptions {
            time_nanos: Some(7),
            ..NormalizeOptions::default()
        };
        assert_eq!(normalize(p, &labels, forced).unwrap().time_nanos, 7);
    }

    #[test]
    fn zero_values_are_dropped_per_type() {
        let mut p = profile(vec![vec![], vec![]]);
        p.sample[0].value = vec![0, 5];
        let normalized = normalize(p, &base(), NormalizeOptions::default()).unwrap();
        let counts: Vec<usize> = normalized.series.iter().map(|s| s.samples.len()).collect();
        assert_eq!(counts, [1, 2]);
    }

    #[test]
    fn rejects_bad_sample_labels_and_references() {
        let p = profile(vec![vec![("bad-name", "x")]]);
        let err = normalize(p, &base(), NormalizeOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("invalid label name \"bad-name\""),
            "{err}"
        );

        let mut p = profile(vec![vec![]]);
        p.sample[0].value.pop();
        let err = normalize(p, &base(), NormalizeOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("has 1 values for 2 sample types"),
            "{err}"
        );

        let mut p = profile(vec![vec![]]);
        p.function[0].name = 99;
        let err = normalize(p, &base(), NormalizeOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("function.name refers to string 99"),
            "{err}"
        );

        let missing = Labels::from_pairs([("env", "prod")]);
        let err = normalize(profile(vec![vec![]]), &missing, NormalizeOptions::default());
        assert!(matches!(err, Err(ModelError::MissingServiceName)));
    }

    #[test]
    fn label_and_series_limits_apply_before_series_are_made() {
        let limited = |limits: NormalizeLimits| NormalizeOptions {
            limits,
            ..NormalizeOptions::default()
        };
        // service_name, env, region + __name__, __profile_type__, __type__, __unit__,
        // __period_type__, __period_unit__: 9 label names per series.
        let p = profile(vec![vec![("region", "eu")], vec![("region", "us")]]);
        let names = |max| NormalizeLimits {
            max_label_names_per_series: max,
            ..NormalizeLimits::default()
        };
        assert!(normalize(p.clone(), &base(), limited(names(9))).is_ok());
        let err = normalize(p.clone(), &base(), limited(names(8))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "series has 9 label names, over max_label_names_per_series 8"
        );
        let lengths = NormalizeLimits {
            max_label_value_length: 3,
            ..NormalizeLimits::default()
        };
        let err = normalize(p.clone(), &base(), limited(lengths)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value of label env is 4 bytes, over max_label_value_length 3"
        );
        // Two sample types times two regions.
        let series = |max| NormalizeLimits {
            max_series: max,
            ..NormalizeLimits::default()
        };
        assert!(normalize(p.clone(), &base(), limited(series(4))).is_ok());
        let err = normalize(p, &base(), limited(series(3))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "profile would make 4 series, over max_series_per_tenant 3"
        );

        // A sample with thousands of labels is refused as soon as its group passes the limit.
        let many: Vec<(String, String)> = (0..5000)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let err = normalize(profile(vec![pairs]), &base(), limited(names(30))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "series has 35 label names, over max_label_names_per_series 30"
        );
    }
}
