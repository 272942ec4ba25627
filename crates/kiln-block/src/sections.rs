//! Encoding of datasets into the Parquet sections of an object, and back.
//!
//! Every section is a table over all datasets of the object with a leading `dataset` column;
//! rows of one dataset are contiguous and in id order, so ids are implicit row positions.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, ListBuilder,
    RecordBatch, StringArray, StringBuilder, UInt32Array, UInt32Builder, UInt64Array,
    UInt64Builder,
};
use arrow::array::{AsArray, RecordBatchReader};
use arrow::datatypes::{Field, Int64Type, Schema, UInt32Type};
use bytes::Bytes;
use kiln_model::{Labels, SampleLabels};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::ChunkReader;
use parquet::schema::types::ColumnPath;

use crate::data::{
    DatasetData, Function, Location, Mapping, ProfileRow, SampleRow, SeriesRow, Symbols,
};
use crate::{BlockError, Result};

/// Names of the sections, in the order they are written.
pub(crate) const SECTIONS: [&str; 8] = [
    "series",
    "profiles",
    "samples",
    "strings",
    "mappings",
    "functions",
    "locations",
    "stacks",
];

/// Rows per Parquet row group: small enough that the statistics of the profiles (series, time)
/// and samples (profile) columns let a reader skip most of a large dataset.
const ROW_GROUP_ROWS: usize = 64 * 1024;

fn arrow_err(section: &'static str) -> impl Fn(arrow::error::ArrowError) -> BlockError {
    move |source| BlockError::Arrow { section, source }
}

fn parquet_err(section: &'static str) -> impl Fn(parquet::errors::ParquetError) -> BlockError {
    move |source| BlockError::Parquet { section, source }
}

/// A series section whose columns take less memory than this is stored uncompressed. ZSTD saves
/// next to nothing on a few KB of dictionary-encoded label pages (2,021 against 2,092 bytes for a
/// region's series section), while its codec, created for every column chunk read, made decoding
/// such a section take 100 µs instead of 30: label calls decode one per region they read. The
/// other sections stay compressed (symbols compress well, and nothing reads them alone per
/// region so often).
const UNCOMPRESSED_SERIES_BELOW_BYTES: usize = 64 * 1024;

/// Columns written without a dictionary, as (section, column): ids that are nearly all distinct
/// (a dataset's stack nodes, location addresses, function names) and strings that are unique by
/// construction (the interned string table). Parquet's writer hashes every value of a
/// dictionary-encoded column, and for these it built a dictionary as large as the column and then
/// stored indexes into it: plain values compressed with ZSTD are both cheaper to write and
/// smaller. The small-profile workload's segment (48 services) went from 130 to 85 KB and its
/// level-1 block from 1.36 to 0.76 MB, and writing a segment took a quarter less time
/// (docs/benchmarks.md). Columns with few distinct values (dataset, profile, value, mapping, file
/// names, labels) keep theirs.
pub(crate) const PLAIN_COLUMNS: [(&str, &str); 9] = [
    ("samples", "stack"),
    ("stacks", "dataset"),
    ("stacks", "parent"),
    ("stacks", "location"),
    ("locations", "address"),
    ("functions", "name"),
    ("functions", "system_name"),
    ("functions", "start_line"),
    ("strings", "value"),
];

/// How an object's sections are compressed: by what the object is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Segments (level 0): LZ4, whose codec is a function call. Parquet's ZSTD codec creates a
    /// compression and a decompression context for every column chunk it writes or reads (about
    /// 45 per segment, each hundreds of KB to set up), which cost more than the
    /// compression itself on a segment of small datasets. A segment is written once, read by
    /// the level-1 compaction (and by queries of recent data) and deleted, so its extra
    /// bytes (about half again) are stored for seconds to minutes.
    Lz4,
    /// Compacted blocks, stored for the retention period and read by queries: ZSTD.
    Zstd,
}

/// The compression of section `name` whose columns take `memory_bytes`.
fn compression(codec: Codec, name: &str, memory_bytes: usize) -> Compression {
    if name == "series" && memory_bytes < UNCOMPRESSED_SERIES_BELOW_BYTES {
        Compression::UNCOMPRESSED
    } else if codec == Codec::Lz4 {
        Compression::LZ4_RAW
    } else {
        Compression::ZSTD(ZstdLevel::default())
    }
}

