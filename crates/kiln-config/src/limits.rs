//! Per-tenant limits: defaults from flags, overrides per tenant from the runtime config file.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::units::{parse_bytes, parse_duration};

/// The limits of one tenant. 0 turns a numeric limit off.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Ingestion rate per tenant in MB/s of profile bytes as received (compressed), for the whole
    /// cluster (split evenly over the live distributors); 0 means no limit.
    #[arg(
        long = "limits.ingestion-rate-mb",
        env = "KILN_LIMITS_INGESTION_RATE_MB",
        default_value = "0"
    )]
    pub ingestion_rate_mb: f64,

    /// Burst of the ingestion rate per distributor, in MB.
    #[arg(
        long = "limits.ingestion-burst-size-mb",
        env = "KILN_LIMITS_INGESTION_BURST_SIZE_MB",
        default_value = "32"
    )]
    pub ingestion_burst_size_mb: f64,

    /// Largest request body, e.g. 64MiB (413 above). On gRPC the flag's value also caps every
    /// tenant, as the transport enforces it before the tenant is known.
    #[arg(long = "limits.max-body-bytes", env = "KILN_LIMITS_MAX_BODY_BYTES",
          default_value = "64MiB", value_parser = parse_bytes)]
    #[serde(with = "byte_size_serde")]
    pub max_body_bytes: usize,

    /// Largest decompressed payload (a request body or one profile in it), e.g. 256MiB (413
    /// above); bounds gzip bombs. On gRPC the flag's value also caps every tenant.
    #[arg(long = "limits.max-decompressed-bytes", env = "KILN_LIMITS_MAX_DECOMPRESSED_BYTES",
          default_value = "256MiB", value_parser = parse_bytes)]
    #[serde(with = "byte_size_serde")]
    pub max_decompressed_bytes: usize,

    /// Memory the decoded profiles of one request may take, e.g. 256MiB, estimated from counts
    /// of the wire format before anything is decoded (413 above); 0 means no limit.
    #[arg(long = "limits.max-decoded-bytes", env = "KILN_LIMITS_MAX_DECODED_BYTES",
          default_value = "256MiB", value_parser = parse_bytes)]
    #[serde(with = "byte_size_serde")]
    pub max_decoded_bytes: usize,

    /// Active series per tenant (series pushed within the last hour), counted by each
    /// distributor; a request adding series beyond it is refused.
    #[arg(
        long = "limits.max-series-per-tenant",
        env = "KILN_LIMITS_MAX_SERIES_PER_TENANT",
        default_value = "5000"
    )]
    pub max_series_per_tenant: usize,

    /// Samples per profile (for its largest sample type).
    #[arg(
        long = "limits.max-samples-per-profile",
        env = "KILN_LIMITS_MAX_SAMPLES_PER_PROFILE",
        default_value = "16000"
    )]
    pub max_samples_per_profile: usize,

    /// Label names per series, `__name__`, `__profile_type__` and `service_name` included.
    #[arg(
        long = "limits.max-label-names-per-series",
        env = "KILN_LIMITS_MAX_LABEL_NAMES_PER_SERIES",
        default_value = "30"
    )]
    pub max_label_names_per_series: usize,

    /// Length of a label name, in bytes.
    #[arg(
        long = "limits.max-label-name-length",
        env = "KILN_LIMITS_MAX_LABEL_NAME_LENGTH",
        default_value = "1024"
    )]
    pub max_label_name_length: usize,

    /// Length of a label value, in bytes.
    #[arg(
        long = "limits.max-label-value-length",
        env = "KILN_LIMITS_MAX_LABEL_VALUE_LENGTH",
        default_value = "2048"
    )]
    pub max_label_value_length: usize,

    /// Frames per stack; deeper stacks are truncated, keeping the root side.
    #[arg(
        long = "limits.max-stack-depth",
        env = "KILN_LIMITS_MAX_STACK_DEPTH",
        default_value = "1024"
    )]
    pub max_stack_depth: usize,

    /// Length of a symbol (function, file, mapping name), in bytes; longer ones are truncated.
    #[arg(
        long = "limits.max-symbol-length",
        env = "KILN_LIMITS_MAX_SYMBOL_LENGTH",
        default_value = "65535"
    )]
    pub max_symbol_length: usize,

    /// Profiles stamped further in the future than this are refused; 0s turns it off.
    #[arg(long = "limits.reject-newer-than", env = "KILN_LIMITS_REJECT_NEWER_THAN",
          default_value = "10m", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub reject_newer_than: Duration,

    /// Profiles older than this are refused; 0s (the default) turns it off.
    #[arg(long = "limits.reject-older-than", env = "KILN_LIMITS_REJECT_OLDER_THAN",
          default_value = "0s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub reject_older_than: Duration,

    /// Blocks one query may read (after pruning by tenant, time, profile type and service);
    /// a query that needs more is refused before anything is read.
    #[arg(
        long = "limits.max-query-blocks",
        env = "KILN_LIMITS_MAX_QUERY_BLOCKS",
        default_value = "10000"
    )]
    pub max_query_blocks: usize,

    /// Longest time range one query may cover, e.g. 30d; 0s (the default) turns it off. A
    /// longer query is refused with a message naming the limit (after `max_query_lookback`
    /// shortened it).
    #[arg(long = "limits.max-query-length", env = "KILN_LIMITS_MAX_QUERY_LENGTH",
          default_value = "0s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub max_query_length: Duration,

    /// How far back from now queries may read, e.g. 7d; 0s (the default) turns it off. Older
    /// parts of a range are left out, as Pyroscope does, not refused.
    #[arg(long = "limits.max-query-lookback", env = "KILN_LIMITS_MAX_QUERY_LOOKBACK",
          default_value = "0s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub max_query_lookback: Duration,

    /// How long one query of the tenant may run, e.g. 30s; 0s (the default) means the
    /// querier's own `--querier.timeout`.
    #[arg(long = "limits.query-timeout", env = "KILN_LIMITS_QUERY_TIMEOUT",
          default_value = "0s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,

    /// Memory one query's merge may hold, e.g. 512MiB: the merged result being built and the
    /// set of profile ids it deduplicates by (estimated). A query that needs more is stopped.
    #[arg(long = "limits.max-query-merge-bytes", env = "KILN_LIMITS_MAX_QUERY_MERGE_BYTES",
          default_value = "512MiB", value_parser = parse_bytes)]
    #[serde(with = "byte_size_serde")]
    pub max_query_merge_bytes: usize,

    /// How long profiles are kept, e.g. 7d or 30d; 0 keeps them for ever. Older data leaves
    /// every query at once and object storage within the compactor's retention interval plus
    /// its deletion delay; pushes of older profiles are refused.
    #[arg(long = "retention-period", env = "KILN_RETENTION_PERIOD",
          default_value = "30d", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub retention_period: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 32.0,
            max_body_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            max_decoded_bytes: 256 << 20,
            max_series_per_tenant: 5_000,
            max_samples_per_profile: 16_000,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_stack_depth: 1024,
            max_symbol_length: 65_535,
            reject_newer_than: Duration::from_secs(600),
            reject_older_than: Duration::ZERO,
            max_query_blocks: 10_000,
            max_query_length: Duration::ZERO,
            max_query_lookback: Duration::ZERO,
            query_timeout: Duration::ZERO,
            max_query_merge_bytes: 512 << 20,
            retention_period: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Durations in the runtime config file are written as in flags: `10m`, `90s`.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Byte sizes in the runtime config file: a number of bytes or a size as in flags (`8MiB`).
