//! One-time import of the block index that earlier versions kept in `blocks.jsonl`.

use std::path::Path;
use std::time::Duration;

use kiln_contract::metastore::MetastoreError;
use kiln_model::BlockMeta;

use crate::node::MetastoreNode;

const LEGACY_FILE: &str = "blocks.jsonl";

/// Registers the blocks of a leftover `blocks.jsonl` through Raft once a leader exists, then
/// renames the file so that it is imported once. Registration is idempotent, so a crash between
/// the two steps only repeats harmless work.
pub(crate) async fn import(node: &MetastoreNode, dir: &Path) -> Result<(), MetastoreError> {
    let path = dir.join(LEGACY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(MetastoreError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    // A torn last line was never acknowledged.
    let blocks: Vec<BlockMeta> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    node.raft()
        .wait(Some(Duration::from_secs(60)))
        .metrics(
            |m| m.current_leader.is_some(),
            "a leader to import the old block index",
        )
        .await
        .map_err(|e| {
            MetastoreError::Unavailable(format!("cannot import {}: {e}", path.display()))
        })?;
    let added = node.add_blocks(blocks.clone()).await?;
    tracing::info!(blocks = blocks.len(), added, "imported the old block index");
    let done = path.with_extension("jsonl.imported");
    std::fs::rename(&path, &done).map_err(|source| MetastoreError::Io {
        path: path.display().to_string(),
        source,
    })
}