/// Encodes every section of `datasets` as a Parquet file compressed with `codec`.
///
/// Each section's columns are built only when it is written, and the samples (most of the
/// rows) one row group at a time: a level-1 job writes services of millions of samples, whose
/// whole samples table in Arrow took about 40 bytes per sample beside the merged rows.
pub(crate) fn encode(
    datasets: &[DatasetData],
    codec: Codec,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut out = Vec::with_capacity(SECTIONS.len());
    for name in SECTIONS {
        let bytes = if name == "samples" {
            let mut rows = datasets
                .iter()
                .zip(0u32..)
                .flat_map(|(dataset, id)| dataset.samples.iter().map(move |row| (id, row)));
            let mut chunk: Vec<(u32, &SampleRow)> = rows.by_ref().take(ROW_GROUP_ROWS).collect();
            let first = samples_batch(&chunk).map_err(arrow_err(name))?;
            let mut writer = SectionWriter::new(name, codec, &first)?;
            writer.write(&first)?;
            drop(first);
            loop {
                chunk.clear();
                chunk.extend(rows.by_ref().take(ROW_GROUP_ROWS));
                if chunk.is_empty() {
                    break;
                }
                writer.write(&samples_batch(&chunk).map_err(arrow_err(name))?)?;
            }
            writer.finish()?
        } else {
            let batch = match name {
                "series" => series_batch(datasets),
                "profiles" => profiles_batch(datasets),
                "strings" => strings_batch(datasets),
                "mappings" => mappings_batch(datasets),
                "functions" => functions_batch(datasets),
                "locations" => locations_batch(datasets),
                _ => stacks_batch(datasets),
            }
            .map_err(arrow_err(name))?;
            let mut writer = SectionWriter::new(name, codec, &batch)?;
            writer.write(&batch)?;
            writer.finish()?
        };
        out.push((name, bytes));
    }
    Ok(out)
}

/// The Parquet writer of one section.
struct SectionWriter {
    name: &'static str,
    writer: ArrowWriter<Vec<u8>>,
}

impl SectionWriter {
    /// A writer for section `name`, whose schema (and, for the series section, size) `first`
    /// shows.
    fn new(name: &'static str, codec: Codec, first: &RecordBatch) -> Result<Self> {
        let mut properties = WriterProperties::builder()
            .set_compression(compression(codec, name, first.get_array_memory_size()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Readers prune by row group (`pruned`), never by page: statistics per column chunk,
            // without the per-page ones and the page index Parquet writes by default (3–5 % of
            // writing a segment, 2 % of its bytes).
            .set_statistics_enabled(EnabledStatistics::Chunk);
        for (_, column) in PLAIN_COLUMNS.iter().filter(|(section, _)| *section == name) {
            properties = properties
                .set_column_dictionary_enabled(ColumnPath::new(vec![column.to_string()]), false);
        }
        let writer = ArrowWriter::try_new(Vec::new(), first.schema(), Some(properties.build()))
            .map_err(parquet_err(name))?;
        Ok(Self { name, writer })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(parquet_err(self.name))
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.writer.into_inner().map_err(parquet_err(self.name))
    }
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> arrow::error::Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
}

fn dataset_column<T>(datasets: &[DatasetData], rows: impl Fn(&DatasetData) -> &[T]) -> ArrayRef {
    let mut builder = UInt32Builder::new();
    for (i, dataset) in datasets.iter().enumerate() {
        builder.append_value_n(i as u32, rows(dataset).len());
    }
    Arc::new(builder.finish())
}

fn series_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let mut profile_type = StringBuilder::new();
    let mut names = ListBuilder::new(StringBuilder::new());
    let mut values = ListBuilder::new(StringBuilder::new());
    for row in datasets.iter().flat_map(|d| &d.series) {
        profile_type.append_value(&row.profile_type);
        for (name, value) in row.labels.iter() {
            names.values().append_value(name);
            values.values().append_value(value);
        }
        names.append(true);
        values.append(true);
    }
    batch(vec![
        ("dataset", dataset_column(datasets, |d| &d.series)),
        ("profile_type", Arc::new(profile_type.finish())),
        ("label_names", Arc::new(names.finish())),
        ("label_values", Arc::new(values.finish())),
    ])
}

fn profiles_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let rows = || datasets.iter().flat_map(|d| &d.profiles);
    batch(vec![
        ("dataset", dataset_column(datasets, |d| &d.profiles)),
        (
            "series",
            Arc::new(UInt32Array::from_iter_values(rows().map(|r| r.series))),
        ),
        (
            "profile_id",
            Arc::new(rows().map(|r| Some(&r.profile_id)).collect::<StringArray>()),
        ),
        (
            "time_nanos",
            Arc::new(Int64Array::from_iter_values(rows().map(|r| r.time_nanos))),
        ),
        (
            "duration_nanos",
            Arc::new(Int64Array::from_iter_values(
                rows().map(|r| r.duration_nanos),
            )),
        ),
        (
            "period",
            Arc::new(Int64Array::from_iter_values(rows().map(|r| r.period))),
        ),
    ])
}

