//! Series labels of an OTLP profile: from its resource, scope and own attributes, and from
//! those of its samples that have few values.

use std::collections::{BTreeMap, HashMap, HashSet};

use kiln_proto::opentelemetry::proto::common::v1::{InstrumentationScope, KeyValue};
use kiln_proto::opentelemetry::proto::profiles::v1development::Profile;

use super::OtlpError;
use super::dictionary::Dictionary;
use crate::{LABEL_SERVICE_NAME, Labels};

/// The service name when a resource names none, as OpenTelemetry's SDKs default it.
const UNKNOWN_SERVICE: &str = "unknown_service";
/// A sample attribute becomes a series label only while it has at most this many distinct
/// values in one profile; past that it is dropped for the profile (it is per-request data
/// such as a thread id, which would explode the number of series).
const MAX_SAMPLE_LABEL_VALUES: usize = 64;

/// Series labels from the resource, the scope and the profile's own attributes, with
/// `service_name` from `service.name` (or `unknown_service[:<process.executable.name>]`).
pub(super) fn base_labels(
    dictionary: &Dictionary<'_>,
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    profile: &Profile,
) -> Result<Labels, OtlpError> {
    let mut pairs: BTreeMap<String, String> = BTreeMap::new();
    for kv in resource {
        if let Some((k, v)) = dictionary.key_value(kv) {
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
            if let Some((k, v)) = dictionary.key_value(kv) {
                pairs.insert(k, v);
            }
        }
    }
    for &index in &profile.attribute_indices {
        if !dictionary.has_attribute(index) {
            return Err(OtlpError::ProfileAttribute(index));
        }
        if let Some((k, v)) = dictionary.attribute(index) {
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

/// The keys of the sample attributes that become labels: those with at most
/// [`MAX_SAMPLE_LABEL_VALUES`] distinct values in the profile. Checks every sample's
/// attribute indices on the way.
pub(super) fn sample_label_keys(
    dictionary: &Dictionary<'_>,
    profile: &Profile,
) -> Result<HashSet<String>, OtlpError> {
    let mut values_per_key: HashMap<String, HashSet<String>> = HashMap::new();
    for sample in &profile.samples {
        for &index in &sample.attribute_indices {
            if !dictionary.has_attribute(index) {
                return Err(OtlpError::SampleAttribute(index));
            }
            if let Some((k, v)) = dictionary.attribute(index) {
                values_per_key.entry(k).or_default().insert(v);
            }
        }
    }
    Ok(values_per_key
        .into_iter()
        .filter(|(_, values)| values.len() <= MAX_SAMPLE_LABEL_VALUES)
        .map(|(k, _)| k)
        .collect())
}

/// Attribute keys become label names: characters outside `[a-zA-Z0-9_.]` become `_`, and a
/// leading digit gets a `_` prefix.
pub(super) fn sanitize_label_name(key: &str) -> String {
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
