//! Partial results of one query and their exact merge: each part of a query (a time window and
//! the blocks overlapping it, see `plan`) folds into its own accumulator, and the
//! accumulators merge into the answer as if one fold had seen every block.

use std::collections::BTreeSet;

use kiln_model::Labels;

use crate::budget::MergeMemory;
use crate::flamegraph::FrameTree;
use crate::pprof::PprofBuilder;
use crate::timeseries::SeriesBuilder;

/// An accumulator of a query that merges exactly with another of the same query.
pub trait Partial: MergeMemory + Send + 'static {
    /// Adds everything `other` holds.
    fn merge(&mut self, other: Self);
}

impl Partial for FrameTree {
    fn merge(&mut self, other: Self) {
        self.absorb(&other, 0);
    }
}

impl Partial for PprofBuilder {
    fn merge(&mut self, other: Self) {
        self.absorb(other);
    }
}

impl Partial for SeriesBuilder {
    fn merge(&mut self, other: Self) {
        self.absorb(other);
    }
}

impl Partial for BTreeSet<Labels> {
    fn merge(&mut self, mut other: Self) {
        self.append(&mut other);
    }
}

/// The largest pprof period seen.
impl Partial for i64 {
    fn merge(&mut self, other: Self) {
        *self = (*self).max(other);
    }
}

impl<A: Partial, B: Partial> Partial for (A, B) {
    fn merge(&mut self, other: Self) {
        self.0.merge(other.0);
        self.1.merge(other.1);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::flamegraph::tests::dataset;

    #[test]
    fn merged_trees_equal_one_tree_of_everything() {
        let (data, values) = dataset();
        let mut whole = FrameTree::default();
        whole.add_stacks(&data, values.clone());
        // Half of the stacks in each part.
        let (mut first, mut second) = (FrameTree::default(), FrameTree::default());
        let (a, b): (HashMap<u32, i64>, HashMap<u32, i64>) =
            values.into_iter().partition(|(stack, _)| stack % 2 == 0);
        first.add_stacks(&data, a);
        second.add_stacks(&data, b);
        first.merge(second);
        assert_eq!(first.flamegraph(0), whole.flamegraph(0));
        assert_eq!(first.pyroscope_tree(0), whole.pyroscope_tree(0));
    }

    #[test]
    fn merged_pprof_equals_one_pprof_of_everything() {
        let (data, values) = dataset();
        let profile_type =
            kiln_model::ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds").unwrap();
        let mut whole = PprofBuilder::default();
        whole.add_stacks(&data, values.clone());
        let (a, b): (HashMap<u32, i64>, HashMap<u32, i64>) =
            values.into_iter().partition(|(stack, _)| stack % 2 == 1);
        let (mut first, mut second) = (PprofBuilder::default(), PprofBuilder::default());
        // The second part sees its stacks first, so its ids differ from the first's.
        second.add_stacks(&data, b);
        first.add_stacks(&data, a);
        first.merge(second);
        let merged = first.finish(&profile_type, 10, 0, 100);
        let whole = whole.finish(&profile_type, 10, 0, 100);
        let stacks = |p: &kiln_proto::google::v1::Profile| {
            let name = |id: u64| {
                let location = p.location.iter().find(|l| l.id == id).unwrap();
                let function = p
                    .function
                    .iter()
                    .find(|f| f.id == location.line[0].function_id)
                    .unwrap();
                p.string_table[function.name as usize].clone()
            };
            let mut stacks: Vec<(Vec<String>, i64)> = p
                .sample
                .iter()
                .map(|s| {
                    (
                        s.location_id.iter().map(|id| name(*id)).collect(),
                        s.value[0],
                    )
                })
                .collect();
            stacks.sort();
            stacks
        };
        assert_eq!(stacks(&merged), stacks(&whole));
        assert_eq!(merged.function.len(), whole.function.len());
        assert_eq!(merged.location.len(), whole.location.len());
    }
}
