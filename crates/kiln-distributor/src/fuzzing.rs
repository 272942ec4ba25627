//! Entry points for the fuzz targets in `fuzz/`: each runs one decoder exactly as the server
//! does, from raw bytes to normalized profiles, and returns how many profiles came out. They
//! exist for fuzzing and for replaying the fuzz corpora as tests; servers do not call them.

use std::io::Read;

use bytes::Bytes;
use kiln_model::formats::otlp::convert_request_within;
use kiln_model::{DecodeBudget, DecodeLimits, Labels, NormalizeOptions, normalize};
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::push::v1::PushRequest;
use prost::Message;

use crate::ingest::{Upload, read_form};
use crate::otlp::{REQUEST_TYPE, json};

pub mod memory;

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

/// Heap bytes any input may use whatever its size: the decoders' fixed costs (a gzip
/// decoder's state and window alone take about 80 KiB). The committed corpora need at most
/// 143 KiB; see docs/fuzzing.md for the measurements.
pub const MEMORY_ALLOWANCE: usize = 256 << 10;

/// Heap bytes an input may use per byte of its [`input_size`], on top of [`MEMORY_ALLOWANCE`].
/// The committed corpora need at most 55 (OTLP), a pprof of the most samples the limits let
/// through 59; see docs/fuzzing.md.
pub const MEMORY_PER_BYTE: usize = 128;

/// The gzip magic and the only compression method there is (deflate): the decoders' gzip
/// reader refuses any other method before inflating a byte.
const GZIP_START: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The size an input legitimately stands for: its length plus what the gzip streams in it
/// inflate to, within [`LIMIT`] in all.
///
/// The decoders gunzip every payload that starts with the gzip magic (a body, a push sample, a
/// multipart field), each request within [`LIMIT`] decompressed bytes, and a decoded payload
/// may use memory in proportion to its decompressed size. So every offset of the input where
/// a gzip header starts ([`GZIP_START`]) is inflated as far as it goes (to the end of the stream, the first error
/// or the limit), counting the output, partial output of a damaged stream included, as the
/// decoders hold it too before failing. This over-counts, never under-counts: a stream read
/// past the end of its field only produces more, and a stream inside another one counts twice.
pub fn input_size(data: &[u8]) -> usize {
    let mut inflated = 0;
    let mut buffer = [0u8; 8192];
    for start in 0..data.len() {
        if inflated >= LIMIT {
            break;
        }
        if data[start..].starts_with(&GZIP_START) {
            let left = (LIMIT - inflated) as u64;
            let mut stream = flate2::read::GzDecoder::new(&data[start..]).take(left);
            while let Ok(n @ 1..) = stream.read(&mut buffer) {
                inflated += n;
            }
        }
    }
    data.len() + inflated
}

/// The most heap bytes `data` may use at its peak in a target:
/// [`MEMORY_ALLOWANCE`] + [`MEMORY_PER_BYTE`] × [`input_size`].
pub fn memory_bound(data: &[u8]) -> usize {
    memory_bound_of(input_size(data))
}

fn memory_bound_of(input_size: usize) -> usize {
    MEMORY_ALLOWANCE.saturating_add(MEMORY_PER_BYTE.saturating_mul(input_size))
}

/// An input that used more memory than [`memory_bound`] allows.
#[derive(Debug)]
pub struct MemoryExceeded {
    /// The target's name.
    pub target: String,
    /// The input's length.
    pub input_bytes: usize,
    /// Its [`input_size`], decompression included.
    pub input_size: usize,
    /// The heap bytes the target held at its peak.
    pub peak_bytes: usize,
    /// What [`memory_bound`] allows.
    pub bound: usize,
}

impl std::fmt::Display for MemoryExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz target {} used {} heap bytes at its peak on an input of {} bytes ({} with \
             decompression), over its bound of {} = {} + {} per byte",
            self.target,
            self.peak_bytes,
            self.input_bytes,
            self.input_size,
            self.bound,
            MEMORY_ALLOWANCE,
            MEMORY_PER_BYTE,
        )
    }
}

