//! What the selected datasets of a query fold into: a frame tree, a pprof, series, or a frame
//! tree with series. Each fold names itself on the wire (`kiln.querier.v1.Fold`), so that a
//! querier running a part for another folds exactly as the planning querier would.

use std::collections::HashSet;

use kiln_proto::kiln::querier::v1 as pb;
use kiln_proto::kiln::querier::v1::fold::Kind;

use crate::QuerierError;
use crate::flamegraph::FrameTree;
use crate::partial::Partial;
use crate::pprof::PprofBuilder;
use crate::select::SelectedDataset;
use crate::timeseries::SeriesBuilder;

/// A fold of selected datasets into an accumulator.
pub(crate) trait Fold: Send + Sync + 'static {
    /// What the datasets fold into.
    type Acc: Partial;

    /// An empty accumulator.
    fn new_acc(&self) -> Self::Acc;

    /// Adds the selected profiles of one dataset.
    fn add(&self, acc: &mut Self::Acc, dataset: &SelectedDataset);

    /// The fold as another querier receives it.
    fn to_pb(&self) -> pb::Fold;
}

/// Stacks into a frame tree; with `spans`, only the samples taken in those spans.
#[derive(Debug, Default)]
pub(crate) struct TreeFold {
    pub(crate) spans: Option<HashSet<String>>,
}

impl Fold for TreeFold {
    type Acc = FrameTree;

    fn new_acc(&self) -> FrameTree {
        FrameTree::default()
    }

    fn add(&self, tree: &mut FrameTree, dataset: &SelectedDataset) {
        let values = match &self.spans {
            Some(spans) => dataset.stack_value_table(|labels| {
                labels.span_id.as_ref().is_some_and(|s| spans.contains(s))
            }),
            None => dataset.stack_value_table(|_| true),
        };
        tree.add_stack_values(dataset.data(), &values);
    }

    fn to_pb(&self) -> pb::Fold {
        let tree = pb::TreeFold {
            only_spans: self.spans.is_some(),
            span_ids: self.spans.iter().flatten().cloned().collect(),
        };
        pb::Fold {
            kind: Some(Kind::Tree(tree)),
        }
    }
}

/// Stacks into one pprof, with the largest period seen.
#[derive(Debug, Default)]
pub(crate) struct PprofFold;

impl Fold for PprofFold {
    type Acc = (PprofBuilder, i64);

    fn new_acc(&self) -> Self::Acc {
        (PprofBuilder::default(), 0)
    }

    fn add(&self, (builder, period): &mut Self::Acc, dataset: &SelectedDataset) {
        let max = dataset.data().profiles.iter().map(|p| p.period).max();
        *period = (*period).max(max.unwrap_or(0));
        builder.add_selected(dataset);
    }

    fn to_pb(&self) -> pb::Fold {
        pb::Fold {
            kind: Some(Kind::Pprof(pb::PprofFold {})),
        }
    }
}

/// Profile totals into series grouped by labels, in steps from a start.
#[derive(Clone, Debug)]
pub(crate) struct SeriesFold {
    pub(crate) group_by: Vec<String>,
    pub(crate) start_millis: i64,
    pub(crate) step_millis: i64,
}

impl SeriesFold {
    fn to_series_pb(&self) -> pb::SeriesFold {
        pb::SeriesFold {
            group_by: self.group_by.clone(),
            start_millis: self.start_millis,
            step_millis: self.step_millis,
        }
    }

    fn from_series_pb(fold: pb::SeriesFold) -> Self {
        Self {
            group_by: fold.group_by,
            start_millis: fold.start_millis,
            step_millis: fold.step_millis,
        }
    }
}

impl Fold for SeriesFold {
    type Acc = SeriesBuilder;

    fn new_acc(&self) -> SeriesBuilder {
        SeriesBuilder::new(&self.group_by, self.start_millis, self.step_millis)
    }

    fn add(&self, series: &mut SeriesBuilder, dataset: &SelectedDataset) {
        series.add(dataset);
    }

    fn to_pb(&self) -> pb::Fold {
        pb::Fold {
            kind: Some(Kind::Series(self.to_series_pb())),
        }
    }
}

/// A frame tree and series at once, as `/pyroscope/render` draws them.
#[derive(Clone, Debug)]
pub(crate) struct TreeAndSeriesFold(pub(crate) SeriesFold);

impl Fold for TreeAndSeriesFold {
    type Acc = (FrameTree, SeriesBuilder);

    fn new_acc(&self) -> Self::Acc {
        (FrameTree::default(), self.0.new_acc())
    }

    fn add(&self, (tree, series): &mut Self::Acc, dataset: &SelectedDataset) {
        tree.add_selected(dataset);
        series.add(dataset);
    }

    fn to_pb(&self) -> pb::Fold {
        pb::Fold {
            kind: Some(Kind::TreeAndSeries(self.0.to_series_pb())),
        }
    }
}

/// A fold received from another querier.
pub(crate) enum AnyFold {
    Tree(TreeFold),
    Pprof(PprofFold),
    Series(SeriesFold),
    TreeAndSeries(TreeAndSeriesFold),
}

impl AnyFold {
    /// The fold `fold` names.
    pub(crate) fn from_pb(fold: Option<pb::Fold>) -> Result<Self, QuerierError> {
        Ok(match fold.and_then(|f| f.kind) {
            Some(Kind::Tree(tree)) => AnyFold::Tree(TreeFold {
                spans: tree.only_spans.then(|| tree.span_ids.into_iter().collect()),
            }),
            Some(Kind::Pprof(_)) => AnyFold::Pprof(PprofFold),
            Some(Kind::Series(series)) => AnyFold::Series(SeriesFold::from_series_pb(series)),
            Some(Kind::TreeAndSeries(series)) => {
                AnyFold::TreeAndSeries(TreeAndSeriesFold(SeriesFold::from_series_pb(series)))
            }
            None => return Err(QuerierError::BadRequest("part names no fold".to_string())),
        })
    }
}
