//! Generated Go-style heap profiles, for the memory-leak report: one function that leaks and
//! others that only fluctuate.

use kiln_proto::google::v1::{Function, Line, Location, Profile, Sample, ValueType};

pub(crate) const MIB: i64 = 1 << 20;

/// 30 heap profiles a minute apart ending at `now_minutes` (unix minutes): `leaky` holds
/// 10 MiB in the first and 1 MiB more in each next one (39 MiB in the last); `steady` moves
/// up and down around 20 MiB and `sawtooth` climbs from 8 to 12 MiB and falls back every five.
pub(crate) fn leak_series(now_minutes: i64) -> Vec<Profile> {
    let mut state: u64 = 7;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % (2 * MIB as u64)) as i64 - MIB
    };
    (0..30i64)
        .map(|i| {
            let time = (now_minutes - 30 + i) * 60 * 1_000_000_000;
            heap_profile(
                time,
                &[
                    ("leaky", 10 * MIB + i * MIB),
                    ("steady", 20 * MIB + noise()),
                    ("sawtooth", 8 * MIB + (i % 5) * MIB),
                ],
            )
        })
        .collect()
}

/// A Go-style heap profile taken at `time_nanos` with `inuse` bytes in use per leaf function,
/// each called from `main`.
fn heap_profile(time_nanos: i64, inuse: &[(&str, i64)]) -> Profile {
    let mut strings: Vec<String> = [
        "",
        "alloc_objects",
        "count",
        "alloc_space",
        "bytes",
        "inuse_objects",
        "inuse_space",
        "space",
        "main",
    ]
    .map(String::from)
    .to_vec();
    let value_type = |t: i64, u: i64| ValueType { r#type: t, unit: u };
    let mut function = vec![Function {
        id: 1,
        name: 8,
        ..Function::default()
    }];
    let mut location = vec![Location {
        id: 1,
        line: vec![Line {
            function_id: 1,
            ..Line::default()
        }],
        ..Location::default()
    }];
    let mut sample = Vec::new();
    for (i, (name, bytes)) in inuse.iter().enumerate() {
        let id = i as u64 + 2;
        strings.push(name.to_string());
        function.push(Function {
            id,
            name: strings.len() as i64 - 1,
            ..Function::default()
        });
        location.push(Location {
            id,
            line: vec![Line {
                function_id: id,
                ..Line::default()
            }],
            ..Location::default()
        });
        // One object per 1 KiB, as sizes go.
        sample.push(Sample {
            location_id: vec![id, 1],
            value: vec![bytes / 1024, *bytes, bytes / 1024, *bytes],
            label: vec![],
        });
    }
    Profile {
        sample_type: vec![
            value_type(1, 2),
            value_type(3, 4),
            value_type(5, 2),
            value_type(6, 4),
        ],
        sample,
        location,
        function,
        string_table: strings,
        time_nanos,
        period_type: Some(value_type(7, 4)),
        period: 524_288,
        ..Profile::default()
    }
}
