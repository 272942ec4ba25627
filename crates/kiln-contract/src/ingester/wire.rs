//! Normalized profiles on the wire between distributors and ingesters (`kiln.ingester.v1`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kiln_model::{
    Labels, NormalizedProfile, NormalizedSample, ProfileType, SampleLabels, SeriesProfile,
    validate_references,
};
use kiln_proto::google::v1::Profile;
use kiln_proto::kiln::ingester::v1 as pb;

/// A normalized profile as sent to an ingester.
pub fn profile_to_pb(profile: &NormalizedProfile) -> pb::NormalizedProfile {
    pb::NormalizedProfile {
        service_name: profile.service_name.clone(),
        profile_id: profile.profile_id.clone(),
        time_nanos: profile.time_nanos,
        duration_nanos: profile.duration_nanos,
        period: profile.period,
        symbols: Some(Profile::clone(&profile.symbols)),
        series: profile
            .series
            .iter()
            .map(|series| pb::Series {
                labels: series
                    .labels
                    .iter()
                    .map(|(name, value)| pb::LabelPair {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                profile_type: series.profile_type.id(),
                samples: series
                    .samples
                    .iter()
                    .map(|sample| pb::Sample {
                        locations: sample.locations.to_vec(),
                        value: sample.value,
                        span_id: sample.labels.span_id.clone().unwrap_or_default(),
                        span_name: sample.labels.span_name.clone().unwrap_or_default(),
                        trace_id: sample.labels.trace_id.clone().unwrap_or_default(),
                        profile_id: sample.labels.profile_id.clone().unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

use super::IngestError;

/// A normalized profile received from a distributor, checked so that nothing in it can make the
/// segment builder index out of bounds: every reference inside the symbols resolves (strings,
/// functions, mappings) and every location a sample names exists.
pub fn profile_from_pb(profile: pb::NormalizedProfile) -> Result<NormalizedProfile, IngestError> {
    let invalid = IngestError::Invalid;
    let symbols = profile
        .symbols
        .ok_or_else(|| invalid(format!("profile {} has no symbols", profile.profile_id)))?;
    validate_references(&symbols)
        .map_err(|e| invalid(format!("profile {}: {e}", profile.profile_id)))?;
    let known: HashSet<u64> = symbols.location.iter().map(|l| l.id).collect();
    let mut shared_labels: HashMap<SampleLabels, Arc<SampleLabels>> = HashMap::new();
    // One copy of each stack for all the series (sample types) of the profile, as `normalize`
    // leaves them: a stack seen before is checked already, and the segment builder resolves a
    // shared stack once for every type.
    let mut stacks: HashSet<Arc<[u64]>> = HashSet::new();
    let mut series = Vec::with_capacity(profile.series.len());
    for s in profile.series {
        let profile_type = ProfileType::parse(&s.profile_type)
            .ok_or_else(|| invalid(format!("invalid profile type {:?}", s.profile_type)))?;
        let mut samples = Vec::with_capacity(s.samples.len());
        for sample in s.samples {
            let locations = match stacks.get(sample.locations.as_slice()) {
                Some(stack) => Arc::clone(stack),
                None => {
                    if let Some(id) = sample.locations.iter().find(|id| !known.contains(id)) {
                        return Err(invalid(format!(
                            "profile {} names location {id}, which its symbols lack",
                            profile.profile_id
                        )));
                    }
                    let stack: Arc<[u64]> = sample.locations.into();
                    stacks.insert(Arc::clone(&stack));
                    stack
                }
            };
            let labels = SampleLabels {
                span_id: non_empty(sample.span_id),
                span_name: non_empty(sample.span_name),
                trace_id: non_empty(sample.trace_id),
                profile_id: non_empty(sample.profile_id),
            };
            let labels = Arc::clone(
                shared_labels
                    .entry(labels.clone())
                    .or_insert_with(|| Arc::new(labels)),
            );
            samples.push(NormalizedSample {
                locations,
                value: sample.value,
                labels,
            });
        }
        series.push(SeriesProfile {
            labels: Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value))),
            profile_type,
            samples,
        });
    }
    Ok(NormalizedProfile {
        service_name: profile.service_name,
        profile_id: profile.profile_id,
        time_nanos: profile.time_nanos,
        duration_nanos: profile.duration_nanos,
        period: profile.period,
        symbols: Arc::new(symbols),
        series,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kiln_model::{DecodeLimits, NormalizeOptions, decode_pprof, normalize};

    use super::*;

    fn normalized() -> Vec<NormalizedProfile> {
        kiln_testkit::testdata::pprof_files()
            .into_iter()
            .map(|(name, gzipped)| {
                let profile = decode_pprof(Bytes::from(gzipped), DecodeLimits::default()).unwrap();
                let base = Labels::from_pairs([("service_name", name.as_str())]);
                let options = NormalizeOptions {
                    now_nanos: 1,
                    profile_id: Some(name.clone()),
                    ..NormalizeOptions::default()
                };
                normalize(profile, &base, options).unwrap()
            })
            .collect()
    }

    #[test]
    fn profiles_cross_the_wire_unchanged() {
        for profile in normalized() {
            let back = profile_from_pb(profile_to_pb(&profile)).unwrap();
            assert_eq!(
                format!("{profile:?}"),
                format!("{back:?}"),
                "{}",
                profile.profile_id
            );
        }
    }

    #[test]
    fn a_sample_naming_an_unknown_location_is_refused() {
        let profile = normalized().remove(0);
        let mut wire = profile_to_pb(&profile);
        wire.series[0].samples[0].locations.push(u64::MAX);
        let error = profile_from_pb(wire).unwrap_err().to_string();
        assert!(error.contains(&format!("location {}", u64::MAX)), "{error}");
        let mut wire = profile_to_pb(&profile);
        wire.series[0].profile_type = "nonsense".into();
        assert!(
            profile_from_pb(wire)
                .unwrap_err()
                .to_string()
                .contains("invalid profile type")
        );
    }

    #[test]
    fn each_stack_arrives_once_for_all_sample_types() {
        let mut shared = 0;
        for profile in normalized() {
            let back = profile_from_pb(profile_to_pb(&profile)).unwrap();
            let all: Vec<&Arc<[u64]>> = back
                .series
                .iter()
                .flat_map(|s| s.samples.iter().map(|sample| &sample.locations))
                .collect();
            let contents: HashSet<&[u64]> = all.iter().map(|stack| &stack[..]).collect();
            let copies: HashSet<*const u64> = all.iter().map(|stack| stack.as_ptr()).collect();
            assert_eq!(copies.len(), contents.len(), "{}", profile.profile_id);
            shared += all.len() - copies.len();
        }
        assert!(shared > 0, "no stack is shared by two sample types");
    }
}
