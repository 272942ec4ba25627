//! pprof's protobuf wire format read directly: the field cursor that [`PprofCounts`] counts
//! with, and [`decode_profile`], which decodes a [`Profile`] with its vectors allocated at their
//! final sizes.
//!
//! prost's generated decoder grows every repeated field one element at a time: each sample's
//! packed location ids went through four or five reallocations for a stack 30 frames deep, and
//! the sample, location and string vectors were copied at every doubling (a fifth of prost's time
//! in `perf`, docs/benchmarks.md). Here the profile's vectors take their sizes from
//! [`PprofCounts`], and a packed field its length from its bytes, before the first element is
//! decoded. The nested messages with no repeated scalars (value types, labels, mappings,
//! locations and their lines, functions) are still decoded by prost. What is accepted and what
//! is refused is prost's, field for field (a test decodes thousands of corrupted profiles both
//! ways and compares).

use kiln_proto::google::v1::{Function, Label, Location, Mapping, Profile, Sample, ValueType};
use prost::Message;

use crate::PprofCounts;

/// One field's payload in the protobuf wire format.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
    Group,
}

impl Value<'_> {
    /// The number of varints in a repeated integer field's occurrence: 1 unpacked, the count of
    /// final bytes when packed.
    pub(crate) fn varints(self) -> u64 {
        match self {
            Value::Varint(_) => 1,
            Value::Bytes(packed) => packed_len(packed) as u64,
            Value::Fixed | Value::Group => 0,
        }
    }
}

/// The number of varints a packed field holds (a malformed last one counted or not).
fn packed_len(packed: &[u8]) -> usize {
    packed.iter().filter(|b| **b < 0x80).count()
}

/// A cursor over protobuf fields; `None` where the input is malformed (as prost decides it).
pub(crate) struct Wire<'a>(pub(crate) &'a [u8]);

impl<'a> Wire<'a> {
    /// A varint of at most ten bytes whose tenth byte is 0 or 1, as prost accepts them.
    #[inline]
    fn varint(&mut self) -> Option<u64> {
        // Most varints of a pprof (ids, string indices, small values) are one byte.
        if let Some((&byte, rest)) = self.0.split_first()
            && byte < 0x80
        {
            self.0 = rest;
            return Some(u64::from(byte));
        }
        self.long_varint()
    }

    fn long_varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(value);
            }
        }
        None
    }

    #[inline]
    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.0.len())?;
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    /// A field key as (tag, wire type): refused over `u32::MAX`, with tag 0 or wire type 6 or 7.
    #[inline]
    fn key(&mut self) -> Option<(u64, u64)> {
        let key = self.varint()?;
        let (tag, wire_type) = (key >> 3, key & 7);
        (key <= u64::from(u32::MAX) && tag > 0 && wire_type <= 5).then_some((tag, wire_type))
    }

    /// The next field: `Some(None)` at the end, `None` when malformed.
    #[inline]
    pub(crate) fn field(&mut self) -> Option<Option<(u64, Value<'a>)>> {
        if self.0.is_empty() {
            return Some(None);
        }
        let (tag, wire_type) = self.key()?;
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            3 => {
                self.skip_group(tag)?;
                Value::Group
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return None,
        };
        Some(Some((tag, value)))
    }

    /// Skips a group's fields up to its end (groups nest; prost allows 100 levels).
    fn skip_group(&mut self, tag: u64) -> Option<()> {
        let mut open = vec![tag];
        while let Some(&current) = open.last() {
            if open.len() > 100 {
                return None;
            }
            let (tag, wire_type) = self.key()?;
            match wire_type {
                3 => open.push(tag),
                4 if tag == current => {
                    open.pop();
                }
                4 => return None,
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let len = self.varint()?;
                    self.take(len)?;
                }
                _ => {
                    self.take(4)?;
                }
            }
        }
        Some(())
    }
}

/// Why a pprof could not be decoded.
type Reason = String;

