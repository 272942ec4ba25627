//! Conversion of whole requests: types, labels, links, symbols and rejections.

use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value,
};
use kiln_proto::opentelemetry::proto::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary,
    ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
};
use kiln_proto::opentelemetry::proto::resource::v1::Resource;

use super::*;

fn string_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: string_value(value),
        key_strindex: 0,
    }
}

/// Strings: 0 "", 1 samples, 2 count, 3 cpu, 4 nanoseconds, 5 main, 6 work, 7 leaf,
/// 8 thread.name, 9 worker-1, 10 /usr/lib/libc.so.6, 11 process.executable.build_id.gnu,
/// 12 off_cpu.
fn dictionary() -> ProfilesDictionary {
    let strings = [
        "",
        "samples",
        "count",
        "cpu",
        "nanoseconds",
        "main",
        "work",
        "leaf",
        "thread.name",
        "worker-1",
        "/usr/lib/libc.so.6",
        "process.executable.build_id.gnu",
        "off_cpu",
    ];
    let function = |name| Function {
        name_strindex: name,
        ..Default::default()
    };
    let location = |function_index: i32| Location {
        lines: vec![Line {
            function_index,
            line: 1,
            column: 0,
        }],
        ..Default::default()
    };
    ProfilesDictionary {
        string_table: strings.map(String::from).to_vec(),
        function_table: vec![Function::default(), function(5), function(6), function(7)],
        // 1 main, 2 work, 3 leaf inlined into work, 4 unsymbolized libc frame.
        location_table: vec![
            Location::default(),
            location(1),
            location(2),
            Location {
                lines: vec![
                    Line {
                        function_index: 3,
                        line: 9,
                        column: 0,
                    },
                    Line {
                        function_index: 2,
                        line: 4,
                        column: 0,
                    },
                ],
                ..Default::default()
            },
            Location {
                mapping_index: 1,
                address: 0x1234,
                ..Default::default()
            },
        ],
        mapping_table: vec![
            Mapping::default(),
            Mapping {
                filename_strindex: 10,
                attribute_indices: vec![2],
                memory_start: 0x1000,
                memory_limit: 0x9000,
                ..Default::default()
            },
        ],
        stack_table: vec![
            Stack::default(),
            Stack {
                location_indices: vec![3, 1],
            },
            Stack {
                location_indices: vec![2, 1],
            },
            Stack {
                location_indices: vec![4, 1],
            },
        ],
        attribute_table: vec![
            KeyValueAndUnit::default(),
            KeyValueAndUnit {
                key_strindex: 8,
                value: string_value("worker-1"),
                unit_strindex: 0,
            },
            KeyValueAndUnit {
                key_strindex: 11,
                value: string_value("abcdef"),
                unit_strindex: 0,
            },
        ],
        link_table: vec![
            Link::default(),
            Link {
                trace_id: vec![1; 16].into(),
                span_id: vec![2; 8].into(),
            },
        ],
    }
}

