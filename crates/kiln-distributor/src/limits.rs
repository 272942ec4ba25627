//! Per-tenant limits at the distributor: validation of each profile, truncation of deep stacks
//! and long symbols, and the ingestion rate. Defaults come from flags, overrides from the runtime
//! config file, which is re-read while the server runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_config::Limits;
use kiln_model::formats::otlp::ConvertLimits;
use kiln_model::{DecodeLimits, LimitExceeded, NormalizeLimits, NormalizedProfile};
use kiln_runtime::TenantOverrides;
use parking_lot::Mutex;
use thiserror::Error;

/// A request over one of its tenant's limits. Each names the limit and the offending value.
#[derive(Debug, Error)]
pub enum LimitError {
    /// Over the ingestion rate: retry later (429).
    #[error(
        "tenant {tenant}: ingestion rate limit of {rate_mb} MB/s (burst {burst_mb} MB) reached; retry later"
    )]
    RateLimited {
        tenant: String,
        rate_mb: f64,
        burst_mb: f64,
    },
    /// A request larger than the whole burst can never pass.
    #[error("tenant {tenant}: request of {bytes} bytes exceeds ingestion_burst_size_mb {burst_mb}")]
    LargerThanBurst {
        tenant: String,
        bytes: u64,
        burst_mb: f64,
    },
    /// Too many samples in one profile.
    #[error("tenant {tenant}: profile has {samples} samples, over max_samples_per_profile {limit}")]
    TooManySamples {
        tenant: String,
        samples: usize,
        limit: usize,
    },
    /// The decoded profiles of a request would take too much memory (413).
    #[error(
        "tenant {tenant}: decoded profiles would take {bytes} bytes, over max_decoded_bytes {limit}"
    )]
    DecodedTooLarge {
        tenant: String,
        bytes: u64,
        limit: usize,
    },
    /// Too many label names on a series.
    #[error(
        "tenant {tenant}: series has {names} label names, over max_label_names_per_series {limit}"
    )]
    TooManyLabels {
        tenant: String,
        names: usize,
        limit: usize,
    },
    /// A label name too long.
    #[error(
        "tenant {tenant}: label name {name:?}... is {length} bytes, over max_label_name_length {limit}"
    )]
    LabelNameTooLong {
        tenant: String,
        name: String,
        length: usize,
        limit: usize,
    },
    /// A label value too long.
    #[error(
        "tenant {tenant}: value of label {name} is {length} bytes, over max_label_value_length {limit}"
    )]
    LabelValueTooLong {
        tenant: String,
        name: String,
        length: usize,
        limit: usize,
    },
    /// A push adding series beyond the tenant's active series.
    #[error(
        "tenant {tenant}: push would make {series} active series, over max_series_per_tenant {limit}"
    )]
    TooManySeries {
        tenant: String,
        series: usize,
        limit: usize,
    },
    /// Stamped too far in the future.
    #[error(
        "tenant {tenant}: profile time {time_nanos} ns is more than reject_newer_than {limit:?} ahead of now"
    )]
    TooNew {
        tenant: String,
        time_nanos: i64,
        limit: Duration,
    },
    /// Stamped before the tenant's retention period: it would never be queryable.
    #[error(
        "tenant {tenant}: profile time {time_nanos} ns is older than its retention_period of {retention:?}"
    )]
    PastRetention {
        tenant: String,
        time_nanos: i64,
        retention: Duration,
    },
    /// Stamped too long ago.
    #[error(
        "tenant {tenant}: profile time {time_nanos} ns is older than reject_older_than {limit:?}"
    )]
    TooOld {
        tenant: String,
        time_nanos: i64,
        limit: Duration,
    },
}