/// The samples of `rows`, each with the position of its dataset.
fn samples_batch(rows: &[(u32, &SampleRow)]) -> arrow::error::Result<RecordBatch> {
    let optional = |get: fn(&SampleLabels) -> &Option<String>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|(_, r)| get(&r.labels).as_deref())
                .collect::<StringArray>(),
        )
    };
    let u32s = |get: fn(&(u32, &SampleRow)) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(get)))
    };
    batch(vec![
        ("dataset", u32s(|(dataset, _)| *dataset)),
        ("profile", u32s(|(_, r)| r.profile)),
        ("stack", u32s(|(_, r)| r.stack)),
        (
            "value",
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(_, r)| r.value),
            )),
        ),
        ("span_id", optional(|l| &l.span_id)),
        ("span_name", optional(|l| &l.span_name)),
        ("trace_id", optional(|l| &l.trace_id)),
        ("profile_id", optional(|l| &l.profile_id)),
    ])
}

fn strings_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let rows = datasets.iter().flat_map(|d| &d.symbols.strings);
    batch(vec![
        ("dataset", dataset_column(datasets, |d| &d.symbols.strings)),
        ("value", Arc::new(rows.map(Some).collect::<StringArray>())),
    ])
}

fn mappings_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let rows = || datasets.iter().flat_map(|d| &d.symbols.mappings);
    let u64s = |get: fn(&Mapping) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(rows().map(get)))
    };
    batch(vec![
        ("dataset", dataset_column(datasets, |d| &d.symbols.mappings)),
        ("memory_start", u64s(|m| m.memory_start)),
        ("memory_limit", u64s(|m| m.memory_limit)),
        ("file_offset", u64s(|m| m.file_offset)),
        (
            "filename",
            Arc::new(UInt32Array::from_iter_values(rows().map(|m| m.filename))),
        ),
        (
            "build_id",
            Arc::new(UInt32Array::from_iter_values(rows().map(|m| m.build_id))),
        ),
    ])
}

fn functions_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let rows = || datasets.iter().flat_map(|d| &d.symbols.functions);
    let u32s = |get: fn(&Function) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(rows().map(get)))
    };
    batch(vec![
        (
            "dataset",
            dataset_column(datasets, |d| &d.symbols.functions),
        ),
        ("name", u32s(|f| f.name)),
        ("system_name", u32s(|f| f.system_name)),
        ("filename", u32s(|f| f.filename)),
        (
            "start_line",
            Arc::new(Int64Array::from_iter_values(rows().map(|f| f.start_line))),
        ),
    ])
}

fn locations_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let mut mapping = UInt32Builder::new();
    let mut address = UInt64Builder::new();
    let mut folded = BooleanBuilder::new();
    let mut functions = ListBuilder::new(UInt32Builder::new());
    let mut lines = ListBuilder::new(Int64Builder::new());
    for location in datasets.iter().flat_map(|d| &d.symbols.locations) {
        mapping.append_value(location.mapping);
        address.append_value(location.address);
        folded.append_value(location.is_folded);
        for &(function, line) in &location.lines {
            functions.values().append_value(function);
            lines.values().append_value(line);
        }
        functions.append(true);
        lines.append(true);
    }
    batch(vec![
        (
            "dataset",
            dataset_column(datasets, |d| &d.symbols.locations),
        ),
        ("mapping", Arc::new(mapping.finish())),
        ("address", Arc::new(address.finish())),
        ("is_folded", Arc::new(folded.finish())),
        ("line_functions", Arc::new(functions.finish())),
        ("line_numbers", Arc::new(lines.finish())),
    ])
}

