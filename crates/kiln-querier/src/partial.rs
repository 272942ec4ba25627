//! Partial results of one query and their exact merge: each part of a query (a time window and
//! the blocks overlapping it, see `plan`) folds into its own accumulator, and the
//! accumulators merge into the answer as if one fold had seen every block. A part run by
//! another querier comes back as `kiln.querier.v1.ExecutePartResponse`, untruncated.

use kiln_proto::kiln::querier::v1::{ExecutePartResponse, PprofPart};

use crate::budget::MergeMemory;
use crate::flamegraph::FrameTree;
use crate::pprof::PprofBuilder;
use crate::timeseries::SeriesBuilder;

/// An accumulator of a query that merges exactly with another of the same query, also when
/// that one was folded by another querier.
pub trait Partial: MergeMemory + Send + 'static {
    /// Adds everything `other` holds.
    fn merge(&mut self, other: Self);

    /// Puts this partial result into its fields of `out`.
    fn write_part(self, out: &mut ExecutePartResponse);

    /// Adds the partial result another querier wrote into `part` (its fields are taken), or
    /// says what is malformed in it.
    fn merge_part(&mut self, part: &mut ExecutePartResponse) -> Result<(), String>;
}

impl Partial for FrameTree {
    fn merge(&mut self, other: Self) {
        self.absorb(&other, 0);
    }

    fn write_part(self, out: &mut ExecutePartResponse) {
        out.tree = Some(self.to_part());
    }

    fn merge_part(&mut self, part: &mut ExecutePartResponse) -> Result<(), String> {
        let tree = part.tree.take().ok_or("a part without its frame tree")?;
        self.merge(FrameTree::from_part(tree)?);
        Ok(())
    }
}

impl Partial for PprofBuilder {
    fn merge(&mut self, other: Self) {
        self.absorb(other);
    }

    fn write_part(self, out: &mut ExecutePartResponse) {
        out.pprof.get_or_insert_with(PprofPart::default).profile = Some(self.into_profile());
    }

    fn merge_part(&mut self, part: &mut ExecutePartResponse) -> Result<(), String> {
        let profile = part
            .pprof
            .as_mut()
            .and_then(|p| p.profile.take())
            .ok_or("a part without its profile")?;
        self.absorb(PprofBuilder::from_profile(profile));
        Ok(())
    }
}

impl Partial for SeriesBuilder {
    fn merge(&mut self, other: Self) {
        self.absorb(other);
    }

    fn write_part(self, out: &mut ExecutePartResponse) {
        out.series = Some(self.into_part());
    }

    fn merge_part(&mut self, part: &mut ExecutePartResponse) -> Result<(), String> {
        self.absorb_part(part.series.take().ok_or("a part without its series")?)
    }
}

/// The largest pprof period seen.
impl Partial for i64 {
    fn merge(&mut self, other: Self) {
        *self = (*self).max(other);
    }

    fn write_part(self, out: &mut ExecutePartResponse) {
        out.pprof.get_or_insert_with(PprofPart::default).period = self;
    }

    fn merge_part(&mut self, part: &mut ExecutePartResponse) -> Result<(), String> {
        let period = part
            .pprof
            .as_ref()
            .ok_or("a part without its period")?
            .period;
        self.merge(period);
        Ok(())
    }
}

impl<A: Partial, B: Partial> Partial for (A, B) {
    fn merge(&mut self, other: Self) {
        self.0.merge(other.0);
        self.1.merge(other.1);
    }

    fn write_part(self, out: &mut ExecutePartResponse) {
        // The second first: an `i64` period reads the pprof part that a builder takes.
        self.1.write_part(out);
        self.0.write_part(out);
    }

    fn merge_part(&mut self, part: &mut ExecutePartResponse) -> Result<(), String> {
        self.1.merge_part(part)?;
        self.0.merge_part(part)
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
        first.add_stacks(&data, a.clone());
        second.add_stacks(&data, b.clone());
        first.merge(second);
        assert_eq!(first.flamegraph(0), whole.flamegraph(0));
        assert_eq!(first.pyroscope_tree(0), whole.pyroscope_tree(0));

        // The same with the second part folded by another querier.
        let (mut first, mut second) = (FrameTree::default(), FrameTree::default());
        first.add_stacks(&data, a);
        second.add_stacks(&data, b);
        let mut wire = ExecutePartResponse::default();
        second.write_part(&mut wire);
        first.merge_part(&mut wire).unwrap();
        assert_eq!(first.flamegraph(0), whole.flamegraph(0));
        assert!(
            first.merge_part(&mut wire).is_err(),
            "a part is merged once"
        );
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
        // The second part comes from another querier, with its period.
        let mut wire = ExecutePartResponse::default();
        (second, 10i64).write_part(&mut wire);
        let mut first = (first, 3i64);
        first.merge_part(&mut wire).unwrap();
        let (first, period) = first;
        assert_eq!(period, 10);
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