impl LimitError {
    /// A short reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            LimitError::RateLimited { .. } => "rate_limited",
            LimitError::LargerThanBurst { .. } => "larger_than_burst",
            LimitError::TooManySamples { .. } => "too_many_samples",
            LimitError::DecodedTooLarge { .. } => "decoded_too_large",
            LimitError::TooManyLabels { .. } => "too_many_labels",
            LimitError::LabelNameTooLong { .. } => "label_name_too_long",
            LimitError::LabelValueTooLong { .. } => "label_value_too_long",
            LimitError::TooManySeries { .. } => "too_many_series",
            LimitError::TooNew { .. } => "too_far_in_future",
            LimitError::TooOld { .. } => "too_old",
            LimitError::PastRetention { .. } => "past_retention",
        }
    }

    /// True when the same request may pass later (rate limiting), so 429 rather than 400.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, LimitError::RateLimited { .. })
    }

    /// True for a request too large to be decoded (413 rather than 400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, LimitError::DecodedTooLarge { .. })
    }

    /// The tenant's limit error for a limit that decoding or normalization found exceeded.
    pub fn exceeded(tenant: &str, exceeded: LimitExceeded) -> Self {
        let tenant = tenant.to_string();
        match exceeded {
            LimitExceeded::Samples { samples, limit } => LimitError::TooManySamples {
                tenant,
                samples,
                limit,
            },
            LimitExceeded::DecodedBytes { bytes, limit } => LimitError::DecodedTooLarge {
                tenant,
                bytes,
                limit,
            },
            LimitExceeded::LabelNames { names, limit } => LimitError::TooManyLabels {
                tenant,
                names,
                limit,
            },
            LimitExceeded::LabelNameLength {
                name,
                length,
                limit,
            } => LimitError::LabelNameTooLong {
                tenant,
                name,
                length,
                limit,
            },
            LimitExceeded::LabelValueLength {
                name,
                length,
                limit,
            } => LimitError::LabelValueTooLong {
                tenant,
                name,
                length,
                limit,
            },
            LimitExceeded::Series { series, limit } => LimitError::TooManySeries {
                tenant,
                series,
                limit,
            },
        }
    }
}

/// The limits that decoding checks, from a tenant's limits.
pub(crate) fn decode_limits(limits: &Limits) -> DecodeLimits {
    DecodeLimits {
        max_decompressed_bytes: limits.max_decompressed_bytes,
        max_samples_per_profile: limits.max_samples_per_profile,
        max_decoded_bytes: limits.max_decoded_bytes,
    }
}

/// The label and series limits that normalization checks, from a tenant's limits.
pub(crate) fn normalize_limits(limits: &Limits) -> NormalizeLimits {
    NormalizeLimits {
        max_label_names_per_series: limits.max_label_names_per_series,
        max_label_name_length: limits.max_label_name_length,
        max_label_value_length: limits.max_label_value_length,
        max_series: limits.max_series_per_tenant,
    }
}

/// The limits that OTLP conversion checks, from a tenant's limits.
pub(crate) fn convert_limits(limits: &Limits) -> ConvertLimits {
    ConvertLimits {
        max_samples_per_profile: limits.max_samples_per_profile,
        max_stack_depth: limits.max_stack_depth,
        normalize: normalize_limits(limits),
    }
}

/// What was truncated in accepted profiles.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Truncations {
    /// Samples whose stack was cut to the maximum depth.
    pub deep_stacks: u64,
    /// Symbols cut to the maximum length.
    pub long_symbols: u64,
}

