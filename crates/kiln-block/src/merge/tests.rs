//! The merge's handling of sample labels, which it holds interned while merging.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_model::{Labels, SampleLabels};

use crate::DatasetMerger;
use crate::data::{DatasetData, Function, Location, ProfileRow, SampleRow, SeriesRow, Symbols};

fn labels(
    span: Option<&str>,
    name: Option<&str>,
    trace: Option<&str>,
    id: Option<&str>,
) -> Arc<SampleLabels> {
    Arc::new(SampleLabels {
        span_id: span.map(str::to_string),
        span_name: name.map(str::to_string),
        trace_id: trace.map(str::to_string),
        profile_id: id.map(str::to_string),
    })
}

/// A dataset of one profile `profile_id` whose samples all have the one stack `main`.
fn dataset(profile_id: &str, samples: Vec<(i64, Arc<SampleLabels>)>) -> DatasetData {
    DatasetData {
        tenant: "t".to_string(),
        service_name: "svc".to_string(),
        series: vec![SeriesRow {
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
            labels: Labels::from_pairs([("service_name", "svc")]),
        }],
        profiles: vec![ProfileRow {
            series: 0,
            profile_id: profile_id.to_string(),
            time_nanos: 1,
            duration_nanos: 0,
            period: 1,
        }],
        samples: samples
            .into_iter()
            .map(|(value, labels)| SampleRow {
                profile: 0,
                stack: 1,
                value,
                labels,
            })
            .collect(),
        symbols: Arc::new(Symbols {
            strings: vec![String::new(), "main".to_string(), "main.go".to_string()],
            mappings: Vec::new(),
            functions: vec![Function {
                name: 1,
                system_name: 1,
                filename: 2,
                start_line: 1,
            }],
            locations: vec![Location {
                mapping: 0,
                address: 0x10,
                lines: vec![(0, 3)],
                is_folded: false,
            }],
            stacks: vec![(0, 0)],
        }),
    }
}

/// (profile id, value) -> labels of every sample.
fn samples_of(dataset: &DatasetData) -> BTreeMap<(String, i64), SampleLabels> {
    dataset
        .samples
        .iter()
        .map(|s| {
            let profile = dataset.profiles[s.profile as usize].profile_id.clone();
            ((profile, s.value), s.labels.as_ref().clone())
        })
        .collect()
}

#[test]
fn merged_samples_keep_their_labels_exactly_and_equal_label_sets_share_one_allocation() {
    let shared = labels(Some("00000000000000aa"), Some("GET /"), None, None);
    let none = Arc::new(SampleLabels::default());
    // Input a: no labels, a shared set on two rows, every field, and a span id equal to
    // another field's value (the strings are interned across fields, the sets are not).
    let a = dataset(
        "a",
        vec![
            (1, Arc::clone(&none)),
            (2, Arc::clone(&shared)),
            (3, Arc::clone(&shared)),
            (
                4,
                labels(
                    Some("00000000000000bb"),
                    Some("POST /x"),
                    Some("trace-1"),
                    Some("p-1"),
                ),
            ),
            (5, labels(None, None, Some("00000000000000aa"), None)),
        ],
    );
    // Input b: the same set as a's shared one in new allocations, and only a profile id.
    let b = dataset(
        "b",
        vec![
            (
                6,
                labels(Some("00000000000000aa"), Some("GET /"), None, None),
            ),
            (
                7,
                labels(Some("00000000000000aa"), Some("GET /"), None, None),
            ),
            (8, labels(None, None, None, Some("p-2"))),
            (9, Arc::clone(&none)),
        ],
    );
    let mut merger = DatasetMerger::new("t", "svc");
    merger.reserve_samples(a.samples.len() + b.samples.len());
    merger.add(&a);
    merger.add(&b);
    let merged = merger.finish();

    let mut expected = samples_of(&a);
    expected.extend(samples_of(&b));
    assert_eq!(samples_of(&merged), expected);
    assert_eq!(merged.samples.len(), 9);
    // Label strings stay out of the block's string table.
    assert_eq!(merged.symbols.strings, ["", "main", "main.go"]);
    // One allocation per distinct set: the four rows of "GET /" share one.
    let sets: Vec<&Arc<SampleLabels>> = merged.samples.iter().map(|s| &s.labels).collect();
    for (i, x) in sets.iter().enumerate() {
        for y in &sets[i + 1..] {
            assert_eq!(Arc::ptr_eq(x, y), x == y, "{x:?} and {y:?}");
        }
    }
}
