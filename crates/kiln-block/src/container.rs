//! The object layout: regions of datasets, a JSON footer, and a fixed trailer.
//!
//! ```text
//! "KILNBLK1" | region 0 | ... | region n | footer (JSON) | footer length u32 LE | crc32 u32 LE | "KILNBLK1"
//! ```
//!
//! A segment holds all its datasets in one region; a compacted block gives each large dataset a
//! region of its own, so that a query fetches only the byte ranges of the datasets it needs (the
//! index keeps each dataset's region), and lets small datasets share one (see
//! [`SHARED_REGION_ROWS`]). Format 1 objects, written before regions, have their sections
//! directly in the object and are still read.

use std::collections::BTreeSet;

use bytes::Bytes;
use kiln_model::{BlockMeta, DatasetMeta};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::data::DatasetData;
use crate::region::{self, SectionRef};
use crate::sections::Codec;
use crate::{BlockError, Result, SegmentBuilder};

const MAGIC: &[u8; 8] = b"KILNBLK1";
const TRAILER_LEN: usize = 4 + 4 + MAGIC.len();
/// Format 2: regions. Format 1 had one set of sections for the whole object.
const FORMAT_VERSION: u32 = 2;

/// Where a segment (level 0, any tenants) lives, relative to the storage prefix.
pub fn object_path(shard: u32, id: &Ulid) -> String {
    format!("segments/{shard}/{id}/block.bin")
}

/// Where a compacted block of `tenant` lives, relative to the storage prefix.
pub fn block_path(shard: u32, tenant: &str, id: &Ulid) -> String {
    format!("blocks/{shard}/{tenant}/{id}/block.bin")
}

/// Where ingesters park the metadata of segments they could not register (one JSON
/// `BlockMeta` per object), relative to the storage prefix.
pub const RECOVERY_PREFIX: &str = "recovery";

/// The prefixes under which block objects live.
pub const OBJECT_PREFIXES: [&str; 2] = ["segments", "blocks"];

/// The recovery-area object of block `id`.
pub fn recovery_path(id: &str) -> String {
    format!("{RECOVERY_PREFIX}/{id}.json")
}

/// The block id (ULID) in the path of a segment or block object (`.../<ULID>/block.bin`).
pub fn block_id_of_path(path: &str) -> Option<Ulid> {
    let mut parts = path.rsplit('/');
    if parts.next()? != "block.bin" {
        return None;
    }
    Ulid::from_string(parts.next()?).ok()
}

#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    format_version: u32,
    /// Format 1 only: the object's sections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sections: Vec<SectionRef>,
    /// Format 2: the regions, in order.
    #[serde(default)]
    regions: Vec<RegionRef>,
    meta: BlockMeta,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct RegionRef {
    offset: u64,
    length: u64,
}

impl SegmentBuilder {
    /// Encodes the segment as one object and describes it; `None` when it holds no samples.
    pub fn finish(self, id: Ulid, shard: u32) -> Result<Option<(Bytes, BlockMeta)>> {
        encode_segment(self.into_datasets(), id, shard)
    }
}

/// Encodes `datasets` (any tenants) as one segment object in one region and describes it;
/// `None` when they hold no samples. Datasets are laid out by tenant, then service.
pub fn encode_segment(
    mut datasets: Vec<DatasetData>,
    id: Ulid,
    shard: u32,
) -> Result<Option<(Bytes, BlockMeta)>> {
    if datasets.iter().all(|d| d.samples.is_empty()) {
        return Ok(None);
    }
    datasets.sort_by(|a, b| (&a.tenant, &a.service_name).cmp(&(&b.tenant, &b.service_name)));
    let mut writer = ObjectWriter::new(id, object_path(shard, &id), shard, 0, "");
    writer.add_region(&datasets)?;
    writer.finish()
}

/// Small datasets of a compacted block share regions of up to about this many rows (of all their
/// tables, [`DatasetData::rows`]); a dataset this large or larger gets a region of its own.
///
/// Every region holds eight Parquet files, each with its own metadata and a compression codec
/// per column chunk to create when written and read. A service that pushes one small profile per
/// flush has a few thousand rows in a level-1 block, where a region of its own was mostly that
/// overhead: 20 segments of the small-profile workload (48 services) compacted into 2.6 MB with
/// a region per service and 1.36 MB with shared regions (0.89 MB all in one region), and
/// compaction spent a tenth of its time creating ZSTD contexts. A query of one service reads
/// the regions it shares (their samples pruned to its row groups), so sharing stops at one row
/// group's worth of rows.
pub const SHARED_REGION_ROWS: usize = 64 * 1024;

