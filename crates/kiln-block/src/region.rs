//! Regions: the part of an object that holds some of its datasets, readable on its own.
//!
//! ```text
//! section 0 | ... | section n | table of contents (JSON) | length u32 LE | CRC-32 u32 LE
//! ```
//!
//! The table of contents names the region's datasets, in the order of the `dataset` column of
//! its sections, and locates each section relative to the region's start. A reader that knows a
//! region's byte range (from the block index) fetches exactly those bytes and decodes them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::data::DatasetData;
use crate::sections::{self, Codec, SECTIONS};
use crate::{BlockError, Result};

/// Bytes after the table of contents: its length and its CRC.
const TOC_TRAILER_LEN: usize = 8;

/// The longest table of contents a reader accepts: a segment's names each of its datasets in
/// about 60 bytes, so this allows a quarter of a million of them, and a damaged length never
/// makes a reader fetch more.
const MAX_TOC_BYTES: u64 = 16 << 20;

/// The table of contents at the end of a region.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RegionToc {
    /// (tenant, service) of each dataset, in `dataset` column order.
    datasets: Vec<(String, String)>,
    sections: Vec<SectionRef>,
}

/// Where a section lies, relative to the start of its region (or, in format 1, of its object).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SectionRef {
    pub(crate) name: String,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// Encodes `datasets` as one region with `codec`; returns it with the byte range of its series
/// section (relative to the region's start).
pub(crate) fn encode(
    datasets: &[DatasetData],
    codec: Codec,
) -> Result<(Vec<u8>, std::ops::Range<u64>)> {
    let mut body = Vec::new();
    let mut refs = Vec::with_capacity(SECTIONS.len());
    for (name, bytes) in sections::encode(datasets, codec)? {
        refs.push(SectionRef {
            name: name.to_string(),
            offset: body.len() as u64,
            length: bytes.len() as u64,
        });
        body.extend_from_slice(&bytes);
    }
    let series = refs
        .iter()
        .find(|r| r.name == "series")
        .map(|r| r.offset..r.offset + r.length)
        .ok_or_else(|| corrupt("no series section was written".to_string()))?;
    let toc = serde_json::to_vec(&RegionToc {
        datasets: datasets
            .iter()
            .map(|d| (d.tenant.clone(), d.service_name.clone()))
            .collect(),
        sections: refs,
    })
    .map_err(|e| BlockError::Corrupt(format!("cannot encode region table of contents: {e}")))?;
    let toc_len = u32::try_from(toc.len()).map_err(|_| {
        BlockError::Corrupt(format!("region table of contents of {} bytes", toc.len()))
    })?;
    body.extend_from_slice(&toc);
    body.extend_from_slice(&toc_len.to_le_bytes());
    body.extend_from_slice(&crc32fast::hash(&toc).to_le_bytes());
    Ok((body, series))
}

fn corrupt(what: String) -> BlockError {
    BlockError::Corrupt(format!("region: {what}"))
}

/// What the last bytes of a region tell about its table of contents.
pub(crate) enum TocTail {
    /// The table of contents, and where it starts in the region.
    Complete(RegionToc, u64),
    /// The tail was too short: the last this many bytes of the region hold the table of
    /// contents and its trailer.
    Needs(u64),
}

/// Reads the table of contents from `tail`, the last bytes of a region of `region_len` bytes.
pub(crate) fn toc_from_tail(tail: &[u8], region_len: u64) -> Result<TocTail> {
    let body_len = tail
        .len()
        .checked_sub(TOC_TRAILER_LEN)
        .ok_or_else(|| corrupt(format!("{} bytes is too short", tail.len())))?;
    let trailer = &tail[body_len..];
    let toc_len = u64::from(u32::from_le_bytes(
        trailer[0..4].try_into().expect("4 bytes"),
    ));
    let crc = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
    let needed = toc_len + TOC_TRAILER_LEN as u64;
    if needed > region_len || toc_len > MAX_TOC_BYTES {
        return Err(corrupt(format!(
            "table of contents of {toc_len} bytes out of range"
        )));
    }
    let Some(toc_start) = (body_len as u64).checked_sub(toc_len) else {
        return Ok(TocTail::Needs(needed));
    };
    let toc_start = toc_start as usize;
    let toc_bytes = &tail[toc_start..body_len];
    if crc32fast::hash(toc_bytes) != crc {
        return Err(corrupt("table of contents checksum mismatch".to_string()));
    }
    let toc: RegionToc = serde_json::from_slice(toc_bytes)
        .map_err(|e| corrupt(format!("table of contents does not parse: {e}")))?;
    Ok(TocTail::Complete(toc, region_len - needed))
}