/// Checks `profiles` of `tenant` against `limits` and truncates what is truncated rather than
/// refused. All or nothing: the first violation refuses the whole request.
pub fn apply(
    tenant: &str,
    limits: &Limits,
    profiles: &mut [NormalizedProfile],
    now_nanos: i64,
) -> Result<Truncations, LimitError> {
    let tenant = tenant.to_string();
    let mut truncations = Truncations::default();
    for profile in profiles.iter_mut() {
        let newer = limits.reject_newer_than.as_nanos() as i64;
        if newer > 0 && profile.time_nanos > now_nanos.saturating_add(newer) {
            return Err(LimitError::TooNew {
                tenant,
                time_nanos: profile.time_nanos,
                limit: limits.reject_newer_than,
            });
        }
        let older = limits.reject_older_than.as_nanos() as i64;
        if older > 0 && profile.time_nanos < now_nanos.saturating_sub(older) {
            return Err(LimitError::TooOld {
                tenant,
                time_nanos: profile.time_nanos,
                limit: limits.reject_older_than,
            });
        }
        let retention = limits.retention_period.as_nanos().min(i64::MAX as u128) as i64;
        if retention > 0 && profile.time_nanos < now_nanos.saturating_sub(retention) {
            return Err(LimitError::PastRetention {
                tenant,
                time_nanos: profile.time_nanos,
                retention: limits.retention_period,
            });
        }
        let mut per_type: BTreeMap<&kiln_model::ProfileType, usize> = BTreeMap::new();
        for series in &profile.series {
            *per_type.entry(&series.profile_type).or_default() += series.samples.len();
        }
        let samples = per_type.values().copied().max().unwrap_or(0);
        if limits.max_samples_per_profile > 0 && samples > limits.max_samples_per_profile {
            return Err(LimitError::TooManySamples {
                tenant,
                samples,
                limit: limits.max_samples_per_profile,
            });
        }
        for series in &profile.series {
            let names = series.labels.len();
            if limits.max_label_names_per_series > 0 && names > limits.max_label_names_per_series {
                return Err(LimitError::TooManyLabels {
                    tenant,
                    names,
                    limit: limits.max_label_names_per_series,
                });
            }
            for (name, value) in series.labels.iter() {
                if limits.max_label_name_length > 0 && name.len() > limits.max_label_name_length {
                    return Err(LimitError::LabelNameTooLong {
                        tenant,
                        name: truncate(name, 64).to_string(),
                        length: name.len(),
                        limit: limits.max_label_name_length,
                    });
                }
                if limits.max_label_value_length > 0 && value.len() > limits.max_label_value_length
                {
                    return Err(LimitError::LabelValueTooLong {
                        tenant,
                        name: name.to_string(),
                        length: value.len(),
                        limit: limits.max_label_value_length,
                    });
                }
            }
        }
        truncations.deep_stacks += truncate_stacks(profile, limits.max_stack_depth);
        truncations.long_symbols += truncate_symbols(profile, limits.max_symbol_length);
    }
    Ok(truncations)
}

/// Cuts stacks deeper than `depth`, keeping the root side (locations are leaf first).
fn truncate_stacks(profile: &mut NormalizedProfile, depth: usize) -> u64 {
    if depth == 0 {
        return 0;
    }
    let mut cut = 0;
    for series in &mut profile.series {
        for sample in &mut series.samples {
            let len = sample.locations.len();
            if len > depth {
                sample.locations = sample.locations[len - depth..].into();
                cut += 1;
            }
        }
    }
    cut
}

/// Cuts strings of the symbol table longer than `length` bytes, at a character boundary.
fn truncate_symbols(profile: &mut NormalizedProfile, length: usize) -> u64 {
    if length == 0
        || profile
            .symbols
            .string_table
            .iter()
            .all(|s| s.len() <= length)
    {
        return 0;
    }
    let symbols = Arc::make_mut(&mut profile.symbols);
    let mut cut = 0;
    for text in &mut symbols.string_table {
        if text.len() > length {
            let keep = truncate(text, length).len();
            text.truncate(keep);
            cut += 1;
        }
    }
    cut
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A token bucket of bytes, with the rate and size it was last used with.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// True when the bucket has refilled by `now`: the same as no bucket at all.
    fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.updated).as_secs_f64() * self.rate
            >= self.burst
    }
}

/// Tenants with in-memory state by default (see [`TenantLimits::set_max_tenants`]).
const DEFAULT_MAX_TENANTS: usize = 1000;

/// The distributor's view of the tenants' limits: their values (from [`TenantOverrides`]) and
/// the state of their ingestion rate.
#[derive(Debug)]
pub struct TenantLimits {
    overrides: Arc<TenantOverrides>,
    buckets: Mutex<HashMap<String, Bucket>>,
    live_distributors: AtomicUsize,
    max_tenants: AtomicUsize,
}

