//! Collapsed stacks: `folded` (`a;b;c 42` per line) and `lines` (one stack per line, each
//! line counting one), as Pyroscope parses them.

use std::collections::HashMap;

use kiln_proto::google::v1::{Function, Line, Location, Profile, Sample, ValueType};

use super::legacy::LegacyType;
use crate::{ModelError, Result, StringTable};

/// Parses folded stacks: the count follows the last space of each line; lines without a
/// space (empty lines among them) are skipped; frames are separated by `;`, root first.
pub fn parse_folded(body: &[u8], profile_type: &LegacyType, time_nanos: i64) -> Result<Profile> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ModelError::InvalidPprof(format!("folded input is not UTF-8: {e}")))?;
    let mut builder = StackBuilder::new(profile_type);
    for (number, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let count: i64 = count.parse().map_err(|_| {
            ModelError::InvalidPprof(format!(
                "folded line {}: {count:?} is not an integer count (expected \"frame;frame;frame <count>\")",
                number + 1
            ))
        })?;
        if count < 0 {
            return Err(ModelError::InvalidPprof(format!(
                "folded line {}: negative count {count}",
                number + 1
            )));
        }
        builder.add(stack, count)?;
    }
    Ok(builder.finish(time_nanos))
}

/// Parses `lines`: every non-empty line is one stack counting one.
pub fn parse_lines(body: &[u8], profile_type: &LegacyType, time_nanos: i64) -> Result<Profile> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ModelError::InvalidPprof(format!("lines input is not UTF-8: {e}")))?;
    let mut builder = StackBuilder::new(profile_type);
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.is_empty() {
            builder.add(line, 1)?;
        }
    }
    Ok(builder.finish(time_nanos))
}

/// Accumulates stacks into a one-type pprof.
struct StackBuilder<'a> {
    profile_type: &'a LegacyType,
    strings: StringTable,
    /// Frame name -> location (and function) id.
    frames: HashMap<String, u64>,
    stacks: HashMap<Vec<u64>, i64>,
}

impl<'a> StackBuilder<'a> {
    fn new(profile_type: &'a LegacyType) -> Self {
        Self {
            profile_type,
            strings: StringTable::new(),
            frames: HashMap::new(),
            stacks: HashMap::new(),
        }
    }

    fn add(&mut self, stack: &str, count: i64) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let stack = stack.strip_suffix(';').unwrap_or(stack);
        let mut ids: Vec<u64> = Vec::new();
        if !stack.is_empty() {
            for frame in stack.split(';') {
                let next = self.frames.len() as u64 + 1;
                let id = *self.frames.entry(frame.to_string()).or_insert(next);
                ids.push(id);
            }
        }
        ids.reverse();
        let value = count.checked_mul(self.profile_type.scale).ok_or_else(|| {
            ModelError::InvalidPprof(format!("count {count} overflows once scaled"))
        })?;
        let entry = self.stacks.entry(ids).or_insert(0);
        *entry = entry
            .checked_add(value)
            .ok_or_else(|| ModelError::InvalidPprof("stack value overflows".to_string()))?;
        Ok(())
    }

    fn finish(mut self, time_nanos: i64) -> Profile {
        let (sample_type, sample_unit) = self.profile_type.sample_type;
        let (period_type, period_unit) = self.profile_type.period_type;
        let sample_type = ValueType {
            r#type: self.strings.intern(sample_type),
            unit: self.strings.intern(sample_unit),
        };
        let period_type = ValueType {
            r#type: self.strings.intern(period_type),
            unit: self.strings.intern(period_unit),
        };
        let mut frames: Vec<(String, u64)> = std::mem::take(&mut self.frames).into_iter().collect();
        frames.sort_by_key(|(_, id)| *id);
        let mut function = Vec::with_capacity(frames.len());
        let mut location = Vec::with_capacity(frames.len());
        for (name, id) in frames {
            let name = self.strings.intern(&name);
            function.push(Function {
                id,
                name,
                system_name: name,
                filename: 0,
                start_line: 0,
            });
            location.push(Location {
                id,
                mapping_id: 0,
                address: 0,
                line: vec![Line {
                    function_id: id,
                    line: 0,
                    column: 0,
                }],
                is_folded: false,
            });
        }
        let mut stacks: Vec<(Vec<u64>, i64)> = self.stacks.into_iter().collect();
        stacks.sort();
        Profile {
            sample_type: vec![sample_type],
            sample: stacks
                .into_iter()
                .map(|(location_id, value)| Sample {
                    location_id,
                    value: vec![value],
                    label: vec![],
                })
                .collect(),
            location,
            function,
            string_table: self.strings.into_strings(),
            time_nanos,
            period_type: Some(period_type),
            period: self.profile_type.period,
            ..Profile::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::legacy::legacy_type;

    fn frames_and_values(profile: &Profile) -> Vec<(String, i64)> {
        let name =
            |id: u64| profile.string_table[profile.function[id as usize - 1].name as usize].clone();
        let mut out: Vec<(String, i64)> = profile
            .sample
            .iter()
            .map(|s| {
                let mut frames: Vec<String> = s.location_id.iter().map(|id| name(*id)).collect();
                frames.reverse();
                (frames.join(";"), s.value[0])
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn parses_folded_stacks() {
        let t = legacy_type("app.alloc_objects", None).unwrap();
        let body = b"main;work;leaf 3\nmain;work 2\r\n\nmain;work;leaf 4\nmain;with space;x 1\nno-count-line\n";
        let profile = parse_folded(body, &t, 7).unwrap();
        assert_eq!(
            frames_and_values(&profile),
            [
                ("main;with space;x".to_string(), 1),
                ("main;work".to_string(), 2),
                ("main;work;leaf".to_string(), 7),
            ]
        );
        assert_eq!(profile.time_nanos, 7);
    }

    #[test]
    fn scales_cpu_counts_to_nanoseconds() {
        let t = legacy_type("app.cpu", Some(100)).unwrap();
        let profile = parse_folded(b"a;b 3\n", &t, 0).unwrap();
        assert_eq!(profile.sample[0].value, [30_000_000]);
        assert_eq!(profile.period, 10_000_000);
    }

    #[test]
    fn rejects_bad_counts() {
        let t = legacy_type("app.cpu", None).unwrap();
        for body in [&b"a;b 1.5\n"[..], b"a;b 42 \n", b"a;b -1\n"] {
            assert!(parse_folded(body, &t, 0).is_err(), "{body:?}");
        }
        assert!(parse_folded(&[0xff, 0xfe], &t, 0).is_err());
    }

    #[test]
    fn parses_lines() {
        let t = legacy_type("app.cpu", Some(0)).unwrap();
        let profile = parse_lines(b"a;b\na;b\n\na;c\n", &t, 0).unwrap();
        assert_eq!(
            frames_and_values(&profile),
            [("a;b".to_string(), 2), ("a;c".to_string(), 1)]
        );
    }
}
