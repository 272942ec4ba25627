//! Entry points for the fuzz targets in `fuzz/`: each runs one decoder exactly as the server
//! does, from raw bytes to normalized profiles, and returns how many profiles came out. They
//! exist for fuzzing and for replaying the fuzz corpora as tests; servers do not call them.

use bytes::Bytes;
use kiln_model::formats::otlp::convert_request_within;
use kiln_model::{DecodeBudget, DecodeLimits, Labels, NormalizeOptions, normalize};
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::push::v1::PushRequest;
use prost::Message;

use crate::ingest::{Upload, read_form};
use crate::otlp::{REQUEST_TYPE, json};

/// Small limits keep a fuzzer from spending its time on legitimately huge inputs.
const LIMIT: usize = 4 << 20;

/// The server's default limits of a tenant, but for decompressed bytes ([`LIMIT`]).
fn limits() -> kiln_config::Limits {
    kiln_config::Limits {
        max_decompressed_bytes: LIMIT,
        ..kiln_config::Limits::default()
    }
}

fn decode_limits() -> DecodeLimits {
    crate::limits::decode_limits(&limits())
}

fn normalize_options() -> NormalizeOptions {
    NormalizeOptions {
        limits: crate::limits::normalize_limits(&limits()),
        ..NormalizeOptions::default()
    }
}

/// The multipart boundary the `multipart` target's inputs use.
pub const BOUNDARY: &str = "kilnfuzz";

fn upload() -> Upload {
    Upload {
        app_name: "fuzz.cpu".to_string(),
        labels: Labels::default(),
        from: Some(1_000_000_000),
        until: Some(11_000_000_000),
        now: 1_000_000_000,
        sample_rate: Some(100),
        decode: decode_limits(),
        normalize: crate::limits::normalize_limits(&limits()),
    }
}

/// A pprof body, gzipped or not, as `/ingest?format=pprof` and `push.v1` decode it.
pub fn pprof(data: &[u8]) -> usize {
    let mut budget = DecodeBudget::new(decode_limits());
    let Ok(profile) = budget.decode_pprof(Bytes::copy_from_slice(data)) else {
        return 0;
    };
    let labels = Labels::from_pairs([("service_name", "fuzz")]);
    normalize(profile, &labels, normalize_options()).map_or(0, |_| 1)
}

/// A `push.v1` request body (protobuf).
pub fn push(data: &[u8]) -> usize {
    let Ok(request) = PushRequest::decode(data) else {
        return 0;
    };
    let mut count = 0;
    let mut budget = DecodeBudget::new(decode_limits());
    for series in request.series {
        let Ok(labels) = crate::push::series_labels(&series.labels) else {
            continue;
        };
        for sample in series.samples {
            match budget.decode_pprof(sample.raw_profile) {
                Ok(profile) => {
                    if normalize(profile, &labels, normalize_options()).is_ok() {
                        count += 1;
                    }
                }
                // As the server, which refuses the whole request.
                Err(kiln_model::ModelError::Limit(_)) => return 0,
                Err(_) => {}
            }
        }
    }
    count
}

/// An OTLP profiles export, protobuf.
pub fn otlp(data: &[u8]) -> usize {
    let Ok(request) = ExportProfilesServiceRequest::decode(data) else {
        return 0;
    };
    convert(request)
}

/// Converts as the server does, within the default limits.
fn convert(request: ExportProfilesServiceRequest) -> usize {
    let limits = crate::limits::convert_limits(&limits());
    convert_request_within(request, 1_000_000_000, &limits).map_or(0, |c| c.profiles.len())
}

/// An OTLP profiles export, JSON (hex ids).
pub fn otlp_json(data: &[u8]) -> usize {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return 0;
    };
    json::hex_ids_to_base64(&mut value);
    let text = serde_json::to_vec(&value).expect("a JSON value serializes");
    match kiln_proto::json::from_json::<ExportProfilesServiceRequest>(REQUEST_TYPE, &text) {
        Ok(request) => convert(request),
        Err(_) => 0,
    }
}

/// A folded-stacks body (`/ingest?format=folded`).
pub fn folded(data: &[u8]) -> usize {
    upload()
        .collapsed(Bytes::copy_from_slice(data), false)
        .map_or(0, |p| p.len())
}

/// A `lines` body (`/ingest?format=lines`).
pub fn lines(data: &[u8]) -> usize {
    upload()
        .collapsed(Bytes::copy_from_slice(data), true)
        .map_or(0, |p| p.len())
}

/// A JFR recording (`/ingest?format=jfr`, raw body).
pub fn jfr(data: &[u8]) -> usize {
    upload()
        .jfr(Bytes::copy_from_slice(data), None)
        .map_or(0, |p| p.len())
}

/// A multipart /ingest body with boundary [`BOUNDARY`]; its fields go to the pprof decoder
/// (`profile`, `prev_profile`, `sample_type_config`) and to the JFR decoder (`jfr`, `labels`).
pub fn multipart(data: &[u8]) -> usize {
    let body = Bytes::copy_from_slice(data);
    // Fuzz targets are plain functions, never called on an async runtime.
    #[allow(clippy::disallowed_methods)]
    let read = |body: Bytes| futures::executor::block_on(read_form(body, BOUNDARY.to_string()));
    let pprof = match read(body.clone()) {
        Ok(form) => upload()
            .pprof(Bytes::new(), Some(form))
            .map_or(0, |p| p.len()),
        Err(_) => return 0,
    };
    let jfr = match read(body) {
        Ok(form) => upload()
            .jfr(Bytes::new(), Some(form))
            .map_or(0, |p| p.len()),
        Err(_) => 0,
    };
    pprof + jfr
}

/// A fuzz target: bytes in, how many profiles came out.
pub type Target = fn(&[u8]) -> usize;

/// Every target by the name of its folder under `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 8] = [
    ("pprof", pprof),
    ("push", push),
    ("otlp", otlp),
    ("otlp_json", otlp_json),
    ("folded", folded),
    ("lines", lines),
    ("jfr", jfr),
    ("multipart", multipart),
];

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The corpora and any crash inputs found by fuzzing run again on every test run: none may
    /// panic, and each corpus must hold inputs.
    #[test]
    fn fuzz_corpora_replay_without_panics() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        for (name, target) in TARGETS {
            let mut inputs = 0;
            for folder in [
                root.join("corpus").join(name),
                root.join("artifacts").join(name),
            ] {
                let Ok(entries) = std::fs::read_dir(&folder) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let _ = target(&data);
                    inputs += 1;
                }
            }
            assert!(inputs > 0, "no corpus for fuzz target {name}");
        }
    }
}
