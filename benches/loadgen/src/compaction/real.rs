//! Real profiles: copies of the Go CPU profiles of the test data (distinct ids, one every 10 s)
//! of one service, merged by Kiln (flame graph and pprof of their range) before and after
//! compaction, and by `go tool pprof -proto` from the same files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use kiln_proto::google::v1::Profile;
use kiln_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use kiln_proto::types::v1::LabelPair;
use prost::Message;

use super::watch::{self, BlockLog};
use crate::figures::Figures;
use crate::push::{self, gzip};
use crate::real::go_cpu_profiles;
use crate::{baseline, queries, server};

const SERVICE: &str = "go-real";
const NANOS: i64 = 1_000_000_000;
const SPACING_SECONDS: i64 = 10;

/// `count` copies of the profiles, round robin, the last one starting at `end_nanos` minus 10 s,
/// written as gzipped files to `dir`: returns the files and each copy's gzipped bytes.
fn copies(
    profiles: &[Profile],
    count: usize,
    end_nanos: i64,
    dir: &Path,
) -> anyhow::Result<(Vec<PathBuf>, Vec<Bytes>)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..count {
        let mut profile = profiles[i % profiles.len()].clone();
        profile.time_nanos = end_nanos - (count - i) as i64 * SPACING_SECONDS * NANOS;
        let body = gzip(&profile.encode_to_vec());
        let path = dir.join(format!("{i:04}.pb.gz"));
        std::fs::write(&path, &body)?;
        files.push(path);
        bodies.push(Bytes::from(body));
    }
    Ok((files, bodies))
}

/// Pushes the copies as one series of `SERVICE`, 50 per request, each with its own profile id.
async fn push_all(base: &str, bodies: &[Bytes]) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().http2_prior_knowledge().build()?;
    for (chunk_index, chunk) in bodies.chunks(50).enumerate() {
        let labels = [
            ("service_name", SERVICE),
            ("__name__", "process_cpu"),
            ("instance", "real-0"),
        ];
        let request = PushRequest {
            series: vec![RawProfileSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| LabelPair {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                samples: chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| RawSample {
                        raw_profile: body.clone(),
                        id: format!("00000000-0000-4000-8000-{:012x}", chunk_index * 50 + i),
                    })
                    .collect(),
                annotations: vec![],
            }],
        };
        let payload = push::Payload {
            path: "/push.v1.PusherService/Push".to_string(),
            content_type: "application/proto",
            body: Bytes::from(request.encode_to_vec()),
            decoded_bytes: 0,
            samples: 0,
            profiles: chunk.len(),
        };
        let status = push::send(&client, base, &payload).await;
        anyhow::ensure!(status == 200, "pushing real profiles answered {status}");
    }
    Ok(())
}

/// Times flame graph and pprof queries over the copies' range, `runs` times each, and adds the
/// times as figures named after `phase`; returns the fastest of each kind.
async fn time_queries(
    base: &str,
    range: (i64, i64),
    runs: usize,
    phase: &str,
    figures: &mut Figures,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let client = queries::client()?;
    let selector = format!("{{service_name=\"{SERVICE}\"}}");
    let mut best = Vec::new();
    for kind in ["flamegraph", "pprof"] {
        let mut times = Vec::new();
        for run in 0..runs.max(1) {
            let ms = queries::time_query(&client, base, kind, &selector, range.0, range.1).await?;
            figures.add(
                format!("real Go profiles: {kind}, {phase}, run {run}"),
                ms,
                "ms",
            );
            times.push(ms);
        }
        best.push((kind, times.iter().copied().fold(f64::INFINITY, f64::min)));
    }
    Ok(best)
}

/// The real-profile comparison; `count` copies (600 for the figure).
pub(crate) async fn run(
    binary: &Path,
    dir: &Path,
    testdata: &Path,
    levels: &str,
    count: usize,
    runs: usize,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let profiles = go_cpu_profiles(testdata)?;
    // End on a whole minute, 10 minutes back: inside every server's accepted window.
    let end_nanos = (crate::now_nanos() / (60 * NANOS) - 10) * 60 * NANOS;
    let (files, bodies) = copies(&profiles, count, end_nanos, &dir.join("files"))?;
    let range_ms = (
        (end_nanos - count as i64 * SPACING_SECONDS * NANOS) / 1_000_000 - 1000,
        end_nanos / 1_000_000 + 1000,
    );
    let data = dir.join("server");

    // Before compaction: every role but the compactor.
    let before = server::command(binary, &data)
        .args(["--target", "distributor,ingester,metastore,querier"])
        .start()
        .await?;
    push_all(&before.url(""), &bodies).await?;
    let kiln_before = time_queries(
        &before.url(""),
        range_ms,
        runs,
        "before compaction",
        figures,
    )
    .await?;
    server::stop(before);

    // After: all-in-one on the same data, compacting to the final level.
    let after = server::command(binary, &data)
        .arg(format!("--compaction.levels={levels}"))
        .start()
        .await?;
    let client = watch::client(after.grpc_addr())?;
    let mut log = BlockLog::default();
    watch::wait_compacted(
        &client,
        watch::final_level(levels),
        &mut log,
        Duration::from_secs(600),
    )
    .await?;
    let kiln_after =
        time_queries(&after.url(""), range_ms, runs, "after compaction", figures).await?;
    server::stop(after);

    let mut go = Vec::new();
    for run in 0..runs.max(1) {
        let seconds = baseline::go_pprof_merge_seconds(&files, &dir.join("merged.pb.gz"))
            .ok_or_else(|| anyhow::anyhow!("go tool pprof failed or is not installed"))?;
        figures.add(
            format!("real Go profiles: go tool pprof -proto, run {run}"),
            seconds * 1000.0,
            "ms",
        );
        go.push(seconds * 1000.0);
    }
    let go_best = go.iter().copied().fold(f64::INFINITY, f64::min);
    for (phase, kiln) in [("before", &kiln_before), ("after", &kiln_after)] {
        for (kind, ms) in kiln {
            figures.add(
                format!("real Go profiles: speed-up of the fastest {kind} {phase} compaction over the fastest go run"),
                go_best / ms,
                "x",
            );
        }
    }
    Ok(())
}