fn stacks_batch(datasets: &[DatasetData]) -> arrow::error::Result<RecordBatch> {
    let rows = || datasets.iter().flat_map(|d| &d.symbols.stacks);
    batch(vec![
        ("dataset", dataset_column(datasets, |d| &d.symbols.stacks)),
        (
            "parent",
            Arc::new(UInt32Array::from_iter_values(rows().map(|s| s.0))),
        ),
        (
            "location",
            Arc::new(UInt32Array::from_iter_values(rows().map(|s| s.1))),
        ),
    ])
}

/// A decoded section: its batches concatenated.
struct Table {
    name: &'static str,
    batch: RecordBatch,
}

impl Table {
    fn decode(name: &'static str, data: Bytes) -> Result<Self> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .map_err(parquet_err(name))?
            .build()
            .map_err(parquet_err(name))?;
        Self::from_reader(name, reader)
    }

    fn from_reader(name: &'static str, reader: ParquetRecordBatchReader) -> Result<Self> {
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(arrow_err(name))?;
        let batch = arrow::compute::concat_batches(&schema, &batches).map_err(arrow_err(name))?;
        Ok(Self { name, batch })
    }

    fn column(&self, column: &str) -> Result<&ArrayRef> {
        self.batch.column_by_name(column).ok_or_else(|| {
            BlockError::Corrupt(format!("section {} lacks column {column}", self.name))
        })
    }

    fn u32s(&self, column: &str) -> Result<&UInt32Array> {
        self.column(column)?
            .as_primitive_opt()
            .ok_or_else(|| self.wrong_type(column))
    }

    fn u64s(&self, column: &str) -> Result<&UInt64Array> {
        self.column(column)?
            .as_primitive_opt()
            .ok_or_else(|| self.wrong_type(column))
    }

    fn i64s(&self, column: &str) -> Result<&Int64Array> {
        self.column(column)?
            .as_primitive_opt()
            .ok_or_else(|| self.wrong_type(column))
    }

    fn bools(&self, column: &str) -> Result<&BooleanArray> {
        self.column(column)?
            .as_boolean_opt()
            .ok_or_else(|| self.wrong_type(column))
    }

    fn strings(&self, column: &str) -> Result<&StringArray> {
        self.column(column)?
            .as_string_opt()
            .ok_or_else(|| self.wrong_type(column))
    }

    /// A list column: its offsets (row `r` is `offsets[r]..offsets[r + 1]`, checked by Arrow
    /// to lie within the values) and its values, as `values_as` casts them.
    fn lists<'a, V: ?Sized>(
        &'a self,
        column: &str,
        values_as: impl FnOnce(&'a ArrayRef) -> Option<&'a V>,
    ) -> Result<(&'a [i32], &'a V)> {
        let list = self
            .column(column)?
            .as_list_opt::<i32>()
            .ok_or_else(|| self.wrong_type(column))?;
        let values = values_as(list.values()).ok_or_else(|| self.wrong_type(column))?;
        Ok((list.value_offsets(), values))
    }

    fn wrong_type(&self, column: &str) -> BlockError {
        BlockError::Corrupt(format!(
            "column {column} of section {} has the wrong type",
            self.name
        ))
    }

    /// Row ranges of each dataset, checked to be contiguous and in order.
    fn dataset_ranges(&self, datasets: usize) -> Result<Vec<std::ops::Range<usize>>> {
        let column = self.u32s("dataset")?;
        let mut ranges = vec![0..0; datasets];
        let mut previous = 0u32;
        for (row, &dataset) in column.values().iter().enumerate() {
            if dataset < previous || dataset as usize >= datasets {
                return Err(BlockError::Corrupt(format!(
                    "section {} has rows out of dataset order",
                    self.name
                )));
            }
            previous = dataset;
            let range = &mut ranges[dataset as usize];
            if range.start == range.end {
                *range = row..row + 1;
            } else {
                range.end = row + 1;
            }
        }
        Ok(ranges)
    }
}