/// Writes an object region by region, so that a compactor holds one dataset (or one region of
/// small ones, [`SHARED_REGION_ROWS`]) at a time.
#[derive(Debug)]
pub struct ObjectWriter {
    body: Vec<u8>,
    regions: Vec<RegionRef>,
    meta: BlockMeta,
    /// Small datasets held until they fill a shared region, in the order they were added.
    pending: Vec<DatasetData>,
    pending_rows: usize,
}

impl ObjectWriter {
    /// An empty object at `path`: a segment (level 0, `tenant` empty) or a block of `tenant`.
    pub fn new(id: Ulid, path: String, shard: u32, level: u32, tenant: &str) -> Self {
        Self {
            body: MAGIC.to_vec(),
            regions: Vec::new(),
            meta: BlockMeta {
                id: id.to_string(),
                tenant: tenant.to_string(),
                path,
                shard,
                compaction_level: level,
                min_time_nanos: i64::MAX,
                max_time_nanos: i64::MIN,
                size_bytes: 0,
                datasets: Vec::new(),
            },
            pending: Vec::new(),
            pending_rows: 0,
        }
    }

    /// Adds one dataset after those added before, in a region of its own when it has
    /// [`SHARED_REGION_ROWS`] rows or more, else in a region shared with the small datasets
    /// added next to it (written once they fill it, or by [`ObjectWriter::finish`]).
    pub fn add_dataset(&mut self, dataset: DatasetData) -> Result<()> {
        let rows = dataset.rows();
        if self.pending_rows.saturating_add(rows) > SHARED_REGION_ROWS {
            self.write_pending()?;
        }
        self.pending_rows = self.pending_rows.saturating_add(rows);
        self.pending.push(dataset);
        if self.pending_rows >= SHARED_REGION_ROWS {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        self.add_region(&pending)
    }

    /// Appends one region holding `datasets` (after any held by [`ObjectWriter::add_dataset`]);
    /// nothing when the list is empty.
    pub fn add_region(&mut self, datasets: &[DatasetData]) -> Result<()> {
        if !self.pending.is_empty() {
            self.write_pending()?;
        }
        if datasets.is_empty() {
            return Ok(());
        }
        let codec = if self.meta.compaction_level == 0 {
            Codec::Lz4
        } else {
            Codec::Zstd
        };
        let (bytes, series) = region::encode(datasets, codec)?;
        let region = RegionRef {
            offset: self.body.len() as u64,
            length: bytes.len() as u64,
        };
        self.body.extend_from_slice(&bytes);
        self.regions.push(region);
        for data in datasets {
            let mut meta = dataset_meta(data);
            meta.region_offset = region.offset;
            meta.region_length = region.length;
            meta.series_offset = series.start;
            meta.series_length = series.end - series.start;
            self.meta.min_time_nanos = self.meta.min_time_nanos.min(meta.min_time_nanos);
            self.meta.max_time_nanos = self.meta.max_time_nanos.max(meta.max_time_nanos);
            self.meta.datasets.push(meta);
        }
        Ok(())
    }

    /// True while no dataset was added.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty() && self.pending.is_empty()
    }

    /// Bytes written so far (without the datasets still held).
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// The object and its metadata; `None` when no dataset was added.
    pub fn finish(mut self) -> Result<Option<(Bytes, BlockMeta)>> {
        self.write_pending()?;
        let Self {
            mut body,
            regions,
            mut meta,
            ..
        } = self;
        if regions.is_empty() {
            return Ok(None);
        }
        // The footer holds the final size, which depends on the footer's own length: encode
        // once to learn it, then again with the size filled in (digits only grow, so retry).
        loop {
            let footer = serde_json::to_vec(&Footer {
                format_version: FORMAT_VERSION,
                sections: Vec::new(),
                regions: regions.clone(),
                meta: meta.clone(),
            })
            .map_err(|e| BlockError::Corrupt(format!("cannot encode footer: {e}")))?;
            let total = (body.len() + footer.len() + TRAILER_LEN) as u64;
            if total != meta.size_bytes {
                meta.size_bytes = total;
                continue;
            }
            body.extend_from_slice(&footer);
            body.extend_from_slice(&(footer.len() as u32).to_le_bytes());
            body.extend_from_slice(&crc32fast::hash(&footer).to_le_bytes());
            body.extend_from_slice(MAGIC);
            return Ok(Some((Bytes::from(body), meta)));
        }
    }
}

