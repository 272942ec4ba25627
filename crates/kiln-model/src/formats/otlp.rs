//! OTLP profiles (v1.10/v1.11 layout) to Kiln's model.
//!
//! Every OTLP profile becomes a pprof built from the request's shared dictionary, then goes
//! through the same validation and normalization as any pprof. docs/profile-types.md
//! documents the mapping. The dictionary is checked once per request (`dictionary`); each
//! profile then gets its series labels (`labels`) and its pprof (`pprof`), and is normalized.
//! Decoding the request (protobuf or OTLP/JSON) is the transport's job.

mod dictionary;
mod error;
mod labels;
mod pprof;
mod renumber;
#[cfg(test)]
mod tests;

use std::fmt;

use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::common::v1::{InstrumentationScope, KeyValue};
use kiln_proto::opentelemetry::proto::profiles::v1development::{Profile, ResourceProfiles};

pub use error::OtlpError;

use self::dictionary::{Dictionary, check_dictionary};
use self::renumber::Renumbering;
use crate::{LimitExceeded, ModelError, NormalizeLimits, NormalizedProfile, normalize};

/// Where a profile is in its request: indices into `resource_profiles`, then
/// `scope_profiles`, then `profiles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfilePosition {
    /// Index in `ExportProfilesServiceRequest.resource_profiles`.
    pub resource: usize,
    /// Index in that resource's `scope_profiles`.
    pub scope: usize,
    /// Index in that scope's `profiles`.
    pub profile: usize,
}

impl fmt::Display for ProfilePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resource {} scope {} profile {}",
            self.resource, self.scope, self.profile
        )
    }
}

/// One profile of a request that could not be used, and why.
///
/// Displays as `resource R scope S profile P: <error>`, or as the error alone when the
/// request's dictionary is unusable (which rejects every profile with the same error).
#[derive(Clone, Debug)]
pub struct Rejected {
    /// The profile; None when the dictionary, not the profile, is at fault.
    pub position: Option<ProfilePosition>,
    /// Why it was rejected.
    pub error: OtlpError,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.position {
            Some(position) => write!(f, "{position}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// The outcome of converting a whole request.
#[derive(Debug, Default)]
pub struct Converted {
    /// The profiles that could be used, normalized.
    pub profiles: Vec<NormalizedProfile>,
    /// The profiles that could not, in request order.
    pub rejected: Vec<Rejected>,
    /// Number of OTLP profiles in the request.
    pub total: usize,
}

/// The limits a conversion checks before the work they bound. 0 turns a limit off (the
/// default: no limits).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvertLimits {
    /// Samples per profile, checked before the profile is converted.
    pub max_samples_per_profile: usize,
    /// Locations per stack: a deeper stack is copied to a sample with `max_stack_depth + 1` of
    /// its outermost locations only, for the limit's truncation to cut and count.
    pub max_stack_depth: usize,
    /// Label and series limits of normalization.
    pub normalize: NormalizeLimits,
}

/// Converts every profile of `request`; a profile that is invalid is rejected on its own, and
/// every profile is when the dictionary is invalid. `now_nanos` is the time of profiles that
/// carry none.
pub fn convert_request(request: ExportProfilesServiceRequest, now_nanos: i64) -> Converted {
    convert_request_within(request, now_nanos, &ConvertLimits::default())
        .expect("no limit is exceeded without limits")
}

/// [`convert_request`] within `limits`: the first profile over one of them refuses the whole
/// request (as the distributor's limits always have), before the profiles after it are
/// converted.
pub fn convert_request_within(
    request: ExportProfilesServiceRequest,
    now_nanos: i64,
    limits: &ConvertLimits,
) -> Result<Converted, LimitExceeded> {
    let dictionary = request.dictionary.unwrap_or_default();
    let mut converted = Converted::default();
    if let Err(error) = check_dictionary(&dictionary) {
        converted.total = count_profiles(&request.resource_profiles);
        converted.rejected = (0..converted.total)
            .map(|_| Rejected {
                position: None,
                error: error.clone(),
            })
            .collect();
        return Ok(converted);
    }
    let mut renumber = Renumbering::new(&dictionary);
    let dictionary = Dictionary::new(&dictionary);
    for (r, resource) in request.resource_profiles.iter().enumerate() {
        let resource_attributes = resource
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for (s, scope) in resource.scope_profiles.iter().enumerate() {
            for (p, profile) in scope.profiles.iter().enumerate() {
                converted.total += 1;
                let converted_profile = convert_profile(
                    &dictionary,
                    resource_attributes,
                    scope.scope.as_ref(),
                    profile,
                    now_nanos,
                    limits,
                    &mut renumber,
                );
                match converted_profile {
                    Ok(normalized) => converted.profiles.push(normalized),
                    Err(OtlpError::Normalize(ModelError::Limit(exceeded))) => return Err(exceeded),
                    Err(error) => converted.rejected.push(Rejected {
                        position: Some(ProfilePosition {
                            resource: r,
                            scope: s,
                            profile: p,
                        }),
                        error,
                    }),
                }
            }
        }
    }
    Ok(converted)
}

/// One profile: its series labels, its pprof, then normalization.
fn convert_profile(
    dictionary: &Dictionary<'_>,
    resource_attributes: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    profile: &Profile,
    now_nanos: i64,
    limits: &ConvertLimits,
    renumber: &mut Renumbering,
) -> Result<NormalizedProfile, OtlpError> {
    let max = limits.max_samples_per_profile;
    if max > 0 && profile.samples.len() > max {
        let exceeded = LimitExceeded::Samples {
            samples: profile.samples.len(),
            limit: max,
        };
        return Err(ModelError::Limit(exceeded).into());
    }
    let mut labels = labels::base_labels(dictionary, resource_attributes, scope, profile)?;
    let (pprof, mut options) = pprof::to_pprof(
        dictionary,
        profile,
        &mut labels,
        now_nanos,
        limits.max_stack_depth,
        renumber,
    )?;
    options.limits = limits.normalize;
    Ok(normalize(pprof, &labels, options)?)
}

/// Number of OTLP profiles in a request.
fn count_profiles(resources: &[ResourceProfiles]) -> usize {
    resources
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .map(|s| s.profiles.len())
        .sum()
}
