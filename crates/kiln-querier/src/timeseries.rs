//! Time series of profile totals, grouped by labels and bucketed by step.

use std::collections::{BTreeMap, HashMap};

use kiln_model::Labels;
use kiln_proto::kiln::querier::v1::{SeriesGroup, SeriesPart};
use kiln_proto::types::v1::{LabelPair, Point, Series};

use crate::budget::{ENTRY_OVERHEAD, MergeMemory, labels_bytes};
use crate::select::SelectedDataset;

/// How the profiles of one step are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// Sum of the profiles' totals.
    Sum,
    /// Mean of the profiles' totals.
    Average,
}

/// Buckets the totals of selected profiles into steps of `step_millis` from `start_millis`,
/// one series per distinct value of the `group_by` labels.
#[derive(Debug)]
pub struct SeriesBuilder {
    group_by: Vec<String>,
    start_millis: i64,
    step_millis: i64,
    /// group labels -> step index -> (sum, profiles)
    groups: HashMap<Labels, BTreeMap<i64, (i64, i64)>>,
}

impl SeriesBuilder {
    /// An empty builder; a step below 1 ms counts as 1 ms.
    pub fn new(group_by: &[String], start_millis: i64, step_millis: i64) -> Self {
        Self {
            group_by: group_by.to_vec(),
            start_millis,
            step_millis: step_millis.max(1),
            groups: HashMap::new(),
        }
    }

    /// Adds the totals of the selected profiles of one dataset.
    pub fn add(&mut self, dataset: &SelectedDataset) {
        let data = dataset.data();
        for (row, total) in dataset.profile_totals() {
            let profile = &data.profiles[row as usize];
            let labels = &data.series[profile.series as usize].labels;
            let key = Labels::from_pairs(self.group_by.iter().filter_map(|name| {
                labels
                    .get(name)
                    .map(|value| (name.clone(), value.to_string()))
            }));
            let millis = profile.time_nanos.div_euclid(1_000_000);
            // In i128: a start or step taken from the request cannot overflow.
            let step = (i128::from(millis) - i128::from(self.start_millis))
                .div_euclid(i128::from(self.step_millis));
            let step = i64::try_from(step).unwrap_or(if step < 0 { i64::MIN } else { i64::MAX });
            let bucket = self.groups.entry(key).or_default().entry(step).or_default();
            bucket.0 += total;
            bucket.1 += 1;
        }
    }

    /// Adds the buckets of `other`, a builder of the same query (same groups, start and
    /// step): sums and profile counts add up, so that averages stay exact.
    pub(crate) fn absorb(&mut self, other: SeriesBuilder) {
        for (labels, buckets) in other.groups {
            let mine = self.groups.entry(labels).or_default();
            for (step, (sum, count)) in buckets {
                let bucket = mine.entry(step).or_default();
                bucket.0 += sum;
                bucket.1 += count;
            }
        }
    }

    /// The series, keeping the `limit` with the largest sums (0: all). Points exist only for
    /// steps with data; timestamps are step starts.
    pub fn finish(self, aggregation: Aggregation, limit: usize) -> Vec<Series> {
        let Self {
            start_millis,
            step_millis,
            groups,
            ..
        } = self;
        let mut series: Vec<(i64, Series)> = groups
            .into_iter()
            .map(|(labels, buckets)| {
                let sum: i64 = buckets
                    .values()
                    .fold(0i64, |sum, (total, _)| sum.saturating_add(*total));
                let points = buckets
                    .into_iter()
                    .map(|(step, (total, count))| Point {
                        value: match aggregation {
                            Aggregation::Sum => total as f64,
                            Aggregation::Average => total as f64 / count as f64,
                        },
                        timestamp: start_millis.saturating_add(step.saturating_mul(step_millis)),
                        annotations: vec![],
                        exemplars: vec![],
                    })
                    .collect();
                (
                    sum,
                    Series {
                        labels: label_pairs(&labels),
                        points,
                    },
                )
            })
            .collect();
        // Largest first; ties in label order so that results are stable.
        series.sort_by(|(a_sum, a), (b_sum, b)| {
            b_sum.cmp(a_sum).then_with(|| {
                let key = |s: &Series| {
                    s.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect::<Vec<_>>()
                };
                key(a).cmp(&key(b))
            })
        });
        if limit > 0 {
            series.truncate(limit);
        }
        series.into_iter().map(|(_, s)| s).collect()
    }
}

impl SeriesBuilder {
    /// The buckets, for another querier to merge ([`SeriesBuilder::absorb_part`]).
    pub(crate) fn into_part(self) -> SeriesPart {
        let groups = self
            .groups
            .into_iter()
            .map(|(labels, buckets)| {
                let mut group = SeriesGroup {
                    labels: label_pairs(&labels),
                    ..SeriesGroup::default()
                };
                for (step, (sum, count)) in buckets {
                    group.steps.push(step);
                    group.sums.push(sum);
                    group.counts.push(count);
                }
                group
            })
            .collect();
        SeriesPart { groups }
    }

    /// Adds the buckets of `part`, made by a builder of the same query on another querier.
    pub(crate) fn absorb_part(&mut self, part: SeriesPart) -> Result<(), String> {
        for group in part.groups {
            let count = group.steps.len();
            if group.sums.len() != count || group.counts.len() != count {
                return Err(format!(
                    "series group of {count} steps, {} sums and {} counts",
                    group.sums.len(),
                    group.counts.len()
                ));
            }
            let labels = Labels::from_pairs(group.labels.into_iter().map(|p| (p.name, p.value)));
            let mine = self.groups.entry(labels).or_default();
            for ((step, sum), profiles) in group.steps.into_iter().zip(group.sums).zip(group.counts)
            {
                let bucket = mine.entry(step).or_default();
                bucket.0 += sum;
                bucket.1 += profiles;
            }
        }
        Ok(())
    }
}

/// A group's labels as `types.v1` label pairs.
fn label_pairs(labels: &Labels) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| LabelPair {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
}

impl MergeMemory for SeriesBuilder {
    fn merge_bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|(labels, steps)| {
                labels_bytes(labels) + ENTRY_OVERHEAD + steps.len() * (3 * 8 + ENTRY_OVERHEAD)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_from_another_querier_add_up_and_bad_ones_are_refused() {
        let group = Labels::from_pairs([("service_name", "a")]);
        let mut mine = SeriesBuilder::new(&["service_name".to_string()], 0, 1000);
        mine.groups
            .insert(group.clone(), BTreeMap::from([(0, (10, 1)), (1, (4, 2))]));
        let mut theirs = SeriesBuilder::new(&["service_name".to_string()], 0, 1000);
        theirs
            .groups
            .insert(group.clone(), BTreeMap::from([(1, (6, 1)), (5, (1, 1))]));
        theirs
            .groups
            .insert(Labels::default(), BTreeMap::from([(2, (7, 1))]));
        mine.absorb_part(theirs.into_part()).unwrap();
        assert_eq!(
            mine.groups[&group],
            BTreeMap::from([(0, (10, 1)), (1, (10, 3)), (5, (1, 1))])
        );
        assert_eq!(
            mine.groups[&Labels::default()],
            BTreeMap::from([(2, (7, 1))])
        );

        let mut bad = SeriesBuilder::new(&[], 0, 1000);
        bad.groups
            .insert(Labels::default(), BTreeMap::from([(2, (7, 1))]));
        let mut part = bad.into_part();
        part.groups[0].counts.clear();
        assert!(mine.absorb_part(part).unwrap_err().contains("0 counts"));
    }
}
