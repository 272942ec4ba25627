//! A query's selected datasets one at a time, for engines that read rows rather than fold
//! them into a tree or a profile (SQL). The same selection as every other read: blocks from
//! the metastore's index, datasets by tenant and service, profile rows by series and time, each
//! profile id once, within the tenant's retention and block budget.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::budget::{QueryBudget, SeenProfiles};
use crate::select::{Query, SelectedDataset, select_rows};
use crate::{Querier, QuerierError};

impl Querier {
    /// The datasets `query` selects, oldest block first, as a stream that loads a few blocks
    /// ahead of its reader and holds no more. Dropping the stream stops the loads in flight.
    /// Fails before it streams anything when the query is over the tenant's
    /// `max_query_blocks`.
    pub async fn scan(
        &self,
        query: &Query,
    ) -> Result<BoxStream<'static, Result<SelectedDataset, QuerierError>>, QuerierError> {
        let query = Arc::new(self.within_retention(query));
        if query.start_nanos >= query.end_nanos {
            return Ok(futures::stream::empty().boxed());
        }
        let budget = QueryBudget::new(&query.tenant, &self.overrides.limits(&query.tenant));
        let blocks = self.plan(&query, &budget).await?;
        let loads = self.load_ahead(&query, blocks);
        let selected = loads.scan(SeenProfiles::default(), move |seen, loaded| {
            let datasets: Vec<Result<SelectedDataset, QuerierError>> = match loaded {
                Err(e) => vec![Err(QuerierError::Internal(format!(
                    "block load panicked: {e}"
                )))],
                Ok(Err(e)) => vec![Err(e)],
                Ok(Ok(regions)) => regions
                    .into_iter()
                    .flat_map(|block| {
                        (0..block.len())
                            .filter_map(|index| {
                                let selected = select_rows(&query, &block[index], seen)?;
                                let kept_stacks = query
                                    .stack_filter
                                    .as_ref()
                                    .map(|f| f.kept_stacks(&block[index].symbols));
                                Some(Ok(SelectedDataset::new(
                                    block.clone(),
                                    index,
                                    selected,
                                    kept_stacks,
                                )))
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            futures::future::ready(Some(futures::stream::iter(datasets)))
        });
        Ok(selected.flatten().boxed())
    }
}
