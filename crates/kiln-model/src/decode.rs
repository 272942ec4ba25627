use std::io::Read;

use bytes::Bytes;
use flate2::read::GzDecoder;
use kiln_proto::google::v1::{
    Function, Label, Line, Location, Mapping, Profile, Sample, ValueType,
};

use crate::pprof_wire::{Value, Wire, decode_profile};
use crate::{LimitExceeded, ModelError, Result};

/// Limits applied while decoding. 0 turns a count or memory limit off.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// The largest decompressed payload accepted, in bytes; with a [`DecodeBudget`], for all the
    /// payloads of one request together.
    pub max_decompressed_bytes: usize,
    /// Samples per pprof, counted in the wire format before decoding (0: no limit).
    pub max_samples_per_profile: usize,
    /// Estimated memory of the decoded pprofs of one request, in bytes, known from the wire
    /// format before decoding (0: no limit).
    pub max_decoded_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 256 << 20,
            max_samples_per_profile: 0,
            max_decoded_bytes: 0,
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Returns `data` gunzipped when it starts with the gzip magic, as is otherwise, and fails
/// once the output would exceed `max_bytes` (so a gzip bomb costs at most that much memory).
pub fn decompress(data: Bytes, max_bytes: usize) -> Result<Bytes> {
    if !data.starts_with(&GZIP_MAGIC) {
        if data.len() > max_bytes {
            return Err(ModelError::DecompressedTooLarge { limit: max_bytes });
        }
        return Ok(data);
    }
    let mut out = Vec::with_capacity((data.len() * 4).min(max_bytes));
    let mut decoder = GzDecoder::new(&data[..]).take(max_bytes as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| ModelError::Gzip(e.to_string()))?;
    if out.len() > max_bytes {
        return Err(ModelError::DecompressedTooLarge { limit: max_bytes });
    }
    Ok(Bytes::from(out))
}

/// Decodes a pprof profile, gzipped or not, within `limits` (as a request of one profile).
pub fn decode_pprof(data: Bytes, limits: DecodeLimits) -> Result<Profile> {
    DecodeBudget::new(limits).decode_pprof(data)
}

/// What the payloads of one request may still cost: every payload decompressed through it
/// counts against `max_decompressed_bytes`, and every pprof decoded through it against
/// `max_decoded_bytes`, so that a request of many small gzipped profiles costs no more than one
/// large one.
#[derive(Clone, Debug)]
pub struct DecodeBudget {
    limits: DecodeLimits,
    decompressed: usize,
    decoded: u64,
}

impl DecodeBudget {
    /// A budget with nothing spent.
    pub fn new(limits: DecodeLimits) -> Self {
        Self {
            limits,
            decompressed: 0,
            decoded: 0,
        }
    }

    /// The limits of this budget.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// [`decompress`] within what is left of `max_decompressed_bytes`.
    pub fn decompress(&mut self, data: Bytes) -> Result<Bytes> {
        let limit = self.limits.max_decompressed_bytes;
        let left = limit.saturating_sub(self.decompressed);
        let out = decompress(data, left).map_err(|e| match e {
            ModelError::DecompressedTooLarge { .. } => ModelError::DecompressedTooLarge { limit },
            other => other,
        })?;
        self.decompressed += out.len();
        Ok(out)
    }

    /// Decodes a pprof, gzipped or not: decompressed within the budget, then counted in the
    /// wire format ([`PprofCounts`]) and refused before decoding when it has more samples than
    /// `max_samples_per_profile` or would take the request's decoded profiles over
    /// `max_decoded_bytes`.
    pub fn decode_pprof(&mut self, data: Bytes) -> Result<Profile> {
        let raw = self.decompress(data)?;
        let counts = PprofCounts::scan(&raw);
        let limit = self.limits.max_samples_per_profile;
        if limit > 0 && counts.samples > limit {
            return Err(LimitExceeded::Samples {
                samples: counts.samples,
                limit,
            }
            .into());
        }
        self.charge(counts.decoded_bytes())?;
        decode_profile(&raw, &counts).map_err(|reason| ModelError::Protobuf {
            what: "pprof",
            reason,
        })
    }