/// Decodes an uncompressed pprof whose entries `counts` counted (a count too low only costs a
/// reallocation). Accepts and refuses exactly what prost's `Profile::decode` does.
pub(crate) fn decode_profile(data: &[u8], counts: &PprofCounts) -> Result<Profile, Reason> {
    let capacity = |count: u64| usize::try_from(count).unwrap_or(0);
    let mut profile = Profile {
        sample_type: Vec::with_capacity(capacity(counts.value_types)),
        sample: Vec::with_capacity(counts.samples),
        mapping: Vec::with_capacity(capacity(counts.mappings)),
        location: Vec::with_capacity(capacity(counts.locations)),
        function: Vec::with_capacity(capacity(counts.functions)),
        string_table: Vec::with_capacity(capacity(counts.strings)),
        ..Profile::default()
    };
    let mut wire = Wire(data);
    while let Some((tag, value)) = next(&mut wire)? {
        match tag {
            1 => profile.sample_type.push(message::<ValueType>(tag, value)?),
            2 => profile.sample.push(sample(bytes(tag, value)?)?),
            3 => profile.mapping.push(message::<Mapping>(tag, value)?),
            4 => profile.location.push(message::<Location>(tag, value)?),
            5 => profile.function.push(message::<Function>(tag, value)?),
            6 => {
                let text = std::str::from_utf8(bytes(tag, value)?)
                    .map_err(|_| "string_table entry is not UTF-8".to_string())?;
                profile.string_table.push(text.to_string());
            }
            7 => profile.drop_frames = int(tag, value)?,
            8 => profile.keep_frames = int(tag, value)?,
            9 => profile.time_nanos = int(tag, value)?,
            10 => profile.duration_nanos = int(tag, value)?,
            11 => {
                // A message field given twice is merged, as prost merges it.
                let period_type = profile.period_type.get_or_insert_with(ValueType::default);
                period_type
                    .merge(bytes(tag, value)?)
                    .map_err(|e| e.to_string())?;
            }
            12 => profile.period = int(tag, value)?,
            13 => repeated(tag, value, &mut profile.comment, |v| v as i64)?,
            14 => profile.default_sample_type = int(tag, value)?,
            _ => {}
        }
    }
    Ok(profile)
}

/// A sample: its packed ids and values allocated at their lengths.
fn sample(data: &[u8]) -> Result<Sample, Reason> {
    let mut sample = Sample::default();
    let mut wire = Wire(data);
    while let Some((tag, value)) = next(&mut wire)? {
        match tag {
            1 => repeated(tag, value, &mut sample.location_id, |v| v)?,
            2 => repeated(tag, value, &mut sample.value, |v| v as i64)?,
            3 => sample.label.push(message::<Label>(tag, value)?),
            _ => {}
        }
    }
    Ok(sample)
}

fn next<'a>(wire: &mut Wire<'a>) -> Result<Option<(u64, Value<'a>)>, Reason> {
    wire.field()
        .ok_or_else(|| "invalid varint, key or length".to_string())
}

fn wrong_type(tag: u64) -> Reason {
    format!("field {tag} has the wrong wire type")
}

fn bytes(tag: u64, value: Value<'_>) -> Result<&[u8], Reason> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        _ => Err(wrong_type(tag)),
    }
}

fn int(tag: u64, value: Value<'_>) -> Result<i64, Reason> {
    match value {
        Value::Varint(v) => Ok(v as i64),
        _ => Err(wrong_type(tag)),
    }
}

fn message<M: Message + Default>(tag: u64, value: Value<'_>) -> Result<M, Reason> {
    M::decode(bytes(tag, value)?).map_err(|e| e.to_string())
}

