//! Baselines measured in the same run: what a plain decoder and `go tool pprof` achieve on the
//! same data.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use kiln_proto::google::v1::Profile;
use kiln_proto::push::v1::PushRequest;
use prost::Message;

use crate::push::Payload;

/// Single-threaded gunzip plus prost decode of the pprofs in push.v1 payloads, in MB of decoded
/// pprof per second, over at least `min_seconds`.
pub(crate) fn decode_mb_per_second(payloads: &[Payload], min_seconds: f64) -> f64 {
    let raw: Vec<bytes::Bytes> = payloads
        .iter()
        .filter(|p| p.path.starts_with("/push.v1"))
        .flat_map(|p| {
            PushRequest::decode(p.body.clone())
                .expect("our own payload")
                .series
        })
        .flat_map(|s| s.samples)
        .map(|s| s.raw_profile)
        .collect();
    if raw.is_empty() {
        return 0.0;
    }
    let started = Instant::now();
    let mut decoded = 0usize;
    let mut buffer = Vec::new();
    while started.elapsed().as_secs_f64() < min_seconds {
        for gzipped in &raw {
            buffer.clear();
            flate2::read::GzDecoder::new(&gzipped[..])
                .read_to_end(&mut buffer)
                .expect("gzip");
            let profile = Profile::decode(buffer.as_slice()).expect("pprof");
            std::hint::black_box(&profile);
            decoded += buffer.len();
        }
    }
    decoded as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// Seconds `go tool pprof -proto` takes to merge `files`; None when go is not installed.
pub(crate) fn go_pprof_merge_seconds(files: &[std::path::PathBuf], out: &Path) -> Option<f64> {
    let started = Instant::now();
    let status = Command::new("go")
        .args(["tool", "pprof", "-proto", "-output"])
        .arg(out)
        .args(files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| started.elapsed().as_secs_f64())
}
