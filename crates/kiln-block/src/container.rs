//! The object layout: sections, a JSON footer, and a fixed trailer.
//!
//! ```text
//! "KILNBLK1" | section 0 | ... | section n | footer (JSON) | footer length u32 LE | crc32 u32 LE | "KILNBLK1"
//! ```

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::data::DatasetData;
use crate::sections::{self, SECTIONS};
use crate::{BlockError, Result, SegmentBuilder};
use kiln_model::{BlockMeta, DatasetMeta};

const MAGIC: &[u8; 8] = b"KILNBLK1";
const TRAILER_LEN: usize = 4 + 4 + MAGIC.len();
const FORMAT_VERSION: u32 = 1;

/// Where a segment lives, relative to the storage prefix.
pub fn object_path(shard: u32, id: &Ulid) -> String {
    format!("segments/{shard}/{id}/block.bin")
}

#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    format_version: u32,
    sections: Vec<SectionRef>,
    meta: BlockMeta,
}

#[derive(Debug, Serialize, Deserialize)]
struct SectionRef {
    name: String,
    offset: u64,
    length: u64,
}

impl SegmentBuilder {
    /// Encodes the segment as one object and describes it; `None` when it holds no samples.
    pub fn finish(self, id: Ulid, shard: u32) -> Result<Option<(Bytes, BlockMeta)>> {
        encode_segment(self.into_datasets(), id, shard)
    }
}

/// Encodes `datasets` as one segment object and describes it; `None` when they hold no samples.
/// Datasets are laid out by tenant, then service, for a stable layout.
pub fn encode_segment(
    mut datasets: Vec<DatasetData>,
    id: Ulid,
    shard: u32,
) -> Result<Option<(Bytes, BlockMeta)>> {
    if datasets.iter().all(|d| d.samples.is_empty()) {
        return Ok(None);
    }
    datasets.sort_by(|a, b| (&a.tenant, &a.service_name).cmp(&(&b.tenant, &b.service_name)));
    let mut body = MAGIC.to_vec();
    let mut refs = Vec::new();
    for (name, bytes) in sections::encode(&datasets)? {
        refs.push(SectionRef {
            name: name.to_string(),
            offset: body.len() as u64,
            length: bytes.len() as u64,
        });
        body.extend_from_slice(&bytes);
    }
    let mut meta = BlockMeta {
        id: id.to_string(),
        path: object_path(shard, &id),
        shard,
        compaction_level: 0,
        min_time_nanos: i64::MAX,
        max_time_nanos: i64::MIN,
        size_bytes: 0,
        datasets: datasets.iter().map(dataset_meta).collect(),
    };
    for dataset in &meta.datasets {
        meta.min_time_nanos = meta.min_time_nanos.min(dataset.min_time_nanos);
        meta.max_time_nanos = meta.max_time_nanos.max(dataset.max_time_nanos);
    }
    // The footer holds the final size, which depends on the footer's own length: encode
    // once to learn it, then again with the size filled in (digits only grow, so retry).
    loop {
        let footer = serde_json::to_vec(&Footer {
            format_version: FORMAT_VERSION,
            sections: refs
                .iter()
                .map(|r| SectionRef {
                    name: r.name.clone(),
                    ..*r
                })
                .collect(),
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
    }
}

/// A parsed segment or block object.
#[derive(Debug)]
pub struct SegmentReader {
    data: Bytes,
    footer: Footer,
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
        if footer.format_version != FORMAT_VERSION {
            return Err(BlockError::Corrupt(format!(
                "unsupported format version {}",
                footer.format_version
            )));
        }
        for section in &footer.sections {
            let end = section.offset.checked_add(section.length);
            if section.offset < MAGIC.len() as u64 || end.is_none_or(|e| e > footer_start as u64) {
                return Err(BlockError::Corrupt(format!(
                    "section {} out of range",
                    section.name
                )));
            }
        }
        Ok(Self { data, footer })
    }

    /// The block's metadata.
    pub fn meta(&self) -> &BlockMeta {
        &self.footer.meta
    }

    /// Decodes every dataset.
    pub fn read_all(&self) -> Result<Vec<DatasetData>> {
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
        let mut sections = Vec::new();
        for name in SECTIONS {
            let section = self
                .footer
                .sections
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| BlockError::Corrupt(format!("missing section {name}")))?;
            let range = section.offset as usize..(section.offset + section.length) as usize;
            sections.push((name, self.data.slice(range)));
        }
        sections::decode(sections, &mut datasets)?;
        Ok(datasets)
    }
}