fn dataset_meta(data: &DatasetData) -> DatasetMeta {
    let times = data.profiles.iter().map(|p| p.time_nanos);
    let profile_types: BTreeSet<&str> = data
        .series
        .iter()
        .map(|s| s.profile_type.as_str())
        .collect();
    let label_names: BTreeSet<&str> = data
        .series
        .iter()
        .flat_map(|s| s.labels.iter().map(|(n, _)| n))
        .collect();
    DatasetMeta {
        tenant: data.tenant.clone(),
        service_name: data.service_name.clone(),
        min_time_nanos: times.clone().min().unwrap_or(0),
        max_time_nanos: times.max().unwrap_or(0),
        profile_types: profile_types.into_iter().map(String::from).collect(),
        label_names: label_names.into_iter().map(String::from).collect(),
        series: data.series.len() as u64,
        profiles: data.profiles.len() as u64,
        samples: data.samples.len() as u64,
        ..DatasetMeta::default()
    }
}

/// A parsed segment or block object, held whole.
#[derive(Debug)]
pub struct SegmentReader {
    data: Bytes,
    footer: Footer,
    footer_start: usize,
}

impl SegmentReader {
    /// Parses the trailer and footer of a whole object.
    pub fn parse(data: Bytes) -> Result<Self> {
        let corrupt = |what: &str| BlockError::Corrupt(what.to_string());
        if data.len() < MAGIC.len() + TRAILER_LEN
            || !data.starts_with(MAGIC)
            || !data.ends_with(MAGIC)
        {
            return Err(corrupt("missing magic; not a kiln block"));
        }
        let trailer = &data[data.len() - TRAILER_LEN..];
        let footer_len = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
        let footer_end = data.len() - TRAILER_LEN;
        let footer_start = footer_end
            .checked_sub(footer_len)
            .filter(|&start| start >= MAGIC.len())
            .ok_or_else(|| corrupt("footer length out of range"))?;
        let footer_bytes = &data[footer_start..footer_end];
        if crc32fast::hash(footer_bytes) != crc {
            return Err(corrupt("footer checksum mismatch"));
        }
        let footer: Footer = serde_json::from_slice(footer_bytes)
            .map_err(|e| BlockError::Corrupt(format!("footer does not parse: {e}")))?;
        if !(1..=FORMAT_VERSION).contains(&footer.format_version) {
            return Err(BlockError::Corrupt(format!(
                "unsupported format version {}",
                footer.format_version
            )));
        }
        for region in &footer.regions {
            let end = region.offset.checked_add(region.length);
            if region.offset < MAGIC.len() as u64 || end.is_none_or(|e| e > footer_start as u64) {
                return Err(BlockError::Corrupt(format!(
                    "region at {} of {} bytes out of range",
                    region.offset, region.length
                )));
            }
        }
        Ok(Self {
            data,
            footer,
            footer_start,
        })
    }

    /// The block's metadata.
    pub fn meta(&self) -> &BlockMeta {
        &self.footer.meta
    }

    /// Decodes every dataset, in the order of the metadata's datasets.
    pub fn read_all(&self) -> Result<Vec<DatasetData>> {
        if self.footer.format_version == 1 {
            let mut datasets: Vec<DatasetData> = self
                .footer
                .meta
                .datasets
                .iter()
                .map(|d| DatasetData {
                    tenant: d.tenant.clone(),
                    service_name: d.service_name.clone(),
                    ..DatasetData::default()
                })
                .collect();
            let sections = region::slice_sections(
                &self.data,
                &self.footer.sections,
                self.footer_start as u64,
            )?;
            crate::sections::decode(sections, &mut datasets)?;
            return Ok(datasets);
        }
        let mut datasets = Vec::with_capacity(self.footer.meta.datasets.len());
        for region in &self.footer.regions {
            let bytes = self
                .data
                .slice(region.offset as usize..(region.offset + region.length) as usize);
            datasets.extend(region::decode_region(bytes)?);
        }
        Ok(datasets)
    }
}