    /// Counts `bytes` of decoded data against `max_decoded_bytes`.
    pub fn charge(&mut self, bytes: u64) -> Result<()> {
        self.decoded = self.decoded.saturating_add(bytes);
        let limit = self.limits.max_decoded_bytes;
        if limit > 0 && self.decoded > limit as u64 {
            return Err(LimitExceeded::DecodedBytes {
                bytes: self.decoded,
                limit,
            }
            .into());
        }
        Ok(())
    }
}

/// What a pprof holds, counted in its protobuf wire format without decoding or allocating: every
/// repeated field an input can multiply. A malformed input is counted up to where it breaks
/// (decoding then reports the error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PprofCounts {
    /// `sample` entries.
    pub samples: usize,
    /// Location ids of all samples.
    pub location_ids: u64,
    /// Values of all samples.
    pub values: u64,
    /// Labels of all samples.
    pub labels: u64,
    /// `sample_type` entries (and `period_type`).
    pub value_types: u64,
    /// `mapping` entries.
    pub mappings: u64,
    /// `location` entries.
    pub locations: u64,
    /// Lines of all locations.
    pub lines: u64,
    /// `function` entries.
    pub functions: u64,
    /// `string_table` entries.
    pub strings: u64,
    /// Bytes of all strings.
    pub string_bytes: u64,
    /// `comment` entries.
    pub comments: u64,
}

impl PprofCounts {
    /// Counts the entries of an uncompressed pprof.
    pub fn scan(data: &[u8]) -> Self {
        let mut counts = Self::default();
        let _ = counts.scan_profile(data);
        counts
    }

    /// The heap memory the decoded [`Profile`] takes: each entry's struct, each id and value,
    /// each string's bytes (the vectors' spare capacity not included).
    pub fn decoded_bytes(&self) -> u64 {
        fn size<T>() -> u64 {
            std::mem::size_of::<T>() as u64
        }
        self.samples as u64 * size::<Sample>()
            + (self.location_ids + self.values + self.comments) * 8
            + self.labels * size::<Label>()
            + self.value_types * size::<ValueType>()
            + self.mappings * size::<Mapping>()
            + self.locations * size::<Location>()
            + self.lines * size::<Line>()
            + self.functions * size::<Function>()
            + self.strings * size::<String>()
            + self.string_bytes
    }

    fn scan_profile(&mut self, data: &[u8]) -> Option<()> {
        let mut wire = Wire(data);
        while let Some((tag, value)) = wire.field()? {
            match (tag, value) {
                (1 | 11, Value::Bytes(_)) => self.value_types += 1,
                (2, Value::Bytes(sample)) => {
                    self.samples += 1;
                    self.scan_sample(sample)?;
                }
                (3, Value::Bytes(_)) => self.mappings += 1,
                (4, Value::Bytes(location)) => {
                    self.locations += 1;
                    let mut fields = Wire(location);
                    while let Some((tag, value)) = fields.field()? {
                        if let (4, Value::Bytes(_)) = (tag, value) {
                            self.lines += 1;
                        }
                    }
                }
                (5, Value::Bytes(_)) => self.functions += 1,
                (6, Value::Bytes(text)) => {
                    self.strings += 1;
                    self.string_bytes += text.len() as u64;
                }
                (13, value) => self.comments += value.varints(),
                _ => {}
            }
        }
        Some(())
    }

