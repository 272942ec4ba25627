//! Splitting a query into parts (ADR 0005): consecutive time windows, each read from the
//! blocks that overlap it. A profile belongs to the one window holding its time, and every
//! copy of a duplicated profile (same time) lies in every block of that window that holds it,
//! so each part deduplicates on its own and the merge of the parts is exact.

use kiln_model::BlockMeta;

/// Blocks per part by default, as Pyroscope's read leaves hold.
pub(crate) const BLOCKS_PER_PART: usize = 4;

/// One part of a query: `[start, end)` in nanoseconds and the indices of the blocks (of the
/// planned list, in its order) that overlap it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) blocks: Vec<usize>,
}

/// Cuts `[start, end)` into windows each overlapped by about `per_part` of `blocks` (more
/// where more blocks overlap one instant): blocks are taken in order of their first profile,
/// `per_part` at a time, and each window starts at the first profile of its group. Windows
/// no block overlaps are left out.
pub(crate) fn parts(blocks: &[BlockMeta], start: i64, end: i64, per_part: usize) -> Vec<Part> {
    if blocks.is_empty() || start >= end {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (blocks[i].min_time_nanos, i));
    let mut bounds: Vec<i64> = vec![start];
    for group in order.chunks(per_part.max(1)).skip(1) {
        let cut = blocks[group[0]].min_time_nanos.clamp(start, end);
        if cut > *bounds.last().expect("starts with start") {
            bounds.push(cut);
        }
    }
    bounds.push(end);
    let mut parts: Vec<Part> = bounds
        .windows(2)
        .filter(|w| w[0] < w[1])
        .map(|w| Part {
            start: w[0],
            end: w[1],
            blocks: Vec::new(),
        })
        .collect();
    // Each block joins the windows it overlaps, found by binary search over the sorted
    // windows (a block holds profiles from its min to its max time, both included); blocks
    // are visited in index order, so each part lists its blocks in that order.
    for (index, block) in blocks.iter().enumerate() {
        let first = parts.partition_point(|p| p.end <= block.min_time_nanos);
        let last = parts.partition_point(|p| p.start <= block.max_time_nanos);
        for part in parts.iter_mut().take(last).skip(first) {
            part.blocks.push(index);
        }
    }
    parts.retain(|part| !part.blocks.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            min_time_nanos: min,
            max_time_nanos: max,
            ..BlockMeta::default()
        }
    }

    #[test]
    fn windows_hold_about_so_many_blocks_and_cover_the_range() {
        // Ten one-second segments, back to back, and one long block over all of them.
        let mut blocks: Vec<BlockMeta> = (0..10).map(|i| block(i * 10, i * 10 + 9)).collect();
        blocks.push(block(0, 99));
        let parts = parts(&blocks, 0, 100, 4);
        assert_eq!(
            parts,
            [
                Part {
                    start: 0,
                    end: 30,
                    blocks: vec![0, 1, 2, 10]
                },
                Part {
                    start: 30,
                    end: 70,
                    blocks: vec![3, 4, 5, 6, 10]
                },
                Part {
                    start: 70,
                    end: 100,
                    blocks: vec![7, 8, 9, 10]
                },
            ]
        );
    }

    #[test]
    fn a_profile_time_is_in_exactly_one_window_with_every_block_holding_it() {
        let blocks = vec![block(5, 5), block(5, 20), block(10, 10), block(0, 30)];
        let parts = parts(&blocks, 0, 31, 1);
        for time in 0..31 {
            let holding: Vec<&Part> = parts
                .iter()
                .filter(|p| p.start <= time && time < p.end)
                .collect();
            assert_eq!(holding.len(), 1, "time {time}: {parts:?}");
            for (i, b) in blocks.iter().enumerate() {
                if b.min_time_nanos <= time && time <= b.max_time_nanos {
                    assert!(holding[0].blocks.contains(&i), "time {time}, block {i}");
                }
            }
        }
        assert!(super::parts(&blocks, 10, 10, 4).is_empty());
    }
}