/// Decodes the sections into `datasets`, which hold tenant and service from the footer.
pub(crate) fn decode(
    sections: Vec<(&'static str, Bytes)>,
    datasets: &mut [DatasetData],
) -> Result<()> {
    decode_unchecked(sections, datasets)?;
    for dataset in datasets.iter() {
        check_references(dataset)?;
    }
    Ok(())
}

/// Decodes the sections into `datasets` without checking references between them: for some of
/// a region's sections, checked by [`check_references`] once the dataset is whole.
pub(crate) fn decode_unchecked(
    sections: Vec<(&'static str, Bytes)>,
    datasets: &mut [DatasetData],
) -> Result<()> {
    for (name, data) in sections {
        let table = Table::decode(name, data)?;
        let ranges = table.dataset_ranges(datasets.len())?;
        for (dataset, rows) in datasets.iter_mut().zip(ranges) {
            decode_rows(&table, rows, dataset)?;
        }
    }
    Ok(())
}

/// Decodes the row groups `row_groups` of the samples section (read through `reader`, which
/// holds at least their column chunks; `metadata` is the section's footer) into `datasets`.
pub(crate) fn decode_samples<R: ChunkReader + 'static>(
    reader: R,
    metadata: ArrowReaderMetadata,
    row_groups: Vec<usize>,
    datasets: &mut [DatasetData],
) -> Result<()> {
    let name = "samples";
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, metadata)
        .with_row_groups(row_groups)
        .build()
        .map_err(parquet_err(name))?;
    let table = Table::from_reader(name, reader)?;
    let ranges = table.dataset_ranges(datasets.len())?;
    for (dataset, rows) in datasets.iter_mut().zip(ranges) {
        decode_rows(&table, rows, dataset)?;
    }
    Ok(())
}

fn decode_rows(table: &Table, rows: std::ops::Range<usize>, out: &mut DatasetData) -> Result<()> {
    match table.name {
        "series" => {
            let profile_types = table.strings("profile_type")?;
            let (name_offsets, name_strings) =
                table.lists("label_names", |v| v.as_string_opt::<i32>())?;
            let (value_offsets, value_strings) =
                table.lists("label_values", |v| v.as_string_opt::<i32>())?;
            let text = |array: &StringArray, i: usize| {
                if array.is_valid(i) {
                    array.value(i).to_string()
                } else {
                    String::new()
                }
            };
            for row in rows {
                let names = name_offsets[row] as usize..name_offsets[row + 1] as usize;
                let values = value_offsets[row] as usize..value_offsets[row + 1] as usize;
                out.series.push(SeriesRow {
                    profile_type: profile_types.value(row).to_string(),
                    labels: Labels::from_pairs(
                        names
                            .zip(values)
                            .map(|(n, v)| (text(name_strings, n), text(value_strings, v))),
                    ),
                });
            }
        }
        "profiles" => {
            let (series, ids) = (table.u32s("series")?, table.strings("profile_id")?);
            let (times, durations) = (table.i64s("time_nanos")?, table.i64s("duration_nanos")?);
            let periods = table.i64s("period")?;
            for row in rows {
                out.profiles.push(ProfileRow {
                    series: series.value(row),
                    profile_id: ids.value(row).to_string(),
                    time_nanos: times.value(row),
                    duration_nanos: durations.value(row),
                    period: periods.value(row),
                });
            }
        }
        "samples" => {
            let (profiles, stacks) = (table.u32s("profile")?, table.u32s("stack")?);
            let values = table.i64s("value")?;
            let optional = |column: &str| -> Result<&StringArray> { table.strings(column) };
            let (span_id, span_name) = (optional("span_id")?, optional("span_name")?);
            let (trace_id, profile_id) = (optional("trace_id")?, optional("profile_id")?);
            let get = |array: &StringArray, row: usize| {
                array.is_valid(row).then(|| array.value(row).to_string())
            };
            let empty = Arc::new(SampleLabels::default());
            for row in rows {
                let labels = SampleLabels {
                    span_id: get(span_id, row),
                    span_name: get(span_name, row),
                    trace_id: get(trace_id, row),
                    profile_id: get(profile_id, row),
                };
                out.samples.push(SampleRow {
                    profile: profiles.value(row),
                    stack: stacks.value(row),
                    value: values.value(row),
                    labels: if labels == SampleLabels::default() {
                        Arc::clone(&empty)
                    } else {
                        Arc::new(labels)
                    },
                });
            }
        }
        "strings" => {
            let values = table.strings("value")?;
            Arc::make_mut(&mut out.symbols).strings =
                rows.map(|row| values.value(row).to_string()).collect();
        }
        "mappings" => {
            let (start, limit) = (table.u64s("memory_start")?, table.u64s("memory_limit")?);
            let offset = table.u64s("file_offset")?;
            let (filename, build_id) = (table.u32s("filename")?, table.u32s("build_id")?);
            Arc::make_mut(&mut out.symbols).mappings = rows
                .map(|row| Mapping {
                    memory_start: start.value(row),
                    memory_limit: limit.value(row),
                    file_offset: offset.value(row),
                    filename: filename.value(row),
                    build_id: build_id.value(row),
                })
                .collect();
        }
        "functions" => {
            let (name, system_name) = (table.u32s("name")?, table.u32s("system_name")?);
            let (filename, start_line) = (table.u32s("filename")?, table.i64s("start_line")?);
            Arc::make_mut(&mut out.symbols).functions = rows
                .map(|row| Function {
                    name: name.value(row),
                    system_name: system_name.value(row),
                    filename: filename.value(row),
                    start_line: start_line.value(row),
                })
                .collect();
        }
        "locations" => {
            let (mapping, address) = (table.u32s("mapping")?, table.u64s("address")?);
            let folded = table.bools("is_folded")?;
            // Offsets into the lists' values, read without building an array per row.
            let (function_offsets, functions) =
                table.lists("line_functions", |v| v.as_primitive_opt::<UInt32Type>())?;
            let (line_offsets, lines) =
                table.lists("line_numbers", |v| v.as_primitive_opt::<Int64Type>())?;
            let (functions, lines) = (functions.values(), lines.values());
            Arc::make_mut(&mut out.symbols).locations = rows
                .map(|row| {
                    let functions = &functions
                        [function_offsets[row] as usize..function_offsets[row + 1] as usize];
                    let lines = &lines[line_offsets[row] as usize..line_offsets[row + 1] as usize];
                    Location {
                        mapping: mapping.value(row),
                        address: address.value(row),
                        is_folded: folded.value(row),
                        lines: functions
                            .iter()
                            .copied()
                            .zip(lines.iter().copied())
                            .collect(),
                    }
                })
                .collect();
        }
        "stacks" => {
            let (parent, location) = (table.u32s("parent")?, table.u32s("location")?);
            Arc::make_mut(&mut out.symbols).stacks = rows
                .map(|row| (parent.value(row), location.value(row)))
                .collect();
        }
        other => return Err(BlockError::Corrupt(format!("unknown section {other}"))),
    }
    Ok(())
}