/// Appends a repeated integer field's occurrence: one varint, or a packed run reserved at its
/// length first.
fn repeated<T>(
    tag: u64,
    value: Value<'_>,
    out: &mut Vec<T>,
    convert: impl Fn(u64) -> T,
) -> Result<(), Reason> {
    match value {
        Value::Varint(v) => out.push(convert(v)),
        Value::Bytes(packed) => {
            out.reserve_exact(packed_len(packed));
            let mut wire = Wire(packed);
            while !wire.0.is_empty() {
                let v = wire
                    .varint()
                    .ok_or_else(|| format!("invalid varint in packed field {tag}"))?;
                out.push(convert(v));
            }
        }
        _ => return Err(wrong_type(tag)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ours and prost's on the same bytes: both refused, or both the same profile.
    fn assert_same(data: &[u8], what: &str) -> bool {
        let ours = decode_profile(data, &PprofCounts::scan(data));
        let prost = Profile::decode(data);
        match (&ours, &prost) {
            (Ok(ours), Ok(prost)) => assert_eq!(ours, prost, "{what}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{what}: ours {ours:?}, prost {prost:?}"),
        }
        ours.is_ok()
    }

    fn testdata() -> Vec<(String, Vec<u8>)> {
        kiln_testkit::testdata::pprof_files()
            .into_iter()
            .map(|(name, gzipped)| {
                let raw = crate::decompress(bytes::Bytes::from(gzipped), 64 << 20).unwrap();
                (name, raw.to_vec())
            })
            .collect()
    }

    #[test]
    fn real_profiles_decode_as_prost_decodes_them() {
        for (name, raw) in testdata() {
            assert!(assert_same(&raw, &name), "{name}");
            let counts = PprofCounts::scan(&raw);
            let profile = decode_profile(&raw, &counts).unwrap();
            // Allocated at their final sizes.
            assert_eq!(profile.sample.capacity(), profile.sample.len(), "{name}");
            assert_eq!(
                profile.location.capacity(),
                profile.location.len(),
                "{name}"
            );
            assert_eq!(profile.string_table.capacity(), profile.string_table.len());
            // Go packs a repeated field of three or more entries (longer stacks) and writes
            // shorter ones unpacked, which take one allocation of the minimum size, 4.
            for sample in &profile.sample {
                let ids = &sample.location_id;
                assert_eq!(
                    ids.capacity(),
                    if ids.len() > 2 || ids.is_empty() {
                        ids.len()
                    } else {
                        4
                    }
                );
            }
        }
    }

    /// Every real profile corrupted 150 times (bytes overwritten, inserted, removed, the end cut
    /// off), deterministically: prost and this decoder agree on each.
    #[test]
    fn corrupted_profiles_are_refused_or_accepted_as_prost_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below.max(1) as u64) as usize
        };
        let (mut accepted, mut refused) = (0, 0);
        for (name, raw) in testdata().into_iter().step_by(3) {
            for round in 0..150 {
                let mut data = raw.clone();
                for _ in 0..1 + random(3) {
                    let at = random(data.len());
                    match random(4) {
                        0 => data[at] = random(256) as u8,
                        1 => data.insert(at, random(256) as u8),
                        2 => {
                            data.remove(at);
                        }
                        _ => data.truncate(at),
                    }
                }
                if assert_same(&data, &format!("{name}, round {round}")) {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Both outcomes were exercised.
        assert!(
            accepted > 50 && refused > 50,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn edge_cases_of_the_wire_format_match_prost() {
        let cases: &[(&str, &[u8])] = &[
            ("empty", &[]),
            ("tag 0", &[0x00, 0x01]),
            ("wire type 6", &[0x0e]),
            ("wire type 7", &[0x0f]),
            ("end group at the top", &[0x0c]),
            ("key over u32", &[0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
            (
                "ten-byte varint, last byte 1",
                &[
                    0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
            ),
            (
                "ten-byte varint, last byte 2",
                &[
                    0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
            ),
            ("unterminated varint", &[0x48, 0xff]),
            ("time_nanos as bytes", &[0x4a, 0x00]),
            ("sample as a varint", &[0x10, 0x01]),
            ("string_table not UTF-8", &[0x32, 0x01, 0xff]),
            ("length past the end", &[0x12, 0x05, 0x00]),
            (
                "unknown field, every wire type",
                &[
                    0x78, 0x01, 0x79, 0, 0, 0, 0, 0, 0, 0, 0, 0x7a, 0x00, 0x7d, 0, 0, 0, 0,
                ],
            ),
            ("unknown group", &[0x7b, 0x08, 0x01, 0x7c, 0x12, 0x00]),
            ("group in a known field", &[0x4b, 0x4c]),
            ("unclosed group", &[0x7b, 0x08, 0x01]),
            ("mismatched group end", &[0x7b, 0x84, 0x01]),
            // A sample with location ids packed, then unpacked, then packed again; two values.
            (
                "location ids packed and not",
                &[
                    0x12, 0x0d, 0x0a, 0x02, 0x01, 0x02, 0x08, 0x03, 0x0a, 0x01, 0x04, 0x10, 0x07,
                    0x10, 0x7f,
                ],
            ),
            (
                "packed varint cut short",
                &[0x12, 0x04, 0x0a, 0x02, 0x01, 0x80],
            ),
            ("packed comments", &[0x6a, 0x02, 0x05, 0x06, 0x68, 0x07]),
            ("comment as fixed", &[0x69, 0, 0, 0, 0, 0, 0, 0, 0]),
            // period_type twice: type from the first, unit from the second, as prost merges.
            (
                "period_type merged",
                &[0x5a, 0x02, 0x08, 0x03, 0x5a, 0x02, 0x10, 0x04],
            ),
            (
                "scalars, the last one wins",
                &[0x48, 0x01, 0x48, 0x02, 0x60, 0x05],
            ),
            (
                "a label in a sample",
                &[0x12, 0x06, 0x1a, 0x04, 0x08, 0x01, 0x10, 0x02],
            ),
            ("a malformed label", &[0x12, 0x03, 0x1a, 0x01, 0x08]),
        ];
        for (what, data) in cases {
            assert_same(data, what);
        }
        let merged = decode_profile(cases[22].1, &PprofCounts::default()).unwrap();
        assert_eq!(merged.period_type, Some(ValueType { r#type: 3, unit: 4 }));
        let sample = &decode_profile(cases[18].1, &PprofCounts::default())
            .unwrap()
            .sample[0];
        assert_eq!(
            (&sample.location_id[..], &sample.value[..]),
            (&[1, 2, 3, 4][..], &[7, 127][..])
        );
    }
}
