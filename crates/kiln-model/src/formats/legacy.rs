//! Pyroscope's legacy application names (`app.cpu`, `app.alloc_objects`, ...) for folded and
//! lines input: the suffix after the last `.` names the profile type. docs/profile-types.md
//! has the table.

use crate::{ModelError, Result};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// The profile type of a legacy (non-pprof) upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyType {
    /// The service name: the application name without its suffix.
    pub service_name: String,
    /// `__name__`.
    pub name: &'static str,
    /// The sample type and unit.
    pub sample_type: (&'static str, &'static str),
    /// The period type and unit, empty when the type has none.
    pub period_type: (&'static str, &'static str),
    /// The sampling period in nanoseconds (CPU and wall types), else 0.
    pub period: i64,
    /// Every value is multiplied by this (a count of samples becomes nanoseconds).
    pub scale: i64,
}

/// Maps `app.suffix` (the part of `name` before `{`) and `sampleRate` to a profile type.
/// A name without a dot is a CPU profile, as in Pyroscope.
pub fn legacy_type(app_name: &str, sample_rate: Option<i64>) -> Result<LegacyType> {
    let (service, suffix) = match app_name.rsplit_once('.') {
        Some((service, suffix)) => (service, suffix),
        None => (app_name, "cpu"),
    };
    let unknown = || ModelError::InvalidAppName {
        name: app_name.to_string(),
        reason: format!(
            "unknown profile type {suffix:?}: the suffix after the last '.' must name one (cpu, wall, \
             alloc_objects, alloc_space, inuse_objects, inuse_space, goroutines, mutex_count, \
             mutex_duration, block_count, block_duration, ...)"
        ),
    };
    let (name, sample_type): (&'static str, (&'static str, &'static str)) = match suffix {
        "cpu" | "itimer" => ("process_cpu", ("samples", "count")),
        "wall" | "seconds" | "nanoseconds" | "microseconds" | "milliseconds" => {
            ("wall", ("samples", "count"))
        }
        "inuse_objects" => ("memory", ("inuse_objects", "count")),
        "alloc_objects" => ("memory", ("alloc_objects", "count")),
        "inuse_space" => ("memory", ("inuse_space", "bytes")),
        "alloc_space" => ("memory", ("alloc_space", "bytes")),
        "alloc_in_new_tlab_objects" => ("memory", ("alloc_in_new_tlab_objects", "count")),
        "alloc_outside_tlab_objects" => ("memory", ("alloc_outside_tlab_objects", "count")),
        "alloc_in_new_tlab_bytes" => ("memory", ("alloc_in_new_tlab_bytes", "bytes")),
        "alloc_outside_tlab_bytes" => ("memory", ("alloc_outside_tlab_bytes", "bytes")),
        "live" => ("memory", ("live", "count")),
        "bytes" => ("memory", ("samples", "bytes")),
        "goroutines" => ("goroutine", ("goroutines", "count")),
        "mutex_count" => ("mutex", ("contentions", "count")),
        "mutex_duration" => ("mutex", ("delay", "nanoseconds")),
        "block_count" | "lock_count" => ("block", ("contentions", "count")),
        "block_duration" | "lock_duration" => ("block", ("delay", "nanoseconds")),
        "exceptions" => ("exceptions", ("samples", "count")),
        _ => return Err(unknown()),
    };
    if service.is_empty() {
        return Err(unknown());
    }
    // A missing or unparsable sampleRate means 100 Hz; 0 keeps plain sample counts.
    let rate = sample_rate.unwrap_or(100);
    let timed = matches!(name, "process_cpu" | "wall") && rate > 0;
    let (sample_type, period_type, period, scale) = if timed {
        let period = NANOS_PER_SECOND / rate;
        let stored = if name == "wall" { "wall" } else { "cpu" };
        (
            (stored, "nanoseconds"),
            ("cpu", "nanoseconds"),
            period,
            period,
        )
    } else {
        (sample_type, ("", ""), 0, 1)
    };
    Ok(LegacyType {
        service_name: service.to_string(),
        name,
        sample_type,
        period_type,
        period,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: &LegacyType) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            t.name, t.sample_type.0, t.sample_type.1, t.period_type.0, t.period_type.1
        )
    }

    #[test]
    fn maps_legacy_names_as_pyroscope_does() {
        let cases = [
            (
                "app.cpu",
                Some(100),
                "app",
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                10_000_000,
            ),
            (
                "app",
                None,
                "app",
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                10_000_000,
            ),
            (
                "my.app.itimer",
                Some(1000),
                "my.app",
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                1_000_000,
            ),
            ("app.cpu", Some(0), "app", "process_cpu:samples:count::", 1),
            (
                "app.wall",
                Some(100),
                "app",
                "wall:wall:nanoseconds:cpu:nanoseconds",
                10_000_000,
            ),
            (
                "app.alloc_objects",
                Some(100),
                "app",
                "memory:alloc_objects:count::",
                1,
            ),
            (
                "app.inuse_space",
                None,
                "app",
                "memory:inuse_space:bytes::",
                1,
            ),
            (
                "app.goroutines",
                None,
                "app",
                "goroutine:goroutines:count::",
                1,
            ),
            (
                "app.mutex_duration",
                None,
                "app",
                "mutex:delay:nanoseconds::",
                1,
            ),
            (
                "app.block_count",
                None,
                "app",
                "block:contentions:count::",
                1,
            ),
        ];
        for (name, rate, service, expected, scale) in cases {
            let t = legacy_type(name, rate).unwrap();
            assert_eq!(
                (t.service_name.as_str(), id(&t), t.scale),
                (service, expected.to_string(), scale),
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_suffixes_are_errors() {
        let err = legacy_type("my.service", None).unwrap_err().to_string();
        assert!(err.contains("unknown profile type \"service\""), "{err}");
        assert!(legacy_type(".cpu", None).is_err());
    }
}