/// Checks every id so that readers can index without bounds checks failing.
pub(crate) fn check_references(data: &DatasetData) -> Result<()> {
    let corrupt = |what: String| {
        Err(BlockError::Corrupt(format!(
            "dataset {}/{}: {what}",
            data.tenant, data.service_name
        )))
    };
    let Symbols {
        strings,
        mappings,
        functions,
        locations,
        stacks,
    } = &*data.symbols;
    if strings.first().map(String::as_str) != Some("") {
        return corrupt("string 0 must be empty".to_string());
    }
    let string_ok = |id: u32| (id as usize) < strings.len();
    if !mappings
        .iter()
        .all(|m| string_ok(m.filename) && string_ok(m.build_id))
    {
        return corrupt("mapping refers to a missing string".to_string());
    }
    if !functions
        .iter()
        .all(|f| string_ok(f.name) && string_ok(f.system_name) && string_ok(f.filename))
    {
        return corrupt("function refers to a missing string".to_string());
    }
    let location_ok = |l: &Location| {
        (l.mapping as usize) <= mappings.len()
            && l.lines.iter().all(|(f, _)| (*f as usize) < functions.len())
    };
    if !locations.iter().all(location_ok) {
        return corrupt("location refers to a missing mapping or function".to_string());
    }
    for (i, &(parent, location)) in stacks.iter().enumerate() {
        if parent as usize > i || location as usize >= locations.len() {
            return corrupt(format!("stack node {} is malformed", i + 1));
        }
    }
    if !data
        .profiles
        .iter()
        .all(|p| (p.series as usize) < data.series.len())
    {
        return corrupt("profile refers to a missing series".to_string());
    }
    if !data
        .samples
        .iter()
        .all(|s| (s.profile as usize) < data.profiles.len() && s.stack as usize <= stacks.len())
    {
        return corrupt("sample refers to a missing profile or stack".to_string());
    }
    Ok(())
}
