//! The `samples` table: one row per (profile, stack) with its value, and how a selected
//! dataset becomes its rows.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Int64Builder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use kiln_querier::SelectedDataset;

/// When the profile was taken: timestamp, nanoseconds, UTC.
pub(crate) const TIME: &str = "time";
/// The service (`service_name` label).
pub(crate) const SERVICE_NAME: &str = "service_name";
/// The full profile type id, e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
pub(crate) const PROFILE_TYPE: &str = "profile_type";
/// The series' labels (those a user set: internal `__…__` labels are left out).
pub(crate) const LABELS: &str = "labels";
/// The leaf frame's function.
pub(crate) const FUNCTION: &str = "function";
/// The stack's functions, root first.
pub(crate) const STACK: &str = "stack";
/// The value in the profile type's unit.
pub(crate) const VALUE: &str = "value";

fn map_field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".to_string(),
        key: "key".to_string(),
        value: "value".to_string(),
    }
}

/// The schema of `samples`.
pub(crate) static SAMPLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    let names = map_field_names();
    let entries = Fields::from(vec![
        Field::new(&names.key, DataType::Utf8, false),
        Field::new(&names.value, DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new(
            TIME,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(SERVICE_NAME, DataType::Utf8, false),
        Field::new(PROFILE_TYPE, DataType::Utf8, false),
        Field::new(
            LABELS,
            DataType::Map(
                Arc::new(Field::new(&names.entry, DataType::Struct(entries), false)),
                false,
            ),
            false,
        ),
        Field::new(FUNCTION, DataType::Utf8, false),
        Field::new(
            STACK,
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        Field::new(VALUE, DataType::Int64, false),
    ]))
});

/// The rows of one selected dataset, with the columns of `projection` (indexes into
/// [`SAMPLES`]; `None`: all). Samples of the same profile and stack (which differ only in span
/// labels) are one row.
pub(crate) fn dataset_batch(
    dataset: &SelectedDataset,
    projection: &[usize],
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let data = dataset.data();
    // One row per (profile row, stack), in order of first appearance.
    let mut rows: Vec<(u32, u32, i64)> = Vec::new();
    let mut index: HashMap<(u32, u32), usize> = HashMap::new();
    for sample in dataset.selected_samples() {
        match index.entry((sample.profile, sample.stack)) {
            std::collections::hash_map::Entry::Occupied(e) => rows[*e.get()].2 += sample.value,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(rows.len());
                rows.push((sample.profile, sample.stack, sample.value));
            }
        }
    }
    let symbols = &data.symbols;
    // Function names of each stack, root first, resolved once per stack.
    let mut stacks: HashMap<u32, Vec<&str>> = HashMap::new();
    let mut names_of = |stack: u32| -> Vec<&str> {
        stacks
            .entry(stack)
            .or_insert_with(|| {
                let mut names = Vec::new();
                for location in symbols.stack_locations(stack) {
                    for &(function, _) in &symbols.locations[location as usize].lines {
                        names.push(symbols.string(symbols.functions[function as usize].name));
                    }
                }
                names.reverse();
                names
            })
            .clone()
    };
    let columns: Vec<ArrayRef> = projection
        .iter()
        .map(|&column| -> ArrayRef {
            match SAMPLES.field(column).name().as_str() {
                TIME => {
                    let mut b =
                        TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                    for &(profile, _, _) in &rows {
                        b.append_value(data.profiles[profile as usize].time_nanos);
                    }
                    Arc::new(b.finish())
                }
                SERVICE_NAME => {
                    let mut b = StringBuilder::new();
                    for _ in &rows {
                        b.append_value(&data.service_name);
                    }
                    Arc::new(b.finish())
                }
                PROFILE_TYPE => {
                    let mut b = StringBuilder::new();
                    for &(profile, _, _) in &rows {
                        let series = data.profiles[profile as usize].series as usize;
                        b.append_value(&data.series[series].profile_type);
                    }
                    Arc::new(b.finish())
                }
                LABELS => {
                    let mut b = MapBuilder::new(
                        Some(map_field_names()),
                        StringBuilder::new(),
                        StringBuilder::new(),
                    );
                    for &(profile, _, _) in &rows {
                        let series = data.profiles[profile as usize].series as usize;
                        for (name, value) in data.series[series].labels.iter() {
                            if name.starts_with("__") {
                                continue;
                            }
                            b.keys().append_value(name);
                            b.values().append_value(value);
                        }
                        b.append(true).expect("keys and values have equal lengths");
                    }
                    Arc::new(b.finish())
                }
                FUNCTION => {
                    let mut b = StringBuilder::new();
                    for &(_, stack, _) in &rows {
                        b.append_value(names_of(stack).last().copied().unwrap_or(""));
                    }
                    Arc::new(b.finish())
                }
                STACK => {
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for &(_, stack, _) in &rows {
                        for name in names_of(stack) {
                            b.values().append_value(name);
                        }
                        b.append(true);
                    }
                    Arc::new(b.finish())
                }
                _ => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    for &(_, _, value) in &rows {
                        b.append_value(value);
                    }
                    Arc::new(b.finish())
                }
            }
        })
        .collect();
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
}