    fn scan_sample(&mut self, sample: &[u8]) -> Option<()> {
        let mut fields = Wire(sample);
        while let Some((tag, value)) = fields.field()? {
            match (tag, value) {
                (1, value) => self.location_ids += value.varints(),
                (2, value) => self.values += value.varints(),
                (3, Value::Bytes(_)) => self.labels += 1,
                _ => {}
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};
    use prost::Message;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn gunzips_within_the_limit() {
        let plain = vec![7u8; 1000];
        assert_eq!(
            decompress(gzip(&plain), 1000).unwrap(),
            Bytes::from(plain.clone())
        );
        assert_eq!(decompress(Bytes::from(plain), 1000).unwrap().len(), 1000);
    }

    #[test]
    fn stops_gzip_bombs_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        let err = decompress(bomb, 1 << 20).unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn reports_corrupt_gzip() {
        let mut data = gzip(b"hello world").to_vec();
        let mid = data.len() / 2;
        data.truncate(mid);
        let err = decompress(Bytes::from(data), 1000).unwrap_err();
        assert!(matches!(err, ModelError::Gzip(_)), "{err}");
    }

    #[test]
    fn reports_malformed_protobuf() {
        let err = decode_pprof(
            Bytes::from_static(&[0xff, 0xff, 0xff]),
            DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("malformed pprof protobuf"),
            "{err}"
        );
    }

    #[test]
    fn counts_match_the_decoded_profiles() {
        for (name, gzipped) in kiln_testkit::testdata::pprof_files() {
            let raw = decompress(Bytes::from(gzipped), 64 << 20).unwrap();
            let counts = PprofCounts::scan(&raw);
            let p = Profile::decode(raw).unwrap();
            let sum = |f: fn(&Sample) -> usize| p.sample.iter().map(f).sum::<usize>() as u64;
            let expected = PprofCounts {
                samples: p.sample.len(),
                location_ids: sum(|s| s.location_id.len()),
                values: sum(|s| s.value.len()),
                labels: sum(|s| s.label.len()),
                value_types: (p.sample_type.len() + usize::from(p.period_type.is_some())) as u64,
                mappings: p.mapping.len() as u64,
                locations: p.location.len() as u64,
                lines: p.location.iter().map(|l| l.line.len() as u64).sum(),
                functions: p.function.len() as u64,
                strings: p.string_table.len() as u64,
                string_bytes: p.string_table.iter().map(|s| s.len() as u64).sum(),
                comments: p.comment.len() as u64,
            };
            assert_eq!(counts, expected, "{name}");
        }
    }

    /// 256 MiB of empty samples (`12 00`) gzip to about 256 KiB and would decode into 128 M
    /// samples: refused from the counts, before anything is decoded.
    #[test]
    fn empty_samples_are_refused_before_decoding() {
        let bomb = gzip(&[0x12, 0x00].repeat(1 << 20));
        let limits = DecodeLimits {
            max_samples_per_profile: 16_000,
            ..DecodeLimits::default()
        };
        let err = decode_pprof(bomb.clone(), limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "profile has 1048576 samples, over max_samples_per_profile 16000"
        );
        let limits = DecodeLimits {
            max_decoded_bytes: 1 << 20,
            ..DecodeLimits::default()
        };
        let err = decode_pprof(bomb, limits).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("bytes, over max_decoded_bytes 1048576"),
            "{err}"
        );
    }

    #[test]
    fn a_budget_counts_every_payload_of_a_request() {
        let limits = DecodeLimits {
            max_decompressed_bytes: 1500,
            ..DecodeLimits::default()
        };
        let mut budget = DecodeBudget::new(limits);
        assert_eq!(budget.decompress(gzip(&[1u8; 1000])).unwrap().len(), 1000);
        let err = budget.decompress(gzip(&[1u8; 1000])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decompressed body exceeds max_decompressed_bytes of 1500 bytes"
        );
        let mut budget = DecodeBudget::new(DecodeLimits {
            max_decoded_bytes: 100,
            ..DecodeLimits::default()
        });
        budget.charge(60).unwrap();
        assert!(budget.charge(60).is_err());
    }

    #[test]
    fn malformed_input_is_counted_up_to_the_break() {
        let mut data = [0x12, 0x00].repeat(10);
        data.extend([0x12, 0x05, 0x00]);
        assert_eq!(PprofCounts::scan(&data).samples, 10);
        // A group (wire type 3) of an unknown field is skipped as prost skips it.
        let grouped = [0x7b, 0x08, 0x01, 0x7c, 0x12, 0x00];
        assert_eq!(PprofCounts::scan(&grouped).samples, 1);
        assert_eq!(Profile::decode(&grouped[..]).unwrap().sample.len(), 1);
    }
}
