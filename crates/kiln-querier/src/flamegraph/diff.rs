//! The diff of two flame graphs (Pyroscope's `FlameGraphDiff`, flamebearer format `double`):
//! the two trees merged by frame path, each node carrying its left and its right values.

use kiln_proto::querier::v1::FlameGraphDiff;

use super::{FrameTree, Tree};

/// Two merged trees of frames: side 0 is the left selection, side 1 the right one.
pub type DiffTree = Tree<2>;

impl DiffTree {
    /// The nodes of `left` and `right` merged by their path of frame names.
    pub fn from_sides(left: FrameTree, right: FrameTree) -> Self {
        let mut tree = Self::default();
        tree.absorb(&left, 0);
        tree.absorb(&right, 1);
        tree
    }

    /// Encodes the diff with at most about `max_nodes` nodes (0: no limit), keeping the nodes
    /// with the largest total on either side: each level holds, per node, the left x offset
    /// (delta-encoded), total and self, the same three on the right, and the name index.
    /// `total` is the sum of both sides' totals, as Pyroscope reports it.
    pub fn diff(&mut self, max_nodes: usize) -> FlameGraphDiff {
        let (names, levels, max_self) = self.levels(max_nodes);
        let [left, right] = self.nodes[0].total;
        FlameGraphDiff {
            names,
            levels,
            total: left + right,
            max_self,
            left_ticks: left,
            right_ticks: right,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::flamegraph::tests::dataset;

    /// Left: a;b = 3, a;c = 5, a;b;b = 2, d = 1. Right: a;b = 4, e = 6.
    fn sides() -> (FrameTree, FrameTree) {
        let (data, values) = dataset();
        let mut left = FrameTree::default();
        left.add_stacks(&data, values);
        let mut right_data = data.clone();
        std::sync::Arc::make_mut(&mut right_data.symbols).strings[4] = "e".to_string();
        let mut right = FrameTree::default();
        right.add_stacks(&right_data, HashMap::from([(2, 4), (5, 6)]));
        (left, right)
    }

    #[test]
    fn both_sides_share_paths_and_keep_their_own_offsets() {
        let (left, right) = sides();
        let graph = DiffTree::from_sides(left, right).diff(0);
        assert_eq!(graph.names, ["total", "a", "b", "c", "d", "e"]);
        let levels: Vec<Vec<i64>> = graph.levels.into_iter().map(|l| l.values).collect();
        assert_eq!(
            levels,
            [
                vec![0, 11, 0, 0, 10, 0, 0],
                // a: left 10, right 4; d: left 1, right 0; e: left 0, right 6.
                vec![
                    0, 10, 0, 0, 4, 0, 1, 0, 1, 1, 0, 0, 0, 4, 0, 0, 0, 0, 6, 6, 5
                ],
                // b: left 5 (3 self), right 4; c: left 5, right 0.
                vec![0, 5, 3, 0, 4, 4, 2, 0, 5, 5, 0, 0, 0, 3],
                vec![0, 2, 2, 0, 0, 0, 2],
            ]
        );
        assert_eq!(
            (
                graph.total,
                graph.left_ticks,
                graph.right_ticks,
                graph.max_self
            ),
            (21, 11, 10, 6)
        );
    }

    #[test]
    fn max_nodes_keeps_what_is_large_on_either_side() {
        let (left, right) = sides();
        // Largest side per node: total 11, a 10, e 6, b 5, c 5, b;b 2, d 1. With 3 nodes the
        // cut is above the third (6): total and a stay, each parent's other children become
        // one `other` carrying both sides.
        let graph = DiffTree::from_sides(left, right).diff(3);
        assert_eq!(graph.names, ["total", "a", "other"]);
        let levels: Vec<Vec<i64>> = graph.levels.into_iter().map(|l| l.values).collect();
        assert_eq!(
            levels,
            [
                vec![0, 11, 0, 0, 10, 0, 0],
                vec![0, 10, 0, 0, 4, 0, 1, 0, 1, 1, 0, 6, 6, 2],
                vec![0, 10, 10, 0, 4, 4, 2],
            ]
        );
        assert_eq!(
            (graph.total, graph.left_ticks, graph.right_ticks),
            (21, 11, 10)
        );
    }
}
