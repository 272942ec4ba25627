//! Real profiles from the shared test data: the Go CPU profiles, and the small-profile workload
//! built from them (what a quiet service's SDK sends every 10 to 15 s).

use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_proto::google::v1::Profile;
use prost::Message;

use crate::push::{self, Payload};

/// The Go CPU profiles (`*.cpu.pb.gz`) of `testdata/pprof`, decoded, sorted by name.
pub(crate) fn go_cpu_profiles(testdata: &Path) -> anyhow::Result<Vec<Profile>> {
    let dir = testdata.join("pprof");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".cpu.pb.gz"))
        .collect();
    names.sort();
    anyhow::ensure!(!names.is_empty(), "no Go CPU profiles in {}", dir.display());
    names
        .iter()
        .map(|path| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(path)?).read_to_end(&mut raw)?;
            Ok(Profile::decode(raw.as_slice())?)
        })
        .collect()
}

use kiln_testkit::testdata::SMALL_PROFILE_BYTES as SMALL_BYTES;

/// The small-profile workload: push.v1 requests of one real Go CPU profile each (those whose
/// encoded size is in [`SMALL_BYTES`]), spread round robin over `services` services and
/// `instances` instances per service, `pool` requests in all, their times 10 s apart back from
/// `now_nanos`.
pub(crate) fn small_go_payloads(
    testdata: &Path,
    services: usize,
    instances: usize,
    pool: usize,
    now_nanos: i64,
) -> anyhow::Result<Vec<Payload>> {
    let profiles: Vec<Profile> = go_cpu_profiles(testdata)?
        .into_iter()
        .filter(|p| SMALL_BYTES.contains(&p.encoded_len()))
        .collect();
    anyhow::ensure!(
        !profiles.is_empty(),
        "no Go CPU profile of {} to {} bytes in {}",
        SMALL_BYTES.start(),
        SMALL_BYTES.end(),
        testdata.display()
    );
    let (services, instances) = (services.max(1), instances.max(1));
    Ok((0..pool.max(1))
        .map(|i| {
            let service = i % services;
            let round = i / services;
            let mut profile = profiles[(service + round) % profiles.len()].clone();
            profile.time_nanos = now_nanos - (i as i64 % 360) * 10_000_000_000;
            let labels = vec![
                ("service_name".to_string(), format!("small-{service:02}")),
                ("__name__".to_string(), "process_cpu".to_string()),
                (
                    "instance".to_string(),
                    format!("instance-{}", round % instances),
                ),
            ];
            push::push_payload(labels, &[profile])
        })
        .collect())
}
