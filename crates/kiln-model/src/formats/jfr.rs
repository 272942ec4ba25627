//! Java Flight Recorder recordings, as the Pyroscope Java agent sends them, into pprofs: one
//! per profile family (CPU, wall, each allocation kind, monitor contention, parking), named as
//! Pyroscope names them. docs/profile-types.md has the table.

use std::collections::HashMap;
use std::io::Cursor;

use jfrs::reader::JfrReader;
use jfrs::reader::event::Accessor;
use kiln_proto::google::v1::{Function, Label, Line, Location, Profile, Sample, ValueType};
use kiln_proto::io::pyroscope::labels::pb::LabelsSnapshot;

use crate::{ModelError, Result, StringTable};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A profile family of a recording: its `__name__`, sample types and period type.
struct Family {
    name: &'static str,
    types: &'static [(&'static str, &'static str)],
    period_type: (&'static str, &'static str),
}

const CPU: Family = Family {
    name: "process_cpu",
    types: &[("cpu", "nanoseconds")],
    period_type: ("cpu", "nanoseconds"),
};
const WALL: Family = Family {
    name: "wall",
    types: &[("wall", "nanoseconds")],
    period_type: ("wall", "nanoseconds"),
};
const TLAB: Family = Family {
    name: "memory",
    types: &[
        ("alloc_in_new_tlab_objects", "count"),
        ("alloc_in_new_tlab_bytes", "bytes"),
    ],
    period_type: ("space", "bytes"),
};
const OUTSIDE_TLAB: Family = Family {
    name: "memory",
    types: &[
        ("alloc_outside_tlab_objects", "count"),
        ("alloc_outside_tlab_bytes", "bytes"),
    ],
    period_type: ("space", "bytes"),
};
const ALLOC_SAMPLE: Family = Family {
    name: "memory",
    types: &[
        ("alloc_sample_objects", "count"),
        ("alloc_sample_bytes", "bytes"),
    ],
    period_type: ("space", "bytes"),
};
const MUTEX: Family = Family {
    name: "mutex",
    types: &[("contentions", "count"), ("delay", "nanoseconds")],
    period_type: ("mutex", "count"),
};
const BLOCK: Family = Family {
    name: "block",
    types: &[("contentions", "count"), ("delay", "nanoseconds")],
    period_type: ("block", "count"),
};

/// A profile made from a recording, with the `__name__` it must be stored under.
#[derive(Debug)]
pub struct JfrProfile {
    /// `__name__`.
    pub name: &'static str,
    /// The pprof, one sample per distinct (stack, labels).
    pub profile: Profile,
}

/// Converts a JFR recording. `sample_rate` (Hz, default 100) gives each CPU and wall sample its
/// nanoseconds; `labels` is the agent's LabelsSnapshot for events carrying a `contextId`.
pub fn parse_jfr(
    recording: &[u8],
    labels: Option<&LabelsSnapshot>,
    sample_rate: Option<i64>,
    time_nanos: i64,
    duration_nanos: i64,
) -> Result<Vec<JfrProfile>> {
    // The vendored jfrs bounds what a recording can make it allocate or loop on
    // (vendor/jfrs/PATCHES.md); should a hostile recording still make it panic, that recording
    // is invalid input, not a reason to lose the request's thread.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        parse_jfr_unguarded(recording, labels, sample_rate, time_nanos, duration_nanos)
    }))
    .unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ModelError::InvalidPprof(format!(
            "invalid JFR recording: the reader failed on it ({reason})"
        )))
    })
}

