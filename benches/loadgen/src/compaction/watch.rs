//! Watching compaction through the metastore: every block the index held, by level, and waiting
//! until every block reached the final level.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_contract::metastore::{JobState, Metastore, MetastoreClient};
use kiln_model::BlockMeta;

/// How often the index is listed while waiting.
const POLL: Duration = Duration::from_millis(500);

/// A metastore client for the node (or all-in-one server) whose gRPC listener is `grpc_addr`.
pub(crate) fn client(grpc_addr: &str) -> anyhow::Result<MetastoreClient> {
    Ok(MetastoreClient::new(
        vec![grpc_addr.to_string()],
        Duration::from_secs(30),
    )?)
}

/// The final level of a `--compaction.levels` value: one past the levels it lists.
pub(crate) fn final_level(levels: &str) -> u32 {
    levels.split(',').filter(|l| !l.trim().is_empty()).count() as u32
}

/// What the blocks of one level hold, summed.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct LevelTotals {
    pub(crate) blocks: u64,
    pub(crate) bytes: u64,
    pub(crate) profiles: u64,
    /// `DatasetMeta.samples` over every dataset.
    pub(crate) samples: u64,
}

impl LevelTotals {
    /// Stored bytes (symbols, index and footer included) per sample.
    pub(crate) fn bytes_per_sample(&self) -> f64 {
        self.bytes as f64 / self.samples.max(1) as f64
    }
}

/// Sums `blocks` per compaction level.
pub(crate) fn by_level<'a>(
    blocks: impl IntoIterator<Item = &'a BlockMeta>,
) -> BTreeMap<u32, LevelTotals> {
    let mut levels: BTreeMap<u32, LevelTotals> = BTreeMap::new();
    for block in blocks {
        let totals = levels.entry(block.compaction_level).or_default();
        totals.blocks += 1;
        totals.bytes += block.size_bytes;
        totals.profiles += block.datasets.iter().map(|d| d.profiles).sum::<u64>();
        totals.samples += block.datasets.iter().map(|d| d.samples).sum::<u64>();
    }
    levels
}

/// Every block seen in the index, once each (blocks are immutable), so that the blocks of a
/// level that a later job replaced still count.
#[derive(Debug, Default)]
pub(crate) struct BlockLog {
    seen: BTreeMap<String, BlockMeta>,
}

impl BlockLog {
    /// Lists the index, remembers its blocks and returns them.
    pub(crate) async fn record(
        &mut self,
        client: &MetastoreClient,
    ) -> anyhow::Result<Vec<BlockMeta>> {
        let blocks = client.list_blocks(None).await?;
        for block in &blocks {
            self.seen
                .entry(block.id.clone())
                .or_insert_with(|| block.clone());
        }
        Ok(blocks)
    }

    /// The blocks ever seen, summed per level.
    pub(crate) fn levels(&self) -> BTreeMap<u32, LevelTotals> {
        by_level(self.seen.values())
    }
}

/// Waits until the index holds blocks and every one is at `final_level` (no job can be left
/// then), listing it every 500 ms into `log`; fails on a parked job or after `timeout`.
/// Returns how long it waited.
pub(crate) async fn wait_compacted(
    client: &MetastoreClient,
    final_level: u32,
    log: &mut BlockLog,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let blocks = log.record(client).await?;
        let below = blocks
            .iter()
            .filter(|b| b.compaction_level < final_level)
            .count();
        if !blocks.is_empty() && below == 0 {
            return Ok(started.elapsed());
        }
        let status = client.compaction_status().await?;
        if let Some(job) = status.jobs.iter().find(|j| j.state == JobState::Parked) {
            anyhow::bail!(
                "compaction job {} (level {}) is parked: {}",
                job.name,
                job.level,
                job.last_error
            );
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{below} blocks still below level {final_level} after {timeout:?}"
        );
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "waiting for compaction: {below} of {} blocks below level {final_level}, {} jobs",
                blocks.len(),
                status.jobs.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until no object waits for deletion (the compactors deleted every tombstoned one);
/// fails after `timeout`.
pub(crate) async fn wait_deleted(
    client: &MetastoreClient,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let status = client.compaction_status().await?;
        if status.tombstones.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{} objects still wait for deletion after {timeout:?}",
            status.tombstones.len()
        );
        tokio::time::sleep(POLL).await;
    }
}
