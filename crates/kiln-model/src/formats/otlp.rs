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
#[cfg(test)]
mod tests;

use std::fmt;

use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::common::v1::{InstrumentationScope, KeyValue};
use kiln_proto::opentelemetry::proto::profiles::v1development::{Profile, ResourceProfiles};

pub use error::OtlpError;

use self::dictionary::{Dictionary, check_dictionary};
use crate::{NormalizedProfile, normalize};

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

/// Converts every profile of `request`; a profile that is invalid is rejected on its own, and
/// every profile is when the dictionary is invalid. `now_nanos` is the time of profiles that
/// carry none.
pub fn convert_request(request: ExportProfilesServiceRequest, now_nanos: i64) -> Converted {
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
        return converted;
    }
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
                );
                match converted_profile {
                    Ok(normalized) => converted.profiles.push(normalized),
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
    converted
}

/// One profile: its series labels, its pprof, then normalization.
fn convert_profile(
    dictionary: &Dictionary<'_>,
    resource_attributes: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    profile: &Profile,
    now_nanos: i64,
) -> Result<NormalizedProfile, OtlpError> {
    let mut labels = labels::base_labels(dictionary, resource_attributes, scope, profile)?;
    let (pprof, options) = pprof::to_pprof(dictionary, profile, &mut labels, now_nanos)?;
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