fn parse_jfr_unguarded(
    recording: &[u8],
    labels: Option<&LabelsSnapshot>,
    sample_rate: Option<i64>,
    time_nanos: i64,
    duration_nanos: i64,
) -> Result<Vec<JfrProfile>> {
    let rate = sample_rate.filter(|r| *r > 0).unwrap_or(100);
    let period = NANOS_PER_SECOND / rate;
    let invalid =
        |reason: String| ModelError::InvalidPprof(format!("invalid JFR recording: {reason}"));
    let mut builders: Vec<(&'static Family, Builder)> = Vec::new();
    let mut reader = JfrReader::new(Cursor::new(recording));
    let mut chunks = 0;
    for chunk in reader.chunks() {
        let (mut chunk_reader, chunk) = chunk.map_err(|e| invalid(format!("{e:?}")))?;
        chunks += 1;
        let ticks_per_second = chunk.header.ticks_per_second.max(1);
        let ticks_to_nanos = |ticks: i64| -> i64 {
            (ticks as i128 * NANOS_PER_SECOND as i128 / ticks_per_second as i128) as i64
        };
        // Frames resolved once per stack trace constant of the chunk.
        let mut stacks: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
        for event in chunk_reader.events(&chunk) {
            let event = event.map_err(|e| invalid(format!("{e:?}")))?;
            let value = event.value();
            let (family, values): (&'static Family, Vec<i64>) = match event.class.name() {
                "jdk.ExecutionSample" => {
                    let state = value
                        .get_field("state")
                        .and_then(|s| s.get_field("name"))
                        .and_then(|s| <&str>::try_from(s.value).ok());
                    if state == Some("STATE_SLEEPING") {
                        continue;
                    }
                    (&CPU, vec![period])
                }
                "profiler.WallClockSample" => {
                    let samples = int_field(&value, "samples").unwrap_or(1);
                    (&WALL, vec![samples.saturating_mul(period)])
                }
                "jdk.ObjectAllocationInNewTLAB" => {
                    (&TLAB, vec![1, int_field(&value, "tlabSize").unwrap_or(0)])
                }
                "jdk.ObjectAllocationOutsideTLAB" => (
                    &OUTSIDE_TLAB,
                    vec![1, int_field(&value, "allocationSize").unwrap_or(0)],
                ),
                "jdk.ObjectAllocationSample" => (
                    &ALLOC_SAMPLE,
                    vec![1, int_field(&value, "weight").unwrap_or(0)],
                ),
                "jdk.JavaMonitorEnter" => (
                    &MUTEX,
                    vec![
                        1,
                        ticks_to_nanos(int_field(&value, "duration").unwrap_or(0)),
                    ],
                ),
                "jdk.ThreadPark" => (
                    &BLOCK,
                    vec![
                        1,
                        ticks_to_nanos(int_field(&value, "duration").unwrap_or(0)),
                    ],
                ),
                _ => continue,
            };
            let stack_id = match value.get_field_raw("stackTrace").map(|v| v.value) {
                Some(jfrs::reader::value_descriptor::ValueDescriptor::ConstantPool {
                    constant_index,
                    ..
                }) => *constant_index,
                _ => -1,
            };
            let frames = match stacks.get(&stack_id) {
                Some(frames) => frames.clone(),
                None => {
                    let frames = value
                        .get_field("stackTrace")
                        .map(|s| frames_of(&s))
                        .unwrap_or_default();
                    stacks.insert(stack_id, frames.clone());
                    frames
                }
            };
            let context = int_field(&value, "contextId").filter(|c| *c != 0);
            let sample_labels = context
                .and_then(|c| labels.map(|l| context_labels(l, c)))
                .unwrap_or_default();
            let builder = match builders.iter_mut().find(|(f, _)| std::ptr::eq(*f, family)) {
                Some((_, builder)) => builder,
                None => {
                    builders.push((family, Builder::default()));
                    &mut builders.last_mut().expect("just pushed").1
                }
            };
            builder.add(&frames, sample_labels, &values);
        }
    }
    if chunks == 0 {
        return Err(invalid("no chunks (not a JFR file)".to_string()));
    }
    Ok(builders
        .into_iter()
        .map(|(family, builder)| JfrProfile {
            name: family.name,
            profile: builder.finish(family, period, time_nanos, duration_nanos),
        })
        .collect())
}

fn int_field(value: &Accessor<'_>, name: &str) -> Option<i64> {
    let field = value.get_field(name)?;
    i64::try_from(field.value)
        .ok()
        .or_else(|| i32::try_from(field.value).ok().map(i64::from))
}

/// A string field that may be a Symbol (`{string}`) or a plain string.
fn string_field(value: &Accessor<'_>, name: &str) -> Option<String> {
    let field = value.get_field(name)?;
    if let Ok(s) = <&str>::try_from(field.value) {
        return Some(s.to_string());
    }
    let inner = field.get_field("string")?;
    <&str>::try_from(inner.value).ok().map(String::from)
}

/// Frames of a stack trace as (`class.method`, line), top (leaf) first.
fn frames_of(stack: &Accessor<'_>) -> Vec<(String, i64)> {
    let Some(frames) = stack.get_field("frames").and_then(|f| f.as_iter()) else {
        return Vec::new();
    };
    frames
        .map(|frame| {
            let method = frame.get_field("method");
            let class = method
                .as_ref()
                .and_then(|m| m.get_field("type"))
                .and_then(|t| string_field(&t, "name"))
                .unwrap_or_default();
            let name = method
                .as_ref()
                .and_then(|m| string_field(m, "name"))
                .unwrap_or_default();
            let line = int_field(&frame, "lineNumber").unwrap_or(0);
            let full = if class.is_empty() {
                name
            } else {
                format!("{class}.{name}")
            };
            (full, line)
        })
        .collect()
}

fn context_labels(snapshot: &LabelsSnapshot, context: i64) -> Vec<(String, String)> {
    let Some(found) = snapshot.contexts.get(&context) else {
        return Vec::new();
    };
    let mut labels: Vec<(String, String)> = found
        .labels
        .iter()
        .filter_map(|(k, v)| {
            Some((
                snapshot.strings.get(k)?.clone(),
                snapshot.strings.get(v)?.clone(),
            ))
        })
        .map(|(k, v)| match k.as_str() {
            // The agent's names for trace correlation, as Pyroscope stores them.
            "spanId" => ("span_id".to_string(), v),
            "spanName" => ("span_name".to_string(), v),
            _ => (k, v),
        })
        .collect();
    labels.sort();
    labels
}

/// A sample's identity: location ids (leaf first) and label (key, value) string ids.
type SampleKey = (Vec<u64>, Vec<(i64, i64)>);

/// Accumulates the events of one family.
#[derive(Default)]
struct Builder {
    strings: StringTable,
    locations: HashMap<(String, i64), u64>,
    samples: HashMap<SampleKey, Vec<i64>>,
}

impl Builder {
    fn add(&mut self, frames: &[(String, i64)], labels: Vec<(String, String)>, values: &[i64]) {
        let ids: Vec<u64> = frames
            .iter()
            .map(|frame| {
                let next = self.locations.len() as u64 + 1;
                *self.locations.entry(frame.clone()).or_insert(next)
            })
            .collect();
        let labels: Vec<(i64, i64)> = labels
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        let totals = self
            .samples
            .entry((ids, labels))
            .or_insert_with(|| vec![0; values.len()]);
        for (total, value) in totals.iter_mut().zip(values) {
            *total = total.saturating_add(*value);
        }
    }

    fn finish(
        mut self,
        family: &Family,
        period: i64,
        time_nanos: i64,
        duration_nanos: i64,
    ) -> Profile {
        let sample_type = family
            .types
            .iter()
            .map(|(t, u)| ValueType {
                r#type: self.strings.intern(t),
                unit: self.strings.intern(u),
            })
            .collect();
        let period_type = ValueType {
            r#type: self.strings.intern(family.period_type.0),
            unit: self.strings.intern(family.period_type.1),
        };
        let mut functions: HashMap<String, u64> = HashMap::new();
        let mut function = Vec::new();
        let mut locations: Vec<((String, i64), u64)> =
            std::mem::take(&mut self.locations).into_iter().collect();
        locations.sort_by_key(|(_, id)| *id);
        let mut location = Vec::with_capacity(locations.len());
        for ((name, line), id) in locations {
            let function_id = match functions.get(&name) {
                Some(&f) => f,
                None => {
                    let f = function.len() as u64 + 1;
                    let name_index = self.strings.intern(&name);
                    function.push(Function {
                        id: f,
                        name: name_index,
                        system_name: name_index,
                        filename: 0,
                        start_line: 0,
                    });
                    functions.insert(name, f);
                    f
                }
            };
            location.push(Location {
                id,
                mapping_id: 0,
                address: 0,
                line: vec![Line {
                    function_id,
                    line,
                    column: 0,
                }],
                is_folded: false,
            });
        }
        let mut samples: Vec<_> = self.samples.into_iter().collect();
        samples.sort();
        let sample = samples
            .into_iter()
            .map(|((location_id, labels), value)| Sample {
                location_id,
                value,
                label: labels
                    .into_iter()
                    .map(|(key, str)| Label {
                        key,
                        str,
                        num: 0,
                        num_unit: 0,
                    })
                    .collect(),
            })
            .collect();
        let period = if family.name == "process_cpu" || family.name == "wall" {
            period
        } else {
            0
        };
        Profile {
            sample_type,
            sample,
            location,
            function,
            string_table: self.strings.into_strings(),
            time_nanos,
            duration_nanos,
            period_type: Some(period_type),
            period,
            ..Profile::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(name: &str) -> Vec<u8> {
        std::fs::read(kiln_testkit::testdata::path(&format!("jfr/{name}"))).unwrap()
    }

    /// Hostile recordings made from a real one are refused with an error: an event of size 0
    /// (the JFR reader used to read it again forever; found by fuzzing) and a chunk smaller
    /// than its header.
    #[test]
    fn damaged_recordings_are_refused_not_looped_on() {
        let good = recording("java17-hotspot-profile.jfr");
        // The first ordinary event of the chunk body (after two checkpoints and the metadata)
        // gets size 0 and the type of a checkpoint (1), which the event iterator skips by size.
        let mut empty_event = good.clone();
        empty_event[105_147..105_149].copy_from_slice(&[0, 1]);
        // A chunk smaller than its header.
        let mut tiny_chunk = good.clone();
        tiny_chunk[8..16].copy_from_slice(&0i64.to_be_bytes());
        for (name, bytes) in [("empty event", empty_event), ("tiny chunk", tiny_chunk)] {
            let error = parse_jfr(&bytes, None, Some(100), 5, 8).unwrap_err();
            assert!(error.to_string().contains("JFR"), "{name}: {error}");
        }
    }

    /// Event counts as `jfr summary` prints them for the test recording.
    #[test]
    fn counts_every_event_of_a_hotspot_recording() {
        let profiles = parse_jfr(
            &recording("java17-cpu-alloc-locks.jfr"),
            None,
            Some(100),
            5,
            8,
        )
        .unwrap();
        let mut counts: Vec<(String, String, i64)> = profiles
            .iter()
            .flat_map(|p| {
                let s = |i: i64| p.profile.string_table[i as usize].clone();
                let first = s(p.profile.sample_type[0].r#type);
                let total: i64 = p.profile.sample.iter().map(|x| x.value[0]).sum();
                std::iter::once((p.name.to_string(), first, total))
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [
                ("block".to_string(), "contentions".to_string(), 8063),
                (
                    "memory".to_string(),
                    "alloc_in_new_tlab_objects".to_string(),
                    16524
                ),
                (
                    "memory".to_string(),
                    "alloc_outside_tlab_objects".to_string(),
                    13224
                ),
                (
                    "memory".to_string(),
                    "alloc_sample_objects".to_string(),
                    2384
                ),
                ("mutex".to_string(), "contentions".to_string(), 6437),
                (
                    "process_cpu".to_string(),
                    "cpu".to_string(),
                    656 * 10_000_000
                ),
            ]
        );
        let cpu = profiles.iter().find(|p| p.name == "process_cpu").unwrap();
        let names: Vec<&str> = cpu
            .profile
            .string_table
            .iter()
            .map(String::as_str)
            .collect();
        assert!(
            names.iter().any(|n| n.contains('.') && n.contains('/')),
            "frames look like java/lang/Thread.run"
        );
    }

    #[test]
    fn rejects_what_is_not_jfr() {
        assert!(parse_jfr(b"not a recording", None, None, 0, 0).is_err());
        assert!(parse_jfr(b"", None, None, 0, 0).is_err());
    }
}