impl RegionToc {
    /// An estimate of the bytes the table of contents holds in memory.
    pub(crate) fn memory_bytes(&self) -> usize {
        let names: usize = self
            .datasets
            .iter()
            .map(|(tenant, service)| tenant.len() + service.len() + 48)
            .sum();
        let sections: usize = self.sections.iter().map(|s| s.name.len() + 40).sum();
        names + sections
    }

    /// Empty datasets named as the table of contents names them, in section order.
    fn datasets(&self) -> Vec<DatasetData> {
        self.datasets
            .iter()
            .map(|(tenant, service_name)| DatasetData {
                tenant: tenant.clone(),
                service_name: service_name.clone(),
                ..DatasetData::default()
            })
            .collect()
    }

    /// The byte range within the region from the start of the first of `names` to the end of
    /// the last (sections written one after another), checked to end before the table of
    /// contents (at `toc_start`).
    pub(crate) fn section_span(
        &self,
        names: &[&str],
        toc_start: u64,
    ) -> Result<std::ops::Range<u64>> {
        let mut span: Option<std::ops::Range<u64>> = None;
        for name in names {
            let section = self
                .sections
                .iter()
                .find(|s| s.name == *name)
                .ok_or_else(|| corrupt(format!("missing section {name}")))?;
            let end = section
                .offset
                .checked_add(section.length)
                .filter(|&end| end <= toc_start)
                .ok_or_else(|| corrupt(format!("section {name} out of range")))?;
            span = Some(match span {
                None => section.offset..end,
                Some(span) => span.start.min(section.offset)..span.end.max(end),
            });
        }
        span.ok_or_else(|| corrupt("no section asked for".to_string()))
    }

    /// The number of datasets the region holds.
    pub(crate) fn dataset_count(&self) -> usize {
        self.datasets.len()
    }

    /// The named sections, sliced out of `bytes`, which hold the region from offset `start`.
    pub(crate) fn slice_named(
        &self,
        bytes: &Bytes,
        start: u64,
        names: &[&'static str],
    ) -> Result<Vec<(&'static str, Bytes)>> {
        let mut out = Vec::with_capacity(names.len());
        for &name in names {
            let section = self
                .sections
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| corrupt(format!("missing section {name}")))?;
            let from = section.offset.checked_sub(start);
            let to = from.and_then(|from| from.checked_add(section.length));
            match (from, to) {
                (Some(from), Some(to)) if to <= bytes.len() as u64 => {
                    out.push((name, bytes.slice(from as usize..to as usize)));
                }
                _ => return Err(corrupt(format!("section {name} out of range"))),
            }
        }
        Ok(out)
    }

    /// Decodes the named sections (from [`Self::slice_named`]) into empty datasets named as
    /// the table of contents names them; their references are not checked.
    pub(crate) fn decode_named(
        &self,
        sections: Vec<(&'static str, Bytes)>,
    ) -> Result<Vec<DatasetData>> {
        let mut datasets = self.datasets();
        sections::decode_unchecked(sections, &mut datasets)?;
        Ok(datasets)
    }
}

/// Decodes every dataset of a region, given exactly its bytes.
pub fn decode_region(region: Bytes) -> Result<Vec<DatasetData>> {
    let TocTail::Complete(toc, toc_start) = toc_from_tail(&region, region.len() as u64)? else {
        return Err(corrupt("table of contents out of range".to_string()));
    };
    let mut datasets = toc.datasets();
    let sections = slice_sections(&region, &toc.sections, toc_start)?;
    sections::decode(sections, &mut datasets)?;
    Ok(datasets)
}

/// The sections named in `refs`, sliced out of `data`; each must end before `limit`.
pub(crate) fn slice_sections(
    data: &Bytes,
    refs: &[SectionRef],
    limit: u64,
) -> Result<Vec<(&'static str, Bytes)>> {
    let mut sections = Vec::with_capacity(SECTIONS.len());
    for name in SECTIONS {
        let section = refs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BlockError::Corrupt(format!("missing section {name}")))?;
        let end = section
            .offset
            .checked_add(section.length)
            .filter(|&end| end <= limit)
            .ok_or_else(|| BlockError::Corrupt(format!("section {name} out of range")))?;
        sections.push((name, data.slice(section.offset as usize..end as usize)));
    }
    Ok(sections)
}