/// Initializes what the decoders initialize once per process, so that no input is charged for
/// it: the descriptor pool of the protobuf JSON mapping (2.6 MiB, built by the first OTLP JSON
/// request).
fn warm_up() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        otlp_json(b"{}");
    });
}

/// Runs `target` (named `name`) on `data`, measuring its peak heap bytes, and fails when they
/// exceed [`memory_bound`]. Needs [`memory::Counting`] as the global allocator.
pub fn check_memory(name: &str, target: Target, data: &[u8]) -> Result<usize, MemoryExceeded> {
    warm_up();
    let (profiles, peak_bytes) = memory::measure(|| target(data));
    let input_size = input_size(data);
    let bound = memory_bound_of(input_size);
    if peak_bytes > bound {
        return Err(MemoryExceeded {
            target: name.to_string(),
            input_bytes: data.len(),
            input_size,
            peak_bytes,
            bound,
        });
    }
    Ok(profiles)
}

/// What a fuzz target runs: `target` on `data` within [`memory_bound`], panicking (a crash for
/// libFuzzer) when it uses more.
pub fn fuzz(name: &str, target: Target, data: &[u8]) -> usize {
    check_memory(name, target, data).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    // This test binary's allocator, so that the replay test measures as the fuzz targets do.
    #[global_allocator]
    static ALLOCATOR: memory::Counting = memory::Counting;

    /// The corpora and any crash inputs found by fuzzing run again on every test run: none may
    /// panic or use more memory than [`memory_bound`], and each corpus must hold inputs.
    #[test]
    fn fuzz_corpora_replay_without_panics() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut exceeded = Vec::new();
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
                    if let Err(e) = check_memory(name, target, &data) {
                        let file = path.strip_prefix(&root).unwrap_or(&path);
                        exceeded.push(format!("fuzz/{}: {e}", file.display()));
                    }
                    inputs += 1;
                }
            }
            assert!(inputs > 0, "no corpus for fuzz target {name}");
        }
        assert!(
            exceeded.is_empty(),
            "{} inputs over their memory bound:\n{}",
            exceeded.len(),
            exceeded.join("\n")
        );
    }

    /// What the bound counts: gzip streams inside an input, inflated within [`LIMIT`].
    #[test]
    fn input_size_counts_what_gzip_streams_inflate_to() {
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        };
        assert_eq!(input_size(b"plain"), 5);
        let one = gzip(&[7; 100_000]);
        assert_eq!(input_size(&one), one.len() + 100_000);
        // Two streams in one input (a push of two samples), and a damaged one counted as far as
        // it inflates.
        let mut two = b"xx".to_vec();
        two.extend(&one);
        two.extend(&one[..one.len() / 2]);
        let size = input_size(&two);
        assert!(
            (two.len() + 100_000..=two.len() + 200_000).contains(&size),
            "{size}"
        );
        // A bomb counts up to the limit, no further.
        let bomb = gzip(&vec![0; 2 * LIMIT]);
        assert_eq!(input_size(&bomb), bomb.len() + LIMIT);
    }

    #[test]
    fn memory_is_measured_per_thread_and_checked() {
        let (_, peak) = memory::measure(|| std::hint::black_box(vec![1u8; 1 << 20]).len());
        assert!((1 << 20..(1 << 20) + 4096).contains(&peak), "{peak}");
        let (_, peak) = memory::measure(|| {
            std::thread::spawn(|| std::hint::black_box(vec![1u8; 1 << 20]).len())
                .join()
                .unwrap()
        });
        assert!(peak < 1 << 20, "another thread's memory counted: {peak}");

        fn greedy(data: &[u8]) -> usize {
            std::hint::black_box(vec![
                0u8;
                MEMORY_ALLOWANCE + MEMORY_PER_BYTE * data.len() + 1
            ])
            .len()
        }
        let e = check_memory("greedy", greedy, b"1234").unwrap_err();
        assert_eq!(e.bound, MEMORY_ALLOWANCE + MEMORY_PER_BYTE * 4);
        assert!(e.peak_bytes > e.bound);
        assert!(e.to_string().starts_with("fuzz target greedy used "), "{e}");
    }
}