impl TenantLimits {
    /// Limits read from `overrides`, with no ingestion spent yet.
    pub fn new(overrides: Arc<TenantOverrides>) -> Arc<Self> {
        Arc::new(Self {
            overrides,
            buckets: Mutex::default(),
            live_distributors: AtomicUsize::new(1),
            max_tenants: AtomicUsize::new(DEFAULT_MAX_TENANTS),
        })
    }

    /// Keeps ingestion-rate state (and active series) for at most `max` tenants at once (at
    /// least one). Beyond it, buckets that refilled are dropped first (which loses nothing),
    /// then the one used least recently (that tenant gets a full burst again).
    pub fn set_max_tenants(&self, max: usize) {
        self.max_tenants.store(max.max(1), Ordering::Relaxed);
    }

    /// The most tenants with in-memory state.
    pub fn max_tenants(&self) -> usize {
        self.max_tenants.load(Ordering::Relaxed)
    }

    /// How many tenants have a rate-limit bucket now.
    pub fn tracked_tenants(&self) -> usize {
        self.buckets.lock().len()
    }

    /// Drops the buckets that refilled by `now`; returns how many are left.
    pub fn forget_full_buckets(&self, now: Instant) -> usize {
        let mut buckets = self.buckets.lock();
        buckets.retain(|_, bucket| !bucket.is_full(now));
        buckets.len()
    }

    /// The limits of `tenant` now.
    pub fn limits(&self, tenant: &str) -> Limits {
        self.overrides.limits(tenant)
    }

    /// The per-tenant settings behind these limits.
    pub fn overrides(&self) -> &Arc<TenantOverrides> {
        &self.overrides
    }

    /// How many distributors share the cluster-wide ingestion rate.
    pub fn set_live_distributors(&self, count: usize) {
        self.live_distributors
            .store(count.max(1), Ordering::Relaxed);
    }

    /// Takes `bytes` from `tenant`'s ingestion budget.
    pub fn admit(&self, tenant: &str, limits: &Limits, bytes: u64) -> Result<(), LimitError> {
        if limits.ingestion_rate_mb <= 0.0 {
            return Ok(());
        }
        let burst = limits.ingestion_burst_size_mb * 1e6;
        if bytes as f64 > burst {
            return Err(LimitError::LargerThanBurst {
                tenant: tenant.to_string(),
                bytes,
                burst_mb: limits.ingestion_burst_size_mb,
            });
        }
        let share = self.live_distributors.load(Ordering::Relaxed) as f64;
        let rate = limits.ingestion_rate_mb * 1e6 / share;
        let mut buckets = self.buckets.lock();
        let now = Instant::now();
        if !buckets.contains_key(tenant) && buckets.len() >= self.max_tenants() {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= self.max_tenants() {
                let oldest = buckets
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.updated)
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    buckets.remove(&oldest);
                }
            }
        }
        let bucket = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            updated: now,
            rate,
            burst,
        });
        (bucket.rate, bucket.burst) = (rate, burst);
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens < bytes as f64 {
            return Err(LimitError::RateLimited {
                tenant: tenant.to_string(),
                rate_mb: limits.ingestion_rate_mb,
                burst_mb: limits.ingestion_burst_size_mb,
            });
        }
        bucket.tokens -= bytes as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_capped_and_full_ones_dropped() {
        let limits = TenantLimits::new(TenantOverrides::new(Limits::default()));
        limits.set_max_tenants(2);
        let rated = Limits {
            ingestion_rate_mb: 0.000_001,
            ingestion_burst_size_mb: 1.0,
            ..Limits::default()
        };
        for tenant in ["a", "b", "c"] {
            limits.admit(tenant, &rated, 500_000).unwrap();
        }
        assert_eq!(limits.buckets.lock().len(), 2);
        assert!(!limits.buckets.lock().contains_key("a"));
        // At one byte per second nothing refills soon; in a year everything has.
        let now = Instant::now();
        assert_eq!(limits.forget_full_buckets(now), 2);
        let later = now + Duration::from_secs(365 * 24 * 3600);
        assert_eq!(limits.forget_full_buckets(later), 0);
    }
}