fn cpu_profile() -> Profile {
    Profile {
        sample_type: Some(ValueType {
            type_strindex: 1,
            unit_strindex: 2,
        }),
        period_type: Some(ValueType {
            type_strindex: 3,
            unit_strindex: 4,
        }),
        period: 50_000_000,
        time_unix_nano: 1_700_000_000_000_000_000,
        samples: vec![
            Sample {
                stack_index: 1,
                values: vec![3],
                ..Default::default()
            },
            Sample {
                stack_index: 2,
                values: vec![2],
                attribute_indices: vec![1],
                ..Default::default()
            },
            Sample {
                stack_index: 3,
                timestamps_unix_nano: vec![1, 2, 3, 4],
                link_index: 1,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn request(resources: Vec<(Vec<KeyValue>, Profile)>) -> ExportProfilesServiceRequest {
    ExportProfilesServiceRequest {
        resource_profiles: resources
            .into_iter()
            .map(|(attributes, profile)| ResourceProfiles {
                resource: Some(Resource {
                    attributes,
                    dropped_attributes_count: 0,
                }),
                scope_profiles: vec![ScopeProfiles {
                    scope: Some(InstrumentationScope {
                        name: "ebpf".to_string(),
                        ..Default::default()
                    }),
                    profiles: vec![profile],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
        dictionary: Some(dictionary()),
    }
}

#[test]
fn ebpf_cpu_samples_become_process_cpu_nanoseconds() {
    let converted = convert_request(
        request(vec![(
            vec![kv("service.name", "api"), kv("host.name", "h1")],
            cpu_profile(),
        )]),
        0,
    );
    assert!(converted.rejected.is_empty(), "{:?}", converted.rejected);
    let profile = &converted.profiles[0];
    assert_eq!(profile.service_name, "api");
    let total: i64 = profile
        .series
        .iter()
        .flat_map(|s| &s.samples)
        .map(|s| s.value)
        .sum();
    assert_eq!(total, (3 + 2 + 4) * 50_000_000);
    for series in &profile.series {
        assert_eq!(
            series.profile_type.id(),
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        );
        assert_eq!(series.labels.get("host.name"), Some("h1"));
        assert_eq!(series.labels.get("otel.scope.name"), Some("ebpf"));
    }
    // thread.name splits the series; the link stays on the sample.
    let threads: Vec<Option<&str>> = profile
        .series
        .iter()
        .map(|s| s.labels.get("thread.name"))
        .collect();
    assert_eq!(threads.len(), 2);
    assert!(threads.contains(&Some("worker-1")) && threads.contains(&None));
    let linked: Vec<_> = profile
        .series
        .iter()
        .flat_map(|s| &s.samples)
        .filter(|s| s.labels.span_id.is_some())
        .collect();
    assert_eq!(linked.len(), 1);
    assert_eq!(
        linked[0].labels.span_id.as_deref(),
        Some("0202020202020202")
    );
    assert_eq!(
        linked[0].labels.trace_id.as_deref(),
        Some("01010101010101010101010101010101")
    );
    assert_eq!(linked[0].value, 4 * 50_000_000);
    // The unsymbolized frame keeps its mapping and build id.
    let libc = profile.symbols.mapping.iter().find(|m| m.id == 1).unwrap();
    assert_eq!(
        profile.symbols.string_table[libc.build_id as usize],
        "abcdef"
    );
    assert_eq!(
        profile.symbols.string_table[libc.filename as usize],
        "/usr/lib/libc.so.6"
    );
}

#[test]
fn service_names_fall_back_to_the_executable() {
    let converted = convert_request(
        request(vec![
            (vec![kv("process.executable.name", "foo")], cpu_profile()),
            (vec![], cpu_profile()),
        ]),
        0,
    );
    let names: Vec<&str> = converted
        .profiles
        .iter()
        .map(|p| p.service_name.as_str())
        .collect();
    assert_eq!(names, ["unknown_service:foo", "unknown_service"]);
}

#[test]
fn off_cpu_profiles_get_their_own_type() {
    let mut profile = cpu_profile();
    profile.sample_type = Some(ValueType {
        type_strindex: 12,
        unit_strindex: 4,
    });
    profile.samples.truncate(2);
    let converted = convert_request(request(vec![(vec![kv("service.name", "api")], profile)]), 0);
    let series = &converted.profiles[0].series[0];
    assert_eq!(
        series.profile_type.id(),
        "off_cpu:off_cpu:nanoseconds:cpu:nanoseconds"
    );
    let total: i64 = converted.profiles[0]
        .series
        .iter()
        .flat_map(|s| &s.samples)
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 5);
}

#[test]
fn out_of_range_references_are_rejected_with_the_reason() {
    let mut bad = cpu_profile();
    bad.samples[0].stack_index = 99;
    let converted = convert_request(
        request(vec![
            (vec![kv("service.name", "bad")], bad),
            (vec![kv("service.name", "good")], cpu_profile()),
        ]),
        0,
    );
    assert_eq!(
        (
            converted.total,
            converted.profiles.len(),
            converted.rejected.len()
        ),
        (2, 1, 1)
    );
    assert!(
        converted.rejected[0]
            .to_string()
            .contains("stack_index 99 is out of range"),
        "{:?}",
        converted.rejected
    );

    let mut request = request(vec![(vec![], cpu_profile())]);
    request.dictionary.as_mut().unwrap().function_table[1].name_strindex = 500;
    let converted = convert_request(request, 0);
    assert_eq!(converted.rejected.len(), 1);
    assert!(
        converted.rejected[0]
            .to_string()
            .contains("function_table[1].name_strindex 500 is out of range")
    );
}

#[test]
fn rejections_say_which_profile_and_what_is_wrong() {
    let rejected = |request: ExportProfilesServiceRequest| {
        let converted = convert_request(request, 0);
        assert_eq!(converted.rejected.len(), 1, "{:?}", converted.rejected);
        converted.rejected.into_iter().next().unwrap()
    };

    let mut bad = cpu_profile();
    bad.samples[0].stack_index = 99;
    let r = rejected(request(vec![(vec![], bad)]));
    assert!(matches!(
        r.error,
        OtlpError::StackIndex {
            sample: 0,
            index: 99,
            len: 4
        }
    ));
    assert_eq!(
        r.to_string(),
        "resource 0 scope 0 profile 0: sample 0: stack_index 99 is out of range: stack_table has 4 entries (is the sender on OTLP profiles v1.10 or later?)"
    );

    let mut bad = cpu_profile();
    bad.samples[2].values = vec![1];
    let r = rejected(request(vec![(vec![], bad)]));
    assert_eq!(
        r.to_string(),
        "resource 0 scope 0 profile 0: sample 2: 1 values but 4 timestamps; they must be equal in number"
    );

    let mut bad = cpu_profile();
    bad.sample_type = None;
    let r = rejected(request(vec![(vec![], bad)]));
    assert!(matches!(r.error, OtlpError::NoSampleType));
    assert_eq!(
        r.to_string(),
        "resource 0 scope 0 profile 0: the profile has no sample_type"
    );

    // A bad dictionary rejects every profile, without naming one.
    let mut bad = request(vec![(vec![], cpu_profile())]);
    bad.dictionary.as_mut().unwrap().function_table[1].name_strindex = 500;
    let r = rejected(bad);
    assert_eq!(r.position, None);
    assert_eq!(
        r.to_string(),
        "function_table[1].name_strindex 500 is out of range: the table has 13 entries (is the sender on OTLP profiles v1.10 or later?)"
    );

    let mut bad = request(vec![(vec![], cpu_profile())]);
    bad.dictionary.as_mut().unwrap().link_table[1].span_id = vec![2; 7].into();
    assert_eq!(
        rejected(bad).to_string(),
        "link_table[1] must have a 16-byte trace_id and an 8-byte span_id, got 16 and 7"
    );
}

/// A request of many profiles over one large dictionary: each profile's pprof holds only what
/// its samples use, so the dictionary is not copied per profile.
#[test]
fn each_profile_holds_only_the_symbols_it_uses() {
    let mut big = request(
        (0..100)
            .map(|_| (vec![kv("service.name", "api")], cpu_profile()))
            .collect(),
    );
    let dictionary = big.dictionary.as_mut().unwrap();
    let unused = dictionary.string_table.len();
    dictionary
        .string_table
        .extend((0..10_000).map(|i| format!("unused_{i}")));
    let converted = convert_request(big, 0);
    assert_eq!(converted.profiles.len(), 100);
    for profile in &converted.profiles {
        let symbols = &profile.symbols;
        assert!(
            symbols.string_table.len() <= unused + 8,
            "{}",
            symbols.string_table.len()
        );
        assert!(
            symbols
                .string_table
                .iter()
                .all(|s| !s.starts_with("unused_"))
        );
    }
}

#[test]
fn limits_refuse_the_request_before_conversion() {
    let limits = ConvertLimits {
        max_samples_per_profile: 2,
        ..ConvertLimits::default()
    };
    let err = convert_request_within(
        request(vec![(vec![kv("service.name", "api")], cpu_profile())]),
        0,
        &limits,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "profile has 3 samples, over max_samples_per_profile 2"
    );
    let limits = ConvertLimits {
        normalize: NormalizeLimits {
            max_label_names_per_series: 3,
            ..NormalizeLimits::default()
        },
        ..ConvertLimits::default()
    };
    let err = convert_request_within(
        request(vec![(vec![kv("service.name", "api")], cpu_profile())]),
        0,
        &limits,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("over max_label_names_per_series 3"),
        "{err}"
    );
}

/// Stacks deeper than the limit keep one location more than it on the root side, for the
/// distributor's truncation to cut and count.
#[test]
fn deep_stacks_are_cut_to_one_past_the_limit() {
    let limits = ConvertLimits {
        max_stack_depth: 1,
        ..ConvertLimits::default()
    };
    let full = convert_request(
        request(vec![(vec![kv("service.name", "api")], cpu_profile())]),
        0,
    );
    let cut = convert_request_within(
        request(vec![(vec![kv("service.name", "api")], cpu_profile())]),
        0,
        &limits,
    )
    .unwrap();
    let stacks = |c: &Converted| -> Vec<Vec<u64>> {
        c.profiles[0].series[0]
            .samples
            .iter()
            .map(|s| s.locations.to_vec())
            .collect()
    };
    for (full, cut) in stacks(&full).iter().zip(stacks(&cut)) {
        let keep = full.len().min(2);
        assert_eq!(cut, full[full.len() - keep..]);
    }
}

/// Every stack of a converted profile as frame names, leaf first (a location without lines by
/// its address), with its value, sorted.
fn stacks_by_name(profile: &NormalizedProfile) -> Vec<(Vec<String>, i64)> {
    let symbols = &profile.symbols;
    let name = |id: u64| -> Vec<String> {
        let location = symbols.location.iter().find(|l| l.id == id).unwrap();
        if location.line.is_empty() {
            return vec![format!("{:#x}", location.address)];
        }
        location
            .line
            .iter()
            .map(|line| {
                let function = symbols
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap();
                symbols.string_table[function.name as usize].clone()
            })
            .collect()
    };
    let mut stacks: Vec<_> = profile
        .series
        .iter()
        .flat_map(|s| &s.samples)
        .map(|s| {
            (
                s.locations.iter().flat_map(|&id| name(id)).collect(),
                s.value,
            )
        })
        .collect();
    stacks.sort();
    stacks
}

/// Profiles of one request number the dictionary entries they use 1..=n each, so that the
/// second profile's ids say nothing of the first's, and every stack still resolves to its
/// own frames.
#[test]
fn each_profile_numbers_its_symbols_densely() {
    let mut libc_only = cpu_profile();
    libc_only.samples.drain(..2);
    let mut without_libc = cpu_profile();
    without_libc.samples.truncate(2);
    let converted = convert_request(
        request(vec![
            (vec![kv("service.name", "a")], libc_only),
            (vec![kv("service.name", "b")], without_libc),
        ]),
        0,
    );
    assert!(converted.rejected.is_empty(), "{:?}", converted.rejected);
    let [a, b] = &converted.profiles[..] else {
        panic!("{} profiles", converted.profiles.len())
    };
    let nanos = |n: i64| n * 50_000_000;
    assert_eq!(
        stacks_by_name(a),
        [(vec!["0x1234".to_string(), "main".to_string()], nanos(4))]
    );
    assert_eq!(
        stacks_by_name(b),
        [
            (
                ["leaf", "work", "main"].map(String::from).to_vec(),
                nanos(3)
            ),
            (["work", "main"].map(String::from).to_vec(), nanos(2)),
        ]
    );
    for profile in [a, b] {
        let symbols = &profile.symbols;
        let ids = |ids: Vec<u64>| assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        ids(symbols.location.iter().map(|l| l.id).collect());
        ids(symbols.function.iter().map(|f| f.id).collect());
        ids(symbols.mapping.iter().map(|m| m.id).collect());
    }
    assert_eq!((a.symbols.location.len(), a.symbols.mapping.len()), (2, 1));
    assert_eq!((b.symbols.location.len(), b.symbols.mapping.len()), (3, 0));
    assert_eq!(b.symbols.function.len(), 3);
}

/// Index 0 of a table the sender left empty passes the dictionary's check (every table has its
/// zero entry) but is no location or function: the profile is refused, naming the reference.
#[test]
fn a_zero_index_into_an_empty_table_is_refused() {
    let mut bad = request(vec![(vec![], cpu_profile())]);
    let dictionary = bad.dictionary.as_mut().unwrap();
    dictionary.location_table.clear();
    dictionary.stack_table = vec![
        Stack::default(),
        Stack {
            location_indices: vec![0],
        },
    ];
    bad.resource_profiles[0].scope_profiles[0].profiles[0]
        .samples
        .truncate(1);
    let converted = convert_request(bad, 0);
    assert_eq!(
        converted.rejected[0].to_string(),
        "resource 0 scope 0 profile 0: stack_table[1].location_indices 0 is out of range: the table has 0 entries (is the sender on OTLP profiles v1.10 or later?)"
    );

    let mut bad = request(vec![(vec![], cpu_profile())]);
    let dictionary = bad.dictionary.as_mut().unwrap();
    dictionary.function_table.clear();
    for location in &mut dictionary.location_table {
        for line in &mut location.lines {
            line.function_index = 0;
        }
    }
    let converted = convert_request(bad, 0);
    assert_eq!(
        converted.rejected[0].to_string(),
        "resource 0 scope 0 profile 0: location_table[3].lines.function_index 0 is out of range: the table has 0 entries (is the sender on OTLP profiles v1.10 or later?)"
    );
}
