use std::io::Read;

use bytes::Bytes;
use flate2::read::GzDecoder;
use kiln_proto::google::v1::Profile;
use prost::Message;

use crate::{ModelError, Result};

/// Size limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// The largest decompressed payload accepted, in bytes.
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 256 << 20,
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

/// Decodes a pprof profile, gzipped or not, within `limits`.
pub fn decode_pprof(data: Bytes, limits: DecodeLimits) -> Result<Profile> {
    let raw = decompress(data, limits.max_decompressed_bytes)?;
    Profile::decode(raw).map_err(|e| ModelError::Protobuf {
        what: "pprof",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

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
}