mod byte_size_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }

    pub(super) fn serialize<S: Serializer>(value: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*value as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        match Size::deserialize(d)? {
            Size::Bytes(bytes) => Ok(bytes),
            Size::Text(text) => super::parse_bytes(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// The runtime config file (`--runtime-config`): per-tenant overrides of the limits, re-read
/// while the server runs. A tenant's entry names only the limits it changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Overrides by tenant id: YAML mappings of limit names (as above, snake_case) to values.
    #[serde(default)]
    pub overrides: BTreeMap<String, serde_yaml_ng::Mapping>,
}

impl RuntimeConfig {
    /// Parses the file's text; every override must name known limits with valid values.
    pub fn parse(text: &str, defaults: &Limits) -> Result<Self, String> {
        let config: RuntimeConfig = if text.trim().is_empty() {
            RuntimeConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        config.resolve(defaults)?;
        Ok(config)
    }

    /// The limits of every tenant with overrides, merged with `defaults` once.
    pub fn resolve(&self, defaults: &Limits) -> Result<BTreeMap<String, Limits>, String> {
        self.overrides
            .keys()
            .map(|tenant| Ok((tenant.clone(), self.limits_for(tenant, defaults)?)))
            .collect()
    }

    /// The limits of `tenant`: the defaults with its overrides applied.
    pub fn limits_for(&self, tenant: &str, defaults: &Limits) -> Result<Limits, String> {
        let Some(overrides) = self.overrides.get(tenant) else {
            return Ok(defaults.clone());
        };
        let mut merged = match serde_yaml_ng::to_value(defaults).map_err(|e| e.to_string())? {
            serde_yaml_ng::Value::Mapping(map) => map,
            _ => unreachable!("limits serialize to a mapping"),
        };
        for (key, value) in overrides {
            merged.insert(key.clone(), value.clone());
        }
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(merged))
            .map_err(|e| format!("overrides of tenant {tenant:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_change_only_what_they_name() {
        let defaults = Limits::default();
        let config = RuntimeConfig::parse(
            "overrides:\n  team-a:\n    ingestion_rate_mb: 2.5\n    reject_newer_than: 1m\n",
            &defaults,
        )
        .unwrap();
        let a = config.limits_for("team-a", &defaults).unwrap();
        assert_eq!(a.ingestion_rate_mb, 2.5);
        assert_eq!(a.reject_newer_than, Duration::from_secs(60));
        assert_eq!(a.max_samples_per_profile, defaults.max_samples_per_profile);
        let sized = RuntimeConfig::parse(
            "overrides:\n  t:\n    max_body_bytes: 8MiB\n    max_decompressed_bytes: 1000\n",
            &defaults,
        )
        .unwrap()
        .limits_for("t", &defaults)
        .unwrap();
        assert_eq!(
            (sized.max_body_bytes, sized.max_decompressed_bytes),
            (8 << 20, 1000)
        );
        assert_eq!(config.limits_for("team-b", &defaults).unwrap(), defaults);
        assert_eq!(
            RuntimeConfig::parse("", &defaults).unwrap(),
            RuntimeConfig::default()
        );
    }

    #[test]
    fn unknown_limits_and_bad_values_are_refused() {
        let defaults = Limits::default();
        let unknown = RuntimeConfig::parse("overrides:\n  t:\n    no_such_limit: 1\n", &defaults);
        assert!(unknown.unwrap_err().contains("no_such_limit"));
        let bad = RuntimeConfig::parse("overrides:\n  t:\n    max_stack_depth: deep\n", &defaults);
        assert!(bad.unwrap_err().contains("tenant \"t\""));
        assert!(RuntimeConfig::parse("overrides: [1]", &defaults).is_err());
    }
}
